/*
 * booking_test.c — the booking life cycle: create, get, begin_payment,
 * confirm, fail, cancel, the sweeper, the fixed-capacity booking table, and
 * the reset of a whole partition (tests and demos).
 *
 * The layout is 1 section × 2 rows × 10 seats (seats 0..19; the reset's
 * back-pressure case has its own, with the smallest ring), hold TTL
 * FX_HOLD_TTL_MS and payment window FX_PAYMENT_WINDOW_MS.  Deadlines follow
 * the sweeper's rule from partition.h: a booking is due once its deadline is
 * <= now.
 */
#include "fixture.h"

#define SEATS 20u

static void setup(void)
{
    fx_start(1, 2, 10);
}

/* The smallest table the contract allows, to fill it quickly. */
static void setup_small_table(void)
{
    fx_layout(1, 2, 10);
    fx.cfg.booking_capacity = TG_BOOKINGS_MIN;
    fx_create();
}

TestSuite(booking, .init = setup, .fini = fx_fini);
TestSuite(booking_table, .init = setup_small_table, .fini = fx_fini);

/* A booking of user with seats [first, first + n), pending payment since now. */
static tg_booking_id pending(pu_partition *p, uint64_t user, uint32_t first, uint32_t n,
                             int64_t now_ms)
{
    tg_booking_id id = fx_book_range(p, user, first, n, now_ms);
    int64_t deadline = 0;
    cr_assert_eq(pu_booking_begin_payment(p, id, user, now_ms, &deadline), TG_OK);
    return id;
}

static tg_booking_id paid(pu_partition *p, uint64_t user, uint32_t first, uint32_t n,
                          int64_t now_ms)
{
    tg_booking_id id = pending(p, user, first, n, now_ms);
    cr_assert_eq(pu_booking_confirm(p, id, now_ms), TG_OK);
    return id;
}

static void assert_seats_in(const pu_partition *p, uint32_t first, uint32_t n, tg_seat_state st)
{
    for (uint32_t s = first; s < first + n; s++) {
        cr_assert_eq(fx_seat_state(p, s), st, "seat %u is %s, want %s", s,
                     tg_seat_state_name(fx_seat_state(p, s)), tg_seat_state_name(st));
    }
}

/* ---- create and get ----------------------------------------------------- */

Test(booking, create_returns_a_created_booking_that_expires_after_the_hold_ttl)
{
    pu_partition *p = fx.p;
    pu_booking_info b;
    cr_assert_eq(pu_booking_create(p, FX_ALICE, FX_T0, &b), TG_OK);
    cr_assert_eq(b.status, TG_BOOKING_CREATED);
    cr_assert_eq(b.user_id, FX_ALICE);
    cr_assert_eq(b.created_ms, FX_T0);
    cr_assert_eq(b.deadline_ms, FX_T0 + FX_HOLD_TTL_MS);
    cr_assert_eq(b.seat_count, 0u);
    cr_assert_eq(tg_booking_id_partition(b.id), FX_PARTITION_ID);
    cr_assert(tg_booking_id_valid(b.id));
    cr_assert_eq(fx_info(p).bookings_created, 1u);

    pu_booking_info c;
    cr_assert_eq(pu_booking_create(p, FX_ALICE, FX_T0, &c), TG_OK);
    cr_assert_neq(c.id, b.id, "two bookings share an id");
    cr_assert_eq(fx_info(p).bookings_created, 2u);
    fx_check(p);
}

Test(booking, create_fails_for_the_system_user)
{
    pu_partition *p = fx.p;
    fx_snapshot before;
    fx_snap(p, &before);
    pu_booking_info b;
    cr_assert_eq(pu_booking_create(p, PU_USER_SYSTEM, FX_T0, &b), TG_EINVAL);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(booking, get_answers_the_owner_and_the_system_but_not_another_user)
{
    pu_partition *p = fx.p;
    pu_booking_info made;
    cr_assert_eq(pu_booking_create(p, FX_ALICE, FX_T0, &made), TG_OK);

    pu_booking_info got;
    cr_assert_eq(pu_booking_get(p, made.id, FX_ALICE, &got), TG_OK);
    cr_assert_eq(got.id, made.id);
    cr_assert_eq(got.user_id, FX_ALICE);
    cr_assert_eq(got.status, TG_BOOKING_CREATED);
    cr_assert_eq(got.version, made.version);
    cr_assert_eq(got.created_ms, made.created_ms);
    cr_assert_eq(got.deadline_ms, made.deadline_ms);
    cr_assert_eq(pu_booking_get(p, made.id, PU_USER_SYSTEM, &got), TG_OK);
    cr_assert_eq(got.id, made.id);
    cr_assert_eq(pu_booking_get(p, made.id, FX_BOB, &got), TG_ENOT_FOUND);
    fx_check(fx.p);
}

Test(booking, get_fails_for_an_unknown_id_or_another_partition)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_booking_info got;
    cr_assert_eq(
        pu_booking_get(p, tg_booking_id_make(FX_PARTITION_ID, 12345), PU_USER_SYSTEM, &got),
        TG_ENOT_FOUND);
    cr_assert_eq(pu_booking_get(p, tg_booking_id_make(FX_PARTITION_ID, 0), PU_USER_SYSTEM, &got),
                 TG_ENOT_FOUND);
    cr_assert_eq(pu_booking_get(p, tg_booking_id_make(FX_PARTITION_ID + 1, tg_booking_id_seq(id)),
                                FX_ALICE, &got),
                 TG_EWRONG_PARTITION);
    fx_check(fx.p);
}

/* ---- begin_payment ------------------------------------------------------ */

Test(booking, begin_payment_reserves_the_seats_until_the_payment_deadline)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 3, 2, FX_T0);
    uint32_t v0 = fx_booking_get(p, id).version;
    int64_t deadline = 0;
    int64_t now = FX_T0 + 1000;
    cr_assert_eq(pu_booking_begin_payment(p, id, FX_ALICE, now, &deadline), TG_OK);
    cr_assert_eq(deadline, now + FX_PAYMENT_WINDOW_MS);

    pu_booking_info b = fx_booking_get(p, id);
    cr_assert_eq(b.status, TG_BOOKING_PENDING_PAYMENT);
    cr_assert_eq(b.deadline_ms, now + FX_PAYMENT_WINDOW_MS);
    cr_assert_eq(b.version, v0 + 1);
    cr_assert_eq(b.seat_count, 2u);
    assert_seats_in(p, 3, 2, TG_SEAT_RESERVED);
    cr_assert_eq(fx_seat(p, 3).booking_id, id);
    cr_assert_eq(fx_total(p, TG_SEAT_RESERVED), 2u);
    cr_assert_eq(fx_total(p, TG_SEAT_SELECTED), 0u);
    fx_check(p);
}

Test(booking, begin_payment_fails_on_a_booking_without_seats)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_booking_info was = fx_booking_get(p, id);
    fx_snapshot before;
    fx_snap(p, &before);
    int64_t deadline = 0;
    cr_assert_eq(pu_booking_begin_payment(p, id, FX_ALICE, FX_T0, &deadline), TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);
    pu_booking_info now = fx_booking_get(p, id);
    fx_assert_booking_same(&was, &now);
    fx_check(p);
}

Test(booking, begin_payment_twice_fails)
{
    pu_partition *p = fx.p;
    tg_booking_id id = pending(p, FX_ALICE, 0, 2, FX_T0);
    pu_booking_info was = fx_booking_get(p, id);
    fx_snapshot before;
    fx_snap(p, &before);
    int64_t deadline = 0;
    cr_assert_eq(pu_booking_begin_payment(p, id, FX_ALICE, FX_T0 + 5, &deadline),
                 TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);
    pu_booking_info now = fx_booking_get(p, id);
    fx_assert_booking_same(&was, &now);
    fx_check(p);
}

Test(booking, begin_payment_fails_with_not_found_for_another_user)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    int64_t deadline = 0;
    cr_assert_eq(pu_booking_begin_payment(p, id, FX_BOB, FX_T0, &deadline), TG_ENOT_FOUND);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

/* Not spelled out for begin_payment in partition.h; it follows from hold's
 * rule (a booking past its deadline is expired on the spot, TG_EEXPIRED). */
Test(booking, begin_payment_after_the_hold_deadline_expires_the_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    int64_t deadline = 0;
    cr_assert_eq(pu_booking_begin_payment(p, id, FX_ALICE, FX_T0 + FX_HOLD_TTL_MS + 1, &deadline),
                 TG_EEXPIRED);
    cr_assert_eq(fx_booking_get(p, id).status, TG_BOOKING_EXPIRED);
    assert_seats_in(p, 0, 2, TG_SEAT_FREE);
    fx_check(p);
}

/* ---- confirm ------------------------------------------------------------ */

Test(booking, confirm_sells_the_seats)
{
    pu_partition *p = fx.p;
    tg_booking_id id = pending(p, FX_ALICE, 5, 3, FX_T0);
    uint32_t v = fx_booking_get(p, id).version;
    cr_assert_eq(pu_booking_confirm(p, id, FX_T0 + 1000), TG_OK);
    pu_booking_info b = fx_booking_get(p, id);
    cr_assert_eq(b.status, TG_BOOKING_PAID);
    cr_assert_eq(b.version, v + 1);
    cr_assert_eq(b.seat_count, 3u);
    assert_seats_in(p, 5, 3, TG_SEAT_SOLD);
    cr_assert_eq(fx_seat(p, 6).booking_id, id);
    cr_assert_eq(fx_total(p, TG_SEAT_SOLD), 3u);
    cr_assert_eq(fx_total(p, TG_SEAT_RESERVED), 0u);
    fx_check(p);
}

Test(booking, confirm_twice_is_ok_and_changes_nothing)
{
    pu_partition *p = fx.p;
    tg_booking_id id = paid(p, FX_ALICE, 0, 2, FX_T0);
    pu_booking_info was = fx_booking_get(p, id);
    fx_snapshot before;
    fx_snap(p, &before);
    cr_assert_eq(pu_booking_confirm(p, id, FX_T0 + 1), TG_OK);
    cr_assert_eq(pu_booking_confirm(p, id, FX_T0 + FX_PAYMENT_WINDOW_MS * 10), TG_OK,
                 "a paid booking stays paid whatever the clock says");
    fx_assert_unchanged(p, &before);
    pu_booking_info now = fx_booking_get(p, id);
    fx_assert_booking_same(&was, &now);
    fx_check(p);
}

Test(booking, confirm_just_before_the_payment_deadline_sells)
{
    pu_partition *p = fx.p;
    tg_booking_id id = pending(p, FX_ALICE, 0, 2, FX_T0);
    cr_assert_eq(pu_booking_confirm(p, id, FX_T0 + FX_PAYMENT_WINDOW_MS - 1), TG_OK);
    assert_seats_in(p, 0, 2, TG_SEAT_SOLD);
    fx_check(p);
}

Test(booking, confirm_after_the_payment_deadline_expires_the_booking_and_frees_its_seats)
{
    pu_partition *p = fx.p;
    tg_booking_id id = pending(p, FX_ALICE, 0, 2, FX_T0);
    cr_assert_eq(pu_booking_confirm(p, id, FX_T0 + FX_PAYMENT_WINDOW_MS + 1), TG_EEXPIRED);
    pu_booking_info b = fx_booking_get(p, id);
    cr_assert_eq(b.status, TG_BOOKING_EXPIRED);
    cr_assert_eq(b.seat_count, 0u);
    assert_seats_in(p, 0, 2, TG_SEAT_FREE);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS);
    cr_assert_eq(pu_booking_confirm(p, id, FX_T0 + FX_PAYMENT_WINDOW_MS + 2), TG_EEXPIRED,
                 "a late payment never sells, however often it is retried");
    assert_seats_in(p, 0, 2, TG_SEAT_FREE);
    fx_check(p);
}

Test(booking, confirm_fails_on_a_booking_not_pending_payment)
{
    pu_partition *p = fx.p;
    tg_booking_id created = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    tg_booking_id cancelled = fx_book_range(p, FX_BOB, 4, 1, FX_T0);
    cr_assert_eq(pu_booking_cancel(p, cancelled, FX_BOB, FX_T0), TG_OK);
    fx_snapshot before;
    fx_snap(p, &before);
    cr_assert_eq(pu_booking_confirm(p, created, FX_T0), TG_EBOOKING_STATE);
    cr_assert_eq(pu_booking_confirm(p, cancelled, FX_T0), TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(fx_booking_get(p, created).status, TG_BOOKING_CREATED);
    fx_check(p);
}

Test(booking, confirm_fails_for_an_unknown_id_or_another_partition)
{
    pu_partition *p = fx.p;
    tg_booking_id id = pending(p, FX_ALICE, 0, 1, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    cr_assert_eq(pu_booking_confirm(p, tg_booking_id_make(FX_PARTITION_ID, 999), FX_T0),
                 TG_ENOT_FOUND);
    cr_assert_eq(pu_booking_confirm(
                     p, tg_booking_id_make(FX_PARTITION_ID + 1, tg_booking_id_seq(id)), FX_T0),
                 TG_EWRONG_PARTITION);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

/* ---- fail --------------------------------------------------------------- */

Test(booking, fail_frees_the_seats_of_a_created_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 3, FX_T0);
    cr_assert_eq(pu_booking_fail(p, id, FX_T0), TG_OK);
    pu_booking_info b = fx_booking_get(p, id);
    cr_assert_eq(b.status, TG_BOOKING_FAILED);
    cr_assert_eq(b.seat_count, 0u);
    assert_seats_in(p, 0, 3, TG_SEAT_FREE);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS);
    fx_check(p);
}

Test(booking, fail_frees_the_seats_of_a_booking_pending_payment)
{
    pu_partition *p = fx.p;
    tg_booking_id id = pending(p, FX_ALICE, 10, 2, FX_T0);
    cr_assert_eq(pu_booking_fail(p, id, FX_T0 + 10), TG_OK);
    cr_assert_eq(fx_booking_get(p, id).status, TG_BOOKING_FAILED);
    assert_seats_in(p, 10, 2, TG_SEAT_FREE);
    cr_assert_eq(fx_total(p, TG_SEAT_RESERVED), 0u);
    fx_check(p);
}

Test(booking, fail_twice_is_ok_and_changes_nothing)
{
    pu_partition *p = fx.p;
    tg_booking_id id = pending(p, FX_ALICE, 0, 2, FX_T0);
    cr_assert_eq(pu_booking_fail(p, id, FX_T0), TG_OK);
    pu_booking_info was = fx_booking_get(p, id);
    fx_snapshot before;
    fx_snap(p, &before);
    cr_assert_eq(pu_booking_fail(p, id, FX_T0 + 1), TG_OK);
    fx_assert_unchanged(p, &before);
    pu_booking_info now = fx_booking_get(p, id);
    fx_assert_booking_same(&was, &now);
    fx_check(p);
}

/* partition.h lists created and pending_payment as the statuses fail moves;
 * a failed payment report for a paid booking must not unsell its seats. */
Test(booking, fail_on_a_paid_booking_fails_and_keeps_the_sale)
{
    pu_partition *p = fx.p;
    tg_booking_id id = paid(p, FX_ALICE, 0, 2, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    cr_assert_eq(pu_booking_fail(p, id, FX_T0), TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(fx_booking_get(p, id).status, TG_BOOKING_PAID);
    fx_check(p);
}

/* ---- cancel ------------------------------------------------------------- */

Test(booking, cancel_frees_the_seats_of_a_created_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 3, FX_T0);
    uint32_t v = fx_booking_get(p, id).version;
    cr_assert_eq(pu_booking_cancel(p, id, FX_ALICE, FX_T0), TG_OK);
    pu_booking_info b = fx_booking_get(p, id);
    cr_assert_eq(b.status, TG_BOOKING_CANCELLED);
    cr_assert_eq(b.version, v + 1);
    cr_assert_eq(b.seat_count, 0u);
    assert_seats_in(p, 0, 3, TG_SEAT_FREE);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS);
    fx_check(p);
}

Test(booking, cancel_frees_the_seats_of_a_booking_pending_payment)
{
    pu_partition *p = fx.p;
    tg_booking_id id = pending(p, FX_ALICE, 0, 3, FX_T0);
    cr_assert_eq(pu_booking_cancel(p, id, FX_ALICE, FX_T0), TG_OK);
    cr_assert_eq(fx_booking_get(p, id).status, TG_BOOKING_CANCELLED);
    assert_seats_in(p, 0, 3, TG_SEAT_FREE);
    fx_check(p);
}

Test(booking, cancel_fails_once_paid_or_ended)
{
    pu_partition *p = fx.p;
    tg_booking_id sold = paid(p, FX_ALICE, 0, 2, FX_T0);
    tg_booking_id gone = fx_book_range(p, FX_ALICE, 5, 1, FX_T0);
    cr_assert_eq(pu_booking_cancel(p, gone, FX_ALICE, FX_T0), TG_OK);
    fx_snapshot before;
    fx_snap(p, &before);
    cr_assert_eq(pu_booking_cancel(p, sold, FX_ALICE, FX_T0), TG_EBOOKING_STATE);
    cr_assert_eq(pu_booking_cancel(p, gone, FX_ALICE, FX_T0), TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);
    assert_seats_in(p, 0, 2, TG_SEAT_SOLD);
    cr_assert_eq(fx_booking_get(p, sold).status, TG_BOOKING_PAID);
    fx_check(p);
}

Test(booking, cancel_fails_with_not_found_for_another_user)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    cr_assert_eq(pu_booking_cancel(p, id, FX_BOB, FX_T0), TG_ENOT_FOUND);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(booking, seats_of_a_cancelled_booking_can_be_held_again)
{
    pu_partition *p = fx.p;
    tg_booking_id alice = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    cr_assert_eq(pu_booking_cancel(p, alice, FX_ALICE, FX_T0), TG_OK);
    tg_booking_id bob = fx_book_range(p, FX_BOB, 0, 2, FX_T0);
    cr_assert_eq(fx_seat(p, 0).booking_id, bob);
    cr_assert_eq(fx_seat(p, 1).booking_id, bob);
    fx_check(p);
}

Test(booking, holding_seats_does_not_change_the_booking_version)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    uint32_t v = fx_booking_get(p, id).version;
    const uint32_t seats[] = {1, 2};
    fx_hold(p, id, FX_ALICE, seats, 2, FX_T0);
    cr_assert_eq(pu_seats_release(p, id, FX_ALICE, seats, 1, FX_T0), TG_OK);
    cr_assert_eq(fx_booking_get(p, id).version, v);
    fx_check(p);
}

/* ---- sweep -------------------------------------------------------------- */

Test(booking, sweep_expires_only_bookings_whose_deadline_has_come)
{
    pu_partition *p = fx.p;
    tg_booking_id early = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    tg_booking_id later = fx_book_range(p, FX_BOB, 4, 2, FX_T0 + 10000);
    tg_booking_id sold = paid(p, FX_BOB, 8, 1, FX_T0);

    cr_assert_eq(pu_sweep(p, FX_T0 + FX_HOLD_TTL_MS - 1, TG_SWEEP_SCAN_MAX), 0u);
    cr_assert_eq(pu_sweep(p, FX_T0 + FX_HOLD_TTL_MS, TG_SWEEP_SCAN_MAX), 1u,
                 "due when the deadline is <= now");
    cr_assert_eq(fx_booking_get(p, early).status, TG_BOOKING_EXPIRED);
    assert_seats_in(p, 0, 2, TG_SEAT_FREE);
    cr_assert_eq(fx_booking_get(p, later).status, TG_BOOKING_CREATED);
    assert_seats_in(p, 4, 2, TG_SEAT_SELECTED);

    cr_assert_eq(pu_sweep(p, FX_T0 + FX_HOLD_TTL_MS, TG_SWEEP_SCAN_MAX), 0u,
                 "an expired booking is not expired again");
    cr_assert_eq(pu_sweep(p, FX_T0 + 10000 + FX_HOLD_TTL_MS, TG_SWEEP_SCAN_MAX), 1u);
    cr_assert_eq(fx_booking_get(p, later).status, TG_BOOKING_EXPIRED);
    assert_seats_in(p, 4, 2, TG_SEAT_FREE);

    cr_assert_eq(pu_sweep(p, FX_T0 + 100 * FX_PAYMENT_WINDOW_MS, TG_SWEEP_SCAN_MAX), 0u,
                 "a paid booking never expires");
    cr_assert_eq(fx_booking_get(p, sold).status, TG_BOOKING_PAID);
    assert_seats_in(p, 8, 1, TG_SEAT_SOLD);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS - 1);
    fx_check(p);
}

Test(booking, sweep_expires_a_booking_pending_payment_at_the_payment_deadline)
{
    pu_partition *p = fx.p;
    int64_t begun = FX_T0 + 1000;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    fx_begin_payment(p, id, FX_ALICE, begun);

    cr_assert_eq(pu_sweep(p, FX_T0 + FX_HOLD_TTL_MS + 1, TG_SWEEP_SCAN_MAX), 0u,
                 "the hold deadline no longer applies");
    cr_assert_eq(pu_sweep(p, begun + FX_PAYMENT_WINDOW_MS - 1, TG_SWEEP_SCAN_MAX), 0u);
    assert_seats_in(p, 0, 2, TG_SEAT_RESERVED);
    cr_assert_eq(pu_sweep(p, begun + FX_PAYMENT_WINDOW_MS, TG_SWEEP_SCAN_MAX), 1u);
    cr_assert_eq(fx_booking_get(p, id).status, TG_BOOKING_EXPIRED);
    assert_seats_in(p, 0, 2, TG_SEAT_FREE);
    cr_assert_eq(pu_booking_confirm(p, id, begun + FX_PAYMENT_WINDOW_MS), TG_EEXPIRED,
                 "a payment after the sweep never sells");
    assert_seats_in(p, 0, 2, TG_SEAT_FREE);
    fx_check(p);
}

Test(booking, sweep_with_nothing_due_returns_zero_and_changes_nothing)
{
    pu_partition *p = fx.p;
    cr_assert_eq(pu_sweep(p, FX_T0, TG_SWEEP_SCAN_MAX), 0u, "no bookings at all");
    fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    cr_assert_eq(pu_sweep(p, FX_T0 + 1, TG_SWEEP_SCAN_MAX), 0u);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(booking, sweep_examines_at_most_scan_max_slots_and_resumes_where_it_stopped)
{
    pu_partition *p = fx.p;
    for (uint32_t i = 0; i < 4; i++) {
        fx_book_range(p, FX_ALICE, 2 * i, 2, FX_T0);
    }
    int64_t late = FX_T0 + FX_HOLD_TTL_MS;
    uint32_t total = 0;
    uint32_t capacity = fx_info(p).booking_capacity;
    for (uint32_t call = 0; call < capacity; call++) {
        uint32_t n = pu_sweep(p, late, 1);
        cr_assert_leq(n, 1u, "one slot examined, %u bookings expired", n);
        total += n;
    }
    cr_assert_eq(total, 4u, "a full cycle of one-slot sweeps reaches every booking");
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS);
    fx_check(p);
}

/* ---- the booking table -------------------------------------------------- */

Test(booking_table, create_fails_when_the_table_is_full_and_changes_nothing)
{
    pu_partition *p = fx.p;
    cr_assert_eq(fx_info(p).booking_capacity, TG_BOOKINGS_MIN);
    for (uint32_t i = 0; i < TG_BOOKINGS_MIN; i++) {
        fx_booking(p, FX_ALICE, FX_T0);
    }
    fx_snapshot before;
    fx_snap(p, &before);
    pu_booking_info b;
    cr_assert_eq(pu_booking_create(p, FX_BOB, FX_T0, &b), TG_EBOOKINGS_FULL);
    cr_assert_eq(pu_booking_create(p, FX_BOB, FX_T0, &b), TG_EBOOKINGS_FULL);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(booking_table, an_ended_booking_frees_its_slot_once_its_records_are_persisted)
{
    pu_partition *p = fx.p;
    tg_booking_id ids[TG_BOOKINGS_MIN];
    for (uint32_t i = 0; i < TG_BOOKINGS_MIN; i++) {
        ids[i] = fx_book_range(p, FX_ALICE, i, 1, FX_T0);
    }
    cr_assert_eq(pu_booking_cancel(p, ids[4], FX_ALICE, FX_T0), TG_OK);
    pu_booking_info b;
    cr_assert_eq(pu_booking_create(p, FX_BOB, FX_T0, &b), TG_EBOOKINGS_FULL,
                 "the cancellation is not persisted yet");
    cr_assert_eq(fx_booking_get(p, ids[4]).status, TG_BOOKING_CANCELLED);

    cr_assert_eq(pu_log_ack(p, fx_info(p).log_head), TG_OK);
    cr_assert_eq(pu_booking_create(p, FX_BOB, FX_T0, &b), TG_OK);
    cr_assert_eq(b.user_id, FX_BOB);
    cr_assert_eq(b.status, TG_BOOKING_CREATED);
    for (uint32_t i = 0; i < TG_BOOKINGS_MIN; i++) {
        cr_assert_neq(b.id, ids[i], "an id is never handed out twice");
    }

    pu_booking_info old;
    cr_assert_eq(pu_booking_get(p, ids[4], PU_USER_SYSTEM, &old), TG_ENOT_FOUND,
                 "the reused slot's old id is gone");
    cr_assert_eq(pu_booking_cancel(p, ids[4], FX_ALICE, FX_T0), TG_ENOT_FOUND);
    pu_booking_info mine;
    cr_assert_eq(pu_booking_get(p, b.id, FX_BOB, &mine), TG_OK);
    for (uint32_t i = 0; i < TG_BOOKINGS_MIN; i++) {
        if (i != 4) {
            cr_assert_eq(fx_booking_get(p, ids[i]).status, TG_BOOKING_CREATED, "booking %u", i);
        }
    }
    const uint32_t seat[] = {4};
    fx_hold(p, b.id, FX_BOB, seat, 1, FX_T0);
    cr_assert_eq(pu_booking_create(p, FX_BOB, FX_T0, &b), TG_EBOOKINGS_FULL, "full again");
    fx_check(p);
}

Test(booking_table, an_expired_booking_frees_its_slot_once_persisted)
{
    pu_partition *p = fx.p;
    tg_booking_id first = fx_book_range(p, FX_ALICE, 0, 1, FX_T0);
    for (uint32_t i = 1; i < TG_BOOKINGS_MIN; i++) {
        fx_booking(p, FX_ALICE, FX_T0 + FX_HOLD_TTL_MS);
    }
    cr_assert_eq(pu_sweep(p, FX_T0 + FX_HOLD_TTL_MS, TG_SWEEP_SCAN_MAX), 1u);
    cr_assert_eq(pu_log_ack(p, fx_info(p).log_head), TG_OK);
    pu_booking_info b;
    cr_assert_eq(pu_booking_create(p, FX_BOB, FX_T0 + FX_HOLD_TTL_MS, &b), TG_OK);
    pu_booking_info old;
    cr_assert_eq(pu_booking_get(p, first, PU_USER_SYSTEM, &old), TG_ENOT_FOUND);
    fx_check(p);
}

/* ---- reset (tests and demos) ---------------------------------------------- */

/* A small ring for the back-pressure case: 64 records, high-water mark at 56. */
static void setup_small_ring(void)
{
    fx_layout(1, 2, 16); /* seats 0..31 */
    fx.cfg.log_records = TG_LOG_RECORDS_MIN;
    fx_create();
}

TestSuite(reset, .init = setup, .fini = fx_fini);
TestSuite(reset_ring, .init = setup_small_ring, .fini = fx_fini);

static pu_reset_result reset_ok(pu_partition *p)
{
    pu_reset_result r;
    memset(&r, 0xff, sizeof(r));
    tg_err err = pu_partition_reset(p, FX_T0, &r);
    cr_assert_eq(err, TG_OK, "pu_partition_reset: %s", tg_errname(err));
    return r;
}

/* Seats 0-1 held, 2-3 reserved, 4-6 sold, 10-11 blocked; bookings in every
 * status.  Fills ids[] with: created, pending, paid, empty created,
 * cancelled, expired, failed. */
static void sales(pu_partition *p, tg_booking_id ids[7])
{
    ids[0] = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    ids[1] = pending(p, FX_BOB, 2, 2, FX_T0);
    ids[2] = paid(p, FX_ALICE, 4, 3, FX_T0);
    ids[3] = fx_booking(p, FX_BOB, FX_T0);
    ids[4] = fx_book_range(p, FX_ALICE, 7, 1, FX_T0);
    cr_assert_eq(pu_booking_cancel(p, ids[4], FX_ALICE, FX_T0), TG_OK);
    ids[5] = fx_book_range(p, FX_BOB, 8, 1, FX_T0 - FX_HOLD_TTL_MS);
    cr_assert_eq(pu_sweep(p, FX_T0, TG_SWEEP_SCAN_MAX), 1u);
    ids[6] = pending(p, FX_ALICE, 9, 1, FX_T0);
    cr_assert_eq(pu_booking_fail(p, ids[6], FX_T0), TG_OK);
    fx_block(p, (const uint32_t[]){10, 11}, 2);
}

Test(reset, frees_held_reserved_and_sold_seats_and_cancels_every_live_or_paid_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id ids[7];
    sales(p, ids);
    pu_booking_info was[7];
    for (int i = 0; i < 7; i++) {
        was[i] = fx_booking_get(p, ids[i]);
    }
    pu_reset_result r = reset_ok(p);
    cr_assert_eq(r.bookings_cancelled, 4u, "created, pending, paid and the empty one");
    cr_assert_eq(r.seats_freed, 7u, "2 selected + 2 reserved + 3 sold");
    for (int i = 0; i < 4; i++) {
        pu_booking_info b = fx_booking_get(p, ids[i]);
        cr_assert_eq(b.status, TG_BOOKING_CANCELLED, "booking %d is %s", i,
                     tg_booking_status_name(b.status));
        cr_assert_eq(b.version, was[i].version + 1);
        cr_assert_eq(b.seat_count, 0u);
        cr_assert_eq(b.deadline_ms, was[i].deadline_ms, "a reset keeps the deadline, as cancel");
    }
    for (int i = 4; i < 7; i++) {
        pu_booking_info b = fx_booking_get(p, ids[i]);
        fx_assert_booking_same(&was[i], &b);
    }
    assert_seats_in(p, 0, 10, TG_SEAT_FREE);
    assert_seats_in(p, 10, 2, TG_SEAT_BLOCKED);
    assert_seats_in(p, 12, SEATS - 12, TG_SEAT_FREE);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS - 2);
    cr_assert_eq(fx_total(p, TG_SEAT_BLOCKED), 2u);
    cr_assert_eq(fx_total(p, TG_SEAT_SELECTED) + fx_total(p, TG_SEAT_RESERVED) +
                     fx_total(p, TG_SEAT_SOLD),
                 0u);
    fx_check(p); /* per-row counters equal a recount; lists and words agree */
}

Test(reset, logs_each_booking_then_its_seats_as_a_cancel_does)
{
    pu_partition *p = fx.p;
    tg_booking_id ids[7];
    sales(p, ids);
    uint64_t before = fx_info(p).log_head;
    pu_reset_result r = reset_ok(p);
    uint64_t after = fx_info(p).log_head;
    cr_assert_eq(after - before, r.bookings_cancelled + r.seats_freed,
                 "one record per booking and one per seat");
    pu_log_record recs[32];
    cr_assert_eq(pu_log_read(p, before + 1, recs, 32), after - before, "every record written");
    uint32_t i = 0, bookings = 0;
    while (i < after - before) {
        const pu_log_record *br = &recs[i++];
        cr_assert_eq(br->seq, before + i);
        cr_assert_eq(br->kind, PU_REC_BOOKING, "record %u: a booking's record comes first", i);
        pu_booking_info b = fx_booking_get(p, tg_booking_id_make(FX_PARTITION_ID, br->ident));
        cr_assert_eq(br->status, TG_BOOKING_CANCELLED);
        cr_assert_eq(br->version, b.version);
        cr_assert_eq(br->word, b.user_id);
        cr_assert_eq(br->deadline_ms, b.deadline_ms);
        bookings++;
        while (i < after - before && recs[i].kind == PU_REC_SEAT) {
            const pu_log_record *sr = &recs[i++];
            pu_seat_info s = fx_seat(p, sr->ident);
            cr_assert_eq(s.state, TG_SEAT_FREE);
            cr_assert_eq(sr->word, s.word, "seat %u: the record carries its new word", sr->ident);
            cr_assert_eq(sr->version, tg_seat_word_version(s.word));
        }
    }
    cr_assert_eq(bookings, r.bookings_cancelled);
    fx_check(p);
}

Test(reset, of_an_empty_partition_changes_nothing)
{
    pu_partition *p = fx.p;
    fx_snapshot before;
    fx_snap(p, &before);
    pu_reset_result r = reset_ok(p);
    cr_assert_eq(r.bookings_cancelled, 0u);
    cr_assert_eq(r.seats_freed, 0u);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(reset, a_second_reset_finds_nothing_left_to_do)
{
    pu_partition *p = fx.p;
    tg_booking_id ids[7];
    sales(p, ids);
    reset_ok(p);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_reset_result r = reset_ok(p);
    cr_assert_eq(r.bookings_cancelled, 0u);
    cr_assert_eq(r.seats_freed, 0u);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(reset, leaves_a_partition_where_new_bookings_sell_the_freed_seats)
{
    pu_partition *p = fx.p;
    tg_booking_id ids[7];
    sales(p, ids);
    reset_ok(p);
    cr_assert_eq(pu_booking_confirm(p, ids[1], FX_T0), TG_EBOOKING_STATE,
                 "a payment arriving after the reset sells nothing");
    tg_booking_id again = paid(p, FX_BOB, 0, 7, FX_T0);
    assert_seats_in(p, 0, 7, TG_SEAT_SOLD);
    cr_assert_eq(fx_seat(p, 4).booking_id, again);
    pu_hold_result hr;
    tg_booking_id other = fx_booking(p, FX_ALICE, FX_T0);
    cr_assert_eq(pu_seats_hold(p, other, FX_ALICE, (const uint32_t[]){10}, 1, FX_T0, &hr),
                 TG_ESEAT_TAKEN, "a blocked seat stays off sale");
    fx_check(p);
}

Test(reset_ring, stops_at_the_high_water_mark_and_finishes_once_the_log_is_persisted)
{
    pu_partition *p = fx.p;
    tg_booking_id a = fx_book_range(p, FX_ALICE, 0, 16, FX_T0); /* records 1..17 */
    tg_booking_id b = fx_book_range(p, FX_BOB, 16, 16, FX_T0);  /* 18..34 */
    tg_booking_id c = fx_booking(p, FX_ALICE, FX_T0);           /* 35 */
    cr_assert_eq(fx_info(p).log_head, 35u);

    /* Cancelling a costs 17 records: 35 + 17 = 52 <= 56.  b's 17 more would
     * pass the high-water mark. */
    pu_reset_result r;
    tg_err err = pu_partition_reset(p, FX_T0, &r);
    cr_assert_eq(err, TG_EBACKLOG, "got %s", tg_errname(err));
    cr_assert_eq(r.bookings_cancelled, 1u, "what was done before it stopped");
    cr_assert_eq(r.seats_freed, 16u);
    cr_assert_eq(fx_info(p).log_head, 52u, "nothing reserved for the booking it stopped at");
    cr_assert_eq(fx_booking_get(p, a).status, TG_BOOKING_CANCELLED);
    cr_assert_eq(fx_booking_get(p, b).status, TG_BOOKING_CREATED);
    cr_assert_eq(fx_booking_get(p, c).status, TG_BOOKING_CREATED);
    assert_seats_in(p, 0, 16, TG_SEAT_FREE);
    assert_seats_in(p, 16, 16, TG_SEAT_SELECTED);
    fx_check(p);

    cr_assert_eq(pu_log_ack(p, fx_info(p).log_head), TG_OK, "the persister drained");
    r = reset_ok(p);
    cr_assert_eq(r.bookings_cancelled, 2u, "b, and c without seats");
    cr_assert_eq(r.seats_freed, 16u);
    cr_assert_eq(fx_booking_get(p, b).status, TG_BOOKING_CANCELLED);
    cr_assert_eq(fx_booking_get(p, c).status, TG_BOOKING_CANCELLED);
    assert_seats_in(p, 0, 32, TG_SEAT_FREE);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), 32u);
    fx_check(p);
}

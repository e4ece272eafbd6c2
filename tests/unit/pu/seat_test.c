/*
 * seat_test.c — holding, releasing, blocking and unblocking seats by id.
 *
 * The layout is 2 sections × 3 rows × 10 seats: seats 0..29 are section 0
 * (rows 0, 1, 2), seats 30..59 section 1 (rows 3, 4, 5).  Every error path
 * asserts its exact code and, since a failed call changes nothing, that seat
 * words, counters and the log head are as before (fx_assert_unchanged); a
 * hold that fails part-way gives back the seats it took at new versions, and
 * logs that (fx_assert_given_back).
 */
#include "fixture.h"

#include "segment.h"

#include <stdlib.h>

#define SEATS 60u

static void setup(void)
{
    fx_start(2, 3, 10);
}

TestSuite(seat, .init = setup, .fini = fx_fini);

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Asserts that list[0..n) holds exactly want[0..want_n), in any order. */
static void assert_same_set(const uint32_t *list, uint32_t n, const uint32_t *want, uint32_t want_n)
{
    cr_assert_eq(n, want_n, "%u seats listed, want %u", n, want_n);
    uint32_t sorted[TG_BOOKING_SEATS_MAX];
    memcpy(sorted, list, n * sizeof(uint32_t));
    qsort(sorted, n, sizeof(uint32_t), cmp_u32);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(sorted[i], want[i], "seat %u listed, want %u", sorted[i], want[i]);
    }
}

/* ---- hold --------------------------------------------------------------- */

Test(seat, hold_moves_seats_from_free_to_selected_with_the_booking_deadline)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    const uint32_t seats[] = {12, 3, 31};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, seats, 3, FX_T0 + 5000, &r), TG_OK);

    const uint32_t want[] = {3, 12, 31};
    cr_assert_eq(r.seat_count, 3u);
    cr_assert_arr_eq(r.seats, want, sizeof(want), "the booking's seats, ascending");
    cr_assert_eq(r.deadline_ms, FX_T0 + FX_HOLD_TTL_MS, "holding does not extend the deadline");
    for (int i = 0; i < 3; i++) {
        pu_seat_info s = fx_seat(p, want[i]);
        cr_assert_eq(s.state, TG_SEAT_SELECTED);
        cr_assert_eq(s.booking_id, id);
        cr_assert_eq(tg_seat_word_booking(s.word), tg_booking_id_seq(id));
    }
    pu_booking_info b = fx_booking_get(p, id);
    cr_assert_eq(b.status, TG_BOOKING_CREATED);
    cr_assert_eq(b.seat_count, 3u);
    cr_assert_arr_eq(b.seats, want, sizeof(want));
    cr_assert_eq(b.deadline_ms, FX_T0 + FX_HOLD_TTL_MS);
    fx_check(p);
}

Test(seat, hold_moves_the_row_section_and_total_counters)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    const uint32_t seats[] = {3, 12, 13, 31};
    fx_hold(p, id, FX_ALICE, seats, 4, FX_T0);

    uint32_t totals[TG_SEAT_STATE_COUNT];
    uint32_t sections[2][TG_SEAT_STATE_COUNT];
    uint32_t rows[6][TG_SEAT_STATE_COUNT];
    pu_partition_counts(p, totals, sections, rows);
    cr_assert_eq(totals[TG_SEAT_FREE], SEATS - 4);
    cr_assert_eq(totals[TG_SEAT_SELECTED], 4u);
    cr_assert_eq(sections[0][TG_SEAT_SELECTED], 3u);
    cr_assert_eq(sections[0][TG_SEAT_FREE], 27u);
    cr_assert_eq(sections[1][TG_SEAT_SELECTED], 1u);
    cr_assert_eq(sections[1][TG_SEAT_FREE], 29u);
    const uint32_t row_selected[6] = {1, 2, 0, 1, 0, 0};
    for (int r = 0; r < 6; r++) {
        cr_assert_eq(rows[r][TG_SEAT_SELECTED], row_selected[r], "row %d", r);
        cr_assert_eq(rows[r][TG_SEAT_FREE], 10 - row_selected[r], "row %d", r);
        cr_assert_eq(rows[r][TG_SEAT_RESERVED] + rows[r][TG_SEAT_SOLD] + rows[r][TG_SEAT_BLOCKED],
                     0u);
    }
    uint32_t recount[TG_SEAT_STATE_COUNT];
    pu_partition_recount(p, recount, NULL, NULL);
    cr_assert_arr_eq(recount, totals, sizeof(totals));
    fx_check(p);
}

Test(seat, hold_fails_when_one_seat_is_taken_and_holds_nothing)
{
    pu_partition *p = fx.p;
    tg_booking_id bob = fx_booking(p, FX_BOB, FX_T0);
    const uint32_t bobs[] = {5, 7};
    fx_hold(p, bob, FX_BOB, bobs, 2, FX_T0);
    tg_booking_id alice = fx_booking(p, FX_ALICE, FX_T0);

    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t want[] = {8, 7, 6, 5, 4};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, alice, FX_ALICE, want, 5, FX_T0, &r), TG_ESEAT_TAKEN);
    const uint32_t taken[] = {5, 7};
    assert_same_set(r.taken, r.taken_count, taken, 2);
    fx_assert_given_back(p, &before, (uint32_t[]){4}, 1); /* taken before 5 failed */
    cr_assert_eq(fx_booking_get(p, alice).seat_count, 0u);
    fx_check(p);
}

Test(seat, hold_fails_on_a_sold_seat)
{
    pu_partition *p = fx.p;
    tg_booking_id bob = fx_book_range(p, FX_BOB, 20, 1, FX_T0);
    fx_begin_payment(p, bob, FX_BOB, FX_T0);
    cr_assert_eq(pu_booking_confirm(p, bob, FX_T0), TG_OK);
    tg_booking_id alice = fx_booking(p, FX_ALICE, FX_T0);

    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {20};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, alice, FX_ALICE, seats, 1, FX_T0, &r), TG_ESEAT_TAKEN);
    assert_same_set(r.taken, r.taken_count, seats, 1);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, hold_fails_on_duplicate_seats)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {1, 2, 1};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, seats, 3, FX_T0, &r), TG_EINVAL);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, hold_fails_on_zero_seats_or_more_than_the_booking_limit)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    uint32_t seats[TG_BOOKING_SEATS_MAX + 1];
    for (uint32_t i = 0; i <= TG_BOOKING_SEATS_MAX; i++) {
        seats[i] = i;
    }
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, seats, 0, FX_T0, &r), TG_EINVAL);
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, seats, TG_BOOKING_SEATS_MAX + 1, FX_T0, &r),
                 TG_EINVAL);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, seats, TG_BOOKING_SEATS_MAX, FX_T0, &r), TG_OK);
    cr_assert_eq(r.seat_count, TG_BOOKING_SEATS_MAX);
    fx_check(p);
}

Test(seat, hold_fails_when_the_booking_would_exceed_its_seat_limit_across_calls)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    uint32_t seats[TG_BOOKING_SEATS_MAX];
    for (uint32_t i = 0; i < TG_BOOKING_SEATS_MAX; i++) {
        seats[i] = 40 + i;
    }
    fx_hold(p, id, FX_ALICE, seats, 10, FX_T0);

    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t more[] = {0, 1, 2, 3, 4, 5, 6};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, more, 7, FX_T0, &r), TG_ETOO_MANY_SEATS);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(fx_booking_get(p, id).seat_count, 10u);

    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, more, 6, FX_T0, &r), TG_OK);
    cr_assert_eq(r.seat_count, TG_BOOKING_SEATS_MAX);
    fx_check(p);
}

Test(seat, hold_fails_on_a_seat_out_of_range)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {0, SEATS};
    const uint32_t huge[] = {UINT32_MAX};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, seats, 2, FX_T0, &r), TG_ESEAT_RANGE);
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, huge, 1, FX_T0, &r), TG_ESEAT_RANGE);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, hold_fails_on_seats_the_booking_already_holds)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    const uint32_t first[] = {1, 2};
    fx_hold(p, id, FX_ALICE, first, 2, FX_T0);

    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t again[] = {2, 3};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, again, 2, FX_T0, &r), TG_ESEAT_TAKEN);
    const uint32_t taken[] = {2};
    assert_same_set(r.taken, r.taken_count, taken, 1);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(fx_seat_state(p, 3), TG_SEAT_FREE);
    fx_check(p);
}

Test(seat, hold_fails_with_not_found_for_another_users_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {1};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_BOB, seats, 1, FX_T0, &r), TG_ENOT_FOUND);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, hold_by_the_system_user_may_act_on_any_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    const uint32_t seats[] = {1};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, PU_USER_SYSTEM, seats, 1, FX_T0, &r), TG_OK);
    cr_assert_eq(fx_seat(p, 1).booking_id, id);
    fx_check(p);
}

Test(seat, hold_fails_for_a_booking_of_another_partition)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    tg_booking_id other = tg_booking_id_make(FX_PARTITION_ID + 1, tg_booking_id_seq(id));
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {1};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, other, FX_ALICE, seats, 1, FX_T0, &r), TG_EWRONG_PARTITION);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, hold_fails_for_an_unknown_booking_seq)
{
    pu_partition *p = fx.p;
    fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {1};
    pu_hold_result r;
    cr_assert_eq(
        pu_seats_hold(p, tg_booking_id_make(FX_PARTITION_ID, 999), FX_ALICE, seats, 1, FX_T0, &r),
        TG_ENOT_FOUND);
    /* Seq 0 marks a never-used slot: it must not name one. */
    cr_assert_eq(pu_seats_hold(p, tg_booking_id_make(FX_PARTITION_ID, 0), PU_USER_SYSTEM, seats, 1,
                               FX_T0, &r),
                 TG_ENOT_FOUND);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, hold_after_the_deadline_fails_and_expires_the_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    const uint32_t first[] = {1, 2};
    fx_hold(p, id, FX_ALICE, first, 2, FX_T0);

    const uint32_t late[] = {3};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, late, 1, FX_T0 + FX_HOLD_TTL_MS + 1, &r),
                 TG_EEXPIRED);
    pu_booking_info b = fx_booking_get(p, id);
    cr_assert_eq(b.status, TG_BOOKING_EXPIRED);
    cr_assert_eq(b.seat_count, 0u);
    for (uint32_t s = 1; s <= 3; s++) {
        cr_assert_eq(fx_seat_state(p, s), TG_SEAT_FREE, "seat %u", s);
    }
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS);
    fx_check(p);
}

Test(seat, hold_fails_on_a_booking_that_is_not_created)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    fx_begin_payment(p, id, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {5};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, seats, 1, FX_T0, &r), TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);

    tg_booking_id cancelled = fx_booking(p, FX_ALICE, FX_T0);
    cr_assert_eq(pu_booking_cancel(p, cancelled, FX_ALICE, FX_T0), TG_OK);
    fx_snap(p, &before);
    cr_assert_eq(pu_seats_hold(p, cancelled, FX_ALICE, seats, 1, FX_T0, &r), TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

/* ---- release ------------------------------------------------------------ */

Test(seat, release_frees_seats_the_booking_holds)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    const uint32_t seats[] = {1, 2, 3};
    fx_hold(p, id, FX_ALICE, seats, 3, FX_T0);

    const uint32_t drop[] = {2};
    cr_assert_eq(pu_seats_release(p, id, FX_ALICE, drop, 1, FX_T0), TG_OK);
    cr_assert_eq(fx_seat_state(p, 2), TG_SEAT_FREE);
    cr_assert_eq(fx_seat(p, 2).booking_id, 0u);
    cr_assert_eq(fx_seat_state(p, 1), TG_SEAT_SELECTED);
    cr_assert_eq(fx_seat_state(p, 3), TG_SEAT_SELECTED);
    pu_booking_info b = fx_booking_get(p, id);
    const uint32_t left[] = {1, 3};
    cr_assert_eq(b.seat_count, 2u);
    cr_assert_arr_eq(b.seats, left, sizeof(left));
    cr_assert_eq(fx_total(p, TG_SEAT_SELECTED), 2u);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS - 2);
    fx_check(p);
}

Test(seat, release_fails_when_a_seat_is_not_held_and_releases_nothing)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    const uint32_t mine[] = {1, 2};
    fx_hold(p, id, FX_ALICE, mine, 2, FX_T0);
    tg_booking_id bob = fx_booking(p, FX_BOB, FX_T0);
    const uint32_t bobs[] = {5};
    fx_hold(p, bob, FX_BOB, bobs, 1, FX_T0);

    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t someone_elses[] = {1, 5};
    const uint32_t a_free_one[] = {2, 9};
    cr_assert_eq(pu_seats_release(p, id, FX_ALICE, someone_elses, 2, FX_T0), TG_ESEAT_NOT_HELD);
    cr_assert_eq(pu_seats_release(p, id, FX_ALICE, a_free_one, 2, FX_T0), TG_ESEAT_NOT_HELD);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(fx_booking_get(p, id).seat_count, 2u);
    cr_assert_eq(fx_booking_get(p, bob).seat_count, 1u);
    fx_check(p);
}

Test(seat, release_fails_on_a_booking_pending_payment)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    fx_begin_payment(p, id, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {0};
    cr_assert_eq(pu_seats_release(p, id, FX_ALICE, seats, 1, FX_T0), TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, release_fails_with_not_found_for_another_users_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {0};
    cr_assert_eq(pu_seats_release(p, id, FX_BOB, seats, 1, FX_T0), TG_ENOT_FOUND);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, a_released_seat_can_be_held_by_someone_else)
{
    pu_partition *p = fx.p;
    tg_booking_id alice = fx_book_range(p, FX_ALICE, 10, 1, FX_T0);
    const uint32_t seat[] = {10};
    cr_assert_eq(pu_seats_release(p, alice, FX_ALICE, seat, 1, FX_T0), TG_OK);
    tg_booking_id bob = fx_book_range(p, FX_BOB, 10, 1, FX_T0);
    cr_assert_eq(fx_seat(p, 10).booking_id, bob);
    fx_check(p);
}

/* ---- block and unblock -------------------------------------------------- */

Test(seat, block_takes_free_seats_off_sale)
{
    pu_partition *p = fx.p;
    const uint32_t seats[] = {0, 1, 35};
    fx_block(p, seats, 3);
    for (int i = 0; i < 3; i++) {
        pu_seat_info s = fx_seat(p, seats[i]);
        cr_assert_eq(s.state, TG_SEAT_BLOCKED);
        cr_assert_eq(s.booking_id, 0u);
        cr_assert_eq(tg_seat_word_booking(s.word), 0u);
    }
    uint32_t totals[TG_SEAT_STATE_COUNT];
    uint32_t sections[2][TG_SEAT_STATE_COUNT];
    pu_partition_counts(p, totals, sections, NULL);
    cr_assert_eq(totals[TG_SEAT_BLOCKED], 3u);
    cr_assert_eq(totals[TG_SEAT_FREE], SEATS - 3);
    cr_assert_eq(sections[0][TG_SEAT_BLOCKED], 2u);
    cr_assert_eq(sections[1][TG_SEAT_BLOCKED], 1u);
    fx_check(p);
}

Test(seat, hold_fails_on_a_blocked_seat)
{
    pu_partition *p = fx.p;
    const uint32_t blocked[] = {4};
    fx_block(p, blocked, 1);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {3, 4};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, id, FX_ALICE, seats, 2, FX_T0, &r), TG_ESEAT_TAKEN);
    assert_same_set(r.taken, r.taken_count, blocked, 1);
    fx_assert_given_back(p, &before, (uint32_t[]){3}, 1);
    fx_check(p);
}

Test(seat, block_fails_on_a_held_seat_and_names_it)
{
    pu_partition *p = fx.p;
    fx_book_range(p, FX_ALICE, 4, 1, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {3, 4, 5};
    pu_hold_result r;
    cr_assert_eq(pu_seats_block(p, seats, 3, &r), TG_ESEAT_TAKEN);
    const uint32_t taken[] = {4};
    assert_same_set(r.taken, r.taken_count, taken, 1);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, block_fails_on_an_already_blocked_seat)
{
    pu_partition *p = fx.p;
    const uint32_t first[] = {7};
    fx_block(p, first, 1);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {6, 7};
    pu_hold_result r;
    cr_assert_eq(pu_seats_block(p, seats, 2, &r), TG_ESEAT_TAKEN);
    assert_same_set(r.taken, r.taken_count, first, 1);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, block_fails_on_zero_or_too_many_seats)
{
    pu_partition *p = fx.p;
    uint32_t seats[TG_BOOKING_SEATS_MAX + 1];
    for (uint32_t i = 0; i <= TG_BOOKING_SEATS_MAX; i++) {
        seats[i] = i;
    }
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(pu_seats_block(p, seats, 0, &r), TG_EINVAL);
    cr_assert_eq(pu_seats_block(p, seats, TG_BOOKING_SEATS_MAX + 1, &r), TG_EINVAL);
    cr_assert_eq(pu_seats_unblock(p, seats, 0), TG_EINVAL);
    cr_assert_eq(pu_seats_unblock(p, seats, TG_BOOKING_SEATS_MAX + 1), TG_EINVAL);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, block_fails_on_a_seat_out_of_range)
{
    pu_partition *p = fx.p;
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seats[] = {1, SEATS};
    pu_hold_result r;
    cr_assert_eq(pu_seats_block(p, seats, 2, &r), TG_ESEAT_RANGE);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(seat, unblock_returns_blocked_seats_to_free)
{
    pu_partition *p = fx.p;
    const uint32_t seats[] = {0, 1};
    fx_block(p, seats, 2);
    cr_assert_eq(pu_seats_unblock(p, seats, 2), TG_OK);
    cr_assert_eq(fx_seat_state(p, 0), TG_SEAT_FREE);
    cr_assert_eq(fx_seat_state(p, 1), TG_SEAT_FREE);
    cr_assert_eq(fx_total(p, TG_SEAT_BLOCKED), 0u);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), SEATS);
    fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    fx_check(p);
}

Test(seat, unblock_fails_on_a_seat_that_is_not_blocked_and_unblocks_nothing)
{
    pu_partition *p = fx.p;
    const uint32_t blocked[] = {0};
    fx_block(p, blocked, 1);
    fx_book_range(p, FX_ALICE, 2, 1, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t with_free[] = {0, 1};
    const uint32_t with_held[] = {0, 2};
    cr_assert_eq(pu_seats_unblock(p, with_free, 2), TG_EINVAL);
    cr_assert_eq(pu_seats_unblock(p, with_held, 2), TG_EINVAL);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(fx_seat_state(p, 0), TG_SEAT_BLOCKED);
    fx_check(p);
}

/* ---- versions ----------------------------------------------------------- */

Test(seat, every_change_adds_exactly_one_to_the_seat_version)
{
    pu_partition *p = fx.p;
    const uint32_t seat[] = {5};
    uint32_t v = tg_seat_word_version(fx_seat(p, 5).word);
    cr_assert_eq(v, 0u, "a new seat starts at version 0");

    tg_booking_id a = fx_booking(p, FX_ALICE, FX_T0);
    fx_hold(p, a, FX_ALICE, seat, 1, FX_T0);
    cr_assert_eq(tg_seat_word_version(fx_seat(p, 5).word), v + 1, "hold");
    cr_assert_eq(pu_seats_release(p, a, FX_ALICE, seat, 1, FX_T0), TG_OK);
    cr_assert_eq(tg_seat_word_version(fx_seat(p, 5).word), v + 2, "release");
    fx_block(p, seat, 1);
    cr_assert_eq(tg_seat_word_version(fx_seat(p, 5).word), v + 3, "block");
    cr_assert_eq(pu_seats_unblock(p, seat, 1), TG_OK);
    cr_assert_eq(tg_seat_word_version(fx_seat(p, 5).word), v + 4, "unblock");
    fx_hold(p, a, FX_ALICE, seat, 1, FX_T0);
    cr_assert_eq(tg_seat_word_version(fx_seat(p, 5).word), v + 5, "hold again");
    fx_begin_payment(p, a, FX_ALICE, FX_T0);
    cr_assert_eq(tg_seat_word_version(fx_seat(p, 5).word), v + 6, "reserve");
    cr_assert_eq(pu_booking_confirm(p, a, FX_T0), TG_OK);
    pu_seat_info s = fx_seat(p, 5);
    cr_assert_eq(tg_seat_word_version(s.word), v + 7, "sell");
    cr_assert_eq(s.state, TG_SEAT_SOLD);
    cr_assert_eq(s.booking_id, a);

    /* A failed call moves no version. */
    pu_hold_result r;
    tg_booking_id b = fx_booking(p, FX_BOB, FX_T0);
    cr_assert_eq(pu_seats_hold(p, b, FX_BOB, seat, 1, FX_T0, &r), TG_ESEAT_TAKEN);
    cr_assert_eq(tg_seat_word_version(fx_seat(p, 5).word), v + 7);
    fx_check(p);
}

Test(seat, seats_of_other_rows_and_bookings_keep_their_words)
{
    pu_partition *p = fx.p;
    fx_snapshot before;
    fx_snap(p, &before);
    fx_book_range(p, FX_ALICE, 10, 3, FX_T0);
    for (uint32_t s = 0; s < SEATS; s++) {
        if (s >= 10 && s < 13) {
            continue;
        }
        cr_assert_eq(fx_seat(p, s).word, before.words[s], "seat %u", s);
    }
    fx_check(p);
}

/* ---- Finding seats by state, row and section ------------------------------ */

static uint32_t find(const pu_seat_filter *f, uint32_t first, uint32_t max, uint32_t *ids,
                     uint32_t *next)
{
    pu_seat_info out[SEATS];
    uint32_t n = pu_seats_find(fx.p, f, first, max, out, next);
    for (uint32_t i = 0; i < n; i++) {
        ids[i] = out[i].seat_id;
        cr_assert(f->state < 0 || out[i].state == (tg_seat_state)f->state);
    }
    return n;
}

Test(seat, find_pages_through_the_seats_a_filter_names)
{
    pu_partition *p = fx.p;
    tg_booking_id a = fx_book_range(p, FX_ALICE, 8, 4, FX_T0); /* 8, 9 (row 0), 10, 11 (row 1) */
    fx_book_range(p, FX_BOB, 45, 1, FX_T0);                    /* row 4, section 1 */
    uint32_t ids[SEATS], next;
    const pu_seat_filter held = {.state = TG_SEAT_SELECTED, .row = -1, .section = -1};
    cr_assert_eq(find(&held, 0, 3, ids, &next), 3u);
    cr_assert(ids[0] == 8 && ids[1] == 9 && ids[2] == 10 && next == 11);
    cr_assert_eq(find(&held, next, 3, ids, &next), 2u);
    cr_assert(ids[0] == 11 && ids[1] == 45 && next == SEATS);
    const pu_seat_filter s1 = {.state = TG_SEAT_SELECTED, .row = -1, .section = 1};
    cr_assert_eq(find(&s1, 0, 10, ids, &next), 1u);
    cr_assert(ids[0] == 45 && next == SEATS);
    const pu_seat_filter row1 = {.state = -1, .row = 1, .section = -1};
    cr_assert_eq(find(&row1, 0, SEATS, ids, &next), 10u);
    cr_assert(ids[0] == 10 && ids[9] == 19 && next == SEATS);
    const pu_seat_filter sold = {.state = TG_SEAT_SOLD, .row = -1, .section = -1};
    cr_assert_eq(find(&sold, 0, 10, ids, &next), 0u);
    cr_assert_eq(next, SEATS);
    fx_begin_payment(p, a, FX_ALICE, FX_T0);
    cr_assert_eq(pu_booking_confirm(p, a, FX_T0), TG_OK);
    cr_assert_eq(find(&sold, 9, 10, ids, &next), 3u, "from the middle of a row");
    cr_assert(ids[0] == 9 && ids[1] == 10 && ids[2] == 11);
}

/* A row whose counter has no seat in the wanted state is not read at all:
 * shown by a counter that (falsely) says row 0 has none. */
Test(seat, find_skips_rows_whose_counter_has_none_in_the_state)
{
    pu_partition *p = fx.p;
    fx_book_range(p, FX_ALICE, 3, 1, FX_T0);
    fx_book_range(p, FX_ALICE, 13, 1, FX_T0);
    uint32_t ids[SEATS], next;
    const pu_seat_filter held = {.state = TG_SEAT_SELECTED, .row = -1, .section = -1};
    cr_assert_eq(find(&held, 0, 10, ids, &next), 2u);
    __atomic_fetch_sub(&p->rows[0].counts[TG_SEAT_SELECTED], 1, __ATOMIC_RELAXED);
    cr_assert_eq(find(&held, 0, 10, ids, &next), 1u);
    cr_assert_eq(ids[0], 13u);
    __atomic_fetch_add(&p->rows[0].counts[TG_SEAT_SELECTED], 1, __ATOMIC_RELAXED);
}

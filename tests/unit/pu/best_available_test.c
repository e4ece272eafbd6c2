/*
 * best_available_test.c — pu_seats_hold_best: which seats "best available"
 * picks, and when it refuses.
 *
 * partition.h's rule: q seats side by side in the first row (layout order)
 * that has a free run of q, centre first within the row; otherwise, unless
 * adjacent_only, as few groups as possible, largest free runs first.  Tests
 * shape the free runs by blocking seats, then assert only what the rule
 * determines.  Where it leaves a tie open (a window that cannot sit exactly
 * on the centre, e.g. 3 seats in a row of 10), the test accepts either
 * neighbour and says so.
 *
 * Seat positions in comments are 0-based within the row.
 */
#include "fixture.h"

static void setup_rows_of_ten(void)
{
    fx_start(1, 3, 10); /* seats 0..29; row r is seats 10r..10r+9 */
}

static void setup_two_sections(void)
{
    fx_start(2, 2, 10); /* section 0: seats 0..19, section 1: seats 20..39 */
}

TestSuite(best, .init = setup_rows_of_ten, .fini = fx_fini);
TestSuite(best_sections, .init = setup_two_sections, .fini = fx_fini);

static tg_err best(pu_partition *p, tg_booking_id id, uint32_t q, int32_t section, bool adjacent,
                   pu_hold_result *out)
{
    pu_best_request req = {.quantity = q, .section = section, .adjacent_only = adjacent};
    return pu_seats_hold_best(p, id, FX_ALICE, &req, FX_T0, out);
}

/* Asserts the hold gave exactly seats[0..n) (ascending) to booking id. */
static void assert_got(const pu_partition *p, tg_booking_id id, const pu_hold_result *r,
                       const uint32_t *seats, uint32_t n)
{
    cr_assert_eq(r->seat_count, n, "held %u seats, want %u", r->seat_count, n);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(r->seats[i], seats[i], "seat %u is %u, want %u", i, r->seats[i], seats[i]);
        pu_seat_info s = fx_seat(p, seats[i]);
        cr_assert_eq(s.state, TG_SEAT_SELECTED);
        cr_assert_eq(s.booking_id, id);
    }
}

/* Groups of seats side by side in one row among r->seats (ascending). */
static uint32_t group_count(const pu_partition *p, const pu_hold_result *r)
{
    uint32_t groups = 0;
    for (uint32_t i = 0; i < r->seat_count; i++) {
        bool joins = i > 0 && r->seats[i] == r->seats[i - 1] + 1 &&
                     fx_seat(p, r->seats[i]).row == fx_seat(p, r->seats[i - 1]).row;
        groups += joins ? 0 : 1;
    }
    return groups;
}

/* ---- side by side, centre first ----------------------------------------- */

Test(best, two_seats_in_an_empty_row_of_ten_are_the_two_centre_seats)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 2, -1, false, &r), TG_OK);
    const uint32_t want[] = {4, 5};
    assert_got(p, id, &r, want, 2);
    cr_assert_eq(r.deadline_ms, FX_T0 + FX_HOLD_TTL_MS);
    pu_booking_info b = fx_booking_get(p, id);
    cr_assert_eq(b.seat_count, 2u);
    cr_assert_arr_eq(b.seats, want, sizeof(want));
    cr_assert_eq(fx_total(p, TG_SEAT_SELECTED), 2u);
    fx_check(p);
}

Test(best, four_seats_in_an_empty_row_of_ten_are_centred)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 4, -1, false, &r), TG_OK);
    const uint32_t want[] = {3, 4, 5, 6};
    assert_got(p, id, &r, want, 4);
    fx_check(p);
}

/* Three seats cannot sit exactly on the centre of a row of ten: 3..5 and 4..6
 * are equally close and partition.h does not say which wins. */
Test(best, three_seats_in_a_row_of_ten_are_one_of_the_two_most_central_windows)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 3, -1, false, &r), TG_OK);
    cr_assert_eq(r.seat_count, 3u);
    cr_assert(r.seats[0] == 3 || r.seats[0] == 4, "window starts at %u", r.seats[0]);
    cr_assert_eq(r.seats[1], r.seats[0] + 1);
    cr_assert_eq(r.seats[2], r.seats[0] + 2);
    fx_check(p);
}

Test(best, a_window_off_centre_is_pushed_as_near_the_centre_as_the_free_run_allows)
{
    pu_partition *p = fx.p;
    /* Row 0: seat 4 taken.  Runs 0..3 and 5..9; for two seats, 2..3 is 2
     * from the centre (4.5) and 5..6 is 1 away. */
    const uint32_t taken[] = {4};
    fx_block(p, taken, 1);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 2, -1, false, &r), TG_OK);
    const uint32_t want[] = {5, 6};
    assert_got(p, id, &r, want, 2);
    fx_check(p);
}

Test(best, skips_seats_held_by_other_bookings)
{
    pu_partition *p = fx.p;
    fx_book_range(p, FX_BOB, 3, 3, FX_T0); /* row 0 seats 3..5 */
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    /* Row 0 runs: 0..2 and 6..9.  Two seats: 1..2 centres 3 from the row's
     * centre (4.5), 6..7 only 2. */
    cr_assert_eq(best(p, id, 2, -1, false, &r), TG_OK);
    const uint32_t want[] = {6, 7};
    assert_got(p, id, &r, want, 2);
    fx_check(p);
}

Test(best, takes_the_first_row_in_layout_order_that_has_a_free_run)
{
    pu_partition *p = fx.p;
    /* Row 0: seats 3 and 7 taken → runs of 3, 3 and 2: no run of 4. */
    const uint32_t row0[] = {3, 7};
    fx_block(p, row0, 2);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 4, -1, false, &r), TG_OK);
    const uint32_t want[] = {13, 14, 15, 16};
    assert_got(p, id, &r, want, 4);
    fx_check(p);
}

Test(best, an_earlier_row_wins_even_when_its_only_run_is_at_the_edge)
{
    pu_partition *p = fx.p;
    fx_block_range(p, 2, 8); /* row 0: only seats 0 and 1 free */
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 2, -1, false, &r), TG_OK);
    const uint32_t want[] = {0, 1};
    assert_got(p, id, &r, want, 2);
    fx_check(p);
}

Test(best, adds_to_the_seats_a_booking_already_holds)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 20, 1, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 2, -1, false, &r), TG_OK);
    const uint32_t want[] = {4, 5, 20};
    assert_got(p, id, &r, want, 3);
    fx_check(p);
}

/* ---- sections ------------------------------------------------------------ */

Test(best_sections, takes_seats_only_from_the_requested_section)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 2, 1, false, &r), TG_OK);
    const uint32_t want[] = {24, 25};
    assert_got(p, id, &r, want, 2);
    for (uint32_t i = 0; i < r.seat_count; i++) {
        cr_assert_eq(fx_seat(p, r.seats[i]).section, 1u);
    }
    fx_check(p);
}

Test(best_sections, any_section_starts_with_the_first_section)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 2, -1, false, &r), TG_OK);
    const uint32_t want[] = {4, 5};
    assert_got(p, id, &r, want, 2);
    fx_check(p);
}

Test(best_sections, a_sold_out_section_has_no_seats_even_when_another_has)
{
    pu_partition *p = fx.p;
    fx_block_range(p, 20, 20);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 1, 1, false, &r), TG_ENO_SEATS);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(best(p, id, 1, 0, false, &r), TG_OK);
    cr_assert_eq(fx_seat(p, r.seats[0]).section, 0u);
    fx_check(p);
}

Test(best_sections, fails_on_a_section_out_of_range)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 1, 2, false, &r), TG_EINVAL);
    cr_assert_eq(best(p, id, 1, -2, false, &r), TG_EINVAL);
    cr_assert_eq(best(p, id, 1, INT32_MAX, false, &r), TG_EINVAL);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

/* ---- splitting ----------------------------------------------------------- */

/* Leaves free runs of 3 (row 0, seats 3..5), 4 (row 1, seats 14..17) and
 * 2 (row 2, seats 22..23): 9 free seats, no run longer than 4. */
static void three_runs(pu_partition *p)
{
    const uint32_t row0[] = {0, 1, 2, 6, 7, 8, 9};
    const uint32_t row1[] = {10, 11, 12, 13, 18, 19};
    const uint32_t row2[] = {20, 21, 24, 25, 26, 27, 28, 29};
    fx_block(p, row0, 7);
    fx_block(p, row1, 6);
    fx_block(p, row2, 8);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), 9u);
}

Test(best, adjacent_only_fails_when_no_run_is_long_enough_and_takes_nothing)
{
    pu_partition *p = fx.p;
    three_runs(p);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 5, -1, true, &r), TG_ENO_SEATS);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(fx_booking_get(p, id).seat_count, 0u);
    fx_check(p);
}

Test(best, adjacent_only_takes_a_run_that_is_long_enough)
{
    pu_partition *p = fx.p;
    three_runs(p);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 4, -1, true, &r), TG_OK);
    const uint32_t want[] = {14, 15, 16, 17};
    assert_got(p, id, &r, want, 4);
    fx_check(p);
}

Test(best, splits_into_the_largest_runs_when_no_row_has_the_group)
{
    pu_partition *p = fx.p;
    three_runs(p);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    /* 7 = the run of 4 + the run of 3: two groups, and no other choice. */
    cr_assert_eq(best(p, id, 7, -1, false, &r), TG_OK);
    const uint32_t want[] = {3, 4, 5, 14, 15, 16, 17};
    assert_got(p, id, &r, want, 7);
    cr_assert_eq(group_count(p, &r), 2u);
    fx_check(p);
}

Test(best, a_split_uses_as_few_groups_as_possible)
{
    pu_partition *p = fx.p;
    three_runs(p);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    /* 5 seats fit in two groups only with the run of 4 (3 + 2 is also two
     * groups, but not the largest runs first): all of 14..17 plus one seat
     * of the run of 3. */
    cr_assert_eq(best(p, id, 5, -1, false, &r), TG_OK);
    cr_assert_eq(r.seat_count, 5u);
    cr_assert_eq(group_count(p, &r), 2u);
    uint32_t in_run4 = 0, in_run3 = 0;
    for (uint32_t i = 0; i < r.seat_count; i++) {
        in_run4 += (r.seats[i] >= 14 && r.seats[i] <= 17) ? 1 : 0;
        in_run3 += (r.seats[i] >= 3 && r.seats[i] <= 5) ? 1 : 0;
    }
    cr_assert_eq(in_run4, 4u);
    cr_assert_eq(in_run3, 1u);
    fx_check(p);
}

Test(best, a_split_may_take_every_free_seat)
{
    pu_partition *p = fx.p;
    three_runs(p);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 9, -1, false, &r), TG_OK);
    const uint32_t want[] = {3, 4, 5, 14, 15, 16, 17, 22, 23};
    assert_got(p, id, &r, want, 9);
    cr_assert_eq(group_count(p, &r), 3u);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), 0u);
    fx_check(p);
}

Test(best, fails_with_no_seats_when_fewer_seats_are_free_than_asked)
{
    pu_partition *p = fx.p;
    three_runs(p);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 10, -1, false, &r), TG_ENO_SEATS);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(best, fails_with_no_seats_when_sold_out)
{
    pu_partition *p = fx.p;
    fx_block_range(p, 0, 29);
    fx_book_range(p, FX_BOB, 29, 1, FX_T0);
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 1, -1, false, &r), TG_ENO_SEATS);
    cr_assert_eq(best(p, id, 1, -1, true, &r), TG_ENO_SEATS);
    cr_assert_eq(best(p, id, 1, 0, false, &r), TG_ENO_SEATS);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

/* ---- arguments and the booking ------------------------------------------- */

Test(best, fails_on_quantity_zero_or_above_the_booking_limit)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 0, -1, false, &r), TG_EINVAL);
    cr_assert_eq(best(p, id, TG_BOOKING_SEATS_MAX + 1, -1, false, &r), TG_EINVAL);
    cr_assert_eq(best(p, id, UINT32_MAX, -1, false, &r), TG_EINVAL);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(best(p, id, TG_BOOKING_SEATS_MAX, -1, false, &r), TG_OK);
    cr_assert_eq(r.seat_count, TG_BOOKING_SEATS_MAX);
    fx_check(p);
}

Test(best, fails_when_the_booking_would_exceed_its_seat_limit)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 20, 10, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 7, -1, false, &r), TG_ETOO_MANY_SEATS);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(best(p, id, 6, -1, false, &r), TG_OK);
    cr_assert_eq(r.seat_count, TG_BOOKING_SEATS_MAX);
    fx_check(p);
}

Test(best, fails_with_not_found_for_another_users_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_BOB, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 2, -1, false, &r), TG_ENOT_FOUND);
    cr_assert_eq(
        best(p, tg_booking_id_make(FX_PARTITION_ID + 1, tg_booking_id_seq(id)), 2, -1, false, &r),
        TG_EWRONG_PARTITION);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(best, fails_on_a_booking_that_is_not_created)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 1, FX_T0);
    fx_begin_payment(p, id, FX_ALICE, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    pu_hold_result r;
    cr_assert_eq(best(p, id, 2, -1, false, &r), TG_EBOOKING_STATE);
    fx_assert_unchanged(p, &before);
    fx_check(p);
}

Test(best, after_the_deadline_fails_and_expires_the_booking)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    pu_best_request req = {.quantity = 2, .section = -1, .adjacent_only = false};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold_best(p, id, FX_ALICE, &req, FX_T0 + FX_HOLD_TTL_MS + 1, &r),
                 TG_EEXPIRED);
    cr_assert_eq(fx_booking_get(p, id).status, TG_BOOKING_EXPIRED);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), 30u);
    fx_check(p);
}

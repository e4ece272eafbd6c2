/*
 * requests_test.c — every request type against a real tixgrid-pu, over the
 * wire, through the routing client (tixgrid/client.h): each succeeds, and
 * each refuses what it must with its exact tg_err.
 *
 * The unit serves one partition of 60 seats: sections S0 and S1, three rows
 * of ten seats each (seats 0..29 in S0, rows 0..2; 30..59 in S1, rows 3..5).
 * Partition UNSERVED is routed to the same unit, which does not serve it.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <nng/protocol/pubsub0/sub.h>

#include <string.h>

#define P 7u
#define UNSERVED 99u
#define EVENT 4242u
#define SEATS 60u
#define ROWS 6u
#define HOLD_TTL_MS 60000u
#define PAYMENT_WINDOW_MS 120000u
#define LOG_RECORDS 4096u
#define ALICE UINT64_C(1001)
#define BOB UINT64_C(1002)

static hx_unit unit;
static tg_client *client;
static tg_msg rep; /* large: keep it off the stack */
static tg_wire_counts rows_a[TG_ROWS_MAX];

static void start_unit(void)
{
    hx_unit_init(&unit, "req");
    hx_layout l = {.partition_id = P,
                   .event_id = EVENT,
                   .sections = 2,
                   .rows = 3,
                   .seats = 10,
                   .hold_ttl_ms = HOLD_TTL_MS,
                   .payment_window_ms = PAYMENT_WINDOW_MS,
                   .log_records = LOG_RECORDS};
    hx_write_layout(&unit, &l);
    hx_start(&unit);
    client = hx_client(&unit, P, 16);
    cr_assert_eq(tg_client_route(client, UNSERVED, unit.rep_url), TG_OK);
}

static void stop_unit(void)
{
    hx_fini_all(); /* closes the client too */
    client = NULL;
}

TestSuite(requests, .init = start_unit, .fini = stop_unit, .timeout = 60);

/* ---- Helpers ----------------------------------------------------------- */

static tg_wire_seat_ids ids_of(const uint32_t *seats, uint32_t n)
{
    tg_wire_seat_ids ids = {.count = n};
    memcpy(ids.ids, seats, sizeof(uint32_t) * n);
    return ids;
}

static void assert_error(tg_err got, tg_err want, const char *what)
{
    cr_assert_eq(got, want, "%s: got %s (%d), want %s (%d)", what, tg_errname(got), got,
                 tg_errname(want), want);
    cr_assert_eq(rep.type, TG_WIRE_ERROR, "%s: no error reply", what);
    cr_assert_eq(rep.error.code, (uint32_t)want);
    cr_assert(rep.error.message[0] != '\0', "%s: the error reply has no message", what);
}

static tg_err hold(tg_booking_id b, uint64_t user, const uint32_t *seats, uint32_t n)
{
    return hx_hold(client, b, user, seats, n, &rep);
}

static tg_err booking_op(tg_wire_type type, tg_booking_id b, uint64_t user)
{
    tg_msg req = {.type = type};
    switch (type) {
    case TG_WIRE_BOOKING_CANCEL:
        req.booking_cancel.booking_id = b;
        req.booking_cancel.user_id = user;
        break;
    case TG_WIRE_PAYMENT_BEGIN:
        req.payment_begin.booking_id = b;
        req.payment_begin.user_id = user;
        break;
    case TG_WIRE_PAYMENT_CONFIRM: req.payment_confirm.booking_id = b; break;
    case TG_WIRE_PAYMENT_FAIL: req.payment_fail.booking_id = b; break;
    default: cr_assert_fail("not a booking operation");
    }
    return hx_call(client, P, &req, &rep);
}

static tg_err seats_op(tg_wire_type type, tg_booking_id b, uint64_t user, const uint32_t *seats,
                       uint32_t n)
{
    tg_msg req = {.type = type};
    switch (type) {
    case TG_WIRE_SEATS_RELEASE:
        req.seats_release.booking_id = b;
        req.seats_release.user_id = user;
        req.seats_release.seats = ids_of(seats, n);
        break;
    case TG_WIRE_SEATS_BLOCK:
        req.seats_block.partition_id = P;
        req.seats_block.seats = ids_of(seats, n);
        break;
    case TG_WIRE_SEATS_UNBLOCK:
        req.seats_unblock.partition_id = P;
        req.seats_unblock.seats = ids_of(seats, n);
        break;
    default: cr_assert_fail("not a seats operation");
    }
    return hx_call(client, P, &req, &rep);
}

static tg_wire_booking booking(tg_booking_id b)
{
    cr_assert_eq(hx_booking_get(client, b, 0, &rep), TG_OK);
    return rep.booking_get_ok;
}

static tg_seat_word word_of(uint32_t seat)
{
    cr_assert_eq(hx_seat_get(client, P, seat, &rep), TG_OK);
    return rep.seat_get_ok.seat.word;
}

static void assert_seat(uint32_t seat, tg_seat_state state, tg_booking_id b)
{
    tg_seat_word w = word_of(seat);
    cr_assert_eq(tg_seat_word_state(w), state, "seat %u is %s, want %s", seat,
                 tg_seat_state_name(tg_seat_word_state(w)), tg_seat_state_name(state));
    cr_assert_eq(tg_seat_word_booking(w), tg_booking_id_seq(b), "seat %u booking", seat);
}

static void assert_seats(const tg_wire_seat_ids *got, const uint32_t *want, uint32_t n)
{
    cr_assert_eq(got->count, n, "seat list has %u seats, want %u", got->count, n);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(got->ids[i], want[i], "seat list [%u] is %u, want %u", i, got->ids[i],
                     want[i]);
    }
}

/* ---- Bookings ---------------------------------------------------------- */

Test(requests, booking_create_makes_a_created_booking_for_a_shopper_only)
{
    tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = P;
    req.booking_create.user_id = ALICE;
    cr_assert_eq(hx_call(client, P, &req, &rep), TG_OK);
    const tg_wire_booking *b = &rep.booking_create_ok;
    cr_assert_eq(tg_booking_id_partition(b->booking_id), P);
    cr_assert_eq(tg_booking_id_seq(b->booking_id), 1u);
    cr_assert_eq(b->user_id, ALICE);
    cr_assert_eq(b->status, TG_BOOKING_CREATED);
    cr_assert_eq(b->version, 1u);
    cr_assert_eq(b->seats.count, 0u);
    cr_assert_eq(b->deadline_ms - b->created_ms, HOLD_TTL_MS);

    req.booking_create.user_id = 0; /* the system user cannot shop */
    assert_error(hx_call(client, P, &req, &rep), TG_EINVAL, "booking_create for user 0");

    req.booking_create.partition_id = UNSERVED;
    req.booking_create.user_id = ALICE;
    assert_error(hx_call(client, UNSERVED, &req, &rep), TG_EUNAVAILABLE, "unserved partition");
}

Test(requests, booking_get_shows_a_booking_to_its_owner_and_hides_it_from_others)
{
    tg_booking_id b = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hx_booking_get(client, b, ALICE, &rep), TG_OK);
    cr_assert_eq(rep.booking_get_ok.booking_id, b);
    cr_assert_eq(rep.booking_get_ok.user_id, ALICE);
    cr_assert_eq(rep.booking_get_ok.status, TG_BOOKING_CREATED);

    assert_error(hx_booking_get(client, b, BOB, &rep), TG_ENOT_FOUND, "another user's booking");
    assert_error(hx_booking_get(client, tg_booking_id_make(P, 777), ALICE, &rep), TG_ENOT_FOUND,
                 "a booking never made");
    cr_assert_eq(hx_booking_get(client, b, 0, &rep), TG_OK, "the system user sees every booking");
}

/* ---- Holding and releasing ----------------------------------------------- */

Test(requests, seats_hold_takes_free_seats_and_names_the_taken_ones)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    tg_booking_id b = hx_booking_create(client, P, BOB);
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){3, 1, 2}, 3), TG_OK);
    assert_seats(&rep.seats_hold_ok.seats, (uint32_t[]){1, 2, 3}, 3);
    cr_assert_eq(rep.seats_hold_ok.deadline_ms, booking(a).deadline_ms);
    assert_seat(2, TG_SEAT_SELECTED, a);

    assert_error(hold(b, BOB, (uint32_t[]){0, 2, 4}, 3), TG_ESEAT_TAKEN, "hold a held seat");
    assert_seats(&rep.error.seats, (uint32_t[]){2}, 1);
    assert_seat(0, TG_SEAT_FREE, 0); /* all or nothing */
    assert_seat(4, TG_SEAT_FREE, 0);
    cr_assert_eq(booking(b).seats.count, 0u);

    assert_error(hold(a, ALICE, (uint32_t[]){SEATS}, 1), TG_ESEAT_RANGE, "seat past the end");
    assert_error(hold(a, ALICE, (uint32_t[]){5, 5}, 2), TG_EINVAL, "the same seat twice");
    assert_error(hold(b, ALICE, (uint32_t[]){6}, 1), TG_ENOT_FOUND, "someone else's booking");
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32},
                      13),
                 TG_OK);
    assert_error(hold(a, ALICE, (uint32_t[]){40}, 1), TG_ETOO_MANY_SEATS, "a 17th seat");
}

Test(requests, seats_hold_best_picks_adjacent_seats_or_finds_none)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    tg_msg req = {.type = TG_WIRE_SEATS_HOLD_BEST};
    req.seats_hold_best.booking_id = a;
    req.seats_hold_best.user_id = ALICE;
    req.seats_hold_best.quantity = 4;
    req.seats_hold_best.section = 1;
    req.seats_hold_best.adjacent_only = true;
    cr_assert_eq(hx_call(client, P, &req, &rep), TG_OK);
    const tg_wire_seat_ids got = rep.seats_hold_best_ok.seats;
    cr_assert_eq(got.count, 4u);
    for (uint32_t i = 0; i < 4; i++) {
        cr_assert(got.ids[i] >= 30 && got.ids[i] < 60, "seat %u is not in S1", got.ids[i]);
        cr_assert(i == 0 || got.ids[i] == got.ids[i - 1] + 1, "seats are not side by side");
        assert_seat(got.ids[i], TG_SEAT_SELECTED, a);
    }
    cr_assert_eq(got.ids[0] / 10, got.ids[3] / 10, "seats are not in one row");

    tg_booking_id b = hx_booking_create(client, P, BOB);
    req.seats_hold_best.booking_id = b;
    req.seats_hold_best.user_id = BOB;
    req.seats_hold_best.quantity = 11; /* rows have ten seats */
    assert_error(hx_call(client, P, &req, &rep), TG_ENO_SEATS, "eleven adjacent seats");
    req.seats_hold_best.quantity = 0;
    assert_error(hx_call(client, P, &req, &rep), TG_EINVAL, "zero seats");
    req.seats_hold_best.quantity = 2;
    req.seats_hold_best.section = 5; /* there are two sections */
    assert_error(hx_call(client, P, &req, &rep), TG_EINVAL, "a section that does not exist");
    cr_assert_eq(booking(b).seats.count, 0u);
}

Test(requests, seats_release_frees_only_seats_the_booking_holds)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){1, 2, 3}, 3), TG_OK);
    cr_assert_eq(seats_op(TG_WIRE_SEATS_RELEASE, a, ALICE, (uint32_t[]){2}, 1), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_SEATS_RELEASE_OK);
    assert_seat(2, TG_SEAT_FREE, 0);
    tg_wire_booking after = booking(a);
    assert_seats(&after.seats, (uint32_t[]){1, 3}, 2);

    assert_error(seats_op(TG_WIRE_SEATS_RELEASE, a, ALICE, (uint32_t[]){2}, 1), TG_ESEAT_NOT_HELD,
                 "release a seat released already");
    assert_error(seats_op(TG_WIRE_SEATS_RELEASE, a, ALICE, (uint32_t[]){1, 9}, 2),
                 TG_ESEAT_NOT_HELD, "release a held and a free seat");
    assert_seat(1, TG_SEAT_SELECTED, a); /* all or nothing */
    assert_error(seats_op(TG_WIRE_SEATS_RELEASE, a, BOB, (uint32_t[]){1}, 1), TG_ENOT_FOUND,
                 "release from someone else's booking");
}

Test(requests, booking_cancel_frees_the_seats_once)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){7, 8}, 2), TG_OK);
    assert_error(booking_op(TG_WIRE_BOOKING_CANCEL, a, BOB), TG_ENOT_FOUND,
                 "cancel someone else's booking");
    cr_assert_eq(booking_op(TG_WIRE_BOOKING_CANCEL, a, ALICE), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_BOOKING_CANCEL_OK);
    cr_assert_eq(booking(a).status, TG_BOOKING_CANCELLED);
    assert_seat(7, TG_SEAT_FREE, 0);
    assert_seat(8, TG_SEAT_FREE, 0);
    assert_error(booking_op(TG_WIRE_BOOKING_CANCEL, a, ALICE), TG_EBOOKING_STATE,
                 "cancel twice");
}

/* ---- Payments ------------------------------------------------------------ */

Test(requests, payment_begin_reserves_the_seats_for_the_payment_window)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    assert_error(booking_op(TG_WIRE_PAYMENT_BEGIN, a, ALICE), TG_EBOOKING_STATE,
                 "pay for no seats");
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){40, 41}, 2), TG_OK);
    int64_t before = booking(a).created_ms;
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, a, ALICE), TG_OK);
    int64_t deadline = rep.payment_begin_ok.deadline_ms;
    cr_assert(deadline >= before + PAYMENT_WINDOW_MS &&
                  deadline <= before + PAYMENT_WINDOW_MS + 60000,
              "payment deadline %lld is not about created + window", (long long)deadline);
    tg_wire_booking b = booking(a);
    cr_assert_eq(b.status, TG_BOOKING_PENDING_PAYMENT);
    cr_assert_eq(b.deadline_ms, deadline);
    assert_seat(40, TG_SEAT_RESERVED, a);
    assert_seat(41, TG_SEAT_RESERVED, a);
    assert_error(hold(a, ALICE, (uint32_t[]){42}, 1), TG_EBOOKING_STATE, "hold while paying");
    assert_error(booking_op(TG_WIRE_PAYMENT_BEGIN, a, ALICE), TG_EBOOKING_STATE, "begin twice");
}

Test(requests, payment_confirm_sells_the_seats_and_is_idempotent)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){50}, 1), TG_OK);
    assert_error(booking_op(TG_WIRE_PAYMENT_CONFIRM, a, 0), TG_EBOOKING_STATE,
                 "confirm before payment began");
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, a, ALICE), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_CONFIRM, a, 0), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_PAYMENT_CONFIRM_OK);
    cr_assert_eq(booking(a).status, TG_BOOKING_PAID);
    assert_seat(50, TG_SEAT_SOLD, a);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_CONFIRM, a, 0), TG_OK, "confirm twice");
    assert_error(booking_op(TG_WIRE_BOOKING_CANCEL, a, ALICE), TG_EBOOKING_STATE,
                 "cancel a paid booking");
    assert_error(booking_op(TG_WIRE_PAYMENT_CONFIRM, tg_booking_id_make(P, 555), 0),
                 TG_ENOT_FOUND, "confirm a booking never made");
}

Test(requests, payment_fail_frees_the_seats_unless_paid)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){51, 52}, 2), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, a, ALICE), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_FAIL, a, 0), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_PAYMENT_FAIL_OK);
    cr_assert_eq(booking(a).status, TG_BOOKING_FAILED);
    assert_seat(51, TG_SEAT_FREE, 0);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_FAIL, a, 0), TG_OK, "fail twice");

    tg_booking_id paid = hx_booking_create(client, P, BOB);
    cr_assert_eq(hold(paid, BOB, (uint32_t[]){53}, 1), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, paid, BOB), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_CONFIRM, paid, 0), TG_OK);
    assert_error(booking_op(TG_WIRE_PAYMENT_FAIL, paid, 0), TG_EBOOKING_STATE,
                 "fail a paid booking");
    assert_seat(53, TG_SEAT_SOLD, paid);
}

/* ---- Organizer: blocking seats ------------------------------------------- */

Test(requests, seats_block_takes_free_seats_off_sale_and_unblock_returns_them)
{
    cr_assert_eq(seats_op(TG_WIRE_SEATS_BLOCK, 0, 0, (uint32_t[]){10, 11}, 2), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_SEATS_BLOCK_OK);
    assert_seat(10, TG_SEAT_BLOCKED, 0);
    assert_seat(11, TG_SEAT_BLOCKED, 0);

    assert_error(seats_op(TG_WIRE_SEATS_BLOCK, 0, 0, (uint32_t[]){12, 11}, 2), TG_ESEAT_TAKEN,
                 "block a blocked seat");
    assert_seats(&rep.error.seats, (uint32_t[]){11}, 1);
    assert_seat(12, TG_SEAT_FREE, 0);

    tg_booking_id a = hx_booking_create(client, P, ALICE);
    assert_error(hold(a, ALICE, (uint32_t[]){10}, 1), TG_ESEAT_TAKEN, "hold a blocked seat");
    assert_seats(&rep.error.seats, (uint32_t[]){10}, 1);

    assert_error(seats_op(TG_WIRE_SEATS_UNBLOCK, 0, 0, (uint32_t[]){11, 12}, 2), TG_EINVAL,
                 "unblock a seat that is not blocked");
    assert_seat(11, TG_SEAT_BLOCKED, 0);
    cr_assert_eq(seats_op(TG_WIRE_SEATS_UNBLOCK, 0, 0, (uint32_t[]){10, 11}, 2), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_SEATS_UNBLOCK_OK);
    assert_seat(10, TG_SEAT_FREE, 0);
    assert_error(seats_op(TG_WIRE_SEATS_BLOCK, 0, 0, (uint32_t[]){SEATS + 1}, 1), TG_ESEAT_RANGE,
                 "block a seat past the end");
}

/* ---- Reads ----------------------------------------------------------------- */

Test(requests, seat_get_describes_a_seat_and_its_place)
{
    cr_assert_eq(hx_seat_get(client, P, 0, &rep), TG_OK);
    tg_wire_seat s = rep.seat_get_ok.seat;
    cr_assert_eq(s.seat_id, 0u);
    cr_assert_eq(tg_seat_word_state(s.word), TG_SEAT_FREE);
    cr_assert_eq(s.section, 0u);
    cr_assert_eq(s.row, 0u);
    cr_assert_eq(s.number, 1u);
    cr_assert_eq(s.price_minor, 1000);

    cr_assert_eq(hx_seat_get(client, P, 35, &rep), TG_OK);
    s = rep.seat_get_ok.seat;
    cr_assert_eq(s.section, 1u);
    cr_assert_eq(s.row, 3u);
    cr_assert_eq(s.number, 6u);
    cr_assert_eq(s.price_minor, 2000);

    assert_error(hx_seat_get(client, P, SEATS, &rep), TG_ESEAT_RANGE, "seat past the end");
    assert_error(hx_seat_get(client, UNSERVED, 0, &rep), TG_EUNAVAILABLE, "unserved partition");
}

static tg_err list(uint32_t first, uint32_t count, int32_t state, int32_t row, int32_t section)
{
    tg_msg req = {.type = TG_WIRE_SEATS_LIST};
    req.seats_list = (__typeof__(req.seats_list)){.partition_id = P,
                                                  .first_seat = first,
                                                  .count = count,
                                                  .state = state,
                                                  .row = row,
                                                  .section = section};
    return hx_call(client, P, &req, &rep);
}

static void assert_listed(const uint32_t *want, uint32_t n, uint32_t next)
{
    cr_assert_eq(rep.seats_list_ok.seat_count, n, "listed %u seats, want %u",
                 rep.seats_list_ok.seat_count, n);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(rep.seats_list_ok.seats[i].seat_id, want[i]);
    }
    cr_assert_eq(rep.seats_list_ok.next_seat, next);
}

Test(requests, seats_list_filters_by_state_row_and_section_and_pages_with_next_seat)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){5, 15, 25, 35}, 4), TG_OK);

    cr_assert_eq(list(0, 2, TG_SEAT_SELECTED, -1, -1), TG_OK);
    assert_listed((uint32_t[]){5, 15}, 2, 16);
    cr_assert_eq(tg_seat_word_booking(rep.seats_list_ok.seats[0].word), tg_booking_id_seq(a));
    cr_assert_eq(list(16, 2, TG_SEAT_SELECTED, -1, -1), TG_OK);
    assert_listed((uint32_t[]){25, 35}, 2, 36);
    cr_assert_eq(list(36, 2, TG_SEAT_SELECTED, -1, -1), TG_OK);
    assert_listed(NULL, 0, SEATS);

    cr_assert_eq(list(0, 1000, -1, 1, -1), TG_OK); /* row 1: seats 10..19 */
    assert_listed((uint32_t[]){10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, 10, SEATS);
    cr_assert_eq(list(0, 1000, TG_SEAT_FREE, 3, 1), TG_OK); /* row 3 (S1) but seat 35 */
    assert_listed((uint32_t[]){30, 31, 32, 33, 34, 36, 37, 38, 39}, 9, SEATS);
    cr_assert_eq(list(0, 1000, TG_SEAT_FREE, -1, 1), TG_OK);
    cr_assert_eq(rep.seats_list_ok.seat_count, 29u);
    cr_assert_eq(list(0, 1000, -1, 1, 1), TG_OK, "row 1 is not in S1");
    assert_listed(NULL, 0, SEATS);

    tg_msg req = {.type = TG_WIRE_SEATS_LIST};
    req.seats_list.partition_id = UNSERVED;
    req.seats_list.count = 10;
    req.seats_list.state = req.seats_list.row = req.seats_list.section = -1;
    assert_error(hx_call(client, UNSERVED, &req, &rep), TG_EUNAVAILABLE, "unserved partition");
}

Test(requests, availability_counts_add_up_per_partition_section_and_row)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE); /* SELECTED: 0, 1, 2 */
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){0, 1, 2}, 3), TG_OK);
    tg_booking_id b = hx_booking_create(client, P, BOB); /* RESERVED: 31, 32 */
    cr_assert_eq(hold(b, BOB, (uint32_t[]){31, 32}, 2), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, b, BOB), TG_OK);
    tg_booking_id c = hx_booking_create(client, P, BOB); /* SOLD: 59 */
    cr_assert_eq(hold(c, BOB, (uint32_t[]){59}, 1), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, c, BOB), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_CONFIRM, c, 0), TG_OK);
    cr_assert_eq(seats_op(TG_WIRE_SEATS_BLOCK, 0, 0, (uint32_t[]){12, 13}, 2), TG_OK);

    hx_availability(client, P, &rep, rows_a);
    const __typeof__(rep.availability_ok) *av = &rep.availability_ok;
    const uint32_t want[TG_SEAT_STATE_COUNT] = {52, 3, 2, 1, 2};
    for (uint32_t s = 0; s < TG_SEAT_STATE_COUNT; s++) {
        cr_assert_eq(av->totals.by_state[s], want[s], "%s: %u, want %u",
                     tg_seat_state_name((tg_seat_state)s), av->totals.by_state[s], want[s]);
    }
    cr_assert_eq(hx_counts_sum(&av->totals), SEATS);
    cr_assert_eq(av->section_count, 2u);
    cr_assert_eq(av->row_count, ROWS);
    for (uint32_t sec = 0; sec < 2; sec++) {
        cr_assert_eq(hx_counts_sum(&av->sections[sec]), 30u);
        for (uint32_t s = 0; s < TG_SEAT_STATE_COUNT; s++) {
            uint32_t rows_sum = 0;
            for (uint32_t r = sec * 3; r < sec * 3 + 3; r++) {
                rows_sum += av->rows[r].by_state[s];
            }
            cr_assert_eq(av->sections[sec].by_state[s], rows_sum, "section %u is not its rows",
                         sec);
        }
    }
    for (uint32_t r = 0; r < ROWS; r++) {
        cr_assert_eq(hx_counts_sum(&av->rows[r]), 10u);
    }
    cr_assert_eq(av->rows[0].by_state[TG_SEAT_SELECTED], 3u);
    cr_assert_eq(av->rows[1].by_state[TG_SEAT_BLOCKED], 2u);
    cr_assert_eq(av->rows[3].by_state[TG_SEAT_RESERVED], 2u);
    cr_assert_eq(av->rows[5].by_state[TG_SEAT_SOLD], 1u);
    cr_assert_eq(av->sections[1].by_state[TG_SEAT_FREE], 27u);
    uint64_t head = av->log_head;

    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = P;
    cr_assert_eq(hx_call(client, P, &req, &rep), TG_OK);
    cr_assert_eq(rep.partition_info_ok.log_head, head, "availability carries the log head");

    req = (tg_msg){.type = TG_WIRE_AVAILABILITY};
    req.availability.partition_id = UNSERVED;
    assert_error(hx_call(client, UNSERVED, &req, &rep), TG_EUNAVAILABLE, "unserved partition");
}

Test(requests, partition_info_describes_the_partition)
{
    hx_booking_create(client, P, ALICE);
    hx_booking_create(client, P, BOB);
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = P;
    cr_assert_eq(hx_call(client, P, &req, &rep), TG_OK);
    const __typeof__(rep.partition_info_ok) *i = &rep.partition_info_ok;
    cr_assert_eq(i->partition_id, P);
    cr_assert_eq(i->event_id, EVENT);
    cr_assert_eq(i->seat_count, SEATS);
    cr_assert_eq(i->section_count, 2u);
    cr_assert_eq(i->row_count, ROWS);
    cr_assert_eq(i->log_records, LOG_RECORDS);
    cr_assert_eq(i->hold_ttl_ms, HOLD_TTL_MS);
    cr_assert_eq(i->payment_window_ms, PAYMENT_WINDOW_MS);
    cr_assert(i->booking_capacity >= TG_BOOKINGS_MIN);
    cr_assert(i->segment_bytes > SEATS * sizeof(uint64_t));
    cr_assert_eq(i->bookings_created, 2u);
    cr_assert_eq(i->log_head, 2u, "one log record per booking made");
    cr_assert_eq(i->log_persisted, 0u, "nothing is persisted without a persister");

    req.partition_info.partition_id = UNSERVED;
    assert_error(hx_call(client, UNSERVED, &req, &rep), TG_EUNAVAILABLE, "unserved partition");
}

Test(requests, layout_lists_sections_and_rows)
{
    tg_msg req = {.type = TG_WIRE_LAYOUT};
    req.layout.partition_id = P;
    cr_assert_eq(hx_call(client, P, &req, &rep), TG_OK);
    const __typeof__(rep.layout_ok) *l = &rep.layout_ok;
    cr_assert_eq(l->section_count, 2u);
    cr_assert_str_eq(l->sections[1].name, "S1");
    cr_assert_str_eq(l->sections[1].currency, "EUR");
    cr_assert_eq(l->sections[1].price_minor, 2000);
    cr_assert_eq(l->sections[1].row_first, 3u);
    cr_assert_eq(l->sections[1].row_count, 3u);
    cr_assert_eq(l->sections[1].seat_first, 30u);
    cr_assert_eq(l->sections[1].seat_count, 30u);
    cr_assert_eq(l->row_count, ROWS);
    for (uint32_t r = 0; r < ROWS; r++) {
        char name[8];
        snprintf(name, sizeof(name), "R%u", r % 3);
        cr_assert_str_eq(l->rows[r].name, name);
        cr_assert_eq(l->rows[r].section, r / 3);
        cr_assert_eq(l->rows[r].seat_first, r * 10);
        cr_assert_eq(l->rows[r].seat_count, 10u);
    }
    req.layout.partition_id = UNSERVED;
    assert_error(hx_call(client, UNSERVED, &req, &rep), TG_EUNAVAILABLE, "unserved partition");
}

/* ---- Operations ---------------------------------------------------------- */

static uint64_t op_count(tg_wire_type type, tg_err code)
{
    for (uint32_t i = 0; i < rep.stats_ok.op_count; i++) {
        const tg_wire_op_count *o = &rep.stats_ok.ops[i];
        if (o->type == (uint32_t)type && o->code == (uint32_t)code) {
            return o->count;
        }
    }
    return 0;
}

Test(requests, stats_counts_requests_by_type_and_outcome)
{
    for (int i = 0; i < 3; i++) {
        hx_booking_create(client, P, ALICE);
    }
    tg_booking_id a = tg_booking_id_make(P, 1);
    for (int i = 0; i < 2; i++) {
        assert_error(hx_booking_get(client, a, BOB, &rep), TG_ENOT_FOUND, "get");
    }
    assert_error(hold(a, ALICE, (uint32_t[]){SEATS + 5}, 1), TG_ESEAT_RANGE, "hold");
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){4}, 1), TG_OK);

    tg_msg req = {.type = TG_WIRE_STATS};
    cr_assert_eq(tg_client_call_to(client, unit.rep_url, &req, HX_CALL_TIMEOUT_MS, NULL, &rep),
                 TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_STATS_OK);
    cr_assert_eq(op_count(TG_WIRE_BOOKING_CREATE, TG_OK), 3u);
    cr_assert_eq(op_count(TG_WIRE_BOOKING_GET, TG_ENOT_FOUND), 2u);
    cr_assert_eq(op_count(TG_WIRE_BOOKING_GET, TG_OK), 0u);
    cr_assert_eq(op_count(TG_WIRE_SEATS_HOLD, TG_ESEAT_RANGE), 1u);
    cr_assert_eq(op_count(TG_WIRE_SEATS_HOLD, TG_OK), 1u);
    cr_assert(op_count(TG_WIRE_STATS, TG_OK) >= 1u, "the start-up probe asked for stats");
    cr_assert_eq(rep.stats_ok.partitions, 1u);
    cr_assert_eq(rep.stats_ok.log_depth, 4u, "three bookings and one seat, unpersisted");

    /* stats takes no fields: one more is a protocol error. */
    nng_socket s = hx_raw_open(unit.rep_url, 5000);
    static const uint8_t bad_stats[] = {0x93, TG_WIRE_STATS, TG_WIRE_VERSION, 0x01};
    uint8_t buf[4096];
    int64_t n = hx_raw_call(s, bad_stats, sizeof(bad_stats), buf, sizeof(buf));
    nng_close(s);
    cr_assert(n > 0, "no reply to a bad stats request: %s", nng_strerror((int)-n));
    cr_assert_eq(tg_wire_decode(buf, (size_t)n, NULL, &rep, NULL), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_ERROR);
    cr_assert_eq(rep.error.code, (uint32_t)TG_EPROTO);
}

Test(requests, log_read_returns_the_changes_and_log_ack_marks_them_persisted)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){9, 8}, 2), TG_OK);
    tg_msg req = {.type = TG_WIRE_LOG_READ};
    req.log_read.partition_id = P;
    req.log_read.from_seq = 1;
    req.log_read.max = 100;
    cr_assert_eq(hx_call(client, P, &req, &rep), TG_OK);
    const __typeof__(rep.log_read_ok) *lr = &rep.log_read_ok;
    cr_assert_eq(lr->log_head, 3u);
    cr_assert_eq(lr->record_count, 3u);
    const tg_wire_log_record *r = lr->records;
    cr_assert_eq(r[0].seq, 1u);
    cr_assert_eq(r[0].kind, 2u, "the booking first");
    cr_assert_eq(r[0].ident, tg_booking_id_seq(a));
    cr_assert_eq(r[0].status, TG_BOOKING_CREATED);
    cr_assert_eq(r[0].word, ALICE);
    for (uint32_t i = 1; i < 3; i++) {
        cr_assert_eq(r[i].seq, i + 1);
        cr_assert_eq(r[i].kind, 1u, "then its seats");
        cr_assert_eq(r[i].ident, 7 + i);
        cr_assert_eq(tg_seat_word_state(r[i].word), TG_SEAT_SELECTED);
        cr_assert_eq(tg_seat_word_booking(r[i].word), tg_booking_id_seq(a));
    }
    req.log_read.from_seq = 4;
    cr_assert_eq(hx_call(client, P, &req, &rep), TG_OK);
    cr_assert_eq(rep.log_read_ok.record_count, 0u, "nothing past the head");

    tg_msg ack = {.type = TG_WIRE_LOG_ACK};
    ack.log_ack.partition_id = P;
    ack.log_ack.seq = 3;
    cr_assert_eq(hx_call(client, P, &ack, &rep), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_LOG_ACK_OK);
    tg_msg info = {.type = TG_WIRE_PARTITION_INFO};
    info.partition_info.partition_id = P;
    cr_assert_eq(hx_call(client, P, &info, &rep), TG_OK);
    cr_assert_eq(rep.partition_info_ok.log_persisted, 3u);

    ack.log_ack.seq = 10;
    assert_error(hx_call(client, P, &ack, &rep), TG_EINVAL, "ack what was never written");
    ack.log_ack.partition_id = UNSERVED;
    ack.log_ack.seq = 1;
    assert_error(hx_call(client, UNSERVED, &ack, &rep), TG_EUNAVAILABLE, "ack, unserved");
    req.log_read.partition_id = UNSERVED;
    assert_error(hx_call(client, UNSERVED, &req, &rep), TG_EUNAVAILABLE, "read, unserved");
}

Test(requests, every_request_about_a_partition_not_served_is_unavailable)
{
    tg_booking_id elsewhere = tg_booking_id_make(UNSERVED, 1);
    tg_msg reqs[TG_WIRE_REQUEST_LAST + 1];
    memset(reqs, 0, sizeof(reqs));
    for (uint32_t t = 1; t <= TG_WIRE_REQUEST_LAST; t++) {
        reqs[t].type = (tg_wire_type)t;
    }
    reqs[TG_WIRE_BOOKING_CREATE].booking_create = (__typeof__(reqs[0].booking_create)){UNSERVED,
                                                                                        ALICE};
    reqs[TG_WIRE_BOOKING_GET].booking_get.booking_id = elsewhere;
    reqs[TG_WIRE_SEATS_HOLD].seats_hold.booking_id = elsewhere;
    reqs[TG_WIRE_SEATS_HOLD].seats_hold.seats = ids_of((uint32_t[]){1}, 1);
    reqs[TG_WIRE_SEATS_HOLD_BEST].seats_hold_best.booking_id = elsewhere;
    reqs[TG_WIRE_SEATS_HOLD_BEST].seats_hold_best.quantity = 1;
    reqs[TG_WIRE_SEATS_HOLD_BEST].seats_hold_best.section = -1;
    reqs[TG_WIRE_SEATS_RELEASE].seats_release.booking_id = elsewhere;
    reqs[TG_WIRE_SEATS_RELEASE].seats_release.seats = ids_of((uint32_t[]){1}, 1);
    reqs[TG_WIRE_BOOKING_CANCEL].booking_cancel.booking_id = elsewhere;
    reqs[TG_WIRE_PAYMENT_BEGIN].payment_begin.booking_id = elsewhere;
    reqs[TG_WIRE_PAYMENT_CONFIRM].payment_confirm.booking_id = elsewhere;
    reqs[TG_WIRE_PAYMENT_FAIL].payment_fail.booking_id = elsewhere;
    reqs[TG_WIRE_SEATS_BLOCK].seats_block.partition_id = UNSERVED;
    reqs[TG_WIRE_SEATS_BLOCK].seats_block.seats = ids_of((uint32_t[]){1}, 1);
    reqs[TG_WIRE_SEATS_UNBLOCK].seats_unblock.partition_id = UNSERVED;
    reqs[TG_WIRE_SEATS_UNBLOCK].seats_unblock.seats = ids_of((uint32_t[]){1}, 1);
    reqs[TG_WIRE_SEAT_GET].seat_get.partition_id = UNSERVED;
    reqs[TG_WIRE_SEATS_LIST].seats_list =
        (__typeof__(reqs[0].seats_list)){UNSERVED, 0, 10, -1, -1, -1};
    reqs[TG_WIRE_AVAILABILITY].availability.partition_id = UNSERVED;
    reqs[TG_WIRE_PARTITION_INFO].partition_info.partition_id = UNSERVED;
    reqs[TG_WIRE_LAYOUT].layout.partition_id = UNSERVED;
    reqs[TG_WIRE_LOG_READ].log_read = (__typeof__(reqs[0].log_read)){UNSERVED, 1, 10};
    reqs[TG_WIRE_LOG_ACK].log_ack.partition_id = UNSERVED;
    reqs[TG_WIRE_PARTITION_RESTORE].partition_restore.partition_id = UNSERVED;
    reqs[TG_WIRE_PARTITION_RESET].partition_reset.partition_id = UNSERVED;
    reqs[TG_WIRE_REPL_BACKUPS].repl_backups.partition_id = UNSERVED;
    reqs[TG_WIRE_REPL_APPEND].repl_append.partition_id = UNSERVED;
    reqs[TG_WIRE_REPL_SNAPSHOT].repl_snapshot.partition_id = UNSERVED;
    reqs[TG_WIRE_REPL_STATUS].repl_status.partition_id = UNSERVED;
    for (uint32_t t = 1; t <= TG_WIRE_REQUEST_LAST; t++) {
        if (t == TG_WIRE_STATS || t == TG_WIRE_PARTITION_CREATE) {
            continue; /* about no partition, or making one */
        }
        assert_error(hx_call(client, UNSERVED, &reqs[t], &rep), TG_EUNAVAILABLE,
                     tg_wire_type_name((tg_wire_type)t));
    }
}

/* ---- Resetting a partition (tests and demos) ---------------------------------- */

static tg_err reset_partition(uint32_t partition)
{
    tg_msg req = {.type = TG_WIRE_PARTITION_RESET};
    req.partition_reset.partition_id = partition;
    return hx_call(client, partition, &req, &rep);
}

static uint64_t log_head(void)
{
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = P;
    cr_assert_eq(hx_call(client, P, &req, &rep), TG_OK);
    return rep.partition_info_ok.log_head;
}

static void assert_totals(const uint32_t want[TG_SEAT_STATE_COUNT], const char *what)
{
    hx_availability(client, P, &rep, rows_a);
    for (uint32_t s = 0; s < TG_SEAT_STATE_COUNT; s++) {
        cr_assert_eq(rep.availability_ok.totals.by_state[s], want[s], "%s: %s %u, want %u", what,
                     tg_seat_state_name((tg_seat_state)s), rep.availability_ok.totals.by_state[s],
                     want[s]);
    }
}

Test(requests, partition_reset_frees_held_reserved_and_sold_seats_and_selling_goes_on)
{
    tg_booking_id held = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(held, ALICE, (uint32_t[]){0, 1}, 2), TG_OK);
    tg_booking_id pending = hx_booking_create(client, P, BOB);
    cr_assert_eq(hold(pending, BOB, (uint32_t[]){10, 11}, 2), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, pending, BOB), TG_OK);
    tg_booking_id sold = hx_booking_create(client, P, BOB);
    cr_assert_eq(hold(sold, BOB, (uint32_t[]){20, 21, 22}, 3), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, sold, BOB), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_CONFIRM, sold, 0), TG_OK);
    cr_assert_eq(seats_op(TG_WIRE_SEATS_BLOCK, 0, 0, (uint32_t[]){59}, 1), TG_OK);
    assert_totals((const uint32_t[]){52, 2, 2, 3, 1}, "before the reset");
    uint64_t head = log_head();

    cr_assert_eq(reset_partition(P), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_PARTITION_RESET_OK);
    cr_assert_eq(rep.partition_reset_ok.bookings_cancelled, 3u);
    cr_assert_eq(rep.partition_reset_ok.seats_freed, 7u);
    assert_totals((const uint32_t[]){SEATS - 1, 0, 0, 0, 1}, "after the reset");
    cr_assert_eq(log_head(), head + 3 + 7, "a record per booking and per seat, as cancels");
    const tg_booking_id ids[] = {held, pending, sold};
    for (uint32_t i = 0; i < 3; i++) {
        tg_wire_booking b = booking(ids[i]);
        cr_assert_eq(b.status, TG_BOOKING_CANCELLED, "booking %u is %s", i,
                     tg_booking_status_name((tg_booking_status)b.status));
        cr_assert_eq(b.seats.count, 0u);
    }
    assert_seat(21, TG_SEAT_FREE, 0);
    assert_seat(59, TG_SEAT_BLOCKED, 0);
    assert_error(booking_op(TG_WIRE_PAYMENT_CONFIRM, pending, 0), TG_EBOOKING_STATE,
                 "a payment arriving after the reset sells nothing");

    /* Selling goes on: the freed seats sell again. */
    tg_booking_id again = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(again, ALICE, (uint32_t[]){0, 11, 21}, 3), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_BEGIN, again, ALICE), TG_OK);
    cr_assert_eq(booking_op(TG_WIRE_PAYMENT_CONFIRM, again, 0), TG_OK);
    assert_seat(21, TG_SEAT_SOLD, again);
    assert_error(hold(hx_booking_create(client, P, BOB), BOB, (uint32_t[]){59}, 1),
                 TG_ESEAT_TAKEN, "a blocked seat stays off sale");

    cr_assert_eq(reset_partition(P), TG_OK, "a second reset");
    cr_assert_eq(rep.partition_reset_ok.bookings_cancelled, 2u, "the new sale and Bob's booking");
    cr_assert_eq(rep.partition_reset_ok.seats_freed, 3u);
    cr_assert_eq(reset_partition(P), TG_OK);
    cr_assert_eq(rep.partition_reset_ok.bookings_cancelled, 0u, "nothing left to reset");
    cr_assert_eq(rep.partition_reset_ok.seats_freed, 0u);
    assert_error(reset_partition(UNSERVED), TG_EUNAVAILABLE, "unserved partition");

    tg_msg req = {.type = TG_WIRE_STATS};
    cr_assert_eq(tg_client_call_to(client, unit.rep_url, &req, HX_CALL_TIMEOUT_MS, NULL, &rep),
                 TG_OK);
    cr_assert_eq(op_count(TG_WIRE_PARTITION_RESET, TG_OK), 3u, "the last request type is counted");
    cr_assert_eq(op_count(TG_WIRE_PARTITION_RESET, TG_EUNAVAILABLE), 1u);
}

/* ---- Creating and restoring a partition over the wire ------------------------ */

#define NEW_P 30u

static tg_err create_partition(uint32_t partition, uint64_t event, uint32_t sections)
{
    static tg_wire_row rows[2] = {{.name = "R0", .seat_count = 10},
                                  {.name = "R1", .seat_count = 10}};
    tg_msg req = {.type = TG_WIRE_PARTITION_CREATE};
    req.partition_create.partition_id = partition;
    req.partition_create.event_id = event;
    req.partition_create.log_records = 1024;
    req.partition_create.section_count = sections;
    memcpy(req.partition_create.sections[0].name, "Floor", 6);
    memcpy(req.partition_create.sections[0].currency, "EUR", 4);
    req.partition_create.sections[0].price_minor = 4500;
    req.partition_create.sections[0].row_count = 2;
    req.partition_create.row_count = 2;
    req.partition_create.rows = rows;
    return tg_client_call_to(client, unit.rep_url, &req, HX_CALL_TIMEOUT_MS, NULL, &rep);
}

static tg_err restore(uint32_t partition, uint32_t phase, const tg_wire_booking_state *bookings,
                      uint32_t booking_count, const tg_wire_change *seats, uint32_t seat_count)
{
    tg_msg req = {.type = TG_WIRE_PARTITION_RESTORE};
    req.partition_restore = (__typeof__(req.partition_restore)){
        .partition_id = partition,
        .phase = phase,
        .epoch = 3,
        .log_base = 40,
        .booking_count = booking_count,
        .bookings = (tg_wire_booking_state *)bookings,
        .seat_count = seat_count,
        .seats = (tg_wire_change *)seats};
    return tg_client_call_to(client, unit.rep_url, &req, HX_CALL_TIMEOUT_MS, NULL, &rep);
}

Test(requests, partition_create_and_restore_bring_a_partition_into_service)
{
    cr_assert_eq(tg_client_route(client, NEW_P, unit.rep_url), TG_OK);
    cr_assert_eq(create_partition(NEW_P, 77, 1), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_PARTITION_CREATE_OK);
    tg_msg info = {.type = TG_WIRE_PARTITION_INFO};
    info.partition_info.partition_id = NEW_P;
    assert_error(hx_call(client, NEW_P, &info, &rep), TG_EUNAVAILABLE, "still restoring");

    const int64_t far = INT64_C(4102444800000); /* 2100-01-01: never due in this test */
    const tg_wire_booking_state bookings[2] = {
        {.booking_id = tg_booking_id_make(NEW_P, 1), .user_id = ALICE,
         .status = TG_BOOKING_CREATED, .version = 1, .created_ms = far - 1000,
         .deadline_ms = far},
        {.booking_id = tg_booking_id_make(NEW_P, 2), .user_id = BOB, .status = TG_BOOKING_PAID,
         .version = 3, .created_ms = far - 2000, .deadline_ms = far},
    };
    const tg_wire_change seats[3] = {
        {.seat_id = 2, .word = tg_seat_word_make(TG_SEAT_SELECTED, 5, 1)},
        {.seat_id = 15, .word = tg_seat_word_make(TG_SEAT_SOLD, 7, 2)},
        {.seat_id = 19, .word = tg_seat_word_make(TG_SEAT_BLOCKED, 1, 0)},
    };
    assert_error(restore(NEW_P, TG_WIRE_RESTORE_DATA, bookings, 2, seats, 3),
                 TG_EPARTITION_STATE, "data before begin");
    cr_assert_eq(restore(NEW_P, TG_WIRE_RESTORE_BEGIN, NULL, 0, NULL, 0), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_PARTITION_RESTORE_OK);
    cr_assert_eq(restore(NEW_P, TG_WIRE_RESTORE_DATA, bookings, 2, seats, 3), TG_OK);
    cr_assert_eq(restore(NEW_P, TG_WIRE_RESTORE_END, NULL, 0, NULL, 0), TG_OK);

    cr_assert_eq(hx_call(client, NEW_P, &info, &rep), TG_OK, "served once restored");
    cr_assert_eq(rep.partition_info_ok.event_id, 77u);
    cr_assert_eq(rep.partition_info_ok.seat_count, 20u);
    cr_assert_eq(rep.partition_info_ok.map_epoch, 3u);
    cr_assert_eq(rep.partition_info_ok.log_head, 40u, "the log continues from log_base");
    cr_assert_eq(hx_booking_get(client, tg_booking_id_make(NEW_P, 1), ALICE, &rep), TG_OK);
    cr_assert_eq(rep.booking_get_ok.status, TG_BOOKING_CREATED);
    assert_seats(&rep.booking_get_ok.seats, (uint32_t[]){2}, 1);
    cr_assert_eq(rep.booking_get_ok.deadline_ms, far);
    cr_assert_eq(hx_seat_get(client, NEW_P, 15, &rep), TG_OK);
    cr_assert_eq(rep.seat_get_ok.seat.word, seats[1].word, "the word is restored as it was");
    tg_booking_id b = hx_booking_create(client, NEW_P, BOB);
    cr_assert_eq(tg_booking_id_seq(b), 3u, "booking seqs continue after the restored ones");
    assert_error(hold(b, BOB, (uint32_t[]){19, 2}, 2), TG_ESEAT_TAKEN, "restored seats");
    assert_seats(&rep.error.seats, (uint32_t[]){2, 19}, 2);

    assert_error(restore(NEW_P, TG_WIRE_RESTORE_BEGIN, NULL, 0, NULL, 0), TG_EPARTITION_STATE,
                 "restore a partition that serves");
    assert_error(restore(UNSERVED, TG_WIRE_RESTORE_BEGIN, NULL, 0, NULL, 0), TG_EUNAVAILABLE,
                 "restore a partition never created");
    assert_error(create_partition(P, EVENT, 1), TG_EEXIST, "create a partition that serves");
    assert_error(create_partition(31, 78, 0), TG_EINVAL, "a partition without sections");
}

/* ---- Seat changes on the PUB socket ---------------------------------------- */

static bool await_change(nng_socket sub, uint32_t seat, tg_seat_state state, int timeout_ms,
                         int64_t *arrived_ms)
{
    static tg_wire_change changes[TG_WIRE_CHANGES_MAX];
    const tg_wire_space space = {.changes = changes, .changes_capacity = TG_WIRE_CHANGES_MAX};
    int64_t deadline = hx_now_ms() + timeout_ms;
    while (hx_now_ms() < deadline) {
        nng_msg *msg;
        if (nng_recvmsg(sub, &msg, 0) != 0) {
            continue; /* receive timeout: look at the clock again */
        }
        uint8_t topic[TG_WIRE_TOPIC_BYTES];
        tg_wire_topic(P, topic);
        cr_assert(nng_msg_len(msg) > TG_WIRE_TOPIC_BYTES);
        cr_assert(memcmp(nng_msg_body(msg), topic, sizeof(topic)) == 0, "topic is not P");
        tg_msg ev;
        const char *why = NULL;
        tg_err err = tg_wire_decode_event(nng_msg_body(msg), nng_msg_len(msg), &space, &ev, &why);
        nng_msg_free(msg);
        cr_assert_eq(err, TG_OK, "bad event: %s", why ? why : "?");
        cr_assert_eq(ev.type, TG_WIRE_SEAT_CHANGES);
        cr_assert_eq(ev.seat_changes.partition_id, P);
        cr_assert(ev.seat_changes.from_seq <= ev.seat_changes.to_seq);
        for (uint32_t i = 0; i < ev.seat_changes.change_count; i++) {
            if (changes[i].seat_id == seat && tg_seat_word_state(changes[i].word) == state) {
                *arrived_ms = hx_now_ms();
                return true;
            }
        }
    }
    return false;
}

Test(requests, a_hold_is_published_as_seat_changes_on_the_partition_topic)
{
    nng_socket sub;
    cr_assert_eq(nng_sub0_open(&sub), 0);
    uint8_t topic[TG_WIRE_TOPIC_BYTES];
    tg_wire_topic(P, topic);
    cr_assert_eq(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, topic, sizeof(topic)), 0);
    cr_assert_eq(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 50), 0);
    cr_assert_eq(nng_dial(sub, unit.pub_url, NULL, 0), 0);

    /* The PUB side may add the new pipe a little after the dial returns:
     * block and unblock a seat until a change arrives, then measure. */
    bool joined = false;
    int64_t at;
    for (int round = 0; round < 50 && !joined; round++) {
        cr_assert_eq(seats_op(TG_WIRE_SEATS_BLOCK, 0, 0, (uint32_t[]){59}, 1), TG_OK);
        cr_assert_eq(seats_op(TG_WIRE_SEATS_UNBLOCK, 0, 0, (uint32_t[]){59}, 1), TG_OK);
        joined = await_change(sub, 59, TG_SEAT_BLOCKED, 100, &at);
    }
    cr_assert(joined, "no seat change arrived within 5 s of subscribing");

    tg_booking_id a = hx_booking_create(client, P, ALICE);
    int64_t t0 = hx_now_ms();
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){17}, 1), TG_OK);
    cr_assert(await_change(sub, 17, TG_SEAT_SELECTED, 1000, &at),
              "the hold was not published within 1 s");
    cr_log_info("hold published %lld ms after the request", (long long)(at - t0));
    nng_close(sub);
}

/* ---- Expiry (its own unit: a short hold TTL) -------------------------------- */

static void start_short_ttl_unit(void)
{
    hx_unit_init(&unit, "ttl");
    hx_layout l = {.partition_id = P, .event_id = EVENT, .sections = 1, .rows = 1, .seats = 10,
                   .hold_ttl_ms = 300, .log_records = LOG_RECORDS};
    hx_write_layout(&unit, &l);
    hx_add_flag(&unit, "--sweep-interval-ms");
    hx_add_flag(&unit, "20");
    hx_start(&unit);
    client = hx_client(&unit, P, 4);
}

Test(expiry, a_hold_past_its_ttl_is_expired_and_its_seats_freed, .init = start_short_ttl_unit,
     .fini = stop_unit, .timeout = 30)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    cr_assert_eq(hold(a, ALICE, (uint32_t[]){4, 5}, 2), TG_OK);
    int64_t deadline = hx_now_ms() + 3000;
    tg_wire_booking b = booking(a);
    while (b.status == TG_BOOKING_CREATED && hx_now_ms() < deadline) {
        hx_sleep_ms(20);
        b = booking(a);
    }
    cr_assert_eq(b.status, TG_BOOKING_EXPIRED, "the sweeper did not expire the booking in 3 s");
    assert_seat(4, TG_SEAT_FREE, 0);
    assert_seat(5, TG_SEAT_FREE, 0);
    assert_error(hold(a, ALICE, (uint32_t[]){6}, 1), TG_EBOOKING_STATE, "hold after expiry");
    hx_stop_ok(&unit);
}

/*
 * gateway_flow_test.c — the shopper's path of seed 001 end to end through
 * tixgrid-gateway, and what one shopper may not do to another's booking.
 *
 * The grid (gwh.h): PostgreSQL with the demo data, one unit serving the
 * demo concert (event 1, partition 1; seat 100 is the API's 4294967396),
 * the drain and a gateway.  The flow runs as the seed's client does —
 * create a booking, select a seat, release it, select again, cancel — and
 * each step is checked in the grid (the booking, the seat list,
 * availability) and, once the drain caught up, in PostgreSQL.
 */
#include "gwh.h"
#include "payh.h"

#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void fini(void)
{
    gwh_fini_all();
}

TestSuite(gateway_flow, .fini = fini, .timeout = 90);

#define SEAT_100 UINT64_C(4294967396)

/* The status of seat_no s of the concert through GET /api/seats. */
static const char *seat_status(gwh_gateway *gw, const char *auth, uint32_t s)
{
    json_t *page = gwh_expect(gwh_http(gw, "GET", auth, NULL,
                                       "/api/seats?event_id=1&page=%u&pageSize=1", s + 1),
                              200);
    cr_assert_eq(gwh_int(page, "items.0.seat_no"), s);
    return gwh_str(page, "items.0.status");
}

static json_t *booking_get(gwh_gateway *gw, const char *auth, uint64_t id)
{
    return gwh_expect(gwh_http(gw, "GET", auth, NULL, "/api/bookings/%" PRIu64, id), 200);
}

/* A body {"booking_id": b, "<field>": <value>}. */
static const char *body_with(uint64_t booking, const char *field, const char *value)
{
    static char body[4][256];
    static int next;
    char *out = body[next++ % 4];
    snprintf(out, sizeof(body[0]), "{\"booking_id\": %" PRIu64 ", \"%s\": %s}", booking, field,
             value);
    return out;
}

static const char *booking_body(uint64_t booking)
{
    static char body[64];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 "}", booking);
    return body;
}

/* seats.status and booking_id of seat_no s of event 1 as PostgreSQL holds them. */
static void expect_pg_seat(gwh_grid *g, uint32_t s, const char *status, uint64_t booking)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT status FROM seats WHERE event_id = 1 AND seat_no = %u", s);
    cr_assert_str_eq(pgt_query_text(g->db, sql), status, "PostgreSQL: seat %u", s);
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(booking_id, 0) FROM seats WHERE event_id = 1 AND seat_no = %u", s);
    cr_assert_eq((uint64_t)pgt_query_i64(g->db, sql), booking, "PostgreSQL: holder of seat %u", s);
}

/* Every purchase operation of the flow below is in audit_log, in order, with
 * the buyer and the client's address; a hold names the seats the request
 * named (not the whole cart), a best-available hold the cart it left and
 * the quantity asked. */
static void audit_trail_is_the_flow(gwh_grid *g, uint64_t b, uint32_t floor_no)
{
    char sql[512], want[512];
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(action || ':' || outcome || ':' || seats::text"
             " || coalesce(':' || (detail->>'quantity'), ''), ',' ORDER BY id)"
             " FROM audit_log WHERE booking_id = %" PRIu64,
             b);
    snprintf(want, sizeof(want),
             "booking_create:ok:{},seats_hold:ok:{100},seats_release:ok:{100},"
             "seats_hold:ok:{100,101},seats_release:ok:{101},"
             "seats_hold:ok:{100,%u,%u}:2,seats_hold:ok:{102},booking_cancel:ok:{},"
             "seats_hold:booking_state:{100},"
             "booking_cancel:booking_state:{}",
             floor_no, floor_no + 1);
    payh_wait_pg(g, sql, want);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE booking_id = %" PRIu64
             " AND host(client_ip) = '127.0.0.1' AND event_id = 1"
             " AND user_id = (SELECT id FROM users WHERE email = '%s')",
             b, GWH_BUYER);
    cr_assert_eq(pgt_query_i64(g->db, sql), 10, "each record has the buyer and the address");
}

Test(gateway_flow, create_select_release_select_again_and_cancel_runs_end_to_end)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);

    uint64_t b = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    cr_assert_eq(b >> 32, GWH_DEMO_PARTITION);

    /* Select seat 100 in the seed's form {booking_id, seat_id}. */
    char seat[32];
    snprintf(seat, sizeof(seat), "%" PRIu64, SEAT_100);
    json_t *sel = gwh_expect(gwh_http(gw, "PATCH", buyer, body_with(b, "seat_id", seat),
                                      "/api/seats/select"),
                             200);
    cr_assert_eq((uint64_t)gwh_int(sel, "booking_id"), b);
    cr_assert_str_eq(gwh_str(sel, "status"), "SELECTED");
    cr_assert_eq((uint64_t)gwh_int(sel, "seats.0.id"), SEAT_100);
    cr_assert_eq(gwh_int(sel, "seats.0.seat_no"), 100);
    cr_assert_str_eq(gwh_str(sel, "seats.0.section"), "Golden Circle");
    cr_assert_str_eq(gwh_str(sel, "seats.0.row"), "3");
    cr_assert_eq(gwh_int(sel, "seats.0.number"), 1);
    cr_assert(strlen(gwh_str(sel, "expires_at")) > 0);
    cr_assert_str_eq(seat_status(gw, buyer, 100), "SELECTED");
    json_t *got = booking_get(gw, buyer, b);
    cr_assert_eq(json_array_size(gwh_json_at(got, "seats")), 1);
    cr_assert_eq(gwh_int(got, "total.amount"), 24900);
    json_t *av = gwh_availability_settled(g, GWH_DEMO_EVENT, GWH_DEMO_PARTITION);
    cr_assert_eq(gwh_int(av, "totals.SELECTED"), 1);

    /* PostgreSQL follows, written behind. */
    gwh_wait_drained(g, GWH_DEMO_PARTITION);
    expect_pg_seat(g, 100, "SELECTED", b);

    /* Release in the seed's form {seat_id}: the seat is free again. */
    json_t *rel = gwh_expect(gwh_http(gw, "PATCH", buyer, "{\"seat_id\": 4294967396}",
                                      "/api/seats/release"),
                             200);
    cr_assert_eq((uint64_t)gwh_int(rel, "booking_id"), b);
    cr_assert_str_eq(gwh_str(rel, "status"), "FREE");
    cr_assert_eq((uint64_t)gwh_int(rel, "released.0.id"), SEAT_100);
    cr_assert_str_eq(seat_status(gw, buyer, 100), "FREE");
    cr_assert_eq(json_array_size(gwh_json_at(booking_get(gw, buyer, b), "seats")), 0);
    gwh_expect_error(gwh_http(gw, "PATCH", buyer, "{\"seat_id\": 4294967396}",
                              "/api/seats/release"),
                     409, "seat_not_held");

    /* Select again, this time two seats in the list form; release one of
     * them in the {booking_id, seat_ids} form. */
    gwh_expect(gwh_http(gw, "PATCH", buyer, body_with(b, "seat_ids", "[4294967396, 4294967397]"),
                        "/api/seats/select"),
               200);
    gwh_expect(gwh_http(gw, "PATCH", buyer, body_with(b, "seat_ids", "[4294967397]"),
                        "/api/seats/release"),
               200);
    json_t *now = booking_get(gw, buyer, b);
    cr_assert_eq(json_array_size(gwh_json_at(now, "seats")), 1);
    cr_assert_eq((uint64_t)gwh_int(now, "seats.0.id"), SEAT_100);
    cr_assert_str_eq(seat_status(gw, buyer, 101), "FREE");

    /* Best available: two adjacent seats of the Floor.  The reply lists
     * every seat the booking now holds: seat 100 first, then the two. */
    json_t *best = gwh_expect(gwh_http(gw, "PATCH", buyer,
                                       body_with(b, "quantity", "2, \"section\": \"Floor\", "
                                                                "\"adjacent\": true"),
                                       "/api/seats/select"),
                              200);
    cr_assert_eq(json_array_size(gwh_json_at(best, "seats")), 3);
    cr_assert_eq((uint64_t)gwh_int(best, "seats.0.id"), SEAT_100);
    cr_assert_str_eq(gwh_str(best, "seats.1.section"), "Floor");
    cr_assert_str_eq(gwh_str(best, "seats.2.section"), "Floor");
    cr_assert_str_eq(gwh_str(best, "seats.1.row"), gwh_str(best, "seats.2.row"));
    cr_assert_eq(gwh_int(best, "seats.2.number"), gwh_int(best, "seats.1.number") + 1);
    int64_t floor_no = gwh_int(best, "seats.1.seat_no");
    cr_assert_eq(json_array_size(gwh_json_at(booking_get(gw, buyer, b), "seats")), 3);
    cr_assert_str_eq(seat_status(gw, buyer, (uint32_t)floor_no + 1), "SELECTED");
    /* One more seat by id: the reply lists the whole cart, four seats. */
    json_t *more = gwh_expect(
        gwh_http(gw, "PATCH", buyer, body_with(b, "seat_id", "4294967398"), "/api/seats/select"),
        200);
    cr_assert_eq(json_array_size(gwh_json_at(more, "seats")), 4);

    /* Cancel: every seat is free, the booking ended; it takes nothing more. */
    json_t *cancelled = gwh_expect(gwh_http(gw, "PATCH", buyer, booking_body(b),
                                            "/api/bookings/cancel"),
                                   200);
    cr_assert_eq((uint64_t)gwh_int(cancelled, "booking_id"), b);
    cr_assert_str_eq(gwh_str(cancelled, "status"), "cancelled");
    json_t *ended = booking_get(gw, buyer, b);
    cr_assert_str_eq(gwh_str(ended, "status"), "cancelled");
    cr_assert_eq(json_array_size(gwh_json_at(ended, "seats")), 0);
    cr_assert_str_eq(seat_status(gw, buyer, 100), "FREE");
    cr_assert_str_eq(seat_status(gw, buyer, (uint32_t)floor_no), "FREE");
    cr_assert_str_eq(seat_status(gw, buyer, (uint32_t)floor_no + 1), "FREE");
    cr_assert_str_eq(seat_status(gw, buyer, 102), "FREE");
    av = gwh_availability_settled(g, GWH_DEMO_EVENT, GWH_DEMO_PARTITION);
    cr_assert_eq(gwh_int(av, "totals.FREE"), GWH_DEMO_SEATS);
    gwh_expect_error(gwh_http(gw, "PATCH", buyer, body_with(b, "seat_id", seat),
                              "/api/seats/select"),
                     409, "booking_state");
    gwh_expect_error(gwh_http(gw, "PATCH", buyer, booking_body(b), "/api/bookings/cancel"), 409,
                     "booking_state");

    /* PostgreSQL agrees once the drain caught up. */
    gwh_wait_drained(g, GWH_DEMO_PARTITION);
    expect_pg_seat(g, 100, "FREE", 0);
    expect_pg_seat(g, (uint32_t)floor_no, "FREE", 0);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT status FROM bookings WHERE id = %" PRIu64, b);
    cr_assert_str_eq(pgt_query_text(g->db, sql), "cancelled");
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM seats WHERE event_id = 1 AND "
                                      "status <> 'FREE'"),
                 0);
    audit_trail_is_the_flow(g, b, (uint32_t)floor_no);
    gwh_stop_ok(g);
}

Test(gateway_flow, a_seat_another_user_holds_is_409_and_another_users_booking_is_404)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    const char *alice = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    const char *bob = gwh_basic(GWH_BUYER2, GWH_BUYER2_PASSWORD);
    uint64_t a = gwh_booking_create(gw, alice, GWH_DEMO_EVENT);
    uint64_t b = gwh_booking_create(gw, bob, GWH_DEMO_EVENT);
    gwh_expect(gwh_http(gw, "PATCH", alice, body_with(a, "seat_id", "4294967396"),
                        "/api/seats/select"),
               200);

    /* Bob's selects: the taken seat is named; all or nothing. */
    gwh_resp *taken = gwh_http(gw, "PATCH", bob, body_with(b, "seat_id", "4294967396"),
                               "/api/seats/select");
    const char *why = gwh_expect_error(taken, 409, "seat_taken");
    cr_assert(strstr(why, "4294967396") != NULL, "the message names the seat: %s", why);
    json_t *seats = gwh_json_at(taken->json, "error.seats");
    cr_assert_eq(json_array_size(seats), 1);
    cr_assert_eq((uint64_t)json_integer_value(json_array_get(seats, 0)), SEAT_100);
    taken = gwh_http(gw, "PATCH", bob, body_with(b, "seat_ids", "[4294967397, 4294967396]"),
                     "/api/seats/select");
    gwh_expect_error(taken, 409, "seat_taken");
    seats = gwh_json_at(taken->json, "error.seats");
    cr_assert_eq(json_array_size(seats), 1, "only the taken seat is named");
    cr_assert_eq((uint64_t)json_integer_value(json_array_get(seats, 0)), SEAT_100);
    cr_assert_str_eq(gwh_str(gwh_expect(gwh_http(gw, "GET", bob, NULL,
                                                 "/api/seats?event_id=1&page=102&pageSize=1"),
                                        200),
                             "items.0.status"),
                     "FREE", "seat 101 was not held: all or nothing");
    cr_assert_eq(json_array_size(gwh_json_at(booking_get(gw, bob, b), "seats")), 0);

    /* Bob cannot release Alice's seat, by seat or through her booking. */
    gwh_expect_error(gwh_http(gw, "PATCH", bob, "{\"seat_id\": 4294967396}", "/api/seats/release"),
                     409, "seat_not_held");
    gwh_expect_error(gwh_http(gw, "PATCH", bob, body_with(a, "seat_ids", "[4294967396]"),
                              "/api/seats/release"),
                     404, "not_found");

    /* Alice's booking does not exist for Bob: read, cancel, select, pay. */
    gwh_expect_error(gwh_http(gw, "GET", bob, NULL, "/api/bookings/%" PRIu64, a), 404,
                     "not_found");
    gwh_expect_error(gwh_http(gw, "GET", bob, NULL, "/api/bookings/%" PRIu64 "/payment-status", a),
                     404, "not_found");
    gwh_expect_error(gwh_http(gw, "PATCH", bob, booking_body(a), "/api/bookings/cancel"), 404,
                     "not_found");
    gwh_expect_error(gwh_http(gw, "PATCH", bob, body_with(a, "seat_id", "4294967397"),
                              "/api/seats/select"),
                     404, "not_found");
    gwh_expect_error(gwh_http(gw, "PATCH", bob, booking_body(a), "/api/bookings/initiatePayment"),
                     404, "not_found");
    /* ... nor do bookings that were never made. */
    gwh_expect_error(gwh_http(gw, "GET", bob, NULL, "/api/bookings/%" PRIu64, a + 1000), 404,
                     "not_found");
    gwh_expect_error(gwh_http(gw, "GET", bob, NULL, "/api/bookings/%" PRIu64,
                              (uint64_t)2 << 32 | 1),
                     404, "not_found"); /* a partition not placed */
    gwh_expect_error(gwh_http(gw, "GET", bob, NULL, "/api/bookings/7"), 404, "not_found");

    /* A seat of another partition cannot go into a booking of this one. */
    gwh_expect_error(gwh_http(gw, "PATCH", bob, body_with(b, "seat_id", "12884901895"),
                              "/api/seats/select"),
                     400, "invalid_field");
    gwh_expect_error(gwh_http(gw, "PATCH", bob, body_with(b, "seat_id", "4295067296"),
                              "/api/seats/select"),
                     400, "invalid_field"); /* seat 100,000: past the end */

    /* Alice's booking is untouched. */
    json_t *hers = booking_get(gw, alice, a);
    cr_assert_str_eq(gwh_str(hers, "status"), "created");
    cr_assert_eq(json_array_size(gwh_json_at(hers, "seats")), 1);
    cr_assert_eq((uint64_t)gwh_int(hers, "seats.0.id"), SEAT_100);
    /* Once she lets go, Bob gets it. */
    gwh_expect(gwh_http(gw, "PATCH", alice, booking_body(a), "/api/bookings/cancel"), 200);
    gwh_expect(gwh_http(gw, "PATCH", bob, body_with(b, "seat_id", "4294967396"),
                        "/api/seats/select"),
               200);
    gwh_wait_drained(g, GWH_DEMO_PARTITION);
    expect_pg_seat(g, 100, "SELECTED", b);
    gwh_stop_ok(g);
}

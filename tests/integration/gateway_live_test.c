/*
 * gateway_live_test.c — the crowd reads over a real grid: GET
 * /api/events/{id}/seatmap (every seat's state from the gateway's
 * snapshots, ETags, versions) and GET /api/events/{id}/live (Server-Sent
 * Events).  Seats are changed through the API and must show in the map and
 * on the stream; a unit killed turns its seats UNKNOWN while the other
 * partitions carry on.
 */
#include "gwh.h"

#include <criterion/criterion.h>

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fini(void)
{
    gwh_fini_all();
}

TestSuite(gateway_live, .fini = fini, .timeout = 120);

#define WAIT_MS 3000 /* a change reaches the map (one PU tick and a hand-off, in practice) */

typedef struct {
    json_t *doc;
    uint8_t *states; /* ceil(seat_count / 2) bytes */
    uint64_t seat_count, version;
    char etag[64];
} seatmap;

static unsigned nibble(const seatmap *m, uint64_t seat)
{
    return (m->states[seat >> 1] >> ((seat & 1) * 4)) & 15u;
}

static seatmap seatmap_get(gwh_gateway *gw, uint64_t event_id)
{
    gwh_resp *r = gwh_http(gw, "GET", NULL, NULL, "/api/events/%" PRIu64 "/seatmap", event_id);
    seatmap m = {.doc = gwh_expect(r, 200)};
    m.seat_count = (uint64_t)gwh_int(m.doc, "seat_count");
    m.version = (uint64_t)gwh_int(m.doc, "version");
    cr_assert_eq((uint64_t)gwh_int(m.doc, "event_id"), event_id);
    cr_assert_str_eq(gwh_str(m.doc, "encoding"), "nibbles");
    const char *b64 = gwh_str(m.doc, "states");
    size_t want = (size_t)(m.seat_count + 1) / 2, got = 0;
    m.states = malloc(want + 1);
    cr_assert_eq(sodium_base642bin(m.states, want + 1, b64, strlen(b64), NULL, &got, NULL,
                                   sodium_base64_VARIANT_ORIGINAL),
                 0, "states is not base64");
    cr_assert_eq(got, want, "states: %zu bytes for %" PRIu64 " seats", got, m.seat_count);
    const char *etag = gwh_header(r, "etag");
    cr_assert_not_null(etag, "no ETag");
    snprintf(m.etag, sizeof(m.etag), "%s", etag);
    cr_assert_str_eq(gwh_header(r, "cache-control"), "no-cache");
    return m;
}

/* Polls the map until seat shows want (bounded by WAIT_MS). */
static seatmap seatmap_wait(gwh_gateway *gw, uint64_t event_id, uint64_t seat, unsigned want)
{
    int64_t deadline = hx_now_ms() + WAIT_MS;
    for (;;) {
        seatmap m = seatmap_get(gw, event_id);
        if (nibble(&m, seat) == want) {
            return m;
        }
        cr_assert(hx_now_ms() < deadline, "seat %" PRIu64 " shows %u, not %u, after %d ms", seat,
                  nibble(&m, seat), want, WAIT_MS);
        hx_sleep_ms(20);
    }
}

static void select_seats(gwh_gateway *gw, const char *auth, uint64_t booking, const char *ids)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_ids\": %s}", booking, ids);
    gwh_expect(gwh_http(gw, "PATCH", auth, body, "/api/seats/select"), 200);
}

static void release_seats(gwh_gateway *gw, const char *auth, uint64_t booking, const char *ids)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_ids\": %s}", booking, ids);
    gwh_expect(gwh_http(gw, "PATCH", auth, body, "/api/seats/release"), 200);
}

/* The map's counts per state equal /availability's totals. */
static void expect_counts_match(gwh_gateway *gw, const seatmap *m)
{
    static const char *const names[] = {"FREE", "SELECTED", "RESERVED", "SOLD", "BLOCKED"};
    uint64_t counts[16] = {0};
    for (uint64_t s = 0; s < m->seat_count; s++) {
        counts[nibble(m, s)]++;
    }
    json_t *a = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events/1/availability"), 200);
    for (unsigned st = 0; st < 5; st++) {
        char path[32];
        snprintf(path, sizeof(path), "totals.%s", names[st]);
        cr_assert_eq(counts[st], (uint64_t)gwh_int(a, path), "%s", names[st]);
    }
}

Test(gateway_live, the_seatmap_shows_every_seat_and_follows_holds_and_releases)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    seatmap m0 = seatmap_get(gw, GWH_DEMO_EVENT);
    cr_assert_eq(m0.seat_count, GWH_DEMO_SEATS);
    char etag[64];
    snprintf(etag, sizeof(etag), "\"1-%" PRIu64 "\"", m0.version);
    cr_assert_str_eq(m0.etag, etag);
    expect_counts_match(gw, &m0);
    /* The layout: one partition, five sections whose rows cover them. */
    cr_assert_eq(gwh_int(m0.doc, "partitions.0.partition_id"), GWH_DEMO_PARTITION);
    cr_assert_eq(gwh_int(m0.doc, "partitions.0.first_seat"), 0);
    cr_assert_eq(gwh_int(m0.doc, "partitions.0.seat_count"), GWH_DEMO_SEATS);
    json_t *sections = gwh_json_at(m0.doc, "sections");
    cr_assert_eq(json_array_size(sections), 5);
    cr_assert_str_eq(gwh_str(m0.doc, "sections.0.name"), "Golden Circle");
    int64_t next = 0;
    for (size_t i = 0; i < json_array_size(sections); i++) {
        json_t *s = json_array_get(sections, i);
        cr_assert_eq(gwh_int(s, "first_seat"), next);
        int64_t row_next = next;
        json_t *rows = gwh_json_at(s, "rows");
        for (size_t j = 0; j < json_array_size(rows); j++) {
            cr_assert_eq(gwh_int(json_array_get(rows, j), "first_seat"), row_next);
            row_next += gwh_int(json_array_get(rows, j), "seat_count");
        }
        next += gwh_int(s, "seat_count");
        cr_assert_eq(row_next, next, "rows of section %zu do not cover it", i);
    }
    cr_assert_eq(next, GWH_DEMO_SEATS);

    /* Unchanged: the ETag answers 304 with no body. */
    const char *inm[] = {NULL, NULL};
    char line[96];
    snprintf(line, sizeof(line), "If-None-Match: %s", m0.etag);
    inm[0] = line;
    gwh_resp *nm =
        gwh_send(gw, &(gwh_request_spec){.path = "/api/events/1/seatmap", .headers = inm});
    cr_assert_eq(nm->status, 304, "%s: %ld", nm->what, nm->status);
    cr_assert_eq(nm->len, 0);

    /* Holds show as SELECTED (1), releases as FREE again; the version rises
     * and the old ETag no longer matches. */
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    select_seats(gw, buyer, b, "[4294967396, 4294967397, 4294997295]"); /* 100, 101, 29999 */
    seatmap m1 = seatmap_wait(gw, GWH_DEMO_EVENT, 29999, 1);
    cr_assert_eq(nibble(&m1, 100), 1);
    cr_assert_eq(nibble(&m1, 101), 1);
    cr_assert_eq(nibble(&m1, 102), 0);
    cr_assert_gt(m1.version, m0.version);
    expect_counts_match(gw, &m1);
    nm = gwh_send(gw, &(gwh_request_spec){.path = "/api/events/1/seatmap", .headers = inm});
    cr_assert_eq(nm->status, 200);
    release_seats(gw, buyer, b, "[4294967397]");
    seatmap m2 = seatmap_wait(gw, GWH_DEMO_EVENT, 101, 0);
    cr_assert_eq(nibble(&m2, 100), 1);
    cr_assert_gt(m2.version, m1.version);

    /* Bad ids. */
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/0/seatmap"), 404, "not_found");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/777/seatmap"), 404, "not_found");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/4/seatmap"), 404,
                     "not_found"); /* a draft */
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/x1/seatmap"), 400, "invalid_id");
    gwh_stop_ok(g);
}

Test(gateway_live, a_killed_unit_turns_its_seats_unknown_and_the_others_carry_on)
{
    gwh_options o = {.units = 2,
                     .partition_count = 2,
                     .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION},
                     .unit_of = {0, 1}};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    seatmap hall = seatmap_get(gw, GWH_HALL_EVENT);
    cr_assert_eq(hall.seat_count, GWH_HALL_SEATS);
    cr_assert_eq(nibble(&hall, 0), 0);
    seatmap_get(gw, GWH_DEMO_EVENT);

    hx_kill(&g->units[1]);
    /* The map notices within a refresh or two; the hall's seats turn 15. */
    int64_t deadline = hx_now_ms() + 3 * WAIT_MS;
    seatmap dead;
    for (;;) {
        dead = seatmap_get(gw, GWH_HALL_EVENT);
        if (nibble(&dead, 0) == 15) {
            break;
        }
        cr_assert(hx_now_ms() < deadline, "the hall's seats never turned UNKNOWN");
        hx_sleep_ms(100);
    }
    for (uint64_t s = 0; s < dead.seat_count; s++) {
        cr_assert_eq(nibble(&dead, s), 15, "seat %" PRIu64, s);
    }
    cr_assert(strstr(dead.etag, "-unknown") != NULL, "ETag %s", dead.etag);
    /* The concert, on the other unit, still answers and still moves. */
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    select_seats(gw, buyer, b, "[4294967306]"); /* 10 */
    seatmap_wait(gw, GWH_DEMO_EVENT, 10, 1);
    gwh_gateway_stop_ok(gw);
}

/*
 * gateway_organizer_test.c — the organizer routes end to end through
 * tixgrid-gateway (gwh.h: PostgreSQL with the demo data, real units, the
 * drain, the gateway; the payment sandbox where a purchase is paid).
 *
 * An organizer creates a three-section event, publishes it (placed in the
 * grid and loaded through the persister's replay code), a buyer buys seats
 * in two sections through the sandbox, and the sales show exactly those
 * seats and that revenue; blocked seats cannot be held and count as
 * BLOCKED; the layout of a published event is frozen while its title is
 * not; cancelling marks the paid booking's payment for refund and writes
 * the buyer's outbox row.  Around it: 401 without credentials, 403 for a
 * buyer on every organizer route, 404 for unknown ids, invalid layouts
 * refused naming the field, publishing twice, drafts deleted, artists, and
 * roles through the admin route and the CLI.  Then a 200,000-seat event is
 * split into two partitions placed on two units, and sells in both.
 */
#include "gwh.h"
#include "payh.h"

#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fini(void)
{
    gwh_fini_all();
}

TestSuite(gateway_organizer, .fini = fini, .timeout = 120);

#define ORGANIZER          "organizer@demo.tixgrid"
#define ORGANIZER_PASSWORD "demo-organizer-1"
#define ADMIN              "admin@demo.tixgrid"
#define ADMIN_PASSWORD     "demo-admin-1"
#define WAIT_MS            10000
#define PUBLISH_TIMEOUT_MS 60000 /* the 200,000-seat publish */
/* Every grid here serves the small demo hall (1,130 seats) only: the tests
 * need a unit, not the concert's 100,000 seats replayed. */
#define HALL_ONLY .partition_count = 1, .partitions = {GWH_HALL_PARTITION}

/* Three sections: A (2 rows of 10, 50.00), B (10, 30.00), C (10, 10.00):
 * seats 0..19, 20..29, 30..39. */
static const char three_sections[] =
    "{\"title\": \"Organizer Test Night\", \"artist\": \"The Testers\", \"venue\": \"Hall 9\","
    " \"starts_at\": \"2030-06-01T19:30:00Z\", \"layout\": {\"sections\": ["
    "{\"name\": \"A\", \"price\": 5000, \"currency\": \"EUR\", \"rows\": ["
    "  {\"name\": \"1\", \"seats\": 10}, {\"name\": \"2\", \"seats\": 10}]},"
    "{\"name\": \"B\", \"price\": 3000, \"currency\": \"EUR\", \"rows\": [{\"name\": \"1\", "
    "\"seats\": 10}]},"
    "{\"name\": \"C\", \"price\": 1000, \"currency\": \"EUR\", \"rows\": [{\"name\": \"1\", "
    "\"seats\": 10}]}"
    "]}}";

static uint64_t event_create(gwh_gateway *gw, const char *auth, const char *body)
{
    json_t *ev = gwh_expect(gwh_http(gw, "POST", auth, body, "/api/admin/events"), 201);
    cr_assert_str_eq(gwh_str(ev, "status"), "draft");
    return (uint64_t)gwh_int(ev, "id");
}

/* Waits until the drain wrote booking b as created: a cancel finds the
 * event's live bookings in PostgreSQL. */
static void wait_written_live(gwh_grid *g, uint64_t b)
{
    char sql[128];
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM bookings WHERE id = %" PRIu64 " AND status = 'created'",
             b);
    payh_wait_pg(g, sql, "1");
}

/* Publishes the event: its answer, 200. */
static json_t *publish(gwh_gateway *gw, const char *auth, uint64_t event)
{
    return gwh_expect(
        gwh_http(gw, "POST", auth, NULL, "/api/admin/events/%" PRIu64 "/publish", event), 200);
}

/* Waits until the gateway routes the event (its map read after publish). */
static void wait_routed(gwh_gateway *gw, uint64_t event)
{
    int64_t deadline = pgt_now_ms() + WAIT_MS;
    long status = 0;
    while (pgt_now_ms() < deadline) {
        status =
            gwh_http(gw, "GET", NULL, NULL, "/api/events/%" PRIu64 "/availability", event)->status;
        if (status == 200) {
            return;
        }
        usleep(50 * 1000);
    }
    cr_assert_fail("event %" PRIu64 " not routed within %d ms (last status %ld)", event, WAIT_MS,
                   status);
}

/* Waits until new bookings of the cancelled event are refused (at the
 * gateway's next map read); returns how many were still made meanwhile. */
static int64_t wait_sale_closed(gwh_gateway *gw, const char *auth, uint64_t event)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"event_id\": %" PRIu64 "}", event);
    int64_t deadline = pgt_now_ms() + WAIT_MS, made = 0;
    gwh_resp *r = NULL;
    while (pgt_now_ms() < deadline) {
        r = gwh_http(gw, "POST", auth, body, "/api/bookings");
        if (r->status == 409) {
            gwh_expect_error(r, 409, "sale_closed");
            return made;
        }
        gwh_expect(r, 201);
        made++;
        usleep(20 * 1000);
    }
    cr_assert_fail("bookings of cancelled event %" PRIu64 " still accepted", event);
    return made;
}

static json_t *sales(gwh_gateway *gw, const char *auth, uint64_t event)
{
    return gwh_expect(gwh_http(gw, "GET", auth, NULL, "/api/admin/events/%" PRIu64 "/sales", event),
                      200);
}

static int64_t section_count(json_t *s, int section, const char *key)
{
    char path[48];
    snprintf(path, sizeof(path), "sections.%d.%s", section, key);
    return gwh_int(s, path);
}

/* A buyer's booking of event holding seats (API ids). */
static uint64_t booking_holding(gwh_gateway *gw, const char *auth, uint64_t event,
                                const char *section, const char *seat_ids)
{
    char body[128];
    if (section != NULL) {
        snprintf(body, sizeof(body), "{\"event_id\": %" PRIu64 ", \"section\": \"%s\"}", event,
                 section);
    } else {
        snprintf(body, sizeof(body), "{\"event_id\": %" PRIu64 "}", event);
    }
    uint64_t b =
        (uint64_t)gwh_int(gwh_expect(gwh_http(gw, "POST", auth, body, "/api/bookings"), 201), "id");
    char select[256];
    snprintf(select, sizeof(select), "{\"booking_id\": %" PRIu64 ", \"seat_ids\": %s}", b,
             seat_ids);
    gwh_expect(gwh_http(gw, "PATCH", auth, select, "/api/seats/select"), 200);
    return b;
}

static void buyer_is_refused_everywhere(gwh_gateway *gw, const char *buyer, uint64_t event)
{
    static const struct {
        const char *method, *path, *body;
    } routes[] = {
        {"POST", "/api/admin/events", "{}"},
        {"PATCH", "/api/admin/events/%" PRIu64, "{\"title\": \"x\"}"},
        {"DELETE", "/api/admin/events/%" PRIu64, NULL},
        {"POST", "/api/admin/events/%" PRIu64 "/publish", NULL},
        {"POST", "/api/admin/events/%" PRIu64 "/cancel", NULL},
        {"POST", "/api/admin/events/%" PRIu64 "/seats/block", "{\"seat_ids\": [1]}"},
        {"POST", "/api/admin/events/%" PRIu64 "/seats/unblock", "{\"seat_ids\": [1]}"},
        {"GET", "/api/admin/events/%" PRIu64 "/sales", NULL},
        {"POST", "/api/admin/artists", "{\"name\": \"x\"}"},
        {"PATCH", "/api/admin/artists/1", "{\"name\": \"x\"}"},
        {"PATCH", "/api/admin/users/role", "{\"email\": \"a@b\", \"role\": \"admin\"}"},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), routes[i].path, event);
        gwh_expect_error(gwh_http(gw, routes[i].method, buyer, routes[i].body, "%s", path), 403,
                         "forbidden");
        gwh_expect_error(gwh_http(gw, routes[i].method, NULL, routes[i].body, "%s", path), 401,
                         "unauthenticated");
    }
}

static void invalid_layouts_name_the_field(gwh_grid *g, const char *org)
{
    gwh_gateway *gw = g->gw;
    static const struct {
        const char *layout, *field;
    } bad[] = {
        {"{\"sections\": [{\"name\": \"A\", \"price\": -1, \"currency\": \"EUR\","
         " \"rows\": [{\"name\": \"1\", \"seats\": 1}]}]}",
         "layout.sections[0].price"},
        {"{\"sections\": [{\"name\": \"A\", \"price\": 1, \"currency\": \"EUR\","
         " \"rows\": [{\"name\": \"1\", \"seats\": 1}]}, {\"name\": \"A\", \"price\": 1,"
         " \"currency\": \"EUR\", \"rows\": [{\"name\": \"1\", \"seats\": 1}]}]}",
         "layout.sections[1].name"},
        {"{\"sections\": [{\"name\": \"A\", \"price\": 1, \"currency\": \"EUR\","
         " \"rows\": [{\"name\": \"1\", \"seats\": 5000}]}]}",
         "layout.sections[0].rows[0].seats"},
    };
    int64_t before = pgt_query_i64(g->db, "SELECT count(*) FROM events");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"title\": \"Bad\", \"artist\": \"X\", \"venue\": \"Y\","
                 " \"starts_at\": \"2030-06-01T19:30:00Z\", \"layout\": %s}",
                 bad[i].layout);
        const char *msg = gwh_expect_error(gwh_http(gw, "POST", org, body, "/api/admin/events"),
                                           400, "invalid_layout");
        cr_assert(strstr(msg, bad[i].field) != NULL, "%s does not name %s", msg, bad[i].field);
    }
    const char *msg =
        gwh_expect_error(gwh_http(gw, "POST", org,
                                  "{\"title\": \"Bad\", \"artist\": \"X\", \"venue\": \"Y\","
                                  " \"starts_at\": \"tomorrow\", \"layout\": {}}",
                                  "/api/admin/events"),
                         400, "invalid_field");
    cr_assert(strstr(msg, "starts_at") != NULL, "%s", msg);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM events"), before,
                 "a refused event was stored");
}

/* Pays booking b through the sandbox page; waits until it is paid. */
static void pay(gwh_grid *g, const char *buyer, uint64_t b)
{
    json_t *started = gwh_expect(payh_initiate(g->gw, buyer, b), 200);
    char pay_id[PAYH_ID_BYTES];
    snprintf(pay_id, sizeof(pay_id), "%s", gwh_str(started, "payment_id"));
    payh_click(g->sandbox, pay_id, true);
    payh_wait_booking(g->gw, buyer, b, "paid");
}

static void published_layout_is_frozen(gwh_gateway *gw, const char *org, uint64_t event)
{
    gwh_expect_error(
        gwh_http(gw, "PATCH", org,
                 "{\"layout\": {\"sections\": [{\"name\": \"Z\", \"price\": 1,"
                 " \"currency\": \"EUR\", \"rows\": [{\"name\": \"1\", \"seats\": 1}]}]}}",
                 "/api/admin/events/%" PRIu64, event),
        409, "layout_frozen");
    json_t *ev = gwh_expect(gwh_http(gw, "PATCH", org, "{\"title\": \"Organizer Test Night II\"}",
                                     "/api/admin/events/%" PRIu64, event),
                            200);
    cr_assert_str_eq(gwh_str(ev, "title"), "Organizer Test Night II");
    cr_assert_str_eq(gwh_str(ev, "layout.sections.0.name"), "A");
    gwh_expect_error(gwh_http(gw, "DELETE", org, NULL, "/api/admin/events/%" PRIu64, event), 409,
                     "not_draft");
}

static void unknown_ids_are_404(gwh_gateway *gw, const char *org)
{
    gwh_expect_error(gwh_http(gw, "POST", org, NULL, "/api/admin/events/987654321/publish"), 404,
                     "not_found");
    gwh_expect_error(
        gwh_http(gw, "PATCH", org, "{\"title\": \"x\"}", "/api/admin/events/987654321"), 404,
        "not_found");
    gwh_expect_error(gwh_http(gw, "GET", org, NULL, "/api/admin/events/987654321/sales"), 404,
                     "not_found");
    gwh_expect_error(
        gwh_http(gw, "PATCH", org, "{\"name\": \"x\"}", "/api/admin/artists/987654321"), 404,
        "not_found");
    /* The demo's events belong to nobody: only admins manage them. */
    gwh_expect_error(gwh_http(gw, "POST", org, NULL, "/api/admin/events/1/cancel"), 404,
                     "not_found");
}

/* Blocked seats cannot be held and count as BLOCKED; unblocked, they can.
 * The event has one partition, that of seat. */
static void blocking(gwh_grid *g, const char *org, const char *buyer, uint64_t event, uint64_t seat)
{
    gwh_gateway *gw = g->gw;
    char body[64];
    snprintf(body, sizeof(body), "{\"seat_ids\": [%" PRIu64 "]}", seat);
    json_t *done = gwh_expect(
        gwh_http(gw, "POST", org, body, "/api/admin/events/%" PRIu64 "/seats/block", event), 200);
    cr_assert_str_eq(gwh_str(done, "status"), "BLOCKED");
    json_t *avail = gwh_availability_settled(g, event, (uint32_t)(seat >> 32));
    cr_assert_eq(gwh_int(avail, "totals.BLOCKED"), 1, "%s", json_dumps(avail, 0));
    char body_b[64];
    snprintf(body_b, sizeof(body_b), "{\"event_id\": %" PRIu64 "}", event);
    uint64_t b = (uint64_t)gwh_int(
        gwh_expect(gwh_http(gw, "POST", buyer, body_b, "/api/bookings"), 201), "id");
    char select[128];
    snprintf(select, sizeof(select), "{\"booking_id\": %" PRIu64 ", \"seat_ids\": [%" PRIu64 "]}",
             b, seat);
    gwh_expect_error(gwh_http(gw, "PATCH", buyer, select, "/api/seats/select"), 409, "seat_taken");
    cr_assert_eq(section_count(sales(gw, org, event), 2, "blocked"), 1);
    gwh_expect(
        gwh_http(gw, "POST", org, body, "/api/admin/events/%" PRIu64 "/seats/unblock", event), 200);
    gwh_expect(gwh_http(gw, "PATCH", buyer, select, "/api/seats/select"), 200);
    gwh_expect(gwh_http(gw, "PATCH", buyer, select, "/api/seats/release"), 200);
    /* A seat of another event is refused by name, and nothing is blocked. */
    gwh_expect_error(gwh_http(gw, "POST", org, "{\"seat_ids\": [12884901988]}",
                              "/api/admin/events/%" PRIu64 "/seats/block", event),
                     400, "invalid_field");
}

Test(gateway_organizer, an_organizer_sells_a_three_section_event)
{
    gwh_grid *g = gwh_start(&(gwh_options){HALL_ONLY, .sandbox = true});
    gwh_gateway *gw = g->gw;
    const char *org = gwh_login(gw, ORGANIZER, ORGANIZER_PASSWORD);
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);

    uint64_t event = event_create(gw, org, three_sections);
    buyer_is_refused_everywhere(gw, buyer, event);
    invalid_layouts_name_the_field(g, org);
    unknown_ids_are_404(gw, org);
    gwh_expect_error(gwh_http(gw, "GET", org, NULL, "/api/admin/events/%" PRIu64 "/sales", event),
                     409, "not_published");

    json_t *ev = publish(gw, org, event);
    cr_assert_str_eq(gwh_str(ev, "status"), "on_sale");
    cr_assert_eq(json_array_size(gwh_json_at(ev, "partitions")), 1);
    cr_assert_eq(gwh_int(ev, "partitions.0.seat_count"), 40);
    uint32_t p = (uint32_t)gwh_int(ev, "partitions.0.partition_id");
    json_t *again = gwh_expect(
        gwh_http(gw, "POST", org, NULL, "/api/admin/events/%" PRIu64 "/publish", event), 200);
    cr_assert_eq(gwh_int(again, "partitions.0.partition_id"), p, "publishing twice moved it");
    cr_assert_eq(json_array_size(gwh_json_at(again, "partitions")), 1);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM grid_partitions"), 6);
    published_layout_is_frozen(gw, org, event);
    wait_routed(gw, event);

    /* Two seats of A and one of B, paid. */
    char seats[96];
    snprintf(seats, sizeof(seats), "[%" PRIu64 ", %" PRIu64 ", %" PRIu64 "]", GWH_SEAT_ID(p, 0),
             GWH_SEAT_ID(p, 1), GWH_SEAT_ID(p, 20));
    uint64_t b = booking_holding(gw, buyer, event, NULL, seats);
    pay(g, buyer, b);
    json_t *s = sales(gw, org, event);
    cr_assert_eq(section_count(s, 0, "sold"), 2);
    cr_assert_eq(section_count(s, 0, "revenue"), 10000);
    cr_assert_eq(section_count(s, 0, "free"), 18);
    cr_assert_eq(section_count(s, 1, "sold"), 1);
    cr_assert_eq(section_count(s, 1, "revenue"), 3000);
    cr_assert_eq(section_count(s, 2, "sold"), 0);
    cr_assert_eq(section_count(s, 2, "revenue"), 0);
    cr_assert_eq(gwh_int(s, "totals.sold"), 3);
    cr_assert_eq(gwh_int(s, "sales_per_minute.0.sales"), 1);
    cr_assert_eq(gwh_int(s, "sales_per_minute.0.amount"), 13000);

    blocking(g, org, buyer, event, GWH_SEAT_ID(p, 30));

    /* Bookings still open when the event is cancelled are ended. */
    char sql[256];
    snprintf(seats, sizeof(seats), "[%" PRIu64 "]", GWH_SEAT_ID(p, 31));
    uint64_t live = booking_holding(gw, buyer, event, NULL, seats);
    wait_written_live(g, live);
    json_t *c = gwh_expect(
        gwh_http(gw, "POST", org, NULL, "/api/admin/events/%" PRIu64 "/cancel", event), 200);
    cr_assert_eq(gwh_int(c, "refunds_due"), 1);
    /* That one, and the empty one blocking() made. */
    cr_assert_eq(gwh_int(c, "bookings_cancelled"), 2, "%s", json_dumps(c, 0));
    cr_assert_eq(gwh_int(c, "bookings_not_reached"), 0, "%s", json_dumps(c, 0));
    payh_wait_booking(gw, buyer, live, "cancelled");
    cr_assert_eq(gwh_int(gwh_availability_settled(g, event, p), "totals.SELECTED"), 0);
    int64_t late = wait_sale_closed(gw, buyer, event);
    cr_assert_eq(late, 0, "the gateway that cancelled still sold %" PRId64 " bookings", late);
    snprintf(sql, sizeof(sql), "SELECT refund_status FROM payments WHERE booking_id = %" PRIu64, b);
    cr_assert_str_eq(pgt_query_text(g->db, sql), "due");
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM notification_outbox WHERE kind = 'event_cancelled'"
             " AND booking_id = %" PRIu64 " AND user_id = (SELECT id FROM users"
             " WHERE email = '" GWH_BUYER "')",
             b);
    cr_assert_eq(pgt_query_i64(g->db, sql), 1);
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM bookings WHERE event_id = %" PRIu64
             " AND status IN ('created', 'pending_payment')",
             event);
    char want[24];
    snprintf(want, sizeof(want), "%" PRId64, late);
    payh_wait_pg(g, sql, want); /* the drain wrote the cancellations, and the late bookings */
    c = gwh_expect(gwh_http(gw, "POST", org, NULL, "/api/admin/events/%" PRIu64 "/cancel", event),
                   200);
    cr_assert_eq(gwh_int(c, "refunds_due"), 0, "cancelling twice owes twice");
    cr_assert_eq(gwh_int(c, "bookings_cancelled"), late, "%" PRId64 " late bookings: %s", late,
                 json_dumps(c, 0));
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE event_id = %" PRIu64
             " AND action IN ('event_create', 'event_publish', 'event_cancel', 'seats_block')"
             " AND client_ip = '127.0.0.1'",
             event);
    payh_wait_pg(g, sql, "7"); /* create, publish ×2, cancel ×2, block ×2 */
    gwh_stop_ok(g);
}

Test(gateway_organizer, drafts_artists_and_roles)
{
    gwh_grid *g = gwh_start(&(gwh_options){HALL_ONLY});
    gwh_gateway *gw = g->gw;
    const char *org = gwh_login(gw, ORGANIZER, ORGANIZER_PASSWORD);
    const char *admin = gwh_login(gw, ADMIN, ADMIN_PASSWORD);

    uint64_t draft = event_create(gw, org, three_sections);
    json_t *ev = gwh_expect(
        gwh_http(gw, "PATCH", org,
                 "{\"layout\": {\"sections\": [{\"name\": \"Only\", \"price\": 700,"
                 " \"currency\": \"SEK\", \"rows\": [{\"name\": \"1\", \"seats\": 3}]}]},"
                 " \"sale_starts_at\": \"2030-05-01T10:00:00+02:00\"}",
                 "/api/admin/events/%" PRIu64, draft),
        200);
    cr_assert_str_eq(gwh_str(ev, "layout.sections.0.name"), "Only");
    cr_assert_str_eq(gwh_str(ev, "currency"), "SEK");
    cr_assert_str_eq(gwh_str(ev, "sale_starts_at"), "2030-05-01T08:00:00Z");
    gwh_expect_error(
        gwh_http(gw, "PATCH", org, "{\"colour\": \"red\"}", "/api/admin/events/%" PRIu64, draft),
        400, "unknown_field");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/%" PRIu64, draft), 404,
                     "not_found");
    json_t *del =
        gwh_expect(gwh_http(gw, "DELETE", org, NULL, "/api/admin/events/%" PRIu64, draft), 200);
    cr_assert(json_is_true(gwh_json_at(del, "deleted")));
    gwh_expect_error(gwh_http(gw, "DELETE", org, NULL, "/api/admin/events/%" PRIu64, draft), 404,
                     "not_found");

    json_t *a = gwh_expect(gwh_http(gw, "POST", org,
                                    "{\"name\": \"Test Artist\", \"genre\": \"jazz\","
                                    " \"works\": [{\"title\": \"First\", \"year\": 2020}]}",
                                    "/api/admin/artists"),
                           201);
    json_t *a2 = gwh_expect(gwh_http(gw, "PATCH", org, "{\"biography\": \"Born in a test.\"}",
                                     "/api/admin/artists/%" PRId64, gwh_int(a, "id")),
                            200);
    cr_assert_str_eq(gwh_str(a2, "genre"), "jazz");
    cr_assert_str_eq(gwh_str(a2, "biography"), "Born in a test.");
    cr_assert_str_eq(gwh_str(a2, "works.0.title"), "First");
    gwh_expect_error(gwh_http(gw, "POST", org, "{\"genre\": \"jazz\"}", "/api/admin/artists"), 400,
                     "missing_field");

    /* Roles: the admin route (an organizer may not), then the CLI. */
    gwh_expect_error(gwh_http(gw, "PATCH", org,
                              "{\"email\": \"" GWH_BUYER2 "\", \"role\": \"organizer\"}",
                              "/api/admin/users/role"),
                     403, "forbidden");
    json_t *role =
        gwh_expect(gwh_http(gw, "PATCH", admin,
                            "{\"email\": \"BUYER2@demo.tixgrid\", \"role\": \"organizer\"}",
                            "/api/admin/users/role"),
                   200);
    cr_assert_str_eq(gwh_str(role, "role"), "organizer");
    gwh_expect_error(gwh_http(gw, "PATCH", admin,
                              "{\"email\": \"" GWH_BUYER2 "\", \"role\": \"god\"}",
                              "/api/admin/users/role"),
                     400, "invalid_field");
    gwh_expect_error(gwh_http(gw, "PATCH", admin,
                              "{\"email\": \"nobody@x.y\", \"role\": \"admin\"}",
                              "/api/admin/users/role"),
                     404, "not_found");
    const char *buyer2 = gwh_login(gw, GWH_BUYER2, GWH_BUYER2_PASSWORD);
    gwh_expect(gwh_http(gw, "POST", buyer2, "{\"name\": \"Made By Buyer2\"}", "/api/admin/artists"),
               201);
    pgt_run_result r;
    pgt_persister(&r, g->pg, NULL, (const char *const[]){"user-role", GWH_BUYER2, "buyer", NULL});
    cr_assert_eq(pgt_exit_code(&r), 0, "%s", r.err);
    pgt_persister(&r, g->pg, NULL, (const char *const[]){"user-role", "nobody@x.y", "buyer", NULL});
    cr_assert_eq(pgt_exit_code(&r), 1, "%s", r.err);
    buyer2 = gwh_login(gw, GWH_BUYER2, GWH_BUYER2_PASSWORD);
    gwh_expect_error(gwh_http(gw, "POST", buyer2, "{\"name\": \"x\"}", "/api/admin/artists"), 403,
                     "forbidden");
    gwh_stop_ok(g);
}

/* 200,000 seats in two sections of 100,000: two partitions, one on each
 * unit, each selling. */
static char *big_layout(void)
{
    json_t *secs = json_array();
    for (int s = 0; s < 2; s++) {
        json_t *rows = json_array();
        for (int r = 0; r < 2000; r++) {
            char name[8];
            snprintf(name, sizeof(name), "%d", r + 1);
            json_array_append_new(rows, json_pack("{s:s,s:i}", "name", name, "seats", 50));
        }
        json_array_append_new(secs,
                              json_pack("{s:s,s:i,s:s,s:o}", "name", s == 0 ? "North" : "South",
                                        "price", 2000 + s * 1000, "currency", "EUR", "rows", rows));
    }
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:s,s:{s:o}}", "title", "Stadium", "artist", "Big", "venue",
                  "Stadium", "starts_at", "2030-07-01T19:00:00Z", "layout", "sections", secs);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

Test(gateway_organizer, a_200000_seat_event_is_placed_as_partitions_across_units)
{
    static const char *const flags[] = {"--allow-reset",    "--auth-rate", "0",
                                        "--body-bytes-max", "1048576",     NULL};
    gwh_grid *g = gwh_start(&(gwh_options){HALL_ONLY, .units = 2, .gateway_flags = flags});
    gwh_gateway *gw = g->gw;
    const char *org = gwh_login(gw, ORGANIZER, ORGANIZER_PASSWORD);
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    char *layout = big_layout();
    uint64_t event = event_create(gw, org, layout);
    free(layout);
    int64_t t0 = pgt_now_ms();
    char path[64];
    snprintf(path, sizeof(path), "/api/admin/events/%" PRIu64 "/publish", event);
    /* Writing 200,000 seats (each checked against its section and its
     * partition by PostgreSQL) takes seconds on a loaded machine. */
    json_t *ev = gwh_expect(gwh_send(gw, &(gwh_request_spec){.method = "POST",
                                                             .path = path,
                                                             .auth = org,
                                                             .timeout_ms = PUBLISH_TIMEOUT_MS}),
                            200);
    fprintf(stderr, "# published 200,000 seats in %" PRId64 " ms\n", pgt_now_ms() - t0);
    cr_assert_eq(json_array_size(gwh_json_at(ev, "partitions")), 2);
    cr_assert_eq(gwh_int(ev, "partitions.0.seat_count"), 100000);
    cr_assert_eq(gwh_int(ev, "partitions.1.first_seat"), 100000);
    cr_assert_str_neq(gwh_str(ev, "partitions.0.primary"), gwh_str(ev, "partitions.1.primary"),
                      "both partitions on one unit");
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM seats WHERE event_id = %" PRIu64, event);
    cr_assert_eq(pgt_query_i64(g->db, sql), 200000);
    wait_routed(gw, event);

    uint32_t p[2] = {(uint32_t)gwh_int(ev, "partitions.0.partition_id"),
                     (uint32_t)gwh_int(ev, "partitions.1.partition_id")};
    char seats[64];
    snprintf(seats, sizeof(seats), "[%" PRIu64 ", %" PRIu64 "]", GWH_SEAT_ID(p[0], 7),
             GWH_SEAT_ID(p[0], 8));
    booking_holding(gw, buyer, event, "North", seats);
    snprintf(seats, sizeof(seats), "[%" PRIu64 "]", GWH_SEAT_ID(p[1], 99999));
    booking_holding(gw, buyer, event, "South", seats);
    json_t *s = sales(gw, org, event);
    cr_assert_eq(section_count(s, 0, "held"), 2);
    cr_assert_eq(section_count(s, 0, "free"), 99998);
    cr_assert_eq(section_count(s, 1, "held"), 1);
    cr_assert_eq(section_count(s, 1, "free"), 99999);
    cr_assert_eq(gwh_int(s, "totals.free"), 199997);
    gwh_stop_ok(g);
}

/* The partition's placement as "primary|backups" once it has a backup. */
static const char *wait_backed_up(gwh_grid *g, uint32_t partition)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT COALESCE(primary_pu, '') || '|' || array_to_string(backup_pus, ',')"
             " FROM grid_partitions WHERE partition_id = %u",
             partition);
    int64_t deadline = pgt_now_ms() + WAIT_MS;
    const char *row = pgt_query_text(g->db, sql);
    while (row[strlen(row) - 1] == '|' && pgt_now_ms() < deadline) {
        usleep(20 * 1000);
        row = pgt_query_text(g->db, sql);
    }
    cr_assert(row[0] != '|' && row[strlen(row) - 1] != '|', "partition %u: %s", partition, row);
    return row;
}

/* The gateway that answers a publish or a cancel has read its map again:
 * with no periodic read for a minute, its next booking already sees the
 * sale open, then closed.  A live booking on a unit that is down is
 * counted as not reached. */
Test(gateway_organizer, the_gateway_that_publishes_or_cancels_sells_accordingly_at_once)
{
    static const char *const slow_map[] = {"--map-refresh-ms", "60000", NULL};
    gwh_grid *g = gwh_start(&(gwh_options){HALL_ONLY, .gateway_flags = slow_map});
    gwh_gateway *gw = g->gw;
    const char *org = gwh_login(gw, ORGANIZER, ORGANIZER_PASSWORD);
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t event = event_create(gw, org, three_sections);
    json_t *ev = publish(gw, org, event);
    uint32_t p = (uint32_t)gwh_int(ev, "partitions.0.partition_id");
    char seats[48];
    snprintf(seats, sizeof(seats), "[%" PRIu64 "]", GWH_SEAT_ID(p, 3));
    uint64_t b = booking_holding(gw, buyer, event, NULL, seats);
    wait_written_live(g, b);

    /* The unit is gone: the cancel still answers, and says what it missed. */
    hx_kill(&g->units[0]);
    json_t *c = gwh_expect(
        gwh_http(gw, "POST", org, NULL, "/api/admin/events/%" PRIu64 "/cancel", event), 200);
    cr_assert_eq(gwh_int(c, "bookings_cancelled"), 0, "%s", json_dumps(c, 0));
    cr_assert_eq(gwh_int(c, "bookings_not_reached"), 1, "%s", json_dumps(c, 0));
    char body[64];
    snprintf(body, sizeof(body), "{\"event_id\": %" PRIu64 "}", event);
    gwh_expect_error(gwh_http(gw, "POST", buyer, body, "/api/bookings"), 409, "sale_closed");
    gwh_stop_ok(g);
}

/* How soon another gateway follows a publish or a cancel: PostgreSQL
 * announces the change at commit (migration 010), its periodic read being
 * a minute away. */
#define ANNOUNCED_MS 3000

/* Ms until a new booking of the event on gw answers `status`, polling;
 * asserts it does within ANNOUNCED_MS. */
static int64_t bookings_answer(gwh_gateway *gw, const char *auth, uint64_t event, long status)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"event_id\": %" PRIu64 "}", event);
    int64_t start = pgt_now_ms();
    long last = 0;
    while (pgt_now_ms() - start < ANNOUNCED_MS) {
        last = gwh_http(gw, "POST", auth, body, "/api/bookings")->status;
        if (last == status) {
            return pgt_now_ms() - start;
        }
        usleep(5 * 1000);
    }
    cr_assert_fail("gateway %d: bookings of event %" PRIu64 " still answer %ld, not %ld, %d ms on",
                   gw->index, event, last, status, ANNOUNCED_MS);
    return -1;
}

Test(gateway_organizer, every_gateway_follows_a_publish_and_a_cancel_at_once)
{
    static const char *const slow_map[] = {"--map-refresh-ms", "60000", NULL};
    gwh_grid *g = gwh_start(&(gwh_options){HALL_ONLY, .gateway_flags = slow_map});
    gwh_gateway *other = gwh_gateway_start(g, slow_map);
    const char *org = gwh_login(g->gw, ORGANIZER, ORGANIZER_PASSWORD);
    const char *buyer = gwh_login(other, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t event = event_create(g->gw, org, three_sections);
    publish(g->gw, org, event);
    int64_t opened = bookings_answer(other, buyer, event, 201);
    gwh_expect(gwh_http(g->gw, "POST", org, NULL, "/api/admin/events/%" PRIu64 "/cancel", event),
               200);
    int64_t closed = bookings_answer(other, buyer, event, 409);
    fprintf(stderr,
            "# the other gateway sold %lld ms after the publish answered, refused %lld ms "
            "after the cancel answered\n",
            (long long)opened, (long long)closed);
    gwh_stop_ok(g);
}

Test(gateway_organizer, with_a_manager_the_published_partition_gets_a_backup)
{
    gwh_grid *g = gwh_start(&(gwh_options){HALL_ONLY, .units = 2, .manager = true, .backups = 1});
    gwh_gateway *gw = g->gw;
    const char *org = gwh_login(gw, ORGANIZER, ORGANIZER_PASSWORD);
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t event = event_create(gw, org, three_sections);
    json_t *ev = publish(gw, org, event);
    uint32_t p = (uint32_t)gwh_int(ev, "partitions.0.partition_id");
    /* The hall's unit holds one primary: the new partition goes to the other. */
    char hall[160];
    snprintf(hall, sizeof(hall), "SELECT primary_pu FROM grid_partitions WHERE partition_id = %u",
             GWH_HALL_PARTITION);
    cr_assert_str_neq(gwh_str(ev, "partitions.0.primary"), pgt_query_text(g->db, hall));
    const char *row = wait_backed_up(g, p);
    fprintf(stderr, "# partition %u placed as %s\n", p, row);
    wait_routed(gw, event);
    char seats[48];
    snprintf(seats, sizeof(seats), "[%" PRIu64 "]", GWH_SEAT_ID(p, 25));
    booking_holding(gw, buyer, event, NULL, seats);
    json_t *s = sales(gw, org, event);
    cr_assert_eq(section_count(s, 1, "held"), 1);
    cr_assert_eq(gwh_int(s, "totals.free"), 39);
    gwh_stop_ok(g);
}

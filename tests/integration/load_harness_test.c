/*
 * load_harness_test.c — tixgrid-load (tests/load/) driven against a real
 * grid: every scenario at small rates with its JSON report checked, the
 * closing audit clean after a purchase and a sell-out of the 1,130-seat
 * hall, and the same audit failing once PostgreSQL is changed behind the
 * grid's back.  Bad flags exit 64 with one line saying what is wrong.
 *
 * The grid is gwh.h's (PostgreSQL with the demo data and the load users,
 * one unit serving the concert and the hall, the drain, the gateway and the
 * payment sandbox).  tixgrid-load runs as a process of its own
 * (TIXGRID_LOAD_BIN), each run bounded by its flags and by
 * LOAD_TEST_RUN_MS.
 */
#include "gwh.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* One tixgrid-load run, at most. */
#define LOAD_TEST_RUN_MS 60000
/* Arguments of one run, at most. */
#define LOAD_TEST_ARGS_MAX 48

/* Reports parsed in a test, freed by fini (also after a failed assertion). */
#define LOAD_TEST_REPORTS_MAX 16
static json_t *reports[LOAD_TEST_REPORTS_MAX];
static int report_count;

static void fini(void)
{
    for (int i = 0; i < report_count; i++) {
        json_decref(reports[i]);
    }
    report_count = 0;
    gwh_fini_all();
}

static json_t *report_keep(json_t *j)
{
    cr_assert(report_count < LOAD_TEST_REPORTS_MAX);
    reports[report_count++] = j;
    return j;
}

TestSuite(load_harness, .fini = fini, .timeout = 150);

/* Runs tixgrid-load with args (NULL-ended) and, when json, --json
 * --no-progress; asserts it exited with want. */
static pgt_run_result *load_run(const char *const *args, bool json, int want)
{
    static pgt_run_result r;
    const char *bin = getenv("TIXGRID_LOAD_BIN");
    cr_assert(bin != NULL && bin[0] != '\0', "TIXGRID_LOAD_BIN is not set (meson sets it)");
    char *argv[LOAD_TEST_ARGS_MAX];
    int n = 0;
    argv[n++] = (char *)bin;
    for (int i = 0; args[i] != NULL; i++) {
        cr_assert(n < LOAD_TEST_ARGS_MAX - 3);
        argv[n++] = (char *)args[i];
    }
    if (json) {
        argv[n++] = "--json";
        argv[n++] = "--no-progress";
    }
    argv[n] = NULL;
    pgt_run(argv, NULL, NULL, LOAD_TEST_RUN_MS, &r);
    cr_assert(!r.timed_out, "tixgrid-load ran past %d ms; stderr: %s", LOAD_TEST_RUN_MS, r.err);
    cr_assert_eq(pgt_exit_code(&r), want, "tixgrid-load exited %d, not %d; stderr: %s\nstdout: %s",
                 pgt_exit_code(&r), want, r.err, r.out);
    return &r;
}

/* The JSON report of a run (asserted present and well-formed). */
static json_t *report_of(const pgt_run_result *r)
{
    json_error_t err;
    json_t *j = json_loads(r->out, 0, &err);
    cr_assert(j != NULL, "no JSON report (%s): %s", err.text, r->out);
    return report_keep(j);
}

/* Answers of one route, asserting every one had status `status`. */
static int64_t route_all(json_t *report, const char *route, const char *status)
{
    char path[96];
    snprintf(path, sizeof(path), "routes.%s.answers", route);
    int64_t n = gwh_int(report, path);
    snprintf(path, sizeof(path), "routes.%s.statuses.%s", route, status);
    cr_assert_eq(gwh_int(report, path), n, "%s: not every answer was %s", route, status);
    snprintf(path, sizeof(path), "routes.%s.unexpected", route);
    cr_assert_eq(gwh_int(report, path), 0);
    return n;
}

/* The latency figures of a route are ordered and measured. */
static void latency_sane(json_t *report, const char *route)
{
    char path[96];
    snprintf(path, sizeof(path), "routes.%s.latency", route);
    json_t *l = gwh_json_at(report, path);
    double p50 = json_real_value(json_object_get(l, "p50_us"));
    double p99 = json_real_value(json_object_get(l, "p99_us"));
    double max = json_real_value(json_object_get(l, "max_us"));
    cr_assert(p50 > 0 && p50 <= p99 && p99 <= max, "%s: p50 %.0f p99 %.0f max %.0f us", route, p50,
              p99, max);
    cr_assert(max < 30e6, "%s: a latency of %.0f us", route, max);
}

static void report_valid(json_t *report, const char *scenario)
{
    cr_assert_str_eq(gwh_str(report, "scenario"), scenario);
    cr_assert(json_is_true(gwh_json_at(report, "valid")));
    cr_assert_eq(gwh_int(report, "requests.failed"), 0);
    cr_assert_eq(gwh_int(report, "unfinished_sessions"), 0);
    cr_assert_eq(gwh_int(report, "requests.sent"), gwh_int(report, "requests.answered"));
    cr_assert_eq(gwh_int(report, "arrivals.started"), gwh_int(report, "arrivals.scheduled"));
}

static gwh_grid *start(void)
{
    gwh_options o = {.sandbox = true,
                     .partition_count = 2,
                     .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION},
                     .unit_of = {0, 0}};
    return gwh_start(&o);
}

static void browse_runs(gwh_grid *g)
{
    json_t *rep = report_of(load_run(
        (const char *const[]){"--url", g->gw->url, "--scenario", "browse", "--event", "1", "--rate",
                              "100", "--seconds", "1", "--connections", "4", NULL},
        true, 0));
    report_valid(rep, "browse");
    int64_t n = route_all(rep, "events", "200") + route_all(rep, "event", "200") +
                route_all(rep, "availability", "200");
    cr_assert_eq(n, 100);
    cr_assert_eq(gwh_int(rep, "routes.availability.answers"), 50, "availability: half the reads");
    latency_sane(rep, "availability");
    cr_assert(json_is_null(gwh_json_at(rep, "audit")), "no --db, no audit");

    /* --max-requests cuts the schedule: what was not sent makes the run invalid. */
    rep = report_of(
        load_run((const char *const[]){"--url", g->gw->url, "--scenario", "browse", "--rate", "100",
                                       "--seconds", "1", "--max-requests", "40", NULL},
                 true, 1));
    cr_assert_eq(gwh_int(rep, "requests.sent"), 40);
    cr_assert_eq(gwh_int(rep, "requests.answered"), 40);
    cr_assert_eq(gwh_int(rep, "requests.unsent_arrivals"), 60);
    cr_assert(json_is_false(gwh_json_at(rep, "valid")));
}

/* A ramp then a steady second: 50 + 100 holds, each released. */
static void hold_release_runs(gwh_grid *g)
{
    char first[32];
    snprintf(first, sizeof(first), "%" PRIu64, GWH_SEAT_ID(GWH_DEMO_PARTITION, 1000));
    json_t *rep = report_of(
        load_run((const char *const[]){"--url", g->gw->url, "--scenario", "hold-release", "--email",
                                       "user1@load.tixgrid", "--password", GWH_LOAD_PASSWORD,
                                       "--event", "1", "--seat-first", first, "--seats", "200",
                                       "--connections", "8", "--script", "0-100@1,100@1", NULL},
                 true, 0));
    report_valid(rep, "hold-release");
    cr_assert_eq(gwh_int(rep, "arrivals.scheduled"), 150);
    cr_assert_eq(route_all(rep, "select", "200"), 150);
    cr_assert_eq(route_all(rep, "release", "200"), 150);
    latency_sane(rep, "select");
    cr_assert_eq(json_array_size(gwh_json_at(rep, "script")), 2);
    /* Everything was released: the concert's range is free again. */
    gwh_wait_drained(g, GWH_DEMO_PARTITION);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM seats WHERE event_id = 1"
                                      " AND seat_no BETWEEN 1000 AND 1199 AND status <> 'FREE'"),
                 0);
}

/* 100 holds on 4 bookings: each booking whose cart is full (1, 2, 3 and 4
 * seats first, then 16) is cancelled and replaced.  PostgreSQL has every
 * hold; the cancelled bookings' seats are free, the live ones' held. */
static void hold_cancel_runs(gwh_grid *g)
{
    char first[32];
    snprintf(first, sizeof(first), "%" PRIu64, GWH_SEAT_ID(GWH_DEMO_PARTITION, 2000));
    json_t *rep = report_of(load_run((const char *const[]){"--url",
                                                           g->gw->url,
                                                           "--scenario",
                                                           "hold-cancel",
                                                           "--email",
                                                           "user2@load.tixgrid",
                                                           "--password",
                                                           GWH_LOAD_PASSWORD,
                                                           "--event",
                                                           "1",
                                                           "--seat-first",
                                                           first,
                                                           "--seats",
                                                           "100",
                                                           "--connections",
                                                           "4",
                                                           "--rate",
                                                           "100",
                                                           "--seconds",
                                                           "1",
                                                           NULL},
                                     true, 0));
    report_valid(rep, "hold-cancel");
    cr_assert_eq(route_all(rep, "select", "200"), 100);
    int64_t cancels = route_all(rep, "cancel", "200");
    cr_assert_eq(route_all(rep, "booking", "201"), cancels, "each cancelled booking replaced");
    /* 100 holds = the first four carts (10 seats) + 16 for each later cancel
     * + what the four live bookings hold (0..15 each). */
    int64_t live = 90 - 16 * (cancels - 4);
    cr_assert(cancels >= 4 && live >= 0 && live <= 4 * 15, "%" PRId64 " cancels", cancels);
    latency_sane(rep, "cancel");
    gwh_wait_drained(g, GWH_DEMO_PARTITION);
    static const char held[] = "SELECT count(*) FROM booking_seats s JOIN bookings b"
                               " ON b.id = s.booking_id JOIN users u ON u.id = b.user_id"
                               " WHERE u.email = 'user2@load.tixgrid' AND s.seat_no"
                               " BETWEEN 2000 AND 2099";
    char sql[512];
    cr_assert_eq(pgt_query_i64(g->db, held), 100, "every hold was recorded");
    snprintf(sql, sizeof(sql), "%s AND b.status = 'cancelled' AND s.released_at IS NULL", held);
    cr_assert_eq(pgt_query_i64(g->db, sql), 0, "a cancelled booking holds nothing");
    snprintf(sql, sizeof(sql), "%s AND b.status = 'created' AND s.released_at IS NULL", held);
    cr_assert_eq(pgt_query_i64(g->db, sql), live);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM seats WHERE event_id = 1"
                                      " AND seat_no BETWEEN 2000 AND 2099 AND status = 'SELECTED'"),
                 live);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM bookings b JOIN users u"
                                      " ON u.id = b.user_id WHERE u.email = 'user2@load.tixgrid'"
                                      " AND b.status = 'cancelled'"),
                 cancels);
}

static void purchase_runs(gwh_grid *g)
{
    /* clang-format off */
    const char *const args[] = {
        "--url", g->gw->url, "--sandbox", g->sandbox->url, "--db", g->pg->conninfo,
        "--scenario", "purchase", "--event", "1", "--quantity", "2",
        "--users", "200", "--password", GWH_LOAD_PASSWORD, "--rate", "5", "--seconds", "1",
        NULL};
    /* clang-format on */
    json_t *rep = report_of(load_run(args, true, 0));
    report_valid(rep, "purchase");
    cr_assert_eq(route_all(rep, "login", "200"), 5);
    cr_assert_eq(route_all(rep, "booking", "201"), 5);
    cr_assert_eq(route_all(rep, "select", "200"), 5);
    cr_assert_eq(route_all(rep, "pay_start", "200"), 5);
    cr_assert_eq(route_all(rep, "pay_approve", "303"), 5);
    cr_assert_geq(route_all(rep, "pay_status", "200"), 5);
    /* Every answer says its length: nothing ends a kept-alive connection,
     * the sandbox's 303 after an approval included. */
    cr_assert_eq(gwh_int(rep, "reopened"), 0);
    cr_assert_eq(gwh_int(rep, "sales.bookings"), 5);
    cr_assert_eq(gwh_int(rep, "sales.seats"), 10);
    cr_assert(json_is_true(gwh_json_at(rep, "audit.clean")));
    cr_assert_eq(gwh_int(rep, "audit.sales_checked"), 5);
    cr_assert_eq(gwh_int(rep, "audit.seats_sold"), 10);
    cr_assert_eq(gwh_int(rep, "audit.seats_paid"), 10);
    cr_assert_geq(gwh_int(rep, "audit.catchup_ms"), 0);
}

/* 40 buyers race for the whole hall, 8 seats a booking (then 1 each). */
static void sellout_runs(gwh_grid *g)
{
    /* clang-format off */
    const char *const args[] = {
        "--url", g->gw->url, "--sandbox", g->sandbox->url, "--db", g->pg->conninfo,
        "--scenario", "sellout", "--event", "3", "--buyers", "40", "--quantity", "8",
        "--rate", "40", "--seconds", "1", "--users", "8", "--password", GWH_LOAD_PASSWORD,
        "--connections", "32", "--sandbox-connections", "8", "--time-limit-s", "40",
        NULL};
    /* clang-format on */
    json_t *rep = report_of(load_run(args, true, 0));
    report_valid(rep, "sellout");
    cr_assert(json_is_true(gwh_json_at(rep, "sales.sold_out")));
    cr_assert_eq(gwh_int(rep, "sales.seats"), GWH_HALL_SEATS);
    cr_assert_eq(gwh_int(rep, "sales.double_sales_seen"), 0);
    cr_assert_eq(gwh_int(rep, "routes.select.statuses.409"),
                 gwh_int(rep, "routes.select.answers") - gwh_int(rep, "sales.bookings"));
    cr_assert(json_is_true(gwh_json_at(rep, "audit.clean")));
    cr_assert_eq(gwh_int(rep, "audit.seats_sold"), GWH_HALL_SEATS);
    cr_assert_eq(gwh_int(rep, "audit.seats_paid"), GWH_HALL_SEATS);
    cr_assert_eq(gwh_int(rep, "audit.seats_unsold"), 0);
    cr_assert_eq(gwh_int(rep, "audit.double_sold"), 0);
}

/* Behind the grid's back: the seat rows of one paid booking deleted (its
 * seats stay SOLD), and another paid booking turned cancelled.  A run that
 * sells nothing audits the event and must report both.  (A seat in two open
 * bookings cannot be written at all: booking_seats_one_open_hold.) */
static void audit_catches_tampering(gwh_grid *g)
{
    int64_t lost = pgt_query_i64(g->db, "SELECT count(*) FROM booking_seats WHERE booking_id ="
                                        " (SELECT max(id) FROM bookings WHERE event_id = 3"
                                        "    AND status = 'paid')");
    cr_assert_gt(lost, 0);
    pgt_exec(g->db, "DELETE FROM booking_seats WHERE booking_id = (SELECT max(id) FROM bookings"
                    " WHERE event_id = 3 AND status = 'paid')");
    int64_t unpaid = pgt_query_i64(g->db, "SELECT count(*) FROM booking_seats WHERE booking_id ="
                                          " (SELECT min(id) FROM bookings WHERE event_id = 3"
                                          "    AND status = 'paid')");
    pgt_exec(g->db, "UPDATE bookings SET status = 'cancelled' WHERE id = (SELECT min(id)"
                    " FROM bookings WHERE event_id = 3 AND status = 'paid')");
    /* The table on stdout, the JSON report in a file beside it. */
    char path[128];
    snprintf(path, sizeof(path), "%s/audit.json", g->dir);
    pgt_run_result *r =
        load_run((const char *const[]){"--url", g->gw->url, "--db", g->pg->conninfo, "--scenario",
                                       "browse", "--event", "3", "--rate", "10", "--seconds", "1",
                                       "--json-file", path, "--no-progress", NULL},
                 false, 2);
    cr_assert(strstr(r->out, "audit     FAILED") != NULL, "%s", r->out);
    json_error_t err;
    json_t *rep = json_load_file(path, 0, &err);
    cr_assert(rep != NULL, "%s: %s", path, err.text);
    report_keep(rep);
    cr_assert(json_is_true(gwh_json_at(rep, "valid")), "the requests themselves went well");
    cr_assert(json_is_false(gwh_json_at(rep, "audit.clean")));
    cr_assert_eq(gwh_int(rep, "audit.seats_sold"), GWH_HALL_SEATS);
    cr_assert_eq(gwh_int(rep, "audit.seats_paid"), GWH_HALL_SEATS - lost - unpaid);
    cr_assert_eq(gwh_int(rep, "audit.sold_unpaid"), unpaid, "the booking no longer paid");
    cr_assert_eq(gwh_int(rep, "audit.double_sold"), 0);
}

Test(load_harness, every_scenario_runs_against_a_grid_and_the_audit_catches_what_it_must)
{
    gwh_grid *g = start();
    browse_runs(g);
    hold_release_runs(g);
    hold_cancel_runs(g);
    purchase_runs(g);
    sellout_runs(g);
    audit_catches_tampering(g);
    gwh_stop_ok(g);
}

/* Each bad command line exits 64 with one line naming what is wrong, and
 * sends nothing: the URL's port has no server, which a run would report
 * with 69. */
Test(load_harness, bad_flags_exit_64_with_a_line_that_says_what_is_wrong)
{
    static const struct {
        const char *args[16];
        const char *says;
    } cases[] = {
        {{"--rate", "10", NULL}, "--url is required"},
        {{"--url", "ftp://x", "--rate", "1", NULL}, "must start with http://"},
        {{"--url", "http://127.0.0.1:9", NULL}, "--rate or --script is required"},
        {{"--url", "http://127.0.0.1:9", "--rate", "0", NULL}, "--rate wants"},
        {{"--url", "http://127.0.0.1:9", "--rate", "5", "--script", "5@1", NULL}, "not both"},
        {{"--url", "http://127.0.0.1:9", "--script", "10-20", NULL}, "RATE@SECONDS"},
        {{"--url", "http://127.0.0.1:9", "--script", "0@5", NULL}, "schedules no arrival"},
        {{"--url", "http://127.0.0.1:9", "--rate", "1", "--scenario", "x", NULL}, "--scenario"},
        {{"--url", "http://127.0.0.1:9", "--rate", "1", "--scenario", "sellout", "--password", "p",
          NULL},
         "--sandbox"},
        {{"--url", "http://127.0.0.1:9", "--rate", "1", "--scenario", "purchase", "--sandbox",
          "http://127.0.0.1:9", "--password", "p", "--user-pattern", "u%s", NULL},
         "--user-pattern"},
        {{"--url", "http://127.0.0.1:9", "--rate", "1", "--scenario", "hold-release", "--password",
          "p", NULL},
         "--email"},
        {{"--url", "http://127.0.0.1:9", "--rate", "1", "--scenario", "hold-cancel", "--password",
          "p", "--email", "e", "--seat-first", "4294967296", "--seats", "1000", NULL},
         "at least 1024 (16 x --connections)"},
        {{"--url", "http://127.0.0.1:9", "--rate", "1", "--quantity", "17", NULL}, "--quantity"},
        {{"--url", "http://127.0.0.1:9", "--rate", "1", "--frobnicate", NULL}, "--frobnicate"},
        {{"--url", "http://127.0.0.1:9", "--rate", "1", "extra", NULL}, "unexpected argument"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pgt_run_result *r = load_run(cases[i].args, false, 64);
        cr_assert(strstr(r->err, cases[i].says) != NULL, "case %zu: stderr '%s' lacks '%s'", i,
                  r->err, cases[i].says);
        cr_assert_eq(pgt_count_lines(r->err), 1, "case %zu: one line: %s", i, r->err);
        cr_assert_eq(r->out[0], '\0', "case %zu: nothing on stdout", i);
    }
    /* Good flags, no server: 69, unavailable. */
    pgt_run_result *r = load_run((const char *const[]){"--url", "http://127.0.0.1:9", "--rate", "1",
                                                       "--seconds", "1", "--no-progress", NULL},
                                 false, 69);
    cr_assert(strstr(r->err, "cannot connect") != NULL, "%s", r->err);
}

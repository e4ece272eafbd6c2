/*
 * report.c — what tixgrid-load prints: a live line on stderr every second,
 * then the report as a table or as one JSON object (--json) on stdout.
 *
 * Throughput is answers per second of the run's wall time (from the first
 * due arrival to the end of the loop); latency percentiles are per route
 * and over all routes, from each request's due time, warm-up excluded.
 */
#include "load.h"

#include "tixgrid/clock.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const route_names[ROUTE_COUNT_] = {
    [ROUTE_GET] = "get",
    [ROUTE_EVENTS] = "events",
    [ROUTE_EVENT] = "event",
    [ROUTE_AVAILABILITY] = "availability",
    [ROUTE_LOGIN] = "login",
    [ROUTE_BOOKING] = "booking",
    [ROUTE_SELECT] = "select",
    [ROUTE_RELEASE] = "release",
    [ROUTE_CANCEL] = "cancel",
    [ROUTE_PAY_START] = "pay_start",
    [ROUTE_PAY_APPROVE] = "pay_approve",
    [ROUTE_PAY_STATUS] = "pay_status",
};

const char *load_route_name(load_route r)
{
    return route_names[r];
}

static const double quantiles[] = {0.50, 0.90, 0.99, 0.999};
static const char *const quantile_names[] = {"p50", "p90", "p99", "p99.9"};
#define QUANTILES (sizeof(quantiles) / sizeof(quantiles[0]))

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static uint64_t route_answers(const load_route_stats *rs)
{
    uint64_t n = 0;
    for (uint32_t s = 0; s < LOAD_STATUS_CODES; s++) {
        n += rs->statuses[s];
    }
    return n;
}

uint64_t load_failures(const load_run *run)
{
    uint64_t n = run->unsendable + run->unfinished + run->double_sales_seen;
    for (int r = 0; r < ROUTE_COUNT_; r++) {
        n += run->routes[r].unexpected + run->routes[r].transport_errors;
    }
    return n;
}

static double elapsed_s(const load_run *run)
{
    int64_t end = run->end_ns != 0 ? run->end_ns : tg_mono_ns();
    double s = (double)(end - run->start_ns) / 1e9;
    return s > 1e-3 ? s : 1e-3;
}

/* Every route's latency in one histogram. */
static const load_hist *overall(const load_run *run)
{
    static load_hist all;
    memset(&all, 0, sizeof(all));
    for (int r = 0; r < ROUTE_COUNT_; r++) {
        const load_hist *h = &run->routes[r].latency;
        for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
            all.counts[i] += h->counts[i];
        }
        all.total += h->total;
        all.max_ns = h->max_ns > all.max_ns ? h->max_ns : all.max_ns;
    }
    return &all;
}

void load_progress(load_run *run)
{
    double t = (double)(tg_mono_ns() - run->start_ns) / 1e9;
    fprintf(stderr,
            "%s: %6.1fs  sent %" PRIu64 "  answered %" PRIu64 "  %" PRIu64 "/s  in flight %" PRIu64
            "  sessions %u  sales %" PRIu64 "  failed %" PRIu64 "  p99 %.1f ms  max %.1f ms\n",
            PROGRAM, t, run->sent, run->answered, run->interval_answered, run->in_flight,
            run->active_sessions, run->sale_count, load_failures(run),
            us(load_hist_quantile(&run->interval, 0.99)) / 1000.0,
            us(run->interval.max_ns) / 1000.0);
    memset(&run->interval, 0, sizeof(run->interval));
    run->interval_answered = 0;
}

/* ---- Table ------------------------------------------------------------------------ */

static void table_route(const char *name, const load_hist *h, uint64_t answers, double secs,
                        const load_route_stats *rs)
{
    printf("  %-13s %9" PRIu64 " %9.1f", name, answers, (double)answers / secs);
    for (uint32_t q = 0; q < QUANTILES; q++) {
        printf(" %9.0f", us(load_hist_quantile(h, quantiles[q])));
    }
    printf(" %9.0f ", us(h->max_ns));
    if (rs == NULL) {
        printf("\n");
        return;
    }
    for (uint32_t s = 0; s < LOAD_STATUS_CODES; s++) {
        if (rs->statuses[s] > 0) {
            printf(" %u:%" PRIu64, s, rs->statuses[s]);
        }
    }
    if (rs->unexpected + rs->transport_errors > 0) {
        printf("  unexpected %" PRIu64 " transport %" PRIu64, rs->unexpected, rs->transport_errors);
    }
    printf("\n");
}

static void table_audit(const load_run *run, const load_audit *a)
{
    if (run->opt.db == NULL) {
        return;
    }
    if (!a->ran) {
        printf("audit     NOT RUN: %s\n", a->error);
        return;
    }
    printf("audit     %s: %" PRIu64 " sales checked, %" PRIu64 " missing in PostgreSQL; %" PRIu64
           " seats in two paid bookings; %" PRIu64 " SOLD seats, %" PRIu64
           " seats of paid bookings, %" PRIu64 " SOLD without a paid booking",
           a->clean ? "clean" : "FAILED", a->sales_checked, a->sales_missing, a->double_sold,
           a->seats_sold, a->seats_paid, a->sold_unpaid);
    if (strcmp(run->scenario->name, "sellout") == 0) {
        printf("; %" PRIu64 " seats not sold", a->seats_unsold);
    }
    printf("\n          PostgreSQL held every sale %" PRId64 " ms after the last one%s\n",
           a->catchup_ms, a->catchup_ms < 0 ? " (never, within --catchup-timeout-s)" : "");
}

void load_report_table(const load_run *run, const load_audit *a)
{
    const load_options *o = &run->opt;
    double secs = elapsed_s(run);
    printf("%s: %s against %s, %" PRIu64 " connections, %" PRIu64 " arrivals in %.1f s (%" PRIu64
           " scheduled), %" PRIu64 " requests sent, %" PRIu64 " answered\n",
           PROGRAM, run->scenario->name, run->targets[TARGET_GATEWAY].host, o->connections,
           run->arrived, secs, run->arrivals_total, run->sent, run->answered);
    printf("  %-13s %9s %9s", "route", "answers", "per s");
    for (uint32_t q = 0; q < QUANTILES; q++) {
        printf(" %7s us", quantile_names[q]);
    }
    printf(" %7s us  statuses\n", "max");
    for (int r = 0; r < ROUTE_COUNT_; r++) {
        const load_route_stats *rs = &run->routes[r];
        uint64_t n = route_answers(rs);
        if (n + rs->transport_errors > 0) {
            table_route(route_names[r], &rs->latency, n, secs, rs);
        }
    }
    table_route("all", overall(run), run->answered, secs, NULL);
    printf("queue     at most %" PRIu64 " arrivals overdue at once; %" PRIu64
           " connections reopened, %" PRIu64 " requests sent again on one; %" PRIu64
           " sessions unfinished, %" PRIu64 " arrivals unsent\n",
           run->waiting_max, run->reopened, run->resent, run->unfinished, run->unsendable);
    if (run->sale_capacity > 0) {
        printf("sales     %" PRIu64 " bookings paid, %" PRIu64 " seats, %" PRIu64
               " seats sold twice as seen by buyers%s\n",
               run->sale_count, run->seats_sold, run->double_sales_seen,
               run->sold_out ? "; sold out" : "");
    }
    table_audit(run, a);
    printf("result    %s (%" PRIu64 " failures)\n", load_failures(run) == 0 ? "valid" : "INVALID",
           load_failures(run));
}

/* ---- JSON ------------------------------------------------------------------------- */

static json_t *latency_json(const load_hist *h)
{
    json_t *j = json_object();
    static const char *const keys[] = {"p50_us", "p90_us", "p99_us", "p999_us"};
    for (uint32_t q = 0; q < QUANTILES; q++) {
        json_object_set_new(j, keys[q], json_real(us(load_hist_quantile(h, quantiles[q]))));
    }
    json_object_set_new(j, "max_us", json_real(us(h->max_ns)));
    json_object_set_new(j, "samples", json_integer((json_int_t)h->total));
    return j;
}

static json_t *route_json(const load_route_stats *rs, double secs)
{
    uint64_t n = route_answers(rs);
    json_t *statuses = json_object();
    for (uint32_t s = 0; s < LOAD_STATUS_CODES; s++) {
        if (rs->statuses[s] > 0) {
            char key[8];
            snprintf(key, sizeof(key), "%u", s);
            json_object_set_new(statuses, key, json_integer((json_int_t)rs->statuses[s]));
        }
    }
    return json_pack("{s:I,s:f,s:o,s:o,s:I,s:I}", "answers", (json_int_t)n, "per_s",
                     (double)n / secs, "latency", latency_json(&rs->latency), "statuses", statuses,
                     "unexpected", (json_int_t)rs->unexpected, "transport_errors",
                     (json_int_t)rs->transport_errors);
}

static json_t *script_json(const load_options *o)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < o->segment_count; i++) {
        const load_segment *s = &o->segments[i];
        json_array_append_new(
            a, json_pack("{s:f,s:f,s:f}", "from", s->from, "to", s->to, "seconds", s->seconds));
    }
    return a;
}

static json_t *audit_json(const load_audit *a)
{
    if (!a->ran) {
        return json_pack("{s:b,s:b,s:s}", "ran", 0, "clean", 0, "error", a->error);
    }
    return json_pack(
        "{s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "ran", 1, "clean", a->clean, "catchup_ms",
        (json_int_t)a->catchup_ms, "sales_checked", (json_int_t)a->sales_checked, "sales_missing",
        (json_int_t)a->sales_missing, "double_sold", (json_int_t)a->double_sold, "seats_sold",
        (json_int_t)a->seats_sold, "seats_paid", (json_int_t)a->seats_paid, "sold_unpaid",
        (json_int_t)a->sold_unpaid, "seats_unsold", (json_int_t)a->seats_unsold);
}

void load_report_json(const load_run *run, const load_audit *a, FILE *out)
{
    const load_options *o = &run->opt;
    double secs = elapsed_s(run);
    json_t *routes = json_object();
    for (int r = 0; r < ROUTE_COUNT_; r++) {
        const load_route_stats *rs = &run->routes[r];
        if (route_answers(rs) + rs->transport_errors > 0) {
            json_object_set_new(routes, route_names[r], route_json(rs, secs));
        }
    }
    json_t *j = json_pack(
        "{s:s,s:s,s:I,s:o,s:I,s:f,s:{s:I,s:I},s:{s:I,s:I,s:I,s:I},s:f,s:o,s:o,s:I,s:I,s:I}",
        "scenario", run->scenario->name, "url", o->url, "connections", (json_int_t)o->connections,
        "script", script_json(o), "warmup_seconds", (json_int_t)o->warmup_seconds, "seconds", secs,
        "arrivals", "scheduled", (json_int_t)run->arrivals_total, "started",
        (json_int_t)run->arrived, "requests", "sent", (json_int_t)run->sent, "answered",
        (json_int_t)run->answered, "unsent_arrivals", (json_int_t)run->unsendable, "failed",
        (json_int_t)load_failures(run), "answers_per_s", (double)run->answered / secs, "latency",
        latency_json(overall(run)), "routes", routes, "queue_max", (json_int_t)run->waiting_max,
        "reopened", (json_int_t)run->reopened, "unfinished_sessions", (json_int_t)run->unfinished);
    json_object_set_new(j, "resent", json_integer((json_int_t)run->resent));
    if (run->sale_capacity > 0) {
        json_object_set_new(j, "sales",
                            json_pack("{s:I,s:I,s:I,s:b}", "bookings", (json_int_t)run->sale_count,
                                      "seats", (json_int_t)run->seats_sold, "double_sales_seen",
                                      (json_int_t)run->double_sales_seen, "sold_out",
                                      run->sold_out));
    }
    json_object_set_new(j, "audit", o->db != NULL ? audit_json(a) : json_null());
    json_object_set_new(j, "valid", json_boolean(load_failures(run) == 0));
    json_dumpf(j, out, JSON_COMPACT);
    fputc('\n', out);
    json_decref(j);
}

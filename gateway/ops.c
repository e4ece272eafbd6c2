/*
 * ops.c — GET /healthz, GET /readyz, GET /metrics, POST /api/reset.
 *
 * healthz says the process answers; readyz that the partition map was read
 * and every placed partition's primary answered at the last refresh (a load
 * balancer sends traffic only then).  /metrics is the Prometheus text
 * format, summed over the loop threads at scrape time.
 *
 * POST /api/reset exists for tests and demos (seed 001): only when the
 * gateway runs with --allow-reset; otherwise POST answers 404 as if the
 * route did not exist.  It asks every partition's unit to end every
 * booking and free every held or sold seat (partition_reset; blocked seats stay blocked), then
 * deletes the payments in PostgreSQL.  Users, events and seats stay.  The
 * ended bookings reach PostgreSQL through the write-behind drain as
 * cancelled: history is kept consistent rather than erased.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#define GW_RESET_PARTITIONS_MAX 4096u
#define GW_METRICS_BYTES_MAX (1u << 20)

void gw_on_healthz(gw_req *r)
{
    gw_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void gw_on_readyz(gw_req *r)
{
    char why[200];
    if (gw_map_ready(r->gw, why, sizeof(why))) {
        gw_reply_json(r, 200, json_pack("{s:s,s:I}", "status", "ready", "map_epoch",
                                        (json_int_t)gw_map_epoch(r->gw)));
    } else {
        gw_reply_error_retry(r, 503, "not_ready", 1, "%s", why);
    }
}

/* ---- metrics ------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        t->len = t->len + (size_t)n < t->cap ? t->len + (size_t)n : t->cap - 1;
    }
}

static uint64_t sum_workers(gw_gateway *gw, size_t offset)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < gw->worker_count; i++) {
        const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)&gw->workers[i].metrics +
                                                               offset);
        total += atomic_load_explicit(v, memory_order_relaxed);
    }
    return total;
}

#define METRIC(field) sum_workers(gw, offsetof(gw_metrics, field))

static void metrics_requests(gw_gateway *gw, text *t)
{
    put(t, "# HELP tixgrid_http_requests_total HTTP replies by route and status class.\n"
           "# TYPE tixgrid_http_requests_total counter\n");
    for (int k = 0; k <= gw_route_count(); k++) {
        for (int c = 0; c < GW_STATUS_CLASSES; c++) {
            uint64_t n = METRIC(requests[k][c]);
            if (n > 0) {
                put(t, "tixgrid_http_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n",
                    gw_route_name_at(k), c + 1, (unsigned long long)n);
            }
        }
    }
    put(t, "# HELP tixgrid_http_request_duration_seconds Time from request to reply.\n"
           "# TYPE tixgrid_http_request_duration_seconds histogram\n");
    for (int k = 0; k <= gw_route_count(); k++) {
        uint64_t cumulative = 0;
        for (int b = 0; b <= GW_LATENCY_BUCKETS; b++) {
            cumulative += METRIC(latency[k][b]);
        }
        if (cumulative == 0) {
            continue;
        }
        uint64_t seen = 0;
        for (int b = 0; b < GW_LATENCY_BUCKETS; b++) {
            seen += METRIC(latency[k][b]);
            put(t, "tixgrid_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                gw_route_name_at(k), gw_latency_bound_us(b) / 1e6, (unsigned long long)seen);
        }
        put(t, "tixgrid_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
               "tixgrid_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
               "tixgrid_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            gw_route_name_at(k), (unsigned long long)cumulative, gw_route_name_at(k),
            METRIC(latency_sum_us[k]) / 1e6, gw_route_name_at(k), (unsigned long long)cumulative);
    }
}

static void metrics_grid(gw_gateway *gw, text *t)
{
    uint32_t connections = 0, in_service = 0;
    for (uint32_t i = 0; i < gw->worker_count; i++) {
        connections += __atomic_load_n(&gw->workers[i].connections, __ATOMIC_RELAXED);
        in_service += __atomic_load_n(&gw->workers[i].in_service, __ATOMIC_RELAXED);
    }
    put(t,
        "# TYPE tixgrid_holds_total counter\ntixgrid_holds_total{outcome=\"ok\"} %llu\n"
        "tixgrid_holds_total{outcome=\"refused\"} %llu\n"
        "# TYPE tixgrid_sales_total counter\ntixgrid_sales_total %llu\n"
        "# TYPE tixgrid_grid_map_epoch gauge\ntixgrid_grid_map_epoch %llu\n"
        "# TYPE tixgrid_audit_backlog gauge\ntixgrid_audit_backlog %llu\n"
        "# TYPE tixgrid_http_connections gauge\ntixgrid_http_connections %u\n"
        "# TYPE tixgrid_http_in_service gauge\ntixgrid_http_in_service %u\n"
        "# TYPE tixgrid_http_refused_total counter\n"
        "tixgrid_http_refused_total{reason=\"connections\"} %llu\n"
        "tixgrid_http_refused_total{reason=\"busy\"} %llu\n"
        "# TYPE tixgrid_grid_batches_total counter\ntixgrid_grid_batches_total %llu\n"
        "# TYPE tixgrid_grid_batched_requests_total counter\ntixgrid_grid_batched_requests_total %llu\n"
        "# TYPE tixgrid_live_streams gauge\ntixgrid_live_streams %llu\n"
        "# TYPE tixgrid_live_dropped_total counter\ntixgrid_live_dropped_total %llu\n",
        (unsigned long long)METRIC(holds_ok), (unsigned long long)METRIC(holds_failed),
        (unsigned long long)METRIC(sales), (unsigned long long)gw_map_epoch(gw),
        (unsigned long long)gw_audit_backlog(gw), connections, in_service,
        (unsigned long long)METRIC(connections_refused), (unsigned long long)METRIC(busy_refused),
        (unsigned long long)METRIC(grid_batches), (unsigned long long)METRIC(grid_batched),
        (unsigned long long)METRIC(live_streams), (unsigned long long)METRIC(live_dropped));
}

/* The payment provider's circuit breaker: 0 closed, 1 open, 2 half-open. */
static void metrics_payments(gw_gateway *gw, text *t)
{
    gw_breaker_view v = gw_breaker_read(&gw->breaker, tg_mono_ms());
    put(t,
        "# TYPE tixgrid_payment_breaker_state gauge\ntixgrid_payment_breaker_state %d\n"
        "# TYPE tixgrid_payment_breaker_failures gauge\ntixgrid_payment_breaker_failures %u\n"
        "# TYPE tixgrid_payment_breaker_refused_total counter\n"
        "tixgrid_payment_breaker_refused_total %llu\n",
        (int)v.state, v.failures, (unsigned long long)v.refused);
}

void gw_on_metrics(gw_req *r)
{
    text t = {.buf = malloc(GW_METRICS_BYTES_MAX), .cap = GW_METRICS_BYTES_MAX};
    if (t.buf == NULL) {
        gw_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    t.buf[0] = '\0';
    metrics_requests(r->gw, &t);
    metrics_grid(r->gw, &t);
    metrics_payments(r->gw, &t);
    gw_reply_raw(r, 200, "text/plain; version=0.0.4", t.buf, t.len);
    free(t.buf);
}

/* ---- reset --------------------------------------------------------------- */

typedef struct {
    uint32_t ids[GW_RESET_PARTITIONS_MAX];
    uint32_t count, at;
    uint64_t bookings, seats;
    bool db_failed;
} reset_state;

static void reset_partition_next(gw_req *r);

static void payments_clear_run(PGconn *db, void *p)
{
    reset_state *st = p;
    PGresult *res = db != NULL ? PQexec(db, "DELETE FROM payments") : NULL;
    st->db_failed = res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK;
    PQclear(res);
}

static void payments_clear_done(gw_req *r, void *p)
{
    reset_state *st = p;
    gw_audit(r, "reset", 0, 0, NULL, 0, st->db_failed ? "db" : "ok",
             json_pack("{s:I,s:I,s:I}", "partitions", (json_int_t)st->count, "bookings_cancelled",
                       (json_int_t)st->bookings, "seats_freed", (json_int_t)st->seats));
    if (st->db_failed) {
        gw_reply_error_retry(r, 503, "database_unavailable", 1,
                             "the grid was reset but payments could not be cleared; retry");
        return;
    }
    gw_reply_json(r, 200, json_pack("{s:b,s:I,s:I,s:I}", "reset", 1, "partitions",
                                    (json_int_t)st->count, "bookings_cancelled",
                                    (json_int_t)st->bookings, "seats_freed",
                                    (json_int_t)st->seats));
}

static void reset_partition_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    reset_state *st = r->state;
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, st->ids[st->at]);
        return;
    }
    st->bookings += reply->partition_reset_ok.bookings_cancelled;
    st->seats += reply->partition_reset_ok.seats_freed;
    st->at++;
    reset_partition_next(r);
}

static void reset_partition_next(gw_req *r)
{
    reset_state *st = r->state;
    if (st->at == st->count) {
        reset_state *job = malloc(sizeof(*job));
        if (job == NULL) {
            gw_reply_error(r, 500, "internal", "out of memory");
            return;
        }
        *job = *st;
        if (gw_db_submit(r, payments_clear_run, payments_clear_done, job, free) != TG_OK) {
            gw_reply_error_retry(r, 503, "busy", 1, "too many requests waiting; retry");
        }
        return;
    }
    tg_msg msg = {.type = TG_WIRE_PARTITION_RESET};
    msg.partition_reset.partition_id = st->ids[st->at];
    tg_err err = gw_grid_send(r, st->ids[st->at], &msg, GW_SPACE_NONE, reset_partition_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->ids[st->at]);
    }
}

void gw_on_reset(gw_req *r)
{
    if (!r->gw->cfg.allow_reset) {
        gw_reply_error(r, 404, "not_found", "no such resource");
        return;
    }
    reset_state *st = r->state = gw_alloc(r, sizeof(reset_state));
    st->count = gw_map_partitions(r->gw, st->ids, GW_RESET_PARTITIONS_MAX);
    tg_log(TG_LOG_WARN, "reset requested from %s: %u partitions", r->client_ip, st->count);
    reset_partition_next(r);
}

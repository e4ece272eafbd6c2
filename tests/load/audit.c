/*
 * audit.c — tixgrid-load's closing audit (--db CONNINFO): what a sale the
 * grid acknowledged must have become in PostgreSQL once the write-behind
 * drained.
 *
 * 1. Catch-up.  The run's sales (booking id, seats) go into a temporary
 *    table with COPY; the audit then polls (every LOAD_AUDIT_POLL_MS) until
 *    every one of them is a `paid` booking whose seats are SOLD to it, at
 *    most --catchup-timeout-s.  The time from the last sale to that moment
 *    is reported: an upper bound of the drain's lag, since the first poll
 *    comes after the run ended.  Then it waits until the event's partition
 *    offsets stop moving (LOAD_AUDIT_STILL_POLLS polls in a row), so that
 *    the event-wide checks read a drained state, not one half-way.
 * 2. The checks, over the whole event (so a run with no sales audits the
 *    state earlier runs left): no seat in two paid bookings; SOLD seats
 *    equal the seats of paid bookings; no SOLD seat whose booking is not
 *    paid; for sellout, no seat left FREE, SELECTED or RESERVED.
 * Rejected: asking the gateway for the grid's counts (the audit must not
 * trust the component it checks); a trigger or LISTEN on the tables (the
 * audit must work on any database the drain writes, read-only).
 */
#include "load.h"

#include "tixgrid/clock.h"

#include <libpq-fe.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOAD_AUDIT_POLL_MS     50  /* between catch-up polls */
#define LOAD_AUDIT_STILL_POLLS 4   /* offsets unchanged this many polls in a row: drained */
#define LOAD_AUDIT_STILL_MS    100 /* between those polls */

static const char missing_sql[] =
    "WITH sold AS (SELECT booking_id, count(*) AS n FROM seats"
    "              WHERE event_id = $1 AND status = 'SOLD' GROUP BY booking_id)"
    " SELECT count(*) FROM load_sales s"
    "  LEFT JOIN bookings b ON b.id = s.booking_id"
    "  LEFT JOIN sold ON sold.booking_id = s.booking_id"
    " WHERE b.status IS DISTINCT FROM 'paid' OR coalesce(sold.n, 0) <> s.seats";

static const char offsets_sql[] =
    "SELECT coalesce(sum(o.last_seq), 0)::text || '/' || count(*) FROM partition_offsets o"
    " JOIN grid_partitions p USING (partition_id) WHERE p.event_id = $1";

static const char double_sql[] =
    "SELECT count(*) FROM (SELECT bs.seat_no FROM booking_seats bs"
    "  JOIN bookings b ON b.id = bs.booking_id"
    " WHERE b.event_id = $1 AND b.status = 'paid' AND bs.released_at IS NULL"
    " GROUP BY bs.seat_no HAVING count(*) > 1) d";

static const char sold_sql[] = "SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'SOLD'";

static const char paid_sql[] =
    "SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id"
    " WHERE b.event_id = $1 AND b.status = 'paid' AND bs.released_at IS NULL";

static const char unpaid_sql[] =
    "SELECT count(*) FROM seats s LEFT JOIN bookings b ON b.id = s.booking_id"
    " WHERE s.event_id = $1 AND s.status = 'SOLD' AND b.status IS DISTINCT FROM 'paid'";

static const char unsold_sql[] = "SELECT count(*) FROM seats WHERE event_id = $1"
                                 " AND status IN ('FREE', 'SELECTED', 'RESERVED')";

static void audit_fail(load_audit *a, const char *what, PGconn *db)
{
    const char *msg = db != NULL ? PQerrorMessage(db) : "";
    snprintf(a->error, sizeof(a->error), "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
}

/* One text value of a query with the event as $1; false on an error. */
static bool query_text(PGconn *db, const char *sql, uint64_t event, char *out, size_t size)
{
    char param[24];
    snprintf(param, sizeof(param), "%" PRIu64, event);
    const char *values[] = {param};
    PGresult *res = PQexecParams(db, sql, 1, NULL, values, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        snprintf(out, size, "%s", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return ok;
}

static bool query_count(PGconn *db, const char *sql, uint64_t event, uint64_t *out)
{
    char text[64];
    if (!query_text(db, sql, event, text, sizeof(text))) {
        return false;
    }
    *out = strtoull(text, NULL, 10);
    return true;
}

static bool exec_ok(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok;
}

/* The run's sales into the temporary table load_sales. */
static bool sales_copy(PGconn *db, const load_run *run)
{
    if (!exec_ok(db, "CREATE TEMPORARY TABLE load_sales (booking_id bigint PRIMARY KEY,"
                     " seats integer NOT NULL)")) {
        return false;
    }
    PGresult *res = PQexec(db, "COPY load_sales FROM STDIN");
    bool ok = PQresultStatus(res) == PGRES_COPY_IN;
    PQclear(res);
    for (uint64_t i = 0; ok && i < run->sale_count; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "%" PRIu64 "\t%u\n", run->sale_bookings[i],
                         run->sale_seats[i]);
        ok = PQputCopyData(db, line, n) == 1;
    }
    ok = PQputCopyEnd(db, ok ? NULL : "the audit failed to send its sales") == 1 && ok;
    res = PQgetResult(db);
    ok = ok && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    while ((res = PQgetResult(db)) != NULL) {
        PQclear(res);
    }
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Step 1: every sale in PostgreSQL (catchup_ms), then the offsets still. */
static bool catch_up(PGconn *db, const load_run *run, load_audit *a)
{
    uint64_t event = run->opt.event_id;
    int64_t deadline = tg_mono_ns() + (int64_t)run->opt.catchup_timeout_s * 1000000000;
    a->catchup_ms = -1;
    while (tg_mono_ns() < deadline) {
        if (!query_count(db, missing_sql, event, &a->sales_missing)) {
            return false;
        }
        if (a->sales_missing == 0) {
            int64_t lag = run->sale_count > 0 ? tg_mono_ns() - run->last_sale_ns : 0;
            a->catchup_ms = lag / 1000000;
            break;
        }
        sleep_ms(LOAD_AUDIT_POLL_MS);
    }
    char last[64] = "", now[64];
    for (int still = 0; still < LOAD_AUDIT_STILL_POLLS && tg_mono_ns() < deadline;) {
        if (!query_text(db, offsets_sql, event, now, sizeof(now))) {
            return false;
        }
        still = strcmp(now, last) == 0 ? still + 1 : 0;
        snprintf(last, sizeof(last), "%s", now);
        sleep_ms(LOAD_AUDIT_STILL_MS);
    }
    return true;
}

/* Step 2: the event-wide checks. */
static bool checks(PGconn *db, const load_run *run, load_audit *a)
{
    uint64_t e = run->opt.event_id;
    return query_count(db, missing_sql, e, &a->sales_missing) &&
           query_count(db, double_sql, e, &a->double_sold) &&
           query_count(db, sold_sql, e, &a->seats_sold) &&
           query_count(db, paid_sql, e, &a->seats_paid) &&
           query_count(db, unpaid_sql, e, &a->sold_unpaid) &&
           query_count(db, unsold_sql, e, &a->seats_unsold);
}

void load_audit_run(const load_run *run, load_audit *a)
{
    *a = (load_audit){.catchup_ms = -1};
    PGconn *db = PQconnectdb(run->opt.db);
    if (PQstatus(db) != CONNECTION_OK) {
        audit_fail(a, "cannot connect to PostgreSQL (--db)", db);
    } else if (!sales_copy(db, run)) {
        audit_fail(a, "cannot load the run's sales", db);
    } else if (!catch_up(db, run, a) || !checks(db, run, a)) {
        audit_fail(a, "an audit query failed", db);
    } else {
        a->ran = true;
        a->sales_checked = run->sale_count;
        bool sellout = strcmp(run->scenario->name, "sellout") == 0;
        a->clean = a->catchup_ms >= 0 && a->sales_missing == 0 && a->double_sold == 0 &&
                   a->seats_sold == a->seats_paid && a->sold_unpaid == 0 &&
                   (!sellout || a->seats_unsold == 0);
    }
    PQfinish(db);
}

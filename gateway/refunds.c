/*
 * refunds.c — refunds that are owed and could not be made when the late
 * confirmation came in (the provider down, the breaker open), tried again
 * in the background.
 *
 * The webhook records a late payment as completed with refund_status 'due'
 * before it asks the provider for the refund (payments.c); if that fails,
 * it answers 5xx and the provider's redelivery retries.  A provider that
 * gives up redelivering would leave the money owed for good, so one thread
 * per gateway looks every cfg.refund_retry_s for payments that have been
 * 'due' for at least that long, asks the provider again (through the
 * breaker: an open breaker waits for the next round), and records
 * 'refunded' with an audit record of the system.  A round takes at most
 * REFUNDS_PER_ROUND payments, oldest first.
 *
 * Reconciliation.  A confirmation whose every delivery failed before the
 * payment was settled (the unit unreachable for the provider's few tries)
 * leaves the row 'pending' for good, the money kept and nothing sold.  So
 * each round also takes the payments still pending whose booking
 * PostgreSQL shows ended without them (expired, failed or cancelled: the
 * grid wrote that, so the payment can no longer sell), at least
 * cfg.refund_retry_s after their last change, and asks the provider: a
 * CONFIRMED one is recorded late ('due', audited payment_late) and
 * refunded at once; a FAILED one is recorded failed; one still PENDING is
 * asked again next round.  A pending payment of a booking that is paid is
 * left alone: it may be the one that paid it, its record cut short.
 *
 * This thread may block (PostgreSQL, the provider's answer): it is not a
 * loop thread.  Several gateways may retry the same refund at once; the
 * provider's refund is idempotent and the update only moves 'due' to
 * 'refunded', so that costs a call, never a second refund.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "provider.h"
#include "tixgrid/log.h"

#define REFUNDS_PER_ROUND "16" /* payments one round takes at most */

struct gw_refunds {
    gw_gateway *gw;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping; /* under lock */
    PGconn *db;    /* the thread's own */
};

static const char due_sql[] = "SELECT id, booking_id, amount_minor FROM payments"
                              " WHERE status = 'completed' AND refund_status = 'due'"
                              "   AND updated_at < now() - make_interval(secs => $1)"
                              " ORDER BY updated_at LIMIT " REFUNDS_PER_ROUND;

/* A refund the provider did not make goes to the back of the queue, so that
 * a few that keep failing never hold up the others. */
static const char requeue_sql[] =
    "UPDATE payments SET updated_at = now() WHERE id = $1 AND refund_status = 'due'";

static const char stale_sql[] =
    "SELECT p.id, p.booking_id, p.amount_minor FROM payments p JOIN bookings b"
    "   ON b.id = p.booking_id"
    " WHERE p.status = 'pending' AND b.status IN ('expired', 'failed', 'cancelled')"
    "   AND p.updated_at < now() - make_interval(secs => $1)"
    " ORDER BY p.updated_at LIMIT " REFUNDS_PER_ROUND;

/* What the provider said of a stale payment, if it is still pending. */
static const char stale_confirmed_sql[] =
    "UPDATE payments SET status = 'completed', refund_status = 'due',"
    " provider_status = 'CONFIRMED', updated_at = now() WHERE id = $1 AND status = 'pending'";
static const char stale_failed_sql[] =
    "UPDATE payments SET status = 'failed', provider_status = $2, updated_at = now()"
    " WHERE id = $1 AND status = 'pending'";
static const char stale_requeue_sql[] =
    "UPDATE payments SET updated_at = now() WHERE id = $1 AND status = 'pending'";

static const char refunded_sql[] =
    "UPDATE payments SET refund_status = 'refunded', refunded_at = now(), updated_at = now()"
    " WHERE id = $1 AND refund_status = 'due'";

static uint64_t event_of(gw_gateway *gw, tg_booking_id booking)
{
    const gw_layout *l =
        tg_booking_id_valid(booking) ? gw_map_layout(gw, tg_booking_id_partition(booking)) : NULL;
    return l != NULL ? l->event_id : 0;
}

static void refund_one(gw_refunds *f, const char *id, tg_booking_id booking, int64_t amount)
{
    gw_pay_result res;
    tg_err err = gw_pay_refund_now(f->gw, id, amount, &res);
    if (err == TG_EBUSY) {
        return; /* the breaker is open: next round */
    }
    json_t *detail = json_pack("{s:s,s:b}", "payment_id", id, "retried", 1);
    if (err != TG_OK) {
        const char *params[] = {id};
        PQclear(PQexecParams(f->db, requeue_sql, 1, NULL, params, NULL, NULL, 0));
        tg_log(TG_LOG_WARN, "refund of payment %s still owed: %s", id, res.message);
        gw_audit_system(f->gw, "payment_refund", booking, event_of(f->gw, booking),
                        "provider_error", detail);
        return;
    }
    const char *params[] = {id};
    PGresult *r = PQexecParams(f->db, refunded_sql, 1, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    bool recorded_elsewhere = ok && strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (recorded_elsewhere) {
        json_decref(detail); /* another gateway, or a webhook, recorded and audited it */
        return;
    }
    gw_audit_system(f->gw, "payment_refund", booking, event_of(f->gw, booking),
                    ok ? "ok" : "db_unavailable", detail);
    tg_log(ok ? TG_LOG_INFO : TG_LOG_WARN, "refund of payment %s made%s", id,
           ok ? "" : ", but not recorded: PostgreSQL refused (the next round records it)");
}

/* Runs sql with the payment id (and a second parameter); true when it
 * changed the row. */
static bool payment_update(gw_refunds *f, const char *sql, const char *id, const char *arg)
{
    const char *params[] = {id, arg};
    PGresult *r = PQexecParams(f->db, sql, arg != NULL ? 2 : 1, NULL, params, NULL, NULL, 0);
    bool changed = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return changed;
}

static void reconcile_one(gw_refunds *f, const char *id, tg_booking_id booking, int64_t amount)
{
    gw_pay_result res;
    tg_err err = gw_pay_status_now(f->gw, id, &res);
    if (err == TG_EBUSY) {
        return; /* the breaker is open: next round */
    }
    if (err != TG_OK) {
        payment_update(f, stale_requeue_sql, id, NULL);
        tg_log(TG_LOG_WARN, "payment %s of ended booking %llu: status not known: %s", id,
               (unsigned long long)booking, res.message);
        return;
    }
    uint64_t event = event_of(f->gw, booking);
    if (strcmp(res.status, "CONFIRMED") == 0) {
        if (payment_update(f, stale_confirmed_sql, id, NULL)) {
            tg_log(TG_LOG_WARN,
                   "payment %s confirmed for ended booking %llu, never settled: "
                   "refunding it",
                   id, (unsigned long long)booking);
            gw_audit_system(f->gw, "payment_late", booking, event, "refund_due",
                            json_pack("{s:s,s:b}", "payment_id", id, "reconciled", 1));
            refund_one(f, id, booking, amount);
        }
    } else if (strcmp(res.status, "FAILED") == 0) {
        if (payment_update(f, stale_failed_sql, id, res.status)) {
            gw_audit_system(f->gw, "payment_fail", booking, event, "ok",
                            json_pack("{s:s,s:b}", "payment_id", id, "reconciled", 1));
        }
    } else {
        payment_update(f, stale_requeue_sql, id, NULL); /* pending still, or already refunded */
    }
}

static bool stopping(gw_refunds *f)
{
    pthread_mutex_lock(&f->lock);
    bool stop = f->stopping;
    pthread_mutex_unlock(&f->lock);
    return stop;
}

static void round_run(gw_refunds *f)
{
    if (f->db == NULL || PQstatus(f->db) != CONNECTION_OK) {
        PQfinish(f->db);
        if ((f->db = gw_db_connect(&f->gw->cfg, "refunds")) == NULL) {
            return;
        }
    }
    char secs[16];
    snprintf(secs, sizeof(secs), "%u", f->gw->cfg.refund_retry_s);
    const char *params[] = {secs};
    static const struct {
        const char *sql, *what;
        void (*one)(gw_refunds *f, const char *id, tg_booking_id booking, int64_t amount);
    } passes[] = {{due_sql, "refunds owed", refund_one},
                  {stale_sql, "payments of ended bookings", reconcile_one}};
    for (size_t k = 0; k < sizeof(passes) / sizeof(passes[0]) && !stopping(f); k++) {
        PGresult *rows = PQexecParams(f->db, passes[k].sql, 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(rows) != PGRES_TUPLES_OK) {
            tg_log(TG_LOG_WARN, "%s not read: %s", passes[k].what, PQresultErrorMessage(rows));
            PQclear(rows);
            return;
        }
        for (int i = 0; i < PQntuples(rows) && !stopping(f); i++) {
            passes[k].one(f, PQgetvalue(rows, i, 0), strtoull(PQgetvalue(rows, i, 1), NULL, 10),
                          strtoll(PQgetvalue(rows, i, 2), NULL, 10));
        }
        PQclear(rows);
    }
}

/* Waits one interval unless stopping; true when stopping. */
static bool pause_for_round(gw_refunds *f)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += f->gw->cfg.refund_retry_s;
    pthread_mutex_lock(&f->lock);
    while (!f->stopping && pthread_cond_timedwait(&f->wake, &f->lock, &until) == 0) {
    }
    bool stopping = f->stopping;
    pthread_mutex_unlock(&f->lock);
    return stopping;
}

static void *refunds_thread(void *arg)
{
    gw_refunds *f = arg;
    while (!pause_for_round(f)) {
        round_run(f);
    }
    PQfinish(f->db);
    return NULL;
}

tg_err gw_refunds_open(gw_gateway *gw, gw_refunds **out)
{
    *out = NULL;
    if (gw_provider_of(gw) == NULL) {
        return TG_OK; /* no provider, no refunds */
    }
    gw_refunds *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return TG_ENOMEM;
    }
    f->gw = gw;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->wake, NULL);
    if (pthread_create(&f->thread, NULL, refunds_thread, f) != 0) {
        free(f);
        return TG_ESYSTEM;
    }
    *out = f;
    return TG_OK;
}

void gw_refunds_close(gw_refunds *f)
{
    if (f == NULL) {
        return;
    }
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_signal(&f->wake);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->wake);
    free(f);
}

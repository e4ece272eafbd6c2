/*
 * payments.c — the payment routes: initiatePayment, payment-status, the
 * provider's webhook, the browser's success and fail returns, and the
 * circuit breaker's status (gateway/README.md, "Payments").
 *
 * Who decides what.  The grid owns the booking and its seats: payment_begin
 * turns a created booking pending_payment (seats RESERVED until the payment
 * window's deadline), payment_confirm turns it paid (SOLD) unless the
 * window has passed, payment_fail ends it (seats FREE).  PostgreSQL's
 * payments table owns the money's side: one row per provider payment,
 * written here through the pool.  The provider (provider.h) is reached
 * only through the circuit breaker.
 *
 * initiatePayment: read the booking (the caller's, created, with seats) →
 * create the payment at the provider → record it (pending) → payment_begin.
 * The payment is recorded before the booking turns pending, so that no
 * webhook can ever name a payment this gateway does not know.  If the
 * provider fails, the booking stays created (502; 503 while the breaker is
 * open); if payment_begin is refused, the recorded payment is marked failed
 * and can never pay for the booking (a unit that did not answer may have
 * begun it: that payment stays pending).  Once begun, any other payment
 * still pending for the booking is marked failed: one payment pays for it.
 * The price is read before the provider call and the seats freeze only at
 * payment_begin, so the webhook prices the pending booking again before it
 * confirms: seats added meanwhile are never sold for the smaller amount.
 *
 * The webhook's body must be a JSON object (the core answers 400 before the
 * handler otherwise) and X-Signature the HMAC-SHA256 of its raw bytes under
 * the shared secret (401 otherwise); nothing is read or changed before both
 * hold.  It is idempotent by paymentId: the payments row says
 * what was already done, and each grid operation is itself idempotent
 * (confirming a paid booking, failing a failed one), so a webhook delivered
 * ten times, or redelivered after a crash half-way, sells once.
 *   CONFIRMED for a pending payment → payment_confirm: paid and SOLD.  If
 *     the grid refuses (the window passed, or the booking ended otherwise),
 *     the seats may belong to someone else by now: the payment is recorded
 *     completed with a refund due, audited (payment_late), and refunded
 *     through the provider.  A refund that cannot be made now (provider
 *     down, breaker open) answers 5xx, so that the provider delivers the
 *     webhook again and the refund is tried again; it stays 'due' meanwhile
 *     (refunds.c also asks again by itself).
 *   FAILED for a pending payment → payment_fail: failed, seats FREE.
 *   Anything else (repeats, other statuses) → 200 with nothing changed.
 * A provider may answer before initiatePayment's payment_begin reached the
 * unit (a payment declined at once): a webhook for a pending payment whose
 * booking is still created, recorded less than the grid timeout + 1 s ago,
 * gets 503 payment_not_begun with Retry-After, and the provider delivers it
 * again once the booking is pending.  Older, the begin never came (the unit
 * did not answer it): the webhook is decided as above.
 * While the breaker is open webhooks are still processed: they come from
 * the provider and need nothing from it, except a late payment's refund.
 *
 * Rejected: trusting the browser's return to /api/payments/success — it is
 * an unsigned URL anyone can open; it only shows what the webhook decided.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "provider.h"
#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#define JSON_ID_MAX ((UINT64_C(1) << 53) - 1)
/* A webhook for a payment recorded less than the grid timeout plus this
 * long ago, whose booking is still created, is asked to come again: its
 * payment_begin may still be on its way (hook_checked). */
#define GW_PAYMENT_BEGIN_GRACE_MS 1000

/* ---- SQL through the pool ------------------------------------------------ */

#define SQL_PARAMS_MAX 8
#define SQL_COLUMNS_MAX 8

/* One statement with text parameters; the first row's values come back. */
typedef struct {
    const char *sql;
    int param_count;
    char *params[SQL_PARAMS_MAX]; /* NULL: SQL NULL */
    bool ok;                      /* the statement ran */
    char sqlstate[6];             /* when it did not: PostgreSQL's SQLSTATE, or "" */
    int rows;                     /* returned, or affected */
    char *values[SQL_COLUMNS_MAX];
} sql_job;

static void sql_job_free(void *p)
{
    sql_job *j = p;
    for (int i = 0; i < SQL_PARAMS_MAX; i++) {
        free(j->params[i]);
    }
    for (int i = 0; i < SQL_COLUMNS_MAX; i++) {
        free(j->values[i]);
    }
    free(j);
}

static void sql_run(PGconn *db, void *p)
{
    sql_job *j = p;
    if (db == NULL) {
        return;
    }
    PGresult *res = PQexecParams(db, j->sql, j->param_count, NULL, (const char *const *)j->params,
                                 NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    j->ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    if (!j->ok) {
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        snprintf(j->sqlstate, sizeof(j->sqlstate), "%s", code != NULL ? code : "");
        tg_log(TG_LOG_WARN, "payments: %s", PQerrorMessage(db));
    } else if (st == PGRES_TUPLES_OK) {
        j->rows = PQntuples(res);
        for (int c = 0; j->rows > 0 && c < PQnfields(res) && c < SQL_COLUMNS_MAX; c++) {
            j->values[c] = PQgetisnull(res, 0, c) ? NULL : strdup(PQgetvalue(res, 0, c));
        }
    } else {
        j->rows = atoi(PQcmdTuples(res));
    }
    PQclear(res);
}

/* Runs sql with count text parameters (NULL allowed), then done(r, job). */
static void sql_submit(gw_req *r, gw_db_done done, const char *sql, int count, ...)
{
    TG_ASSERT(count <= SQL_PARAMS_MAX);
    sql_job *j = calloc(1, sizeof(*j));
    bool ok = j != NULL;
    if (ok) {
        j->sql = sql;
        j->param_count = count;
        va_list ap;
        va_start(ap, count);
        for (int i = 0; i < count; i++) {
            const char *v = va_arg(ap, const char *);
            j->params[i] = v != NULL ? strdup(v) : NULL;
            ok &= v == NULL || j->params[i] != NULL;
        }
        va_end(ap);
    }
    if (!ok) {
        if (j != NULL) {
            sql_job_free(j);
        }
        gw_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    if (gw_db_submit(r, sql_run, done, j, sql_job_free) != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "the database queue is full; retry");
    }
}

static bool sql_failed(gw_req *r, const sql_job *j)
{
    if (!j->ok) {
        gw_reply_error_retry(r, 503, "db_unavailable", 2,
                             "PostgreSQL is unreachable; nothing was changed, retry");
        return true;
    }
    return false;
}

static const char *u64_text(char buf[24], uint64_t v)
{
    snprintf(buf, 24, "%llu", (unsigned long long)v);
    return buf;
}

/* ---- Small helpers -------------------------------------------------------- */

static const gw_layout *layout_of_booking(gw_req *r, tg_booking_id id)
{
    return tg_booking_id_valid(id) ? gw_map_layout(r->gw, tg_booking_id_partition(id)) : NULL;
}

static int64_t booking_amount(const gw_layout *l, const tg_wire_booking *b, const char **currency)
{
    int64_t total = 0;
    for (uint32_t i = 0; i < b->seats.count; i++) {
        uint32_t row = gw_layout_row_of(l, b->seats.ids[i]);
        total += row < l->row_count ? l->sections[l->rows[row].section].price_minor : 0;
    }
    *currency = l->section_count > 0 ? l->sections[0].currency : "EUR";
    return total;
}

static void breaker_refused(gw_req *r, const char *what)
{
    gw_breaker_view v = gw_pay_breaker(r->gw);
    uint32_t retry_s = (v.retry_after_ms + 999) / 1000;
    gw_reply_error_retry(r, 503, "circuit_open", retry_s > 0 ? retry_s : 1,
                         "the payment provider is failing; %s (circuit breaker %s)", what,
                         gw_breaker_state_name(v.state));
}

static json_t *payment_detail(const char *payment_id)
{
    return json_pack("{s:s}", "payment_id", payment_id);
}

/* ---- PATCH /api/bookings/initiatePayment ---------------------------------- */

typedef struct {
    const gw_layout *layout;
    tg_booking_id id;
    int64_t amount;
    const char *currency;
    uint32_t seat_nos[TG_BOOKING_SEATS_MAX];
    uint32_t seat_count;
    gw_pay_result created;
    tg_err begin_err;
    int64_t deadline_ms; /* the payment window's end, once begun */
} init_state;

static void init_audit(gw_req *r, const char *outcome, json_t *detail)
{
    init_state *st = r->state;
    gw_audit(r, "payment_begin", st->id, st->layout->event_id, st->seat_nos, st->seat_count,
             outcome, detail);
}

static void init_marked_failed(gw_req *r, void *job)
{
    init_state *st = r->state;
    (void)job; /* a payment left pending here can still only be refunded (webhook) */
    gw_reply_grid_error(r, st->begin_err, NULL, st->layout->partition_id);
}

/* The payment can never pay for the booking: nothing began it. */
static void init_not_begun(gw_req *r, tg_err err)
{
    init_state *st = r->state;
    st->begin_err = err;
    sql_submit(r, init_marked_failed,
               "UPDATE payments SET status = 'failed', updated_at = now()"
               " WHERE id = $1 AND status = 'pending'",
               1, st->created.payment_id);
}

static void init_answer(gw_req *r, void *job)
{
    init_state *st = r->state;
    if (!((sql_job *)job)->ok) {
        tg_log(TG_LOG_WARN, "payments: older pending payments of booking %llu not closed",
               (unsigned long long)st->id);
    }
    gw_reply_json(r, 200,
                  json_pack("{s:I,s:s,s:s,s:s,s:o,s:{s:I,s:s}}", "booking_id", (json_int_t)st->id,
                            "payment_id", st->created.payment_id, "payment_url",
                            st->created.payment_url, "status", "pending_payment", "expires_at",
                            gw_time_json(st->deadline_ms), "amount", "amount",
                            (json_int_t)st->amount, "currency", st->currency));
}

static void init_begun(gw_req *r, tg_err err, const tg_msg *reply)
{
    init_state *st = r->state;
    init_audit(r, err == TG_OK ? "ok" : tg_errname(err), payment_detail(st->created.payment_id));
    if (err != TG_OK && reply == NULL) {
        /* No answer from the unit (timeout, transport, closing): it may
         * have begun the payment, which then stays pending, and
         * payment-status gives the buyer its page if it did. */
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
        return;
    }
    if (err != TG_OK) {
        init_not_begun(r, err); /* the unit refused: nothing began */
        return;
    }
    /* Begun: any other payment still pending for this booking (one whose
     * start was cut short) can no longer pay for it, nor end it. */
    st->deadline_ms = reply->payment_begin_ok.deadline_ms;
    char booking[24];
    sql_submit(r, init_answer,
               "UPDATE payments SET status = 'failed', updated_at = now()"
               " WHERE booking_id = $1 AND id <> $2 AND status = 'pending'",
               2, u64_text(booking, st->id), st->created.payment_id);
}

static void init_recorded(gw_req *r, void *job)
{
    init_state *st = r->state;
    if (sql_failed(r, job)) {
        init_audit(r, "db_unavailable", payment_detail(st->created.payment_id));
        return;
    }
    tg_msg msg = {.type = TG_WIRE_PAYMENT_BEGIN};
    msg.payment_begin.booking_id = st->id;
    msg.payment_begin.user_id = r->who.user_id;
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, init_begun);
    if (err != TG_OK) {
        init_audit(r, tg_errname(err), payment_detail(st->created.payment_id));
        init_not_begun(r, err); /* refused before anything was sent */
    }
}

static void init_created(gw_req *r, const gw_pay_result *res)
{
    init_state *st = r->state;
    if (res->err != TG_OK) {
        init_audit(r, "provider_error", NULL);
        gw_reply_error(r, 502, "provider_error",
                       "the payment provider did not create the payment (%s); the booking "
                       "stays created",
                       res->message);
        return;
    }
    st->created = *res;
    char booking[24], user[24], amount[24];
    sql_submit(r, init_recorded,
               "INSERT INTO payments (id, booking_id, provider, amount_minor, currency, status,"
               " user_id, payment_url) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)",
               7, res->payment_id, u64_text(booking, st->id), gw_provider_of(r->gw)->name,
               u64_text(amount, (uint64_t)st->amount), st->currency, u64_text(user, r->who.user_id),
               res->payment_url);
}

/* The booking must be the caller's, created, with seats. */
static bool init_check(gw_req *r, const tg_wire_booking *b)
{
    if (b->status != TG_BOOKING_CREATED) {
        gw_reply_error(r, 409, "booking_state",
                       "booking %llu is %s: a payment can only start "
                       "for a created booking",
                       (unsigned long long)b->booking_id,
                       tg_booking_status_name((tg_booking_status)b->status));
        return false;
    }
    if (b->seats.count == 0) {
        gw_reply_error(r, 409, "no_seats", "booking %llu holds no seats: select seats first",
                       (unsigned long long)b->booking_id);
        return false;
    }
    if (gw_provider_of(r->gw) == NULL) {
        gw_reply_error_retry(r, 503, "payments_unavailable", 60,
                             "no payment provider is configured on this gateway; the booking "
                             "stays created");
        return false;
    }
    if (!gw_audit_admit(r)) {
        return false;
    }
    return true;
}

static void init_read(gw_req *r, tg_err err, const tg_msg *reply)
{
    init_state *st = r->state;
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    const tg_wire_booking *b = &reply->booking_get_ok;
    if (!init_check(r, b)) {
        return;
    }
    st->amount = booking_amount(st->layout, b, &st->currency);
    st->seat_count = b->seats.count;
    for (uint32_t i = 0; i < b->seats.count; i++) {
        st->seat_nos[i] = st->layout->first_seat + b->seats.ids[i];
    }
    char description[160];
    snprintf(description, sizeof(description), "Booking %llu: %u seat%s",
             (unsigned long long)st->id, b->seats.count, b->seats.count > 1 ? "s" : "");
    gw_pay_order order = {st->id, st->amount, st->currency, description};
    err = gw_pay_create(r, &order, init_created);
    if (err == TG_EUNAVAILABLE) {
        init_audit(r, "circuit_open", NULL);
        breaker_refused(r, "no new payment can start now; the booking stays created");
    } else if (err != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many operations in flight; retry");
    }
}

void gw_on_payment_initiate(gw_req *r)
{
    init_state *st = r->state = gw_alloc(r, sizeof(init_state));
    uint64_t id;
    if (!gw_body_u64(r, "booking_id", 1, JSON_ID_MAX, &id, NULL)) {
        return;
    }
    st->id = id;
    if ((st->layout = layout_of_booking(r, id)) == NULL) {
        gw_reply_error(r, 404, "not_found", "no such booking");
        return;
    }
    tg_msg msg = {.type = TG_WIRE_BOOKING_GET};
    msg.booking_get.booking_id = id;
    msg.booking_get.user_id = r->who.user_id;
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, init_read);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
    }
}

/* ---- POST /api/webhook/payment ----------------------------------------- */

typedef struct {
    char payment_id[GW_PAYMENT_ID_BYTES];
    char status[33]; /* as payments.provider_status keeps it: at most 32 */
    tg_booking_id booking;
    const gw_layout *layout;
    int64_t amount;
    char pay_status[16]; /* the row as this delivery last read or wrote it */
    char refund[16];
    int64_t age_ms;     /* since the payment was recorded */
    bool superseded;    /* a later payment of the booking is pending or completed */
    gw_db_done settled; /* hook_settle's continuation */
    const char *to_status, *to_refund;
} hook_state;

static void hook_answer(gw_req *r, const char *result)
{
    hook_state *st = r->state;
    gw_reply_json(r, 200,
                  json_pack("{s:b,s:s,s:I,s:s}", "success", 1, "payment_id", st->payment_id,
                            "booking_id", (json_int_t)st->booking, "result", result));
}

static void hook_audit(gw_req *r, const char *action, const char *outcome)
{
    hook_state *st = r->state;
    gw_audit(r, action, st->booking, st->layout->event_id, NULL, 0, outcome,
             payment_detail(st->payment_id));
}

/* The update matched nothing: another delivery of this webhook, running at
 * the same time, moved the row first and does (or did) the rest. */
static void hook_settled(gw_req *r, void *job)
{
    hook_state *st = r->state;
    sql_job *j = job;
    if (j->ok && j->rows == 0) {
        hook_answer(r, "duplicate");
        return;
    }
    if (j->ok) {
        snprintf(st->pay_status, sizeof(st->pay_status), "%s", st->to_status);
        snprintf(st->refund, sizeof(st->refund), "%s", st->to_refund);
    }
    st->settled(r, job);
}

/* Moves the payment's row from what this delivery read to status and
 * refund, only if it is still there: two deliveries at once never both
 * audit, count or refund. */
static void hook_settle(gw_req *r, gw_db_done done, const char *status, const char *refund)
{
    hook_state *st = r->state;
    st->settled = done;
    st->to_status = status;
    st->to_refund = refund;
    sql_submit(r, hook_settled,
               "UPDATE payments SET status = $2, refund_status = $3, updated_at = now(),"
               " refunded_at = CASE WHEN $3 = 'refunded' THEN now() ELSE refunded_at END"
               " WHERE id = $1 AND status = $4 AND refund_status = $5",
               5, st->payment_id, status, refund, st->pay_status, st->refund);
}

static void hook_refund_recorded(gw_req *r, void *job)
{
    if (sql_failed(r, job)) {
        return; /* the provider redelivers; the refund is asked for again (idempotent) */
    }
    hook_audit(r, "payment_refund", "ok");
    hook_answer(r, "refunded");
}

static void hook_refunded(gw_req *r, const gw_pay_result *res)
{
    if (res->err != TG_OK) {
        hook_audit(r, "payment_refund", "provider_error");
        gw_reply_error(r, 502, "refund_failed",
                       "the late payment is recorded and owed back, but the provider did not "
                       "refund it (%s); deliver the webhook again to retry",
                       res->message);
        return;
    }
    hook_settle(r, hook_refund_recorded, "completed", "refunded");
}

static void hook_refund(gw_req *r)
{
    hook_state *st = r->state;
    tg_err err = gw_pay_refund(r, st->payment_id, st->amount, hook_refunded);
    if (err == TG_EUNAVAILABLE) {
        breaker_refused(r, "the late payment is recorded and will be refunded when the webhook "
                           "is delivered again");
    } else if (err != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many operations in flight; retry");
    }
}

static void hook_due_recorded(gw_req *r, void *job)
{
    if (sql_failed(r, job)) {
        return;
    }
    hook_audit(r, "payment_late", "refund_due");
    hook_refund(r);
}

static void hook_paid_recorded(gw_req *r, void *job)
{
    if (strcmp(((sql_job *)job)->sqlstate, "23505") == 0) {
        /* payments_one_per_paid_booking: another payment of this booking
         * paid it already (confirming a paid booking is a no-op in the
         * grid).  This money bought nothing: owed back. */
        hook_settle(r, hook_due_recorded, "completed", "due");
        return;
    }
    if (sql_failed(r, job)) {
        return; /* paid in the grid; the redelivery records it */
    }
    hook_audit(r, "payment_confirm", "ok");
    atomic_fetch_add_explicit(&r->worker->metrics.sales, 1, memory_order_relaxed);
    hook_answer(r, "paid");
}

static void hook_confirmed(gw_req *r, tg_err err, const tg_msg *reply)
{
    hook_state *st = r->state;
    if (err == TG_OK) {
        hook_settle(r, hook_paid_recorded, "completed", "none");
    } else if (err == TG_EEXPIRED || err == TG_EBOOKING_STATE || err == TG_ENOT_FOUND) {
        /* Too late: never a sale of seats that may be someone else's now. */
        hook_settle(r, hook_due_recorded, "completed", "due");
    } else {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
    }
}

static void hook_failed_recorded(gw_req *r, void *job)
{
    if (sql_failed(r, job)) {
        return;
    }
    hook_audit(r, "payment_fail", "ok");
    hook_answer(r, "failed");
}

static void hook_superseded_recorded(gw_req *r, void *job)
{
    if (sql_failed(r, job)) {
        return;
    }
    hook_audit(r, "payment_fail", "superseded");
    hook_answer(r, "failed");
}

static void hook_fail_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    hook_state *st = r->state;
    if (err != TG_OK && err != TG_EBOOKING_STATE && err != TG_ENOT_FOUND) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    hook_settle(r, hook_failed_recorded, "failed", "none");
}

static void hook_grid(gw_req *r, tg_wire_type type, gw_grid_done done);

static void hook_mismatch_failed(gw_req *r, tg_err err, const tg_msg *reply)
{
    hook_state *st = r->state;
    if (err != TG_OK && err != TG_EBOOKING_STATE && err != TG_ENOT_FOUND) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    hook_audit(r, "payment_confirm", "amount_mismatch");
    hook_settle(r, hook_due_recorded, "completed", "due");
}

/* Before a webhook changes the booking: a booking still created whose
 * payment was recorded moments ago is being begun (the webhook waits).  A
 * FAILED one then fails the booking.  Before a CONFIRMED one sells
 * anything, the seats of the booking, frozen since it turned
 * pending_payment, must cost what was paid (seats added while the payment
 * was being created are refused here).  A booking no longer pending goes
 * to payment_confirm, which refuses it (late) or finds it paid. */
static void hook_checked(gw_req *r, tg_err err, const tg_msg *reply)
{
    hook_state *st = r->state;
    if (err != TG_OK && err != TG_ENOT_FOUND) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    if (err == TG_OK && reply->booking_get_ok.status == TG_BOOKING_CREATED &&
        st->age_ms < (int64_t)r->gw->cfg.grid_timeout_ms + GW_PAYMENT_BEGIN_GRACE_MS) {
        /* The provider answered before initiatePayment's payment_begin
         * reached the unit: deciding now would fail the booking under the
         * buyer's feet, or refund a payment that is about to be begun. */
        gw_reply_error_retry(r, 503, "payment_not_begun", 1,
                             "payment %s is still being begun; deliver the webhook again",
                             st->payment_id);
        return;
    }
    if (strcmp(st->status, "FAILED") == 0 && st->superseded) {
        /* A later payment of this booking was begun after this one's start
         * was cut short (its cleanup lost): the booking may be pending under
         * that one now, and this failure must not end it. */
        hook_settle(r, hook_superseded_recorded, "failed", "none");
        return;
    }
    if (strcmp(st->status, "FAILED") == 0) {
        hook_grid(r, TG_WIRE_PAYMENT_FAIL, hook_fail_done);
        return;
    }
    if (err == TG_OK && reply->booking_get_ok.status == TG_BOOKING_PENDING_PAYMENT) {
        const char *currency;
        if (booking_amount(st->layout, &reply->booking_get_ok, &currency) != st->amount) {
            hook_grid(r, TG_WIRE_PAYMENT_FAIL, hook_mismatch_failed);
            return;
        }
    }
    hook_grid(r, TG_WIRE_PAYMENT_CONFIRM, hook_confirmed);
}

static void hook_check(gw_req *r)
{
    hook_state *st = r->state;
    tg_msg msg = {.type = TG_WIRE_BOOKING_GET};
    msg.booking_get.booking_id = st->booking;
    msg.booking_get.user_id = 0; /* the system: the provider speaks for no user */
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, hook_checked);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
    }
}

static void hook_grid(gw_req *r, tg_wire_type type, gw_grid_done done)
{
    hook_state *st = r->state;
    tg_msg msg = {.type = type};
    if (type == TG_WIRE_PAYMENT_CONFIRM) {
        msg.payment_confirm.booking_id = st->booking;
    } else {
        msg.payment_fail.booking_id = st->booking;
    }
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
    }
}

/* What the payment's row says decides what the webhook still has to do. */
static void hook_decide(gw_req *r)
{
    hook_state *st = r->state;
    bool pending = strcmp(st->pay_status, "pending") == 0;
    if (strcmp(st->status, "CONFIRMED") == 0) {
        if (pending) {
            hook_check(r);
        } else if (strcmp(st->pay_status, "failed") == 0) {
            hook_confirmed(r, TG_EBOOKING_STATE, NULL); /* money for a payment that ended */
        } else if (strcmp(st->refund, "due") == 0) {
            hook_refund(r);
        } else {
            hook_answer(r, "duplicate");
        }
    } else if (strcmp(st->status, "FAILED") == 0 && pending) {
        hook_check(r);
    } else {
        hook_answer(r, strcmp(st->status, "FAILED") == 0 ? "duplicate" : "ignored");
    }
}

static void hook_loaded(gw_req *r, void *job)
{
    hook_state *st = r->state;
    sql_job *j = job;
    if (sql_failed(r, j)) {
        return;
    }
    if (j->rows == 0 || j->values[0] == NULL || j->values[3] == NULL || j->values[4] == NULL) {
        gw_reply_error(r, 404, "not_found", "no payment %s is known here", st->payment_id);
        return;
    }
    st->booking = strtoull(j->values[0], NULL, 10);
    st->amount = strtoll(j->values[1], NULL, 10);
    snprintf(st->pay_status, sizeof(st->pay_status), "%s", j->values[3]);
    snprintf(st->refund, sizeof(st->refund), "%s", j->values[4]);
    st->age_ms = j->values[5] != NULL ? strtoll(j->values[5], NULL, 10) : INT64_MAX;
    st->superseded = j->values[6] != NULL && strcmp(j->values[6], "t") == 0;
    if ((st->layout = layout_of_booking(r, st->booking)) == NULL) {
        gw_reply_error_retry(r, 503, "partition_unavailable", 1,
                             "the booking's partition is not known to this gateway yet; retry");
        return;
    }
    hook_decide(r);
}

/* The body's fields (a JSON object, parsed by the core); false when one
 * replied 400. */
static bool hook_fields(gw_req *r, hook_state *st)
{
    const char *id, *status;
    if (!gw_body_string(r, "paymentId", GW_PAYMENT_ID_BYTES - 1, &id, NULL) ||
        !gw_body_string(r, "status", sizeof(st->status) - 1, &status, NULL)) {
        return false;
    }
    if (!gw_payment_id_valid(id)) {
        gw_reply_error(r, 400, "invalid_field", "paymentId: 1..128 of A-Z a-z 0-9 _ -");
        return false;
    }
    snprintf(st->payment_id, sizeof(st->payment_id), "%s", id);
    snprintf(st->status, sizeof(st->status), "%s", status);
    return true;
}

void gw_on_payment_webhook(gw_req *r)
{
    hook_state *st = r->state = gw_alloc(r, sizeof(hook_state));
    const gw_config *cfg = &r->gw->cfg;
    if (gw_provider_of(r->gw) == NULL) {
        gw_reply_error(r, 404, "not_found", "no payment provider is configured on this gateway");
        return;
    }
    size_t sig_len;
    const char *sig = gw_header(r, "x-signature", &sig_len);
    const h2o_req_t *h2o = r->h2o;
    if (sig == NULL) {
        gw_reply_error(r, 401, "missing_signature",
                       "X-Signature is required: the hex "
                       "HMAC-SHA256 of the body under the provider's secret");
        return;
    }
    if (!gw_webhook_signed(cfg->payment_webhook_secret, h2o->entity.base, h2o->entity.len, sig,
                           sig_len)) {
        gw_reply_error(r, 401, "invalid_signature", "X-Signature does not match the body");
        return;
    }
    if (!hook_fields(r, st)) {
        return;
    }
    /* What a delivery decides is audited; the provider delivers it again. */
    if (!gw_audit_admit(r)) {
        return;
    }
    sql_submit(
        r, hook_loaded,
        "UPDATE payments SET webhooks = webhooks + 1, provider_status = $2,"
        " updated_at = now() WHERE id = $1"
        " RETURNING booking_id, amount_minor, currency, status, refund_status,"
        " (extract(epoch FROM now() - created_at) * 1000)::bigint,"
        " EXISTS (SELECT 1 FROM payments n WHERE n.booking_id = payments.booking_id"
        "   AND n.created_at > payments.created_at AND n.status IN ('pending', 'completed'))",
        2, st->payment_id, st->status);
}

/* ---- GET /api/bookings/{id}/payment-status --------------------------------- */

typedef struct {
    const gw_layout *layout;
    tg_booking_id id;
    uint32_t booking_status;
    char payment_id[GW_PAYMENT_ID_BYTES];
    char pay_status[16];
    char refund[16];
    char payment_url[GW_URL_BYTES];
} status_state;

/* pending, completed, failed or expired: the booking's status says where
 * the payment stands (the grid is the truth); a payment that never began
 * (created booking) by its own row. */
static const char *status_word(const status_state *st)
{
    switch ((tg_booking_status)st->booking_status) {
    case TG_BOOKING_PENDING_PAYMENT:
        return "pending";
    case TG_BOOKING_PAID:
        return "completed";
    case TG_BOOKING_EXPIRED:
        return "expired";
    case TG_BOOKING_CREATED:
        return strcmp(st->pay_status, "pending") == 0 ? "pending" : "failed";
    default:
        return "failed";
    }
}

static void status_answer(gw_req *r, const char *provider_status)
{
    status_state *st = r->state;
    json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:s}", "booking_id", (json_int_t)st->id, "payment_id",
                          st->payment_id, "status", status_word(st), "booking_status",
                          tg_booking_status_name((tg_booking_status)st->booking_status), "refund",
                          st->refund);
    if (provider_status != NULL) {
        json_object_set_new(j, "provider_status", json_string(provider_status));
    }
    if (st->booking_status == TG_BOOKING_PENDING_PAYMENT && st->payment_url[0] != '\0' &&
        strcmp(st->pay_status, "pending") == 0) {
        json_object_set_new(j, "payment_url", json_string(st->payment_url));
    }
    gw_reply_json(r, 200, j);
}

static void status_provider(gw_req *r, const gw_pay_result *res)
{
    status_answer(r, res->err == TG_OK ? res->status : NULL);
}

static void status_loaded(gw_req *r, void *job)
{
    status_state *st = r->state;
    sql_job *j = job;
    if (sql_failed(r, j)) {
        return;
    }
    if (j->rows == 0 || j->values[0] == NULL) {
        gw_reply_error(r, 404, "no_payment", "no payment was started for booking %llu",
                       (unsigned long long)st->id);
        return;
    }
    snprintf(st->payment_id, sizeof(st->payment_id), "%s", j->values[0]);
    snprintf(st->pay_status, sizeof(st->pay_status), "%s", j->values[1]);
    snprintf(st->refund, sizeof(st->refund), "%s", j->values[2]);
    snprintf(st->payment_url, sizeof(st->payment_url), "%s",
             j->values[3] != NULL ? j->values[3] : "");
    /* While it is pending, what the provider says now helps a buyer who
     * paid but whose webhook is late; it changes nothing here. */
    if (st->booking_status != TG_BOOKING_PENDING_PAYMENT ||
        gw_pay_status(r, st->payment_id, status_provider) != TG_OK) {
        status_answer(r, NULL);
    }
}

static void status_read(gw_req *r, tg_err err, const tg_msg *reply)
{
    status_state *st = r->state;
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    st->booking_status = reply->booking_get_ok.status;
    char booking[24];
    sql_submit(r, status_loaded,
               "SELECT id, status, refund_status, payment_url FROM payments WHERE booking_id = $1"
               " ORDER BY (status = 'pending') DESC, created_at DESC, id LIMIT 1",
               1, u64_text(booking, st->id));
}

void gw_on_payment_status(gw_req *r)
{
    status_state *st = r->state = gw_alloc(r, sizeof(status_state));
    st->id = r->params[0];
    if ((st->layout = layout_of_booking(r, st->id)) == NULL) {
        gw_reply_error(r, 404, "not_found", "no such booking");
        return;
    }
    tg_msg msg = {.type = TG_WIRE_BOOKING_GET};
    msg.booking_get.booking_id = st->id;
    msg.booking_get.user_id = r->who.user_id;
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, status_read);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
    }
}

/* ---- GET /api/payments/success, /api/payments/fail ---------------------- */

/* The browser comes back from the provider's page.  Unsigned, so it only
 * shows what the webhook recorded (pending until it arrived). */
static void return_loaded(gw_req *r, void *job)
{
    sql_job *j = job;
    const char *id = r->state;
    if (sql_failed(r, j)) {
        return;
    }
    if (j->rows == 0 || j->values[0] == NULL || j->values[1] == NULL || j->values[2] == NULL) {
        gw_reply_error(r, 404, "not_found", "no payment %s is known here", id);
        return;
    }
    const char *status = j->values[1];
    const char *word = strcmp(j->values[2], "none") != 0  ? "refunded"
                       : strcmp(status, "completed") == 0 ? "completed"
                                                          : status;
    bool success = strcmp(r->route->name, "payment_success") == 0;
    json_t *body =
        json_pack("{s:s,s:s,s:I,s:s}", "returned", success ? "success" : "fail", "payment_id", id,
                  "booking_id", (json_int_t)strtoll(j->values[0], NULL, 10), "status", word);
    gw_reply_json(r, 200, body);
}

/* A browser coming back from the provider's page (it asks for HTML) lands
 * on the shopper page when the gateway serves it, which then reads this
 * route as JSON; programs (curl, fetch: any media type) get the JSON. */
static bool wants_page(gw_req *r)
{
    size_t len;
    const char *accept = gw_header(r, "accept", &len);
    return gw_config_of(r->gw)->static_dir[0] != '\0' && accept != NULL &&
           memmem(accept, len, "text/html", 9) != NULL;
}

void gw_on_payment_return(gw_req *r)
{
    const char *id = gw_query(r, "paymentId");
    if (id == NULL) {
        gw_reply_error(r, 400, "missing_parameter", "paymentId is required");
        return;
    }
    if (!gw_payment_id_valid(id)) {
        gw_reply_error(r, 400, "invalid_parameter", "paymentId: 1..128 of A-Z a-z 0-9 _ -");
        return;
    }
    if (wants_page(r)) {
        /* The id is A-Z a-z 0-9 _ - only: safe in a URL as it is. */
        bool success = strcmp(r->route->name, "payment_success") == 0;
        char location[192];
        snprintf(location, sizeof(location), "/#/payment/%s/%s", id, success ? "success" : "fail");
        gw_reply_redirect(r, 303, location);
        return;
    }
    char *copy = gw_alloc(r, strlen(id) + 1);
    memcpy(copy, id, strlen(id) + 1);
    r->state = copy;
    sql_submit(r, return_loaded,
               "SELECT booking_id, status, refund_status FROM payments WHERE id = $1", 1, id);
}

/* ---- GET /api/payments/circuit-breaker-status ------------------------------ */

void gw_on_breaker_status(gw_req *r)
{
    gw_breaker_view v = gw_pay_breaker(r->gw);
    gw_reply_json(r, 200,
                  json_pack("{s:b,s:{s:s,s:I,s:I,s:I}}", "success", 1, "circuit_breaker", "state",
                            gw_breaker_state_name(v.state), "failure_count", (json_int_t)v.failures,
                            "threshold", (json_int_t)v.threshold, "timeout_seconds",
                            (json_int_t)(v.timeout_ms / 1000)));
}

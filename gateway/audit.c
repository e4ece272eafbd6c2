/*
 * audit.c — every purchase operation into audit_log, written behind.
 *
 * Only the gateway knows who asked (user) and from where (client IP), so it
 * records each purchase operation — booking created, seats held or
 * released, booking cancelled, payment begun — with its outcome.  Loop
 * threads append to a bounded in-memory queue (cfg.audit_queue_max records,
 * allocated at start); one writer thread drains it with COPY, many records
 * per transaction, every GW_AUDIT_FLUSH_MS or sooner when
 * GW_AUDIT_BATCH_MAX records wait.  PostgreSQL is never on the request's
 * path.
 *
 * Never losing a record: when the queue passes its high-water mark (7/8 —
 * PostgreSQL down for a while), purchase routes and the payment webhook
 * answer 503 before they change anything (gw_audit_admit); the last eighth holds the
 * records of operations already in flight (far more than the requests a
 * gateway may have in service).  Records are written at least once: a batch
 * whose COMMIT outcome is unknown (the connection broke during it) is
 * written again, so a record may appear twice after such a fault, never
 * zero times while the gateway lives.  A gateway killed outright loses what
 * was queued — the sale itself is in the grid and the write-behind log; the
 * audit trail of the last moments is what such a crash costs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#define GW_AUDIT_FLUSH_MS 50
#define GW_AUDIT_BATCH_MAX 2048u
#define GW_AUDIT_RETRY_MS 1000
#define GW_AUDIT_NAME_BYTES 40u /* action and outcome: ^[a-z][a-z0-9_]{0,39}$ */
#define GW_AUDIT_LINE_BYTES 4096u

typedef struct {
    int64_t logged_ms;
    char client_ip[48];
    uint64_t user_id;
    tg_booking_id booking_id; /* 0: none */
    uint64_t event_id;        /* 0: none */
    char action[GW_AUDIT_NAME_BYTES + 1];
    char outcome[GW_AUDIT_NAME_BYTES + 1];
    uint32_t seat_count;
    uint32_t seats[TG_BOOKING_SEATS_MAX];
    char *detail; /* JSON object text, or NULL */
} audit_record;

struct gw_audit_log {
    gw_gateway *gw;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    audit_record *ring;
    uint32_t head, count, capacity;
    _Atomic uint32_t backlog; /* count, readable without the lock */
    bool stopping;
    uint64_t dropped; /* only when the queue was full: never expected */
    PGconn *db;       /* writer thread only */
};

bool gw_audit_admit(gw_req *r)
{
    gw_audit_log *a = r->gw->audit;
    if (atomic_load_explicit(&a->backlog, memory_order_relaxed) < a->capacity / 8 * 7) {
        return true;
    }
    gw_reply_error_retry(r, 503, "audit_backlog", 5, "the audit log is behind; retry");
    return false;
}

uint64_t gw_audit_backlog(gw_gateway *gw)
{
    return atomic_load_explicit(&gw->audit->backlog, memory_order_relaxed);
}

static void name_copy(char *dst, const char *src)
{
    snprintf(dst, GW_AUDIT_NAME_BYTES + 1, "%s", src);
}

/* Queues one record; client_ip "" and user 0 for the system. */
static void audit_push(gw_audit_log *a, const char *client_ip, uint64_t user_id,
                       const char *action, tg_booking_id booking, uint64_t event_id,
                       const uint32_t *seat_nos, uint32_t seat_count, const char *outcome,
                       json_t *detail)
{
    char *detail_text = detail != NULL ? json_dumps(detail, JSON_COMPACT) : NULL;
    json_decref(detail);
    pthread_mutex_lock(&a->lock);
    if (a->count == a->capacity) {
        a->dropped++;
        pthread_mutex_unlock(&a->lock);
        free(detail_text);
        tg_log(TG_LOG_ERROR, "audit queue full: record %s of user %llu dropped", action,
               (unsigned long long)user_id);
        return;
    }
    audit_record *rec = &a->ring[(a->head + a->count) % a->capacity];
    rec->logged_ms = tg_now_ms();
    snprintf(rec->client_ip, sizeof(rec->client_ip), "%s", client_ip);
    rec->user_id = user_id;
    rec->booking_id = booking;
    rec->event_id = event_id;
    name_copy(rec->action, action);
    name_copy(rec->outcome, outcome);
    rec->seat_count = seat_count < TG_BOOKING_SEATS_MAX ? seat_count : TG_BOOKING_SEATS_MAX;
    if (rec->seat_count > 0) {
        memcpy(rec->seats, seat_nos, rec->seat_count * sizeof(uint32_t));
    }
    rec->detail = detail_text;
    a->count++;
    atomic_store_explicit(&a->backlog, a->count, memory_order_relaxed);
    if (a->count >= GW_AUDIT_BATCH_MAX) {
        pthread_cond_signal(&a->wake);
    }
    pthread_mutex_unlock(&a->lock);
}

void gw_audit(gw_req *r, const char *action, tg_booking_id booking, uint64_t event_id,
              const uint32_t *seat_nos, uint32_t seat_count, const char *outcome, json_t *detail)
{
    audit_push(r->gw->audit, r->client_ip, r->who.user_id, action, booking, event_id, seat_nos,
               seat_count, outcome, detail);
}

void gw_audit_system(gw_gateway *gw, const char *action, tg_booking_id booking,
                     uint64_t event_id, const char *outcome, json_t *detail)
{
    audit_push(gw->audit, "", 0, action, booking, event_id, NULL, 0, outcome, detail);
}

/* ---- The writer ---------------------------------------------------------- */

/* COPY text format: backslash, tab, newline and carriage return escaped. */
static size_t copy_escape(char *out, size_t size, const char *s)
{
    size_t n = 0;
    for (; *s != '\0' && n + 2 < size; s++) {
        char c = *s;
        const char *esc = c == '\\' ? "\\\\" : c == '\t' ? "\\t" : c == '\n' ? "\\n"
                                                             : c == '\r' ? "\\r" : NULL;
        if (esc != NULL) {
            out[n++] = esc[0];
            out[n++] = esc[1];
        } else {
            out[n++] = c;
        }
    }
    out[n] = '\0';
    return n;
}

static size_t record_line(const audit_record *rec, char *line, size_t size)
{
    char when[40], seats[TG_BOOKING_SEATS_MAX * 11 + 3], booking[24], event[24];
    time_t secs = (time_t)(rec->logged_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t w = strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(when + w, sizeof(when) - w, ".%03d+00", (int)(rec->logged_ms % 1000));
    size_t s = (size_t)snprintf(seats, sizeof(seats), "{");
    for (uint32_t i = 0; i < rec->seat_count; i++) {
        s += (size_t)snprintf(seats + s, sizeof(seats) - s, "%s%u", i > 0 ? "," : "",
                              rec->seats[i]);
    }
    snprintf(seats + s, sizeof(seats) - s, "}");
    snprintf(booking, sizeof(booking), "%llu", (unsigned long long)rec->booking_id);
    snprintf(event, sizeof(event), "%llu", (unsigned long long)rec->event_id);
    char detail[GW_AUDIT_LINE_BYTES / 2];
    if (rec->detail != NULL) {
        copy_escape(detail, sizeof(detail), rec->detail);
    }
    int n = snprintf(line, size, "%s\t%s\t%llu\t%s\t%s\t%s\t%s\t%s\t%s\n", when,
                     rec->client_ip[0] != '\0' ? rec->client_ip : "\\N",
                     (unsigned long long)rec->user_id, rec->booking_id != 0 ? booking : "\\N",
                     rec->event_id != 0 ? event : "\\N", rec->action, seats, rec->outcome,
                     rec->detail != NULL ? detail : "\\N");
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static bool batch_copy(gw_audit_log *a, uint32_t n)
{
    PGresult *res = PQexec(a->db, "COPY audit_log (logged_at, client_ip, user_id, booking_id, "
                                  "event_id, action, seats, outcome, detail) FROM STDIN");
    bool ok = PQresultStatus(res) == PGRES_COPY_IN;
    PQclear(res);
    char line[GW_AUDIT_LINE_BYTES];
    for (uint32_t i = 0; ok && i < n; i++) {
        pthread_mutex_lock(&a->lock); /* the slot is stable: only this thread pops */
        const audit_record *rec = &a->ring[(a->head + i) % a->capacity];
        size_t len = record_line(rec, line, sizeof(line));
        pthread_mutex_unlock(&a->lock);
        ok = len > 0 && PQputCopyData(a->db, line, (int)len) == 1;
    }
    ok = PQputCopyEnd(a->db, ok ? NULL : "audit batch aborted") == 1 && ok;
    while ((res = PQgetResult(a->db)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            tg_log(TG_LOG_WARN, "audit batch not written: %s", PQresultErrorMessage(res));
            ok = false;
        }
        PQclear(res);
    }
    return ok;
}

static void batch_pop(gw_audit_log *a, uint32_t n)
{
    pthread_mutex_lock(&a->lock);
    for (uint32_t i = 0; i < n; i++) {
        audit_record *rec = &a->ring[a->head];
        free(rec->detail);
        rec->detail = NULL;
        a->head = (a->head + 1) % a->capacity;
    }
    a->count -= n;
    atomic_store_explicit(&a->backlog, a->count, memory_order_relaxed);
    pthread_mutex_unlock(&a->lock);
}

/* Writes one batch; false when PostgreSQL is not there (retry later). */
static bool audit_flush(gw_audit_log *a)
{
    pthread_mutex_lock(&a->lock);
    uint32_t n = a->count < GW_AUDIT_BATCH_MAX ? a->count : GW_AUDIT_BATCH_MAX;
    pthread_mutex_unlock(&a->lock);
    if (n == 0) {
        return true;
    }
    if (a->db == NULL || PQstatus(a->db) != CONNECTION_OK) {
        PQfinish(a->db);
        if ((a->db = gw_db_connect(&a->gw->cfg, "the audit log")) == NULL) {
            return false;
        }
    }
    if (!batch_copy(a, n)) {
        return false;
    }
    batch_pop(a, n);
    return true;
}

static void wait_ms(gw_audit_log *a, uint32_t ms)
{
    struct timespec until = tg_realtime_after_ms(ms);
    pthread_mutex_lock(&a->lock);
    if (!a->stopping && a->count < GW_AUDIT_BATCH_MAX) {
        pthread_cond_timedwait(&a->wake, &a->lock, &until);
    }
    pthread_mutex_unlock(&a->lock);
}

static void *audit_thread(void *arg)
{
    gw_audit_log *a = arg;
    for (;;) {
        bool written = audit_flush(a);
        pthread_mutex_lock(&a->lock);
        bool done = a->stopping && (a->count == 0 || !written);
        pthread_mutex_unlock(&a->lock);
        if (done) {
            break;
        }
        wait_ms(a, written ? GW_AUDIT_FLUSH_MS : GW_AUDIT_RETRY_MS);
    }
    PQfinish(a->db);
    return NULL;
}

tg_err gw_audit_open(gw_gateway *gw, gw_audit_log **out)
{
    gw_audit_log *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->ring = calloc(gw->cfg.audit_queue_max, sizeof(*a->ring))) == NULL) {
        free(a);
        return TG_ENOMEM;
    }
    a->gw = gw;
    a->capacity = gw->cfg.audit_queue_max;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, NULL);
    if (pthread_create(&a->thread, NULL, audit_thread, a) != 0) {
        free(a->ring);
        free(a);
        return TG_ESYSTEM;
    }
    gw->audit = a;
    *out = a;
    return TG_OK;
}

/* After the loops stopped: writes what is queued (one try if PostgreSQL is
 * down: then the records are lost and the loss is logged). */
void gw_audit_close(gw_audit_log *a)
{
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    if (a->count > 0) {
        tg_log(TG_LOG_ERROR, "%u audit records not written: PostgreSQL unreachable at shutdown",
               a->count);
    }
    batch_pop(a, a->count);
    free(a->ring);
    free(a);
}

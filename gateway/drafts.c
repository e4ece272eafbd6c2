/*
 * drafts.c — POST /api/admin/events, PATCH and DELETE
 * /api/admin/events/{id}, POST /api/admin/events/{id}/cancel (org.c says
 * what each does to an event; this file checks the fields and runs the
 * statements, on the pool).
 *
 * The body is checked whole before anything is written: an unknown field,
 * a field of the wrong type or length, a time that is not RFC 3339, or a
 * layout the plan checker refuses is a 400 naming the field, and nothing
 * changes.  PostgreSQL's own constraints (a sale window that ends before
 * it starts, an unknown artist_id) are the last line and answer 400 with
 * the constraint's name.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "org.h"
#include "plan.h"

#define DRAFT_TEXT_BYTES_MAX 200u
#define DRAFT_TIME_BYTES_MAX 40u
/* Live bookings one cancellation ends in the grid; more are left to expire. */
#define ORG_CANCEL_BOOKINGS_MAX_TEXT "10000"

/* The metadata fields an organizer may set, in a fixed order: the update's
 * SET list is built from this table, never from the body's keys. */
typedef enum {
    FIELD_TEXT,
    FIELD_TYPE,
    FIELD_TIME,
    FIELD_TIME_OR_NULL,
    FIELD_ID_OR_NULL
} field_kind;

typedef struct {
    const char *name;
    field_kind kind;
    const char *cast; /* appended to the parameter in SQL */
} draft_field;

static const draft_field fields[] = {
    {"title", FIELD_TEXT, ""},
    {"artist", FIELD_TEXT, ""},
    {"venue", FIELD_TEXT, ""},
    {"type", FIELD_TYPE, ""},
    {"starts_at", FIELD_TIME, "::timestamptz"},
    {"sale_starts_at", FIELD_TIME_OR_NULL, "::timestamptz"},
    {"sale_ends_at", FIELD_TIME_OR_NULL, "::timestamptz"},
    {"artist_id", FIELD_ID_OR_NULL, "::bigint"},
};
#define FIELDS_COUNT                (sizeof(fields) / sizeof(fields[0]))
#define FIELD_REQUIRED_ON_CREATE(i) ((i) == 0 || (i) == 1 || (i) == 2 || (i) == 4)

/* "2027-03-01T19:30:00Z", with optional fractions and a ±hh:mm offset;
 * PostgreSQL then checks the calendar (a 31st of April is 400 too). */
static bool rfc3339_shape(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t n = strlen(s);
    if (n < sizeof(shape) || n > DRAFT_TIME_BYTES_MAX) {
        return false;
    }
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i]) {
            return false;
        }
    }
    const char *p = s + sizeof(shape) - 1;
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++) {
        }
    }
    return strcmp(p, "Z") == 0 ||
           ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 && isdigit((unsigned char)p[1]) &&
            isdigit((unsigned char)p[2]) && p[3] == ':' && isdigit((unsigned char)p[4]) &&
            isdigit((unsigned char)p[5]));
}

static bool type_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32 || !islower((unsigned char)s[0])) {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_' &&
            s[i] != '-') {
            return false;
        }
    }
    return true;
}

/* One field's value as an SQL parameter (NULL for null), or false with the
 * 400 recorded. */
static bool field_value(gw_org_job *job, const draft_field *f, json_t *v, char *buf, size_t size,
                        const char **out)
{
    *out = NULL;
    if (json_is_null(v) && (f->kind == FIELD_TIME_OR_NULL || f->kind == FIELD_ID_OR_NULL)) {
        return true;
    }
    if (f->kind == FIELD_ID_OR_NULL) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {
            gw_org_fail(job, 400, "invalid_field", "%s: expected an artist id or null", f->name);
            return false;
        }
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        *out = buf;
        return true;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    size_t len = s != NULL ? json_string_length(v) : 0;
    bool ok = s != NULL && len > 0 && len <= DRAFT_TEXT_BYTES_MAX && strlen(s) == len &&
              (f->kind != FIELD_TYPE || type_valid(s)) &&
              (f->kind == FIELD_TEXT || f->kind == FIELD_TYPE || rfc3339_shape(s));
    if (!ok) {
        gw_org_fail(job, 400, "invalid_field", "%s: expected %s", f->name,
                    f->kind == FIELD_TEXT ? "a string of 1..200 bytes"
                    : f->kind == FIELD_TYPE
                        ? "a lowercase word of 1..32 characters ([a-z][a-z0-9_-]*)"
                        : "an RFC 3339 time such as 2027-03-01T19:30:00Z");
        return false;
    }
    *out = s;
    return true;
}

/* Checks the body: every key known, every value good.  values[i] are the
 * metadata fields' parameters (present[i] says which were given); *plan is
 * filled when a layout is given (*has_layout). */
static bool body_check(gw_org_job *job, bool create, char bufs[FIELDS_COUNT][24],
                       const char *values[FIELDS_COUNT], bool present[FIELDS_COUNT],
                       bool *has_layout)
{
    const char *key;
    json_t *v;
    json_object_foreach(job->body, key, v)
    {
        bool known = strcmp(key, "layout") == 0;
        for (size_t i = 0; i < FIELDS_COUNT && !known; i++) {
            known = strcmp(key, fields[i].name) == 0;
        }
        if (!known) {
            gw_org_fail(job, 400, "unknown_field", "%s: not a field of an event", key);
            return false;
        }
    }
    for (size_t i = 0; i < FIELDS_COUNT; i++) {
        v = json_object_get(job->body, fields[i].name);
        present[i] = v != NULL;
        values[i] = NULL;
        if (!present[i] && create && FIELD_REQUIRED_ON_CREATE(i)) {
            gw_org_fail(job, 400, "missing_field", "%s is required", fields[i].name);
            return false;
        }
        if (present[i] && !field_value(job, &fields[i], v, bufs[i], sizeof(bufs[i]), &values[i])) {
            return false;
        }
    }
    json_t *layout = json_object_get(job->body, "layout");
    *has_layout = layout != NULL;
    if (layout == NULL && create) {
        gw_org_fail(job, 400, "missing_field", "layout is required");
        return false;
    }
    if (json_object_size(job->body) == 0) {
        gw_org_fail(job, 400, "missing_field", "nothing to change: give at least one field");
        return false;
    }
    return true;
}

/* The layout's plan, checked, and the partitions it would make. */
static bool layout_check(gw_org_job *job, gw_plan *plan)
{
    gw_plan_error e;
    tg_err err =
        gw_plan_parse(json_object_get(job->body, "layout"), job->cfg->event_seats_max, plan, &e);
    if (err == TG_ENOMEM) {
        gw_org_fail(job, 500, "internal", "out of memory");
        return false;
    }
    if (err != TG_OK) {
        gw_org_fail(job, 400, "invalid_layout", "%s: %s", e.field, e.message);
        return false;
    }
    uint32_t parts = gw_plan_split(plan, job->cfg->partition_seats, NULL, 0);
    if (parts > GW_EVENT_PARTITIONS_MAX) {
        gw_org_fail(job, 400, "invalid_layout",
                    "layout: %u seats in %u rows make %u partitions; an event has at most %u",
                    plan->seat_count, plan->row_count, parts, GW_EVENT_PARTITIONS_MAX);
        gw_plan_free(plan);
        return false;
    }
    return true;
}

static char *layout_text(gw_org_job *job)
{
    return json_dumps(json_object_get(job->body, "layout"), JSON_COMPACT);
}

/* ---- Create -------------------------------------------------------------- */

static void create_run(PGconn *db, gw_org_job *job)
{
    char bufs[FIELDS_COUNT][24];
    const char *values[FIELDS_COUNT];
    bool present[FIELDS_COUNT], has_layout;
    gw_plan plan;
    if (!body_check(job, true, bufs, values, present, &has_layout) || !layout_check(job, &plan)) {
        return;
    }
    char *layout = layout_text(job);
    char organizer[24];
    snprintf(organizer, sizeof(organizer), "%llu", (unsigned long long)job->user_id);
    const char *const params[] = {
        values[0], values[1], values[2], present[3] ? values[3] : "concert", values[4], values[5],
        values[6], values[7], layout,    plan.sections[0].currency,          organizer};
    gw_plan_free(&plan);
    PGresult *res = gw_org_query(
        db, job, "create the event",
        "INSERT INTO events (title, artist, venue, type, starts_at, sale_starts_at, sale_ends_at,"
        " artist_id, layout, currency, organizer_id) VALUES ($1, $2, $3, $4, $5::timestamptz,"
        " $6::timestamptz, $7::timestamptz, $8::bigint, $9::jsonb, $10, $11) RETURNING id",
        11, params);
    free(layout);
    if (res == NULL) {
        return;
    }
    job->event_id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    job->reply = gw_org_event_json(db, job, job->event_id);
    job->status = job->reply != NULL ? 201 : job->status;
}

void gw_on_org_event_create(gw_req *r)
{
    gw_org_submit(r, "event_create", create_run, NULL);
}

/* ---- Update -------------------------------------------------------------- */

/* "UPDATE events SET title = $2, ... WHERE id = $1" from the fields given;
 * a new layout brings its currency (the first section's). */
static void update_sql(char *sql, size_t size, const bool present[FIELDS_COUNT],
                       const char *values[FIELDS_COUNT], const char *layout, const char *currency,
                       const char *params[FIELDS_COUNT + 3], int *n)
{
    size_t at = (size_t)snprintf(sql, size, "UPDATE events SET updated_at = now()");
    for (size_t i = 0; i < FIELDS_COUNT; i++) {
        if (present[i]) {
            params[(*n)++] = values[i];
            at += (size_t)snprintf(sql + at, size - at, ", %s = $%d%s", fields[i].name, *n,
                                   fields[i].cast);
        }
    }
    if (layout != NULL) {
        params[(*n)++] = layout;
        params[(*n)++] = currency;
        at += (size_t)snprintf(sql + at, size - at, ", layout = $%d::jsonb, currency = $%d", *n - 1,
                               *n);
    }
    snprintf(sql + at, size - at, " WHERE id = $1");
}

static bool update_apply(PGconn *db, gw_org_job *job, const bool present[FIELDS_COUNT],
                         const char *values[FIELDS_COUNT], gw_plan *plan, bool has_layout)
{
    char id[24], sql[1024];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)job->id);
    const char *params[FIELDS_COUNT + 3] = {id};
    int n = 1;
    char *layout = has_layout ? layout_text(job) : NULL;
    update_sql(sql, sizeof(sql), present, values, layout, plan->sections[0].currency, params, &n);
    PGresult *res = gw_org_query(db, job, "update the event", sql, n, params);
    free(layout);
    PQclear(res);
    return res != NULL;
}

static void update_run(PGconn *db, gw_org_job *job)
{
    char bufs[FIELDS_COUNT][24], status[16];
    const char *values[FIELDS_COUNT] = {0};
    bool present[FIELDS_COUNT], has_layout;
    gw_plan plan = {0};
    if (!body_check(job, false, bufs, values, present, &has_layout) ||
        (has_layout && !layout_check(job, &plan)) || !gw_org_begin(db, job) ||
        !gw_org_event_find(db, job, true, status, sizeof(status))) {
        gw_plan_free(&plan);
        return;
    }
    if (has_layout && strcmp(status, "draft") != 0) {
        gw_org_fail(job, 409, "layout_frozen",
                    "event %llu is %s: the layout of a published event cannot change; its other "
                    "fields can",
                    (unsigned long long)job->id, status);
    } else if (update_apply(db, job, present, values, &plan, has_layout)) {
        if (gw_org_commit(db, job)) {
            job->reply = gw_org_event_json(db, job, job->id);
            gw_events_cache_clear();
            if (strcmp(status, "draft") != 0) {
                gw_org_map_follow(job); /* a new sale window or start opens or closes it */
            }
        }
    }
    gw_plan_free(&plan);
}

void gw_on_org_event_update(gw_req *r)
{
    gw_org_submit(r, "event_update", update_run, NULL);
}

/* ---- Delete -------------------------------------------------------------- */

static void delete_run(PGconn *db, gw_org_job *job)
{
    char status[16], id[24];
    if (!gw_org_begin(db, job) || !gw_org_event_find(db, job, true, status, sizeof(status))) {
        return;
    }
    if (strcmp(status, "draft") != 0) {
        gw_org_fail(job, 409, "not_draft",
                    "event %llu is %s: only drafts are deleted; cancel a published event",
                    (unsigned long long)job->id, status);
        return;
    }
    snprintf(id, sizeof(id), "%llu", (unsigned long long)job->id);
    const char *const params[1] = {id};
    PGresult *res =
        gw_org_query(db, job, "delete the draft", "DELETE FROM events WHERE id = $1", 1, params);
    PQclear(res);
    if (res != NULL && gw_org_commit(db, job)) {
        job->reply = json_pack("{s:I,s:b}", "id", (json_int_t)job->id, "deleted", 1);
    }
}

void gw_on_org_event_delete(gw_req *r)
{
    gw_org_submit(r, "event_delete", delete_run, NULL);
}

/* ---- Cancel -------------------------------------------------------------- */

/* Payments of the event's bookings that were paid and not owed back: owed
 * now, and their buyers told through the outbox (org.c). */
static const char cancel_refunds_sql[] =
    "WITH owed AS (UPDATE payments SET refund_status = 'due', updated_at = now()"
    "   WHERE status = 'completed' AND refund_status = 'none'"
    "     AND (booking_id >> 32) IN (SELECT partition_id FROM grid_partitions WHERE event_id = $1)"
    "   RETURNING id, booking_id, user_id, amount_minor, currency),"
    " told AS (INSERT INTO notification_outbox (user_id, booking_id, kind, payload)"
    "   SELECT user_id, booking_id, 'event_cancelled', jsonb_build_object('event_id', $1::bigint,"
    "     'payment_id', id, 'refund_minor', amount_minor, 'currency', currency) FROM owed"
    "   RETURNING 1)"
    " SELECT (SELECT count(*) FROM owed), (SELECT count(*) FROM told)";

/* The event's bookings that may still hold seats, as the drain wrote them. */
static bool live_read(PGconn *db, gw_org_job *job)
{
    char id[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)job->id);
    const char *const params[1] = {id};
    PGresult *res = gw_org_query(db, job, "read the live bookings",
                                 "SELECT id FROM bookings WHERE event_id = $1"
                                 " AND status IN ('created', 'pending_payment') ORDER BY id"
                                 " LIMIT " ORG_CANCEL_BOOKINGS_MAX_TEXT,
                                 1, params);
    int n = res != NULL ? PQntuples(res) : 0;
    job->live = n > 0 ? calloc((size_t)n, sizeof(*job->live)) : NULL;
    for (int i = 0; job->live != NULL && i < n; i++) {
        job->live[job->live_count++] = strtoull(PQgetvalue(res, i, 0), NULL, 10);
    }
    PQclear(res);
    return res != NULL;
}

static void cancel_run(PGconn *db, gw_org_job *job)
{
    char status[16], id[24];
    if (!gw_org_begin(db, job) || !gw_org_event_find(db, job, true, status, sizeof(status))) {
        return;
    }
    if (strcmp(status, "draft") == 0) {
        gw_org_fail(job, 409, "not_published",
                    "event %llu is a draft: delete it instead of cancelling it",
                    (unsigned long long)job->id);
        return;
    }
    snprintf(id, sizeof(id), "%llu", (unsigned long long)job->id);
    const char *const params[1] = {id};
    PGresult *res = gw_org_query(db, job, "cancel the event",
                                 "UPDATE events SET status = 'cancelled', updated_at = now()"
                                 " WHERE id = $1",
                                 1, params);
    PQclear(res);
    res = res != NULL ? gw_org_query(db, job, "mark refunds", cancel_refunds_sql, 1, params) : NULL;
    long long refunds = res != NULL ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    if (res != NULL && gw_org_commit(db, job) && live_read(db, job)) {
        gw_events_cache_clear();
        gw_org_map_follow(job);
        job->reply = json_pack("{s:I,s:s,s:I}", "id", (json_int_t)job->id, "status", "cancelled",
                               "refunds_due", (json_int_t)refunds);
    }
}

/* After the commit, the event's live bookings (as the drain last wrote
 * them) are cancelled in the grid one by one, as the system: their seats go
 * back to FREE and they can neither hold seats nor be paid for.  A booking
 * that ended meanwhile refuses, which changes nothing. */
typedef struct {
    uint64_t event_id;
    json_t *answer;
    uint64_t *live; /* malloc'd */
    uint32_t count, next, cancelled;
    uint32_t missed; /* not reached (unit down, moving, timed out): cancel again */
} cancel_state;

static void cancel_state_dispose(void *p)
{
    cancel_state *s = p;
    json_decref(s->answer);
    free(s->live);
}

static void cancel_next(gw_req *r);

/* The unit's answer that the booking ended meanwhile (paid, expired,
 * cancelled): nothing left to cancel.  Any other failure did not reach it. */
static bool booking_ended(tg_err err)
{
    return err == TG_EBOOKING_STATE || err == TG_EEXPIRED || err == TG_ENOT_FOUND;
}

static void cancel_booking_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    (void)reply;
    cancel_state *s = r->state;
    s->cancelled += err == TG_OK;
    s->missed += !booking_ended(err) && err != TG_OK;
    s->next++;
    cancel_next(r);
}

static void cancel_next(gw_req *r)
{
    cancel_state *s = r->state;
    while (s->next < s->count) {
        tg_booking_id b = s->live[s->next];
        tg_msg msg = {.type = TG_WIRE_BOOKING_CANCEL};
        msg.booking_cancel.booking_id = b;
        msg.booking_cancel.user_id = 0; /* the system: the organizer owns no booking */
        if (gw_grid_send(r, tg_booking_id_partition(b), &msg, GW_SPACE_NONE, cancel_booking_done) ==
            TG_OK) {
            return;
        }
        s->next++; /* unroutable now: the answer says so */
        s->missed++;
    }
    json_object_set_new(s->answer, "bookings_cancelled", json_integer(s->cancelled));
    json_object_set_new(s->answer, "bookings_not_reached", json_integer(s->missed));
    gw_audit(r, "event_cancel", 0, s->event_id, NULL, 0, "ok",
             json_pack("{s:O,s:i,s:i}", "refunds_due", json_object_get(s->answer, "refunds_due"),
                       "bookings_cancelled", s->cancelled, "bookings_not_reached", s->missed));
    json_t *answer = s->answer;
    s->answer = NULL;
    gw_reply_json(r, 200, answer);
}

static void cancel_then(gw_req *r, gw_org_job *job)
{
    cancel_state *s = h2o_mem_alloc_shared(&r->h2o->pool, sizeof(*s), cancel_state_dispose);
    memset(s, 0, sizeof(*s));
    s->event_id = job->event_id;
    s->answer = job->reply;
    job->reply = NULL;
    s->live = job->live;
    s->count = job->live_count;
    job->live = NULL;
    r->state = s;
    cancel_next(r);
}

void gw_on_org_event_cancel(gw_req *r)
{
    gw_org_submit(r, "event_cancel", cancel_run, cancel_then);
}

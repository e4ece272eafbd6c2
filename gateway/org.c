/*
 * org.c — the organizer routes' plumbing (org.h), drafts (create, edit,
 * delete), cancelling a published event, artists, and the admin's role
 * route.
 *
 * Drafts.  A draft's seating plan is checked (plan.c) and kept whole in
 * events.layout; nothing of it reaches sections, seats or grid_partitions
 * before publish (publish.c), so a draft's layout may change wholesale and
 * deleting a draft leaves nothing behind.  Once published, the layout is
 * frozen — seats have ids buyers hold — and an edit naming `layout` is
 * 409 layout_frozen; the metadata (title, venue, times, ...) may change.
 *
 * Cancelling a published event (POST .../cancel), in one transaction: the
 * event becomes `cancelled`, so it leaves events_current and the gateways
 * stop creating bookings for it at their next map read; every completed
 * payment of its partitions' bookings that was not owed back already is
 * marked refund_status 'due', which refunds.c hands to the payment
 * provider; and each such buyer gets one notification_outbox row
 * (`event_cancelled`).  Then the event's live bookings (created or pending
 * payment, as the drain last wrote them) are cancelled in the grid as the
 * system, so that they can neither hold seats nor be paid for.  Cancelling
 * twice changes nothing the second time.
 *
 * Every route here is audited with its outcome (org.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "org.h"
#include "plan.h"
#include "tixgrid/log.h"

#define ORG_TEXT_BYTES_MAX      200u
#define ORG_BIOGRAPHY_BYTES_MAX 10000u
#define ORG_MAP_WAIT_MS         5000u /* a map read waits for units that do not answer */
#define ORG_WORKS_MAX           200u

/* ---- Plumbing ------------------------------------------------------------ */

void gw_org_fail(gw_org_job *job, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->message, sizeof(job->message), fmt, ap);
    va_end(ap);
    snprintf(job->code, sizeof(job->code), "%s", code);
    job->status = status;
    json_decref(job->reply);
    job->reply = NULL;
}

/* A refused statement: constraints are the caller's bad input; anything
 * else is ours (500) or PostgreSQL gone (503). */
static void query_failed(PGconn *db, gw_org_job *job, PGresult *res, const char *what)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *constraint = res != NULL ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    if (PQstatus(db) != CONNECTION_OK) {
        gw_org_fail(job, 503, "database_unavailable", "PostgreSQL is unreachable; retry");
    } else if (state != NULL && strncmp(state, "23", 2) == 0) {
        gw_org_fail(job, 400, "invalid_field", "refused by %s",
                    constraint != NULL ? constraint : "a constraint");
    } else if (state != NULL && strncmp(state, "22", 2) == 0) {
        gw_org_fail(job, 400, "invalid_field", "a value is out of range: %s",
                    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    } else {
        tg_log(TG_LOG_ERROR, "%s: %s", what, res != NULL ? PQresultErrorMessage(res) : "no result");
        gw_org_fail(job, 500, "internal", "%s failed", what);
    }
}

PGresult *gw_org_query(PGconn *db, gw_org_job *job, const char *what, const char *sql, int n,
                       const char *const *params)
{
    if (db == NULL) {
        gw_org_fail(job, 503, "database_unavailable", "PostgreSQL is unreachable; retry");
        return NULL;
    }
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        return res;
    }
    query_failed(db, job, res, what);
    PQclear(res);
    return NULL;
}

static bool exec_ok(PGconn *db, gw_org_job *job, const char *what, const char *sql)
{
    PGresult *res = gw_org_query(db, job, what, sql, 0, NULL);
    PQclear(res);
    return res != NULL;
}

bool gw_org_begin(PGconn *db, gw_org_job *job)
{
    return exec_ok(db, job, "begin", "BEGIN");
}

bool gw_org_commit(PGconn *db, gw_org_job *job)
{
    return exec_ok(db, job, "commit", "COMMIT");
}

void gw_org_map_follow(gw_org_job *job)
{
    if (!gw_map_refresh_wait(job->gw, ORG_MAP_WAIT_MS)) {
        tg_log(TG_LOG_WARN,
               "%s of event %llu: the map was not read again within %u ms; this"
               " gateway follows at its next read",
               job->action, (unsigned long long)job->id, ORG_MAP_WAIT_MS);
    }
}

static void rollback(PGconn *db)
{
    if (db != NULL && PQtransactionStatus(db) != PQTRANS_IDLE) {
        PQclear(PQexec(db, "ROLLBACK"));
    }
}

bool gw_org_event_find(PGconn *db, gw_org_job *job, bool lock, char *status, size_t size)
{
    char id[24], admin[8], user[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)job->id);
    snprintf(admin, sizeof(admin), "%s", job->admin ? "true" : "false");
    snprintf(user, sizeof(user), "%llu", (unsigned long long)job->user_id);
    const char *const params[3] = {id, admin, user};
    PGresult *res = gw_org_query(db, job, "find the event",
                                 lock ? "SELECT status FROM events WHERE id = $1"
                                        " AND ($2::boolean OR organizer_id = $3) FOR UPDATE"
                                      : "SELECT status FROM events WHERE id = $1"
                                        " AND ($2::boolean OR organizer_id = $3)",
                                 3, params);
    if (res == NULL) {
        return false;
    }
    bool found = PQntuples(res) == 1;
    if (found) {
        snprintf(status, size, "%s", PQgetvalue(res, 0, 0));
        job->event_id = job->id;
    } else {
        gw_org_fail(job, 404, "not_found", "event %llu not found", (unsigned long long)job->id);
    }
    PQclear(res);
    return found;
}

bool gw_org_partitions_read(PGconn *db, gw_org_job *job)
{
    char id[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)job->event_id);
    const char *const params[1] = {id};
    PGresult *res = gw_org_query(db, job, "read the event's partitions",
                                 "SELECT partition_id FROM grid_partitions WHERE event_id = $1"
                                 " ORDER BY first_seat",
                                 1, params);
    if (res == NULL) {
        return false;
    }
    int n = PQntuples(res);
    job->partition_count = 0;
    for (int i = 0; i < n && i < (int)GW_EVENT_PARTITIONS_MAX; i++) {
        job->partitions[job->partition_count++] =
            (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
    }
    PQclear(res);
    return true;
}

#define ORG_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static const char event_json_sql[] =
    "SELECT json_build_object('id', e.id, 'title', e.title, 'artist', e.artist,"
    " 'artist_id', e.artist_id, 'venue', e.venue, 'type', e.type, 'currency', e.currency,"
    " 'starts_at', " ORG_UTC("e.starts_at") ", 'sale_starts_at', " ORG_UTC(
        "e.sale_starts_at") ","
                            " 'sale_ends_at', " ORG_UTC(
                                "e.sale_ends_at") ", 'status', e.status,"
                                                  " 'organizer_id', e.organizer_id, "
                                                  "'published_at', " ORG_UTC(
                                                      "e.published_at") ","
                                                                        " 'layout', e.layout,"
                                                                        " 'partitions', (SELECT "
                                                                        "coalesce(json_agg(json_"
                                                                        "build_object('partition_"
                                                                        "id', g.partition_id,"
                                                                        "   'first_seat', "
                                                                        "g.first_seat, "
                                                                        "'seat_count', "
                                                                        "g.seat_count, 'primary', "
                                                                        "g.primary_pu)"
                                                                        "   ORDER BY "
                                                                        "g.first_seat), '[]') FROM "
                                                                        "grid_partitions g WHERE "
                                                                        "g.event_id = e.id))::text"
                                                                        " FROM events e WHERE e.id "
                                                                        "= $1";

json_t *gw_org_event_json(PGconn *db, gw_org_job *job, uint64_t event_id)
{
    char id[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)event_id);
    const char *const params[1] = {id};
    PGresult *res = gw_org_query(db, job, "read the event", event_json_sql, 1, params);
    json_t *j = NULL;
    if (res != NULL && PQntuples(res) == 1) {
        j = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    }
    if (res != NULL && j == NULL) {
        gw_org_fail(job, 404, "not_found", "event %llu not found", (unsigned long long)event_id);
    }
    PQclear(res);
    return j;
}

static void org_job_free(void *p)
{
    gw_org_job *job = p;
    json_decref(job->body);
    json_decref(job->reply);
    json_decref(job->detail);
    free(job->live);
    free(job);
}

static void org_run(PGconn *db, void *p)
{
    gw_org_job *job = p;
    job->status = 200;
    job->run(db, job);
    rollback(db); /* a run that failed half-way left its transaction open */
}

void gw_org_finish(gw_req *r, gw_org_job *job)
{
    bool ok = job->status < 300;
    json_t *detail = job->detail;
    job->detail = NULL;
    if (!ok) {
        json_decref(detail);
        detail = json_pack("{s:s}", "message", job->message);
    }
    gw_audit(r, job->action, 0, job->event_id, NULL, 0, ok ? "ok" : job->code, detail);
    if (ok) {
        json_t *reply = job->reply != NULL ? job->reply : json_object();
        job->reply = NULL;
        gw_reply_json(r, job->status, reply);
    } else if (job->status == 503) {
        gw_reply_error_retry(r, 503, job->code, 1, "%s", job->message);
    } else {
        gw_reply_error(r, job->status, job->code, "%s", job->message);
    }
}

static void org_done(gw_req *r, void *p)
{
    gw_org_job *job = p;
    if (job->then != NULL && job->status < 300) {
        job->then(r, job);
    } else {
        gw_org_finish(r, job);
    }
}

void gw_org_submit(gw_req *r, const char *action, gw_org_run run, gw_org_then then)
{
    gw_org_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        gw_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    job->cfg = gw_config_of(r->gw);
    job->gw = r->gw;
    job->user_id = r->who.user_id;
    job->admin = r->who.role == GW_ROLE_ADMIN;
    job->id = r->params[0];
    job->body = r->body != NULL ? json_deep_copy(r->body) : NULL;
    job->action = action;
    job->run = run;
    job->then = then;
    if (gw_db_submit(r, org_run, org_done, job, org_job_free) != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "the database queue is full; retry");
    }
}

/* ---- Artists ------------------------------------------------------------- */

/* name, genre, biography, works; false with the 400 recorded.  Unknown keys
 * are refused like an event's. */
static bool artist_check(gw_org_job *job, bool create, const char *v[4], char **works)
{
    static const char *const names[] = {"name", "genre", "biography", "works"};
    const char *key;
    json_t *val;
    json_object_foreach(job->body, key, val)
    {
        bool known = false;
        for (int i = 0; i < 4; i++) {
            known |= strcmp(key, names[i]) == 0;
        }
        if (!known) {
            gw_org_fail(job, 400, "unknown_field", "%s: not a field of an artist", key);
            return false;
        }
    }
    for (int i = 0; i < 3; i++) {
        val = json_object_get(job->body, names[i]);
        size_t max = i == 2 ? ORG_BIOGRAPHY_BYTES_MAX : ORG_TEXT_BYTES_MAX;
        v[i] = json_is_string(val) ? json_string_value(val) : NULL;
        if ((val != NULL &&
             (v[i] == NULL || json_string_length(val) == 0 || json_string_length(val) > max ||
              strlen(v[i]) != json_string_length(val))) ||
            (val == NULL && create && i == 0)) {
            gw_org_fail(job, 400, val == NULL ? "missing_field" : "invalid_field",
                        "%s: expected a string of 1..%zu bytes", names[i], max);
            return false;
        }
    }
    val = json_object_get(job->body, "works");
    if (val != NULL && (!json_is_array(val) || json_array_size(val) > ORG_WORKS_MAX)) {
        gw_org_fail(job, 400, "invalid_field", "works: expected an array of at most %u works",
                    ORG_WORKS_MAX);
        return false;
    }
    *works = val != NULL ? json_dumps(val, JSON_COMPACT) : NULL;
    v[3] = *works;
    if (json_object_size(job->body) == 0) {
        gw_org_fail(job, 400, "missing_field", "nothing to change: give at least one field");
        return false;
    }
    return true;
}

static const char artist_json_sql[] =
    "SELECT json_build_object('id', id, 'name', name, 'genre', genre, 'biography', biography,"
    " 'works', works)::text FROM artists WHERE id = $1";

static void artist_reply(PGconn *db, gw_org_job *job, const char *id)
{
    const char *const params[1] = {id};
    PGresult *res = gw_org_query(db, job, "read the artist", artist_json_sql, 1, params);
    if (res != NULL && PQntuples(res) == 1) {
        job->reply = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    } else if (res != NULL) {
        gw_org_fail(job, 404, "not_found", "artist %s not found", id);
    }
    PQclear(res);
}

static void artist_create_run(PGconn *db, gw_org_job *job)
{
    const char *v[4];
    char *works = NULL;
    if (!artist_check(job, true, v, &works)) {
        return;
    }
    PGresult *res = gw_org_query(db, job, "create the artist",
                                 "INSERT INTO artists (name, genre, biography, works)"
                                 " VALUES ($1, $2, $3, COALESCE($4::jsonb, '[]')) RETURNING id",
                                 4, v);
    free(works);
    if (res != NULL) {
        char id[24];
        snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        artist_reply(db, job, id);
        job->status = job->reply != NULL ? 201 : job->status;
    }
}

static void artist_update_run(PGconn *db, gw_org_job *job)
{
    const char *v[5];
    char *works = NULL, id[24];
    if (!artist_check(job, false, v, &works)) {
        return;
    }
    snprintf(id, sizeof(id), "%llu", (unsigned long long)job->id);
    v[4] = id;
    /* A field left out keeps its value. */
    PGresult *res =
        gw_org_query(db, job, "update the artist",
                     "UPDATE artists SET name = COALESCE($1, name),"
                     " genre = COALESCE($2, genre), biography = COALESCE($3, biography),"
                     " works = COALESCE($4::jsonb, works), updated_at = now()"
                     " WHERE id = $5 RETURNING id",
                     5, v);
    free(works);
    bool found = res != NULL && PQntuples(res) == 1;
    PQclear(res);
    if (res != NULL && !found) {
        gw_org_fail(job, 404, "not_found", "artist %s not found", id);
    } else if (found) {
        artist_reply(db, job, id);
    }
}

void gw_on_org_artist_create(gw_req *r)
{
    gw_org_submit(r, "artist_create", artist_create_run, NULL);
}

void gw_on_org_artist_update(gw_req *r)
{
    gw_org_submit(r, "artist_update", artist_update_run, NULL);
}

/* ---- Roles (admins) ------------------------------------------------------ */

static void user_role_run(PGconn *db, gw_org_job *job)
{
    json_t *email = json_object_get(job->body, "email"), *role = json_object_get(job->body, "role");
    gw_role parsed;
    if (!json_is_string(email) || json_string_length(email) == 0 ||
        json_string_length(email) > 254) {
        gw_org_fail(job, 400, email == NULL ? "missing_field" : "invalid_field",
                    "email: expected the account's e-mail address");
        return;
    }
    if (!json_is_string(role) || gw_role_parse(json_string_value(role), &parsed) != TG_OK) {
        gw_org_fail(job, 400, role == NULL ? "missing_field" : "invalid_field",
                    "role: expected buyer, organizer or admin");
        return;
    }
    const char *const params[2] = {json_string_value(email), json_string_value(role)};
    PGresult *res = gw_org_query(db, job, "set the role",
                                 "UPDATE users SET role = $2 WHERE lower(email) = lower($1)"
                                 " RETURNING id, email, role",
                                 2, params);
    if (res != NULL && PQntuples(res) == 1) {
        job->reply =
            json_pack("{s:I,s:s,s:s}", "id", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10),
                      "email", PQgetvalue(res, 0, 1), "role", PQgetvalue(res, 0, 2));
        job->detail =
            json_pack("{s:s,s:s}", "email", PQgetvalue(res, 0, 1), "role", PQgetvalue(res, 0, 2));
    } else if (res != NULL) {
        gw_org_fail(job, 404, "not_found", "no account has that e-mail address");
    }
    PQclear(res);
}

void gw_on_admin_user_role(gw_req *r)
{
    gw_org_submit(r, "user_role", user_role_run, NULL);
}

/*
 * manager_db.c — the manager's PostgreSQL side (see manager.h): the lock,
 * reading the map back, writing its changes, last_seen.
 *
 * Every statement is sent asynchronously and waited for at most
 * GRID_DB_TIMEOUT_MS (poll on the connection's socket): a manager whose
 * database went silent must give its lock up in bounded time, not hang in
 * libpq until TCP gives up.  After a timeout the session is in an unknown
 * state, and the caller closes it — which is also what makes the server
 * drop the advisory lock.  The server side is bounded the same way
 * (statement_timeout), and a session left idle for
 * GRID_IDLE_SESSION_TIMEOUT_MS (a frozen manager) is closed by the server,
 * lock and all.
 *
 * One statement per changed row inside the map's transaction: a change is a
 * handful of rows (a unit's state, an adopted partition); the rare
 * thousand-row write (a manager's first start on a large grid) still takes
 * a fraction of a second, which the failure detector discounts.
 *
 * Messages from libpq span lines; each is folded into one log line.
 */
#include "manager.h"

#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of one folded libpq message in a log line. */
#define DB_MESSAGE_BYTES 400u

static void fold(char *dst, size_t size, const char *text)
{
    size_t n = 0;
    bool space = false;
    for (const char *p = text != NULL ? text : ""; *p != '\0' && n + 1 < size; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < size) {
            dst[n++] = ' ';
        }
        space = false;
        dst[n++] = *p;
    }
    dst[n] = '\0';
}

PGconn *grid_db_connect(const char *conninfo, uint32_t timeout_s, bool quiet)
{
    char timeout[16], options[160];
    snprintf(timeout, sizeof(timeout), "%u", timeout_s != 0 ? timeout_s : 10u);
    snprintf(options, sizeof(options),
             "-c statement_timeout=%u -c idle_session_timeout=%u "
             "-c idle_in_transaction_session_timeout=%u",
             GRID_DB_TIMEOUT_MS, GRID_IDLE_SESSION_TIMEOUT_MS, GRID_IDLE_SESSION_TIMEOUT_MS);
    /* Ours first: anything the operator's conninfo says wins. */
    const char *const keys[] = {"connect_timeout", "application_name", "options", "dbname", NULL};
    const char *const values[] = {timeout, "tixgrid-manager", options, conninfo, NULL};
    PGconn *db = PQconnectdbParams(keys, values, 1);
    if (db != NULL && PQstatus(db) == CONNECTION_OK) {
        return db;
    }
    if (!quiet) {
        char why[DB_MESSAGE_BYTES];
        fold(why, sizeof(why), db != NULL ? PQerrorMessage(db) : "out of memory");
        tg_log_warn("manager: PostgreSQL unreachable, retrying: %s", why);
    }
    PQfinish(db);
    return NULL;
}

/* Waits until db has a result ready, at most until deadline_ns. */
static tg_err db_wait(PGconn *db, int64_t deadline_ns)
{
    while (PQisBusy(db)) {
        int64_t left_ms = (deadline_ns - tg_mono_ns()) / 1000000;
        if (left_ms <= 0) {
            return TG_ETIMEDOUT;
        }
        struct pollfd fd = {.fd = PQsocket(db), .events = POLLIN};
        int rv = poll(&fd, 1, (int)left_ms);
        if ((rv < 0 && errno != EINTR) || !PQconsumeInput(db)) {
            return TG_EDB;
        }
    }
    return TG_OK;
}

/* Runs one statement (with text parameters), waiting at most
 * GRID_DB_TIMEOUT_MS.  Returns its result when its status is want;
 * otherwise NULL and *err: TG_ETIMEDOUT, or TG_EDB (logged with what). */
static PGresult *db_exec(PGconn *db, const char *what, const char *sql, int n,
                         const char *const *params, ExecStatusType want, tg_err *err)
{
    *err = TG_OK;
    if (!PQsendQueryParams(db, sql, n, NULL, params, NULL, NULL, 0)) {
        *err = TG_EDB;
    }
    int64_t deadline = tg_mono_ns() + (int64_t)GRID_DB_TIMEOUT_MS * 1000000;
    PGresult *last = NULL;
    for (;;) {
        if (*err == TG_OK) {
            *err = db_wait(db, deadline);
        }
        if (*err != TG_OK) {
            break;
        }
        PGresult *r = PQgetResult(db);
        if (r == NULL) {
            break;
        }
        PQclear(last);
        last = r;
    }
    if (*err == TG_OK && (last == NULL || PQresultStatus(last) != want)) {
        *err = TG_EDB;
    }
    if (*err != TG_OK) {
        char why[DB_MESSAGE_BYTES];
        fold(why, sizeof(why),
             *err == TG_ETIMEDOUT ? "no answer in time"
             : last != NULL       ? PQresultErrorMessage(last)
                                  : PQerrorMessage(db));
        const char *state = last != NULL ? PQresultErrorField(last, PG_DIAG_SQLSTATE) : NULL;
        tg_log_error("manager: PostgreSQL: %s: %s%s%s", what, why,
                     state != NULL ? " sqlstate " : "", state != NULL ? state : "");
        if (state != NULL && strcmp(state, "42P01") == 0) {
            *err = TG_ENOENT; /* undefined_table: no grid schema */
        }
        PQclear(last);
        return NULL;
    }
    return last;
}

/* A statement whose result is not needed. */
static tg_err db_command(PGconn *db, const char *what, const char *sql, int n,
                         const char *const *params, const char *want_tuples)
{
    tg_err err;
    PGresult *r = db_exec(db, what, sql, n, params, PGRES_COMMAND_OK, &err);
    if (r != NULL && want_tuples != NULL && strcmp(PQcmdTuples(r), want_tuples) != 0) {
        err = TG_EBUSY;
    }
    PQclear(r);
    return err;
}

tg_err grid_db_try_lock(PGconn *db, bool *got)
{
    const char *params[] = {GRID_MANAGER_LOCK_KEY};
    tg_err err;
    PGresult *r = db_exec(db, "pg_try_advisory_lock", "SELECT pg_try_advisory_lock($1::bigint)", 1,
                          params, PGRES_TUPLES_OK, &err);
    *got = r != NULL && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return err;
}

/* ---- Reading ------------------------------------------------------------------ */

static uint64_t parse_u64(const char *text)
{
    return strtoull(text, NULL, 10);
}

static uint32_t state_from_text(const char *state)
{
    if (strcmp(state, "dead") == 0) {
        return TG_MEMBER_DEAD;
    }
    return strcmp(state, "leaving") == 0 ? TG_MEMBER_LEAVING : TG_MEMBER_ALIVE;
}

static const char *state_text(uint32_t state)
{
    static const char *const names[TG_MEMBER_STATE_COUNT] = {"alive", "dead", "leaving"};
    TG_ASSERT(state < TG_MEMBER_STATE_COUNT);
    return names[state];
}

/* One grid_members row into a free slot (a unit no manager judged yet, or
 * one marked alive by the manager before us, is alive until the detector
 * says otherwise: it gets a whole timeout from the takeover). */
static void member_from_row(grid_member *u, PGresult *r, int row)
{
    memset(u, 0, sizeof(*u));
    snprintf(u->name, sizeof(u->name), "%s", PQgetvalue(r, row, 0));
    snprintf(u->rep_url, sizeof(u->rep_url), "%s", PQgetvalue(r, row, 1));
    snprintf(u->pub_url, sizeof(u->pub_url), "%s", PQgetvalue(r, row, 2));
    snprintf(u->zone, sizeof(u->zone), "%s", PQgetvalue(r, row, 3));
    u->state = state_from_text(PQgetvalue(r, row, 4));
    u->incarnation = parse_u64(PQgetvalue(r, row, 5));
}

static const char members_sql[] =
    "SELECT pu_name, COALESCE(rep_url, ''), COALESCE(pub_url, ''), COALESCE(zone, ''),"
    " COALESCE(state, ''), COALESCE(incarnation, 0) FROM grid_members ORDER BY pu_name";

/* Adds every grid_members row m does not know.  TG_ENOMEM when they do not
 * all fit (logged). */
static tg_err load_members(PGconn *db, grid_map_state *m)
{
    tg_err err;
    PGresult *r = db_exec(db, "read grid_members", members_sql, 0, NULL, PGRES_TUPLES_OK, &err);
    for (int row = 0; r != NULL && row < PQntuples(r) && err == TG_OK; row++) {
        if (grid_member_find(m, PQgetvalue(r, row, 0)) >= 0) {
            continue;
        }
        uint32_t i = 0;
        while (i < TG_GRID_MEMBERS_MAX && m->members[i].name[0] != '\0') {
            i++;
        }
        if (i == TG_GRID_MEMBERS_MAX) {
            tg_log_error("manager: grid_members has more than %u units; remove some",
                         TG_GRID_MEMBERS_MAX);
            err = TG_ENOMEM;
            break;
        }
        member_from_row(&m->members[i], r, row);
        tg_log_info("manager: unit %s read from grid_members (%s)", m->members[i].name,
                    state_text(m->members[i].state));
    }
    PQclear(r);
    return err;
}

/* backup_pus as PostgreSQL prints a text[]: {a,b} or {"a b",c}; names that
 * are not members are dropped (the array has no foreign key). */
static void parse_backups(const grid_map_state *m, const char *text, grid_partition *p)
{
    char name[TG_PU_NAME_BYTES];
    size_t len = strlen(text);
    p->backup_count = 0;
    if (len < 2 || text[0] != '{' || text[len - 1] != '}') {
        return;
    }
    for (size_t i = 1; i < len - 1 && p->backup_count < TG_GRID_BACKUPS_MAX;) {
        size_t n = 0;
        bool quoted = text[i] == '"';
        i += quoted ? 1 : 0;
        while (i < len - 1 && (quoted ? text[i] != '"' : text[i] != ',')) {
            if (n + 1 < sizeof(name)) {
                name[n++] = text[i];
            }
            i++;
        }
        name[n] = '\0';
        i += quoted ? 2 : 1; /* the closing quote and the comma */
        int32_t b = grid_member_find(m, name);
        if (b >= 0 && b != p->primary) {
            p->backups[p->backup_count++] = b;
        }
    }
}

/* One grid_partitions row: partition_id, event_id, primary_pu, backup_pus,
 * epoch.  The report fields are left to the caller. */
static void partition_from_row(const grid_map_state *m, PGresult *r, int row, grid_partition *p)
{
    p->partition_id = (uint32_t)parse_u64(PQgetvalue(r, row, 0));
    p->event_id = parse_u64(PQgetvalue(r, row, 1));
    p->primary = grid_member_find(m, PQgetvalue(r, row, 2));
    parse_backups(m, PQgetvalue(r, row, 3), p);
    p->epoch = parse_u64(PQgetvalue(r, row, 4));
    p->stored_epoch = p->epoch;
    p->dirty = false;
}

static const char partitions_sql[] =
    "SELECT partition_id, event_id, COALESCE(primary_pu, ''), backup_pus::text, epoch"
    " FROM grid_partitions ORDER BY partition_id";

static PGresult *read_partitions(PGconn *db, tg_err *err)
{
    PGresult *r =
        db_exec(db, "read grid_partitions", partitions_sql, 0, NULL, PGRES_TUPLES_OK, err);
    if (r != NULL && PQntuples(r) > (int)TG_GRID_PARTITIONS_MAX) {
        tg_log_error("manager: grid_partitions has %d partitions; a map holds at most %u",
                     PQntuples(r), TG_GRID_PARTITIONS_MAX);
        PQclear(r);
        *err = TG_ENOMEM;
        return NULL;
    }
    return r;
}

static tg_err read_map_epoch(PGconn *db, uint64_t *epoch)
{
    tg_err err;
    PGresult *r =
        db_exec(db, "read grid_map", "SELECT epoch FROM grid_map", 0, NULL, PGRES_TUPLES_OK, &err);
    if (r != NULL && PQntuples(r) != 1) {
        tg_log_error("manager: grid_map must have exactly one row (it has %d)", PQntuples(r));
        err = TG_EDB;
    }
    if (err == TG_OK) {
        *epoch = parse_u64(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return err;
}

tg_err grid_db_load(PGconn *db, grid_map_state *m)
{
    memset(m->members, 0, sizeof(m->members));
    m->part_count = 0;
    tg_err err = read_map_epoch(db, &m->epoch);
    if (err == TG_OK) {
        err = load_members(db, m);
    }
    PGresult *r = err == TG_OK ? read_partitions(db, &err) : NULL;
    for (int row = 0; r != NULL && row < PQntuples(r); row++) {
        grid_partition *p = &m->parts[m->part_count++];
        memset(p, 0, sizeof(*p));
        partition_from_row(m, r, row, p);
    }
    PQclear(r);
    m->changed = false;
    return err;
}

/* Merges one row into out: what we had (ours may be dirty: it is written
 * with a check of stored_epoch), or the row as stored when someone else
 * wrote it. */
static bool merge_row(grid_map_state *m, PGresult *r, int row, grid_partition *out)
{
    grid_partition stored;
    memset(&stored, 0, sizeof(stored));
    partition_from_row(m, r, row, &stored);
    grid_partition *had = grid_partition_find(m, stored.partition_id);
    if (had != NULL && had->stored_epoch == stored.epoch) {
        *out = *had;
        return false;
    }
    if (had == NULL) {
        tg_log_info("manager: partition %u (event %llu) joined the map", stored.partition_id,
                    (unsigned long long)stored.event_id);
        *out = stored;
        return true;
    }
    tg_log_info("manager: partition %u was placed from outside (epoch %llu, primary %s): the "
                "map takes it",
                stored.partition_id, (unsigned long long)stored.epoch,
                stored.primary >= 0 ? m->members[stored.primary].name : "none");
    *out = *had;
    out->primary = stored.primary;
    out->backup_count = stored.backup_count;
    memcpy(out->backups, stored.backups, sizeof(out->backups));
    out->epoch = stored.epoch;
    out->stored_epoch = stored.epoch;
    out->dirty = false;
    return true;
}

tg_err grid_db_refresh(PGconn *db, grid_map_state *m, grid_partition **scratch)
{
    uint64_t stored_epoch = 0;
    tg_err err = read_map_epoch(db, &stored_epoch);
    if (err == TG_OK && stored_epoch > m->epoch) {
        tg_log_error("manager: grid_map holds epoch %llu, above ours (%llu): another manager "
                     "wrote the map",
                     (unsigned long long)stored_epoch, (unsigned long long)m->epoch);
        return TG_ESTALE_EPOCH;
    }
    if (err == TG_OK) {
        err = load_members(db, m);
    }
    PGresult *r = err == TG_OK ? read_partitions(db, &err) : NULL;
    if (r == NULL) {
        return err;
    }
    grid_partition *next = *scratch;
    uint32_t n = (uint32_t)PQntuples(r);
    bool changed = n != m->part_count;
    for (uint32_t row = 0; row < n; row++) {
        changed |= merge_row(m, r, (int)row, &next[row]);
    }
    PQclear(r);
    if (changed) {
        *scratch = m->parts;
        m->parts = next;
        m->part_count = n;
        m->changed = true;
    }
    return TG_OK;
}

/* ---- Writing -------------------------------------------------------------------- */

static tg_err write_member(PGconn *db, const grid_member *u)
{
    char incarnation[24];
    snprintf(incarnation, sizeof(incarnation), "%" PRIu64, u->incarnation);
    const char *params[] = {
        u->name, u->rep_url,           u->pub_url,
        u->zone, state_text(u->state), u->incarnation != 0 ? incarnation : NULL};
    return db_command(db, "write grid_members",
                      "INSERT INTO grid_members (pu_name, rep_url, pub_url, zone, state,"
                      " incarnation, last_seen) VALUES ($1, NULLIF($2, ''), NULLIF($3, ''),"
                      " NULLIF($4, ''), $5, $6, CASE WHEN $5 = 'alive' THEN now() END)"
                      " ON CONFLICT (pu_name) DO UPDATE SET rep_url = EXCLUDED.rep_url,"
                      " pub_url = EXCLUDED.pub_url, zone = EXCLUDED.zone, state = EXCLUDED.state,"
                      " incarnation = EXCLUDED.incarnation,"
                      " last_seen = COALESCE(EXCLUDED.last_seen, grid_members.last_seen)",
                      6, params, NULL);
}

/* backup_pus as a text[] literal: {"a","b"} (names never hold quotes). */
static void backups_literal(const grid_map_state *m, const grid_partition *p, char *out,
                            size_t size)
{
    size_t at = (size_t)snprintf(out, size, "{");
    for (uint32_t b = 0; b < p->backup_count && at < size; b++) {
        at += (size_t)snprintf(out + at, size - at, "%s\"%s\"", b > 0 ? "," : "",
                               m->members[p->backups[b]].name);
    }
    if (at < size) {
        snprintf(out + at, size - at, "}");
    }
}

static tg_err write_partition(PGconn *db, const grid_map_state *m, const grid_partition *p)
{
    char id[16], epoch[24], stored[24];
    char backups[TG_GRID_BACKUPS_MAX * (TG_PU_NAME_BYTES + 3) + 4];
    snprintf(id, sizeof(id), "%" PRIu32, p->partition_id);
    snprintf(epoch, sizeof(epoch), "%" PRIu64, p->epoch);
    snprintf(stored, sizeof(stored), "%" PRIu64, p->stored_epoch);
    backups_literal(m, p, backups, sizeof(backups));
    const char *params[] = {id, p->primary >= 0 ? m->members[p->primary].name : NULL, backups,
                            epoch, stored};
    return db_command(db, "write grid_partitions",
                      "UPDATE grid_partitions SET primary_pu = $2, backup_pus = $3::text[],"
                      " epoch = $4, updated_at = now() WHERE partition_id = $1 AND epoch = $5",
                      5, params, "1");
}

static tg_err write_changes(PGconn *db, const grid_map_state *m)
{
    char epoch[24], old[24];
    snprintf(epoch, sizeof(epoch), "%" PRIu64, m->epoch + 1);
    snprintf(old, sizeof(old), "%" PRIu64, m->epoch);
    const char *params[] = {epoch, m->manager, old};
    tg_err err = db_command(db, "write grid_map",
                            "UPDATE grid_map SET epoch = $1, manager = $2, updated_at = now()"
                            " WHERE epoch = $3",
                            3, params, "1");
    if (err == TG_EBUSY) {
        tg_log_error("manager: grid_map is no longer at epoch %s: another manager wrote it", old);
        return TG_ESTALE_EPOCH;
    }
    for (uint32_t i = 0; err == TG_OK && i < TG_GRID_MEMBERS_MAX; i++) {
        const grid_member *u = &m->members[i];
        const char *name[] = {u->name};
        if (u->name[0] != '\0' && u->removing) {
            err = db_command(db, "delete from grid_members",
                             "DELETE FROM grid_members WHERE pu_name = $1", 1, name, NULL);
        } else if (u->name[0] != '\0' && u->dirty) {
            err = write_member(db, u);
        }
    }
    for (uint32_t k = 0; err == TG_OK && k < m->part_count; k++) {
        if (m->parts[k].dirty) {
            err = write_partition(db, m, &m->parts[k]);
        }
    }
    if (err == TG_EBUSY) {
        tg_log_warn("manager: a partition changed in grid_partitions meanwhile; reading the map "
                    "again");
    }
    return err;
}

tg_err grid_db_persist(PGconn *db, const grid_map_state *m)
{
    tg_err err = db_command(db, "begin", "BEGIN", 0, NULL, NULL);
    if (err != TG_OK) {
        return err;
    }
    err = write_changes(db, m);
    if (err == TG_OK) {
        err = db_command(db, "commit the map", "COMMIT", 0, NULL, NULL);
        return err == TG_EBUSY ? TG_EDB : err;
    }
    if (err != TG_ETIMEDOUT) {
        tg_err rollback = db_command(db, "rollback", "ROLLBACK", 0, NULL, NULL);
        err = rollback == TG_OK ? err : TG_EDB;
    }
    return err == TG_ETIMEDOUT ? TG_EDB : err;
}

/* Appends one element to a PostgreSQL array literal in buf. */
static void array_append(char *buf, size_t size, size_t *at, const char *element, bool quote)
{
    int n = snprintf(buf + *at, size - *at, "%s%s%s%s", *at > 1 ? "," : "", quote ? "\"" : "",
                     element, quote ? "\"" : "");
    *at += n > 0 && (size_t)n < size - *at ? (size_t)n : 0;
}

tg_err grid_db_flush_seen(PGconn *db, const grid_map_state *m, const grid_detector *d,
                          int64_t now_ns)
{
    char names[TG_GRID_MEMBERS_MAX * (TG_PU_NAME_BYTES + 3) + 4] = "{";
    char ages[TG_GRID_MEMBERS_MAX * 22 + 4] = "{";
    size_t at_names = 1, at_ages = 1;
    uint32_t count = 0;
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        const grid_member *u = &m->members[i];
        if (u->name[0] == '\0' || u->removing || !u->ever_heard) {
            continue;
        }
        char age[24];
        snprintf(age, sizeof(age), "%" PRId64,
                 grid_detector_silence_ns(d, &u->heard, now_ns) / 1000000);
        array_append(names, sizeof(names), &at_names, u->name, true);
        array_append(ages, sizeof(ages), &at_ages, age, false);
        count++;
    }
    if (count == 0) {
        return TG_OK;
    }
    snprintf(names + at_names, sizeof(names) - at_names, "}");
    snprintf(ages + at_ages, sizeof(ages) - at_ages, "}");
    const char *params[] = {names, ages};
    return db_command(db, "write grid_members.last_seen",
                      "UPDATE grid_members AS g SET last_seen = now() - u.age_ms *"
                      " interval '1 millisecond' FROM unnest($1::text[], $2::bigint[])"
                      " AS u(name, age_ms) WHERE g.pu_name = u.name",
                      2, params, NULL);
}

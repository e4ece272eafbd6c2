/*
 * publish.c — POST /api/admin/events/{id}/publish: a draft's plan becomes
 * partitions in the grid and the sale opens.
 *
 * Three steps, each safe to run again, on a pool thread (blocking libpq and
 * blocking requests to units; never a loop thread):
 *
 *  1. Write the layout (one transaction, the event row locked): the plan in
 *     events.layout is split (plan.c: whole rows, at most
 *     --partition-seats each), each part gets the next free partition id
 *     (grid_partitions locked against a concurrent publish), and sections,
 *     grid_partitions (no primary, epoch 1) and seats (one COPY) are
 *     written.  An event that already has partitions (a publish cut short
 *     after this step, or seed-demo's draft) skips it.
 *  2. Load each partition that has no primary into a unit, through the
 *     persister's replay code (tixgrid/replay.h), the unit chosen from
 *     grid_members: an alive (or, without a manager, registered) unit with
 *     the fewest primaries, ties by name — so an event of several
 *     partitions spreads over the units.  A unit that already has the
 *     partition (a publish cut short during this step) counts as loaded.
 *  3. In one transaction: each loaded partition's primary_pu is set unless
 *     somebody set it meanwhile, and the event turns on_sale
 *     (published_at now).  With tixgrid-manager running, the manager
 *     adopts each partition as soon as its unit reports it (grid/README.md,
 *     "Adoption"): then its write wins, this one changes nothing, and the
 *     manager places the backups, which the primary fills by state
 *     transfer.  Without a manager (single-unit setups) this write is the
 *     placement, at epoch 1.
 *
 * The sale opens at sale_starts_at (NULL: at once), as events_current
 * says.  This gateway reads its map again before it answers, so its
 * shoppers can buy as soon as the 200 is out; other gateways route to the
 * new partitions at their next map read (--map-refresh-ms).  Publishing
 * an event that is on sale or closed answers 200 with the event and
 * changes nothing; a cancelled event is 409.  A failure in step 2 (no
 * unit registered, a unit that does not answer) answers 503 and leaves
 * the event a draft whose layout is written: publishing again continues
 * from there.
 *
 * Rejected: asking the manager to choose the units (a request of its
 * own).  The manager keeps grid_members' states and adopts what units
 * report, so choosing from the table gives the same balance without a
 * second path for placements; the manager still decides backups and
 * failover.  A unit chosen for a partition whose load failed half-way
 * keeps an unserved copy until it restarts (persister/README.md, "A failed
 * restore"); the next publish may choose another unit.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "org.h"
#include "plan.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"
#include "tixgrid/replay.h"

#define PUBLISH_COPY_BYTES (256u << 10) /* seats are sent to COPY in pieces of this */
#define PUBLISH_LOCK_CLASS "1952935010" /* 'tgpb': the advisory lock's first key */

typedef struct {
    char name[TG_PU_NAME_BYTES];
    char rep_url[TG_URL_BYTES];
    uint32_t primaries;
} publish_unit;

/* ---- Step 1: the layout --------------------------------------------------- */

static bool sections_write(PGconn *db, gw_org_job *job, const gw_plan *plan)
{
    char event[24], idx[16], price[24];
    snprintf(event, sizeof(event), "%" PRIu64, job->event_id);
    for (uint32_t s = 0; s < plan->section_count; s++) {
        snprintf(idx, sizeof(idx), "%u", s);
        snprintf(price, sizeof(price), "%" PRId64, plan->sections[s].price_minor);
        const char *const params[5] = {event, idx, plan->sections[s].name, price,
                                       plan->sections[s].currency};
        PGresult *res = gw_org_query(db, job, "write a section",
                                     "INSERT INTO sections (event_id, section_idx, name,"
                                     " price_minor, currency) VALUES ($1, $2, $3, $4, $5)",
                                     5, params);
        PQclear(res);
        if (res == NULL) {
            return false;
        }
    }
    return true;
}

static bool partitions_write(PGconn *db, gw_org_job *job, const gw_plan_part *parts, uint32_t n,
                             uint32_t first_id)
{
    char event[24], id[16], first[16], count[16];
    snprintf(event, sizeof(event), "%" PRIu64, job->event_id);
    for (uint32_t k = 0; k < n; k++) {
        snprintf(id, sizeof(id), "%u", first_id + k);
        snprintf(first, sizeof(first), "%u", parts[k].seat_first);
        snprintf(count, sizeof(count), "%u", parts[k].seat_count);
        const char *const params[4] = {id, event, first, count};
        PGresult *res = gw_org_query(db, job, "write a partition",
                                     "INSERT INTO grid_partitions (partition_id, event_id,"
                                     " first_seat, seat_count, epoch) VALUES ($1, $2, $3, $4, 1)",
                                     4, params);
        PQclear(res);
        if (res == NULL) {
            return false;
        }
    }
    return true;
}

/* COPY text: backslash, tab, newline and carriage return escaped. */
static size_t copy_escape(char *out, const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        const char *esc = *s == '\\'   ? "\\\\"
                          : *s == '\t' ? "\\t"
                          : *s == '\n' ? "\\n"
                          : *s == '\r' ? "\\r"
                                       : NULL;
        if (esc != NULL) {
            out[n++] = esc[0];
            out[n++] = esc[1];
        } else {
            out[n++] = *s;
        }
    }
    return n;
}

/* Appends row r's seats to buf (flushing it to COPY when full). */
static bool seats_put_row(PGconn *db, const gw_plan *plan, uint32_t r, uint32_t partition_id,
                          uint64_t event_id, char *buf, size_t *used)
{
    const gw_plan_row *row = &plan->rows[r];
    char name[2 * TG_NAME_BYTES];
    name[copy_escape(name, row->name)] = '\0';
    for (uint32_t k = 0; k < row->seats; k++) {
        if (*used + 256 > PUBLISH_COPY_BYTES) {
            if (PQputCopyData(db, buf, (int)*used) != 1) {
                return false;
            }
            *used = 0;
        }
        *used += (size_t)snprintf(buf + *used, PUBLISH_COPY_BYTES - *used,
                                  "%" PRIu64 "\t%u\t%u\t%u\t%s\t%u\t%" PRId64 "\n", event_id,
                                  row->seat_first + k, partition_id, row->section, name, k + 1,
                                  plan->sections[row->section].price_minor);
    }
    return true;
}

static bool seats_write(PGconn *db, gw_org_job *job, const gw_plan *plan, const gw_plan_part *parts,
                        uint32_t n, uint32_t first_id)
{
    PGresult *res = PQexec(db, "COPY seats (event_id, seat_no, partition_id, section_idx,"
                               " row_name, number, price_minor) FROM STDIN");
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        gw_org_fail(job, PQstatus(db) == CONNECTION_OK ? 500 : 503, "internal",
                    "the seats were not written: %s", PQresultErrorMessage(res));
        PQclear(res);
        return false;
    }
    PQclear(res);
    char *buf = malloc(PUBLISH_COPY_BYTES);
    size_t used = 0;
    bool ok = buf != NULL;
    for (uint32_t k = 0; k < n && ok; k++) {
        for (uint32_t r = parts[k].row_first; r < parts[k].row_first + parts[k].row_count && ok;
             r++) {
            ok = seats_put_row(db, plan, r, first_id + k, job->event_id, buf, &used);
        }
    }
    ok = ok && (used == 0 || PQputCopyData(db, buf, (int)used) == 1);
    free(buf);
    ok = PQputCopyEnd(db, ok ? NULL : "publish: seats not sent") == 1 && ok;
    res = PQgetResult(db);
    ok = ok && PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) {
        gw_org_fail(job, PQstatus(db) == CONNECTION_OK ? 500 : 503, "internal",
                    "the seats were not written: %s", PQresultErrorMessage(res));
    }
    PQclear(res);
    while ((res = PQgetResult(db)) != NULL) {
        PQclear(res);
    }
    return ok;
}

/* The next free partition ids: grid_partitions is locked against another
 * publish (or seed) choosing the same ones until the commit. */
static bool partition_ids(PGconn *db, gw_org_job *job, uint32_t n, uint32_t *first)
{
    PGresult *res = gw_org_query(db, job, "choose partition ids",
                                 "LOCK TABLE grid_partitions IN SHARE ROW EXCLUSIVE MODE", 0, NULL);
    PQclear(res);
    res = res != NULL
              ? gw_org_query(db, job, "choose partition ids",
                             "SELECT COALESCE(max(partition_id), 0) + 1 FROM grid_partitions", 0,
                             NULL)
              : NULL;
    if (res == NULL) {
        return false;
    }
    *first = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (*first + n - 1 > TG_PARTITION_ID_MAX) {
        gw_org_fail(job, 503, "partitions_exhausted", "no partition ids left (at most %u)",
                    TG_PARTITION_ID_MAX);
        return false;
    }
    return true;
}

static bool layout_load(PGconn *db, gw_org_job *job, gw_plan *plan)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, job->event_id);
    const char *const params[1] = {id};
    PGresult *res = gw_org_query(db, job, "read the layout",
                                 "SELECT layout::text FROM events WHERE id = $1", 1, params);
    if (res == NULL) {
        return false;
    }
    json_t *layout = PQgetisnull(res, 0, 0) ? NULL : json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    gw_plan_error e;
    tg_err err =
        layout != NULL ? gw_plan_parse(layout, job->cfg->event_seats_max, plan, &e) : TG_EINVAL;
    json_decref(layout);
    if (err != TG_OK) {
        gw_org_fail(job, 409, "invalid_layout",
                    "event %" PRIu64 " has no layout that can be published%s%s%s%s", job->event_id,
                    layout != NULL ? ": " : "", layout != NULL ? e.field : "",
                    layout != NULL ? ": " : "", layout != NULL ? e.message : "");
        return false;
    }
    return true;
}

/* Step 1, inside the transaction that locked the event. */
static bool layout_write(PGconn *db, gw_org_job *job)
{
    gw_plan plan;
    if (!layout_load(db, job, &plan)) {
        return false;
    }
    gw_plan_part parts[GW_EVENT_PARTITIONS_MAX];
    uint32_t n = gw_plan_split(&plan, job->cfg->partition_seats, parts, GW_EVENT_PARTITIONS_MAX);
    uint32_t first = 0;
    bool ok = n <= GW_EVENT_PARTITIONS_MAX;
    if (!ok) {
        gw_org_fail(job, 409, "invalid_layout", "the layout makes %u partitions; at most %u", n,
                    GW_EVENT_PARTITIONS_MAX);
    }
    ok = ok && partition_ids(db, job, n, &first) && sections_write(db, job, &plan) &&
         partitions_write(db, job, parts, n, first) && seats_write(db, job, &plan, parts, n, first);
    if (ok) {
        job->detail = json_pack("{s:i,s:i,s:i}", "seats", plan.seat_count, "partitions", n,
                                "first_partition", first);
        tg_log(TG_LOG_INFO, "publish: event %" PRIu64 ": %u seats written as partitions %u..%u",
               job->event_id, plan.seat_count, first, first + n - 1);
    }
    gw_plan_free(&plan);
    return ok;
}

/* ---- Step 2: into the units ------------------------------------------------ */

static uint32_t units_read(PGconn *db, gw_org_job *job, publish_unit *units, uint32_t max)
{
    PGresult *res =
        gw_org_query(db, job, "read the units",
                     "SELECT m.pu_name, m.rep_url, (SELECT count(*) FROM grid_partitions g"
                     "   WHERE g.primary_pu = m.pu_name) FROM grid_members m"
                     " WHERE m.rep_url IS NOT NULL AND (m.state IS NULL OR m.state = 'alive')"
                     " ORDER BY m.pu_name",
                     0, NULL);
    uint32_t n = 0;
    for (int i = 0; res != NULL && i < PQntuples(res) && n < max; i++) {
        snprintf(units[n].name, sizeof(units[n].name), "%s", PQgetvalue(res, i, 0));
        snprintf(units[n].rep_url, sizeof(units[n].rep_url), "%s", PQgetvalue(res, i, 1));
        units[n].primaries = (uint32_t)strtoul(PQgetvalue(res, i, 2), NULL, 10);
        n++;
    }
    PQclear(res);
    if (res != NULL && n == 0) {
        gw_org_fail(job, 503, "no_units",
                    "no processing unit is registered and alive to hold the event's partitions");
    }
    return n;
}

static publish_unit *unit_least_loaded(publish_unit *units, uint32_t n)
{
    publish_unit *best = &units[0];
    for (uint32_t i = 1; i < n; i++) {
        if (units[i].primaries < best->primaries) {
            best = &units[i];
        }
    }
    return best;
}

/* Loads every partition of the event that has no primary; names the unit
 * of each in unit_of (index into units), -1 for those placed already. */
static bool partitions_load(PGconn *db, gw_org_job *job, publish_unit *units, uint32_t n_units,
                            int32_t *unit_of)
{
    char event[24];
    snprintf(event, sizeof(event), "%" PRIu64, job->event_id);
    const char *const params[1] = {event};
    PGresult *res = gw_org_query(db, job, "read the partitions",
                                 "SELECT partition_id, primary_pu IS NULL FROM grid_partitions"
                                 " WHERE event_id = $1 ORDER BY first_seat",
                                 1, params);
    int n = res != NULL ? PQntuples(res) : 0;
    job->partition_count = 0;
    for (int i = 0; i < n && i < (int)GW_EVENT_PARTITIONS_MAX; i++) {
        job->partitions[job->partition_count++] =
            (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
        unit_of[i] = PQgetvalue(res, i, 1)[0] == 't' ? 0 : -1;
    }
    PQclear(res);
    for (uint32_t k = 0; res != NULL && k < job->partition_count; k++) {
        if (unit_of[k] < 0) {
            continue;
        }
        publish_unit *u = unit_least_loaded(units, n_units);
        int64_t t0 = tg_mono_ns();
        tg_err err = tg_replay_partition(db, job->partitions[k], u->rep_url);
        tg_log(TG_LOG_INFO, "publish: event %" PRIu64 ": partition %u into %s: %s (%lld ms)",
               job->event_id, job->partitions[k], u->name, tg_errname(err),
               (long long)((tg_mono_ns() - t0) / 1000000));
        if (err != TG_OK && err != TG_EEXIST) {
            gw_org_fail(job, 503, "placement_failed",
                        "partition %u could not be loaded into %s: %s; publish again to retry",
                        job->partitions[k], u->name, tg_errname(err));
            return false;
        }
        u->primaries++;
        unit_of[k] = (int32_t)(u - units);
    }
    return res != NULL;
}

/* ---- Step 3: the sale opens --------------------------------------------------- */

static bool sale_open(PGconn *db, gw_org_job *job, const publish_unit *units,
                      const int32_t *unit_of)
{
    if (!gw_org_begin(db, job)) {
        return false;
    }
    char id[16], event[24];
    for (uint32_t k = 0; k < job->partition_count; k++) {
        if (unit_of[k] < 0) {
            continue;
        }
        snprintf(id, sizeof(id), "%u", job->partitions[k]);
        const char *const params[2] = {id, units[unit_of[k]].name};
        PGresult *res =
            gw_org_query(db, job, "place a partition",
                         "UPDATE grid_partitions SET primary_pu = $2, updated_at = now()"
                         " WHERE partition_id = $1 AND primary_pu IS NULL",
                         2, params);
        PQclear(res);
        if (res == NULL) {
            return false;
        }
    }
    snprintf(event, sizeof(event), "%" PRIu64, job->event_id);
    const char *const params[1] = {event};
    PGresult *res = gw_org_query(db, job, "open the sale",
                                 "UPDATE events SET status = 'on_sale', updated_at = now(),"
                                 " published_at = COALESCE(published_at, now())"
                                 " WHERE id = $1 AND status = 'draft'",
                                 1, params);
    PQclear(res);
    return res != NULL && gw_org_commit(db, job);
}

/* ---- The route ----------------------------------------------------------------- */

/* Step 1 when needed; false when the job is answered (already published,
 * cancelled, or an error). */
static bool publish_prepare(PGconn *db, gw_org_job *job)
{
    char status[16];
    if (!gw_org_begin(db, job) || !gw_org_event_find(db, job, true, status, sizeof(status))) {
        return false;
    }
    if (strcmp(status, "cancelled") == 0) {
        gw_org_fail(job, 409, "event_cancelled", "event %" PRIu64 " was cancelled", job->event_id);
        return false;
    }
    if (strcmp(status, "draft") != 0) {
        job->reply = gw_org_event_json(db, job, job->event_id);
        job->detail = json_pack("{s:b}", "already_published", 1);
        return false;
    }
    if (!gw_org_partitions_read(db, job)) {
        return false;
    }
    return (job->partition_count > 0 || layout_write(db, job)) && gw_org_commit(db, job);
}

/* One publish of an event at a time, across gateways: a session advisory
 * lock on the event (released at the end, or with the session if the
 * connection breaks).  Without it two publishes could load the same new
 * partition into two units. */
static bool publish_lock(PGconn *db, gw_org_job *job, bool take)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, job->id);
    const char *const params[1] = {id};
    PGresult *res = gw_org_query(
        db, job, "lock the publication",
        take ? "SELECT pg_try_advisory_lock(" PUBLISH_LOCK_CLASS ", hashint8($1::bigint))"
             : "SELECT pg_advisory_unlock(" PUBLISH_LOCK_CLASS ", hashint8($1::bigint))",
        1, params);
    bool got = res != NULL && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (res != NULL && take && !got) {
        gw_org_fail(job, 409, "publish_in_progress",
                    "event %" PRIu64 " is being published by another request; retry", job->id);
    }
    return got;
}

static void publish_run(PGconn *db, gw_org_job *job)
{
    publish_unit units[TG_GRID_MEMBERS_MAX];
    int32_t unit_of[GW_EVENT_PARTITIONS_MAX];
    if (!publish_lock(db, job, true)) {
        return;
    }
    if (publish_prepare(db, job)) {
        uint32_t n_units = units_read(db, job, units, TG_GRID_MEMBERS_MAX);
        if (n_units > 0 && partitions_load(db, job, units, n_units, unit_of) &&
            sale_open(db, job, units, unit_of)) {
            gw_events_cache_clear();
            gw_org_map_follow(job);
            job->reply = gw_org_event_json(db, job, job->event_id);
        }
    }
    if (PQtransactionStatus(db) != PQTRANS_IDLE) {
        PQclear(PQexec(db, "ROLLBACK")); /* a failed step left its transaction open */
    }
    gw_org_job unlock = {.cfg = job->cfg, .id = job->id}; /* keeps job's outcome */
    publish_lock(db, &unlock, false);
}

void gw_on_org_event_publish(gw_req *r)
{
    gw_org_submit(r, "event_publish", publish_run, NULL);
}

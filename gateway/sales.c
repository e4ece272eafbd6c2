/*
 * sales.c — GET /api/admin/events/{id}/sales, POST
 * /api/admin/events/{id}/seats/block and /unblock.
 *
 * Sales analytics never touch the seat hot path: the seat counts come from
 * each partition's `availability` counters (one request per partition,
 * one after another, answered from the unit's per-section counters without
 * a scan), and revenue is the SOLD count of a section times its price (a
 * section has one price).  What the grid does not count comes from
 * PostgreSQL: sales per minute from the completed payments of the event's
 * bookings (written by the gateway when the provider confirms, so without
 * the drain's lag), and the conversion of holds into sales from the
 * write-behind tables (bookings that held seats, bookings paid; as of the
 * drain, typically 100 ms behind).  A section split across partitions is
 * summed by name.
 *
 * Blocking takes up to TG_BOOKING_SEATS_MAX seats of one partition off
 * sale in one request to its unit, all or nothing (the unit's seats_block:
 * a seat held or sold is 409 seat_taken and nothing is blocked); blocked
 * seats cannot be held and availability counts them as BLOCKED.
 * Unblocking puts blocked seats back on sale.  Seat ids are the API's
 * (partition << 32 | seat), as GET /api/seats gives them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "org.h"

/* ---- Block / unblock ------------------------------------------------------ */

typedef struct {
    uint64_t event_id;
    uint32_t partition_id;
    bool block;
    tg_wire_seat_ids seats;
    uint64_t api_ids[TG_BOOKING_SEATS_MAX];
} block_state;

static void block_audit(gw_req *r, block_state *s, const char *outcome)
{
    const gw_layout *l = gw_map_layout(r->gw, s->partition_id);
    uint32_t seat_nos[TG_BOOKING_SEATS_MAX];
    for (uint32_t i = 0; i < s->seats.count; i++) {
        seat_nos[i] = (l != NULL ? l->first_seat : 0) + s->seats.ids[i];
    }
    gw_audit(r, s->block ? "seats_block" : "seats_unblock", 0, s->event_id, seat_nos,
             l != NULL ? s->seats.count : 0, outcome, NULL);
}

static void block_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    block_state *s = r->state;
    block_audit(r, s, err == TG_OK ? "ok" : tg_errname(err));
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, s->partition_id);
        return;
    }
    json_t *ids = json_array();
    for (uint32_t i = 0; i < s->seats.count; i++) {
        json_array_append_new(ids, json_integer((json_int_t)s->api_ids[i]));
    }
    gw_reply_json(r, 200,
                  json_pack("{s:I,s:o,s:s}", "event_id", (json_int_t)s->event_id, "seat_ids", ids,
                            "status", s->block ? "BLOCKED" : "FREE"));
}

/* seat_ids: 1..16 distinct API ids, all of one of the event's partitions. */
static bool block_parse(gw_req *r, const gw_org_job *job, block_state *s)
{
    json_t *ids = json_object_get(r->body, "seat_ids");
    size_t n = json_is_array(ids) ? json_array_size(ids) : 0;
    if (n == 0 || n > TG_BOOKING_SEATS_MAX) {
        gw_reply_error(r, 400, ids == NULL ? "missing_field" : "invalid_field",
                       "seat_ids: expected an array of 1..%u seat ids", TG_BOOKING_SEATS_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(ids, i);
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        uint32_t pid = (uint32_t)((uint64_t)id >> 32);
        bool of_event = false;
        for (uint32_t k = 0; k < job->partition_count && id >= 0; k++) {
            of_event |= job->partitions[k] == pid;
        }
        if (id < 0 || !of_event || (i > 0 && pid != s->partition_id)) {
            gw_reply_error(r, 400, "invalid_field", "seat_ids[%zu]: %s", i,
                           id < 0 || !of_event ? "not a seat of this event"
                                               : "all seats must be of one partition (section)");
            return false;
        }
        s->partition_id = pid;
        s->api_ids[i] = (uint64_t)id;
        s->seats.ids[i] = (uint32_t)id;
    }
    s->seats.count = (uint32_t)n;
    return true;
}

static void block_then(gw_req *r, gw_org_job *job)
{
    block_state *s = gw_alloc(r, sizeof(*s));
    s->event_id = job->event_id;
    s->block = strcmp(job->action, "seats_block") == 0;
    r->state = s;
    if (!block_parse(r, job, s)) {
        gw_audit(r, job->action, 0, s->event_id, NULL, 0, "invalid_field", NULL);
        return;
    }
    tg_msg msg = {.type = s->block ? TG_WIRE_SEATS_BLOCK : TG_WIRE_SEATS_UNBLOCK};
    if (s->block) {
        msg.seats_block.partition_id = s->partition_id;
        msg.seats_block.seats = s->seats;
    } else {
        msg.seats_unblock.partition_id = s->partition_id;
        msg.seats_unblock.seats = s->seats;
    }
    tg_err err = gw_grid_send(r, s->partition_id, &msg, GW_SPACE_NONE, block_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, s->partition_id);
    }
}

/* The event must be published: a draft has no seats in the grid yet. */
static void published_partitions_run(PGconn *db, gw_org_job *job)
{
    char status[16];
    if (!gw_org_event_find(db, job, false, status, sizeof(status)) ||
        !gw_org_partitions_read(db, job)) {
        return;
    }
    if (strcmp(status, "draft") == 0 || job->partition_count == 0) {
        gw_org_fail(job, 409, "not_published",
                    "event %" PRIu64 " is not published: its seats are not in the grid yet",
                    job->event_id);
    }
}

void gw_on_org_seats_block(gw_req *r)
{
    gw_org_submit(r, "seats_block", published_partitions_run, block_then);
}

void gw_on_org_seats_unblock(gw_req *r)
{
    gw_org_submit(r, "seats_unblock", published_partitions_run, block_then);
}

/* ---- Sales ------------------------------------------------------------------ */

typedef struct {
    uint64_t event_id;
    json_t *answer;   /* built up: sections from PostgreSQL, counts added per partition */
    json_t *sections; /* answer.sections, borrowed */
    uint32_t partitions[GW_EVENT_PARTITIONS_MAX];
    uint32_t partition_count, next;
} sales_state;

static const char sales_sections_sql[] =
    "SELECT name, price_minor, currency FROM sections WHERE event_id = $1 ORDER BY section_idx";

static const char sales_minutes_sql[] =
    "SELECT to_char(date_trunc('minute', p.updated_at) AT TIME ZONE 'UTC',"
    "   'YYYY-MM-DD\"T\"HH24:MI:00\"Z\"'), count(*), sum(p.amount_minor), min(p.currency)"
    " FROM payments p WHERE p.status = 'completed' AND p.refund_status = 'none'"
    "   AND (p.booking_id >> 32) IN (SELECT partition_id FROM grid_partitions WHERE event_id = $1)"
    " GROUP BY 1 ORDER BY 1 DESC LIMIT 60"; /* the last 60 minutes that had sales */

static const char sales_conversion_sql[] =
    "SELECT (SELECT count(DISTINCT booking_id) FROM booking_seats WHERE event_id = $1),"
    "       (SELECT count(*) FROM bookings WHERE event_id = $1 AND status = 'paid')";

static json_t *sections_json(PGresult *res)
{
    json_t *a = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_array_append_new(a, json_pack("{s:s,s:I,s:s,s:i,s:i,s:i,s:i,s:I}", "name",
                                           PQgetvalue(res, i, 0), "price",
                                           (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10),
                                           "currency", PQgetvalue(res, i, 2), "sold", 0, "held", 0,
                                           "free", 0, "blocked", 0, "revenue", (json_int_t)0));
    }
    return a;
}

static json_t *minutes_json(PGresult *res)
{
    json_t *a = json_array();
    for (int i = PQntuples(res) - 1; i >= 0; i--) {
        json_array_append_new(
            a, json_pack("{s:s,s:I,s:I,s:s}", "minute", PQgetvalue(res, i, 0), "sales",
                         (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10), "amount",
                         (json_int_t)strtoll(PQgetvalue(res, i, 2), NULL, 10), "currency",
                         PQgetvalue(res, i, 3)));
    }
    return a;
}

static json_t *conversion_json(PGresult *res)
{
    long long held = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    long long paid = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    return json_pack("{s:I,s:I,s:o}", "bookings_with_holds", (json_int_t)held, "bookings_paid",
                     (json_int_t)paid, "rate",
                     held > 0 ? json_real((double)paid / (double)held) : json_null());
}

static void sales_run(PGconn *db, gw_org_job *job)
{
    published_partitions_run(db, job);
    if (job->status >= 300) {
        return;
    }
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, job->event_id);
    const char *const params[1] = {id};
    PGresult *sec = gw_org_query(db, job, "read the sections", sales_sections_sql, 1, params);
    PGresult *min =
        sec != NULL ? gw_org_query(db, job, "read sales per minute", sales_minutes_sql, 1, params)
                    : NULL;
    PGresult *conv =
        min != NULL ? gw_org_query(db, job, "read the conversion", sales_conversion_sql, 1, params)
                    : NULL;
    if (conv != NULL) {
        job->reply = json_pack("{s:I,s:o,s:o,s:o}", "event_id", (json_int_t)job->event_id,
                               "sections", sections_json(sec), "sales_per_minute",
                               minutes_json(min), "conversion", conversion_json(conv));
    }
    PQclear(sec);
    PQclear(min);
    PQclear(conv);
}

static void counts_add(json_t *sec, const tg_wire_counts *c, int64_t price)
{
    const struct {
        const char *key;
        uint32_t n;
    } add[] = {
        {"sold", c->by_state[TG_SEAT_SOLD]},
        {"held", c->by_state[TG_SEAT_SELECTED] + c->by_state[TG_SEAT_RESERVED]},
        {"free", c->by_state[TG_SEAT_FREE]},
        {"blocked", c->by_state[TG_SEAT_BLOCKED]},
    };
    for (size_t i = 0; i < sizeof(add) / sizeof(add[0]); i++) {
        json_int_t was = json_integer_value(json_object_get(sec, add[i].key));
        json_object_set_new(sec, add[i].key, json_integer(was + add[i].n));
    }
    json_int_t revenue = json_integer_value(json_object_get(sec, "revenue"));
    json_object_set_new(sec, "revenue",
                        json_integer(revenue + (json_int_t)c->by_state[TG_SEAT_SOLD] * price));
}

/* Adds a partition's per-section counts to the sections of the same name. */
static bool sales_add(sales_state *s, const gw_layout *l, const tg_msg *reply)
{
    const __typeof__(reply->availability_ok) *a = &reply->availability_ok;
    if (reply->type != TG_WIRE_AVAILABILITY_OK || a->section_count != l->section_count) {
        return false;
    }
    for (uint32_t k = 0; k < a->section_count; k++) {
        size_t i;
        json_t *sec;
        json_array_foreach(s->sections, i, sec)
        {
            if (strcmp(json_string_value(json_object_get(sec, "name")), l->sections[k].name) == 0) {
                counts_add(sec, &a->sections[k], l->sections[k].price_minor);
            }
        }
    }
    return true;
}

static void sales_totals(sales_state *s)
{
    static const char *const keys[] = {"sold", "held", "free", "blocked"};
    json_t *totals = json_object();
    for (size_t k = 0; k < 4; k++) {
        json_int_t sum = 0;
        size_t i;
        json_t *sec;
        json_array_foreach(s->sections, i, sec)
        {
            sum += json_integer_value(json_object_get(sec, keys[k]));
        }
        json_object_set_new(totals, keys[k], json_integer(sum));
    }
    json_object_set_new(s->answer, "totals", totals);
}

static void sales_next(gw_req *r);

static void sales_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    sales_state *s = r->state;
    uint32_t pid = s->partitions[s->next];
    const gw_layout *l = gw_map_layout(r->gw, pid);
    if (err != TG_OK) {
        gw_audit(r, "event_sales", 0, s->event_id, NULL, 0, tg_errname(err), NULL);
        gw_reply_grid_error(r, err, reply, pid);
        return;
    }
    if (l == NULL || !sales_add(s, l, reply)) {
        gw_audit(r, "event_sales", 0, s->event_id, NULL, 0, "unavailable", NULL);
        gw_reply_error_retry(r, 503, "unavailable", 1,
                             "partition %u is not in this gateway's map yet; retry", pid);
        return;
    }
    s->next++;
    sales_next(r);
}

static void sales_next(gw_req *r)
{
    sales_state *s = r->state;
    if (s->next == s->partition_count) {
        sales_totals(s);
        gw_audit(r, "event_sales", 0, s->event_id, NULL, 0, "ok", NULL);
        json_t *answer = s->answer;
        s->answer = NULL;
        gw_reply_json(r, 200, answer);
        return;
    }
    uint32_t pid = s->partitions[s->next];
    tg_msg msg = {.type = TG_WIRE_AVAILABILITY, .availability = {.partition_id = pid}};
    tg_err err = gw_grid_send(r, pid, &msg, GW_SPACE_COUNTS, sales_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, pid);
    }
}

/* The answer lives in the request's state until it is sent; a request that
 * goes away first drops it with its pool. */
static void sales_state_dispose(void *p)
{
    sales_state *s = p;
    json_decref(s->answer);
}

static void sales_then(gw_req *r, gw_org_job *job)
{
    sales_state *s = h2o_mem_alloc_shared(&r->h2o->pool, sizeof(*s), sales_state_dispose);
    memset(s, 0, sizeof(*s));
    s->event_id = job->event_id;
    s->answer = job->reply;
    job->reply = NULL;
    s->sections = json_object_get(s->answer, "sections");
    memcpy(s->partitions, job->partitions, sizeof(s->partitions));
    s->partition_count = job->partition_count;
    r->state = s;
    sales_next(r);
}

void gw_on_org_sales(gw_req *r)
{
    gw_org_submit(r, "event_sales", sales_run, sales_then);
}

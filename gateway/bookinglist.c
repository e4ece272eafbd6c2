/*
 * bookinglist.c — GET /api/bookings: the caller's bookings, newest first.
 *
 * PostgreSQL gives the persisted list (bookings and their open seats, one
 * page), then each booking still live in the grid (created, pending
 * payment) is read from its unit so that status, seats and deadline are
 * current rather than as of the last drain (see bookings.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tixgrid/log.h"

#define GW_LIST_PAGE_SIZE_MAX 100u

typedef struct {
    tg_wire_booking b;
    uint64_t event_id;
    uint32_t first_seat; /* the partition's first seat in its event */
    char currency[TG_CURRENCY_BYTES];
} listed;

typedef struct {
    uint64_t user_id, page, size;
    bool db_down; /* PostgreSQL unreachable: 503 */
    bool failed;  /* a statement refused: 500, logged */
    uint64_t total;
    uint32_t count;
    listed items[GW_LIST_PAGE_SIZE_MAX];
    uint32_t refreshing; /* next item to refresh from the grid */
} list_job;

static const char list_sql[] =
    "SELECT b.id, b.event_id, b.status, "
    "(extract(epoch FROM b.created_at) * 1000)::bigint, "
    "coalesce((extract(epoch FROM b.deadline) * 1000)::bigint, 0), b.version, "
    "(SELECT coalesce(array_agg(s.seat_no - p.first_seat ORDER BY s.seat_no), '{}') "
    "   FROM booking_seats s WHERE s.booking_id = b.id AND s.released_at IS NULL), "
    "count(*) OVER (), p.first_seat, e.currency "
    "FROM bookings b JOIN grid_partitions p USING (partition_id, event_id) "
    "JOIN events e ON e.id = b.event_id "
    "WHERE b.user_id = $1 ORDER BY b.created_at DESC, b.id DESC LIMIT $2 OFFSET $3";

static uint32_t status_parse(const char *s)
{
    for (uint32_t k = 1; k < TG_BOOKING_STATUS_COUNT; k++) {
        const char *name = tg_booking_status_name((tg_booking_status)k);
        if (name != NULL && strcmp(name, s) == 0) {
            return k;
        }
    }
    return TG_BOOKING_CANCELLED;
}

/* "{1,2,3}" into the seat list (at most TG_BOOKING_SEATS_MAX). */
static void seats_parse(const char *text, tg_wire_seat_ids *out)
{
    out->count = 0;
    for (const char *p = text; *p != '\0' && out->count < TG_BOOKING_SEATS_MAX; p++) {
        if (*p >= '0' && *p <= '9') {
            char *end;
            out->ids[out->count++] = (uint32_t)strtoul(p, &end, 10);
            p = end - 1;
        }
    }
}

static void list_run(PGconn *db, void *p)
{
    list_job *job = p;
    if (db == NULL) {
        job->db_down = true;
        return;
    }
    char user[24], limit[24], offset[24];
    snprintf(user, sizeof(user), "%llu", (unsigned long long)job->user_id);
    snprintf(limit, sizeof(limit), "%llu", (unsigned long long)job->size);
    snprintf(offset, sizeof(offset), "%llu", (unsigned long long)((job->page - 1) * job->size));
    const char *params[] = {user, limit, offset};
    PGresult *res = PQexecParams(db, list_sql, 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        job->db_down = PQstatus(db) != CONNECTION_OK;
        job->failed = !job->db_down;
        tg_log(job->failed ? TG_LOG_ERROR : TG_LOG_WARN, "bookings list: %s",
               PQresultErrorMessage(res));
        PQclear(res);
        return;
    }
    for (int i = 0; i < PQntuples(res) && job->count < GW_LIST_PAGE_SIZE_MAX; i++) {
        listed *it = &job->items[job->count++];
        it->b.booking_id = strtoull(PQgetvalue(res, i, 0), NULL, 10);
        it->event_id = strtoull(PQgetvalue(res, i, 1), NULL, 10);
        it->b.status = status_parse(PQgetvalue(res, i, 2));
        it->b.created_ms = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        it->b.deadline_ms = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        it->b.version = (uint32_t)strtoul(PQgetvalue(res, i, 5), NULL, 10);
        seats_parse(PQgetvalue(res, i, 6), &it->b.seats);
        job->total = strtoull(PQgetvalue(res, i, 7), NULL, 10);
        it->first_seat = (uint32_t)strtoul(PQgetvalue(res, i, 8), NULL, 10);
        snprintf(it->currency, sizeof(it->currency), "%s", PQgetvalue(res, i, 9));
    }
    bool empty = PQntuples(res) == 0;
    PQclear(res);
    if (empty && job->page > 1) { /* past the end: the total still counts */
        res = PQexecParams(db, "SELECT count(*) FROM bookings WHERE user_id = $1", 1, NULL,
                           params, NULL, NULL, 0);
        job->db_down = PQresultStatus(res) != PGRES_TUPLES_OK;
        job->total = job->db_down ? 0 : strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
}

static json_t *item_json(gw_gateway *gw, const listed *it)
{
    const gw_layout *l = gw_map_layout(gw, tg_booking_id_partition(it->b.booking_id));
    const char *status = tg_booking_status_name((tg_booking_status)it->b.status);
    json_t *seats = json_array();
    int64_t total = 0;
    for (uint32_t i = 0; i < it->b.seats.count; i++) {
        uint32_t seat = it->b.seats.ids[i];
        json_array_append_new(seats, l != NULL ? gw_seat_json(l, seat, NULL)
                                               : json_pack("{s:I}", "seat_no",
                                                           (json_int_t)(it->first_seat + seat)));
        uint32_t row = l != NULL ? gw_layout_row_of(l, seat) : 0;
        total += l != NULL && row < l->row_count ? l->sections[l->rows[row].section].price_minor
                                                 : 0;
    }
    return json_pack("{s:I,s:I,s:s,s:o,s:o,s:o,s:{s:I,s:s}}", "id",
                     (json_int_t)it->b.booking_id, "event_id", (json_int_t)it->event_id, "status",
                     status != NULL ? status : "unknown", "created_at",
                     gw_time_json(it->b.created_ms), "expires_at",
                     gw_time_json(it->b.deadline_ms), "seats", seats, "total", "amount",
                     (json_int_t)total, "currency", it->currency);
}

static void list_reply(gw_req *r, list_job *job)
{
    json_t *items = json_array();
    for (uint32_t i = 0; i < job->count; i++) {
        json_array_append_new(items, item_json(r->gw, &job->items[i]));
    }
    gw_reply_json(r, 200, json_pack("{s:I,s:I,s:I,s:o}", "page", (json_int_t)job->page,
                                    "pageSize", (json_int_t)job->size, "total",
                                    (json_int_t)job->total, "items", items));
}

static void refresh_next(gw_req *r);

static void refresh_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    list_job *job = r->state;
    listed *it = &job->items[job->refreshing++];
    if (err == TG_OK) {
        it->b = reply->booking_get_ok; /* the live state */
    }
    refresh_next(r); /* a unit that does not answer leaves the persisted state */
}

static void refresh_next(gw_req *r)
{
    list_job *job = r->state;
    while (job->refreshing < job->count) {
        const listed *it = &job->items[job->refreshing];
        uint32_t pid = tg_booking_id_partition(it->b.booking_id);
        bool live = it->b.status == TG_BOOKING_CREATED ||
                    it->b.status == TG_BOOKING_PENDING_PAYMENT;
        tg_msg msg = {.type = TG_WIRE_BOOKING_GET};
        msg.booking_get.booking_id = it->b.booking_id;
        msg.booking_get.user_id = r->who.user_id;
        if (live && gw_grid_send(r, pid, &msg, GW_SPACE_NONE, refresh_done) == TG_OK) {
            return;
        }
        job->refreshing++;
    }
    list_reply(r, job);
}

static void list_done(gw_req *r, void *p)
{
    list_job *job = p;
    if (job->db_down) {
        gw_reply_error_retry(r, 503, "database_unavailable", 1,
                             "the bookings history is unavailable; retry");
        return;
    }
    if (job->failed) {
        gw_reply_error(r, 500, "internal", "the bookings history could not be read");
        return;
    }
    list_job *copy = gw_alloc(r, sizeof(*copy)); /* the job is freed after this callback */
    *copy = *job;
    r->state = copy;
    refresh_next(r);
}

void gw_on_bookings_list(gw_req *r)
{
    list_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        gw_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    job->user_id = r->who.user_id;
    if (!gw_query_u64(r, "page", 1, 1000000, 1, &job->page) ||
        !gw_query_u64(r, "pageSize", 1, GW_LIST_PAGE_SIZE_MAX, 20, &job->size)) {
        free(job);
        return;
    }
    if (gw_db_submit(r, list_run, list_done, job, free) != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many requests waiting; retry");
    }
}

/*
 * seats.c — PATCH /api/seats/select, PATCH /api/seats/release, GET /api/seats.
 *
 * Select and release are one request to the booking's partition: the unit
 * decides with CAS (all or nothing) and checks that the booking is the
 * caller's (another user's booking is "not found", never "not yours").  The
 * gateway only validates, routes, translates and audits.
 *
 * Listing pages over live seats.  A page is found without scanning what
 * comes before it: the matching seats are cut into segments (one per
 * partition, per section when a section is asked for, per row when a row
 * is), whole segments and whole rows are skipped by their counts (seat
 * counts, or with a status filter the per-row counts of an availability
 * request), and only the row where the page starts is scanned by the unit
 * (seats_list with its filters).  Counts and seats are read at slightly
 * different moments, so under concurrent sales a page may overlap its
 * neighbour by a seat or miss one; `total` is exact for the moment it was
 * read.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tixgrid/log.h"

#define GW_SEATS_PAGE_MAX 20u
#define GW_SEAT_SEGMENTS_MAX 4096u

static bool booking_field(gw_req *r, tg_booking_id *id)
{
    uint64_t v;
    if (!gw_body_u64(r, "booking_id", 1, (UINT64_C(1) << 53) - 1, &v, NULL)) {
        return false;
    }
    if (!tg_booking_id_valid(v)) {
        gw_reply_error(r, 404, "not_found", "no such booking");
        return false;
    }
    *id = v;
    return true;
}

/* A seat id of the API that lies in l; replies 400 naming it otherwise. */
static bool seat_in(gw_req *r, const gw_layout *l, json_t *v, const char *field, uint32_t *seat)
{
    json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
    if (id < 0) {
        gw_reply_error(r, 400, "invalid_field", "%s: expected seat ids (whole numbers)", field);
        return false;
    }
    uint64_t u = (uint64_t)id;
    if ((u >> 32) != l->partition_id || (uint32_t)u >= l->seat_count) {
        gw_reply_error(r, 400, "invalid_field",
                       "%s: seat %llu is not a seat of this booking's event (or of its section "
                       "group)",
                       field, (unsigned long long)u);
        return false;
    }
    *seat = (uint32_t)u;
    return true;
}

/* {seat_id} or {seat_ids: [...]} into ids, ascending and distinct. */
static bool seat_list(gw_req *r, const gw_layout *l, tg_wire_seat_ids *ids)
{
    json_t *one = json_object_get(r->body, "seat_id");
    json_t *many = json_object_get(r->body, "seat_ids");
    if ((one != NULL) == (many != NULL)) {
        gw_reply_error(r, 400, "invalid_field", "give seat_id or seat_ids (one of them)");
        return false;
    }
    if (one != NULL) {
        ids->count = 1;
        return seat_in(r, l, one, "seat_id", &ids->ids[0]);
    }
    size_t n = json_is_array(many) ? json_array_size(many) : 0;
    if (n == 0 || n > TG_BOOKING_SEATS_MAX) {
        gw_reply_error(r, 400, "invalid_field", "seat_ids: expected 1..%u seat ids",
                       TG_BOOKING_SEATS_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t seat;
        if (!seat_in(r, l, json_array_get(many, i), "seat_ids", &seat)) {
            return false;
        }
        size_t k = ids->count;
        for (; k > 0 && ids->ids[k - 1] >= seat; k--) {
            if (ids->ids[k - 1] == seat) {
                gw_reply_error(r, 400, "invalid_field", "seat_ids: seat %llu is given twice",
                               (unsigned long long)gw_seat_api_id(l->partition_id, seat));
                return false;
            }
            ids->ids[k] = ids->ids[k - 1];
        }
        ids->ids[k] = seat;
        ids->count++;
    }
    return true;
}

static void seat_numbers(const gw_layout *l, const tg_wire_seat_ids *ids, uint32_t *out)
{
    for (uint32_t i = 0; i < ids->count; i++) {
        out[i] = l->first_seat + ids->ids[i];
    }
}

/* ---- select -------------------------------------------------------------- */

typedef struct {
    const gw_layout *layout;
    tg_booking_id booking;
    tg_wire_seat_ids asked; /* explicit seats (empty for best-available) */
    uint32_t quantity;
} select_state;

/* The audit's detail of a best-available hold: the quantity asked. */
static json_t *best_detail(const select_state *st)
{
    return st->asked.count == 0 ? json_pack("{s:i}", "quantity", (int)st->quantity) : NULL;
}

static void select_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    select_state *st = r->state;
    uint32_t nos[TG_BOOKING_SEATS_MAX];
    if (err != TG_OK) {
        seat_numbers(st->layout, &st->asked, nos);
        gw_audit(r, "seats_hold", st->booking, st->layout->event_id, nos, st->asked.count,
                 tg_errname(err), best_detail(st));
        atomic_fetch_add_explicit(&r->worker->metrics.holds_failed, 1, memory_order_relaxed);
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    const tg_wire_seat_ids *held = reply->type == TG_WIRE_SEATS_HOLD_OK
                                       ? &reply->seats_hold_ok.seats
                                       : &reply->seats_hold_best_ok.seats;
    int64_t deadline = reply->type == TG_WIRE_SEATS_HOLD_OK ? reply->seats_hold_ok.deadline_ms
                                                            : reply->seats_hold_best_ok.deadline_ms;
    /* The audit names the seats the request named, not the whole cart the
     * reply lists; best available named none, so it records the cart it
     * left and the quantity asked. */
    const tg_wire_seat_ids *named = st->asked.count > 0 ? &st->asked : held;
    seat_numbers(st->layout, named, nos);
    gw_audit(r, "seats_hold", st->booking, st->layout->event_id, nos, named->count, "ok",
             best_detail(st));
    atomic_fetch_add_explicit(&r->worker->metrics.holds_ok, 1, memory_order_relaxed);
    gw_reply_json(r, 200, json_pack("{s:I,s:o,s:s,s:o}", "booking_id", (json_int_t)st->booking,
                                    "seats", gw_seats_json(st->layout, held), "status", "SELECTED",
                                    "expires_at", gw_time_json(deadline)));
}

/* section: a name of the layout, or its index; -1 when absent. */
static bool section_field(gw_req *r, const gw_layout *l, int32_t *out)
{
    json_t *v = json_object_get(r->body, "section");
    *out = -1;
    if (v == NULL || json_is_null(v)) {
        return true;
    }
    for (uint32_t i = 0; json_is_string(v) && i < l->section_count; i++) {
        if (strcmp(l->sections[i].name, json_string_value(v)) == 0) {
            *out = (int32_t)i;
        }
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) < (json_int_t)l->section_count) {
        *out = (int32_t)json_integer_value(v);
    }
    if (*out < 0) {
        gw_reply_error(r, 400, "invalid_field", "section: not a section of this booking's event");
        return false;
    }
    return true;
}

static bool select_best(gw_req *r, select_state *st, tg_msg *msg)
{
    uint64_t quantity;
    bool adjacent = false, has_adjacent;
    int32_t section;
    if (!gw_body_u64(r, "quantity", 1, TG_BOOKING_SEATS_MAX, &quantity, NULL) ||
        !gw_body_bool(r, "adjacent", &adjacent, &has_adjacent) ||
        !section_field(r, st->layout, &section)) {
        return false;
    }
    st->quantity = (uint32_t)quantity;
    msg->type = TG_WIRE_SEATS_HOLD_BEST;
    msg->seats_hold_best.booking_id = st->booking;
    msg->seats_hold_best.user_id = r->who.user_id;
    msg->seats_hold_best.quantity = st->quantity;
    msg->seats_hold_best.section = section;
    msg->seats_hold_best.adjacent_only = adjacent;
    return true;
}

void gw_on_seats_select(gw_req *r)
{
    select_state *st = r->state = gw_alloc(r, sizeof(select_state));
    if (!booking_field(r, &st->booking)) {
        return;
    }
    if (!gw_audit_admit(r)) {
        return;
    }
    uint32_t pid = tg_booking_id_partition(st->booking);
    st->layout = gw_map_layout(r->gw, pid);
    if (st->layout == NULL) {
        gw_reply_error(r, 404, "not_found", "no such booking");
        return;
    }
    tg_msg msg = {0};
    if (json_object_get(r->body, "quantity") != NULL) {
        if (!select_best(r, st, &msg)) {
            return;
        }
    } else {
        if (!seat_list(r, st->layout, &st->asked)) {
            return;
        }
        msg.type = TG_WIRE_SEATS_HOLD;
        msg.seats_hold.booking_id = st->booking;
        msg.seats_hold.user_id = r->who.user_id;
        msg.seats_hold.seats = st->asked;
    }
    tg_err err = gw_grid_send(r, pid, &msg, GW_SPACE_NONE, select_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, pid);
    }
}

/* ---- release ------------------------------------------------------------- */

typedef struct {
    const gw_layout *layout;
    tg_booking_id booking; /* 0 until known */
    tg_wire_seat_ids seats;
    bool by_seat; /* the seed's {seat_id}: the holder was looked up */
} release_state;

static void release_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    release_state *st = r->state;
    uint32_t nos[TG_BOOKING_SEATS_MAX];
    seat_numbers(st->layout, &st->seats, nos);
    gw_audit(r, "seats_release", st->booking, st->layout->event_id, nos, st->seats.count,
             err == TG_OK ? "ok" : tg_errname(err), NULL);
    if (st->by_seat && (err == TG_ENOT_FOUND || err == TG_ESEAT_NOT_HELD)) {
        gw_reply_error(r, 409, "seat_not_held", "seat %llu is not held by one of your bookings",
                       (unsigned long long)gw_seat_api_id(st->layout->partition_id,
                                                          st->seats.ids[0]));
        return;
    }
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    gw_reply_json(r, 200, json_pack("{s:I,s:o,s:s}", "booking_id", (json_int_t)st->booking,
                                    "released", gw_seats_json(st->layout, &st->seats), "status",
                                    "FREE"));
}

static void release_send(gw_req *r)
{
    release_state *st = r->state;
    tg_msg msg = {.type = TG_WIRE_SEATS_RELEASE};
    msg.seats_release.booking_id = st->booking;
    msg.seats_release.user_id = r->who.user_id;
    msg.seats_release.seats = st->seats;
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, release_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
    }
}

/* The seed's {seat_id} names no booking: the seat's word names its holder,
 * and the unit still checks that the holder is the caller's booking. */
static void holder_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    release_state *st = r->state;
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    uint64_t word = reply->seat_get_ok.seat.word;
    tg_seat_state state = tg_seat_word_state(word);
    if (state != TG_SEAT_SELECTED && state != TG_SEAT_RESERVED) {
        gw_reply_error(r, 409, "seat_not_held", "seat %llu is not held by one of your bookings",
                       (unsigned long long)gw_seat_api_id(st->layout->partition_id,
                                                          st->seats.ids[0]));
        return;
    }
    st->booking = tg_booking_id_make(st->layout->partition_id, tg_seat_word_booking(word));
    st->by_seat = true;
    release_send(r);
}

void gw_on_seats_release(gw_req *r)
{
    release_state *st = r->state = gw_alloc(r, sizeof(release_state));
    bool has_booking = json_object_get(r->body, "booking_id") != NULL;
    json_t *seat = json_object_get(r->body, "seat_id");
    if (!has_booking && json_object_get(r->body, "seat_ids") != NULL) {
        gw_reply_error(r, 400, "missing_field", "booking_id is required with seat_ids");
        return;
    }
    if (has_booking && !booking_field(r, &st->booking)) {
        return;
    }
    uint32_t pid = has_booking ? tg_booking_id_partition(st->booking)
                               : json_is_integer(seat) && json_integer_value(seat) >= 0
                                     ? (uint32_t)((uint64_t)json_integer_value(seat) >> 32)
                                     : 0;
    st->layout = gw_map_layout(r->gw, pid);
    if (st->layout == NULL && !has_booking && !json_is_integer(seat)) {
        gw_reply_error(r, 400, "invalid_field", "give booking_id with seat_ids, or seat_id");
        return;
    }
    if (st->layout == NULL) {
        gw_reply_error(r, 404, "not_found", has_booking ? "no such booking" : "no such seat");
        return;
    }
    if (!seat_list(r, st->layout, &st->seats)) {
        return;
    }
    if (has_booking) {
        release_send(r);
        return;
    }
    tg_msg msg = {.type = TG_WIRE_SEAT_GET, .seat_get = {.partition_id = pid,
                                                         .seat_id = st->seats.ids[0]}};
    tg_err err = gw_grid_send(r, pid, &msg, GW_SPACE_NONE, holder_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, pid);
    }
}

/*
 * bookings.c — POST /api/bookings, GET /api/bookings[/{id}],
 * PATCH /api/bookings/cancel (the payment routes are payments.c's).
 *
 * A booking lives in one partition (its id says which), so create, read and
 * cancel are one request to that partition's unit, which checks that the
 * booking is the caller's.  The caller's list of bookings is the one read
 * that needs PostgreSQL (the grid keeps no per-user index): the persisted
 * bookings, newest first, each still live one (created, pending payment)
 * refreshed from the grid so that its status and seats are current.  A
 * booking appears in the list once the write-behind drain has persisted it,
 * typically within a tenth of a second of its creation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define GW_BOOKINGS_PAGE_SIZE_MAX 100u

static const char *status_name(uint32_t status)
{
    const char *s = tg_booking_status_name((tg_booking_status)status);
    return s != NULL ? s : "unknown";
}

/* A booking as the API shows it, with its seats and their total price. */
static json_t *booking_json(const gw_layout *l, const tg_wire_booking *b)
{
    int64_t total = 0;
    for (uint32_t i = 0; i < b->seats.count; i++) {
        uint32_t row = gw_layout_row_of(l, b->seats.ids[i]);
        total += row < l->row_count ? l->sections[l->rows[row].section].price_minor : 0;
    }
    const char *currency = l->section_count > 0 ? l->sections[0].currency : "EUR";
    return json_pack("{s:I,s:I,s:s,s:o,s:o,s:o,s:{s:I,s:s}}", "id", (json_int_t)b->booking_id,
                     "event_id", (json_int_t)l->event_id, "status", status_name(b->status),
                     "created_at", gw_time_json(b->created_ms), "expires_at",
                     gw_time_json(b->deadline_ms), "seats", gw_seats_json(l, &b->seats), "total",
                     "amount", (json_int_t)total, "currency", currency);
}

static bool booking_id_field(gw_req *r, tg_booking_id *id, const gw_layout **l)
{
    uint64_t v;
    if (!gw_body_u64(r, "booking_id", 1, (UINT64_C(1) << 53) - 1, &v, NULL)) {
        return false;
    }
    *id = v;
    *l = tg_booking_id_valid(v) ? gw_map_layout(r->gw, tg_booking_id_partition(v)) : NULL;
    if (*l == NULL) {
        gw_reply_error(r, 404, "not_found", "no such booking");
        return false;
    }
    return true;
}

/* ---- create -------------------------------------------------------------- */

typedef struct {
    const gw_layout *layout;
} create_state;

static void create_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    create_state *st = r->state;
    tg_booking_id id = err == TG_OK ? reply->booking_create_ok.booking_id : 0;
    gw_audit(r, "booking_create", id, st->layout->event_id, NULL, 0,
             err == TG_OK ? "ok" : tg_errname(err), NULL);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    gw_reply_json(r, 201, booking_json(st->layout, &reply->booking_create_ok));
}

/* The partition holding the section, or the event's only one. */
static const gw_layout *partition_pick(gw_req *r, const gw_layout *const *ls, uint32_t n)
{
    json_t *section = json_object_get(r->body, "section");
    if (section == NULL || json_is_null(section)) {
        if (n == 1) {
            return ls[0];
        }
        char names[512];
        size_t used = 0;
        names[0] = '\0';
        for (uint32_t p = 0; p < n; p++) {
            for (uint32_t s = 0; s < ls[p]->section_count && used < sizeof(names); s++) {
                used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
                                         used > 0 ? ", " : "", ls[p]->sections[s].name);
            }
        }
        gw_reply_error(r, 400, "section_required",
                       "section: this event is sold in several parts; choose one of: %s", names);
        return NULL;
    }
    for (uint32_t p = 0; json_is_string(section) && p < n; p++) {
        for (uint32_t s = 0; s < ls[p]->section_count; s++) {
            if (strcmp(ls[p]->sections[s].name, json_string_value(section)) == 0) {
                return ls[p];
            }
        }
    }
    gw_reply_error(r, 400, "invalid_field", "section: not a section of this event");
    return NULL;
}

void gw_on_booking_create(gw_req *r)
{
    create_state *st = r->state = gw_alloc(r, sizeof(create_state));
    uint64_t event_id;
    if (!gw_body_u64(r, "event_id", 1, (UINT64_C(1) << 53) - 1, &event_id, NULL)) {
        return;
    }
    if (!gw_audit_admit(r)) {
        return;
    }
    const gw_layout *ls[GW_EVENT_PARTITIONS_MAX];
    uint32_t n = gw_map_event(r->gw, event_id, ls);
    if (n == 0) {
        gw_reply_error(r, 404, "not_found", "no event %llu on sale", (unsigned long long)event_id);
        return;
    }
    if (!gw_map_on_sale(r->gw, event_id)) {
        gw_reply_error(r, 409, "sale_closed",
                       "event %llu is not on sale (not yet open, or closed)",
                       (unsigned long long)event_id);
        return;
    }
    if ((st->layout = partition_pick(r, ls, n)) == NULL) {
        return;
    }
    tg_msg msg = {.type = TG_WIRE_BOOKING_CREATE};
    msg.booking_create.partition_id = st->layout->partition_id;
    msg.booking_create.user_id = r->who.user_id;
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, create_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
    }
}

/* ---- get ----------------------------------------------------------------- */

typedef struct {
    const gw_layout *layout;
    tg_booking_id id;
} one_state;

static void get_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    one_state *st = r->state;
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    gw_reply_json(r, 200, booking_json(st->layout, &reply->booking_get_ok));
}

static void booking_read(gw_req *r, tg_booking_id id, gw_grid_done done)
{
    one_state *st = r->state = gw_alloc(r, sizeof(one_state));
    st->id = id;
    st->layout = tg_booking_id_valid(id) ? gw_map_layout(r->gw, tg_booking_id_partition(id)) : NULL;
    if (st->layout == NULL) {
        gw_reply_error(r, 404, "not_found", "no such booking");
        return;
    }
    tg_msg msg = {.type = TG_WIRE_BOOKING_GET};
    msg.booking_get.booking_id = id;
    msg.booking_get.user_id = r->who.user_id;
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
    }
}

void gw_on_booking_get(gw_req *r)
{
    booking_read(r, r->params[0], get_done);
}

/* ---- cancel -------------------------------------------------------------- */

static void cancel_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    one_state *st = r->state;
    gw_audit(r, "booking_cancel", st->id, st->layout->event_id, NULL, 0,
             err == TG_OK ? "ok" : tg_errname(err), NULL);
    if (err == TG_EBOOKING_STATE) {
        gw_reply_error(r, 409, "booking_state",
                       "this booking can no longer be cancelled (paid, or already ended)");
        return;
    }
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, st->layout->partition_id);
        return;
    }
    gw_reply_json(r, 200, json_pack("{s:I,s:s}", "booking_id", (json_int_t)st->id, "status",
                                    "cancelled"));
}

void gw_on_booking_cancel(gw_req *r)
{
    one_state *st = r->state = gw_alloc(r, sizeof(one_state));
    if (!booking_id_field(r, &st->id, &st->layout)) {
        return;
    }
    if (!gw_audit_admit(r)) {
        return;
    }
    tg_msg msg = {.type = TG_WIRE_BOOKING_CANCEL};
    msg.booking_cancel.booking_id = st->id;
    msg.booking_cancel.user_id = r->who.user_id;
    tg_err err = gw_grid_send(r, st->layout->partition_id, &msg, GW_SPACE_NONE, cancel_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, st->layout->partition_id);
    }
}

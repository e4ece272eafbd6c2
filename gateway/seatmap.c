/*
 * seatmap.c — GET /api/events/{id}/seatmap: every seat's state of an event
 * in one compact answer, served from the worker's partition snapshots
 * (snap.c), never by asking a unit per request.
 *
 * The body (schemas/openapi.yaml) carries the states as base64 of 4-bit
 * values, seat k of the event in byte k >> 1 (low nibble for even k), and
 * the layout (partitions, sections with their rows) needed to draw it.
 * `version` is the sum of the partitions' snapshot sequences: each only
 * rises, so the sum rises with every change the map shows.  The ETag is
 * "<event>-<version>", with "-unknown" appended while some partition's unit
 * is unreachable (its seats are then 15, UNKNOWN): a client that sends it
 * back in If-None-Match gets 304 and no body.
 *
 * Cost.  The layout part of the body never changes for an event, so each
 * worker renders it once; the states part is rendered once per version.
 * Both live in a small per-worker table (GW_SEATMAP_CACHE_EVENTS entries;
 * a full table replaces its oldest entry), so a crowd polling an unchanged
 * map costs a copy, or nothing with If-None-Match.
 *
 * A partition the worker did not follow yet is subscribed to and fetched on
 * the first request, which waits for that fetch (bounded by the grid
 * timeout); a partition whose fetch failed and that was never seen answers
 * 503 with Retry-After.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "snap.h"
#include "tixgrid/assert.h"

#define GW_SEATMAP_CACHE_EVENTS 16u
/* Re-runs of a request that waited for fetches: one per partition, and one
 * more. */
#define GW_SEATMAP_WAITS_MAX (GW_EVENT_PARTITIONS_MAX + 1u)

typedef struct {
    uint64_t event_id; /* 0: empty */
    uint64_t used;     /* for replacing the oldest */
    char *layout_json; /* "\"partitions\":[...],\"sections\":[...]" */
    char etag[64];     /* of body; "" none yet */
    char *body;
    size_t body_len;
} seatmap_entry;

typedef struct {
    seatmap_entry entries[GW_SEATMAP_CACHE_EVENTS];
    uint64_t clock;
} seatmap_cache;

typedef struct {
    gw_snap_waiter wait; /* first: r->state points at both */
    uint32_t waits;
} seatmap_state;

static _Thread_local seatmap_cache cache; /* one per loop thread */

/* ---- The layout part (once per event and worker) ---------------------------- */

static json_t *row_json(const gw_layout *l, const gw_row *w)
{
    return json_pack("{s:s%,s:I,s:I}", "name", w->name, strnlen(w->name, TG_NAME_BYTES),
                     "first_seat", (json_int_t)(l->first_seat + w->seat_first), "seat_count",
                     (json_int_t)w->seat_count);
}

/* Sections and rows split by a partition boundary are one: the last of a
 * partition and the first of the next share a name (events.c merges the
 * same way). */
static void sections_add(json_t *sections, const gw_layout *l)
{
    for (uint32_t i = 0; i < l->section_count; i++) {
        const gw_section *s = &l->sections[i];
        json_t *last = json_array_get(sections, json_array_size(sections) - 1);
        bool continued =
            i == 0 && last != NULL &&
            strncmp(json_string_value(json_object_get(last, "name")), s->name, TG_NAME_BYTES) == 0;
        if (!continued) {
            last = json_pack("{s:I,s:s%,s:I,s:s%,s:I,s:I,s:[]}", "index",
                             (json_int_t)json_array_size(sections), "name", s->name,
                             strnlen(s->name, TG_NAME_BYTES), "price", (json_int_t)s->price_minor,
                             "currency", s->currency, strnlen(s->currency, TG_CURRENCY_BYTES),
                             "first_seat", (json_int_t)(l->first_seat + s->seat_first),
                             "seat_count", (json_int_t)0, "rows");
            json_array_append_new(sections, last);
        }
        json_object_set_new(
            last, "seat_count",
            json_integer(json_integer_value(json_object_get(last, "seat_count")) + s->seat_count));
        json_t *rows = json_object_get(last, "rows");
        for (uint32_t j = s->row_first; j < s->row_first + s->row_count; j++) {
            const gw_row *w = &l->rows[j];
            json_t *prev = json_array_get(rows, json_array_size(rows) - 1);
            if (continued && j == s->row_first && prev != NULL &&
                strncmp(json_string_value(json_object_get(prev, "name")), w->name, TG_NAME_BYTES) ==
                    0) {
                json_object_set_new(
                    prev, "seat_count",
                    json_integer(json_integer_value(json_object_get(prev, "seat_count")) +
                                 w->seat_count));
            } else {
                json_array_append_new(rows, row_json(l, w));
            }
        }
    }
}

static char *layout_render(const gw_layout *const *layouts, uint32_t count)
{
    json_t *doc = json_pack("{s:[],s:[]}", "partitions", "sections");
    if (doc == NULL) {
        return NULL;
    }
    for (uint32_t p = 0; p < count; p++) {
        const gw_layout *l = layouts[p];
        json_array_append_new(
            json_object_get(doc, "partitions"),
            json_pack("{s:I,s:I,s:I}", "partition_id", (json_int_t)l->partition_id, "first_seat",
                      (json_int_t)l->first_seat, "seat_count", (json_int_t)l->seat_count));
        sections_add(json_object_get(doc, "sections"), l);
    }
    char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (text == NULL) {
        return NULL;
    }
    /* Without the outer braces: the body wraps it. */
    size_t n = strlen(text);
    memmove(text, text + 1, n - 2);
    text[n - 2] = '\0';
    return text;
}

static seatmap_entry *entry_for(uint64_t event_id)
{
    seatmap_entry *victim = &cache.entries[0];
    for (uint32_t i = 0; i < GW_SEATMAP_CACHE_EVENTS; i++) {
        seatmap_entry *e = &cache.entries[i];
        if (e->event_id == event_id) {
            e->used = ++cache.clock;
            return e;
        }
        if (e->used < victim->used) {
            victim = e;
        }
    }
    free(victim->layout_json);
    free(victim->body);
    *victim = (seatmap_entry){.event_id = event_id, .used = ++cache.clock};
    return victim;
}

/* ---- The states part (once per version) ------------------------------------- */

static void states_copy(uint8_t *out, const gw_snap *snap)
{
    const gw_layout *l = snap->layout;
    if (!snap->unknown && l->first_seat % 2 == 0) {
        memcpy(out + l->first_seat / 2, snap->states, l->seat_count / 2);
        if (l->seat_count % 2 != 0) {
            uint32_t last = l->seat_count - 1;
            gw_snap_put(out, l->first_seat + last, gw_snap_get(snap->states, last));
        }
        return;
    }
    for (uint32_t k = 0; k < l->seat_count; k++) {
        gw_snap_put(out, l->first_seat + k,
                    snap->unknown ? GW_SNAP_UNKNOWN : gw_snap_get(snap->states, k));
    }
}

static bool body_render(seatmap_entry *e, gw_snap *const *snaps, uint32_t count,
                        uint64_t seat_count, uint64_t version)
{
    size_t bytes = (size_t)(seat_count + 1) / 2;
    size_t b64_len = sodium_base64_encoded_len(bytes, sodium_base64_VARIANT_ORIGINAL);
    size_t cap = 256 + b64_len + strlen(e->layout_json);
    uint8_t *bin = calloc(bytes + 1, 1);
    char *body = malloc(cap);
    if (bin == NULL || body == NULL) {
        free(bin);
        free(body);
        return false;
    }
    for (uint32_t p = 0; p < count; p++) {
        states_copy(bin, snaps[p]);
    }
    int n = snprintf(body, cap,
                     "{\"event_id\":%" PRIu64 ",\"version\":%" PRIu64 ",\"seat_count\":%" PRIu64
                     ",\"encoding\":\"nibbles\",\"states\":\"",
                     e->event_id, version, seat_count);
    TG_ASSERT(n > 0 && (size_t)n < 256);
    sodium_bin2base64(body + n, b64_len, bin, bytes, sodium_base64_VARIANT_ORIGINAL);
    size_t len = (size_t)n + strlen(body + n);
    len += (size_t)snprintf(body + len, cap - len, "\",%s}", e->layout_json);
    free(bin);
    free(e->body);
    e->body = body;
    e->body_len = len;
    return true;
}

/* ---- The request -------------------------------------------------------------- */

bool gw_etag_matches(gw_req *r, const char *etag)
{
    size_t len;
    const char *v = gw_header(r, "if-none-match", &len);
    if (v == NULL) {
        return false;
    }
    size_t n = strlen(etag);
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '*' || (len - i >= n && memcmp(v + i, etag, n) == 0)) {
            return true;
        }
    }
    return false;
}

static void seatmap_answer(gw_req *r, const gw_layout *const *layouts, gw_snap *const *snaps,
                           uint32_t count)
{
    uint64_t event_id = r->params[0], version = 0, seat_count = 0;
    bool unknown = false;
    for (uint32_t p = 0; p < count; p++) {
        version += snaps[p]->seq;
        seat_count += layouts[p]->seat_count;
        unknown = unknown || snaps[p]->unknown;
    }
    char etag[GW_ETAG_BYTES];
    gw_event_etag(etag, event_id, snaps, count, unknown ? "-unknown" : "");
    gw_reply_header(r, "etag", etag);
    gw_reply_header(r, "cache-control", "no-cache");
    if (gw_etag_matches(r, etag)) {
        gw_reply_raw(r, 304, "application/json", "", 0);
        return;
    }
    seatmap_entry *e = entry_for(event_id);
    if (e->layout_json == NULL) {
        e->layout_json = layout_render(layouts, count);
    }
    if (e->layout_json == NULL ||
        (strcmp(e->etag, etag) != 0 && !body_render(e, snaps, count, seat_count, version))) {
        e->etag[0] = '\0';
        gw_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    snprintf(e->etag, sizeof(e->etag), "%s", etag);
    gw_reply_raw(r, 200, "application/json", e->body, e->body_len);
}

static void seatmap_serve(gw_req *r);

void gw_on_seatmap(gw_req *r)
{
    uint64_t id = r->params[0];
    if (id == 0 || id > TG_WIRE_ID_MAX) {
        gw_reply_error(r, 404, "not_found", "event %" PRIu64 " not found", id);
        return;
    }
    seatmap_serve(r);
}

uint32_t gw_event_layouts(gw_req *r, const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX])
{
    uint64_t id = r->params[0];
    uint32_t count = gw_map_event(r->gw, id, layouts);
    if (count == 0) {
        gw_event_not_placed(r, id);
        return 0;
    }
    uint64_t next_seat = 0;
    for (uint32_t p = 0; p < count; p++) {
        if (layouts[p]->first_seat != next_seat) {
            gw_reply_error_retry(r, 503, "unavailable", 1,
                                 "event %" PRIu64 " is not fully placed in the grid yet", id);
            return 0;
        }
        next_seat += layouts[p]->seat_count;
    }
    return count;
}

uint32_t gw_event_snaps(gw_req *r, const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX],
                        gw_snap *snaps[GW_EVENT_PARTITIONS_MAX], void (*again)(gw_req *r))
{
    uint32_t count = gw_event_layouts(r, layouts);
    if (count == 0) {
        return 0;
    }
    seatmap_state *st = r->state;
    for (uint32_t p = 0; p < count; p++) {
        snaps[p] = gw_snap_follow(r->worker, layouts[p]);
        if (snaps[p] == NULL) {
            gw_reply_error_retry(r, 503, "unavailable", 1,
                                 "this gateway follows too many partitions to add %" PRIu32,
                                 layouts[p]->partition_id);
            return 0;
        }
        if (snaps[p]->ready) {
            continue;
        }
        if (st == NULL) {
            st = r->state = gw_alloc(r, sizeof(*st));
        }
        if (st->waits < GW_SEATMAP_WAITS_MAX && gw_snap_wait(snaps[p], r, &st->wait, again)) {
            st->waits++;
            return 0;
        }
        gw_reply_error_retry(r, 503, "unavailable", 1,
                             "partition %" PRIu32 " has no reachable unit; try again shortly",
                             layouts[p]->partition_id);
        return 0;
    }
    return count;
}

static void seatmap_serve(gw_req *r)
{
    const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX];
    gw_snap *snaps[GW_EVENT_PARTITIONS_MAX];
    uint32_t count = gw_event_snaps(r, layouts, snaps, seatmap_serve);
    if (count > 0) {
        seatmap_answer(r, layouts, snaps, count);
    }
}

/*
 * availability.c — GET /api/events/{id}/availability: an event's seat
 * counts per state, in total, per section and per row, counted from the
 * worker's partition snapshots (snap.c), never by asking a unit per
 * request.  The live stream's availability messages (live.c) are counted
 * here too, so both say the same.
 *
 * `version` is /seatmap's: the sum of the partitions' snapshot sequences.
 * The body is rendered once per version and kept in a small per-worker
 * table (GW_AVAILABILITY_CACHE_EVENTS entries, the oldest replaced), so a
 * crowd polling an unchanged event costs a copy; the ETag is
 * "<event>-<version>" and If-None-Match with it costs a comparison (304).
 *
 * Counting is one pass over the nibbles, paid once per version and worker.
 * Counters kept up to date by every change were rejected: a snapshot
 * fetched again after a gap replaces all its seats at once, and the rows
 * are rendered again at each version anyway.
 *
 * A snapshot lags the unit by a publisher tick and a hand-off: a client that
 * holds a seat and reads this at once may not see its own hold yet.  Where
 * a reader needs the grid's exact state it waits for a version at least the
 * one it expects (tests) or asks the unit (organizer sales, sales.c).
 *
 * While a partition's unit is unreachable (its seats UNKNOWN) the counts
 * are not known: 503 with Retry-After, as when no snapshot can be had.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap.h"

#define GW_AVAILABILITY_CACHE_EVENTS 16u

typedef struct {
    uint64_t event_id; /* 0: empty */
    uint64_t used;     /* for replacing the oldest */
    char etag[64];     /* of body; "" none yet */
    char *body;
    size_t body_len;
} availability_entry;

typedef struct {
    availability_entry entries[GW_AVAILABILITY_CACHE_EVENTS];
    uint64_t clock;
} availability_cache;

static _Thread_local availability_cache cache; /* one per loop thread */

/* ---- Counting ------------------------------------------------------------------ */

static void partition_count(const gw_snap *snap, gw_partition_counts *out)
{
    const gw_layout *l = snap->layout;
    out->version = snap->seq;
    for (uint32_t j = 0; j < l->row_count; j++) {
        const gw_row *w = &l->rows[j];
        tg_wire_counts *rc = &out->rows[j];
        for (uint32_t k = w->seat_first; k < w->seat_first + w->seat_count; k++) {
            rc->by_state[gw_snap_get(snap->states, k)]++;
        }
        for (uint32_t st = 0; st < TG_SEAT_STATE_COUNT; st++) {
            out->sections[w->section].by_state[st] += rc->by_state[st];
            out->totals.by_state[st] += rc->by_state[st];
        }
    }
}

char *gw_snap_availability(uint64_t event_id, const gw_layout *const *layouts,
                           gw_snap *const *snaps, uint32_t count, bool with_rows, size_t *len)
{
    gw_partition_counts counts[GW_EVENT_PARTITIONS_MAX];
    uint32_t rows = 0;
    for (uint32_t p = 0; p < count; p++) {
        if (snaps[p]->unknown || !snaps[p]->ready) {
            return NULL; /* counts of an unreachable unit are not known */
        }
        rows += layouts[p]->row_count;
    }
    tg_wire_counts *row_counts = calloc(rows + 1, sizeof(*row_counts));
    if (row_counts == NULL) {
        return NULL;
    }
    memset(counts, 0, sizeof(counts[0]) * count);
    for (uint32_t p = 0, at = 0; p < count; p++) {
        counts[p].rows = row_counts + at;
        at += layouts[p]->row_count;
        partition_count(snaps[p], &counts[p]);
    }
    char *body = gw_availability_render(event_id, layouts, count, counts, with_rows, len);
    free(row_counts);
    return body;
}

/* ---- The request ------------------------------------------------------------------ */

static availability_entry *entry_for(uint64_t event_id)
{
    availability_entry *victim = &cache.entries[0];
    for (uint32_t i = 0; i < GW_AVAILABILITY_CACHE_EVENTS; i++) {
        availability_entry *e = &cache.entries[i];
        if (e->event_id == event_id) {
            e->used = ++cache.clock;
            return e;
        }
        if (e->used < victim->used) {
            victim = e;
        }
    }
    free(victim->body);
    *victim = (availability_entry){.event_id = event_id, .used = ++cache.clock};
    return victim;
}

static void availability_answer(gw_req *r, const gw_layout *const *layouts, gw_snap *const *snaps,
                                uint32_t count)
{
    uint64_t event_id = r->params[0];
    for (uint32_t p = 0; p < count; p++) {
        if (snaps[p]->unknown) {
            gw_reply_error_retry(r, 503, "unavailable", 1,
                                 "partition %" PRIu32 " has no reachable unit; try again shortly",
                                 layouts[p]->partition_id);
            return;
        }
    }
    char etag[GW_ETAG_BYTES];
    gw_event_etag(etag, event_id, snaps, count, "");
    gw_reply_header(r, "etag", etag);
    gw_reply_header(r, "cache-control", "no-cache");
    if (gw_etag_matches(r, etag)) {
        gw_reply_raw(r, 304, "application/json", "", 0);
        return;
    }
    availability_entry *e = entry_for(event_id);
    if (strcmp(e->etag, etag) != 0) {
        size_t len = 0;
        char *body = gw_snap_availability(event_id, layouts, snaps, count, true, &len);
        if (body == NULL) {
            e->etag[0] = '\0';
            gw_reply_error(r, 500, "internal", "out of memory");
            return;
        }
        free(e->body);
        e->body = body;
        e->body_len = len;
        snprintf(e->etag, sizeof(e->etag), "%s", etag);
    }
    gw_reply_raw(r, 200, "application/json", e->body, e->body_len);
}

static void availability_serve(gw_req *r)
{
    const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX];
    gw_snap *snaps[GW_EVENT_PARTITIONS_MAX];
    uint32_t count = gw_event_snaps(r, layouts, snaps, availability_serve);
    if (count > 0) {
        availability_answer(r, layouts, snaps, count);
    }
}

void gw_on_availability(gw_req *r)
{
    uint64_t id = r->params[0];
    if (id == 0 || id > TG_WIRE_ID_MAX) {
        gw_reply_error(r, 404, "not_found", "event %" PRIu64 " not found", id);
        return;
    }
    availability_serve(r);
}

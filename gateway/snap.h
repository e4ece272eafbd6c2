/*
 * snap.h — the seat-map snapshots each loop thread keeps (snap.c), and what
 * the seat map (seatmap.c) and the live stream (live.c) read from them.
 *
 * Every function here runs on its worker's loop thread, except where a
 * comment says otherwise.
 */
#ifndef TIXGRID_GATEWAY_SNAP_H
#define TIXGRID_GATEWAY_SNAP_H

#include "core.h"

/* Nibble values of a seat map (schemas/openapi.yaml, /seatmap): the
 * tg_seat_state values 0..4, and this for a seat whose unit is unreachable. */
#define GW_SNAP_UNKNOWN 15u

struct gw_snap;

/* Who hears of a snapshot's changes (live.c): set on a snapshot by the
 * module that follows it; called on the loop thread. */
typedef struct gw_snap_listener {
    /* Seat `seat` of the partition now shows `value`. */
    void (*seat)(void *arg, const struct gw_snap *snap, uint32_t seat, unsigned value);
    /* Many seats changed at once (unit unreachable, or back): resend all. */
    void (*reset)(void *arg, const struct gw_snap *snap);
} gw_snap_listener;

/* One partition's snapshot in one worker. */
typedef struct gw_snap {
    uint32_t partition_id;
    const gw_layout *layout;
    /* Seat k of the partition is the low nibble of states[k >> 1] for even
     * k, the high nibble for odd k: the /seatmap encoding itself. */
    uint8_t *states;
    uint64_t seq;       /* the log sequence the states are exact up to: the version */
    uint64_t epoch;     /* the serving unit's epoch of the partition: seq means a state
                           only with it (a new primary's sequences may go back) */
    uint64_t next_from; /* the from_seq the next seat_changes event must carry */
    bool ready;         /* a snapshot was applied (states are valid) */
    bool unknown;       /* the unit is unreachable now: its seats are UNKNOWN */
    bool fetching;      /* a seat_states request is in flight */
    bool failed;        /* the last fetch failed (waiters get 503) */
    bool refetch;       /* a unit connection came up during the fetch: fetch again */
    int64_t retry_at_ms;
    char pub_url[TG_URL_BYTES]; /* the address subscribed to */
    /* seat_changes events that came while fetching, applied after it. */
    uint32_t stash_count;
    void **stash; /* nng_msg *, GW_SNAP_STASH_MAX */
    struct gw_snap_waiter *waiters;
    const gw_snap_listener *listener; /* NULL: nobody listens */
    void *listener_arg;
} gw_snap;

/* A request waiting for a partition's first snapshot (in its pool). */
typedef struct gw_snap_waiter {
    gw_req *r;
    gw_snap *snap;
    struct gw_snap_waiter *prev, *next;
    void (*ready)(gw_req *r); /* runs once the fetch ended, well or not */
} gw_snap_waiter;

/* The worker's snapshot of the partition of layout l, following it from
 * now on (subscribing, fetching) if it did not yet; NULL when the worker
 * follows --snapshot-partitions-max partitions already. */
gw_snap *gw_snap_follow(gw_worker *w, const gw_layout *l);

/* Parks r until snap's fetch in flight (or one started now) ends; then
 * ready(r) runs, unless r went away.  False (nothing parked) when no fetch
 * can start now (one failed less than a second ago). */
bool gw_snap_wait(gw_snap *snap, gw_req *r, gw_snap_waiter *w, void (*ready)(gw_req *r));

static inline unsigned gw_snap_get(const uint8_t *states, uint32_t seat)
{
    return (states[seat >> 1] >> ((seat & 1u) * 4)) & 15u;
}

static inline void gw_snap_put(uint8_t *states, uint32_t seat, unsigned value)
{
    unsigned shift = (seat & 1u) * 4;
    states[seat >> 1] = (uint8_t)((states[seat >> 1] & ~(15u << shift)) | (value << shift));
}

/* Pure leaves (unit-tested): unpack a seat_states_ok into nibbles, calling
 * changed(arg, seat, value) for every seat whose nibble differs (changed may
 * be NULL); apply one event's changes likewise.  Seats beyond seat_count
 * are ignored. */
typedef void (*gw_snap_changed)(void *arg, uint32_t seat, unsigned value);
void gw_snap_unpack(uint8_t *states, uint32_t seat_count, const tg_wire_states *words,
                    gw_snap_changed changed, void *arg);
void gw_snap_apply(uint8_t *states, uint32_t seat_count, const tg_wire_change *changes,
                   uint32_t count, gw_snap_changed changed, void *arg);

/* seatmap.c: the event's (r->params[0]) layouts in seat order, checked to
 * cover its seats 0..n-1 without a gap; 0 after replying 404 or 503. */
uint32_t gw_event_layouts(gw_req *r, const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX]);

/* seatmap.c: the event's (r->params[0]) layouts and ready snapshots, in seat
 * order; their count, or 0 after replying (404, 503) or while the request
 * waits for a first snapshot, after which again(r) runs (r->state is this
 * function's: a caller that waits keeps none of its own). */
uint32_t gw_event_snaps(gw_req *r, const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX],
                        gw_snap *snaps[GW_EVENT_PARTITIONS_MAX], void (*again)(gw_req *r));

/* seatmap.c: whether If-None-Match names etag (a list, or "*"). */
bool gw_etag_matches(gw_req *r, const char *etag);

/* nibbles.c: the ETag of the event's seats as the snapshots hold them now,
 * "\"EVENT-VERSION-HASH\"" (VERSION: the sum of the sequences, as /seatmap
 * and /availability show it; HASH: of every partition's epoch and sequence,
 * since two gateway workers may reach one sum by different states, and a
 * primary that took over may reach a sequence again with another state);
 * suffix (may be "") is appended inside the quotes.  GW_ETAG_BYTES. */
#define GW_ETAG_BYTES 64u
void gw_event_etag(char *out, uint64_t event_id, gw_snap *const *snaps, uint32_t count,
                   const char *suffix);

/* availability.c: the body of GET /availability (gw_availability_render)
 * counted from the snapshots, all ready; NULL when some partition is
 * UNKNOWN or not ready, or out of memory.  malloc'd, its length in *len. */
char *gw_snap_availability(uint64_t event_id, const gw_layout *const *layouts,
                           gw_snap *const *snaps, uint32_t count, bool with_rows, size_t *len);

#endif

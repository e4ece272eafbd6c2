/*
 * snap.c — per-worker snapshots of partitions' seat states, kept fresh from
 * the units' seat_changes streams: what /seatmap and /live are served from,
 * so that a crowd reading the seat map costs the units nothing.
 *
 * Each loop thread follows, lazily, the partitions its clients asked about
 * (at most cfg.snapshot_partitions_max).  Following one means: subscribing
 * to its topic on the worker's one nng SUB socket (dialed to each unit's
 * PUB address that the map names: one subscription per partition per
 * worker, never one per client), then asking its primary for seat_states
 * (schemas/wire.md) — 4 bits a seat, one round trip for 100,000 seats — and
 * applying every seat_changes event from the snapshot's from_seq on.
 * Events that arrive while the snapshot is in flight are stashed and
 * applied after it.  An event whose from_seq is not the previous to_seq + 1
 * means events were lost (PUB/SUB drops under load by design, and a unit
 * that restarts or fails over starts a new sequence): the partition is
 * fetched again, and the seats that differ are reported as changes.
 *
 * Threads.  nng's receive callback only queues the message (under the
 * queue's mutex, bounded by GW_SNAP_QUEUE_MAX; overflow drops it, which
 * the next event reveals as a gap) and wakes the loop with uv_async_send;
 * seat_states replies likewise.  Everything else runs on the loop thread:
 * no lock guards a snapshot.
 *
 * Liveness.  A once-a-second timer compares each followed partition with
 * the map: a new PUB address (failover, restart) is dialed and the
 * partition fetched again; a primary the map finds unreachable is fetched
 * at once, and if that fails too its seats turn UNKNOWN until a fetch
 * succeeds again.  A unit without a PUB address is
 * polled: fetched once a second.  Every new connection to a unit's PUB
 * (the first dial completing, or a reconnect) fetches the snapshots again:
 * what was published before it never arrived, and a quiet partition would
 * show no gap to reveal it.
 */
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "snap.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#define GW_SNAP_QUEUE_MAX  4096u /* events waiting for the loop, per worker */
#define GW_SNAP_STASH_MAX  256u  /* events held while a partition is fetched */
#define GW_SNAP_DIALS_MAX  64u   /* unit PUB addresses dialed, per worker */
#define GW_SNAP_TICK_MS    1000u /* the map check */
#define GW_SNAP_RETRY_MS   1000u /* a failed fetch is not repeated sooner */
#define GW_SNAP_SUB_BUFFER 1024  /* nng's own receive queue, messages */

/* A seat_states request in flight; freed on the loop. */
typedef struct snap_fetch {
    struct snap_fetch *next;
    struct gw_snaps *owner;
    uint32_t partition_id;
    tg_err err;
    tg_msg reply;
    tg_wire_space space;
} snap_fetch;

typedef struct gw_snaps {
    gw_worker *worker;
    nng_socket sub;
    nng_aio *aio;
    uv_async_t wakeup;
    uv_timer_t tick;
    /* Shared with nng's threads under lock. */
    pthread_mutex_t lock;
    nng_msg **queue; /* ring of GW_SNAP_QUEUE_MAX */
    uint32_t queue_head, queue_count;
    snap_fetch *fetched;
    bool resync; /* a connection to a unit's PUB came up: fetch every snapshot again */
    bool closing;
    /* Loop thread only. */
    uint32_t count, capacity;
    gw_snap **snaps; /* sorted by partition id */
    char dialed[GW_SNAP_DIALS_MAX][TG_URL_BYTES];
    uint32_t dial_count;
    tg_wire_change *changes; /* decoding space: TG_WIRE_CHANGES_MAX */
    uint32_t fetches_in_flight;
} gw_snaps;

/* ---- Finding ---------------------------------------------------------------- */

static uint32_t snap_index(const gw_snaps *s, uint32_t partition_id)
{
    uint32_t lo = 0, hi = s->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->snaps[mid]->partition_id < partition_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static gw_snap *snap_find(const gw_snaps *s, uint32_t partition_id)
{
    uint32_t i = snap_index(s, partition_id);
    return i < s->count && s->snaps[i]->partition_id == partition_id ? s->snaps[i] : NULL;
}

/* ---- Waiters ---------------------------------------------------------------- */

static void waiter_unlink(gw_snap_waiter *wt)
{
    if (wt->prev != NULL) {
        wt->prev->next = wt->next;
    } else {
        wt->snap->waiters = wt->next;
    }
    if (wt->next != NULL) {
        wt->next->prev = wt->prev;
    }
    wt->prev = wt->next = NULL;
}

static void waiter_gone(gw_req *r)
{
    waiter_unlink(r->state);
}

/* The fetch ended: every waiter continues (each may park again). */
static void waiters_wake(gw_snap *snap)
{
    gw_snap_waiter *list = snap->waiters;
    snap->waiters = NULL;
    while (list != NULL) {
        gw_snap_waiter *wt = list;
        list = wt->next;
        wt->prev = wt->next = NULL;
        wt->r->on_gone = NULL;
        wt->ready(wt->r);
    }
}

/* ---- Fetching --------------------------------------------------------------- */

/* On one of nng's threads: hand the reply to the loop. */
static void fetch_reply_cb(void *arg, tg_err err, const tg_msg *reply)
{
    snap_fetch *f = arg;
    gw_snaps *s = f->owner;
    f->err = err;
    if (reply != NULL && err == TG_OK) {
        f->reply = *reply; /* its states point into f->space */
    }
    pthread_mutex_lock(&s->lock);
    f->next = s->fetched;
    s->fetched = f;
    pthread_mutex_unlock(&s->lock);
    uv_async_send(&s->wakeup);
}

static void mark_unknown(gw_snap *snap, bool unknown);

static void fetch_start(gw_snaps *s, gw_snap *snap)
{
    if (snap->fetching) {
        return;
    }
    snap->refetch = false;
    uint32_t words =
        (snap->layout->seat_count + TG_WIRE_STATES_PER_WORD - 1) / TG_WIRE_STATES_PER_WORD;
    snap_fetch *f = calloc(1, sizeof(*f));
    tg_wire_states *states = malloc(sizeof(*states) * (words > 0 ? words : 1));
    tg_err err = f != NULL && states != NULL ? TG_OK : TG_ENOMEM;
    if (err == TG_OK) {
        f->owner = s;
        f->partition_id = snap->partition_id;
        f->space.states = states;
        f->space.states_capacity = words;
        tg_msg req = {.type = TG_WIRE_SEAT_STATES,
                      .seat_states = {.partition_id = snap->partition_id}};
        err = tg_client_send(s->worker->gw->client, snap->partition_id, &req,
                             s->worker->gw->cfg.grid_timeout_ms, &f->space, fetch_reply_cb, f);
    }
    if (err != TG_OK) {
        free(states);
        free(f);
        snap->failed = true;
        snap->retry_at_ms = tg_mono_ms() + GW_SNAP_RETRY_MS;
        if (snap->ready && err == TG_EUNAVAILABLE) {
            mark_unknown(snap, true); /* refused at once: the unit's connection closed */
        }
        waiters_wake(snap);
        return;
    }
    snap->fetching = true;
    s->fetches_in_flight++;
}

static void stash_drop(gw_snap *snap)
{
    for (uint32_t i = 0; i < snap->stash_count; i++) {
        nng_msg_free(snap->stash[i]);
    }
    snap->stash_count = 0;
}

static void live_seat_cb(void *arg, uint32_t seat, unsigned value)
{
    gw_snap *snap = arg;
    if (snap->listener != NULL) {
        snap->listener->seat(snap->listener_arg, snap, seat, value);
    }
}

static void mark_unknown(gw_snap *snap, bool unknown)
{
    if (snap->unknown != unknown) {
        snap->unknown = unknown;
        if (snap->listener != NULL) {
            snap->listener->reset(snap->listener_arg, snap);
        }
    }
}

static void event_handle(gw_snaps *s, gw_snap *snap, nng_msg *msg);

static void fetch_apply(gw_snaps *s, snap_fetch *f)
{
    s->fetches_in_flight--;
    gw_snap *snap = snap_find(s, f->partition_id);
    TG_ASSERT(snap != NULL && snap->fetching); /* followed partitions are never dropped */
    snap->fetching = false;
    const tg_msg *rep = &f->reply;
    if (f->err != TG_OK || rep->seat_states_ok.seat_count != snap->layout->seat_count) {
        snap->failed = true;
        snap->retry_at_ms = tg_mono_ms() + GW_SNAP_RETRY_MS;
        if (snap->ready) {
            mark_unknown(snap, true);
        }
        stash_drop(snap);
        waiters_wake(snap);
        return;
    }
    /* Another epoch: another primary, whose sequences may have gone back
     * below ours (records the old one published and its backup never had).
     * Versions of before and after cannot be compared: listeners reset. */
    bool new_epoch = snap->ready && rep->seat_states_ok.epoch != snap->epoch;
    snap->epoch = rep->seat_states_ok.epoch;
    gw_snap_unpack(snap->states, snap->layout->seat_count, rep->seat_states_ok.states,
                   snap->ready ? live_seat_cb : NULL, snap);
    if (new_epoch && snap->listener != NULL) {
        snap->listener->reset(snap->listener_arg, snap);
    }
    snap->seq = rep->seat_states_ok.from_seq - 1;
    snap->next_from = rep->seat_states_ok.from_seq;
    snap->ready = true;
    snap->failed = false;
    mark_unknown(snap, false);
    /* The stash in order; a gap in it starts the next fetch, which stashes
     * what follows. */
    uint32_t n = snap->stash_count;
    snap->stash_count = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (snap->fetching) {
            snap->stash[snap->stash_count++] = snap->stash[i];
        } else {
            event_handle(s, snap, snap->stash[i]);
        }
    }
    waiters_wake(snap);
    if (snap->refetch) {
        fetch_start(s, snap); /* it may predate events the new connection missed */
    }
}

/* ---- Events ----------------------------------------------------------------- */

static void event_apply(gw_snaps *s, gw_snap *snap, const tg_msg *ev)
{
    if (ev->seat_changes.to_seq < snap->next_from) {
        return; /* older than the snapshot */
    }
    if (ev->seat_changes.from_seq != snap->next_from) {
        fetch_start(s, snap); /* events were lost */
        return;
    }
    gw_snap_apply(snap->states, snap->layout->seat_count, ev->seat_changes.changes,
                  ev->seat_changes.change_count, live_seat_cb, snap);
    snap->seq = ev->seat_changes.to_seq;
    snap->next_from = ev->seat_changes.to_seq + 1;
}

/* Takes msg. */
static void event_handle(gw_snaps *s, gw_snap *snap, nng_msg *msg)
{
    if (snap->fetching) {
        if (snap->stash_count < GW_SNAP_STASH_MAX) {
            snap->stash[snap->stash_count++] = msg;
            return;
        }
        stash_drop(snap); /* the first event after the fetch shows the gap */
        nng_msg_free(msg);
        return;
    }
    tg_wire_space space = {.changes = s->changes, .changes_capacity = TG_WIRE_CHANGES_MAX};
    tg_msg ev;
    const char *why = NULL;
    if (tg_wire_decode_event(nng_msg_body(msg), nng_msg_len(msg), &space, &ev, &why) != TG_OK ||
        ev.type != TG_WIRE_SEAT_CHANGES) {
        tg_log_warn("gateway: seat_changes of partition %u refused: %s", snap->partition_id,
                    why != NULL ? why : "not seat_changes");
    } else if (snap->ready) {
        event_apply(s, snap, &ev);
    }
    nng_msg_free(msg);
}

/* The partition a published message is about: its topic. */
static bool msg_partition(nng_msg *msg, uint32_t *id)
{
    if (nng_msg_len(msg) < TG_WIRE_TOPIC_BYTES) {
        return false;
    }
    const uint8_t *b = nng_msg_body(msg);
    *id = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return true;
}

/* On one of nng's threads: queue the event for the loop, receive again. */
static void sub_recv_cb(void *arg)
{
    gw_snaps *s = arg;
    if (nng_aio_result(s->aio) != 0) {
        if (nng_aio_result(s->aio) == NNG_ECLOSED) {
            return;
        }
        nng_recv_aio(s->sub, s->aio);
        return;
    }
    nng_msg *msg = nng_aio_get_msg(s->aio);
    pthread_mutex_lock(&s->lock);
    if (s->queue_count < GW_SNAP_QUEUE_MAX && !s->closing) {
        s->queue[(s->queue_head + s->queue_count++) % GW_SNAP_QUEUE_MAX] = msg;
        msg = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (msg != NULL) {
        nng_msg_free(msg); /* the loop is behind: the next event shows the gap */
    }
    uv_async_send(&s->wakeup);
    nng_recv_aio(s->sub, s->aio);
}

/* On nng's thread: a connection to a unit's PUB came up (a first dial, or
 * a reconnect after the unit restarted or the link dropped).  What the unit
 * published before it never reached this socket, and a snapshot fetched
 * meanwhile shows no gap until the partition's next change: a quiet
 * partition would stay behind.  So every snapshot is fetched again. */
static void sub_pipe_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    (void)pipe;
    (void)ev;
    gw_snaps *s = arg;
    pthread_mutex_lock(&s->lock);
    bool closing = s->closing;
    s->resync = true;
    pthread_mutex_unlock(&s->lock);
    if (!closing) {
        uv_async_send(&s->wakeup);
    }
}

/* On the loop: the fetches sub_pipe_cb asked for. */
static void resync_all(gw_snaps *s)
{
    for (uint32_t i = 0; i < s->count; i++) {
        gw_snap *snap = s->snaps[i];
        if (snap->fetching) {
            snap->refetch = true;
        } else if (snap->ready) {
            fetch_start(s, snap);
        }
    }
}

static void on_wakeup(uv_async_t *async)
{
    gw_snaps *s = async->data;
    pthread_mutex_lock(&s->lock);
    snap_fetch *fetched = s->fetched;
    s->fetched = NULL;
    bool resync = s->resync;
    s->resync = false;
    pthread_mutex_unlock(&s->lock);
    /* Oldest first. */
    snap_fetch *ordered = NULL;
    while (fetched != NULL) {
        snap_fetch *next = fetched->next;
        fetched->next = ordered;
        ordered = fetched;
        fetched = next;
    }
    while (ordered != NULL) {
        snap_fetch *next = ordered->next;
        fetch_apply(s, ordered);
        free(ordered->space.states);
        free(ordered);
        ordered = next;
    }
    if (resync) {
        resync_all(s);
    }
    for (uint32_t batch = 0; batch < GW_SNAP_QUEUE_MAX; batch++) {
        nng_msg *msg = NULL;
        pthread_mutex_lock(&s->lock);
        if (s->queue_count > 0) {
            msg = s->queue[s->queue_head];
            s->queue_head = (s->queue_head + 1) % GW_SNAP_QUEUE_MAX;
            s->queue_count--;
        }
        pthread_mutex_unlock(&s->lock);
        if (msg == NULL) {
            break;
        }
        uint32_t id;
        gw_snap *snap = msg_partition(msg, &id) ? snap_find(s, id) : NULL;
        if (snap != NULL) {
            event_handle(s, snap, msg);
        } else {
            nng_msg_free(msg);
        }
    }
}

/* ---- Following ---------------------------------------------------------------- */

static void dial(gw_snaps *s, const char *url)
{
    for (uint32_t i = 0; i < s->dial_count; i++) {
        if (strcmp(s->dialed[i], url) == 0) {
            return;
        }
    }
    if (s->dial_count == GW_SNAP_DIALS_MAX) {
        tg_log_warn("gateway: more than %u unit PUB addresses; %s not followed", GW_SNAP_DIALS_MAX,
                    url);
        return;
    }
    /* Non-blocking: nng keeps redialing a unit that is not up yet. */
    int rv = nng_dial(s->sub, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        tg_log_warn("gateway: cannot subscribe to %s: %s", url, nng_strerror(rv));
        return;
    }
    snprintf(s->dialed[s->dial_count++], TG_URL_BYTES, "%s", url);
}

/* Compares the snapshot with the map: new address, reachability. */
static void snap_check(gw_snaps *s, gw_snap *snap, int64_t now_ms)
{
    char pub_url[TG_URL_BYTES];
    bool reachable = false;
    if (!gw_map_route(s->worker->gw, snap->partition_id, pub_url, &reachable)) {
        reachable = false;
        pub_url[0] = '\0';
    }
    if (!reachable) {
        /* Confirmed by a fetch of our own before the seats turn UNKNOWN: the
         * map's probe may have timed out on a busy machine. */
        if (snap->ready && !snap->unknown && now_ms >= snap->retry_at_ms) {
            fetch_start(s, snap);
        }
        return;
    }
    bool moved = strcmp(pub_url, snap->pub_url) != 0;
    if (moved) {
        snprintf(snap->pub_url, sizeof(snap->pub_url), "%s", pub_url);
        if (pub_url[0] != '\0') {
            dial(s, pub_url);
        }
    }
    bool due = !snap->ready || snap->unknown || snap->failed || pub_url[0] == '\0';
    if ((moved || due) && now_ms >= snap->retry_at_ms) {
        fetch_start(s, snap);
    }
}

static void on_tick(uv_timer_t *t)
{
    gw_snaps *s = t->data;
    int64_t now_ms = tg_mono_ms();
    for (uint32_t i = 0; i < s->count; i++) {
        snap_check(s, s->snaps[i], now_ms);
    }
}

static gw_snap *snap_new(const gw_layout *l)
{
    gw_snap *snap = calloc(1, sizeof(*snap));
    if (snap == NULL) {
        return NULL;
    }
    snap->states = calloc(l->seat_count / 2 + 1, 1);
    snap->stash = calloc(GW_SNAP_STASH_MAX, sizeof(*snap->stash));
    if (snap->states == NULL || snap->stash == NULL) {
        free(snap->states);
        free(snap->stash);
        free(snap);
        return NULL;
    }
    snap->partition_id = l->partition_id;
    snap->layout = l;
    return snap;
}

static bool snaps_insert(gw_snaps *s, gw_snap *snap)
{
    if (s->count == s->capacity) {
        uint32_t cap = s->capacity > 0 ? 2 * s->capacity : 16;
        gw_snap **grown = realloc(s->snaps, cap * sizeof(*grown));
        if (grown == NULL) {
            return false;
        }
        s->snaps = grown;
        s->capacity = cap;
    }
    uint32_t i = snap_index(s, snap->partition_id);
    memmove(&s->snaps[i + 1], &s->snaps[i], (s->count - i) * sizeof(*s->snaps));
    s->snaps[i] = snap;
    s->count++;
    return true;
}

gw_snap *gw_snap_follow(gw_worker *w, const gw_layout *l)
{
    gw_snaps *s = w->snaps;
    gw_snap *snap = snap_find(s, l->partition_id);
    if (snap != NULL) {
        return snap;
    }
    if (s->count >= w->gw->cfg.snapshot_partitions_max) {
        return NULL;
    }
    snap = snap_new(l);
    if (snap == NULL || !snaps_insert(s, snap)) {
        if (snap != NULL) {
            free(snap->states);
            free(snap->stash);
            free(snap);
        }
        return NULL;
    }
    uint8_t topic[TG_WIRE_TOPIC_BYTES];
    tg_wire_topic(l->partition_id, topic);
    /* Subscribed before the snapshot is asked for: no event falls between. */
    int rv = nng_socket_set(s->sub, NNG_OPT_SUB_SUBSCRIBE, topic, sizeof(topic));
    if (rv != 0) {
        tg_log_warn("gateway: cannot subscribe to partition %u: %s", l->partition_id,
                    nng_strerror(rv));
    }
    snap_check(s, snap, tg_mono_ms());
    return snap;
}

bool gw_snap_wait(gw_snap *snap, gw_req *r, gw_snap_waiter *wt, void (*ready)(gw_req *r))
{
    if (!snap->fetching) {
        if (tg_mono_ms() < snap->retry_at_ms) {
            return false;
        }
        fetch_start(r->worker->snaps, snap);
        if (!snap->fetching) {
            return false;
        }
    }
    *wt = (gw_snap_waiter){.r = r, .snap = snap, .next = snap->waiters, .ready = ready};
    if (snap->waiters != NULL) {
        snap->waiters->prev = wt;
    }
    snap->waiters = wt;
    r->state = wt;
    r->on_gone = waiter_gone;
    return true;
}

/* ---- Start and stop ------------------------------------------------------------ */

tg_err gw_snaps_init(gw_worker *w)
{
    gw_snaps *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return TG_ENOMEM;
    }
    s->worker = w;
    s->queue = calloc(GW_SNAP_QUEUE_MAX, sizeof(*s->queue));
    s->changes = calloc(TG_WIRE_CHANGES_MAX, sizeof(*s->changes));
    if (s->queue == NULL || s->changes == NULL || nng_sub0_open(&s->sub) != 0) {
        free(s->queue);
        free(s->changes);
        free(s);
        return TG_ENOMEM;
    }
    (void)nng_socket_set_int(s->sub, NNG_OPT_RECVBUF, GW_SNAP_SUB_BUFFER);
    (void)nng_socket_set_ms(s->sub, NNG_OPT_RECONNMAXT, 1000);
    pthread_mutex_init(&s->lock, NULL);
    uv_async_init(&w->loop, &s->wakeup, on_wakeup);
    s->wakeup.data = s;
    uv_timer_init(&w->loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, GW_SNAP_TICK_MS, GW_SNAP_TICK_MS);
    if (nng_pipe_notify(s->sub, NNG_PIPE_EV_ADD_POST, sub_pipe_cb, s) != 0) {
        return TG_ENOMEM;
    }
    if (nng_aio_alloc(&s->aio, sub_recv_cb, s) != 0) {
        return TG_ENOMEM;
    }
    w->snaps = s;
    nng_recv_aio(s->sub, s->aio);
    return TG_OK;
}

/* After the loop stopped: nng's threads are quiet once the socket and the
 * client are closed; what remains is freed. */
void gw_snaps_close(gw_worker *w)
{
    gw_snaps *s = w->snaps;
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->closing = true;
    pthread_mutex_unlock(&s->lock);
    nng_close(s->sub);
    nng_aio_free(s->aio);
    for (uint32_t i = 0; i < s->queue_count; i++) {
        nng_msg_free(s->queue[(s->queue_head + i) % GW_SNAP_QUEUE_MAX]);
    }
    while (s->fetched != NULL) {
        snap_fetch *next = s->fetched->next;
        free(s->fetched->space.states);
        free(s->fetched);
        s->fetched = next;
    }
    for (uint32_t i = 0; i < s->count; i++) {
        stash_drop(s->snaps[i]);
        free(s->snaps[i]->stash);
        free(s->snaps[i]->states);
        free(s->snaps[i]);
    }
    free(s->snaps);
    free(s->queue);
    free(s->changes);
    w->snaps = NULL;
    /* s itself stays: the loop's handles point into it. */
}

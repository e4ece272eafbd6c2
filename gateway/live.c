/*
 * live.c — GET /api/events/{id}/live: Server-Sent Events of an event's seat
 * changes, fed by the worker's snapshots (snap.c), never by a subscription
 * per client.
 *
 * One stream per event per worker.  The snapshots call back here with each
 * seat that changed (snap.h's listener); the stream marks the seat dirty
 * (a bitmap and a list, so a seat that changes ten times in 100 ms is sent
 * once, with its last state).  Every GW_LIVE_TICK_MS a timer turns the
 * dirty seats into one `seats` message, rendered once and shared by every
 * client of the worker (a reference count), and queues it to each; every
 * second it does the same with an `availability` message (the body of GET
 * /availability, counted from the snapshots); a client that was sent
 * nothing for --live-heartbeat-s gets a comment line.  More dirty seats
 * than GW_LIVE_CHANGES_MAX in one tick, or a partition turning UNKNOWN or
 * back, send `reset` instead: fetch /seatmap again.
 *
 * Resuming.  A seats message's id is "V-S-E": the event's version after it
 * (the sum of the partitions' sequences, the same number /seatmap shows),
 * the stamp of this worker's stream since its last reset (live_stamp), and
 * the epoch of its partition (0 with several).  A token of another stream
 * (another worker's, or from before a reset) is taken only when versions
 * mean the same there and here: one partition, known now, at the same
 * epoch (sequence_comparable); otherwise reset.  A snapshot that finds
 * another epoch (a new primary) resets the stream.  The last --live-replay-events messages are
 * kept; each knows the version of the message before it, so a client that comes back with
 * Last-Event-ID T
 * is sent every kept message after T, in one write, when the first of them
 * starts at or before T and they fit in --live-buffer-bytes, and `reset`
 * otherwise (too old, too much, or a version another gateway worker made).
 *
 * Back-pressure (h2o's generator).  A client has at most one h2o_send in
 * flight (at most GW_LIVE_SEND_MAX messages, shared with every other
 * client); what comes meanwhile waits in its queue (GW_LIVE_QUEUE_MAX
 * messages and --live-buffer-bytes bytes; a message into an empty queue is
 * taken whatever its size, so that a client that keeps up always gets the
 * big availability).  A client over either bound cannot keep up: its queue is dropped and its
 * socket shut down, so h2o ends the connection at its next write, and
 * memory never grows with a client that does not read.  (Over HTTP/2 that
 * ends the whole connection, other streams included.)
 *
 * Streams do not count as requests in service (--inflight-max); their
 * number is bounded by --live-clients-max per worker.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "snap.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#define GW_LIVE_TICK_MS            100u  /* seat changes are coalesced this long */
#define GW_LIVE_AVAILABILITY_TICKS 10u   /* an availability message every 10 ticks */
#define GW_LIVE_CHANGES_MAX        4096u /* dirty seats per tick; more send reset */
#define GW_LIVE_QUEUE_MAX          32u   /* messages waiting per client */
#define GW_LIVE_SEND_MAX           16u   /* messages in one h2o_send */

/* A message, rendered once and shared. */
typedef struct live_msg {
    uint32_t refs;
    uint64_t prev_version, version; /* seats messages: the versions before and after */
    size_t len;
    char data[];
} live_msg;

typedef struct live_client live_client;

typedef struct gw_live_event {
    struct gw_live_event *next;
    gw_live *live;
    uint64_t event_id;
    uint32_t partition_count;
    const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX];
    gw_snap *snaps[GW_EVENT_PARTITIONS_MAX];
    uint64_t seat_count;
    uint8_t *dirty_bits;
    uint32_t *dirty; /* event seat numbers, GW_LIVE_CHANGES_MAX */
    uint32_t dirty_count;
    bool overflow, reset;
    uint64_t last_version; /* of the last seats message (or reset) */
    uint64_t stamp;        /* this worker's stream since its last reset: live_stamp */
    live_msg **ring;       /* the last cfg.live_replay_events seats messages */
    uint32_t ring_head, ring_count;
    live_client *clients;
} gw_live_event;

struct live_client {
    h2o_generator_t gen; /* first: h2o's callbacks get it */
    gw_req *r;
    gw_live_event *ev;
    live_client *prev, *next;
    live_msg *queue[GW_LIVE_QUEUE_MAX];
    uint32_t queue_head, queue_count;
    live_msg *sent[GW_LIVE_SEND_MAX]; /* in flight until proceed */
    uint32_t sent_count;
    h2o_iovec_t bufs[GW_LIVE_SEND_MAX];
    size_t bytes; /* queued (not yet handed to h2o) */
    int64_t last_sent_ms;
    uint8_t availability; /* LIVE_AVAILABILITY_* (the query parameter) */
    bool dropped;
};

enum { LIVE_AVAILABILITY_FULL = 0, LIVE_AVAILABILITY_SUMMARY = 1, LIVE_AVAILABILITY_NONE = 2 };

struct gw_live {
    gw_worker *worker;
    uv_timer_t tick;
    uint64_t ticks;
    uint64_t stamps; /* streams begun or reset on this worker */
    uint32_t clients;
    gw_live_event *events;
};

/* r->state of a /live request until it streams. */
typedef struct {
    gw_snap_waiter wait; /* first: snap.c's waiter_gone takes r->state */
    uint32_t waits;
} live_wait;

/* ---- Messages ----------------------------------------------------------------- */

static live_msg *msg_new(size_t cap)
{
    live_msg *m = malloc(sizeof(*m) + cap);
    if (m != NULL) {
        *m = (live_msg){.refs = 1};
    }
    return m;
}

static live_msg *msg_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static live_msg *msg_printf(const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    TG_ASSERT(n > 0 && (size_t)n < sizeof(text));
    live_msg *m = msg_new((size_t)n);
    if (m != NULL) {
        memcpy(m->data, text, (size_t)n);
        m->len = (size_t)n;
    }
    return m;
}

static void msg_unref(live_msg *m)
{
    if (m != NULL && --m->refs == 0) {
        free(m);
    }
}

/* ---- Clients ------------------------------------------------------------------ */

static void client_send(live_client *c);

static void queue_free(live_client *c)
{
    while (c->queue_count > 0) {
        c->bytes -= c->queue[c->queue_head]->len;
        msg_unref(c->queue[c->queue_head]);
        c->queue_head = (c->queue_head + 1) % GW_LIVE_QUEUE_MAX;
        c->queue_count--;
    }
}

/* The client cannot keep up: forget its queue and end the connection. */
static void client_drop(live_client *c)
{
    if (c->dropped) {
        return;
    }
    c->dropped = true;
    queue_free(c);
    atomic_fetch_add_explicit(&c->ev->live->worker->metrics.live_dropped, 1, memory_order_relaxed);
    h2o_req_t *h2o = c->r->h2o;
    h2o_socket_t *sock = h2o != NULL && h2o->conn->callbacks->get_socket != NULL
                             ? h2o->conn->callbacks->get_socket(h2o->conn)
                             : NULL;
    if (sock != NULL) {
        /* h2o's pending write fails, and h2o closes the connection. */
        (void)shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
    }
}

static void client_push(live_client *c, live_msg *m)
{
    if (c->dropped || m == NULL) {
        return;
    }
    const gw_config *cfg = &c->r->gw->cfg;
    /* A message alone may exceed the bound (a big availability): a client
     * that keeps up, whose queue is empty, always gets it. */
    if (c->queue_count == GW_LIVE_QUEUE_MAX ||
        (c->queue_count > 0 && c->bytes + m->len > cfg->live_buffer_bytes)) {
        client_drop(c);
        return;
    }
    m->refs++;
    c->queue[(c->queue_head + c->queue_count++) % GW_LIVE_QUEUE_MAX] = m;
    c->bytes += m->len;
    client_send(c);
}

static void client_send(live_client *c)
{
    if (c->sent_count > 0 || c->queue_count == 0 || c->dropped || c->r->h2o == NULL) {
        return;
    }
    while (c->queue_count > 0 && c->sent_count < GW_LIVE_SEND_MAX) {
        live_msg *m = c->queue[c->queue_head];
        c->queue_head = (c->queue_head + 1) % GW_LIVE_QUEUE_MAX;
        c->queue_count--;
        c->bytes -= m->len;
        c->bufs[c->sent_count] = h2o_iovec_init(m->data, m->len);
        c->sent[c->sent_count++] = m;
    }
    c->last_sent_ms = tg_mono_ms();
    h2o_send(c->r->h2o, c->bufs, c->sent_count, H2O_SEND_STATE_IN_PROGRESS);
}

/* h2o: the last send was written; send what queued meanwhile. */
static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    live_client *c = (live_client *)gen;
    for (uint32_t i = 0; i < c->sent_count; i++) {
        msg_unref(c->sent[i]);
    }
    c->sent_count = 0;
    client_send(c);
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)gen;
    (void)req; /* the request's disposal follows: client_gone cleans up */
}

static void client_gone(gw_req *r)
{
    live_client *c = r->state;
    gw_live_event *ev = c->ev;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        ev->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    for (uint32_t i = 0; i < c->sent_count; i++) {
        msg_unref(c->sent[i]);
    }
    c->sent_count = 0;
    c->dropped = true;
    queue_free(c);
    ev->live->clients--;
    atomic_fetch_sub_explicit(&ev->live->worker->metrics.live_streams, 1, memory_order_relaxed);
}

/* ---- The event's stream ---------------------------------------------------------- */

/* Names the event's stream on this worker from now until its next reset.
 * A resume token is the version and this stamp: versions alone are not
 * comparable across workers (each sums the partitions' sequences at its own
 * ticks, and two workers may reach one sum by different states) nor across
 * a reset (a partition turning UNKNOWN changes no sequence). */
static void live_stamp(gw_live_event *ev)
{
    gw_live *live = ev->live;
    ev->stamp = ++live->stamps * GW_THREADS_MAX + live->worker->index;
}

/* The epoch a token names: its one partition's (0 with several, whose
 * tokens are never taken by another stream). */
static uint64_t token_epoch(const gw_live_event *ev)
{
    return ev->partition_count == 1 ? ev->snaps[0]->epoch : 0;
}

static uint64_t event_version(const gw_live_event *ev)
{
    uint64_t v = 0;
    for (uint32_t p = 0; p < ev->partition_count; p++) {
        v += ev->snaps[p]->seq;
    }
    return v;
}

static void ring_push(gw_live_event *ev, live_msg *m)
{
    uint32_t cap = ev->live->worker->gw->cfg.live_replay_events;
    if (ev->ring_count == cap) {
        msg_unref(ev->ring[ev->ring_head]);
        ev->ring_head = (ev->ring_head + 1) % cap;
        ev->ring_count--;
    }
    m->refs++;
    ev->ring[(ev->ring_head + ev->ring_count++) % cap] = m;
}

static void ring_clear(gw_live_event *ev)
{
    uint32_t cap = ev->live->worker->gw->cfg.live_replay_events;
    while (ev->ring_count > 0) {
        msg_unref(ev->ring[ev->ring_head]);
        ev->ring_head = (ev->ring_head + 1) % cap;
        ev->ring_count--;
    }
}

static void broadcast(gw_live_event *ev, live_msg *m)
{
    for (live_client *c = ev->clients; c != NULL; c = c->next) {
        client_push(c, m);
    }
}

static void on_seat(void *arg, const gw_snap *snap, uint32_t seat, unsigned value)
{
    (void)value; /* the flush reads the seat's state then */
    gw_live_event *ev = arg;
    uint32_t no = snap->layout->first_seat + seat;
    if ((ev->dirty_bits[no >> 3] >> (no & 7)) & 1u) {
        return;
    }
    if (ev->dirty_count == GW_LIVE_CHANGES_MAX) {
        ev->overflow = true;
        return;
    }
    ev->dirty_bits[no >> 3] |= (uint8_t)(1u << (no & 7));
    ev->dirty[ev->dirty_count++] = no;
}

static void on_reset(void *arg, const gw_snap *snap)
{
    (void)snap;
    gw_live_event *ev = arg;
    ev->reset = true;
}

static const gw_snap_listener live_listener = {.seat = on_seat, .reset = on_reset};

/* The state a seat of the event shows now. */
static unsigned seat_state(const gw_live_event *ev, uint32_t no)
{
    uint32_t p = 0;
    while (p + 1 < ev->partition_count && ev->layouts[p + 1]->first_seat <= no) {
        p++;
    }
    const gw_snap *snap = ev->snaps[p];
    return snap->unknown ? GW_SNAP_UNKNOWN
                         : gw_snap_get(snap->states, no - snap->layout->first_seat);
}

/* "event: seats" with every dirty seat; NULL when out of memory. */
static live_msg *seats_render(gw_live_event *ev, uint64_t version)
{
    /* 7 digits, a comma, 2 digits and a comma per seat. */
    size_t cap = 160 + (size_t)ev->dirty_count * 12;
    live_msg *m = msg_new(cap);
    if (m == NULL) {
        return NULL;
    }
    int n = snprintf(m->data, cap,
                     "event: seats\nid: %" PRIu64 "-%" PRIu64 "-%" PRIu64
                     "\ndata: {\"version\":%" PRIu64 ",\"changes\":[",
                     version, ev->stamp, token_epoch(ev), version);
    size_t len = (size_t)n;
    for (uint32_t i = 0; i < ev->dirty_count; i++) {
        uint32_t no = ev->dirty[i];
        len += (size_t)snprintf(m->data + len, cap - len, "%s%" PRIu32 ",%u", i > 0 ? "," : "", no,
                                seat_state(ev, no));
    }
    len += (size_t)snprintf(m->data + len, cap - len, "]}\n\n");
    TG_ASSERT(len < cap);
    m->len = len;
    m->prev_version = ev->last_version;
    m->version = version;
    return m;
}

static void dirty_clear(gw_live_event *ev)
{
    for (uint32_t i = 0; i < ev->dirty_count; i++) {
        ev->dirty_bits[ev->dirty[i] >> 3] = 0;
    }
    ev->dirty_count = 0;
    ev->overflow = false;
}

static void event_flush(gw_live_event *ev)
{
    uint64_t version = event_version(ev);
    if (ev->reset || ev->overflow) {
        tg_log_info("live: event %" PRIu64 " resets at version %" PRIu64 " (%s)", ev->event_id,
                    version, ev->overflow ? "too many changes" : "a partition's unit changed");
        ev->reset = false;
        dirty_clear(ev);
        ring_clear(ev);
        live_stamp(ev);
        ev->last_version = version;
        live_msg *m = msg_printf("event: reset\ndata: {\"version\":%" PRIu64 "}\n\n", version);
        broadcast(ev, m);
        msg_unref(m);
        return;
    }
    if (ev->dirty_count == 0) {
        return;
    }
    live_msg *m = seats_render(ev, version);
    dirty_clear(ev);
    if (m == NULL) {
        ev->reset = true; /* the clients missed these: tell them at the next tick */
        return;
    }
    ev->last_version = version;
    ring_push(ev, m);
    broadcast(ev, m);
    msg_unref(m);
}

/* ---- Availability from the snapshots ---------------------------------------------- */

static live_msg *availability_render(const gw_live_event *ev, bool with_rows)
{
    size_t len = 0;
    char *body = gw_snap_availability(ev->event_id, ev->layouts, ev->snaps, ev->partition_count,
                                      with_rows, &len);
    live_msg *m = body != NULL ? msg_new(len + 40) : NULL;
    if (m != NULL) {
        m->len = (size_t)snprintf(m->data, len + 40, "event: availability\ndata: %s\n\n", body);
    }
    free(body);
    return m;
}

/* Each form rendered at most once a tick, and only when a client wants it. */
static void availability_send(gw_live_event *ev)
{
    live_msg *forms[2] = {NULL, NULL};
    bool tried[2] = {false, false};
    for (live_client *c = ev->clients; c != NULL; c = c->next) {
        uint8_t f = c->availability;
        if (f == LIVE_AVAILABILITY_NONE) {
            continue;
        }
        if (!tried[f]) {
            tried[f] = true;
            forms[f] = availability_render(ev, f == LIVE_AVAILABILITY_FULL);
        }
        client_push(c, forms[f]);
    }
    msg_unref(forms[0]);
    msg_unref(forms[1]);
}

static void on_tick(uv_timer_t *t)
{
    gw_live *live = t->data;
    live->ticks++;
    int64_t now_ms = tg_mono_ms();
    int64_t heartbeat_ms = (int64_t)live->worker->gw->cfg.live_heartbeat_s * 1000;
    for (gw_live_event *ev = live->events; ev != NULL; ev = ev->next) {
        event_flush(ev);
        if (ev->clients == NULL) {
            continue;
        }
        if (live->ticks % GW_LIVE_AVAILABILITY_TICKS == 0) {
            availability_send(ev);
        }
        live_msg *beat = NULL;
        for (live_client *c = ev->clients; c != NULL; c = c->next) {
            if (now_ms - c->last_sent_ms >= heartbeat_ms) {
                beat = beat != NULL ? beat : msg_printf(": heartbeat\n\n");
                client_push(c, beat);
            }
        }
        msg_unref(beat);
    }
}

/* ---- The request --------------------------------------------------------------------- */

static gw_live_event *event_find(gw_live *live, uint64_t event_id)
{
    for (gw_live_event *ev = live->events; ev != NULL; ev = ev->next) {
        if (ev->event_id == event_id) {
            return ev;
        }
    }
    return NULL;
}

static gw_live_event *event_new(gw_live *live, uint64_t event_id, const gw_layout *const *layouts,
                                gw_snap *const *snaps, uint32_t count)
{
    gw_live_event *ev = calloc(1, sizeof(*ev));
    if (ev == NULL) {
        return NULL;
    }
    ev->live = live;
    ev->event_id = event_id;
    ev->partition_count = count;
    for (uint32_t p = 0; p < count; p++) {
        ev->layouts[p] = layouts[p];
        ev->snaps[p] = snaps[p];
        ev->seat_count += layouts[p]->seat_count;
    }
    ev->dirty_bits = calloc(ev->seat_count / 8 + 1, 1);
    ev->dirty = calloc(GW_LIVE_CHANGES_MAX, sizeof(*ev->dirty));
    ev->ring = calloc(live->worker->gw->cfg.live_replay_events, sizeof(*ev->ring));
    if (ev->dirty_bits == NULL || ev->dirty == NULL || ev->ring == NULL) {
        free(ev->dirty_bits);
        free(ev->dirty);
        free(ev->ring);
        free(ev);
        return NULL;
    }
    for (uint32_t p = 0; p < count; p++) {
        snaps[p]->listener = &live_listener;
        snaps[p]->listener_arg = ev;
    }
    ev->last_version = event_version(ev);
    live_stamp(ev);
    ev->next = live->events;
    live->events = ev;
    return ev;
}

/* The first messages: the snapshot's version, or what a resume missed. */
/* Queues every kept seats message after token as one message (queued one by
 * one, more than GW_LIVE_QUEUE_MAX of them would drop the client before
 * the first was written); false when they do not reach back to it, or
 * together exceed --live-buffer-bytes (the client is better served by a
 * reset and one /seatmap). */
static bool replay(live_client *c, uint64_t token)
{
    gw_live_event *ev = c->ev;
    uint32_t cap = ev->live->worker->gw->cfg.live_replay_events, i = 0;
    while (i < ev->ring_count && ev->ring[(ev->ring_head + i) % cap]->version <= token) {
        i++;
    }
    if (i == ev->ring_count || ev->ring[(ev->ring_head + i) % cap]->prev_version > token ||
        token >= ev->last_version) {
        return false;
    }
    static const char retry[] = "retry: 1000\n\n";
    size_t len = sizeof(retry) - 1;
    for (uint32_t k = i; k < ev->ring_count; k++) {
        len += ev->ring[(ev->ring_head + k) % cap]->len;
    }
    live_msg *m = len <= c->r->gw->cfg.live_buffer_bytes ? msg_new(len) : NULL;
    if (m == NULL) {
        return false;
    }
    memcpy(m->data, retry, sizeof(retry) - 1);
    m->len = sizeof(retry) - 1;
    for (; i < ev->ring_count; i++) {
        const live_msg *kept = ev->ring[(ev->ring_head + i) % cap];
        memcpy(m->data + m->len, kept->data, kept->len);
        m->len += kept->len;
    }
    client_push(c, m);
    msg_unref(m);
    return true;
}

/* 1..19 decimal digits (no overflow). */
static bool digits_parse(const char *text, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    bool valid = len > 0 && len < 20;
    for (size_t i = 0; valid && i < len; i++) {
        valid = text[i] >= '0' && text[i] <= '9';
        v = v * 10 + (uint64_t)(text[i] - '0');
    }
    *out = v;
    return valid;
}

/* Whether a version another stream made (another worker's or gateway's,
 * or this one's before a reset) at the given epoch means the same state
 * here: with one partition the version is its own sequence, the same on
 * every worker for one epoch of the partition, as long as the partition is
 * known (an UNKNOWN one is a reset the client must get). */
static bool sequence_comparable(const gw_live_event *ev, uint64_t epoch)
{
    return ev->partition_count == 1 && !ev->snaps[0]->unknown && epoch == ev->snaps[0]->epoch;
}

/* A resume token "VERSION-STAMP-EPOCH" (as seats_render writes it); false
 * when text is not one. */
static bool token_parse(const char *text, size_t len, uint64_t *version, uint64_t *stamp,
                        uint64_t *epoch)
{
    uint64_t *parts[3] = {version, stamp, epoch};
    size_t at = 0;
    for (int k = 0; k < 3; k++) {
        const char *dash = k < 2 && text != NULL ? memchr(text + at, '-', len - at) : NULL;
        size_t end = k < 2 ? (dash != NULL ? (size_t)(dash - text) : len) : len;
        if ((k < 2 && dash == NULL) || !digits_parse(text + at, end - at, parts[k])) {
            return false;
        }
        at = end + 1;
    }
    return true;
}

static void client_begin(live_client *c, const char *last_id, size_t last_len)
{
    gw_live_event *ev = c->ev;
    uint64_t token = 0, stamp = 0, epoch = 0;
    bool valid = last_id != NULL && token_parse(last_id, last_len, &token, &stamp, &epoch) &&
                 (stamp == ev->stamp || sequence_comparable(ev, epoch));
    live_msg *m = NULL;
    if (last_id == NULL) {
        m = msg_printf("retry: 1000\nevent: snapshot\ndata: {\"version\":%" PRIu64 "}\n\n",
                       ev->last_version);
    } else if (valid && token == ev->last_version) {
        m = msg_printf("retry: 1000\n\n"); /* nothing missed */
    } else if (valid && replay(c, token)) {
        return;
    } else {
        /* Too old, another worker's or stream's, or not a token at all. */
        m = msg_printf("retry: 1000\nevent: reset\ndata: {\"version\":%" PRIu64 "}\n\n",
                       ev->last_version);
    }
    client_push(c, m);
    msg_unref(m);
}

/* The kernel's send buffer of an HTTP/1 stream is bounded like its queue:
 * otherwise a client that does not read could park megabytes in the kernel
 * (loopback autotunes up to 4 MB) before the gateway noticed.  An HTTP/2
 * connection carries other streams: left alone. */
static void socket_bound(gw_req *r)
{
    h2o_req_t *h2o = r->h2o;
    h2o_socket_t *sock = h2o->version < 0x200 && h2o->conn->callbacks->get_socket != NULL
                             ? h2o->conn->callbacks->get_socket(h2o->conn)
                             : NULL;
    int bytes = (int)r->gw->cfg.live_buffer_bytes;
    if (sock != NULL) {
        (void)setsockopt(h2o_socket_get_fd(sock), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    }
}

static void stream_start(gw_req *r, gw_live_event *ev)
{
    live_client *c = gw_alloc(r, sizeof(*c));
    c->gen = (h2o_generator_t){.proceed = on_proceed, .stop = on_stop};
    c->r = r;
    c->ev = ev;
    const char *form = gw_query(r, "availability");
    c->availability = form == NULL || strcmp(form, "full") == 0 ? LIVE_AVAILABILITY_FULL
                      : strcmp(form, "summary") == 0            ? LIVE_AVAILABILITY_SUMMARY
                                                                : LIVE_AVAILABILITY_NONE;
    c->next = ev->clients;
    if (ev->clients != NULL) {
        ev->clients->prev = c;
    }
    ev->clients = c;
    ev->live->clients++;
    atomic_fetch_add_explicit(&ev->live->worker->metrics.live_streams, 1, memory_order_relaxed);
    r->state = c;
    r->on_gone = client_gone;
    gw_req_stream(r);
    socket_bound(r);
    h2o_req_t *h2o = r->h2o;
    h2o->res.status = 200;
    h2o->res.reason = "OK";
    gw_reply_header(r, "content-type", "text/event-stream");
    gw_reply_header(r, "cache-control", "no-cache");
    gw_reply_header(r, "x-accel-buffering", "no");
    h2o_start_response(h2o, &c->gen);
    size_t len = 0;
    const char *last = gw_header(r, "last-event-id", &len);
    client_begin(c, last, len);
}

static void live_serve(gw_req *r);

void gw_on_live(gw_req *r)
{
    uint64_t id = r->params[0];
    const char *form = gw_query(r, "availability");
    if (form != NULL && strcmp(form, "full") != 0 && strcmp(form, "summary") != 0 &&
        strcmp(form, "none") != 0) {
        gw_reply_error(r, 400, "invalid_parameter", "availability: expected full, summary or none");
        return;
    }
    if (id == 0 || id > TG_WIRE_ID_MAX) {
        gw_reply_error(r, 404, "not_found", "event %" PRIu64 " not found", id);
        return;
    }
    if (r->worker->live->clients >= r->gw->cfg.live_clients_max) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many live streams on this gateway");
        return;
    }
    /* A crowd that opens the page at once may wait here for the worker's
     * first snapshot: it is not work in progress (one fetch serves all of
     * it), and counted in service it would turn away every other request,
     * holds included, and streams beyond --inflight-max.  It stays bounded
     * by the connections. */
    gw_req_leave_service(r);
    live_serve(r);
}

static void live_serve(gw_req *r)
{
    const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX];
    gw_snap *snaps[GW_EVENT_PARTITIONS_MAX];
    uint32_t count = gw_event_layouts(r, layouts);
    if (count == 0) {
        return;
    }
    live_wait *st = r->state;
    for (uint32_t p = 0; p < count; p++) {
        snaps[p] = gw_snap_follow(r->worker, layouts[p]);
        if (snaps[p] == NULL) {
            gw_reply_error_retry(r, 503, "unavailable", 1,
                                 "this gateway follows too many partitions to add %" PRIu32,
                                 layouts[p]->partition_id);
            return;
        }
        if (snaps[p]->ready) {
            continue;
        }
        if (st == NULL) {
            st = r->state = gw_alloc(r, sizeof(*st));
        }
        if (st->waits <= GW_EVENT_PARTITIONS_MAX &&
            gw_snap_wait(snaps[p], r, &st->wait, live_serve)) {
            st->waits++;
            return;
        }
        gw_reply_error_retry(r, 503, "unavailable", 1,
                             "partition %" PRIu32 " has no reachable unit; try again shortly",
                             layouts[p]->partition_id);
        return;
    }
    gw_live_event *ev = event_find(r->worker->live, r->params[0]);
    if (ev == NULL) {
        ev = event_new(r->worker->live, r->params[0], layouts, snaps, count);
    }
    if (ev == NULL) {
        gw_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    stream_start(r, ev);
}

tg_err gw_live_init(gw_worker *w)
{
    gw_live *live = calloc(1, sizeof(*live));
    if (live == NULL) {
        return TG_ENOMEM;
    }
    live->worker = w;
    uv_timer_init(&w->loop, &live->tick);
    live->tick.data = live;
    uv_timer_start(&live->tick, on_tick, GW_LIVE_TICK_MS, GW_LIVE_TICK_MS);
    w->live = live;
    return TG_OK;
}

/*
 * client.c — requests to processing units (see client.h).
 *
 * A request is a slot: an nng AIO, a context opened on the endpoint's REQ
 * socket for this one exchange, the encoded request and room for the
 * decoded reply.  Slots come from a free list made at open (bounded, no
 * allocation per request beyond nng's own message and context).  The slot's
 * AIO callback drives it: send done → receive with what is left of the
 * timeout → decode → user callback → close context → slot back on the list.
 *
 * Locks: `lock` protects the free list, the endpoint table and the routes;
 * it is never held while nng runs a callback or while a user callback runs.
 * An endpoint's socket may be replaced (endpoint_note_locked), so a slot
 * keeps the socket it was sent through.
 *
 * The endpoint table is bounded (TG_CLIENT_ENDPOINTS_MAX), but a grid that
 * lives long sees many more unit addresses than that: units come and go, on
 * new ports.  When the table is full, a new address takes the place of the
 * least recently used endpoint that no route names and no request uses; its
 * socket is closed on a thread of its own, since closing one whose peer went
 * away can hang in nng 1.5.2 (client.h).
 */
#include "tixgrid/client.h"

#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a socket's pipe callbacks (nng's threads) keep: its connections, and
 * whether it ever had one.  One per socket, freed once the socket is closed
 * (by tg_client_close, or by the thread that retires it); a socket set
 * aside stays open, and so does its state (client.h). */
typedef struct {
    _Atomic int32_t pipes;
    _Atomic bool connected; /* had a connection once */
} socket_state;

typedef struct {
    char url[TG_URL_BYTES];
    nng_socket sock;
    socket_state *state;     /* sock's */
    uint32_t timeouts;       /* in a row on sock, since its last answer */
    int64_t redial_after_ns; /* no new socket before */
    uint32_t inflight;       /* slots taken through it (any of its sockets) */
    int64_t used_ns;         /* when a slot last took it */
} client_endpoint;

typedef struct {
    uint32_t partition_id;
    int32_t endpoint; /* index into endpoints, -1 when removed */
} client_route;

typedef struct client_slot {
    struct tg_client *client;
    struct client_slot *next_free;
    nng_aio *aio;
    nng_ctx ctx;
    int32_t ep;      /* the endpoint it was sent through */
    nng_socket sock; /* the endpoint's socket then */
    bool receiving;
    tg_wire_type expect; /* the ok reply's type for this request */
    int64_t deadline_ns;
    tg_client_cb cb;
    void *arg;
    const tg_wire_space *space;
    msgpack_sbuffer buf;
    /* A batch (cb NULL): its callback and its requests' types, in order. */
    tg_client_batch_cb batch_cb;
    uint32_t batch_count;
    uint8_t batch_types[TG_WIRE_BATCH_MAX];
} client_slot;

struct tg_client {
    pthread_mutex_t lock;
    pthread_cond_t idle_cond; /* signalled when busy drops to 0 */
    client_slot *slots;
    uint32_t slot_count;
    client_slot *free_list;
    uint32_t busy;
    bool closing;
    client_endpoint endpoints[TG_CLIENT_ENDPOINTS_MAX];
    uint32_t endpoint_count;
    client_route routes[TG_CLIENT_ROUTES_MAX];
    uint32_t route_count;
    uint32_t redials; /* sockets set aside (see client.h) */
};

static void slot_cb(void *arg);

tg_err tg_client_open(const tg_client_config *cfg, tg_client **out)
{
    uint32_t n =
        cfg != NULL && cfg->inflight_max != 0 ? cfg->inflight_max : TG_CLIENT_INFLIGHT_DEFAULT;
    if (n > TG_CLIENT_INFLIGHT_MAX) {
        return TG_EINVAL;
    }
    tg_client *c = calloc(1, sizeof(*c));
    client_slot *slots = calloc(n, sizeof(*slots));
    if (c == NULL || slots == NULL) {
        free(c);
        free(slots);
        return TG_ENOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->idle_cond, NULL);
    c->slots = slots;
    c->slot_count = n;
    for (uint32_t i = 0; i < n; i++) {
        slots[i].client = c;
        msgpack_sbuffer_init(&slots[i].buf);
        if (nng_aio_alloc(&slots[i].aio, slot_cb, &slots[i]) != 0) {
            c->slot_count = i;
            tg_client_close(c);
            return TG_ENOMEM;
        }
        slots[i].next_free = c->free_list;
        c->free_list = &slots[i];
    }
    *out = c;
    return TG_OK;
}

/* nng's pipe callback: counts the socket's connections.  Counted from
 * ADD_PRE: nng runs REM_POST for every pipe that had ADD_PRE, including
 * one closed before ADD_POST. */
static void pipe_event(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    socket_state *st = arg;
    (void)pipe;
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        atomic_fetch_add(&st->pipes, 1);
    } else if (ev == NNG_PIPE_EV_ADD_POST) {
        atomic_store(&st->connected, true);
    } else {
        atomic_fetch_sub(&st->pipes, 1);
    }
}

/* True when the socket lost the connection it had: its unit went away (a
 * killed process's sockets are closed by the kernel).  A request would wait
 * there for its whole timeout, for a unit that may never come back. */
static bool socket_lost(const socket_state *st)
{
    return atomic_load(&st->connected) && atomic_load(&st->pipes) <= 0;
}

/* A REQ socket dialling url in the background, its state counting its
 * connections. */
static tg_err socket_dial(const char *url, nng_socket *out, socket_state **state)
{
    nng_socket sock;
    socket_state *st = calloc(1, sizeof(*st));
    if (st == NULL || nng_req0_open(&sock) != 0) {
        free(st);
        return TG_ENOMEM;
    }
    if (nng_pipe_notify(sock, NNG_PIPE_EV_ADD_PRE, pipe_event, st) != 0 ||
        nng_pipe_notify(sock, NNG_PIPE_EV_ADD_POST, pipe_event, st) != 0 ||
        nng_pipe_notify(sock, NNG_PIPE_EV_REM_POST, pipe_event, st) != 0) {
        nng_close(sock);
        free(st);
        return TG_ENOMEM;
    }
    /* Never resend: a hold must not run twice (see client.h). */
    nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, 1000);
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, TG_WIRE_MESSAGE_BYTES_MAX + 4096u);
    int rv = nng_dial(sock, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_close(sock);
        free(st);
        tg_log_warn("client: cannot dial %s: %s", url, nng_strerror(rv));
        return TG_EINVAL;
    }
    *out = sock;
    *state = st;
    return TG_OK;
}

typedef struct {
    nng_socket sock;
    socket_state *state;
} retired_socket;

static void *retired_close_main(void *arg)
{
    retired_socket *r = arg;
    nng_close(r->sock); /* its pipe callbacks are over when it returns */
    free(r->state);
    free(r);
    return NULL;
}

/* Closes an endpoint's socket that nobody uses any more, off the caller's
 * thread (see the top).  If no thread can be had, the socket stays open,
 * as sockets set aside do. */
static void socket_retire(nng_socket sock, socket_state *state)
{
    retired_socket *r = malloc(sizeof(*r));
    pthread_attr_t attr;
    pthread_t t;
    bool started = false;
    if (r != NULL && pthread_attr_init(&attr) == 0) {
        *r = (retired_socket){.sock = sock, .state = state};
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64u * 1024u);
        started = pthread_create(&t, &attr, retired_close_main, r) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        free(r);
        tg_log_warn("client: no thread to close a socket: it stays open");
    }
}

/* With the lock held: the least recently used endpoint that no route names
 * and no request uses; -1 if every one is in use. */
static int32_t endpoint_idle_locked(const tg_client *c)
{
    int32_t best = -1;
    for (uint32_t i = 0; i < c->endpoint_count; i++) {
        const client_endpoint *e = &c->endpoints[i];
        bool routed = false;
        for (uint32_t k = 0; k < c->route_count && !routed; k++) {
            routed = c->routes[k].endpoint == (int32_t)i;
        }
        if (!routed && e->inflight == 0 && (best < 0 || e->used_ns < c->endpoints[best].used_ns)) {
            best = (int32_t)i;
        }
    }
    return best;
}

/* Finds or opens the endpoint for url; called with the lock held. */
static tg_err endpoint_get(tg_client *c, const char *url, int32_t *index)
{
    for (uint32_t i = 0; i < c->endpoint_count; i++) {
        if (strcmp(c->endpoints[i].url, url) == 0) {
            *index = (int32_t)i;
            return TG_OK;
        }
    }
    if (strlen(url) >= TG_URL_BYTES) {
        return TG_EINVAL;
    }
    bool grow = c->endpoint_count < TG_CLIENT_ENDPOINTS_MAX;
    int32_t at = grow ? (int32_t)c->endpoint_count : endpoint_idle_locked(c);
    if (at < 0) {
        return TG_ENOMEM; /* every endpoint is routed or busy */
    }
    nng_socket sock;
    socket_state *state;
    tg_err err = socket_dial(url, &sock, &state);
    if (err != TG_OK) {
        return err;
    }
    if (grow) {
        c->endpoint_count++;
    } else {
        socket_retire(c->endpoints[at].sock, c->endpoints[at].state);
    }
    c->endpoints[at] = (client_endpoint){.sock = sock, .state = state, .used_ns = tg_mono_ns()};
    memcpy(c->endpoints[at].url, url, strlen(url) + 1);
    *index = at;
    return TG_OK;
}

/* One more request in a row that got nothing from e's socket (it timed
 * out, or was refused because the socket lost its connection), with the
 * lock held: past TG_CLIENT_REDIAL_TIMEOUTS, the socket is set aside for a
 * new one (see client.h). */
static void endpoint_failed_locked(tg_client *c, client_endpoint *e)
{
    e->timeouts++;
    int64_t now = tg_mono_ns();
    nng_socket fresh;
    socket_state *fresh_state;
    if (e->timeouts >= TG_CLIENT_REDIAL_TIMEOUTS && now >= e->redial_after_ns &&
        c->redials < TG_CLIENT_REDIALS_MAX && !c->closing &&
        socket_dial(e->url, &fresh, &fresh_state) == TG_OK) {
        /* Replacing a socket that lost its connection: the new one is
         * refused at once as well until it has one of its own.  (Replacing
         * one that times out, it waits for its first, as at start.) */
        atomic_store(&fresh_state->connected, socket_lost(e->state));
        e->sock = fresh;
        e->state = fresh_state;
        e->timeouts = 0;
        e->redial_after_ns = now + (int64_t)TG_CLIENT_REDIAL_INTERVAL_MS * 1000000;
        c->redials++;
        tg_log_warn("client: %u requests in a row to %s timed out or found no connection: "
                    "dialling it again on a new socket",
                    TG_CLIENT_REDIAL_TIMEOUTS, e->url);
        if (c->redials == TG_CLIENT_REDIALS_MAX) {
            tg_log_warn("client: %u sockets set aside: no new one from now on",
                        TG_CLIENT_REDIALS_MAX);
        }
    }
}

/* After a request through slot s ended with the transport's err, with the
 * lock held: counts the timeouts in a row on its socket. */
static void endpoint_note_locked(tg_client *c, const client_slot *s, tg_err err)
{
    client_endpoint *e = &c->endpoints[s->ep];
    if (nng_socket_id(e->sock) != nng_socket_id(s->sock) || err == TG_ECLOSED) {
        return; /* set aside already, or closing */
    }
    if (err == TG_ETIMEDOUT) {
        endpoint_failed_locked(c, e);
    } else {
        e->timeouts = 0;
    }
}

/* With the lock held: true when endpoint ep's socket lost its connection
 * and stays without one.  Counted as a request that got nothing, so that a
 * socket nng never connects again (seen with nng 1.5.2 after a unit came
 * back at the same address) is set aside for a new one, as one whose
 * requests time out. */
static bool endpoint_lost_locked(tg_client *c, int32_t ep)
{
    client_endpoint *e = &c->endpoints[ep];
    if (!socket_lost(e->state)) {
        return false;
    }
    endpoint_failed_locked(c, e);
    return socket_lost(e->state); /* a new socket waits for its first connection */
}

tg_err tg_client_route(tg_client *c, uint32_t partition_id, const char *url)
{
    pthread_mutex_lock(&c->lock);
    client_route *r = NULL;
    for (uint32_t i = 0; i < c->route_count && r == NULL; i++) {
        r = c->routes[i].partition_id == partition_id ? &c->routes[i] : NULL;
    }
    /* The address a partition moves away from may give its place to the
     * one it moves to. */
    int32_t was = r != NULL ? r->endpoint : -1;
    if (r != NULL) {
        r->endpoint = -1;
    }
    int32_t ep = -1;
    tg_err err = url != NULL ? endpoint_get(c, url, &ep) : TG_OK;
    if (err == TG_OK && r == NULL) {
        if (c->route_count == TG_CLIENT_ROUTES_MAX) {
            err = TG_ENOMEM;
        } else {
            r = &c->routes[c->route_count++];
            r->partition_id = partition_id;
        }
    }
    if (r != NULL) {
        r->endpoint = err == TG_OK ? ep : was;
    }
    pthread_mutex_unlock(&c->lock);
    return err;
}

static tg_err from_nng(int rv)
{
    switch (rv) {
    case NNG_ETIMEDOUT:
        return TG_ETIMEDOUT;
    case NNG_ECLOSED:
    case NNG_ECANCELED:
        return TG_ECLOSED;
    case NNG_ENOMEM:
        return TG_ENOMEM;
    default:
        return TG_EUNAVAILABLE;
    }
}

/* Puts s back on the free list; lock held. */
static void slot_untake_locked(tg_client *c, client_slot *s)
{
    c->endpoints[s->ep].inflight--;
    s->next_free = c->free_list;
    c->free_list = s;
    if (--c->busy == 0) {
        pthread_cond_broadcast(&c->idle_cond);
    }
}

/* Gives back a slot that was never sent. */
static void slot_untake(tg_client *c, client_slot *s)
{
    pthread_mutex_lock(&c->lock);
    slot_untake_locked(c, s);
    pthread_mutex_unlock(&c->lock);
}

/* Gives back a slot whose request ended with the transport's err, noting
 * the outcome for its socket under the same lock. */
static void slot_release(tg_client *c, client_slot *s, tg_err err)
{
    nng_ctx_close(s->ctx);
    pthread_mutex_lock(&c->lock);
    endpoint_note_locked(c, s, err);
    slot_untake_locked(c, s);
    pthread_mutex_unlock(&c->lock);
}

/* Decodes one reply (a whole message, or one part of a batch reply) that
 * must be `expect` or an error; returns the outcome, *reply set unless the
 * reply broke the schema. */
static tg_err reply_decode(const void *body, size_t len, const tg_wire_space *space,
                           tg_wire_type expect, tg_msg *decoded, const tg_msg **reply)
{
    const char *why = NULL;
    *reply = NULL;
    tg_err err = tg_wire_decode(body, len, space, decoded, &why);
    if (err == TG_OK && decoded->type != expect && decoded->type != TG_WIRE_ERROR) {
        why = "reply type does not match the request";
        err = TG_EPROTO;
    }
    if (err != TG_OK) {
        tg_log_warn("client: malformed reply: %s", why != NULL ? why : "?");
        return err;
    }
    *reply = decoded;
    return decoded->type == TG_WIRE_ERROR ? (tg_err)decoded->error.code : TG_OK;
}

/* Decodes the reply, gives the slot back, then runs the user's callback;
 * err is the transport's.  The slot goes back first so that a caller who
 * sends again from (or right after) its callback always finds it free; the
 * reply therefore lives in this nng thread's own tg_msg, which only this
 * thread's next callback reuses. */
static void slot_finish(client_slot *s, tg_err err, nng_msg *msg)
{
    static _Thread_local tg_msg decoded;
    const tg_msg *reply = NULL;
    tg_err transport = err;
    if (err == TG_OK) {
        err = reply_decode(nng_msg_body(msg), nng_msg_len(msg), s->space, s->expect, &decoded,
                           &reply);
    }
    if (msg != NULL) {
        nng_msg_free(msg);
    }
    tg_client_cb cb = s->cb;
    void *arg = s->arg;
    slot_release(s->client, s, transport);
    cb(arg, err, reply);
}

/* Splits a batch reply into its parts.  A unit that refused the whole frame
 * answers one error reply instead, left in *whole: it stands for every
 * request of the batch. */
static tg_err batch_split(nng_msg *msg, uint32_t count, tg_wire_part *parts, tg_msg *whole)
{
    const void *body = nng_msg_body(msg);
    size_t len = nng_msg_len(msg);
    uint32_t n = 0;
    const char *why = NULL;
    whole->type = TG_WIRE_NONE;
    if (tg_wire_batch_parse(body, len, TG_WIRE_BATCH_OK, parts, &n, &why) == TG_OK) {
        if (n == count) {
            return TG_OK;
        }
        why = "batch reply: not one reply per request";
    } else if (tg_wire_decode(body, len, NULL, whole, NULL) == TG_OK &&
               whole->type == TG_WIRE_ERROR) {
        return (tg_err)whole->error.code;
    }
    tg_log_warn("client: malformed reply: %s", why != NULL ? why : "?");
    whole->type = TG_WIRE_NONE;
    return TG_EPROTO;
}

/* The batch's callbacks, one per request in order, each with its own reply
 * (a batch of one travelled as a plain request and has a plain reply). */
static void batch_finish(client_slot *s, tg_err err, nng_msg *msg)
{
    static _Thread_local tg_msg whole, decoded;
    tg_wire_part parts[TG_WIRE_BATCH_MAX];
    uint32_t count = s->batch_count;
    uint8_t types[TG_WIRE_BATCH_MAX];
    memcpy(types, s->batch_types, count);
    tg_client_batch_cb cb = s->batch_cb;
    void *arg = s->arg;
    slot_release(s->client, s, err);
    whole.type = TG_WIRE_NONE;
    if (err == TG_OK && count == 1) {
        parts[0] = (tg_wire_part){nng_msg_body(msg), nng_msg_len(msg)};
    } else if (err == TG_OK) {
        err = batch_split(msg, count, parts, &whole);
    }
    for (uint32_t i = 0; i < count; i++) {
        const tg_msg *reply = whole.type == TG_WIRE_ERROR ? &whole : NULL;
        tg_err each = err;
        if (err == TG_OK) {
            each = reply_decode(parts[i].data, parts[i].len, NULL,
                                tg_wire_reply_type((tg_wire_type)types[i]), &decoded, &reply);
        }
        cb(arg, i, each, reply);
    }
    if (msg != NULL) {
        nng_msg_free(msg);
    }
}

static void slot_done(client_slot *s, tg_err err, nng_msg *msg)
{
    if (s->batch_cb != NULL) {
        batch_finish(s, err, msg);
    } else {
        slot_finish(s, err, msg);
    }
}

static void slot_cb(void *arg)
{
    client_slot *s = arg;
    int rv = nng_aio_result(s->aio);
    if (!s->receiving) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(s->aio));
            slot_done(s, from_nng(rv), NULL);
            return;
        }
        pthread_mutex_lock(&s->client->lock);
        bool closing = s->client->closing;
        pthread_mutex_unlock(&s->client->lock);
        if (closing) {
            /* Close may already have stopped this AIO: a receive armed now
             * would never call back, and the user's callback must run. */
            slot_done(s, TG_ECLOSED, NULL);
            return;
        }
        s->receiving = true;
        int64_t left_ms = (s->deadline_ns - tg_mono_ns()) / 1000000;
        nng_aio_set_timeout(s->aio, left_ms > 0 ? (nng_duration)left_ms : 1);
        nng_ctx_recv(s->ctx, s->aio);
        return;
    }
    slot_done(s, rv == 0 ? TG_OK : from_nng(rv), rv == 0 ? nng_aio_get_msg(s->aio) : NULL);
}

/* Takes a free slot and resolves the socket; NULL url means by partition. */
static tg_err slot_take(tg_client *c, const char *url, uint32_t partition_id, nng_socket *sock,
                        client_slot **out)
{
    pthread_mutex_lock(&c->lock);
    int32_t ep = -1;
    tg_err err = c->closing ? TG_ECLOSED : TG_OK;
    if (err == TG_OK && url != NULL) {
        err = endpoint_get(c, url, &ep);
    }
    for (uint32_t i = 0; err == TG_OK && url == NULL && i < c->route_count; i++) {
        ep = c->routes[i].partition_id == partition_id ? c->routes[i].endpoint : ep;
    }
    if (err == TG_OK && (ep < 0 || endpoint_lost_locked(c, ep))) {
        err = TG_EUNAVAILABLE;
    }
    if (err == TG_OK && c->free_list == NULL) {
        err = TG_EBUSY;
    }
    if (err == TG_OK) {
        *out = c->free_list;
        c->free_list = (*out)->next_free;
        c->busy++;
        *sock = c->endpoints[ep].sock;
        c->endpoints[ep].inflight++;
        c->endpoints[ep].used_ns = tg_mono_ns();
        (*out)->ep = ep;
        (*out)->sock = *sock;
    }
    pthread_mutex_unlock(&c->lock);
    return err;
}

/* A fresh message holding len bytes of data. */
static tg_err message_of(const void *data, size_t len, nng_msg **out)
{
    if (nng_msg_alloc(out, 0) != 0) {
        return TG_ENOMEM;
    }
    if (nng_msg_append(*out, data, len) != 0) {
        nng_msg_free(*out);
        return TG_ENOMEM;
    }
    return TG_OK;
}

/* Encodes req into a fresh message; TG_EINVAL if req breaks the schema. */
static tg_err request_message(client_slot *s, const tg_msg *req, nng_msg **out)
{
    const char *why = NULL;
    tg_err err = tg_wire_encode(req, &s->buf, &why);
    if (err != TG_OK) {
        tg_log_warn("client: request does not encode: %s", why != NULL ? why : "?");
        return err;
    }
    return message_of(s->buf.data, s->buf.size, out);
}

/* Sends msg on a context of sock for slot s, whose callback fields are set;
 * on error the slot goes back and msg is freed. */
static tg_err slot_send(tg_client *c, client_slot *s, nng_socket sock, nng_msg *msg,
                        uint32_t timeout_ms)
{
    if (nng_ctx_open(&s->ctx, sock) != 0) {
        nng_msg_free(msg);
        slot_untake(c, s);
        return TG_ENOMEM;
    }
    uint32_t t = timeout_ms != 0 ? timeout_ms : TG_CLIENT_TIMEOUT_MS_DEFAULT;
    s->receiving = false;
    s->deadline_ns = tg_mono_ns() + (int64_t)t * 1000000;
    nng_aio_set_timeout(s->aio, (nng_duration)t);
    nng_aio_set_msg(s->aio, msg);
    nng_ctx_send(s->ctx, s->aio);
    return TG_OK;
}

static tg_err send_common(tg_client *c, const char *url, uint32_t partition_id, const tg_msg *req,
                          uint32_t timeout_ms, const tg_wire_space *space, tg_client_cb cb,
                          void *arg)
{
    TG_ASSERT(cb != NULL && req != NULL);
    client_slot *s;
    nng_socket sock;
    tg_err err = slot_take(c, url, partition_id, &sock, &s);
    if (err != TG_OK) {
        return err;
    }
    nng_msg *msg = NULL;
    err = request_message(s, req, &msg);
    if (err != TG_OK) {
        slot_untake(c, s);
        return err;
    }
    s->cb = cb;
    s->batch_cb = NULL;
    s->arg = arg;
    s->expect = tg_wire_reply_type(req->type);
    s->space = space;
    return slot_send(c, s, sock, msg, timeout_ms);
}

tg_err tg_client_send_batch(tg_client *c, uint32_t partition_id, tg_wire_batch *b,
                            uint32_t timeout_ms, tg_client_batch_cb cb, void *arg)
{
    TG_ASSERT(cb != NULL && b->count >= 1 && b->count <= TG_WIRE_BATCH_MAX);
    client_slot *s;
    nng_socket sock;
    tg_err err = slot_take(c, NULL, partition_id, &sock, &s);
    if (err != TG_OK) {
        return err;
    }
    /* One request travels alone: the unit's plain path is the cheaper. */
    tg_wire_part one = tg_wire_batch_part(b, 0);
    const uint8_t *data = one.data;
    size_t len = one.len;
    if (b->count > 1) {
        tg_wire_batch_message(b, &data, &len);
    }
    nng_msg *msg = NULL;
    if (message_of(data, len, &msg) != TG_OK) {
        slot_untake(c, s);
        return TG_ENOMEM;
    }
    s->cb = NULL;
    s->batch_cb = cb;
    s->arg = arg;
    s->batch_count = b->count;
    memcpy(s->batch_types, b->types, b->count);
    s->expect = b->count > 1 ? TG_WIRE_BATCH_OK : tg_wire_reply_type((tg_wire_type)b->types[0]);
    s->space = NULL;
    return slot_send(c, s, sock, msg, timeout_ms);
}

tg_err tg_client_send(tg_client *c, uint32_t partition_id, const tg_msg *req, uint32_t timeout_ms,
                      const tg_wire_space *space, tg_client_cb cb, void *arg)
{
    return send_common(c, NULL, partition_id, req, timeout_ms, space, cb, arg);
}

tg_err tg_client_send_to(tg_client *c, const char *url, const tg_msg *req, uint32_t timeout_ms,
                         const tg_wire_space *space, tg_client_cb cb, void *arg)
{
    return send_common(c, url, 0, req, timeout_ms, space, cb, arg);
}

/* ---- Blocking calls ---------------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    bool done;
    tg_err err;
    tg_msg *reply;
} call_wait;

static void call_cb(void *arg, tg_err err, const tg_msg *reply)
{
    call_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->err = err;
    if (reply != NULL) {
        *w->reply = *reply;
    } else {
        w->reply->type = TG_WIRE_NONE;
    }
    w->done = true;
    pthread_cond_signal(&w->done_cond);
    pthread_mutex_unlock(&w->lock);
}

static tg_err call_common(tg_client *c, const char *url, uint32_t partition_id, const tg_msg *req,
                          uint32_t timeout_ms, const tg_wire_space *space, tg_msg *reply)
{
    call_wait w = {.reply = reply};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.done_cond, NULL);
    tg_err err = send_common(c, url, partition_id, req, timeout_ms, space, call_cb, &w);
    if (err != TG_OK) {
        reply->type = TG_WIRE_NONE; /* refused before it went: no reply, as call_cb says */
    } else {
        pthread_mutex_lock(&w.lock);
        while (!w.done) {
            pthread_cond_wait(&w.done_cond, &w.lock);
        }
        err = w.err;
        pthread_mutex_unlock(&w.lock);
    }
    pthread_cond_destroy(&w.done_cond);
    pthread_mutex_destroy(&w.lock);
    return err;
}

tg_err tg_client_call(tg_client *c, uint32_t partition_id, const tg_msg *req, uint32_t timeout_ms,
                      const tg_wire_space *space, tg_msg *reply)
{
    return call_common(c, NULL, partition_id, req, timeout_ms, space, reply);
}

tg_err tg_client_call_to(tg_client *c, const char *url, const tg_msg *req, uint32_t timeout_ms,
                         const tg_wire_space *space, tg_msg *reply)
{
    return call_common(c, url, 0, req, timeout_ms, space, reply);
}

void tg_client_close(tg_client *c)
{
    if (c == NULL) {
        return;
    }
    /* Cancel until every request has called back (a callback between its
     * send and its receive re-checks closing and finishes itself), and only
     * then free the AIOs: freeing one stops it, and a stopped AIO never
     * calls back. */
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    while (c->busy > 0) {
        pthread_mutex_unlock(&c->lock);
        for (uint32_t i = 0; i < c->slot_count; i++) {
            nng_aio_cancel(c->slots[i].aio);
        }
        pthread_mutex_lock(&c->lock);
        struct timespec until = tg_realtime_after_ms(10);
        pthread_cond_timedwait(&c->idle_cond, &c->lock, &until);
    }
    pthread_mutex_unlock(&c->lock);
    for (uint32_t i = 0; i < c->slot_count; i++) {
        nng_aio_free(c->slots[i].aio); /* waits for its callback */
        msgpack_sbuffer_destroy(&c->slots[i].buf);
    }
    for (uint32_t i = 0; i < c->endpoint_count; i++) {
        nng_close(c->endpoints[i].sock); /* its pipe callbacks are over when it returns */
        free(c->endpoints[i].state);
    }
    pthread_cond_destroy(&c->idle_cond);
    pthread_mutex_destroy(&c->lock);
    free(c->slots);
    free(c);
}

tg_err tg_socket_wait(nng_socket sock, uint32_t timeout_ms)
{
    int fd = -1;
    if (nng_socket_get_int(sock, NNG_OPT_RECVFD, &fd) != 0) {
        fd = -1; /* poll(2) ignores it: a plain sleep, so that no caller spins */
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms);
    /* A signal (n < 0, EINTR) ends the wait early, as a timeout would. */
    return n > 0 ? TG_OK : TG_ETIMEDOUT;
}

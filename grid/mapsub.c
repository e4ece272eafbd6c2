/*
 * mapsub.c — following the manager's published map (see mapsub.h).
 *
 * One AIO receives on the SUB socket; its callback decodes the message into
 * the subscriber's own space (about half a megabyte for the largest map,
 * allocated once at open), hands a newer map to the user's callback and
 * receives again.  There is one receive in flight at a time, so the
 * callbacks never overlap and `epoch` needs no lock of its own (it is an
 * atomic only for tg_mapsub_epoch's readers on other threads).
 *
 * Why not poll nng_recv from a thread of our own: the gateway's map thread
 * may block for a second on a unit that does not answer (its layout and
 * readiness calls), and a map telling it that this unit is dead must not
 * wait behind that call.
 */
#include "tixgrid/mapsub.h"

#include "tixgrid/log.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Redial a manager at least this often: a standby that took over listens
 * where nobody did before. */
#define MAPSUB_RECONNECT_MIN_MS 50
#define MAPSUB_RECONNECT_MAX_MS 250

struct tg_mapsub {
    nng_socket sock;
    nng_aio *aio;
    tg_mapsub_cb cb;
    void *arg;
    atomic_bool stopping;
    _Atomic uint64_t epoch; /* of the last map delivered */
    bool malformed_logged;
    tg_msg msg;
    tg_wire_member members[TG_GRID_MEMBERS_MAX];
    tg_wire_placement placements[TG_GRID_PARTITIONS_MAX];
};

/* Calls f(arg, url) for each address of "url,url"; false when the list is
 * empty, too long, or has an empty or oversized address. */
static bool urls_each(const char *list, tg_err (*f)(void *arg, const char *url), void *arg,
                      tg_err *err)
{
    const char *p = list;
    *err = TG_OK;
    for (uint32_t n = 0; n < TG_GRID_MANAGERS_MAX; n++) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == 0 || len >= TG_URL_BYTES) {
            return false;
        }
        char url[TG_URL_BYTES];
        memcpy(url, p, len);
        url[len] = '\0';
        if (f != NULL && (*err = f(arg, url)) != TG_OK) {
            return false;
        }
        if (end == NULL) {
            return true;
        }
        p = end + 1;
    }
    return false;
}

tg_err tg_mapsub_urls_check(const char *urls)
{
    tg_err err;
    return urls != NULL && urls_each(urls, NULL, NULL, &err) ? TG_OK : TG_EINVAL;
}

static tg_err dial_one(void *arg, const char *url)
{
    tg_mapsub *s = arg;
    int rv = nng_dial(s->sock, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        tg_log_warn("map: cannot dial the manager's map at %s: %s", url, nng_strerror(rv));
        return TG_EINVAL;
    }
    return TG_OK;
}

/* Decodes one published message; delivers it when it is a newer map. */
static void deliver(tg_mapsub *s, nng_msg *msg)
{
    const char *why = NULL;
    tg_wire_space space = {.members = s->members,
                           .members_capacity = TG_GRID_MEMBERS_MAX,
                           .placements = s->placements,
                           .placements_capacity = TG_GRID_PARTITIONS_MAX};
    tg_err err = tg_wire_decode_event(nng_msg_body(msg), nng_msg_len(msg), &space, &s->msg, &why);
    if (err != TG_OK || s->msg.type != TG_WIRE_GRID_MAP) {
        if (!s->malformed_logged) {
            tg_log_warn("map: a malformed map was published: %s", why != NULL ? why : "not a map");
            s->malformed_logged = true;
        }
        return;
    }
    if (s->msg.grid_map.epoch <= atomic_load(&s->epoch)) {
        return; /* a republish, or an older manager's */
    }
    s->cb(s->arg, &s->msg);
    atomic_store(&s->epoch, s->msg.grid_map.epoch);
}

static void receive_cb(void *arg)
{
    tg_mapsub *s = arg;
    int rv = nng_aio_result(s->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&s->stopping)) {
        return;
    }
    if (rv == 0) {
        nng_msg *msg = nng_aio_get_msg(s->aio);
        deliver(s, msg);
        nng_msg_free(msg);
    }
    nng_recv_aio(s->sock, s->aio);
}

static tg_err socket_open(tg_mapsub *s, const char *urls)
{
    if (nng_sub0_open(&s->sock) != 0) {
        return TG_ENOMEM;
    }
    const uint8_t topic[TG_WIRE_TOPIC_BYTES] = {0xff, 0xff, 0xff, 0xff};
    nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, topic, sizeof(topic));
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, TG_WIRE_MESSAGE_BYTES_MAX + 4096u);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, MAPSUB_RECONNECT_MIN_MS);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, MAPSUB_RECONNECT_MAX_MS);
    tg_err err;
    if (!urls_each(urls, dial_one, s, &err)) {
        return err != TG_OK ? err : TG_EINVAL;
    }
    return TG_OK;
}

tg_err tg_mapsub_open(const char *urls, tg_mapsub_cb cb, void *arg, tg_mapsub **out)
{
    if (cb == NULL || tg_mapsub_urls_check(urls) != TG_OK) {
        return TG_EINVAL;
    }
    tg_mapsub *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return TG_ENOMEM;
    }
    s->cb = cb;
    s->arg = arg;
    tg_err err = nng_aio_alloc(&s->aio, receive_cb, s) == 0 ? TG_OK : TG_ENOMEM;
    if (err == TG_OK) {
        err = socket_open(s, urls);
    }
    if (err != TG_OK) {
        if (s->aio != NULL) {
            nng_aio_free(s->aio);
        }
        free(s); /* the socket, if opened, stays: see mapsub.h */
        return err;
    }
    nng_recv_aio(s->sock, s->aio);
    *out = s;
    return TG_OK;
}

void tg_mapsub_close(tg_mapsub *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->stopping, true);
    nng_aio_stop(s->aio); /* cancels the receive, waits for a callback running */
    nng_aio_free(s->aio);
    free(s);
}

uint64_t tg_mapsub_epoch(tg_mapsub *s)
{
    return atomic_load(&s->epoch);
}

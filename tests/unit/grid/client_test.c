/*
 * client_test.c — the routing client (tixgrid/client.h) sets aside a socket
 * whose requests all time out and dials the address again.
 *
 * The server is a REP socket in this process that never answers what comes
 * through the first connection it sees — as an old socket to a unit that
 * died and was started again at the same address was seen to be left — and
 * answers every other connection with an error reply (any request accepts
 * one).
 */
#include <criterion/criterion.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tixgrid/client.h"
#include "tixgrid/limits.h"
#include "tixgrid/wire.h"

static char url[128];
static nng_socket server;
static pthread_t server_thread;
static atomic_bool stopping;
static atomic_uint ignored, answered;

/* Answers with an error reply; drops what the first connection sends. */
static void *serve(void *arg)
{
    (void)arg;
    uint32_t first_pipe = 0;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    tg_msg reply = {.type = TG_WIRE_ERROR};
    reply.error.code = TG_ENOT_FOUND;
    snprintf(reply.error.message, sizeof(reply.error.message), "answered");
    cr_assert_eq(tg_wire_encode(&reply, &buf, NULL), TG_OK);
    while (!atomic_load(&stopping)) {
        nng_msg *msg;
        if (nng_recvmsg(server, &msg, 0) != 0) {
            continue; /* the receive timeout: look at the stop flag */
        }
        uint32_t pipe = nng_pipe_id(nng_msg_get_pipe(msg));
        first_pipe = first_pipe == 0 ? pipe : first_pipe;
        if (pipe == first_pipe) {
            atomic_fetch_add(&ignored, 1);
            nng_msg_free(msg); /* REP forgets it at the next receive */
            continue;
        }
        nng_msg_clear(msg);
        cr_assert_eq(nng_msg_append(msg, buf.data, buf.size), 0);
        atomic_fetch_add(&answered, 1); /* before the client can see the answer */
        cr_assert_eq(nng_sendmsg(server, msg, 0), 0);
    }
    msgpack_sbuffer_destroy(&buf);
    return NULL;
}

static void start_server(void)
{
    snprintf(url, sizeof(url), "ipc:///tmp/tixgrid-client-test-%d.sock", (int)getpid());
    cr_assert_eq(nng_rep0_open(&server), 0);
    cr_assert_eq(nng_socket_set_ms(server, NNG_OPT_RECVTIMEO, 50), 0);
    cr_assert_eq(nng_listen(server, url, NULL, 0), 0);
    cr_assert_eq(pthread_create(&server_thread, NULL, serve, NULL), 0);
}

static void stop_server(void)
{
    atomic_store(&stopping, true);
    pthread_join(server_thread, NULL);
    unlink(url + strlen("ipc://"));
    /* The server socket stays open: the client's sockets set aside do too. */
}

TestSuite(client, .init = start_server, .fini = stop_server, .timeout = 30);

static tg_err stats(tg_client *c, uint32_t timeout_ms)
{
    static tg_msg reply;
    return tg_client_call_to(c, url, &(tg_msg){.type = TG_WIRE_STATS}, timeout_ms, NULL, &reply);
}

Test(client, a_socket_whose_requests_all_time_out_is_replaced_by_a_new_one)
{
    tg_client *c;
    cr_assert_eq(tg_client_open(&(tg_client_config){.inflight_max = 8}, &c), TG_OK);
    /* Below the threshold the socket is kept: each request times out. */
    for (uint32_t i = 0; i < TG_CLIENT_REDIAL_TIMEOUTS; i++) {
        tg_err err = stats(c, 300);
        cr_assert_eq(err, TG_ETIMEDOUT, "request %u: %s", i + 1, tg_errname(err));
    }
    cr_assert_eq(atomic_load(&ignored), TG_CLIENT_REDIAL_TIMEOUTS);
    /* The next goes through a new connection, and is answered. */
    cr_assert_eq(stats(c, 3000), TG_ENOT_FOUND);
    cr_assert_eq(stats(c, 3000), TG_ENOT_FOUND);
    cr_assert_eq(atomic_load(&answered), 2u);
    cr_assert_eq(atomic_load(&ignored), TG_CLIENT_REDIAL_TIMEOUTS);
    tg_client_close(c);
}

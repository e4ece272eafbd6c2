/*
 * client_test.c — the routing client (tixgrid/client.h): it sets aside a
 * socket whose requests all time out and dials the address again, and
 * refuses requests to a unit whose connection closed.
 *
 * The server is a REP socket in this process that never answers what comes
 * through the first connection it sees — as an old socket to a unit that
 * died and was started again at the same address was seen to be left — and
 * answers every other connection with an error reply (any request accepts
 * one).
 *
 * A unit that went away: a request to it is refused at once once its
 * connection closed, and goes through again once it is back.
 *
 * tg_socket_wait: a wait for a message that does not come times out
 * without nng's timer thread spinning (the process's CPU time stays near
 * zero), and one that comes ends it.
 */
#include <criterion/criterion.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
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

static int64_t ms_of(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define WAITS   20
#define WAIT_MS 10u

Test(socket_wait, times_out_without_spinning_and_ends_when_a_message_comes)
{
    char where[128];
    snprintf(where, sizeof(where), "ipc:///tmp/tixgrid-socket-wait-%d.sock", (int)getpid());
    nng_socket rep, req;
    cr_assert_eq(nng_rep0_open(&rep), 0);
    cr_assert_eq(nng_listen(rep, where, NULL, 0), 0);
    /* A receive timeout of 10 ms costs nng 1.5.2 about 0.9 ms of CPU each
     * time it fires (client.h): 20 of them would cost some 18 ms. */
    int64_t cpu0 = ms_of(CLOCK_PROCESS_CPUTIME_ID), wall0 = ms_of(CLOCK_MONOTONIC);
    for (int i = 0; i < WAITS; i++) {
        cr_assert_eq(tg_socket_wait(rep, WAIT_MS), TG_ETIMEDOUT, "wait %d", i);
    }
    int64_t cpu = ms_of(CLOCK_PROCESS_CPUTIME_ID) - cpu0, wall = ms_of(CLOCK_MONOTONIC) - wall0;
    cr_assert_geq(wall, WAITS * WAIT_MS - WAITS, "the waits ended early: %lld ms", (long long)wall);
    cr_assert_lt(cpu, 6, "%d waits of %u ms used %lld ms of CPU", WAITS, WAIT_MS, (long long)cpu);

    cr_assert_eq(nng_req0_open(&req), 0);
    cr_assert_eq(nng_dial(req, where, NULL, 0), 0);
    cr_assert_eq(nng_send(req, "x", 1, 0), 0);
    cr_assert_eq(tg_socket_wait(rep, 5000), TG_OK);
    nng_msg *msg = NULL;
    cr_assert_eq(nng_recvmsg(rep, &msg, NNG_FLAG_NONBLOCK), 0, "woken, yet nothing to receive");
    cr_assert_eq(nng_msg_len(msg), 1u);
    nng_msg_free(msg);
    nng_close(req);
    nng_close(rep);
    unlink(where + strlen("ipc://"));
}

/* ---- A unit that went away ---------------------------------------------------- */

/* A REP socket at lost_url answering every request with an error reply, on
 * a thread of its own until lost_stop. */
static char lost_url[128];
static atomic_bool lost_stop;

static void *answer_all(void *arg)
{
    nng_socket s = *(nng_socket *)arg;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    tg_msg reply = {.type = TG_WIRE_ERROR};
    reply.error.code = TG_ENOT_FOUND;
    cr_assert_eq(tg_wire_encode(&reply, &buf, NULL), TG_OK);
    while (!atomic_load(&lost_stop)) {
        nng_msg *msg;
        if (nng_recvmsg(s, &msg, 0) != 0) {
            continue;
        }
        nng_msg_clear(msg);
        cr_assert_eq(nng_msg_append(msg, buf.data, buf.size), 0);
        if (nng_sendmsg(s, msg, 0) != 0) {
            nng_msg_free(msg);
        }
    }
    msgpack_sbuffer_destroy(&buf);
    return NULL;
}

static void unit_up(nng_socket *s, pthread_t *t)
{
    atomic_store(&lost_stop, false);
    cr_assert_eq(nng_rep0_open(s), 0);
    cr_assert_eq(nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, 20), 0);
    cr_assert_eq(nng_listen(*s, lost_url, NULL, 0), 0);
    cr_assert_eq(pthread_create(t, NULL, answer_all, s), 0);
}

static void unit_down(nng_socket *s, pthread_t t)
{
    atomic_store(&lost_stop, true);
    pthread_join(t, NULL);
    cr_assert_eq(nng_close(*s), 0); /* as the kernel does for a killed unit */
}

static tg_err stats_to(tg_client *c, uint32_t timeout_ms)
{
    static tg_msg reply;
    return tg_client_call_to(c, lost_url, &(tg_msg){.type = TG_WIRE_STATS}, timeout_ms, NULL,
                             &reply);
}

TestSuite(client_lost, .timeout = 30);

/* lost_url named after tag, a unit answering there, and a client. */
static tg_client *lost_start(const char *tag, nng_socket *s, pthread_t *t)
{
    snprintf(lost_url, sizeof(lost_url), "ipc:///tmp/tixgrid-client-%s-%d.sock", tag,
             (int)getpid());
    unit_up(s, t);
    tg_client *c;
    cr_assert_eq(tg_client_open(&(tg_client_config){.inflight_max = 8}, &c), TG_OK);
    return c;
}

/* Routes partition to n addresses nobody listens at, one after another. */
static void route_many(tg_client *c, uint32_t partition, const char *tag, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        char gone[128];
        snprintf(gone, sizeof(gone), "ipc:///tmp/tixgrid-client-%s-%d-%u.sock", tag, (int)getpid(),
                 i);
        tg_err err = tg_client_route(c, partition, gone);
        cr_assert_eq(err, TG_OK, "address %u: %s", i + 1, tg_errname(err));
    }
}

/* A request to a unit whose connection closed is refused at once
 * (TG_EUNAVAILABLE) instead of waiting its whole timeout for a unit that
 * may never come back; one to a unit not connected yet waits for the
 * connection; and once the unit is back, requests go through again. */
Test(client_lost, a_unit_whose_connection_closed_is_refused_at_once_until_it_is_back)
{
    snprintf(lost_url, sizeof(lost_url), "ipc:///tmp/tixgrid-client-lost-%d.sock", (int)getpid());
    nng_socket s;
    pthread_t t;
    unit_up(&s, &t);
    tg_client *c;
    cr_assert_eq(tg_client_open(&(tg_client_config){.inflight_max = 8}, &c), TG_OK);
    cr_assert_eq(stats_to(c, 3000), TG_ENOT_FOUND, "the first request waits for the dial");

    unit_down(&s, t);
    tg_err err = TG_ENOT_FOUND;
    for (int i = 0; i < 20 && err != TG_EUNAVAILABLE; i++) {
        usleep(5000); /* the client hears of the close on nng's thread */
        err = stats_to(c, 500);
    }
    cr_assert_eq(err, TG_EUNAVAILABLE, "got %s", tg_errname(err));
    int64_t t0 = ms_of(CLOCK_MONOTONIC);
    cr_assert_eq(stats_to(c, 3000), TG_EUNAVAILABLE);
    cr_assert_lt(ms_of(CLOCK_MONOTONIC) - t0, 100, "refused at once, not after the timeout");

    unit_up(&s, &t);
    err = TG_EUNAVAILABLE;
    for (int i = 0; i < 300 && err == TG_EUNAVAILABLE; i++) {
        usleep(10000); /* the socket redials within TG's reconnect interval */
        err = stats_to(c, 3000);
    }
    cr_assert_eq(err, TG_ENOT_FOUND, "back: got %s", tg_errname(err));
    tg_client_close(c);
    unit_down(&s, t);
    unlink(lost_url + strlen("ipc://"));
}

/* A grid that lives long sees more unit addresses than the client's table
 * holds (units come and go on new ports): a partition moved across many of
 * them is still routed to the newest, and a route in use keeps its
 * endpoint meanwhile. */
Test(client_lost, a_partition_moved_across_more_addresses_than_the_table_holds_still_routes)
{
    nng_socket s;
    pthread_t t;
    tg_client *c = lost_start("many", &s, &t);
    cr_assert_eq(tg_client_route(c, 8, lost_url), TG_OK);
    static tg_msg reply;
    const tg_msg stats_req = {.type = TG_WIRE_STATS};
    cr_assert_eq(tg_client_call(c, 8, &stats_req, 3000, NULL, &reply), TG_ENOT_FOUND);
    route_many(c, 7, "gone", 3 * TG_CLIENT_ENDPOINTS_MAX);
    cr_assert_eq(tg_client_call(c, 8, &stats_req, 3000, NULL, &reply), TG_ENOT_FOUND,
                 "the routed endpoint was kept");
    cr_assert_eq(tg_client_route(c, 7, lost_url), TG_OK);
    cr_assert_eq(tg_client_call(c, 7, &stats_req, 3000, NULL, &reply), TG_ENOT_FOUND);
    tg_client_close(c);
    unit_down(&s, t);
    unlink(lost_url + strlen("ipc://"));
}

/* With every endpoint routed, a new address has no place: TG_ENOMEM, and
 * the routes stay as they were.  A partition moving to a new address may
 * take the place of the one it leaves. */
Test(client_lost, a_full_table_of_routed_endpoints_refuses_a_new_address_but_lets_a_move_through)
{
    tg_client *c;
    cr_assert_eq(tg_client_open(&(tg_client_config){.inflight_max = 8}, &c), TG_OK);
    char addr[128];
    for (uint32_t i = 0; i < TG_CLIENT_ENDPOINTS_MAX; i++) {
        snprintf(addr, sizeof(addr), "ipc:///tmp/tixgrid-client-full-%d-%u.sock", (int)getpid(), i);
        cr_assert_eq(tg_client_route(c, i, addr), TG_OK, "address %u", i);
    }
    snprintf(addr, sizeof(addr), "ipc:///tmp/tixgrid-client-full-%d-new.sock", (int)getpid());
    cr_assert_eq(tg_client_route(c, TG_CLIENT_ENDPOINTS_MAX, addr), TG_ENOMEM);
    cr_assert_eq(tg_client_route(c, 0, addr), TG_OK, "partition 0 moves to a new address");
    snprintf(addr, sizeof(addr), "ipc:///tmp/tixgrid-client-full-%d-newer.sock", (int)getpid());
    cr_assert_eq(tg_client_route(c, TG_CLIENT_ENDPOINTS_MAX, addr), TG_ENOMEM);
    tg_client_close(c);
}

static _Atomic int in_flight_err = -1;

static void in_flight_done(void *arg, tg_err err, const tg_msg *reply)
{
    (void)arg;
    (void)reply;
    atomic_store(&in_flight_err, (int)err);
}

/* An endpoint with a request in flight keeps its place, routed or not: the
 * request sent to a unit not up yet is answered once the unit comes up,
 * although many more addresses came meanwhile. */
Test(client_lost, an_endpoint_with_a_request_in_flight_keeps_its_place)
{
    snprintf(lost_url, sizeof(lost_url), "ipc:///tmp/tixgrid-client-busy-%d.sock", (int)getpid());
    tg_client *c;
    cr_assert_eq(tg_client_open(&(tg_client_config){.inflight_max = 8}, &c), TG_OK);
    cr_assert_eq(tg_client_send_to(c, lost_url, &(tg_msg){.type = TG_WIRE_STATS}, 10000, NULL,
                                   in_flight_done, NULL),
                 TG_OK);
    route_many(c, 7, "busy", 3 * TG_CLIENT_ENDPOINTS_MAX);
    nng_socket s;
    pthread_t t;
    unit_up(&s, &t);
    for (int i = 0; i < 500 && atomic_load(&in_flight_err) < 0; i++) {
        usleep(10000);
    }
    cr_assert_eq(atomic_load(&in_flight_err), (int)TG_ENOT_FOUND, "got %d",
                 atomic_load(&in_flight_err));
    tg_client_close(c);
    unit_down(&s, t);
    unlink(lost_url + strlen("ipc://"));
}

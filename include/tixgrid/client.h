/*
 * client.h — asynchronous requests to processing units, routed by partition.
 *
 * Used by the gateway, the persister, the admin tools and the tests.  A
 * client keeps one nng REQ socket per distinct address (dialled in the
 * background and redialled after a disconnect) and a routing table from
 * partition id to address.  Sockets are kept in a table of
 * TG_CLIENT_ENDPOINTS_MAX; when a new address finds it full, the least
 * recently used socket that no route names and no request uses is closed
 * (on a thread of its own) and gives its place.  Each request takes one of a bounded pool of
 * slots (an nng context and AIO); when none is free the request is refused
 * at once with TG_EBUSY rather than queued without bound.
 *
 * Callbacks (nng style): if tg_client_send returns an error, the callback
 * never runs; once it returned TG_OK, the callback runs exactly once, on one
 * of nng's threads, with
 *   - TG_OK and the decoded ok reply, or
 *   - the tg_err of the PU's error reply and that reply (e.g. TG_ESEAT_TAKEN
 *     with reply->error.seats naming the seats), or
 *   - TG_ETIMEDOUT, TG_EUNAVAILABLE (no route, or the unit is unreachable),
 *     TG_EPROTO (the reply broke the schema, or is not the reply to this
 *     request's type) or TG_ECLOSED, with reply NULL.
 * The reply and any arrays it points to (in the caller's space) are valid
 * only during the callback.  Callbacks must not block; a gateway hands the
 * result to its event loop (uv_async_send) and returns.
 *
 * Requests are never resent by nng: a hold resent after a reconnect could
 * run twice.  A caller that gets TG_ETIMEDOUT does not know whether the
 * request ran; reading the booking tells.
 *
 * A unit whose connection closed (its process exited or was killed: the
 * kernel closes its sockets) is refused at once with TG_EUNAVAILABLE until
 * the socket is connected again, instead of queueing the request there for
 * its whole timeout: a gateway answers 503 with Retry-After at once, and
 * follows the map to the promoted backup as soon as it is published.  A
 * socket that never had a connection yet (dialling at start) queues as
 * before.  Such refusals count like timeouts toward setting the socket
 * aside (below): nng 1.5.2 was seen not to connect a socket again to a unit
 * started again at the same address, while a new socket connected at once.
 *
 * A socket whose last TG_CLIENT_REDIAL_TIMEOUTS requests all timed out is
 * set aside and a new one dials the address (tixgrid/limits.h bounds how
 * often).  With nng 1.5.2 a socket that was connected to a unit that died
 * and was started again at the same address was seen, now and then, to get
 * no answer ever again while a new socket got one at once; a unit that is
 * really silent costs only the new socket.  Requests in flight on the old
 * socket finish there.  Sockets set aside stay open until the process
 * exits: closing one whose peer went away can hang in nng 1.5.2.
 *
 * Every function may be called from any thread; from a callback, all but
 * the blocking tg_client_call* and tg_client_close (they would block one of
 * nng's callback threads, or wait for the callback itself).
 */
#ifndef TIXGRID_CLIENT_H
#define TIXGRID_CLIENT_H

#include <nng/nng.h>
#include <stdint.h>

#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/wire.h"

/* Bounds (endpoints, routes, requests in flight, default timeout) are the
 * TG_CLIENT_* of tixgrid/limits.h. */

typedef struct tg_client tg_client;

typedef void (*tg_client_cb)(void *arg, tg_err err, const tg_msg *reply);

typedef struct {
    uint32_t inflight_max; /* 0 picks TG_CLIENT_INFLIGHT_DEFAULT */
} tg_client_config;

tg_err tg_client_open(const tg_client_config *cfg, tg_client **out);

/* Cancels every request in flight (their callbacks run with TG_ECLOSED),
 * waits for the callbacks to finish, and frees the client. */
void tg_client_close(tg_client *c);

/* Routes partition_id to url (replacing an earlier route), or removes the
 * route when url is NULL.  TG_EINVAL for a bad address, TG_ENOMEM when the
 * routes are full, or every one of the TG_CLIENT_ENDPOINTS_MAX sockets is
 * routed to or busy. */
tg_err tg_client_route(tg_client *c, uint32_t partition_id, const char *url);

/* Sends req to the unit serving partition_id (TG_EUNAVAILABLE without a
 * route).  timeout_ms covers send and reply (0: the default).  space is
 * where a large reply's arrays are decoded (see wire.h); it may be NULL and
 * must stay valid until the callback. */
tg_err tg_client_send(tg_client *c, uint32_t partition_id, const tg_msg *req, uint32_t timeout_ms,
                      const tg_wire_space *space, tg_client_cb cb, void *arg);

/* The same to an address directly (requests about no partition: stats). */
tg_err tg_client_send_to(tg_client *c, const char *url, const tg_msg *req, uint32_t timeout_ms,
                         const tg_wire_space *space, tg_client_cb cb, void *arg);

/* A batch (tixgrid/wire.h) to the unit serving partition_id, every request
 * of which is about that partition: one message, one round trip.  Once
 * this returned TG_OK, cb runs once per request, in the batch's order, all
 * on one of nng's threads, with what tg_client_send's callback would have
 * got for that request alone (the reply valid only during its call; a
 * transport error or a frame the unit refused whole is every request's
 * outcome).  b may be reset or reused as soon as this returns. */
typedef void (*tg_client_batch_cb)(void *arg, uint32_t index, tg_err err, const tg_msg *reply);
tg_err tg_client_send_batch(tg_client *c, uint32_t partition_id, tg_wire_batch *b,
                            uint32_t timeout_ms, tg_client_batch_cb cb, void *arg);

/* Blocking forms for tools and tests: wait for the reply and copy it into
 * *reply (whose arrays point into space).  Returns what the callback got. */
tg_err tg_client_call(tg_client *c, uint32_t partition_id, const tg_msg *req, uint32_t timeout_ms,
                      const tg_wire_space *space, tg_msg *reply);
tg_err tg_client_call_to(tg_client *c, const char *url, const tg_msg *req, uint32_t timeout_ms,
                         const tg_wire_space *space, tg_msg *reply);

/* Waits at most timeout_ms until `sock` (a socket a thread receives from
 * synchronously) has a message to receive: poll(2) on its NNG_OPT_RECVFD.
 * TG_OK when one may be there (receive it with NNG_FLAG_NONBLOCK), else
 * TG_ETIMEDOUT (also after a signal; a socket with no such descriptor, as
 * a closed one, just sleeps timeout_ms).
 *
 * For loops that wait with a short tick, instead of a receive timeout:
 * nng 1.5.2's timer thread busy-waits through the last millisecond of
 * every timeout it fires (an aio expires only once the millisecond clock is
 * past its deadline, and the thread does not sleep while it equals it), so
 * a receive timing out every 10 ms costs about 9 % of a core.  poll(2)'s
 * timeout costs nothing. */
tg_err tg_socket_wait(nng_socket sock, uint32_t timeout_ms);

#endif

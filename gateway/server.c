/*
 * server.c — the gateway's loop threads: listeners, connections, h2o.
 *
 * One worker per loop thread, each with its own listening socket bound to
 * the same port with SO_REUSEPORT, so the kernel spreads connections over
 * the loops and no loop ever hands a connection to another.  libuv 1.44 has
 * no reuse-port flag: the sockets are made here (socket, setsockopt, bind,
 * listen) in the starting thread, so that a port in use fails the start
 * with a clear error, and each loop adopts its own with uv_tcp_open.
 *
 * Bounds: cfg.connections_max open connections per worker (one more is
 * accepted and closed at once: the kernel's backlog does not grow without
 * bound either), and the limits h2o enforces from the global configuration
 * (request body, request timeout for slow partial requests, HTTP/2 idle
 * timeout).
 *
 * Stopping: the main thread sets `stopping` and wakes every loop; a loop
 * closes its listener, asks h2o to shut down (HTTP/2 GOAWAY), and stops once
 * its requests in service were answered, or after GW_STOP_GRACE_MS.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"
#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#define GW_LISTEN_BACKLOG 4096
#define GW_STOP_GRACE_MS 5000
#define GW_STOP_POLL_MS 20

typedef struct {
    h2o_handler_t super;
} gw_h2o_handler;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    gw_worker *w = H2O_STRUCT_FROM_MEMBER(gw_worker, h2o_ctx, req->conn->ctx);
    return gw_dispatch(req, w);
}

static void on_conn_close(uv_handle_t *handle)
{
    gw_worker *w = handle->loop->data;
    gw_gauge_add(&w->connections, -1);
    free(handle);
}

static void on_accept(uv_stream_t *listener, int status)
{
    gw_worker *w = listener->loop->data;
    if (status != 0) {
        return;
    }
    uv_tcp_t *conn = malloc(sizeof(*conn));
    if (conn == NULL) {
        return;
    }
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    if (w->connections >= w->gw->cfg.connections_max) {
        atomic_fetch_add_explicit(&w->metrics.connections_refused, 1, memory_order_relaxed);
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    gw_gauge_add(&w->connections, 1);
    uv_tcp_nodelay(conn, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_conn_close);
    h2o_accept(&w->accept_ctx, sock);
}

/* ---- Stopping ------------------------------------------------------------ */

typedef struct {
    uv_timer_t timer;
    uint32_t waited_ms;
} stop_state;

static void on_stop_poll(uv_timer_t *t)
{
    stop_state *s = (stop_state *)t;
    gw_worker *w = t->loop->data;
    gw_calls_drain(w);
    s->waited_ms += GW_STOP_POLL_MS;
    if (w->in_service == 0 || s->waited_ms >= GW_STOP_GRACE_MS) {
        uv_stop(t->loop);
    }
}

static void stop_begin(gw_worker *w)
{
    static _Thread_local stop_state state;
    uv_close((uv_handle_t *)&w->listener, NULL);
    h2o_context_request_shutdown(&w->h2o_ctx);
    uv_timer_init(&w->loop, &state.timer);
    uv_timer_start(&state.timer, on_stop_poll, GW_STOP_POLL_MS, GW_STOP_POLL_MS);
}

static void on_wakeup(uv_async_t *async)
{
    gw_worker *w = async->loop->data;
    gw_calls_drain(w);
    if (atomic_exchange(&w->stopping, false)) {
        stop_begin(w);
    }
}

/* A stopped worker parks instead of returning: h2o keeps recycled buffers
 * in thread-local free lists that only live threads keep reachable, and
 * the process exits soon after anyway. */
static void *worker_main(void *arg)
{
    gw_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    pthread_mutex_lock(&w->lock);
    w->stopped = true;
    pthread_cond_broadcast(&w->stopped_cond);
    for (;;) {
        pthread_cond_wait(&w->park_cond, &w->lock);
    }
    return NULL;
}

/* ---- Starting ------------------------------------------------------------ */

static int listen_socket(const gw_config *cfg)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (uv_ip4_addr(cfg->listen_host, cfg->listen_port, in4) == 0) {
        len = sizeof(*in4);
    } else if (uv_ip6_addr(cfg->listen_host, cfg->listen_port, in6) == 0) {
        len = sizeof(*in6);
    } else {
        tg_log(TG_LOG_ERROR, "listen address %s is not an IPv4 or IPv6 address", cfg->listen_host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, GW_LISTEN_BACKLOG) != 0) {
        tg_log(TG_LOG_ERROR, "cannot listen on %s:%u: %s", cfg->listen_host, cfg->listen_port,
               strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

static void h2o_configure(gw_gateway *gw)
{
    const gw_config *cfg = &gw->cfg;
    h2o_config_init(&gw->h2o_config);
    gw->h2o_config.server_name = h2o_iovec_init(H2O_STRLIT("tixgrid"));
    gw->h2o_config.max_request_entity_size = cfg->body_bytes_max;
    gw->h2o_config.http1.req_timeout = cfg->request_timeout_ms;
    gw->h2o_config.http2.idle_timeout = cfg->idle_timeout_ms;
    gw->h2o_config.http2.graceful_shutdown_timeout = GW_STOP_GRACE_MS;
    h2o_hostconf_t *host =
        h2o_config_register_host(&gw->h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    gw_h2o_handler *h = (gw_h2o_handler *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_req;
    if (cfg->static_dir[0] != '\0') {
        /* What the API does not answer (on_req returns -1) is a file. */
        static const char *index_files[] = {"index.html", NULL};
        h2o_file_register(path, cfg->static_dir, index_files, NULL, 0);
    }
}

static tg_err worker_init(gw_gateway *gw, gw_worker *w, uint32_t index, int fd)
{
    w->gw = gw;
    w->index = index;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->stopped_cond, NULL);
    pthread_cond_init(&w->park_cond, NULL);
    if (uv_loop_init(&w->loop) != 0) {
        return TG_ESYSTEM;
    }
    w->loop.data = w;
    h2o_context_init(&w->h2o_ctx, &w->loop, &gw->h2o_config);
    w->accept_ctx.ctx = &w->h2o_ctx;
    w->accept_ctx.hosts = gw->h2o_config.hosts;
    uv_tcp_init(&w->loop, &w->listener);
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    gw_batches_init(w);
    if (gw_outbound_init(w) != TG_OK || gw_snaps_init(w) != TG_OK || gw_live_init(w) != TG_OK) {
        return TG_ENOMEM;
    }
    if (uv_tcp_open(&w->listener, fd) != 0 ||
        uv_listen((uv_stream_t *)&w->listener, GW_LISTEN_BACKLOG, on_accept) != 0) {
        tg_log(TG_LOG_ERROR, "worker %u cannot adopt its listening socket", index);
        return TG_ESYSTEM;
    }
    return TG_OK;
}

tg_err gw_gateway_start(gw_gateway *gw)
{
    h2o_configure(gw);
    gw->workers = calloc(gw->worker_count, sizeof(*gw->workers));
    if (gw->workers == NULL) {
        return TG_ENOMEM;
    }
    for (uint32_t i = 0; i < gw->worker_count; i++) {
        int fd = listen_socket(&gw->cfg);
        if (fd < 0) {
            return TG_EUNAVAILABLE;
        }
        tg_err err = worker_init(gw, &gw->workers[i], i, fd);
        if (err != TG_OK) {
            return err;
        }
    }
    for (uint32_t i = 0; i < gw->worker_count; i++) {
        if (pthread_create(&gw->workers[i].thread, NULL, worker_main, &gw->workers[i]) != 0) {
            return TG_ESYSTEM;
        }
    }
    tg_log(TG_LOG_INFO, "listening on %s:%u with %u loop threads", gw->cfg.listen_host,
           gw->cfg.listen_port, gw->worker_count);
    return TG_OK;
}

void gw_gateway_stop(gw_gateway *gw)
{
    for (uint32_t i = 0; i < gw->worker_count; i++) {
        atomic_store(&gw->workers[i].stopping, true);
        uv_async_send(&gw->workers[i].wakeup);
    }
    for (uint32_t i = 0; i < gw->worker_count; i++) {
        gw_worker *w = &gw->workers[i];
        pthread_mutex_lock(&w->lock);
        while (!w->stopped) {
            pthread_cond_wait(&w->stopped_cond, &w->lock);
        }
        pthread_mutex_unlock(&w->lock);
    }
}

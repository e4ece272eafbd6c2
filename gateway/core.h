/*
 * core.h — what the gateway's core modules (server, call, http, db, map,
 * audit, metrics) share.  Handlers use gateway.h only.
 */
#ifndef TIXGRID_GATEWAY_CORE_H
#define TIXGRID_GATEWAY_CORE_H

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include <curl/curl.h>

#include "auth.h"
#include "breaker.h"
#include "config.h"
#include "gateway.h"
#include "ratelimit.h"
#include "tixgrid/client.h"

/* ---- Operations in flight ------------------------------------------------ */

typedef enum { GW_CALL_GRID = 1, GW_CALL_DB = 2, GW_CALL_HTTP = 3 } gw_call_kind;

/* One operation of one request that completes on another thread.  Owned by
 * its worker: taken from the worker's free list when the operation starts,
 * queued on the worker's completion list by the thread that finished it,
 * and returned to the free list by the loop thread after `done` (or after
 * dropping the result of a request that went away). */
typedef struct gw_call {
    struct gw_call *next; /* free list or completion list */
    gw_worker *worker;
    gw_req *req; /* NULL once the request went away (loop thread only) */
    gw_call_kind kind;
    /* GW_CALL_GRID */
    gw_grid_done grid_done;
    tg_err err;
    tg_wire_space space; /* arrays malloc'd for the large replies asked for */
    /* GW_CALL_DB, and GW_CALL_HTTP (outbound.c), whose done is db_done too */
    gw_db_run db_run;
    gw_db_done db_done;
    void *job;
    void (*job_free)(void *job);
    /* In a batch: the next call of the batch, in order; the first call's
     * cursor is the call whose reply comes next (nng's thread only). */
    struct gw_call *batch_next, *batch_cursor;
    /* The first call of a batch sent: its partition's slot, whose message in
     * flight it is until the loop finishes it (loop thread only). */
    struct gw_batch *batch_slot;
    /* Last: gw_call_take zeroes everything before it. */
    tg_msg reply;
} gw_call;

/* ---- Batches to the units ------------------------------------------------ */

/* The seat operations of a loop, gathered per partition and sent when the
 * loop is about to wait for I/O (uv_prepare) — unless the partition's last
 * message is still unanswered: then they keep gathering until its reply
 * comes back, for at most --grid-batch-wait-ms (or until a message is full).
 * Idle, a batch holds one request and leaves at once as a plain request;
 * under load one message and one wake-up carry every request that arrived
 * during the last round trip (call.c). */
/* Partitions a loop gathers for at once.  A slot stays taken while its
 * partition has a batch gathering or a message unanswered, which under
 * steady load is always: more busy partitions than slots go alone. */
#define GW_BATCHES_OPEN_MAX 64u

typedef struct gw_batch {
    uint32_t partition_id;
    uint32_t in_flight; /* messages sent and not finished by the loop */
    uint64_t sent_ms;   /* uv_now when the last one left */
    tg_wire_batch wire;
    gw_call *head, *tail; /* gathered, not sent; NULL head: none */
} gw_batch;

/* ---- Metrics ------------------------------------------------------------- */

#define GW_LATENCY_BUCKETS 14
#define GW_STATUS_CLASSES 5 /* 1xx..5xx */
#define GW_ROUTES_MAX 64

/* Per worker, written by its loop thread only; read by /metrics on any
 * thread with relaxed atomics (a scrape may be a request behind). */
typedef struct {
    _Atomic uint64_t requests[GW_ROUTES_MAX + 1][GW_STATUS_CLASSES]; /* +1: no route */
    _Atomic uint64_t status[600];
    _Atomic uint64_t latency[GW_ROUTES_MAX + 1][GW_LATENCY_BUCKETS + 1];
    _Atomic uint64_t latency_sum_us[GW_ROUTES_MAX + 1];
    _Atomic uint64_t holds_ok, holds_failed, sales, connections_refused, busy_refused;
    /* Messages of seat operations sent to units, and the operations in them. */
    _Atomic uint64_t grid_batches, grid_batched;
    /* /live streams open, and those dropped for falling behind (live.c). */
    _Atomic uint64_t live_streams, live_dropped;
} gw_metrics;

/* ---- Verified tokens, per worker ----------------------------------------- */

/* A client sends the same Bearer token with every request; checking its
 * HMAC and parsing its claims each time cost about an eighth of a hold's
 * time in the gateway.  Each loop keeps the tokens it verified last in a
 * direct-mapped table (loop thread only, no lock): a hit is the same bytes
 * as a verified token (compared in full) that has not expired. */
#define GW_TOKEN_CACHE_SLOTS 1024u
#define GW_TOKEN_CACHE_BYTES 384u /* longer tokens are verified every time */

typedef struct {
    uint16_t len; /* 0: empty */
    gw_principal who;
    char token[GW_TOKEN_CACHE_BYTES];
} gw_token_entry;

/* ---- A worker: one loop thread ------------------------------------------ */

struct gw_worker {
    gw_gateway *gw;
    uint32_t index;
    pthread_t thread;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wakeup; /* completions queued, or stop */
    h2o_context_t h2o_ctx;
    h2o_accept_ctx_t accept_ctx;
    /* Written by the loop thread only, through gw_gauge_add; /metrics reads
     * them from another loop thread. */
    uint32_t connections; /* open */
    uint32_t in_service;  /* requests between accept and reply */
    /* Calls: the free list is the loop thread's; the completion list is
     * shared with nng's and the pool's threads under `lock`. */
    gw_call *free_calls;
    uint32_t calls_made;
    pthread_mutex_t lock;
    gw_call *done_head, *done_tail;
    gw_token_entry tokens[GW_TOKEN_CACHE_SLOTS]; /* loop thread only */
    uv_prepare_t flush;                          /* sends the batches due */
    uv_timer_t batch_timer;                      /* a batch waits no longer than its due time */
    gw_batch
        batches[GW_BATCHES_OPEN_MAX]; /* loop thread only; free: nothing gathered or in flight */
    /* Outbound HTTP (outbound.c), loop thread only: libcurl's multi
     * interface driven by this loop. */
    CURLM *curl_multi;
    uv_timer_t curl_timer;
    uint32_t http_in_flight;
    /* Seat-map snapshots (snap.c) and live streams (live.c), loop thread
     * only but for their own queues. */
    struct gw_snaps *snaps;
    struct gw_live *live;
    atomic_bool stopping;
    bool stopped; /* under lock: the loop has returned (the thread parks) */
    pthread_cond_t stopped_cond, park_cond;
    gw_metrics metrics;
};

/* A gauge of a worker's, moved by its own loop thread: a relaxed store (one
 * writer needs no read-modify-write), so that readers on other threads see
 * a whole value. */
static inline void gw_gauge_add(uint32_t *gauge, int32_t delta)
{
    __atomic_store_n(gauge, *gauge + (uint32_t)delta, __ATOMIC_RELAXED);
}

/* ---- The PostgreSQL pool -------------------------------------------------- */

typedef struct gw_db_pool gw_db_pool;
tg_err gw_db_pool_open(gw_gateway *gw, gw_db_pool **out);
void gw_db_pool_close(gw_db_pool *pool);
/* Hands a call to the pool; TG_EBUSY when the queue is full. */
tg_err gw_db_pool_push(gw_db_pool *pool, gw_call *call);
/* A blocking connection for the gateway's own threads (map, audit). */
PGconn *gw_db_connect(const gw_config *cfg, const char *purpose);

/* ---- Map and audit (their own threads) ----------------------------------- */

typedef struct gw_map gw_map;
tg_err gw_map_open(gw_gateway *gw, gw_map **out);
void gw_map_close(gw_map *m);
bool gw_map_ready(gw_gateway *gw, char *why, size_t why_size);

typedef struct gw_audit_log gw_audit_log;
tg_err gw_audit_open(gw_gateway *gw, gw_audit_log **out);
void gw_audit_close(gw_audit_log *a);
uint64_t gw_audit_backlog(gw_gateway *gw);

/* refunds.c: the thread that retries refunds owed (none without a provider:
 * *out is NULL then). */
typedef struct gw_refunds gw_refunds;
tg_err gw_refunds_open(gw_gateway *gw, gw_refunds **out);
void gw_refunds_close(gw_refunds *f);

/* snap.c: a worker's seat-map snapshots: made before its loop runs, closed
 * after it stopped and the routing client is closed. */
tg_err gw_snaps_init(gw_worker *w);
void gw_snaps_close(gw_worker *w);
/* live.c: a worker's /live streams (before its loop runs). */
typedef struct gw_live gw_live;
tg_err gw_live_init(gw_worker *w);

/* ---- The process --------------------------------------------------------- */

struct gw_gateway {
    gw_config cfg;
    h2o_globalconf_t h2o_config;
    gw_jwt_key jwt;
    gw_cred_cache *creds;
    gw_ratelimit *auth_limit;
    tg_client *client;
    gw_db_pool *db;
    gw_map *map;
    gw_audit_log *audit;
    gw_breaker breaker; /* guards every call to the payment provider */
    gw_refunds *refunds;
    uint32_t worker_count;
    gw_worker *workers;
    int listen_fd_family;
    int64_t started_ms;
};


/* server.c */
tg_err gw_gateway_start(gw_gateway *gw);
void gw_gateway_stop(gw_gateway *gw);

/* call.c */
gw_call *gw_call_take(gw_worker *w);
void gw_call_release(gw_call *call);
/* Any thread: queues a finished call for its worker's loop. */
void gw_call_complete(gw_call *call);
/* Loop thread: runs the completions queued so far. */
void gw_calls_drain(gw_worker *w);
/* Loop thread: the request went away; its call's result will be dropped. */
void gw_req_gone(gw_req *r);
/* Loop thread: prepares and sends the worker's batches. */
void gw_batches_init(gw_worker *w);
void gw_batches_flush(gw_worker *w);

/* outbound.c: the worker's libcurl multi handle on its loop (worker_init,
 * before the loop runs). */
tg_err gw_outbound_init(gw_worker *w);

/* http.c */
void gw_dispatch_init(gw_gateway *gw);
int gw_dispatch(h2o_req_t *h2o, gw_worker *w);
void gw_metrics_render(gw_gateway *gw, h2o_mem_pool_t *pool, h2o_iovec_t *out);
int gw_route_index(const gw_route *route);
int gw_route_count(void);
const char *gw_route_name_at(int index);
uint32_t gw_latency_bound_us(int bucket);
/* Runs the route's handler after the role check (403). */
void gw_run_handler(gw_req *r);

/* accounts.c: an argon2id hash no password matches; pool threads verify
 * unknown emails against it so that they cost what known ones cost. */
const char *gw_password_dummy_hash(void);

/* authn.c: sets r->who from the Authorization header (answering 401 when it
 * is missing or wrong on a non-public route), then gw_run_handler. */
void gw_authenticate(gw_req *r);

#endif

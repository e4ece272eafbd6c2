/*
 * db.c — the pool of threads that talk to PostgreSQL (and hash passwords).
 *
 * Loop threads never block, so every query — accounts, event reads, the
 * bookings history — is a job for this pool: cfg.db_threads threads, each
 * with its own blocking libpq connection, taking calls from one bounded
 * FIFO (cfg.db_queue_max; a full queue refuses at once with TG_EBUSY, which
 * the request answers with 503).  A job's result goes back to its request's
 * loop like a processing unit's reply (call.c).
 *
 * PostgreSQL down: a thread whose connection broke reconnects before its
 * next job; after a failed attempt, not again for GW_DB_RECONNECT_MS, and
 * in between jobs run with db == NULL and answer 503 quickly instead of
 * waiting for a connect timeout each.  A connection PostgreSQL closed while it sat idle (a
 * restart, pg_terminate_backend) is noticed before a job is sent into it:
 * its goodbye is already on the socket (connection_closed).  Seats are
 * never read from here: the grid serves them.
 *
 * Rejected: libpq's asynchronous API on the loop threads.  It would save
 * the threads, but argon2id hashing needs threads anyway, and queries here
 * are off the seat path; a pool keeps handlers sequential and simple.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#define GW_DB_RECONNECT_MS 1000
#define GW_DB_CONNECT_TIMEOUT_S "3"

struct gw_db_pool {
    gw_gateway *gw;
    pthread_mutex_t lock;
    pthread_cond_t ready;
    gw_call **queue; /* ring of db_queue_max */
    uint32_t head, count, capacity;
    bool stopping;
    uint32_t thread_count;
    pthread_t *threads;
};

PGconn *gw_db_connect(const gw_config *cfg, const char *purpose)
{
    /* dbname last: the conninfo's own settings win over these defaults. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *values[] = {GW_DB_CONNECT_TIMEOUT_S, "tixgrid-gateway", cfg->db, NULL};
    PGconn *db = PQconnectdbParams(keys, values, 1);
    if (db == NULL || PQstatus(db) != CONNECTION_OK) {
        const char *why = db != NULL ? PQerrorMessage(db) : "out of memory";
        char line[256];
        snprintf(line, sizeof(line), "%s", why);
        line[strcspn(line, "\n")] = '\0';
        tg_log(TG_LOG_WARN, "postgresql unreachable for %s: %s", purpose, line);
        PQfinish(db);
        return NULL;
    }
    return db;
}

static gw_call *queue_pop(gw_db_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    while (pool->count == 0 && !pool->stopping) {
        pthread_cond_wait(&pool->ready, &pool->lock);
    }
    gw_call *call = NULL;
    if (pool->count > 0) {
        call = pool->queue[pool->head];
        pool->head = (pool->head + 1) % pool->capacity;
        pool->count--;
    }
    pthread_mutex_unlock(&pool->lock);
    return call;
}

/* True when PostgreSQL has, or may have, closed an idle connection.  A
 * pool connection between jobs has nothing to read (it listens to no
 * channel) but the server's last words: a FATAL and the end of the stream,
 * after a restart or pg_terminate_backend.  Anything readable then is
 * reason enough to start afresh: a reconnect costs less than a job sent
 * into a dead connection and answered 503, one per pool thread after
 * every restart of PostgreSQL. */
static bool connection_closed(PGconn *db)
{
    struct pollfd p = {.fd = PQsocket(db), .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

/* Keeps *db usable: drops a broken connection and reconnects, at once
 * unless a connection attempt failed less than GW_DB_RECONNECT_MS ago. */
static void connection_ensure(gw_db_pool *pool, PGconn **db, int64_t *failed_ms)
{
    if (*db != NULL && (PQstatus(*db) != CONNECTION_OK || connection_closed(*db))) {
        PQfinish(*db);
        *db = NULL;
    }
    if (*db == NULL && tg_mono_ms() - *failed_ms >= GW_DB_RECONNECT_MS) {
        *db = gw_db_connect(&pool->gw->cfg, "queries");
        if (*db == NULL) { /* timed from the failure: a connect may time out slowly */
            *failed_ms = tg_mono_ms();
        }
    }
}

static void *pool_thread(void *arg)
{
    gw_db_pool *pool = arg;
    PGconn *db = NULL;
    int64_t failed_ms = -GW_DB_RECONNECT_MS;
    gw_call *call;
    while ((call = queue_pop(pool)) != NULL) {
        connection_ensure(pool, &db, &failed_ms);
        call->db_run(db, call->job);
        gw_call_complete(call);
    }
    PQfinish(db);
    return NULL;
}

tg_err gw_db_pool_push(gw_db_pool *pool, gw_call *call)
{
    pthread_mutex_lock(&pool->lock);
    if (pool->count == pool->capacity || pool->stopping) {
        pthread_mutex_unlock(&pool->lock);
        return TG_EBUSY;
    }
    pool->queue[(pool->head + pool->count) % pool->capacity] = call;
    pool->count++;
    pthread_cond_signal(&pool->ready);
    pthread_mutex_unlock(&pool->lock);
    return TG_OK;
}

tg_err gw_db_pool_open(gw_gateway *gw, gw_db_pool **out)
{
    gw_db_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        return TG_ENOMEM;
    }
    pool->gw = gw;
    pool->capacity = gw->cfg.db_queue_max;
    pool->queue = calloc(pool->capacity, sizeof(*pool->queue));
    pool->threads = calloc(gw->cfg.db_threads, sizeof(*pool->threads));
    if (pool->queue == NULL || pool->threads == NULL) {
        free(pool->queue);
        free(pool->threads);
        free(pool);
        return TG_ENOMEM;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->ready, NULL);
    for (uint32_t i = 0; i < gw->cfg.db_threads; i++) {
        if (pthread_create(&pool->threads[i], NULL, pool_thread, pool) != 0) {
            break;
        }
        pool->thread_count++;
    }
    *out = pool;
    if (pool->thread_count == 0) {
        gw_db_pool_close(pool);
        return TG_ESYSTEM;
    }
    return TG_OK;
}

/* Runs after every loop has stopped: the jobs still queued are run (their
 * requests are gone, so only job_free matters) and the threads joined. */
void gw_db_pool_close(gw_db_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->ready);
    pthread_mutex_unlock(&pool->lock);
    for (uint32_t i = 0; i < pool->thread_count; i++) {
        pthread_join(pool->threads[i], NULL);
    }
    pthread_cond_destroy(&pool->ready);
    pthread_mutex_destroy(&pool->lock);
    free(pool->queue);
    free(pool->threads);
    free(pool);
}

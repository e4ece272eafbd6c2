/*
 * manager.c — the manager's loop: standing by, becoming active, answering
 * units and tixgridctl, writing and publishing the map (see manager.h).
 *
 * One thread, one loop.  While active, each pass:
 *   1. tells the failure detector the time (a late pass is an absence of
 *      the manager, not of the units);
 *   2. answers up to GRID_REQUESTS_PER_PASS requests, waiting at most
 *      GRID_TICK_MS for the first (nng REP socket, synchronous: the
 *      handlers only touch memory, a few microseconds each; the wait is
 *      poll(2) on the socket, not a receive timeout, see tg_socket_wait);
 *   3. declares silent units dead, advances moves of partitions between
 *      live units (manager_move.c; a move's last step is confirmed with
 *      its primary, below), and places backups (manager_place.c);
 *   4. when the map changed: writes it (epoch + 1, one transaction), then
 *      publishes it;
 *   5. on their timers: publishes the map again, re-reads grid_partitions
 *      (new events, outside placements), writes last_seen.
 * Any failure of the database makes it stand by again: the sockets close,
 * the session closes (and with it the lock), and it starts over from what
 * PostgreSQL holds.  A standby keeps no socket open, so units and
 * tixgridctl, which dial every manager's address, reach only the active one.
 *
 * Rejected: a thread per socket with a lock around the map (the work per
 * request is tiny, and one thread keeps the order of "write, then publish"
 * obvious); nng contexts with asynchronous I/O for the REP socket (same
 * reason; the manager answers a few hundred heartbeats a second).
 */
#include "manager.h"

#include "tixgrid/assert.h"
#include "tixgrid/client.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    grid_manager_config cfg;
    grid_map_state map;
    grid_partition *spare; /* grid_db_refresh's scratch */
    grid_detector det;
    grid_msg_scratch scratch;
    grid_place_scratch place;
    tg_wire_held held[TG_PU_PARTITIONS_MAX]; /* requests' arrays */
    tg_msg req, reply, map_msg;
    msgpack_sbuffer buf;
    /* The map as PostgreSQL last stored it, encoded: the only map that is
     * published.  The map in memory may hold changes that are not stored
     * yet (a write refused because a row changed meanwhile is retried), and
     * a unit must never act on an epoch PostgreSQL does not hold. */
    msgpack_sbuffer stored_map;
    PGconn *db;
    bool active;
    bool db_down_logged; /* PostgreSQL's outage was logged */
    bool standby_logged; /* "standing by" was logged */
    nng_socket rep, pub;
    bool rep_open, pub_open;
    tg_client *units; /* repl_status to a moving partition's primary; never closed */
    grid_move ready[GRID_MOVES_CONFIRM_PER_PASS];
    tg_msg unit_reply;
    int64_t next_publish_ns, next_refresh_ns, next_flush_ns;
    /* Connections of the REP socket that closed, queued by nng's pipe
     * callback (another thread) for the loop.  A full queue drops the
     * rest: their units are then found dead by the failure timeout. */
    pthread_mutex_t closed_mu;
    uint32_t closed_pipes[GRID_CLOSED_PIPES_MAX];
    uint32_t closed_count;
} manager;

/* The client of moves' confirmations is never closed: nng 1.5.2 can hang
 * for good in nng_close on a socket that redialled a unit that went away,
 * and the process exits right after the loop.  Kept reachable here. */
static tg_client *volatile units_client_kept; /* volatile: a store nobody reads stays */

static int64_t ms_ns(uint32_t ms)
{
    return (int64_t)ms * 1000000;
}

/* ---- Sockets ------------------------------------------------------------------ */

static void sockets_close(manager *mg)
{
    if (mg->rep_open) {
        nng_close(mg->rep);
        mg->rep_open = false;
    }
    if (mg->pub_open) {
        nng_close(mg->pub);
        mg->pub_open = false;
    }
}

/* A pipe's id as the map keeps it: 0 for none. */
static uint32_t pipe_number(nng_pipe pipe)
{
    int id = nng_pipe_id(pipe);
    return id > 0 ? (uint32_t)id : 0;
}

/* nng's pipe callback: queues a closed connection for the loop. */
static void pipe_closed(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    manager *mg = arg;
    (void)ev;
    pthread_mutex_lock(&mg->closed_mu);
    if (mg->closed_count < GRID_CLOSED_PIPES_MAX) {
        mg->closed_pipes[mg->closed_count++] = pipe_number(pipe);
    }
    pthread_mutex_unlock(&mg->closed_mu);
}

/* Hands the queued closed connections to the map's rules. */
static void closed_pipes_apply(manager *mg, int64_t now)
{
    uint32_t pipes[GRID_CLOSED_PIPES_MAX];
    pthread_mutex_lock(&mg->closed_mu);
    uint32_t n = mg->closed_count;
    memcpy(pipes, mg->closed_pipes, n * sizeof(pipes[0]));
    mg->closed_count = 0;
    pthread_mutex_unlock(&mg->closed_mu);
    for (uint32_t i = 0; i < n; i++) {
        grid_state_pipe_closed(&mg->map, &mg->det, pipes[i], now);
    }
}

static tg_err sockets_open(manager *mg)
{
    int rv = nng_rep0_open(&mg->rep);
    mg->rep_open = rv == 0;
    if (rv == 0) {
        nng_socket_set_size(mg->rep, NNG_OPT_RECVMAXSZ, TG_WIRE_MESSAGE_BYTES_MAX + 4096u);
        nng_socket_set_ms(mg->rep, NNG_OPT_SENDTIMEO, 100);
        rv = nng_pipe_notify(mg->rep, NNG_PIPE_EV_REM_POST, pipe_closed, mg);
    }
    if (rv == 0) {
        rv = nng_listen(mg->rep, mg->cfg.listen_url, NULL, 0);
    }
    if (rv != 0) {
        tg_log_error("manager: cannot listen on %s: %s", mg->cfg.listen_url, nng_strerror(rv));
        sockets_close(mg);
        return TG_ESYSTEM;
    }
    rv = nng_pub0_open(&mg->pub);
    mg->pub_open = rv == 0;
    if (rv == 0) {
        rv = nng_listen(mg->pub, mg->cfg.pub_url, NULL, 0);
    }
    if (rv != 0) {
        tg_log_error("manager: cannot publish on %s: %s", mg->cfg.pub_url, nng_strerror(rv));
        sockets_close(mg);
        return TG_ESYSTEM;
    }
    return TG_OK;
}

/* ---- Standing by, and taking over -------------------------------------------- */

static void db_close(manager *mg)
{
    PQfinish(mg->db);
    mg->db = NULL;
}

static void step_down(manager *mg, const char *why)
{
    sockets_close(mg);
    db_close(mg); /* the session ends: PostgreSQL releases the lock */
    if (mg->active) {
        tg_log_warn("manager %s: no longer active (%s); standing by", mg->cfg.name, why);
    }
    mg->active = false;
    mg->standby_logged = true;
}

static tg_err activate(manager *mg)
{
    tg_err err = grid_db_load(mg->db, &mg->map);
    if (err == TG_OK) {
        err = sockets_open(mg);
    }
    if (err != TG_OK) {
        step_down(mg, "could not take over");
        if (err != TG_ENOENT) {
            nng_msleep(GRID_RETRY_MS); /* the lock is free again for another manager */
        }
        return err == TG_ENOENT ? TG_ENOENT : TG_OK;
    }
    int64_t now = tg_mono_ns();
    grid_detector_start(&mg->det, mg->cfg.failure_timeout_ms, mg->cfg.heartbeat_interval_ms, now);
    grid_state_activate(&mg->map, &mg->det, now);
    closed_pipes_apply(mg, now); /* the old sockets' connections: nobody is heard on them */
    mg->active = true;
    mg->standby_logged = false;
    msgpack_sbuffer_clear(&mg->stored_map); /* a map of an earlier term: stored again first */
    mg->next_publish_ns = now;
    mg->next_refresh_ns = now + ms_ns(mg->cfg.refresh_ms);
    mg->next_flush_ns = now + ms_ns(GRID_LAST_SEEN_FLUSH_MS);
    uint32_t members = 0;
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        members += mg->map.members[i].name[0] != '\0' ? 1 : 0;
    }
    tg_log_info("manager %s: active on %s, publishing on %s (map epoch %llu, %u units, %u "
                "partitions)",
                mg->cfg.name, mg->cfg.listen_url, mg->cfg.pub_url,
                (unsigned long long)mg->map.epoch, members, mg->map.part_count);
    return TG_OK;
}

/* One try at the lock; sleeps standby_poll_ms unless it became active. */
static tg_err standby_pass(manager *mg)
{
    if (mg->db == NULL) {
        mg->db = grid_db_connect(mg->cfg.conninfo, mg->cfg.connect_timeout_s, mg->db_down_logged);
        mg->db_down_logged = mg->db == NULL;
        if (mg->db != NULL) {
            tg_log_info("manager %s: connected to PostgreSQL", mg->cfg.name);
        }
    }
    bool got = false;
    if (mg->db != NULL && grid_db_try_lock(mg->db, &got) != TG_OK) {
        db_close(mg);
    }
    if (got) {
        return activate(mg);
    }
    if (mg->db != NULL && !mg->standby_logged) {
        tg_log_info("manager %s: standing by: another manager holds the lock", mg->cfg.name);
        mg->standby_logged = true;
    }
    nng_msleep(mg->cfg.standby_poll_ms);
    return TG_OK;
}

/* ---- Active -------------------------------------------------------------------- */

static void publish(manager *mg)
{
    if (mg->stored_map.size == 0) {
        return; /* nothing stored yet */
    }
    int rv = nng_send(mg->pub, mg->stored_map.data, mg->stored_map.size, NNG_FLAG_NONBLOCK);
    if (rv != 0 && rv != NNG_EAGAIN) {
        tg_log_warn("manager: publishing the map failed: %s", nng_strerror(rv));
    }
}

/* Encodes the map just stored, then publishes it. */
static void publish_stored(manager *mg)
{
    const char *why = NULL;
    grid_state_map_msg(&mg->map, mg->map.epoch, &mg->scratch, &mg->map_msg);
    if (tg_wire_encode_event(&mg->map_msg, &mg->stored_map, &why) != TG_OK) {
        tg_log_error("manager: cannot encode the map: %s", why != NULL ? why : "?");
        mg->stored_map.size = 0; /* never an older map under a newer epoch */
        return;
    }
    publish(mg);
}

/* Encodes mg->reply into msg (replacing its body) and sends it. */
static void reply_send(manager *mg, nng_msg *msg)
{
    const char *why = NULL;
    if (tg_wire_encode(&mg->reply, &mg->buf, &why) != TG_OK) {
        tg_log_error("manager: cannot encode a %s reply: %s", tg_wire_type_name(mg->reply.type),
                     why != NULL ? why : "?");
        tg_wire_error(&mg->reply, TG_EINVAL, "reply could not be encoded");
        tg_err again = tg_wire_encode(&mg->reply, &mg->buf, NULL);
        TG_ASSERT(again == TG_OK); /* a short error reply always encodes */
    }
    nng_msg_clear(msg);
    if (nng_msg_append(msg, mg->buf.data, mg->buf.size) != 0 || nng_sendmsg(mg->rep, msg, 0) != 0) {
        nng_msg_free(msg); /* the requester times out and asks again */
    }
}

static void handle(manager *mg, nng_msg *msg)
{
    const char *why = NULL;
    tg_wire_space space = {.held = mg->held, .held_capacity = TG_PU_PARTITIONS_MAX};
    tg_err err = tg_wire_decode(nng_msg_body(msg), nng_msg_len(msg), &space, &mg->req, &why);
    if (err != TG_OK) {
        tg_wire_error(&mg->reply, err, why);
    } else {
        grid_state_env env = {.det = &mg->det,
                              .pub_url = mg->cfg.pub_url,
                              .heartbeat_interval_ms = mg->cfg.heartbeat_interval_ms,
                              .failure_timeout_ms = mg->cfg.failure_timeout_ms,
                              .backups = mg->cfg.backups,
                              .move_timeout_ms = mg->cfg.move_timeout_ms,
                              .pipe_id = pipe_number(nng_msg_get_pipe(msg))};
        grid_state_handle(&mg->map, &env, &mg->req, tg_mono_ns(), &mg->scratch, &mg->reply);
    }
    reply_send(mg, msg);
}

static void serve_requests(manager *mg)
{
    if (!mg->map.changed) {
        (void)tg_socket_wait(mg->rep, GRID_TICK_MS); /* not a receive timeout: client.h */
    }
    for (uint32_t n = 0; n < GRID_REQUESTS_PER_PASS; n++) {
        nng_msg *msg = NULL;
        int rv = nng_recvmsg(mg->rep, &msg, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            return; /* timed out, nothing more, or closed */
        }
        handle(mg, msg);
    }
}

/* Writes the changed map, then publishes it; false if the manager must
 * stand by. */
static bool persist(manager *mg)
{
    tg_err err = grid_db_persist(mg->db, &mg->map);
    if (err == TG_OK) {
        grid_state_persisted(&mg->map, mg->map.epoch + 1);
        tg_log_debug("manager: map epoch %llu written", (unsigned long long)mg->map.epoch);
        publish_stored(mg);
        mg->next_publish_ns = tg_mono_ns() + ms_ns(mg->cfg.republish_ms);
        return true;
    }
    if (err == TG_EBUSY) {
        err = grid_db_refresh(mg->db, &mg->map, &mg->spare);
    }
    if (err != TG_OK && err != TG_EBUSY) {
        step_down(mg,
                  err == TG_ESTALE_EPOCH ? "another manager wrote the map" : "PostgreSQL failed");
        return false;
    }
    return true;
}

/* The timers of step 5; false if the manager must stand by. */
static bool housekeeping(manager *mg, int64_t now)
{
    tg_err err = TG_OK;
    if (now >= mg->next_refresh_ns) {
        err = grid_db_refresh(mg->db, &mg->map, &mg->spare);
        mg->next_refresh_ns = now + ms_ns(mg->cfg.refresh_ms);
    }
    if (err == TG_OK && now >= mg->next_flush_ns) {
        err = grid_db_flush_seen(mg->db, &mg->map, &mg->det, now);
        mg->next_flush_ns = now + ms_ns(GRID_LAST_SEEN_FLUSH_MS);
    }
    if (err != TG_OK) {
        step_down(mg,
                  err == TG_ESTALE_EPOCH ? "another manager wrote the map" : "PostgreSQL failed");
        return false;
    }
    if (now >= mg->next_publish_ns) {
        publish(mg);
        mg->next_publish_ns = now + ms_ns(mg->cfg.republish_ms);
    }
    return true;
}

/* True when the partition's primary says its link to the move's target is
 * in sync: it waits for the target's acks before answering anybody, so
 * every acknowledged change is on the target.  Only the primary knows; a
 * backup's own flag may be left over from an earlier time it was a backup.
 * One bounded round trip, only for a move whose target reported itself in
 * sync: a pass waits at most GRID_MOVE_CONFIRM_TIMEOUT_MS per move. */
static bool move_confirmed(manager *mg, const grid_move *mv)
{
    const grid_member *primary = &mg->map.members[mv->source];
    const char *target = mg->map.members[mv->target].name;
    tg_msg req = {.type = TG_WIRE_REPL_STATUS, .repl_status = {.partition_id = mv->partition_id}};
    if (mg->units == NULL && tg_client_open(NULL, &mg->units) != TG_OK) {
        return false;
    }
    if (tg_client_call_to(mg->units, primary->rep_url, &req, GRID_MOVE_CONFIRM_TIMEOUT_MS, NULL,
                          &mg->unit_reply) != TG_OK) {
        return false;
    }
    const __typeof__(mg->unit_reply.repl_status_ok) *st = &mg->unit_reply.repl_status_ok;
    for (uint32_t i = 0; st->role == TG_REPL_ROLE_PRIMARY && i < st->link_count; i++) {
        if (strcmp(st->links[i].name, target) == 0) {
            return st->links[i].state == TG_REPL_LINK_IN_SYNC;
        }
    }
    return false;
}

/* Hands over the moves whose target is in sync, as their primary confirms. */
static void moves_advance(manager *mg, int64_t now)
{
    grid_moves_pass(&mg->map, mg->cfg.backups, mg->cfg.move_timeout_ms, now);
    uint32_t n = grid_moves_ready(&mg->map, mg->ready, GRID_MOVES_CONFIRM_PER_PASS);
    for (uint32_t i = 0; i < n; i++) {
        if (move_confirmed(mg, &mg->ready[i])) {
            (void)grid_move_handover(&mg->map, mg->ready[i].partition_id, mg->cfg.backups);
        }
    }
}

static void active_pass(manager *mg)
{
    grid_detector_pass(&mg->det, tg_mono_ns());
    serve_requests(mg);
    int64_t now = tg_mono_ns();
    closed_pipes_apply(mg, now); /* after the requests that came before the close */
    grid_state_detect(&mg->map, &mg->det, now);
    grid_state_drop_stalled(&mg->map, &mg->det, mg->cfg.failure_timeout_ms, now);
    moves_advance(mg, now);
    grid_state_place(&mg->map, mg->cfg.backups, &mg->place);
    if (mg->map.changed && !persist(mg)) {
        return;
    }
    housekeeping(mg, now);
}

/* ---- Running ------------------------------------------------------------------ */

static tg_err config_check(const grid_manager_config *c)
{
    bool ok = c->name != NULL && grid_name_valid(c->name) && c->listen_url != NULL &&
              c->pub_url != NULL && c->conninfo != NULL &&
              c->heartbeat_interval_ms >= TG_GRID_HEARTBEAT_INTERVAL_MS_MIN &&
              c->heartbeat_interval_ms <= TG_GRID_HEARTBEAT_INTERVAL_MS_MAX &&
              c->failure_timeout_ms >= 2 * c->heartbeat_interval_ms &&
              c->failure_timeout_ms <= TG_GRID_FAILURE_TIMEOUT_MS_MAX && c->republish_ms > 0 &&
              c->standby_poll_ms > 0 && c->refresh_ms > 0 && c->backups <= TG_GRID_BACKUPS_MAX;
    return ok ? TG_OK : TG_EINVAL;
}

static manager *manager_new(const grid_manager_config *cfg)
{
    manager *mg = calloc(1, sizeof(*mg));
    grid_partition *a = calloc(TG_GRID_PARTITIONS_MAX, sizeof(*a));
    grid_partition *b = calloc(TG_GRID_PARTITIONS_MAX, sizeof(*b));
    if (mg == NULL || a == NULL || b == NULL) {
        free(mg);
        free(a);
        free(b);
        return NULL;
    }
    mg->cfg = *cfg;
    pthread_mutex_init(&mg->closed_mu, NULL);
    mg->map.parts = a;
    mg->spare = b;
    snprintf(mg->map.manager, sizeof(mg->map.manager), "%s", cfg->name);
    msgpack_sbuffer_init(&mg->buf);
    msgpack_sbuffer_init(&mg->stored_map);
    return mg;
}

tg_err grid_manager_run(const grid_manager_config *cfg, bool (*should_stop)(void *), void *arg)
{
    if (config_check(cfg) != TG_OK) {
        return TG_EINVAL;
    }
    manager *mg = manager_new(cfg);
    if (mg == NULL) {
        return TG_ENOMEM;
    }
    tg_err result = TG_OK;
    while (!should_stop(arg)) {
        if (mg->active) {
            active_pass(mg);
        } else if (standby_pass(mg) == TG_ENOENT) {
            tg_log_error("manager: the database has no grid schema (grid_map): run "
                         "tixgrid-persister migrate");
            result = TG_EDB;
            break;
        }
    }
    if (mg->active) {
        tg_log_info("manager %s: stopping; a standby may take over", cfg->name);
    }
    sockets_close(mg);
    db_close(mg);
    units_client_kept = mg->units;
    msgpack_sbuffer_destroy(&mg->buf);
    msgpack_sbuffer_destroy(&mg->stored_map);
    pthread_mutex_destroy(&mg->closed_mu);
    free(mg->map.parts);
    free(mg->spare);
    free(mg);
    return result;
}

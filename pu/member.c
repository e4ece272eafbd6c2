/*
 * member.c — a processing unit's membership in the grid (tixgrid-pu
 * --manager): registration, heartbeats, and the partition map it follows.
 *
 * One thread.  It registers with the manager (name, a new incarnation at
 * every start, its addresses and zone, every partition it serves with its
 * epoch and log position), then sends a heartbeat every interval the
 * manager asked for, listing the same partitions with their persistence
 * lag.  Between heartbeats it waits for maps on a SUB socket dialled to the
 * manager's PUB address (learned from the registration's reply).
 *
 * Several managers: the REQ and SUB sockets dial every address given; only
 * the active manager listens, so requests reach it alone, and after a
 * takeover the sockets' dialers find the new one within RECONNECT_MAX_MS.
 * A manager that does not know this incarnation — a new active one, or one
 * that declared the unit dead — answers a heartbeat with not_found: the unit
 * registers again at once.
 *
 * The map.  A map whose epoch is not above the last one applied is ignored.
 * A map the unit could not wholly follow — it makes the unit the primary of
 * a partition a replay is still loading — does not count as applied: its
 * republication (every second) is applied again until it does.
 * For each partition the map makes this unit the primary of, the
 * partition's epoch in shared memory is raised to the map's
 * (pu_partition_raise_epoch): never lowered, so a unit never acts on an
 * epoch older than one it has seen.  The drain (log_read) and the backups
 * read it from there.  The map's backups of such a partition become its
 * replication links (repl.c): the primary streams to exactly the units the
 * map names.  A registration lists primaries only (what the manager may
 * adopt); heartbeats also list backups, with role backup, their last
 * applied record and whether the primary counts them in sync: the manager
 * promotes only such a backup.  A backup the map makes primary is promoted
 * (pu_repl_promote); a primary the map replaces at a newer epoch is
 * deposed (pu_repl_depose): it answers nothing it had not answered.
 *
 * Removal: a heartbeat reply with leave set makes the unit stop as after
 * SIGTERM (the signal is sent to the process; main's sigwait takes it).
 *
 * Sockets are never closed: nng 1.5.2 can hang for good in nng_close on a
 * socket that has redialled a peer that went away (a manager that died),
 * and the unit's process exits right after stopping this thread.
 */
#include "server_internal.h"

#include "tixgrid/client.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Redial a manager at least this often (a standby that took over). */
#define RECONNECT_MIN_MS 50u
#define RECONNECT_MAX_MS 250u
/* How long a registration may take, and the longest single wait of the
 * thread (so that a stop is seen quickly whatever the interval). */
#define REGISTER_TIMEOUT_MS 1000u
#define WAIT_SLICE_MS       50u

struct pu_member {
    pu_server *srv;
    char urls[TG_GRID_MANAGERS_MAX][TG_URL_BYTES];
    uint32_t url_count;
    char zone[TG_ZONE_BYTES];
    uint64_t incarnation;
    nng_socket req, sub;
    char subscribed[TG_GRID_MANAGERS_MAX][TG_URL_BYTES]; /* PUB addresses dialled */
    uint32_t subscribed_count;
    pthread_t thread;
    bool stopping; /* atomic */
    bool registered;
    bool leaving;
    bool unreachable_logged;
    uint32_t interval_ms; /* from the manager */
    uint64_t map_epoch;   /* the newest map applied */
    msgpack_sbuffer buf;
    tg_msg msg, reply;
    tg_wire_held held[TG_PU_PARTITIONS_MAX];
    tg_wire_member members[TG_GRID_MEMBERS_MAX];
    tg_wire_placement placements[TG_GRID_PARTITIONS_MAX];
};

/* ---- Requests to the manager --------------------------------------------- */

/* Sends m->msg and waits for its reply into m->reply.  TG_OK, the code of an
 * error reply, TG_ETIMEDOUT (no manager answered), or TG_EPROTO. */
static tg_err call(pu_member *m, uint32_t timeout_ms)
{
    const char *why = NULL;
    tg_err err = tg_wire_encode(&m->msg, &m->buf, &why);
    if (err != TG_OK) {
        tg_log_error("pu %s: cannot encode %s: %s", m->srv->name, tg_wire_type_name(m->msg.type),
                     why != NULL ? why : "?");
        return err;
    }
    nng_socket_set_ms(m->req, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms);
    nng_socket_set_ms(m->req, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms);
    int rv = nng_send(m->req, m->buf.data, m->buf.size, 0);
    void *body = NULL;
    size_t len = 0;
    if (rv == 0) {
        rv = nng_recv(m->req, &body, &len, NNG_FLAG_ALLOC);
    }
    if (rv != 0) {
        return rv == NNG_ETIMEDOUT ? TG_ETIMEDOUT : TG_EUNAVAILABLE;
    }
    err = tg_wire_decode(body, len, NULL, &m->reply, &why);
    nng_free(body, len);
    tg_wire_type want = tg_wire_reply_type(m->msg.type);
    if (err == TG_OK && m->reply.type != want && m->reply.type != TG_WIRE_ERROR) {
        err = TG_EPROTO;
        why = "reply type does not match the request";
    }
    if (err != TG_OK) {
        tg_log_warn("pu %s: malformed reply from the manager: %s", m->srv->name,
                    why != NULL ? why : "?");
        return err;
    }
    return m->reply.type == TG_WIRE_ERROR ? (tg_err)m->reply.error.code : TG_OK;
}

static int compare_held(const void *a, const void *b)
{
    uint32_t x = ((const tg_wire_held *)a)->partition_id;
    uint32_t y = ((const tg_wire_held *)b)->partition_id;
    return x < y ? -1 : x > y;
}

/* A backup's copy as a heartbeat reports it: its epoch, its last applied
 * record, and whether its primary counts it in sync. */
static tg_wire_held backup_held(pu_served *e)
{
    pu_partition_info info;
    pu_partition_describe(e->p, &info);
    uint64_t applied = info.applied_seq;
    return (tg_wire_held){
        .partition_id = info.partition_id,
        .event_id = info.event_id,
        .epoch = info.map_epoch,
        .log_head = applied,
        .log_persisted = info.log_persisted <= applied ? info.log_persisted : applied,
        .role = TG_WIRE_HELD_BACKUP,
        .in_sync = __atomic_load_n(&e->in_sync, __ATOMIC_ACQUIRE),
    };
}

/* Every partition this unit serves, ascending: m->held[0..n).  Backups
 * only when with_backups (heartbeats): a registration's list is what the
 * manager may adopt, and a replica must never be adopted as a primary. */
static uint32_t gather_held(pu_member *m, bool with_backups)
{
    pu_server *s = m->srv;
    uint32_t n = 0, parts = __atomic_load_n(&s->part_count, __ATOMIC_ACQUIRE);
    int64_t now_ms = tg_mono_ms();
    for (uint32_t i = 0; i < parts && n < TG_PU_PARTITIONS_MAX; i++) {
        pu_served *e = &s->parts[i];
        if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != PU_PART_READY) {
            continue;
        }
        if (__atomic_load_n(&e->role, __ATOMIC_ACQUIRE) == PU_ROLE_BACKUP) {
            if (with_backups) {
                m->held[n++] = backup_held(e);
            }
            continue;
        }
        pu_partition_info info;
        pu_partition_describe(e->p, &info);
        m->held[n++] = (tg_wire_held){
            .partition_id = info.partition_id,
            .event_id = info.event_id,
            .epoch = info.map_epoch,
            .log_head = info.log_head,
            .log_persisted =
                info.log_persisted <= info.log_head ? info.log_persisted : info.log_head,
            .unpersisted_age_ms = pu_unpersisted_age_ms(s, e, info.log_persisted, now_ms),
        };
    }
    qsort(m->held, n, sizeof(m->held[0]), compare_held);
    return n;
}

/* Dials the manager's PUB address once. */
static void subscribe(pu_member *m, const char *url)
{
    for (uint32_t i = 0; i < m->subscribed_count; i++) {
        if (strcmp(m->subscribed[i], url) == 0) {
            return;
        }
    }
    if (url[0] == '\0' || m->subscribed_count == TG_GRID_MANAGERS_MAX) {
        tg_log_warn("pu %s: cannot follow the map published on '%s'", m->srv->name, url);
        return;
    }
    int rv = nng_dial(m->sub, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        tg_log_warn("pu %s: cannot dial the map on %s: %s", m->srv->name, url, nng_strerror(rv));
        return;
    }
    snprintf(m->subscribed[m->subscribed_count++], TG_URL_BYTES, "%s", url);
}

static void register_once(pu_member *m)
{
    pu_server *s = m->srv;
    memset(&m->msg, 0, sizeof(m->msg));
    m->msg.type = TG_WIRE_PU_REGISTER;
    __typeof__(m->msg.pu_register) *r = &m->msg.pu_register;
    snprintf(r->name, sizeof(r->name), "%s", s->name);
    r->incarnation = m->incarnation;
    snprintf(r->rep_url, sizeof(r->rep_url), "%s", s->cfg.listen_url);
    snprintf(r->pub_url, sizeof(r->pub_url), "%s", s->cfg.pub_url ? s->cfg.pub_url : "");
    snprintf(r->zone, sizeof(r->zone), "%s", m->zone);
    r->held_count = gather_held(m, false);
    r->held = m->held;
    tg_err err = call(m, REGISTER_TIMEOUT_MS);
    if (err != TG_OK) {
        if (!m->unreachable_logged) {
            tg_log_warn("pu %s: cannot register with the manager (%s): retrying", s->name,
                        err == TG_ETIMEDOUT ? "no answer" : tg_errname(err));
            m->unreachable_logged = true;
        }
        return;
    }
    const __typeof__(m->reply.pu_register_ok) *ok = &m->reply.pu_register_ok;
    m->registered = true;
    m->unreachable_logged = false;
    m->interval_ms = ok->heartbeat_interval_ms;
    subscribe(m, ok->pub_url);
    tg_log_info("pu %s: registered with manager %s (map epoch %llu, heartbeat every %u ms, "
                "%u partitions)",
                s->name, ok->manager, (unsigned long long)ok->map_epoch, m->interval_ms,
                r->held_count);
}

/* Stops the unit as SIGTERM does: main's sigwait takes the signal. */
static void leave(pu_member *m)
{
    m->leaving = true;
    tg_log_info("pu %s: removed from the grid by the manager: stopping", m->srv->name);
    kill(getpid(), SIGTERM);
}

static void heartbeat(pu_member *m)
{
    memset(&m->msg, 0, sizeof(m->msg));
    m->msg.type = TG_WIRE_HEARTBEAT;
    snprintf(m->msg.heartbeat.name, sizeof(m->msg.heartbeat.name), "%s", m->srv->name);
    m->msg.heartbeat.incarnation = m->incarnation;
    m->msg.heartbeat.map_epoch = m->map_epoch;
    m->msg.heartbeat.held_count = gather_held(m, true);
    m->msg.heartbeat.held = m->held;
    tg_err err = call(m, m->interval_ms);
    if (err == TG_OK && m->reply.heartbeat_ok.leave && !m->leaving) {
        leave(m);
    } else if (err == TG_ENOT_FOUND) {
        tg_log_info("pu %s: the manager does not know this run of the unit: registering",
                    m->srv->name);
        m->registered = false;
        register_once(m);
    } else if (err != TG_OK && !m->unreachable_logged) {
        tg_log_warn("pu %s: heartbeat not answered (%s)", m->srv->name,
                    err == TG_ETIMEDOUT ? "no answer" : tg_errname(err));
        m->unreachable_logged = true;
    } else if (err == TG_OK) {
        m->unreachable_logged = false;
    }
}

/* ---- The map --------------------------------------------------------------- */

/* Names the map's backups of a partition this unit is the primary of. */
static void follow_backups(pu_member *m, const tg_msg *map, const tg_wire_placement *p,
                           bool epoch_rose)
{
    const __typeof__(map->grid_map) *g = &map->grid_map;
    tg_wire_backup backups[TG_GRID_BACKUPS_MAX];
    uint32_t n = 0;
    for (uint32_t b = 0; b < p->backups.count && n < TG_GRID_BACKUPS_MAX; b++) {
        const tg_wire_member *u = &g->members[p->backups.members[b]];
        snprintf(backups[n].name, sizeof(backups[n].name), "%s", u->name);
        snprintf(backups[n].rep_url, sizeof(backups[n].rep_url), "%s", u->rep_url);
        n++;
    }
    pu_served *e = pu_server_entry(m->srv, p->partition_id);
    if (e != NULL && pu_repl_configure(m->srv, e, backups, n, epoch_rose) != TG_OK) {
        tg_log_warn("pu %s: partition %u: cannot follow the map's backups", m->srv->name,
                    p->partition_id);
    }
}

static bool names_backup(const tg_wire_placement *p, int32_t me)
{
    for (uint32_t b = 0; b < p->backups.count; b++) {
        if ((int32_t)p->backups.members[b] == me) {
            return true;
        }
    }
    return false;
}

/* A backup named at a newer epoch forgets that it was in sync: whatever
 * its primary said was said at an older epoch, and the map may have left
 * it out meanwhile (its primary then acknowledged changes it lacks).  The
 * primary says it again at the new epoch (repl.c, epoch_moved).  Under the
 * apply lock, so that a repl_append that already raised the epoch and said
 * "in sync" at it is not undone. */
static void backup_raise_epoch(pu_served *e, uint64_t epoch)
{
    pthread_mutex_lock(&e->apply_lock);
    pu_partition_info info;
    pu_partition_describe(e->p, &info);
    if (pu_partition_raise_epoch(e->p, epoch) > info.map_epoch) {
        __atomic_store_n(&e->in_sync, false, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&e->apply_lock);
}

/* A partition this unit holds that the map gives to another primary (or
 * lists this unit as a backup of).  A backup takes the map's epoch at once,
 * so that it refuses the old primary even before the new one reaches it; a
 * primary that sees a newer epoch with another primary is deposed. */
static void follow_other(pu_member *m, const tg_wire_placement *p, int32_t me, pu_served *e)
{
    pu_partition_info info;
    pu_partition_describe(e->p, &info);
    if (__atomic_load_n(&e->role, __ATOMIC_ACQUIRE) == PU_ROLE_BACKUP) {
        if (names_backup(p, me)) {
            backup_raise_epoch(e, p->epoch);
        }
        return;
    }
    if (p->primary >= 0 && p->epoch > info.map_epoch) {
        pu_repl_depose(m->srv, e);
        pu_repl_configure(m->srv, e, NULL, 0, false); /* its links: nothing to stream any more */
    }
}

/* The map's placement of one partition, for this unit (member index me).
 * False when the unit could not follow it yet: the map makes it the primary
 * of a partition it does not hold (replay has not loaded it yet), or its
 * copy is still being restored.  The map is then applied again when it is
 * republished, so that a map that came during a replay is not lost. */
static bool follow_placement(pu_member *m, const tg_msg *map, const tg_wire_placement *p,
                             int32_t me)
{
    pu_partition *part = pu_server_find(m->srv, p->partition_id);
    pu_served *e = part != NULL ? pu_server_entry(m->srv, p->partition_id) : NULL;
    if (part == NULL || __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != PU_PART_READY) {
        return part == NULL && p->primary != me;
    }
    if (p->primary != me) {
        follow_other(m, p, me, e);
        return true;
    }
    if (__atomic_load_n(&e->role, __ATOMIC_ACQUIRE) == PU_ROLE_BACKUP &&
        !pu_repl_promote(m->srv, e, p->epoch)) { /* the manager chose it: it was in sync */
        return false; /* a state transfer began meanwhile: applied again when republished */
    }
    pu_partition_info before;
    pu_partition_describe(part, &before);
    uint64_t now = pu_partition_raise_epoch(part, p->epoch);
    if (now != before.map_epoch) {
        tg_log_info("pu %s: partition %u now at epoch %llu (map %llu)", m->srv->name,
                    p->partition_id, (unsigned long long)now,
                    (unsigned long long)map->grid_map.epoch);
    }
    /* After the epoch: links send the new one, which the backups then hold. */
    follow_backups(m, map, p, now != before.map_epoch);
    return true;
}

static void apply_map(pu_member *m, const tg_msg *map)
{
    const __typeof__(map->grid_map) *g = &map->grid_map;
    if (g->epoch <= m->map_epoch) {
        return;
    }
    int32_t me = -1;
    for (uint32_t i = 0; i < g->member_count && me < 0; i++) {
        me = strcmp(g->members[i].name, m->srv->name) == 0 ? (int32_t)i : -1;
    }
    bool followed = true;
    for (uint32_t k = 0; me >= 0 && k < g->placement_count; k++) {
        followed = follow_placement(m, map, &g->placements[k], me) && followed;
    }
    if (followed) {
        m->map_epoch = g->epoch; /* else the republished map is applied again */
    }
}

/* Waits for maps until deadline_ns (at most WAIT_SLICE_MS at a time). */
static void receive_maps(pu_member *m, int64_t deadline_ns)
{
    for (;;) {
        int64_t left_ms = (deadline_ns - tg_mono_ns()) / 1000000;
        if (left_ms <= 0 || __atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE)) {
            return;
        }
        /* poll(2), not a receive timeout: see tg_socket_wait. */
        if (tg_socket_wait(m->sub, (uint32_t)(left_ms < WAIT_SLICE_MS ? left_ms : WAIT_SLICE_MS)) !=
            TG_OK) {
            continue;
        }
        void *body = NULL;
        size_t len = 0;
        if (nng_recv(m->sub, &body, &len, NNG_FLAG_ALLOC | NNG_FLAG_NONBLOCK) != 0) {
            continue;
        }
        const char *why = NULL;
        tg_wire_space space = {.members = m->members,
                               .members_capacity = TG_GRID_MEMBERS_MAX,
                               .placements = m->placements,
                               .placements_capacity = TG_GRID_PARTITIONS_MAX};
        if (tg_wire_decode_event(body, len, &space, &m->msg, &why) == TG_OK &&
            m->msg.type == TG_WIRE_GRID_MAP) {
            apply_map(m, &m->msg);
        } else {
            tg_log_warn("pu %s: a malformed map was published: %s", m->srv->name,
                        why != NULL ? why : "not a map");
        }
        nng_free(body, len);
    }
}

static void *member_main(void *arg)
{
    pu_member *m = arg;
    int64_t next_beat = tg_mono_ns();
    while (!__atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE)) {
        receive_maps(m, next_beat);
        if (__atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE)) {
            break;
        }
        if (m->leaving) {
            next_beat = tg_mono_ns() + (int64_t)WAIT_SLICE_MS * 1000000;
            continue;
        }
        if (m->registered) {
            heartbeat(m);
        } else {
            register_once(m);
        }
        int64_t now = tg_mono_ns(), step = (int64_t)m->interval_ms * 1000000;
        next_beat = next_beat + step > now ? next_beat + step : now + step;
    }
    return NULL;
}

/* ---- Starting and stopping ---------------------------------------------------- */

/* Splits "url,url" into m->urls; false if one is empty or too long. */
static bool parse_urls(pu_member *m, const char *list)
{
    const char *p = list;
    while (m->url_count < TG_GRID_MANAGERS_MAX) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == 0 || n >= TG_URL_BYTES) {
            return false;
        }
        memcpy(m->urls[m->url_count], p, n);
        m->urls[m->url_count++][n] = '\0';
        if (end == NULL) {
            return true;
        }
        p = end + 1;
    }
    return false;
}

static tg_err sockets_open(pu_member *m)
{
    int rv = nng_req0_open(&m->req);
    if (rv == 0) {
        rv = nng_sub0_open(&m->sub);
    }
    if (rv != 0) {
        return TG_ENOMEM;
    }
    /* Never resend: a late heartbeat is worth nothing, the next one is due. */
    nng_socket_set_ms(m->req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_size(m->sub, NNG_OPT_RECVMAXSZ, TG_WIRE_MESSAGE_BYTES_MAX + 4096u);
    const uint8_t topic[TG_WIRE_TOPIC_BYTES] = {0xff, 0xff, 0xff, 0xff};
    nng_socket_set(m->sub, NNG_OPT_SUB_SUBSCRIBE, topic, sizeof(topic));
    for (int k = 0; k < 2; k++) {
        nng_socket s = k == 0 ? m->req : m->sub;
        nng_socket_set_ms(s, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS);
        nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS);
    }
    for (uint32_t i = 0; i < m->url_count; i++) {
        rv = nng_dial(m->req, m->urls[i], NULL, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            tg_log_error("pu %s: cannot dial the manager at %s: %s", m->srv->name, m->urls[i],
                         nng_strerror(rv));
            return TG_EINVAL;
        }
    }
    return TG_OK;
}

tg_err pu_member_start(pu_server *s, pu_member **out)
{
    pu_member *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return TG_ENOMEM;
    }
    m->srv = s;
    m->interval_ms = TG_GRID_HEARTBEAT_INTERVAL_MS_DEFAULT;
    int64_t now_ms = tg_now_ms();
    m->incarnation = now_ms > 0 ? (uint64_t)now_ms : 1;
    snprintf(m->zone, sizeof(m->zone), "%s", s->cfg.zone != NULL ? s->cfg.zone : "");
    msgpack_sbuffer_init(&m->buf);
    tg_err err = parse_urls(m, s->cfg.manager_urls) ? sockets_open(m) : TG_EINVAL;
    if (err == TG_OK && pthread_create(&m->thread, NULL, member_main, m) != 0) {
        err = TG_ESYSTEM;
    }
    if (err != TG_OK) {
        tg_log_error("pu %s: cannot join the grid: %s", s->name, tg_strerror(err));
        msgpack_sbuffer_destroy(&m->buf);
        free(m); /* sockets stay open: see the top of this file */
        return err;
    }
    tg_log_info("pu %s: joining the grid through %s (incarnation %llu)", s->name,
                s->cfg.manager_urls, (unsigned long long)m->incarnation);
    *out = m;
    return TG_OK;
}

void pu_member_stop(pu_member *m)
{
    if (m == NULL) {
        return;
    }
    __atomic_store_n(&m->stopping, true, __ATOMIC_RELEASE);
    pthread_join(m->thread, NULL);
    msgpack_sbuffer_destroy(&m->buf);
    free(m);
}

/*
 * server.c — serving partitions over nng (see server.h).
 *
 * Request path.  Each REP context owns one nng AIO and cycles
 * recv → decode → engine call → encode → send → recv.  The engine call is
 * lock-free and short, so it runs right on nng's callback thread; many
 * contexts in flight give both cores work and hide the thread hand-offs of a
 * round trip.  Each context owns its buffers (request, reply, the large
 * reply arrays), allocated once at open: nothing is allocated per request
 * except what nng itself does for messages, and the request message is
 * reused for the reply.
 *
 * Partition table.  Entries are filled under table_lock, then published by
 * a release store of the count; lookups read the count with acquire and scan
 * without a lock.  Entries are never removed while the server runs (moving
 * partitions away is the grid's job, which stops serving them through the map
 * epoch, not by freeing).  A partition created over the wire is RESTORING
 * until partition_restore ends; only READY partitions are served.
 *
 * Housekeeping thread, every PU_TICK_MS: publish each partition's new seat
 * changes (one event per partition per tick, at most TG_WIRE_CHANGES_MAX
 * changes; a subscriber that sees from_seq jump past its last to_seq + 1 has
 * missed changes and should reread the availability), trim the log in
 * unpersisted mode, sample the log head for the "oldest unpersisted" age,
 * and every sweep interval expire due holds.
 */
#include "server.h"
#include "server_internal.h"

#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ctx_cb(void *arg);

static bool name_ok(const char *name)
{
    char probe[TG_SHM_NAME_BYTES];
    return name != NULL && pu_segment_name(probe, sizeof(probe), name, 0) == TG_OK;
}

static tg_err config_check(const pu_server_config *cfg)
{
    if (!name_ok(cfg->name)) {
        tg_log_error("pu: invalid name (letters, digits, '.', '_', '-'; < %u bytes)",
                     TG_PU_NAME_BYTES);
        return TG_EINVAL;
    }
    if (cfg->listen_url == NULL || cfg->listen_url[0] == '\0') {
        tg_log_error("pu: a listen address is required");
        return TG_EINVAL;
    }
    if (cfg->contexts > PU_CONTEXTS_MAX) {
        tg_log_error("pu: contexts must be 1..%u", PU_CONTEXTS_MAX);
        return TG_EINVAL;
    }
    return TG_OK;
}

static tg_err nng_to_tg(int rv)
{
    switch (rv) {
    case 0:
        return TG_OK;
    case NNG_ENOMEM:
        return TG_ENOMEM;
    case NNG_ETIMEDOUT:
        return TG_ETIMEDOUT;
    case NNG_ECLOSED:
        return TG_ECLOSED;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
        return TG_EINVAL;
    default:
        return TG_ESYSTEM;
    }
}

/* nng 1.5 reads a message of any announced size whole; refuse large ones
 * at the transport, before they cost memory. */
#define PU_RECV_BYTES_MAX (TG_WIRE_MESSAGE_BYTES_MAX + 4096u)

static tg_err sockets_open(pu_server *s)
{
    int rv = nng_rep0_open(&s->rep);
    if (rv == 0) {
        rv = nng_socket_set_size(s->rep, NNG_OPT_RECVMAXSZ, PU_RECV_BYTES_MAX);
    }
    if (rv == 0) {
        rv = nng_listen(s->rep, s->cfg.listen_url, NULL, 0);
    }
    if (rv != 0) {
        tg_log_error("pu: cannot listen on %s: %s", s->cfg.listen_url, nng_strerror(rv));
        return nng_to_tg(rv);
    }
    s->rep_open = true;
    if (s->cfg.pub_url == NULL || s->cfg.pub_url[0] == '\0') {
        return TG_OK;
    }
    rv = nng_pub0_open(&s->pub);
    if (rv == 0) {
        s->pub_open = true;
        rv = nng_listen(s->pub, s->cfg.pub_url, NULL, 0);
    }
    if (rv != 0) {
        tg_log_error("pu: cannot publish on %s: %s", s->cfg.pub_url, nng_strerror(rv));
        return nng_to_tg(rv);
    }
    return TG_OK;
}

static tg_err contexts_open(pu_server *s)
{
    s->ctxs = calloc(s->nctx, sizeof(*s->ctxs));
    if (s->ctxs == NULL) {
        return TG_ENOMEM;
    }
    for (uint32_t i = 0; i < s->nctx; i++) {
        pu_ctx *c = &s->ctxs[i];
        c->srv = s;
        msgpack_sbuffer_init(&c->buf);
        msgpack_sbuffer_init(&c->batch);
        c->big = malloc(sizeof(*c->big));
        if (c->big == NULL || nng_aio_alloc(&c->aio, ctx_cb, c) != 0 ||
            nng_ctx_open(&c->ctx, s->rep) != 0) {
            return TG_ENOMEM;
        }
        c->opened = true;
    }
    return TG_OK;
}

tg_err pu_server_open(const pu_server_config *cfg, pu_server **out)
{
    tg_err err = config_check(cfg);
    if (err != TG_OK) {
        return err;
    }
    pu_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return TG_ENOMEM;
    }
    s->cfg = *cfg;
    snprintf(s->name, sizeof(s->name), "%s", cfg->name);
    s->cfg.name = s->name;
    const char *refuse_dir = getenv("TIXGRID_TEST_REPL_REFUSE_DIR");
    if (refuse_dir != NULL && refuse_dir[0] != '\0') {
        snprintf(s->repl_refuse_path, sizeof(s->repl_refuse_path), "%s/%s", refuse_dir, s->name);
    }
    s->nctx = cfg->contexts != 0 ? cfg->contexts : PU_CONTEXTS_DEFAULT;
    s->sweep_interval_ms =
        cfg->sweep_interval_ms != 0 ? cfg->sweep_interval_ms : PU_SWEEP_INTERVAL_MS_DEFAULT;
    pthread_mutex_init(&s->samples_lock, NULL);
    pthread_mutex_init(&s->table_lock, NULL);
    err = sockets_open(s);
    if (err == TG_OK) {
        err = contexts_open(s);
    }
    if (err != TG_OK) {
        pu_server_close(s);
        return err;
    }
    *out = s;
    return TG_OK;
}

pu_served *pu_server_entry(pu_server *s, uint32_t partition_id)
{
    uint32_t n = __atomic_load_n(&s->part_count, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < n; i++) {
        if (s->parts[i].id == partition_id) {
            return &s->parts[i];
        }
    }
    return NULL;
}

pu_partition *pu_server_find(pu_server *s, uint32_t partition_id)
{
    pu_served *e = pu_server_entry(s, partition_id);
    bool ready = e != NULL && __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == PU_PART_READY;
    return ready ? e->p : NULL;
}

static tg_err add_entry(pu_server *s, pu_partition *p, uint32_t state)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    pthread_mutex_lock(&s->table_lock);
    uint32_t n = s->part_count;
    tg_err err = pu_server_entry(s, info.partition_id) != NULL ? TG_EEXIST
                 : n >= PU_PARTITIONS_MAX                     ? TG_ENOMEM
                                                              : TG_OK;
    if (err == TG_OK) {
        s->parts[n] = (pu_served){.id = info.partition_id,
                                  .p = p,
                                  .state = state,
                                  .role = info.replica ? PU_ROLE_BACKUP : PU_ROLE_PRIMARY,
                                  .pub_cursor = info.log_persisted + 1,
                                  .pub_from = info.log_persisted + 1};
        pthread_mutex_init(&s->parts[n].apply_lock, NULL);
        pthread_cond_init(&s->parts[n].applied, NULL);
        __atomic_store_n(&s->part_count, n + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&s->table_lock);
    if (err == TG_OK) {
        tg_log_info("pu %s: %s partition %u (event %llu, %u seats)", s->name,
                    state != PU_PART_READY ? "restoring"
                    : info.replica         ? "backing up"
                                           : "serving",
                    info.partition_id,
                    (unsigned long long)info.event_id, info.seat_count);
    }
    return err;
}

tg_err pu_server_add_partition(pu_server *s, pu_partition *p)
{
    return add_entry(s, p, PU_PART_READY);
}

tg_err pu_server_add_restoring(pu_server *s, pu_partition *p)
{
    return add_entry(s, p, PU_PART_RESTORING);
}

static bool segment_is_ours(const char *entry, const char *prefix, size_t prefix_len)
{
    if (strncmp(entry, prefix, prefix_len) != 0) {
        return false;
    }
    const char *digits = entry + prefix_len;
    if (*digits == '\0') {
        return false;
    }
    for (const char *d = digits; *d != '\0'; d++) {
        if (*d < '0' || *d > '9') {
            return false;
        }
    }
    return true;
}

/* Attaches one of this unit's segments found in /dev/shm.  A segment that
 * cannot have been served — one a crash left without its magic number
 * (creation stores it last), or one a restore had not finished — is removed:
 * PostgreSQL still has its data, and replay brings it back.  Any other
 * failure skips the segment (logged) so the unit's other partitions serve. */
static bool attach_one(pu_server *s, const char *shm)
{
    pu_partition *p = NULL;
    tg_err err = pu_partition_attach(shm, PU_ATTACH_OWNER, &p);
    pu_partition_info info = {0};
    if (err == TG_OK) {
        pu_partition_describe(p, &info);
    }
    if (err == TG_EBAD_MAGIC || (err == TG_OK && info.restoring)) {
        tg_log_warn("pu %s: removing %s: %s; replay the partition to bring it back", s->name,
                    shm, err == TG_OK ? "its restore never finished" : "it was never completed");
        pu_partition_detach(p);
        pu_partition_destroy(shm);
        return false;
    }
    if (err == TG_OK && (err = pu_server_add_partition(s, p)) != TG_OK) {
        pu_partition_detach(p);
    }
    if (err != TG_OK) {
        tg_log_error("pu %s: cannot re-attach %s (skipped): %s", s->name, shm, tg_strerror(err));
    }
    return err == TG_OK;
}

tg_err pu_server_attach_existing(pu_server *s, uint32_t *count)
{
    char prefix[TG_SHM_NAME_BYTES];
    snprintf(prefix, sizeof(prefix), "tixgrid-%s-p", s->name);
    size_t prefix_len = strlen(prefix);
    *count = 0;
    DIR *dir = opendir("/dev/shm");
    if (dir == NULL) {
        return TG_ESYSTEM;
    }
    struct dirent *de;
    for (uint32_t seen = 0; seen < PU_PARTITIONS_MAX * 4 && (de = readdir(dir)) != NULL;) {
        size_t len = strlen(de->d_name);
        char shm[TG_SHM_NAME_BYTES];
        if (!segment_is_ours(de->d_name, prefix, prefix_len) || len + 2 > sizeof(shm)) {
            continue;
        }
        seen++;
        shm[0] = '/';
        memcpy(shm + 1, de->d_name, len + 1);
        *count += attach_one(s, shm) ? 1 : 0;
    }
    closedir(dir);
    return TG_OK;
}

static void ctx_receive(pu_ctx *c)
{
    __atomic_store_n(&c->state, PU_CTX_RECEIVING, __ATOMIC_SEQ_CST);
    nng_ctx_recv(c->ctx, c->aio);
}

tg_err pu_server_start(pu_server *s)
{
    for (uint32_t i = 0; i < s->nctx; i++) {
        ctx_receive(&s->ctxs[i]);
    }
    if (pthread_create(&s->housekeeper, NULL, pu_housekeeping_main, s) != 0) {
        return TG_ESYSTEM;
    }
    s->housekeeping = true;
    tg_log_info("pu %s: listening on %s with %u contexts", s->name, s->cfg.listen_url, s->nctx);
    if (s->cfg.manager_urls != NULL) {
        return pu_member_start(s, &s->member);
    }
    return TG_OK;
}

/* A request arrived: handle it and send the reply from the same message,
 * at once or, for a change its backups must apply first, once they did. */
static void ctx_reply(pu_ctx *c)
{
    nng_msg *msg = nng_aio_get_msg(c->aio);
    c->park_entry = NULL;
    if (!pu_handle(c, nng_msg_body(msg), nng_msg_len(msg))) {
        nng_msg_free(msg); /* a batch ran but its reply could not be built */
        ctx_receive(c);
        return;
    }
    if (c->park_entry != NULL && pu_repl_park(c)) {
        return;
    }
    pu_ctx_send(c);
}

void pu_ctx_send(pu_ctx *c)
{
    nng_msg *msg = nng_aio_get_msg(c->aio);
    nng_msg_clear(msg);
    if (nng_msg_append(msg, c->buf.data, c->buf.size) != 0) {
        nng_msg_free(msg);
        ctx_receive(c); /* out of memory: the requester times out */
        return;
    }
    c->sending = true;
    nng_aio_set_msg(c->aio, msg);
    nng_ctx_send(c->ctx, c->aio);
}

void pu_ctx_drop(pu_ctx *c)
{
    nng_msg_free(nng_aio_get_msg(c->aio));
    nng_aio_set_msg(c->aio, NULL);
    if (__atomic_load_n(&c->srv->stopping, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&c->state, PU_CTX_IDLE, __ATOMIC_SEQ_CST);
        return;
    }
    /* On the same context: REP forgets the dropped request's route. */
    ctx_receive(c);
}

/* The context's AIO completed: a request arrived, or a reply went out. */
static void ctx_cb(void *arg)
{
    pu_ctx *c = arg;
    pu_server *s = c->srv;
    int rv = nng_aio_result(c->aio);
    if (c->sending) {
        c->sending = false;
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(c->aio));
        }
    } else if (rv == 0) {
        __atomic_store_n(&c->state, PU_CTX_BUSY, __ATOMIC_SEQ_CST);
        ctx_reply(c);
        return;
    }
    bool stopping = __atomic_load_n(&s->stopping, __ATOMIC_SEQ_CST);
    if (stopping || rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        __atomic_store_n(&c->state, PU_CTX_IDLE, __ATOMIC_SEQ_CST);
        return;
    }
    ctx_receive(c);
}

static bool contexts_idle(pu_server *s)
{
    for (uint32_t i = 0; i < s->nctx; i++) {
        if (__atomic_load_n(&s->ctxs[i].state, __ATOMIC_SEQ_CST) != PU_CTX_IDLE) {
            return false;
        }
    }
    return true;
}

/*
 * Stopping: set the flag first, then cancel only receives that are still
 * pending.  A context whose request already arrived is BUSY and finishes
 * (its callback sees the flag after its reply and goes idle); one that
 * receives between our read of its state and the cancel sees the flag in
 * pu_handle and answers TG_EUNAVAILABLE without running anything, so a
 * reply the cancel might lose was never an acknowledged change.
 */
void pu_server_stop(pu_server *s)
{
    if (__atomic_exchange_n(&s->stopping, true, __ATOMIC_SEQ_CST)) {
        return;
    }
    pu_member_stop(s->member); /* the manager hears nothing more: it declares the unit dead */
    s->member = NULL;
    pu_repl_stop(s);
    int64_t deadline = tg_mono_ns() + (int64_t)PU_STOP_DRAIN_MS * 1000000;
    while (s->ctxs != NULL && !contexts_idle(s) && tg_mono_ns() < deadline) {
        for (uint32_t i = 0; i < s->nctx; i++) {
            if (__atomic_load_n(&s->ctxs[i].state, __ATOMIC_SEQ_CST) == PU_CTX_RECEIVING) {
                nng_aio_cancel(s->ctxs[i].aio);
            }
        }
        nng_msleep(1);
    }
    if (s->rep_open) {
        nng_close(s->rep);
        s->rep_open = false;
    }
    if (s->housekeeping) {
        pthread_join(s->housekeeper, NULL);
        s->housekeeping = false;
        tg_log_info("pu %s: stopped", s->name); /* only a unit that started */
    }
}

void pu_server_close(pu_server *s)
{
    if (s == NULL) {
        return;
    }
    pu_server_stop(s);
    for (uint32_t i = 0; s->ctxs != NULL && i < s->nctx; i++) {
        pu_ctx *c = &s->ctxs[i];
        if (c->aio != NULL) {
            nng_aio_free(c->aio); /* waits for a callback still running */
        }
        msgpack_sbuffer_destroy(&c->buf);
        msgpack_sbuffer_destroy(&c->batch);
        free(c->big);
    }
    free(s->ctxs);
    if (s->pub_open) {
        nng_close(s->pub);
    }
    pu_repl_free(s);
    for (uint32_t i = 0; i < s->part_count; i++) {
        pu_partition_detach(s->parts[i].p);
        pthread_mutex_destroy(&s->parts[i].apply_lock);
        pthread_cond_destroy(&s->parts[i].applied);
    }
    pthread_mutex_destroy(&s->samples_lock);
    pthread_mutex_destroy(&s->table_lock);
    free(s);
}

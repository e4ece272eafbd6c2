/*
 * server_internal.h — what the server's files share (pu-internal).
 *
 * server.c owns sockets, contexts and the partition table; handlers.c turns
 * one decoded request into one reply; housekeeping.c publishes changes and
 * sweeps.  Fields say which thread writes them and what protects them.
 */
#ifndef PU_SERVER_INTERNAL_H
#define PU_SERVER_INTERNAL_H

#include "server.h"

#include "tixgrid/wire.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <sched.h>

/* Log-head samples kept per partition (tixgrid/limits.h). */
#define PU_HEAD_SAMPLES TG_PU_HEAD_SAMPLES
/* Ticks between two head samples (PU_TICK_MS each). */
#define PU_SAMPLE_EVERY_TICKS 5u

typedef struct {
    uint64_t head;
    int64_t mono_ms;
} pu_head_sample;

/* What a served partition is on this unit (atomic; moves only during a
 * state transfer, under table_lock). */
enum {
    PU_ROLE_PRIMARY = 0, /* sells; streams its records to its backups (repl.c) */
    PU_ROLE_BACKUP = 1,  /* a replica: applies its primary's records, serves reads only */
};

/* A primary partition's replication: its links to backups, the replies
 * waiting for their acks (repl.c). */
typedef struct pu_repl_part pu_repl_part;

/* A primary has up to two repl_append in flight per backup, and the
 * backup's contexts may take them in either order: one that arrives after a
 * gap waits this long for the message before it (handlers.c). */
#define PU_REPL_REORDER_WAIT_MS 5u

/* States of a served partition. */
enum {
    PU_PART_READY = 0,     /* serving requests */
    PU_PART_RESTORING = 1, /* created over the wire, being filled by partition_restore */
};

/* One served partition.  id and p are set before the entry is published and
 * never change; state moves RESTORING → READY once (release store), under
 * table_lock; restore_began is guarded by table_lock; the rest belongs to the
 * housekeeping thread, except samples, which stats read under samples_lock. */
typedef struct {
    uint32_t id;
    pu_partition *p;
    uint32_t state;
    uint32_t role; /* PU_ROLE_*; atomic */
    bool restore_began;
    pthread_mutex_t apply_lock; /* backups: one repl_append or repl_snapshot at a time */
    pthread_cond_t applied;     /* backups: signalled after every repl_append (apply_lock) */
    pu_repl_part *repl;         /* NULL until backups are named; then fixed; atomic */
    bool in_sync; /* backups: what the last repl_append applied said; atomic (member.c reports it) */
    uint64_t pub_cursor; /* next log seq to read for publishing */
    uint64_t pub_from;   /* first seq the next event covers; stored with release order
                          * (seat_states reads it from another thread) */
    uint32_t sample_next;
    uint32_t sample_count;
    pu_head_sample samples[PU_HEAD_SAMPLES];
    /* Primary work under way: requests that change it, sweeps; atomic.
     * Alone on its cache line, whatever the entry's alignment (the server
     * comes from calloc): every such request moves it, and every request
     * reads the fields above. */
    uint8_t active_pad_before[64];
    uint32_t active;
    uint8_t active_pad_after[64 - sizeof(uint32_t)];
} pu_served;

/*
 * Wiping a partition that was a primary.  A deposed primary is made a
 * backup again by a state transfer, which starts by wiping its regions; a
 * request that passed the role check just before the deposition, or a
 * sweep of the housekeeping thread, may still be writing them.  Primary
 * work enters (active + 1, then reads the role) and the wipe waits for it
 * (role BACKUP is stored first, then active is read until 0): with both
 * sides sequentially consistent, either the work sees BACKUP and does
 * nothing, or the wipe sees it under way and waits for it to leave.
 */
static inline void pu_primary_leave(pu_served *e)
{
    __atomic_sub_fetch(&e->active, 1, __ATOMIC_RELEASE);
}

/* False, with nothing entered, when e is a backup. */
static inline bool pu_primary_enter(pu_served *e)
{
    __atomic_add_fetch(&e->active, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&e->role, __ATOMIC_SEQ_CST) == PU_ROLE_BACKUP) {
        pu_primary_leave(e);
        return false;
    }
    return true;
}

/* With e's role BACKUP or e never ready: waits until the primary work
 * entered before is done (a request's handler or a sweep pass: short, and
 * never waiting for the locks a state transfer holds). */
static inline void pu_primary_quiesce(pu_served *e)
{
    while (__atomic_load_n(&e->active, __ATOMIC_SEQ_CST) != 0) {
        sched_yield();
    }
}

/* The arrays a large request or reply needs.  A request that needs arrays
 * (partition_create, partition_restore) has a reply without any, and the
 * other way round, so one union serves both. */
typedef union {
    tg_wire_seat seats[TG_WIRE_SEATS_LIST_MAX];
    tg_wire_states states[TG_WIRE_STATES_MAX];
    tg_wire_counts counts[TG_ROWS_MAX];
    tg_wire_row rows[TG_ROWS_MAX];
    tg_wire_log_record records[TG_WIRE_LOG_RECORDS_MAX];
    struct {
        tg_wire_row rows[TG_ROWS_MAX];
        pu_row_spec specs[TG_ROWS_MAX];
    } create;
    struct {
        tg_wire_booking_state bookings[TG_WIRE_RESTORE_BOOKINGS_MAX];
        tg_wire_change seats[TG_WIRE_CHANGES_MAX];
    } restore;
    struct {
        tg_wire_log_record wire[TG_WIRE_LOG_RECORDS_MAX];
        pu_log_record records[TG_WIRE_LOG_RECORDS_MAX];
    } append;
} pu_reply_space;

/* Where a context is, for stopping: only a pending receive may be
 * cancelled; a request being handled always gets its reply. */
enum {
    PU_CTX_IDLE = 0,
    PU_CTX_RECEIVING = 1,
    PU_CTX_BUSY = 2,
};

/* The unit's membership in the grid (member.c). */
typedef struct pu_member pu_member;

typedef struct pu_ctx {
    struct pu_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    bool opened;
    bool sending;   /* the AIO carries a reply; only this context's callback */
    uint32_t state; /* PU_CTX_*; atomic: read by pu_server_stop */
    msgpack_sbuffer buf;
    msgpack_sbuffer batch; /* a batch reply being assembled; swapped with buf */
    tg_msg req;
    tg_msg rep;
    pu_reply_space *big;
    /* Set by pu_handle for a request that changed a partition with backups:
     * its reply waits until they applied every record up to park_seq. */
    pu_served *park_entry;
    uint64_t park_seq;
    struct pu_ctx *park_next; /* in the partition's parked list (repl.c) */
} pu_ctx;

struct pu_server {
    pu_server_config cfg;
    char name[TG_PU_NAME_BYTES];
    uint32_t nctx;
    uint32_t sweep_interval_ms;
    nng_socket rep;
    nng_socket pub;
    bool rep_open, pub_open;
    pu_ctx *ctxs;

    pu_served parts[PU_PARTITIONS_MAX];
    uint32_t part_count; /* release-published under table_lock */
    pthread_mutex_t table_lock; /* adding entries, restoring */
    pthread_mutex_t samples_lock;

    /* Requests by (type, outcome); atomic adds from nng threads. */
    uint64_t ops[TG_WIRE_REQUEST_LAST + 1][TG_ERR_COUNT_];

    bool stopping; /* atomic; set once by pu_server_stop */
    pthread_t housekeeper;
    bool housekeeping;
    pu_member *member; /* NULL without a manager; controlling thread only */

    /* Tests only (TIXGRID_TEST_REPL_REFUSE_DIR, read once at start): while a
     * file named after this unit exists in that folder, it refuses every
     * replication message it receives, as a backup cut off from its primary
     * would look to it.  Empty: never. */
    char repl_refuse_path[TG_URL_BYTES];
};

/* The entry for a partition in any state, or NULL. */
pu_served *pu_server_entry(pu_server *s, uint32_t partition_id);

/* Sends the reply pu_handle left in c->buf (server.c); any thread. */
void pu_ctx_send(pu_ctx *c);

/* Drops the request c holds without a reply (its requester times out) and
 * receives the next one, unless the server is stopping; any thread. */
void pu_ctx_drop(pu_ctx *c);

/* ---- Replication (repl.c) ------------------------------------------------ */

/* Names the backups of a primary partition (repl_backups, or the map):
 * starts a link to each new one, stops links to those no longer named.
 * Same names and addresses: nothing changes.  epoch_rose: the naming came
 * with a rise of the partition's epoch, so a new link need not start
 * vouched (repl.c). */
tg_err pu_repl_configure(pu_server *s, pu_served *e, const tg_wire_backup *backups, uint32_t n,
                         bool epoch_rose);

/* After a request changed e (c->park_seq set): true if the reply must wait
 * for the backups' acks (it is then sent by the link that gets the last
 * one) or is never sent (a deposed or stopping primary: c is then dropped);
 * false to send it now.  Wakes the links either way. */
bool pu_repl_park(pu_ctx *c);

/* True while e's primary is fenced: a backup refused it a newer epoch than
 * its own, and the map that raised it has not come yet (repl.c).  Its
 * changes are refused meanwhile; any thread, no lock. */
bool pu_repl_fenced(pu_served *e);

/* Stops every link and drops the replies still waiting: a reply that no
 * backup acknowledged is never sent, exactly as if the unit had crashed. */
void pu_repl_stop(pu_server *s);

/* Frees what pu_repl_configure allocated (after pu_repl_stop). */
void pu_repl_free(pu_server *s);

/* A backup the map makes the primary: under the apply lock (no
 * repl_append half applied), raises the epoch to the map's (so the old
 * primary's records are refused from now on), makes the copy a primary
 * and serves it as one.  The caller then names its backups.  False, with
 * nothing changed, when a state transfer began on the copy since the
 * caller saw it ready: a half-filled copy is never made a primary. */
bool pu_repl_promote(pu_server *s, pu_served *e, uint64_t epoch);

/* A primary that learned it is deposed (the map names another primary at a
 * newer epoch, or it stayed fenced too long: repl.c): drops the parked replies
 * unsent, releases none from then on, and serves the partition as a
 * backup (reads only; a new primary may fill it).  Idempotent; any thread
 * but e's link threads' callers of configure. */
void pu_repl_depose(pu_server *s, pu_served *e);

/* Fills a repl_status_ok for a primary partition. */
void pu_repl_status(pu_served *e, tg_msg *rep);

/* The last record the drain may read (log_read): what every backup the
 * primary waits for has applied, so what a promoted backup has too; the
 * whole log (UINT64_MAX) without backups; nothing (0) once deposed, or
 * while fenced. */
uint64_t pu_repl_readable(pu_served *e);

/* Adds p in state RESTORING (partition_create). */
tg_err pu_server_add_restoring(pu_server *s, pu_partition *p);

/* Decodes the request (or batch of requests, wire.h) in body, runs it, and
 * leaves the encoded reply in c->buf.  Every problem becomes an error reply;
 * false only when a batch ran but its reply could not be built (out of
 * memory): then nothing is sent. */
bool pu_handle(pu_ctx *c, const void *body, size_t len);

/* Oldest unpersisted age of a partition in ms (0 if all persisted). */
uint64_t pu_unpersisted_age_ms(pu_server *s, pu_served *e, uint64_t persisted, int64_t now_ms);

void *pu_housekeeping_main(void *arg);

/* Starts the membership thread (registration, heartbeats, the map); the
 * sockets dial cfg.manager_urls.  TG_EINVAL for a bad address list. */
tg_err pu_member_start(pu_server *s, pu_member **out);
/* Stops the thread and frees m (NULL allowed). */
void pu_member_stop(pu_member *m);

#endif

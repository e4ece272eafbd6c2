/*
 * manager.h — tixgrid-manager: the partition map's owner (grid-internal).
 *
 * The manager keeps the grid's membership and its partition map, in memory
 * and in PostgreSQL (grid_members, grid_partitions, grid_map; see
 * schemas/sql/006_grid_manager.sql), and is the only writer of both.  Many
 * managers may run; one is active, the others stand by:
 *
 *   standby   connected to PostgreSQL, trying pg_try_advisory_lock every
 *             standby_poll_ms; no socket open.  The lock is session-level,
 *             so PostgreSQL releases it the moment the active manager's
 *             session ends (the process died, or its connection did).
 *   active    holds the lock; answers units and tixgridctl on its REP
 *             socket, publishes the map on its PUB socket, declares silent
 *             units dead, and writes every change of the map in one
 *             transaction on the session that holds the lock — so a manager
 *             that lost its session cannot write, and each write checks the
 *             map epoch it read (grid_map.epoch), so two writers never both
 *             succeed.  A failed or timed-out statement, or a lost session,
 *             makes it close its sockets and stand by again.
 *
 * Changes are persisted first and published after: a unit never applies a
 * map that PostgreSQL does not hold.  The map is published again every
 * republish_ms, so a subscriber that joined late (or missed one under load:
 * PUB/SUB drops) catches up.  A manager taking over reads everything back,
 * gives every unit a whole failure timeout to be heard again, and publishes
 * the map with its epoch + 1.
 *
 * The module split: manager_state.c is the map and every rule about it
 * (registration, heartbeats, adoption, failure detection, the status and
 * map messages), with no I/O; manager_db.c is PostgreSQL; manager.c is the
 * loop, the sockets and the switch between standby and active.
 *
 * Threads: one.  grid_manager_run runs the loop on the caller's thread
 * until should_stop says so; nothing here is called from nng callbacks.
 */
#ifndef GRID_MANAGER_H
#define GRID_MANAGER_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "detector.h"
#include "placement.h"
#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/wire.h"

/* The advisory lock key that makes one manager active ("tgridmgr"). */
#define GRID_MANAGER_LOCK_KEY "8379472309981767538"
/* Defaults of the manager's other settings, in ms. */
#define GRID_REPUBLISH_MS_DEFAULT    1000u
#define GRID_STANDBY_POLL_MS_DEFAULT 200u
#define GRID_REFRESH_MS_DEFAULT      1000u
/* How often last_seen is written, and how long one statement may take
 * before the manager gives its session up, in ms. */
#define GRID_LAST_SEEN_FLUSH_MS 1000u
#define GRID_DB_TIMEOUT_MS      5000u
/* How long a manager that got the lock but could not take over (its
 * address in use, the map unreadable) waits before trying again. */
#define GRID_RETRY_MS 1000u
/* Moves of partitions between live units in progress at once (each fills a
 * backup by state transfer), and how long one may take by default before
 * it is given up, in ms. */
#define GRID_MOVES_MAX               32u
#define GRID_MOVE_TIMEOUT_MS_DEFAULT 60000u
/* A move's last step is confirmed with its primary (repl_status): at most
 * this many a pass, each waited for at most this long, in ms. */
#define GRID_MOVES_CONFIRM_PER_PASS  4u
#define GRID_MOVE_CONFIRM_TIMEOUT_MS 250u
/* A backup dropped because its primary could not replicate to it gets no
 * copy of that partition again for this long, in ms. */
#define GRID_BACKUP_SHUN_MS 10000u
/* The loop's longest wait for a request: the detector's resolution. */
#define GRID_TICK_MS 10u
/* Requests answered in one pass of the loop before housekeeping runs. */
#define GRID_REQUESTS_PER_PASS 64u
/* Closed connections queued between two passes (more wait for the timeout). */
#define GRID_CLOSED_PIPES_MAX 64u
/* PostgreSQL closes a session idle this long (a manager frozen, SIGSTOP):
 * its lock goes, and a standby takes over. */
#define GRID_IDLE_SESSION_TIMEOUT_MS 10000u

typedef struct {
    const char *name;       /* [A-Za-z0-9._-], < TG_PU_NAME_BYTES */
    const char *listen_url; /* REP: units and tixgridctl */
    const char *pub_url;    /* PUB: grid_map */
    const char *conninfo;   /* PostgreSQL */
    uint32_t connect_timeout_s;
    uint32_t heartbeat_interval_ms;
    uint32_t failure_timeout_ms;
    uint32_t republish_ms;
    uint32_t standby_poll_ms;
    uint32_t refresh_ms;
    uint32_t backups;         /* backups wanted per partition, 0..TG_GRID_BACKUPS_MAX */
    uint32_t move_timeout_ms; /* a move not done by then is given up */
} grid_manager_config;

/* Runs the manager until should_stop(arg) is true (checked at every pass,
 * at least every GRID_TICK_MS while active and standby_poll_ms while
 * standing by).  Returns TG_OK after a stop, TG_EDB when the database has
 * no grid schema (run tixgrid-persister migrate), TG_EINVAL for a bad cfg. */
tg_err grid_manager_run(const grid_manager_config *cfg, bool (*should_stop)(void *), void *arg);

/* ---- The map in memory (manager_state.c) -------------------------------- */

/* A member slot; name[0] == '\0' marks a free slot.  Slots never move, so
 * partitions name members by slot index; messages renumber them. */
typedef struct {
    char name[TG_PU_NAME_BYTES];
    char rep_url[TG_URL_BYTES];
    char pub_url[TG_URL_BYTES];
    char zone[TG_ZONE_BYTES];
    uint32_t state;       /* tg_member_state */
    uint64_t incarnation; /* as registered (or read back); 0 unknown */
    bool registered;      /* registered with this manager since it became active */
    grid_heard heard;     /* the last registration or heartbeat (or activation) */
    bool ever_heard;      /* heard by this manager at all */
    uint32_t pipe_id;     /* the connection it was last heard on; 0 none */
    bool closed;          /* that connection closed since */
    grid_heard closed_at; /* when it closed (valid when closed) */
    uint64_t map_epoch;   /* the newest map it applied */
    bool dirty;           /* its row must be written */
    bool removing;        /* its row must be deleted, then the slot freed */
    bool draining;        /* remove-pu: its partitions move away, then it leaves (in memory) */
} grid_member;

/* What a backup of a partition last reported in a heartbeat. */
typedef struct {
    int32_t member;   /* its slot + 1; 0: an empty entry */
    uint64_t epoch;   /* its epoch for the partition */
    uint64_t applied; /* its last applied record */
    bool in_sync;     /* its primary counted it in sync (the last repl_append said so) */
    /* Since when it is seen behind its primary's head without applying
     * anything (heard_ns 0: it is not), in the detector's time. */
    grid_heard behind;
} grid_backup_report;

/* A partition of the map, with what its primary last reported. */
typedef struct {
    uint32_t partition_id;
    uint64_t event_id;
    uint64_t epoch;
    int32_t primary; /* member slot, or -1 */
    uint32_t backup_count;
    int32_t backups[TG_GRID_BACKUPS_MAX];
    uint64_t stored_epoch; /* the epoch grid_partitions holds: the write checks it */
    bool dirty;            /* its row must be written */
    int64_t report_ns;     /* heard_ns of the primary's report that listed it; 0 never */
    uint64_t held_epoch;
    uint64_t log_head;
    uint64_t log_persisted;
    uint64_t unpersisted_age_ms;
    /* The backups' own reports, by member (kept across changes of the list:
     * an entry counts only while its member is a backup). */
    grid_backup_report backup_reports[TG_GRID_BACKUPS_MAX];
    /* A member dropped as a backup because its primary could not replicate
     * to it (slot + 1; 0 none): no backup there again before shunned_until_ns. */
    int32_t shunned;
    int64_t shunned_until_ns;
} grid_partition;

/* A partition's primary being handed to another live unit (manager_move.c):
 * the target is a backup being filled until it reports itself in sync. */
typedef struct {
    uint32_t partition_id;
    int32_t source; /* the primary's slot when the move started */
    int32_t target; /* the slot that becomes the primary */
    uint64_t epoch; /* the partition's epoch once the target was a backup */
    bool added;     /* the move made the target a backup (undone if it is given up) */
    int64_t deadline_ns;
} grid_move;

typedef struct {
    char manager[TG_PU_NAME_BYTES]; /* this manager's name */
    uint64_t epoch;                 /* the map's epoch as PostgreSQL holds it */
    bool changed;                   /* changed since persisted: epoch + 1 to write */
    grid_member members[TG_GRID_MEMBERS_MAX];
    grid_partition *parts; /* sorted by partition_id; TG_GRID_PARTITIONS_MAX */
    uint32_t part_count;
    grid_move moves[GRID_MOVES_MAX]; /* in progress; forgotten by a manager taking over */
    uint32_t move_count;
} grid_map_state;

/* Scratch for building messages from the map (one per manager). */
typedef struct {
    tg_wire_member members[TG_GRID_MEMBERS_MAX];
    tg_wire_placement placements[TG_GRID_PARTITIONS_MAX];
    int32_t wire_index[TG_GRID_MEMBERS_MAX]; /* member slot → index in the message */
} grid_msg_scratch;

/* The member slot named name, or -1. */
int32_t grid_member_find(const grid_map_state *m, const char *name);

/* The report of backup slot i of p, or NULL when it sent none. */
const grid_backup_report *grid_backup_report_find(const grid_partition *p, int32_t i);

/* The partition with this id, or NULL (binary search). */
grid_partition *grid_partition_find(grid_map_state *m, uint32_t partition_id);

/* True when name is a valid unit name: 1..47 of [A-Za-z0-9._-]. */
bool grid_name_valid(const char *name);

/* What replies say about the manager itself. */
typedef struct {
    const grid_detector *det;
    const char *pub_url;
    uint32_t heartbeat_interval_ms;
    uint32_t failure_timeout_ms;
    uint32_t backups;         /* backups wanted per partition */
    uint32_t move_timeout_ms; /* 0: GRID_MOVE_TIMEOUT_MS_DEFAULT */
    uint32_t pipe_id;         /* the connection the request came on; 0 unknown */
} grid_state_env;

/* Handles one decoded request to the manager, filling reply (an ok reply,
 * whose arrays point into scratch, or an error).  now_ns is the monotonic
 * time it was received. */
void grid_state_handle(grid_map_state *m, const grid_state_env *env, const tg_msg *req,
                       int64_t now_ns, grid_msg_scratch *scratch, tg_msg *reply);

/* Notes that connection pipe_id closed: a unit last heard on it is watched
 * more closely (grid_state_detect). */
void grid_state_pipe_closed(grid_map_state *m, const grid_detector *d, uint32_t pipe_id,
                            int64_t now_ns);

/* Declares silent units dead, and removes leaving ones that went silent
 * (the slot is freed after the delete is persisted).  A unit whose
 * connection closed is dead once one more stall_ns (a heartbeat interval)
 * passed without hearing it again: a process that exits or is killed has
 * its sockets closed by the kernel, so waiting out the whole failure
 * timeout would only keep its partitions without a primary.  Returns how
 * many units changed state. */
uint32_t grid_state_detect(grid_map_state *m, const grid_detector *d, int64_t now_ns);

/* Drops from the map every backup that reports itself in sync yet has
 * applied nothing for stall_ms while its primary — alive, heard within
 * stall_ms / 2 — is ahead of it: its primary cannot replicate to it (a cut
 * link) and waits for it before answering anybody.  The partition gets
 * epoch + 1 (its primary stops waiting) and no backup on that unit for
 * GRID_BACKUP_SHUN_MS (placement gives it one elsewhere); expired shuns are
 * lifted.  Returns how many backups were dropped (manager_place.c). */
uint32_t grid_state_drop_stalled(grid_map_state *m, const grid_detector *d, uint32_t stall_ms,
                                 int64_t now_ns);

/* Stamps every member heard now (a manager taking over). */
void grid_state_activate(grid_map_state *m, const grid_detector *d, int64_t now_ns);

/* Builds the map (grid_map, epoch epoch) in out, pointing into scratch. */
void grid_state_map_msg(const grid_map_state *m, uint64_t epoch, grid_msg_scratch *scratch,
                        tg_msg *out);

/* Scratch for grid_state_place (one per manager; large). */
typedef struct {
    grid_place_member members[TG_GRID_MEMBERS_MAX];
    grid_place_slot slots[TG_GRID_PARTITIONS_MAX];
    uint32_t index[TG_GRID_PARTITIONS_MAX]; /* slot → index in m->parts */
} grid_place_scratch;

/* Gives every partition whose primary is dead its most up-to-date in-sync
 * backup as primary, and every partition whose primary is alive up to
 * backups_wanted backups on other alive units (placement.h); drops backups
 * on units that are dead or leaving.  A partition that changes gets epoch
 * + 1 and is marked dirty (manager_place.c).  Returns how many changed. */
uint32_t grid_state_place(grid_map_state *m, uint32_t backups_wanted, grid_place_scratch *sc);

/* ---- Moving partitions between live units (manager_move.c) -------------- */

/* True when slot i may take new partitions: alive, not leaving, not draining. */
bool grid_member_eligible(const grid_member *u);

/* Partitions whose primary or one of whose backups is slot i. */
uint32_t grid_member_references(const grid_map_state *m, int32_t i);

/* pu_add, partition_move, rebalance and pu_drain: start moves, fill a
 * moves_ok reply.  TG_OK, or an error with *why. */
tg_err grid_moves_handle(grid_map_state *m, const grid_state_env *env, const tg_msg *req,
                         int64_t now_ns, tg_msg *reply, const char **why);

/* One pass: hands over every move whose target reported itself in sync,
 * gives up moves that cannot finish, moves a draining unit's primaries
 * away and lets a drained one leave.  Returns how many partitions changed. */
uint32_t grid_moves_pass(grid_map_state *m, uint32_t backups_wanted, uint32_t move_timeout_ms,
                         int64_t now_ns);

/* Moves whose target reports itself in sync (up to max, copied to out):
 * the loop confirms each with the primary (repl_status) before
 * grid_move_handover makes the target the primary. */
uint32_t grid_moves_ready(grid_map_state *m, grid_move *out, uint32_t max);

/* Makes the move's target the partition's primary (epoch + 1); the old
 * primary stays a backup when it may hold one, within backups_wanted.
 * TG_ENOT_FOUND when the move is no longer in progress as it was. */
tg_err grid_move_handover(grid_map_state *m, uint32_t partition_id, uint32_t backups_wanted);

/* After a successful write: clears dirty marks, frees removed slots, takes
 * the new epoch. */
void grid_state_persisted(grid_map_state *m, uint64_t epoch);

/* ---- PostgreSQL (manager_db.c) ------------------------------------------ */

/* Connects (application_name tixgrid-manager, the session timeouts above);
 * NULL when PostgreSQL cannot be reached (logged once per outage by the
 * caller, who passes quiet after the first). */
PGconn *grid_db_connect(const char *conninfo, uint32_t timeout_s, bool quiet);

/* pg_try_advisory_lock on GRID_MANAGER_LOCK_KEY: TG_OK and *got, or TG_EDB
 * (the session is unusable). */
tg_err grid_db_try_lock(PGconn *db, bool *got);

/* Reads grid_map, grid_members and grid_partitions into m (replacing what
 * it had).  TG_EDB (logged); TG_ENOENT when the schema lacks grid_map. */
tg_err grid_db_load(PGconn *db, grid_map_state *m);

/* Re-reads grid_partitions and new rows of grid_members into m: a
 * partition added (an event published), deleted, or placed by someone else
 * (tixgrid-persister place: a stored epoch other than ours) is taken as
 * PostgreSQL has it.  *scratch is a second TG_GRID_PARTITIONS_MAX array: the
 * merge is built there and swapped with m->parts.  Sets m->changed when
 * anything changed.  TG_ESTALE_EPOCH
 * when grid_map.epoch is above ours: another manager wrote.  TG_EDB. */
tg_err grid_db_refresh(PGconn *db, grid_map_state *m, grid_partition **scratch);

/* Writes what changed, with epoch m->epoch + 1, in one transaction.
 * TG_ESTALE_EPOCH when grid_map was written by another manager; TG_EBUSY
 * when a partition row changed under us (refresh, then try again); TG_EDB
 * when the session failed.  Nothing is written unless TG_OK. */
tg_err grid_db_persist(PGconn *db, const grid_map_state *m);

/* Writes last_seen of every member heard since (one statement). */
tg_err grid_db_flush_seen(PGconn *db, const grid_map_state *m, const grid_detector *d,
                          int64_t now_ns);

#endif

/*
 * wire.h — the msgpack messages that processes of tixgrid exchange.
 *
 * schemas/wire.md is the contract: every message is one msgpack array
 * [type, version, ...fields], one table per message.  This header is its C
 * form.  A message in memory is a tg_msg: its type and a union of one struct
 * per message, with fixed-size arrays bounded by limits.h and the TG_WIRE_
 * bounds below, so that encoding and decoding allocate nothing per message.
 *
 * Several messages carry arrays too large to embed in every tg_msg
 * (availability rows, layout rows, seat lists, log records, seat changes,
 * the grid's members and placements, the partitions a unit reports):
 * those fields are a count and a pointer.  To encode, point them at the data.
 * To decode, hand tg_wire_decode a tg_wire_space naming arrays the caller
 * owns, with their capacities; the decoder writes there, never allocates, and
 * rejects a message that needs more room than was given (TG_EPROTO).  A
 * caller that only decodes requests without arrays may pass NULL.
 *
 * Errors.  tg_wire_decode returns TG_EPROTO for anything that does not follow
 * the schema and sets *why to a static sentence that names the message and
 * the field ("seats_hold.seats: too many items"); it never crashes, reads out
 * of bounds or allocates, whatever the bytes.  tg_wire_encode checks the
 * same bounds on the way out and returns TG_EINVAL (a caller bug) with the
 * same sentences, or TG_ENOMEM if the buffer cannot grow.
 *
 * Thread safety: every function is pure over its arguments; any thread may
 * call them at once on different arguments.  Reuse one msgpack_sbuffer per
 * thread or per nng context: after the first few messages it stops growing.
 */
#ifndef TIXGRID_WIRE_H
#define TIXGRID_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/seat.h"

/* Bounds of every message are in tixgrid/limits.h (TG_WIRE_*). */

/* ---- Message types ------------------------------------------------------ */

/* Numbers are part of the protocol: never renumber, append.
 *   1..63     requests to a processing unit (nng REQ/REP)
 *   64        the error reply to any request
 *   65..127   ok replies: request type + TG_WIRE_REPLY_OFFSET
 *   128..159  events published by a processing unit (nng PUB/SUB)
 *   160..191  the grid manager: 160 the map it publishes, 161..175 requests
 *             to it (nng REQ/REP), 177..191 their ok replies (request + 16)
 *   192..255  reserved
 * Replication travels as requests to the backup's REP socket (23..26). */
typedef enum {
    TG_WIRE_NONE = 0, /* not a message: what a failed decode leaves in out->type */

    TG_WIRE_BOOKING_CREATE = 1,
    TG_WIRE_BOOKING_GET = 2,
    TG_WIRE_SEATS_HOLD = 3,
    TG_WIRE_SEATS_HOLD_BEST = 4,
    TG_WIRE_SEATS_RELEASE = 5,
    TG_WIRE_BOOKING_CANCEL = 6,
    TG_WIRE_PAYMENT_BEGIN = 7,
    TG_WIRE_PAYMENT_CONFIRM = 8,
    TG_WIRE_PAYMENT_FAIL = 9,
    TG_WIRE_SEATS_BLOCK = 10,
    TG_WIRE_SEATS_UNBLOCK = 11,
    TG_WIRE_SEAT_GET = 12,
    TG_WIRE_SEATS_LIST = 13,
    TG_WIRE_AVAILABILITY = 14,
    TG_WIRE_PARTITION_INFO = 15,
    TG_WIRE_LAYOUT = 16,
    TG_WIRE_STATS = 17,
    TG_WIRE_LOG_READ = 18,
    TG_WIRE_LOG_ACK = 19,
    TG_WIRE_PARTITION_CREATE = 20,
    TG_WIRE_PARTITION_RESTORE = 21,
    TG_WIRE_PARTITION_RESET = 22,
    TG_WIRE_REPL_BACKUPS = 23,  /* to a primary: these are the partition's backups */
    TG_WIRE_REPL_APPEND = 24,   /* primary to backup: change records to apply */
    TG_WIRE_REPL_SNAPSHOT = 25, /* primary to backup: state transfer */
    TG_WIRE_REPL_STATUS = 26,   /* either: the partition's replication state */
    TG_WIRE_SEAT_STATES = 27,   /* every seat's state, 4 bits each (seat-map caches) */
    TG_WIRE_REQUEST_LAST = 27,
    /* Framing, not an operation: many requests for one unit in one message
     * (see "Batches" below); never counted among TG_WIRE_REQUEST_LAST. */
    TG_WIRE_BATCH = 63,

    TG_WIRE_ERROR = 64,
    TG_WIRE_REPLY_OFFSET = 64,

    TG_WIRE_BOOKING_CREATE_OK = 65,
    TG_WIRE_BOOKING_GET_OK = 66,
    TG_WIRE_SEATS_HOLD_OK = 67,
    TG_WIRE_SEATS_HOLD_BEST_OK = 68,
    TG_WIRE_SEATS_RELEASE_OK = 69,
    TG_WIRE_BOOKING_CANCEL_OK = 70,
    TG_WIRE_PAYMENT_BEGIN_OK = 71,
    TG_WIRE_PAYMENT_CONFIRM_OK = 72,
    TG_WIRE_PAYMENT_FAIL_OK = 73,
    TG_WIRE_SEATS_BLOCK_OK = 74,
    TG_WIRE_SEATS_UNBLOCK_OK = 75,
    TG_WIRE_SEAT_GET_OK = 76,
    TG_WIRE_SEATS_LIST_OK = 77,
    TG_WIRE_AVAILABILITY_OK = 78,
    TG_WIRE_PARTITION_INFO_OK = 79,
    TG_WIRE_LAYOUT_OK = 80,
    TG_WIRE_STATS_OK = 81,
    TG_WIRE_LOG_READ_OK = 82,
    TG_WIRE_LOG_ACK_OK = 83,
    TG_WIRE_PARTITION_CREATE_OK = 84,
    TG_WIRE_PARTITION_RESTORE_OK = 85,
    TG_WIRE_PARTITION_RESET_OK = 86,
    TG_WIRE_REPL_BACKUPS_OK = 87,
    TG_WIRE_REPL_APPEND_OK = 88,
    TG_WIRE_REPL_SNAPSHOT_OK = 89,
    TG_WIRE_REPL_STATUS_OK = 90,
    TG_WIRE_SEAT_STATES_OK = 91,
    TG_WIRE_BATCH_OK = 127,

    TG_WIRE_SEAT_CHANGES = 128,

    TG_WIRE_GRID_MAP = 160, /* event: the partition map (manager's PUB) */
    TG_WIRE_PU_REGISTER = 161,
    TG_WIRE_HEARTBEAT = 162,
    TG_WIRE_GRID_STATUS = 163,
    TG_WIRE_PU_REMOVE = 164,
    TG_WIRE_PU_ADD = 165,         /* accept a registered unit and rebalance onto it */
    TG_WIRE_PARTITION_MOVE = 166, /* hand a partition's primary to another unit */
    TG_WIRE_REBALANCE = 167,      /* move primaries until balanced */
    TG_WIRE_PU_DRAIN = 168,       /* move everything off a unit, then let it exit */
    TG_WIRE_GRID_REQUEST_FIRST = 161,
    TG_WIRE_GRID_REQUEST_LAST = 168,
    TG_WIRE_GRID_REPLY_OFFSET = 16,

    TG_WIRE_PU_REGISTER_OK = 177,
    TG_WIRE_HEARTBEAT_OK = 178,
    TG_WIRE_GRID_STATUS_OK = 179,
    TG_WIRE_PU_REMOVE_OK = 180,
    TG_WIRE_PU_ADD_OK = 181,
    TG_WIRE_PARTITION_MOVE_OK = 182,
    TG_WIRE_REBALANCE_OK = 183,
    TG_WIRE_PU_DRAIN_OK = 184,

    TG_WIRE_TYPE_LIMIT = 256 /* every type is below this; not a message */
} tg_wire_type;

/* Counters in a stats reply: one per (request type, outcome code). */
#define TG_WIRE_REQUEST_COUNT ((unsigned)TG_WIRE_REQUEST_LAST)
#define TG_WIRE_STATS_OPS_MAX (TG_WIRE_REQUEST_COUNT * (unsigned)TG_ERR_COUNT_)

/* ---- Pieces shared by several messages --------------------------------- */

/* Up to TG_BOOKING_SEATS_MAX seat ids; each < TG_PARTITION_SEATS_MAX. */
typedef struct {
    uint32_t count;
    uint32_t ids[TG_BOOKING_SEATS_MAX];
} tg_wire_seat_ids;

/* Seats by state, indexed by tg_seat_state. */
typedef struct {
    uint32_t by_state[TG_SEAT_STATE_COUNT];
} tg_wire_counts;

/* One seat as seat_get and seats_list report it.  Its state and booking are
 * in word (tixgrid/seat.h); the booking id is
 * tg_booking_id_make(partition_id, tg_seat_word_booking(word)). */
typedef struct {
    uint32_t seat_id;
    uint64_t word;    /* its state bits name a tg_seat_state */
    uint32_t section; /* < TG_SECTIONS_MAX */
    uint32_t row;     /* < TG_ROWS_MAX */
    uint32_t number;  /* 1..TG_ROW_SEATS_MAX, position in its row */
    int64_t price_minor;
} tg_wire_seat;

/* A booking as booking_create and booking_get report it. */
typedef struct {
    tg_booking_id booking_id;
    uint64_t user_id;
    uint32_t status;  /* tg_booking_status, never TG_BOOKING_EMPTY */
    uint32_t version; /* +1 on every status change */
    int64_t created_ms;
    int64_t deadline_ms;    /* hold deadline, or payment deadline once pending */
    tg_wire_seat_ids seats; /* ascending */
} tg_wire_booking;

typedef struct {
    char name[TG_NAME_BYTES];
    int64_t price_minor;
    char currency[TG_CURRENCY_BYTES];
    uint32_t row_first, row_count;
    uint32_t seat_first, seat_count;
} tg_wire_section;

typedef struct {
    char name[TG_NAME_BYTES];
    uint32_t section;
    uint32_t seat_first, seat_count;
} tg_wire_row;

/* One change-log record (the fields of the PU's log record that mean
 * something; its reserved padding does not travel). */
typedef struct {
    uint64_t seq;     /* 1..TG_WIRE_ID_MAX */
    uint32_t kind;    /* 0 no-op, 1 seat, 2 booking */
    uint32_t ident;   /* seat id, or booking seq */
    uint32_t status;  /* booking records: tg_booking_status */
    uint32_t version; /* seat or booking version */
    uint64_t word;    /* seat records: the new word; booking records: user id */
    int64_t deadline_ms;
    int64_t created_ms;
} tg_wire_log_record;

/* One (request type, outcome) counter of a stats reply. */
typedef struct {
    uint32_t type; /* a request type */
    uint32_t code; /* tg_err: TG_OK counts successes */
    uint64_t count;
} tg_wire_op_count;

/* A booking as partition_restore carries it: its seats come from the seat
 * words restored beside it. */
typedef struct {
    tg_booking_id booking_id;
    uint64_t user_id;
    uint32_t status;
    uint32_t version;
    int64_t created_ms;
    int64_t deadline_ms;
} tg_wire_booking_state;

/* Phases of partition_restore. */
enum {
    TG_WIRE_RESTORE_BEGIN = 0, /* epoch and log_base apply; lists may carry data */
    TG_WIRE_RESTORE_DATA = 1,
    TG_WIRE_RESTORE_END = 2, /* lists may carry data; then the partition serves */
};

/* Sixteen seats' states in seat_states_ok: seat 16 * i + k of the partition
 * is bits 4k..4k+3 of states[i].packed (a tg_seat_state, 0..4; 0 past the
 * last seat). */
#define TG_WIRE_STATES_PER_WORD 16u
#define TG_WIRE_STATES_MAX (TG_PARTITION_SEATS_MAX / TG_WIRE_STATES_PER_WORD)
typedef struct {
    uint64_t packed;
} tg_wire_states;

/* One seat's new word in a seat_changes event (and a seat partition_restore
 * sets). */
typedef struct {
    uint32_t seat_id;
    uint64_t word;
} tg_wire_change;

/* ---- Pieces of replication ------------------------------------------------ */

/* One backup of a partition, as repl_backups names it. */
typedef struct {
    char name[TG_PU_NAME_BYTES]; /* the backup unit's name; never empty */
    char rep_url[TG_URL_BYTES];  /* its REP address; never empty */
} tg_wire_backup;

/* What a partition is on the unit that answers repl_status. */
typedef enum {
    TG_REPL_ROLE_PRIMARY = 0,
    TG_REPL_ROLE_BACKUP = 1,
    TG_REPL_ROLE_COUNT = 2
} tg_repl_role;

/* A primary's link to one backup. */
typedef enum {
    TG_REPL_LINK_PROBING = 0, /* asking the backup how far it is */
    TG_REPL_LINK_FILLING = 1, /* state transfer, then catching up: acks do not wait for it */
    TG_REPL_LINK_IN_SYNC = 2, /* every client reply waits for its ack */
    TG_REPL_LINK_STATE_COUNT = 3
} tg_repl_link_state;

/* Phases of repl_snapshot (as partition_restore's). */
enum {
    TG_WIRE_SNAPSHOT_BEGIN = 0, /* wipes the copy; epoch and base_seq apply */
    TG_WIRE_SNAPSHOT_DATA = 1,
    TG_WIRE_SNAPSHOT_END = 2, /* then records from base_seq + 1 follow by repl_append */
};

/* One link in repl_status_ok. */
typedef struct {
    char name[TG_PU_NAME_BYTES];
    uint32_t state;          /* tg_repl_link_state */
    uint64_t acked_seq;      /* the backup has applied every record up to this one */
    uint64_t records_sent;   /* change records sent by repl_append, in total */
    uint64_t snapshots;      /* state transfers started */
    uint64_t snapshot_items; /* seats and bookings sent by state transfers */
} tg_wire_repl_link;

/* ---- Pieces of the grid manager's messages ------------------------------ */

/* States of a member of the grid (a processing unit), as the manager sees it. */
typedef enum {
    TG_MEMBER_ALIVE = 0,   /* heard within the failure timeout */
    TG_MEMBER_DEAD = 1,    /* not heard for the failure timeout; must register again */
    TG_MEMBER_LEAVING = 2, /* removed by tixgridctl remove-pu: told to exit */
    TG_MEMBER_STATE_COUNT = 3
} tg_member_state;

/* What grid_status_ok says of a partition (derived by the manager from the
 * map and what the primary reported; not part of the map itself). */
typedef enum {
    TG_PLACEMENT_SERVING = 0,      /* the primary is alive and holds it at the map's epoch */
    TG_PLACEMENT_UNPLACED = 1,     /* no primary yet (load it into a unit: replay) */
    TG_PLACEMENT_PRIMARY_DEAD = 2, /* unavailable: its primary is dead */
    TG_PLACEMENT_NOT_LOADED = 3,   /* the primary is alive but does not hold it */
    TG_PLACEMENT_EPOCH_BEHIND = 4, /* the primary holds it under an older epoch, for now */
    TG_PLACEMENT_STATE_COUNT = 5
} tg_placement_state;

/* A partition's backups: indices into the message's member list. */
typedef struct {
    uint32_t count; /* <= TG_GRID_BACKUPS_MAX */
    uint32_t members[TG_GRID_BACKUPS_MAX];
} tg_wire_member_refs;

/* One member in grid_map (the first five fields) and grid_status_ok (all). */
typedef struct {
    char name[TG_PU_NAME_BYTES]; /* never empty */
    char rep_url[TG_URL_BYTES];
    char pub_url[TG_URL_BYTES]; /* "": publishes nothing */
    char zone[TG_ZONE_BYTES];   /* "": no zone label */
    uint32_t state;             /* tg_member_state */
    uint64_t incarnation;       /* 0: not registered with this manager yet */
    int64_t heard_age_ms;       /* since its last registration or heartbeat; -1 never */
    uint64_t map_epoch;         /* the newest map it said it applied */
} tg_wire_member;

/* One partition in grid_map (the first five fields) and grid_status_ok (all). */
typedef struct {
    uint32_t partition_id;
    uint64_t event_id;
    uint64_t epoch;              /* rises with every change of its placement */
    int32_t primary;             /* index into the member list, or -1: none */
    tg_wire_member_refs backups; /* distinct, never the primary */
    uint32_t state;              /* tg_placement_state */
    uint64_t held_epoch;         /* the epoch its primary reports holding; 0 unknown */
    uint64_t log_head;           /* the primary's last log sequence */
    uint64_t log_persisted;      /* ... and the last one PostgreSQL holds */
    uint64_t unpersisted_age_ms; /* age of its oldest unpersisted change; 0 none */
    /* Replication, from the backups' last heartbeats at the map's epoch. */
    uint32_t backups_reported; /* backups that reported their copy; <= backups.count */
    uint32_t backups_in_sync;  /* ... and said their primary counts them in sync */
    uint64_t backups_applied;  /* the lowest last-applied record among them; 0 none */
} tg_wire_placement;

/* What a held partition is on the unit that reports it (heartbeat). */
typedef enum {
    TG_WIRE_HELD_PRIMARY = 0,
    TG_WIRE_HELD_BACKUP = 1, /* a replica the map named: a candidate for promotion */
} tg_wire_held_role;

/* A partition a unit holds, as pu_register (partition_id, event_id, epoch,
 * log_head, log_persisted: primaries only) and heartbeat (partition_id,
 * epoch, log_head, log_persisted, unpersisted_age_ms, role, in_sync)
 * report it.  For a backup, log_head is its last applied record. */
typedef struct {
    uint32_t partition_id;
    uint64_t event_id;
    uint64_t epoch;
    uint64_t log_head;
    uint64_t log_persisted; /* <= log_head */
    uint64_t unpersisted_age_ms;
    uint32_t role; /* tg_wire_held_role */
    bool in_sync;  /* backups: the last repl_append applied said the primary counts it in sync */
} tg_wire_held;

/* ---- The message -------------------------------------------------------- */

typedef struct {
    tg_wire_type type;
    union {
        /* Requests.  user_id is the caller's (0: system, skips ownership). */
        struct {
            uint32_t partition_id;
            uint64_t user_id;
        } booking_create;
        struct {
            tg_booking_id booking_id;
            uint64_t user_id;
        } booking_get;
        struct {
            tg_booking_id booking_id;
            uint64_t user_id;
            tg_wire_seat_ids seats;
        } seats_hold;
        struct {
            tg_booking_id booking_id;
            uint64_t user_id;
            uint32_t quantity;  /* <= TG_BOOKING_SEATS_MAX */
            int32_t section;    /* a section, or -1 for any */
            bool adjacent_only; /* fail rather than split the group */
        } seats_hold_best;
        struct {
            tg_booking_id booking_id;
            uint64_t user_id;
            tg_wire_seat_ids seats;
        } seats_release;
        struct {
            tg_booking_id booking_id;
            uint64_t user_id;
        } booking_cancel;
        struct {
            tg_booking_id booking_id;
            uint64_t user_id;
        } payment_begin;
        struct {
            tg_booking_id booking_id;
        } payment_confirm;
        struct {
            tg_booking_id booking_id;
        } payment_fail;
        struct {
            uint32_t partition_id;
            tg_wire_seat_ids seats;
        } seats_block;
        struct {
            uint32_t partition_id;
            tg_wire_seat_ids seats;
        } seats_unblock;
        struct {
            uint32_t partition_id;
            uint32_t seat_id;
        } seat_get;
        struct {
            uint32_t partition_id;
            uint32_t first_seat; /* scan from here */
            uint32_t count;      /* return at most this many, <= TG_WIRE_SEATS_LIST_MAX */
            int32_t state;       /* only this tg_seat_state, or -1 */
            int32_t row;         /* only this row, or -1 */
            int32_t section;     /* only this section, or -1 */
        } seats_list;
        struct {
            uint32_t partition_id;
        } availability;
        struct {
            uint32_t partition_id;
        } partition_info;
        struct {
            uint32_t partition_id;
        } layout;
        struct {
            uint32_t partition_id;
        } seat_states;
        struct {
            uint32_t partition_id;
            uint64_t from_seq;
            uint32_t max;
        } log_read;
        struct {
            uint32_t partition_id;
            uint64_t seq;
        } log_ack;
        struct {
            uint32_t partition_id;
            uint64_t event_id;
            uint32_t hold_ttl_ms;       /* 0: default */
            uint32_t payment_window_ms; /* 0: default */
            uint32_t booking_capacity;  /* 0: default */
            uint32_t log_records;       /* 0: default */
            uint32_t section_count;
            tg_wire_section sections[TG_SECTIONS_MAX]; /* name, price, currency, row_count */
            uint32_t row_count;
            tg_wire_row *rows; /* space: rows; name and seat_count */
        } partition_create;
        struct {
            uint32_t partition_id;
            uint32_t phase;    /* TG_WIRE_RESTORE_* */
            uint64_t epoch;    /* BEGIN: the partition's map epoch */
            uint64_t log_base; /* BEGIN: last sequence number persisted */
            uint32_t booking_count;
            tg_wire_booking_state *bookings; /* space: bookings */
            uint32_t seat_count;
            tg_wire_change *seats; /* space: changes */
        } partition_restore;
        struct {
            uint32_t partition_id;
        } partition_reset;
        struct {
            uint32_t partition_id;
            uint64_t epoch; /* the partition's epoch on the primary rises to it */
            uint32_t backup_count;
            tg_wire_backup backups[TG_GRID_BACKUPS_MAX]; /* distinct names */
        } repl_backups;
        struct {
            uint32_t partition_id;
            uint64_t epoch;     /* the primary's epoch for the partition */
            uint64_t persisted; /* the primary's persisted mark */
            uint32_t record_count;
            tg_wire_log_record *records; /* space: records; consecutive seqs; none: a probe */
            bool in_sync; /* the primary holds its replies for this backup's acks */
        } repl_append;
        struct {
            uint32_t partition_id;
            uint32_t phase; /* TG_WIRE_SNAPSHOT_* */
            uint64_t epoch;
            uint64_t base_seq; /* the copy's log continues after it */
            uint32_t booking_count;
            tg_wire_booking_state *bookings; /* space: bookings */
            uint32_t seat_count;
            tg_wire_change *seats; /* space: changes */
        } repl_snapshot;
        struct {
            uint32_t partition_id;
        } repl_status;

        /* Replies.  Types without fields (release, cancel, confirm, fail,
         * block, unblock, log_ack and the stats request) have no member. */
        struct {
            uint32_t code; /* a tg_err other than TG_OK */
            char message[TG_WIRE_STRING_BYTES_MAX + 1];
            tg_wire_seat_ids seats; /* TG_ESEAT_TAKEN: the requested seats not free */
        } error;
        tg_wire_booking booking_create_ok;
        tg_wire_booking booking_get_ok;
        struct {
            tg_wire_seat_ids seats;
            int64_t deadline_ms;
        } seats_hold_ok;
        struct {
            tg_wire_seat_ids seats;
            int64_t deadline_ms;
        } seats_hold_best_ok;
        struct {
            int64_t deadline_ms;
        } payment_begin_ok;
        struct {
            tg_wire_seat seat;
        } seat_get_ok;
        struct {
            uint32_t next_seat; /* first_seat for the next page; the seat count at the end */
            uint32_t seat_count;
            tg_wire_seat *seats; /* space: seats */
        } seats_list_ok;
        struct {
            uint64_t log_head; /* the partition's last reserved log sequence: its version */
            tg_wire_counts totals;
            uint32_t section_count;
            tg_wire_counts sections[TG_SECTIONS_MAX];
            uint32_t row_count;
            tg_wire_counts *rows; /* space: counts */
        } availability_ok;
        struct {
            /* The first log sequence the states may not reflect: apply every
             * seat_changes event from this from_seq on (schemas/wire.md). */
            uint64_t from_seq;
            uint32_t seat_count;
            uint32_t state_count;    /* ceil(seat_count / 16) */
            tg_wire_states *states; /* space: states */
            /* The partition's epoch at the unit that answered: a primary
             * that took over (failover, move) answers another, so that a
             * sequence is only compared with one of the same epoch. */
            uint64_t epoch;
        } seat_states_ok;
        struct {
            uint32_t partition_id;
            uint64_t event_id;
            uint32_t seat_count;
            uint32_t section_count;
            uint32_t row_count;
            uint32_t booking_capacity;
            uint32_t log_records;
            uint32_t hold_ttl_ms;
            uint32_t payment_window_ms;
            uint64_t segment_bytes;
            uint64_t map_epoch;
            uint64_t bookings_created;
            uint64_t log_head;
            uint64_t log_persisted;
        } partition_info_ok;
        struct {
            uint32_t section_count;
            tg_wire_section sections[TG_SECTIONS_MAX];
            uint32_t row_count;
            tg_wire_row *rows; /* space: rows */
        } layout_ok;
        struct {
            uint32_t partitions;                /* partitions this PU serves */
            uint64_t log_depth;                 /* unpersisted log records, all partitions */
            uint64_t oldest_unpersisted_age_ms; /* 0 when everything is persisted */
            uint32_t op_count;
            tg_wire_op_count ops[TG_WIRE_STATS_OPS_MAX];
        } stats_ok;
        struct {
            uint64_t map_epoch;
            uint64_t log_head;
            uint32_t record_count;
            tg_wire_log_record *records; /* space: records; consecutive seqs */
        } log_read_ok;
        struct {
            uint32_t bookings_cancelled; /* <= TG_BOOKINGS_MAX */
            uint32_t seats_freed;        /* <= TG_BOOKING_SEATS_MAX per cancelled booking */
        } partition_reset_ok;
        struct {
            uint64_t epoch;       /* the backup's epoch for the partition */
            uint64_t applied_seq; /* every record up to it is applied */
        } repl_append_ok;
        struct {
            uint32_t role;        /* tg_repl_role */
            uint64_t epoch;
            uint64_t log_head;    /* last sequence in the log (a backup: last applied) */
            uint64_t acked_seq;   /* primary: every in-sync backup applied up to it */
            uint32_t link_count;  /* primary: its backups */
            tg_wire_repl_link links[TG_GRID_BACKUPS_MAX];
        } repl_status_ok;

        /* Events. */
        struct {
            uint32_t partition_id;
            uint64_t from_seq; /* the log sequences this event covers, inclusive */
            uint64_t to_seq;
            uint32_t change_count;
            tg_wire_change *changes; /* space: changes */
        } seat_changes;

        /* The grid manager (schemas/wire.md, "The grid manager"). */
        struct {
            uint64_t epoch; /* the map's own epoch: rises with every change */
            char manager[TG_PU_NAME_BYTES];
            uint32_t member_count;
            tg_wire_member *members; /* space: members */
            uint32_t placement_count;
            tg_wire_placement *placements; /* space: placements; ascending ids */
        } grid_map;
        struct {
            char name[TG_PU_NAME_BYTES];
            uint64_t incarnation; /* new at every start of the unit */
            char rep_url[TG_URL_BYTES];
            char pub_url[TG_URL_BYTES];
            char zone[TG_ZONE_BYTES];
            uint32_t held_count;
            tg_wire_held *held; /* space: held; ascending ids */
        } pu_register;
        struct {
            char name[TG_PU_NAME_BYTES];
            uint64_t incarnation;
            uint64_t map_epoch; /* the newest map the unit applied */
            uint32_t held_count;
            tg_wire_held *held; /* space: held; ascending ids */
        } heartbeat;
        struct {
            char name[TG_PU_NAME_BYTES];
        } pu_remove;
        struct {
            char name[TG_PU_NAME_BYTES];
        } pu_add, pu_drain;
        struct {
            uint32_t partition_id;
            char to[TG_PU_NAME_BYTES]; /* the unit that becomes its primary */
        } partition_move;
        /* pu_add_ok, partition_move_ok, rebalance_ok, pu_drain_ok. */
        struct {
            uint32_t started; /* moves this request started */
            uint32_t pending; /* moves in progress in the grid, these included */
            uint32_t held;    /* pu_drain_ok: partitions the unit still holds (0 otherwise) */
        } moves_ok;
        struct {
            char manager[TG_PU_NAME_BYTES];
            char pub_url[TG_URL_BYTES]; /* where the manager publishes grid_map */
            uint64_t map_epoch;
            uint32_t heartbeat_interval_ms;
            uint32_t failure_timeout_ms;
        } pu_register_ok;
        struct {
            uint64_t map_epoch;
            bool leave; /* removed from the grid: stop now */
        } heartbeat_ok;
        struct {
            char manager[TG_PU_NAME_BYTES];
            uint64_t map_epoch;
            uint32_t heartbeat_interval_ms;
            uint32_t failure_timeout_ms;
            uint32_t member_count;
            tg_wire_member *members; /* space: members */
            uint32_t placement_count;
            tg_wire_placement *placements; /* space: placements; ascending ids */
        } grid_status_ok;
    };
} tg_msg;

/* Where the decoder may write the large arrays (see the top of this file).
 * A NULL pointer or zero capacity accepts only empty arrays of that kind. */
typedef struct {
    tg_wire_seat *seats; /* seats_list_ok */
    uint32_t seats_capacity;
    tg_wire_counts *counts; /* availability_ok rows */
    uint32_t counts_capacity;
    tg_wire_row *rows; /* layout_ok rows */
    uint32_t rows_capacity;
    tg_wire_log_record *records; /* log_read_ok */
    uint32_t records_capacity;
    tg_wire_change *changes; /* seat_changes, partition_restore seats */
    uint32_t changes_capacity;
    tg_wire_booking_state *bookings; /* partition_restore */
    uint32_t bookings_capacity;
    tg_wire_member *members; /* grid_map, grid_status_ok */
    uint32_t members_capacity;
    tg_wire_placement *placements; /* grid_map, grid_status_ok */
    uint32_t placements_capacity;
    tg_wire_held *held; /* pu_register, heartbeat */
    uint32_t held_capacity;
    tg_wire_states *states; /* seat_states_ok */
    uint32_t states_capacity;
} tg_wire_space;

/* ---- Functions ---------------------------------------------------------- */

/* Replaces the contents of out with msg as one msgpack message.  TG_EINVAL
 * (with *why) when msg breaks the schema; TG_ENOMEM when out cannot grow.
 * On error out is left empty.  why may be NULL. */
tg_err tg_wire_encode(const tg_msg *msg, msgpack_sbuffer *out, const char **why);

/* Decodes one whole message of exactly len bytes into *out.  TG_EPROTO with
 * *why (static storage) for anything that does not follow the schema; then
 * out->type is TG_WIRE_NONE and the rest of *out is unspecified.  On success
 * *why is NULL.  space may be NULL; why may be NULL.  Pointers in *out point
 * into space.  Allocates nothing; reads only buf[0..len). */
tg_err tg_wire_decode(const void *buf, size_t len, const tg_wire_space *space, tg_msg *out,
                      const char **why);

/* Events on a PUB socket: the TG_WIRE_TOPIC_BYTES topic (the partition id,
 * big-endian; subscribe to it, or to "" for all) and then the message.  The
 * manager's grid_map goes under TG_WIRE_TOPIC_GRID_MAP, which no partition
 * id can equal. */
#define TG_WIRE_TOPIC_GRID_MAP 0xffffffffu
void tg_wire_topic(uint32_t partition_id, uint8_t topic[TG_WIRE_TOPIC_BYTES]);
tg_err tg_wire_encode_event(const tg_msg *msg, msgpack_sbuffer *out, const char **why);
/* As tg_wire_decode, and the message must be an event whose topic is its
 * partition id (seat_changes) or TG_WIRE_TOPIC_GRID_MAP (grid_map). */
tg_err tg_wire_decode_event(const void *buf, size_t len, const tg_wire_space *space, tg_msg *out,
                            const char **why);

/* True when a and b hold the same message: same type, and equal fields
 * (arrays compared up to their counts, strings up to their NUL). */
bool tg_wire_equal(const tg_msg *a, const tg_msg *b);

/* Makes *out an error reply: code, message (truncated to
 * TG_WIRE_STRING_BYTES_MAX bytes on a character boundary; NULL: the code's
 * tg_strerror sentence) and no seats. */
void tg_wire_error(tg_msg *out, tg_err code, const char *message);

/* The ok reply's type for a request type (to a unit: + 64; to the manager:
 * + 16); TG_WIRE_NONE if not a request. */
tg_wire_type tg_wire_reply_type(tg_wire_type request);

/* "seats_hold", "seats_hold_ok", "error", ...; NULL for unknown types. */
const char *tg_wire_type_name(tg_wire_type type);

/* ---- Batches ------------------------------------------------------------- */

/*
 * A batch carries up to TG_WIRE_BATCH_MAX whole requests about one partition in one
 * message, [63, 1, [bin, ...]], each bin one encoded request; the unit runs
 * them in order, each exactly as if it had come alone, and answers
 * [127, 1, [bin, ...]] with their replies (ok or error) in the same order.
 * Under load a gateway loop gathers the requests of one turn of its loop
 * into a batch per partition: one message, one pair of nng hand-offs and one
 * wake-up of the loop for many operations, instead of one each.
 *
 * Only the short seat and booking operations travel in batches
 * (tg_wire_batchable: requests whose replies carry no large array).  A
 * batch inside a batch, or any other request, gets an error reply of its
 * own; a malformed frame is refused whole with one error reply.
 *
 * Encoding goes into one growing buffer: the header is written with fixed
 * widths (array32, bin32) and patched, so that nothing is encoded twice.
 */
#define TG_WIRE_BATCH_MAX 64u

typedef struct {
    msgpack_sbuffer buf;     /* the batch message so far */
    msgpack_sbuffer scratch; /* one request, encoded before it is appended */
    uint32_t count;
    uint8_t types[TG_WIRE_BATCH_MAX]; /* the requests' types, in order */
} tg_wire_batch;

/* One request or reply inside a batch: bytes of the batch message. */
typedef struct {
    const uint8_t *data;
    size_t len;
} tg_wire_part;

/* True for the request types a batch may carry. */
bool tg_wire_batchable(tg_wire_type type);

void tg_wire_batch_init(tg_wire_batch *b);
void tg_wire_batch_destroy(tg_wire_batch *b);
/* Empties b for the next batch; its buffers stay allocated. */
void tg_wire_batch_reset(tg_wire_batch *b);

/* Appends req.  TG_EINVAL (with *why) when req breaks the schema, is not
 * batchable or b is full (TG_WIRE_BATCH_MAX requests: check count first),
 * TG_ENOMEM when a buffer cannot grow; b is unchanged on error. */
tg_err tg_wire_batch_add(tg_wire_batch *b, const tg_msg *req, const char **why);

/* The finished message (count patched in); valid until b changes.  A batch
 * of one request may instead be sent as part 0 alone (tg_wire_batch_part). */
void tg_wire_batch_message(tg_wire_batch *b, const uint8_t **data, size_t *len);
tg_wire_part tg_wire_batch_part(const tg_wire_batch *b, uint32_t index);

/* Starts a batch reply of count parts in out (emptied first); append each
 * reply with tg_wire_batch_reply_add.  TG_ENOMEM when out cannot grow. */
tg_err tg_wire_batch_reply_begin(msgpack_sbuffer *out, uint32_t count);
tg_err tg_wire_batch_reply_add(msgpack_sbuffer *out, const void *reply, size_t len);

/* True when buf looks like a message of type `type` (its first two bytes):
 * a cheap test before tg_wire_batch_parse. */
bool tg_wire_is_type(const void *buf, size_t len, tg_wire_type type);

/* Splits a batch (type TG_WIRE_BATCH) or batch reply (TG_WIRE_BATCH_OK) of
 * exactly len bytes into its parts, which point into buf.  TG_EPROTO with
 * *why for a frame that breaks the schema: another type or version, more than
 * TG_WIRE_BATCH_MAX or no parts, a part that is not a bin, bytes left over.
 * The parts themselves are not decoded. */
tg_err tg_wire_batch_parse(const void *buf, size_t len, tg_wire_type type,
                           tg_wire_part parts[TG_WIRE_BATCH_MAX], uint32_t *count,
                           const char **why);

#endif

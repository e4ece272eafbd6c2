/*
 * partition.h — the partition store: one event's seats in shared memory.
 *
 * A partition is a contiguous slice of one event's seats, held in one POSIX
 * shared-memory segment (/dev/shm/<name>) so that a processing unit that
 * crashes and restarts re-attaches exactly what it had.  The segment holds a
 * header, the layout (sections, rows), the seat words (tixgrid/seat.h), a
 * fixed-capacity booking table, per-row counters of every seat state, and the
 * change log: a ring of records that replication and the persister read.
 *
 * Concurrency.  Any number of threads, in any number of processes attached to
 * the segment, may call these functions at once.  There is no partition lock:
 *   - a seat changes only by one CAS of its word;
 *   - taking FREE seats into a booking is all-or-nothing: CAS in ascending
 *     seat order, and on the first failure CAS back the ones already taken;
 *   - each booking has a small lock of its own, so that two requests about
 *     the same booking (the same shopper) are serialised; requests about
 *     different bookings never wait for each other;
 *   - the change log reserves sequence numbers with one CAS per operation.
 *
 * Thread and process safety: every function below may be called from any
 * thread of any attached process, except pu_partition_create/attach with
 * PU_ATTACH_OWNER (one owner at a time, enforced with flock) and
 * pu_partition_recover (owner only).
 *
 * Ownership checks: functions that take a user_id return TG_ENOT_FOUND when
 * the booking belongs to another user, exactly as when it does not exist.
 * PU_USER_SYSTEM skips the check (payments, organizers, sweeper).
 *
 * Errors are returned, never raised: a failed call changes nothing.  Besides
 * the errors each function lists, every call that takes a booking may return
 * TG_EBUSY (its lock stayed taken past a bounded wait: retry), every call
 * that changes seats may return TG_ELOG_FULL (the ring is full), and calls
 * that take seats or make bookings return TG_EBACKLOG at the ring's
 * high-water mark (TG_LOG_HIGH_WATER_PER_1024).
 */
#ifndef PU_PARTITION_H
#define PU_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/seat.h"

typedef struct pu_partition pu_partition;

/* The caller that may act on any booking (system, organizer, payment). */
#define PU_USER_SYSTEM UINT64_C(0)

/* ---- Layout and creation --------------------------------------------- */

typedef struct {
    char name[TG_NAME_BYTES]; /* unique within its section, non-empty */
    uint32_t seat_count;      /* 1..TG_ROW_SEATS_MAX; seats numbered 1..seat_count */
} pu_row_spec;

typedef struct {
    char name[TG_NAME_BYTES];         /* unique within the partition, non-empty */
    int64_t price_minor;              /* >= 0, in minor units of currency */
    char currency[TG_CURRENCY_BYTES]; /* three upper-case letters, "EUR" */
    uint32_t row_count;               /* >= 1: the next row_count entries of rows[] */
} pu_section_spec;

typedef struct {
    uint32_t partition_id; /* <= TG_PARTITION_ID_MAX */
    uint64_t event_id;
    uint32_t section_count; /* 1..TG_SECTIONS_MAX */
    const pu_section_spec *sections;
    uint32_t row_count; /* sum of sections' row_count, <= TG_ROWS_MAX */
    const pu_row_spec *rows;
    /* 0 picks the default: seat_count + seat_count / 2, at least TG_BOOKINGS_MIN. */
    uint32_t booking_capacity;
    /* 0 picks TG_LOG_RECORDS_DEFAULT; otherwise a power of two in range. */
    uint32_t log_records;
    uint32_t hold_ttl_ms;       /* 0 picks TG_HOLD_TTL_MS_DEFAULT */
    uint32_t payment_window_ms; /* 0 picks TG_PAYMENT_WINDOW_MS_DEFAULT */
    /* Made to be filled by pu_restore_*: marked so in the segment until
     * pu_restore_end, so that a unit restarted mid-restore never serves
     * a half-filled partition (see pu_partition_info.restoring). */
    bool restoring;
} pu_partition_config;

/* Checks a configuration: TG_OK or TG_EINVAL (and logs which field). */
tg_err pu_config_validate(const pu_partition_config *cfg);

/* Bytes of the segment for cfg, or 0 if cfg is invalid. */
size_t pu_segment_size(const pu_partition_config *cfg);

/* Writes the canonical segment name "/tixgrid-<pu>-p<partition>". */
tg_err pu_segment_name(char *buf, size_t size, const char *pu_name, uint32_t partition_id);

/* Creates and initialises a new segment; the caller becomes its owner.
 * TG_EEXIST when the name is taken (never reused silently). */
tg_err pu_partition_create(const char *shm_name, const pu_partition_config *cfg,
                           pu_partition **out);

enum {
    PU_ATTACH_OBSERVER = 0, /* map it; no lock, no recovery */
    PU_ATTACH_OWNER = 1,    /* take the owner lock (TG_EBUSY if held), then recover */
};

/* Maps an existing segment after checking magic, layout version and size:
 * TG_ENOENT, TG_EBAD_MAGIC, TG_EBAD_VERSION, TG_EBAD_SIZE, TG_ECORRUPT. */
tg_err pu_partition_attach(const char *shm_name, int flags, pu_partition **out);

/* Repairs what a crashed writer may have left half-done; owner only, with no
 * other writer attached.  Clears booking locks, fills unwritten log slots with
 * no-op records, moves every seat to the state its booking's status implies
 * (the status is written first: it is the intent), logs any seat change that
 * was never logged, rebuilds booking seat lists and recounts the counters. */
tg_err pu_partition_recover(pu_partition *p);

/* Unmaps (and releases the owner lock).  p may be NULL. */
void pu_partition_detach(pu_partition *p);

/* Removes the segment's name; mappings stay valid until detached. */
tg_err pu_partition_destroy(const char *shm_name);

/* ---- Description ------------------------------------------------------ */

typedef struct {
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
    uint64_t bookings_created; /* since the segment was made */
    uint64_t log_head;         /* last sequence number reserved (0: none yet) */
    uint64_t log_persisted;    /* last sequence number acknowledged as persisted */
    bool restoring;            /* made for a restore that has not ended */
    bool replica;              /* a backup's copy (pu_replica_*) */
    uint64_t applied_seq;      /* replicas: last record applied in order */
} pu_partition_info;

void pu_partition_describe(const pu_partition *p, pu_partition_info *out);

/* Raises the partition's map epoch to epoch, never lowering it: a unit must
 * not act on an epoch older than one it has seen.  Returns the epoch the
 * partition has afterwards.  Any thread (one CAS loop on the header). */
uint64_t pu_partition_raise_epoch(pu_partition *p, uint64_t epoch);

/* Marks the copy a replica (a deposed primary, which may then be filled by
 * state transfer) or not (a promoted backup, which then sells and logs its
 * own records after the ones it applied).  The caller holds the served
 * entry's apply_lock, so no repl_append is half applied. */
void pu_partition_set_replica(pu_partition *p, bool replica);

/* Marks the copy as one that only a state transfer may make a replica again
 * (a deposed primary: its log may hold records its successor never had, at
 * sequence numbers the successor used for others, so it is no prefix of the
 * new primary's log and a delta would leave it different for good), or
 * clears the mark (promoted again).  Kept as `restoring`: a backup refuses
 * repl_append with partition_state until a state transfer began, and a
 * unit restarted with the mark removes the copy.  The caller holds the
 * served entry's apply_lock. */
void pu_partition_set_refill(pu_partition *p, bool refill);

typedef struct {
    char name[TG_NAME_BYTES];
    int64_t price_minor;
    char currency[TG_CURRENCY_BYTES];
    uint32_t row_first, row_count;   /* rows of this section: [row_first, +row_count) */
    uint32_t seat_first, seat_count; /* seats of this section */
} pu_section_info;

typedef struct {
    char name[TG_NAME_BYTES];
    uint32_t section;
    uint32_t seat_first, seat_count;
} pu_row_info;

tg_err pu_section_get(const pu_partition *p, uint32_t section, pu_section_info *out);
tg_err pu_row_get(const pu_partition *p, uint32_t row, pu_row_info *out);

typedef struct {
    uint32_t seat_id;
    tg_seat_word word;
    tg_seat_state state;
    tg_booking_id booking_id; /* 0 unless SELECTED, RESERVED or SOLD */
    uint32_t section, row;
    uint32_t number; /* 1-based position in its row */
    int64_t price_minor;
} pu_seat_info;

/* TG_ESEAT_RANGE when seat_id >= seat_count. */
tg_err pu_seat_get(const pu_partition *p, uint32_t seat_id, pu_seat_info *out);

/* What pu_seats_find looks for: a state, a row and a section (each -1: any). */
typedef struct {
    int32_t state, row, section;
} pu_seat_filter;

/* Up to max seats that match f, from seat `first` on, ascending, into out;
 * returns how many, and *next the seat a further page starts at
 * (seat_count: none left).  A row the filter rules out, or whose counter
 * holds no seat in the wanted state, is skipped whole, so that a page of a
 * rare state costs rows, not seats.  Not one instant, like any read while
 * others sell: a seat that changes meanwhile may or may not be listed. */
uint32_t pu_seats_find(const pu_partition *p, const pu_seat_filter *f, uint32_t first, uint32_t max,
                       pu_seat_info *out, uint32_t *next);

/* Counts of seats by state: totals, per section (section_count entries) and
 * per row (row_count entries); any output may be NULL.  Counters are kept per
 * row; sections and totals are summed on read (see partition.c for why). */
void pu_partition_counts(const pu_partition *p, uint32_t totals[TG_SEAT_STATE_COUNT],
                         uint32_t (*sections)[TG_SEAT_STATE_COUNT],
                         uint32_t (*rows)[TG_SEAT_STATE_COUNT]);

/* The same, recounted from the seat words (slow; for checks and tests). */
void pu_partition_recount(const pu_partition *p, uint32_t totals[TG_SEAT_STATE_COUNT],
                          uint32_t (*sections)[TG_SEAT_STATE_COUNT],
                          uint32_t (*rows)[TG_SEAT_STATE_COUNT]);

/* Checks every invariant of a quiescent partition (no writer running):
 * counters equal a recount; every held/sold seat belongs to a booking whose
 * status implies that state and whose seat list names it, and the reverse;
 * unpersisted log records are written with dense sequence numbers.
 * TG_OK or TG_ECORRUPT (and logs the first violation). */
tg_err pu_partition_check(const pu_partition *p);

/* ---- Bookings ---------------------------------------------------------- */

typedef struct {
    tg_booking_id id;
    uint64_t user_id;
    tg_booking_status status;
    uint32_t version; /* +1 on every status change */
    int64_t created_ms;
    int64_t deadline_ms; /* hold deadline, or payment deadline once pending */
    uint32_t seat_count;
    uint32_t seats[TG_BOOKING_SEATS_MAX]; /* ascending */
} pu_booking_info;

/* A new booking in status created, expiring created + hold TTL (holding
 * seats does not extend it).  TG_EBOOKINGS_FULL when no slot is free (a
 * slot is free again once its booking ended unpaid and its records are
 * persisted; paid bookings keep theirs); user_id must not be PU_USER_SYSTEM
 * (TG_EINVAL). */
tg_err pu_booking_create(pu_partition *p, uint64_t user_id, int64_t now_ms,
                         pu_booking_info *out);

/* TG_EWRONG_PARTITION, TG_ENOT_FOUND. */
tg_err pu_booking_get(pu_partition *p, tg_booking_id id, uint64_t user_id, pu_booking_info *out);

/* What a hold did, or on TG_ESEAT_TAKEN which requested seats were not free. */
typedef struct {
    uint32_t seat_count; /* seats the booking holds now, ascending */
    uint32_t seats[TG_BOOKING_SEATS_MAX];
    uint32_t taken_count; /* on TG_ESEAT_TAKEN: requested seats not free */
    uint32_t taken[TG_BOOKING_SEATS_MAX];
    int64_t deadline_ms;
} pu_hold_result;

/* Holds seat_ids (1..TG_BOOKING_SEATS_MAX, no duplicates, any order) in a
 * booking of status created, all or nothing.  Seats the booking already holds
 * count as taken.  Errors: TG_EINVAL, TG_ESEAT_RANGE, TG_ENOT_FOUND,
 * TG_EWRONG_PARTITION, TG_EBOOKING_STATE, TG_EEXPIRED (the booking is expired
 * on the spot), TG_ETOO_MANY_SEATS, TG_ESEAT_TAKEN, TG_EBACKLOG. */
tg_err pu_seats_hold(pu_partition *p, tg_booking_id id, uint64_t user_id, const uint32_t *seat_ids,
                     uint32_t n, int64_t now_ms, pu_hold_result *out);

typedef struct {
    uint32_t quantity;   /* 1..TG_BOOKING_SEATS_MAX */
    int32_t section;     /* a section index, or -1 for any */
    bool adjacent_only;  /* fail with TG_ENO_SEATS rather than split the group */
} pu_best_request;

/* Best available: quantity seats side by side in one row if any row has
 * them — rows in layout order (best first), centre first within a row —
 * otherwise (unless adjacent_only) split into as few groups as possible,
 * largest free runs first.  Same errors as pu_seats_hold, plus TG_ENO_SEATS,
 * and TG_EBUSY when other buyers took the chosen seats TG_BEST_ATTEMPTS_MAX
 * times in a row. */
tg_err pu_seats_hold_best(pu_partition *p, tg_booking_id id, uint64_t user_id,
                          const pu_best_request *req, int64_t now_ms, pu_hold_result *out);

/* Releases seats the booking holds (status created), all or nothing:
 * TG_ESEAT_NOT_HELD if any is not held by it; TG_EBOOKING_STATE if the
 * booking is not created; TG_EEXPIRED if it is due (expired on the spot). */
tg_err pu_seats_release(pu_partition *p, tg_booking_id id, uint64_t user_id,
                        const uint32_t *seat_ids, uint32_t n, int64_t now_ms);

/* created or pending_payment → cancelled; seats become FREE.
 * TG_EBOOKING_STATE once paid or ended. */
tg_err pu_booking_cancel(pu_partition *p, tg_booking_id id, uint64_t user_id, int64_t now_ms);

/* created with >= 1 seat → pending_payment; seats SELECTED → RESERVED; the
 * deadline becomes now + payment window (returned in *deadline_ms).
 * TG_EBOOKING_STATE without seats or in another status; TG_EEXPIRED past
 * the hold deadline (expired on the spot). */
tg_err pu_booking_begin_payment(pu_partition *p, tg_booking_id id, uint64_t user_id,
                                int64_t now_ms, int64_t *deadline_ms);

/* pending_payment → paid; seats RESERVED → SOLD.  Idempotent: TG_OK when
 * already paid.  TG_EEXPIRED when the payment window has passed (the booking
 * is expired on the spot and its seats freed: a late payment never sells). */
tg_err pu_booking_confirm(pu_partition *p, tg_booking_id id, int64_t now_ms);

/* created or pending_payment → failed; seats become FREE.  Idempotent. */
tg_err pu_booking_fail(pu_partition *p, tg_booking_id id, int64_t now_ms);

/* Expires bookings of status created or pending_payment whose deadline is
 * <= now_ms, examining at most scan_max slots from where the last call
 * stopped.  Returns how many it expired. */
uint32_t pu_sweep(pu_partition *p, int64_t now_ms, uint32_t scan_max);

/* FREE → BLOCKED (all or nothing, TG_ESEAT_TAKEN naming the seats in
 * *out; TG_EBACKLOG at the high-water mark, like a hold) and BLOCKED → FREE
 * (TG_EINVAL if one is not blocked; two unblocks racing for a seat both
 * succeed, one of them as a no-op).  At most TG_BOOKING_SEATS_MAX seats a
 * call. */
tg_err pu_seats_block(pu_partition *p, const uint32_t *seat_ids, uint32_t n, pu_hold_result *out);
tg_err pu_seats_unblock(pu_partition *p, const uint32_t *seat_ids, uint32_t n);

/* ---- Reset (tests and demos) -------------------------------------------- */

/* What a reset did (also when it stopped early). */
typedef struct {
    uint32_t bookings_cancelled; /* bookings moved to cancelled, paid ones included */
    uint32_t seats_freed;        /* SELECTED, RESERVED and SOLD seats they held, now FREE */
} pu_reset_result;

/* Clears a partition's sales, for tests and demos: every booking that is
 * created, pending_payment or paid becomes cancelled and its seats FREE,
 * each change logged exactly as pu_booking_cancel logs it (a paid booking
 * too: this is a reset, not a refund).  BLOCKED seats stay blocked; the
 * layout and ended bookings stay as they are.  Not atomic across the
 * partition: bookings made after the call began, and the seats they take,
 * are left alone (booking.c).  One pass over at most booking_capacity
 * slots.  Stops with TG_EBACKLOG at the ring's high-water mark, or with
 * TG_EBUSY when a booking's lock stays taken; *out then says what was done,
 * and calling again (once the persister has drained) goes on.  now_ms is
 * unused: a due booking is cancelled like any other. */
tg_err pu_partition_reset(pu_partition *p, int64_t now_ms, pu_reset_result *out);

/* ---- Restore (replay from PostgreSQL) ------------------------------------ */

/* A partition rebuilt from PostgreSQL goes through begin → seats and
 * bookings in any order → end, while nobody else uses it (the processing
 * unit refuses requests for a partition being restored).  Nothing restored
 * is logged: it is already persisted.  The change log continues from
 * log_base, the last sequence number persisted for this partition, so
 * sequence numbers never go back; map_epoch becomes epoch. */

/* Starts (or starts over: a restore that failed half-way is wiped first) the
 * restore of a partition created with cfg.restoring.  TG_EPARTITION_STATE
 * for a partition that is not being restored. */
tg_err pu_restore_begin(pu_partition *p, uint64_t epoch, uint64_t log_base);

/* Sets a seat's word as persisted (any state; TG_EINVAL for an invalid
 * state, TG_ESEAT_RANGE). */
tg_err pu_restore_seat(pu_partition *p, uint32_t seat_id, tg_seat_word word);

/* Puts a booking in its slot as persisted (seats come from the seat words).
 * TG_EWRONG_PARTITION, TG_EINVAL (status or seq), TG_EBOOKINGS_FULL when its
 * slot holds another live or paid booking. */
tg_err pu_restore_booking(pu_partition *p, const pu_booking_info *b);

/* Rebuilds seat lists and counters, frees seats whose booking was not
 * restored (logging them), continues booking seqs after the highest one,
 * checks every invariant (TG_ECORRUPT), and only then clears the
 * segment's restoring mark. */
tg_err pu_restore_end(pu_partition *p);

/* ---- Change log -------------------------------------------------------- */

enum {
    PU_REC_NOP = 0,     /* fills a slot whose writer died; carries nothing */
    PU_REC_SEAT = 1,    /* ident = seat id; word = the seat's new word */
    PU_REC_BOOKING = 2, /* ident = booking seq; status, user, times */
};

/* One change (48 bytes in the ring).  Sequence numbers start at 1 and are
 * dense.  A seat's records appear in the order its word changed. */
typedef struct {
    uint64_t seq;
    uint32_t ident;
    uint8_t kind;
    uint8_t status;    /* PU_REC_BOOKING: tg_booking_status */
    uint16_t reserved; /* zero */
    uint64_t word;     /* PU_REC_SEAT: seat word; PU_REC_BOOKING: user id */
    int64_t deadline_ms;
    int64_t created_ms;
    uint32_t version; /* PU_REC_BOOKING: booking version; PU_REC_SEAT: seat version */
    uint32_t reserved2;
} pu_log_record;

/* Copies up to max records starting at from_seq (>= 1) that are completely
 * written; stops at the first one still being written.  Returns the count. */
uint32_t pu_log_read(const pu_partition *p, uint64_t from_seq, pu_log_record *out, uint32_t max);

/* Marks every record up to seq as persisted, freeing its ring space.
 * Monotonic: a smaller seq is ignored.  TG_EINVAL beyond what was written. */
tg_err pu_log_ack(pu_partition *p, uint64_t seq);

/* ---- Replica (a backup's copy; replica.c) --------------------------------- */

/* A backup holds a full copy of its primary's segment and its primary's
 * change log, record for record at the same sequence numbers, so that it can
 * take over without losing an acknowledged change or a record the persister
 * has not drained.  It is filled by a state transfer (begin → seats and
 * bookings in any order, read while the primary keeps selling → end at a
 * base sequence) and then kept up by applying the primary's records in
 * sequence order.  Only one thread applies to a replica at a time (the
 * caller serialises); readers may read it meanwhile.
 *
 * Applying is idempotent and never moves an object back: a seat record
 * applies only if its version is newer than the seat's word, a booking
 * record only if its booking is not older than the slot's (sequence, then
 * version).  That is what makes a snapshot read while the primary sells
 * correct: records after the base may repeat what the snapshot already saw,
 * and the copy converges to the primary's state once the tail is applied. */

/* Starts (or starts over) the state transfer of a partition created with
 * cfg.restoring, or of a replica: wipes it, marks it a replica, sets its
 * epoch and continues its log at base_seq.  TG_EPARTITION_STATE for a
 * partition that serves as a primary (a live primary is never overwritten);
 * TG_ESTALE_EPOCH for an epoch older than the partition's. */
tg_err pu_replica_begin(pu_partition *p, uint64_t epoch, uint64_t base_seq);

/* Ends a state transfer: rebuilds seat lists and counters from the words
 * (nothing logged), records base_seq as applied, clears the restoring mark.
 * Seats and bookings come in through pu_restore_seat and pu_restore_booking
 * between begin and end. */
tg_err pu_replica_end(pu_partition *p);

/* Applies n consecutive records (records[i].seq = records[0].seq + i) of
 * epoch `epoch`; *applied receives the last sequence applied afterwards.
 * Records at or below it are skipped (sent twice); records after a gap
 * (records[0].seq > applied + 1) are not applied: *applied tells the sender
 * where to resend from.  persisted is the primary's persisted mark: the
 * copy's ring is trimmed to it (never past what was applied).  Errors:
 * TG_ESTALE_EPOCH (epoch older than the replica's: a deposed primary),
 * TG_EPARTITION_STATE (not a replica, or being filled), TG_EINVAL (records
 * not consecutive, or naming a seat out of range): nothing is applied then;
 * TG_ELOG_FULL (the copy's ring has no room: its primary's persisted mark
 * was not sent): the records before the one without room are applied, and
 * *applied says so. */
tg_err pu_replica_apply(pu_partition *p, uint64_t epoch, const pu_log_record *records, uint32_t n,
                        uint64_t persisted, uint64_t *applied);

#endif

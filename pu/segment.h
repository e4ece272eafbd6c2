/*
 * segment.h — the layout of a partition's shared-memory segment (pu-internal).
 *
 * A segment is sized from its configuration, then created in one piece
 * (PostgreSQL's "size, then create"): nothing in it grows.  Regions follow the
 * header, each aligned to a cache line:
 *
 *   header       pu_header: identity, geometry, region offsets, cursors
 *   sections     pu_section_rec[section_count]
 *   rows         pu_row_rec[row_count]       one cache line each: the row's
 *                                            counters of every seat state
 *   row names    char[row_count][TG_NAME_BYTES]
 *   seat rows    uint16_t[seat_count]        seat id → row index
 *   seats        tg_seat_word[seat_count]    the CAS words (seat.h)
 *   logged       uint32_t[seat_count]        version of each seat's last
 *                                            logged word (crash repair)
 *   bookings     pu_booking_rec[booking_capacity]
 *   log          pu_log_record[log_records]  the change-log ring
 *
 * What protects what:
 *   - seat words: CAS only (partition.h);
 *   - a booking record: its own lock word (bounded spin, then yield); the
 *     sweeper reads status and deadline without it (relaxed) to pick
 *     candidates, then takes it and checks again;
 *   - row counters: atomic add/sub after the seat CAS they account for; exact
 *     whenever no writer is mid-operation, and rebuilt by recovery;
 *   - the log: log_head is reserved by CAS; a record is published by a
 *     release-store of its seq, written last; log_persisted only rises.
 *
 * Every field is fixed-width; reserved bytes are zero.  A change to any of
 * these records or to the region order bumps PU_LAYOUT_VERSION.
 */
#ifndef PU_SEGMENT_H
#define PU_SEGMENT_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "partition.h"

#define PU_MAGIC UINT64_C(0x315452415047544e) /* "NTGPART1" read as little-endian bytes */
#define PU_LAYOUT_VERSION 4u
#define PU_CACHE_LINE 64u

typedef struct {
    /* Identity and geometry: written once at creation, before magic. */
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_bytes; /* sizeof(pu_header) */
    uint64_t segment_bytes;
    uint64_t event_id;
    uint32_t partition_id;
    uint32_t seat_count;
    uint32_t section_count;
    uint32_t row_count;
    uint32_t booking_capacity;
    uint32_t log_records;
    uint32_t hold_ttl_ms;
    uint32_t payment_window_ms;
    uint64_t sections_off;
    uint64_t rows_off;
    uint64_t row_names_off;
    uint64_t seat_rows_off;
    uint64_t seats_off;
    uint64_t logged_off;
    uint64_t bookings_off;
    uint64_t log_off;
    uint8_t reserved0[32];

    /* Grid state: written by the processing unit's grid layer. */
    alignas(PU_CACHE_LINE) uint64_t map_epoch;
    uint64_t last_applied_seq; /* replicas: last replicated record applied (replica.c) */
    uint64_t bookings_created; /* atomic counter */
    uint32_t restoring;        /* 1 from a restore's creation until pu_restore_end */
    uint32_t replica;          /* 1: a backup's copy; pu_replica_* and pu_partition_set_replica */
    uint8_t reserved1[32];

    /* Log cursors, each on its own line: writers and the persister would
     * otherwise bounce one line between cores on every operation. */
    alignas(PU_CACHE_LINE) uint64_t log_head; /* last seq reserved; CAS */
    uint8_t reserved2[56];
    alignas(PU_CACHE_LINE) uint64_t log_persisted; /* last seq persisted; rises */
    uint8_t reserved3[56];
    alignas(PU_CACHE_LINE) uint32_t booking_next_seq; /* last seq handed out; atomic */
    uint32_t sweep_cursor;                            /* next slot to sweep; relaxed */
    uint8_t reserved4[56];
} pu_header;

_Static_assert(sizeof(pu_header) == 448, "pu_header layout");
_Static_assert(offsetof(pu_header, map_epoch) == 192, "pu_header layout");
_Static_assert(offsetof(pu_header, log_head) == 256, "pu_header layout");
_Static_assert(offsetof(pu_header, log_persisted) == 320, "pu_header layout");
_Static_assert(offsetof(pu_header, booking_next_seq) == 384, "pu_header layout");

typedef struct {
    char name[TG_NAME_BYTES];
    int64_t price_minor;
    char currency[TG_CURRENCY_BYTES];
    uint32_t row_first;
    uint32_t row_count;
    uint32_t seat_first;
    uint32_t seat_count;
    uint32_t reserved;
} pu_section_rec;

_Static_assert(sizeof(pu_section_rec) == 64, "pu_section_rec layout");

typedef struct {
    uint32_t counts[8]; /* seats of this row in each tg_seat_state; atomic */
    uint32_t seat_first;
    uint32_t seat_count;
    uint32_t section;
    uint32_t reserved[5];
} pu_row_rec;

_Static_assert(sizeof(pu_row_rec) == 64, "pu_row_rec layout");
_Static_assert(TG_ROWS_MAX <= UINT16_MAX, "seat rows are stored as uint16_t");
_Static_assert(TG_SEAT_STATE_COUNT <= 8, "pu_row_rec.counts");

typedef struct {
    uint32_t lock;     /* 0 free, 1 held; CAS */
    uint32_t seq;      /* booking seq in this slot; 0: never used */
    uint8_t status;    /* tg_booking_status; relaxed atomic (sweeper peeks) */
    uint8_t seat_count;
    uint16_t reserved0;
    uint32_t version;    /* +1 on every status change */
    uint64_t user_id;
    int64_t created_ms;
    int64_t deadline_ms; /* relaxed atomic (sweeper peeks) */
    uint64_t log_seq;    /* seq of the last record about this booking or its seats */
    uint32_t seats[TG_BOOKING_SEATS_MAX]; /* ascending; seat_count valid */
    uint32_t logged_version; /* version of the last booking record published */
    uint8_t reserved1[12];
} pu_booking_rec;

_Static_assert(sizeof(pu_booking_rec) == 128, "pu_booking_rec layout");
_Static_assert(offsetof(pu_booking_rec, seats) == 48, "pu_booking_rec layout");
_Static_assert(offsetof(pu_booking_rec, logged_version) == 112, "pu_booking_rec layout");
_Static_assert(sizeof(pu_log_record) == 48, "pu_log_record layout");
_Static_assert(offsetof(pu_log_record, word) == 16, "pu_log_record layout");

/* A process's view of one mapped segment. */
struct pu_partition {
    pu_header *hdr;
    pu_section_rec *sections;
    pu_row_rec *rows;
    char (*row_names)[TG_NAME_BYTES];
    uint16_t *seat_rows;
    tg_seat_word *seats;
    uint32_t *logged;
    pu_booking_rec *bookings;
    pu_log_record *log;
    size_t map_bytes;
    int owner_fd; /* flock'ed descriptor while owner, else -1 */
};

/* ---- Shared by the engine's files (pu-internal) ------------------------ */

/* True when n more records fit under limit_per_1024 now.  Only a hint (others
 * may reserve meanwhile): takers check it before they touch a seat. */
bool pu_log_has_room(const pu_partition *p, uint32_t n, uint32_t limit_per_1024);

/* Reserves n consecutive sequence numbers; *first receives the first.
 * limit_per_1024 bounds the unpersisted part of the ring (1024: all of it).
 * Returns TG_EBACKLOG or TG_ELOG_FULL when there is no room. */
tg_err pu_log_reserve(pu_partition *p, uint32_t n, uint32_t limit_per_1024, uint64_t *first);

/* Publishes one record at rec->seq (reserved earlier). */
void pu_log_publish(pu_partition *p, const pu_log_record *rec);

/* Publishes a seat record for seat_id's new word. */
void pu_log_seat(pu_partition *p, uint64_t seq, uint32_t seat_id, tg_seat_word word);

/* Publishes a booking record describing b's current status. */
void pu_log_booking(pu_partition *p, uint64_t seq, pu_booking_rec *b);

/* Moves a logged-version mark forward to version (never back). */
void pu_logged_advance(uint32_t *logged, uint32_t version);

/* Moves a row's counter from one state to another (atomic). */
void pu_count_move(pu_partition *p, uint32_t seat_id, tg_seat_state from, tg_seat_state to);

/* The seat state that a booking of this status holds its seats in (FREE for
 * bookings that hold none: ended ones). */
tg_seat_state pu_status_seat_state(tg_booking_status status);

/* True for bookings that may still change (created, pending_payment). */
static inline _Bool pu_status_live(tg_booking_status s)
{
    return s == TG_BOOKING_CREATED || s == TG_BOOKING_PENDING_PAYMENT;
}

/* Takes a booking's lock word (bounded spin, then yield; TG_EBUSY). */
tg_err pu_booking_lock_raw(pu_booking_rec *b);

/* Puts seats, bookings, counters and the log back as pu_partition_create
 * left them (restore.c); a restore or a state transfer starts with it. */
void pu_partition_wipe(pu_partition *p);

/* Rebuilds every booking's seat list from the seat words (a seat joins the
 * list of the booking in its slot, if the slot holds that booking) and
 * recounts the counters; logs nothing (recover.c). */
void pu_partition_relist(pu_partition *p);

/* Locks the booking id names and checks it exists, belongs to this
 * partition and to user_id (unless PU_USER_SYSTEM). */
tg_err pu_booking_lock(pu_partition *p, tg_booking_id id, uint64_t user_id, pu_booking_rec **out);
void pu_booking_unlock(pu_booking_rec *b);

/* With b locked: expires b if it is live and its deadline has passed
 * (TG_EEXPIRED), else TG_OK. */
tg_err pu_booking_expire_if_due(pu_partition *p, pu_booking_rec *b, int64_t now_ms);

/* Locks the booking for a change of its seats: it must be created and not
 * due (a due booking is expired on the spot: TG_EEXPIRED). */
tg_err pu_booking_lock_created(pu_partition *p, tg_booking_id id, uint64_t user_id,
                               int64_t now_ms, pu_booking_rec **out);

/* Sorts at most TG_BOOKING_SEATS_MAX seat ids ascending. */
void pu_seats_sort(uint32_t *seats, uint32_t n);

/* Validates 1..TG_BOOKING_SEATS_MAX seat ids and copies them ascending. */
tg_err pu_seats_prepare(const pu_partition *p, const uint32_t *seat_ids, uint32_t n,
                        uint32_t *sorted);

/* With b locked and created: takes the FREE seats sorted[0..n) into b, all
 * or nothing; fills out. */
tg_err pu_hold_locked(pu_partition *p, pu_booking_rec *b, const uint32_t *sorted, uint32_t n,
                      pu_hold_result *out);

static inline pu_booking_rec *pu_booking_slot(const pu_partition *p, uint32_t seq)
{
    return &p->bookings[(seq - 1) % p->hdr->booking_capacity];
}

static inline tg_booking_status pu_booking_status(const pu_booking_rec *b)
{
    return (tg_booking_status)__atomic_load_n(&b->status, __ATOMIC_RELAXED);
}

static inline tg_seat_word pu_seat_load(const pu_partition *p, uint32_t seat_id)
{
    return __atomic_load_n(&p->seats[seat_id], __ATOMIC_ACQUIRE);
}

static inline _Bool pu_seat_cas(pu_partition *p, uint32_t seat_id, tg_seat_word expected,
                                tg_seat_word desired)
{
    return __atomic_compare_exchange_n(&p->seats[seat_id], &expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

#endif

/*
 * seat.h — the seat word, the ids, and the names of seat and booking states.
 *
 * Every seat is one aligned 64-bit word in shared memory, changed only by a
 * single compare-and-swap from the word the caller read to the word it wants:
 *
 *   63    61 60                      32 31                               0
 *  +--------+--------------------------+----------------------------------+
 *  | state  |  version (29 bits, wraps)|  booking seq (32 bits)           |
 *  +--------+--------------------------+----------------------------------+
 *
 *   state    tg_seat_state; FREE and BLOCKED carry booking seq 0.
 *   version  +1 (mod 2^29) on every change, so a reader can tell that a seat
 *            moved on even when it returned to the same state and booking.
 *            A version is never used for two words: a multi-seat hold that
 *            fails part-way gives its seats back as FREE at a new version
 *            (and logs that), because a concurrent reader, a state transfer
 *            among them, may have seen the word it wrote in between.
 *   seq      the booking (within this partition) that holds or bought it.
 *
 * Booking ids are partition_id << 32 | seq with partition_id < 2^21: the owner
 * of a booking is known from its id alone, and every id is below 2^53.
 */
#ifndef TIXGRID_SEAT_H
#define TIXGRID_SEAT_H

#include <stdbool.h>
#include <stdint.h>

#include "tixgrid/limits.h"

typedef enum {
    TG_SEAT_FREE = 0,
    TG_SEAT_SELECTED = 1, /* held in a booking until the hold TTL */
    TG_SEAT_RESERVED = 2, /* booking pending payment, for the payment window */
    TG_SEAT_SOLD = 3,
    TG_SEAT_BLOCKED = 4, /* taken off sale by an organizer */
    TG_SEAT_STATE_COUNT = 5
} tg_seat_state;

typedef enum {
    TG_BOOKING_EMPTY = 0, /* an unused table slot; never seen through the API */
    TG_BOOKING_CREATED = 1,
    TG_BOOKING_PENDING_PAYMENT = 2,
    TG_BOOKING_PAID = 3,
    TG_BOOKING_CANCELLED = 4,
    TG_BOOKING_EXPIRED = 5,
    TG_BOOKING_FAILED = 6,
    TG_BOOKING_STATUS_COUNT = 7
} tg_booking_status;

typedef uint64_t tg_seat_word;

#define TG_SEAT_STATE_SHIFT 61
#define TG_SEAT_VERSION_SHIFT 32
#define TG_SEAT_VERSION_BITS 29
#define TG_SEAT_VERSION_MASK ((1u << TG_SEAT_VERSION_BITS) - 1)

static inline tg_seat_state tg_seat_word_state(tg_seat_word w)
{
    return (tg_seat_state)(w >> TG_SEAT_STATE_SHIFT);
}

static inline uint32_t tg_seat_word_version(tg_seat_word w)
{
    return (uint32_t)(w >> TG_SEAT_VERSION_SHIFT) & TG_SEAT_VERSION_MASK;
}

static inline uint32_t tg_seat_word_booking(tg_seat_word w)
{
    return (uint32_t)w;
}

static inline tg_seat_word tg_seat_word_make(tg_seat_state state, uint32_t version, uint32_t seq)
{
    return ((uint64_t)state << TG_SEAT_STATE_SHIFT) |
           ((uint64_t)(version & TG_SEAT_VERSION_MASK) << TG_SEAT_VERSION_SHIFT) | seq;
}

/* The word that follows w when the seat moves to state/seq: version + 1. */
static inline tg_seat_word tg_seat_word_next(tg_seat_word w, tg_seat_state state, uint32_t seq)
{
    return tg_seat_word_make(state, tg_seat_word_version(w) + 1, seq);
}

/* True when version a is newer than b, allowing for wrap-around. */
static inline bool tg_seat_version_newer(uint32_t a, uint32_t b)
{
    uint32_t diff = (a - b) & TG_SEAT_VERSION_MASK;
    return diff != 0 && diff < (1u << (TG_SEAT_VERSION_BITS - 1));
}

typedef uint64_t tg_booking_id;

static inline tg_booking_id tg_booking_id_make(uint32_t partition_id, uint32_t seq)
{
    return ((uint64_t)partition_id << 32) | seq;
}

static inline uint32_t tg_booking_id_partition(tg_booking_id id)
{
    return (uint32_t)(id >> 32);
}

static inline uint32_t tg_booking_id_seq(tg_booking_id id)
{
    return (uint32_t)id;
}

/* True for ids a client may legitimately send: partition in range, seq > 0. */
static inline bool tg_booking_id_valid(tg_booking_id id)
{
    return tg_booking_id_partition(id) <= TG_PARTITION_ID_MAX && tg_booking_id_seq(id) != 0;
}

/* "FREE", "SELECTED", "RESERVED", "SOLD", "BLOCKED"; NULL when out of range. */
const char *tg_seat_state_name(tg_seat_state state);
/* "created", "pending_payment", "paid", "cancelled", "expired", "failed". */
const char *tg_booking_status_name(tg_booking_status status);
/* Parses the API names above; false when unknown. */
bool tg_seat_state_parse(const char *name, tg_seat_state *state);

#endif

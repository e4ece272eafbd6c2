/*
 * seats.c — taking and giving up seats: hold, release, block, unblock.
 *
 * A hold of several seats is all or nothing without any partition lock: the
 * seats are CASed FREE → SELECTED(booking) in ascending seat order, and on
 * the first seat that is not free the ones already taken are CASed back to
 * the exact words they had.  Ascending order means two buyers racing for
 * overlapping sets cannot each block the other forever; restoring the exact
 * word (same version) means a rolled-back hold leaves no trace, so it needs no
 * log record.  Only after every CAS succeeded does the hold reserve its log
 * records (the "take after CAS" rule of changelog.c); if the ring has no room
 * the seats are rolled back the same way and nothing changed.
 *
 * Giving seats up (release, unblock) reserves the records first and CASes
 * after, so whoever takes the seat next is logged after the release.
 */
#include "segment.h"

#include "tixgrid/assert.h"

#include <string.h>

tg_err pu_seats_prepare(const pu_partition *p, const uint32_t *seat_ids, uint32_t n,
                        uint32_t *sorted)
{
    if (seat_ids == NULL || n == 0 || n > TG_BOOKING_SEATS_MAX) {
        return TG_EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (seat_ids[i] >= p->hdr->seat_count) {
            return TG_ESEAT_RANGE;
        }
        uint32_t v = seat_ids[i], j = i;
        for (; j > 0 && sorted[j - 1] > v; j--) {
            sorted[j] = sorted[j - 1];
        }
        sorted[j] = v;
    }
    for (uint32_t i = 1; i < n; i++) {
        if (sorted[i] == sorted[i - 1]) {
            return TG_EINVAL;
        }
    }
    return TG_OK;
}

/* Restores seats[0..n) to the words they had before this call took them. */
static void rollback(pu_partition *p, const uint32_t *seats, const tg_seat_word *before,
                     const tg_seat_word *after, uint32_t n, bool must_succeed)
{
    for (uint32_t i = 0; i < n; i++) {
        bool swapped = pu_seat_cas(p, seats[i], after[i], before[i]);
        TG_ASSERT(swapped || !must_succeed);
    }
}

/* Names the requested seats that are not free now (at least `failed`). */
static void taken_fill(const pu_partition *p, const uint32_t *sorted, uint32_t n, uint32_t failed,
                       pu_hold_result *out)
{
    out->taken_count = 0;
    for (uint32_t i = 0; i < n; i++) {
        bool busy = tg_seat_word_state(pu_seat_load(p, sorted[i])) != TG_SEAT_FREE;
        if (busy || sorted[i] == failed) {
            out->taken[out->taken_count++] = sorted[i];
        }
    }
}

/* CASes sorted[0..n) from FREE to `state` for booking seq; all or nothing.
 * Returns the number taken: n on success, else the index that failed (and
 * everything before it is already rolled back). */
static uint32_t take_free(pu_partition *p, const uint32_t *sorted, uint32_t n, tg_seat_state state,
                          uint32_t seq, tg_seat_word *before, tg_seat_word *after,
                          bool must_roll_back)
{
    uint32_t i = 0;
    for (; i < n; i++) {
        tg_seat_word w = pu_seat_load(p, sorted[i]);
        if (tg_seat_word_state(w) != TG_SEAT_FREE) {
            break;
        }
        tg_seat_word next = tg_seat_word_next(w, state, seq);
        if (!pu_seat_cas(p, sorted[i], w, next)) {
            break;
        }
        before[i] = w;
        after[i] = next;
    }
    if (i < n) {
        rollback(p, sorted, before, after, i, must_roll_back);
    }
    return i;
}

static void hold_result_fill(const pu_booking_rec *b, pu_hold_result *out)
{
    out->seat_count = b->seat_count;
    memcpy(out->seats, b->seats, sizeof(uint32_t) * b->seat_count);
    out->deadline_ms = __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED);
}

/* Merges sorted[0..n) into b's ascending seat list. */
static void list_add(pu_booking_rec *b, const uint32_t *sorted, uint32_t n)
{
    uint32_t merged[TG_BOOKING_SEATS_MAX];
    uint32_t i = 0, j = 0, k = 0;
    while (i < b->seat_count || j < n) {
        bool from_list = j == n || (i < b->seat_count && b->seats[i] < sorted[j]);
        merged[k++] = from_list ? b->seats[i++] : sorted[j++];
    }
    memcpy(b->seats, merged, sizeof(uint32_t) * k);
    b->seat_count = (uint8_t)k;
}

tg_err pu_hold_locked(pu_partition *p, pu_booking_rec *b, const uint32_t *sorted, uint32_t n,
                      pu_hold_result *out)
{
    if (b->seat_count + n > TG_BOOKING_SEATS_MAX) {
        return TG_ETOO_MANY_SEATS;
    }
    tg_seat_word before[TG_BOOKING_SEATS_MAX], after[TG_BOOKING_SEATS_MAX];
    uint32_t got = take_free(p, sorted, n, TG_SEAT_SELECTED, b->seq, before, after, true);
    if (got < n) {
        taken_fill(p, sorted, n, sorted[got], out);
        return TG_ESEAT_TAKEN;
    }
    uint64_t seq;
    tg_err err = pu_log_reserve(p, n, TG_LOG_HIGH_WATER_PER_1024, &seq);
    if (err != TG_OK) {
        rollback(p, sorted, before, after, n, true);
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        pu_count_move(p, sorted[i], TG_SEAT_FREE, TG_SEAT_SELECTED);
        pu_log_seat(p, seq + i, sorted[i], after[i]);
    }
    list_add(b, sorted, n);
    __atomic_store_n(&b->log_seq, seq + n - 1, __ATOMIC_RELAXED);
    hold_result_fill(b, out);
    return TG_OK;
}

/* Locks the booking for a change of its seats: it must be created and not
 * due; a due booking is expired on the spot. */
static tg_err lock_created(pu_partition *p, tg_booking_id id, uint64_t user_id, int64_t now_ms,
                           pu_booking_rec **out)
{
    pu_booking_rec *b;
    tg_err err = pu_booking_lock(p, id, user_id, &b);
    if (err != TG_OK) {
        return err;
    }
    err = pu_booking_expire_if_due(p, b, now_ms);
    if (err == TG_OK && pu_booking_status(b) != TG_BOOKING_CREATED) {
        err = TG_EBOOKING_STATE;
    }
    if (err != TG_OK) {
        pu_booking_unlock(b);
        return err;
    }
    *out = b;
    return TG_OK;
}

tg_err pu_seats_hold(pu_partition *p, tg_booking_id id, uint64_t user_id, const uint32_t *seat_ids,
                     uint32_t n, int64_t now_ms, pu_hold_result *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t sorted[TG_BOOKING_SEATS_MAX];
    tg_err err = pu_seats_prepare(p, seat_ids, n, sorted);
    pu_booking_rec *b;
    if (err != TG_OK || (err = lock_created(p, id, user_id, now_ms, &b)) != TG_OK) {
        return err;
    }
    err = pu_hold_locked(p, b, sorted, n, out);
    pu_booking_unlock(b);
    return err;
}

static bool list_has(const pu_booking_rec *b, uint32_t seat)
{
    for (uint32_t i = 0; i < b->seat_count; i++) {
        if (b->seats[i] == seat) {
            return true;
        }
    }
    return false;
}

static void list_remove(pu_booking_rec *b, const uint32_t *sorted, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < b->seat_count; i++) {
        bool drop = false;
        for (uint32_t j = 0; j < n && !drop; j++) {
            drop = b->seats[i] == sorted[j];
        }
        if (!drop) {
            b->seats[k++] = b->seats[i];
        }
    }
    b->seat_count = (uint8_t)k;
}

static tg_err release_locked(pu_partition *p, pu_booking_rec *b, const uint32_t *sorted,
                             uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!list_has(b, sorted[i])) {
            return TG_ESEAT_NOT_HELD;
        }
    }
    uint64_t seq;
    tg_err err = pu_log_reserve(p, n, 1024, &seq);
    if (err != TG_OK) {
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        tg_seat_word w = pu_seat_load(p, sorted[i]);
        TG_ASSERT(tg_seat_word_state(w) == TG_SEAT_SELECTED && tg_seat_word_booking(w) == b->seq);
        tg_seat_word next = tg_seat_word_next(w, TG_SEAT_FREE, 0);
        bool swapped = pu_seat_cas(p, sorted[i], w, next);
        TG_ASSERT(swapped); /* the booking lock keeps everyone else off these seats */
        pu_count_move(p, sorted[i], TG_SEAT_SELECTED, TG_SEAT_FREE);
        pu_log_seat(p, seq + i, sorted[i], next);
    }
    list_remove(b, sorted, n);
    __atomic_store_n(&b->log_seq, seq + n - 1, __ATOMIC_RELAXED);
    return TG_OK;
}

tg_err pu_seats_release(pu_partition *p, tg_booking_id id, uint64_t user_id,
                        const uint32_t *seat_ids, uint32_t n, int64_t now_ms)
{
    uint32_t sorted[TG_BOOKING_SEATS_MAX];
    tg_err err = pu_seats_prepare(p, seat_ids, n, sorted);
    pu_booking_rec *b;
    if (err != TG_OK || (err = lock_created(p, id, user_id, now_ms, &b)) != TG_OK) {
        return err;
    }
    err = release_locked(p, b, sorted, n);
    pu_booking_unlock(b);
    return err;
}

tg_err pu_seats_block(pu_partition *p, const uint32_t *seat_ids, uint32_t n, pu_hold_result *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t sorted[TG_BOOKING_SEATS_MAX];
    tg_err err = pu_seats_prepare(p, seat_ids, n, sorted);
    if (err != TG_OK) {
        return err;
    }
    /* No lock covers BLOCKED seats, so a concurrent unblock may already have
     * freed a seat this call blocked: such a rollback CAS may fail, and the
     * seat is then whatever the unblock made it (and logged). */
    tg_seat_word before[TG_BOOKING_SEATS_MAX], after[TG_BOOKING_SEATS_MAX];
    uint32_t got = take_free(p, sorted, n, TG_SEAT_BLOCKED, 0, before, after, false);
    if (got < n) {
        taken_fill(p, sorted, n, sorted[got], out);
        return TG_ESEAT_TAKEN;
    }
    uint64_t seq;
    /* Blocking is a taker like a hold: stop at the high-water mark too, so
     * a backlog leaves room for the releases and expiries that free seats. */
    err = pu_log_reserve(p, n, TG_LOG_HIGH_WATER_PER_1024, &seq);
    if (err != TG_OK) {
        rollback(p, sorted, before, after, n, false);
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        pu_count_move(p, sorted[i], TG_SEAT_FREE, TG_SEAT_BLOCKED);
        pu_log_seat(p, seq + i, sorted[i], after[i]);
    }
    return TG_OK;
}

tg_err pu_seats_unblock(pu_partition *p, const uint32_t *seat_ids, uint32_t n)
{
    uint32_t sorted[TG_BOOKING_SEATS_MAX];
    tg_err err = pu_seats_prepare(p, seat_ids, n, sorted);
    if (err != TG_OK) {
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (tg_seat_word_state(pu_seat_load(p, sorted[i])) != TG_SEAT_BLOCKED) {
            return TG_EINVAL;
        }
    }
    uint64_t seq;
    err = pu_log_reserve(p, n, 1024, &seq);
    if (err != TG_OK) {
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        tg_seat_word w = pu_seat_load(p, sorted[i]);
        tg_seat_word next = tg_seat_word_next(w, TG_SEAT_FREE, 0);
        if (tg_seat_word_state(w) == TG_SEAT_BLOCKED && pu_seat_cas(p, sorted[i], w, next)) {
            pu_count_move(p, sorted[i], TG_SEAT_BLOCKED, TG_SEAT_FREE);
            pu_log_seat(p, seq + i, sorted[i], next);
        } else {
            /* A concurrent unblock freed it first: keep the log dense. */
            pu_log_publish(p, &(pu_log_record){.seq = seq + i, .kind = PU_REC_NOP});
        }
    }
    return TG_OK;
}

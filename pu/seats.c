/*
 * seats.c — taking and giving up seats: hold, release, block, unblock.
 *
 * A hold of several seats is all or nothing without any partition lock: the
 * seats are CASed FREE → SELECTED(booking) in ascending seat order, and on
 * the first seat that is not free the ones already taken are given back.
 * Ascending order means two buyers racing for overlapping sets cannot each
 * block the other forever.  Only after every CAS succeeded does the hold
 * reserve its log records (the "take after CAS" rule of changelog.c); if
 * the ring has no room the seats are given back the same way.  A hold first
 * checks that the ring has room, so a backlog refuses holds before they
 * touch a seat.
 *
 * Giving back never restores the word a seat had: it moves the seat to FREE
 * at a new version and logs that, like a release.  The word in between
 * (SELECTED for us, one version up) was visible, and a state transfer may
 * have copied it; had we restored the old word, the next buyer's change
 * would carry that same version again, and a backup holding our copy would
 * skip it as "not newer" (ABA): a phantom hold, and an acknowledged hold
 * lost at failover.  A version is therefore never used for two words.  A
 * give-back reserves its records before its CAS, as a giver does, and may
 * use the whole ring, as recovery may.  Since a hold checks for room before
 * it takes anything, only other give-backs can fill the ring past the
 * givers' mark: only an entirely full ring (a tiny one, or more concurrent
 * give-backs than its last 1/32 holds) makes it restore the old words
 * instead, with a warning.
 *
 * Giving seats up (release) reserves the records first and CASes after, so
 * whoever takes the seat next is logged after the release.  Blocking and
 * unblocking have their own rule, below.
 */
#include "segment.h"

#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#include <string.h>

void pu_seats_sort(uint32_t *seats, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) { /* n <= TG_BOOKING_SEATS_MAX: insertion sort */
        uint32_t v = seats[i], j = i;
        for (; j > 0 && seats[j - 1] > v; j--) {
            seats[j] = seats[j - 1];
        }
        seats[j] = v;
    }
}

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
        sorted[i] = seat_ids[i];
    }
    pu_seats_sort(sorted, n);
    for (uint32_t i = 1; i < n; i++) {
        if (sorted[i] == sorted[i - 1]) {
            return TG_EINVAL;
        }
    }
    return TG_OK;
}

/* Gives seats[0..n), which this call took (after[i] is the word it wrote),
 * back as FREE at a new version, logged (see the top). */
static void rollback(pu_partition *p, const uint32_t *seats, const tg_seat_word *before,
                     const tg_seat_word *after, uint32_t n)
{
    if (n == 0) {
        return;
    }
    uint64_t seq = 0;
    tg_err err = pu_log_reserve(p, n, 1024, &seq); /* it retries contention itself */
    if (err != TG_OK) {
        tg_log_warn("partition %u: no log room to give back %u seats of a failed hold (%s): "
                    "restoring their old words",
                    p->hdr->partition_id, n, tg_errname(err));
    }
    for (uint32_t i = 0; i < n; i++) {
        tg_seat_word back = err == TG_OK ? tg_seat_word_next(after[i], TG_SEAT_FREE, 0) : before[i];
        bool swapped = pu_seat_cas(p, seats[i], after[i], back);
        TG_ASSERT(swapped); /* the booking lock keeps everyone else off held seats */
        if (err == TG_OK) {
            pu_log_seat(p, seq + i, seats[i], back);
        }
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

/* CASes sorted[0..n) from FREE to SELECTED for booking seq; all or nothing.
 * Returns the number taken: n on success, else the index that failed (and
 * everything before it is already rolled back). */
static uint32_t take_free(pu_partition *p, const uint32_t *sorted, uint32_t n, uint32_t seq,
                          tg_seat_word *before, tg_seat_word *after)
{
    uint32_t i = 0;
    for (; i < n; i++) {
        tg_seat_word w = pu_seat_load(p, sorted[i]);
        if (tg_seat_word_state(w) != TG_SEAT_FREE) {
            break;
        }
        tg_seat_word next = tg_seat_word_next(w, TG_SEAT_SELECTED, seq);
        if (!pu_seat_cas(p, sorted[i], w, next)) {
            break;
        }
        before[i] = w;
        after[i] = next;
    }
    if (i < n) {
        rollback(p, sorted, before, after, i);
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
    if (!pu_log_has_room(p, n, TG_LOG_HIGH_WATER_PER_1024)) {
        return TG_EBACKLOG;
    }
    tg_seat_word before[TG_BOOKING_SEATS_MAX], after[TG_BOOKING_SEATS_MAX];
    uint32_t got = take_free(p, sorted, n, b->seq, before, after);
    if (got < n) {
        taken_fill(p, sorted, n, sorted[got], out);
        return TG_ESEAT_TAKEN;
    }
    uint64_t seq;
    tg_err err = pu_log_reserve(p, n, TG_LOG_HIGH_WATER_PER_1024, &seq);
    if (err != TG_OK) {
        rollback(p, sorted, before, after, n);
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

tg_err pu_booking_lock_created(pu_partition *p, tg_booking_id id, uint64_t user_id,
                               int64_t now_ms, pu_booking_rec **out)
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
    if (err != TG_OK || (err = pu_booking_lock_created(p, id, user_id, now_ms, &b)) != TG_OK) {
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
    tg_err err = pu_log_reserve(p, n, TG_LOG_GIVER_PER_1024, &seq);
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
    if (err != TG_OK || (err = pu_booking_lock_created(p, id, user_id, now_ms, &b)) != TG_OK) {
        return err;
    }
    err = release_locked(p, b, sorted, n);
    pu_booking_unlock(b);
    return err;
}

/*
 * Blocking and unblocking hold no lock, so they order their log records by
 * reading each seat's word first, then reserving sequence numbers, then
 * CASing from the word read.  Whatever change produced that word reserved
 * its own number before its CAS (a release, an unblock, a give-back) or
 * after it under a lock we do not need (a hold's take), so it is logged
 * before ours; and whoever changes the seat after us reads our word after
 * our reservation.  A CAS that fails (someone else got there first) leaves
 * a no-op record.
 */
static void publish_nop(pu_partition *p, uint64_t seq)
{
    pu_log_publish(p, &(pu_log_record){.seq = seq, .kind = PU_REC_NOP});
}

/* Reads every seat's word; returns the index of the first not in state
 * `want`, or n if all are. */
static uint32_t words_read(const pu_partition *p, const uint32_t *sorted, uint32_t n,
                           tg_seat_state want, tg_seat_word *before)
{
    for (uint32_t i = 0; i < n; i++) {
        before[i] = pu_seat_load(p, sorted[i]);
        if (tg_seat_word_state(before[i]) != want) {
            return i;
        }
    }
    return n;
}

/* Undoes the first `got` blocks of a failed call: each seat goes to FREE at
 * a new version (never its old word: see the top), logged in the record
 * reserved for the block, which precedes both CASes.  A block an unblock has
 * already undone (our word is gone) did happen: it is logged, not undone. */
static void block_undo(pu_partition *p, const uint32_t *sorted, const tg_seat_word *before,
                       uint32_t got, uint64_t seq)
{
    for (uint32_t i = 0; i < got; i++) {
        tg_seat_word blocked = tg_seat_word_next(before[i], TG_SEAT_BLOCKED, 0);
        tg_seat_word back = tg_seat_word_next(blocked, TG_SEAT_FREE, 0);
        if (pu_seat_cas(p, sorted[i], blocked, back)) {
            pu_log_seat(p, seq + i, sorted[i], back);
        } else {
            pu_count_move(p, sorted[i], TG_SEAT_FREE, TG_SEAT_BLOCKED);
            pu_log_seat(p, seq + i, sorted[i], blocked);
        }
    }
}

tg_err pu_seats_block(pu_partition *p, const uint32_t *seat_ids, uint32_t n, pu_hold_result *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t sorted[TG_BOOKING_SEATS_MAX];
    tg_seat_word before[TG_BOOKING_SEATS_MAX];
    tg_err err = pu_seats_prepare(p, seat_ids, n, sorted);
    if (err != TG_OK) {
        return err;
    }
    uint32_t busy = words_read(p, sorted, n, TG_SEAT_FREE, before);
    if (busy < n) {
        taken_fill(p, sorted, n, sorted[busy], out);
        return TG_ESEAT_TAKEN;
    }
    uint64_t seq;
    /* Blocking takes seats like a hold: it stops at the high-water mark so a
     * backlog leaves room for the releases and expiries that free seats. */
    err = pu_log_reserve(p, n, TG_LOG_HIGH_WATER_PER_1024, &seq);
    if (err != TG_OK) {
        return err;
    }
    uint32_t got = 0;
    while (got < n &&
           pu_seat_cas(p, sorted[got], before[got],
                       tg_seat_word_next(before[got], TG_SEAT_BLOCKED, 0))) {
        got++;
    }
    if (got < n) {
        block_undo(p, sorted, before, got, seq);
        for (uint32_t i = got; i < n; i++) {
            publish_nop(p, seq + i);
        }
        taken_fill(p, sorted, n, sorted[got], out);
        return TG_ESEAT_TAKEN;
    }
    for (uint32_t i = 0; i < n; i++) {
        pu_count_move(p, sorted[i], TG_SEAT_FREE, TG_SEAT_BLOCKED);
        pu_log_seat(p, seq + i, sorted[i], tg_seat_word_next(before[i], TG_SEAT_BLOCKED, 0));
    }
    return TG_OK;
}

tg_err pu_seats_unblock(pu_partition *p, const uint32_t *seat_ids, uint32_t n)
{
    uint32_t sorted[TG_BOOKING_SEATS_MAX];
    tg_seat_word before[TG_BOOKING_SEATS_MAX];
    tg_err err = pu_seats_prepare(p, seat_ids, n, sorted);
    if (err != TG_OK) {
        return err;
    }
    if (words_read(p, sorted, n, TG_SEAT_BLOCKED, before) < n) {
        return TG_EINVAL;
    }
    uint64_t seq;
    err = pu_log_reserve(p, n, TG_LOG_GIVER_PER_1024, &seq);
    if (err != TG_OK) {
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        tg_seat_word next = tg_seat_word_next(before[i], TG_SEAT_FREE, 0);
        if (pu_seat_cas(p, sorted[i], before[i], next)) {
            pu_count_move(p, sorted[i], TG_SEAT_BLOCKED, TG_SEAT_FREE);
            pu_log_seat(p, seq + i, sorted[i], next);
        } else {
            publish_nop(p, seq + i); /* a concurrent unblock freed it first */
        }
    }
    return TG_OK;
}

/*
 * booking.c — the booking table and booking status changes.
 *
 * A booking lives in slot (seq - 1) % capacity of a fixed table.  Sequence
 * numbers only rise; a slot is reused by a later seq only once its booking
 * has ended without a sale (cancelled, expired, failed) and every record
 * about it is persisted, so PostgreSQL holds its history.  Paid bookings keep
 * their slot for the life of the segment.  An old id whose slot was reused
 * answers TG_ENOT_FOUND, because the slot's seq no longer matches.
 *
 * Each slot has a lock word.  Every operation on a booking takes it, so two
 * requests about one booking (one shopper) are serialised, while operations
 * on different bookings never wait for each other.  Under the lock nobody
 * else can change the booking's seats: other buyers only CAS FREE seats.
 * The lock spins briefly, then yields, and gives up with TG_EBUSY after a
 * bounded wait rather than hang on a lock whose holder died (the owner's
 * recovery clears such locks).
 *
 * Status first.  A status change writes and logs the booking's new status,
 * then moves its seats.  The status is the intent: if the process dies in
 * between, recovery moves the remaining seats to the state the status
 * implies (created → SELECTED, pending_payment → RESERVED, paid → SOLD,
 * ended → FREE).
 *
 * The same file resets a whole partition for tests and demos (at the end):
 * one bounded pass over the table that cancels every live or paid booking.
 */
#include "segment.h"

#include "tixgrid/assert.h"

#include <sched.h>
#include <string.h>

tg_err pu_booking_lock_raw(pu_booking_rec *b)
{
    for (uint32_t i = 0; i < TG_BOOKING_LOCK_SPINS + TG_BOOKING_LOCK_YIELDS; i++) {
        uint32_t unlocked = 0;
        if (__atomic_compare_exchange_n(&b->lock, &unlocked, 1, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            return TG_OK;
        }
        if (i >= TG_BOOKING_LOCK_SPINS) {
            sched_yield();
        }
    }
    return TG_EBUSY;
}

void pu_booking_unlock(pu_booking_rec *b)
{
    TG_ASSERT(__atomic_load_n(&b->lock, __ATOMIC_RELAXED) == 1);
    __atomic_store_n(&b->lock, 0, __ATOMIC_RELEASE);
}

tg_err pu_booking_lock(pu_partition *p, tg_booking_id id, uint64_t user_id, pu_booking_rec **out)
{
    if (tg_booking_id_partition(id) != p->hdr->partition_id) {
        return TG_EWRONG_PARTITION;
    }
    uint32_t seq = tg_booking_id_seq(id);
    if (seq == 0) {
        return TG_ENOT_FOUND;
    }
    pu_booking_rec *b = pu_booking_slot(p, seq);
    tg_err err = pu_booking_lock_raw(b);
    if (err != TG_OK) {
        return err;
    }
    if (b->seq != seq || pu_booking_status(b) == TG_BOOKING_EMPTY ||
        (user_id != PU_USER_SYSTEM && b->user_id != user_id)) {
        pu_booking_unlock(b);
        return TG_ENOT_FOUND;
    }
    *out = b;
    return TG_OK;
}

/* Moves locked b to status `to` and its seats to the state `to` implies.
 * Reserves every record first (below limit_per_1024 of the ring), so a full
 * ring changes nothing. */
static tg_err transition(pu_partition *p, pu_booking_rec *b, tg_booking_status to,
                         int64_t deadline_ms, uint32_t limit_per_1024)
{
    uint32_t n = b->seat_count;
    tg_seat_state from_state = pu_status_seat_state(pu_booking_status(b));
    tg_seat_state to_state = pu_status_seat_state(to);
    uint64_t seq;
    tg_err err = pu_log_reserve(p, 1 + n, limit_per_1024, &seq);
    if (err != TG_OK) {
        return err;
    }
    /* Version first, status second (a release store, so neither the
     * compiler nor the CPU puts it first): a writer killed between the two
     * leaves a version newer than the one logged, which recovery logs again
     * (recover.c).  Status first would leave a new status under the logged
     * version, which recovery cannot tell from a logged one. */
    __atomic_store_n(&b->version, b->version + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&b->status, (uint8_t)to, __ATOMIC_RELEASE);
    __atomic_store_n(&b->deadline_ms, deadline_ms, __ATOMIC_RELAXED);
    pu_log_booking(p, seq, b);
    uint32_t owner = to_state == TG_SEAT_FREE ? 0 : b->seq;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t seat = b->seats[i];
        tg_seat_word w = pu_seat_load(p, seat);
        TG_ASSERT(tg_seat_word_state(w) == from_state && tg_seat_word_booking(w) == b->seq);
        tg_seat_word next = tg_seat_word_next(w, to_state, owner);
        bool swapped = pu_seat_cas(p, seat, w, next);
        TG_ASSERT(swapped); /* the booking lock keeps everyone else off these seats */
        pu_count_move(p, seat, from_state, to_state);
        pu_log_seat(p, seq + 1 + i, seat, next);
    }
    if (to_state == TG_SEAT_FREE) {
        b->seat_count = 0;
    }
    __atomic_store_n(&b->log_seq, seq + n, __ATOMIC_RELAXED);
    return TG_OK;
}

tg_err pu_booking_expire_if_due(pu_partition *p, pu_booking_rec *b, int64_t now_ms)
{
    int64_t deadline = __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED);
    if (!pu_status_live(pu_booking_status(b)) || now_ms < deadline) {
        return TG_OK;
    }
    tg_err err = transition(p, b, TG_BOOKING_EXPIRED, deadline, TG_LOG_GIVER_PER_1024);
    return err != TG_OK ? err : TG_EEXPIRED;
}

static void info_fill(const pu_partition *p, const pu_booking_rec *b, pu_booking_info *out)
{
    *out = (pu_booking_info){
        .id = tg_booking_id_make(p->hdr->partition_id, b->seq),
        .user_id = b->user_id,
        .status = pu_booking_status(b),
        .version = b->version,
        .created_ms = b->created_ms,
        .deadline_ms = __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED),
        .seat_count = b->seat_count,
    };
    memcpy(out->seats, b->seats, sizeof(uint32_t) * b->seat_count);
}

/* May be called without the slot's lock (a peek), hence the atomic loads;
 * the answer is checked again under the lock before the slot is used. */
static bool slot_reusable(const pu_partition *p, const pu_booking_rec *b)
{
    tg_booking_status s = pu_booking_status(b);
    if (__atomic_load_n(&b->seq, __ATOMIC_RELAXED) == 0 || s == TG_BOOKING_EMPTY) {
        return true;
    }
    bool ended = s == TG_BOOKING_CANCELLED || s == TG_BOOKING_EXPIRED || s == TG_BOOKING_FAILED;
    return ended && __atomic_load_n(&b->log_seq, __ATOMIC_RELAXED) <=
                        __atomic_load_n(&p->hdr->log_persisted, __ATOMIC_ACQUIRE);
}

/* Fills a locked, reusable slot with a new booking and logs it. */
static tg_err slot_init(pu_partition *p, pu_booking_rec *b, uint32_t seq, uint64_t user_id,
                        int64_t now_ms)
{
    uint64_t log_seq;
    tg_err err = pu_log_reserve(p, 1, TG_LOG_HIGH_WATER_PER_1024, &log_seq);
    if (err != TG_OK) {
        return err;
    }
    /* EMPTY first: a writer killed while the slot holds half the old
     * booking and half the new one leaves a slot recovery ignores. */
    __atomic_store_n(&b->status, (uint8_t)TG_BOOKING_EMPTY, __ATOMIC_RELAXED);
    __atomic_store_n(&b->seq, seq, __ATOMIC_RELAXED);
    b->seat_count = 0;
    b->logged_version = 0; /* until its first record is out (recover.c) */
    b->version = 1;
    b->user_id = user_id;
    b->created_ms = now_ms;
    __atomic_store_n(&b->deadline_ms, now_ms + p->hdr->hold_ttl_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&b->status, (uint8_t)TG_BOOKING_CREATED, __ATOMIC_RELAXED);
    __atomic_store_n(&b->log_seq, log_seq, __ATOMIC_RELAXED);
    pu_log_booking(p, log_seq, b);
    __atomic_fetch_add(&p->hdr->bookings_created, 1, __ATOMIC_RELAXED);
    return TG_OK;
}

/* Claims the next seq whose slot is reusable, peeking at most
 * TG_BOOKING_PROBES_MAX slots ahead; 0 when none is.  Seqs are consumed only
 * by a claim that finds a slot, so a full table burns no ids; the slots it
 * skips over (paid bookings, live ones) cost one id each. */
static uint32_t seq_claim(pu_partition *p)
{
    pu_header *h = p->hdr;
    uint32_t cur = __atomic_load_n(&h->booking_next_seq, __ATOMIC_RELAXED);
    for (uint32_t attempt = 0; attempt < TG_BOOKING_PROBES_MAX; attempt++) {
        uint32_t k = 1;
        while (k <= TG_BOOKING_PROBES_MAX && cur <= UINT32_MAX - k &&
               !slot_reusable(p, pu_booking_slot(p, cur + k))) {
            k++;
        }
        if (k > TG_BOOKING_PROBES_MAX || cur > UINT32_MAX - k) {
            /* The slots ahead may only look taken because cur is stale:
             * while this thread was off its core, others claimed them. */
            uint32_t now = __atomic_load_n(&h->booking_next_seq, __ATOMIC_RELAXED);
            if (now == cur) {
                return 0;
            }
            cur = now;
            continue;
        }
        if (__atomic_compare_exchange_n(&h->booking_next_seq, &cur, cur + k, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            return cur + k;
        }
    }
    return 0;
}

tg_err pu_booking_create(pu_partition *p, uint64_t user_id, int64_t now_ms, pu_booking_info *out)
{
    if (user_id == PU_USER_SYSTEM) {
        return TG_EINVAL;
    }
    for (uint32_t attempt = 0; attempt < TG_BOOKING_PROBES_MAX; attempt++) {
        uint32_t seq = seq_claim(p);
        if (seq == 0) {
            return TG_EBOOKINGS_FULL;
        }
        pu_booking_rec *b = pu_booking_slot(p, seq);
        if (pu_booking_lock_raw(b) != TG_OK) {
            continue;
        }
        if (!slot_reusable(p, b)) { /* the peek raced with another claim */
            pu_booking_unlock(b);
            continue;
        }
        tg_err err = slot_init(p, b, seq, user_id, now_ms);
        if (err == TG_OK) {
            info_fill(p, b, out);
        }
        pu_booking_unlock(b);
        return err;
    }
    return TG_EBOOKINGS_FULL;
}

tg_err pu_booking_get(pu_partition *p, tg_booking_id id, uint64_t user_id, pu_booking_info *out)
{
    pu_booking_rec *b;
    tg_err err = pu_booking_lock(p, id, user_id, &b);
    if (err != TG_OK) {
        return err;
    }
    info_fill(p, b, out);
    pu_booking_unlock(b);
    return TG_OK;
}

tg_err pu_booking_cancel(pu_partition *p, tg_booking_id id, uint64_t user_id, int64_t now_ms)
{
    pu_booking_rec *b;
    tg_err err = pu_booking_lock(p, id, user_id, &b);
    if (err != TG_OK) {
        return err;
    }
    (void)now_ms; /* cancelling needs no clock: a due booking is cancelled all the same */
    if (pu_status_live(pu_booking_status(b))) {
        err = transition(p, b, TG_BOOKING_CANCELLED,
                         __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED), TG_LOG_GIVER_PER_1024);
    } else {
        err = TG_EBOOKING_STATE;
    }
    pu_booking_unlock(b);
    return err;
}

tg_err pu_booking_begin_payment(pu_partition *p, tg_booking_id id, uint64_t user_id,
                                int64_t now_ms, int64_t *deadline_ms)
{
    pu_booking_rec *b;
    tg_err err = pu_booking_lock(p, id, user_id, &b);
    if (err != TG_OK) {
        return err;
    }
    err = pu_booking_expire_if_due(p, b, now_ms);
    if (err == TG_OK && (pu_booking_status(b) != TG_BOOKING_CREATED || b->seat_count == 0)) {
        err = TG_EBOOKING_STATE;
    }
    if (err == TG_OK) {
        int64_t deadline = now_ms + p->hdr->payment_window_ms;
        err = transition(p, b, TG_BOOKING_PENDING_PAYMENT, deadline, TG_LOG_GIVER_PER_1024);
        if (err == TG_OK && deadline_ms != NULL) {
            *deadline_ms = deadline;
        }
    }
    pu_booking_unlock(b);
    return err;
}

static tg_err confirm_locked(pu_partition *p, pu_booking_rec *b, int64_t now_ms)
{
    switch (pu_booking_status(b)) {
    case TG_BOOKING_PAID:
        return TG_OK;
    case TG_BOOKING_EXPIRED:
        return TG_EEXPIRED;
    case TG_BOOKING_PENDING_PAYMENT: {
        tg_err err = pu_booking_expire_if_due(p, b, now_ms);
        if (err != TG_OK) {
            return err;
        }
        return transition(p, b, TG_BOOKING_PAID, __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED),
                          TG_LOG_GIVER_PER_1024);
    }
    default:
        return TG_EBOOKING_STATE;
    }
}

tg_err pu_booking_confirm(pu_partition *p, tg_booking_id id, int64_t now_ms)
{
    pu_booking_rec *b;
    tg_err err = pu_booking_lock(p, id, PU_USER_SYSTEM, &b);
    if (err != TG_OK) {
        return err;
    }
    err = confirm_locked(p, b, now_ms);
    pu_booking_unlock(b);
    return err;
}

tg_err pu_booking_fail(pu_partition *p, tg_booking_id id, int64_t now_ms)
{
    pu_booking_rec *b;
    tg_err err = pu_booking_lock(p, id, PU_USER_SYSTEM, &b);
    if (err != TG_OK) {
        return err;
    }
    (void)now_ms;
    tg_booking_status s = pu_booking_status(b);
    if (s == TG_BOOKING_FAILED) {
        err = TG_OK;
    } else if (pu_status_live(s)) {
        err = transition(p, b, TG_BOOKING_FAILED,
                         __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED), TG_LOG_GIVER_PER_1024);
    } else {
        err = TG_EBOOKING_STATE;
    }
    pu_booking_unlock(b);
    return err;
}

/* Expires the booking in slot if it is due; true if it did. */
static bool sweep_slot(pu_partition *p, pu_booking_rec *b, int64_t now_ms)
{
    /* Unlocked peek: cheap for the many slots that are not due. */
    if (!pu_status_live(pu_booking_status(b)) ||
        now_ms < __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED)) {
        return false;
    }
    uint32_t unlocked = 0;
    if (!__atomic_compare_exchange_n(&b->lock, &unlocked, 1, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        return false; /* busy: its holder is acting on it; next pass */
    }
    bool expired = pu_booking_expire_if_due(p, b, now_ms) == TG_EEXPIRED;
    pu_booking_unlock(b);
    return expired;
}

uint32_t pu_sweep(pu_partition *p, int64_t now_ms, uint32_t scan_max)
{
    pu_header *h = p->hdr;
    uint32_t issued = __atomic_load_n(&h->booking_next_seq, __ATOMIC_RELAXED);
    uint32_t used = issued < h->booking_capacity ? issued : h->booking_capacity;
    if (used == 0) {
        return 0;
    }
    uint32_t cursor = __atomic_load_n(&h->sweep_cursor, __ATOMIC_RELAXED);
    uint32_t scan = scan_max < used ? scan_max : used;
    uint32_t expired = 0;
    for (uint32_t i = 0; i < scan; i++) {
        uint32_t slot = cursor % used;
        cursor = slot + 1;
        expired += sweep_slot(p, &p->bookings[slot], now_ms) ? 1 : 0;
    }
    __atomic_store_n(&h->sweep_cursor, cursor % used, __ATOMIC_RELAXED);
    return expired;
}

/*
 * Reset (tests and demos: the gateway's POST /api/reset).  One pass over the
 * booking table cancels every booking that is created, pending_payment or
 * paid, through the same transition as pu_booking_cancel: under the
 * booking's lock, booking record first, then one CAS and one seat record per
 * seat, counters moved seat by seat.  Paid bookings are cancelled too — a
 * reset wipes test sales, it is not a refund.  Freeing every held or sold
 * seat this way needs no pass over the seat words: each such seat belongs
 * to a live or paid booking (pu_partition_check), and the pass reaches them
 * all.  BLOCKED seats belong to no booking and stay blocked.
 *
 * Not atomic across the partition, on purpose: other threads keep selling
 * while the pass runs.  Only bookings whose seq was handed out before the
 * pass began are cancelled (one still being written into its slot at that
 * instant may be missed, as if made just after); a booking made after that,
 * and the seats it takes, are left alone, even when a seat it takes was
 * freed by this reset a moment earlier.  A booking made before the pass may
 * still change until its slot is reached; it is then cancelled as it stands.
 *
 * Rejected: CASing held and sold seats to FREE straight from the seat words.
 * The owning booking would stay live with a seat list naming seats that are
 * no longer its own, and the log would show seats released while their
 * booking went on — PostgreSQL and replicas would disagree with the grid.
 *
 * Bounds: at most booking_capacity slots, each cancelled with at most
 * 1 + TG_BOOKING_SEATS_MAX log records.  The reset reserves its records only
 * below the high-water mark, like a taker: a bulk reset must not eat the part
 * of the ring kept for releases, payments and expiries.  When the ring is
 * there it stops with TG_EBACKLOG, having changed nothing about the booking it
 * stopped at; calling again once the persister has drained finishes the job.
 */

static bool reset_wanted(tg_booking_status s)
{
    return pu_status_live(s) || s == TG_BOOKING_PAID;
}

/* Cancels the booking in `slot` if it is live or paid and its seq is at most
 * last_seq; adds what it did to *out. */
static tg_err reset_slot(pu_partition *p, const pu_booking_rec *slot, uint32_t last_seq,
                         pu_reset_result *out)
{
    /* Unlocked peek, checked again under the lock: most slots need nothing. */
    uint32_t seq = __atomic_load_n(&slot->seq, __ATOMIC_RELAXED);
    if (seq == 0 || seq > last_seq || !reset_wanted(pu_booking_status(slot))) {
        return TG_OK;
    }
    pu_booking_rec *b;
    tg_err err =
        pu_booking_lock(p, tg_booking_id_make(p->hdr->partition_id, seq), PU_USER_SYSTEM, &b);
    if (err == TG_ENOT_FOUND) {
        return TG_OK; /* the slot was reused since the peek: its booking had ended */
    }
    if (err != TG_OK) {
        return err;
    }
    uint32_t seats = b->seat_count;
    if (reset_wanted(pu_booking_status(b))) {
        err = transition(p, b, TG_BOOKING_CANCELLED,
                         __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED),
                         TG_LOG_HIGH_WATER_PER_1024);
        if (err == TG_OK) {
            out->bookings_cancelled++;
            out->seats_freed += seats;
        }
    }
    pu_booking_unlock(b);
    return err;
}

tg_err pu_partition_reset(pu_partition *p, int64_t now_ms, pu_reset_result *out)
{
    TG_ASSERT(p != NULL && out != NULL);
    (void)now_ms; /* like pu_booking_cancel: a due booking is cancelled all the same */
    *out = (pu_reset_result){0, 0};
    uint32_t capacity = p->hdr->booking_capacity;
    uint32_t last_seq = __atomic_load_n(&p->hdr->booking_next_seq, __ATOMIC_RELAXED);
    uint32_t used = last_seq < capacity ? last_seq : capacity;
    for (uint32_t slot = 0; slot < used; slot++) {
        tg_err err = reset_slot(p, &p->bookings[slot], last_seq, out);
        if (err != TG_OK) {
            return err;
        }
    }
    return TG_OK;
}

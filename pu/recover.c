/*
 * recover.c — repairing a segment after its writer died, and checking every
 * invariant of a quiescent partition.
 *
 * What a writer killed mid-operation can leave behind, and the repair:
 *   - a booking lock held forever            → cleared;
 *   - a reserved log slot never published    → a no-op record, so readers
 *                                               are not stuck at a hole;
 *   - a status changed, its record unwritten → the booking logged again;
 *   - a status changed but not all its seats → seats moved to the state the
 *                                               status implies (status first
 *                                               is the rule: booking.c);
 *   - seats CASed but the seat list not yet updated, or a hold CASed but its
 *     log records not yet written          → lists rebuilt from the seat
 *                                               words; any seat whose word is
 *                                               newer than its last logged
 *                                               version is logged again;
 *   - counters moved for some seats only     → recounted from the words.
 * A seat that names a booking whose slot holds another booking cannot arise
 * from a crash; it is freed (and logged) with a warning rather than trusted.
 *
 * Recovery needs ring space for what it logs; with a full ring it fails with
 * TG_ELOG_FULL and may be run again once the persister has drained.
 */
#include "segment.h"

#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#include <stdlib.h>
#include <string.h>

static void clear_locks_and_lists(pu_partition *p)
{
    for (uint32_t i = 0; i < p->hdr->booking_capacity; i++) {
        pu_booking_rec *b = &p->bookings[i];
        __atomic_store_n(&b->lock, 0, __ATOMIC_RELAXED);
        if (b->seq != 0) {
            b->seat_count = 0;
        }
    }
}

static void fill_log_holes(pu_partition *p)
{
    uint64_t head = p->hdr->log_head;
    uint32_t mask = p->hdr->log_records - 1;
    for (uint64_t seq = p->hdr->log_persisted + 1; seq <= head; seq++) {
        if (__atomic_load_n(&p->log[(seq - 1) & mask].seq, __ATOMIC_ACQUIRE) != seq) {
            pu_log_publish(p, &(pu_log_record){.seq = seq, .kind = PU_REC_NOP});
        }
    }
}

/* The booking a held or sold seat names, or NULL if its slot disagrees. */
static pu_booking_rec *seat_owner(const pu_partition *p, tg_seat_word w)
{
    uint32_t seq = tg_seat_word_booking(w);
    if (seq == 0) {
        return NULL;
    }
    pu_booking_rec *b = pu_booking_slot(p, seq);
    return (b->seq == seq && pu_booking_status(b) != TG_BOOKING_EMPTY) ? b : NULL;
}

static tg_err log_seat_now(pu_partition *p, uint32_t seat, tg_seat_word w, pu_booking_rec *b)
{
    uint64_t seq;
    tg_err err = pu_log_reserve(p, 1, 1024, &seq);
    if (err != TG_OK) {
        return err;
    }
    pu_log_seat(p, seq, seat, w);
    if (b != NULL) {
        __atomic_store_n(&b->log_seq, seq, __ATOMIC_RELAXED);
    }
    return TG_OK;
}

/* Moves one held or sold seat to the state its booking implies. */
static tg_err repair_seat(pu_partition *p, uint32_t seat, tg_seat_word w)
{
    pu_booking_rec *b = seat_owner(p, w);
    tg_seat_state target = b != NULL ? pu_status_seat_state(pu_booking_status(b)) : TG_SEAT_FREE;
    if (b == NULL) {
        tg_log_warn("recovery: seat %u names booking %u, which is not in its slot; freeing it",
                    seat, tg_seat_word_booking(w));
    }
    if (target != tg_seat_word_state(w)) {
        w = tg_seat_word_next(w, target, target == TG_SEAT_FREE ? 0 : b->seq);
        __atomic_store_n(&p->seats[seat], w, __ATOMIC_RELEASE);
    }
    if (target != TG_SEAT_FREE) {
        if (b->seat_count >= TG_BOOKING_SEATS_MAX) {
            tg_log_error("recovery: booking %u holds more than %u seats", b->seq,
                         TG_BOOKING_SEATS_MAX);
            return TG_ECORRUPT;
        }
        b->seats[b->seat_count++] = seat; /* seats are visited ascending */
    }
    if (tg_seat_word_version(w) != p->logged[seat]) {
        return log_seat_now(p, seat, w, target == TG_SEAT_FREE ? NULL : b);
    }
    return TG_OK;
}

static tg_err repair_seats(pu_partition *p)
{
    for (uint32_t seat = 0; seat < p->hdr->seat_count; seat++) {
        tg_seat_word w = pu_seat_load(p, seat);
        tg_seat_state st = tg_seat_word_state(w);
        if (st >= TG_SEAT_STATE_COUNT) {
            tg_log_error("recovery: seat %u has invalid state %d", seat, (int)st);
            return TG_ECORRUPT;
        }
        tg_err err = TG_OK;
        if (st == TG_SEAT_SELECTED || st == TG_SEAT_RESERVED || st == TG_SEAT_SOLD) {
            err = repair_seat(p, seat, w);
        } else if (tg_seat_word_version(w) != p->logged[seat]) {
            err = log_seat_now(p, seat, w, NULL);
        }
        if (err != TG_OK) {
            return err;
        }
    }
    return TG_OK;
}

/* Logs every booking whose last status change never reached the log (the
 * writer died between the status store and the record). */
static tg_err relog_bookings(pu_partition *p)
{
    for (uint32_t i = 0; i < p->hdr->booking_capacity; i++) {
        pu_booking_rec *b = &p->bookings[i];
        if (b->seq == 0 || pu_booking_status(b) == TG_BOOKING_EMPTY ||
            b->logged_version == b->version) {
            continue;
        }
        uint64_t seq;
        tg_err err = pu_log_reserve(p, 1, 1024, &seq);
        if (err != TG_OK) {
            return err;
        }
        pu_log_booking(p, seq, b);
        b->log_seq = seq;
    }
    return TG_OK;
}

static void counters_rebuild(pu_partition *p)
{
    uint32_t n = p->hdr->row_count;
    uint32_t(*rows)[TG_SEAT_STATE_COUNT] = calloc(n, sizeof(*rows));
    TG_ASSERT(rows != NULL);
    pu_partition_recount(p, NULL, NULL, rows);
    for (uint32_t r = 0; r < n; r++) {
        for (int s = 0; s < TG_SEAT_STATE_COUNT; s++) {
            __atomic_store_n(&p->rows[r].counts[s], rows[r][s], __ATOMIC_RELAXED);
        }
    }
    free(rows);
}

/* A seat joins the list of the booking its word names, when the booking's
 * slot holds that booking; seats are visited ascending, so lists are too. */
static void relist_seats(pu_partition *p)
{
    for (uint32_t seat = 0; seat < p->hdr->seat_count; seat++) {
        tg_seat_word w = pu_seat_load(p, seat);
        tg_seat_state st = tg_seat_word_state(w);
        bool held = st == TG_SEAT_SELECTED || st == TG_SEAT_RESERVED || st == TG_SEAT_SOLD;
        pu_booking_rec *b = held ? seat_owner(p, w) : NULL;
        if (b != NULL && b->seat_count < TG_BOOKING_SEATS_MAX) {
            b->seats[b->seat_count++] = seat;
        }
    }
}

void pu_partition_relist(pu_partition *p)
{
    clear_locks_and_lists(p);
    relist_seats(p);
    counters_rebuild(p);
}

/* A replica is a prefix of its primary's log, applied in order: what a
 * crash of the applier can leave is one record half applied, past
 * last_applied_seq.  Its slot and anything after it are forgotten (the
 * primary sends them again), and lists and counters are rebuilt from the
 * words; nothing is logged, or the copy's log would stop being the
 * primary's.  The half-applied record is applied again idempotently
 * (replica.c). */
static tg_err recover_replica(pu_partition *p)
{
    uint64_t applied = __atomic_load_n(&p->hdr->last_applied_seq, __ATOMIC_ACQUIRE);
    uint64_t persisted = __atomic_load_n(&p->hdr->log_persisted, __ATOMIC_ACQUIRE);
    __atomic_store_n(&p->hdr->log_head, applied, __ATOMIC_RELEASE);
    if (persisted > applied) {
        __atomic_store_n(&p->hdr->log_persisted, applied, __ATOMIC_RELEASE);
    }
    pu_partition_relist(p);
    return TG_OK;
}

tg_err pu_partition_recover(pu_partition *p)
{
    if (__atomic_load_n(&p->hdr->replica, __ATOMIC_ACQUIRE) != 0) {
        return recover_replica(p);
    }
    clear_locks_and_lists(p);
    fill_log_holes(p);
    tg_err err = relog_bookings(p);
    if (err == TG_OK) {
        err = repair_seats(p);
    }
    counters_rebuild(p);
    if (err != TG_OK) {
        tg_log_error("recovery of partition %u failed: %s", p->hdr->partition_id,
                     tg_strerror(err));
    }
    return err;
}

/* ---- Invariant check --------------------------------------------------- */

static tg_err violation(const char *what, uint64_t a, uint64_t b)
{
    tg_log_error("partition check: %s (%llu, %llu)", what, (unsigned long long)a,
                 (unsigned long long)b);
    return TG_ECORRUPT;
}

static tg_err check_counts(const pu_partition *p)
{
    uint32_t n = p->hdr->row_count;
    uint32_t(*kept)[TG_SEAT_STATE_COUNT] = calloc(n, sizeof(*kept));
    uint32_t(*real)[TG_SEAT_STATE_COUNT] = calloc(n, sizeof(*real));
    TG_ASSERT(kept != NULL && real != NULL);
    pu_partition_counts(p, NULL, NULL, kept);
    pu_partition_recount(p, NULL, NULL, real);
    tg_err err = TG_OK;
    for (uint32_t r = 0; r < n && err == TG_OK; r++) {
        if (memcmp(kept[r], real[r], sizeof(real[r])) != 0) {
            err = violation("row counters differ from a recount (row, seats)", r,
                            p->rows[r].seat_count);
        }
    }
    free(kept);
    free(real);
    return err;
}

static tg_err check_booking(const pu_partition *p, const pu_booking_rec *b, uint64_t *listed)
{
    if (__atomic_load_n(&b->lock, __ATOMIC_RELAXED) != 0) {
        return violation("booking lock held at rest (booking)", b->seq, 0);
    }
    tg_seat_state implied = pu_status_seat_state(pu_booking_status(b));
    if (b->seat_count > TG_BOOKING_SEATS_MAX || (implied == TG_SEAT_FREE && b->seat_count != 0)) {
        return violation("booking seat count (booking, count)", b->seq, b->seat_count);
    }
    for (uint32_t i = 0; i < b->seat_count; i++) {
        uint32_t seat = b->seats[i];
        if (seat >= p->hdr->seat_count || (i > 0 && b->seats[i - 1] >= seat)) {
            return violation("booking seat list not ascending in range (booking, seat)", b->seq,
                             seat);
        }
        tg_seat_word w = pu_seat_load(p, seat);
        if (tg_seat_word_state(w) != implied || tg_seat_word_booking(w) != b->seq) {
            return violation("listed seat not in the booking's state (booking, seat)", b->seq,
                             seat);
        }
    }
    *listed += b->seat_count;
    return TG_OK;
}

static tg_err check_bookings(const pu_partition *p, uint64_t *listed)
{
    for (uint32_t i = 0; i < p->hdr->booking_capacity; i++) {
        const pu_booking_rec *b = &p->bookings[i];
        if (b->seq == 0) {
            continue;
        }
        if (pu_booking_slot(p, b->seq) != b) {
            return violation("booking in the wrong slot (seq, slot)", b->seq, i);
        }
        tg_err err = check_booking(p, b, listed);
        if (err != TG_OK) {
            return err;
        }
    }
    return TG_OK;
}

/* Every owned seat names a booking whose list has it; with the per-booking
 * check this makes lists and words agree both ways. */
static tg_err check_seats(const pu_partition *p, uint64_t listed)
{
    uint64_t owned = 0;
    for (uint32_t seat = 0; seat < p->hdr->seat_count; seat++) {
        tg_seat_word w = pu_seat_load(p, seat);
        tg_seat_state st = tg_seat_word_state(w);
        if (st >= TG_SEAT_STATE_COUNT) {
            return violation("invalid seat state (seat, state)", seat, st);
        }
        bool held = st == TG_SEAT_SELECTED || st == TG_SEAT_RESERVED || st == TG_SEAT_SOLD;
        if (!held && tg_seat_word_booking(w) != 0) {
            return violation("free or blocked seat names a booking (seat, booking)", seat,
                             tg_seat_word_booking(w));
        }
        if (held && seat_owner(p, w) == NULL) {
            return violation("held seat names no booking (seat, booking)", seat,
                             tg_seat_word_booking(w));
        }
        owned += held ? 1 : 0;
    }
    if (owned != listed) {
        return violation("held seats differ from seats listed by bookings", owned, listed);
    }
    return TG_OK;
}

static tg_err check_log(const pu_partition *p)
{
    uint64_t head = __atomic_load_n(&p->hdr->log_head, __ATOMIC_ACQUIRE);
    uint64_t persisted = __atomic_load_n(&p->hdr->log_persisted, __ATOMIC_ACQUIRE);
    if (persisted > head || head - persisted > p->hdr->log_records) {
        return violation("log cursors (head, persisted)", head, persisted);
    }
    uint32_t mask = p->hdr->log_records - 1;
    for (uint64_t seq = persisted + 1; seq <= head; seq++) {
        const pu_log_record *r = &p->log[(seq - 1) & mask];
        if (__atomic_load_n(&r->seq, __ATOMIC_ACQUIRE) != seq || r->kind > PU_REC_BOOKING) {
            return violation("log record missing or malformed (seq, found)", seq, r->seq);
        }
    }
    return TG_OK;
}

tg_err pu_partition_check(const pu_partition *p)
{
    uint64_t listed = 0;
    tg_err err = check_counts(p);
    if (err == TG_OK) {
        err = check_bookings(p, &listed);
    }
    if (err == TG_OK) {
        err = check_seats(p, listed);
    }
    if (err == TG_OK) {
        err = check_log(p);
    }
    return err;
}

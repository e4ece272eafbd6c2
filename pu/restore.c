/*
 * restore.c — rebuilding a partition from what PostgreSQL persisted.
 *
 * Used when the grid starts cold, when a partition lost every replica, and
 * when an event is published.  The partition was created for it (marked
 * restoring in its header until the end, so that a unit restarted half-way
 * drops it instead of serving it) and is not served meanwhile, so plain
 * stores are enough here; a restore may start over (begin wipes); the usual invariants are
 * re-established at the end by the same repair pass recovery uses (seats to
 * the state their booking implies, lists and counters rebuilt), followed by
 * the full invariant check.
 *
 * Sequence numbers continue from the last persisted one (log_base): the
 * persister's offset for the partition stays valid, and a record the new
 * incarnation writes can never be mistaken for one it already persisted.
 */
#include "segment.h"

#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#include <string.h>

/* Puts every mutable region back as pu_partition_create left it, so a
 * restore that failed half-way can start over.  Stale log slots must go too:
 * the new incarnation reuses their sequence numbers. */
void pu_partition_wipe(pu_partition *p)
{
    pu_header *h = p->hdr;
    memset(p->seats, 0, sizeof(tg_seat_word) * h->seat_count);
    memset(p->logged, 0, sizeof(uint32_t) * h->seat_count);
    memset(p->bookings, 0, sizeof(pu_booking_rec) * h->booking_capacity);
    memset(p->log, 0, sizeof(pu_log_record) * h->log_records);
    for (uint32_t r = 0; r < h->row_count; r++) {
        memset(p->rows[r].counts, 0, sizeof(p->rows[r].counts));
        p->rows[r].counts[TG_SEAT_FREE] = p->rows[r].seat_count;
    }
    /* Atomic like every other access to them: describe (metrics, status, a
     * partition_create retried) reads them without the apply lock. */
    __atomic_store_n(&h->booking_next_seq, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&h->sweep_cursor, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&h->bookings_created, 0, __ATOMIC_RELAXED);
}

tg_err pu_restore_begin(pu_partition *p, uint64_t epoch, uint64_t log_base)
{
    if (__atomic_load_n(&p->hdr->restoring, __ATOMIC_ACQUIRE) == 0) {
        return TG_EPARTITION_STATE;
    }
    pu_partition_wipe(p);
    __atomic_store_n(&p->hdr->map_epoch, epoch, __ATOMIC_RELEASE);
    __atomic_store_n(&p->hdr->log_head, log_base, __ATOMIC_RELEASE);
    __atomic_store_n(&p->hdr->log_persisted, log_base, __ATOMIC_RELEASE);
    return TG_OK;
}

tg_err pu_restore_seat(pu_partition *p, uint32_t seat_id, tg_seat_word word)
{
    if (seat_id >= p->hdr->seat_count) {
        return TG_ESEAT_RANGE;
    }
    tg_seat_state st = tg_seat_word_state(word);
    bool owned = st == TG_SEAT_SELECTED || st == TG_SEAT_RESERVED || st == TG_SEAT_SOLD;
    if (st >= TG_SEAT_STATE_COUNT || owned != (tg_seat_word_booking(word) != 0)) {
        return TG_EINVAL;
    }
    __atomic_store_n(&p->seats[seat_id], word, __ATOMIC_RELEASE);
    __atomic_store_n(&p->logged[seat_id], tg_seat_word_version(word), __ATOMIC_RELEASE);
    return TG_OK;
}

/* Live and paid bookings own seats (and paid ones their slot, for ever). */
static bool slot_holds_seats_status(tg_booking_status s)
{
    return pu_status_seat_state(s) != TG_SEAT_FREE;
}

static bool slot_holds_seats(const pu_booking_rec *rec)
{
    return slot_holds_seats_status(pu_booking_status(rec));
}

tg_err pu_restore_booking(pu_partition *p, const pu_booking_info *b)
{
    if (tg_booking_id_partition(b->id) != p->hdr->partition_id) {
        return TG_EWRONG_PARTITION;
    }
    uint32_t seq = tg_booking_id_seq(b->id);
    if (seq == 0 || b->status == TG_BOOKING_EMPTY || b->status >= TG_BOOKING_STATUS_COUNT ||
        b->user_id == PU_USER_SYSTEM) {
        return TG_EINVAL;
    }
    /* Whatever happens to the slot, later bookings must get later seqs. */
    if (seq > __atomic_load_n(&p->hdr->booking_next_seq, __ATOMIC_RELAXED)) {
        __atomic_store_n(&p->hdr->booking_next_seq, seq, __ATOMIC_RELAXED);
    }
    pu_booking_rec *rec = pu_booking_slot(p, seq);
    if (rec->seq != 0 && rec->seq != seq) {
        bool slot_kept = slot_holds_seats(rec);
        if (!slot_holds_seats_status(b->status)) {
            return TG_OK; /* an ended booking is history: PostgreSQL keeps it */
        }
        if (slot_kept) {
            return TG_EBOOKINGS_FULL; /* two live or paid bookings for one slot */
        }
    }
    memset(rec, 0, sizeof(*rec));
    rec->seq = seq;
    rec->status = (uint8_t)b->status;
    rec->version = b->version;
    rec->logged_version = b->version; /* persisted already: nothing to log */
    rec->user_id = b->user_id;
    rec->created_ms = b->created_ms;
    rec->deadline_ms = b->deadline_ms;
    rec->log_seq = p->hdr->log_head;
    return TG_OK;
}

/* pu_partition_recover's passes are exactly what is needed: it moves seats
 * whose booking is missing or ended to FREE (logging those), rebuilds lists
 * and counters.  No lock or hole exists to clear in a fresh segment. */
tg_err pu_restore_end(pu_partition *p)
{
    tg_err err = pu_partition_recover(p);
    if (err == TG_OK) {
        err = pu_partition_check(p);
    }
    if (err == TG_OK) {
        __atomic_store_n(&p->hdr->restoring, 0, __ATOMIC_RELEASE);
    } else {
        tg_log_error("restore of partition %u failed: %s", p->hdr->partition_id,
                     tg_strerror(err));
    }
    return err;
}

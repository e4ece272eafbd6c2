/*
 * replica.c — a backup's copy of a partition: filled by a state transfer,
 * then kept up by applying its primary's change records in sequence order
 * (partition.h, "Replica").
 *
 * The copy's log is the primary's log: each applied record is published in
 * the copy's ring at its own sequence number, log_head follows the last
 * record applied, and log_persisted follows the primary's persisted mark.
 * A promoted backup therefore serves the same sequence numbers the
 * persister already tracks, and keeps every record the persister has not
 * drained yet.
 *
 * Why versions gate every change.  A state transfer reads the primary's
 * seats and bookings while buyers keep changing them, so the snapshot may
 * already hold changes whose records come after its base sequence.  Seat
 * records carry the seat word's version and booking records the booking's
 * version: a record that is not newer than what the copy holds changes
 * nothing, so replaying the tail after a fuzzy snapshot (or a record sent
 * twice after a timeout) can only move objects forward, and the copy equals
 * the primary once it has applied the primary's head.  Rejected: stopping
 * the primary's writers for a consistent snapshot (sales would pause for
 * the whole copy).
 *
 * Order of one record's effects: the object first, then the record in the
 * ring, then log_head, then last_applied_seq (release).  A crash in between
 * leaves last_applied_seq behind; recovery (recover.c) cuts the ring back to
 * it and rebuilds lists and counters, and the record, sent again, is
 * skipped as an object (not newer) but published again.
 *
 * Threads: one applier per replica at a time (the server holds the
 * partition's apply lock); readers (seat_get, booking_get, availability)
 * may read meanwhile: seat words are stored atomically, and booking fields
 * under the booking's lock.
 */
#include "segment.h"

#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#include <string.h>

tg_err pu_replica_begin(pu_partition *p, uint64_t epoch, uint64_t base_seq)
{
    pu_header *h = p->hdr;
    bool replica = __atomic_load_n(&h->replica, __ATOMIC_ACQUIRE) != 0;
    if (!replica && __atomic_load_n(&h->restoring, __ATOMIC_ACQUIRE) == 0) {
        return TG_EPARTITION_STATE;
    }
    if (epoch < __atomic_load_n(&h->map_epoch, __ATOMIC_ACQUIRE)) {
        return TG_ESTALE_EPOCH;
    }
    __atomic_store_n(&h->restoring, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&h->replica, 1, __ATOMIC_RELEASE);
    pu_partition_wipe(p);
    __atomic_store_n(&h->map_epoch, epoch, __ATOMIC_RELEASE);
    __atomic_store_n(&h->log_head, base_seq, __ATOMIC_RELEASE);
    __atomic_store_n(&h->log_persisted, base_seq, __ATOMIC_RELEASE);
    __atomic_store_n(&h->last_applied_seq, base_seq, __ATOMIC_RELEASE);
    return TG_OK;
}

tg_err pu_replica_end(pu_partition *p)
{
    pu_header *h = p->hdr;
    if (__atomic_load_n(&h->replica, __ATOMIC_ACQUIRE) == 0 ||
        __atomic_load_n(&h->restoring, __ATOMIC_ACQUIRE) == 0) {
        return TG_EPARTITION_STATE;
    }
    pu_partition_relist(p);
    __atomic_store_n(&h->restoring, 0, __ATOMIC_RELEASE);
    return TG_OK;
}

/* ---- Applying one record -------------------------------------------------- */

/* The booking a held seat's word names, if its slot holds that booking. */
static pu_booking_rec *word_owner(const pu_partition *p, tg_seat_word w)
{
    tg_seat_state st = tg_seat_word_state(w);
    uint32_t seq = tg_seat_word_booking(w);
    if (seq == 0 || !(st == TG_SEAT_SELECTED || st == TG_SEAT_RESERVED || st == TG_SEAT_SOLD)) {
        return NULL;
    }
    pu_booking_rec *b = pu_booking_slot(p, seq);
    return b->seq == seq ? b : NULL;
}

static void list_remove_seat(pu_booking_rec *b, uint32_t seat)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < b->seat_count; i++) {
        if (b->seats[i] != seat) {
            b->seats[k++] = b->seats[i];
        }
    }
    b->seat_count = (uint8_t)k;
}

/* Inserts seat in ascending order, once; a full list stays as it is (the
 * primary never lists more than TG_BOOKING_SEATS_MAX). */
static void list_add_seat(pu_booking_rec *b, uint32_t seat)
{
    uint32_t n = b->seat_count, at = n;
    for (uint32_t i = 0; i < n; i++) {
        if (b->seats[i] == seat) {
            return;
        }
        if (b->seats[i] > seat && at == n) {
            at = i;
        }
    }
    if (n >= TG_BOOKING_SEATS_MAX) {
        return;
    }
    memmove(&b->seats[at + 1], &b->seats[at], sizeof(b->seats[0]) * (n - at));
    b->seats[at] = seat;
    b->seat_count = (uint8_t)(n + 1);
}

/* Changes a seat's owner list under the owner's lock (readers take it). */
static void owner_update(pu_booking_rec *b, uint32_t seat, bool add)
{
    if (b == NULL) {
        return;
    }
    bool locked = pu_booking_lock_raw(b) == TG_OK;
    if (add) {
        list_add_seat(b, seat);
    } else {
        list_remove_seat(b, seat);
    }
    if (locked) {
        pu_booking_unlock(b);
    }
}

static void apply_seat(pu_partition *p, const pu_log_record *r)
{
    uint32_t seat = r->ident;
    tg_seat_word before = pu_seat_load(p, seat), after = r->word;
    if (!tg_seat_version_newer(tg_seat_word_version(after), tg_seat_word_version(before))) {
        return; /* the copy has this change, or a later one, already */
    }
    pu_booking_rec *was = word_owner(p, before), *now = word_owner(p, after);
    __atomic_store_n(&p->seats[seat], after, __ATOMIC_RELEASE);
    __atomic_store_n(&p->logged[seat], tg_seat_word_version(after), __ATOMIC_RELEASE);
    if (tg_seat_word_state(before) != tg_seat_word_state(after)) {
        pu_count_move(p, seat, tg_seat_word_state(before), tg_seat_word_state(after));
    }
    if (was != now) {
        owner_update(was, seat, false);
    }
    owner_update(now, seat, true);
}

/* True when the record describes the slot's booking at least as new as the
 * slot holds it, or a later booking than the slot's. */
static bool booking_record_newer(const pu_booking_rec *b, const pu_log_record *r)
{
    if (b->seq != r->ident) {
        return b->seq < r->ident;
    }
    return r->version >= b->version;
}

static void booking_take_slot(pu_partition *p, pu_booking_rec *b, uint32_t seq)
{
    memset(&b->seq, 0, sizeof(*b) - offsetof(pu_booking_rec, seq));
    b->seq = seq;
    if (seq > __atomic_load_n(&p->hdr->booking_next_seq, __ATOMIC_RELAXED)) {
        __atomic_store_n(&p->hdr->booking_next_seq, seq, __ATOMIC_RELEASE);
    }
    __atomic_fetch_add(&p->hdr->bookings_created, 1, __ATOMIC_RELAXED);
}

static void apply_booking(pu_partition *p, const pu_log_record *r)
{
    pu_booking_rec *b = pu_booking_slot(p, r->ident);
    bool locked = pu_booking_lock_raw(b) == TG_OK;
    if (booking_record_newer(b, r)) {
        if (b->seq != r->ident) {
            booking_take_slot(p, b, r->ident);
        }
        __atomic_store_n(&b->status, r->status, __ATOMIC_RELAXED);
        b->user_id = r->word;
        b->created_ms = r->created_ms;
        __atomic_store_n(&b->deadline_ms, r->deadline_ms, __ATOMIC_RELAXED);
        b->version = r->version;
        b->logged_version = r->version;
        b->log_seq = r->seq;
    }
    if (locked) {
        pu_booking_unlock(b);
    }
}

/* Applies one record at applied + 1 and publishes it in the copy's ring. */
static void apply_one(pu_partition *p, const pu_log_record *r)
{
    if (r->kind == PU_REC_SEAT) {
        apply_seat(p, r);
    } else if (r->kind == PU_REC_BOOKING) {
        apply_booking(p, r);
    }
    pu_log_record copy = *r;
    copy.reserved = 0;
    copy.reserved2 = 0;
    pu_log_publish(p, &copy);
    __atomic_store_n(&p->hdr->log_head, r->seq, __ATOMIC_RELEASE);
    __atomic_store_n(&p->hdr->last_applied_seq, r->seq, __ATOMIC_RELEASE);
}

/* ---- A batch ---------------------------------------------------------------- */

static tg_err batch_check(const pu_partition *p, const pu_log_record *records, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const pu_log_record *r = &records[i];
        if (r->seq != records[0].seq + i || r->seq == 0 || r->kind > PU_REC_BOOKING) {
            return TG_EINVAL;
        }
        if (r->kind == PU_REC_SEAT && (r->ident >= p->hdr->seat_count ||
                                       tg_seat_word_state(r->word) >= TG_SEAT_STATE_COUNT)) {
            return TG_EINVAL;
        }
        if (r->kind == PU_REC_BOOKING && (r->ident == 0 || r->status == TG_BOOKING_EMPTY ||
                                          r->status >= TG_BOOKING_STATUS_COUNT)) {
            return TG_EINVAL;
        }
    }
    return TG_OK;
}

/* The ring must keep every record the primary has not persisted. */
static tg_err ring_room(const pu_partition *p, uint64_t last_seq)
{
    uint64_t persisted = __atomic_load_n(&p->hdr->log_persisted, __ATOMIC_ACQUIRE);
    return last_seq - persisted <= p->hdr->log_records ? TG_OK : TG_ELOG_FULL;
}

static void trim_to(pu_partition *p, uint64_t persisted)
{
    uint64_t applied = __atomic_load_n(&p->hdr->last_applied_seq, __ATOMIC_ACQUIRE);
    uint64_t mark = persisted < applied ? persisted : applied;
    if (mark > __atomic_load_n(&p->hdr->log_persisted, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&p->hdr->log_persisted, mark, __ATOMIC_RELEASE);
    }
}

/* The epoch is checked first: a backup promoted to primary answers its old
 * primary stale_epoch, not partition_state, so that the old one knows it is
 * deposed (repl.c) instead of trying to fill it. */
static tg_err replica_state(pu_partition *p, uint64_t epoch)
{
    pu_header *h = p->hdr;
    if (epoch < __atomic_load_n(&h->map_epoch, __ATOMIC_ACQUIRE)) {
        return TG_ESTALE_EPOCH;
    }
    if (__atomic_load_n(&h->replica, __ATOMIC_ACQUIRE) == 0 ||
        __atomic_load_n(&h->restoring, __ATOMIC_ACQUIRE) != 0) {
        return TG_EPARTITION_STATE;
    }
    return TG_OK;
}

tg_err pu_replica_apply(pu_partition *p, uint64_t epoch, const pu_log_record *records, uint32_t n,
                        uint64_t persisted, uint64_t *applied)
{
    tg_err err = replica_state(p, epoch);
    if (err == TG_OK) {
        err = batch_check(p, records, n);
    }
    if (err != TG_OK) {
        return err;
    }
    (void)pu_partition_raise_epoch(p, epoch);
    uint64_t done = __atomic_load_n(&p->hdr->last_applied_seq, __ATOMIC_ACQUIRE);
    trim_to(p, persisted); /* before applying: frees room the batch may need */
    for (uint32_t i = 0; i < n; i++) {
        const pu_log_record *r = &records[i];
        if (r->seq <= done) {
            continue; /* sent twice */
        }
        if (r->seq != done + 1) {
            break; /* a gap: the sender resends from done + 1 */
        }
        err = ring_room(p, r->seq);
        if (err != TG_OK) {
            break;
        }
        apply_one(p, r);
        done = r->seq;
    }
    trim_to(p, persisted);
    *applied = done;
    return err;
}

/*
 * changelog.c — the change log: a ring of records that replication and the
 * persister read.
 *
 * Writers reserve sequence numbers with one CAS on log_head, checking that
 * the ring has room: the records not yet persisted (head - persisted) may
 * never exceed the ring, so a writer can never overwrite a record nobody has
 * persisted.  A writer fills its record and publishes it by storing the
 * record's seq last, with release order; a reader that sees the expected seq
 * (acquire) sees the whole record.  Records are therefore readable in order
 * up to the first slot still being written.
 *
 * Order per seat.  Two records about one seat must appear in the order the
 * seat word changed, or a replica applying them in sequence order would end
 * in the wrong state.  The engine guarantees it with one rule: an operation
 * that gives a seat up (to FREE) reserves its sequence number before its
 * CAS, and an operation that takes a FREE seat reserves after its CAS.  Any
 * taker of a seat therefore reserves after the giver did.  Changes between a
 * booking's own states happen under that booking's lock, where nobody else
 * can touch its seats.
 *
 * High-water mark.  Takers (new holds, new bookings, blocks) reserve only
 * below TG_LOG_HIGH_WATER_PER_1024 of the ring; givers and payments up to
 * TG_LOG_GIVER_PER_1024; recovery may use all of it.  So when PostgreSQL is
 * down and the ring fills, new holds are refused (TG_EBACKLOG) while
 * releases, expiries and payments still proceed — a backlog never traps
 * seats — and a unit that crashes with a full ring can still recover.
 * The give-backs of holds that failed part-way (seats.c) may use the whole
 * ring too: at most TG_BOOKING_SEATS_MAX records per hold in flight, which
 * the last 1/32 of any but the smallest rings holds many times over.
 *
 * Torn reads.  A reader may copy a slot (below the persisted mark) while a
 * writer reuses it.  The writer first zeroes the slot's seq, then writes the
 * fields with release stores, then the new seq; a reader loads seq, the
 * fields and seq again, all with acquire: if it saw any new field, the
 * second load sees 0 or the new seq, and the copy is refused (a seqlock).
 */
#include "segment.h"

#include "tixgrid/assert.h"

/* The records the unpersisted part of the ring may hold under limit_per_1024. */
static uint64_t ring_limit(const pu_header *h, uint32_t limit_per_1024)
{
    return (uint64_t)h->log_records * limit_per_1024 / 1024;
}

tg_err pu_log_reserve(pu_partition *p, uint32_t n, uint32_t limit_per_1024, uint64_t *first)
{
    TG_ASSERT(n > 0 && limit_per_1024 > 0 && limit_per_1024 <= 1024);
    pu_header *h = p->hdr;
    uint64_t limit = ring_limit(h, limit_per_1024);
    uint64_t head = __atomic_load_n(&h->log_head, __ATOMIC_ACQUIRE);
    for (uint32_t attempt = 0; attempt < TG_CAS_RETRIES_MAX; attempt++) {
        uint64_t persisted = __atomic_load_n(&h->log_persisted, __ATOMIC_ACQUIRE);
        if (persisted > head) {
            /* Our head is stale: records were reserved, written and
             * persisted since we read it. */
            head = __atomic_load_n(&h->log_head, __ATOMIC_ACQUIRE);
            continue;
        }
        if (head - persisted + n > limit) {
            return limit_per_1024 <= TG_LOG_HIGH_WATER_PER_1024 ? TG_EBACKLOG : TG_ELOG_FULL;
        }
        if (__atomic_compare_exchange_n(&h->log_head, &head, head + n, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            *first = head + 1;
            return TG_OK;
        }
    }
    return TG_EBUSY;
}

bool pu_log_has_room(const pu_partition *p, uint32_t n, uint32_t limit_per_1024)
{
    const pu_header *h = p->hdr;
    uint64_t limit = ring_limit(h, limit_per_1024);
    /* persisted first: head, read after it, cannot be behind it */
    uint64_t persisted = __atomic_load_n(&h->log_persisted, __ATOMIC_ACQUIRE);
    uint64_t head = __atomic_load_n(&h->log_head, __ATOMIC_ACQUIRE);
    return head >= persisted && head - persisted + n <= limit;
}

static pu_log_record *slot_of(const pu_partition *p, uint64_t seq)
{
    return &p->log[(seq - 1) & (p->hdr->log_records - 1)];
}

void pu_log_publish(pu_partition *p, const pu_log_record *rec)
{
    TG_ASSERT(rec->seq != 0);
    pu_log_record *slot = slot_of(p, rec->seq);
    __atomic_store_n(&slot->seq, 0, __ATOMIC_RELAXED); /* invalidate first: see the top */
    __atomic_store_n(&slot->ident, rec->ident, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->kind, rec->kind, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->status, rec->status, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->reserved, (uint16_t)0, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->word, rec->word, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->deadline_ms, rec->deadline_ms, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->created_ms, rec->created_ms, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->version, rec->version, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->reserved2, 0u, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->seq, rec->seq, __ATOMIC_RELEASE);
}

void pu_log_seat(pu_partition *p, uint64_t seq, uint32_t seat_id, tg_seat_word word)
{
    pu_log_record rec = {
        .seq = seq,
        .ident = seat_id,
        .kind = PU_REC_SEAT,
        .word = word,
        .version = tg_seat_word_version(word),
    };
    pu_log_publish(p, &rec);
    pu_logged_advance(&p->logged[seat_id], tg_seat_word_version(word));
}

void pu_logged_advance(uint32_t *logged, uint32_t version)
{
    /* Only forward: a writer paused between its publish and this store must
     * not move the mark back over a newer change someone else logged. */
    uint32_t cur = __atomic_load_n(logged, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < TG_CAS_RETRIES_MAX && tg_seat_version_newer(version, cur); i++) {
        if (__atomic_compare_exchange_n(logged, &cur, version, 0, __ATOMIC_RELEASE,
                                        __ATOMIC_ACQUIRE)) {
            break;
        }
    }
}

void pu_log_booking(pu_partition *p, uint64_t seq, pu_booking_rec *b)
{
    pu_log_record rec = {
        .seq = seq,
        .ident = b->seq,
        .kind = PU_REC_BOOKING,
        .status = __atomic_load_n(&b->status, __ATOMIC_RELAXED),
        .word = b->user_id,
        .deadline_ms = __atomic_load_n(&b->deadline_ms, __ATOMIC_RELAXED),
        .created_ms = b->created_ms,
        .version = b->version,
    };
    pu_log_publish(p, &rec);
    /* Under the booking's lock: recovery re-logs a booking whose status
     * changed but whose record never got written. */
    __atomic_store_n(&b->logged_version, b->version, __ATOMIC_RELEASE);
}

/* Copies one published record; false if it is not (or no longer) seq.
 * The field loads are acquire loads so that none of them can move after the
 * final re-read of seq (a seqlock read side; ThreadSanitizer does not model
 * a standalone fence, and on x86 these are plain loads anyway). */
static bool record_copy(const pu_partition *p, uint64_t seq, pu_log_record *out)
{
    const pu_log_record *slot = slot_of(p, seq);
    if (__atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE) != seq) {
        return false;
    }
    out->seq = seq;
    out->ident = __atomic_load_n(&slot->ident, __ATOMIC_ACQUIRE);
    out->kind = __atomic_load_n(&slot->kind, __ATOMIC_ACQUIRE);
    out->status = __atomic_load_n(&slot->status, __ATOMIC_ACQUIRE);
    out->reserved = 0;
    out->word = __atomic_load_n(&slot->word, __ATOMIC_ACQUIRE);
    out->deadline_ms = __atomic_load_n(&slot->deadline_ms, __ATOMIC_ACQUIRE);
    out->created_ms = __atomic_load_n(&slot->created_ms, __ATOMIC_ACQUIRE);
    out->version = __atomic_load_n(&slot->version, __ATOMIC_ACQUIRE);
    out->reserved2 = 0;
    /* A slot below the persisted mark may be rewritten under a slow reader. */
    return __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE) == seq;
}

uint32_t pu_log_read(const pu_partition *p, uint64_t from_seq, pu_log_record *out, uint32_t max)
{
    if (from_seq == 0) {
        return 0;
    }
    uint64_t head = __atomic_load_n(&p->hdr->log_head, __ATOMIC_ACQUIRE);
    uint32_t n = 0;
    while (n < max && from_seq + n <= head && record_copy(p, from_seq + n, &out[n])) {
        n++;
    }
    return n;
}

tg_err pu_log_ack(pu_partition *p, uint64_t seq)
{
    pu_header *h = p->hdr;
    uint64_t head = __atomic_load_n(&h->log_head, __ATOMIC_ACQUIRE);
    if (seq > head) {
        return TG_EINVAL;
    }
    uint64_t cur = __atomic_load_n(&h->log_persisted, __ATOMIC_ACQUIRE);
    if (seq <= cur) {
        return TG_OK;
    }
    for (uint64_t s = cur + 1; s <= seq; s++) {
        if (__atomic_load_n(&slot_of(p, s)->seq, __ATOMIC_ACQUIRE) != s) {
            return TG_EINVAL; /* not written yet: nobody can have persisted it */
        }
    }
    for (uint32_t i = 0; i < TG_CAS_RETRIES_MAX && cur < seq; i++) {
        if (__atomic_compare_exchange_n(&h->log_persisted, &cur, seq, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            break;
        }
    }
    return TG_OK;
}

void pu_count_move(pu_partition *p, uint32_t seat_id, tg_seat_state from, tg_seat_state to)
{
    pu_row_rec *row = &p->rows[p->seat_rows[seat_id]];
    __atomic_fetch_sub(&row->counts[from], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&row->counts[to], 1, __ATOMIC_RELAXED);
}

tg_seat_state pu_status_seat_state(tg_booking_status status)
{
    switch (status) {
    case TG_BOOKING_CREATED:
        return TG_SEAT_SELECTED;
    case TG_BOOKING_PENDING_PAYMENT:
        return TG_SEAT_RESERVED;
    case TG_BOOKING_PAID:
        return TG_SEAT_SOLD;
    default:
        return TG_SEAT_FREE;
    }
}

/*
 * log_test.c — the change log: what each operation appends, reading, acks,
 * and back-pressure when the ring fills (PostgreSQL down).
 *
 * partition.h fixes the record contents; it does not fix how many records an
 * operation appends beyond "a seat record for every seat change, a booking
 * record for every booking change".  So the tests look records up by kind
 * and ident, and the ring-filling tests measure what an operation costs
 * instead of assuming it.
 *
 * Back-pressure (limits.h): takers stop once the unpersisted part of the ring
 * would pass TG_LOG_HIGH_WATER_PER_1024/1024 of it (TG_EBACKLOG); givers
 * (release, cancel, expiry) may use all of it (then TG_ELOG_FULL).
 */
#include "fixture.h"

#define RECORDS_MAX 4096u
#define SMALL_RING  TG_LOG_RECORDS_MIN
#define HIGH_WATER  (SMALL_RING * TG_LOG_HIGH_WATER_PER_1024 / 1024)

static pu_log_record records[RECORDS_MAX];

static void setup(void)
{
    fx_start(1, 2, 10); /* seats 0..19 */
}

/* The smallest ring: 64 records, high-water mark at 56. */
static void setup_small_ring(void)
{
    fx_layout(1, 8, 16); /* 128 seats */
    fx.cfg.log_records = SMALL_RING;
    fx_create();
}

TestSuite(log, .init = setup, .fini = fx_fini);
TestSuite(log_ring, .init = setup_small_ring, .fini = fx_fini);

static uint64_t head(const pu_partition *p)
{
    return fx_info(p).log_head;
}

static uint64_t unpersisted(const pu_partition *p)
{
    pu_partition_info info = fx_info(p);
    return info.log_head - info.log_persisted;
}

/* Reads every record in (after, head] and asserts they are dense. */
static uint32_t read_since(const pu_partition *p, uint64_t after)
{
    uint64_t h = head(p);
    cr_assert_leq(h - after, RECORDS_MAX);
    uint32_t n = pu_log_read(p, after + 1, records, RECORDS_MAX);
    cr_assert_eq(n, h - after, "read %u records, head says %llu", n,
                 (unsigned long long)(h - after));
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(records[i].seq, after + 1 + i, "record %u has seq %llu", i,
                     (unsigned long long)records[i].seq);
        cr_assert_eq(records[i].reserved, 0u);
        cr_assert_eq(records[i].reserved2, 0u);
        cr_assert_leq(records[i].kind, PU_REC_BOOKING);
    }
    return n;
}

/* The one record of kind about ident among records[0..n); asserts there is one. */
static const pu_log_record *find_one(uint32_t n, uint8_t kind, uint32_t ident)
{
    const pu_log_record *found = NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (records[i].kind == kind && records[i].ident == ident) {
            cr_assert_null(found, "two records of kind %u about %u", kind, ident);
            found = &records[i];
        }
    }
    cr_assert_not_null(found, "no record of kind %u about %u", kind, ident);
    return found;
}

static uint32_t count_kind(uint32_t n, uint8_t kind)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        c += records[i].kind == kind ? 1 : 0;
    }
    return c;
}

static void assert_seat_record(const pu_partition *p, const pu_log_record *r, uint32_t seat)
{
    pu_seat_info s = fx_seat(p, seat);
    cr_assert_eq(r->kind, PU_REC_SEAT);
    cr_assert_eq(r->ident, seat);
    cr_assert_eq(r->word, s.word, "seat %u: record word %#llx, seat word %#llx", seat,
                 (unsigned long long)r->word, (unsigned long long)s.word);
    cr_assert_eq(r->version, tg_seat_word_version(s.word));
}

static void assert_booking_record(const pu_log_record *r, const pu_booking_info *b)
{
    cr_assert_eq(r->kind, PU_REC_BOOKING);
    cr_assert_eq(r->ident, tg_booking_id_seq(b->id));
    cr_assert_eq(r->status, (uint8_t)b->status, "record status %u, booking %u", r->status,
                 b->status);
    cr_assert_eq(r->word, b->user_id);
    cr_assert_eq(r->deadline_ms, b->deadline_ms);
    cr_assert_eq(r->created_ms, b->created_ms);
    cr_assert_eq(r->version, b->version);
}

/* ---- what operations append ---------------------------------------------- */

Test(log, a_new_partition_has_an_empty_log)
{
    pu_partition *p = fx.p;
    pu_partition_info info = fx_info(p);
    cr_assert_eq(info.log_head, 0u);
    cr_assert_eq(info.log_persisted, 0u);
    cr_assert_eq(pu_log_read(p, 1, records, RECORDS_MAX), 0u);
    fx_check(fx.p);
}

Test(log, every_operation_appends_records_with_dense_seq_from_one)
{
    pu_partition *p = fx.p;
    uint64_t last = 0;
    tg_booking_id a = fx_booking(p, FX_ALICE, FX_T0);
    cr_assert_gt(head(p), last, "create");
    last = head(p);
    const uint32_t seats[] = {1, 2, 3};
    fx_hold(p, a, FX_ALICE, seats, 3, FX_T0);
    cr_assert_gt(head(p), last, "hold");
    last = head(p);
    cr_assert_eq(pu_seats_release(p, a, FX_ALICE, seats, 1, FX_T0), TG_OK);
    cr_assert_gt(head(p), last, "release");
    last = head(p);
    fx_begin_payment(p, a, FX_ALICE, FX_T0);
    cr_assert_gt(head(p), last, "begin_payment");
    last = head(p);
    cr_assert_eq(pu_booking_confirm(p, a, FX_T0), TG_OK);
    cr_assert_gt(head(p), last, "confirm");
    last = head(p);
    const uint32_t blocked[] = {10, 11};
    fx_block(p, blocked, 2);
    cr_assert_gt(head(p), last, "block");
    last = head(p);
    cr_assert_eq(pu_seats_unblock(p, blocked, 1), TG_OK);
    cr_assert_gt(head(p), last, "unblock");
    last = head(p);
    tg_booking_id b = fx_book_range(p, FX_BOB, 15, 2, FX_T0);
    last = head(p);
    cr_assert_eq(pu_booking_cancel(p, b, FX_BOB, FX_T0), TG_OK);
    cr_assert_gt(head(p), last, "cancel");
    last = head(p);
    tg_booking_id c = fx_book_range(p, FX_BOB, 17, 1, FX_T0);
    last = head(p);
    cr_assert_eq(pu_booking_fail(p, c, FX_T0), TG_OK);
    cr_assert_gt(head(p), last, "fail");
    last = head(p);
    fx_book_range(p, FX_BOB, 18, 1, FX_T0);
    last = head(p);
    cr_assert_eq(pu_sweep(p, FX_T0 + FX_HOLD_TTL_MS, TG_SWEEP_SCAN_MAX), 1u);
    cr_assert_gt(head(p), last, "expiry");

    uint32_t n = read_since(p, 0);
    cr_assert_eq(records[0].seq, 1u, "sequence numbers start at 1");
    cr_assert_gt(n, 10u);
    fx_check(p);
}

Test(log, a_new_booking_appends_a_booking_record)
{
    pu_partition *p = fx.p;
    pu_booking_info b;
    cr_assert_eq(pu_booking_create(p, FX_ALICE, FX_T0, &b), TG_OK);
    uint32_t n = read_since(p, 0);
    const pu_log_record *r = find_one(n, PU_REC_BOOKING, tg_booking_id_seq(b.id));
    assert_booking_record(r, &b);
    cr_assert_eq(r->status, TG_BOOKING_CREATED);
    cr_assert_eq(r->word, FX_ALICE, "a booking record's word is the user id");
    cr_assert_eq(r->deadline_ms, FX_T0 + FX_HOLD_TTL_MS);
    cr_assert_eq(r->created_ms, FX_T0);
    cr_assert_eq(count_kind(n, PU_REC_SEAT), 0u);
    fx_check(p);
}

Test(log, a_hold_appends_one_seat_record_per_seat_with_the_new_word)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_booking(p, FX_ALICE, FX_T0);
    uint64_t since = head(p);
    const uint32_t seats[] = {7, 2, 12};
    fx_hold(p, id, FX_ALICE, seats, 3, FX_T0);
    uint32_t n = read_since(p, since);
    cr_assert_eq(count_kind(n, PU_REC_SEAT), 3u);
    for (int i = 0; i < 3; i++) {
        const pu_log_record *r = find_one(n, PU_REC_SEAT, seats[i]);
        assert_seat_record(p, r, seats[i]);
        cr_assert_eq(tg_seat_word_state(r->word), TG_SEAT_SELECTED);
        cr_assert_eq(tg_seat_word_booking(r->word), tg_booking_id_seq(id));
    }
    fx_check(p);
}

Test(log, a_status_change_appends_a_booking_record_and_a_record_per_seat)
{
    pu_partition *p = fx.p;
    tg_booking_id id = fx_book_range(p, FX_ALICE, 4, 2, FX_T0);

    uint64_t since = head(p);
    fx_begin_payment(p, id, FX_ALICE, FX_T0 + 500);
    pu_booking_info b = fx_booking_get(p, id);
    uint32_t n = read_since(p, since);
    assert_booking_record(find_one(n, PU_REC_BOOKING, tg_booking_id_seq(id)), &b);
    cr_assert_eq(b.status, TG_BOOKING_PENDING_PAYMENT);
    cr_assert_eq(b.deadline_ms, FX_T0 + 500 + FX_PAYMENT_WINDOW_MS);
    for (uint32_t s = 4; s < 6; s++) {
        const pu_log_record *r = find_one(n, PU_REC_SEAT, s);
        assert_seat_record(p, r, s);
        cr_assert_eq(tg_seat_word_state(r->word), TG_SEAT_RESERVED);
    }

    since = head(p);
    cr_assert_eq(pu_booking_confirm(p, id, FX_T0 + 1000), TG_OK);
    b = fx_booking_get(p, id);
    n = read_since(p, since);
    assert_booking_record(find_one(n, PU_REC_BOOKING, tg_booking_id_seq(id)), &b);
    cr_assert_eq(b.status, TG_BOOKING_PAID);
    for (uint32_t s = 4; s < 6; s++) {
        const pu_log_record *r = find_one(n, PU_REC_SEAT, s);
        assert_seat_record(p, r, s);
        cr_assert_eq(tg_seat_word_state(r->word), TG_SEAT_SOLD);
    }
    fx_check(p);
}

Test(log, an_ending_appends_the_final_status_and_the_freed_seats)
{
    pu_partition *p = fx.p;
    tg_booking_id cancelled = fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    tg_booking_id expired = fx_book_range(p, FX_BOB, 5, 1, FX_T0 + 1);

    uint64_t since = head(p);
    cr_assert_eq(pu_booking_cancel(p, cancelled, FX_ALICE, FX_T0), TG_OK);
    uint32_t n = read_since(p, since);
    pu_booking_info b = fx_booking_get(p, cancelled);
    assert_booking_record(find_one(n, PU_REC_BOOKING, tg_booking_id_seq(cancelled)), &b);
    cr_assert_eq(b.status, TG_BOOKING_CANCELLED);
    for (uint32_t s = 0; s < 2; s++) {
        const pu_log_record *r = find_one(n, PU_REC_SEAT, s);
        assert_seat_record(p, r, s);
        cr_assert_eq(tg_seat_word_state(r->word), TG_SEAT_FREE);
        cr_assert_eq(tg_seat_word_booking(r->word), 0u);
    }

    since = head(p);
    cr_assert_eq(pu_sweep(p, FX_T0 + 1 + FX_HOLD_TTL_MS, TG_SWEEP_SCAN_MAX), 1u);
    n = read_since(p, since);
    b = fx_booking_get(p, expired);
    assert_booking_record(find_one(n, PU_REC_BOOKING, tg_booking_id_seq(expired)), &b);
    cr_assert_eq(b.status, TG_BOOKING_EXPIRED);
    assert_seat_record(p, find_one(n, PU_REC_SEAT, 5), 5);
    fx_check(p);
}

Test(log, a_seats_records_follow_the_order_its_word_changed)
{
    pu_partition *p = fx.p;
    const uint32_t seat[] = {9};
    tg_booking_id a = fx_booking(p, FX_ALICE, FX_T0);
    fx_hold(p, a, FX_ALICE, seat, 1, FX_T0);
    cr_assert_eq(pu_seats_release(p, a, FX_ALICE, seat, 1, FX_T0), TG_OK);
    fx_block(p, seat, 1);
    cr_assert_eq(pu_seats_unblock(p, seat, 1), TG_OK);
    tg_booking_id b = fx_book_range(p, FX_BOB, 9, 1, FX_T0);
    fx_begin_payment(p, b, FX_BOB, FX_T0);
    cr_assert_eq(pu_booking_confirm(p, b, FX_T0), TG_OK);

    uint32_t n = read_since(p, 0);
    static const tg_seat_state states[] = {TG_SEAT_SELECTED, TG_SEAT_FREE,     TG_SEAT_BLOCKED,
                                           TG_SEAT_FREE,     TG_SEAT_SELECTED, TG_SEAT_RESERVED,
                                           TG_SEAT_SOLD};
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (records[i].kind != PU_REC_SEAT || records[i].ident != 9) {
            continue;
        }
        cr_assert_lt(k, 7u, "more records about seat 9 than changes");
        cr_assert_eq(tg_seat_word_state(records[i].word), states[k], "change %u", k);
        cr_assert_eq(records[i].version, k + 1, "change %u", k);
        k++;
    }
    cr_assert_eq(k, 7u);
    cr_assert_eq(fx_seat(p, 9).word, tg_seat_word_make(TG_SEAT_SOLD, 7, tg_booking_id_seq(b)));
    fx_check(p);
}

/* ---- reading -------------------------------------------------------------- */

Test(log, read_stops_at_max_and_at_the_head)
{
    pu_partition *p = fx.p;
    fx_book_range(p, FX_ALICE, 0, 5, FX_T0);
    uint64_t h = head(p);
    cr_assert_geq(h, 6u);

    cr_assert_eq(pu_log_read(p, 1, records, 2), 2u);
    cr_assert_eq(records[0].seq, 1u);
    cr_assert_eq(records[1].seq, 2u);
    cr_assert_eq(pu_log_read(p, 3, records, 2), 2u);
    cr_assert_eq(records[0].seq, 3u);
    cr_assert_eq(pu_log_read(p, h - 1, records, 100), 2u);
    cr_assert_eq(records[1].seq, h);
    cr_assert_eq(pu_log_read(p, h, records, 100), 1u);
    cr_assert_eq(pu_log_read(p, h + 1, records, 100), 0u);
    cr_assert_eq(pu_log_read(p, h + 1000, records, 100), 0u);
    cr_assert_eq(pu_log_read(p, 1, records, 0), 0u);
    fx_check(fx.p);
}

Test(log, reading_does_not_consume_records)
{
    pu_partition *p = fx.p;
    fx_book_range(p, FX_ALICE, 0, 3, FX_T0);
    pu_log_record again[8];
    uint32_t n = pu_log_read(p, 1, records, 8);
    cr_assert_eq(pu_log_read(p, 1, again, 8), n);
    cr_assert_arr_eq(records, again, n * sizeof(pu_log_record));
    cr_assert_eq(fx_info(p).log_persisted, 0u);
    fx_check(fx.p);
}

/* ---- acks ------------------------------------------------------------------ */

Test(log, ack_marks_records_persisted)
{
    pu_partition *p = fx.p;
    fx_book_range(p, FX_ALICE, 0, 4, FX_T0);
    cr_assert_eq(pu_log_ack(p, 3), TG_OK);
    cr_assert_eq(fx_info(p).log_persisted, 3u);
    cr_assert_eq(pu_log_ack(p, head(p)), TG_OK);
    cr_assert_eq(fx_info(p).log_persisted, head(p));
    fx_check(p);
}

Test(log, a_smaller_ack_is_ignored)
{
    pu_partition *p = fx.p;
    fx_book_range(p, FX_ALICE, 0, 4, FX_T0);
    cr_assert_eq(pu_log_ack(p, 4), TG_OK);
    cr_assert_eq(pu_log_ack(p, 2), TG_OK);
    cr_assert_eq(pu_log_ack(p, 4), TG_OK);
    cr_assert_eq(pu_log_ack(p, 0), TG_OK);
    cr_assert_eq(fx_info(p).log_persisted, 4u);
    fx_check(p);
}

Test(log, an_ack_beyond_the_head_fails)
{
    pu_partition *p = fx.p;
    cr_assert_eq(pu_log_ack(p, 1), TG_EINVAL, "nothing written yet");
    fx_book_range(p, FX_ALICE, 0, 2, FX_T0);
    uint64_t h = head(p);
    cr_assert_eq(pu_log_ack(p, 1), TG_OK);
    cr_assert_eq(pu_log_ack(p, h + 1), TG_EINVAL);
    cr_assert_eq(pu_log_ack(p, UINT64_MAX), TG_EINVAL);
    cr_assert_eq(fx_info(p).log_persisted, 1u);
    fx_check(p);
}

/* ---- a full ring ----------------------------------------------------------- */

/* Creates bookings and holds seats 0, 1, 2, ... one a call into them until a
 * hold fails; returns that error.  bookings[] receives the bookings. */
static tg_err hold_until_refused(pu_partition *p, tg_booking_id *bookings, uint32_t count,
                                 uint32_t *next_seat)
{
    for (uint32_t i = 0; i < count; i++) {
        bookings[i] = fx_booking(p, FX_ALICE, FX_T0);
    }
    for (uint32_t i = 0; i < count * TG_BOOKING_SEATS_MAX; i++) {
        const uint32_t seat[] = {*next_seat};
        pu_hold_result r;
        tg_err err =
            pu_seats_hold(p, bookings[i / TG_BOOKING_SEATS_MAX], FX_ALICE, seat, 1, FX_T0, &r);
        if (err != TG_OK) {
            return err;
        }
        (*next_seat)++;
    }
    return TG_OK;
}

Test(log_ring, holds_are_refused_at_the_high_water_mark_and_change_nothing)
{
    pu_partition *p = fx.p;
    cr_assert_eq(fx_info(p).log_records, SMALL_RING);
    tg_booking_id bookings[5];
    uint32_t next = 0;
    cr_assert_eq(hold_until_refused(p, bookings, 5, &next), TG_EBACKLOG);
    cr_assert_gt(next, 0u);
    /* A one-seat hold costs at least one record; it was refused because it
     * would have taken the unpersisted part past the mark, and not before. */
    cr_assert_leq(unpersisted(p), HIGH_WATER);
    cr_assert_gt(unpersisted(p) + 1, HIGH_WATER, "refused at %llu of %u",
                 (unsigned long long)unpersisted(p), HIGH_WATER);

    fx_snapshot before;
    fx_snap(p, &before);
    const uint32_t seat[] = {next};
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(p, bookings[4], FX_ALICE, seat, 1, FX_T0, &r), TG_EBACKLOG);
    pu_best_request req = {.quantity = 1, .section = -1, .adjacent_only = false};
    cr_assert_eq(pu_seats_hold_best(p, bookings[4], FX_ALICE, &req, FX_T0, &r), TG_EBACKLOG);
    fx_assert_unchanged(p, &before);
    cr_assert_eq(fx_seat_state(p, next), TG_SEAT_FREE);
    fx_check(p);
}

Test(log_ring, releases_and_cancels_still_work_past_the_mark_until_the_ring_is_full)
{
    pu_partition *p = fx.p;
    tg_booking_id bookings[5];
    uint32_t next = 0;
    cr_assert_eq(hold_until_refused(p, bookings, 5, &next), TG_EBACKLOG);

    /* A release gives seats up: it may use the ring beyond the mark. */
    tg_booking_id spare = bookings[0];
    pu_booking_info first = fx_booking_get(p, spare);
    cr_assert_gt(first.seat_count, 1u);
    const uint32_t first_seat = first.seats[0];
    cr_assert_eq(pu_seats_release(p, spare, FX_ALICE, &first_seat, 1, FX_T0), TG_OK);
    cr_assert_gt(unpersisted(p), HIGH_WATER, "the release went past the mark");

    /* Release seat by seat until givers' part of the ring is full (the
     * last 1/32 stays free for crash recovery). */
    tg_err err = TG_OK;
    uint32_t released = 0;
    for (uint32_t b = 1; b < 5 && err == TG_OK; b++) {
        pu_booking_info info = fx_booking_get(p, bookings[b]);
        for (uint32_t i = 0; i < info.seat_count && err == TG_OK; i++) {
            err = pu_seats_release(p, bookings[b], FX_ALICE, &info.seats[i], 1, FX_T0);
            released += err == TG_OK ? 1 : 0;
        }
    }
    const uint64_t givers_limit = (uint64_t)SMALL_RING * TG_LOG_GIVER_PER_1024 / 1024;
    cr_assert_eq(err, TG_ELOG_FULL, "releases stopped with %s", tg_errname(err));
    cr_assert_gt(released, 0u);
    cr_assert_leq(unpersisted(p), givers_limit);
    cr_assert_gt(unpersisted(p) + 1, givers_limit, "full at %llu of %llu",
                 (unsigned long long)unpersisted(p), (unsigned long long)givers_limit);

    /* Nothing more fits, and every refused call changes nothing. */
    fx_snapshot before;
    fx_snap(p, &before);
    pu_booking_info spare_info = fx_booking_get(p, spare);
    cr_assert_eq(pu_seats_release(p, spare, FX_ALICE, &spare_info.seats[0], 1, FX_T0),
                 TG_ELOG_FULL);
    cr_assert_eq(pu_booking_cancel(p, spare, FX_ALICE, FX_T0), TG_ELOG_FULL);
    int64_t deadline = 0;
    cr_assert_eq(pu_booking_begin_payment(p, spare, FX_ALICE, FX_T0, &deadline), TG_ELOG_FULL);
    cr_assert_eq(pu_booking_fail(p, spare, FX_T0), TG_ELOG_FULL);
    cr_assert_eq(pu_sweep(p, FX_T0 + 10 * FX_HOLD_TTL_MS, TG_SWEEP_SCAN_MAX), 0u,
                 "expiry needs records too: nothing expires");
    fx_assert_unchanged(p, &before);
    pu_booking_info spare_now = fx_booking_get(p, spare);
    fx_assert_booking_same(&spare_info, &spare_now);
    fx_check(p);
}

Test(log_ring, a_cancel_past_the_mark_frees_all_its_seats)
{
    pu_partition *p = fx.p;
    tg_booking_id bookings[5];
    uint32_t next = 0;
    cr_assert_eq(hold_until_refused(p, bookings, 5, &next), TG_EBACKLOG);
    pu_booking_info victim = fx_booking_get(p, bookings[3]);
    cr_assert_gt(victim.seat_count, 0u);
    /* The set-up must leave room for this cancellation in givers' part of
     * the ring; if a change of the limits breaks that, fail loudly. */
    cr_assert_leq(unpersisted(p) + 1 + victim.seat_count,
                  (uint64_t)SMALL_RING * TG_LOG_GIVER_PER_1024 / 1024,
                  "the test's ring cannot hold this cancellation any more");
    cr_assert_eq(pu_booking_cancel(p, bookings[3], FX_ALICE, FX_T0), TG_OK);
    for (uint32_t i = 0; i < victim.seat_count; i++) {
        cr_assert_eq(fx_seat_state(p, victim.seats[i]), TG_SEAT_FREE);
    }
    cr_assert_gt(unpersisted(p), HIGH_WATER);
    fx_check(p);
}

Test(log_ring, an_ack_frees_ring_space_for_holds_again)
{
    pu_partition *p = fx.p;
    tg_booking_id bookings[5];
    uint32_t next = 0;
    cr_assert_eq(hold_until_refused(p, bookings, 5, &next), TG_EBACKLOG);
    uint64_t h = head(p);

    /* Ack 3 records: one to three more one-seat holds fit under the mark
     * (a hold writes at least one record per seat). */
    cr_assert_eq(pu_log_ack(p, fx_info(p).log_persisted + 3), TG_OK);
    cr_assert_eq(head(p), h, "an ack writes nothing");
    uint32_t before_next = next;
    for (uint32_t i = 0; i < 16; i++) {
        const uint32_t seat[] = {next};
        pu_hold_result r;
        tg_err err = pu_seats_hold(p, bookings[4], FX_ALICE, seat, 1, FX_T0, &r);
        if (err != TG_OK) {
            cr_assert_eq(err, TG_EBACKLOG);
            break;
        }
        next++;
    }
    cr_assert_gt(next, before_next, "an ack made room for new holds");
    cr_assert_leq(next - before_next, 3u);
    cr_assert_leq(unpersisted(p), HIGH_WATER);

    cr_assert_eq(pu_log_ack(p, head(p)), TG_OK);
    cr_assert_eq(unpersisted(p), 0u);
    fx_book_range(p, FX_BOB, 120, 4, FX_T0);
    fx_check(p);
}

Test(log_ring, the_ring_wraps_around_once_records_are_persisted)
{
    pu_partition *p = fx.p;
    /* Ten times the ring: every record still reads back with its seq. */
    for (uint32_t round = 0; round < 10 * SMALL_RING / 4; round++) {
        uint32_t seat = round % 128;
        tg_booking_id id = fx_book_range(p, FX_ALICE, seat, 1, FX_T0);
        cr_assert_eq(pu_booking_cancel(p, id, FX_ALICE, FX_T0), TG_OK);
        uint64_t since = fx_info(p).log_persisted;
        read_since(p, since);
        cr_assert_eq(pu_log_ack(p, head(p)), TG_OK);
    }
    cr_assert_geq(head(p), 5u * SMALL_RING);
    cr_assert_eq(fx_total(p, TG_SEAT_FREE), 128u);
    fx_check(p);
}

/*
 * replica_test.c — a backup's copy of a partition (pu/replica.c): records
 * applied in sequence order, gaps and repeats, epoch fencing, a state
 * transfer read while the primary sells, and restart after a crash.
 *
 * The primary is the fixture's partition (fx.p); the replica is a second
 * segment of the same layout made as partition_create makes one
 * (cfg.restoring), filled the way the processing unit fills it.
 */
#include "fixture.h"

#include "segment.h"

#include <stdlib.h>

static char replica_name[TG_SHM_NAME_BYTES];
static pu_partition *replica;
static pu_log_record records[FX_LOG_RECORDS];

static void replica_fini(void)
{
    pu_partition_detach(replica);
    replica = NULL;
    if (replica_name[0] != '\0') {
        pu_partition_destroy(replica_name);
        replica_name[0] = '\0';
    }
    fx_fini();
}

/* A fresh replica of fx.cfg at epoch, its log starting after base. */
static void replica_make(uint64_t epoch, uint64_t base)
{
    pu_partition_config cfg = fx.cfg;
    cfg.restoring = true;
    fx_unique_name(replica_name, sizeof(replica_name));
    cr_assert_eq(pu_partition_create(replica_name, &cfg, &replica), TG_OK);
    cr_assert_eq(pu_replica_begin(replica, epoch, base), TG_OK);
}

static void setup(void)
{
    fx_start(2, 2, 10); /* 40 seats */
}

TestSuite(replica, .init = setup, .fini = replica_fini);

/* ---- Helpers ------------------------------------------------------------- */

static uint32_t read_log(uint64_t from)
{
    uint32_t n = pu_log_read(fx.p, from, records, FX_LOG_RECORDS);
    cr_assert(n > 0, "the primary logged nothing from %llu", (unsigned long long)from);
    return n;
}

static uint64_t apply(uint64_t epoch, const pu_log_record *r, uint32_t n)
{
    uint64_t applied = 0;
    tg_err err = pu_replica_apply(replica, epoch, r, n, 0, &applied);
    cr_assert_eq(err, TG_OK, "pu_replica_apply: %s", tg_errname(err));
    return applied;
}

/* Applies [from, head] of the primary's log in batches of `batch`. */
static void apply_all(uint64_t epoch, uint64_t from, uint32_t batch)
{
    uint32_t n = read_log(from);
    for (uint32_t at = 0; at < n; at += batch) {
        uint32_t k = n - at < batch ? n - at : batch;
        cr_assert_eq(apply(epoch, &records[at], k), records[at + k - 1].seq);
    }
}

static void assert_same_as_primary(void)
{
    pu_partition_info a = fx_info(fx.p), b = fx_info(replica);
    cr_assert_eq(b.applied_seq, a.log_head, "applied %llu, primary head %llu",
                 (unsigned long long)b.applied_seq, (unsigned long long)a.log_head);
    cr_assert_eq(b.log_head, a.log_head);
    for (uint32_t seat = 0; seat < a.seat_count; seat++) {
        cr_assert_eq(pu_seat_load(replica, seat), pu_seat_load(fx.p, seat), "seat %u", seat);
    }
    for (uint32_t i = 0; i < a.booking_capacity; i++) {
        uint32_t seq = fx.p->bookings[i].seq;
        pu_booking_info x, y;
        tg_booking_id id = tg_booking_id_make(FX_PARTITION_ID, seq);
        if (seq == 0 || pu_booking_get(fx.p, id, PU_USER_SYSTEM, &x) != TG_OK) {
            continue;
        }
        cr_assert_eq(pu_booking_get(replica, id, PU_USER_SYSTEM, &y), TG_OK, "booking %u", seq);
        cr_assert(x.id == y.id && x.user_id == y.user_id && x.status == y.status &&
                      x.version == y.version && x.created_ms == y.created_ms &&
                      x.deadline_ms == y.deadline_ms && x.seat_count == y.seat_count,
                  "booking %u differs", seq);
        cr_assert_eq(memcmp(x.seats, y.seats, sizeof(x.seats[0]) * x.seat_count), 0,
                     "booking %u lists other seats", seq);
    }
    uint32_t ta[TG_SEAT_STATE_COUNT], tb[TG_SEAT_STATE_COUNT];
    pu_partition_counts(fx.p, ta, NULL, NULL);
    pu_partition_counts(replica, tb, NULL, NULL);
    cr_assert_eq(memcmp(ta, tb, sizeof(ta)), 0, "counters differ");
    cr_assert_eq(pu_partition_check(replica), TG_OK);
}

/* Every kind of change: bookings, holds, a release, a payment, a cancel, an
 * expiry, blocks and an unblock. */
static void sell_a_little(int64_t now)
{
    tg_booking_id a = fx_book_range(fx.p, FX_ALICE, 0, 4, now);
    tg_booking_id b = fx_book_range(fx.p, FX_BOB, 10, 3, now);
    cr_assert_eq(pu_seats_release(fx.p, a, FX_ALICE, (uint32_t[]){1}, 1, now), TG_OK);
    fx_begin_payment(fx.p, b, FX_BOB, now);
    cr_assert_eq(pu_booking_confirm(fx.p, b, now), TG_OK);
    tg_booking_id c = fx_book_range(fx.p, FX_ALICE, 20, 2, now);
    cr_assert_eq(pu_booking_cancel(fx.p, c, FX_ALICE, now), TG_OK);
    fx_book_range(fx.p, FX_BOB, 30, 5, now);
    fx_block_range(fx.p, 36, 3);
    cr_assert_eq(pu_seats_unblock(fx.p, (uint32_t[]){37}, 1), TG_OK);
    cr_assert_eq(pu_sweep(fx.p, now + FX_HOLD_TTL_MS + 1, 1024), 2u); /* a and the last */
    fx_book_range(fx.p, FX_ALICE, 21, 2, now + FX_HOLD_TTL_MS + 1);
}

/* ---- Applying in order ----------------------------------------------------- */

Test(replica, applying_the_primary_log_in_order_gives_the_primary_state)
{
    sell_a_little(FX_T0);
    replica_make(1, 0);
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    apply_all(1, 1, 3); /* batches that cut operations in two */
    assert_same_as_primary();
    /* The copy's log is the primary's, record for record. */
    static pu_log_record copy[FX_LOG_RECORDS];
    uint32_t n = read_log(1);
    cr_assert_eq(pu_log_read(replica, 1, copy, FX_LOG_RECORDS), n);
    cr_assert_eq(memcmp(copy, records, sizeof(records[0]) * n), 0);
}

Test(replica, records_after_a_gap_are_not_applied_until_the_gap_is_filled)
{
    sell_a_little(FX_T0);
    replica_make(1, 0);
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    uint32_t n = read_log(1);
    cr_assert_gt(n, 12u);
    cr_assert_eq(apply(1, records, 5), 5u);
    tg_seat_word before = pu_seat_load(replica, 30);
    cr_assert_eq(apply(1, &records[7], n - 7), 5u, "records 8.. must wait for 6 and 7");
    cr_assert_eq(fx_info(replica).log_head, 5u);
    cr_assert_eq(pu_seat_load(replica, 30), before);
    cr_assert_eq(apply(1, &records[5], n - 5), records[n - 1].seq, "the resent range fills it");
    assert_same_as_primary();
}

Test(replica, records_sent_twice_change_nothing)
{
    sell_a_little(FX_T0);
    replica_make(1, 0);
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    uint32_t n = read_log(1);
    cr_assert_eq(apply(1, records, n), records[n - 1].seq);
    cr_assert_eq(apply(1, records, n), records[n - 1].seq);
    cr_assert_eq(apply(1, &records[3], n - 3), records[n - 1].seq);
    assert_same_as_primary();
}

/* ---- Epochs and roles -------------------------------------------------------- */

Test(replica, records_of_an_older_epoch_are_refused_and_change_nothing)
{
    sell_a_little(FX_T0);
    replica_make(3, 0);
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    uint32_t n = read_log(1);
    uint64_t applied = 99;
    cr_assert_eq(pu_replica_apply(replica, 2, records, n, 0, &applied), TG_ESTALE_EPOCH);
    cr_assert_eq(fx_info(replica).applied_seq, 0u);
    cr_assert_eq(fx_info(replica).log_head, 0u);
    cr_assert_eq(pu_seat_load(replica, 0), tg_seat_word_make(TG_SEAT_FREE, 0, 0));
    cr_assert_eq(apply(4, records, n), records[n - 1].seq, "a newer epoch is followed");
    cr_assert_eq(fx_info(replica).map_epoch, 4u);
    cr_assert_eq(pu_replica_apply(replica, 3, records, 0, 0, &applied), TG_ESTALE_EPOCH,
                 "once it saw epoch 4, epoch 3 is a deposed primary");
}

Test(replica, a_primary_is_never_overwritten_as_a_replica)
{
    fx_book_range(fx.p, FX_ALICE, 0, 2, FX_T0);
    uint32_t n = read_log(1);
    uint64_t applied = 0;
    cr_assert_eq(pu_replica_apply(fx.p, 1, records, n, 0, &applied), TG_EPARTITION_STATE);
    cr_assert_eq(pu_replica_begin(fx.p, 1, 0), TG_EPARTITION_STATE);
    cr_assert_eq(fx_seat_state(fx.p, 0), TG_SEAT_SELECTED);
}

Test(replica, a_replica_being_filled_applies_nothing)
{
    fx_book_range(fx.p, FX_ALICE, 0, 2, FX_T0);
    replica_make(1, 0);
    uint64_t applied = 0;
    cr_assert_eq(pu_replica_apply(replica, 1, records, read_log(1), 0, &applied),
                 TG_EPARTITION_STATE);
}

Test(replica, a_malformed_batch_is_refused_whole)
{
    sell_a_little(FX_T0);
    replica_make(1, 0);
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    uint32_t n = read_log(1);
    uint64_t applied = 0;
    records[4].seq += 1;
    cr_assert_eq(pu_replica_apply(replica, 1, records, n, 0, &applied), TG_EINVAL);
    records[4].seq -= 1;
    records[2].kind = PU_REC_SEAT;
    records[2].ident = 40; /* one past the last seat */
    cr_assert_eq(pu_replica_apply(replica, 1, records, n, 0, &applied), TG_EINVAL);
    cr_assert_eq(fx_info(replica).applied_seq, 0u);
    cr_assert_eq(fx_info(replica).log_head, 0u);
}

/* ---- State transfer ------------------------------------------------------------ */

/* What the unit sends: every seat's word, then every booking, as read now. */
static void copy_seats(void)
{
    for (uint32_t seat = 0; seat < fx_info(fx.p).seat_count; seat++) {
        cr_assert_eq(pu_restore_seat(replica, seat, pu_seat_load(fx.p, seat)), TG_OK);
    }
}

static void copy_bookings(void)
{
    for (uint32_t i = 0; i < fx_info(fx.p).booking_capacity; i++) {
        uint32_t seq = fx.p->bookings[i].seq;
        pu_booking_info b;
        if (seq != 0 && pu_booking_get(fx.p, tg_booking_id_make(FX_PARTITION_ID, seq),
                                       PU_USER_SYSTEM, &b) == TG_OK) {
            cr_assert_eq(pu_restore_booking(replica, &b), TG_OK);
        }
    }
}

Test(replica, a_snapshot_read_while_the_primary_sells_converges_with_the_tail)
{
    int64_t now = FX_T0;
    tg_booking_id early = fx_book_range(fx.p, FX_ALICE, 0, 3, now);
    uint64_t base = fx_info(fx.p).log_head;
    replica_make(1, base);
    /* Changes after the base, some seen by the copy and some not. */
    fx_begin_payment(fx.p, early, FX_ALICE, now);
    tg_booking_id mid = fx_book_range(fx.p, FX_BOB, 10, 2, now);
    copy_seats();
    cr_assert_eq(pu_booking_confirm(fx.p, early, now), TG_OK);
    cr_assert_eq(pu_booking_cancel(fx.p, mid, FX_BOB, now), TG_OK);
    fx_book_range(fx.p, FX_BOB, 10, 4, now); /* the same seats, another booking */
    copy_bookings();
    fx_book_range(fx.p, FX_ALICE, 20, 2, now);
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    cr_assert_eq(fx_info(replica).applied_seq, base);
    apply_all(1, base + 1, 4);
    assert_same_as_primary();
}

/* A hold that fails part-way wrote its word into the seats it took for a
 * moment, and a state transfer may copy one of them.  The copy must still
 * converge: the failed hold gives the seat back at a version of its own, so
 * the next buyer's change is newer than the copied word.  (Restoring the old
 * word made the next buyer's word carry the copied version again: the copy
 * skipped it and kept a phantom hold, and lost that buyer's hold at
 * failover.) */
Test(replica, a_snapshot_that_saw_a_failed_hold_converges_with_the_tail)
{
    int64_t now = FX_T0;
    fx_book_range(fx.p, FX_ALICE, 1, 1, now);
    tg_booking_id bob = fx_booking(fx.p, FX_BOB, now);
    uint64_t base = fx_info(fx.p).log_head;
    replica_make(1, base);
    tg_seat_word free0 = pu_seat_load(fx.p, 0);
    pu_hold_result r;
    cr_assert_eq(pu_seats_hold(fx.p, bob, FX_BOB, (uint32_t[]){0, 1}, 2, now, &r), TG_ESEAT_TAKEN,
                 "seat 0 is taken, then seat 1 refuses");
    copy_seats();
    /* What the copy read of seat 0 between the hold's CAS and its give-back. */
    tg_seat_word seen = tg_seat_word_next(free0, TG_SEAT_SELECTED, tg_booking_id_seq(bob));
    cr_assert_eq(pu_restore_seat(replica, 0, seen), TG_OK);
    copy_bookings();
    fx_book_range(fx.p, FX_ALICE, 0, 1, now); /* the next buyer of seat 0 */
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    apply_all(1, base + 1, 4);
    assert_same_as_primary();
    cr_assert_eq(fx_booking_get(replica, bob).seat_count, 0u, "no phantom hold for bob");
}

Test(replica, a_second_state_transfer_replaces_a_replica)
{
    sell_a_little(FX_T0);
    replica_make(1, 0);
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    apply_all(1, 1, 7);
    uint64_t base = fx_info(fx.p).log_head;
    cr_assert_eq(pu_replica_begin(replica, 1, base), TG_OK, "a replica may be filled again");
    copy_seats();
    copy_bookings();
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    assert_same_as_primary();
}

/* ---- Restart ------------------------------------------------------------------ */

Test(replica, a_replica_reattached_after_a_crash_resumes_at_its_last_applied_record)
{
    sell_a_little(FX_T0);
    replica_make(1, 0);
    cr_assert_eq(pu_replica_end(replica), TG_OK);
    uint32_t n = read_log(1);
    uint32_t half = n / 2;
    apply(1, records, half);
    /* A crash half-way through the next record: its seat word is written,
     * the record and the cursors are not. */
    uint32_t k = half;
    while (records[k].kind != PU_REC_SEAT) {
        k++;
    }
    apply(1, &records[half], k - half);
    __atomic_store_n(&replica->seats[records[k].ident], records[k].word, __ATOMIC_RELEASE);
    __atomic_store_n(&replica->hdr->log_head, records[k].seq + 3, __ATOMIC_RELEASE);
    pu_partition_detach(replica);
    replica = NULL;
    cr_assert_eq(pu_partition_attach(replica_name, PU_ATTACH_OWNER, &replica), TG_OK);
    pu_partition_info info = fx_info(replica);
    cr_assert(info.replica);
    cr_assert_eq(info.applied_seq, records[k - 1].seq);
    cr_assert_eq(info.log_head, info.applied_seq, "slots past the last applied are forgotten");
    cr_assert_eq(pu_partition_check(replica), TG_OK, "lists and counters were rebuilt");
    apply_all(1, info.applied_seq + 1, 5);
    assert_same_as_primary();
}

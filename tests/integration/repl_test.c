/*
 * repl_test.c — replication between two real tixgrid-pu processes: a
 * primary holding the partition and a backup named to it by repl_backups
 * (pu/README.md, "Replication").
 *
 *   - a hold on the primary is on the backup seat for seat, and the backup
 *     refuses to sell;
 *   - a client is answered only once the backup applied its change: with
 *     the backup stopped (SIGSTOP) a hold is not acknowledged in time, nor
 *     any request of a batch (tixgrid/wire.h, "Batches");
 *   - the backup applies in order (a message after a gap is not applied)
 *     and refuses an older epoch; a primary refused so is fenced (no change,
 *     no reply) until its own epoch rises, then answers what waited; a
 *     backup that acknowledges only part of a batch (played by the test)
 *     gets the rest again;
 *   - a new backup is filled by state transfer while it_load keeps selling
 *     on the primary, and then both copies are identical;
 *   - a backup killed while named holds replies back and, restarted with
 *     its segment, continues where it was; one named again after a restart
 *     catches up by delta: the primary sends only the records it missed
 *     (repl_status counters), no state transfer;
 *   - a backup named at a new epoch that refuses everything (a cut link)
 *     holds no reply back; named again at the same epoch (as after a
 *     restart of its primary) it does, until it hears it is not in sync.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define P               7u
#define EVENT           4242u
#define USER            UINT64_C(1001)
#define SYNC_TIMEOUT_MS 15000

static hx_unit primary, backup;
static tg_client *pc, *bc; /* routed to the primary, to the backup */
static tg_msg rep;         /* large: keep it off the stack */
static uint64_t words_p[TG_PARTITION_SEATS_MAX / 16], words_b[TG_PARTITION_SEATS_MAX / 16];

/* The pair; an unpersisted primary acks its own log (no persister), a
 * persisted one keeps every record until a log_ack. */
/* The primary's REP contexts: 0 for the default. */
static const char *primary_contexts;

static void start_pair_with(uint32_t rows, uint32_t seats_per_row, bool unpersisted)
{
    hx_layout layout = {.partition_id = P,
                        .event_id = EVENT,
                        .sections = 1,
                        .rows = rows,
                        .seats = seats_per_row,
                        .log_records = 1u << 16};
    hx_unit_init(&primary, "replp");
    hx_write_layout(&primary, &layout);
    if (unpersisted) {
        hx_add_flag(&primary, "--unpersisted");
    }
    if (primary_contexts != NULL) {
        hx_add_flag(&primary, "--contexts");
        hx_add_flag(&primary, primary_contexts);
    }
    hx_start(&primary);
    hx_unit_init(&backup, "replb");
    hx_start(&backup);
    pc = hx_client(&primary, P, 64);
    bc = hx_client(&backup, P, 64);
}

static void start_pair(uint32_t rows, uint32_t seats_per_row)
{
    start_pair_with(rows, seats_per_row, true);
}

static void stop_all(void)
{
    hx_fini_all();
    pc = bc = NULL;
}

TestSuite(repl, .fini = stop_all, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------- */

/* Names the backup (or none) to the primary under epoch. */
static tg_err name_backup(uint64_t epoch, const hx_unit *b)
{
    tg_msg req = {.type = TG_WIRE_REPL_BACKUPS};
    req.repl_backups.partition_id = P;
    req.repl_backups.epoch = epoch;
    if (b != NULL) {
        req.repl_backups.backup_count = 1;
        snprintf(req.repl_backups.backups[0].name, TG_PU_NAME_BYTES, "%s", b->name);
        snprintf(req.repl_backups.backups[0].rep_url, TG_URL_BYTES, "%s", b->rep_url);
    }
    return hx_call(pc, P, &req, &rep);
}

static void status_of(tg_client *c, tg_msg *out)
{
    tg_msg req = {.type = TG_WIRE_REPL_STATUS};
    req.repl_status.partition_id = P;
    tg_err err = hx_call(c, P, &req, out);
    cr_assert_eq(err, TG_OK, "repl_status: %s", tg_errname(err));
}

/* Waits until the backup is in sync and has applied the primary's head. */
static void wait_in_sync(void)
{
    int64_t limit = hx_now_ms() + SYNC_TIMEOUT_MS;
    for (;;) {
        status_of(pc, &rep);
        const __typeof__(rep.repl_status_ok) *st = &rep.repl_status_ok;
        bool done = st->link_count == 1 && st->links[0].state == TG_REPL_LINK_IN_SYNC &&
                    st->links[0].acked_seq == st->log_head;
        if (done) {
            return;
        }
        if (hx_now_ms() > limit) {
            hx_dump_log(&primary);
            hx_dump_log(&backup);
            cr_assert_fail("backup not in sync after %d ms (links %u, state %u, acked %llu, "
                           "head %llu)",
                           SYNC_TIMEOUT_MS, st->link_count, st->links[0].state,
                           (unsigned long long)st->links[0].acked_seq,
                           (unsigned long long)st->log_head);
        }
        hx_sleep_ms(20);
    }
}

static void assert_copies_equal(uint32_t seat_count)
{
    hx_seat_words(pc, P, seat_count, words_p);
    hx_seat_words(bc, P, seat_count, words_b);
    for (uint32_t s = 0; s < seat_count; s++) {
        cr_assert_eq(words_b[s], words_p[s], "seat %u: backup %#llx, primary %#llx", s,
                     (unsigned long long)words_b[s], (unsigned long long)words_p[s]);
    }
    tg_msg info = {.type = TG_WIRE_PARTITION_INFO};
    info.partition_info.partition_id = P;
    cr_assert_eq(hx_call(pc, P, &info, &rep), TG_OK);
    uint64_t head = rep.partition_info_ok.log_head;
    uint64_t created = rep.partition_info_ok.bookings_created;
    cr_assert_eq(hx_call(bc, P, &info, &rep), TG_OK);
    cr_assert_eq(rep.partition_info_ok.log_head, head, "the backup's log is the primary's");
    cr_assert_leq(rep.partition_info_ok.bookings_created, created);
}

static tg_err hold_range(tg_client *c, tg_booking_id b, uint32_t first, uint32_t n)
{
    uint32_t seats[TG_BOOKING_SEATS_MAX];
    for (uint32_t i = 0; i < n; i++) {
        seats[i] = first + i;
    }
    return hx_hold(c, b, USER, seats, n, &rep);
}

/* Bookings of `per` seats each over [first, first + count * per). */
static void sell(uint32_t first, uint32_t count, uint32_t per)
{
    for (uint32_t i = 0; i < count; i++) {
        tg_booking_id b = hx_booking_create(pc, P, USER);
        cr_assert_eq(hold_range(pc, b, first + i * per, per), TG_OK);
    }
}

/* ---- Streaming and ack after apply -------------------------------------- */

Test(repl, holds_on_the_primary_are_on_the_backup_seat_for_seat)
{
    start_pair(10, 100);
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    wait_in_sync();
    sell(0, 40, 4);
    tg_booking_id paid = hx_booking_create(pc, P, USER);
    cr_assert_eq(hold_range(pc, paid, 500, 3), TG_OK);
    tg_msg req = {.type = TG_WIRE_PAYMENT_BEGIN};
    req.payment_begin = (__typeof__(req.payment_begin)){paid, USER};
    cr_assert_eq(hx_call(pc, P, &req, &rep), TG_OK);
    req = (tg_msg){.type = TG_WIRE_PAYMENT_CONFIRM};
    req.payment_confirm.booking_id = paid;
    cr_assert_eq(hx_call(pc, P, &req, &rep), TG_OK);
    /* Every acknowledged change is on the backup already: no waiting. */
    assert_copies_equal(1000);
    cr_assert_eq(hx_booking_get(bc, paid, USER, &rep), TG_OK);
    cr_assert_eq(rep.booking_get_ok.status, (uint32_t)TG_BOOKING_PAID);
    cr_assert_eq(rep.booking_get_ok.seats.count, 3u);
    /* The backup serves reads and refuses to sell. */
    req = (tg_msg){.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create = (__typeof__(req.booking_create)){P, USER};
    cr_assert_eq(hx_call(bc, P, &req, &rep), TG_EUNAVAILABLE);
    status_of(bc, &rep);
    cr_assert_eq(rep.repl_status_ok.role, (uint32_t)TG_REPL_ROLE_BACKUP);
    /* Both stop cleanly, the primary with its link to the backup open. */
    hx_stop_ok(&primary);
    hx_stop_ok(&backup);
}

Test(repl, a_client_is_answered_only_after_the_backup_applied_the_change)
{
    start_pair(4, 50);
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    wait_in_sync();
    tg_booking_id b = hx_booking_create(pc, P, USER);
    hx_freeze(&backup);
    tg_msg req = {.type = TG_WIRE_SEATS_HOLD};
    req.seats_hold = (__typeof__(req.seats_hold)){.booking_id = b, .user_id = USER};
    req.seats_hold.seats.count = 2;
    req.seats_hold.seats.ids[0] = 10;
    req.seats_hold.seats.ids[1] = 11;
    int64_t t0 = hx_now_ms();
    tg_err err = tg_client_call_to(pc, primary.rep_url, &req, 1500, NULL, &rep);
    cr_assert_eq(err, TG_ETIMEDOUT, "a hold was acknowledged with its backup stopped: %s",
                 tg_errname(err));
    cr_assert_geq(hx_now_ms() - t0, 1400);
    /* The primary did it; only the acknowledgement waits. */
    cr_assert_eq(hx_seat_get(pc, P, 10, &rep), TG_OK);
    cr_assert_eq(tg_seat_word_state(rep.seat_get_ok.seat.word), TG_SEAT_SELECTED);
    cr_assert_eq(kill(backup.pid, SIGCONT), 0);
    t0 = hx_now_ms();
    cr_assert_eq(hold_range(pc, b, 12, 1), TG_OK);
    cr_assert_lt(hx_now_ms() - t0, 3000, "the backup came back: acknowledgements flow again");
    wait_in_sync();
    assert_copies_equal(200);
    cr_assert_eq(hx_seat_get(bc, P, 11, &rep), TG_OK);
    cr_assert_eq(tg_seat_word_booking(rep.seat_get_ok.seat.word), tg_booking_id_seq(b));
}

/* The outcomes of requests sent without waiting, counted by their callbacks. */
typedef struct {
    pthread_mutex_t lock;
    uint32_t done, ok;
} sent_wait;

static void sent_cb(void *arg, tg_err err, const tg_msg *reply)
{
    (void)reply;
    sent_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->done++;
    w->ok += err == TG_OK;
    pthread_mutex_unlock(&w->lock);
}

static tg_err raw_append(uint64_t epoch, uint64_t seq, uint32_t seat, uint64_t word);

Test(repl, a_deposed_primary_drops_its_waiting_replies_and_still_answers)
{
    /* As many holds waiting for the backup as the primary has contexts: a
     * context whose reply is dropped must receive again. */
    enum { CONTEXTS = 4 };
    primary_contexts = "4";
    start_pair(4, 50);
    primary_contexts = NULL;
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    tg_booking_id b[CONTEXTS];
    for (uint32_t i = 0; i < CONTEXTS; i++) {
        b[i] = hx_booking_create(pc, P, USER);
    }
    wait_in_sync();
    /* The backup follows a newer primary (epoch 2) from its next record on;
     * frozen, it keeps the primary's next records waiting. */
    status_of(bc, &rep);
    cr_assert_eq(raw_append(2, rep.repl_status_ok.log_head + 1, 150,
                            tg_seat_word_make(TG_SEAT_SOLD, 9, 77)),
                 TG_OK);
    hx_freeze(&backup);
    static sent_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER};
    for (uint32_t i = 0; i < CONTEXTS; i++) {
        tg_msg req = hx_hold_one(b[i], USER, 10 + i);
        cr_assert_eq(tg_client_send(pc, P, &req, 1500, NULL, sent_cb, &w), TG_OK);
    }
    hx_sleep_ms(200); /* every hold applied, its reply waiting for the backup */
    cr_assert_eq(kill(backup.pid, SIGCONT), 0);
    /* The backup refuses the old epoch: the primary is fenced and, since no
     * map raises its epoch, deposed after a second; it drops the waiting
     * replies and still answers reads on every context. */
    int64_t limit = hx_now_ms() + 3000;
    for (;;) {
        status_of(pc, &rep);
        if (rep.repl_status_ok.role == (uint32_t)TG_REPL_ROLE_BACKUP) {
            break;
        }
        cr_assert_lt(hx_now_ms(), limit, "the primary was not deposed");
        hx_sleep_ms(20);
    }
    for (uint32_t i = 0; i < 4 * CONTEXTS; i++) {
        tg_err err = tg_client_call(pc, P, &(tg_msg){.type = TG_WIRE_STATS}, 1000, hx_space(),
                                    &rep);
        cr_assert_eq(err, TG_OK, "request %u after the depose: %s", i, tg_errname(err));
    }
    limit = hx_now_ms() + 6000;
    for (;;) {
        pthread_mutex_lock(&w.lock);
        uint32_t done = w.done, ok = w.ok;
        pthread_mutex_unlock(&w.lock);
        if (done == CONTEXTS) {
            cr_assert_eq(ok, 0u, "a hold the backup never applied was acknowledged");
            break;
        }
        cr_assert_lt(hx_now_ms(), limit, "the holds' callbacks did not all run");
        hx_sleep_ms(20);
    }
}

/* Tells the backup alone that the partition is at epoch: an empty
 * repl_append, as a unit that applied a new map before its primary did. */
static tg_err raw_epoch(uint64_t epoch)
{
    tg_msg req = {.type = TG_WIRE_REPL_APPEND};
    req.repl_append = (__typeof__(req.repl_append)){.partition_id = P, .epoch = epoch};
    return tg_client_call_to(bc, backup.rep_url, &req, 3000, hx_space(), &rep);
}

/* Waits up to timeout_ms for text in u's log. */
static bool log_shows(const hx_unit *u, const char *text, int timeout_ms)
{
    int64_t limit = hx_now_ms() + timeout_ms;
    bool shown = hx_file_contains(u->log_path, text);
    while (!shown && hx_now_ms() < limit) {
        hx_sleep_ms(10);
        shown = hx_file_contains(u->log_path, text);
    }
    return shown;
}

Test(repl, a_primary_whose_backup_took_a_newer_epoch_first_waits_for_it_and_answers)
{
    start_pair(4, 50);
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    tg_booking_id b = hx_booking_create(pc, P, USER);
    wait_in_sync();
    /* The backup is at epoch 2, the primary still at 1: its next record is
     * refused, and the hold's reply waits. */
    cr_assert_eq(raw_epoch(2), TG_OK);
    static sent_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER};
    tg_msg req = hx_hold_one(b, USER, 10);
    cr_assert_eq(tg_client_send(pc, P, &req, 5000, NULL, sent_cb, &w), TG_OK);
    if (!log_shows(&primary, "holds an epoch above 1", 3000)) {
        hx_dump_log(&primary);
        cr_assert_fail("the primary was not fenced");
    }
    /* Fenced: no change is made, none is acknowledged, it is still the primary. */
    req = hx_hold_one(b, USER, 11);
    cr_assert_eq(hx_call(pc, P, &req, &rep), TG_EUNAVAILABLE, "a change made while fenced");
    status_of(pc, &rep);
    cr_assert_eq(rep.repl_status_ok.role, (uint32_t)TG_REPL_ROLE_PRIMARY, "deposed at once");
    pthread_mutex_lock(&w.lock);
    cr_assert_eq(w.done, 0u, "the waiting hold was answered while fenced");
    pthread_mutex_unlock(&w.lock);
    /* Its own epoch reaches the backup's (the map came): the link goes on,
     * the waiting hold is acknowledged, and the partition sells again. */
    cr_assert_eq(name_backup(2, &backup), TG_OK);
    int64_t limit = hx_now_ms() + 3000;
    for (;;) {
        pthread_mutex_lock(&w.lock);
        uint32_t done = w.done, ok = w.ok;
        pthread_mutex_unlock(&w.lock);
        if (done == 1) {
            cr_assert_eq(ok, 1u, "the waiting hold was not acknowledged once the fence lifted");
            break;
        }
        cr_assert_lt(hx_now_ms(), limit, "the waiting hold was not answered");
        hx_sleep_ms(10);
    }
    req = hx_hold_one(b, USER, 12);
    cr_assert_eq(hx_call(pc, P, &req, &rep), TG_OK);
    wait_in_sync();
    assert_copies_equal(200);
    cr_assert_eq(hx_seat_get(bc, P, 11, &rep), TG_OK);
    cr_assert_eq(tg_seat_word_state(rep.seat_get_ok.seat.word), TG_SEAT_FREE);
    cr_assert_eq(hx_seat_get(bc, P, 10, &rep), TG_OK);
    cr_assert_eq(tg_seat_word_state(rep.seat_get_ok.seat.word), TG_SEAT_SELECTED);
}

Test(repl, a_backup_named_at_a_new_epoch_holds_nothing_back_until_it_is_in_sync)
{
    char dir[] = "/tmp/tixgrid-rr-XXXXXX";
    cr_assert(mkdtemp(dir) != NULL);
    cr_assert_eq(setenv("TIXGRID_TEST_REPL_REFUSE_DIR", dir, 1), 0); /* read at start */
    start_pair(4, 50);
    unsetenv("TIXGRID_TEST_REPL_REFUSE_DIR");
    hx_repl_cut(dir, &backup, true);
    tg_booking_id b = hx_booking_create(pc, P, USER);
    /* Named with the epoch's rise (1 to 2): whatever the backup believes was
     * said at an older epoch, so the primary sells without it meanwhile. */
    cr_assert_eq(name_backup(2, &backup), TG_OK);
    tg_msg req = hx_hold_one(b, USER, 10);
    cr_assert_eq(tg_client_call(pc, P, &req, 1000, hx_space(), &rep), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_SEATS_HOLD_OK, "a backup that refuses everything held it back");
    /* Named again at the same epoch: the new link vouches for what the
     * backup may still believe, and holds replies until it applied "not in
     * sync" — which it refuses while cut. */
    cr_assert_eq(name_backup(2, NULL), TG_OK);
    cr_assert_eq(name_backup(2, &backup), TG_OK);
    req = hx_hold_one(b, USER, 11);
    cr_assert_neq(tg_client_call(pc, P, &req, 300, hx_space(), &rep), TG_OK,
                  "acknowledged while a backup that may believe it is in sync lacks it");
    hx_repl_cut(dir, &backup, false);
    cr_assert_eq(rmdir(dir), 0);
    wait_in_sync();
    req = hx_hold_one(b, USER, 12);
    cr_assert_eq(hx_call(pc, P, &req, &rep), TG_OK);
    wait_in_sync();
    assert_copies_equal(200);
}

/* A batch (tixgrid/wire.h): its outcomes, collected by its callbacks. */
typedef struct {
    pthread_mutex_t lock;
    uint32_t calls;
    tg_err err[2];
} batch_wait;

static void batch_cb(void *arg, uint32_t index, tg_err err, const tg_msg *reply)
{
    (void)reply;
    batch_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->err[index] = err;
    w->calls++;
    pthread_mutex_unlock(&w->lock);
}

/* Holds seats `first` and `first + 1` in one batch of two requests and
 * waits up to 5 s for both callbacks; the outcomes are in w. */
static void batch_hold_two(tg_booking_id b, uint32_t first, uint32_t timeout_ms, batch_wait *w)
{
    static tg_wire_batch batch;
    tg_wire_batch_init(&batch);
    for (uint32_t i = 0; i < 2; i++) {
        tg_msg req = hx_hold_one(b, USER, first + i);
        cr_assert_eq(tg_wire_batch_add(&batch, &req, NULL), TG_OK);
    }
    *w = (batch_wait){.calls = 0};
    pthread_mutex_init(&w->lock, NULL);
    cr_assert_eq(tg_client_send_batch(pc, P, &batch, timeout_ms, batch_cb, w), TG_OK);
    tg_wire_batch_destroy(&batch);
    int64_t limit = hx_now_ms() + 5000;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        uint32_t calls = w->calls;
        pthread_mutex_unlock(&w->lock);
        if (calls == 2) {
            return;
        }
        cr_assert_lt(hx_now_ms(), limit, "the batch's callbacks did not all run");
        hx_sleep_ms(5);
    }
}

Test(repl, a_batch_is_answered_only_after_the_backup_applied_all_of_it)
{
    start_pair(4, 50);
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    wait_in_sync();
    tg_booking_id b = hx_booking_create(pc, P, USER);
    hx_freeze(&backup);
    batch_wait w;
    int64_t t0 = hx_now_ms();
    batch_hold_two(b, 20, 1500, &w);
    cr_assert(w.err[0] == TG_ETIMEDOUT && w.err[1] == TG_ETIMEDOUT,
              "a batch was acknowledged with its backup stopped: %s, %s", tg_errname(w.err[0]),
              tg_errname(w.err[1]));
    cr_assert_geq(hx_now_ms() - t0, 1400);
    cr_assert_eq(kill(backup.pid, SIGCONT), 0);
    batch_hold_two(b, 30, 3000, &w);
    cr_assert(w.err[0] == TG_OK && w.err[1] == TG_OK, "after SIGCONT: %s, %s",
              tg_errname(w.err[0]), tg_errname(w.err[1]));
    wait_in_sync();
    assert_copies_equal(200);
    for (uint32_t seat = 20; seat < 32; seat += seat == 21 ? 9 : 1) {
        cr_assert_eq(hx_seat_get(bc, P, seat, &rep), TG_OK);
        cr_assert_eq(tg_seat_word_booking(rep.seat_get_ok.seat.word), tg_booking_id_seq(b),
                     "seat %u is not the booking's on the backup", seat);
    }
}

/* ---- Order and epochs on the backup ----------------------------------------- */

/* Sends a repl_append straight to the backup. */
static tg_err raw_append(uint64_t epoch, uint64_t seq, uint32_t seat, uint64_t word)
{
    static tg_wire_log_record record;
    record = (tg_wire_log_record){
        .seq = seq, .kind = 1, .ident = seat, .word = word, .version = tg_seat_word_version(word)};
    tg_msg req = {.type = TG_WIRE_REPL_APPEND};
    req.repl_append = (__typeof__(req.repl_append)){
        .partition_id = P, .epoch = epoch, .record_count = 1, .records = &record};
    return tg_client_call_to(bc, backup.rep_url, &req, 3000, hx_space(), &rep);
}

Test(repl, the_backup_applies_in_order_and_refuses_an_older_epoch)
{
    start_pair(4, 50);
    cr_assert_eq(name_backup(3, &backup), TG_OK);
    wait_in_sync();
    sell(0, 5, 2);
    wait_in_sync();
    status_of(bc, &rep);
    uint64_t applied = rep.repl_status_ok.log_head;
    cr_assert_eq(rep.repl_status_ok.epoch, 3u);
    uint64_t sold = tg_seat_word_make(TG_SEAT_SOLD, 9, 77);
    /* A record after a gap waits: the answer says where to resend from. */
    cr_assert_eq(raw_append(3, applied + 3, 150, sold), TG_OK);
    cr_assert_eq(rep.repl_append_ok.applied_seq, applied);
    cr_assert_eq(hx_seat_get(bc, P, 150, &rep), TG_OK);
    cr_assert_eq(tg_seat_word_state(rep.seat_get_ok.seat.word), TG_SEAT_FREE);
    /* A deposed primary's records (an older epoch) are refused. */
    cr_assert_eq(raw_append(2, applied + 1, 150, sold), TG_ESTALE_EPOCH);
    cr_assert_eq(hx_seat_get(bc, P, 150, &rep), TG_OK);
    cr_assert_eq(tg_seat_word_state(rep.seat_get_ok.seat.word), TG_SEAT_FREE);
    /* The real primary goes on undisturbed. */
    sell(20, 5, 2);
    wait_in_sync();
    assert_copies_equal(200);
}

/* ---- Gap repair, seen from the primary ---------------------------------------------- */

/* A backup played by the test: it answers repl_append like a unit would,
 * except that once it claims to have applied only the first record of a
 * batch (as a backup whose apply stopped part-way), and it keeps a log of
 * the ranges it was sent.  Runs in a thread of its own; the main thread
 * reads the log under the lock. */
#define FAKE_LOG_MAX 256
typedef struct {
    nng_socket sock;
    pthread_mutex_t lock;
    bool stop;
    uint64_t applied;
    uint64_t lied_at; /* the batch's first record, once it lied */
    uint32_t count;
    uint64_t first[FAKE_LOG_MAX], last[FAKE_LOG_MAX];
} fake_backup;

static fake_backup fake;

/* The answer to one decoded repl_append: in order, after a gap, or short. */
static uint64_t fake_apply(const tg_msg *req)
{
    uint32_t n = req->repl_append.record_count;
    if (n == 0) {
        return fake.applied;
    }
    uint64_t first = req->repl_append.records[0].seq, last = req->repl_append.records[n - 1].seq;
    pthread_mutex_lock(&fake.lock);
    if (fake.count < FAKE_LOG_MAX) {
        fake.first[fake.count] = first;
        fake.last[fake.count++] = last;
    }
    if (first <= fake.applied + 1 && last > fake.applied) {
        bool lie = fake.lied_at == 0 && last - fake.applied >= 3;
        fake.lied_at = lie ? first : fake.lied_at;
        fake.applied = lie ? fake.applied + 1 : last;
    }
    uint64_t applied = fake.applied;
    pthread_mutex_unlock(&fake.lock);
    return applied;
}

static void *fake_main(void *unused)
{
    (void)unused;
    static tg_wire_log_record records[TG_WIRE_LOG_RECORDS_MAX];
    static tg_msg req, reply;
    tg_wire_space space = {.records = records, .records_capacity = TG_WIRE_LOG_RECORDS_MAX};
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    while (!__atomic_load_n(&fake.stop, __ATOMIC_ACQUIRE)) {
        void *body = NULL;
        size_t len = 0;
        if (nng_recv(fake.sock, &body, &len, NNG_FLAG_ALLOC) != 0) {
            continue; /* the receive timeout: look at stop again */
        }
        bool append = tg_wire_decode(body, len, &space, &req, NULL) == TG_OK &&
                      req.type == TG_WIRE_REPL_APPEND;
        nng_free(body, len);
        if (append) {
            reply = (tg_msg){.type = TG_WIRE_REPL_APPEND_OK};
            reply.repl_append_ok.epoch = req.repl_append.epoch;
            reply.repl_append_ok.applied_seq = fake_apply(&req);
        } else {
            tg_wire_error(&reply, TG_EINVAL, "the fake backup takes only repl_append");
        }
        if (tg_wire_encode(&reply, &buf, NULL) == TG_OK) {
            nng_send(fake.sock, buf.data, buf.size, 0);
        }
    }
    msgpack_sbuffer_destroy(&buf);
    return NULL;
}

Test(repl, a_backup_that_applied_part_of_a_batch_gets_the_rest_again)
{
    start_pair(4, 50);
    hx_unit fake_unit = {.pid = 0};
    snprintf(fake_unit.name, sizeof(fake_unit.name), "fake-backup");
    snprintf(fake_unit.rep_url, sizeof(fake_unit.rep_url), "ipc://%s/fake.rep", primary.dir);
    pthread_mutex_init(&fake.lock, NULL);
    cr_assert_eq(nng_rep0_open(&fake.sock), 0);
    nng_socket_set_ms(fake.sock, NNG_OPT_RECVTIMEO, 100);
    cr_assert_eq(nng_listen(fake.sock, fake_unit.rep_url, NULL, 0), 0);
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, fake_main, NULL), 0);
    cr_assert_eq(name_backup(1, &fake_unit), TG_OK);
    wait_in_sync();
    sell(0, 5, 8); /* a hold's eight seat records: a batch of three or more */
    wait_in_sync();
    pthread_mutex_lock(&fake.lock);
    uint64_t lied_at = fake.lied_at, applied = fake.applied;
    /* Batches are consecutive ranges and the one it lied about covered
     * lied_at + 1: one that starts there is the rest sent again. */
    bool resent = false;
    for (uint32_t i = 0; i < fake.count && lied_at != 0; i++) {
        resent = resent || fake.first[i] == lied_at + 1;
    }
    uint32_t count = fake.count;
    pthread_mutex_unlock(&fake.lock);
    cr_assert_neq(lied_at, 0u, "the fake never got a batch of three records");
    cr_assert(resent,
              "after an ack of record %llu only, the rest was never sent again (%u "
              "messages)",
              (unsigned long long)lied_at, count);
    status_of(pc, &rep);
    cr_assert_eq(applied, rep.repl_status_ok.log_head, "the fake has every record in the end");
    __atomic_store_n(&fake.stop, true, __ATOMIC_RELEASE);
    pthread_join(thread, NULL);
    hx_stop_ok(&primary); /* the fake's socket stays open: see harness.h */
}

/* ---- State transfer under load -------------------------------------------------- */

/* Runs it_load's burst against the primary; returns once it reported `ops`
 * acknowledged operations past `after`. */
static uint32_t burst_progress(hx_helper *h, uint32_t after, uint32_t ops)
{
    static char line[4096];
    uint32_t acked = after;
    int64_t limit = hx_now_ms() + 20000;
    while (acked < after + ops && hx_now_ms() < limit &&
           hx_helper_line(h, line, sizeof(line), 5000)) {
        cr_assert(sscanf(line, "progress %u", &acked) == 1, "it_load: %s", line);
    }
    cr_assert_geq(acked, after + ops, "the burst stalled at %u operations", acked);
    return acked;
}

static void burst_end(hx_helper *h)
{
    static char line[4096];
    hx_helper_stop(h);
    bool ended = false;
    while (!ended && hx_helper_line(h, line, sizeof(line), 15000)) {
        cr_assert(strncmp(line, "unexpected ", 11) != 0, "it_load: %s", line);
        ended = strncmp(line, "end ", 4) == 0;
    }
    cr_assert(ended, "it_load did not report");
    int status = hx_helper_wait(h, 5000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "it_load: status %#x", status);
}

Test(repl, a_new_backup_is_filled_while_the_primary_keeps_selling)
{
    enum { ROWS = 40, PER_ROW = 200, SEATS = ROWS * PER_ROW };
    start_pair(ROWS, PER_ROW);
    static hx_helper h;
    char partition[16], seats[16];
    snprintf(partition, sizeof(partition), "%u", P);
    snprintf(seats, sizeof(seats), "%u", SEATS);
    char *argv[] = {
        (char *)hx_load_bin(), "burst", primary.rep_url, partition, "4", seats, "424242", NULL};
    hx_helper_start(&h, argv);
    static char line[64];
    cr_assert(hx_helper_line(&h, line, sizeof(line), 5000) && strcmp(line, "ready") == 0);
    uint32_t acked = burst_progress(&h, 0, 500);
    cr_assert_eq(name_backup(1, &backup), TG_OK); /* the copy starts under load */
    acked = burst_progress(&h, acked, 1000);
    wait_in_sync();
    burst_progress(&h, acked, 500); /* and selling goes on with the backup in sync */
    burst_end(&h);
    wait_in_sync();
    assert_copies_equal(SEATS);
    status_of(pc, &rep);
    cr_assert_eq(rep.repl_status_ok.links[0].snapshots, 1u);
    cr_assert_geq(rep.repl_status_ok.links[0].snapshot_items, (uint64_t)SEATS);
    cr_assert_gt(rep.repl_status_ok.links[0].records_sent, 0u, "the tail followed the copy");
}

/* Reads the unit's log from seq on into out (up to max records); returns
 * how many. */
static uint32_t log_of(tg_client *c, uint64_t from, tg_wire_log_record *out, uint32_t max)
{
    uint32_t n = 0;
    while (n < max) {
        tg_msg req = {.type = TG_WIRE_LOG_READ};
        req.log_read = (__typeof__(req.log_read)){P, from + n, max - n};
        cr_assert_eq(hx_call(c, P, &req, &rep), TG_OK);
        if (rep.log_read_ok.record_count == 0) {
            break;
        }
        memcpy(&out[n], rep.log_read_ok.records,
               rep.log_read_ok.record_count * sizeof(out[0]));
        n += rep.log_read_ok.record_count;
    }
    return n;
}

/* The drain reads only what the backups applied: a record the primary has
 * alone may never be acknowledged, and a backup promoted without it writes
 * other records under the same numbers. */
Test(repl, the_drain_reads_only_what_the_backups_applied)
{
    enum { RECORDS_MAX = 512 };
    static tg_wire_log_record records[RECORDS_MAX];
    start_pair(4, 50);
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    wait_in_sync();
    tg_booking_id b = hx_booking_create(pc, P, USER);
    hx_freeze(&backup);
    tg_msg req = hx_hold_one(b, USER, 10);
    cr_assert_eq(tg_client_call_to(pc, primary.rep_url, &req, 1000, NULL, &rep), TG_ETIMEDOUT);
    uint32_t n = log_of(pc, 1, records, RECORDS_MAX);
    uint64_t head = rep.log_read_ok.log_head;
    cr_assert_gt(n, 0u, "not even the booking, acknowledged before the freeze, is readable");
    cr_assert_lt(records[n - 1].seq, head,
                 "the drain was given record %llu, which the frozen backup never applied",
                 (unsigned long long)records[n - 1].seq);
    cr_assert_eq(kill(backup.pid, SIGCONT), 0);
    wait_in_sync();
    n = log_of(pc, 1, records, RECORDS_MAX);
    cr_assert_eq(records[n - 1].seq, head, "the backup applied the hold: the drain may read it");
}

/* The copy may become the primary before the persister drained it: its log
 * must then hold every record after the persisted mark, or the drain would
 * find a gap and PostgreSQL would lack acknowledged holds. */
Test(repl, a_new_backup_holds_every_record_the_persister_has_not_drained)
{
    enum { ROWS = 10, PER_ROW = 40, PERSISTED = 7, RECORDS_MAX = 512 };
    start_pair_with(ROWS, PER_ROW, false);
    sell(0, 30, 4); /* 30 booking records and 120 seat records */
    tg_msg ack = {.type = TG_WIRE_LOG_ACK};
    ack.log_ack = (__typeof__(ack.log_ack)){P, PERSISTED};
    cr_assert_eq(hx_call(pc, P, &ack, &rep), TG_OK);
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    wait_in_sync();
    static tg_wire_log_record want[RECORDS_MAX], got[RECORDS_MAX];
    uint32_t n = log_of(pc, PERSISTED + 1, want, RECORDS_MAX);
    cr_assert_geq(n, 150u - PERSISTED, "the primary's unpersisted log: %u records", n);
    cr_assert_eq(log_of(bc, PERSISTED + 1, got, RECORDS_MAX), n,
                 "the backup's log lacks records after the persisted mark");
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(got[i].seq, want[i].seq);
        cr_assert_eq(got[i].kind, want[i].kind, "seq %llu", (unsigned long long)want[i].seq);
        cr_assert_eq(got[i].ident, want[i].ident, "seq %llu", (unsigned long long)want[i].seq);
        cr_assert_eq(got[i].word, want[i].word, "seq %llu", (unsigned long long)want[i].seq);
        cr_assert_eq(got[i].version, want[i].version, "seq %llu",
                     (unsigned long long)want[i].seq);
    }
    assert_copies_equal(ROWS * PER_ROW);
}

/* ---- Restart and delta catch-up ------------------------------------------------- */

Test(repl, a_backup_killed_and_restarted_keeps_its_place_and_its_copy)
{
    start_pair(4, 50);
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    wait_in_sync();
    sell(0, 5, 2);
    tg_booking_id b = hx_booking_create(pc, P, USER);
    hx_kill(&backup); /* still named: the primary keeps trying it */
    bc = NULL;
    tg_msg req = hx_hold_one(b, USER, 40);
    cr_assert_eq(tg_client_call_to(pc, primary.rep_url, &req, 800, NULL, &rep), TG_ETIMEDOUT,
                 "acknowledged while its only backup was dead");
    hx_start(&backup);
    bc = hx_client(&backup, P, 64);
    wait_in_sync();
    assert_copies_equal(200);
    status_of(pc, &rep);
    cr_assert_eq(rep.repl_status_ok.links[0].snapshots, 1u, "the restarted copy was kept");
    cr_assert_eq(hold_range(pc, b, 41, 1), TG_OK);
}

Test(repl, a_backup_restarted_with_a_stale_segment_catches_up_by_delta)
{
    enum { ROWS = 10, PER_ROW = 2000, SEATS = ROWS * PER_ROW };
    start_pair(ROWS, PER_ROW);
    cr_assert_eq(name_backup(1, &backup), TG_OK);
    wait_in_sync();
    sell(0, 20, 4);
    wait_in_sync();
    status_of(pc, &rep);
    cr_assert_eq(rep.repl_status_ok.links[0].snapshots, 1u);
    uint64_t copied = rep.repl_status_ok.links[0].snapshot_items;
    cr_assert_geq(copied, (uint64_t)SEATS, "the first fill is a full copy");

    hx_kill(&backup); /* its segment stays in /dev/shm, as after a crash */
    bc = NULL;
    cr_assert_eq(name_backup(2, NULL), TG_OK); /* it is out of the map meanwhile */
    sell(1000, 30, 4);
    status_of(pc, &rep);
    uint64_t head = rep.repl_status_ok.log_head;

    hx_start(&backup);
    bc = hx_client(&backup, P, 64);
    status_of(bc, &rep);
    uint64_t stale = rep.repl_status_ok.log_head;
    cr_assert_eq(rep.repl_status_ok.role, (uint32_t)TG_REPL_ROLE_BACKUP, "re-attached as a copy");
    cr_assert_lt(stale, head, "the backup missed the sales made while it was down");
    cr_assert_eq(name_backup(3, &backup), TG_OK);
    wait_in_sync();
    status_of(pc, &rep);
    const tg_wire_repl_link *l = &rep.repl_status_ok.links[0];
    cr_assert_eq(l->snapshots, 0u, "no state transfer: the primary's ring had what it missed");
    uint64_t missed = rep.repl_status_ok.log_head - stale;
    cr_assert_geq(l->records_sent, missed, "it got the %llu records it missed",
                  (unsigned long long)missed);
    cr_assert_leq(l->records_sent, 2 * missed, "and little more (a batch resent at worst)");
    cr_assert_lt(l->records_sent, (uint64_t)SEATS / 10);
    assert_copies_equal(SEATS);
}

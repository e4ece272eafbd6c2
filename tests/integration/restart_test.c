/*
 * restart_test.c — SIGKILL a real tixgrid-pu and start it again.
 *
 * A unit keeps its partitions in /dev/shm; restarted with the same name and
 * flags it re-attaches and recovers them (pu/recover.c).  These tests check,
 * over the wire only, that
 *   - after a kill at rest, every seat word (state, version and booking),
 *     every booking (status, version, seats, deadline) and the availability
 *     are exactly what they were, holds still expire at their own deadline,
 *     and the unit carries on (new booking ids continue the sequence);
 *   - after a kill in the middle of a burst of concurrent operations, the
 *     partition is consistent (counts add up, every held or sold seat is in
 *     the seat list of a booking whose status implies that state, and the
 *     reverse) and every acknowledged operation survived.
 * The burst runs in a helper process (it_load, see harness.h): its clients
 * outlive the unit they talk to.
 */
#include "harness.h"

#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define P 5u
#define ALICE UINT64_C(1001)
#define BOB UINT64_C(1002)

static hx_unit unit;
static tg_client *client;
static tg_msg rep; /* large: keep it off the stack */

static void stop_all(void)
{
    hx_fini_all(); /* closes the client too, if its unit runs */
    client = NULL;
}

TestSuite(restart, .fini = stop_all, .timeout = 150);

/* ---- Helpers ----------------------------------------------------------- */

static void must(tg_err err, const char *what)
{
    cr_assert_eq(err, TG_OK, "%s: %s", what, tg_errname(err));
}

static tg_err booking_op(tg_wire_type type, tg_booking_id b, uint64_t user, tg_client *c,
                         tg_msg *out)
{
    tg_msg req = {.type = type};
    switch (type) {
    case TG_WIRE_BOOKING_CANCEL:
        req.booking_cancel.booking_id = b;
        req.booking_cancel.user_id = user;
        break;
    case TG_WIRE_PAYMENT_BEGIN:
        req.payment_begin.booking_id = b;
        req.payment_begin.user_id = user;
        break;
    case TG_WIRE_PAYMENT_CONFIRM: req.payment_confirm.booking_id = b; break;
    case TG_WIRE_PAYMENT_FAIL: req.payment_fail.booking_id = b; break;
    default: return TG_EINVAL;
    }
    return tg_client_call(c, P, &req, HX_CALL_TIMEOUT_MS, NULL, out);
}

static tg_err release(tg_client *c, tg_booking_id b, uint64_t user, const uint32_t *seats,
                      uint32_t n, tg_msg *out)
{
    tg_msg req = {.type = TG_WIRE_SEATS_RELEASE};
    req.seats_release.booking_id = b;
    req.seats_release.user_id = user;
    req.seats_release.seats.count = n;
    memcpy(req.seats_release.seats.ids, seats, sizeof(uint32_t) * n);
    return tg_client_call(c, P, &req, HX_CALL_TIMEOUT_MS, NULL, out);
}

static void partition_info(tg_msg *out)
{
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = P;
    must(hx_call(client, P, &req, out), "partition_info");
}

/* SIGKILL and start again; the client is closed first (hx_kill) and made
 * anew, so that no socket of this process redials a dead unit. */
static void restart(void)
{
    hx_kill(&unit);
    client = NULL;
    hx_start(&unit);
    client = hx_client(&unit, P, 8);
}

/* ---- At rest ------------------------------------------------------------- */

#define REST_SEATS 200u /* 2 sections x 4 rows x 25 seats */
#define REST_BOOKINGS 9u

typedef struct {
    tg_msg availability;
    tg_wire_counts rows[8];
    uint64_t words[REST_SEATS];
    tg_msg bookings[REST_BOOKINGS];
    tg_msg info;
} rest_snapshot;

static rest_snapshot before, after;

static void snapshot(rest_snapshot *s, const tg_booking_id *ids)
{
    hx_availability(client, P, &s->availability, s->rows);
    hx_seat_words(client, P, REST_SEATS, s->words);
    for (uint32_t i = 0; i < REST_BOOKINGS; i++) {
        must(hx_booking_get(client, ids[i], 0, &s->bookings[i]), "booking_get");
    }
    partition_info(&s->info);
}

static void assert_same(const rest_snapshot *a, const rest_snapshot *b)
{
    for (uint32_t seat = 0; seat < REST_SEATS; seat++) {
        cr_assert_eq(a->words[seat], b->words[seat], "seat %u: word %#llx became %#llx", seat,
                     (unsigned long long)a->words[seat], (unsigned long long)b->words[seat]);
    }
    for (uint32_t i = 0; i < REST_BOOKINGS; i++) {
        const tg_wire_booking *x = &a->bookings[i].booking_get_ok;
        const tg_wire_booking *y = &b->bookings[i].booking_get_ok;
        cr_assert_eq(x->status, y->status, "booking %u: status %s became %s", i,
                     tg_booking_status_name(x->status), tg_booking_status_name(y->status));
        cr_assert_eq(x->deadline_ms, y->deadline_ms, "booking %u: deadline moved", i);
        cr_assert(tg_wire_equal(&a->bookings[i], &b->bookings[i]), "booking %u changed", i);
    }
    cr_assert(tg_wire_equal(&a->availability, &b->availability), "availability changed");
    const __typeof__(a->info.partition_info_ok) *x = &a->info.partition_info_ok;
    const __typeof__(b->info.partition_info_ok) *y = &b->info.partition_info_ok;
    cr_assert_eq(x->bookings_created, y->bookings_created);
    cr_assert_eq(x->log_head, y->log_head, "log head %llu became %llu",
                 (unsigned long long)x->log_head, (unsigned long long)y->log_head);
    cr_assert_eq(x->log_persisted, y->log_persisted);
    cr_assert_eq(x->segment_bytes, y->segment_bytes);
}

static void start_rest_unit(uint32_t hold_ttl_ms)
{
    hx_unit_init(&unit, "rst");
    hx_layout l = {.partition_id = P, .event_id = 77, .sections = 2, .rows = 4, .seats = 25,
                   .hold_ttl_ms = hold_ttl_ms, .log_records = 8192};
    hx_write_layout(&unit, &l);
    hx_add_flag(&unit, "--sweep-interval-ms");
    hx_add_flag(&unit, "20");
    hx_start(&unit);
    client = hx_client(&unit, P, 8);
}

/* Bookings in every state; ids[] receives them in this order. */
static void make_bookings(tg_booking_id *ids)
{
    tg_booking_id created = hx_booking_create(client, P, ALICE);
    must(hx_hold(client, created, ALICE, (uint32_t[]){0, 1, 2}, 3, &rep), "hold created");
    tg_booking_id empty = hx_booking_create(client, P, BOB);
    tg_booking_id pending = hx_booking_create(client, P, ALICE);
    must(hx_hold(client, pending, ALICE, (uint32_t[]){10, 11}, 2, &rep), "hold pending");
    must(booking_op(TG_WIRE_PAYMENT_BEGIN, pending, ALICE, client, &rep), "begin");
    tg_booking_id paid = hx_booking_create(client, P, BOB);
    must(hx_hold(client, paid, BOB, (uint32_t[]){20, 120}, 2, &rep), "hold paid");
    must(booking_op(TG_WIRE_PAYMENT_BEGIN, paid, BOB, client, &rep), "begin paid");
    must(booking_op(TG_WIRE_PAYMENT_CONFIRM, paid, 0, client, &rep), "confirm");
    tg_booking_id cancelled = hx_booking_create(client, P, ALICE);
    must(hx_hold(client, cancelled, ALICE, (uint32_t[]){30, 31}, 2, &rep), "hold cancelled");
    must(booking_op(TG_WIRE_BOOKING_CANCEL, cancelled, ALICE, client, &rep), "cancel");
    tg_booking_id failed = hx_booking_create(client, P, BOB);
    must(hx_hold(client, failed, BOB, (uint32_t[]){40}, 1, &rep), "hold failed");
    must(booking_op(TG_WIRE_PAYMENT_BEGIN, failed, BOB, client, &rep), "begin failed");
    must(booking_op(TG_WIRE_PAYMENT_FAIL, failed, 0, client, &rep), "fail");
    tg_booking_id released = hx_booking_create(client, P, ALICE);
    must(hx_hold(client, released, ALICE, (uint32_t[]){50, 51, 52}, 3, &rep), "hold released");
    must(release(client, released, ALICE, (uint32_t[]){51}, 1, &rep), "release");
    tg_booking_id best = hx_booking_create(client, P, BOB);
    tg_msg req = {.type = TG_WIRE_SEATS_HOLD_BEST};
    req.seats_hold_best = (__typeof__(req.seats_hold_best)){.booking_id = best, .user_id = BOB,
                                                            .quantity = 4, .section = 1};
    must(hx_call(client, P, &req, &rep), "hold best");
    tg_booking_id readded = hx_booking_create(client, P, ALICE); /* seat 51 again */
    must(hx_hold(client, readded, ALICE, (uint32_t[]){51, 199}, 2, &rep), "hold readded");
    req = (tg_msg){.type = TG_WIRE_SEATS_BLOCK};
    req.seats_block.partition_id = P;
    req.seats_block.seats = (tg_wire_seat_ids){.count = 2, .ids = {60, 61}};
    must(hx_call(client, P, &req, &rep), "block");
    const tg_booking_id all[REST_BOOKINGS] = {created, empty,    pending, paid,   cancelled,
                                              failed,  released, best,    readded};
    memcpy(ids, all, sizeof(all));
}

Test(restart, a_killed_unit_comes_back_with_every_seat_and_booking_as_it_was)
{
    start_rest_unit(600000);
    tg_booking_id ids[REST_BOOKINGS];
    make_bookings(ids);
    snapshot(&before, ids);
    cr_assert_eq(before.bookings[2].booking_get_ok.status, TG_BOOKING_PENDING_PAYMENT);
    cr_assert_eq(before.bookings[3].booking_get_ok.status, TG_BOOKING_PAID);
    cr_assert_eq(before.bookings[4].booking_get_ok.status, TG_BOOKING_CANCELLED);
    cr_assert_eq(before.bookings[5].booking_get_ok.status, TG_BOOKING_FAILED);

    restart();
    snapshot(&after, ids);
    assert_same(&before, &after);

    /* Killed again at once, with nothing changed in between. */
    restart();
    snapshot(&after, ids);
    assert_same(&before, &after);

    /* It carries on: the created booking can still be paid, new bookings
     * continue the sequence, and the released seat is free to hold. */
    must(booking_op(TG_WIRE_PAYMENT_BEGIN, ids[0], ALICE, client, &rep), "begin after restart");
    must(booking_op(TG_WIRE_PAYMENT_CONFIRM, ids[0], 0, client, &rep), "confirm after restart");
    tg_booking_id next = hx_booking_create(client, P, BOB);
    cr_assert_eq(tg_booking_id_seq(next), REST_BOOKINGS + 1, "booking ids do not continue");
    must(hx_hold(client, next, BOB, (uint32_t[]){52 + 1}, 1, &rep), "hold after restart");
    cr_assert_eq(hx_hold(client, next, BOB, (uint32_t[]){0}, 1, &rep), TG_ESEAT_TAKEN);
    hx_stop_ok(&unit);
}

Test(restart, a_hold_still_expires_at_its_own_deadline_after_a_restart)
{
    const uint32_t ttl_ms = 1500;
    start_rest_unit(ttl_ms);
    tg_booking_id b = hx_booking_create(client, P, ALICE);
    must(hx_hold(client, b, ALICE, (uint32_t[]){7, 8}, 2, &rep), "hold");
    must(hx_booking_get(client, b, ALICE, &rep), "get");
    int64_t deadline = rep.booking_get_ok.deadline_ms;
    cr_assert_eq(deadline - rep.booking_get_ok.created_ms, ttl_ms);

    restart();
    must(hx_booking_get(client, b, ALICE, &rep), "get after restart");
    cr_assert_eq(rep.booking_get_ok.deadline_ms, deadline, "the deadline moved");
    cr_assert_eq(rep.booking_get_ok.status, TG_BOOKING_CREATED,
                 "expired early (restart took too long?)");
    int64_t limit = hx_now_ms() + 2 * (int64_t)ttl_ms + 2000;
    while (rep.booking_get_ok.status == TG_BOOKING_CREATED && hx_now_ms() < limit) {
        hx_sleep_ms(10);
        must(hx_booking_get(client, b, ALICE, &rep), "poll");
    }
    cr_assert_eq(rep.booking_get_ok.status, TG_BOOKING_EXPIRED, "never expired");
    must(hx_seat_get(client, P, 7, &rep), "seat_get");
    cr_assert_eq(tg_seat_word_state(rep.seat_get_ok.seat.word), TG_SEAT_FREE);
    hx_stop_ok(&unit);
}

/* ---- In the middle of a burst -------------------------------------------- */

#define BURST_SEATS 2000u /* 1 section x 40 rows x 50 seats */
#define BURST_THREADS "16"
#define BURST_BOOKINGS_MAX 65536u

/* What the helper knows about a booking from acknowledged replies. */
typedef struct {
    tg_booking_id id;
    uint64_t user;
    uint32_t status;
    bool uncertain; /* a request about it got no reply */
    tg_wire_seat_ids seats;
} known_booking;

static known_booking known[BURST_BOOKINGS_MAX];
static uint32_t known_count;

static tg_seat_state implied_state(uint32_t status)
{
    switch (status) {
    case TG_BOOKING_CREATED: return TG_SEAT_SELECTED;
    case TG_BOOKING_PENDING_PAYMENT: return TG_SEAT_RESERVED;
    case TG_BOOKING_PAID: return TG_SEAT_SOLD;
    default: return TG_SEAT_FREE;
    }
}

static uint64_t words[BURST_SEATS];
static tg_wire_counts burst_rows[64];

/* Invariants of the partition, read through the wire. */
static void assert_consistent(void)
{
    tg_msg av;
    hx_availability(client, P, &av, burst_rows);
    cr_assert_eq(hx_counts_sum(&av.availability_ok.totals), BURST_SEATS);
    for (uint32_t r = 0; r < av.availability_ok.row_count; r++) {
        cr_assert_eq(hx_counts_sum(&burst_rows[r]), 50u, "row %u does not add up", r);
    }
    hx_seat_words(client, P, BURST_SEATS, words);
    uint32_t recount[TG_SEAT_STATE_COUNT] = {0};
    for (uint32_t seat = 0; seat < BURST_SEATS; seat++) {
        tg_seat_state st = tg_seat_word_state(words[seat]);
        recount[st]++;
        if (st == TG_SEAT_FREE || st == TG_SEAT_BLOCKED) {
            cr_assert_eq(tg_seat_word_booking(words[seat]), 0u);
            continue;
        }
        tg_booking_id b = tg_booking_id_make(P, tg_seat_word_booking(words[seat]));
        cr_assert_eq(hx_booking_get(client, b, 0, &rep), TG_OK, "seat %u names a missing booking",
                     seat);
        cr_assert_eq(implied_state(rep.booking_get_ok.status), st,
                     "seat %u is %s in a booking %s", seat, tg_seat_state_name(st),
                     tg_booking_status_name(rep.booking_get_ok.status));
        bool listed = false;
        for (uint32_t i = 0; i < rep.booking_get_ok.seats.count; i++) {
            listed |= rep.booking_get_ok.seats.ids[i] == seat;
        }
        cr_assert(listed, "seat %u is not in its booking's seat list", seat);
    }
    for (uint32_t s = 0; s < TG_SEAT_STATE_COUNT; s++) {
        cr_assert_eq(recount[s], av.availability_ok.totals.by_state[s],
                     "%s: %u seats, availability says %u", tg_seat_state_name((tg_seat_state)s),
                     recount[s], av.availability_ok.totals.by_state[s]);
    }
}

/* Every booking made: its seats are in the state its status implies. */
static void assert_bookings_match_seats(void)
{
    tg_msg info;
    partition_info(&info);
    uint64_t made = info.partition_info_ok.bookings_created;
    for (uint32_t seq = 1; seq <= made; seq++) {
        cr_assert_eq(hx_booking_get(client, tg_booking_id_make(P, seq), 0, &rep), TG_OK,
                     "booking %u is gone", seq);
        tg_seat_state want = implied_state(rep.booking_get_ok.status);
        if (want == TG_SEAT_FREE) {
            cr_assert_eq(rep.booking_get_ok.seats.count, 0u, "ended booking %u holds seats",
                         seq);
        }
        for (uint32_t i = 0; i < rep.booking_get_ok.seats.count; i++) {
            uint64_t w = words[rep.booking_get_ok.seats.ids[i]];
            cr_assert_eq(tg_seat_word_state(w), want, "booking %u: seat %u is %s", seq,
                         rep.booking_get_ok.seats.ids[i],
                         tg_seat_state_name(tg_seat_word_state(w)));
            cr_assert_eq(tg_seat_word_booking(w), seq);
        }
    }
}

/* Every acknowledged operation survived the kill; returns how many
 * bookings were checked. */
static uint32_t assert_acknowledged_survived(void)
{
    uint32_t checked = 0;
    for (uint32_t i = 0; i < known_count; i++) {
        const known_booking *k = &known[i];
        cr_assert_eq(hx_booking_get(client, k->id, k->user, &rep), TG_OK,
                     "an acknowledged booking is gone");
        if (k->uncertain) {
            continue;
        }
        cr_assert_eq(rep.booking_get_ok.status, k->status, "booking %llu: %s, want %s",
                     (unsigned long long)k->id, tg_booking_status_name(rep.booking_get_ok.status),
                     tg_booking_status_name(k->status));
        cr_assert_eq(rep.booking_get_ok.seats.count, k->seats.count,
                     "booking %llu: %u seats, want %u", (unsigned long long)k->id,
                     rep.booking_get_ok.seats.count, k->seats.count);
        cr_assert(memcmp(rep.booking_get_ok.seats.ids, k->seats.ids,
                         sizeof(uint32_t) * k->seats.count) == 0);
        checked++;
    }
    return checked;
}

/* "booking ID USER STATUS UNCERTAIN COUNT SEAT..." */
static void parse_booking(const char *line)
{
    cr_assert(known_count < BURST_BOOKINGS_MAX);
    known_booking *k = &known[known_count++];
    unsigned long long id, user;
    unsigned status, count;
    int uncertain, used = 0;
    cr_assert_eq(sscanf(line, "booking %llu %llu %u %d %u%n", &id, &user, &status, &uncertain,
                        &count, &used),
                 5, "bad line from it_load: %s", line);
    cr_assert(count <= TG_BOOKING_SEATS_MAX);
    *k = (known_booking){.id = id, .user = user, .status = status, .uncertain = uncertain != 0,
                         .seats = {.count = count}};
    const char *p = line + used;
    for (uint32_t i = 0; i < count; i++) {
        int n = 0;
        cr_assert_eq(sscanf(p, " %u%n", &k->seats.ids[i], &n), 1, "bad seats: %s", line);
        p += n;
    }
}

/* Runs the helper's burst until `kill_after` operations were acknowledged,
 * kills the unit, and collects what the helper was told.  Returns the
 * operations acknowledged before the kill. */
static uint32_t burst_then_kill(uint32_t cycle, uint32_t kill_after, uint32_t *uncertain)
{
    static hx_helper h;
    static char line[4096];
    char seed[32];
    char partition[16];
    char seats[16];
    snprintf(seed, sizeof(seed), "%u", 1000003u * (cycle + 1));
    snprintf(partition, sizeof(partition), "%u", P);
    snprintf(seats, sizeof(seats), "%u", BURST_SEATS);
    char *argv[] = {(char *)hx_load_bin(), "burst", unit.rep_url, partition, BURST_THREADS,
                    seats, seed, NULL};
    hx_helper_start(&h, argv);
    cr_assert(hx_helper_line(&h, line, sizeof(line), 5000) && strcmp(line, "ready") == 0,
              "it_load did not start");
    uint32_t acked = 0;
    int64_t limit = hx_now_ms() + 20000; /* bounded, even if the burst stalls */
    while (acked < kill_after && hx_now_ms() < limit &&
           hx_helper_line(&h, line, sizeof(line), 5000)) {
        cr_assert(sscanf(line, "progress %u", &acked) == 1, "it_load: %s", line);
    }
    hx_kill(&unit);
    hx_helper_stop(&h);
    known_count = 0;
    *uncertain = 0;
    bool ended = false;
    while (!ended && hx_helper_line(&h, line, sizeof(line), 15000)) {
        if (strncmp(line, "booking ", 8) == 0) {
            parse_booking(line);
            *uncertain += known[known_count - 1].uncertain;
        } else if (strncmp(line, "unexpected ", 11) == 0) {
            cr_assert_fail("it_load: %s", line);
        } else {
            ended = strncmp(line, "end ", 4) == 0;
        }
    }
    cr_assert(ended, "it_load did not report");
    int status = hx_helper_wait(&h, 5000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "it_load: status %#x", status);
    cr_assert(acked >= kill_after / 2, "the burst never got going (%u operations)", acked);
    return acked;
}

Test(restart, a_kill_during_a_burst_of_holds_leaves_a_consistent_partition)
{
    hx_unit_init(&unit, "brst");
    hx_layout l = {.partition_id = P, .event_id = 78, .sections = 1, .rows = 40, .seats = 50,
                   .log_records = 1u << 16, .booking_capacity = 1u << 16};
    hx_write_layout(&unit, &l);
    hx_start(&unit);

    const uint32_t kill_after[] = {200, 1500, 3000};
    for (uint32_t cycle = 0; cycle < 3; cycle++) {
        uint32_t uncertain = 0;
        uint32_t acked = burst_then_kill(cycle, kill_after[cycle], &uncertain);
        hx_start(&unit);
        client = hx_client(&unit, P, 8);
        assert_consistent();
        assert_bookings_match_seats();
        uint32_t checked = assert_acknowledged_survived();
        cr_log_info("cycle %u: killed after %u acknowledged operations, %u requests unanswered; "
                    "%u bookings checked",
                    cycle, acked, uncertain, checked);
        hx_client_close(client);
        client = NULL;
    }

    /* And once more, killed at rest after the recoveries. */
    client = hx_client(&unit, P, 8);
    restart();
    assert_consistent();
    assert_bookings_match_seats();
    hx_stop_ok(&unit);
}

/*
 * failover_test.c — backups placed by tixgrid-manager and failover of a
 * dead primary, with real processes: a private PostgreSQL (pg.h), one
 * manager, and units (harness.h) that join it with --manager.
 *
 *   - a unit that joins the grid is made the backup of a partition whose
 *     primary is alive (grid_partitions lists it, the epoch rises), and the
 *     primary fills it by state transfer: its copy matches seat for seat.
 *
 *   - the primary killed with SIGKILL: the manager sees its connection
 *     close (the failure timeout is 10 s there, so nothing else could be
 *     that quick), its in-sync backup is promoted at a new epoch, a new
 *     backup is placed on the third unit, and the new primary serves holds;
 *     the time from the kill to the first hold it acknowledges is measured
 *     and printed; every hold acknowledged before the kill is on it, seat
 *     for seat, and no seat is held twice.
 *
 *   - a primary frozen (SIGSTOP) until its backup was promoted, then let go
 *     (SIGCONT), acknowledges none of the holds sent to it afterwards, soon
 *     refuses them (it serves the partition as a backup), and none of them
 *     is on the new primary.
 *
 *   - a deposed primary whose copy went another way than its successor's
 *     (a hold it applied but could not replicate, while the successor
 *     sold another seat at the same sequence number) is named the new
 *     primary's backup once it is back: it is filled again by state
 *     transfer, not by a delta, and ends equal to the new primary, seat for
 *     seat, and in sync.
 *
 *   - the backup made to refuse every replication message (a file in the
 *     folder TIXGRID_TEST_REPL_REFUSE_DIR names): holds asked of the
 *     primary are not acknowledged while the map names it (it still
 *     reports itself in sync, so the primary must not answer without it);
 *     the manager drops it after the failure timeout, the primary sells
 *     again, the new backup goes to the third unit, and after the
 *     primary's SIGKILL that one is promoted with every hold.
 *
 * The map is read from PostgreSQL (the manager writes it before it
 * publishes it).  Every wait is bounded; the suite's .fini kills what is
 * still running and removes the folder.
 */
#include "harness.h"
#include "pg.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define P         1u
#define ROWS      10u
#define PER_ROW   20u
#define SEATS     (ROWS * PER_ROW)
#define USER      UINT64_C(1001)
#define SETTLE_MS 8000
#define RUN_MS    10000

static char dir[64];
static pgt_server *pg;
static PGconn *db;
static pid_t manager_pid;
static char manager_url[96], manager_pub[96], manager_log[96];
static hx_run_result run_result;
static tg_msg rep; /* large: keep it off the stack */
static uint64_t words_a[SEATS], words_b[SEATS];

static void fini(void)
{
    hx_fini_all();
    if (manager_pid > 0) {
        kill(manager_pid, SIGKILL);
        waitpid(manager_pid, NULL, 0);
        manager_pid = 0;
    }
    if (db != NULL) {
        PQfinish(db);
        db = NULL;
    }
    pgt_fini_all();
    if (dir[0] != '\0') {
        char *const argv[] = {"/bin/rm", "-rf", dir, NULL};
        hx_run(argv, RUN_MS, &run_result);
    }
    dir[0] = '\0';
}

TestSuite(failover, .fini = fini, .timeout = 60);

/* PostgreSQL with the schema, event 1 and its one partition of SEATS seats,
 * nobody's yet; then the manager (default backups: 1) with this failure
 * timeout (a string, as the flag takes it). */
static void grid_start_with(const char *failure_timeout_ms)
{
    snprintf(dir, sizeof(dir), "/tmp/tixgrid-fo-%ld-XXXXXX", (long)getpid());
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    pg = pgt_start(&(pgt_options){.fsync_off = true});
    pgt_run_result *r = malloc(sizeof(*r));
    cr_assert(r != NULL);
    pgt_persister(r, pg, NULL, (const char *const[]){"migrate", NULL});
    cr_assert_eq(pgt_exit_code(r), 0, "migrate failed: %s", r->err);
    free(r);
    db = pgt_connect(pg);
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (id, title, artist, venue, starts_at, status)"
             " VALUES (1, 'Failover', 'The Testers', 'Hall', now() + interval '30 days',"
             " 'on_sale');"
             "INSERT INTO grid_partitions (partition_id, event_id, first_seat, seat_count, epoch)"
             " VALUES (%u, 1, 0, %u, 1);",
             P, SEATS);
    pgt_exec(db, sql);
    snprintf(manager_url, sizeof(manager_url), "ipc://%s/mgr.rep", dir);
    snprintf(manager_pub, sizeof(manager_pub), "ipc://%s/mgr.pub", dir);
    snprintf(manager_log, sizeof(manager_log), "%s/mgr.log", dir);
    const char *argv[] = {getenv("TIXGRID_MANAGER_BIN"),
                          "--name",
                          "mgr",
                          "--listen",
                          manager_url,
                          "--pub",
                          manager_pub,
                          "--db",
                          pg->conninfo,
                          "--failure-timeout-ms",
                          failure_timeout_ms,
                          NULL};
    cr_assert(argv[0] != NULL, "TIXGRID_MANAGER_BIN is not set (run through meson test)");
    manager_pid = hx_spawn_process(argv, NULL, manager_log);
}

/* The same at the manager's default failure timeout. */
static void grid_start(void)
{
    grid_start_with("1000");
}

/* A unit in the grid, with the partition (loaded from a layout) or empty. */
static void unit_start(hx_unit *u, bool with_partition, const char *zone)
{
    hx_unit_init(u, "fo");
    if (with_partition) {
        hx_write_layout(u, &(hx_layout){.partition_id = P,
                                        .event_id = 1,
                                        .sections = 1,
                                        .rows = ROWS,
                                        .seats = PER_ROW,
                                        .log_records = 1u << 14});
    }
    hx_add_flag(u, "--manager");
    hx_add_flag(u, manager_url);
    hx_add_flag(u, "--zone");
    hx_add_flag(u, zone);
    hx_start(u);
}

/* The partition's row as "primary|backups|epoch". */
static const char *placement(void)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT COALESCE(primary_pu, '') || '|' || array_to_string(backup_pus, ',') || '|'"
             " || epoch FROM grid_partitions WHERE partition_id = %u",
             P);
    return pgt_query_text(db, sql);
}

/* Waits until grid_partitions names primary and backups; returns the epoch. */
static int64_t wait_placed(const hx_unit *primary, const hx_unit *backup, int timeout_ms)
{
    char want[2 * TG_PU_NAME_BYTES + 4];
    snprintf(want, sizeof(want), "%s|%s|", primary->name, backup->name);
    int64_t t0 = hx_now_ms();
    const char *row = placement();
    while (strncmp(row, want, strlen(want)) != 0 && hx_now_ms() - t0 < timeout_ms) {
        hx_sleep_ms(20);
        row = placement();
    }
    cr_assert(strncmp(row, want, strlen(want)) == 0, "grid_partitions says %s, wanted %s...", row,
              want);
    return strtoll(row + strlen(want), NULL, 10);
}

/* Holds `per` seats per booking from seat first on, count seats in all;
 * every hold must be acknowledged. */
static void sell(tg_client *c, uint32_t first, uint32_t count, uint32_t per)
{
    for (uint32_t s = first; s < first + count; s += per) {
        tg_booking_id b = hx_booking_create(c, P, USER);
        uint32_t seats[8];
        for (uint32_t k = 0; k < per; k++) {
            seats[k] = s + k;
        }
        tg_err err = hx_hold(c, b, USER, seats, per, &rep);
        cr_assert_eq(err, TG_OK, "hold of seats %u..%u: %s", s, s + per - 1, tg_errname(err));
    }
}

/* Every seat's word from the unit behind c, or false when it does not
 * serve reads of the partition yet (a backup being filled). */
static bool seat_words_try(tg_client *c, uint64_t *words)
{
    for (uint32_t next = 0; next < SEATS;) {
        tg_msg req = {.type = TG_WIRE_SEATS_LIST};
        req.seats_list = (__typeof__(req.seats_list)){.partition_id = P,
                                                      .first_seat = next,
                                                      .count = SEATS,
                                                      .state = -1,
                                                      .row = -1,
                                                      .section = -1};
        tg_err err = tg_client_call(c, P, &req, HX_CALL_TIMEOUT_MS, hx_space(), &rep);
        if (err != TG_OK || rep.type != TG_WIRE_SEATS_LIST_OK ||
            rep.seats_list_ok.seat_count == 0) {
            return false;
        }
        for (uint32_t i = 0; i < rep.seats_list_ok.seat_count && next < SEATS; i++) {
            words[next++] = rep.seats_list_ok.seats[i].word;
        }
    }
    return true;
}

/* Waits until the backup's seat words equal the primary's. */
static void wait_copies_equal(tg_client *a, tg_client *b, int timeout_ms)
{
    int64_t t0 = hx_now_ms();
    bool same = false;
    while (!same && hx_now_ms() - t0 < timeout_ms) {
        same = seat_words_try(a, words_a) && seat_words_try(b, words_b) &&
               memcmp(words_a, words_b, sizeof(words_a)) == 0;
        if (!same) {
            hx_sleep_ms(50);
        }
    }
    cr_assert(same, "the backup's copy differs from the primary's after %d ms", timeout_ms);
}

/* Polls `tixgridctl status` until the partition's REPL LAG cell reads
 * want (at most timeout_ms). */
static void wait_repl_cell(const char *want, int timeout_ms)
{
    const char *ctl = getenv("TIXGRIDCTL_BIN");
    cr_assert(ctl != NULL, "TIXGRIDCTL_BIN is not set (run through meson test)");
    char *const argv[] = {(char *)ctl, "--manager", manager_url, "status", NULL};
    int64_t t0 = hx_now_ms();
    do {
        hx_run(argv, RUN_MS, &run_result);
        if (strstr(run_result.out, want) != NULL) {
            return;
        }
        hx_sleep_ms(50);
    } while (hx_now_ms() - t0 < timeout_ms);
    cr_assert_fail("the status never showed REPL LAG \"%s\":\n%s", want, run_result.out);
}

Test(failover, a_unit_that_joins_is_made_a_backup_and_filled_by_state_transfer)
{
    static hx_unit a, b;
    grid_start();
    unit_start(&a, true, "zone-a");
    tg_client *ca = hx_client(&a, P, 16);
    sell(ca, 0, 40, 2); /* before the backup exists: it comes by state transfer */
    unit_start(&b, false, "zone-b");
    int64_t epoch = wait_placed(&a, &b, SETTLE_MS);
    cr_assert_geq(epoch, 3, "placed (2), then a backup added (3): got %lld", (long long)epoch);
    tg_client *cb = hx_client(&b, P, 16);
    wait_copies_equal(ca, cb, SETTLE_MS);
    sell(ca, 40, 40, 4); /* streamed, acknowledged once the backup applied them */
    hx_seat_words(ca, P, SEATS, words_a);
    hx_seat_words(cb, P, SEATS, words_b);
    cr_assert(memcmp(words_a, words_b, sizeof(words_a)) == 0,
              "an acknowledged hold is not on the backup");
    uint32_t held = 0;
    for (uint32_t s = 0; s < SEATS; s++) {
        held += tg_seat_word_state(words_b[s]) == TG_SEAT_SELECTED ? 1 : 0;
    }
    cr_assert_eq(held, 80u);
    wait_repl_cell(" 0 (1/1 in sync)", SETTLE_MS); /* what an operator sees once it is quiet */
    hx_client_close(ca);
    hx_client_close(cb);
}

/* The partition's backups as grid_partitions lists them ("a,b"). */
static const char *backups_now(void)
{
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SELECT array_to_string(backup_pus, ',') FROM grid_partitions WHERE partition_id = %u",
             P);
    return pgt_query_text(db, sql);
}

/* Waits until the partition has a backup; returns which of the units. */
static hx_unit *wait_any_backup(hx_unit *candidates, uint32_t n, int timeout_ms)
{
    int64_t t0 = hx_now_ms();
    while (hx_now_ms() - t0 < timeout_ms) {
        const char *list = backups_now();
        for (uint32_t i = 0; i < n; i++) {
            if (list[0] != '\0' && strcmp(list, candidates[i].name) == 0) {
                return &candidates[i];
            }
        }
        hx_sleep_ms(20);
    }
    cr_assert_fail("no backup placed within %d ms (backups: '%s')", timeout_ms, backups_now());
    return NULL;
}

/* One hold of seat `seat` in a new booking, asserting nothing: TG_OK only
 * when both were acknowledged. */
static tg_err try_hold(tg_client *c, uint32_t seat, tg_booking_id *out)
{
    tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = P;
    req.booking_create.user_id = USER;
    tg_err err = hx_call(c, P, &req, &rep);
    if (err != TG_OK) {
        return err;
    }
    *out = rep.booking_create_ok.booking_id;
    return hx_hold(c, *out, USER, &seat, 1, &rep);
}

#define ACKED_BOOKINGS    30u
#define ACKED_PER         2u
/* The failure timeout 1000 + interval 100 + map and promotion, with room. */
#define FAILOVER_BOUND_MS 3000

static tg_booking_id acked[ACKED_BOOKINGS];

/* Holds ACKED_BOOKINGS bookings of ACKED_PER seats from seat 0 on. */
static void sell_acked(tg_client *c)
{
    for (uint32_t k = 0; k < ACKED_BOOKINGS; k++) {
        acked[k] = hx_booking_create(c, P, USER);
        uint32_t seats[ACKED_PER] = {k * ACKED_PER, k * ACKED_PER + 1};
        tg_err err = hx_hold(c, acked[k], USER, seats, ACKED_PER, &rep);
        cr_assert_eq(err, TG_OK, "hold %u: %s", k, tg_errname(err));
    }
}

/* Every acknowledged hold is on the unit behind c, each seat held by its
 * booking; the other seats are free but for `extra` held by other bookings. */
static void assert_acked_present(tg_client *c, uint32_t extra)
{
    hx_seat_words(c, P, SEATS, words_a);
    uint32_t selected = 0;
    for (uint32_t s = 0; s < SEATS; s++) {
        selected += tg_seat_word_state(words_a[s]) == TG_SEAT_SELECTED ? 1 : 0;
    }
    for (uint32_t k = 0; k < ACKED_BOOKINGS; k++) {
        for (uint32_t j = 0; j < ACKED_PER; j++) {
            uint64_t w = words_a[k * ACKED_PER + j];
            cr_assert_eq(tg_seat_word_state(w), TG_SEAT_SELECTED, "seat %u lost its hold",
                         k * ACKED_PER + j);
            cr_assert_eq(tg_seat_word_booking(w), (uint32_t)(acked[k] & 0xffffffffu),
                         "seat %u is held by another booking", k * ACKED_PER + j);
        }
    }
    cr_assert_eq(selected, ACKED_BOOKINGS * ACKED_PER + extra, "held seats: %u", selected);
}

/* The failure timeout is 10 s here: a failover within FAILOVER_BOUND_MS
 * comes from the killed unit's connection to the manager closing, which
 * the manager gives one heartbeat interval to come back. */
Test(failover, a_killed_primary_is_replaced_by_its_backup_with_every_acknowledged_hold)
{
    static hx_unit a, others[2];
    grid_start_with("10000");
    unit_start(&a, true, "zone-a");
    unit_start(&others[0], false, "zone-b");
    unit_start(&others[1], false, "zone-c");
    hx_unit *b = wait_any_backup(others, 2, SETTLE_MS);
    hx_unit *c3 = b == &others[0] ? &others[1] : &others[0];
    tg_client *ca = hx_client(&a, P, 16);
    tg_client *cb = hx_client(b, P, 16);
    wait_copies_equal(ca, cb, SETTLE_MS);
    sell_acked(ca);

    hx_kill(&a); /* closes ca first */
    int64_t t0 = hx_now_ms();
    tg_booking_id first = 0;
    tg_err err = TG_EUNAVAILABLE;
    uint32_t seat = SEATS - 1;
    while (err != TG_OK && hx_now_ms() - t0 < 10000) {
        err = try_hold(cb, seat, &first);
        if (err != TG_OK) {
            hx_sleep_ms(5);
        }
    }
    int64_t failover_ms = hx_now_ms() - t0;
    cr_assert_eq(err, TG_OK, "the backup never served a hold: %s", tg_errname(err));
    printf("# failover: %lld ms from SIGKILL of the primary to the first hold "
           "acknowledged by the promoted backup\n",
           (long long)failover_ms);
    fflush(stdout); /* a TAP comment: meson's log keeps it */
    cr_assert_lt(failover_ms, FAILOVER_BOUND_MS);
    cr_assert(hx_file_contains(manager_log, "declared dead: its connection closed"),
              "the manager's log (%s) does not say why the unit is dead", manager_log);

    assert_acked_present(cb, 1);
    tg_booking_id twice = 0;
    cr_assert_eq(try_hold(cb, 0, &twice), TG_ESEAT_TAKEN,
                 "a seat held before the kill is held again");
    int64_t epoch = wait_placed(b, c3, SETTLE_MS);
    cr_assert_geq(epoch, 4, "placed, backup, promoted: got %lld", (long long)epoch);
    tg_client *cc = hx_client(c3, P, 16);
    wait_copies_equal(cb, cc, SETTLE_MS); /* the new backup was filled */
    hx_client_close(cb);
    hx_client_close(cc);
}

/* Waits until grid_partitions names primary as the partition's primary. */
static void wait_primary(const hx_unit *primary, int timeout_ms)
{
    char want[TG_PU_NAME_BYTES + 2];
    snprintf(want, sizeof(want), "%s|", primary->name);
    int64_t t0 = hx_now_ms();
    const char *row = placement();
    while (strncmp(row, want, strlen(want)) != 0 && hx_now_ms() - t0 < timeout_ms) {
        hx_sleep_ms(20);
        row = placement();
    }
    cr_assert(strncmp(row, want, strlen(want)) == 0, "grid_partitions says %s, wanted %s...", row,
              want);
}

/* One request, waiting at most timeout_ms: TG_OK only when acknowledged. */
static tg_err call_within(tg_client *c, const tg_msg *req, uint32_t timeout_ms)
{
    tg_err err = tg_client_call(c, P, req, timeout_ms, hx_space(), &rep);
    return err != TG_OK ? err : rep.type == TG_WIRE_ERROR ? (tg_err)rep.error.code : TG_OK;
}

/* Asks c for a hold of seat in the existing booking b, and for a new
 * booking: neither may be acknowledged.  Returns how many were refused
 * with unavailable (the partition is no longer served there). */
static uint32_t assert_nothing_acknowledged(tg_client *c, tg_booking_id b, uint32_t seat)
{
    tg_msg req = hx_hold_one(b, USER, seat);
    tg_err hold = call_within(c, &req, 1000);
    cr_assert_neq(hold, TG_OK, "the deposed primary acknowledged a hold of seat %u", seat);
    req = (tg_msg){.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = P;
    req.booking_create.user_id = USER;
    tg_err create = call_within(c, &req, 1000);
    cr_assert_neq(create, TG_OK, "the deposed primary acknowledged a new booking");
    return (hold == TG_EUNAVAILABLE ? 1u : 0u) + (create == TG_EUNAVAILABLE ? 1u : 0u);
}

#define LATE_FIRST 150u /* seats the frozen primary is asked for after it was replaced */
#define LATE_COUNT 10u

Test(failover, a_frozen_primary_acknowledges_nothing_after_it_was_replaced)
{
    static hx_unit a, others[2];
    grid_start();
    unit_start(&a, true, "zone-a");
    unit_start(&others[0], false, "zone-b");
    unit_start(&others[1], false, "zone-c");
    hx_unit *b = wait_any_backup(others, 2, SETTLE_MS);
    tg_client *ca = hx_client(&a, P, 16);
    tg_client *cb = hx_client(b, P, 16);
    wait_copies_equal(ca, cb, SETTLE_MS);
    sell_acked(ca);

    cr_assert_eq(kill(a.pid, SIGSTOP), 0);
    wait_primary(b, SETTLE_MS);
    tg_booking_id first = 0;
    tg_err err = TG_EUNAVAILABLE;
    for (int64_t t0 = hx_now_ms(); err != TG_OK && hx_now_ms() - t0 < SETTLE_MS;) {
        err = try_hold(cb, SEATS - 1, &first);
        hx_sleep_ms(err != TG_OK ? 5 : 0);
    }
    cr_assert_eq(err, TG_OK, "the promoted backup does not serve: %s", tg_errname(err));
    cr_assert_eq(kill(a.pid, SIGCONT), 0);

    uint32_t refused = 0;
    for (uint32_t k = 0; k < LATE_COUNT; k++) {
        refused += assert_nothing_acknowledged(ca, acked[k], LATE_FIRST + k);
    }
    cr_assert_gt(refused, 0u, "the deposed primary never said it no longer serves the partition");
    assert_acked_present(cb, 1);
    hx_seat_words(cb, P, SEATS, words_b);
    for (uint32_t k = 0; k < LATE_COUNT; k++) {
        cr_assert_eq(tg_seat_word_state(words_b[LATE_FIRST + k]), TG_SEAT_FREE,
                     "seat %u, asked of the deposed primary, is held on the new one",
                     LATE_FIRST + k);
    }
    hx_client_close(ca);
    hx_client_close(cb);
}

#define CUT_FIRST 100u /* seats asked of the primary while its backup refuses replication */
#define CUT_COUNT 5u

/* True when grid_partitions lists u among the partition's backups. */
static bool is_backup_now(const hx_unit *u)
{
    const char *list = backups_now();
    size_t n = strlen(u->name);
    for (const char *at = strstr(list, u->name); at != NULL; at = strstr(at + 1, u->name)) {
        if ((at == list || at[-1] == ',') && (at[n] == '\0' || at[n] == ',')) {
            return true;
        }
    }
    return false;
}

Test(failover, a_backup_its_primary_cannot_replicate_to_is_dropped_and_never_promoted)
{
    static hx_unit a, others[2];
    grid_start();
    cr_assert_eq(setenv("TIXGRID_TEST_REPL_REFUSE_DIR", dir, 1), 0);
    unit_start(&a, true, "zone-a");
    unit_start(&others[0], false, "zone-b");
    unit_start(&others[1], false, "zone-c");
    hx_unit *b = wait_any_backup(others, 2, SETTLE_MS);
    hx_unit *c3 = b == &others[0] ? &others[1] : &others[0];
    tg_client *ca = hx_client(&a, P, 16);
    tg_client *cb = hx_client(b, P, 16);
    wait_copies_equal(ca, cb, SETTLE_MS);
    sell_acked(ca);

    /* The backup refuses: its primary's link leaves "in sync", yet the
     * backup still reports itself in sync to the manager.  While the map
     * names it, the primary acknowledges nothing it lacks. */
    hx_repl_cut(dir, b, true);
    int64_t cut_at = hx_now_ms();
    for (uint32_t k = 0; k < CUT_COUNT; k++) {
        tg_msg req = hx_hold_one(acked[k], USER, CUT_FIRST + k);
        bool acknowledged = call_within(ca, &req, 150) == TG_OK;
        /* The map reaches PostgreSQL before any unit: still listed there
         * after the answer, the backup was still the primary's backup. */
        cr_assert(!acknowledged || !is_backup_now(b),
                  "the hold of seat %u was acknowledged while the backup refused it",
                  CUT_FIRST + k);
    }
    /* The manager sees it apply nothing while its primary is ahead, and
     * drops it after the failure timeout: the primary sells again. */
    while (is_backup_now(b) && hx_now_ms() - cut_at < SETTLE_MS) {
        hx_sleep_ms(20);
    }
    int64_t dropped_ms = hx_now_ms() - cut_at;
    cr_assert(!is_backup_now(b), "the cut backup is still in the map after %d ms", SETTLE_MS);
    tg_booking_id late = 0;
    tg_err err = try_hold(ca, SEATS - 2, &late);
    int64_t served_ms = hx_now_ms() - cut_at;
    cr_assert_eq(err, TG_OK, "the primary did not sell again without the cut backup: %s",
                 tg_errname(err));
    printf("# cut: backup dropped from the map %lld ms after the cut; the primary acknowledged "
           "a hold again %lld ms after the cut\n",
           (long long)dropped_ms, (long long)served_ms);
    fflush(stdout);
    cr_assert_lt(dropped_ms, FAILOVER_BOUND_MS);

    /* The new backup goes to the third unit, never back to the cut one. */
    cr_assert(wait_any_backup(c3, 1, SETTLE_MS) == c3);
    tg_client *cc = hx_client(c3, P, 16);
    wait_copies_equal(ca, cc, SETTLE_MS);
    hx_kill(&a); /* closes ca first */
    wait_primary(c3, SETTLE_MS);
    hx_repl_cut(dir, b, false);
    tg_booking_id first = 0;
    err = TG_EUNAVAILABLE;
    for (int64_t t0 = hx_now_ms(); err != TG_OK && hx_now_ms() - t0 < SETTLE_MS;) {
        err = try_hold(cc, SEATS - 1, &first);
        hx_sleep_ms(err != TG_OK ? 5 : 0);
    }
    cr_assert_eq(err, TG_OK, "the new backup never served a hold: %s", tg_errname(err));
    /* Every hold: the acknowledged ones, the late one, the last one, and
     * those of the cut (made by the primary, answered once it stopped
     * waiting, copied to the new backup). */
    assert_acked_present(cc, CUT_COUNT + 2);
    cr_assert_eq(hx_seat_get(cc, P, SEATS - 2, &rep), TG_OK);
    cr_assert_eq(tg_seat_word_booking(rep.seat_get_ok.seat.word), (uint32_t)(late & 0xffffffffu));
    hx_client_close(cb);
    hx_client_close(cc);
}

/* The outcome of one hold sent without waiting. */
typedef struct {
    pthread_mutex_t lock;
    bool done;
    tg_err err;
} pending_hold;

static void pending_cb(void *arg, tg_err err, const tg_msg *reply)
{
    pending_hold *h = arg;
    pthread_mutex_lock(&h->lock);
    h->done = true;
    h->err = err != TG_OK || reply->type != TG_WIRE_ERROR ? err : (tg_err)reply->error.code;
    pthread_mutex_unlock(&h->lock);
}

#define SPLIT_OLD 180u /* held on the old primary only, never acknowledged */
#define SPLIT_NEW 181u /* sold by the new primary at the same sequence number */

Test(failover, a_deposed_primary_whose_copy_went_another_way_is_filled_again)
{
    static hx_unit a, b;
    grid_start();
    cr_assert_eq(setenv("TIXGRID_TEST_REPL_REFUSE_DIR", dir, 1), 0);
    unit_start(&a, true, "zone-a");
    unit_start(&b, false, "zone-b");
    wait_placed(&a, &b, SETTLE_MS);
    tg_client *ca = hx_client(&a, P, 16);
    tg_client *cb = hx_client(&b, P, 16);
    wait_copies_equal(ca, cb, SETTLE_MS);
    sell_acked(ca);
    wait_repl_cell(" 0 (1/1 in sync)", SETTLE_MS);

    /* The backup refusing replication, the primary applies a hold it
     * cannot replicate: its reply waits.  Then the primary freezes and the
     * backup, which never had that record, is promoted (well within the
     * failure timeout of stalling: it is not dropped) and sells another
     * seat at the same sequence number. */
    hx_repl_cut(dir, &b, true);
    static pending_hold h = {.lock = PTHREAD_MUTEX_INITIALIZER};
    tg_msg req = hx_hold_one(acked[0], USER, SPLIT_OLD);
    cr_assert_eq(tg_client_send(ca, P, &req, 20000, NULL, pending_cb, &h), TG_OK);
    hx_sleep_ms(200); /* applied on the old primary, its reply waiting for b */
    hx_freeze(&a);
    hx_repl_cut(dir, &b, false);
    wait_primary(&b, SETTLE_MS);
    tg_booking_id other = 0;
    tg_err err = TG_EUNAVAILABLE;
    for (int64_t t0 = hx_now_ms(); err != TG_OK && hx_now_ms() - t0 < SETTLE_MS;) {
        err = try_hold(cb, SPLIT_NEW, &other);
        hx_sleep_ms(err != TG_OK ? 5 : 0);
    }
    cr_assert_eq(err, TG_OK, "the promoted backup does not serve: %s", tg_errname(err));

    /* Back, the old primary is deposed and named the new one's backup. */
    cr_assert_eq(kill(a.pid, SIGCONT), 0);
    wait_placed(&b, &a, SETTLE_MS);
    wait_copies_equal(cb, ca, SETTLE_MS);
    wait_repl_cell(" 0 (1/1 in sync)", SETTLE_MS);
    /* wait_copies_equal read the new primary into words_a, the old into words_b. */
    cr_assert_eq(tg_seat_word_state(words_a[SPLIT_OLD]), TG_SEAT_FREE,
                 "the hold the old primary never replicated is on the new one");
    cr_assert_eq(tg_seat_word_state(words_b[SPLIT_NEW]), TG_SEAT_SELECTED,
                 "the old primary's copy lacks the new primary's hold");
    pthread_mutex_lock(&h.lock);
    cr_assert(!h.done || h.err != TG_OK,
              "the hold the old primary never replicated was acknowledged");
    pthread_mutex_unlock(&h.lock);

    /* In sync for real: a hold on the new primary is acknowledged only
     * once the old one applied it. */
    tg_booking_id next = 0;
    cr_assert_eq(try_hold(cb, SPLIT_NEW + 1, &next), TG_OK);
    hx_seat_words(ca, P, SEATS, words_a);
    cr_assert_eq(tg_seat_word_state(words_a[SPLIT_NEW + 1]), TG_SEAT_SELECTED,
                 "an acknowledged hold is not on the backup");
    hx_client_close(ca);
    hx_client_close(cb);
}

/*
 * failover_load_test.c — failover under a steady load of holds (suite
 * `load`): a private PostgreSQL (pg.h), managers, three units in three zones
 * (harness.h), the write-behind drain (tixgrid-persister run, following the
 * managers' maps), and a load of single-seat holds kept at LOAD_INFLIGHT
 * requests in flight by this process, which follows the map the manager
 * publishes (tixgrid/mapsub.h) exactly as the gateway does.
 *
 *   - the primary SIGKILLed under load: its in-sync backup is promoted; the
 *     time from the kill to the first hold acknowledged by it (a hold sent
 *     after the kill) is measured, printed and bounded by 1 s (the manager
 *     runs with a 500 ms failure timeout and 50 ms heartbeats);
 *   - the active manager SIGKILLed first, then the primary: the standby has
 *     taken over and fails the partition over all the same;
 *   - the primary frozen (SIGSTOP, and every thread of it seen stopped:
 *     hx_freeze) under load until its backup serves, then let go
 *     (SIGCONT): none of the holds then asked of it directly is
 *     acknowledged, and no hold it acknowledged is missing on the new
 *     primary (the thawed primary may still answer requests it had taken
 *     before the freeze: those must be on the new primary too);
 *   - kill after kill, three times (twenty in scripts/bench failover);
 *   - the link between the primary and its backup cut under load (the
 *     backup refuses every replication message: TIXGRID_TEST_REPL_REFUSE_DIR,
 *     pu/README.md): while the map names it the primary acknowledges no
 *     hold asked of it and the backup sells nothing; the manager drops it
 *     from the map after the failure timeout, the primary sells again, and
 *     the new backup (the third unit) ends equal to it, seat for seat.
 *
 * Both check, seat for seat on the new primary: every acknowledged hold is
 * there in its booking, and no seat is held by a booking it was not asked
 * for (each seat is asked for once, in one booking), so nothing acknowledged
 * is lost and nothing is held twice.  Then, once the drain has caught up
 * with the serving unit's log, PostgreSQL agrees with that unit seat for
 * seat: held in the same booking, or free.  LOAD_RATE holds/s are offered, well
 * over the 5,000/s the checks are asked to hold under; the rate acknowledged
 * before the fault is printed.  It is not a test of speed (a busy machine
 * lets fewer through: scripts/bench measures speed), so only a load that
 * hardly ran, under LOAD_RATE_FLOOR, fails a case.
 *
 * The load's client is never closed: a tg_client that redialled a dead unit
 * can hang nng 1.5.2's teardown (harness.h), and the test process exits
 * right after.  Every wait is bounded.
 */
#include "harness.h"
#include "pg.h"
#include "tixgrid/clock.h"
#include "tixgrid/mapsub.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define P               1u
#define ROWS            128u
#define PER_ROW         512u
#define SEATS           (ROWS * PER_ROW)
#define USER            UINT64_C(1001)
#define BOOKINGS        4096u /* holds go round-robin into these, 16 seats at most each */
#define LOAD_INFLIGHT   64u
#define LOAD_RATE       8000u /* holds/s sent: steady, not as fast as possible */
#define LOAD_RATE_MIN   5000u /* holds/s asked of the checks; under it a note is printed */
#define LOAD_RATE_FLOOR 1000u /* holds/s below which the load did not really run */
#define STEADY_MS       2000
#define AFTER_MS        1500 /* load kept on after the new primary serves */
#define SERVE_BOUND_MS  1000 /* the kill to the first hold the new primary acknowledged */
#define HOLD_TIMEOUT_MS 1000u
#define SETTLE_MS       10000
#define RUN_MS          10000

enum { SEAT_UNSENT, SEAT_SENT, SEAT_ACKED, SEAT_REFUSED };

static char dir[64];
static pgt_server *pg;
static pid_t managers[2], drain;
static char manager_urls[200], manager_pubs[200];
static hx_run_result run_result;
static hx_unit units[3];
/* The managers' timing: 500 ms and 50 ms unless the repeated kills are
 * asked for with others (scripts/bench failover: the defaults). */
static char failure_timeout[16] = "500", heartbeat_interval[16] = "50";
static uint32_t load_rate = LOAD_RATE;

/* The load: written by the main thread (send) and nng's (callbacks). */
static struct {
    tg_client *c;
    tg_booking_id bookings[BOOKINGS];
    atomic_uint next, inflight;
    /* Holds in flight on the current route only: those sent to a unit that
     * died wait for their timeout and must not hold the load back. */
    atomic_uint routed, route_gen;
    char route[TG_URL_BYTES]; /* map_cb's only */
    uint32_t gen_of[SEATS];
    atomic_uint acked;
    int64_t pace_ns;              /* when the load began: LOAD_RATE holds/s from then */
    uint32_t pace_base;           /* load.next then */
    _Atomic int64_t kill_ns;      /* 0 before the kill */
    _Atomic int64_t served_ns;    /* the first ack of a hold sent after the kill */
    _Atomic int64_t cut_ns;       /* the link cut (0: never) */
    _Atomic int64_t heal_ns;      /* the end of the window watched after the cut (0: none) */
    atomic_uint acked_in_cut;     /* holds sent after the cut and acknowledged in the window */
    atomic_uint sent_in_cut;      /* holds sent in the window */
    _Atomic uint64_t epoch;       /* the partition's epoch in the last map published */
    _Atomic uint8_t state[SEATS]; /* SEAT_* */
    int64_t sent_ns[SEATS];
} load;
static uint64_t words[SEATS];

static void fini(void)
{
    hx_fini_all();
    if (drain > 0) {
        kill(drain, SIGKILL);
        waitpid(drain, NULL, 0);
        drain = 0;
    }
    for (int i = 0; i < 2; i++) {
        if (managers[i] > 0) {
            kill(managers[i], SIGKILL);
            waitpid(managers[i], NULL, 0);
            managers[i] = 0;
        }
    }
    pgt_fini_all();
    const char *keep = getenv("TIXGRID_IT_KEEP");
    if (dir[0] != '\0' && (keep == NULL || strcmp(keep, "1") != 0)) {
        char *const argv[] = {"/bin/rm", "-rf", dir, NULL};
        hx_run(argv, RUN_MS, &run_result);
    }
    dir[0] = '\0';
}

TestSuite(failover_load, .fini = fini, .timeout = 90);

/* The write-behind drain, following the managers' published maps. */
static void drain_start(void)
{
    static char db_env[256], log[96];
    snprintf(db_env, sizeof(db_env), "TIXGRID_DB=%s", pg->conninfo);
    snprintf(log, sizeof(log), "%s/drain.log", dir);
    const char *argv[] = {getenv("TIXGRID_PERSISTER_BIN"),
                          "run",
                          "--routes-refresh-ms",
                          "200",
                          "--retry-max-ms",
                          "1000",
                          "--manager-pub",
                          manager_pubs,
                          NULL};
    cr_assert(argv[0] != NULL, "TIXGRID_PERSISTER_BIN is not set (run through meson test)");
    const char *const env[] = {db_env, NULL};
    drain = hx_spawn_process(argv, env, log);
}

/* PostgreSQL with event 1, its seats and its partition; n managers (the
 * first active) and the drain. */
static void grid_start(int n)
{
    snprintf(dir, sizeof(dir), "/tmp/tixgrid-fl-%ld-XXXXXX", (long)getpid());
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    pg = pgt_start(&(pgt_options){.fsync_off = true});
    pgt_run_result *r = malloc(sizeof(*r));
    cr_assert(r != NULL);
    pgt_persister(r, pg, NULL, (const char *const[]){"migrate", NULL});
    cr_assert_eq(pgt_exit_code(r), 0, "migrate failed: %s", r->err);
    free(r);
    PGconn *db = pgt_connect(pg);
    char sql[1024];
    /* The seats as the unit's layout numbers them (one section, rows of
     * PER_ROW): the drain writes their states here. */
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (id, title, artist, venue, starts_at, status)"
             " VALUES (1, 'Load', 'The Testers', 'Hall', now() + interval '30 days', 'on_sale');"
             "INSERT INTO sections (event_id, section_idx, name, price_minor, currency)"
             " VALUES (1, 0, 'S0', 1000, 'EUR');"
             "INSERT INTO seats (event_id, seat_no, partition_id, section_idx, row_name, number,"
             " price_minor)"
             " SELECT 1, r * %u + n - 1, %u, 0, 'R' || r, n, 1000"
             " FROM generate_series(0, %u) r, generate_series(1, %u) n;"
             "INSERT INTO grid_partitions (partition_id, event_id, first_seat, seat_count, epoch)"
             " VALUES (%u, 1, 0, %u, 1);",
             PER_ROW, P, ROWS - 1, PER_ROW, P, SEATS);
    pgt_exec(db, sql);
    PQfinish(db);
    for (int i = 0; i < n; i++) {
        static char url[2][96], pub[2][96], log[2][96], name[2][16];
        snprintf(url[i], sizeof(url[i]), "ipc://%s/mgr%d.rep", dir, i);
        snprintf(pub[i], sizeof(pub[i]), "ipc://%s/mgr%d.pub", dir, i);
        snprintf(log[i], sizeof(log[i]), "%s/mgr%d.log", dir, i);
        snprintf(name[i], sizeof(name[i]), "mgr%d", i);
        const char *argv[] = {getenv("TIXGRID_MANAGER_BIN"),
                              "--name",
                              name[i],
                              "--listen",
                              url[i],
                              "--pub",
                              pub[i],
                              "--db",
                              pg->conninfo,
                              "--failure-timeout-ms",
                              failure_timeout,
                              "--heartbeat-interval-ms",
                              heartbeat_interval,
                              NULL};
        cr_assert(argv[0] != NULL, "TIXGRID_MANAGER_BIN is not set (run through meson test)");
        managers[i] = hx_spawn_process(argv, NULL, log[i]);
        snprintf(manager_urls + strlen(manager_urls), sizeof(manager_urls) - strlen(manager_urls),
                 "%s%s", i > 0 ? "," : "", url[i]);
        snprintf(manager_pubs + strlen(manager_pubs), sizeof(manager_pubs) - strlen(manager_pubs),
                 "%s%s", i > 0 ? "," : "", pub[i]);
        hx_sleep_ms(i == 0 ? 300 : 0); /* the first takes the lock */
    }
    drain_start();
}

static void unit_start(hx_unit *u, bool with_partition, const char *zone)
{
    hx_unit_init(u, "fl");
    if (with_partition) {
        hx_write_layout(u, &(hx_layout){.partition_id = P,
                                        .event_id = 1,
                                        .sections = 1,
                                        .rows = ROWS,
                                        .seats = PER_ROW,
                                        .booking_capacity = 2 * BOOKINGS});
    }
    hx_add_flag(u, "--manager");
    hx_add_flag(u, manager_urls);
    hx_add_flag(u, "--zone");
    hx_add_flag(u, zone);
    hx_start(u);
}

/* On nng's thread: route the partition as the newest published map says. */
static void map_cb(void *arg, const tg_msg *map)
{
    (void)arg;
    for (uint32_t k = 0; k < map->grid_map.placement_count; k++) {
        const tg_wire_placement *p = &map->grid_map.placements[k];
        if (p->partition_id != P || p->primary < 0) {
            continue;
        }
        atomic_store(&load.epoch, p->epoch);
        const tg_wire_member *u = &map->grid_map.members[p->primary];
        const char *url = u->state == TG_MEMBER_DEAD ? "" : u->rep_url;
        if (strcmp(url, load.route) != 0) {
            (void)tg_client_route(load.c, P, url[0] != '\0' ? url : NULL);
            snprintf(load.route, sizeof(load.route), "%s", url);
            atomic_fetch_add(&load.route_gen, 1);
            atomic_store(&load.routed, 0);
        }
    }
}

/* The units' names in grid_partitions' row: "primary|backup". */
static const char *placement(PGconn *db)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(primary_pu, '') || '|' || array_to_string(backup_pus, ',')"
             " FROM grid_partitions WHERE partition_id = %u",
             P);
    return pgt_query_text(db, sql);
}

/* One of our units by name, or NULL. */
static hx_unit *unit_named(const char *name, size_t len)
{
    for (int i = 0; i < 3; i++) {
        if (strlen(units[i].name) == len && strncmp(units[i].name, name, len) == 0) {
            return &units[i];
        }
    }
    return NULL;
}

/* The partition's primary, once it says its link to the backup
 * grid_partitions names is in sync; the backup in *backup. */
static hx_unit *wait_backup_in_sync(PGconn *db, hx_unit **backup)
{
    static tg_msg rep;
    tg_msg req = {.type = TG_WIRE_REPL_STATUS, .repl_status = {.partition_id = P}};
    for (int64_t t0 = hx_now_ms(); hx_now_ms() - t0 < SETTLE_MS; hx_sleep_ms(50)) {
        const char *row = placement(db);
        size_t bar = strcspn(row, "|");
        hx_unit *primary = unit_named(row, bar);
        *backup = row[bar] == '|' ? unit_named(row + bar + 1, strlen(row + bar + 1)) : NULL;
        if (primary == NULL || *backup == NULL || primary->pid == 0) {
            continue;
        }
        if (tg_client_call_to(load.c, primary->rep_url, &req, HX_CALL_TIMEOUT_MS, NULL, &rep) ==
                TG_OK &&
            rep.repl_status_ok.link_count == 1 &&
            strcmp(rep.repl_status_ok.links[0].name, (*backup)->name) == 0 &&
            rep.repl_status_ok.links[0].state == TG_REPL_LINK_IN_SYNC) {
            return primary;
        }
    }
    cr_assert_fail("no backup in sync after %d ms: %s", SETTLE_MS, placement(db));
    return NULL;
}

static void hold_cb(void *arg, tg_err err, const tg_msg *reply)
{
    (void)reply;
    uint32_t i = (uint32_t)(uintptr_t)arg;
    if (err == TG_OK) {
        atomic_store(&load.state[i], SEAT_ACKED);
        atomic_fetch_add(&load.acked, 1);
        int64_t cut_ns = atomic_load(&load.cut_ns), heal_ns = atomic_load(&load.heal_ns);
        if (cut_ns != 0 && load.sent_ns[i] > cut_ns && (heal_ns == 0 || tg_mono_ns() < heal_ns)) {
            atomic_fetch_add(&load.acked_in_cut, 1);
        }
        int64_t kill_ns = atomic_load(&load.kill_ns), none = 0;
        if (kill_ns != 0 && load.sent_ns[i] > kill_ns) {
            atomic_compare_exchange_strong(&load.served_ns, &none, tg_mono_ns());
        }
    } else {
        atomic_store(&load.state[i], SEAT_REFUSED); /* or unknown: never counted as held */
    }
    unsigned routed = atomic_load(&load.routed);
    while (load.gen_of[i] == atomic_load(&load.route_gen) && routed > 0 &&
           !atomic_compare_exchange_weak(&load.routed, &routed, routed - 1)) {
    }
    atomic_fetch_sub(&load.inflight, 1);
}

/* Sends LOAD_RATE holds/s, at most LOAD_INFLIGHT in flight, until until_ns
 * (or the seats run out). */
static void load_until(int64_t until_ns)
{
    int64_t now;
    while ((now = tg_mono_ns()) < until_ns && atomic_load(&load.next) < SEATS) {
        uint64_t due = load.pace_base + (uint64_t)(now - load.pace_ns) * load_rate / 1000000000u;
        if (atomic_load(&load.routed) >= LOAD_INFLIGHT || atomic_load(&load.next) >= due) {
            usleep(100);
            continue;
        }
        uint32_t i = atomic_fetch_add(&load.next, 1);
        tg_msg req = hx_hold_one(load.bookings[i % BOOKINGS], USER, i);
        load.sent_ns[i] = tg_mono_ns();
        int64_t heal_ns = atomic_load(&load.heal_ns);
        if (atomic_load(&load.cut_ns) != 0 && (heal_ns == 0 || load.sent_ns[i] < heal_ns)) {
            atomic_fetch_add(&load.sent_in_cut, 1);
        }
        atomic_store(&load.state[i], SEAT_SENT);
        load.gen_of[i] = atomic_load(&load.route_gen);
        atomic_fetch_add(&load.inflight, 1);
        atomic_fetch_add(&load.routed, 1);
        if (tg_client_send(load.c, P, &req, HOLD_TIMEOUT_MS, NULL, hold_cb, (void *)(uintptr_t)i) !=
            TG_OK) {
            atomic_store(&load.state[i], SEAT_REFUSED); /* not sent: no route yet */
            atomic_fetch_sub(&load.inflight, 1);
            atomic_fetch_sub(&load.routed, 1);
            usleep(1000);
        }
    }
}

static void load_drain(void)
{
    for (int64_t t0 = hx_now_ms(); atomic_load(&load.inflight) > 0 && hx_now_ms() - t0 < 5000;) {
        hx_sleep_ms(10);
    }
    cr_assert_eq(atomic_load(&load.inflight), 0u, "holds still in flight after 5 s");
}

#define DRAIN_TIMEOUT_MS 30000

/* Waits until PostgreSQL holds every change up to the serving unit's log
 * head (the load has stopped). */
static void wait_drained(PGconn *db)
{
    static tg_msg rep;
    tg_msg req = {.type = TG_WIRE_AVAILABILITY, .availability = {.partition_id = P}};
    tg_err err = tg_client_call(load.c, P, &req, HX_CALL_TIMEOUT_MS, hx_space(), &rep);
    cr_assert_eq(err, TG_OK, "availability: %s", tg_strerror(err));
    cr_assert_eq(rep.type, TG_WIRE_AVAILABILITY_OK);
    int64_t head = (int64_t)rep.availability_ok.log_head, persisted = -1;
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(max(last_seq), 0) FROM partition_offsets WHERE partition_id = %u", P);
    for (int64_t t0 = hx_now_ms(); hx_now_ms() - t0 < DRAIN_TIMEOUT_MS; hx_sleep_ms(50)) {
        persisted = pgt_query_i64(db, sql);
        if (persisted >= head) {
            return;
        }
    }
    cr_assert_fail("after %d ms PostgreSQL holds changes up to %lld, the log is at %lld "
                   "(%s/drain.log)",
                   DRAIN_TIMEOUT_MS, (long long)persisted, (long long)head, dir);
}

/* After the drain caught up, PostgreSQL agrees with words (the serving
 * unit's seats) seat for seat: held in the same booking, or free. */
static void assert_pg_agrees(void)
{
    PGconn *db = pgt_connect(pg);
    wait_drained(db);
    PGresult *res = PQexec(db, "SELECT seat_no, status, coalesce(booking_id, 0) FROM seats"
                               " WHERE event_id = 1 ORDER BY seat_no");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    cr_assert_eq(PQntuples(res), (int)SEATS);
    uint32_t held = 0;
    for (uint32_t i = 0; i < SEATS; i++) {
        bool free_in_grid = tg_seat_word_state(words[i]) == TG_SEAT_FREE;
        const char *status = PQgetvalue(res, (int)i, 1);
        uint64_t booking = strtoull(PQgetvalue(res, (int)i, 2), NULL, 10);
        cr_assert_eq(strtoul(PQgetvalue(res, (int)i, 0), NULL, 10), i);
        cr_assert_str_eq(status, free_in_grid ? "FREE" : "SELECTED",
                         "seat %u: the grid has it %s, PostgreSQL %s", i,
                         free_in_grid ? "free" : "held", status);
        cr_assert_eq(booking, free_in_grid ? 0 : load.bookings[i % BOOKINGS],
                     "seat %u: PostgreSQL has it in booking %llu", i,
                     (unsigned long long)booking);
        held += !free_in_grid;
    }
    PQclear(res);
    PQfinish(db);
    printf("# load: PostgreSQL agrees after the drain: %u seats held, %u free\n", held,
           SEATS - held);
    fflush(stdout);
}

/* Every acknowledged hold is on the unit serving the partition now, in its
 * booking, and no seat is held by a booking it was not asked for; then
 * PostgreSQL, once drained, agrees seat for seat. */
static void assert_nothing_lost_or_held_twice(void)
{
    hx_seat_words(load.c, P, SEATS, words);
    uint32_t acked = 0, held = 0;
    for (uint32_t i = 0; i < SEATS; i++) {
        uint32_t want = (uint32_t)(load.bookings[i % BOOKINGS] & 0xffffffffu);
        uint32_t state = tg_seat_word_state(words[i]);
        if (atomic_load(&load.state[i]) == SEAT_ACKED) {
            acked++;
            cr_assert_eq(state, TG_SEAT_SELECTED, "acknowledged hold of seat %u lost", i);
        }
        if (state != TG_SEAT_FREE) {
            held++;
            cr_assert_eq(tg_seat_word_booking(words[i]), want,
                         "seat %u is held by a booking that never asked for it", i);
            cr_assert_neq(atomic_load(&load.state[i]), SEAT_UNSENT, "seat %u never asked", i);
        }
    }
    printf("# load: %u holds acknowledged, %u seats held on the new primary\n", acked, held);
    fflush(stdout);
    assert_pg_agrees();
}

static void bookings_make(void)
{
    for (uint32_t b = 0; b < BOOKINGS; b++) {
        load.bookings[b] = hx_booking_create(load.c, P, USER);
    }
}

/* One round: steady load for steady_ms, SIGKILL of victim, load until the
 * new primary acknowledged a hold sent after the kill and AFTER_MS more.
 * Returns the time from the kill to that hold, in ms; *rate the holds/s
 * acknowledged before the kill. */
static int64_t kill_round(hx_unit *victim, int steady_ms, int64_t bound_ms, double *rate)
{
    atomic_store(&load.kill_ns, 0);
    atomic_store(&load.served_ns, 0);
    uint32_t acked0 = atomic_load(&load.acked);
    int64_t t0 = tg_mono_ns();
    load.pace_ns = t0;
    load.pace_base = atomic_load(&load.next);
    load_until(t0 + (int64_t)steady_ms * 1000000);
    *rate = (double)(atomic_load(&load.acked) - acked0) * 1e9 / (double)(tg_mono_ns() - t0);
    atomic_store(&load.kill_ns, tg_mono_ns());
    cr_assert_eq(kill(victim->pid, SIGKILL), 0);
    waitpid(victim->pid, NULL, 0);
    victim->pid = 0;
    int64_t bound = atomic_load(&load.kill_ns) + bound_ms * 1000000;
    while (atomic_load(&load.served_ns) == 0 && tg_mono_ns() < bound) {
        load_until(tg_mono_ns() + 10 * 1000000);
    }
    int64_t served = atomic_load(&load.served_ns);
    cr_assert_neq(served, 0,
                  "the new primary never acknowledged a hold (%.0f holds/s before the kill, "
                  "%u acknowledged, %u asked)",
                  *rate, atomic_load(&load.acked), atomic_load(&load.next));
    load_until(tg_mono_ns() + (int64_t)AFTER_MS * 1000000);
    load_drain();
    return (served - atomic_load(&load.kill_ns)) / 1000000;
}

/* Fails only a load that hardly ran; says so when the machine let fewer
 * than LOAD_RATE_MIN holds/s through, so a slow run is visible in the log. */
static void assert_load_ran(double rate)
{
    if (rate < LOAD_RATE_MIN) {
        printf("# load: %.0f holds/s acknowledged, under the %u offered and the %u asked for: "
               "the machine was busy\n",
               rate, LOAD_RATE, LOAD_RATE_MIN);
        fflush(stdout);
    }
    cr_assert_geq(rate, LOAD_RATE_FLOOR, "the load ran at %.0f holds/s only", rate);
}

/* The common run of the two cases: bookings, one kill under load, the checks. */
static void kill_under_load(hx_unit *victim, const char *what)
{
    bookings_make();
    double rate = 0;
    int64_t serve_ms = kill_round(victim, STEADY_MS, 4 * SERVE_BOUND_MS, &rate);
    printf("# load: %s: %.0f holds/s before the kill; %lld ms from SIGKILL of the primary to "
           "the first hold acknowledged by the promoted backup\n",
           what, rate, (long long)serve_ms);
    fflush(stdout);
    assert_load_ran(rate);
    cr_assert_lt(serve_ms, SERVE_BOUND_MS);
    assert_nothing_lost_or_held_twice();
}

/* Three units (a with the partition), the load's client routed to a until
 * the map says otherwise; returns a, and the backup in *backup. */
static hx_unit *units_start(PGconn **db, hx_unit **backup)
{
    hx_unit *a = &units[0];
    unit_start(a, true, "zone-a");
    unit_start(&units[1], false, "zone-b");
    unit_start(&units[2], false, "zone-c");
    cr_assert_eq(tg_client_open(&(tg_client_config){.inflight_max = 4096}, &load.c), TG_OK);
    cr_assert_eq(tg_client_route(load.c, P, a->rep_url), TG_OK);
    snprintf(load.route, sizeof(load.route), "%s", a->rep_url);
    tg_mapsub *sub = NULL;
    cr_assert_eq(tg_mapsub_open(manager_pubs, map_cb, NULL, &sub), TG_OK);
    *db = pgt_connect(pg);
    hx_unit *primary = wait_backup_in_sync(*db, backup);
    cr_assert_eq(primary, a);
    return a;
}

Test(failover_load, a_primary_killed_under_load_is_replaced_within_a_second_losing_nothing)
{
    grid_start(1);
    PGconn *db;
    hx_unit *backup, *a = units_start(&db, &backup);
    kill_under_load(a, "SIGKILL");
    cr_assert(strncmp(placement(db), backup->name, strlen(backup->name)) == 0,
              "grid_partitions: %s", placement(db));
    PQfinish(db);
}

Test(failover_load, with_the_active_manager_killed_the_standby_fails_over_under_load)
{
    grid_start(2);
    PGconn *db;
    hx_unit *backup, *a = units_start(&db, &backup);
    cr_assert_eq(kill(managers[0], SIGKILL), 0);
    waitpid(managers[0], NULL, 0);
    managers[0] = 0;
    /* The standby takes the lock, gives the units a failure timeout to
     * register with it, and publishes. */
    hx_sleep_ms(1500);
    kill_under_load(a, "standby manager");
    cr_assert(strncmp(placement(db), backup->name, strlen(backup->name)) == 0,
              "grid_partitions: %s", placement(db));
    PQfinish(db);
}

#define LATE_HOLDS 10u /* asked of the frozen primary once it was replaced */

/* Holds of LATE_HOLDS seats nobody asked for yet, sent to unit u directly
 * (what: who it is, for the failure): none may be acknowledged.  Returns
 * how many it refused outright rather than not answering. */
static uint32_t assert_unit_acknowledges_nothing(const hx_unit *u, const char *what)
{
    static tg_msg rep;
    uint32_t refused = 0;
    for (uint32_t k = 0; k < LATE_HOLDS; k++) {
        uint32_t i = atomic_fetch_add(&load.next, 1);
        cr_assert_lt(i, SEATS);
        tg_msg req = hx_hold_one(load.bookings[i % BOOKINGS], USER, i);
        atomic_store(&load.state[i], SEAT_SENT);
        tg_err err = tg_client_call_to(load.c, u->rep_url, &req, 500, NULL, &rep);
        err = err == TG_OK && rep.type == TG_WIRE_ERROR ? (tg_err)rep.error.code : err;
        cr_assert_neq(err, TG_OK, "%s acknowledged a hold of seat %u", what, i);
        atomic_store(&load.state[i], SEAT_REFUSED);
        refused += err != TG_ETIMEDOUT ? 1 : 0;
    }
    return refused;
}

Test(failover_load, a_primary_frozen_under_load_acknowledges_nothing_once_replaced)
{
    grid_start(1);
    PGconn *db;
    hx_unit *backup, *a = units_start(&db, &backup);
    bookings_make();
    int64_t t0 = tg_mono_ns();
    load.pace_ns = t0;
    load_until(t0 + (int64_t)STEADY_MS * 1000000);
    double rate = (double)atomic_load(&load.acked) * 1e9 / (double)(tg_mono_ns() - t0);
    /* The freeze counts from when every thread of the unit is stopped, not
     * from kill(2): the kernel stops the threads only as each is scheduled,
     * and on a busy machine the unit went on serving for up to tens of
     * milliseconds after the call.  A hold sent in that time and
     * acknowledged by the unit itself (with its backup's ack, as a primary
     * in sync does) passed for the new primary serving; the unit was then
     * let go long before the manager could miss it, and rightly answered
     * the late holds below as the primary it still was. */
    hx_freeze(a);
    atomic_store(&load.kill_ns, tg_mono_ns());
    int64_t bound = atomic_load(&load.kill_ns) + (int64_t)4 * SERVE_BOUND_MS * 1000000;
    while (atomic_load(&load.served_ns) == 0 && tg_mono_ns() < bound) {
        load_until(tg_mono_ns() + 10 * 1000000);
    }
    cr_assert_neq(atomic_load(&load.served_ns), 0, "the backup never served");
    cr_assert(strncmp(placement(db), backup->name, strlen(backup->name)) == 0,
              "a hold was acknowledged while the primary was frozen, yet the manager did not "
              "promote the backup: grid_partitions: %s",
              placement(db));
    cr_assert_eq(kill(a->pid, SIGCONT), 0);
    load_until(tg_mono_ns() + (int64_t)AFTER_MS * 1000000);
    uint32_t refused = assert_unit_acknowledges_nothing(a, "the deposed primary");
    load_drain();
    printf("# load: SIGSTOP: %.0f holds/s before the freeze; %lld ms to the first hold on the "
           "new primary; the thawed primary refused %u of %u late holds outright\n",
           rate, (long long)((atomic_load(&load.served_ns) - atomic_load(&load.kill_ns)) / 1000000),
           refused, LATE_HOLDS);
    fflush(stdout);
    assert_load_ran(rate);
    cr_assert(strncmp(placement(db), backup->name, strlen(backup->name)) == 0,
              "grid_partitions: %s", placement(db));
    assert_nothing_lost_or_held_twice();
    PQfinish(db);
}

/* TIXGRID_<name> as a whole number in lo..hi, or fallback. */
static uint32_t env_u32(const char *name, uint32_t lo, uint32_t hi, uint32_t fallback)
{
    const char *text = getenv(name);
    char *end = NULL;
    unsigned long v = text != NULL ? strtoul(text, &end, 10) : fallback;
    cr_assert(text == NULL || (*end == '\0' && v >= lo && v <= hi), "%s must be %u..%u", name, lo,
              hi);
    return (uint32_t)v;
}

static int compare_ms(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Kill after kill (the killed unit started again each time, empty, so that
 * three units always serve): TIXGRID_FAILOVER_KILLS rounds (3 in the suite; 20 in
 * scripts/bench failover, which also sets the manager's defaults with
 * TIXGRID_FAILOVER_TIMEOUT_MS=1000).  The load runs at a lower rate here,
 * so that the seats last all the rounds. */
Test(failover_load, kill_after_kill_the_partition_fails_over_every_time, .timeout = 120)
{
    uint32_t kills = env_u32("TIXGRID_FAILOVER_KILLS", 1, 20, 3);
    uint32_t timeout_ms = env_u32("TIXGRID_FAILOVER_TIMEOUT_MS", 100, 5000, 500);
    snprintf(failure_timeout, sizeof(failure_timeout), "%u", timeout_ms);
    snprintf(heartbeat_interval, sizeof(heartbeat_interval), "%u", timeout_ms / 10);
    load_rate = 1000;
    grid_start(1);
    PGconn *db;
    hx_unit *backup, *primary = units_start(&db, &backup);
    bookings_make();
    int64_t serve_ms[20];
    for (uint32_t k = 0; k < kills; k++) {
        double rate = 0;
        primary = k == 0 ? primary : wait_backup_in_sync(db, &backup);
        serve_ms[k] = kill_round(primary, 300, 4 * (int64_t)timeout_ms + 2000, &rate);
        /* Each new primary here was itself started again, empty, a few
         * seconds before, and its new backup is the unit killed the round
         * before: it is filled by state transfer while the drain writes.
         * The single-kill case above holds failover to 1 s; this one, on
         * two shared cores, to the failure timeout + 1.5 s, and prints
         * every round (the median and max of 20 are scripts/bench's). */
        cr_assert_lt(serve_ms[k], (int64_t)timeout_ms + 1500,
                     "kill %u: %lld ms from SIGKILL to the first hold on the new primary "
                     "(failure timeout %u ms)",
                     k + 1, (long long)serve_ms[k], timeout_ms);
        /* Started again as a new machine would be: no segment, no layout
         * file, filled by state transfer when it is made a backup. */
        char segment[96];
        snprintf(segment, sizeof(segment), "/dev/shm/tixgrid-%s-p%u", primary->name, P);
        cr_assert(unlink(segment) == 0 || errno == ENOENT, "unlink %s: %s", segment,
                  strerror(errno));
        primary->layout_path[0] = '\0';
        hx_start(primary);
    }
    assert_nothing_lost_or_held_twice();
    qsort(serve_ms, kills, sizeof(serve_ms[0]), compare_ms);
    printf("# failover over %u kills (failure timeout %u ms, %u holds/s): median %lld ms, "
           "max %lld ms from SIGKILL to the first hold on the new primary\n",
           kills, timeout_ms, load_rate, (long long)serve_ms[kills / 2],
           (long long)serve_ms[kills - 1]);
    fflush(stdout);
    PQfinish(db);
}

/* ---- A cut link ----------------------------------------------------------------- */

/* After the cut, a window surely inside the failure timeout (500 ms here)
 * that the manager waits before it drops the backup: nothing is
 * acknowledged in it. */
#define CUT_QUIET_MS  400
#define DROP_BOUND_MS 3000 /* the cut to the map without the backup */

/* Both copies equal, seat for seat, within SETTLE_MS. */
static void assert_copies_equal(const hx_unit *primary, const hx_unit *backup)
{
    static uint64_t theirs[SEATS];
    tg_client *b = hx_client(backup, P, 4);
    bool equal = false;
    for (int64_t t0 = hx_now_ms(); !equal && hx_now_ms() - t0 < SETTLE_MS;) {
        hx_seat_words(load.c, P, SEATS, words);
        hx_seat_words(b, P, SEATS, theirs);
        equal = memcmp(words, theirs, sizeof(words)) == 0;
        hx_sleep_ms(equal ? 0 : 50);
    }
    uint32_t first = 0;
    while (!equal && first < SEATS && words[first] == theirs[first]) {
        first++;
    }
    hx_client_close(b);
    cr_assert(equal, "%s and %s differ at seat %u: %#llx and %#llx", primary->name, backup->name,
              first, (unsigned long long)(first < SEATS ? words[first] : 0),
              (unsigned long long)(first < SEATS ? theirs[first] : 0));
}

/* True while grid_partitions names u a backup of the partition. */
static bool still_backup(PGconn *db, const hx_unit *u)
{
    const char *row = placement(db);
    const char *list = strchr(row, '|');
    return list != NULL && strstr(list + 1, u->name) != NULL;
}

Test(failover_load, a_link_cut_between_primary_and_backup_sells_nothing_twice_on_either_side)
{
    grid_start(1);
    cr_assert_eq(setenv("TIXGRID_TEST_REPL_REFUSE_DIR", dir, 1), 0); /* read by units at start */
    PGconn *db;
    hx_unit *backup, *a = units_start(&db, &backup);
    bookings_make();
    int64_t t0 = tg_mono_ns();
    load.pace_ns = t0;
    load_until(t0 + (int64_t)STEADY_MS * 1000000);
    double rate = (double)atomic_load(&load.acked) * 1e9 / (double)(tg_mono_ns() - t0);

    uint64_t epoch = atomic_load(&load.epoch);
    hx_repl_cut(dir, backup, true);
    int64_t cut = tg_mono_ns();
    atomic_store(&load.heal_ns, cut + (int64_t)CUT_QUIET_MS * 1000000);
    atomic_store(&load.cut_ns, cut);
    load_until(cut + (int64_t)CUT_QUIET_MS * 1000000);
    /* A map published within the window (a unit declared dead because a
     * busy machine kept its heartbeats back, which drops the backup too)
     * lets the primary answer inside it: then the window proves nothing. */
    bool quiet = atomic_load(&load.epoch) == epoch;
    /* A backup sells nothing, cut off or not. */
    (void)assert_unit_acknowledges_nothing(backup, "the cut-off backup");
    while (still_backup(db, backup) && tg_mono_ns() - cut < (int64_t)SETTLE_MS * 1000000) {
        load_until(tg_mono_ns() + 10 * 1000000);
    }
    int64_t dropped = tg_mono_ns();
    cr_assert(!still_backup(db, backup), "the cut backup is still in the map: %s", placement(db));
    cr_assert(strncmp(placement(db), a->name, strlen(a->name)) == 0,
              "the primary is alive, yet it was replaced: grid_partitions: %s", placement(db));
    atomic_store(&load.kill_ns, dropped); /* served_ns: an ack of a hold sent after the drop */
    int64_t bound = dropped + (int64_t)4 * SERVE_BOUND_MS * 1000000;
    while (atomic_load(&load.served_ns) == 0 && tg_mono_ns() < bound) {
        load_until(tg_mono_ns() + 10 * 1000000);
    }
    cr_assert_neq(atomic_load(&load.served_ns), 0, "no hold acknowledged after the drop");
    hx_repl_cut(dir, backup, false);
    load_until(tg_mono_ns() + (int64_t)AFTER_MS * 1000000);
    load_drain();
    printf("# load: link cut: %.0f holds/s before; %u holds asked in the first %d ms of the cut, "
           "%u acknowledged; the backup dropped from the map %lld ms after the cut; the first "
           "hold asked afterwards acknowledged %lld ms after that\n",
           rate, atomic_load(&load.sent_in_cut), CUT_QUIET_MS, atomic_load(&load.acked_in_cut),
           (long long)((dropped - cut) / 1000000),
           (long long)((atomic_load(&load.served_ns) - dropped) / 1000000));
    fflush(stdout);
    assert_load_ran(rate);
    cr_assert_gt(atomic_load(&load.sent_in_cut), 0u, "no hold was asked during the cut");
    if (!quiet) {
        printf("# load: the map changed within the first %d ms of the cut (epoch %llu to "
               "%llu): acknowledgements in that window were not checked\n",
               CUT_QUIET_MS, (unsigned long long)epoch,
               (unsigned long long)atomic_load(&load.epoch));
        fflush(stdout);
    }
    cr_assert(!quiet || atomic_load(&load.acked_in_cut) == 0u,
              "holds acknowledged while the backup refused them");
    cr_assert_lt((dropped - cut) / 1000000, DROP_BOUND_MS);
    assert_nothing_lost_or_held_twice();
    hx_unit *next = NULL;
    cr_assert_eq(wait_backup_in_sync(db, &next), a);
    cr_assert(next != backup, "the cut backup was made a backup again at once");
    assert_copies_equal(a, next);
    PQfinish(db);
}

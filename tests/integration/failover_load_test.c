/*
 * failover_load_test.c — failover under a steady load of holds (suite
 * `load`): a private PostgreSQL (pg.h), managers, three units in three zones
 * (harness.h), and a load of single-seat holds kept at LOAD_INFLIGHT
 * requests in flight by this process, which follows the map the manager
 * publishes (tixgrid/mapsub.h) exactly as the gateway does.
 *
 *   - the primary SIGKILLed under load: its in-sync backup is promoted; the
 *     time from the kill to the first hold acknowledged by it (a hold sent
 *     after the kill) is measured, printed and bounded by 1 s (the manager
 *     runs with a 500 ms failure timeout and 50 ms heartbeats);
 *   - the active manager SIGKILLed first, then the primary: the standby has
 *     taken over and fails the partition over all the same.
 *
 * Both check, seat for seat on the new primary: every acknowledged hold is
 * there in its booking, and no seat is held by a booking it was not asked
 * for (each seat is asked for once, in one booking), so nothing acknowledged
 * is lost and nothing is held twice.  The load rate before the kill is
 * printed and must be at least LOAD_RATE_MIN holds/s.
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
#define LOAD_RATE_MIN   5000u /* holds/s acknowledged before the kill */
#define STEADY_MS       2000
#define AFTER_MS        1500 /* load kept on after the new primary serves */
#define SERVE_BOUND_MS  1000 /* the kill to the first hold the new primary acknowledged */
#define HOLD_TIMEOUT_MS 1000u
#define SETTLE_MS       10000
#define RUN_MS          10000

enum { SEAT_UNSENT, SEAT_SENT, SEAT_ACKED, SEAT_REFUSED };

static char dir[64];
static pgt_server *pg;
static pid_t managers[2];
static char manager_urls[200], manager_pubs[200];
static hx_run_result run_result;

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
    _Atomic int64_t kill_ns;      /* 0 before the kill */
    _Atomic int64_t served_ns;    /* the first ack of a hold sent after the kill */
    _Atomic uint8_t state[SEATS]; /* SEAT_* */
    int64_t sent_ns[SEATS];
} load;
static uint64_t words[SEATS];

static void fini(void)
{
    hx_fini_all();
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

/* PostgreSQL with event 1 and its partition; n managers (the first active). */
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
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (id, title, artist, venue, starts_at, status)"
             " VALUES (1, 'Load', 'The Testers', 'Hall', now() + interval '30 days', 'on_sale');"
             "INSERT INTO grid_partitions (partition_id, event_id, first_seat, seat_count, epoch)"
             " VALUES (%u, 1, 0, %u, 1);",
             P, SEATS);
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
                              "500",
                              "--heartbeat-interval-ms",
                              "50",
                              NULL};
        cr_assert(argv[0] != NULL, "TIXGRID_MANAGER_BIN is not set (run through meson test)");
        managers[i] = hx_spawn_process(argv, NULL, log[i]);
        snprintf(manager_urls + strlen(manager_urls), sizeof(manager_urls) - strlen(manager_urls),
                 "%s%s", i > 0 ? "," : "", url[i]);
        snprintf(manager_pubs + strlen(manager_pubs), sizeof(manager_pubs) - strlen(manager_pubs),
                 "%s%s", i > 0 ? "," : "", pub[i]);
        hx_sleep_ms(i == 0 ? 300 : 0); /* the first takes the lock */
    }
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

/* The unit among us whose name is the partition's backup, once its primary
 * (a) says its link to it is in sync. */
static hx_unit *wait_backup_in_sync(PGconn *db, hx_unit *a, hx_unit *others)
{
    static tg_msg rep;
    tg_msg req = {.type = TG_WIRE_REPL_STATUS, .repl_status = {.partition_id = P}};
    for (int64_t t0 = hx_now_ms(); hx_now_ms() - t0 < SETTLE_MS; hx_sleep_ms(50)) {
        const char *row = placement(db);
        for (int i = 0; i < 2; i++) {
            const char *bar = strchr(row, '|');
            if (bar == NULL || strcmp(bar + 1, others[i].name) != 0) {
                continue;
            }
            if (tg_client_call_to(load.c, a->rep_url, &req, HX_CALL_TIMEOUT_MS, NULL, &rep) ==
                    TG_OK &&
                rep.repl_status_ok.link_count == 1 &&
                rep.repl_status_ok.links[0].state == TG_REPL_LINK_IN_SYNC) {
                return &others[i];
            }
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
        uint64_t due = (uint64_t)(now - load.pace_ns) * LOAD_RATE / 1000000000u;
        if (atomic_load(&load.routed) >= LOAD_INFLIGHT || atomic_load(&load.next) >= due) {
            usleep(100);
            continue;
        }
        uint32_t i = atomic_fetch_add(&load.next, 1);
        tg_msg req = {.type = TG_WIRE_SEATS_HOLD};
        req.seats_hold.booking_id = load.bookings[i % BOOKINGS];
        req.seats_hold.user_id = USER;
        req.seats_hold.seats.count = 1;
        req.seats_hold.seats.ids[0] = i;
        load.sent_ns[i] = tg_mono_ns();
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

/* Every acknowledged hold is on the unit serving the partition now, in its
 * booking, and no seat is held by a booking it was not asked for. */
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
}

/* The common run: bookings, steady load, the kill of `victim` (SIGKILL),
 * load until the new primary served and AFTER_MS more, then the checks. */
static void kill_under_load(hx_unit *victim, const char *what)
{
    for (uint32_t b = 0; b < BOOKINGS; b++) {
        load.bookings[b] = hx_booking_create(load.c, P, USER);
    }
    int64_t t0 = tg_mono_ns();
    load.pace_ns = t0;
    load_until(t0 + (int64_t)STEADY_MS * 1000000);
    uint32_t steady = atomic_load(&load.acked);
    double rate = (double)steady * 1e9 / (double)(tg_mono_ns() - t0);
    atomic_store(&load.kill_ns, tg_mono_ns());
    cr_assert_eq(kill(victim->pid, SIGKILL), 0);
    waitpid(victim->pid, NULL, 0);
    victim->pid = 0;
    int64_t bound = atomic_load(&load.kill_ns) + (int64_t)4 * SERVE_BOUND_MS * 1000000;
    while (atomic_load(&load.served_ns) == 0 && tg_mono_ns() < bound) {
        load_until(tg_mono_ns() + 10 * 1000000);
    }
    int64_t served = atomic_load(&load.served_ns);
    cr_assert_neq(served, 0,
                  "%s: the new primary never acknowledged a hold (%.0f holds/s before the kill, "
                  "%u acknowledged, %u asked)",
                  what, rate, atomic_load(&load.acked), atomic_load(&load.next));
    load_until(tg_mono_ns() + (int64_t)AFTER_MS * 1000000);
    load_drain();
    int64_t serve_ms = (served - atomic_load(&load.kill_ns)) / 1000000;
    printf("# load: %s: %.0f holds/s before the kill; %lld ms from SIGKILL of the primary to "
           "the first hold acknowledged by the promoted backup\n",
           what, rate, (long long)serve_ms);
    fflush(stdout);
    cr_assert_geq(rate, LOAD_RATE_MIN, "the load ran at %.0f holds/s only", rate);
    cr_assert_lt(serve_ms, SERVE_BOUND_MS);
    assert_nothing_lost_or_held_twice();
}

/* Three units (a with the partition), the load's client routed to a until
 * the map says otherwise; returns a, and the backup in *backup. */
static hx_unit *units_start(PGconn **db, hx_unit **backup)
{
    static hx_unit a, others[2];
    unit_start(&a, true, "zone-a");
    unit_start(&others[0], false, "zone-b");
    unit_start(&others[1], false, "zone-c");
    cr_assert_eq(tg_client_open(&(tg_client_config){.inflight_max = 4096}, &load.c), TG_OK);
    cr_assert_eq(tg_client_route(load.c, P, a.rep_url), TG_OK);
    snprintf(load.route, sizeof(load.route), "%s", a.rep_url);
    tg_mapsub *sub = NULL;
    cr_assert_eq(tg_mapsub_open(manager_pubs, map_cb, NULL, &sub), TG_OK);
    *db = pgt_connect(pg);
    *backup = wait_backup_in_sync(*db, &a, others);
    return &a;
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

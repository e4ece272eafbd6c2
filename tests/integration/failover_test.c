/*
 * failover_test.c — backups placed by tixgrid-manager and failover of a
 * dead primary, with real processes: a private PostgreSQL (pg.h), one
 * manager, and units (harness.h) that join it with --manager.
 *
 *   - a unit that joins the grid is made the backup of a partition whose
 *     primary is alive (grid_partitions lists it, the epoch rises), and the
 *     primary fills it by state transfer: its copy matches seat for seat.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define P          1u
#define ROWS       10u
#define PER_ROW    20u
#define SEATS      (ROWS * PER_ROW)
#define USER       UINT64_C(1001)
#define SETTLE_MS  8000
#define RUN_MS     10000

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
 * nobody's yet; then the manager (default backups: 1). */
static void grid_start(void)
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
    const char *argv[] = {getenv("TIXGRID_MANAGER_BIN"), "--name", "mgr", "--listen",
                          manager_url, "--pub", manager_pub, "--db", pg->conninfo, NULL};
    cr_assert(argv[0] != NULL, "TIXGRID_MANAGER_BIN is not set (run through meson test)");
    manager_pid = hx_spawn_process(argv, NULL, manager_log);
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

/* Waits until the backup's seat words equal the primary's. */
static void wait_copies_equal(tg_client *a, tg_client *b, int timeout_ms)
{
    int64_t t0 = hx_now_ms();
    bool same = false;
    while (!same && hx_now_ms() - t0 < timeout_ms) {
        hx_seat_words(a, P, SEATS, words_a);
        hx_seat_words(b, P, SEATS, words_b);
        same = memcmp(words_a, words_b, sizeof(words_a)) == 0;
        if (!same) {
            hx_sleep_ms(50);
        }
    }
    cr_assert(same, "the backup's copy differs from the primary's after %d ms", timeout_ms);
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
    hx_client_close(ca);
    hx_client_close(cb);
}

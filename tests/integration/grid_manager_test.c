/*
 * grid_manager_test.c — tixgrid-manager, tixgrid-pu --manager and
 * tixgridctl as real processes, with a private PostgreSQL (pg.h).
 *
 * Each test starts its own PostgreSQL (migrated, three events with one
 * partition each), one or two managers in a folder of its own, and units
 * through the harness (harness.h) that join with --manager.  What the grid
 * looks like is read the way an operator reads it: `tixgridctl status
 * --json` (a process of its own, so no socket of the test process ever
 * dials a manager that dies), and PostgreSQL's tables.
 *
 * Timing claims are measured, not assumed: a unit killed with SIGKILL
 * (its connection to the manager closes) must be reported dead well before
 * the failure timeout; a unit frozen with SIGSTOP (silent, its connection
 * open) within the failure timeout plus one heartbeat interval (defaults:
 * 1000 + 100 ms), and no sooner than half the timeout; a standby must
 * answer within 2 s of the active manager's SIGKILL.  The figures are
 * printed (cr_log_info) for the README.
 *
 * Every wait is bounded; the suite's .fini kills what is still running
 * (units, managers, PostgreSQL) and removes the folders.
 */
#include "harness.h"
#include "pg.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MANAGERS_MAX   2
#define RUN_TIMEOUT_MS 10000
/* Bounds of the waits for the grid to settle. */
#define SETTLE_MS   5000
#define TIMEOUT_MS  1000 /* the manager's default failure timeout */
#define INTERVAL_MS 100  /* ... and heartbeat interval */

typedef struct {
    char name[16];
    char rep_url[96];
    char pub_url[96];
    char log_path[96];
    pid_t pid;
} manager;

static char dir[64];
static pgt_server *pg;
static manager managers[MANAGERS_MAX];
static char manager_urls[200]; /* both managers' REP addresses, for units and tixgridctl */
static hx_run_result run_result;

static void fini(void)
{
    hx_fini_all();
    for (int i = 0; i < MANAGERS_MAX; i++) {
        if (managers[i].pid > 0) {
            kill(managers[i].pid, SIGKILL);
            waitpid(managers[i].pid, NULL, 0);
            managers[i].pid = 0;
        }
    }
    pgt_fini_all();
    const char *keep = getenv("TIXGRID_IT_KEEP");
    if (dir[0] != '\0' && (keep == NULL || keep[0] == '\0' || strcmp(keep, "0") == 0)) {
        char *const argv[] = {"/bin/rm", "-rf", dir, NULL};
        hx_run(argv, RUN_TIMEOUT_MS, &run_result);
    }
    dir[0] = '\0';
}

TestSuite(grid_manager, .fini = fini, .timeout = 120);

static const char *bin(const char *variable)
{
    const char *path = getenv(variable);
    cr_assert(path != NULL && path[0] != '\0', "%s is not set (run through meson test)", variable);
    return path;
}

/* ---- The grid ---------------------------------------------------------------- */

/* PostgreSQL with the schema and events 1..3, each one partition of 20
 * seats at epoch 1, nobody's yet. */
static void database_start(bool migrate)
{
    snprintf(dir, sizeof(dir), "/tmp/tixgrid-mgr-%ld-XXXXXX", (long)getpid());
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    pg = pgt_start(&(pgt_options){.fsync_off = true});
    if (!migrate) {
        return;
    }
    pgt_run_result *r = malloc(sizeof(*r));
    cr_assert(r != NULL);
    pgt_persister(r, pg, NULL, (const char *const[]){"migrate", NULL});
    cr_assert_eq(pgt_exit_code(r), 0, "migrate failed: %s", r->err);
    free(r);
    PGconn *db = pgt_connect(pg);
    pgt_exec(db, "INSERT INTO events (id, title, artist, venue, starts_at, status)"
                 " SELECT e, 'Grid test ' || e, 'The Testers', 'Hall', now() + interval '30 days',"
                 " 'on_sale' FROM generate_series(1, 3) e;"
                 "INSERT INTO grid_partitions (partition_id, event_id, first_seat, seat_count,"
                 " epoch) SELECT e, e, 0, 20, 1 FROM generate_series(1, 3) e;");
    PQfinish(db);
}

static pid_t spawn(const char *const *argv, const char *log_path)
{
    return hx_spawn_process(argv, NULL, log_path);
}

/* Names manager i ("mgr-a", "mgr-b") and its addresses; both REP addresses
 * go into manager_urls. */
static manager *manager_init(int i)
{
    manager *m = &managers[i];
    char letter = (char)('a' + i);
    snprintf(m->name, sizeof(m->name), "mgr-%c", letter);
    snprintf(m->rep_url, sizeof(m->rep_url), "ipc://%s/mgr-%c.rep", dir, letter);
    snprintf(m->pub_url, sizeof(m->pub_url), "ipc://%s/mgr-%c.pub", dir, letter);
    snprintf(m->log_path, sizeof(m->log_path), "%s/mgr-%c.log", dir, letter);
    snprintf(manager_urls, sizeof(manager_urls), "ipc://%s/mgr-a.rep,ipc://%s/mgr-b.rep", dir, dir);
    return m;
}

static void manager_start(int i, const char *extra_flag, const char *extra_value)
{
    manager *m = manager_init(i);
    const char *argv[] = {bin("TIXGRID_MANAGER_BIN"),
                          "--name",
                          m->name,
                          "--listen",
                          m->rep_url,
                          "--pub",
                          m->pub_url,
                          "--db",
                          pg->conninfo,
                          extra_flag,
                          extra_value,
                          NULL};
    m->pid = spawn(argv, m->log_path);
}

static void manager_kill(int i)
{
    kill(managers[i].pid, SIGKILL);
    int status;
    cr_assert(hx_wait_exit(managers[i].pid, 5000, &status), "SIGKILL did not end %s",
              managers[i].name);
    managers[i].pid = 0;
}

/* True when manager i's log contains text. */
static bool log_says(int i, const char *text)
{
    return hx_file_contains(managers[i].log_path, text);
}

/* A unit in the grid: its own partition (0: none) and zone (NULL: none). */
static void unit_start(hx_unit *u, uint32_t partition_id, const char *zone)
{
    hx_unit_init(u, "mg");
    if (partition_id != 0) {
        hx_write_layout(u, &(hx_layout){.partition_id = partition_id,
                                        .event_id = partition_id,
                                        .sections = 1,
                                        .rows = 2,
                                        .seats = 10});
    }
    hx_add_flag(u, "--manager");
    hx_add_flag(u, manager_urls);
    if (zone != NULL) {
        hx_add_flag(u, "--zone");
        hx_add_flag(u, zone);
    }
    hx_start(u);
}

/* ---- tixgridctl ---------------------------------------------------------------- */

/* tixgridctl's --timeout-ms.  500 ms keeps status polls fine-grained (a
 * poll with one manager down waits that long); a command whose single
 * answer is asserted gets longer (ctl_patient), so that a loaded machine
 * does not turn "answered late" into "no manager answered". */
static const char *ctl_timeout_ms = "500";

/* Runs tixgridctl with the arguments (NULL-ended) against both managers. */
static hx_run_result *ctl(const char *arg, ...)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)bin("TIXGRIDCTL_BIN");
    argv[n++] = "--manager";
    argv[n++] = manager_urls;
    argv[n++] = "--timeout-ms";
    argv[n++] = (char *)ctl_timeout_ms;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a != NULL && n < 15; a = va_arg(ap, const char *)) {
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    hx_run(argv, RUN_TIMEOUT_MS, &run_result);
    cr_assert(!run_result.timed_out, "tixgridctl did not exit in %d ms", RUN_TIMEOUT_MS);
    return &run_result;
}

#define ctl_patient(...)                                                                  \
    (ctl_timeout_ms = "3000", ctl_result_keep(ctl(__VA_ARGS__)))

static hx_run_result *ctl_result_keep(hx_run_result *r)
{
    ctl_timeout_ms = "500";
    return r;
}

static int exit_code(const hx_run_result *r)
{
    return WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1;
}

/* The status as JSON, or NULL when no manager answered. */
static json_t *status(void)
{
    hx_run_result *r = ctl("status", "--json", NULL);
    if (exit_code(r) != 0) {
        return NULL;
    }
    json_error_t error;
    json_t *root = json_loads(r->out, 0, &error);
    cr_assert(root != NULL, "status --json is not JSON (%s): %s", error.text, r->out);
    return root;
}

static json_t *find(json_t *root, const char *list, const char *key, json_t *value)
{
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(root, list), i, item)
    {
        if (json_equal(json_object_get(item, key), value)) {
            return item;
        }
    }
    return NULL;
}

static json_t *member(json_t *root, const char *name)
{
    json_t *key = json_string(name);
    json_t *m = find(root, "members", "name", key);
    json_decref(key);
    return m;
}

static json_t *partition(json_t *root, uint32_t id)
{
    json_t *key = json_integer(id);
    json_t *p = find(root, "partitions", "partition_id", key);
    json_decref(key);
    return p;
}

static const char *text(json_t *object, const char *key)
{
    const char *s = json_string_value(json_object_get(object, key));
    return s != NULL ? s : "";
}

static int64_t number(json_t *object, const char *key)
{
    return json_integer_value(json_object_get(object, key));
}

/* What a status must show for a wait to end. */
typedef struct {
    const char *manager;         /* the active one's name, or NULL: any */
    const char *unit;            /* this unit ... */
    const char *unit_state;      /* ... in this state (NULL: the unit is absent) */
    bool unit_registered;        /* ... and registered with the active manager */
    uint32_t partition;          /* this partition (0: none) ... */
    const char *partition_state; /* ... in this state */
} expectation;

static bool meets(json_t *root, const expectation *e)
{
    if (root == NULL || (e->manager != NULL && strcmp(text(root, "manager"), e->manager) != 0)) {
        return false;
    }
    json_t *m = e->unit != NULL ? member(root, e->unit) : NULL;
    if (e->unit != NULL && (e->unit_state == NULL) != (m == NULL)) {
        return false;
    }
    if (m != NULL && (strcmp(text(m, "state"), e->unit_state) != 0 ||
                      (e->unit_registered && number(m, "incarnation") == 0))) {
        return false;
    }
    json_t *p = e->partition != 0 ? partition(root, e->partition) : NULL;
    return e->partition == 0 || (p != NULL && strcmp(text(p, "state"), e->partition_state) == 0);
}

/* Polls the status until it meets e (at most timeout_ms); returns it (the
 * caller decrefs) and how long it took. */
static json_t *wait_for(const expectation *e, int timeout_ms, int64_t *elapsed_ms)
{
    int64_t t0 = hx_now_ms();
    json_t *root = NULL;
    while (hx_now_ms() - t0 < timeout_ms) {
        root = status();
        if (meets(root, e)) {
            if (elapsed_ms != NULL) {
                *elapsed_ms = hx_now_ms() - t0;
            }
            return root;
        }
        json_decref(root);
        root = NULL;
        hx_sleep_ms(5);
    }
    hx_run_result *r = ctl("status", NULL);
    cr_assert_fail("the grid did not settle in %d ms (manager %s, unit %s %s, partition %u %s); "
                   "last status:\n%s%s",
                   timeout_ms, e->manager ? e->manager : "any", e->unit ? e->unit : "-",
                   e->unit_state ? e->unit_state : "absent", e->partition,
                   e->partition_state ? e->partition_state : "-", r->out, r->err);
    return NULL;
}

static int64_t query_i64(const char *sql)
{
    PGconn *db = pgt_connect(pg);
    int64_t v = pgt_query_i64(db, sql);
    PQfinish(db);
    return v;
}

static const char *query_text(const char *sql)
{
    PGconn *db = pgt_connect(pg);
    const char *v = pgt_query_text(db, sql);
    PQfinish(db);
    return v;
}

/* The unit's own view of a partition (its epoch, its log). */
static const tg_msg *partition_info(tg_client *c, uint32_t id)
{
    static tg_msg req, rep;
    memset(&req, 0, sizeof(req));
    req.type = TG_WIRE_PARTITION_INFO;
    req.partition_info.partition_id = id;
    cr_assert_eq(hx_call(c, id, &req, &rep), TG_OK);
    return &rep;
}

/* ---- Tests ------------------------------------------------------------------ */

Test(grid_manager, units_register_and_appear_in_the_status_and_in_postgresql)
{
    static hx_unit u1, u2;
    database_start(true);
    /* No backups: the map shown here is the units' own partitions alone
     * (backups are failover_test.c's). */
    manager_start(0, "--backups", "0");
    unit_start(&u1, 1, "zone-a");
    unit_start(&u2, 2, NULL);
    json_t *root = wait_for(
        &(expectation){
            .unit = u1.name, .unit_state = "alive", .partition = 1, .partition_state = "serving"},
        SETTLE_MS, NULL);
    json_decref(root);
    root = wait_for(
        &(expectation){
            .unit = u2.name, .unit_state = "alive", .partition = 2, .partition_state = "serving"},
        SETTLE_MS, NULL);
    cr_assert_str_eq(text(root, "manager"), "mgr-a");
    cr_assert_eq(number(root, "heartbeat_interval_ms"), INTERVAL_MS);
    cr_assert_eq(number(root, "failure_timeout_ms"), TIMEOUT_MS);
    json_t *m1 = member(root, u1.name), *m2 = member(root, u2.name);
    cr_assert_str_eq(text(m1, "zone"), "zone-a");
    cr_assert(json_is_null(json_object_get(m2, "zone")), "a unit without --zone has none");
    cr_assert_str_eq(text(m1, "rep_url"), u1.rep_url);
    cr_assert_str_eq(text(m1, "pub_url"), u1.pub_url);
    cr_assert(number(m1, "heard_age_ms") >= 0 && number(m1, "heard_age_ms") < 1000);
    /* Each partition adopted by the unit that holds it, with a new epoch. */
    json_t *p1 = partition(root, 1), *p3 = partition(root, 3);
    cr_assert_str_eq(text(p1, "primary"), u1.name);
    cr_assert_eq(number(p1, "epoch"), 2, "epoch 1 in grid_partitions, + 1 when placed");
    cr_assert_eq(number(p1, "held_epoch"), 2, "the unit applied the map's epoch");
    cr_assert_eq(json_array_size(json_object_get(p1, "backups")), 0);
    cr_assert_str_eq(text(partition(root, 2), "primary"), u2.name);
    cr_assert_str_eq(text(p3, "state"), "unplaced");
    cr_assert(json_is_null(json_object_get(p3, "primary")));
    int64_t map_epoch = number(root, "map_epoch");
    cr_assert_geq(number(m1, "map_epoch"), 1);
    json_decref(root);

    /* PostgreSQL holds the same map. */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT primary_pu || ':' || epoch FROM grid_partitions "
             "WHERE partition_id = 1");
    char want[96];
    snprintf(want, sizeof(want), "%s:2", u1.name);
    cr_assert_str_eq(query_text(sql), want);
    cr_assert_geq(query_i64("SELECT epoch FROM grid_map"), map_epoch);
    snprintf(sql, sizeof(sql),
             "SELECT state || ':' || zone || ':' || (now() - last_seen < interval '5 s')"
             " FROM grid_members WHERE pu_name = '%s'",
             u1.name);
    cr_assert_str_eq(query_text(sql), "alive:zone-a:true");
    cr_assert_str_eq(query_text("SELECT manager FROM grid_map"), "mgr-a");

    /* Sales show as persistence lag (no drain runs): the log head the unit
     * reports, none of it persisted. */
    tg_client *c = hx_client(&u1, 1, 4);
    tg_booking_id b = hx_booking_create(c, 1, 42);
    static tg_msg held;
    cr_assert_eq(hx_hold(c, b, 42, (const uint32_t[]){3, 4}, 2, &held), TG_OK);
    const tg_msg *info = partition_info(c, 1);
    uint64_t head = info->partition_info_ok.log_head;
    cr_assert_eq(info->partition_info_ok.map_epoch, 2, "the segment holds the map's epoch");
    cr_assert_geq(head, 3);
    int64_t t0 = hx_now_ms();
    bool seen = false;
    while (!seen && hx_now_ms() - t0 < SETTLE_MS) {
        root = status();
        json_t *p = partition(root, 1);
        seen =
            number(p, "log_head") == (int64_t)head && number(p, "persistence_lag") == (int64_t)head;
        json_decref(root);
    }
    cr_assert(seen, "the status never showed log head %llu unpersisted", (unsigned long long)head);
    hx_run_result *r = ctl_patient("status", NULL);
    cr_assert_eq(exit_code(r), 0);
    cr_assert(strstr(r->out, "PARTITION") != NULL && strstr(r->out, u1.name) != NULL &&
                  strstr(r->out, "serving") != NULL && strstr(r->out, "zone-a") != NULL,
              "the table:\n%s", r->out);
    hx_client_close(c);
}

/* Starts a unit serving partition 1 and waits a few heartbeats, so that
 * its last one is at most an interval old; returns the map's epoch. */
static int64_t unit_serving(hx_unit *u)
{
    database_start(true);
    manager_start(0, NULL, NULL);
    unit_start(u, 1, NULL);
    json_t *root = wait_for(
        &(expectation){
            .unit = u->name, .unit_state = "alive", .partition = 1, .partition_state = "serving"},
        SETTLE_MS, NULL);
    int64_t epoch = number(root, "map_epoch");
    json_decref(root);
    hx_sleep_ms(300);
    return epoch;
}

/* Waits until the status says u is dead and partition 1 primary_dead;
 * checks the map and the table; returns the time it took. */
static int64_t wait_dead(const hx_unit *u, int64_t epoch_before)
{
    int64_t elapsed = 0;
    json_t *root = wait_for(&(expectation){.unit = u->name,
                                           .unit_state = "dead",
                                           .partition = 1,
                                           .partition_state = "primary_dead"},
                            3 * TIMEOUT_MS, &elapsed);
    cr_assert_gt(number(root, "map_epoch"), epoch_before, "a death is a new map");
    cr_assert_str_eq(text(partition(root, 1), "primary"), u->name, "no backup to promote yet");
    json_decref(root);
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT state FROM grid_members WHERE pu_name = '%s'", u->name);
    cr_assert_str_eq(query_text(sql), "dead");
    return elapsed;
}

/* Waits until u serves partition 1 again, at epoch 2. */
static void wait_serving_again(const hx_unit *u)
{
    json_t *root = wait_for(
        &(expectation){
            .unit = u->name, .unit_state = "alive", .partition = 1, .partition_state = "serving"},
        SETTLE_MS, NULL);
    cr_assert_eq(number(partition(root, 1), "epoch"), 2);
    json_decref(root);
}

Test(grid_manager, a_killed_unit_is_declared_dead_once_its_connection_closed)
{
    static hx_unit u;
    int64_t epoch = unit_serving(&u);
    hx_kill(&u);
    int64_t elapsed = wait_dead(&u, epoch);
    cr_log_info("a SIGKILLed unit was reported dead after %lld ms (timeout %d ms, interval %d ms)",
                (long long)elapsed, TIMEOUT_MS, INTERVAL_MS);
    /* The kernel closed its sockets: one interval's grace, not the timeout. */
    cr_assert_lt(elapsed, TIMEOUT_MS / 2, "dead only after %lld ms", (long long)elapsed);
    cr_assert(log_says(0, "declared dead: its connection closed"));

    /* Restarted, it re-attaches its segment, registers again and serves
     * the same partition at the same epoch. */
    hx_start(&u);
    wait_serving_again(&u);
}

Test(grid_manager, a_frozen_unit_is_declared_dead_within_the_timeout_and_one_interval)
{
    static hx_unit u;
    int64_t epoch = unit_serving(&u);
    hx_freeze(&u); /* silent, its connection open */
    int64_t elapsed = wait_dead(&u, epoch);
    cr_log_info("a SIGSTOPped unit was reported dead after %lld ms (timeout %d ms, interval %d ms)",
                (long long)elapsed, TIMEOUT_MS, INTERVAL_MS);
    cr_assert_leq(elapsed, TIMEOUT_MS + INTERVAL_MS, "dead only after %lld ms", (long long)elapsed);
    /* Its last heartbeat was at most about an interval before the freeze:
     * a unit is never dead at its first missed heartbeat. */
    cr_assert_geq(elapsed, TIMEOUT_MS / 2, "dead already after %lld ms", (long long)elapsed);
    cr_assert(log_says(0, "declared dead: silent for"));

    /* Let go, its next heartbeat is refused: it registers again and serves
     * the same partition at the same epoch. */
    kill(u.pid, SIGCONT);
    wait_serving_again(&u);
}

Test(grid_manager, the_standby_takes_over_when_the_active_manager_is_killed)
{
    static hx_unit u;
    database_start(true);
    manager_start(0, NULL, NULL);
    json_decref(wait_for(&(expectation){.manager = "mgr-a"}, SETTLE_MS, NULL));
    manager_start(1, NULL, NULL);
    unit_start(&u, 1, NULL);
    json_t *root = wait_for(
        &(expectation){
            .unit = u.name, .unit_state = "alive", .partition = 1, .partition_state = "serving"},
        SETTLE_MS, NULL);
    int64_t epoch_before = number(root, "map_epoch");
    json_decref(root);
    int64_t t0 = hx_now_ms();
    while (!log_says(1, "standing by")) {
        cr_assert(hx_now_ms() - t0 < SETTLE_MS, "mgr-b never stood by");
        hx_sleep_ms(10);
    }

    manager_kill(0);
    int64_t answered = 0, settled = 0;
    json_decref(wait_for(&(expectation){.manager = "mgr-b"}, SETTLE_MS, &answered));
    root = wait_for(&(expectation){.manager = "mgr-b",
                                   .unit = u.name,
                                   .unit_state = "alive",
                                   .unit_registered = true,
                                   .partition = 1,
                                   .partition_state = "serving"},
                    SETTLE_MS, &settled);
    cr_log_info("after the active manager's SIGKILL the standby answered in %lld ms; the unit "
                "was registered with it %lld ms later",
                (long long)answered, (long long)settled);
    cr_assert_leq(answered, 2000);
    cr_assert_gt(number(root, "map_epoch"), epoch_before, "the new manager's map is newer");
    cr_assert_eq(number(partition(root, 1), "epoch"), 2, "the partition did not move");
    json_decref(root);
    cr_assert_not(log_says(1, "declared dead"), "the takeover cost a unit its life");
    cr_assert_str_eq(query_text("SELECT manager FROM grid_map"), "mgr-b");

    /* The killed manager, started again, stands by. */
    manager_start(0, NULL, NULL);
    t0 = hx_now_ms();
    while (!log_says(0, "standing by")) {
        cr_assert(hx_now_ms() - t0 < SETTLE_MS, "mgr-a never stood by again");
        hx_sleep_ms(10);
    }
    root = status();
    cr_assert_str_eq(text(root, "manager"), "mgr-b");
    json_decref(root);
}

Test(grid_manager, remove_pu_forgets_an_empty_unit_and_refuses_a_drain_with_nowhere_to_go)
{
    static hx_unit empty, busy;
    database_start(true);
    /* No backups, so that the empty unit stays empty and can be removed. */
    manager_start(0, "--backups", "0");
    unit_start(&empty, 0, NULL);
    unit_start(&busy, 1, NULL);
    json_decref(
        wait_for(&(expectation){.unit = empty.name, .unit_state = "alive"}, SETTLE_MS, NULL));
    json_decref(wait_for(
        &(expectation){
            .unit = busy.name, .unit_state = "alive", .partition = 1, .partition_state = "serving"},
        SETTLE_MS, NULL));

    hx_run_result *r = ctl_patient("remove-pu", empty.name, NULL);
    cr_assert_eq(exit_code(r), 0, "stderr: %s", r->err);
    int status_code = 0;
    cr_assert(hx_wait_exit(empty.pid, 5000, &status_code), "the removed unit did not stop");
    empty.pid = 0;
    cr_assert(WIFEXITED(status_code) && WEXITSTATUS(status_code) == 0,
              "the removed unit ended with %#x", status_code);
    json_decref(wait_for(&(expectation){.unit = empty.name, .unit_state = NULL}, SETTLE_MS, NULL));
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM grid_members WHERE pu_name = '%s'",
             empty.name);
    cr_assert_eq(query_i64(sql), 0);

    /* The last unit: its partition has nowhere to go. */
    r = ctl_patient("remove-pu", busy.name, NULL);
    cr_assert_eq(exit_code(r), 1, "stderr: %s", r->err);
    cr_assert_eq(hx_count_lines(r->err), 1u, "%s", r->err);
    cr_assert(strstr(r->err, "partition_state") != NULL && strstr(r->err, "drain") != NULL,
              "%s", r->err);
    r = ctl_patient("remove-pu", "no-such-unit", NULL);
    cr_assert_eq(exit_code(r), 1);
    cr_assert(strstr(r->err, "not_found") != NULL, "%s", r->err);
    /* add-pu waits for a unit to register, within --wait-ms, then says so once. */
    int64_t t0 = hx_now_ms();
    r = ctl_patient("--wait-ms", "400", "add-pu", "no-such-unit", NULL);
    cr_assert_eq(exit_code(r), 1, "stderr: %s", r->err);
    cr_assert_geq(hx_now_ms() - t0, 400, "add-pu gave up before --wait-ms");
    cr_assert_eq(hx_count_lines(r->err), 1u, "%s", r->err);
    cr_assert(strstr(r->err, "not_found") != NULL, "%s", r->err);
}

/* PostgreSQL, manager a with one extra flag, and unit u serving partition 1. */
static void one_unit_serving(hx_unit *u, const char *flag, const char *value)
{
    database_start(true);
    manager_start(0, flag, value);
    unit_start(u, 1, NULL);
    json_decref(wait_for(
        &(expectation){
            .unit = u->name, .unit_state = "alive", .partition = 1, .partition_state = "serving"},
        SETTLE_MS, NULL));
}

/* A subscriber to manager i's maps (close it while the manager runs: see
 * harness.h). */
static nng_socket map_subscribe(int i)
{
    nng_socket sub;
    cr_assert_eq(nng_sub0_open(&sub), 0);
    nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "\xff\xff\xff\xff", 4);
    nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 2000);
    nng_socket_set_size(sub, NNG_OPT_RECVMAXSZ, 2u << 20);
    cr_assert_eq(nng_dial(sub, managers[i].pub_url, NULL, 0), 0);
    return sub;
}

/* The next map published (within 2 s), decoded into *map (whose arrays
 * live until the next call). */
static void map_next(nng_socket sub, tg_msg *map)
{
    static tg_wire_member members[TG_GRID_MEMBERS_MAX];
    static tg_wire_placement placements[TG_GRID_PARTITIONS_MAX];
    tg_wire_space space = {.members = members,
                           .members_capacity = TG_GRID_MEMBERS_MAX,
                           .placements = placements,
                           .placements_capacity = TG_GRID_PARTITIONS_MAX};
    void *body = NULL;
    size_t len = 0;
    int rv = nng_recv(sub, &body, &len, NNG_FLAG_ALLOC);
    cr_assert_eq(rv, 0, "no map within 2 s: %s", nng_strerror(rv));
    const char *why = NULL;
    cr_assert_eq(tg_wire_decode_event(body, len, &space, map, &why), TG_OK, "%s", why);
    nng_free(body, len);
    cr_assert_eq(map->type, TG_WIRE_GRID_MAP);
}

Test(grid_manager, the_map_is_published_and_published_again_for_late_subscribers)
{
    static hx_unit u;
    database_start(true);
    manager_start(0, "--republish-ms", "300");
    unit_start(&u, 1, NULL);
    json_t *root = wait_for(
        &(expectation){
            .unit = u.name, .unit_state = "alive", .partition = 1, .partition_state = "serving"},
        SETTLE_MS, NULL);
    uint64_t epoch = (uint64_t)number(root, "map_epoch");
    json_decref(root);
    /* A subscriber that comes late still gets the map, twice. */
    nng_socket sub = map_subscribe(0);
    tg_msg *map = malloc(sizeof(*map));
    cr_assert(map != NULL);
    for (int k = 0; k < 2; k++) {
        map_next(sub, map);
        cr_assert_geq(map->grid_map.epoch, epoch);
        cr_assert_str_eq(map->grid_map.manager, "mgr-a");
        cr_assert_eq(map->grid_map.placement_count, 3);
        const tg_wire_placement *p1 = &map->grid_map.placements[0];
        cr_assert_eq(p1->partition_id, 1);
        cr_assert_eq(p1->epoch, 2);
        cr_assert(p1->primary >= 0);
        cr_assert_str_eq(map->grid_map.members[p1->primary].name, u.name);
        cr_assert_eq(map->grid_map.members[p1->primary].state, TG_MEMBER_ALIVE);
        cr_assert_eq(map->grid_map.placements[2].primary, -1);
    }
    free(map);
    nng_close(sub); /* while the manager still runs: see harness.h */
}

/* Units act on the map PostgreSQL holds, and on no other: a change the
 * manager could not store (every write of a placement finds its row
 * changed, and is retried) is not published, not even by the periodic
 * republish; once stored, it is. */
Test(grid_manager, a_map_postgresql_did_not_store_is_never_published)
{
    static hx_unit u, v;
    one_unit_serving(&u, "--republish-ms", "100");
    PGconn *db = pgt_connect(pg);
    pgt_exec(db, "CREATE FUNCTION skip_update() RETURNS trigger LANGUAGE plpgsql"
                 " AS $$BEGIN RETURN NULL; END$$");
    pgt_exec(db, "CREATE TRIGGER skip_update BEFORE UPDATE ON grid_partitions"
                 " FOR EACH ROW EXECUTE FUNCTION skip_update()");
    uint64_t stored = (uint64_t)query_i64("SELECT epoch FROM grid_map");
    unit_start(&v, 0, NULL); /* partition 1 gets it as its backup, in memory only */
    json_decref(wait_for(&(expectation){.unit = v.name, .unit_state = "alive"}, SETTLE_MS, NULL));
    int64_t t0 = hx_now_ms();
    while (!log_says(0, "changed in grid_partitions meanwhile")) {
        cr_assert(hx_now_ms() - t0 < SETTLE_MS, "the manager never tried to store the backup");
        hx_sleep_ms(10);
    }
    nng_socket sub = map_subscribe(0);
    tg_msg *map = malloc(sizeof(*map));
    cr_assert(map != NULL);
    for (int k = 0; k < 5; k++) {
        map_next(sub, map);
        cr_assert_eq(map->grid_map.epoch, stored, "published epoch %llu, stored %llu",
                     (unsigned long long)map->grid_map.epoch, (unsigned long long)stored);
        cr_assert_eq(map->grid_map.placements[0].backups.count, 0u, "an unstored backup");
        for (uint32_t i = 0; i < map->grid_map.member_count; i++) {
            cr_assert_str_neq(map->grid_map.members[i].name, v.name, "an unstored member");
        }
    }
    cr_assert_eq((uint64_t)query_i64("SELECT epoch FROM grid_map"), stored);
    pgt_exec(db, "DROP TRIGGER skip_update ON grid_partitions");
    PQfinish(db);
    t0 = hx_now_ms();
    do {
        cr_assert(hx_now_ms() - t0 < SETTLE_MS, "the stored map was never published");
        map_next(sub, map);
    } while (map->grid_map.epoch == stored);
    cr_assert_eq(map->grid_map.placements[0].backups.count, 1u);
    cr_assert_eq((uint64_t)query_i64("SELECT epoch FROM grid_map"), map->grid_map.epoch);
    free(map);
    nng_close(sub);
}

Test(grid_manager, a_unit_never_lowers_an_epoch_the_map_has_lowered)
{
    static hx_unit u;
    one_unit_serving(&u, "--refresh-ms", "100");
    /* Someone writes an older epoch into grid_partitions: the manager takes
     * it (an outside placement), publishes it, and the unit keeps 2. */
    PGconn *db = pgt_connect(pg);
    pgt_exec(db, "UPDATE grid_partitions SET epoch = 1 WHERE partition_id = 1");
    PQfinish(db);
    int64_t t0 = hx_now_ms();
    while (!log_says(0, "placed from outside")) {
        cr_assert(hx_now_ms() - t0 < SETTLE_MS, "the manager never read the outside change");
        hx_sleep_ms(10);
    }
    t0 = hx_now_ms();
    while (!log_says(0, "above the map's")) {
        cr_assert(hx_now_ms() - t0 < SETTLE_MS, "the unit's higher epoch never came back");
        hx_sleep_ms(10);
    }
    tg_client *c = hx_client(&u, 1, 2);
    const tg_msg *info = partition_info(c, 1);
    cr_assert_eq(info->partition_info_ok.map_epoch, 2, "the unit went back to an older epoch");
    hx_client_close(c);
    json_t *root = wait_for(
        &(expectation){
            .unit = u.name, .unit_state = "alive", .partition = 1, .partition_state = "serving"},
        SETTLE_MS, NULL);
    cr_assert_eq(number(partition(root, 1), "epoch"), 2, "the map follows the unit");
    json_decref(root);
    cr_assert_eq(query_i64("SELECT epoch FROM grid_partitions WHERE partition_id = 1"), 2);
}

Test(grid_manager, a_database_without_the_grid_schema_stops_the_manager_with_one_line)
{
    database_start(false);
    manager_start(0, NULL, NULL);
    int status_code = 0;
    cr_assert(hx_wait_exit(managers[0].pid, 10000, &status_code), "the manager kept running");
    managers[0].pid = 0;
    cr_assert(WIFEXITED(status_code) && WEXITSTATUS(status_code) == 1, "status %#x", status_code);
    cr_assert(log_says(0, "tixgrid-persister migrate"));
}

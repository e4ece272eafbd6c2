/*
 * persister_drain_test.c — the write-behind drain (`tixgrid-persister run`)
 * between a real tixgrid-pu and a real PostgreSQL 15.
 *
 * Each test starts its own PostgreSQL (pg.h), migrates it with the binary,
 * writes one small event into it (sections, seats, a grid_partitions row),
 * starts a unit on the same layout (harness.h) WITHOUT --unpersisted,
 * registers the unit and places the partition with the binary, and runs
 * the drain as a child process whose log is checked line by line.  The
 * workload comes from threads in this process, each with its own tg_client.
 *
 * What "equal" means (drain_check): after the drain caught up with the
 * unit's log head (partition_offsets.last_seq = log_head, and the unit was
 * told: log_persisted = log_head), every seat's status, booking and version
 * in PostgreSQL is the unit's seat word, every booking the unit made has
 * its status, user, times and version, booking_seats has exactly the rows
 * the log's transitions call for (read back from the unit's ring: nothing
 * applied twice, nothing lost) with one open row per held seat, and the
 * outbox has one message per paid or expired booking.
 *
 * Failures: a drain killed mid-batch and restarted, PostgreSQL stopped for
 * 10 s under load, a 1,024-record ring at its high-water mark while
 * PostgreSQL is down, the epoch fence, a unit killed and restarted, a
 * partition PostgreSQL refuses (a trigger).  Malformed records cannot be
 * made by a real unit; `ingest` feeds crafted records through the same code
 * as the drain.  Every wait is bounded; the
 * suite's .fini kills the drain and the unit, removes the unit's segments
 * and PostgreSQL's folder, also after a failed assertion.
 */
#include "harness.h"
#include "pg.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- Fixture ---------------------------------------------------------------- */

#define RUN_TIMEOUT_MS 30000
#define DRAIN_WAIT_MS  30000 /* for the drain to catch up */
#define DRAIN_STOP_MS  10000
#define ARGS_MAX       16
#define WORKERS_MAX    8
#define LIVE_MAX       6
#define SEATS_MAX      4096

static const pgt_options quick = {.fsync_off = true};

/* The one partition of a test: event E, P's seats are event seats 0.. */
typedef struct {
    uint32_t partition_id;
    uint64_t event_id;
    uint32_t sections, rows, seats; /* per section, per row */
    uint32_t hold_ttl_ms, payment_window_ms, log_records;
} layout;

static struct {
    pgt_server *pg;
    PGconn *db;
    hx_unit unit;
    layout l;
    uint32_t seat_count;
    tg_client *client;
    pid_t drain;
    char drain_log[96];
} fx;

static void drain_kill(void);

static void fini(void)
{
    drain_kill();
    if (fx.db != NULL) {
        PQfinish(fx.db);
        fx.db = NULL;
    }
    hx_fini_all();
    pgt_fini_all();
}

TestSuite(persister_drain, .fini = fini, .timeout = 90);

static const char *persister_bin(void)
{
    const char *v = getenv("TIXGRID_PERSISTER_BIN");
    cr_assert(v != NULL && v[0] != '\0', "TIXGRID_PERSISTER_BIN is not set (run through meson)");
    return v;
}

/* Runs tixgrid-persister args (NULL-terminated) against the test's server
 * (none when fx.pg is NULL). */
static int persister(pgt_run_result *r, const char *const *args)
{
    static char db_env[200];
    const char *argv[ARGS_MAX + 2] = {persister_bin()};
    int n = 1;
    for (int i = 0; args[i] != NULL && n <= ARGS_MAX; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    snprintf(db_env, sizeof(db_env), "TIXGRID_DB=%s", fx.pg != NULL ? fx.pg->conninfo : "");
    char *const env[] = {db_env, "TIXGRID_LOG_LEVEL=info", NULL};
    pgt_run((char *const *)argv, env, NULL, RUN_TIMEOUT_MS, r);
    return pgt_exit_code(r);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void persister_ok(const char *const *args)
{
    pgt_run_result r;
    int code = persister(&r, args);
    if (code != 0) {
        fprintf(stderr, "---- tixgrid-persister %s ----\n%s----\n", args[0], r.err);
    }
    cr_assert_eq(code, 0, "tixgrid-persister %s exited %d", args[0], code);
}

/* The event and its seats in PostgreSQL, as the unit's layout numbers them
 * (section s named S<s> at 1000 * (s + 1) cents, rows R<r>). */
static void event_insert(const layout *l)
{
    char sql[2048];
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (id, title, artist, venue, starts_at, status)"
             " VALUES (%llu, 'Drain test', 'The Testers', 'Hall', now() + interval '30 days',"
             " 'on_sale');"
             "INSERT INTO sections (event_id, section_idx, name, price_minor, currency)"
             " SELECT %llu, s, 'S' || s, 1000 * (s + 1), 'EUR' FROM generate_series(0, %u) s;"
             "INSERT INTO seats (event_id, seat_no, partition_id, section_idx, row_name, number,"
             " price_minor)"
             " SELECT %llu, (s * %u + r) * %u + n - 1, %u, s, 'R' || r, n, 1000 * (s + 1)"
             " FROM generate_series(0, %u) s, generate_series(0, %u) r, generate_series(1, %u) n;"
             "INSERT INTO grid_partitions (partition_id, event_id, first_seat, seat_count)"
             " VALUES (%u, %llu, 0, %u);",
             (unsigned long long)l->event_id, (unsigned long long)l->event_id, l->sections - 1,
             (unsigned long long)l->event_id, l->rows, l->seats, l->partition_id, l->sections - 1,
             l->rows - 1, l->seats, l->partition_id, (unsigned long long)l->event_id,
             l->sections * l->rows * l->seats);
    pgt_exec(fx.db, sql);
}

/* PostgreSQL with the schema and the event; no unit. */
static void database_start(const layout *l)
{
    fx.l = *l;
    fx.seat_count = l->sections * l->rows * l->seats;
    cr_assert(fx.seat_count <= SEATS_MAX);
    fx.pg = pgt_start(&quick);
    persister_ok(ARGS("migrate"));
    fx.db = pgt_connect(fx.pg);
    event_insert(l);
}

/* ... and a unit serving the partition, registered and placed. */
static void grid_start(const layout *l)
{
    database_start(l);
    hx_unit_init(&fx.unit, "drain");
    hx_layout hl = {.partition_id = l->partition_id,
                    .event_id = l->event_id,
                    .sections = l->sections,
                    .rows = l->rows,
                    .seats = l->seats,
                    .hold_ttl_ms = l->hold_ttl_ms,
                    .payment_window_ms = l->payment_window_ms,
                    .log_records = l->log_records,
                    .booking_capacity = 1u << 16};
    hx_write_layout(&fx.unit, &hl);
    hx_start(&fx.unit);
    fx.client = hx_client(&fx.unit, l->partition_id, 64);
    persister_ok(ARGS("pu-register", fx.unit.name, fx.unit.rep_url, fx.unit.pub_url));
    char partition[16];
    snprintf(partition, sizeof(partition), "%u", l->partition_id);
    persister_ok(ARGS("place", partition, fx.unit.name));
}

/* ---- The drain as a child process -------------------------------------------- */

/* Starts `tixgrid-persister run` (its log appended to <unit dir>/drain.log)
 * with quick routes and retries plus extra flags (NULL-terminated). */
static void drain_start(const char *const *extra)
{
    static char db_env[200];
    const char *argv[ARGS_MAX + 8] = {persister_bin(),  "run", "--routes-refresh-ms", "200",
                                      "--retry-max-ms", "1000"};
    int n = 6;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < ARGS_MAX; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    snprintf(db_env, sizeof(db_env), "TIXGRID_DB=%s", fx.pg->conninfo);
    size_t base = 0;
    while (environ[base] != NULL) {
        base++;
    }
    char **env = calloc(base + 3, sizeof(*env));
    cr_assert(env != NULL);
    env[0] = db_env;
    env[1] = "TIXGRID_LOG_LEVEL=info";
    memcpy(env + 2, environ, base * sizeof(*env)); /* the first of a name wins */
    snprintf(fx.drain_log, sizeof(fx.drain_log), "%s/drain.log",
             fx.unit.dir[0] ? fx.unit.dir : fx.pg->dir);
    int fd = open(fx.drain_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    cr_assert(fd >= 0, "open %s: %s", fx.drain_log, strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(127);
        }
        if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(127);
        }
        execve(argv[0], (char *const *)argv, env);
        _exit(127);
    }
    close(fd);
    free(env);
    fx.drain = pid;
}

static void drain_kill(void)
{
    if (fx.drain > 0) {
        kill(fx.drain, SIGKILL);
        int status;
        hx_wait_exit(fx.drain, 5000, &status);
        fx.drain = 0;
    }
}

/* SIGTERM; asserts exit 0 within DRAIN_STOP_MS. */
static void drain_stop(void)
{
    cr_assert(fx.drain > 0);
    kill(fx.drain, SIGTERM);
    int status = 0;
    bool exited = hx_wait_exit(fx.drain, DRAIN_STOP_MS, &status);
    pid_t pid = fx.drain;
    fx.drain = 0;
    if (!exited) {
        kill(pid, SIGKILL);
        hx_wait_exit(pid, 5000, &status);
    }
    cr_assert(exited, "the drain did not exit within %d ms of SIGTERM", DRAIN_STOP_MS);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the drain exited with status %d",
              status);
}

/* Lines of the drain's log containing needle. */
static uint32_t drain_log_count(const char *needle)
{
    FILE *f = fopen(fx.drain_log, "r");
    if (f == NULL) {
        return 0;
    }
    char line[4096];
    uint32_t n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

/* drain_log_count once it reaches want, or after timeout_ms: a line the
 * drain logs after a commit may come a moment after the commit is seen. */
static uint32_t drain_log_count_within(const char *needle, uint32_t want, int timeout_ms)
{
    int64_t deadline = hx_now_ms() + timeout_ms;
    uint32_t n = drain_log_count(needle);
    while (n < want && hx_now_ms() < deadline) {
        hx_sleep_ms(20);
        n = drain_log_count(needle);
    }
    return n;
}

static void drain_log_dump(void)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", fx.drain_log);
    if (system(cmd) != 0) {
        fprintf(stderr, "(no drain log)\n");
    }
}

/* ---- Reading both sides --------------------------------------------------------- */

static PGconn *db(void)
{
    if (fx.db == NULL || PQstatus(fx.db) != CONNECTION_OK) {
        if (fx.db != NULL) {
            PQfinish(fx.db);
        }
        fx.db = pgt_connect(fx.pg);
    }
    return fx.db;
}

static int64_t sql_i64(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int64_t sql_i64(const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return pgt_query_i64(db(), sql);
}

static tg_msg *partition_info(tg_msg *rep)
{
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = fx.l.partition_id;
    cr_assert_eq(hx_call(fx.client, fx.l.partition_id, &req, rep), TG_OK);
    return rep;
}

static int64_t persisted_seq(void)
{
    return sql_i64("SELECT COALESCE((SELECT last_seq FROM partition_offsets"
                   " WHERE partition_id = %u), 0)",
                   fx.l.partition_id);
}

/* Waits until PostgreSQL holds the unit's whole log and the unit was told. */
static void drain_wait_caught_up(void)
{
    tg_msg info;
    int64_t deadline = hx_now_ms() + DRAIN_WAIT_MS;
    for (;;) {
        partition_info(&info);
        uint64_t head = info.partition_info_ok.log_head;
        int64_t last = persisted_seq();
        if ((uint64_t)last == head && info.partition_info_ok.log_persisted == head) {
            return;
        }
        if (hx_now_ms() > deadline) {
            drain_log_dump();
            cr_assert_fail("the drain did not catch up: head %llu, persisted %lld, acked %llu",
                           (unsigned long long)head, (long long)last,
                           (unsigned long long)info.partition_info_ok.log_persisted);
        }
        hx_sleep_ms(20);
    }
}

static void seats_check(void)
{
    static uint64_t words[SEATS_MAX];
    hx_seat_words(fx.client, fx.l.partition_id, fx.seat_count, words);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT seat_no, status, COALESCE(booking_id, 0), version FROM seats"
             " WHERE event_id = %llu ORDER BY seat_no",
             (unsigned long long)fx.l.event_id);
    PGresult *res = PQexec(db(), sql);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    cr_assert_eq(PQntuples(res), (int)fx.seat_count);
    for (uint32_t s = 0; s < fx.seat_count; s++) {
        tg_seat_word w = words[s];
        uint32_t seq = tg_seat_word_booking(w);
        unsigned long long booking = seq ? tg_booking_id_make(fx.l.partition_id, seq) : 0;
        const char *status = tg_seat_state_name(tg_seat_word_state(w));
        cr_assert_str_eq(PQgetvalue(res, (int)s, 1), status, "seat %u: PostgreSQL %s, grid %s", s,
                         PQgetvalue(res, (int)s, 1), status);
        cr_assert_eq(strtoull(PQgetvalue(res, (int)s, 2), NULL, 10), booking, "seat %u booking", s);
        cr_assert_eq(strtoul(PQgetvalue(res, (int)s, 3), NULL, 10), tg_seat_word_version(w),
                     "seat %u version", s);
    }
    PQclear(res);
}

/* Every booking the unit made, field by field; returns how many. */
static uint32_t bookings_check(void)
{
    tg_msg info, rep;
    partition_info(&info);
    uint32_t made = (uint32_t)info.partition_info_ok.bookings_created, found = 0;
    cr_assert_eq(
        sql_i64("SELECT count(*) FROM bookings WHERE partition_id = %u", fx.l.partition_id), made,
        "PostgreSQL's bookings vs the unit's bookings_created");
    for (uint32_t seq = 1; seq <= made; seq++) {
        tg_msg req = {.type = TG_WIRE_BOOKING_GET};
        req.booking_get.booking_id = tg_booking_id_make(fx.l.partition_id, seq);
        tg_err err = hx_call(fx.client, fx.l.partition_id, &req, &rep);
        if (err == TG_ENOT_FOUND) {
            continue; /* its slot was reused */
        }
        cr_assert_eq(err, TG_OK);
        const tg_wire_booking *b = &rep.booking_get_ok;
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT status || ' ' || user_id || ' ' || version || ' '"
                 " || (extract(epoch FROM created_at) * 1000)::bigint || ' '"
                 " || (extract(epoch FROM deadline) * 1000)::bigint"
                 " FROM bookings WHERE id = %llu",
                 (unsigned long long)b->booking_id);
        char want[256];
        snprintf(want, sizeof(want), "%s %llu %u %lld %lld",
                 tg_booking_status_name((tg_booking_status)b->status),
                 (unsigned long long)b->user_id, b->version, (long long)b->created_ms,
                 (long long)b->deadline_ms);
        cr_assert_str_eq(pgt_query_text(db(), sql), want, "booking seq %u", seq);
        found++;
    }
    return found;
}

/* booking_seats against the unit's whole log (still in its ring): one row
 * per move of a seat to a booking, one open row per held seat. */
static void history_check(void)
{
    static uint64_t held[SEATS_MAX];
    memset(held, 0, sizeof(held));
    tg_msg info, rep;
    partition_info(&info);
    uint64_t head = info.partition_info_ok.log_head, next = 1, moves = 0;
    cr_assert(head <= info.partition_info_ok.log_records, "the log wrapped: cannot recount");
    while (next <= head) {
        tg_msg req = {.type = TG_WIRE_LOG_READ};
        req.log_read.partition_id = fx.l.partition_id;
        req.log_read.from_seq = next;
        req.log_read.max = TG_WIRE_LOG_RECORDS_MAX;
        cr_assert_eq(hx_call(fx.client, fx.l.partition_id, &req, &rep), TG_OK);
        cr_assert(rep.log_read_ok.record_count > 0);
        for (uint32_t i = 0; i < rep.log_read_ok.record_count; i++) {
            const tg_wire_log_record *r = &rep.log_read_ok.records[i];
            uint32_t seq = tg_seat_word_booking(r->word);
            if (r->kind == 1 && seq != held[r->ident]) {
                moves += seq != 0;
                held[r->ident] = seq;
            }
        }
        next += rep.log_read_ok.record_count;
    }
    unsigned long long e = (unsigned long long)fx.l.event_id;
    cr_assert_eq(sql_i64("SELECT count(*) FROM booking_seats WHERE event_id = %llu", e),
                 (int64_t)moves, "booking_seats rows vs moves to a booking in the log");
    cr_assert_eq(sql_i64("SELECT count(*) FROM seats s FULL JOIN (SELECT * FROM booking_seats"
                         " WHERE event_id = %llu AND released_at IS NULL) b"
                         " USING (event_id, seat_no)"
                         " WHERE (s.event_id = %llu OR b.event_id = %llu)"
                         " AND s.booking_id IS DISTINCT FROM b.booking_id",
                         e, e, e),
                 0, "open booking_seats rows vs held seats");
    cr_assert_eq(sql_i64("SELECT count(*) FROM booking_seats WHERE event_id = %llu"
                         " AND released_at < held_at",
                         e),
                 0);
}

static void outbox_check(void)
{
    uint32_t p = fx.l.partition_id;
    cr_assert_eq(sql_i64("SELECT count(*) FROM notification_outbox WHERE kind ="
                         " 'payment_confirmed' AND booking_id >> 32 = %u",
                         p),
                 sql_i64("SELECT count(*) FROM bookings WHERE status = 'paid'"
                         " AND partition_id = %u",
                         p));
    cr_assert_eq(sql_i64("SELECT count(*) FROM notification_outbox WHERE kind ="
                         " 'booking_expired' AND booking_id >> 32 = %u",
                         p),
                 sql_i64("SELECT count(*) FROM bookings WHERE status = 'expired'"
                         " AND partition_id = %u",
                         p));
}

/* Caught up, then equal in every respect. */
/* Waits until every hold and payment window the workload opened is over:
 * one still running could expire between the catch-up and the checks, and
 * the unit's sweeper then writes a record PostgreSQL has not seen yet
 * (seen once in CI: a booking that expired during bookings_check). */
static void windows_settle(void)
{
    uint32_t window =
        fx.l.hold_ttl_ms > fx.l.payment_window_ms ? fx.l.hold_ttl_ms : fx.l.payment_window_ms;
    if (window > 0) {
        hx_sleep_ms(window + 300); /* three of the unit's sweeps (every 100 ms) */
    }
}

static void drain_check(void)
{
    windows_settle();
    drain_wait_caught_up();
    seats_check();
    uint32_t bookings = bookings_check();
    cr_assert(bookings > 0 || fx.l.hold_ttl_ms == 0);
    history_check();
    outbox_check();
    cr_assert_eq(sql_i64("SELECT count(*) FROM persister_rejects"), 0);
}

/* ---- Workload ----------------------------------------------------------------- */

typedef struct {
    tg_booking_id id;
    uint32_t held[TG_BOOKING_SEATS_MAX];
    uint32_t held_count;
} live_booking;

typedef struct {
    pthread_t thread;
    tg_client *client;
    uint64_t user_id;
    uint64_t rng;
    bool churn; /* only holds and releases (fills the log fast) */
    live_booking live[LIVE_MAX];
    uint32_t live_count;
    /* Results, read after join. */
    uint64_t ops, ok, backlog;
    uint32_t unexpected;
    uint32_t unexpected_type;
    tg_err unexpected_err;
} worker;

static bool workers_stop; /* atomic */

static uint32_t rnd(worker *w, uint32_t n)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return (uint32_t)(w->rng % n);
}

static tg_err call(worker *w, const tg_msg *req, tg_msg *rep)
{
    return tg_client_call(w->client, fx.l.partition_id, req, HX_CALL_TIMEOUT_MS, NULL, rep);
}

/* Errors a random workload earns honestly. */
static bool expected_error(tg_err e)
{
    switch (e) {
    case TG_OK:
    case TG_ESEAT_TAKEN:
    case TG_ESEAT_NOT_HELD:
    case TG_ENOT_FOUND:
    case TG_EBOOKING_STATE:
    case TG_EEXPIRED:
    case TG_ETOO_MANY_SEATS:
    case TG_ENO_SEATS:
    case TG_EBACKLOG:
    case TG_EBUSY:
        return true;
    default:
        return false;
    }
}

static void live_drop(worker *w, uint32_t i)
{
    w->live[i] = w->live[--w->live_count];
}

static tg_err op_create(worker *w, tg_msg *rep)
{
    tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = fx.l.partition_id;
    req.booking_create.user_id = w->user_id;
    tg_err err = call(w, &req, rep);
    if (err == TG_OK) {
        w->live[w->live_count++] = (live_booking){.id = rep->booking_create_ok.booking_id};
    }
    return err;
}

static tg_err op_hold(worker *w, live_booking *b, tg_msg *rep)
{
    bool best = !w->churn && rnd(w, 4) == 0;
    tg_msg req = {.type = best ? TG_WIRE_SEATS_HOLD_BEST : TG_WIRE_SEATS_HOLD};
    tg_err err;
    if (best) {
        req.seats_hold_best.booking_id = b->id;
        req.seats_hold_best.user_id = w->user_id;
        req.seats_hold_best.quantity = 1 + rnd(w, 3);
        req.seats_hold_best.section = (int32_t)rnd(w, fx.l.sections + 1) - 1;
        err = call(w, &req, rep);
    } else {
        req.seats_hold.booking_id = b->id;
        req.seats_hold.user_id = w->user_id;
        uint32_t n = 1 + rnd(w, 3), first = rnd(w, fx.seat_count - n);
        req.seats_hold.seats.count = n;
        for (uint32_t i = 0; i < n; i++) {
            req.seats_hold.seats.ids[i] = first + i;
        }
        err = call(w, &req, rep);
    }
    if (err == TG_OK) {
        const tg_wire_seat_ids *s =
            best ? &rep->seats_hold_best_ok.seats : &rep->seats_hold_ok.seats;
        b->held_count = s->count;
        memcpy(b->held, s->ids, s->count * sizeof(uint32_t));
    }
    return err;
}

static tg_err op_release(worker *w, live_booking *b, tg_msg *rep)
{
    if (b->held_count == 0) {
        return TG_OK;
    }
    tg_msg req = {.type = TG_WIRE_SEATS_RELEASE};
    req.seats_release.booking_id = b->id;
    req.seats_release.user_id = w->user_id;
    uint32_t n = w->churn ? b->held_count : 1;
    req.seats_release.seats.count = n;
    memcpy(req.seats_release.seats.ids, b->held + b->held_count - n, n * sizeof(uint32_t));
    tg_err err = call(w, &req, rep);
    if (err == TG_OK) {
        b->held_count -= n;
    }
    return err;
}

/* Payment begin, then confirm or fail (or leave it pending to expire). */
static tg_err op_pay(worker *w, uint32_t i, tg_msg *rep)
{
    live_booking *b = &w->live[i];
    tg_msg req = {.type = TG_WIRE_PAYMENT_BEGIN};
    req.payment_begin.booking_id = b->id;
    req.payment_begin.user_id = w->user_id;
    tg_err err = call(w, &req, rep);
    uint32_t pick = rnd(w, 10);
    if (err == TG_OK && pick < 9) {
        tg_msg end = {.type = pick < 6 ? TG_WIRE_PAYMENT_CONFIRM : TG_WIRE_PAYMENT_FAIL};
        end.payment_confirm.booking_id = b->id; /* same layout as payment_fail */
        err = call(w, &end, rep);
    }
    live_drop(w, i);
    return err;
}

static tg_err op_cancel(worker *w, uint32_t i, tg_msg *rep)
{
    tg_msg req = {.type = TG_WIRE_BOOKING_CANCEL};
    req.booking_cancel.booking_id = w->live[i].id;
    req.booking_cancel.user_id = w->user_id;
    live_drop(w, i);
    return call(w, &req, rep);
}

/* An organizer takes a free seat off sale, or puts a blocked one back. */
static tg_err op_block(worker *w, tg_msg *rep)
{
    tg_msg req = {.type = rnd(w, 2) ? TG_WIRE_SEATS_BLOCK : TG_WIRE_SEATS_UNBLOCK};
    req.seats_block.partition_id = fx.l.partition_id;
    req.seats_block.seats.count = 1;
    req.seats_block.seats.ids[0] = rnd(w, fx.seat_count);
    tg_err err = call(w, &req, rep);
    return err == TG_ESEAT_NOT_HELD || err == TG_EINVAL ? TG_OK : err;
}

static tg_err worker_step(worker *w, tg_msg *rep)
{
    if (w->live_count == 0 || (w->live_count < LIVE_MAX && rnd(w, 8) == 0)) {
        return op_create(w, rep);
    }
    uint32_t i = rnd(w, w->live_count), pick = w->churn ? rnd(w, 2) : rnd(w, 100);
    live_booking *b = &w->live[i];
    if (w->churn) {
        return pick == 0 || b->held_count == 0 ? op_hold(w, b, rep) : op_release(w, b, rep);
    }
    if (pick < 40) {
        return op_hold(w, b, rep);
    }
    if (pick < 60) {
        return op_release(w, b, rep);
    }
    if (pick < 80) {
        return op_pay(w, i, rep);
    }
    if (pick < 88) {
        return op_cancel(w, i, rep);
    }
    return op_block(w, rep);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    tg_msg *rep = malloc(sizeof(*rep));
    while (rep != NULL && !__atomic_load_n(&workers_stop, __ATOMIC_ACQUIRE)) {
        tg_err err = worker_step(w, rep);
        w->ops++;
        w->ok += err == TG_OK;
        w->backlog += err == TG_EBACKLOG;
        if (!expected_error(err) && w->unexpected++ == 0) {
            w->unexpected_err = err;
        }
        if (err == TG_EEXPIRED || err == TG_ENOT_FOUND || err == TG_EBOOKING_STATE) {
            for (uint32_t i = 0; i < w->live_count; i++) {
                w->live[i].held_count = 0; /* re-learn from the next hold */
            }
            if (w->live_count > 0) {
                live_drop(w, 0);
            }
        }
    }
    free(rep);
    return NULL;
}

static worker workers[WORKERS_MAX];
static uint32_t worker_count;

static void workers_start(uint32_t n, bool churn, uint64_t seed)
{
    __atomic_store_n(&workers_stop, false, __ATOMIC_RELEASE);
    worker_count = n;
    for (uint32_t i = 0; i < n; i++) {
        workers[i] = (worker){.client = hx_client(&fx.unit, fx.l.partition_id, 4),
                              .user_id = 100 + i,
                              .rng = seed * 7919 + i + 1,
                              .churn = churn};
        cr_assert_eq(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]), 0);
    }
}

/* Stops the workers; returns the operations they made. */
static uint64_t workers_join(void)
{
    __atomic_store_n(&workers_stop, true, __ATOMIC_RELEASE);
    uint64_t ops = 0;
    for (uint32_t i = 0; i < worker_count; i++) {
        pthread_join(workers[i].thread, NULL);
        cr_assert_eq(workers[i].unexpected, 0, "worker %u: %u unexpected answers, first %s", i,
                     workers[i].unexpected, tg_errname(workers[i].unexpected_err));
        ops += workers[i].ops;
    }
    worker_count = 0;
    return ops;
}

static void workload(uint32_t threads, bool churn, int ms, uint64_t seed)
{
    workers_start(threads, churn, seed);
    hx_sleep_ms(ms);
    uint64_t ops = workers_join();
    cr_assert(ops > 100, "only %llu operations", (unsigned long long)ops);
}

/* ---- Tests ------------------------------------------------------------------------ */

/* Blocks n seats that are free now (whatever the workload left blocked). */
static void block_free_seats(uint32_t n)
{
    static uint64_t words[SEATS_MAX];
    hx_seat_words(fx.client, fx.l.partition_id, fx.seat_count, words);
    tg_msg req = {.type = TG_WIRE_SEATS_BLOCK}, rep;
    req.seats_block.partition_id = fx.l.partition_id;
    for (uint32_t s = 0; s < fx.seat_count && req.seats_block.seats.count < n; s++) {
        if (tg_seat_word_state(words[s]) == TG_SEAT_FREE) {
            req.seats_block.seats.ids[req.seats_block.seats.count++] = s;
        }
    }
    cr_assert_eq(req.seats_block.seats.count, n);
    cr_assert_eq(hx_call(fx.client, fx.l.partition_id, &req, &rep), TG_OK);
}

/* 2 sections x 10 rows x 20 seats; holds and payment windows of 1.5 s so
 * that some bookings expire during the test. */
static const layout small = {.partition_id = 21,
                             .event_id = 21,
                             .sections = 2,
                             .rows = 10,
                             .seats = 20,
                             .hold_ttl_ms = 1500,
                             .payment_window_ms = 1500};

Test(persister_drain, after_a_concurrent_workload_postgresql_equals_the_grid_seat_for_seat,
     .timeout = 60)
{
    grid_start(&small);
    drain_start(NULL);
    workload(4, false, 2500, 1);
    hx_sleep_ms(2000); /* the sweeper expires what is left */
    block_free_seats(3);
    drain_check();
    cr_assert(sql_i64("SELECT count(*) FROM bookings WHERE status = 'paid'") > 0);
    cr_assert(sql_i64("SELECT count(*) FROM bookings WHERE status = 'expired'") > 0);
    cr_assert(sql_i64("SELECT count(*) FROM seats WHERE status = 'BLOCKED'") >= 3);
    cr_assert(drain_log_count("changes/s") >= 1, "no throughput line");
    drain_stop();
    cr_assert_eq(drain_log_count("\"level\":\"error\""), 0, "the drain logged errors");
    cr_assert_eq(drain_log_count("finishing the batch at hand"), 1);
}

Test(persister_drain, a_persister_killed_mid_drain_restarts_losing_and_repeating_nothing,
     .timeout = 60)
{
    layout l = small;
    l.hold_ttl_ms = l.payment_window_ms = 0;
    grid_start(&l);
    workload(4, true, 1500, 2); /* the drain is not running: the log fills */
    tg_msg info;
    uint64_t head = partition_info(&info)->partition_info_ok.log_head;
    cr_assert(head > 5000, "only %llu changes", (unsigned long long)head);
    const char *const small_batches[] = {"--batch-max-changes", "256", NULL};
    for (int round = 0; round < 2; round++) {
        int64_t before = persisted_seq(), deadline = hx_now_ms() + DRAIN_WAIT_MS;
        drain_start(small_batches);
        while (persisted_seq() == before && hx_now_ms() < deadline) {
            hx_sleep_ms(2);
        }
        drain_kill();
        int64_t at = persisted_seq();
        cr_assert(at > before && (uint64_t)at < head, "kill %d landed at %lld of %llu", round,
                  (long long)at, (unsigned long long)head);
    }
    drain_start(NULL);
    workload(2, false, 500, 3);
    drain_check();
    drain_stop();
}

Test(persister_drain, changes_made_while_postgresql_is_down_land_when_it_returns, .timeout = 80)
{
    grid_start(&small);
    drain_start(NULL);
    workers_start(2, true, 4);
    hx_sleep_ms(800);
    pgt_stop(fx.pg, false);
    PQfinish(fx.db);
    fx.db = NULL;
    tg_msg info;
    uint64_t head_down = partition_info(&info)->partition_info_ok.log_head;
    hx_sleep_ms(4000); /* several backoff rounds (capped at 1 s) */
    uint64_t head_later = partition_info(&info)->partition_info_ok.log_head;
    uint64_t acked = info.partition_info_ok.log_persisted;
    pgt_resume(fx.pg);
    workers_join();
    cr_assert(head_later > head_down + 1000, "holds did not go on while PostgreSQL was down");
    cr_assert(acked <= head_down, "acked %llu while PostgreSQL was down (head %llu)",
              (unsigned long long)acked, (unsigned long long)head_down);
    drain_check();
    cr_assert_eq(drain_log_count("PostgreSQL unreachable, retrying"), 1);
    cr_assert_eq(drain_log_count("PostgreSQL reachable again"), 1);
    drain_stop();
}

/* Holds a seat in a fresh booking per call; returns the outcome. */
static tg_err hold_one(uint32_t seat, tg_booking_id *out)
{
    tg_msg rep;
    tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = fx.l.partition_id;
    req.booking_create.user_id = 9;
    tg_err err = hx_call(fx.client, fx.l.partition_id, &req, &rep);
    if (err != TG_OK) {
        return err;
    }
    *out = rep.booking_create_ok.booking_id;
    return hx_hold(fx.client, *out, 9, &seat, 1, &rep);
}

Test(persister_drain, a_ring_at_its_high_water_mark_refuses_holds_until_postgresql_returns,
     .timeout = 60)
{
    layout l = small;
    l.hold_ttl_ms = l.payment_window_ms = 0;
    l.rows = 20; /* 800 seats: more holds than the ring has room for */
    l.log_records = 1024;
    grid_start(&l);
    drain_start(NULL);
    tg_booking_id b = 0, first = 0;
    cr_assert_eq(hold_one(0, &first), TG_OK);
    drain_wait_caught_up();
    pgt_stop(fx.pg, false);
    PQfinish(fx.db);
    fx.db = NULL;
    tg_err err = TG_OK;
    uint32_t seat = 1;
    while (err == TG_OK && seat < fx.seat_count) {
        err = hold_one(seat++, &b);
    }
    cr_assert_eq(err, TG_EBACKLOG, "hold %u: %s, not persistence_backlog", seat - 1,
                 tg_errname(err));
    cr_assert(seat > 300, "backlog after only %u holds", seat);
    tg_msg rep, info;
    uint32_t zero = 0;
    tg_msg rel = {.type = TG_WIRE_SEATS_RELEASE};
    rel.seats_release.booking_id = first;
    rel.seats_release.user_id = 9;
    rel.seats_release.seats.count = 1;
    rel.seats_release.seats.ids[0] = zero;
    cr_assert_eq(hx_call(fx.client, fx.l.partition_id, &rel, &rep), TG_OK,
                 "a release must work at the high-water mark");
    uint64_t head = partition_info(&info)->partition_info_ok.log_head;
    cr_assert(head > 896 && head <= 1024 + 1, "head %llu", (unsigned long long)head);
    hx_sleep_ms(1500);
    pgt_resume(fx.pg);
    drain_wait_caught_up();
    cr_assert_eq(hold_one(seat, &b), TG_OK, "holds must work again once drained");
    drain_check();
    drain_stop();
}

Test(persister_drain, records_of_an_older_epoch_are_refused_and_not_acked_until_it_is_lowered,
     .timeout = 60)
{
    layout l = small;
    l.hold_ttl_ms = l.payment_window_ms = 0;
    grid_start(&l);
    drain_start(NULL);
    tg_booking_id b;
    cr_assert_eq(hold_one(0, &b), TG_OK);
    drain_wait_caught_up();
    pgt_exec(db(), "UPDATE partition_offsets SET epoch = 5");
    int64_t before = persisted_seq();
    for (uint32_t seat = 1; seat <= 20; seat++) {
        cr_assert_eq(hold_one(seat, &b), TG_OK);
    }
    hx_sleep_ms(1500); /* several refresh rounds of the drain */
    tg_msg info;
    partition_info(&info);
    cr_assert_eq(persisted_seq(), before, "records of epoch 0 landed over epoch 5");
    cr_assert_eq(info.partition_info_ok.log_persisted, (uint64_t)before, "acked while fenced");
    cr_assert_eq(sql_i64("SELECT count(*) FROM seats WHERE event_id = %llu AND status <> 'FREE'",
                         (unsigned long long)l.event_id),
                 1);
    cr_assert_eq(drain_log_count("refusing its records"), 1, "one error line, not one a retry");
    pgt_exec(db(), "UPDATE partition_offsets SET epoch = 0");
    drain_check();
    cr_assert_eq(
        sql_i64("SELECT epoch FROM partition_offsets WHERE partition_id = %u", l.partition_id), 0);
    cr_assert_eq(drain_log_count("accepted again"), 1);
    drain_stop();
}

/* A second unit with partition 22 of event 22, registered and placed. */
static hx_unit unit_b;

static tg_client *second_unit_start(void)
{
    layout b = small;
    b.partition_id = b.event_id = 22;
    event_insert(&b);
    hx_unit_init(&unit_b, "drainb");
    hx_layout hl = {.partition_id = 22,
                    .event_id = 22,
                    .sections = b.sections,
                    .rows = b.rows,
                    .seats = b.seats};
    hx_write_layout(&unit_b, &hl);
    hx_start(&unit_b);
    persister_ok(ARGS("pu-register", unit_b.name, unit_b.rep_url));
    persister_ok(ARGS("place", "22", unit_b.name));
    return hx_client(&unit_b, 22, 4);
}

static void hold_in(tg_client *c, uint32_t partition_id, uint32_t seat)
{
    tg_msg rep;
    tg_booking_id b = hx_booking_create(c, partition_id, 9);
    cr_assert_eq(hx_hold(c, b, 9, &seat, 1, &rep), TG_OK);
}

/* Waits until partition 22's offset reaches want. */
static void wait_persisted_22(int64_t want)
{
    int64_t deadline = hx_now_ms() + DRAIN_WAIT_MS;
    while (sql_i64("SELECT COALESCE((SELECT last_seq FROM partition_offsets"
                   " WHERE partition_id = 22), 0)") < want) {
        cr_assert(hx_now_ms() < deadline, "partition 22 did not drain");
        hx_sleep_ms(20);
    }
}

Test(persister_drain, an_unreachable_unit_is_logged_once_while_the_others_drain_on, .timeout = 60)
{
    layout l = small;
    l.hold_ttl_ms = l.payment_window_ms = 0;
    grid_start(&l);
    tg_client *b = second_unit_start();
    drain_start(NULL);
    hold_in(fx.client, 21, 0);
    hold_in(b, 22, 0);
    drain_wait_caught_up();
    wait_persisted_22(2);
    hx_client_close(b);
    hx_kill(&unit_b);
    for (uint32_t seat = 1; seat <= 10; seat++) {
        hold_in(fx.client, 21, seat);
    }
    drain_wait_caught_up();
    hx_sleep_ms(2500); /* several retries of partition 22 */
    cr_assert_eq(drain_log_count("partition 22: log_read from"), 1, "one line, not one a retry");
    cr_assert_eq(drain_log_count("partition 21: log_read from"), 0);
    hx_start(&unit_b);
    b = hx_client(&unit_b, 22, 4);
    hold_in(b, 22, 1);
    wait_persisted_22(4);
    cr_assert_eq(drain_log_count("partition 22: it-drainb"), 1, "no 'answers again' line");
    drain_check();
    drain_stop();
}

Test(persister_drain, a_partition_postgresql_refuses_is_parked_while_the_others_drain_on,
     .timeout = 60)
{
    layout l = small;
    l.hold_ttl_ms = l.payment_window_ms = 0;
    grid_start(&l);
    tg_client *b = second_unit_start();
    /* Something nobody foresaw: PostgreSQL refuses partition 22's writes. */
    pgt_exec(db(), "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
                   " BEGIN RAISE EXCEPTION 'refused for the test'; END $$;"
                   "CREATE TRIGGER refuse BEFORE INSERT ON booking_seats FOR EACH ROW"
                   " WHEN (NEW.event_id = 22) EXECUTE FUNCTION refuse()");
    drain_start(NULL);
    hold_in(b, 22, 0);
    for (uint32_t seat = 0; seat < 10; seat++) {
        hold_in(fx.client, 21, seat);
    }
    drain_wait_caught_up();
    hx_sleep_ms(1500); /* a retry or two of partition 22 */
    cr_assert_eq(sql_i64("SELECT COALESCE((SELECT last_seq FROM partition_offsets"
                         " WHERE partition_id = 22), 0)"),
                 0);
    cr_assert_eq(drain_log_count("partition 22: PostgreSQL refused its records"), 1);
    pgt_exec(db(), "DROP TRIGGER refuse ON booking_seats");
    wait_persisted_22(2);
    cr_assert_eq(
        drain_log_count_within("partition 22: PostgreSQL takes its records again", 1, 5000), 1);
    drain_check();
    drain_stop();
}

/* ---- Malformed records, through `ingest` ----------------------------------------- */

static const layout tiny = {
    .partition_id = 31, .event_id = 31, .sections = 1, .rows = 2, .seats = 20};

/* Writes lines to <pg dir>/records.jsonl; returns its path (static). */
static const char *records_file(const char *text)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/records.jsonl", fx.pg->dir);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    return path;
}

static uint32_t count_in(const char *text, const char *needle)
{
    uint32_t n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

Test(persister_drain, malformed_records_are_rejected_with_one_logged_line_each)
{
    database_start(&tiny);
    /* word of a SELECTED seat of booking seq 1 (version 1) is 2^61 + 2^32 + 1. */
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"seq\": 1, \"kind\": 2, \"ident\": 1, \"status\": 1, \"word\": 77,"
             " \"created_ms\": 1790000000000, \"deadline_ms\": 1790000300000, \"version\": 1}\n"
             "{\"seq\": 2, \"kind\": 1, \"ident\": 0, \"word\": %llu, \"version\": 1}\n"
             "{\"seq\": 3, \"kind\": 1, \"ident\": 40, \"word\": 0}\n"
             "{\"seq\": 4, \"kind\": 1, \"ident\": 2, \"word\": \"%llu\"}\n"
             "{\"seq\": 5, \"kind\": 1, \"ident\": 3, \"word\": %llu}\n"
             "{\"seq\": 6, \"kind\": 1, \"ident\": 4, \"word\": %llu}\n"
             "{\"seq\": 7, \"kind\": 2, \"ident\": 2, \"status\": 0, \"word\": 77}\n"
             "{\"seq\": 8, \"kind\": 0}\n"
             "{\"seq\": 10, \"kind\": 1, \"ident\": 5, \"word\": 0}\n"
             "{\"seq\": 11, \"kind\": 1, \"ident\": 1, \"word\": %llu, \"version\": 1}\n"
             "{\"seq\": 12, \"kind\": 5}\n"
             "{\"seq\": 13, \"kind\": 2, \"ident\": 1, \"status\": 3, \"word\": 77,"
             " \"created_ms\": 1790000000000, \"deadline_ms\": 1790000900000, \"version\": 3}\n",
             (unsigned long long)tg_seat_word_make(TG_SEAT_SELECTED, 1, 1),
             (unsigned long long)(UINT64_C(6) << 61),
             (unsigned long long)tg_seat_word_make(TG_SEAT_SELECTED, 1, 0),
             (unsigned long long)tg_seat_word_make(TG_SEAT_SOLD, 1, 9),
             (unsigned long long)tg_seat_word_make(TG_SEAT_SELECTED, 1, 1));
    const char *path = records_file(text);
    pgt_run_result r;
    cr_assert_eq(persister(&r, ARGS("ingest", "31", path)), 0, "%s", r.err);
    static const char *const reasons[] = {"beyond the partition's 40 seats",
                                          "no valid state",
                                          "names no booking",
                                          "booking seq 9 is not a booking",
                                          "booking record with status 0",
                                          "gap: seqs 9..9",
                                          "unknown record kind 5"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        cr_assert_eq(count_in(r.err, reasons[i]), 1, "'%s' in:\n%s", reasons[i], r.err);
    }
    cr_assert_eq(count_in(r.err, "rejected:"), 7, "%s", r.err);
    cr_assert_str_eq(pgt_query_text(db(), "SELECT string_agg(seq::text, ',' ORDER BY seq)"
                                          " FROM persister_rejects"),
                     "3,4,5,6,7,10,12");
    cr_assert_str_eq(pgt_query_text(db(), "SELECT record->>'word' FROM persister_rejects"
                                          " WHERE seq = 4"),
                     "13835058055282163712");
    cr_assert_eq(sql_i64("SELECT last_seq FROM partition_offsets WHERE partition_id = 31"), 13);
    cr_assert_str_eq(pgt_query_text(db(), "SELECT string_agg(seat_no || status || booking_id,"
                                          " ',' ORDER BY seat_no) FROM seats"
                                          " WHERE status <> 'FREE'"),
                     "0SELECTED133143986177,1SELECTED133143986177");
    cr_assert_str_eq(pgt_query_text(db(), "SELECT status FROM bookings"), "paid");
    cr_assert_eq(sql_i64("SELECT count(*) FROM notification_outbox"
                         " WHERE kind = 'payment_confirmed'"),
                 1);
    cr_assert_eq(sql_i64("SELECT count(*) FROM booking_seats WHERE released_at IS NULL"), 2);
    /* The same records again: all at or below the offset, nothing changes. */
    cr_assert_eq(persister(&r, ARGS("ingest", "31", path)), 0, "%s", r.err);
    cr_assert(strstr(r.err, "0 applied, 12 skipped") != NULL, "%s", r.err);
    cr_assert_eq(sql_i64("SELECT count(*) FROM persister_rejects"), 7);
    cr_assert_eq(sql_i64("SELECT count(*) FROM booking_seats"), 2);
    cr_assert_eq(sql_i64("SELECT count(*) FROM notification_outbox"), 1);
    /* An epoch below the recorded one writes nothing. */
    pgt_exec(db(), "UPDATE partition_offsets SET epoch = 3");
    cr_assert_eq(persister(&r, ARGS("ingest", "31", records_file("{\"seq\": 14, \"kind\": 0}\n"),
                                    "--epoch", "2")),
                 1);
    cr_assert(strstr(r.err, "below the recorded epoch 3") != NULL, "%s", r.err);
    cr_assert_eq(sql_i64("SELECT last_seq FROM partition_offsets WHERE partition_id = 31"), 13);
}

/* ---- Command lines ------------------------------------------------------------------ */

static void expect_usage(const char *const *args)
{
    pgt_run_result r;
    int code = persister(&r, args);
    cr_assert_eq(code, 64, "%s ...: exit %d, stderr: %s", args[0], code, r.err);
    cr_assert_eq(pgt_count_lines(r.err), 1, "%s", r.err);
}

Test(persister_drain, bad_flags_exit_64_and_bad_placements_exit_1)
{
    expect_usage(ARGS("run", "--bogus"));
    expect_usage(ARGS("run", "--batch-max-changes", "0"));
    expect_usage(ARGS("run", "--batch-max-ms", "x"));
    expect_usage(ARGS("run", "--retry-max-ms=5"));
    expect_usage(ARGS("run", "extra"));
    expect_usage(ARGS("run")); /* no database given */
    expect_usage(ARGS("pu-register", "bad name", "ipc:///tmp/x"));
    expect_usage(ARGS("pu-register", "pu1", "not-a-url"));
    expect_usage(ARGS("pu-register", "pu1"));
    expect_usage(ARGS("place", "2097152", "pu1"));
    expect_usage(ARGS("place", "1", "pu/1"));
    expect_usage(ARGS("place", "1"));
    expect_usage(ARGS("ingest", "1"));
    database_start(&tiny);
    expect_usage(ARGS("run", "--poll-idle-ms", "0"));
    expect_usage(ARGS("run", "--poll-idle-ms", "20", "--poll-idle-max-ms", "10"));
    expect_usage(ARGS("run", "--poll-idle-max-ms", "10001"));
    pgt_run_result r;
    cr_assert_eq(persister(&r, ARGS("place", "31", "pu1")), 1);
    cr_assert(strstr(r.err, "no processing unit named pu1") != NULL, "%s", r.err);
    persister_ok(ARGS("pu-register", "pu1", "ipc:///tmp/pu1.rep", "--zone", "rack-a"));
    cr_assert_eq(persister(&r, ARGS("place", "99", "pu1")), 1);
    cr_assert(strstr(r.err, "partition 99 does not exist") != NULL, "%s", r.err);
    persister_ok(ARGS("place", "31", "pu1"));
    persister_ok(ARGS("pu-register", "pu1", "tcp://127.0.0.1:7101", "tcp://127.0.0.1:7102"));
    persister_ok(ARGS("place", "31", "pu1"));
    cr_assert_str_eq(pgt_query_text(db(), "SELECT primary_pu || ' ' || epoch FROM grid_partitions"
                                          " WHERE partition_id = 31"),
                     "pu1 2");
    cr_assert_str_eq(pgt_query_text(db(), "SELECT rep_url || ' ' || pub_url || ' '"
                                          " || COALESCE(zone, '-') FROM grid_members"),
                     "tcp://127.0.0.1:7101 tcp://127.0.0.1:7102 -");
}

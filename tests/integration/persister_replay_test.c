/*
 * persister_replay_test.c — `tixgrid-persister replay`: partitions rebuilt
 * from PostgreSQL in a real tixgrid-pu, compared over the wire with what
 * PostgreSQL holds.
 *
 * Each test starts its own PostgreSQL (pg.h; fsync off: replay only reads)
 * with the schema and the demo data, writes the state to replay directly
 * with SQL (as the drain would have left it), starts a fresh processing unit
 * with no partition (harness.h) and runs the real binary
 * (TIXGRID_PERSISTER_BIN).  The unit is then read back seat for seat
 * (seats_list over all 100,000 seats of the demo concert) and booking for
 * booking (booking_get), and its change log and sweeper are exercised:
 * sequence numbers continue after partition_offsets.last_seq, and a hold
 * whose deadline passed while the grid was down expires at once.  The last
 * test goes end to end: a random workload (fixed seed) on a unit while
 * `tixgrid-persister run` drains it, then a replay into a second unit,
 * compared with the first over the wire (skipped while the binary has no
 * drain).  Every wait is bounded; the .fini stops the drain, and
 * pgt_fini_all and hx_fini_all remove servers, units, folders and /dev/shm
 * segments, also after a failed assertion.
 */
#include "harness.h"
#include "pg.h"

#include "tixgrid/clock.h"

#include <criterion/criterion.h>

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void drain_stop(void);

static void fini(void)
{
    drain_stop();
    pgt_fini_all();
    hx_fini_all();
}

TestSuite(persister_replay, .fini = fini, .timeout = 240);

/* ---- Helpers ------------------------------------------------------------ */

#define RUN_TIMEOUT_MS             60000
#define ARGS_MAX                   16
#define DEMO_SEATS                 100000u
#define HALL_SEATS                 1130u /* event 3, partition 3 */
#define ARGS(...)                  ((const char *const[]){__VA_ARGS__, NULL})
#define BOOKING_ID(partition, seq) tg_booking_id_make(partition, seq)

static const pgt_options quick = {.fsync_off = true};

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v != NULL && v[0] != '\0', "%s is not set (run through meson test)", name);
    return v;
}

/* Runs tixgrid-persister with args (NULL-terminated) against s (NULL:
 * TIXGRID_DB empty), stdout to out_path when not NULL. */
static void persister_to(pgt_run_result *r, const pgt_server *s, const char *out_path,
                         const char *const *args)
{
    pgt_persister(r, s, out_path, args);
}

static void persister(pgt_run_result *r, const pgt_server *s, const char *const *args)
{
    persister_to(r, s, NULL, args);
}

static void persister_ok(pgt_run_result *r, const pgt_server *s, const char *const *args)
{
    persister(r, s, args);
    if (pgt_exit_code(r) != 0) {
        fprintf(stderr, "---- persister %s stderr ----\n%s----\n", args[0], r->err);
    }
    cr_assert_eq(pgt_exit_code(r), 0, "tixgrid-persister %s exited %d", args[0], pgt_exit_code(r));
}

/* Asserts exit code and one line on stderr containing text. */
static void persister_fails(const pgt_server *s, const char *const *args, int code,
                            const char *text)
{
    pgt_run_result r;
    persister(&r, s, args);
    cr_assert_eq(pgt_exit_code(&r), code, "replay exited %d, not %d: %s", pgt_exit_code(&r), code,
                 r.err);
    cr_assert(strstr(r.err, text) != NULL, "expected '%s' in: %s", text, r.err);
    cr_assert_eq(pgt_count_lines(r.err), 1, "not one line: %s", r.err);
    cr_assert_str_eq(r.out, "");
}

/* A server with the schema and the demo data, and a connection to it. */
static PGconn *seeded(pgt_server **s)
{
    pgt_run_result r;
    *s = pgt_start(&quick);
    persister_ok(&r, *s, ARGS("migrate"));
    persister_ok(&r, *s, ARGS("seed-demo"));
    return pgt_connect(*s);
}

/* Runs sql after replacing every "$NOW" by now_ms. */
static void exec_at(PGconn *db, int64_t now_ms, const char *sql)
{
    char now[24], *out = malloc(strlen(sql) * 4 + 64); /* "$NOW": 4 bytes, a time: 13 */
    cr_assert(out != NULL);
    snprintf(now, sizeof(now), "%" PRId64, now_ms);
    size_t at = 0;
    for (const char *p = sql; *p != '\0';) {
        if (strncmp(p, "$NOW", 4) == 0) {
            at += (size_t)sprintf(out + at, "%s", now);
            p += 4;
        } else {
            out[at++] = *p++;
        }
    }
    out[at] = '\0';
    pgt_exec(db, out);
    free(out);
}

/* ---- The state to replay -------------------------------------------------- */

/* A timestamp of exactly ms milliseconds after the Unix epoch. */
#define MS(x)        "(to_timestamp(0) + (" x ") * interval '1 millisecond')"
#define BOOKING(seq) "((1::bigint << 32) | " seq ")"

/* Partition 1 (the demo concert) after a near sell-out: 6,000 paid bookings
 * of 16 seats (96,000 SOLD, their payment deadlines long past), a created
 * booking holding 4 seats, two pending payment (2 + 2 seats), a cancelled
 * and an expired one holding nothing, the newest booking (7001) cancelled,
 * 10 BLOCKED seats; 12,345 changes drained under epoch 3. */
// clang-format off
static const char mix_sql[] =
    "BEGIN;"
    "INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at, deadline,"
    " version) VALUES"
    " (" BOOKING("1") ", 1, 1, 101, 'created',"
    "  " MS("$NOW - 600000") ", " MS("$NOW + 3600000") ", 1),"
    " (" BOOKING("2") ", 1, 1, 102, 'pending_payment',"
    "  " MS("$NOW - 500000") ", " MS("$NOW + 900000") ", 2),"
    " (" BOOKING("3") ", 1, 1, 103, 'cancelled', " MS("$NOW - 400000") ", NULL, 2),"
    " (" BOOKING("4") ", 1, 1, 104, 'expired',"
    "  " MS("$NOW - 300000") ", " MS("$NOW - 1000") ", 1),"
    " (" BOOKING("7000") ", 1, 1, 7000, 'pending_payment',"
    "  " MS("$NOW - 200000") ", " MS("$NOW + 600000") ", 4),"
    " (" BOOKING("7001") ", 1, 1, 7001, 'cancelled',"
    "  " MS("$NOW - 100000") ", " MS("$NOW + 1000") ", 1);"
    "INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at, deadline,"
    " version)"
    " SELECT " BOOKING("(1000 + g)") ", 1, 1, 5000 + g, 'paid',"
    "  " MS("$NOW - 86400000 + g") ", " MS("$NOW - 85500000") ", 3"
    " FROM generate_series(0, 5999) g;"
    "UPDATE seats SET status = 'SOLD', booking_id = " BOOKING("(1000 + (seat_no - 4000) / 16)")
    ", version = 2 + seat_no % 5 WHERE event_id = 1 AND seat_no BETWEEN 4000 AND 99999;"
    "UPDATE seats SET status = 'SELECTED', booking_id = " BOOKING("1") ", version = seat_no - 9"
    " WHERE event_id = 1 AND seat_no BETWEEN 10 AND 13;"
    "UPDATE seats SET status = 'RESERVED', booking_id = " BOOKING("2") ", version = 2"
    " WHERE event_id = 1 AND seat_no IN (20, 21);"
    "UPDATE seats SET status = 'RESERVED', booking_id = " BOOKING("7000") ", version = 536870911"
    " WHERE event_id = 1 AND seat_no IN (40, 41);"
    "UPDATE seats SET status = 'BLOCKED', version = 1"
    " WHERE event_id = 1 AND seat_no BETWEEN 100 AND 109;"
    "UPDATE seats SET version = 6 WHERE event_id = 1 AND seat_no = 200;" /* FREE, moved on */
    "INSERT INTO partition_offsets (partition_id, epoch, last_seq) VALUES (1, 3, 12345);"
    "COMMIT";

/* Partition 3 (1,130 seats): a hold and a pending payment whose deadlines
 * passed while the grid was down, and a hold that is still good. */
static const char hall_sql[] =
    "BEGIN;"
    "INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at, deadline,"
    " version) VALUES"
    " ((3::bigint << 32) | 1, 3, 3, 301, 'created',"
    "  " MS("$NOW - 400000") ", " MS("$NOW - 60000") ", 1),"
    " ((3::bigint << 32) | 2, 3, 3, 302, 'pending_payment',"
    "  " MS("$NOW - 400000") ", " MS("$NOW - 60000") ", 2),"
    " ((3::bigint << 32) | 3, 3, 3, 303, 'created',"
    "  " MS("$NOW - 1000") ", " MS("$NOW + 3600000") ", 1);"
    "UPDATE seats SET status = 'SELECTED', booking_id = (3::bigint << 32) | 1, version = 1"
    " WHERE event_id = 3 AND seat_no IN (5, 6, 7);"
    "UPDATE seats SET status = 'RESERVED', booking_id = (3::bigint << 32) | 2, version = 2"
    " WHERE event_id = 3 AND seat_no = 8;"
    "UPDATE seats SET status = 'SELECTED', booking_id = (3::bigint << 32) | 3, version = 1"
    " WHERE event_id = 3 AND seat_no = 9;"
    "COMMIT";
// clang-format on

/* ---- PostgreSQL's view ----------------------------------------------------- */

/* Every seat word of a partition (first_seat 0) as PostgreSQL has it. */
static uint64_t *pg_words(PGconn *db, int event_id, uint32_t seats)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT seat_no, status, coalesce(booking_id & 4294967295, 0), version FROM seats"
             " WHERE event_id = %d ORDER BY seat_no",
             event_id);
    PGresult *res = PQexec(db, sql);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    cr_assert_eq((uint32_t)PQntuples(res), seats);
    uint64_t *words = calloc(seats, sizeof(*words));
    cr_assert(words != NULL);
    for (uint32_t i = 0; i < seats; i++) {
        tg_seat_state st;
        cr_assert(tg_seat_state_parse(PQgetvalue(res, (int)i, 1), &st));
        cr_assert_eq(strtoul(PQgetvalue(res, (int)i, 0), NULL, 10), i);
        words[i] = tg_seat_word_make(st, (uint32_t)strtoul(PQgetvalue(res, (int)i, 3), NULL, 10),
                                     (uint32_t)strtoul(PQgetvalue(res, (int)i, 2), NULL, 10));
    }
    PQclear(res);
    return words;
}

/* Asserts the unit's words equal expected, naming the first difference. */
static void words_equal(tg_client *c, uint32_t partition, uint32_t seats, const uint64_t *expected)
{
    uint64_t *got = calloc(seats, sizeof(*got));
    cr_assert(got != NULL);
    hx_seat_words(c, partition, seats, got);
    uint32_t differ = 0, first = UINT32_MAX;
    for (uint32_t i = 0; i < seats; i++) {
        if (got[i] != expected[i]) {
            first = differ++ == 0 ? i : first;
        }
    }
    cr_assert_eq(differ, 0,
                 "%u seats differ; first: seat %u unit %#" PRIx64 " PostgreSQL %#" PRIx64, differ,
                 first, first < seats ? got[first] : 0, first < seats ? expected[first] : 0);
    free(got);
}

/* Asserts the unit's availability totals are PostgreSQL's counts. */
static void totals_equal(tg_client *c, PGconn *db, uint32_t partition, int event_id)
{
    static tg_msg rep;
    static tg_wire_counts rows[TG_ROWS_MAX];
    hx_availability(c, partition, &rep, rows);
    for (int st = 0; st < TG_SEAT_STATE_COUNT; st++) {
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM seats WHERE event_id = %d AND status = '%s'", event_id,
                 tg_seat_state_name((tg_seat_state)st));
        cr_assert_eq((int64_t)rep.availability_ok.totals.by_state[st], pgt_query_i64(db, sql),
                     "%s seats", tg_seat_state_name((tg_seat_state)st));
    }
}

static void booking_equal(tg_client *c, const PGresult *res, int r, const uint32_t *seats,
                          uint32_t n)
{
    static tg_msg rep;
    tg_booking_id id = strtoull(PQgetvalue(res, r, 0), NULL, 10);
    tg_err err = hx_booking_get(c, id, 0, &rep);
    cr_assert_eq(err, TG_OK, "booking %" PRIu64 ": %s", id, tg_errname(err));
    const tg_wire_booking *b = &rep.booking_get_ok;
    cr_assert_eq(b->booking_id, id);
    cr_assert_eq(b->user_id, strtoull(PQgetvalue(res, r, 1), NULL, 10), "booking %" PRIu64, id);
    cr_assert_str_eq(tg_booking_status_name((tg_booking_status)b->status), PQgetvalue(res, r, 2),
                     "booking %" PRIu64, id);
    cr_assert_eq(b->version, strtoul(PQgetvalue(res, r, 3), NULL, 10), "booking %" PRIu64, id);
    cr_assert_eq(b->created_ms, strtoll(PQgetvalue(res, r, 4), NULL, 10), "booking %" PRIu64, id);
    cr_assert_eq(b->deadline_ms, strtoll(PQgetvalue(res, r, 5), NULL, 10), "booking %" PRIu64, id);
    cr_assert_eq(b->seats.count, n, "booking %" PRIu64 " seats", id);
    cr_assert(memcmp(b->seats.ids, seats, n * sizeof(uint32_t)) == 0, "booking %" PRIu64, id);
}

/* Every live or paid booking of the partition, as PostgreSQL has it, read
 * back from the unit; words are the partition's seats.  Returns how many. */
static uint32_t bookings_equal(tg_client *c, PGconn *db, uint32_t partition, const uint64_t *words,
                               uint32_t seat_count)
{
    char sql[400];
    snprintf(sql, sizeof(sql),
             "SELECT id, user_id, status, version,"
             " floor(extract(epoch FROM created_at) * 1000)::bigint,"
             " floor(extract(epoch FROM deadline) * 1000)::bigint"
             " FROM bookings WHERE partition_id = %u"
             "  AND status IN ('created', 'pending_payment', 'paid') ORDER BY id",
             partition);
    PGresult *res = PQexec(db, sql);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    /* seats per booking seq, from one pass over the words */
    uint32_t max_seq = 0;
    for (uint32_t i = 0; i < seat_count; i++) {
        max_seq =
            tg_seat_word_booking(words[i]) > max_seq ? tg_seat_word_booking(words[i]) : max_seq;
    }
    uint32_t(*lists)[TG_BOOKING_SEATS_MAX + 1] = calloc(max_seq + 1, sizeof(*lists));
    cr_assert(lists != NULL);
    for (uint32_t i = 0; i < seat_count; i++) {
        uint32_t seq = tg_seat_word_booking(words[i]);
        if (seq != 0 && tg_seat_word_state(words[i]) != TG_SEAT_BLOCKED) {
            cr_assert(lists[seq][0] < TG_BOOKING_SEATS_MAX);
            lists[seq][1 + lists[seq][0]++] = i;
        }
    }
    for (int r = 0; r < PQntuples(res); r++) {
        uint32_t seq = tg_booking_id_seq(strtoull(PQgetvalue(res, r, 0), NULL, 10));
        booking_equal(c, res, r, seq <= max_seq ? &lists[seq][1] : NULL,
                      seq <= max_seq ? lists[seq][0] : 0);
    }
    uint32_t n = (uint32_t)PQntuples(res);
    free(lists);
    PQclear(res);
    return n;
}

static void partition_info(tg_client *c, uint32_t partition, tg_msg *rep)
{
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = partition;
    cr_assert_eq(hx_call(c, partition, &req, rep), TG_OK);
}

/* ---- a. A replayed partition equals PostgreSQL --------------------------- */

/* The hold after replay is the first change the new incarnation logs. */
static void hold_continues_the_log(tg_client *c)
{
    static tg_msg rep;
    uint32_t seat = 14;
    cr_assert_eq(hx_hold(c, BOOKING_ID(1, 1), 101, &seat, 1, &rep), TG_OK);
    cr_assert_eq(rep.seats_hold_ok.seats.count, 5);
    tg_msg req = {.type = TG_WIRE_LOG_READ};
    req.log_read.partition_id = 1;
    req.log_read.from_seq = 12346;
    req.log_read.max = 16;
    cr_assert_eq(hx_call(c, 1, &req, &rep), TG_OK);
    cr_assert_eq(rep.log_read_ok.map_epoch, 3);
    cr_assert_eq(rep.log_read_ok.log_head, 12346);
    cr_assert_eq(rep.log_read_ok.record_count, 1);
    const tg_wire_log_record *rec = &rep.log_read_ok.records[0];
    cr_assert_eq(rec->seq, 12346);
    cr_assert_eq(rec->kind, 1);
    cr_assert_eq(rec->ident, 14);
    cr_assert_eq(rec->word, tg_seat_word_make(TG_SEAT_SELECTED, 1, 1));
    /* a new booking's id continues after the newest one PostgreSQL has (7001,
     * cancelled), never taking an id that is already there */
    tg_booking_id fresh = hx_booking_create(c, 1, 9);
    cr_assert_gt(tg_booking_id_seq(fresh), 7001, "new booking seq %u reuses an id",
                 tg_booking_id_seq(fresh));
}

static void ended_bookings_are_history(tg_client *c)
{
    static tg_msg rep;
    cr_assert_eq(hx_booking_get(c, BOOKING_ID(1, 3), 0, &rep), TG_ENOT_FOUND);
    cr_assert_eq(hx_booking_get(c, BOOKING_ID(1, 4), 0, &rep), TG_ENOT_FOUND);
    cr_assert_eq(hx_booking_get(c, BOOKING_ID(1, 7001), 0, &rep), TG_OK);
    cr_assert_eq(rep.booking_get_ok.status, TG_BOOKING_CANCELLED);
    cr_assert_eq(rep.booking_get_ok.seats.count, 0);
}

/* Partition 3 replayed with --epoch 7: the past-due hold and payment expire
 * at once (sweeper), their seats come back FREE; the good hold stays. */
static void past_deadlines_expire_at_once(tg_client *c, PGconn *db)
{
    static tg_msg rep;
    partition_info(c, 3, &rep);
    cr_assert_eq(rep.partition_info_ok.map_epoch, 7);
    int64_t until = hx_now_ms() + 5000;
    uint32_t s1 = 0, s2 = 0;
    for (;;) {
        s1 = hx_booking_get(c, BOOKING_ID(3, 1), 0, &rep) == TG_OK ? rep.booking_get_ok.status : 0;
        s2 = hx_booking_get(c, BOOKING_ID(3, 2), 0, &rep) == TG_OK ? rep.booking_get_ok.status : 0;
        if ((s1 == TG_BOOKING_EXPIRED && s2 == TG_BOOKING_EXPIRED) || hx_now_ms() > until) {
            break;
        }
        hx_sleep_ms(20);
    }
    cr_assert_eq(s1, TG_BOOKING_EXPIRED, "the past-due hold was not expired");
    cr_assert_eq(s2, TG_BOOKING_EXPIRED, "the past-due payment was not expired");
    uint64_t *expected = pg_words(db, 3, HALL_SEATS);
    for (uint32_t seat = 5; seat <= 8; seat++) {
        expected[seat] = tg_seat_word_next(expected[seat], TG_SEAT_FREE, 0);
    }
    words_equal(c, 3, HALL_SEATS, expected);
    cr_assert_eq(hx_booking_get(c, BOOKING_ID(3, 3), 0, &rep), TG_OK);
    cr_assert_eq(rep.booking_get_ok.status, TG_BOOKING_CREATED);
    free(expected);
}

Test(persister_replay, a_replayed_partition_equals_postgresql_seat_for_seat_and_booking_for_booking)
{
    pgt_server *s;
    pgt_run_result r;
    static hx_unit u; /* the harness keeps a pointer to it until .fini */
    static tg_msg rep;
    PGconn *db = seeded(&s);
    int64_t now = tg_now_ms(); /* wall clock: deadlines are Unix times */
    exec_at(db, now, mix_sql);
    exec_at(db, now, hall_sql);
    hx_unit_init(&u, "rplmix");
    hx_start(&u);

    persister_ok(&r, s, ARGS("replay", "1", "--pu", u.rep_url));
    fprintf(stderr,
            "replay of 100,000 seats (96,018 not free, 6,004 bookings): %" PRId64
            " ms with process start; it says: %s",
            r.elapsed_ms, r.err);
    cr_assert(strstr(r.err, "restored into") != NULL, "%s", r.err);
    persister_ok(&r, s, ARGS("replay", "3", "--epoch", "7", "--pu", u.rep_url));

    tg_client *c = hx_client(&u, 1, 4);
    cr_assert_eq(tg_client_route(c, 3, u.rep_url), TG_OK);
    partition_info(c, 1, &rep);
    cr_assert_eq(rep.partition_info_ok.event_id, 1);
    cr_assert_eq(rep.partition_info_ok.seat_count, DEMO_SEATS);
    cr_assert_eq(rep.partition_info_ok.map_epoch, 3, "max(grid_partitions 1, offsets 3)");
    cr_assert_eq(rep.partition_info_ok.log_head, 12345, "log_head %" PRIu64,
                 rep.partition_info_ok.log_head);
    cr_assert_eq(rep.partition_info_ok.log_persisted, 12345);

    uint64_t *words = pg_words(db, 1, DEMO_SEATS);
    words_equal(c, 1, DEMO_SEATS, words);
    totals_equal(c, db, 1, 1);
    cr_assert_eq(bookings_equal(c, db, 1, words, DEMO_SEATS), 6003);
    ended_bookings_are_history(c);
    hold_continues_the_log(c);
    past_deadlines_expire_at_once(c, db);
    free(words);
    hx_client_close(c);
    hx_stop_ok(&u);
    PQfinish(db);
}

/* ---- b. A unit that has the partition is left alone ----------------------- */

Test(persister_replay, replay_into_a_unit_that_has_the_partition_exits_1_and_changes_nothing)
{
    pgt_server *s;
    pgt_run_result r;
    static hx_unit u;
    static tg_msg rep, info;
    PGconn *db = seeded(&s);
    hx_unit_init(&u, "rplexist");
    hx_start(&u);
    persister_ok(&r, s, ARGS("replay", "3", "--pu", u.rep_url));
    tg_client *c = hx_client(&u, 3, 4);
    tg_booking_id b = hx_booking_create(c, 3, 42);
    uint32_t seats[] = {1, 2, 3};
    cr_assert_eq(hx_hold(c, b, 42, seats, 3, &rep), TG_OK);
    static uint64_t before[HALL_SEATS];
    hx_seat_words(c, 3, HALL_SEATS, before);
    partition_info(c, 3, &info);

    /* changed PostgreSQL: a replay that went through would show it */
    pgt_exec(db, "UPDATE seats SET status = 'BLOCKED', version = 9"
                 " WHERE event_id = 3 AND seat_no < 100");
    persister_fails(s, ARGS("replay", "3", "--pu", u.rep_url), 1,
                    "partition already exists on that unit");
    words_equal(c, 3, HALL_SEATS, before);
    partition_info(c, 3, &rep);
    const __typeof__(rep.partition_info_ok) *now = &rep.partition_info_ok,
                                            *then = &info.partition_info_ok;
    cr_assert_eq(now->map_epoch, then->map_epoch);
    cr_assert_eq(now->log_head, then->log_head);
    cr_assert_eq(now->log_persisted, then->log_persisted);
    cr_assert_eq(now->bookings_created, then->bookings_created);
    cr_assert_eq(now->segment_bytes, then->segment_bytes);
    cr_assert_eq(hx_booking_get(c, b, 42, &rep), TG_OK);
    cr_assert_eq(rep.booking_get_ok.seats.count, 3);
    hx_client_close(c);
    hx_stop_ok(&u);
    PQfinish(db);
}

/* A booking of 17 seats passes PostgreSQL's constraints but no unit can hold
 * it: the unit refuses the restore at END.  The partition is not served;
 * once the data is mended, replay starts the restore over. */
// clang-format off
static const char refuse_sql[] =
    "BEGIN;"
    "INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at, deadline,"
    " version) VALUES ((3::bigint << 32) | 1, 3, 3, 31, 'paid', " MS("$NOW") ", " MS("$NOW") ", 3);"
    "UPDATE seats SET status = 'SOLD', booking_id = (3::bigint << 32) | 1, version = 2"
    " WHERE event_id = 3 AND seat_no < 17;"
    "COMMIT";
// clang-format on

Test(persister_replay, a_restore_the_unit_refuses_is_reported_and_can_be_run_again)
{
    pgt_server *s;
    pgt_run_result r;
    static hx_unit u;
    static tg_msg rep;
    PGconn *db = seeded(&s);
    exec_at(db, tg_now_ms(), refuse_sql);
    hx_unit_init(&u, "rplrefuse");
    hx_start(&u);
    persister_fails(s, ARGS("replay", "3", "--pu", u.rep_url), 1,
                    "refused partition_restore END: corrupt");
    tg_client *c = hx_client(&u, 3, 4);
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = 3;
    cr_assert_eq(hx_call(c, 3, &req, &rep), TG_EUNAVAILABLE, "a failed restore is served");

    pgt_exec(db, "UPDATE seats SET status = 'FREE', booking_id = NULL, version = 3"
                 " WHERE event_id = 3 AND seat_no = 16");
    persister_ok(&r, s, ARGS("replay", "3", "--pu", u.rep_url));
    uint64_t *words = pg_words(db, 3, HALL_SEATS);
    words_equal(c, 3, HALL_SEATS, words);
    cr_assert_eq(bookings_equal(c, db, 3, words, HALL_SEATS), 1);
    free(words);
    hx_client_close(c);
    hx_stop_ok(&u);
    PQfinish(db);
}

/* ---- c. Bad arguments ------------------------------------------------------ */

Test(persister_replay, bad_arguments_exit_64_and_unknown_partitions_1_with_one_line)
{
    pgt_server *s;
    static hx_unit u;
    PGconn *db = seeded(&s);
    hx_unit_init(&u, "rplargs");
    hx_start(&u);
    const char *url = u.rep_url;
    /* Usage errors come before any connection: no database is given here. */
    persister_fails(NULL, ARGS("replay", "1"), 64, "--pu URL is required");
    persister_fails(NULL, ARGS("replay", "--pu", url), 64, "usage: tixgrid-persister replay");
    persister_fails(NULL, ARGS("replay", "one", "--pu", url), 64, "PARTITION must be a whole");
    persister_fails(NULL, ARGS("replay", "2097152", "--pu", url), 64, "PARTITION must be");
    persister_fails(NULL, ARGS("replay", "-1", "--pu", url), 64, "PARTITION must be");
    persister_fails(NULL, ARGS("replay", "1", "2", "--pu", url), 64, "usage:");
    persister_fails(NULL, ARGS("replay", "1", "--pu", "nowhere"), 64, "not an nng address");
    persister_fails(NULL, ARGS("replay", "1", "--pu", url, "--epoch", "x"), 64, "--epoch must");
    persister_fails(NULL, ARGS("replay", "1", "--pu"), 64, "--pu needs a value");
    persister_fails(NULL, ARGS("replay", "1", "--pu", url, "--force"), 64, "unknown option");
    /* Well-formed but not there. */
    persister_fails(s, ARGS("replay", "99", "--pu", url), 1,
                    "partition 99 is not in grid_partitions");
    /* An epoch the drain would fence. */
    pgt_exec(db, "INSERT INTO partition_offsets (partition_id, epoch, last_seq) VALUES (3, 5, 0)");
    persister_fails(s, ARGS("replay", "3", "--epoch", "4", "--pu", url), 1,
                    "is below partition_offsets.epoch 5");
    static tg_msg rep;
    tg_client *c = hx_client(&u, 99, 2);
    tg_msg req = {.type = TG_WIRE_STATS};
    cr_assert_eq(tg_client_call_to(c, url, &req, HX_CALL_TIMEOUT_MS, hx_space(), &rep), TG_OK);
    cr_assert_eq(rep.stats_ok.partitions, 0, "the unit was given a partition");
    hx_client_close(c);
    /* A unit that is not there: 69, as for PostgreSQL being down. */
    char nowhere[96];
    snprintf(nowhere, sizeof(nowhere), "ipc://%s/nobody.rep", u.dir);
    persister_fails(NULL, ARGS("replay", "3", "--pu", url, "--timeout-ms", "99"), 64,
                    "--timeout-ms needs a whole number of ms from 100 to 600000");
    persister_fails(s, ARGS("replay", "3", "--pu", nowhere, "--timeout-ms", "1000"), 69,
                    "no answer from the unit");
    hx_stop_ok(&u);
    PQfinish(db);
}

/* ---- d. Grid → PostgreSQL → a fresh unit, end to end ----------------------- */

static pid_t drain_pid; /* `tixgrid-persister run`, or 0 */

/* Starts the drain with its output appended to log_path; it dies with the
 * test process (PR_SET_PDEATHSIG) even when the test is killed. */
static void drain_start(const pgt_server *s, const char *log_path)
{
    const char *bin = env_or_fail("TIXGRID_PERSISTER_BIN");
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent || fd < 0) {
            _exit(127);
        }
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("TIXGRID_DB", s->conninfo, 1);
        setenv("TIXGRID_LOG_LEVEL", "info", 1);
        execl(bin, bin, "run", "--batch-max-ms", "5", "--routes-refresh-ms", "100", (char *)NULL);
        _exit(127);
    }
    drain_pid = pid;
}

/* SIGTERM, a bounded wait, then SIGKILL (saying so). */
static void drain_stop(void)
{
    if (drain_pid <= 0) {
        return;
    }
    int status = 0;
    kill(drain_pid, SIGTERM);
    if (!hx_wait_exit(drain_pid, HX_STOP_TIMEOUT_MS, &status)) {
        kill(drain_pid, SIGKILL);
        waitpid(drain_pid, &status, 0);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "tixgrid-persister run did not exit 0 after SIGTERM (status %#x)\n",
                status);
    }
    drain_pid = 0;
}

static bool drain_built(void)
{
    pgt_run_result r;
    persister(&r, NULL, ARGS("--help"));
    return strstr(r.out, "\n  run") != NULL && strstr(r.out, "\n  pu-register") != NULL &&
           strstr(r.out, "\n  place") != NULL;
}

/* xorshift64*: a workload that is the same on every run of one seed. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15u;
static uint32_t rnd(uint32_t n)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return (uint32_t)((rnd_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

#define E2E_ROUNDS       3u    /* the drain catches up after each */
#define E2E_OPS          2000u /* a round */
#define E2E_BOOKINGS_MAX (E2E_ROUNDS * E2E_OPS + 1)
#define E2E_HOT_SEATS    2000u /* most requests aim here: conflicts, releases, reuse */

typedef struct {
    tg_booking_id id;
    uint64_t user;
} e2e_booking;

static e2e_booking e2e_bookings[E2E_BOOKINGS_MAX];
static uint32_t e2e_count;

/* A request about one of our bookings; any engine outcome is fine. */
static void e2e_booking_op(tg_client *c, uint32_t kind, const e2e_booking *b)
{
    static tg_msg rep;
    tg_msg req = {.type = kind == 0   ? TG_WIRE_PAYMENT_BEGIN
                          : kind == 1 ? TG_WIRE_PAYMENT_CONFIRM
                          : kind == 2 ? TG_WIRE_PAYMENT_FAIL
                                      : TG_WIRE_BOOKING_CANCEL};
    if (kind == 0) {
        req.payment_begin.booking_id = b->id;
        req.payment_begin.user_id = b->user;
    } else if (kind == 1) {
        req.payment_confirm.booking_id = b->id;
    } else if (kind == 2) {
        req.payment_fail.booking_id = b->id;
    } else {
        req.booking_cancel.booking_id = b->id;
        req.booking_cancel.user_id = b->user;
    }
    (void)hx_call(c, 1, &req, &rep);
}

static void e2e_seats_op(tg_client *c, uint32_t kind, const e2e_booking *b)
{
    static tg_msg rep;
    uint32_t seats[4], n = 1 + rnd(4);
    uint32_t base = rnd(10) == 0 ? rnd(DEMO_SEATS - 4) : rnd(E2E_HOT_SEATS);
    for (uint32_t i = 0; i < n; i++) {
        seats[i] = base + i;
    }
    if (kind == 1) { /* release one seat the booking holds, if any */
        cr_assert_eq(hx_booking_get(c, b->id, 0, &rep), TG_OK);
        uint32_t held = rep.booking_get_ok.seats.count;
        n = held > 0 ? 1 : n;
        seats[0] = held > 0 ? rep.booking_get_ok.seats.ids[rnd(held)] : seats[0];
    }
    tg_msg req = {.type = kind == 0   ? TG_WIRE_SEATS_HOLD
                          : kind == 1 ? TG_WIRE_SEATS_RELEASE
                          : kind == 2 ? TG_WIRE_SEATS_BLOCK
                                      : TG_WIRE_SEATS_UNBLOCK};
    tg_wire_seat_ids ids = {.count = n};
    memcpy(ids.ids, seats, n * sizeof(uint32_t));
    if (kind <= 1) {
        req.seats_hold.booking_id = b->id; /* hold and release share their layout */
        req.seats_hold.user_id = b->user;
        req.seats_hold.seats = ids;
    } else {
        req.seats_block.partition_id = 1; /* block and unblock too */
        req.seats_block.seats = ids;
    }
    (void)hx_call(c, 1, &req, &rep);
}

static void e2e_workload(tg_client *c)
{
    static tg_msg rep;
    for (uint32_t op = 0; op < E2E_OPS; op++) {
        uint32_t r = rnd(100);
        const e2e_booking *b = e2e_count > 0 ? &e2e_bookings[rnd(e2e_count)] : NULL;
        if (b == NULL || r < 20) {
            uint64_t user = 1 + rnd(50);
            e2e_bookings[e2e_count++] = (e2e_booking){hx_booking_create(c, 1, user), user};
        } else if (r < 50) {
            e2e_seats_op(c, 0, b);
        } else if (r < 55) {
            tg_msg req = {.type = TG_WIRE_SEATS_HOLD_BEST};
            req.seats_hold_best.booking_id = b->id;
            req.seats_hold_best.user_id = b->user;
            req.seats_hold_best.quantity = 1 + rnd(4);
            req.seats_hold_best.section = rnd(3) == 0 ? -1 : (int32_t)rnd(5);
            (void)hx_call(c, 1, &req, &rep);
        } else if (r < 62) {
            e2e_seats_op(c, 1, b);
        } else if (r < 92) {
            e2e_booking_op(c, (r - 62) / 8 < 3 ? (r - 62) / 8 : 3,
                           b); /* begin, confirm, fail, cancel */
        } else {
            e2e_seats_op(c, r < 96 ? 2 : 3, b);
        }
    }
}

/* Every booking the workload made, read from both units: live and paid
 * ones equal field for field; ended ones are history (only the newest is
 * kept, for its id).  Returns how many were live or paid. */
static uint32_t e2e_bookings_equal(tg_client *a, tg_client *b)
{
    static tg_msg ra, rb;
    uint32_t live = 0;
    for (uint32_t i = 0; i < e2e_count; i++) {
        tg_booking_id id = e2e_bookings[i].id;
        cr_assert_eq(hx_booking_get(a, id, 0, &ra), TG_OK);
        tg_err err = hx_booking_get(b, id, 0, &rb);
        uint32_t st = ra.booking_get_ok.status;
        bool kept = st <= TG_BOOKING_PAID || i == e2e_count - 1;
        cr_assert_eq(err, kept ? TG_OK : TG_ENOT_FOUND, "booking %" PRIu64 " (%s): %s", id,
                     tg_booking_status_name((tg_booking_status)st), tg_errname(err));
        if (kept) {
            const tg_wire_booking *x = &ra.booking_get_ok, *y = &rb.booking_get_ok;
            cr_assert(x->user_id == y->user_id && x->status == y->status &&
                          x->version == y->version && x->created_ms == y->created_ms &&
                          x->deadline_ms == y->deadline_ms && x->seats.count == y->seats.count &&
                          memcmp(x->seats.ids, y->seats.ids, x->seats.count * 4) == 0,
                      "booking %" PRIu64 " differs", id);
            live += st <= TG_BOOKING_PAID;
        }
    }
    return live;
}

/* Waits (bounded) until PostgreSQL has everything unit a logged. */
static uint64_t e2e_wait_drained(PGconn *db, tg_client *a)
{
    static tg_msg info;
    partition_info(a, 1, &info);
    uint64_t head = info.partition_info_ok.log_head;
    int64_t until = hx_now_ms() + 30000;
    int64_t persisted = -1;
    while (persisted != (int64_t)head && hx_now_ms() < until) {
        hx_sleep_ms(20);
        persisted = pgt_query_i64(db, "SELECT coalesce((SELECT last_seq FROM partition_offsets"
                                      " WHERE partition_id = 1), 0)");
    }
    cr_assert_eq(persisted, (int64_t)head, "the drain reached %" PRId64 " of %" PRIu64, persisted,
                 head);
    return head;
}

Test(persister_replay, grid_to_postgresql_to_a_fresh_unit_by_replay_equals_the_grid_seat_for_seat)
{
    cr_assert(drain_built(), "tixgrid-persister lacks run, pu-register or place");
    pgt_server *s;
    pgt_run_result r;
    static hx_unit ua, ub;
    static tg_msg info;
    PGconn *db = seeded(&s);
    hx_unit_init(&ua, "rple2ea");
    snprintf(ua.layout_path, sizeof(ua.layout_path), "%s/layout.json", ua.dir);
    persister_to(&r, s, ua.layout_path, ARGS("layout-json", "1", "1"));
    cr_assert_eq(pgt_exit_code(&r), 0, "%s", r.err);
    hx_start(&ua);
    persister_ok(&r, s, ARGS("pu-register", ua.name, ua.rep_url, ua.pub_url));
    persister_ok(&r, s, ARGS("place", "1", ua.name));
    char drain_log[96];
    snprintf(drain_log, sizeof(drain_log), "%s/drain.log", ua.dir);
    drain_start(s, drain_log);

    tg_client *a = hx_client(&ua, 1, 4);
    uint64_t head = 0;
    for (uint32_t round = 0; round < E2E_ROUNDS; round++) {
        e2e_workload(a);
        head = e2e_wait_drained(db, a);
    }
    /* the newest booking has ended: its id must not be handed out again */
    e2e_bookings[e2e_count++] = (e2e_booking){hx_booking_create(a, 1, 7), 7};
    e2e_booking_op(a, 3, &e2e_bookings[e2e_count - 1]);
    head = e2e_wait_drained(db, a);
    uint64_t *words = calloc(DEMO_SEATS, sizeof(*words));
    cr_assert(words != NULL);
    hx_seat_words(a, 1, DEMO_SEATS, words);
    uint64_t *stored = pg_words(db, 1, DEMO_SEATS);
    cr_assert(memcmp(words, stored, DEMO_SEATS * sizeof(*words)) == 0,
              "PostgreSQL's seats differ from the grid's after the drain");
    free(stored);

    hx_unit_init(&ub, "rple2eb");
    hx_start(&ub);
    persister_ok(&r, s, ARGS("replay", "1", "--pu", ub.rep_url));
    tg_client *b = hx_client(&ub, 1, 4);
    words_equal(b, 1, DEMO_SEATS, words);
    totals_equal(b, db, 1, 1);
    uint32_t live = e2e_bookings_equal(a, b);
    partition_info(b, 1, &info);
    cr_assert_eq(info.partition_info_ok.log_head, head);
    cr_assert_eq((int64_t)info.partition_info_ok.map_epoch,
                 pgt_query_i64(db, "SELECT greatest(g.epoch, o.epoch) FROM grid_partitions g"
                                   " JOIN partition_offsets o USING (partition_id)"
                                   " WHERE partition_id = 1"));
    tg_booking_id fresh = hx_booking_create(b, 1, 8);
    cr_assert_gt(fresh, e2e_bookings[e2e_count - 1].id, "a booking id was handed out twice");
    fprintf(stderr,
            "end to end: %u operations, %u bookings (%u live or paid), log head %" PRIu64
            "; the replayed unit equals the grid\n",
            E2E_ROUNDS * E2E_OPS, e2e_count, live, head);
    free(words);
    hx_client_close(b);
    hx_client_close(a);
    drain_stop();
    hx_stop_ok(&ub);
    hx_stop_ok(&ua);
    PQfinish(db);
}

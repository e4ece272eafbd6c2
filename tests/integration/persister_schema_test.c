/*
 * persister_schema_test.c — the SQL schema, migrations, demo data and
 * load-test users of tixgrid-persister, against a real PostgreSQL 15.
 *
 * Each test starts its own server (pg.h) and runs the real binary
 * (TIXGRID_PERSISTER_BIN); the layout test also starts a real tixgrid-pu
 * (TIXGRID_PU_BIN, harness.h) on the layout the persister printed.  The
 * migrations on disk (TIXGRID_SQL_DIR) are read only to make changed copies.
 * Servers run with fsync off except where timing is measured.
 */
#include "harness.h"
#include "pg.h"

#include <criterion/criterion.h>
#include <sodium.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void fini(void)
{
    pgt_fini_all();
    hx_fini_all();
}

TestSuite(persister_schema, .fini = fini, .timeout = 120);

/* ---- Helpers ------------------------------------------------------------ */

#define RUN_TIMEOUT_MS 60000
#define ARGS_MAX       16

static const pgt_options quick = {.fsync_off = true};

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v != NULL && v[0] != '\0', "%s is not set (run through meson test)", name);
    return v;
}

/* Runs tixgrid-persister with args (NULL-terminated) against s (s NULL:
 * TIXGRID_DB empty), stdout to out_path when not NULL. */
static void persister(pgt_run_result *r, const pgt_server *s, const char *out_path,
                      const char *const *args)
{
    pgt_persister(r, s, out_path, args);
}

/* Runs it and asserts exit 0 (printing its stderr otherwise). */
static void persister_ok(pgt_run_result *r, const pgt_server *s, const char *out_path,
                         const char *const *args)
{
    persister(r, s, out_path, args);
    if (pgt_exit_code(r) != 0) {
        fprintf(stderr, "---- persister %s stderr ----\n%s----\n", args[0], r->err);
    }
    cr_assert_eq(pgt_exit_code(r), 0, "tixgrid-persister %s exited %d", args[0], pgt_exit_code(r));
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A server (in *s) with the schema, and a connection to it. */
static PGconn *migrated(pgt_server **s, const pgt_options *o)
{
    pgt_run_result r;
    *s = pgt_start(o);
    persister_ok(&r, *s, NULL, ARGS("migrate"));
    return pgt_connect(*s);
}

/* ... and the demo data. */
static PGconn *seeded(pgt_server **s, const pgt_options *o)
{
    pgt_run_result r;
    PGconn *db = migrated(s, o);
    persister_ok(&r, *s, NULL, ARGS("seed-demo"));
    return db;
}

/* A digest of everything seed-demo writes. */
static char *demo_fingerprint(PGconn *db)
{
    return strdup(pgt_query_text(
        db, "SELECT md5(concat_ws('|',"
            " (SELECT md5(string_agg(s::text, ',' ORDER BY event_id, seat_no)) FROM seats s),"
            " (SELECT md5(string_agg(e::text, ',' ORDER BY id)) FROM events e),"
            " (SELECT md5(string_agg(k::text, ',' ORDER BY id)) FROM event_keys k),"
            " (SELECT md5(string_agg(x::text, ',' ORDER BY event_id, section_idx))"
            "   FROM sections x),"
            " (SELECT md5(string_agg(g::text, ',' ORDER BY partition_id))"
            "   FROM grid_partitions g),"
            " (SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u),"
            " (SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM artists a)))"));
}

static void copy_file(const char *from, const char *to, const char *append)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    cr_assert(in != NULL && out != NULL, "copy %s to %s: %s", from, to, strerror(errno));
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    }
    if (append != NULL) {
        fputs(append, out);
    }
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

/* Copies schemas/sql into <server dir>/<sub> (removed with the server),
 * appending `append` to the file named `edit` (may be NULL); returns the
 * folder in a static buffer. */
/* The numbered migrations in schemas/sql (TIXGRID_SQL_DIR): the binary
 * builds in the same files, so the database must record exactly these. */
static uint32_t migrations_on_disk(void)
{
    const char *src = getenv("TIXGRID_SQL_DIR");
    DIR *d = src != NULL ? opendir(src) : NULL;
    cr_assert(d != NULL, "TIXGRID_SQL_DIR is not a readable folder");
    uint32_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        n += len >= 5 && strcmp(de->d_name + len - 4, ".sql") == 0 ? 1 : 0;
    }
    closedir(d);
    return n;
}

static const char *sql_copy(const pgt_server *s, const char *sub, const char *edit,
                            const char *append)
{
    static char dir[128];
    const char *src = env_or_fail("TIXGRID_SQL_DIR");
    snprintf(dir, sizeof(dir), "%s/%s", s->dir, sub);
    cr_assert(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
    DIR *d = opendir(src);
    cr_assert(d != NULL, "opendir %s", src);
    struct dirent *de;
    uint32_t copied = 0;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".sql") != 0) {
            continue;
        }
        char from[512], to[512];
        snprintf(from, sizeof(from), "%s/%s", src, de->d_name);
        snprintf(to, sizeof(to), "%s/%s", dir, de->d_name);
        bool edited = edit != NULL && strcmp(edit, de->d_name) == 0;
        copy_file(from, to, edited ? append : NULL);
        copied++;
    }
    closedir(d);
    cr_assert_eq(copied, migrations_on_disk(), "expected %u migrations in %s",
                 migrations_on_disk(), src);
    return dir;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* ---- Migrations --------------------------------------------------------- */

Test(persister_schema, migrate_applies_every_migration_and_a_second_run_applies_nothing)
{
    pgt_server *s;
    pgt_run_result r;
    PGconn *db = migrated(&s, &quick);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM schema_migrations"),
                 (int64_t)migrations_on_disk());
    static const char *const tables[] = {"users",          "artists",
                                         "events",         "event_keys",
                                         "events_current", "sections",
                                         "seats",          "grid_partitions",
                                         "bookings",       "booking_seats",
                                         "payments",       "partition_offsets",
                                         "audit_log",      "notification_outbox"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT to_regclass('%s') IS NOT NULL", tables[i]);
        cr_assert_str_eq(pgt_query_text(db, sql), "t", "table %s is missing", tables[i]);
    }
    const char *state_sql = "SELECT (SELECT string_agg(version || name || checksum || applied_at,"
                            " ',' ORDER BY version) FROM schema_migrations)"
                            " || (SELECT count(*) FROM pg_class)";
    char *before = strdup(pgt_query_text(db, state_sql));
    persister_ok(&r, s, NULL, ARGS("migrate"));
    char want[64];
    snprintf(want, sizeof(want), "0 applied, %u already applied", migrations_on_disk());
    cr_assert(strstr(r.err, want) != NULL, "%s", r.err);
    cr_assert_str_eq(pgt_query_text(db, state_sql), before, "a second migrate changed something");
    free(before);
    PQfinish(db);
}

Test(persister_schema, migrate_refuses_a_migration_changed_after_it_was_applied)
{
    pgt_server *s;
    pgt_run_result r;
    PGconn *db = migrated(&s, &quick);
    const char *dir = sql_copy(s, "edited", "002_bookings.sql", "-- an afterthought\n");
    persister(&r, s, NULL, ARGS("migrate", "--migrations", dir));
    cr_assert_eq(pgt_exit_code(&r), 1, "exit %d: %s", pgt_exit_code(&r), r.err);
    cr_assert(strstr(r.err, "002_bookings.sql was changed after it was applied") != NULL, "%s",
              r.err);
    cr_assert_eq(pgt_count_lines(r.err), 1, "one line, not: %s", r.err);

    /* A new migration in an unchanged copy is applied; a broken one is not,
     * and leaves nothing behind. */
    const uint32_t known = migrations_on_disk();
    char extra[32], broken[32], want[96];
    snprintf(extra, sizeof(extra), "%03u_extra.sql", known + 1);
    snprintf(broken, sizeof(broken), "%03u_broken.sql", known + 2);
    dir = sql_copy(s, "added", NULL, NULL);
    write_text(dir, extra, "CREATE TABLE extra_table (x integer);\n");
    persister_ok(&r, s, NULL, ARGS("migrate", "--migrations", dir));
    snprintf(want, sizeof(want), "1 applied, %u already applied", known);
    cr_assert(strstr(r.err, want) != NULL, "%s", r.err);
    write_text(dir, broken, "CREATE TABLE half_made (x integer);\nSELECT 1 / 0;\n");
    persister(&r, s, NULL, ARGS("migrate", "--migrations", dir));
    cr_assert_eq(pgt_exit_code(&r), 1, "%s", r.err);
    cr_assert(strstr(r.err, "division by zero") != NULL, "%s", r.err);
    cr_assert_str_eq(pgt_query_text(db, "SELECT to_regclass('half_made') IS NULL"), "t");
    cr_assert_eq(pgt_query_i64(db, "SELECT max(version) FROM schema_migrations"),
                 (int64_t)known + 1);

    /* The built-in migrations now lack the extra one: an older binary refuses. */
    persister(&r, s, NULL, ARGS("migrate"));
    cr_assert_eq(pgt_exit_code(&r), 1);
    snprintf(want, sizeof(want), "%s, which this build does not know", extra);
    cr_assert(strstr(r.err, want) != NULL, "%s", r.err);
    PQfinish(db);
}

/* ---- Demo data ---------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t price_minor;
    int64_t rows, seats_per_row;
} expected_section;

/* persister/README.md, "Demo data". */
static const expected_section demo_sections[] = {
    {"Golden Circle", 24900, 60, 50}, {"Floor", 14900, 200, 60},  {"Lower Tier", 11900, 700, 40},
    {"Upper Tier", 7900, 800, 50},    {"Balcony", 4900, 850, 20},
};
#define DEMO_SECTIONS 5

static void check_demo_sections(PGconn *db)
{
    PGresult *res = PQexec(db, "SELECT x.name, x.price_minor, x.currency, count(*),"
                               " count(DISTINCT s.row_name), min(s.number), max(s.number),"
                               " min(s.price_minor), max(s.price_minor)"
                               " FROM sections x JOIN seats s USING (event_id, section_idx)"
                               " WHERE event_id = 1 GROUP BY x.section_idx, x.name,"
                               " x.price_minor, x.currency ORDER BY x.section_idx");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    cr_assert_eq(PQntuples(res), DEMO_SECTIONS);
    for (int i = 0; i < DEMO_SECTIONS; i++) {
        const expected_section *e = &demo_sections[i];
        cr_assert_str_eq(PQgetvalue(res, i, 0), e->name);
        cr_assert_eq(strtoll(PQgetvalue(res, i, 1), NULL, 10), e->price_minor);
        cr_assert_str_eq(PQgetvalue(res, i, 2), "EUR");
        cr_assert_eq(strtoll(PQgetvalue(res, i, 3), NULL, 10), e->rows * e->seats_per_row);
        cr_assert_eq(strtoll(PQgetvalue(res, i, 4), NULL, 10), e->rows);
        cr_assert_eq(strtoll(PQgetvalue(res, i, 5), NULL, 10), 1);
        cr_assert_eq(strtoll(PQgetvalue(res, i, 6), NULL, 10), e->seats_per_row);
        cr_assert_eq(strtoll(PQgetvalue(res, i, 7), NULL, 10), e->price_minor);
        cr_assert_eq(strtoll(PQgetvalue(res, i, 8), NULL, 10), e->price_minor);
    }
    PQclear(res);
}

static void check_password(PGconn *db, const char *email, const char *password)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT password_hash FROM users WHERE lower(email) = '%s'", email);
    const char *hash = pgt_query_text(db, sql);
    cr_assert(strncmp(hash, "$argon2id$", 10) == 0, "%s: %s", email, hash);
    cr_assert_eq(crypto_pwhash_str_verify(hash, password, strlen(password)), 0,
                 "%s: the documented password does not verify", email);
}

Test(persister_schema, seed_demo_makes_100000_seats_in_the_documented_sections_once)
{
    pgt_server *s;
    pgt_run_result r;
    cr_assert(sodium_init() >= 0);
    PGconn *db = seeded(&s, &quick);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM seats WHERE event_id = 1"), 100000);
    cr_assert_str_eq(pgt_query_text(db, "SELECT min(seat_no) || '..' || max(seat_no) || ' '"
                                        " || count(DISTINCT seat_no) || ' '"
                                        " || bool_and(status = 'FREE' AND booking_id IS NULL"
                                        "   AND version = 0 AND partition_id = 1)"
                                        " FROM seats WHERE event_id = 1"),
                     "0..99999 100000 true");
    check_demo_sections(db);
    cr_assert_str_eq(pgt_query_text(db, "SELECT concat_ws(' ', event_id, first_seat, seat_count,"
                                        " coalesce(primary_pu, '-'), epoch)"
                                        " FROM grid_partitions WHERE partition_id = 1"),
                     "1 0 100000 - 1");
    cr_assert_str_eq(pgt_query_text(db, "SELECT status || ' ' || currency || ' '"
                                        " || (starts_at > now()) FROM events WHERE id = 1"),
                     "on_sale EUR true");
    cr_assert_str_eq(pgt_query_text(db, "SELECT string_agg(role, ',' ORDER BY email)"
                                        " FROM users WHERE email LIKE '%@demo.tixgrid'"),
                     "admin,buyer,buyer,organizer");
    check_password(db, "buyer@demo.tixgrid", "demo-buyer-1");
    check_password(db, "organizer@demo.tixgrid", "demo-organizer-1");
    check_password(db, "admin@demo.tixgrid", "demo-admin-1");
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM events"), 5);

    char *before = demo_fingerprint(db);
    persister_ok(&r, s, NULL, ARGS("seed-demo"));
    char *after = demo_fingerprint(db);
    cr_assert_str_eq(after, before, "a second seed-demo changed the data");
    free(before);
    free(after);
    /* New events get ids after the demo's. */
    cr_assert_eq(pgt_query_i64(db, "SELECT nextval('events_id_seq')"), 6);
    PQfinish(db);
}

/* ---- Layouts ------------------------------------------------------------- */

static void check_unit_layout(hx_unit *u)
{
    static tg_msg rep;
    tg_client *c = hx_client(u, 1, 4);
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = 1;
    cr_assert_eq(hx_call(c, 1, &req, &rep), TG_OK);
    cr_assert_eq(rep.partition_info_ok.seat_count, 100000);
    cr_assert_eq(rep.partition_info_ok.event_id, 1);
    req = (tg_msg){.type = TG_WIRE_LAYOUT};
    req.layout.partition_id = 1;
    cr_assert_eq(hx_call(c, 1, &req, &rep), TG_OK);
    cr_assert_eq(rep.layout_ok.section_count, DEMO_SECTIONS);
    uint32_t rows = 0;
    for (uint32_t i = 0; i < DEMO_SECTIONS; i++) {
        const tg_wire_section *sec = &rep.layout_ok.sections[i];
        cr_assert_str_eq(sec->name, demo_sections[i].name);
        cr_assert_eq(sec->price_minor, demo_sections[i].price_minor);
        cr_assert_str_eq(sec->currency, "EUR");
        cr_assert_eq(sec->row_count, demo_sections[i].rows);
        cr_assert_eq(sec->seat_count, demo_sections[i].rows * demo_sections[i].seats_per_row);
        rows += sec->row_count;
    }
    cr_assert_eq(rep.layout_ok.row_count, rows);
    hx_client_close(c);
}

Test(persister_schema, layout_json_of_the_demo_concert_is_served_by_a_processing_unit)
{
    pgt_server *s;
    pgt_run_result r;
    static hx_unit u; /* the harness keeps a pointer to it until .fini */
    PGconn *db = seeded(&s, &quick);
    hx_unit_init(&u, "pstlayout");
    snprintf(u.layout_path, sizeof(u.layout_path), "%s/layout.json", u.dir);
    persister_ok(&r, s, u.layout_path, ARGS("layout-json", "1", "1"));
    hx_add_flag(&u, "--unpersisted");
    hx_start(&u);
    check_unit_layout(&u);
    hx_stop_ok(&u);

    persister(&r, s, NULL, ARGS("layout-json", "1", "9"));
    cr_assert_eq(pgt_exit_code(&r), 1);
    cr_assert(strstr(r.err, "event 1 has no partition 9") != NULL, "%s", r.err);
    cr_assert_eq(pgt_count_lines(r.err), 1, "%s", r.err);
    cr_assert_str_eq(r.out, "");

    /* A row whose seats are numbered out of order cannot be a layout row. */
    pgt_exec(db, "UPDATE seats SET number = 60 - number + 1 WHERE event_id = 3 AND seat_no < 24");
    persister(&r, s, NULL, ARGS("layout-json", "3", "3"));
    cr_assert_eq(pgt_exit_code(&r), 1, "%s", r.err);
    cr_assert(strstr(r.err, "not numbered 1..n") != NULL, "%s", r.err);
    PQfinish(db);
}

/* ---- Constraints ----------------------------------------------------------- */

#define CHECK_VIOLATION       "23514"
#define FOREIGN_KEY_VIOLATION "23503"
#define UNIQUE_VIOLATION      "23505"
#define EXCLUSION_VIOLATION   "23P01"
/* booking seq 1 of partition 1, and of partition 2 */
#define BOOKING_P1 "4294967297"
#define BOOKING_P2 "8589934593"

static void expect_refusal(PGconn *db, const char *sqlstate, const char *sql)
{
    cr_assert_str_eq(pgt_exec_fails(db, sql), sqlstate, "%s", sql);
}

Test(persister_schema, constraints_refuse_impossible_seats_and_bookings)
{
    pgt_server *s;
    PGconn *db = seeded(&s, &quick);
    expect_refusal(db, CHECK_VIOLATION,
                   "UPDATE seats SET status = 'SOLD' WHERE event_id = 1 AND seat_no = 0");
    expect_refusal(db, CHECK_VIOLATION,
                   "UPDATE seats SET status = 'GONE' WHERE event_id = 1 AND seat_no = 0");
    expect_refusal(db, CHECK_VIOLATION,
                   "UPDATE seats SET price_minor = -1 WHERE event_id = 1 AND seat_no = 0");
    expect_refusal(db, CHECK_VIOLATION,
                   "UPDATE seats SET version = 536870912"
                   " WHERE event_id = 1 AND seat_no = 0");
    expect_refusal(db, CHECK_VIOLATION,
                   "INSERT INTO seats (event_id, seat_no, partition_id, section_idx, row_name,"
                   " number, price_minor) VALUES (1, -1, 1, 0, 'X', 1, 100)");
    expect_refusal(db, CHECK_VIOLATION,
                   "UPDATE seats SET booking_id = " BOOKING_P1
                   " WHERE event_id = 1 AND seat_no = 0");
    expect_refusal(db, CHECK_VIOLATION,
                   "UPDATE seats SET status = 'SOLD', booking_id = " BOOKING_P2
                   " WHERE event_id = 1 AND seat_no = 0");
    expect_refusal(db, FOREIGN_KEY_VIOLATION,
                   "UPDATE seats SET status = 'SOLD', booking_id = " BOOKING_P1
                   " WHERE event_id = 1 AND seat_no = 0");
    expect_refusal(db, CHECK_VIOLATION,
                   "INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at)"
                   " VALUES (" BOOKING_P1 ", 1, 1, 7, 'lost', now())");
    expect_refusal(db, CHECK_VIOLATION,
                   "INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at)"
                   " VALUES (" BOOKING_P2 ", 1, 1, 7, 'paid', now())");
    expect_refusal(db, FOREIGN_KEY_VIOLATION,
                   "INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at)"
                   " VALUES (" BOOKING_P1 ", 1, 2, 7, 'paid', now())");

    /* What the grid can do is accepted; a second open hold of a seat is not. */
    pgt_exec(db, "BEGIN;"
                 " INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at)"
                 "  VALUES (" BOOKING_P1 ", 1, 1, 7, 'paid', now()),"
                 "         (" BOOKING_P1 " + 1, 1, 1, 8, 'created', now());"
                 " UPDATE seats SET status = 'SOLD', booking_id = " BOOKING_P1 ", version = 3"
                 "  WHERE event_id = 1 AND seat_no = 0;"
                 " INSERT INTO booking_seats (booking_id, event_id, seat_no, held_at)"
                 "  VALUES (" BOOKING_P1 ", 1, 0, now());"
                 " INSERT INTO partition_offsets (partition_id, epoch, last_seq) VALUES (1, 1, 9);"
                 "COMMIT");
    expect_refusal(db, UNIQUE_VIOLATION,
                   "INSERT INTO booking_seats (booking_id, event_id, seat_no,"
                   " held_at) VALUES (" BOOKING_P1 " + 1, 1, 0, now())");
    expect_refusal(db, CHECK_VIOLATION,
                   "INSERT INTO payments (id, booking_id, provider,"
                   " amount_minor, currency, status) VALUES ('p1', " BOOKING_P1
                   ", 'sandbox', 24900, 'EUR', 'refused')");
    PQfinish(db);
}

/* booking_seats names real seats and bookings (009: checked per statement, not per row). */
Test(persister_schema, booking_seats_names_only_seats_and_bookings_that_exist)
{
    pgt_server *s;
    PGconn *db = seeded(&s, &quick);
    pgt_exec(db, "INSERT INTO bookings (id, partition_id, event_id, user_id, status, created_at)"
                 " VALUES (" BOOKING_P1 ", 1, 1, 7, 'created', now())");
    pgt_exec(db, "INSERT INTO booking_seats (booking_id, event_id, seat_no, held_at, released_at)"
                 " SELECT " BOOKING_P1 ", 1, g, now(), now() FROM generate_series(0, 99) g");
    /* One bad row refuses its whole statement, whether COPY or INSERT writes it. */
    expect_refusal(db, FOREIGN_KEY_VIOLATION,
                   "INSERT INTO booking_seats (booking_id, event_id, seat_no, held_at)"
                   " VALUES (" BOOKING_P1 ", 1, 5, now()), (" BOOKING_P1 ", 1, 10000000, now())");
    expect_refusal(db, FOREIGN_KEY_VIOLATION,
                   "INSERT INTO booking_seats (booking_id, event_id, seat_no, held_at)"
                   " VALUES (" BOOKING_P1 ", 1, 5, now()), (" BOOKING_P1 " + 1, 1, 6, now())");
    expect_refusal(db, FOREIGN_KEY_VIOLATION,
                   "UPDATE booking_seats SET seat_no = 10000000 WHERE seat_no = 3");
    expect_refusal(db, FOREIGN_KEY_VIOLATION,
                   "UPDATE booking_seats SET booking_id = " BOOKING_P1 " + 1 WHERE seat_no = 3");
    expect_refusal(db, FOREIGN_KEY_VIOLATION,
                   "UPDATE bookings SET id = " BOOKING_P1 " + 1 WHERE id = " BOOKING_P1);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM booking_seats"), 100);
    /* Closing rows, as the drain does, is an update like any other. */
    pgt_exec(db, "UPDATE booking_seats SET released_at = now() WHERE seat_no < 10");
    /* Seats and bookings deleted take their rows with them. */
    pgt_exec(db, "DELETE FROM seats WHERE event_id = 1 AND seat_no < 40");
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM booking_seats"), 60);
    pgt_exec(db, "DELETE FROM bookings WHERE id = " BOOKING_P1);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM booking_seats"), 0);
    PQfinish(db);
}

Test(persister_schema, constraints_refuse_bad_accounts_events_and_partitions)
{
    pgt_server *s;
    PGconn *db = seeded(&s, &quick);
    const char *hash = "'$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA'";
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO users (email, password_hash) VALUES"
             " ('BUYER@Demo.Tixgrid', %s)",
             hash);
    expect_refusal(db, UNIQUE_VIOLATION, sql);
    snprintf(sql, sizeof(sql),
             "INSERT INTO users (email, password_hash, role) VALUES"
             " ('x@y.z', %s, 'root')",
             hash);
    expect_refusal(db, CHECK_VIOLATION, sql);
    expect_refusal(db, CHECK_VIOLATION,
                   "INSERT INTO users (email, password_hash) VALUES ('x@y.z', 'plaintext')");
    expect_refusal(db, CHECK_VIOLATION, "UPDATE events SET status = 'sold_out' WHERE id = 1");
    expect_refusal(db, CHECK_VIOLATION, "UPDATE sections SET price_minor = -5 WHERE event_id = 1");
    expect_refusal(db, UNIQUE_VIOLATION,
                   "INSERT INTO events (id, title, artist, venue, starts_at)"
                   " VALUES (1, 'Copy', 'Someone', 'Somewhere', '2031-06-01')");
    expect_refusal(db, EXCLUSION_VIOLATION,
                   "INSERT INTO grid_partitions (partition_id, event_id, first_seat, seat_count)"
                   " VALUES (77, 1, 99999, 10)");
    expect_refusal(db, CHECK_VIOLATION,
                   "INSERT INTO grid_partitions (partition_id, event_id, first_seat, seat_count)"
                   " VALUES (2097152, 1, 100000, 10)");
    PQfinish(db);
}

/* ---- Events ------------------------------------------------------------------ */

/* The query plan of sql, all lines joined (static buffer). */
static const char *plan_of(PGconn *db, const char *sql)
{
    static char plan[16384];
    char explain[1024];
    snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
    PGresult *res = PQexec(db, explain);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    size_t at = 0;
    plan[0] = '\0';
    for (int i = 0; i < PQntuples(res) && at < sizeof(plan); i++) {
        at += (size_t)snprintf(plan + at, sizeof(plan) - at, "%s\n", PQgetvalue(res, i, 0));
    }
    PQclear(res);
    return plan;
}

static const char *ids_of(PGconn *db, const char *where)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '')"
             " FROM %s",
             where);
    return pgt_query_text(db, sql);
}

Test(persister_schema, search_finds_events_by_a_word_of_their_artist_title_or_venue)
{
    pgt_server *s;
    PGconn *db = seeded(&s, &quick);
    cr_assert_str_eq(ids_of(db, "events WHERE search @@ websearch_to_tsquery('simple', 'Swaps')"),
                     "2,4");
    cr_assert_str_eq(ids_of(db, "events WHERE search @@ websearch_to_tsquery('simple',"
                                " 'lindqvist stockholm')"),
                     "5");
    cr_assert_str_eq(ids_of(db, "events WHERE search @@ websearch_to_tsquery('simple',"
                                " 'acoustic')"),
                     "3");
    cr_assert_str_eq(ids_of(db, "events_current WHERE search @@ websearch_to_tsquery('simple',"
                                " 'lindqvist')"),
                     "1,3");
    /* The GIN index is there on every partition. */
    pgt_exec(db, "SET enable_seqscan = off");
    const char *plan = plan_of(db, "SELECT id FROM events WHERE search @@"
                                   " websearch_to_tsquery('simple', 'swaps')");
    cr_assert(strstr(plan, "Bitmap") != NULL || strstr(plan, "search_idx") != NULL, "%s", plan);
    PQfinish(db);
}

Test(persister_schema, events_current_lists_only_what_shoppers_can_buy_now)
{
    pgt_server *s;
    PGconn *db = seeded(&s, &quick);
    /* 1 and 3 are on sale; 2 and 5 are past, 4 is a draft. */
    cr_assert_str_eq(ids_of(db, "events_current"), "1,3");
    pgt_exec(db, "INSERT INTO events (id, title, artist, venue, starts_at, status,"
                 " sale_starts_at) VALUES"
                 " (20, 'Begun', 'A', 'V', now() - interval '1 hour', 'on_sale', NULL),"
                 " (21, 'Not yet', 'A', 'V', now() + interval '30 days', 'on_sale',"
                 "  now() + interval '1 day'),"
                 " (22, 'Open', 'A', 'V', now() + interval '30 days', 'on_sale',"
                 "  now() - interval '1 day'),"
                 " (23, 'Cancelled', 'A', 'V', now() + interval '30 days', 'cancelled', NULL)");
    pgt_exec(db, "INSERT INTO events (id, title, artist, venue, starts_at, status, sale_ends_at)"
                 " VALUES (24, 'Closed early', 'A', 'V', now() + interval '30 days', 'on_sale',"
                 " now() - interval '1 minute')");
    cr_assert_str_eq(ids_of(db, "events_current"), "1,3,22");
    /* Past years' partitions are not even read. */
    const char *plan = plan_of(db, "SELECT id FROM events_current");
    cr_assert(strstr(plan, "events_y2024") == NULL && strstr(plan, "events_y2025") == NULL,
              "events_current reads a past year: %s", plan);
    PQfinish(db);
}

Test(persister_schema, events_live_in_yearly_partitions_and_can_be_rescheduled_across_them)
{
    pgt_server *s;
    PGconn *db = seeded(&s, &quick);
    cr_assert_str_eq(pgt_query_text(db, "SELECT tableoid::regclass FROM events WHERE id = 5"),
                     "events_y2024");
    pgt_exec(db, "INSERT INTO events (id, title, artist, venue, starts_at)"
                 " VALUES (30, 'Far away', 'A', 'V', '2099-07-01')");
    cr_assert_str_eq(pgt_query_text(db, "SELECT tableoid::regclass FROM events WHERE id = 30"),
                     "events_default");
    /* Moving event 3 to 2031 moves its row; its key and seats follow. */
    pgt_exec(db, "UPDATE events SET starts_at = '2031-03-01 19:30Z' WHERE id = 3");
    cr_assert_str_eq(pgt_query_text(db, "SELECT tableoid::regclass FROM events WHERE id = 3"),
                     "events_y2031");
    cr_assert_str_eq(pgt_query_text(db, "SELECT starts_at = '2031-03-01 19:30Z'"
                                        " FROM event_keys WHERE id = 3"),
                     "t");
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM seats WHERE event_id = 3"), 1130);
    cr_assert_str_eq(pgt_exec_fails(db, "UPDATE events SET id = 31 WHERE id = 3"), "23000");
    /* Deleting an event takes its layout with it. */
    pgt_exec(db, "DELETE FROM events WHERE id = 4");
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM seats WHERE event_id = 4"), 0);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM grid_partitions WHERE event_id = 4"), 0);
    PQfinish(db);
}

/* ---- Load-test users --------------------------------------------------------- */

Test(persister_schema, seed_users_makes_10000_users_quickly_with_the_documented_password,
     .timeout = 180)
{
    pgt_server *s;
    pgt_run_result r;
    cr_assert(sodium_init() >= 0);
    PGconn *db = migrated(&s, NULL); /* fsync on: the timing is a real one */
    persister_ok(&r, s, NULL, ARGS("seed-users", "10000"));
    cr_assert_lt(r.elapsed_ms, 15000, "seed-users 10000 took %lld ms", (long long)r.elapsed_ms);
    cr_log_info("seed-users 10000: %lld ms", (long long)r.elapsed_ms);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM users"
                                   " WHERE email LIKE 'user%@load.tixgrid'"),
                 10000);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(DISTINCT password_hash) FROM users"), 1);
    check_password(db, "user1@load.tixgrid", "load-test-1");
    check_password(db, "user10000@load.tixgrid", "load-test-1");

    persister_ok(&r, s, NULL, ARGS("seed-users", "10000"));
    cr_assert(strstr(r.err, "0 users created") != NULL, "%s", r.err);
    pgt_exec(db, "DELETE FROM users WHERE email = 'user5@load.tixgrid'");
    persister_ok(&r, s, NULL, ARGS("seed-users", "10050"));
    cr_assert(strstr(r.err, "51 users created") != NULL, "%s", r.err);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM users"), 10050);
    PQfinish(db);
}

/* ---- The command line --------------------------------------------------------- */

static void expect_usage_error(const char *const *args, const char *needle)
{
    pgt_run_result r;
    persister(&r, NULL, NULL, args);
    cr_assert_eq(pgt_exit_code(&r), 64, "%s: exit %d, %s", args[0], pgt_exit_code(&r), r.err);
    cr_assert_eq(pgt_count_lines(r.err), 1, "%s: not one line: %s", args[0], r.err);
    cr_assert(strstr(r.err, needle) != NULL, "'%s' not in: %s", needle, r.err);
    cr_assert(strstr(r.err, "--help") != NULL, "%s", r.err);
    cr_assert_str_eq(r.out, "");
}

Test(persister_schema, bad_flags_and_arguments_exit_64_with_one_line)
{
    expect_usage_error(ARGS("frobnicate"), "unknown command 'frobnicate'");
    expect_usage_error(ARGS("--bogus", "migrate"), "unknown option '--bogus'");
    expect_usage_error(ARGS("--db"), "--db needs a value");
    expect_usage_error(ARGS("--connect-timeout-s", "0", "migrate"), "--connect-timeout-s");
    expect_usage_error(ARGS("migrate"), "TIXGRID_DB");
    expect_usage_error(ARGS("migrate", "--db", "host"), "not a libpq connection string");
    expect_usage_error(ARGS("migrate", "--db", "host=/x", "--verbose"), "unexpected argument");
    expect_usage_error(ARGS("seed-users", "--db", "host=/x"), "seed-users N");
    expect_usage_error(ARGS("seed-users", "many", "--db", "host=/x"), "N must be");
    expect_usage_error(ARGS("seed-users", "0", "--db", "host=/x"), "N must be");
    expect_usage_error(ARGS("layout-json", "1", "--db", "host=/x"), "EVENT_ID PARTITION_ID");
    expect_usage_error(ARGS("seed-demo", "--force", "--db", "host=/x"), "unknown option");

    pgt_run_result r;
    persister(&r, NULL, NULL, ARGS("--help"));
    cr_assert_eq(pgt_exit_code(&r), 0);
    cr_assert(strstr(r.out, "migrate") && strstr(r.out, "seed-demo") &&
                  strstr(r.out, "seed-users N") && strstr(r.out, "layout-json"),
              "%s", r.out);
    persister(&r, NULL, NULL, ARGS("--version"));
    cr_assert_eq(pgt_exit_code(&r), 0);
    cr_assert(strncmp(r.out, "tixgrid-persister ", 18) == 0, "%s", r.out);
}

Test(persister_schema, an_unreachable_database_exits_69_with_one_line)
{
    pgt_run_result r;
    persister(&r, NULL, NULL,
              ARGS("migrate", "--db", "host=/nonexistent-tixgrid dbname=tixgrid user=x"));
    cr_assert_eq(pgt_exit_code(&r), 69, "exit %d: %s", pgt_exit_code(&r), r.err);
    cr_assert_eq(pgt_count_lines(r.err), 1, "%s", r.err);
    cr_assert(strstr(r.err, "cannot connect to PostgreSQL") != NULL, "%s", r.err);
    cr_assert(strstr(r.err, "TIXGRID_DB") != NULL, "%s", r.err);
}

Test(persister_schema, commands_exit_69_while_postgresql_is_down_and_work_once_it_is_back)
{
    pgt_server *s;
    pgt_run_result r;
    PGconn *db = migrated(&s, &quick);
    PQfinish(db);
    pgt_stop(s, false);
    persister(&r, s, NULL, ARGS("seed-demo"));
    cr_assert_eq(pgt_exit_code(&r), 69, "exit %d: %s", pgt_exit_code(&r), r.err);
    cr_assert_eq(pgt_count_lines(r.err), 1, "%s", r.err);
    pgt_resume(s);
    persister_ok(&r, s, NULL, ARGS("seed-demo"));
    db = pgt_connect(s);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM seats WHERE event_id = 1"), 100000);

    /* A crash (immediate stop) loses nothing committed. */
    PQfinish(db);
    pgt_stop(s, true);
    pgt_resume(s);
    db = pgt_connect(s);
    cr_assert_eq(pgt_query_i64(db, "SELECT count(*) FROM seats"), 106380);
    PQfinish(db);
}

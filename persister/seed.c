/*
 * seed.c — demo data, load-test users, and partition layouts from the
 * database.
 *
 * seed-demo writes the data of persister/README.md ("Demo data"): two
 * artists, four demo accounts with documented passwords, the 100,000-seat
 * demo concert (event 1, partition 1) and four smaller events around it.
 * It only ever adds what is missing — an event that exists is left alone
 * with its seats, whatever the grid has sold of them since — so running it
 * twice changes nothing.  Event times are relative to the day of the first
 * run (the demo concert is always in the future when first seeded).
 *
 * Seats are made in the database with generate_series, one statement per
 * section, numbered densely in layout order: sections best first, rows in
 * order, seats 1..n in each row.  That order is what a processing unit's
 * layout file means (pu/layout.c), so layout-json can give any partition
 * back as such a file.
 *
 * seed-users makes N load-test accounts with one COPY, all sharing one
 * argon2id hash computed once: hashing a million passwords one by one
 * (~70 ms each at libsodium's interactive limits) would take a day.  These
 * accounts are for load tests only; their password is documented.
 */
#include "persister.h"

#include "tixgrid/assert.h"
#include "tixgrid/limits.h"
#include "tixgrid/log.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The demo data ------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t price_minor; /* EUR cents */
    uint32_t rows;
    uint32_t seats_per_row;
} demo_section;

typedef struct {
    int64_t id;
    uint32_t partition_id;
    int64_t artist_id;
    const char *title;
    const char *artist;
    const char *venue;
    const char *status;
    int starts_in_days;  /* from today (UTC), at 19:30 UTC */
    bool sale_window;    /* false: no window yet (a draft) */
    int sale_opens_days; /* from today; the sale closes when the event starts */
    const demo_section *sections;
    uint32_t section_count;
} demo_event;

typedef struct {
    const char *email;
    const char *password;
    const char *name;
    const char *role;
} demo_user;

/* 3,000 + 12,000 + 28,000 + 40,000 + 17,000 = 100,000 seats in 2,610 rows. */
static const demo_section concert_sections[] = {
    {"Golden Circle", 24900, 60, 50}, /* seats 0..2,999 */
    {"Floor", 14900, 200, 60},        /* 3,000..14,999 */
    {"Lower Tier", 11900, 700, 40},   /* 15,000..42,999 */
    {"Upper Tier", 7900, 800, 50},    /* 43,000..82,999 */
    {"Balcony", 4900, 850, 20},       /* 83,000..99,999 */
};
static const demo_section club_sections[] = {
    {"Floor", 5900, 20, 30},
    {"Balcony", 4500, 10, 25},
};
static const demo_section hall_sections[] = {
    {"Parterre", 8900, 20, 24},
    {"Loge", 12900, 10, 20},
    {"Galerie", 5900, 15, 30},
};
static const demo_section arena_sections[] = {
    {"Floor", 9900, 40, 50},
    {"Tier", 6900, 50, 40},
};
static const demo_section debut_sections[] = {
    {"Standing", 2500, 10, 40},
};

#define COUNT(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

static const demo_event demo_events[] = {
    {PST_DEMO_EVENT_ID, PST_DEMO_PARTITION_ID, 1, "Aurora Lindqvist: Northern Lights Tour",
     "Aurora Lindqvist", "Olympiastadion Berlin", "on_sale", 60, true, -7, concert_sections,
     COUNT(concert_sections)},
    {2, 2, 2, "The Atomic Swaps: Compare and Exchange Live", "The Atomic Swaps", "Zenith Paris",
     "closed", -45, true, -120, club_sections, COUNT(club_sections)},
    {3, 3, 1, "Aurora Lindqvist: An Acoustic Evening", "Aurora Lindqvist", "Konzerthaus Wien",
     "on_sale", 20, true, -14, hall_sections, COUNT(hall_sections)},
    {4, 4, 2, "The Atomic Swaps: Winter Tour", "The Atomic Swaps", "Ziggo Dome Amsterdam", "draft",
     200, false, 0, arena_sections, COUNT(arena_sections)},
    {5, 5, 1, "Aurora Lindqvist: Debut Release Show", "Aurora Lindqvist", "Debaser Stockholm",
     "closed", -730, true, -760, debut_sections, COUNT(debut_sections)},
};

static const demo_user demo_users[] = {
    {"buyer@demo.tixgrid", "demo-buyer-1", "Demo Buyer", "buyer"},
    {"buyer2@demo.tixgrid", "demo-buyer-2", "Second Demo Buyer", "buyer"},
    {"organizer@demo.tixgrid", "demo-organizer-1", "Demo Organizer", "organizer"},
    {"admin@demo.tixgrid", "demo-admin-1", "Demo Admin", "admin"},
};

static const char artists_sql[] =
    "INSERT INTO artists (id, name, genre, biography, works) VALUES"
    " (1, 'Aurora Lindqvist', 'synth-pop',"
    "  'Swedish singer and producer whose records pair Nordic folk melodies with analogue "
    "synthesizers.',"
    "  '[{\"title\": \"Polar Night\", \"year\": 2021, \"kind\": \"album\"},"
    "    {\"title\": \"Northern Lights\", \"year\": 2025, \"kind\": \"album\"},"
    "    {\"title\": \"Glass Harbour\", \"year\": 2023, \"kind\": \"single\"}]'),"
    " (2, 'The Atomic Swaps', 'indie rock',"
    "  'Four engineers from Lyon who play loud guitars and never lose a race.',"
    "  '[{\"title\": \"Compare and Exchange\", \"year\": 2022, \"kind\": \"album\"},"
    "    {\"title\": \"Lock-Free\", \"year\": 2024, \"kind\": \"EP\"}]')"
    " ON CONFLICT (id) DO NOTHING";

/* Makes the event row unless its id exists; sets *made. */
static tg_err event_insert(PGconn *db, const demo_event *e, bool *made)
{
    char id[24], artist_id[24], starts[16], opens[16];
    snprintf(id, sizeof(id), "%" PRId64, e->id);
    snprintf(artist_id, sizeof(artist_id), "%" PRId64, e->artist_id);
    snprintf(starts, sizeof(starts), "%d", e->starts_in_days);
    snprintf(opens, sizeof(opens), "%d", e->sale_opens_days);
    const char *params[] = {
        id,       e->title, artist_id, e->artist, e->venue, starts, e->sale_window ? opens : NULL,
        e->status};
    PGresult *res;
    tg_err err = pst_db_query(
        db, "insert a demo event",
        "INSERT INTO events (id, title, artist_id, artist, venue, type, provider, starts_at,"
        " sale_starts_at, sale_ends_at, status, currency)"
        " SELECT $1, $2, $3, $4, $5, 'concert', 'tixgrid', t.starts,"
        "  t.today + make_interval(days => $7::integer),"
        "  CASE WHEN $7 IS NOT NULL THEN t.starts END, $8, 'EUR'"
        " FROM (SELECT d.today + make_interval(days => $6::integer, hours => 19, mins => 30)"
        "        AS starts, d.today"
        "       FROM (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        "              AS today) d) t"
        " WHERE NOT EXISTS (SELECT 1 FROM event_keys WHERE id = $1)",
        8, params, &res);
    if (err == TG_OK) {
        *made = strcmp(PQcmdTuples(res), "1") == 0;
        PQclear(res);
    }
    return err;
}

static tg_err section_insert(PGconn *db, const demo_event *e, uint32_t index, uint32_t first_seat)
{
    const demo_section *s = &e->sections[index];
    char id[24], idx[16], price[24], first[16], rows[16], per_row[16], partition[16];
    snprintf(id, sizeof(id), "%" PRId64, e->id);
    snprintf(idx, sizeof(idx), "%" PRIu32, index);
    snprintf(price, sizeof(price), "%" PRId64, s->price_minor);
    snprintf(first, sizeof(first), "%" PRIu32, first_seat);
    snprintf(rows, sizeof(rows), "%" PRIu32, s->rows);
    snprintf(per_row, sizeof(per_row), "%" PRIu32, s->seats_per_row);
    snprintf(partition, sizeof(partition), "%" PRIu32, e->partition_id);
    const char *sec_params[] = {id, idx, s->name, price};
    tg_err err = pst_db_query(db, "insert a demo section",
                              "INSERT INTO sections (event_id, section_idx, name, price_minor,"
                              " currency) VALUES ($1, $2, $3, $4, 'EUR')",
                              4, sec_params, NULL);
    const char *seat_params[] = {id, first, partition, idx, per_row, price, rows};
    if (err == TG_OK) {
        err = pst_db_query(db, "insert demo seats",
                           "INSERT INTO seats (event_id, seat_no, partition_id, section_idx,"
                           " row_name, number, price_minor, status, version)"
                           " SELECT $1, $2::integer + (r - 1) * $5::integer + (k - 1), $3, $4,"
                           "  r::text, k, $6, 'FREE', 0"
                           " FROM generate_series(1, $7::integer) AS r,"
                           "      generate_series(1, $5::integer) AS k",
                           7, seat_params, NULL);
    }
    return err;
}

static tg_err event_seed(PGconn *db, const demo_event *e, bool *made)
{
    tg_err err = event_insert(db, e, made);
    if (err != TG_OK || !*made) {
        return err;
    }
    uint32_t seat = 0;
    for (uint32_t i = 0; i < e->section_count && err == TG_OK; i++) {
        err = section_insert(db, e, i, seat);
        seat += e->sections[i].rows * e->sections[i].seats_per_row;
    }
    char partition[16], id[24], count[16];
    snprintf(partition, sizeof(partition), "%" PRIu32, e->partition_id);
    snprintf(id, sizeof(id), "%" PRId64, e->id);
    snprintf(count, sizeof(count), "%" PRIu32, seat);
    const char *params[] = {partition, id, count};
    if (err == TG_OK) {
        /* Placed by the manager later: no primary yet, epoch 1. */
        err = pst_db_query(db, "insert a demo partition",
                           "INSERT INTO grid_partitions (partition_id, event_id, first_seat,"
                           " seat_count, epoch) VALUES ($1, $2, 0, $3, 1)",
                           3, params, NULL);
    }
    if (err == TG_OK) {
        tg_log_info("seed-demo: event %" PRId64 " '%s': %u seats in partition %u", e->id, e->title,
                    seat, e->partition_id);
    }
    return err;
}

/* An argon2id hash (libsodium's interactive limits) of password into out. */
static tg_err password_hash(const char *password, char out[crypto_pwhash_STRBYTES])
{
    if (crypto_pwhash_str_alg(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE,
                              crypto_pwhash_ALG_ARGON2ID13) != 0) {
        tg_log_error("seed: argon2id hashing failed (out of memory)");
        return TG_ENOMEM;
    }
    return TG_OK;
}

static tg_err user_seed(PGconn *db, const demo_user *u, bool *made)
{
    const char *find[] = {u->email};
    int64_t exists = 0;
    tg_err err = pst_db_query_i64(db, "look up a demo user",
                                  "SELECT count(*) FROM users WHERE lower(email) = lower($1)", 1,
                                  find, 0, &exists);
    *made = false;
    if (err != TG_OK || exists != 0) {
        return err;
    }
    char hash[crypto_pwhash_STRBYTES];
    err = password_hash(u->password, hash);
    const char *params[] = {u->email, hash, u->name, u->role};
    if (err == TG_OK) {
        err = pst_db_query(db, "insert a demo user",
                           "INSERT INTO users (email, password_hash, name, role)"
                           " VALUES ($1, $2, $3, $4)",
                           4, params, NULL);
        *made = err == TG_OK;
    }
    return err;
}

static tg_err demo_write(PGconn *db, uint32_t *events_made, uint32_t *users_made)
{
    tg_err err = pst_db_exec(db, "insert demo artists", artists_sql);
    for (uint32_t i = 0; i < COUNT(demo_users) && err == TG_OK; i++) {
        bool made = false;
        err = user_seed(db, &demo_users[i], &made);
        *users_made += made;
    }
    for (uint32_t i = 0; i < COUNT(demo_events) && err == TG_OK; i++) {
        bool made = false;
        err = event_seed(db, &demo_events[i], &made);
        *events_made += made;
    }
    if (err == TG_OK) {
        /* Ids chosen here must not be handed out again by the defaults. */
        err = pst_db_exec(db, "advance id sequences",
                          "SELECT setval(pg_get_serial_sequence('artists', 'id'),"
                          "  (SELECT max(id) FROM artists));"
                          "SELECT setval('events_id_seq', (SELECT max(id) FROM event_keys))");
    }
    return err;
}

tg_err pst_seed_demo(PGconn *db)
{
    uint32_t events_made = 0, users_made = 0;
    tg_err err = pst_db_begin(db);
    if (err == TG_OK) {
        /* Two seeders at once take turns (the key is "seed" in ASCII). */
        err = pst_db_exec(db, "take the seed lock", "SELECT pg_advisory_xact_lock(1936024932)");
    }
    if (err == TG_OK) {
        err = demo_write(db, &events_made, &users_made);
    }
    if (err == TG_OK) {
        err = pst_db_commit(db);
    }
    if (err != TG_OK) {
        pst_db_rollback(db);
        return err;
    }
    if (events_made > 0) {
        /* Fresh tables have no statistics: without them the planner sorts
         * all 100,000 seats to read a layout back (layout-json, replay). */
        err = pst_db_exec(db, "analyze the new seats", "ANALYZE seats, sections");
        if (err != TG_OK) {
            return err;
        }
    }
    tg_log_info("seed-demo: %u events and %u users created (%u and %u were there already)",
                events_made, users_made, COUNT(demo_events) - events_made,
                COUNT(demo_users) - users_made);
    return TG_OK;
}

/* ---- Load-test users ------------------------------------------------------ */

/* Bytes of COPY data sent at once. */
#define COPY_CHUNK_BYTES (1u << 20)

static tg_err users_copy(PGconn *db, uint64_t first, uint64_t last, const char *hash)
{
    tg_err err = pst_db_copy_begin(db, "copy load users",
                                   "COPY load_users (email, password_hash, name, role)"
                                   " FROM STDIN");
    char *buf = err == TG_OK ? malloc(COPY_CHUNK_BYTES) : NULL;
    if (err == TG_OK && buf == NULL) {
        err = TG_ENOMEM;
    }
    size_t used = 0;
    for (uint64_t i = first; i <= last && err == TG_OK; i++) {
        char line[512]; /* a hash is < 128 bytes: the line always fits */
        int n = snprintf(line, sizeof(line),
                         "user%" PRIu64 "@load.tixgrid\t%s\tLoad User %" PRIu64 "\tbuyer\n", i,
                         hash, i);
        TG_ASSERT(n > 0 && (size_t)n < sizeof(line));
        if (used + (size_t)n > COPY_CHUNK_BYTES) {
            err = pst_db_copy_put(db, buf, used);
            used = 0;
        }
        memcpy(buf + used, line, (size_t)n);
        used += (size_t)n;
    }
    if (err == TG_OK && used > 0) {
        err = pst_db_copy_put(db, buf, used);
    }
    free(buf);
    if (err == TG_OK) {
        return pst_db_copy_end(db, NULL);
    }
    if (!pst_db_connection_lost(db)) {
        pst_db_copy_end(db, "tixgrid-persister gave up");
    }
    return err;
}

/* COPY into a temporary table, then one INSERT that skips the addresses
 * that exist: robust whatever users 1..n are already there, and still one
 * pass over the data. */
static tg_err users_add(PGconn *db, uint64_t n, uint64_t *created)
{
    char last[32];
    snprintf(last, sizeof(last), "user%" PRIu64 "@load.tixgrid", n);
    const char *params[] = {last};
    int64_t done = 0;
    tg_err err =
        pst_db_query_i64(db, "look up the last load user",
                         "SELECT count(*) FROM users WHERE lower(email) = $1", 1, params, 0, &done);
    if (err != TG_OK || done != 0) {
        return err; /* made by an earlier run, which made 1..n in one transaction */
    }
    char hash[crypto_pwhash_STRBYTES];
    err = password_hash(PST_LOAD_USER_PASSWORD, hash);
    if (err == TG_OK) {
        err = pst_db_exec(db, "make a scratch table",
                          "CREATE TEMPORARY TABLE load_users"
                          " (email text, password_hash text, name text, role text)"
                          " ON COMMIT DROP");
    }
    if (err == TG_OK) {
        err = users_copy(db, 1, n, hash);
    }
    PGresult *res = NULL;
    if (err == TG_OK) {
        err = pst_db_query(db, "insert load users",
                           "INSERT INTO users (email, password_hash, name, role)"
                           " SELECT email, password_hash, name, role FROM load_users"
                           " ON CONFLICT ((lower(email))) DO NOTHING",
                           0, NULL, &res);
    }
    if (err == TG_OK) {
        pst_db_parse_i64(PQcmdTuples(res), &done);
        *created = (uint64_t)done;
    }
    PQclear(res);
    return err;
}

tg_err pst_seed_users(PGconn *db, uint64_t n, uint64_t *created)
{
    uint64_t made = 0;
    tg_err err = pst_db_begin(db);
    if (err == TG_OK) {
        err = pst_db_exec(db, "take the seed lock", "SELECT pg_advisory_xact_lock(1936024932)");
    }
    if (err == TG_OK) {
        err = users_add(db, n, &made);
    }
    if (err == TG_OK) {
        err = pst_db_commit(db);
    }
    if (err != TG_OK) {
        pst_db_rollback(db);
        return err;
    }
    if (created != NULL) {
        *created = made;
    }
    return TG_OK;
}

/* ---- Layouts ---------------------------------------------------------------- */

/* One row of the partition as the database has it, in seat order. */
typedef struct {
    int section_idx;
    const char *section, *currency, *row;
    int64_t section_price, count, first_no, last_no, min_number, max_number;
    int64_t min_price, max_price, min_offset, max_offset;
} layout_row;

static const char layout_rows_sql[] =
    "SELECT s.section_idx, sec.name, sec.currency, sec.price_minor, s.row_name, count(*),"
    " min(s.seat_no), max(s.seat_no), min(s.number), max(s.number), min(s.price_minor),"
    " max(s.price_minor), min(s.number - s.seat_no), max(s.number - s.seat_no)"
    " FROM seats s JOIN sections sec USING (event_id, section_idx)"
    " WHERE s.event_id = $1 AND s.seat_no >= $2::integer"
    "   AND s.seat_no < $2::integer + $3::integer"
    " GROUP BY s.section_idx, sec.name, sec.currency, sec.price_minor, s.row_name"
    " ORDER BY min(s.seat_no)";

static void layout_row_read(const PGresult *res, int r, layout_row *row)
{
    int64_t v[14] = {0};
    for (int c = 0; c < 14; c++) {
        pst_db_parse_i64(PQgetvalue(res, r, c), &v[c]);
    }
    *row = (layout_row){.section_idx = (int)v[0],
                        .section = PQgetvalue(res, r, 1),
                        .currency = PQgetvalue(res, r, 2),
                        .section_price = v[3],
                        .row = PQgetvalue(res, r, 4),
                        .count = v[5],
                        .first_no = v[6],
                        .last_no = v[7],
                        .min_number = v[8],
                        .max_number = v[9],
                        .min_price = v[10],
                        .max_price = v[11],
                        .min_offset = v[12],
                        .max_offset = v[13]};
}

/* Why row cannot be a layout row starting at seat next, or NULL. */
static const char *layout_row_problem(const layout_row *row, int64_t next)
{
    if (row->first_no != next) {
        return "seat numbers (seat_no) are not dense";
    }
    if (row->last_no - row->first_no + 1 != row->count || row->count > TG_ROW_SEATS_MAX) {
        return "a row's seats are not contiguous, or it has more than 2,048";
    }
    if (row->min_number != 1 || row->max_number != row->count ||
        row->min_offset != row->max_offset) {
        return "a row's seats are not numbered 1..n in seat order (a row split across "
               "partitions?)";
    }
    if (row->min_price != row->section_price || row->max_price != row->section_price) {
        return "seat prices differ from their section's price (a layout has one per section)";
    }
    return NULL;
}

typedef struct {
    json_t *sections;    /* the layout's sections array */
    json_t *rows;        /* the current section's rows array */
    int section_idx;     /* the current section, or -1 */
    uint64_t seen[1024]; /* section indexes already closed (bit set) */
    uint32_t row_count;
} layout_builder;

static tg_err layout_add_row(layout_builder *b, const layout_row *row)
{
    if (row->section_idx != b->section_idx) {
        uint32_t idx = (uint32_t)row->section_idx;
        if (idx >= 65536u || (b->seen[idx / 64] >> (idx % 64) & 1u) != 0) {
            return TG_EINVAL; /* a section split in two runs of seats */
        }
        b->seen[idx / 64] |= UINT64_C(1) << (idx % 64);
        if (json_array_size(b->sections) == TG_SECTIONS_MAX) {
            return TG_EINVAL;
        }
        b->rows = json_array();
        json_array_append_new(b->sections, json_pack("{s:s, s:I, s:s, s:o}", "name", row->section,
                                                     "price", (json_int_t)row->section_price,
                                                     "currency", row->currency, "rows", b->rows));
        b->section_idx = row->section_idx;
    }
    if (++b->row_count > TG_ROWS_MAX) {
        return TG_EINVAL;
    }
    json_array_append_new(
        b->rows, json_pack("{s:s, s:I}", "name", row->row, "seats", (json_int_t)row->count));
    return TG_OK;
}

static tg_err layout_build(const PGresult *res, int64_t first, int64_t count, json_t *sections)
{
    /* 8 KiB of bits: off the stack; one per thread (the gateway publishes
     * events from several pool threads through tg_replay_partition). */
    static _Thread_local layout_builder b;
    memset(&b, 0, sizeof(b));
    b.sections = sections;
    b.section_idx = -1;
    int64_t next = first;
    for (int r = 0; r < PQntuples(res); r++) {
        layout_row row;
        layout_row_read(res, r, &row);
        const char *problem = layout_row_problem(&row, next);
        if (problem == NULL && layout_add_row(&b, &row) != TG_OK) {
            problem = "a section's seats are not contiguous, or over 64 sections or 8,192 rows";
        }
        if (problem != NULL) {
            tg_log_error("layout-json: section '%s' row '%s' (seat_no %" PRId64 "): %s",
                         row.section, row.row, row.first_no, problem);
            return TG_ECORRUPT;
        }
        next = row.last_no + 1;
    }
    if (next != first + count) {
        tg_log_error("layout-json: the partition covers %" PRId64 " seats from seat_no %" PRId64
                     " but the seats table has %" PRId64,
                     count, first, next - first);
        return TG_ECORRUPT;
    }
    return TG_OK;
}

static tg_err partition_range(PGconn *db, const char *event, const char *partition, int64_t *first,
                              int64_t *count)
{
    const char *params[] = {partition, event};
    PGresult *res;
    tg_err err = pst_db_query(db, "read the partition",
                              "SELECT first_seat, seat_count FROM grid_partitions"
                              " WHERE partition_id = $1 AND event_id = $2",
                              2, params, &res);
    if (err != TG_OK) {
        return err;
    }
    if (PQntuples(res) != 1) {
        tg_log_error("layout-json: event %s has no partition %s (table grid_partitions)", event,
                     partition);
        PQclear(res);
        return TG_ENOT_FOUND;
    }
    pst_db_parse_i64(PQgetvalue(res, 0, 0), first);
    pst_db_parse_i64(PQgetvalue(res, 0, 1), count);
    PQclear(res);
    return TG_OK;
}

tg_err pst_layout_json(PGconn *db, int64_t event_id, uint32_t partition_id, FILE *out)
{
    char event[24], partition[16], first_text[16], count_text[16];
    snprintf(event, sizeof(event), "%" PRId64, event_id);
    snprintf(partition, sizeof(partition), "%" PRIu32, partition_id);
    int64_t first = 0, count = 0;
    tg_err err = partition_range(db, event, partition, &first, &count);
    if (err != TG_OK) {
        return err;
    }
    snprintf(first_text, sizeof(first_text), "%" PRId64, first);
    snprintf(count_text, sizeof(count_text), "%" PRId64, count);
    const char *params[] = {event, first_text, count_text};
    PGresult *res;
    err = pst_db_query(db, "read the partition's rows", layout_rows_sql, 3, params, &res);
    if (err != TG_OK) {
        return err;
    }
    json_t *sections = json_array();
    err = layout_build(res, first, count, sections);
    PQclear(res);
    json_t *root = json_pack("{s:I, s:I, s:o}", "partition_id", (json_int_t)partition_id,
                             "event_id", (json_int_t)event_id, "sections", sections);
    if (err == TG_OK && (root == NULL || json_dumpf(root, out, JSON_COMPACT) != 0 ||
                         fputc('\n', out) == EOF || fflush(out) != 0)) {
        tg_log_error("layout-json: cannot write the layout");
        err = TG_ESYSTEM;
    }
    json_decref(root);
    return err;
}

/* ---- The commands ------------------------------------------------------------ */

int pst_cmd_seed_demo(pst_context *ctx, int argc, char **argv)
{
    int code = pst_args_positional(argc, argv, 0, 0);
    if (code == 0) {
        code = pst_context_connect(ctx);
    }
    return code != 0 ? code : pst_exit_code(ctx->db, pst_seed_demo(ctx->db));
}

int pst_cmd_seed_users(pst_context *ctx, int argc, char **argv)
{
    int code = pst_args_positional(argc, argv, 1, 1);
    uint64_t n = 0, created = 0;
    if (code != 0) {
        return code;
    }
    if (tg_parse_u64(argv[1], 1, PST_SEED_USERS_MAX, &n) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM, "seed-users: N must be a whole number from 1 to %u",
                                  PST_SEED_USERS_MAX);
    }
    if ((code = pst_context_connect(ctx)) != 0) {
        return code;
    }
    tg_err err = pst_seed_users(ctx->db, n, &created);
    if (err == TG_OK) {
        tg_log_info("seed-users: %" PRIu64 " users created; user1..user%" PRIu64
                    "@load.tixgrid exist",
                    created, n);
    }
    return pst_exit_code(ctx->db, err);
}

int pst_cmd_layout_json(pst_context *ctx, int argc, char **argv)
{
    int code = pst_args_positional(argc, argv, 2, 2);
    uint64_t event = 0, partition = 0;
    if (code != 0) {
        return code;
    }
    if (tg_parse_u64(argv[1], 1, TG_WIRE_ID_MAX, &event) != TG_OK ||
        tg_parse_u64(argv[2], 0, TG_PARTITION_ID_MAX, &partition) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM, "layout-json: EVENT_ID must be 1..2^53-1 and "
                                               "PARTITION_ID 0..2097151");
    }
    if ((code = pst_context_connect(ctx)) != 0) {
        return code;
    }
    return pst_exit_code(ctx->db,
                         pst_layout_json(ctx->db, (int64_t)event, (uint32_t)partition, stdout));
}

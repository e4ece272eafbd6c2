/*
 * replay.c — `tixgrid-persister replay`: a partition from PostgreSQL into a
 * processing unit (cold start of the grid, a partition that lost every
 * replica, an event being published).
 *
 * Two steps, never interleaved.  First everything is read from PostgreSQL
 * in ONE repeatable-read, read-only transaction, so that the partition row,
 * the layout, the seats, the bookings and the persisted offset are one
 * snapshot even while the drain keeps writing: the grid_partitions row and
 * partition_offsets (epoch, last_seq); the layout (pst_layout_json, parsed
 * back: the code that serves layout-json, not a second copy of it); in one
 * SELECT every seat whose word is not 0 (not FREE, or FREE at a version
 * above 0: a seat's version never goes back, since readers and caches tell
 * a newer word by it); and the created, pending_payment and paid
 * bookings with their deadlines.  Then the unit is sent partition_create
 * (the layout, capacities default) and partition_restore BEGIN, DATA
 * (TG_WIRE_CHANGES_MAX seats and TG_WIRE_RESTORE_BOOKINGS_MAX bookings a
 * message), END, one request at a time (schemas/wire.md).  100,000 seats
 * are 25 messages.
 *
 * Booking ids are never handed out twice: the unit continues booking seqs
 * after the highest seq it was given, so when the partition's newest booking
 * has ended (expired, cancelled, failed) it is sent too, first, although it
 * holds no seat; otherwise a new booking would take the id of a row
 * PostgreSQL already has.  Live bookings keep their deadlines: a hold that
 * expired while the grid was down is expired by the unit's sweeper at once.
 *
 * The map epoch is --epoch, or the larger of grid_partitions.epoch and
 * partition_offsets.epoch (persister/README.md, "Replay"); an --epoch
 * below partition_offsets.epoch is refused, since the drain would fence
 * every change made under it.  The log continues after
 * partition_offsets.last_seq (0 when nothing was drained).
 *
 * Failures: one line on stderr each.  A unit that already has the
 * partition: exit 1, "partition already exists on that unit", nothing
 * changed there.  Other refusals name the unit's tg_err (tg_errname); a
 * unit that does not answer is exit 69 like PostgreSQL being down.  A
 * restore the unit refused leaves the partition there unserved (marked
 * restoring); running replay again starts it over (partition_create reuses
 * a partition still being restored, BEGIN wipes it).
 */
#include "persister.h"

#include "tixgrid/client.h"
#include "tixgrid/clock.h"
#include "tixgrid/replay.h"
#include "tixgrid/limits.h"
#include "tixgrid/log.h"
#include "tixgrid/seat.h"
#include "tixgrid/wire.h"

#include <inttypes.h>
#include <jansson.h>
#include <nng/nng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long the unit may take over one request, connecting included (END
 * checks every seat: milliseconds even for 2^20 of them); --timeout-ms. */
#define PST_REPLAY_CALL_TIMEOUT_MS 10000u

typedef struct {
    uint32_t partition_id;
    const char *pu_url;
    bool epoch_given;
    uint64_t epoch;
    uint32_t hold_ttl_ms;       /* 0: the unit's default */
    uint32_t payment_window_ms; /* 0: the unit's default */
    uint32_t timeout_ms;        /* per request to the unit; 0: PST_REPLAY_CALL_TIMEOUT_MS */
} pst_replay_args;

/* Everything read from PostgreSQL, and the partition_create request. */
typedef struct {
    uint32_t partition_id;
    int64_t event_id, first_seat, seat_count;
    uint64_t map_epoch, offset_epoch, log_base, epoch;
    tg_msg create;
    tg_wire_row *rows;               /* TG_ROWS_MAX */
    tg_wire_change *seats;           /* every seat whose word is not 0 */
    uint32_t seat_n, held_n;         /* seats sent; of them not FREE */
    tg_wire_booking_state *bookings; /* newest ended one (if sent) first, then by id */
    uint32_t booking_n;
    uint32_t live_n;             /* bookings that are created, pending_payment or paid */
    int64_t layout_ms, seats_ms; /* time the two large queries took */
} pst_replay_data;

/* ---- Arguments -------------------------------------------------------------- */

static int replay_usage(void)
{
    return tg_cli_usage_error(PST_PROGRAM,
                              "usage: %s replay PARTITION --pu URL [--epoch N] [--hold-ttl-ms N] "
                              "[--payment-window-ms N] [--timeout-ms N]",
                              PST_PROGRAM);
}

/* "--name V" or "--name=V": 1 and *value; 0 another word; -1 no value. */
static int replay_flag(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) != 0 || (argv[*i][len] != '\0' && argv[*i][len] != '=')) {
        return 0;
    }
    if (argv[*i][len] == '=') {
        *value = argv[*i] + len + 1;
        return 1;
    }
    if (*i + 1 >= argc) {
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

static int replay_check(const char *partition, const char *epoch, pst_replay_args *a)
{
    uint64_t v = 0;
    if (partition == NULL) {
        return replay_usage();
    }
    if (a->pu_url == NULL) {
        return tg_cli_usage_error(PST_PROGRAM, "replay: --pu URL is required (the unit's REP "
                                               "address, e.g. ipc:///tmp/pu1.rep)");
    }
    if (tg_parse_u64(partition, 0, TG_PARTITION_ID_MAX, &v) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM, "replay: PARTITION must be a whole number from 0 "
                                               "to 2097151");
    }
    a->partition_id = (uint32_t)v;
    nng_url *url = NULL;
    if (strlen(a->pu_url) >= 256 || nng_url_parse(&url, a->pu_url) != 0) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "replay: --pu '%s' is not an nng address (e.g. "
                                  "ipc:///tmp/pu1.rep or tcp://10.0.0.5:7101)",
                                  a->pu_url);
    }
    nng_url_free(url);
    if (epoch != NULL && tg_parse_u64(epoch, 0, TG_WIRE_ID_MAX, &a->epoch) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "replay: --epoch must be a whole number from 0 to 2^53-1");
    }
    a->epoch_given = epoch != NULL;
    return 0;
}

/* --hold-ttl-ms and --payment-window-ms (1 s .. 1 day), --timeout-ms
 * (100 ms .. 10 min); 1 set, 0 not this flag, -1 a usage error (printed). */
static int replay_duration(int argc, char **argv, int *i, pst_replay_args *a)
{
    const struct {
        const char *name;
        uint64_t min, max;
        uint32_t *field;
    } flags[] = {{"--hold-ttl-ms", 1000, 86400000, &a->hold_ttl_ms},
                 {"--payment-window-ms", 1000, 86400000, &a->payment_window_ms},
                 {"--timeout-ms", 100, 600000, &a->timeout_ms}};
    for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
        const char *value = NULL;
        int got = replay_flag(argc, argv, i, flags[k].name, &value);
        uint64_t v;
        if (got < 0 || (got > 0 && tg_parse_u64(value, flags[k].min, flags[k].max, &v) != TG_OK)) {
            tg_cli_usage_error(PST_PROGRAM,
                               "replay: %s needs a whole number of ms from %" PRIu64 " to %" PRIu64,
                               flags[k].name, flags[k].min, flags[k].max);
            return -1;
        }
        if (got > 0) {
            *flags[k].field = (uint32_t)v;
            return 1;
        }
    }
    return 0;
}

static int replay_parse(int argc, char **argv, pst_replay_args *a)
{
    const char *partition = NULL, *epoch = NULL;
    for (int i = 1; i < argc; i++) {
        const char *value = NULL;
        int pu = replay_flag(argc, argv, &i, "--pu", &value);
        int ep = pu == 0 ? replay_flag(argc, argv, &i, "--epoch", &value) : 0;
        int du = pu == 0 && ep == 0 ? replay_duration(argc, argv, &i, a) : 0;
        if (du < 0) {
            return TG_EXIT_USAGE;
        }
        if (pu < 0 || ep < 0) {
            return tg_cli_usage_error(PST_PROGRAM, "replay: %s needs a value", argv[i]);
        }
        if (pu > 0) {
            a->pu_url = value;
        } else if (ep > 0) {
            epoch = value;
        } else if (du > 0) {
            continue;
        } else if (strncmp(argv[i], "--", 2) == 0) {
            return tg_cli_usage_error(PST_PROGRAM, "replay: unknown option '%s'", argv[i]);
        } else if (partition != NULL) {
            return replay_usage();
        } else {
            partition = argv[i];
        }
    }
    return replay_check(partition, epoch, a);
}

/* ---- Reading PostgreSQL ------------------------------------------------------ */

static tg_err read_partition(PGconn *db, pst_replay_data *d)
{
    char id[16];
    snprintf(id, sizeof(id), "%" PRIu32, d->partition_id);
    const char *params[] = {id};
    PGresult *res;
    tg_err err = pst_db_query(db, "read the partition",
                              "SELECT g.event_id, g.first_seat, g.seat_count, g.epoch,"
                              " coalesce(o.epoch, 0), coalesce(o.last_seq, 0)"
                              " FROM grid_partitions g LEFT JOIN partition_offsets o"
                              " USING (partition_id) WHERE g.partition_id = $1",
                              1, params, &res);
    if (err != TG_OK) {
        return err;
    }
    if (PQntuples(res) != 1) {
        tg_log_error("replay: partition %" PRIu32 " is not in grid_partitions", d->partition_id);
        PQclear(res);
        return TG_ENOT_FOUND;
    }
    int64_t v[6] = {0};
    for (int c = 0; c < 6; c++) {
        pst_db_parse_i64(PQgetvalue(res, 0, c), &v[c]);
    }
    PQclear(res);
    d->event_id = v[0];
    d->first_seat = v[1];
    d->seat_count = v[2];
    d->map_epoch = (uint64_t)v[3];
    d->offset_epoch = (uint64_t)v[4];
    d->log_base = (uint64_t)v[5];
    return TG_OK;
}

/* A JSON string into a fixed field; false when it is not one or too long. */
static bool json_name(const json_t *s, char *out, size_t size)
{
    const char *text = json_string_value(s);
    if (text == NULL || text[0] == '\0' || strlen(text) >= size) {
        return false;
    }
    memcpy(out, text, strlen(text) + 1);
    return true;
}

static bool layout_section(const json_t *js, pst_replay_data *d)
{
    __typeof__(d->create.partition_create) *q = &d->create.partition_create;
    tg_wire_section *sec = &q->sections[q->section_count++];
    const json_t *rows = json_object_get(js, "rows");
    json_int_t price = json_integer_value(json_object_get(js, "price"));
    if (!json_name(json_object_get(js, "name"), sec->name, sizeof(sec->name)) ||
        !json_name(json_object_get(js, "currency"), sec->currency, sizeof(sec->currency)) ||
        price < 0 || !json_is_array(rows) || json_array_size(rows) == 0) {
        return false;
    }
    sec->price_minor = price;
    sec->row_count = (uint32_t)json_array_size(rows);
    for (size_t i = 0; i < json_array_size(rows); i++) {
        const json_t *jr = json_array_get(rows, i);
        json_int_t seats = json_integer_value(json_object_get(jr, "seats"));
        if (q->row_count == TG_ROWS_MAX || seats < 1 || seats > TG_ROW_SEATS_MAX ||
            !json_name(json_object_get(jr, "name"), d->rows[q->row_count].name, TG_NAME_BYTES)) {
            return false;
        }
        d->rows[q->row_count++].seat_count = (uint32_t)seats;
    }
    return true;
}

/* The partition_create request from pst_layout_json's text. */
static tg_err layout_parse(const char *text, size_t len, pst_replay_data *d)
{
    json_t *root = json_loadb(text, len, 0, NULL);
    const json_t *sections = json_object_get(root, "sections");
    bool ok = json_is_array(sections) && json_array_size(sections) >= 1 &&
              json_array_size(sections) <= TG_SECTIONS_MAX;
    d->create = (tg_msg){.type = TG_WIRE_PARTITION_CREATE};
    __typeof__(d->create.partition_create) *q = &d->create.partition_create;
    q->partition_id = d->partition_id;
    q->event_id = (uint64_t)d->event_id;
    q->rows = d->rows;
    for (size_t i = 0; ok && i < json_array_size(sections); i++) {
        ok = layout_section(json_array_get(sections, i), d);
    }
    json_decref(root);
    if (!ok) {
        tg_log_error("replay: partition %" PRIu32 ": its layout cannot be sent to a unit",
                     d->partition_id);
        return TG_ECORRUPT;
    }
    return TG_OK;
}

static tg_err read_layout(PGconn *db, pst_replay_data *d)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        tg_log_error("replay: out of memory");
        return TG_ENOMEM;
    }
    tg_err err = pst_layout_json(db, d->event_id, d->partition_id, f);
    if (fclose(f) != 0 && err == TG_OK) {
        err = TG_ENOMEM;
    }
    if (err == TG_OK) {
        err = layout_parse(text, len, d);
    }
    free(text);
    return err;
}

/* Seats whose word is not 0 (not FREE, or FREE at a version above 0) and,
 * to catch corruption, any of the range that names another partition; in
 * no particular order (the unit takes them in any, and sorting 100,000 rows
 * costs more than the scan). */
static const char seats_sql[] =
    "SELECT seat_no - $2::integer, status, coalesce(booking_id & 4294967295, 0), version,"
    " partition_id = $4"
    " FROM seats WHERE event_id = $1 AND seat_no >= $2::integer"
    "  AND seat_no < $2::integer + $3::integer"
    "  AND (status <> 'FREE' OR version <> 0 OR partition_id <> $4)";

static tg_err seat_row(const PGresult *res, int r, tg_wire_change *out)
{
    int64_t id = 0, seq = 0, version = 0;
    tg_seat_state state;
    if (pst_db_parse_i64(PQgetvalue(res, r, 0), &id) != TG_OK ||
        !tg_seat_state_parse(PQgetvalue(res, r, 1), &state) ||
        pst_db_parse_i64(PQgetvalue(res, r, 2), &seq) != TG_OK ||
        pst_db_parse_i64(PQgetvalue(res, r, 3), &version) != TG_OK ||
        strcmp(PQgetvalue(res, r, 4), "t") != 0) {
        tg_log_error("replay: seat %s (%s): not a seat of this partition or not a seat word",
                     PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
        return TG_ECORRUPT;
    }
    *out = (tg_wire_change){.seat_id = (uint32_t)id,
                            .word = tg_seat_word_make(state, (uint32_t)version, (uint32_t)seq)};
    return TG_OK;
}

static tg_err read_seats(PGconn *db, pst_replay_data *d)
{
    char event[24], first[16], count[16], id[16];
    snprintf(event, sizeof(event), "%" PRId64, d->event_id);
    snprintf(first, sizeof(first), "%" PRId64, d->first_seat);
    snprintf(count, sizeof(count), "%" PRId64, d->seat_count);
    snprintf(id, sizeof(id), "%" PRIu32, d->partition_id);
    const char *params[] = {event, first, count, id};
    PGresult *res;
    tg_err err = pst_db_query(db, "read the seats", seats_sql, 4, params, &res);
    if (err != TG_OK) {
        return err;
    }
    int n = PQntuples(res);
    d->seats = malloc((size_t)(n > 0 ? n : 1) * sizeof(*d->seats));
    err = d->seats != NULL ? TG_OK : TG_ENOMEM;
    for (int r = 0; r < n && err == TG_OK; r++) {
        err = seat_row(res, r, &d->seats[r]);
    }
    d->seat_n = err == TG_OK ? (uint32_t)n : 0;
    for (uint32_t i = 0; i < d->seat_n; i++) {
        d->held_n += tg_seat_word_state(d->seats[i].word) != TG_SEAT_FREE;
    }
    PQclear(res);
    return err;
}

/* The partition's live and paid bookings and, first, its newest booking
 * when that one has ended (see the top of this file).  Ids of partition p
 * are p << 32 .. (p + 1) << 32 - 1: the primary key's range. */
static const char bookings_sql[] =
    "SELECT id, user_id, status, version,"
    " floor(extract(epoch FROM created_at) * 1000)::bigint,"
    " coalesce(floor(extract(epoch FROM deadline) * 1000)::bigint, 0)"
    " FROM bookings WHERE id BETWEEN $1::bigint << 32 AND (($1::bigint + 1) << 32) - 1"
    "  AND (status IN ('created', 'pending_payment', 'paid')"
    "       OR id = (SELECT max(id) FROM bookings"
    "                WHERE id BETWEEN $1::bigint << 32 AND (($1::bigint + 1) << 32) - 1))"
    " ORDER BY status IN ('created', 'pending_payment', 'paid'), id";

static tg_err booking_row(const PGresult *res, int r, pst_replay_data *d)
{
    int64_t v[6] = {0};
    bool ok = true;
    for (int c = 0; c < 6; c++) {
        ok = ok && (c == 2 || pst_db_parse_i64(PQgetvalue(res, r, c), &v[c]) == TG_OK);
    }
    uint32_t status = TG_BOOKING_CREATED;
    while (status < TG_BOOKING_STATUS_COUNT &&
           strcmp(tg_booking_status_name((tg_booking_status)status), PQgetvalue(res, r, 2)) != 0) {
        status++;
    }
    if (!ok || status == TG_BOOKING_STATUS_COUNT || v[1] < 1 || v[1] > (int64_t)TG_WIRE_ID_MAX ||
        v[3] < 0 || v[3] > (int64_t)UINT32_MAX) {
        tg_log_error("replay: booking %s (user %s, %s) cannot be held by a unit",
                     PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
        return TG_ECORRUPT;
    }
    d->live_n += status <= TG_BOOKING_PAID;
    d->bookings[d->booking_n++] = (tg_wire_booking_state){.booking_id = (tg_booking_id)v[0],
                                                          .user_id = (uint64_t)v[1],
                                                          .status = status,
                                                          .version = (uint32_t)v[3],
                                                          .created_ms = v[4],
                                                          .deadline_ms = v[5]};
    return TG_OK;
}

static tg_err read_bookings(PGconn *db, pst_replay_data *d)
{
    char id[16];
    snprintf(id, sizeof(id), "%" PRIu32, d->partition_id);
    const char *params[] = {id};
    PGresult *res;
    tg_err err = pst_db_query(db, "read the bookings", bookings_sql, 1, params, &res);
    if (err != TG_OK) {
        return err;
    }
    int n = PQntuples(res);
    d->bookings = malloc((size_t)(n > 0 ? n : 1) * sizeof(*d->bookings));
    err = d->bookings != NULL ? TG_OK : TG_ENOMEM;
    for (int r = 0; r < n && err == TG_OK; r++) {
        err = booking_row(res, r, d);
    }
    PQclear(res);
    return err;
}

/* Reads everything in one repeatable-read snapshot. */
static tg_err replay_read(PGconn *db, pst_replay_data *d)
{
    tg_err err = pst_db_exec(db, "begin the replay snapshot",
                             "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;"
                             /* the layout's GROUP BY sorts 100,000 seats: in memory,
                              * also before autovacuum has analyzed fresh seats */
                             "SET LOCAL work_mem = '64MB'");
    if (err == TG_OK) {
        err = read_partition(db, d);
    }
    int64_t t0 = tg_mono_ns();
    if (err == TG_OK) {
        err = read_layout(db, d);
    }
    int64_t t1 = tg_mono_ns();
    if (err == TG_OK) {
        err = read_seats(db, d);
    }
    d->layout_ms = (t1 - t0) / 1000000;
    d->seats_ms = (tg_mono_ns() - t1) / 1000000;
    if (err == TG_OK) {
        err = read_bookings(db, d);
    }
    if (err == TG_OK) {
        err = pst_db_commit(db);
    }
    if (err != TG_OK) {
        pst_db_rollback(db);
    }
    return err;
}

/* ---- Sending to the unit ----------------------------------------------------- */

/* One request; on failure one line on stderr and *code the exit code. */
static tg_err unit_call_with(tg_client *c, const pst_replay_args *a, const tg_msg *req,
                             const char *what, int *code, tg_msg *reply)
{
    uint32_t timeout = a->timeout_ms != 0 ? a->timeout_ms : PST_REPLAY_CALL_TIMEOUT_MS;
    tg_err err = tg_client_call_to(c, a->pu_url, req, timeout, NULL, reply);
    if (err == TG_OK) {
        return TG_OK;
    }
    *code = TG_EXIT_FAILURE;
    if (reply->type == TG_WIRE_ERROR && err == TG_EEXIST && req->type == TG_WIRE_PARTITION_CREATE) {
        tg_log_error("replay: partition %" PRIu32 ": partition already exists on that unit "
                     "(%s at %s)",
                     a->partition_id, tg_errname(err), a->pu_url);
    } else if (reply->type == TG_WIRE_ERROR) {
        tg_log_error("replay: partition %" PRIu32 ": the unit at %s refused %s: %s (%s)",
                     a->partition_id, a->pu_url, what, tg_errname(err), reply->error.message);
    } else {
        *code =
            err == TG_ETIMEDOUT || err == TG_EUNAVAILABLE ? TG_EXIT_UNAVAILABLE : TG_EXIT_FAILURE;
        tg_log_error("replay: partition %" PRIu32 ": no answer from the unit at %s to %s: %s (%s)",
                     a->partition_id, a->pu_url, what, tg_errname(err), tg_strerror(err));
    }
    return err;
}

static tg_err unit_call(tg_client *c, const pst_replay_args *a, const tg_msg *req, const char *what,
                        int *code)
{
    tg_msg *reply = malloc(sizeof(*reply)); /* large (stats arrays): off the stack */
    if (reply == NULL) {
        *code = TG_EXIT_FAILURE;
        return TG_ENOMEM;
    }
    tg_err err = unit_call_with(c, a, req, what, code, reply);
    free(reply);
    return err;
}

static tg_err restore_send(tg_client *c, const pst_replay_args *a, const pst_replay_data *d,
                           int *code)
{
    tg_msg m = {.type = TG_WIRE_PARTITION_RESTORE};
    __typeof__(m.partition_restore) *q = &m.partition_restore;
    *q = (__typeof__(*q)){.partition_id = d->partition_id,
                          .phase = TG_WIRE_RESTORE_BEGIN,
                          .epoch = d->epoch,
                          .log_base = d->log_base};
    /* The ended newest booking, if any, goes alone in BEGIN: before any live
     * booking that may share its slot. */
    uint32_t b = d->booking_n - d->live_n;
    q->booking_count = b;
    q->bookings = d->bookings;
    tg_err err = unit_call(c, a, &m, "partition_restore BEGIN", code);
    uint32_t s = 0;
    while (err == TG_OK && (b < d->booking_n || s < d->seat_n)) {
        uint32_t nb = d->booking_n - b, ns = d->seat_n - s;
        q->phase = TG_WIRE_RESTORE_DATA;
        q->booking_count = nb < TG_WIRE_RESTORE_BOOKINGS_MAX ? nb : TG_WIRE_RESTORE_BOOKINGS_MAX;
        q->bookings = d->bookings + b;
        q->seat_count = ns < TG_WIRE_CHANGES_MAX ? ns : TG_WIRE_CHANGES_MAX;
        q->seats = d->seats + s;
        err = unit_call(c, a, &m, "partition_restore DATA", code);
        b += q->booking_count;
        s += q->seat_count;
    }
    if (err == TG_OK) {
        q->phase = TG_WIRE_RESTORE_END;
        q->booking_count = 0;
        q->seat_count = 0;
        err = unit_call(c, a, &m, "partition_restore END", code);
    }
    return err;
}

static tg_err replay_send(const pst_replay_args *a, const pst_replay_data *d, int *code)
{
    tg_client *c = NULL;
    tg_client_config cfg = {.inflight_max = 1};
    if (tg_client_open(&cfg, &c) != TG_OK) {
        tg_log_error("replay: cannot open an nng client");
        *code = TG_EXIT_FAILURE;
        return TG_ESYSTEM;
    }
    *code = TG_EXIT_OK;
    tg_err err = unit_call(c, a, &d->create, "partition_create", code);
    if (err == TG_OK) {
        err = restore_send(c, a, d, code);
    }
    tg_client_close(c);
    return err;
}

/* ---- The command --------------------------------------------------------------- */

static void replay_free(pst_replay_data *d)
{
    free(d->rows);
    free(d->seats);
    free(d->bookings);
}

/* Reads the partition and sends it: the command's work, and the library's
 * (tg_replay_partition).  *code is the command's exit code. */
static tg_err replay_do(PGconn *db, const pst_replay_args *a, int *code)
{
    pst_replay_data *d = calloc(1, sizeof(*d)); /* the tg_msg inside is large */
    tg_err err = d != NULL ? TG_OK : TG_ENOMEM;
    if (err == TG_OK) {
        d->partition_id = a->partition_id;
        d->rows = calloc(TG_ROWS_MAX, sizeof(*d->rows));
    }
    int64_t started = tg_mono_ns();
    if (err == TG_OK) {
        err = d->rows != NULL ? replay_read(db, d) : TG_ENOMEM;
    }
    if (err != TG_OK) {
        *code = pst_exit_code(db, err);
        if (d != NULL) {
            replay_free(d);
        }
        free(d);
        return err;
    }
    int64_t read_ns = tg_mono_ns() - started;
    d->epoch = a->epoch_given ? a->epoch
               : d->map_epoch > d->offset_epoch ? d->map_epoch
                                                : d->offset_epoch;
    if (d->epoch < d->offset_epoch) {
        tg_log_error("replay: partition %" PRIu32 ": --epoch %" PRIu64 " is below "
                     "partition_offsets.epoch %" PRIu64 ": the drain would refuse every change "
                     "the unit makes",
                     d->partition_id, d->epoch, d->offset_epoch);
        *code = TG_EXIT_FAILURE;
        err = TG_ESTALE_EPOCH;
    } else {
        d->create.partition_create.hold_ttl_ms = a->hold_ttl_ms;
        d->create.partition_create.payment_window_ms = a->payment_window_ms;
        err = replay_send(a, d, code);
    }
    if (err == TG_OK) {
        tg_log_info("replay: partition %" PRIu32 " of event %" PRId64 " restored into %s: %" PRId64
                    " seats (%" PRIu32 " not free), %" PRIu32
                    " live or paid bookings, epoch %" PRIu64 ", log continues after %" PRIu64
                    "; %" PRId64 " ms (PostgreSQL %" PRId64 " ms: layout %" PRId64
                    ", seats %" PRId64 ")",
                    d->partition_id, d->event_id, a->pu_url, d->seat_count, d->held_n, d->live_n,
                    d->epoch, d->log_base, (tg_mono_ns() - started) / 1000000, read_ns / 1000000,
                    d->layout_ms, d->seats_ms);
    }
    replay_free(d);
    free(d);
    return err;
}

tg_err tg_replay_partition(PGconn *db, uint32_t partition_id, const char *pu_url)
{
    pst_replay_args a = {.partition_id = partition_id, .pu_url = pu_url};
    int code = 0;
    return replay_do(db, &a, &code);
}

int pst_cmd_replay(pst_context *ctx, int argc, char **argv)
{
    pst_replay_args a = {0};
    int code = replay_parse(argc, argv, &a);
    if (code != 0 || (code = pst_context_connect(ctx)) != 0) {
        return code;
    }
    replay_do(ctx->db, &a, &code);
    return code;
}

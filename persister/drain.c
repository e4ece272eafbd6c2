/*
 * drain.c — the write-behind drain (`run`), the address book of processing
 * units (`pu-register`, `place`), and `ingest`.
 *
 * The drain follows every placed partition (grid_partitions joined to
 * grid_members for the primary's REP address), reads each one's change log
 * from its primary with log_read (up to 4096 records a request, one request
 * in flight per partition, up to PST_DRAIN_READS_MAX partitions at once, all
 * asynchronous through one tg_client), and writes what it read to
 * PostgreSQL in batches: many partitions in ONE transaction, a batch closing
 * at --batch-max-changes records or --batch-max-ms after its first record.
 * Only after COMMIT does it send log_ack, so a unit reuses ring space only
 * for records PostgreSQL holds.
 *
 * Exactly-once effect.  Each batch locks its partitions' partition_offsets
 * rows (SELECT ... FOR UPDATE, in partition order) at its start, skips
 * records at or below the recorded last_seq and moves last_seq in the same
 * transaction: a batch replayed after a crash, or written twice by two
 * drains, changes nothing.  Records a unit served under an epoch below the
 * recorded one are refused whole (a deposed primary's late records never
 * land), logged once, never acked; a higher epoch is recorded.
 *
 * Writes per batch.  A batch costs a fixed handful of round trips whatever
 * its size, and every statement finds its rows by key.  C checks each
 * record and plans the writes: it reads the rows of the seats the batch
 * touches as they were (one `seat_no = ANY` query per partition) and which
 * of the bookings held seats name exist, then walks each seat's records in
 * sequence order against its row: every change of booking closes the
 * holder's booking_seats row and opens the next one's, and the last record
 * is the seat's new word.  Then COPY does the bulk: refused records into
 * persister_rejects, booking records into a temporary table (one statement
 * queues notifications for bookings that become paid or expired, one
 * upserts them forward by version), the new booking_seats rows straight
 * into the table, the seats' last words into a temporary table joined by
 * one UPDATE; one UPDATE per partition closes the rows of seats that moved.
 * Seat records carry no time of their own, so held_at and released_at are
 * the batch's transaction time: late by at most the drain's lag.
 *
 * Cost.  Per change, PostgreSQL's work is an index probe or two and a row
 * written.  booking_seats' references are checked once per statement
 * (migration 009): as foreign keys, checked row by row, they were about
 * half of it.
 *
 * Threads.  Everything but the nng callbacks runs on the main thread, which
 * owns the PGconn, the partitions' cursors and the batch.  A callback only
 * files its result in its request slot under `lock`, queues the slot and
 * signals `cond`; the main thread takes the queue.  Replies land in slots
 * while the main thread waits for PostgreSQL, so reading and writing
 * overlap.
 *
 * Failures.  A lost PostgreSQL connection drops the batch and everything
 * read ahead; the drain retries with capped exponential backoff (probing
 * quietly with PQping, so the log gets one line when PostgreSQL goes away
 * and one when it is back), then resumes every partition from
 * partition_offsets.  Nothing is acked meanwhile, so the rings hold every
 * record (units refuse new holds at their high-water mark).  A statement
 * PostgreSQL refuses on a healthy connection (a bug, or data nobody
 * foresaw) is retried partition by partition, and a partition that fails
 * alone is parked for --retry-max-ms so that it cannot stop the others.
 * An unreachable unit is logged once and retried with backoff while the
 * other partitions drain.  A malformed record is refused with one log line,
 * kept in persister_rejects and skipped.
 *
 * Rejected alternatives: one statement per record (a round trip each: two
 * orders of magnitude too slow); deriving the transitions in SQL with window
 * functions over a staged batch (tried: the planner hash-joined the whole
 * seats table per batch, and the batch went through three more joins; three
 * times the cost of planning in C); triggers to maintain booking_seats
 * (hidden work on the hot table, and the order within a batch would be
 * lost); a thread per unit (one loop already keeps 32 reads in flight, and
 * the database, not the network, is the bottleneck).
 */
#include "drain.h"
#include "persister.h"

#include "tixgrid/assert.h"
#include "tixgrid/cli.h"
#include "tixgrid/client.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"
#include "tixgrid/mapsub.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes of a unit's address, including the NUL (grid_members allows 255). */
#define PST_URL_BYTES 256u
/* Partitions named in one stats line, at most. */
#define STATS_LAG_LIST_MAX 16u
/* Milliseconds between stats lines, at least. */
#define STATS_INTERVAL_MS 1000
/* The longest the main loop sleeps without looking at signals. */
#define LOOP_WAIT_MAX_MS 100
/* How long a stopping drain waits for its last acks, and for its client. */
#define STOP_ACK_WAIT_MS     2000
#define CLIENT_CLOSE_WAIT_MS 3000

#define NS_PER_MS INT64_C(1000000)

/* ---- Text buffers ------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len, cap;
} pst_text;

static tg_err text_reserve(pst_text *t, size_t more)
{
    if (t->len + more <= t->cap) {
        return TG_OK;
    }
    size_t cap = t->cap != 0 ? t->cap : 4096;
    while (cap < t->len + more) {
        cap *= 2;
    }
    char *data = realloc(t->data, cap);
    if (data == NULL) {
        return TG_ENOMEM;
    }
    t->data = data;
    t->cap = cap;
    return TG_OK;
}

static tg_err text_printf(pst_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static tg_err text_printf(pst_text *t, const char *fmt, ...)
{
    for (;;) {
        size_t room = t->cap - t->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data != NULL ? t->data + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            return TG_EINVAL;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return TG_OK;
        }
        if (text_reserve(t, (size_t)n + 1) != TG_OK) {
            return TG_ENOMEM;
        }
    }
}

static void text_free(pst_text *t)
{
    free(t->data);
    *t = (pst_text){0};
}

/* ---- Checking one record --------------------------------------------------- */

static bool seat_state_held(tg_seat_state s)
{
    return s == TG_SEAT_SELECTED || s == TG_SEAT_RESERVED || s == TG_SEAT_SOLD;
}

static bool seat_problem(uint32_t seat_count, const tg_wire_log_record *r, char *why, size_t size)
{
    tg_seat_state state = tg_seat_word_state(r->word);
    uint32_t seq = tg_seat_word_booking(r->word);
    if (r->ident >= seat_count) {
        snprintf(why, size, "seat %" PRIu32 " is beyond the partition's %" PRIu32 " seats",
                 r->ident, seat_count);
    } else if (state >= TG_SEAT_STATE_COUNT) {
        snprintf(why, size, "seat word 0x%016" PRIx64 " has no valid state (%u)", r->word,
                 (unsigned)state);
    } else if (seat_state_held(state) && seq == 0) {
        snprintf(why, size, "a %s seat word names no booking", tg_seat_state_name(state));
    } else if (!seat_state_held(state) && seq != 0) {
        snprintf(why, size, "a %s seat word names booking seq %" PRIu32, tg_seat_state_name(state),
                 seq);
    } else {
        return false;
    }
    return true;
}

static bool booking_problem(const tg_wire_log_record *r, char *why, size_t size)
{
    const int64_t time_max = (int64_t)TG_WIRE_ID_MAX;
    if (r->status == TG_BOOKING_EMPTY || r->status >= TG_BOOKING_STATUS_COUNT) {
        snprintf(why, size, "booking record with status %" PRIu32, r->status);
    } else if (r->ident == 0) {
        snprintf(why, size, "booking record with booking seq 0");
    } else if (r->word > TG_WIRE_ID_MAX) {
        snprintf(why, size, "booking record with user id %" PRIu64 " beyond 2^53 - 1", r->word);
    } else if (r->created_ms < 0 || r->created_ms > time_max) {
        snprintf(why, size, "booking record with created_ms %" PRId64 " out of range",
                 r->created_ms);
    } else if (r->deadline_ms < 0 || r->deadline_ms > time_max) {
        snprintf(why, size, "booking record with deadline_ms %" PRId64 " out of range",
                 r->deadline_ms);
    } else {
        return false;
    }
    return true;
}

bool pst_record_problem(uint32_t seat_count, const tg_wire_log_record *r, char *why,
                        size_t why_size)
{
    switch (r->kind) {
    case 0:
        return false;
    case 1:
        return seat_problem(seat_count, r, why, why_size);
    case 2:
        return booking_problem(r, why, why_size);
    default:
        snprintf(why, why_size, "unknown record kind %" PRIu32, r->kind);
        return true;
    }
}

/* ---- The connection's scratch tables ------------------------------------- */

/* The drain's statements meet a batch (thousands of rows) with tables of
 * any size (seats, bookings, booking_seats: history without end), always
 * by key.  Index probes cost what the batch holds; a hash join or a scan
 * costs what the table holds, and the planner, which cannot know a
 * temporary table's size and sees 4% of a table as "most of it", picks
 * those.  So this session plans nested loops and index scans only (tables
 * without an index, the temporary ones, are still scanned). */
static const char setup_sql[] =
    "SET enable_hashjoin = off; SET enable_mergejoin = off; SET enable_seqscan = off;"
    "SET jit = off;"
    "CREATE TEMPORARY TABLE IF NOT EXISTS pst_bookings ("
    " booking_id bigint NOT NULL, partition_id integer NOT NULL, event_id bigint NOT NULL,"
    " user_id bigint NOT NULL, status text NOT NULL, version bigint NOT NULL,"
    " created_ms bigint NOT NULL, deadline_ms bigint NOT NULL, seq bigint NOT NULL)"
    " ON COMMIT DELETE ROWS;"
    "CREATE TEMPORARY TABLE IF NOT EXISTS pst_seats ("
    " event_id bigint NOT NULL, seat_no integer NOT NULL, status text NOT NULL,"
    " booking_id bigint, version integer NOT NULL) ON COMMIT DELETE ROWS;"
    "SELECT 1 FROM partition_offsets, persister_rejects, grid_members, booking_seats,"
    " notification_outbox LIMIT 0";

tg_err pst_apply_setup(PGconn *db)
{
    return pst_db_exec(db, "prepare the drain's session", setup_sql);
}

/* ---- The statements of a batch --------------------------------------------- */

static const char offsets_ensure_sql[] =
    "INSERT INTO partition_offsets (partition_id, epoch, last_seq, updated_at)"
    " SELECT p, e, 0, now() FROM unnest($1::integer[], $2::bigint[]) AS u(p, e)"
    " ORDER BY p ON CONFLICT (partition_id) DO NOTHING";

/* Also the transaction's time, as text this session reads back. */
static const char offsets_lock_sql[] =
    "SELECT partition_id, epoch, last_seq, now()::text FROM partition_offsets"
    " WHERE partition_id = ANY ($1::integer[]) ORDER BY partition_id FOR UPDATE";

static const char offsets_set_sql[] =
    "UPDATE partition_offsets o SET epoch = u.e, last_seq = u.l, updated_at = now()"
    " FROM unnest($1::integer[], $2::bigint[], $3::bigint[]) AS u(p, e, l)"
    " WHERE o.partition_id = u.p";

/* The seats of one partition a batch touches, as they were before it. */
static const char seats_before_sql[] =
    "SELECT seat_no, partition_id, COALESCE(booking_id, 0) FROM seats"
    " WHERE event_id = $1::bigint AND seat_no = ANY ($2::integer[])";

static const char bookings_known_sql[] =
    "SELECT id FROM bookings WHERE id = ANY ($1::bigint[]) ORDER BY id";

/* A booking that becomes paid or expired with this batch (the upsert below
 * will take its record, and it was not so before) owes its user a message.
 * Runs before the upsert, which it predicts: a join of two CTEs would be a
 * nested loop over both here (see setup_sql). */
static const char outbox_sql[] =
    "INSERT INTO notification_outbox (user_id, booking_id, kind, payload, created_at)"
    " SELECT f.user_id, f.booking_id,"
    "  CASE f.status WHEN 'paid' THEN 'payment_confirmed' ELSE 'booking_expired' END,"
    "  jsonb_build_object('booking_id', f.booking_id, 'event_id', f.event_id,"
    "  'status', f.status), now()"
    " FROM (SELECT DISTINCT ON (booking_id) * FROM pst_bookings ORDER BY booking_id, seq DESC) f"
    " LEFT JOIN bookings b ON b.id = f.booking_id"
    " WHERE f.status IN ('paid', 'expired') AND b.status IS DISTINCT FROM f.status"
    " AND (b.version IS NULL OR b.version < f.version)";

/* Each booking's last record wins, if its version is newer than the row's. */
static const char bookings_sql[] =
    "INSERT INTO bookings AS b (id, partition_id, event_id, user_id, status, created_at,"
    " deadline, version, updated_at)"
    " SELECT booking_id, partition_id, event_id, user_id, status,"
    " timestamptz 'epoch' + created_ms * interval '1 millisecond',"
    " timestamptz 'epoch' + deadline_ms * interval '1 millisecond', version, now()"
    " FROM (SELECT DISTINCT ON (booking_id) * FROM pst_bookings ORDER BY booking_id, seq DESC) f"
    " ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, status = EXCLUDED.status,"
    " created_at = EXCLUDED.created_at, deadline = EXCLUDED.deadline,"
    " version = EXCLUDED.version, updated_at = now() WHERE b.version < EXCLUDED.version";

/* Seats of one partition that moved in this batch gave up what they held
 * before it. */
static const char close_sql[] =
    "UPDATE booking_seats SET released_at = greatest(now(), held_at)"
    " WHERE event_id = $1::bigint AND seat_no = ANY ($2::integer[]) AND released_at IS NULL";

static const char seats_sql[] =
    "UPDATE seats t SET status = f.status, booking_id = f.booking_id, version = f.version"
    " FROM pst_seats f WHERE t.event_id = f.event_id AND t.seat_no = f.seat_no";

/* ---- One batch: the chunks ------------------------------------------------------ */

/* Chunk indices sorted by partition id: the order rows are locked in. */
typedef struct {
    pst_chunk *chunks;
    uint32_t *order;
    uint32_t count;
} chunk_set;

static int order_cmp(const void *a, const void *b, void *arg)
{
    const pst_chunk *chunks = arg;
    uint32_t pa = chunks[*(const uint32_t *)a].partition_id;
    uint32_t pb = chunks[*(const uint32_t *)b].partition_id;
    return (pa > pb) - (pa < pb);
}

static pst_chunk *chunk_find(const chunk_set *set, uint32_t partition_id)
{
    uint32_t lo = 0, hi = set->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        pst_chunk *c = &set->chunks[set->order[mid]];
        if (c->partition_id == partition_id) {
            return c;
        }
        if (c->partition_id < partition_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* "{a,b,c}": one field of the chunks in lock order; only applied ones when
 * applied_only.  field: 0 partition id, 1 epoch (map_epoch or, applied,
 * the epoch to record), 2 last_seq. */
static tg_err array_param(const chunk_set *set, int field, bool applied_only, pst_text *out)
{
    out->len = 0;
    tg_err err = text_printf(out, "{");
    bool first = true;
    for (uint32_t i = 0; i < set->count && err == TG_OK; i++) {
        const pst_chunk *c = &set->chunks[set->order[i]];
        if (applied_only && c->outcome != PST_CHUNK_APPLIED) {
            continue;
        }
        uint64_t v = field == 0   ? c->partition_id
                     : field == 1 ? (applied_only ? c->epoch : c->map_epoch)
                                  : c->last_seq;
        err = text_printf(out, "%s%" PRIu64, first ? "" : ",", v);
        first = false;
    }
    return err == TG_OK ? text_printf(out, "}") : err;
}

static void chunk_decide(pst_chunk *c, uint64_t row_epoch, uint64_t row_last)
{
    c->epoch = row_epoch;
    c->last_seq = row_last;
    c->applied = c->skipped = c->rejected = 0;
    if (c->map_epoch < row_epoch) {
        c->outcome = PST_CHUNK_FENCED;
    } else if (row_last < c->base_seq) {
        c->outcome = PST_CHUNK_BEHIND;
    } else {
        c->outcome = PST_CHUNK_APPLIED;
        c->epoch = c->map_epoch > row_epoch ? c->map_epoch : row_epoch;
    }
}

/* Makes the missing offset rows, locks them all and decides each chunk;
 * now receives the transaction's time. */
static tg_err offsets_lock(PGconn *db, const chunk_set *set, char *now, size_t now_size)
{
    pst_text ids = {0}, epochs = {0};
    tg_err err = array_param(set, 0, false, &ids);
    if (err == TG_OK) {
        err = array_param(set, 1, false, &epochs);
    }
    const char *params[2] = {ids.data, epochs.data};
    if (err == TG_OK) {
        err = pst_db_query(db, "create partition offsets", offsets_ensure_sql, 2, params, NULL);
    }
    PGresult *res = NULL;
    if (err == TG_OK) {
        err = pst_db_query(db, "lock partition offsets", offsets_lock_sql, 1, params, &res);
    }
    for (int i = 0; err == TG_OK && i < PQntuples(res); i++) {
        int64_t id = 0, epoch = 0, last = 0;
        pst_db_parse_i64(PQgetvalue(res, i, 0), &id);
        pst_db_parse_i64(PQgetvalue(res, i, 1), &epoch);
        pst_db_parse_i64(PQgetvalue(res, i, 2), &last);
        snprintf(now, now_size, "%s", PQgetvalue(res, i, 3));
        pst_chunk *c = chunk_find(set, (uint32_t)id);
        if (c != NULL) {
            chunk_decide(c, (uint64_t)epoch, (uint64_t)last);
        }
    }
    if (err == TG_OK && PQntuples(res) != (int)set->count) {
        tg_log_error("drain: %d partition_offsets rows locked for %" PRIu32 " partitions",
                     PQntuples(res), set->count);
        err = TG_EDB;
    }
    PQclear(res);
    text_free(&ids);
    text_free(&epochs);
    return err;
}

static tg_err offsets_set(PGconn *db, const chunk_set *set)
{
    pst_text p[3] = {{0}};
    tg_err err = TG_OK;
    for (int f = 0; f < 3 && err == TG_OK; f++) {
        err = array_param(set, f, true, &p[f]);
    }
    const char *params[3] = {p[0].data, p[1].data, p[2].data};
    if (err == TG_OK && strcmp(p[0].data, "{}") != 0) {
        err = pst_db_query(db, "move partition offsets", offsets_set_sql, 3, params, NULL);
    }
    for (int f = 0; f < 3; f++) {
        text_free(&p[f]);
    }
    return err;
}

/* ---- One batch: the work, planned in C ------------------------------------------ */

/* A seat record of the batch that passed its own checks. */
typedef struct {
    uint32_t chunk;   /* index into the chunk set's array */
    uint32_t seat_no; /* first_seat + the record's seat id */
    uint32_t rec;     /* the record's index within its chunk */
} seat_ref;

/* A seat row as it was before the batch. */
typedef struct {
    int64_t event_id;
    uint32_t seat_no, partition_id;
    uint64_t booking; /* 0: none */
} seat_row;

typedef struct {
    uint32_t partition_id;
    uint64_t seq;
    char reason[PST_REJECT_REASON_BYTES];
} reject_line;

/* Everything one batch writes, as COPY data and array parameters. */
typedef struct {
    const chunk_set *set;
    char now[64];   /* the transaction's time: held_at, released_at */
    seat_ref *refs; /* sorted by (chunk, seat_no, rec) */
    uint32_t ref_count;
    seat_row *rows; /* sorted by (event_id, seat_no) */
    uint32_t row_count;
    uint64_t *created; /* bookings with a good record in this batch, sorted */
    uint32_t created_count;
    uint64_t *known; /* bookings held seats name that PostgreSQL has, sorted */
    uint32_t known_count;
    reject_line *lines; /* the first PST_DRAIN_REJECT_LINES_MAX refusals, for the log */
    uint32_t reject_count;
    seat_ref *closes; /* seats whose open booking_seats row closes, by chunk */
    uint32_t close_rows;
    pst_text rejects, bookings, opens, finals;
    uint32_t booking_rows, open_rows, final_rows;
} batch_work;

static void work_free(batch_work *w)
{
    free(w->refs);
    free(w->rows);
    free(w->created);
    free(w->known);
    free(w->lines);
    free(w->closes);
    pst_text *texts[] = {&w->rejects, &w->bookings, &w->opens, &w->finals};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        text_free(texts[i]);
    }
}

static tg_err work_init(batch_work *w, const chunk_set *set)
{
    uint32_t total = 0;
    for (uint32_t i = 0; i < set->count; i++) {
        total += set->chunks[i].count;
    }
    size_t n = total != 0 ? total : 1;
    *w = (batch_work){.set = set};
    w->refs = malloc(n * sizeof(*w->refs));
    w->rows = malloc(n * sizeof(*w->rows));
    w->created = malloc(n * sizeof(*w->created));
    w->known = malloc(n * sizeof(*w->known));
    w->lines = malloc(PST_DRAIN_REJECT_LINES_MAX * sizeof(*w->lines));
    w->closes = malloc(n * sizeof(*w->closes));
    if (w->refs == NULL || w->rows == NULL || w->created == NULL || w->known == NULL ||
        w->lines == NULL || w->closes == NULL) {
        work_free(w);
        return TG_ENOMEM;
    }
    return TG_OK;
}

static uint64_t record_booking(const pst_chunk *c, const tg_wire_log_record *r)
{
    if (r->kind == 2) {
        return tg_booking_id_make(c->partition_id, r->ident);
    }
    bool held = seat_state_held(tg_seat_word_state(r->word));
    return held ? tg_booking_id_make(c->partition_id, tg_seat_word_booking(r->word)) : 0;
}

/* Refuses r: a persister_rejects row (the record verbatim as JSON) and,
 * for the first few, a line for the log. */
static tg_err work_reject(batch_work *w, pst_chunk *c, const tg_wire_log_record *r, char *why)
{
    for (char *p = why; *p != '\0'; p++) {
        *p = (*p == '\t' || *p == '\n' || *p == '\r' || *p == '\\') ? ' ' : *p;
    }
    if (w->reject_count < PST_DRAIN_REJECT_LINES_MAX) {
        reject_line *l = &w->lines[w->reject_count];
        l->partition_id = c->partition_id;
        l->seq = r->seq;
        snprintf(l->reason, sizeof(l->reason), "%s", why);
    }
    w->reject_count++;
    c->rejected++;
    return text_printf(&w->rejects,
                       "%" PRIu32 "\t%" PRIu64 "\t%s\t{\"seq\": %" PRIu64 ", \"kind\": %" PRIu32
                       ", \"ident\": %" PRIu32 ", \"status\": %" PRIu32 ", \"word\": %" PRIu64
                       ", \"deadline_ms\": %" PRId64 ", \"created_ms\": %" PRId64
                       ", \"version\": %" PRIu32 "}\n",
                       c->partition_id, r->seq, why, r->seq, r->kind, r->ident, r->status, r->word,
                       r->deadline_ms, r->created_ms, r->version);
}

static tg_err work_booking(batch_work *w, const pst_chunk *c, const tg_wire_log_record *r)
{
    uint64_t id = record_booking(c, r);
    w->created[w->created_count++] = id;
    w->booking_rows++;
    return text_printf(&w->bookings,
                       "%" PRIu64 "\t%" PRIu32 "\t%" PRId64 "\t%" PRIu64 "\t%s\t%" PRIu32
                       "\t%" PRId64 "\t%" PRId64 "\t%" PRIu64 "\n",
                       id, c->partition_id, c->event_id, r->word,
                       tg_booking_status_name((tg_booking_status)r->status), r->version,
                       r->created_ms, r->deadline_ms, r->seq);
}

/* Checks one record above the recorded offset: sequence, then contents. */
static tg_err work_record(batch_work *w, uint32_t ci, uint32_t i, uint64_t *expected)
{
    pst_chunk *c = &w->set->chunks[ci];
    const tg_wire_log_record *r = &c->records[i];
    char why[PST_REJECT_REASON_BYTES];
    bool bad = true;
    if (r->seq > *expected) {
        snprintf(why, sizeof(why), "gap: seqs %" PRIu64 "..%" PRIu64 " are missing", *expected,
                 r->seq - 1);
    } else if (r->seq < *expected) {
        snprintf(why, sizeof(why), "seq %" PRIu64 " repeats or goes back (expected %" PRIu64 ")",
                 r->seq, *expected);
    } else {
        bad = pst_record_problem(c->seat_count, r, why, sizeof(why));
    }
    *expected = r->seq >= *expected ? r->seq + 1 : *expected;
    if (bad) {
        return work_reject(w, c, r, why);
    }
    if (r->kind == 1) {
        w->refs[w->ref_count++] =
            (seat_ref){.chunk = ci, .seat_no = c->first_seat + r->ident, .rec = i};
    } else if (r->kind == 2) {
        return work_booking(w, c, r);
    }
    return TG_OK;
}

/* Walks an applied chunk above its recorded offset; sets skipped, applied
 * (before refusals found later) and last_seq. */
static tg_err work_chunk(batch_work *w, uint32_t ci)
{
    pst_chunk *c = &w->set->chunks[ci];
    uint64_t recorded = c->last_seq, expected = recorded + 1, last = recorded;
    tg_err err = TG_OK;
    for (uint32_t i = 0; i < c->count && err == TG_OK; i++) {
        uint64_t seq = c->records[i].seq;
        if (seq <= recorded) {
            c->skipped++;
            continue;
        }
        c->applied++;
        last = seq > last ? seq : last;
        err = work_record(w, ci, i, &expected);
    }
    c->last_seq = last;
    return err;
}

static int ref_cmp(const void *a, const void *b)
{
    const seat_ref *x = a, *y = b;
    if (x->chunk != y->chunk) {
        return x->chunk < y->chunk ? -1 : 1;
    }
    if (x->seat_no != y->seat_no) {
        return x->seat_no < y->seat_no ? -1 : 1;
    }
    return (x->rec > y->rec) - (x->rec < y->rec);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool u64_find(const uint64_t *v, uint32_t n, uint64_t key)
{
    return n != 0 && bsearch(&key, v, n, sizeof(*v), u64_cmp) != NULL;
}

static int row_cmp(const void *a, const void *b)
{
    const seat_row *x = a, *y = b;
    if (x->event_id != y->event_id) {
        return x->event_id < y->event_id ? -1 : 1;
    }
    return (x->seat_no > y->seat_no) - (x->seat_no < y->seat_no);
}

/* "{a,b,c}" of the seat numbers refs[from, to) name (sorted, distinct);
 * stops at the first ref of another chunk and returns where. */
static uint32_t seat_array(const seat_ref *refs, uint32_t from, uint32_t to, pst_text *out,
                           tg_err *err)
{
    out->len = 0;
    *err = text_printf(out, "{");
    uint32_t i = from;
    for (; i < to && *err == TG_OK && refs[i].chunk == refs[from].chunk; i++) {
        if (i > from && refs[i].seat_no == refs[i - 1].seat_no) {
            continue;
        }
        *err = text_printf(out, "%s%" PRIu32, out->len > 1 ? "," : "", refs[i].seat_no);
    }
    if (*err == TG_OK) {
        *err = text_printf(out, "}");
    }
    return i;
}

/* Reads the touched seats' rows, one query per partition. */
static tg_err work_seats_before(PGconn *db, batch_work *w)
{
    pst_text seats = {0};
    tg_err err = TG_OK;
    for (uint32_t from = 0, to; from < w->ref_count && err == TG_OK; from = to) {
        to = seat_array(w->refs, from, w->ref_count, &seats, &err);
        const pst_chunk *c = &w->set->chunks[w->refs[from].chunk];
        char event[24];
        snprintf(event, sizeof(event), "%" PRId64, c->event_id);
        const char *params[2] = {event, seats.data};
        PGresult *res = NULL;
        if (err == TG_OK) {
            err = pst_db_query(db, "read the seats", seats_before_sql, 2, params, &res);
        }
        for (int i = 0; err == TG_OK && i < PQntuples(res) && w->row_count < w->ref_count; i++) {
            int64_t seat = 0, partition = 0, booking = 0;
            pst_db_parse_i64(PQgetvalue(res, i, 0), &seat);
            pst_db_parse_i64(PQgetvalue(res, i, 1), &partition);
            pst_db_parse_i64(PQgetvalue(res, i, 2), &booking);
            w->rows[w->row_count++] = (seat_row){.event_id = c->event_id,
                                                 .seat_no = (uint32_t)seat,
                                                 .partition_id = (uint32_t)partition,
                                                 .booking = (uint64_t)booking};
        }
        PQclear(res);
    }
    text_free(&seats);
    return err;
}

/* Finds which bookings named by held seats (and not written by this batch)
 * PostgreSQL has. */
static tg_err work_bookings_known(PGconn *db, batch_work *w)
{
    pst_text ids = {0};
    tg_err err = text_printf(&ids, "{");
    uint32_t asked = 0;
    for (uint32_t i = 0; i < w->ref_count && err == TG_OK; i++) {
        const pst_chunk *c = &w->set->chunks[w->refs[i].chunk];
        uint64_t b = record_booking(c, &c->records[w->refs[i].rec]);
        if (b != 0 && !u64_find(w->created, w->created_count, b)) {
            err = text_printf(&ids, "%s%" PRIu64, asked++ > 0 ? "," : "", b);
        }
    }
    err = err == TG_OK ? text_printf(&ids, "}") : err;
    PGresult *res = NULL;
    const char *params[1] = {ids.data};
    if (err == TG_OK && asked > 0) {
        err = pst_db_query(db, "look up bookings", bookings_known_sql, 1, params, &res);
    }
    for (int i = 0; err == TG_OK && res != NULL && i < PQntuples(res); i++) {
        int64_t id = 0;
        pst_db_parse_i64(PQgetvalue(res, i, 0), &id);
        if (w->known_count < w->ref_count) {
            w->known[w->known_count++] = (uint64_t)id;
        }
    }
    PQclear(res);
    text_free(&ids);
    return err;
}

static tg_err work_open(batch_work *w, int64_t event_id, uint32_t seat_no, uint64_t booking,
                        bool released)
{
    w->open_rows++;
    return text_printf(&w->opens, "%" PRIu64 "\t%" PRId64 "\t%" PRIu32 "\t%s\t%s\n", booking,
                       event_id, seat_no, w->now, released ? w->now : "\\N");
}

static tg_err work_final(batch_work *w, int64_t event_id, uint32_t seat_no, tg_seat_word word,
                         uint64_t booking)
{
    char b[24] = "\\N";
    if (booking != 0) {
        snprintf(b, sizeof(b), "%" PRIu64, booking);
    }
    w->final_rows++;
    return text_printf(&w->finals, "%" PRId64 "\t%" PRIu32 "\t%s\t%s\t%" PRIu32 "\n", event_id,
                       seat_no, tg_seat_state_name(tg_seat_word_state(word)), b,
                       tg_seat_word_version(word));
}

static tg_err work_close(batch_work *w, uint32_t chunk, uint32_t seat_no)
{
    w->closes[w->close_rows++] = (seat_ref){.chunk = chunk, .seat_no = seat_no};
    return TG_OK;
}

/* One seat's records [from, to) in sequence order, against its row as it
 * was: each change of booking closes the holder's booking_seats row and
 * opens the next one's; the last good record is the seat's new word. */
static tg_err work_seat(batch_work *w, uint32_t from, uint32_t to)
{
    pst_chunk *c = &w->set->chunks[w->refs[from].chunk];
    uint32_t seat_no = w->refs[from].seat_no;
    seat_row key = {.event_id = c->event_id, .seat_no = seat_no};
    const seat_row *row = bsearch(&key, w->rows, w->row_count, sizeof(key), row_cmp);
    tg_err err = TG_OK;
    char why[PST_REJECT_REASON_BYTES];
    if (row == NULL || row->partition_id != c->partition_id) {
        snprintf(why, sizeof(why),
                 "seat_no %" PRIu32 " of event %" PRId64 " is not a seat of "
                 "partition %" PRIu32 " in PostgreSQL",
                 seat_no, c->event_id, c->partition_id);
        for (uint32_t i = from; i < to && err == TG_OK; i++) {
            char copy[PST_REJECT_REASON_BYTES];
            memcpy(copy, why, sizeof(copy));
            err = work_reject(w, c, &c->records[w->refs[i].rec], copy);
        }
        return err;
    }
    uint64_t prev = row->booking, open = 0;
    const tg_wire_log_record *last = NULL;
    bool moved = false;
    for (uint32_t i = from; i < to && err == TG_OK; i++) {
        const tg_wire_log_record *r = &c->records[w->refs[i].rec];
        uint64_t b = record_booking(c, r);
        if (b != 0 && !u64_find(w->created, w->created_count, b) &&
            !u64_find(w->known, w->known_count, b)) {
            snprintf(why, sizeof(why),
                     "booking seq %" PRIu32 " is not a booking of partition %" PRIu32,
                     tg_booking_id_seq(b), c->partition_id);
            err = work_reject(w, c, r, why);
            continue;
        }
        last = r;
        if (b == prev) {
            continue;
        }
        /* Only a seat that held a booking before the batch has an open row
         * to close: the drain keeps seats.booking_id and the open rows in
         * step, in the same transactions. */
        err = moved || row->booking == 0 ? TG_OK : work_close(w, w->refs[from].chunk, seat_no);
        moved = true;
        if (err == TG_OK && open != 0) {
            err = work_open(w, c->event_id, seat_no, open, true);
        }
        open = prev = b;
    }
    if (err == TG_OK && open != 0) {
        err = work_open(w, c->event_id, seat_no, open, false);
    }
    if (err == TG_OK && last != NULL) {
        err = work_final(w, c->event_id, seat_no, last->word, record_booking(c, last));
    }
    return err;
}

/* Plans the whole batch: checks, lookups, then every seat's writes. */
static tg_err work_plan(PGconn *db, batch_work *w)
{
    tg_err err = TG_OK;
    for (uint32_t i = 0; i < w->set->count && err == TG_OK; i++) {
        if (w->set->chunks[i].outcome == PST_CHUNK_APPLIED) {
            err = work_chunk(w, i);
        }
    }
    if (err != TG_OK || w->ref_count == 0) {
        return err;
    }
    qsort(w->refs, w->ref_count, sizeof(*w->refs), ref_cmp);
    qsort(w->created, w->created_count, sizeof(*w->created), u64_cmp);
    err = work_seats_before(db, w);
    if (err == TG_OK) {
        qsort(w->rows, w->row_count, sizeof(*w->rows), row_cmp);
        err = work_bookings_known(db, w);
    }
    if (err == TG_OK) {
        qsort(w->known, w->known_count, sizeof(*w->known), u64_cmp);
    }
    for (uint32_t from = 0, to; from < w->ref_count && err == TG_OK; from = to) {
        for (to = from + 1; to < w->ref_count && w->refs[to].chunk == w->refs[from].chunk &&
                            w->refs[to].seat_no == w->refs[from].seat_no;
             to++) {
        }
        err = work_seat(w, from, to);
    }
    return err;
}

static tg_err copy_text(PGconn *db, const char *what, const char *sql, const pst_text *t)
{
    tg_err err = pst_db_copy_begin(db, what, sql);
    if (err != TG_OK) {
        return err;
    }
    err = pst_db_copy_put(db, t->data, t->len);
    if (err == TG_OK) {
        return pst_db_copy_end(db, NULL);
    }
    if (!pst_db_connection_lost(db)) {
        pst_db_copy_end(db, "tixgrid-persister gave up");
    }
    return err;
}

/* The writes, in an order that keeps every immediate constraint: bookings
 * before booking_seats (whose references are checked at the end of each
 * statement, migration 009), closes before opens (one open booking_seats
 * row per seat).  The seats' foreign key to bookings is deferred: it holds
 * at COMMIT. */
static tg_err work_write(PGconn *db, batch_work *w)
{
    tg_err err = TG_OK;
    if (w->reject_count > 0) {
        err = copy_text(db, "keep refused records",
                        "COPY persister_rejects (partition_id, seq, reason, record) FROM STDIN",
                        &w->rejects);
    }
    if (err == TG_OK && w->booking_rows > 0) {
        err = copy_text(db, "copy bookings", "COPY pst_bookings FROM STDIN", &w->bookings);
        if (err == TG_OK) {
            err = pst_db_query(db, "queue notifications", outbox_sql, 0, NULL, NULL);
        }
        if (err == TG_OK) {
            err = pst_db_query(db, "write bookings", bookings_sql, 0, NULL, NULL);
        }
    }
    pst_text seats = {0};
    for (uint32_t from = 0, to; from < w->close_rows && err == TG_OK; from = to) {
        to = seat_array(w->closes, from, w->close_rows, &seats, &err);
        char event[24];
        snprintf(event, sizeof(event), "%" PRId64, w->set->chunks[w->closes[from].chunk].event_id);
        const char *params[2] = {event, seats.data};
        if (err == TG_OK) {
            err = pst_db_query(db, "close booking_seats", close_sql, 2, params, NULL);
        }
    }
    text_free(&seats);
    if (err == TG_OK && w->final_rows > 0) {
        err = copy_text(db, "copy seats", "COPY pst_seats FROM STDIN", &w->finals);
        if (err == TG_OK) {
            err = pst_db_query(db, "write seats", seats_sql, 0, NULL, NULL);
        }
    }
    if (err == TG_OK && w->open_rows > 0) {
        err = copy_text(db, "open booking_seats",
                        "COPY booking_seats (booking_id, event_id, seat_no, held_at, released_at)"
                        " FROM STDIN",
                        &w->opens);
    }
    return err;
}

/* ---- One batch, one transaction --------------------------------------------- */

/* Logs the refused records (after the commit that kept them). */
static void rejects_log(const batch_work *w)
{
    uint32_t shown =
        w->reject_count < PST_DRAIN_REJECT_LINES_MAX ? w->reject_count : PST_DRAIN_REJECT_LINES_MAX;
    for (uint32_t i = 0; i < shown; i++) {
        tg_log_error("drain: partition %" PRIu32 ": record %" PRIu64 " rejected: %s",
                     w->lines[i].partition_id, w->lines[i].seq, w->lines[i].reason);
    }
    if (w->reject_count > shown) {
        tg_log_error("drain: %" PRIu32 " more records rejected in this batch (see "
                     "persister_rejects)",
                     w->reject_count - shown);
    }
}

static tg_err batch_transaction(PGconn *db, const chunk_set *set, batch_work *w)
{
    tg_err err = pst_db_begin(db);
    if (err == TG_OK) {
        err = offsets_lock(db, set, w->now, sizeof(w->now));
    }
    if (err == TG_OK) {
        err = work_plan(db, w);
    }
    if (err == TG_OK) {
        err = work_write(db, w);
    }
    if (err == TG_OK) {
        err = offsets_set(db, set);
    }
    if (err == TG_OK) {
        err = pst_db_commit(db);
    }
    if (err != TG_OK) {
        pst_db_rollback(db);
    }
    return err;
}

tg_err pst_apply_batch(PGconn *db, pst_chunk *chunks, uint32_t count, pst_apply_result *result)
{
    TG_ASSERT(count > 0 && count <= PST_DRAIN_PARTITIONS_MAX);
    chunk_set set = {.chunks = chunks, .count = count, .order = malloc(count * sizeof(uint32_t))};
    batch_work w;
    if (set.order == NULL || work_init(&w, &set) != TG_OK) {
        free(set.order);
        return TG_ENOMEM;
    }
    for (uint32_t i = 0; i < count; i++) {
        set.order[i] = i;
    }
    qsort_r(set.order, count, sizeof(uint32_t), order_cmp, chunks);
    tg_err err = batch_transaction(db, &set, &w);
    if (err == TG_OK) {
        rejects_log(&w);
    }
    work_free(&w);
    free(set.order);
    pst_apply_result total = {0};
    for (uint32_t i = 0; i < count && err == TG_OK; i++) {
        chunks[i].applied -= chunks[i].rejected; /* counted as applied when staged */
        total.applied += chunks[i].applied;
        total.skipped += chunks[i].skipped;
        total.rejected += chunks[i].rejected;
        total.fenced_chunks += chunks[i].outcome == PST_CHUNK_FENCED;
    }
    if (err == TG_OK && result != NULL) {
        *result = total;
    }
    return err;
}

/* ---- The drain's state ------------------------------------------------------ */

typedef struct pst_drain pst_drain;
typedef struct pst_part pst_part;

typedef struct {
    uint32_t batch_max_changes;
    uint32_t batch_max_ms;
    uint32_t routes_refresh_ms;
    uint32_t retry_max_ms;
    uint32_t poll_idle_ms;
    uint32_t poll_idle_max_ms;
    const char *manager_pub; /* "url,url" the managers publish the map at; NULL none */
} pst_drain_config;

/* One log_read: sent, answered (queued on done_reads by read_cb), landed by
 * the main thread (held, when it brought records), then consumed into
 * batches. */
typedef struct pst_read {
    pst_drain *drain;
    pst_part *part; /* owner from send until consumed or dropped */
    uint32_t gen;   /* part->gen at send: an older one is stale */
    uint64_t from_seq;
    tg_wire_space space; /* records: the decoder writes the reply's records there */
    /* Set by read_cb under drain->lock; the slot is then on done_reads
     * until the main thread takes it. */
    tg_err err;
    uint64_t map_epoch, log_head;
    uint32_t count;
    char why[TG_WIRE_STRING_BYTES_MAX + 1];
    /* Main thread. */
    bool held;             /* landed, its records waiting for batches (p->read) */
    uint32_t taken;        /* records already in a batch */
    struct pst_read *next; /* free list, or the done queue */
    tg_wire_log_record records[TG_WIRE_LOG_RECORDS_MAX];
} pst_read;

struct pst_part {
    pst_drain *drain;
    uint32_t partition_id;
    bool active; /* placed on a member with an address, and routed */
    bool seen;   /* in the last routes refresh */
    int64_t event_id;
    uint32_t first_seat, seat_count;
    char pu_name[TG_PU_NAME_BYTES];
    char rep_url[PST_URL_BYTES];
    /* Main thread. */
    uint32_t gen;       /* bumped when read-ahead records are dropped */
    uint64_t persisted; /* partition_offsets.last_seq as last committed or read */
    uint64_t read_seq;  /* from_seq of the next log_read */
    pst_read *read;     /* in flight, or answered and not yet consumed */
    int64_t poll_at_ns; /* earliest next log_read */
    uint32_t empty_reads; /* reads in a row that found it idle (poll_delay_ms) */
    int64_t chunk;      /* its chunk in the open batch, or -1 */
    uint64_t log_head;  /* the unit's, from its last answer */
    uint32_t failures;  /* log_reads failed in a row */
    bool unreachable, fenced, refused, behind_warned, ack_warned;
    uint64_t ack_want;    /* the persisted seq to tell the unit */
    uint64_t ack_last;    /* the last seq sent */
    int64_t ack_retry_ns; /* when to send ack_want again if not confirmed */
    /* Under drain->lock (ack_cb). */
    bool ack_inflight;
    uint64_t ack_sent, acked;    /* acked: what the unit routed to now confirmed */
    uint32_t route_gen, ack_gen; /* bumped at each move; the route the ack in flight went to */
    tg_err ack_err;
};

/* The open batch: records in arrival order, each tagged with its chunk. */
typedef struct {
    tg_wire_log_record *records;
    uint32_t *chunk_of;
    tg_wire_log_record *sorted; /* records grouped by chunk, at flush */
    uint32_t count, capacity;
    pst_chunk *chunks;
    pst_part **owners;
    uint32_t chunk_count;
    int64_t deadline_ns; /* 0 while empty */
    bool close_now;      /* a read could not join it (another epoch) */
} pst_batch;

struct pst_drain {
    pst_drain_config cfg;
    const char *conninfo;
    unsigned connect_timeout_s;
    PGconn *db;
    bool db_up, db_down_logged;
    uint32_t retry_delay_ms;
    int64_t retry_at_ns, refresh_at_ns, stats_at_ns;
    tg_client *client;
    tg_mapsub *sub; /* NULL without cfg.manager_pub */
    pst_part *parts;
    uint32_t part_count;
    uint16_t *part_index; /* partition id -> part index + 1 */
    uint32_t next_part;   /* round-robin start of the read scan */
    uint32_t next_fill;   /* round-robin start of the batch fill */
    pst_read *reads;
    pst_read *free_reads;
    pst_batch batch;
    /* Stats since the last line. */
    uint64_t stat_changes, stat_batches, stat_rejected;
    int64_t stat_since_ns;
    bool stat_quiet; /* the last line reported nothing to do */
    /* Under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pst_read *done_reads;
    uint32_t acks_inflight;
    bool wake;
    bool map_news; /* a newer map was published: read the routes at once */
};

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

static int64_t ms_ns(uint32_t ms)
{
    return (int64_t)ms * NS_PER_MS;
}

/* ---- Partitions --------------------------------------------------------------- */

static void read_free(pst_drain *d, pst_read *r)
{
    r->part = NULL;
    r->held = false;
    r->next = d->free_reads;
    d->free_reads = r;
}

/* Forgets what was read ahead of persisted and reads again after it.  A
 * read in flight (or answered but not yet taken from done_reads) stays the
 * part's until it lands, and is dropped then as stale. */
static void part_reset(pst_part *p, uint64_t persisted)
{
    p->gen++;
    p->persisted = persisted;
    p->read_seq = persisted + 1;
    if (p->read != NULL && p->read->held) {
        read_free(p->drain, p->read);
        p->read = NULL;
    }
}

static pst_part *part_get(pst_drain *d, uint32_t partition_id)
{
    uint16_t at = d->part_index[partition_id];
    if (at != 0) {
        return &d->parts[at - 1];
    }
    if (d->part_count == PST_DRAIN_PARTITIONS_MAX) {
        return NULL;
    }
    pst_part *p = &d->parts[d->part_count];
    *p = (pst_part){.drain = d, .partition_id = partition_id, .chunk = -1};
    d->part_index[partition_id] = (uint16_t)++d->part_count;
    return p;
}

typedef struct {
    uint32_t partition_id;
    int64_t event_id, first_seat, seat_count, epoch, last_seq;
    const char *pu_name, *rep_url;
} route_row;

static void part_deactivate(pst_drain *d, pst_part *p)
{
    tg_log_info("drain: partition %" PRIu32 " is no longer placed on a registered unit; "
                "not following it",
                p->partition_id);
    (void)tg_client_route(d->client, p->partition_id, NULL);
    p->active = false;
    part_reset(p, p->persisted);
}

/* Takes one row of the routes query: a new or moved partition is routed and
 * starts from its offset; with resync every partition does. */
static void part_route(pst_drain *d, const route_row *row, bool resync)
{
    pst_part *p = part_get(d, row->partition_id);
    if (p == NULL) {
        tg_log_warn("drain: more than %u partitions placed; partition %" PRIu32 " is not followed",
                    PST_DRAIN_PARTITIONS_MAX, row->partition_id);
        return;
    }
    p->seen = true;
    p->event_id = row->event_id;
    p->first_seat = (uint32_t)row->first_seat;
    p->seat_count = (uint32_t)row->seat_count;
    bool moved = !p->active || strcmp(p->rep_url, row->rep_url) != 0 ||
                 strcmp(p->pu_name, row->pu_name) != 0;
    if (moved && strlen(row->rep_url) >= PST_URL_BYTES) {
        tg_log_error("drain: partition %" PRIu32 ": address of %s is too long", row->partition_id,
                     row->pu_name);
        return;
    }
    if (moved && tg_client_route(d->client, row->partition_id, row->rep_url) != TG_OK) {
        tg_log_error("drain: partition %" PRIu32 ": cannot route to %s at %s", row->partition_id,
                     row->pu_name, row->rep_url);
        return;
    }
    if (moved) {
        snprintf(p->pu_name, sizeof(p->pu_name), "%s", row->pu_name);
        snprintf(p->rep_url, sizeof(p->rep_url), "%s", row->rep_url);
        tg_log_info("drain: following partition %" PRIu32 " on %s at %s from seq %" PRId64,
                    p->partition_id, p->pu_name, p->rep_url, row->last_seq + 1);
        p->active = true;
        p->unreachable = p->fenced = p->behind_warned = p->ack_warned = false;
        p->failures = 0;
        p->poll_at_ns = 0;
        /* The new unit was told nothing yet: what PostgreSQL holds is acked
         * to it even if no record comes after the move. */
        pthread_mutex_lock(&d->lock);
        p->route_gen++;
        p->acked = 0;
        pthread_mutex_unlock(&d->lock);
    }
    if (moved || resync) {
        part_reset(p, (uint64_t)row->last_seq);
        p->ack_want = (uint64_t)row->last_seq;
        p->ack_retry_ns = 0;
    }
}

static const char routes_sql[] =
    "SELECT g.partition_id, g.event_id, g.first_seat, g.seat_count, g.primary_pu, m.rep_url,"
    " COALESCE(o.epoch, 0), COALESCE(o.last_seq, 0)"
    " FROM grid_partitions g JOIN grid_members m ON m.pu_name = g.primary_pu"
    " LEFT JOIN partition_offsets o ON o.partition_id = g.partition_id"
    " WHERE m.rep_url IS NOT NULL ORDER BY g.partition_id";

static tg_err routes_refresh(pst_drain *d, bool resync)
{
    PGresult *res = NULL;
    tg_err err = pst_db_query(d->db, "read the partition map", routes_sql, 0, NULL, &res);
    if (err != TG_OK) {
        return err;
    }
    for (uint32_t i = 0; i < d->part_count; i++) {
        d->parts[i].seen = false;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        route_row row = {.pu_name = PQgetvalue(res, i, 4), .rep_url = PQgetvalue(res, i, 5)};
        int64_t id = 0;
        pst_db_parse_i64(PQgetvalue(res, i, 0), &id);
        pst_db_parse_i64(PQgetvalue(res, i, 1), &row.event_id);
        pst_db_parse_i64(PQgetvalue(res, i, 2), &row.first_seat);
        pst_db_parse_i64(PQgetvalue(res, i, 3), &row.seat_count);
        pst_db_parse_i64(PQgetvalue(res, i, 6), &row.epoch);
        pst_db_parse_i64(PQgetvalue(res, i, 7), &row.last_seq);
        row.partition_id = (uint32_t)id;
        if (id >= 0 && id <= (int64_t)TG_PARTITION_ID_MAX) {
            part_route(d, &row, resync);
        }
    }
    PQclear(res);
    for (uint32_t i = 0; i < d->part_count; i++) {
        if (d->parts[i].active && !d->parts[i].seen) {
            part_deactivate(d, &d->parts[i]);
        }
    }
    return TG_OK;
}

/* ---- Reads and acks (the callbacks run on nng's threads) ---------------- */

static void read_cb(void *arg, tg_err err, const tg_msg *reply)
{
    pst_read *r = arg;
    pst_drain *d = r->drain;
    if (err == TG_OK && reply->type != TG_WIRE_LOG_READ_OK) {
        err = TG_EPROTO;
    }
    pthread_mutex_lock(&d->lock);
    r->err = err;
    r->count = 0;
    r->why[0] = '\0';
    if (err == TG_OK) {
        r->map_epoch = reply->log_read_ok.map_epoch;
        r->log_head = reply->log_read_ok.log_head;
        r->count = reply->log_read_ok.record_count;
    } else if (reply != NULL && reply->type == TG_WIRE_ERROR) {
        snprintf(r->why, sizeof(r->why), "%s", reply->error.message);
    }
    r->next = d->done_reads;
    d->done_reads = r;
    d->wake = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static void ack_cb(void *arg, tg_err err, const tg_msg *reply)
{
    (void)reply;
    pst_part *p = arg;
    pst_drain *d = p->drain;
    pthread_mutex_lock(&d->lock);
    p->ack_inflight = false;
    p->ack_err = err;
    if (err == TG_OK && p->ack_gen == p->route_gen && p->ack_sent > p->acked) {
        p->acked = p->ack_sent; /* (an ack to the unit it moved from confirms nothing) */
    }
    d->acks_inflight--;
    d->wake = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

/* How long after a read that was not full p is read again: poll_idle_ms,
 * doubled for every read in a row that found the partition idle, up to
 * poll_idle_max_ms.  Every read is a round trip to the unit, on both
 * processes' threads: five idle partitions read every 5 ms cost 17 % of a
 * core between the persister and the unit, on cores the seat path shares.
 * A partition that sells is read every poll_idle_ms again from its first
 * record on; the first record after a quiet spell waits for
 * poll_idle_max_ms at most. */
static uint32_t poll_delay_ms(const pst_drain *d, const pst_part *p)
{
    uint32_t delay = d->cfg.poll_idle_ms;
    for (uint32_t k = 1; k < p->empty_reads && delay < d->cfg.poll_idle_max_ms; k++) {
        delay *= 2;
    }
    return delay < d->cfg.poll_idle_max_ms ? delay : d->cfg.poll_idle_max_ms;
}

static void read_failed(pst_drain *d, pst_part *p, const pst_read *r, int64_t now);

/* Sends one log_read for p (a free slot is at hand); max 0 only asks for
 * the unit's log head. */
static void read_send(pst_drain *d, pst_part *p, uint32_t max)
{
    pst_read *r = d->free_reads;
    tg_msg req = {.type = TG_WIRE_LOG_READ};
    req.log_read.partition_id = p->partition_id;
    req.log_read.from_seq = p->read_seq;
    req.log_read.max = max;
    d->free_reads = r->next;
    r->part = p;
    r->gen = p->gen;
    r->from_seq = p->read_seq;
    r->taken = 0;
    r->held = false;
    p->read = r;
    tg_err err = tg_client_send(d->client, p->partition_id, &req, PST_DRAIN_REQUEST_TIMEOUT_MS,
                                &r->space, read_cb, r);
    if (err == TG_EBUSY) {
        p->poll_at_ns = tg_mono_ns() + ms_ns(d->cfg.poll_idle_ms); /* every slot in flight */
    } else if (err != TG_OK) {
        /* Refused before it went (the unit's connection closed): a failed
         * read, logged once and backed off like one that failed later. */
        r->err = err;
        r->why[0] = '\0';
        read_failed(d, p, r, tg_mono_ns());
    }
    if (err != TG_OK) {
        p->read = NULL;
        read_free(d, r);
    }
}

/* Sends the reads that are due; returns the earliest time one will be.
 * While PostgreSQL is down (probe) the reads carry no records: they only
 * keep the units' log heads, and so the lag, current. */
static int64_t reads_send(pst_drain *d, int64_t now, bool probe)
{
    int64_t next = now + ms_ns(LOOP_WAIT_MAX_MS);
    uint32_t n = d->part_count;
    for (uint32_t k = 0; k < n; k++) {
        pst_part *p = &d->parts[(d->next_part + k) % n];
        if (!p->active || p->read != NULL) {
            continue;
        }
        if (p->poll_at_ns > now) {
            next = p->poll_at_ns < next ? p->poll_at_ns : next;
            continue;
        }
        if (d->free_reads == NULL) {
            d->next_part = (d->next_part + k) % n; /* fairness: start here next time */
            break;
        }
        read_send(d, p, probe ? 0 : TG_WIRE_LOG_RECORDS_MAX);
    }
    return next;
}

static void ack_send(pst_drain *d, pst_part *p, int64_t now)
{
    tg_msg req = {.type = TG_WIRE_LOG_ACK};
    req.log_ack.partition_id = p->partition_id;
    req.log_ack.seq = p->ack_want;
    pthread_mutex_lock(&d->lock);
    bool busy = p->ack_inflight || d->acks_inflight >= PST_DRAIN_ACKS_MAX;
    tg_err last = p->ack_err;
    if (!busy) {
        p->ack_inflight = true;
        p->ack_sent = p->ack_want;
        p->ack_gen = p->route_gen;
        d->acks_inflight++;
    }
    pthread_mutex_unlock(&d->lock);
    if (busy) {
        return;
    }
    if (last == TG_EINVAL && !p->ack_warned) {
        tg_log_warn("drain: partition %" PRIu32 ": %s refused log_ack: its log is behind what "
                    "PostgreSQL holds (was the partition re-created without replay?)",
                    p->partition_id, p->pu_name);
        p->ack_warned = true;
    }
    p->ack_last = p->ack_want;
    p->ack_retry_ns = now + ms_ns(1000);
    if (tg_client_send(d->client, p->partition_id, &req, PST_DRAIN_REQUEST_TIMEOUT_MS, NULL, ack_cb,
                       p) != TG_OK) {
        pthread_mutex_lock(&d->lock);
        p->ack_inflight = false;
        d->acks_inflight--;
        pthread_mutex_unlock(&d->lock);
    }
}

/* Tells each unit what PostgreSQL now holds (again after a second when an
 * ack got lost).  Never for a fenced partition. */
static void acks_send(pst_drain *d, int64_t now)
{
    for (uint32_t i = 0; i < d->part_count; i++) {
        pst_part *p = &d->parts[i];
        if (!p->active || p->fenced || p->ack_want == 0) {
            continue;
        }
        if (p->ack_last == p->ack_want && now < p->ack_retry_ns) {
            continue; /* sent, and not yet time to check */
        }
        pthread_mutex_lock(&d->lock);
        bool due = !p->ack_inflight && p->acked < p->ack_want;
        pthread_mutex_unlock(&d->lock);
        if (due) {
            ack_send(d, p, now);
        } else {
            p->ack_retry_ns = now + ms_ns(1000);
        }
    }
}

static void read_failed(pst_drain *d, pst_part *p, const pst_read *r, int64_t now)
{
    uint32_t shift = p->failures < 6 ? p->failures : 6;
    uint64_t delay_ms = (uint64_t)PST_DRAIN_RETRY_MIN_MS << shift;
    delay_ms = delay_ms < d->cfg.retry_max_ms ? delay_ms : d->cfg.retry_max_ms;
    p->failures++;
    p->poll_at_ns = now + (int64_t)delay_ms * NS_PER_MS;
    if (!p->unreachable) {
        tg_log_error("drain: partition %" PRIu32 ": log_read from %s at %s failed: %s%s%s; "
                     "retrying, the other partitions drain on",
                     p->partition_id, p->pu_name, p->rep_url, tg_strerror(r->err),
                     r->why[0] ? ": " : "", r->why);
        p->unreachable = true;
    }
}

/* Files one answered read: stale ones are dropped, failures back off,
 * records wait in the slot for the batch. */
static void read_land(pst_drain *d, pst_read *r, int64_t now)
{
    pst_part *p = r->part;
    p->read = NULL;
    if (r->gen != p->gen || !p->active) {
        read_free(d, r);
        return;
    }
    if (r->err != TG_OK) {
        read_failed(d, p, r, now);
        read_free(d, r);
        return;
    }
    if (p->unreachable) {
        tg_log_info("drain: partition %" PRIu32 ": %s answers again", p->partition_id, p->pu_name);
        p->unreachable = false;
    }
    p->failures = 0;
    p->log_head = r->log_head;
    if (r->log_head < p->persisted && !p->behind_warned) {
        tg_log_warn("drain: partition %" PRIu32 ": %s's log ends at seq %" PRIu64 " but PostgreSQL "
                    "holds up to %" PRIu64 " (re-created without replay?)",
                    p->partition_id, p->pu_name, r->log_head, p->persisted);
        p->behind_warned = true;
    }
    bool full = r->count == TG_WIRE_LOG_RECORDS_MAX;
    /* Idle: nothing came, and the unit logged nothing past it (records
     * its backups have not applied yet are on their way: no backing off). */
    bool idle = r->count == 0 && r->log_head < p->read_seq;
    p->empty_reads = idle && p->empty_reads < UINT32_MAX ? p->empty_reads + 1 : 0;
    p->poll_at_ns = full ? now : now + ms_ns(d->db_up ? poll_delay_ms(d, p) : STATS_INTERVAL_MS);
    if (r->count == 0 || !d->db_up) {
        read_free(d, r);
        return;
    }
    p->read = r; /* its records wait here for the batch */
    r->held = true;
    p->read_seq = r->records[r->count - 1].seq + 1;
}

static void reads_collect(pst_drain *d, int64_t now)
{
    pthread_mutex_lock(&d->lock);
    pst_read *list = d->done_reads;
    d->done_reads = NULL;
    d->wake = false;
    pthread_mutex_unlock(&d->lock);
    while (list != NULL) {
        pst_read *r = list;
        list = r->next;
        read_land(d, r, now);
    }
}

/* ---- Batching ---------------------------------------------------------------- */

static void batch_clear(pst_drain *d)
{
    pst_batch *b = &d->batch;
    for (uint32_t i = 0; i < b->chunk_count; i++) {
        b->owners[i]->chunk = -1;
    }
    b->count = b->chunk_count = 0;
    b->deadline_ns = 0;
    b->close_now = false;
}

/* Moves what p's answered read holds into the batch, as far as it has room.
 * Records of another epoch than p's chunk wait for the next batch. */
static void batch_take(pst_drain *d, pst_part *p, int64_t now)
{
    pst_batch *b = &d->batch;
    pst_read *r = p->read;
    if (p->chunk < 0) {
        pst_chunk *c = &b->chunks[b->chunk_count];
        *c = (pst_chunk){.partition_id = p->partition_id,
                         .event_id = p->event_id,
                         .first_seat = p->first_seat,
                         .seat_count = p->seat_count,
                         .map_epoch = r->map_epoch,
                         .base_seq = p->persisted};
        b->owners[b->chunk_count] = p;
        p->chunk = b->chunk_count++;
    } else if (b->chunks[p->chunk].map_epoch != r->map_epoch) {
        b->close_now = true;
        return;
    }
    uint32_t room = b->capacity - b->count, left = r->count - r->taken;
    uint32_t n = left < room ? left : room;
    for (uint32_t i = 0; i < n; i++) {
        b->records[b->count] = r->records[r->taken + i];
        b->chunk_of[b->count++] = (uint32_t)p->chunk;
    }
    b->chunks[p->chunk].count += n;
    r->taken += n;
    if (b->deadline_ns == 0 && n > 0) {
        b->deadline_ns = now + ms_ns(d->cfg.batch_max_ms);
    }
    if (r->taken == r->count) {
        p->read = NULL;
        read_free(d, r);
    }
}

/* Takes answered reads into the batch, starting one partition further each
 * time so that a busy partition cannot keep the others out of full batches. */
static void batch_fill(pst_drain *d, int64_t now)
{
    uint32_t n = d->part_count;
    for (uint32_t k = 0; k < n && d->batch.count < d->batch.capacity && !d->batch.close_now; k++) {
        pst_part *p = &d->parts[(d->next_fill + k) % n];
        if (p->read != NULL && p->read->held) {
            batch_take(d, p, now);
        }
    }
    d->next_fill = n != 0 ? (d->next_fill + 1) % n : 0;
}

/* Groups the records by chunk (stable) and points each chunk at its own. */
static void batch_group(pst_batch *b)
{
    uint32_t at = 0;
    for (uint32_t c = 0; c < b->chunk_count; c++) {
        b->chunks[c].records = b->sorted + at;
        at += b->chunks[c].count;
        b->chunks[c].count = 0;
    }
    for (uint32_t i = 0; i < b->count; i++) {
        pst_chunk *c = &b->chunks[b->chunk_of[i]];
        ((tg_wire_log_record *)c->records)[c->count++] = b->records[i];
    }
}

/* ---- Flushing ------------------------------------------------------------------ */

static void db_lost(pst_drain *d, int64_t now)
{
    pst_db_close(d->db);
    d->db = NULL;
    if (d->db_up || !d->db_down_logged) {
        tg_log_error("PostgreSQL unreachable, retrying (every %u..%u ms; nothing is acked "
                     "meanwhile)",
                     PST_DRAIN_RETRY_MIN_MS, d->cfg.retry_max_ms);
        d->db_down_logged = true;
    }
    d->db_up = false;
    batch_clear(d);
    for (uint32_t i = 0; i < d->part_count; i++) {
        part_reset(&d->parts[i], d->parts[i].persisted);
    }
    d->retry_delay_ms = PST_DRAIN_RETRY_MIN_MS;
    d->retry_at_ns = now + ms_ns(d->retry_delay_ms);
}

static void chunk_done(pst_drain *d, pst_part *p, const pst_chunk *c, int64_t now)
{
    if (c->outcome == PST_CHUNK_FENCED) {
        if (!p->fenced) {
            tg_log_error("drain: partition %" PRIu32 ": %s serves epoch %" PRIu64 " but epoch "
                         "%" PRIu64 " is recorded: refusing its records (a deposed primary?), "
                         "not acking",
                         p->partition_id, p->pu_name, c->map_epoch, c->epoch);
            p->fenced = true;
        }
        part_reset(p, c->last_seq);
        p->poll_at_ns = now + ms_ns(d->cfg.routes_refresh_ms);
        return;
    }
    if (c->outcome == PST_CHUNK_BEHIND) {
        tg_log_warn("drain: partition %" PRIu32 ": partition_offsets moved back to seq %" PRIu64
                    "; reading again from there",
                    p->partition_id, c->last_seq);
        part_reset(p, c->last_seq);
        return;
    }
    if (p->fenced) {
        tg_log_info("drain: partition %" PRIu32 ": epoch %" PRIu64 " accepted again",
                    p->partition_id, c->map_epoch);
        p->fenced = false;
    }
    if (p->refused) {
        tg_log_info("drain: partition %" PRIu32 ": PostgreSQL takes its records again",
                    p->partition_id);
        p->refused = false;
    }
    p->persisted = c->last_seq;
    p->ack_want = c->last_seq;
    d->stat_changes += c->applied + c->rejected;
    d->stat_rejected += c->rejected;
}

/* A refused batch is tried again one partition at a time; a partition that
 * PostgreSQL refuses on its own is parked for retry_max_ms. */
static void batch_retry_alone(pst_drain *d, int64_t now)
{
    pst_batch *b = &d->batch;
    for (uint32_t i = 0; i < b->chunk_count && d->db_up; i++) {
        pst_chunk *c = &b->chunks[i];
        pst_part *p = b->owners[i];
        tg_err err = pst_apply_batch(d->db, c, 1, NULL);
        if (err == TG_OK) {
            chunk_done(d, p, c, now);
        } else if (pst_db_connection_lost(d->db)) {
            db_lost(d, now);
        } else {
            if (!p->refused) {
                tg_log_error("drain: partition %" PRIu32 ": PostgreSQL refused its records (see "
                             "the line above); retrying every %u ms, the others drain on",
                             p->partition_id, d->cfg.retry_max_ms);
            }
            p->refused = true;
            part_reset(p, p->persisted);
            p->poll_at_ns = now + ms_ns(d->cfg.retry_max_ms);
        }
    }
}

static void batch_flush(pst_drain *d)
{
    pst_batch *b = &d->batch;
    if (b->chunk_count == 0) {
        batch_clear(d);
        return;
    }
    batch_group(b);
    tg_err err = pst_apply_batch(d->db, b->chunks, b->chunk_count, NULL);
    int64_t now = tg_mono_ns();
    if (err == TG_OK) {
        for (uint32_t i = 0; i < b->chunk_count; i++) {
            chunk_done(d, b->owners[i], &b->chunks[i], now);
        }
        d->stat_batches++;
    } else if (pst_db_connection_lost(d->db)) {
        db_lost(d, now);
    } else {
        batch_retry_alone(d, now);
    }
    batch_clear(d);
}

static bool batch_due(const pst_drain *d, int64_t now)
{
    const pst_batch *b = &d->batch;
    return b->chunk_count > 0 && (b->count >= b->capacity || b->close_now ||
                                  (b->deadline_ns != 0 && now >= b->deadline_ns));
}

/* ---- PostgreSQL comes and goes ----------------------------------------------- */

static bool db_ping(const pst_drain *d)
{
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%u",
             d->connect_timeout_s != 0 ? d->connect_timeout_s : PST_DB_CONNECT_TIMEOUT_S);
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const values[] = {timeout, d->conninfo, NULL};
    return PQpingParams(keys, values, 1) == PQPING_OK;
}

static void db_backoff(pst_drain *d, int64_t now)
{
    uint32_t next = d->retry_delay_ms * 2;
    d->retry_delay_ms = next < d->cfg.retry_max_ms ? next : d->cfg.retry_max_ms;
    d->retry_at_ns = now + ms_ns(d->retry_delay_ms);
    if (!d->db_down_logged) {
        tg_log_error("PostgreSQL unreachable, retrying (every %u..%u ms; nothing is acked "
                     "meanwhile)",
                     PST_DRAIN_RETRY_MIN_MS, d->cfg.retry_max_ms);
        d->db_down_logged = true;
    }
}

/* Connects when the retry is due: 0 on success or when it should wait,
 * TG_EXIT_FAILURE when the database is reachable but unusable (no schema). */
static int db_retry(pst_drain *d, int64_t now)
{
    if (now < d->retry_at_ns) {
        return 0;
    }
    if (!db_ping(d) || pst_db_connect(d->conninfo, d->connect_timeout_s, &d->db) != TG_OK) {
        db_backoff(d, now);
        return 0;
    }
    tg_err err = pst_apply_setup(d->db);
    if (err == TG_OK) {
        err = routes_refresh(d, true);
    }
    if (err != TG_OK && !pst_db_connection_lost(d->db)) {
        tg_log_error("drain: the database is not usable (is the schema there? run "
                     "`tixgrid-persister migrate`)");
        return TG_EXIT_FAILURE;
    }
    if (err != TG_OK) {
        pst_db_close(d->db);
        d->db = NULL;
        db_backoff(d, now);
        return 0;
    }
    if (d->db_down_logged) {
        tg_log_info("PostgreSQL reachable again; resuming from partition_offsets");
        d->db_down_logged = false;
    }
    d->db_up = true;
    d->retry_delay_ms = PST_DRAIN_RETRY_MIN_MS;
    for (uint32_t i = 0; i < d->part_count; i++) {
        d->parts[i].poll_at_ns = 0; /* read at once, whatever the probes said */
    }
    d->refresh_at_ns = now + ms_ns(d->cfg.routes_refresh_ms);
    return 0;
}

/* ---- Stats ------------------------------------------------------------------------ */

static void stats_log(pst_drain *d, int64_t now)
{
    if (now < d->stats_at_ns) {
        return;
    }
    char lags[STATS_LAG_LIST_MAX * 40 + 32];
    size_t at = 0;
    uint64_t total = 0, listed = 0;
    for (uint32_t i = 0; i < d->part_count; i++) {
        const pst_part *p = &d->parts[i];
        uint64_t lag = p->active && p->log_head > p->persisted ? p->log_head - p->persisted : 0;
        total += lag;
        if (p->active && listed++ < STATS_LAG_LIST_MAX && at < sizeof(lags)) {
            at += (size_t)snprintf(lags + at, sizeof(lags) - at, " p%" PRIu32 "=%" PRIu64,
                                   p->partition_id, lag);
        }
    }
    if (listed > STATS_LAG_LIST_MAX && at < sizeof(lags)) {
        snprintf(lags + at, sizeof(lags) - at, " (+%" PRIu64 " more)", listed - STATS_LAG_LIST_MAX);
    }
    bool quiet = d->stat_changes == 0 && total == 0;
    if (!quiet || !d->stat_quiet) {
        double secs = (double)(now - d->stat_since_ns) / 1e9;
        tg_log_info("drain: %.0f changes/s, %" PRIu64 " batches, %" PRIu64 " rejected, "
                    "lag %" PRIu64 " total:%s",
                    secs > 0 ? (double)d->stat_changes / secs : 0.0, d->stat_batches,
                    d->stat_rejected, total, at > 0 ? lags : " none");
    }
    d->stat_quiet = quiet;
    d->stat_changes = d->stat_batches = d->stat_rejected = 0;
    d->stat_since_ns = now;
    d->stats_at_ns = now + ms_ns(STATS_INTERVAL_MS);
}

/* ---- The loop ---------------------------------------------------------------------- */

static void drain_wait(pst_drain *d, int64_t until_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(until_ns / 1000000000),
                          .tv_nsec = (long)(until_ns % 1000000000)};
    pthread_mutex_lock(&d->lock);
    while (!d->wake && stop_signal == 0) {
        if (pthread_cond_timedwait(&d->cond, &d->lock, &ts) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
}

static int64_t min_ns(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* On nng's thread: the manager published a newer map.  The manager writes
 * a map to PostgreSQL before it publishes it, so reading the routes now
 * finds it; the map itself lacks what the drain needs besides the primary
 * (seat ranges, the recorded offsets and epochs). */
static void map_published_cb(void *arg, const tg_msg *map)
{
    (void)map;
    pst_drain *d = arg;
    pthread_mutex_lock(&d->lock);
    d->map_news = d->wake = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static bool map_news_take(pst_drain *d)
{
    pthread_mutex_lock(&d->lock);
    bool news = d->map_news;
    d->map_news = false;
    pthread_mutex_unlock(&d->lock);
    return news;
}

/* One turn: reconnect or refresh, land answers, batch, flush, send. */
static int drain_turn(pst_drain *d)
{
    int64_t now = tg_mono_ns();
    if (!d->db_up) {
        int code = db_retry(d, now);
        if (code != 0) {
            return code;
        }
    }
    if (d->db_up && (map_news_take(d) || now >= d->refresh_at_ns)) {
        /* A refused query (logged) keeps the routes it had until the next. */
        if (routes_refresh(d, false) != TG_OK && pst_db_connection_lost(d->db)) {
            db_lost(d, now);
        }
        d->refresh_at_ns = now + ms_ns(d->cfg.routes_refresh_ms);
    }
    reads_collect(d, now);
    int64_t wake = now + ms_ns(LOOP_WAIT_MAX_MS);
    if (d->db_up) {
        batch_fill(d, now);
        if (batch_due(d, now)) {
            batch_flush(d);
            now = tg_mono_ns();
        }
        if (d->db_up) {
            wake = reads_send(d, now, false);
            acks_send(d, now);
        }
    } else {
        wake = min_ns(reads_send(d, now, true), d->retry_at_ns);
    }
    stats_log(d, now);
    if (d->batch.deadline_ns != 0) {
        wake = min_ns(wake, d->batch.deadline_ns);
    }
    wake = min_ns(min_ns(wake, d->stats_at_ns), d->db_up ? d->refresh_at_ns : wake);
    drain_wait(d, wake);
    return 0;
}

/* Finishes the batch at hand (no new reads), then waits for its acks. */
static void drain_finish(pst_drain *d)
{
    int64_t now = tg_mono_ns();
    reads_collect(d, now);
    if (d->db_up) {
        batch_fill(d, now);
        batch_flush(d);
    }
    if (d->db_up) {
        acks_send(d, tg_mono_ns());
    }
    int64_t until = tg_mono_ns() + ms_ns(STOP_ACK_WAIT_MS);
    for (;;) {
        pthread_mutex_lock(&d->lock);
        uint32_t inflight = d->acks_inflight;
        d->wake = false;
        pthread_mutex_unlock(&d->lock);
        now = tg_mono_ns();
        if (inflight == 0 || now >= until) {
            break;
        }
        struct timespec ts = {.tv_sec = (time_t)((now + NS_PER_MS * 10) / 1000000000),
                              .tv_nsec = (long)((now + NS_PER_MS * 10) % 1000000000)};
        pthread_mutex_lock(&d->lock);
        pthread_cond_timedwait(&d->cond, &d->lock, &ts);
        pthread_mutex_unlock(&d->lock);
    }
}

/* ---- Start and stop -------------------------------------------------------------- */

static tg_err drain_alloc(pst_drain *d)
{
    pst_batch *b = &d->batch;
    b->capacity = d->cfg.batch_max_changes;
    b->records = calloc(b->capacity, sizeof(*b->records));
    b->sorted = calloc(b->capacity, sizeof(*b->sorted));
    b->chunk_of = calloc(b->capacity, sizeof(*b->chunk_of));
    b->chunks = calloc(PST_DRAIN_PARTITIONS_MAX, sizeof(*b->chunks));
    b->owners = calloc(PST_DRAIN_PARTITIONS_MAX, sizeof(*b->owners));
    d->parts = calloc(PST_DRAIN_PARTITIONS_MAX, sizeof(*d->parts));
    d->part_index = calloc((size_t)TG_PARTITION_ID_MAX + 1, sizeof(*d->part_index));
    d->reads = calloc(PST_DRAIN_READS_MAX, sizeof(*d->reads));
    if (b->records == NULL || b->sorted == NULL || b->chunk_of == NULL || b->chunks == NULL ||
        b->owners == NULL || d->parts == NULL || d->part_index == NULL || d->reads == NULL) {
        return TG_ENOMEM;
    }
    for (uint32_t i = 0; i < PST_DRAIN_READS_MAX; i++) {
        pst_read *r = &d->reads[i];
        r->drain = d;
        r->space.records = r->records;
        r->space.records_capacity = TG_WIRE_LOG_RECORDS_MAX;
        read_free(d, r);
    }
    tg_client_config cc = {.inflight_max = PST_DRAIN_READS_MAX + PST_DRAIN_ACKS_MAX};
    return tg_client_open(&cc, &d->client);
}

static void drain_free(pst_drain *d)
{
    free(d->batch.records);
    free(d->batch.sorted);
    free(d->batch.chunk_of);
    free(d->batch.chunks);
    free(d->batch.owners);
    free(d->parts);
    free(d->part_index);
    free(d->reads);
    pst_db_close(d->db);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

typedef struct {
    tg_client *client;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} client_closer;

static void *client_close_main(void *arg)
{
    client_closer *k = arg;
    tg_client_close(k->client);
    pthread_mutex_lock(&k->lock);
    k->done = true;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

/* Closes the client within CLIENT_CLOSE_WAIT_MS.  nng 1.5.2 can hang in
 * nng_close while it redials a unit that went away (fixed in nng 1.9.0);
 * then the client is abandoned (false) and the process exits without it. */
static bool client_close_bounded(tg_client *c)
{
    static client_closer k; /* static: reachable if abandoned */
    k = (client_closer){.client = c};
    pthread_mutex_init(&k.lock, NULL);
    pthread_cond_init(&k.cond, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, client_close_main, &k) != 0) {
        tg_client_close(c);
        return true;
    }
    pthread_detach(t);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CLIENT_CLOSE_WAIT_MS / 1000;
    pthread_mutex_lock(&k.lock);
    while (!k.done && pthread_cond_timedwait(&k.cond, &k.lock, &until) == 0) {
    }
    bool done = k.done;
    pthread_mutex_unlock(&k.lock);
    if (!done) {
        tg_log_warn("drain: closing the connections to the units timed out; exiting without");
    }
    return done;
}

static pst_drain *drain_new(const pst_context *ctx, const pst_drain_config *cfg)
{
    pst_drain *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }
    d->cfg = *cfg;
    d->conninfo = ctx->conninfo;
    d->connect_timeout_s = ctx->connect_timeout_s;
    d->retry_delay_ms = PST_DRAIN_RETRY_MIN_MS;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&d->lock, NULL);
    return d;
}

static void signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* A drain whose client could not be closed: kept reachable, never freed
 * (nng's threads may still touch it while the process exits). */
static pst_drain *abandoned_drain;

static int drain_run(const pst_context *ctx, const pst_drain_config *cfg)
{
    pst_drain *d = drain_new(ctx, cfg);
    if (d == NULL || drain_alloc(d) != TG_OK) {
        tg_log_error("drain: out of memory");
        if (d != NULL) {
            drain_free(d);
        }
        return TG_EXIT_FAILURE;
    }
    if (cfg->manager_pub != NULL &&
        tg_mapsub_open(cfg->manager_pub, map_published_cb, d, &d->sub) != TG_OK) {
        tg_log_error("drain: cannot follow the map published at %s", cfg->manager_pub);
        tg_client_close(d->client);
        drain_free(d);
        return TG_EXIT_FAILURE;
    }
    signals_install();
    tg_log_info("drain: starting (batches of up to %u changes or %u ms, routes every %u ms, "
                "retries up to %u ms apart)",
                cfg->batch_max_changes, cfg->batch_max_ms, cfg->routes_refresh_ms,
                cfg->retry_max_ms);
    int64_t now = tg_mono_ns();
    d->stat_since_ns = now;
    d->stats_at_ns = now + ms_ns(STATS_INTERVAL_MS);
    int code = 0;
    while (code == 0 && stop_signal == 0) {
        code = drain_turn(d);
    }
    tg_mapsub_close(d->sub);
    if (code == 0) {
        tg_log_info("drain: signal %d: finishing the batch at hand", (int)stop_signal);
        drain_finish(d);
    }
    bool closed = client_close_bounded(d->client);
    tg_log_info("drain: stopped");
    if (!closed) {
        abandoned_drain = d;
        return code;
    }
    drain_free(d);
    return code;
}

/* ---- `run` ------------------------------------------------------------------------- */

typedef struct {
    const char *flag;
    const char *env;
    uint32_t min, max;
    size_t offset;
} run_flag;

static const run_flag run_flags[] = {
    {"--batch-max-changes", "TIXGRID_PERSISTER_BATCH_MAX_CHANGES", 1, PST_DRAIN_BATCH_CHANGES_MAX,
     offsetof(pst_drain_config, batch_max_changes)},
    {"--batch-max-ms", "TIXGRID_PERSISTER_BATCH_MAX_MS", 1, 60000,
     offsetof(pst_drain_config, batch_max_ms)},
    {"--routes-refresh-ms", "TIXGRID_PERSISTER_ROUTES_REFRESH_MS", 10, 3600000,
     offsetof(pst_drain_config, routes_refresh_ms)},
    {"--retry-max-ms", "TIXGRID_PERSISTER_RETRY_MAX_MS", PST_DRAIN_RETRY_MIN_MS, 600000,
     offsetof(pst_drain_config, retry_max_ms)},
    {"--poll-idle-ms", "TIXGRID_PERSISTER_POLL_IDLE_MS", 1, 10000,
     offsetof(pst_drain_config, poll_idle_ms)},
    {"--poll-idle-max-ms", "TIXGRID_PERSISTER_POLL_IDLE_MAX_MS", 1, 10000,
     offsetof(pst_drain_config, poll_idle_max_ms)},
};
#define RUN_FLAG_COUNT (sizeof(run_flags) / sizeof(run_flags[0]))

static int run_flag_set(pst_drain_config *cfg, const run_flag *f, const char *value)
{
    uint64_t v;
    if (value == NULL || tg_parse_u64(value, f->min, f->max, &v) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "run: %s must be a whole number from %" PRIu32 " to %" PRIu32,
                                  f->flag, f->min, f->max);
    }
    memcpy((char *)cfg + f->offset, &(uint32_t){(uint32_t)v}, sizeof(uint32_t));
    return 0;
}

/* "--manager-pub URL[,URL]" or "--manager-pub=..." at argv[*i]; moves *i
 * past its value.  The list is checked once all flags are read. */
static bool manager_pub_flag(int argc, char **argv, int *i, const char **out)
{
    static const char flag[] = "--manager-pub";
    size_t len = sizeof(flag) - 1;
    if (strncmp(argv[*i], flag, len) != 0 || (argv[*i][len] != '\0' && argv[*i][len] != '=')) {
        return false;
    }
    *out = argv[*i][len] == '=' ? argv[*i] + len + 1 : (*i + 1 < argc ? argv[++*i] : "");
    return true;
}

/* Reads the run flags ("--flag N" or "--flag=N"; TIXGRID_PERSISTER_* first). */
static int run_parse(int argc, char **argv, pst_drain_config *cfg)
{
    *cfg = (pst_drain_config){.batch_max_changes = PST_DRAIN_BATCH_CHANGES_DEFAULT,
                              .batch_max_ms = PST_DRAIN_BATCH_MS_DEFAULT,
                              .routes_refresh_ms = PST_DRAIN_ROUTES_REFRESH_MS_DEFAULT,
                              .retry_max_ms = PST_DRAIN_RETRY_MAX_MS_DEFAULT,
                              .poll_idle_ms = PST_DRAIN_POLL_IDLE_MS_DEFAULT,
                              .poll_idle_max_ms = PST_DRAIN_POLL_IDLE_MAX_MS_DEFAULT};
    cfg->manager_pub = tg_env("TIXGRID_MANAGER_PUB", NULL);
    for (size_t f = 0; f < RUN_FLAG_COUNT; f++) {
        const char *env = tg_env(run_flags[f].env, NULL);
        if (env != NULL && run_flag_set(cfg, &run_flags[f], env) != 0) {
            return TG_EXIT_USAGE;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (manager_pub_flag(argc, argv, &i, &cfg->manager_pub)) {
            continue;
        }
        const run_flag *f = NULL;
        const char *value = NULL;
        for (size_t k = 0; k < RUN_FLAG_COUNT && f == NULL; k++) {
            size_t len = strlen(run_flags[k].flag);
            if (strncmp(argv[i], run_flags[k].flag, len) == 0 &&
                (argv[i][len] == '\0' || argv[i][len] == '=')) {
                f = &run_flags[k];
                value = argv[i][len] == '=' ? argv[i] + len + 1 : (i + 1 < argc ? argv[++i] : NULL);
            }
        }
        if (f == NULL) {
            return tg_cli_usage_error(PST_PROGRAM, "run: unknown %s '%s'",
                                      argv[i][0] == '-' ? "option" : "argument", argv[i]);
        }
        if (run_flag_set(cfg, f, value) != 0) {
            return TG_EXIT_USAGE;
        }
    }
    if (cfg->poll_idle_max_ms < cfg->poll_idle_ms) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "run: --poll-idle-max-ms (%" PRIu32 ") must be at least "
                                  "--poll-idle-ms (%" PRIu32 ")",
                                  cfg->poll_idle_max_ms, cfg->poll_idle_ms);
    }
    if (cfg->manager_pub != NULL && tg_mapsub_urls_check(cfg->manager_pub) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "run: --manager-pub / TIXGRID_MANAGER_PUB must be 1..%u nng "
                                  "addresses separated by commas, got '%s'",
                                  TG_GRID_MANAGERS_MAX, cfg->manager_pub);
    }
    return 0;
}

int pst_cmd_run(pst_context *ctx, int argc, char **argv)
{
    pst_drain_config cfg;
    int code = run_parse(argc, argv, &cfg);
    if (code != 0) {
        return code;
    }
    char why[PST_DB_ERROR_BYTES];
    if (ctx->conninfo == NULL || ctx->conninfo[0] == '\0') {
        return tg_cli_usage_error(PST_PROGRAM, "run needs a database: give --db CONNINFO or set "
                                               "TIXGRID_DB");
    }
    if (pst_db_conninfo_check(ctx->conninfo, why, sizeof(why)) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "--db / TIXGRID_DB is not a libpq connection "
                                  "string: %s",
                                  why);
    }
    return drain_run(ctx, &cfg);
}

/* ---- `pu-register` and `place` ----------------------------------------------------- */

/* "scheme://address": what grid_members accepts and nng can dial. */
static bool url_valid(const char *url)
{
    return tg_url_valid(url) && strlen(url) < PST_URL_BYTES;
}

typedef struct {
    const char *name, *rep_url, *pub_url, *zone;
} register_args;

static int register_parse(int argc, char **argv, register_args *a)
{
    const char *pos[3] = {NULL, NULL, NULL};
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--zone") == 0 && i + 1 < argc) {
            a->zone = argv[++i];
        } else if (strncmp(argv[i], "--zone=", 7) == 0) {
            a->zone = argv[i] + 7;
        } else if (strncmp(argv[i], "--", 2) == 0 || n == 3) {
            return tg_cli_usage_error(PST_PROGRAM,
                                      "usage: %s pu-register NAME REP_URL [PUB_URL] "
                                      "[--zone ZONE]",
                                      PST_PROGRAM);
        } else {
            pos[n++] = argv[i];
        }
    }
    if (n < 2) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "usage: %s pu-register NAME REP_URL [PUB_URL] "
                                  "[--zone ZONE]",
                                  PST_PROGRAM);
    }
    *a = (register_args){pos[0], pos[1], pos[2], a->zone};
    if (!tg_name_valid(a->name)) {
        return tg_cli_usage_error(PST_PROGRAM, "pu-register: NAME must be 1..47 characters of "
                                               "[A-Za-z0-9._-]");
    }
    if (!url_valid(a->rep_url) || (a->pub_url != NULL && !url_valid(a->pub_url))) {
        return tg_cli_usage_error(PST_PROGRAM, "pu-register: addresses look like "
                                               "ipc:///tmp/pu1.rep or tcp://10.0.0.7:7101 "
                                               "(at most 255 bytes)");
    }
    if (a->zone != NULL && (a->zone[0] == '\0' || strlen(a->zone) > 63)) {
        return tg_cli_usage_error(PST_PROGRAM, "pu-register: --zone must be 1..63 bytes");
    }
    return 0;
}

int pst_cmd_pu_register(pst_context *ctx, int argc, char **argv)
{
    register_args a = {0};
    int code = register_parse(argc, argv, &a);
    if (code != 0 || (code = pst_context_connect(ctx)) != 0) {
        return code;
    }
    const char *params[] = {a.name, a.rep_url, a.pub_url, a.zone};
    PGresult *res = NULL;
    tg_err err = pst_db_query(
        ctx->db, "register the unit",
        "INSERT INTO grid_members (pu_name, rep_url, pub_url, zone, registered_at, last_seen)"
        " VALUES ($1, $2, $3, $4, now(), now())"
        " ON CONFLICT (pu_name) DO UPDATE SET rep_url = EXCLUDED.rep_url,"
        " pub_url = EXCLUDED.pub_url, zone = EXCLUDED.zone, registered_at = now(),"
        " last_seen = now() RETURNING (xmax = 0)",
        4, params, &res);
    if (err == TG_OK) {
        tg_log_info("pu-register: %s %s at %s%s%s", a.name,
                    strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? "registered" : "re-registered",
                    a.rep_url, a.pub_url != NULL ? ", publishing at " : "",
                    a.pub_url != NULL ? a.pub_url : "");
    }
    PQclear(res);
    return pst_exit_code(ctx->db, err);
}

/* Checks what place needs inside its transaction (and locks the partition's
 * row): 0 to go on, or the exit code after one line. */
static int place_check(PGconn *db, const char *const params[2])
{
    int64_t members = 0;
    PGresult *res = NULL;
    tg_err err = pst_db_query_i64(db, "look up the unit",
                                  "SELECT count(*) FROM grid_members WHERE pu_name = $1", 1,
                                  params + 1, 0, &members);
    if (err == TG_OK) {
        err = pst_db_query(db, "look up the partition",
                           "SELECT $2 = ANY (backup_pus) FROM grid_partitions"
                           " WHERE partition_id = $1::integer FOR UPDATE",
                           2, params, &res);
    }
    int code = err != TG_OK ? pst_exit_code(db, err) : 0;
    if (code == 0 && members == 0) {
        tg_log_error("place: no processing unit named %s: register it first with "
                     "`tixgrid-persister pu-register %s REP_URL`",
                     params[1], params[1]);
        code = TG_EXIT_FAILURE;
    } else if (code == 0 && PQntuples(res) != 1) {
        tg_log_error("place: partition %s does not exist (see grid_partitions)", params[0]);
        code = TG_EXIT_FAILURE;
    } else if (code == 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        tg_log_error("place: %s is a backup of partition %s; a primary cannot be its own backup",
                     params[1], params[0]);
        code = TG_EXIT_FAILURE;
    }
    PQclear(res);
    return code;
}

static int place_run(PGconn *db, const char *const params[2])
{
    tg_err err = pst_db_begin(db);
    int code = err == TG_OK ? place_check(db, params) : pst_exit_code(db, err);
    int64_t epoch = -1;
    if (code == 0) {
        err = pst_db_query_i64(db, "place the partition",
                               "UPDATE grid_partitions SET primary_pu = $2, epoch = epoch + 1,"
                               " updated_at = now() WHERE partition_id = $1::integer"
                               " RETURNING epoch",
                               2, params, -1, &epoch);
    }
    if (code == 0 && err == TG_OK) {
        err = pst_db_commit(db);
    }
    if (code == 0 && err != TG_OK) {
        code = pst_exit_code(db, err);
    }
    if (code != 0) {
        pst_db_rollback(db);
        return code;
    }
    tg_log_info("place: partition %s on %s, epoch %" PRId64, params[0], params[1], epoch);
    return 0;
}

int pst_cmd_place(pst_context *ctx, int argc, char **argv)
{
    int code = pst_args_positional(argc, argv, 2, 2);
    uint64_t partition = 0;
    if (code != 0) {
        return code;
    }
    if (tg_parse_u64(argv[1], 0, TG_PARTITION_ID_MAX, &partition) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "place: PARTITION must be a whole number from 0 "
                                  "to %u",
                                  TG_PARTITION_ID_MAX);
    }
    if (!tg_name_valid(argv[2])) {
        return tg_cli_usage_error(PST_PROGRAM, "place: PU_NAME must be 1..47 characters of "
                                               "[A-Za-z0-9._-]");
    }
    if ((code = pst_context_connect(ctx)) != 0) {
        return code;
    }
    char id[16];
    snprintf(id, sizeof(id), "%" PRIu64, partition);
    const char *const params[2] = {id, argv[2]};
    return place_run(ctx->db, params);
}

/* ---- `ingest` ------------------------------------------------------------------------ */

typedef struct {
    tg_wire_log_record *records;
    uint32_t count, capacity;
} record_list;

/* A field of a record line: a whole number >= 0, or (word) a decimal string. */
static bool json_u64(json_t *obj, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        *out = 0;
        return true;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        (uint64_t)json_integer_value(v) <= max) {
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    return json_is_string(v) && tg_parse_u64(json_string_value(v), 0, max, out) == TG_OK;
}

static bool json_i64(json_t *obj, const char *key, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    *out = v != NULL && json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
    return v == NULL || json_is_integer(v);
}

static bool record_from_json(json_t *obj, tg_wire_log_record *r)
{
    uint64_t kind, ident, status, version;
    bool ok = json_is_object(obj) && json_object_get(obj, "seq") != NULL &&
              json_u64(obj, "seq", TG_WIRE_ID_MAX, &r->seq) && r->seq > 0 &&
              json_u64(obj, "kind", UINT32_MAX, &kind) &&
              json_u64(obj, "ident", UINT32_MAX, &ident) &&
              json_u64(obj, "status", UINT32_MAX, &status) &&
              json_u64(obj, "word", UINT64_MAX, &r->word) &&
              json_u64(obj, "version", UINT32_MAX, &version) &&
              json_i64(obj, "deadline_ms", &r->deadline_ms) &&
              json_i64(obj, "created_ms", &r->created_ms);
    r->kind = (uint32_t)kind;
    r->ident = (uint32_t)ident;
    r->status = (uint32_t)status;
    r->version = (uint32_t)version;
    return ok;
}

static int ingest_line(record_list *list, const char *line, size_t len, uint32_t line_no)
{
    if (len == 0 || strspn(line, " \t\r") == len) {
        return 0;
    }
    if (list->count == PST_INGEST_RECORDS_MAX) {
        tg_log_error("ingest: more than %u records", PST_INGEST_RECORDS_MAX);
        return TG_EXIT_FAILURE;
    }
    if (list->count == list->capacity) {
        uint32_t cap = list->capacity != 0 ? list->capacity * 2 : 1024;
        tg_wire_log_record *grown = realloc(list->records, cap * sizeof(*grown));
        if (grown == NULL) {
            return TG_EXIT_FAILURE;
        }
        list->records = grown;
        list->capacity = cap;
    }
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, 0, &jerr);
    tg_wire_log_record *r = &list->records[list->count];
    *r = (tg_wire_log_record){0};
    bool ok = obj != NULL && record_from_json(obj, r);
    json_decref(obj);
    if (!ok) {
        tg_log_error("ingest: line %" PRIu32 " is not a record {\"seq\": N, \"kind\": 0..2, "
                     "\"ident\", \"status\", \"word\", \"deadline_ms\", \"created_ms\", "
                     "\"version\"}%s%s",
                     line_no, obj == NULL ? ": " : "", obj == NULL ? jerr.text : "");
        return TG_EXIT_FAILURE;
    }
    list->count++;
    return 0;
}

static int ingest_read(const char *path, record_list *list)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        tg_log_error("ingest: cannot read %s: %s", path, strerror(errno));
        return TG_EXIT_FAILURE;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint32_t line_no = 0;
    int code = 0;
    while (code == 0 && (len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        code = ingest_line(list, line, (size_t)len, line_no);
    }
    free(line);
    if (f != stdin) {
        fclose(f);
    }
    return code;
}

typedef struct {
    uint32_t partition_id;
    const char *path;
    bool epoch_given;
    uint64_t epoch;
} ingest_args;

static int ingest_parse(int argc, char **argv, ingest_args *a)
{
    const char *pos[2] = {NULL, NULL};
    int n = 0;
    uint64_t partition = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--epoch") == 0 && i + 1 < argc) {
            v = argv[++i];
        } else if (strncmp(argv[i], "--epoch=", 8) == 0) {
            v = argv[i] + 8;
        } else if (strncmp(argv[i], "--", 2) == 0 || n == 2) {
            return tg_cli_usage_error(PST_PROGRAM, "usage: %s ingest PARTITION FILE [--epoch N]",
                                      PST_PROGRAM);
        } else {
            pos[n++] = argv[i];
        }
        if (v != NULL && tg_parse_u64(v, 0, TG_WIRE_ID_MAX, &a->epoch) != TG_OK) {
            return tg_cli_usage_error(PST_PROGRAM, "ingest: --epoch must be 0..2^53-1");
        }
        a->epoch_given |= v != NULL;
    }
    if (n != 2 || tg_parse_u64(pos[0], 0, TG_PARTITION_ID_MAX, &partition) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "usage: %s ingest PARTITION FILE [--epoch N] "
                                  "(PARTITION 0..%u; FILE '-' for stdin)",
                                  PST_PROGRAM, TG_PARTITION_ID_MAX);
    }
    a->partition_id = (uint32_t)partition;
    a->path = pos[1];
    return 0;
}

/* The chunk template of the partition from grid_partitions (and its epoch). */
static int ingest_partition(PGconn *db, const ingest_args *a, pst_chunk *tpl)
{
    char id[16];
    snprintf(id, sizeof(id), "%" PRIu32, a->partition_id);
    const char *params[] = {id};
    PGresult *res = NULL;
    tg_err err = pst_db_query(db, "look up the partition",
                              "SELECT g.event_id, g.first_seat, g.seat_count, COALESCE(o.epoch, 0)"
                              " FROM grid_partitions g LEFT JOIN partition_offsets o"
                              " USING (partition_id) WHERE g.partition_id = $1::integer",
                              1, params, &res);
    if (err != TG_OK) {
        return pst_exit_code(db, err);
    }
    int code = 0;
    if (PQntuples(res) != 1) {
        tg_log_error("ingest: partition %s does not exist (see grid_partitions)", id);
        code = TG_EXIT_FAILURE;
    } else {
        int64_t first = 0, count = 0, epoch = 0;
        pst_db_parse_i64(PQgetvalue(res, 0, 0), &tpl->event_id);
        pst_db_parse_i64(PQgetvalue(res, 0, 1), &first);
        pst_db_parse_i64(PQgetvalue(res, 0, 2), &count);
        pst_db_parse_i64(PQgetvalue(res, 0, 3), &epoch);
        tpl->partition_id = a->partition_id;
        tpl->first_seat = (uint32_t)first;
        tpl->seat_count = (uint32_t)count;
        tpl->map_epoch = a->epoch_given ? a->epoch : (uint64_t)epoch;
    }
    PQclear(res);
    return code;
}

static int ingest_apply(PGconn *db, const pst_chunk *tpl, const record_list *list)
{
    pst_apply_result total = {0};
    uint64_t last = 0;
    if (list->count == 0) {
        tg_log_info("ingest: no records; nothing written");
        return 0;
    }
    for (uint32_t at = 0; at < list->count;) {
        pst_chunk c = *tpl;
        c.records = list->records + at;
        c.count = list->count - at < PST_DRAIN_BATCH_CHANGES_DEFAULT
                      ? list->count - at
                      : PST_DRAIN_BATCH_CHANGES_DEFAULT;
        pst_apply_result r;
        tg_err err = pst_apply_batch(db, &c, 1, &r);
        if (err != TG_OK) {
            return pst_exit_code(db, err);
        }
        if (c.outcome == PST_CHUNK_FENCED) {
            tg_log_error("ingest: partition %" PRIu32 ": epoch %" PRIu64 " is below the recorded "
                         "epoch %" PRIu64 "; nothing written",
                         c.partition_id, c.map_epoch, c.epoch);
            return TG_EXIT_FAILURE;
        }
        total.applied += r.applied;
        total.skipped += r.skipped;
        total.rejected += r.rejected;
        last = c.last_seq;
        at += c.count;
    }
    tg_log_info("ingest: partition %" PRIu32 ": %" PRIu32 " applied, %" PRIu32 " skipped (already "
                "persisted), %" PRIu32 " rejected; last_seq %" PRIu64,
                tpl->partition_id, total.applied, total.skipped, total.rejected, last);
    return 0;
}

int pst_cmd_ingest(pst_context *ctx, int argc, char **argv)
{
    ingest_args a = {0};
    record_list list = {0};
    pst_chunk tpl = {0};
    int code = ingest_parse(argc, argv, &a);
    if (code == 0) {
        code = ingest_read(a.path, &list);
    }
    if (code == 0) {
        code = pst_context_connect(ctx);
    }
    if (code == 0) {
        code = ingest_partition(ctx->db, &a, &tpl);
    }
    if (code == 0) {
        tg_err err = pst_apply_setup(ctx->db);
        code = err == TG_OK ? ingest_apply(ctx->db, &tpl, &list) : pst_exit_code(ctx->db, err);
    }
    free(list.records);
    return code;
}

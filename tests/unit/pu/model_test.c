/*
 * model_test.c — the engine against a reference model, over random operations.
 *
 * A model of one small partition lives in plain arrays here: every seat word
 * (state, version, booking seq), every booking slot (status, version, times,
 * seats, the last log record about it), the log cursors and the sweep
 * cursor.  A seeded xorshift generator drives 20,000 random operations per
 * seed — create, hold by ids, best available, release, cancel, begin payment,
 * confirm, fail, sweep, block, unblock, get, log acknowledgements and clock
 * jumps — against a 200-seat partition in two sections, small enough that
 * seats collide all the time, with a 40-slot booking table (slot reuse and
 * TG_EBOOKINGS_FULL) and a 256-record ring that is sometimes left
 * unacknowledged for hundreds of operations (TG_EBACKLOG, TG_ELOG_FULL).
 *
 * After every operation the test compares the exact return code and outputs
 * with what the model predicts, the log head, and every log record the
 * operation wrote (kind, ident, word or status, times, version).  Every
 * CHECK_EVERY operations, and at the end of each run, it compares the whole
 * state: every seat word, every booking via pu_booking_get, the counters per
 * row, section and in total, a recount, the describe cursors, and
 * pu_partition_check.
 *
 * Where partition.h is silent the model follows the implementation's
 * documented choices (see the report in the commit that added this file):
 *   - booking seq n lives in slot (n - 1) % capacity; create claims the
 *     first seq among the next TG_BOOKING_PROBES_MAX whose slot is reusable
 *     (its booking ended unsold and its last record is persisted), and
 *     consumes no seq when there is none;
 *   - a due booking (now >= deadline) is expired on the spot by hold, best,
 *     release, begin_payment and confirm, but not by cancel or fail;
 *   - create and block are refused with TG_EBACKLOG at the high-water mark,
 *     like holds;
 *   - argument errors come before booking lookup, which comes before the
 *     expiry check, the status check, the seat count and the seats;
 *   - records: a hold or block logs its seats ascending; a status change logs
 *     the booking, then each of its seats.
 *
 * Run one seed with TIXGRID_MODEL_SEED=<seed> TIXGRID_MODEL_SEEDS=1; the op
 * count is TIXGRID_MODEL_OPS.  A failure prints the seed and the last
 * operations with their inputs and results.
 */
#include "partition.h"

#include "tixgrid/seat.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define M_PARTITION         9u
#define M_SECTIONS          2u
#define M_ROWS_PER_SECTION  5u
#define M_ROWS              (M_SECTIONS * M_ROWS_PER_SECTION)
#define M_ROW_SEATS         20u
#define M_SEATS             (M_ROWS * M_ROW_SEATS)
#define M_BOOKINGS          40u /* <= TG_BOOKING_PROBES_MAX: create probes every slot */
#define M_LOG_RECORDS       256u
#define M_HOLD_TTL_MS       1000u
#define M_PAYMENT_WINDOW_MS 2000u
#define M_USERS             3u   /* shoppers 1..M_USERS */
#define M_ISSUED            128u /* recent ids remembered, live or not */
#define M_HISTORY           48u  /* operations printed on a failure */
#define M_DESC_BYTES        256u
#define M_WHY_BYTES         1024u
#define M_EXPECT_MAX        (2 * M_BOOKINGS * (1 + TG_BOOKING_SEATS_MAX)) /* records of one op */
#define CHECK_EVERY         64u
#define DROUGHT_WINDOW      500u /* ops; a window without acks is a drought */
#define T0_MS               INT64_C(1795290307123)

_Static_assert(M_BOOKINGS <= TG_BOOKING_PROBES_MAX, "create must probe every slot");

/* ---- The model ------------------------------------------------------------ */

typedef struct {
    uint32_t seq; /* 0: never used */
    uint64_t user;
    tg_booking_status status;
    uint32_t version;
    int64_t created_ms, deadline_ms;
    uint32_t seat_count;
    uint32_t seats[TG_BOOKING_SEATS_MAX]; /* ascending */
    uint64_t log_seq;                     /* last record about it or its seats */
} m_booking;

enum {
    OP_CREATE,
    OP_HOLD,
    OP_HOLD_BEST,
    OP_RELEASE,
    OP_CANCEL,
    OP_BEGIN_PAYMENT,
    OP_CONFIRM,
    OP_FAIL,
    OP_SWEEP,
    OP_BLOCK,
    OP_UNBLOCK,
    OP_GET,
    OP_ACK,
    OP_TICK,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "create", "hold",  "hold_best", "release", "cancel", "begin_payment", "confirm",
    "fail",   "sweep", "block",     "unblock", "get",    "ack",           "tick",
};

/* Weights of the operations (out of their sum), in op order. */
static const uint32_t op_weights[OP_COUNT] = {10, 22, 8, 10, 5, 8, 7, 4, 4, 3, 3, 8, 6, 4};

typedef struct {
    /* The engine under test. */
    pu_partition *p;
    char name[TG_SHM_NAME_BYTES];
    pu_section_spec sections[M_SECTIONS];
    pu_row_spec rows[M_ROWS];
    pu_partition_config cfg;

    /* The model. */
    tg_seat_word words[M_SEATS];
    m_booking slots[M_BOOKINGS];
    uint32_t next_seq;     /* last booking seq handed out */
    uint32_t sweep_cursor; /* next slot the sweeper looks at */
    uint64_t head, persisted;
    uint64_t bookings_created;
    pu_log_record expect[M_EXPECT_MAX]; /* records the current op must write */
    uint32_t expect_count;
    tg_booking_id issued[M_ISSUED]; /* ring of recent ids */
    uint32_t issued_count;

    /* The run. */
    uint64_t seed, rng;
    uint64_t op;
    int64_t now;
    bool drought; /* no acknowledgements in this window */
    char desc[M_DESC_BYTES];
    char history[M_HISTORY][M_DESC_BYTES];
    bool failed;
    char why[M_WHY_BYTES];
    uint64_t outcomes[OP_COUNT][TG_ERR_COUNT_];
    uint64_t best_picks[2]; /* best-available choices: side by side, split */
} model;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static uint32_t rnd(model *m, uint32_t n)
{
    return (uint32_t)((rng_next(&m->rng) >> 32) % n);
}

static uint64_t env_u64(const char *name, uint64_t fallback)
{
    const char *text = getenv(name);
    if (text == NULL || *text == '\0') {
        return fallback;
    }
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    return (end != NULL && *end == '\0') ? (uint64_t)value : fallback;
}

static bool fail(model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(model *m, const char *fmt, ...)
{
    if (m->failed) {
        return false;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->why, sizeof m->why, fmt, ap);
    va_end(ap);
    m->failed = true;
    return false;
}

static void describe_op(model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void describe_op(model *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n =
        snprintf(m->desc, sizeof m->desc, "#%" PRIu64 " now=+%" PRId64 " ", m->op, m->now - T0_MS);
    vsnprintf(m->desc + n, sizeof m->desc - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Appends " -> result" to the description and files it in the history. */
static void history_add(model *m, const char *result)
{
    char *slot = m->history[m->op % M_HISTORY];
    snprintf(slot, M_DESC_BYTES, "%.200s -> %s", m->desc, result);
}

static void seats_text(char *buf, size_t size, const uint32_t *seats, uint32_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n && used + 12 < size; i++) {
        used += (size_t)snprintf(buf + used, size - used, "%s%u", i ? "," : "", seats[i]);
    }
}

static tg_seat_state state_for(tg_booking_status status)
{
    switch (status) {
    case TG_BOOKING_CREATED:
        return TG_SEAT_SELECTED;
    case TG_BOOKING_PENDING_PAYMENT:
        return TG_SEAT_RESERVED;
    case TG_BOOKING_PAID:
        return TG_SEAT_SOLD;
    default:
        return TG_SEAT_FREE;
    }
}

static bool status_live(tg_booking_status s)
{
    return s == TG_BOOKING_CREATED || s == TG_BOOKING_PENDING_PAYMENT;
}

static bool status_ended(tg_booking_status s)
{
    return s == TG_BOOKING_CANCELLED || s == TG_BOOKING_EXPIRED || s == TG_BOOKING_FAILED;
}

static m_booking *m_slot(model *m, uint32_t seq)
{
    return &m->slots[(seq - 1) % M_BOOKINGS];
}

static tg_seat_state m_state(const model *m, uint32_t seat)
{
    return tg_seat_word_state(m->words[seat]);
}

static void m_set(model *m, uint32_t seat, tg_seat_state state, uint32_t seq)
{
    m->words[seat] = tg_seat_word_next(m->words[seat], state, seq);
}

static bool listed(const uint32_t *seats, uint32_t n, uint32_t seat)
{
    for (uint32_t i = 0; i < n; i++) {
        if (seats[i] == seat) {
            return true;
        }
    }
    return false;
}

static void sort_u32(uint32_t *v, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint32_t x = v[i], j = i;
        for (; j > 0 && v[j - 1] > x; j--) {
            v[j] = v[j - 1];
        }
        v[j] = x;
    }
}

/* ---- Model: the log ---------------------------------------------------------- */

static tg_err m_reserve(model *m, uint32_t n, uint32_t per_1024, uint64_t *first)
{
    uint64_t limit = (uint64_t)M_LOG_RECORDS * per_1024 / 1024;
    if (m->head - m->persisted + n > limit) {
        return per_1024 <= TG_LOG_HIGH_WATER_PER_1024 ? TG_EBACKLOG : TG_ELOG_FULL;
    }
    *first = m->head + 1;
    m->head += n;
    return TG_OK;
}

static void m_emit_seat(model *m, uint64_t seq, uint32_t seat)
{
    if (m->expect_count == M_EXPECT_MAX) {
        fail(m, "model: too many records in one operation");
        return;
    }
    m->expect[m->expect_count++] = (pu_log_record){
        .seq = seq,
        .ident = seat,
        .kind = PU_REC_SEAT,
        .word = m->words[seat],
        .version = tg_seat_word_version(m->words[seat]),
    };
}

static void m_emit_booking(model *m, uint64_t seq, const m_booking *b)
{
    if (m->expect_count == M_EXPECT_MAX) {
        fail(m, "model: too many records in one operation");
        return;
    }
    m->expect[m->expect_count++] = (pu_log_record){
        .seq = seq,
        .ident = b->seq,
        .kind = PU_REC_BOOKING,
        .status = (uint8_t)b->status,
        .word = b->user,
        .deadline_ms = b->deadline_ms,
        .created_ms = b->created_ms,
        .version = b->version,
    };
}

/* ---- Model: bookings ------------------------------------------------------------ */

static tg_err m_lock(model *m, tg_booking_id id, uint64_t user, m_booking **out)
{
    if (tg_booking_id_partition(id) != M_PARTITION) {
        return TG_EWRONG_PARTITION;
    }
    uint32_t seq = tg_booking_id_seq(id);
    if (seq == 0) {
        return TG_ENOT_FOUND;
    }
    m_booking *b = m_slot(m, seq);
    if (b->seq != seq || (user != PU_USER_SYSTEM && b->user != user)) {
        return TG_ENOT_FOUND;
    }
    *out = b;
    return TG_OK;
}

/* Moves b to status `to`, logging the booking then each of its seats. */
static tg_err m_transition(model *m, m_booking *b, tg_booking_status to, int64_t deadline_ms)
{
    uint32_t n = b->seat_count;
    uint64_t first;
    tg_err err = m_reserve(m, 1 + n, TG_LOG_GIVER_PER_1024, &first);
    if (err != TG_OK) {
        return err;
    }
    b->status = to;
    b->deadline_ms = deadline_ms;
    b->version++;
    m_emit_booking(m, first, b);
    tg_seat_state state = state_for(to);
    for (uint32_t i = 0; i < n; i++) {
        m_set(m, b->seats[i], state, state == TG_SEAT_FREE ? 0 : b->seq);
        m_emit_seat(m, first + 1 + i, b->seats[i]);
    }
    if (state == TG_SEAT_FREE) {
        b->seat_count = 0;
    }
    b->log_seq = first + n;
    return TG_OK;
}

static tg_err m_expire_if_due(model *m, m_booking *b)
{
    if (!status_live(b->status) || m->now < b->deadline_ms) {
        return TG_OK;
    }
    tg_err err = m_transition(m, b, TG_BOOKING_EXPIRED, b->deadline_ms);
    return err != TG_OK ? err : TG_EEXPIRED;
}

static tg_err m_create(model *m, uint64_t user, pu_booking_info *out)
{
    if (user == PU_USER_SYSTEM) {
        return TG_EINVAL;
    }
    for (uint32_t k = 1; k <= TG_BOOKING_PROBES_MAX; k++) {
        uint32_t seq = m->next_seq + k;
        m_booking *b = m_slot(m, seq);
        bool reusable = b->seq == 0 || (status_ended(b->status) && b->log_seq <= m->persisted);
        if (!reusable) {
            continue;
        }
        m->next_seq = seq; /* the slots skipped cost one id each; none if full */
        uint64_t first;
        tg_err err = m_reserve(m, 1, TG_LOG_HIGH_WATER_PER_1024, &first);
        if (err != TG_OK) {
            return err;
        }
        *b = (m_booking){.seq = seq,
                         .user = user,
                         .status = TG_BOOKING_CREATED,
                         .version = 1,
                         .created_ms = m->now,
                         .deadline_ms = m->now + M_HOLD_TTL_MS,
                         .log_seq = first};
        m_emit_booking(m, first, b);
        m->bookings_created++;
        m->issued[m->issued_count++ % M_ISSUED] = tg_booking_id_make(M_PARTITION, seq);
        *out = (pu_booking_info){.id = tg_booking_id_make(M_PARTITION, seq),
                                 .user_id = user,
                                 .status = TG_BOOKING_CREATED,
                                 .version = 1,
                                 .created_ms = b->created_ms,
                                 .deadline_ms = b->deadline_ms};
        return TG_OK;
    }
    return TG_EBOOKINGS_FULL;
}

static void m_info(const m_booking *b, pu_booking_info *out)
{
    *out = (pu_booking_info){.id = tg_booking_id_make(M_PARTITION, b->seq),
                             .user_id = b->user,
                             .status = b->status,
                             .version = b->version,
                             .created_ms = b->created_ms,
                             .deadline_ms = b->deadline_ms,
                             .seat_count = b->seat_count};
    memcpy(out->seats, b->seats, b->seat_count * sizeof b->seats[0]);
}

/* ---- Model: seats ------------------------------------------------------------------ */

/* Argument checks of every seat-list call: count, then range, then duplicates. */
static tg_err m_prepare(const uint32_t *seats, uint32_t n, uint32_t *sorted)
{
    if (n == 0 || n > TG_BOOKING_SEATS_MAX) {
        return TG_EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (seats[i] >= M_SEATS) {
            return TG_ESEAT_RANGE;
        }
        sorted[i] = seats[i];
    }
    sort_u32(sorted, n);
    for (uint32_t i = 1; i < n; i++) {
        if (sorted[i] == sorted[i - 1]) {
            return TG_EINVAL;
        }
    }
    return TG_OK;
}

/* Requested seats that are not FREE, ascending; their count. */
static uint32_t m_taken(const model *m, const uint32_t *sorted, uint32_t n, uint32_t *taken)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (m_state(m, sorted[i]) != TG_SEAT_FREE) {
            taken[k++] = sorted[i];
        }
    }
    return k;
}

/* A failed hold took the free seats before the first taken one and gives
 * them back as FREE at a new version, each logged: two version steps (its
 * own word in between is never logged). */
static void m_give_back(model *m, const uint32_t *sorted, uint32_t n)
{
    uint32_t k = 0;
    while (k < n && m_state(m, sorted[k]) == TG_SEAT_FREE) {
        k++;
    }
    uint64_t first;
    if (k == 0 || m_reserve(m, k, 1024, &first) != TG_OK) {
        return;
    }
    for (uint32_t i = 0; i < k; i++) {
        m_set(m, sorted[i], TG_SEAT_SELECTED, 0);
        m_set(m, sorted[i], TG_SEAT_FREE, 0);
        m_emit_seat(m, first + i, sorted[i]);
    }
}

/* With b created: takes sorted[0..n) into b, all or nothing. */
static tg_err m_hold_locked(model *m, m_booking *b, const uint32_t *sorted, uint32_t n,
                            pu_hold_result *out)
{
    if (b->seat_count + n > TG_BOOKING_SEATS_MAX) {
        return TG_ETOO_MANY_SEATS;
    }
    uint64_t first;
    if (m->head - m->persisted + n > (uint64_t)M_LOG_RECORDS * TG_LOG_HIGH_WATER_PER_1024 / 1024) {
        return TG_EBACKLOG; /* checked before any seat is touched */
    }
    out->taken_count = m_taken(m, sorted, n, out->taken);
    if (out->taken_count > 0) {
        m_give_back(m, sorted, n);
        return TG_ESEAT_TAKEN;
    }
    tg_err err = m_reserve(m, n, TG_LOG_HIGH_WATER_PER_1024, &first);
    if (err != TG_OK) {
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        m_set(m, sorted[i], TG_SEAT_SELECTED, b->seq);
        m_emit_seat(m, first + i, sorted[i]);
        b->seats[b->seat_count++] = sorted[i];
    }
    sort_u32(b->seats, b->seat_count);
    b->log_seq = first + n - 1;
    out->seat_count = b->seat_count;
    memcpy(out->seats, b->seats, b->seat_count * sizeof b->seats[0]);
    out->deadline_ms = b->deadline_ms;
    return TG_OK;
}

/* Lookup, expiry on the spot, and the created status that seat changes need. */
static tg_err m_lock_created(model *m, tg_booking_id id, uint64_t user, m_booking **out)
{
    m_booking *b = NULL;
    tg_err err = m_lock(m, id, user, &b);
    if (err == TG_OK) {
        err = m_expire_if_due(m, b);
    }
    if (err == TG_OK && b->status != TG_BOOKING_CREATED) {
        err = TG_EBOOKING_STATE;
    }
    *out = b;
    return err;
}

static tg_err m_hold(model *m, tg_booking_id id, uint64_t user, const uint32_t *seats, uint32_t n,
                     pu_hold_result *out)
{
    memset(out, 0, sizeof *out);
    uint32_t sorted[TG_BOOKING_SEATS_MAX + 1];
    m_booking *b;
    tg_err err = m_prepare(seats, n, sorted);
    if (err == TG_OK) {
        err = m_lock_created(m, id, user, &b);
    }
    return err != TG_OK ? err : m_hold_locked(m, b, sorted, n, out);
}

static tg_err m_release(model *m, tg_booking_id id, uint64_t user, const uint32_t *seats,
                        uint32_t n)
{
    uint32_t sorted[TG_BOOKING_SEATS_MAX + 1];
    m_booking *b;
    tg_err err = m_prepare(seats, n, sorted);
    if (err == TG_OK) {
        err = m_lock_created(m, id, user, &b);
    }
    for (uint32_t i = 0; err == TG_OK && i < n; i++) {
        err = listed(b->seats, b->seat_count, sorted[i]) ? TG_OK : TG_ESEAT_NOT_HELD;
    }
    uint64_t first;
    if (err != TG_OK || (err = m_reserve(m, n, TG_LOG_GIVER_PER_1024, &first)) != TG_OK) {
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        m_set(m, sorted[i], TG_SEAT_FREE, 0);
        m_emit_seat(m, first + i, sorted[i]);
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < b->seat_count; i++) {
        if (!listed(sorted, n, b->seats[i])) {
            b->seats[kept++] = b->seats[i];
        }
    }
    b->seat_count = kept;
    b->log_seq = first + n - 1;
    return TG_OK;
}

static tg_err m_block(model *m, const uint32_t *seats, uint32_t n, pu_hold_result *out)
{
    memset(out, 0, sizeof *out);
    uint32_t sorted[TG_BOOKING_SEATS_MAX + 1];
    tg_err err = m_prepare(seats, n, sorted);
    if (err != TG_OK) {
        return err;
    }
    out->taken_count = m_taken(m, sorted, n, out->taken);
    if (out->taken_count > 0) {
        return TG_ESEAT_TAKEN;
    }
    uint64_t first;
    if ((err = m_reserve(m, n, TG_LOG_HIGH_WATER_PER_1024, &first)) != TG_OK) {
        return err; /* a taker, like a hold */
    }
    for (uint32_t i = 0; i < n; i++) {
        m_set(m, sorted[i], TG_SEAT_BLOCKED, 0);
        m_emit_seat(m, first + i, sorted[i]);
    }
    return TG_OK;
}

static tg_err m_unblock(model *m, const uint32_t *seats, uint32_t n)
{
    uint32_t sorted[TG_BOOKING_SEATS_MAX + 1];
    tg_err err = m_prepare(seats, n, sorted);
    for (uint32_t i = 0; err == TG_OK && i < n; i++) {
        err = m_state(m, sorted[i]) == TG_SEAT_BLOCKED ? TG_OK : TG_EINVAL;
    }
    uint64_t first;
    if (err != TG_OK || (err = m_reserve(m, n, TG_LOG_GIVER_PER_1024, &first)) != TG_OK) {
        return err;
    }
    for (uint32_t i = 0; i < n; i++) {
        m_set(m, sorted[i], TG_SEAT_FREE, 0);
        m_emit_seat(m, first + i, sorted[i]);
    }
    return TG_OK;
}

/* ---- Model: best available -------------------------------------------------------- */

typedef struct {
    uint32_t row, start, len; /* start relative to the row */
} m_run;

/* Start of the m-seat window in run nearest the row's centre (ties left). */
static uint32_t m_window(const m_run *run, uint32_t width)
{
    uint32_t ideal = (M_ROW_SEATS - width) / 2;
    uint32_t lo = run->start, hi = run->start + run->len - width;
    return ideal < lo ? lo : (ideal > hi ? hi : ideal);
}

static uint32_t m_distance(uint32_t start, uint32_t width)
{
    int64_t d = 2 * (int64_t)start + width - M_ROW_SEATS;
    return (uint32_t)(d < 0 ? -d : d);
}

/* Free runs of one row, left to right. */
static uint32_t m_row_runs(const model *m, uint32_t row, m_run *runs)
{
    uint32_t count = 0;
    for (uint32_t i = 0; i < M_ROW_SEATS;) {
        if (m_state(m, row * M_ROW_SEATS + i) != TG_SEAT_FREE) {
            i++;
            continue;
        }
        m_run run = {.row = row, .start = i, .len = 0};
        for (; i < M_ROW_SEATS && m_state(m, row * M_ROW_SEATS + i) == TG_SEAT_FREE; i++) {
            run.len++;
        }
        runs[count++] = run;
    }
    return count;
}

/* partition.h's rule: q side by side in the first row (layout order) that
 * can seat them, nearest the centre; else, unless adjacent_only, the largest
 * free runs first (ties to the earlier run), each piece nearest its row's
 * centre.  Returns q with the seats ascending, or 0. */
static uint32_t m_best_pick(const model *m, const pu_best_request *req, uint32_t *out)
{
    uint32_t q = req->quantity;
    uint32_t first = req->section >= 0 ? (uint32_t)req->section * M_ROWS_PER_SECTION : 0;
    uint32_t last = req->section >= 0 ? first + M_ROWS_PER_SECTION : M_ROWS;
    m_run runs[M_SEATS];
    uint32_t count = 0;
    for (uint32_t row = first; row < last; row++) {
        uint32_t n = m_row_runs(m, row, runs + count);
        const m_run *best = NULL;
        for (uint32_t k = count; k < count + n; k++) {
            if (runs[k].len >= q && (best == NULL || m_distance(m_window(&runs[k], q), q) <
                                                         m_distance(m_window(best, q), q))) {
                best = &runs[k];
            }
        }
        if (best != NULL) {
            for (uint32_t k = 0; k < q; k++) {
                out[k] = best->row * M_ROW_SEATS + m_window(best, q) + k;
            }
            return q;
        }
        count += n;
    }
    if (req->adjacent_only) {
        return 0;
    }
    for (uint32_t i = 1; i < count; i++) { /* stable: longest first */
        m_run x = runs[i];
        uint32_t j = i;
        for (; j > 0 && runs[j - 1].len < x.len; j--) {
            runs[j] = runs[j - 1];
        }
        runs[j] = x;
    }
    uint32_t taken = 0;
    for (uint32_t k = 0; k < count && taken < q; k++) {
        uint32_t width = runs[k].len < q - taken ? runs[k].len : q - taken;
        for (uint32_t i = 0; i < width; i++) {
            out[taken + i] = runs[k].row * M_ROW_SEATS + m_window(&runs[k], width) + i;
        }
        taken += width;
    }
    sort_u32(out, taken);
    return taken == q ? q : 0;
}

static tg_err m_hold_best(model *m, tg_booking_id id, uint64_t user, const pu_best_request *req,
                          pu_hold_result *out)
{
    memset(out, 0, sizeof *out);
    if (req->quantity == 0 || req->quantity > TG_BOOKING_SEATS_MAX || req->section < -1 ||
        req->section >= (int32_t)M_SECTIONS) {
        return TG_EINVAL;
    }
    m_booking *b;
    tg_err err = m_lock_created(m, id, user, &b);
    if (err != TG_OK) {
        return err;
    }
    if (b->seat_count + req->quantity > TG_BOOKING_SEATS_MAX) {
        return TG_ETOO_MANY_SEATS;
    }
    uint32_t picked[TG_BOOKING_SEATS_MAX];
    if (m_best_pick(m, req, picked) == 0) {
        return TG_ENO_SEATS;
    }
    bool together = picked[req->quantity - 1] - picked[0] == req->quantity - 1 &&
                    picked[0] / M_ROW_SEATS == picked[req->quantity - 1] / M_ROW_SEATS;
    m->best_picks[together ? 0 : 1]++;
    return m_hold_locked(m, b, picked, req->quantity, out);
}

/* ---- Model: status changes and the sweeper ---------------------------------------- */

static tg_err m_cancel(model *m, tg_booking_id id, uint64_t user)
{
    m_booking *b;
    tg_err err = m_lock(m, id, user, &b);
    if (err != TG_OK) {
        return err;
    }
    return status_live(b->status) ? m_transition(m, b, TG_BOOKING_CANCELLED, b->deadline_ms)
                                  : TG_EBOOKING_STATE;
}

static tg_err m_begin_payment(model *m, tg_booking_id id, uint64_t user, int64_t *deadline)
{
    m_booking *b;
    tg_err err = m_lock(m, id, user, &b);
    if (err == TG_OK) {
        err = m_expire_if_due(m, b);
    }
    if (err == TG_OK && (b->status != TG_BOOKING_CREATED || b->seat_count == 0)) {
        err = TG_EBOOKING_STATE;
    }
    if (err == TG_OK) {
        *deadline = m->now + M_PAYMENT_WINDOW_MS;
        err = m_transition(m, b, TG_BOOKING_PENDING_PAYMENT, *deadline);
    }
    return err;
}

static tg_err m_confirm(model *m, tg_booking_id id)
{
    m_booking *b;
    tg_err err = m_lock(m, id, PU_USER_SYSTEM, &b);
    if (err != TG_OK) {
        return err;
    }
    switch (b->status) {
    case TG_BOOKING_PAID:
        return TG_OK; /* idempotent */
    case TG_BOOKING_EXPIRED:
        return TG_EEXPIRED;
    case TG_BOOKING_PENDING_PAYMENT:
        err = m_expire_if_due(m, b);
        return err != TG_OK ? err : m_transition(m, b, TG_BOOKING_PAID, b->deadline_ms);
    default:
        return TG_EBOOKING_STATE;
    }
}

static tg_err m_fail(model *m, tg_booking_id id)
{
    m_booking *b;
    tg_err err = m_lock(m, id, PU_USER_SYSTEM, &b);
    if (err != TG_OK) {
        return err;
    }
    if (b->status == TG_BOOKING_FAILED) {
        return TG_OK; /* idempotent */
    }
    return status_live(b->status) ? m_transition(m, b, TG_BOOKING_FAILED, b->deadline_ms)
                                  : TG_EBOOKING_STATE;
}

/* The sweeper walks the slots in use (min(seqs issued, capacity)) from its
 * cursor, at most scan_max of them. */
static uint32_t m_sweep(model *m, uint32_t scan_max)
{
    uint32_t used = m->next_seq < M_BOOKINGS ? m->next_seq : M_BOOKINGS;
    if (used == 0) {
        return 0;
    }
    uint32_t cursor = m->sweep_cursor;
    uint32_t scan = scan_max < used ? scan_max : used;
    uint32_t expired = 0;
    for (uint32_t i = 0; i < scan; i++) {
        uint32_t slot = cursor % used;
        cursor = slot + 1;
        m_booking *b = &m->slots[slot];
        if (b->seq != 0 && m_expire_if_due(m, b) == TG_EEXPIRED) {
            expired++;
        }
    }
    m->sweep_cursor = cursor % used;
    return expired;
}

/* ---- Comparing ------------------------------------------------------------------------ */

static bool expect_err(model *m, tg_err got, tg_err want)
{
    if (got != want) {
        return fail(m, "%s: got %s, want %s", m->desc, tg_errname(got), tg_errname(want));
    }
    return true;
}

static bool same_booking(model *m, const pu_booking_info *got, const pu_booking_info *want)
{
    if (got->id != want->id || got->user_id != want->user_id || got->status != want->status ||
        got->version != want->version || got->created_ms != want->created_ms ||
        got->deadline_ms != want->deadline_ms || got->seat_count != want->seat_count ||
        memcmp(got->seats, want->seats, want->seat_count * sizeof want->seats[0]) != 0) {
        char gs[128], ws[128];
        seats_text(gs, sizeof gs, got->seats, got->seat_count);
        seats_text(ws, sizeof ws, want->seats, want->seat_count);
        return fail(m,
                    "%s: booking %#" PRIx64 " is {user %" PRIu64 ", %s v%u, created +%" PRId64
                    ", deadline +%" PRId64 ", seats [%s]}, want {%#" PRIx64 " user %" PRIu64
                    ", %s v%u, created +%" PRId64 ", deadline +%" PRId64 ", seats [%s]}",
                    m->desc, got->id, got->user_id, tg_booking_status_name(got->status),
                    got->version, got->created_ms - T0_MS, got->deadline_ms - T0_MS, gs, want->id,
                    want->user_id, tg_booking_status_name(want->status), want->version,
                    want->created_ms - T0_MS, want->deadline_ms - T0_MS, ws);
    }
    return true;
}

static bool same_hold(model *m, tg_err err, const pu_hold_result *got, const pu_hold_result *want)
{
    char gs[128], ws[128];
    if (err == TG_OK &&
        (got->seat_count != want->seat_count || got->deadline_ms != want->deadline_ms ||
         memcmp(got->seats, want->seats, want->seat_count * sizeof want->seats[0]) != 0)) {
        seats_text(gs, sizeof gs, got->seats, got->seat_count);
        seats_text(ws, sizeof ws, want->seats, want->seat_count);
        return fail(m, "%s: holds [%s] until +%" PRId64 ", want [%s] until +%" PRId64, m->desc, gs,
                    got->deadline_ms - T0_MS, ws, want->deadline_ms - T0_MS);
    }
    if (err == TG_ESEAT_TAKEN &&
        (got->taken_count != want->taken_count ||
         memcmp(got->taken, want->taken, want->taken_count * sizeof want->taken[0]) != 0)) {
        seats_text(gs, sizeof gs, got->taken, got->taken_count);
        seats_text(ws, sizeof ws, want->taken, want->taken_count);
        return fail(m, "%s: names [%s] as taken, want [%s]", m->desc, gs, ws);
    }
    return true;
}

/* The records the operation wrote are exactly the ones the model expects. */
static bool check_log(model *m)
{
    pu_partition_info info;
    pu_partition_describe(m->p, &info);
    if (info.log_head != m->head || info.log_persisted != m->persisted) {
        return fail(m,
                    "%s: log head %" PRIu64 " persisted %" PRIu64 ", want %" PRIu64 " and %" PRIu64,
                    m->desc, info.log_head, info.log_persisted, m->head, m->persisted);
    }
    if (m->expect_count == 0) {
        return true;
    }
    pu_log_record got[M_EXPECT_MAX];
    uint32_t n = pu_log_read(m->p, m->expect[0].seq, got, m->expect_count);
    if (n != m->expect_count) {
        return fail(m, "%s: read %u records from seq %" PRIu64 ", want %u", m->desc, n,
                    m->expect[0].seq, m->expect_count);
    }
    for (uint32_t i = 0; i < n; i++) {
        const pu_log_record *g = &got[i], *w = &m->expect[i];
        if (memcmp(g, w, sizeof *g) != 0) {
            return fail(m,
                        "%s: record seq %" PRIu64 " is {kind %u ident %u status %u word %#" PRIx64
                        " deadline +%" PRId64 " created +%" PRId64 " v%u}, want {seq %" PRIu64
                        " kind %u ident %u status %u word %#" PRIx64 " deadline +%" PRId64
                        " created +%" PRId64 " v%u}",
                        m->desc, g->seq, g->kind, g->ident, g->status, g->word,
                        g->deadline_ms ? g->deadline_ms - T0_MS : 0,
                        g->created_ms ? g->created_ms - T0_MS : 0, g->version, w->seq, w->kind,
                        w->ident, w->status, w->word, w->deadline_ms ? w->deadline_ms - T0_MS : 0,
                        w->created_ms ? w->created_ms - T0_MS : 0, w->version);
        }
    }
    return true;
}

static bool check_seats(model *m)
{
    for (uint32_t s = 0; s < M_SEATS; s++) {
        pu_seat_info seat;
        tg_err err = pu_seat_get(m->p, s, &seat);
        tg_seat_word w = m->words[s];
        tg_seat_state st = tg_seat_word_state(w);
        bool owned = st == TG_SEAT_SELECTED || st == TG_SEAT_RESERVED || st == TG_SEAT_SOLD;
        tg_booking_id id = owned ? tg_booking_id_make(M_PARTITION, tg_seat_word_booking(w)) : 0;
        if (err != TG_OK || seat.word != w || seat.state != st || seat.booking_id != id ||
            seat.row != s / M_ROW_SEATS || seat.section != s / (M_ROWS_PER_SECTION * M_ROW_SEATS) ||
            seat.number != s % M_ROW_SEATS + 1) {
            return fail(m, "after %s: seat %u is %s v%u seq %u, want %s v%u seq %u", m->desc, s,
                        tg_seat_state_name(seat.state), tg_seat_word_version(seat.word),
                        tg_seat_word_booking(seat.word), tg_seat_state_name(st),
                        tg_seat_word_version(w), tg_seat_word_booking(w));
        }
    }
    return true;
}

static bool check_bookings(model *m)
{
    for (uint32_t i = 0; i < M_BOOKINGS; i++) {
        const m_booking *b = &m->slots[i];
        if (b->seq == 0) {
            continue;
        }
        pu_booking_info got, want;
        m_info(b, &want);
        tg_err err = pu_booking_get(m->p, want.id, PU_USER_SYSTEM, &got);
        if (err != TG_OK) {
            return fail(m, "after %s: get %#" PRIx64 ": %s", m->desc, want.id, tg_errname(err));
        }
        if (!same_booking(m, &got, &want)) {
            return false;
        }
    }
    return true;
}

static bool check_counts(model *m)
{
    uint32_t want_rows[M_ROWS][TG_SEAT_STATE_COUNT] = {{0}};
    uint32_t want_sections[M_SECTIONS][TG_SEAT_STATE_COUNT] = {{0}};
    uint32_t want_totals[TG_SEAT_STATE_COUNT] = {0};
    for (uint32_t s = 0; s < M_SEATS; s++) {
        tg_seat_state st = m_state(m, s);
        want_rows[s / M_ROW_SEATS][st]++;
        want_sections[s / (M_ROWS_PER_SECTION * M_ROW_SEATS)][st]++;
        want_totals[st]++;
    }
    uint32_t rows[2][M_ROWS][TG_SEAT_STATE_COUNT], sections[2][M_SECTIONS][TG_SEAT_STATE_COUNT];
    uint32_t totals[2][TG_SEAT_STATE_COUNT];
    pu_partition_counts(m->p, totals[0], sections[0], rows[0]);
    pu_partition_recount(m->p, totals[1], sections[1], rows[1]);
    for (int k = 0; k < 2; k++) {
        if (memcmp(rows[k], want_rows, sizeof want_rows) != 0 ||
            memcmp(sections[k], want_sections, sizeof want_sections) != 0 ||
            memcmp(totals[k], want_totals, sizeof want_totals) != 0) {
            return fail(m,
                        "after %s: %s (free %u sel %u res %u sold %u blk %u) differ from the "
                        "model (%u %u %u %u %u)",
                        m->desc, k == 0 ? "counters" : "recount", totals[k][0], totals[k][1],
                        totals[k][2], totals[k][3], totals[k][4], want_totals[0], want_totals[1],
                        want_totals[2], want_totals[3], want_totals[4]);
        }
    }
    return true;
}

static bool check_everything(model *m)
{
    pu_partition_info info;
    pu_partition_describe(m->p, &info);
    if (info.bookings_created != m->bookings_created) {
        return fail(m, "after %s: bookings_created %" PRIu64 ", want %" PRIu64, m->desc,
                    info.bookings_created, m->bookings_created);
    }
    if (!check_seats(m) || !check_bookings(m) || !check_counts(m)) {
        return false;
    }
    tg_err err = pu_partition_check(m->p);
    return err == TG_OK ? true
                        : fail(m, "after %s: pu_partition_check: %s", m->desc, tg_errname(err));
}

/* ---- Choosing inputs ------------------------------------------------------------------ */

/* A booking id to act on, and who asks: mostly a booking in one of the wanted
 * statuses and its owner; sometimes another shopper or the system; sometimes
 * a recent id whose slot may have been reused; sometimes an id that never
 * existed or names another partition. */
static void pick_target(model *m, uint32_t wanted_mask, tg_booking_id *id, uint64_t *user)
{
    uint32_t r = rnd(m, 100);
    uint32_t candidates[M_BOOKINGS], n = 0;
    for (uint32_t i = 0; i < M_BOOKINGS; i++) {
        if (m->slots[i].seq != 0 && ((1u << m->slots[i].status) & wanted_mask) != 0) {
            candidates[n++] = i;
        }
    }
    if (r < 88 && n > 0) {
        const m_booking *b = &m->slots[candidates[rnd(m, n)]];
        *id = tg_booking_id_make(M_PARTITION, b->seq);
        uint32_t who = rnd(m, 100);
        *user = who < 85 ? b->user : who < 93 ? PU_USER_SYSTEM : 1 + (b->user % M_USERS);
        return;
    }
    *user = rnd(m, M_USERS + 1);
    if (r < 96 && m->issued_count > 0) {
        uint32_t window = m->issued_count < M_ISSUED ? m->issued_count : M_ISSUED;
        *id = m->issued[rnd(m, window)];
        return;
    }
    switch (rnd(m, 3)) {
    case 0:
        *id = tg_booking_id_make(M_PARTITION, 0);
        break;
    case 1:
        *id = tg_booking_id_make(M_PARTITION + 1, 1 + rnd(m, m->next_seq + 1));
        break;
    default:
        *id = tg_booking_id_make(M_PARTITION, m->next_seq + 1 + rnd(m, 3 * M_BOOKINGS));
        break;
    }
}

#define LIVE_MASK ((1u << TG_BOOKING_CREATED) | (1u << TG_BOOKING_PENDING_PAYMENT))
#define ANY_MASK  0xFEu

/* Seats near the front of each section collide most. */
static uint32_t pick_seat(model *m)
{
    if (rnd(m, 100) < 40) {
        uint32_t section = rnd(m, M_SECTIONS);
        return section * M_ROWS_PER_SECTION * M_ROW_SEATS + rnd(m, 2 * M_ROW_SEATS);
    }
    return rnd(m, M_SEATS);
}

/* 1..max distinct seats, or now and then a malformed list; returns n. */
static uint32_t pick_seats(model *m, uint32_t max, const m_booking *own, uint32_t *seats)
{
    uint32_t r = rnd(m, 100);
    if (r < 2) {
        seats[0] = 0;
        return 0;
    }
    uint32_t n = r < 4 ? TG_BOOKING_SEATS_MAX + 1 : 1 + rnd(m, max);
    for (uint32_t i = 0; i < n; i++) {
        do {
            seats[i] = pick_seat(m);
        } while (listed(seats, i, seats[i]));
    }
    if (r >= 4 && r < 7 && n >= 2) {
        seats[n - 1] = seats[0]; /* duplicate */
    } else if (r >= 7 && r < 9) {
        seats[rnd(m, n)] = M_SEATS + rnd(m, 3); /* out of range */
    } else if (r >= 9 && r < 19 && own != NULL && own->seat_count > 0) {
        uint32_t mine = own->seats[rnd(m, own->seat_count)];
        if (!listed(seats, n, mine)) {
            seats[rnd(m, n)] = mine; /* a seat the booking already holds */
        }
    }
    return n;
}

static const m_booking *model_booking(model *m, tg_booking_id id)
{
    uint32_t seq = tg_booking_id_seq(id);
    if (tg_booking_id_partition(id) != M_PARTITION || seq == 0) {
        return NULL;
    }
    const m_booking *b = m_slot(m, seq);
    return b->seq == seq ? b : NULL;
}

/* ---- Operations: call the engine, ask the model, compare --------------------------------- */

static void finish(model *m, int op, tg_err err)
{
    m->outcomes[op][err < TG_ERR_COUNT_ ? err : 0]++;
    history_add(m, tg_errname(err));
}

static void run_create(model *m)
{
    uint64_t user = rnd(m, 100) < 3 ? PU_USER_SYSTEM : 1 + rnd(m, M_USERS);
    describe_op(m, "create(user %" PRIu64 ")", user);
    pu_booking_info got, want;
    tg_err err = pu_booking_create(m->p, user, m->now, &got);
    tg_err expected = m_create(m, user, &want);
    finish(m, OP_CREATE, err);
    if (expect_err(m, err, expected) && err == TG_OK) {
        same_booking(m, &got, &want);
    }
}

static void run_hold(model *m)
{
    tg_booking_id id;
    uint64_t user;
    pick_target(m, rnd(m, 100) < 85 ? 1u << TG_BOOKING_CREATED : ANY_MASK, &id, &user);
    uint32_t seats[TG_BOOKING_SEATS_MAX + 1];
    uint32_t n = pick_seats(m, 4, model_booking(m, id), seats);
    char text[160];
    seats_text(text, sizeof text, seats, n);
    describe_op(m, "hold(%#" PRIx64 ", user %" PRIu64 ", [%s])", id, user, text);
    pu_hold_result got, want;
    tg_err err = pu_seats_hold(m->p, id, user, seats, n, m->now, &got);
    tg_err expected = m_hold(m, id, user, seats, n, &want);
    finish(m, OP_HOLD, err);
    if (expect_err(m, err, expected)) {
        same_hold(m, err, &got, &want);
    }
}

static void run_hold_best(model *m)
{
    tg_booking_id id;
    uint64_t user;
    pick_target(m, rnd(m, 100) < 85 ? 1u << TG_BOOKING_CREATED : ANY_MASK, &id, &user);
    uint32_t r = rnd(m, 100);
    pu_best_request req = {
        .quantity = r < 2    ? 0
                    : r < 4  ? TG_BOOKING_SEATS_MAX + 1
                    : r < 20 ? 5 + rnd(m, TG_BOOKING_SEATS_MAX - 4)
                             : 1 + rnd(m, 4),
        .adjacent_only = rnd(m, 2) == 0,
    };
    r = rnd(m, 100);
    req.section = r < 45   ? -1
                  : r < 95 ? (int32_t)rnd(m, M_SECTIONS)
                  : r < 97 ? -2
                           : (int32_t)M_SECTIONS;
    describe_op(m, "hold_best(%#" PRIx64 ", user %" PRIu64 ", q %u, section %d, adjacent %d)", id,
                user, req.quantity, req.section, req.adjacent_only);
    pu_hold_result got, want;
    tg_err err = pu_seats_hold_best(m->p, id, user, &req, m->now, &got);
    tg_err expected = m_hold_best(m, id, user, &req, &want);
    finish(m, OP_HOLD_BEST, err);
    if (expect_err(m, err, expected)) {
        same_hold(m, err, &got, &want);
    }
}

/* Mostly some of the booking's own seats, in any order; sometimes one more
 * seat it does not hold, or a malformed list. */
static uint32_t pick_release(model *m, const m_booking *b, uint32_t *seats)
{
    uint32_t r = rnd(m, 100);
    if (b == NULL || b->seat_count == 0 || r < 8) {
        return pick_seats(m, 3, b, seats);
    }
    uint32_t n = 1 + rnd(m, b->seat_count);
    uint32_t first = rnd(m, b->seat_count);
    for (uint32_t i = 0; i < n; i++) {
        seats[i] = b->seats[(first + (b->seat_count - 1) * i) % b->seat_count];
    }
    for (uint32_t i = 1; i < n; i++) { /* the stride may repeat a seat: keep distinct ones */
        if (listed(seats, i, seats[i])) {
            seats[i] = seats[--n];
            i--;
        }
    }
    if (r < 20) {
        uint32_t other = pick_seat(m);
        if (!listed(b->seats, b->seat_count, other) && n < TG_BOOKING_SEATS_MAX) {
            seats[n++] = other;
        }
    }
    return n;
}

static void run_release(model *m)
{
    tg_booking_id id;
    uint64_t user;
    pick_target(m, rnd(m, 100) < 85 ? 1u << TG_BOOKING_CREATED : ANY_MASK, &id, &user);
    uint32_t seats[TG_BOOKING_SEATS_MAX + 1];
    uint32_t n = pick_release(m, model_booking(m, id), seats);
    char text[160];
    seats_text(text, sizeof text, seats, n);
    describe_op(m, "release(%#" PRIx64 ", user %" PRIu64 ", [%s])", id, user, text);
    tg_err err = pu_seats_release(m->p, id, user, seats, n, m->now);
    tg_err expected = m_release(m, id, user, seats, n);
    finish(m, OP_RELEASE, err);
    expect_err(m, err, expected);
}

static void run_cancel(model *m)
{
    tg_booking_id id;
    uint64_t user;
    pick_target(m, rnd(m, 100) < 80 ? LIVE_MASK : ANY_MASK, &id, &user);
    describe_op(m, "cancel(%#" PRIx64 ", user %" PRIu64 ")", id, user);
    tg_err err = pu_booking_cancel(m->p, id, user, m->now);
    tg_err expected = m_cancel(m, id, user);
    finish(m, OP_CANCEL, err);
    expect_err(m, err, expected);
}

static void run_begin_payment(model *m)
{
    tg_booking_id id;
    uint64_t user;
    pick_target(m, rnd(m, 100) < 85 ? 1u << TG_BOOKING_CREATED : ANY_MASK, &id, &user);
    describe_op(m, "begin_payment(%#" PRIx64 ", user %" PRIu64 ")", id, user);
    int64_t got = -1, want = -1;
    tg_err err = pu_booking_begin_payment(m->p, id, user, m->now, &got);
    tg_err expected = m_begin_payment(m, id, user, &want);
    finish(m, OP_BEGIN_PAYMENT, err);
    if (expect_err(m, err, expected) && err == TG_OK && got != want) {
        fail(m, "%s: payment deadline +%" PRId64 ", want +%" PRId64, m->desc, got - T0_MS,
             want - T0_MS);
    }
}

static void run_confirm(model *m)
{
    tg_booking_id id;
    uint64_t user;
    uint32_t r = rnd(m, 100);
    uint32_t mask = r < 75   ? 1u << TG_BOOKING_PENDING_PAYMENT
                    : r < 85 ? (1u << TG_BOOKING_PAID) | (1u << TG_BOOKING_EXPIRED)
                             : ANY_MASK;
    pick_target(m, mask, &id, &user);
    describe_op(m, "confirm(%#" PRIx64 ")", id);
    tg_err err = pu_booking_confirm(m->p, id, m->now);
    tg_err expected = m_confirm(m, id);
    finish(m, OP_CONFIRM, err);
    expect_err(m, err, expected);
}

static void run_fail(model *m)
{
    tg_booking_id id;
    uint64_t user;
    pick_target(m, rnd(m, 100) < 70 ? LIVE_MASK : ANY_MASK, &id, &user);
    describe_op(m, "fail(%#" PRIx64 ")", id);
    tg_err err = pu_booking_fail(m->p, id, m->now);
    tg_err expected = m_fail(m, id);
    finish(m, OP_FAIL, err);
    expect_err(m, err, expected);
}

static void run_sweep(model *m)
{
    uint32_t r = rnd(m, 100);
    uint32_t scan_max = r < 40 ? TG_SWEEP_SCAN_MAX : r < 50 ? M_BOOKINGS : 1 + rnd(m, M_BOOKINGS);
    describe_op(m, "sweep(scan_max %u, cursor %u)", scan_max, m->sweep_cursor);
    uint32_t got = pu_sweep(m->p, m->now, scan_max);
    uint32_t want = m_sweep(m, scan_max);
    finish(m, OP_SWEEP, TG_OK);
    if (got != want) {
        fail(m, "%s: expired %u bookings, want %u", m->desc, got, want);
    }
}

static void run_block(model *m)
{
    uint32_t seats[TG_BOOKING_SEATS_MAX + 1];
    uint32_t n = pick_seats(m, 3, NULL, seats);
    char text[160];
    seats_text(text, sizeof text, seats, n);
    describe_op(m, "block([%s])", text);
    pu_hold_result got, want;
    tg_err err = pu_seats_block(m->p, seats, n, &got);
    tg_err expected = m_block(m, seats, n, &want);
    finish(m, OP_BLOCK, err);
    if (expect_err(m, err, expected) && err == TG_ESEAT_TAKEN) {
        same_hold(m, err, &got, &want);
    }
}

static void run_unblock(model *m)
{
    uint32_t seats[TG_BOOKING_SEATS_MAX + 1];
    uint32_t blocked[M_SEATS], nb = 0, n = 0;
    for (uint32_t s = 0; s < M_SEATS; s++) {
        if (m_state(m, s) == TG_SEAT_BLOCKED) {
            blocked[nb++] = s;
        }
    }
    if (nb > 0 && rnd(m, 100) < 75) {
        uint32_t first = rnd(m, nb);
        n = 1 + rnd(m, nb < 3 ? nb : 3);
        for (uint32_t i = 0; i < n; i++) {
            seats[i] = blocked[(first + i) % nb];
        }
    } else {
        n = pick_seats(m, 3, NULL, seats);
    }
    char text[160];
    seats_text(text, sizeof text, seats, n);
    describe_op(m, "unblock([%s])", text);
    tg_err err = pu_seats_unblock(m->p, seats, n);
    tg_err expected = m_unblock(m, seats, n);
    finish(m, OP_UNBLOCK, err);
    expect_err(m, err, expected);
}

static void run_get(model *m)
{
    tg_booking_id id;
    uint64_t user;
    pick_target(m, ANY_MASK, &id, &user);
    describe_op(m, "get(%#" PRIx64 ", user %" PRIu64 ")", id, user);
    pu_booking_info got, want;
    tg_err err = pu_booking_get(m->p, id, user, &got);
    m_booking *b = NULL;
    tg_err expected = m_lock(m, id, user, &b);
    finish(m, OP_GET, err);
    if (expect_err(m, err, expected) && err == TG_OK) {
        m_info(b, &want);
        same_booking(m, &got, &want);
    }
}

static void run_ack(model *m)
{
    uint32_t r = rnd(m, 100);
    uint64_t seq = r < 55   ? m->persisted + rnd(m, (uint32_t)(m->head - m->persisted) + 1)
                   : r < 75 ? m->head
                   : r < 85 ? m->head + 1 + rnd(m, 3)
                   : r < 95 ? m->persisted - (m->persisted > 0 ? rnd(m, 3) % m->persisted : 0)
                            : 0;
    describe_op(m, "ack(%" PRIu64 ") persisted %" PRIu64 " head %" PRIu64, seq, m->persisted,
                m->head);
    tg_err err = pu_log_ack(m->p, seq);
    tg_err expected = seq > m->head ? TG_EINVAL : TG_OK;
    if (expected == TG_OK && seq > m->persisted) {
        m->persisted = seq;
    }
    finish(m, OP_ACK, err);
    expect_err(m, err, expected);
}

/* Time passes: a little, a lot, or exactly to (or just before) a deadline. */
static void run_tick(model *m)
{
    uint32_t r = rnd(m, 100);
    int64_t before = m->now;
    const m_booking *b = &m->slots[rnd(m, M_BOOKINGS)];
    if (r < 60 && b->seq != 0 && status_live(b->status) && b->deadline_ms > m->now) {
        m->now = b->deadline_ms - (r < 30 ? 0 : 1);
    } else {
        m->now += r < 90 ? rnd(m, 300) : rnd(m, 3 * M_PAYMENT_WINDOW_MS);
    }
    describe_op(m, "tick(+%" PRId64 " ms)", m->now - before);
    finish(m, OP_TICK, TG_OK);
}

typedef void (*op_fn)(model *m);

static const op_fn op_runners[OP_COUNT] = {
    run_create, run_hold,  run_hold_best, run_release, run_cancel, run_begin_payment, run_confirm,
    run_fail,   run_sweep, run_block,     run_unblock, run_get,    run_ack,           run_tick,
};

static int pick_op(model *m)
{
    uint32_t total = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        total += op_weights[op];
    }
    uint32_t r = rnd(m, total);
    int op = 0;
    for (; r >= op_weights[op]; op++) {
        r -= op_weights[op];
    }
    return op == OP_ACK && m->drought ? OP_TICK : op;
}

/* ---- Runs ---------------------------------------------------------------------------------- */

static char g_segment[TG_SHM_NAME_BYTES]; /* the current segment, destroyed by .fini */

static void cleanup(void)
{
    if (g_segment[0] != '\0') {
        pu_partition_destroy(g_segment);
        g_segment[0] = '\0';
    }
}

static void model_config(model *m)
{
    for (uint32_t s = 0; s < M_SECTIONS; s++) {
        snprintf(m->sections[s].name, TG_NAME_BYTES, "S%u", s + 1);
        m->sections[s].price_minor = 2500 * (int64_t)(s + 1);
        memcpy(m->sections[s].currency, "EUR", 4);
        m->sections[s].row_count = M_ROWS_PER_SECTION;
    }
    for (uint32_t r = 0; r < M_ROWS; r++) {
        snprintf(m->rows[r].name, TG_NAME_BYTES, "R%u", r % M_ROWS_PER_SECTION + 1);
        m->rows[r].seat_count = M_ROW_SEATS;
    }
    m->cfg = (pu_partition_config){
        .partition_id = M_PARTITION,
        .event_id = 99,
        .section_count = M_SECTIONS,
        .sections = m->sections,
        .row_count = M_ROWS,
        .rows = m->rows,
        .booking_capacity = M_BOOKINGS,
        .log_records = M_LOG_RECORDS,
        .hold_ttl_ms = M_HOLD_TTL_MS,
        .payment_window_ms = M_PAYMENT_WINDOW_MS,
    };
}

/* A fresh partition and a fresh model of it (an empty, all-FREE segment). */
static void model_start(model *m)
{
    static unsigned counter;
    snprintf(m->name, sizeof m->name, "/tixgrid-test-model-%ld-%u", (long)getpid(), counter++);
    pu_partition_destroy(m->name);
    model_config(m);
    tg_err err = pu_partition_create(m->name, &m->cfg, &m->p);
    cr_assert_eq(err, TG_OK, "create %s: %s", m->name, tg_errname(err));
    memcpy(g_segment, m->name, sizeof g_segment);
    memset(m->words, 0, sizeof m->words);
    memset(m->slots, 0, sizeof m->slots);
    m->next_seq = m->sweep_cursor = 0;
    m->head = m->persisted = m->bookings_created = 0;
    m->issued_count = 0;
}

static void model_stop(model *m)
{
    pu_partition_detach(m->p);
    m->p = NULL;
    cr_assert_eq(pu_partition_destroy(m->name), TG_OK);
    g_segment[0] = '\0';
}

/* Sold seats and paid bookings never come back: start over before they
 * crowd out everything else. */
static bool model_saturated(const model *m)
{
    uint32_t paid = 0, sold = 0;
    for (uint32_t i = 0; i < M_BOOKINGS; i++) {
        paid += m->slots[i].seq != 0 && m->slots[i].status == TG_BOOKING_PAID;
    }
    for (uint32_t s = 0; s < M_SEATS; s++) {
        sold += m_state(m, s) == TG_SEAT_SOLD;
    }
    return paid >= M_BOOKINGS / 2 || sold >= M_SEATS / 2;
}

static void model_step(model *m)
{
    if (m->op % DROUGHT_WINDOW == 0) {
        m->drought = rnd(m, 100) < 30;
    }
    m->now += rnd(m, 8);
    m->expect_count = 0;
    op_runners[pick_op(m)](m);
    if (!m->failed) {
        check_log(m);
    }
    if (!m->failed && m->op % CHECK_EVERY == CHECK_EVERY - 1) {
        check_everything(m);
    }
    if (!m->failed && model_saturated(m)) {
        check_everything(m);
        model_stop(m);
        model_start(m);
    }
}

static void model_report_failure(const model *m)
{
    cr_log_error("seed %" PRIu64 " failed at op %" PRIu64 "; the last operations:", m->seed, m->op);
    uint64_t first = m->op + 1 > M_HISTORY ? m->op + 1 - M_HISTORY : 0;
    for (uint64_t i = first; i <= m->op; i++) {
        cr_log_error("  %s", m->history[i % M_HISTORY]);
    }
}

static bool model_run(model *m, uint64_t seed, uint64_t ops)
{
    memset(m, 0, sizeof *m);
    m->seed = seed;
    m->rng = seed * UINT64_C(0x9E3779B97F4A7C15) + 0x2545F4914F6CDD1Dull;
    m->now = T0_MS;
    model_start(m);
    for (m->op = 0; m->op < ops && !m->failed; m->op++) {
        model_step(m);
    }
    if (m->failed) {
        m->op--;
        model_report_failure(m);
        return false;
    }
    check_everything(m);
    model_stop(m);
    return !m->failed;
}

/* Paths that a default run must have taken, or the test proves less than it
 * claims. */
static void model_assert_coverage(uint64_t (*total)[TG_ERR_COUNT_])
{
    static const struct {
        int op;
        tg_err err;
    } needed[] = {
        {OP_CREATE, TG_OK},
        {OP_CREATE, TG_EBOOKINGS_FULL},
        {OP_CREATE, TG_EBACKLOG},
        {OP_HOLD, TG_OK},
        {OP_HOLD, TG_ESEAT_TAKEN},
        {OP_HOLD, TG_EEXPIRED},
        {OP_HOLD, TG_EBACKLOG},
        {OP_HOLD, TG_ETOO_MANY_SEATS},
        {OP_HOLD, TG_EBOOKING_STATE},
        {OP_HOLD, TG_ENOT_FOUND},
        {OP_HOLD, TG_EINVAL},
        {OP_HOLD, TG_ESEAT_RANGE},
        {OP_HOLD_BEST, TG_OK},
        {OP_HOLD_BEST, TG_ENO_SEATS},
        {OP_RELEASE, TG_OK},
        {OP_RELEASE, TG_ESEAT_NOT_HELD},
        {OP_RELEASE, TG_ELOG_FULL},
        {OP_CANCEL, TG_OK},
        {OP_BEGIN_PAYMENT, TG_OK},
        {OP_BEGIN_PAYMENT, TG_EEXPIRED},
        {OP_CONFIRM, TG_OK},
        {OP_CONFIRM, TG_EEXPIRED},
        {OP_FAIL, TG_OK},
        {OP_BLOCK, TG_OK},
        {OP_BLOCK, TG_ESEAT_TAKEN},
        {OP_UNBLOCK, TG_OK},
        {OP_UNBLOCK, TG_EINVAL},
        {OP_GET, TG_EWRONG_PARTITION},
        {OP_ACK, TG_EINVAL},
    };
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        cr_expect(total[needed[i].op][needed[i].err] > 0, "no %s ever returned %s",
                  op_names[needed[i].op], tg_errname(needed[i].err));
    }
}

static void model_log_outcomes(uint64_t (*total)[TG_ERR_COUNT_])
{
    for (int op = 0; op < OP_COUNT; op++) {
        char line[600];
        int used = snprintf(line, sizeof line, "  %-13s", op_names[op]);
        for (int e = 0; e < TG_ERR_COUNT_ && used < (int)sizeof line - 40; e++) {
            if (total[op][e] != 0) {
                used += snprintf(line + used, sizeof line - (size_t)used, " %s=%" PRIu64,
                                 tg_errname((tg_err)e), total[op][e]);
            }
        }
        cr_log_info("%s", line);
    }
}

Test(model, engine_matches_the_reference_model_over_random_operations, .fini = cleanup,
     .timeout = 600)
{
    uint64_t first = env_u64("TIXGRID_MODEL_SEED", 1);
    uint64_t seeds = env_u64("TIXGRID_MODEL_SEEDS", 20);
    uint64_t ops = env_u64("TIXGRID_MODEL_OPS", 20000);
    model *m = calloc(1, sizeof *m);
    uint64_t(*total)[TG_ERR_COUNT_] = calloc(OP_COUNT, sizeof *total);
    uint64_t best_picks[2] = {0, 0};
    cr_assert(m != NULL && total != NULL);
    for (uint64_t seed = first; seed < first + seeds; seed++) {
        bool ok = model_run(m, seed, ops);
        cr_assert(ok,
                  "seed %" PRIu64 " (rerun: TIXGRID_MODEL_SEED=%" PRIu64
                  " TIXGRID_MODEL_SEEDS=1): %s",
                  seed, seed, m->why);
        for (int op = 0; op < OP_COUNT; op++) {
            for (int e = 0; e < TG_ERR_COUNT_; e++) {
                total[op][e] += m->outcomes[op][e];
            }
        }
        best_picks[0] += m->best_picks[0];
        best_picks[1] += m->best_picks[1];
    }
    cr_log_info("%" PRIu64 " seeds x %" PRIu64 " operations:", seeds, ops);
    model_log_outcomes(total);
    cr_log_info("  best available chose %" PRIu64 " groups side by side and %" PRIu64 " split",
                best_picks[0], best_picks[1]);
    if (seeds * ops >= 100000) {
        model_assert_coverage(total);
        cr_expect(best_picks[1] > 0, "best available never split a group");
    }
    free(total);
    free(m);
}

/*
 * contention_test.c — the seat engine under many threads and processes.
 *
 * partition.h promises that any number of threads in any number of attached
 * processes may sell from one partition at once without a partition lock.
 * These tests put that promise under load and then check every invariant of
 * DESIGN.md from the outside:
 *
 *   - a burst: several threads each run TIXGRID_CONTENTION_OPS (default
 *     1,000,000) random operations on one 100,000-seat partition, with their
 *     own users and bookings but heavily overlapping seats (half of the holds
 *     go to a small hot block), while a consumer thread reads and acknowledges
 *     the change log and a forked observer process reads the segment;
 *   - a race: every thread tries to hold the same 1,000 seats one at a time;
 *     each seat must be won by exactly one thread, the others must be told
 *     TG_ESEAT_TAKEN;
 *   - resets: shoppers book, pay and cancel while another thread resets the
 *     partition over and over; the log must still replay to the segment;
 *   - a crash: a child process sells from two threads and is SIGKILLed at a
 *     random moment; the parent attaches as owner (recovery) and checks.
 *
 * Each worker thread is the only one that touches its own bookings and no
 * booking can expire (the clock stands still), so a worker knows exactly what
 * each of its calls must return apart from seat conflicts and back-pressure;
 * it keeps that knowledge as a small local model, which the final checks
 * compare with the segment.  Workers never call Criterion from their threads:
 * they record the first failure and the main thread asserts on it.
 */
#include "partition.h"
#include "tap.h"

#include "tixgrid/clock.h"
#include "tixgrid/seat.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKER_SLOTS  8u    /* bookings a worker keeps open at once */
#define BURST_THREADS 4u    /* writer threads of the burst (this box has 2 cores) */
#define HOT_SEATS     512u  /* seats of the hot block that half of the holds target */
#define LOG_BATCH     1024u /* records the log consumer reads at a time */
#define WHY_BYTES     512u  /* bytes of a failure description */
#define FROZEN_NOW_MS INT64_C(1900000000000) /* the clock of every worker: nothing expires */

/* ---- Small helpers ------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)((rng_next(s) >> 32) % n);
}

static uint64_t seed_from_clock(void)
{
    uint64_t seed = (uint64_t)tg_mono_ns() ^ ((uint64_t)getpid() << 32);
    return seed == 0 ? 1 : seed;
}

static void why_set(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void why_set(char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, WHY_BYTES, fmt, ap);
    va_end(ap);
}

static uint64_t env_u64(const char *name, uint64_t fallback)
{
    const char *text = getenv(name);
    if (text == NULL || *text == '\0') {
        return fallback;
    }
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    return (end != NULL && *end == '\0' && value > 0) ? (uint64_t)value : fallback;
}

/* Every segment of this run is named "/tixgrid-ctest-<runner pid>-...", so
 * that main() can remove whatever a failed case (which exits on the spot)
 * left in /dev/shm. */
#define SEGMENT_PREFIX "tixgrid-ctest-"
static pid_t runner_pid;

static void shm_name_make(char *buf, const char *tag)
{
    static unsigned counter;
    snprintf(buf, TG_SHM_NAME_BYTES, "/" SEGMENT_PREFIX "%ld-%s-%ld-%u", (long)runner_pid, tag,
             (long)getpid(), counter++);
    pu_partition_destroy(buf);
}

static void segments_sweep(void)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, SEGMENT_PREFIX "%ld-", (long)runner_pid);
    DIR *dir = opendir("/dev/shm");
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        if (strncmp(entry->d_name, prefix, strlen(prefix)) == 0) {
            char name[TG_SHM_NAME_BYTES + 8];
            snprintf(name, sizeof name, "/%.*s", (int)TG_SHM_NAME_BYTES, entry->d_name);
            pu_partition_destroy(name);
        }
    }
    if (dir != NULL) {
        closedir(dir);
    }
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A TAP comment line: shown by meson's log, ignored by the counters. */
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stdout);
    vprintf(fmt, ap);
    fputs("\n", stdout);
    fflush(stdout);
    va_end(ap);
}

/* What a test holds and how to let it go; a case releases it all before it
 * passes (a failed check exits the case's process on the spot). */
#define TRACKED_MAX 32u
typedef void (*release_fn)(void *);
static struct {
    void *ptr;
    release_fn release;
} tracked[TRACKED_MAX];

static void *track(void *ptr, release_fn release)
{
    TAP_CHECK((ptr) != NULL, "out of memory");
    for (unsigned i = 0; i < TRACKED_MAX; i++) {
        if (tracked[i].ptr == NULL) {
            tracked[i].ptr = ptr;
            tracked[i].release = release;
            return ptr;
        }
    }
    TAP_CHECK(false, "more than %u tracked objects", TRACKED_MAX);
    return ptr;
}

/* Releases ptr now (it must be tracked). */
static void untrack(void *ptr)
{
    for (unsigned i = 0; i < TRACKED_MAX; i++) {
        if (tracked[i].ptr == ptr) {
            tracked[i].ptr = NULL;
            tracked[i].release(ptr);
            return;
        }
    }
}

static void release_detach(void *ptr)
{
    pu_partition_detach(ptr);
}

/* ---- Layout ------------------------------------------------------------- */

typedef struct {
    pu_section_spec sections[TG_SECTIONS_MAX];
    pu_row_spec rows[TG_ROWS_MAX];
    pu_partition_config cfg;
    uint32_t row_seats;     /* seats of every row */
    uint32_t section_seats; /* seats of every section */
    uint32_t seat_count;
} layout;

/* A uniform layout: sections × rows_per_section rows × row_seats seats. */
static layout *layout_make(uint32_t sections, uint32_t rows_per_section, uint32_t row_seats)
{
    layout *l = track(calloc(1, sizeof *l), free);
    TAP_CHECK(sections <= TG_SECTIONS_MAX && sections * rows_per_section <= TG_ROWS_MAX, "%s",
              "failed");
    for (uint32_t s = 0; s < sections; s++) {
        snprintf(l->sections[s].name, TG_NAME_BYTES, "S%u", s + 1);
        l->sections[s].price_minor = 1000 * (int64_t)(s + 1);
        memcpy(l->sections[s].currency, "EUR", 4);
        l->sections[s].row_count = rows_per_section;
        for (uint32_t r = 0; r < rows_per_section; r++) {
            pu_row_spec *row = &l->rows[s * rows_per_section + r];
            snprintf(row->name, TG_NAME_BYTES, "R%u", r + 1);
            row->seat_count = row_seats;
        }
    }
    l->row_seats = row_seats;
    l->section_seats = rows_per_section * row_seats;
    l->seat_count = sections * l->section_seats;
    l->cfg.partition_id = 7;
    l->cfg.event_id = 4242;
    l->cfg.section_count = sections;
    l->cfg.sections = l->sections;
    l->cfg.row_count = sections * rows_per_section;
    l->cfg.rows = l->rows;
    return l;
}

static pu_partition *partition_new(const layout *l, const char *name)
{
    pu_partition *p = NULL;
    tg_err err = pu_partition_create(name, &l->cfg, &p);
    TAP_CHECK((err) == (TG_OK), "pu_partition_create(%s): %s", name, tg_errname(err));
    return track(p, release_detach);
}

/* ---- Log consumer --------------------------------------------------------- */

/* Reads the change log from the start, checks that sequence numbers are dense
 * and that each seat's records follow its word version by version, and
 * acknowledges what it read so that the ring never fills.  It also replays
 * the log as a replica would: the last word of every seat and the last
 * status and version of every booking, for comparison with the segment. */
typedef struct {
    pu_partition *p;
    uint32_t seat_count;
    uint64_t next_seq;       /* the next sequence number expected */
    tg_seat_word *last_word; /* per seat: the word of its last record (or its first word) */
    uint8_t *booking_status; /* per booking seq: status of its last record, 0 if none */
    uint32_t *booking_version;
    uint32_t booking_cap; /* entries of the two arrays above */
    bool ack;             /* acknowledge what was read */
    /* The log of a writer that was killed: a change whose record slot the
     * dead writer never filled (a no-op now) may have been followed by the
     * next owner's change, so a seat's versions may skip, never go back. */
    bool after_crash;
    int stop; /* set (atomically) by the main thread */
    uint64_t seat_records, booking_records, nop_records;
    uint64_t repeated_records;   /* seat records repeating the seat's last word */
    uint64_t given_back_records; /* FREE two versions on: a failed hold's give-back */
    bool failed;
    char why[WHY_BYTES];
    pu_log_record buf[LOG_BATCH];
} log_consumer;

static void consumer_free(log_consumer *c)
{
    free(c->last_word);
    free(c->booking_status);
    free(c->booking_version);
    free(c);
}

static void release_consumer(void *ptr)
{
    consumer_free(ptr);
}

static log_consumer *consumer_new(pu_partition *p, uint32_t seat_count, bool ack)
{
    log_consumer *c = track(calloc(1, sizeof *c), release_consumer);
    c->p = p;
    c->seat_count = seat_count;
    c->ack = ack;
    c->last_word = calloc(seat_count, sizeof *c->last_word);
    TAP_CHECK((c->last_word) != NULL, "%s", "out of memory");
    pu_partition_info info;
    pu_partition_describe(p, &info);
    c->next_seq = info.log_persisted + 1;
    for (uint32_t s = 0; s < seat_count; s++) {
        pu_seat_info seat;
        TAP_CHECK((pu_seat_get(p, s, &seat)) == (TG_OK), "%s", "unexpected value");
        c->last_word[s] = seat.word;
    }
    return c;
}

static bool consumer_note_booking(log_consumer *c, const pu_log_record *r)
{
    if (r->ident >= c->booking_cap) {
        uint32_t cap = c->booking_cap == 0 ? 4096 : c->booking_cap;
        while (cap <= r->ident) {
            cap *= 2;
        }
        uint8_t *status = realloc(c->booking_status, cap);
        uint32_t *version = realloc(c->booking_version, cap * sizeof *version);
        if (status != NULL) {
            c->booking_status = status;
        }
        if (version != NULL) {
            c->booking_version = version;
        }
        if (status == NULL || version == NULL) {
            why_set(c->why, "log consumer: out of memory");
            return false;
        }
        memset(status + c->booking_cap, 0, cap - c->booking_cap);
        memset(version + c->booking_cap, 0, (cap - c->booking_cap) * sizeof *version);
        c->booking_cap = cap;
    }
    c->booking_status[r->ident] = r->status;
    c->booking_version[r->ident] = r->version;
    return true;
}

static bool consumer_take(log_consumer *c, const pu_log_record *r)
{
    if (r->seq != c->next_seq) {
        why_set(c->why, "log: expected seq %" PRIu64 ", read %" PRIu64, c->next_seq, r->seq);
        return false;
    }
    c->next_seq++;
    if (r->kind == PU_REC_NOP) {
        c->nop_records++;
        return true;
    }
    if (r->kind == PU_REC_BOOKING) {
        c->booking_records++;
        if (r->status == TG_BOOKING_EMPTY || r->status >= TG_BOOKING_STATUS_COUNT) {
            why_set(c->why, "log seq %" PRIu64 ": booking status %u", r->seq, r->status);
            return false;
        }
        return consumer_note_booking(c, r);
    }
    if (r->kind != PU_REC_SEAT || r->ident >= c->seat_count) {
        why_set(c->why, "log seq %" PRIu64 ": kind %u ident %u", r->seq, r->kind, r->ident);
        return false;
    }
    c->seat_records++;
    if (r->word == c->last_word[r->ident]) {
        /* The same word again: recovery re-logs a seat whose logged[] mark
         * lags (see the report); harmless to a replica, so only counted. */
        c->repeated_records++;
        return true;
    }
    uint32_t before = tg_seat_word_version(c->last_word[r->ident]);
    uint32_t after = tg_seat_word_version(r->word);
    bool next = after == ((before + 1) & TG_SEAT_VERSION_MASK);
    /* A failed hold or block gives a seat back FREE two versions on: the
     * word it wrote in between is never logged, nor ever reused (seats.c). */
    bool given_back = after == ((before + 2) & TG_SEAT_VERSION_MASK) &&
                      tg_seat_word_state(c->last_word[r->ident]) == TG_SEAT_FREE &&
                      tg_seat_word_state(r->word) == TG_SEAT_FREE;
    c->given_back_records += given_back ? 1 : 0;
    if (r->version != after ||
        !(next || given_back || (c->after_crash && tg_seat_version_newer(after, before)))) {
        why_set(c->why, "log seq %" PRIu64 ": seat %u record version %u word version %u after %u",
                r->seq, r->ident, r->version, after, before);
        return false;
    }
    c->last_word[r->ident] = r->word;
    return true;
}

/* Reads what is written; returns how many records it took, or -1 on failure. */
static int64_t consumer_poll(log_consumer *c)
{
    uint32_t n = pu_log_read(c->p, c->next_seq, c->buf, LOG_BATCH);
    for (uint32_t i = 0; i < n; i++) {
        if (!consumer_take(c, &c->buf[i])) {
            c->failed = true;
            return -1;
        }
    }
    if (n > 0 && c->ack) {
        tg_err err = pu_log_ack(c->p, c->next_seq - 1);
        if (err != TG_OK) {
            why_set(c->why, "pu_log_ack(%" PRIu64 "): %s", c->next_seq - 1, tg_errname(err));
            c->failed = true;
            return -1;
        }
    }
    return n;
}

static void *consumer_main(void *arg)
{
    log_consumer *c = arg;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        int64_t n = consumer_poll(c);
        if (n < 0) {
            return NULL;
        }
        if (n == 0) {
            struct timespec pause = {0, 100000};
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

/* After the writers stopped: reads the rest, which must reach the log head,
 * and checks that every seat's last record carries its current word. */
static bool consumer_finish(log_consumer *c, char *why)
{
    pu_partition_info info;
    pu_partition_describe(c->p, &info);
    while (!c->failed && c->next_seq <= info.log_head) {
        int64_t n = consumer_poll(c);
        if (n == 0) {
            why_set(c->why, "log: seq %" PRIu64 " of %" PRIu64 " is never completed", c->next_seq,
                    info.log_head);
            c->failed = true;
        }
    }
    if (c->failed) {
        memcpy(why, c->why, WHY_BYTES);
        return false;
    }
    for (uint32_t s = 0; s < c->seat_count; s++) {
        pu_seat_info seat;
        pu_seat_get(c->p, s, &seat);
        if (seat.word != c->last_word[s]) {
            why_set(why, "seat %u: word %#" PRIx64 " but its last log record says %#" PRIx64, s,
                    seat.word, c->last_word[s]);
            return false;
        }
    }
    return true;
}

/* Every booking the log spoke of has, if it still has its slot, the status
 * and version of its last record; every held or sold seat names a booking
 * the log spoke of.  Together with consumer_finish this is what a replica
 * that applied the whole log would hold. */
static bool consumer_replay_matches(log_consumer *c, char *why)
{
    pu_partition_info info;
    pu_partition_describe(c->p, &info);
    for (uint32_t seq = 1; seq < c->booking_cap; seq++) {
        if (c->booking_status[seq] == 0) {
            continue;
        }
        pu_booking_info b;
        tg_err err =
            pu_booking_get(c->p, tg_booking_id_make(info.partition_id, seq), PU_USER_SYSTEM, &b);
        if (err == TG_ENOT_FOUND) {
            continue; /* its slot was reused by a later booking */
        }
        if (err != TG_OK || b.status != c->booking_status[seq] ||
            b.version != c->booking_version[seq]) {
            why_set(why, "booking seq %u is %s v%u (get: %s), but its last log record says %s v%u",
                    seq, err == TG_OK ? tg_booking_status_name(b.status) : "-",
                    err == TG_OK ? b.version : 0, tg_errname(err),
                    tg_booking_status_name((tg_booking_status)c->booking_status[seq]),
                    c->booking_version[seq]);
            return false;
        }
    }
    for (uint32_t s = 0; s < c->seat_count; s++) {
        uint32_t seq = tg_seat_word_booking(c->last_word[s]);
        if (seq != 0 && (seq >= c->booking_cap || c->booking_status[seq] == 0)) {
            why_set(why, "seat %u names booking seq %u, of which the log has no record", s, seq);
            return false;
        }
    }
    return true;
}

/* ---- Workers ---------------------------------------------------------------- */

typedef struct {
    tg_booking_id id; /* 0: the slot is empty */
    tg_booking_status status;
    uint32_t seat_count;
    uint32_t seats[TG_BOOKING_SEATS_MAX]; /* ascending */
} held_booking;

enum {
    OP_CREATE,
    OP_HOLD,
    OP_HOLD_BEST,
    OP_RELEASE,
    OP_BEGIN_PAYMENT,
    OP_CONFIRM,
    OP_FAIL,
    OP_CANCEL,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "create", "hold", "hold_best", "release", "begin_payment", "confirm", "fail", "cancel",
};

typedef struct {
    pu_partition *p;
    const layout *l;
    uint32_t index;
    uint64_t user_id;
    uint64_t rng;
    uint64_t ops;         /* API calls to make */
    uint32_t hold_max;    /* seats one hold asks for at most */
    uint32_t hot_first;   /* first seat of the hot block */
    uint32_t sold_budget; /* seats this worker may sell; then it fails payments */
    int stop;             /* optional early stop (set atomically) */
    held_booking slots[WORKER_SLOTS];
    held_booking *paid; /* paid bookings, in order */
    uint32_t paid_count, paid_capacity;
    uint32_t sold_seats;
    uint64_t done;
    uint64_t outcomes[OP_COUNT][TG_ERR_COUNT_];
    bool failed;
    char why[WHY_BYTES];
} worker;

static bool worker_fail(worker *w, const char *op, tg_booking_id id, tg_err got, const char *want)
{
    why_set(w->why, "worker %u op %" PRIu64 " %s(booking %#" PRIx64 "): got %s, want %s", w->index,
            w->done, op, id, tg_errname(got), want);
    w->failed = true;
    return false;
}

static void worker_note(worker *w, int op, tg_err err)
{
    w->outcomes[op][err < TG_ERR_COUNT_ ? err : 0]++;
}

static uint32_t worker_pick_seat(worker *w, bool hot)
{
    if (hot) {
        return w->hot_first + rng_below(&w->rng, HOT_SEATS);
    }
    return rng_below(&w->rng, w->l->seat_count);
}

static bool seat_listed(const uint32_t *seats, uint32_t n, uint32_t seat)
{
    for (uint32_t i = 0; i < n; i++) {
        if (seats[i] == seat) {
            return true;
        }
    }
    return false;
}

static void worker_slot_clear(held_booking *b)
{
    memset(b, 0, sizeof *b);
}

static bool worker_create(worker *w, held_booking *b)
{
    pu_booking_info info;
    tg_err err = pu_booking_create(w->p, w->user_id, FROZEN_NOW_MS, &info);
    worker_note(w, OP_CREATE, err);
    /* A new booking is logged, so it is refused at the high-water mark too
     * (partition.h names only bookings_full; booking.c adds backlog). */
    if (err == TG_EBOOKINGS_FULL || err == TG_EBACKLOG) {
        return true;
    }
    if (err != TG_OK) {
        return worker_fail(w, "create", 0, err, "ok, bookings_full or backlog");
    }
    if (info.status != TG_BOOKING_CREATED || info.seat_count != 0 || info.user_id != w->user_id) {
        why_set(w->why, "worker %u: new booking %#" PRIx64 " has status %d, %u seats", w->index,
                info.id, info.status, info.seat_count);
        w->failed = true;
        return false;
    }
    b->id = info.id;
    b->status = TG_BOOKING_CREATED;
    b->seat_count = 0;
    return true;
}

/* The booking after a successful hold: its old seats plus the new ones. */
static bool worker_hold_ok(worker *w, held_booking *b, const pu_hold_result *out, uint32_t added)
{
    if (out->seat_count != b->seat_count + added) {
        why_set(w->why, "worker %u: hold into %#" PRIx64 " left %u seats, want %u", w->index, b->id,
                out->seat_count, b->seat_count + added);
        w->failed = true;
        return false;
    }
    for (uint32_t i = 0; i < b->seat_count; i++) {
        if (!seat_listed(out->seats, out->seat_count, b->seats[i])) {
            why_set(w->why, "worker %u: hold into %#" PRIx64 " lost seat %u", w->index, b->id,
                    b->seats[i]);
            w->failed = true;
            return false;
        }
    }
    for (uint32_t i = 1; i < out->seat_count; i++) {
        if (out->seats[i - 1] >= out->seats[i]) {
            why_set(w->why, "worker %u: hold result not ascending", w->index);
            w->failed = true;
            return false;
        }
    }
    b->seat_count = out->seat_count;
    memcpy(b->seats, out->seats, out->seat_count * sizeof out->seats[0]);
    return true;
}

static bool worker_hold(worker *w, held_booking *b)
{
    uint32_t n = 1 + rng_below(&w->rng, w->hold_max);
    bool hot = rng_below(&w->rng, 2) == 0;
    uint32_t want[TG_BOOKING_SEATS_MAX];
    bool own = false;
    for (uint32_t i = 0; i < n; i++) {
        do {
            want[i] = worker_pick_seat(w, hot);
        } while (seat_listed(want, i, want[i]));
        own = own || seat_listed(b->seats, b->seat_count, want[i]);
    }
    pu_hold_result out;
    tg_err err = pu_seats_hold(w->p, b->id, w->user_id, want, n, FROZEN_NOW_MS, &out);
    worker_note(w, OP_HOLD, err);
    if (b->seat_count + n > TG_BOOKING_SEATS_MAX) {
        return err == TG_ETOO_MANY_SEATS || err == TG_ESEAT_TAKEN || err == TG_EBACKLOG
                   ? true
                   : worker_fail(w, "hold", b->id, err, "too_many_seats");
    }
    if (err == TG_OK && !own) {
        return worker_hold_ok(w, b, &out, n);
    }
    if (err == TG_ESEAT_TAKEN) {
        for (uint32_t i = 0; i < out.taken_count; i++) {
            if (!seat_listed(want, n, out.taken[i])) {
                return worker_fail(w, "hold", b->id, err, "taken seats among those requested");
            }
        }
        return out.taken_count > 0 ? true
                                   : worker_fail(w, "hold", b->id, err, "a taken seat named");
    }
    if (err == TG_EBACKLOG) {
        return true;
    }
    return worker_fail(w, "hold", b->id, err, own ? "seat_taken (own seat)" : "ok or seat_taken");
}

/* New seats of a best-available hold lie in the requested section and, when
 * adjacency was demanded, side by side in one row. */
static bool worker_best_shape(worker *w, const held_booking *b, const pu_hold_result *out,
                              const pu_best_request *req)
{
    uint32_t fresh[TG_BOOKING_SEATS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < out->seat_count; i++) {
        if (!seat_listed(b->seats, b->seat_count, out->seats[i])) {
            fresh[n++] = out->seats[i];
        }
    }
    bool ok = n == req->quantity;
    for (uint32_t i = 0; ok && i < n; i++) {
        if (req->section >= 0 && fresh[i] / w->l->section_seats != (uint32_t)req->section) {
            ok = false;
        }
        if (req->adjacent_only && i > 0 &&
            (fresh[i] != fresh[i - 1] + 1 ||
             fresh[i] / w->l->row_seats != fresh[0] / w->l->row_seats)) {
            ok = false;
        }
    }
    if (!ok) {
        why_set(w->why,
                "worker %u: best hold of %u (section %d, adjacent %d) gave %u new seats "
                "starting %u",
                w->index, req->quantity, req->section, req->adjacent_only, n, n > 0 ? fresh[0] : 0);
        w->failed = true;
    }
    return ok;
}

static bool worker_hold_best(worker *w, held_booking *b)
{
    pu_best_request req = {
        .quantity = 1 + rng_below(&w->rng, 4),
        .section =
            rng_below(&w->rng, 2) == 0 ? -1 : (int32_t)rng_below(&w->rng, w->l->cfg.section_count),
        .adjacent_only = rng_below(&w->rng, 2) == 0,
    };
    pu_hold_result out;
    tg_err err = pu_seats_hold_best(w->p, b->id, w->user_id, &req, FROZEN_NOW_MS, &out);
    worker_note(w, OP_HOLD_BEST, err);
    if (b->seat_count + req.quantity > TG_BOOKING_SEATS_MAX) {
        return err == TG_ETOO_MANY_SEATS || err == TG_EBACKLOG
                   ? true
                   : worker_fail(w, "hold_best", b->id, err, "too_many_seats");
    }
    if (err == TG_OK) {
        return worker_best_shape(w, b, &out, &req) && worker_hold_ok(w, b, &out, req.quantity);
    }
    /* best.c gives up with TG_EBUSY when others keep taking its choice
     * (limits.h says TG_ENO_SEATS): both mean "retry". */
    if (err == TG_ENO_SEATS || err == TG_EBACKLOG || err == TG_EBUSY) {
        return true;
    }
    return worker_fail(w, "hold_best", b->id, err, "ok, no_seats, backlog or busy");
}

static bool worker_release(worker *w, held_booking *b)
{
    uint32_t n = 1 + rng_below(&w->rng, b->seat_count);
    uint32_t pick[TG_BOOKING_SEATS_MAX];
    uint32_t first = rng_below(&w->rng, b->seat_count);
    for (uint32_t i = 0; i < n; i++) {
        pick[i] = b->seats[(first + i) % b->seat_count];
    }
    bool stranger = rng_below(&w->rng, 20) == 0;
    if (stranger) {
        uint32_t other = worker_pick_seat(w, false);
        if (seat_listed(b->seats, b->seat_count, other)) {
            stranger = false;
        } else {
            pick[rng_below(&w->rng, n)] = other;
        }
    }
    tg_err err = pu_seats_release(w->p, b->id, w->user_id, pick, n, FROZEN_NOW_MS);
    worker_note(w, OP_RELEASE, err);
    if (stranger) {
        return err == TG_ESEAT_NOT_HELD ? true
                                        : worker_fail(w, "release", b->id, err, "seat_not_held");
    }
    if (err != TG_OK) {
        return worker_fail(w, "release", b->id, err, "ok");
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < b->seat_count; i++) {
        if (!seat_listed(pick, n, b->seats[i])) {
            b->seats[kept++] = b->seats[i];
        }
    }
    b->seat_count = kept;
    return true;
}

static bool worker_begin_payment(worker *w, held_booking *b)
{
    int64_t deadline = 0;
    tg_err err = pu_booking_begin_payment(w->p, b->id, w->user_id, FROZEN_NOW_MS, &deadline);
    worker_note(w, OP_BEGIN_PAYMENT, err);
    if (err != TG_OK) {
        return worker_fail(w, "begin_payment", b->id, err, "ok");
    }
    b->status = TG_BOOKING_PENDING_PAYMENT;
    return true;
}

static bool worker_keep_paid(worker *w, const held_booking *b)
{
    if (w->paid_count == w->paid_capacity) {
        uint32_t capacity = w->paid_capacity == 0 ? 256 : 2 * w->paid_capacity;
        held_booking *grown = realloc(w->paid, capacity * sizeof *grown);
        if (grown == NULL) {
            why_set(w->why, "out of memory");
            w->failed = true;
            return false;
        }
        w->paid = grown;
        w->paid_capacity = capacity;
    }
    w->paid[w->paid_count++] = *b;
    w->sold_seats += b->seat_count;
    return true;
}

static bool worker_confirm(worker *w, held_booking *b)
{
    tg_err err = pu_booking_confirm(w->p, b->id, FROZEN_NOW_MS);
    worker_note(w, OP_CONFIRM, err);
    if (err != TG_OK) {
        return worker_fail(w, "confirm", b->id, err, "ok");
    }
    if (rng_below(&w->rng, 8) == 0) {
        err = pu_booking_confirm(w->p, b->id, FROZEN_NOW_MS);
        worker_note(w, OP_CONFIRM, err);
        if (err != TG_OK) {
            return worker_fail(w, "confirm again", b->id, err, "ok (idempotent)");
        }
    }
    b->status = TG_BOOKING_PAID;
    bool kept = worker_keep_paid(w, b);
    worker_slot_clear(b);
    return kept;
}

static bool worker_end(worker *w, held_booking *b, bool cancel)
{
    tg_err err = cancel ? pu_booking_cancel(w->p, b->id, w->user_id, FROZEN_NOW_MS)
                        : pu_booking_fail(w->p, b->id, FROZEN_NOW_MS);
    worker_note(w, cancel ? OP_CANCEL : OP_FAIL, err);
    if (err != TG_OK) {
        return worker_fail(w, cancel ? "cancel" : "fail", b->id, err, "ok");
    }
    if (rng_below(&w->rng, 8) == 0) {
        err = cancel ? pu_booking_cancel(w->p, b->id, w->user_id, FROZEN_NOW_MS)
                     : pu_booking_fail(w->p, b->id, FROZEN_NOW_MS);
        worker_note(w, cancel ? OP_CANCEL : OP_FAIL, err);
        tg_err want = cancel ? TG_EBOOKING_STATE : TG_OK;
        if (err != want && err != TG_ENOT_FOUND) {
            return worker_fail(w, cancel ? "cancel again" : "fail again", b->id, err,
                               cancel ? "booking_state" : "ok (idempotent)");
        }
    }
    worker_slot_clear(b);
    return true;
}

static bool worker_step(worker *w)
{
    held_booking *b = &w->slots[rng_below(&w->rng, WORKER_SLOTS)];
    uint32_t r = rng_below(&w->rng, 100);
    if (b->id == 0) {
        return worker_create(w, b);
    }
    if (b->status == TG_BOOKING_PENDING_PAYMENT) {
        if (r < 30 && w->sold_seats + b->seat_count <= w->sold_budget) {
            return worker_confirm(w, b);
        }
        return worker_end(w, b, r >= 65);
    }
    if (b->seat_count == 0) {
        return r < 85   ? worker_hold(w, b)
               : r < 95 ? worker_hold_best(w, b)
                        : worker_end(w, b, true);
    }
    if (r < 35) {
        return worker_hold(w, b);
    }
    if (r < 40) {
        return worker_hold_best(w, b);
    }
    if (r < 70) {
        return worker_release(w, b);
    }
    return r < 82 ? worker_begin_payment(w, b) : worker_end(w, b, true);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (w->done = 0; w->done < w->ops; w->done++) {
        if (!worker_step(w) || __atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
            break;
        }
    }
    return NULL;
}

static void worker_init(worker *w, pu_partition *p, const layout *l, uint32_t index, uint64_t seed,
                        uint64_t ops, uint32_t threads)
{
    memset(w, 0, sizeof *w);
    w->p = p;
    w->l = l;
    w->index = index;
    w->user_id = 1000 + index;
    w->rng = seed * 0x9E3779B97F4A7C15ull + index + 1;
    w->ops = ops;
    w->hold_max = 4;
    w->hot_first = l->seat_count / 3;
    w->sold_budget = l->seat_count / 2 / threads;
}

/* ---- Checks of a quiescent partition -------------------------------------- */

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

static bool counts_match_recount(const pu_partition *p, char *why)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    uint32_t totals[2][TG_SEAT_STATE_COUNT];
    uint32_t(*sections)[TG_SEAT_STATE_COUNT] = calloc(2 * TG_SECTIONS_MAX, sizeof *sections);
    uint32_t(*rows)[TG_SEAT_STATE_COUNT] = calloc(2 * (size_t)TG_ROWS_MAX, sizeof *rows);
    bool ok = sections != NULL && rows != NULL;
    if (ok) {
        pu_partition_counts(p, totals[0], sections, rows);
        pu_partition_recount(p, totals[1], sections + TG_SECTIONS_MAX, rows + TG_ROWS_MAX);
        uint32_t sum = 0;
        for (unsigned s = 0; s < TG_SEAT_STATE_COUNT; s++) {
            sum += totals[0][s];
        }
        ok = memcmp(totals[0], totals[1], sizeof totals[0]) == 0 && sum == info.seat_count &&
             memcmp(sections, sections + TG_SECTIONS_MAX, info.section_count * sizeof *sections) ==
                 0 &&
             memcmp(rows, rows + TG_ROWS_MAX, info.row_count * sizeof *rows) == 0;
        if (!ok) {
            why_set(why,
                    "counters (free %u sel %u res %u sold %u blk %u) != recount (%u %u %u %u %u)"
                    " or a section/row differs",
                    totals[0][0], totals[0][1], totals[0][2], totals[0][3], totals[0][4],
                    totals[1][0], totals[1][1], totals[1][2], totals[1][3], totals[1][4]);
        }
    } else {
        why_set(why, "out of memory");
    }
    free(sections);
    free(rows);
    return ok;
}

/* The unpersisted log is complete and dense: persisted+1 .. head. */
static bool log_dense(const pu_partition *p, char *why)
{
    static pu_log_record buf[LOG_BATCH];
    pu_partition_info info;
    pu_partition_describe(p, &info);
    uint64_t seq = info.log_persisted + 1;
    while (seq <= info.log_head) {
        uint32_t n = pu_log_read(p, seq, buf, LOG_BATCH);
        if (n == 0) {
            why_set(why, "log: seq %" PRIu64 " of head %" PRIu64 " cannot be read", seq,
                    info.log_head);
            return false;
        }
        for (uint32_t i = 0; i < n; i++, seq++) {
            if (buf[i].seq != seq) {
                why_set(why, "log: read seq %" PRIu64 " where %" PRIu64 " belongs", buf[i].seq,
                        seq);
                return false;
            }
        }
    }
    if (pu_log_read(p, seq, buf, 1) != 0) {
        why_set(why, "log: a record beyond head %" PRIu64 " is readable", info.log_head);
        return false;
    }
    return true;
}

/* A held or sold seat's word names a booking whose status implies that state
 * and whose seat list names the seat, and every seat listed by that booking
 * points back to it. */
static bool seat_owned_consistently(pu_partition *p, uint32_t partition_id,
                                    const pu_seat_info *seat, char *why)
{
    if (seat->state == TG_SEAT_FREE || seat->state == TG_SEAT_BLOCKED) {
        if (tg_seat_word_booking(seat->word) != 0 || seat->booking_id != 0) {
            why_set(why, "seat %u is %s but names booking seq %u", seat->seat_id,
                    tg_seat_state_name(seat->state), tg_seat_word_booking(seat->word));
            return false;
        }
        return true;
    }
    tg_booking_id id = tg_booking_id_make(partition_id, tg_seat_word_booking(seat->word));
    pu_booking_info b;
    tg_err err = pu_booking_get(p, id, PU_USER_SYSTEM, &b);
    if (err != TG_OK || state_for(b.status) != seat->state || seat->booking_id != id ||
        !seat_listed(b.seats, b.seat_count, seat->seat_id)) {
        why_set(why, "seat %u is %s for booking %#" PRIx64 " (get: %s, status %s, %u seats)",
                seat->seat_id, tg_seat_state_name(seat->state), id, tg_errname(err),
                err == TG_OK ? tg_booking_status_name(b.status) : "-",
                err == TG_OK ? b.seat_count : 0);
        return false;
    }
    for (uint32_t i = 0; i < b.seat_count; i++) {
        pu_seat_info other;
        if (pu_seat_get(p, b.seats[i], &other) != TG_OK || other.booking_id != id ||
            other.state != seat->state) {
            why_set(why, "booking %#" PRIx64 " lists seat %u, which is %s for %#" PRIx64, id,
                    b.seats[i], tg_seat_state_name(other.state), other.booking_id);
            return false;
        }
    }
    return true;
}

/* Every invariant that can be checked without knowing who made the bookings. */
static bool partition_consistent(pu_partition *p, char *why)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    for (uint32_t s = 0; s < info.seat_count; s++) {
        pu_seat_info seat;
        tg_err err = pu_seat_get(p, s, &seat);
        if (err != TG_OK) {
            why_set(why, "pu_seat_get(%u): %s", s, tg_errname(err));
            return false;
        }
        if (!seat_owned_consistently(p, info.partition_id, &seat, why)) {
            return false;
        }
    }
    if (!counts_match_recount(p, why) || !log_dense(p, why)) {
        return false;
    }
    tg_err err = pu_partition_check(p);
    if (err != TG_OK) {
        why_set(why, "pu_partition_check: %s", tg_errname(err));
        return false;
    }
    return true;
}

/* Claims each seat of booking b for it; false if another booking has it. */
static bool claim_seats(tg_booking_id *owner, const held_booking *b, char *why)
{
    for (uint32_t i = 0; i < b->seat_count; i++) {
        uint32_t s = b->seats[i];
        if (owner[s] != 0) {
            why_set(why, "seat %u is in bookings %#" PRIx64 " and %#" PRIx64, s, owner[s], b->id);
            return false;
        }
        owner[s] = b->id;
    }
    return true;
}

static bool booking_matches(pu_partition *p, const held_booking *b, char *why)
{
    pu_booking_info info;
    tg_err err = pu_booking_get(p, b->id, PU_USER_SYSTEM, &info);
    if (err != TG_OK || info.status != b->status || info.seat_count != b->seat_count ||
        memcmp(info.seats, b->seats, b->seat_count * sizeof b->seats[0]) != 0) {
        why_set(why, "booking %#" PRIx64 ": get %s, status %s (want %s), %u seats (want %u)", b->id,
                tg_errname(err), err == TG_OK ? tg_booking_status_name(info.status) : "-",
                tg_booking_status_name(b->status), err == TG_OK ? info.seat_count : 0,
                b->seat_count);
        return false;
    }
    return true;
}

/* What the workers know equals the segment: each live or paid booking has
 * exactly its seats, no seat is in two bookings, every other seat is FREE. */
static bool partition_matches_workers(pu_partition *p, const worker *ws, uint32_t n, char *why)
{
    uint32_t seat_count = ws[0].l->seat_count;
    tg_booking_id *owner = calloc(seat_count, sizeof *owner);
    uint8_t *want = calloc(seat_count, 1);
    bool ok = owner != NULL && want != NULL;
    for (uint32_t t = 0; ok && t < n; t++) {
        for (uint32_t i = 0; ok && i < WORKER_SLOTS + ws[t].paid_count; i++) {
            const held_booking *b =
                i < WORKER_SLOTS ? &ws[t].slots[i] : &ws[t].paid[i - WORKER_SLOTS];
            if (b->id == 0) {
                continue;
            }
            ok = claim_seats(owner, b, why) && booking_matches(p, b, why);
            for (uint32_t k = 0; ok && k < b->seat_count; k++) {
                want[b->seats[k]] = (uint8_t)state_for(b->status);
            }
        }
    }
    for (uint32_t s = 0; ok && s < seat_count; s++) {
        pu_seat_info seat;
        pu_seat_get(p, s, &seat);
        if (seat.state != (tg_seat_state)want[s] || seat.booking_id != owner[s]) {
            why_set(why, "seat %u is %s for %#" PRIx64 ", want %s for %#" PRIx64, s,
                    tg_seat_state_name(seat.state), seat.booking_id,
                    tg_seat_state_name((tg_seat_state)want[s]), owner[s]);
            ok = false;
        }
    }
    free(owner);
    free(want);
    return ok;
}

static void workers_report(const worker *ws, uint32_t n)
{
    uint64_t total[OP_COUNT][TG_ERR_COUNT_] = {{0}};
    for (uint32_t t = 0; t < n; t++) {
        for (int op = 0; op < OP_COUNT; op++) {
            for (int e = 0; e < TG_ERR_COUNT_; e++) {
                total[op][e] += ws[t].outcomes[op][e];
            }
        }
    }
    for (int op = 0; op < OP_COUNT; op++) {
        char line[512];
        int used = snprintf(line, sizeof line, "  %-13s", op_names[op]);
        for (int e = 0; e < TG_ERR_COUNT_ && used < (int)sizeof line - 40; e++) {
            if (total[op][e] != 0) {
                used += snprintf(line + used, sizeof line - (size_t)used, " %s=%" PRIu64,
                                 tg_errname((tg_err)e), total[op][e]);
            }
        }
        note("%s", line);
    }
}

/* ---- Observer processes ----------------------------------------------------- */

/* Runs in a forked child: attaches as observer and reads while the parent's
 * threads write, until stop_fd reports end of file.  Every word must be well
 * formed, every seat's version must only move forward, no counter may
 * underflow, and any window of the unpersisted log must be dense. */
static int observe_live(const char *name, int stop_fd, int result_fd)
{
    char why[WHY_BYTES] = "";
    pu_partition *p = NULL;
    tg_err err = pu_partition_attach(name, PU_ATTACH_OBSERVER, &p);
    if (err != TG_OK) {
        why_set(why, "observer attach: %s", tg_errname(err));
    }
    pu_partition_info info;
    uint32_t *versions = NULL;
    uint64_t rounds = 0;
    if (p != NULL) {
        pu_partition_describe(p, &info);
        versions = calloc(info.seat_count, sizeof *versions);
    }
    uint64_t rng = seed_from_clock();
    struct pollfd pfd = {.fd = stop_fd, .events = POLLIN};
    while (p != NULL && why[0] == '\0' && poll(&pfd, 1, 0) == 0) {
        for (int i = 0; i < 1000 && why[0] == '\0'; i++) {
            uint32_t s = rng_below(&rng, info.seat_count);
            pu_seat_info seat;
            pu_seat_get(p, s, &seat);
            uint32_t v = tg_seat_word_version(seat.word);
            bool holder = seat.state == TG_SEAT_SELECTED || seat.state == TG_SEAT_RESERVED ||
                          seat.state == TG_SEAT_SOLD;
            /* Never back, not even by a failed hold: seats.c never reuses a
             * version, since a reader like us may have seen its word. */
            bool forward = v == versions[s] || tg_seat_version_newer(v, versions[s]);
            if (seat.state >= TG_SEAT_STATE_COUNT ||
                holder != (tg_seat_word_booking(seat.word) != 0) || !forward) {
                why_set(why, "live observer: seat %u word %#" PRIx64 " after version %u", s,
                        seat.word, versions[s]);
            }
            versions[s] = v;
        }
        uint32_t totals[TG_SEAT_STATE_COUNT];
        pu_partition_counts(p, totals, NULL, NULL);
        for (unsigned k = 0; k < TG_SEAT_STATE_COUNT; k++) {
            if (totals[k] > info.seat_count) {
                why_set(why, "live observer: counter %u is %u", k, totals[k]);
            }
        }
        rounds++;
        struct timespec pause = {0, 200000}; /* leave the cores to the writers */
        nanosleep(&pause, NULL);
    }
    if (why[0] == '\0') {
        why_set(why, "ok: %" PRIu64 " rounds of 1000 seat reads", rounds);
    }
    ssize_t unused = write(result_fd, why, strlen(why));
    (void)unused;
    free(versions);
    pu_partition_detach(p);
    return strncmp(why, "ok:", 3) == 0 ? 0 : 1;
}

/* Runs in a forked child after the burst: attaches as observer and checks
 * that it sees exactly what the parent saw (words and counters) and that
 * every invariant holds through its own mapping. */
static int observe_after(const char *name, const tg_seat_word *words, const uint32_t *totals,
                         const worker *ws, uint32_t n, int result_fd)
{
    char why[WHY_BYTES] = "";
    pu_partition *p = NULL;
    tg_err err = pu_partition_attach(name, PU_ATTACH_OBSERVER, &p);
    if (err != TG_OK) {
        why_set(why, "observer attach: %s", tg_errname(err));
    } else {
        pu_partition_info info;
        pu_partition_describe(p, &info);
        uint32_t mine[TG_SEAT_STATE_COUNT];
        pu_partition_counts(p, mine, NULL, NULL);
        if (memcmp(mine, totals, sizeof mine) != 0) {
            why_set(why, "observer counters differ from the owner's");
        }
        for (uint32_t s = 0; why[0] == '\0' && s < info.seat_count; s++) {
            pu_seat_info seat;
            pu_seat_get(p, s, &seat);
            if (seat.word != words[s]) {
                why_set(why, "observer sees seat %u as %#" PRIx64 ", owner %#" PRIx64, s, seat.word,
                        words[s]);
            }
        }
        if (why[0] == '\0' && partition_consistent(p, why) &&
            partition_matches_workers(p, ws, n, why)) {
            why_set(why, "ok");
        }
    }
    ssize_t unused = write(result_fd, why, strlen(why));
    (void)unused;
    pu_partition_detach(p);
    return strcmp(why, "ok") == 0 ? 0 : 1;
}

/* Waits for a child and returns what it wrote to fd (closed here). */
static int child_collect(pid_t pid, int fd, char *out)
{
    size_t used = 0;
    ssize_t got;
    while (used < WHY_BYTES - 1 && (got = read(fd, out + used, WHY_BYTES - 1 - used)) > 0) {
        used += (size_t)got;
    }
    out[used] = '\0';
    close(fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- The burst ------------------------------------------------------------------ */

typedef struct {
    char name[TG_SHM_NAME_BYTES];
    layout *l;
    pu_partition *p;
    worker ws[BURST_THREADS];
    log_consumer *consumer;
    pid_t live_pid;
    int live_stop_fd, live_result_fd;
} burst;

/* The workers' paid lists (the rest of a burst is tracked on its own). */
static void release_burst(void *ptr)
{
    burst *b = ptr;
    for (uint32_t t = 0; t < BURST_THREADS; t++) {
        free(b->ws[t].paid);
    }
    free(b);
}

static void burst_start_live_observer(burst *b)
{
    int stop[2], result[2];
    TAP_CHECK((pipe(stop)) == (0), "%s", "unexpected value");
    TAP_CHECK((pipe(result)) == (0), "%s", "unexpected value");
    fflush(NULL);
    pid_t pid = fork();
    TAP_CHECK(pid >= 0, "%s", "failed");
    if (pid == 0) {
        close(stop[1]);
        close(result[0]);
        _exit(observe_live(b->name, stop[0], result[1]));
    }
    close(stop[0]);
    close(result[1]);
    b->live_pid = pid;
    b->live_stop_fd = stop[1];
    b->live_result_fd = result[0];
}

static void burst_run(burst *b, uint64_t ops, uint64_t seed)
{
    pthread_t threads[BURST_THREADS], consumer;
    for (uint32_t t = 0; t < BURST_THREADS; t++) {
        worker_init(&b->ws[t], b->p, b->l, t, seed, ops, BURST_THREADS);
    }
    TAP_CHECK((pthread_create(&consumer, NULL, consumer_main, b->consumer)) == (0), "%s",
              "unexpected value");
    int64_t start = tg_mono_ns();
    for (uint32_t t = 0; t < BURST_THREADS; t++) {
        TAP_CHECK((pthread_create(&threads[t], NULL, worker_main, &b->ws[t])) == (0), "%s",
                  "unexpected value");
    }
    for (uint32_t t = 0; t < BURST_THREADS; t++) {
        pthread_join(threads[t], NULL);
    }
    int64_t elapsed = tg_mono_ns() - start;
    __atomic_store_n(&b->consumer->stop, 1, __ATOMIC_RELEASE);
    pthread_join(consumer, NULL);
    note("burst: %u threads x %" PRIu64 " ops in %.2f s (seed %" PRIu64 ")", BURST_THREADS, ops,
         (double)elapsed / 1e9, seed);
    workers_report(b->ws, BURST_THREADS);
    for (uint32_t t = 0; t < BURST_THREADS; t++) {
        TAP_CHECK(!b->ws[t].failed, "seed %" PRIu64 ": %s", seed, b->ws[t].why);
    }
}

/* On a partition whose writers all finished cleanly there is nothing to
 * repair: recovery (the owner may run it at any quiet moment) must change no
 * seat and log nothing. */
static void burst_recover_is_a_no_op(burst *b)
{
    pu_partition_info before, after;
    pu_partition_describe(b->p, &before);
    tg_err err = pu_partition_recover(b->p);
    pu_partition_describe(b->p, &after);
    TAP_CHECK((err) == (TG_OK), "pu_partition_recover: %s", tg_errname(err));
    uint64_t relogged = after.log_head - before.log_head;
    if (relogged > 0) {
        pu_log_record r;
        pu_log_read(b->p, before.log_head + 1, &r, 1);
        note("recovery of a clean partition logged %" PRIu64 " records; the first: "
             "seat %u word %#" PRIx64 " (the seat's last record already had that word: "
             "%s)",
             relogged, r.ident, r.word,
             r.kind == PU_REC_SEAT && r.ident < b->l->seat_count &&
                     b->consumer->last_word[r.ident] == r.word
                 ? "yes"
                 : "no");
    }
    TAP_CHECK((relogged) == (0), "recovery re-logged %" PRIu64 " seat changes that were logged",
              relogged);
}

static void threads_never_sell_a_seat_twice_and_keep_every_invariant(void)
{
    burst *b = track(calloc(1, sizeof *b), release_burst);
    uint64_t ops = env_u64("TIXGRID_CONTENTION_OPS", 1000000);
    uint64_t seed = env_u64("TIXGRID_CONTENTION_SEED", seed_from_clock());
    shm_name_make(b->name, "burst");
    b->l = layout_make(4, 25, 1000);
    TAP_CHECK((b->l->seat_count) == (100000u), "%s", "unexpected value");
    /* A ring of 64 Ki records wraps many times under the consumer, and the
     * high-water mark is reached whenever the consumer falls behind. */
    b->l->cfg.log_records = 1u << 16;
    b->p = partition_new(b->l, b->name);
    b->consumer = consumer_new(b->p, b->l->seat_count, true);
    burst_start_live_observer(b);

    burst_run(b, ops, seed);
    close(b->live_stop_fd);
    char why[WHY_BYTES];
    int code = child_collect(b->live_pid, b->live_result_fd, why);
    TAP_CHECK((code) == (0), "live observer process: exit %d: %s", code, why);
    note("live observer: %s", why);

    TAP_CHECK(consumer_finish(b->consumer, why), "seed %" PRIu64 ": %s", seed, why);
    TAP_CHECK(consumer_replay_matches(b->consumer, why), "seed %" PRIu64 ": %s", seed, why);
    note("log: %" PRIu64 " seat and %" PRIu64 " booking records, %" PRIu64 " no-ops, %" PRIu64
         " repeated seat words, %" PRIu64 " seats given back by failed holds",
         b->consumer->seat_records, b->consumer->booking_records, b->consumer->nop_records,
         b->consumer->repeated_records, b->consumer->given_back_records);
    TAP_CHECK(partition_matches_workers(b->p, b->ws, BURST_THREADS, why), "seed %" PRIu64 ": %s",
              seed, why);
    TAP_CHECK(partition_consistent(b->p, why), "seed %" PRIu64 ": %s", seed, why);
    burst_recover_is_a_no_op(b);

    tg_seat_word *words = track(calloc(b->l->seat_count, sizeof *words), free);
    for (uint32_t s = 0; s < b->l->seat_count; s++) {
        pu_seat_info seat;
        pu_seat_get(b->p, s, &seat);
        words[s] = seat.word;
    }
    uint32_t totals[TG_SEAT_STATE_COUNT];
    pu_partition_counts(b->p, totals, NULL, NULL);
    note("after the burst: free %u selected %u reserved %u sold %u", totals[0], totals[1],
         totals[2], totals[3]);
    int result[2];
    TAP_CHECK((pipe(result)) == (0), "%s", "unexpected value");
    fflush(NULL);
    pid_t pid = fork();
    TAP_CHECK(pid >= 0, "%s", "failed");
    if (pid == 0) {
        close(result[0]);
        _exit(observe_after(b->name, words, totals, b->ws, BURST_THREADS, result[1]));
    }
    close(result[1]);
    code = child_collect(pid, result[0], why);
    TAP_CHECK((code) == (0), "observer process after the burst: exit %d: %s", code, why);

    untrack(words);
    untrack(b->consumer);
    untrack(b->p);
    TAP_CHECK((pu_partition_destroy(b->name)) == (TG_OK), "%s", "unexpected value");
    untrack(b->l);
    untrack(b);
}

/* ---- The race for the same seats ------------------------------------------------ */

#define RACE_SEATS    1000u
#define RACE_ROUNDS   30u
#define RACE_LOCKSTEP 4u /* lockstep rounds: all threads meet every this many seats */

/* Rounds cycle through three ways of racing: every thread in the same order;
 * every thread in its own random order; the same order in lockstep, where
 * the threads meet at a barrier every RACE_LOCKSTEP seats — on a box with
 * fewer cores than threads, only lockstep makes every thread fight for
 * every seat. */
enum { RACE_SAME_ORDER, RACE_OWN_ORDER, RACE_LOCKSTEP_ORDER, RACE_MODES };

typedef struct {
    pu_partition *p;
    pthread_barrier_t *barrier;
    uint32_t index;
    uint32_t round;
    uint64_t rng;
    tg_booking_id won_by[RACE_SEATS]; /* booking that won the seat, 0 if lost */
    tg_err result[RACE_SEATS];
    tg_booking_id bookings[RACE_SEATS]; /* every booking of the round */
    uint32_t booking_count;
    bool failed;
    char why[WHY_BYTES];
} racer;

static void racer_order(racer *r, uint32_t *order)
{
    for (uint32_t i = 0; i < RACE_SEATS; i++) {
        order[i] = i;
    }
    if (r->round % RACE_MODES == RACE_OWN_ORDER) {
        for (uint32_t i = RACE_SEATS - 1; i > 0; i--) {
            uint32_t j = rng_below(&r->rng, i + 1);
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
}

static void racer_try(racer *r, tg_booking_id *booking, uint32_t *in_booking, uint32_t seat)
{
    uint64_t user = 500 + r->index;
    if (*in_booking == TG_BOOKING_SEATS_MAX) {
        pu_booking_info info;
        tg_err err = pu_booking_create(r->p, user, FROZEN_NOW_MS, &info);
        if (err != TG_OK) {
            why_set(r->why, "racer %u: create: %s", r->index, tg_errname(err));
            r->failed = true;
            return;
        }
        *booking = info.id;
        r->bookings[r->booking_count++] = info.id;
        *in_booking = 0;
    }
    pu_hold_result out;
    tg_err err = pu_seats_hold(r->p, *booking, user, &seat, 1, FROZEN_NOW_MS, &out);
    r->result[seat] = err;
    if (err == TG_OK) {
        r->won_by[seat] = *booking;
        (*in_booking)++;
    } else if (err != TG_ESEAT_TAKEN || out.taken_count != 1 || out.taken[0] != seat) {
        why_set(r->why, "racer %u: hold seat %u: %s (taken_count %u)", r->index, seat,
                tg_errname(err), out.taken_count);
        r->failed = true;
    }
}

static void *racer_main(void *arg)
{
    racer *r = arg;
    uint32_t order[RACE_SEATS];
    racer_order(r, order);
    bool lockstep = r->round % RACE_MODES == RACE_LOCKSTEP_ORDER;
    tg_booking_id booking = 0;
    uint32_t in_booking = TG_BOOKING_SEATS_MAX;
    pthread_barrier_wait(r->barrier);
    for (uint32_t i = 0; i < RACE_SEATS; i++) {
        if (lockstep && i % RACE_LOCKSTEP == 0) {
            pthread_barrier_wait(r->barrier); /* every thread passes each one, failed or not */
        }
        if (!r->failed) {
            racer_try(r, &booking, &in_booking, order[i]);
        }
    }
    return NULL;
}

static void race_round(pu_partition *p, racer *rs, uint32_t threads, uint32_t round)
{
    pthread_barrier_t barrier;
    pthread_t tids[BURST_THREADS];
    pthread_barrier_init(&barrier, NULL, threads);
    for (uint32_t t = 0; t < threads; t++) {
        uint64_t rng = rs[t].rng;
        memset(&rs[t], 0, sizeof rs[t]);
        rs[t].p = p;
        rs[t].barrier = &barrier;
        rs[t].index = t;
        rs[t].round = round;
        rs[t].rng = rng;
        TAP_CHECK((pthread_create(&tids[t], NULL, racer_main, &rs[t])) == (0), "%s",
                  "unexpected value");
    }
    for (uint32_t t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
    }
    pthread_barrier_destroy(&barrier);
    for (uint32_t t = 0; t < threads; t++) {
        TAP_CHECK(!rs[t].failed, "round %u: %s", round, rs[t].why);
    }
    uint32_t wins[BURST_THREADS] = {0};
    for (uint32_t s = 0; s < RACE_SEATS; s++) {
        uint32_t winners = 0;
        tg_booking_id winner = 0;
        for (uint32_t t = 0; t < threads; t++) {
            if (rs[t].won_by[s] != 0) {
                winners++;
                winner = rs[t].won_by[s];
                wins[t]++;
            } else {
                TAP_CHECK((rs[t].result[s]) == (TG_ESEAT_TAKEN), "round %u seat %u thread %u: %s",
                          round, s, t, tg_errname(rs[t].result[s]));
            }
        }
        TAP_CHECK((winners) == (1), "round %u: seat %u won by %u threads", round, s, winners);
        pu_seat_info seat;
        TAP_CHECK((pu_seat_get(p, s, &seat)) == (TG_OK), "%s", "unexpected value");
        TAP_CHECK(seat.state == TG_SEAT_SELECTED && seat.booking_id == winner,
                  "round %u: seat %u is %s for %#" PRIx64 ", won by %#" PRIx64, round, s,
                  tg_seat_state_name(seat.state), seat.booking_id, winner);
    }
    note("race round %u (mode %u): wins per thread %u %u %u %u", round, round % RACE_MODES, wins[0],
         wins[1], threads > 2 ? wins[2] : 0, threads > 3 ? wins[3] : 0);
}

static void each_raced_seat_is_won_by_exactly_one_thread(void)
{
    char name[TG_SHM_NAME_BYTES], why[WHY_BYTES];
    shm_name_make(name, "race");
    layout *l = layout_make(2, 2, 500);
    pu_partition *p = partition_new(l, name);
    racer *rs = track(calloc(BURST_THREADS, sizeof *rs), free);
    uint64_t seed = seed_from_clock();
    for (uint32_t t = 0; t < BURST_THREADS; t++) {
        rs[t].rng = seed + t + 1;
    }
    log_consumer *consumer = consumer_new(p, l->seat_count, true);
    for (uint32_t round = 0; round < RACE_ROUNDS; round++) {
        race_round(p, rs, BURST_THREADS, round);
        for (uint32_t t = 0; t < BURST_THREADS; t++) {
            for (uint32_t i = 0; i < rs[t].booking_count; i++) {
                tg_err err = pu_booking_cancel(p, rs[t].bookings[i], 500 + t, FROZEN_NOW_MS);
                TAP_CHECK((err) == (TG_OK), "cancel %#" PRIx64 ": %s", rs[t].bookings[i],
                          tg_errname(err));
            }
        }
        TAP_CHECK(consumer_finish(consumer, why), "round %u: %s", round, why);
        TAP_CHECK(partition_consistent(p, why), "round %u: %s", round, why);
    }
    untrack(consumer);
    untrack(rs);
    untrack(p);
    TAP_CHECK((pu_partition_destroy(name)) == (TG_OK), "%s", "unexpected value");
    untrack(l);
}

/* ---- Organizers blocking and unblocking the seats shoppers want ---------------- */

#define ORGANIZER_SEATS 64u
#define ORGANIZER_OPS   200000u

typedef struct {
    pu_partition *p;
    uint32_t index;
    uint64_t rng;
    uint64_t ops;
    bool shopper; /* holds and releases instead of blocking */
    uint64_t ok, refused;
    bool failed;
    char why[WHY_BYTES];
} organizer;

static void organizer_block_step(organizer *o)
{
    uint32_t seats[3];
    uint32_t n = 1 + rng_below(&o->rng, 3);
    for (uint32_t i = 0; i < n; i++) {
        do {
            seats[i] = rng_below(&o->rng, ORGANIZER_SEATS);
        } while (seat_listed(seats, i, seats[i]));
    }
    bool block = rng_below(&o->rng, 2) == 0;
    pu_hold_result out;
    tg_err err = block ? pu_seats_block(o->p, seats, n, &out) : pu_seats_unblock(o->p, seats, n);
    if (err == TG_OK) {
        o->ok++;
    } else if (err == (block ? TG_ESEAT_TAKEN : TG_EINVAL) || err == TG_ELOG_FULL) {
        o->refused++; /* a full ring means the log reader stopped: it says why */
    } else {
        why_set(o->why, "organizer %u: %s: %s", o->index, block ? "block" : "unblock",
                tg_errname(err));
        o->failed = true;
    }
}

static void organizer_shop_step(organizer *o, tg_booking_id id)
{
    uint32_t seat = rng_below(&o->rng, ORGANIZER_SEATS);
    pu_hold_result out;
    tg_err err = pu_seats_hold(o->p, id, 900, &seat, 1, FROZEN_NOW_MS, &out);
    if (err == TG_OK) {
        err = pu_seats_release(o->p, id, 900, &seat, 1, FROZEN_NOW_MS);
        o->ok++;
    } else if (err == TG_ESEAT_TAKEN || err == TG_EBACKLOG) {
        err = TG_OK;
        o->refused++;
    }
    if (err != TG_OK) {
        why_set(o->why, "shopper: hold/release seat %u: %s", seat, tg_errname(err));
        o->failed = true;
    }
}

static void *organizer_main(void *arg)
{
    organizer *o = arg;
    pu_booking_info booking = {0};
    if (o->shopper && pu_booking_create(o->p, 900, FROZEN_NOW_MS, &booking) != TG_OK) {
        why_set(o->why, "shopper: create failed");
        o->failed = true;
    }
    for (uint64_t i = 0; i < o->ops && !o->failed; i++) {
        if (o->shopper) {
            organizer_shop_step(o, booking.id);
        } else {
            organizer_block_step(o);
        }
    }
    return NULL;
}

/* Two organizers block and unblock the same 64 seats while a shopper holds
 * and releases them.  A seat's records must still follow its word version by
 * version, and the log must end on every seat's current word: a replica
 * applying the log in order ends where the primary is. */
static void racing_blocks_and_unblocks_keep_each_seats_records_in_order(void)
{
    char name[TG_SHM_NAME_BYTES], why[WHY_BYTES];
    shm_name_make(name, "block");
    layout *l = layout_make(1, 1, ORGANIZER_SEATS);
    pu_partition *p = partition_new(l, name);
    log_consumer *consumer = consumer_new(p, l->seat_count, true);
    uint64_t seed = env_u64("TIXGRID_CONTENTION_SEED", seed_from_clock());
    uint64_t ops = env_u64("TIXGRID_CONTENTION_OPS", 1000000) / 5;
    organizer os[3];
    pthread_t tids[3], reader;
    TAP_CHECK((pthread_create(&reader, NULL, consumer_main, consumer)) == (0), "%s",
              "unexpected value");
    for (uint32_t t = 0; t < 3; t++) {
        os[t] = (organizer){.p = p, .index = t, .rng = seed + t + 1, .ops = ops, .shopper = t == 2};
        TAP_CHECK((pthread_create(&tids[t], NULL, organizer_main, &os[t])) == (0), "%s",
                  "unexpected value");
    }
    for (uint32_t t = 0; t < 3; t++) {
        pthread_join(tids[t], NULL);
    }
    __atomic_store_n(&consumer->stop, 1, __ATOMIC_RELEASE);
    pthread_join(reader, NULL);
    for (uint32_t t = 0; t < 3; t++) {
        TAP_CHECK(!os[t].failed, "seed %" PRIu64 ": %s", seed, os[t].why);
    }
    note("organizers: %" PRIu64 "/%" PRIu64 " and %" PRIu64 "/%" PRIu64
         " changes done/refused; shopper %" PRIu64 "/%" PRIu64 "; %" PRIu64
         " seats given back by failed blocks",
         os[0].ok, os[0].refused, os[1].ok, os[1].refused, os[2].ok, os[2].refused,
         consumer->given_back_records);
    TAP_CHECK(consumer_finish(consumer, why), "seed %" PRIu64 ": %s", seed, why);
    TAP_CHECK(partition_consistent(p, why), "seed %" PRIu64 ": %s", seed, why);
    untrack(consumer);
    untrack(p);
    TAP_CHECK((pu_partition_destroy(name)) == (TG_OK), "%s", "unexpected value");
    untrack(l);
}

/* ---- Resets racing with shoppers ---------------------------------------------------- */

#define RESET_SEATS   256u
#define RESET_BLOCKED 8u /* seats 0..7, blocked before the race: a reset must leave them */

typedef struct {
    pu_partition *p;
    uint32_t index;
    uint64_t rng;
    uint64_t rounds; /* shopper: booking rounds to run */
    bool resetter;   /* resets until stop instead of shopping */
    int stop;        /* resetter: set (atomically) by the main thread */
    uint64_t ok, refused;
    uint64_t resets, cancelled, freed; /* resetter */
    bool failed;
    char why[WHY_BYTES];
} reset_racer;

/* TG_OK, or an outcome that a reset or back-pressure explains: the booking
 * was cancelled by a reset (TG_EBOOKING_STATE) and its slot maybe reused
 * since (TG_ENOT_FOUND), a seat was taken, a lock stayed busy, the table or
 * the ring is full for takers. */
static bool reset_outcome_ok(reset_racer *r, const char *op, tg_err err, bool taker)
{
    bool explained =
        err == TG_EBOOKING_STATE || err == TG_ENOT_FOUND || err == TG_EBUSY ||
        (taker && (err == TG_ESEAT_TAKEN || err == TG_EBOOKINGS_FULL || err == TG_EBACKLOG));
    if (err == TG_OK) {
        r->ok++;
    } else if (explained) {
        r->refused++;
    } else {
        why_set(r->why, "shopper %u: %s: %s", r->index, op, tg_errname(err));
        r->failed = true;
    }
    return err == TG_OK;
}

/* One round: a booking, 1..3 distinct seats, then pay, pay and confirm, or
 * cancel — any step of which a reset may overtake. */
static void reset_shop_round(reset_racer *r)
{
    uint64_t user = 700 + r->index;
    pu_booking_info b;
    if (!reset_outcome_ok(r, "create", pu_booking_create(r->p, user, FROZEN_NOW_MS, &b), true)) {
        return;
    }
    uint32_t seats[3], n = 1 + rng_below(&r->rng, 3);
    for (uint32_t i = 0; i < n; i++) {
        do {
            seats[i] = rng_below(&r->rng, RESET_SEATS);
        } while (seat_listed(seats, i, seats[i]));
    }
    pu_hold_result out;
    tg_err err = pu_seats_hold(r->p, b.id, user, seats, n, FROZEN_NOW_MS, &out);
    if (!reset_outcome_ok(r, "hold", err, true)) {
        reset_outcome_ok(r, "cancel", pu_booking_cancel(r->p, b.id, user, FROZEN_NOW_MS), false);
        return;
    }
    uint32_t next = rng_below(&r->rng, 3);
    if (next == 0) {
        reset_outcome_ok(r, "cancel", pu_booking_cancel(r->p, b.id, user, FROZEN_NOW_MS), false);
        return;
    }
    err = pu_booking_begin_payment(r->p, b.id, user, FROZEN_NOW_MS, NULL);
    if (reset_outcome_ok(r, "begin_payment", err, false) && next == 2) {
        reset_outcome_ok(r, "confirm", pu_booking_confirm(r->p, b.id, FROZEN_NOW_MS), false);
    }
}

static void reset_run(reset_racer *r)
{
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) && !r->failed) {
        pu_reset_result out;
        tg_err err = pu_partition_reset(r->p, FROZEN_NOW_MS, &out);
        if (err != TG_OK && err != TG_EBACKLOG && err != TG_EBUSY) {
            why_set(r->why, "pu_partition_reset: %s", tg_errname(err));
            r->failed = true;
        }
        r->resets++;
        r->cancelled += out.bookings_cancelled;
        r->freed += out.seats_freed;
        sched_yield();
    }
}

static void *reset_racer_main(void *arg)
{
    reset_racer *r = arg;
    if (r->resetter) {
        reset_run(r);
    }
    for (uint64_t i = 0; !r->resetter && i < r->rounds && !r->failed; i++) {
        reset_shop_round(r);
    }
    return NULL;
}

/* After the race, on a quiescent partition: one more reset leaves every seat
 * FREE but the blocked ones, and every booking ended. */
static void reset_final(pu_partition *p, log_consumer *consumer, uint64_t seed)
{
    char why[WHY_BYTES];
    pu_reset_result out;
    tg_err err = pu_partition_reset(p, FROZEN_NOW_MS, &out);
    TAP_CHECK(err == TG_OK, "final reset: %s", tg_errname(err));
    uint32_t totals[TG_SEAT_STATE_COUNT];
    pu_partition_counts(p, totals, NULL, NULL);
    TAP_CHECK(totals[TG_SEAT_FREE] == RESET_SEATS - RESET_BLOCKED &&
                  totals[TG_SEAT_BLOCKED] == RESET_BLOCKED,
              "after the final reset: %u free, %u blocked", totals[TG_SEAT_FREE],
              totals[TG_SEAT_BLOCKED]);
    TAP_CHECK(consumer_finish(consumer, why), "seed %" PRIu64 ": %s", seed, why);
    TAP_CHECK(consumer_replay_matches(consumer, why), "seed %" PRIu64 ": %s", seed, why);
    TAP_CHECK(partition_consistent(p, why), "seed %" PRIu64 ": %s", seed, why);
    for (uint32_t seq = 1; seq < consumer->booking_cap; seq++) {
        tg_booking_status last = (tg_booking_status)consumer->booking_status[seq];
        TAP_CHECK(last == TG_BOOKING_EMPTY || last >= TG_BOOKING_CANCELLED,
                  "booking seq %u is still %s after the final reset", seq,
                  tg_booking_status_name(last));
    }
}

/* Three shoppers book, pay and cancel on 256 seats while a fourth thread
 * resets the partition over and over.  The log must still follow every
 * seat's word version by version and end on its current word (a replica
 * applying it ends where the primary is), every invariant must hold when
 * they stop, and the blocked seats must never move. */
static void resets_racing_with_shoppers_keep_every_invariant(void)
{
    char name[TG_SHM_NAME_BYTES], why[WHY_BYTES];
    shm_name_make(name, "reset");
    layout *l = layout_make(2, 8, RESET_SEATS / 16);
    l->cfg.booking_capacity = 4096; /* paid and pending bookings pile up between resets */
    pu_partition *p = partition_new(l, name);
    uint32_t blocked[RESET_BLOCKED];
    for (uint32_t i = 0; i < RESET_BLOCKED; i++) {
        blocked[i] = i;
    }
    pu_hold_result out;
    TAP_CHECK(pu_seats_block(p, blocked, RESET_BLOCKED, &out) == TG_OK, "%s", "block");
    log_consumer *consumer = consumer_new(p, l->seat_count, true);
    uint64_t seed = env_u64("TIXGRID_CONTENTION_SEED", seed_from_clock());
    uint64_t rounds = env_u64("TIXGRID_CONTENTION_OPS", 1000000) / 20;
    reset_racer rs[4];
    pthread_t tids[4], reader;
    TAP_CHECK(pthread_create(&reader, NULL, consumer_main, consumer) == 0, "%s", "thread");
    for (uint32_t t = 0; t < 4; t++) {
        rs[t] = (reset_racer){
            .p = p, .index = t, .rng = seed + t + 1, .rounds = rounds, .resetter = t == 3};
        TAP_CHECK(pthread_create(&tids[t], NULL, reset_racer_main, &rs[t]) == 0, "%s", "thread");
    }
    for (uint32_t t = 0; t < 3; t++) {
        pthread_join(tids[t], NULL);
    }
    __atomic_store_n(&rs[3].stop, 1, __ATOMIC_RELEASE);
    pthread_join(tids[3], NULL);
    __atomic_store_n(&consumer->stop, 1, __ATOMIC_RELEASE);
    pthread_join(reader, NULL);
    for (uint32_t t = 0; t < 4; t++) {
        TAP_CHECK(!rs[t].failed, "seed %" PRIu64 ": %s", seed, rs[t].why);
    }
    note("shoppers: %" PRIu64 "/%" PRIu64 ", %" PRIu64 "/%" PRIu64 ", %" PRIu64 "/%" PRIu64
         " steps done/refused; %" PRIu64 " resets cancelled %" PRIu64 " bookings, freed %" PRIu64
         " seats",
         rs[0].ok, rs[0].refused, rs[1].ok, rs[1].refused, rs[2].ok, rs[2].refused, rs[3].resets,
         rs[3].cancelled, rs[3].freed);
    TAP_CHECK(rs[3].cancelled > 0, "seed %" PRIu64 ": no reset ever overtook a shopper", seed);
    TAP_CHECK(consumer_finish(consumer, why), "seed %" PRIu64 ": %s", seed, why);
    TAP_CHECK(partition_consistent(p, why), "seed %" PRIu64 ": %s", seed, why);
    for (uint32_t i = 0; i < RESET_BLOCKED; i++) {
        pu_seat_info seat;
        TAP_CHECK(pu_seat_get(p, i, &seat) == TG_OK && seat.state == TG_SEAT_BLOCKED,
                  "blocked seat %u is %s", i, tg_seat_state_name(seat.state));
    }
    reset_final(p, consumer, seed);
    untrack(consumer);
    untrack(p);
    TAP_CHECK(pu_partition_destroy(name) == TG_OK, "%s", "unexpected value");
    untrack(l);
}

/* ---- Crash in the middle of a burst ------------------------------------------------ */

#define CRASH_RUNS    6u
#define CRASH_THREADS 2u

/* The child's threads cannot assert: a failure is printed for the parent's
 * log (the parent then sees the child idle, not a failed test). */
static void *crash_worker_main(void *arg)
{
    worker *w = arg;
    worker_main(w);
    if (w->failed) {
        fprintf(stderr, "crash child: %s\n", w->why);
    }
    return NULL;
}

static void *crash_consumer_main(void *arg)
{
    log_consumer *c = arg;
    consumer_main(c);
    if (c->failed) {
        fprintf(stderr, "crash child: %s\n", c->why);
    }
    return NULL;
}

/* The child: creates the segment (so it is the owner), sells from two
 * threads with holds of up to 8 seats while a third reads the log, and
 * writes one byte to ready_fd once all are running.  It is killed.  With
 * ack, the reader acknowledges what it read and a small ring wraps many
 * times; without, the ring is large and keeps the whole history, which the
 * parent replays after recovery. */
static _Noreturn void crash_child(const char *name, int ready_fd, uint64_t seed, bool ack)
{
    layout *l = layout_make(2, 10, 500);
    l->cfg.log_records = ack ? 1u << 14 : 1u << 20;
    l->cfg.booking_capacity = ack ? 0 : 1u << 17; /* unacked: no slot is ever reused */
    pu_partition *p = NULL;
    if (pu_partition_create(name, &l->cfg, &p) != TG_OK) {
        _exit(2);
    }
    static worker ws[CRASH_THREADS];
    static log_consumer *consumer;
    consumer = calloc(1, sizeof *consumer);
    consumer->p = p;
    consumer->seat_count = l->seat_count;
    consumer->ack = ack;
    consumer->next_seq = 1;
    consumer->last_word = calloc(l->seat_count, sizeof *consumer->last_word);
    pthread_t tids[CRASH_THREADS + 1];
    pthread_create(&tids[CRASH_THREADS], NULL, crash_consumer_main, consumer);
    for (uint32_t t = 0; t < CRASH_THREADS; t++) {
        worker_init(&ws[t], p, l, t, seed, UINT64_MAX, CRASH_THREADS);
        ws[t].hold_max = 8;
        ws[t].sold_budget = l->seat_count / 4 / CRASH_THREADS;
        pthread_create(&tids[t], NULL, crash_worker_main, &ws[t]);
    }
    char byte = 'R';
    ssize_t unused = write(ready_fd, &byte, 1);
    (void)unused;
    sleep(60); /* the parent kills us long before */
    _exit(3);
}

/* A few operations on the recovered partition, which must work normally. */
static void crash_after_recovery(pu_partition *p, uint32_t seat_count)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    tg_err err = pu_log_ack(p, info.log_head); /* the persister catches up */
    TAP_CHECK((err) == (TG_OK), "ack of the recovered log up to %" PRIu64 ": %s", info.log_head,
              tg_errname(err));
    pu_booking_info b;
    err = pu_booking_create(p, 77, FROZEN_NOW_MS, &b);
    TAP_CHECK((err) == (TG_OK), "create after recovery: %s", tg_errname(err));
    pu_best_request req = {.quantity = 2, .section = -1, .adjacent_only = false};
    pu_hold_result out;
    err = pu_seats_hold_best(p, b.id, 77, &req, FROZEN_NOW_MS, &out);
    TAP_CHECK(err == TG_OK || err == TG_ENO_SEATS, "hold_best after recovery: %s", tg_errname(err));
    if (err == TG_OK) {
        int64_t deadline;
        TAP_CHECK((pu_booking_begin_payment(p, b.id, 77, FROZEN_NOW_MS, &deadline)) == (TG_OK),
                  "%s", "unexpected value");
        TAP_CHECK((pu_booking_confirm(p, b.id, FROZEN_NOW_MS)) == (TG_OK), "%s",
                  "unexpected value");
        for (uint32_t i = 0; i < out.seat_count; i++) {
            TAP_CHECK(out.seats[i] < seat_count, "%s", "failed");
            pu_seat_info seat;
            pu_seat_get(p, out.seats[i], &seat);
            TAP_CHECK((seat.state) == (TG_SEAT_SOLD), "%s", "unexpected value");
        }
    }
}

/* Replays the whole log of a partition whose log was never acknowledged and
 * compares what a replica would hold with the recovered segment. */
static void crash_replay(pu_partition *p, uint64_t seed, uint32_t run)
{
    char why[WHY_BYTES];
    pu_partition_info info;
    pu_partition_describe(p, &info);
    TAP_CHECK((info.log_persisted) == (0), "%s", "unexpected value");
    log_consumer *c = track(calloc(1, sizeof *c), release_consumer);
    c->p = p;
    c->seat_count = info.seat_count;
    c->next_seq = 1;
    c->after_crash = true;
    c->last_word = calloc(info.seat_count, sizeof *c->last_word);
    TAP_CHECK((c->last_word) != NULL, "%s", "out of memory");
    bool ok = consumer_finish(c, why) && consumer_replay_matches(c, why);
    TAP_CHECK(ok, "seed %" PRIu64 " run %u: replaying the log after recovery: %s", seed, run, why);
    note("crash run %u: replayed %" PRIu64 " seat, %" PRIu64 " booking and %" PRIu64
         " no-op records; %" PRIu64 " seat records repeat the previous word",
         run, c->seat_records, c->booking_records, c->nop_records, c->repeated_records);
    untrack(c);
}

static pid_t crash_start(const char *name, uint64_t seed, bool ack)
{
    int ready[2];
    TAP_CHECK((pipe(ready)) == (0), "%s", "unexpected value");
    fflush(NULL);
    pid_t pid = fork();
    TAP_CHECK(pid >= 0, "%s", "failed");
    if (pid == 0) {
        close(ready[0]);
        crash_child(name, ready[1], seed, ack);
    }
    close(ready[1]);
    char byte = 0;
    TAP_CHECK((read(ready[0], &byte, 1)) == (1), "crash child died before it was ready");
    close(ready[0]);
    pu_partition *p = NULL;
    TAP_CHECK((pu_partition_attach(name, PU_ATTACH_OWNER, &p)) == (TG_EBUSY),
              "a second owner could attach while the first was alive");
    return pid;
}

static void crash_run(uint64_t seed, uint32_t run, uint32_t delay_us)
{
    char name[TG_SHM_NAME_BYTES], why[WHY_BYTES];
    shm_name_make(name, "crash");
    bool ack = run % 2 == 1;
    pid_t pid = crash_start(name, seed + run, ack);
    usleep(delay_us);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    TAP_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "seed %" PRIu64 " run %u: the crash child ended before the kill: %s %d "
              "(see its log line above)",
              seed, run, WIFEXITED(status) ? "exit" : "signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    int64_t start = tg_mono_ns();
    pu_partition *p = NULL;
    tg_err err = pu_partition_attach(name, PU_ATTACH_OWNER, &p);
    TAP_CHECK((err) == (TG_OK), "seed %" PRIu64 " run %u: attach as owner: %s", seed, run,
              tg_errname(err));
    track(p, release_detach);
    int64_t recovery_ns = tg_mono_ns() - start;
    pu_partition_info info;
    pu_partition_describe(p, &info);
    note("crash run %u (%s): killed after %u us; %" PRIu64 " bookings, log head %" PRIu64
         ", persisted %" PRIu64 "; attach+recovery %.1f ms",
         run, ack ? "acked log" : "whole log kept", delay_us, info.bookings_created, info.log_head,
         info.log_persisted, (double)recovery_ns / 1e6);
    TAP_CHECK(partition_consistent(p, why), "seed %" PRIu64 " run %u: %s", seed, run, why);
    if (!ack) {
        crash_replay(p, seed, run);
    }
    crash_after_recovery(p, info.seat_count);
    TAP_CHECK(partition_consistent(p, why), "seed %" PRIu64 " run %u after more sales: %s", seed,
              run, why);
    untrack(p);
    TAP_CHECK((pu_partition_destroy(name)) == (TG_OK), "%s", "unexpected value");
}

static void owner_recovers_a_consistent_partition_after_sigkill_mid_burst(void)
{
    uint64_t seed = env_u64("TIXGRID_CONTENTION_SEED", seed_from_clock());
    uint64_t rng = seed;
    for (uint32_t run = 0; run < CRASH_RUNS; run++) {
        /* Unacknowledged runs fill their ring in about 0.2 s: kill them sooner. */
        uint32_t delay_us = run < 2 ? 200 : 1000 + rng_below(&rng, run % 2 ? 300000 : 80000);
        crash_run(seed, run, delay_us);
    }
}

/* Criterion cannot run under ThreadSanitizer (its runner maps a shared arena
 * at an address TSan refuses), so these cases use tests/tap.h: each runs in
 * its own forked process and reports TAP.  Arguments (meson passes
 * Criterion's) are ignored; TIXGRID_CONTENTION_CASE=<part of a name> runs
 * only the matching cases. */
int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    runner_pid = getpid();
    static const tap_case all[] = {
        TAP_CASE(each_raced_seat_is_won_by_exactly_one_thread),
        TAP_CASE(racing_blocks_and_unblocks_keep_each_seats_records_in_order),
        TAP_CASE(resets_racing_with_shoppers_keep_every_invariant),
        TAP_CASE(owner_recovers_a_consistent_partition_after_sigkill_mid_burst),
        TAP_CASE(threads_never_sell_a_seat_twice_and_keep_every_invariant),
    };
    const char *only = getenv("TIXGRID_CONTENTION_CASE");
    tap_case cases[sizeof all / sizeof all[0]];
    size_t count = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (only == NULL || strstr(all[i].name, only) != NULL) {
            cases[count++] = all[i];
        }
    }
    int status = tap_run(cases, count);
    segments_sweep();
    return status;
}

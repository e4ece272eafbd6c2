/*
 * engine_bench.c — how fast the seat engine sells, on one and two threads.
 *
 * Three loops run against one 100,000-seat partition (4 sections x 25 rows
 * x 1,000 seats) in shared memory, each for a fixed time on 1 and then 2
 * threads:
 *
 *   hold+release   each thread has its own booking and holds one random
 *                  seat, then releases it: a "pair" is one successful hold
 *                  plus its release, i.e. two single-seat operations, each a
 *                  CAS of the seat word plus a change-log record.  Holds that
 *                  find the seat taken (by the other thread) are counted
 *                  apart and not in the rate.
 *   best4+cancel   each cycle creates a booking, holds the best 4 available
 *                  seats (all threads want the same best seats, so they
 *                  collide) and cancels the booking.
 *
 * A helper thread stands in for the persister: every millisecond it
 * acknowledges the log up to its newest written record, so the ring never
 * reaches its high-water mark; it sleeps otherwise and costs no measurable
 * CPU.  Timing uses tg_mono_ns(); each thread checks the clock every 256
 * iterations.  This program is run by scripts/bench, never by the tests.
 */
#include "partition.h"

#include "tixgrid/cli.h"
#include "tixgrid/clock.h"
#include "tixgrid/seat.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_SECTIONS         4u
#define BENCH_ROWS_PER_SECTION 25u
#define BENCH_ROW_SEATS        1000u
#define BENCH_SEATS            (BENCH_SECTIONS * BENCH_ROWS_PER_SECTION * BENCH_ROW_SEATS)
#define BENCH_THREADS_MAX      2u
#define BENCH_CLOCK_EVERY      256u                   /* iterations between clock reads */
#define BENCH_NOW_MS           INT64_C(1900000000000) /* fixed: no booking expires mid-run */

static const char usage[] =
    "usage: bench_engine [--seconds N] [--help] [--version]\n"
    "\n"
    "Measures the seat engine on a 100,000-seat partition in shared memory:\n"
    "single-seat hold+release pairs per second and best-available 4-seat\n"
    "hold+cancel cycles per second, on 1 and 2 threads, N seconds each\n"
    "(default 3; also TIXGRID_BENCH_SECONDS).\n";

typedef enum { LOOP_HOLD_RELEASE, LOOP_BEST_CANCEL } bench_loop;

typedef struct {
    pu_partition *p;
    bench_loop loop;
    uint32_t index;
    int64_t duration_ns;
    uint64_t rng;
    uint64_t done;    /* pairs or cycles completed */
    uint64_t refused; /* attempts that found their seats taken or none left */
    int64_t elapsed_ns;
    char error[160];
} bench_thread;

typedef struct {
    pu_partition *p;
    int stop; /* atomic */
    uint64_t acks;
} bench_persister;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

/* Acknowledges the log up to the newest record already written. */
static void persister_catch_up(bench_persister *ps)
{
    pu_partition_info info;
    pu_partition_describe(ps->p, &info);
    pu_log_record rec;
    for (uint64_t seq = info.log_head; seq > info.log_persisted && seq + 64 > info.log_head;
         seq--) {
        if (pu_log_read(ps->p, seq, &rec, 1) == 1 && pu_log_ack(ps->p, seq) == TG_OK) {
            ps->acks++;
            return;
        }
    }
}

static void *persister_main(void *arg)
{
    bench_persister *ps = arg;
    while (!__atomic_load_n(&ps->stop, __ATOMIC_ACQUIRE)) {
        persister_catch_up(ps);
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    persister_catch_up(ps);
    return NULL;
}

static bool hold_release_once(bench_thread *t, tg_booking_id id, uint64_t user)
{
    uint32_t seat = (uint32_t)((rng_next(&t->rng) >> 32) % BENCH_SEATS);
    pu_hold_result out;
    tg_err err = pu_seats_hold(t->p, id, user, &seat, 1, BENCH_NOW_MS, &out);
    if (err == TG_ESEAT_TAKEN) {
        t->refused++;
        return true;
    }
    if (err == TG_OK) {
        err = pu_seats_release(t->p, id, user, &seat, 1, BENCH_NOW_MS);
    }
    if (err != TG_OK) {
        snprintf(t->error, sizeof t->error, "hold/release seat %u: %s", seat, tg_errname(err));
        return false;
    }
    t->done++;
    return true;
}

static bool best_cancel_once(bench_thread *t, uint64_t user)
{
    pu_booking_info booking;
    tg_err err = pu_booking_create(t->p, user, BENCH_NOW_MS, &booking);
    if (err != TG_OK) {
        snprintf(t->error, sizeof t->error, "create: %s", tg_errname(err));
        return false;
    }
    pu_best_request req = {.quantity = 4, .section = -1, .adjacent_only = false};
    pu_hold_result out;
    err = pu_seats_hold_best(t->p, booking.id, user, &req, BENCH_NOW_MS, &out);
    if (err == TG_ENO_SEATS || err == TG_EBUSY) {
        t->refused++;
    } else if (err != TG_OK) {
        snprintf(t->error, sizeof t->error, "hold_best: %s", tg_errname(err));
        return false;
    }
    err = pu_booking_cancel(t->p, booking.id, user, BENCH_NOW_MS);
    if (err != TG_OK) {
        snprintf(t->error, sizeof t->error, "cancel: %s", tg_errname(err));
        return false;
    }
    t->done += out.seat_count == 4 ? 1 : 0;
    return true;
}

static void *bench_thread_main(void *arg)
{
    bench_thread *t = arg;
    uint64_t user = 100 + t->index;
    pu_booking_info booking = {0};
    if (t->loop == LOOP_HOLD_RELEASE) {
        tg_err err = pu_booking_create(t->p, user, BENCH_NOW_MS, &booking);
        if (err != TG_OK) {
            snprintf(t->error, sizeof t->error, "create: %s", tg_errname(err));
            return NULL;
        }
    }
    int64_t start = tg_mono_ns();
    int64_t now = start;
    bool ok = true;
    while (ok && now - start < t->duration_ns) {
        for (uint32_t i = 0; ok && i < BENCH_CLOCK_EVERY; i++) {
            ok = t->loop == LOOP_HOLD_RELEASE ? hold_release_once(t, booking.id, user)
                                              : best_cancel_once(t, user);
        }
        now = tg_mono_ns();
    }
    t->elapsed_ns = now - start;
    if (t->loop == LOOP_HOLD_RELEASE && booking.id != 0) {
        pu_booking_cancel(t->p, booking.id, user, BENCH_NOW_MS);
    }
    return NULL;
}

static pu_partition *bench_partition(char *name, size_t name_size)
{
    static pu_section_spec sections[BENCH_SECTIONS];
    static pu_row_spec rows[BENCH_SECTIONS * BENCH_ROWS_PER_SECTION];
    for (uint32_t s = 0; s < BENCH_SECTIONS; s++) {
        snprintf(sections[s].name, TG_NAME_BYTES, "S%u", s + 1);
        sections[s].price_minor = 5000;
        memcpy(sections[s].currency, "EUR", 4);
        sections[s].row_count = BENCH_ROWS_PER_SECTION;
    }
    for (uint32_t r = 0; r < BENCH_SECTIONS * BENCH_ROWS_PER_SECTION; r++) {
        snprintf(rows[r].name, TG_NAME_BYTES, "R%u", r % BENCH_ROWS_PER_SECTION + 1);
        rows[r].seat_count = BENCH_ROW_SEATS;
    }
    pu_partition_config cfg = {
        .partition_id = 1,
        .event_id = 1,
        .section_count = BENCH_SECTIONS,
        .sections = sections,
        .row_count = BENCH_SECTIONS * BENCH_ROWS_PER_SECTION,
        .rows = rows,
    };
    snprintf(name, name_size, "/tixgrid-bench-engine-%ld", (long)getpid());
    pu_partition *p = NULL;
    tg_err err = pu_partition_create(name, &cfg, &p);
    if (err != TG_OK) {
        fprintf(stderr, "bench_engine: creating %s failed: %s\n", name, tg_strerror(err));
        return NULL;
    }
    return p;
}

/* Runs one loop on `threads` threads; prints a row; false on an error. */
static bool bench_run(pu_partition *p, bench_loop loop, uint32_t threads, double seconds)
{
    bench_thread ts[BENCH_THREADS_MAX];
    pthread_t tids[BENCH_THREADS_MAX], helper;
    bench_persister ps = {.p = p};
    pthread_create(&helper, NULL, persister_main, &ps);
    for (uint32_t i = 0; i < threads; i++) {
        ts[i] = (bench_thread){.p = p,
                               .loop = loop,
                               .index = i,
                               .duration_ns = (int64_t)(seconds * 1e9),
                               .rng = 0x9E3779B97F4A7C15ull * (i + 1) + (uint64_t)threads};
        pthread_create(&tids[i], NULL, bench_thread_main, &ts[i]);
    }
    uint64_t done = 0, refused = 0;
    int64_t elapsed = 0;
    bool ok = true;
    for (uint32_t i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        done += ts[i].done;
        refused += ts[i].refused;
        elapsed = ts[i].elapsed_ns > elapsed ? ts[i].elapsed_ns : elapsed;
        if (ts[i].error[0] != '\0') {
            fprintf(stderr, "bench_engine: thread %u: %s\n", i, ts[i].error);
            ok = false;
        }
    }
    __atomic_store_n(&ps.stop, 1, __ATOMIC_RELEASE);
    pthread_join(helper, NULL);
    double rate = elapsed > 0 ? (double)done * 1e9 / (double)elapsed : 0;
    double ops = loop == LOOP_HOLD_RELEASE ? 2 * rate : 3 * rate;
    printf("%-24s %7u %14.0f %14.0f %10.1f %12" PRIu64 "\n",
           loop == LOOP_HOLD_RELEASE ? "hold+release, 1 seat" : "best 4 + cancel", threads, rate,
           ops, ops > 0 ? 1e9 * threads / ops : 0, refused);
    fflush(stdout);
    return ok;
}

static int parse_seconds(int argc, char **argv, double *seconds)
{
    const char *text = tg_env("TIXGRID_BENCH_SECONDS", "3");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            text = argv[++i];
        } else if (strncmp(argv[i], "--seconds=", 10) == 0) {
            text = argv[i] + 10;
        } else {
            return tg_cli_usage_error("bench_engine", "unknown argument '%s'", argv[i]);
        }
    }
    char *end = NULL;
    *seconds = strtod(text, &end);
    if (end == text || *end != '\0' || !(*seconds > 0 && *seconds <= 3600)) {
        return tg_cli_usage_error("bench_engine", "--seconds wants a number in (0, 3600], not '%s'",
                                  text);
    }
    return TG_EXIT_OK;
}

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, "bench_engine", usage, &code)) {
        return code;
    }
    double seconds = 0;
    if ((code = parse_seconds(argc, argv, &seconds)) != TG_EXIT_OK) {
        return code;
    }
    char name[TG_SHM_NAME_BYTES];
    pu_partition *p = bench_partition(name, sizeof name);
    if (p == NULL) {
        return TG_EXIT_FAILURE;
    }
    printf("engine: %u seats, %.1f s per row; ops = seat operations (best: create+hold+cancel)\n",
           BENCH_SEATS, seconds);
    printf("%-24s %7s %14s %14s %10s %12s\n", "loop", "threads", "pairs|cycles/s", "ops/s",
           "ns/op/thr", "refused");
    fflush(stdout);
    bool ok = true;
    for (uint32_t threads = 1; ok && threads <= BENCH_THREADS_MAX; threads++) {
        ok = bench_run(p, LOOP_HOLD_RELEASE, threads, seconds);
    }
    for (uint32_t threads = 1; ok && threads <= BENCH_THREADS_MAX; threads++) {
        ok = bench_run(p, LOOP_BEST_CANCEL, threads, seconds);
    }
    if (ok && pu_partition_check(p) != TG_OK) {
        fprintf(stderr, "bench_engine: the partition failed its check after the runs\n");
        ok = false;
    }
    pu_partition_detach(p);
    pu_partition_destroy(name);
    return ok ? TG_EXIT_OK : TG_EXIT_FAILURE;
}

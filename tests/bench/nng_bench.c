/*
 * nng_bench.c — what serving the engine over nng costs, next to bare nng.
 *
 * Two servers run in processes of their own and are measured one after the
 * other with the same client (tixgrid/client.h, the routing client the
 * gateway uses) over ipc://, with the same number of requests in flight and
 * the same number of REP contexts on the server side:
 *
 *   echo   a raw nng REP server (this program, re-executed with
 *          --serve-echo) whose contexts send each request back unchanged:
 *          the floor cost of an nng round trip (thread hand-offs, ipc).
 *          Its cycle per context is the unit's, minus the request's work.
 *   hold   a real tixgrid-pu serving one 100,000-seat partition (50 rows
 *          of 2,000 seats) in --unpersisted mode, so that its housekeeping
 *          trims the change log and the ring never fills.  Each in-flight
 *          slot owns a booking and walks its own seats (slot i uses seats
 *          i, i + slots, i + 2 * slots, ...): hold a seat, release it, hold
 *          the next; every request is a single-seat operation that CASes a
 *          seat word and writes a log record, and no two slots ever touch
 *          the same seat or booking.
 *
 * Both get the same encoded seats_hold/seats_release messages from the same
 * raw nng REQ client (one context per request in flight), which decodes no
 * reply and only checks the unit's reply types, so the client's work is
 * identical; the difference is what the unit does per request (decode,
 * route, engine call, encode).  The ratio hold/echo is the
 * figure of merit (target >= 70%).  Each callback sends the slot's next
 * request at once; a warm-up precedes each measured run.  Round-trip
 * latencies go into a histogram (10 us buckets) for p50 and p99.
 *
 * --backup measures replication instead: the same unit holding and
 * releasing with no backup, then with one backup (a second tixgrid-pu on
 * the same machine, named by repl_backups; every reply waits for its ack),
 * alternated, same client, same slots.  The ratio with/without backup is
 * the figure of merit (target >= 70%).  Both units share the machine's
 * cores with the client, as a primary and its backup on one host would.
 * With --sweep, both are measured at 64, 256 and 1024 in flight, and the
 * ratio of their peak throughputs is the figure of merit: with 64 in a
 * closed loop the rate is bound by latency (every reply with a backup
 * waits for a batch's round trip to it, 0.4 ms here, while a core idles:
 * 17 % of the machine in a profile), so it measures that latency more than
 * what the grid can carry.  The ratio at 64 is printed too.  Each slot
 * walks the seats with the stride of all slots made, so slots of
 * different levels never meet on a seat.
 *
 * The program never closes its nng sockets: nng 1.5.2's nng_close can hang
 * once a peer has gone away (tests/integration/harness.h); it stops its
 * servers with SIGTERM (SIGKILL after a bound), removes the unit's segment
 * and folder, and exits.  Run by scripts/bench, never by the tests.
 */
#include "tixgrid/cli.h"
#include "tixgrid/client.h"
#include "tixgrid/clock.h"
#include "tixgrid/seat.h"
#include "tixgrid/wire.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "bench_nng"
#define PARTITION 1u
#define SEATS 100000u
#define ROWS 50u
#define ROW_SEATS 2000u
#define USER UINT64_C(4242)
#define INFLIGHT_MAX 1024u
#define CONTEXTS_MAX 1024u
#define WARMUP_MS 500
#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 5000
#define REQUEST_TIMEOUT_MS 5000u
#define HIST_BUCKET_NS 10000
#define HIST_BUCKETS 10000 /* up to 100 ms */
#define TARGET_PERCENT 70.0

#ifndef NNG_BENCH_PU_BIN
#define NNG_BENCH_PU_BIN "tixgrid-pu"
#endif

static const char usage[] =
    "usage: bench_nng [--seconds N] [--rounds N] [--inflight N] [--contexts N] [--pub]\n"
    "                 [--backup [--sweep]]\n"
    "\n"
    "Round trips per second over ipc:// with N requests in flight (default 64)\n"
    "against a raw nng REP echo server and against tixgrid-pu holding and\n"
    "releasing single seats of a 100,000-seat partition (--unpersisted), both\n"
    "with the same number of REP contexts (default 64), N seconds each\n"
    "(default 5; also TIXGRID_BENCH_SECONDS).  --pub lets the unit publish\n"
    "seat changes too.  --rounds N alternates the two N times (default 1) and\n"
    "prints the medians: use it on a busy machine.  --backup compares the unit\n"
    "without a backup and with one (a second unit; replies wait for its acks)\n"
    "instead of echo and hold; with --sweep, at 64, 256 and 1024 in flight,\n"
    "comparing the peak throughput of each.  The unit is TIXGRID_PU_BIN, or\n"
    "the one built with this program.\n";

typedef struct {
    uint32_t seconds;
    uint32_t rounds; /* echo, hold, echo, hold, ...: medians printed */
    uint32_t inflight;
    uint32_t contexts;
    bool pub;
    bool backup; /* compare no backup with one backup instead of echo with hold */
    bool sweep;  /* --backup at SWEEP_LEVELS in flight: peak throughput of each */
} options;

#define ROUNDS_MAX 20u
/* In flight for --sweep: the default, then enough to keep two cores busy
 * while every reply waits for one more round trip. */
static const uint32_t SWEEP_LEVELS[] = {64, 256, 1024};
#define SWEEP_COUNT (sizeof(SWEEP_LEVELS) / sizeof(SWEEP_LEVELS[0]))

/* ---- The echo server ---------------------------------------------------- */

typedef struct {
    nng_ctx ctx;
    nng_aio *aio;
    bool sending;
} echo_ctx;

static void echo_cb(void *arg)
{
    echo_ctx *e = arg;
    int rv = nng_aio_result(e->aio);
    if (e->sending) {
        e->sending = false;
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(e->aio));
        }
    } else if (rv == 0) {
        e->sending = true;
        nng_ctx_send(e->ctx, e->aio); /* the request message, back unchanged */
        return;
    }
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        return;
    }
    nng_ctx_recv(e->ctx, e->aio);
}

/* Runs until SIGTERM; never returns. */
static void serve_echo(const char *url, uint32_t contexts)
{
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    nng_socket s;
    static echo_ctx ctxs[CONTEXTS_MAX];
    if (contexts == 0 || contexts > CONTEXTS_MAX || nng_rep0_open(&s) != 0 ||
        nng_listen(s, url, NULL, 0) != 0) {
        fprintf(stderr, "%s: echo server cannot listen on %s\n", PROGRAM, url);
        _exit(1);
    }
    for (uint32_t i = 0; i < contexts; i++) {
        if (nng_aio_alloc(&ctxs[i].aio, echo_cb, &ctxs[i]) != 0 ||
            nng_ctx_open(&ctxs[i].ctx, s) != 0) {
            _exit(1);
        }
        nng_ctx_recv(ctxs[i].ctx, ctxs[i].aio);
    }
    int sig = 0;
    sigwait(&signals, &sig);
    _exit(0);
}

/* ---- Child processes ---------------------------------------------------- */

static pid_t spawn(char *const argv[], const char *log_path)
{
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(127);
        }
        if (log_fd >= 0) {
            dup2(log_fd, 1);
            dup2(log_fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (log_fd >= 0) {
        close(log_fd);
    }
    return pid;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* SIGTERM, at most STOP_TIMEOUT_MS, then SIGKILL; the exit status. */
static int stop_child(pid_t pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    for (int waited = 0; waited < STOP_TIMEOUT_MS; waited += 5) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return status;
        }
        sleep_ms(5);
    }
    fprintf(stderr, "%s: child %d ignored SIGTERM for %d ms; killed\n", PROGRAM, (int)pid,
            STOP_TIMEOUT_MS);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
}

/* Waits until the ipc socket file exists (or the child died). */
static bool wait_listening(pid_t pid, const char *url)
{
    const char *path = url + strlen("ipc://");
    for (int waited = 0; waited < START_TIMEOUT_MS; waited += 5) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            return true;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            return false;
        }
        sleep_ms(5);
    }
    return false;
}

/* ---- The load ------------------------------------------------------------ */

/* Raw nng on the client side too: each slot is an nng context with its own
 * AIO that sends the slot's encoded request, receives the reply, checks
 * its type (the second byte of the message: a fixint type) and sends the
 * next.  No reply is decoded, so the client's work is the same whatever the
 * server; the unit's tg_client is used only to set up (bookings). */

typedef struct bench bench;

typedef struct {
    bench *owner;
    uint32_t index;
    nng_ctx ctx;
    nng_aio *aio;
    bool receiving;
    tg_booking_id booking;
    uint32_t seat;   /* the seat this slot works on now */
    bool holding;    /* the next request releases it */
    int64_t sent_ns; /* for the latency histogram */
    msgpack_sbuffer buf;
} slot;

struct bench {
    nng_socket sock;
    bool check_type; /* the server is a unit: its replies must be ok replies */
    uint32_t slot_count; /* slots in use */
    uint32_t stride;     /* slots made: slot i takes seats i, i + stride, ... */
    slot slots[INFLIGHT_MAX];
    bool counting;               /* atomic: completions count from now on */
    bool stop;                   /* atomic: no new requests */
    uint32_t in_flight;          /* atomic */
    uint64_t done;               /* atomic: counted completions */
    uint64_t failed;             /* atomic: transport errors and error replies */
    int first_error;             /* nng error, or -1 for an error reply */
    uint64_t hist[HIST_BUCKETS]; /* atomic: counted latencies */
};

static void slot_fail(bench *b, int error)
{
    if (__atomic_fetch_add(&b->failed, 1, __ATOMIC_RELAXED) == 0) {
        b->first_error = error;
    }
    __atomic_fetch_sub(&b->in_flight, 1, __ATOMIC_ACQ_REL);
}

/* Encodes the slot's next request (hold, then release, then the next seat)
 * and sends it. */
static void slot_send(slot *s)
{
    tg_msg r = {.type = s->holding ? TG_WIRE_SEATS_RELEASE : TG_WIRE_SEATS_HOLD};
    /* seats_hold and seats_release have the same fields. */
    r.seats_hold.booking_id = s->booking;
    r.seats_hold.user_id = USER;
    r.seats_hold.seats = (tg_wire_seat_ids){.count = 1, .ids = {s->seat}};
    nng_msg *msg;
    if (tg_wire_encode(&r, &s->buf, NULL) != TG_OK || nng_msg_alloc(&msg, 0) != 0 ||
        nng_msg_append(msg, s->buf.data, s->buf.size) != 0) {
        slot_fail(s->owner, NNG_ENOMEM);
        return;
    }
    s->receiving = false;
    s->sent_ns = tg_mono_ns();
    nng_aio_set_msg(s->aio, msg);
    nng_ctx_send(s->ctx, s->aio);
}

_Static_assert(sizeof(((tg_msg *)0)->seats_hold) == sizeof(((tg_msg *)0)->seats_release),
               "hold and release requests have the same fields");

/* True when the reply is the ok reply of the request just sent. */
static bool reply_ok(const slot *s, nng_msg *msg)
{
    const uint8_t *body = nng_msg_body(msg);
    uint8_t want = (uint8_t)tg_wire_reply_type(s->holding ? TG_WIRE_SEATS_RELEASE
                                                          : TG_WIRE_SEATS_HOLD);
    return nng_msg_len(msg) >= 2 && body[1] == want;
}

static void slot_cb(void *arg)
{
    slot *s = arg;
    bench *b = s->owner;
    int rv = nng_aio_result(s->aio);
    if (rv != 0) {
        if (!s->receiving) {
            nng_msg_free(nng_aio_get_msg(s->aio));
        }
        slot_fail(b, rv);
        return;
    }
    if (!s->receiving) {
        s->receiving = true;
        nng_ctx_recv(s->ctx, s->aio);
        return;
    }
    nng_msg *msg = nng_aio_get_msg(s->aio);
    bool ok = !b->check_type || reply_ok(s, msg);
    nng_msg_free(msg);
    if (__atomic_load_n(&b->counting, __ATOMIC_RELAXED)) {
        int64_t ns = tg_mono_ns() - s->sent_ns;
        uint64_t bucket = (uint64_t)(ns / HIST_BUCKET_NS);
        __atomic_fetch_add(&b->hist[bucket < HIST_BUCKETS ? bucket : HIST_BUCKETS - 1], 1,
                           __ATOMIC_RELAXED);
        __atomic_fetch_add(&b->done, 1, __ATOMIC_RELAXED);
    }
    if (!ok) {
        slot_fail(b, -1);
        return;
    }
    if (s->holding) {
        s->seat += b->stride; /* never a seat of another slot, at any level */
        if (s->seat >= SEATS) {
            s->seat = s->index;
        }
    }
    s->holding = !s->holding; /* even when stopping: the next run goes on from here */
    if (__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
        __atomic_fetch_sub(&b->in_flight, 1, __ATOMIC_ACQ_REL);
        return;
    }
    slot_send(s);
}

typedef struct {
    double rate;   /* completions per second */
    double p50_us; /* latency */
    double p99_us;
    uint64_t failed;
    int first_error;
} run_result;

static double percentile(const bench *b, uint64_t total, double q)
{
    uint64_t want = (uint64_t)((double)total * q), seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += b->hist[i];
        if (seen > want) {
            return (i + 0.5) * HIST_BUCKET_NS / 1000.0;
        }
    }
    return HIST_BUCKETS * (double)HIST_BUCKET_NS / 1000.0;
}

/* Runs the slots (already prepared) for a warm-up and `seconds`. */
static run_result measure(bench *b, uint32_t seconds)
{
    b->counting = false;
    b->stop = false;
    b->done = 0;
    b->failed = 0;
    b->first_error = 0;
    memset(b->hist, 0, sizeof(b->hist));
    b->in_flight = b->slot_count;
    for (uint32_t i = 0; i < b->slot_count; i++) {
        slot_send(&b->slots[i]);
    }
    sleep_ms(WARMUP_MS);
    int64_t t0 = tg_mono_ns();
    __atomic_store_n(&b->counting, true, __ATOMIC_RELEASE);
    sleep_ms((int)seconds * 1000);
    uint64_t done = __atomic_load_n(&b->done, __ATOMIC_ACQUIRE);
    int64_t t1 = tg_mono_ns();
    __atomic_store_n(&b->stop, true, __ATOMIC_RELEASE);
    for (int waited = 0; waited < 2 * (int)REQUEST_TIMEOUT_MS &&
                         __atomic_load_n(&b->in_flight, __ATOMIC_ACQUIRE) > 0;
         waited += 1) {
        sleep_ms(1);
    }
    run_result r = {.rate = (double)done * 1e9 / (double)(t1 - t0),
                    .p50_us = percentile(b, done, 0.50),
                    .p99_us = percentile(b, done, 0.99),
                    .failed = b->failed,
                    .first_error = b->first_error};
    return r;
}

/* A REQ socket to url (dialled synchronously: the server listens already)
 * and one context per slot. */
static bench *bench_new(const char *url, uint32_t inflight, bool check_type)
{
    bench *b = calloc(1, sizeof(*b));
    bool ok = b != NULL && nng_req0_open(&b->sock) == 0 &&
              nng_socket_set_ms(b->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE) == 0 &&
              nng_dial(b->sock, url, NULL, 0) == 0;
    for (uint32_t i = 0; ok && i < inflight; i++) {
        slot *s = &b->slots[i];
        *s = (slot){.owner = b, .index = i, .seat = i,
                    .booking = tg_booking_id_make(PARTITION, i + 1)};
        msgpack_sbuffer_init(&s->buf);
        ok = nng_aio_alloc(&s->aio, slot_cb, s) == 0 && nng_ctx_open(&s->ctx, b->sock) == 0;
        if (ok) {
            nng_aio_set_timeout(s->aio, REQUEST_TIMEOUT_MS);
        }
    }
    if (!ok) {
        fprintf(stderr, "%s: cannot open a client for %s\n", PROGRAM, url);
        return NULL;
    }
    b->check_type = check_type;
    b->slot_count = inflight;
    b->stride = inflight;
    return b;
}

/* Waits until the unit at url answers a stats request, then makes one
 * booking per slot (tg_client, blocking calls). */
static bool unit_prepare(bench *b, const char *url, pid_t server)
{
    tg_client *c = NULL;
    tg_client_config cfg = {.inflight_max = 4};
    tg_msg *rep = malloc(sizeof(*rep));
    if (rep == NULL || tg_client_open(&cfg, &c) != TG_OK ||
        tg_client_route(c, PARTITION, url) != TG_OK) {
        return false;
    }
    tg_msg stats = {.type = TG_WIRE_STATS};
    bool ready = false;
    for (int waited = 0; !ready && waited < START_TIMEOUT_MS; waited += 200) {
        ready = tg_client_call_to(c, url, &stats, 200, NULL, rep) == TG_OK;
        if (!ready && waitpid(server, NULL, WNOHANG) == server) {
            break;
        }
    }
    for (uint32_t i = 0; ready && i < b->slot_count; i++) {
        tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
        req.booking_create.partition_id = PARTITION;
        req.booking_create.user_id = USER;
        ready = tg_client_call(c, PARTITION, &req, REQUEST_TIMEOUT_MS, NULL, rep) == TG_OK;
        b->slots[i].booking = rep->booking_create_ok.booking_id;
    }
    free(rep);
    return ready; /* c stays open: see the top of this file */
}

/* ---- Main ------------------------------------------------------------------ */

static int parse(int argc, char **argv, options *o)
{
    o->seconds = 5;
    o->rounds = 1;
    o->inflight = 64;
    o->contexts = 64;
    const char *env = tg_env("TIXGRID_BENCH_SECONDS", NULL);
    uint64_t v;
    if (env != NULL && tg_parse_u64(env, 1, 3600, &v) == TG_OK) {
        o->seconds = (uint32_t)v;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        uint64_t max = strcmp(a, "--seconds") == 0  ? 3600
                       : strcmp(a, "--rounds") == 0 ? ROUNDS_MAX
                                                    : INFLIGHT_MAX;
        uint32_t *dst = strcmp(a, "--seconds") == 0    ? &o->seconds
                        : strcmp(a, "--rounds") == 0   ? &o->rounds
                        : strcmp(a, "--inflight") == 0 ? &o->inflight
                        : strcmp(a, "--contexts") == 0 ? &o->contexts
                                                       : NULL;
        if (strcmp(a, "--pub") == 0) {
            o->pub = true;
        } else if (strcmp(a, "--backup") == 0) {
            o->backup = true;
        } else if (strcmp(a, "--sweep") == 0) {
            o->sweep = true;
        } else if (dst != NULL && i + 1 < argc && tg_parse_u64(argv[i + 1], 1, max, &v) == TG_OK) {
            *dst = (uint32_t)v;
            i++;
        } else {
            return tg_cli_usage_error(PROGRAM, "bad or unknown option '%s'", a);
        }
    }
    if (o->sweep && !o->backup) {
        return tg_cli_usage_error(PROGRAM, "--sweep goes with --backup");
    }
    if (o->sweep) {
        o->inflight = SWEEP_LEVELS[SWEEP_COUNT - 1]; /* slots for the last level */
    }
    return 0;
}

static const char *write_layout(const char *dir)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/layout.json", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return NULL;
    }
    fprintf(f, "{\"partition_id\": %u, \"event_id\": 1, \"sections\": [{\"name\": \"Hall\", "
               "\"price\": 5000, \"currency\": \"EUR\", \"rows\": [",
            PARTITION);
    for (uint32_t r = 0; r < ROWS; r++) {
        fprintf(f, "%s{\"name\": \"R%u\", \"seats\": %u}", r ? ", " : "", r, ROW_SEATS);
    }
    fprintf(f, "]}]}\n");
    return fclose(f) == 0 ? path : NULL;
}

static void print_result(const char *what, const run_result *r)
{
    printf("  %-34s %9.0f round trips/s   p50 %6.0f us   p99 %6.0f us", what, r->rate, r->p50_us,
           r->p99_us);
    if (r->failed > 0) {
        printf("   (%llu failed: %s)", (unsigned long long)r->failed,
               r->first_error < 0 ? "error reply" : nng_strerror(r->first_error));
    }
    printf("\n");
}

typedef struct {
    pid_t pid;
    bench *bench;
    const char *log;
} server;

/* Starts a server and its client; a unit also gets its bookings and has its
 * replies checked. */
static bool server_start(server *sv, char *const argv[], const char *url, const char *log,
                         const options *o, bool unit)
{
    sv->log = log;
    sv->pid = spawn(argv, log);
    sv->bench = NULL;
    bool ok = sv->pid > 0 && wait_listening(sv->pid, url);
    if (ok) {
        sv->bench = bench_new(url, o->inflight, unit);
        ok = sv->bench != NULL && (!unit || unit_prepare(sv->bench, url, sv->pid));
    }
    if (!ok) {
        fprintf(stderr, "%s: %s did not start (see %s)\n", PROGRAM, argv[0], log);
    }
    return ok; /* the client stays open: see the top of this file */
}

static bool server_stop(server *sv, const char *what)
{
    if (sv->pid <= 0) {
        return true;
    }
    int status = stop_child(sv->pid);
    sv->pid = 0;
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        fprintf(stderr, "%s: %s exited with status %#x (see %s)\n", PROGRAM, what, status,
                sv->log);
        return false;
    }
    return true;
}

static int by_rate(const void *a, const void *b)
{
    double x = ((const run_result *)a)->rate, y = ((const run_result *)b)->rate;
    return (x > y) - (x < y);
}

/* Alternates the two, prints every round (when more than one) and the
 * medians; returns false if a request failed. */
static bool compare(const options *o, server *echo, server *unit)
{
    static run_result echo_runs[ROUNDS_MAX], hold_runs[ROUNDS_MAX];
    const char *hold_name = o->pub ? "tixgrid-pu hold/release (+pub)" : "tixgrid-pu hold/release";
    bool ok = true;
    for (uint32_t r = 0; r < o->rounds; r++) {
        echo_runs[r] = measure(echo->bench, o->seconds);
        hold_runs[r] = measure(unit->bench, o->seconds);
        ok &= echo_runs[r].failed == 0 && hold_runs[r].failed == 0;
        if (o->rounds > 1) {
            printf(" round %u\n", r + 1);
            print_result("echo (raw nng REP)", &echo_runs[r]);
            print_result(hold_name, &hold_runs[r]);
            fflush(stdout);
        }
    }
    qsort(echo_runs, o->rounds, sizeof(run_result), by_rate);
    qsort(hold_runs, o->rounds, sizeof(run_result), by_rate);
    const run_result *e = &echo_runs[o->rounds / 2], *h = &hold_runs[o->rounds / 2];
    if (o->rounds > 1) {
        printf(" medians of %u rounds\n", o->rounds);
    }
    print_result("echo (raw nng REP)", e);
    print_result(hold_name, h);
    double ratio = 100.0 * h->rate / e->rate;
    printf("  ratio hold/echo: %.0f%% (target >= %.0f%%)%s\n", ratio, TARGET_PERCENT,
           ratio >= TARGET_PERCENT ? "" : "  BELOW TARGET");
    return ok;
}

/* ---- --backup: hold/release without and with one backup -------------------- */

typedef struct {
    tg_client *client;
    const char *url;
    const char *backup_name, *backup_url;
    uint64_t epoch;
    tg_msg *rep;
} repl_ctl;

/* Names the backup (or none) to the unit; waits until it is in sync. */
static bool repl_name(repl_ctl *r, bool with_backup)
{
    tg_msg req = {.type = TG_WIRE_REPL_BACKUPS};
    req.repl_backups.partition_id = PARTITION;
    req.repl_backups.epoch = ++r->epoch;
    if (with_backup) {
        req.repl_backups.backup_count = 1;
        snprintf(req.repl_backups.backups[0].name, TG_PU_NAME_BYTES, "%s", r->backup_name);
        snprintf(req.repl_backups.backups[0].rep_url, TG_URL_BYTES, "%s", r->backup_url);
    }
    if (tg_client_call_to(r->client, r->url, &req, REQUEST_TIMEOUT_MS, NULL, r->rep) != TG_OK) {
        return false;
    }
    tg_msg st = {.type = TG_WIRE_REPL_STATUS};
    st.repl_status.partition_id = PARTITION;
    for (int waited = 0; with_backup && waited < START_TIMEOUT_MS; waited += 10) {
        if (tg_client_call_to(r->client, r->url, &st, REQUEST_TIMEOUT_MS, NULL, r->rep) != TG_OK) {
            return false;
        }
        const __typeof__(r->rep->repl_status_ok) *s = &r->rep->repl_status_ok;
        if (s->link_count == 1 && s->links[0].state == TG_REPL_LINK_IN_SYNC) {
            return true;
        }
        sleep_ms(10);
    }
    return !with_backup;
}

static bool compare_backup(const options *o, server *unit, repl_ctl *r)
{
    static run_result none_runs[ROUNDS_MAX], one_runs[ROUNDS_MAX];
    bool ok = true;
    for (uint32_t i = 0; ok && i < o->rounds; i++) {
        ok = repl_name(r, false);
        none_runs[i] = measure(unit->bench, o->seconds);
        ok = ok && repl_name(r, true);
        one_runs[i] = measure(unit->bench, o->seconds);
        ok = ok && none_runs[i].failed == 0 && one_runs[i].failed == 0;
        if (o->rounds > 1) {
            printf(" round %u\n", i + 1);
            print_result("hold/release, no backup", &none_runs[i]);
            print_result("hold/release, one backup", &one_runs[i]);
            fflush(stdout);
        }
    }
    if (!ok) {
        fprintf(stderr, "%s: naming the backup or a request failed\n", PROGRAM);
        return false;
    }
    qsort(none_runs, o->rounds, sizeof(run_result), by_rate);
    qsort(one_runs, o->rounds, sizeof(run_result), by_rate);
    const run_result *a = &none_runs[o->rounds / 2], *b = &one_runs[o->rounds / 2];
    if (o->rounds > 1) {
        printf(" medians of %u rounds\n", o->rounds);
    }
    print_result("hold/release, no backup", a);
    print_result("hold/release, one backup", b);
    double ratio = 100.0 * b->rate / a->rate;
    printf("  ratio one backup/none: %.0f%% (target >= %.0f%%)%s\n", ratio, TARGET_PERCENT,
           ratio >= TARGET_PERCENT ? "" : "  BELOW TARGET");
    return true;
}

static run_result median_of(run_result *runs, uint32_t n)
{
    qsort(runs, n, sizeof(run_result), by_rate);
    return runs[n / 2];
}

/* --sweep: every round measures no backup, then one backup, each at every
 * level of SWEEP_LEVELS in flight.  A closed loop with few requests in
 * flight measures latency more than throughput (each reply with a backup
 * waits for one more round trip, and the cores idle meanwhile), so the
 * figure of merit is the ratio of the two peaks (the best median of each
 * over the levels); the ratio at the first level is printed beside it. */
static bool sweep_backup(const options *o, server *unit, repl_ctl *r)
{
    static run_result runs[2][SWEEP_COUNT][ROUNDS_MAX];
    bench *b = unit->bench;
    uint32_t slots = b->slot_count;
    bool ok = true;
    for (uint32_t i = 0; ok && i < o->rounds; i++) {
        for (uint32_t with = 0; ok && with < 2; with++) {
            ok = repl_name(r, with == 1);
            for (uint32_t l = 0; ok && l < SWEEP_COUNT; l++) {
                b->slot_count = SWEEP_LEVELS[l];
                runs[with][l][i] = measure(b, o->seconds);
                ok = runs[with][l][i].failed == 0;
            }
        }
    }
    b->slot_count = slots;
    if (!ok) {
        fprintf(stderr, "%s: naming the backup or a request failed\n", PROGRAM);
        return false;
    }
    printf(" medians of %u rounds\n", o->rounds);
    double peak[2] = {0}, first[2] = {0};
    for (uint32_t l = 0; l < SWEEP_COUNT; l++) {
        for (uint32_t with = 0; with < 2; with++) {
            run_result m = median_of(runs[with][l], o->rounds);
            char what[64];
            snprintf(what, sizeof(what), "%s, %u in flight", with ? "one backup" : "no backup",
                     SWEEP_LEVELS[l]);
            print_result(what, &m);
            peak[with] = m.rate > peak[with] ? m.rate : peak[with];
            first[with] = l == 0 ? m.rate : first[with];
        }
    }
    printf("  ratio one backup/none at %u in flight: %.0f%%\n", SWEEP_LEVELS[0],
           100.0 * first[1] / first[0]);
    double ratio = 100.0 * peak[1] / peak[0];
    printf("  peak no backup %.0f, peak one backup %.0f round trips/s\n", peak[0], peak[1]);
    printf("  ratio one backup/none, peak throughput: %.0f%% (target >= %.0f%%)%s\n", ratio,
           TARGET_PERCENT, ratio >= TARGET_PERCENT ? "" : "  BELOW TARGET");
    return true;
}

/* The unit, a second unit as its backup, and the comparison. */
static bool run_backup(const options *o, server *unit, const char *pu_url,
                       char *const backup_argv[], const char *backup_url, const char *backup_log)
{
    server backup = {.log = backup_log};
    backup.pid = spawn(backup_argv, backup_log);
    tg_client_config cfg = {.inflight_max = 4};
    repl_ctl r = {.url = pu_url, .backup_name = backup_argv[2], .backup_url = backup_url};
    r.rep = malloc(sizeof(*r.rep));
    bool ok = backup.pid > 0 && wait_listening(backup.pid, backup_url) && r.rep != NULL &&
              tg_client_open(&cfg, &r.client) == TG_OK;
    if (!ok) {
        fprintf(stderr, "%s: the backup did not start (see %s)\n", PROGRAM, backup_log);
    }
    ok = ok && (o->sweep ? sweep_backup(o, unit, &r) : compare_backup(o, unit, &r));
    ok &= server_stop(&backup, "the backup");
    free(r.rep);
    return ok; /* the client stays open: see the top of this file */
}

static int run(const options *o, const char *self, const char *dir)
{
    char echo_url[256], pu_url[256], contexts[16], echo_log[256], pu_log[256], name[64];
    snprintf(echo_url, sizeof(echo_url), "ipc://%s/echo.rep", dir);
    snprintf(pu_url, sizeof(pu_url), "ipc://%s/pu.rep", dir);
    snprintf(contexts, sizeof(contexts), "%u", o->contexts);
    snprintf(echo_log, sizeof(echo_log), "%s/echo.log", dir);
    snprintf(pu_log, sizeof(pu_log), "%s/pu.log", dir);
    snprintf(name, sizeof(name), "bench-%d", (int)getpid());
    const char *layout = write_layout(dir);
    const char *pu_bin = tg_env("TIXGRID_PU_BIN", NNG_BENCH_PU_BIN);
    char pub_url[300];
    snprintf(pub_url, sizeof(pub_url), "ipc://%s/pu.pub", dir);
    char *echo_argv[] = {(char *)self, "--serve-echo", echo_url, contexts, NULL};
    char *pu_argv[] = {(char *)pu_bin, "--name", name, "--listen", pu_url, "--partition",
                       (char *)layout, "--contexts", contexts, "--unpersisted",
                       "--log-level", "warn", o->pub ? "--pub" : NULL, pub_url, NULL};
    char backup_url[256], backup_log[256], backup_name[64];
    snprintf(backup_url, sizeof(backup_url), "ipc://%s/backup.rep", dir);
    snprintf(backup_log, sizeof(backup_log), "%s/backup.log", dir);
    snprintf(backup_name, sizeof(backup_name), "bench-%d-b", (int)getpid());
    char *backup_argv[] = {(char *)pu_bin, "--name", backup_name, "--listen", backup_url,
                           "--contexts", contexts, "--unpersisted", "--log-level", "warn", NULL};
    printf("%s over ipc://: %u in flight, %u REP contexts, %u s each (after %d ms warm-up)\n",
           o->backup ? "replication, holds" : "nng round trips", o->inflight, o->contexts,
           o->seconds, WARMUP_MS);
    fflush(stdout);
    server echo = {0}, unit = {0};
    bool ok = layout != NULL &&
              (o->backup || server_start(&echo, echo_argv, echo_url, echo_log, o, false)) &&
              server_start(&unit, pu_argv, pu_url, pu_log, o, true);
    if (ok) {
        ok = o->backup ? run_backup(o, &unit, pu_url, backup_argv, backup_url, backup_log)
                       : compare(o, &echo, &unit);
    }
    ok &= server_stop(&echo, "the echo server");
    ok &= server_stop(&unit, "tixgrid-pu");
    char shm[128];
    snprintf(shm, sizeof(shm), "/dev/shm/tixgrid-%s-p%u", name, PARTITION);
    unlink(shm);
    snprintf(shm, sizeof(shm), "/dev/shm/tixgrid-%s-p%u", backup_name, PARTITION);
    unlink(shm);
    return ok ? 0 : 1;
}

static void remove_dir(const char *dir)
{
    const char *files[] = {"echo.rep", "pu.rep",   "pu.pub",    "layout.json",
                           "echo.log", "pu.log",   "backup.rep", "backup.log"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--serve-echo") == 0) {
        serve_echo(argv[2], (uint32_t)strtoul(argv[3], NULL, 10));
    }
    int code;
    if (tg_cli_standard(argc, argv, PROGRAM, usage, &code)) {
        return code;
    }
    options o = {0};
    code = parse(argc, argv, &o);
    if (code != 0) {
        return code;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char dir[] = "/tmp/tixgrid-bench-XXXXXX";
    if (n <= 0 || mkdtemp(dir) == NULL) {
        fprintf(stderr, "%s: cannot find itself or make a folder: %s\n", PROGRAM,
                strerror(errno));
        return 1;
    }
    self[n] = '\0';
    code = run(&o, self, dir);
    if (code != 0) {
        fprintf(stderr, "%s: logs kept in %s\n", PROGRAM, dir);
    } else {
        remove_dir(dir);
    }
    fflush(stdout);
    _exit(code); /* without closing nng: see the top of this file */
}

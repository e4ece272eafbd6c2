/*
 * http_load.c — an open-loop HTTP/1.1 load generator: requests at a fixed
 * arrival rate over keep-alive connections, each request's latency measured
 * from the moment it was due.
 *
 * Why open loop.  A closed-loop tool such as wrk sends a connection's next
 * request only once the previous answer arrived, so a server that stalls
 * for 50 ms is simply sent less during the stall, and the requests that
 * would have waited are never measured ("coordinated omission").  Here
 * request k is due at start + k / rate whatever happens; it goes out on the
 * first free connection at or after that time, and its latency runs from
 * the due time to the last byte of its answer.  A stall of the server, of
 * the network or of this program shows in the percentiles as a user would
 * feel it.  The service time (from the actual write) is reported beside it:
 * the difference is what requests spent waiting for a free connection or
 * for this program to get the CPU.  wrk2 does the same but is not packaged
 * for Debian 12, and wrk has no fixed-rate mode.
 *
 * Timing.  One libuv loop on one thread.  A timerfd armed with the absolute
 * CLOCK_MONOTONIC time at which the next request is due wakes the loop
 * (uv_timer counts whole milliseconds, which alone would add up to a
 * millisecond to every latency); the callback sends every request that is
 * due and has a free connection, then re-arms.  An answer frees its
 * connection, which at once takes the oldest overdue request if there is
 * one.  Overdue requests are not queued anywhere: they are the schedule
 * indices between `sent` and the number due, sent in order.
 *
 * Connections are all opened before the clock starts and kept alive; one
 * request at a time on each (no pipelining: browsers and apps do not
 * pipeline, and an answer's latency would include the one queued before
 * it).  The answer parser knows bodies with Content-Length only, which both
 * the gateway and nginx send; a chunked answer is an error.  An answer with
 * `Connection: close` counts as any other, and a new connection replaces the
 * old one (counted as a reopen).  A connection that fails is not reopened:
 * its request is counted as a transport error and the run is invalid.
 *
 * Scenarios.  `get` sends GET for the URL's path.  `hold-release` logs in
 * (POST /api/auth/login) and creates its bookings (POST /api/bookings)
 * before the clock starts, then sends single-seat holds (PATCH
 * /api/seats/select) of seats cycling over a range and, for each hold
 * answered 2xx, the release of that seat (PATCH /api/seats/release) as one
 * of the next requests due: half of the requests are holds, half releases.
 * Waiting releases go before new holds, so a hold starts only when no
 * release waits, that is when every held seat is on one of the other
 * connections: at most `connections` seats are held at any time.  One
 * booking per connection is made, each hold goes to the next booking with
 * no hold in flight (as a person holds one seat after another) and room
 * (TG_BOOKING_SEATS_MAX seats; a 17th is `409 too_many_seats`), and one
 * always exists: fewer holds than connections are in flight when a hold
 * starts, and the free bookings cannot all be full with fewer held seats
 * than connections.  tests/bench/hold_release.lua makes the same requests
 * for wrk.  A seat that is held, or on its way in or out, is skipped.  A
 * hold refused with 4xx held nothing; after a 5xx the seat's state is
 * unknown and the seat is never used again.  Holds answered after the last
 * request was sent stay held (at most `connections` seats) until their
 * bookings expire, so each run should have a range of its own.
 *
 * Latencies go into log-linear histograms (128 sub-buckets per power of two
 * nanoseconds: under 0.8 % error, fixed size); the maximum is kept exactly
 * and percentiles report the top of their bucket.  Requests due during the
 * warm-up are sent but not recorded; any error in the warm-up still makes
 * the run invalid.  Every buffer and table is allocated before the clock
 * starts, each within a bound below; nothing is allocated per request.
 *
 * Exit status: 0 every request was answered 2xx; 1 the run completed but
 * some were not (non-2xx, transport errors, unanswered: the figures are not
 * valid); 64 bad usage; 69 the server could not be reached or the
 * scenario's setup failed.  The last line printed is `result key=value...`
 * for scripts.  This program is the seed of `tixgrid-load`; scripts/bench
 * runs it, never the tests.
 */
#include "tixgrid/assert.h"
#include "tixgrid/cli.h"
#include "tixgrid/clock.h"
#include "tixgrid/limits.h"

#include <jansson.h>
#include <uv.h>

#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define PROGRAM "bench_http_load"

/* Bounds, each with its unit. */
#define LOAD_CONNECTIONS_MAX    1024u    /* keep-alive connections */
#define LOAD_RATE_MAX           1000000u /* requests per second */
#define LOAD_SECONDS_MAX        3600u    /* measured seconds, and warm-up seconds */
#define LOAD_REQUEST_BYTES_MAX  2048u    /* one request: line, headers and body */
#define LOAD_ANSWER_BYTES_MAX   16384u   /* one answer: status line, headers and body */
#define LOAD_TOKEN_BYTES_MAX    1024u    /* a Bearer token */
#define LOAD_HOST_BYTES_MAX     256u     /* the Host header's value */
#define LOAD_PATH_BYTES_MAX     512u     /* the URL's path */
#define LOAD_CONNECT_TIMEOUT_MS 5000u    /* to open every connection */
#define LOAD_DRAIN_TIMEOUT_MS   5000u    /* answers awaited after the last request was sent */
#define LOAD_SETUP_TIMEOUT_S    10       /* one setup call (login, booking) */
#define LOAD_ERRORS_SHOWN       3u       /* failures described on stderr; the rest are counted */
#define LOAD_ERROR_BODY_BYTES   200      /* of a non-2xx answer's body, shown */

/* One booking per connection (see the top). */
#define LOAD_BOOKINGS_MAX LOAD_CONNECTIONS_MAX

/* Any request fits: line, Host, Bearer token, two headers and a body of ids. */
_Static_assert(LOAD_REQUEST_BYTES_MAX >=
                   LOAD_PATH_BYTES_MAX + LOAD_HOST_BYTES_MAX + LOAD_TOKEN_BYTES_MAX + 256u,
               "LOAD_REQUEST_BYTES_MAX");

static const char usage[] =
    "usage: bench_http_load --url http://HOST:PORT[/PATH] --rate N [options]\n"
    "\n"
    "Sends N requests per second (open loop: at fixed times, whatever the answers)\n"
    "over keep-alive HTTP/1.1 connections and reports latency percentiles measured\n"
    "from when each request was due, so that a stall is never hidden.\n"
    "\n"
    "  --url URL              server and, for --scenario get, the path (http:// only)\n"
    "  --rate N               requests per second, 1..1000000\n"
    "  --seconds N            measured seconds (default 10)\n"
    "  --warmup-seconds N     seconds sent first and not measured (default 2)\n"
    "  --connections N        keep-alive connections, 1..1024 (default 64)\n"
    "  --scenario NAME        get (default) or hold-release\n"
    "\n"
    "hold-release (the tixgrid gateway: single-seat holds, each then released):\n"
    "  --email ADDRESS        account to log in with\n"
    "  --password TEXT        its password (or TIXGRID_LOAD_PASSWORD)\n"
    "  --event ID             event of the bookings (default 1)\n"
    "  --seat-first ID        API id of the first seat of the range (partition << 32 | seat)\n"
    "  --seats N              seats in the range, at least --connections\n"
    "A run may leave up to --connections seats held (until their bookings expire):\n"
    "give each run a range of its own.\n"
    "\n"
    "Exit status: 0 all answers 2xx; 1 some requests failed (figures invalid);\n"
    "64 bad usage; 69 the server is unreachable or the setup failed.  The last line\n"
    "is `result key=value ...`.\n";

/* ---- Options ----------------------------------------------------------------- */

typedef struct {
    const char *url;
    const char *scenario;
    uint64_t rate;           /* requests per second */
    uint64_t seconds;        /* measured */
    uint64_t warmup_seconds; /* sent before, not measured */
    uint64_t connections;
    const char *email;
    const char *password;
    uint64_t event_id;
    uint64_t seat_first; /* API seat id */
    uint64_t seats;      /* in the range */
} load_options;

/* ---- Histograms ----------------------------------------------------------------- */

#define HIST_SUB_BITS 7u
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64u - HIST_SUB_BITS + 1u) * HIST_SUB)

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max_ns; /* exact */
} load_hist;

/* Values below HIST_SUB have a bucket each; above, a power of two is cut
 * into HIST_SUB buckets. */
static uint32_t hist_index(uint64_t v)
{
    if (v < HIST_SUB) {
        return (uint32_t)v;
    }
    uint32_t shift = (uint32_t)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (uint32_t)((v >> shift) - HIST_SUB);
}

static uint64_t hist_bucket_top(uint32_t i)
{
    if (i < HIST_SUB) {
        return i;
    }
    uint32_t shift = i / HIST_SUB - 1;
    return ((uint64_t)(HIST_SUB + i % HIST_SUB + 1) << shift) - 1;
}

static void hist_add(load_hist *h, int64_t ns)
{
    uint64_t v = ns > 0 ? (uint64_t)ns : 0;
    h->counts[hist_index(v)]++;
    h->total++;
    if (v > h->max_ns) {
        h->max_ns = v;
    }
}

/* The value below which a fraction q of the samples lie (top of its bucket,
 * never above the maximum). */
static uint64_t hist_quantile(const load_hist *h, double q)
{
    if (h->total == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999);
    rank = rank < 1 ? 1 : rank;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t top = hist_bucket_top(i);
            return top < h->max_ns ? top : h->max_ns;
        }
    }
    return h->max_ns;
}

/* ---- Answers ------------------------------------------------------------------- */

typedef enum { ANSWER_INCOMPLETE, ANSWER_DONE, ANSWER_BAD } answer_state;

typedef struct {
    int status;
    size_t header_bytes; /* status line and headers, with the blank line */
    size_t body_bytes;   /* Content-Length */
    bool close;          /* Connection: close */
} answer;

static bool header_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

static const char *header_value(const char *line, size_t len, size_t name_len, size_t *value_len)
{
    const char *v = line + name_len + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    *value_len = (size_t)(end - v);
    return v;
}

/* One header line of an answer into a; false when it makes the answer one
 * this parser does not handle. */
static bool answer_header(const char *line, size_t len, answer *a, bool *has_length)
{
    size_t vlen;
    if (header_is(line, len, "content-length")) {
        const char *v = header_value(line, len, strlen("content-length"), &vlen);
        size_t n = 0;
        if (vlen == 0 || vlen > 9) {
            return false;
        }
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9') {
                return false;
            }
            n = n * 10 + (size_t)(v[i] - '0');
        }
        a->body_bytes = n;
        *has_length = true;
    } else if (header_is(line, len, "transfer-encoding")) {
        return false; /* chunked: not sent by the servers measured here */
    } else if (header_is(line, len, "connection")) {
        const char *v = header_value(line, len, strlen("connection"), &vlen);
        a->close = vlen == 5 && strncasecmp(v, "close", 5) == 0;
    }
    return true;
}

/* Parses the answer at the start of buf (len bytes received so far). */
static answer_state answer_parse(const char *buf, size_t len, answer *a)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        return ANSWER_INCOMPLETE;
    }
    *a = (answer){.header_bytes = (size_t)(end - buf) + 4};
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' || buf[9] < '1' ||
        buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9') {
        return ANSWER_BAD;
    }
    a->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    bool has_length = false;
    /* Lines end with CRLF; the last header's CRLF is the first half of end. */
    const char *line = (const char *)memchr(buf, '\n', (size_t)(end + 2 - buf)) + 1;
    while (line < end + 2) {
        const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
        if (eol == NULL || !answer_header(line, (size_t)(eol - line), a, &has_length)) {
            return ANSWER_BAD;
        }
        line = eol + 2;
    }
    if (!has_length && a->status != 204 && a->status != 304) {
        return ANSWER_BAD;
    }
    return len >= a->header_bytes + a->body_bytes ? ANSWER_DONE : ANSWER_INCOMPLETE;
}

/* ---- Requests ------------------------------------------------------------------ */

/* Formats one request into buf; 0 when it does not fit. */
static size_t request_format(char *buf, size_t size, const char *method, const char *path,
                             const char *host, const char *token, const char *body, bool close)
{
    size_t body_len = body != NULL ? strlen(body) : 0;
    int n = snprintf(buf, size, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s", method, path, host,
                     token != NULL ? "Authorization: Bearer " : "", token != NULL ? token : "",
                     token != NULL ? "\r\n" : "", close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= size) {
        return 0;
    }
    size_t used = (size_t)n;
    if (body != NULL) {
        n = snprintf(buf + used, size - used,
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", body_len,
                     body);
    } else {
        n = snprintf(buf + used, size - used, "\r\n");
    }
    if (n < 0 || (size_t)n >= size - used) {
        return 0;
    }
    return used + (size_t)n;
}

/* ---- The run --------------------------------------------------------------------- */

typedef enum { OP_GET, OP_HOLD, OP_RELEASE } load_op_kind;

typedef struct {
    load_op_kind kind;
    uint32_t seat;    /* index in the seat range */
    uint32_t booking; /* index in the bookings */
} load_op;

/* hold-release's state; only the loop thread touches it. */
typedef struct {
    uint64_t seat_first;                      /* API id of the range's first seat */
    uint32_t seat_count;                      /* seats in the range */
    uint32_t seat_next;                       /* index of the next seat to try */
    uint8_t *seat_busy;                       /* 1: held, or a hold or release in flight */
    uint64_t bookings[LOAD_BOOKINGS_MAX];     /* API ids */
    uint8_t booking_seats[LOAD_BOOKINGS_MAX]; /* seats held or being held in each */
    bool booking_holding[LOAD_BOOKINGS_MAX];  /* a hold of it is in flight */
    uint32_t booking_count;                   /* bookings made */
    uint32_t booking_next;                    /* the next to try for a hold */
    load_op releases[LOAD_CONNECTIONS_MAX];   /* ring: releases waiting for a connection */
    uint32_t release_head;                    /* oldest */
    uint32_t release_count;                   /* waiting (at most one per held seat) */
} hold_release_state;

typedef struct load_run load_run;

/* What a scenario does: setup before the clock (blocking calls allowed),
 * then on the loop the next request's operation, its text, and what its
 * answer changes. */
typedef struct {
    const char *name;
    bool (*setup)(load_run *run);
    bool (*next)(load_run *run, load_op *op);
    size_t (*format)(load_run *run, const load_op *op, char *buf, size_t size);
    void (*done)(load_run *run, const load_op *op, int status);
} load_scenario;

typedef struct {
    uv_tcp_t tcp; /* data: this connection */
    uv_connect_t connect_req;
    uv_write_t write_req;
    load_run *run;
    bool open;          /* connected, not failed, not closed */
    bool busy;          /* a request is in flight */
    bool writing;       /* write_req is in use (its callback has not run) */
    bool free_on_write; /* answered before its write callback: free it then */
    bool reopening;     /* closed after Connection: close, a new one on its way */
    load_op op;         /* the request in flight */
    uint64_t index;     /* its place in the schedule */
    int64_t due_ns;     /* when it was due */
    int64_t sent_ns;    /* when it was written */
    size_t out_len;     /* bytes of the request in out */
    size_t in_len;      /* bytes of the answer received in in */
    char out[LOAD_REQUEST_BYTES_MAX];
    char in[LOAD_ANSWER_BYTES_MAX];
} load_conn;

struct load_run {
    load_options opt;
    const load_scenario *scenario;
    uv_loop_t loop;
    struct sockaddr_storage addr;
    char host[LOAD_HOST_BYTES_MAX]; /* Host header */
    char path[LOAD_PATH_BYTES_MAX];
    char token[LOAD_TOKEN_BYTES_MAX];
    hold_release_state hr;

    load_conn *conns;     /* opt.connections of them */
    uint32_t conns_made;  /* of which uv_tcp_init'ed (closed at the end) */
    uint32_t *free_conns; /* stack of idle open connections' indices */
    uint32_t free_count;
    uint32_t connected;  /* connections that completed their connect */
    uint32_t open_count; /* connections still open */

    int timer_fd;         /* armed at the next due time */
    int64_t armed_ns;     /* when timer_fd fires; 0: disarmed */
    uv_poll_t timer_poll; /* readable when timer_fd fires */
    uv_timer_t guard;     /* connect and drain timeouts */
    bool finished;        /* handles are being closed */
    bool draining;        /* everything was sent; answers awaited */

    int64_t start_ns; /* when request 0 was due */
    uint64_t total;   /* requests in the schedule, warm-up included */
    uint64_t warmup;  /* the first ones, not recorded */
    uint64_t sent;
    uint64_t in_flight;
    uint64_t waiting_max; /* most requests due at once with no free connection */

    load_hist latency; /* from due to answered */
    load_hist service; /* from written to answered */
    uint64_t answered, ok, non2xx, transport_errors, unanswered, unsendable;
    uint64_t reopened;    /* connections the server closed and that were replaced */
    uint64_t by_class[6]; /* answers by status class, 1xx..5xx at 1..5 */
    uint32_t errors_shown;
    bool setup_failed;
};

static void run_finish(load_run *run);
static void dispatch(load_run *run);
static void conn_reopen(load_conn *c);

static void error_show(load_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void error_show(load_run *run, const char *fmt, ...)
{
    if (run->errors_shown++ >= LOAD_ERRORS_SHOWN) {
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", PROGRAM, msg);
}

/* ---- Setup calls (blocking, before the clock) ------------------------------------ */

static bool setup_send(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

static bool setup_receive(int fd, char *buf, size_t size, answer *a)
{
    size_t len = 0;
    for (;;) {
        answer_state st = answer_parse(buf, len, a);
        if (st != ANSWER_INCOMPLETE) {
            return st == ANSWER_DONE;
        }
        if (len == size - 1) {
            return false;
        }
        ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        len += (size_t)n;
    }
}

/* One request on a connection of its own; the answer's JSON body in *doc
 * (NULL when it has none). */
static bool setup_call(load_run *run, const char *method, const char *path, const char *body,
                       int *status, json_t **doc)
{
    static char buf[LOAD_ANSWER_BYTES_MAX];
    errno = 0;
    size_t len = request_format(buf, sizeof(buf), method, path, run->host,
                                run->token[0] != '\0' ? run->token : NULL, body, true);
    int fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = LOAD_SETUP_TIMEOUT_S};
    answer a;
    bool ok = len > 0 && fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
              setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
              connect(fd, (const struct sockaddr *)&run->addr, sizeof(run->addr)) == 0 &&
              setup_send(fd, buf, len) && setup_receive(fd, buf, sizeof(buf), &a);
    if (fd >= 0) {
        close(fd);
    }
    if (!ok) {
        fprintf(stderr, "%s: %s %s to %s failed: %s; is the server up?\n", PROGRAM, method, path,
                run->host, errno != 0 ? strerror(errno) : "bad answer");
        return false;
    }
    *status = a.status;
    *doc = a.body_bytes > 0 ? json_loadb(buf + a.header_bytes, a.body_bytes, 0, NULL) : NULL;
    if (a.status / 100 != 2) {
        buf[a.header_bytes +
            (a.body_bytes < LOAD_ERROR_BODY_BYTES ? a.body_bytes : LOAD_ERROR_BODY_BYTES)] = '\0';
        fprintf(stderr, "%s: %s %s answered %d: %s\n", PROGRAM, method, path, a.status,
                buf + a.header_bytes);
        json_decref(*doc);
        *doc = NULL;
        return false;
    }
    return true;
}

/* ---- Scenario get ---------------------------------------------------------------- */

static bool get_setup(load_run *run)
{
    (void)run;
    return true;
}

static bool get_next(load_run *run, load_op *op)
{
    (void)run;
    *op = (load_op){.kind = OP_GET};
    return true;
}

static size_t get_format(load_run *run, const load_op *op, char *buf, size_t size)
{
    (void)op;
    return request_format(buf, size, "GET", run->path, run->host, NULL, NULL, false);
}

static void get_done(load_run *run, const load_op *op, int status)
{
    (void)run, (void)op, (void)status;
}

/* ---- Scenario hold-release ------------------------------------------------------- */

static bool hold_release_login(load_run *run)
{
    json_t *body = json_pack("{s:s,s:s}", "email", run->opt.email, "password", run->opt.password);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    int status;
    json_t *doc = NULL;
    bool ok = text != NULL && setup_call(run, "POST", "/api/auth/login", text, &status, &doc);
    free(text);
    const char *token = json_string_value(json_object_get(doc, "token"));
    if (ok && (token == NULL || strlen(token) >= sizeof(run->token))) {
        fprintf(stderr, "%s: the login answer has no usable token\n", PROGRAM);
        ok = false;
    }
    if (ok) {
        snprintf(run->token, sizeof(run->token), "%s", token);
    }
    json_decref(doc);
    return ok;
}

static bool hold_release_setup(load_run *run)
{
    hold_release_state *hr = &run->hr;
    hr->seat_first = run->opt.seat_first;
    hr->seat_count = (uint32_t)run->opt.seats;
    hr->seat_busy = calloc(hr->seat_count, 1);
    if (hr->seat_busy == NULL || !hold_release_login(run)) {
        return false;
    }
    /* One booking per connection (see the top). */
    uint32_t needed = (uint32_t)run->opt.connections;
    TG_ASSERT(needed <= LOAD_BOOKINGS_MAX);
    char body[64];
    snprintf(body, sizeof(body), "{\"event_id\":%" PRIu64 "}", run->opt.event_id);
    for (uint32_t i = 0; i < needed; i++) {
        int status;
        json_t *doc = NULL;
        if (!setup_call(run, "POST", "/api/bookings", body, &status, &doc)) {
            return false;
        }
        json_int_t id = json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
        if (id <= 0) {
            fprintf(stderr, "%s: the booking answer has no id\n", PROGRAM);
            return false;
        }
        hr->bookings[hr->booking_count++] = (uint64_t)id;
    }
    return true;
}

static bool hold_release_next(load_run *run, load_op *op)
{
    hold_release_state *hr = &run->hr;
    if (hr->release_count > 0) {
        *op = hr->releases[hr->release_head];
        hr->release_head = (hr->release_head + 1) % LOAD_CONNECTIONS_MAX;
        hr->release_count--;
        return true;
    }
    uint32_t seat = hr->seat_next, tries = 0;
    for (; tries < hr->seat_count && hr->seat_busy[seat]; tries++) {
        seat = (seat + 1) % hr->seat_count;
    }
    uint32_t booking = hr->booking_next, k = 0;
    for (; k < hr->booking_count &&
           (hr->booking_holding[booking] || hr->booking_seats[booking] >= TG_BOOKING_SEATS_MAX);
         k++) {
        booking = (booking + 1) % hr->booking_count;
    }
    if (tries == hr->seat_count || k == hr->booking_count) {
        return false; /* only after failures left seats or bookings in unknown states */
    }
    hr->seat_next = (seat + 1) % hr->seat_count;
    hr->booking_next = (booking + 1) % hr->booking_count;
    hr->seat_busy[seat] = 1;
    hr->booking_seats[booking]++;
    hr->booking_holding[booking] = true;
    *op = (load_op){.kind = OP_HOLD, .seat = seat, .booking = booking};
    return true;
}

static size_t hold_release_format(load_run *run, const load_op *op, char *buf, size_t size)
{
    const hold_release_state *hr = &run->hr;
    char body[96];
    snprintf(body, sizeof(body), "{\"booking_id\":%" PRIu64 ",\"seat_ids\":[%" PRIu64 "]}",
             hr->bookings[op->booking], hr->seat_first + op->seat);
    const char *path = op->kind == OP_HOLD ? "/api/seats/select" : "/api/seats/release";
    return request_format(buf, size, "PATCH", path, run->host, run->token, body, false);
}

static void hold_release_done(load_run *run, const load_op *op, int status)
{
    hold_release_state *hr = &run->hr;
    bool ok = status / 100 == 2;
    if (op->kind == OP_HOLD) {
        hr->booking_holding[op->booking] = false;
    }
    if (op->kind == OP_HOLD && ok) {
        TG_ASSERT(hr->release_count < LOAD_CONNECTIONS_MAX);
        uint32_t tail = (hr->release_head + hr->release_count) % LOAD_CONNECTIONS_MAX;
        hr->releases[tail] =
            (load_op){.kind = OP_RELEASE, .seat = op->seat, .booking = op->booking};
        hr->release_count++;
    } else if (op->kind == OP_HOLD && status / 100 == 4) {
        hr->booking_seats[op->booking]--; /* refused: nothing held; the seat stays out of use */
    } else if (op->kind == OP_RELEASE && ok) {
        hr->seat_busy[op->seat] = 0;
        hr->booking_seats[op->booking]--;
    }
}

static const load_scenario scenarios[] = {
    {"get", get_setup, get_next, get_format, get_done},
    {"hold-release", hold_release_setup, hold_release_next, hold_release_format, hold_release_done},
};

/* ---- The schedule ---------------------------------------------------------------- */

static int64_t due_ns(const load_run *run, uint64_t k)
{
    /* k * 1e9 stays below 2^63: k <= LOAD_RATE_MAX * 2 * LOAD_SECONDS_MAX. */
    return run->start_ns + (int64_t)(k * UINT64_C(1000000000) / run->opt.rate);
}

/* Requests due by now (the schedule's indices below the result). */
static uint64_t due_count(const load_run *run, int64_t now)
{
    if (now < run->start_ns) {
        return 0;
    }
    uint64_t n = (uint64_t)(now - run->start_ns) * run->opt.rate / UINT64_C(1000000000) + 1;
    return n < run->total ? n : run->total;
}

static void timer_arm(load_run *run, int64_t at_ns)
{
    if (at_ns == run->armed_ns) {
        return;
    }
    struct itimerspec its = {
        .it_value = {.tv_sec = at_ns / 1000000000, .tv_nsec = at_ns % 1000000000}};
    int rc = timerfd_settime(run->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
    TG_ASSERT(rc == 0); /* only EINVAL or EBADF could fail it: a bug */
    run->armed_ns = at_ns;
}

static void timer_disarm(load_run *run)
{
    if (run->armed_ns == 0) {
        return;
    }
    struct itimerspec its = {0};
    int rc = timerfd_settime(run->timer_fd, 0, &its, NULL);
    TG_ASSERT(rc == 0);
    run->armed_ns = 0;
}

/* ---- Connections ----------------------------------------------------------------- */

static void conn_closed_cb(uv_handle_t *handle)
{
    (void)handle; /* connections live in run->conns, freed after the loop */
}

static void conn_close(load_conn *c)
{
    if (c->open) {
        c->open = false;
        c->run->open_count--;
    }
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    }
}

/* A transport failure: the request in flight is lost, the connection is
 * closed for good, and the run is invalid.  The caller dispatches next. */
static void conn_fail(load_conn *c, const char *what)
{
    load_run *run = c->run;
    run->transport_errors++;
    error_show(run, "connection %u: %s", (unsigned)(c - run->conns), what);
    if (c->busy) {
        c->busy = false;
        run->in_flight--;
    }
    conn_close(c);
    if (run->open_count == 0) {
        run_finish(run);
    }
}

static void conn_free(load_conn *c)
{
    load_run *run = c->run;
    TG_ASSERT(run->free_count < run->opt.connections);
    run->free_conns[run->free_count++] = (uint32_t)(c - run->conns);
}

static void write_cb(uv_write_t *req, int status)
{
    load_conn *c = req->data;
    c->writing = false;
    if (status < 0) {
        if (status != UV_ECANCELED) {
            conn_fail(c, uv_strerror(status));
            dispatch(c->run);
        }
        return;
    }
    if (c->free_on_write) {
        c->free_on_write = false;
        conn_free(c);
        dispatch(c->run);
    }
}

/* Sends schedule entry run->sent on c; false when the scenario has nothing
 * to send (only after failures).  A write that fails at once fails the
 * connection, and its request counts as sent and lost. */
static bool request_send(load_run *run, load_conn *c, int64_t now)
{
    if (!run->scenario->next(run, &c->op)) {
        run->unsendable++;
        error_show(run, "the scenario has no request to send (after failures)");
        return false;
    }
    c->out_len = run->scenario->format(run, &c->op, c->out, sizeof(c->out));
    TG_ASSERT(c->out_len > 0); /* LOAD_REQUEST_BYTES_MAX holds any request */
    c->index = run->sent++;
    c->due_ns = due_ns(run, c->index);
    c->sent_ns = now;
    c->busy = true;
    c->writing = true;
    c->in_len = 0;
    run->in_flight++;
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)c->out_len);
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
    if (rc < 0) {
        c->writing = false;
        conn_fail(c, uv_strerror(rc));
    }
    return true;
}

static void drain_timeout_cb(uv_timer_t *timer)
{
    load_run *run = timer->data;
    error_show(run, "%" PRIu64 " answers still missing %u ms after the last request",
               run->in_flight, LOAD_DRAIN_TIMEOUT_MS);
    run_finish(run);
}

/* Sends what is due on free connections; arms the timer for the next. */
static void dispatch(load_run *run)
{
    if (run->finished) {
        return;
    }
    int64_t now = tg_mono_ns();
    while (run->sent < run->total && run->free_count > 0 && due_ns(run, run->sent) <= now) {
        load_conn *c = &run->conns[run->free_conns[--run->free_count]];
        if (!request_send(run, c, now)) {
            conn_free(c);
            run_finish(run);
            return;
        }
    }
    uint64_t due = due_count(run, now);
    if (due > run->sent && due - run->sent > run->waiting_max) {
        run->waiting_max = due - run->sent;
    }
    if (run->sent < run->total && run->free_count > 0) {
        timer_arm(run, due_ns(run, run->sent));
    } else if (run->sent < run->total) {
        timer_disarm(run); /* the next free connection dispatches */
    } else if (run->in_flight == 0) {
        run_finish(run);
    } else if (!run->draining) {
        run->draining = true;
        timer_disarm(run);
        uv_timer_start(&run->guard, drain_timeout_cb, LOAD_DRAIN_TIMEOUT_MS, 0);
    }
}

static void answer_done(load_conn *c, const answer *a)
{
    load_run *run = c->run;
    int64_t now = tg_mono_ns();
    if (c->index >= run->warmup) {
        hist_add(&run->latency, now - c->due_ns);
        hist_add(&run->service, now - c->sent_ns);
    }
    run->answered++;
    run->by_class[a->status / 100]++;
    if (a->status / 100 == 2) {
        run->ok++;
    } else {
        run->non2xx++;
        int shown =
            (int)(a->body_bytes < LOAD_ERROR_BODY_BYTES ? a->body_bytes : LOAD_ERROR_BODY_BYTES);
        error_show(run, "answer %d: %.*s", a->status, shown, c->in + a->header_bytes);
    }
    run->scenario->done(run, &c->op, a->status);
    c->busy = false;
    c->in_len = 0;
    run->in_flight--;
    if (a->close) {
        conn_reopen(c);
        return;
    }
    if (c->writing) {
        c->free_on_write = true;
    } else {
        conn_free(c);
    }
    dispatch(run);
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    load_conn *c = handle->data;
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    load_conn *c = stream->data;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
        dispatch(c->run);
        return;
    }
    c->in_len += (size_t)nread;
    answer a;
    answer_state st = c->busy ? answer_parse(c->in, c->in_len, &a) : ANSWER_BAD;
    if (st == ANSWER_INCOMPLETE && c->in_len == sizeof(c->in)) {
        st = ANSWER_BAD;
    }
    if (st == ANSWER_DONE && c->in_len != a.header_bytes + a.body_bytes) {
        st = ANSWER_BAD; /* bytes beyond the answer: nothing else was asked */
    }
    if (st == ANSWER_BAD) {
        conn_fail(c, "an answer this program does not understand (or one not asked for)");
        dispatch(c->run);
    } else if (st == ANSWER_DONE) {
        answer_done(c, &a);
    }
}

static void schedule_start(load_run *run)
{
    uv_timer_stop(&run->guard);
    run->start_ns = tg_mono_ns();
    dispatch(run);
}

/* A connection that could not be made: before the clock, the run cannot
 * start; a replacement, it counts as a transport error. */
static void connect_failed(load_conn *c, int status)
{
    load_run *run = c->run;
    if (!c->reopening) {
        error_show(run, "cannot connect to %s: %s", run->host, uv_strerror(status));
        run->setup_failed = true;
        conn_close(c);
        run_finish(run);
        return;
    }
    c->reopening = false;
    conn_fail(c, "cannot open a connection in place of one the server closed");
    dispatch(run);
}

static void connect_cb(uv_connect_t *req, int status)
{
    load_conn *c = req->data;
    load_run *run = c->run;
    if (status == UV_ECANCELED) {
        return; /* the run ended while connecting */
    }
    if (status < 0) {
        connect_failed(c, status);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    TG_ASSERT(rc == 0);
    conn_free(c);
    if (c->reopening) {
        c->reopening = false;
        dispatch(run);
        return;
    }
    c->open = true;
    run->open_count++;
    if (++run->connected == run->opt.connections && !run->finished) {
        schedule_start(run);
    }
}

/* Opens c's TCP connection; connect_cb follows unless this returns false. */
static bool conn_connect(load_conn *c)
{
    load_run *run = c->run;
    uv_tcp_init(&run->loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c->connect_req.data = c->write_req.data = c;
    int rc =
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&run->addr, connect_cb);
    if (rc < 0) {
        connect_failed(c, rc);
        return false;
    }
    return true;
}

static void reopen_closed_cb(uv_handle_t *handle)
{
    load_conn *c = handle->data;
    if (!c->run->finished) {
        conn_connect(c);
    }
}

/* The server ends the connection after this answer (Connection: close):
 * a new one replaces it and joins the free ones once connected.  It stays
 * open in the counts meanwhile.  A write callback still pending runs first,
 * with UV_ECANCELED. */
static void conn_reopen(load_conn *c)
{
    c->run->reopened++;
    c->reopening = true;
    uv_close((uv_handle_t *)&c->tcp, reopen_closed_cb);
}

static void connect_timeout_cb(uv_timer_t *timer)
{
    load_run *run = timer->data;
    error_show(run, "not every connection opened within %u ms", LOAD_CONNECT_TIMEOUT_MS);
    run->setup_failed = true;
    run_finish(run);
}

static void timer_fd_cb(uv_poll_t *poll, int status, int events)
{
    (void)status, (void)events;
    load_run *run = poll->data;
    uint64_t expirations;
    (void)!read(run->timer_fd, &expirations, sizeof(expirations));
    run->armed_ns = 0;
    dispatch(run);
}

static void handle_closed_cb(uv_handle_t *handle)
{
    (void)handle;
}

/* Closes every handle; uv_run returns once they are closed.  Requests still
 * in flight are counted as unanswered. */
static void run_finish(load_run *run)
{
    if (run->finished) {
        return;
    }
    run->finished = true;
    run->unanswered = run->in_flight;
    uv_poll_stop(&run->timer_poll);
    uv_close((uv_handle_t *)&run->timer_poll, handle_closed_cb);
    uv_close((uv_handle_t *)&run->guard, handle_closed_cb);
    for (uint32_t i = 0; i < run->conns_made; i++) {
        conn_close(&run->conns[i]);
    }
}

static bool run_start(load_run *run)
{
    run->conns = calloc(run->opt.connections, sizeof(load_conn));
    run->free_conns = calloc(run->opt.connections, sizeof(uint32_t));
    run->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (run->conns == NULL || run->free_conns == NULL || run->timer_fd < 0 ||
        uv_loop_init(&run->loop) != 0) {
        fprintf(stderr, "%s: out of memory or file descriptors\n", PROGRAM);
        return false;
    }
    uv_poll_init(&run->loop, &run->timer_poll, run->timer_fd);
    run->timer_poll.data = run;
    uv_poll_start(&run->timer_poll, UV_READABLE, timer_fd_cb);
    uv_timer_init(&run->loop, &run->guard);
    run->guard.data = run;
    uv_timer_start(&run->guard, connect_timeout_cb, LOAD_CONNECT_TIMEOUT_MS, 0);
    for (uint32_t i = 0; i < run->opt.connections && !run->finished; i++) {
        load_conn *c = &run->conns[i];
        c->run = run;
        run->conns_made++;
        conn_connect(c);
    }
    return true;
}

/* ---- Options and URL -------------------------------------------------------------- */

static int option_number(const char *name, const char *text, uint64_t min, uint64_t max,
                         uint64_t *out)
{
    if (tg_parse_u64(text, min, max, out) != TG_OK) {
        return tg_cli_usage_error(PROGRAM, "--%s wants a whole number %" PRIu64 "..%" PRIu64, name,
                                  min, max);
    }
    return 0;
}

static int options_check(load_options *o)
{
    if (o->url == NULL || o->rate == 0) {
        return tg_cli_usage_error(PROGRAM, "--url and --rate are required");
    }
    if (strcmp(o->scenario, "hold-release") == 0) {
        if (o->password == NULL) {
            o->password = tg_env("TIXGRID_LOAD_PASSWORD", NULL);
        }
        if (o->email == NULL || o->password == NULL || o->seat_first == 0 || o->seats == 0) {
            return tg_cli_usage_error(PROGRAM, "hold-release needs --email, --password (or "
                                               "TIXGRID_LOAD_PASSWORD), --seat-first and --seats");
        }
        if (o->seats < o->connections) {
            return tg_cli_usage_error(
                PROGRAM, "--seats must be at least --connections (%" PRIu64 ")", o->connections);
        }
    }
    return 0;
}

static int options_parse(int argc, char **argv, load_options *o)
{
    static const struct option longs[] = {
        {"url", required_argument, NULL, 'u'},
        {"rate", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"warmup-seconds", required_argument, NULL, 'w'},
        {"connections", required_argument, NULL, 'c'},
        {"scenario", required_argument, NULL, 'S'},
        {"email", required_argument, NULL, 'e'},
        {"password", required_argument, NULL, 'p'},
        {"event", required_argument, NULL, 'E'},
        {"seat-first", required_argument, NULL, 'f'},
        {"seats", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    *o = (load_options){
        .scenario = "get", .seconds = 10, .warmup_seconds = 2, .connections = 64, .event_id = 1};
    int opt, rc = 0;
    opterr = 0;
    while (rc == 0 && (opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
        case 'u':
            o->url = optarg;
            break;
        case 'S':
            o->scenario = optarg;
            break;
        case 'e':
            o->email = optarg;
            break;
        case 'p':
            o->password = optarg;
            break;
        case 'r':
            rc = option_number("rate", optarg, 1, LOAD_RATE_MAX, &o->rate);
            break;
        case 's':
            rc = option_number("seconds", optarg, 1, LOAD_SECONDS_MAX, &o->seconds);
            break;
        case 'w':
            rc = option_number("warmup-seconds", optarg, 0, LOAD_SECONDS_MAX, &o->warmup_seconds);
            break;
        case 'c':
            rc = option_number("connections", optarg, 1, LOAD_CONNECTIONS_MAX, &o->connections);
            break;
        case 'E':
            rc = option_number("event", optarg, 1, TG_WIRE_ID_MAX, &o->event_id);
            break;
        case 'f':
            rc = option_number("seat-first", optarg, 1, TG_WIRE_ID_MAX, &o->seat_first);
            break;
        case 'n':
            rc = option_number("seats", optarg, 1, TG_PARTITION_SEATS_MAX, &o->seats);
            break;
        default:
            return tg_cli_usage_error(PROGRAM, "unknown option or missing value: %s",
                                      argv[optind - 1]);
        }
    }
    if (rc == 0 && optind < argc) {
        rc = tg_cli_usage_error(PROGRAM, "unexpected argument '%s'", argv[optind]);
    }
    return rc != 0 ? rc : options_check(o);
}

/* http://HOST[:PORT][/PATH] into run->addr, run->host and run->path. */
static int url_resolve(load_run *run)
{
    const char *url = run->opt.url;
    if (strncmp(url, "http://", 7) != 0) {
        return tg_cli_usage_error(PROGRAM, "--url must start with http:// (got '%s')", url);
    }
    const char *authority = url + 7;
    const char *slash = strchr(authority, '/');
    size_t alen = slash != NULL ? (size_t)(slash - authority) : strlen(authority);
    const char *path = slash != NULL ? slash : "/";
    if (alen == 0 || alen >= sizeof(run->host) || strlen(path) >= sizeof(run->path)) {
        return tg_cli_usage_error(PROGRAM, "--url has no host or is too long");
    }
    memcpy(run->host, authority, alen);
    run->host[alen] = '\0';
    snprintf(run->path, sizeof(run->path), "%s", path);
    char name[LOAD_HOST_BYTES_MAX];
    snprintf(name, sizeof(name), "%s", run->host);
    const char *port = "80";
    char *colon = strrchr(name, ':');
    if (colon != NULL && strchr(colon, ']') == NULL) {
        *colon = '\0';
        port = colon + 1;
    }
    size_t nlen = strlen(name);
    char *host = name;
    if (nlen >= 2 && name[0] == '[' && name[nlen - 1] == ']') {
        name[nlen - 1] = '\0';
        host = name + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot resolve %s: %s\n", PROGRAM, run->host, gai_strerror(rc));
        return TG_EXIT_UNAVAILABLE;
    }
    memcpy(&run->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* ---- Report ---------------------------------------------------------------------- */

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void report(const load_run *run)
{
    const load_options *o = &run->opt;
    uint64_t measured = run->latency.total;
    double rate = (double)measured / (double)o->seconds;
    uint64_t failed = run->non2xx + run->transport_errors + run->unanswered + run->unsendable;
    printf("%s: %s, %" PRIu64 " requests/s for %" PRIu64 " s after %" PRIu64
           " s of warm-up, %" PRIu64 " connections to %s\n",
           PROGRAM, run->scenario->name, o->rate, o->seconds, o->warmup_seconds, o->connections,
           run->host);
    printf("  requests  %" PRIu64 " of %" PRIu64 " sent, %" PRIu64 " answered: %" PRIu64
           " 2xx, %" PRIu64 " other (4xx %" PRIu64 ", 5xx %" PRIu64 "); %" PRIu64
           " transport errors, %" PRIu64 " unanswered\n",
           run->sent, run->total, run->answered, run->ok, run->non2xx, run->by_class[4],
           run->by_class[5], run->transport_errors, run->unanswered);
    printf("  measured  %" PRIu64 " answers = %.1f/s\n", measured, rate);
    const load_hist *hists[] = {&run->latency, &run->service};
    const char *names[] = {"latency", "service"};
    const char *notes[] = {"from when each request was due", "from when each was written"};
    for (int i = 0; i < 2; i++) {
        const load_hist *h = hists[i];
        printf("  %-8s  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f us (%s)\n", names[i],
               us(hist_quantile(h, 0.50)), us(hist_quantile(h, 0.90)), us(hist_quantile(h, 0.99)),
               us(hist_quantile(h, 0.999)), us(h->max_ns), notes[i]);
    }
    printf("  queue     at most %" PRIu64 " requests were due with no free connection; %" PRIu64
           " connections closed by the server and reopened\n",
           run->waiting_max, run->reopened);
    const load_hist *h = &run->latency;
    printf("result scenario=%s rate=%" PRIu64 " seconds=%" PRIu64 " connections=%" PRIu64
           " answered_per_s=%.1f requests=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64
           " p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f service_p99_us=%.0f"
           " queue_max=%" PRIu64 "\n",
           run->scenario->name, o->rate, o->seconds, o->connections, rate, run->sent, run->ok,
           failed, us(hist_quantile(h, 0.50)), us(hist_quantile(h, 0.90)),
           us(hist_quantile(h, 0.99)), us(hist_quantile(h, 0.999)), us(h->max_ns),
           us(hist_quantile(&run->service, 0.99)), run->waiting_max);
}

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, PROGRAM, usage, &code)) {
        return code;
    }
    static load_run run; /* large (histograms, buffers): not on the stack */
    code = options_parse(argc, argv, &run.opt);
    if (code != 0) {
        return code;
    }
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        if (strcmp(scenarios[i].name, run.opt.scenario) == 0) {
            run.scenario = &scenarios[i];
        }
    }
    if (run.scenario == NULL) {
        return tg_cli_usage_error(PROGRAM, "--scenario is get or hold-release (got '%s')",
                                  run.opt.scenario);
    }
    code = url_resolve(&run);
    if (code != 0) {
        return code;
    }
    run.warmup = run.opt.rate * run.opt.warmup_seconds;
    run.total = run.warmup + run.opt.rate * run.opt.seconds;
    if (!run.scenario->setup(&run) || !run_start(&run)) {
        return TG_EXIT_UNAVAILABLE;
    }
    uv_run(&run.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&run.loop);
    TG_ASSERT(rc == 0); /* run_finish closed every handle */
    close(run.timer_fd);
    if (run.setup_failed) {
        return TG_EXIT_UNAVAILABLE;
    }
    report(&run);
    bool valid = run.ok == run.total;
    free(run.conns);
    free(run.free_conns);
    free(run.hr.seat_busy);
    return valid ? TG_EXIT_OK : TG_EXIT_FAILURE;
}

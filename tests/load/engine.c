/*
 * engine.c — tixgrid-load's open-loop engine: arrivals at scripted times,
 * keep-alive HTTP/1.1 connections, each request's latency measured from the
 * moment it was due.
 *
 * Why open loop.  A closed-loop tool such as wrk sends a connection's next
 * request only once the previous answer arrived, so a server that stalls
 * for 50 ms is simply sent less during the stall, and the requests that
 * would have waited are never measured ("coordinated omission").  Here
 * arrival k is due at the time the rate script gives it whatever happens;
 * it goes out on the first free connection at or after that time, and its
 * latency runs from the due time to the last byte of its answer.  A
 * session's later requests (a buyer's booking after the login, the
 * payment after the hold) are due when the answer before them arrived, so
 * time spent waiting for a free connection or for this program to get the
 * CPU counts too.  wrk2 does the same for single requests but is not
 * packaged for Debian 12.
 *
 * Sessions.  An arrival starts a session (a browse, a hold and its
 * release, a buyer's purchase); the scenario says what its first request
 * is and, from each answer, what comes next.  Ops whose session may go on
 * wait in a FIFO per server (`ready`), ops due later (the next poll of a
 * payment's status) in one FIFO ordered by construction (one delay for
 * all).  A free connection takes, in order: the oldest ready op, then the
 * next arrival if it is due and a session slot is free.  Ready ops going
 * first bounds what is in flight: a new session starts only when every
 * started one has its request on a connection.
 *
 * Timing.  One libuv loop on one thread.  A timerfd armed with the absolute
 * CLOCK_MONOTONIC time of the next arrival or delayed op wakes the loop
 * (uv_timer counts whole milliseconds, which alone would add up to a
 * millisecond to every latency).
 *
 * Connections are all opened before the clock starts and kept alive; one
 * request at a time on each (no pipelining: browsers and apps do not
 * pipeline).  The answer parser knows bodies with Content-Length only,
 * which the gateway, the sandbox and nginx send.  An answer with
 * `Connection: close` counts as any other, and a new connection replaces
 * the old one.  A connection that fails is not reopened: its request
 * counts as a transport error and the run is invalid.
 *
 * The run ends when every arrival was started and every session ended, or
 * at the time limit (the rest counts as unfinished), or when no connection
 * is left.
 */
#include "load.h"

#include "tixgrid/assert.h"
#include "tixgrid/cli.h"
#include "tixgrid/clock.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* ---- Histograms ----------------------------------------------------------------- */

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

void load_hist_add(load_hist *h, int64_t ns)
{
    uint64_t v = ns > 0 ? (uint64_t)ns : 0;
    h->counts[hist_index(v)]++;
    h->total++;
    if (v > h->max_ns) {
        h->max_ns = v;
    }
}

uint64_t load_hist_quantile(const load_hist *h, double q)
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
    bool chunked;        /* Transfer-Encoding: chunked (body_bytes: the encoded body) */
    bool until_close;    /* no length: the body ends when the server closes */
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
        const char *v = header_value(line, len, strlen("transfer-encoding"), &vlen);
        if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0) {
            return false;
        }
        a->chunked = true;
    } else if (header_is(line, len, "connection")) {
        const char *v = header_value(line, len, strlen("connection"), &vlen);
        a->close = vlen == 5 && strncasecmp(v, "close", 5) == 0;
    }
    return true;
}

/* The length of a chunked body complete at the start of p (len bytes): 0
 * while incomplete, SIZE_MAX when malformed.  Trailers are not read: the
 * servers measured here send none. */
static size_t chunked_length(const char *p, size_t len)
{
    size_t at = 0;
    for (;;) {
        const char *eol = memmem(p + at, len - at, "\r\n", 2);
        if (eol == NULL) {
            return 0;
        }
        char *end;
        unsigned long size = strtoul(p + at, &end, 16);
        if (end == p + at || size > LOAD_ANSWER_BYTES_MAX) {
            return SIZE_MAX;
        }
        at = (size_t)(eol - p) + 2 + size + 2;
        if (at > len) {
            return 0;
        }
        if (p[at - 2] != '\r' || p[at - 1] != '\n') {
            return SIZE_MAX;
        }
        if (size == 0) {
            return at;
        }
    }
}

/* A chunked body must be kept whole (LOAD_ANSWER_BYTES_MAX): its length
 * is known only from its chunks. */
static answer_state chunked_parse(const char *buf, size_t len, size_t received, answer *a)
{
    if (len != received) {
        return ANSWER_BAD;
    }
    size_t n = chunked_length(buf + a->header_bytes, len - a->header_bytes);
    if (n == SIZE_MAX) {
        return ANSWER_BAD;
    }
    a->body_bytes = n;
    return n > 0 ? ANSWER_DONE : ANSWER_INCOMPLETE;
}

/* Parses the answer at the start of buf: len bytes of it stored there,
 * received bytes received in all (a body larger than the buffer is counted,
 * not kept). */
static answer_state answer_parse(const char *buf, size_t len, size_t received, answer *a)
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
    if (a->chunked) {
        return has_length ? ANSWER_BAD : chunked_parse(buf, len, received, a);
    }
    if (!has_length && a->status != 204 && a->status != 304) {
        /* HTTP/1.1 allows a body delimited by the end of the connection
         * (h2o sends one when a handler leaves the length unknown). */
        a->until_close = a->close;
        return a->close ? ANSWER_INCOMPLETE : ANSWER_BAD;
    }
    return received >= a->header_bytes + a->body_bytes ? ANSWER_DONE : ANSWER_INCOMPLETE;
}

/* ---- Requests ------------------------------------------------------------------ */

size_t load_request_format(char *buf, size_t size, const char *method, const char *path,
                           const char *host, const char *token, const char *body, bool close)
{
    int n = snprintf(buf, size, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s", method, path, host,
                     token != NULL ? "Authorization: Bearer " : "", token != NULL ? token : "",
                     token != NULL ? "\r\n" : "", close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= size) {
        return 0;
    }
    size_t used = (size_t)n;
    if (body != NULL) {
        n = snprintf(buf + used, size - used,
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    } else {
        n = snprintf(buf + used, size - used, "\r\n");
    }
    if (n < 0 || (size_t)n >= size - used) {
        return 0;
    }
    return used + (size_t)n;
}

void load_error_show(load_run *run, const char *fmt, ...)
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
        answer_state st = answer_parse(buf, len, len, a);
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

bool load_setup_call(load_run *run, const char *method, const char *path, const char *token,
                     const char *body, json_t **doc)
{
    static char buf[LOAD_SETUP_ANSWER_BYTES_MAX];
    const load_target *t = &run->targets[TARGET_GATEWAY];
    errno = 0;
    size_t len = load_request_format(buf, sizeof(buf), method, path, t->host, token, body, true);
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = LOAD_SETUP_TIMEOUT_S};
    answer a;
    bool ok = len > 0 && fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
              setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
              connect(fd, (const struct sockaddr *)&t->addr, sizeof(t->addr)) == 0 &&
              setup_send(fd, buf, len) && setup_receive(fd, buf, sizeof(buf), &a);
    if (fd >= 0) {
        close(fd);
    }
    if (!ok) {
        fprintf(stderr, "%s: %s %s to %s failed: %s; is the server up?\n", PROGRAM, method, path,
                t->host, errno != 0 ? strerror(errno) : "bad answer");
        return false;
    }
    if (a.status / 100 != 2) {
        int shown =
            (int)(a.body_bytes < LOAD_ERROR_BODY_BYTES ? a.body_bytes : LOAD_ERROR_BODY_BYTES);
        fprintf(stderr, "%s: %s %s answered %d: %.*s\n", PROGRAM, method, path, a.status, shown,
                buf + a.header_bytes);
        return false;
    }
    *doc = json_loadb(buf + a.header_bytes, a.body_bytes, 0, NULL);
    if (*doc == NULL) {
        fprintf(stderr, "%s: %s %s answered %d without a JSON body\n", PROGRAM, method, path,
                a.status);
        return false;
    }
    return true;
}

/* ---- Queues ---------------------------------------------------------------------- */

static bool queue_init(load_queue *q, uint32_t capacity)
{
    q->ops = calloc(capacity, sizeof(load_op));
    q->capacity = capacity;
    return q->ops != NULL;
}

static void queue_push(load_queue *q, const load_op *op)
{
    TG_ASSERT(q->count < q->capacity); /* one op per session at most */
    q->ops[(q->head + q->count) % q->capacity] = *op;
    q->count++;
}

static const load_op *queue_head(const load_queue *q)
{
    return q->count > 0 ? &q->ops[q->head] : NULL;
}

static void queue_pop(load_queue *q)
{
    TG_ASSERT(q->count > 0);
    q->head = (q->head + 1) % q->capacity;
    q->count--;
}

/* `later` is a binary min-heap by due time: delays differ (payment polls
 * back off), so a FIFO would not keep it in order. */
static void heap_push(load_queue *q, const load_op *op)
{
    TG_ASSERT(q->count < q->capacity); /* one op per session at most */
    uint32_t i = q->count++;
    while (i > 0 && q->ops[(i - 1) / 2].due_ns > op->due_ns) {
        q->ops[i] = q->ops[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->ops[i] = *op;
}

static void heap_pop(load_queue *q)
{
    TG_ASSERT(q->count > 0);
    load_op last = q->ops[--q->count];
    uint32_t i = 0;
    for (uint32_t child = 1; child < q->count; child = 2 * i + 1) {
        if (child + 1 < q->count && q->ops[child + 1].due_ns < q->ops[child].due_ns) {
            child++;
        }
        if (last.due_ns <= q->ops[child].due_ns) {
            break;
        }
        q->ops[i] = q->ops[child];
        i = child;
    }
    if (q->count > 0) {
        q->ops[i] = last;
    }
}

/* ---- The schedule ---------------------------------------------------------------- */

static double segment_count(const load_segment *s)
{
    return (s->from + s->to) / 2.0 * s->seconds;
}

double load_schedule_seconds(const load_options *o)
{
    double s = 0;
    for (uint32_t i = 0; i < o->segment_count; i++) {
        s += o->segments[i].seconds;
    }
    return s;
}

uint64_t load_schedule_total(const load_options *o)
{
    double n = 0;
    for (uint32_t i = 0; i < o->segment_count; i++) {
        n += segment_count(&o->segments[i]);
    }
    return (uint64_t)floor(n + 1e-6);
}

/* The time (s, from the segment's start) at which x arrivals of the
 * segment are due: x = from t + (to - from) t^2 / (2 seconds). */
static double segment_time_of(const load_segment *s, double x)
{
    double slope = (s->to - s->from) / s->seconds;
    if (fabs(slope) < 1e-9) {
        return x / s->from;
    }
    double d = s->from * s->from + 2.0 * slope * x;
    return (-s->from + sqrt(d > 0 ? d : 0)) / slope;
}

/* When arrival run->arrived is due; the cursor only moves forward. */
static int64_t arrival_due_ns(load_run *run)
{
    const load_options *o = &run->opt;
    double k = (double)run->arrived;
    while (run->segment + 1 < o->segment_count &&
           k >= run->segment_count_before + segment_count(&o->segments[run->segment]) - 1e-9) {
        run->segment_count_before += segment_count(&o->segments[run->segment]);
        run->segment_start_s += o->segments[run->segment].seconds;
        run->segment++;
    }
    const load_segment *s = &o->segments[run->segment];
    double t = run->segment_start_s + segment_time_of(s, k - run->segment_count_before);
    return run->start_ns + (int64_t)(t * 1e9);
}

/* Arrivals due by now: the script's count at that time. */
static uint64_t arrivals_due_by(const load_run *run, int64_t now)
{
    const load_options *o = &run->opt;
    double t = (double)(now - run->start_ns) / 1e9, n = 0;
    for (uint32_t i = 0; i < o->segment_count && t > 0; i++) {
        const load_segment *s = &o->segments[i];
        double u = t < s->seconds ? t : s->seconds;
        n += s->from * u + (s->to - s->from) * u * u / (2.0 * s->seconds);
        t -= s->seconds;
    }
    uint64_t due = (uint64_t)n + 1;
    return due < run->arrivals_total ? due : run->arrivals_total;
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

/* ---- Sessions --------------------------------------------------------------------- */

void load_follow(load_run *run, load_op op, uint32_t delay_ms)
{
    int64_t now = tg_mono_ns();
    op.retried = 0;
    if (delay_ms > 0) {
        op.due_ns = now + (int64_t)delay_ms * 1000000;
        heap_push(&run->later, &op);
    } else {
        op.due_ns = now;
        queue_push(&run->targets[op.target].ready, &op);
    }
}

void load_session_end(load_run *run, uint32_t session)
{
    TG_ASSERT(run->active_sessions > 0);
    run->active_sessions--;
    run->free_sessions[run->free_session_count++] = session;
}

void load_sale(load_run *run, uint64_t booking, uint32_t seats)
{
    TG_ASSERT(run->sale_count < run->sale_capacity);
    run->sale_bookings[run->sale_count] = booking;
    run->sale_seats[run->sale_count] = seats;
    run->sale_count++;
    run->seats_sold += seats;
    run->last_sale_ns = tg_mono_ns();
}

/* ---- Connections ----------------------------------------------------------------- */

static void run_finish(load_run *run);
static void dispatch(load_run *run);

static void conn_closed_cb(uv_handle_t *handle)
{
    (void)handle; /* connections live in their target's table, freed after the loop */
}

static void conn_close(load_conn *c)
{
    if (c->open) {
        c->open = false;
        c->run->targets[c->target].open_count--;
    }
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    }
}

static void conn_free(load_conn *c)
{
    load_target *t = &c->run->targets[c->target];
    TG_ASSERT(t->free_count < t->count);
    t->free_conns[t->free_count++] = (uint32_t)(c - t->conns);
}

/* A transport failure: the request in flight is lost (and its session
 * with it), the connection is closed for good, and the run is invalid.
 * The caller dispatches next. */
static void conn_fail(load_conn *c, const char *what)
{
    load_run *run = c->run;
    load_target *t = &run->targets[c->target];
    load_error_show(run, "connection %u to %s: %s", (unsigned)(c - t->conns), t->host, what);
    if (c->busy) {
        c->busy = false;
        run->in_flight--;
        run->routes[c->op.route].transport_errors++;
        load_session_end(run, c->op.session);
    }
    conn_close(c);
    if (t->open_count == 0) {
        run_finish(run);
    }
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

/* Sends op on c.  A write that fails at once fails the connection. */
static void request_send(load_run *run, load_conn *c, const load_op *op, int64_t now)
{
    c->op = *op;
    c->out_len = run->scenario->format(run, op, c->out, sizeof(c->out));
    TG_ASSERT(c->out_len > 0); /* LOAD_REQUEST_BYTES_MAX holds any request */
    run->sent++;
    c->sent_ns = now;
    c->busy = true;
    c->writing = true;
    c->in_len = 0;
    c->received = 0;
    run->in_flight++;
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)c->out_len);
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
    if (rc < 0) {
        c->writing = false;
        conn_fail(c, uv_strerror(rc));
    }
}

/* Delayed ops that are due join their server's ready queue. */
static void later_release(load_run *run, int64_t now)
{
    const load_op *op;
    while ((op = queue_head(&run->later)) != NULL && op->due_ns <= now) {
        queue_push(&run->targets[op->target].ready, op);
        heap_pop(&run->later);
    }
}

static bool sending_allowed(const load_run *run)
{
    return run->opt.max_requests == 0 || run->sent < run->opt.max_requests;
}

/* The next op for a free connection of target t: the oldest ready one,
 * else (gateway) a new arrival that is due; false when none. */
static bool next_op(load_run *run, load_target_id t, int64_t now, load_op *op)
{
    load_queue *ready = &run->targets[t].ready;
    if (ready->count > 0) {
        *op = *queue_head(ready);
        queue_pop(ready);
        return true;
    }
    if (t != TARGET_GATEWAY || run->arrived >= run->arrivals_total ||
        run->free_session_count == 0) {
        return false;
    }
    int64_t due = arrival_due_ns(run);
    if (due > now) {
        return false;
    }
    uint32_t session = run->free_sessions[run->free_session_count - 1];
    if (!run->scenario->arrive(run, session, op)) {
        /* The scenario can start no more sessions (hold-release after
         * failures left no seat to use): the rest of the schedule is
         * counted as unsent, and the run ends with what is in flight. */
        run->unsendable += run->arrivals_total - run->arrived;
        run->arrivals_total = run->arrived;
        return false;
    }
    run->free_session_count--;
    run->active_sessions++;
    run->arrived++;
    op->session = session;
    op->due_ns = due;
    return true;
}

static bool run_done(const load_run *run)
{
    if (run->in_flight > 0) {
        return false;
    }
    if (!sending_allowed(run)) {
        return true; /* --max-requests: sessions still open count as unfinished */
    }
    return run->later.count == 0 && run->targets[TARGET_GATEWAY].ready.count == 0 &&
           run->targets[TARGET_SANDBOX].ready.count == 0 && run->active_sessions == 0 &&
           run->arrived >= run->arrivals_total;
}

/* The time the loop should next wake for: a due arrival or delayed op. */
static void timer_rearm(load_run *run)
{
    int64_t next = 0;
    if (run->later.count > 0) {
        next = queue_head(&run->later)->due_ns;
    }
    if (run->arrived < run->arrivals_total && run->free_session_count > 0 &&
        run->targets[TARGET_GATEWAY].free_count > 0) {
        int64_t due = arrival_due_ns(run);
        next = next == 0 || due < next ? due : next;
    }
    if (next != 0) {
        timer_arm(run, next);
    } else {
        timer_disarm(run);
    }
}

/* Sends what is due on free connections; arms the timer for the next. */
static void dispatch(load_run *run)
{
    if (run->finished) {
        return;
    }
    int64_t now = tg_mono_ns();
    later_release(run, now);
    for (int t = 0; t < TARGET_COUNT_; t++) {
        load_target *target = &run->targets[t];
        load_op op;
        while (!run->finished && target->free_count > 0 && sending_allowed(run) &&
               next_op(run, (load_target_id)t, now, &op)) {
            load_conn *c = &target->conns[target->free_conns[--target->free_count]];
            request_send(run, c, &op, now);
        }
    }
    if (run->finished) {
        return; /* a write failed and took the last connection */
    }
    uint64_t due = arrivals_due_by(run, now);
    if (due > run->arrived && due - run->arrived > run->waiting_max) {
        run->waiting_max = due - run->arrived;
    }
    if (run_done(run)) {
        run_finish(run);
        return;
    }
    timer_rearm(run);
}

static void conn_reopen(load_conn *c);

static void answer_done(load_conn *c, const answer *a)
{
    load_run *run = c->run;
    int64_t now = tg_mono_ns();
    load_route_stats *rs = &run->routes[c->op.route];
    if (c->op.due_ns >= run->warmup_end_ns) {
        load_hist_add(&rs->latency, now - c->op.due_ns);
    }
    load_hist_add(&run->interval, now - c->op.due_ns);
    run->interval_answered++;
    run->answered++;
    rs->statuses[a->status < (int)LOAD_STATUS_CODES ? a->status : 0]++;
    c->busy = false;
    run->in_flight--;
    /* A body larger than the buffer reaches the scenario cut short: only
     * small answers (ids, tokens, a payment's page) are read. */
    const char *body = c->in + a->header_bytes;
    size_t kept = c->in_len - a->header_bytes;
    size_t body_len = a->body_bytes < kept ? a->body_bytes : kept;
    if (!run->scenario->done(run, &c->op, a->status, body, body_len)) {
        rs->unexpected++;
        int shown =
            (int)(a->body_bytes < LOAD_ERROR_BODY_BYTES ? a->body_bytes : LOAD_ERROR_BODY_BYTES);
        shown = shown < (int)body_len ? shown : (int)body_len;
        load_error_show(run, "%s answered %d: %.*s", load_route_name((load_route)c->op.route),
                        a->status, shown, body);
    }
    c->in_len = 0;
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

/* Where the bytes of a body too large to keep go (only its length counts;
 * one loop thread, so one buffer serves every connection). */
static char discard[LOAD_ANSWER_BYTES_MAX];

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    load_conn *c = handle->data;
    if (c->in_len < sizeof(c->in)) {
        *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
    } else {
        *buf = uv_buf_init(discard, sizeof(discard));
    }
}

/* Takes c off its target's stack of idle connections. */
static void conn_unfree(load_conn *c)
{
    load_target *t = &c->run->targets[c->target];
    uint32_t index = (uint32_t)(c - t->conns);
    for (uint32_t i = 0; i < t->free_count; i++) {
        if (t->free_conns[i] == index) {
            t->free_conns[i] = t->free_conns[--t->free_count];
            return;
        }
    }
}

/* The server closed a kept-alive connection while it was idle, or just as
 * a request went out on it, before any byte of the answer (its idle
 * timeout): a browser opens a new one and sends that request again, once,
 * and so does this program.  Neither is an error; both are counted. */
static void conn_closed_early(load_conn *c)
{
    load_run *run = c->run;
    if (c->busy) {
        c->busy = false;
        run->in_flight--;
        run->sent--;
        run->resent++;
        c->op.retried = 1;
        queue_push(&run->targets[c->target].ready, &c->op);
    } else {
        conn_unfree(c);
    }
    conn_reopen(c);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    load_conn *c = stream->data;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        answer a = {0};
        if (nread == UV_EOF && c->busy &&
            answer_parse(c->in, c->in_len, c->received, &a) == ANSWER_INCOMPLETE && a.until_close) {
            a.body_bytes = c->received - a.header_bytes;
            answer_done(c, &a); /* a.close: the connection is replaced */
            return;
        }
        if (!c->busy || (c->received == 0 && !c->op.retried)) {
            conn_closed_early(c);
            return;
        }
        conn_fail(c, nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
        dispatch(c->run);
        return;
    }
    if (buf->base != discard) {
        c->in_len += (size_t)nread;
    }
    c->received += (size_t)nread;
    answer a = {0};
    answer_state st = c->busy ? answer_parse(c->in, c->in_len, c->received, &a) : ANSWER_BAD;
    if (st == ANSWER_INCOMPLETE && a.header_bytes == 0 && c->in_len == sizeof(c->in)) {
        st = ANSWER_BAD; /* the head alone does not fit */
    }
    if (st == ANSWER_DONE && c->received != a.header_bytes + a.body_bytes) {
        st = ANSWER_BAD; /* bytes beyond the answer: nothing else was asked */
    }
    if (st == ANSWER_BAD) {
        char what[256];
        snprintf(what, sizeof(what),
                 "an answer this program does not read (not asked for, or a head or a "
                 "chunked answer over %u bytes): %.60s",
                 LOAD_ANSWER_BYTES_MAX, c->in);
        conn_fail(c, what);
        dispatch(c->run);
    } else if (st == ANSWER_DONE) {
        answer_done(c, &a);
    }
}

static void time_limit_cb(uv_timer_t *timer)
{
    load_run *run = timer->data;
    load_error_show(run,
                    "time limit of %" PRIu64 " s reached: %u sessions unfinished, %" PRIu64
                    " requests unanswered",
                    run->opt.time_limit_s, run->active_sessions, run->in_flight);
    run_finish(run);
}

static void progress_cb(uv_timer_t *timer)
{
    load_progress(timer->data);
}

static void clock_start(load_run *run)
{
    uv_timer_stop(&run->guard);
    run->start_ns = tg_mono_ns();
    run->warmup_end_ns = run->start_ns + (int64_t)run->opt.warmup_seconds * 1000000000;
    uv_timer_start(&run->guard, time_limit_cb, run->opt.time_limit_s * 1000, 0);
    if (run->opt.progress) {
        uv_timer_start(&run->progress, progress_cb, 1000, 1000);
    }
    dispatch(run);
}

/* A connection that could not be made: before the clock, the run cannot
 * start; a replacement, it counts as a transport error. */
static void connect_failed(load_conn *c, int status)
{
    load_run *run = c->run;
    if (!c->reopening) {
        load_error_show(run, "cannot connect to %s: %s", run->targets[c->target].host,
                        uv_strerror(status));
        run->setup_failed = true;
        conn_close(c);
        run_finish(run);
        return;
    }
    c->reopening = false;
    conn_fail(c, "cannot open a connection in place of one the server closed");
    dispatch(run);
}

static bool all_connected(const load_run *run)
{
    for (int t = 0; t < TARGET_COUNT_; t++) {
        if (run->targets[t].open_count < run->targets[t].count) {
            return false;
        }
    }
    return true;
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
    run->targets[c->target].open_count++;
    if (all_connected(run) && !run->finished) {
        clock_start(run);
    }
}

/* Opens c's TCP connection; connect_cb follows unless this fails it. */
static void conn_connect(load_conn *c)
{
    load_run *run = c->run;
    uv_tcp_init(&run->loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c->connect_req.data = c->write_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp,
                            (const struct sockaddr *)&run->targets[c->target].addr, connect_cb);
    if (rc < 0) {
        connect_failed(c, rc);
    }
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
 * open in the counts meanwhile. */
static void conn_reopen(load_conn *c)
{
    c->run->reopened++;
    c->reopening = true;
    uv_close((uv_handle_t *)&c->tcp, reopen_closed_cb);
}

static void connect_timeout_cb(uv_timer_t *timer)
{
    load_run *run = timer->data;
    load_error_show(run, "not every connection opened within %u ms", LOAD_CONNECT_TIMEOUT_MS);
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

/* Closes every handle; uv_run returns once they are closed.  Sessions
 * still open are counted as unfinished. */
static void run_finish(load_run *run)
{
    if (run->finished) {
        return;
    }
    run->finished = true;
    run->end_ns = tg_mono_ns();
    run->unfinished = run->active_sessions;
    if (run->arrived < run->arrivals_total) {
        run->unsendable += run->arrivals_total - run->arrived; /* time or request limit */
    }
    uv_poll_stop(&run->timer_poll);
    uv_close((uv_handle_t *)&run->timer_poll, handle_closed_cb);
    uv_close((uv_handle_t *)&run->guard, handle_closed_cb);
    uv_close((uv_handle_t *)&run->progress, handle_closed_cb);
    for (int t = 0; t < TARGET_COUNT_; t++) {
        for (uint32_t i = 0; i < run->targets[t].made; i++) {
            conn_close(&run->targets[t].conns[i]);
        }
    }
}

static bool target_alloc(load_target *t, uint32_t count, uint32_t queue_capacity)
{
    t->count = count;
    t->conns = calloc(count > 0 ? count : 1, sizeof(load_conn));
    t->free_conns = calloc(count > 0 ? count : 1, sizeof(uint32_t));
    return t->conns != NULL && t->free_conns != NULL && queue_init(&t->ready, queue_capacity);
}

static bool run_alloc(load_run *run)
{
    uint32_t sessions = (uint32_t)run->opt.sessions;
    run->free_sessions = calloc(sessions, sizeof(uint32_t));
    if (run->free_sessions == NULL || !queue_init(&run->later, sessions) ||
        !target_alloc(&run->targets[TARGET_GATEWAY], (uint32_t)run->opt.connections, sessions) ||
        !target_alloc(&run->targets[TARGET_SANDBOX], (uint32_t)run->opt.sandbox_connections,
                      sessions)) {
        return false;
    }
    for (uint32_t i = 0; i < sessions; i++) {
        run->free_sessions[i] = sessions - 1 - i; /* slot 0 first */
    }
    run->free_session_count = sessions;
    return true;
}

static void handles_init(load_run *run)
{
    uv_poll_init(&run->loop, &run->timer_poll, run->timer_fd);
    run->timer_poll.data = run;
    uv_poll_start(&run->timer_poll, UV_READABLE, timer_fd_cb);
    uv_timer_init(&run->loop, &run->guard);
    run->guard.data = run;
    uv_timer_init(&run->loop, &run->progress);
    run->progress.data = run;
    uv_timer_start(&run->guard, connect_timeout_cb, LOAD_CONNECT_TIMEOUT_MS, 0);
}

bool load_run_loop(load_run *run)
{
    run->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!run_alloc(run) || run->timer_fd < 0 || uv_loop_init(&run->loop) != 0) {
        fprintf(stderr, "%s: out of memory or file descriptors\n", PROGRAM);
        return false;
    }
    handles_init(run);
    for (int t = 0; t < TARGET_COUNT_ && !run->finished; t++) {
        load_target *target = &run->targets[t];
        for (uint32_t i = 0; i < target->count && !run->finished; i++) {
            load_conn *c = &target->conns[i];
            c->run = run;
            c->target = (uint8_t)t;
            target->made++;
            conn_connect(c);
        }
    }
    uv_run(&run->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&run->loop);
    TG_ASSERT(rc == 0); /* run_finish closed every handle */
    close(run->timer_fd);
    return !run->setup_failed;
}

void load_run_free(load_run *run)
{
    for (int t = 0; t < TARGET_COUNT_; t++) {
        free(run->targets[t].conns);
        free(run->targets[t].free_conns);
        free(run->targets[t].ready.ops);
    }
    free(run->later.ops);
    free(run->free_sessions);
    free(run->sale_bookings);
    free(run->sale_seats);
}

/* ---- URLs ------------------------------------------------------------------------ */

/* Splits "host:port", "[v6]:port" or "host" into name and port. */
static const char *host_split(char *name, const char **port)
{
    *port = "80";
    char *colon = strrchr(name, ':');
    if (colon != NULL && strchr(colon, ']') == NULL) {
        *colon = '\0';
        *port = colon + 1;
    }
    size_t nlen = strlen(name);
    if (nlen >= 2 && name[0] == '[' && name[nlen - 1] == ']') {
        name[nlen - 1] = '\0';
        return name + 1;
    }
    return name;
}

int load_target_resolve(load_target *t, const char *url, const char *flag)
{
    if (strncmp(url, "http://", 7) != 0) {
        return tg_cli_usage_error(PROGRAM, "%s must start with http:// (got '%s')", flag, url);
    }
    const char *authority = url + 7;
    const char *slash = strchr(authority, '/');
    size_t alen = slash != NULL ? (size_t)(slash - authority) : strlen(authority);
    const char *path = slash != NULL ? slash : "/";
    if (alen == 0 || alen >= sizeof(t->host) || strlen(path) >= sizeof(t->path)) {
        return tg_cli_usage_error(PROGRAM, "%s has no host or is too long", flag);
    }
    memcpy(t->host, authority, alen);
    t->host[alen] = '\0';
    snprintf(t->path, sizeof(t->path), "%s", path);
    char name[LOAD_HOST_BYTES_MAX];
    snprintf(name, sizeof(name), "%s", t->host);
    const char *port;
    const char *host = host_split(name, &port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot resolve %s: %s\n", PROGRAM, t->host, gai_strerror(rc));
        return TG_EXIT_UNAVAILABLE;
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

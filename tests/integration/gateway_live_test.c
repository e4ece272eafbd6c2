/*
 * gateway_live_test.c — the crowd reads over a real grid: GET
 * /api/events/{id}/seatmap (every seat's state from the gateway's
 * snapshots, ETags, versions) and GET /api/events/{id}/live (Server-Sent
 * Events).  Seats are changed through the API and must show in the map and
 * on the stream; a unit killed turns its seats UNKNOWN while the other
 * partitions carry on.
 */
#include "gwh.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static void kept_free(void);

static void fini(void)
{
    kept_free();
    gwh_fini_all();
}

TestSuite(gateway_live, .fini = fini, .timeout = 120);

#define WAIT_MS 3000 /* a change reaches the map (one PU tick and a hand-off, in practice) */

typedef struct {
    json_t *doc;
    uint8_t *states; /* ceil(seat_count / 2) bytes */
    uint64_t seat_count, version;
    char etag[64];
} seatmap;

static unsigned nibble(const seatmap *m, uint64_t seat)
{
    return (m->states[seat >> 1] >> ((seat & 1) * 4)) & 15u;
}

static seatmap seatmap_get(gwh_gateway *gw, uint64_t event_id)
{
    gwh_resp *r = gwh_http(gw, "GET", NULL, NULL, "/api/events/%" PRIu64 "/seatmap", event_id);
    seatmap m = {.doc = gwh_expect(r, 200)};
    m.seat_count = (uint64_t)gwh_int(m.doc, "seat_count");
    m.version = (uint64_t)gwh_int(m.doc, "version");
    cr_assert_eq((uint64_t)gwh_int(m.doc, "event_id"), event_id);
    cr_assert_str_eq(gwh_str(m.doc, "encoding"), "nibbles");
    const char *b64 = gwh_str(m.doc, "states");
    size_t want = (size_t)(m.seat_count + 1) / 2, got = 0;
    /* The last few maps stay valid (a test compares up to three). */
    static uint8_t pool[8][GWH_DEMO_SEATS / 2 + 2];
    static unsigned next;
    cr_assert_leq(want + 1, sizeof(pool[0]));
    m.states = pool[next++ % 8];
    cr_assert_eq(sodium_base642bin(m.states, want + 1, b64, strlen(b64), NULL, &got, NULL,
                                   sodium_base64_VARIANT_ORIGINAL),
                 0, "states is not base64");
    cr_assert_eq(got, want, "states: %zu bytes for %" PRIu64 " seats", got, m.seat_count);
    const char *etag = gwh_header(r, "etag");
    cr_assert_not_null(etag, "no ETag");
    snprintf(m.etag, sizeof(m.etag), "%s", etag);
    cr_assert_str_eq(gwh_header(r, "cache-control"), "no-cache");
    return m;
}

/* Polls the map until seat shows want (bounded by WAIT_MS). */
static seatmap seatmap_wait(gwh_gateway *gw, uint64_t event_id, uint64_t seat, unsigned want)
{
    int64_t deadline = hx_now_ms() + WAIT_MS;
    for (;;) {
        seatmap m = seatmap_get(gw, event_id);
        if (nibble(&m, seat) == want) {
            return m;
        }
        cr_assert(hx_now_ms() < deadline, "seat %" PRIu64 " shows %u, not %u, after %d ms", seat,
                  nibble(&m, seat), want, WAIT_MS);
        hx_sleep_ms(20);
    }
}

static void select_seats(gwh_gateway *gw, const char *auth, uint64_t booking, const char *ids)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_ids\": %s}", booking, ids);
    gwh_expect(gwh_http(gw, "PATCH", auth, body, "/api/seats/select"), 200);
}

static void release_seats(gwh_gateway *gw, const char *auth, uint64_t booking, const char *ids)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_ids\": %s}", booking, ids);
    gwh_expect(gwh_http(gw, "PATCH", auth, body, "/api/seats/release"), 200);
}

/* The map's counts per state equal /availability's totals at the map's
 * version (the same notion of version; nothing changes meanwhile). */
static void expect_counts_match(gwh_gateway *gw, const seatmap *m)
{
    static const char *const names[] = {"FREE", "SELECTED", "RESERVED", "SOLD", "BLOCKED"};
    uint64_t counts[16] = {0};
    for (uint64_t s = 0; s < m->seat_count; s++) {
        counts[nibble(m, s)]++;
    }
    json_t *a = gwh_availability_at(gw, GWH_DEMO_EVENT, (int64_t)m->version);
    cr_assert_eq(gwh_int(a, "version"), (int64_t)m->version,
                 "availability's version is not the map's");
    for (unsigned st = 0; st < 5; st++) {
        char path[32];
        snprintf(path, sizeof(path), "totals.%s", names[st]);
        cr_assert_eq(counts[st], (uint64_t)gwh_int(a, path), "%s", names[st]);
    }
}

/* ---- A Server-Sent Events client over a raw socket --------------------------
 * HTTP/1.0, so that the body is the stream itself (no chunked framing). */

#define SSE_BUFFER (1u << 20)

typedef struct {
    int fd;
    char *buf; /* unparsed bytes */
    size_t len, consumed;
    bool closed;
} sse;

typedef struct {
    char event[32]; /* "message" when absent; ":" for a comment */
    char id[32];
    char *data; /* NUL-terminated (the stream's buffer, valid until the next read) */
    int64_t at_ms;
} sse_event;

static bool sse_fill(sse *s, int timeout_ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (s->closed || poll(&p, 1, timeout_ms) <= 0) {
        return false;
    }
    cr_assert(s->len < SSE_BUFFER - 1, "an SSE message over %u bytes", SSE_BUFFER);
    ssize_t n = recv(s->fd, s->buf + s->len, SSE_BUFFER - 1 - s->len, 0);
    if (n <= 0) {
        s->closed = true;
        return false;
    }
    s->len += (size_t)n;
    s->buf[s->len] = '\0';
    return true;
}

static sse *sse_open(gwh_gateway *gw, const char *path, const char *last_id)
{
    sse *s = calloc(1, sizeof(*s));
    s->buf = malloc(SSE_BUFFER);
    s->fd = gwh_connect(gw);
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: t\r\n%s%s%s\r\n", path,
                     last_id != NULL ? "Last-Event-ID: " : "", last_id != NULL ? last_id : "",
                     last_id != NULL ? "\r\n" : "");
    gwh_write(s->fd, req, (size_t)n);
    int64_t deadline = hx_now_ms() + GWH_REQUEST_TIMEOUT_MS;
    char *end;
    while ((end = s->len > 0 ? strstr(s->buf, "\r\n\r\n") : NULL) == NULL) {
        cr_assert(hx_now_ms() < deadline && !s->closed, "no SSE headers for %s", path);
        sse_fill(s, 100);
    }
    *end = '\0';
    cr_assert(strncmp(s->buf, "HTTP/1.1 200", 12) == 0 || strncmp(s->buf, "HTTP/1.0 200", 12) == 0,
              "%s: %s", path, s->buf);
    cr_assert(strstr(s->buf, "text/event-stream") != NULL, "%s: %s", path, s->buf);
    size_t head = (size_t)(end - s->buf) + 4;
    memmove(s->buf, s->buf + head, s->len - head);
    s->len -= head;
    s->buf[s->len] = '\0';
    return s;
}

static void sse_close(sse *s)
{
    close(s->fd);
    free(s->buf);
    free(s);
}

/* The next message within timeout_ms; false when none came (or the stream
 * ended). Consumed bytes are dropped before the next call. */
static bool sse_next(sse *s, int timeout_ms, sse_event *ev)
{
    memmove(s->buf, s->buf + s->consumed, s->len - s->consumed);
    s->len -= s->consumed;
    s->buf[s->len] = '\0';
    s->consumed = 0;
    int64_t deadline = hx_now_ms() + timeout_ms;
    char *end;
    while ((end = strstr(s->buf, "\n\n")) == NULL) {
        int left = (int)(deadline - hx_now_ms());
        if (left <= 0 || (!sse_fill(s, left) && s->closed)) {
            return false;
        }
    }
    *end = '\0';
    s->consumed = (size_t)(end - s->buf) + 2;
    *ev = (sse_event){.at_ms = hx_now_ms()};
    snprintf(ev->event, sizeof(ev->event), "message");
    for (char *line = s->buf; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        if (line[0] == ':') {
            snprintf(ev->event, sizeof(ev->event), ":");
        } else if (strncmp(line, "event: ", 7) == 0) {
            snprintf(ev->event, sizeof(ev->event), "%s", line + 7);
        } else if (strncmp(line, "id: ", 4) == 0) {
            snprintf(ev->id, sizeof(ev->id), "%s", line + 4);
        } else if (strncmp(line, "data: ", 6) == 0) {
            ev->data = line + 6;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (strcmp(ev->event, "message") == 0 && ev->data == NULL && ev->id[0] == '\0') {
        return sse_next(s, (int)(deadline - hx_now_ms()), ev); /* "retry:" alone */
    }
    return true;
}

/* The next message named `name`, skipping others (bounded by timeout_ms). */
/* Documents the helpers return live until the end of the test. */
static json_t *kept[64];
static unsigned kept_count;

static json_t *keep(json_t *j)
{
    cr_assert_lt(kept_count, 64, "more documents than kept[] holds");
    kept[kept_count++] = j;
    return j;
}

static void kept_free(void)
{
    while (kept_count > 0) {
        json_decref(kept[--kept_count]);
    }
}

#define sse_expect(s, name, timeout_ms, ev) sse_expect_at(s, name, timeout_ms, ev, __LINE__)
static json_t *sse_expect_at(sse *s, const char *name, int timeout_ms, sse_event *ev, int line)
{
    int64_t deadline = hx_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - hx_now_ms());
        cr_assert(left > 0 && sse_next(s, left, ev), "line %d: no '%s' event within %d ms", line,
                  name, timeout_ms);
        if (strcmp(ev->event, name) == 0) {
            json_error_t e;
            json_t *j = ev->data != NULL ? json_loads(ev->data, 0, &e) : NULL;
            cr_assert(ev->data == NULL || j != NULL, "%s: bad JSON: %.200s", name, ev->data);
            return keep(j);
        }
    }
}

/* The state the seats event gives seat no, or -1. */
static int changes_state(json_t *seats, uint32_t no)
{
    json_t *ch = json_object_get(seats, "changes");
    int found = -1;
    for (size_t i = 0; i + 1 < json_array_size(ch); i += 2) {
        if (json_integer_value(json_array_get(ch, i)) == no) {
            cr_assert_eq(found, -1, "seat %u twice in one seats event", no);
            found = (int)json_integer_value(json_array_get(ch, i + 1));
        }
    }
    return found;
}

/* The seat map shows every seat and follows holds and releases. */
static void seatmap_follows_holds_and_releases(gwh_gateway *gw)
{
    seatmap m0 = seatmap_get(gw, GWH_DEMO_EVENT);
    cr_assert_eq(m0.seat_count, GWH_DEMO_SEATS);
    char etag[64];
    snprintf(etag, sizeof(etag), "\"1-%" PRIu64 "-", m0.version);
    cr_assert(strncmp(m0.etag, etag, strlen(etag)) == 0, "ETag %s", m0.etag);
    expect_counts_match(gw, &m0);
    /* The layout: one partition, five sections whose rows cover them. */
    cr_assert_eq(gwh_int(m0.doc, "partitions.0.partition_id"), GWH_DEMO_PARTITION);
    cr_assert_eq(gwh_int(m0.doc, "partitions.0.first_seat"), 0);
    cr_assert_eq(gwh_int(m0.doc, "partitions.0.seat_count"), GWH_DEMO_SEATS);
    json_t *sections = gwh_json_at(m0.doc, "sections");
    cr_assert_eq(json_array_size(sections), 5);
    cr_assert_str_eq(gwh_str(m0.doc, "sections.0.name"), "Golden Circle");
    int64_t next = 0;
    for (size_t i = 0; i < json_array_size(sections); i++) {
        json_t *s = json_array_get(sections, i);
        cr_assert_eq(gwh_int(s, "first_seat"), next);
        int64_t row_next = next;
        json_t *rows = gwh_json_at(s, "rows");
        for (size_t j = 0; j < json_array_size(rows); j++) {
            cr_assert_eq(gwh_int(json_array_get(rows, j), "first_seat"), row_next);
            row_next += gwh_int(json_array_get(rows, j), "seat_count");
        }
        next += gwh_int(s, "seat_count");
        cr_assert_eq(row_next, next, "rows of section %zu do not cover it", i);
    }
    cr_assert_eq(next, GWH_DEMO_SEATS);

    /* Unchanged: the ETag answers 304 with no body. */
    const char *inm[] = {NULL, NULL};
    char line[96];
    snprintf(line, sizeof(line), "If-None-Match: %s", m0.etag);
    inm[0] = line;
    gwh_resp *nm =
        gwh_send(gw, &(gwh_request_spec){.path = "/api/events/1/seatmap", .headers = inm});
    cr_assert_eq(nm->status, 304, "%s: %ld", nm->what, nm->status);
    cr_assert_eq(nm->len, 0);
    /* /availability at the same version has the same ETag, and 304 too. */
    const char *avail_path = "/api/events/1/availability";
    cr_assert_str_eq(gwh_header(gwh_http(gw, "GET", NULL, NULL, "%s", avail_path), "etag"),
                     m0.etag);
    nm = gwh_send(gw, &(gwh_request_spec){.path = avail_path, .headers = inm});
    cr_assert_eq(nm->status, 304, "%s: %ld", nm->what, nm->status);
    cr_assert_eq(nm->len, 0);

    /* Holds show as SELECTED (1), releases as FREE again; the version rises
     * and the old ETag no longer matches. */
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    select_seats(gw, buyer, b, "[4294967396, 4294967397, 4294997295]"); /* 100, 101, 29999 */
    seatmap m1 = seatmap_wait(gw, GWH_DEMO_EVENT, 29999, 1);
    cr_assert_eq(nibble(&m1, 100), 1);
    cr_assert_eq(nibble(&m1, 101), 1);
    cr_assert_eq(nibble(&m1, 102), 0);
    cr_assert_gt(m1.version, m0.version);
    expect_counts_match(gw, &m1);
    nm = gwh_send(gw, &(gwh_request_spec){.path = "/api/events/1/seatmap", .headers = inm});
    cr_assert_eq(nm->status, 200);
    nm = gwh_send(gw, &(gwh_request_spec){.path = avail_path, .headers = inm});
    cr_assert_eq(nm->status, 200, "%s: %ld", nm->what, nm->status);
    release_seats(gw, buyer, b, "[4294967397]");
    seatmap m2 = seatmap_wait(gw, GWH_DEMO_EVENT, 101, 0);
    cr_assert_eq(nibble(&m2, 100), 1);
    cr_assert_gt(m2.version, m1.version);

    /* Bad ids. */
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/0/seatmap"), 404, "not_found");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/777/seatmap"), 404, "not_found");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/4/seatmap"), 404,
                     "not_found"); /* a draft */
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/x1/seatmap"), 400, "invalid_id");
}

/* A killed unit turns its seats UNKNOWN (the stream says reset, then only
 * heartbeats come); the other partitions carry on. */
static void killed_unit_turns_unknown(gwh_grid *g)
{
    gwh_gateway *gw = g->gw;
    sse *s = sse_open(gw, "/api/events/3/live?availability=summary", NULL);
    sse_event ev;
    sse_expect(s, "snapshot", 2000, &ev);
    json_t *av = sse_expect(s, "availability", 2500, &ev);
    cr_assert_eq(gwh_int(av, "totals.FREE"), GWH_HALL_SEATS);
    cr_assert_eq(json_array_size(gwh_json_at(av, "rows")), 0);
    seatmap hall = seatmap_get(gw, GWH_HALL_EVENT);
    cr_assert_eq(hall.seat_count, GWH_HALL_SEATS);
    cr_assert_eq(nibble(&hall, 0), 0);
    seatmap_get(gw, GWH_DEMO_EVENT);
    /* A hold in the hall: the stream's last id before the kill. */
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t hb = gwh_booking_create(gw, buyer, GWH_HALL_EVENT);
    char ids[32];
    snprintf(ids, sizeof(ids), "[%" PRIu64 "]", GWH_SEAT_ID(GWH_HALL_PARTITION, 5));
    select_seats(gw, buyer, hb, ids);
    sse_expect(s, "seats", 2000, &ev);
    char before_kill[32];
    snprintf(before_kill, sizeof(before_kill), "%s", ev.id);

    int64_t t_kill = hx_now_ms();
    hx_kill(&g->units[1]);
    /* The map notices within a refresh or two; the hall's seats turn 15. */
    int64_t deadline = hx_now_ms() + 3 * WAIT_MS;
    seatmap dead;
    for (;;) {
        dead = seatmap_get(gw, GWH_HALL_EVENT);
        if (nibble(&dead, 0) == 15) {
            break;
        }
        cr_assert(hx_now_ms() < deadline, "the hall's seats never turned UNKNOWN");
        hx_sleep_ms(100);
    }
    for (uint64_t k = 0; k < dead.seat_count; k++) {
        cr_assert_eq(nibble(&dead, k), 15, "seat %" PRIu64, k);
    }
    cr_assert(strstr(dead.etag, "-unknown") != NULL, "ETag %s", dead.etag);
    /* The hall's counts are not known now: 503 with Retry-After. */
    gwh_resp *gone = gwh_http(gw, "GET", NULL, NULL, "/api/events/3/availability");
    gwh_expect_error(gone, 503, "unavailable");
    cr_assert(gwh_header(gone, "retry-after") != NULL, "503 without Retry-After");
    cr_log_info("UNKNOWN %lld ms after the kill", (long long)(hx_now_ms() - t_kill));
    /* The stream says reset, then (no availability while UNKNOWN) heartbeats. */
    sse_expect(s, "reset", 2000, &ev);
    sse_expect(s, ":", 2500, &ev);
    sse_close(s);
    /* A client that missed that reset (no seat changed: its last id is the
     * version still) is sent it on resuming, not "nothing missed". */
    s = sse_open(gw, "/api/events/3/live?availability=none", before_kill);
    sse_expect(s, "reset", 2000, &ev);
    sse_close(s);
    cr_log_info("heartbeat %lld ms after the kill", (long long)(hx_now_ms() - t_kill));
    /* The concert, on the other unit, still answers and still moves. */
    uint64_t b = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    select_seats(gw, buyer, b, "[4294967306]"); /* 10 */
    seatmap_wait(gw, GWH_DEMO_EVENT, 10, 1);
    cr_log_info("the concert moved %lld ms after the kill", (long long)(hx_now_ms() - t_kill));
}

static int64_t rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    int64_t kb = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %" SCNd64, &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb;
}

/* A metric of /metrics (the first line that starts with name and a space). */
static int64_t metric(gwh_gateway *gw, const char *name)
{
    gwh_resp *r = gwh_http(gw, "GET", NULL, NULL, "/metrics");
    cr_assert_eq(r->status, 200);
    char key[96];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *at = strstr(r->body, key);
    cr_assert_not_null(at, "no %s in /metrics", name);
    return strtoll(at + strlen(key), NULL, 10);
}

/* A client that never reads is dropped; the gateway's memory stays put. */
static void expect_slow_client_dropped(gwh_gateway *gw)
{
    sse *reader = sse_open(gw, "/api/events/1/live", NULL); /* keeps up */
    /* A tiny receive window, set before connecting: the full availability
     * (about 250 KB a second) soon fills it, then the 64 KB allowed. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(gw->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    const char req[] = "GET /api/events/1/live HTTP/1.0\r\nHost: t\r\n\r\n";
    gwh_write(fd, req, sizeof(req) - 1);
    int64_t before = rss_kb(gw->pid);
    cr_assert_eq(metric(gw, "tixgrid_live_dropped_total"), 0);
    int64_t deadline = hx_now_ms() + 15000;
    sse_event ev;
    while (metric(gw, "tixgrid_live_dropped_total") == 0) {
        cr_assert(hx_now_ms() < deadline, "the client that does not read was not dropped");
        while (sse_next(reader, 100, &ev)) {
        }
    }
    cr_log_info("dropped after %lld ms", (long long)(hx_now_ms() - deadline + 15000));
    int64_t after = rss_kb(gw->pid);
    cr_log_info("gateway RSS %lld kB before, %lld kB after", (long long)before, (long long)after);
    cr_assert_lt(after - before, 32 * 1024, "the gateway grew by %lld kB",
                 (long long)(after - before));
    /* What it was sent ends: the stream is over (the reader keeps reading
     * meanwhile, or it would fall behind too). */
    bool closed = false;
    deadline = hx_now_ms() + 5000;
    while (!closed && hx_now_ms() < deadline) {
        char buf[65536];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
        while (!closed && sse_next(reader, 20, &ev)) {
        }
    }
    cr_assert(closed, "the dropped stream did not end");
    close(fd);
    /* The reader still gets messages. */
    sse_expect(reader, "availability", 2500, &ev);
    sse_close(reader);
}

/* Holds reach /live within a second, coalesced at most every 100 ms;
 * availability comes every second; Last-Event-ID resumes or resets; a
 * client that does not read is dropped. */
static void live_stream_sends_changes_and_resumes(gwh_gateway *gw)
{
    /* Summaries (1 KB, not 250 KB): this client reads only now and then,
     * and would be dropped for falling behind by --live-buffer-bytes. */
    sse *s = sse_open(gw, "/api/events/1/live?availability=summary", NULL);
    sse_event ev;
    json_t *snap = sse_expect(s, "snapshot", 2000, &ev);
    uint64_t v0 = (uint64_t)gwh_int(snap, "version");

    /* A hold shows within 1 s (and the stream outlives --request-timeout-ms). */
    hx_sleep_ms(1200);
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    select_seats(gw, buyer, b, "[4294967496]"); /* 200 */
    int64_t t0 = hx_now_ms();
    json_t *seats;
    do {
        seats = sse_expect(s, "seats", 3000, &ev);
    } while (changes_state(seats, 200) < 0);
    cr_assert_eq(changes_state(seats, 200), 1);
    cr_assert_lt(ev.at_ms - t0, 1000, "the hold took %lld ms", (long long)(ev.at_ms - t0));
    uint64_t v1 = (uint64_t)gwh_int(seats, "version");
    cr_assert_gt(v1, v0);
    char resume[32];
    snprintf(resume, sizeof(resume), "%s", ev.id);

    /* Coalescing: 20 changes of seat 300 in a burst arrive in fewer
     * messages, at most one per 100 ms tick of the burst (and one on each
     * side of it), each naming the seat once, the last with its last state
     * (free).  Counted, not timed on arrival: this client reads only after
     * the burst, so messages sent 100 ms apart may come in one read. */
    int64_t burst_t0 = hx_now_ms();
    for (int i = 0; i < 10; i++) {
        select_seats(gw, buyer, b, "[4294967596]");
        release_seats(gw, buyer, b, "[4294967596]");
    }
    int64_t burst_ms = hx_now_ms() - burst_t0;
    int messages = 0, last = -1;
    sse_event e2;
    while (sse_next(s, 600, &e2)) {
        if (strcmp(e2.event, "seats") != 0) {
            continue;
        }
        json_t *m = json_loads(e2.data, 0, NULL);
        cr_assert_not_null(m);
        int st = changes_state(m, 300);
        last = st >= 0 ? st : last;
        messages++;
        json_decref(m);
    }
    cr_assert_lt(messages, 20, "%d messages for 20 changes", messages);
    cr_assert_leq(messages, burst_ms / 100 + 2, "%d messages for a burst of %lld ms", messages,
                  (long long)burst_ms);
    cr_assert_eq(last, 0, "seat 300 ends %d", last);

    json_t *sum = sse_expect(s, "availability", 2500, &ev);
    cr_assert_eq(json_array_size(gwh_json_at(sum, "rows")), 0);
    sse_close(s);

    /* Availability every second, the same JSON as /availability. */
    s = sse_open(gw, "/api/events/1/live", NULL);
    json_t *av = sse_expect(s, "availability", 2500, &ev);
    cr_assert_eq(gwh_int(av, "event_id"), 1);
    json_t *direct = gwh_availability_at(gw, GWH_DEMO_EVENT, gwh_int(av, "version"));
    cr_assert_eq(gwh_int(direct, "version"), gwh_int(av, "version"), "the grid moved meanwhile");
    cr_assert(json_equal(av, direct), "the stream's availability is not /availability's");
    cr_assert_eq(gwh_int(av, "seat_count"), GWH_DEMO_SEATS);
    cr_assert_eq(json_array_size(gwh_json_at(av, "rows")), 60 + 200 + 700 + 800 + 850);
    sse_close(s);

    /* Resume: what was missed since `resume` is replayed, no snapshot. */
    select_seats(gw, buyer, b, "[4294967696]"); /* 400 */
    seatmap_wait(gw, GWH_DEMO_EVENT, 400, 1);
    hx_sleep_ms(300); /* past a flush */
    s = sse_open(gw, "/api/events/1/live?availability=none", resume);
    bool saw400 = false;
    while (!saw400 && sse_next(s, 1500, &ev)) {
        cr_assert_str_neq(ev.event, "snapshot");
        cr_assert_str_neq(ev.event, "reset");
        if (strcmp(ev.event, "seats") == 0) {
            json_t *m = json_loads(ev.data, 0, NULL);
            saw400 = changes_state(m, 400) == 1;
            json_decref(m);
        }
    }
    cr_assert(saw400, "the resumed stream did not replay seat 400");
    sse_close(s);
    /* Not tokens: reset (the version alone, and version-stamp, were the
     * forms before stamps and before epochs). */
    static const char *const strangers[] = {"9999999999", "x-1",  "1-",      "-1",
                                            "1-2",        "1-2-", "1-2-3-4", "1--3"};
    for (size_t k = 0; k < sizeof(strangers) / sizeof(strangers[0]); k++) {
        s = sse_open(gw, "/api/events/1/live", strangers[k]);
        json_t *reset = sse_expect(s, "reset", 2000, &ev);
        cr_assert_geq((uint64_t)gwh_int(reset, "version"), v1);
        sse_close(s);
    }
    char other_stamp[72];
    uint64_t version_now, stamp, epoch;
    cr_assert_eq(sscanf(resume, "%" SCNu64 "-%" SCNu64 "-%" SCNu64, &version_now, &stamp, &epoch),
                 3, "%s", resume);
    (void)version_now;
    seatmap now = seatmap_get(gw, GWH_DEMO_EVENT);
    snprintf(other_stamp, sizeof(other_stamp), "%" PRIu64 "-%" PRIu64 "-%" PRIu64, now.version,
             stamp + 1, epoch);
    /* Another stream's stamp (another worker's, or from before a reset):
     * the concert is one partition, known, at the same epoch, so its
     * version means the same here: nothing missed, no reset. */
    s = sse_open(gw, "/api/events/1/live?availability=none", other_stamp);
    cr_assert(!sse_next(s, 1200, &ev) || strcmp(ev.event, "reset") != 0, "%s", ev.event);
    sse_close(s);
    /* The same from another epoch of the partition (a unit that has since
     * been replaced): its sequences may name other states: reset. */
    snprintf(other_stamp, sizeof(other_stamp), "%" PRIu64 "-%" PRIu64 "-%" PRIu64, now.version,
             stamp + 1, epoch + 1);
    s = sse_open(gw, "/api/events/1/live", other_stamp);
    sse_expect(s, "reset", 2000, &ev);
    sse_close(s);
    snprintf(other_stamp, sizeof(other_stamp), "%" PRIu64, now.version);
    s = sse_open(gw, "/api/events/1/live", other_stamp);
    sse_expect(s, "reset", 2000, &ev);
    sse_close(s);

    /* Bad input. */
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/1/live?availability=x"), 400,
                     "invalid_parameter");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/777/live"), 404, "not_found");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/x/live"), 400, "invalid_id");
}

/* A client away for 40 flushes (more than the 32 messages a client may
 * have queued) gets all 40 on resuming, and stays. */
static void resume_replays_more_than_a_queue(gwh_gateway *gw)
{
    sse *s = sse_open(gw, "/api/events/1/live?availability=none", NULL);
    sse_event ev;
    sse_expect(s, "snapshot", 2000, &ev);
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    select_seats(gw, buyer, b, "[4294967796]"); /* 500 */
    sse_expect(s, "seats", 2000, &ev);
    char resume[32];
    snprintf(resume, sizeof(resume), "%s", ev.id);
    sse_close(s);
    /* One change per 100 ms tick: 40 messages missed. */
    for (int i = 0; i < 20; i++) {
        release_seats(gw, buyer, b, "[4294967796]");
        hx_sleep_ms(130);
        select_seats(gw, buyer, b, "[4294967796]");
        hx_sleep_ms(130);
    }
    int64_t dropped = metric(gw, "tixgrid_live_dropped_total");
    s = sse_open(gw, "/api/events/1/live?availability=none", resume);
    int seats = 0, last = -1;
    while (seats < 40 && sse_next(s, 1500, &ev)) { /* heartbeats come every second */
        cr_assert_str_neq(ev.event, "reset");
        cr_assert_str_neq(ev.event, "snapshot");
        if (strcmp(ev.event, "seats") == 0) {
            json_t *m = json_loads(ev.data, 0, NULL);
            int st = changes_state(m, 500);
            last = st >= 0 ? st : last;
            seats += st >= 0;
            json_decref(m);
        }
    }
    cr_assert_geq(seats, 40, "%d of the 40 missed messages replayed", seats);
    cr_assert_eq(last, 1, "seat 500 ends held");
    cr_assert(!s->closed, "the resumed client was dropped");
    cr_assert_eq(metric(gw, "tixgrid_live_dropped_total"), dropped);
    sse_close(s);
    gwh_expect(gwh_http(gw, "PATCH", buyer, "{\"seat_id\": 4294967796}", "/api/seats/release"),
               200);
}

/* One grid for all (each grid costs seconds to start): two units, the
 * concert on one, the hall on the other, killed last.  One loop thread: a
 * resume is served by the worker that kept the messages (another worker
 * keeps its own, from when it began to follow the event). */
/* The concert on one unit, the hall on another, and a gateway with flags. */
static gwh_grid *concert_and_hall(const char *const *flags)
{
    gwh_options o = {.units = 2,
                     .partition_count = 2,
                     .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION},
                     .unit_of = {0, 1},
                     .gateway_flags = flags};
    return gwh_start(&o);
}

Test(gateway_live, the_seatmap_and_the_live_stream_follow_the_grid)
{
    const char *flags[] = {
        "--allow-reset", "--auth-rate", "0", "--request-timeout-ms", "1000", "--live-buffer-bytes",
        "65536",         "--threads",   "1", "--live-heartbeat-s",   "1",    NULL};
    gwh_grid *g = concert_and_hall(flags);
    seatmap_follows_holds_and_releases(g->gw);
    live_stream_sends_changes_and_resumes(g->gw);
    resume_replays_more_than_a_queue(g->gw);
    expect_slow_client_dropped(g->gw);
    killed_unit_turns_unknown(g);
    gwh_gateway_stop_ok(g->gw);
}

/* A crowd that opens /live at once while the worker has no snapshot of the
 * partition yet waits for one fetch.  That is not work in progress: other
 * requests, and more streams than --inflight-max, are still served. */
Test(gateway_live, streams_waiting_for_a_first_snapshot_do_not_make_the_gateway_busy)
{
    const char *flags[] = {"--threads", "1", "--inflight-max", "4", NULL};
    gwh_grid *g = concert_and_hall(flags);
    gwh_gateway *gw = g->gw;
    /* The hall's unit is frozen: its first snapshot cannot come yet. */
    cr_assert_eq(kill(g->units[1].pid, SIGSTOP), 0);
    enum { CROWD = 8 };
    int fds[CROWD];
    static const char req[] = "GET /api/events/3/live HTTP/1.0\r\nHost: t\r\n\r\n";
    for (int i = 0; i < CROWD; i++) {
        fds[i] = gwh_connect(gw);
        gwh_write(fds[i], req, sizeof(req) - 1);
    }
    hx_sleep_ms(200);
    gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events/1/availability"), 200);
    cr_assert_eq(kill(g->units[1].pid, SIGCONT), 0);
    for (int i = 0; i < CROWD; i++) {
        char head[64] = "";
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        cr_assert_gt(poll(&p, 1, 5000), 0, "stream %d: no answer once the unit was back", i);
        cr_assert_gt(recv(fds[i], head, sizeof(head) - 1, 0), 0);
        cr_assert(strncmp(head, "HTTP/1.1 200", 12) == 0 || strncmp(head, "HTTP/1.0 200", 12) == 0,
                  "stream %d: %s", i, head);
        close(fds[i]);
    }
    gwh_gateway_stop_ok(gw);
}

/*
 * live_bench.c — what a crowd watching an on-sale costs the gateway:
 *
 *  1. the first full seat map (GET /api/events/{id}/seatmap): bytes and
 *     milliseconds to the last byte, on a gateway that never served it
 *     (it subscribes and fetches the partitions' snapshots then), again
 *     once warm, and a revalidation with If-None-Match (304);
 *  2. --clients Server-Sent Events streams (GET /api/events/{id}/live,
 *     availability summaries) held open on one gateway: the gateway's
 *     resident memory per client (--gateway-pid);
 *  3. for --seconds, the seat changes delivered per second across all the
 *     clients, and the delay from a hold's request to its arrival on every
 *     client: a probe thread holds and releases one seat of its own every
 *     --probe-ms (Basic auth, --email/--password, seats from --probe-seat
 *     on), and every 100th client notes when the held state arrives (the
 *     others only count changes: parsing millions a second would make this
 *     program the bottleneck).  The hold
 *     load itself (e.g. 5,000 holds/s) comes from tixgrid-load run
 *     beside it.
 *
 * One libuv loop on one thread reads every stream (HTTP/1.0: the body is
 * the stream itself) and splits messages on blank lines; the seat map and
 * the probe use blocking sockets.  RLIMIT_NOFILE is raised to fit the
 * clients.  The last line, `result ...`, is for scripts.  Loopback only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#define PROGRAM        "bench_live"
#define CLIENTS_MAX    100000u
#define CLIENT_BUFFER  16384u /* unparsed bytes per client */
#define PROBE_SEATS    64u    /* the probe cycles over this many seats */
#define DELAY_BUCKETS  10001u /* ms, the last one "10 s or more" */
#define CONNECTING_MAX 256u   /* connects in flight at once */
/* Parsing every change of every client would make this program, not the
 * gateway, the bottleneck: the others only count them. */
#define SAMPLE_EVERY 100u

typedef struct {
    char host[64];
    uint16_t port;
    uint64_t event_id;
    uint32_t clients, seconds, probe_ms;
    uint64_t probe_seat; /* API id of the probe's first seat */
    const char *email, *password;
    long gateway_pid;
} options;

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    struct client *next_pending;
    char buf[CLIENT_BUFFER];
    size_t len;
    bool headers_done, open, ended;
    bool sampled; /* one client in SAMPLE_EVERY parses seats for the probe's delays */
    int64_t probe_seen[PROBE_SEATS]; /* the probe hold's send time already counted */
} client;

static options opt;
static client *clients;
static uv_loop_t *loop;
static uint32_t next_to_connect, connecting, connected, ended, failed;
static uint64_t messages, seats_messages, changes;
static uint64_t delays[DELAY_BUCKETS], delay_count;
static _Atomic int64_t probe_sent_ns[PROBE_SEATS]; /* 0: no hold outstanding */
static atomic_bool stopping;
static char request[256];

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long rss_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb;
}

/* ---- Blocking HTTP for the seat map and the probe -------------------------- */

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(opt.port)};
    inet_pton(AF_INET, opt.host, &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        fprintf(stderr, PROGRAM ": cannot connect to %s:%u: %s\n", opt.host, opt.port,
                strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) {
            fprintf(stderr, PROGRAM ": send: %s\n", strerror(errno));
            exit(1);
        }
        data += n;
        len -= (size_t)n;
    }
}

/* One HTTP/1.1 answer with Content-Length on fd: status, body (malloc'd). */
static int read_answer(int fd, char **body, size_t *body_len, char *etag, size_t etag_size)
{
    size_t cap = 1u << 20, len = 0;
    char *buf = malloc(cap + 1);
    size_t head = 0; /* bytes of the status line and headers, once known */
    long content_length = -1;
    for (;;) {
        if (head > 0 && len >= head + (size_t)content_length) {
            break;
        }
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            fprintf(stderr, PROGRAM ": the gateway closed the connection\n");
            exit(1);
        }
        len += (size_t)n;
        buf[len] = '\0';
        char *head_end = head == 0 ? strstr(buf, "\r\n\r\n") : NULL;
        if (head_end != NULL) {
            head = (size_t)(head_end - buf) + 4;
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            content_length = cl != NULL && cl < head_end ? strtol(cl + 17, NULL, 10) : 0;
            const char *et = strcasestr(buf, "\r\netag:");
            if (etag != NULL && et != NULL && et < head_end) {
                et += 7;
                while (*et == ' ') {
                    et++;
                }
                size_t n_etag = strcspn(et, "\r");
                snprintf(etag, etag_size, "%.*s", (int)n_etag, et);
            }
        }
    }
    int status = atoi(buf + 9);
    *body_len = (size_t)content_length;
    *body = malloc(*body_len + 1);
    memcpy(*body, buf + head, *body_len);
    (*body)[*body_len] = '\0';
    free(buf);
    return status;
}

static int http(int fd, const char *method, const char *path, const char *auth, const char *body,
                const char *if_none_match, char **answer, size_t *answer_len, char *etag)
{
    char req[1024];
    int n = snprintf(
        req, sizeof(req),
        "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s%sContent-Length: %zu\r\n%s\r\n%s", method, path,
        opt.host, auth != NULL ? "Authorization: " : "", auth != NULL ? auth : "",
        auth != NULL ? "\r\n" : "", if_none_match != NULL ? "If-None-Match: " : "",
        if_none_match != NULL ? if_none_match : "", if_none_match != NULL ? "\r\n" : "",
        body != NULL ? strlen(body) : 0, body != NULL ? "Content-Type: application/json\r\n" : "",
        body != NULL ? body : "");
    send_all(fd, req, (size_t)n);
    return read_answer(fd, answer, answer_len, etag, 64);
}

static void seatmap_figures(void)
{
    char path[96], etag[64] = "";
    snprintf(path, sizeof(path), "/api/events/%" PRIu64 "/seatmap", opt.event_id);
    int fd = dial();
    for (int round = 0; round < 2; round++) {
        char *body;
        size_t len;
        int64_t t0 = now_ns();
        int status = http(fd, "GET", path, NULL, NULL, NULL, &body, &len, etag);
        double ms = (double)(now_ns() - t0) / 1e6;
        if (status != 200) {
            fprintf(stderr, PROGRAM ": %s answered %d: %.200s\n", path, status, body);
            exit(1);
        }
        const char *sc = strstr(body, "\"seat_count\":");
        printf("seatmap %s: %zu bytes (%lu seats) in %.1f ms\n", round == 0 ? "first" : "warm ",
               len, sc != NULL ? strtoul(sc + 13, NULL, 10) : 0ul, ms);
        printf("result seatmap_%s_bytes=%zu seatmap_%s_ms=%.1f\n", round == 0 ? "first" : "warm",
               len, round == 0 ? "first" : "warm", ms);
        free(body);
    }
    char *body;
    size_t len;
    int64_t t0 = now_ns();
    int status = http(fd, "GET", path, NULL, NULL, etag, &body, &len, NULL);
    printf("seatmap revalidated (If-None-Match %s): %d, %zu bytes in %.1f ms\n", etag, status, len,
           (double)(now_ns() - t0) / 1e6);
    free(body);
    close(fd);
}

/* ---- The probe: one seat held and released every probe_ms ------------------ */

static void *probe_main(void *arg)
{
    (void)arg;
    char auth[256], raw[200];
    snprintf(raw, sizeof(raw), "%s:%s", opt.email, opt.password);
    /* base64 by hand: the bench links no more than libuv. */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(raw), o = snprintf(auth, sizeof(auth), "Basic ");
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(uint8_t)raw[i] << 16 |
                     (i + 1 < n ? (uint32_t)(uint8_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < n ? (uint8_t)raw[i + 2] : 0);
        auth[o++] = b64[v >> 18 & 63];
        auth[o++] = b64[v >> 12 & 63];
        auth[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        auth[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    auth[o] = '\0';
    int fd = dial();
    char body[256], *answer;
    size_t len;
    snprintf(body, sizeof(body), "{\"event_id\": %" PRIu64 "}", opt.event_id);
    if (http(fd, "POST", "/api/bookings", auth, body, NULL, &answer, &len, NULL) != 201) {
        fprintf(stderr, PROGRAM ": the probe cannot make a booking: %.200s\n", answer);
        exit(1);
    }
    unsigned long long booking = strtoull(strstr(answer, "\"id\":") + 5, NULL, 10);
    free(answer);
    for (uint32_t k = 0; !atomic_load(&stopping); k = (k + 1) % PROBE_SEATS) {
        uint64_t seat = opt.probe_seat + k;
        snprintf(body, sizeof(body), "{\"booking_id\": %llu, \"seat_ids\": [%" PRIu64 "]}", booking,
                 seat);
        atomic_store(&probe_sent_ns[k], now_ns());
        int status = http(fd, "PATCH", "/api/seats/select", auth, body, NULL, &answer, &len, NULL);
        free(answer);
        if (status != 200) {
            atomic_store(&probe_sent_ns[k], 0);
        }
        usleep(opt.probe_ms * 1000u);
        (void)http(fd, "PATCH", "/api/seats/release", auth, body, NULL, &answer, &len, NULL);
        free(answer);
    }
    close(fd);
    return NULL;
}

/* ---- The streams ------------------------------------------------------------- */

/* Counts a seats message's changes and notes probe seats now held. */
static void seats_message(client *c, const char *data, int64_t at)
{
    const char *p = strstr(data, "\"changes\":[");
    if (p == NULL) {
        return;
    }
    p += 11;
    uint32_t probe_first = (uint32_t)(opt.probe_seat & 0xffffffffu);
    while (*p != ']' && *p != '\0') {
        char *end;
        unsigned long seat = strtoul(p, &end, 10);
        unsigned long state = strtoul(end + 1, &end, 10);
        changes++;
        if (seat >= probe_first && seat < probe_first + PROBE_SEATS && state == 1) {
            uint32_t k = (uint32_t)(seat - probe_first);
            int64_t sent = atomic_load(&probe_sent_ns[k]);
            if (sent != 0 && c->probe_seen[k] != sent) {
                c->probe_seen[k] = sent;
                int64_t ms = (at - sent) / 1000000;
                delays[ms < 0 ? 0 : ms >= (int64_t)DELAY_BUCKETS ? DELAY_BUCKETS - 1 : ms]++;
                delay_count++;
            }
        }
        p = *end == ',' ? end + 1 : end;
    }
}

/* Pairs in "changes":[...]: commas + 1, halved. */
static void changes_count(const char *data)
{
    const char *p = strstr(data, "\"changes\":[");
    if (p == NULL || p[11] == ']') {
        return;
    }
    uint64_t commas = 0;
    for (p += 11; *p != ']' && *p != '\0'; p++) {
        commas += *p == ',';
    }
    changes += (commas + 1) / 2;
}

static void stream_parse(client *c)
{
    c->buf[c->len] = '\0';
    char *start = c->buf;
    if (!c->headers_done) {
        char *h = strstr(start, "\r\n\r\n");
        if (h == NULL) {
            return;
        }
        c->headers_done = true;
        if (strncmp(start, "HTTP/1.1 200", 12) != 0 && strncmp(start, "HTTP/1.0 200", 12) != 0) {
            failed++;
        }
        start = h + 4;
    }
    int64_t at = now_ns();
    char *end;
    while ((end = strstr(start, "\n\n")) != NULL) {
        *end = '\0';
        messages++;
        if (strncmp(start, "event: seats\n", 13) == 0) {
            seats_messages++;
            if (c->sampled) {
                seats_message(c, start, at);
            } else {
                changes_count(start);
            }
        }
        start = end + 2;
    }
    c->len -= (size_t)(start - c->buf);
    memmove(c->buf, start, c->len);
    if (c->len == CLIENT_BUFFER) {
        c->len = 0; /* a message over the buffer: skipped */
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    client *c = h->data;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(CLIENT_BUFFER - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    client *c = s->data;
    if (n < 0) {
        if (!c->ended) {
            c->ended = true;
            ended++;
        }
        uv_read_stop(s);
        return;
    }
    c->len += (size_t)n;
    stream_parse(c);
}

static void connect_more(void);

static void on_connect(uv_connect_t *req, int status)
{
    client *c = req->handle->data;
    connecting--;
    if (status != 0) {
        failed++;
    } else {
        c->open = true;
        connected++;
        uv_buf_t b = uv_buf_init(request, (unsigned)strlen(request));
        uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, NULL);
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    connect_more();
}

static void connect_more(void)
{
    struct sockaddr_in a;
    uv_ip4_addr(opt.host, opt.port, &a);
    while (connecting < CONNECTING_MAX && next_to_connect < opt.clients) {
        client *c = &clients[next_to_connect];
        c->sampled = next_to_connect++ % SAMPLE_EVERY == 0;
        uv_tcp_init(loop, &c->tcp);
        c->tcp.data = c;
        connecting++;
        if (uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&a, on_connect) != 0) {
            connecting--;
            failed++;
        }
    }
}

static void on_done(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* ---- Main ---------------------------------------------------------------------- */

static void usage_exit(const char *why)
{
    fprintf(
        stderr,
        "%s%susage: " PROGRAM " --url http://127.0.0.1:PORT --email E --password P [--event ID]\n"
        "       [--clients N] [--seconds N] [--probe-ms N] [--probe-seat ID] [--gateway-pid PID]\n",
        why != NULL ? why : "", why != NULL ? "\n" : "");
    exit(64);
}

static void options_parse(int argc, char **argv)
{
    opt = (options){.event_id = 1,
                    .clients = 1000,
                    .seconds = 10,
                    .probe_ms = 100,
                    .probe_seat = (UINT64_C(1) << 32) + 99000};
    static const struct option longs[] = {{"url", required_argument, NULL, 'u'},
                                          {"event", required_argument, NULL, 'e'},
                                          {"clients", required_argument, NULL, 'c'},
                                          {"seconds", required_argument, NULL, 's'},
                                          {"probe-ms", required_argument, NULL, 'p'},
                                          {"probe-seat", required_argument, NULL, 'q'},
                                          {"email", required_argument, NULL, 'm'},
                                          {"password", required_argument, NULL, 'w'},
                                          {"gateway-pid", required_argument, NULL, 'g'},
                                          {"help", no_argument, NULL, 'h'},
                                          {0}};
    int o;
    while ((o = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (o) {
        case 'u':
            if (sscanf(optarg, "http://%63[^:]:%hu", opt.host, &opt.port) != 2) {
                usage_exit(PROGRAM ": --url is http://HOST:PORT");
            }
            break;
        case 'e':
            opt.event_id = strtoull(optarg, NULL, 10);
            break;
        case 'c':
            opt.clients = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 's':
            opt.seconds = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'p':
            opt.probe_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'q':
            opt.probe_seat = strtoull(optarg, NULL, 10);
            break;
        case 'm':
            opt.email = optarg;
            break;
        case 'w':
            opt.password = optarg;
            break;
        case 'g':
            opt.gateway_pid = strtol(optarg, NULL, 10);
            break;
        case 'h':
            usage_exit(NULL);
            break;
        default:
            usage_exit(NULL);
        }
    }
    if (opt.port == 0 || opt.email == NULL || opt.password == NULL || opt.clients == 0 ||
        opt.clients > CLIENTS_MAX || opt.seconds == 0 || opt.probe_ms == 0) {
        usage_exit(PROGRAM ": --url, --email and --password are required; --clients 1..100000");
    }
}

static double delay_percentile(double p)
{
    if (p >= 1.0) {
        for (uint32_t ms = DELAY_BUCKETS; ms-- > 0;) {
            if (delays[ms] > 0) {
                return ms;
            }
        }
        return 0;
    }
    uint64_t want = (uint64_t)(p * (double)delay_count), seen = 0;
    for (uint32_t ms = 0; ms < DELAY_BUCKETS; ms++) {
        seen += delays[ms];
        if (seen > want) {
            return ms;
        }
    }
    return DELAY_BUCKETS - 1;
}

int main(int argc, char **argv)
{
    options_parse(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0); /* figures as they come, through a pipe too */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max < opt.clients + 64u ? rl.rlim_max : opt.clients + 64u;
    setrlimit(RLIMIT_NOFILE, &rl);
    seatmap_figures();
    snprintf(request, sizeof(request),
             "GET /api/events/%" PRIu64 "/live?availability=summary HTTP/1.0\r\nHost: b\r\n\r\n",
             opt.event_id);
    clients = calloc(opt.clients, sizeof(*clients));
    loop = uv_default_loop();
    long rss0 = opt.gateway_pid > 0 ? rss_kb(opt.gateway_pid) : -1;
    int64_t t0 = now_ns();
    connect_more();
    while (connected + failed < opt.clients && now_ns() - t0 < INT64_C(120) * 1000000000) {
        uv_run(loop, UV_RUN_ONCE);
    }
    double connect_s = (double)(now_ns() - t0) / 1e9;
    uv_timer_t settle;
    uv_timer_init(loop, &settle);
    uv_timer_start(&settle, on_done, 2000, 0); /* every stream past its first message */
    uv_run(loop, UV_RUN_DEFAULT);
    long rss1 = opt.gateway_pid > 0 ? rss_kb(opt.gateway_pid) : -1;
    printf("clients: %u connected in %.1f s, %u failed\n", connected, connect_s, failed);
    if (rss0 > 0 && rss1 > 0 && connected > 0) {
        printf("gateway memory: %ld kB before, %ld kB with the clients: %.1f kB per client\n", rss0,
               rss1, (double)(rss1 - rss0) / connected);
        printf("result rss_per_client_kb=%.1f\n", (double)(rss1 - rss0) / connected);
    }
    messages = seats_messages = changes = 0;
    pthread_t probe;
    pthread_create(&probe, NULL, probe_main, NULL);
    int64_t m0 = now_ns();
    uv_timer_t done;
    uv_timer_init(loop, &done);
    uv_timer_start(&done, on_done, (uint64_t)opt.seconds * 1000, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    double secs = (double)(now_ns() - m0) / 1e9;
    atomic_store(&stopping, true);
    pthread_join(probe, NULL);
    printf("for %.1f s: %.0f messages/s, %.0f seats messages/s, %.0f seat changes delivered/s "
           "across %u clients; %u streams ended\n",
           secs, (double)messages / secs, (double)seats_messages / secs, (double)changes / secs,
           connected, ended);
    printf("hold to delivery (%" PRIu64 " arrivals): p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max "
           "%.0f ms\n",
           delay_count, delay_percentile(0.5), delay_percentile(0.9), delay_percentile(0.99),
           delay_percentile(1.0));
    printf("result clients=%u failed=%u ended=%u changes_per_s=%.0f delay_p50_ms=%.0f "
           "delay_p99_ms=%.0f delay_max_ms=%.0f arrivals=%" PRIu64 "\n",
           connected, failed, ended, (double)changes / secs, delay_percentile(0.5),
           delay_percentile(0.99), delay_percentile(1.0), delay_count);
    return failed > 0 ? 1 : 0;
}

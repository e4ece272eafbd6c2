/*
 * gateway_malformed_test.c — what a broken or hostile client sends to
 * tixgrid-gateway: each gets a clear 4xx (or its connection closed), and the
 * gateway goes on serving a normal request right after and at the end.
 *
 * Bodies go through libcurl; what libcurl would not send (a request line of
 * garbage, a half-sent request, several requests on one connection,
 * lengths that lie) goes over raw sockets.  HTTP/2 is spoken with prior
 * knowledge (h2c), one connection carrying many streams.
 *
 * The grid (gwh.h): PostgreSQL with the demo data, one unit serving the
 * demo concert, the drain, and a gateway with default limits (64 KiB
 * bodies, 16 KiB of headers, 10 s to receive a request).  The slow-request
 * test starts a second gateway with --request-timeout-ms 1000.
 *
 * Observed and kept as the contract here: unknown body fields are ignored
 * (even "role" at registration); a body without Content-Type is taken as
 * JSON; request lines h2o cannot parse get h2o's own "400 Bad Request"
 * (text/plain) and the connection closed; headers beyond h2o's ceiling
 * (about 400 KiB, above any --header-bytes-max) likewise get h2o's 400,
 * not 431.
 */
#include "gwh.h"

#include <criterion/criterion.h>
#include <curl/curl.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static void fini(void)
{
    gwh_fini_all();
}

TestSuite(gateway_malformed, .fini = fini, .timeout = 90);

/* A buyer with a booking, to prove after each bad request that the gateway
 * still serves: the booking reads back (a grid round trip). */
typedef struct {
    gwh_grid *g;
    gwh_gateway *gw;
    const char *auth;
    uint64_t booking;
} fixture;

static fixture setup(void)
{
    fixture f = {.g = gwh_start(NULL)};
    f.gw = f.g->gw;
    f.auth = gwh_login(f.gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    f.booking = gwh_booking_create(f.gw, f.auth, GWH_DEMO_EVENT);
    return f;
}

static void still_serving(const fixture *f, const char *after)
{
    gwh_resp *r = gwh_http(f->gw, "GET", f->auth, NULL, "/api/bookings/%" PRIu64, f->booking);
    cr_assert_eq(r->status, 200, "after %s the gateway answered %ld (%s) to a normal request",
                 after, r->status, r->error);
}

/* POST or PATCH path with the raw body; asserts 400 and the code, and
 * that the message names `field` when it is not NULL. */
static void bad_body(const fixture *f, const char *method, const char *path, const char *body,
                     size_t len, const char *code, const char *field)
{
    gwh_request_spec spec = {.method = method, .path = path, .auth = f->auth, .body = body,
                             .len = len};
    gwh_resp *r = gwh_send(f->gw, &spec);
    const char *message = gwh_expect_error(r, 400, code);
    if (field != NULL) {
        cr_assert(strstr(message, field) != NULL, "%s with %.80s: \"%s\" does not name %s", path,
                  body, message, field);
    }
    still_serving(f, body);
}

#define BAD_CREATE(f, body, code, field)                                                          \
    bad_body(f, "POST", "/api/bookings", body, sizeof(body) - 1, code, field)

Test(gateway_malformed, bodies_that_are_not_one_json_object_get_400_invalid_json)
{
    fixture f = setup();
    BAD_CREATE(&f, "{\"event_id\": 1", "invalid_json", NULL);
    BAD_CREATE(&f, "{\"event_id\": 1} trailing", "invalid_json", NULL);
    BAD_CREATE(&f, "{event_id: 1}", "invalid_json", NULL);
    BAD_CREATE(&f, "{'event_id': 1}", "invalid_json", NULL);
    BAD_CREATE(&f, "[1, 2]", "invalid_json", NULL);
    BAD_CREATE(&f, "\"event_id\"", "invalid_json", NULL);
    BAD_CREATE(&f, "42", "invalid_json", NULL);
    BAD_CREATE(&f, "null", "invalid_json", NULL);
    BAD_CREATE(&f, "true", "invalid_json", NULL);
    BAD_CREATE(&f, "   ", "invalid_json", NULL);
    /* No body at all. */
    gwh_expect_error(gwh_http(f.gw, "POST", f.auth, NULL, "/api/bookings"), 400, "invalid_json");
    still_serving(&f, "no body");
    /* Duplicate keys, whichever value they carry. */
    BAD_CREATE(&f, "{\"event_id\": 1, \"event_id\": 1}", "invalid_json", NULL);
    BAD_CREATE(&f, "{\"event_id\": 1, \"section\": \"Floor\", \"section\": \"Balcony\"}",
               "invalid_json", NULL);
    /* Strings that are not clean UTF-8. */
    BAD_CREATE(&f, "{\"event_id\": 1, \"section\": \"\xff\xfe\"}", "invalid_json", NULL);
    BAD_CREATE(&f, "{\"event_id\": 1, \"section\": \"\xc0\xaf\"}", "invalid_json", NULL);
    BAD_CREATE(&f, "{\"event_id\": 1, \"section\": \"\xed\xa0\x80\"}", "invalid_json", NULL);
    BAD_CREATE(&f, "{\"event_id\": 1, \"section\": \"\\ud800\"}", "invalid_json", NULL);
    BAD_CREATE(&f, "{\"event_id\": 1, \"section\": \"a\\u0000b\"}", "invalid_json", NULL);
    BAD_CREATE(&f, "{\"event_id\": 1, \"sec\xff\": 2}", "invalid_json", NULL);
    /* Integers no parser keeps. */
    BAD_CREATE(&f, "{\"event_id\": 99999999999999999999}", "invalid_json", NULL);
    BAD_CREATE(&f, "{\"event_id\": -99999999999999999999}", "invalid_json", NULL);
    /* Nesting far beyond any body's need (jansson stops at 2048 levels). */
    static char deep[20002];
    memset(deep, '[', 10000);
    memset(deep + 10000, ']', 10000);
    bad_body(&f, "POST", "/api/bookings", deep, 20000, "invalid_json", NULL);
    /* Login and register are JSON routes too, before any account check. */
    bad_body(&f, "POST", "/api/auth/login", "{\"email\": ", 10, "invalid_json", NULL);
    bad_body(&f, "POST", "/api/auth/register", "[]", 2, "invalid_json", NULL);
    gwh_stop_ok(f.g);
}

Test(gateway_malformed, fields_of_the_wrong_type_or_range_get_400_naming_the_field)
{
    fixture f = setup();
    BAD_CREATE(&f, "{}", "missing_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": \"1\"}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": 1.5}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": 1.0}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": 1e0}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": true}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": null}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": [1]}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": {\"id\": 1}}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": -1}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": 0}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": 9007199254740992}", "invalid_field", "event_id");
    BAD_CREATE(&f, "{\"event_id\": 1, \"section\": 7}", "invalid_field", "section");

    char body[256];
    const char *select = "/api/seats/select";
#define BAD_SELECT(fmt, code, field)                                                              \
    do {                                                                                          \
        int n_ = snprintf(body, sizeof(body), fmt, f.booking);                                    \
        bad_body(&f, "PATCH", select, body, (size_t)n_, code, field);                             \
    } while (0)
    bad_body(&f, "PATCH", select, "{\"booking_id\": \"1\", \"seat_id\": 4294967396}", 0,
             "invalid_field", "booking_id");
    bad_body(&f, "PATCH", select, "{\"booking_id\": -4294967297, \"seat_id\": 4294967396}", 0,
             "invalid_field", "booking_id");
    bad_body(&f, "PATCH", select, "{\"booking_id\": 4294967297.5, \"seat_id\": 4294967396}", 0,
             "invalid_field", "booking_id");
    bad_body(&f, "PATCH", select, "{\"booking_id\": false, \"seat_id\": 4294967396}", 0,
             "invalid_field", "booking_id");
    bad_body(&f, "PATCH", select, "{\"seat_id\": 4294967396}", 0, "missing_field", "booking_id");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"seat_id\": \"4294967396\"}", "invalid_field",
               "seat_id");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"seat_id\": 4294967396.0}", "invalid_field",
               "seat_id");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"seat_id\": -1}", "invalid_field", "seat_id");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"seat_ids\": 4294967396}", "invalid_field",
               "seat_ids");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"seat_ids\": []}", "invalid_field", "seat_ids");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"seat_ids\": [4294967396, 4294967396]}",
               "invalid_field", "seat_ids");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"seat_ids\": [4294967396, true]}", "invalid_field",
               "seat_ids");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"seat_id\": 4294967396, \"seat_ids\": [4294967397]}",
               "invalid_field", NULL);
    BAD_SELECT("{\"booking_id\": %" PRIu64 "}", "invalid_field", NULL);
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"quantity\": 0}", "invalid_field", "quantity");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"quantity\": \"2\"}", "invalid_field", "quantity");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"quantity\": 2, \"adjacent\": \"yes\"}",
               "invalid_field", "adjacent");
    BAD_SELECT("{\"booking_id\": %" PRIu64 ", \"quantity\": 2, \"section\": \"Nope\"}",
               "invalid_field", "section");
#undef BAD_SELECT
    bad_body(&f, "PATCH", "/api/bookings/cancel", "{\"booking_id\": 1e3}", 0, "invalid_field",
             "booking_id");
    bad_body(&f, "POST", "/api/auth/login", "{\"email\": 5, \"password\": \"x\"}", 0,
             "invalid_field", "email");
    /* None of it held a seat. */
    json_t *b = gwh_expect(gwh_http(f.gw, "GET", f.auth, NULL, "/api/bookings/%" PRIu64, f.booking),
                           200);
    cr_assert_eq(json_array_size(gwh_json_at(b, "seats")), 0);
    gwh_stop_ok(f.g);
}

Test(gateway_malformed, unknown_fields_are_ignored_even_a_role_at_registration)
{
    fixture f = setup();
    json_t *b = gwh_expect(gwh_http(f.gw, "POST", f.auth,
                                    "{\"event_id\": 1, \"zzz\": [1, {\"a\": null}], "
                                    "\"status\": \"paid\", \"user_id\": 99}",
                                    "/api/bookings"),
                           201);
    cr_assert_str_eq(gwh_str(b, "status"), "created");
    char email[96], body[256];
    snprintf(email, sizeof(email), "mallory-%s@example.test", gwh_unique());
    snprintf(body, sizeof(body),
             "{\"email\": \"%s\", \"password\": \"correct-horse-1\", \"role\": \"admin\", "
             "\"id\": 1}",
             email);
    json_t *user = gwh_expect(gwh_http(f.gw, "POST", NULL, body, "/api/auth/register"), 201);
    cr_assert_str_eq(gwh_str(user, "role"), "buyer");
    cr_assert_neq(gwh_int(user, "id"), 1);
    json_t *me = gwh_expect(gwh_http(f.gw, "GET", gwh_login(f.gw, email, "correct-horse-1"), NULL,
                                     "/api/me"),
                            200);
    cr_assert_str_eq(gwh_str(me, "role"), "buyer");
    /* Selecting with an extra user_id acts as the caller, not as that user. */
    snprintf(body, sizeof(body),
             "{\"booking_id\": %" PRIu64 ", \"seat_id\": 4294967396, \"user_id\": 2}", f.booking);
    gwh_expect(gwh_http(f.gw, "PATCH", f.auth, body, "/api/seats/select"), 200);
    still_serving(&f, "unknown fields");
    gwh_stop_ok(f.g);
}

Test(gateway_malformed, negative_and_overflowing_ids_in_the_path_get_400_invalid_id)
{
    fixture f = setup();
    static const char *const paths[] = {
        "/api/bookings/-1",
        "/api/bookings/99999999999999999999",
        "/api/bookings/18446744073709551616",
        "/api/bookings/9007199254740992",
        "/api/bookings/01",
        "/api/bookings/1.5",
        "/api/bookings/0x10",
        "/api/bookings/1e3",
        "/api/bookings/+1",
        "/api/bookings/%31",
        "/api/bookings/-1/payment-status",
        "/api/events/-1",
        "/api/events/99999999999999999999/availability",
        "/api/concerts/abc",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        gwh_expect_error(gwh_http(f.gw, "GET", f.auth, NULL, "%s", paths[i]), 400, "invalid_id");
        still_serving(&f, paths[i]);
    }
    /* The largest id is well-formed: it just names nothing. */
    gwh_expect_error(gwh_http(f.gw, "GET", f.auth, NULL, "/api/bookings/9007199254740991"), 404,
                     "not_found");
    gwh_expect_error(gwh_http(f.gw, "GET", NULL, NULL, "/api/events/9007199254740991"), 404,
                     "not_found");
    gwh_expect_error(gwh_http(f.gw, "GET", f.auth, NULL, "/api/bookings/0"), 404, "not_found");
    gwh_stop_ok(f.g);
}

/* ---- Raw HTTP ---------------------------------------------------------------- */

/* Sends request on a new connection and reads until the gateway closes it
 * (at most timeout_ms); returns what came back. */
static char *raw_exchange(const gwh_gateway *gw, const void *request, size_t len, int timeout_ms,
                          bool *closed)
{
    int fd = gwh_connect(gw);
    gwh_write(fd, request, len);
    size_t got;
    char *reply = gwh_read_all(fd, timeout_ms, &got, closed);
    close(fd);
    return reply;
}

static long status_of(const char *reply)
{
    return strncmp(reply, "HTTP/1.1 ", 9) == 0 ? strtol(reply + 9, NULL, 10) : 0;
}

static void raw_expect(const fixture *f, const char *request, size_t len, long status,
                       const char *what)
{
    bool closed;
    char *reply = raw_exchange(f->gw, request, len, 5000, &closed);
    cr_assert_eq(status_of(reply), status, "%s: got %.200s", what, reply);
    cr_assert(closed, "%s: the connection stays open after %ld", what, status);
    still_serving(f, what);
}

#define RAW(f, text, status) raw_expect(f, text, sizeof(text) - 1, status, #text)

Test(gateway_malformed, request_lines_and_headers_of_garbage_get_400_and_the_connection_closes)
{
    fixture f = setup();
    RAW(&f, "garbage garbage\r\n\r\n", 400);
    RAW(&f, "\x00\x01\x02\x03\r\n\r\n", 400);
    RAW(&f, "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400);
    RAW(&f, "GET /healthz\r\n\r\n", 400);
    RAW(&f, "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon in this header\r\n\r\n", 400);
    RAW(&f, "POST /api/bookings HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400);
    RAW(&f, "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        400);
    /* HTTP/1.0 is served, then closed. */
    RAW(&f, "GET /healthz HTTP/1.0\r\n\r\n", 200);
    gwh_stop_ok(f.g);
}

Test(gateway_malformed, huge_bodies_get_413_and_huge_headers_get_431_or_h2os_400)
{
    fixture f = setup();
    /* A body over 64 KiB announced by Content-Length: refused before it comes. */
    RAW(&f,
        "POST /api/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000000\r\n\r\n{\"event",
        413);
    /* ... or sent in chunks. */
    size_t cap = 80000, n = 0;
    char *chunked = malloc(cap);
    cr_assert(chunked != NULL);
    n += (size_t)snprintf(chunked, cap,
                          "POST /api/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
                          70000);
    memset(chunked + n, ' ', 70000);
    n += 70000;
    n += (size_t)snprintf(chunked + n, cap - n, "\r\n0\r\n\r\n");
    raw_expect(&f, chunked, n, 413, "a chunked body of 70000 bytes");
    free(chunked);
    /* Through curl: one byte over the limit, then the limit itself. */
    char *body = malloc(65537);
    cr_assert(body != NULL);
    memset(body, ' ', 65536);
    memcpy(body, "{\"event_id\": 1}", 15);
    body[65536] = '\0';
    gwh_resp *at = gwh_http(f.gw, "POST", f.auth, body, "/api/bookings");
    gwh_expect(at, 201);
    body[65536] = ' ';
    gwh_request_spec over = {.method = "POST", .path = "/api/bookings", .auth = f.auth,
                             .body = body, .len = 65537};
    cr_assert_eq(gwh_send(f.gw, &over)->status, 413);
    free(body);
    still_serving(&f, "a body over the limit");

    /* Headers: over --header-bytes-max (16 KiB) 431; far over, h2o's 400. */
    size_t big = 500000;
    char *request = malloc(big + 256);
    cr_assert(request != NULL);
    n = (size_t)snprintf(request, 256, "GET /api/me HTTP/1.1\r\nHost: x\r\nX-Padding: ");
    memset(request + n, 'a', 20000);
    n += 20000;
    n += (size_t)snprintf(request + n, 64, "\r\nConnection: close\r\n\r\n");
    raw_expect(&f, request, n, 431, "20 KB of headers");
    n = (size_t)snprintf(request, 256, "GET /api/me HTTP/1.1\r\nHost: x\r\nX-Padding: ");
    memset(request + n, 'a', big);
    n += big;
    n += (size_t)snprintf(request + n, 64, "\r\n\r\n");
    raw_expect(&f, request, n, 400, "500 KB of headers");
    /* Many small headers add up the same way. */
    n = (size_t)snprintf(request, 256, "GET /api/me HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 90; i++) {
        n += (size_t)snprintf(request + n, 512, "X-H%d: %0200d\r\n", i, i);
    }
    n += (size_t)snprintf(request + n, 64, "Connection: close\r\n\r\n");
    raw_expect(&f, request, n, 431, "90 headers of 200 bytes");
    free(request);
    gwh_stop_ok(f.g);
}

Test(gateway_malformed, a_slow_partial_request_is_closed_after_the_request_timeout_while_others_are_served)
{
    fixture f = setup();
    gwh_gateway *quick = gwh_gateway_start(
        f.g, (const char *const[]){"--request-timeout-ms", "1000", "--auth-rate", "0", NULL});
    /* Half the headers, then nothing; and half a body. */
    int slow = gwh_connect(quick);
    const char half[] = "GET /api/me HTTP/1.1\r\nHost: x\r\nAuthori";
    gwh_write(slow, half, sizeof(half) - 1);
    int slow_body = gwh_connect(quick);
    const char partial[] = "POST /api/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           "application/json\r\nContent-Length: 100\r\n\r\n{\"event_id\"";
    gwh_write(slow_body, partial, sizeof(partial) - 1);
    int64_t t0 = hx_now_ms();
    /* Meanwhile others are served, on other connections. */
    uint32_t served = 0;
    while (hx_now_ms() - t0 < 700) {
        gwh_expect(gwh_http(quick, "GET", f.auth, NULL, "/api/bookings/%" PRIu64, f.booking), 200);
        served++;
    }
    cr_assert(served >= 5, "only %u requests served beside the slow ones", served);
    size_t len;
    bool closed;
    char *got = gwh_read_all(slow, 5000, &len, &closed);
    int64_t after_ms = hx_now_ms() - t0;
    cr_assert(closed, "a half-sent request kept its connection for 5 s");
    cr_assert(after_ms >= 800 && after_ms <= 4000, "closed after %lld ms, not about 1000",
              (long long)after_ms);
    cr_assert(len == 0 || status_of(got) >= 400, "answered: %.100s", got);
    got = gwh_read_all(slow_body, 5000, &len, &closed);
    cr_assert(closed, "a half-sent body kept its connection for 5 s");
    cr_assert(len == 0 || status_of(got) >= 400, "answered: %.100s", got);
    close(slow);
    close(slow_body);
    gwh_expect(gwh_http(quick, "GET", f.auth, NULL, "/api/me"), 200);
    still_serving(&f, "slow requests");
    gwh_stop_ok(f.g);
}

/* The status and body of the next response in buf at *at (Content-Length
 * framed); advances *at. */
static long next_response(const char *buf, size_t len, size_t *at, const char **body,
                          size_t *body_len)
{
    const char *start = buf + *at;
    const char *end = *at < len ? strstr(start, "\r\n\r\n") : NULL;
    cr_assert(end != NULL, "no more responses at byte %zu of %zu", *at, len);
    const char *cl = strcasestr(start, "\r\ncontent-length:");
    cr_assert(cl != NULL && cl < end, "a response without Content-Length");
    size_t n = strtoul(cl + 17, NULL, 10);
    *body = end + 4;
    *body_len = n;
    *at = (size_t)(end + 4 - buf) + n;
    cr_assert(*at <= len, "a response cut short");
    return status_of(start);
}

Test(gateway_malformed, pipelined_requests_on_one_connection_are_answered_in_order)
{
    fixture f = setup();
    char request[4096];
    int n = snprintf(request, sizeof(request),
                     "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     "POST /api/bookings HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"event_id\": 1}"
                     "GET /api/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                     "PATCH /api/seats/select HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                     "Content-Length: 2\r\n\r\n[]"
                     "GET /api/bookings/%" PRIu64 " HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n"
                     "GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                     "Connection: close\r\n\r\n",
                     f.auth, f.auth, f.booking, f.auth, f.auth);
    cr_assert(n > 0 && (size_t)n < sizeof(request));
    bool closed;
    int fd = gwh_connect(f.gw);
    gwh_write(fd, request, (size_t)n);
    size_t len, at = 0, body_len;
    char *replies = gwh_read_all(fd, 10000, &len, &closed);
    close(fd);
    cr_assert(closed, "Connection: close was not honoured");
    static const long expected[] = {200, 201, 404, 400, 200, 200};
    static const char *const in_body[] = {"\"ok\"", "\"created\"", "not_found", "invalid_json",
                                          "\"seats\"", "buyer@demo.tixgrid"};
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const char *body;
        long status = next_response(replies, len, &at, &body, &body_len);
        cr_assert_eq(status, expected[i], "response %zu: %ld, not %ld", i + 1, status,
                     expected[i]);
        cr_assert(memmem(body, body_len, in_body[i], strlen(in_body[i])) != NULL,
                  "response %zu lacks %s: %.*s", i + 1, in_body[i], (int)body_len, body);
    }
    cr_assert_eq(at, len, "%zu bytes after the last response", len - at);
    still_serving(&f, "pipelining");
    gwh_stop_ok(f.g);
}

/* ---- HTTP/2 ---------------------------------------------------------------- */

/* Many concurrent streams on one h2c connection, spoken in raw frames:
 * libcurl 7.88.1 cannot multiplex on a prior-knowledge connection (see
 * gwh_send).  Requests are HEADERS frames (END_STREAM) whose HPACK block
 * uses only the static table and plain literals; a response's status is
 * read from its HEADERS block's first byte, which h2o encodes from the
 * static table (0x88 is ":status: 200"). */
enum { H2_DATA = 0, H2_HEADERS = 1, H2_SETTINGS = 4, H2_GOAWAY = 7, H2_WINDOW_UPDATE = 8 };
#define H2_STREAMS_MAX 64

static size_t h2_frame(uint8_t *out, uint8_t type, uint8_t flags, uint32_t stream,
                       const uint8_t *payload, size_t len)
{
    out[0] = (uint8_t)(len >> 16);
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    out[3] = type;
    out[4] = flags;
    out[5] = (uint8_t)(stream >> 24 & 0x7f);
    out[6] = (uint8_t)(stream >> 16);
    out[7] = (uint8_t)(stream >> 8);
    out[8] = (uint8_t)stream;
    if (len > 0) {
        memcpy(out + 9, payload, len);
    }
    return 9 + len;
}

/* HPACK: GET, http, and :path and :authority as literals (indexed names). */
static size_t h2_request_block(uint8_t *out, const char *path, const char *authority)
{
    size_t n = 0, len;
    out[n++] = 0x82; /* :method GET */
    out[n++] = 0x86; /* :scheme http */
    out[n++] = 0x04; /* :path, literal without indexing */
    len = strlen(path);
    cr_assert(len < 127);
    out[n++] = (uint8_t)len;
    memcpy(out + n, path, len);
    n += len;
    out[n++] = 0x01; /* :authority */
    len = strlen(authority);
    out[n++] = (uint8_t)len;
    memcpy(out + n, authority, len);
    return n + len;
}

/* Sends n GETs as streams 1, 3, 5... at once and asserts each is answered
 * 200 and ended, on that one connection. */
static void h2_streams(const gwh_gateway *gw, int n)
{
    static const char *const paths[] = {"/healthz", "/api/events/1", "/readyz"};
    cr_assert(n <= H2_STREAMS_MAX);
    static uint8_t out[65536];
    size_t at = 0;
    memcpy(out, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    at += 24;
    at += h2_frame(out + at, H2_SETTINGS, 0, 0, NULL, 0);
    const uint8_t grow[4] = {0x00, 0x10, 0x00, 0x00}; /* the connection's window + 1 MiB */
    at += h2_frame(out + at, H2_WINDOW_UPDATE, 0, 0, grow, 4);
    char authority[32];
    snprintf(authority, sizeof(authority), "127.0.0.1:%u", gw->port);
    for (int i = 0; i < n; i++) {
        uint8_t block[256];
        size_t len = h2_request_block(block, paths[i % 3], authority);
        at += h2_frame(out + at, H2_HEADERS, 0x05, (uint32_t)(2 * i + 1), block, len);
    }
    int fd = gwh_connect(gw);
    gwh_write(fd, out, at);
    int status[H2_STREAMS_MAX] = {0};
    bool ended[H2_STREAMS_MAX] = {false}, acked = false;
    int done = 0;
    size_t have = 0;
    static uint8_t in[1 << 20];
    int64_t deadline = hx_now_ms() + GWH_REQUEST_TIMEOUT_MS;
    while (done < n && hx_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        ssize_t got = recv(fd, in + have, sizeof(in) - have, 0);
        cr_assert(got > 0, "the h2c connection closed with %d of %d streams answered", done, n);
        have += (size_t)got;
        size_t used = 0;
        while (have - used >= 9) {
            const uint8_t *fr = in + used;
            size_t len = (size_t)fr[0] << 16 | (size_t)fr[1] << 8 | fr[2];
            if (have - used < 9 + len) {
                break;
            }
            uint32_t stream = ((uint32_t)fr[5] & 0x7f) << 24 | (uint32_t)fr[6] << 16 |
                              (uint32_t)fr[7] << 8 | fr[8];
            cr_assert_neq(fr[3], H2_GOAWAY, "the gateway sent GOAWAY");
            if (fr[3] == H2_SETTINGS && (fr[4] & 1) == 0 && !acked) {
                uint8_t ack[9];
                gwh_write(fd, ack, h2_frame(ack, H2_SETTINGS, 1, 0, NULL, 0));
                acked = true;
            }
            int idx = stream % 2 == 1 ? (int)(stream / 2) : -1;
            if ((fr[3] == H2_HEADERS || fr[3] == H2_DATA) && idx >= 0 && idx < n) {
                if (fr[3] == H2_HEADERS && status[idx] == 0) {
                    bool padded = (fr[4] & 0x8) != 0, priority = (fr[4] & 0x20) != 0;
                    size_t skip = (padded ? 1 : 0) + (priority ? 5 : 0);
                    status[idx] = len > skip && fr[9 + skip] == 0x88 ? 200 : -1;
                }
                if ((fr[4] & 1) != 0 && !ended[idx]) {
                    ended[idx] = true;
                    done++;
                }
            }
            used += 9 + len;
        }
        memmove(in, in + used, have - used);
        have -= used;
    }
    uint8_t bye[17];
    const uint8_t goaway[8] = {0};
    gwh_write(fd, bye, h2_frame(bye, H2_GOAWAY, 0, 0, goaway, 8));
    close(fd);
    cr_assert_eq(done, n, "%d of %d streams ended within %d ms", done, n, GWH_REQUEST_TIMEOUT_MS);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(status[i], 200, "stream %d (%s): not 200", 2 * i + 1, paths[i % 3]);
    }
}

Test(gateway_malformed, http2_with_prior_knowledge_serves_the_api_with_many_streams_on_one_connection)
{
    fixture f = setup();
    gwh_request_spec spec = {.path = "/healthz", .http2 = true};
    gwh_resp *r = gwh_send(f.gw, &spec);
    gwh_expect(r, 200);
    cr_assert_eq(r->version, CURL_HTTP_VERSION_2_0, "answered over HTTP version %ld", r->version);
    char body[128];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_id\": 4294967396}",
             f.booking);
    spec = (gwh_request_spec){.method = "PATCH", .path = "/api/seats/select", .auth = f.auth,
                              .body = body, .http2 = true};
    r = gwh_send(f.gw, &spec);
    json_t *sel = gwh_expect(r, 200);
    cr_assert_eq(r->version, CURL_HTTP_VERSION_2_0);
    cr_assert_str_eq(gwh_str(sel, "status"), "SELECTED");
    spec = (gwh_request_spec){.method = "POST", .path = "/api/bookings", .auth = f.auth,
                              .body = "{\"event_id\": \"1\"}", .http2 = true};
    gwh_expect_error(gwh_send(f.gw, &spec), 400, "invalid_field");
    spec = (gwh_request_spec){.path = "/api/me", .http2 = true};
    r = gwh_send(f.gw, &spec);
    gwh_expect_error(r, 401, "unauthenticated");
    cr_assert(gwh_header(r, "www-authenticate") != NULL);
    spec = (gwh_request_spec){.method = "DELETE", .path = "/api/me", .http2 = true};
    r = gwh_send(f.gw, &spec);
    gwh_expect_error(r, 405, "method_not_allowed");
    cr_assert(gwh_header(r, "allow") != NULL);

    /* 31 streams at once on one connection: raw frames (see h2_streams). */
    h2_streams(f.gw, 31);
    still_serving(&f, "HTTP/2");
    gwh_stop_ok(f.g);
}

/*
 * gateway_api_test.c — every route of tixgrid-gateway, black-box over HTTP:
 * its success and each error status it must give (API.md, "Conventions";
 * gateway/http.c for the order of the checks), with the exact error code.
 *
 * Each test brings up its own grid (gwh.h): PostgreSQL with the demo data,
 * two units — the demo concert (event 1, partition 1, 100,000 seats) on the
 * first, the acoustic evening (event 3, partition 3, 1,130 seats) on the
 * second — the drain, and a gateway with --allow-reset and no login rate
 * limit.  Tests that need other limits start a second, strict gateway on
 * the same grid (STRICT_FLAGS).  Every test ends by stopping everything
 * and asserting each process exits 0 (under AddressSanitizer, the
 * gateway's leak check runs there).
 *
 * No route needs a role yet (the organizer routes of API.md are not in the
 * route table), so there is no 403 to provoke: the organizer and admin
 * accounts are only checked to log in with their roles.
 */
#include "gwh.h"

#include <criterion/criterion.h>
#include <sodium.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fini(void)
{
    gwh_fini_all();
}

TestSuite(gateway_api, .fini = fini, .timeout = 90);

/* A second gateway on the same grid: small limits, login rate 1/s with a
 * burst of 3, a 1 s request timeout, no --allow-reset. */
#define STRICT_BODY_BYTES_MAX 1024
#define STRICT_HEADER_BYTES_MAX 2048
static const char *const strict_flags[] = {
    "--auth-rate",        "1",    "--auth-burst",       "3",    "--body-bytes-max", "1024",
    "--header-bytes-max", "2048", "--request-timeout-ms", "1000", NULL};

/* Event 1 on unit 0, event 3 on unit 1. */
static gwh_grid *grid_two_events(void)
{
    gwh_options o = {.units = 2,
                     .partition_count = 2,
                     .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION},
                     .unit_of = {0, 1}};
    return gwh_start(&o);
}

/* An id of the demo concert's seat s. */
#define SEAT(s) GWH_SEAT_ID(GWH_DEMO_PARTITION, s)

/* PATCH /api/seats/select of seats (API ids) into booking; asserts 200. */
static json_t *select_ok(gwh_gateway *gw, const char *auth, uint64_t booking, const uint64_t *seats,
                         uint32_t n)
{
    char body[1024];
    int at = snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_ids\": [", booking);
    for (uint32_t i = 0; i < n; i++) {
        at += snprintf(body + at, sizeof(body) - (size_t)at, "%s%" PRIu64, i > 0 ? ", " : "",
                       seats[i]);
    }
    snprintf(body + at, sizeof(body) - (size_t)at, "]}");
    json_t *j = gwh_expect(gwh_http(gw, "PATCH", auth, body, "/api/seats/select"), 200);
    cr_assert_str_eq(gwh_str(j, "status"), "SELECTED");
    cr_assert_eq(json_array_size(gwh_json_at(j, "seats")), n);
    return j;
}

/* The error message names the field. */
static void names(const char *message, const char *field)
{
    cr_assert(strstr(message, field) != NULL, "the message \"%s\" does not name %s", message,
              field);
}

/* ---- Accounts ------------------------------------------------------------ */

Test(gateway_api, a_new_account_registers_logs_in_and_its_token_or_password_opens_api_me)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    char email[128], body[512];
    snprintf(email, sizeof(email), "ada-%s@example.test", gwh_unique());
    snprintf(body, sizeof(body),
             "{\"email\": \"%s\", \"password\": \"correct-horse-1\", \"name\": \"Ada L\", "
             "\"phone\": \"+49 30 1234\"}",
             email);
    json_t *user = gwh_expect(gwh_http(gw, "POST", NULL, body, "/api/auth/register"), 201);
    cr_assert_str_eq(gwh_str(user, "email"), email);
    cr_assert_str_eq(gwh_str(user, "name"), "Ada L");
    cr_assert_str_eq(gwh_str(user, "phone"), "+49 30 1234");
    cr_assert_str_eq(gwh_str(user, "role"), "buyer");
    int64_t id = gwh_int(user, "id");
    cr_assert(id > 0);

    /* The same address again, in any case: 409. */
    gwh_expect_error(gwh_http(gw, "POST", NULL, body, "/api/auth/register"), 409, "email_taken");
    char upper[512];
    snprintf(upper, sizeof(upper), "{\"email\": \"ADA-%s@EXAMPLE.TEST\", \"password\": "
                                   "\"another-pass-1\"}",
             gwh_unique());
    gwh_expect(gwh_http(gw, "POST", NULL, upper, "/api/auth/register"), 201);
    gwh_expect_error(gwh_http(gw, "POST", NULL, upper, "/api/auth/register"), 409, "email_taken");

    /* Each bad field is named. */
    names(gwh_expect_error(gwh_http(gw, "POST", NULL, "{\"password\": \"correct-horse-1\"}",
                                    "/api/auth/register"),
                           400, "missing_field"),
          "email");
    names(gwh_expect_error(gwh_http(gw, "POST", NULL, "{\"email\": \"x@y.z\"}",
                                    "/api/auth/register"),
                           400, "missing_field"),
          "password");
    names(gwh_expect_error(gwh_http(gw, "POST", NULL,
                                    "{\"email\": \"no-at-sign\", \"password\": \"correct-horse-1\"}",
                                    "/api/auth/register"),
                           400, "invalid_field"),
          "email");
    names(gwh_expect_error(gwh_http(gw, "POST", NULL,
                                    "{\"email\": \"short@pw.test\", \"password\": \"short\"}",
                                    "/api/auth/register"),
                           400, "invalid_field"),
          "password");
    names(gwh_expect_error(gwh_http(gw, "POST", NULL,
                                    "{\"email\": \"n@pw.test\", \"password\": 12345678}",
                                    "/api/auth/register"),
                           400, "invalid_field"),
          "password");
    names(gwh_expect_error(gwh_http(gw, "POST", NULL,
                                    "{\"email\": \"n@pw.test\", \"password\": \"correct-horse-1\", "
                                    "\"name\": \"\"}",
                                    "/api/auth/register"),
                           400, "invalid_field"),
          "name");

    /* Login: a token; the wrong password or an unknown address: the same 401. */
    snprintf(body, sizeof(body), "{\"email\": \"%s\", \"password\": \"correct-horse-1\"}", email);
    json_t *login = gwh_expect(gwh_http(gw, "POST", NULL, body, "/api/auth/login"), 200);
    cr_assert_str_eq(gwh_str(login, "token_type"), "Bearer");
    cr_assert_eq(gwh_int(login, "expires_in"), 3600);
    cr_assert_eq(gwh_int(login, "user.id"), id);
    cr_assert(strlen(gwh_str(login, "expires_at")) == 20, "expires_at: RFC 3339 UTC");
    char bearer[1200];
    snprintf(bearer, sizeof(bearer), "Bearer %s", gwh_str(login, "token"));
    snprintf(body, sizeof(body), "{\"email\": \"%s\", \"password\": \"wrong-horse-1\"}", email);
    gwh_resp *wrong = gwh_http(gw, "POST", NULL, body, "/api/auth/login");
    gwh_expect_error(wrong, 401, "invalid_credentials");
    cr_assert(gwh_header(wrong, "www-authenticate") != NULL);
    gwh_expect_error(gwh_http(gw, "POST", NULL,
                              "{\"email\": \"nobody@example.test\", \"password\": \"wrong-horse-1\"}",
                              "/api/auth/login"),
                     401, "invalid_credentials");
    names(gwh_expect_error(gwh_http(gw, "POST", NULL, "{\"email\": \"x@y.z\"}", "/api/auth/login"),
                           400, "missing_field"),
          "password");

    /* GET /api/me: with the token, with Basic, and the demo roles. */
    json_t *me = gwh_expect(gwh_http(gw, "GET", bearer, NULL, "/api/me"), 200);
    cr_assert_eq(gwh_int(me, "id"), id);
    cr_assert_str_eq(gwh_str(me, "email"), email);
    cr_assert_str_eq(gwh_str(me, "role"), "buyer");
    me = gwh_expect(gwh_http(gw, "GET", gwh_basic(email, "correct-horse-1"), NULL, "/api/me"), 200);
    cr_assert_eq(gwh_int(me, "id"), id);
    me = gwh_expect(gwh_http(gw, "GET", gwh_login(gw, "organizer@demo.tixgrid", "demo-organizer-1"),
                             NULL, "/api/me"),
                    200);
    cr_assert_str_eq(gwh_str(me, "role"), "organizer");
    me = gwh_expect(gwh_http(gw, "GET", gwh_basic("admin@demo.tixgrid", "demo-admin-1"), NULL,
                             "/api/me"),
                    200);
    cr_assert_str_eq(gwh_str(me, "role"), "admin");
    gwh_stop_ok(g);
}

/* A token signed with key (32 bytes) for these claims. */
static const char *token_make(const uint8_t *key, const char *header_json, const char *claims)
{
    static char token[1024];
    char head[256], body[512];
    sodium_bin2base64(head, sizeof(head), (const unsigned char *)header_json, strlen(header_json),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_bin2base64(body, sizeof(body), (const unsigned char *)claims, strlen(claims),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int n = snprintf(token, sizeof(token), "Bearer %s.%s", head, body);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    const char *signed_part = token + strlen("Bearer ");
    crypto_auth_hmacsha256(mac, (const unsigned char *)signed_part, strlen(signed_part), key);
    token[n++] = '.';
    sodium_bin2base64(token + n, sizeof(token) - (size_t)n, mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return token;
}

/* The key the gateway generated into its data folder (gateway/auth.h). */
static void gateway_key(const gwh_gateway *gw, uint8_t key[32])
{
    char path[160], hex[80] = "";
    snprintf(path, sizeof(path), "%s/jwt.secret", gw->data_dir);
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL, "no %s", path);
    cr_assert(fgets(hex, sizeof(hex), f) != NULL);
    fclose(f);
    size_t len = 0;
    cr_assert_eq(sodium_hex2bin(key, 32, hex, 64, NULL, &len, NULL), 0);
    cr_assert_eq(len, 32);
}

static void expect_401(gwh_gateway *gw, const char *auth, const char *code)
{
    gwh_resp *r = gwh_http(gw, "GET", auth, NULL, "/api/me");
    gwh_expect_error(r, 401, code);
    const char *challenge = gwh_header(r, "www-authenticate");
    cr_assert(challenge != NULL, "401 without WWW-Authenticate for %s", auth ? auth : "nothing");
    cr_assert(strstr(challenge, "Bearer") != NULL && strstr(challenge, "Basic") != NULL,
              "WWW-Authenticate: %s", challenge);
}

Test(gateway_api, missing_malformed_wrong_expired_and_forged_credentials_get_401_with_a_challenge)
{
    cr_assert(sodium_init() >= 0);
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    expect_401(gw, NULL, "unauthenticated");
    expect_401(gw, gwh_basic(GWH_BUYER, "not-her-password"), "invalid_credentials");
    expect_401(gw, gwh_basic("nobody@demo.tixgrid", "whatever-1"), "invalid_credentials");
    expect_401(gw, "Basic !!!", "invalid_credentials");
    expect_401(gw, "Basic bm9jb2xvbg==", "invalid_credentials"); /* "nocolon" */
    expect_401(gw, "Digest abc", "invalid_credentials");
    expect_401(gw, "Bearer", "invalid_credentials");
    expect_401(gw, "Bearer not.a.token", "invalid_token");
    /* Other routes ask the same way. */
    gwh_expect_error(gwh_http(gw, "POST", NULL, "{\"event_id\": 1}", "/api/bookings"), 401,
                     "unauthenticated");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/seats?event_id=1"), 401,
                     "unauthenticated");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/bookings"), 401, "unauthenticated");

    /* Tokens made here: with the gateway's own key the claims decide. */
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    int64_t buyer_id = gwh_int(gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/me"), 200), "id");
    uint8_t key[32], other[32];
    gateway_key(gw, key);
    randombytes_buf(other, sizeof(other));
    const char *hs256 = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    int64_t now = (int64_t)time(NULL);
    char claims[256];
    snprintf(claims, sizeof(claims), "{\"sub\":\"%" PRId64 "\",\"role\":\"buyer\",\"iat\":%" PRId64
                                     ",\"exp\":%" PRId64 "}",
             buyer_id, now - 60, now + 600);
    json_t *me = gwh_expect(gwh_http(gw, "GET", token_make(key, hs256, claims), NULL, "/api/me"),
                            200);
    cr_assert_eq(gwh_int(me, "id"), buyer_id, "a token signed here with the gateway's key works");
    expect_401(gw, token_make(other, hs256, claims), "invalid_token");
    expect_401(gw, token_make(key, "{\"alg\":\"none\"}", claims), "invalid_token");
    snprintf(claims, sizeof(claims), "{\"sub\":\"%" PRId64 "\",\"role\":\"buyer\",\"iat\":%" PRId64
                                     ",\"exp\":%" PRId64 "}",
             buyer_id, now - 7200, now - 3600);
    expect_401(gw, token_make(key, hs256, claims), "token_expired");

    /* A real token whose claims were changed keeps a MAC that no longer fits. */
    char tampered[1200];
    snprintf(tampered, sizeof(tampered), "%s", buyer);
    char *dot1 = strchr(tampered, '.'), *dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
    cr_assert(dot2 != NULL);
    char forged_claims[512];
    snprintf(claims, sizeof(claims), "{\"sub\":\"%" PRId64 "\",\"role\":\"admin\",\"iat\":%" PRId64
                                     ",\"exp\":%" PRId64 "}",
             buyer_id, now, now + 3600);
    sodium_bin2base64(forged_claims, sizeof(forged_claims), (const unsigned char *)claims,
                      strlen(claims), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char token[1400];
    snprintf(token, sizeof(token), "%.*s.%s%s", (int)(dot1 - tampered), tampered, forged_claims,
             dot2);
    expect_401(gw, token, "invalid_token");
    gwh_stop_ok(g);
}

Test(gateway_api, login_attempts_over_the_auth_rate_get_429_with_retry_after)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *strict = gwh_gateway_start(g, strict_flags);
    const char *wrong = "{\"email\": \"buyer@demo.tixgrid\", \"password\": \"not-her-password\"}";
    const char *right = "{\"email\": \"buyer@demo.tixgrid\", \"password\": \"demo-buyer-1\"}";
    /* The burst of 3 (any attempt counts, even one refused for its body:
     * these take no password hash, so the bucket has no time to refill),
     * then 429 for logins, registrations and Basic misses. */
    for (int i = 0; i < 3; i++) {
        gwh_expect_error(gwh_http(strict, "POST", NULL, "{\"email\": \"buyer@demo.tixgrid\"}",
                                  "/api/auth/login"),
                         400, "missing_field");
    }
    gwh_resp *limited = gwh_http(strict, "POST", NULL, right, "/api/auth/login");
    gwh_expect_error(limited, 429, "rate_limited");
    const char *retry = gwh_header(limited, "retry-after");
    cr_assert(retry != NULL, "429 without Retry-After");
    long retry_s = strtol(retry, NULL, 10);
    cr_assert(retry_s >= 1 && retry_s <= 5, "Retry-After: %s", retry);
    gwh_expect_error(gwh_http(strict, "POST", NULL,
                              "{\"email\": \"late@example.test\", \"password\": \"correct-horse-1\"}",
                              "/api/auth/register"),
                     429, "rate_limited");
    gwh_resp *basic = gwh_http(strict, "GET", gwh_basic(GWH_BUYER, "not-her-password"), NULL,
                               "/api/me");
    gwh_expect_error(basic, 429, "rate_limited");
    cr_assert(gwh_header(basic, "retry-after") != NULL);
    /* After Retry-After, the right password gets in. */
    hx_sleep_ms((int)retry_s * 1000 + 100);
    gwh_expect(gwh_http(strict, "POST", NULL, right, "/api/auth/login"), 200);
    /* The first gateway (--auth-rate 0) limits nothing. */
    for (int i = 0; i < 12; i++) {
        gwh_expect_error(gwh_http(g->gw, "POST", NULL, wrong, "/api/auth/login"), 401,
                         "invalid_credentials");
    }
    gwh_stop_ok(g);
}

/* ---- Events ---------------------------------------------------------------- */

static void expect_ids(json_t *page, const int64_t *ids, size_t n)
{
    json_t *items = gwh_json_at(page, "items");
    cr_assert_eq(json_array_size(items), n, "%zu items, not %zu", json_array_size(items), n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(gwh_int(json_array_get(items, i), "id"), ids[i]);
    }
}

Test(gateway_api, events_are_listed_searched_and_read_and_availability_counts_the_grid)
{
    gwh_grid *g = grid_two_events();
    gwh_gateway *gw = g->gw;
    /* On sale now: event 3 (in 20 days), then event 1 (in 60 days). */
    json_t *list = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events"), 200);
    cr_assert_eq(gwh_int(list, "total"), 2);
    cr_assert_eq(gwh_int(list, "page"), 1);
    cr_assert_eq(gwh_int(list, "pageSize"), 20);
    expect_ids(list, (int64_t[]){3, 1}, 2);
    cr_assert_eq(gwh_int(list, "items.1.price_min"), 4900);
    cr_assert_eq(gwh_int(list, "items.1.price_max"), 24900);
    cr_assert_str_eq(gwh_str(list, "items.1.status"), "on_sale");
    json_t *second = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events?page=2&pageSize=1"),
                                200);
    cr_assert_eq(gwh_int(second, "total"), 2);
    expect_ids(second, (int64_t[]){1}, 1);
    expect_ids(gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events?page=3&pageSize=1"), 200),
               NULL, 0);
    expect_ids(gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/concerts"), 200),
               (int64_t[]){3, 1}, 2);
    cr_assert_eq(gwh_int(gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events?type=concert"),
                                    200),
                         "total"),
                 2);
    cr_assert_eq(gwh_int(gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events?type=opera"),
                                    200),
                         "total"),
                 0);
    names(gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events?type=Bad!"), 400,
                           "invalid_parameter"),
          "type");
    names(gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events?date_from=yesterday"), 400,
                           "invalid_parameter"),
          "date_from");
    names(gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events?pageSize=101"), 400,
                           "invalid_parameter"),
          "pageSize");
    names(gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events?page=0"), 400,
                           "invalid_parameter"),
          "page");

    /* Search: title, artist, venue; past and draft events are not found. */
    expect_ids(gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events/search?q=acoustic"), 200),
               (int64_t[]){3}, 1);
    cr_assert_eq(gwh_int(gwh_expect(gwh_http(gw, "GET", NULL, NULL,
                                             "/api/events/search?q=Aurora+Lindqvist"),
                                    200),
                         "total"),
                 2);
    expect_ids(gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events/search?q=Olympiastadion"),
                          200),
               (int64_t[]){1}, 1);
    cr_assert_eq(gwh_int(gwh_expect(gwh_http(gw, "GET", NULL, NULL,
                                             "/api/events/search?q=Atomic+Swaps"),
                                    200),
                         "total"),
                 0);
    names(gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/search"), 400,
                           "invalid_parameter"),
          "q");

    /* One event, with its sections, prices and partitions. */
    json_t *e = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events/1"), 200);
    cr_assert_eq(gwh_int(e, "id"), 1);
    cr_assert_eq(gwh_int(e, "seat_count"), GWH_DEMO_SEATS);
    cr_assert_eq(json_array_size(gwh_json_at(e, "sections")), 5);
    cr_assert_str_eq(gwh_str(e, "sections.0.name"), "Golden Circle");
    cr_assert_eq(gwh_int(e, "sections.0.price"), 24900);
    cr_assert_eq(gwh_int(e, "sections.1.seat_count"), 12000);
    cr_assert_str_eq(gwh_str(e, "sections.4.name"), "Balcony");
    cr_assert_eq(gwh_int(e, "partitions.0.partition_id"), GWH_DEMO_PARTITION);
    cr_assert_eq(gwh_int(e, "partitions.0.seat_count"), GWH_DEMO_SEATS);
    cr_assert_eq(gwh_int(gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/concerts/3"), 200),
                         "seat_count"),
                 GWH_HALL_SEATS);
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/4"), 404, "not_found"); /* draft */
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/777"), 404, "not_found");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/0"), 404, "not_found");

    /* Availability comes from the grid and moves with it. */
    json_t *a = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events/1/availability"), 200);
    cr_assert_eq(gwh_int(a, "seat_count"), GWH_DEMO_SEATS);
    cr_assert_eq(gwh_int(a, "totals.FREE"), GWH_DEMO_SEATS);
    cr_assert_eq(gwh_int(a, "totals.SELECTED"), 0);
    cr_assert_eq(json_array_size(gwh_json_at(a, "sections")), 5);
    cr_assert_eq(gwh_int(a, "sections.0.counts.FREE"), 3000);
    cr_assert_eq(json_array_size(gwh_json_at(a, "rows")), 60 + 200 + 700 + 800 + 850);
    int64_t version = gwh_int(a, "version");
    json_t *hall = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events/3/availability"), 200);
    cr_assert_eq(gwh_int(hall, "totals.FREE"), GWH_HALL_SEATS);
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t booking = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    select_ok(gw, buyer, booking, (uint64_t[]){SEAT(10), SEAT(3000)}, 2);
    a = gwh_availability_settled(g, GWH_DEMO_EVENT, GWH_DEMO_PARTITION);
    cr_assert(gwh_int(a, "version") > version, "version did not rise");
    cr_assert_eq(gwh_int(a, "totals.SELECTED"), 2);
    cr_assert_eq(gwh_int(a, "totals.FREE"), GWH_DEMO_SEATS - 2);
    cr_assert_eq(gwh_int(a, "sections.0.counts.SELECTED"), 1);
    cr_assert_eq(gwh_int(a, "sections.1.counts.SELECTED"), 1);
    cr_assert_eq(gwh_int(a, "rows.0.counts.SELECTED"), 1);
    /* Events with nothing on sale in the grid. */
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/2/availability"), 404,
                     "not_found");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/4/availability"), 404,
                     "not_found");
    gwh_stop_ok(g);
}

/* ---- Seats ------------------------------------------------------------------- */

/* The seat numbers of a page of GET /api/seats. */
static uint32_t page_seat_nos(json_t *page, int64_t *out, uint32_t max)
{
    json_t *items = gwh_json_at(page, "items");
    uint32_t n = (uint32_t)json_array_size(items);
    cr_assert(n <= max);
    for (uint32_t i = 0; i < n; i++) {
        json_t *seat = json_array_get(items, i);
        out[i] = gwh_int(seat, "seat_no");
        cr_assert_eq((uint64_t)gwh_int(seat, "id"), SEAT(out[i]), "id of seat_no %" PRId64,
                     out[i]);
    }
    return n;
}

static json_t *seats_page(gwh_gateway *gw, const char *auth, const char *query)
{
    return gwh_expect(gwh_http(gw, "GET", auth, NULL, "/api/seats?event_id=1%s", query), 200);
}

/* Asserts the page holds seat numbers first, first + 1, ... (count of them). */
static void expect_run(json_t *page, int64_t first, uint32_t count)
{
    int64_t nos[20];
    uint32_t n = page_seat_nos(page, nos, 20);
    cr_assert_eq(n, count, "%u seats, not %u", n, count);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(nos[i], first + i, "item %u is seat %" PRId64 ", not %" PRId64, i, nos[i],
                     first + i);
    }
}

Test(gateway_api, seats_are_listed_in_pages_with_status_section_and_row_filters)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    json_t *p1 = seats_page(gw, buyer, "");
    cr_assert_eq(gwh_int(p1, "total"), GWH_DEMO_SEATS);
    cr_assert_eq(gwh_int(p1, "page"), 1);
    cr_assert_eq(gwh_int(p1, "pageSize"), 20);
    expect_run(p1, 0, 20);
    cr_assert_str_eq(gwh_str(p1, "items.0.section"), "Golden Circle");
    cr_assert_str_eq(gwh_str(p1, "items.0.row"), "1");
    cr_assert_eq(gwh_int(p1, "items.0.number"), 1);
    cr_assert_eq(gwh_int(p1, "items.0.price"), 24900);
    cr_assert_str_eq(gwh_str(p1, "items.0.status"), "FREE");
    /* Page N+1 continues page N, across rows and sections. */
    expect_run(seats_page(gw, buyer, "&page=2"), 20, 20);
    expect_run(seats_page(gw, buyer, "&page=8&pageSize=7"), 49, 7); /* rows 1 and 2 */
    expect_run(seats_page(gw, buyer, "&page=150&pageSize=20"), 2980, 20);
    expect_run(seats_page(gw, buyer, "&page=151&pageSize=20"), 3000, 20); /* the Floor */
    expect_run(seats_page(gw, buyer, "&page=5000"), 99980, 20);
    json_t *past = seats_page(gw, buyer, "&page=5001");
    cr_assert_eq(gwh_int(past, "total"), GWH_DEMO_SEATS);
    expect_run(past, 0, 0);

    /* Section and row filters. */
    json_t *floor = seats_page(gw, buyer, "&section=Floor&pageSize=3");
    cr_assert_eq(gwh_int(floor, "total"), 12000);
    expect_run(floor, 3000, 3);
    expect_run(seats_page(gw, buyer, "&section=Floor&page=600"), 14980, 20);
    json_t *gold = seats_page(gw, buyer, "&section=Golden+Circle&row=3&pageSize=2");
    cr_assert_eq(gwh_int(gold, "total"), 50);
    expect_run(gold, 100, 2);
    cr_assert_eq(gwh_int(seats_page(gw, buyer, "&section=Golden%20Circle"), "total"), 3000);
    json_t *row1 = seats_page(gw, buyer, "&row=1");
    cr_assert_eq(gwh_int(row1, "total"), 50 + 60 + 40 + 50 + 20, "row 1 of every section");
    expect_run(row1, 0, 20);
    /* Page 3 of row 1: the Golden Circle's last 10, then the Floor's first 10. */
    int64_t across[20];
    cr_assert_eq(page_seat_nos(seats_page(gw, buyer, "&row=1&page=3"), across, 20), 20);
    for (int64_t i = 0; i < 20; i++) {
        cr_assert_eq(across[i], i < 10 ? 40 + i : 3000 + i - 10, "row 1, page 3, item %" PRId64, i);
    }
    json_t *floor_row2 = seats_page(gw, buyer, "&row=2&section=Floor&page=2");
    cr_assert_eq(gwh_int(floor_row2, "total"), 60);
    expect_run(floor_row2, 3080, 20);
    cr_assert_eq(gwh_int(seats_page(gw, buyer, "&section=Nope"), "total"), 0);

    /* Status filters over held seats in several rows and sections. */
    uint64_t booking = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    select_ok(gw, buyer, booking, (uint64_t[]){SEAT(5), SEAT(70), SEAT(3001)}, 3);
    json_t *held = seats_page(gw, buyer, "&status=SELECTED");
    cr_assert_eq(gwh_int(held, "total"), 3);
    int64_t nos[20];
    cr_assert_eq(page_seat_nos(held, nos, 20), 3);
    cr_assert(nos[0] == 5 && nos[1] == 70 && nos[2] == 3001);
    cr_assert_str_eq(gwh_str(held, "items.0.status"), "SELECTED");
    json_t *held2 = seats_page(gw, buyer, "&status=SELECTED&pageSize=2&page=2");
    cr_assert_eq(page_seat_nos(held2, nos, 20), 1);
    cr_assert_eq(nos[0], 3001);
    json_t *held_floor = seats_page(gw, buyer, "&status=SELECTED&section=Floor");
    cr_assert_eq(gwh_int(held_floor, "total"), 1);
    json_t *free_seats = seats_page(gw, buyer, "&status=FREE");
    cr_assert_eq(gwh_int(free_seats, "total"), GWH_DEMO_SEATS - 3);
    cr_assert_eq(page_seat_nos(free_seats, nos, 20), 20);
    for (int64_t i = 0; i < 20; i++) {
        cr_assert_eq(nos[i], i < 5 ? i : i + 1, "FREE page skips the held seat 5");
    }
    /* Page 4 skips 60 free seats (0..4, 6..60): 61..69, then 71..81 past the held 70. */
    cr_assert_eq(page_seat_nos(seats_page(gw, buyer, "&status=FREE&page=4"), nos, 20), 20);
    for (int64_t i = 0; i < 20; i++) {
        cr_assert_eq(nos[i], i < 9 ? 61 + i : 62 + i, "FREE page 4, item %" PRId64, i);
    }
    gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/seats?event_id=1&status=SOLD"), 200);

    /* Bad parameters name themselves. */
    names(gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/seats?event_id=1&pageSize=21"),
                           400, "invalid_parameter"),
          "pageSize");
    names(gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/seats?event_id=1&page=0"), 400,
                           "invalid_parameter"),
          "page");
    names(gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/seats?event_id=1&status=free"),
                           400, "invalid_parameter"),
          "status");
    names(gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/seats"), 400,
                           "missing_parameter"),
          "event_id");
    names(gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/seats?event_id=x"), 400,
                           "invalid_parameter"),
          "event_id");
    gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/seats?event_id=2"), 404, "not_found");
    gwh_stop_ok(g);
}

/* ---- Bookings ------------------------------------------------------------------ */

/* GET /api/bookings<query> until the list says total and its first item is
 * first_id in status first_status (the list reads PostgreSQL, which the
 * drain writes behind the grid): bounded by GWH_DRAIN_TIMEOUT_MS. */
static json_t *bookings_when(gwh_gateway *gw, const char *auth, const char *query, int64_t total,
                             uint64_t first_id, const char *first_status)
{
    int64_t deadline = hx_now_ms() + GWH_DRAIN_TIMEOUT_MS;
    for (;;) {
        json_t *list = gwh_expect(gwh_http(gw, "GET", auth, NULL, "/api/bookings%s", query), 200);
        json_t *first = json_array_get(json_object_get(list, "items"), 0);
        json_t *status = json_object_get(first, "status");
        if (gwh_int(list, "total") == total &&
            (total == 0 ||
             ((uint64_t)json_integer_value(json_object_get(first, "id")) == first_id &&
              json_is_string(status) && strcmp(json_string_value(status), first_status) == 0))) {
            return list;
        }
        if (hx_now_ms() >= deadline) {
            char *text = json_dumps(list, JSON_COMPACT);
            fprintf(stderr, "---- last list: %.3000s\n", text != NULL ? text : "(none)");
            free(text);
            cr_assert_fail("GET /api/bookings%s did not show %" PRId64 " bookings, the first %" PRIu64
                           " %s, within %d ms",
                           query, total, first_id, first_status != NULL ? first_status : "-",
                           GWH_DRAIN_TIMEOUT_MS);
        }
        hx_sleep_ms(50);
    }
}

static void expect_booking_ids(json_t *list, const uint64_t *ids, size_t n)
{
    json_t *items = gwh_json_at(list, "items");
    cr_assert_eq(json_array_size(items), n, "%zu bookings listed, not %zu", json_array_size(items),
                 n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq((uint64_t)gwh_int(json_array_get(items, i), "id"), ids[i],
                     "item %zu is not booking %" PRIu64, i, ids[i]);
    }
}

Test(gateway_api, bookings_are_created_read_cancelled_and_listed_newest_first)
{
    /* Also event 2 (its sale closed 45 days ago), placed on unit 0. */
    gwh_options o = {.units = 2,
                     .partition_count = 3,
                     .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION, 2},
                     .unit_of = {0, 1, 0}};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    const char *other = gwh_login(gw, GWH_BUYER2, GWH_BUYER2_PASSWORD);
    json_t *created = gwh_expect(gwh_http(gw, "POST", buyer, "{\"event_id\": 1}", "/api/bookings"),
                                 201);
    uint64_t first = (uint64_t)gwh_int(created, "id");
    cr_assert_eq(first >> 32, GWH_DEMO_PARTITION, "a booking id names its partition");
    cr_assert_eq(gwh_int(created, "event_id"), 1);
    cr_assert_str_eq(gwh_str(created, "status"), "created");
    cr_assert_eq(json_array_size(gwh_json_at(created, "seats")), 0);
    cr_assert(strlen(gwh_str(created, "expires_at")) > 0);
    /* Times are kept to the millisecond, and bookings made within the same
     * one are ordered by id (partition first): a few ms apart, the order
     * is the order of creation. */
    hx_sleep_ms(5);
    uint64_t hall = gwh_booking_create(gw, buyer, GWH_HALL_EVENT);
    cr_assert_eq(hall >> 32, GWH_HALL_PARTITION);
    hx_sleep_ms(5);
    uint64_t last = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    cr_assert_eq(last, first + 1, "booking seqs follow each other in a partition");
    select_ok(gw, buyer, last, (uint64_t[]){SEAT(100)}, 1);

    json_t *b = gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64, last), 200);
    cr_assert_eq((uint64_t)gwh_int(b, "id"), last);
    cr_assert_str_eq(gwh_str(b, "status"), "created");
    cr_assert_eq((uint64_t)gwh_int(b, "seats.0.id"), SEAT(100));
    cr_assert_eq(gwh_int(b, "total.amount"), 24900);
    cr_assert_str_eq(gwh_str(b, "total.currency"), "EUR");

    /* The list: newest first, paged, only the caller's. */
    json_t *list = bookings_when(gw, buyer, "", 3, last, "created");
    expect_booking_ids(list, (uint64_t[]){last, hall, first}, 3);
    cr_assert_eq((uint64_t)gwh_int(list, "items.0.seats.0.id"), SEAT(100));
    cr_assert_eq(gwh_int(list, "items.0.total.amount"), 24900);
    expect_booking_ids(bookings_when(gw, buyer, "?pageSize=2", 3, last, "created"),
                       (uint64_t[]){last, hall}, 2);
    expect_booking_ids(bookings_when(gw, buyer, "?pageSize=2&page=2", 3, first, "created"),
                       (uint64_t[]){first}, 1);
    json_t *past = gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/bookings?page=3&pageSize=2"),
                              200);
    cr_assert_eq(gwh_int(past, "total"), 3);
    expect_booking_ids(past, NULL, 0);
    expect_booking_ids(bookings_when(gw, other, "", 0, 0, NULL), NULL, 0);
    names(gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/bookings?pageSize=101"), 400,
                           "invalid_parameter"),
          "pageSize");

    /* Cancel; the list follows once the drain wrote it. */
    json_t *cancelled = gwh_expect(
        gwh_http(gw, "PATCH", buyer, "{\"booking_id\": 12884901889}", "/api/bookings/cancel"), 200);
    cr_assert_eq(hall, UINT64_C(12884901889), "the hall's first booking");
    cr_assert_eq((uint64_t)gwh_int(cancelled, "booking_id"), hall);
    cr_assert_str_eq(gwh_str(cancelled, "status"), "cancelled");
    bookings_when(gw, buyer, "?page=2&pageSize=1", 3, hall, "cancelled");

    /* Payments are not configured yet: 503 with Retry-After, the booking stays. */
    char body[96];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 "}", last);
    gwh_resp *pay = gwh_http(gw, "PATCH", buyer, body, "/api/bookings/initiatePayment");
    gwh_expect_error(pay, 503, "payments_unavailable");
    cr_assert(gwh_header(pay, "retry-after") != NULL, "503 without Retry-After");
    cr_assert(strtol(gwh_header(pay, "retry-after"), NULL, 10) >= 1);
    cr_assert_str_eq(gwh_str(gwh_expect(gwh_http(gw, "GET", buyer, NULL,
                                                 "/api/bookings/%" PRIu64, last),
                                        200),
                             "status"),
                     "created");
    names(gwh_expect_error(gwh_http(gw, "PATCH", buyer, "{}", "/api/bookings/initiatePayment"), 400,
                           "missing_field"),
          "booking_id");
    gwh_expect_error(gwh_http(gw, "PATCH", buyer, "{\"booking_id\": 4295967295}",
                              "/api/bookings/initiatePayment"),
                     404, "not_found");
    gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64 "/payment-status",
                              last),
                     404, "no_payment");

    /* Creating: the field is named, events not on sale are 404. */
    names(gwh_expect_error(gwh_http(gw, "POST", buyer, "{}", "/api/bookings"), 400,
                           "missing_field"),
          "event_id");
    gwh_expect_error(gwh_http(gw, "POST", buyer, "{\"event_id\": 2}", "/api/bookings"), 409,
                     "sale_closed"); /* in the grid, but its sale is over */
    gwh_expect_error(gwh_http(gw, "POST", buyer, "{\"event_id\": 4}", "/api/bookings"), 404,
                     "not_found"); /* a draft, not in the grid */
    gwh_expect_error(gwh_http(gw, "POST", buyer, "{\"event_id\": 5}", "/api/bookings"), 404,
                     "not_found");
    names(gwh_expect_error(gwh_http(gw, "POST", buyer, "{\"event_id\": 1, \"section\": \"Nope\"}",
                                    "/api/bookings"),
                           400, "invalid_field"),
          "section");
    gwh_expect(gwh_http(gw, "POST", buyer, "{\"event_id\": 1, \"section\": \"Floor\"}",
                        "/api/bookings"),
               201);
    gwh_stop_ok(g);
}

/* ---- Unknown paths and methods ------------------------------------------------- */

static void expect_405(gwh_gateway *gw, const char *method, const char *path, const char *allow)
{
    gwh_resp *r = gwh_http(gw, method, NULL, NULL, "%s", path);
    gwh_expect_error(r, 405, "method_not_allowed");
    const char *got = gwh_header(r, "allow");
    cr_assert(got != NULL, "%s %s: 405 without Allow", method, path);
    cr_assert_str_eq(got, allow, "%s %s: Allow: %s, not %s", method, path, got, allow);
}

Test(gateway_api, unknown_paths_are_404_and_known_paths_with_another_method_are_405_with_allow)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/nope"), 404, "not_found");
    /* "/" is the shopper page (gateway/www, found from the build tree): a
     * path outside /api/ that no file answers is still a 404. */
    gwh_resp *page = gwh_http(gw, "GET", NULL, NULL, "/");
    cr_assert_eq(page->status, 200, "GET /: %ld", page->status);
    cr_assert(strstr(page->headers, "text/html") != NULL, "GET /: not HTML: %s", page->headers);
    gwh_resp *missing = gwh_http(gw, "GET", NULL, NULL, "/no-such-file.html");
    cr_assert_eq(missing->status, 404, "GET /no-such-file.html: %ld", missing->status);
    gwh_expect_error(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/1/nope"), 404, "not_found");
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/events/1/nope"), 404, "not_found");
    expect_405(gw, "POST", "/api/events/1/seatmap", "GET, HEAD");
    gwh_expect_error(gwh_http(gw, "POST", buyer, "{}", "/api/webhook/payment"), 404, "not_found");
    /* Paths are case-sensitive: outside /api/, the static files answer 404. */
    gwh_resp *upper = gwh_http(gw, "GET", NULL, NULL, "/API/EVENTS");
    cr_assert_eq(upper->status, 404, "GET /API/EVENTS: %ld", upper->status);
    expect_405(gw, "DELETE", "/api/bookings/5", "GET, HEAD");
    expect_405(gw, "PUT", "/api/me", "GET, HEAD");
    expect_405(gw, "POST", "/api/events", "GET, HEAD");
    expect_405(gw, "GET", "/api/auth/login", "POST");
    expect_405(gw, "GET", "/api/seats/select", "PATCH");
    expect_405(gw, "POST", "/api/seats/release", "PATCH");
    expect_405(gw, "DELETE", "/api/bookings", "POST, GET, HEAD");
    expect_405(gw, "GET", "/api/reset", "POST");
    expect_405(gw, "PATCH", "/api/events/1/availability", "GET, HEAD");
    /* HEAD is GET without the body. */
    gwh_resp *head = gwh_http(gw, "HEAD", NULL, NULL, "/healthz");
    cr_assert_eq(head->status, 200);
    cr_assert_eq(head->len, 0);
    gwh_stop_ok(g);
}

Test(gateway_api, another_method_on_the_cancel_path_is_405_with_allow_patch_not_an_invalid_id)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    /* /api/bookings/cancel is PATCH's path; GET /api/bookings/{id} must not
     * claim it as a malformed id, nor Allow advertise GET there. */
    gwh_resp *get = gwh_http(gw, "GET", buyer, NULL, "/api/bookings/cancel");
    gwh_expect_error(get, 405, "method_not_allowed");
    cr_assert_str_eq(gwh_header(get, "allow"), "PATCH");
    expect_405(gw, "POST", "/api/bookings/cancel", "PATCH");
    expect_405(gw, "POST", "/api/bookings/initiatePayment", "PATCH");
    gwh_stop_ok(g);
}

/* ---- Limits and media types ---------------------------------------------------- */

/* {"event_id": 1} padded with spaces to len bytes (caller frees). */
static char *padded_body(size_t len)
{
    char *body = malloc(len + 1);
    cr_assert(body != NULL);
    memset(body, ' ', len);
    memcpy(body, "{\"event_id\": 1", 14);
    body[len - 1] = '}';
    body[len] = '\0';
    return body;
}

/* "X-Padding: aaa..." with len bytes of value (spaces would be trimmed). */
static const char *padding_header(size_t len)
{
    static char line[4][32768];
    static int next;
    char *out = line[next++ % 4];
    cr_assert(len + 16 < sizeof(line[0]));
    int n = snprintf(out, sizeof(line[0]), "X-Padding: ");
    memset(out + n, 'a', len);
    out[(size_t)n + len] = '\0';
    return out;
}

Test(gateway_api, bodies_over_the_limit_are_413_headers_431_and_other_media_types_415)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    gwh_gateway *strict = gwh_gateway_start(g, strict_flags);
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    gwh_request_spec spec = {.method = "POST", .path = "/api/bookings", .auth = buyer,
                             .body = "{\"event_id\": 1}"};
    spec.content_type = "text/plain";
    gwh_expect_error(gwh_send(gw, &spec), 415, "unsupported_media_type");
    spec.content_type = "application/x-www-form-urlencoded";
    gwh_expect_error(gwh_send(gw, &spec), 415, "unsupported_media_type");
    spec.content_type = "application/json; charset=utf-8";
    gwh_expect(gwh_send(gw, &spec), 201);
    spec.content_type = ""; /* no Content-Type at all: taken as JSON */
    gwh_expect(gwh_send(gw, &spec), 201);

    /* --body-bytes-max 1024: one byte over is 413, the limit itself passes. */
    char *over = padded_body(STRICT_BODY_BYTES_MAX + 1);
    char *at = padded_body(STRICT_BODY_BYTES_MAX);
    gwh_expect(gwh_http(strict, "POST", buyer, at, "/api/bookings"), 201);
    gwh_resp *big = gwh_http(strict, "POST", buyer, over, "/api/bookings");
    cr_assert_eq(big->status, 413, "a body over --body-bytes-max: %ld, not 413", big->status);
    free(over);
    free(at);
    gwh_expect(gwh_http(strict, "GET", buyer, NULL, "/api/me"), 200);

    /* --header-bytes-max 2048: 431 above, served below. */
    gwh_request_spec me = {.path = "/api/me", .auth = buyer,
                           .headers = (const char *const[]){padding_header(3000), NULL}};
    gwh_expect_error(gwh_send(strict, &me), 431, "headers_too_large");
    me.headers = (const char *const[]){padding_header(1000), NULL};
    gwh_expect(gwh_send(strict, &me), 200);
    /* The first gateway's default bound, 16384 bytes. */
    me.headers = (const char *const[]){padding_header(20000), NULL};
    gwh_expect_error(gwh_send(gw, &me), 431, "headers_too_large");
    me.headers = (const char *const[]){padding_header(15000), NULL};
    gwh_expect(gwh_send(gw, &me), 200);
    gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/me"), 200);
    gwh_stop_ok(g);
}

/* ---- Reset ----------------------------------------------------------------------- */

Test(gateway_api, reset_frees_every_seat_and_ends_every_booking_and_is_404_without_the_flag)
{
    gwh_grid *g = grid_two_events();
    gwh_gateway *gw = g->gw;
    gwh_gateway *plain = gwh_gateway_start(g, (const char *const[]){"--auth-rate", "0", NULL});
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    const char *other = gwh_login(gw, GWH_BUYER2, GWH_BUYER2_PASSWORD);
    uint64_t a = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    uint64_t b = gwh_booking_create(gw, other, GWH_DEMO_EVENT);
    uint64_t h = gwh_booking_create(gw, other, GWH_HALL_EVENT);
    select_ok(gw, buyer, a, (uint64_t[]){SEAT(1), SEAT(2)}, 2);
    select_ok(gw, other, b, (uint64_t[]){SEAT(50000)}, 1);
    select_ok(gw, other, h, (uint64_t[]){GWH_SEAT_ID(GWH_HALL_PARTITION, 7)}, 1);

    gwh_expect_error(gwh_http(plain, "POST", NULL, NULL, "/api/reset"), 404, "not_found");
    cr_assert_eq(
        gwh_int(gwh_availability_settled(g, GWH_DEMO_EVENT, GWH_DEMO_PARTITION), "totals.SELECTED"),
        3, "a refused reset changed nothing");

    json_t *reset = gwh_expect(gwh_http(gw, "POST", NULL, NULL, "/api/reset"), 200);
    cr_assert(json_is_true(gwh_json_at(reset, "reset")));
    cr_assert_eq(gwh_int(reset, "partitions"), 2);
    cr_assert_eq(gwh_int(reset, "bookings_cancelled"), 3);
    cr_assert_eq(gwh_int(reset, "seats_freed"), 4);
    json_t *av = gwh_availability_settled(g, GWH_DEMO_EVENT, GWH_DEMO_PARTITION);
    cr_assert_eq(gwh_int(av, "totals.FREE"), GWH_DEMO_SEATS);
    av = gwh_availability_settled(g, GWH_HALL_EVENT, GWH_HALL_PARTITION);
    cr_assert_eq(gwh_int(av, "totals.FREE"), GWH_HALL_SEATS);
    json_t *ended = gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64, a), 200);
    cr_assert_str_eq(gwh_str(ended, "status"), "cancelled");
    cr_assert_eq(json_array_size(gwh_json_at(ended, "seats")), 0);
    char body[96];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_id\": %" PRIu64 "}", a,
             SEAT(1));
    gwh_expect_error(gwh_http(gw, "PATCH", buyer, body, "/api/seats/select"), 409,
                     "booking_state");
    /* Users and events stay: a new booking gets the freed seat. */
    uint64_t again = gwh_booking_create(gw, other, GWH_DEMO_EVENT);
    select_ok(gw, other, again, (uint64_t[]){SEAT(1)}, 1);
    /* A second reset ends that one too. */
    reset = gwh_expect(gwh_http(gw, "POST", NULL, NULL, "/api/reset"), 200);
    cr_assert_eq(gwh_int(reset, "bookings_cancelled"), 1);
    cr_assert_eq(gwh_int(reset, "seats_freed"), 1);
    gwh_stop_ok(g);
}

/* ---- Operations ------------------------------------------------------------------- */

/* The value of one metric line ("name{labels}"), or -1 when absent. */
static long long metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            return strtoll(line + n + 1, NULL, 10);
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return -1;
}

Test(gateway_api, metrics_count_requests_by_route_and_status_and_healthz_and_readyz_answer)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    json_t *health = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/healthz"), 200);
    cr_assert_str_eq(gwh_str(health, "status"), "ok");
    json_t *ready = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/readyz"), 200);
    cr_assert_str_eq(gwh_str(ready, "status"), "ready");
    cr_assert(gwh_int(ready, "map_epoch") >= 1);
    const char *basic = gwh_basic(GWH_BUYER, GWH_BUYER_PASSWORD);
    for (int i = 0; i < 3; i++) {
        gwh_expect(gwh_http(gw, "GET", basic, NULL, "/api/me"), 200);
    }
    for (int i = 0; i < 2; i++) {
        gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/me"), 401, "unauthenticated");
    }
    gwh_expect_error(gwh_http(gw, "GET", NULL, NULL, "/api/nope"), 404, "not_found");
    gwh_resp *m = gwh_http(gw, "GET", NULL, NULL, "/metrics");
    cr_assert_eq(m->status, 200);
    const char *ct = gwh_header(m, "content-type");
    cr_assert(ct != NULL && strncmp(ct, "text/plain", 10) == 0, "/metrics as %s", ct);
    const char *text = m->body;
    cr_assert_eq(metric(text, "tixgrid_http_requests_total{route=\"me\",status=\"2xx\"}"), 3, "%s",
                 text);
    cr_assert_eq(metric(text, "tixgrid_http_requests_total{route=\"me\",status=\"4xx\"}"), 2);
    cr_assert_eq(metric(text, "tixgrid_http_requests_total{route=\"unrouted\",status=\"4xx\"}"), 1);
    cr_assert_eq(metric(text, "tixgrid_http_requests_total{route=\"healthz\",status=\"2xx\"}"), 1);
    cr_assert(metric(text, "tixgrid_http_requests_total{route=\"readyz\",status=\"2xx\"}") >= 2);
    cr_assert_eq(metric(text, "tixgrid_http_request_duration_seconds_count{route=\"me\"}"), 5);
    cr_assert_eq(metric(text, "tixgrid_http_request_duration_seconds_bucket{route=\"me\","
                              "le=\"+Inf\"}"),
                 5);
    cr_assert(metric(text, "tixgrid_grid_map_epoch") >= 1);
    cr_assert(strstr(text, "# TYPE tixgrid_http_requests_total counter") != NULL);
    gwh_stop_ok(g);
}

/* PostgreSQL restarted: each pool connection it closed is noticed before a
 * job is sent into it (db.c), so the first request after the restart is
 * served rather than answered 503 database_unavailable. */
Test(gateway_api, the_first_login_after_postgresql_restarts_is_served)
{
    static const char *const one_pool_thread[] = {"--auth-rate", "0", "--db-threads", "1", NULL};
    gwh_grid *g = gwh_start(&(gwh_options){.gateway_flags = one_pool_thread});
    gwh_login(g->gw, GWH_BUYER, GWH_BUYER_PASSWORD); /* the pool's one connection is open */
    pgt_stop(g->pg, false);
    pgt_resume(g->pg);
    gwh_login(g->gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    gwh_stop_ok(g);
}

/* --cpus: every thread of the gateway (loops, nng's, the pools', the
 * audit writer's) runs on CPU 0, and it serves. */
Test(gateway_api, cpus_keep_every_thread_of_the_gateway_on_those_cpus)
{
    static const char *const on_cpu_0[] = {"--cpus", "0", "--threads", "0", NULL};
    gwh_grid *g = gwh_start(&(gwh_options){.gateway_flags = on_cpu_0});
    gwh_login(g->gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint32_t threads = hx_assert_threads_on(g->gw->pid, "0");
    cr_assert_geq(threads, 5u, "only %u threads: nng's and the pools' were not counted", threads);
    gwh_stop_ok(g);
}

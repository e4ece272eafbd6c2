/*
 * gateway_contention_test.c — 200 shoppers at once fighting for the same
 * 100 seats through tixgrid-gateway: every seat goes to exactly one of
 * them, and PostgreSQL agrees with the grid seat for seat once the drain
 * caught up.
 *
 * The grid (gwh.h): PostgreSQL with the demo data and 200 load-test users
 * (user1..user200@load.tixgrid, `tixgrid-persister seed-users`), one unit
 * serving the demo concert, the drain and a gateway with 2 loop threads.
 * The clients are libcurl easy handles on one multi handle, each with a
 * connection of its own (HTTP/1.1 keep-alive), all in flight at once from
 * the test's main thread.  First every user logs in (200 logins at once:
 * argon2id verifications on the gateway's pool); then each client creates
 * a booking and tries the contested seats (the concert's seats 0..99) in
 * an order of its own (a fixed seed) until it holds one or has tried them
 * all.  Exactly 100 clients win, each with one seat, and every contested
 * seat is held by exactly one booking — in the answers, in the grid (each
 * booking read back, the seat list, availability) and in PostgreSQL
 * (seats.status and seats.booking_id, the open booking_seats rows).
 */
#include "gwh.h"

#include <criterion/criterion.h>
#include <curl/curl.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void clients_free(void);

static void fini(void)
{
    clients_free(); /* before gwh_fini_all: it ends libcurl */
    gwh_fini_all();
}

TestSuite(gateway_contention, .fini = fini, .timeout = 170);

#define CLIENTS GWH_LOAD_USERS /* one user each */
#define CONTESTED 100u         /* seats 0..99 of the concert */
/* 200 argon2id verifications take 10-30 s of the gateway's pool on a busy
 * 2-core machine; a login may wait for most of them. */
#define LOGIN_TIMEOUT_MS 100000
#define FIGHT_TIMEOUT_MS 90000
#define SEED UINT64_C(0x7469786772696421)

typedef enum {
    C_LOGIN,    /* POST /api/auth/login in flight */
    C_CREATE,   /* POST /api/bookings in flight */
    C_SELECT,   /* PATCH /api/seats/select of order[tried] in flight */
    C_READY,    /* logged in, not yet fighting */
    C_WON,      /* holds order[tried] */
    C_LOST,     /* tried every seat */
    C_FAILED,   /* an answer nobody expected (kept in failure) */
} client_state;

typedef struct {
    CURL *h;
    struct curl_slist *headers;
    char url[96];
    char body[160];
    char auth[1200]; /* "Bearer ..." */
    struct {
        char *buf;
        size_t len, cap;
    } reply;
    client_state state;
    uint32_t order[CONTESTED];
    uint32_t tried;
    uint64_t booking;
    uint32_t requests;
    char failure[400];
} client;

static client clients[CLIENTS];
static CURLM *multi;

static size_t reply_cb(char *data, size_t size, size_t n, void *arg)
{
    client *c = arg;
    size_t add = size * n;
    if (c->reply.len + add + 1 > c->reply.cap) {
        size_t cap = c->reply.cap > 0 ? c->reply.cap * 2 : 512;
        while (cap < c->reply.len + add + 1) {
            cap *= 2;
        }
        char *grown = realloc(c->reply.buf, cap);
        if (grown == NULL) {
            return 0; /* the transfer fails; the client records it */
        }
        c->reply.buf = grown;
        c->reply.cap = cap;
    }
    memcpy(c->reply.buf + c->reply.len, data, add);
    c->reply.len += add;
    c->reply.buf[c->reply.len] = '\0';
    return add;
}

/* Arms c's handle for method path with body (JSON) and adds it to m. */
static void client_send(CURLM *m, const gwh_gateway *gw, client *c, const char *method,
                        const char *path, const char *body)
{
    curl_easy_reset(c->h);
    snprintf(c->url, sizeof(c->url), "%s%s", gw->url, path);
    snprintf(c->body, sizeof(c->body), "%s", body);
    curl_slist_free_all(c->headers);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:");
    if (c->auth[0] != '\0') {
        char line[1300];
        snprintf(line, sizeof(line), "Authorization: %s", c->auth);
        c->headers = curl_slist_append(c->headers, line);
    }
    curl_easy_setopt(c->h, CURLOPT_URL, c->url);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, reply_cb);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS,
                     c->state == C_LOGIN ? (long)LOGIN_TIMEOUT_MS : (long)GWH_REQUEST_TIMEOUT_MS);
    curl_easy_setopt(c->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    c->reply.len = 0;
    if (c->reply.buf != NULL) {
        c->reply.buf[0] = '\0';
    }
    c->requests++;
    cr_assert_eq(curl_multi_add_handle(m, c->h), CURLM_OK);
}

static void client_fail(client *c, const char *what, long status)
{
    c->state = C_FAILED;
    snprintf(c->failure, sizeof(c->failure), "%s answered %ld: %.300s", what, status,
             c->reply.buf != NULL ? c->reply.buf : "");
}

/* The error code of the reply, or "". */
static const char *reply_code(const client *c, char *out, size_t size)
{
    json_t *j = c->reply.buf != NULL ? json_loads(c->reply.buf, 0, NULL) : NULL;
    json_t *code = json_object_get(json_object_get(j, "error"), "code");
    snprintf(out, size, "%s", json_is_string(code) ? json_string_value(code) : "");
    json_decref(j);
    return out;
}

static int64_t reply_int(const client *c, const char *key)
{
    json_t *j = c->reply.buf != NULL ? json_loads(c->reply.buf, 0, NULL) : NULL;
    json_t *v = json_object_get(j, key);
    int64_t n = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    json_decref(j);
    return n;
}

static void select_next(CURLM *m, const gwh_gateway *gw, client *c)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_id\": %" PRIu64 "}",
             c->booking, GWH_SEAT_ID(GWH_DEMO_PARTITION, c->order[c->tried]));
    c->state = C_SELECT;
    client_send(m, gw, c, "PATCH", "/api/seats/select", body);
}

/* One answer: the client's next step. */
static void client_advance(CURLM *m, const gwh_gateway *gw, client *c, CURLcode result)
{
    long status = 0;
    if (result == CURLE_OK) {
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    } else {
        snprintf(c->failure, sizeof(c->failure), "transfer failed: %s", curl_easy_strerror(result));
        c->state = C_FAILED;
        return;
    }
    char code[64];
    if (c->state == C_LOGIN) {
        json_t *j = status == 200 ? json_loads(c->reply.buf, 0, NULL) : NULL;
        json_t *token = json_object_get(j, "token");
        if (!json_is_string(token)) {
            json_decref(j);
            client_fail(c, "POST /api/auth/login", status);
            return;
        }
        snprintf(c->auth, sizeof(c->auth), "Bearer %s", json_string_value(token));
        json_decref(j);
        c->state = C_READY;
    } else if (c->state == C_CREATE) {
        c->booking = status == 201 ? (uint64_t)reply_int(c, "id") : 0;
        if (c->booking == 0) {
            client_fail(c, "POST /api/bookings", status);
            return;
        }
        select_next(m, gw, c);
    } else if (c->state == C_SELECT && status == 200) {
        c->state = C_WON;
    } else if (c->state == C_SELECT && status == 409 &&
               strcmp(reply_code(c, code, sizeof(code)), "seat_taken") == 0) {
        if (++c->tried == CONTESTED) {
            c->state = C_LOST;
        } else {
            select_next(m, gw, c);
        }
    } else {
        client_fail(c, "PATCH /api/seats/select", status);
    }
}

static bool client_busy(const client *c)
{
    return c->state == C_LOGIN || c->state == C_CREATE || c->state == C_SELECT;
}

/* Runs the multi handle until no client has a request in flight, at most
 * timeout_ms. */
static void multi_drive(CURLM *m, const gwh_gateway *gw, int timeout_ms, const char *phase)
{
    int64_t deadline = hx_now_ms() + timeout_ms;
    int running = 1;
    while (running > 0) {
        cr_assert(hx_now_ms() < deadline, "%s: clients still waiting after %d ms", phase,
                  timeout_ms);
        cr_assert_eq(curl_multi_perform(m, &running), CURLM_OK);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            client *c;
            CURL *h = msg->easy_handle;
            CURLcode result = msg->data.result;
            curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
            curl_multi_remove_handle(m, h);
            client_advance(m, gw, c, result);
            running += client_busy(c);
        }
        if (running > 0) {
            curl_multi_poll(m, NULL, 0, 100, NULL);
        }
    }
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void order_shuffle(client *c, uint64_t *rng)
{
    for (uint32_t i = 0; i < CONTESTED; i++) {
        c->order[i] = i;
    }
    for (uint32_t i = CONTESTED - 1; i > 0; i--) {
        uint32_t k = (uint32_t)(rng_next(rng) % (i + 1));
        uint32_t t = c->order[i];
        c->order[i] = c->order[k];
        c->order[k] = t;
    }
}

/* Idempotent: the test's end and its .fini. */
static void clients_free(void)
{
    for (uint32_t i = 0; i < CLIENTS; i++) {
        if (multi != NULL && clients[i].h != NULL) {
            curl_multi_remove_handle(multi, clients[i].h);
        }
        curl_easy_cleanup(clients[i].h);
        curl_slist_free_all(clients[i].headers);
        free(clients[i].reply.buf);
    }
    memset(clients, 0, sizeof(clients));
    if (multi != NULL) {
        curl_multi_cleanup(multi);
        multi = NULL;
    }
}

/* Asserts that no client failed, naming the first that did. */
static void expect_no_failure(const char *phase)
{
    uint32_t failed = 0, first = CLIENTS;
    for (uint32_t i = 0; i < CLIENTS; i++) {
        if (clients[i].state == C_FAILED) {
            first = failed++ == 0 ? i : first;
        }
    }
    cr_assert_eq(failed, 0, "%s: %u clients got unexpected answers; user%u: %s", phase, failed,
                 first + 1, first < CLIENTS ? clients[first].failure : "");
}

/* Every contested seat is SELECTED in the seat list, by pages of 20. */
static void expect_all_selected(gwh_gateway *gw, const char *auth)
{
    for (uint32_t page = 1; page <= CONTESTED / 20; page++) {
        json_t *p = gwh_expect(gwh_http(gw, "GET", auth, NULL, "/api/seats?event_id=1&page=%u",
                                        page),
                               200);
        json_t *items = gwh_json_at(p, "items");
        cr_assert_eq(json_array_size(items), 20);
        for (size_t i = 0; i < 20; i++) {
            json_t *seat = json_array_get(items, i);
            cr_assert_eq(gwh_int(seat, "seat_no"), (page - 1) * 20 + i);
            cr_assert_str_eq(gwh_str(seat, "status"), "SELECTED", "seat %" PRId64,
                             gwh_int(seat, "seat_no"));
        }
    }
}

Test(gateway_contention, two_hundred_clients_fight_for_one_hundred_seats_and_each_seat_has_one_holder)
{
    gwh_grid *g = gwh_start(NULL);
    gwh_gateway *gw = g->gw;
    CURLM *m = multi = curl_multi_init();
    cr_assert(m != NULL);
    for (uint32_t i = 0; i < CLIENTS; i++) {
        clients[i].h = curl_easy_init();
        cr_assert(clients[i].h != NULL);
    }

    /* 200 logins at once. */
    for (uint32_t i = 0; i < CLIENTS; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"email\": \"user%u@load.tixgrid\", \"password\": \"%s\"}",
                 i + 1, GWH_LOAD_PASSWORD);
        clients[i].state = C_LOGIN;
        client_send(m, gw, &clients[i], "POST", "/api/auth/login", body);
    }
    multi_drive(m, gw, LOGIN_TIMEOUT_MS, "logins");
    expect_no_failure("logins");

    /* The fight: every client at once. */
    uint64_t rng = SEED;
    for (uint32_t i = 0; i < CLIENTS; i++) {
        order_shuffle(&clients[i], &rng);
        clients[i].state = C_CREATE;
        client_send(m, gw, &clients[i], "POST", "/api/bookings", "{\"event_id\": 1}");
    }
    int64_t t0 = hx_now_ms();
    multi_drive(m, gw, FIGHT_TIMEOUT_MS, "the fight");
    int64_t fight_ms = hx_now_ms() - t0;
    expect_no_failure("the fight");

    /* Exactly 100 winners, one seat each, every seat once. */
    uint64_t holder[CONTESTED] = {0};
    uint32_t won = 0, lost = 0, requests = 0;
    for (uint32_t i = 0; i < CLIENTS; i++) {
        client *c = &clients[i];
        requests += c->requests;
        if (c->state == C_LOST) {
            lost++;
            continue;
        }
        cr_assert_eq(c->state, C_WON, "user%u ended in state %d", i + 1, (int)c->state);
        uint32_t seat = c->order[c->tried];
        cr_assert_eq(holder[seat], 0, "seat %u was won by bookings %" PRIu64 " and %" PRIu64, seat,
                     holder[seat], c->booking);
        holder[seat] = c->booking;
        won++;
    }
    cr_assert_eq(won, CONTESTED, "%u winners, not %u", won, CONTESTED);
    cr_assert_eq(lost, CLIENTS - CONTESTED);
    cr_log_info("%u requests in %lld ms", requests, (long long)fight_ms);

    /* The grid: each booking holds exactly its seat (winners) or none. */
    for (uint32_t i = 0; i < CLIENTS; i++) {
        client *c = &clients[i];
        json_t *b = gwh_expect(gwh_http(gw, "GET", c->auth, NULL, "/api/bookings/%" PRIu64,
                                        c->booking),
                               200);
        json_t *seats = gwh_json_at(b, "seats");
        cr_assert_str_eq(gwh_str(b, "status"), "created");
        if (c->state == C_LOST) {
            cr_assert_eq(json_array_size(seats), 0, "loser user%u holds seats", i + 1);
            continue;
        }
        cr_assert_eq(json_array_size(seats), 1, "winner user%u holds %zu seats", i + 1,
                     json_array_size(seats));
        cr_assert_eq(gwh_int(b, "seats.0.seat_no"), c->order[c->tried]);
    }
    expect_all_selected(gw, clients[0].auth);
    json_t *av = gwh_availability_settled(g, GWH_DEMO_EVENT, GWH_DEMO_PARTITION);
    cr_assert_eq(gwh_int(av, "totals.SELECTED"), CONTESTED);
    cr_assert_eq(gwh_int(av, "totals.FREE"), GWH_DEMO_SEATS - CONTESTED);

    /* PostgreSQL, once the drain caught up: seat for seat the same. */
    gwh_wait_drained(g, GWH_DEMO_PARTITION);
    PGresult *res = PQexec(g->db, "SELECT seat_no, status, coalesce(booking_id, 0) FROM seats "
                                  "WHERE event_id = 1 AND seat_no < 100 ORDER BY seat_no");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    cr_assert_eq(PQntuples(res), (int)CONTESTED);
    for (int i = 0; i < PQntuples(res); i++) {
        uint32_t seat = (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
        cr_assert_eq(seat, (uint32_t)i);
        cr_assert_str_eq(PQgetvalue(res, i, 1), "SELECTED", "PostgreSQL: seat %u", seat);
        cr_assert_eq(strtoull(PQgetvalue(res, i, 2), NULL, 10), holder[seat],
                     "PostgreSQL: seat %u held by %s, the grid says %" PRIu64, seat,
                     PQgetvalue(res, i, 2), holder[seat]);
    }
    PQclear(res);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM seats WHERE event_id = 1 AND "
                                      "status <> 'FREE'"),
                 CONTESTED);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM bookings WHERE event_id = 1 AND "
                                      "status = 'created'"),
                 CLIENTS);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(DISTINCT user_id) FROM bookings"), CLIENTS);
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM booking_seats s JOIN seats t ON "
                                      "t.event_id = s.event_id AND t.seat_no = s.seat_no "
                                      "WHERE s.released_at IS NULL AND s.event_id = 1 AND "
                                      "s.booking_id = t.booking_id AND t.seat_no < 100"),
                 CONTESTED, "one open booking_seats row per held seat, naming its holder");
    cr_assert_eq(pgt_query_i64(g->db, "SELECT count(*) FROM booking_seats WHERE "
                                      "released_at IS NULL"),
                 CONTESTED);

    clients_free();
    gwh_stop_ok(g);
}

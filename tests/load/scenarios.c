/*
 * scenarios.c — what tixgrid-load's scenarios send and what their answers
 * change (tests/load/README.md has the flows).
 *
 * get           GET of --url's path: any server (nginx as the HTTP ceiling).
 * browse        a visitor's reads, in turn: the events, one event, its
 *               availability (twice as often: what crowds poll).
 * hold-release  single-seat holds over a range of seats, each released
 *               by its session as soon as the hold is answered.  One
 *               account, one booking per connection made before the clock;
 *               at most `connections` seats are held at any time, because
 *               releases (ready ops) go before new holds.
 * hold-cancel   single-seat holds over a range of seats, as hold-release's,
 *               but nothing is released seat by seat: a booking whose cart
 *               is full (TG_BOOKING_SEATS_MAX seats; the first carts 1..16)
 *               is cancelled (its seats come free) and replaced by a new
 *               one, in the session of its last hold — carts filled and
 *               abandoned.  An arrival is a hold, so --rate is hold
 *               requests/s; the cancels and new bookings come on top (2 for
 *               every 16 holds).  At most 16 x `connections` seats are held
 *               at any time.
 * purchase      a buyer: login, booking, best-available hold of
 *               --quantity seats, initiatePayment, Approve on the sandbox's
 *               page, payment-status polled until completed.
 * sellout       --sessions buyers (logged in before the clock, sharing
 *               --users accounts) buy bookings of --quantity seats, one
 *               after another, until best-available finds none even for
 *               one seat: the whole event is sold.
 *
 * Answers a buyer must read (ids, the payment's page, its status) are
 * parsed with jansson.  A seat two of this run's sales both got is counted
 * (`double_sales_seen`): the client-side half of the audit.
 */
#include "load.h"

#include "tixgrid/assert.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seat numbers this run can check for double sales (a bitmap of 2 MiB). */
#define LOAD_SEAT_NUMBERS_MAX (1u << 24)

/* A buyer's steps (purchase, sellout). */
typedef enum {
    STEP_LOGIN,
    STEP_BOOK,
    STEP_SELECT,
    STEP_PAY_START,
    STEP_APPROVE,
    STEP_STATUS,
} buyer_step;

typedef struct {
    uint8_t step;     /* buyer_step */
    uint8_t quantity; /* seats asked for now */
    uint8_t seat_count;
    uint16_t polls;   /* payment-status polls of this payment */
    uint16_t retries; /* requests of this booking answered 503 and sent again */
    uint32_t user;    /* index of its account's token */
    uint64_t booking;
    uint32_t seat_nos[TG_BOOKING_SEATS_MAX]; /* what the hold got */
    char payment_path[LOAD_PATH_BYTES_MAX];  /* /pay/{id}/approve */
} buyer;

struct load_sessions_state {
    uint64_t browse_next; /* browse: the next read */

    /* hold-release, hold-cancel (see the top). */
    uint32_t seat_count;
    uint32_t seat_next;
    uint8_t *seat_busy; /* 1: held, or a hold or release in flight, or unknown */
    uint64_t *bookings; /* API ids, one per connection */
    uint8_t *booking_seats; /* held or in flight; TG_BOOKING_SEATS_MAX: being replaced */
    uint32_t (*booking_held)[TG_BOOKING_SEATS_MAX]; /* hold-cancel: the seats it holds */
    uint8_t *booking_cart; /* hold-cancel: seats at which it is cancelled */
    bool *booking_holding;
    uint32_t booking_count;
    uint32_t booking_next;

    /* purchase, sellout. */
    buyer *buyers;                        /* one per session slot */
    char (*tokens)[LOAD_TOKEN_BYTES_MAX]; /* sellout: per account; purchase: per session */
    uint32_t token_count;
    uint64_t next_user;       /* purchase: the next account to log in */
    uint8_t *sold_seats;      /* bitmap by seat number */
    uint64_t buyers_sold_out; /* sellout: buyers who found no seat left */
};

/* ---- Shared pieces --------------------------------------------------------------- */

static json_t *body_json(const char *body, size_t len)
{
    return len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
}

static size_t gateway_request(load_run *run, char *buf, size_t size, const char *method,
                              const char *path, const char *token, const char *body)
{
    return load_request_format(buf, size, method, path, run->targets[TARGET_GATEWAY].host, token,
                               body, false);
}

static bool login_token(load_run *run, const char *email, char *token)
{
    json_t *body = json_pack("{s:s,s:s}", "email", email, "password", run->opt.password);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    json_t *doc = NULL;
    bool ok = text != NULL && load_setup_call(run, "POST", "/api/auth/login", NULL, text, &doc);
    free(text);
    const char *t = json_string_value(json_object_get(doc, "token"));
    if (ok && (t == NULL || strlen(t) >= LOAD_TOKEN_BYTES_MAX)) {
        fprintf(stderr, "%s: the login answer has no usable token\n", PROGRAM);
        ok = false;
    }
    if (ok) {
        snprintf(token, LOAD_TOKEN_BYTES_MAX, "%s", t);
    }
    json_decref(doc);
    return ok;
}

static void user_email(const load_run *run, uint64_t user, char *out, size_t size)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(out, size, run->opt.user_pattern, (unsigned)(user + 1)); /* checked in main.c */
#pragma GCC diagnostic pop
}

/* ---- get and browse ---------------------------------------------------------------- */

static bool no_setup(load_run *run)
{
    (void)run;
    return true;
}

static bool get_arrive(load_run *run, uint32_t session, load_op *op)
{
    (void)run, (void)session;
    *op = (load_op){.route = ROUTE_GET, .target = TARGET_GATEWAY};
    return true;
}

static size_t get_format(load_run *run, const load_op *op, char *buf, size_t size)
{
    char path[LOAD_PATH_BYTES_MAX + 64];
    const char *p = run->targets[TARGET_GATEWAY].path;
    uint64_t e = run->opt.event_id;
    switch ((load_route)op->route) {
    case ROUTE_EVENTS:
        p = "/api/events";
        break;
    case ROUTE_EVENT:
        snprintf(path, sizeof(path), "/api/events/%" PRIu64, e);
        p = path;
        break;
    case ROUTE_AVAILABILITY:
        snprintf(path, sizeof(path), "/api/events/%" PRIu64 "/availability", e);
        p = path;
        break;
    default:
        break;
    }
    return gateway_request(run, buf, size, "GET", p, NULL, NULL);
}

static bool get_done(load_run *run, const load_op *op, int status, const char *body, size_t len)
{
    (void)body, (void)len;
    load_session_end(run, op->session);
    return status / 100 == 2;
}

static bool browse_arrive(load_run *run, uint32_t session, load_op *op)
{
    (void)session;
    static const uint8_t reads[] = {ROUTE_EVENTS, ROUTE_EVENT, ROUTE_AVAILABILITY,
                                    ROUTE_AVAILABILITY};
    uint8_t route = reads[run->sc->browse_next++ % sizeof(reads)];
    *op = (load_op){.route = route, .target = TARGET_GATEWAY};
    return true;
}

/* ---- hold-release and hold-cancel ------------------------------------------------- */

static bool hold_release_setup(load_run *run)
{
    load_sessions_state *sc = run->sc;
    uint32_t needed = (uint32_t)run->opt.connections;
    sc->seat_count = (uint32_t)run->opt.seats;
    sc->seat_busy = calloc(sc->seat_count, 1);
    sc->bookings = calloc(needed, sizeof(uint64_t));
    sc->booking_seats = calloc(needed, 1);
    sc->booking_holding = calloc(needed, sizeof(bool));
    if (sc->seat_busy == NULL || sc->bookings == NULL || sc->booking_seats == NULL ||
        sc->booking_holding == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return false;
    }
    if (!login_token(run, run->opt.email, run->token)) {
        return false;
    }
    /* One booking per connection: with at most `connections` seats held,
     * one with room and no hold in flight always exists. */
    char body[64];
    snprintf(body, sizeof(body), "{\"event_id\":%" PRIu64 "}", run->opt.event_id);
    for (uint32_t i = 0; i < needed; i++) {
        json_t *doc = NULL;
        if (!load_setup_call(run, "POST", "/api/bookings", run->token, body, &doc)) {
            return false;
        }
        json_int_t id = json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
        if (id <= 0) {
            fprintf(stderr, "%s: the booking answer has no id\n", PROGRAM);
            return false;
        }
        sc->bookings[sc->booking_count++] = (uint64_t)id;
    }
    return true;
}

/* Both: the thread's next free seat and a booking with room and no hold in
 * flight. */
static bool hold_arrive(load_run *run, uint32_t session, load_op *op)
{
    (void)session;
    load_sessions_state *sc = run->sc;
    uint32_t seat = sc->seat_next, tries = 0;
    for (; tries < sc->seat_count && sc->seat_busy[seat]; tries++) {
        seat = (seat + 1) % sc->seat_count;
    }
    uint32_t booking = sc->booking_next, k = 0;
    for (; k < sc->booking_count &&
           (sc->booking_holding[booking] || sc->booking_seats[booking] >= TG_BOOKING_SEATS_MAX);
         k++) {
        booking = (booking + 1) % sc->booking_count;
    }
    if (tries == sc->seat_count || k == sc->booking_count) {
        /* Only after failures left seats or bookings in unknown states. */
        load_error_show(run, "no seat or booking left to hold with (after failures)");
        return false;
    }
    sc->seat_next = (seat + 1) % sc->seat_count;
    sc->booking_next = (booking + 1) % sc->booking_count;
    sc->seat_busy[seat] = 1;
    sc->booking_seats[booking]++;
    sc->booking_holding[booking] = true;
    *op = (load_op){
        .route = ROUTE_SELECT, .target = TARGET_GATEWAY, .seat = seat, .booking = booking};
    return true;
}

/* Both: a hold, a release, a cancel or a new booking. */
static size_t hold_format(load_run *run, const load_op *op, char *buf, size_t size)
{
    const load_sessions_state *sc = run->sc;
    uint64_t booking = sc->bookings[op->booking];
    char body[96];
    const char *path = "/api/seats/select", *method = "PATCH";
    switch ((load_route)op->route) {
    case ROUTE_RELEASE:
        path = "/api/seats/release";
        break;
    case ROUTE_CANCEL:
        snprintf(body, sizeof(body), "{\"booking_id\":%" PRIu64 "}", booking);
        return gateway_request(run, buf, size, method, "/api/bookings/cancel", run->token, body);
    case ROUTE_BOOKING:
        snprintf(body, sizeof(body), "{\"event_id\":%" PRIu64 "}", run->opt.event_id);
        return gateway_request(run, buf, size, "POST", "/api/bookings", run->token, body);
    default:
        break;
    }
    snprintf(body, sizeof(body), "{\"booking_id\":%" PRIu64 ",\"seat_ids\":[%" PRIu64 "]}", booking,
             run->opt.seat_first + op->seat);
    return gateway_request(run, buf, size, method, path, run->token, body);
}

static bool hold_release_done(load_run *run, const load_op *op, int status, const char *body,
                              size_t len)
{
    (void)body, (void)len;
    load_sessions_state *sc = run->sc;
    bool ok = status / 100 == 2;
    if (op->route == ROUTE_SELECT) {
        sc->booking_holding[op->booking] = false;
        if (ok) {
            load_op release = *op;
            release.route = ROUTE_RELEASE;
            load_follow(run, release, 0);
            return true;
        }
        if (status / 100 == 4) {
            sc->booking_seats[op->booking]--; /* refused: nothing held; the seat stays out */
        }
    } else if (ok) {
        sc->seat_busy[op->seat] = 0;
        sc->booking_seats[op->booking]--;
    }
    /* After a 5xx the seat's state is unknown: it is never used again. */
    load_session_end(run, op->session);
    return ok;
}

static bool hold_cancel_setup(load_run *run)
{
    load_sessions_state *sc = run->sc;
    sc->booking_held = calloc(run->opt.connections, sizeof(*sc->booking_held));
    sc->booking_cart = calloc(run->opt.connections, 1);
    if (sc->booking_held == NULL || sc->booking_cart == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return false;
    }
    /* Holds go to the bookings in turn, so carts of one size would all fill,
     * and be cancelled and replaced, at once: a burst in which no booking
     * takes a hold.  The first carts are 1..16 seats, then every one 16. */
    for (uint32_t i = 0; i < run->opt.connections; i++) {
        sc->booking_cart[i] = (uint8_t)(1 + i % TG_BOOKING_SEATS_MAX);
    }
    return hold_release_setup(run);
}

/* A hold answered: a full booking is cancelled next, in the same session. */
static bool hold_cancel_held(load_run *run, const load_op *op, int status)
{
    load_sessions_state *sc = run->sc;
    sc->booking_holding[op->booking] = false;
    if (status / 100 == 4) {
        sc->booking_seats[op->booking]--; /* refused: nothing held; the seat stays out */
    }
    if (status / 100 != 2) {
        load_session_end(run, op->session); /* after a 5xx the seat's state is unknown */
        return false;
    }
    uint8_t held = sc->booking_seats[op->booking]; /* its only hold in flight was this one */
    sc->booking_held[op->booking][held - 1] = op->seat;
    if (held < sc->booking_cart[op->booking]) {
        load_session_end(run, op->session);
        return true;
    }
    sc->booking_seats[op->booking] = TG_BOOKING_SEATS_MAX; /* no more holds: being replaced */
    load_op cancel = *op;
    cancel.route = ROUTE_CANCEL;
    load_follow(run, cancel, 0);
    return true;
}

static bool hold_cancel_done(load_run *run, const load_op *op, int status, const char *body,
                             size_t len)
{
    load_sessions_state *sc = run->sc;
    if (op->route == ROUTE_SELECT) {
        return hold_cancel_held(run, op, status);
    }
    bool ok = status / 100 == 2;
    if (op->route == ROUTE_CANCEL && ok) {
        for (uint32_t i = 0; i < sc->booking_cart[op->booking]; i++) {
            sc->seat_busy[sc->booking_held[op->booking][i]] = 0;
        }
        load_op book = *op;
        book.route = ROUTE_BOOKING;
        load_follow(run, book, 0);
        return true;
    }
    if (op->route == ROUTE_BOOKING && ok) {
        json_t *doc = body_json(body, len);
        json_int_t id = json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
        ok = id > 0;
        if (ok) {
            sc->bookings[op->booking] = (uint64_t)id;
            sc->booking_seats[op->booking] = 0;
            sc->booking_cart[op->booking] = TG_BOOKING_SEATS_MAX;
        }
    }
    /* A booking whose cancel or replacement failed stays full: never used again. */
    load_session_end(run, op->session);
    return ok;
}

/* ---- purchase and sellout ---------------------------------------------------------- */

/* Both: the sandbox, the sales table and the seat bitmap. */
static bool buyers_alloc(load_run *run, uint64_t sales, uint32_t tokens)
{
    load_sessions_state *sc = run->sc;
    sc->buyers = calloc(run->opt.sessions, sizeof(buyer));
    sc->tokens = calloc(tokens, LOAD_TOKEN_BYTES_MAX);
    sc->sold_seats = calloc(LOAD_SEAT_NUMBERS_MAX / 8, 1);
    run->sale_bookings = calloc(sales, sizeof(uint64_t));
    run->sale_seats = calloc(sales, sizeof(uint32_t));
    run->sale_capacity = sales;
    if (sc->buyers == NULL || sc->tokens == NULL || sc->sold_seats == NULL ||
        run->sale_bookings == NULL || run->sale_seats == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return false;
    }
    return true;
}

static bool purchase_setup(load_run *run)
{
    /* A session buys at most one booking. */
    return buyers_alloc(run, load_schedule_total(&run->opt), (uint32_t)run->opt.sessions);
}

/* The event's seats: the most bookings a sell-out can pay for. */
static bool event_seats(load_run *run, uint64_t *seats)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/events/%" PRIu64, run->opt.event_id);
    json_t *doc = NULL;
    if (!load_setup_call(run, "GET", path, NULL, NULL, &doc)) {
        return false;
    }
    json_int_t n = json_integer_value(json_object_get(doc, "seat_count"));
    json_decref(doc);
    if (n <= 0 || n > (json_int_t)LOAD_SEAT_NUMBERS_MAX) {
        fprintf(stderr, "%s: event %" PRIu64 " has no seat_count in 1..%u\n", PROGRAM,
                run->opt.event_id, LOAD_SEAT_NUMBERS_MAX);
        return false;
    }
    *seats = (uint64_t)n;
    return true;
}

static bool sellout_setup(load_run *run)
{
    load_sessions_state *sc = run->sc;
    uint64_t seats;
    uint32_t users = (uint32_t)run->opt.users;
    if (!event_seats(run, &seats) || !buyers_alloc(run, seats, users)) {
        return false;
    }
    for (uint32_t u = 0; u < users; u++) {
        char email[256];
        user_email(run, u, email, sizeof(email));
        if (!login_token(run, email, sc->tokens[u])) {
            return false;
        }
    }
    sc->token_count = users;
    return true;
}

static bool buyer_arrive(load_run *run, uint32_t session, load_op *op, buyer_step first)
{
    load_sessions_state *sc = run->sc;
    buyer *b = &sc->buyers[session];
    *b = (buyer){.step = (uint8_t)first, .quantity = (uint8_t)run->opt.quantity};
    if (first == STEP_BOOK) {
        b->user = (uint32_t)(run->arrived % sc->token_count);
    } else {
        b->user = session; /* purchase: the session's own token, from its login */
    }
    *op = (load_op){.route = first == STEP_LOGIN ? ROUTE_LOGIN : ROUTE_BOOKING,
                    .target = TARGET_GATEWAY};
    return true;
}

static bool purchase_arrive(load_run *run, uint32_t session, load_op *op)
{
    return buyer_arrive(run, session, op, STEP_LOGIN);
}

static bool sellout_arrive(load_run *run, uint32_t session, load_op *op)
{
    return buyer_arrive(run, session, op, STEP_BOOK);
}

static size_t buyer_format(load_run *run, const load_op *op, char *buf, size_t size)
{
    load_sessions_state *sc = run->sc;
    const buyer *b = &sc->buyers[op->session];
    const char *token = sc->tokens[b->user];
    char body[320], path[LOAD_PATH_BYTES_MAX + 64];
    switch ((buyer_step)b->step) {
    case STEP_LOGIN: {
        char email[256];
        user_email(run, sc->next_user++ % run->opt.users, email, sizeof(email));
        json_t *j = json_pack("{s:s,s:s}", "email", email, "password", run->opt.password);
        size_t n = j != NULL ? json_dumpb(j, body, sizeof(body) - 1, JSON_COMPACT) : 0;
        json_decref(j);
        TG_ASSERT(n > 0 && n < sizeof(body) - 1); /* main.c bounds the email and password */
        body[n] = '\0';
        return gateway_request(run, buf, size, "POST", "/api/auth/login", NULL, body);
    }
    case STEP_BOOK:
        snprintf(body, sizeof(body), "{\"event_id\":%" PRIu64 "}", run->opt.event_id);
        return gateway_request(run, buf, size, "POST", "/api/bookings", token, body);
    case STEP_SELECT:
        snprintf(body, sizeof(body), "{\"booking_id\":%" PRIu64 ",\"quantity\":%u}", b->booking,
                 (unsigned)b->quantity);
        return gateway_request(run, buf, size, "PATCH", "/api/seats/select", token, body);
    case STEP_PAY_START:
        snprintf(body, sizeof(body), "{\"booking_id\":%" PRIu64 "}", b->booking);
        return gateway_request(run, buf, size, "PATCH", "/api/bookings/initiatePayment", token,
                               body);
    case STEP_APPROVE:
        return load_request_format(buf, size, "POST", b->payment_path,
                                   run->targets[TARGET_SANDBOX].host, NULL, "", false);
    case STEP_STATUS:
        snprintf(path, sizeof(path), "/api/bookings/%" PRIu64 "/payment-status", b->booking);
        return gateway_request(run, buf, size, "GET", path, token, NULL);
    }
    return 0;
}

/* The buyer goes on with step (route, server), now or after delay_ms. */
static void buyer_next(load_run *run, const load_op *op, buyer_step step, uint32_t delay_ms)
{
    static const uint8_t routes[] = {
        [STEP_LOGIN] = ROUTE_LOGIN,         [STEP_BOOK] = ROUTE_BOOKING,
        [STEP_SELECT] = ROUTE_SELECT,       [STEP_PAY_START] = ROUTE_PAY_START,
        [STEP_APPROVE] = ROUTE_PAY_APPROVE, [STEP_STATUS] = ROUTE_PAY_STATUS,
    };
    run->sc->buyers[op->session].step = (uint8_t)step;
    load_op next = *op;
    next.route = routes[step];
    next.target = step == STEP_APPROVE ? TARGET_SANDBOX : TARGET_GATEWAY;
    load_follow(run, next, delay_ms);
}

/* The seats the hold got (their seat numbers); false when the answer has
 * none or more than a booking holds. */
static bool held_seats(buyer *b, json_t *doc)
{
    json_t *seats = json_object_get(doc, "seats");
    size_t n = json_array_size(seats);
    if (n == 0 || n > TG_BOOKING_SEATS_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_int_t no = json_integer_value(json_object_get(json_array_get(seats, i), "seat_no"));
        if (no < 0 || no >= (json_int_t)LOAD_SEAT_NUMBERS_MAX) {
            return false;
        }
        b->seat_nos[i] = (uint32_t)no;
    }
    b->seat_count = (uint8_t)n;
    return true;
}

/* The payment completed: a sale; its seats must be nobody else's. */
static void buyer_sold(load_run *run, const buyer *b)
{
    uint8_t *bits = run->sc->sold_seats;
    for (uint32_t i = 0; i < b->seat_count; i++) {
        uint32_t s = b->seat_nos[i];
        if (bits[s / 8] & (1u << (s % 8))) {
            run->double_sales_seen++;
            load_error_show(run, "seat %u sold twice (booking %" PRIu64 ")", s, b->booking);
        }
        bits[s / 8] |= (uint8_t)(1u << (s % 8));
    }
    load_sale(run, b->booking, b->seat_count);
}

/* The payment page's path from initiatePayment's payment_url, + /approve. */
static bool approve_path(buyer *b, const char *url)
{
    const char *p = url != NULL && strncmp(url, "http://", 7) == 0 ? strchr(url + 7, '/') : NULL;
    if (p == NULL) {
        return false;
    }
    int n = snprintf(b->payment_path, sizeof(b->payment_path), "%s/approve", p);
    return n > 0 && (size_t)n < sizeof(b->payment_path);
}

/* What a buyer does after each answer: the next step, the same again
 * later (an error: 503), or the end. */
typedef enum { NEXT_NOW, NEXT_LATER, RETRY_LATER, END_EXPECTED, END_UNEXPECTED } buyer_outcome;

/* Answered 503 more often than this, a booking is given up. */
#define LOAD_RETRIES_MAX 20u
/* The longest wait between two polls or retries, in ms. */
#define LOAD_BACKOFF_MAX_MS 1000u

/* Polls and retries back off: --poll-ms, doubling, at most
 * LOAD_BACKOFF_MAX_MS (a webhook can take a second under load, and a
 * failover longer). */
static uint32_t buyer_delay_ms(const load_run *run, const buyer *b)
{
    uint32_t n = (uint32_t)b->polls + b->retries;
    uint64_t ms = run->opt.poll_ms << (n < 6 ? n : 6);
    return (uint32_t)(ms < LOAD_BACKOFF_MAX_MS ? ms : LOAD_BACKOFF_MAX_MS);
}

static buyer_outcome buyer_select_done(load_run *run, buyer *b, int status, json_t *doc)
{
    if (status == 200) {
        return held_seats(b, doc) ? NEXT_NOW : END_UNEXPECTED;
    }
    if (status != 409) {
        return END_UNEXPECTED;
    }
    if (b->quantity > 1) {
        b->quantity = 1; /* fewer free seats than asked for: one is still worth a try */
        return NEXT_NOW;
    }
    /* Not even one: every seat is sold or held by buyers who will pay. */
    if (++run->sc->buyers_sold_out == run->arrivals_total) {
        run->sold_out = true;
    }
    return END_EXPECTED;
}

static buyer_outcome buyer_status_done(load_run *run, buyer *b, int status, json_t *doc)
{
    const char *word = json_string_value(json_object_get(doc, "status"));
    if (status != 200 || word == NULL) {
        return END_UNEXPECTED;
    }
    if (strcmp(word, "pending") == 0) {
        return ++b->polls < LOAD_POLLS_MAX ? NEXT_LATER : END_UNEXPECTED;
    }
    if (strcmp(word, "completed") != 0) {
        return END_UNEXPECTED;
    }
    buyer_sold(run, b);
    if (strcmp(run->scenario->name, "sellout") != 0) {
        return END_EXPECTED;
    }
    /* The next booking of the same buyer. */
    b->quantity = (uint8_t)run->opt.quantity;
    b->polls = 0;
    b->retries = 0;
    b->seat_count = 0;
    return NEXT_NOW;
}

static buyer_outcome buyer_step_done(load_run *run, const load_op *op, buyer *b, int status,
                                     json_t *doc)
{
    json_int_t id;
    const char *s;
    /* Unavailable for now (a failover, the payment breaker open): a buyer
     * tries again, but not a hold, whose effect is then unknown. */
    if (status == 503 && b->step != STEP_SELECT && b->retries < LOAD_RETRIES_MAX) {
        b->retries++;
        return RETRY_LATER;
    }
    switch ((buyer_step)b->step) {
    case STEP_LOGIN:
        s = json_string_value(json_object_get(doc, "token"));
        if (status != 200 || s == NULL || strlen(s) >= LOAD_TOKEN_BYTES_MAX) {
            return END_UNEXPECTED;
        }
        snprintf(run->sc->tokens[op->session], LOAD_TOKEN_BYTES_MAX, "%s", s);
        return NEXT_NOW;
    case STEP_BOOK:
        id = json_integer_value(json_object_get(doc, "id"));
        b->booking = (uint64_t)id;
        return status == 201 && id > 0 ? NEXT_NOW : END_UNEXPECTED;
    case STEP_SELECT:
        return buyer_select_done(run, b, status, doc);
    case STEP_PAY_START:
        s = json_string_value(json_object_get(doc, "payment_url"));
        return status == 200 && approve_path(b, s) ? NEXT_NOW : END_UNEXPECTED;
    case STEP_APPROVE:
        return status == 303 ? NEXT_LATER : END_UNEXPECTED;
    case STEP_STATUS:
        return buyer_status_done(run, b, status, doc);
    }
    return END_UNEXPECTED;
}

static bool buyer_done(load_run *run, const load_op *op, int status, const char *body, size_t len)
{
    buyer *b = &run->sc->buyers[op->session];
    buyer_step step = (buyer_step)b->step;
    json_t *doc = status / 100 == 2 ? body_json(body, len) : NULL;
    buyer_outcome out = buyer_step_done(run, op, b, status, doc);
    json_decref(doc);
    /* The step after each: a completed payment starts the next booking. */
    static const uint8_t after[] = {
        [STEP_LOGIN] = STEP_BOOK,       [STEP_BOOK] = STEP_SELECT,
        [STEP_SELECT] = STEP_PAY_START, [STEP_PAY_START] = STEP_APPROVE,
        [STEP_APPROVE] = STEP_STATUS,   [STEP_STATUS] = STEP_STATUS,
    };
    buyer_step next = (buyer_step)after[step];
    if (out == RETRY_LATER || (step == STEP_SELECT && status == 409)) {
        next = step; /* the same again (a select with one seat) */
    } else if (step == STEP_STATUS && out == NEXT_NOW) {
        next = STEP_BOOK; /* sold: the next booking */
    }
    if (out == NEXT_NOW) {
        buyer_next(run, op, next, 0);
    } else if (out == NEXT_LATER || out == RETRY_LATER) {
        buyer_next(run, op, next, buyer_delay_ms(run, b));
    } else {
        load_session_end(run, op->session);
    }
    return out != END_UNEXPECTED && out != RETRY_LATER;
}

/* ---- The table ------------------------------------------------------------------- */

const load_scenario load_scenarios[] = {
    {"get", no_setup, get_arrive, get_format, get_done},
    {"browse", no_setup, browse_arrive, get_format, get_done},
    {"hold-release", hold_release_setup, hold_arrive, hold_format, hold_release_done},
    {"hold-cancel", hold_cancel_setup, hold_arrive, hold_format, hold_cancel_done},
    {"purchase", purchase_setup, purchase_arrive, buyer_format, buyer_done},
    {"sellout", sellout_setup, sellout_arrive, buyer_format, buyer_done},
};
const uint32_t load_scenario_count = sizeof(load_scenarios) / sizeof(load_scenarios[0]);

bool load_scenario_setup(load_run *run)
{
    static load_sessions_state state;
    run->sc = &state;
    return run->scenario->setup(run);
}

void load_scenario_free(load_run *run)
{
    load_sessions_state *sc = run->sc;
    if (sc == NULL) {
        return;
    }
    free(sc->seat_busy);
    free(sc->bookings);
    free(sc->booking_seats);
    free(sc->booking_holding);
    free(sc->booking_held);
    free(sc->booking_cart);
    free(sc->buyers);
    free(sc->tokens);
    free(sc->sold_seats);
}

/*
 * gateway_payment_faults_test.c — payments when things go wrong: the
 * provider down (the circuit breaker opens, refuses, half-opens, closes on
 * a good probe; webhooks go on meanwhile), a provider that takes 10 s to
 * answer (nobody else waits for it), a confirmation that arrives after
 * the payment window (refunded; the seat stays with its new holder), and
 * seats added to a booking while its payment was being created (the
 * confirmation of the smaller amount sells nothing and is refunded), and a
 * confirmation whose only delivery failed (found by the gateway once the
 * booking ended, and refunded).
 *
 * The grid (gwh.h) with tixgrid-sandbox-pay; the sandbox is told to fail,
 * to hang or to answer slowly (POST /control), stopped, and restarted on
 * its port.
 */
#include "payh.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fini(void)
{
    gwh_fini_all();
}

TestSuite(gateway_payment_faults, .fini = fini, .timeout = 90);

static json_t *breaker(gwh_gateway *gw)
{
    return gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/payments/circuit-breaker-status"), 200);
}

Test(gateway_payment_faults, provider_down_opens_the_breaker_which_half_opens_and_closes_again)
{
    static const char *const flags[] = {"--allow-reset",
                                        "--auth-rate",
                                        "0",
                                        "--breaker-threshold",
                                        "3",
                                        "--breaker-timeout-s",
                                        "2",
                                        "--payment-timeout-ms",
                                        "2000",
                                        NULL};
    gwh_options o = {.sandbox = true, .gateway_flags = flags};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    /* A payment started while the provider is up, confirmed while it is down. */
    uint64_t early = payh_booking_with_seats(gw, buyer, 700, 1);
    char early_pay[PAYH_ID_BYTES];
    snprintf(early_pay, sizeof(early_pay), "%s",
             gwh_str(gwh_expect(payh_initiate(gw, buyer, early), 200), "payment_id"));
    uint16_t port = g->sandbox->port;

    /* Three failures in a row, each a 502 that leaves its booking created:
     * the provider answers 500, then never answers (the gateway gives up
     * after --payment-timeout-ms), then is down.  The third opens it. */
    static const char *const how[] = {"{\"mode\": \"fail\"}", "{\"mode\": \"timeout\"}", NULL};
    uint64_t b[3];
    for (int i = 0; i < 3; i++) {
        if (how[i] != NULL) {
            gwh_expect(gwh_http(g->sandbox, "POST", NULL, how[i], "/control"), 200);
        } else {
            gwh_sandbox_stop_ok(g->sandbox);
        }
        b[i] = payh_booking_with_seats(gw, buyer, 710 + 2 * (uint32_t)i, 1);
        int64_t t0 = hx_now_ms();
        const char *why = gwh_expect_error(payh_initiate(gw, buyer, b[i]), 502, "provider_error");
        int64_t took = hx_now_ms() - t0;
        cr_assert(i != 0 || strstr(why, "HTTP 500") != NULL, "%s", why);
        cr_assert(i != 1 || (took >= 1900 && took < 5000),
                  "a hung provider: 502 after %" PRId64 " ms, not the 2 s timeout", took);
        cr_assert_str_eq(payh_seat_status(gw, buyer, 710 + 2 * (uint32_t)i), "SELECTED");
        cr_assert_str_eq(gwh_str(breaker(gw), "circuit_breaker.state"), i < 2 ? "Closed" : "Open");
    }
    json_t *cb = breaker(gw);
    cr_assert_eq(gwh_int(cb, "circuit_breaker.failure_count"), 3);
    cr_assert_eq(gwh_int(cb, "circuit_breaker.threshold"), 3);
    cr_assert_eq(gwh_int(cb, "circuit_breaker.timeout_seconds"), 2);
    int64_t opened = hx_now_ms();
    gwh_resp *refused = payh_initiate(gw, buyer, b[0]);
    gwh_expect_error(refused, 503, "circuit_open");
    cr_assert(gwh_header(refused, "retry-after") != NULL, "503 without Retry-After");
    cr_assert(hx_now_ms() - opened < 500, "an open breaker answers at once");
    gwh_resp *metrics = gwh_http(gw, "GET", NULL, NULL, "/metrics");
    cr_assert(strstr(metrics->body, "\ntixgrid_payment_breaker_state 1\n") != NULL &&
                  strstr(metrics->body, "\ntixgrid_payment_breaker_refused_total 1\n") != NULL,
              "the open breaker in /metrics");

    /* Webhooks are still processed while it is open. */
    const char *body = payh_webhook_body(early_pay, "CONFIRMED");
    json_t *hook = gwh_expect(payh_webhook(gw, body, payh_sign(GWH_WEBHOOK_SECRET, body)), 200);
    cr_assert_str_eq(gwh_str(hook, "result"), "paid");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 700), "SOLD");

    /* After its timeout it half-opens; the provider is back; the probe closes it. */
    while (strcmp(gwh_str(breaker(gw), "circuit_breaker.state"), "Open") == 0) {
        cr_assert(hx_now_ms() - opened < 4000, "still open 4 s after opening with a 2 s timeout");
        hx_sleep_ms(100);
    }
    cr_assert(hx_now_ms() - opened >= 1500, "half-open before its timeout");
    cr_assert_str_eq(gwh_str(breaker(gw), "circuit_breaker.state"), "HalfOpen");
    gwh_sandbox_start(g, port, NULL);
    json_t *paid = gwh_expect(payh_initiate(gw, buyer, b[1]), 200);
    cr_assert_str_eq(gwh_str(paid, "status"), "pending_payment");
    cb = breaker(gw);
    cr_assert_str_eq(gwh_str(cb, "circuit_breaker.state"), "Closed");
    cr_assert_eq(gwh_int(cb, "circuit_breaker.failure_count"), 0);
    gwh_stop_ok(g);
}

/* ---- A slow provider ------------------------------------------------------------ */

typedef struct {
    char url[128];
    char auth[512];
    char body[64];
    long status;
    int64_t took_ms;
} slow_call;

static size_t ignore(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/* initiatePayment on its own connection and thread (gwh_send is the main
 * thread's). */
static void *slow_main(void *arg)
{
    slow_call *c = arg;
    CURL *h = curl_easy_init();
    char auth[560];
    snprintf(auth, sizeof(auth), "Authorization: %s", c->auth);
    struct curl_slist *hs = curl_slist_append(NULL, auth);
    hs = curl_slist_append(hs, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ignore);
    int64_t t0 = hx_now_ms();
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    }
    c->took_ms = hx_now_ms() - t0;
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    return NULL;
}

Test(gateway_payment_faults, a_provider_taking_10_s_to_answer_slows_nobody_else)
{
    /* One loop thread: if the provider call blocked it, everything would wait. */
    static const char *const flags[] = {"--allow-reset", "--auth-rate", "0",
                                        "--threads",     "1",           "--payment-timeout-ms",
                                        "15000",         NULL};
    gwh_options o = {.sandbox = true, .gateway_flags = flags};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 800, 1);
    uint64_t other = payh_booking_with_seats(gw, buyer, 802, 1);
    gwh_expect(gwh_http(g->sandbox, "POST", NULL, "{\"mode\": \"delay\", \"delay_ms\": 10000}",
                        "/control"),
               200);

    static slow_call call;
    snprintf(call.url, sizeof(call.url), "%s/api/bookings/initiatePayment", gw->url);
    snprintf(call.auth, sizeof(call.auth), "%s", buyer);
    snprintf(call.body, sizeof(call.body), "{\"booking_id\": %" PRIu64 "}", b);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, slow_main, &call), 0);
    hx_sleep_ms(300);

    /* Meanwhile everyone else is served at once: reads, holds, releases. */
    int64_t worst = 0;
    for (int i = 0; i < 20; i++) {
        int64_t t0 = hx_now_ms();
        gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/events/1/availability"), 200);
        gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64, other), 200);
        int64_t took = hx_now_ms() - t0;
        worst = took > worst ? took : worst;
    }
    gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/payments/circuit-breaker-status"), 200);
    cr_assert(worst < 1000, "two requests took %" PRId64 " ms while the provider was slow", worst);
    cr_assert_eq(call.status, 0, "the slow payment answered before the provider did");
    fprintf(stderr, "slow provider: the worst of 20 pairs of other requests took %" PRId64 " ms\n",
            worst);

    pthread_join(t, NULL);
    cr_assert_eq(call.status, 200, "the slow payment ended with %ld", call.status);
    cr_assert(call.took_ms >= 9500, "the payment took %" PRId64 " ms, not the provider's 10 s",
              call.took_ms);
    payh_wait_booking(gw, buyer, b, "pending_payment");
    gwh_stop_ok(g);
}

/* ---- A confirmation after the payment window ------------------------------------- */

Test(gateway_payment_faults,
     a_confirmation_after_expiry_is_refunded_and_the_seat_stays_with_its_new_holder)
{
    static const char *const replay[] = {"--payment-window-ms", "2000", NULL};
    gwh_options o = {.sandbox = true, .replay_flags = replay};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *first = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    const char *second = gwh_login(gw, GWH_BUYER2, GWH_BUYER2_PASSWORD);
    uint64_t late = payh_booking_with_seats(gw, first, 900, 1);
    json_t *started = gwh_expect(payh_initiate(gw, first, late), 200);
    char pay[PAYH_ID_BYTES];
    snprintf(pay, sizeof(pay), "%s", gwh_str(started, "payment_id"));

    /* The window passes: expired, seat FREE; another buyer takes it. */
    payh_wait_booking(gw, first, late, "expired");
    cr_assert_str_eq(payh_seat_status(gw, first, 900), "FREE");
    uint64_t taker = payh_booking_with_seats(gw, second, 900, 1);

    /* Now the first buyer approves on the provider's page. */
    payh_click(g->sandbox, pay, true);
    int64_t deadline = hx_now_ms() + PAYH_WAIT_MS;
    json_t *at_provider = NULL;
    do {
        hx_sleep_ms(50);
        at_provider =
            gwh_expect(gwh_http(g->sandbox, "GET", NULL, NULL, "/v1/payments/%s", pay), 200);
    } while (strcmp(gwh_str(at_provider, "status"), "REFUNDED") != 0 && hx_now_ms() < deadline);
    cr_assert_str_eq(gwh_str(at_provider, "status"), "REFUNDED");
    cr_assert_eq(gwh_int(at_provider, "refunds"), 1);

    /* The seat is the new holder's; the late booking stays expired. */
    cr_assert_str_eq(payh_seat_status(gw, second, 900), "SELECTED");
    json_t *held =
        gwh_expect(gwh_http(gw, "GET", second, NULL, "/api/bookings/%" PRIu64, taker), 200);
    cr_assert_eq((uint64_t)gwh_int(held, "seats.0.id"), GWH_SEAT_ID(GWH_DEMO_PARTITION, 900));
    /* The gateway records the refund once the provider confirmed it. */
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT status || '/' || refund_status || '/' || (refunded_at IS NOT NULL)"
             " FROM payments WHERE id = '%s'",
             pay);
    payh_wait_pg(g, sql, "completed/refunded/true");
    json_t *st = gwh_expect(
        gwh_http(gw, "GET", first, NULL, "/api/bookings/%" PRIu64 "/payment-status", late), 200);
    cr_assert_str_eq(gwh_str(st, "status"), "expired");
    cr_assert_str_eq(gwh_str(st, "refund"), "refunded");

    /* The same webhook again: nothing more, no second refund. */
    const char *body = payh_webhook_body(pay, "CONFIRMED");
    json_t *again = gwh_expect(payh_webhook(gw, body, payh_sign(GWH_WEBHOOK_SECRET, body)), 200);
    cr_assert_str_eq(gwh_str(again, "result"), "duplicate");
    cr_assert_eq(
        gwh_int(gwh_expect(gwh_http(g->sandbox, "GET", NULL, NULL, "/v1/payments/%s", pay), 200),
                "refunds"),
        1);

    /* PostgreSQL: audited; the expiry's notification. */
    snprintf(sql, sizeof(sql), "%s", payh_audit_sql(late, "action LIKE 'payment%'", false));
    payh_wait_pg(g, sql, "payment_begin:ok,payment_late:refund_due,payment_refund:ok");
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM notification_outbox WHERE booking_id = %" PRIu64
             " AND kind = 'booking_expired'",
             late);
    payh_wait_pg(g, sql, "1");
    gwh_wait_drained(g, GWH_DEMO_PARTITION);
    snprintf(sql, sizeof(sql),
             "SELECT status || ':' || booking_id FROM seats"
             " WHERE event_id = 1 AND seat_no = 900");
    char want[64];
    snprintf(want, sizeof(want), "SELECTED:%" PRIu64, taker);
    cr_assert_str_eq(pgt_query_text(g->db, sql), want);
    gwh_stop_ok(g);
}

Test(gateway_payment_faults, seats_added_while_the_payment_was_created_are_never_sold_for_less)
{
    gwh_options o = {.sandbox = true};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 900, 1);
    gwh_expect(gwh_http(g->sandbox, "POST", NULL, "{\"mode\": \"delay\", \"delay_ms\": 2000}",
                        "/control"),
               200);

    /* initiatePayment prices one seat, then waits 2 s for the provider;
     * meanwhile another tab adds a second seat to the booking, still created. */
    static slow_call call;
    snprintf(call.url, sizeof(call.url), "%s/api/bookings/initiatePayment", gw->url);
    snprintf(call.auth, sizeof(call.auth), "%s", buyer);
    snprintf(call.body, sizeof(call.body), "{\"booking_id\": %" PRIu64 "}", b);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, slow_main, &call), 0);
    hx_sleep_ms(500);
    char body[160];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_id\": %" PRIu64 "}", b,
             GWH_SEAT_ID(GWH_DEMO_PARTITION, 901));
    gwh_expect(gwh_http(gw, "PATCH", buyer, body, "/api/seats/select"), 200);
    pthread_join(t, NULL);
    cr_assert_eq(call.status, 200, "initiatePayment ended with %ld", call.status);
    gwh_expect(gwh_http(g->sandbox, "POST", NULL, "{\"mode\": \"normal\"}", "/control"), 200);
    cr_assert_str_eq(payh_seat_status(gw, buyer, 901), "RESERVED");

    /* The buyer pays the one-seat amount: the two seats are not sold for it. */
    json_t *st = gwh_expect(
        gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64 "/payment-status", b), 200);
    char pay[PAYH_ID_BYTES];
    snprintf(pay, sizeof(pay), "%s", gwh_str(st, "payment_id"));
    payh_click(g->sandbox, pay, true);
    payh_wait_booking(gw, buyer, b, "failed");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 900), "FREE");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 901), "FREE");
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT status || '/' || refund_status || '/' || amount_minor FROM payments"
             " WHERE id = '%s'",
             pay);
    payh_wait_pg(g, sql, "completed/refunded/24900");
    snprintf(sql, sizeof(sql), "%s",
             payh_audit_sql(b, "action IN ('payment_confirm', 'payment_refund')", false));
    payh_wait_pg(g, sql, "payment_confirm:amount_mismatch,payment_refund:ok");
    gwh_stop_ok(g);
}

/* The provider's one delivery of a confirmation fails (the unit frozen:
 * the grid times out) and it gives up.  Once the booking has expired, the
 * gateway asks the provider about the payment still pending, finds it
 * confirmed, records it late and refunds it. */
Test(gateway_payment_faults, a_confirmation_never_delivered_is_found_and_refunded)
{
    static const char *const replay[] = {"--payment-window-ms", "1500", NULL};
    static const char *const sandbox[] = {"--webhook-attempts", "1", NULL};
    static const char *const flags[] = {
        "--auth-rate", "0", "--refund-retry-s", "1", "--grid-timeout-ms", "300", NULL};
    gwh_options o = {
        .sandbox = true, .replay_flags = replay, .sandbox_flags = sandbox, .gateway_flags = flags};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 1400, 1);
    json_t *started = gwh_expect(payh_initiate(gw, buyer, b), 200);
    char pay[PAYH_ID_BYTES];
    snprintf(pay, sizeof(pay), "%s", gwh_str(started, "payment_id"));

    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT status || '/' || refund_status || '/' || webhooks FROM payments"
             " WHERE id = '%s'",
             pay);
    cr_assert_eq(kill(g->units[0].pid, SIGSTOP), 0);
    payh_click(g->sandbox, pay, true);
    payh_wait_pg(g, sql, "pending/none/1"); /* delivered once ... */
    hx_sleep_ms(600);                       /* ... and refused: the grid timed out */
    cr_assert_eq(kill(g->units[0].pid, SIGCONT), 0);
    payh_wait_booking(gw, buyer, b, "expired");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 1400), "FREE");

    payh_wait_pg(g, sql, "completed/refunded/1");
    json_t *at_provider =
        gwh_expect(gwh_http(g->sandbox, "GET", NULL, NULL, "/v1/payments/%s", pay), 200);
    cr_assert_str_eq(gwh_str(at_provider, "status"), "REFUNDED");
    cr_assert_eq(gwh_int(at_provider, "refunds"), 1);
    snprintf(sql, sizeof(sql), "%s",
             payh_audit_sql(b, "action IN ('payment_late', 'payment_refund')", true));
    payh_wait_pg(g, sql, "payment_late:refund_due:system,payment_refund:ok:system");
    gwh_stop_ok(g);
}

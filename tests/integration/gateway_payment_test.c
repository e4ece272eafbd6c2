/*
 * gateway_payment_test.c — buying a ticket end to end through the sandbox
 * provider, a declined payment, and the webhook's guarantees: signed or
 * refused, idempotent by payment id.
 *
 * The grid (gwh.h) with tixgrid-sandbox-pay wired to the gateway
 * (--payment-provider-url, the shared webhook secret).  The buyer pays as a
 * person would: initiatePayment, then the sandbox's page, whose Approve or
 * Decline sends the signed webhook and the browser back to the gateway.
 * Each outcome is checked in the grid (booking, seats), through the API
 * (payment-status, the browser's return) and in PostgreSQL (payments,
 * seats, the outbox and the audit log, written behind).
 */
#include "payh.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static void fini(void)
{
    gwh_fini_all();
}

TestSuite(gateway_payment, .fini = fini, .timeout = 90);

static gwh_grid *start(void)
{
    gwh_options o = {.sandbox = true};
    return gwh_start(&o);
}

/* SELECT ... for the payment, as text. */
static const char *pg_payment(gwh_grid *g, const char *payment_id, const char *expr)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT %s FROM payments WHERE id = '%s'", expr, payment_id);
    return pgt_query_text(g->db, sql);
}

Test(gateway_payment, a_purchase_through_the_sandbox_page_sells_the_seats_and_reaches_postgresql)
{
    gwh_grid *g = start();
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 100, 2);

    json_t *started = gwh_expect(payh_initiate(gw, buyer, b), 200);
    cr_assert_eq((uint64_t)gwh_int(started, "booking_id"), b);
    cr_assert_str_eq(gwh_str(started, "status"), "pending_payment");
    cr_assert_eq(gwh_int(started, "amount.amount"), 2 * 24900);
    cr_assert_str_eq(gwh_str(started, "amount.currency"), "EUR");
    char pay[PAYH_ID_BYTES];
    snprintf(pay, sizeof(pay), "%s", gwh_str(started, "payment_id"));
    const char *page = payh_page_path(gwh_str(started, "payment_url"));
    cr_assert_str_eq(payh_seat_status(gw, buyer, 100), "RESERVED");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 101), "RESERVED");
    json_t *st = gwh_expect(
        gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64 "/payment-status", b), 200);
    cr_assert_str_eq(gwh_str(st, "payment_id"), pay);
    cr_assert_str_eq(gwh_str(st, "status"), "pending");
    cr_assert_str_eq(gwh_str(st, "provider_status"), "PENDING");
    cr_assert_str_eq(gwh_str(st, "payment_url"), gwh_str(started, "payment_url"));
    gwh_expect_error(payh_initiate(gw, buyer, b), 409, "booking_state");

    /* The buyer's page, then Approve: the browser comes back to the gateway. */
    gwh_resp *shown = gwh_http(g->sandbox, "GET", NULL, NULL, "%s", page);
    cr_assert_eq(shown->status, 200);
    cr_assert(strstr(shown->body, "Approve") != NULL && strstr(shown->body, "498.00 EUR") != NULL,
              "%s", shown->body);
    const char *back = payh_click(g->sandbox, pay, true);
    cr_assert(strncmp(back, gw->url, strlen(gw->url)) == 0, "Location %s", back);
    cr_assert(strstr(back, "/api/payments/success?paymentId=") != NULL, "Location %s", back);

    payh_wait_booking(gw, buyer, b, "paid");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 100), "SOLD");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 101), "SOLD");
    st = gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64 "/payment-status", b),
                    200);
    cr_assert_str_eq(gwh_str(st, "status"), "completed");
    cr_assert_str_eq(gwh_str(st, "refund"), "none");
    json_t *ret = payh_wait_return(gw, back, "completed");
    cr_assert_str_eq(gwh_str(ret, "returned"), "success");
    cr_assert_eq((uint64_t)gwh_int(ret, "booking_id"), b);
    /* The sandbox counts the delivery once the gateway's answer reached it. */
    json_t *at_provider = NULL;
    for (int64_t deadline = hx_now_ms() + PAYH_WAIT_MS; hx_now_ms() < deadline; hx_sleep_ms(50)) {
        at_provider =
            gwh_expect(gwh_http(g->sandbox, "GET", NULL, NULL, "/v1/payments/%s", pay), 200);
        if (gwh_int(at_provider, "webhooksDelivered") > 0) {
            break;
        }
    }
    cr_assert_str_eq(gwh_str(at_provider, "status"), "CONFIRMED");
    cr_assert_eq(gwh_int(at_provider, "webhooksDelivered"), 1);

    /* PostgreSQL: the payment, the sold seats, the notification, the audit. */
    gwh_wait_drained(g, GWH_DEMO_PARTITION);
    cr_assert_str_eq(pg_payment(g, pay, "status || '/' || refund_status || '/' || amount_minor"),
                     "completed/none/49800");
    char sql[512], want[96];
    snprintf(want, sizeof(want), "%" PRIu64 "/sandbox/1", b);
    cr_assert_str_eq(pg_payment(g, pay, "booking_id || '/' || provider || '/' || webhooks"), want);
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(status || ':' || booking_id, ',' ORDER BY seat_no) FROM seats"
             " WHERE event_id = 1 AND seat_no IN (100, 101)");
    snprintf(want, sizeof(want), "SOLD:%" PRIu64 ",SOLD:%" PRIu64, b, b);
    cr_assert_str_eq(pgt_query_text(g->db, sql), want);
    snprintf(sql, sizeof(sql), "SELECT status FROM bookings WHERE id = %" PRIu64, b);
    cr_assert_str_eq(pgt_query_text(g->db, sql), "paid");
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM notification_outbox WHERE booking_id = %" PRIu64
             " AND kind = 'payment_confirmed'",
             b);
    payh_wait_pg(g, sql, "1");
    snprintf(sql, sizeof(sql), "%s", payh_audit_sql(b, "action LIKE 'payment%'", false));
    payh_wait_pg(g, sql, "payment_begin:ok,payment_confirm:ok");
    gwh_stop_ok(g);
}

Test(gateway_payment, a_declined_payment_fails_the_booking_and_frees_its_seats)
{
    gwh_grid *g = start();
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);

    /* Declined on the page. */
    uint64_t b = payh_booking_with_seats(gw, buyer, 300, 1);
    json_t *started = gwh_expect(payh_initiate(gw, buyer, b), 200);
    char pay[PAYH_ID_BYTES];
    snprintf(pay, sizeof(pay), "%s", gwh_str(started, "payment_id"));
    const char *back = payh_click(g->sandbox, pay, false);
    cr_assert(strstr(back, "/api/payments/fail?paymentId=") != NULL, "Location %s", back);
    payh_wait_booking(gw, buyer, b, "failed");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 300), "FREE");
    json_t *st = gwh_expect(
        gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64 "/payment-status", b), 200);
    cr_assert_str_eq(gwh_str(st, "status"), "failed");
    json_t *ret = payh_wait_return(gw, back, "failed");
    cr_assert_str_eq(gwh_str(ret, "returned"), "fail");
    /* The page cannot be used twice. */
    gwh_resp *again = gwh_http(g->sandbox, "POST", NULL, NULL, "/pay/%s/approve", pay);
    cr_assert_eq(again->status, 409);

    /* Declined by the provider itself (decline mode): the same end. */
    gwh_expect(gwh_http(g->sandbox, "POST", NULL, "{\"mode\": \"decline\"}", "/control"), 200);
    uint64_t c = payh_booking_with_seats(gw, buyer, 302, 1);
    gwh_expect(payh_initiate(gw, buyer, c), 200);
    payh_wait_booking(gw, buyer, c, "failed");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 302), "FREE");
    /* Another buyer takes the freed seat. */
    const char *other = gwh_login(gw, GWH_BUYER2, GWH_BUYER2_PASSWORD);
    payh_booking_with_seats(gw, other, 300, 1);

    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT status || '/' || refund_status FROM payments WHERE id = '%s'", pay);
    cr_assert_str_eq(pgt_query_text(g->db, sql), "failed/none");
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM payments WHERE booking_id = %" PRIu64
             " AND status = 'failed'",
             c);
    payh_wait_pg(g, sql, "1");
    gwh_stop_ok(g);
}

/* Delivers a signed webhook of payment pay with status, expecting 503
 * payment_not_begun with Retry-After. */
static void expect_not_begun(gwh_gateway *gw, const char *pay, const char *status)
{
    const char *body = payh_webhook_body(pay, status);
    gwh_resp *r = payh_webhook(gw, body, payh_sign(GWH_WEBHOOK_SECRET, body));
    gwh_expect_error(r, 503, "payment_not_begun");
    cr_assert(gwh_header(r, "retry-after") != NULL, "%s: no Retry-After", status);
}

/* A provider that answers before initiatePayment's payment_begin reached
 * the unit (a payment declined at once): the webhook is asked to come
 * again rather than end the booking under the buyer, and decides once the
 * begin can no longer be on its way. */
Test(gateway_payment, a_webhook_before_its_payment_began_is_asked_to_come_again)
{
    gwh_grid *g = start();
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 320, 1);
    /* What initiatePayment records before it asks the unit to begin. */
    char sql[640];
    snprintf(sql, sizeof(sql),
             "INSERT INTO payments (id, booking_id, provider, amount_minor, currency, status,"
             " user_id, payment_url) SELECT 'pay_early', %" PRIu64 ", 'sandbox', 1, 'EUR',"
             " 'pending', id, 'http://127.0.0.1/pay/pay_early' FROM users WHERE email = '%s'",
             b, GWH_BUYER);
    pgt_exec(g->db, sql);
    expect_not_begun(gw, "pay_early", "FAILED");
    expect_not_begun(gw, "pay_early", "CONFIRMED");
    cr_assert_str_eq(
        gwh_str(gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64, b), 200),
                "status"),
        "created");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 320), "SELECTED");

    /* Recorded an hour ago, the begin never came: FAILED fails the booking. */
    pgt_exec(g->db, "UPDATE payments SET created_at = now() - interval '1 hour'"
                    " WHERE id = 'pay_early'");
    const char *body = payh_webhook_body("pay_early", "FAILED");
    json_t *ok = gwh_expect(payh_webhook(gw, body, payh_sign(GWH_WEBHOOK_SECRET, body)), 200);
    cr_assert_str_eq(gwh_str(ok, "result"), "failed");
    payh_wait_booking(gw, buyer, b, "failed");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 320), "FREE");
    gwh_stop_ok(g);
}

Test(gateway_payment,
     a_webhook_sent_ten_times_sells_once_and_unsigned_or_forged_ones_change_nothing)
{
    gwh_grid *g = start();
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 500, 1);
    json_t *started = gwh_expect(payh_initiate(gw, buyer, b), 200);
    char pay[PAYH_ID_BYTES];
    snprintf(pay, sizeof(pay), "%s", gwh_str(started, "payment_id"));
    /* Statuses the gateway does not act on, however long (up to the 32
     * bytes kept): 200 ignored, nothing changes.  Longer: 400. */
    static const char *const others[] = {"PENDING", "PARTIALLY_REFUNDED",
                                         "A_STATUS_OF_THIRTY_TWO_BYTES_XYZ"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        const char *o = payh_webhook_body(pay, others[i]);
        json_t *ig = gwh_expect(payh_webhook(gw, o, payh_sign(GWH_WEBHOOK_SECRET, o)), 200);
        cr_assert_str_eq(gwh_str(ig, "result"), "ignored", "%s", others[i]);
    }
    const char *too_long = payh_webhook_body(pay, "A_STATUS_OF_THIRTY_THREE_BYTES_XY");
    gwh_expect_error(payh_webhook(gw, too_long, payh_sign(GWH_WEBHOOK_SECRET, too_long)), 400,
                     "invalid_field");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 500), "RESERVED");
    const char *body = payh_webhook_body(pay, "CONFIRMED");

    /* Missing, forged, or signed for another body or secret: 401, no change. */
    gwh_expect_error(payh_webhook(gw, body, NULL), 401, "missing_signature");
    gwh_expect_error(payh_webhook(gw, body, "00"), 401, "invalid_signature");
    gwh_expect_error(payh_webhook(gw, body, payh_sign("not-the-webhook-secret", body)), 401,
                     "invalid_signature");
    const char *other = payh_webhook_body(pay, "FAILED");
    gwh_expect_error(payh_webhook(gw, body, payh_sign(GWH_WEBHOOK_SECRET, other)), 401,
                     "invalid_signature");
    gwh_resp *r401 = payh_webhook(gw, body, "00");
    cr_assert(gwh_header(r401, "www-authenticate") != NULL);
    cr_assert_str_eq(
        gwh_str(gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64, b), 200),
                "status"),
        "pending_payment");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 500), "RESERVED");
    /* Signed but malformed, or about a payment nobody made. */
    const char *no_id = "{\"status\":\"CONFIRMED\"}";
    gwh_expect_error(payh_webhook(gw, no_id, payh_sign(GWH_WEBHOOK_SECRET, no_id)), 400,
                     "missing_field");
    const char *bad_id = payh_webhook_body("pay/../x", "CONFIRMED");
    gwh_expect_error(payh_webhook(gw, bad_id, payh_sign(GWH_WEBHOOK_SECRET, bad_id)), 400,
                     "invalid_field");
    const char *unknown = payh_webhook_body("pay_unknown", "CONFIRMED");
    gwh_expect_error(payh_webhook(gw, unknown, payh_sign(GWH_WEBHOOK_SECRET, unknown)), 404,
                     "not_found");

    /* The genuine one, ten times: one sale. */
    const char *sig = payh_sign(GWH_WEBHOOK_SECRET, body);
    for (int i = 0; i < 10; i++) {
        json_t *ok = gwh_expect(payh_webhook(gw, body, sig), 200);
        cr_assert_str_eq(gwh_str(ok, "result"), i == 0 ? "paid" : "duplicate", "delivery %d: %s", i,
                         gwh_str(ok, "result"));
        cr_assert_eq((uint64_t)gwh_int(ok, "booking_id"), b);
    }
    /* A FAILED after the sale changes nothing either. */
    json_t *late_fail =
        gwh_expect(payh_webhook(gw, other, payh_sign(GWH_WEBHOOK_SECRET, other)), 200);
    cr_assert_str_eq(gwh_str(late_fail, "result"), "duplicate");
    payh_wait_booking(gw, buyer, b, "paid");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 500), "SOLD");
    json_t *av = gwh_availability_settled(g, GWH_DEMO_EVENT, GWH_DEMO_PARTITION);
    cr_assert_eq(gwh_int(av, "totals.SOLD"), 1);
    gwh_expect_error(payh_initiate(gw, buyer, b), 409, "booking_state");
    gwh_resp *metrics = gwh_http(gw, "GET", NULL, NULL, "/metrics");
    cr_assert(strstr(metrics->body, "\ntixgrid_sales_total 1\n") != NULL, "one sale in /metrics");

    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT status || '/' || webhooks || '/' || provider_status FROM payments"
             " WHERE id = '%s'",
             pay);
    cr_assert_str_eq(pgt_query_text(g->db, sql), "completed/14/FAILED");
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM audit_log WHERE booking_id = %" PRIu64
             " AND action = 'payment_confirm'",
             b);
    payh_wait_pg(g, sql, "1");

    /* A booking without seats cannot be paid; the breaker is closed, in the seed's format. */
    uint64_t empty = gwh_booking_create(gw, buyer, GWH_DEMO_EVENT);
    gwh_expect_error(payh_initiate(gw, buyer, empty), 409, "no_seats");
    json_t *cb =
        gwh_expect(gwh_http(gw, "GET", NULL, NULL, "/api/payments/circuit-breaker-status"), 200);
    cr_assert(json_is_true(gwh_json_at(cb, "success")));
    cr_assert_str_eq(gwh_str(cb, "circuit_breaker.state"), "Closed");
    cr_assert_eq(gwh_int(cb, "circuit_breaker.failure_count"), 0);
    cr_assert_eq(gwh_int(cb, "circuit_breaker.threshold"), 5);
    cr_assert_eq(gwh_int(cb, "circuit_breaker.timeout_seconds"), 60);
    gwh_stop_ok(g);
}

Test(gateway_payment, a_refund_the_provider_could_not_make_at_once_is_made_later)
{
    static const char *const replay[] = {"--payment-window-ms", "1000", NULL};
    static const char *const sandbox[] = {"--webhook-attempts", "1", NULL};
    static const char *const flags[] = {"--allow-reset",    "--auth-rate", "0",
                                        "--refund-retry-s", "1",           NULL};
    gwh_options o = {
        .sandbox = true, .replay_flags = replay, .sandbox_flags = sandbox, .gateway_flags = flags};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 1100, 1);
    json_t *started = gwh_expect(payh_initiate(gw, buyer, b), 200);
    char pay[PAYH_ID_BYTES];
    snprintf(pay, sizeof(pay), "%s", gwh_str(started, "payment_id"));
    payh_wait_booking(gw, buyer, b, "expired");

    /* Approved too late while the provider's API fails: the refund is owed,
     * and the sandbox delivers that webhook only once. */
    gwh_expect(gwh_http(g->sandbox, "POST", NULL, "{\"mode\": \"fail\"}", "/control"), 200);
    payh_click(g->sandbox, pay, true);
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT refund_status FROM payments WHERE id = '%s'", pay);
    payh_wait_pg(g, sql, "due");

    /* The provider mends; the gateway's own retry refunds it. */
    gwh_expect(gwh_http(g->sandbox, "POST", NULL, "{\"mode\": \"normal\"}", "/control"), 200);
    payh_wait_pg(g, sql, "refunded");
    json_t *at_provider =
        gwh_expect(gwh_http(g->sandbox, "GET", NULL, NULL, "/v1/payments/%s", pay), 200);
    cr_assert_str_eq(gwh_str(at_provider, "status"), "REFUNDED");
    cr_assert_eq(gwh_int(at_provider, "refunds"), 1);
    cr_assert_str_eq(payh_seat_status(gw, buyer, 1100), "FREE");
    snprintf(sql, sizeof(sql), "%s",
             payh_audit_sql(b, "action IN ('payment_late', 'payment_refund')", true));
    payh_wait_pg(g, sql,
                 "payment_late:refund_due:127.0.0.1,payment_refund:provider_error:127.0.0.1,"
                 "payment_refund:ok:system");
    gwh_stop_ok(g);
}

/* A payment whose start was cut short and whose cleanup was lost stays
 * pending beside the one the buyer began next; its FAILED (the provider
 * gave up on it) must not end the booking now pending under the other. */
Test(gateway_payment, a_failure_of_a_payment_superseded_by_a_later_one_leaves_the_booking_alone)
{
    gwh_grid *g = start();
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 1500, 1);
    json_t *started = gwh_expect(payh_initiate(gw, buyer, b), 200);
    char pay[PAYH_ID_BYTES], sql[512];
    snprintf(pay, sizeof(pay), "%s", gwh_str(started, "payment_id"));
    snprintf(sql, sizeof(sql),
             "INSERT INTO payments (id, booking_id, provider, amount_minor, currency, status,"
             " created_at, updated_at, user_id) SELECT 'pay_cut_short', booking_id, provider,"
             " amount_minor, currency, 'pending', created_at - interval '1 minute',"
             " created_at - interval '1 minute', user_id FROM payments WHERE id = '%s'",
             pay);
    pgt_exec(g->db, sql);

    const char *body = payh_webhook_body("pay_cut_short", "FAILED");
    json_t *hook = gwh_expect(payh_webhook(gw, body, payh_sign(GWH_WEBHOOK_SECRET, body)), 200);
    cr_assert_str_eq(gwh_str(hook, "result"), "failed");
    cr_assert_str_eq(
        gwh_str(gwh_expect(gwh_http(gw, "GET", buyer, NULL, "/api/bookings/%" PRIu64, b), 200),
                "status"),
        "pending_payment");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 1500), "RESERVED");
    cr_assert_str_eq(
        pgt_query_text(g->db, "SELECT status FROM payments WHERE id = 'pay_cut_short'"), "failed");
    snprintf(sql, sizeof(sql), "%s", payh_audit_sql(b, "action = 'payment_fail'", false));
    payh_wait_pg(g, sql, "payment_fail:superseded");

    /* The payment the buyer is making still pays. */
    payh_click(g->sandbox, pay, true);
    payh_wait_booking(gw, buyer, b, "paid");
    cr_assert_str_eq(payh_seat_status(gw, buyer, 1500), "SOLD");
    gwh_stop_ok(g);
}

/* Sends a signed webhook on a connection of its own without waiting. */
static int webhook_send(gwh_gateway *gw, const char *body)
{
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "POST /api/webhook/payment HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nX-Signature: %s\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     payh_sign(GWH_WEBHOOK_SECRET, body), strlen(body), body);
    int fd = gwh_connect(gw);
    gwh_write(fd, req, (size_t)n);
    return fd;
}

/* Two deliveries of one late confirmation at the same time, the sandbox's
 * and one more, both reading the payment as pending while the unit is
 * frozen: one records and refunds it, the other finds it done (duplicate);
 * one audit of each, one refund. */
Test(gateway_payment, two_deliveries_at_once_of_a_late_payment_refund_it_once)
{
    static const char *const replay[] = {"--payment-window-ms", "1000", NULL};
    static const char *const flags[] = {"--auth-rate", "0", "--db-threads", "4", NULL};
    gwh_options o = {.sandbox = true, .replay_flags = replay, .gateway_flags = flags};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t b = payh_booking_with_seats(gw, buyer, 1300, 1);
    json_t *started = gwh_expect(payh_initiate(gw, buyer, b), 200);
    char pay[PAYH_ID_BYTES];
    snprintf(pay, sizeof(pay), "%s", gwh_str(started, "payment_id"));
    payh_wait_booking(gw, buyer, b, "expired");

    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT webhooks::text FROM payments WHERE id = '%s'", pay);
    cr_assert_eq(kill(g->units[0].pid, SIGSTOP), 0);
    payh_click(g->sandbox, pay, true); /* approved too late; the sandbox delivers */
    payh_wait_pg(g, sql, "1");
    int fd = webhook_send(gw, payh_webhook_body(pay, "CONFIRMED"));
    payh_wait_pg(g, sql, "2"); /* both read the row as pending */
    cr_assert_eq(kill(g->units[0].pid, SIGCONT), 0);
    size_t len;
    bool closed;
    char *reply = gwh_read_all(fd, 10000, &len, &closed);
    close(fd);
    cr_assert(strncmp(reply, "HTTP/1.1 200", 12) == 0, "%s", reply);
    cr_assert(strstr(reply, "\"result\":\"refunded\"") != NULL ||
                  strstr(reply, "\"result\":\"duplicate\"") != NULL,
              "%s", reply);
    snprintf(sql, sizeof(sql), "%s",
             payh_audit_sql(b, "action IN ('payment_late', 'payment_refund')", false));
    payh_wait_pg(g, sql, "payment_late:refund_due,payment_refund:ok");
    hx_sleep_ms(500); /* nothing more comes */
    cr_assert_str_eq(pgt_query_text(g->db, sql), "payment_late:refund_due,payment_refund:ok");
    json_t *at_provider =
        gwh_expect(gwh_http(g->sandbox, "GET", NULL, NULL, "/v1/payments/%s", pay), 200);
    cr_assert_eq(gwh_int(at_provider, "refunds"), 1);
    snprintf(sql, sizeof(sql),
             "SELECT status || '/' || refund_status FROM payments WHERE id = '%s'", pay);
    cr_assert_str_eq(pgt_query_text(g->db, sql), "completed/refunded");
    gwh_stop_ok(g);
}

/* While the audit log is behind (PostgreSQL's audit_log locked), purchase
 * operations answer 503 before they change anything, and so does a
 * webhook, whose outcome is audited too: the provider delivers it again.
 * Once the log has caught up, both are served. */
Test(gateway_payment, a_webhook_is_asked_to_come_again_while_the_audit_log_is_behind)
{
    const char *flags[] = {"--audit-queue-max", "1024", "--auth-rate", "0", NULL};
    gwh_options o = {.sandbox = true, .gateway_flags = flags};
    gwh_grid *g = gwh_start(&o);
    gwh_gateway *gw = g->gw;
    const char *buyer = gwh_login(gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    const char *body = payh_webhook_body("pay_nobody", "CONFIRMED");
    const char *sig = payh_sign(GWH_WEBHOOK_SECRET, body);
    long before = payh_webhook(gw, body, sig)->status;
    cr_assert_neq(before, 503);

    PGconn *lock = pgt_connect(g->pg);
    pgt_exec(lock, "BEGIN");
    pgt_exec(lock, "LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE");
    long status = 201;
    for (int i = 0; i < 1024 && status == 201; i++) {
        status = gwh_http(gw, "POST", buyer, "{\"event_id\": 1}", "/api/bookings")->status;
    }
    cr_assert_eq(status, 503, "booking creation never stopped: %ld", status);
    gwh_expect_error(gwh_http(gw, "POST", buyer, "{\"event_id\": 1}", "/api/bookings"), 503,
                     "audit_backlog");
    gwh_expect_error(payh_webhook(gw, body, sig), 503, "audit_backlog");

    pgt_exec(lock, "COMMIT");
    PQfinish(lock);
    int64_t deadline = hx_now_ms() + 10000;
    long after = 503;
    while (after == 503 && hx_now_ms() < deadline) {
        hx_sleep_ms(50);
        after = payh_webhook(gw, body, sig)->status;
    }
    cr_assert_eq(after, before, "once caught up: %ld, before the backlog: %ld", after, before);
    gwh_expect(gwh_http(gw, "POST", buyer, "{\"event_id\": 1}", "/api/bookings"), 201);
    gwh_stop_ok(g);
}

/*
 * payh.c — the payment tests' helpers (payh.h).
 */
#include "payh.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

uint64_t payh_booking_with_seats(gwh_gateway *gw, const char *auth, uint32_t s, uint32_t count)
{
    uint64_t b = gwh_booking_create(gw, auth, GWH_DEMO_EVENT);
    char body[160];
    if (count == 1) {
        snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_id\": %" PRIu64 "}", b,
                 GWH_SEAT_ID(GWH_DEMO_PARTITION, s));
    } else {
        snprintf(body, sizeof(body),
                 "{\"booking_id\": %" PRIu64 ", \"seat_ids\": [%" PRIu64 ", %" PRIu64 "]}", b,
                 GWH_SEAT_ID(GWH_DEMO_PARTITION, s), GWH_SEAT_ID(GWH_DEMO_PARTITION, s + 1));
    }
    gwh_expect(gwh_http(gw, "PATCH", auth, body, "/api/seats/select"), 200);
    return b;
}

gwh_resp *payh_initiate(gwh_gateway *gw, const char *auth, uint64_t booking)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 "}", booking);
    return gwh_http(gw, "PATCH", auth, body, "/api/bookings/initiatePayment");
}

const char *payh_page_path(const char *payment_url)
{
    cr_assert(strncmp(payment_url, "http://127.0.0.1:", 17) == 0, "payment_url %s", payment_url);
    const char *path = strchr(payment_url + 7, '/');
    cr_assert(path != NULL && strncmp(path, "/pay/", 5) == 0, "payment_url %s", payment_url);
    return path;
}

const char *payh_click(gwh_gateway *sandbox, const char *payment_id, bool approve)
{
    gwh_resp *r = gwh_http(sandbox, "POST", NULL, NULL, "/pay/%s/%s", payment_id,
                           approve ? "approve" : "decline");
    cr_assert_eq(r->status, 303, "%s: %ld %s", r->what, r->status, r->body);
    const char *location = gwh_header(r, "location");
    cr_assert(location != NULL, "303 without Location");
    static char copy[4][512];
    static int next;
    char *out = copy[next++ % 4];
    snprintf(out, sizeof(copy[0]), "%s", location);
    return out;
}

const char *payh_webhook_body(const char *payment_id, const char *status)
{
    static char body[4][256];
    static int next;
    char *out = body[next++ % 4];
    snprintf(out, sizeof(body[0]),
             "{\"paymentId\":\"%s\",\"status\":\"%s\",\"timestamp\":\"2026-11-22T01:00:00Z\"}",
             payment_id, status);
    return out;
}

const char *payh_sign(const char *secret, const char *body)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    static char hex[4][65];
    static int next;
    char *out = hex[next++ % 4];
    sodium_bin2hex(out, 65, mac, sizeof(mac));
    return out;
}

gwh_resp *payh_webhook(gwh_gateway *gw, const char *body, const char *signature)
{
    char header[96];
    snprintf(header, sizeof(header), "X-Signature: %s", signature != NULL ? signature : "");
    const char *const headers[] = {header, NULL};
    gwh_request_spec spec = {.method = "POST",
                             .path = "/api/webhook/payment",
                             .body = body,
                             .headers = signature != NULL ? headers : NULL};
    return gwh_send(gw, &spec);
}

void payh_wait_booking(gwh_gateway *gw, const char *auth, uint64_t booking, const char *status)
{
    int64_t deadline = hx_now_ms() + PAYH_WAIT_MS;
    const char *now = "";
    while (hx_now_ms() < deadline) {
        json_t *b =
            gwh_expect(gwh_http(gw, "GET", auth, NULL, "/api/bookings/%" PRIu64, booking), 200);
        now = gwh_str(b, "status");
        if (strcmp(now, status) == 0) {
            return;
        }
        hx_sleep_ms(50);
    }
    cr_assert_fail("booking %" PRIu64 " is %s, not %s, after %d ms", booking, now, status,
                   PAYH_WAIT_MS);
}

json_t *payh_wait_return(gwh_gateway *gw, const char *location, const char *status)
{
    cr_assert(strncmp(location, gw->url, strlen(gw->url)) == 0, "Location %s", location);
    int64_t deadline = hx_now_ms() + PAYH_WAIT_MS;
    json_t *ret;
    do {
        ret = gwh_expect(gwh_http(gw, "GET", NULL, NULL, "%s", location + strlen(gw->url)), 200);
        if (strcmp(gwh_str(ret, "status"), status) == 0) {
            return ret;
        }
        hx_sleep_ms(50);
    } while (hx_now_ms() < deadline);
    cr_assert_fail("the return %s shows %s, not %s, after %d ms", location, gwh_str(ret, "status"),
                   status, PAYH_WAIT_MS);
    return NULL;
}

const char *payh_seat_status(gwh_gateway *gw, const char *auth, uint32_t s)
{
    json_t *page = gwh_expect(
        gwh_http(gw, "GET", auth, NULL, "/api/seats?event_id=1&page=%u&pageSize=1", s + 1), 200);
    cr_assert_eq(gwh_int(page, "items.0.seat_no"), s);
    return gwh_str(page, "items.0.status");
}

void payh_wait_pg(gwh_grid *g, const char *sql, const char *want)
{
    int64_t deadline = hx_now_ms() + GWH_DRAIN_TIMEOUT_MS;
    const char *got = "";
    while (hx_now_ms() < deadline) {
        got = pgt_query_text(g->db, sql);
        if (got != NULL && strcmp(got, want) == 0) {
            return;
        }
        hx_sleep_ms(50);
    }
    cr_assert_fail("PostgreSQL: %s gave %s, not %s", sql, got != NULL ? got : "NULL", want);
}

const char *payh_audit_sql(uint64_t booking, const char *filter, bool who)
{
    static char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(action || ':' || outcome%s, ',' ORDER BY id) FROM audit_log"
             " WHERE booking_id = %" PRIu64 " AND %s",
             who ? " || ':' || coalesce(host(client_ip), 'system')" : "", booking, filter);
    return sql;
}

/*
 * payment_test.c — the payment provider's circuit breaker (it opens after
 * the threshold of failures in a row, refuses while open, lets exactly one
 * probe through after its timeout, and the probe alone decides) and the
 * webhook's signature check.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "breaker.h"
#include "provider.h"

static gw_breaker b;

static void fini(void)
{
    gw_breaker_destroy(&b);
}

TestSuite(gateway_breaker, .fini = fini);

/* One admitted call with the given outcome at now_ms; false if refused. */
static bool call(int64_t now_ms, bool success)
{
    bool probe;
    uint32_t retry;
    if (!gw_breaker_admit(&b, now_ms, &probe, &retry)) {
        return false;
    }
    gw_breaker_record(&b, success, probe, now_ms);
    return true;
}

Test(gateway_breaker, opens_after_threshold_failures_in_a_row_and_refuses)
{
    gw_breaker_init(&b, 3, 5000);
    cr_assert(call(0, false));
    cr_assert(call(1, false));
    cr_assert_eq(gw_breaker_read(&b, 1).state, GW_BREAKER_CLOSED);
    cr_assert_eq(gw_breaker_read(&b, 1).failures, 2);
    cr_assert(call(2, false));
    gw_breaker_view v = gw_breaker_read(&b, 2);
    cr_assert_eq(v.state, GW_BREAKER_OPEN);
    cr_assert_eq(v.failures, 3);
    cr_assert_eq(v.retry_after_ms, 5000);
    bool probe;
    uint32_t retry;
    cr_assert(!gw_breaker_admit(&b, 1002, &probe, &retry));
    cr_assert_eq(retry, 4000);
    cr_assert_eq(gw_breaker_read(&b, 1002).refused, 1);
}

Test(gateway_breaker, a_success_clears_the_count_of_failures_in_a_row)
{
    gw_breaker_init(&b, 3, 5000);
    cr_assert(call(0, false));
    cr_assert(call(1, false));
    cr_assert(call(2, true));
    cr_assert_eq(gw_breaker_read(&b, 2).failures, 0);
    cr_assert(call(3, false));
    cr_assert(call(4, false));
    cr_assert_eq(gw_breaker_read(&b, 4).state, GW_BREAKER_CLOSED);
}

Test(gateway_breaker, half_opens_after_timeout_with_one_probe_that_closes_on_success)
{
    gw_breaker_init(&b, 1, 1000);
    cr_assert(call(0, false));
    cr_assert_eq(gw_breaker_read(&b, 999).state, GW_BREAKER_OPEN);
    cr_assert_eq(gw_breaker_read(&b, 1000).state, GW_BREAKER_HALF_OPEN);
    bool probe, other;
    uint32_t retry;
    cr_assert(gw_breaker_admit(&b, 1000, &probe, &retry));
    cr_assert(probe);
    cr_assert(!gw_breaker_admit(&b, 1001, &other, &retry), "a second call while the probe is out");
    cr_assert_eq(retry, 1000);
    gw_breaker_record(&b, true, probe, 1002);
    gw_breaker_view v = gw_breaker_read(&b, 1002);
    cr_assert_eq(v.state, GW_BREAKER_CLOSED);
    cr_assert_eq(v.failures, 0);
    cr_assert(call(1003, true));
}

Test(gateway_breaker, a_failed_probe_opens_it_for_another_timeout)
{
    gw_breaker_init(&b, 2, 1000);
    cr_assert(call(0, false));
    cr_assert(call(0, false));
    cr_assert(call(1500, false), "the probe");
    gw_breaker_view v = gw_breaker_read(&b, 1500);
    cr_assert_eq(v.state, GW_BREAKER_OPEN);
    cr_assert_eq(v.retry_after_ms, 1000);
    cr_assert(!call(2499, true));
    cr_assert(call(2500, true), "the next probe");
    cr_assert_eq(gw_breaker_read(&b, 2500).state, GW_BREAKER_CLOSED);
}

Test(gateway_breaker, outcomes_of_calls_admitted_before_it_opened_change_nothing)
{
    gw_breaker_init(&b, 1, 1000);
    bool probe_a, probe_b;
    uint32_t retry;
    cr_assert(gw_breaker_admit(&b, 0, &probe_a, &retry));
    cr_assert(gw_breaker_admit(&b, 0, &probe_b, &retry));
    gw_breaker_record(&b, false, probe_a, 10);
    cr_assert_eq(gw_breaker_read(&b, 10).state, GW_BREAKER_OPEN);
    gw_breaker_record(&b, true, probe_b, 20);
    cr_assert_eq(gw_breaker_read(&b, 20).state, GW_BREAKER_OPEN, "a late success does not close");
    cr_assert_eq(gw_breaker_read(&b, 20).retry_after_ms, 990);
}

Test(gateway_breaker, an_abandoned_probe_lets_the_next_call_probe)
{
    gw_breaker_init(&b, 1, 1000);
    cr_assert(call(0, false));
    bool probe, next;
    uint32_t retry;
    cr_assert(gw_breaker_admit(&b, 1000, &probe, &retry));
    cr_assert(probe);
    gw_breaker_abandon(&b, probe);
    cr_assert_eq(gw_breaker_read(&b, 1001).state, GW_BREAKER_HALF_OPEN);
    cr_assert(gw_breaker_admit(&b, 1001, &next, &retry), "the probe's turn was given back");
    cr_assert(next);
    gw_breaker_record(&b, true, next, 1002);
    cr_assert_eq(gw_breaker_read(&b, 1002).state, GW_BREAKER_CLOSED);
}

Test(gateway_breaker, state_names_are_the_seeds)
{
    cr_assert_str_eq(gw_breaker_state_name(GW_BREAKER_CLOSED), "Closed");
    cr_assert_str_eq(gw_breaker_state_name(GW_BREAKER_OPEN), "Open");
    cr_assert_str_eq(gw_breaker_state_name(GW_BREAKER_HALF_OPEN), "HalfOpen");
}

/* ---- Webhook signatures ---------------------------------------------------- */

#define SECRET "sandbox-webhook-secret-1"
#define BODY   "{\"paymentId\":\"pay_1\",\"status\":\"CONFIRMED\"}"

static void sign(const char *secret, const char *body, char hex[65])
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, 65, mac, sizeof(mac));
}

static bool signed_ok(const char *body, const char *sig)
{
    return gw_webhook_signed(SECRET, body, strlen(body), sig, strlen(sig));
}

Test(gateway_webhook, the_hmac_of_the_body_under_the_secret_is_accepted)
{
    char hex[65], prefixed[72];
    sign(SECRET, BODY, hex);
    cr_assert(signed_ok(BODY, hex));
    snprintf(prefixed, sizeof(prefixed), "sha256=%s", hex);
    cr_assert(signed_ok(BODY, prefixed));
    for (char *c = hex; *c != '\0'; c++) {
        *c = (char)(*c >= 'a' && *c <= 'f' ? *c - 'a' + 'A' : *c);
    }
    cr_assert(signed_ok(BODY, hex), "upper-case hex");
}

Test(gateway_webhook, another_body_secret_or_a_malformed_signature_is_refused)
{
    char hex[65];
    sign(SECRET, BODY, hex);
    cr_assert(!signed_ok(BODY " ", hex), "one byte more in the body");
    char other[65];
    sign("another-secret-of-the-same", BODY, other);
    cr_assert(!signed_ok(BODY, other), "another secret");
    cr_assert(!signed_ok(BODY, ""));
    hex[63] = '\0';
    cr_assert(!signed_ok(BODY, hex), "one hex digit short");
    hex[63] = 'g';
    cr_assert(!signed_ok(BODY, hex), "not hex");
}

Test(gateway_webhook, payment_ids_are_url_and_sql_safe)
{
    cr_assert(gw_payment_id_valid("pay_0123-abcXYZ"));
    cr_assert(!gw_payment_id_valid(""));
    cr_assert(!gw_payment_id_valid("pay/1"));
    cr_assert(!gw_payment_id_valid("pay 1"));
    cr_assert(!gw_payment_id_valid("pay'1"));
    char long_id[200];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    cr_assert(!gw_payment_id_valid(long_id));
    long_id[128] = '\0';
    cr_assert(gw_payment_id_valid(long_id));
}

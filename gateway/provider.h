/*
 * provider.h — the payment provider behind an interface, and the circuit
 * breaker around every call to it (gateway/README.md, "Payments").
 *
 * A provider creates a payment for an order (its id and the page where the
 * buyer pays), tells a payment's status, and refunds one.  Each operation
 * is asynchronous on the request's loop thread, like a grid or database
 * operation: it starts, the handler returns, and its done continues on the
 * same loop once the provider answered (never if the request went away).
 * Whatever the provider, its answer about the payment itself arrives later
 * as a signed webhook (payments.c).
 *
 * gw_pay_create, gw_pay_status and gw_pay_refund put the breaker in front
 * of the provider: while it is open they refuse at once with
 * TG_EUNAVAILABLE (the caller answers 503 with Retry-After), and each
 * admitted call's outcome is counted.  A failure is the provider's: no
 * answer, a timeout, a 5xx, or an answer that cannot be read.  A 4xx is a
 * refusal of this one request (it is reported, but the provider is up).
 *
 * The one implementation here speaks the REST protocol the sandbox
 * provider serves (gateway/sandbox/README.md); another provider is another
 * gw_provider.
 */
#ifndef TIXGRID_GATEWAY_PROVIDER_H
#define TIXGRID_GATEWAY_PROVIDER_H

#include "breaker.h"
#include "gateway.h"

#define GW_PAYMENT_ID_BYTES 129u /* 1..128 bytes of [A-Za-z0-9_-] and NUL */

typedef struct {
    tg_err err;           /* TG_OK: the provider did it; else why not */
    bool provider_failed; /* counts against the breaker */
    long http_status;     /* the provider's, 0 when none came */
    char payment_id[GW_PAYMENT_ID_BYTES];
    char payment_url[GW_URL_BYTES];
    char status[32];   /* the provider's word: "PENDING", "CONFIRMED", "REFUNDED", ... */
    char message[256]; /* for the log and the 502's message */
} gw_pay_result;

typedef void (*gw_pay_done)(gw_req *r, const gw_pay_result *res);

typedef struct {
    tg_booking_id booking_id;
    int64_t amount_minor;
    const char *currency;
    const char *description;
} gw_pay_order;

/* A provider.  Each function starts one call for r and, when it returns
 * TG_OK, calls gw_pay_finish exactly once later (on r's loop thread, only
 * while r is alive). */
typedef struct {
    const char *name; /* payments.provider */
    tg_err (*create)(gw_req *r, const gw_pay_order *order);
    tg_err (*status)(gw_req *r, const char *payment_id);
    tg_err (*refund)(gw_req *r, const char *payment_id, int64_t amount_minor);
    /* The refund again, blocking until the provider answered (or the
     * timeout): only for the gateway's own background threads (refunds.c),
     * never a loop thread.  Fills *res; returns res->err. */
    tg_err (*refund_now)(const gw_config *cfg, const char *payment_id, int64_t amount_minor,
                         gw_pay_result *res);
    /* The payment's status, blocking likewise (refunds.c's reconciliation). */
    tg_err (*status_now)(const gw_config *cfg, const char *payment_id, gw_pay_result *res);
} gw_provider;

/* The REST provider (the sandbox's protocol) at cfg.payment_provider_url. */
extern const gw_provider gw_provider_rest;

/* For providers: the outcome of the call in flight. */
void gw_pay_finish(gw_req *r, gw_pay_result *res);

/* r went away with a provider call in flight (call.c, loop thread): its
 * outcome will not be counted, and a probe lets the next call probe. */
void gw_pay_abandon(gw_req *r);

/* The provider configured, or NULL (payments answer 503). */
const gw_provider *gw_provider_of(gw_gateway *gw);

/* Calls through the breaker.  TG_EUNAVAILABLE: the breaker refused (done
 * never runs; gw_breaker_read says for how long); other errors as
 * gw_http_send. */
tg_err gw_pay_create(gw_req *r, const gw_pay_order *order, gw_pay_done done);
tg_err gw_pay_status(gw_req *r, const char *payment_id, gw_pay_done done);
tg_err gw_pay_refund(gw_req *r, const char *payment_id, int64_t amount_minor, gw_pay_done done);

/* refund_now and status_now through the breaker (a background thread;
 * they block); TG_EBUSY when the breaker refused (nothing was asked). */
tg_err gw_pay_refund_now(gw_gateway *gw, const char *payment_id, int64_t amount_minor,
                         gw_pay_result *res);
tg_err gw_pay_status_now(gw_gateway *gw, const char *payment_id, gw_pay_result *res);

/* The breaker's state now (any thread). */
gw_breaker_view gw_pay_breaker(gw_gateway *gw);

/* A payment id as providers may name them: 1..128 bytes of [A-Za-z0-9_-]
 * (it goes into URLs and SQL parameters). */
bool gw_payment_id_valid(const char *id);

/* Whether sig (hex, optionally "sha256=" first) is the HMAC-SHA256 of
 * body under secret; compared in constant time. */
bool gw_webhook_signed(const char *secret, const void *body, size_t len, const char *sig,
                       size_t sig_len);

#endif

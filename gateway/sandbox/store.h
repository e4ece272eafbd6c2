/*
 * store.h — the sandbox's payments and webhook deliveries (store.c).
 * Every function may be called from any thread.
 */
#ifndef TIXGRID_SANDBOX_STORE_H
#define TIXGRID_SANDBOX_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "sandbox.h"

typedef enum { SBX_PENDING = 0, SBX_CONFIRMED, SBX_FAILED, SBX_REFUNDED } sbx_status;

typedef struct {
    char id[32]; /* "pay_" + 24 hex digits */
    char order_id[32];
    int64_t amount;
    char currency[4];
    char description[128];
    char notify_url[SBX_URL_BYTES];
    char success_url[SBX_URL_BYTES];
    char fail_url[SBX_URL_BYTES];
    sbx_status status;
    uint32_t refunds;            /* refunds made (0 or 1) */
    uint32_t webhooks_delivered; /* answered 2xx */
    int64_t decided_ms;          /* when approved or declined: the webhook's timestamp */
} sbx_payment;

typedef enum { SBX_DECIDE_OK, SBX_DECIDE_UNKNOWN, SBX_DECIDE_ALREADY } sbx_decide_result;

const char *sbx_status_name(sbx_status s);

/* Starts the delivery threads (cfg: secret, webhook_attempts and
 * _threads, payments_max). */
bool sbx_store_start(const sbx_config *cfg);
/* Stops it; undelivered webhooks are dropped (logged). */
void sbx_store_stop(void);

/* Gives p an id and stores it PENDING (copy in out); false when
 * payments_max are stored already, or out of memory. */
bool sbx_store_create(sbx_payment *p, sbx_payment *out);
bool sbx_store_get(const char *id, sbx_payment *out);
/* PENDING → CONFIRMED (approve) or FAILED, and its webhook queued. */
sbx_decide_result sbx_store_decide(const char *id, bool approve, sbx_payment *out);
/* CONFIRMED → REFUNDED; a REFUNDED one is OK again; others ALREADY. */
sbx_decide_result sbx_store_refund(const char *id, sbx_payment *out);

/* The hex HMAC-SHA256 of body under secret. */
void sbx_sign(const char *secret, const char *body, char hex[65]);

#endif

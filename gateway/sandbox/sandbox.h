/*
 * sandbox.h — tixgrid-sandbox-pay, a payment provider for development,
 * demos and tests (gateway/sandbox/README.md).
 *
 * It speaks the REST protocol of gateway/provider.c, serves a page where a
 * buyer approves or declines a payment, and calls the payment's notifyUrl
 * (the gateway's webhook) with the outcome, signed with HMAC-SHA256 under
 * the shared secret.  It can be told (flags, or POST /control) to fail its
 * API with 500, to answer it only after a delay, never to answer it, or to
 * decline every payment on its own.
 *
 * One libuv loop + h2o serves HTTP; a pool of threads delivers webhooks
 * (blocking libcurl, with retries), so that a slow gateway never holds the
 * page.  Payments live in memory, at most payments_max, under one mutex.
 */
#ifndef TIXGRID_SANDBOX_H
#define TIXGRID_SANDBOX_H

#include <stdint.h>

#define SBX_URL_BYTES         512u
#define SBX_SECRET_BYTES_MAX  256u
#define SBX_PAYMENTS_MAX        262144u /* the default of --payments-max: more get 503 */
#define SBX_PAYMENTS_LIMIT      16777216u /* the largest --payments-max */
#define SBX_WEBHOOK_THREADS     8u /* the default of --webhook-threads */
#define SBX_WEBHOOK_THREADS_MAX 64u

typedef enum {
    SBX_MODE_NORMAL = 0,  /* answer at once, wait for the buyer */
    SBX_MODE_FAIL = 1,    /* the API answers 500 */
    SBX_MODE_DELAY = 2,   /* the API answers after delay_ms */
    SBX_MODE_TIMEOUT = 3, /* the API never answers */
    SBX_MODE_DECLINE = 4, /* every new payment is declined at once (webhook FAILED) */
} sbx_mode;

typedef struct {
    char listen_host[64];
    uint16_t listen_port;
    char public_url[SBX_URL_BYTES]; /* how browsers reach the page */
    char secret[SBX_SECRET_BYTES_MAX + 1];
    sbx_mode mode;
    uint32_t delay_ms;
    uint32_t webhook_attempts; /* per webhook, 200 ms apart doubling */
    uint32_t webhook_threads;  /* webhooks delivered at once */
    uint32_t payments_max;     /* payments kept; more are refused with 503 */
} sbx_config;

/* Flags and TIXGRID_* variables; -1: run, else an exit code. */
int sbx_config_parse(sbx_config *cfg, int argc, char **argv);

/* "normal", "fail", ...; -1 when unknown. */
int sbx_mode_parse(const char *name);
const char *sbx_mode_name(sbx_mode mode);

/* Serves until SIGTERM or SIGINT; returns the exit code. */
int sbx_run(const sbx_config *cfg);

#endif

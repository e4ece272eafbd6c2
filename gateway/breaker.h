/*
 * breaker.h — the circuit breaker that guards every call to the payment
 * provider (seed 001, "Circuit Breaker"; gateway/README.md, "Payments").
 *
 * Closed: calls go through; each failure adds one to a count of failures in
 * a row, a success clears it, and `threshold` failures in a row open the
 * breaker.  Open: calls are refused at once (the caller answers 503) for
 * `timeout_ms`.  Then the first call to come is let through as the probe
 * (HalfOpen) while every other one is still refused: its success closes the
 * breaker, its failure opens it for another `timeout_ms`.  Outcomes of calls
 * that were let through before the breaker opened change nothing once it is
 * open: only the probe decides.
 *
 * One breaker per process, shared by every loop thread under a mutex: a
 * provider that is down is down for all of them, and the lock is taken
 * twice per provider call, which is rare next to seat operations.  The
 * clock is passed in (monotonic ms) so that tests can drive it.
 */
#ifndef TIXGRID_GATEWAY_BREAKER_H
#define TIXGRID_GATEWAY_BREAKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    GW_BREAKER_CLOSED = 0,
    GW_BREAKER_OPEN = 1,
    GW_BREAKER_HALF_OPEN = 2,
} gw_breaker_state;

typedef struct {
    pthread_mutex_t lock; /* protects everything below */
    uint32_t threshold;   /* failures in a row that open it, >= 1 */
    uint32_t timeout_ms;  /* open this long before the probe */
    gw_breaker_state state;
    uint32_t failures; /* in a row; kept while open, for the status */
    int64_t opened_ms; /* when it last opened (monotonic) */
    bool probe_out;    /* half-open: the probe is in flight */
    uint64_t refused;  /* calls refused while open, for /metrics */
} gw_breaker;

/* What the status route and /metrics show. */
typedef struct {
    gw_breaker_state state;
    uint32_t failures;
    uint32_t threshold;
    uint32_t timeout_ms;
    uint32_t retry_after_ms; /* open: until the probe may go; else 0 */
    uint64_t refused;
} gw_breaker_view;

void gw_breaker_init(gw_breaker *b, uint32_t threshold, uint32_t timeout_ms);
void gw_breaker_destroy(gw_breaker *b);

/* May a call go to the provider now (any thread)?  True: the caller must
 * report its outcome with gw_breaker_record, passing *probe back.  False:
 * refused; *retry_after_ms says when to try again. */
bool gw_breaker_admit(gw_breaker *b, int64_t now_ms, bool *probe, uint32_t *retry_after_ms);

/* The outcome of an admitted call. */
void gw_breaker_record(gw_breaker *b, bool success, bool probe, int64_t now_ms);

/* An admitted call whose outcome will never be known (its request went
 * away first, or it could not be sent): it counts for nothing, and a probe
 * gives its turn to the next call. */
void gw_breaker_abandon(gw_breaker *b, bool probe);

/* The state as of now_ms: an open breaker whose timeout has passed shows as
 * HalfOpen, since the next call will be its probe. */
gw_breaker_view gw_breaker_read(gw_breaker *b, int64_t now_ms);

/* "Closed", "Open", "HalfOpen" (the seed's names). */
const char *gw_breaker_state_name(gw_breaker_state s);

#endif

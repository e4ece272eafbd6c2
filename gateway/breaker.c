/*
 * breaker.c — the payment provider's circuit breaker (breaker.h says how it
 * behaves).
 *
 * Rejected: a sliding window of outcomes (failure rate over the last N
 * calls).  Payments are rare next to seat operations; with few calls a rate
 * swings wildly, while "N failures in a row" is what the seed configures
 * and what an operator can reason about.
 */
#include "breaker.h"

#include "tixgrid/assert.h"

void gw_breaker_init(gw_breaker *b, uint32_t threshold, uint32_t timeout_ms)
{
    TG_ASSERT(threshold >= 1);
    *b = (gw_breaker){.threshold = threshold, .timeout_ms = timeout_ms};
    pthread_mutex_init(&b->lock, NULL);
}

void gw_breaker_destroy(gw_breaker *b)
{
    pthread_mutex_destroy(&b->lock);
}

static bool timeout_passed(const gw_breaker *b, int64_t now_ms)
{
    return now_ms - b->opened_ms >= (int64_t)b->timeout_ms;
}

static uint32_t wait_left_ms(const gw_breaker *b, int64_t now_ms)
{
    int64_t left = b->opened_ms + (int64_t)b->timeout_ms - now_ms;
    return left > 0 ? (uint32_t)left : 0;
}

bool gw_breaker_admit(gw_breaker *b, int64_t now_ms, bool *probe, uint32_t *retry_after_ms)
{
    pthread_mutex_lock(&b->lock);
    bool admitted = false;
    *probe = false;
    *retry_after_ms = 0;
    if (b->state == GW_BREAKER_OPEN && timeout_passed(b, now_ms)) {
        b->state = GW_BREAKER_HALF_OPEN;
        b->probe_out = false;
    }
    if (b->state == GW_BREAKER_CLOSED) {
        admitted = true;
    } else if (b->state == GW_BREAKER_HALF_OPEN && !b->probe_out) {
        b->probe_out = true;
        *probe = admitted = true;
    } else {
        /* Open, or half-open with the probe out: try again in a second at
         * the latest, when the probe will most likely have decided. */
        *retry_after_ms = b->state == GW_BREAKER_OPEN ? wait_left_ms(b, now_ms) : 1000;
        b->refused++;
    }
    pthread_mutex_unlock(&b->lock);
    return admitted;
}

static void open_now(gw_breaker *b, int64_t now_ms)
{
    b->state = GW_BREAKER_OPEN;
    b->opened_ms = now_ms;
    b->probe_out = false;
}

void gw_breaker_record(gw_breaker *b, bool success, bool probe, int64_t now_ms)
{
    pthread_mutex_lock(&b->lock);
    if (probe) {
        TG_ASSERT(b->state == GW_BREAKER_HALF_OPEN && b->probe_out);
        if (success) {
            b->state = GW_BREAKER_CLOSED;
            b->failures = 0;
            b->probe_out = false;
        } else {
            b->failures++;
            open_now(b, now_ms);
        }
    } else if (b->state == GW_BREAKER_CLOSED) {
        b->failures = success ? 0 : b->failures + 1;
        if (b->failures >= b->threshold) {
            open_now(b, now_ms);
        }
    }
    pthread_mutex_unlock(&b->lock);
}

void gw_breaker_abandon(gw_breaker *b, bool probe)
{
    pthread_mutex_lock(&b->lock);
    if (probe && b->state == GW_BREAKER_HALF_OPEN) {
        b->probe_out = false;
    }
    pthread_mutex_unlock(&b->lock);
}

gw_breaker_view gw_breaker_read(gw_breaker *b, int64_t now_ms)
{
    pthread_mutex_lock(&b->lock);
    gw_breaker_view v = {
        .state = b->state,
        .failures = b->failures,
        .threshold = b->threshold,
        .timeout_ms = b->timeout_ms,
        .refused = b->refused,
    };
    if (b->state == GW_BREAKER_OPEN) {
        if (timeout_passed(b, now_ms)) {
            v.state = GW_BREAKER_HALF_OPEN;
        } else {
            v.retry_after_ms = wait_left_ms(b, now_ms);
        }
    }
    pthread_mutex_unlock(&b->lock);
    return v;
}

const char *gw_breaker_state_name(gw_breaker_state s)
{
    switch (s) {
    case GW_BREAKER_CLOSED:
        return "Closed";
    case GW_BREAKER_OPEN:
        return "Open";
    case GW_BREAKER_HALF_OPEN:
        return "HalfOpen";
    }
    return "Closed";
}

/*
 * ratelimit.h — a token bucket per client key (an IP address) for the
 * register and login routes, which each cost an argon2id hash.
 *
 * A key may take `burst` attempts at once, then rate_per_s a second.  The
 * table is fixed at open; when it is full a new key takes the place of one
 * whose bucket has refilled (which has nothing left to remember), else of
 * the least recently used, whose client then starts again with a full
 * bucket.  So size it above the number of clients that can be mid-burst at
 * once.
 *
 * Threads: every function but open and close may be called from any thread
 * at once.
 */
#ifndef TIXGRID_GATEWAY_RATELIMIT_H
#define TIXGRID_GATEWAY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tixgrid/err.h"

/* Keys remembered at most. */
#define GW_RATELIMIT_ENTRIES_MAX (1u << 20)
/* Entries per set (a set is searched whole under its lock), and lock
 * stripes (a power of two). */
#define GW_RATELIMIT_WAYS  8u
#define GW_RATELIMIT_LOCKS 64u
/* Refill rate, in attempts per second, and burst, in attempts, at most;
 * they keep the bucket's arithmetic far from overflow. */
#define GW_RATELIMIT_RATE_PER_S_MAX 1000000u
#define GW_RATELIMIT_BURST_MAX      1000000u

typedef struct gw_ratelimit gw_ratelimit;

/* A limiter remembering `entries` keys (rounded up to a power of two, at
 * least GW_RATELIMIT_WAYS), all allocated here.  rate_per_s 0 makes a
 * limiter that allows everything (and remembers nothing).  TG_EINVAL when
 * entries is 0 or above GW_RATELIMIT_ENTRIES_MAX, or burst is 0, or either
 * rate is above its maximum.  Start-up only. */
tg_err gw_ratelimit_open(uint32_t entries, uint32_t rate_per_s, uint32_t burst, gw_ratelimit **out);

/* Takes one attempt from key[0..key_len)'s bucket at now_ms (milliseconds
 * on any clock, best a monotonic one; a step back refills nothing).  True when allowed;
 * false with the seconds until the next attempt would be allowed (at least
 * 1) in *retry_after_s, which may be NULL. */
bool gw_ratelimit_take(gw_ratelimit *l, const char *key, size_t key_len, int64_t now_ms,
                       uint32_t *retry_after_s);

/* Frees the limiter; no other call may be running.  NULL is fine. */
void gw_ratelimit_close(gw_ratelimit *l);

#endif

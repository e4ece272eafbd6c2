/*
 * ratelimit.c — token buckets per client key (see ratelimit.h).
 *
 * A bucket is counted in thousandths of a token, so that refilling is exact
 * integer arithmetic: rate_per_s tokens a second is rate_per_s thousandths
 * a millisecond.  A bucket is brought up to date only when its key is
 * seen; nothing sweeps the table.
 *
 * The table is sets of GW_RATELIMIT_WAYS entries.  A key is known by its
 * SipHash-2-4 under a random per-process key (so clients cannot aim their
 * addresses at one set to evict others), which picks the set and is the
 * entry's identity; two keys sharing a 64-bit tag would share a bucket,
 * which is harmless and, with a secret hash key, not something a client can
 * arrange.  Rejected: storing the key's bytes — longer entries for a
 * comparison that buys nothing.  Each set is guarded by one of
 * GW_RATELIMIT_LOCKS striped mutexes, held for the scan and the arithmetic
 * only; the hash is computed before the lock is taken.
 */
#include "ratelimit.h"

#include "auth.h"
#include "tixgrid/assert.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Thousandths of a token in one token. */
#define MILLI 1000u

typedef struct {
    uint64_t tag;          /* SipHash of the key with bit 0 set; 0: empty */
    int64_t updated_ms;    /* when tokens_milli was last brought up to date */
    uint64_t tokens_milli; /* 0..burst * MILLI */
} rl_entry;

/* A mutex padded to a cache line so that neighbouring stripes do not share
 * one. */
typedef union {
    pthread_mutex_t mutex;
    char pad[64];
} rl_lock;

struct gw_ratelimit {
    uint8_t key[crypto_shorthash_KEYBYTES]; /* immutable */
    uint32_t rate_per_s;                    /* 0: disabled; immutable */
    uint64_t capacity_milli;                /* burst * MILLI; immutable */
    uint32_t set_mask;                      /* sets - 1; immutable */
    rl_entry *entries; /* set s is entries[s * WAYS ..]; each set under locks[s % LOCKS] */
    rl_lock locks[GW_RATELIMIT_LOCKS];
};

_Static_assert((GW_RATELIMIT_LOCKS & (GW_RATELIMIT_LOCKS - 1)) == 0, "locks: a power of two");
/* The largest refill computed, capacity ms times rate, fits in 64 bits. */
_Static_assert(INT64_MAX / GW_RATELIMIT_RATE_PER_S_MAX / MILLI > GW_RATELIMIT_BURST_MAX,
               "refill arithmetic");

tg_err gw_ratelimit_open(uint32_t entries, uint32_t rate_per_s, uint32_t burst, gw_ratelimit **out)
{
    TG_ASSERT(out != NULL);
    *out = NULL;
    if (rate_per_s > GW_RATELIMIT_RATE_PER_S_MAX ||
        (rate_per_s != 0 && (entries == 0 || entries > GW_RATELIMIT_ENTRIES_MAX || burst == 0 ||
                             burst > GW_RATELIMIT_BURST_MAX))) {
        return TG_EINVAL;
    }
    tg_err err = gw_auth_init();
    if (err != TG_OK) {
        return err;
    }
    uint32_t sets = 1;
    while (rate_per_s != 0 && sets * GW_RATELIMIT_WAYS < entries) {
        sets *= 2;
    }
    gw_ratelimit *l = calloc(1, sizeof(*l));
    rl_entry *e = rate_per_s != 0 ? calloc((size_t)sets * GW_RATELIMIT_WAYS, sizeof(*e)) : NULL;
    if (l == NULL || (rate_per_s != 0 && e == NULL)) {
        free(l);
        free(e);
        return TG_ENOMEM;
    }
    randombytes_buf(l->key, sizeof(l->key));
    l->rate_per_s = rate_per_s;
    l->capacity_milli = (uint64_t)burst * MILLI;
    l->set_mask = sets - 1;
    l->entries = e;
    for (uint32_t i = 0; i < GW_RATELIMIT_LOCKS; i++) {
        pthread_mutex_init(&l->locks[i].mutex, NULL);
    }
    *out = l;
    return TG_OK;
}

/* The bucket's tokens at now_ms: what it had plus what has dripped in since,
 * at most full. */
static uint64_t rl_tokens_at(const gw_ratelimit *l, const rl_entry *e, int64_t now_ms)
{
    if (now_ms <= e->updated_ms) {
        return e->tokens_milli;
    }
    uint64_t elapsed_ms = (uint64_t)(now_ms - e->updated_ms);
    /* rate_per_s >= 1, so capacity_milli ms refill a bucket from empty. */
    if (elapsed_ms >= l->capacity_milli) {
        return l->capacity_milli;
    }
    uint64_t tokens = e->tokens_milli + elapsed_ms * l->rate_per_s;
    return tokens < l->capacity_milli ? tokens : l->capacity_milli;
}

/* How willingly an entry makes room for a new key: 0 empty, 1 its bucket
 * is full again (it remembers nothing), 2 in use. */
static unsigned rl_rank(const gw_ratelimit *l, const rl_entry *e, int64_t now_ms)
{
    if (e->tag == 0) {
        return 0;
    }
    return rl_tokens_at(l, e, now_ms) == l->capacity_milli ? 1 : 2;
}

/* The entry of tag in set e, claiming the lowest-ranked one (the least
 * recently used among equals) for a new key, with a full bucket.  Called
 * with the set's lock held. */
static rl_entry *rl_entry_of(const gw_ratelimit *l, rl_entry *e, uint64_t tag, int64_t now_ms)
{
    rl_entry *victim = &e[0];
    unsigned victim_rank = 3;
    for (uint32_t w = 0; w < GW_RATELIMIT_WAYS; w++) {
        if (e[w].tag == tag) {
            return &e[w];
        }
        unsigned rank = rl_rank(l, &e[w], now_ms);
        if (rank < victim_rank || (rank == victim_rank && e[w].updated_ms < victim->updated_ms)) {
            victim = &e[w];
            victim_rank = rank;
        }
    }
    victim->tag = tag;
    victim->updated_ms = now_ms;
    victim->tokens_milli = l->capacity_milli;
    return victim;
}

bool gw_ratelimit_take(gw_ratelimit *l, const char *key, size_t key_len, int64_t now_ms,
                       uint32_t *retry_after_s)
{
    TG_ASSERT(l != NULL && (key != NULL || key_len == 0));
    if (retry_after_s != NULL) {
        *retry_after_s = 0;
    }
    if (l->rate_per_s == 0) {
        return true;
    }
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)key, key_len, l->key);
    uint64_t tag = 1;
    for (unsigned i = 0; i < sizeof(h); i++) {
        tag |= (uint64_t)h[i] << (8 * i);
    }
    uint32_t set = (uint32_t)(tag >> 32) & l->set_mask;
    pthread_mutex_t *lock = &l->locks[set & (GW_RATELIMIT_LOCKS - 1)].mutex;

    pthread_mutex_lock(lock);
    rl_entry *e = rl_entry_of(l, &l->entries[(size_t)set * GW_RATELIMIT_WAYS], tag, now_ms);
    uint64_t tokens = rl_tokens_at(l, e, now_ms);
    bool allowed = tokens >= MILLI;
    e->tokens_milli = allowed ? tokens - MILLI : tokens;
    e->updated_ms = now_ms > e->updated_ms ? now_ms : e->updated_ms;
    pthread_mutex_unlock(lock);

    if (!allowed && retry_after_s != NULL) {
        uint64_t wait_ms = (MILLI - tokens + l->rate_per_s - 1) / l->rate_per_s;
        *retry_after_s = (uint32_t)((wait_ms + 999) / 1000);
        *retry_after_s = *retry_after_s == 0 ? 1 : *retry_after_s;
    }
    return allowed;
}

void gw_ratelimit_close(gw_ratelimit *l)
{
    if (l == NULL) {
        return;
    }
    for (uint32_t i = 0; i < GW_RATELIMIT_LOCKS; i++) {
        pthread_mutex_destroy(&l->locks[i].mutex);
    }
    free(l->entries);
    free(l);
}

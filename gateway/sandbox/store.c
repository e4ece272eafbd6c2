/*
 * store.c — the sandbox's payments (in memory) and the thread that
 * delivers their webhooks.
 *
 * A payment is created PENDING and decided once: CONFIRMED or FAILED (by
 * the buyer's click, or at once in decline mode); a CONFIRMED one may then
 * be REFUNDED (idempotent: a second refund changes nothing).  Each decision
 * queues one webhook, delivered by one thread with blocking libcurl so
 * that the page never waits for the gateway: POST notifyUrl with the
 * signed body, retried up to webhook_attempts times (200 ms, 400 ms, ...)
 * until a 2xx.  Everything here is under one mutex: the loop thread and
 * the delivery thread share the payments.
 */
#include "store.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#define INDEX_EMPTY UINT32_MAX
#define CAP_FIRST   1024u

/* Payments grow by doubling up to max; an open-addressing index (ids are
 * random, so a plain hash spreads them) finds one by id; the deliveries
 * waiting are a ring of payment indexes.  A payment is decided once and
 * queues one webhook, so the ring never holds more than there are
 * payments: it grows with them and is never full. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a delivery queued, or stopping */
    pthread_cond_t stop; /* stopping: ends a retry's pause */
    sbx_payment *payments;
    uint32_t count, cap, max;
    uint32_t *index; /* index_slots: a power of two, at least 2 x cap */
    uint32_t index_slots;
    uint32_t *queue; /* cap slots */
    uint32_t head, len;
    bool stopping;
    pthread_t threads[SBX_WEBHOOK_THREADS_MAX];
    uint32_t threads_started;
    char secret[SBX_SECRET_BYTES_MAX + 1];
    uint32_t attempts;
} store = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .wake = PTHREAD_COND_INITIALIZER,
           .stop = PTHREAD_COND_INITIALIZER};

const char *sbx_status_name(sbx_status s)
{
    static const char *const names[] = {"PENDING", "CONFIRMED", "FAILED", "REFUNDED"};
    return (unsigned)s < 4 ? names[s] : "PENDING";
}

static uint32_t id_hash(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *id != '\0'; id++) {
        h = (h ^ (unsigned char)*id) * 16777619u;
    }
    return h;
}

/* The index slot of id: its payment's, or the empty one it would take. */
static uint32_t *slot_locked(const char *id)
{
    uint32_t mask = store.index_slots - 1;
    for (uint32_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
        uint32_t *slot = &store.index[i];
        if (*slot == INDEX_EMPTY || strcmp(store.payments[*slot].id, id) == 0) {
            return slot;
        }
    }
}

static sbx_payment *find_locked(const char *id)
{
    if (store.cap == 0) {
        return NULL;
    }
    uint32_t *slot = slot_locked(id);
    return *slot == INDEX_EMPTY ? NULL : &store.payments[*slot];
}

/* Room for one more payment: doubles the payments, the index (rebuilt)
 * and the ring (unrolled from its head); false at max or out of memory. */
static bool grow_locked(void)
{
    if (store.count < store.cap) {
        return true;
    }
    uint32_t cap = store.cap == 0 ? CAP_FIRST : 2 * store.cap;
    cap = cap > store.max ? store.max : cap;
    if (cap <= store.cap) {
        return false;
    }
    uint32_t slots = 1;
    while (slots < 2 * cap) {
        slots *= 2;
    }
    sbx_payment *payments = realloc(store.payments, (size_t)cap * sizeof(*payments));
    uint32_t *index = malloc((size_t)slots * sizeof(*index));
    uint32_t *queue = malloc((size_t)cap * sizeof(*queue));
    if (payments == NULL || index == NULL || queue == NULL) {
        store.payments = payments != NULL ? payments : store.payments;
        free(index);
        free(queue);
        return false;
    }
    for (uint32_t i = 0; i < store.len; i++) {
        queue[i] = store.queue[(store.head + i) % store.cap];
    }
    free(store.queue);
    free(store.index);
    store.payments = payments;
    store.queue = queue;
    store.head = 0;
    store.index = index;
    store.index_slots = slots;
    store.cap = cap;
    memset(index, 0xff, (size_t)slots * sizeof(*index)); /* INDEX_EMPTY */
    for (uint32_t i = 0; i < store.count; i++) {
        *slot_locked(store.payments[i].id) = i;
    }
    return true;
}

bool sbx_store_create(sbx_payment *p, sbx_payment *out)
{
    unsigned char random[12];
    randombytes_buf(random, sizeof(random));
    char hex[25];
    sodium_bin2hex(hex, sizeof(hex), random, sizeof(random));
    snprintf(p->id, sizeof(p->id), "pay_%s", hex);
    p->status = SBX_PENDING;
    pthread_mutex_lock(&store.lock);
    bool ok = grow_locked();
    if (ok) {
        uint32_t i = store.count++;
        store.payments[i] = *p;
        *slot_locked(p->id) = i;
        *out = *p;
    }
    pthread_mutex_unlock(&store.lock);
    return ok;
}

bool sbx_store_get(const char *id, sbx_payment *out)
{
    pthread_mutex_lock(&store.lock);
    sbx_payment *p = find_locked(id);
    if (p != NULL) {
        *out = *p;
    }
    pthread_mutex_unlock(&store.lock);
    return p != NULL;
}

/* p's webhook queued for the delivery threads (lock held).  Its body is
 * made when it is sent, from the payment, with the time of the decision. */
static void webhook_queue_locked(sbx_payment *p)
{
    TG_ASSERT(store.len < store.cap); /* one webhook per payment at most */
    p->decided_ms = tg_now_ms();
    store.queue[(store.head + store.len++) % store.cap] = (uint32_t)(p - store.payments);
    pthread_cond_signal(&store.wake);
}

sbx_decide_result sbx_store_decide(const char *id, bool approve, sbx_payment *out)
{
    pthread_mutex_lock(&store.lock);
    sbx_payment *p = find_locked(id);
    sbx_decide_result res = p == NULL                  ? SBX_DECIDE_UNKNOWN
                            : p->status != SBX_PENDING ? SBX_DECIDE_ALREADY
                                                       : SBX_DECIDE_OK;
    if (res == SBX_DECIDE_OK) {
        p->status = approve ? SBX_CONFIRMED : SBX_FAILED;
        webhook_queue_locked(p);
    }
    if (p != NULL) {
        *out = *p;
    }
    pthread_mutex_unlock(&store.lock);
    return res;
}

sbx_decide_result sbx_store_refund(const char *id, sbx_payment *out)
{
    pthread_mutex_lock(&store.lock);
    sbx_payment *p = find_locked(id);
    sbx_decide_result res = SBX_DECIDE_UNKNOWN;
    if (p != NULL && p->status == SBX_CONFIRMED) {
        p->status = SBX_REFUNDED;
        p->refunds++;
        res = SBX_DECIDE_OK;
    } else if (p != NULL) {
        res = p->status == SBX_REFUNDED ? SBX_DECIDE_OK : SBX_DECIDE_ALREADY;
    }
    if (p != NULL) {
        *out = *p;
    }
    pthread_mutex_unlock(&store.lock);
    return res;
}

void sbx_sign(const char *secret, const char *body, char hex[65])
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, 65, mac, sizeof(mac));
}

/* ---- Delivery ---------------------------------------------------------------- */

typedef struct {
    CURL *easy; /* kept from one webhook to the next: its connection is reused */
    char url[SBX_URL_BYTES];
    char body[512];
    char signature[65];
} deliverer;

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/* The signed webhook of payment i as it stands (lock held). */
static void webhook_format_locked(deliverer *d, uint32_t i)
{
    const sbx_payment *p = &store.payments[i];
    char at[TG_RFC3339_BYTES];
    tg_format_rfc3339(at, p->decided_ms);
    snprintf(d->url, sizeof(d->url), "%s", p->notify_url);
    snprintf(d->body, sizeof(d->body),
             "{\"paymentId\":\"%s\",\"status\":\"%s\",\"orderId\":\"%s\",\"amount\":%lld,"
             "\"currency\":\"%s\",\"timestamp\":\"%s\"}",
             p->id, sbx_status_name(p->status), p->order_id, (long long)p->amount, p->currency, at);
    sbx_sign(store.secret, d->body, d->signature);
}

static long post(deliverer *d)
{
    char sig[80];
    snprintf(sig, sizeof(sig), "X-Signature: %s", d->signature);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, sig);
    CURL *e = d->easy;
    curl_easy_setopt(e, CURLOPT_URL, d->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    long status = 0;
    if (h != NULL && curl_easy_perform(e) == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    return status;
}

/* Waits up to ms unless stopping (lock held); true when stopping.  It
 * waits on `stop`, not `wake`, so that a queued webhook's signal goes to
 * an idle thread and is never spent on one that is pausing. */
static bool pause_locked(uint32_t ms)
{
    struct timespec until = tg_realtime_after_ms(ms);
    while (!store.stopping && pthread_cond_timedwait(&store.stop, &store.lock, &until) == 0) {
    }
    return store.stopping;
}

/* Payment i's webhook, retried until a 2xx or the attempts are spent
 * (lock held, released while sending). */
static void deliver_locked(deliverer *d, uint32_t i)
{
    webhook_format_locked(d, i);
    uint32_t wait_ms = 200;
    for (uint32_t attempt = 1; attempt <= store.attempts; attempt++) {
        pthread_mutex_unlock(&store.lock);
        long status = post(d);
        pthread_mutex_lock(&store.lock);
        /* Every failure is told; a success only where debugging (a
         * sell-out makes tens of thousands). */
        tg_log(status >= 200 && status <= 299 ? TG_LOG_DEBUG : TG_LOG_INFO,
               "webhook %s attempt %u: HTTP %ld", store.payments[i].id, attempt, status);
        if (status >= 200 && status <= 299) {
            store.payments[i].webhooks_delivered++;
            return;
        }
        if (attempt == store.attempts) {
            tg_log(TG_LOG_WARN, "webhook %s %s dropped after %u attempts", store.payments[i].id,
                   sbx_status_name(store.payments[i].status), attempt);
        }
        if (attempt == store.attempts || pause_locked(wait_ms)) {
            return;
        }
        wait_ms *= 2;
    }
}

static void *delivery_main(void *arg)
{
    deliverer *d = arg;
    pthread_mutex_lock(&store.lock);
    while (!store.stopping) {
        if (store.len == 0) {
            pthread_cond_wait(&store.wake, &store.lock);
            continue;
        }
        uint32_t i = store.queue[store.head];
        store.head = (store.head + 1) % store.cap;
        store.len--;
        deliver_locked(d, i);
    }
    pthread_mutex_unlock(&store.lock);
    curl_easy_cleanup(d->easy);
    free(d);
    return NULL;
}

static bool thread_start(void)
{
    deliverer *d = calloc(1, sizeof(*d));
    d->easy = d != NULL ? curl_easy_init() : NULL;
    if (d == NULL || d->easy == NULL ||
        pthread_create(&store.threads[store.threads_started], NULL, delivery_main, d) != 0) {
        if (d != NULL && d->easy != NULL) {
            curl_easy_cleanup(d->easy);
        }
        free(d);
        return false;
    }
    store.threads_started++;
    return true;
}

bool sbx_store_start(const sbx_config *cfg)
{
    snprintf(store.secret, sizeof(store.secret), "%s", cfg->secret);
    store.attempts = cfg->webhook_attempts;
    store.max = cfg->payments_max;
    bool ok = true;
    while (ok && store.threads_started < cfg->webhook_threads) {
        ok = thread_start();
    }
    if (!ok) {
        tg_log(TG_LOG_ERROR, "cannot start the webhook threads");
        sbx_store_stop();
    }
    return ok;
}

void sbx_store_stop(void)
{
    pthread_mutex_lock(&store.lock);
    store.stopping = true;
    if (store.len > 0) {
        tg_log(TG_LOG_WARN, "%u webhooks not delivered at exit", store.len);
    }
    pthread_cond_broadcast(&store.wake);
    pthread_cond_broadcast(&store.stop);
    pthread_mutex_unlock(&store.lock);
    for (uint32_t t = 0; t < store.threads_started; t++) {
        pthread_join(store.threads[t], NULL);
    }
    store.threads_started = 0;
}

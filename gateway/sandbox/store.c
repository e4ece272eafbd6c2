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

#include "tixgrid/clock.h"
#include "tixgrid/log.h"

typedef struct {
    uint32_t payment; /* index */
    char body[512];
    char signature[65];
} delivery;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    sbx_payment payments[SBX_PAYMENTS_MAX];
    uint32_t count;
    delivery queue[SBX_WEBHOOK_QUEUE_MAX];
    uint32_t head, len;
    bool stopping;
    pthread_t thread;
    char secret[SBX_SECRET_BYTES_MAX + 1];
    uint32_t attempts;
} store = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

const char *sbx_status_name(sbx_status s)
{
    static const char *const names[] = {"PENDING", "CONFIRMED", "FAILED", "REFUNDED"};
    return (unsigned)s < 4 ? names[s] : "PENDING";
}

static sbx_payment *find_locked(const char *id)
{
    for (uint32_t i = 0; i < store.count; i++) {
        if (strcmp(store.payments[i].id, id) == 0) {
            return &store.payments[i];
        }
    }
    return NULL;
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
    bool ok = store.count < SBX_PAYMENTS_MAX;
    if (ok) {
        store.payments[store.count++] = *p;
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

/* The signed webhook of p's current status, queued (lock held). */
static void webhook_queue_locked(const sbx_payment *p)
{
    if (store.len == SBX_WEBHOOK_QUEUE_MAX) {
        tg_log(TG_LOG_WARN, "webhook queue full: %s %s not delivered", p->id,
               sbx_status_name(p->status));
        return;
    }
    delivery *d = &store.queue[(store.head + store.len++) % SBX_WEBHOOK_QUEUE_MAX];
    d->payment = (uint32_t)(p - store.payments);
    char now[TG_RFC3339_BYTES];
    tg_format_rfc3339(now, tg_now_ms());
    /* Formatted apart: the payment and the queue are both in `store`. */
    char body[sizeof(d->body)];
    snprintf(body, sizeof(body),
             "{\"paymentId\":\"%s\",\"status\":\"%s\",\"orderId\":\"%s\",\"amount\":%lld,"
             "\"currency\":\"%s\",\"timestamp\":\"%s\"}",
             p->id, sbx_status_name(p->status), p->order_id, (long long)p->amount, p->currency,
             now);
    memcpy(d->body, body, sizeof(body));
    sbx_sign(store.secret, d->body, d->signature);
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

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static long post(const char *url, const delivery *d)
{
    CURL *e = curl_easy_init();
    if (e == NULL) {
        return 0;
    }
    char sig[80];
    snprintf(sig, sizeof(sig), "X-Signature: %s", d->signature);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, sig);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    long status = 0;
    if (curl_easy_perform(e) == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return status;
}

/* Waits up to ms unless stopping (lock held); true when stopping. */
static bool pause_locked(uint32_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    while (!store.stopping && pthread_cond_timedwait(&store.wake, &store.lock, &until) == 0) {
    }
    return store.stopping;
}

static void deliver_locked(const delivery *d)
{
    char url[SBX_URL_BYTES];
    snprintf(url, sizeof(url), "%s", store.payments[d->payment].notify_url);
    uint32_t wait_ms = 200;
    for (uint32_t attempt = 1; attempt <= store.attempts; attempt++) {
        pthread_mutex_unlock(&store.lock);
        long status = post(url, d);
        pthread_mutex_lock(&store.lock);
        tg_log(TG_LOG_INFO, "webhook %s attempt %u: HTTP %ld", store.payments[d->payment].id,
               attempt, status);
        if (status >= 200 && status <= 299) {
            store.payments[d->payment].webhooks_delivered++;
            return;
        }
        if (attempt == store.attempts || pause_locked(wait_ms)) {
            return;
        }
        wait_ms *= 2;
    }
}

static void *delivery_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&store.lock);
    while (!store.stopping) {
        if (store.len == 0) {
            pthread_cond_wait(&store.wake, &store.lock);
            continue;
        }
        delivery d = store.queue[store.head];
        store.head = (store.head + 1) % SBX_WEBHOOK_QUEUE_MAX;
        store.len--;
        deliver_locked(&d);
    }
    pthread_mutex_unlock(&store.lock);
    return NULL;
}

bool sbx_store_start(const char *secret, uint32_t attempts)
{
    snprintf(store.secret, sizeof(store.secret), "%s", secret);
    store.attempts = attempts;
    return pthread_create(&store.thread, NULL, delivery_main, NULL) == 0;
}

void sbx_store_stop(void)
{
    pthread_mutex_lock(&store.lock);
    store.stopping = true;
    if (store.len > 0) {
        tg_log(TG_LOG_WARN, "%u webhooks not delivered at exit", store.len);
    }
    pthread_cond_broadcast(&store.wake);
    pthread_mutex_unlock(&store.lock);
    pthread_join(store.thread, NULL);
}

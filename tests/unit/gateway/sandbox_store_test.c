/*
 * sandbox_store_test.c — the payment sandbox's store (gateway/sandbox/store.c):
 * many payments, found by id as they grow, and every decision's webhook
 * delivered once, signed, by the pool of delivery threads.
 *
 * The webhooks go to a sink in this process: a loopback listener that
 * answers every POST 200 on keep-alive connections (a thread each) and
 * keeps the bodies and signatures it received.
 */
#include "../../../gateway/sandbox/store.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tixgrid/clock.h"

#define SECRET   "sandbox-store-secret-1"
#define PAYMENTS 3000u /* past the first capacities (1,024, 2,048): the index is rebuilt */

static struct {
    int listener;
    uint16_t port;
    pthread_mutex_t lock;
    char (*bodies)[512];
    char (*signatures)[65];
    uint32_t received;
    atomic_uint connections;
} sink = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Reads one request (headers, then Content-Length bytes); false at EOF. */
static bool sink_read(int fd, char *buf, size_t cap, char **body, size_t *body_len)
{
    size_t len = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0) {
            return false;
        }
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    const char *cl = strcasestr(buf, "Content-Length:");
    size_t want = cl != NULL ? strtoul(cl + 15, NULL, 10) : 0;
    size_t head = (size_t)(end + 4 - buf);
    while (len < head + want && len < cap - 1) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0) {
            return false;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    *body = buf + head;
    *body_len = want;
    return true;
}

static void sink_keep(const char *buf, const char *body, size_t body_len)
{
    const char *sig = strcasestr(buf, "X-Signature: ");
    pthread_mutex_lock(&sink.lock);
    if (sink.received < 2 * PAYMENTS && body_len < 512) {
        memcpy(sink.bodies[sink.received], body, body_len);
        sink.bodies[sink.received][body_len] = '\0';
        snprintf(sink.signatures[sink.received], 65, "%.64s", sig != NULL ? sig + 13 : "");
        sink.received++;
    }
    pthread_mutex_unlock(&sink.lock);
}

static void *sink_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    char *body;
    size_t body_len;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    while (sink_read(fd, buf, sizeof(buf), &body, &body_len)) {
        sink_keep(buf, body, body_len);
        if (write(fd, ok, sizeof(ok) - 1) != (ssize_t)(sizeof(ok) - 1)) {
            break;
        }
    }
    close(fd);
    return NULL;
}

static void *sink_accept(void *arg)
{
    (void)arg;
    int fd;
    while ((fd = accept(sink.listener, NULL, NULL)) >= 0) {
        atomic_fetch_add(&sink.connections, 1);
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, sink_conn, (void *)(intptr_t)fd), 0);
        pthread_detach(t);
    }
    return NULL;
}

static void sink_start(void)
{
    sink.bodies = calloc(2 * PAYMENTS, sizeof(*sink.bodies));
    sink.signatures = calloc(2 * PAYMENTS, sizeof(*sink.signatures));
    cr_assert(sink.bodies != NULL && sink.signatures != NULL);
    sink.listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(sink.listener, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(sink.listener, 512), 0);
    socklen_t len = sizeof(a);
    cr_assert_eq(getsockname(sink.listener, (struct sockaddr *)&a, &len), 0);
    sink.port = ntohs(a.sin_port);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, sink_accept, NULL), 0);
    pthread_detach(t);
}

static void store_start(uint32_t payments_max)
{
    sbx_config cfg = {.webhook_attempts = 3, .webhook_threads = 8, .payments_max = payments_max};
    snprintf(cfg.secret, sizeof(cfg.secret), "%s", SECRET);
    cr_assert(sbx_store_start(&cfg));
}

static sbx_payment payment(uint32_t n)
{
    sbx_payment p = {.amount = 1000 + n};
    snprintf(p.order_id, sizeof(p.order_id), "%u", n);
    snprintf(p.currency, sizeof(p.currency), "EUR");
    snprintf(p.notify_url, sizeof(p.notify_url), "http://127.0.0.1:%u/webhook", sink.port);
    return p;
}

Test(sandbox_store, payments_past_the_limit_are_refused_and_the_others_stay)
{
    sink_start();
    store_start(3);
    sbx_payment p, out;
    char ids[3][32];
    for (uint32_t n = 0; n < 3; n++) {
        p = payment(n);
        cr_assert(sbx_store_create(&p, &out));
        snprintf(ids[n], sizeof(ids[n]), "%s", out.id);
    }
    p = payment(3);
    cr_assert_not(sbx_store_create(&p, &out), "a fourth payment was stored over --payments-max 3");
    for (uint32_t n = 0; n < 3; n++) {
        cr_assert(sbx_store_get(ids[n], &out));
        cr_assert_eq(out.amount, 1000 + n);
    }
    cr_assert_not(sbx_store_get("pay_000000000000000000000000", &out));
    sbx_store_stop();
}

/* Decides payment n of ids (approved when even) and checks the answer. */
static void decide(char (*ids)[32], uint32_t n)
{
    sbx_payment out;
    cr_assert_eq(sbx_store_decide(ids[n], n % 2 == 0, &out), SBX_DECIDE_OK);
    cr_assert_eq(sbx_store_decide(ids[n], true, &out), SBX_DECIDE_ALREADY);
}

Test(sandbox_store, thousands_of_decisions_each_deliver_one_signed_webhook)
{
    sink_start();
    store_start(PAYMENTS);
    static char ids[PAYMENTS][32];
    sbx_payment p, out;
    /* Decisions interleaved with creations: webhooks wait in the queue
     * while it grows under them. */
    for (uint32_t n = 0; n < PAYMENTS; n++) {
        p = payment(n);
        cr_assert(sbx_store_create(&p, &out), "payment %u refused", n);
        snprintf(ids[n], sizeof(ids[n]), "%s", out.id);
        if (n % 3 == 2) {
            decide(ids, n - 2);
            decide(ids, n - 1);
        }
    }
    for (uint32_t n = PAYMENTS - PAYMENTS % 3; n < PAYMENTS; n++) {
        decide(ids, n);
    }
    for (uint32_t n = 0; n < PAYMENTS; n++) {
        if (n % 3 == 2) {
            decide(ids, n);
        }
    }
    int64_t bound = tg_mono_ns() + (int64_t)20 * 1000000000;
    uint32_t delivered = 0;
    while (delivered < PAYMENTS && tg_mono_ns() < bound) {
        delivered = 0;
        for (uint32_t n = 0; n < PAYMENTS; n++) {
            cr_assert(sbx_store_get(ids[n], &out), "payment %u lost", n);
            delivered += out.webhooks_delivered;
        }
        usleep(20000);
    }
    sbx_store_stop();
    cr_assert_eq(delivered, PAYMENTS, "%u of %u webhooks delivered in 20 s", delivered, PAYMENTS);
    cr_assert_eq(sink.received, PAYMENTS, "the sink got %u webhooks", sink.received);
    cr_assert_leq(atomic_load(&sink.connections), 8u,
                  "%u connections for 8 delivery threads: connections are not reused",
                  atomic_load(&sink.connections));
    for (uint32_t i = 0; i < sink.received; i++) {
        char sig[65];
        sbx_sign(SECRET, sink.bodies[i], sig);
        cr_assert_str_eq(sink.signatures[i], sig, "webhook %s", sink.bodies[i]);
    }
    /* Each payment's webhook once, with the payment's decision. */
    static char got[PAYMENTS][32];
    for (uint32_t i = 0; i < PAYMENTS; i++) {
        char status[16];
        cr_assert_eq(sscanf(sink.bodies[i], "{\"paymentId\":\"%31[^\"]\",\"status\":\"%15[A-Z]\"",
                            got[i], status),
                     2, "webhook %s", sink.bodies[i]);
        cr_assert(sbx_store_get(got[i], &out), "a webhook for an unknown payment: %s", got[i]);
        cr_assert_str_eq(status, sbx_status_name(out.status));
        cr_assert_str_eq(status, atoi(out.order_id) % 2 == 0 ? "CONFIRMED" : "FAILED");
    }
    qsort(got, PAYMENTS, sizeof(got[0]), (int (*)(const void *, const void *))strcmp);
    for (uint32_t i = 1; i < PAYMENTS; i++) {
        cr_assert_str_neq(got[i - 1], got[i], "payment %s's webhook arrived twice", got[i]);
    }
}

/* ---- The sandbox's settings (config.c) -------------------------------------- */

static int parse(sbx_config *cfg, const char *const *flags)
{
    char *argv[16] = {"tixgrid-sandbox-pay"};
    int argc = 1;
    for (; flags[argc - 1] != NULL; argc++) {
        argv[argc] = (char *)flags[argc - 1];
    }
    return sbx_config_parse(cfg, argc, argv);
}

Test(sandbox_config, the_delivery_and_capacity_settings_have_defaults_flags_and_variables)
{
    sbx_config cfg;
    cr_assert_eq(parse(&cfg, (const char *const[]){"--secret", SECRET, NULL}), -1);
    cr_assert_eq(cfg.webhook_threads, SBX_WEBHOOK_THREADS);
    cr_assert_eq(cfg.payments_max, SBX_PAYMENTS_MAX);
    cr_assert_eq(parse(&cfg, (const char *const[]){"--secret", SECRET, "--webhook-threads", "64",
                                                   "--payments-max", "16777216", NULL}),
                 -1);
    cr_assert_eq(cfg.webhook_threads, 64u);
    cr_assert_eq(cfg.payments_max, 16777216u);
    cr_assert_eq(setenv("TIXGRID_SANDBOX_WEBHOOK_THREADS", "3", 1), 0);
    cr_assert_eq(setenv("TIXGRID_SANDBOX_PAYMENTS_MAX", "5", 1), 0);
    cr_assert_eq(parse(&cfg, (const char *const[]){"--secret", SECRET, NULL}), -1);
    cr_assert_eq(cfg.webhook_threads, 3u);
    cr_assert_eq(cfg.payments_max, 5u);
}

Test(sandbox_config, bad_delivery_and_capacity_settings_are_usage_errors)
{
    static const char *const bad[][2] = {
        {"--webhook-threads", "0"},  {"--webhook-threads", "65"},       {"--webhook-threads", "x"},
        {"--webhook-threads", "-1"}, {"--payments-max", "0"},           {"--payments-max", "16777217"},
        {"--payments-max", "1e6"},   {"--payments-max", "99999999999"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sbx_config cfg;
        cr_assert_eq(parse(&cfg, (const char *const[]){"--secret", SECRET, bad[i][0], bad[i][1],
                                                       NULL}),
                     64, "%s %s", bad[i][0], bad[i][1]);
    }
    cr_assert_eq(setenv("TIXGRID_SANDBOX_PAYMENTS_MAX", "0", 1), 0);
    sbx_config cfg;
    cr_assert_eq(parse(&cfg, (const char *const[]){"--secret", SECRET, NULL}), 64);
}

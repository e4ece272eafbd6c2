/*
 * provider.c — the breaker around the payment provider, and the REST
 * provider (provider.h says what each call promises).
 *
 * The REST protocol, served by gateway/sandbox (its README has the
 * details), in short:
 *   POST {base}/v1/payments {orderId, amount, currency, description,
 *        notifyUrl, successUrl, failUrl} → 201 {paymentId, paymentUrl, status}
 *   GET  {base}/v1/payments/{id} → 200 {paymentId, status, ...}
 *   POST {base}/v1/payments/{id}/refund {amount} → 200 {paymentId, status: "REFUNDED"}
 * The provider calls notifyUrl (this gateway's webhook) with the outcome,
 * and sends the buyer's browser to successUrl or failUrl.
 *
 * One call per request at a time (like every operation of a request): its
 * bookkeeping lives in the request's pool (r->pay_call).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "provider.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

typedef enum { PAY_CREATE, PAY_STATUS, PAY_REFUND } pay_op;

typedef struct gw_pay_call {
    pay_op op;
    bool probe;       /* the breaker's half-open probe */
    gw_pay_done done; /* the caller's */
    char payment_id[GW_PAYMENT_ID_BYTES];
} gw_pay_call;

const gw_provider *gw_provider_of(gw_gateway *gw)
{
    return gw->cfg.payment_provider_url[0] != '\0' ? &gw_provider_rest : NULL;
}

gw_breaker_view gw_pay_breaker(gw_gateway *gw)
{
    return gw_breaker_read(&gw->breaker, tg_mono_ms());
}

/* ---- The breaker around every call ---------------------------------------- */

void gw_pay_finish(gw_req *r, gw_pay_result *res)
{
    gw_pay_call *c = r->pay_call;
    TG_ASSERT(c != NULL);
    r->pay_call = NULL;
    gw_breaker_record(&r->gw->breaker, !res->provider_failed, c->probe, tg_mono_ms());
    if (res->err != TG_OK) {
        tg_log(TG_LOG_WARN, "payment provider: %s: %s",
               c->op == PAY_CREATE   ? "create"
               : c->op == PAY_STATUS ? "status"
                                     : "refund",
               res->message);
    }
    c->done(r, res);
}

static tg_err pay_start(gw_req *r, pay_op op, gw_pay_done done, gw_pay_call **out)
{
    TG_ASSERT(r->pay_call == NULL);
    if (gw_provider_of(r->gw) == NULL) {
        return TG_EUNAVAILABLE;
    }
    bool probe;
    uint32_t retry_ms;
    if (!gw_breaker_admit(&r->gw->breaker, tg_mono_ms(), &probe, &retry_ms)) {
        return TG_EUNAVAILABLE;
    }
    gw_pay_call *c = gw_alloc(r, sizeof(*c));
    *c = (gw_pay_call){.op = op, .probe = probe, .done = done};
    r->pay_call = c;
    *out = c;
    return TG_OK;
}

void gw_pay_abandon(gw_req *r)
{
    gw_pay_call *c = r->pay_call;
    r->pay_call = NULL;
    gw_breaker_abandon(&r->gw->breaker, c->probe);
}

/* A call that could not start gives the breaker its admission back: it
 * never reached the provider, so it says nothing about it. */
static tg_err pay_started(gw_req *r, tg_err err)
{
    if (err != TG_OK) {
        gw_pay_abandon(r);
    }
    return err;
}

tg_err gw_pay_create(gw_req *r, const gw_pay_order *order, gw_pay_done done)
{
    gw_pay_call *c;
    tg_err err = pay_start(r, PAY_CREATE, done, &c);
    return err != TG_OK ? err : pay_started(r, gw_provider_of(r->gw)->create(r, order));
}

tg_err gw_pay_status(gw_req *r, const char *payment_id, gw_pay_done done)
{
    gw_pay_call *c;
    tg_err err = pay_start(r, PAY_STATUS, done, &c);
    return err != TG_OK ? err : pay_started(r, gw_provider_of(r->gw)->status(r, payment_id));
}

tg_err gw_pay_refund(gw_req *r, const char *payment_id, int64_t amount_minor, gw_pay_done done)
{
    gw_pay_call *c;
    tg_err err = pay_start(r, PAY_REFUND, done, &c);
    return err != TG_OK
               ? err
               : pay_started(r, gw_provider_of(r->gw)->refund(r, payment_id, amount_minor));
}

/* The blocking calls' breaker: false when it refused (nothing is asked). */
static bool now_admit(gw_gateway *gw, bool *probe, gw_pay_result *res)
{
    uint32_t retry_ms;
    *res = (gw_pay_result){0};
    return gw_provider_of(gw) != NULL &&
           gw_breaker_admit(&gw->breaker, tg_mono_ms(), probe, &retry_ms);
}

static tg_err now_record(gw_gateway *gw, bool probe, const gw_pay_result *res)
{
    gw_breaker_record(&gw->breaker, !res->provider_failed, probe, tg_mono_ms());
    return res->err;
}

tg_err gw_pay_refund_now(gw_gateway *gw, const char *payment_id, int64_t amount_minor,
                         gw_pay_result *res)
{
    bool probe;
    if (!now_admit(gw, &probe, res)) {
        return TG_EBUSY;
    }
    gw_provider_of(gw)->refund_now(&gw->cfg, payment_id, amount_minor, res);
    return now_record(gw, probe, res);
}

tg_err gw_pay_status_now(gw_gateway *gw, const char *payment_id, gw_pay_result *res)
{
    bool probe;
    if (!now_admit(gw, &probe, res)) {
        return TG_EBUSY;
    }
    gw_provider_of(gw)->status_now(&gw->cfg, payment_id, res);
    return now_record(gw, probe, res);
}

/* ---- The REST provider ------------------------------------------------------- */

/* A string field of the answer into out; false when missing or too long. */
static bool answer_string(json_t *j, const char *field, char *out, size_t size)
{
    const char *v = json_string_value(json_object_get(j, field));
    if (v == NULL || strlen(v) == 0 || strlen(v) >= size) {
        return false;
    }
    memcpy(out, v, strlen(v) + 1);
    return true;
}

/* What every answer must have: a 2xx with {paymentId, status}. */
static json_t *answer_read(const gw_http_result *http, gw_pay_result *res)
{
    res->http_status = http->status;
    if (http->err != TG_OK) {
        res->err = http->err;
        res->provider_failed = true;
        snprintf(res->message, sizeof(res->message), "no answer: %s", http->error);
        return NULL;
    }
    if (http->status < 200 || http->status > 299) {
        res->err = TG_EINVAL;
        res->provider_failed = http->status >= 500 || http->status < 200;
        snprintf(res->message, sizeof(res->message), "HTTP %ld: %.200s", http->status, http->body);
        return NULL;
    }
    json_t *j = json_loadb(http->body, http->len, 0, NULL);
    if (j == NULL || !answer_string(j, "paymentId", res->payment_id, sizeof(res->payment_id)) ||
        !gw_payment_id_valid(res->payment_id) ||
        !answer_string(j, "status", res->status, sizeof(res->status))) {
        res->err = TG_EPROTO;
        res->provider_failed = true;
        snprintf(res->message, sizeof(res->message), "unreadable answer: %.200s", http->body);
        json_decref(j);
        return NULL;
    }
    return j;
}

static void rest_created(gw_req *r, const gw_http_result *http)
{
    gw_pay_result res = {0};
    json_t *j = answer_read(http, &res);
    if (j != NULL) {
        bool url_ok = answer_string(j, "paymentUrl", res.payment_url, sizeof(res.payment_url)) &&
                      (strncmp(res.payment_url, "http://", 7) == 0 ||
                       strncmp(res.payment_url, "https://", 8) == 0);
        if (!url_ok) {
            res.err = TG_EPROTO;
            res.provider_failed = true;
            snprintf(res.message, sizeof(res.message), "answer without a paymentUrl");
        }
        json_decref(j);
    }
    gw_pay_finish(r, &res);
}

static void rest_answered(gw_req *r, const gw_http_result *http)
{
    gw_pay_result res = {0};
    json_decref(answer_read(http, &res));
    gw_pay_finish(r, &res);
}

static tg_err rest_create(gw_req *r, const gw_pay_order *order)
{
    const gw_config *cfg = &r->gw->cfg;
    char url[GW_URL_BYTES + 32], notify[GW_URL_BYTES + 32], ok[GW_URL_BYTES + 32],
        fail[GW_URL_BYTES + 32];
    snprintf(url, sizeof(url), "%s/v1/payments", cfg->payment_provider_url);
    snprintf(notify, sizeof(notify), "%s/api/webhook/payment", cfg->public_url);
    snprintf(ok, sizeof(ok), "%s/api/payments/success", cfg->public_url);
    snprintf(fail, sizeof(fail), "%s/api/payments/fail", cfg->public_url);
    char order_id[24];
    snprintf(order_id, sizeof(order_id), "%llu", (unsigned long long)order->booking_id);
    json_t *body =
        json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s}", "orderId", order_id, "amount",
                  (json_int_t)order->amount_minor, "currency", order->currency, "description",
                  order->description, "notifyUrl", notify, "successUrl", ok, "failUrl", fail);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        return TG_ENOMEM;
    }
    tg_err err = gw_http_send(r, "POST", url, text, cfg->payment_timeout_ms, rest_created);
    free(text);
    return err;
}

static tg_err rest_status(gw_req *r, const char *payment_id)
{
    const gw_config *cfg = &r->gw->cfg;
    char url[GW_URL_BYTES + GW_PAYMENT_ID_BYTES + 16];
    snprintf(url, sizeof(url), "%s/v1/payments/%s", cfg->payment_provider_url, payment_id);
    return gw_http_send(r, "GET", url, NULL, cfg->payment_timeout_ms, rest_answered);
}

#define REFUND_URL_BYTES (GW_URL_BYTES + GW_PAYMENT_ID_BYTES + 24)

static void refund_request(const gw_config *cfg, const char *payment_id, int64_t amount_minor,
                           char url[REFUND_URL_BYTES], char body[48])
{
    snprintf(url, REFUND_URL_BYTES, "%s/v1/payments/%s/refund", cfg->payment_provider_url,
             payment_id);
    snprintf(body, 48, "{\"amount\":%lld}", (long long)amount_minor);
}

static tg_err rest_refund(gw_req *r, const char *payment_id, int64_t amount_minor)
{
    char url[REFUND_URL_BYTES], body[48];
    refund_request(&r->gw->cfg, payment_id, amount_minor, url, body);
    return gw_http_send(r, "POST", url, body, r->gw->cfg.payment_timeout_ms, rest_answered);
}

typedef struct {
    char *data;
    size_t len;
} answer_buffer;

static size_t answer_collect(char *data, size_t size, size_t n, void *arg)
{
    answer_buffer *b = arg;
    size_t keep = b->len + size * n > GW_HTTP_BODY_MAX ? GW_HTTP_BODY_MAX - b->len : size * n;
    memcpy(b->data + b->len, data, keep);
    b->len += keep;
    return size * n;
}

/* One call, blocking: a POST of body, or a GET when body is NULL. */
static tg_err rest_call_now(const gw_config *cfg, const char *url, const char *body,
                            gw_pay_result *res)
{
    char error[CURL_ERROR_SIZE] = "";
    answer_buffer answer = {.data = calloc(1, GW_HTTP_BODY_MAX + 1)};
    CURL *e = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    gw_http_result http = {.err = TG_ENOMEM, .body = "", .error = "out of memory"};
    if (e != NULL && h != NULL && answer.data != NULL) {
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cfg->payment_timeout_ms);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        if (body != NULL) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        }
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, answer_collect);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &answer);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error);
        CURLcode code = curl_easy_perform(e);
        http.err = code == CURLE_OK                   ? TG_OK
                   : code == CURLE_OPERATION_TIMEDOUT ? TG_ETIMEDOUT
                                                      : TG_EUNAVAILABLE;
        http.error = error[0] != '\0' ? error : curl_easy_strerror(code);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http.status);
        http.body = answer.data;
        http.len = answer.len;
    }
    *res = (gw_pay_result){0};
    json_decref(answer_read(&http, res));
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    free(answer.data);
    return res->err;
}

static tg_err rest_refund_now(const gw_config *cfg, const char *payment_id, int64_t amount_minor,
                              gw_pay_result *res)
{
    char url[REFUND_URL_BYTES], body[48];
    refund_request(cfg, payment_id, amount_minor, url, body);
    return rest_call_now(cfg, url, body, res);
}

static tg_err rest_status_now(const gw_config *cfg, const char *payment_id, gw_pay_result *res)
{
    char url[GW_URL_BYTES + GW_PAYMENT_ID_BYTES + 16];
    snprintf(url, sizeof(url), "%s/v1/payments/%s", cfg->payment_provider_url, payment_id);
    return rest_call_now(cfg, url, NULL, res);
}

const gw_provider gw_provider_rest = {
    .name = "sandbox",
    .create = rest_create,
    .status = rest_status,
    .refund = rest_refund,
    .refund_now = rest_refund_now,
    .status_now = rest_status_now,
};

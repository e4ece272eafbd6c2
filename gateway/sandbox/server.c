/*
 * server.c — the sandbox's HTTP side: the provider API, the payment page,
 * the buyer's approve/decline, and /control, on one libuv loop with h2o.
 *
 *   POST /v1/payments               create → 201 {paymentId, paymentUrl, status}
 *   GET  /v1/payments/{id}          → {paymentId, status, orderId, amount, currency,
 *                                      refunds, webhooksDelivered}
 *   POST /v1/payments/{id}/refund   → {paymentId, status: "REFUNDED"}; 409 unless paid
 *   GET  /pay/{id}                  the page (HTML): approve or decline
 *   POST /pay/{id}/approve|decline  decides, queues the webhook, 303 to success/failUrl
 *   POST /control {mode, delay_ms}  how the API behaves from now on
 *   GET  /healthz
 * The mode (fail, delay, timeout) applies to the /v1 API only: the page and
 * /control always answer, so a test can break the provider and mend it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <jansson.h>
#include <curl/curl.h>
#include <sodium.h>
#include <uv.h>

#include "store.h"
#include "tixgrid/log.h"

static struct {
    const sbx_config *cfg;
    sbx_mode mode;     /* loop thread only */
    uint32_t delay_ms; /* loop thread only */
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_signal_t sigterm, sigint;
    h2o_globalconf_t h2o_config;
    h2o_context_t h2o_ctx;
    h2o_accept_ctx_t accept_ctx;
} sbx;

/* ---- Replies ---------------------------------------------------------------- */

static void reply(h2o_req_t *req, int status, const char *type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = status == 200   ? "OK"
                      : status == 201 ? "Created"
                      : status == 303 ? "See Other"
                      : status < 500  ? "Client Error"
                                      : "Server Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    /* Said up front: left unknown, h2o ends a 303 with the connection, and a
     * buyer's browser (or tixgrid-load) must connect again after each
     * approval. */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

static void reply_json(h2o_req_t *req, int status, json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL) {
        reply(req, 500, "application/json", "{\"error\":\"out of memory\"}", 25);
        return;
    }
    reply(req, status, "application/json", text, strlen(text));
    free(text);
}

static void reply_error(h2o_req_t *req, int status, const char *message)
{
    reply_json(req, status, json_pack("{s:s}", "error", message));
}

static json_t *payment_json(const sbx_payment *p)
{
    return json_pack(
        "{s:s,s:s,s:s,s:I,s:s,s:I,s:I}", "paymentId", p->id, "status", sbx_status_name(p->status),
        "orderId", p->order_id, "amount", (json_int_t)p->amount, "currency", p->currency, "refunds",
        (json_int_t)p->refunds, "webhooksDelivered", (json_int_t)p->webhooks_delivered);
}

/* ---- The API's modes ---------------------------------------------------------- */

typedef struct {
    uv_timer_t timer;
    h2o_req_t *req; /* NULL once the client went away */
    void **slot;    /* in the request's pool: points back here until answered */
    int status;
    char *body;
} delayed;

static void delayed_closed(uv_handle_t *h)
{
    delayed *d = h->data;
    free(d->body);
    free(d);
}

static void delayed_fire(uv_timer_t *t)
{
    delayed *d = t->data;
    if (d->req != NULL) {
        *d->slot = NULL;
        reply(d->req, d->status, "application/json", d->body, strlen(d->body));
    }
    uv_close((uv_handle_t *)t, delayed_closed);
}

static void delayed_gone(void *p)
{
    delayed *d = *(void **)p;
    if (d != NULL) {
        d->req = NULL;
    }
}

/* Answers now, or after the delay in delay mode (the client may leave). */
static void api_reply(h2o_req_t *req, int status, json_t *j)
{
    if (sbx.mode != SBX_MODE_DELAY) {
        reply_json(req, status, j);
        return;
    }
    delayed *d = calloc(1, sizeof(*d));
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (d == NULL || body == NULL) {
        free(d);
        free(body);
        reply_error(req, 500, "out of memory");
        return;
    }
    d->body = body;
    d->req = req;
    d->status = status;
    d->slot = h2o_mem_alloc_shared(&req->pool, sizeof(void *), delayed_gone);
    *d->slot = d;
    uv_timer_init(&sbx.loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, delayed_fire, sbx.delay_ms, 0);
}

/* False when the mode answered for the API (fail) or never will (timeout). */
static bool api_mode_allows(h2o_req_t *req)
{
    if (sbx.mode == SBX_MODE_FAIL) {
        reply_error(req, 500, "the sandbox was told to fail");
        return false;
    }
    return sbx.mode != SBX_MODE_TIMEOUT; /* the request stays unanswered */
}

/* ---- Requests ------------------------------------------------------------------ */

/* The path without its query. */
static h2o_iovec_t path_of(const h2o_req_t *req)
{
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    return h2o_iovec_init(req->path.base, len);
}

static bool is(const h2o_req_t *req, const char *method)
{
    return h2o_memis(req->method.base, req->method.len, method, strlen(method));
}

/* "/v1/payments/ID/refund" with prefix "/v1/payments/": copies ID and the
 * rest ("/refund" or ""); false when the id is empty or too long. */
static bool path_id(h2o_iovec_t path, const char *prefix, char *id, size_t id_size,
                    const char **rest)
{
    size_t n = strlen(prefix);
    if (path.len <= n || memcmp(path.base, prefix, n) != 0) {
        return false;
    }
    size_t end = n;
    while (end < path.len && path.base[end] != '/') {
        end++;
    }
    if (end == n || end - n >= id_size) {
        return false;
    }
    memcpy(id, path.base + n, end - n);
    id[end - n] = '\0';
    static char tail[32];
    size_t tail_len = path.len - end < sizeof(tail) - 1 ? path.len - end : sizeof(tail) - 1;
    memcpy(tail, path.base + end, tail_len);
    tail[tail_len] = '\0';
    *rest = tail;
    return true;
}

static bool url_field(json_t *body, const char *name, char *out, size_t size)
{
    const char *v = json_string_value(json_object_get(body, name));
    if (v == NULL || strlen(v) >= size ||
        (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)) {
        return false;
    }
    memcpy(out, v, strlen(v) + 1);
    return true;
}

static bool create_fields(json_t *b, sbx_payment *p)
{
    const char *order = json_string_value(json_object_get(b, "orderId"));
    const char *currency = json_string_value(json_object_get(b, "currency"));
    const char *description = json_string_value(json_object_get(b, "description"));
    json_t *amount = json_object_get(b, "amount");
    if (order == NULL || strlen(order) == 0 || strlen(order) >= sizeof(p->order_id) ||
        currency == NULL || strlen(currency) != 3 || !json_is_integer(amount) ||
        json_integer_value(amount) < 0 ||
        !url_field(b, "notifyUrl", p->notify_url, SBX_URL_BYTES) ||
        !url_field(b, "successUrl", p->success_url, SBX_URL_BYTES) ||
        !url_field(b, "failUrl", p->fail_url, SBX_URL_BYTES)) {
        return false;
    }
    snprintf(p->order_id, sizeof(p->order_id), "%s", order);
    snprintf(p->currency, sizeof(p->currency), "%s", currency);
    snprintf(p->description, sizeof(p->description), "%s", description != NULL ? description : "");
    p->amount = json_integer_value(amount);
    return true;
}

static void on_create(h2o_req_t *req)
{
    json_t *b = json_loadb(req->entity.base, req->entity.len, 0, NULL);
    sbx_payment p = {0}, stored;
    bool ok = json_is_object(b) && create_fields(b, &p);
    json_decref(b);
    if (!ok) {
        reply_error(req, 400,
                    "expected {orderId, amount >= 0, currency (3 letters), "
                    "notifyUrl, successUrl, failUrl (http URLs), description?}");
        return;
    }
    if (!sbx_store_create(&p, &stored)) {
        reply_error(req, 503, "the sandbox holds as many payments as it can");
        return;
    }
    if (sbx.mode == SBX_MODE_DECLINE) {
        sbx_store_decide(stored.id, false, &stored);
    }
    char url[SBX_URL_BYTES + 48];
    snprintf(url, sizeof(url), "%s/pay/%s", sbx.cfg->public_url, stored.id);
    api_reply(req, 201,
              json_pack("{s:s,s:s,s:s}", "paymentId", stored.id, "paymentUrl", url, "status",
                        sbx_status_name(stored.status)));
}

static void on_payment(h2o_req_t *req, const char *id, const char *rest)
{
    sbx_payment p;
    if (strcmp(rest, "") == 0 && is(req, "GET")) {
        if (!sbx_store_get(id, &p)) {
            reply_error(req, 404, "no such payment");
            return;
        }
        api_reply(req, 200, payment_json(&p));
    } else if (strcmp(rest, "/refund") == 0 && is(req, "POST")) {
        sbx_decide_result res = sbx_store_refund(id, &p);
        if (res == SBX_DECIDE_UNKNOWN) {
            reply_error(req, 404, "no such payment");
        } else if (res == SBX_DECIDE_ALREADY) {
            reply_error(req, 409, "only a confirmed payment can be refunded");
        } else {
            api_reply(req, 200, payment_json(&p));
        }
    } else {
        reply_error(req, 404, "no such resource");
    }
}

static void on_control(h2o_req_t *req)
{
    json_t *b = json_loadb(req->entity.base, req->entity.len, 0, NULL);
    const char *mode = json_string_value(json_object_get(b, "mode"));
    json_t *delay = json_object_get(b, "delay_ms");
    int m = mode != NULL ? sbx_mode_parse(mode) : -1;
    bool delay_ok = delay == NULL || (json_is_integer(delay) && json_integer_value(delay) >= 0 &&
                                      json_integer_value(delay) <= 600000);
    uint32_t delay_ms =
        delay != NULL && delay_ok ? (uint32_t)json_integer_value(delay) : sbx.delay_ms;
    json_decref(b);
    if (m < 0 || !delay_ok) {
        reply_error(req, 400,
                    "expected {mode: normal|fail|delay|timeout|decline, "
                    "delay_ms?: 0..600000}");
        return;
    }
    sbx.mode = (sbx_mode)m;
    sbx.delay_ms = delay_ms;
    tg_log(TG_LOG_INFO, "mode %s, delay %u ms", sbx_mode_name(sbx.mode), sbx.delay_ms);
    reply_json(req, 200,
               json_pack("{s:s,s:I}", "mode", sbx_mode_name(sbx.mode), "delay_ms",
                         (json_int_t)sbx.delay_ms));
}

/* ---- The buyer's page ------------------------------------------------------------ */

/* text with & < > " ' escaped, into out (truncated). */
static void html_escape(const char *text, char *out, size_t size)
{
    size_t n = 0;
    for (const char *c = text; *c != '\0' && n + 7 < size; c++) {
        const char *e = *c == '&'    ? "&amp;"
                        : *c == '<'  ? "&lt;"
                        : *c == '>'  ? "&gt;"
                        : *c == '"'  ? "&quot;"
                        : *c == '\'' ? "&#39;"
                                     : NULL;
        if (e != NULL) {
            n += (size_t)snprintf(out + n, size - n, "%s", e);
        } else {
            out[n++] = *c;
        }
    }
    out[n] = '\0';
}

static void on_page(h2o_req_t *req, const char *id)
{
    sbx_payment p;
    if (!sbx_store_get(id, &p)) {
        reply(req, 404, "text/html; charset=utf-8", "<p>No such payment.</p>", 23);
        return;
    }
    char description[sizeof(p.description) * 6], order[sizeof(p.order_id) * 6], page[4096];
    html_escape(p.description, description, sizeof(description));
    html_escape(p.order_id, order, sizeof(order));
    const char *decided = p.status == SBX_PENDING ? "" : " disabled";
    int n =
        snprintf(page, sizeof(page),
                 "<!doctype html><html><head><meta charset=\"utf-8\">"
                 "<title>Sandbox payment %s</title></head><body>"
                 "<h1>tixgrid sandbox payment</h1>"
                 "<p>%s (order %s)</p><p><strong>%lld.%02lld %s</strong></p>"
                 "<p>Status: <span id=\"status\">%s</span></p>"
                 "<form method=\"post\" action=\"/pay/%s/approve\">"
                 "<button type=\"submit\"%s>Approve</button></form>"
                 "<form method=\"post\" action=\"/pay/%s/decline\">"
                 "<button type=\"submit\"%s>Decline</button></form>"
                 "<p>No money moves here: this is the sandbox provider.</p></body></html>",
                 p.id, description, order, (long long)(p.amount / 100), (long long)(p.amount % 100),
                 p.currency, sbx_status_name(p.status), p.id, decided, p.id, decided);
    reply(req, 200, "text/html; charset=utf-8", page, (size_t)n < sizeof(page) ? (size_t)n : 0);
}

static void on_decide(h2o_req_t *req, const char *id, bool approve)
{
    sbx_payment p;
    sbx_decide_result res = sbx_store_decide(id, approve, &p);
    if (res == SBX_DECIDE_UNKNOWN) {
        reply(req, 404, "text/html; charset=utf-8", "<p>No such payment.</p>", 23);
        return;
    }
    if (res == SBX_DECIDE_ALREADY) {
        char page[128];
        int n = snprintf(page, sizeof(page), "<p>This payment is already %s.</p>",
                         sbx_status_name(p.status));
        reply(req, 409, "text/html; charset=utf-8", page, (size_t)n);
        return;
    }
    const char *back = approve ? p.success_url : p.fail_url;
    char location[SBX_URL_BYTES + 96];
    snprintf(location, sizeof(location), "%s%cpaymentId=%s&orderId=%s", back,
             strchr(back, '?') != NULL ? '&' : '?', p.id, p.order_id);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, location,
                   strlen(location));
    reply(req, 303, "text/html; charset=utf-8", "<p>Back to the shop.</p>", 24);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    h2o_iovec_t path = path_of(req);
    char id[64];
    const char *rest;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/payments")) && is(req, "POST")) {
        if (api_mode_allows(req)) {
            on_create(req);
        }
    } else if (path_id(path, "/v1/payments/", id, sizeof(id), &rest)) {
        if (api_mode_allows(req)) {
            on_payment(req, id, rest);
        }
    } else if (path_id(path, "/pay/", id, sizeof(id), &rest) && is(req, "GET") && rest[0] == 0) {
        on_page(req, id);
    } else if (path_id(path, "/pay/", id, sizeof(id), &rest) && is(req, "POST") &&
               (strcmp(rest, "/approve") == 0 || strcmp(rest, "/decline") == 0)) {
        on_decide(req, id, strcmp(rest, "/approve") == 0);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/control")) && is(req, "POST")) {
        on_control(req);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/healthz"))) {
        reply(req, 200, "text/plain", "ok\n", 3);
    } else {
        reply_error(req, 404, "no such resource");
    }
    return 0;
}

/* ---- The loop --------------------------------------------------------------------- */

static void on_accept(uv_stream_t *listener, int status)
{
    if (status != 0) {
        return;
    }
    uv_tcp_t *conn = malloc(sizeof(*conn));
    if (conn == NULL) {
        return;
    }
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    h2o_accept(&sbx.accept_ctx, sock);
}

static void on_signal(uv_signal_t *s, int signum)
{
    tg_log(TG_LOG_INFO, "stopping on signal %d", signum);
    uv_close((uv_handle_t *)&sbx.listener, NULL);
    uv_signal_stop(&sbx.sigterm);
    uv_signal_stop(&sbx.sigint);
    uv_stop(s->loop);
}

static bool listen_start(const sbx_config *cfg)
{
    struct sockaddr_storage ss;
    if (uv_ip4_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in6 *)&ss) != 0) {
        tg_log(TG_LOG_ERROR, "listen address %s is not an IPv4 or IPv6 address", cfg->listen_host);
        return false;
    }
    uv_tcp_init(&sbx.loop, &sbx.listener);
    int rc = uv_tcp_bind(&sbx.listener, (struct sockaddr *)&ss, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&sbx.listener, SOMAXCONN, on_accept);
    }
    if (rc != 0) {
        tg_log(TG_LOG_ERROR, "cannot listen on %s:%u: %s", cfg->listen_host, cfg->listen_port,
               uv_strerror(rc));
        return false;
    }
    return true;
}

static void h2o_setup(void)
{
    h2o_config_init(&sbx.h2o_config);
    sbx.h2o_config.server_name = h2o_iovec_init(H2O_STRLIT("tixgrid-sandbox-pay"));
    sbx.h2o_config.max_request_entity_size = 64 * 1024;
    h2o_hostconf_t *host =
        h2o_config_register_host(&sbx.h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h));
    h->on_req = on_req;
    h2o_context_init(&sbx.h2o_ctx, &sbx.loop, &sbx.h2o_config);
    sbx.accept_ctx.ctx = &sbx.h2o_ctx;
    sbx.accept_ctx.hosts = sbx.h2o_config.hosts;
}

int sbx_run(const sbx_config *cfg)
{
    sbx.cfg = cfg;
    sbx.mode = cfg->mode;
    sbx.delay_ms = cfg->delay_ms;
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        uv_loop_init(&sbx.loop) != 0) {
        tg_log(TG_LOG_ERROR, "start-up failed");
        return 1;
    }
    h2o_setup();
    if (!listen_start(cfg)) {
        return 69;
    }
    uv_signal_init(&sbx.loop, &sbx.sigterm);
    uv_signal_init(&sbx.loop, &sbx.sigint);
    uv_signal_start(&sbx.sigterm, on_signal, SIGTERM);
    uv_signal_start(&sbx.sigint, on_signal, SIGINT);
    if (!sbx_store_start(cfg)) {
        return 1;
    }
    tg_log(TG_LOG_INFO, "listening on %s:%u, pages at %s, mode %s", cfg->listen_host,
           cfg->listen_port, cfg->public_url, sbx_mode_name(cfg->mode));
    uv_run(&sbx.loop, UV_RUN_DEFAULT);
    sbx_store_stop();
    return 0;
}

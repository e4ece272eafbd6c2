/*
 * outbound.c — HTTP requests from the gateway to other services (the
 * payment provider), on the loop threads without ever blocking them.
 *
 * Each worker owns one libcurl multi handle driven by its own libuv loop,
 * the way libcurl's multi-uv example does: libcurl says through
 * on_socket which sockets it wants watched for what (uv_poll_t each) and
 * through on_timer when it next needs the clock (one uv_timer_t); the loop
 * hands readiness and timeouts back with curl_multi_socket_action, and
 * finished transfers are collected with curl_multi_info_read.  No thread
 * waits on a socket, so a provider that takes ten seconds to answer holds
 * one easy handle, not a loop.
 *
 * A transfer is a gw_call of kind GW_CALL_HTTP, owned like any other call:
 * when it finishes it goes through the worker's completion list, so its
 * done runs only if the request is still there, and a request that went
 * away leaves the transfer to finish (or time out) and be dropped.  The
 * transfer's memory (easy handle, headers, answer) is the call's job and
 * is freed by job_free after done.
 *
 * Bounds: every transfer has a total timeout (the caller's), an answer is
 * kept up to GW_HTTP_BODY_MAX bytes, redirects are not followed, only
 * http and https are spoken, and transfers in flight are bounded by the
 * worker's calls (cfg.inflight_max).
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#define CONNECT_TIMEOUT_MS 2000L

typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
    gw_worker *w;
} sock_watch;

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    gw_http_done done;
    char *body;
    size_t len, cap;
    gw_http_result res;
    char error[CURL_ERROR_SIZE];
} transfer;

static void transfer_free(void *job)
{
    transfer *t = job;
    if (t->easy != NULL) {
        curl_easy_cleanup(t->easy);
    }
    curl_slist_free_all(t->headers);
    free(t->body);
    free(t);
}

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    transfer *t = arg;
    size_t bytes = size * n;
    size_t keep = t->len + bytes > GW_HTTP_BODY_MAX ? GW_HTTP_BODY_MAX - t->len : bytes;
    if (t->len + keep + 1 > t->cap) {
        size_t cap = t->cap == 0 ? 1024 : t->cap;
        while (cap < t->len + keep + 1) {
            cap *= 2;
        }
        char *grown = realloc(t->body, cap);
        if (grown == NULL) {
            return 0; /* libcurl fails the transfer: CURLE_WRITE_ERROR */
        }
        t->body = grown;
        t->cap = cap;
    }
    memcpy(t->body + t->len, data, keep);
    t->len += keep;
    t->body[t->len] = '\0';
    return bytes;
}

/* ---- Finishing ------------------------------------------------------------ */

static void result_fill(transfer *t, CURLcode code)
{
    gw_http_result *res = &t->res;
    res->body = t->body != NULL ? t->body : "";
    res->len = t->len;
    if (code == CURLE_OK) {
        res->err = TG_OK;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &res->status);
        return;
    }
    res->err = code == CURLE_OPERATION_TIMEDOUT ? TG_ETIMEDOUT : TG_EUNAVAILABLE;
    res->error = t->error[0] != '\0' ? t->error : curl_easy_strerror(code);
}

/* Hands every finished transfer to the completion list. */
static void finished_collect(gw_worker *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->curl_multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        gw_call *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        TG_ASSERT(call != NULL && call->kind == GW_CALL_HTTP);
        transfer *t = call->job;
        CURLcode code = msg->data.result;
        curl_multi_remove_handle(w->curl_multi, t->easy);
        w->http_in_flight--;
        result_fill(t, code);
        gw_call_complete(call);
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    sock_watch *s = handle->data;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
        flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
    }
    int running;
    curl_multi_socket_action(s->w->curl_multi, s->fd, flags, &running);
    finished_collect(s->w);
}

static void on_timeout(uv_timer_t *timer)
{
    gw_worker *w = timer->loop->data;
    int running;
    curl_multi_socket_action(w->curl_multi, CURL_SOCKET_TIMEOUT, 0, &running);
    finished_collect(w);
}

/* libcurl: when to call back with CURL_SOCKET_TIMEOUT (-1: never).  A 0
 * goes through the timer too: libcurl must not be re-entered from here. */
static int on_timer(CURLM *multi, long timeout_ms, void *arg)
{
    (void)multi;
    gw_worker *w = arg;
    if (timeout_ms < 0) {
        uv_timer_stop(&w->curl_timer);
    } else {
        uv_timer_start(&w->curl_timer, on_timeout, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

static void on_watch_closed(uv_handle_t *handle)
{
    free(handle->data);
}

/* libcurl: watch fd for `what`, or stop watching it. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *socket_arg)
{
    (void)easy;
    gw_worker *w = arg;
    sock_watch *s = socket_arg;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(w->curl_multi, fd, NULL);
            uv_close((uv_handle_t *)&s->poll, on_watch_closed);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL || uv_poll_init_socket(&w->loop, &s->poll, fd) != 0) {
            free(s);
            return -1; /* libcurl fails the transfer */
        }
        s->fd = fd;
        s->w = w;
        s->poll.data = s;
        curl_multi_assign(w->curl_multi, fd, s);
    }
    int events =
        ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

tg_err gw_outbound_init(gw_worker *w)
{
    w->curl_multi = curl_multi_init();
    if (w->curl_multi == NULL) {
        return TG_ENOMEM;
    }
    uv_timer_init(&w->loop, &w->curl_timer);
    curl_multi_setopt(w->curl_multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(w->curl_multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->curl_multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(w->curl_multi, CURLMOPT_TIMERDATA, w);
    return TG_OK;
}

/* ---- Starting ------------------------------------------------------------- */

static void transfer_done(gw_req *r, void *job)
{
    transfer *t = job;
    t->done(r, &t->res);
}

static bool easy_setup(transfer *t, gw_call *call, const char *method, const char *url,
                       const char *body, uint32_t timeout_ms)
{
    CURL *e = t->easy;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms) == CURLE_OK;
    ok = ok &&
         curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                          CONNECT_TIMEOUT_MS < (long)timeout_ms ? CONNECT_TIMEOUT_MS
                                                                : (long)timeout_ms) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_WRITEDATA, t) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)call) == CURLE_OK;
    t->headers = curl_slist_append(NULL, "Accept: application/json");
    if (body != NULL) {
        struct curl_slist *more = curl_slist_append(t->headers, "Content-Type: application/json");
        ok = ok && more != NULL && curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) == CURLE_OK;
        t->headers = more != NULL ? more : t->headers;
    } else if (strcmp(method, "POST") == 0) {
        ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDS, "") == CURLE_OK;
    }
    ok =
        ok && t->headers != NULL && curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers) == CURLE_OK;
    return ok;
}

tg_err gw_http_send(gw_req *r, const char *method, const char *url, const char *body,
                    uint32_t timeout_ms, gw_http_done done)
{
    TG_ASSERT(r->pending == NULL);
    transfer *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->easy = curl_easy_init()) == NULL) {
        free(t);
        return TG_ENOMEM;
    }
    t->done = done;
    gw_call *call = gw_call_take(r->worker);
    if (call == NULL) {
        transfer_free(t);
        return TG_EBUSY;
    }
    call->kind = GW_CALL_HTTP;
    call->req = r;
    call->db_done = transfer_done;
    call->job = t;
    call->job_free = transfer_free;
    if (!easy_setup(t, call, method, url, body, timeout_ms) ||
        curl_multi_add_handle(r->worker->curl_multi, t->easy) != CURLM_OK) {
        gw_call_release(call); /* frees the transfer */
        return TG_ENOMEM;
    }
    r->worker->http_in_flight++;
    r->pending = call;
    return TG_OK;
}

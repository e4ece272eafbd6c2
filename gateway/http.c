/*
 * http.c — from an h2o request to a handler, and from a handler to the
 * reply: the route table, path parameters, limits, JSON bodies, errors,
 * and the metrics of every reply.
 *
 * Order of checks (each answers at once and the handler never runs):
 * requests in service over cfg.inflight_max → 503; no route for the path →
 * 404, the path known but not the method → 405 with Allow; an id in the path
 * that is not a decimal below 2^53 → 400; headers over cfg.header_bytes_max
 * → 431 (the body's bound is h2o's max_request_entity_size → 413); a JSON
 * route whose body is not one JSON object → 400 (415 for another media
 * type); then authentication (authn.c: 401 / 403); then the handler.
 *
 * Every reply goes through reply_send, which sets Content-Length, counts
 * the reply by route and status class, and records its latency.  A request
 * gets exactly one reply: a second is a programmer error (asserted).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "org.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/cli.h"
#include "tixgrid/log.h"

#define JSON_ID_MAX ((UINT64_C(1) << 53) - 1) /* exact in a JavaScript number */

static const gw_route routes[] = {
    {"POST", "/api/auth/register", GW_AUTH_PUBLIC, true, gw_on_register, "auth_register"},
    {"POST", "/api/auth/login", GW_AUTH_PUBLIC, true, gw_on_login, "auth_login"},
    {"GET", "/api/me", GW_AUTH_USER, false, gw_on_me, "me"},
    {"GET", "/api/events", GW_AUTH_PUBLIC, false, gw_on_events_list, "events_list"},
    {"GET", "/api/events/search", GW_AUTH_PUBLIC, false, gw_on_events_search, "events_search"},
    {"GET", "/api/events/{id}", GW_AUTH_PUBLIC, false, gw_on_event_get, "event_get"},
    {"GET", "/api/events/{id}/availability", GW_AUTH_PUBLIC, false, gw_on_availability,
     "availability"},
    {"GET", "/api/events/{id}/seatmap", GW_AUTH_PUBLIC, false, gw_on_seatmap, "seatmap"},
    {"GET", "/api/events/{id}/live", GW_AUTH_PUBLIC, false, gw_on_live, "live"},
    {"GET", "/api/concerts", GW_AUTH_PUBLIC, false, gw_on_events_list, "concerts_list"},
    {"GET", "/api/concerts/{id}", GW_AUTH_PUBLIC, false, gw_on_event_get, "concert_get"},
    {"GET", "/api/seats", GW_AUTH_USER, false, gw_on_seats_list, "seats_list"},
    {"PATCH", "/api/seats/select", GW_AUTH_USER, true, gw_on_seats_select, "seats_select"},
    {"PATCH", "/api/seats/release", GW_AUTH_USER, true, gw_on_seats_release, "seats_release"},
    {"POST", "/api/bookings", GW_AUTH_USER, true, gw_on_booking_create, "booking_create"},
    {"GET", "/api/bookings", GW_AUTH_USER, false, gw_on_bookings_list, "bookings_list"},
    {"GET", "/api/bookings/{id}", GW_AUTH_USER, false, gw_on_booking_get, "booking_get"},
    {"PATCH", "/api/bookings/cancel", GW_AUTH_USER, true, gw_on_booking_cancel, "booking_cancel"},
    {"PATCH", "/api/bookings/initiatePayment", GW_AUTH_USER, true, gw_on_payment_initiate,
     "payment_initiate"},
    {"GET", "/api/bookings/{id}/payment-status", GW_AUTH_USER, false, gw_on_payment_status,
     "payment_status"},
    {"POST", "/api/webhook/payment", GW_AUTH_PUBLIC, true, gw_on_payment_webhook,
     "payment_webhook"},
    {"GET", "/api/payments/success", GW_AUTH_PUBLIC, false, gw_on_payment_return,
     "payment_success"},
    {"GET", "/api/payments/fail", GW_AUTH_PUBLIC, false, gw_on_payment_return, "payment_fail"},
    {"GET", "/api/payments/circuit-breaker-status", GW_AUTH_PUBLIC, false, gw_on_breaker_status,
     "breaker_status"},
    {"GET", "/healthz", GW_AUTH_PUBLIC, false, gw_on_healthz, "healthz"},
    {"GET", "/readyz", GW_AUTH_PUBLIC, false, gw_on_readyz, "readyz"},
    {"GET", "/metrics", GW_AUTH_PUBLIC, false, gw_on_metrics, "metrics"},
    {"POST", "/api/reset", GW_AUTH_PUBLIC, false, gw_on_reset, "reset"},
    /* Organizers and admins (org.h). */
    {"POST", "/api/admin/events", GW_AUTH_ORGANIZER, true, gw_on_org_event_create, "org_create"},
    {"PATCH", "/api/admin/events/{id}", GW_AUTH_ORGANIZER, true, gw_on_org_event_update,
     "org_update"},
    {"DELETE", "/api/admin/events/{id}", GW_AUTH_ORGANIZER, false, gw_on_org_event_delete,
     "org_delete"},
    {"POST", "/api/admin/events/{id}/publish", GW_AUTH_ORGANIZER, false, gw_on_org_event_publish,
     "org_publish"},
    {"POST", "/api/admin/events/{id}/cancel", GW_AUTH_ORGANIZER, false, gw_on_org_event_cancel,
     "org_cancel"},
    {"POST", "/api/admin/events/{id}/seats/block", GW_AUTH_ORGANIZER, true, gw_on_org_seats_block,
     "org_block"},
    {"POST", "/api/admin/events/{id}/seats/unblock", GW_AUTH_ORGANIZER, true,
     gw_on_org_seats_unblock, "org_unblock"},
    {"GET", "/api/admin/events/{id}/sales", GW_AUTH_ORGANIZER, false, gw_on_org_sales, "org_sales"},
    {"POST", "/api/admin/artists", GW_AUTH_ORGANIZER, true, gw_on_org_artist_create,
     "org_artist_create"},
    {"PATCH", "/api/admin/artists/{id}", GW_AUTH_ORGANIZER, true, gw_on_org_artist_update,
     "org_artist_update"},
    {"PATCH", "/api/admin/users/role", GW_AUTH_ADMIN, true, gw_on_admin_user_role, "admin_role"},
};
#define ROUTES_COUNT (sizeof(routes) / sizeof(routes[0]))
_Static_assert(ROUTES_COUNT <= GW_ROUTES_MAX, "GW_ROUTES_MAX");

int gw_route_index(const gw_route *route)
{
    return route == NULL ? (int)ROUTES_COUNT : (int)(route - routes);
}

const char *gw_route_name_at(int index)
{
    return index < (int)ROUTES_COUNT ? routes[index].name : "unrouted";
}

int gw_route_count(void)
{
    return (int)ROUTES_COUNT;
}

/* ---- Matching ------------------------------------------------------------ */

typedef enum { MATCH_NO, MATCH_YES, MATCH_BAD_ID } match_result;

/* A decimal id below 2^53, no sign, no leading zeros beyond "0". */
static bool id_parse(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 16 || (len > 1 && s[0] == '0')) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return v <= JSON_ID_MAX;
}

static match_result pattern_match(const char *pattern, const char *path, size_t len,
                                  uint64_t params[GW_PATH_PARAMS_MAX])
{
    size_t i = 0;
    unsigned n = 0;
    bool bad_id = false;
    while (*pattern != '\0') {
        if (strncmp(pattern, "{id}", 4) == 0) {
            size_t end = i;
            while (end < len && path[end] != '/') {
                end++;
            }
            if (end == i) {
                return MATCH_NO;
            }
            bad_id |= !id_parse(path + i, end - i, &params[n++]);
            i = end;
            pattern += 4;
        } else if (i < len && path[i] == *pattern) {
            i++;
            pattern++;
        } else {
            return MATCH_NO;
        }
    }
    if (i != len) {
        return MATCH_NO;
    }
    return bad_id ? MATCH_BAD_ID : MATCH_YES;
}

static bool method_is(const h2o_req_t *h2o, const gw_route *route)
{
    return h2o_memis(h2o->method.base, h2o->method.len, route->method, strlen(route->method)) ||
           (strcmp(route->method, "GET") == 0 &&
            h2o_memis(h2o->method.base, h2o->method.len, H2O_STRLIT("HEAD")));
}

static size_t path_length(const h2o_req_t *h2o)
{
    return h2o->query_at != SIZE_MAX ? h2o->query_at : h2o->path.len;
}

/* Finds the route.  A path that some route matches exactly wins over one
 * whose {id} failed to parse ("/api/bookings/cancel" is a path of its own,
 * not a bad booking id): *path_known says a route has this path (405 for
 * another method), *bad_id that only a route with a bad id matched. */
static const gw_route *route_find(h2o_req_t *h2o, uint64_t params[GW_PATH_PARAMS_MAX],
                                  bool *path_known, bool *bad_id)
{
    const gw_route *found = NULL, *bad = NULL;
    *path_known = *bad_id = false;
    for (size_t k = 0; k < ROUTES_COUNT && found == NULL; k++) {
        uint64_t p[GW_PATH_PARAMS_MAX] = {0};
        match_result m = pattern_match(routes[k].pattern, h2o->path.base, path_length(h2o), p);
        if (m == MATCH_YES) {
            *path_known = true;
            if (method_is(h2o, &routes[k])) {
                memcpy(params, p, sizeof(p));
                found = &routes[k];
            }
        } else if (m == MATCH_BAD_ID && bad == NULL && method_is(h2o, &routes[k])) {
            bad = &routes[k];
        }
    }
    if (found == NULL && !*path_known && bad != NULL) {
        *bad_id = true;
        found = bad;
    }
    return found;
}

/* The methods allowed on a path, for 405's Allow header. */
static void allow_list(h2o_req_t *h2o, char *buf, size_t size)
{
    buf[0] = '\0';
    for (size_t k = 0; k < ROUTES_COUNT; k++) {
        uint64_t p[GW_PATH_PARAMS_MAX];
        if (pattern_match(routes[k].pattern, h2o->path.base, path_length(h2o), p) != MATCH_YES ||
            strstr(buf, routes[k].method) != NULL) {
            continue;
        }
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s%s", used > 0 ? ", " : "", routes[k].method,
                 strcmp(routes[k].method, "GET") == 0 ? ", HEAD" : "");
    }
}

/* ---- Replies ------------------------------------------------------------- */

static const uint32_t latency_bounds_us[GW_LATENCY_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000,
};

static void metrics_count(gw_req *r, int status)
{
    gw_metrics *m = &r->worker->metrics;
    int route = gw_route_index(r->route);
    int cls = status / 100 - 1;
    if (cls >= 0 && cls < GW_STATUS_CLASSES) {
        atomic_fetch_add_explicit(&m->requests[route][cls], 1, memory_order_relaxed);
    }
    if (status >= 0 && status < 600) {
        atomic_fetch_add_explicit(&m->status[status], 1, memory_order_relaxed);
    }
    uint64_t us = (uint64_t)(tg_mono_ns() - r->started_ns) / 1000;
    int b = 0;
    while (b < GW_LATENCY_BUCKETS && us > latency_bounds_us[b]) {
        b++;
    }
    atomic_fetch_add_explicit(&m->latency[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us[route], us, memory_order_relaxed);
}

uint32_t gw_latency_bound_us(int bucket)
{
    return latency_bounds_us[bucket];
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

static void reply_send(gw_req *r, int status, const char *content_type, const void *data,
                       size_t len)
{
    TG_ASSERT(!r->replied);
    r->replied = true;
    metrics_count(r, status);
    h2o_req_t *h2o = r->h2o;
    if (h2o == NULL) {
        return; /* the client went away */
    }
    h2o->res.status = status;
    h2o->res.reason = reason_of(status);
    h2o->res.content_length = len;
    h2o_add_header(&h2o->pool, &h2o->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                   strlen(content_type));
    h2o_send_inline(h2o, data, len);
}

void gw_req_leave_service(gw_req *r)
{
    if (!r->out_of_service) {
        r->out_of_service = true;
        gw_gauge_add(&r->worker->in_service, -1);
    }
}

void gw_req_stream(gw_req *r)
{
    TG_ASSERT(!r->replied && !r->streaming);
    r->replied = true;
    r->streaming = true;
    gw_req_leave_service(r);
    metrics_count(r, 200);
}

void gw_reply_raw(gw_req *r, int status, const char *content_type, const void *data, size_t len)
{
    reply_send(r, status, content_type, data, len);
}

void gw_reply_json(gw_req *r, int status, json_t *body)
{
    /* Most replies (a hold, a booking) fit the stack: no malloc, no strlen.
     * reply_send copies the bytes into the request's pool. */
    char small[2048];
    size_t n = body != NULL ? json_dumpb(body, small, sizeof(small), JSON_COMPACT) : 0;
    char *text = n > sizeof(small) ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (n == 0 || (n > sizeof(small) && text == NULL)) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        reply_send(r, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    reply_send(r, status, "application/json", text != NULL ? text : small,
               text != NULL ? strlen(text) : n);
    free(text);
}

/* h2o keeps the value's pointer until the response is sent: it is copied
 * into the request's pool, so callers may pass a stack buffer. */
static void header_add(gw_req *r, const h2o_token_t *token, const char *value)
{
    if (r->h2o != NULL) {
        h2o_iovec_t v = h2o_strdup(&r->h2o->pool, value, strlen(value));
        h2o_add_header(&r->h2o->pool, &r->h2o->res.headers, token, NULL, v.base, v.len);
    }
}

void gw_reply_redirect(gw_req *r, int status, const char *location)
{
    header_add(r, H2O_TOKEN_LOCATION, location);
    reply_send(r, status, "text/plain; charset=utf-8", "", 0);
}

void gw_reply_header(gw_req *r, const char *name, const char *value)
{
    if (r->h2o != NULL) {
        h2o_iovec_t v = h2o_strdup(&r->h2o->pool, value, strlen(value));
        h2o_add_header_by_str(&r->h2o->pool, &r->h2o->res.headers, name, strlen(name), 1, NULL,
                              v.base, v.len);
    }
}

static void error_reply_v(gw_req *r, int status, const char *code, uint32_t retry_after_s,
                          const char *fmt, va_list ap)
{
    char message[512];
    vsnprintf(message, sizeof(message), fmt, ap);
    if (status == 401) {
        header_add(r, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer realm=\"tixgrid\", Basic realm=\"tixgrid\"");
    }
    if (status == 429 || status == 503) {
        char seconds[16];
        snprintf(seconds, sizeof(seconds), "%u", retry_after_s > 0 ? retry_after_s : 1);
        header_add(r, H2O_TOKEN_RETRY_AFTER, seconds);
    }
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    gw_reply_json(r, status, body);
}

void gw_reply_error(gw_req *r, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_reply_v(r, status, code, 0, fmt, ap);
    va_end(ap);
}

void gw_reply_error_retry(gw_req *r, int status, const char *code, uint32_t retry_after_s,
                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_reply_v(r, status, code, retry_after_s, fmt, ap);
    va_end(ap);
}

/* ---- Request helpers ----------------------------------------------------- */

void *gw_alloc(gw_req *r, size_t size)
{
    TG_ASSERT(r->h2o != NULL);
    void *p = h2o_mem_alloc_pool(&r->h2o->pool, size);
    memset(p, 0, size);
    return p;
}

const char *gw_header(gw_req *r, const char *name, size_t *len)
{
    ssize_t i = h2o_find_header_by_str(&r->h2o->headers, name, strlen(name), -1);
    if (i < 0) {
        return NULL;
    }
    const h2o_header_t *h = &r->h2o->headers.entries[i];
    if (len != NULL) {
        *len = h->value.len;
    }
    return h->value.base;
}

static int hex_value(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Percent-decodes src[0..len) into the pool ('+' is a space); NULL when a
 * %XX is malformed or decodes to NUL. */
static const char *query_decode(gw_req *r, const char *src, size_t len)
{
    char *out = h2o_mem_alloc_pool(&r->h2o->pool, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%') {
            int hi = i + 1 < len ? hex_value((unsigned char)src[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value((unsigned char)src[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return NULL;
            }
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = src[i] == '+' ? ' ' : src[i];
        }
    }
    out[n] = '\0';
    return out;
}

const char *gw_query(gw_req *r, const char *name)
{
    h2o_req_t *h = r->h2o;
    if (h->query_at == SIZE_MAX) {
        return NULL;
    }
    const char *q = h->path.base + h->query_at + 1, *end = h->path.base + h->path.len;
    size_t name_len = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *key_end = eq != NULL ? eq : stop;
        if ((size_t)(key_end - q) == name_len && memcmp(q, name, name_len) == 0) {
            const char *v = eq != NULL ? eq + 1 : stop;
            const char *decoded = query_decode(r, v, (size_t)(stop - v));
            return decoded != NULL ? decoded : "\x01"; /* malformed: fails every check */
        }
        q = stop + 1;
    }
    return NULL;
}

bool gw_query_u64(gw_req *r, const char *name, uint64_t min, uint64_t max, uint64_t fallback,
                  uint64_t *out)
{
    const char *v = gw_query(r, name);
    if (v == NULL) {
        *out = fallback;
        return true;
    }
    uint64_t n;
    if (tg_parse_u64(v, min, max, &n) != TG_OK) {
        gw_reply_error(r, 400, "invalid_parameter",
                       "query parameter %s: expected a whole number in %llu..%llu", name,
                       (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    *out = n;
    return true;
}

/* The body's field, or NULL when it is absent (or null) and optional
 * (present != NULL: *present says which).  False when a required field is
 * missing: the 400 is sent. */
static bool body_field(gw_req *r, const char *field, bool *present, json_t **out)
{
    json_t *v = r->body != NULL ? json_object_get(r->body, field) : NULL;
    if (v != NULL && !(present != NULL && json_is_null(v))) {
        *out = v;
        if (present != NULL) {
            *present = true;
        }
        return true;
    }
    *out = NULL;
    if (present != NULL) {
        *present = false;
        return true;
    }
    gw_reply_error(r, 400, "missing_field", "%s is required", field);
    return false;
}

bool gw_body_u64(gw_req *r, const char *field, uint64_t min, uint64_t max, uint64_t *out,
                 bool *present)
{
    json_t *v;
    if (!body_field(r, field, present, &v) || v == NULL) {
        return v == NULL && present != NULL;
    }
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    if (n < 0 || (uint64_t)n < min || (uint64_t)n > max) {
        gw_reply_error(r, 400, "invalid_field", "%s: expected a whole number in %llu..%llu", field,
                       (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    *out = (uint64_t)n;
    return true;
}

bool gw_body_string(gw_req *r, const char *field, size_t max_bytes, const char **out,
                    bool *present)
{
    json_t *v;
    if (!body_field(r, field, present, &v) || v == NULL) {
        return v == NULL && present != NULL;
    }
    size_t len = json_is_string(v) ? json_string_length(v) : 0;
    if (len == 0 || len > max_bytes || memchr(json_string_value(v), '\0', len) != NULL) {
        gw_reply_error(r, 400, "invalid_field", "%s: expected a string of 1..%zu bytes", field,
                       max_bytes);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

bool gw_body_bool(gw_req *r, const char *field, bool *out, bool *present)
{
    json_t *v;
    if (!body_field(r, field, present, &v) || v == NULL) {
        return v == NULL && present != NULL;
    }
    if (!json_is_boolean(v)) {
        gw_reply_error(r, 400, "invalid_field", "%s: expected true or false", field);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* ---- Dispatch ------------------------------------------------------------ */

static void req_dispose(void *p)
{
    gw_req *r = p;
    gw_req_gone(r);
    json_decref(r->body);
    r->body = NULL;
    gw_req_leave_service(r);
}

static void peer_address(gw_req *r)
{
    struct sockaddr_storage ss;
    h2o_conn_t *conn = r->h2o->conn;
    socklen_t len = conn->callbacks->get_peername(conn, (struct sockaddr *)&ss);
    if (len == 0 || h2o_socket_getnumerichost((struct sockaddr *)&ss, len, r->client_ip) ==
                        SIZE_MAX) {
        strcpy(r->client_ip, "0.0.0.0");
    }
}

static size_t header_bytes(const h2o_req_t *h2o)
{
    size_t n = h2o->method.len + h2o->path.len + h2o->authority.len;
    for (size_t i = 0; i < h2o->headers.size; i++) {
        n += h2o->headers.entries[i].name->len + h2o->headers.entries[i].value.len + 4;
    }
    return n;
}

static bool body_parse(gw_req *r)
{
    h2o_req_t *h2o = r->h2o;
    size_t ct_len;
    const char *ct = gw_header(r, "content-type", &ct_len);
    if (ct != NULL && !(ct_len >= 16 && strncasecmp(ct, "application/json", 16) == 0)) {
        gw_reply_error(r, 415, "unsupported_media_type", "the body must be application/json");
        return false;
    }
    if (h2o->entity.base == NULL || h2o->entity.len == 0) {
        gw_reply_error(r, 400, "invalid_json", "a JSON object body is required");
        return false;
    }
    json_error_t e;
    r->body = json_loadb(h2o->entity.base, h2o->entity.len, JSON_REJECT_DUPLICATES, &e);
    if (r->body == NULL) {
        gw_reply_error(r, 400, "invalid_json", "body: %s at byte %d", e.text, e.position);
        return false;
    }
    if (!json_is_object(r->body)) {
        gw_reply_error(r, 400, "invalid_json", "body: expected a JSON object");
        return false;
    }
    return true;
}

/* Checks that need no authentication; false when one already replied. */
static bool request_admit(gw_req *r, bool path_known, bool bad_id)
{
    const gw_config *cfg = &r->gw->cfg;
    if (r->worker->in_service > cfg->inflight_max) {
        atomic_fetch_add_explicit(&r->worker->metrics.busy_refused, 1, memory_order_relaxed);
        gw_reply_error_retry(r, 503, "busy", 1, "too many requests in service; retry");
        return false;
    }
    if (r->route == NULL && path_known) {
        char allow[64];
        allow_list(r->h2o, allow, sizeof(allow));
        header_add(r, H2O_TOKEN_ALLOW, allow);
        gw_reply_error(r, 405, "method_not_allowed", "allowed: %s", allow);
        return false;
    }
    if (r->route == NULL) {
        gw_reply_error(r, 404, "not_found", "no such resource");
        return false;
    }
    if (bad_id) {
        gw_reply_error(r, 400, "invalid_id",
                       "ids in the path are whole numbers from 0 to 9007199254740991");
        return false;
    }
    if (header_bytes(r->h2o) > cfg->header_bytes_max) {
        gw_reply_error(r, 431, "headers_too_large", "request line and headers over %u bytes",
                       cfg->header_bytes_max);
        return false;
    }
    return !r->route->json_body || body_parse(r);
}

/* Paths no route knows go to the static files (when --static is set), but
 * never the API's: /api/... stays JSON. */
static bool static_file(const h2o_req_t *h2o, const gw_worker *w)
{
    return w->gw->cfg.static_dir[0] != '\0' &&
           !(h2o->path.len >= 5 && memcmp(h2o->path.base, "/api/", 5) == 0) &&
           (h2o_memis(h2o->method.base, h2o->method.len, H2O_STRLIT("GET")) ||
            h2o_memis(h2o->method.base, h2o->method.len, H2O_STRLIT("HEAD")));
}

int gw_dispatch(h2o_req_t *h2o, gw_worker *w)
{
    uint64_t params[GW_PATH_PARAMS_MAX] = {0};
    bool path_known, bad_id;
    const gw_route *route = route_find(h2o, params, &path_known, &bad_id);
    if (route == NULL && !path_known && static_file(h2o, w)) {
        return -1; /* the next handler: h2o's file handler */
    }
    gw_req *r = h2o_mem_alloc_shared(&h2o->pool, sizeof(*r), req_dispose);
    memset(r, 0, sizeof(*r));
    r->h2o = h2o;
    r->worker = w;
    r->gw = w->gw;
    r->started_ns = tg_mono_ns();
    gw_gauge_add(&w->in_service, 1);
    peer_address(r);
    r->route = route;
    memcpy(r->params, params, sizeof(params));
    if (request_admit(r, path_known, bad_id)) {
        gw_authenticate(r);
    }
    return 0;
}

void gw_run_handler(gw_req *r)
{
    gw_auth_level need = r->route->auth;
    bool allowed = need <= GW_AUTH_USER ||
                   (need == GW_AUTH_ORGANIZER && r->who.role >= GW_ROLE_ORGANIZER) ||
                   (need == GW_AUTH_ADMIN && r->who.role == GW_ROLE_ADMIN);
    if (!allowed) {
        gw_reply_error(r, 403, "forbidden", "this needs the role %s",
                       need == GW_AUTH_ADMIN ? "admin" : "organizer or admin");
        return;
    }
    r->route->handler(r);
}

/*
 * gateway.h — the contract between the gateway's modules.
 *
 * The gateway is a few worker threads, each running one libuv loop with an
 * h2o context and its own SO_REUSEPORT listener.  A request is served on the
 * loop thread that accepted it, from start to finish.  Whatever would block
 * a loop — a processing unit's reply, a PostgreSQL query, an argon2id hash —
 * runs elsewhere (nng's threads, the gateway's pool threads) and its result
 * comes back to the request's own loop through the worker's completion queue
 * (a bounded list and a uv_async_t).  So handlers are plain sequential code
 * on one thread: start an operation, return; its `done` callback continues.
 *
 * Lifetime.  A gw_req lives in its h2o request's memory pool.  When the
 * client goes away h2o disposes of the pool; an operation still in flight
 * then finds its request gone and drops its result (its `done` never runs),
 * so no handler ever touches freed memory.  At most one operation is in
 * flight per request.
 *
 * Threads.  Functions taking a gw_req run on that request's loop thread.
 * gw_db_run callbacks run on a pool thread and must touch nothing but their
 * job and the PGconn.  Everything under "process-wide" is safe from any
 * thread.
 */
#ifndef TIXGRID_GATEWAY_GATEWAY_H
#define TIXGRID_GATEWAY_GATEWAY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config.h"
#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/seat.h"
#include "tixgrid/wire.h"

typedef struct gw_gateway gw_gateway;
typedef struct gw_worker gw_worker;
typedef struct gw_req gw_req;

/* ---- Who is calling ------------------------------------------------------ */

typedef enum {
    GW_ROLE_BUYER = 0,
    GW_ROLE_ORGANIZER = 1,
    GW_ROLE_ADMIN = 2,
} gw_role;

typedef struct {
    uint64_t user_id; /* users.id; 0: nobody (a public route) */
    gw_role role;
    int64_t expires_s; /* a token's exp (Unix seconds); 0 for Basic */
} gw_principal;

/* "buyer", "organizer", "admin". */
const char *gw_role_name(gw_role role);
/* TG_EINVAL for anything else. */
tg_err gw_role_parse(const char *name, gw_role *out);

/* ---- Routes -------------------------------------------------------------- */

typedef enum {
    GW_AUTH_PUBLIC = 0, /* anyone */
    GW_AUTH_USER,       /* any signed-in user */
    GW_AUTH_ORGANIZER,  /* role organizer or admin */
    GW_AUTH_ADMIN,      /* role admin */
} gw_auth_level;

typedef void (*gw_handler)(gw_req *r);

typedef struct {
    const char *method;  /* "GET", "POST", "PATCH", "DELETE" */
    const char *pattern; /* "/api/bookings/{id}/payment-status": {id} is a decimal id */
    gw_auth_level auth;
    bool json_body; /* the body must be a JSON object (r->body) */
    gw_handler handler;
    const char *name; /* for metrics: "bookings_get" */
} gw_route;

/* ---- A request in service (loop thread) ---------------------------------- */

#define GW_PATH_PARAMS_MAX 2

struct gw_req {
    gw_worker *worker;
    gw_gateway *gw;
    const gw_route *route;
    uint64_t params[GW_PATH_PARAMS_MAX]; /* the pattern's {id}s in order */
    gw_principal who;                    /* set before the handler on non-public routes */
    char client_ip[48];                  /* "127.0.0.1", "::1" */
    json_t *body;                        /* the parsed body of json_body routes, else NULL */
    void *state;                         /* the handler's own, allocated with gw_alloc */
    /* Private to the core (server.c, call.c, http.c). */
    struct st_h2o_req_t *h2o;
    struct gw_call *pending;
    struct gw_pay_call *pay_call; /* provider.c: the provider call in flight */
    /* Runs when the client goes away (the request's pool is disposed) for
     * handlers that keep the request waiting on something of their own
     * (seatmap.c's snapshot waiters, live.c's streams); NULL: none. */
    void (*on_gone)(gw_req *r);
    int64_t started_ns;
    bool replied;
    bool streaming;      /* gw_req_stream */
    bool out_of_service; /* gw_req_leave_service: not counted in service */
};

/* Memory that lives as long as the request (its h2o pool), zeroed. */
void *gw_alloc(gw_req *r, size_t size);

/* The query parameter `name`, percent-decoded, NUL-terminated, in the
 * request's pool; NULL when absent.  A parameter given twice is the first. */
const char *gw_query(gw_req *r, const char *name);

/* A request header's value (case-insensitive name); NULL when absent. */
const char *gw_header(gw_req *r, const char *name, size_t *len);

/* ---- Input checks: each replies 400 naming the field and returns false --- */

/* A required (or, with present != NULL, optional) integer field of the JSON
 * body in [min, max].  Strings of digits are not integers. */
bool gw_body_u64(gw_req *r, const char *field, uint64_t min, uint64_t max, uint64_t *out,
                 bool *present);
/* A string field: valid UTF-8 (jansson checks), 1..max_bytes bytes. */
bool gw_body_string(gw_req *r, const char *field, size_t max_bytes, const char **out,
                    bool *present);
bool gw_body_bool(gw_req *r, const char *field, bool *out, bool *present);
/* A query parameter in [min, max]; fallback when absent. */
bool gw_query_u64(gw_req *r, const char *name, uint64_t min, uint64_t max, uint64_t fallback,
                  uint64_t *out);

/* ---- Replies (each exactly once per request) ------------------------------ */

/* Sends body (stolen) as application/json with status. */
void gw_reply_json(gw_req *r, int status, json_t *body);
/* {"error": {"code": code, "message": ...}}.  401 adds WWW-Authenticate,
 * 429 and 503 add Retry-After: retry_after_s (0: 1). */
void gw_reply_error(gw_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void gw_reply_error_retry(gw_req *r, int status, const char *code, uint32_t retry_after_s,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The HTTP answer to a grid error (see gateway/README.md, "Errors"):
 * seat_taken → 409 naming the seats (API ids, from reply), not_found → 404,
 * booking_state/expired → 409, unavailable/timed out/backlog → 503, ... */
void gw_reply_grid_error(gw_req *r, tg_err err, const tg_msg *reply, uint32_t partition_id);
/* Adds a response header (name lower-case; value copied) before a reply. */
void gw_reply_header(gw_req *r, const char *name, const char *value);
/* The handler answers with a stream of its own (h2o_start_response): r
 * counts as replied, and no longer as a request in service. */
void gw_req_stream(gw_req *r);
/* r no longer counts as a request in service (--inflight-max), from now on;
 * once.  For a request that is to become a stream, bounded by limits of its
 * own, while it waits to start (live.c). */
void gw_req_leave_service(gw_req *r);
/* Any other body: content_type and len bytes (copied). */
void gw_reply_raw(gw_req *r, int status, const char *content_type, const void *data, size_t len);
/* A 3xx to location (copied), with an empty body. */
void gw_reply_redirect(gw_req *r, int status, const char *location);

/* ---- Operations that complete later ------------------------------------- */

/* Runs on r's loop thread with the unit's reply (valid during the call),
 * only if r is still alive.  err as tg_client_cb. */
typedef void (*gw_grid_done)(gw_req *r, tg_err err, const tg_msg *reply);

/* Which large arrays the reply may carry (wire.h tg_wire_space). */
enum {
    GW_SPACE_NONE = 0,
    GW_SPACE_SEATS = 1u << 0,  /* seats_list_ok */
    GW_SPACE_COUNTS = 1u << 1, /* availability_ok rows */
    GW_SPACE_ROWS = 1u << 2,   /* layout_ok rows */
};

/* Sends msg to the primary of partition_id.  On an error return done never
 * runs (and nothing was sent); TG_EBUSY when the worker's calls are all in
 * flight. */
tg_err gw_grid_send(gw_req *r, uint32_t partition_id, const tg_msg *msg, unsigned space,
                    gw_grid_done done);

/* A PostgreSQL job: run on a pool thread with a connection (reconnected as
 * needed; db is NULL when PostgreSQL is unreachable), then done on r's loop
 * thread if r is still alive.  The job (the caller's allocation) belongs to
 * the gateway from the call on: job_free runs exactly once, after done, or
 * at once when the call fails (TG_EBUSY: the pool's queue is full). */
typedef void (*gw_db_run)(PGconn *db, void *job);
typedef void (*gw_db_done)(gw_req *r, void *job);
tg_err gw_db_submit(gw_req *r, gw_db_run run, gw_db_done done, void *job,
                    void (*job_free)(void *job));

/* An HTTP request to another service (the payment provider), through the
 * worker loop's libcurl multi handle: it never blocks the loop.  done runs
 * on r's loop thread if r is still alive, with the answer (valid during the
 * call).  On an error return done never runs (TG_EBUSY: the worker's calls
 * are all in flight). */
typedef struct {
    tg_err err;        /* TG_OK: an HTTP answer came (any status); TG_ETIMEDOUT; TG_EUNAVAILABLE */
    long status;       /* the HTTP status when err is TG_OK */
    const char *body;  /* NUL-terminated (truncated past GW_HTTP_BODY_MAX) */
    size_t len;
    const char *error; /* libcurl's words when err is not TG_OK */
} gw_http_result;
typedef void (*gw_http_done)(gw_req *r, const gw_http_result *res);

#define GW_HTTP_BODY_MAX (64u << 10)

/* method "GET" or "POST"; body: JSON sent as application/json, or NULL. */
tg_err gw_http_send(gw_req *r, const char *method, const char *url, const char *body,
                    uint32_t timeout_ms, gw_http_done done);

/* ---- The partition map (process-wide) ----------------------------------- */

typedef struct {
    char name[TG_NAME_BYTES];
    int64_t price_minor;
    char currency[TG_CURRENCY_BYTES];
    uint32_t row_first, row_count;
    uint32_t seat_first, seat_count; /* in the partition */
} gw_section;

typedef struct {
    char name[TG_NAME_BYTES];
    uint32_t section;
    uint32_t seat_first, seat_count; /* in the partition */
} gw_row;

/* A partition's layout: immutable once loaded, valid until the process
 * exits. */
typedef struct {
    uint32_t partition_id;
    uint64_t event_id;
    uint32_t first_seat; /* the event's seat number of the partition's seat 0 */
    uint32_t seat_count;
    uint32_t section_count;
    gw_section sections[TG_SECTIONS_MAX];
    uint32_t row_count;
    gw_row *rows;
} gw_layout;

#define GW_EVENT_PARTITIONS_MAX 64u

/* The partitions of event_id, in seat order (their layouts).  Returns the
 * count (0: unknown or not placed). */
uint32_t gw_map_event(gw_gateway *gw, uint64_t event_id,
                      const gw_layout *out[GW_EVENT_PARTITIONS_MAX]);
/* Whether the event's sale is open (published, within its sale window), as
 * of the last map read. */
bool gw_map_on_sale(gw_gateway *gw, uint64_t event_id);
/* Reads the map again from PostgreSQL and waits for that read (begun
 * after this call) to finish, at most timeout_ms; false when it did not.
 * Blocks: pool threads only (after a write the caller's answer depends
 * on). */
bool gw_map_refresh_wait(gw_gateway *gw, uint32_t timeout_ms);
/* The layout of one partition; NULL when unknown. */
const gw_layout *gw_map_layout(gw_gateway *gw, uint32_t partition_id);
/* Where partition_id's primary publishes seat_changes ("" none) and
 * whether it answered at the last map read; false when the map does not
 * place the partition. */
bool gw_map_route(gw_gateway *gw, uint32_t partition_id, char pub_url[TG_URL_BYTES],
                  bool *reachable);
/* The map's epoch as last read; 0 before the first read. */
uint64_t gw_map_epoch(gw_gateway *gw);

/* API seat ids name a partition and a seat in it, like booking ids
 * (partition_id << 32 | seat), so that any seat routes with no lookup. */
static inline uint64_t gw_seat_api_id(uint32_t partition_id, uint32_t seat)
{
    return (uint64_t)partition_id << 32 | seat;
}

/* The row of a seat of the layout (binary search); row_count when none. */
uint32_t gw_layout_row_of(const gw_layout *l, uint32_t seat);
/* A seat as the API shows it: {"id", "seat_no", "section", "row", "number",
 * "price", "currency"} and, when word is not NULL, "status". */
json_t *gw_seat_json(const gw_layout *l, uint32_t seat, const uint64_t *word);
/* The seat list of a reply as API seats (no status). */
json_t *gw_seats_json(const gw_layout *l, const tg_wire_seat_ids *seats);
/* RFC 3339 UTC of a wall-clock time in ms. */
json_t *gw_time_json(int64_t unix_ms);
/* Every placed partition's id (up to max); returns the count. */
uint32_t gw_map_partitions(gw_gateway *gw, uint32_t *ids, uint32_t max);

/* ---- The audit log (process-wide queue, written behind) ----------------- */

/* Records one purchase operation: the caller (r's user and client IP), the
 * action ("seats_hold"), booking and event, the seats (event seat numbers),
 * the outcome ("ok" or a tg_errname) and detail (stolen, may be NULL). */
void gw_audit(gw_req *r, const char *action, tg_booking_id booking, uint64_t event_id,
              const uint32_t *seat_nos, uint32_t seat_count, const char *outcome, json_t *detail);
/* The same for what the gateway does on its own (no request: no client IP,
 * user 0), from any thread. */
void gw_audit_system(gw_gateway *gw, const char *action, tg_booking_id booking,
                     uint64_t event_id, const char *outcome, json_t *detail);
/* False, after answering 503 audit_backlog, when the audit queue is past
 * its high-water mark: purchase operations refuse before they change
 * anything until it drains. */
bool gw_audit_admit(gw_req *r);

/* The settings the gateway runs with. */
const gw_config *gw_config_of(gw_gateway *gw);

/* ---- Handlers, by module ------------------------------------------------- */

/* accounts.c */
void gw_on_register(gw_req *r);
void gw_on_login(gw_req *r);
void gw_on_me(gw_req *r);
/* events.c */
void gw_on_events_list(gw_req *r);
void gw_on_events_search(gw_req *r);
void gw_on_event_get(gw_req *r);
void gw_on_availability(gw_req *r);
/* Answers for an event the map does not place: 404 when PostgreSQL has no
 * such published event, else 503 (cached like the event reads). */
void gw_event_not_placed(gw_req *r, uint64_t event_id);
/* One partition's seats by state, as availability_ok carries them. */
typedef struct {
    uint64_t version;
    tg_wire_counts totals;
    tg_wire_counts sections[TG_SECTIONS_MAX];
    tg_wire_counts *rows; /* row_count of the layout */
} gw_partition_counts;
/* The body GET /availability answers for these partitions (in seat order)
 * and counts — with "rows": [] unless with_rows; malloc'd (its length in
 * *len); NULL when out of memory or the partitions leave a gap.  Any
 * thread. */
char *gw_availability_render(uint64_t event_id, const gw_layout *const *layouts, uint32_t count,
                             const gw_partition_counts *counts, bool with_rows, size_t *len);
/* seatmap.c, live.c */
void gw_on_seatmap(gw_req *r);
void gw_on_live(gw_req *r);
/* Forgets every cached event read (after an organizer's change). */
void gw_events_cache_clear(void);
/* seats.c */
void gw_on_seats_list(gw_req *r);
void gw_on_seats_select(gw_req *r);
void gw_on_seats_release(gw_req *r);
/* bookings.c */
void gw_on_booking_create(gw_req *r);
void gw_on_bookings_list(gw_req *r);
void gw_on_booking_get(gw_req *r);
void gw_on_booking_cancel(gw_req *r);
/* payments.c */
void gw_on_payment_initiate(gw_req *r);
void gw_on_payment_status(gw_req *r);
void gw_on_payment_webhook(gw_req *r);
void gw_on_payment_return(gw_req *r);
void gw_on_breaker_status(gw_req *r);
/* ops.c */
void gw_on_healthz(gw_req *r);
void gw_on_readyz(gw_req *r);
void gw_on_metrics(gw_req *r);
void gw_on_reset(gw_req *r);

#endif

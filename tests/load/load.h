/*
 * load.h — what the parts of tixgrid-load share (tests/load/README.md).
 *
 * engine.c    the open-loop schedule, keep-alive connections, dispatch, histograms
 * scenarios.c what each scenario sends and what its answers change
 * audit.c     the closing audit against PostgreSQL (libpq)
 * report.c    the live progress line, the table and the JSON report
 * main.c      options and the run's order
 *
 * Everything runs on one thread: the libuv loop, and before and after it
 * the blocking setup calls and the audit.  Every table is sized from the
 * options before the clock starts, each within a bound below; the hot path
 * allocates only when a scenario parses an answer's JSON (jansson).
 */
#ifndef TIXGRID_TESTS_LOAD_H
#define TIXGRID_TESTS_LOAD_H

#include "tixgrid/limits.h"

#include <jansson.h>
#include <uv.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define PROGRAM "tixgrid-load"

/* Bounds, each with its unit. */
#define LOAD_CONNECTIONS_MAX        20000u   /* keep-alive connections to one server */
#define LOAD_SESSIONS_MAX           200000u  /* sessions (virtual buyers) at once */
#define LOAD_USERS_MAX              10000u   /* accounts logged in before the clock */
#define LOAD_RATE_MAX               1000000u /* arrivals per second */
#define LOAD_SECONDS_MAX            3600u    /* one segment of the rate script, the warm-up */
#define LOAD_SEGMENTS_MAX           32u      /* segments of a rate script */
#define LOAD_REQUEST_BYTES_MAX      2048u    /* one request: line, headers and body */
#define LOAD_ANSWER_BYTES_MAX       8192u /* of one answer kept: head and body (more is counted) */
#define LOAD_SETUP_ANSWER_BYTES_MAX (1u << 20) /* one answer to a setup call (an event) */
#define LOAD_TOKEN_BYTES_MAX        1024u      /* a Bearer token */
#define LOAD_HOST_BYTES_MAX         256u       /* a Host header's value */
#define LOAD_PATH_BYTES_MAX         512u       /* a path */
#define LOAD_PAYMENT_ID_BYTES       136u   /* a payment id (the gateway takes 1..128) and its NUL */
#define LOAD_POLLS_MAX              200u   /* payment-status polls of one payment */
#define LOAD_CONNECT_TIMEOUT_MS     10000u /* to open every connection */
#define LOAD_SETUP_TIMEOUT_S        10     /* one setup call (login, booking) */
#define LOAD_ERRORS_SHOWN           5u     /* failures described on stderr; the rest are counted */
#define LOAD_ERROR_BODY_BYTES       200    /* of an unexpected answer's body, shown */
#define LOAD_STATUS_CODES           600u   /* statuses counted one by one: 0..599 */

/* The routes measured one by one. */
typedef enum {
    ROUTE_GET,          /* GET of --url's path (any server) */
    ROUTE_EVENTS,       /* GET /api/events */
    ROUTE_EVENT,        /* GET /api/events/{id} */
    ROUTE_AVAILABILITY, /* GET /api/events/{id}/availability */
    ROUTE_LOGIN,        /* POST /api/auth/login */
    ROUTE_BOOKING,      /* POST /api/bookings */
    ROUTE_SELECT,       /* PATCH /api/seats/select */
    ROUTE_RELEASE,      /* PATCH /api/seats/release */
    ROUTE_CANCEL,       /* PATCH /api/bookings/cancel */
    ROUTE_PAY_START,    /* PATCH /api/bookings/initiatePayment */
    ROUTE_PAY_APPROVE,  /* POST /pay/{id}/approve on the sandbox */
    ROUTE_PAY_STATUS,   /* GET /api/bookings/{id}/payment-status */
    ROUTE_COUNT_
} load_route;

/* The servers requests go to. */
typedef enum { TARGET_GATEWAY, TARGET_SANDBOX, TARGET_COUNT_ } load_target_id;

/* ---- Histograms (engine.c) ---------------------------------------------------- */

/* Log-linear buckets (HdrHistogram's layout): every power of two of
 * nanoseconds cut into 2^HIST_SUB_BITS buckets, so under 0.8 % error over
 * the whole range with a fixed 58 KiB. */
#define HIST_SUB_BITS 7u
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64u - HIST_SUB_BITS + 1u) * HIST_SUB)

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max_ns; /* exact */
} load_hist;

void load_hist_add(load_hist *h, int64_t ns);
/* The value below which a fraction q of the samples lie (top of its bucket,
 * never above the maximum); 0 when empty. */
uint64_t load_hist_quantile(const load_hist *h, double q);

/* ---- Options (main.c) ---------------------------------------------------------- */

typedef struct {
    double from, to; /* arrivals per second at its start and end */
    double seconds;
} load_segment;

typedef struct {
    const char *url;         /* the gateway (or any server for get) */
    const char *sandbox_url; /* the payment sandbox (purchase, sellout) */
    const char *scenario;
    const char *db; /* conninfo for the audit, or NULL */
    load_segment segments[LOAD_SEGMENTS_MAX];
    uint32_t segment_count;
    uint64_t warmup_seconds; /* arrivals due before this are not recorded */
    uint64_t connections;
    uint64_t sandbox_connections;
    uint64_t sessions;          /* sessions at once (sellout: the buyers) */
    uint64_t max_requests;      /* 0: no bound but the schedule's */
    uint64_t time_limit_s;      /* the whole run, setup excepted */
    uint64_t catchup_timeout_s; /* the audit's wait for PostgreSQL */
    const char *email;          /* hold-release, browse-auth: one account */
    const char *password;
    const char *user_pattern; /* purchase, sellout: printf pattern with one %u */
    uint64_t users;           /* accounts user_pattern names, 1.. */
    uint64_t event_id;
    uint64_t seat_first; /* hold-release: API id of the range's first seat */
    uint64_t seats;      /* hold-release: seats in the range */
    uint64_t quantity;   /* purchase, sellout: seats per booking */
    uint64_t poll_ms;    /* between payment-status polls */
    bool json;
    const char *json_file; /* the JSON report written here too, or NULL */
    bool progress;
} load_options;

/* ---- The run (engine.c) ---------------------------------------------------------- */

typedef struct {
    uint8_t route;    /* load_route */
    uint8_t target;   /* load_target_id */
    uint32_t session; /* index in the sessions */
    uint32_t seat;    /* hold-release, hold-cancel: index in the seat range */
    uint32_t booking; /* hold-release, hold-cancel: index in its bookings */
    uint8_t retried;  /* sent again after the server closed its connection */
    int64_t due_ns;   /* when it was due: its arrival, or when its session could go on */
} load_op;

/* A FIFO of ops, sized at the start. */
typedef struct {
    load_op *ops;
    uint32_t capacity, head, count;
} load_queue;

typedef struct load_run load_run;

typedef struct {
    uv_tcp_t tcp; /* data: this connection */
    uv_connect_t connect_req;
    uv_write_t write_req;
    load_run *run;
    uint8_t target;
    bool open;          /* connected, not failed, not closed */
    bool busy;          /* a request is in flight */
    bool writing;       /* write_req is in use (its callback has not run) */
    bool free_on_write; /* answered before its write callback: free it then */
    bool reopening;     /* closed after Connection: close, a new one on its way */
    load_op op;         /* the request in flight */
    int64_t sent_ns;    /* when it was written */
    size_t out_len;
    size_t in_len;   /* bytes of the answer kept in `in` */
    size_t received; /* bytes of the answer received (a large body is not all kept) */
    char out[LOAD_REQUEST_BYTES_MAX];
    char in[LOAD_ANSWER_BYTES_MAX];
} load_conn;

/* One server and its connections. */
typedef struct {
    struct sockaddr_storage addr;
    char host[LOAD_HOST_BYTES_MAX]; /* Host header */
    char path[LOAD_PATH_BYTES_MAX]; /* the URL's path */
    load_conn *conns;
    uint32_t count;       /* connections wanted */
    uint32_t made;        /* of which uv_tcp_init'ed (closed at the end) */
    uint32_t *free_conns; /* stack of idle open connections */
    uint32_t free_count;
    uint32_t open_count;
    load_queue ready; /* ops whose session may go on now, oldest first */
} load_target;

typedef struct {
    load_hist latency;                    /* from due to answered */
    uint64_t statuses[LOAD_STATUS_CODES]; /* answers by status */
    uint64_t unexpected;                  /* answers the scenario did not expect */
    uint64_t transport_errors;            /* lost with their connection */
} load_route_stats;

/* What a scenario does (scenarios.c): setup before the clock (blocking
 * calls allowed), then on the loop a new session's first op, each op's
 * request, and what its answer changes. */
typedef struct {
    const char *name;
    bool (*setup)(load_run *run);
    /* A new session's first op; false when none can start now. */
    bool (*arrive)(load_run *run, uint32_t session, load_op *op);
    size_t (*format)(load_run *run, const load_op *op, char *buf, size_t size);
    /* The answer (body, len) to op: returns whether the status was one the
     * scenario expects; queues the session's next op or ends it. */
    bool (*done)(load_run *run, const load_op *op, int status, const char *body, size_t len);
} load_scenario;

extern const load_scenario load_scenarios[];
extern const uint32_t load_scenario_count;

/* Scenario state (scenarios.c). */
typedef struct load_sessions_state load_sessions_state;

/* Runs the scenario's setup (blocking calls); frees its state after the run. */
bool load_scenario_setup(load_run *run);
void load_scenario_free(load_run *run);

struct load_run {
    load_options opt;
    const load_scenario *scenario;
    uv_loop_t loop;
    load_target targets[TARGET_COUNT_];
    char token[LOAD_TOKEN_BYTES_MAX]; /* hold-release's account */
    load_sessions_state *sc;          /* the scenario's state */

    /* The schedule: arrival k is due at start_ns + the script's time of k. */
    int64_t start_ns;
    uint64_t arrivals_total; /* arrivals in the schedule (sellout: the buyers) */
    uint64_t arrived;        /* arrivals started */
    uint32_t segment;        /* cursor: the segment of arrival `arrived` */
    double segment_start_s, segment_count_before;
    int64_t warmup_end_ns;

    uint32_t *free_sessions; /* stack of unused session slots */
    uint32_t free_session_count;
    uint32_t active_sessions;
    load_queue later; /* ops due later (payment polls), oldest first: one delay for all */

    int timer_fd;         /* armed at the next due time */
    int64_t armed_ns;     /* 0: disarmed */
    uv_poll_t timer_poll; /* readable when timer_fd fires */
    uv_timer_t guard;     /* the connect timeout, then the time limit */
    uv_timer_t progress;  /* the live line, every second */
    bool finished;
    bool setup_failed;

    uint64_t sent, answered, in_flight, unsendable;
    uint64_t waiting_max; /* most arrivals overdue at once */
    uint64_t reopened;
    uint64_t resent;     /* requests sent again on a new connection (conn_closed_early) */
    uint64_t unfinished; /* sessions cut by --max-requests or the time limit */
    int64_t end_ns;      /* when the loop stopped */
    load_route_stats routes[ROUTE_COUNT_];
    load_hist interval; /* the progress line's second */
    uint64_t interval_answered;
    uint32_t errors_shown;

    /* Sales (purchase, sellout), for the report and the audit. */
    uint64_t *sale_bookings; /* booking ids whose payment completed */
    uint32_t *sale_seats;    /* their seat counts */
    uint64_t sale_count, sale_capacity, seats_sold;
    uint64_t double_sales_seen; /* seats two of this run's sales both got */
    int64_t last_sale_ns;
    bool sold_out; /* sellout: every buyer found no seat left */
};

void load_error_show(load_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats one HTTP/1.1 request; 0 when it does not fit.  token and body may
 * be NULL. */
size_t load_request_format(char *buf, size_t size, const char *method, const char *path,
                           const char *host, const char *token, const char *body, bool close);
/* One blocking request on a connection of its own (setup only); *doc gets
 * the JSON answer of a 2xx.  Prints why on failure. */
bool load_setup_call(load_run *run, const char *method, const char *path, const char *token,
                     const char *body, json_t **doc);

/* Queues a session's next op, due now or after delay_ms. */
void load_follow(load_run *run, load_op op, uint32_t delay_ms);
/* A session ends; its slot is free again. */
void load_session_end(load_run *run, uint32_t session);
/* Records a sale the grid acknowledged. */
void load_sale(load_run *run, uint64_t booking, uint32_t seats);

/* The schedule's arrivals and the script's length. */
uint64_t load_schedule_total(const load_options *o);
double load_schedule_seconds(const load_options *o);

/* http://HOST[:PORT][/PATH] into t; an exit code (0: resolved). */
int load_target_resolve(load_target *t, const char *url, const char *flag);
/* Opens the connections and runs the loop until the run ends; false when
 * the run could not start. */
bool load_run_loop(load_run *run);
void load_run_free(load_run *run);

/* ---- Report (report.c) and audit (audit.c) ---------------------------------------- */

typedef struct {
    bool ran;           /* --db given and PostgreSQL reached */
    bool clean;         /* every check passed */
    char error[256];    /* why it could not run */
    int64_t catchup_ms; /* from the last sale until PostgreSQL held every sale; -1: never */
    uint64_t sales_checked, sales_missing;
    uint64_t double_sold;  /* seats in two paid bookings */
    uint64_t seats_sold;   /* SOLD seats of the event */
    uint64_t seats_paid;   /* seats of its paid bookings */
    uint64_t sold_unpaid;  /* SOLD seats whose booking is not paid */
    uint64_t seats_unsold; /* sellout: seats left FREE, SELECTED or RESERVED */
} load_audit;

void load_audit_run(const load_run *run, load_audit *a);
void load_progress(load_run *run);
void load_report_table(const load_run *run, const load_audit *a);
void load_report_json(const load_run *run, const load_audit *a, FILE *out);
const char *load_route_name(load_route r);
/* Requests that make the run invalid: unexpected answers, transport errors,
 * unanswered and unsent ones, unfinished sessions. */
uint64_t load_failures(const load_run *run);

#endif

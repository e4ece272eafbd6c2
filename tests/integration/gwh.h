/*
 * gwh.h — a whole grid behind a real tixgrid-gateway, for the gateway's
 * black-box integration tests (tests/integration/gateway_*_test.c).
 *
 * In the manner of Redis's start_server, each test brings up what
 * scripts/demo brings up, privately: a PostgreSQL of its own (pg.h, fsync
 * off) with the schema, the demo data (persister/README.md, "Demo data")
 * and 200 load-test users; one or two real tixgrid-pu units (harness.h),
 * registered in grid_members, with demo partitions placed on them and
 * replayed from PostgreSQL (`tixgrid-persister replay`) — or, with
 * gwh_options.manager, a tixgrid-manager (TIXGRID_MANAGER_BIN) that the
 * units join and that adopts the replayed partitions; the write-behind
 * drain (`tixgrid-persister run`); and tixgrid-gateway on a free loopback
 * port, waited for until GET /readyz answers 200.  Binaries come from
 * TIXGRID_GATEWAY_BIN, TIXGRID_PERSISTER_BIN and TIXGRID_PU_BIN (set by
 * tests/meson.build).
 *
 * The seeded database.  migrate + seed-demo + seed-users take several
 * seconds (100,000 seats, argon2id hashes), so they run once per build: the
 * first test that needs the database seeds a server, stops it cleanly and
 * keeps a copy of its data folder in TIXGRID_IT_GOLDEN_DIR (tests/meson.build
 * sets it to build/tests/gwh-golden/) with a stamp naming the persister
 * binary that made it (its size and time: the migrations are compiled in);
 * a later test starts its server on a copy of that folder
 * (pgt_start_copy), and makes it again when the stamp differs.  A lock file
 * is held exclusively while the folder is made and shared while it is
 * copied, as tests run side by side.  Without TIXGRID_IT_GOLDEN_DIR (a test
 * binary run by hand) the folder is /tmp/tixgrid-gwh-golden-<runner pid>/,
 * removed by the criterion runner when all its tests are done; a runner
 * killed by its timeout leaves it behind, and the next run removes folders
 * whose runner is gone.
 *
 * Processes and folders.  The drain and the gateways are started with
 * PR_SET_PDEATHSIG (SIGKILL), so nothing outlives the test process even
 * when its timeout kills it.  Their logs and the gateway's data folder (its
 * generated JWT key, jwt.secret) live in the test's folder
 * /tmp/tixgrid-gwh-<pid>-XXXXXX: gateway-N.log, drain.log, and gateway-data/
 * (shared by the grid's gateways, so that one's tokens are good at all).
 * A failing request (no answer, or a 5xx), start or stop puts the end of
 * the log concerned into the assertion's message: with --tap, criterion
 * shows messages but not what a test writes on stderr.
 * gwh_fini_all (the criterion .fini of every gateway test) kills what still
 * runs and removes folders, servers and segments, also after a failed
 * assertion; TIXGRID_IT_KEEP=1 keeps the folders for a post-mortem.  Every
 * wait is bounded (GWH_*_MS).
 *
 * HTTP.  Requests go through libcurl (one easy handle per gateway, so a
 * connection is kept alive between requests, like a browser's; HTTP/2
 * requests open a connection each, see gwh_send).  Responses
 * live until the end of the test (freed by gwh_fini_all): tests read them
 * without freeing anything.  Helpers that assert must be called from the
 * test's main thread.
 */
#ifndef TIXGRID_TEST_INTEGRATION_GWH_H
#define TIXGRID_TEST_INTEGRATION_GWH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "harness.h"
#include "pg.h"

/* Bounds of every wait, in ms. */
#define GWH_READY_TIMEOUT_MS 30000   /* a gateway's GET /readyz answers 200 */
#define GWH_STOP_TIMEOUT_MS 15000    /* a gateway or the drain exits after SIGTERM */
#define GWH_REQUEST_TIMEOUT_MS 15000 /* one HTTP request of a test */
#define GWH_DRAIN_TIMEOUT_MS 30000   /* PostgreSQL catches up with the grid */
/* The gateway's /availability (counted from its snapshots) reaches a write's
 * version: a publisher tick and a hand-off, a few ms on an idle machine. */
#define GWH_AVAILABILITY_TIMEOUT_MS 2000

/* Gateways one test may start. */
#define GWH_GATEWAYS_MAX 3
/* Demo partitions one test may place. */
#define GWH_PARTITIONS_MAX 4
/* Units one test may start. */
#define GWH_UNITS_MAX 3
/* Extra flags of one gateway. */
#define GWH_FLAGS_MAX 24

/* The demo concert (persister/README.md): event 1 is partition 1 with
 * 100,000 seats; event 3 is partition 3 with 1,130 seats. */
#define GWH_DEMO_EVENT 1u
#define GWH_DEMO_PARTITION 1u
#define GWH_DEMO_SEATS 100000u
#define GWH_HALL_EVENT 3u
#define GWH_HALL_PARTITION 3u
#define GWH_HALL_SEATS 1130u
/* seed-users: user1..user<GWH_LOAD_USERS>@load.tixgrid, one password. */
#define GWH_LOAD_USERS 200u
#define GWH_LOAD_PASSWORD "load-test-1"

/* The API id of seat `seat` of partition `partition`: partition << 32 | seat. */
#define GWH_SEAT_ID(partition, seat) ((uint64_t)(partition) << 32 | (uint64_t)(seat))

typedef struct {
    uint32_t units;                          /* 1..GWH_UNITS_MAX (0: 1) */
    uint32_t partition_count;                /* demo partitions to place (0: the concert on unit 0) */
    uint32_t partitions[GWH_PARTITIONS_MAX]; /* partition ids, e.g. 1 and 3 */
    uint32_t unit_of[GWH_PARTITIONS_MAX];    /* the unit (index) each is placed on */
    const char *const *gateway_flags;        /* extra flags of the first gateway, NULL-ended */
    bool sandbox;                            /* start tixgrid-sandbox-pay, wire the gateway to it */
    const char *const *sandbox_flags;        /* extra flags of the sandbox, NULL-ended */
    const char *const *replay_flags;         /* extra flags of `tixgrid-persister replay` */
    /* A tixgrid-manager before the units (they join it with --manager, each
     * in a zone of its own; the drain and every gateway follow its published
     * map with --manager-pub), placing `backups` backups per partition. */
    bool manager;
    uint32_t backups;
} gwh_options;

typedef struct {
    int index;              /* 1.. in the test */
    pid_t pid;              /* 0 once stopped */
    uint16_t port;          /* 127.0.0.1:port */
    char url[48];           /* http://127.0.0.1:port */
    char log_path[96];      /* <test folder>/gateway-N.log */
    char data_dir[96];      /* <test folder>/gateway-data (jwt.secret), shared */
    void *curl;             /* gwh_send's easy handles (CURL *): HTTP/1.1 ... */
    void *curl_h2;          /* ... and HTTP/2 with prior knowledge */
} gwh_gateway;

typedef struct {
    char dir[64]; /* the test's folder */
    pgt_server *pg;
    PGconn *db;
    uint32_t unit_count;
    hx_unit units[GWH_UNITS_MAX];
    pid_t drain;         /* tixgrid-persister run; 0 once stopped */
    char drain_log[96];  /* <test folder>/drain.log */
    gwh_gateway *gw;     /* the first gateway */
    gwh_gateway *sandbox; /* the payment sandbox (gwh_options.sandbox), or NULL */
    pid_t manager;        /* gwh_options.manager; 0 none or stopped */
    char manager_url[96]; /* its REP address (tixgridctl --manager) */
    char manager_pub[96]; /* where it publishes the map */
    char manager_log[96];
} gwh_grid;

/* Brings the grid up (see the top of the file); o may be NULL: one unit
 * serving the demo concert, a gateway with --allow-reset and no rate
 * limit.  Asserts on any failure, printing the logs concerned.  The grid
 * lives in static storage until gwh_fini_all. */
gwh_grid *gwh_start(const gwh_options *o);

/* Starts one more gateway on the same grid with these flags (NULL-ended;
 * the first gateway's defaults are not implied) and waits for its readyz. */
gwh_gateway *gwh_gateway_start(gwh_grid *g, const char *const *flags);

/* SIGTERM; asserts the gateway exits with 0 within GWH_STOP_TIMEOUT_MS
 * (under AddressSanitizer this is also where its leaks are reported). */
void gwh_gateway_stop_ok(gwh_gateway *gw);

/* Stops everything in order (gateways, drain, units), asserting that each
 * exits with 0: the clean end of a test. */
void gwh_stop_ok(gwh_grid *g);

/* The criterion .fini of every gateway test. */
void gwh_fini_all(void);

/* Prints the last lines of a gateway's log on stderr. */
void gwh_dump_log(const gwh_gateway *gw);

/* ---- The payment sandbox ----------------------------------------------------- */

/* The webhook secret the sandbox signs with and the gateway checks. */
#define GWH_WEBHOOK_SECRET "gwh-webhook-secret-0123456789"

/* Starts tixgrid-sandbox-pay (TIXGRID_SANDBOX_BIN) on port (0: a free one)
 * with these extra flags (NULL-ended, may be NULL) and waits until it
 * answers GET /healthz.  The result is a gwh_gateway (index 0): gwh_send
 * and gwh_http talk to it, its log is shown when a check fails. */
gwh_gateway *gwh_sandbox_start(gwh_grid *g, uint16_t port, const char *const *flags);

/* SIGTERM; asserts the sandbox exits with 0. */
void gwh_sandbox_stop_ok(gwh_gateway *sandbox);

/* ---- HTTP ------------------------------------------------------------------ */

typedef struct {
    long status;    /* 0: no answer (the message says why) */
    long version;   /* CURL_HTTP_VERSION_1_1 or CURL_HTTP_VERSION_2_0 */
    char *body;     /* NUL-terminated */
    size_t len;
    json_t *json;   /* the body parsed, or NULL */
    char *headers;  /* the response's header block, NUL-terminated */
    char what[160]; /* "PATCH /api/seats/select" for messages */
    char error[256]; /* curl's error when status is 0 */
    gwh_gateway *gw; /* that answered (its log is shown when a check fails) */
} gwh_resp;

/* A request beyond the common case. */
typedef struct {
    const char *method;       /* "GET" when NULL */
    const char *path;         /* "/api/me?x=1" */
    const char *auth;         /* the Authorization header's value, or NULL */
    const char *body;         /* sent as is (len bytes, or strlen when len is 0) */
    size_t len;
    const char *content_type; /* "application/json" when NULL and there is a body; "" none */
    const char *const *headers; /* more "Name: value" lines, NULL-ended; may be NULL */
    bool http2;               /* HTTP/2 with prior knowledge (h2c) */
    uint32_t timeout_ms;      /* 0: GWH_REQUEST_TIMEOUT_MS */
} gwh_request_spec;

/* Sends one request on the gateway's kept-alive connection; never asserts
 * on the answer (status 0 when there was none). */
gwh_resp *gwh_send(gwh_gateway *gw, const gwh_request_spec *spec);

/* method path (printf format) with an optional Authorization value and an
 * optional JSON body (Content-Type: application/json). */
gwh_resp *gwh_http(gwh_gateway *gw, const char *method, const char *auth, const char *body,
                   const char *path_fmt, ...) __attribute__((format(printf, 5, 6)));

/* Asserts the status; returns the JSON body (asserted present for 2xx). */
json_t *gwh_expect(const gwh_resp *r, long status);
/* Asserts the status and {"error": {"code": code, ...}}; returns the
 * error's message. */
const char *gwh_expect_error(const gwh_resp *r, long status, const char *code);
/* A response header's value (case-insensitive name), copied to a static
 * buffer; NULL when absent. */
const char *gwh_header(const gwh_resp *r, const char *name);

/* JSON fields that must be there (asserted), by a path of object keys and
 * array indexes: "items.0.id". */
json_t *gwh_json_at(json_t *j, const char *path);
int64_t gwh_int(json_t *j, const char *path);
const char *gwh_str(json_t *j, const char *path);

/* ---- Accounts --------------------------------------------------------------- */

/* POST /api/auth/login; asserts 200 and returns "Bearer <token>" (lives
 * until the end of the test). */
const char *gwh_login(gwh_gateway *gw, const char *email, const char *password);
/* "Basic base64(email:password)" (lives until the end of the test). */
const char *gwh_basic(const char *email, const char *password);
/* The demo accounts (persister/README.md). */
#define GWH_BUYER "buyer@demo.tixgrid"
#define GWH_BUYER_PASSWORD "demo-buyer-1"
#define GWH_BUYER2 "buyer2@demo.tixgrid"
#define GWH_BUYER2_PASSWORD "demo-buyer-2"

/* POST /api/bookings {"event_id": event_id}; asserts 201, returns the id. */
uint64_t gwh_booking_create(gwh_gateway *gw, const char *auth, uint64_t event_id);

/* ---- Raw connections (malformed HTTP) ----------------------------------------- */

/* A TCP connection to the gateway (asserts). */
int gwh_connect(const gwh_gateway *gw);
/* Writes all of data (asserts). */
void gwh_write(int fd, const void *data, size_t len);
/* Reads until the peer closes or timeout_ms passes, into a buffer that
 * lives until the end of the test; *closed tells which. */
char *gwh_read_all(int fd, int timeout_ms, size_t *len, bool *closed);

/* ---- Availability ------------------------------------------------------------- */

/* The partition's log head, asked of the units over the wire (the highest
 * any running unit answers: a backup's is never ahead of its primary's). */
int64_t gwh_log_head(gwh_grid *g, uint32_t partition_id);

/* GET /api/events/{id}/availability once its version is at least
 * version_min: the gateway counts from snapshots that follow the units'
 * change streams, so a read right after a write may not show it yet.
 * Fails after GWH_AVAILABILITY_TIMEOUT_MS saying which version it reached. */
json_t *gwh_availability_at(gwh_gateway *gw, uint64_t event_id, int64_t version_min);

/* The same at the grid's state as of this call: version_min is the log head
 * of the event's one partition (gwh_log_head). */
json_t *gwh_availability_settled(gwh_grid *g, uint64_t event_id, uint32_t partition_id);

/* ---- PostgreSQL --------------------------------------------------------------- */

/* Waits (GWH_DRAIN_TIMEOUT_MS) until PostgreSQL holds every change the
 * partition made so far: partition_offsets.last_seq reaches the partition's
 * log head as its units say when this is called (gwh_log_head). */
void gwh_wait_drained(gwh_grid *g, uint32_t partition_id);

/* A unique string for this test run (emails): "<pid>-<n>". */
const char *gwh_unique(void);

#endif

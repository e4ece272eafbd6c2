/*
 * harness.h — real tixgrid-pu processes for the integration tests.
 *
 * In the manner of Redis's start_server: each test starts the real binary
 * (TIXGRID_PU_BIN, set by tests/meson.build) in a folder of its own made with
 * mkdtemp, listening on ipc://<folder>/pu.rep and publishing on
 * ipc://<folder>/pu.pub, under a unit name no other test can hold
 * ("it-<tag>-<test pid>-<n>"), so its segments in /dev/shm
 * (tixgrid-<name>-p<partition>) are its own.  The unit's stdout and stderr
 * go to <folder>/pu.log (appended across restarts).
 *
 * Every wait is bounded: start waits until the REP socket answers a stats
 * request (HX_START_TIMEOUT_MS), stop waits for the exit after SIGTERM
 * (HX_STOP_TIMEOUT_MS) and then kills.  A unit is started with
 * PR_SET_PDEATHSIG so that it dies with the test process even when the test
 * itself is killed by its timeout.  hx_fini_all (the criterion .fini of every
 * integration test) kills what is still running, removes the unit's segments
 * and its folder, so a failing assertion leaks nothing.  Set TIXGRID_IT_KEEP=1
 * to keep the folders (with pu.log) for a post-mortem.
 *
 * nng 1.5.2 (Debian 12) can hang in nng_close for good once a socket has
 * redialled a peer that went away (fixed upstream in nng 1.9.0), and then
 * every later close in the process hangs too.  So no socket of a test process
 * ever talks to a dead unit: the harness closes the clients and raw sockets
 * it made for a unit (hx_client, hx_unit_raw) before it stops or kills it,
 * makes new ones after a restart, dials a starting unit only once its socket
 * exists, and clients that must outlive a unit run in a helper process
 * (it_load, "Helper processes" below).
 *
 * Helpers that assert (cr_assert) must be called from the test's main thread;
 * threads the tests start report their findings back instead.  hx_unit and
 * hx_helper may live on a test's stack: .fini works from its own copies.
 */
#ifndef TIXGRID_TEST_INTEGRATION_HARNESS_H
#define TIXGRID_TEST_INTEGRATION_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nng/nng.h>

#include "tixgrid/client.h"
#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/seat.h"
#include "tixgrid/wire.h"

/* Bounds of every wait, in ms. */
#define HX_START_TIMEOUT_MS 5000
#define HX_STOP_TIMEOUT_MS 8000
/* Timeout of one request sent through tg_client by the tests. */
#define HX_CALL_TIMEOUT_MS 5000u
/* Extra flags a unit may be started with. */
#define HX_FLAGS_MAX 16
/* Units one test may have started at once. */
#define HX_UNITS_MAX 4

typedef struct {
    char dir[32];                /* the test's own folder: /tmp/tixgrid-it-XXXXXX */
    char name[TG_PU_NAME_BYTES]; /* --name */
    char rep_url[64];            /* --listen: ipc://<dir>/pu.rep */
    char pub_url[64];            /* --pub:    ipc://<dir>/pu.pub */
    char log_path[64];           /* the unit's stdout and stderr */
    char layout_path[64];        /* --partition, when hx_write_layout made one */
    const char *flags[HX_FLAGS_MAX]; /* extra flags, in order (static strings) */
    uint32_t flag_count;
    pid_t pid; /* running process, or 0 */
} hx_unit;

/* A layout of `sections` sections of `rows` rows of `seats` seats each.
 * Section s is named "S<s>" priced 1000*(s+1) EUR cents, rows "R<r>". */
typedef struct {
    uint32_t partition_id;
    uint64_t event_id;
    uint32_t sections;
    uint32_t rows;  /* per section */
    uint32_t seats; /* per row */
    uint32_t hold_ttl_ms;       /* 0: the unit's default */
    uint32_t payment_window_ms; /* 0: the unit's default */
    uint32_t log_records;       /* 0: the unit's default */
    uint32_t booking_capacity;  /* 0: the unit's default */
} hx_layout;

/* The tixgrid-pu binary (TIXGRID_PU_BIN); asserts that it is set. */
const char *hx_pu_bin(void);

/* Makes the folder and names of a new unit (not started).  tag names the
 * test in the unit's name: [a-z0-9], short. */
void hx_unit_init(hx_unit *u, const char *tag);

/* Writes <dir>/<file> with text; returns its path in a static buffer that
 * the next call overwrites. */
const char *hx_write_file(hx_unit *u, const char *file, const char *text);

/* Writes the layout as <dir>/layout.json and uses it as --partition. */
void hx_write_layout(hx_unit *u, const hx_layout *l);

/* Adds an extra flag ("--unpersisted", "--contexts", "8", ...). */
void hx_add_flag(hx_unit *u, const char *flag);

/* Starts the unit and waits until it answers (asserts on failure, printing
 * the end of its log). */
void hx_start(hx_unit *u);

/* Starts it and, without waiting, returns the pid. */
pid_t hx_spawn(hx_unit *u);

/* Starts argv[0] (a path) with argv, the extra environment entries first
 * (NULL-ended, may be NULL: they win over the test's own), stdin from
 * /dev/null, stdout and stderr appended to log_path, and
 * PR_SET_PDEATHSIG so that it dies with the test.  Asserts. */
pid_t hx_spawn_process(const char *const *argv, const char *const *extra_env,
                       const char *log_path);

/* Asserts that every thread of pid runs on the CPUs `want` (as
 * Cpus_allowed_list in /proc/PID/task/TID/status writes them: "0", "0-1");
 * returns how many threads it looked at. */
uint32_t hx_assert_threads_on(pid_t pid, const char *want);

/* Arms, once per test process, a watchdog for a test that hangs: criterion
 * kills it at its timeout with no word on where it hung, so a quarter of the
 * timeout before (10 s at most) the watchdog prints on stderr the stacks of
 * the test process and of its children (eu-stack, from elfutils) and the end
 * of each child's log (watchdog.c).  Every harness function that starts a
 * process arms it; a test without a timeout has none. */
void hx_watchdog_arm(void);

/* Waits for the unit to answer a stats request, until timeout_ms; false if it
 * did not (or exited). */
bool hx_wait_ready(hx_unit *u, int timeout_ms);

/* Closes the unit's clients and raw sockets (see hx_client_close), sends
 * SIGTERM, then waits for the exit (at most HX_STOP_TIMEOUT_MS, then
 * SIGKILL).  Returns the wait status; *elapsed_ms (may be NULL) how long the
 * exit took. */
int hx_stop(hx_unit *u, int64_t *elapsed_ms);

/* SIGTERM and asserts the exit status is 0. */
void hx_stop_ok(hx_unit *u);

/* Closes the unit's clients and raw sockets (see hx_stop), sends SIGKILL
 * and reaps it. */
void hx_kill(hx_unit *u);

/* SIGSTOP, then waits (at most HX_STOP_TIMEOUT_MS) until every thread of
 * the unit is stopped.  kill(2) returns before that: the kernel stops the
 * threads one by one as each is scheduled, so on a busy machine a unit can
 * go on receiving, applying and acknowledging requests for a while after
 * the call.  A test that counts on the unit being frozen starts counting
 * only once this returns. */
void hx_freeze(hx_unit *u);

/* Makes unit u refuse every replication message, or lets it take them
 * again: the test-only switch of pu/server_internal.h, a file named after
 * the unit in refuse_dir, which the unit was started with as
 * TIXGRID_TEST_REPL_REFUSE_DIR. */
void hx_repl_cut(const char *refuse_dir, const hx_unit *u, bool cut);

/* Waits (bounded) for a process to exit; true and *status when it did. */
bool hx_wait_exit(pid_t pid, int timeout_ms, int *status);

/* Kills every unit still running, removes their segments and folders.
 * The criterion .fini of every integration test. */
void hx_fini_all(void);

/* Prints the last bytes of the unit's log on stderr. */
void hx_dump_log(const hx_unit *u);

/* Prints the last `bytes` of the file at path on stderr, between two
 * marker lines; nothing if it cannot be read.  Any thread. */
void hx_dump_file(const char *path, size_t bytes);

/* True when a line of the file at path contains needle (false if it cannot
 * be read). */
bool hx_file_contains(const char *path, const char *needle);

/* ---- Running a command and capturing its output ------------------------ */

typedef struct {
    int status; /* wait status */
    char out[8192];
    char err[8192];
    bool timed_out;
} hx_run_result;

/* Runs argv (argv[0] a path) to completion in at most timeout_ms; stdout and
 * stderr captured (truncated to the buffers). */
void hx_run(char *const argv[], int timeout_ms, hx_run_result *r);

/* Lines in text (a final line without '\n' counts). */
uint32_t hx_count_lines(const char *text);

/* ---- Helper processes ------------------------------------------------------ */

/* A client that must outlive its unit (load during SIGKILL or SIGTERM) runs
 * in a helper process, tests/integration/load_main.c (TIXGRID_IT_LOAD_BIN):
 * an nng socket redialling a dead peer can wedge nng 1.5.2's teardown for the
 * whole process (see hx_client_close), and the helper ends with _exit
 * without closing anything.  It reads nothing but the end of its stdin (the
 * signal to stop) and reports in lines on stdout. */
typedef struct {
    pid_t pid;
    int in_fd;  /* its stdin; -1 once closed */
    int out_fd; /* its stdout */
    size_t len; /* bytes in buf not yet returned */
    char buf[1 << 16];
} hx_helper;

/* The helper binary (TIXGRID_IT_LOAD_BIN); asserts that it is set. */
const char *hx_load_bin(void);
/* Starts argv (argv[0] a path); killed by hx_fini_all if still running. */
void hx_helper_start(hx_helper *h, char *const argv[]);
/* The next line of its stdout without the newline; false at the end of its
 * output or after timeout_ms. */
bool hx_helper_line(hx_helper *h, char *line, size_t size, int timeout_ms);
/* Closes its stdin: the helper stops and reports. */
void hx_helper_stop(hx_helper *h);
/* Waits for its exit (at most timeout_ms, then SIGKILL); the wait status. */
int hx_helper_wait(hx_helper *h, int timeout_ms);

/* ---- Requests ---------------------------------------------------------- */

/* A client routed to the unit for partition_id (asserts).  The harness
 * closes it when the unit is stopped (hx_stop) or at the end of the test,
 * unless the test closes it first with hx_client_close. */
tg_client *hx_client(const hx_unit *u, uint32_t partition_id, uint32_t inflight_max);

/* Closes c (made by hx_client or not), waiting at most
 * HX_CLIENT_CLOSE_TIMEOUT_MS.  nng 1.5.2's nng_close can deadlock when the
 * peer went away and the dialer is redialling (fixed upstream in nng 1.9.0),
 * so the harness closes the clients hx_client made while their unit still
 * runs (hx_stop, hx_fini_all), and a close that does not return in time is
 * abandoned with a line on stderr (the process exits later without closing
 * nng).  Close clients a test made itself before their unit stops.  Any
 * thread. */
void hx_client_close(tg_client *c);
#define HX_CLIENT_CLOSE_TIMEOUT_MS 3000

/* Waits (at most HX_START_TIMEOUT_MS) until c answers through its
 * connection to url: after a unit restarted, a client still redialling it
 * is not closed safely (see hx_client_close).  Any thread. */
bool hx_client_settle(tg_client *c, const char *url);

/* Room for every large reply (static, one per process: main thread only). */
const tg_wire_space *hx_space(void);

/* Blocking request through c; returns the outcome, reply in *rep. */
tg_err hx_call(tg_client *c, uint32_t partition_id, const tg_msg *req, tg_msg *rep);

/* Shorthands for the common requests (assert TG_OK unless they return the
 * error).  *Booking ids are returned; seats are copied into the request. */
tg_booking_id hx_booking_create(tg_client *c, uint32_t partition_id, uint64_t user_id);
tg_err hx_hold(tg_client *c, tg_booking_id b, uint64_t user_id, const uint32_t *seats,
               uint32_t n, tg_msg *rep);
/* The request of a one-seat hold, for a test that sends it its own way. */
tg_msg hx_hold_one(tg_booking_id b, uint64_t user_id, uint32_t seat);
tg_err hx_booking_get(tg_client *c, tg_booking_id b, uint64_t user_id, tg_msg *rep);
tg_err hx_seat_get(tg_client *c, uint32_t partition_id, uint32_t seat, tg_msg *rep);
/* availability into rep; rows point into rows_out (TG_ROWS_MAX entries). */
void hx_availability(tg_client *c, uint32_t partition_id, tg_msg *rep, tg_wire_counts *rows_out);
/* Every seat's word, from seats_list pages: words[0..seat_count). */
void hx_seat_words(tg_client *c, uint32_t partition_id, uint32_t seat_count, uint64_t *words);

/* Sum of a counts tuple. */
uint32_t hx_counts_sum(const tg_wire_counts *c);

/* ---- Raw nng ------------------------------------------------------------ */

/* A REQ socket dialled to url (asserts); no resend, receive timeout.  The
 * caller closes it with nng_close while the peer still runs. */
nng_socket hx_raw_open(const char *url, uint32_t recv_timeout_ms);
/* The same to the unit's REP socket; the harness closes it like the unit's
 * clients. */
nng_socket hx_unit_raw(hx_unit *u, uint32_t recv_timeout_ms);
/* Sends len bytes (0 allowed) and waits for the reply into buf (cap bytes);
 * returns the reply length, or -(nng error). */
int64_t hx_raw_call(nng_socket s, const void *bytes, size_t len, void *buf, size_t cap);

/* Milliseconds on the monotonic clock. */
int64_t hx_now_ms(void);
/* Sleeps ms milliseconds. */
void hx_sleep_ms(int ms);

#endif

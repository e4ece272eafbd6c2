/*
 * pg.h — a private PostgreSQL 15 for one integration test.
 *
 * In the manner of Redis's start_server: each test makes its own server in a
 * folder of its own (/tmp/tixgrid-pg-<test pid>-XXXXXX, owned by the
 * `postgres` system user because PostgreSQL refuses to run as root), with
 * `initdb --auth=trust -U postgres` and `pg_ctl start`, listening only on a
 * unix socket in that folder (listen_addresses = ''), and a database
 * `tixgrid`.  The test process (root) connects with the conninfo
 * "host=<folder> port=5432 dbname=tixgrid user=postgres".  No TCP port is
 * taken, so any number of tests can run side by side.
 *
 * fsync: on by default, as in production (the persister's benchmarks must
 * measure real commits).  Tests that only check schemas and data may set
 * pgt_options.fsync_off for speed.  initdb always runs with --no-sync: the
 * cluster it writes is thrown away with the test.
 *
 * Every wait is bounded (PGT_*_TIMEOUT_MS): a command that overruns is
 * killed and the test fails saying which.  pgt_fini_all (call it from the
 * criterion .fini of every test that starts a server) stops every server the
 * test started and removes its folder, also when an assertion failed.  A
 * test process killed outright (its timeout) cannot clean up: the next
 * pgt_start of any test stops servers whose test process is gone and removes
 * their folders.  Set TIXGRID_IT_KEEP=1 to keep folders (with postgres.log)
 * for a post-mortem.
 *
 * The server binaries come from /usr/lib/postgresql/15/bin, or from
 * TIXGRID_PG_BIN.  Helpers that assert must be called from the test's main
 * thread.
 */
#ifndef TIXGRID_TEST_INTEGRATION_PG_H
#define TIXGRID_TEST_INTEGRATION_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Bounds of every wait, in ms. */
#define PGT_INITDB_TIMEOUT_MS 60000
#define PGT_START_TIMEOUT_MS  30000
#define PGT_STOP_TIMEOUT_MS   30000
/* Servers one test may have started at once. */
#define PGT_SERVERS_MAX 4

typedef struct {
    /* fsync = off, full_page_writes = off: faster.  Commits are still
     * synchronous, so a killed server (pgt_stop immediate) loses nothing
     * committed; only a crash of the machine would. */
    bool fsync_off;
} pgt_options;

typedef struct {
    char dir[64];       /* the folder: socket, postgres.log, data/ */
    char data_dir[80];  /* <dir>/data */
    char log_path[96];  /* <dir>/postgres.log: the server's own log */
    char conninfo[160]; /* host=<dir> port=5432 dbname=tixgrid user=postgres */
    pgt_options options;
    bool running;
} pgt_server;

/* Makes the folder, runs initdb, starts the server, waits until it accepts
 * connections and creates the database tixgrid.  o may be NULL (defaults:
 * fsync on).  Asserts on failure, printing the end of the server's log.
 * The server lives in static storage (not the test's stack, which a failed
 * assertion unwinds before .fini runs) until pgt_fini_all. */
pgt_server *pgt_start(const pgt_options *o);

/* As pgt_start, but the cluster is a copy of template_data_dir (a data
 * folder of a cleanly stopped server, made by an earlier pgt_start; its
 * database tixgrid and everything in it come along) instead of a fresh
 * initdb: a few hundred milliseconds instead of seconds when many tests
 * need the same seeded database.  Asserts. */
pgt_server *pgt_start_copy(const char *template_data_dir, const pgt_options *o);

/* Stops the server in the middle of a test (PostgreSQL down): `pg_ctl stop`
 * in mode fast (clients disconnected, clean shutdown) or, with immediate,
 * mode immediate (as a crash: recovery runs at the next start).  Keeps the
 * data.  Asserts. */
void pgt_stop(pgt_server *s, bool immediate);

/* Starts a stopped server again on the same data and socket and waits until
 * it accepts connections.  Asserts. */
void pgt_resume(pgt_server *s);

/* Stops the server (immediate) and removes its folder.  Idempotent. */
void pgt_destroy(pgt_server *s);

/* pgt_destroy for every server this process started.  The criterion .fini. */
void pgt_fini_all(void);

/* A connection to the test database (asserts). */
PGconn *pgt_connect(const pgt_server *s);

/* Runs sql (one or more statements) and asserts it succeeded. */
void pgt_exec(PGconn *db, const char *sql);

/* Runs sql and asserts it failed; returns its SQLSTATE ("23514" for a check
 * violation) in a static buffer. */
const char *pgt_exec_fails(PGconn *db, const char *sql);

/* The first column of the first row of sql as an integer (asserts one row;
 * NULL reads as -1). */
int64_t pgt_query_i64(PGconn *db, const char *sql);

/* The first column of the first row as text, copied into a static buffer
 * (the next call overwrites it); "" for NULL. */
const char *pgt_query_text(PGconn *db, const char *sql);

/* ---- Running a command ---------------------------------------------------- */

typedef struct {
    int status;     /* wait status */
    bool timed_out; /* killed after timeout_ms */
    int64_t elapsed_ms;
    char out[16384]; /* stdout (truncated), unless it went to a file */
    char err[16384]; /* stderr (truncated) */
} pgt_run_result;

/* Runs argv (argv[0] a path) with extra environment entries env ("NAME=value",
 * NULL-terminated; may be NULL) added to the test's, in at most timeout_ms;
 * stdout goes to out_path when it is not NULL.  Never asserts on the
 * command's outcome. */
void pgt_run(char *const argv[], char *const env[], const char *out_path, int timeout_ms,
             pgt_run_result *r);

/* Runs $TIXGRID_PERSISTER_BIN (set by meson; asserts it is) with args
 * (NULL-terminated, at most 16) against s (NULL: TIXGRID_DB empty), at log
 * level info, in at most 60 s; stdout to out_path when not NULL. */
void pgt_persister(pgt_run_result *r, const pgt_server *s, const char *out_path,
                   const char *const *args);

/* The exit code of a finished run, or -1 when it did not exit normally. */
int pgt_exit_code(const pgt_run_result *r);

/* Lines in text (a final line without '\n' counts). */
uint32_t pgt_count_lines(const char *text);

int64_t pgt_now_ms(void);

#endif

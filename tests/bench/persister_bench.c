/*
 * persister_bench.c — how fast the write-behind drain empties a change log
 * into PostgreSQL, and how far it lags behind a steady load.
 *
 * Everything is started here and torn down here, on unix sockets only:
 *
 *   - a private PostgreSQL 15 (fsync on, the realistic default) in
 *     /tmp/tixgrid-bench-pg-XXXXXX, owned by the `postgres` user (initdb
 *     and pg_ctl run through runuser), listening on a unix socket in that
 *     folder (listen_addresses = ''), database `tixgrid`;
 *   - `tixgrid-persister migrate`, `seed-demo`, `layout-json 1 1`;
 *   - a tixgrid-pu serving that partition (persisted: its ring is only
 *     reused after the drain's log_ack) on ipc:// in
 *     /tmp/tixgrid-bench-pu-XXXXXX, registered and placed;
 *
 * then two measurements:
 *
 *   1. backlog: with no drain running, THREADS clients hold 16 adjacent
 *      seats and release them until the log head is ~BACKLOG records; then
 *      `tixgrid-persister run` starts and the time until
 *      partition_offsets.last_seq reaches that head gives changes/s (the
 *      time includes the drain's start and first connection);
 *   2. lag: with the drain running, single-seat holds at a fixed open-loop
 *      rate (default 10,000/s; each hold's reply sends the release of its
 *      seat), and every 100 ms the lag = unit's log_head (partition_info)
 *      - partition_offsets.last_seq, in records and in ms at the measured
 *      change rate; median and max.
 *
 * Cleanup (also on failure and on SIGINT/SIGTERM): the unit and the drain
 * are killed by pid (they also have PR_SET_PDEATHSIG), PostgreSQL is
 * stopped (pg_ctl immediate, then SIGQUIT/SIGKILL to the postmaster's pid),
 * both folders and /dev/shm/tixgrid-<unit name>-p* are removed.  Set
 * TIXGRID_BENCH_KEEP=1 to keep the folders (logs) for a post-mortem.
 *
 * No nng socket is ever closed (nng 1.5.2's nng_close can hang once a peer
 * went away, see tests/integration/harness.h): the program ends with _exit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tixgrid/client.h"
#include "tixgrid/err.h"
#include "tixgrid/wire.h"

#include <libpq-fe.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "bench_persister"
#define PARTITION 1u
#define EVENT "1"
#define USER UINT64_C(4243)
#define CALL_TIMEOUT_MS 5000u
#define CMD_TIMEOUT_MS 60000
#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 5000
#define DRAIN_TIMEOUT_MS 60000
#define BACKLOG_THREADS 4
#define LAG_BOOKINGS 512u
#define LAG_SAMPLES_MAX 1000u
#define TARGET_RATE 50000.0

#ifndef PERSISTER_BENCH_PU_BIN
#define PERSISTER_BENCH_PU_BIN "tixgrid-pu"
#endif
#ifndef PERSISTER_BENCH_PERSISTER_BIN
#define PERSISTER_BENCH_PERSISTER_BIN "tixgrid-persister"
#endif

static const char usage[] =
    "usage: bench_persister [--backlog N] [--rate N] [--seconds N]\n"
    "\n"
    "Starts a private PostgreSQL 15 (fsync on), a tixgrid-pu serving the demo\n"
    "concert (partition 1) and tixgrid-persister, all on unix sockets, then\n"
    "measures (1) changes persisted per second draining a backlog of ~N change\n"
    "records (default 300000) left while the drain was stopped, and (2) the\n"
    "drain's lag (log head - partition_offsets.last_seq, sampled every 100 ms)\n"
    "under an open-loop load of N single-seat holds per second (default 10000,\n"
    "each released again) for N seconds (default 10).  Binaries: TIXGRID_PU_BIN,\n"
    "TIXGRID_PERSISTER_BIN, or those built with this program; PostgreSQL from\n"
    "TIXGRID_PG_BIN or /usr/lib/postgresql/15/bin.\n";

/* ---- State that cleanup needs ---------------------------------------------- */

static char pg_dir[64];        /* /tmp/tixgrid-bench-pg-XXXXXX */
static char pg_data[96];       /* <pg_dir>/data */
static char pu_dir[64];        /* /tmp/tixgrid-bench-pu-XXXXXX */
static char unit_name[48];     /* bench-<pid> */
static volatile pid_t pu_pid;  /* the unit */
static volatile pid_t drain_pid; /* tixgrid-persister run */
static volatile pid_t postmaster; /* from postmaster.pid, once started */
static volatile sig_atomic_t cleaning;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(void)
{
    return now_ns() / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

static const char *pg_bin(void)
{
    return env_or("TIXGRID_PG_BIN", "/usr/lib/postgresql/15/bin");
}

static bool keep(void)
{
    const char *k = getenv("TIXGRID_BENCH_KEEP");
    return k != NULL && k[0] != '\0' && strcmp(k, "0") != 0;
}

static void close_from_3(void)
{
    for (int fd = 3; fd < 1024; fd++) {
        close(fd);
    }
}

/* Waits for pid at most timeout_ms; on overrun kills it (and its group). */
static bool wait_child(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return true;
        }
        if (r < 0 && errno != EINTR) {
            *status = -1;
            return false;
        }
        if (now_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return false;
        }
        sleep_ms(5);
    }
}

/* SIGTERM, then SIGKILL after STOP_TIMEOUT_MS; reaps. */
static void stop_child(pid_t pid)
{
    if (pid <= 0) {
        return;
    }
    int status;
    kill(pid, SIGTERM);
    if (!wait_child(pid, STOP_TIMEOUT_MS, &status)) {
        fprintf(stderr, "%s: pid %d ignored SIGTERM; killed\n", PROGRAM, (int)pid);
    }
}

/* Starts argv with stdout to out_path (or log_path) and stderr to log_path
 * (appended), extra environment entry env (may be NULL), as the postgres
 * user when as_postgres.  Dies with this process unless it daemonizes. */
static pid_t spawn(const char *const argv[], const char *env, const char *out_path,
                   const char *log_path, bool as_postgres, const char *cwd)
{
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int out_fd = out_path != NULL ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                                  : log_fd;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(127);
        }
        int null_fd = open("/dev/null", O_RDONLY);
        if (log_fd < 0 || out_fd < 0 || null_fd < 0 || dup2(null_fd, 0) < 0 ||
            dup2(out_fd, 1) < 0 || dup2(log_fd, 2) < 0 || (cwd != NULL && chdir(cwd) != 0)) {
            _exit(127);
        }
        close_from_3();
        if (env != NULL) {
            putenv((char *)env);
        }
        if (as_postgres) {
            const char *full[24] = {"runuser", "-u", "postgres", "--"};
            int n = 4;
            for (int i = 0; argv[i] != NULL && n < 23; i++) {
                full[n++] = argv[i];
            }
            full[n] = NULL;
            execv("/usr/sbin/runuser", (char *const *)full);
            execvp("runuser", (char *const *)full);
        } else {
            execv(argv[0], (char *const *)argv);
        }
        _exit(127);
    }
    if (log_fd >= 0) {
        close(log_fd);
    }
    if (out_path != NULL && out_fd >= 0) {
        close(out_fd);
    }
    return pid;
}

static void dump_tail(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    lseek(fd, size > 2000 ? size - 2000 : 0, SEEK_SET);
    char buf[2001];
    ssize_t n = read(fd, buf, 2000);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        fprintf(stderr, "---- end of %s ----\n%s\n---- end ----\n", path, buf);
    }
}

/* ---- Cleanup ---------------------------------------------------------------- */

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static pid_t read_postmaster_pid(void)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/postmaster.pid", pg_data);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld", &pid) != 1) {
            pid = 0;
        }
        fclose(f);
    }
    return (pid_t)pid;
}

static void cleanup(void)
{
    if (cleaning) {
        return;
    }
    cleaning = 1;
    stop_child(drain_pid);
    drain_pid = 0;
    stop_child(pu_pid);
    pu_pid = 0;
    if (pg_dir[0] != '\0') {
        pid_t pm = postmaster > 0 ? postmaster : read_postmaster_pid();
        if (pm > 0 && kill(pm, 0) == 0) {
            kill(pm, SIGQUIT); /* immediate shutdown */
            int64_t deadline = now_ms() + STOP_TIMEOUT_MS;
            while (kill(pm, 0) == 0 && now_ms() < deadline) {
                sleep_ms(10);
            }
            if (kill(pm, 0) == 0) {
                kill(pm, SIGKILL);
            }
        }
        if (!keep()) {
            nftw(pg_dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
        }
    }
    if (pu_dir[0] != '\0' && !keep()) {
        nftw(pu_dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (unit_name[0] != '\0') {
        char prefix[80];
        int len = snprintf(prefix, sizeof(prefix), "tixgrid-%s-p", unit_name);
        DIR *dir = opendir("/dev/shm");
        struct dirent *de;
        while (dir != NULL && (de = readdir(dir)) != NULL) {
            if (strncmp(de->d_name, prefix, (size_t)len) == 0) {
                char path[300];
                snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
                unlink(path);
            }
        }
        if (dir != NULL) {
            closedir(dir);
        }
    }
    if (keep()) {
        fprintf(stderr, "%s: kept %s and %s\n", PROGRAM, pg_dir, pu_dir);
    }
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", PROGRAM);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (pu_dir[0] != '\0') {
        char path[128];
        snprintf(path, sizeof(path), "%s/drain.log", pu_dir);
        dump_tail(path);
        snprintf(path, sizeof(path), "%s/pu.log", pu_dir);
        dump_tail(path);
    }
    if (pg_dir[0] != '\0') {
        char path[128];
        snprintf(path, sizeof(path), "%s/postgres.log", pg_dir);
        dump_tail(path);
    }
    cleanup();
    fflush(stdout);
    _exit(1);
}

static void on_signal(int sig)
{
    (void)sig;
    cleanup();
    _exit(130);
}

/* ---- PostgreSQL ------------------------------------------------------------------ */

static char conninfo[200];

static void pg_start(void)
{
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL) {
        die("there is no 'postgres' system user (install postgresql-15)");
    }
    snprintf(pg_dir, sizeof(pg_dir), "/tmp/tixgrid-bench-pg-XXXXXX");
    if (mkdtemp(pg_dir) == NULL) {
        pg_dir[0] = '\0';
        die("mkdtemp: %s", strerror(errno));
    }
    if (chown(pg_dir, pw->pw_uid, pw->pw_gid) != 0 || chmod(pg_dir, 0755) != 0) {
        die("chown %s: %s", pg_dir, strerror(errno));
    }
    snprintf(pg_data, sizeof(pg_data), "%s/data", pg_dir);
    char log[128], ctl_log[128], initdb[256], pg_ctl[256], opts[256];
    snprintf(log, sizeof(log), "%s/postgres.log", pg_dir);
    snprintf(ctl_log, sizeof(ctl_log), "%s/ctl.log", pg_dir);
    snprintf(initdb, sizeof(initdb), "%s/initdb", pg_bin());
    snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", pg_bin());
    int status = 0;
    const char *init_argv[] = {initdb, "-D", pg_data, "--auth=trust", "-U", "postgres",
                               "--no-sync", "-E", "UTF8", "--locale=C.UTF-8", NULL};
    pid_t pid = spawn(init_argv, NULL, NULL, ctl_log, true, pg_dir);
    if (!wait_child(pid, CMD_TIMEOUT_MS, &status) || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        dump_tail(ctl_log);
        die("initdb failed");
    }
    /* fsync stays on (the default): commits reach the disk. */
    snprintf(opts, sizeof(opts), "-k %s -p 5432 -c listen_addresses='' -c max_connections=40",
             pg_dir);
    const char *start_argv[] = {pg_ctl, "-D", pg_data, "-l", log, "-w", "-t", "30",
                                "-o", opts, "start", NULL};
    pid = spawn(start_argv, NULL, NULL, ctl_log, true, pg_dir);
    if (!wait_child(pid, START_TIMEOUT_MS + 5000, &status) || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        dump_tail(ctl_log);
        die("pg_ctl start failed");
    }
    postmaster = read_postmaster_pid();
    char admin[200];
    snprintf(admin, sizeof(admin), "host=%s port=5432 dbname=postgres user=postgres", pg_dir);
    PGconn *db = PQconnectdb(admin);
    if (PQstatus(db) != CONNECTION_OK) {
        die("cannot connect to PostgreSQL: %s", PQerrorMessage(db));
    }
    PGresult *res = PQexec(db, "CREATE DATABASE tixgrid");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        die("CREATE DATABASE: %s", PQresultErrorMessage(res));
    }
    PQclear(res);
    res = PQexec(db, "SHOW fsync");
    printf("PostgreSQL %s in %s, fsync = %s\n", PQparameterStatus(db, "server_version"), pg_dir,
           PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : "?");
    PQclear(res);
    PQfinish(db);
    snprintf(conninfo, sizeof(conninfo),
             "host=%s port=5432 dbname=tixgrid user=postgres connect_timeout=5", pg_dir);
}

static int64_t pg_last_seq(PGconn *db)
{
    PGresult *res = PQexec(db, "SELECT coalesce(max(last_seq), 0) FROM partition_offsets"
                               " WHERE partition_id = 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        die("reading partition_offsets: %s", PQresultErrorMessage(res));
    }
    int64_t v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

/* ---- The persister and the unit -------------------------------------------- */

static char db_env[240];

static const char *persister_bin(void)
{
    return env_or("TIXGRID_PERSISTER_BIN", PERSISTER_BENCH_PERSISTER_BIN);
}

/* Runs tixgrid-persister with args (NULL-terminated), stdout to out_path. */
static void persister(const char *const *args, const char *out_path)
{
    const char *argv[16] = {persister_bin()};
    int n = 1;
    for (int i = 0; args[i] != NULL && n < 15; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    char log[128];
    snprintf(log, sizeof(log), "%s/persister.log", pu_dir);
    int status = 0;
    pid_t pid = spawn(argv, db_env, out_path, log, false, NULL);
    if (!wait_child(pid, CMD_TIMEOUT_MS, &status) || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        dump_tail(log);
        die("tixgrid-persister %s failed", args[0]);
    }
}

static char rep_url[96], pub_url[96];

static void unit_start(void)
{
    snprintf(pu_dir, sizeof(pu_dir), "/tmp/tixgrid-bench-pu-XXXXXX");
    if (mkdtemp(pu_dir) == NULL) {
        pu_dir[0] = '\0';
        die("mkdtemp: %s", strerror(errno));
    }
    snprintf(unit_name, sizeof(unit_name), "bench-%d", (int)getpid());
    snprintf(rep_url, sizeof(rep_url), "ipc://%s/pu.rep", pu_dir);
    snprintf(pub_url, sizeof(pub_url), "ipc://%s/pu.pub", pu_dir);
    snprintf(db_env, sizeof(db_env), "TIXGRID_DB=%s", conninfo);
    char layout[128], log[128];
    snprintf(layout, sizeof(layout), "%s/layout.json", pu_dir);
    snprintf(log, sizeof(log), "%s/pu.log", pu_dir);
    persister((const char *const[]){"migrate", NULL}, NULL);
    persister((const char *const[]){"seed-demo", NULL}, NULL);
    persister((const char *const[]){"layout-json", EVENT, "1", NULL}, layout);
    const char *argv[] = {env_or("TIXGRID_PU_BIN", PERSISTER_BENCH_PU_BIN),
                          "--name", unit_name, "--listen", rep_url, "--pub", pub_url,
                          "--partition", layout, NULL};
    pu_pid = spawn(argv, NULL, NULL, log, false, NULL);
    const char *sock = rep_url + strlen("ipc://");
    for (int64_t deadline = now_ms() + START_TIMEOUT_MS;;) {
        struct stat st;
        if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode)) {
            break;
        }
        if (waitpid(pu_pid, NULL, WNOHANG) == pu_pid) {
            pu_pid = 0;
            die("tixgrid-pu exited at start");
        }
        if (now_ms() > deadline) {
            die("tixgrid-pu did not listen in time");
        }
        sleep_ms(5);
    }
    persister((const char *const[]){"pu-register", unit_name, rep_url, pub_url, NULL}, NULL);
    persister((const char *const[]){"place", "1", unit_name, NULL}, NULL);
}

static void drain_start(void)
{
    char log[128];
    snprintf(log, sizeof(log), "%s/drain.log", pu_dir);
    const char *argv[] = {persister_bin(), "run", "--routes-refresh-ms", "200", NULL};
    drain_pid = spawn(argv, db_env, NULL, log, false, NULL);
}

/* ---- Requests ---------------------------------------------------------------------- */

static tg_client *client_open(uint32_t inflight)
{
    tg_client *c = NULL;
    tg_client_config cfg = {.inflight_max = inflight};
    if (tg_client_open(&cfg, &c) != TG_OK || tg_client_route(c, PARTITION, rep_url) != TG_OK) {
        die("cannot open a client for %s", rep_url);
    }
    return c;
}

typedef struct {
    uint64_t log_head;
    uint32_t seat_count;
} info;

static info partition_info(tg_client *c)
{
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO};
    req.partition_info.partition_id = PARTITION;
    static tg_msg rep;
    tg_err err = tg_client_call(c, PARTITION, &req, CALL_TIMEOUT_MS, NULL, &rep);
    if (err != TG_OK) {
        die("partition_info: %s", tg_errname(err));
    }
    return (info){.log_head = rep.partition_info_ok.log_head,
                  .seat_count = rep.partition_info_ok.seat_count};
}

static tg_err booking_create(tg_client *c, tg_msg *rep, tg_booking_id *out)
{
    tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = PARTITION;
    req.booking_create.user_id = USER;
    tg_err err = tg_client_call(c, PARTITION, &req, CALL_TIMEOUT_MS, NULL, rep);
    if (err == TG_OK) {
        *out = rep->booking_create_ok.booking_id;
    }
    return err;
}

/* ---- 1. The backlog ---------------------------------------------------------------- */

typedef struct {
    pthread_t thread;
    uint32_t first_seat, seat_span; /* this thread's seats */
    uint64_t cycles;
    tg_err error;
} backlog_worker;

static bool backlog_stop; /* atomic */

static void *backlog_main(void *arg)
{
    backlog_worker *w = arg;
    tg_client *c = client_open(4);
    tg_msg *rep = malloc(sizeof(*rep));
    tg_booking_id booking = 0;
    if (rep == NULL || (w->error = booking_create(c, rep, &booking)) != TG_OK) {
        return NULL;
    }
    uint32_t block = 0, blocks = w->seat_span / TG_BOOKING_SEATS_MAX;
    while (!__atomic_load_n(&backlog_stop, __ATOMIC_ACQUIRE)) {
        tg_msg req = {.type = TG_WIRE_SEATS_HOLD};
        req.seats_hold.booking_id = booking;
        req.seats_hold.user_id = USER;
        req.seats_hold.seats.count = TG_BOOKING_SEATS_MAX;
        for (uint32_t i = 0; i < TG_BOOKING_SEATS_MAX; i++) {
            req.seats_hold.seats.ids[i] = w->first_seat + block * TG_BOOKING_SEATS_MAX + i;
        }
        tg_err err = tg_client_call(c, PARTITION, &req, CALL_TIMEOUT_MS, NULL, rep);
        if (err != TG_OK) {
            w->error = err;
            return NULL;
        }
        tg_msg rel = {.type = TG_WIRE_SEATS_RELEASE};
        rel.seats_release.booking_id = booking;
        rel.seats_release.user_id = USER;
        rel.seats_release.seats = req.seats_hold.seats;
        err = tg_client_call(c, PARTITION, &rel, CALL_TIMEOUT_MS, NULL, rep);
        if (err != TG_OK) {
            w->error = err;
            return NULL;
        }
        w->cycles++;
        block = (block + 1) % blocks;
    }
    return NULL; /* c stays open: see the top of this file */
}

typedef struct {
    uint64_t records;
    double fill_s, drain_s, rate;
} backlog_result;

static backlog_result run_backlog(tg_client *c, PGconn *db, uint64_t target, uint32_t seat_count)
{
    static backlog_worker workers[BACKLOG_THREADS];
    uint64_t head0 = partition_info(c).log_head;
    uint32_t span = seat_count / BACKLOG_THREADS;
    int64_t t0 = now_ns();
    for (int i = 0; i < BACKLOG_THREADS; i++) {
        workers[i] = (backlog_worker){.first_seat = (uint32_t)i * span, .seat_span = span};
        pthread_create(&workers[i].thread, NULL, backlog_main, &workers[i]);
    }
    int64_t deadline = now_ms() + 60000;
    while (partition_info(c).log_head - head0 < target) {
        if (now_ms() > deadline) {
            __atomic_store_n(&backlog_stop, true, __ATOMIC_RELEASE);
            die("the backlog did not reach %llu records in 60 s", (unsigned long long)target);
        }
        sleep_ms(10);
    }
    __atomic_store_n(&backlog_stop, true, __ATOMIC_RELEASE);
    for (int i = 0; i < BACKLOG_THREADS; i++) {
        pthread_join(workers[i].thread, NULL);
        if (workers[i].error != TG_OK) {
            die("backlog client %d: %s", i, tg_errname(workers[i].error));
        }
    }
    double fill_s = (double)(now_ns() - t0) / 1e9;
    uint64_t head = partition_info(c).log_head;
    int64_t persisted0 = pg_last_seq(db);
    printf("backlog: %llu change records in %.1f s (log head %llu, PostgreSQL holds %lld)\n",
           (unsigned long long)(head - head0), fill_s, (unsigned long long)head,
           (long long)persisted0);
    fflush(stdout);
    int64_t d0 = now_ns();
    drain_start();
    deadline = now_ms() + DRAIN_TIMEOUT_MS;
    while (pg_last_seq(db) < (int64_t)head) {
        if (now_ms() > deadline) {
            die("the drain did not persist the backlog in %d s", DRAIN_TIMEOUT_MS / 1000);
        }
        if (waitpid(drain_pid, NULL, WNOHANG) == drain_pid) {
            drain_pid = 0;
            die("tixgrid-persister run exited");
        }
        sleep_ms(5);
    }
    double drain_s = (double)(now_ns() - d0) / 1e9;
    uint64_t records = head - (uint64_t)persisted0;
    return (backlog_result){.records = records, .fill_s = fill_s, .drain_s = drain_s,
                            .rate = (double)records / drain_s};
}

/* ---- 2. The lag under a steady load ---------------------------------------------- */

typedef struct lag_load lag_load;

typedef struct {
    lag_load *owner;
    tg_msg req;
} lag_op;

struct lag_load {
    tg_client *c;
    tg_booking_id bookings[LAG_BOOKINGS];
    uint32_t seat_count;
    /* atomic counters */
    uint64_t holds_ok, releases_ok, failed, refused;
    uint32_t first_error, refused_error;
    uint32_t in_flight;
};

static void lag_fail(lag_load *l, tg_err err)
{
    if (__atomic_fetch_add(&l->failed, 1, __ATOMIC_RELAXED) == 0) {
        l->first_error = (uint32_t)err;
    }
}

static void lag_cb(void *arg, tg_err err, const tg_msg *reply)
{
    lag_op *op = arg;
    lag_load *l = op->owner;
    (void)reply;
    if (err != TG_OK) {
        lag_fail(l, err);
    } else if (op->req.type == TG_WIRE_SEATS_HOLD) {
        __atomic_fetch_add(&l->holds_ok, 1, __ATOMIC_RELAXED);
        /* release the seat again: seats never run out */
        tg_msg h = op->req;
        op->req = (tg_msg){.type = TG_WIRE_SEATS_RELEASE};
        op->req.seats_release.booking_id = h.seats_hold.booking_id;
        op->req.seats_release.user_id = USER;
        op->req.seats_release.seats = h.seats_hold.seats;
        if (tg_client_send(l->c, PARTITION, &op->req, CALL_TIMEOUT_MS, NULL, lag_cb, op) ==
            TG_OK) {
            return;
        }
        __atomic_fetch_add(&l->refused, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_add(&l->releases_ok, 1, __ATOMIC_RELAXED);
    }
    free(op);
    __atomic_fetch_sub(&l->in_flight, 1, __ATOMIC_ACQ_REL);
}

typedef struct {
    pthread_t thread;
    lag_load *load;
    double rate;
    uint32_t seconds;
    uint64_t sent;
    double elapsed_s;
} pacer;

/* Sends holds on a fixed schedule (open loop): every millisecond, all holds
 * due by then, whatever the replies. */
static void *pacer_main(void *arg)
{
    pacer *p = arg;
    lag_load *l = p->load;
    int64_t t0 = now_ns(), end = t0 + (int64_t)p->seconds * 1000000000;
    uint64_t i = 0;
    for (;;) {
        int64_t t = now_ns();
        if (t >= end) {
            break;
        }
        uint64_t due = (uint64_t)((double)(t - t0) * p->rate / 1e9);
        for (; i < due; i++) {
            lag_op *op = malloc(sizeof(*op));
            if (op == NULL) {
                continue;
            }
            op->owner = l;
            op->req = (tg_msg){.type = TG_WIRE_SEATS_HOLD};
            op->req.seats_hold.booking_id = l->bookings[i % LAG_BOOKINGS];
            op->req.seats_hold.user_id = USER;
            op->req.seats_hold.seats =
                (tg_wire_seat_ids){.count = 1, .ids = {(uint32_t)(i % l->seat_count)}};
            __atomic_fetch_add(&l->in_flight, 1, __ATOMIC_ACQ_REL);
            tg_err err = tg_client_send(l->c, PARTITION, &op->req, CALL_TIMEOUT_MS, NULL, lag_cb,
                                        op);
            if (err != TG_OK) {
                if (__atomic_fetch_add(&l->refused, 1, __ATOMIC_RELAXED) == 0) {
                    l->refused_error = (uint32_t)err;
                }
                __atomic_fetch_sub(&l->in_flight, 1, __ATOMIC_ACQ_REL);
                free(op);
            }
        }
        sleep_ms(1);
    }
    p->sent = i;
    p->elapsed_s = (double)(now_ns() - t0) / 1e9;
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double hold_rate, change_rate;
    int64_t median, max;
    uint32_t samples;
    uint64_t failed, refused;
    uint32_t first_error, refused_error;
} lag_result;

static lag_result run_lag(tg_client *c, PGconn *db, double rate, uint32_t seconds,
                          uint32_t seat_count)
{
    static lag_load l;
    l = (lag_load){.seat_count = seat_count};
    l.c = client_open(4096);
    tg_msg *rep = malloc(sizeof(*rep));
    for (uint32_t i = 0; rep != NULL && i < LAG_BOOKINGS; i++) {
        tg_err err = booking_create(c, rep, &l.bookings[i]);
        if (err != TG_OK) {
            die("booking_create: %s", tg_errname(err));
        }
    }
    /* the drain catches up with the bookings first */
    uint64_t head = partition_info(c).log_head;
    for (int64_t deadline = now_ms() + 10000; pg_last_seq(db) < (int64_t)head;) {
        if (now_ms() > deadline) {
            die("the drain did not catch up before the lag run");
        }
        sleep_ms(5);
    }
    static int64_t lag[LAG_SAMPLES_MAX];
    uint32_t n = 0;
    pacer p = {.load = &l, .rate = rate, .seconds = seconds};
    uint64_t head0 = partition_info(c).log_head;
    int64_t t0 = now_ns();
    pthread_create(&p.thread, NULL, pacer_main, &p);
    int64_t next = t0;
    while (now_ns() < t0 + (int64_t)seconds * 1000000000 && n < LAG_SAMPLES_MAX) {
        next += 100000000;
        int64_t wait = (next - now_ns()) / 1000000;
        if (wait > 0) {
            sleep_ms((int)wait);
        }
        uint64_t h = partition_info(c).log_head;
        int64_t persisted = pg_last_seq(db);
        lag[n++] = (int64_t)h - persisted;
    }
    pthread_join(p.thread, NULL);
    uint64_t head1 = partition_info(c).log_head;
    double elapsed = (double)(now_ns() - t0) / 1e9;
    for (int i = 0; i < 2000 && __atomic_load_n(&l.in_flight, __ATOMIC_ACQUIRE) > 0; i++) {
        sleep_ms(5);
    }
    qsort(lag, n, sizeof(lag[0]), cmp_i64);
    return (lag_result){.hold_rate = (double)__atomic_load_n(&l.holds_ok, __ATOMIC_RELAXED) /
                                     p.elapsed_s,
                        .change_rate = (double)(head1 - head0) / elapsed,
                        .median = n > 0 ? lag[n / 2] : 0,
                        .max = n > 0 ? lag[n - 1] : 0,
                        .samples = n,
                        .failed = l.failed,
                        .refused = l.refused,
                        .first_error = l.first_error,
                        .refused_error = l.refused_error};
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    uint64_t backlog = 300000;
    double rate = 10000;
    uint32_t seconds = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backlog") == 0 && i + 1 < argc) {
            backlog = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
            rate = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else {
            fputs(usage, strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 64;
        }
    }
    if (backlog < 1000 || backlog > 800000 || rate < 1 || rate > 100000 || seconds < 1 ||
        seconds > 60) {
        fprintf(stderr, "%s: --backlog 1000..800000, --rate 1..100000, --seconds 1..60\n",
                PROGRAM);
        return 64;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int64_t start = now_ms();

    pg_start();
    unit_start();
    PGconn *db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        die("cannot connect to PostgreSQL: %s", PQerrorMessage(db));
    }
    tg_client *c = client_open(8);
    info in = partition_info(c);
    printf("unit %s: partition 1, %u seats; drain stopped\n", unit_name, in.seat_count);
    fflush(stdout);

    backlog_result b = run_backlog(c, db, backlog, in.seat_count);
    printf("drained in %.2f s\n", b.drain_s);
    fflush(stdout);
    lag_result r = run_lag(c, db, rate, seconds, in.seat_count);
    double ms_per_record = r.change_rate > 0 ? 1000.0 / r.change_rate : 0;

    printf("\n| measurement | value |\n|---|---|\n");
    printf("| backlog drained (fsync on) | %llu changes in %.2f s |\n",
           (unsigned long long)b.records, b.drain_s);
    printf("| **changes persisted/s** | **%.0f** (target >= %.0f: %s) |\n", b.rate, TARGET_RATE,
           b.rate >= TARGET_RATE ? "met" : "NOT met");
    printf("| steady load: holds/s (asked %.0f) | %.0f, %.0f changes/s |\n", rate, r.hold_rate,
           r.change_rate);
    printf("| lag median (records / ms) | %lld / %.1f ms |\n", (long long)r.median,
           (double)r.median * ms_per_record);
    printf("| lag max (records / ms) | %lld / %.1f ms |\n", (long long)r.max,
           (double)r.max * ms_per_record);
    printf("| lag samples (every 100 ms) | %u |\n", r.samples);
    if (r.failed > 0 || r.refused > 0) {
        printf("| failed requests | %llu (first: %s), %llu not sent (%s) |\n",
               (unsigned long long)r.failed, tg_errname((tg_err)r.first_error),
               (unsigned long long)r.refused, tg_errname((tg_err)r.refused_error));
    }
    printf("(whole bench %.1f s)\n", (double)(now_ms() - start) / 1000.0);
    PQfinish(db);
    fflush(stdout);
    cleanup();
    fflush(stdout);
    _exit(0); /* never close nng: see the top of this file */
}

/*
 * pg.c — a private PostgreSQL for each integration test (see pg.h).
 *
 * initdb and pg_ctl run as the `postgres` user through runuser(1).  The
 * postmaster that pg_ctl leaves behind is a daemon, not our child: it is
 * found again through data/postmaster.pid, and it must not inherit any
 * descriptor of the test process (criterion talks to its runner over
 * pipes, and a pipe held open by a stray server would keep the runner
 * waiting), so every child closes all descriptors above stderr before exec.
 * Command output goes to files in the server's folder, never to pipes we
 * would wait on.
 *
 * Children are made with fork + exec and only async-signal-safe calls in
 * between.
 */
#include "pg.h"
#include "harness.h" /* hx_watchdog_arm, hx_dump_file */

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static pgt_server servers[PGT_SERVERS_MAX];
static uint32_t server_count;

int64_t pgt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const char *pg_bin(void)
{
    const char *bin = getenv("TIXGRID_PG_BIN");
    return bin != NULL && bin[0] != '\0' ? bin : "/usr/lib/postgresql/15/bin";
}

static bool keep_folders(void)
{
    const char *keep = getenv("TIXGRID_IT_KEEP");
    return keep != NULL && keep[0] != '\0' && strcmp(keep, "0") != 0;
}

/* In a child: closes every descriptor above stderr (async-signal-safe). */
static void close_from_3(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) {
        return;
    }
#endif
    for (int fd = 3; fd < 65536; fd++) {
        close(fd);
    }
}

/* Waits for child pid at most timeout_ms, then kills it (and its process
 * group); returns true when it exited by itself. */
static bool wait_child(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = pgt_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return true;
        }
        if (r < 0 && errno != EINTR) {
            *status = -1;
            return false;
        }
        if (pgt_now_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return false;
        }
        sleep_ms(5);
    }
}

/* Runs argv as the postgres user in dir, output appended to log_path;
 * returns the exit code, or -1 when it failed to finish in time. */
static int run_as_postgres(const char *dir, const char *log_path, const char *const argv[],
                           int timeout_ms)
{
    const char *full[16] = {"runuser", "-u", "postgres", "--"};
    int n = 4;
    for (int i = 0; argv[i] != NULL && n < 15; i++) {
        full[n++] = argv[i];
    }
    full[n] = NULL;
    hx_watchdog_arm();
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    cr_assert(log_fd >= 0, "cannot open %s: %s", log_path, strerror(errno));
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int null_fd = open("/dev/null", O_RDONLY);
        if (chdir(dir) != 0 || null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 ||
            dup2(log_fd, 2) < 0) {
            _exit(127);
        }
        close_from_3();
        execv("/usr/sbin/runuser", (char *const *)full);
        execvp(full[0], (char *const *)full); /* elsewhere on PATH */
        _exit(127);
    }
    close(log_fd);
    int status = 0;
    if (!wait_child(pid, timeout_ms, &status)) {
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}


static void server_dump(const pgt_server *s)
{
    char ctl[128];
    snprintf(ctl, sizeof(ctl), "%s/ctl.log", s->dir);
    hx_dump_file(ctl, 3000);
    hx_dump_file(s->log_path, 3000);
}

/* ---- Finding and removing what dead tests left ---------------------------- */

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    nftw(dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* The postmaster's pid from data/postmaster.pid, if that process is alive
 * and is a postgres; 0 otherwise. */
static pid_t postmaster_pid(const char *data_dir)
{
    char path[PATH_MAX], comm[64] = "";
    snprintf(path, sizeof(path), "%s/postmaster.pid", data_dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        pid = 0;
    }
    fclose(f);
    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    f = pid > 0 ? fopen(path, "r") : NULL;
    if (f == NULL) {
        return 0;
    }
    bool is_postgres = fgets(comm, sizeof(comm), f) != NULL && strncmp(comm, "postgres", 8) == 0;
    fclose(f);
    return is_postgres ? (pid_t)pid : 0;
}

/* Stops a postmaster that is not our child: SIGQUIT (immediate shutdown),
 * then SIGKILL after timeout_ms. */
static void postmaster_kill(pid_t pid, int timeout_ms)
{
    kill(pid, SIGQUIT);
    int64_t deadline = pgt_now_ms() + timeout_ms;
    while (kill(pid, 0) == 0 && pgt_now_ms() < deadline) {
        sleep_ms(10);
    }
    if (kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
    }
}

/* Removes /tmp/tixgrid-pg-<pid>-* of test processes that are gone, stopping
 * their servers first. */
static void sweep_stale(void)
{
    DIR *dir = opendir("/tmp");
    if (dir == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strncmp(de->d_name, "tixgrid-pg-", 11) != 0) {
            continue;
        }
        long owner = strtol(de->d_name + 11, NULL, 10);
        if (owner <= 0 || kill((pid_t)owner, 0) == 0 || errno != ESRCH) {
            continue;
        }
        char path[PATH_MAX], data[PATH_MAX + 8];
        snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
        snprintf(data, sizeof(data), "%s/data", path);
        pid_t pm = postmaster_pid(data);
        if (pm > 0) {
            postmaster_kill(pm, 5000);
        }
        remove_tree(path);
    }
    closedir(dir);
}

/* ---- Starting and stopping ------------------------------------------------ */

static void folder_make(pgt_server *s)
{
    struct passwd *pw = getpwnam("postgres");
    cr_assert(pw != NULL, "there is no 'postgres' system user (install postgresql-15)");
    char dir[sizeof(s->dir)];
    snprintf(dir, sizeof(dir), "/tmp/tixgrid-pg-%d-XXXXXX", (int)getpid());
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    memcpy(s->dir, dir, sizeof(dir));
    /* Owned by postgres (initdb and the server write here); readable by all,
     * so that a client that is not root reaches the socket too. */
    cr_assert(chown(dir, pw->pw_uid, pw->pw_gid) == 0, "chown %s: %s", dir, strerror(errno));
    cr_assert(chmod(dir, 0755) == 0);
    snprintf(s->data_dir, sizeof(s->data_dir), "%s/data", dir);
    snprintf(s->log_path, sizeof(s->log_path), "%s/postgres.log", dir);
    snprintf(s->conninfo, sizeof(s->conninfo),
             "host=%s port=5432 dbname=tixgrid user=postgres connect_timeout=5", dir);
}

static bool wait_ready(const pgt_server *s, int timeout_ms)
{
    char conninfo[160];
    snprintf(conninfo, sizeof(conninfo), "host=%s port=5432 dbname=postgres user=postgres", s->dir);
    int64_t deadline = pgt_now_ms() + timeout_ms;
    while (pgt_now_ms() < deadline) {
        if (PQping(conninfo) == PQPING_OK) {
            return true;
        }
        sleep_ms(20);
    }
    return false;
}

static void server_launch(pgt_server *s)
{
    char bin[PATH_MAX], opts[512], ctl_log[128], timeout[16];
    snprintf(bin, sizeof(bin), "%s/pg_ctl", pg_bin());
    snprintf(opts, sizeof(opts), "-k %s -p 5432 -c listen_addresses='' -c max_connections=40%s",
             s->dir, s->options.fsync_off ? " -c fsync=off -c full_page_writes=off" : "");
    snprintf(ctl_log, sizeof(ctl_log), "%s/ctl.log", s->dir);
    snprintf(timeout, sizeof(timeout), "%d", PGT_START_TIMEOUT_MS / 1000);
    const char *argv[] = {bin,  "-D",    s->data_dir, "-l", s->log_path, "-w",
                          "-t", timeout, "-o",        opts, "start",     NULL};
    int code = run_as_postgres(s->dir, ctl_log, argv, PGT_START_TIMEOUT_MS + 5000);
    if (code != 0 || !wait_ready(s, PGT_START_TIMEOUT_MS)) {
        server_dump(s);
        cr_assert_fail("PostgreSQL in %s did not start (pg_ctl exit %d)", s->dir, code);
    }
    s->running = true;
}

pgt_server *pgt_start(const pgt_options *o)
{
    if (server_count == 0) {
        sweep_stale();
    }
    cr_assert(server_count < PGT_SERVERS_MAX, "too many PostgreSQL servers in one test");
    pgt_server *s = &servers[server_count++];
    memset(s, 0, sizeof(*s));
    if (o != NULL) {
        s->options = *o;
    }
    folder_make(s);
    char bin[PATH_MAX], ctl_log[128];
    snprintf(bin, sizeof(bin), "%s/initdb", pg_bin());
    snprintf(ctl_log, sizeof(ctl_log), "%s/ctl.log", s->dir);
    const char *argv[] = {bin,         "-D", s->data_dir, "--auth=trust",     "-U", "postgres",
                          "--no-sync", "-E", "UTF8",      "--locale=C.UTF-8", NULL};
    int code = run_as_postgres(s->dir, ctl_log, argv, PGT_INITDB_TIMEOUT_MS);
    if (code != 0) {
        server_dump(s);
        cr_assert_fail("initdb in %s failed (exit %d)", s->data_dir, code);
    }
    server_launch(s);
    char admin[160];
    snprintf(admin, sizeof(admin), "host=%s port=5432 dbname=postgres user=postgres", s->dir);
    PGconn *db = PQconnectdb(admin);
    cr_assert(PQstatus(db) == CONNECTION_OK, "connect %s: %s", admin, PQerrorMessage(db));
    pgt_exec(db, "CREATE DATABASE tixgrid");
    PQfinish(db);
    return s;
}

pgt_server *pgt_start_copy(const char *template_data_dir, const pgt_options *o)
{
    if (server_count == 0) {
        sweep_stale();
    }
    cr_assert(server_count < PGT_SERVERS_MAX, "too many PostgreSQL servers in one test");
    pgt_server *s = &servers[server_count++];
    memset(s, 0, sizeof(*s));
    if (o != NULL) {
        s->options = *o;
    }
    folder_make(s);
    /* cp -a as root keeps the files' owner (postgres) and modes (0700). */
    char src[PATH_MAX];
    snprintf(src, sizeof(src), "%s", template_data_dir);
    char *const argv[] = {"/bin/cp", "-a", src, s->data_dir, NULL};
    pgt_run_result r;
    pgt_run(argv, NULL, NULL, PGT_INITDB_TIMEOUT_MS, &r);
    cr_assert_eq(pgt_exit_code(&r), 0, "cp -a %s %s failed: %s", src, s->data_dir, r.err);
    server_launch(s);
    return s;
}

static int ctl_stop(const pgt_server *s, const char *mode)
{
    char bin[PATH_MAX], ctl_log[128], timeout[16];
    snprintf(bin, sizeof(bin), "%s/pg_ctl", pg_bin());
    snprintf(ctl_log, sizeof(ctl_log), "%s/ctl.log", s->dir);
    snprintf(timeout, sizeof(timeout), "%d", PGT_STOP_TIMEOUT_MS / 1000);
    const char *argv[] = {bin, "-D", s->data_dir, "-m", mode, "-w", "-t", timeout, "stop", NULL};
    return run_as_postgres(s->dir, ctl_log, argv, PGT_STOP_TIMEOUT_MS + 5000);
}

void pgt_stop(pgt_server *s, bool immediate)
{
    cr_assert(s->running, "PostgreSQL in %s is not running", s->dir);
    int code = ctl_stop(s, immediate ? "immediate" : "fast");
    if (code != 0) {
        server_dump(s);
        cr_assert_fail("pg_ctl stop in %s failed (exit %d)", s->dir, code);
    }
    s->running = false;
}

void pgt_resume(pgt_server *s)
{
    cr_assert(!s->running, "PostgreSQL in %s is already running", s->dir);
    server_launch(s);
}

void pgt_destroy(pgt_server *s)
{
    if (s->dir[0] == '\0') {
        return;
    }
    if (s->running && ctl_stop(s, "immediate") != 0) {
        pid_t pm = postmaster_pid(s->data_dir);
        if (pm > 0) {
            postmaster_kill(pm, 5000);
        }
    }
    s->running = false;
    if (keep_folders()) {
        fprintf(stderr, "pg: kept %s\n", s->dir);
    } else {
        remove_tree(s->dir);
    }
    s->dir[0] = '\0';
}

void pgt_fini_all(void)
{
    for (uint32_t i = 0; i < server_count; i++) {
        pgt_destroy(&servers[i]);
    }
    server_count = 0;
}

/* ---- SQL helpers -------------------------------------------------------------- */

static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

PGconn *pgt_connect(const pgt_server *s)
{
    PGconn *db = PQconnectdb(s->conninfo);
    cr_assert(PQstatus(db) == CONNECTION_OK, "connect %s: %s", s->conninfo, PQerrorMessage(db));
    PQsetNoticeProcessor(db, notice_ignore, NULL); /* NOTICEs would clutter the TAP output */
    return db;
}

void pgt_exec(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(res);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(res));
    PQclear(res);
}

const char *pgt_exec_fails(PGconn *db, const char *sql)
{
    static char state[8];
    PGresult *res = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(res);
    cr_assert(st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK, "expected an error from: %s", sql);
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(state, sizeof(state), "%s", s != NULL ? s : "");
    PQclear(res);
    return state;
}

static PGresult *one_row(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
    cr_assert(PQntuples(res) >= 1 && PQnfields(res) >= 1, "%s: no rows", sql);
    return res;
}

int64_t pgt_query_i64(PGconn *db, const char *sql)
{
    PGresult *res = one_row(db, sql);
    int64_t v = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

const char *pgt_query_text(PGconn *db, const char *sql)
{
    static char text[4096];
    PGresult *res = one_row(db, sql);
    snprintf(text, sizeof(text), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return text;
}

/* ---- Running a command ---------------------------------------------------------- */

static char **env_with(char *const extra[])
{
    size_t base = 0, more = 0;
    while (environ[base] != NULL) {
        base++;
    }
    while (extra != NULL && extra[more] != NULL) {
        more++;
    }
    char **env = calloc(base + more + 1, sizeof(*env));
    cr_assert(env != NULL);
    if (more > 0) { /* extra may be NULL: no memcpy from NULL, even of 0 bytes */
        memcpy(env, extra, more * sizeof(*env));
    }
    memcpy(env + more, environ, base * sizeof(*env)); /* the first of a name wins */
    return env;
}

static void drain(int fd, char *buf, size_t cap, size_t *len, bool *open_flag)
{
    char scratch[4096];
    ssize_t n = read(fd, scratch, sizeof(scratch));
    if (n <= 0) {
        *open_flag = n < 0 && errno == EINTR;
        return;
    }
    size_t take = (size_t)n < cap - 1 - *len ? (size_t)n : cap - 1 - *len;
    memcpy(buf + *len, scratch, take);
    *len += take;
    buf[*len] = '\0';
}

static pid_t spawn(char *const argv[], char **env, int out_fd, int err_fd)
{
    hx_watchdog_arm();
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(127);
        }
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
            _exit(127);
        }
        close_from_3();
        execve(argv[0], argv, env);
        _exit(127);
    }
    return pid;
}

void pgt_run(char *const argv[], char *const env[], const char *out_path, int timeout_ms,
             pgt_run_result *r)
{
    memset(r, 0, sizeof(*r));
    int out[2] = {-1, -1}, err[2];
    cr_assert(pipe2(err, O_CLOEXEC) == 0);
    if (out_path != NULL) {
        out[1] = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        cr_assert(out[1] >= 0, "cannot write %s: %s", out_path, strerror(errno));
    } else {
        cr_assert(pipe2(out, O_CLOEXEC) == 0);
    }
    char **envp = env_with(env);
    int64_t t0 = pgt_now_ms();
    pid_t pid = spawn(argv, envp, out[1], err[1]);
    free(envp);
    close(out[1]);
    close(err[1]);
    size_t out_len = 0, err_len = 0;
    bool out_open = out[0] >= 0, err_open = true;
    int64_t deadline = t0 + timeout_ms;
    while ((out_open || err_open) && pgt_now_ms() < deadline) {
        struct pollfd fds[2] = {{.fd = out_open ? out[0] : -1, .events = POLLIN},
                                {.fd = err_open ? err[0] : -1, .events = POLLIN}};
        if (poll(fds, 2, 50) <= 0) {
            continue;
        }
        if (fds[0].revents != 0) {
            drain(out[0], r->out, sizeof(r->out), &out_len, &out_open);
        }
        if (fds[1].revents != 0) {
            drain(err[0], r->err, sizeof(r->err), &err_len, &err_open);
        }
    }
    int remaining = (int)(deadline - pgt_now_ms());
    r->timed_out = !wait_child(pid, remaining > 0 ? remaining : 0, &r->status);
    r->elapsed_ms = pgt_now_ms() - t0;
    if (out[0] >= 0) {
        close(out[0]);
    }
    close(err[0]);
}

int pgt_exit_code(const pgt_run_result *r)
{
    return !r->timed_out && WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1;
}

uint32_t pgt_count_lines(const char *text)
{
    uint32_t lines = 0;
    size_t len = strlen(text);
    for (size_t i = 0; i < len; i++) {
        lines += text[i] == '\n';
    }
    return lines + (len > 0 && text[len - 1] != '\n');
}

#define PERSISTER_ARGS_MAX 16
#define PERSISTER_TIMEOUT_MS 60000

void pgt_persister(pgt_run_result *r, const pgt_server *s, const char *out_path,
                   const char *const *args)
{
    static char db_env[200];
    const char *bin = getenv("TIXGRID_PERSISTER_BIN");
    cr_assert(bin != NULL && bin[0] != '\0',
              "TIXGRID_PERSISTER_BIN is not set (run through meson)");
    const char *argv[PERSISTER_ARGS_MAX + 2] = {bin};
    int n = 1;
    for (int i = 0; args[i] != NULL && n <= PERSISTER_ARGS_MAX; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    snprintf(db_env, sizeof(db_env), "TIXGRID_DB=%s", s != NULL ? s->conninfo : "");
    char *const env[] = {db_env, "TIXGRID_LOG_LEVEL=info", NULL};
    pgt_run((char *const *)argv, env, out_path, PERSISTER_TIMEOUT_MS, r);
}

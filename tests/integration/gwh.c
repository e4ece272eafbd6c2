/*
 * gwh.c — a whole grid behind a real tixgrid-gateway (see gwh.h).
 *
 * Children (the drain, gateways) are made with fork + exec and only
 * async-signal-safe calls in between; each dies with the test process
 * (PR_SET_PDEATHSIG) and writes its log to a file in the test's folder,
 * never to a pipe the test would have to drain.  The units are harness.h's
 * and the PostgreSQL server pg.h's; their own .fini helpers remove them.
 *
 * Order matters when stopping: gateways first, then the drain, then the
 * units, so that no nng socket ever redials a unit that went away (nng
 * 1.5.2's close can hang then; harness.h).
 */
#include "gwh.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <curl/curl.h>
#include <sodium.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Names the criterion runner to the tests it spawns (they inherit its
 * environment): without TIXGRID_IT_GOLDEN_DIR the seeded database's folder
 * is the runner's. */
#define RUNNER_ENV "TIXGRID_GWH_RUNNER"
#define GOLDEN_DIR_ENV "TIXGRID_IT_GOLDEN_DIR"
#define GOLDEN_PREFIX "/tmp/tixgrid-gwh-golden-"
#define FOLDER_PREFIX "/tmp/tixgrid-gwh-"
/* Building the seeded database: at most this long, also for a test that
 * waits for another one building it. */
#define GOLDEN_TIMEOUT_MS 180000
/* Gateways retried on another port when theirs was taken meanwhile. */
#define PORT_ATTEMPTS 3
/* A gateway log line naming a port in use (server.c). */
#define PORT_TAKEN_TEXT "cannot listen on"

static const pgt_options quick = {.fsync_off = true};

static gwh_grid grid;
static bool grid_started;
static gwh_gateway gateways[GWH_GATEWAYS_MAX];
static int gateway_count;
static gwh_gateway sandbox;
static bool curl_ready;

/* Everything handed to a test that lives until the end of the test. */
typedef struct kept {
    struct kept *next;
    void (*free_fn)(void *);
    void *p;
} kept;
static kept *kept_head;

static void keep(void *p, void (*free_fn)(void *))
{
    kept *k = malloc(sizeof(*k));
    cr_assert(k != NULL);
    *k = (kept){.next = kept_head, .free_fn = free_fn, .p = p};
    kept_head = k;
}

static char *keep_string(const char *s)
{
    char *copy = strdup(s);
    cr_assert(copy != NULL);
    keep(copy, free);
    return copy;
}

/* ---- The runner's hooks ------------------------------------------------- */

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

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    char pid[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    setenv(RUNNER_ENV, pid, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    if (getenv(GOLDEN_DIR_ENV) != NULL) {
        return; /* kept for the build's other test binaries */
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), GOLDEN_PREFIX "%ld", (long)getpid());
    remove_tree(dir);
}

/* ---- Small helpers -------------------------------------------------------- */

static const char *env_bin(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v != NULL && v[0] != '\0', "%s is not set (run through meson test)", name);
    return v;
}

static bool keep_folders(void)
{
    const char *keep_env = getenv("TIXGRID_IT_KEEP");
    return keep_env != NULL && keep_env[0] != '\0' && strcmp(keep_env, "0") != 0;
}

void gwh_dump_log(const gwh_gateway *gw)
{
    hx_dump_file(gw->log_path, 4000);
}

/* Where a sanitizer's report begins in a log, or -1. */
static off_t sanitizer_report_at(int fd)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                        "runtime error:"};
    static char buf[1 << 16];
    off_t at = 0, found = -1;
    ssize_t n;
    while (found < 0 && (n = pread(fd, buf, sizeof(buf) - 1, at)) > 0) {
        buf[n] = '\0';
        for (size_t k = 0; k < sizeof(marks) / sizeof(marks[0]); k++) {
            const char *hit = memmem(buf, (size_t)n, marks[k], strlen(marks[k]));
            if (hit != NULL && (found < 0 || at + (hit - buf) < found)) {
                found = at + (hit - buf);
            }
        }
        at += n > 64 ? n - 64 : n; /* overlap: a mark cut by the buffer's end */
    }
    return found;
}

/* Bytes of a log for a failure's message: criterion's TAP output (what
 * meson keeps) shows assertion messages but not the test's stderr.  A
 * sanitizer's report from its start when there is one, else the end of the
 * log.  A static buffer: one use per message. */
static const char *tail_of(const char *path, size_t bytes)
{
    static char text[2200];
    text[0] = '\0';
    int fd = open(path, O_RDONLY);
    if (fd < 0 || bytes > sizeof(text) - 64) {
        return text;
    }
    off_t size = lseek(fd, 0, SEEK_END), report = sanitizer_report_at(fd);
    off_t from = report >= 0 ? report : size > (off_t)bytes ? size - (off_t)bytes : 0;
    int head = snprintf(text, sizeof(text), "\n---- %s of %s ----\n",
                        report >= 0 ? "the sanitizer's report" : "end", path);
    ssize_t n = pread(fd, text + head, bytes, from);
    close(fd);
    text[head + (n > 0 ? n : 0)] = '\0';
    return text;
}

/* Removes /tmp/tixgrid-gwh-<pid>-* and golden folders whose process is gone. */
static void sweep_stale(void)
{
    DIR *dir = opendir("/tmp");
    if (dir == NULL) {
        return;
    }
    struct dirent *de;
    size_t prefix = strlen("tixgrid-gwh-");
    while ((de = readdir(dir)) != NULL) {
        if (strncmp(de->d_name, "tixgrid-gwh-", prefix) != 0) {
            continue;
        }
        const char *digits = de->d_name + prefix;
        if (strncmp(digits, "golden-", 7) == 0) {
            digits += 7;
        }
        long owner = strtol(digits, NULL, 10);
        if (owner > 0 && kill((pid_t)owner, 0) != 0 && errno == ESRCH) {
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
            remove_tree(path);
        }
    }
    closedir(dir);
}

/* Runs tixgrid-persister with args against the grid's server; asserts exit 0. */
/* One command's output at a time (static: 32 KB, and nothing to free when
 * an assertion unwinds). */
static pgt_run_result run_result;

static void persister_ok(const pgt_server *s, const char *const *args)
{
    pgt_persister(&run_result, s, NULL, args);
    int code = pgt_exit_code(&run_result);
    cr_assert_eq(code, 0, "tixgrid-persister %s exited %d: %.1500s", args[0], code,
                 run_result.err);
}

/* ---- The seeded database, once per build ------------------------------------ */

static long runner_pid(void)
{
    const char *v = getenv(RUNNER_ENV);
    long pid = v != NULL ? strtol(v, NULL, 10) : 0;
    return pid > 0 ? pid : (long)getppid();
}

static void golden_build(const char *data)
{
    pgt_server *s = pgt_start(&quick);
    char users[16];
    snprintf(users, sizeof(users), "%u", GWH_LOAD_USERS);
    persister_ok(s, (const char *const[]){"migrate", NULL});
    persister_ok(s, (const char *const[]){"seed-demo", NULL});
    persister_ok(s, (const char *const[]){"seed-users", users, NULL});
    pgt_stop(s, false); /* clean: the copies start without recovery */
    char *const argv[] = {"/bin/cp", "-a", s->data_dir, (char *)data, NULL};
    pgt_run(argv, NULL, NULL, 60000, &run_result);
    cr_assert_eq(pgt_exit_code(&run_result), 0, "cp -a %s %s failed: %s", s->data_dir, data,
                 run_result.err);
    pgt_destroy(s);
}

/* What the seeded database is made from: the persister that migrates and
 * seeds it (the migrations are compiled into it) and the users asked for.
 * A kept copy whose stamp differs is made again. */
static void golden_stamp(char *out, size_t size)
{
    const char *bin = env_bin("TIXGRID_PERSISTER_BIN");
    struct stat st;
    cr_assert(stat(bin, &st) == 0, "stat %s: %s", bin, strerror(errno));
    snprintf(out, size, "persister %s %lld %lld.%09ld users %u\n", bin, (long long)st.st_size,
             (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, GWH_LOAD_USERS);
}

static bool golden_fresh(const char *ready, const char *stamp)
{
    char was[PATH_MAX + 128] = {0};
    int fd = open(ready, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    ssize_t n = read(fd, was, sizeof(was) - 1);
    close(fd);
    return n > 0 && strcmp(was, stamp) == 0;
}

static void golden_lock(int lock, int how, const char *dir)
{
    int64_t deadline = pgt_now_ms() + GOLDEN_TIMEOUT_MS;
    while (flock(lock, how | LOCK_NB) != 0) {
        cr_assert(pgt_now_ms() < deadline, "waited %d ms for the seeded database in %s",
                  GOLDEN_TIMEOUT_MS, dir);
        hx_sleep_ms(50);
    }
}

/* The data folder of the seeded server, built on first use (gwh.h), in
 * *data; returns the lock to close once the folder is copied: it is held
 * shared meanwhile, so that nobody rebuilds the folder under a copy. */
static int golden_data(char *data, size_t size)
{
    char dir[PATH_MAX / 2], path[PATH_MAX], stamp[PATH_MAX + 128];
    const char *shared = getenv(GOLDEN_DIR_ENV);
    if (shared != NULL && shared[0] != '\0') {
        snprintf(dir, sizeof(dir), "%s", shared);
    } else {
        snprintf(dir, sizeof(dir), GOLDEN_PREFIX "%ld", runner_pid());
    }
    snprintf(data, size, "%s/data", dir);
    cr_assert(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/lock", dir);
    int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    cr_assert(lock >= 0, "open %s: %s", path, strerror(errno));
    golden_stamp(stamp, sizeof(stamp));
    snprintf(path, sizeof(path), "%s/ready", dir);
    golden_lock(lock, LOCK_SH, dir);
    if (golden_fresh(path, stamp)) {
        return lock;
    }
    flock(lock, LOCK_UN);
    golden_lock(lock, LOCK_EX, dir);
    if (!golden_fresh(path, stamp)) { /* nobody built it meanwhile */
        unlink(path);
        remove_tree(data); /* a stale one, or what a killed build left */
        golden_build(data);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
        cr_assert(write(fd, stamp, strlen(stamp)) == (ssize_t)strlen(stamp), "write %s", path);
        close(fd);
    }
    golden_lock(lock, LOCK_SH, dir); /* flock converts the exclusive lock */
    return lock;
}

/* ---- Children --------------------------------------------------------------- */

static pid_t spawn(const char *const *argv, const char *const *extra_env, const char *log_path)
{
    return hx_spawn_process(argv, extra_env, log_path);
}

/* SIGTERM, then a bounded wait (SIGKILL after it); true when it exited by
 * itself, with its status. */
static bool child_stop(pid_t pid, int *status)
{
    kill(pid, SIGTERM);
    if (hx_wait_exit(pid, GWH_STOP_TIMEOUT_MS, status)) {
        return true;
    }
    kill(pid, SIGKILL);
    hx_wait_exit(pid, 5000, status);
    return false;
}

static void child_kill(pid_t *pid)
{
    if (*pid > 0) {
        int status;
        kill(*pid, SIGKILL);
        hx_wait_exit(*pid, 5000, &status);
        *pid = 0;
    }
}

/* ---- Gateways ------------------------------------------------------------------ */

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static size_t discard_cb(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static long probe(const gwh_gateway *gw, const char *path);

/* GET /readyz's status (0: no answer). */
static long readyz_probe(const gwh_gateway *gw)
{
    return probe(gw, "/readyz");
}

/* GET path's status (0: no answer). */
static long probe(const gwh_gateway *gw, const char *path)
{
    CURL *h = curl_easy_init();
    cr_assert(h != NULL);
    char url[96];
    snprintf(url, sizeof(url), "%s%s", gw->url, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_easy_cleanup(h);
    return status;
}

/* Spawns the gateway on a fresh port and waits for readyz: 1 ready, 0 its
 * port was taken (try another), asserts otherwise. */
static int gateway_launch(gwh_grid *g, gwh_gateway *gw, const char *const *flags)
{
    gw->port = free_port();
    snprintf(gw->url, sizeof(gw->url), "http://127.0.0.1:%u", gw->port);
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", gw->port);
    const char *argv[GWH_FLAGS_MAX + 16] = {
        env_bin("TIXGRID_GATEWAY_BIN"), "--listen", listen, "--db", g->pg->conninfo,
        "--data-dir", gw->data_dir, "--threads", "2", "--map-refresh-ms", "200"};
    int n = 11;
    if (g->manager_pub[0] != '\0') {
        argv[n++] = "--manager-pub";
        argv[n++] = g->manager_pub;
    }
    for (int i = 0; flags != NULL && flags[i] != NULL; i++) {
        cr_assert(i < GWH_FLAGS_MAX, "too many gateway flags");
        argv[n++] = flags[i];
    }
    argv[n] = NULL;
    const char *const env[] = {"TIXGRID_LOG_LEVEL=info", NULL};
    gw->pid = spawn(argv, env, gw->log_path);
    int64_t deadline = hx_now_ms() + GWH_READY_TIMEOUT_MS;
    long status = 0;
    while ((status = readyz_probe(gw)) != 200) {
        int exit_status;
        if (waitpid(gw->pid, &exit_status, WNOHANG) == gw->pid) {
            gw->pid = 0;
            if (hx_file_contains(gw->log_path, PORT_TAKEN_TEXT)) {
                return 0;
            }
            cr_assert_fail("gateway %d exited at start (status %#x)%s", gw->index, exit_status,
                           tail_of(gw->log_path, 1500));
        }
        if (hx_now_ms() >= deadline) {
            cr_assert_fail("gateway %d: GET /readyz answered %ld, not 200, for %d ms%s", gw->index,
                           status, GWH_READY_TIMEOUT_MS, tail_of(gw->log_path, 1500));
        }
        hx_sleep_ms(50);
    }
    return 1;
}

gwh_gateway *gwh_gateway_start(gwh_grid *g, const char *const *flags)
{
    cr_assert(gateway_count < GWH_GATEWAYS_MAX, "too many gateways in one test");
    gwh_gateway *gw = &gateways[gateway_count++];
    memset(gw, 0, sizeof(*gw));
    gw->index = gateway_count;
    snprintf(gw->log_path, sizeof(gw->log_path), "%s/gateway-%d.log", g->dir, gw->index);
    /* One data folder for all: the gateways of a grid sign tokens with one
     * key, as a deployment shares TIXGRID_JWT_SECRET. */
    snprintf(gw->data_dir, sizeof(gw->data_dir), "%s/gateway-data", g->dir);
    cr_assert(mkdir(gw->data_dir, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", gw->data_dir,
              strerror(errno));
    int attempt = 0;
    while (gateway_launch(g, gw, flags) == 0) {
        cr_assert(++attempt < PORT_ATTEMPTS, "gateway %d found no free port", gw->index);
    }
    gw->curl = curl_easy_init();
    gw->curl_h2 = curl_easy_init();
    cr_assert(gw->curl != NULL && gw->curl_h2 != NULL);
    return gw;
}

static void gateway_handles_close(gwh_gateway *gw)
{
    if (gw->curl != NULL) {
        curl_easy_cleanup(gw->curl);
        gw->curl = NULL;
    }
    if (gw->curl_h2 != NULL) {
        curl_easy_cleanup(gw->curl_h2);
        gw->curl_h2 = NULL;
    }
}

void gwh_gateway_stop_ok(gwh_gateway *gw)
{
    cr_assert(gw->pid > 0, "gateway %d is not running", gw->index);
    gateway_handles_close(gw);
    int status = 0;
    bool exited = child_stop(gw->pid, &status);
    gw->pid = 0;
    cr_assert(exited, "gateway %d did not exit within %d ms of SIGTERM%s", gw->index,
              GWH_STOP_TIMEOUT_MS, tail_of(gw->log_path, 1500));
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "gateway %d ended with status %#x after SIGTERM, not exit 0%s", gw->index, status,
              tail_of(gw->log_path, 2000));
}

/* ---- The payment sandbox ------------------------------------------------------------ */

/* Spawns the sandbox and waits for /healthz: 1 up, 0 its port was taken. */
static int sandbox_launch(gwh_gateway *sb, const char *const *flags)
{
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", sb->port);
    snprintf(sb->url, sizeof(sb->url), "http://127.0.0.1:%u", sb->port);
    const char *argv[GWH_FLAGS_MAX + 8] = {env_bin("TIXGRID_SANDBOX_BIN"), "--listen", listen,
                                           "--secret", GWH_WEBHOOK_SECRET};
    int n = 5;
    for (int i = 0; flags != NULL && flags[i] != NULL; i++) {
        cr_assert(i < GWH_FLAGS_MAX, "too many sandbox flags");
        argv[n++] = flags[i];
    }
    argv[n] = NULL;
    const char *const env[] = {"TIXGRID_LOG_LEVEL=info", NULL};
    sb->pid = spawn(argv, env, sb->log_path);
    int64_t deadline = hx_now_ms() + GWH_READY_TIMEOUT_MS;
    while (probe(sb, "/healthz") != 200) {
        int exit_status;
        if (waitpid(sb->pid, &exit_status, WNOHANG) == sb->pid) {
            sb->pid = 0;
            if (hx_file_contains(sb->log_path, PORT_TAKEN_TEXT)) {
                return 0;
            }
            cr_assert_fail("the sandbox exited at start (status %#x)%s", exit_status,
                           tail_of(sb->log_path, 1500));
        }
        cr_assert(hx_now_ms() < deadline, "the sandbox did not answer /healthz in %d ms%s",
                  GWH_READY_TIMEOUT_MS, tail_of(sb->log_path, 1500));
        hx_sleep_ms(20);
    }
    return 1;
}

gwh_gateway *gwh_sandbox_start(gwh_grid *g, uint16_t port, const char *const *flags)
{
    gwh_gateway *sb = &sandbox;
    cr_assert(sb->pid == 0, "the sandbox runs already");
    if (sb->curl != NULL) {
        curl_easy_cleanup(sb->curl);
    }
    memset(sb, 0, sizeof(*sb));
    snprintf(sb->log_path, sizeof(sb->log_path), "%s/sandbox.log", g->dir);
    int attempt = 0;
    do {
        sb->port = port != 0 ? port : free_port();
        cr_assert(attempt++ < PORT_ATTEMPTS, "the sandbox found no free port");
    } while (sandbox_launch(sb, flags) == 0 && port == 0);
    cr_assert(sb->pid > 0, "the sandbox could not listen on port %u%s", port,
              tail_of(sb->log_path, 1500));
    sb->curl = curl_easy_init();
    cr_assert(sb->curl != NULL);
    g->sandbox = sb;
    return sb;
}

void gwh_sandbox_stop_ok(gwh_gateway *sb)
{
    cr_assert(sb->pid > 0, "the sandbox is not running");
    int status = 0;
    bool exited = child_stop(sb->pid, &status);
    sb->pid = 0;
    cr_assert(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the sandbox ended with status %#x after SIGTERM, not exit 0%s", status,
              tail_of(sb->log_path, 2000));
}

/* ---- The grid ----------------------------------------------------------------------- */

static void drain_start(gwh_grid *g)
{
    snprintf(g->drain_log, sizeof(g->drain_log), "%s/drain.log", g->dir);
    static char db_env[256];
    snprintf(db_env, sizeof(db_env), "TIXGRID_DB=%s", g->pg->conninfo);
    const char *argv[] = {env_bin("TIXGRID_PERSISTER_BIN"),
                          "run",
                          "--routes-refresh-ms",
                          "200",
                          "--retry-max-ms",
                          "1000",
                          g->manager_pub[0] != '\0' ? "--manager-pub" : NULL,
                          g->manager_pub,
                          NULL};
    const char *const env[] = {db_env, "TIXGRID_LOG_LEVEL=info", NULL};
    g->drain = spawn(argv, env, g->drain_log);
}

static void curl_start(void)
{
    if (!curl_ready) {
        cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        curl_ready = true;
    }
}

/* The grid manager, on sockets in the test's folder. */
static void manager_start(gwh_grid *g, uint32_t backups)
{
    static char backups_text[12];
    snprintf(backups_text, sizeof(backups_text), "%u", backups);
    snprintf(g->manager_url, sizeof(g->manager_url), "ipc://%s/mgr.rep", g->dir);
    snprintf(g->manager_pub, sizeof(g->manager_pub), "ipc://%s/mgr.pub", g->dir);
    snprintf(g->manager_log, sizeof(g->manager_log), "%s/manager.log", g->dir);
    const char *argv[] = {env_bin("TIXGRID_MANAGER_BIN"),
                          "--name",
                          "gwh-mgr",
                          "--listen",
                          g->manager_url,
                          "--pub",
                          g->manager_pub,
                          "--db",
                          g->pg->conninfo,
                          "--backups",
                          backups_text,
                          "--refresh-ms",
                          "200",
                          NULL};
    g->manager = spawn(argv, NULL, g->manager_log);
}

/* Units join the manager when there is one; otherwise they are written
 * into grid_members as an operator would. */
static void units_start(gwh_grid *g, const gwh_options *o)
{
    static const char *const zones[GWH_UNITS_MAX] = {"zone-a", "zone-b", "zone-c"};
    g->unit_count = o->units;
    cr_assert(g->unit_count >= 1 && g->unit_count <= GWH_UNITS_MAX);
    for (uint32_t i = 0; i < g->unit_count; i++) {
        hx_unit *u = &g->units[i];
        hx_unit_init(u, "gw");
        if (o->manager) {
            hx_add_flag(u, "--manager");
            hx_add_flag(u, g->manager_url);
            hx_add_flag(u, "--zone");
            hx_add_flag(u, zones[i]);
        }
        hx_start(u);
        if (!o->manager) {
            persister_ok(g->pg, (const char *const[]){"pu-register", u->name, u->rep_url,
                                                      u->pub_url, NULL});
        }
    }
}

/* With a manager: the replayed partition is adopted by it (its primary
 * written), waited for up to GWH_READY_TIMEOUT_MS. */
static void adoption_wait(gwh_grid *g, const char *partition)
{
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SELECT COALESCE(primary_pu, '') FROM grid_partitions WHERE partition_id = %s",
             partition);
    int64_t deadline = pgt_now_ms() + GWH_READY_TIMEOUT_MS;
    while (pgt_query_text(g->db, sql)[0] == '\0') {
        cr_assert(pgt_now_ms() < deadline, "the manager did not adopt partition %s%s", partition,
                  tail_of(g->manager_log, 1500));
        usleep(20 * 1000);
    }
}

/* place, then replay: the unit loads the partition under the new epoch
 * (scripts/demo does the same). */
static void partitions_place(gwh_grid *g, const gwh_options *o)
{
    for (uint32_t i = 0; i < o->partition_count; i++) {
        cr_assert(o->unit_of[i] < g->unit_count);
        const hx_unit *u = &g->units[o->unit_of[i]];
        char partition[16];
        snprintf(partition, sizeof(partition), "%u", o->partitions[i]);
        if (!o->manager) {
            persister_ok(g->pg, (const char *const[]){"place", partition, u->name, NULL});
        }
        const char *args[GWH_FLAGS_MAX + 8] = {"replay", partition, "--pu", u->rep_url};
        int n = 4;
        for (int k = 0; o->replay_flags != NULL && o->replay_flags[k] != NULL; k++) {
            cr_assert(k < GWH_FLAGS_MAX, "too many replay flags");
            args[n++] = o->replay_flags[k];
        }
        args[n] = NULL;
        persister_ok(g->pg, args);
        if (o->manager) {
            adoption_wait(g, partition);
        }
    }
}

gwh_grid *gwh_start(const gwh_options *o)
{
    static const char *const default_flags[] = {"--allow-reset", "--auth-rate", "0", NULL};
    gwh_options options = {0};
    if (o != NULL) {
        options = *o;
    }
    if (options.units == 0) {
        options.units = 1;
    }
    if (options.partition_count == 0) {
        options.partition_count = 1;
        options.partitions[0] = GWH_DEMO_PARTITION;
        options.unit_of[0] = 0;
    }
    o = &options;
    cr_assert(!grid_started, "one grid per test");
    cr_assert(o->partition_count <= GWH_PARTITIONS_MAX);
    grid_started = true;
    gwh_grid *g = &grid;
    memset(g, 0, sizeof(*g));
    curl_start();
    sweep_stale();
    snprintf(g->dir, sizeof(g->dir), FOLDER_PREFIX "%ld-XXXXXX", (long)getpid());
    cr_assert(mkdtemp(g->dir) != NULL, "mkdtemp: %s", strerror(errno));
    char golden[PATH_MAX];
    int golden_lock_fd = golden_data(golden, sizeof(golden));
    g->pg = pgt_start_copy(golden, &quick);
    close(golden_lock_fd);
    g->db = pgt_connect(g->pg);
    if (o->manager) {
        manager_start(g, o->backups);
    }
    units_start(g, o);
    partitions_place(g, o);
    drain_start(g);
    const char *const *flags = o->gateway_flags != NULL ? o->gateway_flags : default_flags;
    const char *with_payments[GWH_FLAGS_MAX + 1];
    if (o->sandbox) {
        gwh_gateway *sb = gwh_sandbox_start(g, 0, o->sandbox_flags);
        int n = 0;
        while (flags[n] != NULL) {
            cr_assert(n + 4 < GWH_FLAGS_MAX, "too many gateway flags");
            with_payments[n] = flags[n];
            n++;
        }
        with_payments[n++] = "--payment-provider-url";
        with_payments[n++] = keep_string(sb->url);
        with_payments[n++] = "--payment-webhook-secret";
        with_payments[n++] = GWH_WEBHOOK_SECRET;
        with_payments[n] = NULL;
        flags = with_payments;
    }
    g->gw = gwh_gateway_start(g, flags);
    return g;
}

void gwh_stop_ok(gwh_grid *g)
{
    for (int i = 0; i < gateway_count; i++) {
        if (gateways[i].pid > 0) {
            gwh_gateway_stop_ok(&gateways[i]);
        }
    }
    if (g->drain > 0) {
        int status = 0;
        bool exited = child_stop(g->drain, &status);
        g->drain = 0;
        cr_assert(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the drain ended with status %#x after SIGTERM, not exit 0%s", status,
                  tail_of(g->drain_log, 1500));
    }
    for (uint32_t i = 0; i < g->unit_count; i++) {
        if (g->units[i].pid > 0) {
            hx_stop_ok(&g->units[i]);
        }
    }
    if (sandbox.pid > 0) {
        gwh_sandbox_stop_ok(&sandbox);
    }
    if (g->manager > 0) {
        int status = 0;
        bool exited = child_stop(g->manager, &status);
        g->manager = 0;
        cr_assert(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the manager ended with status %#x after SIGTERM, not exit 0%s", status,
                  tail_of(g->manager_log, 1500));
    }
}

void gwh_fini_all(void)
{
    for (int i = 0; i < gateway_count; i++) {
        gateway_handles_close(&gateways[i]);
        child_kill(&gateways[i].pid);
    }
    gateway_count = 0;
    gateway_handles_close(&sandbox);
    child_kill(&sandbox.pid);
    child_kill(&grid.drain);
    child_kill(&grid.manager);
    if (grid.db != NULL) {
        PQfinish(grid.db);
        grid.db = NULL;
    }
    pgt_fini_all();
    hx_fini_all();
    if (grid.dir[0] != '\0') {
        if (keep_folders()) {
            fprintf(stderr, "gwh: kept %s\n", grid.dir);
        } else {
            remove_tree(grid.dir);
        }
        grid.dir[0] = '\0';
    }
    while (kept_head != NULL) {
        kept *k = kept_head;
        kept_head = k->next;
        k->free_fn(k->p);
        free(k);
    }
    if (curl_ready) {
        curl_global_cleanup();
        curl_ready = false;
    }
    grid_started = false;
}

/* ---- HTTP ----------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} growing;

static void growing_add(growing *g, const char *data, size_t n)
{
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap > 0 ? g->cap : 1024;
        while (cap < g->len + n + 1) {
            cap *= 2;
        }
        char *grown = realloc(g->buf, cap);
        if (grown == NULL) {
            return; /* the response is cut short; the test's checks will say so */
        }
        g->buf = grown;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, data, n);
    g->len += n;
    g->buf[g->len] = '\0';
}

static size_t body_cb(char *data, size_t size, size_t n, void *arg)
{
    growing_add(arg, data, size * n);
    return size * n;
}

/* Keeps the last response's header block (a 100 Continue comes first). */
static size_t header_cb(char *data, size_t size, size_t n, void *arg)
{
    growing *g = arg;
    if (size * n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        g->len = 0;
    }
    growing_add(g, data, size * n);
    return size * n;
}

static void resp_free(void *p)
{
    gwh_resp *r = p;
    json_decref(r->json);
    free(r->body);
    free(r->headers);
    free(r);
}

static struct curl_slist *request_headers(const gwh_request_spec *spec)
{
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    char line[4096];
    if (spec->auth != NULL) {
        snprintf(line, sizeof(line), "Authorization: %s", spec->auth);
        list = curl_slist_append(list, line);
    }
    if (spec->body != NULL || spec->content_type != NULL) {
        const char *ct = spec->content_type != NULL ? spec->content_type : "application/json";
        snprintf(line, sizeof(line), "Content-Type:%s%s", ct[0] != '\0' ? " " : "", ct);
        list = curl_slist_append(list, line);
    }
    for (int i = 0; spec->headers != NULL && spec->headers[i] != NULL; i++) {
        list = curl_slist_append(list, spec->headers[i]);
    }
    return list;
}

gwh_resp *gwh_send(gwh_gateway *gw, const gwh_request_spec *spec)
{
    cr_assert(gw->pid > 0 && gw->curl != NULL, "gateway %d is not running", gw->index);
    gwh_resp *r = calloc(1, sizeof(*r));
    cr_assert(r != NULL);
    keep(r, resp_free);
    const char *method = spec->method != NULL ? spec->method : "GET";
    snprintf(r->what, sizeof(r->what), "%s %.130s (gateway %d)", method, spec->path, gw->index);
    CURL *h = spec->http2 ? gw->curl_h2 : gw->curl;
    curl_easy_reset(h);
    char url[8192];
    snprintf(url, sizeof(url), "%s%s", gw->url, spec->path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                     (long)(spec->timeout_ms > 0 ? spec->timeout_ms : GWH_REQUEST_TIMEOUT_MS));
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, spec->http2 ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                                          : (long)CURL_HTTP_VERSION_1_1);
    if (spec->http2) {
        /* libcurl 7.88.1 (Debian 12) cannot send a second request on an h2c
         * prior-knowledge connection it reuses ("Error in the HTTP2 framing
         * layer", curl/curl#10634, fixed in 8.0.0): one connection each. */
        curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    }
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (spec->body != NULL) {
        size_t len = spec->len > 0 ? spec->len : strlen(spec->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, spec->body);
    }
    struct curl_slist *headers = request_headers(spec);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    growing body = {0}, head = {0};
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &head);
    char error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &r->version);
    } else {
        snprintf(r->error, sizeof(r->error), "%s: %s", curl_easy_strerror(rc), error);
    }
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    r->body = body.buf != NULL ? body.buf : strdup("");
    r->len = body.len;
    r->headers = head.buf != NULL ? head.buf : strdup("");
    r->json = r->len > 0 ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    r->gw = gw;
    return r;
}

gwh_resp *gwh_http(gwh_gateway *gw, const char *method, const char *auth, const char *body,
                   const char *path_fmt, ...)
{
    char path[4096];
    va_list ap;
    va_start(ap, path_fmt);
    vsnprintf(path, sizeof(path), path_fmt, ap);
    va_end(ap);
    gwh_request_spec spec = {.method = method, .path = path, .auth = auth, .body = body};
    return gwh_send(gw, &spec);
}

static void resp_explain(const gwh_resp *r)
{
    fprintf(stderr, "---- %s -> %ld%s%s\n%s%.2000s\n----\n", r->what, r->status,
            r->error[0] != '\0' ? " " : "", r->error, r->headers, r->body);
    if (r->gw != NULL && (r->status == 0 || r->status >= 500)) {
        gwh_dump_log(r->gw);
    }
}

json_t *gwh_expect(const gwh_resp *r, long status)
{
    if (r->status != status || (status < 300 && r->json == NULL && r->len > 0)) {
        resp_explain(r);
    }
    cr_assert_eq(r->status, status, "%s answered %ld, not %ld: %.400s%s", r->what, r->status,
                 status, r->status != 0 ? r->body : r->error,
                 r->gw != NULL && (r->status == 0 || r->status >= 500)
                     ? tail_of(r->gw->log_path, 1500)
                     : "");
    cr_assert(status >= 300 || r->json != NULL || r->len == 0, "%s: the body is not JSON: %.300s",
              r->what, r->body);
    return r->json;
}

const char *gwh_expect_error(const gwh_resp *r, long status, const char *code)
{
    gwh_expect(r, status);
    json_t *e = json_object_get(r->json, "error");
    json_t *c = json_object_get(e, "code");
    json_t *m = json_object_get(e, "message");
    if (!json_is_string(c) || strcmp(json_string_value(c), code) != 0 || !json_is_string(m)) {
        resp_explain(r);
    }
    cr_assert(json_is_string(c), "%s: no error code in %.300s", r->what, r->body);
    cr_assert_str_eq(json_string_value(c), code, "%s: error code %s, not %s", r->what,
                     json_string_value(c), code);
    cr_assert(json_is_string(m) && json_string_length(m) > 0, "%s: no error message", r->what);
    const char *ct = gwh_header(r, "content-type");
    cr_assert(ct != NULL && strncmp(ct, "application/json", 16) == 0,
              "%s: an error as %s, not application/json", r->what, ct != NULL ? ct : "nothing");
    return json_string_value(m);
}

const char *gwh_header(const gwh_resp *r, const char *name)
{
    static char value[1024];
    size_t name_len = strlen(name);
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *end = strstr(line, "\r\n");
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (len > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1;
            while (*v == ' ') {
                v++;
            }
            size_t n = (size_t)(line + len - v);
            n = n < sizeof(value) - 1 ? n : sizeof(value) - 1;
            memcpy(value, v, n);
            value[n] = '\0';
            return value;
        }
        line = end != NULL ? end + 2 : NULL;
    }
    return NULL;
}

/* ---- JSON --------------------------------------------------------------------------- */

json_t *gwh_json_at(json_t *j, const char *path)
{
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", path);
    json_t *at = j;
    char *save = NULL;
    for (char *key = strtok_r(copy, ".", &save); key != NULL; key = strtok_r(NULL, ".", &save)) {
        if (json_is_array(at)) {
            at = json_array_get(at, strtoul(key, NULL, 10));
        } else {
            at = json_object_get(at, key);
        }
        if (at == NULL) {
            char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
            fprintf(stderr, "---- no %s in: %.2000s\n", path, text != NULL ? text : "(null)");
            free(text);
            cr_assert_fail("no field %s in the JSON", path);
        }
    }
    return at;
}

int64_t gwh_int(json_t *j, const char *path)
{
    json_t *v = gwh_json_at(j, path);
    cr_assert(json_is_integer(v), "%s is not an integer", path);
    return (int64_t)json_integer_value(v);
}

const char *gwh_str(json_t *j, const char *path)
{
    json_t *v = gwh_json_at(j, path);
    cr_assert(json_is_string(v), "%s is not a string", path);
    return json_string_value(v);
}

/* ---- Accounts ------------------------------------------------------------------------ */

const char *gwh_login(gwh_gateway *gw, const char *email, const char *password)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\": \"%s\", \"password\": \"%s\"}", email, password);
    json_t *j = gwh_expect(gwh_http(gw, "POST", NULL, body, "/api/auth/login"), 200);
    char bearer[2048];
    snprintf(bearer, sizeof(bearer), "Bearer %s", gwh_str(j, "token"));
    return keep_string(bearer);
}

const char *gwh_basic(const char *email, const char *password)
{
    char plain[512], encoded[1024];
    int n = snprintf(plain, sizeof(plain), "%s:%s", email, password);
    cr_assert(n > 0 && (size_t)n < sizeof(plain));
    sodium_bin2base64(encoded, sizeof(encoded), (const unsigned char *)plain, (size_t)n,
                      sodium_base64_VARIANT_ORIGINAL);
    char value[1100];
    snprintf(value, sizeof(value), "Basic %s", encoded);
    return keep_string(value);
}

uint64_t gwh_booking_create(gwh_gateway *gw, const char *auth, uint64_t event_id)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"event_id\": %llu}", (unsigned long long)event_id);
    json_t *j = gwh_expect(gwh_http(gw, "POST", auth, body, "/api/bookings"), 201);
    cr_assert_str_eq(gwh_str(j, "status"), "created");
    return (uint64_t)gwh_int(j, "id");
}

const char *gwh_unique(void)
{
    static uint32_t n;
    char text[48];
    snprintf(text, sizeof(text), "%ld-%u", (long)getpid(), n++);
    return keep_string(text);
}

/* ---- Raw connections ---------------------------------------------------------------- */

int gwh_connect(const gwh_gateway *gw)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(gw->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect to %s: %s", gw->url,
              strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

void gwh_write(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        cr_assert(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

static void free_growing(void *p)
{
    growing *g = p;
    free(g->buf);
    free(g);
}

char *gwh_read_all(int fd, int timeout_ms, size_t *len, bool *closed)
{
    growing *g = calloc(1, sizeof(*g));
    cr_assert(g != NULL);
    keep(g, free_growing);
    growing_add(g, "", 0);
    *closed = false;
    int64_t deadline = hx_now_ms() + timeout_ms;
    char buf[65536];
    while (!*closed) {
        int left = (int)(deadline - hx_now_ms());
        if (left <= 0) {
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
            growing_add(g, buf, (size_t)n);
        } else if (n == 0 || errno != EINTR) {
            *closed = true; /* the end of the stream, or a reset */
        }
    }
    *len = g->len;
    return g->buf != NULL ? g->buf : keep_string("");
}

/* ---- Availability ---------------------------------------------------------------- */

int64_t gwh_log_head(gwh_grid *g, uint32_t partition_id)
{
    tg_msg req = {.type = TG_WIRE_AVAILABILITY, .availability = {.partition_id = partition_id}};
    tg_msg *rep = malloc(sizeof(*rep));
    cr_assert(rep != NULL);
    tg_client *c = hx_client(&g->units[0], partition_id, 1);
    int64_t head = -1;
    for (uint32_t i = 0; i < g->unit_count; i++) {
        if (g->units[i].pid != 0 &&
            tg_client_call_to(c, g->units[i].rep_url, &req, HX_CALL_TIMEOUT_MS, hx_space(), rep) ==
                TG_OK &&
            rep->type == TG_WIRE_AVAILABILITY_OK && (int64_t)rep->availability_ok.log_head > head) {
            head = (int64_t)rep->availability_ok.log_head;
        }
    }
    hx_client_close(c);
    free(rep);
    cr_assert(head >= 0, "no running unit answers availability for partition %u", partition_id);
    return head;
}

/* Polls with If-None-Match: an unchanged answer is a 304 without a body, so
 * a wait does not keep a 250 KB body per poll until the end of the test. */
json_t *gwh_availability_at(gwh_gateway *gw, uint64_t event_id, int64_t version_min)
{
    char path[96], inm[96] = "";
    snprintf(path, sizeof(path), "/api/events/%llu/availability", (unsigned long long)event_id);
    int64_t deadline = hx_now_ms() + GWH_AVAILABILITY_TIMEOUT_MS;
    int64_t version = -1;
    long status = 0;
    for (;;) {
        const char *headers[] = {inm[0] != '\0' ? inm : NULL, NULL};
        gwh_resp *r = gwh_send(gw, &(gwh_request_spec){.path = path, .headers = headers});
        status = r->status;
        if (status == 200) {
            json_t *a = gwh_expect(r, 200);
            version = gwh_int(a, "version");
            if (version >= version_min) {
                return a;
            }
            const char *etag = gwh_header(r, "etag");
            cr_assert_not_null(etag, "%s: no ETag", path);
            snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
        }
        if (hx_now_ms() >= deadline) {
            break;
        }
        hx_sleep_ms(5);
    }
    cr_assert_fail("GET %s: version %lld (last status %ld) after %d ms, want at least %lld: the "
                   "gateway's snapshot does not follow the unit",
                   path, (long long)version, status, GWH_AVAILABILITY_TIMEOUT_MS,
                   (long long)version_min);
    return NULL;
}

json_t *gwh_availability_settled(gwh_grid *g, uint64_t event_id, uint32_t partition_id)
{
    return gwh_availability_at(g->gw, event_id, gwh_log_head(g, partition_id));
}

/* ---- PostgreSQL ------------------------------------------------------------------------ */

void gwh_wait_drained(gwh_grid *g, uint32_t partition_id)
{
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(max(last_seq), 0) FROM partition_offsets WHERE partition_id = %u",
             partition_id);
    int64_t deadline = hx_now_ms() + GWH_DRAIN_TIMEOUT_MS;
    int64_t head = gwh_log_head(g, partition_id), persisted = 0;
    for (;;) {
        persisted = pgt_query_i64(g->db, sql);
        if (persisted >= head) {
            return;
        }
        if (hx_now_ms() >= deadline) {
            break;
        }
        hx_sleep_ms(50);
    }
    cr_assert_fail("PostgreSQL holds changes up to %lld of partition %u, the grid is at %lld, "
                   "after %d ms%s",
                   (long long)persisted, partition_id, (long long)head, GWH_DRAIN_TIMEOUT_MS,
                   tail_of(g->drain_log, 1500));
}

/*
 * harness.c — starting, probing and stopping real tixgrid-pu processes for
 * the integration tests (see harness.h).
 *
 * Children are made with fork + exec and nothing else in between but
 * async-signal-safe calls (the test process has nng threads).  The child asks
 * the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), so a test
 * killed by its timeout cannot leave a unit running; segments such a test
 * leaves in /dev/shm carry its dead pid in their name and the next test
 * process removes them (sweep_stale).
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <nng/protocol/reqrep0/req.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* What .fini needs to clean up, copied: a test may keep its hx_unit or
 * hx_helper on its stack, gone by the time .fini runs.  The pointers are
 * keys only and are never followed from hx_fini_all. */
typedef struct {
    const hx_unit *key;
    char name[TG_PU_NAME_BYTES];
    char dir[32];
    char rep_url[64];
    pid_t pid; /* the last process started for it */
} unit_entry;
static unit_entry units[HX_UNITS_MAX];
static uint32_t unit_count;

#define HELPERS_MAX 8u
typedef struct {
    const hx_helper *key;
    pid_t pid;
    int in_fd, out_fd; /* -1 once closed */
} helper_entry;
static helper_entry helpers[HELPERS_MAX];
static uint32_t helper_count;

static unit_entry *unit_entry_of(const hx_unit *u)
{
    for (uint32_t i = 0; i < unit_count; i++) {
        if (units[i].key == u) {
            return &units[i];
        }
    }
    return NULL;
}

static helper_entry *helper_entry_of(const hx_helper *h)
{
    for (uint32_t i = 0; i < helper_count; i++) {
        if (helpers[i].key == h) {
            return &helpers[i];
        }
    }
    return NULL;
}

/* True while pid is a child of this process that has not exited (reaps it
 * if it has): .fini never signals a process that is not its own. */
static bool child_running(pid_t pid)
{
    return pid > 0 && waitpid(pid, NULL, WNOHANG) == 0;
}

/* Clients and raw sockets the harness closes while their unit runs. */
#define OWNED_MAX 64u
typedef struct {
    const hx_unit *unit; /* NULL: a free entry */
    tg_client *client;   /* or NULL for a raw socket */
    nng_socket raw;
} owned;
static owned owned_items[OWNED_MAX];
static pthread_mutex_t owned_lock = PTHREAD_MUTEX_INITIALIZER;

static void own(const hx_unit *u, tg_client *c, nng_socket raw)
{
    pthread_mutex_lock(&owned_lock);
    uint32_t i = 0;
    while (i < OWNED_MAX && owned_items[i].unit != NULL) {
        i++;
    }
    if (i < OWNED_MAX) {
        owned_items[i] = (owned){.unit = u, .client = c, .raw = raw};
    }
    pthread_mutex_unlock(&owned_lock);
}

/* Forgets c; true if the harness owned it. */
static bool disown(tg_client *c)
{
    bool found = false;
    pthread_mutex_lock(&owned_lock);
    for (uint32_t i = 0; i < OWNED_MAX && !found; i++) {
        if (owned_items[i].unit != NULL && owned_items[i].client == c) {
            owned_items[i].unit = NULL;
            found = true;
        }
    }
    pthread_mutex_unlock(&owned_lock);
    return found;
}

static void close_closer(tg_client *c);

/* Closes what the harness owns for unit u (at url); abandons it when the
 * unit is not running (closing a socket whose peer is gone can hang: see
 * hx_client_close).  u is a key only. */
static void close_owned(const hx_unit *u, const char *url, bool running)
{
    for (uint32_t i = 0; i < OWNED_MAX; i++) {
        pthread_mutex_lock(&owned_lock);
        owned o = owned_items[i];
        bool mine = o.unit != NULL && o.unit == u;
        if (mine) {
            owned_items[i].unit = NULL;
        }
        pthread_mutex_unlock(&owned_lock);
        if (!mine || !running) {
            continue;
        }
        if (o.client != NULL) {
            hx_client_settle(o.client, url);
            close_closer(o.client);
        } else {
            nng_close(o.raw);
        }
    }
}

int64_t hx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hx_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const char *hx_pu_bin(void)
{
    const char *bin = getenv("TIXGRID_PU_BIN");
    cr_assert(bin != NULL && bin[0] != '\0', "TIXGRID_PU_BIN is not set (run through meson test)");
    return bin;
}

/* Removes /dev/shm/tixgrid-it-<tag>-<pid>-... left by test processes that are
 * gone (killed by a timeout before their .fini ran). */
static void sweep_stale(void)
{
    DIR *dir = opendir("/dev/shm");
    if (dir == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        const char *tag_end;
        if (strncmp(de->d_name, "tixgrid-it-", 11) != 0 ||
            (tag_end = strchr(de->d_name + 11, '-')) == NULL) {
            continue;
        }
        long pid = strtol(tag_end + 1, NULL, 10);
        if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
            unlink(path);
        }
    }
    closedir(dir);
}

void hx_unit_init(hx_unit *u, const char *tag)
{
    static uint32_t counter;
    if (counter == 0) {
        sweep_stale();
    }
    cr_assert(unit_count < HX_UNITS_MAX, "too many units in one test");
    memset(u, 0, sizeof(*u));
    /* /tmp, not $TMPDIR: an ipc:// path must fit in sockaddr_un (108 bytes). */
    snprintf(u->dir, sizeof(u->dir), "/tmp/tixgrid-it-XXXXXX");
    cr_assert(mkdtemp(u->dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(u->name, sizeof(u->name), "it-%s-%d-%u", tag, (int)getpid(), counter++);
    snprintf(u->rep_url, sizeof(u->rep_url), "ipc://%s/pu.rep", u->dir);
    snprintf(u->pub_url, sizeof(u->pub_url), "ipc://%s/pu.pub", u->dir);
    snprintf(u->log_path, sizeof(u->log_path), "%s/pu.log", u->dir);
    unit_entry *e = &units[unit_count++];
    *e = (unit_entry){.key = u};
    memcpy(e->name, u->name, sizeof(e->name));
    memcpy(e->dir, u->dir, sizeof(e->dir));
    memcpy(e->rep_url, u->rep_url, sizeof(e->rep_url));
}

const char *hx_write_file(hx_unit *u, const char *file, const char *text)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", u->dir, file);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    cr_assert(fclose(f) == 0);
    return path;
}

static size_t append(char *buf, size_t size, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t append(char *buf, size_t size, size_t at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + at, size - at, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < size - at, "layout text too long");
    return at + (size_t)n;
}

void hx_write_layout(hx_unit *u, const hx_layout *l)
{
    static char text[1 << 20];
    size_t at = append(text, sizeof(text), 0, "{\"partition_id\": %u, \"event_id\": %llu,",
                       l->partition_id, (unsigned long long)l->event_id);
    const char *names[] = {"hold_ttl_ms", "payment_window_ms", "log_records", "booking_capacity"};
    const uint32_t values[] = {l->hold_ttl_ms, l->payment_window_ms, l->log_records,
                               l->booking_capacity};
    for (int i = 0; i < 4; i++) {
        if (values[i] != 0) {
            at = append(text, sizeof(text), at, " \"%s\": %u,", names[i], values[i]);
        }
    }
    at = append(text, sizeof(text), at, " \"sections\": [");
    for (uint32_t s = 0; s < l->sections; s++) {
        at = append(text, sizeof(text), at,
                    "%s\n  {\"name\": \"S%u\", \"price\": %u, \"currency\": \"EUR\", \"rows\": [",
                    s ? "," : "", s, 1000 * (s + 1));
        for (uint32_t r = 0; r < l->rows; r++) {
            at = append(text, sizeof(text), at, "%s{\"name\": \"R%u\", \"seats\": %u}",
                        r ? ", " : "", r, l->seats);
        }
        at = append(text, sizeof(text), at, "]}");
    }
    append(text, sizeof(text), at, "]}\n");
    hx_write_file(u, "layout.json", text);
    snprintf(u->layout_path, sizeof(u->layout_path), "%s/layout.json", u->dir);
}

void hx_add_flag(hx_unit *u, const char *flag)
{
    cr_assert(u->flag_count < HX_FLAGS_MAX);
    u->flags[u->flag_count++] = flag;
}

pid_t hx_spawn_process(const char *const *argv, const char *const *extra_env,
                       const char *log_path)
{
    size_t base = 0, more = 0;
    while (environ[base] != NULL) {
        base++;
    }
    while (extra_env != NULL && extra_env[more] != NULL) {
        more++;
    }
    char **env = calloc(base + more + 1, sizeof(*env));
    cr_assert(env != NULL);
    if (more > 0) {
        memcpy(env, extra_env, more * sizeof(*env));
    }
    memcpy(env + more, environ, base * sizeof(*env)); /* the first of a name wins */
    hx_watchdog_arm();
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    cr_assert(fd >= 0, "cannot open %s: %s", log_path, strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Child: async-signal-safe calls only until exec. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(127);
        }
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(127);
        }
        execve(argv[0], (char *const *)argv, env);
        _exit(127);
    }
    close(fd);
    free(env);
    return pid;
}

pid_t hx_spawn(hx_unit *u)
{
    const char *argv[8 + HX_FLAGS_MAX + 1];
    int n = 0;
    argv[n++] = hx_pu_bin();
    argv[n++] = "--name";
    argv[n++] = u->name;
    argv[n++] = "--listen";
    argv[n++] = u->rep_url;
    argv[n++] = "--pub";
    argv[n++] = u->pub_url;
    if (u->layout_path[0] != '\0') {
        argv[n++] = "--partition";
        argv[n++] = u->layout_path;
    }
    for (uint32_t i = 0; i < u->flag_count; i++) {
        argv[n++] = u->flags[i];
    }
    argv[n] = NULL;
    pid_t pid = hx_spawn_process(argv, NULL, u->log_path);
    u->pid = pid;
    unit_entry *e = unit_entry_of(u);
    if (e != NULL) {
        e->pid = pid;
    }
    return pid;
}

bool hx_wait_exit(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = hx_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return true;
        }
        if (r < 0 && errno != EINTR) {
            return false;
        }
        if (hx_now_ms() >= deadline) {
            return false;
        }
        hx_sleep_ms(2);
    }
}

static bool stats_probe(nng_socket s)
{
    static const uint8_t stats_request[] = {0x92, TG_WIRE_STATS, TG_WIRE_VERSION};
    uint8_t buf[65536];
    int64_t n = hx_raw_call(s, stats_request, sizeof(stats_request), buf, sizeof(buf));
    if (n < 0) {
        return false;
    }
    tg_msg *rep = malloc(sizeof(*rep));
    cr_assert(rep != NULL);
    bool ok = tg_wire_decode(buf, (size_t)n, NULL, rep, NULL) == TG_OK &&
              rep->type == TG_WIRE_STATS_OK;
    free(rep);
    return ok;
}

/* False once the unit has exited (and reaps it). */
static bool still_running(hx_unit *u)
{
    int status;
    if (u->pid > 0 && waitpid(u->pid, &status, WNOHANG) == u->pid) {
        u->pid = 0;
        fprintf(stderr, "harness: %s exited during start-up (status %#x)\n", u->name, status);
    }
    return u->pid > 0;
}

/* A REQ socket connected to the unit, dialled only once its ipc socket
 * exists and then synchronously, so that no background redial ever runs in
 * this process (see hx_client_close); false if the unit never listened. */
static bool dial_when_listening(hx_unit *u, int64_t deadline, nng_socket *out)
{
    const char *path = u->rep_url + strlen("ipc://");
    struct stat st;
    while (hx_now_ms() < deadline && still_running(u)) {
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            break;
        }
        hx_sleep_ms(2);
    }
    cr_assert_eq(nng_req0_open(out), 0);
    nng_socket_set_ms(*out, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(*out, NNG_OPT_RECVTIMEO, 100);
    nng_socket_set_ms(*out, NNG_OPT_SENDTIMEO, 100);
    while (hx_now_ms() < deadline && still_running(u)) {
        if (nng_dial(*out, u->rep_url, NULL, 0) == 0) {
            return true;
        }
        hx_sleep_ms(5);
    }
    return false;
}

bool hx_wait_ready(hx_unit *u, int timeout_ms)
{
    int64_t deadline = hx_now_ms() + timeout_ms;
    nng_socket s;
    bool ready = false;
    if (dial_when_listening(u, deadline, &s)) {
        while (!ready && hx_now_ms() < deadline && still_running(u)) {
            ready = stats_probe(s);
        }
    }
    if (ready) {
        nng_close(s); /* only while the peer runs: see hx_client_close */
    }
    return ready;
}

bool hx_file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    bool found = false;
    while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return found;
}

void hx_dump_file(const char *path, size_t bytes)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)bytes ? size - (off_t)bytes : 0;
    char *buf = malloc(bytes + 1);
    ssize_t n = buf != NULL ? pread(fd, buf, bytes, from) : -1;
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        fprintf(stderr, "---- end of %s ----\n%s---- end ----\n", path, buf);
    }
    free(buf);
}

void hx_dump_log(const hx_unit *u)
{
    hx_dump_file(u->log_path, 4000);
}

void hx_start(hx_unit *u)
{
    hx_spawn(u);
    if (!hx_wait_ready(u, HX_START_TIMEOUT_MS)) {
        hx_dump_log(u);
        cr_assert_fail("unit %s did not answer within %d ms", u->name, HX_START_TIMEOUT_MS);
    }
}

int hx_stop(hx_unit *u, int64_t *elapsed_ms)
{
    cr_assert(u->pid > 0, "unit %s is not running", u->name);
    close_owned(u, u->rep_url, true);
    int64_t t0 = hx_now_ms();
    int status = 0;
    kill(u->pid, SIGTERM);
    if (!hx_wait_exit(u->pid, HX_STOP_TIMEOUT_MS, &status)) {
        kill(u->pid, SIGKILL);
        waitpid(u->pid, &status, 0);
        fprintf(stderr, "harness: %s ignored SIGTERM for %d ms; killed\n", u->name,
                HX_STOP_TIMEOUT_MS);
    }
    if (elapsed_ms != NULL) {
        *elapsed_ms = hx_now_ms() - t0;
    }
    u->pid = 0;
    return status;
}

void hx_stop_ok(hx_unit *u)
{
    int status = hx_stop(u, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        hx_dump_log(u);
    }
    cr_assert(WIFEXITED(status), "unit %s did not exit (status %#x)", u->name, status);
    cr_assert_eq(WEXITSTATUS(status), 0, "unit %s exited with %d", u->name, WEXITSTATUS(status));
}

void hx_kill(hx_unit *u)
{
    cr_assert(u->pid > 0, "unit %s is not running", u->name);
    close_owned(u, u->rep_url, true);
    kill(u->pid, SIGKILL);
    int status;
    cr_assert(hx_wait_exit(u->pid, HX_STOP_TIMEOUT_MS, &status), "SIGKILL did not end %s",
              u->name);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    u->pid = 0;
}

/* Reads /proc/PID/task/TID/<file> of each thread of pid (its first 4 KiB)
 * and calls visit with it, or with NULL when the thread ended meanwhile,
 * until visit returns false.  False when pid has no task folder (gone). */
static bool threads_visit(pid_t pid, const char *file,
                          bool (*visit)(const char *tid, const char *text, void *arg), void *arg)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (dir == NULL) {
        return false;
    }
    bool more = true;
    for (struct dirent *de; more && (de = readdir(dir)) != NULL;) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char name[128 + sizeof(de->d_name)], text[4096] = "";
        snprintf(name, sizeof(name), "%s/%s/%s", path, de->d_name, file);
        FILE *f = fopen(name, "r");
        size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;
        text[n] = '\0';
        if (f != NULL) {
            fclose(f);
        }
        more = visit(de->d_name, f != NULL ? text : NULL, arg);
    }
    closedir(dir);
    return true;
}

/* arg: a bool, true until a thread is found running; stops there. */
static bool thread_stopped_all(const char *tid, const char *stat, void *arg)
{
    (void)tid;
    const char *after_name = stat != NULL ? strrchr(stat, ')') : NULL; /* "tid (comm) S ..." */
    bool *stopped = arg;
    *stopped = after_name != NULL && after_name[1] == ' ' && after_name[2] == 'T';
    return *stopped;
}

/* True when every thread of pid is stopped ('T' in /proc/PID/task/TID/stat). */
static bool all_threads_stopped(pid_t pid)
{
    bool stopped = true;
    return threads_visit(pid, "stat", thread_stopped_all, &stopped) && stopped;
}

void hx_freeze(hx_unit *u)
{
    cr_assert(u->pid > 0, "unit %s is not running", u->name);
    cr_assert_eq(kill(u->pid, SIGSTOP), 0);
    int64_t limit = hx_now_ms() + HX_STOP_TIMEOUT_MS;
    while (!all_threads_stopped(u->pid)) {
        cr_assert_lt(hx_now_ms(), limit, "SIGSTOP did not stop every thread of %s", u->name);
        hx_sleep_ms(1);
    }
}

void hx_repl_cut(const char *refuse_dir, const hx_unit *u, bool cut)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", refuse_dir, u->name);
    if (cut) {
        FILE *f = fopen(path, "w");
        cr_assert(f != NULL, "%s: %s", path, strerror(errno));
        fclose(f);
    } else {
        cr_assert_eq(unlink(path), 0, "%s: %s", path, strerror(errno));
    }
}

static void remove_segments(const char *name)
{
    char prefix[TG_SHM_NAME_BYTES + 16];
    int len = snprintf(prefix, sizeof(prefix), "tixgrid-%s-p", name);
    DIR *dir = opendir("/dev/shm");
    if (dir == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strncmp(de->d_name, prefix, (size_t)len) == 0) {
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
            unlink(path);
        }
    }
    closedir(dir);
}

static void remove_dir(const char *path)
{
    DIR *dir = opendir(path);
    if (dir == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            char file[PATH_MAX];
            snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
            unlink(file); /* the harness makes no sub-folders */
        }
    }
    closedir(dir);
    rmdir(path);
}

void hx_fini_all(void)
{
    const char *keep = getenv("TIXGRID_IT_KEEP");
    for (uint32_t i = 0; i < helper_count; i++) {
        helper_entry *h = &helpers[i];
        if (child_running(h->pid)) {
            kill(h->pid, SIGKILL);
            waitpid(h->pid, NULL, 0);
        }
        if (h->in_fd >= 0) {
            close(h->in_fd);
        }
        if (h->out_fd >= 0) {
            close(h->out_fd);
        }
    }
    helper_count = 0;
    for (uint32_t i = 0; i < unit_count; i++) {
        unit_entry *e = &units[i];
        bool running = child_running(e->pid);
        close_owned(e->key, e->rep_url, running);
        if (running) {
            kill(e->pid, SIGKILL);
            waitpid(e->pid, NULL, 0);
        }
        remove_segments(e->name);
        if (keep == NULL || keep[0] == '\0' || strcmp(keep, "0") == 0) {
            remove_dir(e->dir);
        } else {
            fprintf(stderr, "harness: kept %s\n", e->dir);
        }
    }
    unit_count = 0;
}

/* ---- Running a command ---------------------------------------------------- */

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

void hx_run(char *const argv[], int timeout_ms, hx_run_result *r)
{
    hx_watchdog_arm();
    memset(r, 0, sizeof(*r));
    int out[2], err[2];
    cr_assert(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(127);
        }
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) {
            _exit(127);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    size_t out_len = 0, err_len = 0;
    bool out_open = true, err_open = true;
    int64_t deadline = hx_now_ms() + timeout_ms;
    while ((out_open || err_open) && hx_now_ms() < deadline) {
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
    close(out[0]);
    close(err[0]);
    int64_t left = deadline - hx_now_ms();
    if (!hx_wait_exit(pid, left > 0 ? (int)left : 0, &r->status)) {
        r->timed_out = true;
        kill(pid, SIGKILL);
        waitpid(pid, &r->status, 0);
    }
}

uint32_t hx_count_lines(const char *text)
{
    uint32_t n = 0;
    for (const char *p = text; *p != '\0'; p++) {
        n += *p == '\n';
    }
    size_t len = strlen(text);
    return n + (len > 0 && text[len - 1] != '\n');
}

/* ---- Helper processes ------------------------------------------------------ */

const char *hx_load_bin(void)
{
    const char *bin = getenv("TIXGRID_IT_LOAD_BIN");
    cr_assert(bin != NULL && bin[0] != '\0', "TIXGRID_IT_LOAD_BIN is not set");
    return bin;
}

void hx_helper_start(hx_helper *h, char *const argv[])
{
    cr_assert(helper_count < HELPERS_MAX);
    hx_watchdog_arm();
    int in[2], out[2];
    cr_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(127);
        }
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0) {
            _exit(127);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    h->pid = pid;
    h->in_fd = in[1];
    h->out_fd = out[0];
    h->len = 0;
    helpers[helper_count++] = (helper_entry){.key = h, .pid = pid, .in_fd = in[1],
                                             .out_fd = out[0]};
}

bool hx_helper_line(hx_helper *h, char *line, size_t size, int timeout_ms)
{
    int64_t deadline = hx_now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(h->buf, '\n', h->len);
        if (nl != NULL) {
            size_t n = (size_t)(nl - h->buf);
            size_t take = n < size - 1 ? n : size - 1;
            memcpy(line, h->buf, take);
            line[take] = '\0';
            h->len -= n + 1;
            memmove(h->buf, nl + 1, h->len);
            return true;
        }
        int64_t left = deadline - hx_now_ms();
        if (left <= 0 || h->len == sizeof(h->buf)) {
            return false;
        }
        struct pollfd p = {.fd = h->out_fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0) {
            continue;
        }
        ssize_t n = read(h->out_fd, h->buf + h->len, sizeof(h->buf) - h->len);
        if (n <= 0 && !(n < 0 && errno == EINTR)) {
            return false; /* end of its output */
        }
        h->len += n > 0 ? (size_t)n : 0;
    }
}

void hx_helper_stop(hx_helper *h)
{
    if (h->in_fd >= 0) {
        close(h->in_fd);
        h->in_fd = -1;
        helper_entry *e = helper_entry_of(h);
        if (e != NULL) {
            e->in_fd = -1;
        }
    }
}

int hx_helper_wait(hx_helper *h, int timeout_ms)
{
    int status = 0;
    if (h->pid <= 0) {
        return -1;
    }
    if (!hx_wait_exit(h->pid, timeout_ms, &status)) {
        fprintf(stderr, "harness: helper %d did not exit in %d ms; killed\n", (int)h->pid,
                timeout_ms);
        kill(h->pid, SIGKILL);
        waitpid(h->pid, &status, 0);
    }
    h->pid = 0;
    return status;
}

/* ---- Requests -------------------------------------------------------------- */

tg_client *hx_client(const hx_unit *u, uint32_t partition_id, uint32_t inflight_max)
{
    tg_client *c = NULL;
    tg_client_config cfg = {.inflight_max = inflight_max};
    cr_assert_eq(tg_client_open(&cfg, &c), TG_OK);
    cr_assert_eq(tg_client_route(c, partition_id, u->rep_url), TG_OK);
    own(u, c, (nng_socket){0});
    return c;
}

/* Closers live in a static pool: an abandoned one stays reachable. */
typedef struct {
    tg_client *client;
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    bool done;
} closer;

#define CLOSERS_MAX 256u
static closer closers[CLOSERS_MAX];
static uint32_t closers_used;

static void *closer_main(void *arg)
{
    closer *k = arg;
    tg_client_close(k->client);
    pthread_mutex_lock(&k->lock);
    k->done = true;
    pthread_cond_signal(&k->done_cond);
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

bool hx_client_settle(tg_client *c, const char *url)
{
    static const tg_msg stats = {.type = TG_WIRE_STATS};
    tg_msg *rep = malloc(sizeof(*rep));
    bool ok = false;
    int64_t deadline = hx_now_ms() + HX_START_TIMEOUT_MS;
    while (rep != NULL && !ok && hx_now_ms() < deadline) {
        ok = tg_client_call_to(c, url, &stats, 500, NULL, rep) == TG_OK;
    }
    free(rep);
    return ok;
}

void hx_client_close(tg_client *c)
{
    if (c != NULL) {
        disown(c);
        close_closer(c);
    }
}

static void close_closer(tg_client *c)
{
    uint32_t i = __atomic_fetch_add(&closers_used, 1, __ATOMIC_RELAXED);
    if (i >= CLOSERS_MAX) {
        tg_client_close(c); /* out of closers: close without a bound */
        return;
    }
    closer *k = &closers[i];
    k->client = c;
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->done_cond, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, closer_main, k) != 0) {
        tg_client_close(c);
        return;
    }
    pthread_detach(t);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HX_CLIENT_CLOSE_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&k->lock);
    while (!k->done && pthread_cond_timedwait(&k->done_cond, &k->lock, &until) == 0) {
    }
    bool done = k->done;
    pthread_mutex_unlock(&k->lock);
    if (!done) {
        fprintf(stderr, "harness: tg_client_close did not return in %d ms (nng 1.5.2 close "
                        "deadlock); abandoned\n",
                HX_CLIENT_CLOSE_TIMEOUT_MS);
    }
}

static tg_wire_seat space_seats[TG_WIRE_SEATS_LIST_MAX];
static tg_wire_counts space_counts[TG_ROWS_MAX];
static tg_wire_row space_rows[TG_ROWS_MAX];
static tg_wire_log_record space_records[TG_WIRE_LOG_RECORDS_MAX];
static tg_wire_change space_changes[TG_WIRE_CHANGES_MAX];

const tg_wire_space *hx_space(void)
{
    static const tg_wire_space space = {
        .seats = space_seats,
        .seats_capacity = TG_WIRE_SEATS_LIST_MAX,
        .counts = space_counts,
        .counts_capacity = TG_ROWS_MAX,
        .rows = space_rows,
        .rows_capacity = TG_ROWS_MAX,
        .records = space_records,
        .records_capacity = TG_WIRE_LOG_RECORDS_MAX,
        .changes = space_changes,
        .changes_capacity = TG_WIRE_CHANGES_MAX,
    };
    return &space;
}

tg_err hx_call(tg_client *c, uint32_t partition_id, const tg_msg *req, tg_msg *rep)
{
    tg_err err = tg_client_call(c, partition_id, req, HX_CALL_TIMEOUT_MS, hx_space(), rep);
    cr_assert(err != TG_ETIMEDOUT && err != TG_EPROTO && err != TG_ECLOSED,
              "%s: no proper reply: %s", tg_wire_type_name(req->type), tg_strerror(err));
    if (err != TG_OK && err != TG_EUNAVAILABLE) {
        cr_assert_eq(rep->type, TG_WIRE_ERROR, "%s failed without an error reply",
                     tg_wire_type_name(req->type));
    }
    if (err == TG_OK) {
        cr_assert_eq(rep->type, tg_wire_reply_type(req->type), "%s answered with %s",
                     tg_wire_type_name(req->type), tg_wire_type_name(rep->type));
    }
    return err;
}

tg_booking_id hx_booking_create(tg_client *c, uint32_t partition_id, uint64_t user_id)
{
    tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = partition_id;
    req.booking_create.user_id = user_id;
    tg_msg rep;
    tg_err err = hx_call(c, partition_id, &req, &rep);
    cr_assert_eq(err, TG_OK, "booking_create: %s", tg_strerror(err));
    cr_assert_eq(rep.booking_create_ok.user_id, user_id);
    cr_assert_eq(tg_booking_id_partition(rep.booking_create_ok.booking_id), partition_id);
    return rep.booking_create_ok.booking_id;
}

tg_err hx_hold(tg_client *c, tg_booking_id b, uint64_t user_id, const uint32_t *seats,
               uint32_t n, tg_msg *rep)
{
    tg_msg req = {.type = TG_WIRE_SEATS_HOLD};
    req.seats_hold.booking_id = b;
    req.seats_hold.user_id = user_id;
    req.seats_hold.seats.count = n;
    memcpy(req.seats_hold.seats.ids, seats, sizeof(uint32_t) * n);
    return hx_call(c, tg_booking_id_partition(b), &req, rep);
}

tg_msg hx_hold_one(tg_booking_id b, uint64_t user_id, uint32_t seat)
{
    tg_msg req = {.type = TG_WIRE_SEATS_HOLD};
    req.seats_hold.booking_id = b;
    req.seats_hold.user_id = user_id;
    req.seats_hold.seats.count = 1;
    req.seats_hold.seats.ids[0] = seat;
    return req;
}

tg_err hx_booking_get(tg_client *c, tg_booking_id b, uint64_t user_id, tg_msg *rep)
{
    tg_msg req = {.type = TG_WIRE_BOOKING_GET};
    req.booking_get.booking_id = b;
    req.booking_get.user_id = user_id;
    return hx_call(c, tg_booking_id_partition(b), &req, rep);
}

tg_err hx_seat_get(tg_client *c, uint32_t partition_id, uint32_t seat, tg_msg *rep)
{
    tg_msg req = {.type = TG_WIRE_SEAT_GET};
    req.seat_get.partition_id = partition_id;
    req.seat_get.seat_id = seat;
    return hx_call(c, partition_id, &req, rep);
}

void hx_availability(tg_client *c, uint32_t partition_id, tg_msg *rep, tg_wire_counts *rows_out)
{
    tg_msg req = {.type = TG_WIRE_AVAILABILITY};
    req.availability.partition_id = partition_id;
    tg_err err = hx_call(c, partition_id, &req, rep);
    cr_assert_eq(err, TG_OK, "availability: %s", tg_strerror(err));
    memcpy(rows_out, rep->availability_ok.rows,
           sizeof(tg_wire_counts) * rep->availability_ok.row_count);
    rep->availability_ok.rows = rows_out;
}

void hx_seat_words(tg_client *c, uint32_t partition_id, uint32_t seat_count, uint64_t *words)
{
    uint32_t seen = 0, next = 0;
    tg_msg *rep = malloc(sizeof(*rep));
    cr_assert(rep != NULL);
    for (uint32_t pages = 0; next < seat_count && pages <= seat_count; pages++) {
        tg_msg req = {.type = TG_WIRE_SEATS_LIST};
        req.seats_list = (__typeof__(req.seats_list)){.partition_id = partition_id,
                                                      .first_seat = next,
                                                      .count = TG_WIRE_SEATS_LIST_MAX,
                                                      .state = -1,
                                                      .row = -1,
                                                      .section = -1};
        cr_assert_eq(hx_call(c, partition_id, &req, rep), TG_OK);
        for (uint32_t i = 0; i < rep->seats_list_ok.seat_count; i++) {
            const tg_wire_seat *s = &rep->seats_list_ok.seats[i];
            cr_assert_eq(s->seat_id, next + i, "seats_list skipped a seat");
            words[s->seat_id] = s->word;
        }
        seen += rep->seats_list_ok.seat_count;
        cr_assert(rep->seats_list_ok.next_seat > next, "seats_list made no progress");
        next = rep->seats_list_ok.next_seat;
    }
    free(rep);
    cr_assert_eq(seen, seat_count);
}

uint32_t hx_counts_sum(const tg_wire_counts *c)
{
    uint32_t sum = 0;
    for (uint32_t i = 0; i < TG_SEAT_STATE_COUNT; i++) {
        sum += c->by_state[i];
    }
    return sum;
}

/* ---- Raw nng ------------------------------------------------------------------ */

nng_socket hx_raw_open(const char *url, uint32_t recv_timeout_ms)
{
    nng_socket s;
    cr_assert_eq(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, (nng_duration)recv_timeout_ms);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, (nng_duration)recv_timeout_ms);
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 10);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 50);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 0);
    int rv = nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK);
    cr_assert_eq(rv, 0, "dial %s: %s", url, nng_strerror(rv));
    return s;
}

nng_socket hx_unit_raw(hx_unit *u, uint32_t recv_timeout_ms)
{
    nng_socket s = hx_raw_open(u->rep_url, recv_timeout_ms);
    own(u, NULL, s);
    return s;
}

int64_t hx_raw_call(nng_socket s, const void *bytes, size_t len, void *buf, size_t cap)
{
    nng_msg *msg;
    int rv = nng_msg_alloc(&msg, len);
    if (rv != 0) {
        return -rv;
    }
    if (len > 0) {
        memcpy(nng_msg_body(msg), bytes, len);
    }
    rv = nng_sendmsg(s, msg, 0);
    if (rv != 0) {
        nng_msg_free(msg);
        return -rv;
    }
    rv = nng_recvmsg(s, &msg, 0);
    if (rv != 0) {
        return -rv;
    }
    size_t n = nng_msg_len(msg) < cap ? nng_msg_len(msg) : cap;
    memcpy(buf, nng_msg_body(msg), n);
    int64_t got = (int64_t)nng_msg_len(msg);
    nng_msg_free(msg);
    return got;
}

typedef struct {
    const char *want; /* the CPU list every thread must have */
    uint32_t threads; /* threads looked at */
} threads_on;

static bool thread_on(const char *tid, const char *status, void *arg)
{
    threads_on *on = arg;
    const char *field = status != NULL ? strstr(status, "Cpus_allowed_list:") : NULL;
    char list[64] = "";
    if (status == NULL) {
        return true; /* it ended meanwhile */
    }
    if (field != NULL) {
        sscanf(field, "Cpus_allowed_list: %63s", list);
    }
    on->threads++;
    cr_assert_str_eq(list, on->want, "thread %s runs on CPUs %s, want %s", tid, list, on->want);
    return true;
}

uint32_t hx_assert_threads_on(pid_t pid, const char *want)
{
    threads_on on = {.want = want};
    cr_assert(threads_visit(pid, "status", thread_on, &on), "process %d is gone", (int)pid);
    return on.threads;
}

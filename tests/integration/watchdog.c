/*
 * watchdog.c — keeps what a test prints, and says where a hung test hangs
 * (see hx_watchdog_arm in harness.h).
 *
 * Under meson the tests run with `--tap=-`, and criterion then sends each
 * test process's stdout and stderr to /dev/null: every line the harness
 * prints (a unit's log on a failed start, the load figures) was lost.  So
 * a test process whose stderr is /dev/null sends both to its own file,
 * DIAG/<suite>::<test>.<pid>.log, DIAG being $TIXGRID_IT_DIAG_DIR or the
 * `diag` folder beside the test binary; scripts/test prints the end of the
 * files of the tests that failed.
 *
 * Criterion kills a test at its timeout and reports only "timed out".  A
 * hang that shows up once in a hundred loaded runs cannot be found again
 * from that, so shortly before the timeout a thread of the test process
 * prints the stacks of this process and of each of its children, and the
 * end of each child's log — the file its stdout goes to.  The stacks come
 * from eu-stack (elfutils); without it the logs are still printed.  The
 * thread only reads /proc and runs eu-stack; it changes nothing in the test.
 */
#include "harness.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define WATCHDOG_MARGIN_MAX_S     10.0
#define WATCHDOG_STACK_TIMEOUT_MS 10000
#define WATCHDOG_LOG_TAIL_BYTES   3000

/* The test's timeout in seconds (its own, else its suite's); 0 for none.
 * Criterion's extra data sits unaligned in its section: copied, not read in
 * place (UBSan). */
static double test_timeout_s(void)
{
    struct criterion_test_extra_data data;
    double t = 0;
    if (criterion_current_test != NULL && criterion_current_test->data != NULL) {
        memcpy(&data, criterion_current_test->data, sizeof(data));
        t = data.timeout;
    }
    if (t <= 0 && criterion_current_suite != NULL && criterion_current_suite->data != NULL) {
        memcpy(&data, criterion_current_suite->data, sizeof(data));
        t = data.timeout;
    }
    return t > 0 ? t : 0;
}

/* Runs `eu-stack -p pid` with its output on stderr, waiting a bounded time. */
static void print_stacks(pid_t pid)
{
    char pid_text[16];
    snprintf(pid_text, sizeof(pid_text), "%d", (int)pid);
    char *const argv[] = {"eu-stack", "-p", pid_text, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    pid_t child;
    int rv = posix_spawnp(&child, "eu-stack", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rv != 0) {
        fprintf(stderr, "watchdog: no eu-stack (install elfutils for the stacks)\n");
        return;
    }
    int64_t deadline = hx_now_ms() + WATCHDOG_STACK_TIMEOUT_MS;
    while (waitpid(child, NULL, WNOHANG) == 0) {
        if (hx_now_ms() > deadline) {
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            fprintf(stderr, "watchdog: eu-stack -p %d took too long\n", (int)pid);
            return;
        }
        hx_sleep_ms(20);
    }
}

/* The parent pid in /proc/PID/stat (the field after the parenthesised
 * command, which may itself hold spaces or parentheses); -1 if unreadable. */
static pid_t parent_of(const char *pid_text)
{
    char path[PATH_MAX], buf[512];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid_text);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    int ppid = -1;
    if (close_paren == NULL || sscanf(close_paren + 1, " %*c %d", &ppid) != 1) {
        return -1;
    }
    return (pid_t)ppid;
}

/* The command line of pid, its NULs turned into spaces. */
static void command_of(pid_t pid, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    n = n < 0 ? 0 : n;
    for (ssize_t i = 0; i < n; i++) {
        out[i] = out[i] == '\0' ? ' ' : out[i];
    }
    out[n] = '\0';
}

/* The end of the regular file pid's stdout goes to, if it goes to one. */
static void print_log_tail(pid_t pid)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/%d/fd/1", (int)pid);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    struct stat st;
    if (n > 0 && (path[n] = '\0', stat(path, &st) == 0) && S_ISREG(st.st_mode)) {
        hx_dump_file(path, WATCHDOG_LOG_TAIL_BYTES);
    }
}

static void report_children(void)
{
    DIR *proc = opendir("/proc");
    if (proc == NULL) {
        return;
    }
    pid_t self = getpid();
    struct dirent *de;
    while ((de = readdir(proc)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || parent_of(de->d_name) != self) {
            continue;
        }
        pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
        char command[512];
        command_of(pid, command, sizeof(command));
        fprintf(stderr, "watchdog: child %d: %s\n", (int)pid, command);
        print_stacks(pid);
        print_log_tail(pid);
    }
    closedir(proc);
}

static void *watchdog_main(void *arg)
{
    double timeout_s = *(double *)arg;
    double margin_s = timeout_s / 4 < WATCHDOG_MARGIN_MAX_S ? timeout_s / 4 : WATCHDOG_MARGIN_MAX_S;
    int64_t wait_ms = (int64_t)((timeout_s - margin_s) * 1000);
    while (wait_ms > 0) {
        int step = wait_ms > 1000 ? 1000 : (int)wait_ms;
        hx_sleep_ms(step);
        wait_ms -= step;
    }
    const char *name = criterion_current_test != NULL ? criterion_current_test->name : "?";
    fprintf(stderr,
            "watchdog: %s is still running %.0f s before its %.0f s timeout; "
            "the stacks of the test process and its children follow\n",
            name, margin_s, timeout_s);
    print_stacks(getpid());
    report_children();
    fprintf(stderr, "watchdog: end of report\n");
    return NULL;
}

/* True when fd is open on /dev/null. */
static bool is_dev_null(int fd)
{
    struct stat st, null_st;
    return fstat(fd, &st) == 0 && stat("/dev/null", &null_st) == 0 && S_ISCHR(st.st_mode) &&
           st.st_rdev == null_st.st_rdev;
}

/* The folder for the tests' own output files (see the top of this file). */
static void diag_dir(char *out, size_t size)
{
    const char *dir = getenv("TIXGRID_IT_DIAG_DIR");
    if (dir != NULL && dir[0] != '\0') {
        snprintf(out, size, "%s", dir);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    snprintf(out, size, "%s/diag", n > 0 ? exe : "/tmp");
}

/* Sends stdout and stderr to the test's own file when criterion sent them
 * to /dev/null (true then); stdout is line-buffered so that a test killed
 * at its timeout loses none of it. */
static bool keep_output(void)
{
    if (!is_dev_null(2) || criterion_current_test == NULL) {
        return false;
    }
    char dir[PATH_MAX + 16], path[PATH_MAX + 260];
    diag_dir(dir, sizeof(dir));
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/%.40s::%.180s.%d.log", dir, criterion_current_test->category,
             criterion_current_test->name, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return false;
    }
    fflush(stdout);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    setvbuf(stdout, NULL, _IOLBF, 0);
    return true;
}

static double armed_timeout_s;
static int64_t armed_at_ms;

/* The last line of every test's file: a test reported as timed out whose
 * file ends with it had finished, and the runner missed its end. */
static void note_exit(void)
{
    fprintf(stderr, "harness: the test process exits %lld ms after its first child started\n",
            (long long)(hx_now_ms() - armed_at_ms));
}

static void arm_once(void)
{
    armed_at_ms = hx_now_ms();
    if (keep_output()) {
        atexit(note_exit);
    }
    armed_timeout_s = test_timeout_s();
    if (armed_timeout_s <= 0) {
        return;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, watchdog_main, &armed_timeout_s) == 0) {
        pthread_detach(t);
    }
}

void hx_watchdog_arm(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, arm_once);
}

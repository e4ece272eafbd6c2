/*
 * tap.h — a minimal TAP test runner for tests that cannot use Criterion.
 *
 * Criterion's runner maps a shared area at a fixed address that
 * ThreadSanitizer refuses, so tests that must also run under TSan (the
 * engine's concurrency tests) use this instead: each case runs in a forked
 * child, so a crash, an abort or a sanitizer report fails that case only,
 * and the runner prints TAP ("1..N", "ok N - name", "not ok N - name") that
 * meson and scripts/test count like Criterion's.
 *
 * Usage:
 *   static void races_are_won_once(void) { TAP_CHECK(x == 1, "x is %d", x); }
 *   int main(void) {
 *       static const tap_case cases[] = {TAP_CASE(races_are_won_once)};
 *       return tap_run(cases, sizeof(cases) / sizeof(cases[0]));
 *   }
 */
#ifndef TIXGRID_TESTS_TAP_H
#define TIXGRID_TESTS_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} tap_case;

#define TAP_CASE(fn) {#fn, fn}

/* Fails the current case (exits the child) when cond is false. */
#define TAP_CHECK(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tap_fail_(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
        }                                                                                          \
    } while (0)

__attribute__((format(printf, 4, 5), noreturn, unused)) static void
tap_fail_(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("# %s:%d: check failed: %s: %s\n", file, line, expr, msg);
    fflush(stdout);
    _exit(1);
}

static int tap_run_one(const tap_case *c)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        printf("# fork failed\n");
        return 0;
    }
    if (pid == 0) {
        c->fn();
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFSIGNALED(status)) {
        printf("# %s killed by signal %d\n", c->name, WTERMSIG(status));
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

__attribute__((unused)) static int tap_run(const tap_case *cases, size_t count)
{
    printf("TAP version 13\n1..%zu\n", count);
    int failed = 0;
    for (size_t i = 0; i < count; i++) {
        int ok = tap_run_one(&cases[i]);
        printf("%s %zu - %s\n", ok ? "ok" : "not ok", i + 1, cases[i].name);
        fflush(stdout);
        failed += ok ? 0 : 1;
    }
    return failed == 0 ? 0 : 1;
}

#endif

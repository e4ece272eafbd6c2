/*
 * cli.c — the shared command-line contract (see cli.h).
 */
#include "tixgrid/cli.h"
#include "tixgrid/limits.h"
#include "tixgrid/log.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool tg_cli_standard(int argc, char **argv, const char *program, const char *usage,
                     int *exit_code)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            break;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            *exit_code = TG_EXIT_OK;
            return true;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("%s %s\n", program, TG_VERSION);
            *exit_code = TG_EXIT_OK;
            return true;
        }
    }
    return false;
}

int tg_cli_usage_error(const char *program, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s (see %s --help)\n", program, msg, program);
    return TG_EXIT_USAGE;
}

tg_err tg_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (text == NULL || text[0] < '0' || text[0] > '9') {
        return TG_EINVAL; /* rejects "", "-1", "+1" and leading spaces */
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return TG_EINVAL;
    }
    *out = v;
    return TG_OK;
}

/* A CPU number in [min, CPU_SETSIZE) at *p; *p moves past its digits. */
static bool cpu_number(const char **p, uint64_t min, uint64_t *out)
{
    char digits[8];
    size_t n = strspn(*p, "0123456789");
    if (n == 0 || n >= sizeof(digits)) {
        return false;
    }
    memcpy(digits, *p, n);
    digits[n] = '\0';
    *p += n;
    return tg_parse_u64(digits, min, CPU_SETSIZE - 1, out) == TG_OK;
}

/* One "N" or "N-M" of a CPU list; *text moves past it. */
static bool cpu_range(const char **text, cpu_set_t *out)
{
    uint64_t lo, hi;
    if (!cpu_number(text, 0, &lo)) {
        return false;
    }
    hi = lo;
    if (**text == '-') {
        ++*text;
        if (!cpu_number(text, lo, &hi)) {
            return false;
        }
    }
    for (uint64_t cpu = lo; cpu <= hi; cpu++) {
        CPU_SET((size_t)cpu, out);
    }
    return true;
}

tg_err tg_parse_cpus(const char *text, cpu_set_t *out)
{
    CPU_ZERO(out);
    const char *p = text;
    if (p == NULL || *p == '\0') {
        return TG_EINVAL;
    }
    for (;;) {
        if (!cpu_range(&p, out)) {
            return TG_EINVAL;
        }
        if (*p == '\0') {
            return TG_OK;
        }
        if (*p++ != ',') {
            return TG_EINVAL;
        }
    }
}

/* set as a CPU list ("0,2-3"), cut short with "..." if it does not fit. */
static void format_cpus(const cpu_set_t *set, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, set)) {
            continue;
        }
        int last = cpu;
        while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, set)) {
            last++;
        }
        int n = last > cpu
                    ? snprintf(buf + used, size - used, "%s%d-%d", used ? "," : "", cpu, last)
                    : snprintf(buf + used, size - used, "%s%d", used ? "," : "", cpu);
        if (n < 0 || (size_t)n >= size - used) {
            snprintf(buf + (size > 4 ? size - 4 : 0), size > 4 ? 4 : size, "...");
            return;
        }
        used += (size_t)n;
        cpu = last;
    }
}

int tg_cli_pin_cpus(const char *program, const char *text, const cpu_set_t *set)
{
    /* The kernel refuses a set with no CPU the process may use (EINVAL), and
     * quietly drops the ones it may not: offline, or outside its cpuset.
     * Those are worth a line, since the unit then shares CPUs unplanned. */
    cpu_set_t got;
    CPU_ZERO(&got);
    if (sched_setaffinity(0, sizeof(*set), set) != 0) {
        char allowed[128];
        sched_getaffinity(0, sizeof(got), &got);
        format_cpus(&got, allowed, sizeof(allowed));
        return tg_cli_usage_error(program,
                                  "CPUs %s: none of them is available here "
                                  "(available: %s)",
                                  text, allowed);
    }
    if (sched_getaffinity(0, sizeof(got), &got) == 0 && !CPU_EQUAL(&got, set)) {
        char have[128];
        format_cpus(&got, have, sizeof(have));
        tg_log_warn("asked to run on CPUs %s, runs on %s (the others are offline or outside "
                    "this process's cpuset)",
                    text, have);
    }
    return 0;
}

uint32_t tg_cpus_allowed(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
    return n > 0 ? (uint32_t)n : 1u;
}

const char *tg_env(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : fallback;
}

bool tg_name_valid(const char *name)
{
    size_t n = strnlen(name, TG_PU_NAME_BYTES);
    return n > 0 && n < TG_PU_NAME_BYTES &&
           strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

bool tg_url_valid(const char *url)
{
    if (url[0] < 'a' || url[0] > 'z') {
        return false;
    }
    size_t i = strspn(url, "abcdefghijklmnopqrstuvwxyz0123456789+");
    return strncmp(url + i, "://", 3) == 0 && url[i + 3] != '\0';
}

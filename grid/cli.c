/*
 * cli.c — the shared command-line contract (see cli.h).
 */
#include "tixgrid/cli.h"

#include <errno.h>
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

const char *tg_env(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : fallback;
}

/*
 * cli.h — what every tixgrid command line shares.
 *
 * Commands follow the usual Unix contract: --help prints usage on stdout and
 * exits 0; --version prints "<program> <version>" and exits 0; a usage error
 * prints one line on stderr saying what to do and exits TG_EXIT_USAGE.
 * Options come from long flags or TIXGRID_* environment variables.
 */
#ifndef TIXGRID_CLI_H
#define TIXGRID_CLI_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "tixgrid/err.h"

/* Exit codes (sysexits.h where one fits). */
enum {
    TG_EXIT_OK = 0,
    TG_EXIT_FAILURE = 1,     /* the command ran and failed */
    TG_EXIT_USAGE = 64,      /* bad flags or arguments (EX_USAGE) */
    TG_EXIT_UNAVAILABLE = 69 /* a service it needs is down (EX_UNAVAILABLE) */
};

/* A unit's (or manager's) name: 1..TG_PU_NAME_BYTES - 1 of A-Z a-z 0-9 . _ -. */
bool tg_name_valid(const char *name);

/* "scheme://address" as nng dials it: a lowercase scheme of a-z 0-9 +,
 * then something after "://". */
bool tg_url_valid(const char *url);

/* Handles --help and --version in argv; returns true (and sets *exit_code)
 * when the caller should exit now.  usage is printed for --help. */
bool tg_cli_standard(int argc, char **argv, const char *program, const char *usage,
                     int *exit_code);

/* Prints "program: message\n" on stderr and returns TG_EXIT_USAGE. */
int tg_cli_usage_error(const char *program, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a whole decimal number in [min, max]; TG_EINVAL otherwise. */
tg_err tg_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a CPU list as taskset -c and Cpus_allowed_list in /proc/PID/status
 * write it: "0", "0,2", "1-3,6".  Each number below CPU_SETSIZE, each range
 * ascending, no blanks; TG_EINVAL otherwise. */
tg_err tg_parse_cpus(const char *text, cpu_set_t *out);

/* Keeps the calling thread, and every thread started after, on the CPUs of
 * set (sched_setaffinity; text is the list as given, for messages).  Call
 * it before any other thread starts: nng, libuv and libpq start theirs
 * later and inherit it.  Returns 0, or TG_EXIT_USAGE after saying so when
 * no CPU of set is one this process may run on.  CPUs of set it may not
 * use (offline, another cpuset) are left out with a warning. */
int tg_cli_pin_cpus(const char *program, const char *text, const cpu_set_t *set);

/* How many CPUs this process may run on (its affinity, as nproc counts),
 * at least 1. */
uint32_t tg_cpus_allowed(void);

/* The value of a TIXGRID_* variable, or fallback when unset or empty. */
const char *tg_env(const char *name, const char *fallback);

#endif

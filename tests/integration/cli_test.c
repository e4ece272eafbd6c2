/*
 * cli_test.c — tixgrid-pu's command line, run as a real process.
 *
 * STYLE.md rule 14: --help and --version exit 0; bad flags exit 64 (usage)
 * and a failure to start exits 1, each with exactly one line on stderr that
 * says what is wrong.  Every run is bounded (RUN_TIMEOUT_MS).
 */
#include "harness.h"

#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define RUN_TIMEOUT_MS 10000
#define ARGS_MAX 16

static hx_unit unit;
static hx_run_result result; /* large: keep it off the stack */

static void make_unit(void)
{
    hx_unit_init(&unit, "cli");
}

TestSuite(cli, .init = make_unit, .fini = hx_fini_all, .timeout = 60);

/* Runs tixgrid-pu with the NULL-terminated flags. */
static hx_run_result *run(const char *flag, ...)
{
    char *argv[ARGS_MAX + 2];
    int n = 0;
    argv[n++] = (char *)hx_pu_bin();
    va_list ap;
    va_start(ap, flag);
    for (const char *f = flag; f != NULL && n <= ARGS_MAX; f = va_arg(ap, const char *)) {
        argv[n++] = (char *)f;
    }
    va_end(ap);
    argv[n] = NULL;
    hx_run(argv, RUN_TIMEOUT_MS, &result);
    cr_assert(!result.timed_out, "tixgrid-pu did not exit in %d ms", RUN_TIMEOUT_MS);
    return &result;
}

static void assert_exit(const hx_run_result *r, int code, const char *what)
{
    cr_assert(WIFEXITED(r->status), "%s: killed by a signal (status %#x)", what, r->status);
    cr_assert_eq(WEXITSTATUS(r->status), code, "%s: exit %d, want %d; stderr:\n%s", what,
                 WEXITSTATUS(r->status), code, r->err);
}

/* Exit `code` with one line on stderr containing `needle`, nothing on stdout. */
static void assert_one_line(const hx_run_result *r, int code, const char *needle,
                            const char *what)
{
    assert_exit(r, code, what);
    cr_assert_eq(hx_count_lines(r->err), 1u, "%s: %u lines on stderr, want 1:\n%s", what,
                 hx_count_lines(r->err), r->err);
    cr_assert(strstr(r->err, needle) != NULL, "%s: stderr does not mention '%s':\n%s", what,
              needle, r->err);
    cr_assert_str_eq(r->out, "", "%s: wrote to stdout", what);
}

/* Exit `code` and exactly one line at level error containing `needle` (the
 * unit may log what it did before it failed at level info). */
static void assert_one_error(const hx_run_result *r, int code, const char *needle,
                             const char *what)
{
    assert_exit(r, code, what);
    uint32_t errors = 0;
    for (const char *p = strstr(r->err, "\"level\":\"error\""); p != NULL;
         p = strstr(p + 1, "\"level\":\"error\"")) {
        errors++;
    }
    cr_assert_eq(errors, 1u, "%s: %u error lines, want 1:\n%s", what, errors, r->err);
    cr_assert(strstr(r->err, needle) != NULL, "%s: stderr does not mention '%s':\n%s", what,
              needle, r->err);
}

/* ---- Flags -------------------------------------------------------------- */

Test(cli, help_prints_usage_on_stdout_and_exits_0)
{
    hx_run_result *r = run("--help", NULL);
    assert_exit(r, 0, "--help");
    cr_assert(strncmp(r->out, "usage: tixgrid-pu", 17) == 0, "stdout:\n%s", r->out);
    cr_assert(strstr(r->out, "--listen") != NULL && strstr(r->out, "--unpersisted") != NULL);
    cr_assert_str_eq(r->err, "");
}

Test(cli, version_prints_the_version_and_exits_0)
{
    hx_run_result *r = run("--version", NULL);
    assert_exit(r, 0, "--version");
    cr_assert(strncmp(r->out, "tixgrid-pu ", 11) == 0, "stdout: %s", r->out);
    cr_assert_eq(hx_count_lines(r->out), 1u);
    cr_assert_str_eq(r->err, "");
}

Test(cli, no_flags_is_a_usage_error)
{
    assert_one_line(run(NULL), 64, "--name", "no flags");
    assert_one_line(run("--name", unit.name, NULL), 64, "--listen", "no --listen");
}

Test(cli, bad_contexts_are_usage_errors)
{
    const char *bad[] = {"0", "1025", "-1", "abc", "12x", "", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "--contexts '%s'", bad[i]);
        assert_one_line(run("--name", unit.name, "--listen", unit.rep_url, "--contexts", bad[i],
                            NULL),
                        64, "--contexts", what);
    }
}

Test(cli, other_bad_flags_are_usage_errors)
{
    assert_one_line(run("--name", unit.name, "--listen", unit.rep_url, "--bogus", NULL), 64,
                    "tixgrid-pu", "an unknown flag");
    assert_one_line(run("--name", unit.name, "--listen", NULL), 64, "tixgrid-pu",
                    "a flag without its value");
    assert_one_line(run("--name", unit.name, "--listen", unit.rep_url, "extra", NULL), 64,
                    "extra", "an argument that is not a flag");
    assert_one_line(run("--name", unit.name, "--listen", unit.rep_url, "--sweep-interval-ms",
                        "0", NULL),
                    64, "--sweep-interval-ms", "--sweep-interval-ms 0");
    assert_one_line(run("--name", unit.name, "--listen", unit.rep_url, "--log-level", "loud",
                        NULL),
                    64, "--log-level", "--log-level loud");
}

Test(cli, bad_contexts_from_the_environment_are_usage_errors)
{
    setenv("TIXGRID_PU_CONTEXTS", "0", 1);
    hx_run_result *r = run("--name", unit.name, "--listen", unit.rep_url, NULL);
    unsetenv("TIXGRID_PU_CONTEXTS");
    assert_one_line(r, 64, "TIXGRID_PU_CONTEXTS", "TIXGRID_PU_CONTEXTS=0");
}

/* ---- CPUs --------------------------------------------------------------- */

Test(cli, bad_cpu_lists_are_usage_errors)
{
    const char *bad[] = {"",
                         "abc",
                         "1-0",
                         "0,",
                         ",0",
                         "0--1",
                         "0 1",
                         "-1",
                         "1024",
                         "0-1024",
                         "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "--cpus '%s'", bad[i]);
        assert_one_line(run("--name", unit.name, "--listen", unit.rep_url, "--cpus", bad[i], NULL),
                        64, "--cpus", what);
    }
    setenv("TIXGRID_PU_CPUS", "x", 1);
    hx_run_result *r = run("--name", unit.name, "--listen", unit.rep_url, NULL);
    unsetenv("TIXGRID_PU_CPUS");
    assert_one_line(r, 64, "TIXGRID_PU_CPUS", "TIXGRID_PU_CPUS=x");
}

Test(cli, cpus_that_do_not_exist_are_a_usage_error)
{
    /* 1023 is a valid number, but no CI or laptop machine has 1,024 CPUs. */
    assert_one_line(run("--name", unit.name, "--listen", unit.rep_url, "--cpus", "1023", NULL), 64,
                    "none of them is available", "--cpus 1023");
}

Test(cli, cpus_keep_every_thread_of_the_unit_on_those_cpus)
{
    hx_add_flag(&unit, "--cpus");
    hx_add_flag(&unit, "0");
    hx_start(&unit);
    /* nng's threads (workers, poller, timers) start after the flag is
     * applied: they must all have inherited it. */
    uint32_t threads = hx_assert_threads_on(unit.pid, "0");
    cr_assert_geq(threads, 5u, "only %u threads: nng's were not counted", threads);
}

/* ---- Start-up failures ---------------------------------------------------- */

static const char *layout_with(const char *file, const char *text)
{
    const char *path = hx_write_file(&unit, file, text);
    static char copy[PATH_MAX];
    snprintf(copy, sizeof(copy), "%s", path);
    return copy;
}

#define GOOD_SECTIONS                                                                              \
    "\"sections\": [{\"name\": \"Floor\", \"price\": 9900, \"currency\": \"EUR\", "              \
    "\"rows\": [{\"name\": \"A\", \"seats\": 10}]}]"

static void assert_layout_refused(const char *file, const char *text, const char *what)
{
    const char *path = layout_with(file, text);
    hx_run_result *r = run("--name", unit.name, "--listen", unit.rep_url, "--partition", path,
                           NULL);
    assert_one_line(r, 1, file, what);
}

Test(cli, a_layout_with_an_unknown_key_is_refused_in_one_line)
{
    assert_layout_refused("unknown_key.json",
                          "{\"partition_id\": 1, \"event_id\": 1, \"hold_tll_ms\": 5, "
                          GOOD_SECTIONS "}",
                          "unknown key");
}

Test(cli, a_layout_with_negative_seats_is_refused_in_one_line)
{
    assert_layout_refused("negative_seats.json",
                          "{\"partition_id\": 1, \"event_id\": 1, \"sections\": [{\"name\": "
                          "\"Floor\", \"price\": 9900, \"currency\": \"EUR\", \"rows\": "
                          "[{\"name\": \"A\", \"seats\": -4}]}]}",
                          "negative seats");
}

Test(cli, other_bad_layouts_are_refused_in_one_line)
{
    assert_layout_refused("not_json.json", "{\"partition_id\": 1,", "not JSON");
    assert_layout_refused("no_sections.json", "{\"partition_id\": 1, \"event_id\": 1}",
                          "no sections");
    assert_layout_refused("big_partition_id.json",
                          "{\"partition_id\": 4194304, \"event_id\": 1, " GOOD_SECTIONS "}",
                          "partition id past 21 bits");
    assert_layout_refused("bad_currency.json",
                          "{\"partition_id\": 1, \"event_id\": 1, \"sections\": [{\"name\": "
                          "\"Floor\", \"price\": 9900, \"currency\": \"EURO\", \"rows\": "
                          "[{\"name\": \"A\", \"seats\": 10}]}]}",
                          "a four-letter currency");
    hx_run_result *r = run("--name", unit.name, "--listen", unit.rep_url, "--partition",
                           "/nonexistent/layout.json", NULL);
    assert_one_line(r, 1, "/nonexistent/layout.json", "a layout file that does not exist");
}

Test(cli, a_bad_name_or_address_fails_in_one_line)
{
    assert_one_line(run("--name", "bad/name", "--listen", unit.rep_url, NULL), 1, "name",
                    "a name with '/'");
    assert_one_line(run("--name", unit.name, "--listen", "nonsense://here", NULL), 1,
                    "nonsense://here", "an address nng cannot listen on");
}

Test(cli, a_segment_that_differs_from_its_layout_file_is_refused)
{
    hx_layout l = {.partition_id = 4, .event_id = 40, .sections = 1, .rows = 2, .seats = 10,
                   .log_records = 1024};
    hx_write_layout(&unit, &l);
    hx_start(&unit);
    hx_stop_ok(&unit);
    l.event_id = 41; /* the same partition, another event */
    hx_write_layout(&unit, &l);
    hx_run_result *r = run("--name", unit.name, "--listen", unit.rep_url, "--partition",
                           unit.layout_path, NULL);
    assert_one_error(r, 1, "differs from its layout", "a changed layout");
}

/*
 * grid_cli_test.c — the command lines of tixgrid-manager, tixgridctl and
 * tixgrid-pu's grid flags, run as real processes (no database needed).
 *
 * STYLE.md rule 14: --help and --version exit 0; bad flags exit 64 with one
 * line on stderr that says what is wrong and nothing on stdout; tixgridctl
 * exits 69 when no manager answers.
 */
#include "harness.h"

#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define RUN_TIMEOUT_MS 10000
#define ARGS_MAX       24

static hx_run_result result;

TestSuite(grid_cli, .fini = hx_fini_all, .timeout = 60);

static const char *bin(const char *variable)
{
    const char *path = getenv(variable);
    cr_assert(path != NULL && path[0] != '\0', "%s is not set (run through meson test)", variable);
    return path;
}

/* Runs the binary in $variable with the NULL-terminated arguments. */
static hx_run_result *run(const char *variable, ...)
{
    char *argv[ARGS_MAX + 2];
    int n = 0;
    argv[n++] = (char *)bin(variable);
    va_list ap;
    va_start(ap, variable);
    for (const char *a = va_arg(ap, const char *); a != NULL && n <= ARGS_MAX;
         a = va_arg(ap, const char *)) {
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    hx_run(argv, RUN_TIMEOUT_MS, &result);
    cr_assert(!result.timed_out, "%s did not exit in %d ms", argv[0], RUN_TIMEOUT_MS);
    return &result;
}

/* Exit `code` with one line on stderr containing `needle`, nothing on stdout. */
static void one_line(const hx_run_result *r, int code, const char *needle, const char *what)
{
    cr_assert(WIFEXITED(r->status), "%s: killed by a signal (status %#x)", what, r->status);
    cr_assert_eq(WEXITSTATUS(r->status), code, "%s: exit %d, want %d; stderr:\n%s", what,
                 WEXITSTATUS(r->status), code, r->err);
    cr_assert_eq(hx_count_lines(r->err), 1u, "%s: %u lines on stderr, want 1:\n%s", what,
                 hx_count_lines(r->err), r->err);
    cr_assert(strstr(r->err, needle) != NULL, "%s: stderr does not mention '%s':\n%s", what, needle,
              r->err);
    cr_assert_str_eq(r->out, "", "%s: wrote to stdout", what);
}

#define MGR      "TIXGRID_MANAGER_BIN"
#define CTL      "TIXGRIDCTL_BIN"
#define PU       "TIXGRID_PU_BIN"
#define REQUIRED "--listen", "ipc:///tmp/x.rep", "--pub", "ipc:///tmp/x.pub", "--db", "dbname=x"

Test(grid_cli, help_and_version_exit_0)
{
    static const char *const binaries[] = {MGR, CTL};
    for (int i = 0; i < 2; i++) {
        hx_run_result *r = run(binaries[i], "--help", NULL);
        cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
        cr_assert(strstr(r->out, "usage:") != NULL && strstr(r->out, "Exit status") != NULL, "%s",
                  r->out);
        r = run(binaries[i], "--version", NULL);
        cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
        cr_assert(strstr(r->out, TG_VERSION) != NULL, "%s", r->out);
    }
}

Test(grid_cli, the_manager_refuses_bad_flags_with_exit_64_and_one_line)
{
    one_line(run(MGR, NULL), 64, "--listen, --pub and --db are required", "no flags");
    one_line(run(MGR, "--listen", "ipc:///tmp/x.rep", "--db", "dbname=x", NULL), 64, "are required",
             "no --pub");
    one_line(run(MGR, REQUIRED, "--heartbeat-interval-ms", "5", NULL), 64,
             "--heartbeat-interval-ms must be", "interval too short");
    one_line(run(MGR, REQUIRED, "--heartbeat-interval-ms", "abc", NULL), 64,
             "--heartbeat-interval-ms must be", "interval not a number");
    one_line(run(MGR, REQUIRED, "--failure-timeout-ms", "150", NULL), 64,
             "at least twice --heartbeat-interval-ms", "timeout below two intervals");
    one_line(run(MGR, REQUIRED, "--failure-timeout-ms", "999999999", NULL), 64,
             "--failure-timeout-ms must be", "timeout too long");
    one_line(run(MGR, REQUIRED, "--standby-poll-ms", "0", NULL), 64, "--standby-poll-ms", "poll 0");
    one_line(run(MGR, REQUIRED, "--name", "bad name", NULL), 64, "--name", "bad name");
    one_line(
        run(MGR, "--listen", "notascheme", "--pub", "ipc:///tmp/x.pub", "--db", "dbname=x", NULL),
        64, "--listen and --pub are nng addresses", "listen without a scheme");
    one_line(run(MGR, "--listen", "ipc:///tmp/x.rep", "--pub", "ipc://", "--db", "dbname=x", NULL),
             64, "--listen and --pub are nng addresses", "pub without an address");
    one_line(run(MGR, REQUIRED, "--log-level", "loud", NULL), 64, "--log-level", "level");
    one_line(run(MGR, REQUIRED, "--bogus", NULL), 64, "unknown option", "unknown flag");
    one_line(run(MGR, REQUIRED, "extra", NULL), 64, "unexpected argument 'extra'", "extra");
}

Test(grid_cli, tixgridctl_refuses_bad_use_with_exit_64_and_one_line)
{
    const char *m = "ipc:///tmp/tixgrid-grid-cli-nobody.rep";
    one_line(run(CTL, "--manager", m, NULL), 64, "a command is required", "no command");
    one_line(run(CTL, "--manager", m, "stats", NULL), 64, "unknown command 'stats'", "unknown");
    one_line(run(CTL, "--manager", m, "status", "x", NULL), 64, "status takes no arguments",
             "status x");
    one_line(run(CTL, "--manager", m, "remove-pu", NULL), 64, "remove-pu takes one unit name",
             "remove-pu alone");
    one_line(run(CTL, "--manager", m, "remove-pu", "a b", NULL), 64, "remove-pu takes a unit name",
             "a name with a space");
    one_line(run(CTL, "--manager", m, "--json", "remove-pu", "a", NULL), 64,
             "--json goes with status", "json remove");
    one_line(run(CTL, "--manager", m, "--timeout-ms", "0", "status", NULL), 64,
             "--timeout-ms must be", "timeout 0");
    one_line(run(CTL, "status", NULL), 64, "--manager (or TIXGRID_MANAGER) is required",
             "no manager");
    one_line(run(CTL, "--manager", "nonsense", "status", NULL), 64, "cannot dial the manager",
             "bad address");
    one_line(run(CTL, "--manager", m, "--bogus", "status", NULL), 64, "unknown option", "flag");
}

Test(grid_cli, tixgridctl_exits_69_without_a_manager)
{
    const char *m = "ipc:///tmp/tixgrid-grid-cli-nobody.rep";
    one_line(run(CTL, "--manager", m, "--timeout-ms", "200", "status", NULL), 69,
             "no manager answered", "nobody listens");
    one_line(run(CTL, "--manager", m, "--timeout-ms", "200", "rebalance", NULL), 69,
             "no manager answered", "rebalance, nobody listens");
}

Test(grid_cli, tixgridctl_checks_the_moving_commands_arguments)
{
    const char *m = "ipc:///tmp/tixgrid-grid-cli-nobody.rep";
    one_line(run(CTL, "--manager", m, "move", NULL), 64, "usage: tixgridctl move", "move alone");
    one_line(run(CTL, "--manager", m, "move", "3", NULL), 64, "usage: tixgridctl move",
             "move without a unit");
    one_line(run(CTL, "--manager", m, "move", "x", "pu2", NULL), 64,
             "move: PARTITION must be a whole number", "move x");
    one_line(run(CTL, "--manager", m, "move", "3", "pu2", "--to", "pu3", NULL), 64,
             "usage: tixgridctl move", "two targets");
    one_line(run(CTL, "--manager", m, "--to", "pu2", "rebalance", NULL), 64, "--to goes with move",
             "--to elsewhere");
    one_line(run(CTL, "--manager", m, "rebalance", "now", NULL), 64, "rebalance takes no arguments",
             "rebalance now");
    one_line(run(CTL, "--manager", m, "add-pu", NULL), 64, "add-pu takes one unit name",
             "add-pu alone");
    one_line(run(CTL, "--manager", m, "--wait-ms", "-1", "rebalance", NULL), 64,
             "--wait-ms must be", "bad wait");
}

Test(grid_cli, the_units_grid_flags_are_checked)
{
    const char *base[] = {"--name", "cli-grid", "--listen", "ipc:///tmp/tixgrid-grid-cli.rep"};
    one_line(run(PU, base[0], base[1], base[2], base[3], "--zone", "a", NULL), 64,
             "--zone needs --manager", "zone alone");
    one_line(run(PU, base[0], base[1], base[2], base[3], "--manager", "ipc:///m", "--zone",
                 "bad zone", NULL),
             64, "--zone must be", "bad zone");
    one_line(run(PU, base[0], base[1], base[2], base[3], "--manager", "ipc:///m,,ipc:///n", NULL),
             64, "--manager takes 1 to 4", "empty address");
    one_line(run(PU, base[0], base[1], base[2], base[3], "--manager",
                 "ipc:///a,ipc:///b,ipc:///c,ipc:///d,ipc:///e", NULL),
             64, "--manager takes 1 to 4", "five addresses");
}

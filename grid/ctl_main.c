/*
 * ctl_main.c — tixgridctl, the grid's admin command: its command line.
 * What it asks and prints is in ctl.c.
 */
#include "ctl.h"

#include "tixgrid/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define PROGRAM "tixgridctl"

static const char usage[] =
    "usage: tixgridctl [--manager URL[,URL...]] [--timeout-ms N] COMMAND [ARGS]\n"
    "\n"
    "The grid's admin command: asks the grid manager (the active one of the\n"
    "addresses given; standbys do not listen).\n"
    "\n"
    "Commands:\n"
    "  status [--json]     units (zone, state, last heartbeat) and partitions\n"
    "                      (primary, backups, epoch, state, persistence lag);\n"
    "                      --json prints one JSON object instead of tables\n"
    "  move PARTITION [--to] PU\n"
    "                      hand the partition's primary to the live unit PU: it\n"
    "                      is filled as a backup while sales go on, then made\n"
    "                      the primary (the old one is fenced)\n"
    "  rebalance           move primaries until every live unit has as many as\n"
    "                      the others, give or take one\n"
    "  add-pu NAME         take a unit that registered (tixgrid-pu --manager)\n"
    "                      into the balance: rebalance onto it (ends its drain)\n"
    "  remove-pu NAME      drain the unit: its primaries move to other units and\n"
    "                      its backups are placed elsewhere, then it is told to\n"
    "                      stop (a dead unit that holds nothing is forgotten)\n"
    "\n"
    "move, rebalance, add-pu and remove-pu wait for the moves to finish.\n"
    "\n"
    "Options (before or after the command):\n"
    "  --manager URL[,...] the manager's REP address(es)    (TIXGRID_MANAGER)\n"
    "  --timeout-ms N      wait this long for each answer (default 2000)\n"
    "  --wait-ms N         wait this long for moves to finish (default 60000;\n"
    "                      0: start them and return)\n"
    "  --json              status as JSON\n"
    "  --help, --version\n"
    "\n"
    "Exit status: 0 done, 1 the manager refused (one line says why), 64 bad\n"
    "flags or arguments, 69 no manager answered, 75 the moves were started\n"
    "and are still under way after --wait-ms (they go on).\n";

typedef struct {
    ctl_options o;
    const char *to; /* move --to */
} ctl_args;

/* A whole number option's value, or a usage error. */
static int number_option(const char *flag, const char *text, uint64_t lo, uint64_t hi,
                         uint32_t *out)
{
    uint64_t v;
    if (tg_parse_u64(text, lo, hi, &v) != TG_OK) {
        return tg_cli_usage_error(PROGRAM, "%s must be a whole number from %llu to %llu", flag,
                                  (unsigned long long)lo, (unsigned long long)hi);
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse(int argc, char **argv, ctl_args *a)
{
    static const struct option longs[] = {
        {"manager", required_argument, NULL, 'm'}, {"timeout-ms", required_argument, NULL, 't'},
        {"wait-ms", required_argument, NULL, 'w'}, {"to", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},          {NULL, 0, NULL, 0},
    };
    *a = (ctl_args){.o = {.manager_urls = tg_env("TIXGRID_MANAGER", NULL),
                          .timeout_ms = CTL_TIMEOUT_MS_DEFAULT,
                          .wait_ms = CTL_WAIT_MS_DEFAULT}};
    opterr = 0;
    int c, rc = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == 'm') {
            a->o.manager_urls = optarg;
        } else if (c == 'j') {
            a->o.json = true;
        } else if (c == 'o') {
            a->to = optarg;
        } else if (c == 't') {
            rc = number_option("--timeout-ms", optarg, 1, 600000, &a->o.timeout_ms);
        } else if (c == 'w') {
            rc = number_option("--wait-ms", optarg, 0, 3600000, &a->o.wait_ms);
        } else {
            rc = tg_cli_usage_error(PROGRAM, "unknown option or missing value");
        }
    }
    if (rc == 0 && optind >= argc) {
        rc = tg_cli_usage_error(PROGRAM, "a command is required: status, move, rebalance, "
                                         "add-pu or remove-pu");
    }
    return rc;
}

/* move PARTITION PU, or move PARTITION --to PU. */
static int run_move(const ctl_args *a, char **args, int n)
{
    uint32_t partition_id = 0;
    const char *to = a->to != NULL ? a->to : (n == 2 ? args[1] : NULL);
    if (n < 1 || n != (a->to != NULL ? 1 : 2) || to == NULL) {
        return tg_cli_usage_error(PROGRAM, "usage: tixgridctl move PARTITION [--to] PU");
    }
    int rc = number_option("move: PARTITION", args[0], 0, TG_PARTITION_ID_MAX, &partition_id);
    return rc != 0 ? rc : ctl_move(&a->o, partition_id, to);
}

/* The command and its arguments; an exit code. */
static int run(const ctl_args *a, const char *command, char **args, int n)
{
    bool named = strcmp(command, "remove-pu") == 0 || strcmp(command, "add-pu") == 0;
    if (strcmp(command, "move") == 0) {
        return run_move(a, args, n);
    }
    if (a->to != NULL) {
        return tg_cli_usage_error(PROGRAM, "--to goes with move");
    }
    if (named && n != 1) {
        return tg_cli_usage_error(PROGRAM, "%s takes one unit name", command);
    }
    if (named) {
        return command[0] == 'r' ? ctl_remove_pu(&a->o, args[0]) : ctl_add_pu(&a->o, args[0]);
    }
    bool status = strcmp(command, "status") == 0;
    if (!status && strcmp(command, "rebalance") != 0) {
        return tg_cli_usage_error(PROGRAM, "unknown command '%s'", command);
    }
    if (n != 0) {
        return tg_cli_usage_error(PROGRAM, "%s takes no arguments", command);
    }
    return status ? ctl_status(&a->o) : ctl_rebalance(&a->o);
}

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, PROGRAM, usage, &code)) {
        return code;
    }
    ctl_args a;
    code = parse(argc, argv, &a);
    if (code != 0) {
        return code;
    }
    const char *command = argv[optind];
    if (a.o.json && strcmp(command, "status") != 0) {
        return tg_cli_usage_error(PROGRAM, "--json goes with status");
    }
    if (a.o.manager_urls == NULL || a.o.manager_urls[0] == '\0') {
        return tg_cli_usage_error(PROGRAM, "--manager (or TIXGRID_MANAGER) is required");
    }
    return run(&a, command, argv + optind + 1, argc - optind - 1);
}

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
    "  remove-pu NAME      remove a unit that holds no partition: a dead one is\n"
    "                      forgotten, a live one is told to stop\n"
    "  add-pu, move PARTITION PU, rebalance, and remove-pu of a unit that holds\n"
    "                      partitions (drain) need moving partitions between\n"
    "                      live units, which this build does not do yet: they\n"
    "                      exit 69\n"
    "\n"
    "Options (before or after the command):\n"
    "  --manager URL[,...] the manager's REP address(es)    (TIXGRID_MANAGER)\n"
    "  --timeout-ms N      wait this long for an answer (default 2000)\n"
    "  --json              status as JSON\n"
    "  --help, --version\n"
    "\n"
    "Exit status: 0 done, 1 the manager refused (one line says why), 64 bad\n"
    "flags or arguments, 69 no manager answered or the command is not\n"
    "available.\n";

static int parse(int argc, char **argv, ctl_options *o)
{
    static const struct option longs[] = {
        {"manager", required_argument, NULL, 'm'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    *o = (ctl_options){.manager_urls = tg_env("TIXGRID_MANAGER", NULL),
                       .timeout_ms = CTL_TIMEOUT_MS_DEFAULT};
    opterr = 0;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == 'm') {
            o->manager_urls = optarg;
        } else if (c == 'j') {
            o->json = true;
        } else if (c == 't' && tg_parse_u64(optarg, 1, 600000, &v) == TG_OK) {
            o->timeout_ms = (uint32_t)v;
        } else if (c == 't') {
            return tg_cli_usage_error(PROGRAM, "--timeout-ms must be a whole number from 1 to "
                                               "600000");
        } else {
            return tg_cli_usage_error(PROGRAM, "unknown option or missing value");
        }
    }
    if (optind >= argc) {
        return tg_cli_usage_error(PROGRAM, "a command is required: status, remove-pu, add-pu, "
                                           "move or rebalance");
    }
    return 0;
}

/* Commands that exist in the grid's design but need replication. */
static bool later(const char *command)
{
    return strcmp(command, "add-pu") == 0 || strcmp(command, "move") == 0 ||
           strcmp(command, "rebalance") == 0;
}

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, PROGRAM, usage, &code)) {
        return code;
    }
    ctl_options o;
    code = parse(argc, argv, &o);
    if (code != 0) {
        return code;
    }
    const char *command = argv[optind];
    int args = argc - optind - 1;
    if (later(command)) {
        fprintf(stderr,
                "%s: %s needs moving partitions between live units, which this build "
                "does not do yet\n",
                PROGRAM, command);
        return TG_EXIT_UNAVAILABLE;
    }
    bool status = strcmp(command, "status") == 0, remove = strcmp(command, "remove-pu") == 0;
    if (!status && !remove) {
        return tg_cli_usage_error(PROGRAM, "unknown command '%s'", command);
    }
    if ((status && args != 0) || (remove && args != 1)) {
        return tg_cli_usage_error(PROGRAM, status ? "status takes no arguments"
                                                  : "remove-pu takes one unit name");
    }
    if (o.json && !status) {
        return tg_cli_usage_error(PROGRAM, "--json goes with status");
    }
    if (o.manager_urls == NULL || o.manager_urls[0] == '\0') {
        return tg_cli_usage_error(PROGRAM, "--manager (or TIXGRID_MANAGER) is required");
    }
    return status ? ctl_status(&o) : ctl_remove_pu(&o, argv[optind + 1]);
}

/*
 * ctl_main.c — tixgridctl, the grid admin CLI: status, add-pu, remove-pu, move, rebalance.
 *
 * This command is not built yet: it answers --help and --version, and
 * refuses to run with a clear message rather than pretend to serve.
 */
#include "tixgrid/cli.h"

#include <stdio.h>

static const char usage[] =
    "usage: tixgridctl [--help] [--version]\n"
    "\n"
    "tixgridctl is the grid admin CLI: status, add-pu, remove-pu, move, rebalance.\n"
    "This build does not include it yet.\n";

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, "tixgridctl", usage, &code)) {
        return code;
    }
    fprintf(stderr, "tixgridctl: not available in this build (see tixgridctl --help)\n");
    return TG_EXIT_UNAVAILABLE;
}

/*
 * manager_main.c — tixgrid-manager, the grid manager: partition map, membership, failover.
 *
 * This command is not built yet: it answers --help and --version, and
 * refuses to run with a clear message rather than pretend to serve.
 */
#include "tixgrid/cli.h"

#include <stdio.h>

static const char usage[] =
    "usage: tixgrid-manager [--help] [--version]\n"
    "\n"
    "tixgrid-manager is the grid manager: partition map, membership, failover.\n"
    "This build does not include it yet.\n";

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, "tixgrid-manager", usage, &code)) {
        return code;
    }
    fprintf(stderr, "tixgrid-manager: not available in this build (see tixgrid-manager --help)\n");
    return TG_EXIT_UNAVAILABLE;
}

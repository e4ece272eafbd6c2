/*
 * main.c — tixgrid-persister, the write-behind persister: drains change logs to PostgreSQL, replays partitions.
 *
 * This command is not built yet: it answers --help and --version, and
 * refuses to run with a clear message rather than pretend to serve.
 */
#include "tixgrid/cli.h"

#include <stdio.h>

static const char usage[] =
    "usage: tixgrid-persister [--help] [--version]\n"
    "\n"
    "tixgrid-persister is the write-behind persister: drains change logs to PostgreSQL, replays partitions.\n"
    "This build does not include it yet.\n";

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, "tixgrid-persister", usage, &code)) {
        return code;
    }
    fprintf(stderr, "tixgrid-persister: not available in this build (see tixgrid-persister --help)\n");
    return TG_EXIT_UNAVAILABLE;
}

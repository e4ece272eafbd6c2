/*
 * main.c — tixgrid-gateway, the HTTP gateway for shoppers and organizers.
 *
 * This command is not built yet: it answers --help and --version, and
 * refuses to run with a clear message rather than pretend to serve.
 */
#include "tixgrid/cli.h"

#include <stdio.h>

static const char usage[] =
    "usage: tixgrid-gateway [--help] [--version]\n"
    "\n"
    "tixgrid-gateway is the HTTP gateway for shoppers and organizers.\n"
    "This build does not include it yet.\n";

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, "tixgrid-gateway", usage, &code)) {
        return code;
    }
    fprintf(stderr, "tixgrid-gateway: not available in this build (see tixgrid-gateway --help)\n");
    return TG_EXIT_UNAVAILABLE;
}

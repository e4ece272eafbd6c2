/*
 * main.c — tixgrid-pu, the processing unit.
 *
 * The partition store (partition.h) is built; serving it over nng is not yet
 * part of this build, so the command answers --help and --version only.
 */
#include "tixgrid/cli.h"

#include <stdio.h>

static const char usage[] =
    "usage: tixgrid-pu [--help] [--version]\n"
    "\n"
    "tixgrid-pu is a processing unit: it holds seat partitions in shared memory\n"
    "and sells seats with compare-and-swap.\n";

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, "tixgrid-pu", usage, &code)) {
        return code;
    }
    fprintf(stderr, "tixgrid-pu: serving is not available in this build (see tixgrid-pu --help)\n");
    return TG_EXIT_UNAVAILABLE;
}

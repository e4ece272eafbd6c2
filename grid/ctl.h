/*
 * ctl.h — tixgridctl's work, apart from its command line (grid-internal).
 *
 * ctl.c asks the manager (one REQ socket dialled to every address given:
 * only the active manager listens) and prints what it answers: the status
 * as a table for people or as JSON for programs, other commands as one
 * line.  Output goes to stdout; every failure is one line on stderr.
 */
#ifndef GRID_CTL_H
#define GRID_CTL_H

#include <stdbool.h>
#include <stdint.h>

#include "tixgrid/err.h"
#include "tixgrid/wire.h"

/* Default wait for the manager's answer, in ms. */
#define CTL_TIMEOUT_MS_DEFAULT 2000u

typedef struct {
    const char *manager_urls; /* "url[,url...]" */
    uint32_t timeout_ms;
    bool json;
} ctl_options;

/* Exit codes (tixgrid/cli.h): 0, 1 the manager refused or answered
 * nonsense, 64 an address that cannot be dialled, 69 no manager answered. */
int ctl_status(const ctl_options *o);
int ctl_remove_pu(const ctl_options *o, const char *name);

#endif

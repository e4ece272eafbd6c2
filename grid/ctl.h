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
/* Default wait for moves to finish (move, rebalance, add-pu, remove-pu),
 * and how often they are looked at meanwhile, in ms. */
#define CTL_WAIT_MS_DEFAULT 60000u
#define CTL_POLL_MS         100u
/* The moves were started but had not finished when --wait-ms ran out
 * (EX_TEMPFAIL): they go on. */
#define CTL_EXIT_STILL_MOVING 75

typedef struct {
    const char *manager_urls; /* "url[,url...]" */
    uint32_t timeout_ms;
    uint32_t wait_ms; /* 0: do not wait for moves */
    bool json;
} ctl_options;

/* Exit codes (tixgrid/cli.h): 0, 1 the manager refused or answered
 * nonsense, 64 an address that cannot be dialled, 69 no manager answered,
 * 75 moves still under way when --wait-ms ran out. */
int ctl_status(const ctl_options *o);
int ctl_remove_pu(const ctl_options *o, const char *name);
int ctl_move(const ctl_options *o, uint32_t partition_id, const char *to);
int ctl_rebalance(const ctl_options *o);
int ctl_add_pu(const ctl_options *o, const char *name);

#endif

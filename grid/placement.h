/*
 * placement.h — where a partition's primary and backups go (grid-internal).
 *
 * A pure function over the members of the grid and the current placement,
 * so that its rules can be tested without a manager, a database or a unit:
 *
 *   - a partition's primary and its backups are always distinct members;
 *   - a member that is not eligible (dead, leaving) keeps nothing new and
 *     loses its backups; a dead primary is replaced by the partition's first
 *     eligible backup (the caller lists backups most up to date first);
 *   - new work goes to the least loaded eligible member: primaries by their
 *     count of primaries, backups by their count of replicas of any kind;
 *   - where members carry zone labels, a backup goes to a zone that holds no
 *     replica of the partition yet, if there is one; a member without a
 *     label counts as a zone of its own (nothing says it shares a failure
 *     domain with anybody);
 *   - what is valid stays where it is: no partition moves only to even out
 *     loads (moving a primary moves its data; that is rebalance's job, with
 *     replication).
 *
 * Deterministic: ties go to the lowest member index, so a standby manager
 * computing the same input gets the same answer.  Cost: O(slots × members),
 * with at most TG_GRID_PARTITIONS_MAX × TG_GRID_MEMBERS_MAX = 262,144 steps
 * per backup wanted.
 *
 * Rejected: consistent hashing of partitions onto members (it places a
 * partition without regard to where its data already is, and balances only
 * in expectation); a global optimiser (minimal moves are what an operator
 * wants from a grid under load, not the last percent of balance).
 */
#ifndef GRID_PLACEMENT_H
#define GRID_PLACEMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "tixgrid/limits.h"

typedef struct {
    const char *zone; /* NULL or "": no label */
    bool eligible;    /* alive and not leaving: may hold partitions */
} grid_place_member;

typedef struct {
    int32_t primary; /* member index, or -1 (asserted) */
    uint32_t backup_count;
    int32_t backups[TG_GRID_BACKUPS_MAX]; /* member indices, most up to date first */
    /* The partition's data can be put on any member (a partition nobody
     * holds, to be loaded by replay): a primary may be chosen from scratch.
     * Otherwise only a backup can become its primary. */
    bool placeable;
    /* A member not to add as a backup, as its index + 1 (0: none): one its
     * primary could not replicate to (manager_place.c).  It may keep a
     * backup it already has. */
    int32_t shunned;
} grid_place_slot;

typedef struct {
    uint32_t promoted;        /* backups made primary */
    uint32_t placed;          /* primaries chosen from scratch */
    uint32_t backups_added;   /* new backups */
    uint32_t backups_dropped; /* backups removed: not eligible, repeated, or the primary */
} grid_place_stats;

/* Fixes every slot in place, in three passes over all slots (so that loads
 * are known before anything new is placed):
 *   1. drops backups that are out of range, not eligible, repeated or equal
 *      to the primary;
 *   2. gives a slot whose primary is -1 or not eligible its first backup as
 *      primary; with no backup, a placeable slot gets the eligible member
 *      with the fewest primaries (then the fewest replicas); otherwise the
 *      slot keeps its primary (the partition stays unavailable);
 *   3. adds backups until a slot has backups_wanted (at most
 *      TG_GRID_BACKUPS_MAX) or no eligible member but the slot's shunned
 *      one is left for it.
 * stats may be NULL.  members and slots may be empty. */
void grid_place(const grid_place_member *members, uint32_t member_count, grid_place_slot *slots,
                uint32_t slot_count, uint32_t backups_wanted, grid_place_stats *stats);

#endif

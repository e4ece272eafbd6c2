/*
 * manager_place.c — the manager's use of placement.h: backups for every
 * partition that is served (see manager.h, grid_state_place).
 *
 * Failover.  A partition whose primary is dead gets its most up-to-date
 * backup as primary — among the alive backups whose last heartbeat said
 * they are in sync (their primary waited for their acks before answering
 * anybody, so every acknowledged change is on them) at the map's epoch of
 * the partition — an "in sync" said at an older epoch may predate a time
 * the map left the backup out; the highest applied record wins, ties to
 * the lowest slot.
 * placement.h does the swap (a dead primary is replaced by its first
 * backup), then gives the partition a new backup in the same pass.  With no
 * such backup the partition stays primary_dead: promoting a copy that may
 * lack acknowledged changes would sell seats already sold.
 *
 * Only a partition with a live primary (or one just promoted) gets new
 * backups: the primary fills a new backup by state transfer (pu/repl.c),
 * so a backup placed for a dead primary would be an empty copy.  A backup
 * on a unit that died or is leaving is dropped at once: a primary waits
 * for every in-sync backup before it answers a client, so a dead backup
 * left in the map would stop the partition's sales.  A leaving primary is
 * left alone (remove-pu refuses a unit that holds partitions; moving them
 * is the drain's job, not failover's).  Every change of a partition's backups raises its
 * epoch, so that the primary (and every backup) sees the new set as newer.
 *
 * A backup its primary cannot replicate to (a cut link, while both still
 * reach the manager) reports itself in sync, since nobody told it
 * otherwise, and its primary waits for its acks before answering anybody:
 * the partition would stop selling for as long as the cut lasts.  The
 * manager sees it from the reports alone — the backup applies nothing
 * while its primary's head is ahead of it — and after the failure timeout
 * drops it (grid_state_drop_stalled): the primary answers again without
 * it, and the unit gets no copy of the partition for GRID_BACKUP_SHUN_MS
 * (a new backup goes elsewhere).  The rule needs the primary heard lately:
 * a primary that went silent (frozen, dead) leaves its backups behind too,
 * and those are exactly the ones failover needs.  A backup being filled
 * reports itself not in sync and is left alone: a state transfer applies
 * nothing until it ends.
 *
 * Rejected: placing backups as soon as a unit registers, inside the
 * request handler (the loop would place once per registration instead of
 * once per pass, and loads would be counted while the map is half built).
 */
#include "manager.h"
#include "placement.h"

#include "tixgrid/log.h"

#include <stdlib.h>
#include <string.h>

bool grid_member_eligible(const grid_member *u)
{
    return u->name[0] != '\0' && !u->removing && !u->draining && u->state == TG_MEMBER_ALIVE;
}

/* The backup of p to promote (a member slot), or -1. */
static int32_t promotion_candidate(const grid_map_state *m, const grid_partition *p)
{
    int32_t best = -1;
    uint64_t best_applied = 0;
    for (uint32_t b = 0; b < p->backup_count; b++) {
        int32_t i = p->backups[b];
        const grid_backup_report *r = grid_backup_report_find(p, i);
        if (!grid_member_eligible(&m->members[i]) || r == NULL || !r->in_sync ||
            r->epoch != p->epoch) {
            continue;
        }
        if (best < 0 || r->applied > best_applied) {
            best = i;
            best_applied = r->applied;
        }
    }
    return best;
}

/* Fills slot s from p; false when p is left alone this pass (unplaced, or
 * its primary is dead and no backup can take over). */
static bool slot_fill(const grid_map_state *m, const grid_partition *p, grid_place_slot *s)
{
    if (p->primary < 0) {
        return false;
    }
    *s = (grid_place_slot){
        .primary = p->primary, .backup_count = p->backup_count, .shunned = p->shunned};
    memcpy(s->backups, p->backups, sizeof(s->backups));
    const grid_member *primary = &m->members[p->primary];
    if (grid_member_eligible(primary)) {
        return true;
    }
    if (primary->state != TG_MEMBER_DEAD) {
        return false; /* leaving: see the top of this file */
    }
    int32_t best = promotion_candidate(m, p);
    if (best < 0) {
        return false;
    }
    s->backups[0] = best; /* placement promotes the first backup */
    s->backup_count = 1;
    for (uint32_t b = 0; b < p->backup_count; b++) {
        if (p->backups[b] != best) {
            s->backups[s->backup_count++] = p->backups[b];
        }
    }
    return true;
}

static bool slot_same(const grid_partition *p, const grid_place_slot *s)
{
    return p->primary == s->primary && p->backup_count == s->backup_count &&
           memcmp(p->backups, s->backups, s->backup_count * sizeof(s->backups[0])) == 0;
}

/* Takes what placement decided for p; true when p changed. */
static bool slot_apply(grid_map_state *m, grid_partition *p, const grid_place_slot *s)
{
    if (slot_same(p, s)) {
        return false;
    }
    if (p->primary != s->primary) {
        tg_log_warn("manager: partition %u: primary %s is dead: backup %s promoted",
                    p->partition_id, m->members[p->primary].name, m->members[s->primary].name);
    }
    p->primary = s->primary;
    p->report_ns = 0; /* the new primary's own report is still to come */
    p->backup_count = s->backup_count;
    memcpy(p->backups, s->backups, sizeof(p->backups));
    p->epoch = p->epoch < TG_WIRE_ID_MAX ? p->epoch + 1 : TG_WIRE_ID_MAX;
    p->dirty = true;
    m->changed = true;
    tg_log_info("manager: partition %u: primary %s, %u backups%s%s (epoch %llu)", p->partition_id,
                m->members[p->primary].name, p->backup_count, p->backup_count > 0 ? ", first " : "",
                p->backup_count > 0 ? m->members[p->backups[0]].name : "",
                (unsigned long long)p->epoch);
    return true;
}

/* True when the in-sync backup whose report is r has been behind p's
 * primary, without applying anything, for stall_ns; starts or stops its
 * clock. */
static bool backup_stalled(const grid_detector *d, const grid_partition *p, grid_backup_report *r,
                           int64_t stall_ns, int64_t now_ns)
{
    if (!r->in_sync || r->applied >= p->log_head) {
        r->behind = (grid_heard){0};
        return false;
    }
    if (r->behind.heard_ns == 0) {
        grid_detector_heard(d, &r->behind, now_ns);
        return false;
    }
    return grid_detector_silence_ns(d, &r->behind, now_ns) >= stall_ns;
}

/* Drops backup slot i of p (its report r) as grid_state_drop_stalled says;
 * its report goes too, so that it starts afresh if it is a backup again. */
static void backup_shun(grid_map_state *m, grid_partition *p, int32_t i, grid_backup_report *r,
                        int64_t now_ns)
{
    tg_log_warn("manager: partition %u: backup %s applied nothing while its primary %s was %llu "
                "records ahead: dropped (its primary stops waiting for it), no copy there for "
                "%u s",
                p->partition_id, m->members[i].name, m->members[p->primary].name,
                (unsigned long long)(p->log_head - r->applied), GRID_BACKUP_SHUN_MS / 1000);
    uint32_t k = 0;
    for (uint32_t b = 0; b < p->backup_count; b++) {
        if (p->backups[b] != i) {
            p->backups[k++] = p->backups[b];
        }
    }
    p->backup_count = k;
    *r = (grid_backup_report){0};
    p->shunned = i + 1;
    p->shunned_until_ns = now_ns + (int64_t)GRID_BACKUP_SHUN_MS * 1000000;
    p->epoch = p->epoch < TG_WIRE_ID_MAX ? p->epoch + 1 : TG_WIRE_ID_MAX;
    p->dirty = true;
    m->changed = true;
}

/* True when p's primary is alive, reported p, and was heard within
 * within_ns: its reports are current. */
static bool primary_heard(const grid_map_state *m, const grid_detector *d, const grid_partition *p,
                          int64_t within_ns, int64_t now_ns)
{
    if (p->primary < 0 || p->report_ns == 0) {
        return false;
    }
    const grid_member *u = &m->members[p->primary];
    return u->state == TG_MEMBER_ALIVE &&
           grid_detector_silence_ns(d, &u->heard, now_ns) < within_ns;
}

uint32_t grid_state_drop_stalled(grid_map_state *m, const grid_detector *d, uint32_t stall_ms,
                                 int64_t now_ns)
{
    int64_t stall_ns = (int64_t)stall_ms * 1000000;
    uint32_t dropped = 0;
    for (uint32_t k = 0; k < m->part_count; k++) {
        grid_partition *p = &m->parts[k];
        if (p->shunned != 0 && now_ns >= p->shunned_until_ns) {
            p->shunned = 0;
        }
        bool heard = primary_heard(m, d, p, stall_ns / 2, now_ns);
        for (uint32_t b = 0; heard && b < p->backup_count; b++) {
            grid_backup_report *r = (grid_backup_report *)grid_backup_report_find(p, p->backups[b]);
            if (r != NULL && backup_stalled(d, p, r, stall_ns, now_ns)) {
                backup_shun(m, p, p->backups[b], r, now_ns);
                dropped++;
                break; /* one a pass: the list just changed */
            }
        }
    }
    return dropped;
}

uint32_t grid_state_place(grid_map_state *m, uint32_t backups_wanted, grid_place_scratch *sc)
{
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        const grid_member *u = &m->members[i];
        sc->members[i] = (grid_place_member){.zone = u->zone, .eligible = grid_member_eligible(u)};
    }
    uint32_t n = 0;
    for (uint32_t k = 0; k < m->part_count; k++) {
        if (slot_fill(m, &m->parts[k], &sc->slots[n])) {
            sc->index[n++] = k;
        }
    }
    grid_place(sc->members, TG_GRID_MEMBERS_MAX, sc->slots, n, backups_wanted, NULL);
    uint32_t changed = 0;
    for (uint32_t j = 0; j < n; j++) {
        changed += slot_apply(m, &m->parts[sc->index[j]], &sc->slots[j]) ? 1 : 0;
    }
    return changed;
}

/*
 * manager_move.c — moving a partition's primary to another live unit while
 * it keeps selling: `move`, `rebalance`, `add-pu` and the drain of
 * `remove-pu` (see manager.h, "Moving partitions between live units").
 *
 * A move is a failover the manager chooses.  Its steps:
 *   1. the target becomes a backup of the partition (epoch + 1): the
 *      primary links to it and fills it by state transfer while it keeps
 *      selling (pu/repl.c), then streams to it;
 *   2. once the target's heartbeat says it is in sync, at an epoch not
 *      below the one of step 1, the manager asks the primary itself
 *      (repl_status, manager.c) whether its link to the target is in sync:
 *      only the primary knows that it waits for the target's acks before
 *      answering anybody, and a backup's flag could be left over from an
 *      earlier time it was a backup;
 *   3. the map makes the target the primary (epoch + 1).  The target
 *      promotes itself when it applies the map and refuses the old
 *      primary's records from then on, so the old primary cannot
 *      acknowledge anything more (it is deposed, as after a failover); the
 *      old primary stays a backup if backups are wanted and it may hold
 *      them (not when it is draining), after the partition's other backups.
 * A move that cannot finish — the target or the primary died or left, the
 * primary changed otherwise, or the move took longer than the move timeout
 * — is given up; a backup it added is dropped again.  Moves live in the
 * active manager's memory only: one taking over forgets them (an extra
 * backup may stay, which costs a copy and nothing else).
 *
 * Rebalance moves primaries from the unit with the most to the unit with
 * the fewest until they differ by at most one, counting moves in progress
 * as done, preferring a partition whose backup is already on the target
 * (nothing to fill).  Backups are not moved: placement keeps every valid
 * backup where it is and gives new ones to the least loaded units.
 *
 * A drain marks the unit draining: it takes nothing new, placement drops
 * its backups (and places new ones elsewhere), and each pass starts a move
 * for each partition it is the primary of, to the partition's in-sync
 * backup if it has one, else to the unit with the fewest primaries.  Once
 * it holds nothing it is `leaving` (told to exit, forgotten once silent),
 * as remove-pu does for an idle unit.
 */
#include "manager.h"

#include "tixgrid/log.h"

#include <string.h>

static int64_t ms_ns(uint32_t ms)
{
    return (int64_t)ms * 1000000;
}

static uint64_t epoch_next(uint64_t e)
{
    return e < TG_WIRE_ID_MAX ? e + 1 : TG_WIRE_ID_MAX;
}

static grid_move *move_of(grid_map_state *m, uint32_t partition_id)
{
    for (uint32_t i = 0; i < m->move_count; i++) {
        if (m->moves[i].partition_id == partition_id) {
            return &m->moves[i];
        }
    }
    return NULL;
}

static bool backup_has(const grid_partition *p, int32_t i)
{
    for (uint32_t b = 0; b < p->backup_count; b++) {
        if (p->backups[b] == i) {
            return true;
        }
    }
    return false;
}

/* Removes slot i from p's backups; true if it was one. */
static bool backup_drop(grid_partition *p, int32_t i)
{
    for (uint32_t b = 0; b < p->backup_count; b++) {
        if (p->backups[b] == i) {
            memmove(&p->backups[b], &p->backups[b + 1],
                    (p->backup_count - b - 1) * sizeof(p->backups[0]));
            p->backup_count--;
            return true;
        }
    }
    return false;
}

static void partition_changed(grid_map_state *m, grid_partition *p)
{
    p->epoch = epoch_next(p->epoch);
    p->dirty = true;
    m->changed = true;
}

static uint32_t primaries_of(const grid_map_state *m, int32_t i)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < m->part_count; k++) {
        n += m->parts[k].primary == i ? 1 : 0;
    }
    return n;
}

/* ---- Starting and ending moves ------------------------------------------------ */

/* Starts moving p's primary to slot target (checked by the caller). */
static tg_err move_start(grid_map_state *m, grid_partition *p, int32_t target, uint32_t timeout_ms,
                         int64_t now_ns, const char **why)
{
    if (m->move_count == GRID_MOVES_MAX) {
        *why = "too many moves in progress (GRID_MOVES_MAX): wait for them to finish";
        return TG_ENOMEM;
    }
    bool added = !backup_has(p, target);
    if (added && p->backup_count == TG_GRID_BACKUPS_MAX) {
        *why = "the partition has the most backups a partition may have";
        return TG_ENOMEM;
    }
    if (added) {
        p->backups[p->backup_count++] = target;
        partition_changed(m, p);
    }
    m->moves[m->move_count++] = (grid_move){.partition_id = p->partition_id,
                                            .source = p->primary,
                                            .target = target,
                                            .epoch = p->epoch,
                                            .added = added,
                                            .deadline_ns = now_ns + ms_ns(timeout_ms)};
    tg_log_info("manager: partition %u: moving its primary from %s to %s (epoch %llu%s)",
                p->partition_id, m->members[p->primary].name, m->members[target].name,
                (unsigned long long)p->epoch, added ? ", filled as a backup first" : "");
    return TG_OK;
}

static void move_forget(grid_map_state *m, grid_move *mv)
{
    *mv = m->moves[--m->move_count];
}

/* Why mv cannot finish any more, or NULL. */
static const char *move_broken(grid_map_state *m, const grid_move *mv, const grid_partition *p,
                               int64_t now_ns)
{
    if (p == NULL || p->primary != mv->source || !backup_has(p, mv->target)) {
        return "the partition's placement changed meanwhile";
    }
    if (m->members[mv->source].state != TG_MEMBER_ALIVE || m->members[mv->source].removing) {
        return "its primary is no longer alive";
    }
    if (!grid_member_eligible(&m->members[mv->target])) {
        return "the target is no longer alive, or is leaving or draining";
    }
    return now_ns >= mv->deadline_ns ? "the target did not catch up within the move timeout" : NULL;
}

static void move_give_up(grid_map_state *m, grid_move *mv, grid_partition *p, const char *why)
{
    tg_log_warn("manager: partition %u: move to %s given up: %s", mv->partition_id,
                m->members[mv->target].name, why);
    /* With its primary dead the map stays as it is: a new epoch now would
     * outdate the in-sync backups' reports (in sync again only under a live
     * primary), and the placement that follows promotes one of them. */
    bool source_dead = m->members[mv->source].state != TG_MEMBER_ALIVE;
    if (p != NULL && mv->added && !source_dead && p->primary == mv->source &&
        backup_drop(p, mv->target)) {
        partition_changed(m, p);
    }
    move_forget(m, mv);
}

static bool move_ready(grid_map_state *m, const grid_move *mv)
{
    grid_partition *p = grid_partition_find(m, mv->partition_id);
    const grid_backup_report *r = p != NULL ? grid_backup_report_find(p, mv->target) : NULL;
    return r != NULL && r->in_sync && r->epoch >= mv->epoch;
}

tg_err grid_move_handover(grid_map_state *m, uint32_t partition_id, uint32_t backups_wanted)
{
    grid_move *mv = move_of(m, partition_id);
    grid_partition *p = grid_partition_find(m, partition_id);
    if (mv == NULL || p == NULL || p->primary != mv->source || !backup_has(p, mv->target)) {
        return TG_ENOT_FOUND;
    }
    int32_t old = p->primary;
    backup_drop(p, mv->target);
    if (grid_member_eligible(&m->members[old]) && p->backup_count < TG_GRID_BACKUPS_MAX) {
        p->backups[p->backup_count++] = old; /* after the backups already in sync */
    }
    p->backup_count = p->backup_count < backups_wanted ? p->backup_count : backups_wanted;
    p->primary = mv->target;
    p->report_ns = 0; /* the new primary's own report is still to come */
    partition_changed(m, p);
    tg_log_info("manager: partition %u: primary handed from %s to %s (epoch %llu)", partition_id,
                m->members[old].name, m->members[p->primary].name, (unsigned long long)p->epoch);
    move_forget(m, mv);
    return TG_OK;
}

uint32_t grid_moves_ready(grid_map_state *m, grid_move *out, uint32_t max)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->move_count && n < max; i++) {
        if (move_ready(m, &m->moves[i])) {
            out[n++] = m->moves[i];
        }
    }
    return n;
}

/* ---- Choosing targets --------------------------------------------------------- */

/* The best new primary for p other than its primary: an eligible backup in
 * sync (nothing to fill), else the eligible unit with the fewest primaries
 * (ties: the lowest slot); -1 when there is none. */
static int32_t target_for(const grid_map_state *m, const grid_partition *p)
{
    int32_t best = -1;
    uint32_t best_load = UINT32_MAX;
    for (uint32_t b = 0; b < p->backup_count; b++) {
        int32_t i = p->backups[b];
        const grid_backup_report *r = grid_backup_report_find(p, i);
        uint32_t load = primaries_of(m, i);
        if (grid_member_eligible(&m->members[i]) && r != NULL && r->in_sync && load < best_load) {
            best = i;
            best_load = load;
        }
    }
    if (best >= 0) {
        return best;
    }
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        uint32_t load = primaries_of(m, (int32_t)i);
        if ((int32_t)i != p->primary && grid_member_eligible(&m->members[i]) && load < best_load) {
            best = (int32_t)i;
            best_load = load;
        }
    }
    return best;
}

/* Primaries per slot, counting moves in progress as done. */
static void loads_count(const grid_map_state *m, uint32_t loads[TG_GRID_MEMBERS_MAX])
{
    memset(loads, 0, TG_GRID_MEMBERS_MAX * sizeof(loads[0]));
    for (uint32_t k = 0; k < m->part_count; k++) {
        if (m->parts[k].primary >= 0) {
            loads[m->parts[k].primary]++;
        }
    }
    for (uint32_t i = 0; i < m->move_count; i++) {
        loads[m->moves[i].source]--;
        loads[m->moves[i].target]++;
    }
}

/* The eligible slots with the most and the fewest primaries (ties: the
 * lowest slot, but `prefer` among the fewest); false with fewer than two. */
static bool extremes(const grid_map_state *m, const uint32_t *loads, int32_t prefer, int32_t *hi,
                     int32_t *lo)
{
    *hi = *lo = -1;
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        if (!grid_member_eligible(&m->members[i])) {
            continue;
        }
        if (*hi < 0 || loads[i] > loads[*hi]) {
            *hi = (int32_t)i;
        }
        if (*lo < 0 || loads[i] < loads[*lo]) {
            *lo = (int32_t)i;
        }
    }
    if (*lo >= 0 && prefer >= 0 && grid_member_eligible(&m->members[prefer]) &&
        loads[prefer] == loads[*lo]) {
        *lo = prefer;
    }
    return *hi >= 0 && *lo >= 0 && *hi != *lo;
}

/* A partition of `from` that may move to `to`, not moving yet, preferring
 * one `to` is a backup of; NULL when none. */
static grid_partition *movable(grid_map_state *m, int32_t from, int32_t to)
{
    grid_partition *any = NULL;
    for (uint32_t k = 0; k < m->part_count; k++) {
        grid_partition *p = &m->parts[k];
        if (p->primary != from || move_of(m, p->partition_id) != NULL) {
            continue;
        }
        if (backup_has(p, to)) {
            return p;
        }
        any = any != NULL ? any : p;
    }
    return any;
}

/* Starts the moves that balance primaries; a unit just added (prefer, or
 * -1) is the first to get them among the least loaded. */
static uint32_t rebalance(grid_map_state *m, int32_t prefer, uint32_t timeout_ms, int64_t now_ns)
{
    uint32_t loads[TG_GRID_MEMBERS_MAX], started = 0;
    loads_count(m, loads);
    int32_t hi, lo;
    while (m->move_count < GRID_MOVES_MAX && extremes(m, loads, prefer, &hi, &lo) &&
           loads[hi] > loads[lo] + 1) {
        grid_partition *p = movable(m, hi, lo);
        const char *why = NULL;
        if (p == NULL || move_start(m, p, lo, timeout_ms, now_ns, &why) != TG_OK) {
            break;
        }
        loads[hi]--;
        loads[lo]++;
        started++;
    }
    return started;
}

/* ---- Each pass ------------------------------------------------------------------ */

/* Starts a move for every partition a draining unit (slot i) is the primary
 * of; lets it leave once it holds nothing.  Returns partitions changed. */
static uint32_t drain_step(grid_map_state *m, int32_t i, uint32_t timeout_ms, int64_t now_ns)
{
    grid_member *u = &m->members[i];
    uint32_t changed = 0;
    for (uint32_t k = 0; k < m->part_count && m->move_count < GRID_MOVES_MAX; k++) {
        grid_partition *p = &m->parts[k];
        if (p->primary != i || move_of(m, p->partition_id) != NULL) {
            continue;
        }
        int32_t to = target_for(m, p);
        const char *why = NULL;
        if (to >= 0 && move_start(m, p, to, timeout_ms, now_ns, &why) == TG_OK) {
            changed++;
        }
    }
    if (grid_member_references(m, i) == 0) {
        u->draining = false;
        u->state = TG_MEMBER_LEAVING;
        u->dirty = true;
        m->changed = true;
        tg_log_info("manager: unit %s is drained: told to stop at its next heartbeat", u->name);
    }
    return changed;
}

uint32_t grid_moves_pass(grid_map_state *m, uint32_t backups_wanted, uint32_t move_timeout_ms,
                         int64_t now_ns)
{
    (void)backups_wanted;
    uint32_t timeout_ms = move_timeout_ms != 0 ? move_timeout_ms : GRID_MOVE_TIMEOUT_MS_DEFAULT;
    uint32_t changed = 0;
    for (uint32_t k = m->move_count; k-- > 0;) {
        grid_move *mv = &m->moves[k];
        grid_partition *p = grid_partition_find(m, mv->partition_id);
        const char *why = move_broken(m, mv, p, now_ns);
        if (why != NULL) {
            move_give_up(m, mv, p, why);
            changed++;
        }
    }
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        const grid_member *u = &m->members[i];
        if (u->draining && u->state == TG_MEMBER_ALIVE && !u->removing) {
            changed += drain_step(m, (int32_t)i, timeout_ms, now_ns);
        }
    }
    return changed;
}

/* ---- Requests ------------------------------------------------------------------- */

static void moves_reply(const grid_map_state *m, tg_wire_type type, uint32_t started, uint32_t held,
                        tg_msg *reply)
{
    reply->type = type;
    reply->moves_ok.started = started;
    reply->moves_ok.pending = m->move_count;
    reply->moves_ok.held = held;
}

/* The alive member named name, or -1 with *why. */
static int32_t alive_named(const grid_map_state *m, const char *name, const char **why)
{
    int32_t i = grid_name_valid(name) ? grid_member_find(m, name) : -1;
    if (i < 0 || m->members[i].removing) {
        *why = "no unit of that name in the grid: start tixgrid-pu --name NAME --manager ...; "
               "it registers itself";
        return -1;
    }
    if (m->members[i].state != TG_MEMBER_ALIVE) {
        *why = "that unit is not alive (dead or leaving)";
        return -1;
    }
    return i;
}

static tg_err on_move(grid_map_state *m, const grid_state_env *env, const tg_msg *req,
                      int64_t now_ns, uint32_t *started, const char **why)
{
    grid_partition *p = grid_partition_find(m, req->partition_move.partition_id);
    int32_t to = alive_named(m, req->partition_move.to, why);
    if (p == NULL || to < 0) {
        *why = p == NULL ? "no such partition in grid_partitions" : *why;
        return TG_ENOT_FOUND;
    }
    grid_move *mv = move_of(m, p->partition_id);
    if (mv != NULL && mv->target == to) {
        return TG_OK; /* asked again: it is under way */
    }
    if (p->primary < 0 || !grid_member_eligible(&m->members[p->primary]) || mv != NULL ||
        p->primary == to || m->members[to].draining) {
        *why = p->primary == to ? "that unit is the partition's primary already"
               : mv != NULL     ? "the partition is moving elsewhere already"
               : p->primary >= 0 && m->members[p->primary].draining
                   ? "the partition's primary is draining: it is moving already"
               : m->members[to].draining ? "that unit is draining"
                                         : "the partition has no live primary to move from";
        return TG_EPARTITION_STATE;
    }
    tg_err err = move_start(
        m, p, to, env->move_timeout_ms ? env->move_timeout_ms : GRID_MOVE_TIMEOUT_MS_DEFAULT,
        now_ns, why);
    *started = err == TG_OK ? 1 : 0;
    return err;
}

/* True when a unit other than slot i may take partitions. */
static bool other_eligible(const grid_map_state *m, int32_t i)
{
    for (uint32_t k = 0; k < TG_GRID_MEMBERS_MAX; k++) {
        if ((int32_t)k != i && grid_member_eligible(&m->members[k])) {
            return true;
        }
    }
    return false;
}

static tg_err on_drain(grid_map_state *m, const tg_msg *req, uint32_t *held, const char **why)
{
    const char *name = req->pu_drain.name;
    int32_t i = grid_name_valid(name) ? grid_member_find(m, name) : -1;
    if (i < 0 || m->members[i].removing) {
        *why = "no unit of that name in the grid";
        return TG_ENOT_FOUND;
    }
    grid_member *u = &m->members[i];
    *held = grid_member_references(m, i);
    if (u->state == TG_MEMBER_LEAVING || (u->state == TG_MEMBER_DEAD && *held == 0)) {
        u->removing = u->state == TG_MEMBER_DEAD ? true : u->removing;
        m->changed = m->changed || u->removing;
        return TG_OK;
    }
    if (u->state == TG_MEMBER_DEAD) {
        *why = "the unit is dead and still the primary of partitions no backup could take over: "
               "start it again, or replay them elsewhere";
        return TG_EPARTITION_STATE;
    }
    if (!u->draining && primaries_of(m, i) > 0 && !other_eligible(m, i)) {
        *why = "no other live unit to take its partitions: the drain cannot move them (add a "
               "unit first)";
        return TG_EPARTITION_STATE;
    }
    if (!u->draining) {
        u->draining = true;
        m->changed = true; /* placement drops its backups at once */
        tg_log_info("manager: unit %s is draining: %u partitions to move away", name, *held);
    }
    return TG_OK;
}

tg_err grid_moves_handle(grid_map_state *m, const grid_state_env *env, const tg_msg *req,
                         int64_t now_ns, tg_msg *reply, const char **why)
{
    uint32_t timeout_ms =
        env->move_timeout_ms ? env->move_timeout_ms : GRID_MOVE_TIMEOUT_MS_DEFAULT;
    uint32_t started = 0, held = 0;
    tg_err err = TG_OK;
    switch (req->type) {
    case TG_WIRE_PARTITION_MOVE:
        err = on_move(m, env, req, now_ns, &started, why);
        break;
    case TG_WIRE_PU_ADD: {
        int32_t i = alive_named(m, req->pu_add.name, why);
        err = i < 0 ? TG_ENOT_FOUND : TG_OK;
        if (i >= 0 && m->members[i].draining) {
            m->members[i].draining = false;
            tg_log_info("manager: unit %s added back: its drain ends", m->members[i].name);
        }
        started = err == TG_OK ? rebalance(m, i, timeout_ms, now_ns) : 0;
        break;
    }
    case TG_WIRE_REBALANCE:
        started = rebalance(m, -1, timeout_ms, now_ns);
        break;
    default:
        err = on_drain(m, req, &held, why);
        break;
    }
    if (err == TG_OK) {
        moves_reply(m, tg_wire_reply_type(req->type), started, held, reply);
    }
    return err;
}

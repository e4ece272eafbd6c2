/*
 * manager_state.c — the partition map in memory and every rule about it
 * (see manager.h).  No I/O: the loop (manager.c) hands in decoded requests
 * and the time, and writes to PostgreSQL what this file marks dirty.
 *
 * Membership.  A unit joins by registering (name, addresses, zone, a new
 * incarnation at every start, the partitions it holds) and stays alive by
 * sending heartbeats.  Heartbeats are accepted only from the incarnation
 * that registered, and only while the unit is alive: a unit declared dead
 * must register again, so that whatever the map did meanwhile is decided
 * again from what it reports, never assumed.  A manager that takes over
 * knows nobody's incarnation, so every unit registers with it once.
 *
 * Adoption.  Until replication can fill a new unit, a partition can only be
 * served where its data already is.  So a partition without a primary goes
 * to the first alive unit that reports holding it (replay loaded it there),
 * with its epoch raised above both the map's and the unit's; a unit that
 * reports a higher epoch than the map for a partition it is primary of
 * (replay --epoch) raises the map's.  A primary's copy held by a unit that
 * is not the map's primary stays out of the map.  A backup's copy (role
 * backup in a heartbeat) is never adopted: its report (epoch, last applied
 * record, in sync) is kept for failover while the map names it a backup.
 *
 * Death.  A dead unit's partitions go to their most up-to-date in-sync
 * backup (manager_place.c); without one they stay unavailable (state
 * primary_dead) until the unit comes back (it keeps its segments across a
 * crash).
 *
 * Epochs.  m->epoch is the map's epoch as PostgreSQL holds it; any change
 * sets m->changed, and the loop writes the change under epoch + 1 and only
 * then publishes it.  A partition's own epoch rises only when its primary
 * or backups change.
 */
#include "manager.h"

#include "tixgrid/assert.h"
#include "tixgrid/cli.h"
#include "tixgrid/log.h"

#include <string.h>

/* ---- Lookups -------------------------------------------------------------- */

/* 1..max_bytes - 1 of [A-Za-z0-9._-]. */
static bool label_valid(const char *label, size_t max_bytes)
{
    size_t n = strnlen(label, max_bytes);
    if (n == 0 || n >= max_bytes) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = label[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool grid_name_valid(const char *name)
{
    return tg_name_valid(name);
}

/* A zone label: "" (none) or 1..63 of the same characters as a name. */
static bool zone_valid(const char *zone)
{
    return zone[0] == '\0' || label_valid(zone, TG_ZONE_BYTES);
}

int32_t grid_member_find(const grid_map_state *m, const char *name)
{
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        if (m->members[i].name[0] != '\0' && strcmp(m->members[i].name, name) == 0) {
            return (int32_t)i;
        }
    }
    return -1;
}

static int32_t member_add(grid_map_state *m, const char *name)
{
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        grid_member *u = &m->members[i];
        if (u->name[0] == '\0') {
            memset(u, 0, sizeof(*u));
            snprintf(u->name, sizeof(u->name), "%s", name);
            u->state = TG_MEMBER_DEAD;
            return (int32_t)i;
        }
    }
    return -1;
}

grid_partition *grid_partition_find(grid_map_state *m, uint32_t partition_id)
{
    uint32_t lo = 0, hi = m->part_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->parts[mid].partition_id < partition_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < m->part_count && m->parts[lo].partition_id == partition_id ? &m->parts[lo] : NULL;
}

uint32_t grid_member_references(const grid_map_state *m, int32_t i)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < m->part_count; k++) {
        const grid_partition *p = &m->parts[k];
        bool named = p->primary == i;
        for (uint32_t b = 0; b < p->backup_count; b++) {
            named = named || p->backups[b] == i;
        }
        n += named ? 1 : 0;
    }
    return n;
}

/* ---- What units report ------------------------------------------------------ */

static uint64_t epoch_after(uint64_t a, uint64_t b)
{
    uint64_t top = a > b ? a : b;
    return top < TG_WIRE_ID_MAX ? top + 1 : TG_WIRE_ID_MAX;
}

const grid_backup_report *grid_backup_report_find(const grid_partition *p, int32_t i)
{
    for (uint32_t k = 0; k < TG_GRID_BACKUPS_MAX; k++) {
        if (p->backup_reports[k].member == i + 1) {
            return &p->backup_reports[k];
        }
    }
    return NULL;
}

static bool is_backup(const grid_partition *p, int32_t i)
{
    for (uint32_t b = 0; b < p->backup_count; b++) {
        if (p->backups[b] == i) {
            return true;
        }
    }
    return false;
}

/* A backup's copy (slot i), reported by a heartbeat: kept only while the
 * map names it a backup; the entry of a member that is no backup any more
 * is reused. */
static void apply_backup_report(grid_partition *p, int32_t i, const tg_wire_held *h)
{
    if (!is_backup(p, i)) {
        return;
    }
    grid_backup_report *slot = (grid_backup_report *)grid_backup_report_find(p, i);
    for (uint32_t k = 0; slot == NULL && k < TG_GRID_BACKUPS_MAX; k++) {
        grid_backup_report *r = &p->backup_reports[k];
        if (r->member == 0 || !is_backup(p, r->member - 1)) {
            slot = r;
        }
    }
    if (slot != NULL) {
        /* Still where it was: it stays behind since when it was. */
        bool still = slot->member == i + 1 && slot->applied == h->log_head;
        grid_heard behind = still ? slot->behind : (grid_heard){0};
        *slot = (grid_backup_report){.member = i + 1,
                                     .epoch = h->epoch,
                                     .applied = h->log_head,
                                     .in_sync = h->in_sync,
                                     .behind = behind};
    }
}

/* One partition a unit (slot i) says it holds. */
static void apply_report(grid_map_state *m, int32_t i, const tg_wire_held *h, int64_t report_ns,
                         bool registering)
{
    const grid_member *u = &m->members[i];
    grid_partition *p = grid_partition_find(m, h->partition_id);
    if (p != NULL && h->role == TG_WIRE_HELD_BACKUP) {
        apply_backup_report(p, i, h);
        return; /* a replica is never adopted as a primary */
    }
    if (p == NULL || (registering && h->event_id != p->event_id)) {
        if (registering) {
            tg_log_warn("manager: unit %s holds partition %u (event %llu), which grid_partitions "
                        "does not have: left out of the map",
                        u->name, h->partition_id, (unsigned long long)h->event_id);
        }
        return;
    }
    if (p->primary < 0) {
        p->primary = i;
        p->epoch = epoch_after(p->epoch, h->epoch);
        p->dirty = true;
        m->changed = true;
        tg_log_info("manager: partition %u placed on %s, which holds it (epoch %llu)",
                    p->partition_id, u->name, (unsigned long long)p->epoch);
    }
    if (p->primary != i) {
        if (registering) {
            tg_log_info("manager: unit %s holds a copy of partition %u, whose primary is %s: "
                        "not in the map (copies become backups with replication)",
                        u->name, p->partition_id, m->members[p->primary].name);
        }
        return;
    }
    if (h->epoch > p->epoch) {
        tg_log_warn("manager: partition %u: its primary %s holds epoch %llu, above the map's "
                    "%llu; the map follows",
                    p->partition_id, u->name, (unsigned long long)h->epoch,
                    (unsigned long long)p->epoch);
        p->epoch = h->epoch;
        p->dirty = true;
        m->changed = true;
    }
    p->report_ns = report_ns;
    p->held_epoch = h->epoch;
    p->log_head = h->log_head;
    p->log_persisted = h->log_persisted;
    p->unpersisted_age_ms = h->unpersisted_age_ms;
}

static void apply_reports(grid_map_state *m, int32_t i, const tg_wire_held *held, uint32_t n,
                          int64_t report_ns, bool registering)
{
    for (uint32_t k = 0; k < n; k++) {
        apply_report(m, i, &held[k], report_ns, registering);
    }
}

/* ---- Requests --------------------------------------------------------------- */

static tg_err check_register(const tg_msg *req, const char **why)
{
    const __typeof__(req->pu_register) *r = &req->pu_register;
    if (!grid_name_valid(r->name)) {
        *why = "pu_register.name: not a unit name (1..47 of A-Z a-z 0-9 . _ -)";
    } else if (!tg_url_valid(r->rep_url) || (r->pub_url[0] != '\0' && !tg_url_valid(r->pub_url))) {
        *why = "pu_register: an address is not an nng URL (scheme://address)";
    } else if (!zone_valid(r->zone)) {
        *why = "pu_register.zone: not a zone label (1..63 of A-Z a-z 0-9 . _ -)";
    } else {
        return TG_OK;
    }
    return TG_EINVAL;
}

/* Logs what a registration means for a unit we may have known. */
static void log_join(const grid_member *u, bool known, const tg_msg *req)
{
    const char *name = req->pu_register.name;
    if (!known) {
        tg_log_info("manager: unit %s joined (%s, zone %s)", name, req->pu_register.rep_url,
                    req->pu_register.zone[0] != '\0' ? req->pu_register.zone : "-");
    } else if (u->state == TG_MEMBER_DEAD) {
        tg_log_info("manager: unit %s is back", name);
    } else if (u->incarnation != 0 && u->incarnation != req->pu_register.incarnation) {
        tg_log_info("manager: unit %s restarted (incarnation %llu)", name,
                    (unsigned long long)req->pu_register.incarnation);
    }
}

/* Stamps u heard now, on the request's connection. */
static void heard_on(grid_member *u, const grid_state_env *env, int64_t now_ns)
{
    grid_detector_heard(env->det, &u->heard, now_ns);
    u->pipe_id = env->pipe_id;
    u->closed = false;
}

/* Forgets what member i reported of its backup copies: a new process has
 * none of them in sync until its own heartbeats say so (its registration
 * lists primaries only). */
static void backup_reports_forget(grid_map_state *m, int32_t i)
{
    for (uint32_t k = 0; k < m->part_count; k++) {
        grid_partition *p = &m->parts[k];
        for (uint32_t b = 0; b < TG_GRID_BACKUPS_MAX; b++) {
            if (p->backup_reports[b].member == i + 1) {
                p->backup_reports[b] = (grid_backup_report){0};
            }
        }
    }
}

static tg_err on_register(grid_map_state *m, const grid_state_env *env, const tg_msg *req,
                          int64_t now_ns, tg_msg *reply, const char **why)
{
    const __typeof__(req->pu_register) *r = &req->pu_register;
    tg_err err = check_register(req, why);
    if (err != TG_OK) {
        return err;
    }
    int32_t i = grid_member_find(m, r->name);
    bool known = i >= 0;
    if (!known && (i = member_add(m, r->name)) < 0) {
        *why = "the grid has TG_GRID_MEMBERS_MAX (64) units already";
        return TG_ENOMEM;
    }
    grid_member *u = &m->members[i];
    log_join(u, known, req);
    bool same = known && u->state == TG_MEMBER_ALIVE && !u->removing &&
                u->incarnation == r->incarnation && strcmp(u->rep_url, r->rep_url) == 0 &&
                strcmp(u->pub_url, r->pub_url) == 0 && strcmp(u->zone, r->zone) == 0;
    /* Removed, then registering again with the same incarnation (a new
     * manager asked it to): it is still leaving.  A new incarnation is an
     * operator starting it again: it joins. */
    bool leaving = known && u->state == TG_MEMBER_LEAVING && u->incarnation == r->incarnation;
    if (known && u->incarnation != r->incarnation) {
        backup_reports_forget(m, i);
    }
    snprintf(u->rep_url, sizeof(u->rep_url), "%s", r->rep_url);
    snprintf(u->pub_url, sizeof(u->pub_url), "%s", r->pub_url);
    snprintf(u->zone, sizeof(u->zone), "%s", r->zone);
    u->state = leaving ? TG_MEMBER_LEAVING : TG_MEMBER_ALIVE;
    u->incarnation = r->incarnation;
    u->registered = true;
    u->removing = false;
    u->ever_heard = true;
    u->map_epoch = 0;
    heard_on(u, env, now_ns);
    if (!same) {
        u->dirty = true;
        m->changed = true;
    }
    apply_reports(m, i, r->held, r->held_count, now_ns, true);
    reply->type = TG_WIRE_PU_REGISTER_OK;
    __typeof__(reply->pu_register_ok) *ok = &reply->pu_register_ok;
    snprintf(ok->manager, sizeof(ok->manager), "%s", m->manager);
    snprintf(ok->pub_url, sizeof(ok->pub_url), "%s", env->pub_url);
    ok->map_epoch = m->epoch;
    ok->heartbeat_interval_ms = env->heartbeat_interval_ms;
    ok->failure_timeout_ms = env->failure_timeout_ms;
    return TG_OK;
}

static tg_err on_heartbeat(grid_map_state *m, const grid_state_env *env, const tg_msg *req,
                           int64_t now_ns, tg_msg *reply, const char **why)
{
    const __typeof__(req->heartbeat) *h = &req->heartbeat;
    int32_t i = grid_member_find(m, h->name);
    grid_member *u = i >= 0 ? &m->members[i] : NULL;
    if (u == NULL || !u->registered || u->incarnation != h->incarnation ||
        u->state == TG_MEMBER_DEAD || u->removing) {
        *why = "unknown unit or incarnation, or declared dead: register again";
        return TG_ENOT_FOUND;
    }
    heard_on(u, env, now_ns);
    u->map_epoch = h->map_epoch;
    apply_reports(m, i, h->held, h->held_count, now_ns, false);
    reply->type = TG_WIRE_HEARTBEAT_OK;
    reply->heartbeat_ok.map_epoch = m->epoch;
    reply->heartbeat_ok.leave = u->state == TG_MEMBER_LEAVING;
    return TG_OK;
}

static tg_err on_remove(grid_map_state *m, const tg_msg *req, tg_msg *reply, const char **why)
{
    const char *name = req->pu_remove.name;
    int32_t i = grid_name_valid(name) ? grid_member_find(m, name) : -1;
    if (i < 0 || m->members[i].removing) {
        *why = "no unit of that name in the grid";
        return TG_ENOT_FOUND;
    }
    uint32_t refs = grid_member_references(m, i);
    if (refs > 0) {
        tg_log_warn("manager: remove-pu %s refused: it is the primary or a backup of %u "
                    "partitions",
                    name, refs);
        *why = "the unit is the primary or a backup of partitions: drain it first "
               "(pu_drain, tixgridctl remove-pu)";
        return TG_EPARTITION_STATE;
    }
    grid_member *u = &m->members[i];
    if (u->state == TG_MEMBER_DEAD) {
        u->removing = true;
        tg_log_info("manager: unit %s removed from the grid", name);
    } else {
        u->state = TG_MEMBER_LEAVING;
        u->dirty = true;
        tg_log_info("manager: unit %s is leaving: told to stop at its next heartbeat", name);
    }
    m->changed = true;
    reply->type = TG_WIRE_PU_REMOVE_OK;
    return TG_OK;
}

/* ---- Messages built from the map ------------------------------------------- */

/* Fills scratch->members with every member that is not being removed, and
 * wire_index with their new numbers. */
static uint32_t wire_members(const grid_map_state *m, grid_msg_scratch *s, bool status,
                             int64_t now_ns)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        const grid_member *u = &m->members[i];
        s->wire_index[i] = -1;
        if (u->name[0] == '\0' || u->removing) {
            continue;
        }
        tg_wire_member *w = &s->members[n];
        memset(w, 0, sizeof(*w));
        memcpy(w->name, u->name, sizeof(w->name));
        memcpy(w->rep_url, u->rep_url, sizeof(w->rep_url));
        memcpy(w->pub_url, u->pub_url, sizeof(w->pub_url));
        memcpy(w->zone, u->zone, sizeof(w->zone));
        w->state = u->state;
        if (status) {
            w->incarnation = u->registered ? u->incarnation : 0;
            w->heard_age_ms = u->ever_heard ? (now_ns - u->heard.heard_ns) / 1000000 : -1;
            w->map_epoch = u->map_epoch;
        }
        s->wire_index[i] = (int32_t)n++;
    }
    return n;
}

static uint32_t placement_state(const grid_map_state *m, const grid_partition *p)
{
    if (p->primary < 0) {
        return TG_PLACEMENT_UNPLACED;
    }
    const grid_member *u = &m->members[p->primary];
    if (u->state == TG_MEMBER_DEAD) {
        return TG_PLACEMENT_PRIMARY_DEAD;
    }
    if (p->report_ns == 0 || p->report_ns != u->heard.heard_ns) {
        return TG_PLACEMENT_NOT_LOADED; /* its latest report did not list it */
    }
    return p->held_epoch < p->epoch ? TG_PLACEMENT_EPOCH_BEHIND : TG_PLACEMENT_SERVING;
}

/* What the backups named now last said of their copies at the map's epoch
 * (a report from an older epoch may predate a copy the map left out). */
static void wire_replication(const grid_partition *p, const grid_msg_scratch *s,
                             tg_wire_placement *w)
{
    for (uint32_t b = 0; b < p->backup_count; b++) {
        const grid_backup_report *r = grid_backup_report_find(p, p->backups[b]);
        if (s->wire_index[p->backups[b]] < 0 || r == NULL || r->epoch != p->epoch) {
            continue;
        }
        w->backups_applied = w->backups_reported == 0 || r->applied < w->backups_applied
                                 ? r->applied
                                 : w->backups_applied;
        w->backups_reported++;
        w->backups_in_sync += r->in_sync ? 1u : 0u;
    }
}

static void wire_placement(const grid_map_state *m, const grid_partition *p,
                           const grid_msg_scratch *s, bool status, tg_wire_placement *w)
{
    memset(w, 0, sizeof(*w));
    w->partition_id = p->partition_id;
    w->event_id = p->event_id;
    w->epoch = p->epoch;
    w->primary = p->primary >= 0 ? s->wire_index[p->primary] : -1;
    for (uint32_t b = 0; b < p->backup_count; b++) {
        int32_t k = s->wire_index[p->backups[b]];
        if (k >= 0) {
            w->backups.members[w->backups.count++] = (uint32_t)k;
        }
    }
    if (status) {
        w->state = placement_state(m, p);
        w->held_epoch = p->held_epoch;
        w->log_head = p->log_head;
        w->log_persisted = p->log_persisted <= p->log_head ? p->log_persisted : p->log_head;
        w->unpersisted_age_ms = p->unpersisted_age_ms;
        wire_replication(p, s, w);
    }
}

void grid_state_map_msg(const grid_map_state *m, uint64_t epoch, grid_msg_scratch *scratch,
                        tg_msg *out)
{
    memset(out, 0, sizeof(*out));
    out->type = TG_WIRE_GRID_MAP;
    out->grid_map.epoch = epoch;
    snprintf(out->grid_map.manager, sizeof(out->grid_map.manager), "%s", m->manager);
    out->grid_map.member_count = wire_members(m, scratch, false, 0);
    out->grid_map.members = scratch->members;
    for (uint32_t k = 0; k < m->part_count; k++) {
        wire_placement(m, &m->parts[k], scratch, false, &scratch->placements[k]);
    }
    out->grid_map.placement_count = m->part_count;
    out->grid_map.placements = scratch->placements;
}

static void on_status(const grid_map_state *m, const grid_state_env *env, int64_t now_ns,
                      grid_msg_scratch *scratch, tg_msg *reply)
{
    reply->type = TG_WIRE_GRID_STATUS_OK;
    __typeof__(reply->grid_status_ok) *s = &reply->grid_status_ok;
    snprintf(s->manager, sizeof(s->manager), "%s", m->manager);
    s->map_epoch = m->epoch;
    s->heartbeat_interval_ms = env->heartbeat_interval_ms;
    s->failure_timeout_ms = env->failure_timeout_ms;
    s->member_count = wire_members(m, scratch, true, now_ns);
    s->members = scratch->members;
    for (uint32_t k = 0; k < m->part_count; k++) {
        wire_placement(m, &m->parts[k], scratch, true, &scratch->placements[k]);
    }
    s->placement_count = m->part_count;
    s->placements = scratch->placements;
}

void grid_state_handle(grid_map_state *m, const grid_state_env *env, const tg_msg *req,
                       int64_t now_ns, grid_msg_scratch *scratch, tg_msg *reply)
{
    const char *why = NULL;
    tg_err err = TG_OK;
    memset(reply, 0, sizeof(*reply));
    switch (req->type) {
    case TG_WIRE_PU_REGISTER:
        err = on_register(m, env, req, now_ns, reply, &why);
        break;
    case TG_WIRE_HEARTBEAT:
        err = on_heartbeat(m, env, req, now_ns, reply, &why);
        break;
    case TG_WIRE_GRID_STATUS:
        on_status(m, env, now_ns, scratch, reply);
        break;
    case TG_WIRE_PU_REMOVE:
        err = on_remove(m, req, reply, &why);
        break;
    case TG_WIRE_PU_ADD:
    case TG_WIRE_PARTITION_MOVE:
    case TG_WIRE_REBALANCE:
    case TG_WIRE_PU_DRAIN:
        err = grid_moves_handle(m, env, req, now_ns, reply, &why);
        break;
    default:
        err = TG_EPROTO;
        why = "not a request to the grid manager";
        break;
    }
    if (err != TG_OK) {
        tg_wire_error(reply, err, why);
    }
}

/* ---- Time ---------------------------------------------------------------------- */

void grid_state_pipe_closed(grid_map_state *m, const grid_detector *d, uint32_t pipe_id,
                            int64_t now_ns)
{
    for (uint32_t i = 0; pipe_id != 0 && i < TG_GRID_MEMBERS_MAX; i++) {
        grid_member *u = &m->members[i];
        if (u->name[0] != '\0' && u->pipe_id == pipe_id && !u->closed) {
            u->closed = true;
            grid_detector_heard(d, &u->closed_at, now_ns);
            tg_log_info("manager: unit %s: its connection closed", u->name);
        }
    }
}

/* Silent for the failure timeout, or gone with its connection. */
static bool member_gone(const grid_detector *d, const grid_member *u, int64_t now_ns)
{
    return grid_detector_dead(d, &u->heard, now_ns) ||
           (u->closed && grid_detector_silence_ns(d, &u->closed_at, now_ns) > d->stall_ns);
}

static void declare_dead(grid_member *u, const grid_detector *d, uint32_t refs, int64_t now_ns)
{
    int64_t silent_ms = grid_detector_silence_ns(d, &u->heard, now_ns) / 1000000;
    int64_t closed_ms = grid_detector_silence_ns(d, &u->closed_at, now_ns) / 1000000;
    u->state = TG_MEMBER_DEAD;
    u->registered = false;
    u->dirty = true;
    if (u->closed) {
        tg_log_warn("manager: unit %s declared dead: its connection closed and it was not heard "
                    "again for %lld ms; %u partitions without their unit",
                    u->name, (long long)closed_ms, refs);
    } else {
        tg_log_warn("manager: unit %s declared dead: silent for %lld ms (failure timeout "
                    "%lld ms); %u partitions without their unit",
                    u->name, (long long)silent_ms, (long long)(d->timeout_ns / 1000000), refs);
    }
}

uint32_t grid_state_detect(grid_map_state *m, const grid_detector *d, int64_t now_ns)
{
    uint32_t changed = 0;
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        grid_member *u = &m->members[i];
        bool watched = u->name[0] != '\0' && !u->removing && u->state != TG_MEMBER_DEAD;
        if (!watched || !member_gone(d, u, now_ns)) {
            continue;
        }
        uint32_t refs = grid_member_references(m, (int32_t)i);
        if (u->state == TG_MEMBER_LEAVING && refs == 0) {
            u->removing = true;
            tg_log_info("manager: unit %s left the grid", u->name);
        } else {
            declare_dead(u, d, refs, now_ns);
        }
        m->changed = true;
        changed++;
    }
    return changed;
}

void grid_state_activate(grid_map_state *m, const grid_detector *d, int64_t now_ns)
{
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        grid_member *u = &m->members[i];
        u->registered = false;
        u->ever_heard = false;
        u->pipe_id = 0;
        u->closed = false;
        grid_detector_heard(d, &u->heard, now_ns);
    }
    m->changed = true; /* a new manager publishes under a new epoch */
}

void grid_state_persisted(grid_map_state *m, uint64_t epoch)
{
    TG_ASSERT(epoch >= m->epoch);
    m->epoch = epoch;
    m->changed = false;
    for (uint32_t i = 0; i < TG_GRID_MEMBERS_MAX; i++) {
        grid_member *u = &m->members[i];
        u->dirty = false;
        if (u->removing) {
            memset(u, 0, sizeof(*u));
        }
    }
    for (uint32_t k = 0; k < m->part_count; k++) {
        m->parts[k].dirty = false;
        m->parts[k].stored_epoch = m->parts[k].epoch;
    }
}

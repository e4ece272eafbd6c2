/*
 * placement.c — the placement rules of placement.h.
 *
 * Loads are counted once from the valid part of the input and updated as
 * each decision is made, so that a thousand new partitions spread over four
 * members 250 each rather than all onto the member that was least loaded at
 * the start.  The zone test is a scan of the partition's replicas (at most
 * 1 + TG_GRID_BACKUPS_MAX), cheaper than any set.
 */
#include "placement.h"

#include "tixgrid/assert.h"

#include <string.h>

typedef struct {
    uint32_t primaries[TG_GRID_MEMBERS_MAX];
    uint32_t replicas[TG_GRID_MEMBERS_MAX]; /* primaries and backups */
} loads;

static bool eligible(const grid_place_member *m, uint32_t n, int32_t i)
{
    return i >= 0 && (uint32_t)i < n && m[i].eligible;
}

static bool has_zone(const grid_place_member *m)
{
    return m->zone != NULL && m->zone[0] != '\0';
}

/* Pass 1: keep the backups that may stay. */
static void drop_bad_backups(const grid_place_member *m, uint32_t n, grid_place_slot *s,
                             grid_place_stats *st)
{
    uint32_t kept = 0;
    TG_ASSERT(s->backup_count <= TG_GRID_BACKUPS_MAX);
    for (uint32_t b = 0; b < s->backup_count; b++) {
        int32_t x = s->backups[b];
        bool ok = eligible(m, n, x) && x != s->primary;
        for (uint32_t k = 0; ok && k < kept; k++) {
            ok = s->backups[k] != x;
        }
        if (ok) {
            s->backups[kept++] = x;
        } else {
            st->backups_dropped++;
        }
    }
    s->backup_count = kept;
}

static void count(const grid_place_member *m, uint32_t n, const grid_place_slot *s, loads *l)
{
    if (eligible(m, n, s->primary)) {
        l->primaries[s->primary]++;
        l->replicas[s->primary]++;
    }
    for (uint32_t b = 0; b < s->backup_count; b++) {
        l->replicas[s->backups[b]]++;
    }
}

/* The eligible member with the fewest primaries, then replicas; -1 if none. */
static int32_t least_loaded_primary(const grid_place_member *m, uint32_t n, const loads *l)
{
    int32_t best = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (!m[i].eligible) {
            continue;
        }
        if (best < 0 || l->primaries[i] < l->primaries[best] ||
            (l->primaries[i] == l->primaries[best] && l->replicas[i] < l->replicas[best])) {
            best = (int32_t)i;
        }
    }
    return best;
}

/* Pass 2: a primary for every slot whose primary cannot serve. */
static void fix_primary(const grid_place_member *m, uint32_t n, grid_place_slot *s, loads *l,
                        grid_place_stats *st)
{
    if (eligible(m, n, s->primary)) {
        return;
    }
    if (s->backup_count > 0) {
        /* The backup is already counted as a replica; now it is a primary too. */
        s->primary = s->backups[0];
        memmove(&s->backups[0], &s->backups[1], (s->backup_count - 1) * sizeof(s->backups[0]));
        s->backup_count--;
        l->primaries[s->primary]++;
        st->promoted++;
        return;
    }
    int32_t p = s->placeable ? least_loaded_primary(m, n, l) : -1;
    if (p >= 0) {
        s->primary = p;
        l->primaries[p]++;
        l->replicas[p]++;
        st->placed++;
    }
}

static bool holds(const grid_place_slot *s, int32_t i)
{
    if (s->primary == i) {
        return true;
    }
    for (uint32_t b = 0; b < s->backup_count; b++) {
        if (s->backups[b] == i) {
            return true;
        }
    }
    return false;
}

/* True when member i is in a zone none of the slot's replicas is in. */
static bool zone_is_new(const grid_place_member *m, uint32_t n, const grid_place_slot *s, int32_t i)
{
    if (!has_zone(&m[i])) {
        return true;
    }
    const int32_t *r = s->backups;
    for (uint32_t k = 0; k <= s->backup_count; k++) {
        int32_t other = k == s->backup_count ? s->primary : r[k];
        if (other >= 0 && (uint32_t)other < n && has_zone(&m[other]) &&
            strcmp(m[other].zone, m[i].zone) == 0) {
            return false;
        }
    }
    return true;
}

/* The best member for one more backup of s, or -1: a new zone first, then
 * the fewest replicas, then the lowest index. */
static int32_t best_backup(const grid_place_member *m, uint32_t n, const grid_place_slot *s,
                           const loads *l)
{
    int32_t best = -1;
    bool best_new = false;
    for (uint32_t i = 0; i < n; i++) {
        if (!m[i].eligible || holds(s, (int32_t)i) || s->shunned == (int32_t)i + 1) {
            continue;
        }
        bool fresh = zone_is_new(m, n, s, (int32_t)i);
        if (best < 0 || (fresh && !best_new) ||
            (fresh == best_new && l->replicas[i] < l->replicas[best])) {
            best = (int32_t)i;
            best_new = fresh;
        }
    }
    return best;
}

void grid_place(const grid_place_member *members, uint32_t member_count, grid_place_slot *slots,
                uint32_t slot_count, uint32_t backups_wanted, grid_place_stats *stats)
{
    TG_ASSERT(member_count <= TG_GRID_MEMBERS_MAX && slot_count <= TG_GRID_PARTITIONS_MAX);
    grid_place_stats ignored;
    grid_place_stats *st = stats != NULL ? stats : &ignored;
    memset(st, 0, sizeof(*st));
    loads l;
    memset(&l, 0, sizeof(l));
    uint32_t wanted = backups_wanted < TG_GRID_BACKUPS_MAX ? backups_wanted : TG_GRID_BACKUPS_MAX;
    for (uint32_t i = 0; i < slot_count; i++) {
        TG_ASSERT(slots[i].primary >= -1 && slots[i].primary < (int32_t)member_count);
        drop_bad_backups(members, member_count, &slots[i], st);
        count(members, member_count, &slots[i], &l);
    }
    for (uint32_t i = 0; i < slot_count; i++) {
        fix_primary(members, member_count, &slots[i], &l, st);
    }
    for (uint32_t i = 0; i < slot_count; i++) {
        grid_place_slot *s = &slots[i];
        /* A partition without a serving primary gets no backups: there is
         * nothing to copy them from. */
        while (eligible(members, member_count, s->primary) && s->backup_count < wanted) {
            int32_t b = best_backup(members, member_count, s, &l);
            if (b < 0) {
                break;
            }
            s->backups[s->backup_count++] = b;
            l.replicas[b]++;
            st->backups_added++;
        }
    }
}

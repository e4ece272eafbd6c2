/*
 * placement_test.c — where partitions go (grid/placement.h).
 *
 * The rules, each as a test: balanced primaries and backups, never a
 * primary and its backup on one unit, zones spread when units carry labels,
 * a dead primary replaced by its backup, nothing valid moved, no new backup
 * on a member the slot shuns; and a seeded
 * random run that checks the invariants after every call.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "placement.h"

#define SLOTS_MAX 1000u

static grid_place_slot slots[SLOTS_MAX];

static void unplaced(uint32_t n, bool placeable)
{
    memset(slots, 0, sizeof(slots));
    for (uint32_t i = 0; i < n; i++) {
        slots[i].primary = -1;
        slots[i].placeable = placeable;
    }
}

static void members_all(grid_place_member *m, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        m[i] = (grid_place_member){.zone = NULL, .eligible = true};
    }
}

/* No slot names a member twice; every name is in range. */
static void assert_distinct(uint32_t members, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const grid_place_slot *s = &slots[i];
        cr_assert_leq(s->backup_count, TG_GRID_BACKUPS_MAX);
        cr_assert(s->primary >= -1 && s->primary < (int32_t)members);
        for (uint32_t b = 0; b < s->backup_count; b++) {
            cr_assert(s->backups[b] >= 0 && s->backups[b] < (int32_t)members);
            cr_assert_neq(s->backups[b], s->primary, "slot %u: a backup is its primary", i);
            for (uint32_t k = 0; k < b; k++) {
                cr_assert_neq(s->backups[b], s->backups[k], "slot %u: a backup twice", i);
            }
        }
    }
}

static void loads_of(uint32_t members, uint32_t n, uint32_t *primaries, uint32_t *backups)
{
    memset(primaries, 0, members * sizeof(*primaries));
    memset(backups, 0, members * sizeof(*backups));
    for (uint32_t i = 0; i < n; i++) {
        if (slots[i].primary >= 0) {
            primaries[slots[i].primary]++;
        }
        for (uint32_t b = 0; b < slots[i].backup_count; b++) {
            backups[slots[i].backups[b]]++;
        }
    }
}

static uint32_t spread(const uint32_t *v, uint32_t n)
{
    uint32_t lo = v[0], hi = v[0];
    for (uint32_t i = 1; i < n; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    return hi - lo;
}

Test(placement, new_partitions_spread_evenly_over_the_units)
{
    grid_place_member m[5];
    members_all(m, 5);
    unplaced(1000, true);
    grid_place_stats st;
    grid_place(m, 5, slots, 1000, 1, &st);
    cr_assert_eq(st.placed, 1000);
    cr_assert_eq(st.backups_added, 1000);
    assert_distinct(5, 1000);
    uint32_t p[5], b[5];
    loads_of(5, 1000, p, b);
    for (uint32_t i = 0; i < 5; i++) {
        cr_assert_eq(p[i], 200, "unit %u has %u primaries", i, p[i]);
        cr_assert_eq(b[i], 200, "unit %u has %u backups", i, b[i]);
    }
}

Test(placement, new_partitions_join_the_least_loaded_units)
{
    grid_place_member m[3];
    members_all(m, 3);
    unplaced(30, true);
    for (uint32_t i = 0; i < 20; i++) {
        slots[i].primary = 0; /* unit 0 already serves 20 */
    }
    grid_place(m, 3, slots, 30, 0, NULL);
    uint32_t p[3], b[3];
    loads_of(3, 30, p, b);
    cr_assert_eq(p[0], 20, "nothing valid moves, nothing new goes to the busiest");
    cr_assert_eq(p[1], 5);
    cr_assert_eq(p[2], 5);
}

Test(placement, a_backup_never_lands_on_its_primary)
{
    grid_place_member m[2];
    members_all(m, 2);
    unplaced(10, true);
    grid_place(m, 2, slots, 10, 3, NULL);
    assert_distinct(2, 10);
    for (uint32_t i = 0; i < 10; i++) {
        cr_assert_eq(slots[i].backup_count, 1, "two units: one backup at most");
    }
    grid_place_member one = {.eligible = true};
    unplaced(4, true);
    grid_place(&one, 1, slots, 4, 1, NULL);
    for (uint32_t i = 0; i < 4; i++) {
        cr_assert_eq(slots[i].primary, 0);
        cr_assert_eq(slots[i].backup_count, 0, "one unit: no backup anywhere");
    }
}

Test(placement, backups_go_to_other_zones)
{
    grid_place_member m[6] = {
        {.zone = "a", .eligible = true}, {.zone = "a", .eligible = true},
        {.zone = "b", .eligible = true}, {.zone = "b", .eligible = true},
        {.zone = "c", .eligible = true}, {.zone = "c", .eligible = true},
    };
    unplaced(300, true);
    grid_place(m, 6, slots, 300, 2, NULL);
    assert_distinct(6, 300);
    for (uint32_t i = 0; i < 300; i++) {
        const grid_place_slot *s = &slots[i];
        cr_assert_eq(s->backup_count, 2);
        const char *z0 = m[s->primary].zone, *z1 = m[s->backups[0]].zone,
                   *z2 = m[s->backups[1]].zone;
        cr_assert(strcmp(z0, z1) != 0 && strcmp(z0, z2) != 0 && strcmp(z1, z2) != 0,
                  "partition %u: replicas in zones %s, %s, %s", i, z0, z1, z2);
    }
    uint32_t p[6], b[6];
    loads_of(6, 300, p, b);
    cr_assert_leq(spread(p, 6), 1);
    cr_assert_leq(spread(b, 6), 1);
}

Test(placement, one_zone_is_shared_only_when_no_other_has_room)
{
    /* Zones a, a and b: a primary in b gets its backup in a; one in a gets
     * one in b, then the second backup must share a zone. */
    grid_place_member m[3] = {{.zone = "a", .eligible = true},
                              {.zone = "a", .eligible = true},
                              {.zone = "b", .eligible = true}};
    unplaced(3, true);
    slots[0].primary = 0;
    slots[1].primary = 2;
    slots[2].primary = 1;
    grid_place(m, 3, slots, 3, 1, NULL);
    cr_assert_eq(slots[0].backups[0], 2, "zone a's primary: backup in zone b");
    cr_assert_str_eq(m[slots[1].backups[0]].zone, "a");
    cr_assert_eq(slots[2].backups[0], 2);
    grid_place(m, 3, slots, 3, 2, NULL);
    assert_distinct(3, 3);
    cr_assert_eq(slots[0].backup_count, 2, "a second backup shares a zone rather than none");
}

Test(placement, units_without_a_zone_label_count_as_zones_of_their_own)
{
    grid_place_member m[3] = {{.zone = "a", .eligible = true},
                              {.zone = "a", .eligible = true},
                              {.zone = "", .eligible = true}};
    unplaced(1, true);
    slots[0].primary = 0;
    grid_place(m, 3, slots, 1, 1, NULL);
    cr_assert_eq(slots[0].backups[0], 2, "the unlabelled unit, not the one in zone a");
}

Test(placement, a_dead_primary_is_replaced_by_its_first_backup)
{
    grid_place_member m[3];
    members_all(m, 3);
    m[0].eligible = false;
    unplaced(1, false);
    slots[0].primary = 0;
    slots[0].backup_count = 2;
    slots[0].backups[0] = 2;
    slots[0].backups[1] = 1;
    grid_place_stats st;
    grid_place(m, 3, slots, 1, 1, &st);
    cr_assert_eq(slots[0].primary, 2, "the most up to date backup is promoted");
    cr_assert_eq(slots[0].backup_count, 1);
    cr_assert_eq(slots[0].backups[0], 1);
    cr_assert_eq(st.promoted, 1);
    cr_assert_eq(st.placed, 0);
}

Test(placement, a_dead_primary_without_backups_stays_unless_the_data_can_go_anywhere)
{
    grid_place_member m[2];
    members_all(m, 2);
    m[0].eligible = false;
    unplaced(2, false);
    slots[0].primary = 0;
    slots[1].primary = 0;
    slots[1].placeable = true;
    grid_place_stats st;
    grid_place(m, 2, slots, 2, 1, &st);
    cr_assert_eq(slots[0].primary, 0, "its data is only on the dead unit: it stays unavailable");
    cr_assert_eq(slots[0].backup_count, 0, "no backup for a partition nobody serves");
    cr_assert_eq(slots[1].primary, 1);
    cr_assert_eq(st.placed, 1);
}

Test(placement, bad_backups_are_dropped_and_replaced)
{
    grid_place_member m[4];
    members_all(m, 4);
    m[3].eligible = false;
    unplaced(1, false);
    slots[0].primary = 0;
    slots[0].backup_count = 5;
    int32_t bad[5] = {0, 3, 1, 1, 9}; /* the primary, a dead one, twice, out of range */
    memcpy(slots[0].backups, bad, sizeof(bad));
    grid_place_stats st;
    grid_place(m, 4, slots, 1, 2, &st);
    cr_assert_eq(st.backups_dropped, 4);
    cr_assert_eq(slots[0].backup_count, 2);
    cr_assert_eq(slots[0].backups[0], 1, "the valid backup stays first");
    cr_assert_eq(slots[0].backups[1], 2);
}

Test(placement, nothing_goes_to_units_that_cannot_take_it)
{
    grid_place_member m[2] = {{.eligible = false}, {.eligible = false}};
    unplaced(5, true);
    grid_place_stats st;
    grid_place(m, 2, slots, 5, 1, &st);
    for (uint32_t i = 0; i < 5; i++) {
        cr_assert_eq(slots[i].primary, -1);
    }
    cr_assert_eq(st.placed + st.backups_added, 0);
    grid_place(NULL, 0, slots, 5, 1, &st);
    grid_place(m, 2, NULL, 0, 1, &st);
    cr_assert_eq(st.placed, 0);
}

Test(placement, a_placement_that_is_valid_is_left_exactly_as_it_is)
{
    grid_place_member m[4];
    members_all(m, 4);
    unplaced(200, true);
    grid_place(m, 4, slots, 200, 2, NULL);
    static grid_place_slot before[SLOTS_MAX];
    memcpy(before, slots, sizeof(slots));
    grid_place_stats st;
    grid_place(m, 4, slots, 200, 2, &st);
    cr_assert_eq(memcmp(before, slots, sizeof(slots)), 0);
    cr_assert_eq(st.placed + st.promoted + st.backups_added + st.backups_dropped, 0);
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

Test(placement, random_grids_keep_every_rule)
{
    static const char *const zones[] = {NULL, "", "a", "b", "c"};
    for (int round = 0; round < 500; round++) {
        uint32_t n = 1 + (uint32_t)(rnd() % 12), count = (uint32_t)(rnd() % 200);
        uint32_t wanted = (uint32_t)(rnd() % 4);
        grid_place_member m[12];
        for (uint32_t i = 0; i < n; i++) {
            m[i] = (grid_place_member){.zone = zones[rnd() % 5], .eligible = rnd() % 5 != 0};
        }
        for (uint32_t i = 0; i < count; i++) {
            grid_place_slot *s = &slots[i];
            s->primary = (int32_t)(rnd() % (n + 1)) - 1;
            s->backup_count = (uint32_t)(rnd() % (TG_GRID_BACKUPS_MAX + 1));
            for (uint32_t b = 0; b < s->backup_count; b++) {
                s->backups[b] = (int32_t)(rnd() % (n + 1));
            }
            s->placeable = rnd() % 2 == 0;
        }
        grid_place(m, n, slots, count, wanted, NULL);
        assert_distinct(n, count);
        for (uint32_t i = 0; i < count; i++) {
            const grid_place_slot *s = &slots[i];
            bool serving = s->primary >= 0 && m[s->primary].eligible;
            for (uint32_t b = 0; b < s->backup_count; b++) {
                cr_assert(m[s->backups[b]].eligible, "round %d: a backup on a dead unit", round);
            }
            cr_assert(serving || s->backup_count == 0, "round %d: backups without a primary",
                      round);
            uint32_t free_units = 0;
            for (uint32_t k = 0; serving && s->backup_count < wanted && k < n; k++) {
                bool held = s->primary == (int32_t)k;
                for (uint32_t b = 0; b < s->backup_count; b++) {
                    held = held || s->backups[b] == (int32_t)k;
                }
                free_units += m[k].eligible && !held;
            }
            cr_assert_eq(free_units, 0, "round %d: fewer backups than wanted with units free",
                         round);
        }
    }
}

Test(placement, a_shunned_member_gets_no_new_backup_but_keeps_one_it_has)
{
    grid_place_member m[3];
    members_all(m, 3);
    /* Member 1 would be the least loaded choice: shunned, member 2 gets it. */
    memset(slots, 0, sizeof(slots));
    slots[0] = (grid_place_slot){.primary = 0, .shunned = 1 + 1};
    grid_place(m, 3, slots, 1, 1, NULL);
    cr_assert_eq(slots[0].backup_count, 1);
    cr_assert_eq(slots[0].backups[0], 2);
    /* Two members, the other one shunned: no backup at all. */
    slots[0] = (grid_place_slot){.primary = 0, .shunned = 1 + 1};
    grid_place(m, 2, slots, 1, 1, NULL);
    cr_assert_eq(slots[0].backup_count, 0, "the shunned member was given a backup");
    /* A backup it already has stays: shunning only keeps new ones away. */
    slots[0] = (grid_place_slot){.primary = 0, .backup_count = 1, .backups = {1}, .shunned = 1 + 1};
    grid_place(m, 3, slots, 1, 1, NULL);
    cr_assert_eq(slots[0].backup_count, 1);
    cr_assert_eq(slots[0].backups[0], 1);
}

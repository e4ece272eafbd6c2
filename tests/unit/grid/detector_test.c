/*
 * detector_test.c — the manager's failure detector (grid/detector.h).
 *
 * Times are made up (nanoseconds on a pretend monotonic clock), so every
 * case is exact: dead one nanosecond after the timeout and not before, a
 * heartbeat resets the silence, the manager's own stalls are not counted
 * against anybody, and a manager taking over gives everyone a whole timeout.
 */
#include <criterion/criterion.h>

#include "detector.h"

#define MS (INT64_C(1000000))

static grid_detector d;

/* Passes every 10 ms from `from` to `to` (a manager that is never late). */
static void run(int64_t from, int64_t to)
{
    for (int64_t t = from; t <= to; t += 10 * MS) {
        cr_assert_eq(grid_detector_pass(&d, t), 0);
    }
}

Test(detector, a_unit_is_dead_only_after_the_whole_timeout)
{
    grid_detector_start(&d, 1000, 100, 0);
    grid_heard h;
    grid_detector_heard(&d, &h, 0);
    run(0, 1000 * MS);
    cr_assert_not(grid_detector_dead(&d, &h, 1000 * MS), "exactly the timeout is not yet dead");
    cr_assert(grid_detector_dead(&d, &h, 1000 * MS + 1));
    cr_assert_eq(grid_detector_silence_ns(&d, &h, 1000 * MS), 1000 * MS);
}

Test(detector, every_heartbeat_starts_the_silence_again)
{
    grid_detector_start(&d, 1000, 100, 0);
    grid_heard h;
    grid_detector_heard(&d, &h, 0);
    for (int64_t t = 0; t <= 5000 * MS; t += 10 * MS) {
        grid_detector_pass(&d, t);
        if (t % (100 * MS) == 0) {
            grid_detector_heard(&d, &h, t);
        }
        cr_assert_not(grid_detector_dead(&d, &h, t));
    }
    run(5010 * MS, 6000 * MS);
    cr_assert_not(grid_detector_dead(&d, &h, 6000 * MS));
    cr_assert(grid_detector_dead(&d, &h, 6000 * MS + 1), "dead 1 s after the last heartbeat");
}

Test(detector, the_managers_own_stall_is_not_held_against_a_unit)
{
    grid_detector_start(&d, 1000, 100, 0);
    grid_heard h;
    grid_detector_heard(&d, &h, 0);
    run(0, 500 * MS);
    /* The manager sleeps 3 s (a commit that hangs): 2.9 s of it is absence. */
    cr_assert_eq(grid_detector_pass(&d, 3500 * MS), 2900 * MS);
    cr_assert_eq(grid_detector_silence_ns(&d, &h, 3500 * MS), 600 * MS);
    cr_assert_not(grid_detector_dead(&d, &h, 3500 * MS), "the unit's heartbeats wait unread");
    /* A unit that really stopped is still found: 400 ms more of silence. */
    run(3510 * MS, 3900 * MS);
    cr_assert_not(grid_detector_dead(&d, &h, 3900 * MS));
    cr_assert(grid_detector_dead(&d, &h, 3900 * MS + 1));
}

Test(detector, a_gap_up_to_the_stall_threshold_is_no_absence)
{
    grid_detector_start(&d, 1000, 100, 0);
    cr_assert_eq(grid_detector_pass(&d, 100 * MS), 0);
    cr_assert_eq(grid_detector_pass(&d, 201 * MS), 1 * MS);
    cr_assert_eq(grid_detector_pass(&d, 150 * MS), 0, "a clock that goes back counts nothing");
    cr_assert_eq(d.last_pass_ns, 201 * MS);
}

Test(detector, a_unit_heard_after_a_stall_is_judged_from_then)
{
    grid_detector_start(&d, 1000, 100, 0);
    grid_heard before, after;
    grid_detector_heard(&d, &before, 0);
    grid_detector_pass(&d, 2000 * MS);
    grid_detector_heard(&d, &after, 2000 * MS);
    run(2010 * MS, 3000 * MS);
    cr_assert_not(grid_detector_dead(&d, &after, 3000 * MS));
    cr_assert(grid_detector_dead(&d, &after, 3000 * MS + 1));
    cr_assert(grid_detector_dead(&d, &before, 3000 * MS + 1));
    cr_assert_eq(grid_detector_silence_ns(&d, &after, 1000 * MS), 0, "never negative");
}

Test(detector, a_manager_taking_over_gives_every_unit_a_whole_timeout)
{
    /* The units were last heard by the manager that died; the new one
     * stamps them all when it starts. */
    int64_t start = 7000 * MS;
    grid_detector_start(&d, 1000, 100, start);
    grid_heard h;
    grid_detector_heard(&d, &h, start);
    run(start, start + 1000 * MS);
    cr_assert_not(grid_detector_dead(&d, &h, start + 1000 * MS));
    cr_assert(grid_detector_dead(&d, &h, start + 1000 * MS + 1));
}

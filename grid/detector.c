/*
 * detector.c — silence with the manager's own absences taken out (see
 * detector.h).
 */
#include "detector.h"

#include "tixgrid/assert.h"

void grid_detector_start(grid_detector *d, uint32_t timeout_ms, uint32_t stall_ms, int64_t now_ns)
{
    TG_ASSERT(timeout_ms > 0 && stall_ms > 0);
    *d = (grid_detector){.timeout_ns = (int64_t)timeout_ms * 1000000,
                         .stall_ns = (int64_t)stall_ms * 1000000,
                         .last_pass_ns = now_ns,
                         .asleep_ns = 0};
}

int64_t grid_detector_pass(grid_detector *d, int64_t now_ns)
{
    int64_t gap = now_ns - d->last_pass_ns;
    int64_t absence = gap > d->stall_ns ? gap - d->stall_ns : 0;
    d->asleep_ns += absence;
    if (now_ns > d->last_pass_ns) {
        d->last_pass_ns = now_ns;
    }
    return absence;
}

void grid_detector_heard(const grid_detector *d, grid_heard *h, int64_t now_ns)
{
    h->heard_ns = now_ns;
    h->asleep_ns = d->asleep_ns;
}

int64_t grid_detector_silence_ns(const grid_detector *d, const grid_heard *h, int64_t now_ns)
{
    int64_t silence = (now_ns - h->heard_ns) - (d->asleep_ns - h->asleep_ns);
    return silence > 0 ? silence : 0;
}

bool grid_detector_dead(const grid_detector *d, const grid_heard *h, int64_t now_ns)
{
    return grid_detector_silence_ns(d, h, now_ns) > d->timeout_ns;
}

/*
 * detector.h — the manager's failure detector (grid-internal).
 *
 * A unit is declared dead when the manager has not heard from it (a
 * registration or a heartbeat) for the failure timeout.  The manager is a
 * process too: a pass of its loop can come late (a slow PostgreSQL commit,
 * the machine busy), and then the heartbeats that arrived meanwhile wait
 * in the socket, unread.  Silence the manager itself caused must not kill
 * anybody, so the detector keeps a clock of the manager's own absences:
 * whenever two passes are further apart than the stall threshold, the
 * excess is added to `asleep_ns`, and a unit's silence is the time since it
 * was heard minus the absences since then.  A unit is stamped with that
 * clock when it is heard (grid_heard).
 *
 * Rejected: restarting the watch of every unit after a stall (a busy
 * manager would then never declare anybody dead); measuring silence in
 * heartbeats missed (units would have to count, and a unit restarted with a
 * new count looks like a live one).
 *
 * Pure and single-threaded: the manager's loop owns it.  Times are
 * monotonic nanoseconds (tg_mono_ns).
 */
#ifndef GRID_DETECTOR_H
#define GRID_DETECTOR_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int64_t timeout_ns;   /* silence that makes a unit dead */
    int64_t stall_ns;     /* a gap between passes beyond this is an absence */
    int64_t last_pass_ns; /* the previous pass */
    int64_t asleep_ns;    /* absences so far, summed */
} grid_detector;

/* When a unit was heard, and the detector's absences at that moment. */
typedef struct {
    int64_t heard_ns;
    int64_t asleep_ns;
} grid_heard;

/* Starts watching at now (taking over: nobody has been heard yet, and every
 * unit is stamped now, so each gets a whole timeout).  stall_ms is usually
 * the heartbeat interval: a later pass may have missed a heartbeat. */
void grid_detector_start(grid_detector *d, uint32_t timeout_ms, uint32_t stall_ms, int64_t now_ns);

/* Call at every pass of the loop, before reading the socket; returns the
 * absence this pass found (0 if none). */
int64_t grid_detector_pass(grid_detector *d, int64_t now_ns);

/* Stamps h: heard now. */
void grid_detector_heard(const grid_detector *d, grid_heard *h, int64_t now_ns);

/* The silence of a unit last heard at h, absences excluded (never < 0). */
int64_t grid_detector_silence_ns(const grid_detector *d, const grid_heard *h, int64_t now_ns);

/* True when that silence is longer than the timeout. */
bool grid_detector_dead(const grid_detector *d, const grid_heard *h, int64_t now_ns);

#endif

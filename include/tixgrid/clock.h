/*
 * clock.h — the two clocks of tixgrid.
 *
 * Wall time (tg_now_ms) is what deadlines are stored in: booking holds and
 * payment windows live in shared memory and in PostgreSQL and must mean the
 * same after a restart or on another host.  Monotonic time (tg_mono_ns) is
 * for measuring intervals, timeouts and heartbeats, never stored.
 */
#ifndef TIXGRID_CLOCK_H
#define TIXGRID_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t tg_now_ms(void);

/* Nanoseconds on CLOCK_MONOTONIC. */
int64_t tg_mono_ns(void);

/* Milliseconds on CLOCK_MONOTONIC (tg_mono_ns / 10^6). */
int64_t tg_mono_ms(void);

/* CLOCK_REALTIME ms from now, as pthread_cond_timedwait's deadline (a
 * condition variable's default clock). */
struct timespec tg_realtime_after_ms(uint32_t ms);

/* Formats ms since the epoch as RFC 3339 UTC with milliseconds,
 * "2026-11-21T19:45:07.123Z"; buf must hold TG_RFC3339_BYTES. */
#define TG_RFC3339_BYTES 32
void tg_format_rfc3339(char *buf, int64_t ms);

#endif

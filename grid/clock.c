/*
 * clock.c — wall and monotonic clocks (see clock.h for which is for what).
 */
#include "tixgrid/clock.h"

#include <time.h>

int64_t tg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tg_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tg_mono_ms(void)
{
    return tg_mono_ns() / 1000000;
}

struct timespec tg_realtime_after_ms(uint32_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ms * 1000000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return ts;
}

void tg_format_rfc3339(char *buf, int64_t ms)
{
    time_t secs = (time_t)(ms / 1000);
    int millis = (int)(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, TG_RFC3339_BYTES, "%Y-%m-%dT%H:%M:%S", &tm);
    buf[n] = '.';
    buf[n + 1] = (char)('0' + millis / 100);
    buf[n + 2] = (char)('0' + millis / 10 % 10);
    buf[n + 3] = (char)('0' + millis % 10);
    buf[n + 4] = 'Z';
    buf[n + 5] = '\0';
}

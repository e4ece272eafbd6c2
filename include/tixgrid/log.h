/*
 * log.h — JSON-lines logging to stderr.
 *
 * One line a record:
 *   {"ts":"2026-11-21T19:45:07.123Z","level":"info","comp":"pu","pid":42,"msg":"..."}
 * The message is formatted with printf rules and escaped as a JSON string.
 * Records below the level set by tg_log_init() (or TIXGRID_LOG_LEVEL:
 * debug, info, warn, error) are dropped before formatting.  Safe to call from
 * any thread; each record is written with one write(2), so lines never
 * interleave.
 */
#ifndef TIXGRID_LOG_H
#define TIXGRID_LOG_H

#include "tixgrid/err.h"

typedef enum {
    TG_LOG_DEBUG = 0,
    TG_LOG_INFO = 1,
    TG_LOG_WARN = 2,
    TG_LOG_ERROR = 3,
} tg_log_level;

/* Sets the component name and reads TIXGRID_LOG_LEVEL.  Call once from main. */
void tg_log_init(const char *component);

/* Parses "debug", "info", "warn" or "error". */
tg_err tg_log_level_parse(const char *name, tg_log_level *level);
void tg_log_set_level(tg_log_level level);
tg_log_level tg_log_get_level(void);

/* Redirects records to fd (tests); -1 restores stderr. */
void tg_log_set_fd(int fd);

void tg_log(tg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define tg_log_debug(...) tg_log(TG_LOG_DEBUG, __VA_ARGS__)
#define tg_log_info(...) tg_log(TG_LOG_INFO, __VA_ARGS__)
#define tg_log_warn(...) tg_log(TG_LOG_WARN, __VA_ARGS__)
#define tg_log_error(...) tg_log(TG_LOG_ERROR, __VA_ARGS__)

/* Writes str as the body of a JSON string (no quotes) into buf; always
 * NUL-terminates; returns the length written, truncating on a character
 * boundary when buf is too small. */
unsigned long tg_json_escape(char *buf, unsigned long buf_size, const char *str);

#endif

/*
 * log.c — JSON-lines logging to stderr (see log.h).
 *
 * Each record is formatted into a stack buffer of TG_LOG_LINE_BYTES and
 * written with a single write(2): lines from many threads or processes
 * sharing one stderr never interleave.  A message longer than the buffer is
 * truncated (on a character boundary), never split.  The level and the
 * component are set once at start-up; the level is read with a relaxed atomic
 * so that tests may change it while other threads log.
 */
#include "tixgrid/log.h"
#include "tixgrid/clock.h"
#include "tixgrid/limits.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int log_level = TG_LOG_INFO;
static int log_fd = -1;
static char log_component[32] = "tixgrid";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

tg_err tg_log_level_parse(const char *name, tg_log_level *level)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (tg_log_level)i;
            return TG_OK;
        }
    }
    return TG_EINVAL;
}

void tg_log_set_level(tg_log_level level)
{
    __atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

tg_log_level tg_log_get_level(void)
{
    return (tg_log_level)__atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void tg_log_set_fd(int fd)
{
    __atomic_store_n(&log_fd, fd, __ATOMIC_RELAXED);
}

void tg_log_init(const char *component)
{
    /* Escaped once here, so every record can print it as it is. */
    tg_json_escape(log_component, sizeof(log_component), component);
    const char *env = getenv("TIXGRID_LOG_LEVEL");
    tg_log_level level;
    if (env != NULL && env[0] != '\0') {
        if (tg_log_level_parse(env, &level) == TG_OK) {
            tg_log_set_level(level);
        } else {
            tg_log_warn("TIXGRID_LOG_LEVEL=%s is not debug, info, warn or error; using info",
                        env);
        }
    }
}

/* Length of the well-formed UTF-8 sequence at s (1 to 4), or 0 when s does
 * not start one: a stray or truncated lead byte, or a lone continuation. */
static unsigned utf8_len(const unsigned char *s)
{
    unsigned len = 0;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
    }
    for (unsigned i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0; /* also stops at the NUL: it is not a continuation byte */
        }
    }
    return len;
}

/* Escapes the character at s into tmp; returns its length and sets *used
 * to the input bytes it consumed. */
static unsigned escape_one(const unsigned char *s, char tmp[8], unsigned *used)
{
    *used = 1;
    if (*s == '"' || *s == '\\') {
        tmp[0] = '\\';
        tmp[1] = (char)*s;
        return 2;
    }
    if (*s < 0x20 || *s == 0x7f) {
        return (unsigned)snprintf(tmp, 8, "\\u%04x", *s);
    }
    if (*s < 0x80) {
        tmp[0] = (char)*s;
        return 1;
    }
    unsigned len = utf8_len(s);
    if (len == 0) {
        memcpy(tmp, "\xef\xbf\xbd", 3); /* U+FFFD: a byte that is not UTF-8 is never copied */
        return 3;
    }
    memcpy(tmp, s, len);
    *used = len;
    return len;
}

unsigned long tg_json_escape(char *buf, unsigned long buf_size, const char *str)
{
    unsigned long n = 0;
    const unsigned char *s = (const unsigned char *)str;
    while (*s != '\0') {
        char tmp[8];
        unsigned used;
        unsigned len = escape_one(s, tmp, &used);
        if (n + len + 1 > buf_size) {
            break;
        }
        memcpy(buf + n, tmp, len);
        n += len;
        s += used;
    }
    if (buf_size > 0) {
        buf[n] = '\0';
    }
    return n;
}

void tg_log(tg_log_level level, const char *fmt, ...)
{
    if ((int)level < __atomic_load_n(&log_level, __ATOMIC_RELAXED)) {
        return;
    }
    char msg[TG_LOG_LINE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    char ts[TG_RFC3339_BYTES];
    tg_format_rfc3339(ts, tg_now_ms());
    char line[TG_LOG_LINE_BYTES];
    int head = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"comp\":\"%s\","
                                            "\"pid\":%d,\"msg\":\"",
                        ts, level_names[level], log_component, (int)getpid());
    /* Leave room for the closing "}\n. */
    unsigned long body = tg_json_escape(line + head, sizeof(line) - (size_t)head - 3, msg);
    size_t len = (size_t)head + body;
    memcpy(line + len, "\"}\n", 3);
    len += 3;
    int fd = __atomic_load_n(&log_fd, __ATOMIC_RELAXED);
    ssize_t rc = write(fd >= 0 ? fd : STDERR_FILENO, line, len);
    (void)rc; /* nowhere left to report a failed log write */
}

/*
 * runtime_test.c — the shared runtime of grid/: error names, JSON escaping,
 * JSON-lines logging, RFC 3339 time, condition-variable deadlines, seat
 * words, booking ids, seat-state names and the command-line number parser.
 *
 * Log lines are checked with a small strict parser of flat JSON objects
 * (string and integer values only) that also checks UTF-8, rather than with
 * jansson: the unit-test executables link only the part under test and
 * criterion (tests/meson.build), and a log line is exactly such an object.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tixgrid/cli.h"
#include "tixgrid/clock.h"
#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/log.h"
#include "tixgrid/seat.h"

/* ---- helpers: UTF-8 and a strict flat-JSON parser ----------------------- */

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (i + n > len) {
            return false;
        }
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n;
    }
    return true;
}

#define JSON_FIELDS_MAX  8
#define JSON_VALUE_BYTES 4096

typedef struct {
    unsigned count;
    char keys[JSON_FIELDS_MAX][32];
    char values[JSON_FIELDS_MAX][JSON_VALUE_BYTES]; /* strings unescaped; numbers as text */
    bool is_string[JSON_FIELDS_MAX];
} json_flat;

/* Parses a JSON string body starting after the opening quote; stores the
 * unescaped text (\uXXXX below 0x80 only, which is all the logger emits).
 * Returns the position after the closing quote, or NULL when malformed. */
static const char *json_parse_string(const char *s, char *out, size_t out_size)
{
    size_t n = 0;
    while (*s != '"') {
        unsigned char c = (unsigned char)*s;
        char ch;
        if (c == '\0' || c < 0x20) {
            return NULL; /* unterminated, or a raw control character */
        }
        if (c == '\\') {
            s++;
            switch (*s) {
            case '"':
                ch = '"';
                break;
            case '\\':
                ch = '\\';
                break;
            case '/':
                ch = '/';
                break;
            case 'b':
                ch = '\b';
                break;
            case 'f':
                ch = '\f';
                break;
            case 'n':
                ch = '\n';
                break;
            case 'r':
                ch = '\r';
                break;
            case 't':
                ch = '\t';
                break;
            case 'u': {
                unsigned v = 0;
                for (int k = 1; k <= 4; k++) {
                    char h = s[k];
                    unsigned d;
                    if (h >= '0' && h <= '9') {
                        d = (unsigned)(h - '0');
                    } else if (h >= 'a' && h <= 'f') {
                        d = (unsigned)(h - 'a' + 10);
                    } else if (h >= 'A' && h <= 'F') {
                        d = (unsigned)(h - 'A' + 10);
                    } else {
                        return NULL;
                    }
                    v = v * 16 + d;
                }
                if (v >= 0x80) {
                    return NULL;
                }
                ch = (char)v;
                s += 4;
                break;
            }
            default:
                return NULL;
            }
            s++;
        } else {
            ch = *s++;
        }
        if (n + 1 >= out_size) {
            return NULL;
        }
        out[n++] = ch;
    }
    out[n] = '\0';
    return s + 1;
}

/* Parses exactly one flat object {"k":"v","k":123,...} that fills text. */
static bool json_flat_parse(const char *text, json_flat *out)
{
    memset(out, 0, sizeof(*out));
    const char *s = text;
    if (*s++ != '{') {
        return false;
    }
    for (;;) {
        if (out->count == JSON_FIELDS_MAX || *s++ != '"') {
            return false;
        }
        unsigned i = out->count;
        s = json_parse_string(s, out->keys[i], sizeof(out->keys[i]));
        if (s == NULL || *s++ != ':') {
            return false;
        }
        if (*s == '"') {
            out->is_string[i] = true;
            s = json_parse_string(s + 1, out->values[i], sizeof(out->values[i]));
            if (s == NULL) {
                return false;
            }
        } else {
            size_t n = 0;
            if (*s == '-') {
                out->values[i][n++] = *s++;
            }
            if (*s < '0' || *s > '9') {
                return false;
            }
            while (*s >= '0' && *s <= '9' && n < 30) {
                out->values[i][n++] = *s++;
            }
        }
        out->count++;
        if (*s == '}') {
            return s[1] == '\0';
        }
        if (*s++ != ',') {
            return false;
        }
    }
}

static const char *json_get(const json_flat *j, const char *key)
{
    for (unsigned i = 0; i < j->count; i++) {
        if (strcmp(j->keys[i], key) == 0) {
            return j->values[i];
        }
    }
    return NULL;
}

/* Runs tg_log into a pipe and returns everything it wrote (NUL-terminated). */
static size_t capture_log(char *buf, size_t size, tg_log_level level, const char *msg)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    tg_log_set_fd(fds[1]);
    tg_log(level, "%s", msg);
    tg_log_set_fd(-1);
    close(fds[1]);
    size_t n = 0;
    for (;;) {
        cr_assert_lt(n, size - 1, "log output larger than the capture buffer");
        ssize_t r = read(fds[0], buf + n, size - 1 - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        cr_assert_geq(r, 0);
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    close(fds[0]);
    buf[n] = '\0';
    return n;
}

/* Asserts that line is one complete, valid JSON-lines record and parses it. */
static void assert_one_json_line(const char *line, size_t len, json_flat *out)
{
    cr_assert_gt(len, 1u, "nothing was logged");
    cr_assert_leq(len, TG_LOG_LINE_BYTES, "a record is at most TG_LOG_LINE_BYTES");
    cr_assert_eq(line[len - 1], '\n', "a record ends with a newline");
    cr_assert_eq(memchr(line, '\n', len - 1), NULL, "a record is exactly one line");
    cr_assert(utf8_valid((const unsigned char *)line, len), "a record is valid UTF-8");
    char body[TG_LOG_LINE_BYTES + 1];
    memcpy(body, line, len - 1);
    body[len - 1] = '\0';
    cr_assert(json_flat_parse(body, out), "not a valid flat JSON object: %s", body);
}

/* ---- errors ------------------------------------------------------------- */

Test(err, every_code_has_a_sentence_and_a_distinct_snake_case_name)
{
    for (int a = 0; a < TG_ERR_COUNT_; a++) {
        const char *name = tg_errname((tg_err)a);
        const char *text = tg_strerror((tg_err)a);
        cr_assert_not_null(name, "code %d has no name", a);
        cr_assert_not_null(text, "code %d has no sentence", a);
        cr_assert_gt(strlen(name), 0u);
        cr_assert_gt(strlen(text), 0u);
        cr_assert_str_neq(name, "unknown_error", "code %d falls into the unknown name", a);
        for (const char *c = name; *c != '\0'; c++) {
            cr_assert((*c >= 'a' && *c <= 'z') || *c == '_', "name %s is not snake_case", name);
        }
        for (int b = 0; b < a; b++) {
            cr_assert_str_neq(name, tg_errname((tg_err)b), "codes %d and %d share a name", a, b);
            cr_assert_str_neq(text, tg_strerror((tg_err)b), "codes %d and %d share a sentence", a,
                              b);
        }
    }
}

Test(err, ok_is_named_ok_and_well_known_codes_keep_their_api_names)
{
    cr_assert_str_eq(tg_errname(TG_OK), "ok");
    cr_assert_str_eq(tg_errname(TG_ESEAT_TAKEN), "seat_taken");
    cr_assert_str_eq(tg_errname(TG_EBACKLOG), "persistence_backlog");
}

Test(err, out_of_range_codes_get_a_generic_name_and_sentence)
{
    cr_assert_str_eq(tg_errname(TG_ERR_COUNT_), "unknown_error");
    cr_assert_str_eq(tg_strerror(TG_ERR_COUNT_), "unknown error");
    cr_assert_str_eq(tg_errname((tg_err)-1), "unknown_error");
    cr_assert_str_eq(tg_strerror((tg_err)1000), "unknown error");
}

/* ---- JSON escaping ------------------------------------------------------ */

Test(json_escape, escapes_quotes_and_backslashes)
{
    char buf[64];
    unsigned long n = tg_json_escape(buf, sizeof(buf), "say \"hi\" \\o/");
    cr_assert_str_eq(buf, "say \\\"hi\\\" \\\\o/");
    cr_assert_eq(n, strlen(buf));
}

Test(json_escape, escapes_every_control_character_as_u_escape)
{
    char in[2] = {0, 0};
    for (int c = 1; c < 0x20; c++) {
        char buf[16];
        char want[16];
        in[0] = (char)c;
        unsigned long n = tg_json_escape(buf, sizeof(buf), in);
        snprintf(want, sizeof(want), "\\u%04x", c);
        cr_assert_str_eq(buf, want, "control character 0x%02x", c);
        cr_assert_eq(n, 6u);
    }
}

Test(json_escape, keeps_utf8_and_plain_text_unchanged)
{
    const char *in = "Caf\xc3\xa9 \xe2\x82\xac 5 \xf0\x9f\x8e\xb5 ok/";
    char buf[64];
    unsigned long n = tg_json_escape(buf, sizeof(buf), in);
    cr_assert_str_eq(buf, in);
    cr_assert_eq(n, strlen(in));
}

Test(json_escape, empty_string_gives_empty_output)
{
    char buf[4] = "xyz";
    cr_assert_eq(tg_json_escape(buf, sizeof(buf), ""), 0u);
    cr_assert_str_eq(buf, "");
}

Test(json_escape, truncation_always_nul_terminates_and_reports_the_length)
{
    char buf[8];
    memset(buf, 'X', sizeof(buf));
    unsigned long n = tg_json_escape(buf, sizeof(buf), "abcdefghijkl");
    cr_assert_eq(n, 7u);
    cr_assert_str_eq(buf, "abcdefg");

    char one[1] = {'X'};
    cr_assert_eq(tg_json_escape(one, sizeof(one), "abc"), 0u);
    cr_assert_eq(one[0], '\0');
}

Test(json_escape, truncation_never_splits_a_utf8_sequence)
{
    /* "a€€" is 1 + 3 + 3 bytes; try every buffer size. */
    const char *in = "a\xe2\x82\xac\xe2\x82\xac";
    static const unsigned long expect_len[] = {0, 0, 1, 1, 1, 4, 4, 4, 7};
    for (unsigned long size = 1; size <= 8; size++) {
        char buf[16];
        memset(buf, 'X', sizeof(buf));
        unsigned long n = tg_json_escape(buf, size, in);
        cr_assert_eq(n, expect_len[size], "size %lu: length %lu", size, n);
        cr_assert_eq(buf[n], '\0', "size %lu: not NUL-terminated", size);
        cr_assert_eq(memcmp(buf, in, n), 0);
        cr_assert(utf8_valid((const unsigned char *)buf, n));
    }
}

Test(json_escape, truncation_never_splits_an_escape_sequence)
{
    /* "a\"" escapes to a\" (3 bytes) and "\x01" to \u0001 (6 bytes). */
    char buf[16];
    cr_assert_eq(tg_json_escape(buf, 3, "a\"b"), 1u);
    cr_assert_str_eq(buf, "a");
    cr_assert_eq(tg_json_escape(buf, 7, "a\x01"), 1u);
    cr_assert_str_eq(buf, "a");
    cr_assert_eq(tg_json_escape(buf, 8, "a\x01"), 7u);
    cr_assert_str_eq(buf, "a\\u0001");
}

/* Malformed UTF-8 in a message (a user-supplied name, say) must still give a
 * well-formed JSON string: a quote, backslash or control character after a
 * stray lead byte must be escaped, never copied raw into the line. */
Test(json_escape, a_stray_utf8_lead_byte_never_lets_a_quote_or_newline_through_raw)
{
    static const char *const inputs[] = {
        "\xc3\"}, {\"level\":\"error",
        "\xe2\\\"",
        "\xf0\n\n\n",
    };
    for (unsigned i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        char buf[64];
        char line[80];
        tg_json_escape(buf, sizeof(buf), inputs[i]);
        snprintf(line, sizeof(line), "{\"msg\":\"%s\"}", buf);
        json_flat j;
        cr_expect(json_flat_parse(line, &j), "input %u escapes to an invalid JSON string: %s", i,
                  line);
    }
}

/* ---- logging ------------------------------------------------------------ */

Test(log, writes_one_valid_json_line_with_the_documented_fields)
{
    tg_log_init("unit");
    tg_log_set_level(TG_LOG_DEBUG);
    char out[4 * TG_LOG_LINE_BYTES];
    size_t n = capture_log(out, sizeof(out), TG_LOG_WARN, "seat \"A-1\" is \\ taken\n\tnext");
    json_flat j;
    assert_one_json_line(out, n, &j);

    cr_assert_str_eq(j.keys[0], "ts");
    cr_assert_str_eq(json_get(&j, "level"), "warn");
    cr_assert_str_eq(json_get(&j, "comp"), "unit");
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    cr_assert_str_eq(json_get(&j, "pid"), pid);
    cr_assert_str_eq(json_get(&j, "msg"), "seat \"A-1\" is \\ taken\n\tnext");

    const char *ts = json_get(&j, "ts");
    cr_assert_eq(strlen(ts), 24u, "ts %s is not YYYY-MM-DDTHH:MM:SS.mmmZ", ts);
    cr_assert_eq(ts[10], 'T');
    cr_assert_eq(ts[19], '.');
    cr_assert_eq(ts[23], 'Z');
}

/* The component is chosen by the program, not by users, but a line must stay
 * valid JSON whatever it is. */
Test(log, a_component_name_is_escaped_like_the_message)
{
    tg_log_init("odd\"comp\\");
    char out[4 * TG_LOG_LINE_BYTES];
    size_t n = capture_log(out, sizeof(out), TG_LOG_ERROR, "x");
    json_flat j;
    assert_one_json_line(out, n, &j);
    cr_assert_str_eq(json_get(&j, "comp"), "odd\"comp\\");
}

Test(log, each_level_is_named_in_the_record)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    tg_log_set_level(TG_LOG_DEBUG);
    for (int level = TG_LOG_DEBUG; level <= TG_LOG_ERROR; level++) {
        char out[4 * TG_LOG_LINE_BYTES];
        size_t n = capture_log(out, sizeof(out), (tg_log_level)level, "x");
        json_flat j;
        assert_one_json_line(out, n, &j);
        cr_assert_str_eq(json_get(&j, "level"), names[level]);
    }
}

Test(log, drops_records_below_the_level)
{
    tg_log_set_level(TG_LOG_WARN);
    cr_assert_eq(tg_log_get_level(), TG_LOG_WARN);
    char out[4 * TG_LOG_LINE_BYTES];
    cr_assert_eq(capture_log(out, sizeof(out), TG_LOG_DEBUG, "dropped"), 0u);
    cr_assert_eq(capture_log(out, sizeof(out), TG_LOG_INFO, "dropped"), 0u);
    cr_assert_gt(capture_log(out, sizeof(out), TG_LOG_WARN, "kept"), 0u);
    cr_assert_gt(capture_log(out, sizeof(out), TG_LOG_ERROR, "kept"), 0u);
}

Test(log, default_level_is_info)
{
    cr_assert_eq(tg_log_get_level(), TG_LOG_INFO);
}

Test(log, init_reads_the_level_from_the_environment)
{
    cr_assert_eq(setenv("TIXGRID_LOG_LEVEL", "error", 1), 0);
    tg_log_init("unit");
    cr_assert_eq(tg_log_get_level(), TG_LOG_ERROR);
}

Test(log, init_keeps_info_when_the_environment_level_is_unknown)
{
    cr_assert_eq(setenv("TIXGRID_LOG_LEVEL", "verbose", 1), 0);
    int devnull = open("/dev/null", O_WRONLY);
    cr_assert_geq(devnull, 0);
    tg_log_set_fd(devnull);
    tg_log_init("unit");
    tg_log_set_fd(-1);
    close(devnull);
    cr_assert_eq(tg_log_get_level(), TG_LOG_INFO);
}

Test(log, a_long_message_is_truncated_to_one_valid_line)
{
    static char msg[3 * TG_LOG_LINE_BYTES];
    memset(msg, 'a', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    char out[4 * TG_LOG_LINE_BYTES];
    size_t n = capture_log(out, sizeof(out), TG_LOG_ERROR, msg);
    json_flat j;
    assert_one_json_line(out, n, &j);
    const char *body = json_get(&j, "msg");
    cr_assert_gt(strlen(body), 1000u);
    cr_assert_eq(strspn(body, "a"), strlen(body));
}

Test(log, a_long_message_of_escapes_and_utf8_is_truncated_on_a_character_boundary)
{
    /* Every third byte position needs escaping or starts a multi-byte
     * character, so wherever the cut falls it falls next to one. */
    static char msg[3 * TG_LOG_LINE_BYTES];
    size_t n = 0;
    while (n + 8 < sizeof(msg)) {
        memcpy(msg + n, "\"\xe2\x82\xac\x01\\", 6);
        n += 6;
    }
    msg[n] = '\0';
    static const int shifts[] = {0, 1, 4, 5}; /* each starts on a character */
    for (unsigned i = 0; i < sizeof(shifts) / sizeof(shifts[0]); i++) {
        int shift = shifts[i];
        char out[4 * TG_LOG_LINE_BYTES];
        size_t len = capture_log(out, sizeof(out), TG_LOG_ERROR, msg + shift);
        json_flat j;
        assert_one_json_line(out, len, &j);
        const char *body = json_get(&j, "msg");
        cr_assert_eq(strncmp(body, msg + shift, strlen(body)), 0, "shift %d", shift);
    }
}

Test(log, level_parse_accepts_the_four_names_only)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        tg_log_level level = (tg_log_level)99;
        cr_assert_eq(tg_log_level_parse(names[i], &level), TG_OK);
        cr_assert_eq(level, (tg_log_level)i);
    }
    static const char *const bad[] = {"", "DEBUG", "warning", "err", "info ", "trace"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_log_level level = TG_LOG_WARN;
        cr_assert_eq(tg_log_level_parse(bad[i], &level), TG_EINVAL, "accepted \"%s\"", bad[i]);
        cr_assert_eq(level, TG_LOG_WARN, "changed the level on \"%s\"", bad[i]);
    }
}

/* ---- clock -------------------------------------------------------------- */

static void assert_rfc3339(int64_t ms, const char *want)
{
    char buf[TG_RFC3339_BYTES];
    memset(buf, 'X', sizeof(buf));
    tg_format_rfc3339(buf, ms);
    cr_assert_str_eq(buf, want, "ms %lld", (long long)ms);
}

Test(clock, formats_the_epoch)
{
    assert_rfc3339(0, "1970-01-01T00:00:00.000Z");
}

Test(clock, formats_milliseconds_with_three_digits)
{
    assert_rfc3339(1, "1970-01-01T00:00:00.001Z");
    assert_rfc3339(1234, "1970-01-01T00:00:01.234Z");
    assert_rfc3339(1795290307123, "2026-11-21T19:45:07.123Z");
}

Test(clock, formats_times_before_the_epoch)
{
    assert_rfc3339(-1, "1969-12-31T23:59:59.999Z");
    assert_rfc3339(-1000, "1969-12-31T23:59:59.000Z");
    assert_rfc3339(-1001, "1969-12-31T23:59:58.999Z");
}

Test(clock, extreme_times_stay_inside_the_buffer)
{
    static const int64_t extremes[] = {INT64_MAX, INT64_MIN, INT64_MIN + 1, -62135596800001};
    for (unsigned i = 0; i < sizeof(extremes) / sizeof(extremes[0]); i++) {
        char buf[TG_RFC3339_BYTES + 8];
        memset(buf, 'X', sizeof(buf));
        tg_format_rfc3339(buf, extremes[i]);
        cr_assert_lt(strnlen(buf, sizeof(buf)), (size_t)TG_RFC3339_BYTES, "ms %lld",
                     (long long)extremes[i]);
        for (size_t k = TG_RFC3339_BYTES; k < sizeof(buf); k++) {
            cr_assert_eq(buf[k], 'X', "wrote past TG_RFC3339_BYTES");
        }
    }
}

Test(clock, wall_and_monotonic_clocks_are_plausible)
{
    int64_t now = tg_now_ms();
    cr_assert_gt(now, INT64_C(1600000000000));
    int64_t a = tg_mono_ns();
    int64_t ms = tg_mono_ms();
    int64_t b = tg_mono_ns();
    cr_assert_geq(b, a);
    cr_assert(ms >= a / 1000000 && ms <= b / 1000000, "the same clock in ms");
}

/* ---- seat words --------------------------------------------------------- */

Test(seat_word, make_and_accessors_round_trip)
{
    tg_seat_word w = tg_seat_word_make(TG_SEAT_RESERVED, 12345, 0xdeadbeefu);
    cr_assert_eq(tg_seat_word_state(w), TG_SEAT_RESERVED);
    cr_assert_eq(tg_seat_word_version(w), 12345u);
    cr_assert_eq(tg_seat_word_booking(w), 0xdeadbeefu);

    for (int s = 0; s < TG_SEAT_STATE_COUNT; s++) {
        tg_seat_word x = tg_seat_word_make((tg_seat_state)s, TG_SEAT_VERSION_MASK, UINT32_MAX);
        cr_assert_eq(tg_seat_word_state(x), (tg_seat_state)s);
        cr_assert_eq(tg_seat_word_version(x), TG_SEAT_VERSION_MASK);
        cr_assert_eq(tg_seat_word_booking(x), UINT32_MAX);
    }
    cr_assert_eq(tg_seat_word_make(TG_SEAT_FREE, 0, 0), 0u, "a FREE seat at version 0 is 0");
}

Test(seat_word, make_masks_the_version_to_29_bits)
{
    tg_seat_word w = tg_seat_word_make(TG_SEAT_SOLD, TG_SEAT_VERSION_MASK + 1u + 7u, 3);
    cr_assert_eq(tg_seat_word_state(w), TG_SEAT_SOLD);
    cr_assert_eq(tg_seat_word_version(w), 7u);
    cr_assert_eq(tg_seat_word_booking(w), 3u);
}

Test(seat_word, next_adds_one_to_the_version)
{
    tg_seat_word w = tg_seat_word_make(TG_SEAT_FREE, 41, 0);
    tg_seat_word n = tg_seat_word_next(w, TG_SEAT_SELECTED, 9);
    cr_assert_eq(tg_seat_word_state(n), TG_SEAT_SELECTED);
    cr_assert_eq(tg_seat_word_version(n), 42u);
    cr_assert_eq(tg_seat_word_booking(n), 9u);
}

Test(seat_word, next_wraps_the_version_without_touching_the_state)
{
    tg_seat_word w = tg_seat_word_make(TG_SEAT_BLOCKED, TG_SEAT_VERSION_MASK, 0);
    tg_seat_word n = tg_seat_word_next(w, TG_SEAT_FREE, 0);
    cr_assert_eq(tg_seat_word_version(n), 0u);
    cr_assert_eq(tg_seat_word_state(n), TG_SEAT_FREE);
    n = tg_seat_word_next(tg_seat_word_make(TG_SEAT_SOLD, TG_SEAT_VERSION_MASK, 5), TG_SEAT_BLOCKED,
                          0);
    cr_assert_eq(tg_seat_word_state(n), TG_SEAT_BLOCKED);
    cr_assert_eq(tg_seat_word_version(n), 0u);
}

Test(seat_word, version_newer_allows_for_wrap_around)
{
    cr_assert(tg_seat_version_newer(1, 0));
    cr_assert_not(tg_seat_version_newer(0, 1));
    cr_assert_not(tg_seat_version_newer(5, 5));
    cr_assert(tg_seat_version_newer(0, TG_SEAT_VERSION_MASK), "0 follows the largest version");
    cr_assert(tg_seat_version_newer(3, TG_SEAT_VERSION_MASK - 2));
    cr_assert_not(tg_seat_version_newer(TG_SEAT_VERSION_MASK, 0));
    uint32_t half = 1u << (TG_SEAT_VERSION_BITS - 1);
    cr_assert(tg_seat_version_newer(half - 1, 0), "less than half the range ahead is newer");
    cr_assert_not(tg_seat_version_newer(half, 0), "half the range ahead is not newer");
    cr_assert_not(tg_seat_version_newer(0, half));
}

/* ---- booking ids -------------------------------------------------------- */

Test(booking_id, make_and_accessors_round_trip)
{
    tg_booking_id id = tg_booking_id_make(5, 7);
    cr_assert_eq(id, (UINT64_C(5) << 32) | 7u);
    cr_assert_eq(tg_booking_id_partition(id), 5u);
    cr_assert_eq(tg_booking_id_seq(id), 7u);
    tg_booking_id big = tg_booking_id_make(TG_PARTITION_ID_MAX, UINT32_MAX);
    cr_assert_eq(tg_booking_id_partition(big), TG_PARTITION_ID_MAX);
    cr_assert_eq(tg_booking_id_seq(big), UINT32_MAX);
    cr_assert_lt(big, UINT64_C(1) << 53, "every id fits a JavaScript number");
}

Test(booking_id, valid_needs_a_partition_in_range_and_a_nonzero_seq)
{
    cr_assert(tg_booking_id_valid(tg_booking_id_make(0, 1)));
    cr_assert(tg_booking_id_valid(tg_booking_id_make(TG_PARTITION_ID_MAX, UINT32_MAX)));
    cr_assert_not(tg_booking_id_valid(tg_booking_id_make(3, 0)));
    cr_assert_not(tg_booking_id_valid(0));
    cr_assert_not(tg_booking_id_valid(tg_booking_id_make(TG_PARTITION_ID_MAX + 1u, 1)));
    cr_assert_not(tg_booking_id_valid(UINT64_MAX));
}

/* ---- state names -------------------------------------------------------- */

Test(seat_state, names_round_trip_through_parse)
{
    static const char *const names[] = {"FREE", "SELECTED", "RESERVED", "SOLD", "BLOCKED"};
    for (int s = 0; s < TG_SEAT_STATE_COUNT; s++) {
        cr_assert_str_eq(tg_seat_state_name((tg_seat_state)s), names[s]);
        tg_seat_state parsed = TG_SEAT_STATE_COUNT;
        cr_assert(tg_seat_state_parse(names[s], &parsed));
        cr_assert_eq(parsed, (tg_seat_state)s);
    }
    cr_assert_null(tg_seat_state_name(TG_SEAT_STATE_COUNT));
}

Test(seat_state, parse_rejects_unknown_names_and_leaves_the_output_alone)
{
    static const char *const bad[] = {"", "free", "Sold", "SOLDX", "SOL", " FREE", "HELD"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_seat_state s = TG_SEAT_BLOCKED;
        cr_assert_not(tg_seat_state_parse(bad[i], &s), "accepted \"%s\"", bad[i]);
        cr_assert_eq(s, TG_SEAT_BLOCKED);
    }
}

Test(booking_status, names_are_the_api_names)
{
    static const char *const names[] = {"created",   "pending_payment", "paid",
                                        "cancelled", "expired",         "failed"};
    for (int s = TG_BOOKING_CREATED; s < TG_BOOKING_STATUS_COUNT; s++) {
        cr_assert_str_eq(tg_booking_status_name((tg_booking_status)s), names[s - 1]);
    }
    cr_assert_null(tg_booking_status_name(TG_BOOKING_STATUS_COUNT));
}

/* ---- command-line numbers ----------------------------------------------- */

Test(parse_u64, accepts_whole_decimal_numbers_in_range)
{
    uint64_t v = 99;
    cr_assert_eq(tg_parse_u64("0", 0, 10, &v), TG_OK);
    cr_assert_eq(v, 0u);
    cr_assert_eq(tg_parse_u64("10", 0, 10, &v), TG_OK);
    cr_assert_eq(v, 10u);
    cr_assert_eq(tg_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), TG_OK);
    cr_assert_eq(v, UINT64_MAX);
}

Test(parse_u64, rejects_malformed_text)
{
    static const char *const bad[] = {"", "-1", " 1", "1 ", "1x", "+1", "0x10", "1.5", "x"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 77;
        cr_assert_eq(tg_parse_u64(bad[i], 0, UINT64_MAX, &v), TG_EINVAL, "accepted \"%s\"", bad[i]);
        cr_assert_eq(v, 77u, "wrote the output for \"%s\"", bad[i]);
    }
    uint64_t v = 77;
    cr_assert_eq(tg_parse_u64(NULL, 0, 10, &v), TG_EINVAL);
}

Test(parse_u64, rejects_overflow)
{
    uint64_t v = 77;
    cr_assert_eq(tg_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), TG_EINVAL);
    cr_assert_eq(tg_parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), TG_EINVAL);
    cr_assert_eq(v, 77u);
}

Test(parse_u64, rejects_numbers_outside_min_and_max)
{
    uint64_t v = 77;
    cr_assert_eq(tg_parse_u64("4", 5, 10, &v), TG_EINVAL);
    cr_assert_eq(tg_parse_u64("11", 5, 10, &v), TG_EINVAL);
    cr_assert_eq(v, 77u);
    cr_assert_eq(tg_parse_u64("5", 5, 10, &v), TG_OK);
    cr_assert_eq(v, 5u);
}

/* ---- tg_realtime_after_ms ----------------------------------------------- */

static int64_t timespec_ms(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(clock, a_deadline_is_now_plus_the_delay_with_nanoseconds_in_range)
{
    static const uint32_t delays[] = {0, 1, 999, 1000, 1500, 60000, UINT32_MAX};
    for (size_t i = 0; i < sizeof(delays) / sizeof(delays[0]); i++) {
        int64_t before = tg_now_ms();
        struct timespec until = tg_realtime_after_ms(delays[i]);
        int64_t after = tg_now_ms();
        cr_assert(until.tv_nsec >= 0 && until.tv_nsec < 1000000000L, "%u ms: tv_nsec %ld",
                  delays[i], until.tv_nsec);
        int64_t at = timespec_ms(until);
        cr_assert(at >= before + delays[i] - 1 && at <= after + delays[i] + 1,
                  "%u ms: %lld not in [%lld, %lld]", delays[i], (long long)at,
                  (long long)before + delays[i], (long long)after + delays[i]);
    }
}

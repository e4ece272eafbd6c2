/*
 * events.c — the public event reads: the list of current events, full-text
 * search, one event with its layout summary, and the body of an event's seat
 * availability.
 *
 * Catalogue reads (list, search, one event) come from PostgreSQL, never on a
 * loop thread: a handler checks its query parameters, builds a job and hands
 * it to the pool (gw_db_submit).  The pool thread runs one parameterized
 * statement per step (PQexecParams, never text pasted into SQL), builds the
 * JSON with jansson and serializes it there, so the loop thread only copies
 * bytes into the reply.  Times are formatted by PostgreSQL as RFC 3339 UTC
 * to the second; money is minor units from `sections`.  The list and the
 * search read the view `events_current` (on sale, sale window open, not yet
 * begun), whose `starts_at > now()` lets the planner skip past years'
 * partitions; one event is found through `event_keys` (one row per id) so
 * that only its year's partition is probed.  Drafts are never shown.
 *
 * The cache.  Crowds read the same few pages at an on-sale, so every answer
 * of those three routes is kept for cfg.events_cache_ms in one process-wide
 * table (all loop threads share it): 256 sets of 4 entries keyed by the
 * route and the normalized query (parsed numbers and times, not the raw
 * text, so `page=01` and `page=1` share an entry), holding the serialized
 * body in a reference-counted block.  One mutex guards the table; under it
 * a reader only finds an entry and takes a reference, a writer only swaps a
 * pointer and copies the key — nothing is allocated, serialized or freed
 * while it is held.  A full set evicts its oldest entry; the bodies held
 * are bounded in bytes as well as in count.  Rejected: one global LRU list
 * with a hash index — exact "oldest overall" eviction, but more code and
 * more pointer chasing under the lock for no gain that matters here.
 *
 * Stampedes.  When an entry expires, the first request to notice becomes
 * its refresher and queries PostgreSQL; until its result is stored (or for
 * GW_EVENTS_REFRESH_MS at most, should it be lost) the others keep getting
 * the expired body instead of all querying at once.  An expired body is
 * also the answer, for up to GW_EVENTS_STALE_MS after expiry, when the
 * refresh fails (PostgreSQL down, pool full): event data changes rarely,
 * and a shop that still sells seats from the grid should still show its
 * events.  Results are stored by the job's free function, which the
 * gateway runs exactly once whether or not the request is still there, so
 * a client that hangs up does not leave the entry stuck "refreshing".
 *
 * The availability body is built here (gw_availability_render) from
 * per-partition counts; availability.c counts them from the worker's
 * snapshots for GET /availability and the live stream.  Partitions are
 * merged into one event: a section or row split by a partition boundary is
 * the last of one partition and the first of the next (sections and rows
 * are contiguous in seat order, 001_core.sql), so merging compares only
 * those two.  `version` is the sum of the partitions' versions.  The body
 * is written with a bounded buffer instead of jansson: it can carry
 * thousands of rows and sits on the shoppers' hot path.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "gateway.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

/* Paging: API.md, "Conventions". */
#define GW_EVENTS_PAGE_MAX 1000000u
#define GW_EVENTS_PAGE_SIZE_DEFAULT 20u
#define GW_EVENTS_PAGE_SIZE_MAX 100u
/* Bytes of a search query. */
#define GW_EVENTS_QUERY_BYTES_MAX 200u
/* Bytes of a type filter, NUL included (events_type_format: 32 characters). */
#define GW_EVENTS_TYPE_BYTES 33u
/* Bytes of a provider filter, NUL included (events_provider_length: 100
 * characters of at most 4 bytes). */
#define GW_EVENTS_PROVIDER_BYTES 401u
/* Bytes of a normalized time, "2027-03-01T19:30:00.000000Z" and NUL. */
#define GW_EVENTS_TIME_BYTES 32u

/* The cache: entries, their key size, and the bytes of bodies it holds. */
#define GW_EVENTS_CACHE_SETS 256u
#define GW_EVENTS_CACHE_WAYS 4u
#define GW_EVENTS_CACHE_KEY_BYTES 640u /* the longest list key is about 520 */
#define GW_EVENTS_CACHE_BODY_BYTES_MAX (256u << 10)
#define GW_EVENTS_CACHE_BYTES_MAX (64u << 20)
/* A refresh not stored after this long is presumed lost; another request
 * takes over. */
#define GW_EVENTS_REFRESH_MS 10000
/* How long after expiry a body may still answer while refreshing or when
 * the refresh failed. */
#define GW_EVENTS_STALE_MS 300000

#define NS_PER_MS INT64_C(1000000)

/* ---- Bodies: immutable, shared by the cache and the requests serving them */

typedef struct {
    atomic_uint refs;
    int status; /* 200 (data is the JSON body), 404, or 503 (no data) */
    size_t len;
    char data[]; /* len bytes and a NUL */
} events_body;

static events_body *body_new(int status, const char *data, size_t len)
{
    events_body *b = malloc(sizeof(*b) + len + 1);
    if (b == NULL) {
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->status = status;
    b->len = len;
    if (len > 0) {
        memcpy(b->data, data, len);
    }
    b->data[len] = '\0';
    return b;
}

static events_body *body_ref(events_body *b)
{
    if (b != NULL) {
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    }
    return b;
}

static void body_unref(events_body *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        free(b);
    }
}

/* ---- The cache (process-wide) ------------------------------------------- */

typedef struct {
    uint64_t hash;            /* of key; 0: an empty way */
    int64_t stored_ns;        /* the oldest way of a full set is evicted */
    int64_t fresh_until_ns;   /* answers without a refresh until then */
    int64_t refresh_until_ns; /* a refresh is in flight until then (0: none) */
    events_body *body;
    char key[GW_EVENTS_CACHE_KEY_BYTES];
} cache_entry;

static struct {
    pthread_mutex_t lock; /* everything below */
    size_t bytes;         /* of the bodies held */
    cache_entry sets[GW_EVENTS_CACHE_SETS][GW_EVENTS_CACHE_WAYS];
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* FNV-1a; never 0, which marks an empty way. */
static uint64_t cache_hash(const char *key)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h = (h ^ *p) * UINT64_C(1099511628211);
    }
    return h != 0 ? h : 1;
}

static cache_entry *cache_set(uint64_t hash)
{
    return cache.sets[(hash >> 7) % GW_EVENTS_CACHE_SETS];
}

/* Under the lock: the way holding key, or NULL. */
static cache_entry *cache_find(const char *key, uint64_t hash)
{
    cache_entry *set = cache_set(hash);
    for (uint32_t i = 0; i < GW_EVENTS_CACHE_WAYS; i++) {
        if (set[i].hash == hash && strcmp(set[i].key, key) == 0) {
            return &set[i];
        }
    }
    return NULL;
}

/* Under the lock: the way to store key in — its own, an empty one, or the
 * oldest of the set. */
static cache_entry *cache_victim(const char *key, uint64_t hash)
{
    cache_entry *own = cache_find(key, hash);
    if (own != NULL) {
        return own;
    }
    cache_entry *set = cache_set(hash), *oldest = &set[0];
    for (uint32_t i = 0; i < GW_EVENTS_CACHE_WAYS; i++) {
        if (set[i].hash == 0) {
            return &set[i];
        }
        if (set[i].stored_ns < oldest->stored_ns) {
            oldest = &set[i];
        }
    }
    return oldest;
}

/* Looks key up at now.  Returns false with *out (a reference) when that is
 * the answer: fresh, or expired while another request refreshes it.
 * Returns true when the caller must query — it is the refresher now — with
 * *out the expired body to fall back on, or NULL. */
static bool cache_lookup(const char *key, uint64_t hash, int64_t now, events_body **out)
{
    bool refresh = true;
    *out = NULL;
    pthread_mutex_lock(&cache.lock);
    cache_entry *e = cache_find(key, hash);
    if (e != NULL && now < e->fresh_until_ns + GW_EVENTS_STALE_MS * NS_PER_MS) {
        *out = body_ref(e->body);
        if (now < e->fresh_until_ns || now < e->refresh_until_ns) {
            refresh = false;
        } else {
            e->refresh_until_ns = now + GW_EVENTS_REFRESH_MS * NS_PER_MS;
        }
    }
    pthread_mutex_unlock(&cache.lock);
    return refresh;
}

/* Stores body (a new reference) under key, fresh for ttl_ms from now. */
static void cache_put(const char *key, uint64_t hash, events_body *body, uint32_t ttl_ms)
{
    int64_t now = tg_mono_ns();
    size_t key_len = strlen(key);
    TG_ASSERT(key_len < GW_EVENTS_CACHE_KEY_BYTES);
    events_body *dropped = NULL;
    pthread_mutex_lock(&cache.lock);
    cache_entry *e = cache_victim(key, hash);
    size_t old = e->body != NULL ? e->body->len : 0;
    if (body->len <= GW_EVENTS_CACHE_BODY_BYTES_MAX &&
        cache.bytes - old + body->len <= GW_EVENTS_CACHE_BYTES_MAX) {
        dropped = e->body;
        cache.bytes = cache.bytes - old + body->len;
        e->hash = hash;
        memcpy(e->key, key, key_len + 1);
        e->body = body_ref(body);
        e->stored_ns = now;
        e->fresh_until_ns = now + (int64_t)ttl_ms * NS_PER_MS;
        e->refresh_until_ns = 0;
    } else if (e->hash == hash && strcmp(e->key, key) == 0) {
        e->refresh_until_ns = 0; /* too big to keep: let the next request try */
    }
    pthread_mutex_unlock(&cache.lock);
    body_unref(dropped);
}

/* The refresh of key failed: the next request may try again at once. */
static void cache_abandon(const char *key, uint64_t hash)
{
    pthread_mutex_lock(&cache.lock);
    cache_entry *e = cache_find(key, hash);
    if (e != NULL) {
        e->refresh_until_ns = 0;
    }
    pthread_mutex_unlock(&cache.lock);
}

void gw_events_cache_clear(void)
{
    events_body *dropped[GW_EVENTS_CACHE_SETS * GW_EVENTS_CACHE_WAYS];
    uint32_t n = 0;
    pthread_mutex_lock(&cache.lock);
    for (uint32_t s = 0; s < GW_EVENTS_CACHE_SETS; s++) {
        for (uint32_t w = 0; w < GW_EVENTS_CACHE_WAYS; w++) {
            cache_entry *e = &cache.sets[s][w];
            if (e->body != NULL) {
                dropped[n++] = e->body;
            }
            memset(e, 0, offsetof(cache_entry, key));
            e->key[0] = '\0';
        }
    }
    cache.bytes = 0;
    pthread_mutex_unlock(&cache.lock);
    for (uint32_t i = 0; i < n; i++) {
        body_unref(dropped[i]); /* outside the lock: free() may take a while */
    }
}

/* ---- Query parameters ----------------------------------------------------- */

/* True when s[0..len) is well-formed UTF-8 without control characters (no
 * overlong forms, surrogates or code points above U+10FFFF): PostgreSQL
 * refuses the rest with an error that would otherwise become a 500. */
static bool text_clean(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i], need, lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) {
                return false;
            }
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            return false;
        }
        if (len - i - 1 < need || s[i + 1] < lo || s[i + 1] > hi) {
            return false;
        }
        for (unsigned k = 2; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        i += need + 1;
    }
    return true;
}

/* Reads n decimal digits at s (stops safely at the NUL, not a digit). */
static bool digits(const char *s, unsigned n, unsigned *out)
{
    unsigned v = 0;
    for (unsigned i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

static unsigned month_days(unsigned year, unsigned month)
{
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
 * days_from_civil, for years >= 1). */
static int64_t days_from_civil(unsigned y, unsigned m, unsigned d)
{
    y -= m <= 2;
    unsigned era = y / 400, yoe = y - era * 400;
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + (int64_t)doe - 719468;
}

/* The inverse, for days >= 0. */
static void civil_from_days(int64_t z, unsigned *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (unsigned)(yoe + era * 400) + (*m <= 2);
}

/* The zone of an RFC 3339 time: "Z", or "+HH:MM" / "-HH:MM".  A space
 * stands for '+': an unencoded '+' in a query string arrives as one. */
static bool zone_parse(const char *p, int *offset_min)
{
    unsigned h, m;
    if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
        *offset_min = 0;
        return true;
    }
    if ((p[0] != '+' && p[0] != '-' && p[0] != ' ') || !digits(p + 1, 2, &h) || p[3] != ':' ||
        !digits(p + 4, 2, &m) || p[6] != '\0' || h > 23 || m > 59) {
        return false;
    }
    *offset_min = (p[0] == '-' ? -1 : 1) * (int)(h * 60 + m);
    return true;
}

/* "HH:MM:SS[.fraction]" and a zone at p, into microseconds of the day
 * (before the zone) and the zone's offset. */
static bool clock_parse(const char *p, int64_t *day_us, int *offset_min)
{
    unsigned h, mi, s, us = 0, scale = 100000;
    if (!digits(p, 2, &h) || p[2] != ':' || !digits(p + 3, 2, &mi) || p[5] != ':' ||
        !digits(p + 6, 2, &s) || h > 23 || mi > 59 || s > 59) {
        return false;
    }
    p += 8;
    if (*p == '.') {
        const char *first = ++p;
        for (; *p >= '0' && *p <= '9' && p - first < 9; p++) {
            us += (unsigned)(*p - '0') * scale; /* digits past the sixth add 0 */
            scale /= 10;
        }
        if (p == first || (*p >= '0' && *p <= '9')) {
            return false;
        }
    }
    *day_us = ((int64_t)h * 3600 + mi * 60 + s) * 1000000 + us;
    return zone_parse(p, offset_min);
}

/* An RFC 3339 time ("2027-03-01T19:30:00Z", "2027-03-01T20:30:00.5+01:00")
 * or a date ("2027-03-01": midnight UTC) in years 1970..9999, into
 * microseconds since the epoch; *date_only tells which form it was. */
static bool time_parse(const char *s, int64_t *out_us, bool *date_only)
{
    unsigned y, mo, d;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 ||
        d > month_days(y, mo)) {
        return false;
    }
    int64_t day_us = 0;
    int offset_min = 0;
    *date_only = s[10] == '\0';
    if (!*date_only && ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
                        !clock_parse(s + 11, &day_us, &offset_min))) {
        return false;
    }
    *out_us =
        days_from_civil(y, mo, d) * 86400 * 1000000 + day_us - (int64_t)offset_min * 60 * 1000000;
    return *out_us >= 0;
}

/* Microseconds since the epoch as "2027-03-01T19:30:00.000000Z". */
static void time_format(char out[GW_EVENTS_TIME_BYTES], int64_t us)
{
    TG_ASSERT(us >= 0);
    int64_t secs = us / 1000000;
    unsigned y, m, d, sod = (unsigned)(secs % 86400);
    civil_from_days(secs / 86400, &y, &m, &d);
    int n = snprintf(out, GW_EVENTS_TIME_BYTES, "%04u-%02u-%02uT%02u:%02u:%02u.%06uZ", y, m, d,
                     sod / 3600, sod / 60 % 60, sod % 60, (unsigned)(us % 1000000));
    TG_ASSERT(n > 0 && n < (int)GW_EVENTS_TIME_BYTES);
}

/* The query parameter name as a time bound, or "" when absent or empty.
 * date_from is inclusive; date_to includes its whole day when it is a
 * date and the instant itself when it is a time: out is always the
 * exclusive upper bound for date_to. */
static bool time_param(gw_req *r, const char *name, bool upper, char out[GW_EVENTS_TIME_BYTES])
{
    const char *v = gw_query(r, name);
    out[0] = '\0';
    if (v == NULL || v[0] == '\0') {
        return true;
    }
    int64_t us;
    bool date_only;
    if (strlen(v) > 40 || !time_parse(v, &us, &date_only)) {
        gw_reply_error(r, 400, "invalid_parameter",
                       "query parameter %s: expected an RFC 3339 time (2027-03-01T19:30:00Z) or "
                       "a date (2027-03-01) in the years 1970 to 9999",
                       name);
        return false;
    }
    if (upper) {
        us += date_only ? INT64_C(86400000000) : 1;
    }
    time_format(out, us);
    return true;
}

/* type: what events_type_format allows, so that the filter is exact. */
static bool type_param(gw_req *r, char out[GW_EVENTS_TYPE_BYTES])
{
    const char *v = gw_query(r, "type");
    out[0] = '\0';
    if (v == NULL || v[0] == '\0') {
        return true;
    }
    size_t n = strlen(v);
    bool ok = n < GW_EVENTS_TYPE_BYTES && v[0] >= 'a' && v[0] <= 'z';
    for (size_t i = 1; ok && i < n; i++) {
        ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '_' ||
             v[i] == '-';
    }
    if (!ok) {
        gw_reply_error(r, 400, "invalid_parameter",
                       "query parameter type: expected 1 to 32 of a-z, 0-9, '_' and '-', "
                       "starting with a letter");
        return false;
    }
    memcpy(out, v, n + 1);
    return true;
}

/* A free-text parameter of 1..max_bytes bytes of clean UTF-8 into out;
 * when absent or empty, "" if optional, else 400. */
static bool text_param(gw_req *r, const char *name, bool required, size_t max_bytes, char *out)
{
    const char *v = gw_query(r, name);
    out[0] = '\0';
    if (!required && (v == NULL || v[0] == '\0')) {
        return true;
    }
    size_t n = v != NULL ? strlen(v) : 0;
    if (n == 0 || n > max_bytes || !text_clean(v, n)) {
        gw_reply_error(r, 400, "invalid_parameter",
                       "query parameter %s: %sexpected 1 to %zu bytes of UTF-8 text", name,
                       required ? "required; " : "", max_bytes);
        return false;
    }
    memcpy(out, v, n + 1);
    return true;
}

/* ---- PostgreSQL jobs ------------------------------------------------------ */

typedef enum {
    EVENTS_LIST,      /* GET /api/events, /api/concerts */
    EVENTS_SEARCH,    /* GET /api/events/search */
    EVENTS_GET,       /* GET /api/events/{id}, /api/concerts/{id} */
    EVENTS_PLACEMENT, /* availability of an event the map does not know */
} events_query;

typedef struct {
    events_query query;
    /* Input, checked on the loop thread; "" is absent. */
    uint64_t event_id, page, page_size;
    char type[GW_EVENTS_TYPE_BYTES];
    char provider[GW_EVENTS_PROVIDER_BYTES];
    char from[GW_EVENTS_TIME_BYTES], to[GW_EVENTS_TIME_BYTES];
    char q[GW_EVENTS_QUERY_BYTES_MAX + 1];
    /* The cache: hash 0 when not cached. */
    char key[GW_EVENTS_CACHE_KEY_BYTES];
    uint64_t hash;
    uint32_t ttl_ms;
    events_body *stale; /* the expired answer, if the query fails */
    /* Output of the pool thread: body (an answer, cached), or NULL with
     * status 503 (no connection) or 500 (the statement failed). */
    events_body *body;
    int status;
} events_job;

/* to_char keeps the seconds and drops fractions: "2027-03-01T19:30:00Z". */
#define SQL_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* What the pages keep of events_current e (not its tsvector). */
#define SQL_EVENT_COLUMNS                                                                          \
    "e.id, e.title, e.artist, e.venue, e.type, e.provider, e.starts_at, e.sale_starts_at,"         \
    " e.sale_ends_at, e.status, e.currency"

/* The event summary's columns of alias p, in summary_fields order, and the
 * join that finds its prices. */
#define SQL_SUMMARY_COLUMNS                                                                        \
    "p.id, p.title, p.artist, p.venue, p.type, p.provider, " SQL_UTC("p.starts_at") ", "           \
    SQL_UTC("p.sale_starts_at") ", " SQL_UTC("p.sale_ends_at") ", p.status, p.currency,"           \
    " pr.price_min, pr.price_max"
#define SQL_SUMMARY_PRICES                                                                         \
    " LEFT JOIN LATERAL (SELECT min(s.price_minor) AS price_min, max(s.price_minor) AS price_max"  \
    "   FROM sections s WHERE s.event_id = p.id) pr ON true"

/* One row per item of the page, or one row of NULLs beside the total when
 * the page is past the end: the total and the page come from one snapshot. */
static const char list_sql[] =
    "WITH f AS ("
    "  SELECT " SQL_EVENT_COLUMNS " FROM events_current e"
    "   WHERE ($1::text IS NULL OR e.type = $1)"
    "     AND ($2::text IS NULL OR e.provider = $2)"
    "     AND ($3::timestamptz IS NULL OR e.starts_at >= $3)"
    "     AND ($4::timestamptz IS NULL OR e.starts_at < $4)),"
    " p AS (SELECT * FROM f ORDER BY starts_at, id LIMIT $5 OFFSET $6)"
    " SELECT n.total, " SQL_SUMMARY_COLUMNS
    " FROM (SELECT count(*) AS total FROM f) n"
    " LEFT JOIN p ON true" SQL_SUMMARY_PRICES
    " ORDER BY p.starts_at, p.id";

/* The `search` column is built with the 'simple' configuration (no
 * stemming, no stop words; 001_core.sql), so the query must use it too. */
static const char search_sql[] =
    "WITH f AS ("
    "  SELECT " SQL_EVENT_COLUMNS ", ts_rank(e.search, q.query) AS rank"
    "    FROM events_current e, websearch_to_tsquery('simple', $1) AS q(query)"
    "   WHERE e.search @@ q.query),"
    " p AS (SELECT * FROM f ORDER BY rank DESC, starts_at, id LIMIT $2 OFFSET $3)"
    " SELECT n.total, " SQL_SUMMARY_COLUMNS
    " FROM (SELECT count(*) AS total FROM f) n"
    " LEFT JOIN p ON true" SQL_SUMMARY_PRICES
    " ORDER BY p.rank DESC, p.starts_at, p.id";

static const char event_sql[] =
    "SELECT " SQL_SUMMARY_COLUMNS
    " FROM event_keys k JOIN events p ON p.id = k.id AND p.starts_at = k.starts_at"
    SQL_SUMMARY_PRICES
    " WHERE k.id = $1 AND p.status <> 'draft'";

/* Rows are counted by their seat number 1: seats are numbered 1.. in each
 * row (001_core.sql), and a row split between partitions still has one. */
static const char sections_sql[] =
    "SELECT s.section_idx, s.name, s.price_minor, s.currency,"
    "       coalesce(c.seat_count, 0), coalesce(c.row_count, 0)"
    "  FROM sections s"
    "  LEFT JOIN (SELECT st.section_idx, count(*) AS seat_count,"
    "                    count(*) FILTER (WHERE st.number = 1) AS row_count"
    "               FROM seats st WHERE st.event_id = $1 GROUP BY st.section_idx) c"
    "    ON c.section_idx = s.section_idx"
    " WHERE s.event_id = $1"
    " ORDER BY s.section_idx";

static const char partitions_sql[] = "SELECT partition_id, first_seat, seat_count"
                                     "  FROM grid_partitions WHERE event_id = $1"
                                     " ORDER BY first_seat";

static const char placement_sql[] =
    "SELECT p.status FROM event_keys k"
    " JOIN events p ON p.id = k.id AND p.starts_at = k.starts_at WHERE k.id = $1";

/* Runs one statement; NULL (logged) when it failed.  A lost connection is
 * an operating condition (warn; the pool reconnects), a refused statement
 * a bug (error).  libpq's text spans lines: folded onto one. */
static PGresult *sql_run(PGconn *db, const char *what, const char *sql, int count,
                         const char *const *params)
{
    PGresult *res = PQexecParams(db, sql, count, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        return res;
    }
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char why[256];
    snprintf(why, sizeof(why), "%s", primary != NULL ? primary : PQerrorMessage(db));
    for (char *c = why; *c != '\0'; c++) {
        *c = *c == '\n' || *c == '\t' ? ' ' : *c;
    }
    bool lost = PQstatus(db) != CONNECTION_OK;
    tg_log(lost ? TG_LOG_WARN : TG_LOG_ERROR, "events: %s: %s (SQLSTATE %s%s)", what, why,
           state != NULL ? state : "none", lost ? ", connection lost" : "");
    PQclear(res);
    return NULL;
}

static long long col_ll(const PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static json_t *col_int(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? json_null() : json_integer(col_ll(res, row, col));
}

static json_t *col_text(const PGresult *res, int row, int col)
{
    json_t *s = PQgetisnull(res, row, col) ? NULL : json_string(PQgetvalue(res, row, col));
    return s != NULL ? s : json_null();
}

/* An event summary from SQL_SUMMARY_COLUMNS starting at column col. */
static json_t *summary_json(const PGresult *res, int row, int col)
{
    static const struct {
        const char *name;
        bool integer;
    } fields[] = {
        {"id", true},           {"title", false},         {"artist", false},
        {"venue", false},       {"type", false},          {"provider", false},
        {"starts_at", false},   {"sale_starts_at", false}, {"sale_ends_at", false},
        {"status", false},      {"currency", false},      {"price_min", true},
        {"price_max", true},
    };
    json_t *o = json_object();
    for (int i = 0; i < (int)(sizeof(fields) / sizeof(fields[0])); i++) {
        json_t *v = fields[i].integer ? col_int(res, row, col + i) : col_text(res, row, col + i);
        json_object_set_new(o, fields[i].name, v);
    }
    return o;
}

/* A page of summaries: column 0 is the total, the summary follows. */
static json_t *page_json(const PGresult *res, const events_job *job)
{
    json_t *items = json_array();
    long long total = PQntuples(res) > 0 ? col_ll(res, 0, 0) : 0;
    for (int row = 0; row < PQntuples(res); row++) {
        if (!PQgetisnull(res, row, 1)) {
            json_array_append_new(items, summary_json(res, row, 1));
        }
    }
    return json_pack("{s:I,s:I,s:I,s:o}", "page", (json_int_t)job->page, "pageSize",
                     (json_int_t)job->page_size, "total", (json_int_t)total, "items", items);
}

static const char *or_null(const char *s)
{
    return s[0] != '\0' ? s : NULL;
}

/* The list or the search page; *doc NULL when a statement failed. */
static void run_page(PGconn *db, const events_job *job, json_t **doc)
{
    char limit[24], offset[24];
    snprintf(limit, sizeof(limit), "%" PRIu64, job->page_size);
    snprintf(offset, sizeof(offset), "%" PRIu64, (job->page - 1) * job->page_size);
    PGresult *res;
    if (job->query == EVENTS_LIST) {
        const char *params[] = {or_null(job->type), or_null(job->provider), or_null(job->from),
                                or_null(job->to),   limit,                  offset};
        res = sql_run(db, "list events", list_sql, 6, params);
    } else {
        const char *params[] = {job->q, limit, offset};
        res = sql_run(db, "search events", search_sql, 3, params);
    }
    *doc = res != NULL ? page_json(res, job) : NULL;
    PQclear(res);
}

/* Adds "seat_count" and "sections" to the event; false when the statement
 * failed. */
static bool run_sections(PGconn *db, const char *id, json_t *event)
{
    const char *params[] = {id};
    PGresult *res = sql_run(db, "read an event's sections", sections_sql, 1, params);
    if (res == NULL) {
        return false;
    }
    json_t *sections = json_array();
    long long seats = 0;
    for (int row = 0; row < PQntuples(res); row++) {
        seats += col_ll(res, row, 4);
        json_array_append_new(
            sections, json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "index", col_int(res, row, 0), "name",
                                col_text(res, row, 1), "price", col_int(res, row, 2), "currency",
                                col_text(res, row, 3), "seat_count", col_int(res, row, 4), "rows",
                                col_int(res, row, 5)));
    }
    PQclear(res);
    json_object_set_new(event, "seat_count", json_integer(seats));
    json_object_set_new(event, "sections", sections);
    return true;
}

/* Adds "partitions" to the event; false when the statement failed. */
static bool run_partitions(PGconn *db, const char *id, json_t *event)
{
    const char *params[] = {id};
    PGresult *res = sql_run(db, "read an event's partitions", partitions_sql, 1, params);
    if (res == NULL) {
        return false;
    }
    json_t *partitions = json_array();
    for (int row = 0; row < PQntuples(res); row++) {
        json_array_append_new(partitions,
                              json_pack("{s:o,s:o,s:o}", "partition_id", col_int(res, row, 0),
                                        "first_seat", col_int(res, row, 1), "seat_count",
                                        col_int(res, row, 2)));
    }
    PQclear(res);
    json_object_set_new(event, "partitions", partitions);
    return true;
}

/* One event with its layout summary; *status 404 when there is none to
 * show.  Three statements, not one snapshot: a layout does not change once
 * its event is published. */
static void run_event(PGconn *db, const events_job *job, json_t **doc, int *status)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, job->event_id);
    const char *params[] = {id};
    PGresult *res = sql_run(db, "read an event", event_sql, 1, params);
    *doc = NULL;
    if (res == NULL) {
        return;
    }
    if (PQntuples(res) == 0) {
        *status = 404;
        PQclear(res);
        return;
    }
    json_t *event = summary_json(res, 0, 0);
    PQclear(res);
    if (!run_sections(db, id, event) || !run_partitions(db, id, event)) {
        json_decref(event);
        return;
    }
    *doc = event;
}

/* Whether an event the map does not know should be there: 503 while it is
 * on sale (being placed, or the map is behind), else 404. */
static bool run_placement(PGconn *db, const events_job *job, int *status)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, job->event_id);
    const char *params[] = {id};
    PGresult *res = sql_run(db, "look up an event's status", placement_sql, 1, params);
    if (res == NULL) {
        return false;
    }
    bool on_sale = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "on_sale") == 0;
    *status = on_sale ? 503 : 404;
    PQclear(res);
    return true;
}

/* On a pool thread: touches the job and db only. */
static void events_run(PGconn *db, void *arg)
{
    events_job *job = arg;
    job->status = 503;
    if (db == NULL) {
        return;
    }
    json_t *doc = NULL;
    int status = 200;
    bool answered;
    if (job->query == EVENTS_PLACEMENT) {
        answered = run_placement(db, job, &status);
    } else if (job->query == EVENTS_GET) {
        run_event(db, job, &doc, &status);
        answered = doc != NULL || status == 404;
    } else {
        run_page(db, job, &doc);
        answered = doc != NULL;
    }
    if (!answered) {
        job->status = PQstatus(db) == CONNECTION_OK ? 500 : 503;
        return;
    }
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (status != 200 || text != NULL) {
        job->body = body_new(status, text, text != NULL ? strlen(text) : 0);
    }
    free(text);
    job->status = job->body != NULL ? status : 500; /* out of memory */
}

/* Answers with a stored or fresh body. */
static void events_answer(gw_req *r, events_query query, uint64_t event_id,
                          const events_body *b)
{
    if (b->status == 200) {
        gw_reply_raw(r, 200, "application/json", b->data, b->len);
    } else if (b->status == 503) {
        gw_reply_error_retry(r, 503, "unavailable", 1,
                             "event %" PRIu64 " is on sale but not placed in the grid yet",
                             event_id);
    } else if (query == EVENTS_PLACEMENT) {
        gw_reply_error(r, 404, "not_found", "event %" PRIu64 " has no seats on sale", event_id);
    } else {
        gw_reply_error(r, 404, "not_found", "event %" PRIu64 " not found", event_id);
    }
}

static void events_done(gw_req *r, void *arg)
{
    events_job *job = arg;
    const events_body *b = job->body != NULL ? job->body : job->stale;
    if (b != NULL) {
        events_answer(r, job->query, job->event_id, b);
    } else if (job->status == 503) {
        gw_reply_error_retry(r, 503, "database_unavailable", 1,
                             "PostgreSQL is unreachable; try again shortly");
    } else {
        gw_reply_error(r, 500, "internal", "reading events failed");
    }
}

/* Runs exactly once per submitted job, whether or not done ran: stores the
 * answer, or lets the next request refresh. */
static void events_job_free(void *arg)
{
    events_job *job = arg;
    if (job->hash != 0 && job->body != NULL) {
        cache_put(job->key, job->hash, job->body, job->ttl_ms);
    } else if (job->hash != 0) {
        cache_abandon(job->key, job->hash);
    }
    body_unref(job->body);
    body_unref(job->stale);
    free(job);
}

/* Answers from the cache, or queries (job is consumed either way). */
static void events_start(gw_req *r, events_job *job)
{
    events_query query = job->query;
    uint64_t event_id = job->event_id;
    job->ttl_ms = gw_config_of(r->gw)->events_cache_ms;
    if (job->ttl_ms > 0) {
        events_body *b;
        job->hash = cache_hash(job->key);
        if (!cache_lookup(job->key, job->hash, tg_mono_ns(), &b)) {
            events_answer(r, query, event_id, b);
            body_unref(b);
            free(job);
            return;
        }
        job->stale = b;
    }
    events_body *fallback = body_ref(job->stale);
    tg_err err = gw_db_submit(r, events_run, events_done, job, events_job_free);
    if (err != TG_OK && fallback != NULL) {
        events_answer(r, query, event_id, fallback);
    } else if (err != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many database reads queued; try again");
    }
    body_unref(fallback);
}

static events_job *job_new(gw_req *r, events_query query)
{
    events_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        gw_reply_error(r, 500, "internal", "out of memory");
        return NULL;
    }
    job->query = query;
    return job;
}

/* ---- Handlers: the catalogue --------------------------------------------- */

/* Cache keys carry each string's length, so no value can forge another
 * key's separators. */
static void key_make(events_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void key_make(events_job *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(job->key, sizeof(job->key), fmt, ap);
    va_end(ap);
    TG_ASSERT(n > 0 && (size_t)n < sizeof(job->key)); /* every part is bounded */
}

static bool paging_params(gw_req *r, events_job *job)
{
    return gw_query_u64(r, "page", 1, GW_EVENTS_PAGE_MAX, 1, &job->page) &&
           gw_query_u64(r, "pageSize", 1, GW_EVENTS_PAGE_SIZE_MAX, GW_EVENTS_PAGE_SIZE_DEFAULT,
                        &job->page_size);
}

void gw_on_events_list(gw_req *r)
{
    events_job *job = job_new(r, EVENTS_LIST);
    if (job == NULL) {
        return;
    }
    if (!paging_params(r, job) || !type_param(r, job->type) ||
        !text_param(r, "provider", false, GW_EVENTS_PROVIDER_BYTES - 1, job->provider) ||
        !time_param(r, "date_from", false, job->from) || !time_param(r, "date_to", true, job->to)) {
        free(job);
        return;
    }
    key_make(job, "list|%zu:%s|%zu:%s|%s|%s|%" PRIu64 "|%" PRIu64, strlen(job->type), job->type,
             strlen(job->provider), job->provider, job->from, job->to, job->page, job->page_size);
    events_start(r, job);
}

/* True when q has something the 'simple' parser can make a word of: an
 * ASCII letter or digit, or any non-ASCII character.  Without one,
 * websearch_to_tsquery finds nothing (and raises a NOTICE). */
static bool query_has_word(const char *q)
{
    for (const unsigned char *p = (const unsigned char *)q; *p != '\0'; p++) {
        unsigned lower = *p | 0x20u;
        if (*p >= 0x80 || (*p >= '0' && *p <= '9') || (lower >= 'a' && lower <= 'z')) {
            return true;
        }
    }
    return false;
}

void gw_on_events_search(gw_req *r)
{
    events_job *job = job_new(r, EVENTS_SEARCH);
    if (job == NULL) {
        return;
    }
    if (!text_param(r, "q", true, GW_EVENTS_QUERY_BYTES_MAX, job->q) || !paging_params(r, job)) {
        free(job);
        return;
    }
    if (!query_has_word(job->q)) {
        gw_reply_json(r, 200,
                      json_pack("{s:I,s:I,s:i,s:[]}", "page", (json_int_t)job->page, "pageSize",
                                (json_int_t)job->page_size, "total", 0, "items"));
        free(job);
        return;
    }
    key_make(job, "search|%zu:%s|%" PRIu64 "|%" PRIu64, strlen(job->q), job->q, job->page,
             job->page_size);
    events_start(r, job);
}

/* Event ids are 1..2^53-1 (events_id_range): others cannot exist. */
static bool event_id_valid(gw_req *r, uint64_t id)
{
    if (id == 0 || id > TG_WIRE_ID_MAX) {
        gw_reply_error(r, 404, "not_found", "event %" PRIu64 " not found", id);
        return false;
    }
    return true;
}

void gw_on_event_get(gw_req *r)
{
    uint64_t id = r->params[0];
    if (!event_id_valid(r, id)) {
        return;
    }
    events_job *job = job_new(r, EVENTS_GET);
    if (job == NULL) {
        return;
    }
    job->event_id = id;
    key_make(job, "event|%" PRIu64, id);
    events_start(r, job);
}

/* ---- Availability (the body) ----------------------------------------- */

typedef struct {
    uint64_t by_state[TG_SEAT_STATE_COUNT];
} seat_counts;

typedef struct {
    const gw_section *section; /* name, price, currency: its first partition's */
    seat_counts counts;
} avail_section;

typedef struct {
    const gw_row *row;
    uint32_t section; /* merged index */
    seat_counts counts;
} avail_row;

/* The counts of one availability body being built (one malloc'd block). */
typedef struct {
    uint64_t event_id;
    uint32_t partition_count;
    const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX];
    /* Partition p's section i is merged section section_of[section_base[p] + i];
     * likewise for rows. */
    uint32_t section_base[GW_EVENT_PARTITIONS_MAX], row_base[GW_EVENT_PARTITIONS_MAX];
    uint32_t *section_of, *row_of;
    avail_section *sections;
    avail_row *rows;
    uint32_t section_count, row_count; /* merged */
    uint64_t version, seat_count;
    seat_counts totals;
} avail_state;

static bool name_equal(const char *a, const char *b)
{
    return strncmp(a, b, TG_NAME_BYTES) == 0;
}

/* Builds the merged sections and rows of partition p.  Only its first
 * section and row can continue the previous partition's last ones. */
static void avail_merge(avail_state *st, uint32_t p, uint32_t *sections_seen, uint32_t *rows_seen)
{
    const gw_layout *l = st->layouts[p];
    st->section_base[p] = *sections_seen;
    st->row_base[p] = *rows_seen;
    for (uint32_t i = 0; i < l->section_count; i++) {
        const gw_section *s = &l->sections[i];
        bool continued = i == 0 && st->section_count > 0 &&
                         name_equal(st->sections[st->section_count - 1].section->name, s->name);
        if (!continued) {
            st->sections[st->section_count++].section = s;
        }
        st->section_of[(*sections_seen)++] = st->section_count - 1;
    }
    for (uint32_t j = 0; j < l->row_count; j++) {
        const gw_row *w = &l->rows[j];
        TG_ASSERT(w->section < l->section_count); /* the map checked the layout */
        uint32_t section = st->section_of[st->section_base[p] + w->section];
        const avail_row *last = st->row_count > 0 ? &st->rows[st->row_count - 1] : NULL;
        if (j != 0 || last == NULL || last->section != section ||
            !name_equal(last->row->name, w->name)) {
            st->rows[st->row_count].row = w;
            st->rows[st->row_count++].section = section;
        }
        st->row_of[(*rows_seen)++] = st->row_count - 1;
    }
}

/* The state for these partitions, in one zeroed block to free(); NULL when
 * they do not cover the event's seats 0..n-1 without a gap (a partition's
 * layout is not loaded yet) or out of memory. */
static avail_state *avail_state_new(uint64_t event_id, const gw_layout *const *layouts,
                                    uint32_t count)
{
    uint32_t sections = 0, rows = 0;
    uint64_t next_seat = 0;
    for (uint32_t p = 0; p < count; p++) {
        if (layouts[p]->first_seat != next_seat) {
            return NULL;
        }
        next_seat += layouts[p]->seat_count;
        sections += layouts[p]->section_count;
        rows += layouts[p]->row_count;
    }
    size_t size = sizeof(avail_state) +
                  (sizeof(uint32_t) + sizeof(avail_section)) * (sections + 1) +
                  (sizeof(uint32_t) + sizeof(avail_row)) * (rows + 1);
    avail_state *st = calloc(1, size);
    if (st == NULL) {
        return NULL;
    }
    /* Largest alignment first: the structs, then the indexes. */
    st->sections = (avail_section *)(st + 1);
    st->rows = (avail_row *)(st->sections + sections + 1);
    st->section_of = (uint32_t *)(st->rows + rows + 1);
    st->row_of = st->section_of + sections + 1;
    st->event_id = event_id;
    st->partition_count = count;
    st->seat_count = next_seat;
    memcpy(st->layouts, layouts, sizeof(layouts[0]) * count);
    uint32_t sections_seen = 0, rows_seen = 0;
    for (uint32_t p = 0; p < count; p++) {
        avail_merge(st, p, &sections_seen, &rows_seen);
    }
    return st;
}

static void counts_add(seat_counts *to, const tg_wire_counts *from)
{
    for (uint32_t s = 0; s < TG_SEAT_STATE_COUNT; s++) {
        to->by_state[s] += from->by_state[s];
    }
}

/* ---- The availability reply: a bounded buffer, not jansson --------------- */

/* Bytes one section or row object takes at most: the fixed text, 20-digit
 * numbers, five counts and a name escaped to at most 6 bytes per byte. */
#define AVAIL_ITEM_BYTES_MAX 640u
#define AVAIL_HEAD_BYTES_MAX 1024u

typedef struct {
    char *buf;
    size_t len, cap;
} avail_out;

static void out_printf(avail_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(avail_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    TG_ASSERT(n >= 0 && (size_t)n < o->cap - o->len); /* the buffer was sized for the worst */
    o->len += (size_t)n;
}

/* A JSON string of a fixed-size name (no NUL needed within size). */
static void out_name(avail_out *o, const char *name, size_t size)
{
    char copy[TG_NAME_BYTES];
    TG_ASSERT(size <= sizeof(copy));
    memcpy(copy, name, size);
    copy[size - 1] = '\0';
    TG_ASSERT(o->cap - o->len > 6 * size + 2);
    o->buf[o->len++] = '"';
    o->len += tg_json_escape(o->buf + o->len, o->cap - o->len, copy);
    o->buf[o->len++] = '"';
}

static void out_counts(avail_out *o, const seat_counts *c)
{
    out_printf(o, "{");
    for (uint32_t s = 0; s < TG_SEAT_STATE_COUNT; s++) {
        out_printf(o, "%s\"%s\":%" PRIu64, s > 0 ? "," : "", tg_seat_state_name((tg_seat_state)s),
                   c->by_state[s]);
    }
    out_printf(o, "}");
}

static void avail_write(avail_out *o, const avail_state *st, bool with_rows)
{
    out_printf(o, "{\"event_id\":%" PRIu64 ",\"version\":%" PRIu64 ",\"seat_count\":%" PRIu64
                  ",\"totals\":",
               st->event_id, st->version, st->seat_count);
    out_counts(o, &st->totals);
    out_printf(o, ",\"sections\":[");
    for (uint32_t i = 0; i < st->section_count; i++) {
        const avail_section *s = &st->sections[i];
        out_printf(o, "%s{\"index\":%" PRIu32 ",\"name\":", i > 0 ? "," : "", i);
        out_name(o, s->section->name, sizeof(s->section->name));
        out_printf(o, ",\"price\":%" PRId64 ",\"currency\":", s->section->price_minor);
        out_name(o, s->section->currency, sizeof(s->section->currency));
        out_printf(o, ",\"counts\":");
        out_counts(o, &s->counts);
        out_printf(o, "}");
    }
    out_printf(o, "],\"rows\":[");
    for (uint32_t j = 0; with_rows && j < st->row_count; j++) {
        const avail_row *w = &st->rows[j];
        out_printf(o, "%s{\"section\":%" PRIu32 ",\"name\":", j > 0 ? "," : "", w->section);
        out_name(o, w->row->name, sizeof(w->row->name));
        out_printf(o, ",\"counts\":");
        out_counts(o, &w->counts);
        out_printf(o, "}");
    }
    out_printf(o, "]}");
}

/* The body, malloc'd; NULL when out of memory. */
static char *avail_render(const avail_state *st, bool with_rows, size_t *len)
{
    avail_out o = {0};
    o.cap = AVAIL_HEAD_BYTES_MAX +
            ((size_t)st->section_count + st->row_count) * AVAIL_ITEM_BYTES_MAX;
    o.buf = malloc(o.cap);
    if (o.buf != NULL) {
        avail_write(&o, st, with_rows);
    }
    *len = o.len;
    return o.buf;
}

/* Adds partition p's availability_ok to the event's counts. */
static void avail_add(avail_state *st, uint32_t p, const tg_msg *reply)
{
    st->version += reply->availability_ok.log_head;
    counts_add(&st->totals, &reply->availability_ok.totals);
    for (uint32_t i = 0; i < reply->availability_ok.section_count; i++) {
        counts_add(&st->sections[st->section_of[st->section_base[p] + i]].counts,
                   &reply->availability_ok.sections[i]);
    }
    for (uint32_t j = 0; j < reply->availability_ok.row_count; j++) {
        counts_add(&st->rows[st->row_of[st->row_base[p] + j]].counts,
                   &reply->availability_ok.rows[j]);
    }
}

char *gw_availability_render(uint64_t event_id, const gw_layout *const *layouts, uint32_t count,
                             const gw_partition_counts *counts, bool with_rows, size_t *len)
{
    avail_state *st = avail_state_new(event_id, layouts, count);
    if (st == NULL) {
        return NULL;
    }
    for (uint32_t p = 0; p < count; p++) {
        tg_msg reply = {.type = TG_WIRE_AVAILABILITY_OK};
        reply.availability_ok.log_head = counts[p].version;
        reply.availability_ok.totals = counts[p].totals;
        reply.availability_ok.section_count = layouts[p]->section_count;
        memcpy(reply.availability_ok.sections, counts[p].sections,
               sizeof(tg_wire_counts) * layouts[p]->section_count);
        reply.availability_ok.row_count = layouts[p]->row_count;
        reply.availability_ok.rows = counts[p].rows;
        avail_add(st, p, &reply);
    }
    char *body = avail_render(st, with_rows, len);
    free(st);
    return body;
}

void gw_event_not_placed(gw_req *r, uint64_t event_id)
{
    /* Unknown here: ask PostgreSQL whether it should be (cached). */
    events_job *job = job_new(r, EVENTS_PLACEMENT);
    if (job != NULL) {
        job->event_id = event_id;
        key_make(job, "placement|%" PRIu64, event_id);
        events_start(r, job);
    }
}

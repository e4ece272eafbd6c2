/*
 * config.c — the gateway's settings: defaults, then TIXGRID_* variables,
 * then flags (a flag wins over its variable).
 *
 * Every numeric setting has a range; a value outside it, a malformed
 * address or an unknown flag is a usage error (one line on stderr, exit 64)
 * before anything starts.  The table below is the single list of settings:
 * --help prints it, gateway/README.md mirrors it.
 */
#include "config.h"

#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

#include "tixgrid/cli.h"
#include "tixgrid/mapsub.h"
#include "tixgrid/wire.h"

#define PROGRAM "tixgrid-gateway"

/* h2o 2.2 itself accepts a request line and headers up to H2O_MAX_REQLEN
 * (about 400 KiB) and refuses longer ones; the gateway answers 431 above
 * header_bytes_max, which may be at most this. */
#define GW_HEADER_BYTES_CEILING 65536u

typedef struct {
    const char *flag; /* long option, without "--" */
    const char *env;  /* TIXGRID_* */
    size_t offset;    /* of the uint32_t in gw_config */
    uint32_t min, max, fallback;
    const char *help;
} number_setting;

#define U32(field) offsetof(gw_config, field)
static const number_setting numbers[] = {
    {"threads", "TIXGRID_GATEWAY_THREADS", U32(threads), 0, GW_THREADS_MAX, 0,
     "loop threads (0: one per CPU it may run on)"},
    {"db-threads", "TIXGRID_GATEWAY_DB_THREADS", U32(db_threads), 1, 64, 4,
     "PostgreSQL and password-hashing threads"},
    {"db-queue-max", "TIXGRID_GATEWAY_DB_QUEUE_MAX", U32(db_queue_max), 1, 1000000, 4096,
     "jobs waiting for those threads; more get 503"},
    {"connections-max", "TIXGRID_GATEWAY_CONNECTIONS_MAX", U32(connections_max), 1, 1000000, 20000,
     "open connections per loop thread"},
    {"inflight-max", "TIXGRID_GATEWAY_INFLIGHT_MAX", U32(inflight_max), 1, 65536, 4096,
     "requests in service per loop thread; more get 503"},
    {"header-bytes-max", "TIXGRID_GATEWAY_HEADER_BYTES_MAX", U32(header_bytes_max), 1024,
     GW_HEADER_BYTES_CEILING, 16384, "request line and headers (431 above)"},
    {"body-bytes-max", "TIXGRID_GATEWAY_BODY_BYTES_MAX", U32(body_bytes_max), 256, 16u << 20,
     64u << 10, "request body (413 above)"},
    {"request-timeout-ms", "TIXGRID_GATEWAY_REQUEST_TIMEOUT_MS", U32(request_timeout_ms), 100,
     600000, 10000, "to receive a whole request"},
    {"idle-timeout-ms", "TIXGRID_GATEWAY_IDLE_TIMEOUT_MS", U32(idle_timeout_ms), 100, 3600000,
     60000, "an idle HTTP/2 connection"},
    {"grid-timeout-ms", "TIXGRID_GATEWAY_GRID_TIMEOUT_MS", U32(grid_timeout_ms), 10, 60000, 2000,
     "one request to a processing unit (then 503)"},
    {"grid-batch-max", "TIXGRID_GATEWAY_GRID_BATCH_MAX", U32(grid_batch_max), 1, TG_WIRE_BATCH_MAX,
     TG_WIRE_BATCH_MAX,
     "seat operations a loop turn sends to a unit in one message (1: each alone)"},
    {"grid-batch-wait-ms", "TIXGRID_GATEWAY_GRID_BATCH_WAIT_MS", U32(grid_batch_wait_ms), 0, 1000,
     5, "a partition's next message waits this long at most for the last one's reply (0: never)"},
    {"map-refresh-ms", "TIXGRID_GATEWAY_MAP_REFRESH_MS", U32(map_refresh_ms), 50, 60000, 1000,
     "re-read of the partition map"},
    {"events-cache-ms", "TIXGRID_GATEWAY_EVENTS_CACHE_MS", U32(events_cache_ms), 0, 3600000, 2000,
     "event reads kept (0: no cache)"},
    {"jwt-ttl-s", "TIXGRID_JWT_TTL_S", U32(jwt_ttl_s), 60, 30 * 86400, 3600,
     "lifetime of a login token"},
    {"basic-cache-ms", "TIXGRID_GATEWAY_BASIC_CACHE_MS", U32(basic_cache_ms), 0, 3600000, 60000,
     "a verified Basic credential is trusted (0: verify every time)"},
    {"basic-cache-entries", "TIXGRID_GATEWAY_BASIC_CACHE_ENTRIES", U32(basic_cache_entries), 16,
     1u << 20, 65536, "Basic credentials remembered"},
    {"auth-rate", "TIXGRID_GATEWAY_AUTH_RATE", U32(auth_rate_per_s), 0, 1000000, 20,
     "register/login attempts per client IP and second (0: no limit)"},
    {"auth-burst", "TIXGRID_GATEWAY_AUTH_BURST", U32(auth_burst), 1, 1000000, 100,
     "attempts a client IP may make at once"},
    {"audit-queue-max", "TIXGRID_GATEWAY_AUDIT_QUEUE_MAX", U32(audit_queue_max), 1024, 16777216,
     65536, "audit records waiting for PostgreSQL"},
    {"snapshot-partitions-max", "TIXGRID_GATEWAY_SNAPSHOT_PARTITIONS_MAX",
     U32(snapshot_partitions_max), 1, 65536, 1024,
     "partitions each loop thread keeps a seat-map snapshot of"},
    {"live-clients-max", "TIXGRID_GATEWAY_LIVE_CLIENTS_MAX", U32(live_clients_max), 1, 1000000,
     20000, "/live streams per loop thread; more get 503"},
    {"live-buffer-bytes", "TIXGRID_GATEWAY_LIVE_BUFFER_BYTES", U32(live_buffer_bytes), 4096,
     64u << 20, 256u << 10, "unsent bytes a /live client may fall behind by; then it is dropped"},
    {"live-replay-events", "TIXGRID_GATEWAY_LIVE_REPLAY_EVENTS", U32(live_replay_events), 1, 100000,
     600, "seats messages kept per event for Last-Event-ID resumes"},
    {"live-heartbeat-s", "TIXGRID_GATEWAY_LIVE_HEARTBEAT_S", U32(live_heartbeat_s), 1, 3600, 15,
     "a /live comment line after this long without a message"},
    {"payment-timeout-ms", "TIXGRID_PAYMENT_TIMEOUT_MS", U32(payment_timeout_ms), 100, 120000,
     15000, "one call to the payment provider (then 502)"},
    {"breaker-threshold", "TIXGRID_PAYMENT_BREAKER_THRESHOLD", U32(breaker_threshold), 1, 1000, 5,
     "provider failures in a row that open the circuit breaker"},
    {"breaker-timeout-s", "TIXGRID_PAYMENT_BREAKER_TIMEOUT_S", U32(breaker_timeout_s), 1, 3600, 60,
     "the breaker stays open this long, then lets one probe through"},
    {"refund-retry-s", "TIXGRID_PAYMENT_REFUND_RETRY_S", U32(refund_retry_s), 1, 3600, 30,
     "a late payment's refund the provider did not make is asked for again this often"},
    {"event-seats-max", "TIXGRID_GATEWAY_EVENT_SEATS_MAX", U32(event_seats_max), 1,
     GW_EVENT_SEATS_CEILING, 1000000, "seats an organizer's event may have"},
    {"partition-seats", "TIXGRID_GATEWAY_PARTITION_SEATS", U32(partition_seats), TG_ROW_SEATS_MAX,
     TG_PARTITION_SEATS_MAX, 100000, "seats a published event's partition holds at most"},
};
#define NUMBERS_COUNT (sizeof(numbers) / sizeof(numbers[0]))

enum {
    OPT_LISTEN = 1000,
    OPT_DB,
    OPT_DATA_DIR,
    OPT_STATIC,
    OPT_ALLOW_RESET,
    OPT_PROVIDER_URL,
    OPT_WEBHOOK_SECRET,
    OPT_PUBLIC_URL,
    OPT_MANAGER_PUB,
    OPT_CPUS,
    OPT_NUMBER
};
/* The options before the numbers in from_flags' table. */
#define NAMED_OPTIONS (OPT_NUMBER - OPT_LISTEN)

static void usage_print(void)
{
    printf("usage: " PROGRAM " --db CONNINFO [options]\n\n"
           "The HTTP gateway of tixgrid: the shopper and organizer API of schemas/openapi.yaml.\n\n"
           "  --listen HOST:PORT       TIXGRID_GATEWAY_LISTEN   address (0.0.0.0:8080)\n"
           "  --db CONNINFO            TIXGRID_DB               PostgreSQL (required)\n"
           "  --data-dir DIR           TIXGRID_DATA_DIR         where a generated JWT secret is "
           "kept (.)\n"
           "  --static-dir DIR         TIXGRID_GATEWAY_STATIC   files served under / (the shopper "
           "page: <bindir>/../share/tixgrid/www, or gateway/www for a binary of the build tree; "
           "none: no files)\n"
           "  --allow-reset            TIXGRID_ALLOW_RESET=1    POST /api/reset answers\n"
           "  --payment-provider-url URL  TIXGRID_PAYMENT_PROVIDER_URL  the payment provider "
           "(none: payments answer 503)\n"
           "  --payment-webhook-secret S  TIXGRID_PAYMENT_WEBHOOK_SECRET  key of the webhooks' "
           "HMAC-SHA256, %u..%u bytes (prefer the variable: flags show in ps)\n"
           "  --public-url URL         TIXGRID_GATEWAY_PUBLIC_URL  how browsers reach this gateway "
           "(http://HOST:PORT of --listen)\n"
           "  --manager-pub URL[,URL]  TIXGRID_MANAGER_PUB      where the grid managers publish "
           "the map (none: read from PostgreSQL only)\n"
           "  --cpus LIST              TIXGRID_GATEWAY_CPUS     every thread on these CPUs, as "
           "taskset -c: 0, 0-1, 0,2 (any)\n",
           GW_SECRET_BYTES_MIN, GW_SECRET_BYTES_MAX);
    for (size_t i = 0; i < NUMBERS_COUNT; i++) {
        printf("  --%-22s %-36s %s (%u)\n", numbers[i].flag, numbers[i].env, numbers[i].help,
               numbers[i].fallback);
    }
    printf("\nTIXGRID_JWT_SECRET (32+ bytes) signs login tokens; without it a secret is generated\n"
           "once into DIR/jwt.secret.  Exit status: 0 after SIGTERM/SIGINT, 64 bad flags,\n"
           "69 the port or PostgreSQL unavailable at start, 1 other failures.\n");
}

static int set_number(gw_config *cfg, const number_setting *s, const char *text, const char *from)
{
    uint64_t v;
    if (tg_parse_u64(text, s->min, s->max, &v) != TG_OK) {
        return tg_cli_usage_error(PROGRAM, "%s%s: expected a whole number in %u..%u, got \"%s\"",
                                  from, s->flag, s->min, s->max, text);
    }
    *(uint32_t *)((char *)cfg + s->offset) = (uint32_t)v;
    return -1;
}

static int set_string(char *dst, size_t size, const char *text, const char *what)
{
    size_t n = strlen(text);
    if (n == 0 || n >= size) {
        return tg_cli_usage_error(PROGRAM, "%s: expected 1..%zu bytes", what, size - 1);
    }
    memcpy(dst, text, n + 1);
    return -1;
}

/* An http:// or https:// URL without a trailing slash (paths are appended). */
static int set_url(char *dst, size_t size, const char *text, const char *what)
{
    size_t n = strlen(text);
    bool scheme = strncmp(text, "http://", 7) == 0 || strncmp(text, "https://", 8) == 0;
    if (!scheme || n >= size || strpbrk(text, " \t\r\n\"'<>") != NULL) {
        return tg_cli_usage_error(PROGRAM, "%s: expected an http:// or https:// URL of at most "
                                           "%zu bytes, got \"%s\"", what, size - 1, text);
    }
    memcpy(dst, text, n + 1);
    while (n > 0 && dst[n - 1] == '/') {
        dst[--n] = '\0';
    }
    return -1;
}

static int set_secret(gw_config *cfg, const char *text, const char *what)
{
    size_t n = strlen(text);
    if (n < GW_SECRET_BYTES_MIN || n > GW_SECRET_BYTES_MAX) {
        return tg_cli_usage_error(PROGRAM,
                                  "%s: the webhook secret must have %u..%u bytes (got %zu)", what,
                                  GW_SECRET_BYTES_MIN, GW_SECRET_BYTES_MAX, n);
    }
    memcpy(cfg->payment_webhook_secret, text, n + 1);
    return -1;
}

/* Every manager's PUB address, "url,url" (as tixgrid-manager --pub). */
static int set_manager_pub(gw_config *cfg, const char *text, const char *what)
{
    if (strlen(text) >= sizeof(cfg->manager_pub) || tg_mapsub_urls_check(text) != TG_OK) {
        return tg_cli_usage_error(PROGRAM,
                                  "%s: expected 1..%u nng addresses separated by commas "
                                  "(ipc:///run/tixgrid/mgr.pub), got \"%s\"",
                                  what, TG_GRID_MANAGERS_MAX, text);
    }
    memcpy(cfg->manager_pub, text, strlen(text) + 1);
    return -1;
}

/* A CPU list as taskset -c takes it; applied by main before any thread starts. */
static int set_cpus(gw_config *cfg, const char *text, const char *what)
{
    if (strlen(text) >= sizeof(cfg->cpus_text) || tg_parse_cpus(text, &cfg->cpus) != TG_OK) {
        return tg_cli_usage_error(PROGRAM,
                                  "%s: expected CPUs as 0, 0-1 or 0,2 (numbers below %d), "
                                  "got \"%s\"",
                                  what, CPU_SETSIZE, text);
    }
    memcpy(cfg->cpus_text, text, strlen(text) + 1);
    return -1;
}

/* "0.0.0.0:8080", "[::]:8080", ":8080" (all IPv4 interfaces). */
static int set_listen(gw_config *cfg, const char *text)
{
    const char *colon = strrchr(text, ':');
    uint64_t port;
    if (colon == NULL || tg_parse_u64(colon + 1, 1, 65535, &port) != TG_OK) {
        return tg_cli_usage_error(PROGRAM, "--listen: expected HOST:PORT (port 1..65535), got "
                                           "\"%s\"", text);
    }
    const char *host = text;
    size_t host_len = (size_t)(colon - text);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    if (host_len >= sizeof(cfg->listen_host)) {
        return tg_cli_usage_error(PROGRAM, "--listen: host too long");
    }
    memcpy(cfg->listen_host, host, host_len);
    cfg->listen_host[host_len] = '\0';
    if (host_len == 0) {
        strcpy(cfg->listen_host, "0.0.0.0");
    }
    cfg->listen_port = (uint16_t)port;
    return -1;
}

static void defaults(gw_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->listen_host, "0.0.0.0");
    cfg->listen_port = 8080;
    strcpy(cfg->data_dir, ".");
    for (size_t i = 0; i < NUMBERS_COUNT; i++) {
        *(uint32_t *)((char *)cfg + numbers[i].offset) = numbers[i].fallback;
    }
}

static int from_environment(gw_config *cfg)
{
    int rc = -1;
    const char *v;
    if ((v = tg_env("TIXGRID_GATEWAY_LISTEN", NULL)) != NULL && rc < 0) {
        rc = set_listen(cfg, v);
    }
    if ((v = tg_env("TIXGRID_DB", NULL)) != NULL && rc < 0) {
        rc = set_string(cfg->db, sizeof(cfg->db), v, "TIXGRID_DB");
    }
    if ((v = tg_env("TIXGRID_DATA_DIR", NULL)) != NULL && rc < 0) {
        rc = set_string(cfg->data_dir, sizeof(cfg->data_dir), v, "TIXGRID_DATA_DIR");
    }
    if ((v = tg_env("TIXGRID_GATEWAY_STATIC", NULL)) != NULL && rc < 0) {
        rc = set_string(cfg->static_dir, sizeof(cfg->static_dir), v, "TIXGRID_GATEWAY_STATIC");
    }
    if ((v = tg_env("TIXGRID_PAYMENT_PROVIDER_URL", NULL)) != NULL && rc < 0) {
        rc = set_url(cfg->payment_provider_url, sizeof(cfg->payment_provider_url), v,
                     "TIXGRID_PAYMENT_PROVIDER_URL");
    }
    if ((v = tg_env("TIXGRID_PAYMENT_WEBHOOK_SECRET", NULL)) != NULL && rc < 0) {
        rc = set_secret(cfg, v, "TIXGRID_PAYMENT_WEBHOOK_SECRET");
    }
    if ((v = tg_env("TIXGRID_GATEWAY_PUBLIC_URL", NULL)) != NULL && rc < 0) {
        rc = set_url(cfg->public_url, sizeof(cfg->public_url), v, "TIXGRID_GATEWAY_PUBLIC_URL");
    }
    if ((v = tg_env("TIXGRID_MANAGER_PUB", NULL)) != NULL && rc < 0) {
        rc = set_manager_pub(cfg, v, "TIXGRID_MANAGER_PUB");
    }
    if ((v = tg_env("TIXGRID_GATEWAY_CPUS", NULL)) != NULL && rc < 0) {
        rc = set_cpus(cfg, v, "TIXGRID_GATEWAY_CPUS");
    }
    if ((v = tg_env("TIXGRID_ALLOW_RESET", NULL)) != NULL) {
        cfg->allow_reset = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
    }
    for (size_t i = 0; i < NUMBERS_COUNT && rc < 0; i++) {
        if ((v = tg_env(numbers[i].env, NULL)) != NULL) {
            rc = set_number(cfg, &numbers[i], v, "$");
        }
    }
    return rc;
}

static int from_flag(gw_config *cfg, int opt, int index, const char *arg)
{
    switch (opt) {
    case OPT_LISTEN:
        return set_listen(cfg, arg);
    case OPT_DB:
        return set_string(cfg->db, sizeof(cfg->db), arg, "--db");
    case OPT_DATA_DIR:
        return set_string(cfg->data_dir, sizeof(cfg->data_dir), arg, "--data-dir");
    case OPT_STATIC:
        return set_string(cfg->static_dir, sizeof(cfg->static_dir), arg, "--static-dir");
    case OPT_ALLOW_RESET:
        cfg->allow_reset = true;
        return -1;
    case OPT_PROVIDER_URL:
        return set_url(cfg->payment_provider_url, sizeof(cfg->payment_provider_url), arg,
                       "--payment-provider-url");
    case OPT_WEBHOOK_SECRET:
        return set_secret(cfg, arg, "--payment-webhook-secret");
    case OPT_PUBLIC_URL:
        return set_url(cfg->public_url, sizeof(cfg->public_url), arg, "--public-url");
    case OPT_MANAGER_PUB:
        return set_manager_pub(cfg, arg, "--manager-pub");
    case OPT_CPUS:
        return set_cpus(cfg, arg, "--cpus");
    case OPT_NUMBER:
        return set_number(cfg, &numbers[index], arg, "--");
    default:
        return tg_cli_usage_error(PROGRAM, "unknown or incomplete option; see --help");
    }
}

static int from_flags(gw_config *cfg, int argc, char **argv)
{
    struct option opts[NUMBERS_COUNT + NAMED_OPTIONS + 2];
    size_t n = 0;
    opts[n++] = (struct option){"listen", required_argument, NULL, OPT_LISTEN};
    opts[n++] = (struct option){"db", required_argument, NULL, OPT_DB};
    opts[n++] = (struct option){"data-dir", required_argument, NULL, OPT_DATA_DIR};
    opts[n++] = (struct option){"static-dir", required_argument, NULL, OPT_STATIC};
    opts[n++] = (struct option){"allow-reset", no_argument, NULL, OPT_ALLOW_RESET};
    opts[n++] = (struct option){"payment-provider-url", required_argument, NULL, OPT_PROVIDER_URL};
    opts[n++] = (struct option){"payment-webhook-secret", required_argument, NULL,
                                OPT_WEBHOOK_SECRET};
    opts[n++] = (struct option){"public-url", required_argument, NULL, OPT_PUBLIC_URL};
    opts[n++] = (struct option){"manager-pub", required_argument, NULL, OPT_MANAGER_PUB};
    opts[n++] = (struct option){"cpus", required_argument, NULL, OPT_CPUS};
    for (size_t i = 0; i < NUMBERS_COUNT; i++) {
        opts[n++] = (struct option){numbers[i].flag, required_argument, NULL, OPT_NUMBER};
    }
    /* The older name of --static-dir; after the numbers, whose indexes count. */
    opts[n++] = (struct option){"static", required_argument, NULL, OPT_STATIC};
    opts[n] = (struct option){0};
    optind = 1;
    opterr = 0;
    int opt, index = 0, rc = -1;
    while (rc < 0 && (opt = getopt_long(argc, argv, "", opts, &index)) != -1) {
        rc = from_flag(cfg, opt, index - NAMED_OPTIONS, optarg);
    }
    if (rc < 0 && optind < argc) {
        rc = tg_cli_usage_error(PROGRAM, "unexpected argument \"%s\"; see --help", argv[optind]);
    }
    return rc;
}

/* true when dir/index.html is a regular file; its real path into out. */
static bool page_dir(const char *dir, char *out, size_t size)
{
    char index[PATH_MAX + 16], real[PATH_MAX];
    struct stat st;
    int n = snprintf(index, sizeof(index), "%s/index.html", dir);
    if (n < 0 || (size_t)n >= sizeof(index) || stat(index, &st) != 0 || !S_ISREG(st.st_mode) ||
        realpath(dir, real) == NULL || strlen(real) >= size) {
        return false;
    }
    memcpy(out, real, strlen(real) + 1);
    return true;
}

/* The shopper page when no --static-dir names it: installed beside the
 * binary (<bindir>/../share/tixgrid/www), or, for a binary run from the
 * build tree it was built in, the source tree's gateway/www — so that
 * scripts/demo and the tests serve the page with no flag.  A binary copied
 * elsewhere finds neither and serves the API only. */
static void static_default(gw_config *cfg)
{
    char exe[PATH_MAX], dir[PATH_MAX + 32], real_build[PATH_MAX];
    size_t len = sizeof(exe);
    cfg->static_dir[0] = '\0';
    if (uv_exepath(exe, &len) != 0 || strrchr(exe, '/') == NULL) {
        return;
    }
    *strrchr(exe, '/') = '\0';
    snprintf(dir, sizeof(dir), "%s/../share/tixgrid/www", exe);
    if (page_dir(dir, cfg->static_dir, sizeof(cfg->static_dir))) {
        return;
    }
    if (realpath(GW_BUILD_DIR, real_build) != NULL && realpath(exe, dir) != NULL &&
        strcmp(dir, real_build) == 0) {
        page_dir(GW_SOURCE_WWW, cfg->static_dir, sizeof(cfg->static_dir));
    }
}

/* "none" serves no files; a directory named must exist (a typo would
 * otherwise answer 404 to every page quietly). */
static int static_resolve(gw_config *cfg)
{
    struct stat st;
    if (strcmp(cfg->static_dir, "none") == 0) {
        cfg->static_dir[0] = '\0';
    } else if (cfg->static_dir[0] == '\0') {
        static_default(cfg);
    } else if (stat(cfg->static_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return tg_cli_usage_error(PROGRAM, "--static-dir: %s is not a directory (none: serve no "
                                           "files)", cfg->static_dir);
    }
    return -1;
}

int gw_config_parse(gw_config *cfg, int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_print();
            return TG_EXIT_OK;
        }
    }
    int exit_code;
    if (tg_cli_standard(argc, argv, PROGRAM, "", &exit_code)) {
        return exit_code;
    }
    defaults(cfg);
    int rc = from_environment(cfg);
    if (rc < 0) {
        rc = from_flags(cfg, argc, argv);
    }
    if (rc < 0 && cfg->payment_provider_url[0] != '\0' && cfg->payment_webhook_secret[0] == '\0') {
        rc = tg_cli_usage_error(PROGRAM, "a payment provider needs its webhook secret: set "
                                         "TIXGRID_PAYMENT_WEBHOOK_SECRET (%u..%u bytes)",
                                GW_SECRET_BYTES_MIN, GW_SECRET_BYTES_MAX);
    }
    if (rc < 0 && cfg->public_url[0] == '\0') {
        /* A wildcard address is no address a browser can use: loopback. */
        bool any = strcmp(cfg->listen_host, "0.0.0.0") == 0 || strcmp(cfg->listen_host, "::") == 0;
        bool v6 = strchr(cfg->listen_host, ':') != NULL;
        snprintf(cfg->public_url, sizeof(cfg->public_url), "http://%s%s%s:%u",
                 v6 && !any ? "[" : "", any ? "127.0.0.1" : cfg->listen_host,
                 v6 && !any ? "]" : "", cfg->listen_port);
    }
    if (rc < 0) {
        rc = static_resolve(cfg);
    }
    if (rc < 0 && cfg->db[0] == '\0') {
        rc = tg_cli_usage_error(PROGRAM, "--db (or TIXGRID_DB) is required: a libpq connection "
                                         "string");
    }
    return rc;
}

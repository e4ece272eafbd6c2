/*
 * main.c — tixgrid-pu, the processing unit: flags, start-up, signals.
 *
 * Start-up order matters: SIGTERM and SIGINT are blocked before nng starts
 * its threads (so they are delivered only to sigwait here), segments left by
 * an earlier run of the same unit are re-attached and recovered before any
 * layout file is looked at, and requests are accepted only once every
 * partition is in place.
 */
#include "server.h"

#include "tixgrid/cli.h"
#include "tixgrid/log.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "tixgrid-pu"
#define LAYOUTS_MAX 64

static const char usage[] =
    "usage: tixgrid-pu --name NAME --listen URL [options]\n"
    "\n"
    "A processing unit: holds seat partitions in shared memory (/dev/shm) and\n"
    "serves them over nng (schemas/wire.md).  Restarted with the same name, it\n"
    "re-attaches and recovers the partitions it had.\n"
    "\n"
    "  --name NAME             unit name, [A-Za-z0-9._-]      (TIXGRID_PU_NAME)\n"
    "  --listen URL            nng REP address, e.g. ipc:///tmp/pu1.rep or\n"
    "                          tcp://127.0.0.1:7101          (TIXGRID_PU_LISTEN)\n"
    "  --pub URL               nng PUB address for seat changes (TIXGRID_PU_PUB)\n"
    "  --partition FILE        create (or check, if already attached) the\n"
    "                          partition described by a JSON layout; repeatable\n"
    "  --contexts N            requests in flight, 1..1024 (default 64)\n"
    "                                                        (TIXGRID_PU_CONTEXTS)\n"
    "  --sweep-interval-ms N   how often due holds expire (default 100)\n"
    "  --unpersisted           no persister: trim the change log once published\n"
    "                          (changes then live only in memory)\n"
    "  --manager URL[,URL...]  join the grid: register with the manager (and its\n"
    "                          standbys), send heartbeats, follow the partition\n"
    "                          map's epochs                    (TIXGRID_MANAGER)\n"
    "  --zone ZONE             failure domain told to the manager, [A-Za-z0-9._-]\n"
    "                          up to 63 bytes                  (TIXGRID_PU_ZONE)\n"
    "  --cpus LIST             run every thread on these CPUs, as taskset -c:\n"
    "                          0, 1-3, 0,2 (default: any)      (TIXGRID_PU_CPUS)\n"
    "  --log-level LEVEL       debug, info, warn or error (TIXGRID_LOG_LEVEL)\n"
    "  --help, --version\n"
    "\n"
    "Exit status: 0 after SIGTERM or SIGINT, 64 on bad flags, 1 on failure.\n";

typedef struct {
    pu_server_config server;
    const char *layouts[LAYOUTS_MAX];
    uint32_t layout_count;
    const char *cpus_text; /* --cpus as given, NULL: any CPU */
    cpu_set_t cpus;
} options;

static int parse_number(const char *flag, const char *text, uint64_t max, uint32_t *out)
{
    uint64_t v;
    if (tg_parse_u64(text, 1, max, &v) != TG_OK) {
        return tg_cli_usage_error(PROGRAM, "%s must be a whole number from 1 to %llu", flag,
                                  (unsigned long long)max);
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_cpus(const char *from, const char *text, options *o)
{
    if (tg_parse_cpus(text, &o->cpus) != TG_OK) {
        return tg_cli_usage_error(PROGRAM,
                                  "%s must list CPUs as 0, 1-3 or 0,2 (numbers below %d), "
                                  "got \"%s\"",
                                  from, CPU_SETSIZE, text);
    }
    o->cpus_text = text;
    return 0;
}

static int parse_option(int c, options *o)
{
    tg_log_level level;
    switch (c) {
    case 'n': o->server.name = optarg; return 0;
    case 'l': o->server.listen_url = optarg; return 0;
    case 'p': o->server.pub_url = optarg; return 0;
    case 'c': return parse_number("--contexts", optarg, PU_CONTEXTS_MAX, &o->server.contexts);
    case 's':
        return parse_number("--sweep-interval-ms", optarg, 3600000, &o->server.sweep_interval_ms);
    case 'u': o->server.unpersisted = true; return 0;
    case 'm': o->server.manager_urls = optarg; return 0;
    case 'z': o->server.zone = optarg; return 0;
    case 'C':
        return parse_cpus("--cpus", optarg, o);
    case 'L':
        if (tg_log_level_parse(optarg, &level) != TG_OK) {
            return tg_cli_usage_error(PROGRAM, "--log-level must be debug, info, warn or error");
        }
        tg_log_set_level(level);
        return 0;
    case 'P':
        if (o->layout_count == LAYOUTS_MAX) {
            return tg_cli_usage_error(PROGRAM, "at most %d --partition files", LAYOUTS_MAX);
        }
        o->layouts[o->layout_count++] = optarg;
        return 0;
    default:
        return tg_cli_usage_error(PROGRAM, "unknown option or missing value");
    }
}

/* --manager: 1..TG_GRID_MANAGERS_MAX addresses, none empty or too long;
 * --zone: a label, and only with --manager. */
static int check_grid_flags(const options *o)
{
    const char *urls = o->server.manager_urls, *zone = o->server.zone;
    if (zone != NULL && urls == NULL) {
        return tg_cli_usage_error(PROGRAM, "--zone needs --manager");
    }
    uint32_t count = 0;
    for (const char *p = urls; p != NULL; count++) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == 0 || n >= TG_URL_BYTES || count == TG_GRID_MANAGERS_MAX) {
            return tg_cli_usage_error(PROGRAM, "--manager takes 1 to %u comma-separated "
                                               "addresses of at most %u bytes",
                                      TG_GRID_MANAGERS_MAX, TG_URL_BYTES - 1);
        }
        p = end != NULL ? end + 1 : NULL;
    }
    size_t zone_len = zone != NULL ? strlen(zone) : 1;
    bool zone_ok = zone_len > 0 && zone_len < TG_ZONE_BYTES;
    for (const char *c = zone; c != NULL && *c != '\0'; c++) {
        zone_ok = zone_ok && (strchr("._-", *c) != NULL || (*c >= 'a' && *c <= 'z') ||
                              (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9'));
    }
    if (!zone_ok) {
        return tg_cli_usage_error(PROGRAM, "--zone must be 1 to %u of A-Z a-z 0-9 . _ -",
                                  TG_ZONE_BYTES - 1);
    }
    return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"name", required_argument, NULL, 'n'},
        {"listen", required_argument, NULL, 'l'},
        {"pub", required_argument, NULL, 'p'},
        {"partition", required_argument, NULL, 'P'},
        {"contexts", required_argument, NULL, 'c'},
        {"sweep-interval-ms", required_argument, NULL, 's'},
        {"unpersisted", no_argument, NULL, 'u'},
        {"manager", required_argument, NULL, 'm'},
        {"zone", required_argument, NULL, 'z'},
        {"log-level", required_argument, NULL, 'L'},
        {"cpus", required_argument, NULL, 'C'},
        {NULL, 0, NULL, 0},
    };
    o->server.name = tg_env("TIXGRID_PU_NAME", NULL);
    o->server.listen_url = tg_env("TIXGRID_PU_LISTEN", NULL);
    o->server.pub_url = tg_env("TIXGRID_PU_PUB", NULL);
    o->server.manager_urls = tg_env("TIXGRID_MANAGER", NULL);
    o->server.zone = tg_env("TIXGRID_PU_ZONE", NULL);
    const char *ctx = tg_env("TIXGRID_PU_CONTEXTS", NULL);
    if (ctx != NULL && parse_number("TIXGRID_PU_CONTEXTS", ctx, PU_CONTEXTS_MAX,
                                    &o->server.contexts) != 0) {
        return TG_EXIT_USAGE;
    }
    const char *cpus = tg_env("TIXGRID_PU_CPUS", NULL);
    if (cpus != NULL && parse_cpus("TIXGRID_PU_CPUS", cpus, o) != 0) {
        return TG_EXIT_USAGE;
    }
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int rc = parse_option(c == '?' ? 0 : c, o);
        if (rc != 0) {
            return rc;
        }
    }
    if (optind < argc) {
        return tg_cli_usage_error(PROGRAM, "unexpected argument '%s'", argv[optind]);
    }
    if (o->server.name == NULL || o->server.listen_url == NULL) {
        return tg_cli_usage_error(PROGRAM, "--name and --listen are required");
    }
    return check_grid_flags(o);
}

/* A re-attached partition must still be the one the layout describes. */
static tg_err layout_matches(const pu_partition *p, const pu_partition_config *cfg)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    size_t expected = pu_segment_size(cfg);
    if (info.event_id != cfg->event_id || info.section_count != cfg->section_count ||
        info.row_count != cfg->row_count || (cfg->log_records == 0 && cfg->booking_capacity == 0 &&
                                             info.segment_bytes != expected)) {
        tg_log_error("partition %u in shared memory differs from its layout file; remove "
                     "/dev/shm/tixgrid-<name>-p%u to start it afresh",
                     info.partition_id, info.partition_id);
        return TG_EEXIST;
    }
    return TG_OK;
}

static tg_err load_layout(pu_server *s, const char *name, const char *path)
{
    pu_partition_config cfg;
    tg_err err = pu_layout_load(path, &cfg);
    if (err != TG_OK) {
        return err;
    }
    pu_partition *existing = pu_server_find(s, cfg.partition_id);
    if (existing != NULL) {
        err = layout_matches(existing, &cfg);
    } else {
        char shm[TG_SHM_NAME_BYTES];
        pu_partition *p = NULL;
        err = pu_segment_name(shm, sizeof(shm), name, cfg.partition_id);
        if (err == TG_OK) {
            err = pu_partition_create(shm, &cfg, &p);
        }
        if (err == TG_OK && (err = pu_server_add_partition(s, p)) != TG_OK) {
            pu_partition_detach(p);
        }
    }
    if (err != TG_OK && existing == NULL) {
        /* layout_matches and pu_layout_load say what is wrong themselves */
        tg_log_error("partition from %s: %s", path, tg_strerror(err));
    }
    pu_layout_free(&cfg);
    return err;
}

/*
 * nng 1.5.2 (Debian 12) can hang in nng_close when a peer disconnects at the
 * same moment (fixed upstream in 1.9).  Stopping must not hang: by the time
 * the sockets close, every request in flight has its reply and the segments
 * are consistent in /dev/shm, so a stop that overruns its budget exits
 * anyway, with status 0 as a completed stop would.
 */
#define STOP_WATCHDOG_MS (PU_STOP_DRAIN_MS + 2000u)

static void *stop_watchdog_main(void *arg)
{
    (void)arg;
    struct timespec ts = {.tv_sec = STOP_WATCHDOG_MS / 1000,
                          .tv_nsec = (long)(STOP_WATCHDOG_MS % 1000) * 1000000};
    nanosleep(&ts, NULL);
    tg_log_warn("pu: stopping took longer than %u ms (nng close); exiting", STOP_WATCHDOG_MS);
    _exit(TG_EXIT_OK);
}

static void stop_watchdog_start(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, stop_watchdog_main, NULL) == 0) {
        pthread_detach(t);
    }
}

static int serve(options *o, sigset_t *signals)
{
    pu_server *s;
    if (pu_server_open(&o->server, &s) != TG_OK) {
        return TG_EXIT_FAILURE;
    }
    uint32_t attached = 0;
    tg_err err = pu_server_attach_existing(s, &attached);
    for (uint32_t i = 0; err == TG_OK && i < o->layout_count; i++) {
        err = load_layout(s, o->server.name, o->layouts[i]);
    }
    if (err == TG_OK) {
        err = pu_server_start(s);
    }
    if (err != TG_OK) {
        pu_server_close(s);
        return TG_EXIT_FAILURE;
    }
    tg_log_info("pu %s: ready (%u partitions re-attached)", o->server.name, attached);
    int sig = 0;
    sigwait(signals, &sig);
    tg_log_info("pu %s: %s received, stopping", o->server.name, strsignal(sig));
    stop_watchdog_start();
    pu_server_close(s);
    return TG_EXIT_OK;
}

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, PROGRAM, usage, &code)) {
        return code;
    }
    tg_log_init("pu");
    options o = {0};
    code = parse_args(argc, argv, &o);
    if (code != 0) {
        return code;
    }
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    /* Before nng starts its threads, so that they inherit it: a message
     * crosses several of them, and a hand-off within one CPU costs less
     * than a wake-up of another (pu/README.md, "CPUs"). */
    if (o.cpus_text != NULL && (code = tg_cli_pin_cpus(PROGRAM, o.cpus_text, &o.cpus)) != 0) {
        return code;
    }
    return serve(&o, &signals);
}

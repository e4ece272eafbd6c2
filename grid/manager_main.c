/*
 * manager_main.c — tixgrid-manager: flags, signals, and the loop of
 * manager.c.
 *
 * SIGTERM and SIGINT are blocked before any thread starts and polled by the
 * loop at every pass (sigtimedwait with no wait), so a stop is handled
 * between two requests, never in the middle of writing the map.
 */
#include "manager.h"

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

#define PROGRAM "tixgrid-manager"

static const char usage[] =
    "usage: tixgrid-manager --listen URL --pub URL --db CONNINFO [options]\n"
    "\n"
    "The grid manager: processing units register with it and send heartbeats;\n"
    "it declares silent ones dead, keeps the partition map in PostgreSQL\n"
    "(grid_partitions, grid_members, grid_map) and publishes every new map.\n"
    "Run several: one is active (it holds a PostgreSQL advisory lock), the\n"
    "others stand by and take over when its session ends.\n"
    "\n"
    "  --listen URL                 nng REP address for units and tixgridctl\n"
    "                               (TIXGRID_MANAGER_LISTEN)\n"
    "  --pub URL                    nng PUB address for the map (TIXGRID_MANAGER_PUB)\n"
    "  --db CONNINFO                PostgreSQL connection string (TIXGRID_DB)\n"
    "  --name NAME                  this manager's name, [A-Za-z0-9._-]\n"
    "                               (TIXGRID_MANAGER_NAME; default manager-<pid>)\n"
    "  --heartbeat-interval-ms N    units send a heartbeat this often, 10..60000\n"
    "                               (default 100)       (TIXGRID_HEARTBEAT_INTERVAL_MS)\n"
    "  --failure-timeout-ms N       a unit silent this long is dead; at least twice\n"
    "                               the interval, at most 600000 (default 1000)\n"
    "                                                    (TIXGRID_FAILURE_TIMEOUT_MS)\n"
    "  --republish-ms N             publish the map again this often (default 1000)\n"
    "  --standby-poll-ms N          a standby tries the lock this often, 10..5000\n"
    "                               (default 200)\n"
    "  --refresh-ms N               re-read grid_partitions this often (default 1000)\n"
    "  --backups N                  backups wanted per partition, 0..8 (default 1)\n"
    "  --move-timeout-ms N          a move (move, rebalance, add-pu, a drain) not done\n"
    "                               by then is given up, 1000..3600000 (default 60000)\n"
    "  --connect-timeout-s N        PostgreSQL connection timeout (default 10)\n"
    "  --log-level LEVEL            debug, info, warn or error (TIXGRID_LOG_LEVEL)\n"
    "  --help, --version\n"
    "\n"
    "Exit status: 0 after SIGTERM or SIGINT, 64 on bad flags, 1 when the\n"
    "database has no grid schema (run tixgrid-persister migrate).\n";

typedef struct {
    grid_manager_config cfg;
    char name[TG_PU_NAME_BYTES];
} options;

static int parse_ms(const char *flag, const char *text, uint64_t min, uint64_t max, uint32_t *out)
{
    uint64_t v;
    if (tg_parse_u64(text, min, max, &v) != TG_OK) {
        return tg_cli_usage_error(PROGRAM, "%s must be a whole number from %llu to %llu", flag,
                                  (unsigned long long)min, (unsigned long long)max);
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_option(int c, options *o)
{
    grid_manager_config *g = &o->cfg;
    tg_log_level level;
    switch (c) {
    case 'n':
        g->name = optarg;
        return 0;
    case 'l':
        g->listen_url = optarg;
        return 0;
    case 'p':
        g->pub_url = optarg;
        return 0;
    case 'd':
        g->conninfo = optarg;
        return 0;
    case 'i':
        return parse_ms("--heartbeat-interval-ms", optarg, TG_GRID_HEARTBEAT_INTERVAL_MS_MIN,
                        TG_GRID_HEARTBEAT_INTERVAL_MS_MAX, &g->heartbeat_interval_ms);
    case 't':
        return parse_ms("--failure-timeout-ms", optarg, 2 * TG_GRID_HEARTBEAT_INTERVAL_MS_MIN,
                        TG_GRID_FAILURE_TIMEOUT_MS_MAX, &g->failure_timeout_ms);
    case 'r':
        return parse_ms("--republish-ms", optarg, 10, 60000, &g->republish_ms);
    case 's':
        return parse_ms("--standby-poll-ms", optarg, 10, 5000, &g->standby_poll_ms);
    case 'f':
        return parse_ms("--refresh-ms", optarg, 10, 60000, &g->refresh_ms);
    case 'b':
        return parse_ms("--backups", optarg, 0, TG_GRID_BACKUPS_MAX, &g->backups);
    case 'm':
        return parse_ms("--move-timeout-ms", optarg, 1000, 3600000, &g->move_timeout_ms);
    case 'c':
        return parse_ms("--connect-timeout-s", optarg, 1, 3600, &g->connect_timeout_s);
    case 'L':
        if (tg_log_level_parse(optarg, &level) != TG_OK) {
            return tg_cli_usage_error(PROGRAM, "--log-level must be debug, info, warn or error");
        }
        tg_log_set_level(level);
        return 0;
    default:
        return tg_cli_usage_error(PROGRAM, "unknown option or missing value");
    }
}

/* Values from TIXGRID_* variables, before the flags override them. */
static int parse_env(options *o)
{
    grid_manager_config *g = &o->cfg;
    g->name = tg_env("TIXGRID_MANAGER_NAME", NULL);
    g->listen_url = tg_env("TIXGRID_MANAGER_LISTEN", NULL);
    g->pub_url = tg_env("TIXGRID_MANAGER_PUB", NULL);
    g->conninfo = tg_env("TIXGRID_DB", NULL);
    const char *interval = tg_env("TIXGRID_HEARTBEAT_INTERVAL_MS", NULL);
    const char *timeout = tg_env("TIXGRID_FAILURE_TIMEOUT_MS", NULL);
    if (interval != NULL &&
        parse_ms("TIXGRID_HEARTBEAT_INTERVAL_MS", interval, TG_GRID_HEARTBEAT_INTERVAL_MS_MIN,
                 TG_GRID_HEARTBEAT_INTERVAL_MS_MAX, &g->heartbeat_interval_ms) != 0) {
        return TG_EXIT_USAGE;
    }
    if (timeout != NULL &&
        parse_ms("TIXGRID_FAILURE_TIMEOUT_MS", timeout, 2 * TG_GRID_HEARTBEAT_INTERVAL_MS_MIN,
                 TG_GRID_FAILURE_TIMEOUT_MS_MAX, &g->failure_timeout_ms) != 0) {
        return TG_EXIT_USAGE;
    }
    return 0;
}

static int check_required(options *o)
{
    grid_manager_config *g = &o->cfg;
    if (g->listen_url == NULL || g->pub_url == NULL || g->conninfo == NULL) {
        return tg_cli_usage_error(PROGRAM, "--listen, --pub and --db are required");
    }
    if (g->name == NULL) {
        snprintf(o->name, sizeof(o->name), "manager-%ld", (long)getpid());
        g->name = o->name;
    }
    if (!tg_url_valid(g->listen_url) || !tg_url_valid(g->pub_url)) {
        return tg_cli_usage_error(PROGRAM, "--listen and --pub are nng addresses, scheme://...");
    }
    if (!grid_name_valid(g->name)) {
        return tg_cli_usage_error(PROGRAM, "--name must be 1 to 47 of A-Z a-z 0-9 . _ -");
    }
    if (g->failure_timeout_ms < 2 * g->heartbeat_interval_ms) {
        return tg_cli_usage_error(PROGRAM,
                                  "--failure-timeout-ms must be at least twice "
                                  "--heartbeat-interval-ms (%u ms)",
                                  g->heartbeat_interval_ms);
    }
    return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"name", required_argument, NULL, 'n'},
        {"listen", required_argument, NULL, 'l'},
        {"pub", required_argument, NULL, 'p'},
        {"db", required_argument, NULL, 'd'},
        {"heartbeat-interval-ms", required_argument, NULL, 'i'},
        {"failure-timeout-ms", required_argument, NULL, 't'},
        {"republish-ms", required_argument, NULL, 'r'},
        {"standby-poll-ms", required_argument, NULL, 's'},
        {"refresh-ms", required_argument, NULL, 'f'},
        {"backups", required_argument, NULL, 'b'},
        {"move-timeout-ms", required_argument, NULL, 'm'},
        {"connect-timeout-s", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'L'},
        {NULL, 0, NULL, 0},
    };
    o->cfg = (grid_manager_config){
        .heartbeat_interval_ms = TG_GRID_HEARTBEAT_INTERVAL_MS_DEFAULT,
        .failure_timeout_ms = TG_GRID_FAILURE_TIMEOUT_MS_DEFAULT,
        .republish_ms = GRID_REPUBLISH_MS_DEFAULT,
        .standby_poll_ms = GRID_STANDBY_POLL_MS_DEFAULT,
        .refresh_ms = GRID_REFRESH_MS_DEFAULT,
        .connect_timeout_s = 10,
        .backups = 1,
        .move_timeout_ms = GRID_MOVE_TIMEOUT_MS_DEFAULT,
    };
    int rc = parse_env(o);
    opterr = 0;
    int c;
    while (rc == 0 && (c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        rc = parse_option(c == '?' ? 0 : c, o);
    }
    if (rc != 0) {
        return rc;
    }
    if (optind < argc) {
        return tg_cli_usage_error(PROGRAM, "unexpected argument '%s'", argv[optind]);
    }
    return check_required(o);
}

/*
 * nng 1.5.2 (Debian 12) can hang in nng_close when a peer disconnects at the
 * same moment (fixed upstream in 1.9).  By the time the manager closes its
 * sockets the map is in PostgreSQL, so a stop that overruns this budget
 * exits anyway, with the status a completed stop would have.
 */
#define STOP_WATCHDOG_MS 5000u

static void *stop_watchdog_main(void *arg)
{
    (void)arg;
    struct timespec ts = {.tv_sec = STOP_WATCHDOG_MS / 1000, .tv_nsec = 0};
    nanosleep(&ts, NULL);
    tg_log_warn("manager: stopping took longer than %u ms (nng close); exiting", STOP_WATCHDOG_MS);
    _exit(TG_EXIT_OK);
}

static bool stop_requested(void *arg)
{
    const sigset_t *signals = arg;
    static const struct timespec now = {0, 0};
    int sig = sigtimedwait(signals, NULL, &now);
    if (sig <= 0) {
        return false;
    }
    tg_log_info("manager: %s received, stopping", strsignal(sig));
    pthread_t t;
    if (pthread_create(&t, NULL, stop_watchdog_main, NULL) == 0) {
        pthread_detach(t);
    }
    return true;
}

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, PROGRAM, usage, &code)) {
        return code;
    }
    tg_log_init("manager");
    options o;
    memset(&o, 0, sizeof(o));
    code = parse_args(argc, argv, &o);
    if (code != 0) {
        return code;
    }
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    tg_log_info("manager %s: starting (heartbeat %u ms, failure timeout %u ms)", o.cfg.name,
                o.cfg.heartbeat_interval_ms, o.cfg.failure_timeout_ms);
    tg_err err = grid_manager_run(&o.cfg, stop_requested, &signals);
    return err == TG_OK ? TG_EXIT_OK : TG_EXIT_FAILURE;
}

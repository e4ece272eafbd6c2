/*
 * main.c — tixgrid-load's options and the order of a run: resolve the
 * servers, the scenario's setup, the open-loop run, the audit, the report
 * (tests/load/README.md).
 */
#include "load.h"

#include "tixgrid/cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Exit statuses beyond tixgrid's common ones (cli.h). */
#define LOAD_EXIT_AUDIT 2 /* the audit found a violation or could not run */

/* File descriptors kept for everything but the connections. */
#define LOAD_FDS_SPARE 64u
/* Bounds of text options, in bytes. */
#define LOAD_CREDENTIAL_BYTES_MAX 128u

static const char usage[] =
    "usage: tixgrid-load --url http://HOST:PORT[/PATH] (--rate N [--seconds N] | --script SPEC)\n"
    "                    [--scenario NAME] [options]\n"
    "\n"
    "Open-loop HTTP/1.1 load on tixgrid's gateway: arrivals at scripted times whatever the\n"
    "answers, each request's latency measured from when it was due (no coordinated omission).\n"
    "\n"
    "Arrivals\n"
    "  --rate N               arrivals per second, 1..1000000, for --seconds N (default 10)\n"
    "  --script SPEC          comma-separated segments RATE@SECONDS (steady) or FROM-TO@SECONDS\n"
    "                         (linear ramp or decay), e.g. 0-10000@5,10000@60,30000@2,10000-0@5\n"
    "  --warmup-seconds N     arrivals due in the first N seconds are sent, not measured (0)\n"
    "  --max-requests N       send at most N requests in all (default: no bound)\n"
    "  --time-limit-s N       end the run after N s whatever is left (default: script + 60)\n"
    "Servers\n"
    "  --connections N        keep-alive connections to --url, 1..20000 (default 64)\n"
    "  --sandbox URL          the payment sandbox (purchase, sellout)\n"
    "  --sandbox-connections N  to it, 1..20000 (default 16)\n"
    "Scenarios (--scenario, default get)\n"
    "  get                    GET of --url's path (any server)\n"
    "  browse                 events, one event, its availability (--event)\n"
    "  hold-release           single-seat holds, each released: --email, --password,\n"
    "                         --event, --seat-first ID (partition << 32 | seat), --seats N\n"
    "  hold-cancel            single-seat holds, as hold-release's; a booking that holds 16\n"
    "                         is cancelled and replaced (--rate counts holds)\n"
    "  purchase               login, booking, best-available hold of --quantity seats,\n"
    "                         initiatePayment, Approve on the sandbox, payment-status\n"
    "  sellout                --buyers N buyers buy --quantity seats at a time until the\n"
    "                         event is sold out\n"
    "  --event ID             the event (default 1)\n"
    "  --quantity N           seats per booking, 1..16 (default 4)\n"
    "  --users N              accounts named by --user-pattern, 1..10000 (default 100)\n"
    "  --user-pattern P       printf pattern with one %u (default user%u@load.tixgrid)\n"
    "  --password TEXT        their password (or TIXGRID_LOAD_PASSWORD)\n"
    "  --sessions N           sessions at once (default 2 x --connections, purchase 4096)\n"
    "  --buyers N             sellout's virtual buyers (default 1000)\n"
    "  --poll-ms N            between payment-status polls (default 20)\n"
    "Audit and report\n"
    "  --db CONNINFO          audit the event in PostgreSQL after the run (libpq conninfo)\n"
    "  --catchup-timeout-s N  wait at most N s for PostgreSQL to hold every sale (default 10)\n"
    "  --json                 the report as one JSON object on stdout\n"
    "  --json-file FILE       also write that JSON object to FILE (the table stays on stdout)\n"
    "  --progress, --no-progress  a live line on stderr every second (default: if a tty)\n"
    "\n"
    "Exit status: 0 every request answered as expected and the audit clean; 1 some requests\n"
    "failed (figures invalid); 2 the audit found a violation or could not run; 64 bad usage;\n"
    "69 a server is unreachable or the setup failed.\n";

typedef enum {
    OPT_URL = 256,
    OPT_RATE,
    OPT_SECONDS,
    OPT_SCRIPT,
    OPT_WARMUP,
    OPT_MAX_REQUESTS,
    OPT_TIME_LIMIT,
    OPT_CONNECTIONS,
    OPT_SANDBOX,
    OPT_SANDBOX_CONNECTIONS,
    OPT_SCENARIO,
    OPT_EVENT,
    OPT_QUANTITY,
    OPT_USERS,
    OPT_USER_PATTERN,
    OPT_EMAIL,
    OPT_PASSWORD,
    OPT_SESSIONS,
    OPT_BUYERS,
    OPT_POLL_MS,
    OPT_SEAT_FIRST,
    OPT_SEATS,
    OPT_DB,
    OPT_CATCHUP,
    OPT_JSON,
    OPT_JSON_FILE,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
} option_id;

static const struct option longs[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"rate", required_argument, NULL, OPT_RATE},
    {"seconds", required_argument, NULL, OPT_SECONDS},
    {"script", required_argument, NULL, OPT_SCRIPT},
    {"warmup-seconds", required_argument, NULL, OPT_WARMUP},
    {"max-requests", required_argument, NULL, OPT_MAX_REQUESTS},
    {"time-limit-s", required_argument, NULL, OPT_TIME_LIMIT},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"sandbox", required_argument, NULL, OPT_SANDBOX},
    {"sandbox-connections", required_argument, NULL, OPT_SANDBOX_CONNECTIONS},
    {"scenario", required_argument, NULL, OPT_SCENARIO},
    {"event", required_argument, NULL, OPT_EVENT},
    {"quantity", required_argument, NULL, OPT_QUANTITY},
    {"users", required_argument, NULL, OPT_USERS},
    {"user-pattern", required_argument, NULL, OPT_USER_PATTERN},
    {"email", required_argument, NULL, OPT_EMAIL},
    {"password", required_argument, NULL, OPT_PASSWORD},
    {"sessions", required_argument, NULL, OPT_SESSIONS},
    {"buyers", required_argument, NULL, OPT_BUYERS},
    {"poll-ms", required_argument, NULL, OPT_POLL_MS},
    {"seat-first", required_argument, NULL, OPT_SEAT_FIRST},
    {"seats", required_argument, NULL, OPT_SEATS},
    {"db", required_argument, NULL, OPT_DB},
    {"catchup-timeout-s", required_argument, NULL, OPT_CATCHUP},
    {"json", no_argument, NULL, OPT_JSON},
    {"json-file", required_argument, NULL, OPT_JSON_FILE},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {NULL, 0, NULL, 0},
};

/* Options as given, before the checks that relate them. */
typedef struct {
    uint64_t rate, seconds, buyers, sessions, time_limit_s;
    const char *script;
} raw_options;

/* ---- Parsing --------------------------------------------------------------------- */

static int number(const char *name, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (tg_parse_u64(text, min, max, out) != TG_OK) {
        return tg_cli_usage_error(PROGRAM,
                                  "--%s wants a whole number %" PRIu64 "..%" PRIu64 " (got '%s')",
                                  name, min, max, text);
    }
    return 0;
}

/* One segment "RATE@SECONDS" or "FROM-TO@SECONDS". */
static int segment_parse(char *text, load_segment *s)
{
    char *at = strchr(text, '@');
    if (at == NULL) {
        return tg_cli_usage_error(PROGRAM,
                                  "--script segment '%s' is not RATE@SECONDS or "
                                  "FROM-TO@SECONDS",
                                  text);
    }
    *at = '\0';
    char *dash = strchr(text, '-');
    uint64_t from, to, seconds;
    if (dash != NULL) {
        *dash = '\0';
    }
    int rc = number("script's rate", text, 0, LOAD_RATE_MAX, &from);
    if (rc == 0) {
        rc = dash != NULL ? number("script's rate", dash + 1, 0, LOAD_RATE_MAX, &to)
                          : (to = from, 0);
    }
    if (rc == 0) {
        rc = number("script's seconds", at + 1, 1, LOAD_SECONDS_MAX, &seconds);
    }
    *s = (load_segment){.from = (double)from, .to = (double)to, .seconds = (double)seconds};
    return rc;
}

static int script_parse(const char *spec, load_options *o)
{
    char copy[1024];
    if (strlen(spec) >= sizeof(copy)) {
        return tg_cli_usage_error(PROGRAM, "--script is longer than %zu bytes", sizeof(copy) - 1);
    }
    snprintf(copy, sizeof(copy), "%s", spec);
    char *save = NULL;
    for (char *seg = strtok_r(copy, ",", &save); seg != NULL; seg = strtok_r(NULL, ",", &save)) {
        if (o->segment_count == LOAD_SEGMENTS_MAX) {
            return tg_cli_usage_error(PROGRAM, "--script has more than %u segments",
                                      LOAD_SEGMENTS_MAX);
        }
        int rc = segment_parse(seg, &o->segments[o->segment_count++]);
        if (rc != 0) {
            return rc;
        }
    }
    if (o->segment_count == 0 || load_schedule_total(o) == 0) {
        return tg_cli_usage_error(PROGRAM, "--script '%s' schedules no arrival", spec);
    }
    return 0;
}

static int option_text(int id, const char *arg, load_options *o, raw_options *r)
{
    switch (id) {
    case OPT_URL:
        o->url = arg;
        return 0;
    case OPT_SCRIPT:
        r->script = arg;
        return 0;
    case OPT_SANDBOX:
        o->sandbox_url = arg;
        return 0;
    case OPT_SCENARIO:
        o->scenario = arg;
        return 0;
    case OPT_USER_PATTERN:
        o->user_pattern = arg;
        return 0;
    case OPT_EMAIL:
        o->email = arg;
        return 0;
    case OPT_PASSWORD:
        o->password = arg;
        return 0;
    case OPT_DB:
        o->db = arg;
        return 0;
    case OPT_JSON:
        o->json = true;
        return 0;
    case OPT_JSON_FILE:
        o->json_file = arg;
        return 0;
    case OPT_PROGRESS:
        o->progress = true;
        return 0;
    case OPT_NO_PROGRESS:
        o->progress = false;
        return 0;
    default:
        return -1;
    }
}

static int option_number(int id, const char *arg, load_options *o, raw_options *r)
{
    const struct option *l = &longs[id - OPT_URL];
    switch (id) {
    case OPT_RATE:
        return number(l->name, arg, 1, LOAD_RATE_MAX, &r->rate);
    case OPT_SECONDS:
        return number(l->name, arg, 1, LOAD_SECONDS_MAX, &r->seconds);
    case OPT_WARMUP:
        return number(l->name, arg, 0, LOAD_SECONDS_MAX, &o->warmup_seconds);
    case OPT_MAX_REQUESTS:
        return number(l->name, arg, 1, UINT32_MAX, &o->max_requests);
    case OPT_TIME_LIMIT:
        return number(l->name, arg, 1, 4 * LOAD_SECONDS_MAX, &r->time_limit_s);
    case OPT_CONNECTIONS:
        return number(l->name, arg, 1, LOAD_CONNECTIONS_MAX, &o->connections);
    case OPT_SANDBOX_CONNECTIONS:
        return number(l->name, arg, 1, LOAD_CONNECTIONS_MAX, &o->sandbox_connections);
    case OPT_EVENT:
        return number(l->name, arg, 1, TG_WIRE_ID_MAX, &o->event_id);
    case OPT_QUANTITY:
        return number(l->name, arg, 1, TG_BOOKING_SEATS_MAX, &o->quantity);
    case OPT_USERS:
        return number(l->name, arg, 1, LOAD_USERS_MAX, &o->users);
    case OPT_SESSIONS:
        return number(l->name, arg, 1, LOAD_SESSIONS_MAX, &r->sessions);
    case OPT_BUYERS:
        return number(l->name, arg, 1, LOAD_SESSIONS_MAX, &r->buyers);
    case OPT_POLL_MS:
        return number(l->name, arg, 1, 10000, &o->poll_ms);
    case OPT_SEAT_FIRST:
        return number(l->name, arg, 1, TG_WIRE_ID_MAX, &o->seat_first);
    case OPT_SEATS:
        return number(l->name, arg, 1, TG_PARTITION_SEATS_MAX, &o->seats);
    case OPT_CATCHUP:
        return number(l->name, arg, 1, 3600, &o->catchup_timeout_s);
    default:
        return -1;
    }
}

static void defaults(load_options *o, raw_options *r)
{
    *o = (load_options){.scenario = "get",
                        .connections = 64,
                        .sandbox_connections = 16,
                        .event_id = 1,
                        .quantity = 4,
                        .users = 100,
                        .user_pattern = "user%u@load.tixgrid",
                        .poll_ms = 20,
                        .catchup_timeout_s = 10,
                        .progress = isatty(STDERR_FILENO) == 1};
    *r = (raw_options){.seconds = 10, .buyers = 1000};
}

static int options_read(int argc, char **argv, load_options *o, raw_options *r)
{
    int id, rc = 0;
    opterr = 0;
    while (rc == 0 && (id = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (id < OPT_URL) {
            return tg_cli_usage_error(PROGRAM, "unknown option or missing value: %s",
                                      argv[optind - 1]);
        }
        rc = option_text(id, optarg, o, r);
        if (rc < 0) {
            rc = option_number(id, optarg, o, r);
        }
    }
    if (rc == 0 && optind < argc) {
        rc = tg_cli_usage_error(PROGRAM, "unexpected argument '%s'", argv[optind]);
    }
    return rc;
}

_Static_assert(sizeof(longs) / sizeof(longs[0]) == OPT_NO_PROGRESS - OPT_URL + 2,
               "longs[] follows option_id");

/* ---- Checks that relate options ----------------------------------------------------- */

static bool is_scenario(const load_options *o, const char *name)
{
    return strcmp(o->scenario, name) == 0;
}

/* hold-release and hold-cancel: one account's holds over a seat range. */
static bool seat_range_scenario(const load_options *o)
{
    return is_scenario(o, "hold-release") || is_scenario(o, "hold-cancel");
}

/* The user pattern has exactly one %u and no other conversion. */
static bool pattern_ok(const char *p)
{
    const char *u = strstr(p, "%u");
    return u != NULL && strchr(p, '%') == u && strchr(u + 2, '%') == NULL && strlen(p) < 200;
}

static int schedule_check(load_options *o, const raw_options *r)
{
    if (r->script != NULL && r->rate != 0) {
        return tg_cli_usage_error(PROGRAM, "give --rate (with --seconds) or --script, not both");
    }
    if (r->script == NULL && r->rate == 0) {
        return tg_cli_usage_error(PROGRAM, "--rate or --script is required");
    }
    if (r->script != NULL) {
        return script_parse(r->script, o);
    }
    o->segments[0] = (load_segment){(double)r->rate, (double)r->rate, (double)r->seconds};
    o->segment_count = 1;
    return 0;
}

static int credentials_check(load_options *o)
{
    bool buyers = is_scenario(o, "purchase") || is_scenario(o, "sellout");
    if (!buyers && !seat_range_scenario(o)) {
        return 0;
    }
    if (o->password == NULL) {
        o->password = getenv("TIXGRID_LOAD_PASSWORD");
    }
    if (o->password == NULL || strlen(o->password) > LOAD_CREDENTIAL_BYTES_MAX ||
        (o->email != NULL && strlen(o->email) > LOAD_CREDENTIAL_BYTES_MAX)) {
        return tg_cli_usage_error(PROGRAM,
                                  "--%s needs --password (or TIXGRID_LOAD_PASSWORD) of "
                                  "at most %u bytes",
                                  o->scenario, LOAD_CREDENTIAL_BYTES_MAX);
    }
    if (buyers && !pattern_ok(o->user_pattern)) {
        return tg_cli_usage_error(PROGRAM,
                                  "--user-pattern wants one %%u and no other %% "
                                  "(got '%s')",
                                  o->user_pattern);
    }
    return 0;
}

static int scenario_check(load_options *o, const raw_options *r)
{
    bool buyers = is_scenario(o, "purchase") || is_scenario(o, "sellout");
    if (seat_range_scenario(o)) {
        if (o->email == NULL || o->seat_first == 0 || o->seats == 0) {
            return tg_cli_usage_error(PROGRAM, "%s needs --email, --seat-first and --seats",
                                      o->scenario);
        }
        /* Each connection's booking may hold one seat (hold-release) or 16. */
        uint64_t held = is_scenario(o, "hold-cancel") ? TG_BOOKING_SEATS_MAX : 1;
        if (o->seats < held * o->connections) {
            return tg_cli_usage_error(PROGRAM, "--seats must be at least %" PRIu64 " (%s)",
                                      held * o->connections,
                                      held > 1 ? "16 x --connections" : "--connections");
        }
    }
    if (buyers && o->sandbox_url == NULL) {
        return tg_cli_usage_error(PROGRAM, "%s needs --sandbox URL (the payment sandbox)",
                                  o->scenario);
    }
    if (!buyers) {
        o->sandbox_connections = 0;
    }
    if (is_scenario(o, "sellout")) {
        o->sessions = r->buyers;
        if (load_schedule_total(o) < r->buyers) {
            return tg_cli_usage_error(PROGRAM,
                                      "the rate schedules %" PRIu64 " arrivals, fewer "
                                      "than --buyers %" PRIu64,
                                      load_schedule_total(o), r->buyers);
        }
    } else {
        uint64_t fallback = is_scenario(o, "purchase") ? 4096 : 2 * o->connections;
        o->sessions = r->sessions != 0 ? r->sessions : fallback;
    }
    return 0;
}

/* Raises the open-file limit to what the connections need (thousands are
 * the point of this program; the soft limit is often 1,024). */
static int files_check(const load_options *o)
{
    struct rlimit rl;
    uint64_t need = o->connections + o->sandbox_connections + LOAD_FDS_SPARE;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }
    if (rl.rlim_cur < need && rl.rlim_max >= need) {
        rl.rlim_cur = (rlim_t)need;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need) {
        return tg_cli_usage_error(
            PROGRAM,
            "%" PRIu64 " connections need %" PRIu64 " open files; the limit is %llu (ulimit -n)",
            o->connections + o->sandbox_connections, need, (unsigned long long)rl.rlim_cur);
    }
    return 0;
}

static int options_parse(int argc, char **argv, load_options *o)
{
    raw_options r;
    defaults(o, &r);
    int rc = options_read(argc, argv, o, &r);
    if (rc == 0 && o->url == NULL) {
        rc = tg_cli_usage_error(PROGRAM, "--url is required");
    }
    bool known = false;
    for (uint32_t i = 0; rc == 0 && i < load_scenario_count; i++) {
        known = known || strcmp(load_scenarios[i].name, o->scenario) == 0;
    }
    if (rc == 0 && !known) {
        rc = tg_cli_usage_error(PROGRAM,
                                "--scenario is get, browse, hold-release, hold-cancel, "
                                "purchase or sellout (got '%s')",
                                o->scenario);
    }
    rc = rc != 0 ? rc : schedule_check(o, &r);
    rc = rc != 0 ? rc : credentials_check(o);
    rc = rc != 0 ? rc : scenario_check(o, &r);
    rc = rc != 0 ? rc : files_check(o);
    if (rc == 0) {
        double script_s = load_schedule_seconds(o);
        o->time_limit_s = r.time_limit_s != 0 ? r.time_limit_s : (uint64_t)script_s + 60;
    }
    return rc;
}

/* ---- The run ------------------------------------------------------------------------ */

static int exit_code(const load_run *run, const load_audit *a)
{
    if (load_failures(run) > 0) {
        return TG_EXIT_FAILURE;
    }
    if (run->opt.db != NULL && !a->clean) {
        return LOAD_EXIT_AUDIT;
    }
    return TG_EXIT_OK;
}

static int servers_resolve(load_run *run)
{
    int rc = load_target_resolve(&run->targets[TARGET_GATEWAY], run->opt.url, "--url");
    if (rc == 0 && run->opt.sandbox_url != NULL && run->opt.sandbox_connections > 0) {
        rc = load_target_resolve(&run->targets[TARGET_SANDBOX], run->opt.sandbox_url, "--sandbox");
    }
    return rc;
}

/* --json-file: the JSON report beside the table. */
static bool report_file(const load_run *run, const load_audit *a)
{
    FILE *f = fopen(run->opt.json_file, "w");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot write %s: %s\n", PROGRAM, run->opt.json_file, strerror(errno));
        return false;
    }
    load_report_json(run, a, f);
    return fclose(f) == 0;
}

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, PROGRAM, usage, &code)) {
        return code;
    }
    static load_run run; /* large (histograms, status counts): not on the stack */
    code = options_parse(argc, argv, &run.opt);
    code = code != 0 ? code : servers_resolve(&run);
    if (code != 0) {
        return code;
    }
    for (uint32_t i = 0; i < load_scenario_count; i++) {
        if (strcmp(load_scenarios[i].name, run.opt.scenario) == 0) {
            run.scenario = &load_scenarios[i];
        }
    }
    run.arrivals_total = strcmp(run.scenario->name, "sellout") == 0 ? run.opt.sessions
                                                                    : load_schedule_total(&run.opt);
    if (!load_scenario_setup(&run) || !load_run_loop(&run)) {
        load_scenario_free(&run);
        load_run_free(&run);
        return TG_EXIT_UNAVAILABLE;
    }
    load_audit audit = {0};
    if (run.opt.db != NULL) {
        load_audit_run(&run, &audit);
    }
    if (run.opt.json) {
        load_report_json(&run, &audit, stdout);
    } else {
        load_report_table(&run, &audit);
    }
    if (run.opt.json_file != NULL && !report_file(&run, &audit)) {
        code = TG_EXIT_FAILURE;
    }
    code = code != 0 ? code : exit_code(&run, &audit);
    load_scenario_free(&run);
    load_run_free(&run);
    return code;
}

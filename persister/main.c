/*
 * main.c — tixgrid-persister: a table of subcommands (see persister.h).
 *
 * main reads the flags every command shares, wherever they stand on the
 * line (`tixgrid-persister --db X migrate` and `tixgrid-persister migrate
 * --db X` are the same), picks the command by its name, runs it (it checks
 * its own arguments, then connects through pst_context_connect), closes
 * its connection and returns its exit code.  --help lists
 * the table, so a new command documents itself by its line there.
 */
#include "persister.h"

#include "tixgrid/cli.h"
#include "tixgrid/log.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every subcommand.  To add one, see persister.h. */
static const pst_command commands[] = {
    {"migrate", "migrate [--migrations DIR]",
     "apply the SQL migrations the database lacks (built in; DIR: read NNN_*.sql from there)",
     pst_cmd_migrate},
    {"seed-demo", "seed-demo",
     "add the demo data: concert event 1 with 100,000 seats, other events, artists, users",
     pst_cmd_seed_demo},
    {"seed-users", "seed-users N",
     "ensure load-test users user1..userN@load.tixgrid exist (password " PST_LOAD_USER_PASSWORD ")",
     pst_cmd_seed_users},
    {"layout-json", "layout-json EVENT_ID PARTITION_ID",
     "print a partition's layout from PostgreSQL for tixgrid-pu --partition", pst_cmd_layout_json},
    {"pu-register", "pu-register NAME REP_URL [PUB_URL] [--zone ZONE]",
     "add or update a processing unit's addresses (grid_members)", pst_cmd_pu_register},
    {"place", "place PARTITION PU_NAME",
     "make a registered unit the partition's primary and raise its epoch by 1", pst_cmd_place},
    {"run", "run [--batch-max-changes N] [--batch-max-ms MS] [--routes-refresh-ms MS]\n"
            "      [--retry-max-ms MS] [--poll-idle-ms MS] [--manager-pub URL[,URL]]",
     "drain placed partitions' change logs into PostgreSQL until SIGTERM\n"
     "      (defaults: 8192 changes or 20 ms a batch, routes every 1000 ms, retries\n"
     "      100..5000 ms apart, idle partitions polled every 5 ms; with --manager-pub\n"
     "      or TIXGRID_MANAGER_PUB, routes are read again at every map published)",
     pst_cmd_run},
    {"ingest", "ingest PARTITION FILE [--epoch N]",
     "write change-log records (JSON lines; FILE - is stdin) as the drain would", pst_cmd_ingest},
    {"replay", "replay PARTITION --pu URL [--epoch N] [--hold-ttl-ms N] [--payment-window-ms N]",
     "load a partition from PostgreSQL into the unit at URL (layout, seats, live bookings)",
     pst_cmd_replay},
};

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))
/* Words a command line may have, at most. */
#define ARGS_MAX 256

static const char usage_head[] =
    "usage: tixgrid-persister [--db CONNINFO] COMMAND [ARGS]\n"
    "\n"
    "The write-behind persister of tixgrid: the database schema, demo data, and\n"
    "(in later builds) the drain of change logs to PostgreSQL and replay.\n"
    "\n"
    "Commands:\n";

static const char usage_tail[] =
    "\n"
    "Options (any command, before or after it):\n"
    "  --db CONNINFO            libpq connection string or URI, e.g.\n"
    "                           'host=/var/run/postgresql dbname=tixgrid' (TIXGRID_DB)\n"
    "  --connect-timeout-s N    seconds a connection attempt may take, 1..3600\n"
    "                           (default 10)          (TIXGRID_DB_CONNECT_TIMEOUT_S)\n"
    "  --log-level LEVEL        debug, info, warn or error (TIXGRID_LOG_LEVEL)\n"
    "  --help, --version\n"
    "\n"
    "Logs are JSON lines on stderr.  Exit status: 0 success, 1 failure, 64 bad\n"
    "flags or arguments, 69 PostgreSQL unreachable.\n";

static const char *usage_text(void)
{
    static char text[4096];
    size_t at = (size_t)snprintf(text, sizeof(text), "%s", usage_head);
    for (size_t i = 0; i < COMMAND_COUNT && at < sizeof(text); i++) {
        at += (size_t)snprintf(text + at, sizeof(text) - at, "  %s\n      %s\n",
                               commands[i].synopsis, commands[i].summary);
    }
    if (at < sizeof(text)) {
        snprintf(text + at, sizeof(text) - at, "%s", usage_tail);
    }
    return text;
}

int pst_exit_code(PGconn *db, tg_err err)
{
    if (err == TG_OK) {
        return TG_EXIT_OK;
    }
    if (err == TG_EDB && pst_db_connection_lost(db)) {
        return TG_EXIT_UNAVAILABLE;
    }
    return TG_EXIT_FAILURE;
}

int pst_args_positional(int argc, char **argv, int min, int max)
{
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            return tg_cli_usage_error(PST_PROGRAM, "%s: unknown option '%s'", argv[0], argv[i]);
        }
    }
    if (argc - 1 < min || argc - 1 > max) {
        for (size_t i = 0; i < COMMAND_COUNT; i++) {
            if (strcmp(commands[i].name, argv[0]) == 0) {
                return tg_cli_usage_error(PST_PROGRAM, "usage: %s %s", PST_PROGRAM,
                                          commands[i].synopsis);
            }
        }
        return tg_cli_usage_error(PST_PROGRAM, "%s: wrong number of arguments", argv[0]);
    }
    return 0;
}

typedef struct {
    const char *conninfo;
    unsigned connect_timeout_s;
    int rest_count;
    char *rest[ARGS_MAX]; /* the command's name and its own words */
} options;

/* If argv[*i] is the long flag name (as "--name V" or "--name=V"), sets
 * *value, advances *i past it and returns 1; returns 0 when it is another
 * word, -1 when the value is missing. */
static int flag_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) != 0) {
        return 0;
    }
    if (argv[*i][len] == '=') {
        *value = argv[*i] + len + 1;
        return 1;
    }
    if (argv[*i][len] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

static int option_set(options *o, const char *flag, const char *value)
{
    uint64_t n;
    tg_log_level level;
    if (strcmp(flag, "--db") == 0) {
        o->conninfo = value;
    } else if (strcmp(flag, "--connect-timeout-s") == 0) {
        if (tg_parse_u64(value, 1, 3600, &n) != TG_OK) {
            return tg_cli_usage_error(PST_PROGRAM, "--connect-timeout-s must be 1..3600");
        }
        o->connect_timeout_s = (unsigned)n;
    } else if (tg_log_level_parse(value, &level) == TG_OK) { /* --log-level */
        tg_log_set_level(level);
    } else {
        return tg_cli_usage_error(PST_PROGRAM, "--log-level must be debug, info, warn or error");
    }
    return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
    static const char *const flags[] = {"--db", "--connect-timeout-s", "--log-level"};
    o->conninfo = tg_env("TIXGRID_DB", NULL);
    const char *timeout = tg_env("TIXGRID_DB_CONNECT_TIMEOUT_S", NULL);
    if (timeout != NULL && option_set(o, "--connect-timeout-s", timeout) != 0) {
        return TG_EXIT_USAGE;
    }
    bool positional_only = false;
    for (int i = 1; i < argc; i++) {
        int found = 0;
        for (size_t f = 0; f < 3 && found == 0 && !positional_only; f++) {
            const char *value = NULL;
            found = flag_value(argc, argv, &i, flags[f], &value);
            if (found < 0) {
                return tg_cli_usage_error(PST_PROGRAM, "%s needs a value", flags[f]);
            }
            if (found > 0 && option_set(o, flags[f], value) != 0) {
                return TG_EXIT_USAGE;
            }
        }
        if (found == 0 && !positional_only && strcmp(argv[i], "--") == 0) {
            positional_only = true;
        } else if (found == 0) {
            if (o->rest_count == ARGS_MAX) {
                return tg_cli_usage_error(PST_PROGRAM, "too many arguments");
            }
            o->rest[o->rest_count++] = argv[i];
        }
    }
    return 0;
}

static const pst_command *command_find(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

int pst_context_connect(pst_context *ctx)
{
    char why[PST_DB_ERROR_BYTES];
    if (ctx->conninfo == NULL || ctx->conninfo[0] == '\0') {
        return tg_cli_usage_error(PST_PROGRAM, "this command needs a database: give --db "
                                               "CONNINFO or set TIXGRID_DB (e.g. "
                                               "'host=/var/run/postgresql dbname=tixgrid')");
    }
    if (pst_db_conninfo_check(ctx->conninfo, why, sizeof(why)) != TG_OK) {
        return tg_cli_usage_error(PST_PROGRAM,
                                  "--db / TIXGRID_DB is not a libpq connection "
                                  "string: %s",
                                  why);
    }
    tg_err err = pst_db_connect(ctx->conninfo, ctx->connect_timeout_s, &ctx->db);
    if (err != TG_OK) {
        return err == TG_EDB ? TG_EXIT_UNAVAILABLE : TG_EXIT_FAILURE;
    }
    return 0;
}

static int command_run(const pst_command *cmd, options *o)
{
    pst_context ctx = {.conninfo = o->conninfo, .connect_timeout_s = o->connect_timeout_s};
    int code = cmd->run(&ctx, o->rest_count, o->rest);
    pst_db_close(ctx.db);
    return code;
}

int main(int argc, char **argv)
{
    int code;
    if (tg_cli_standard(argc, argv, PST_PROGRAM, usage_text(), &code)) {
        return code;
    }
    tg_log_init("persister");
    static options o;
    code = parse_args(argc, argv, &o);
    if (code != 0) {
        return code;
    }
    if (o.rest_count == 0) {
        return tg_cli_usage_error(PST_PROGRAM, "no command given");
    }
    const pst_command *cmd = command_find(o.rest[0]);
    if (cmd == NULL) {
        return tg_cli_usage_error(PST_PROGRAM, "unknown %s '%s'",
                                  o.rest[0][0] == '-' ? "option" : "command", o.rest[0]);
    }
    if (sodium_init() < 0) {
        tg_log_error("libsodium failed to initialise");
        return TG_EXIT_FAILURE;
    }
    return command_run(cmd, &o);
}

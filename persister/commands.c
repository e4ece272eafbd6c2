/*
 * commands.c — the subcommand table and the helpers commands share (exit
 * codes, positional arguments, the connection), in the library rather
 * than in main.c: other programs link libtg_persister.a for its code
 * (the gateway publishes events with replay.c), and every object of the
 * library must link without main.
 */
#include "persister.h"

#include "tixgrid/cli.h"

#include <string.h>

/* Every subcommand.  To add one, see persister.h. */
const pst_command pst_commands[] = {
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
    {"user-role", "user-role EMAIL ROLE",
     "make an account a buyer, an organizer or an admin (effective at its next login)",
     pst_cmd_user_role},
};

const size_t pst_command_count = sizeof(pst_commands) / sizeof(pst_commands[0]);

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
        for (size_t i = 0; i < pst_command_count; i++) {
            if (strcmp(pst_commands[i].name, argv[0]) == 0) {
                return tg_cli_usage_error(PST_PROGRAM, "usage: %s %s", PST_PROGRAM,
                                          pst_commands[i].synopsis);
            }
        }
        return tg_cli_usage_error(PST_PROGRAM, "%s: wrong number of arguments", argv[0]);
    }
    return 0;
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


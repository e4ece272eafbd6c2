/*
 * migrate.c — numbered SQL migrations (schemas/sql/NNN_name.sql), each
 * applied once.
 *
 * The database records what it has in schema_migrations(version, name,
 * checksum, applied_at).  A run takes a session advisory lock (so two
 * deployments migrating at once take turns), checks every recorded migration
 * against the ones it carries, then applies the missing ones in version
 * order, each with its record in one transaction: a migration is either
 * wholly applied and recorded or not at all.  A migration file must
 * therefore not contain BEGIN/COMMIT, nor statements that cannot run in a
 * transaction (CREATE INDEX CONCURRENTLY, VACUUM).
 *
 * The checksum (SHA-256 of the file's bytes) makes editing an applied
 * migration an error rather than a silent drift between databases: the fix
 * is a new migration.  A database that has a version this build lacks is
 * refused too (an older persister against a newer schema).
 *
 * The migrations are compiled into the binary (persister/meson.build
 * generates pst_migrations_builtin from schemas/sql), so a deployed
 * persister needs no data files; `migrate --migrations DIR` reads a folder
 * instead, for development and for the tests.
 *
 * Rejected: a migration tool outside the binary (one more thing to install
 * and version); down-migrations (a rollback of a schema change on a live
 * ticketing system is a new forward migration, written and tested like any).
 */
#include "persister.h"

#include "tixgrid/log.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Key of the advisory lock that serialises migrate runs ("tixgrid" in ASCII). */
#define MIGRATE_LOCK_KEY "32767063150979428"

static const char create_table_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY CHECK (version > 0),"
    " name text NOT NULL,"
    " checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),"
    " applied_at timestamptz NOT NULL DEFAULT now())";

typedef struct {
    uint32_t version;
    const pst_migration *m;
    char checksum[65];
    bool applied;
} planned;

void pst_migration_checksum(const pst_migration *m, char hex[65])
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, (const unsigned char *)m->sql, m->sql_len);
    sodium_bin2hex(hex, 65, digest, sizeof(digest));
}

/* The version of "NNN_name.sql": its leading digits (at least three), then
 * '_', then a name, then ".sql"; 0 when the name does not follow the rule. */
static uint32_t version_of(const char *name)
{
    size_t digits = strspn(name, "0123456789");
    size_t len = strlen(name);
    if (digits < 3 || digits > 6 || name[digits] != '_' || len < digits + 6 ||
        strcmp(name + len - 4, ".sql") != 0) {
        return 0;
    }
    return (uint32_t)strtoul(name, NULL, 10);
}

static tg_err plan_build(const pst_migration *list, uint32_t count, planned *plan)
{
    for (uint32_t i = 0; i < count; i++) {
        plan[i] = (planned){.version = version_of(list[i].name), .m = &list[i]};
        if (plan[i].version == 0) {
            tg_log_error("migrate: %s is not named NNN_name.sql", list[i].name);
            return TG_EINVAL;
        }
        if (i > 0 && plan[i].version <= plan[i - 1].version) {
            tg_log_error("migrate: %s and %s: versions must rise (one file per version)",
                         list[i - 1].name, list[i].name);
            return TG_EINVAL;
        }
        pst_migration_checksum(&list[i], plan[i].checksum);
    }
    return TG_OK;
}

static planned *plan_find(planned *plan, uint32_t count, uint32_t version)
{
    for (uint32_t i = 0; i < count; i++) {
        if (plan[i].version == version) {
            return &plan[i];
        }
    }
    return NULL;
}

/* Marks the recorded migrations applied; refuses a changed or unknown one. */
static tg_err recorded_check(PGconn *db, planned *plan, uint32_t count, uint32_t *already)
{
    PGresult *res;
    tg_err err = pst_db_query(db, "read schema_migrations",
                              "SELECT version, name, checksum FROM schema_migrations "
                              "ORDER BY version",
                              0, NULL, &res);
    if (err != TG_OK) {
        return err;
    }
    *already = 0;
    for (int r = 0; r < PQntuples(res) && err == TG_OK; r++) {
        int64_t version = 0;
        pst_db_parse_i64(PQgetvalue(res, r, 0), &version);
        const char *name = PQgetvalue(res, r, 1);
        planned *p = plan_find(plan, count, (uint32_t)version);
        if (p == NULL) {
            tg_log_error("migrate: the database has migration %s, which this build does not "
                         "know; run a tixgrid-persister at least as new as the database",
                         name);
            err = TG_ECORRUPT;
        } else if (strcmp(p->checksum, PQgetvalue(res, r, 2)) != 0) {
            tg_log_error("migrate: %s was changed after it was applied (checksum %.12s..., "
                         "recorded %.12s...); never edit an applied migration, add a new one",
                         p->m->name, p->checksum, PQgetvalue(res, r, 2));
            err = TG_ECORRUPT;
        } else {
            p->applied = true;
            (*already)++;
        }
    }
    PQclear(res);
    return err;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static tg_err apply_one(PGconn *db, const planned *p)
{
    int64_t t0 = now_ms();
    char version[16];
    snprintf(version, sizeof(version), "%" PRIu32, p->version);
    const char *params[] = {version, p->m->name, p->checksum};
    tg_err err = pst_db_begin(db);
    if (err == TG_OK) {
        err = pst_db_exec(db, p->m->name, p->m->sql);
    }
    if (err == TG_OK) {
        err = pst_db_query(db, "record migration",
                           "INSERT INTO schema_migrations (version, name, checksum) "
                           "VALUES ($1, $2, $3)",
                           3, params, NULL);
    }
    if (err == TG_OK) {
        err = pst_db_commit(db);
    }
    if (err != TG_OK) {
        pst_db_rollback(db);
        tg_log_error("migrate: %s not applied; nothing of it was kept", p->m->name);
        return err;
    }
    tg_log_info("migrate: applied %s in %lld ms", p->m->name, (long long)(now_ms() - t0));
    return TG_OK;
}

static tg_err maintain(PGconn *db)
{
    int64_t made = 0;
    tg_err err = pst_db_query_i64(db, "partition upkeep",
                                  "SELECT CASE WHEN to_regproc('tixgrid_maintain_partitions') "
                                  "IS NULL THEN 0 ELSE tixgrid_maintain_partitions() END",
                                  0, NULL, 0, &made);
    if (err == TG_OK && made > 0) {
        tg_log_info("migrate: created %lld new event or audit partitions", (long long)made);
    }
    return err;
}

static tg_err migrate_locked(PGconn *db, planned *plan, uint32_t count, pst_migrate_result *result)
{
    tg_err err = pst_db_exec(db, "create schema_migrations", create_table_sql);
    if (err == TG_OK) {
        err = recorded_check(db, plan, count, &result->already_applied);
    }
    for (uint32_t i = 0; i < count && err == TG_OK; i++) {
        if (!plan[i].applied) {
            err = apply_one(db, &plan[i]);
            result->applied += err == TG_OK;
        }
    }
    return err == TG_OK ? maintain(db) : err;
}

tg_err pst_migrate(PGconn *db, const pst_migration *list, uint32_t count,
                   pst_migrate_result *result)
{
    *result = (pst_migrate_result){0};
    if (count > PST_MIGRATIONS_MAX) {
        return TG_EINVAL;
    }
    planned *plan = calloc(count ? count : 1, sizeof(*plan));
    if (plan == NULL) {
        return TG_ENOMEM;
    }
    tg_err err = plan_build(list, count, plan);
    if (err == TG_OK) {
        err = pst_db_exec(db, "take the migrate lock",
                          "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")");
    }
    if (err == TG_OK) {
        err = migrate_locked(db, plan, count, result);
        if (!pst_db_connection_lost(db)) {
            pst_db_exec(db, "release the migrate lock",
                        "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")");
        }
    }
    free(plan);
    return err;
}

/* ---- Reading migrations from a folder (--migrations DIR) ------------------- */

typedef struct {
    pst_migration *list;
    uint32_t count;
} loaded;

static void loaded_free(loaded *l)
{
    for (uint32_t i = 0; i < l->count; i++) {
        free((void *)l->list[i].name);
        free((void *)l->list[i].sql);
    }
    free(l->list);
    *l = (loaded){0};
}

static int name_order(const void *a, const void *b)
{
    return strcmp(((const pst_migration *)a)->name, ((const pst_migration *)b)->name);
}

static tg_err file_read(const char *dir, const char *name, pst_migration *m)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        tg_log_error("migrate: cannot read %s: %s", path, strerror(errno));
        return TG_ESYSTEM;
    }
    char *buf = malloc(PST_MIGRATION_BYTES_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, PST_MIGRATION_BYTES_MAX + 1, f) : 0;
    bool failed = buf == NULL || ferror(f);
    fclose(f);
    if (failed || n > PST_MIGRATION_BYTES_MAX) {
        tg_log_error("migrate: cannot read %s (or it exceeds %u bytes)", path,
                     PST_MIGRATION_BYTES_MAX);
        free(buf);
        return TG_EINVAL;
    }
    buf[n] = '\0';
    m->name = strdup(name);
    m->sql = buf;
    m->sql_len = n;
    return m->name != NULL ? TG_OK : TG_ENOMEM;
}

/* Reads every NNN_name.sql of dir (other files are ignored), sorted by name. */
static tg_err folder_load(const char *dir, loaded *out)
{
    *out = (loaded){0};
    DIR *d = opendir(dir);
    if (d == NULL) {
        tg_log_error("migrate: cannot open --migrations %s: %s", dir, strerror(errno));
        return TG_EINVAL;
    }
    out->list = calloc(PST_MIGRATIONS_MAX, sizeof(*out->list));
    tg_err err = out->list != NULL ? TG_OK : TG_ENOMEM;
    struct dirent *de;
    while (err == TG_OK && (de = readdir(d)) != NULL) {
        if (version_of(de->d_name) == 0) {
            continue;
        }
        if (out->count == PST_MIGRATIONS_MAX) {
            err = TG_EINVAL;
            break;
        }
        err = file_read(dir, de->d_name, &out->list[out->count]);
        out->count += err == TG_OK;
    }
    closedir(d);
    if (err != TG_OK) {
        loaded_free(out);
        return err;
    }
    qsort(out->list, out->count, sizeof(*out->list), name_order);
    return TG_OK;
}

/* ---- The command ------------------------------------------------------------ */

int pst_cmd_migrate(pst_context *ctx, int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--migrations") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strncmp(argv[i], "--migrations=", 13) == 0) {
            dir = argv[i] + 13;
        } else {
            return tg_cli_usage_error(PST_PROGRAM, "migrate: unexpected argument '%s'", argv[i]);
        }
    }
    int code = pst_context_connect(ctx);
    if (code != 0) {
        return code;
    }
    loaded folder = {0};
    const pst_migration *list = pst_migrations_builtin;
    uint32_t count = pst_migrations_builtin_count;
    if (dir != NULL) {
        tg_err err = folder_load(dir, &folder);
        if (err != TG_OK) {
            return err == TG_EINVAL ? TG_EXIT_USAGE : TG_EXIT_FAILURE;
        }
        list = folder.list;
        count = folder.count;
    }
    pst_migrate_result result;
    tg_err err = pst_migrate(ctx->db, list, count, &result);
    if (err == TG_OK) {
        tg_log_info("migrate: %u applied, %u already applied; schema is at %s", result.applied,
                    result.already_applied, count > 0 ? list[count - 1].name : "nothing");
    }
    loaded_free(&folder);
    return pst_exit_code(ctx->db, err);
}

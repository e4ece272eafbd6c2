/*
 * db.c — libpq at the boundary (see db.h).
 *
 * libpq reports errors as multi-line text ("connection to server ... failed:
 * No such file or directory\n\tIs the server running locally ...?").  A log
 * record is one line, so every message is folded: runs of newlines and tabs
 * become one space.  The last failure's SQLSTATE and folded text are kept per
 * thread for callers that must tell a constraint violation from a lost
 * connection without parsing the log.
 *
 * Connection parameters: our defaults (connect_timeout, application_name)
 * come first in PQconnectdbParams' arrays and the caller's conninfo is
 * expanded after them, so anything the operator writes in --db wins.
 */
#include "db.h"

#include "tixgrid/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_sqlstate[6];
static _Thread_local char last_error[PST_DB_ERROR_BYTES];

const char *pst_db_last_sqlstate(void)
{
    return last_sqlstate;
}

const char *pst_db_last_error(void)
{
    return last_error;
}

/* Copies text into dst as one line: whitespace runs (newlines, tabs) become
 * one space, leading and trailing whitespace goes. */
static void fold(char *dst, size_t size, const char *text)
{
    size_t n = 0;
    bool space = false;
    for (const char *p = text ? text : ""; *p != '\0' && n + 1 < size; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < size) {
            dst[n++] = ' ';
        }
        space = false;
        dst[n++] = *p;
    }
    dst[n] = '\0';
}

static void remember(const char *sqlstate, const char *message)
{
    snprintf(last_sqlstate, sizeof(last_sqlstate), "%s", sqlstate ? sqlstate : "");
    fold(last_error, sizeof(last_error), message);
}

tg_err pst_db_parse_i64(const char *text, int64_t *out)
{
    if (text == NULL || text[0] == '\0') {
        return TG_EINVAL;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0') {
        return TG_EINVAL;
    }
    *out = v;
    return TG_OK;
}

static void notice_cb(void *arg, const PGresult *res)
{
    (void)arg;
    char line[PST_DB_ERROR_BYTES];
    fold(line, sizeof(line), PQresultErrorMessage(res));
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity != NULL && strcmp(severity, "WARNING") == 0) {
        tg_log_warn("db: server: %s", line);
    } else {
        tg_log_debug("db: server: %s", line);
    }
}

tg_err pst_db_conninfo_check(const char *conninfo, char *why, size_t why_size)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL) {
        fold(why, why_size, err != NULL ? err : "out of memory");
        PQfreemem(err);
        return TG_EINVAL;
    }
    PQconninfoFree(opts);
    return TG_OK;
}

tg_err pst_db_connect(const char *conninfo, unsigned timeout_s, PGconn **out)
{
    *out = NULL;
    char why[PST_DB_ERROR_BYTES];
    if (pst_db_conninfo_check(conninfo, why, sizeof(why)) != TG_OK) {
        remember(NULL, why);
        tg_log_error("db: the connection string (--db or TIXGRID_DB) does not parse: %s", why);
        return TG_EINVAL;
    }
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%u", timeout_s != 0 ? timeout_s : PST_DB_CONNECT_TIMEOUT_S);
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const values[] = {timeout, "tixgrid-persister", conninfo, NULL};
    PGconn *db = PQconnectdbParams(keys, values, 1);
    if (db == NULL) {
        remember(NULL, "out of memory");
        tg_log_error("db: cannot connect to PostgreSQL: out of memory");
        return TG_ENOMEM;
    }
    if (PQstatus(db) != CONNECTION_OK) {
        remember(NULL, PQerrorMessage(db));
        tg_log_error("db: cannot connect to PostgreSQL: %s (check --db or TIXGRID_DB, and that "
                     "the server is up)",
                     last_error);
        PQfinish(db);
        return TG_EDB;
    }
    PQsetNoticeReceiver(db, notice_cb, NULL);
    *out = db;
    return TG_OK;
}

void pst_db_close(PGconn *db)
{
    if (db != NULL) {
        PQfinish(db);
    }
}

bool pst_db_connection_lost(PGconn *db)
{
    return db == NULL || PQstatus(db) == CONNECTION_BAD;
}

/* Logs and remembers a failed result (res may be NULL); returns TG_EDB. */
static tg_err fail(PGconn *db, const PGresult *res, const char *what)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    char text[PST_DB_ERROR_BYTES];
    if (primary != NULL) {
        snprintf(text, sizeof(text), "%s%s%s", primary, detail ? ": " : "", detail ? detail : "");
    } else {
        snprintf(text, sizeof(text), "%s", PQerrorMessage(db));
    }
    remember(state, text);
    if (pst_db_connection_lost(db)) {
        tg_log_error("db: %s: connection to PostgreSQL lost: %s", what, last_error);
    } else {
        tg_log_error("db: %s: %s (SQLSTATE %s)", what, last_error, state ? state : "none");
    }
    return TG_EDB;
}

tg_err pst_db_exec(PGconn *db, const char *what, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(res);
    tg_err err = TG_OK;
    if (res == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)) {
        err = fail(db, res, what);
    }
    PQclear(res);
    return err;
}

tg_err pst_db_query(PGconn *db, const char *what, const char *sql, int param_count,
                    const char *const *params, PGresult **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    PGresult *res = PQexecParams(db, sql, param_count, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (res == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)) {
        tg_err err = fail(db, res, what);
        PQclear(res);
        return err;
    }
    if (out != NULL) {
        *out = res;
    } else {
        PQclear(res);
    }
    return TG_OK;
}

tg_err pst_db_query_i64(PGconn *db, const char *what, const char *sql, int param_count,
                        const char *const *params, int64_t fallback, int64_t *out)
{
    PGresult *res;
    tg_err err = pst_db_query(db, what, sql, param_count, params, &res);
    if (err != TG_OK) {
        return err;
    }
    if (PQntuples(res) != 1 || PQnfields(res) != 1) {
        tg_log_error("db: %s: expected one value, got %d rows of %d columns", what, PQntuples(res),
                     PQnfields(res));
        PQclear(res);
        return TG_EDB;
    }
    *out = fallback;
    if (!PQgetisnull(res, 0, 0) && pst_db_parse_i64(PQgetvalue(res, 0, 0), out) != TG_OK) {
        tg_log_error("db: %s: '%s' is not an integer", what, PQgetvalue(res, 0, 0));
        err = TG_EDB;
    }
    PQclear(res);
    return err;
}

tg_err pst_db_begin(PGconn *db)
{
    return pst_db_exec(db, "begin", "BEGIN");
}

tg_err pst_db_commit(PGconn *db)
{
    return pst_db_exec(db, "commit", "COMMIT");
}

void pst_db_rollback(PGconn *db)
{
    PGTransactionStatusType ts = PQtransactionStatus(db);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
        PQclear(PQexec(db, "ROLLBACK"));
    }
}

tg_err pst_db_copy_begin(PGconn *db, const char *what, const char *copy_sql)
{
    PGresult *res = PQexec(db, copy_sql);
    tg_err err = TG_OK;
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        err = fail(db, res, what);
    }
    PQclear(res);
    return err;
}

tg_err pst_db_copy_put(PGconn *db, const char *data, size_t len)
{
    /* PQputCopyData takes an int length: hand over at most 1 GiB a call. */
    while (len > 0) {
        int piece = len > (1u << 30) ? (1 << 30) : (int)len;
        if (PQputCopyData(db, data, piece) != 1) {
            return fail(db, NULL, "copy data");
        }
        data += piece;
        len -= (size_t)piece;
    }
    return TG_OK;
}

tg_err pst_db_copy_end(PGconn *db, const char *end_error)
{
    if (PQputCopyEnd(db, end_error) != 1) {
        return fail(db, NULL, "copy end");
    }
    tg_err err = TG_OK;
    PGresult *res;
    /* One result for the COPY, then NULL; bounded by the protocol. */
    while ((res = PQgetResult(db)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && err == TG_OK) {
            err = end_error != NULL ? TG_EDB : fail(db, res, "copy");
        }
        PQclear(res);
    }
    return err;
}

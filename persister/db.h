/*
 * db.h — the persister's thin layer over libpq.
 *
 * Every libpq failure becomes TG_EDB at this boundary, logged once as a
 * single line ("db: <what>: <message> (SQLSTATE xxxxx)") with libpq's
 * multi-line text folded onto it; callers add no second line for the same
 * failure.  Whether the connection itself is gone (PostgreSQL down, network
 * cut) is told apart with pst_db_connection_lost(): the drain retries then,
 * while a refused statement is a bug or corruption.
 *
 * Server notices (NOTICE, WARNING: "relation already exists, skipping") go
 * to the log at debug level (warn for WARNING), never to bare stderr.
 *
 * A PGconn is not thread-safe: one connection per thread.
 */
#ifndef TIXGRID_PERSISTER_DB_H
#define TIXGRID_PERSISTER_DB_H

#include "tixgrid/err.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seconds a connection attempt may take (libpq's connect_timeout), unless
 * the conninfo sets its own. */
#define PST_DB_CONNECT_TIMEOUT_S 10u
/* Bytes of a folded error message kept for callers (pst_db_last_error). */
#define PST_DB_ERROR_BYTES 512u

/* TG_OK when conninfo parses as a libpq connection string or URI (nothing
 * is contacted); TG_EINVAL with a reason in why otherwise. */
tg_err pst_db_conninfo_check(const char *conninfo, char *why, size_t why_size);

/* Connects with connect_timeout = timeout_s (0: PST_DB_CONNECT_TIMEOUT_S)
 * and application_name "tixgrid-persister", both overridable by conninfo.
 * TG_EINVAL when conninfo does not parse, TG_EDB when the server cannot be
 * reached or refuses; the log line names TIXGRID_DB and --db. */
tg_err pst_db_connect(const char *conninfo, unsigned timeout_s, PGconn **out);

/* Closes db; NULL is allowed. */
void pst_db_close(PGconn *db);

/* True when db's connection is broken (the server went away). */
bool pst_db_connection_lost(PGconn *db);

/* Runs sql (one or several statements, no parameters) and discards the
 * results.  what names the step in the log line. */
tg_err pst_db_exec(PGconn *db, const char *what, const char *sql);

/* Runs one statement with text parameters (params[i] may be NULL: SQL NULL).
 * On TG_OK *out (when out is not NULL) holds the result, which the caller
 * PQclear()s; on error *out is NULL. */
tg_err pst_db_query(PGconn *db, const char *what, const char *sql, int param_count,
                    const char *const *params, PGresult **out);

/* A statement returning one row of one integer column (NULL reads as
 * fallback). */
tg_err pst_db_query_i64(PGconn *db, const char *what, const char *sql, int param_count,
                        const char *const *params, int64_t fallback, int64_t *out);

tg_err pst_db_begin(PGconn *db);
tg_err pst_db_commit(PGconn *db);
/* Rolls back when a transaction is open; never fails (a lost connection has
 * nothing left to roll back). */
void pst_db_rollback(PGconn *db);

/* COPY ... FROM STDIN: start with the COPY statement, send data in pieces of
 * any size, end (end_error NULL: commit the copy; otherwise abort it with
 * that message). */
tg_err pst_db_copy_begin(PGconn *db, const char *what, const char *copy_sql);
tg_err pst_db_copy_put(PGconn *db, const char *data, size_t len);
tg_err pst_db_copy_end(PGconn *db, const char *end_error);

/* The SQLSTATE of the last failure on this thread ("" when none, or when it
 * came from the client side), and its folded message. */
const char *pst_db_last_sqlstate(void);
const char *pst_db_last_error(void);

/* Parses a whole decimal integer column value. */
tg_err pst_db_parse_i64(const char *text, int64_t *out);

#endif

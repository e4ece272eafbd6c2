/*
 * accounts.c — POST /api/auth/register, POST /api/auth/login, GET /api/me.
 *
 * Passwords are hashed with argon2id (auth.c) on the pool threads, never on
 * a loop.  Both register and login are rate-limited per client IP (a token
 * bucket: cfg.auth_rate_per_s, burst cfg.auth_burst → 429 with
 * Retry-After), which bounds password guessing and keeps the hashing pool
 * from being flooded.  A login answers the same 401 whether the email is
 * unknown or the password wrong, and spends an argon2id verification either
 * way, so neither the answer nor its timing tells which emails exist.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#define GW_NAME_BYTES_MAX 200u
#define GW_PHONE_BYTES_MAX 32u

/* A hash of a random password: a login for an unknown email verifies
 * against it, so that it costs what a real one costs. */
static char dummy_hash[GW_PASSWORD_HASH_BYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void dummy_make(void);

const char *gw_password_dummy_hash(void)
{
    pthread_once(&dummy_once, dummy_make);
    return dummy_hash;
}

static void dummy_make(void)
{
    char pw[24];
    randombytes_buf(pw, sizeof(pw));
    for (size_t i = 0; i < sizeof(pw); i++) {
        pw[i] = (char)('a' + (unsigned char)pw[i] % 26);
    }
    if (gw_password_hash(pw, sizeof(pw), dummy_hash) != TG_OK) {
        dummy_hash[0] = '\0';
    }
}

typedef struct {
    char email[GW_EMAIL_BYTES_MAX + 1];
    char password[GW_PASSWORD_BYTES_MAX + 1];
    size_t password_len;
    char name[GW_NAME_BYTES_MAX + 1];
    char phone[GW_PHONE_BYTES_MAX + 1];
    bool has_name, has_phone;
    /* results */
    enum { JOB_OK, JOB_DB_DOWN, JOB_CONFLICT, JOB_NO_MATCH, JOB_FAILED } outcome;
    gw_principal who;
    json_t *user; /* the profile, for register and me */
} account_job;

static void account_job_free(void *p)
{
    account_job *job = p;
    json_decref(job->user);
    sodium_memzero(job, sizeof(*job));
    free(job);
}

static account_job *account_job_new(gw_req *r)
{
    account_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        gw_reply_error(r, 500, "internal", "out of memory");
    }
    return job;
}

static bool rate_ok(gw_req *r)
{
    uint32_t retry_s = 1;
    if (gw_ratelimit_take(r->gw->auth_limit, r->client_ip, strlen(r->client_ip), tg_mono_ms(),
                          &retry_s)) {
        return true;
    }
    gw_reply_error_retry(r, 429, "rate_limited", retry_s,
                         "too many attempts from this address; retry later");
    return false;
}

/* "a@b": one '@' with something on each side, no spaces or controls. */
static bool email_valid(const char *email)
{
    const char *at = strchr(email, '@');
    if (at == NULL || at == email || at[1] == '\0' || strchr(at + 1, '@') != NULL) {
        return false;
    }
    for (const unsigned char *c = (const unsigned char *)email; *c != '\0'; c++) {
        if (*c <= ' ' || *c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* A lost connection is 503 (retry); a refused statement is a bug or a
 * schema mismatch: 500, logged as an error. */
static void job_db_failed(account_job *job, PGconn *db, PGresult *res, const char *what)
{
    bool lost = PQstatus(db) != CONNECTION_OK;
    job->outcome = lost ? JOB_DB_DOWN : JOB_FAILED;
    tg_log(lost ? TG_LOG_WARN : TG_LOG_ERROR, "%s: %s", what, PQresultErrorMessage(res));
}

/* The profile from columns id, email, name, phone, role, created_at. */
static json_t *profile_json(PGresult *res)
{
    return json_pack("{s:I,s:s,s:o,s:o,s:s,s:s}", "id",
                     (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10), "email",
                     PQgetvalue(res, 0, 1),
                     "name", PQgetisnull(res, 0, 2) ? json_null() : json_string(PQgetvalue(res, 0, 2)),
                     "phone", PQgetisnull(res, 0, 3) ? json_null() : json_string(PQgetvalue(res, 0, 3)),
                     "role", PQgetvalue(res, 0, 4), "created_at", PQgetvalue(res, 0, 5));
}

#define PROFILE_COLUMNS                                                                           \
    "id, email, name, phone, role, "                                                              \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* What users_phone_format accepts: an optional +, then 3..32 of digits,
 * spaces and ()./- (the whole string is at most 32 bytes). */
static bool phone_valid(const char *phone)
{
    size_t n = strlen(phone), i = phone[0] == '+' ? 1 : 0;
    if (n - i < 3 || n > GW_PHONE_BYTES_MAX) {
        return false;
    }
    for (; i < n; i++) {
        if (strchr("0123456789 ()./-", phone[i]) == NULL) {
            return false;
        }
    }
    return true;
}

/* ---- register ------------------------------------------------------------ */

static void register_run(PGconn *db, void *p)
{
    account_job *job = p;
    char hash[GW_PASSWORD_HASH_BYTES];
    if (gw_password_hash(job->password, job->password_len, hash) != TG_OK) {
        job->outcome = JOB_FAILED;
        return;
    }
    if (db == NULL) {
        job->outcome = JOB_DB_DOWN;
        return;
    }
    const char *params[] = {job->email, hash, job->has_name ? job->name : NULL,
                            job->has_phone ? job->phone : NULL};
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO users (email, password_hash, name, phone) "
                                 "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING "
                                 "RETURNING " PROFILE_COLUMNS,
                                 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        job_db_failed(job, db, res, "register");
    } else if (PQntuples(res) == 0) {
        job->outcome = JOB_CONFLICT;
    } else {
        job->user = profile_json(res);
        job->outcome = job->user != NULL ? JOB_OK : JOB_FAILED;
    }
    PQclear(res);
}

static void register_done(gw_req *r, void *p)
{
    account_job *job = p;
    switch (job->outcome) {
    case JOB_OK:
        gw_reply_json(r, 201, json_incref(job->user));
        return;
    case JOB_CONFLICT:
        gw_reply_error(r, 409, "email_taken", "an account with this email exists");
        return;
    case JOB_DB_DOWN:
        gw_reply_error_retry(r, 503, "database_unavailable", 1, "accounts are unavailable; retry");
        return;
    default:
        gw_reply_error(r, 500, "internal", "the account could not be created");
    }
}

static bool register_fields(gw_req *r, account_job *job)
{
    const char *email, *password, *name = NULL, *phone = NULL, *why = NULL;
    if (!gw_body_string(r, "email", GW_EMAIL_BYTES_MAX, &email, NULL) ||
        !gw_body_string(r, "password", GW_PASSWORD_BYTES_MAX, &password, NULL) ||
        !gw_body_string(r, "name", GW_NAME_BYTES_MAX, &name, &job->has_name) ||
        !gw_body_string(r, "phone", GW_PHONE_BYTES_MAX, &phone, &job->has_phone)) {
        return false;
    }
    if (!email_valid(email)) {
        gw_reply_error(r, 400, "invalid_field", "email: expected an address like name@example.com");
        return false;
    }
    if (job->has_phone && !phone_valid(phone)) {
        gw_reply_error(r, 400, "invalid_field",
                       "phone: 3..32 of digits, spaces and ()./-, optionally after a +");
        return false;
    }
    size_t pw_len = json_string_length(json_object_get(r->body, "password"));
    if (gw_password_policy(password, pw_len, &why) != TG_OK) {
        gw_reply_error(r, 400, "invalid_field", "password: %s", why);
        return false;
    }
    snprintf(job->email, sizeof(job->email), "%s", email);
    memcpy(job->password, password, pw_len);
    job->password_len = pw_len;
    snprintf(job->name, sizeof(job->name), "%s", job->has_name ? name : "");
    snprintf(job->phone, sizeof(job->phone), "%s", job->has_phone ? phone : "");
    return true;
}

void gw_on_register(gw_req *r)
{
    if (!rate_ok(r)) {
        return;
    }
    account_job *job = account_job_new(r);
    if (job == NULL) {
        return;
    }
    if (!register_fields(r, job)) {
        account_job_free(job);
        return;
    }
    if (gw_db_submit(r, register_run, register_done, job, account_job_free) != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many requests waiting; retry");
    }
}

/* ---- login --------------------------------------------------------------- */

static void login_run(PGconn *db, void *p)
{
    account_job *job = p;
    if (db == NULL) {
        job->outcome = JOB_DB_DOWN;
        return;
    }
    const char *params[] = {job->email};
    PGresult *res = PQexecParams(db,
                                 "SELECT " PROFILE_COLUMNS ", password_hash FROM users "
                                 "WHERE lower(email) = lower($1)",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        job_db_failed(job, db, res, "login");
        PQclear(res);
        return;
    }
    bool found = PQntuples(res) == 1;
    const char *hash = found ? PQgetvalue(res, 0, 6) : gw_password_dummy_hash();
    bool match = gw_password_verify(hash, job->password, job->password_len) == TG_OK;
    job->outcome = found && match ? JOB_OK : JOB_NO_MATCH;
    if (job->outcome == JOB_OK) {
        job->who.user_id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        if (gw_role_parse(PQgetvalue(res, 0, 4), &job->who.role) != TG_OK) {
            job->who.role = GW_ROLE_BUYER;
        }
        job->user = profile_json(res);
    }
    PQclear(res);
}

static json_t *time_json(int64_t unix_s)
{
    char buf[32];
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

static void login_done(gw_req *r, void *p)
{
    account_job *job = p;
    if (job->outcome == JOB_DB_DOWN) {
        gw_reply_error_retry(r, 503, "database_unavailable", 1, "accounts are unavailable; retry");
        return;
    }
    if (job->outcome == JOB_FAILED) {
        gw_reply_error(r, 500, "internal", "the login could not be checked");
        return;
    }
    if (job->outcome != JOB_OK) {
        gw_reply_error(r, 401, "invalid_credentials", "wrong email or password");
        return;
    }
    char token[GW_JWT_BYTES_MAX];
    size_t len;
    int64_t expires_s;
    if (gw_jwt_sign(&r->gw->jwt, &job->who, tg_now_ms() / 1000, r->gw->cfg.jwt_ttl_s, token,
                    sizeof(token), &len, &expires_s) != TG_OK) {
        gw_reply_error(r, 500, "internal", "the token could not be made");
        return;
    }
    gw_reply_json(r, 200, json_pack("{s:s,s:s,s:o,s:I,s:O}", "token", token, "token_type",
                                    "Bearer", "expires_at", time_json(expires_s), "expires_in",
                                    (json_int_t)r->gw->cfg.jwt_ttl_s, "user", job->user));
}

void gw_on_login(gw_req *r)
{
    if (!rate_ok(r)) {
        return;
    }
    const char *email, *password;
    if (!gw_body_string(r, "email", GW_EMAIL_BYTES_MAX, &email, NULL) ||
        !gw_body_string(r, "password", GW_PASSWORD_BYTES_MAX, &password, NULL)) {
        return;
    }
    account_job *job = account_job_new(r);
    if (job == NULL) {
        return;
    }
    snprintf(job->email, sizeof(job->email), "%s", email);
    job->password_len = json_string_length(json_object_get(r->body, "password"));
    memcpy(job->password, password, job->password_len);
    if (gw_db_submit(r, login_run, login_done, job, account_job_free) != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many requests waiting; retry");
    }
}

/* ---- me ------------------------------------------------------------------ */

static void me_run(PGconn *db, void *p)
{
    account_job *job = p;
    if (db == NULL) {
        job->outcome = JOB_DB_DOWN;
        return;
    }
    char id[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)job->who.user_id);
    const char *params[] = {id};
    PGresult *res = PQexecParams(db, "SELECT " PROFILE_COLUMNS " FROM users WHERE id = $1", 1,
                                 NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        job_db_failed(job, db, res, "me");
    } else if (PQntuples(res) == 0) {
        job->outcome = JOB_NO_MATCH;
    } else {
        job->user = profile_json(res);
        job->outcome = JOB_OK;
    }
    PQclear(res);
}

static void me_done(gw_req *r, void *p)
{
    account_job *job = p;
    if (job->outcome == JOB_DB_DOWN) {
        gw_reply_error_retry(r, 503, "database_unavailable", 1, "accounts are unavailable; retry");
    } else if (job->outcome == JOB_FAILED) {
        gw_reply_error(r, 500, "internal", "the account could not be read");
    } else if (job->outcome != JOB_OK) {
        gw_reply_error(r, 404, "not_found", "this account no longer exists");
    } else {
        gw_reply_json(r, 200, json_incref(job->user));
    }
}

void gw_on_me(gw_req *r)
{
    account_job *job = account_job_new(r);
    if (job == NULL) {
        return;
    }
    job->who = r->who;
    if (gw_db_submit(r, me_run, me_done, job, account_job_free) != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many requests waiting; retry");
    }
}

/*
 * authn.c — who is calling: the Authorization header of every non-public
 * route, before its handler runs.
 *
 * Bearer tokens (from POST /api/auth/login) are checked on the loop thread:
 * an HMAC and a small JSON parse, no database, and each loop remembers the
 * tokens it verified last (core.h, gw_token_entry).  The role inside the token is
 * trusted until the token expires, so a role change takes effect at the
 * next login (gateway/README.md).  Basic credentials (the seed's clients)
 * need an argon2id verification, tens of milliseconds: it runs on the pool
 * and its success is remembered in the credential cache (auth.h: keyed by a
 * keyed hash, never the password) for cfg.basic_cache_ms.  A Basic miss
 * costs a hash, so misses are rate-limited per client IP like logins.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

typedef struct {
    gw_credentials cred;
    gw_principal who;
    bool found;    /* the email names a user */
    bool matches;  /* ... and the password is theirs */
    bool db_down;
} basic_job;

static void basic_job_free(void *p)
{
    basic_job *job = p;
    sodium_memzero(job, sizeof(*job));
    free(job);
}

/* Pool thread: the user's row, then argon2id. */
static void basic_run(PGconn *db, void *p)
{
    basic_job *job = p;
    if (db == NULL) {
        job->db_down = true;
        return;
    }
    const char *params[] = {job->cred.email};
    PGresult *res = PQexecParams(db, "SELECT id, role, password_hash FROM users "
                                     "WHERE lower(email) = lower($1)",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        job->db_down = true;
    } else if (PQntuples(res) == 1) {
        job->found = true;
        job->who.user_id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        if (gw_role_parse(PQgetvalue(res, 0, 1), &job->who.role) != TG_OK) {
            job->who.role = GW_ROLE_BUYER;
        }
        job->matches = gw_password_verify(PQgetvalue(res, 0, 2), job->cred.password,
                                          job->cred.password_len) == TG_OK;
    } else {
        (void)gw_password_verify(gw_password_dummy_hash(), job->cred.password,
                                 job->cred.password_len); /* the same cost: no email oracle */
    }
    PQclear(res);
}

static void basic_done(gw_req *r, void *p)
{
    basic_job *job = p;
    if (job->db_down) {
        gw_reply_error_retry(r, 503, "database_unavailable", 1,
                             "credentials cannot be checked right now; retry");
        return;
    }
    if (!job->found || !job->matches) {
        gw_reply_error(r, 401, "invalid_credentials", "wrong email or password");
        return;
    }
    gw_cred_cache_put(r->gw->creds, job->cred.email, job->cred.email_len, job->cred.password,
                      job->cred.password_len, tg_mono_ms(), &job->who);
    r->who = job->who;
    gw_run_handler(r);
}

static void basic_check(gw_req *r, const gw_credentials *cred)
{
    int64_t now_ms = tg_mono_ms();
    if (gw_cred_cache_get(r->gw->creds, cred->email, cred->email_len, cred->password,
                          cred->password_len, now_ms, &r->who)) {
        gw_run_handler(r);
        return;
    }
    uint32_t retry_s = 1;
    if (!gw_ratelimit_take(r->gw->auth_limit, r->client_ip, strlen(r->client_ip), now_ms,
                           &retry_s)) {
        gw_reply_error_retry(r, 429, "rate_limited", retry_s,
                             "too many password checks from this address; retry later");
        return;
    }
    basic_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        gw_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    job->cred = *cred;
    if (gw_db_submit(r, basic_run, basic_done, job, basic_job_free) != TG_OK) {
        gw_reply_error_retry(r, 503, "busy", 1, "too many requests waiting; retry");
    }
}

/* FNV-1a: the slot of a token in the worker's cache (not a security
 * boundary: a hit compares the whole token). */
static uint32_t token_slot(const char *token, size_t len)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)token[i]) * 1099511628211u;
    }
    return (uint32_t)(h % GW_TOKEN_CACHE_SLOTS);
}

static bool token_cached(gw_req *r, const gw_credentials *cred, int64_t now_s)
{
    if (cred->token_len > GW_TOKEN_CACHE_BYTES) {
        return false;
    }
    const gw_token_entry *e = &r->worker->tokens[token_slot(cred->token, cred->token_len)];
    if (e->len != cred->token_len || e->who.expires_s <= now_s ||
        memcmp(e->token, cred->token, cred->token_len) != 0) {
        return false;
    }
    r->who = e->who;
    return true;
}

static void token_remember(gw_req *r, const gw_credentials *cred)
{
    if (cred->token_len <= GW_TOKEN_CACHE_BYTES) {
        gw_token_entry *e = &r->worker->tokens[token_slot(cred->token, cred->token_len)];
        memcpy(e->token, cred->token, cred->token_len);
        e->len = (uint16_t)cred->token_len;
        e->who = r->who;
    }
}

static void bearer_check(gw_req *r, const gw_credentials *cred)
{
    int64_t now_s = tg_now_ms() / 1000;
    if (token_cached(r, cred, now_s)) {
        gw_run_handler(r);
        return;
    }
    tg_err err = gw_jwt_verify(&r->gw->jwt, cred->token, cred->token_len, now_s, &r->who);
    if (err == TG_EEXPIRED) {
        gw_reply_error(r, 401, "token_expired", "the token has expired; log in again");
    } else if (err != TG_OK) {
        gw_reply_error(r, 401, "invalid_token", "the token is not valid");
    } else {
        token_remember(r, cred);
        gw_run_handler(r);
    }
}

void gw_authenticate(gw_req *r)
{
    if (r->route->auth == GW_AUTH_PUBLIC) {
        gw_run_handler(r);
        return;
    }
    size_t len = 0;
    const char *value = gw_header(r, "authorization", &len);
    gw_credentials cred;
    tg_err err = gw_auth_parse(value, len, &cred);
    if (err != TG_OK) {
        gw_reply_error(r, 401, "invalid_credentials", "%s",
                       cred.why != NULL ? cred.why : "malformed Authorization header");
    } else if (cred.kind == GW_CRED_NONE) {
        gw_reply_error(r, 401, "unauthenticated",
                       "this needs Authorization: Bearer <token> (POST /api/auth/login) or "
                       "Basic");
    } else if (cred.kind == GW_CRED_BEARER) {
        bearer_check(r, &cred);
    } else {
        basic_check(r, &cred);
    }
    sodium_memzero(cred.password, sizeof(cred.password));
}

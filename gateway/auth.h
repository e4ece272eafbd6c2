/*
 * auth.h — who is calling: roles, argon2id passwords, HS256 tokens, the
 * Authorization header, and a cache of verified Basic credentials.
 *
 * These are the pure building blocks of the gateway's authentication; the
 * HTTP side (401 replies, looking users up in PostgreSQL, running hashes on
 * the pool) is the caller's.  Nothing here blocks except the functions that
 * hash a password (tens of milliseconds of CPU and 64 MiB each: pool threads
 * only) and gw_jwt_secret_load (disk, at start-up).
 *
 * Threads.  Unless a function says otherwise it may be called from any
 * thread: the pure functions share nothing, and the credential cache locks
 * itself.
 */
#ifndef TIXGRID_GATEWAY_AUTH_H
#define TIXGRID_GATEWAY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "gateway.h"
#include "tixgrid/err.h"

/* ---- Bounds --------------------------------------------------------------- */

/* A password, in bytes of UTF-8 (not characters).  The upper bound keeps an
 * attacker from making argon2id hash megabytes. */
#define GW_PASSWORD_BYTES_MIN 8u
#define GW_PASSWORD_BYTES_MAX 128u
/* An email address, in bytes (RFC 5321's path limit less its brackets). */
#define GW_EMAIL_BYTES_MAX 254u
/* An argon2id hash string as stored in users.password_hash, with its NUL. */
#define GW_PASSWORD_HASH_BYTES crypto_pwhash_STRBYTES

/* A bearer token, in bytes; ours are about 200.  Longer ones are rejected
 * before any decoding, which bounds every buffer of gw_jwt_verify. */
#define GW_JWT_BYTES_MAX 1024u
/* The HMAC-SHA256 key, in bytes. */
#define GW_JWT_SECRET_BYTES 32u
/* TIXGRID_JWT_SECRET, in bytes at least (it is hashed down to the key). */
#define GW_JWT_ENV_SECRET_BYTES_MIN 32u
/* The generated key file in the data directory: 64 hex digits. */
#define GW_JWT_SECRET_FILE      "jwt.secret"
#define GW_JWT_SECRET_HEX_BYTES (2u * GW_JWT_SECRET_BYTES)

/* User ids in tokens stay below 2^53 so that JavaScript reads them exactly. */
#define GW_USER_ID_MAX ((UINT64_C(1) << 53) - 1)

/* Basic credentials, base64 of "email:password": encoded and decoded bytes. */
#define GW_BASIC_DECODED_BYTES_MAX (GW_EMAIL_BYTES_MAX + 1u + GW_PASSWORD_BYTES_MAX)
#define GW_BASIC_ENCODED_BYTES_MAX (4u * ((GW_BASIC_DECODED_BYTES_MAX + 2u) / 3u))

/* Credential cache: entries at most, entries per set (a set is searched
 * whole under its lock), and lock stripes (a power of two). */
#define GW_CRED_CACHE_ENTRIES_MAX (1u << 20)
#define GW_CRED_CACHE_WAYS        8u
#define GW_CRED_CACHE_LOCKS       64u

/* ---- Start-up --------------------------------------------------------------- */

/* Initialises libsodium once per process (safe to call again and from any
 * thread).  TG_ESYSTEM when libsodium cannot start (no entropy source). */
tg_err gw_auth_init(void);

/* ---- Passwords ---------------------------------------------------------------- */

/* The argon2id hash of pw[0..len) at libsodium's interactive limits, as a
 * NUL-terminated string.  TG_ENOMEM when its 64 MiB cannot be allocated.
 * Pool threads only: it takes tens of milliseconds. */
tg_err gw_password_hash(const char *pw, size_t len, char out[GW_PASSWORD_HASH_BYTES]);

/* Checks pw[0..len) against a stored hash string (any argon2 string
 * libsodium reads, whatever limits it was made with).  TG_OK when it
 * matches, TG_EINVAL when it does not, TG_ENOMEM when the hash's memory
 * cannot be allocated, TG_ECORRUPT when hash is not an argon2 hash string
 * (logged).  Pool threads only. */
tg_err gw_password_verify(const char *hash, const char *pw, size_t len);

/* The rules for a new password: GW_PASSWORD_BYTES_MIN..MAX bytes, no NUL
 * byte.  (Valid UTF-8 is the JSON parser's check.)  TG_EINVAL with a
 * sentence for the client in *why. */
tg_err gw_password_policy(const char *pw, size_t len, const char **why);

/* ---- Tokens (JWT, HS256) ------------------------------------------------------- */

typedef struct {
    uint8_t secret[GW_JWT_SECRET_BYTES]; /* the HMAC-SHA256 key */
} gw_jwt_key;

/* The signing key.  env_value is TIXGRID_JWT_SECRET: when non-empty it must
 * have GW_JWT_ENV_SECRET_BYTES_MIN bytes (else TG_EINVAL) and the key is its
 * BLAKE2b-256.  Otherwise the key is read from <data_dir>/jwt.secret (64 hex
 * digits and an optional newline), which is generated on first use (mode
 * 0600, fsynced); processes racing to generate it all end up with the one
 * that was published first.  TG_EINVAL for a bad variable, a bad file or no
 * source at all, TG_ESYSTEM when the file cannot be read or written; each
 * logged with what to do.  Start-up only (blocks on the disk). */
tg_err gw_jwt_secret_load(const char *env_value, const char *data_dir, gw_jwt_key *out);

/* A token for p valid from now_s (Unix seconds) for ttl_s seconds:
 * {"alg":"HS256","typ":"JWT"}.{"sub":"<id>","role":..,"iat":..,"exp":..}.mac,
 * base64url without padding.  Writes it NUL-terminated into out, its length
 * (without the NUL) into *len and its expiry into *expires_s.  TG_EINVAL when
 * p's user id is 0 or above GW_USER_ID_MAX, ttl_s is 0, now_s is negative or
 * out_size is too small (GW_JWT_BYTES_MAX always suffices). */
tg_err gw_jwt_sign(const gw_jwt_key *key, const gw_principal *p, int64_t now_s, uint32_t ttl_s,
                   char *out, size_t out_size, size_t *len, int64_t *expires_s);

/* Checks token[0..len) (need not be NUL-terminated) and fills *out.
 * TG_EINVAL for anything malformed, any algorithm but HS256, a signature
 * that does not match (checked in constant time), or missing or ill-typed
 * claims; TG_EEXPIRED when a genuine token's exp <= now_s.  Any input is
 * safe: nothing is read outside token[0..len). */
tg_err gw_jwt_verify(const gw_jwt_key *key, const char *token, size_t len, int64_t now_s,
                     gw_principal *out);

/* ---- The Authorization header ------------------------------------------------- */

typedef enum {
    GW_CRED_NONE = 0, /* no header */
    GW_CRED_BEARER,   /* "Bearer <token>" */
    GW_CRED_BASIC,    /* "Basic base64(email:password)" */
} gw_cred_kind;

typedef struct {
    gw_cred_kind kind;
    const char *why; /* on TG_EINVAL: a sentence for the client; else NULL */
    /* Bearer: the token, pointing into the header value (not terminated). */
    const char *token;
    size_t token_len;
    /* Basic: copies, NUL-terminated; the caller wipes password when done
     * (sodium_memzero). */
    char email[GW_EMAIL_BYTES_MAX + 1];
    size_t email_len;
    char password[GW_PASSWORD_BYTES_MAX + 1];
    size_t password_len;
} gw_credentials;

/* Parses an Authorization header value[0..len); value NULL or len 0 gives
 * GW_CRED_NONE.  Scheme names are case-insensitive.  A Basic pair is split
 * at its first ':' (the password may hold more); the email has 1..
 * GW_EMAIL_BYTES_MAX bytes and the password 1..GW_PASSWORD_BYTES_MAX, both
 * UTF-8 without NUL bytes.  TG_EINVAL with out->why on anything else. */
tg_err gw_auth_parse(const char *value, size_t len, gw_credentials *out);

/* ---- The Basic credential cache ----------------------------------------------- */

/* Remembers, for ttl_ms, that an email and password were verified and whom
 * they name, so that a client sending Basic on every request costs one
 * argon2id hash per ttl instead of one per request.  It never holds a
 * password: entries are keyed by a BLAKE2b of email, 0x00, password under a
 * random per-process key.  So a changed password stops working for Basic
 * only when its entry expires or the cache is cleared. */
typedef struct gw_cred_cache gw_cred_cache;

/* A cache of `entries` (rounded up to a power of two, at least
 * GW_CRED_CACHE_WAYS; 1..GW_CRED_CACHE_ENTRIES_MAX, else TG_EINVAL), all
 * allocated here.  ttl_ms 0 makes a cache that never hits.  Start-up only. */
tg_err gw_cred_cache_open(uint32_t entries, uint32_t ttl_ms, gw_cred_cache **out);
/* True, with the principal in *out, when this exact pair was put less than
 * ttl_ms before now_ms. */
bool gw_cred_cache_get(gw_cred_cache *c, const char *email, size_t email_len, const char *pw,
                       size_t pw_len, int64_t now_ms, gw_principal *out);
/* Remembers a verified pair, replacing its own entry, an expired one or the
 * oldest of its set. */
void gw_cred_cache_put(gw_cred_cache *c, const char *email, size_t email_len, const char *pw,
                       size_t pw_len, int64_t now_ms, const gw_principal *p);
/* Forgets every pair (a reset of the user table, a password change). */
void gw_cred_cache_clear(gw_cred_cache *c);
/* Frees the cache; no other call may be running.  NULL is fine. */
void gw_cred_cache_close(gw_cred_cache *c);

#endif

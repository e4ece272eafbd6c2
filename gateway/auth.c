/*
 * auth.c — roles, passwords, tokens, the Authorization header and the
 * Basic credential cache (see auth.h).
 *
 * Tokens.  A token is three base64url segments, header.payload.mac, with
 * mac = HMAC-SHA256(key, "header.payload").  Verification reads nothing
 * outside the caller's bytes: the length is bounded (GW_JWT_BYTES_MAX) before
 * anything else, so every decoded segment fits a stack buffer of that size.
 * The header must name HS256 exactly; "none" and every other algorithm are
 * refused before the MAC is looked at, so a token can never choose how it is
 * checked.  The MAC is compared in constant time and checked before the
 * payload is parsed, and only a genuine token is reported as expired.
 * libsodium's base64 decoder refuses non-canonical input (stray bits in the
 * last character, padding in the unpadded variant), so a token has exactly
 * one spelling.  Claims are parsed with jansson rejecting duplicate keys: a
 * second "role" must not override the first.
 *
 * The key file.  A missing <data_dir>/jwt.secret is written under a random
 * temporary name (O_CREAT|O_EXCL, 0600), fsynced, then published with
 * link(2), which fails if the name exists.  A process that loses the race
 * reads the winner's file, and no reader can see a half-written key.
 * Rejected: creating jwt.secret itself with O_EXCL and writing into it — a
 * racing reader could then find it empty or short and would have to poll.
 *
 * The credential cache.  A table of sets of GW_CRED_CACHE_WAYS entries; a
 * pair's keyed BLAKE2b-256 (its tag) picks the set and identifies the entry.
 * Each set is guarded by one of GW_CRED_CACHE_LOCKS striped mutexes, held
 * only to scan or write the set's few entries; the hash is computed before
 * the lock is taken.  Tags are compared with sodium_memcmp.  Everything is
 * allocated at open.
 */
#include "auth.h"

#include "config.h"

#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

/* base64url of {"alg":"HS256","typ":"JWT"}: every token we sign starts so. */
#define JWT_HEADER_B64 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
/* A 32-byte MAC in unpadded base64url: 43 characters. */
#define JWT_MAC_B64_BYTES 43u
/* The payload we write: four short claims. */
#define JWT_PAYLOAD_BYTES_MAX 160u

/* The key file's path and its temporary sibling's: the data directory
 * (shorter than GW_PATH_BYTES), "/.jwt.secret.", 16 hex digits, ".tmp". */
#define SECRET_PATH_BYTES (GW_PATH_BYTES + 64u)
/* Tries at a fresh temporary name before giving up (a collision of 64
 * random bits means something else is wrong). */
#define SECRET_TMP_TRIES 3u

/* ---- Start-up --------------------------------------------------------------- */

static pthread_once_t auth_once = PTHREAD_ONCE_INIT;
static int auth_sodium_rc = -1;

static void auth_init_once(void)
{
    auth_sodium_rc = sodium_init();
}

tg_err gw_auth_init(void)
{
    pthread_once(&auth_once, auth_init_once);
    if (auth_sodium_rc < 0) {
        tg_log_error("auth: libsodium failed to initialise (no entropy source?)");
        return TG_ESYSTEM;
    }
    return TG_OK;
}

/* ---- Roles ------------------------------------------------------------------ */

static const char *const role_names[] = {
    [GW_ROLE_BUYER] = "buyer",
    [GW_ROLE_ORGANIZER] = "organizer",
    [GW_ROLE_ADMIN] = "admin",
};

#define ROLE_COUNT (sizeof(role_names) / sizeof(role_names[0]))

const char *gw_role_name(gw_role role)
{
    TG_ASSERT((unsigned)role < ROLE_COUNT);
    return role_names[role];
}

tg_err gw_role_parse(const char *name, gw_role *out)
{
    for (unsigned i = 0; name != NULL && i < ROLE_COUNT; i++) {
        if (strcmp(name, role_names[i]) == 0) {
            *out = (gw_role)i;
            return TG_OK;
        }
    }
    return TG_EINVAL;
}

/* ---- Passwords ----------------------------------------------------------------- */

tg_err gw_password_hash(const char *pw, size_t len, char out[GW_PASSWORD_HASH_BYTES])
{
    TG_ASSERT(pw != NULL && out != NULL);
    tg_err err = gw_auth_init();
    if (err != TG_OK) {
        return err;
    }
    if (crypto_pwhash_str_alg(out, pw, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE,
                              crypto_pwhash_ALG_ARGON2ID13) != 0) {
        tg_log_error("auth: argon2id hashing failed (out of memory)");
        return TG_ENOMEM;
    }
    return TG_OK;
}

tg_err gw_password_verify(const char *hash, const char *pw, size_t len)
{
    TG_ASSERT(hash != NULL && pw != NULL);
    tg_err err = gw_auth_init();
    if (err != TG_OK) {
        return err;
    }
    /* libsodium reads the string as an array of crypto_pwhash_STRBYTES; a
     * copy makes that true whatever the caller's buffer. */
    char copy[GW_PASSWORD_HASH_BYTES];
    size_t n = strnlen(hash, sizeof(copy));
    if (n == sizeof(copy)) {
        tg_log_error("auth: a stored password hash is longer than %zu bytes", sizeof(copy) - 1);
        return TG_ECORRUPT;
    }
    memset(copy, 0, sizeof(copy));
    memcpy(copy, hash, n);
    /* needs_rehash parses the string without hashing: -1 means it is not
     * an argon2 hash string at all, which verify would report as a mere
     * mismatch. */
    if (crypto_pwhash_str_needs_rehash(copy, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                       crypto_pwhash_MEMLIMIT_INTERACTIVE) < 0) {
        tg_log_error("auth: a stored password hash is not an argon2 hash string");
        return TG_ECORRUPT;
    }
    /* On a mismatch libsodium sets errno to EINVAL; a failed allocation of
     * the hash's memory leaves malloc's ENOMEM. */
    errno = 0;
    if (crypto_pwhash_str_verify(copy, pw, len) == 0) {
        return TG_OK;
    }
    return errno == ENOMEM ? TG_ENOMEM : TG_EINVAL;
}

tg_err gw_password_policy(const char *pw, size_t len, const char **why)
{
    TG_ASSERT(why != NULL);
    *why = NULL;
    if (pw == NULL || len < GW_PASSWORD_BYTES_MIN) {
        *why = "the password must be at least 8 bytes long";
    } else if (len > GW_PASSWORD_BYTES_MAX) {
        *why = "the password must be at most 128 bytes long";
    } else if (memchr(pw, '\0', len) != NULL) {
        *why = "the password must not contain a NUL character";
    }
    return *why == NULL ? TG_OK : TG_EINVAL;
}

_Static_assert(GW_PASSWORD_BYTES_MIN == 8u && GW_PASSWORD_BYTES_MAX == 128u,
               "the policy's sentences name these bounds");

/* ---- The signing key --------------------------------------------------------------- */

/* Reads up to size bytes of fd; -1 on a read error. */
static ssize_t read_all(int fd, char *buf, size_t size)
{
    size_t n = 0;
    while (n < size) {
        ssize_t r = read(fd, buf + n, size - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return r < 0 ? -1 : (ssize_t)n;
        }
        n += (size_t)r;
    }
    return (ssize_t)n;
}

static bool write_all(int fd, const char *buf, size_t len)
{
    size_t n = 0;
    while (n < len) {
        ssize_t w = write(fd, buf + n, len - n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        n += (size_t)w;
    }
    return true;
}

/* 64 hex digits and an optional newline (`openssl rand -hex 32` writes one). */
static bool secret_decode(const char *text, size_t len, gw_jwt_key *out)
{
    if (len != GW_JWT_SECRET_HEX_BYTES &&
        !(len == GW_JWT_SECRET_HEX_BYTES + 1 && text[GW_JWT_SECRET_HEX_BYTES] == '\n')) {
        return false;
    }
    size_t bin_len = 0;
    const char *end = NULL;
    return sodium_hex2bin(out->secret, sizeof(out->secret), text, GW_JWT_SECRET_HEX_BYTES, NULL,
                          &bin_len, &end) == 0 &&
           bin_len == sizeof(out->secret) && end == text + GW_JWT_SECRET_HEX_BYTES;
}

/* Reads the key file.  TG_ENOENT (not logged) when it does not exist. */
static tg_err secret_read(const char *path, gw_jwt_key *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return TG_ENOENT;
        }
        tg_log_error("auth: cannot open %s: %s", path, strerror(errno));
        return TG_ESYSTEM;
    }
    char text[GW_JWT_SECRET_HEX_BYTES + 2];
    ssize_t n = read_all(fd, text, sizeof(text));
    int read_errno = errno;
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
        tg_log_warn("auth: %s can be read by other users; chmod 600 it", path);
    }
    close(fd);
    tg_err err = TG_OK;
    if (n < 0) {
        tg_log_error("auth: cannot read %s: %s", path, strerror(read_errno));
        err = TG_ESYSTEM;
    } else if (!secret_decode(text, (size_t)n, out)) {
        tg_log_error("auth: %s must hold 64 hex digits (a 32-byte key); fix it, or remove it "
                     "to have a new key made (signing everyone out)",
                     path);
        err = TG_EINVAL;
    }
    sodium_memzero(text, sizeof(text));
    return err;
}

/* Writes a new random key under a fresh temporary name in dir and fsyncs
 * it; the name goes into tmp. */
static tg_err secret_write_tmp(const char *dir, char *tmp, size_t tmp_size, gw_jwt_key *key)
{
    int fd = -1;
    for (unsigned i = 0; i < SECRET_TMP_TRIES && fd < 0; i++) {
        uint64_t r = 0;
        randombytes_buf(&r, sizeof(r));
        snprintf(tmp, tmp_size, "%s/.%s.%016" PRIx64 ".tmp", dir, GW_JWT_SECRET_FILE, r);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            break;
        }
    }
    if (fd < 0) {
        tg_log_error("auth: cannot create a key file in %s: %s", dir, strerror(errno));
        return TG_ESYSTEM;
    }
    char text[GW_JWT_SECRET_HEX_BYTES + 2];
    randombytes_buf(key->secret, sizeof(key->secret));
    sodium_bin2hex(text, sizeof(text), key->secret, sizeof(key->secret));
    text[GW_JWT_SECRET_HEX_BYTES] = '\n';
    bool ok = write_all(fd, text, GW_JWT_SECRET_HEX_BYTES + 1) && fsync(fd) == 0;
    int write_errno = errno;
    sodium_memzero(text, sizeof(text));
    if (close(fd) != 0 || !ok) {
        tg_log_error("auth: cannot write %s: %s", tmp, strerror(ok ? errno : write_errno));
        unlink(tmp);
        return TG_ESYSTEM;
    }
    return TG_OK;
}

/* Makes the directory entry of a new file durable (best effort: a failure
 * here loses nothing but the key on a power cut, and it is logged). */
static void dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        tg_log_warn("auth: cannot fsync %s: %s", dir, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
}

/* Generates the key file, or reads the one another process published
 * first. */
static tg_err secret_create(const char *dir, const char *path, gw_jwt_key *out)
{
    char tmp[SECRET_PATH_BYTES];
    gw_jwt_key key;
    tg_err err = secret_write_tmp(dir, tmp, sizeof(tmp), &key);
    if (err != TG_OK) {
        return err;
    }
    int rc = link(tmp, path);
    int link_errno = errno;
    unlink(tmp);
    if (rc != 0 && link_errno == EEXIST) {
        sodium_memzero(&key, sizeof(key));
        return secret_read(path, out);
    }
    if (rc != 0) {
        tg_log_error("auth: cannot create %s: %s", path, strerror(link_errno));
        sodium_memzero(&key, sizeof(key));
        return TG_ESYSTEM;
    }
    dir_sync(dir);
    tg_log_info("auth: generated a new token signing key in %s", path);
    *out = key;
    sodium_memzero(&key, sizeof(key));
    return TG_OK;
}

tg_err gw_jwt_secret_load(const char *env_value, const char *data_dir, gw_jwt_key *out)
{
    TG_ASSERT(out != NULL);
    tg_err err = gw_auth_init();
    if (err != TG_OK) {
        return err;
    }
    if (env_value != NULL && env_value[0] != '\0') {
        size_t n = strlen(env_value);
        if (n < GW_JWT_ENV_SECRET_BYTES_MIN) {
            tg_log_error("auth: TIXGRID_JWT_SECRET has %zu bytes; it needs at least %u "
                         "(e.g. the output of `openssl rand -hex 32`)",
                         n, GW_JWT_ENV_SECRET_BYTES_MIN);
            return TG_EINVAL;
        }
        crypto_generichash(out->secret, sizeof(out->secret), (const unsigned char *)env_value, n,
                           NULL, 0);
        return TG_OK;
    }
    if (data_dir == NULL || data_dir[0] == '\0') {
        tg_log_error("auth: no token signing key: set TIXGRID_JWT_SECRET or a data directory");
        return TG_EINVAL;
    }
    char path[SECRET_PATH_BYTES];
    if (strlen(data_dir) >= GW_PATH_BYTES) {
        tg_log_error("auth: the data directory's path has %u bytes or more; use a shorter one",
                     GW_PATH_BYTES);
        return TG_EINVAL;
    }
    snprintf(path, sizeof(path), "%s/%s", data_dir, GW_JWT_SECRET_FILE);
    err = secret_read(path, out);
    return err == TG_ENOENT ? secret_create(data_dir, path, out) : err;
}

/* ---- Tokens: signing ------------------------------------------------------------ */

tg_err gw_jwt_sign(const gw_jwt_key *key, const gw_principal *p, int64_t now_s, uint32_t ttl_s,
                   char *out, size_t out_size, size_t *len, int64_t *expires_s)
{
    TG_ASSERT(key != NULL && p != NULL && out != NULL && len != NULL && expires_s != NULL);
    if (p->user_id == 0 || p->user_id > GW_USER_ID_MAX || (unsigned)p->role >= ROLE_COUNT ||
        ttl_s == 0 || now_s < 0 || now_s > INT64_MAX - (int64_t)ttl_s) {
        return TG_EINVAL;
    }
    int64_t exp = now_s + (int64_t)ttl_s;
    char payload[JWT_PAYLOAD_BYTES_MAX];
    int n = snprintf(payload, sizeof(payload),
                     "{\"sub\":\"%" PRIu64 "\",\"role\":\"%s\",\"iat\":%" PRId64 ",\"exp\":%" PRId64
                     "}",
                     p->user_id, role_names[p->role], now_s, exp);
    TG_ASSERT(n > 0 && (size_t)n < sizeof(payload));

    size_t head = sizeof(JWT_HEADER_B64) - 1;
    size_t body = sodium_base64_ENCODED_LEN((size_t)n, B64URL) - 1;
    size_t signed_len = head + 1 + body;
    if (out_size < signed_len + 1 + JWT_MAC_B64_BYTES + 1) {
        return TG_EINVAL;
    }
    memcpy(out, JWT_HEADER_B64, head);
    out[head] = '.';
    sodium_bin2base64(out + head + 1, body + 1, (const unsigned char *)payload, (size_t)n, B64URL);

    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, (const unsigned char *)out, signed_len, key->secret);
    out[signed_len] = '.';
    sodium_bin2base64(out + signed_len + 1, JWT_MAC_B64_BYTES + 1, mac, sizeof(mac), B64URL);
    *len = signed_len + 1 + JWT_MAC_B64_BYTES;
    *expires_s = exp;
    return TG_OK;
}

_Static_assert(sodium_base64_ENCODED_LEN(crypto_auth_hmacsha256_BYTES, B64URL) ==
                   JWT_MAC_B64_BYTES + 1,
               "a MAC is 43 base64url characters");
_Static_assert(GW_JWT_SECRET_BYTES == crypto_auth_hmacsha256_KEYBYTES, "HMAC-SHA256 key size");

/* ---- Tokens: verifying ---------------------------------------------------------- */

/* Decodes one unpadded base64url segment into out (out_size bytes);
 * false on any character outside the alphabet or a non-canonical end. */
static bool b64url_decode(const char *s, size_t len, uint8_t *out, size_t out_size, size_t *out_len)
{
    return len > 0 && sodium_base642bin(out, out_size, s, len, NULL, out_len, NULL, B64URL) == 0;
}

/* Parses a decoded segment as a JSON object; NULL when it is not one. */
static json_t *segment_json(const uint8_t *bytes, size_t len)
{
    json_error_t error;
    json_t *j = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, &error);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* The header must be {"alg":"HS256"} with at most "typ":"JWT" and other
 * informational fields; "crit" asks for extensions we do not implement. */
static bool header_ok(const char *s, size_t len)
{
    uint8_t bytes[GW_JWT_BYTES_MAX];
    size_t n = 0;
    if (!b64url_decode(s, len, bytes, sizeof(bytes), &n)) {
        return false;
    }
    json_t *h = segment_json(bytes, n);
    json_t *alg = json_object_get(h, "alg");
    json_t *typ = json_object_get(h, "typ");
    bool ok =
        h != NULL && json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0 &&
        (typ == NULL || (json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0)) &&
        json_object_get(h, "crit") == NULL;
    json_decref(h);
    return ok;
}

/* A positive decimal user id below 2^53, no sign, no leading zero. */
static bool user_id_parse(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 16 || s[0] == '0') {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return v <= GW_USER_ID_MAX;
}

/* The claims of a genuine payload: sub, role, exp (and iat when present). */
static bool claims_parse(const char *s, size_t len, gw_principal *p, int64_t *exp)
{
    uint8_t bytes[GW_JWT_BYTES_MAX];
    size_t n = 0;
    if (!b64url_decode(s, len, bytes, sizeof(bytes), &n)) {
        return false;
    }
    json_t *c = segment_json(bytes, n);
    json_t *sub = json_object_get(c, "sub");
    json_t *role = json_object_get(c, "role");
    json_t *exp_j = json_object_get(c, "exp");
    json_t *iat = json_object_get(c, "iat");
    bool ok = c != NULL && json_is_string(sub) && json_is_string(role) && json_is_integer(exp_j) &&
              (iat == NULL || json_is_integer(iat)) &&
              user_id_parse(json_string_value(sub), json_string_length(sub), &p->user_id) &&
              gw_role_parse(json_string_value(role), &p->role) == TG_OK;
    if (ok) {
        *exp = (int64_t)json_integer_value(exp_j);
    }
    json_decref(c);
    return ok;
}

tg_err gw_jwt_verify(const gw_jwt_key *key, const char *token, size_t len, int64_t now_s,
                     gw_principal *out)
{
    TG_ASSERT(key != NULL && out != NULL);
    if (token == NULL || len == 0 || len > GW_JWT_BYTES_MAX) {
        return TG_EINVAL;
    }
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 =
        dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
        return TG_EINVAL;
    }
    size_t head_len = (size_t)(dot1 - token);
    size_t body_len = (size_t)(dot2 - dot1 - 1);
    size_t signed_len = (size_t)(dot2 - token);
    size_t mac_b64_len = len - signed_len - 1;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    size_t mac_len = 0;
    if (mac_b64_len != JWT_MAC_B64_BYTES ||
        !b64url_decode(dot2 + 1, mac_b64_len, mac, sizeof(mac), &mac_len) ||
        mac_len != sizeof(mac) || !header_ok(token, head_len)) {
        return TG_EINVAL;
    }
    if (crypto_auth_hmacsha256_verify(mac, (const unsigned char *)token, signed_len, key->secret) !=
        0) {
        return TG_EINVAL;
    }
    gw_principal p = {0};
    int64_t exp = 0;
    if (!claims_parse(dot1 + 1, body_len, &p, &exp)) {
        return TG_EINVAL;
    }
    if (exp <= now_s) {
        return TG_EEXPIRED;
    }
    p.expires_s = exp;
    *out = p;
    return TG_OK;
}

/* ---- The Authorization header ------------------------------------------------------ */

/* The length of the sequence a UTF-8 lead byte starts; 0 when c cannot
 * lead (a continuation byte, or one that only starts overlong or
 * out-of-range sequences). */
static size_t utf8_lead_len(uint8_t c)
{
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return 2;
    }
    if (c >= 0xe0 && c <= 0xef) {
        return 3;
    }
    return c >= 0xf0 && c <= 0xf4 ? 4 : 0;
}

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
static bool utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n = utf8_lead_len(c);
        if (n == 0 || i + n > len) {
            return false;
        }
        uint32_t cp = n == 1 ? c : c & (0x7fu >> n);
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n;
    }
    return true;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* value[0..len) equals the ASCII word, ignoring ASCII case (not the
 * locale's: header syntax is ASCII). */
static bool word_eq(const char *value, size_t len, const char *word)
{
    if (strlen(word) != len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char a = value[i] >= 'A' && value[i] <= 'Z' ? (char)(value[i] - 'A' + 'a') : value[i];
        char b = word[i] >= 'A' && word[i] <= 'Z' ? (char)(word[i] - 'A' + 'a') : word[i];
        if (a != b) {
            return false;
        }
    }
    return true;
}

static tg_err cred_reject(gw_credentials *out, const char *why)
{
    sodium_memzero(out->password, sizeof(out->password));
    out->kind = GW_CRED_NONE;
    out->why = why;
    return TG_EINVAL;
}

static tg_err bearer_parse(const char *s, size_t len, gw_credentials *out)
{
    if (len > GW_JWT_BYTES_MAX) {
        return cred_reject(out, "the bearer token is longer than 1024 bytes");
    }
    out->kind = GW_CRED_BEARER;
    out->token = s;
    out->token_len = len;
    return TG_OK;
}

_Static_assert(GW_JWT_BYTES_MAX == 1024u, "bearer_parse's sentence names this bound");

/* Splits decoded "email:password" into out. */
static tg_err basic_split(const uint8_t *b, size_t n, gw_credentials *out)
{
    const uint8_t *colon = memchr(b, ':', n);
    if (colon == NULL) {
        return cred_reject(out, "Basic credentials must be email:password");
    }
    size_t email_len = (size_t)(colon - b);
    size_t pw_len = n - email_len - 1;
    if (email_len == 0 || email_len > GW_EMAIL_BYTES_MAX) {
        return cred_reject(out, "the email of Basic credentials must have 1 to 254 bytes");
    }
    if (pw_len == 0 || pw_len > GW_PASSWORD_BYTES_MAX) {
        return cred_reject(out, "the password of Basic credentials must have 1 to 128 bytes");
    }
    if (memchr(b, '\0', n) != NULL || !utf8_valid(b, n)) {
        return cred_reject(out, "Basic credentials must be UTF-8 text");
    }
    memcpy(out->email, b, email_len);
    out->email[email_len] = '\0';
    out->email_len = email_len;
    memcpy(out->password, colon + 1, pw_len);
    out->password[pw_len] = '\0';
    out->password_len = pw_len;
    out->kind = GW_CRED_BASIC;
    return TG_OK;
}

_Static_assert(GW_EMAIL_BYTES_MAX == 254u, "basic_split's sentences name these bounds");

static tg_err basic_parse(const char *s, size_t len, gw_credentials *out)
{
    if (len > GW_BASIC_ENCODED_BYTES_MAX) {
        return cred_reject(out, "Basic credentials are too long");
    }
    uint8_t b[GW_BASIC_ENCODED_BYTES_MAX / 4 * 3];
    size_t n = 0;
    tg_err err;
    if (sodium_base642bin(b, sizeof(b), s, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) !=
        0) {
        err = cred_reject(out, "Basic credentials must be base64 (with padding)");
    } else {
        err = basic_split(b, n, out);
    }
    sodium_memzero(b, sizeof(b));
    return err;
}

tg_err gw_auth_parse(const char *value, size_t len, gw_credentials *out)
{
    TG_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    if (value == NULL || len == 0) {
        return TG_OK;
    }
    while (len > 0 && is_space(value[len - 1])) {
        len--;
    }
    size_t i = 0;
    while (i < len && is_space(value[i])) {
        i++;
    }
    size_t scheme = i;
    while (i < len && !is_space(value[i])) {
        i++;
    }
    size_t scheme_len = i - scheme;
    while (i < len && is_space(value[i])) {
        i++;
    }
    const char *cred = value + i;
    size_t cred_len = len - i;
    if (scheme_len == 0 || cred_len == 0) {
        return cred_reject(out, "the Authorization header needs a scheme and credentials");
    }
    for (size_t k = 0; k < cred_len; k++) {
        if ((unsigned char)cred[k] <= ' ' || (unsigned char)cred[k] >= 0x7f) {
            return cred_reject(out, "credentials must be one word of printable ASCII");
        }
    }
    if (word_eq(value + scheme, scheme_len, "Bearer")) {
        return bearer_parse(cred, cred_len, out);
    }
    if (word_eq(value + scheme, scheme_len, "Basic")) {
        return basic_parse(cred, cred_len, out);
    }
    return cred_reject(out, "unsupported authorization scheme: use Bearer or Basic");
}

/* ---- The Basic credential cache ---------------------------------------------------- */

#define CRED_TAG_BYTES crypto_generichash_BYTES

typedef struct {
    uint8_t tag[CRED_TAG_BYTES]; /* keyed BLAKE2b-256 of email, 0x00, password */
    int64_t expires_ms;          /* 0: empty; else valid while now_ms < expires_ms */
    uint64_t user_id;
    gw_role role;
} cred_entry;

/* A mutex padded to a cache line so that neighbouring stripes do not share
 * one. */
typedef union {
    pthread_mutex_t mutex;
    char pad[64];
} cred_lock;

struct gw_cred_cache {
    uint8_t key[crypto_generichash_KEYBYTES]; /* random, per process; immutable */
    uint32_t ttl_ms;                          /* immutable */
    uint32_t set_mask;                        /* sets - 1; immutable */
    cred_entry *entries; /* set s is entries[s * WAYS ..]; each set under locks[s % LOCKS] */
    cred_lock locks[GW_CRED_CACHE_LOCKS];
};

_Static_assert((GW_CRED_CACHE_LOCKS & (GW_CRED_CACHE_LOCKS - 1)) == 0, "locks: a power of two");

tg_err gw_cred_cache_open(uint32_t entries, uint32_t ttl_ms, gw_cred_cache **out)
{
    TG_ASSERT(out != NULL);
    *out = NULL;
    if (entries == 0 || entries > GW_CRED_CACHE_ENTRIES_MAX) {
        return TG_EINVAL;
    }
    tg_err err = gw_auth_init();
    if (err != TG_OK) {
        return err;
    }
    uint32_t sets = 1;
    while (sets * GW_CRED_CACHE_WAYS < entries) {
        sets *= 2;
    }
    gw_cred_cache *c = calloc(1, sizeof(*c));
    cred_entry *e = calloc((size_t)sets * GW_CRED_CACHE_WAYS, sizeof(*e));
    if (c == NULL || e == NULL) {
        free(c);
        free(e);
        return TG_ENOMEM;
    }
    randombytes_buf(c->key, sizeof(c->key));
    c->ttl_ms = ttl_ms;
    c->set_mask = sets - 1;
    c->entries = e;
    for (uint32_t i = 0; i < GW_CRED_CACHE_LOCKS; i++) {
        pthread_mutex_init(&c->locks[i].mutex, NULL);
    }
    *out = c;
    return TG_OK;
}

static void cred_tag(const gw_cred_cache *c, const char *email, size_t email_len, const char *pw,
                     size_t pw_len, uint8_t tag[CRED_TAG_BYTES])
{
    static const unsigned char separator = 0;
    crypto_generichash_state st;
    crypto_generichash_init(&st, c->key, sizeof(c->key), CRED_TAG_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)email, email_len);
    crypto_generichash_update(&st, &separator, 1);
    crypto_generichash_update(&st, (const unsigned char *)pw, pw_len);
    crypto_generichash_final(&st, tag, CRED_TAG_BYTES);
    sodium_memzero(&st, sizeof(st));
}

/* The set a tag belongs to: its first four bytes (uniform, being a keyed
 * hash) under the mask. */
static uint32_t cred_set(const gw_cred_cache *c, const uint8_t tag[CRED_TAG_BYTES])
{
    uint32_t v =
        (uint32_t)tag[0] | (uint32_t)tag[1] << 8 | (uint32_t)tag[2] << 16 | (uint32_t)tag[3] << 24;
    return v & c->set_mask;
}

static pthread_mutex_t *cred_lock_of(gw_cred_cache *c, uint32_t set)
{
    return &c->locks[set & (GW_CRED_CACHE_LOCKS - 1)].mutex;
}

bool gw_cred_cache_get(gw_cred_cache *c, const char *email, size_t email_len, const char *pw,
                       size_t pw_len, int64_t now_ms, gw_principal *out)
{
    TG_ASSERT(c != NULL && email != NULL && pw != NULL && out != NULL);
    if (c->ttl_ms == 0) {
        return false;
    }
    uint8_t tag[CRED_TAG_BYTES];
    cred_tag(c, email, email_len, pw, pw_len, tag);
    uint32_t set = cred_set(c, tag);
    cred_entry *e = &c->entries[(size_t)set * GW_CRED_CACHE_WAYS];
    bool hit = false;
    pthread_mutex_lock(cred_lock_of(c, set));
    for (uint32_t w = 0; w < GW_CRED_CACHE_WAYS && !hit; w++) {
        if (e[w].expires_ms > now_ms && sodium_memcmp(e[w].tag, tag, CRED_TAG_BYTES) == 0) {
            out->user_id = e[w].user_id;
            out->role = e[w].role;
            hit = true;
        }
    }
    pthread_mutex_unlock(cred_lock_of(c, set));
    return hit;
}

/* The way a tag goes to: its own entry, else an empty or expired one, else
 * the one that expires first (the oldest, all having the same ttl).
 * Called with the set's lock held. */
static uint32_t cred_victim(const cred_entry *e, const uint8_t tag[CRED_TAG_BYTES], int64_t now_ms)
{
    uint32_t victim = 0;
    for (uint32_t w = 0; w < GW_CRED_CACHE_WAYS; w++) {
        if (e[w].expires_ms != 0 && sodium_memcmp(e[w].tag, tag, CRED_TAG_BYTES) == 0) {
            return w;
        }
        bool free_w = e[w].expires_ms <= now_ms;
        bool free_v = e[victim].expires_ms <= now_ms;
        if ((free_w && !free_v) || (free_w == free_v && e[w].expires_ms < e[victim].expires_ms)) {
            victim = w;
        }
    }
    return victim;
}

void gw_cred_cache_put(gw_cred_cache *c, const char *email, size_t email_len, const char *pw,
                       size_t pw_len, int64_t now_ms, const gw_principal *p)
{
    TG_ASSERT(c != NULL && email != NULL && pw != NULL && p != NULL && now_ms >= 0);
    if (c->ttl_ms == 0) {
        return;
    }
    uint8_t tag[CRED_TAG_BYTES];
    cred_tag(c, email, email_len, pw, pw_len, tag);
    uint32_t set = cred_set(c, tag);
    cred_entry *e = &c->entries[(size_t)set * GW_CRED_CACHE_WAYS];
    pthread_mutex_lock(cred_lock_of(c, set));
    cred_entry *v = &e[cred_victim(e, tag, now_ms)];
    memcpy(v->tag, tag, CRED_TAG_BYTES);
    v->expires_ms = now_ms + (int64_t)c->ttl_ms;
    v->user_id = p->user_id;
    v->role = p->role;
    pthread_mutex_unlock(cred_lock_of(c, set));
}

void gw_cred_cache_clear(gw_cred_cache *c)
{
    TG_ASSERT(c != NULL);
    for (uint32_t set = 0; set <= c->set_mask; set++) {
        cred_entry *e = &c->entries[(size_t)set * GW_CRED_CACHE_WAYS];
        pthread_mutex_lock(cred_lock_of(c, set));
        memset(e, 0, GW_CRED_CACHE_WAYS * sizeof(*e));
        pthread_mutex_unlock(cred_lock_of(c, set));
    }
}

void gw_cred_cache_close(gw_cred_cache *c)
{
    if (c == NULL) {
        return;
    }
    for (uint32_t i = 0; i < GW_CRED_CACHE_LOCKS; i++) {
        pthread_mutex_destroy(&c->locks[i].mutex);
    }
    free(c->entries);
    sodium_memzero(c, sizeof(*c));
    free(c);
}

/*
 * auth_test.c — the gateway's authentication building blocks: roles,
 * argon2id passwords and their policy, HS256 tokens (signing, verifying,
 * hostile input), the signing key from the environment or the data
 * directory, the Authorization header, the Basic credential cache and the
 * per-client rate limiter.
 *
 * Forged tokens are built by sign_raw, which MACs any header and payload
 * with the test key: a token that is rejected although its MAC is right
 * shows that the header or claim check, not the signature, refused it.
 * Hostile tokens are handed over in heap buffers of exactly their length,
 * so that the address sanitizer catches any read past the end.  Argon2id
 * tests are few: each hash at the interactive limits takes ~50-100 ms.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "auth.h"
#include "ratelimit.h"
#include "tixgrid/log.h"

#define NOW_S       1800000000 /* a fixed "now" for tokens, Unix seconds */
#define TTL_S       3600u
#define TOKEN_BYTES 2048u /* room for any token a test builds */

static gw_jwt_key test_key(uint8_t fill)
{
    gw_jwt_key k;
    memset(k.secret, fill, sizeof(k.secret));
    return k;
}

static gw_principal principal(uint64_t user_id, gw_role role)
{
    return (gw_principal){.user_id = user_id, .role = role};
}

/* A genuine token for p signed with k at NOW_S. */
static size_t sign(const gw_jwt_key *k, gw_principal p, char out[TOKEN_BYTES])
{
    size_t len = 0;
    int64_t exp = 0;
    cr_assert_eq(gw_jwt_sign(k, &p, NOW_S, TTL_S, out, TOKEN_BYTES, &len, &exp), TG_OK);
    return len;
}

static size_t b64url(const void *bin, size_t len, char *out, size_t out_size)
{
    sodium_bin2base64(out, out_size, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return strlen(out);
}

/* base64url(header).base64url(payload).base64url(HMAC-SHA256 under k):
 * any header and claims, correctly signed. */
static size_t sign_raw(const gw_jwt_key *k, const char *header, const char *payload,
                       char out[TOKEN_BYTES])
{
    size_t n = b64url(header, strlen(header), out, TOKEN_BYTES);
    out[n++] = '.';
    n += b64url(payload, strlen(payload), out + n, TOKEN_BYTES - n);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, (const unsigned char *)out, n, k->secret);
    out[n++] = '.';
    n += b64url(mac, sizeof(mac), out + n, TOKEN_BYTES - n);
    return n;
}

/* Verifies a copy of token[0..len) in a heap buffer of exactly len bytes. */
static tg_err verify_exact(const gw_jwt_key *k, const char *token, size_t len, gw_principal *out)
{
    char *copy = malloc(len == 0 ? 1 : len);
    cr_assert_not_null(copy);
    memcpy(copy, token, len);
    tg_err err = gw_jwt_verify(k, len == 0 ? NULL : copy, len, NOW_S, out);
    free(copy);
    return err;
}

static tg_err verify_str(const gw_jwt_key *k, const char *token)
{
    gw_principal p;
    return verify_exact(k, token, strlen(token), &p);
}

/* A small deterministic generator (xorshift64*) for the hostile inputs. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* ---- roles ---------------------------------------------------------------- */

Test(role, names_parse_back_to_their_role)
{
    const gw_role roles[] = {GW_ROLE_BUYER, GW_ROLE_ORGANIZER, GW_ROLE_ADMIN};
    const char *names[] = {"buyer", "organizer", "admin"};
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(gw_role_name(roles[i]), names[i]);
        gw_role r = GW_ROLE_BUYER;
        cr_assert_eq(gw_role_parse(names[i], &r), TG_OK);
        cr_assert_eq(r, roles[i]);
    }
}

Test(role, parse_rejects_anything_else)
{
    const char *bad[] = {"", "Admin", "ADMIN", "admin ", "root", "buyers", "organiser"};
    gw_role r = GW_ROLE_BUYER;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(gw_role_parse(bad[i], &r), TG_EINVAL, "'%s'", bad[i]);
    }
    cr_assert_eq(gw_role_parse(NULL, &r), TG_EINVAL);
}

/* ---- passwords ------------------------------------------------------------ */

Test(password, a_hash_verifies_its_password_and_no_other)
{
    char hash[GW_PASSWORD_HASH_BYTES];
    const char *pw = "correct horse battery";
    cr_assert_eq(gw_password_hash(pw, strlen(pw), hash), TG_OK);
    cr_assert_eq(strncmp(hash, "$argon2id$", 10), 0, "an argon2id string: %s", hash);
    cr_assert_eq(gw_password_verify(hash, pw, strlen(pw)), TG_OK);
    cr_assert_eq(gw_password_verify(hash, "correct horse batterY", strlen(pw)), TG_EINVAL);
    cr_assert_eq(gw_password_verify(hash, pw, strlen(pw) - 1), TG_EINVAL, "a prefix");
    cr_assert_eq(gw_password_verify(hash, "", 0), TG_EINVAL);
}

Test(password, the_same_password_hashes_differently_each_time)
{
    char a[GW_PASSWORD_HASH_BYTES];
    char b[GW_PASSWORD_HASH_BYTES];
    cr_assert_eq(gw_password_hash("password1", 9, a), TG_OK);
    cr_assert_eq(gw_password_hash("password1", 9, b), TG_OK);
    cr_assert_str_neq(a, b, "a random salt each time");
}

Test(password, verify_accepts_a_hash_made_with_other_limits)
{
    cr_assert_eq(gw_auth_init(), TG_OK);
    char hash[GW_PASSWORD_HASH_BYTES];
    cr_assert_eq(crypto_pwhash_str_alg(hash, "seeded pw", 9, crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN, crypto_pwhash_ALG_ARGON2ID13),
                 0);
    cr_assert_eq(gw_password_verify(hash, "seeded pw", 9), TG_OK);
    cr_assert_eq(gw_password_verify(hash, "seeded px", 9), TG_EINVAL);
}

Test(password, verify_reports_a_stored_hash_that_is_not_an_argon2_string_as_corrupt)
{
    int devnull = open("/dev/null", O_WRONLY);
    tg_log_set_fd(devnull);
    char long_hash[300];
    memset(long_hash, 'a', sizeof(long_hash) - 1);
    long_hash[sizeof(long_hash) - 1] = '\0';
    cr_assert_eq(gw_password_verify("plaintext", "plaintext", 9), TG_ECORRUPT);
    cr_assert_eq(gw_password_verify("$argon2id$garbage", "x", 1), TG_ECORRUPT);
    cr_assert_eq(gw_password_verify("", "x", 1), TG_ECORRUPT);
    cr_assert_eq(gw_password_verify(long_hash, "x", 1), TG_ECORRUPT);
    tg_log_set_fd(-1);
    close(devnull);
}

Test(password, policy_accepts_8_to_128_bytes)
{
    char pw[GW_PASSWORD_BYTES_MAX];
    memset(pw, 'x', sizeof(pw));
    const char *why = "unset";
    cr_assert_eq(gw_password_policy(pw, 8, &why), TG_OK);
    cr_assert_null(why);
    cr_assert_eq(gw_password_policy(pw, 128, &why), TG_OK);
    cr_assert_eq(gw_password_policy("p\xc3\xa4sswor", 8, &why), TG_OK,
                 "8 bytes in 7 characters: bytes count");
}

Test(password, policy_rejects_short_long_and_nul_passwords_saying_why)
{
    char pw[GW_PASSWORD_BYTES_MAX + 1];
    memset(pw, 'x', sizeof(pw));
    const char *why = NULL;
    cr_assert_eq(gw_password_policy(pw, 7, &why), TG_EINVAL);
    cr_assert_not_null(strstr(why, "at least 8"), "%s", why);
    cr_assert_eq(gw_password_policy(pw, 0, &why), TG_EINVAL);
    cr_assert_eq(gw_password_policy(pw, 129, &why), TG_EINVAL);
    cr_assert_not_null(strstr(why, "at most 128"), "%s", why);
    pw[4] = '\0';
    cr_assert_eq(gw_password_policy(pw, 12, &why), TG_EINVAL);
    cr_assert_not_null(strstr(why, "NUL"), "%s", why);
}

/* ---- tokens: signing and verifying ------------------------------------------ */

Test(jwt, a_signed_token_verifies_to_its_principal)
{
    gw_jwt_key k = test_key(7);
    const gw_principal ps[] = {principal(1, GW_ROLE_BUYER), principal(42, GW_ROLE_ORGANIZER),
                               principal(GW_USER_ID_MAX, GW_ROLE_ADMIN)};
    for (int i = 0; i < 3; i++) {
        char t[TOKEN_BYTES];
        size_t len = sign(&k, ps[i], t);
        cr_assert_eq(strlen(t), len, "NUL-terminated at len");
        gw_principal got = {0};
        cr_assert_eq(verify_exact(&k, t, len, &got), TG_OK);
        cr_assert_eq(got.user_id, ps[i].user_id);
        cr_assert_eq(got.role, ps[i].role);
    }
}

Test(jwt, a_token_carries_the_documented_header_and_claims)
{
    gw_jwt_key k = test_key(7);
    gw_principal p = principal(1234, GW_ROLE_ORGANIZER);
    char t[TOKEN_BYTES];
    size_t len = 0;
    int64_t exp = 0;
    cr_assert_eq(gw_jwt_sign(&k, &p, NOW_S, TTL_S, t, sizeof(t), &len, &exp), TG_OK);
    cr_assert_eq(exp, (int64_t)NOW_S + TTL_S);
    char *dot1 = strchr(t, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    cr_assert_eq(strlen(dot2 + 1), 43u, "an unpadded 32-byte MAC");
    cr_assert_null(strchr(t, '='), "no padding");

    char json[256];
    size_t n = 0;
    cr_assert_eq(sodium_base642bin((unsigned char *)json, sizeof(json), t, (size_t)(dot1 - t), NULL,
                                   &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                 0);
    json[n] = '\0';
    cr_assert_str_eq(json, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    cr_assert_eq(sodium_base642bin((unsigned char *)json, sizeof(json), dot1 + 1,
                                   (size_t)(dot2 - dot1 - 1), NULL, &n, NULL,
                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                 0);
    json[n] = '\0';
    cr_assert_str_eq(
        json, "{\"sub\":\"1234\",\"role\":\"organizer\",\"iat\":1800000000,\"exp\":1800003600}");
}

Test(jwt, sign_rejects_a_principal_or_ttl_it_cannot_encode)
{
    gw_jwt_key k = test_key(7);
    char t[TOKEN_BYTES];
    size_t len = 0;
    int64_t exp = 0;
    gw_principal nobody = principal(0, GW_ROLE_BUYER);
    gw_principal big = principal(GW_USER_ID_MAX + 1, GW_ROLE_BUYER);
    gw_principal bad_role = principal(1, (gw_role)3);
    gw_principal ok = principal(1, GW_ROLE_BUYER);
    cr_assert_eq(gw_jwt_sign(&k, &nobody, NOW_S, TTL_S, t, sizeof(t), &len, &exp), TG_EINVAL);
    cr_assert_eq(gw_jwt_sign(&k, &big, NOW_S, TTL_S, t, sizeof(t), &len, &exp), TG_EINVAL);
    cr_assert_eq(gw_jwt_sign(&k, &bad_role, NOW_S, TTL_S, t, sizeof(t), &len, &exp), TG_EINVAL);
    cr_assert_eq(gw_jwt_sign(&k, &ok, NOW_S, 0, t, sizeof(t), &len, &exp), TG_EINVAL);
    cr_assert_eq(gw_jwt_sign(&k, &ok, -1, TTL_S, t, sizeof(t), &len, &exp), TG_EINVAL);
    cr_assert_eq(gw_jwt_sign(&k, &ok, INT64_MAX, TTL_S, t, sizeof(t), &len, &exp), TG_EINVAL);
    cr_assert_eq(gw_jwt_sign(&k, &ok, NOW_S, TTL_S, t, 100, &len, &exp), TG_EINVAL,
                 "out too small");
    cr_assert_eq(gw_jwt_sign(&k, &ok, NOW_S, TTL_S, t, GW_JWT_BYTES_MAX, &len, &exp), TG_OK);
}

Test(jwt, verify_reports_expiry_at_exp_and_after)
{
    gw_jwt_key k = test_key(7);
    gw_principal p = principal(5, GW_ROLE_BUYER);
    char t[TOKEN_BYTES];
    size_t len = sign(&k, p, t);
    gw_principal got;
    cr_assert_eq(gw_jwt_verify(&k, t, len, NOW_S + TTL_S - 1, &got), TG_OK);
    cr_assert_eq(gw_jwt_verify(&k, t, len, NOW_S + TTL_S, &got), TG_EEXPIRED);
    cr_assert_eq(gw_jwt_verify(&k, t, len, NOW_S + 10 * TTL_S, &got), TG_EEXPIRED);
}

Test(jwt, an_expired_token_with_a_wrong_signature_is_invalid_not_expired)
{
    gw_jwt_key k = test_key(7);
    gw_jwt_key other = test_key(8);
    char t[TOKEN_BYTES];
    size_t len = sign(&other, principal(5, GW_ROLE_BUYER), t);
    gw_principal got;
    cr_assert_eq(gw_jwt_verify(&k, t, len, NOW_S + 10 * TTL_S, &got), TG_EINVAL);
}

Test(jwt, verify_rejects_a_token_signed_with_another_key)
{
    gw_jwt_key k = test_key(7);
    gw_jwt_key other = test_key(8);
    char t[TOKEN_BYTES];
    sign(&other, principal(5, GW_ROLE_BUYER), t);
    cr_assert_eq(verify_str(&k, t), TG_EINVAL);
}

Test(jwt, verify_rejects_a_tampered_payload)
{
    gw_jwt_key k = test_key(7);
    char t[TOKEN_BYTES];
    sign(&k, principal(5, GW_ROLE_BUYER), t);
    /* The same claims with role admin, spliced between the genuine header
     * and MAC. */
    const char *claims = "{\"sub\":\"5\",\"role\":\"admin\",\"iat\":1800000000,\"exp\":1800003600}";
    char forged[TOKEN_BYTES];
    char *dot1 = strchr(t, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    size_t n = (size_t)(dot1 - t) + 1;
    memcpy(forged, t, n);
    n += b64url(claims, strlen(claims), forged + n, sizeof(forged) - n);
    snprintf(forged + n, sizeof(forged) - n, "%s", dot2);
    cr_assert_eq(verify_str(&k, forged), TG_EINVAL);
}

Test(jwt, verify_rejects_a_tampered_signature)
{
    gw_jwt_key k = test_key(7);
    char t[TOKEN_BYTES];
    size_t len = sign(&k, principal(5, GW_ROLE_BUYER), t);
    for (size_t i = len - 43; i < len; i++) {
        char saved = t[i];
        t[i] = saved == 'A' ? 'B' : 'A';
        cr_assert_eq(verify_str(&k, t), TG_EINVAL, "MAC character %zu changed", i);
        t[i] = saved;
    }
    cr_assert_eq(verify_str(&k, t), TG_OK);
}

Test(jwt, verify_rejects_alg_none)
{
    gw_jwt_key k = test_key(7);
    const char *claims = "{\"sub\":\"5\",\"role\":\"admin\",\"exp\":1900000000}";
    char t[TOKEN_BYTES];
    size_t n = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", 26, t, sizeof(t));
    t[n++] = '.';
    n += b64url(claims, strlen(claims), t + n, sizeof(t) - n);
    t[n++] = '.';
    t[n] = '\0';
    cr_assert_eq(verify_str(&k, t), TG_EINVAL, "unsigned, empty MAC");
    sign_raw(&k, "{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, t);
    cr_assert_eq(verify_str(&k, t), TG_EINVAL, "alg none even with a valid MAC");
}

Test(jwt, verify_rejects_every_header_but_hs256)
{
    gw_jwt_key k = test_key(7);
    const char *claims = "{\"sub\":\"5\",\"role\":\"buyer\",\"exp\":1900000000}";
    const char *bad[] = {
        "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
        "{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"None\"}",
        "{\"alg\":\"\"}",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":[\"HS256\"]}",
        "{\"alg\":null}",
        "{\"alg\":\"HS256\",\"typ\":\"JWS\"}",
        "{\"alg\":\"HS256\",\"typ\":1}",
        "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
        "{\"alg\":\"HS256\",\"alg\":\"none\"}",
        "[\"HS256\"]",
        "\"HS256\"",
        "{\"alg\":\"HS256\"",
        "",
    };
    char t[TOKEN_BYTES];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sign_raw(&k, bad[i], claims, t);
        cr_assert_eq(verify_str(&k, t), TG_EINVAL, "header %s", bad[i]);
    }
    sign_raw(&k, "{\"alg\":\"HS256\"}", claims, t);
    cr_assert_eq(verify_str(&k, t), TG_OK, "typ is optional");
}

Test(jwt, verify_rejects_missing_or_ill_typed_claims)
{
    gw_jwt_key k = test_key(7);
    const char *header = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    const char *bad[] = {
        "{\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":5,\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"\",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"0\",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"007\",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"-1\",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"+1\",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"1 \",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"12a\",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"9007199254740992\",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"18446744073709551621\",\"role\":\"buyer\",\"exp\":1900000000}",
        "{\"sub\":\"5\",\"exp\":1900000000}",
        "{\"sub\":\"5\",\"role\":\"root\",\"exp\":1900000000}",
        "{\"sub\":\"5\",\"role\":2,\"exp\":1900000000}",
        "{\"sub\":\"5\",\"role\":\"buyer\"}",
        "{\"sub\":\"5\",\"role\":\"buyer\",\"exp\":\"1900000000\"}",
        "{\"sub\":\"5\",\"role\":\"buyer\",\"exp\":1.9e9}",
        "{\"sub\":\"5\",\"role\":\"buyer\",\"exp\":null}",
        "{\"sub\":\"5\",\"role\":\"buyer\",\"exp\":1900000000,\"iat\":\"now\"}",
        "{\"sub\":\"5\",\"role\":\"buyer\",\"role\":\"admin\",\"exp\":1900000000}",
        "{\"sub\":\"5\",\"role\":\"buyer\",\"exp\":1900000000",
        "[\"5\",\"buyer\",1900000000]",
        "null",
        "",
    };
    char t[TOKEN_BYTES];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sign_raw(&k, header, bad[i], t);
        cr_assert_eq(verify_str(&k, t), TG_EINVAL, "claims %s", bad[i]);
    }
    sign_raw(&k, header, "{\"sub\":\"9007199254740991\",\"role\":\"organizer\",\"exp\":1900000000}",
             t);
    gw_principal got = {0};
    cr_assert_eq(verify_exact(&k, t, strlen(t), &got), TG_OK, "the largest user id");
    cr_assert_eq(got.user_id, GW_USER_ID_MAX);
    cr_assert_eq(got.role, GW_ROLE_ORGANIZER);
}

Test(jwt, verify_rejects_malformed_tokens)
{
    gw_jwt_key k = test_key(7);
    char t[TOKEN_BYTES];
    size_t len = sign(&k, principal(5, GW_ROLE_BUYER), t);
    const char *bad[] = {"", ".", "..", "...", "abc", "a.b", "a.b.c", "a.b.c.d", "eyJ..", "..x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(verify_str(&k, bad[i]), TG_EINVAL, "'%s'", bad[i]);
    }
    char v[TOKEN_BYTES + 2];
    snprintf(v, sizeof(v), "%s=", t);
    cr_assert_eq(verify_str(&k, v), TG_EINVAL, "padding");
    snprintf(v, sizeof(v), "%s.", t);
    cr_assert_eq(verify_str(&k, v), TG_EINVAL, "a fourth segment");
    snprintf(v, sizeof(v), " %s", t);
    cr_assert_eq(verify_str(&k, v), TG_EINVAL, "a leading space");
    memcpy(v, t, len);
    v[10] = '\0';
    gw_principal p;
    cr_assert_eq(verify_exact(&k, v, len, &p), TG_EINVAL, "a NUL inside");
    memcpy(v, t, len);
    v[5] = '+';
    cr_assert_eq(verify_exact(&k, v, len, &p), TG_EINVAL, "standard base64, not base64url");
    cr_assert_eq(gw_jwt_verify(&k, NULL, 0, NOW_S, &p), TG_EINVAL);
}

Test(jwt, verify_rejects_every_truncation_of_a_genuine_token)
{
    gw_jwt_key k = test_key(7);
    char t[TOKEN_BYTES];
    size_t len = sign(&k, principal(5, GW_ROLE_BUYER), t);
    gw_principal p;
    for (size_t n = 0; n < len; n++) {
        cr_assert_eq(verify_exact(&k, t, n, &p), TG_EINVAL, "first %zu bytes", n);
    }
    cr_assert_eq(verify_exact(&k, t, len, &p), TG_OK);
}

/* A genuine token of exactly `want` bytes: the payload is padded with an
 * extra claim. */
static size_t sign_of_length(const gw_jwt_key *k, size_t want, char t[TOKEN_BYTES])
{
    char claims[TOKEN_BYTES];
    for (size_t pad = 0; pad < 1000; pad++) {
        int n = snprintf(claims, sizeof(claims),
                         "{\"sub\":\"5\",\"role\":\"buyer\",\"exp\":1900000000,\"pad\":\"%*s\"}",
                         (int)pad, "");
        cr_assert(n > 0);
        size_t len = sign_raw(k, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, t);
        if (len == want) {
            return len;
        }
    }
    cr_assert_fail("no padding gives a token of %zu bytes", want);
    return 0;
}

Test(jwt, verify_accepts_up_to_1024_bytes_and_rejects_longer_tokens)
{
    gw_jwt_key k = test_key(7);
    char t[TOKEN_BYTES];
    gw_principal p;
    size_t len = sign_of_length(&k, GW_JWT_BYTES_MAX, t);
    cr_assert_eq(verify_exact(&k, t, len, &p), TG_OK);
    len = sign_of_length(&k, GW_JWT_BYTES_MAX + 1, t);
    cr_assert_eq(verify_exact(&k, t, len, &p), TG_EINVAL, "a genuine MAC, but too long");
    char big[8192];
    memset(big, 'A', sizeof(big));
    cr_assert_eq(verify_exact(&k, big, sizeof(big), &p), TG_EINVAL);
}

Test(jwt, thousands_of_random_mutations_of_a_token_are_all_rejected)
{
    gw_jwt_key k = test_key(7);
    char t[TOKEN_BYTES];
    size_t len = sign(&k, principal(5, GW_ROLE_ADMIN), t);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x01\x80\xff";
    uint64_t seed = 0x9e3779b97f4a7c15u;
    char m[TOKEN_BYTES];
    for (int round = 0; round < 5000; round++) {
        memcpy(m, t, len);
        size_t n = len;
        int edits = 1 + (int)(rng_next(&seed) % 3);
        for (int e = 0; e < edits && n > 0; e++) {
            size_t at = rng_next(&seed) % n;
            char c = alphabet[rng_next(&seed) % (sizeof(alphabet) - 1)];
            switch (rng_next(&seed) % 4) {
            case 0: /* replace */
                m[at] = c;
                break;
            case 1: /* delete */
                memmove(m + at, m + at + 1, n - at - 1);
                n--;
                break;
            case 2: /* insert */
                memmove(m + at + 1, m + at, n - at);
                m[at] = c;
                n++;
                break;
            default: /* truncate */
                n = at;
                break;
            }
        }
        gw_principal p;
        tg_err want = n == len && memcmp(m, t, len) == 0 ? TG_OK : TG_EINVAL;
        cr_assert_eq(verify_exact(&k, m, n, &p), want, "round %d", round);
    }
}

Test(jwt, random_bytes_and_random_three_part_tokens_are_rejected)
{
    gw_jwt_key k = test_key(7);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t seed = 12345;
    char m[TOKEN_BYTES];
    gw_principal p;
    for (int round = 0; round < 2000; round++) {
        size_t n = rng_next(&seed) % (GW_JWT_BYTES_MAX + 64);
        bool shaped = round % 2 == 1;
        for (size_t i = 0; i < n; i++) {
            m[i] = shaped ? b64[rng_next(&seed) % 64] : (char)rng_next(&seed);
        }
        if (shaped && n > 50) {
            m[rng_next(&seed) % (n - 45)] = '.';
            m[n - 44] = '.';
        }
        cr_assert_eq(verify_exact(&k, m, n, &p), TG_EINVAL, "round %d", round);
    }
}

/* ---- the signing key --------------------------------------------------------- */

static char test_dir[256];

static void dir_make(void)
{
    snprintf(test_dir, sizeof(test_dir), "/tmp/tixgrid-auth-test-XXXXXX");
    cr_assert_not_null(mkdtemp(test_dir));
}

/* Removes the test directory and whatever is in it. */
static void dir_remove(void)
{
    DIR *d = opendir(test_dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", test_dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(test_dir);
}

static unsigned dir_entries(void)
{
    DIR *d = opendir(test_dir);
    cr_assert_not_null(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

static void secret_file_write(const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/jwt.secret", test_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Log records go to a file the test can read. */
static char log_path[] = "/tmp/tixgrid-auth-log-XXXXXX";
static int log_fd = -1;

static void secret_setup(void)
{
    dir_make();
    log_fd = mkstemp(log_path);
    cr_assert(log_fd >= 0);
    tg_log_set_fd(log_fd);
}

static void secret_teardown(void)
{
    tg_log_set_fd(-1);
    close(log_fd);
    unlink(log_path);
    dir_remove();
}

static bool log_contains(const char *text)
{
    char buf[8192];
    ssize_t n = pread(log_fd, buf, sizeof(buf) - 1, 0);
    buf[n < 0 ? 0 : n] = '\0';
    return strstr(buf, text) != NULL;
}

TestSuite(secret, .init = secret_setup, .fini = secret_teardown);

Test(secret, an_environment_secret_shorter_than_32_bytes_is_refused_with_a_reason)
{
    gw_jwt_key k;
    cr_assert_eq(gw_jwt_secret_load("short", test_dir, &k), TG_EINVAL);
    cr_assert(log_contains("TIXGRID_JWT_SECRET has 5 bytes"));
    cr_assert_eq(gw_jwt_secret_load("0123456789abcdef0123456789abcde", test_dir, &k), TG_EINVAL,
                 "31 bytes");
    cr_assert_eq(dir_entries(), 0u, "no file is made when the variable is set");
}

Test(secret, an_environment_secret_gives_its_blake2b_as_the_key)
{
    const char *env = "0123456789abcdef0123456789abcdef";
    gw_jwt_key a;
    gw_jwt_key b;
    gw_jwt_key c;
    cr_assert_eq(gw_jwt_secret_load(env, test_dir, &a), TG_OK);
    cr_assert_eq(gw_jwt_secret_load(env, "/nonexistent", &b), TG_OK, "the directory is unused");
    cr_assert_eq(memcmp(a.secret, b.secret, sizeof(a.secret)), 0);
    uint8_t want[32];
    crypto_generichash(want, sizeof(want), (const unsigned char *)env, strlen(env), NULL, 0);
    cr_assert_eq(memcmp(a.secret, want, sizeof(want)), 0);
    cr_assert_eq(gw_jwt_secret_load("0123456789abcdef0123456789abcdeF", NULL, &c), TG_OK);
    cr_assert_neq(memcmp(a.secret, c.secret, sizeof(a.secret)), 0);
    cr_assert_eq(dir_entries(), 0u);
}

Test(secret, the_key_file_is_created_once_private_and_read_back_the_same)
{
    gw_jwt_key a;
    gw_jwt_key b;
    cr_assert_eq(gw_jwt_secret_load("", test_dir, &a), TG_OK);
    cr_assert_eq(gw_jwt_secret_load(NULL, test_dir, &b), TG_OK);
    cr_assert_eq(memcmp(a.secret, b.secret, sizeof(a.secret)), 0);
    cr_assert_eq(dir_entries(), 1u, "jwt.secret and no temporary file");

    char path[512];
    snprintf(path, sizeof(path), "%s/jwt.secret", test_dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600u);
    char text[128] = {0};
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    cr_assert_eq(n, 65u, "64 hex digits and a newline");
    char want[65];
    sodium_bin2hex(want, sizeof(want), a.secret, sizeof(a.secret));
    cr_assert_eq(memcmp(text, want, 64), 0);
}

Test(secret, a_key_file_without_a_newline_is_read)
{
    secret_file_write("000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F");
    gw_jwt_key k;
    cr_assert_eq(gw_jwt_secret_load(NULL, test_dir, &k), TG_OK);
    for (unsigned i = 0; i < 32; i++) {
        cr_assert_eq(k.secret[i], i);
    }
}

Test(secret, a_key_file_with_bad_content_is_refused_and_left_alone)
{
    const char *bad[] = {
        "",
        "hello\n",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1\n",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fz",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\n",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00\n",
        "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        " 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        secret_file_write(bad[i]);
        gw_jwt_key k;
        cr_assert_eq(gw_jwt_secret_load(NULL, test_dir, &k), TG_EINVAL, "content '%s'", bad[i]);
        cr_assert_eq(dir_entries(), 1u);
    }
    cr_assert(log_contains("must hold 64 hex digits"));
}

Test(secret, no_secret_and_no_directory_is_an_error)
{
    gw_jwt_key k;
    cr_assert_eq(gw_jwt_secret_load(NULL, NULL, &k), TG_EINVAL);
    cr_assert_eq(gw_jwt_secret_load("", "", &k), TG_EINVAL);
    cr_assert(log_contains("TIXGRID_JWT_SECRET"));
}

Test(secret, a_missing_data_directory_is_a_system_error)
{
    gw_jwt_key k;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/absent", test_dir);
    cr_assert_eq(gw_jwt_secret_load(NULL, dir, &k), TG_ESYSTEM);
    cr_assert(log_contains("absent"));
    char long_dir[400];
    memset(long_dir, 'd', sizeof(long_dir) - 1);
    long_dir[0] = '/';
    long_dir[sizeof(long_dir) - 1] = '\0';
    cr_assert_eq(gw_jwt_secret_load(NULL, long_dir, &k), TG_EINVAL);
}

#define RACERS 8

typedef struct {
    pthread_barrier_t *start;
    gw_jwt_key key;
    tg_err err;
} racer;

static void *racer_main(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(r->start);
    r->err = gw_jwt_secret_load(NULL, test_dir, &r->key);
    return NULL;
}

Test(secret, racing_loaders_all_end_up_with_the_one_published_key)
{
    for (int round = 0; round < 20; round++) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, RACERS);
        racer rs[RACERS];
        pthread_t th[RACERS];
        for (int i = 0; i < RACERS; i++) {
            rs[i] = (racer){.start = &start};
            cr_assert_eq(pthread_create(&th[i], NULL, racer_main, &rs[i]), 0);
        }
        for (int i = 0; i < RACERS; i++) {
            pthread_join(th[i], NULL);
            cr_assert_eq(rs[i].err, TG_OK);
            cr_assert_eq(memcmp(rs[i].key.secret, rs[0].key.secret, GW_JWT_SECRET_BYTES), 0,
                         "round %d, loader %d", round, i);
        }
        pthread_barrier_destroy(&start);
        cr_assert_eq(dir_entries(), 1u, "jwt.secret and no temporary file");
        char path[512];
        snprintf(path, sizeof(path), "%s/jwt.secret", test_dir);
        unlink(path);
    }
}

/* ---- the Authorization header ---------------------------------------------------- */

static tg_err parse(const char *value, gw_credentials *out)
{
    return gw_auth_parse(value, strlen(value), out);
}

/* "Basic " and base64 of raw[0..len) into out. */
static void basic_header(const char *raw, size_t len, char *out, size_t out_size)
{
    int n = snprintf(out, out_size, "Basic ");
    sodium_bin2base64(out + n, out_size - (size_t)n, (const unsigned char *)raw, len,
                      sodium_base64_VARIANT_ORIGINAL);
}

Test(header, no_header_gives_no_credentials)
{
    gw_credentials c;
    cr_assert_eq(gw_auth_parse(NULL, 0, &c), TG_OK);
    cr_assert_eq(c.kind, GW_CRED_NONE);
    cr_assert_eq(gw_auth_parse("", 0, &c), TG_OK);
    cr_assert_eq(c.kind, GW_CRED_NONE);
}

Test(header, a_bearer_token_points_into_the_value)
{
    const char *v = "Bearer abc.def.ghi";
    gw_credentials c;
    cr_assert_eq(parse(v, &c), TG_OK);
    cr_assert_eq(c.kind, GW_CRED_BEARER);
    cr_assert_eq(c.token, v + 7);
    cr_assert_eq(c.token_len, 11u);
    cr_assert_null(c.why);
    cr_assert_eq(parse("  Bearer \t abc.def.ghi  ", &c), TG_OK, "spaces around");
    cr_assert_eq(c.token_len, 11u);
    cr_assert_eq(memcmp(c.token, "abc.def.ghi", 11), 0);
}

Test(header, scheme_names_are_case_insensitive)
{
    const char *bearers[] = {"bearer t", "BEARER t", "bEaReR t"};
    gw_credentials c;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(parse(bearers[i], &c), TG_OK, "%s", bearers[i]);
        cr_assert_eq(c.kind, GW_CRED_BEARER);
    }
    cr_assert_eq(parse("bAsIc YTpi", &c), TG_OK);
    cr_assert_eq(c.kind, GW_CRED_BASIC);
    cr_assert_str_eq(c.email, "a");
    cr_assert_str_eq(c.password, "b");
}

Test(header, basic_credentials_are_split_at_the_first_colon)
{
    char v[1024];
    const char *raw = "alice@example.com:p\xc3\xa4ss:word";
    basic_header(raw, strlen(raw), v, sizeof(v));
    gw_credentials c;
    cr_assert_eq(parse(v, &c), TG_OK);
    cr_assert_eq(c.kind, GW_CRED_BASIC);
    cr_assert_str_eq(c.email, "alice@example.com");
    cr_assert_eq(c.email_len, 17u);
    cr_assert_str_eq(c.password, "p\xc3\xa4ss:word");
    cr_assert_eq(c.password_len, 10u);
}

Test(header, basic_accepts_the_longest_email_and_password)
{
    char raw[GW_BASIC_DECODED_BYTES_MAX];
    memset(raw, 'e', GW_EMAIL_BYTES_MAX);
    raw[GW_EMAIL_BYTES_MAX] = ':';
    memset(raw + GW_EMAIL_BYTES_MAX + 1, 'p', GW_PASSWORD_BYTES_MAX);
    char v[1024];
    basic_header(raw, sizeof(raw), v, sizeof(v));
    gw_credentials c;
    cr_assert_eq(parse(v, &c), TG_OK);
    cr_assert_eq(c.email_len, GW_EMAIL_BYTES_MAX);
    cr_assert_eq(c.password_len, GW_PASSWORD_BYTES_MAX);
    cr_assert_eq(strlen(c.password), GW_PASSWORD_BYTES_MAX);
}

/* Asserts that value is refused with a reason containing `why`. */
static void assert_refused(const char *value, const char *why)
{
    gw_credentials c;
    cr_assert_eq(parse(value, &c), TG_EINVAL, "'%s'", value);
    cr_assert_eq(c.kind, GW_CRED_NONE);
    cr_assert_not_null(c.why, "'%s'", value);
    cr_assert_not_null(strstr(c.why, why), "'%s': %s", value, c.why);
}

static void assert_basic_refused(const char *raw, size_t len, const char *why)
{
    char v[2048];
    basic_header(raw, len, v, sizeof(v));
    assert_refused(v, why);
}

Test(header, basic_rejects_bad_base64)
{
    assert_refused("Basic !!!!", "base64");
    assert_refused("Basic YWxpY2U6cHc", "base64"); /* "alice:pw" without its padding */
    assert_refused("Basic YWxpY2U6cHc=x", "base64");
    assert_refused("Basic YWxp Y2U6cHc=", "one word");
    assert_refused("Basic YWxpY2U6cHc_", "base64"); /* base64url, not base64 */
}

Test(header, basic_rejects_credentials_without_a_colon)
{
    assert_basic_refused("alice@example.com", 17, "email:password");
}

Test(header, basic_rejects_an_empty_or_overlong_email_or_password)
{
    assert_basic_refused(":password", 9, "email");
    assert_basic_refused("alice@example.com:", 18, "password");
    char raw[GW_BASIC_DECODED_BYTES_MAX + 1];
    memset(raw, 'e', sizeof(raw));
    raw[GW_EMAIL_BYTES_MAX + 1] = ':';
    assert_basic_refused(raw, GW_EMAIL_BYTES_MAX + 3, "1 to 254 bytes");
    memset(raw, 'p', sizeof(raw));
    raw[1] = ':';
    assert_basic_refused(raw, 2 + GW_PASSWORD_BYTES_MAX + 1, "1 to 128 bytes");
    char big[1024];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "Basic ", 6);
    assert_refused(big, "too long");
}

Test(header, basic_rejects_nul_bytes_and_invalid_utf8)
{
    assert_basic_refused("alice\0x@example.com:password", 28, "UTF-8");
    assert_basic_refused("alice@example.com:pass\0word", 27, "UTF-8");
    assert_basic_refused("alice@example.com:pass\xffword", 27, "UTF-8");
    assert_basic_refused("alice\xc0\xae@example.com:password", 28, "UTF-8");
    assert_basic_refused("alice@example.com:\xed\xa0\x80", 21, "UTF-8");
}

Test(header, an_unknown_scheme_is_rejected)
{
    assert_refused("Digest username=\"a\"", "Bearer or Basic");
    assert_refused("Token abc", "Bearer or Basic");
    assert_refused("Bearerx abc", "Bearer or Basic");
    assert_refused("abc.def.ghi", "scheme and credentials");
}

Test(header, a_scheme_without_credentials_is_rejected)
{
    assert_refused("Bearer", "scheme and credentials");
    assert_refused("Bearer   ", "scheme and credentials");
    assert_refused("Basic", "scheme and credentials");
    assert_refused("   ", "scheme and credentials");
    assert_refused("Bearer a b", "one word");
    assert_refused("Bearer a\x01", "one word");
}

Test(header, a_bearer_token_over_1024_bytes_is_rejected)
{
    char v[1100];
    memcpy(v, "Bearer ", 7);
    memset(v + 7, 'a', GW_JWT_BYTES_MAX);
    v[7 + GW_JWT_BYTES_MAX] = '\0';
    gw_credentials c;
    cr_assert_eq(parse(v, &c), TG_OK);
    v[7 + GW_JWT_BYTES_MAX] = 'a';
    v[8 + GW_JWT_BYTES_MAX] = '\0';
    assert_refused(v, "longer than 1024 bytes");
}

/* ---- the Basic credential cache ---------------------------------------------------- */

static gw_cred_cache *cache_open(uint32_t entries, uint32_t ttl_ms)
{
    gw_cred_cache *c = NULL;
    cr_assert_eq(gw_cred_cache_open(entries, ttl_ms, &c), TG_OK);
    cr_assert_not_null(c);
    return c;
}

static void cache_put(gw_cred_cache *c, const char *email, const char *pw, int64_t now_ms,
                      uint64_t user_id)
{
    gw_principal p = principal(user_id, GW_ROLE_BUYER);
    gw_cred_cache_put(c, email, strlen(email), pw, strlen(pw), now_ms, &p);
}

/* The user id the cache gives for the pair, 0 on a miss. */
static uint64_t cache_get(gw_cred_cache *c, const char *email, const char *pw, int64_t now_ms)
{
    gw_principal p = {0};
    return gw_cred_cache_get(c, email, strlen(email), pw, strlen(pw), now_ms, &p) ? p.user_id : 0;
}

Test(cred_cache, a_put_pair_hits_until_its_ttl_has_passed)
{
    gw_cred_cache *c = cache_open(64, 1000);
    cr_assert_eq(cache_get(c, "a@x.org", "password", 0), 0u, "empty");
    gw_principal p = principal(77, GW_ROLE_ORGANIZER);
    gw_cred_cache_put(c, "a@x.org", 7, "password", 8, 5000, &p);
    gw_principal got = {0};
    cr_assert(gw_cred_cache_get(c, "a@x.org", 7, "password", 8, 5000, &got));
    cr_assert_eq(got.user_id, 77u);
    cr_assert_eq(got.role, GW_ROLE_ORGANIZER);
    cr_assert_eq(cache_get(c, "a@x.org", "password", 5999), 77u);
    cr_assert_eq(cache_get(c, "a@x.org", "password", 6000), 0u, "expired");
    gw_cred_cache_close(c);
}

Test(cred_cache, a_different_password_or_email_misses)
{
    gw_cred_cache *c = cache_open(64, 1000);
    cache_put(c, "a@x.org", "password", 0, 1);
    cr_assert_eq(cache_get(c, "a@x.org", "passwore", 1), 0u);
    cr_assert_eq(cache_get(c, "a@x.org", "password ", 1), 0u);
    cr_assert_eq(cache_get(c, "b@x.org", "password", 1), 0u);
    cr_assert_eq(cache_get(c, "A@x.org", "password", 1), 0u);
    cache_put(c, "ab", "cdefghij", 0, 2);
    cr_assert_eq(cache_get(c, "abc", "defghij", 1), 0u, "the separator keeps the pair apart");
    cr_assert_eq(cache_get(c, "ab", "cdefghij", 1), 2u);
    gw_cred_cache_close(c);
}

Test(cred_cache, a_full_set_replaces_its_oldest_entry)
{
    /* GW_CRED_CACHE_WAYS entries are one set: every pair competes for it. */
    gw_cred_cache *c = cache_open(GW_CRED_CACHE_WAYS, 10000);
    char email[32];
    for (unsigned i = 0; i < GW_CRED_CACHE_WAYS; i++) {
        snprintf(email, sizeof(email), "user%u@x.org", i);
        cache_put(c, email, "password", 100 + i, i + 1);
    }
    for (unsigned i = 0; i < GW_CRED_CACHE_WAYS; i++) {
        snprintf(email, sizeof(email), "user%u@x.org", i);
        cr_assert_eq(cache_get(c, email, "password", 200), i + 1);
    }
    cache_put(c, "new@x.org", "password", 300, 99);
    cr_assert_eq(cache_get(c, "new@x.org", "password", 301), 99u);
    cr_assert_eq(cache_get(c, "user0@x.org", "password", 301), 0u, "the oldest went");
    for (unsigned i = 1; i < GW_CRED_CACHE_WAYS; i++) {
        snprintf(email, sizeof(email), "user%u@x.org", i);
        cr_assert_eq(cache_get(c, email, "password", 301), i + 1);
    }
    gw_cred_cache_close(c);
}

Test(cred_cache, putting_a_pair_again_updates_its_own_entry)
{
    gw_cred_cache *c = cache_open(GW_CRED_CACHE_WAYS, 1000);
    for (int i = 0; i < 10; i++) {
        cache_put(c, "a@x", "password", i, (uint64_t)i + 1);
    }
    /* Fill the rest of the set: none of them may push "a@x" out. */
    char email[32];
    for (unsigned i = 1; i < GW_CRED_CACHE_WAYS; i++) {
        snprintf(email, sizeof(email), "user%u@x.org", i);
        cache_put(c, email, "password", 10 + i, 100 + i);
    }
    cr_assert_eq(cache_get(c, "a@x", "password", 1008), 10u, "the last put, refreshed");
    for (unsigned i = 1; i < GW_CRED_CACHE_WAYS; i++) {
        snprintf(email, sizeof(email), "user%u@x.org", i);
        cr_assert_eq(cache_get(c, email, "password", 20), 100u + i);
    }
    gw_cred_cache_close(c);
}

Test(cred_cache, clear_forgets_every_pair)
{
    gw_cred_cache *c = cache_open(64, 1000);
    cache_put(c, "a@x", "password", 0, 1);
    gw_cred_cache_clear(c);
    cr_assert_eq(cache_get(c, "a@x", "password", 1), 0u);
    gw_cred_cache_close(c);
}

Test(cred_cache, a_ttl_of_zero_never_hits)
{
    gw_cred_cache *c = cache_open(64, 0);
    cache_put(c, "a@x", "password", 0, 1);
    cr_assert_eq(cache_get(c, "a@x", "password", 0), 0u);
    gw_cred_cache_close(c);
    gw_cred_cache_close(NULL);
}

Test(cred_cache, open_rejects_zero_or_too_many_entries)
{
    gw_cred_cache *c = (gw_cred_cache *)&c;
    cr_assert_eq(gw_cred_cache_open(0, 1000, &c), TG_EINVAL);
    cr_assert_null(c);
    cr_assert_eq(gw_cred_cache_open(GW_CRED_CACHE_ENTRIES_MAX + 1, 1000, &c), TG_EINVAL);
    cr_assert_eq(gw_cred_cache_open(GW_CRED_CACHE_ENTRIES_MAX, 1000, &c), TG_OK);
    gw_cred_cache_close(c);
}

Test(cred_cache, a_large_cache_keeps_most_pairs)
{
    gw_cred_cache *c = cache_open(2048, 60000);
    unsigned hits = 0;
    for (unsigned i = 1; i <= 1000; i++) {
        char email[32];
        snprintf(email, sizeof(email), "user%u@x.org", i);
        cache_put(c, email, "password", 0, i);
    }
    for (unsigned i = 1; i <= 1000; i++) {
        char email[32];
        snprintf(email, sizeof(email), "user%u@x.org", i);
        uint64_t id = cache_get(c, email, "password", 1);
        cr_assert(id == 0 || id == i, "%s gave user %" PRIu64, email, id);
        hits += id == i;
    }
    /* 1000 pairs in 256 sets of 8 lose a few to overfull sets (about 7 on
     * average; the hash key is random, so the count varies run to run). */
    cr_assert_geq(hits, 960u, "%u of 1000 hit", hits);
    gw_cred_cache_close(c);
}

#define CACHE_THREADS 4

static void *cache_hammer(void *arg)
{
    gw_cred_cache *c = arg;
    uint64_t seed = (uint64_t)(uintptr_t)&c | 1;
    for (int i = 0; i < 20000; i++) {
        unsigned u = (unsigned)(rng_next(&seed) % 256) + 1;
        char email[32];
        snprintf(email, sizeof(email), "user%u@x.org", u);
        if (rng_next(&seed) % 2 == 0) {
            cache_put(c, email, "password", i, u);
        } else {
            uint64_t id = cache_get(c, email, "password", i);
            if (id != 0 && id != u) {
                return (void *)1;
            }
        }
    }
    return NULL;
}

Test(cred_cache, threads_sharing_the_cache_only_see_their_own_pairs)
{
    gw_cred_cache *c = cache_open(64, 1000);
    pthread_t th[CACHE_THREADS];
    for (int i = 0; i < CACHE_THREADS; i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, cache_hammer, c), 0);
    }
    for (int i = 0; i < CACHE_THREADS; i++) {
        void *rv = NULL;
        pthread_join(th[i], &rv);
        cr_assert_null(rv, "a pair gave another user");
    }
    gw_cred_cache_close(c);
}

/* ---- the rate limiter --------------------------------------------------------- */

static gw_ratelimit *limiter_open(uint32_t entries, uint32_t rate_per_s, uint32_t burst)
{
    gw_ratelimit *l = NULL;
    cr_assert_eq(gw_ratelimit_open(entries, rate_per_s, burst, &l), TG_OK);
    cr_assert_not_null(l);
    return l;
}

static bool take(gw_ratelimit *l, const char *key, int64_t now_ms)
{
    uint32_t retry = 99;
    bool ok = gw_ratelimit_take(l, key, strlen(key), now_ms, &retry);
    cr_assert(ok ? retry == 0 : retry >= 1, "retry_after %u", retry);
    return ok;
}

Test(ratelimit, a_client_gets_its_burst_then_is_refused)
{
    gw_ratelimit *l = limiter_open(64, 1, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert(take(l, "10.0.0.1", 1000));
    }
    cr_assert_not(take(l, "10.0.0.1", 1000));
    cr_assert_not(take(l, "10.0.0.1", 1000));
    gw_ratelimit_close(l);
}

Test(ratelimit, tokens_come_back_at_the_rate_up_to_the_burst)
{
    gw_ratelimit *l = limiter_open(64, 10, 5);
    for (int i = 0; i < 5; i++) {
        cr_assert(take(l, "::1", 0));
    }
    cr_assert_not(take(l, "::1", 0));
    cr_assert_not(take(l, "::1", 99), "a tenth of a second less a millisecond");
    cr_assert(take(l, "::1", 100), "one token after 100 ms");
    cr_assert_not(take(l, "::1", 100));
    for (int i = 0; i < 5; i++) {
        cr_assert(take(l, "::1", 60000), "full again, never more than the burst");
    }
    cr_assert_not(take(l, "::1", 60000));
    gw_ratelimit_close(l);
}

Test(ratelimit, retry_after_is_the_whole_seconds_until_the_next_token)
{
    gw_ratelimit *l = limiter_open(64, 1, 1);
    uint32_t retry = 0;
    cr_assert(gw_ratelimit_take(l, "a", 1, 0, &retry));
    cr_assert_eq(retry, 0u);
    cr_assert_not(gw_ratelimit_take(l, "a", 1, 0, &retry));
    cr_assert_eq(retry, 1u);
    cr_assert_not(gw_ratelimit_take(l, "a", 1, 999, &retry));
    cr_assert_eq(retry, 1u, "1 ms rounds up to a second");
    cr_assert(gw_ratelimit_take(l, "a", 1, 1000, NULL), "retry_after may be NULL");
    gw_ratelimit_close(l);
}

Test(ratelimit, clients_have_separate_buckets)
{
    gw_ratelimit *l = limiter_open(64, 1, 2);
    cr_assert(take(l, "10.0.0.1", 0));
    cr_assert(take(l, "10.0.0.1", 0));
    cr_assert_not(take(l, "10.0.0.1", 0));
    cr_assert(take(l, "10.0.0.2", 0));
    cr_assert(take(l, "10.0.0.10", 0));
    gw_ratelimit_close(l);
}

Test(ratelimit, a_rate_of_zero_allows_everything)
{
    gw_ratelimit *l = limiter_open(0, 0, 0);
    for (int i = 0; i < 1000; i++) {
        cr_assert(take(l, "10.0.0.1", 0));
    }
    gw_ratelimit_close(l);
    gw_ratelimit_close(NULL);
}

Test(ratelimit, a_clock_stepping_back_refills_nothing)
{
    gw_ratelimit *l = limiter_open(64, 1, 1);
    cr_assert(take(l, "a", 10000));
    cr_assert_not(take(l, "a", 5000));
    cr_assert_not(take(l, "a", 10999));
    cr_assert(take(l, "a", 11000));
    gw_ratelimit_close(l);
}

Test(ratelimit, open_rejects_bad_sizes)
{
    gw_ratelimit *l = (gw_ratelimit *)&l;
    cr_assert_eq(gw_ratelimit_open(0, 1, 1, &l), TG_EINVAL);
    cr_assert_null(l);
    cr_assert_eq(gw_ratelimit_open(64, 1, 0, &l), TG_EINVAL);
    cr_assert_eq(gw_ratelimit_open(GW_RATELIMIT_ENTRIES_MAX + 1, 1, 1, &l), TG_EINVAL);
    cr_assert_eq(gw_ratelimit_open(64, GW_RATELIMIT_RATE_PER_S_MAX + 1, 1, &l), TG_EINVAL);
    cr_assert_eq(gw_ratelimit_open(64, 1, GW_RATELIMIT_BURST_MAX + 1, &l), TG_EINVAL);
    cr_assert_eq(gw_ratelimit_open(64, GW_RATELIMIT_RATE_PER_S_MAX, GW_RATELIMIT_BURST_MAX, &l),
                 TG_OK);
    cr_assert(take(l, "a", INT64_MAX / 2));
    gw_ratelimit_close(l);
}

Test(ratelimit, a_full_table_makes_room_by_forgetting_the_least_recently_used)
{
    /* GW_RATELIMIT_WAYS entries are one set: every key competes for it. */
    gw_ratelimit *l = limiter_open(GW_RATELIMIT_WAYS, 1, 1);
    char key[16];
    for (unsigned i = 0; i < GW_RATELIMIT_WAYS; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        cr_assert(take(l, key, i));
    }
    cr_assert(take(l, "new", 50), "room is made");
    cr_assert_not(take(l, "k1", 60), "k1 is still remembered");
    cr_assert(take(l, "k0", 70), "k0, the least recently used, was forgotten");
    gw_ratelimit_close(l);
}

Test(ratelimit, a_new_key_replaces_a_refilled_bucket_before_a_busy_one)
{
    gw_ratelimit *l = limiter_open(GW_RATELIMIT_WAYS, 1, 2);
    char key[16];
    for (unsigned i = 1; i < GW_RATELIMIT_WAYS; i++) {
        snprintf(key, sizeof(key), "busy%u", i);
        cr_assert(take(l, key, 0));
        cr_assert(take(l, key, 0));
    }
    cr_assert(take(l, "idle", 100));
    /* At 1100 ms "idle" is full again; the busy keys, though used less
     * recently, have 1.1 tokens each. */
    cr_assert(take(l, "new", 1100));
    for (unsigned i = 1; i < GW_RATELIMIT_WAYS; i++) {
        snprintf(key, sizeof(key), "busy%u", i);
        cr_assert(take(l, key, 1100), "%s", key);
        cr_assert_not(take(l, key, 1100), "%s kept its bucket", key);
    }
    gw_ratelimit_close(l);
}

#define LIMIT_THREADS 8

typedef struct {
    gw_ratelimit *l;
    pthread_barrier_t *start;
    unsigned allowed;
} limit_racer;

static void *limit_racer_main(void *arg)
{
    limit_racer *r = arg;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < 100; i++) {
        r->allowed += gw_ratelimit_take(r->l, "10.0.0.1", 8, 0, NULL);
    }
    return NULL;
}

Test(ratelimit, threads_racing_on_one_key_share_exactly_one_burst)
{
    gw_ratelimit *l = limiter_open(1024, 1, 50);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, LIMIT_THREADS);
    limit_racer rs[LIMIT_THREADS];
    pthread_t th[LIMIT_THREADS];
    for (int i = 0; i < LIMIT_THREADS; i++) {
        rs[i] = (limit_racer){.l = l, .start = &start};
        cr_assert_eq(pthread_create(&th[i], NULL, limit_racer_main, &rs[i]), 0);
    }
    unsigned allowed = 0;
    for (int i = 0; i < LIMIT_THREADS; i++) {
        pthread_join(th[i], NULL);
        allowed += rs[i].allowed;
    }
    pthread_barrier_destroy(&start);
    cr_assert_eq(allowed, 50u);
    gw_ratelimit_close(l);
}

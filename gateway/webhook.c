/*
 * webhook.c — the pure checks of what a payment provider sends: the
 * webhook's signature and the shape of a payment id.  Kept apart from the
 * handlers so that the unit tests reach them without a running gateway.
 */
#include <string.h>

#include <sodium.h>

#include "provider.h"

bool gw_payment_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= GW_PAYMENT_ID_BYTES) {
        return false;
    }
    return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

bool gw_webhook_signed(const char *secret, const void *body, size_t len, const char *sig,
                       size_t sig_len)
{
    if (sig_len >= 7 && strncmp(sig, "sha256=", 7) == 0) {
        sig += 7;
        sig_len -= 7;
    }
    unsigned char given[crypto_auth_hmacsha256_BYTES], want[crypto_auth_hmacsha256_BYTES];
    size_t given_len = 0;
    if (sig_len != 2 * sizeof(given) ||
        sodium_hex2bin(given, sizeof(given), sig, sig_len, NULL, &given_len, NULL) != 0 ||
        given_len != sizeof(given)) {
        return false;
    }
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&state, body, len);
    crypto_auth_hmacsha256_final(&state, want);
    return sodium_memcmp(given, want, sizeof(want)) == 0;
}

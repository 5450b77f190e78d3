/* Standard Webhooks signature check and signing (OpenSSL HMAC-SHA256). */
#include "referee/signature.h"
#include "referee/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define B64_LEN 44 /* base64 of a 32-byte digest */

/* Fetching the algorithm is a locked lookup; do it once per process. */
static EVP_MAC *hmac_alg;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static pthread_key_t keyed_slot;

#define CACHED_KEY_MAX 64

/* Each thread keeps one context with its key already set, because setting
 * a key (a digest fetch by name and two hashed pads) costs more than
 * hashing a whole webhook; a source's requests all use the same key. The
 * key is kept to tell a change; freed when the thread ends. */
struct keyed_ctx {
    EVP_MAC_CTX *ctx;
    size_t keylen;
    unsigned char key[CACHED_KEY_MAX];
};

static void free_keyed(void *p)
{
    struct keyed_ctx *k = p;

    EVP_MAC_CTX_free(k->ctx);
    OPENSSL_cleanse(k->key, sizeof(k->key));
    free(k);
}

static void fetch_hmac(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (pthread_key_create(&keyed_slot, free_keyed) != 0) {
        EVP_MAC_free(hmac_alg);
        hmac_alg = NULL;
    }
}

/* A context ready for a message under key: the thread's cached one reset
 * (EVP_MAC_init without a key keeps the key), or a new one when the key
 * differs or is too long to keep. *owned says the caller frees it. */
static EVP_MAC_CTX *keyed(const unsigned char *key, size_t keylen,
                          int *owned)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
        OSSL_PARAM_construct_end()};
    struct keyed_ctx *k = pthread_getspecific(keyed_slot);
    EVP_MAC_CTX *ctx;

    *owned = 0;
    if (k != NULL && k->keylen == keylen &&
        CRYPTO_memcmp(k->key, key, keylen) == 0 &&
        EVP_MAC_init(k->ctx, NULL, 0, NULL)) {
        return k->ctx;
    }
    ctx = EVP_MAC_CTX_new(hmac_alg);
    if (ctx == NULL || !EVP_MAC_init(ctx, key, keylen, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    if (keylen > CACHED_KEY_MAX) {
        *owned = 1;
        return ctx;
    }
    if (k == NULL) {
        k = calloc(1, sizeof(*k));
        if (k == NULL || pthread_setspecific(keyed_slot, k) != 0) {
            free(k);
            *owned = 1;
            return ctx;
        }
    }
    EVP_MAC_CTX_free(k->ctx);
    k->ctx = ctx;
    k->keylen = keylen;
    memcpy(k->key, key, keylen);
    return ctx;
}

/* Computes base64(HMAC-SHA256(key, id "." ts "." body)) into out. */
static int compute(const unsigned char *key, size_t keylen, const char *id,
                   const char *ts, const void *body, size_t len,
                   char out[B64_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    EVP_MAC_CTX *ctx = NULL;
    int owned = 0, rc = RF_EINVAL;

    pthread_once(&hmac_once, fetch_hmac);
    if (hmac_alg != NULL) {
        ctx = keyed(key, keylen, &owned);
    }
    if (ctx == NULL ||
        !EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, body, len) ||
        !EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) || maclen != 32) {
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)out, mac, 32);
    rc = 0;
out:
    if (owned) {
        EVP_MAC_CTX_free(ctx);
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

int rf_signature_sign(const unsigned char *key, size_t keylen,
                      const char *id, const char *ts, const void *body,
                      size_t len, char out[RF_SIG_MAX])
{
    char b64[B64_LEN + 1];
    int rc = compute(key, keylen, id, ts, body, len, b64);

    if (rc == 0) {
        memcpy(out, "v1,", 3);
        memcpy(out + 3, b64, B64_LEN + 1);
    }
    return rc;
}

static int parse_ts(const char *ts, int64_t *out)
{
    char *end;
    long long v;

    if (*ts < '0' || *ts > '9') {
        return -1;
    }
    errno = 0;
    v = strtoll(ts, &end, 10);
    if (errno != 0 || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

/* Whether any "v1,<b64>" in the space-separated list equals want. Every
 * candidate of the right length is compared in constant time. */
static int any_matches(const char *sigs, const char *want)
{
    int found = 0;

    while (*sigs) {
        size_t n;

        sigs += strspn(sigs, " ");
        n = strcspn(sigs, " ");
        if (n == 3 + B64_LEN && memcmp(sigs, "v1,", 3) == 0) {
            found |= CRYPTO_memcmp(sigs + 3, want, B64_LEN) == 0;
        }
        sigs += n;
    }
    return found;
}

int rf_signature_verify(const unsigned char *key, size_t keylen,
                        const char *id, const char *ts, const char *sigs,
                        const void *body, size_t len, int64_t now,
                        unsigned tolerance_s)
{
    char want[B64_LEN + 1];
    int64_t t;

    if (id == NULL || ts == NULL || sigs == NULL || *id == '\0') {
        return RF_SIG_MISSING;
    }
    if (parse_ts(ts, &t) != 0) {
        return RF_SIG_TIMESTAMP_INVALID;
    }
    if (t < now - (int64_t)tolerance_s || t > now + (int64_t)tolerance_s) {
        return RF_SIG_TIMESTAMP_EXPIRED;
    }
    if (compute(key, keylen, id, ts, body, len, want) != 0) {
        return RF_SIG_MISMATCH;
    }
    return any_matches(sigs, want) ? RF_SIG_OK : RF_SIG_MISMATCH;
}

const char *rf_signature_code(int result)
{
    switch (result) {
    case RF_SIG_MISSING:
        return "signature_missing";
    case RF_SIG_TIMESTAMP_INVALID:
        return "signature_timestamp_invalid";
    case RF_SIG_TIMESTAMP_EXPIRED:
        return "signature_timestamp_expired";
    case RF_SIG_MISMATCH:
        return "signature_mismatch";
    default:
        return "ok";
    }
}

const char *rf_signature_message(int result)
{
    switch (result) {
    case RF_SIG_MISSING:
        return "webhook-id, webhook-timestamp and webhook-signature "
               "headers are required";
    case RF_SIG_TIMESTAMP_INVALID:
        return "webhook-timestamp must be Unix seconds";
    case RF_SIG_TIMESTAMP_EXPIRED:
        return "webhook-timestamp is outside the allowed window";
    case RF_SIG_MISMATCH:
        return "no webhook-signature matches the body";
    default:
        return "ok";
    }
}

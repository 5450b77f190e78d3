/* Standard Webhooks signatures: HMAC-SHA256 over "id.timestamp.body",
 * base64, "v1," prefix; several space-separated signatures allowed so that
 * a sender can rotate secrets. Comparison is constant-time.
 */
#ifndef REFEREE_SIGNATURE_H
#define REFEREE_SIGNATURE_H

#include <stddef.h>
#include <stdint.h>

enum rf_sig_result {
    RF_SIG_OK = 0,
    RF_SIG_MISSING = -1,           /* a webhook-* header is absent */
    RF_SIG_TIMESTAMP_INVALID = -2, /* webhook-timestamp is not an integer */
    RF_SIG_TIMESTAMP_EXPIRED = -3, /* outside the tolerance, either way */
    RF_SIG_MISMATCH = -4           /* no v1 signature matches */
};

/* The length of "v1," plus base64 of 32 bytes, plus NUL. */
#define RF_SIG_MAX 48

/* Checks a delivery. `id`, `ts` and `sigs` are the three header values and
 * may be NULL (then RF_SIG_MISSING). `now` is Unix seconds. Returns one of
 * enum rf_sig_result. Any thread. */
int rf_signature_verify(const unsigned char *key, size_t keylen,
                        const char *id, const char *ts, const char *sigs,
                        const void *body, size_t len, int64_t now,
                        unsigned tolerance_s);

/* Writes "v1,<base64>" for the delivery into out (RF_SIG_MAX bytes).
 * Returns 0 or RF_EINVAL. Any thread. */
int rf_signature_sign(const unsigned char *key, size_t keylen,
                      const char *id, const char *ts, const void *body,
                      size_t len, char out[RF_SIG_MAX]);

/* The stable error code for an HTTP answer ("signature_mismatch", ...). */
const char *rf_signature_code(int result);

/* A sentence for a failed result. */
const char *rf_signature_message(int result);

#endif

/* Webhook signing secrets in tenant settings: "whsec_" + base64 (the
 * Standard Webhooks form) or any other non-empty string, taken as bytes. */
#include "referee/error.h"
#include "referee/reader.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "internal.h"

int rf__tenant_secret(struct rf_reader *r, const char *path, const char *s,
                      unsigned char **out, size_t *len)
{
    size_t n = strlen(s), b64;
    int got;

    if (n == 0) {
        return rf_reader_fail(r, path, "must not be empty");
    }
    if (strncmp(s, "whsec_", 6) != 0) {
        *out = (unsigned char *)strdup(s);
        *len = n;
        return *out ? 0 : RF_ENOMEM;
    }
    b64 = n - 6;
    *out = malloc(b64 / 4 * 3 + 3);
    got = *out ? EVP_DecodeBlock(*out, (const unsigned char *)s + 6,
                                 (int)b64)
               : -1;
    if (got <= 0 || b64 % 4 != 0) {
        return rf_reader_fail(r, path, "whsec_ secret is not base64");
    }
    /* EVP_DecodeBlock counts padding bytes as data; drop them. */
    got -= (s[n - 1] == '=') + (s[n - 2] == '=');
    *len = (size_t)got;
    return 0;
}

/* crypto.hmac_sha256, crypto.sha256 and crypto.random_token for scripts,
 * on OpenSSL. */
#include "referee/script_api.h"

#include <string.h>

#include <lauxlib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define TOKEN_BYTES_MAX 256

/* Pushes bytes encoded as asked: "hex" (default), "base64", "base64url"
 * (no padding) or "raw". */
static int push_encoded(lua_State *L, const unsigned char *b, size_t n,
                        const char *enc)
{
    static const char hex[] = "0123456789abcdef";
    char out[2 * TOKEN_BYTES_MAX + 8];

    if (strcmp(enc, "raw") == 0) {
        lua_pushlstring(L, (const char *)b, n);
    } else if (strcmp(enc, "hex") == 0) {
        for (size_t i = 0; i < n; i++) {
            out[2 * i] = hex[b[i] >> 4];
            out[2 * i + 1] = hex[b[i] & 15];
        }
        lua_pushlstring(L, out, 2 * n);
    } else if (strcmp(enc, "base64") == 0 || strcmp(enc, "base64url") == 0) {
        int len = EVP_EncodeBlock((unsigned char *)out, b, (int)n);

        if (enc[6] == 'u') {
            for (int i = 0; i < len; i++) {
                out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
            }
            while (len > 0 && out[len - 1] == '=') {
                len--;
            }
        }
        lua_pushlstring(L, out, (size_t)len);
    } else {
        return luaL_error(L, "unknown encoding '%s' (hex, base64, "
                             "base64url or raw)",
                          enc);
    }
    return 1;
}

static int l_hmac_sha256(lua_State *L)
{
    size_t klen, dlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *data = luaL_checklstring(L, 2, &dlen);
    const char *enc = luaL_optstring(L, 3, "hex");
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)data, dlen,
             mac, &maclen) == NULL) {
        return luaL_error(L, "crypto.hmac_sha256 failed");
    }
    return push_encoded(L, mac, maclen, enc);
}

static int l_sha256(lua_State *L)
{
    size_t dlen;
    const char *data = luaL_checklstring(L, 1, &dlen);
    const char *enc = luaL_optstring(L, 2, "hex");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(data, dlen, md, &mdlen, EVP_sha256(), NULL)) {
        return luaL_error(L, "crypto.sha256 failed");
    }
    return push_encoded(L, md, mdlen, enc);
}

static int l_random_token(lua_State *L)
{
    lua_Integer n = luaL_optinteger(L, 1, 16);
    unsigned char buf[TOKEN_BYTES_MAX];

    luaL_argcheck(L, n >= 1 && n <= TOKEN_BYTES_MAX, 1,
                  "between 1 and 256 bytes");
    if (RAND_bytes(buf, (int)n) != 1) {
        return luaL_error(L, "crypto.random_token: no randomness");
    }
    return push_encoded(L, buf, (size_t)n, luaL_optstring(L, 2, "base64url"));
}

int rf_api_open_crypto(lua_State *L)
{
    static const luaL_Reg fns[] = {{"hmac_sha256", l_hmac_sha256},
                                   {"sha256", l_sha256},
                                   {"random_token", l_random_token},
                                   {NULL, NULL}};

    luaL_newlib(L, fns);
    return 1;
}

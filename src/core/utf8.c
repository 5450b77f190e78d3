/* Strict UTF-8 checking and repair. */
#include "referee/utf8.h"

#include <string.h>

/* Length of the well-formed sequence at s (at most n bytes), or 0. */
static size_t seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;

    if (c == 0) {
        return 0;
    }
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        return 0; /* C0, C1, F5..FF, or a lone continuation byte */
    }
    if (len > n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return len;
}

size_t rf_utf8_seq_len(const char *s, size_t n)
{
    return n > 0 ? seq_len((const unsigned char *)s, n) : 0;
}

int rf_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        size_t len = seq_len(p + i, n - i);

        if (len == 0) {
            return 0;
        }
        i += len;
    }
    return 1;
}

size_t rf_utf8_sanitize(const char *s, size_t n, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;

    if (outlen == 0) {
        return 0;
    }
    while (i < n) {
        size_t len = seq_len(p + i, n - i);
        const char *src = len ? (const char *)p + i : "\xEF\xBF\xBD";
        size_t w = len ? len : 3;

        if (o + w + 1 > outlen) {
            break;
        }
        memcpy(out + o, src, w);
        o += w;
        i += len ? len : 1;
    }
    out[o] = '\0';
    return o;
}

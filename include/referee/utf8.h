/* Strict UTF-8: what JSON output may carry. */
#ifndef REFEREE_UTF8_H
#define REFEREE_UTF8_H

#include <stddef.h>

/* Whether s[0..n) is well-formed UTF-8 (RFC 3629): no overlong forms, no
 * surrogates, nothing above U+10FFFF, and no NUL bytes. */
int rf_utf8_valid(const char *s, size_t n);

/* Length of the well-formed UTF-8 sequence starting at s (looking at most
 * n bytes), or 0 when none starts there (a NUL byte included). */
size_t rf_utf8_seq_len(const char *s, size_t n);

/* Copies s[0..n) into out (NUL-terminated, at most outlen bytes including
 * the NUL), replacing each byte that does not start a well-formed sequence
 * with U+FFFD. Returns the bytes written, without the NUL. */
size_t rf_utf8_sanitize(const char *s, size_t n, char *out, size_t outlen);

#endif

/* Strict JSON checking: whether bytes are exactly one RFC 8259 JSON value
 * in strict UTF-8, nested no deeper than a limit. Intake runs it on every
 * body of a format = "json" source before any parser sees the body, since
 * cJSON accepts more than the RFC (invalid UTF-8, raw control characters,
 * leading zeros).
 *
 * What it refuses: a byte-order mark; anything but one value with only
 * space, tab, CR and LF around it; malformed literals and numbers
 * (leading zeros, "1.", ".5", "+1", "0x1"); in strings, raw bytes below
 * 0x20, unknown escapes, \u escapes that are not four hex digits or leave a
 * surrogate unpaired, and bytes that are not well-formed UTF-8 (overlong
 * forms, encoded surrogates, above U+10FFFF, stray continuation bytes);
 * arrays and objects nested deeper than the limit.
 *
 * Caveats: numbers are checked for form, not range (1e999 passes).
 */
#ifndef REFEREE_JSON_CHECK_H
#define REFEREE_JSON_CHECK_H

#include <stddef.h>

/* The deepest nesting rf_json_check() looks at; larger limits are
 * lowered to it, so that the check's recursion stays bounded. */
#define RF_JSON_CHECK_DEPTH_LIMIT 1000

/* Where and why a check failed. `reason` is a static string. */
struct rf_json_problem {
    size_t offset;      /* byte offset of the first bad byte */
    const char *reason; /* "invalid UTF-8 in a string", ... */
};

/* Checks that s[0..len) is one strict JSON value whose arrays and objects
 * nest at most `depth_max` levels (the outermost is level 1). Returns 0,
 * RF_EPARSE (not strict JSON) or RF_ELIMIT (nested deeper), filling *p
 * when it is not NULL. Reads nothing past len; NUL bytes are refused like
 * any control character. Any thread. */
int rf_json_check(const char *s, size_t len, unsigned depth_max,
                  struct rf_json_problem *p);

/* rf_json_check(), refusing also \u0000 escapes: for bodies whose strings
 * are read into C strings (cJSON's), where a zero character would cut
 * them silently. */
int rf_json_check_text(const char *s, size_t len, unsigned depth_max,
                       struct rf_json_problem *p);

#endif

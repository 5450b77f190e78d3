/* Text forms Zoho CRM reads and writes: date-times with UTC offsets,
 * search criteria with their escapes, and URL encoding.
 *
 * Pure functions without state; any thread may call them.
 *
 * Caveats: criteria are a flat list joined by one operator (all `and` or
 * all `or`); nested groups need two searches or COQL. Zoho accepts at most
 * 10 conditions per search, and so does rf_zoho_criteria().
 */
#ifndef REFEREE_ZOHO_TEXT_H
#define REFEREE_ZOHO_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Bytes for a formatted date-time, "2027-01-31T23:59:59+05:30" and NUL. */
#define RF_ZOHO_TIME_LEN 26

/* Conditions per search. */
#define RF_ZOHO_CRITERIA_MAX 10

/* Parses a date-time as Zoho writes it, "YYYY-MM-DDTHH:MM:SS+HH:MM", into
 * UTC seconds since the epoch. Also accepts "Z" or "+HHMM" for the offset
 * and drops fractional seconds. Years 1 to 9999. Returns 0 or RF_EPARSE
 * (then *out is untouched). */
int rf_zoho_time_parse(const char *s, int64_t *out);

/* Writes UTC seconds `t` as local time at `offset_min` minutes east of UTC
 * in the form Zoho accepts: "YYYY-MM-DDTHH:MM:SS+HH:MM", no fractions.
 * `out` holds at least RF_ZOHO_TIME_LEN bytes. Returns 0, or RF_EINVAL
 * (year outside 1..9999, offset beyond +-23:59, short buffer). */
int rf_zoho_time_format(int64_t t, int offset_min, char *out, size_t len);

/* Percent-encodes `s` for a query string: letters, digits and "-._~" stay,
 * every other byte becomes %XX (so "+" is %2B and " " is %20). Returns 0 or
 * RF_ETOOBIG when `out` (with its NUL) is too small. */
int rf_zoho_url_encode(const char *s, char *out, size_t len);

/* One search condition: `field` is an API name, `op` a Zoho operator
 * (equals, not_equal, starts_with, in, greater_than, greater_equal,
 * less_than, less_equal, between), `values` the operands (several for in,
 * between and multi-value equals). Values are escaped here. */
struct rf_zoho_cond {
    const char *field;
    const char *op;
    const char *const *values;
    size_t nvalues;
};

/* Builds criteria text such as "((Last_Name:equals:Burns\,B)and(...))":
 * backslash escapes "(", ")", "," and "\" inside values, values of one
 * condition are joined by an unescaped ",". `or_join` joins conditions
 * with "or" instead of "and". The result is not URL-encoded (the search
 * call does that). Returns 0, RF_EINVAL (no conditions, more than
 * RF_ZOHO_CRITERIA_MAX, a field or operator that is not a plain name, a
 * condition without values) or RF_ETOOBIG (`out` too small). */
int rf_zoho_criteria(const struct rf_zoho_cond *conds, size_t n, int or_join,
                     char *out, size_t len);

#endif

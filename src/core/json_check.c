/* Strict RFC 8259 JSON checking by recursive descent, bounded by the
 * nesting limit; no values are built. */
#include "referee/json_check.h"
#include "referee/error.h"
#include "referee/utf8.h"

#include <string.h>

struct scan {
    const char *s;
    size_t n, i;
    unsigned depth, depth_max;
    int rc;             /* RF_EPARSE or RF_ELIMIT once failed */
    const char *reason; /* why, once failed */
    int no_nul;         /* refuse \u0000 (the text goes into C strings) */
};

static int value(struct scan *sc);

/* Records the first failure at the current byte; returns -1. */
static int fail(struct scan *sc, int rc, const char *reason)
{
    sc->rc = rc;
    sc->reason = reason;
    return -1;
}

static int at_end(const struct scan *sc)
{
    return sc->i >= sc->n;
}

static unsigned char cur(const struct scan *sc)
{
    return (unsigned char)sc->s[sc->i];
}

static void skip_space(struct scan *sc)
{
    while (!at_end(sc) && strchr(" \t\r\n", cur(sc)) != NULL && cur(sc)) {
        sc->i++;
    }
}

static int literal(struct scan *sc, const char *word)
{
    size_t len = strlen(word);

    if (sc->n - sc->i < len || memcmp(sc->s + sc->i, word, len) != 0) {
        return fail(sc, RF_EPARSE, "not a JSON value");
    }
    sc->i += len;
    return 0;
}

/* One or more digits; returns how many. */
static size_t digits(struct scan *sc)
{
    size_t start = sc->i;

    while (!at_end(sc) && cur(sc) >= '0' && cur(sc) <= '9') {
        sc->i++;
    }
    return sc->i - start;
}

static int number(struct scan *sc)
{
    if (cur(sc) == '-') {
        sc->i++;
    }
    if (!at_end(sc) && cur(sc) == '0') {
        sc->i++;
        if (!at_end(sc) && cur(sc) >= '0' && cur(sc) <= '9') {
            return fail(sc, RF_EPARSE, "a number with a leading zero");
        }
    } else if (digits(sc) == 0) {
        return fail(sc, RF_EPARSE, "a malformed number");
    }
    if (!at_end(sc) && cur(sc) == '.') {
        sc->i++;
        if (digits(sc) == 0) {
            return fail(sc, RF_EPARSE, "a malformed number");
        }
    }
    if (!at_end(sc) && (cur(sc) == 'e' || cur(sc) == 'E')) {
        sc->i++;
        if (!at_end(sc) && (cur(sc) == '+' || cur(sc) == '-')) {
            sc->i++;
        }
        if (digits(sc) == 0) {
            return fail(sc, RF_EPARSE, "a malformed number");
        }
    }
    return 0;
}

/* Four hex digits after "\u"; returns the code unit or -1. */
static long hex4(struct scan *sc)
{
    long v = 0;

    if (sc->n - sc->i < 4) {
        return -1;
    }
    for (int k = 0; k < 4; k++) {
        unsigned char c = cur(sc);
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;

        if (d < 0) {
            return -1;
        }
        v = v * 16 + d;
        sc->i++;
    }
    return v;
}

/* "\uXXXX", with a high surrogate followed by a low one. At 'u'. */
static int unicode_escape(struct scan *sc)
{
    long unit, low;

    sc->i++;
    unit = hex4(sc);
    if (unit < 0) {
        return fail(sc, RF_EPARSE, "a \\u escape without four hex digits");
    }
    if (unit >= 0xDC00 && unit <= 0xDFFF) {
        return fail(sc, RF_EPARSE, "an unpaired surrogate escape");
    }
    if (unit == 0 && sc->no_nul) {
        sc->i -= 6; /* at the backslash */
        return fail(sc, RF_EPARSE, "a \\u0000 escape (text here cannot "
                                   "hold a zero character)");
    }
    if (unit < 0xD800 || unit > 0xDBFF) {
        return 0;
    }
    if (sc->n - sc->i < 2 || sc->s[sc->i] != '\\' || sc->s[sc->i + 1] != 'u') {
        return fail(sc, RF_EPARSE, "an unpaired surrogate escape");
    }
    sc->i += 2;
    low = hex4(sc);
    if (low < 0xDC00 || low > 0xDFFF) {
        return fail(sc, RF_EPARSE, "an unpaired surrogate escape");
    }
    return 0;
}

static int escape(struct scan *sc)
{
    sc->i++; /* the backslash */
    if (at_end(sc)) {
        return fail(sc, RF_EPARSE, "an unterminated string");
    }
    if (cur(sc) == 'u') {
        return unicode_escape(sc);
    }
    if (cur(sc) == 0 || strchr("\"\\/bfnrt", cur(sc)) == NULL) {
        return fail(sc, RF_EPARSE, "an unknown escape in a string");
    }
    sc->i++;
    return 0;
}

static int string(struct scan *sc)
{
    sc->i++; /* the opening quote */
    while (!at_end(sc)) {
        unsigned char c = cur(sc);
        size_t len;

        if (c == '"') {
            sc->i++;
            return 0;
        }
        if (c == '\\') {
            if (escape(sc) != 0) {
                return -1;
            }
            continue;
        }
        if (c < 0x20) {
            return fail(sc, RF_EPARSE, "a control character in a string");
        }
        len = rf_utf8_seq_len(sc->s + sc->i, sc->n - sc->i);
        if (len == 0) {
            return fail(sc, RF_EPARSE, "invalid UTF-8 in a string");
        }
        sc->i += len;
    }
    return fail(sc, RF_EPARSE, "an unterminated string");
}

/* Enters an array or object: one level deeper. */
static int enter(struct scan *sc)
{
    if (++sc->depth > sc->depth_max) {
        return fail(sc, RF_ELIMIT, "arrays and objects nested too deep");
    }
    sc->i++;
    skip_space(sc);
    return 0;
}

/* After an element: ',' and more, or the closing byte. Returns 1 for
 * more, 0 at the end, -1 on error. */
static int next_or_close(struct scan *sc, unsigned char close)
{
    skip_space(sc);
    if (!at_end(sc) && cur(sc) == ',') {
        sc->i++;
        skip_space(sc);
        return 1;
    }
    if (!at_end(sc) && cur(sc) == close) {
        sc->i++;
        sc->depth--;
        return 0;
    }
    return fail(sc, RF_EPARSE,
                close == ']' ? "expected ',' or ']'" : "expected ',' or '}'");
}

static int array(struct scan *sc)
{
    int more = 1;

    if (enter(sc) != 0) {
        return -1;
    }
    if (!at_end(sc) && cur(sc) == ']') {
        sc->i++;
        sc->depth--;
        return 0;
    }
    while (more > 0) {
        if (value(sc) != 0) {
            return -1;
        }
        more = next_or_close(sc, ']');
    }
    return more;
}

static int member(struct scan *sc)
{
    if (at_end(sc) || cur(sc) != '"') {
        return fail(sc, RF_EPARSE, "expected a string as an object key");
    }
    if (string(sc) != 0) {
        return -1;
    }
    skip_space(sc);
    if (at_end(sc) || cur(sc) != ':') {
        return fail(sc, RF_EPARSE, "expected ':' after an object key");
    }
    sc->i++;
    skip_space(sc);
    return value(sc);
}

static int object(struct scan *sc)
{
    int more = 1;

    if (enter(sc) != 0) {
        return -1;
    }
    if (!at_end(sc) && cur(sc) == '}') {
        sc->i++;
        sc->depth--;
        return 0;
    }
    while (more > 0) {
        if (member(sc) != 0) {
            return -1;
        }
        more = next_or_close(sc, '}');
    }
    return more;
}

static int value(struct scan *sc)
{
    if (at_end(sc)) {
        return fail(sc, RF_EPARSE, "expected a value");
    }
    switch (cur(sc)) {
    case '{':
        return object(sc);
    case '[':
        return array(sc);
    case '"':
        return string(sc);
    case 't':
        return literal(sc, "true");
    case 'f':
        return literal(sc, "false");
    case 'n':
        return literal(sc, "null");
    default:
        if (cur(sc) == '-' || (cur(sc) >= '0' && cur(sc) <= '9')) {
            return number(sc);
        }
        return fail(sc, RF_EPARSE, "not a JSON value");
    }
}

static int check(const char *s, size_t len, unsigned depth_max, int no_nul,
                 struct rf_json_problem *p)
{
    struct scan sc = {s, len, 0, 0, depth_max, 0, NULL, no_nul};

    if (sc.depth_max > RF_JSON_CHECK_DEPTH_LIMIT) {
        sc.depth_max = RF_JSON_CHECK_DEPTH_LIMIT;
    }
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        fail(&sc, RF_EPARSE, "a byte-order mark before the value");
    } else {
        skip_space(&sc);
        if (value(&sc) == 0) {
            skip_space(&sc);
            if (!at_end(&sc)) {
                fail(&sc, RF_EPARSE,
                     "more than one value, or bytes after "
                     "the value");
            }
        }
    }
    if (p != NULL) {
        p->offset = sc.i;
        p->reason = sc.reason ? sc.reason : "";
    }
    return sc.rc;
}

int rf_json_check(const char *s, size_t len, unsigned depth_max,
                  struct rf_json_problem *p)
{
    return check(s, len, depth_max, 0, p);
}

int rf_json_check_text(const char *s, size_t len, unsigned depth_max,
                       struct rf_json_problem *p)
{
    return check(s, len, depth_max, 1, p);
}

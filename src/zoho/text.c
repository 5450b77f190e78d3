/* Zoho's text forms: date-times with offsets to and from UTC seconds, query
 * string encoding, and search criteria with escaped values. */
#include "referee/error.h"
#include "referee/zoho_text.h"

#include <stdio.h>
#include <string.h>

#define SECS_PER_DAY 86400
#define TIME_MIN (-62135596800LL - SECS_PER_DAY) /* before 0001-01-01 */
#define TIME_MAX (253402300799LL + SECS_PER_DAY) /* after 9999-12-31 */

/* Days before each month in a common year. */
static const int month_start[12] = {0,   31,  59,  90,  120, 151,
                                    181, 212, 243, 273, 304, 334};

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Leap years in 1..y-1. */
static int64_t leaps_before(int64_t y)
{
    int64_t p = y - 1;

    return p / 4 - p / 100 + p / 400;
}

/* Days from 1970-01-01 to the given date (negative before it). */
static int64_t days_from_date(int64_t y, int m, int d)
{
    int64_t days = (y - 1970) * 365 + leaps_before(y) - leaps_before(1970);

    days += month_start[m - 1] + (m > 2 && is_leap(y));
    return days + d - 1;
}

static int month_days(int64_t y, int m)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return len[m - 1] + (m == 2 && is_leap(y));
}

/* Reads exactly n digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];

        if (c < '0' || c > '9') {
            return -1;
        }
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int expect(const char **p, char c)
{
    if (**p != c) {
        return -1;
    }
    (*p)++;
    return 0;
}

/* Reads "Z", "+HH:MM" or "+HHMM" (or '-') into seconds east of UTC. */
static int parse_offset(const char **p, int *secs)
{
    int sign, hh, mm;

    if (**p == 'Z') {
        (*p)++;
        *secs = 0;
        return 0;
    }
    if (**p != '+' && **p != '-') {
        return -1;
    }
    sign = **p == '-' ? -1 : 1;
    (*p)++;
    if (digits(p, 2, &hh) != 0) {
        return -1;
    }
    if (**p == ':') {
        (*p)++;
    }
    if (digits(p, 2, &mm) != 0 || hh > 23 || mm > 59) {
        return -1;
    }
    *secs = sign * (hh * 3600 + mm * 60);
    return 0;
}

int rf_zoho_time_parse(const char *s, int64_t *out)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, off;

    if (s == NULL || digits(&p, 4, &y) != 0 || expect(&p, '-') != 0 ||
        digits(&p, 2, &mo) != 0 || expect(&p, '-') != 0 ||
        digits(&p, 2, &d) != 0 || expect(&p, 'T') != 0 ||
        digits(&p, 2, &h) != 0 || expect(&p, ':') != 0 ||
        digits(&p, 2, &mi) != 0 || expect(&p, ':') != 0 ||
        digits(&p, 2, &sec) != 0) {
        return RF_EPARSE;
    }
    if (*p == '.') { /* fractions are dropped */
        p++;
        if (*p < '0' || *p > '9') {
            return RF_EPARSE;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (parse_offset(&p, &off) != 0 || *p != '\0') {
        return RF_EPARSE;
    }
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) ||
        h > 23 || mi > 59 || sec > 59) {
        return RF_EPARSE;
    }
    *out = days_from_date(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + sec -
           off;
    return 0;
}

/* Splits days since 1970-01-01 into a date. */
static void date_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    int64_t year = 1970 + days / 366; /* never past the real year */

    if (days < 0) {
        year = 1970 + days / 365 - 1;
    }
    while (days_from_date(year + 1, 1, 1) <= days) {
        year++;
    }
    while (days_from_date(year, 1, 1) > days) {
        year--;
    }
    days -= days_from_date(year, 1, 1);
    *m = 12;
    while (month_start[*m - 1] + (*m > 2 && is_leap(year)) > days) {
        (*m)--;
    }
    *d = (int)(days - month_start[*m - 1] - (*m > 2 && is_leap(year))) + 1;
    *y = year;
}

int rf_zoho_time_format(int64_t t, int offset_min, char *out, size_t len)
{
    int64_t local, days, rest, y;
    int m, d, off;

    if (len < RF_ZOHO_TIME_LEN || offset_min > 23 * 60 + 59 ||
        offset_min < -(23 * 60 + 59) || t < TIME_MIN || t > TIME_MAX) {
        return RF_EINVAL;
    }
    local = t + (int64_t)offset_min * 60;
    days = local / SECS_PER_DAY;
    rest = local % SECS_PER_DAY;
    if (rest < 0) { /* floor for times before 1970 */
        rest += SECS_PER_DAY;
        days--;
    }
    date_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999) {
        return RF_EINVAL;
    }
    off = offset_min < 0 ? -offset_min : offset_min;
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", (int)y, m, d,
             (int)(rest / 3600), (int)(rest / 60 % 60), (int)(rest % 60),
             offset_min < 0 ? '-' : '+', off / 60, off % 60);
    return 0;
}

int rf_zoho_url_encode(const char *s, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
                    *p == '_' || *p == '~';

        if (o + (plain ? 1 : 3) >= len) {
            return RF_ETOOBIG;
        }
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= len) {
        return RF_ETOOBIG;
    }
    out[o] = '\0';
    return 0;
}

/* A bounded string builder: fails once full instead of truncating. */
struct sb {
    char *buf;
    size_t len, cap;
    int full;
};

static void put(struct sb *b, const char *s, size_t n)
{
    if (b->full || b->len + n >= b->cap) {
        b->full = 1;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void puts_(struct sb *b, const char *s)
{
    put(b, s, strlen(s));
}

/* API names and operators: letters, digits, '_' and '$' (system fields
 * such as $converted); nothing that would need escaping. */
static int plain_name(const char *s)
{
    if (s == NULL || *s == '\0') {
        return 0;
    }
    for (; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              (*s >= '0' && *s <= '9') || *s == '_' || *s == '$')) {
            return 0;
        }
    }
    return 1;
}

static void put_value(struct sb *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '(' || *v == ')' || *v == ',' || *v == '\\') {
            put(b, "\\", 1);
        }
        put(b, v, 1);
    }
}

static int put_cond(struct sb *b, const struct rf_zoho_cond *c)
{
    if (!plain_name(c->field) || !plain_name(c->op) || c->nvalues == 0 ||
        c->values == NULL) {
        return RF_EINVAL;
    }
    put(b, "(", 1);
    puts_(b, c->field);
    put(b, ":", 1);
    puts_(b, c->op);
    put(b, ":", 1);
    for (size_t i = 0; i < c->nvalues; i++) {
        if (c->values[i] == NULL) {
            return RF_EINVAL;
        }
        if (i > 0) {
            put(b, ",", 1);
        }
        put_value(b, c->values[i]);
    }
    put(b, ")", 1);
    return 0;
}

int rf_zoho_criteria(const struct rf_zoho_cond *conds, size_t n, int or_join,
                     char *out, size_t len)
{
    struct sb b = {out, 0, len, 0};
    int rc;

    if (conds == NULL || n == 0 || n > RF_ZOHO_CRITERIA_MAX || len == 0) {
        return RF_EINVAL;
    }
    out[0] = '\0';
    if (n > 1) {
        put(&b, "(", 1);
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            puts_(&b, or_join ? "or" : "and");
        }
        rc = put_cond(&b, &conds[i]);
        if (rc != 0) {
            return rc;
        }
    }
    if (n > 1) {
        put(&b, ")", 1);
    }
    return b.full ? RF_ETOOBIG : 0;
}

/* Log lines in logfmt or JSON, one write(2) per line. */
#include "referee/log.h"
#include "referee/error.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum rf_log_level rf_log_current_level = RF_LOG_INFO;
static enum rf_log_format log_format = RF_LOG_LOGFMT;

static const char *const level_names[] = {"error", "warn", "info", "debug",
                                          "trace"};

struct line {
    char buf[2048];
    size_t len;
};

void rf_log_setup(enum rf_log_level level, enum rf_log_format format)
{
    rf_log_current_level = level;
    log_format = format;
}

const char *rf_log_level_name(enum rf_log_level level)
{
    return level_names[level];
}

int rf_log_level_parse(const char *s, enum rf_log_level *out)
{
    for (int i = 0; i <= RF_LOG_TRACE; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum rf_log_level)i;
            return 0;
        }
    }
    return RF_EINVAL;
}

int rf_log_format_parse(const char *s, enum rf_log_format *out)
{
    if (strcmp(s, "logfmt") == 0) {
        *out = RF_LOG_LOGFMT;
    } else if (strcmp(s, "json") == 0) {
        *out = RF_LOG_JSON;
    } else {
        return RF_EINVAL;
    }
    return 0;
}

static void put(struct line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep space for "\n" */

    if (n > room) {
        n = room;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void putc_(struct line *l, char c)
{
    put(l, &c, 1);
}

/* Writes a value quoted and escaped, truncated to RF_LOG_VALUE_MAX. */
static void put_value(struct line *l, const char *v, int json)
{
    size_t n = strlen(v);
    int quote = json || n == 0 || strpbrk(v, " =\"\\\t\n\r") != NULL;
    int cut = n > RF_LOG_VALUE_MAX;

    if (cut) {
        n = RF_LOG_VALUE_MAX;
    }
    if (quote) {
        putc_(l, '"');
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        char esc[8];

        if (c == '"' || c == '\\') {
            putc_(l, '\\');
            putc_(l, (char)c);
        } else if (c == '\n') {
            put(l, "\\n", 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(l, esc, strlen(esc));
        } else {
            putc_(l, (char)c);
        }
    }
    if (cut) {
        put(l, "...", 3);
    }
    if (quote) {
        putc_(l, '"');
    }
}

static void put_field(struct line *l, const char *k, const char *v)
{
    int json = log_format == RF_LOG_JSON;

    if (json) {
        put(l, l->len > 1 ? ",\"" : "\"", l->len > 1 ? 2 : 1);
        put(l, k, strlen(k));
        put(l, "\":", 2);
    } else {
        if (l->len > 0) {
            putc_(l, ' ');
        }
        put(l, k, strlen(k));
        putc_(l, '=');
    }
    put_value(l, v, json);
}

void rf_log_write(enum rf_log_level level, const char *mod,
                  const char *const *fields, const char *fmt, ...)
{
    struct line l = {.len = 0};
    char ts[64], msg[1024];
    struct timespec now;
    struct tm tm;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(now.tv_nsec / 1000000));
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (log_format == RF_LOG_JSON) {
        putc_(&l, '{');
    }
    put_field(&l, "ts", ts);
    put_field(&l, "level", level_names[level]);
    put_field(&l, "mod", mod);
    for (; fields && fields[0]; fields += 2) {
        if (fields[1]) {
            put_field(&l, fields[0], fields[1]);
        }
    }
    put_field(&l, "msg", msg);
    if (log_format == RF_LOG_JSON) {
        putc_(&l, '}');
    }
    l.buf[l.len++] = '\n';
    (void)!write(STDERR_FILENO, l.buf, l.len);
}

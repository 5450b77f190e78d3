/* One log module for the whole process: levels, logfmt or JSON lines.
 *
 * Each call writes one line: ts, level, mod, then the caller's key=value
 * fields, then msg. The macros check the level before any formatting, so a
 * disabled debug line costs one comparison.
 *
 * Caveats: lines are written with one write(2) to stderr, atomic for lines
 * under PIPE_BUF; longer lines may interleave between threads. Values are
 * truncated to RF_LOG_VALUE_MAX bytes; callers must never pass secrets or
 * whole payloads.
 */
#ifndef REFEREE_LOG_H
#define REFEREE_LOG_H

#include <stdarg.h>

enum rf_log_level {
    RF_LOG_ERROR = 0,
    RF_LOG_WARN,
    RF_LOG_INFO,
    RF_LOG_DEBUG,
    RF_LOG_TRACE
};

enum rf_log_format { RF_LOG_LOGFMT = 0, RF_LOG_JSON };

#define RF_LOG_VALUE_MAX 256

/* The current level; read by the macros. Written only by rf_log_setup(). */
extern enum rf_log_level rf_log_current_level;

/* Sets level and format. Call once at start-up, before threads exist. */
void rf_log_setup(enum rf_log_level level, enum rf_log_format format);

/* The level's name as logs and configs write it ("warn"). */
const char *rf_log_level_name(enum rf_log_level level);

/* Parses "error", "warn", "info", "debug" or "trace". Returns 0 or
 * RF_EINVAL. */
int rf_log_level_parse(const char *s, enum rf_log_level *out);

/* Parses "logfmt" or "json". Returns 0 or RF_EINVAL. */
int rf_log_format_parse(const char *s, enum rf_log_format *out);

/* Writes one line. `fields` is a NULL-terminated list of key, value string
 * pairs (values may be NULL and are then left out); `fmt` formats msg.
 * Borrowed arguments; any thread may call it. Use the macros instead. */
void rf_log_write(enum rf_log_level level, const char *mod,
                  const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define RF_LOG_ENABLED(lvl) ((lvl) <= rf_log_current_level)

/* rf_log(level, "mod", fields, fmt, ...): fields is a compound literal
 * such as RF_F("tenant", id, "event", eid) or RF_NOF. */
#define RF_F(...) ((const char *const[]){__VA_ARGS__, NULL})
#define RF_NOF ((const char *const[]){NULL})

#define rf_log(lvl, mod, fields, ...)                                          \
    do {                                                                       \
        if (RF_LOG_ENABLED(lvl)) {                                             \
            rf_log_write((lvl), (mod), (fields), __VA_ARGS__);                 \
        }                                                                      \
    } while (0)

#define rf_log_error(mod, f, ...) rf_log(RF_LOG_ERROR, mod, f, __VA_ARGS__)
#define rf_log_warn(mod, f, ...) rf_log(RF_LOG_WARN, mod, f, __VA_ARGS__)
#define rf_log_info(mod, f, ...) rf_log(RF_LOG_INFO, mod, f, __VA_ARGS__)
#define rf_log_debug(mod, f, ...) rf_log(RF_LOG_DEBUG, mod, f, __VA_ARGS__)
#define rf_log_trace(mod, f, ...) rf_log(RF_LOG_TRACE, mod, f, __VA_ARGS__)

#endif

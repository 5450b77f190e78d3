/* Reading typed settings out of a Lua table, with errors that name the file,
 * the line and the setting ("referee.lua:7: setting 'limits.body_max':
 * expected a positive integer, got string").
 *
 * Lua does not remember where a table field was written, so the line is
 * found by looking for the setting's name in the file's text after the line
 * of its parent table. Caveats: a setting built by code (not written as
 * `name = ...`) is reported at its parent's line, or line 1.
 */
#ifndef REFEREE_READER_H
#define REFEREE_READER_H

#include <stddef.h>

#include <lua.h>

struct rf_reader {
    lua_State *L;
    const char *file; /* borrowed */
    char *src;        /* the file's text, owned */
    size_t src_len;
    char err[512];
    int failed;
};

/* Reads `file`'s text for line lookups. Returns 0 or -errno. Clean up with
 * rf_reader_cleanup(). */
int rf_reader_init(struct rf_reader *r, lua_State *L, const char *file);

void rf_reader_cleanup(struct rf_reader *r);

/* Records the first error: "file:line: setting 'path': msg". Later errors
 * are dropped. Returns RF_ECONFIG. */
int rf_reader_fail(struct rf_reader *r, const char *path, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));

/* The 1-based line where `path` (dotted, e.g. "limits.body_max") is set,
 * or 1 when it cannot be found. */
int rf_reader_line(const struct rf_reader *r, const char *path);

/* Fails if the table at `idx` has a key that is not in `allowed` (a
 * NULL-terminated list) or a key that is not a string. `path` names the
 * table ("" for the top). Returns 0 or RF_ECONFIG. */
int rf_reader_known_keys(struct rf_reader *r, int idx, const char *path,
                         const char *const *allowed);

/* Typed getters for field `key` of the table at `idx`. A missing (nil) field
 * leaves *out unchanged and returns 0 unless `required`. Strings are copied
 * with strdup into *out (freeing the old value). Returns 0 or RF_ECONFIG. */
int rf_reader_string(struct rf_reader *r, int idx, const char *path,
                     const char *key, char **out, int required);
int rf_reader_uint(struct rf_reader *r, int idx, const char *path,
                   const char *key, unsigned long long min,
                   unsigned long long max, unsigned long long *out);
int rf_reader_bool(struct rf_reader *r, int idx, const char *path,
                   const char *key, int *out);

/* Pushes field `key` of the table at `idx` without invoking metamethods
 * (settings tables come from scripts, and a metamethod would run outside
 * any budget) and returns its type, like lua_getfield. */
int rf_reader_get(lua_State *L, int idx, const char *key);

/* Joins path and key into buf ("a.b" or "b"). Returns buf. */
const char *rf_reader_join(char *buf, size_t n, const char *path,
                           const char *key);

/* Adds the global `env(NAME)` to L: the value of environment variable NAME,
 * or an error naming it when it is not set (so a missing secret stops
 * start-up instead of becoming an empty string). */
void rf_reader_add_env(lua_State *L);

#endif

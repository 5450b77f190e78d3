/* Typed setting getters with file:line errors. */
#include "referee/reader.h"
#include "referee/error.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

int rf_reader_init(struct rf_reader *r, lua_State *L, const char *file)
{
    FILE *f = fopen(file, "rb");
    size_t cap = 4096, n = 0, got;

    memset(r, 0, sizeof(*r));
    r->L = L;
    r->file = file;
    if (f == NULL) {
        return -errno;
    }
    r->src = malloc(cap);
    while (r->src && (got = fread(r->src + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *p = realloc(r->src, cap * 2);

            if (p == NULL) {
                free(r->src);
                r->src = NULL;
                break;
            }
            r->src = p;
            cap *= 2;
        }
    }
    fclose(f);
    if (r->src == NULL) {
        return RF_ENOMEM;
    }
    r->src[n] = '\0';
    r->src_len = n;
    return 0;
}

void rf_reader_cleanup(struct rf_reader *r)
{
    free(r->src);
    r->src = NULL;
}

int rf_reader_get(lua_State *L, int idx, const char *key)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, key);
    return lua_rawget(L, idx);
}

const char *rf_reader_join(char *buf, size_t n, const char *path,
                           const char *key)
{
    snprintf(buf, n, "%s%s%s", path, *path ? "." : "", key);
    return buf;
}

static int is_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Offset of the start of line `line` (1-based). */
static size_t line_start(const char *s, size_t len, int line)
{
    size_t off = 0;

    for (int l = 1; l < line && off < len; off++) {
        if (s[off] == '\n') {
            l++;
        }
    }
    return off;
}

static int line_at(const char *s, size_t off)
{
    int line = 1;

    for (size_t i = 0; i < off; i++) {
        line += s[i] == '\n';
    }
    return line;
}

/* If a long bracket ([[, [=[, ...) opens at s[i], returns the index after
 * its closing bracket (or len); otherwise 0. */
static size_t long_bracket(const char *s, size_t len, size_t i)
{
    size_t k = i + 1, eq;

    if (s[i] != '[') {
        return 0;
    }
    while (k < len && s[k] == '=') {
        k++;
    }
    if (k >= len || s[k] != '[') {
        return 0;
    }
    eq = k - i - 1;
    for (k++; k + eq + 1 < len; k++) {
        if (s[k] == ']' && s[k + eq + 1] == ']' &&
            strspn(s + k + 1, "=") >= eq) {
            return k + eq + 2;
        }
    }
    return len;
}

/* Skips a comment or string literal starting at s[i], returning the index
 * after it, or i when none starts there. */
static size_t skip_non_code(const char *s, size_t len, size_t i)
{
    size_t j;

    if (i + 1 < len && s[i] == '-' && s[i + 1] == '-') {
        j = i + 2 < len ? long_bracket(s, len, i + 2) : 0;
        if (j > 0) {
            return j;
        }
        return i + 2 + strcspn(s + i + 2, "\n"); /* s ends in a NUL */
    }
    if (s[i] == '"' || s[i] == '\'') {
        for (j = i + 1; j < len && s[j] != s[i] && s[j] != '\n'; j++) {
            j += s[j] == '\\';
        }
        return j < len ? j + 1 : len;
    }
    j = long_bracket(s, len, i);
    return j > 0 ? j : i;
}

/* Finds `name` written as a field (`name =` or `["name"] =`) at or after
 * line `from`, outside comments and strings; returns its line or 0. */
static int find_field(const char *s, size_t len, const char *name,
                      size_t nlen, int from)
{
    size_t i = 0, start = line_start(s, len, from);

    while (i + nlen <= len) {
        size_t j = skip_non_code(s, len, i);

        if (j != i) {
            /* ["name"] = : the string is the key itself. */
            if (i >= start && i > 0 && s[i - 1] == '[' && j - i == nlen + 2 &&
                memcmp(s + i + 1, name, nlen) == 0) {
                size_t k = j;

                if (k < len && s[k] == ']') {
                    k++;
                    while (k < len && (s[k] == ' ' || s[k] == '\t')) {
                        k++;
                    }
                    if (k < len && s[k] == '=' && s[k + 1] != '=') {
                        return line_at(s, i);
                    }
                }
            }
            i = j;
            continue;
        }
        if (i >= start && memcmp(s + i, name, nlen) == 0 &&
            (i == 0 || !is_ident(s[i - 1])) && !is_ident(s[i + nlen])) {
            j = i + nlen;
            while (j < len && (s[j] == ' ' || s[j] == '\t')) {
                j++;
            }
            if (j < len && s[j] == '=' && (j + 1 >= len || s[j + 1] != '=')) {
                return line_at(s, i);
            }
        }
        i++;
    }
    return 0;
}

int rf_reader_line(const struct rf_reader *r, const char *path)
{
    int line = 1;

    if (r->src == NULL) {
        return 1;
    }
    while (*path) {
        size_t n = strcspn(path, ".");
        int found = find_field(r->src, r->src_len, path, n, line);

        if (found > 0) {
            line = found;
        }
        path += n;
        path += *path == '.';
    }
    return line;
}

int rf_reader_fail(struct rf_reader *r, const char *path, const char *fmt,
                   ...)
{
    char msg[384];
    va_list ap;

    if (r->failed) {
        return RF_ECONFIG;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(r->err, sizeof(r->err), "%s:%d: setting '%s': %s", r->file,
             rf_reader_line(r, path), path, msg);
    r->failed = 1;
    return RF_ECONFIG;
}

int rf_reader_known_keys(struct rf_reader *r, int idx, const char *path,
                         const char *const *allowed)
{
    lua_State *L = r->L;
    char full[256];
    int rc = 0;

    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, idx) != 0) {
        const char *const *a = allowed;
        const char *key;

        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            rc = rf_reader_fail(r, *path ? path : "(top)",
                                "keys must be names, found a %s key",
                                luaL_typename(L, -1));
            break;
        }
        key = lua_tostring(L, -1);
        while (*a && strcmp(*a, key) != 0) {
            a++;
        }
        if (*a == NULL) {
            rc = rf_reader_fail(r, rf_reader_join(full, sizeof(full), path,
                                                  key),
                                "unknown setting");
        }
    }
    if (rc != 0) {
        lua_pop(L, 1); /* the key lua_next left */
    }
    return rc;
}

int rf_reader_string(struct rf_reader *r, int idx, const char *path,
                     const char *key, char **out, int required)
{
    lua_State *L = r->L;
    char full[256];
    int t = rf_reader_get(L, idx, key);
    char *copy;

    rf_reader_join(full, sizeof(full), path, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return required ? rf_reader_fail(r, full, "required") : 0;
    }
    if (t != LUA_TSTRING) {
        lua_pop(L, 1);
        return rf_reader_fail(r, full, "expected a string, got %s",
                              lua_typename(L, t));
    }
    copy = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (copy == NULL) {
        return RF_ENOMEM;
    }
    free(*out);
    *out = copy;
    return 0;
}

int rf_reader_uint(struct rf_reader *r, int idx, const char *path,
                   const char *key, unsigned long long min,
                   unsigned long long max, unsigned long long *out)
{
    lua_State *L = r->L;
    char full[256];
    int t = rf_reader_get(L, idx, key), isint = 0;
    lua_Integer v = 0;
    lua_Number d = 0;

    rf_reader_join(full, sizeof(full), path, key);
    if (t == LUA_TNUMBER) {
        v = lua_tointegerx(L, -1, &isint);
        d = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    if (t == LUA_TNIL) {
        return 0;
    }
    if (t == LUA_TNUMBER && !isint && d == floor(d)) {
        /* a whole number too large for an integer (1e20, math.huge) */
        return rf_reader_fail(r, full, "must be between %llu and %llu", min,
                              max);
    }
    if (t != LUA_TNUMBER || !isint) {
        return rf_reader_fail(r, full, "expected an integer, got %s",
                              t != LUA_TNUMBER ? lua_typename(L, t)
                              : d != d         ? "not a number (NaN)"
                                               : "a fraction");
    }
    if (v < 0 || (unsigned long long)v < min ||
        (unsigned long long)v > max) {
        return rf_reader_fail(r, full, "must be between %llu and %llu", min,
                              max);
    }
    *out = (unsigned long long)v;
    return 0;
}

int rf_reader_bool(struct rf_reader *r, int idx, const char *path,
                   const char *key, int *out)
{
    lua_State *L = r->L;
    char full[256];
    int t = rf_reader_get(L, idx, key);

    rf_reader_join(full, sizeof(full), path, key);
    if (t == LUA_TBOOLEAN) {
        *out = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    if (t == LUA_TNIL || t == LUA_TBOOLEAN) {
        return 0;
    }
    return rf_reader_fail(r, full, "expected true or false, got %s",
                          lua_typename(L, t));
}

static int l_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *v = getenv(name);

    if (v == NULL) {
        return luaL_error(L, "environment variable %s is not set", name);
    }
    lua_pushstring(L, v);
    return 1;
}

void rf_reader_add_env(lua_State *L)
{
    lua_register(L, "env", l_env);
}

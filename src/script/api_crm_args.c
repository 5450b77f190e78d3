/* crm.* for scripts: reading a call's arguments (module, id, options)
 * and search criteria out of Lua. Each reader raises a Lua error that
 * names the call (`crm.search: ...`). */
#include "referee/error.h"
#include "referee/zoho.h"
#include "referee/zoho_records.h"
#include "referee/zoho_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "api_crm.h"

/* --- arguments ---------------------------------------------------------- */

static int api_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > NAME_LEN_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* The string at `idx` when it is an API name (its length in *len), else
 * NULL. */
const char *rf__crm_name_at(lua_State *L, int idx, size_t *len)
{
    const char *s;

    if (lua_type(L, idx) != LUA_TSTRING) {
        return NULL;
    }
    s = lua_tolstring(L, idx, len);
    return api_name_ok(s, *len) ? s : NULL;
}

/* The module name at `idx`; raises unless it is an API name. */
const char *rf__crm_check_module(lua_State *L, int idx, const char *fn)
{
    size_t len = 0;
    const char *s = rf__crm_name_at(L, idx, &len);

    if (s == NULL) {
        luaL_error(L,
                   "%s: module must be a Zoho API name such as "
                   "\"Contacts\" (letters, digits, _)",
                   fn);
    }
    return s;
}

/* A record id at `idx` (digits, or an integer) into out; raises if not. */
void rf__crm_check_id(lua_State *L, int idx, const char *fn,
                      char out[RF_ZOHO_ID_MAX])
{
    size_t len = 0;
    const char *s = NULL;

    if (lua_isinteger(L, idx) && lua_tointeger(L, idx) > 0) {
        snprintf(out, RF_ZOHO_ID_MAX, "%lld", (long long)lua_tointeger(L, idx));
        return;
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        s = lua_tolstring(L, idx, &len);
    }
    if (s == NULL || len == 0 || len >= RF_ZOHO_ID_MAX ||
        strspn(s, "0123456789") != len) {
        luaL_error(L, "%s: id must be a record id, a string of digits", fn);
    }
    memcpy(out, s, len + 1);
}

/* The options table at `idx`: nil or a table (then its index). */
int rf__crm_check_opts(lua_State *L, int idx, const char *fn)
{
    if (lua_isnoneornil(L, idx)) {
        return 0;
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        luaL_error(L, "%s: options must be a table", fn);
    }
    return lua_absindex(L, idx);
}

/* Appends API name `s` to out (used bytes *n, room TEXT_MAX) after `sep`;
 * raises when it is not a name or does not fit. */
static void add_name(lua_State *L, const char *fn, const char *what,
                     const char *s, size_t len, char *out, size_t *n,
                     const char *sep)
{
    if (!api_name_ok(s, len)) {
        luaL_error(L, "%s: %s must hold Zoho API names", fn, what);
    }
    if (*n + strlen(sep) + len + 1 > TEXT_MAX) {
        luaL_error(L, "%s: %s is too long", fn, what);
    }
    *n += (size_t)snprintf(out + *n, TEXT_MAX - *n, "%s%.*s", *n ? sep : "",
                           (int)len, s);
}

/* opts.fields, a list of names or "A,B,C", as "A,B,C" in out; NULL when
 * absent (raises when required). */
const char *rf__crm_read_fields(lua_State *L, int opts, const char *fn,
                                int required, char out[TEXT_MAX])
{
    int type = opts ? lua_getfield(L, opts, "fields") : LUA_TNIL;
    size_t n = 0, len;
    lua_Integer count = 0;

    out[0] = '\0';
    if (type == LUA_TSTRING) {
        const char *s = lua_tolstring(L, -1, &len), *end = s + len;

        for (count = 0; s <= end; count++) {
            size_t part = strcspn(s, ",");

            add_name(L, fn, "fields", s, part, out, &n, ",");
            s += part + 1;
        }
    } else if (type == LUA_TTABLE) {
        count = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= count && count <= FIELDS_MAX; i++) {
            const char *s;

            lua_rawgeti(L, -1, i);
            s = rf__crm_name_at(L, -1, &len);
            add_name(L, fn, "fields", s ? s : "", s ? len : 0, out, &n, ",");
            lua_pop(L, 1);
        }
    } else if (type != LUA_TNIL) {
        luaL_error(L, "%s: fields must be a list of API names", fn);
    } else {
        count = 0;
    }
    if (count > FIELDS_MAX || (required && count == 0)) {
        luaL_error(L,
                   "%s: fields must name 1 to %d fields (Zoho requires "
                   "them here)",
                   fn, FIELDS_MAX);
    }
    if (opts) {
        lua_pop(L, 1);
    }
    return count ? out : NULL;
}

/* An integer option in [lo, hi], or `dflt` when absent. */
lua_Integer rf__crm_read_int(lua_State *L, int opts, const char *fn,
                             const char *key, lua_Integer lo, lua_Integer hi,
                             lua_Integer dflt)
{
    lua_Integer v = dflt;
    int type = opts ? lua_getfield(L, opts, key) : LUA_TNIL;

    if (type != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < lo ||
            lua_tointeger(L, -1) > hi) {
            luaL_error(L, "%s: %s must be an integer from %d to %d", fn, key,
                       (int)lo, (int)hi);
        }
        v = lua_tointeger(L, -1);
    }
    if (opts) {
        lua_pop(L, 1);
    }
    return v;
}

/* A string option that must be one of `allowed`, or NULL when absent. */
const char *rf__crm_read_choice(lua_State *L, int opts, const char *fn,
                                const char *key, const char *const *allowed,
                                const char *hint)
{
    const char *s = NULL;

    if (opts && lua_getfield(L, opts, key) != LUA_TNIL) {
        for (const char *const *a = allowed; s == NULL && *a; a++) {
            if (lua_type(L, -1) == LUA_TSTRING &&
                strcmp(lua_tostring(L, -1), *a) == 0) {
                s = *a;
            }
        }
        if (s == NULL) {
            luaL_error(L, "%s: %s must be %s", fn, key, hint);
        }
    }
    if (opts) {
        lua_pop(L, 1);
    }
    return s;
}

/* --- search criteria ----------------------------------------------------- */

/* Copies text into c->text; raises when it is full. */
static const char *crit_keep(lua_State *L, struct crit *c, const char *s,
                             size_t len)
{
    char *at = c->text + c->used;

    if (c->used + len + 1 > sizeof(c->text)) {
        luaL_error(L, "crm.search: criteria too long");
    }
    memcpy(at, s, len);
    at[len] = '\0';
    c->used += len + 1;
    return at;
}

/* The operand at the top of the stack as text: strings as they are,
 * numbers in full, booleans, json.null as Zoho's ${EMPTY}. */
static void crit_value(lua_State *L, struct crit *c, int cond)
{
    char buf[48];
    const char *s = buf;
    size_t len;

    if (lua_type(L, -1) == LUA_TSTRING) {
        s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len) {
            luaL_error(L, "crm.search: condition %d: a value holds a NUL",
                       cond);
        }
    } else if (lua_isinteger(L, -1)) {
        len = (size_t)snprintf(buf, sizeof(buf), "%lld",
                               (long long)lua_tointeger(L, -1));
    } else if (lua_type(L, -1) == LUA_TNUMBER &&
               isfinite(lua_tonumber(L, -1))) {
        len = (size_t)snprintf(buf, sizeof(buf), "%.15g",
                               (double)lua_tonumber(L, -1));
    } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
        s = lua_toboolean(L, -1) ? "true" : "false";
        len = strlen(s);
    } else if (lua_type(L, -1) == LUA_TLIGHTUSERDATA &&
               lua_touserdata(L, -1) == NULL) {
        s = "${EMPTY}";
        len = strlen(s);
    } else {
        luaL_error(L,
                   "crm.search: condition %d: values must be strings, "
                   "numbers, booleans or json.null",
                   cond);
    }
    if (c->nvals == VALUES_MAX) {
        luaL_error(L, "crm.search: at most %d values in all conditions",
                   VALUES_MAX);
    }
    c->vals[c->nvals++] = crit_keep(L, c, s, len);
}

/* Reads {field, operator, value or {values}} at the top of the stack. */
static void crit_cond(lua_State *L, struct crit *c, int i)
{
    struct rf_zoho_cond *k = &c->conds[i - 1];
    size_t len = 0;
    const char *s;

    if (lua_type(L, -1) != LUA_TTABLE) {
        luaL_error(L,
                   "crm.search: condition %d must be "
                   "{field, operator, value}",
                   i);
    }
    for (int j = 1; j <= 2; j++) {
        lua_rawgeti(L, -1, j);
        if ((s = rf__crm_name_at(L, -1, &len)) == NULL) {
            luaL_error(L, "crm.search: condition %d: the %s must be a name", i,
                       j == 1 ? "field" : "operator");
        }
        *(j == 1 ? &k->field : &k->op) = crit_keep(L, c, s, len);
        lua_pop(L, 1);
    }
    k->values = &c->vals[c->nvals];
    if (lua_rawgeti(L, -1, 3) == LUA_TTABLE) { /* a list of values */
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);

        for (lua_Integer j = 1; j <= n; j++) {
            lua_rawgeti(L, -1, j);
            crit_value(L, c, i);
            lua_pop(L, 1);
        }
    } else {
        crit_value(L, c, i);
    }
    k->nvalues = (size_t)(&c->vals[c->nvals] - k->values);
    if (k->nvalues == 0) {
        luaL_error(L, "crm.search: condition %d has no value", i);
    }
    lua_pop(L, 1);
}

/* Criteria at `idx` into out: raw Zoho text, or a list of conditions
 * joined by `and` (`join = "or"` for or), escaped by rf_zoho_criteria. */
void rf__crm_read_criteria(lua_State *L, int idx, struct crit *c,
                           char out[TEXT_MAX])
{
    static const char *const joins[] = {"and", "or", NULL};
    const char *join;
    size_t len = 0, n;
    int rc;

    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tolstring(L, idx, &len);

        if (len == 0 || len >= TEXT_MAX) {
            luaL_error(L, "crm.search: criteria text must be 1 to %d bytes",
                       TEXT_MAX - 1);
        }
        memcpy(out, s, len + 1);
        return;
    }
    n = lua_type(L, idx) == LUA_TTABLE ? lua_rawlen(L, idx) : 0;
    if (n == 0 || n > RF_ZOHO_CRITERIA_MAX) {
        luaL_error(L,
                   "crm.search: criteria must be Zoho's text or a list "
                   "of 1 to %d {field, operator, value}",
                   RF_ZOHO_CRITERIA_MAX);
    }
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        crit_cond(L, c, (int)i);
        lua_pop(L, 1);
    }
    join = rf__crm_read_choice(L, idx, "crm.search", "join", joins,
                               "\"and\" or \"or\"");
    rc = rf_zoho_criteria(c->conds, n, join && strcmp(join, "or") == 0, out,
                          TEXT_MAX);
    if (rc != 0) {
        luaL_error(L, "crm.search: criteria %s",
                   rc == RF_ETOOBIG ? "too long" : "not valid");
    }
}

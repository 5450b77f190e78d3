/* json.encode / json.decode for scripts, on cJSON. Arrays and objects keep
 * their kind through metatables; json.null stands for null; integers with
 * more than 15 digits are kept as strings so CRM ids never lose digits. */
#include "referee/script_api.h"
#include "referee/json_check.h"
#include "referee/json_names.h"
#include "referee/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "internal.h"

#define ARRAY_MT "rf.json.array"
#define OBJECT_MT "rf.json.object"
#define GUARD_MT "rf.json.guard"
#define SAFE_DIGITS 15

/* Holds heap memory while Lua calls that may raise run; __gc frees it. */
struct guard {
    cJSON *tree;
    char *text;
};

static int guard_gc(lua_State *L)
{
    struct guard *g = luaL_checkudata(L, 1, GUARD_MT);

    cJSON_Delete(g->tree);
    cJSON_free(g->text);
    g->tree = NULL;
    g->text = NULL;
    return 0;
}

static struct guard *push_guard(lua_State *L)
{
    struct guard *g = lua_newuserdatauv(L, sizeof(*g), 0);

    g->tree = NULL;
    g->text = NULL;
    luaL_setmetatable(L, GUARD_MT);
    return g;
}

/* --- parsing ------------------------------------------------------------ */

/* Length of the number token at s (JSON grammar, loosely), and whether it
 * is an integer with more than SAFE_DIGITS digits. */
static size_t number_token(const char *s, size_t n, int *big)
{
    size_t i = 0, digits = 0;
    int integer = 1;

    if (i < n && s[i] == '-') {
        i++;
    }
    for (; i < n; i++) {
        char c = s[i];

        if (c >= '0' && c <= '9') {
            digits++;
        } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
            integer = 0;
        } else {
            break;
        }
    }
    *big = integer && digits > SAFE_DIGITS;
    return i;
}

/* Copies text, quoting big integer tokens outside strings. Returns NULL
 * when there is nothing to quote (or memory ran out: the caller then
 * parses the original, losing only precision). */
static char *quote_big_ints(const char *text, size_t len, size_t *outlen)
{
    char *out = NULL;
    size_t o = 0, i = 0;
    int in_str = 0, changed = 0;

    out = malloc(len * 2 + 1);
    if (out == NULL) {
        return NULL;
    }
    while (i < len) {
        char c = text[i];
        int big;
        size_t tok;

        if (in_str) {
            out[o++] = c;
            if (c == '\\' && i + 1 < len) {
                out[o++] = text[++i];
            } else if (c == '"') {
                in_str = 0;
            }
            i++;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            tok = number_token(text + i, len - i, &big);
            if (big) {
                out[o++] = '"';
                memcpy(out + o, text + i, tok);
                o += tok;
                out[o++] = '"';
                i += tok;
                changed = 1;
                continue;
            }
            memcpy(out + o, text + i, tok);
            o += tok;
            i += tok;
            continue;
        }
        out[o++] = c;
        i++;
    }
    if (!changed) {
        free(out);
        return NULL;
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

cJSON *rf_api_parse_json(const char *text, size_t len, char *err,
                         size_t errlen)
{
    size_t qlen = 0;
    char *quoted = quote_big_ints(text, len, &qlen);
    const char *src = quoted ? quoted : text, *end = NULL;
    size_t n = quoted ? qlen : len;
    cJSON *v = cJSON_ParseWithLengthOpts(src, n, &end, 0);

    if (v != NULL) {
        while (end < src + n && strchr(" \t\r\n", *end) && *end) {
            end++;
        }
        if (end != src + n) {
            cJSON_Delete(v);
            v = NULL;
        }
    }
    if (v == NULL) {
        const char *at = end ? end : cJSON_GetErrorPtr();
        long off = at && at >= src && at <= src + n ? (long)(at - src) : 0;

        snprintf(err, errlen, "invalid JSON near byte %ld", off);
    }
    free(quoted);
    return v;
}

cJSON *rf_api_parse_body(const char *text, size_t len, char *err,
                         size_t errlen)
{
    struct rf_json_problem p;
    const char *twice;
    cJSON *v;

    if (rf_json_check_text(text, len, RF_API_JSON_DEPTH_MAX, &p) != 0) {
        snprintf(err, errlen, "the body is not strict JSON (byte %zu: %s)",
                 p.offset, p.reason);
        return NULL;
    }
    v = rf_api_parse_json(text, len, err, errlen);
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    twice = rf_json_repeated_name(v);
    if (twice != NULL) {
        snprintf(err, errlen, "field \"%.64s\" is given twice", twice);
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

int rf_api_push_json(lua_State *L, const cJSON *v)
{
    int i = 1;

    if (!lua_checkstack(L, 4)) {
        return -1;
    }
    if (cJSON_IsNull(v)) {
        lua_pushlightuserdata(L, NULL);
    } else if (cJSON_IsBool(v)) {
        lua_pushboolean(L, cJSON_IsTrue(v));
    } else if (cJSON_IsString(v)) {
        lua_pushstring(L, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;

        if (!isfinite(d)) {
            /* Beyond a double's range (1e400): json.null, as in an event's
             * json, which comes through cJSON's printer, and as
             * json.encode would not take infinity back. */
            lua_pushlightuserdata(L, NULL);
        } else if (d == floor(d) && fabs(d) < 9007199254740992.0) {
            lua_pushinteger(L, (lua_Integer)d);
        } else {
            lua_pushnumber(L, d);
        }
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int arr = cJSON_IsArray(v);

        lua_createtable(L, arr ? cJSON_GetArraySize(v) : 0,
                        arr ? 0 : cJSON_GetArraySize(v));
        luaL_setmetatable(L, arr ? ARRAY_MT : OBJECT_MT);
        for (const cJSON *c = v->child; c; c = c->next) {
            if (!arr) {
                lua_pushstring(L, c->string);
            }
            if (rf_api_push_json(L, c) != 0) {
                lua_pop(L, arr ? 1 : 2);
                return -1;
            }
            if (arr) {
                lua_rawseti(L, -2, i++);
            } else {
                lua_rawset(L, -3); /* no metamethod runs */
            }
        }
    } else {
        lua_pushnil(L);
    }
    return 0;
}

/* --- encoding ----------------------------------------------------------- */

struct enc {
    lua_State *L;
    char *err;
    size_t errlen;
    struct rf_sandbox *sb; /* NULL for a state of the host's own */
    size_t size, max;      /* the text so far, roughly, and its limit */
    int limit;             /* a sandbox limit stopped the call */
};

/* Each value costs its text and a little for punctuation: how encoding
 * stays within `max` before the text exists, and checks the call's CPU
 * budget on the way (count hooks never run inside C). 0, or -1 with the
 * reason in e->err. */
static int account(struct enc *e, size_t text)
{
    e->size += text + 4;
    if (e->sb != NULL && e->sb->limit != RF__LIMIT_NONE) {
        e->limit = 1;
        snprintf(e->err, e->errlen, "stopped by a limit");
        return -1;
    }
    if (e->size > e->max) {
        snprintf(e->err, e->errlen, "the text would be over %zu KiB",
                 e->max >> 10);
        return -1;
    }
    return 0;
}

/* A Lua string as JSON text needs strict UTF-8 and no zero byte (the
 * tree below keeps C strings, which would cut it there). */
static const char *string_problem(const char *s, size_t len)
{
    if (memchr(s, 0, len) != NULL) {
        return "a string with a zero byte cannot be encoded";
    }
    if (!rf_utf8_valid(s, len)) {
        return "a string that is not UTF-8 cannot be encoded";
    }
    return NULL;
}

static cJSON *to_json(struct enc *e, int idx, int depth);

/* 1 when the table's metatable marks it an array, 0 an object, -1 none. */
static int marked_kind(lua_State *L, int idx)
{
    int kind = -1;

    if (lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, ARRAY_MT);
        kind = lua_rawequal(L, -1, -2) ? 1 : -1;
        lua_pop(L, 1);
        if (kind < 0) {
            luaL_getmetatable(L, OBJECT_MT);
            kind = lua_rawequal(L, -1, -2) ? 0 : -1;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return kind;
}

/* Whether the table's keys are exactly 1..n with n > 0. */
static int is_sequence(lua_State *L, int idx)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            lua_tointeger(L, -1) > n) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    return n > 0 && count == n;
}

static cJSON *fail(struct enc *e, const char *msg)
{
    snprintf(e->err, e->errlen, "%s", msg);
    return NULL;
}

static cJSON *array_to_json(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    cJSON *arr = cJSON_CreateArray();

    for (lua_Integer i = 1; arr && i <= n; i++) {
        cJSON *item;

        lua_rawgeti(L, idx, i);
        item = to_json(e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (item == NULL) {
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddItemToArray(arr, item);
    }
    return arr ? arr : fail(e, "out of memory");
}

static cJSON *object_to_json(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    cJSON *obj = cJSON_CreateObject();
    char numkey[32];

    lua_pushnil(L);
    while (obj && lua_next(L, idx) != 0) {
        const char *key = numkey;
        cJSON *item;

        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t klen;
            const char *why;

            key = lua_tolstring(L, -2, &klen);
            why = string_problem(key, klen);
            if (why == NULL && account(e, klen) != 0) {
                why = e->err;
            }
            if (why != NULL) {
                snprintf(e->err, e->errlen, "%s", why);
                lua_pop(L, 2);
                cJSON_Delete(obj);
                return NULL;
            }
        } else if (lua_isinteger(L, -2)) {
            snprintf(numkey, sizeof(numkey), "%lld",
                     (long long)lua_tointeger(L, -2));
        } else {
            lua_pop(L, 2);
            cJSON_Delete(obj);
            return fail(e, "object keys must be strings or integers");
        }
        item = to_json(e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (item == NULL) {
            lua_pop(L, 1);
            cJSON_Delete(obj);
            return NULL;
        }
        cJSON_AddItemToObject(obj, key, item);
    }
    return obj ? obj : fail(e, "out of memory");
}

static cJSON *to_json(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    int kind;

    size_t len;
    const char *s, *why;

    if (depth > RF_API_JSON_DEPTH_MAX || !lua_checkstack(L, 6)) {
        return fail(e, "nested deeper than 100 levels (a cycle?)");
    }
    if (account(e, lua_type(L, idx) == LUA_TSTRING ? lua_rawlen(L, idx) : 0)
        != 0) {
        return NULL;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return cJSON_CreateNull();
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, idx) == NULL ? cJSON_CreateNull()
                                              : fail(e, "cannot encode "
                                                        "userdata");
    case LUA_TBOOLEAN:
        return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        why = string_problem(s, len);
        return why ? fail(e, why) : cJSON_CreateString(s);
    case LUA_TNUMBER:
        if (!lua_isinteger(L, idx) && !isfinite(lua_tonumber(L, idx))) {
            return fail(e, "cannot encode NaN or infinity");
        }
        if (lua_isinteger(L, idx)) {
            lua_Integer i = lua_tointeger(L, idx);
            char digits[24];

            /* A double holds every integer up to 2^53; past that the
             * digits go into the text as they are (a raw item, which
             * cJSON_IsNumber does not count: such integers are ids, not
             * amounts). */
            if (i > (1LL << 53) || i < -(1LL << 53)) {
                snprintf(digits, sizeof(digits), "%lld", (long long)i);
                return cJSON_CreateRaw(digits);
            }
        }
        return cJSON_CreateNumber(lua_tonumber(L, idx));
    case LUA_TTABLE:
        kind = marked_kind(L, idx);
        if (kind == 1 || (kind < 0 && is_sequence(L, idx))) {
            return array_to_json(e, idx, depth);
        }
        return object_to_json(e, idx, depth);
    default:
        snprintf(e->err, e->errlen, "cannot encode a %s",
                 luaL_typename(L, idx));
        return NULL;
    }
}

cJSON *rf_api_to_json_max(lua_State *L, int idx, size_t max, char *err,
                          size_t errlen)
{
    struct enc e = {L, err, errlen, rf__sandbox_of(L), 0, max, 0};
    cJSON *v = to_json(&e, lua_absindex(L, idx), 0);

    if (v == NULL && e.limit) {
        /* Only while a call runs (a limit is set then alone): raise the
         * limit's own error, with its place, as Lua code would. */
        rf__sandbox_check(L, e.sb);
    }
    return v;
}

cJSON *rf_api_to_json(lua_State *L, int idx, char *err, size_t errlen)
{
    return rf_api_to_json_max(L, idx, RF_API_JSON_TEXT_MAX, err, errlen);
}

/* --- the module --------------------------------------------------------- */

static int l_encode(lua_State *L)
{
    struct guard *g;
    char err[160];

    luaL_checkany(L, 1);
    g = push_guard(L);
    g->tree = rf_api_to_json(L, 1, err, sizeof(err));
    if (g->tree == NULL) {
        return luaL_error(L, "json.encode: %s", err);
    }
    g->text = cJSON_PrintUnformatted(g->tree);
    if (g->text == NULL) {
        return luaL_error(L, "json.encode: out of memory");
    }
    /* Integers print as integers: cJSON uses %.17g only for fractions. */
    lua_pushstring(L, g->text);
    return 1;
}

static int l_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    struct guard *g = push_guard(L);
    struct rf_json_problem p;
    char err[96];

    /* Strict, as intake: what cJSON would take beyond the RFC (leading
     * zeros, bytes that are not UTF-8) or cut (\u0000) is refused. */
    if (rf_json_check_text(s, len, RF_API_JSON_DEPTH_MAX, &p) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid JSON near byte %d (%s)", (int)p.offset,
                        p.reason);
        return 2;
    }
    g->tree = rf_api_parse_json(s, len, err, sizeof(err));
    if (g->tree == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    if (rf_api_push_json(L, g->tree) != 0) {
        return luaL_error(L, "json.decode: out of memory");
    }
    return 1;
}

static int mark(lua_State *L, const char *mt)
{
    if (lua_isnoneornil(L, 1)) {
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    luaL_setmetatable(L, mt);
    return 1;
}

static int l_array(lua_State *L)
{
    return mark(L, ARRAY_MT);
}

static int l_object(lua_State *L)
{
    return mark(L, OBJECT_MT);
}

int rf_api_open_json(lua_State *L)
{
    static const luaL_Reg fns[] = {{"encode", l_encode},
                                   {"decode", l_decode},
                                   {"array", l_array},
                                   {"object", l_object},
                                   {NULL, NULL}};

    /* __metatable hides the shared metatables from scripts, so that no
     * script can hang a __gc or __index on every decoded value. */
    luaL_newmetatable(L, ARRAY_MT);
    lua_pushliteral(L, "json.array");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_newmetatable(L, OBJECT_MT);
    lua_pushliteral(L, "json.object");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}

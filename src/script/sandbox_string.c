/* The sandbox's string library: no dump, checked pattern functions, a rep
 * that cannot spin on empty strings, a bounded %q, and a string metatable
 * scripts can neither see nor change. */
#include "internal.h"

#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#define QUOTE_MAX ((size_t)256 << 10)

/* string.rep(s, n [, sep]), filled by doubling so its time follows the
 * result's size, which the memory cap bounds. The stock one loops n times
 * even when the result is empty. */
static int safe_rep(lua_State *L)
{
    size_t l, lsep, unit, total, done;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    luaL_Buffer b;
    char *p;

    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    unit = l + lsep;
    if (unit < l || (lua_Unsigned)n > (size_t)LUA_MAXINTEGER / unit) {
        return luaL_error(L, "resulting string too large");
    }
    total = (size_t)n * unit - lsep;
    p = luaL_buffinitsize(L, &b, total);
    memcpy(p, s, l);
    if (total > l) {
        memcpy(p + l, sep, lsep);
    }
    done = total < unit ? total : unit;
    while (done < total) { /* the text repeats with period `unit` */
        size_t chunk = total - done < done ? total - done : done;

        memcpy(p + done, p, chunk);
        done += chunk;
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

/* string.format with %q limited to strings of QUOTE_MAX bytes: the stock
 * %q formats each control character with snprintf, about 60 ns a byte in
 * C where no hook runs. Upvalue 1 is the stock string.format. */
static int safe_format(lua_State *L)
{
    size_t lf;
    const char *f = luaL_checklstring(L, 1, &lf);
    const char *end = f + lf;
    int arg = 1;

    if (memchr(f, 'q', lf) == NULL) {
        f = end; /* no %q: nothing to check */
    }
    while ((f = memchr(f, '%', (size_t)(end - f))) != NULL) {
        if (++f < end && *f == '%') {
            f++;
            continue;
        }
        arg++;
        while (f < end && *f != '\0' && strchr("-+ #0123456789.", *f)) {
            f++;
        }
        if (f < end && *f == 'q' && lua_type(L, arg) == LUA_TSTRING &&
            lua_rawlen(L, arg) > QUOTE_MAX) {
            return luaL_error(L,
                              "string.format: %%q of more than %d KiB is "
                              "not allowed in the sandbox",
                              (int)(QUOTE_MAX >> 10));
        }
    }
    /* The stock function uses no upvalues: call it directly on this stack
     * rather than through lua_call, which costs a third of a format. */
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

static void set_fn(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
}

/* Points the string metatable at a private copy of the library, so that
 * changing the global `string` table affects only that table, and hides
 * the metatable: getmetatable("") returns false. */
static void protect_metatable(lua_State *L)
{
    lua_createtable(L, 0, 20);
    lua_pushnil(L);
    while (lua_next(L, -3) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_pushliteral(L, "");
    if (!lua_getmetatable(L, -1)) {
        luaL_error(L, "string metatable missing");
    }
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 3);
}

void rf__sandbox_open_string(lua_State *L)
{
    lua_pushcfunction(L, luaopen_string);
    lua_call(L, 0, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    set_fn(L, "rep", safe_rep);
    set_fn(L, "find", rf__sandbox_str_find);
    set_fn(L, "match", rf__sandbox_str_match);
    set_fn(L, "gmatch", rf__sandbox_str_gmatch);
    set_fn(L, "gsub", rf__sandbox_str_gsub);
    lua_getfield(L, -1, "format");
    lua_pushcclosure(L, safe_format, 1);
    lua_setfield(L, -2, "format");
    protect_metatable(L);
}

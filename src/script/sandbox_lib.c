/* The globals a sandboxed script sees: an allow-list of the base library,
 * safe replacements for load, collectgarbage, setmetatable and xpcall, and
 * the libraries of internal.h. */
#include "internal.h"

#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

/* Base functions kept as Lua ships them. */
static const char *const base_keep[] = {
    "assert",   "error",    "getmetatable", "ipairs", "next",     "pairs",
    "pcall",    "rawequal", "rawget",       "rawlen", "rawset",   "select",
    "tonumber", "tostring", "type",         "_G",     "_VERSION", NULL};

/* The os functions that only read clocks and format dates. */
static const char *const os_keep[] = {"clock", "date", "difftime", "time",
                                      NULL};

static int in_list(const char *const *list, const char *name)
{
    for (; *list != NULL; list++) {
        if (strcmp(*list, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A reader for load() with a function argument: each call of the function
 * returns the next piece of source; nil or "" ends it. */
static const char *read_from_function(lua_State *L, void *ud, size_t *size)
{
    (void)ud;
    rf__sandbox_check(L, rf__sandbox_of(L));
    luaL_checkstack(L, 2, "too many nested functions");
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        *size = 0;
        return NULL;
    }
    if (!lua_isstring(L, -1)) {
        luaL_error(L, "reader function must return a string");
    }
    lua_replace(L, 5); /* keeps the piece alive while the parser reads it */
    return lua_tolstring(L, 5, size);
}

/* load(chunk [, chunkname [, mode [, env]]]): text only, whatever `mode`
 * says; the chunk gets `env` when given, else the sandbox's globals. */
static int safe_load(lua_State *L)
{
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, s != NULL ? s : "=(load)");
    int has_env = !lua_isnone(L, 4);
    int status;

    if (s != NULL) {
        status = rf__sandbox_load_text(L, s, len, name);
    } else {
        luaL_checktype(L, 1, LUA_TFUNCTION);
        lua_settop(L, 5);
        status = lua_load(L, read_from_function, NULL, name, "t");
    }
    if (status != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (has_env) {
        lua_pushvalue(L, 4);
        if (lua_setupvalue(L, -2, 1) == NULL) {
            lua_pop(L, 1);
        }
    }
    return 1;
}

/* collectgarbage("count") only; a script must not drive the collector. */
static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");

    if (strcmp(opt, "count") != 0) {
        return luaL_error(L,
                          "collectgarbage('%s') is not allowed in the "
                          "sandbox; only 'count' is",
                          opt);
    }
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024);
    return 1;
}

/* setmetatable without __gc: finalizers run inside the collector, where no
 * hook can stop them. A __gc added to the metatable later has no effect,
 * as Lua marks objects for finalization only here. */
static int safe_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) {
            return luaL_error(L, "__gc metamethods are not allowed in the "
                                 "sandbox");
        }
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) {
        return luaL_error(L, "cannot change a protected metatable");
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* After xpcall's protected call: on success returns true and the results;
 * on failure calls the handler as an ordinary function, where the budget's
 * hook works, and returns false and its result. Stack: f h true ... */
static int xpcall_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)ctx;
    if (status == LUA_OK || status == LUA_YIELD) {
        return lua_gettop(L) - 2;
    }
    lua_pushboolean(L, 0);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -3);
    (void)lua_pcall(L, 1, 1, 0); /* a failing handler's error is returned */
    return 2;
}

/* xpcall(f, handler, ...). The stock xpcall runs the handler inside the
 * error, where hooks are off when a hook raised it: an endless handler
 * would never stop. */
static int safe_xpcall(lua_State *L)
{
    int n = lua_gettop(L);

    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    return xpcall_done(L, lua_pcallk(L, n - 2, LUA_MULTRET, 0, 0, xpcall_done),
                       0);
}

/* Clears every global the allow-list does not name. */
static void filter_base(lua_State *L)
{
    lua_pushglobaltable(L);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING ||
            !in_list(base_keep, lua_tostring(L, -1))) {
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, -4);
        }
    }
    lua_pop(L, 1);
}

static void set_global_fn(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_setglobal(L, name);
}

/* Runs a luaopen_* function and leaves its table on the stack. */
static void open_raw(lua_State *L, lua_CFunction open)
{
    lua_pushcfunction(L, open);
    lua_call(L, 0, 1);
}

static void open_os(lua_State *L)
{
    open_raw(L, luaopen_os);
    lua_createtable(L, 0, 4);
    for (const char *const *n = os_keep; *n != NULL; n++) {
        lua_getfield(L, -2, *n);
        lua_setfield(L, -2, *n);
    }
    lua_remove(L, -2);
}

/* Sets global `name` to the table on top, and records it where tracebacks
 * look up function names. Pops the table. */
static void publish(lua_State *L, const char *name)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
    lua_setglobal(L, name);
}

void rf__sandbox_open_libs(lua_State *L, unsigned flags)
{
    open_raw(L, luaopen_base);
    lua_pop(L, 1);
    filter_base(L);
    set_global_fn(L, "load", safe_load);
    set_global_fn(L, "collectgarbage", safe_collectgarbage);
    set_global_fn(L, "setmetatable", safe_setmetatable);
    set_global_fn(L, "xpcall", safe_xpcall);
    lua_pushglobaltable(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, LUA_GNAME);
    lua_pop(L, 2);

    rf__sandbox_open_string(L);
    publish(L, LUA_STRLIBNAME);
    rf__sandbox_open_table(L);
    publish(L, LUA_TABLIBNAME);
    open_raw(L, luaopen_math);
    publish(L, LUA_MATHLIBNAME);
    open_raw(L, luaopen_utf8);
    publish(L, LUA_UTF8LIBNAME);
    rf__sandbox_open_coroutine(L);
    publish(L, LUA_COLIBNAME);
    open_os(L);
    publish(L, LUA_OSLIBNAME);

    if (flags & RF_SANDBOX_REQUIRE) {
        rf__sandbox_push_require(L);
        lua_setglobal(L, "require");
    }
}

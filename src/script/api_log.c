/* log.debug/info/warn/error for scripts: one log line each, tagged with the
 * tenant, hook and event of the call that wrote it. */
#include "referee/log.h"
#include "referee/script_api.h"

#include <lauxlib.h>

#define CTX_KEY "rf.log.ctx"

void rf_api_set_context(lua_State *L, const char *tenant, const char *hook,
                        const char *event)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, tenant);
    lua_setfield(L, -2, "tenant");
    lua_pushstring(L, hook);
    lua_setfield(L, -2, "hook");
    lua_pushstring(L, event);
    lua_setfield(L, -2, "event");
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
}

static const char *ctx_field(lua_State *L, const char *name)
{
    const char *v;

    lua_getfield(L, -1, name);
    v = lua_tostring(L, -1); /* stays valid: the table holds it */
    lua_pop(L, 1);
    return v;
}

/* log.X(fmt, ...): formats like string.format, then logs. */
static int write_line(lua_State *L, enum rf_log_level level)
{
    const char *msg, *tenant = NULL, *hook = NULL, *event = NULL;
    int n = lua_gettop(L);

    if (!RF_LOG_ENABLED(level)) {
        return 0;
    }
    if (n > 1) {
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "format");
        lua_insert(L, 1);
        lua_pop(L, 1);
        lua_call(L, n, 1);
    }
    msg = luaL_tolstring(L, 1, NULL);
    if (lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY) == LUA_TTABLE) {
        tenant = ctx_field(L, "tenant");
        hook = ctx_field(L, "hook");
        event = ctx_field(L, "event");
    }
    rf_log_write(level, "script",
                 RF_F("tenant", tenant, "hook", hook, "event", event), "%s",
                 msg);
    return 0;
}

static int l_debug(lua_State *L)
{
    return write_line(L, RF_LOG_DEBUG);
}

static int l_info(lua_State *L)
{
    return write_line(L, RF_LOG_INFO);
}

static int l_warn(lua_State *L)
{
    return write_line(L, RF_LOG_WARN);
}

static int l_error(lua_State *L)
{
    return write_line(L, RF_LOG_ERROR);
}

int rf_api_open_log(lua_State *L)
{
    static const luaL_Reg fns[] = {{"debug", l_debug},
                                   {"info", l_info},
                                   {"warn", l_warn},
                                   {"error", l_error},
                                   {NULL, NULL}};

    luaL_newlib(L, fns);
    return 1;
}

void rf_api_open_sync(lua_State *L)
{
    rf_api_open_json(L);
    lua_setglobal(L, "json");
    rf_api_open_crypto(L);
    lua_setglobal(L, "crypto");
    rf_api_open_time(L);
    lua_setglobal(L, "time");
    rf_api_open_log(L);
    lua_setglobal(L, "log");
}

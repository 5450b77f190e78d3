/* log.debug/info/warn/error for scripts: one log line each, tagged with the
 * tenant, hook and event of the call that wrote it. */
#include "call.h"
#include "referee/log.h"
#include "referee/script_api.h"

#include <string.h>

#include <lauxlib.h>

#define CTX_KEY "rf.log.ctx"

/* Lines one call may write; the next one says the rest are dropped. A
 * reviewer's hook wrote 13,500 lines (4.8 MB) within its 50 ms budget. */
#define LINES_PER_CALL 100

/* The tagging context of the running call, kept in one userdata per state
 * so that setting it for each call allocates nothing. */
struct log_ctx {
    char tenant[72];
    char hook[64];
    char event[48];
    unsigned lines; /* written since the context was set (outside a hook
                       call's own coroutine: tenant.lua loading) */
};

static void copy(char *dst, size_t n, const char *src)
{
    size_t len = src ? strlen(src) : 0;

    len = len < n - 1 ? len : n - 1;
    memcpy(dst, src ? src : "", len);
    dst[len] = '\0';
}

void rf_api_set_context(lua_State *L, const char *tenant, const char *hook,
                        const char *event)
{
    struct log_ctx *ctx;

    if (lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY) == LUA_TUSERDATA) {
        ctx = lua_touserdata(L, -1);
    } else {
        lua_pop(L, 1);
        ctx = lua_newuserdatauv(L, sizeof(*ctx), 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
    }
    lua_pop(L, 1);
    copy(ctx->tenant, sizeof(ctx->tenant), tenant);
    copy(ctx->hook, sizeof(ctx->hook), hook);
    copy(ctx->event, sizeof(ctx->event), event);
    ctx->lines = 0;
}

/* log.X(fmt, ...): formats like string.format, then logs. */
static int write_line(lua_State *L, enum rf_log_level level)
{
    const char *msg, *tenant = NULL, *hook = NULL, *event = NULL;
    struct log_ctx *ctx = NULL;
    struct rf_call *call = rf__call_of(L);
    unsigned *lines = NULL;
    int n = lua_gettop(L);

    if (!RF_LOG_ENABLED(level)) {
        return 0;
    }
    if (lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY) == LUA_TUSERDATA) {
        ctx = lua_touserdata(L, -1);
        tenant = ctx->tenant[0] ? ctx->tenant : NULL;
        hook = ctx->hook[0] ? ctx->hook : NULL;
        event = ctx->event[0] ? ctx->event : NULL;
    }
    lua_pop(L, 1);
    /* Counted per call, across its waits (the context is set again at
     * each resume); a coroutine the script made counts against the
     * context, as does tenant.lua while it loads. */
    lines = call ? rf__call_log_lines(call) : ctx ? &ctx->lines : NULL;
    if (lines && *lines >= LINES_PER_CALL) {
        if ((*lines)++ == LINES_PER_CALL) {
            rf_log_write(RF_LOG_WARN, "script",
                         RF_F("tenant", tenant, "hook", hook, "event", event),
                         "this call wrote %d log lines; the rest are dropped",
                         LINES_PER_CALL);
        }
        return 0;
    }
    if (n > 1) {
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "format");
        lua_insert(L, 1);
        lua_pop(L, 1);
        /* Protected, so that a bad format is raised from here, where its
         * position is the script line that called log.X. */
        int status = lua_pcall(L, n, 1, 0);

        if (status != LUA_ERRRUN && status != LUA_OK) {
            return lua_error(L); /* out of memory, a limit: as they are */
        }
        if (status != LUA_OK) {
            return luaL_error(L, "log.%s: %s", rf_log_level_name(level),
                              lua_tostring(L, -1) ? lua_tostring(L, -1)
                                                  : "bad format");
        }
    }
    msg = luaL_tolstring(L, 1, NULL);
    if (lines) {
        ++*lines;
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

void rf_api_publish(lua_State *L, const char *name)
{
    if (lua_getglobal(L, name) == LUA_TTABLE) {
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, name);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
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
    rf_api_publish(L, "json");
    rf_api_publish(L, "crypto");
    rf_api_publish(L, "time");
    rf_api_publish(L, "log");
}

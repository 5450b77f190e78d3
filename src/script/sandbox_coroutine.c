/* The sandbox's coroutine library. Lua keeps hooks per thread, so resume,
 * wrap and close put the coroutine on the sandbox's chain of running
 * threads, which the budget's hook reaches; host threads are off limits. */
#include "internal.h"

#include <lauxlib.h>
#include <lualib.h>

enum co_state { CO_RUNNING, CO_SUSPENDED, CO_NORMAL, CO_DEAD };

/* Registry: weak set of the threads the host runs (the main thread and
 * every thread given to rf_sandbox_resume or rf_sandbox_pcall_thread). */
static const char host_key = 'h';

static const char *const state_names[] = {"running", "suspended", "normal",
                                          "dead"};

static int co_state(lua_State *L, lua_State *co)
{
    lua_Debug ar;

    if (L == co) {
        return CO_RUNNING;
    }
    switch (lua_status(co)) {
    case LUA_YIELD:
        return CO_SUSPENDED;
    case LUA_OK:
        if (lua_getstack(co, 0, &ar)) {
            return CO_NORMAL; /* it resumed another coroutine */
        }
        return lua_gettop(co) == 0 ? CO_DEAD : CO_SUSPENDED;
    default:
        return CO_DEAD; /* it stopped with an error */
    }
}

/* Resumes co with the top narg values of L. Returns the number of results
 * moved onto L, or -1 with an error value on L; after an error inside co a
 * copy of the value stays on co. */
static int resume_in_chain(lua_State *L, lua_State *co, int narg)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);
    int state = co_state(L, co);
    int status, nres = 0;

    if (state != CO_SUSPENDED) {
        lua_pushstring(L, state == CO_DEAD
                              ? "cannot resume dead coroutine"
                              : "cannot resume non-suspended coroutine");
        return -1;
    }
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    if (rf__sandbox_push_thread(sb, co) != 0) {
        lua_pushliteral(L, "coroutines nested too deeply");
        return -1;
    }
    lua_xmove(L, co, narg);
    status = lua_resume(co, L, narg, &nres);
    rf__sandbox_pop_thread(sb, 0);
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    if (lua_checkstack(co, 1)) {
        lua_pushvalue(co, -1);
    }
    lua_xmove(co, L, 1);
    return -1;
}

/* Closes co's pending to-be-closed variables; their __close methods run on
 * the chain like any other script code. Returns the lua_resetthread
 * status; on failure the error value is on top of co. */
static int close_in_chain(lua_State *L, lua_State *co)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);
    int status;

    if (rf__sandbox_push_thread(sb, co) != 0) {
        return luaL_error(L, "coroutines nested too deeply");
    }
    status = lua_resetthread(co);
    rf__sandbox_pop_thread(sb, 0);
    return status;
}

int rf__sandbox_mark_host(lua_State *L)
{
    lua_State *T = lua_touserdata(L, 1);

    lua_rawgetp(L, LUA_REGISTRYINDEX, &host_key);
    luaL_checkstack(T, 1, "cannot mark the thread");
    lua_pushthread(T);
    lua_xmove(T, L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    return 0;
}

/* Refuses a host thread: resuming or closing it from a script would hijack
 * a coroutine that waits for the host, or run the idle main thread. */
static void check_not_host(lua_State *L, int idx)
{
    int host;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &host_key);
    lua_pushvalue(L, idx);
    host = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    if (host) {
        luaL_error(L, "a script cannot resume or close a coroutine that the "
                      "host runs");
    }
}

static int safe_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    int n;

    luaL_argexpected(L, co != NULL, 1, "coroutine");
    if (co != L) {
        check_not_host(L, 1);
    }
    n = resume_in_chain(L, co, lua_gettop(L) - 1);
    if (n < 0) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -(n + 1));
    return n + 1;
}

/* The function coroutine.wrap returns; upvalue 1 is the coroutine. Errors
 * propagate, after the dead coroutine's variables are closed. */
static int wrap_call(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int n = resume_in_chain(L, co, lua_gettop(L));
    int status;

    if (n >= 0) {
        return n;
    }
    status = lua_status(co);
    if (status != LUA_OK && status != LUA_YIELD) {
        status = close_in_chain(L, co);
        lua_xmove(co, L, 1);
        lua_replace(L, -2);
    }
    if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

static int safe_wrap(lua_State *L)
{
    lua_State *co;

    luaL_checktype(L, 1, LUA_TFUNCTION);
    co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, wrap_call, 1);
    return 1;
}

static int safe_close(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    int state;

    luaL_argexpected(L, co != NULL, 1, "coroutine");
    state = co_state(L, co);
    if (state == CO_SUSPENDED || state == CO_DEAD) {
        check_not_host(L, 1);
    }
    if (state != CO_SUSPENDED && state != CO_DEAD) {
        return luaL_error(L, "cannot close a %s coroutine", state_names[state]);
    }
    if (close_in_chain(L, co) == LUA_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);
    return 2;
}

static void set_fn(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
}

void rf__sandbox_open_coroutine(lua_State *L)
{
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushthread(L);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &host_key);
    lua_pushcfunction(L, luaopen_coroutine);
    lua_call(L, 0, 1);
    set_fn(L, "resume", safe_resume);
    set_fn(L, "wrap", safe_wrap);
    set_fn(L, "close", safe_close);
}

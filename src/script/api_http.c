/* http.request for scripts: the call yields while libcurl works on the
 * loop, and resumes with the answer or an error value. */
#include "referee/error.h"
#include "referee/script_api.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "call.h"

#define HEADERS_MAX 32
#define HEADER_LINE_MAX 2048
#define BODY_MAX (8u << 20)
#define TIMEOUT_MAX_MS 60000

struct op {
    struct rf_call *call;
    int sync;   /* the answer came before the request was even started */
    int nres;
};

static const char *code_of(int rc)
{
    switch (rc) {
    case RF_EDENIED:
        return "denied";
    case RF_ETIMEOUT:
        return "timeout";
    case RF_ETOOBIG:
        return "too_big";
    case RF_ESTOPPING:
        return "stopping";
    default:
        return "connection";
    }
}

/* Pushes `resp` or `nil, message, code`; returns how many values. */
static int push_result(lua_State *L, const struct rf_http_result *res)
{
    lua_checkstack(L, 8);
    if (res->rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, res->error ? res->error : "request failed");
        lua_pushstring(L, code_of(res->rc));
        return 3;
    }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, res->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, res->body, res->body_len);
    lua_setfield(L, -2, "body");
    lua_createtable(L, 0, (int)res->nheaders);
    for (size_t i = 0; i < res->nheaders; i++) {
        lua_pushstring(L, res->headers[i][1]);
        lua_setfield(L, -2, res->headers[i][0]);
    }
    lua_setfield(L, -2, "headers");
    return 1;
}

static void on_done(const struct rf_http_result *res, void *arg)
{
    struct op *op = arg;
    struct rf_call *c = op->call;

    if (op->sync) {
        op->nres = push_result(rf__call_thread(c), res);
        return; /* l_request returns these itself */
    }
    if (rf__call_waiting(c)) {
        rf__call_resume(c, push_result(rf__call_thread(c), res));
    }
    rf__call_release(c);
    free(op);
}

static int valid_header_text(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

/* Reads the `headers` table into "Name: value" lines kept in a userdata
 * (so that Lua owns the memory if an error is raised). */
static const char **read_headers(lua_State *L, int tidx)
{
    const char **lines;
    char *buf;
    int n = 0;

    lines = lua_newuserdatauv(L, (HEADERS_MAX + 1) * sizeof(char *) +
                                     HEADERS_MAX * HEADER_LINE_MAX,
                              0);
    buf = (char *)(lines + HEADERS_MAX + 1);
    if (lua_getfield(L, tidx, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);

            if (lua_type(L, -2) != LUA_TSTRING || v == NULL ||
                !valid_header_text(k) || !valid_header_text(v) ||
                strlen(k) + strlen(v) + 3 > HEADER_LINE_MAX ||
                n == HEADERS_MAX) {
                luaL_error(L, "http.request: headers must be at most %d "
                              "name = value strings without line breaks",
                           HEADERS_MAX);
            }
            lines[n] = buf + (size_t)n * HEADER_LINE_MAX;
            snprintf(buf + (size_t)n * HEADER_LINE_MAX, HEADER_LINE_MAX,
                     "%s: %s", k, v);
            n++;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lines[n] = NULL;
    return lines;
}

static int l_request(lua_State *L)
{
    struct rf_call *c = rf__call_check(L, "http.request");
    const struct rf_tenant *t = rf__call_tenant(c);
    struct rf_http_call call = {0};
    lua_Integer timeout;
    struct op *op;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "url");
    call.url = luaL_checkstring(L, -1);
    lua_getfield(L, 1, "method");
    call.method = luaL_optstring(L, -1, "GET");
    lua_getfield(L, 1, "body");
    call.body = luaL_optlstring(L, -1, NULL, &call.body_len);
    lua_getfield(L, 1, "timeout_ms");
    timeout = luaL_optinteger(L, -1, 10000);
    luaL_argcheck(L, timeout > 0 && timeout <= TIMEOUT_MAX_MS, 1,
                  "timeout_ms between 1 and 60000");
    luaL_argcheck(L, call.body_len <= BODY_MAX, 1, "body over 8 MiB");
    call.timeout_ms = (unsigned)timeout;
    call.headers = read_headers(L, 1);
    call.allow = t->allow;
    call.n_allow = t->nallow;
    call.max_response = BODY_MAX;

    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return luaL_error(L, "http.request: out of memory");
    }
    op->call = c;
    op->sync = 1;
    rf__call_hold(c);
    if (rf_http_client_request(rf__call_http(c), &call, on_done, op) != 0) {
        rf__call_release(c);
        free(op);
        return luaL_error(L, "http.request: out of memory");
    }
    op->sync = 0;
    if (op->nres > 0) {
        int n = op->nres;

        rf__call_release(c);
        free(op);
        return n;
    }
    return rf__call_wait(L, c);
}

void rf__api_open_http(lua_State *L)
{
    static const luaL_Reg fns[] = {{"request", l_request}, {NULL, NULL}};

    luaL_newlib(L, fns);
    lua_setglobal(L, "http");
}

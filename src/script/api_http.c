/* http.request for scripts: the call yields while libcurl works on the
 * loop, and resumes with the answer or an error value. */
#include "referee/error.h"
#include "referee/http_client.h"
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

/* Whether the Lua string at idx is a header name (an RFC 9110 token) or a
 * header value: no CR, LF or NUL in either, so no caller can add lines. */
static int valid_header_part(lua_State *L, int idx, int name)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);

    if (s == NULL || strlen(s) != len) {
        return 0;
    }
    return name ? rf_http_token(s, len) : strpbrk(s, "\r\n") == NULL;
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
            const char *k = lua_type(L, -2) == LUA_TSTRING
                                ? lua_tostring(L, -2)
                                : NULL; /* never convert a key in place */
            const char *v = lua_tostring(L, -1);

            if (k == NULL || v == NULL ||
                !valid_header_part(L, -2, 1) || !valid_header_part(L, -1, 0) ||
                strlen(k) + strlen(v) + 3 > HEADER_LINE_MAX ||
                n == HEADERS_MAX) {
                luaL_error(L, "http.request: headers must be at most %d "
                              "name = value strings: names are tokens "
                              "(letters, digits, !#$%%&'*+-.^_`|~), values "
                              "have no line breaks",
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

/* The method at idx (default GET): 1 to RF_HTTP_METHOD_MAX upper-case
 * letters, so that it cannot carry a second request line. */
static const char *check_method(lua_State *L, int idx)
{
    size_t len;
    const char *m = luaL_optlstring(L, idx, "GET", &len);

    if (!rf_http_method_valid(m, len)) {
        luaL_error(L, "http.request: method must be 1 to %d upper-case "
                      "letters, such as GET, HEAD, POST, PUT, PATCH, DELETE "
                      "or OPTIONS",
                   RF_HTTP_METHOD_MAX);
    }
    return m;
}

/* The url at idx: no spaces, control bytes or NUL. */
static const char *check_url(lua_State *L, int idx)
{
    size_t len;
    const char *u = luaL_checklstring(L, idx, &len);

    if (!rf_http_url_text_valid(u, len)) {
        luaL_error(L, "http.request: url must not contain spaces, line "
                      "breaks or other control characters");
    }
    return u;
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
    call.url = check_url(L, lua_gettop(L));
    lua_getfield(L, 1, "method");
    call.method = check_method(L, lua_gettop(L));
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

/* The script engine's calls: hooks and plugin functions run as coroutines
 * on a tenant's current version, their deadlines, results and the rebuild
 * after a limit hit. */
#include "referee/engine.h"
#include "referee/error.h"
#include "referee/log.h"
#include "referee/reader.h"
#include "referee/sandbox.h"
#include "referee/script_api.h"
#include "referee/zoho.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>

#include "call.h"
#include "engine_internal.h"

/* --- calls ---------------------------------------------------------------- */

static unsigned cpu_budget_ms(const struct rf_call *c)
{
    if (c->v->settings->cpu_ms) {
        return c->v->settings->cpu_ms;
    }
    return c->e->o.env.cpu_ms ? c->e->o.env.cpu_ms : DEFAULT_CPU_MS;
}

void rf__call_hold(struct rf_call *c)
{
    c->refs++;
}

void rf__call_release(struct rf_call *c)
{
    if (--c->refs == 0) {
        free(c);
    }
}

int rf__call_waiting(const struct rf_call *c)
{
    return c->waiting && !c->finished;
}

lua_State *rf__call_thread(struct rf_call *c)
{
    return c->co;
}

struct rf_http_client *rf__call_http(struct rf_call *c)
{
    return c->e->http;
}

struct rf_store *rf__call_store(struct rf_call *c)
{
    return c->e->o.store;
}

struct rf_zoho *rf__call_zoho(struct rf_call *c)
{
    return c->t->zoho;
}

struct rf_writer *rf__call_writer(struct rf_call *c)
{
    return c->e->writer;
}

const struct rf_tenant *rf__call_tenant(struct rf_call *c)
{
    return c->v->settings;
}

/* A hook's coroutine keeps its call in the thread's extra space; every
 * other thread (the main one, those a script makes) has NULL there. */
static struct rf_call **call_slot(lua_State *L)
{
    return (struct rf_call **)lua_getextraspace(L);
}

unsigned *rf__call_log_lines(struct rf_call *c)
{
    return &c->log_lines;
}

struct rf_call *rf__call_of(lua_State *L)
{
    return *call_slot(L);
}

struct rf_call *rf__call_check(lua_State *L, const char *fn)
{
    struct rf_call *c = rf__call_of(L);

    if (c == NULL || !lua_isyieldable(L)) {
        luaL_error(L,
                   "%s can only be called from a hook, not from the "
                   "script's top level or a coroutine it made",
                   fn);
    }
    return c;
}

int rf__call_wait(lua_State *L, struct rf_call *c)
{
    c->waiting = 1;
    return lua_yield(L, 0);
}

static void unlink_call(struct rf_call *c)
{
    struct rf_engine *e = c->e;

    if (c->prev) {
        c->prev->next = c->next;
    } else {
        e->calls = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    e->active--;
}

/* Ends a call: reports its outcome, lets go of its coroutine and version. */
void rf__engine_finish(struct rf_call *c, int rc, const char *error,
                       const char *json, const cJSON *value)
{
    struct rf_hook_result res = {rc, error, json ? json : "null",
                                 c->v->settings->version, value};
    lua_State *L = rf_sandbox_state(c->v->sb);
    struct version *v = c->v;

    c->finished = 1;
    unlink_call(c);
    *call_slot(c->co) = NULL;
    /* A coroutine that ended well is reset and kept for the next call,
     * which saves making a thread per call; others are let go. */
    if (rc == 0 && v->nidle < IDLE_MAX && lua_status(c->co) == LUA_OK &&
        lua_resetthread(c->co) == LUA_OK) {
        v->idle[v->nidle++] = c->co_ref;
    } else {
        luaL_unref(L, LUA_REGISTRYINDEX, c->co_ref);
    }
    c->e->stats.failures += rc != 0;
    c->e->stats.limit_hits += rc == RF_ELIMIT;
    if (rc != 0 && !c->e->o.quiet_failures) {
        rf_log_warn("script",
                    RF_F("tenant", c->t->id, "hook", c->hook, "event",
                         c->event[0] ? c->event : NULL, "version",
                         v->settings->version),
                    "hook failed: %s", error);
    }
    c->done(&res, c->arg);
    v->calls--;
    if (v->retired && v->calls == 0) {
        rf__engine_free_version(v);
    }
    rf__call_release(c);
}

/* Rebuilds a tenant whose state a limit may have left inconsistent. */
static void rebuild(struct rf_engine *e, struct tenant_rt *t)
{
    char err[ERR_MAX];

    if (rf__engine_install(e, t->dir, t->id, 1, err, sizeof(err)) != 0) {
        err[strcspn(err, "\n")] = '\0';
        rf_log_error("script", RF_F("tenant", t->id),
                     "cannot rebuild after a limit: %s", err);
    }
}

/* Writes "src:line: " of the line where the call's hook is defined, or
 * an empty string. */
static void hook_where(struct rf_call *c, char *buf, size_t len)
{
    lua_State *L = rf_sandbox_state(c->v->sb);
    lua_Debug ar;

    buf[0] = '\0';
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->v->table_ref);
    if (rf_reader_get(L, -1, c->hook) != LUA_TFUNCTION) {
        lua_pop(L, 2);
        return;
    }
    if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0) { /* pops it */
        snprintf(buf, len, "%s:%d: ", ar.short_src, ar.linedefined);
    }
    lua_pop(L, 1);
}

/* The hook returned: its first value becomes JSON. */
static void finish_ok(struct rf_call *c, int nres)
{
    char why[200], at[LUA_IDSIZE + 16], err[ERR_MAX];
    cJSON *v = NULL;
    char *text = NULL;

    if (nres > 0) {
        v = rf_api_to_json(c->co, -nres, why, sizeof(why));
        if (v == NULL) {
            lua_pop(c->co, nres);
            hook_where(c, at, sizeof(at));
            snprintf(err, sizeof(err),
                     "%shook '%s' returned a value that cannot be encoded "
                     "as JSON: %s",
                     at, c->hook, why);
            rf__engine_finish(c, RF_ESCRIPT, err, NULL, NULL);
            return;
        }
        text = c->want_text ? cJSON_PrintUnformatted(v) : NULL;
    }
    lua_pop(c->co, nres);
    rf__engine_finish(c, 0, NULL, text, v);
    cJSON_Delete(v);
    cJSON_free(text);
}

static void set_context(struct rf_call *c)
{
    rf_api_set_context(rf_sandbox_state(c->v->sb), c->t->id, c->hook,
                       c->event[0] ? c->event : NULL);
}

void rf__call_resume(struct rf_call *c, int nres)
{
    struct tenant_rt *t = c->t;
    struct rf_engine *e = c->e;
    char err[ERR_MAX];
    int rc, n = 0, tainted;

    c->waiting = 0;
    set_context(c);
    rc = rf_sandbox_resume(c->v->sb, c->co, nres, &n, err, sizeof(err));
    if (rc == RF_SANDBOX_YIELDED) {
        /* The budget covers the whole call, across its waits. */
        c->cpu_ns += rf_sandbox_last_cpu_ns(c->v->sb);
    }
    tainted = rf_sandbox_tainted(c->v->sb) && t->cur == c->v;
    if (rc == RF_SANDBOX_YIELDED && !c->waiting) {
        rf__engine_finish(c, RF_ESCRIPT,
                          "the hook yielded on its own (coroutine.yield "
                          "outside a coroutine it made)",
                          NULL, NULL);
    } else if (rc == RF_SANDBOX_YIELDED &&
               c->cpu_ns > (uint64_t)cpu_budget_ms(c) * 1000000u) {
        char at[LUA_IDSIZE + 16];

        rf_sandbox_where(c->co, 0, at, sizeof(at)); /* where it waits */
        snprintf(err, sizeof(err),
                 "%s%scpu budget of %u ms exceeded (the CPU time of the "
                 "hook's running stretches between waits, summed)",
                 at, at[0] ? " " : "", cpu_budget_ms(c));
        rf__engine_finish(c, RF_ELIMIT, err, NULL, NULL);
    } else if (rc == 0) {
        finish_ok(c, n);
    } else if (rc != RF_SANDBOX_YIELDED) {
        rf__engine_finish(c, rc, err, NULL, NULL);
    }
    if (tainted) {
        rebuild(e, t);
    }
}

/* Answers a call that cannot start. */
static void refuse(rf_engine_done_cb done, void *arg, int rc, const char *error)
{
    struct rf_hook_result res = {rc, error, "null", "", NULL};

    done(&res, arg);
}

/* Pushes the input onto co: an array spreads into arguments. */
/* Pushes the call's arguments: the elements of an array, or one value. */
static int push_input(lua_State *co, const cJSON *v, char *err, size_t errlen)
{
    int n = 1;

    if (v == NULL) {
        return 0;
    }
    if (cJSON_IsArray(v)) {
        n = 0;
        for (const cJSON *a = v->child; a; a = a->next, n++) {
            if (!lua_checkstack(co, 2) || rf_api_push_json(co, a) != 0) {
                n = -1;
                break;
            }
        }
    } else if (rf_api_push_json(co, v) != 0) {
        n = -1;
    }
    if (n < 0) {
        snprintf(err, errlen, "input too large for the script's memory");
    }
    return n;
}

/* A plugin call's results, one table: { value = first, message = second,
 * code = third }, so that `nil, "message", "transient"` reaches C whole. */
static int plugin_results(lua_State *L, int status, lua_KContext ctx)
{
    int t;

    (void)status;
    (void)ctx;
    lua_createtable(L, 0, 3);
    t = lua_gettop(L);
    lua_pushvalue(L, t - 3);
    lua_setfield(L, t, "value");
    lua_pushvalue(L, t - 2);
    lua_setfield(L, t, "message");
    lua_pushvalue(L, t - 1);
    lua_setfield(L, t, "code");
    return 1;
}

/* The body of a plugin call's coroutine: require(module)[fn](...), with a
 * continuation so that the function may wait (http.request, crm.*). */
static int plugin_entry(lua_State *L)
{
    const char *module = lua_tostring(L, lua_upvalueindex(1));
    const char *fn = lua_tostring(L, lua_upvalueindex(2));
    int nargs = lua_gettop(L);

    if (lua_getglobal(L, "require") != LUA_TFUNCTION) {
        return luaL_error(L, "plugin '%s': require is not available", module);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1) || lua_getfield(L, -1, fn) != LUA_TFUNCTION) {
        return luaL_error(L, "plugin '%s' has no function '%s'", module, fn);
    }
    lua_remove(L, -2); /* the module */
    lua_insert(L, 1);  /* the function below the arguments */
    lua_callk(L, nargs, 3, 0, plugin_results);
    return plugin_results(L, LUA_OK, 0);
}

static int prepare(struct rf_call *c, const cJSON *input, char *err,
                   size_t errlen)
{
    lua_State *L = rf_sandbox_state(c->v->sb);
    int nargs;

    if (c->v->nidle > 0) {
        c->co_ref = c->v->idle[--c->v->nidle];
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->co_ref);
        c->co = lua_tothread(L, -1);
        lua_pop(L, 1);
    } else {
        c->co = lua_newthread(L);
        c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (c->module[0]) {
        lua_pushstring(L, c->module);
        lua_pushstring(L, c->fn);
        lua_pushcclosure(L, plugin_entry, 2);
        lua_xmove(L, c->co, 1);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->v->table_ref);
        rf_reader_get(L, -1, c->hook);
        lua_xmove(L, c->co, 1);
        lua_pop(L, 1);
    }
    nargs = push_input(c->co, input, err, errlen);
    if (nargs < 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, c->co_ref);
        return -1;
    }
    *call_slot(c->co) = c;
    return nargs;
}

static int has_hook(struct version *v, const char *hook)
{
    lua_State *L = rf_sandbox_state(v->sb);
    int type;

    lua_rawgeti(L, LUA_REGISTRYINDEX, v->table_ref);
    type = rf_reader_get(L, -1, hook);
    lua_pop(L, 2);
    return type == LUA_TFUNCTION;
}

static const struct native *find_native(const struct rf_engine *e,
                                        const char *name)
{
    for (size_t i = 0; i < e->nnatives; i++) {
        if (strcmp(e->natives[i].name, name) == 0) {
            return &e->natives[i];
        }
    }
    return NULL;
}

int rf_engine_native(struct rf_engine *e, const char *name,
                     rf_engine_native_fn fn, void *arg)
{
    if (name[0] != '@' || strlen(name) >= sizeof(e->natives[0].name) ||
        e->nnatives == NATIVES_MAX || find_native(e, name) != NULL) {
        return RF_EINVAL;
    }
    snprintf(e->natives[e->nnatives].name, sizeof(e->natives[0].name), "%s",
             name);
    e->natives[e->nnatives].fn = fn;
    e->natives[e->nnatives++].arg = arg;
    return 0;
}

static int call(struct rf_engine *e, const char *tenant, const char *hook,
                const char *module, const cJSON *input, const char *event,
                int want_text, rf_engine_done_cb done, void *arg)
{
    struct tenant_rt *t = rf__engine_find_tenant(e, tenant);
    const struct native *nat =
        hook[0] == '@' && module == NULL ? find_native(e, hook) : NULL;
    char err[256];
    struct rf_call *c;
    int nargs;

    if (e->freeing) {
        /* Callbacks of work finishing while the engine is freed (the
         * writer's last commits) must not start anything new. */
        refuse(done, arg, RF_ESTOPPING, "the engine is stopping");
        return 0;
    }
    if (t == NULL || t->cur == NULL) {
        refuse(done, arg, RF_ENOTFOUND, "no such tenant");
        return 0;
    }
    if (nat != NULL) {
        nat->fn(e, tenant, input, event, done, arg, nat->arg);
        return 0;
    }
    if (module == NULL && !has_hook(t->cur, hook)) {
        snprintf(err, sizeof(err), "the tenant's script has no hook '%s'",
                 hook);
        refuse(done, arg, RF_ENOTFOUND, err);
        return 0;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return RF_ENOMEM;
    }
    *c = (struct rf_call){.e = e,
                          .t = t,
                          .v = t->cur,
                          .done = done,
                          .arg = arg,
                          .refs = 1,
                          .want_text = want_text};
    if (module != NULL) {
        snprintf(c->module, sizeof(c->module), "%s", module);
        snprintf(c->fn, sizeof(c->fn), "%s", hook);
        snprintf(c->hook, sizeof(c->hook), "%.31s.%.31s", module, hook);
    } else {
        snprintf(c->hook, sizeof(c->hook), "%s", hook);
    }
    snprintf(c->event, sizeof(c->event), "%s", event ? event : "");
    c->deadline =
        uv_now(e->o.loop) + (e->o.wall_ms ? e->o.wall_ms : DEFAULT_WALL_MS);
    nargs = prepare(c, input, err, sizeof(err));
    if (nargs < 0) {
        free(c);
        refuse(done, arg, RF_EINVAL, err);
        return 0;
    }
    c->next = e->calls;
    if (e->calls) {
        e->calls->prev = c;
    }
    e->calls = c;
    e->active++;
    e->stats.calls++;
    c->v->calls++;
    rf__call_resume(c, nargs);
    return 0;
}

int rf_engine_call_value(struct rf_engine *e, const char *tenant,
                         const char *hook, const cJSON *input,
                         const char *event, rf_engine_done_cb done, void *arg)
{
    return call(e, tenant, hook, NULL, input, event, 0, done, arg);
}

int rf_engine_call_plugin(struct rf_engine *e, const char *tenant,
                          const char *module, const char *fn,
                          const cJSON *input, const char *event,
                          rf_engine_done_cb done, void *arg)
{
    size_t mlen = strlen(module), flen = strlen(fn);

    if (mlen == 0 || mlen > 128 || flen == 0 || flen > 31) {
        refuse(done, arg, RF_EINVAL, "plugin or function name too long");
        return 0;
    }
    return call(e, tenant, fn, module, input, event, 0, done, arg);
}

int rf_engine_call(struct rf_engine *e, const char *tenant, const char *hook,
                   const char *input, size_t len, const char *event,
                   rf_engine_done_cb done, void *arg)
{
    cJSON *v = NULL;
    char err[256];
    int rc;

    if (input != NULL && len > 0) {
        v = rf_api_parse_json(input, len, err, sizeof(err));
        if (v == NULL) {
            refuse(done, arg, RF_EINVAL, err);
            return 0;
        }
    }
    rc = call(e, tenant, hook, NULL, v, event, 1, done, arg);
    cJSON_Delete(v);
    return rc;
}

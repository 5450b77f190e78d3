/* The script engine: tenants' versions, hook calls as coroutines, deadlines
 * and rebuilds after a limit hit. */
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

#define BUCKETS 1024
#define SWEEP_MS 100
#define DEFAULT_WALL_MS 30000
#define DEFAULT_CPU_MS 50
#define IDLE_MAX 16 /* finished coroutines kept per version for reuse */
#define ERR_MAX 2048

/* One loaded version of a tenant's script. */
struct version {
    struct rf_sandbox *sb;
    struct rf_tenant *settings;
    int table_ref; /* the returned settings table, in the registry */
    int calls;     /* calls running on this version */
    int retired;   /* replaced; freed when the last call ends */
    int idle[IDLE_MAX]; /* registry refs of finished coroutines to reuse */
    int nidle;
};

struct tenant_rt {
    struct tenant_rt *next; /* hash chain */
    char *id;
    char *dir;
    struct version *cur;
    struct rf_zoho *zoho;  /* open while the settings have a zoho table */
    char zoho_conn[17];    /* the connection fingerprint it was opened with */
};

struct rf_call {
    struct rf_call *prev, *next;
    struct rf_engine *e;
    struct tenant_rt *t;
    struct version *v;
    lua_State *co;
    int co_ref;
    rf_engine_done_cb done;
    void *arg;
    int refs;
    int waiting;
    int finished;
    int want_text; /* the caller reads res->json (rf_engine_call) */
    uint64_t deadline;
    uint64_t cpu_ns;
    char hook[64];
    char event[40];
    char module[136]; /* a plugin call's module; "" for a hook */
    char fn[32];      /* ... and its function */
};

#define NATIVES_MAX 8

/* A hook written in C ("@zoho.notify"), run instead of a script's. */
struct native {
    char name[32];
    rf_engine_native_fn fn;
    void *arg;
};

struct rf_engine {
    struct rf_engine_opts o;
    struct native natives[NATIVES_MAX];
    size_t nnatives;
    int freeing; /* rf_engine_free() runs: no new calls */
    uv_timer_t sweep;
    struct rf_http_client *http;
    struct rf_writer *writer;
    struct tenant_rt *buckets[BUCKETS];
    struct rf_call *calls;
    size_t active;
    struct rf_engine_stats stats;
};

/* --- tenants and versions ----------------------------------------------- */

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;

    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h % BUCKETS;
}

static struct tenant_rt *find_tenant(const struct rf_engine *e,
                                     const char *id)
{
    struct tenant_rt *t = e->buckets[hash(id)];

    while (t && strcmp(t->id, id) != 0) {
        t = t->next;
    }
    return t;
}

static void free_version(struct version *v)
{
    if (v == NULL) {
        return;
    }
    rf_sandbox_free(v->sb);
    rf_tenant_free(v->settings);
    free(v);
}

/* Frees a replaced version once no call runs on it. */
static void retire(struct version *v)
{
    if (v == NULL) {
        return;
    }
    v->retired = 1;
    if (v->calls == 0) {
        free_version(v);
    }
}

static int load_version(struct rf_engine *e, const char *dir, const char *id,
                        struct version **out, char *err, size_t errlen)
{
    struct version *v = calloc(1, sizeof(*v));
    lua_State *L;
    int rc;

    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return RF_ENOMEM;
    }
    rc = rf_tenant_load(dir, id, &e->o.env, &v->settings, &v->sb, err,
                        errlen);
    if (rc != 0) {
        free(v);
        return rc;
    }
    L = rf_sandbox_state(v->sb);
    v->table_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the table */
    *out = v;
    return 0;
}

/* Opens, keeps or replaces the tenant's Zoho connection to match its
 * current settings. A failure to open is logged; crm.* calls then fail
 * with "no Zoho connection" until a fixed version loads. */
static void zoho_follow(struct rf_engine *e, struct tenant_rt *t)
{
    const struct rf_tenant_zoho *zs = t->cur->settings->zoho;
    struct rf_zoho_settings s = {0};
    char err[256];

    if (t->zoho != NULL && zs != NULL &&
        strcmp(t->zoho_conn, zs->connection) == 0) {
        return; /* same connection settings: keep token, counters, polls */
    }
    if (t->zoho != NULL) {
        rf_zoho_close(t->zoho, NULL, NULL);
        t->zoho = NULL;
        t->zoho_conn[0] = '\0';
    }
    if (zs == NULL || e->o.store == NULL || e->writer == NULL) {
        return;
    }
    s.tenant = t->id;
    s.client_id = zs->client_id;
    s.client_secret = zs->client_secret;
    s.refresh_token = zs->refresh_token;
    s.dc = zs->dc;
    s.accounts_url = zs->accounts_url;
    s.api_domain = zs->api_domain;
    s.allow = zs->nallow ? zs->allow : NULL;
    s.n_allow = zs->nallow;
    s.edition = zs->edition;
    s.users = zs->users;
    s.credits_per_day = zs->credits_per_day;
    s.concurrency = zs->concurrency;
    s.api_version = zs->api_version;
    if (rf_zoho_open(e->o.loop, e->http, e->o.store, e->writer, &s, &t->zoho,
                     err, sizeof(err)) != 0) {
        t->zoho = NULL;
        rf_log_error("zoho", RF_F("tenant", t->id), "cannot open the "
                                                    "connection: %s",
                     err);
        return;
    }
    memcpy(t->zoho_conn, zs->connection, sizeof(t->zoho_conn));
}

struct rf_zoho *rf_engine_zoho(const struct rf_engine *e, const char *tenant)
{
    const struct tenant_rt *t = find_tenant(e, tenant);

    return t ? t->zoho : NULL;
}

struct rf_writer *rf_engine_writer(const struct rf_engine *e)
{
    return e->writer;
}

struct rf_store *rf_engine_store(const struct rf_engine *e)
{
    return e->o.store;
}

uv_loop_t *rf_engine_loop(const struct rf_engine *e)
{
    return e->o.loop;
}

void rf_engine_each(const struct rf_engine *e,
                    void (*fn)(const char *tenant, void *arg), void *arg)
{
    for (int b = 0; b < BUCKETS; b++) {
        for (const struct tenant_rt *t = e->buckets[b]; t; t = t->next) {
            fn(t->id, arg);
        }
    }
}

/* Logs what putting version v in place of t->cur means: the first load
 * of a removed tenant, a rebuild or reload of the same version, or a
 * switch to a new one. */
static void log_install(const struct tenant_rt *t, const struct version *v,
                        int rebuild)
{
    const char *nv = v->settings->version;
    const char *ov = t->cur ? t->cur->settings->version : NULL;

    if (ov == NULL) {
        rf_log_info("script", RF_F("tenant", t->id, "version", nv),
                    "loaded again");
    } else if (strcmp(ov, nv) != 0) {
        rf_log_info("script", RF_F("tenant", t->id, "old", ov, "new", nv),
                    "switched to the new version");
    } else if (rebuild) {
        rf_log_info("script", RF_F("tenant", t->id, "version", nv),
                    "rebuilt the script state after a limit hit");
    } else {
        rf_log_debug("script", RF_F("tenant", t->id, "version", nv),
                     "reloaded; the version is unchanged");
    }
}

/* Loads the tenant's files and puts the new version in place: for a
 * reload, or (`rebuild`) to replace a state a limit may have left
 * inconsistent. */
static int install(struct rf_engine *e, const char *dir, const char *id,
                   int rebuild, char *err, size_t errlen)
{
    struct tenant_rt *t = find_tenant(e, id);
    struct version *v = NULL;
    int rc = load_version(e, dir, id, &v, err, errlen);

    if (rc != 0) {
        e->stats.reload_failures++;
        return rc;
    }
    if (t == NULL) {
        unsigned b = hash(id);

        t = calloc(1, sizeof(*t));
        if (t == NULL || !(t->id = strdup(id)) || !(t->dir = strdup(dir))) {
            if (t) {
                free(t->id);
            }
            free(t);
            free_version(v);
            snprintf(err, errlen, "out of memory");
            return RF_ENOMEM;
        }
        t->next = e->buckets[b];
        e->buckets[b] = t;
    } else {
        e->stats.reloads++;
        log_install(t, v, rebuild);
    }
    retire(t->cur);
    t->cur = v;
    zoho_follow(e, t);
    return 0;
}

int rf_engine_load(struct rf_engine *e, const char *dir, const char *id,
                   char *err, size_t errlen)
{
    return install(e, dir, id, 0, err, errlen);
}

void rf_engine_unload(struct rf_engine *e, const char *id)
{
    struct tenant_rt *t = find_tenant(e, id);

    if (t == NULL || t->cur == NULL) {
        return;
    }
    rf_zoho_close(t->zoho, NULL, NULL);
    t->zoho = NULL;
    t->zoho_conn[0] = '\0';
    retire(t->cur); /* freed after the last call on it */
    t->cur = NULL;
    rf_log_debug("script", RF_F("tenant", id), "unloaded");
}

size_t rf_engine_load_dir(struct rf_engine *e, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    size_t n = 0;

    if (d == NULL) {
        rf_log_error("script", RF_F("dir", dir), "cannot read tenants");
        return 0;
    }
    while ((ent = readdir(d)) != NULL) {
        char path[4096], err[ERR_MAX];

        if (!rf_tenant_id_valid(ent->d_name, strlen(ent->d_name)) ||
            !rf_tenant_folder_exists(dir, ent->d_name)) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, ent->d_name);
        if (rf_engine_load(e, path, ent->d_name, err, sizeof(err)) == 0) {
            n++;
        } else if (rf_engine_tenant(e, ent->d_name) != NULL) {
            /* The registry logged it; this thread keeps the old version. */
            rf_log_debug("script", RF_F("tenant", ent->d_name),
                         "kept the previous version");
        } else {
            err[strcspn(err, "\n")] = '\0';
            rf_log_error("script", RF_F("tenant", ent->d_name),
                         "cannot load: %s", err);
        }
    }
    closedir(d);
    /* Tenants whose folder is gone are forgotten, as the registry does. */
    for (int b = 0; b < BUCKETS; b++) {
        for (struct tenant_rt *t = e->buckets[b]; t; t = t->next) {
            if (t->cur != NULL && !rf_tenant_folder_exists(dir, t->id)) {
                rf_engine_unload(e, t->id);
            }
        }
    }
    return n;
}

const struct rf_tenant *rf_engine_tenant(const struct rf_engine *e,
                                         const char *id)
{
    const struct tenant_rt *t = find_tenant(e, id);

    return t && t->cur ? t->cur->settings : NULL;
}

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

struct rf_call *rf__call_of(lua_State *L)
{
    return *call_slot(L);
}

struct rf_call *rf__call_check(lua_State *L, const char *fn)
{
    struct rf_call *c = rf__call_of(L);

    if (c == NULL || !lua_isyieldable(L)) {
        luaL_error(L, "%s can only be called from a hook, not from the "
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
static void finish(struct rf_call *c, int rc, const char *error,
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
        free_version(v);
    }
    rf__call_release(c);
}

/* Rebuilds a tenant whose state a limit may have left inconsistent. */
static void rebuild(struct rf_engine *e, struct tenant_rt *t)
{
    char err[ERR_MAX];

    if (install(e, t->dir, t->id, 1, err, sizeof(err)) != 0) {
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
            finish(c, RF_ESCRIPT, err, NULL, NULL);
            return;
        }
        text = c->want_text ? cJSON_PrintUnformatted(v) : NULL;
    }
    lua_pop(c->co, nres);
    finish(c, 0, NULL, text, v);
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
        finish(c, RF_ESCRIPT, "the hook yielded on its own (coroutine.yield "
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
        finish(c, RF_ELIMIT, err, NULL, NULL);
    } else if (rc == 0) {
        finish_ok(c, n);
    } else if (rc != RF_SANDBOX_YIELDED) {
        finish(c, rc, err, NULL, NULL);
    }
    if (tainted) {
        rebuild(e, t);
    }
}

/* Answers a call that cannot start. */
static void refuse(rf_engine_done_cb done, void *arg, int rc,
                   const char *error)
{
    struct rf_hook_result res = {rc, error, "null", "", NULL};

    done(&res, arg);
}

/* Pushes the input onto co: an array spreads into arguments. */
/* Pushes the call's arguments: the elements of an array, or one value. */
static int push_input(lua_State *co, const cJSON *v, char *err,
                      size_t errlen)
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
    struct tenant_rt *t = find_tenant(e, tenant);
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
    *c = (struct rf_call){.e = e, .t = t, .v = t->cur, .done = done,
                          .arg = arg, .refs = 1, .want_text = want_text};
    if (module != NULL) {
        snprintf(c->module, sizeof(c->module), "%s", module);
        snprintf(c->fn, sizeof(c->fn), "%s", hook);
        snprintf(c->hook, sizeof(c->hook), "%.31s.%.31s", module, hook);
    } else {
        snprintf(c->hook, sizeof(c->hook), "%s", hook);
    }
    snprintf(c->event, sizeof(c->event), "%s", event ? event : "");
    c->deadline = uv_now(e->o.loop) +
                  (e->o.wall_ms ? e->o.wall_ms : DEFAULT_WALL_MS);
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

static void on_sweep(uv_timer_t *timer)
{
    struct rf_engine *e = timer->data;
    uint64_t now = uv_now(timer->loop);
    struct rf_call *c = e->calls, *next;
    char msg[96];

    for (; c; c = next) {
        next = c->next;
        if (c->waiting && now >= c->deadline) {
            snprintf(msg, sizeof(msg), "the hook waited longer than %u ms",
                     e->o.wall_ms ? e->o.wall_ms : DEFAULT_WALL_MS);
            finish(c, RF_ETIMEOUT, msg, NULL, NULL);
        }
    }
}

size_t rf_engine_active(const struct rf_engine *e)
{
    return e->active;
}

void rf_engine_stats(const struct rf_engine *e, struct rf_engine_stats *out)
{
    *out = e->stats;
}

struct rf_engine *rf_engine_new(const struct rf_engine_opts *opts)
{
    struct rf_engine *e = calloc(1, sizeof(*e));

    if (e == NULL) {
        return NULL;
    }
    e->o = *opts;
    e->http = rf_http_client_new(opts->loop, opts->ca_file);
    if (e->http == NULL) {
        free(e);
        return NULL;
    }
    if (opts->store) {
        e->writer = rf_writer_start(opts->loop, opts->store,
                                    RF_WRITER_GROUP, 0);
    }
    uv_timer_init(opts->loop, &e->sweep);
    e->sweep.data = e;
    uv_timer_start(&e->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&e->sweep); /* does not keep the loop alive */
    return e;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void rf_engine_free(struct rf_engine *e)
{
    if (e == NULL) {
        return;
    }
    e->freeing = 1;
    while (e->calls) {
        finish(e->calls, RF_ESTOPPING, "the engine is stopping", NULL, NULL);
    }
    for (int b = 0; b < BUCKETS; b++) {
        for (struct tenant_rt *t = e->buckets[b]; t; t = t->next) {
            rf_zoho_close(t->zoho, NULL, NULL); /* saves credit usage */
            t->zoho = NULL;
        }
    }
    rf_http_client_free(e->http); /* its callbacks release their calls */
    rf_writer_stop(e->writer);
    for (int b = 0; b < BUCKETS; b++) {
        struct tenant_rt *t = e->buckets[b], *next;

        for (; t; t = next) {
            next = t->next;
            retire(t->cur);
            free(t->id);
            free(t->dir);
            free(t);
        }
    }
    uv_close((uv_handle_t *)&e->sweep, on_closed);
}

void rf_api_open_async(lua_State *L)
{
    rf__api_open_http(L);
    rf__api_open_store(L);
    rf__api_open_crm(L);
    rf_api_publish(L, "http");
    rf_api_publish(L, "store");
    rf_api_publish(L, "crm");
}

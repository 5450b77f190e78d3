/* The script engine: tenants and their script versions, loading and
 * reloading them, the Zoho connection each keeps, and the engine's life.
 * The calls themselves are in engine_call.c. */
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

/* --- tenants and versions ----------------------------------------------- */

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;

    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h % BUCKETS;
}

struct tenant_rt *rf__engine_find_tenant(const struct rf_engine *e,
                                         const char *id)
{
    struct tenant_rt *t = e->buckets[hash(id)];

    while (t && strcmp(t->id, id) != 0) {
        t = t->next;
    }
    return t;
}

void rf__engine_free_version(struct version *v)
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
        rf__engine_free_version(v);
    }
}

static int load_version(const struct rf_tenant_env *env, const char *dir,
                        const char *id, struct version **out, char *err,
                        size_t errlen)
{
    struct version *v = calloc(1, sizeof(*v));
    lua_State *L;
    int rc;

    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return RF_ENOMEM;
    }
    rc = rf_tenant_load(dir, id, env, &v->settings, &v->sb, err, errlen);
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
        rf_log_error("zoho", RF_F("tenant", t->id),
                     "cannot open the "
                     "connection: %s",
                     err);
        return;
    }
    memcpy(t->zoho_conn, zs->connection, sizeof(t->zoho_conn));
}

struct rf_zoho *rf_engine_zoho(const struct rf_engine *e, const char *tenant)
{
    const struct tenant_rt *t = rf__engine_find_tenant(e, tenant);

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

/* Switches tenant `id` to the loaded version v (taken). */
static int install_version(struct rf_engine *e, const char *dir,
                           const char *id, struct version *v, int rebuild)
{
    struct tenant_rt *t = rf__engine_find_tenant(e, id);

    if (t == NULL) {
        unsigned b = hash(id);

        t = calloc(1, sizeof(*t));
        if (t == NULL || !(t->id = strdup(id)) || !(t->dir = strdup(dir))) {
            if (t) {
                free(t->id);
            }
            free(t);
            rf__engine_free_version(v);
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

/* Loads the tenant's files and puts the new version in place: for a
 * reload, or (`rebuild`) to replace a state a limit may have left
 * inconsistent. */
int rf__engine_install(struct rf_engine *e, const char *dir, const char *id,
                       int rebuild, char *err, size_t errlen)
{
    struct version *v = NULL;
    int rc = load_version(&e->o.env, dir, id, &v, err, errlen);

    if (rc != 0) {
        e->stats.reload_failures++;
        return rc;
    }
    rc = install_version(e, dir, id, v, rebuild);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
    }
    return rc;
}

int rf_engine_load(struct rf_engine *e, const char *dir, const char *id,
                   char *err, size_t errlen)
{
    return rf__engine_install(e, dir, id, 0, err, errlen);
}

int rf_engine_prepare(const struct rf_tenant_env *env, const char *dir,
                      const char *id, struct rf_engine_loaded **out,
                      char *err, size_t errlen)
{
    struct version *v = NULL;
    int rc = load_version(env, dir, id, &v, err, errlen);

    *out = (struct rf_engine_loaded *)v;
    return rc;
}

int rf_engine_take(struct rf_engine *e, const char *dir, const char *id,
                   struct rf_engine_loaded *l)
{
    const struct version *v = (const struct version *)l;
    int added, rc;

    if (l == NULL) {
        e->stats.reload_failures++;
        return RF_EINVAL;
    }
    added = rf__engine_find_tenant(e, id) == NULL;
    rc = install_version(e, dir, id, (struct version *)l, 0);
    if (rc == 0 && added) {
        /* the start-up load is summed up in one line instead */
        rf_log_info("script", RF_F("tenant", id, "version",
                                   v->settings->version),
                    "loaded a new tenant");
    }
    return rc;
}

void rf_engine_loaded_free(struct rf_engine_loaded *l)
{
    if (l != NULL) {
        rf__engine_free_version((struct version *)l);
    }
}

void rf_engine_unload(struct rf_engine *e, const char *id)
{
    struct tenant_rt *t = rf__engine_find_tenant(e, id);

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
        } else {
            rf_engine_note_failure(e, ent->d_name, err);
        }
    }
    closedir(d);
    rf_engine_forget_gone(e, dir);
    return n;
}

void rf_engine_note_failure(const struct rf_engine *e, const char *id,
                            const char *err)
{
    int line = (int)strcspn(err, "\n"); /* logs carry no traceback */

    if (rf_engine_tenant(e, id) != NULL) {
        /* The intake's registry logged the same failure as an error (it
         * loads the same files). */
        rf_log_debug("script", RF_F("tenant", id),
                     "hooks keep running the previous version: %.*s", line,
                     err);
    } else {
        rf_log_error("script", RF_F("tenant", id), "cannot load: %.*s",
                     line, err);
    }
}

void rf_engine_forget_gone(struct rf_engine *e, const char *dir)
{
    /* Tenants whose folder is gone are forgotten, as the registry does. */
    for (int b = 0; b < BUCKETS; b++) {
        for (struct tenant_rt *t = e->buckets[b]; t; t = t->next) {
            if (t->cur != NULL && !rf_tenant_folder_exists(dir, t->id)) {
                rf_engine_unload(e, t->id);
            }
        }
    }
}

const struct rf_tenant *rf_engine_tenant(const struct rf_engine *e,
                                         const char *id)
{
    const struct tenant_rt *t = rf__engine_find_tenant(e, id);

    return t && t->cur ? t->cur->settings : NULL;
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
            rf__engine_finish(c, RF_ETIMEOUT, msg, NULL, NULL);
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
        e->writer =
            rf_writer_start(opts->loop, opts->store, RF_WRITER_GROUP, 0);
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
        rf__engine_finish(e->calls, RF_ESTOPPING, "the engine is stopping",
                          NULL, NULL);
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

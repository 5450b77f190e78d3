/* The tenant registry: loads each tenant folder's tenant.lua in a sandbox
 * and keeps its checked settings. */
#include "referee/tenant.h"
#include "referee/config.h"
#include "referee/error.h"
#include "referee/http_client.h"
#include "referee/log.h"
#include "referee/reader.h"
#include "referee/sandbox.h"

#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <openssl/evp.h>

static const char *const source_keys[] = {"secret", "id", "format",
                                          "keep_headers", "hook", NULL};

/* Tenant ids are words of a-z and 0-9 joined by single hyphens, so that
 * the prefix of a tenant's environment variables (load.c: upper case, '-'
 * as '_', then "__") names exactly one tenant: with '_' or "--" allowed,
 * "acme" could read ACME_EU's variables, or "acme-eu" and "acme_eu" share
 * them. */
int rf_tenant_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > RF_TENANT_ID_MAX || id[0] == '-' ||
        id[len - 1] == '-') {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 (c == '-' && id[i - 1] != '-');

        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* Source names: a-z, 0-9, and '-' or '_' after the first character. */
static int source_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > RF_TENANT_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 (i > 0 && (c == '-' || c == '_'));

        if (!ok) {
            return 0;
        }
    }
    return 1;
}

static void free_source(struct rf_source *s)
{
    free(s->name);
    if (s->secret) {
        OPENSSL_cleanse(s->secret, s->secret_len);
        free(s->secret);
    }
    free(s->id_key);
    free(s->hook);
    for (size_t i = 0; i < s->nkeep; i++) {
        free(s->keep[i]);
    }
}

/* Frees what a tenant owns, not the struct itself. */
static void free_members(struct rf_tenant *t)
{
    for (size_t i = 0; i < t->nsources; i++) {
        free_source(&t->sources[i]);
    }
    free(t->sources);
    for (size_t i = 0; i < t->nallow; i++) {
        free((char *)t->allow[i].host);
    }
    rf__tenant_zoho_free(t->zoho);
    rf__tenant_program_free(t->program);
    free(t->id);
    free(t->dir);
    free(t->error);
}

void rf_tenant_free(struct rf_tenant *t)
{
    if (t == NULL) {
        return;
    }
    free_members(t);
    free(t);
}

/* Decodes a Standard Webhooks secret ("whsec_" + base64) or takes the
 * string's bytes as the key. */
static int set_secret(struct rf_reader *r, const char *path, const char *s,
                      struct rf_source *src)
{
    return rf__tenant_secret(r, path, s, &src->secret, &src->secret_len);
}

/* Dot-separated member names, none empty or RF_ID_SEGMENT_MAX long. */
static int json_path_ok(const char *s)
{
    while (1) {
        size_t len = strcspn(s, ".");

        if (len == 0 || len >= RF_ID_SEGMENT_MAX) {
            return 0;
        }
        if (s[len] == '\0') {
            return 1;
        }
        s += len + 1;
    }
}

static int read_id(struct rf_reader *r, const char *path,
                   struct rf_source *src)
{
    char *spec = NULL;
    int rc = rf_reader_string(r, -1, path, "id", &spec, 0);
    char full[256];

    rf_reader_join(full, sizeof(full), path, "id");
    if (rc != 0 || spec == NULL) {
        src->id_from = RF_ID_HEADER; /* the Standard Webhooks default */
        rc = rc ? rc : rf_config_set_string(&src->id_key, "webhook-id");
        free(spec);
        return rc;
    }
    if (strncmp(spec, "header:", 7) == 0 &&
        !rf_http_token(spec + 7, strlen(spec + 7))) {
        rc = rf_reader_fail(r, full,
                            "\"header:NAME\" needs a header name (letters, "
                            "digits and !#$%%&'*+-.^_`|~), got \"%s\"",
                            spec);
    } else if (strncmp(spec, "json:", 5) == 0 && !json_path_ok(spec + 5)) {
        rc = rf_reader_fail(r, full,
                            "\"json:PATH\" needs member names joined by "
                            "dots, none empty or over %d bytes, got \"%s\"",
                            RF_ID_SEGMENT_MAX - 1, spec);
    } else if (strncmp(spec, "header:", 7) == 0) {
        src->id_from = RF_ID_HEADER;
        rc = rf_config_set_string(&src->id_key, spec + 7);
    } else if (strncmp(spec, "json:", 5) == 0) {
        src->id_from = RF_ID_JSON;
        rc = rf_config_set_string(&src->id_key, spec + 5);
    } else if (strcmp(spec, "none") == 0) {
        src->id_from = RF_ID_NONE;
    } else {
        rc = rf_reader_fail(r, full,
                            "expected \"header:NAME\", \"json:PATH\" or "
                            "\"none\", got \"%s\"",
                            spec);
    }
    src->id_required = src->id_from != RF_ID_NONE;
    free(spec);
    return rc;
}

static int read_format(struct rf_reader *r, const char *path,
                       struct rf_source *src)
{
    char *fmt = NULL, full[256];
    int rc = rf_reader_string(r, -1, path, "format", &fmt, 0);

    src->json = 1;
    if (rc == 0 && fmt != NULL) {
        if (strcmp(fmt, "raw") == 0) {
            src->json = 0;
        } else if (strcmp(fmt, "json") != 0) {
            rc = rf_reader_fail(r, rf_reader_join(full, sizeof(full), path,
                                                  "format"),
                                "expected \"json\" or \"raw\"");
        }
    }
    free(fmt);
    return rc;
}

static int read_keep(struct rf_reader *r, const char *path,
                     struct rf_source *src)
{
    lua_State *L = r->L;
    char full[256];
    int t = rf_reader_get(L, -1, "keep_headers"), rc = 0;
    lua_Integer n;

    rf_reader_join(full, sizeof(full), path, "keep_headers");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (t != LUA_TTABLE) {
        lua_pop(L, 1);
        return rf_reader_fail(r, full, "expected a list of header names");
    }
    n = (lua_Integer)lua_rawlen(L, -1);
    if (n > RF_SOURCE_KEEP_MAX) {
        rc = rf_reader_fail(r, full, "at most %d headers",
                            RF_SOURCE_KEEP_MAX);
    }
    for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
            rc = rf_reader_fail(r, full, "item %lld is not a string",
                                (long long)i);
        } else {
            src->keep[src->nkeep] = strdup(lua_tostring(L, -1));
            rc = src->keep[src->nkeep++] ? 0 : RF_ENOMEM;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* Reads the source table at -1 named `name`. */
static int read_source(struct rf_reader *r, const char *name,
                       struct rf_source *src)
{
    char path[128], *secret = NULL;
    int rc;

    snprintf(path, sizeof(path), "sources.%s", name);
    if (!source_name_valid(name, strlen(name))) {
        return rf_reader_fail(r, path, "source names use a-z, 0-9, - and _");
    }
    if (strcmp(name, "zoho") == 0) {
        return rf_reader_fail(r, path, "the source name 'zoho' is kept for "
                                       "Zoho notifications (zoho.notify)");
    }
    if (!lua_istable(r->L, -1)) {
        return rf_reader_fail(r, path, "expected a table");
    }
    src->name = strdup(name);
    if (src->name == NULL) {
        return RF_ENOMEM;
    }
    rc = rf_reader_known_keys(r, -1, path, source_keys);
    if (rc == 0) {
        rc = rf_reader_string(r, -1, path, "secret", &secret, 0);
    }
    if (rc == 0 && secret) {
        char full[160];

        rc = set_secret(r, rf_reader_join(full, sizeof(full), path, "secret"),
                        secret, src);
    }
    if (secret) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    if (rc == 0) {
        rc = read_id(r, path, src);
    }
    if (rc == 0) {
        rc = read_format(r, path, src);
    }
    if (rc == 0) {
        rc = read_keep(r, path, src);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, path, "hook", &src->hook, 0);
    }
    return rc;
}

int rf__tenant_read_sources(struct rf_reader *r, struct rf_tenant *t)
{
    lua_State *L = r->L;
    int type = rf_reader_get(L, -1, "sources"), rc = 0;
    size_t cap = 0;

    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (type != LUA_TTABLE) {
        lua_pop(L, 1);
        return rf_reader_fail(r, "sources", "expected a table");
    }
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            rc = rf_reader_fail(r, "sources", "keys must be source names");
        } else if (t->nsources == cap) {
            struct rf_source *v;

            cap = cap ? cap * 2 : 4;
            v = realloc(t->sources, cap * sizeof(*v));
            rc = v ? 0 : RF_ENOMEM;
            t->sources = v ? v : t->sources;
        }
        if (rc == 0) {
            struct rf_source *s = &t->sources[t->nsources++];

            memset(s, 0, sizeof(*s));
            rc = read_source(r, lua_tostring(L, -2), s);
        }
        lua_pop(L, 1);
    }
    if (rc != 0) {
        lua_pop(L, 1); /* the key lua_next left */
    }
    lua_pop(L, 1);
    return rc;
}

static int cmp_tenant(const void *a, const void *b)
{
    return strcmp(((const struct rf_tenant *)a)->id,
                  ((const struct rf_tenant *)b)->id);
}

/* Appends t's members as a new entry and keeps the array sorted. */
static int insert(struct rf_tenants *ts, struct rf_tenant *t)
{
    struct rf_tenant *v = realloc(ts->v, (ts->n + 1) * sizeof(*v));

    if (v == NULL) {
        return RF_ENOMEM;
    }
    ts->v = v;
    ts->v[ts->n++] = *t;
    free(t); /* its members now belong to ts->v */
    qsort(ts->v, ts->n, sizeof(*ts->v), cmp_tenant);
    return 0;
}

/* The entry of tenant `id` in ts, for changing it. NULL when unknown. */
static struct rf_tenant *find_mut(struct rf_tenants *ts, const char *id)
{
    return (struct rf_tenant *)rf_tenant_find(ts, id, strlen(id));
}

/* A registry entry that holds only a load error. Caller owns it. */
static struct rf_tenant *placeholder(const char *id, const char *path,
                                     const char *err)
{
    struct rf_tenant *t = calloc(1, sizeof(*t));

    if (t == NULL || !(t->id = strdup(id)) || !(t->dir = strdup(path)) ||
        !(t->error = strdup(err))) {
        rf_tenant_free(t);
        return NULL;
    }
    return t;
}

int rf_tenant_folder_exists(const char *dir, const char *id)
{
    char path[4096];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, id);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Drops entry `t` of ts, keeping the array sorted. */
static void remove_entry(struct rf_tenants *ts, struct rf_tenant *t)
{
    size_t i = (size_t)(t - ts->v);

    free_members(t);
    memmove(&ts->v[i], &ts->v[i + 1], (ts->n - i - 1) * sizeof(*ts->v));
    ts->n--;
}

void rf_tenant_reload_prepare(const char *dir, const char *id,
                              const struct rf_tenant_env *env,
                              struct rf_tenant_loaded *out)
{
    char path[4096];

    out->t = NULL;
    out->err[0] = '\0';
    out->gone = !rf_tenant_folder_exists(dir, id);
    if (out->gone) {
        snprintf(out->err, sizeof(out->err), "the folder %s/%s is gone", dir,
                 id);
        out->rc = RF_ENOTFOUND;
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, id);
    out->rc = rf_tenant_load(path, id, env, &out->t, NULL, out->err,
                             sizeof(out->err));
    if (out->rc != 0 && out->err[0] == '\0') {
        /* The folder went away while it loaded, say. */
        snprintf(out->err, sizeof(out->err), "%.1024s: %s", path,
                 rf_strerror(out->rc));
    }
}

int rf_tenants_reload_one(struct rf_tenants *ts, const char *dir,
                          const char *id, const struct rf_tenant_env *env,
                          char *err, size_t errlen)
{
    struct rf_tenant_loaded *l = malloc(sizeof(*l));
    int rc;

    if (l == NULL) {
        return RF_ENOMEM;
    }
    rf_tenant_reload_prepare(dir, id, env, l);
    rc = rf_tenants_reload_finish_one(ts, dir, id, l);
    snprintf(err, errlen, "%s", l->err);
    free(l);
    return rc;
}

int rf_tenants_reload_finish_one(struct rf_tenants *ts, const char *dir,
                                 const char *id, struct rf_tenant_loaded *l)
{
    struct rf_tenant *old = find_mut(ts, id);
    struct rf_tenant *t = l->t;
    const char *err = l->err;
    char path[4096];
    int rc = l->rc;

    l->t = NULL; /* ours from here */
    if (l->gone) {
        if (old != NULL) {
            remove_entry(ts, old);
        }
        return RF_ENOTFOUND;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, id);
    if (rc != 0 && old == NULL) {
        t = placeholder(id, path, err);
        if (t == NULL) {
            return RF_ENOMEM;
        }
        return insert(ts, t) == 0 ? rc : RF_ENOMEM;
    }
    if (rc != 0 && old->error != NULL) {
        char *e = strdup(err); /* no good version yet: show the new error */

        if (e != NULL) {
            free(old->error);
            old->error = e;
        }
        return rc;
    }
    if (rc != 0) {
        return rc; /* the old entry keeps serving */
    }
    if (old == NULL) {
        rc = insert(ts, t);
        if (rc != 0) {
            rf_tenant_free(t);
        }
        return rc;
    }
    free_members(old);
    *old = *t;
    free(t);
    return 0;
}

/* Adds the tenant in folder `name`, or a placeholder holding its error.
 * `prev` (may be NULL) is the registry ts will replace: when it has a good
 * version of a tenant that fails, the log says that version keeps serving
 * (rf_tenants_reload() puts it back). */
static int add_tenant(struct rf_tenants *ts, const struct rf_tenants *prev,
                      const char *dir, const char *name,
                      const struct rf_tenant_env *env)
{
    char path[4096], err[2048];
    struct rf_tenant *t = NULL;
    const struct rf_tenant *old;
    struct stat st;
    int rc, line;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (name[0] == '.' || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return 0;
    }
    if (!rf_tenant_id_valid(name, strlen(name))) {
        rf_log_warn("tenant", RF_F("dir", dir, "folder", name),
                    "ignored: a tenant folder's name is its id: words of "
                    "a-z and 0-9 joined by single '-', at most %d bytes",
                    RF_TENANT_ID_MAX);
        return 0;
    }
    rc = rf_tenant_load(path, name, env, &t, NULL, err, sizeof(err));
    old = rc != 0 && prev ? rf_tenant_find(prev, name, strlen(name)) : NULL;
    line = (int)strcspn(err, "\n"); /* logs carry no traceback */
    if (rc != 0) {
        rf_log_error("tenant", RF_F("tenant", name), "%s: %.*s",
                     old && !old->error ? "files do not load; the previous "
                                          "version keeps serving"
                                        : "cannot load",
                     line, err);
        t = placeholder(name, path, err);
        if (t == NULL) {
            return RF_ENOMEM;
        }
    }
    ts->v[ts->n++] = *t;
    free(t); /* its members now belong to ts->v */
    return 0;
}

/* Reads every folder of dir into a new registry; see rf_tenants_load()
 * and rf_tenants_reload(). */
static int load_all(const char *dir, const struct rf_tenant_env *env,
                    const struct rf_tenants *prev, struct rf_tenants **out)
{
    struct rf_tenants *ts = calloc(1, sizeof(*ts));
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t cap = 0;
    int rc = 0;

    if (d == NULL || ts == NULL) {
        rc = d == NULL ? -errno : RF_ENOMEM;
        goto out;
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (ts->n == cap) {
            struct rf_tenant *v;

            cap = cap ? cap * 2 : 16;
            v = realloc(ts->v, cap * sizeof(*v));
            if (v == NULL) {
                rc = RF_ENOMEM;
                break;
            }
            ts->v = v;
        }
        rc = add_tenant(ts, prev, dir, e->d_name, env);
    }
    if (rc == 0 && ts->n > 1) {
        qsort(ts->v, ts->n, sizeof(*ts->v), cmp_tenant);
    }
    for (size_t i = 0; rc == 0 && i < ts->n; i++) {
        ts->failed += ts->v[i].error != NULL;
    }
out:
    if (d) {
        closedir(d);
    }
    if (rc != 0) {
        rf_tenants_free(ts);
        ts = NULL;
    }
    *out = ts;
    return rc;
}

int rf_tenants_load(const char *dir, const struct rf_tenant_env *env,
                    struct rf_tenants **out)
{
    return load_all(dir, env, NULL, out);
}

int rf_tenants_reload(struct rf_tenants **ts, const char *dir,
                      const struct rf_tenant_env *env)
{
    struct rf_tenants *next = NULL;
    int rc = rf_tenants_reload_prepare(dir, env, *ts, &next);

    if (rc == 0) {
        rf_tenants_reload_finish(ts, next);
    }
    return rc;
}

int rf_tenants_reload_prepare(const char *dir, const struct rf_tenant_env *env,
                              const struct rf_tenants *prev,
                              struct rf_tenants **next)
{
    return load_all(dir, env, prev, next);
}

void rf_tenants_reload_finish(struct rf_tenants **ts, struct rf_tenants *next)
{
    for (size_t i = 0; *ts != NULL && i < (*ts)->n; i++) {
        struct rf_tenant *old = &(*ts)->v[i], *now;

        now = find_mut(next, old->id);
        if (now == NULL) {
            rf_log_info("tenant", RF_F("tenant", old->id),
                        "removed: its folder is gone; its webhooks now get "
                        "404 tenant_not_found");
        } else if (now->error != NULL && old->error == NULL) {
            struct rf_tenant keep = *old; /* same id: both stay sorted */

            *old = *now;
            *now = keep;
        }
    }
    rf_tenants_free(*ts);
    *ts = next;
}

void rf_tenants_free(struct rf_tenants *ts)
{
    if (ts == NULL) {
        return;
    }
    for (size_t i = 0; i < ts->n; i++) {
        free_members(&ts->v[i]);
    }
    free(ts->v);
    free(ts);
}

const struct rf_tenant *rf_tenant_find(const struct rf_tenants *ts,
                                       const char *id, size_t len)
{
    size_t lo = 0, hi = ts->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *k = ts->v[mid].id;
        int c = strncmp(k, id, len);

        if (c == 0 && k[len] != '\0') {
            c = 1;
        }
        if (c == 0) {
            return &ts->v[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

const struct rf_source *rf_source_find(const struct rf_tenant *t,
                                       const char *name, size_t len)
{
    for (size_t i = 0; i < t->nsources; i++) {
        const char *n = t->sources[i].name;

        if (strncmp(n, name, len) == 0 && n[len] == '\0') {
            return &t->sources[i];
        }
    }
    return NULL;
}

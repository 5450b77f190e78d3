/* Tenants: one folder each under the tenants directory, holding tenant.lua,
 * which returns the tenant's settings (for now: its webhook sources).
 *
 *     return {
 *       sources = {
 *         shop = { secret = env("ACME_SHOP_SECRET"),  -- Standard Webhooks
 *                  id = "header:webhook-id",          -- delivery id for dedup
 *                  format = "json",                   -- or "raw"
 *                  keep_headers = { "x-shop-topic" } },
 *       },
 *     }
 *
 * Caveats: a tenant whose tenant.lua fails to load at start is kept in the
 * registry with its error, so requests for it get 503 rather than 404; on a
 * reload, one that had a good version keeps serving it. A tenant whose
 * folder is removed is dropped: requests for it get 404.
 */
#ifndef REFEREE_TENANT_H
#define REFEREE_TENANT_H

#include <stddef.h>

#include "referee/http_client.h"
#include "referee/reader.h"
#include "referee/sandbox.h"

#define RF_TENANT_ID_MAX 64

/* The most a tenant's limits.cpu_ms and limits.memory_mb may ask for when
 * the operator sets no cap (scripts.cpu_ms_max, scripts.memory_mb_max). */
#define RF_TENANT_CPU_MS_CAP 1000
#define RF_TENANT_MEM_MB_CAP 256
#define RF_TENANT_HOSTS_MAX 32

/* What a tenant's store.put values (with their keys) may take in all:
 * limits.store_mb, 1 to the maximum, default the default. */
#define RF_TENANT_STORE_MB_DEFAULT 64
#define RF_TENANT_STORE_MB_MAX 4096

/* The hooks a tenant script may define (DESIGN.md, "Scripts"). */
enum rf_hook {
    RF_HOOK_COHORT = 0,
    RF_HOOK_CAPTURE,
    RF_HOOK_MILESTONE,
    RF_HOOK_REWARD,
    RF_HOOK_COUNT
};
#define RF_SOURCE_KEEP_MAX 16

enum rf_id_from { RF_ID_NONE = 0, RF_ID_HEADER, RF_ID_JSON };

/* A member name of a "json:" id path is shorter than this. */
#define RF_ID_SEGMENT_MAX 128

struct rf_source {
    char *name;
    unsigned char *secret; /* HMAC key; NULL when the source is unsigned */
    size_t secret_len;
    enum rf_id_from id_from;
    char *id_key;          /* header name or dotted JSON path */
    int id_required;       /* set explicitly: a delivery without it is 400 */
    int json;              /* body must be JSON */
    char *keep[RF_SOURCE_KEEP_MAX]; /* extra header names to store */
    size_t nkeep;
    char *hook;            /* function run for each stored event, or NULL */
};

#define RF_TENANT_ZOHO_MODULES_MAX 8
#define RF_TENANT_ZOHO_EVENTS_MAX 16

/* A Zoho module the tenant polls, and the fields read from it. */
struct rf_tenant_zoho_module {
    char *name;   /* API name: Contacts, Leads, Deals, ... */
    char *fields; /* comma-separated API names */
};

/* The `zoho` table of tenant.lua (docs/zoho.md, "Tenant settings"). */
struct rf_tenant_zoho {
    char *client_id, *client_secret, *refresh_token; /* secrets: never log */
    char *dc, *accounts_url, *api_domain, *edition, *api_version;
    unsigned users, concurrency;
    unsigned long long credits_per_day;
    struct rf_http_allow allow[RF_TENANT_HOSTS_MAX]; /* empty: Zoho's */
    size_t nallow;
    struct rf_tenant_zoho_module modules[RF_TENANT_ZOHO_MODULES_MAX];
    size_t nmodules;
    unsigned poll_every_s;  /* between polls of each module */
    char *notify_url;       /* Watch channel callbacks go here; NULL: none */
    char *notify_token;     /* echoed by Zoho, checked on each callback */
    char *channel_id;       /* digits */
    char *events[RF_TENANT_ZOHO_EVENTS_MAX];
    size_t nevents;
    /* First 16 hex digits of SHA-256 over the connection settings: a
     * reload that keeps it keeps the open connection. */
    char connection[17];
};

/* The `program` table of tenant.lua: how people reach the referral
 * program (docs/workflow.md). */
struct rf_tenant_program {
    char *landing;     /* URL with {code}: where GET /r/{code} redirects */
    char *link;        /* URL with {code}: the referral link of a referrer */
    char *code_field;  /* Contacts field the code is written back to */
    char *link_field;  /* Contacts field the link is written back to */
    unsigned char *secret; /* signs server-to-server referral posts */
    size_t secret_len;
    unsigned form_per_minute; /* unsigned posts per client address */
};

struct rf_tenant {
    char *id;
    char *dir;
    char *error; /* NULL when loaded; otherwise why it is unavailable */
    char version[17]; /* first 16 hex digits of SHA-256 of tenant.lua */
    struct rf_source *sources;
    size_t nsources;
    unsigned hooks;   /* bit (1 << enum rf_hook) for each hook defined */
    size_t mem_max;   /* sandbox memory cap, bytes (0: default) */
    unsigned cpu_ms;  /* CPU budget per hook call (0: default) */
    size_t store_max; /* bytes of store.put keys and values (0: default) */
    struct rf_http_allow allow[RF_TENANT_HOSTS_MAX]; /* strings owned */
    size_t nallow;
    struct rf_tenant_zoho *zoho; /* NULL: no Zoho connection */
    struct rf_tenant_program *program; /* NULL: no referral program */
};

/* What loading a tenant needs from the process. */
struct rf_tenant_env {
    const char *const *plugin_path; /* NULL-terminated; borrowed */
    size_t mem_max;                 /* default cap when a tenant sets none */
    unsigned cpu_ms;                /* default budget */
    size_t mem_cap;      /* most limits.memory_mb may ask for, bytes
                            (0: RF_TENANT_MEM_MB_CAP MiB) */
    unsigned cpu_ms_cap; /* most limits.cpu_ms may ask for
                            (0: RF_TENANT_CPU_MS_CAP) */
    size_t store_cap;    /* most limits.store_mb may ask for, bytes
                            (0: RF_TENANT_STORE_MB_MAX MiB) */
    int refuse_private;  /* allowed hosts may not say private = true (the
                            daemon, unless scripts.allow_private) */
};

struct rf_tenants {
    struct rf_tenant *v; /* sorted by id */
    size_t n;
    size_t failed; /* of n, whose files did not load when these were read
                    * (after a reload some keep their previous version) */
};

/* Loads every tenant folder under `dir` (`env` may be NULL). A tenant that
 * fails to load is kept with its error (and logged); a folder whose name
 * is not a valid tenant id is skipped with a warning; only an unreadable
 * `dir` fails the whole call, returning -errno. Caller owns *out; free
 * with rf_tenants_free(). */
int rf_tenants_load(const char *dir, const struct rf_tenant_env *env,
                    struct rf_tenants **out);

/* Loads every tenant folder under `dir` again and replaces *ts with the
 * result, the way the folder watcher reloads one tenant: a tenant whose
 * files fail to load keeps its previous good version from *ts (and the
 * failure is logged); one that had none is kept holding its error; a
 * tenant whose folder is gone is dropped (and logged). Returns 0, or
 * -errno / RF_ENOMEM with *ts unchanged. Pointers into the old registry
 * are invalid afterwards. */
int rf_tenants_reload(struct rf_tenants **ts, const char *dir,
                      const struct rf_tenant_env *env);

/* Loads one tenant folder: runs tenant.lua in a new sandbox made for tenant
 * scripts (plugins on env's path, the script API, env() and file()) and
 * checks its settings, including that its limits are within env's caps.
 * On failure returns RF_ECONFIG (or another code) and writes
 * "file:line: cause" into err. On success the caller owns *out (free
 * with rf_tenant_free()) and, when `sb` is not NULL, the sandbox in *sb
 * with the settings table on its stack top (free with rf_sandbox_free());
 * otherwise the sandbox is freed. `env` may be NULL for the defaults. */
int rf_tenant_load(const char *dir, const char *id,
                   const struct rf_tenant_env *env, struct rf_tenant **out,
                   struct rf_sandbox **sb, char *err, size_t errlen);

/* Reads and checks the settings table at the top of r->L into t. Returns 0
 * or RF_ECONFIG with r->err set. */
int rf_tenant_read(struct rf_reader *r, struct rf_tenant *t);

/* Name of a hook ("cohort"...). */
const char *rf_hook_name(enum rf_hook h);

/* Loads every tenant folder under `dir` into *next, as rf_tenants_reload()
 * does, without touching the registry `prev` (read only for log lines),
 * so that any thread may do it while the loop goes on serving; the loop
 * then calls rf_tenants_reload_finish(), which takes next. Returns 0, or
 * -errno / RF_ENOMEM. */
int rf_tenants_reload_prepare(const char *dir, const struct rf_tenant_env *env,
                              const struct rf_tenants *prev,
                              struct rf_tenants **next);
void rf_tenants_reload_finish(struct rf_tenants **ts, struct rf_tenants *next);

/* One tenant loaded away from the registry, for
 * rf_tenants_reload_finish_one(). */
struct rf_tenant_loaded {
    int rc;              /* of rf_tenant_load() */
    int gone;            /* the folder no longer exists */
    struct rf_tenant *t; /* on success */
    char err[2048];      /* "file:line: cause" on failure */
};

/* Loads tenant `id` from dir/id into *out; any thread. */
void rf_tenant_reload_prepare(const char *dir, const char *id,
                              const struct rf_tenant_env *env,
                              struct rf_tenant_loaded *out);

/* Puts a tenant loaded by rf_tenant_reload_prepare() in the registry, as
 * rf_tenants_reload_one() does, and takes l->t. Loop thread. Returns 0,
 * RF_ENOTFOUND (folder gone, entry removed) or the load's error code. */
int rf_tenants_reload_finish_one(struct rf_tenants *ts, const char *dir,
                                 const char *id, struct rf_tenant_loaded *l);

/* Loads tenant `id` from dir/id again and puts it in the registry in place
 * of the old entry (or adds it). When loading fails an existing entry is
 * kept as it was and the error returned (written into err); a new one is
 * added holding the error. When the folder dir/id is gone the entry is
 * removed and RF_ENOTFOUND returned. Returns 0, or the load's error code.
 * Pointers into the registry are invalid afterwards. */
int rf_tenants_reload_one(struct rf_tenants *ts, const char *dir,
                          const char *id, const struct rf_tenant_env *env,
                          char *err, size_t errlen);

/* Frees a registry or a single tenant. Accept NULL. */
void rf_tenants_free(struct rf_tenants *ts);
void rf_tenant_free(struct rf_tenant *t);

/* Finds a tenant by id (`len` bytes, not NUL-terminated). Borrowed; valid
 * until the registry is freed. NULL when unknown. */
const struct rf_tenant *rf_tenant_find(const struct rf_tenants *ts,
                                       const char *id, size_t len);

/* Finds a source of a tenant by name (`len` bytes). NULL when unknown. */
const struct rf_source *rf_source_find(const struct rf_tenant *t,
                                       const char *name, size_t len);

/* Whether dir/id exists and is a folder (a tenant that was not removed). */
int rf_tenant_folder_exists(const char *dir, const char *id);

/* Whether `id` (len bytes) is a valid tenant id: [a-z0-9]+(-[a-z0-9]+)*
 * up to RF_TENANT_ID_MAX bytes. (Source names also allow '_'.) */
int rf_tenant_id_valid(const char *id, size_t len);

#endif

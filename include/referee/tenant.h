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
 * Caveats: a tenant whose tenant.lua fails to load is kept in the registry
 * with its error, so requests for it get 503 rather than 404.
 */
#ifndef REFEREE_TENANT_H
#define REFEREE_TENANT_H

#include <stddef.h>

#define RF_TENANT_ID_MAX 64
#define RF_SOURCE_KEEP_MAX 16

enum rf_id_from { RF_ID_NONE = 0, RF_ID_HEADER, RF_ID_JSON };

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
};

struct rf_tenant {
    char *id;
    char *dir;
    char *error; /* NULL when loaded; otherwise why it is unavailable */
    struct rf_source *sources;
    size_t nsources;
};

struct rf_tenants {
    struct rf_tenant *v; /* sorted by id */
    size_t n;
};

/* Loads every tenant folder under `dir`. A tenant that fails to load is
 * kept with its error (and logged); only an unreadable `dir` fails the
 * whole call, returning -errno. Caller owns *out; free with
 * rf_tenants_free(). */
int rf_tenants_load(const char *dir, struct rf_tenants **out);

/* Loads one tenant folder. On failure returns RF_ECONFIG (or another code)
 * and writes "file:line: cause" into err. Caller owns *out on success;
 * free with rf_tenant_free(). */
int rf_tenant_load(const char *dir, const char *id, struct rf_tenant **out,
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

/* Whether `id` (len bytes) is a valid tenant or source name:
 * [a-z0-9][a-z0-9_-]* up to RF_TENANT_ID_MAX bytes. */
int rf_tenant_id_valid(const char *id, size_t len);

#endif

/* Loads tenants for the loop on a libuv worker thread, one load at a time,
 * and puts the result in the loop's registry once it is done.
 *
 * Loading runs the tenant's tenant.lua, which may take up to its CPU
 * budget (a second with limits.cpu_ms) and reads its files; on the loop
 * that would hold every tenant's webhooks for as long. Loads are queued:
 * a tenant already waiting is not queued twice, and a reload of every
 * tenant takes the place of the single ones waiting. Loop thread only.
 */
#ifndef REFEREE_TENANT_LOADER_H
#define REFEREE_TENANT_LOADER_H

#include <uv.h>

#include "referee/tenant.h"

/* Called on the loop after the registry took a load: `id` is the tenant,
 * or NULL after a reload of all; rc and err as rf_tenants_reload_one()
 * (or rf_tenants_reload()) give them. */
typedef void (*rf_tenant_loaded_cb)(void *arg, const char *id, int rc,
                                    const char *err);

struct rf_tenant_loader;

/* `dir` and `env` must outlive the loader; `*ts` is the registry it
 * updates (rf_tenants_reload_finish() may replace it). NULL on ENOMEM. */
struct rf_tenant_loader *rf_tenant_loader_new(uv_loop_t *loop, const char *dir,
                                              const struct rf_tenant_env *env,
                                              struct rf_tenants **ts,
                                              rf_tenant_loaded_cb cb,
                                              void *arg);

/* Queues a load of tenant `id` (copied), or of every tenant. */
void rf_tenant_loader_one(struct rf_tenant_loader *l, const char *id);
void rf_tenant_loader_all(struct rf_tenant_loader *l);

/* Drops what waits; a load under way finishes on its thread and is thrown
 * away, and then the loader frees itself. Accepts NULL. */
void rf_tenant_loader_stop(struct rf_tenant_loader *l);

#endif

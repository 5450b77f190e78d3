/* The script engine: every tenant's Lua state on one libuv loop, hook calls
 * run as coroutines, and the parts of the script API that wait (http,
 * store) wired to that loop. The daemon runs an engine on a thread of its
 * own (runtime.h); `referee call` runs one on its main thread.
 *
 * Versions: loading a tenant again builds its new state beside the old one
 * and switches only if the new one loads and checks; calls in flight finish
 * on the version they started with, which is freed after the last of them.
 *
 * Caveats: everything here runs on the engine's loop thread.
 */
#ifndef REFEREE_ENGINE_H
#define REFEREE_ENGINE_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "referee/store.h"
#include "referee/tenant.h"
#include "referee/writer.h"

struct rf_engine_opts {
    uv_loop_t *loop;           /* borrowed */
    struct rf_store *store;    /* borrowed; NULL: the store API fails */
    struct rf_tenant_env env;  /* plugin path, default limits */
    const char *ca_file;       /* extra CAs for http.request; may be NULL */
    unsigned wall_ms;          /* longest a hook call may take; 0: 30 s */
    int quiet_failures;        /* do not log failed calls (the caller
                                  prints their errors itself) */
};

/* The outcome of one hook call, borrowed for the done callback only. */
struct rf_hook_result {
    int rc;              /* 0, RF_ESCRIPT, RF_ELIMIT, RF_ETIMEOUT,
                            RF_ENOTFOUND (tenant or hook), RF_ESTOPPING */
    const char *error;   /* "file:line: message" and traceback when rc */
    const char *json;    /* the first value returned, as JSON ("null") */
    const char *version; /* the script version that ran */
    const cJSON *value;  /* the first value returned, or NULL */
};

typedef void (*rf_engine_done_cb)(const struct rf_hook_result *res,
                                  void *arg);

struct rf_engine_stats {
    unsigned long calls, failures, limit_hits, reloads, reload_failures;
};

struct rf_engine;

/* Makes an engine with no tenants. `opts` is copied (its strings and
 * plugin path borrowed). Caller owns the result; free with
 * rf_engine_free(). NULL when memory runs out. */
struct rf_engine *rf_engine_new(const struct rf_engine_opts *opts);

/* Loads (or reloads) the tenant in folder `dir` under id `id`. On failure
 * the old version, if any, stays; the reason ("file:line: ...") goes into
 * err and the code is returned. */
int rf_engine_load(struct rf_engine *e, const char *dir, const char *id,
                   char *err, size_t errlen);

/* The same in two steps, so that the slow one (running tenant.lua, up to
 * its CPU budget twice) need not hold the script thread:
 * rf_engine_prepare() loads a new version with the engine's `env` (pass
 * the same as in its options) and touches no engine, so any thread may
 * run it while the script thread goes on;
 * rf_engine_take() then switches the tenant to it on the script thread.
 * *out is the caller's until taken (or freed with rf_engine_loaded_free());
 * rf_engine_take() with l NULL counts a failed load. */
struct rf_engine_loaded;
int rf_engine_prepare(const struct rf_tenant_env *env, const char *dir,
                      const char *id, struct rf_engine_loaded **out,
                      char *err, size_t errlen);
int rf_engine_take(struct rf_engine *e, const char *dir, const char *id,
                   struct rf_engine_loaded *l);
void rf_engine_loaded_free(struct rf_engine_loaded *l);

/* Logs a failed load of tenant `id` ("file:line: cause" in err): an error
 * when it has no version, a debug line when it keeps the previous one. */
void rf_engine_note_failure(const struct rf_engine *e, const char *id,
                            const char *err);

/* Unloads the tenants whose folder under `dir` is gone. */
void rf_engine_forget_gone(struct rf_engine *e, const char *dir);

/* Forgets the tenant's current version (freed after the last call on it)
 * and closes its Zoho connection: its folder is gone. Calls for it are
 * then refused with RF_ENOTFOUND until it is loaded again. Unknown ids are
 * ignored. */
void rf_engine_unload(struct rf_engine *e, const char *id);

/* Loads every tenant folder under `dir`; failures are logged and counted,
 * not fatal (a tenant that had a version keeps it). Tenants whose folder
 * is gone are unloaded. Returns how many loaded. */
size_t rf_engine_load_dir(struct rf_engine *e, const char *dir);

/* Runs hook `hook` of `tenant` with the JSON `input` (one argument; an
 * array spreads into several) and calls `done` exactly once, possibly
 * before returning when the tenant or hook does not exist. `event` tags
 * log lines; may be NULL. Strings are copied. Returns 0 or RF_ENOMEM. */
int rf_engine_call(struct rf_engine *e, const char *tenant, const char *hook,
                   const char *input, size_t len, const char *event,
                   rf_engine_done_cb done, void *arg);

/* As rf_engine_call, with the input already parsed (borrowed for the
 * call), and the answer only as res->value (res->json is "null"). Saves
 * printing and parsing JSON text when the caller works on cJSON trees, as
 * the Zoho sync does for every record. */
int rf_engine_call_value(struct rf_engine *e, const char *tenant,
                         const char *hook, const cJSON *input,
                         const char *event, rf_engine_done_cb done, void *arg);

/* Runs function `fn` of plugin module `module` (as `require(module)[fn]`,
 * on the plugin path) in the tenant's current state, with the machinery
 * of a hook call: a coroutine, the tenant's CPU budget and wall time, and
 * the waiting API (http.request, crm.*). `input` spreads as in
 * rf_engine_call_value (borrowed for the call). The answer, res->value,
 * is one object holding the function's first three results: {"value":
 * first, "message": second, "code": third}, each absent when nil. A
 * missing module or function fails the call with RF_ESCRIPT. `done` runs
 * exactly once. Returns 0 or RF_ENOMEM. Engine's loop thread. */
int rf_engine_call_plugin(struct rf_engine *e, const char *tenant,
                          const char *module, const char *fn,
                          const cJSON *input, const char *event,
                          rf_engine_done_cb done, void *arg);

/* A hook written in C. It must call `done(res, done_arg)` exactly once, now
 * or later, on the engine's loop. */
typedef void (*rf_engine_native_fn)(struct rf_engine *e, const char *tenant,
                                    const cJSON *input, const char *event,
                                    rf_engine_done_cb done, void *done_arg,
                                    void *arg);

/* Registers a C hook under `name`, which starts with '@' so that no
 * script function can have it ("@zoho.notify"). Calls of that hook for any
 * loaded tenant run `fn`. Returns 0 or RF_EINVAL (bad or taken name, or
 * too many). */
int rf_engine_native(struct rf_engine *e, const char *name,
                     rf_engine_native_fn fn, void *arg);

/* The settings of a tenant's current version, or NULL. Borrowed until its
 * next reload. */
const struct rf_tenant *rf_engine_tenant(const struct rf_engine *e,
                                         const char *id);

struct rf_zoho;

/* The tenant's Zoho connection (opened when its settings have a `zoho`
 * table, kept across reloads that leave the connection settings alone),
 * or NULL. Borrowed; valid until the tenant's next reload. */
struct rf_zoho *rf_engine_zoho(const struct rf_engine *e, const char *tenant);

/* What the engine borrows or owns: the store (may be NULL), its writer
 * thread (NULL without a store) and its loop. */
struct rf_store *rf_engine_store(const struct rf_engine *e);
struct rf_writer *rf_engine_writer(const struct rf_engine *e);
uv_loop_t *rf_engine_loop(const struct rf_engine *e);

/* Calls fn for every tenant id the engine has seen, including unloaded
 * ones (for which rf_engine_tenant() is NULL), so that followers such as
 * the Zoho sync can drop what they hold for them. */
void rf_engine_each(const struct rf_engine *e,
                    void (*fn)(const char *tenant, void *arg), void *arg);

/* Hook calls running now. */
size_t rf_engine_active(const struct rf_engine *e);

void rf_engine_stats(const struct rf_engine *e, struct rf_engine_stats *out);

/* Ends every call in flight (done gets RF_ESTOPPING), frees the tenants and
 * closes the engine's handles; the loop must run once more. Accepts NULL. */
void rf_engine_free(struct rf_engine *e);

#endif

/* The script runtime: a script engine (engine.h) on a thread and loop of
 * its own, so that no tenant's script ever delays the intake loop. The
 * intake loop talks to it through messages; answers come back on the
 * caller's loop.
 *
 * Caveats: one script thread for now; every tenant's calls share it, and a
 * call that burns its whole CPU budget delays the others on that thread by
 * up to the budget (docs/limitations.md).
 */
#ifndef REFEREE_RUNTIME_H
#define REFEREE_RUNTIME_H

#include <stddef.h>

#include <uv.h>

#include "referee/engine.h"

/* Called on the caller's loop with the hook's outcome; `res` is borrowed
 * for the call. */
typedef void (*rf_runtime_reply_cb)(const struct rf_hook_result *res,
                                    void *arg);

struct rf_runtime;

/* Work that lives on the script thread beside the engine (the Zoho sync):
 * `start` runs there once the tenants are loaded and returns its state;
 * `reloaded` after a tenant (NULL: every tenant) loaded a new version or
 * was unloaded because its folder is gone;
 * `stop` before the engine is freed. Any may be NULL. */
struct rf_runtime_part {
    void *(*start)(struct rf_engine *e, uv_loop_t *loop, void *arg);
    void (*reloaded)(void *state, const char *tenant);
    void (*stop)(void *state);
    void *arg;
};

/* Starts the script thread with an engine made from `opts` (its loop field
 * is ignored: the thread has its own), which loads every tenant folder
 * under `tenants_dir` while this thread goes on; rf_runtime_ready() waits
 * for that. Replies are delivered on `loop`. Caller owns the result; stop
 * with rf_runtime_stop(). NULL on failure. The strings in opts must outlive
 * the runtime. */
struct rf_runtime *rf_runtime_start(uv_loop_t *loop,
                                    const struct rf_engine_opts *opts,
                                    const char *tenants_dir,
                                    const struct rf_runtime_part *part);

/* Waits until the script thread has loaded its tenants. Returns 0, or
 * RF_ENOMEM when its engine could not start (the runtime must then only be
 * stopped). */
int rf_runtime_ready(struct rf_runtime *rt);

/* Asks for hook `hook` of `tenant` to run on `input` (copied). `reply` runs
 * later on the caller's loop, exactly once. Returns 0 or RF_ENOMEM.
 * Caller's loop thread only. */
int rf_runtime_call(struct rf_runtime *rt, const char *tenant,
                    const char *hook, const char *input, size_t len,
                    const char *event, rf_runtime_reply_cb reply, void *arg);

/* Reloads one tenant (or all when `tenant` is NULL) from its folder on the
 * script thread; `reply` gets rc 0 when the new version is in place, or the
 * load error (the old version keeps serving). A tenant whose folder is
 * gone is unloaded (rc 0). `reply` may be NULL. */
int rf_runtime_reload(struct rf_runtime *rt, const char *tenant,
                      rf_runtime_reply_cb reply, void *arg);

/* What the part's `start` returned (after waiting for it), or NULL. The
 * part decides which of its functions other threads may call. */
void *rf_runtime_part_state(struct rf_runtime *rt);

/* Calls waiting for an answer. Caller's loop thread. */
size_t rf_runtime_pending(const struct rf_runtime *rt);

/* Stops the thread: calls in flight end with RF_ESTOPPING and their
 * replies run. Frees the runtime after its handle closed (the caller's
 * loop must run once more). Accepts NULL. */
void rf_runtime_stop(struct rf_runtime *rt);

#endif

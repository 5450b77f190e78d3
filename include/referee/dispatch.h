/* Hands stored webhook events to the hook their source names, on the
 * script runtime, and records each outcome durably:
 *
 *     outcomes  tenant \0 be64(seq) -> {"status":"done"|"failed",
 *                                       "version":..., "at":...,
 *                                       "error":... (failed), or
 *                                       "result":... (done: the value the
 *                                       hook returned, up to 4 KiB of
 *                                       JSON; a longer one is kept as a
 *                                       string of its first 4 KiB with
 *                                       "result_truncated":true)}
 *
 * An event with no outcome is dispatched again at start-up (a crash between
 * commit and outcome loses nothing); a failed one is retried once the
 * tenant runs a different script version than the one that failed (after
 * a fix). Hooks must therefore tolerate seeing an event twice.
 */
#ifndef REFEREE_DISPATCH_H
#define REFEREE_DISPATCH_H

#include <stdint.h>

#include <uv.h>

#include "referee/runtime.h"
#include "referee/store.h"
#include "referee/tenant.h"
#include "referee/writer.h"

struct rf_dispatch_stats {
    unsigned long dispatched, done, failed;
};

struct rf_dispatch;

/* Makes a dispatcher. Everything is borrowed and must outlive it;
 * `tenants` points at the daemon's current registry. Loop thread only.
 * NULL when memory runs out. */
struct rf_dispatch *rf_dispatch_new(uv_loop_t *loop, struct rf_store *store,
                                    struct rf_writer *writer,
                                    struct rf_runtime *rt,
                                    const struct rf_tenants *const *tenants);

/* An event was committed: run its source's hook if it has one. */
void rf_dispatch_event(struct rf_dispatch *d, const char *tenant,
                       const char *source, uint64_t seq);

/* A referral was accepted: have the script thread run the tenant's
 * `capture` hook for it (mapping.h). */
void rf_dispatch_referral(struct rf_dispatch *d, const char *tenant,
                          uint64_t id);

/* Queues every event of `tenant` (NULL: all tenants) that has no outcome,
 * or failed under another version than the tenant's current one. Returns
 * how many were queued, or a negative code. */
long rf_dispatch_recover(struct rf_dispatch *d, const char *tenant);

/* Events queued or running. */
size_t rf_dispatch_pending(const struct rf_dispatch *d);

void rf_dispatch_stats(const struct rf_dispatch *d,
                       struct rf_dispatch_stats *out);

/* Frees the dispatcher; replies still to come are ignored. Accepts NULL. */
void rf_dispatch_free(struct rf_dispatch *d);

#endif

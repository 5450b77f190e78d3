/* The Zoho sync: brings each tenant's CRM changes to its script, on the
 * script thread beside the engine (runtime.h, struct rf_runtime_part).
 *
 * For every tenant whose settings have a `zoho` table with modules, it
 * polls each module every `poll_every_s` (zoho_poll.h: a durable cursor,
 * each record version delivered once) and, when Zoho's Watch API calls
 * POST /t/{tenant}/zoho/notify, fetches the records named there (the
 * native hook "@zoho.notify" that the stored notification is dispatched
 * to). Records of Contacts go to the tenant's `cohort(contact)` hook; a
 * contact it accepts is enrolled as a referrer (referrers.h) in the same
 * transaction that moves the poll's cursor, so a crash repeats a batch
 * rather than losing it.
 *
 * A record whose hook call fails is kept on a retry list with the script
 * version that failed; when the tenant loads another version, those
 * records are fetched again and rerun.
 *
 * Caveats: records of modules other than Contacts are polled, counted and
 * otherwise left to the referral workflow (docs/limitations.md).
 */
#ifndef REFEREE_SYNC_H
#define REFEREE_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "referee/engine.h"

/* The native hook that stored Zoho notifications are dispatched to. */
#define RF_SYNC_NOTIFY_HOOK "@zoho.notify"

/* One tenant's figures, as operators see them. */
struct rf_sync_tenant_stats {
    char tenant[RF_TENANT_ID_MAX + 1];
    uint64_t polls, poll_failures, records, enrolled, hook_failures;
    uint64_t notifications;
    uint64_t credits_used, credits_budget;
    uint64_t busy; /* polls, fetches by id and record sets not yet
                      committed: 0 when the sync has nothing under way */
    unsigned concurrency;
    int64_t last_poll_ms; /* end of the last poll that caught up; 0: none */
    char last_error[160];
};

struct rf_sync;

/* rf_runtime_part callbacks: `arg` of start is unused. */
void *rf_sync_start(struct rf_engine *e, uv_loop_t *loop, void *arg);
void rf_sync_reloaded(void *sync, const char *tenant);
void rf_sync_stop(void *sync);

/* Polls every module of `tenant` now (tests, `make demo`). Script thread. */
void rf_sync_poll_now(struct rf_sync *s, const char *tenant);

/* Copies up to `max` tenants' figures into out; returns how many tenants
 * there are. Any thread (the figures are refreshed about once a second). */
size_t rf_sync_stats(struct rf_sync *s, struct rf_sync_tenant_stats *out,
                     size_t max);

#endif

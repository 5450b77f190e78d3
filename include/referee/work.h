/* The work that lives on the script thread beside the engine
 * (struct rf_runtime_part): the Zoho sync (sync.h), the outbox worker
 * (outbox.h) and referrals on their way to the CRM (mapping.h).
 */
#ifndef REFEREE_WORK_H
#define REFEREE_WORK_H

#include <uv.h>

#include "referee/engine.h"
#include "referee/sync.h"

struct rf_work;

/* rf_runtime_part callbacks; `arg` of start is unused. */
void *rf_work_start(struct rf_engine *e, uv_loop_t *loop, void *arg);
void rf_work_reloaded(void *work, const char *tenant);
void rf_work_stop(void *work);

/* The sync, for its figures (rf_sync_stats may be called from any
 * thread). NULL when the work did not start. */
struct rf_sync *rf_work_sync(struct rf_work *w);

#endif

/* An outbox job that updates one CRM record through the tenant's Zoho
 * connection: used by reward actions (crm_update) and by the write-back
 * of a new referrer's code and link.
 */
#ifndef REFEREE_CRM_UPDATE_H
#define REFEREE_CRM_UPDATE_H

#include <cjson/cJSON.h>

#include "referee/engine.h"
#include "referee/outbox.h"

/* Job kind of a write-back (payload: {"module", "id", "fields": {...}}). */
#define RF_CRM_WRITEBACK_KIND "zoho.update"

/* Updates record `id` of `module` with `fields` and finishes `run`:
 * done with {"id": ...}, transient without a connection or on 429/5xx,
 * unknown after a timeout, permanent when Zoho refuses the record. */
void rf_crm_update_run(struct rf_engine *e, const char *tenant,
                       const char *module, const char *id,
                       const cJSON *fields, struct rf_outbox_run *run);

/* Registers the executor of RF_CRM_WRITEBACK_KIND. Returns 0 or
 * RF_ELIMIT. Script thread. */
int rf_crm_writeback_executor(struct rf_outbox *ob, struct rf_engine *e);

#endif

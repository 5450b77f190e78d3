/* From an accepted referral to a CRM record, on the script thread:
 *
 *   1. the tenant's `capture(referral, referrer)` hook answers how the
 *      person maps onto the CRM ({ module = "Leads", record = {...},
 *      duplicate_check_fields = { "Email" } }) or refuses them
 *      ({ refuse = "existing_customer" });
 *   2. the referral becomes "mapped" and an outbox job "zoho.upsert"
 *      (idempotency key "crm:<referral id>") commits with it;
 *   3. the job upserts the record through the tenant's Zoho connection;
 *      once done, the referral is "in_crm", linked to the record's id.
 *
 * Every step is a state change with an audit entry. A crash between any
 * two is picked up by rf_mapping_recover(): accepted referrals are mapped,
 * mapped ones whose job finished are settled.
 */
#ifndef REFEREE_MAPPING_H
#define REFEREE_MAPPING_H

#include "referee/engine.h"
#include "referee/outbox.h"

/* The C hook (rf_engine_native) that maps a referral: input {"id": N}. */
#define RF_MAPPING_HOOK "@referral.capture"

struct rf_mapping;

/* Registers the hook and the "zoho.upsert" executor on `ob`. Script
 * thread. NULL when memory runs out. */
struct rf_mapping *rf_mapping_start(struct rf_engine *e, struct rf_outbox *ob);

/* Maps accepted referrals and settles finished jobs of `tenant` (NULL:
 * every tenant). Script thread. */
void rf_mapping_recover(struct rf_mapping *m, const char *tenant);

/* A job settled (rf_outbox_on_settled): follows up "zoho.upsert" jobs. */
void rf_mapping_settled(struct rf_mapping *m, const struct rf_job *job);

void rf_mapping_free(struct rf_mapping *m);

#endif

/* Qualifying referrals: a change to a CRM record linked to a referral (the
 * lead it became, and the contact and deal a converted lead becomes) goes
 * to the tenant's `milestone(record, referral)` hook, which answers
 * "qualified", "rejected" or nothing yet (a string, or a table { status =
 * ..., reason = ... }). Used by the Zoho sync (sync.c) for every record it
 * reads; the decision commits with the batch.
 *
 *     in_crm --qualified--> qualified      in_crm --rejected--> rejected
 *     qualified --rejected--> qualified, "reversed": true (audit "reversed")
 *
 * A converted lead links its Converted_Contact and Converted_Deal to the
 * referral (audit "converted"), so milestones on the deal's Stage work.
 */
#ifndef REFEREE_MILESTONE_H
#define REFEREE_MILESTONE_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "referee/store.h"

/* Lead fields the sync asks for besides the tenant's own. */
#define RF_MILESTONE_LEAD_FIELDS "Converted__s,Converted_Contact,Converted_Deal"

struct rf_milestone {
    uint64_t referral;    /* 0: the record is not linked to a referral */
    cJSON *referral_json; /* the referral, for the hook */
    char contact[24], deal[24]; /* what a converted lead became */
    int answered;         /* the hook ran and answered */
    char status[16];      /* "qualified", "rejected" or "" (nothing yet) */
    char *reason;
    char *error;          /* the hook failed */
};

/* Finds the referral `rec` of `module` is linked to, and for a converted
 * lead what it became. Returns 0 (m->referral 0 when not linked) or an
 * RF_E* code. Read transaction. */
int rf_milestone_find(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant, const char *module,
                      const cJSON *rec, struct rf_milestone *m);

/* Reads the hook's answer. Returns 0, or RF_EINVAL with m->error set when
 * it is not one of the answers above. */
int rf_milestone_answer(struct rf_milestone *m, const cJSON *value);

/* Inside the batch's write transaction: the links of a conversion and the
 * referral's change, each with an audit entry. Returns 0 or an RF_E*
 * code. */
int rf_milestone_apply(MDB_txn *txn, const struct rf_store *st,
                       const char *tenant, const char *module,
                       const cJSON *rec, const char *version, int64_t at_ms,
                       const struct rf_milestone *m);

void rf_milestone_cleanup(struct rf_milestone *m);

#endif

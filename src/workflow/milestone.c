/* Milestones on CRM records linked to referrals, and lead conversion. */
#include "referee/milestone.h"
#include "referee/audit.h"
#include "referee/error.h"
#include "referee/referrals.h"
#include "referee/zoho.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The id of a lookup field ({"id": "...", "name": ...}). */
static void lookup_id(const cJSON *rec, const char *field, char out[24])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, field);

    out[0] = '\0';
    if (cJSON_IsObject(v)) {
        (void)rf_zoho_json_id(cJSON_GetObjectItemCaseSensitive(v, "id"), out);
    }
}

int rf_milestone_find(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant, const char *module,
                      const cJSON *rec, struct rf_milestone *m)
{
    char id[RF_ZOHO_ID_MAX];
    int rc;

    memset(m, 0, sizeof(*m));
    if (rf_zoho_json_id(cJSON_GetObjectItemCaseSensitive(rec, "id"), id) !=
        0) {
        return 0;
    }
    rc = rf_referral_by_link(txn, st, tenant, module, id, &m->referral);
    if (rc == RF_ENOTFOUND) {
        m->referral = 0;
        return 0;
    }
    if (rc == 0) {
        rc = rf_referral_get(txn, st, tenant, m->referral, &m->referral_json);
    }
    if (rc == 0 && strcmp(module, "Leads") == 0 &&
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "Converted__s"))) {
        lookup_id(rec, "Converted_Contact", m->contact);
        lookup_id(rec, "Converted_Deal", m->deal);
    }
    if (rc != 0) {
        m->referral = 0;
    }
    return rc == RF_ENOTFOUND ? 0 : rc;
}

int rf_milestone_answer(struct rf_milestone *m, const cJSON *value)
{
    const char *status = NULL, *reason = NULL;

    m->answered = 1;
    if (value == NULL || cJSON_IsNull(value) || cJSON_IsFalse(value)) {
        return 0; /* nothing yet */
    }
    if (cJSON_IsString(value)) {
        status = value->valuestring;
    } else if (cJSON_IsObject(value)) {
        status = str(value, "status");
        reason = str(value, "reason");
    }
    if (status == NULL || (strcmp(status, "qualified") != 0 &&
                           strcmp(status, "rejected") != 0)) {
        m->error = strdup("milestone must return \"qualified\", \"rejected\", "
                          "nil, or { status = ..., reason = ... }");
        return RF_EINVAL;
    }
    snprintf(m->status, sizeof(m->status), "%s", status);
    m->reason = reason ? strndup(reason, 200) : NULL;
    return 0;
}

static int audit(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                 const char *kind, uint64_t referral, const char *version,
                 int64_t at_ms, const char *module, const cJSON *rec,
                 const char *reason)
{
    cJSON *a = cJSON_CreateObject();
    int rc;

    if (a == NULL || !cJSON_AddNumberToObject(a, "referral",
                                              (double)referral) ||
        !cJSON_AddStringToObject(a, "version", version) ||
        !cJSON_AddStringToObject(a, "module", module) ||
        (reason && !cJSON_AddStringToObject(a, "reason", reason)) ||
        !cJSON_AddItemReferenceToObject(a, "evidence", (cJSON *)rec)) {
        cJSON_Delete(a);
        return RF_ENOMEM;
    }
    rc = rf_audit_put(txn, st, tenant, kind, at_ms, a);
    cJSON_Delete(a);
    return rc;
}

static void set(cJSON *o, const char *name, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    cJSON_AddItemToObject(o, name, v);
}

/* Statuses a qualified referral moves through (reward.h); a rejection in
 * any of them is a reversal. */
static int past_qualified(const char *status)
{
    static const char *const past[] = {"qualified", "rewarded", "review",
                                       "review_rejected", "no_reward"};

    for (size_t i = 0; i < sizeof(past) / sizeof(past[0]); i++) {
        if (strcmp(status, past[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

int rf_milestone_apply(MDB_txn *txn, const struct rf_store *st,
                       const char *tenant, const char *module,
                       const cJSON *rec, const char *version, int64_t at_ms,
                       const struct rf_milestone *m)
{
    cJSON *r = NULL;
    const char *status;
    const char *kind = NULL;
    int rc;

    if (m->referral == 0) {
        return 0;
    }
    /* Read again inside the write: the batch may hold several changes to
     * one referral, and each must see the one before. */
    rc = rf_referral_get(txn, st, tenant, m->referral, &r);
    if (rc != 0) {
        return rc == RF_ENOTFOUND ? 0 : rc;
    }
    if ((m->contact[0] || m->deal[0]) &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "converted"))) {
        if (m->contact[0]) {
            rc = rf_referral_link(txn, st, tenant, "Contacts", m->contact,
                                  m->referral);
        }
        if (rc == 0 && m->deal[0]) {
            rc = rf_referral_link(txn, st, tenant, "Deals", m->deal,
                                  m->referral);
        }
        set(r, "converted", cJSON_CreateTrue());
        if (m->deal[0]) {
            set(r, "deal", cJSON_CreateString(m->deal));
        }
        if (rc == 0) {
            rc = audit(txn, st, tenant, "converted", m->referral, version,
                       at_ms, module, rec, NULL);
        }
        kind = "converted";
    }
    status = str(r, "status");
    if (rc == 0 && m->status[0] && status != NULL) {
        int qualify = strcmp(m->status, "qualified") == 0;

        if (strcmp(status, "in_crm") == 0) {
            set(r, "status", cJSON_CreateString(m->status));
            set(r, qualify ? "qualified_at" : "rejected_at",
                cJSON_CreateNumber((double)(at_ms / 1000)));
            if (m->reason) {
                set(r, "milestone_reason", cJSON_CreateString(m->reason));
            }
            kind = m->status;
        } else if (past_qualified(status) && !qualify &&
                   !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
                       r, "reversed"))) {
            set(r, "reversed", cJSON_CreateTrue());
            set(r, "reversed_at", cJSON_CreateNumber((double)(at_ms / 1000)));
            kind = "reversed";
        }
        if (kind != NULL && strcmp(kind, "converted") != 0) {
            rc = audit(txn, st, tenant, kind, m->referral, version, at_ms,
                       module, rec, m->reason);
        }
    }
    if (rc == 0 && kind != NULL) {
        rc = rf_referral_put(txn, st, tenant, r);
    }
    cJSON_Delete(r);
    return rc;
}

void rf_milestone_cleanup(struct rf_milestone *m)
{
    cJSON_Delete(m->referral_json);
    free(m->reason);
    free(m->error);
    memset(m, 0, sizeof(*m));
}

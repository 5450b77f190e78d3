/* Referrals: referred people, the rules that accept or refuse them, and
 * the CRM records they are linked to.
 *
 *     referrals  tenant \0 be64(id) -> referral (JSON, below)
 *     people     tenant \0 folded email -> be64(id of the first referral)
 *     links      tenant \0 module \0 CRM id -> be64(referral id)
 *
 * A referral as stored:
 *
 *     {"id": 7, "at": 1767225600, "channel": "form", "code": "...",
 *      "referrer": "<contact id>" | null, "person": {"email": ..., ...},
 *      "status": "refused" | "accepted" | "in_crm" | "qualified" |
 *                "rejected",
 *      "reason": "self_referral" | ..., "first": 3,
 *      "crm": {"module": "Leads", "id": "..."}}
 *
 * Every change is also an audit entry (audit.h).
 */
#ifndef REFEREE_REFERRALS_H
#define REFEREE_REFERRALS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "referee/referrers.h"
#include "referee/store.h"

#define RF_EMAIL_MAX 254

/* Why a referral was refused; stable codes, also the HTTP error codes. */
#define RF_REFUSE_MISSING_EMAIL "missing_email"
#define RF_REFUSE_INVALID_EMAIL "invalid_email"
#define RF_REFUSE_INVALID_CODE "invalid_code"
#define RF_REFUSE_UNKNOWN_CODE "unknown_referrer"
#define RF_REFUSE_SELF "self_referral"
#define RF_REFUSE_DUPLICATE "duplicate_person"

/* Checks an email address (one @, a dotted domain, no spaces or control
 * characters, at most 254 bytes) and writes its folded form into out:
 * lower-cased, with a "+tag" in the local part removed, so that
 * Ana+promo@Example.com and ana@example.com are one person. Returns 0, or
 * RF_EINVAL when it is not an address. */
int rf_email_fold(const char *email, char out[RF_EMAIL_MAX + 1]);

/* A referral to capture. `person` must hold "email" (other fields are
 * kept as given). Borrowed. */
struct rf_capture_in {
    const char *tenant;
    const char *code;    /* as given; may be NULL */
    const char *channel; /* "form", "json" or "webhook" */
    const cJSON *person;
    int64_t at_ms;
    const char *delivery_id; /* a signed post's webhook-id, or NULL */
};

struct rf_capture_out {
    uint64_t id;
    int accepted;
    char reason[48];        /* when refused */
    char referrer[64];      /* contact id of the code's owner, or "" */
    uint64_t first;         /* duplicate_person: the first referral */
    char code[RF_CODE_LEN + 1]; /* the code as stored (upper case), or "" */
    int repeat; /* the delivery id was seen: out describes the referral it
                   made, and nothing was written */
};

/* Inside a write transaction: decides and stores a referral. A signed
 * post sent again (the same in->delivery_id) is answered from the
 * referral it made the first time, and stores nothing. Refused
 * (with a reason) when the email is missing or invalid, the code is
 * malformed or unknown in this tenant, the person is the referrer
 * (emails compared folded), or the person was referred before (the first
 * referrer keeps them). Accepted referrals claim the person. Returns 0
 * (see out) or an RF_E* code. */
int rf_referral_capture(MDB_txn *txn, const struct rf_store *st,
                        const struct rf_capture_in *in,
                        struct rf_capture_out *out);

/* Reads referral `id` (caller frees). Returns 0, RF_ENOTFOUND, RF_ESTORE. */
int rf_referral_get(MDB_txn *txn, const struct rf_store *st,
                    const char *tenant, uint64_t id, cJSON **out);

/* Reads referral `id` and, when it names one, its referrer (NULL when it
 * has none or the referrer is gone), in one read transaction; for a hook
 * that receives both. The caller frees both. Returns 0, RF_ENOTFOUND or
 * RF_ESTORE. */
int rf_referral_with_referrer(struct rf_store *st, const char *tenant,
                              uint64_t id, cJSON **referral,
                              cJSON **referrer);

/* The arguments of a hook called as hook(referral, referrer): an array of
 * the two, referrer null when NULL. Takes both (freed on failure too).
 * NULL when out of memory. */
cJSON *rf_referral_hook_args(cJSON *referral, cJSON *referrer);

/* Writes a referral back (its "id" names it). Returns 0 or an RF_E* code. */
int rf_referral_put(MDB_txn *txn, const struct rf_store *st,
                    const char *tenant, const cJSON *referral);

/* Links a CRM record to a referral (a lead, the contact and deal it
 * became). Returns 0 or an RF_E* code. */
int rf_referral_link(MDB_txn *txn, const struct rf_store *st,
                     const char *tenant, const char *module,
                     const char *crm_id, uint64_t id);

/* The referral a CRM record is linked to. Returns 0, RF_ENOTFOUND or
 * RF_ESTORE. */
int rf_referral_by_link(MDB_txn *txn, const struct rf_store *st,
                        const char *tenant, const char *module,
                        const char *crm_id, uint64_t *id);

/* Calls fn for each referral of a tenant in id order; stops when fn
 * returns non-zero and returns that. */
int rf_referrals_each(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant,
                      int (*fn)(const cJSON *referral, void *arg), void *arg);

#endif

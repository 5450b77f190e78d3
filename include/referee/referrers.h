/* Referrers: the people enrolled in a tenant's referral program, each with
 * a referral code that is unique across the host.
 *
 *     referrers  tenant \0 contact id -> {"contact_id", "code", "link",
 *                "email", "name", "source", "enrolled_at", "updated_at",
 *                "version"}
 *     codes      code -> tenant \0 contact id
 *
 * A code is 13 characters from a 30-character alphabet without look-alikes
 * (no 0, 1, I, L, O, U), drawn from OpenSSL's RAND_bytes: 30^13 is about
 * 2^63.8, so guessing one among a million referrers takes some 2^44 tries.
 * Codes are compared case-insensitively: people type them.
 *
 * Caveats: once enrolled a referrer keeps the code, also when a later edit
 * takes the contact out of the cohort (the code may already be shared).
 */
#ifndef REFEREE_REFERRERS_H
#define REFEREE_REFERRERS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "referee/store.h"

#define RF_CODE_LEN 13
/* The longest contact id kept (Zoho ids are 19 digits). */
#define RF_CONTACT_ID_MAX 64
#define RF_CODE_ALPHABET "23456789ABCDEFGHJKMNPQRSTVWXYZ"

/* Writes a fresh random code and its NUL into out. Returns 0, or RF_EIO
 * when the random source fails. Any thread. */
int rf_code_new(char out[RF_CODE_LEN + 1]);

/* Copies `s` (len bytes) upper-cased into out when it is a well-formed
 * code. Returns 1 when it is, 0 otherwise. */
int rf_code_normalize(const char *s, size_t len, char out[RF_CODE_LEN + 1]);

/* What enrolling a referrer records. Strings are borrowed; may be NULL
 * except tenant, contact_id and source. */
struct rf_referrer_in {
    const char *tenant;
    const char *contact_id; /* Zoho id, or "join:<n>" for sign-ups */
    const char *email;
    const char *name;
    const char *source;  /* "cohort" or "join" */
    const char *version; /* script version that decided */
    const char *link;    /* template with {code} (program.link), or NULL */
    int64_t at_ms;
    const cJSON *evidence; /* kept in the audit entry */
};

/* Enrols a referrer inside `txn`, or refreshes the email and name of one
 * already enrolled (keeping its code). Writes an audit entry "enrolled"
 * for a new one. `code` receives the referrer's code, `*created` whether it
 * is new. Returns 0 or an RF_E* code (RF_EMAPFULL passes through). */
int rf_referrer_enrol(MDB_txn *txn, const struct rf_store *st,
                      const struct rf_referrer_in *in,
                      char code[RF_CODE_LEN + 1], int *created);

/* Reads a referrer (caller frees with cJSON_Delete). Returns 0,
 * RF_ENOTFOUND or RF_ESTORE. */
int rf_referrer_get(MDB_txn *txn, const struct rf_store *st,
                    const char *tenant, const char *contact_id, cJSON **out);

/* Finds a code's owner: tenant (RF_TENANT_ID_MAX + 1 bytes) and contact id
 * (`idlen` bytes). Returns 0, RF_ENOTFOUND or RF_ESTORE. */
int rf_referrer_by_code(MDB_txn *txn, const struct rf_store *st,
                        const char *code, char *tenant, char *contact_id,
                        size_t idlen);

/* The referrer whose email folds to `folded` (rf_email_fold), through the
 * email index: its contact id into `contact_id` (`idlen` bytes). Returns
 * 0, RF_ENOTFOUND or an RF_E* code. */
int rf_referrer_by_email(MDB_txn *txn, const struct rf_store *st,
                         const char *tenant, const char *folded,
                         char *contact_id, size_t idlen);

/* Builds the email index from the stored referrers, once per store (a
 * meta record says it is done): stores written before the index existed
 * get it at the daemon's next start. Returns 0 or an RF_E* code. */
int rf_referrers_index_emails(MDB_txn *txn, const struct rf_store *st);

/* Calls fn for each referrer of a tenant in contact-id order; stops when
 * fn returns non-zero and returns that. */
int rf_referrers_each(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant,
                      int (*fn)(const cJSON *referrer, void *arg), void *arg);

#endif

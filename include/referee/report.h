/* The report of a tenant's referral program, computed from the store in
 * one read transaction: per UTC day and in total (docs/workflow.md,
 * "Reading the report", defines every figure).
 *
 *     {"tenant": "acme", "generated_at": 1767225600,
 *      "days": [{"day": "2027-03-01", "enrolled": 3, "visits": 10, ...}],
 *      "total": {..., "qualification_rate": 0.5, "review": 1}}
 *
 * Each day and the total hold: enrolled, visits, received, refused,
 * refused_by_reason {reason: n}, in_crm, qualified, rejected, reversed,
 * rewards {"count": n, "value": {currency: amount}}, dead_letters. The
 * total also holds qualification_rate (qualified / in_crm, null when
 * in_crm is 0) and review (referrals waiting for review now).
 *
 * Caveats: it reads every audit entry, referral and outbox job of the
 * tenant, so its cost grows with the tenant's history.
 */
#ifndef REFEREE_REPORT_H
#define REFEREE_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "referee/store.h"

/* Computes the report of `tenant` inside `txn` (a read transaction is
 * enough). `now_s` becomes generated_at. On success *out is the caller's
 * (free with cJSON_Delete). Returns 0, RF_ENOMEM or RF_ESTORE. Any thread
 * with its own transaction. */
int rf_report_build(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                    int64_t now_s, cJSON **out);

/* Opens a read transaction and builds the report in it. Same returns. */
int rf_report_compute(struct rf_store *st, const char *tenant, int64_t now_s,
                      cJSON **out);

/* Writes the report as a readable table, or as CSV (a header, one row per
 * day, then a row whose day is "total"). Returns 0 or -errno. */
int rf_report_print_text(FILE *f, const cJSON *report);
int rf_report_print_csv(FILE *f, const cJSON *report);

#endif

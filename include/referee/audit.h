/* The append-only audit log: every state change of the workflow with its
 * time, the evidence that caused it and the script version that decided.
 *
 *     audit  tenant \0 be64(seq) -> {"seq", "at", "kind", ...}
 *
 * seq comes from one counter for the whole store ("audit_seq" in meta), so
 * entries of a tenant are in commit order.
 */
#ifndef REFEREE_AUDIT_H
#define REFEREE_AUDIT_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "referee/store.h"

/* Appends `entry` (an object; "seq", "at" and "kind" are added to it) for
 * `tenant` inside `txn`. Returns 0 or an RF_E* code. */
int rf_audit_put(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                 const char *kind, int64_t at_ms, cJSON *entry);

/* Calls fn for each entry of a tenant from seq `since` (exclusive) on, in
 * order; stops when fn returns non-zero and returns that. */
int rf_audit_each(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                  uint64_t since, int (*fn)(const cJSON *entry, void *arg),
                  void *arg);

#endif

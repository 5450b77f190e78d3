/* The append-only audit log of workflow state changes. */
#include "referee/audit.h"
#include "referee/error.h"
#include "referee/tenant.h"

#include <stdlib.h>
#include <string.h>

static size_t audit_key(unsigned char *k, const char *tenant, uint64_t seq)
{
    size_t tlen = strlen(tenant);

    memcpy(k, tenant, tlen);
    k[tlen] = 0;
    rf_store_put_be64(k + tlen + 1, seq);
    return tlen + 9;
}

int rf_audit_put(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                 const char *kind, int64_t at_ms, cJSON *entry)
{
    unsigned char key[RF_TENANT_ID_MAX + 1 + 8];
    uint64_t seq;
    int rc = rf_store_next_seq(txn, st, "audit_seq", &seq);

    if (rc != 0) {
        return rc;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(entry, "seq");
    cJSON_DeleteItemFromObjectCaseSensitive(entry, "at");
    cJSON_DeleteItemFromObjectCaseSensitive(entry, "kind");
    if (!cJSON_AddNumberToObject(entry, "seq", (double)seq) ||
        !cJSON_AddNumberToObject(entry, "at", (double)(at_ms / 1000)) ||
        !cJSON_AddStringToObject(entry, "kind", kind)) {
        return RF_ENOMEM;
    }
    return rf_store_put_json(txn, rf_store_dbi(st, RF_DB_AUDIT), key,
                             audit_key(key, tenant, seq), entry, 0);
}

int rf_audit_each(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                  uint64_t since, int (*fn)(const cJSON *entry, void *arg),
                  void *arg)
{
    unsigned char key[RF_TENANT_ID_MAX + 1 + 8];
    size_t tlen = strlen(tenant);
    MDB_val k = {audit_key(key, tenant, since + 1), key}, v;
    MDB_cursor *cur;
    int rc = 0, mrc;

    mrc = mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_AUDIT), &cur);
    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         mrc == 0 && rc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cJSON *e;

        if (k.mv_size != tlen + 9 || memcmp(k.mv_data, tenant, tlen) != 0 ||
            ((unsigned char *)k.mv_data)[tlen] != 0) {
            break;
        }
        e = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (e != NULL) {
            rc = fn(e, arg);
            cJSON_Delete(e);
        }
    }
    if (rc == 0) {
        rc = rf_store_scan_rc(mrc);
    }
    mdb_cursor_close(cur);
    return rc;
}

/* The tenants a daemon has loaded with this store, under "tenant:<id>" in
 * RF_DB_META, so that the command line can say a --tenant is unknown
 * instead of printing an empty list for a mistyped id. */
#include "referee/error.h"
#include "referee/store.h"

#include <stdio.h>
#include <string.h>

#define PREFIX "tenant:"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define ID_MAX 64

static size_t tenant_key(char *k, size_t n, const char *id)
{
    int len = snprintf(k, n, PREFIX "%s", id);

    return len > 0 && (size_t)len < n ? (size_t)len : 0;
}

int rf_store_note_tenant(MDB_txn *txn, const struct rf_store *st,
                         const char *id, int64_t now_ms)
{
    char k[PREFIX_LEN + ID_MAX + 1];
    unsigned char v[8];
    MDB_val key = {tenant_key(k, sizeof(k), id), k}, val = {8, v};
    int mrc;

    if (key.mv_size == 0) {
        return RF_EINVAL;
    }
    rf_store_put_be64(v, (uint64_t)now_ms);
    mrc = mdb_put(txn, rf_store_dbi(st, RF_DB_META), &key, &val,
                  MDB_NOOVERWRITE);
    return mrc == MDB_KEYEXIST ? 0 : rf_store_rc(mrc);
}

int rf_store_tenant_known(struct rf_store *st, const char *id)
{
    char k[PREFIX_LEN + ID_MAX + 1];
    MDB_val key = {tenant_key(k, sizeof(k), id), k}, val;
    MDB_txn *txn = NULL;
    int rc, mrc;

    if (key.mv_size == 0) {
        return 0; /* too long to be a tenant id */
    }
    rc = rf_store_read_begin(st, &txn);
    if (rc != 0) {
        return rc;
    }
    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_META), &key, &val);
    rf_store_read_end(st, txn);
    if (mrc == MDB_NOTFOUND) {
        return 0;
    }
    return mrc == 0 ? 1 : rf_store_rc(mrc);
}

int rf_store_each_tenant(struct rf_store *st,
                         int (*fn)(const char *id, void *arg), void *arg)
{
    MDB_val key = {PREFIX_LEN, (void *)PREFIX}, val;
    MDB_cursor *cur = NULL;
    MDB_txn *txn = NULL;
    int rc = rf_store_read_begin(st, &txn), mrc;

    if (rc != 0) {
        return rc;
    }
    if (mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_META), &cur) != 0) {
        rf_store_read_end(st, txn);
        return RF_ESTORE;
    }
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
         mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        char id[ID_MAX + 1];
        size_t n = key.mv_size - PREFIX_LEN;

        if (key.mv_size < PREFIX_LEN ||
            memcmp(key.mv_data, PREFIX, PREFIX_LEN) != 0) {
            break;
        }
        if (n == 0 || n > ID_MAX) {
            continue;
        }
        memcpy(id, (const char *)key.mv_data + PREFIX_LEN, n);
        id[n] = '\0';
        rc = fn(id, arg);
    }
    if (rc == 0) {
        rc = rf_store_scan_rc(mrc);
    }
    mdb_cursor_close(cur);
    rf_store_read_end(st, txn);
    return rc;
}

/* The connector's state in RF_DB_ZOHO: keys tenant \0 kind \0 name, reads
 * on the loop thread, durable writes through the writer thread. */
#include "referee/error.h"
#include "referee/log.h"
#include "zoho/internal.h"

#include <stdlib.h>
#include <string.h>

#define KEY_MAX 511 /* LMDB's default key size limit */

/* A put (or delete, when val is NULL) handed to the writer. */
struct save_job {
    struct rf_write_job job; /* first: the writer hands this back */
    struct rf_zoho *z;
    MDB_dbi dbi;
    char key[KEY_MAX];
    size_t klen;
    char *val;
    size_t vlen;
    rf__zoho_saved_cb after;
    void *ctx;
};

int rf__zoho_key(const char *tenant, const char *kind, const char *name,
                 char *buf, size_t cap, size_t *len)
{
    size_t t = strlen(tenant), k = strlen(kind), n = strlen(name);

    if (t + k + n + 2 > cap || t + k + n + 2 > KEY_MAX) {
        return RF_ETOOBIG;
    }
    memcpy(buf, tenant, t + 1);
    memcpy(buf + t + 1, kind, k + 1);
    memcpy(buf + t + k + 2, name, n);
    *len = t + k + n + 2;
    return 0;
}

int rf__zoho_load(struct rf_zoho *z, const char *kind, const char *name,
                  char **out, size_t *len)
{
    char key[KEY_MAX];
    MDB_val k, v;
    MDB_txn *txn = NULL;
    int rc, mrc;

    *out = NULL;
    rc = rf__zoho_key(z->tenant, kind, name, key, sizeof(key), &k.mv_size);
    if (rc != 0) {
        return rc;
    }
    k.mv_data = key;
    rc = rf_store_read_begin(z->store, &txn);
    if (rc != 0) {
        return rc;
    }
    mrc = mdb_get(txn, rf_store_dbi(z->store, RF_DB_ZOHO), &k, &v);
    if (mrc != 0) {
        rc = rf_store_rc(mrc);
        goto out;
    }
    *out = malloc(v.mv_size + 1);
    if (*out == NULL) {
        rc = RF_ENOMEM;
        goto out;
    }
    memcpy(*out, v.mv_data, v.mv_size);
    (*out)[v.mv_size] = '\0';
    *len = v.mv_size;
out:
    rf_store_read_end(z->store, txn);
    return rc;
}

/* Writer thread. */
static int run_save(MDB_txn *txn, struct rf_write_job *job)
{
    struct save_job *s = (struct save_job *)job;
    MDB_val k = {s->klen, s->key}, v = {s->vlen, s->val};
    int mrc;

    if (s->val == NULL) {
        mrc = mdb_del(txn, s->dbi, &k, NULL);
        return mrc == MDB_NOTFOUND ? 0 : rf_store_rc(mrc);
    }
    mrc = mdb_put(txn, s->dbi, &k, &v, 0);
    return rf_store_rc(mrc);
}

/* Loop thread, after the commit. */
static void on_saved(struct rf_write_job *job)
{
    struct save_job *s = (struct save_job *)job;
    struct rf_zoho *z = s->z;

    if (job->rc != 0) {
        rf_log_error("zoho", RF_F("tenant", z->tenant),
                     "cannot save %s state: %s", s->key + strlen(s->key) + 1,
                     rf_strerror(job->rc));
    }
    if (s->after) {
        s->after(z, job->rc, s->ctx);
    }
    free(s->val);
    free(s);
    rf__zoho_release(z);
}

int rf__zoho_save(struct rf_zoho *z, const char *kind, const char *name,
                  const char *val, size_t len, rf__zoho_saved_cb after,
                  void *ctx)
{
    struct save_job *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL) {
        return RF_ENOMEM;
    }
    rc = rf__zoho_key(z->tenant, kind, name, s->key, sizeof(s->key), &s->klen);
    if (rc == 0 && val != NULL) {
        s->val = malloc(len ? len : 1);
        if (s->val == NULL) {
            rc = RF_ENOMEM;
        } else {
            memcpy(s->val, val, len);
            s->vlen = len;
        }
    }
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->z = z;
    s->dbi = rf_store_dbi(z->store, RF_DB_ZOHO);
    s->after = after;
    s->ctx = ctx;
    s->job.run = run_save;
    s->job.done = on_saved;
    rf__zoho_hold(z);
    rf_writer_submit(z->writer, &s->job);
    return 0;
}

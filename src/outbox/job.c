/* Outbox job records: encoding, adding inside a caller's transaction,
 * listing and replaying for operators. */
#include "referee/error.h"
#include "referee/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define PAYLOAD_MAX (256 * 1024)

static const char *const state_names[] = {"pending", "done", "dead"};

void rf_job_cleanup(struct rf_job *job)
{
    free(job->payload);
    free(job->last_error);
    free(job->result);
    job->payload = job->last_error = job->result = NULL;
}

int64_t rf__outbox_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *rf__job_encode(const struct rf_job *j)
{
    cJSON *o = cJSON_CreateObject();
    char *text;

    if (o == NULL) {
        return NULL;
    }
    cJSON_AddStringToObject(o, "tenant", j->tenant);
    cJSON_AddStringToObject(o, "kind", j->kind);
    cJSON_AddStringToObject(o, "key", j->key);
    cJSON_AddStringToObject(o, "state", state_names[j->state]);
    cJSON_AddNumberToObject(o, "attempts", j->attempts);
    cJSON_AddNumberToObject(o, "created_ms", (double)j->created_ms);
    cJSON_AddNumberToObject(o, "next_ms", (double)j->next_ms);
    cJSON_AddNumberToObject(o, "finished_ms", (double)j->finished_ms);
    cJSON_AddRawToObject(o, "payload", j->payload ? j->payload : "null");
    if (j->last_error) {
        cJSON_AddStringToObject(o, "last_error", j->last_error);
    }
    if (j->result) {
        cJSON_AddRawToObject(o, "result", j->result);
    }
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static int copy_str(const cJSON *o, const char *name, char *out, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (!cJSON_IsString(v) || strlen(v->valuestring) >= n) {
        return -1;
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int64_t num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static char *dup_item(const cJSON *o, const char *name, int as_json)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (v == NULL) {
        return NULL;
    }
    if (!as_json) {
        return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
    }
    return cJSON_PrintUnformatted(v);
}

int rf__job_decode(const void *data, size_t len, uint64_t id,
                   struct rf_job *j)
{
    cJSON *o = cJSON_ParseWithLength(data, len);
    char state[16];
    int rc = RF_EPARSE;

    memset(j, 0, sizeof(*j));
    if (o == NULL || copy_str(o, "tenant", j->tenant, sizeof(j->tenant)) ||
        copy_str(o, "kind", j->kind, sizeof(j->kind)) ||
        copy_str(o, "key", j->key, sizeof(j->key)) ||
        copy_str(o, "state", state, sizeof(state))) {
        goto out;
    }
    j->id = id;
    j->state = strcmp(state, "done") == 0   ? RF_JOB_DONE
               : strcmp(state, "dead") == 0 ? RF_JOB_DEAD
                                            : RF_JOB_PENDING;
    j->attempts = (unsigned)num(o, "attempts");
    j->created_ms = num(o, "created_ms");
    j->next_ms = num(o, "next_ms");
    j->finished_ms = num(o, "finished_ms");
    j->payload = dup_item(o, "payload", 1);
    j->last_error = dup_item(o, "last_error", 0);
    j->result = dup_item(o, "result", 1);
    rc = j->payload ? 0 : RF_ENOMEM;
out:
    cJSON_Delete(o);
    return rc;
}

/* Writes the job record and, when pending, its due entry. */
int rf__job_put(MDB_txn *txn, const struct rf_store *st,
                const struct rf_job *j)
{
    unsigned char idk[8], due[16];
    char *text = rf__job_encode(j);
    MDB_val k = {8, idk}, v, dk = {16, due}, dv = {0, ""};
    int mrc;

    if (text == NULL) {
        return RF_ENOMEM;
    }
    rf_store_put_be64(idk, j->id);
    v.mv_size = strlen(text);
    v.mv_data = text;
    mrc = mdb_put(txn, rf_store_dbi(st, RF_DB_OUTBOX), &k, &v, 0);
    cJSON_free(text);
    if (mrc == 0 && j->state == RF_JOB_PENDING) {
        rf_store_put_be64(due, (uint64_t)j->next_ms);
        rf_store_put_be64(due + 8, j->id);
        mrc = mdb_put(txn, rf_store_dbi(st, RF_DB_OUTBOX_DUE), &dk, &dv, 0);
    }
    return rf_store_rc(mrc);
}

/* Removes the due entry of a job that was pending at next_ms. */
int rf__job_undue(MDB_txn *txn, const struct rf_store *st, uint64_t id,
                  int64_t next_ms)
{
    unsigned char due[16];
    MDB_val dk = {16, due};
    int mrc;

    rf_store_put_be64(due, (uint64_t)next_ms);
    rf_store_put_be64(due + 8, id);
    mrc = mdb_del(txn, rf_store_dbi(st, RF_DB_OUTBOX_DUE), &dk, NULL);
    return mrc == MDB_NOTFOUND ? 0 : rf_store_rc(mrc);
}

static int next_id(MDB_txn *txn, const struct rf_store *st, uint64_t *id)
{
    MDB_val k = {sizeof("outbox_seq") - 1, "outbox_seq"}, v;
    unsigned char buf[8];
    int mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_META), &k, &v);

    *id = mrc == 0 && v.mv_size == 8 ? rf_store_get_be64(v.mv_data) + 1 : 1;
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return rf_store_rc(mrc);
    }
    rf_store_put_be64(buf, *id);
    v.mv_size = 8;
    v.mv_data = buf;
    return rf_store_rc(mdb_put(txn, rf_store_dbi(st, RF_DB_META), &k, &v, 0));
}

int rf_outbox_add(MDB_txn *txn, const struct rf_store *st,
                  const char *tenant, const char *kind, const char *key,
                  const char *payload, int64_t due_ms, uint64_t *id)
{
    char kk[65 + RF_JOB_KEY_MAX];
    size_t tlen = strlen(tenant), klen = strlen(key);
    MDB_val k = {tlen + 1 + klen, kk}, v;
    unsigned char idb[8];
    struct rf_job j = {0};
    int mrc, rc;

    if (tlen == 0 || tlen > 64 || klen == 0 || klen >= RF_JOB_KEY_MAX ||
        strlen(kind) == 0 || strlen(kind) >= RF_JOB_KIND_MAX) {
        return RF_EINVAL;
    }
    if (strlen(payload) > PAYLOAD_MAX) {
        return RF_ETOOBIG;
    }
    {
        cJSON *check = cJSON_Parse(payload); /* kept raw in the record */

        if (check == NULL) {
            return RF_EINVAL;
        }
        cJSON_Delete(check);
    }
    memcpy(kk, tenant, tlen + 1);
    memcpy(kk + tlen + 1, key, klen);
    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_OUTBOX_KEYS), &k, &v);
    if (mrc == 0 && v.mv_size == 8) {
        if (id) {
            *id = rf_store_get_be64(v.mv_data); /* added before */
        }
        return 0;
    }
    rc = next_id(txn, st, &j.id);
    if (rc != 0) {
        return rc;
    }
    snprintf(j.tenant, sizeof(j.tenant), "%s", tenant);
    snprintf(j.kind, sizeof(j.kind), "%s", kind);
    snprintf(j.key, sizeof(j.key), "%s", key);
    j.payload = (char *)payload;
    j.created_ms = rf__outbox_now_ms();
    j.next_ms = due_ms ? due_ms : j.created_ms;
    rc = rf__job_put(txn, st, &j);
    if (rc != 0) {
        return rc;
    }
    rf_store_put_be64(idb, j.id);
    v.mv_size = 8;
    v.mv_data = idb;
    rc = rf_store_rc(mdb_put(txn, rf_store_dbi(st, RF_DB_OUTBOX_KEYS), &k,
                             &v, 0));
    if (rc == 0 && id) {
        *id = j.id;
    }
    return rc;
}

/* --- for operators ------------------------------------------------------ */

int rf_outbox_each(struct rf_store *st, const char *tenant,
                   enum rf_job_state state,
                   int (*fn)(const struct rf_job *job, void *arg), void *arg)
{
    MDB_cursor *cur = NULL;
    MDB_txn *txn = NULL;
    MDB_val k, v;
    int rc = 0, mrc;

    if (rf_store_read_begin(st, &txn) != 0) {
        return RF_ESTORE;
    }
    if (mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_OUTBOX), &cur) != 0) {
        rf_store_read_end(st, txn);
        return RF_ESTORE;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct rf_job j;

        if (k.mv_size != 8 ||
            rf__job_decode(v.mv_data, v.mv_size,
                           rf_store_get_be64(k.mv_data), &j) != 0) {
            continue;
        }
        if (j.state == state && strcmp(j.tenant, tenant) == 0) {
            rc = fn(&j, arg);
        }
        rf_job_cleanup(&j);
    }
    if (rc == 0) {
        rc = rf_store_scan_rc(mrc);
    }
    mdb_cursor_close(cur);
    rf_store_read_end(st, txn);
    return rc;
}

struct replay {
    struct rf_store *st;
    const char *tenant;
    uint64_t id;
    long n;
};

/* Makes one dead job pending again; returns 1 if it did. */
static int revive(MDB_txn *txn, struct replay *r, uint64_t id)
{
    unsigned char idk[8];
    MDB_val k = {8, idk}, v;
    struct rf_job j;
    int rc;

    rf_store_put_be64(idk, id);
    if (mdb_get(txn, rf_store_dbi(r->st, RF_DB_OUTBOX), &k, &v) != 0 ||
        rf__job_decode(v.mv_data, v.mv_size, id, &j) != 0) {
        return 0;
    }
    rc = 0;
    if (j.state == RF_JOB_DEAD && strcmp(j.tenant, r->tenant) == 0) {
        j.state = RF_JOB_PENDING;
        j.attempts = 0;
        j.next_ms = rf__outbox_now_ms();
        j.finished_ms = 0;
        rc = rf__job_put(txn, r->st, &j);
        rc = rc == 0 ? 1 : rc;
    }
    rf_job_cleanup(&j);
    return rc;
}

static int replay_txn(MDB_txn *txn, void *ctx)
{
    struct replay *r = ctx;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, mrc;

    r->n = 0;
    if (r->id != 0) {
        rc = revive(txn, r, r->id);
        r->n = rc > 0 ? rc : 0;
        return rc < 0 ? rc : 0;
    }
    if (mdb_cursor_open(txn, rf_store_dbi(r->st, RF_DB_OUTBOX), &cur) != 0) {
        return RF_ESTORE;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (n == cap) {
            uint64_t *p = realloc(ids, (cap = cap ? cap * 2 : 64) * 8);

            if (p == NULL) {
                rc = RF_ENOMEM;
                break;
            }
            ids = p;
        }
        ids[n++] = rf_store_get_be64(k.mv_data);
    }
    if (rc == 0) {
        rc = rf_store_scan_rc(mrc);
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int got = revive(txn, r, ids[i]);

        rc = got < 0 ? got : 0;
        r->n += got > 0;
    }
    free(ids);
    return rc;
}

long rf_outbox_replay(struct rf_store *st, const char *tenant, uint64_t id)
{
    struct replay r = {st, tenant, id, 0};
    int rc = rf_store_write(st, replay_txn, &r);

    return rc != 0 ? rc : r.n;
}

int rf_outbox_find(MDB_txn *txn, const struct rf_store *st,
                   const char *tenant, const char *key, struct rf_job *out)
{
    char kk[65 + RF_JOB_KEY_MAX];
    size_t tlen = strlen(tenant), klen = strlen(key);
    MDB_val k = {tlen + 1 + klen, kk}, v;
    unsigned char idb[8];
    uint64_t id;
    int mrc;

    if (tlen == 0 || tlen > 64 || klen == 0 || klen >= RF_JOB_KEY_MAX) {
        return RF_EINVAL;
    }
    memcpy(kk, tenant, tlen + 1);
    memcpy(kk + tlen + 1, key, klen);
    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_OUTBOX_KEYS), &k, &v);
    if (mrc != 0 || v.mv_size != 8) {
        return mrc == MDB_NOTFOUND ? RF_ENOTFOUND : RF_ESTORE;
    }
    id = rf_store_get_be64(v.mv_data);
    rf_store_put_be64(idb, id);
    k.mv_size = 8;
    k.mv_data = idb;
    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_OUTBOX), &k, &v);
    if (mrc != 0) {
        return mrc == MDB_NOTFOUND ? RF_ENOTFOUND : rf_store_rc(mrc);
    }
    return rf__job_decode(v.mv_data, v.mv_size, id, out);
}

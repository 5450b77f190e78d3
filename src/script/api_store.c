/* store.get / store.put / store.delete for scripts: JSON values under keys
 * of the tenant's own, in LMDB. Reads are immediate; writes yield until
 * their commit is on disk. */
#include "referee/error.h"
#include "referee/script_api.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "call.h"

#define KEY_MAX 200
#define VALUE_MAX (64 * 1024)
#define ENTRY_COST 16

struct put_job {
    struct rf_write_job wj; /* first: the writer hands this back */
    struct rf_call *call;
    struct rf_store *store;
    size_t quota; /* the tenant's limits.store_mb, bytes */
    size_t used;  /* after the write, or what stopped it (RF_ELIMIT) */
    size_t klen;
    size_t vlen; /* 0: delete */
    char *val;
    char key[RF_TENANT_ID_MAX + 1 + KEY_MAX];
};

/* Builds tenant \0 key; raises on a bad key. */
static size_t make_key(lua_State *L, const struct rf_tenant *t, char *out)
{
    size_t klen, tlen = strlen(t->id);
    const char *k = luaL_checklstring(L, 1, &klen);

    luaL_argcheck(L, klen > 0 && klen <= KEY_MAX, 1,
                  "keys are 1 to 200 bytes");
    memcpy(out, t->id, tlen);
    out[tlen] = '\0';
    memcpy(out + tlen + 1, k, klen);
    return tlen + 1 + klen;
}

static struct rf_store *need_store(lua_State *L, struct rf_call *c)
{
    struct rf_store *st = rf__call_store(c);

    if (st == NULL || rf__call_writer(c) == NULL) {
        luaL_error(L, "store: no data directory (run with --data)");
    }
    return st;
}

static int l_get(lua_State *L)
{
    struct rf_call *c = rf__call_check(L, "store.get");
    struct rf_store *st = need_store(L, c);
    char key[RF_TENANT_ID_MAX + 1 + KEY_MAX], err[96];
    MDB_val k = {make_key(L, rf__call_tenant(c), key), key}, v;
    MDB_txn *txn = NULL;
    cJSON *json = NULL;
    int mrc;

    if (rf_store_read_begin(st, &txn) != 0) {
        return luaL_error(L, "store.get: the store cannot be read");
    }
    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_KV), &k, &v);
    if (mrc == 0) {
        json = rf_api_parse_json(v.mv_data, v.mv_size, err, sizeof(err));
    }
    rf_store_read_end(st, txn);
    if (json == NULL) {
        lua_pushnil(L);
        return 1;
    }
    mrc = rf_api_push_json(L, json);
    cJSON_Delete(json);
    if (mrc != 0) {
        return luaL_error(L, "store.get: out of memory");
    }
    return 1;
}

/* What a tenant's values take is kept beside them, in the meta database
 * under "kv_bytes" \0 tenant (8 bytes, big-endian): keys plus values plus
 * ENTRY_COST each, so that one tenant cannot fill the disk every tenant
 * shares. ENTRY_COST stands for LMDB's own bytes per record (node header,
 * page index, half-full pages after random inserts): a reviewer filled
 * 1 MiB of 3-byte keys and 1-byte values into 4.4 MiB of pages without
 * it. The key of a job starts with the tenant id and its \0. A store
 * written before the count existed starts counting at 0 (deleting older
 * values cannot take it below 0). */
static size_t usage_key(const struct put_job *j, char *out)
{
    size_t tlen = strlen(j->key);

    memcpy(out, "kv_bytes", 9); /* with its \0 */
    memcpy(out + 9, j->key, tlen);
    return 9 + tlen;
}

static int run_put(MDB_txn *txn, struct rf_write_job *wj)
{
    struct put_job *j = (struct put_job *)wj;
    MDB_dbi dbi = rf_store_dbi(j->store, RF_DB_KV);
    MDB_dbi meta = rf_store_dbi(j->store, RF_DB_META);
    MDB_val k = {j->klen, j->key}, v = {j->vlen, j->val}, old, uk, uv;
    char ukey[9 + RF_TENANT_ID_MAX];
    unsigned char buf[8];
    size_t used = 0, was = 0;
    size_t now = j->vlen ? j->klen + j->vlen + ENTRY_COST : 0;
    int mrc;

    uk.mv_size = usage_key(j, ukey);
    uk.mv_data = ukey;
    mrc = mdb_get(txn, meta, &uk, &uv);
    if (mrc == 0 && uv.mv_size == 8) {
        used = (size_t)rf_store_get_be64(uv.mv_data);
    } else if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return rf_store_rc(mrc);
    }
    mrc = mdb_get(txn, dbi, &k, &old);
    if (mrc == 0) {
        was = j->klen + old.mv_size + ENTRY_COST;
    } else if (mrc != MDB_NOTFOUND) {
        return rf_store_rc(mrc);
    }
    used = used > was ? used - was : 0;
    if (now > was && used + now > j->quota) {
        j->used = used + now;
        return RF_ELIMIT;
    }
    used += now;
    if (j->vlen == 0) {
        mrc = was ? mdb_del(txn, dbi, &k, NULL) : 0;
    } else {
        mrc = mdb_put(txn, dbi, &k, &v, 0);
    }
    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    j->used = used;
    rf_store_put_be64(buf, used);
    uv.mv_size = 8;
    uv.mv_data = buf;
    return rf_store_rc(mdb_put(txn, meta, &uk, &uv, 0));
}

static void on_put_done(struct rf_write_job *wj)
{
    struct put_job *j = (struct put_job *)wj;
    struct rf_call *c = j->call;

    if (rf__call_waiting(c)) {
        lua_State *co = rf__call_thread(c);

        if (wj->rc == 0) {
            lua_pushboolean(co, 1);
            rf__call_resume(c, 1);
        } else if (wj->rc == RF_ELIMIT) {
            lua_pushnil(co);
            lua_pushfstring(co,
                            "the tenant's stored values would take %I bytes "
                            "with this one, over its limit of %I bytes "
                            "(limits.store_mb): delete some first",
                            (LUAI_UACINT)j->used, (LUAI_UACINT)j->quota);
            rf__call_resume(c, 2);
        } else {
            lua_pushnil(co);
            lua_pushstring(co, rf_strerror(wj->rc));
            rf__call_resume(c, 2);
        }
    }
    rf__call_release(c);
    cJSON_free(j->val);
    free(j);
}

/* Queues a put (value at index 2) or a delete (no value). */
static int queue_write(lua_State *L, int del)
{
    struct rf_call *c = rf__call_check(L, del ? "store.delete" : "store.put");
    struct rf_store *st = need_store(L, c);
    struct put_job *j;
    char err[160];
    char key[RF_TENANT_ID_MAX + 1 + KEY_MAX];
    size_t klen = make_key(L, rf__call_tenant(c), key);
    cJSON *v = NULL;
    char *text = NULL;

    if (!del) {
        luaL_checkany(L, 2);
        v = rf_api_to_json_max(L, 2, VALUE_MAX, err, sizeof(err));
        if (v == NULL) {
            return luaL_error(L, "store.put: %s", err);
        }
        text = cJSON_PrintUnformatted(v);
        cJSON_Delete(v);
        if (text == NULL || strlen(text) > VALUE_MAX) {
            cJSON_free(text);
            return luaL_error(L, "store.put: values are at most 64 KiB of "
                                 "JSON");
        }
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        cJSON_free(text);
        return luaL_error(L, "store: out of memory");
    }
    j->wj.run = run_put;
    j->wj.done = on_put_done;
    j->call = c;
    j->store = st;
    j->quota = rf__call_tenant(c)->store_max
                   ? rf__call_tenant(c)->store_max
                   : (size_t)RF_TENANT_STORE_MB_DEFAULT << 20;
    memcpy(j->key, key, klen);
    j->klen = klen;
    j->val = text;
    j->vlen = text ? strlen(text) : 0;
    rf__call_hold(c);
    rf_writer_submit(rf__call_writer(c), &j->wj);
    return rf__call_wait(L, c);
}

static int l_put(lua_State *L)
{
    return queue_write(L, 0);
}

static int l_delete(lua_State *L)
{
    return queue_write(L, 1);
}

void rf__api_open_store(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"get", l_get}, {"put", l_put}, {"delete", l_delete}, {NULL, NULL}};

    luaL_newlib(L, fns);
    lua_setglobal(L, "store");
}

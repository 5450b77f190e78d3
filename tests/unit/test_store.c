/* The LMDB store: create, reopen, schema refusal, read-only opening, and
 * map growth under MDB_MAP_FULL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "referee/error.h"
#include "referee/store.h"

#include "testutil.h"

static char dir[64];

static int make_dir(void **state)
{
    RF_TEST_MKDIR(dir, "store");
    return 0;
}

static int remove_dir(void **state)
{
    RF_TEST_RMDIR(dir);
    return 0;
}

struct fill {
    int from, count;
    size_t value_len;
};

/* Writes `count` values of value_len bytes under keys from..from+count. */
static int put_many(MDB_txn *txn, void *ctx)
{
    struct fill *f = ctx;
    MDB_dbi dbi;
    char key[16];
    int mrc = mdb_dbi_open(txn, "events", 0, &dbi);

    for (int i = 0; mrc == 0 && i < f->count; i++) {
        MDB_val k = {(size_t)snprintf(key, sizeof(key), "k%08d", f->from + i),
                     key};
        MDB_val v = {f->value_len, NULL};

        mrc = mdb_put(txn, dbi, &k, &v, MDB_RESERVE);
        if (mrc == 0) {
            memset(v.mv_data, 'x', f->value_len);
        }
    }
    return rf_store_rc(mrc);
}

static void test_create_and_reopen(void **state)
{
    struct rf_store *st = NULL;
    char err[256];

    assert_int_equal(rf_store_open(dir, 0, 0, &st, err, sizeof(err)), 0);
    rf_store_close(st);
    st = NULL;
    assert_int_equal(
        rf_store_open(dir, RF_STORE_RDONLY, 0, &st, err, sizeof(err)), 0);
    rf_store_close(st);
}

static void test_readonly_missing(void **state)
{
    struct rf_store *st = NULL;
    char err[256], missing[96];
    int rc;

    snprintf(missing, sizeof(missing), "%s/nothing-here", dir);
    rc = rf_store_open(missing, RF_STORE_RDONLY, 0, &st, err, sizeof(err));
    assert_int_equal(rc, RF_ENOTFOUND);
    assert_null(st);
}

static int set_schema(MDB_txn *txn, void *ctx)
{
    MDB_dbi dbi;
    MDB_val k = {14, "schema_version"}, v = {strlen(ctx), ctx};
    int mrc = mdb_dbi_open(txn, "meta", 0, &dbi);

    return rf_store_rc(mrc ? mrc : mdb_put(txn, dbi, &k, &v, 0));
}

static void test_schema_mismatch_refused(void **state)
{
    struct rf_store *st = NULL;
    char err[256];
    int rc;

    assert_int_equal(rf_store_open(dir, 0, 0, &st, err, sizeof(err)), 0);
    assert_int_equal(rf_store_write(st, set_schema, "99"), 0);
    rf_store_close(st);
    st = NULL;
    rc = rf_store_open(dir, 0, 0, &st, err, sizeof(err));
    assert_int_equal(rc, RF_ESCHEMA);
    assert_non_null(strstr(err, "schema version 99"));
    assert_non_null(strstr(err, "reads version 1"));
    assert_null(st);
}

static void test_map_grows_when_full(void **state)
{
    struct rf_store *st = NULL;
    struct fill f = {0, 64, 16 * 1024};
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat ms;
    char err[256], sub[96];

    snprintf(sub, sizeof(sub), "%s/grow", dir);
    assert_int_equal(rf_store_open(sub, 0, 1 << 20, &st, err, sizeof(err)),
                     0);
    assert_int_equal(rf_store_map_size(st), 1 << 20);
    /* 80 batches of 1 MiB each: many times the initial map. */
    for (int i = 0; i < 80; i++) {
        f.from = i * f.count;
        assert_int_equal(rf_store_write(st, put_many, &f), 0);
    }
    assert_true(rf_store_map_size(st) >= (size_t)80 << 20);
    assert_int_equal(rf_store_read_begin(st, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "events", 0, &dbi), 0);
    assert_int_equal(mdb_stat(txn, dbi, &ms), 0);
    assert_int_equal(ms.ms_entries, 80 * 64);
    rf_store_read_end(st, txn);
    rf_store_close(st);
}

static void test_be64_order(void **state)
{
    unsigned char a[8], b[8];

    rf_store_put_be64(a, 255);
    rf_store_put_be64(b, 256);
    assert_true(memcmp(a, b, 8) < 0);
    assert_int_equal(rf_store_get_be64(b), 256);
    rf_store_put_be64(a, UINT64_MAX - 1);
    assert_true(rf_store_get_be64(a) == UINT64_MAX - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_reopen),
        cmocka_unit_test(test_readonly_missing),
        cmocka_unit_test(test_map_grows_when_full),
        cmocka_unit_test(test_be64_order),
        cmocka_unit_test(test_schema_mismatch_refused),
    };

    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}

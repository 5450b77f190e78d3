/* The group-commit writer: every job is handed back on the loop, batches
 * hold many jobs, a failing job is rolled back alone, and stopping
 * finishes what was queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "referee/error.h"
#include "referee/writer.h"

#include "testutil.h"

#define NJOBS 2000

static char dir[64];
static struct rf_store *st;

struct job {
    struct rf_write_job wj;
    int n;
    int fail;
    int done;
};

static int done_count;

static int setup(void **state)
{
    char err[256];

    RF_TEST_MKDIR(dir, "writer");
    assert_int_equal(rf_store_open(dir, 0, 0, &st, err, sizeof(err)), 0);
    return 0;
}

static int teardown(void **state)
{
    rf_store_close(st);
    RF_TEST_RMDIR(dir);
    return 0;
}

static int run(MDB_txn *txn, struct rf_write_job *wj)
{
    struct job *j = (struct job *)wj;
    char key[16];
    MDB_val k = {(size_t)snprintf(key, sizeof(key), "w%06d", j->n), key};
    MDB_val v = {1, "x"};
    int mrc = mdb_put(txn, rf_store_dbi(st, RF_DB_EVENTS), &k, &v, 0);

    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    return j->fail ? RF_EINVAL : 0; /* a failing job wrote, then failed */
}

static void on_done(struct rf_write_job *wj)
{
    struct job *j = (struct job *)wj;

    j->done = 1;
    done_count++;
}

static int exists(int n)
{
    MDB_txn *txn;
    char key[16];
    MDB_val k = {(size_t)snprintf(key, sizeof(key), "w%06d", n), key}, v;
    int mrc;

    assert_int_equal(rf_store_read_begin(st, &txn), 0);
    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_EVENTS), &k, &v);
    rf_store_read_end(st, txn);
    return mrc == 0;
}

static void run_jobs(enum rf_writer_mode mode, int base)
{
    struct job *jobs = calloc(NJOBS, sizeof(*jobs));
    unsigned long commits, njobs;
    struct rf_writer *w;
    uv_loop_t loop;

    assert_non_null(jobs);
    assert_int_equal(uv_loop_init(&loop), 0);
    w = rf_writer_start(&loop, st, mode, 0);
    assert_non_null(w);
    done_count = 0;
    for (int i = 0; i < NJOBS; i++) {
        jobs[i] = (struct job){{run, on_done, 0, NULL}, base + i, i % 7 == 3,
                               0};
        rf_writer_submit(w, &jobs[i].wj);
    }
    while (done_count < NJOBS) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    rf_writer_stats(w, &commits, &njobs);
    assert_int_equal(njobs, NJOBS);
    if (mode == RF_WRITER_GROUP) {
        assert_true(commits < NJOBS / 4); /* batches really formed */
    } else {
        assert_int_equal(commits, NJOBS);
    }
    assert_int_equal(rf_writer_pending(w), 0);
    rf_writer_stop(w);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);

    for (int i = 0; i < NJOBS; i++) {
        assert_int_equal(jobs[i].done, 1);
        assert_int_equal(jobs[i].wj.rc, jobs[i].fail ? RF_EINVAL : 0);
        assert_int_equal(exists(base + i), !jobs[i].fail);
    }
    free(jobs);
}

static void test_group_commit(void **state)
{
    run_jobs(RF_WRITER_GROUP, 0);
}

static void test_inline_commit(void **state)
{
    run_jobs(RF_WRITER_INLINE, 100000);
}

/* Stopping with jobs still queued finishes them before returning. */
static void test_stop_drains_queue(void **state)
{
    struct job jobs[50];
    struct rf_writer *w;
    uv_loop_t loop;

    assert_int_equal(uv_loop_init(&loop), 0);
    w = rf_writer_start(&loop, st, RF_WRITER_GROUP, 0);
    done_count = 0;
    for (int i = 0; i < 50; i++) {
        jobs[i] = (struct job){{run, on_done, 0, NULL}, 200000 + i, 0, 0};
        rf_writer_submit(w, &jobs[i].wj);
    }
    rf_writer_stop(w);
    assert_int_equal(done_count, 50);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_true(exists(200049));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_inline_commit),
        cmocka_unit_test(test_stop_drains_queue),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

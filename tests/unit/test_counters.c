/* Daily counters: the store side, and increments batched on a loop through
 * the writer thread, on a real LMDB store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "referee/counters.h"
#include "referee/error.h"
#include "referee/store.h"
#include "referee/writer.h"

#include "testutil.h"

#define MAR1 1803859200 /* 2027-03-01T00:00:00Z */
#define DAY 86400

struct fixture {
    char dir[64];
    struct rf_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];

    RF_TEST_MKDIR(f->dir, "counters");
    assert_int_equal(rf_store_open(f->dir, 0, 0, &f->st, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    rf_store_close(f->st);
    RF_TEST_RMDIR(f->dir);
    free(f);
    return 0;
}

static struct rf_store *current;

static int add_some(MDB_txn *txn, void *ctx)
{
    int rc = rf_counter_add(txn, current, "acme", "2027-03-01", "visits", 2);

    (void)ctx;
    if (rc == 0) {
        rc = rf_counter_add(txn, current, "acme", "2027-03-01", "visits", 3);
    }
    if (rc == 0) {
        rc = rf_counter_add(txn, current, "acme", "2027-03-02", "visits", 1);
    }
    if (rc == 0) {
        rc = rf_counter_add(txn, current, "acme2", "2027-03-01", "visits", 7);
    }
    return rc;
}

static uint64_t get(struct rf_store *st, const char *tenant, const char *day)
{
    MDB_txn *txn;
    uint64_t v = 99;

    assert_int_equal(rf_store_read_begin(st, &txn), 0);
    assert_int_equal(rf_counter_get(txn, st, tenant, day, "visits", &v), 0);
    rf_store_read_end(st, txn);
    return v;
}

struct seen {
    char text[256];
};

static int collect(const char *day, const char *name, uint64_t value, void *arg)
{
    struct seen *s = arg;
    size_t n = strlen(s->text);

    snprintf(s->text + n, sizeof(s->text) - n, "%s/%s=%llu;", day, name,
             (unsigned long long)value);
    return 0;
}

static void test_days_are_utc_dates(void **state)
{
    char day[11];

    (void)state;
    rf_day(MAR1, day);
    assert_string_equal(day, "2027-03-01");
    rf_day(MAR1 - 1, day);
    assert_string_equal(day, "2027-02-28");
    rf_day(MAR1 + DAY - 1, day);
    assert_string_equal(day, "2027-03-01");
}

static void test_counters_add_up_per_tenant_and_day(void **state)
{
    struct fixture *f = *state;
    struct seen s = {""};
    MDB_txn *txn;

    current = f->st;
    assert_int_equal(rf_store_write(f->st, add_some, NULL), 0);
    assert_int_equal(get(f->st, "acme", "2027-03-01"), 5);
    assert_int_equal(get(f->st, "acme", "2027-03-02"), 1);
    assert_int_equal(get(f->st, "acme", "2027-03-03"), 0);
    assert_int_equal(get(f->st, "acme2", "2027-03-01"), 7);
    assert_int_equal(rf_store_read_begin(f->st, &txn), 0);
    assert_int_equal(rf_counters_each(txn, f->st, "acme", collect, &s), 0);
    rf_store_read_end(f->st, txn);
    /* acme's only: the prefix "acme" \0 does not reach acme2. */
    assert_string_equal(s.text, "2027-03-01/visits=5;2027-03-02/visits=1;");
}

static void test_bumps_are_batched_and_flushed_at_stop(void **state)
{
    struct fixture *f = *state;
    struct rf_writer *w;
    struct rf_counters *c;
    uv_loop_t loop;

    assert_int_equal(uv_loop_init(&loop), 0);
    w = rf_writer_start(&loop, f->st, RF_WRITER_GROUP, 0);
    assert_non_null(w);
    c = rf_counters_start(&loop, f->st, w);
    assert_non_null(c);
    for (int i = 0; i < 1000; i++) {
        rf_counters_bump(c, "acme", "visits", MAR1 + 10);
    }
    rf_counters_bump(c, "acme", "visits", MAR1 + DAY);
    assert_int_equal(rf_counters_dropped(c), 0);
    rf_counters_stop(c);
    rf_writer_stop(w);
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(get(f->st, "acme", "2027-03-01"), 1000);
    assert_int_equal(get(f->st, "acme", "2027-03-02"), 1);
}

static void on_wait(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void test_bumps_reach_the_store_within_a_second(void **state)
{
    struct fixture *f = *state;
    struct rf_writer *w;
    struct rf_counters *c;
    uv_loop_t loop;
    uv_timer_t wait;

    assert_int_equal(uv_loop_init(&loop), 0);
    w = rf_writer_start(&loop, f->st, RF_WRITER_GROUP, 0);
    c = rf_counters_start(&loop, f->st, w);
    assert_non_null(c);
    rf_counters_bump(c, "acme", "visits", MAR1);
    rf_counters_bump(c, "acme", "visits", MAR1);
    uv_timer_init(&loop, &wait);
    uv_timer_start(&wait, on_wait, RF_COUNTERS_FLUSH_MS + 500, 0);
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(get(f->st, "acme", "2027-03-01"), 2); /* before stop */
    uv_close((uv_handle_t *)&wait, NULL);
    rf_counters_stop(c);
    rf_writer_stop(w);
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(get(f->st, "acme", "2027-03-01"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_are_utc_dates),
        cmocka_unit_test_setup_teardown(test_counters_add_up_per_tenant_and_day,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_bumps_are_batched_and_flushed_at_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_bumps_reach_the_store_within_a_second, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

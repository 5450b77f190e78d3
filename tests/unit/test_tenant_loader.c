/* The tenant loader: loads run off the loop, are queued one at a time,
 * coalesce, and are thrown away when the loader stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "referee/error.h"
#include "referee/tenant.h"
#include "referee/tenant_loader.h"

#include "testutil.h"

/* A tenant.lua that takes about 40 ms of wall time to load, within the
 * default CPU budget of 50 ms. */
#define SLOW_LOAD                                                              \
    "local t = time.now()\n"                                                   \
    "while time.now() - t < 0.04 do end\n"

static char dir[64];

static void write_tenant(const char *id, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, id);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/%s/tenant.lua", dir, id);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

struct seen {
    int calls;
    char ids[8][32]; /* "*" for a reload of all */
    int rcs[8];
    int ticks_at_first; /* timer ticks when the first load was done */
    int ticks;
    uv_timer_t timer;
    int want;
};

static void on_tick(uv_timer_t *t)
{
    struct seen *s = t->data;

    s->ticks++;
}

static void on_loaded(void *arg, const char *id, int rc, const char *err)
{
    struct seen *s = arg;

    (void)err;
    if (s->calls == 0) {
        s->ticks_at_first = s->ticks;
    }
    if (s->calls < 8) {
        snprintf(s->ids[s->calls], sizeof(s->ids[0]), "%s", id ? id : "*");
        s->rcs[s->calls] = rc;
    }
    if (++s->calls == s->want) {
        uv_timer_stop(&s->timer);
    }
}

static const char *first_source(const struct rf_tenants *ts, const char *id)
{
    const struct rf_tenant *t = rf_tenant_find(ts, id, strlen(id));

    return t && t->nsources > 0 ? t->sources[0].name : NULL;
}

static void test_load_runs_while_the_loop_goes_on(void **state)
{
    struct rf_tenants *ts = NULL;
    struct rf_tenant_loader *l;
    struct seen s = {.want = 1};
    uv_loop_t loop;

    (void)state;
    RF_TEST_MKDIR(dir, "loader");
    write_tenant("slow", SLOW_LOAD "return { sources = { a = {} } }\n");
    assert_int_equal(rf_tenants_load(dir, NULL, &ts), 0);
    assert_string_equal(first_source(ts, "slow"), "a");

    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &s.timer);
    s.timer.data = &s;
    uv_timer_start(&s.timer, on_tick, 2, 2);
    l = rf_tenant_loader_new(&loop, dir, NULL, &ts, on_loaded, &s);
    assert_non_null(l);

    write_tenant("slow", SLOW_LOAD "return { sources = { b = {} } }\n");
    rf_tenant_loader_one(l, "slow");
    assert_int_equal(s.calls, 0); /* not loaded on the caller's stack */
    uv_run(&loop, UV_RUN_DEFAULT);

    assert_int_equal(s.calls, 1);
    assert_string_equal(s.ids[0], "slow");
    assert_int_equal(s.rcs[0], 0);
    /* The loop ran its 2 ms timer while the 40 ms load went on. */
    assert_true(s.ticks_at_first >= 3);
    assert_string_equal(first_source(ts, "slow"), "b");

    rf_tenant_loader_stop(l);
    uv_close((uv_handle_t *)&s.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    rf_tenants_free(ts);
    RF_TEST_RMDIR(dir);
}

static void test_loads_queue_and_coalesce(void **state)
{
    struct rf_tenants *ts = NULL;
    struct rf_tenant_loader *l;
    struct seen s = {.want = 2};
    uv_loop_t loop;

    (void)state;
    RF_TEST_MKDIR(dir, "loader");
    write_tenant("slow", SLOW_LOAD "return { sources = { a = {} } }\n");
    write_tenant("other", "return { sources = { a = {} } }\n");
    assert_int_equal(rf_tenants_load(dir, NULL, &ts), 0);

    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &s.timer);
    s.timer.data = &s;
    uv_timer_start(&s.timer, on_tick, 2, 2);
    l = rf_tenant_loader_new(&loop, dir, NULL, &ts, on_loaded, &s);
    assert_non_null(l);

    rf_tenant_loader_one(l, "slow");  /* starts at once */
    rf_tenant_loader_one(l, "slow");  /* waits */
    rf_tenant_loader_one(l, "slow");  /* already waiting */
    rf_tenant_loader_one(l, "other"); /* waits */
    write_tenant("other", "return { sources = { c = {} } }\n");
    rf_tenant_loader_all(l);          /* takes the place of the two waiting */
    rf_tenant_loader_one(l, "other"); /* covered by the full reload */
    uv_run(&loop, UV_RUN_DEFAULT);

    assert_int_equal(s.calls, 2);
    assert_string_equal(s.ids[0], "slow");
    assert_string_equal(s.ids[1], "*");
    assert_int_equal(s.rcs[1], 0);
    assert_int_equal(ts->n, 2);
    assert_string_equal(first_source(ts, "other"), "c");

    rf_tenant_loader_stop(l);
    uv_close((uv_handle_t *)&s.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    rf_tenants_free(ts);
    RF_TEST_RMDIR(dir);
}

/* A FIFO where tenant.lua should be fails the load at once instead of
 * waiting for a writer (a reviewer's FIFO held the daemon's loop). */
static void test_fifo_tenant_file_fails_at_once(void **state)
{
    struct rf_tenants *ts = NULL;
    struct rf_tenant_loader *l;
    struct seen s = {.want = 1};
    char path[256];
    uv_loop_t loop;

    (void)state;
    RF_TEST_MKDIR(dir, "loader");
    write_tenant("good", "return { sources = { a = {} } }\n");
    assert_int_equal(rf_tenants_load(dir, NULL, &ts), 0);
    snprintf(path, sizeof(path), "%s/fifo", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/fifo/tenant.lua", dir);
    assert_int_equal(mkfifo(path, 0600), 0);

    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &s.timer);
    s.timer.data = &s;
    uv_timer_start(&s.timer, on_tick, 2, 2);
    l = rf_tenant_loader_new(&loop, dir, NULL, &ts, on_loaded, &s);
    rf_tenant_loader_one(l, "fifo");
    uv_run(&loop, UV_RUN_DEFAULT);

    assert_int_equal(s.calls, 1);
    assert_int_equal(s.rcs[0], RF_ENOTFILE);
    assert_non_null(rf_tenant_find(ts, "fifo", 4)); /* holding its error */
    assert_non_null(rf_tenant_find(ts, "fifo", 4)->error);

    rf_tenant_loader_stop(l);
    uv_close((uv_handle_t *)&s.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    rf_tenants_free(ts);
    RF_TEST_RMDIR(dir);
}

/* Stopping with a load under way: it ends on its thread, its result is
 * thrown away (no callback, nothing leaked), the registry is untouched. */
static void test_stop_throws_away_the_load_under_way(void **state)
{
    struct rf_tenants *ts = NULL;
    struct rf_tenant_loader *l;
    struct seen s = {.want = 99};
    uv_loop_t loop;

    (void)state;
    RF_TEST_MKDIR(dir, "loader");
    write_tenant("slow", SLOW_LOAD "return { sources = { a = {} } }\n");
    assert_int_equal(rf_tenants_load(dir, NULL, &ts), 0);
    write_tenant("slow", SLOW_LOAD "return { sources = { b = {} } }\n");

    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &s.timer);
    l = rf_tenant_loader_new(&loop, dir, NULL, &ts, on_loaded, &s);
    rf_tenant_loader_one(l, "slow");
    rf_tenant_loader_all(l);
    rf_tenant_loader_stop(l);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once the load ended */

    assert_int_equal(s.calls, 0);
    assert_string_equal(first_source(ts, "slow"), "a");
    uv_close((uv_handle_t *)&s.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    rf_tenants_free(ts);
    RF_TEST_RMDIR(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_runs_while_the_loop_goes_on),
        cmocka_unit_test(test_loads_queue_and_coalesce),
        cmocka_unit_test(test_fifo_tenant_file_fails_at_once),
        cmocka_unit_test(test_stop_throws_away_the_load_under_way),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

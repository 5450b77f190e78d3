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
    FILE *f;

    RF_TEST_TENANT_FILE(f, dir, id);
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

/* A loop with a 2 ms ticking timer and a loader over dir's registry. */
struct fixture {
    uv_loop_t loop;
    struct rf_tenants *ts;
    struct rf_tenant_loader *l;
    struct seen s;
};

static void start(struct fixture *f, int want, int tick)
{
    f->s.want = want;
    assert_int_equal(rf_tenants_load(dir, NULL, &f->ts), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->s.timer);
    f->s.timer.data = &f->s;
    if (tick) {
        uv_timer_start(&f->s.timer, on_tick, 2, 2);
    }
    f->l = rf_tenant_loader_new(&f->loop, dir, NULL, &f->ts, on_loaded, &f->s);
    assert_non_null(f->l);
}

/* Stops the loader (unless stopped), closes the loop, frees everything. */
static void finish(struct fixture *f, int stopped)
{
    if (!stopped) {
        rf_tenant_loader_stop(f->l);
    }
    uv_close((uv_handle_t *)&f->s.timer, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    rf_tenants_free(f->ts);
    RF_TEST_RMDIR(dir);
}

static void test_load_runs_while_the_loop_goes_on(void **state)
{
    struct fixture f = {0};

    (void)state;
    RF_TEST_MKDIR(dir, "loader");
    write_tenant("slow", SLOW_LOAD "return { sources = { a = {} } }\n");
    start(&f, 1, 1);
    assert_string_equal(first_source(f.ts, "slow"), "a");

    write_tenant("slow", SLOW_LOAD "return { sources = { b = {} } }\n");
    rf_tenant_loader_one(f.l, "slow");
    assert_int_equal(f.s.calls, 0); /* not loaded on the caller's stack */
    uv_run(&f.loop, UV_RUN_DEFAULT);

    assert_int_equal(f.s.calls, 1);
    assert_string_equal(f.s.ids[0], "slow");
    assert_int_equal(f.s.rcs[0], 0);
    /* The loop ran its 2 ms timer while the 40 ms load went on. */
    assert_true(f.s.ticks_at_first >= 3);
    assert_string_equal(first_source(f.ts, "slow"), "b");
    finish(&f, 0);
}

static void test_loads_queue_and_coalesce(void **state)
{
    struct fixture f = {0};

    (void)state;
    RF_TEST_MKDIR(dir, "loader");
    write_tenant("slow", SLOW_LOAD "return { sources = { a = {} } }\n");
    write_tenant("other", "return { sources = { a = {} } }\n");
    start(&f, 2, 1);

    rf_tenant_loader_one(f.l, "slow");  /* starts at once */
    rf_tenant_loader_one(f.l, "slow");  /* waits */
    rf_tenant_loader_one(f.l, "slow");  /* already waiting */
    rf_tenant_loader_one(f.l, "other"); /* waits */
    write_tenant("other", "return { sources = { c = {} } }\n");
    rf_tenant_loader_all(f.l);          /* takes the place of the two waiting */
    rf_tenant_loader_one(f.l, "other"); /* covered by the full reload */
    uv_run(&f.loop, UV_RUN_DEFAULT);

    assert_int_equal(f.s.calls, 2);
    assert_string_equal(f.s.ids[0], "slow");
    assert_string_equal(f.s.ids[1], "*");
    assert_int_equal(f.s.rcs[1], 0);
    assert_int_equal(f.ts->n, 2);
    assert_string_equal(first_source(f.ts, "other"), "c");
    finish(&f, 0);
}

/* A FIFO where tenant.lua should be fails the load at once instead of
 * waiting for a writer (a reviewer's FIFO held the daemon's loop). */
static void test_fifo_tenant_file_fails_at_once(void **state)
{
    struct fixture f = {0};
    char path[256];

    (void)state;
    RF_TEST_MKDIR(dir, "loader");
    write_tenant("good", "return { sources = { a = {} } }\n");
    start(&f, 1, 1);
    snprintf(path, sizeof(path), "%s/fifo", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/fifo/tenant.lua", dir);
    assert_int_equal(mkfifo(path, 0600), 0);

    rf_tenant_loader_one(f.l, "fifo");
    uv_run(&f.loop, UV_RUN_DEFAULT);

    assert_int_equal(f.s.calls, 1);
    assert_int_equal(f.s.rcs[0], RF_ENOTFILE);
    assert_non_null(rf_tenant_find(f.ts, "fifo", 4)); /* holding its error */
    assert_non_null(rf_tenant_find(f.ts, "fifo", 4)->error);
    finish(&f, 0);
}

/* Stopping with a load under way: it ends on its thread, its result is
 * thrown away (no callback, nothing leaked), the registry is untouched. */
static void test_stop_throws_away_the_load_under_way(void **state)
{
    struct fixture f = {0};

    (void)state;
    RF_TEST_MKDIR(dir, "loader");
    write_tenant("slow", SLOW_LOAD "return { sources = { a = {} } }\n");
    start(&f, 99, 0);
    write_tenant("slow", SLOW_LOAD "return { sources = { b = {} } }\n");

    rf_tenant_loader_one(f.l, "slow");
    rf_tenant_loader_all(f.l);
    rf_tenant_loader_stop(f.l);
    uv_run(&f.loop, UV_RUN_DEFAULT); /* returns once the load ended */

    assert_int_equal(f.s.calls, 0);
    assert_string_equal(first_source(f.ts, "slow"), "a");
    finish(&f, 1);
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

/* The outbox: backoff bounds, classification, idempotent adds, and jobs run
 * against a local receiver: retries, dead letters, replay, and unknown
 * outcomes retried with the same key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "referee/error.h"
#include "referee/http.h"
#include "referee/http_client.h"
#include "referee/outbox.h"

#include "testutil.h"

static uv_loop_t loop;
static struct rf_http_server *srv;
static struct rf_http_client *cli;
static struct rf_store *st;
static struct rf_writer *wr;
static struct rf_outbox *ob;
static struct rf_outbox_http hx;
static char dir[64];
static unsigned port;

/* What the receiver saw and how it answers, per path. */
static int hits[8];
static char keys[8][16][RF_JOB_KEY_MAX];
static int settled_count;

static int path_index(const char *p)
{
    static const char *const paths[] = {"/flaky", "/reject", "/garbled",
                                        "/broken", "/ok"};

    for (int i = 0; i < 5; i++) {
        if (strcmp(p, paths[i]) == 0) {
            return i;
        }
    }
    return 7;
}

static void on_headers(struct rf_http_req *req, void *arg)
{
}

static void on_request(struct rf_http_req *req, void *arg)
{
    int i = path_index(rf_http_path(req)), n = hits[i]++;
    const char *key = rf_http_header(req, "Idempotency-Key");

    snprintf(keys[i][n % 16], RF_JOB_KEY_MAX, "%s", key ? key : "");
    switch (i) {
    case 0: /* two 503s, then success */
        if (n < 2) {
            rf_http_add_header(req, "Retry-After", "0");
            rf_http_respond(req, 503, "text/plain", "busy", 4);
        } else {
            rf_http_respond_json(req, 200, "{\"paid\":true}", 13);
        }
        return;
    case 1: /* refuses until replayed */
        if (n == 0) {
            rf_http_respond_error(req, 400, "bad_card", "no such card");
        } else {
            rf_http_respond_json(req, 201, "{}", 2);
        }
        return;
    case 2: /* a garbled success first */
        if (n == 0) {
            rf_http_respond(req, 200, "text/plain", "<html>", 6);
        } else {
            rf_http_respond_json(req, 200, "{\"ok\":1}", 8);
        }
        return;
    case 3:
        rf_http_respond(req, 500, "text/plain", "down", 4);
        return;
    default:
        rf_http_respond_json(req, 200, "{}", 2);
    }
}

static const struct rf_http_allow local[] = {{"127.0.0.1", 0, 1, 1}};

static int allow_local(const char *tenant, const struct rf_http_allow **a,
                       size_t *n, void *arg)
{
    if (strcmp(tenant, "acme") != 0) {
        return -1;
    }
    *a = local;
    *n = 1;
    return 0;
}

static void on_settled(const struct rf_job *job, void *arg)
{
    settled_count++;
}

static int add_txn(MDB_txn *txn, void *ctx)
{
    const char **a = ctx;

    return rf_outbox_add(txn, st, "acme", "http", a[0], a[1], 0, NULL);
}

static void add_job(const char *key, const char *path, int expect_json)
{
    char payload[256];
    const char *args[2] = {key, payload};

    snprintf(payload, sizeof(payload),
             "{\"url\":\"http://127.0.0.1:%u%s\",\"json\":{\"amount\":25},"
             "\"expect_json\":%s}",
             port, path, expect_json ? "true" : "false");
    assert_int_equal(rf_store_write(st, add_txn, args), 0);
    rf_outbox_kick(ob);
}

struct found {
    int n;
    struct rf_job last;
};

static int find_job(const struct rf_job *job, void *arg)
{
    struct found *f = arg;

    f->n++;
    f->last.attempts = job->attempts;
    snprintf(f->last.key, sizeof(f->last.key), "%s", job->key);
    return 0;
}

static struct found jobs_in(enum rf_job_state state)
{
    struct found f = {0};

    assert_int_equal(rf_outbox_each(st, "acme", state, find_job, &f), 0);
    return f;
}

/* Runs the loop until `n` jobs of the state exist (or 10 s pass). */
static void run_until(enum rf_job_state state, int n)
{
    uint64_t start = uv_now(&loop);

    while (jobs_in(state).n < n && uv_now(&loop) - start < 10000) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(jobs_in(state).n, n);
}

static int setup(void **state)
{
    struct rf_http_limits lim;
    struct rf_http_app app = {on_headers, on_request, NULL};
    struct rf_outbox_policy p;
    char err[256];

    curl_global_init(CURL_GLOBAL_DEFAULT);
    RF_TEST_MKDIR(dir, "outbox");
    assert_int_equal(rf_store_open(dir, 0, 0, &st, err, sizeof(err)), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    rf_http_limits_default(&lim);
    srv = rf_http_server_start(&loop, "127.0.0.1", 0, &lim, &app);
    port = rf_http_server_port(srv);
    cli = rf_http_client_new(&loop, NULL);
    wr = rf_writer_start(&loop, st, RF_WRITER_GROUP, 0);
    rf_outbox_policy_default(&p);
    p.base_ms = 20;
    p.cap_ms = 100;
    p.max_attempts = 3;
    ob = rf_outbox_start(&loop, st, wr, &p);
    rf_outbox_on_settled(ob, on_settled, NULL);
    hx.client = cli;
    hx.allow = allow_local;
    assert_int_equal(rf_outbox_http_executor(ob, &hx), 0);
    return 0;
}

static int teardown(void **state)
{
    rf_outbox_stop(ob);
    rf_http_client_free(cli);
    rf_writer_stop(wr);
    rf_http_server_stop(srv);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    rf_store_close(st);
    RF_TEST_RMDIR(dir);
    curl_global_cleanup();
    return 0;
}

static void test_backoff_full_jitter(void **state)
{
    struct rf_outbox_policy p = {1000, 60000, 10, 1000, 4};
    uint64_t most = 0;

    assert_int_equal(rf_outbox_backoff(&p, 1, 999), 999);
    assert_int_equal(rf_outbox_backoff(&p, 1, 1001), 0);  /* 1001 % 1001 */
    assert_int_equal(rf_outbox_backoff(&p, 3, 4000), 4000);
    assert_int_equal(rf_outbox_backoff(&p, 3, 4001), 0);
    for (uint32_t r = 0; r < 200000; r += 7) {
        uint64_t w = rf_outbox_backoff(&p, 30, r);

        assert_true(w <= 60000);
        most = w > most ? w : most;
    }
    assert_int_equal(most, 60000); /* the cap is reached, never passed */
}

static void test_classify(void **state)
{
    assert_int_equal(rf_outbox_classify_http(0, 200, 1), RF_JOB_OK);
    assert_int_equal(rf_outbox_classify_http(0, 204, 1), RF_JOB_OK);
    assert_int_equal(rf_outbox_classify_http(0, 200, 0), RF_JOB_UNKNOWN);
    assert_int_equal(rf_outbox_classify_http(0, 429, 1), RF_JOB_TRANSIENT);
    assert_int_equal(rf_outbox_classify_http(0, 503, 1), RF_JOB_TRANSIENT);
    assert_int_equal(rf_outbox_classify_http(0, 408, 1), RF_JOB_TRANSIENT);
    assert_int_equal(rf_outbox_classify_http(0, 400, 1), RF_JOB_PERMANENT);
    assert_int_equal(rf_outbox_classify_http(0, 404, 1), RF_JOB_PERMANENT);
    assert_int_equal(rf_outbox_classify_http(RF_ETIMEOUT, 0, 1),
                     RF_JOB_UNKNOWN);
    assert_int_equal(rf_outbox_classify_http(RF_EHTTP, 0, 1),
                     RF_JOB_UNKNOWN);
    assert_int_equal(rf_outbox_classify_http(RF_EDENIED, 0, 1),
                     RF_JOB_PERMANENT);
    assert_int_equal(rf_outbox_retry_after("7"), 7000);
    assert_int_equal(rf_outbox_retry_after("soon"), -1);
    assert_int_equal(rf_outbox_retry_after(NULL), -1);
    assert_int_equal(rf_outbox_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
                     0); /* in the past: now */
}

static void test_add_is_idempotent_by_key(void **state)
{
    add_job("reward:r1:gift", "/ok", 0);
    add_job("reward:r1:gift", "/ok", 0);
    run_until(RF_JOB_DONE, 1);
    assert_int_equal(hits[4], 1);
}

static void test_transient_then_success(void **state)
{
    add_job("reward:r2:gift", "/flaky", 1);
    run_until(RF_JOB_DONE, 2);
    assert_int_equal(hits[0], 3);
    assert_string_equal(keys[0][0], "reward:r2:gift");
    assert_string_equal(keys[0][1], "reward:r2:gift");
    assert_string_equal(keys[0][2], "reward:r2:gift");
}

static void test_permanent_dead_then_replay(void **state)
{
    add_job("reward:r3:gift", "/reject", 0);
    run_until(RF_JOB_DEAD, 1);
    assert_int_equal(hits[1], 1);
    assert_int_equal(jobs_in(RF_JOB_DEAD).last.attempts, 1);
    assert_int_equal(rf_outbox_replay(st, "acme", 0), 1);
    assert_int_equal(rf_outbox_replay(st, "zeta", 0), 0);
    rf_outbox_kick(ob);
    run_until(RF_JOB_DONE, 3);
    assert_int_equal(hits[1], 2);
    assert_string_equal(keys[1][1], "reward:r3:gift");
}

static void test_unknown_retried_with_same_key(void **state)
{
    add_job("reward:r4:gift", "/garbled", 1);
    run_until(RF_JOB_DONE, 4);
    assert_int_equal(hits[2], 2);
    assert_string_equal(keys[2][0], keys[2][1]);
}

static void test_attempts_run_out(void **state)
{
    add_job("reward:r5:gift", "/broken", 0);
    run_until(RF_JOB_DEAD, 1);
    assert_int_equal(hits[3], 3);
    assert_int_equal(jobs_in(RF_JOB_DEAD).last.attempts, 3);
    assert_true(settled_count >= 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_full_jitter),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_add_is_idempotent_by_key),
        cmocka_unit_test(test_transient_then_success),
        cmocka_unit_test(test_permanent_dead_then_replay),
        cmocka_unit_test(test_unknown_retried_with_same_key),
        cmocka_unit_test(test_attempts_run_out),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

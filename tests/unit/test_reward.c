/* The reward hook's answers and the state changes they cause, on a real
 * LMDB store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "referee/audit.h"
#include "referee/error.h"
#include "referee/outbox.h"
#include "referee/referrals.h"
#include "referee/reward.h"
#include "referee/store.h"

#include "testutil.h"

#define T "acme"
#define NOW 1767225600000LL

struct fixture {
    char dir[64];
    struct rf_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];

    RF_TEST_MKDIR(f->dir, "reward");
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

/* --- checking answers --------------------------------------------------- */

static void expect_error(const char *json, enum rf_reward_phase phase,
                         const char *part)
{
    cJSON *v = cJSON_Parse(json);
    char err[300] = "";

    assert_non_null(v);
    assert_int_equal(rf_reward_check(v, phase, err, sizeof(err)), RF_EINVAL);
    if (strstr(err, part) == NULL) {
        fail_msg("'%s' does not name '%s'", err, part);
    }
    cJSON_Delete(v);
}

static void expect_ok(const char *json, enum rf_reward_phase phase)
{
    cJSON *v = cJSON_Parse(json);
    char err[300] = "";

    assert_non_null(v);
    if (rf_reward_check(v, phase, err, sizeof(err)) != 0) {
        fail_msg("refused %s: %s", json, err);
    }
    cJSON_Delete(v);
}

#define GIFT(rule, to)                                                         \
    "{\"kind\":\"reward\",\"rule\":\"" rule "\",\"to\":\"" to "\","            \
    "\"plugin\":\"giftcard\",\"amount\":50,\"currency\":\"EUR\"}"

static void test_answers_are_checked(void **state)
{
    (void)state;
    expect_ok("null", RF_REWARD_PAY);
    expect_ok("{}", RF_REWARD_PAY);
    expect_ok("{\"actions\":[" GIFT("a", "referrer") "," GIFT(
                  "b", "referred") "],\"hold_days\":0.5}",
              RF_REWARD_PAY);
    expect_ok("{\"actions\":[{\"kind\":\"webhook\",\"rule\":\"w\","
              "\"url\":\"https://x.example/h\",\"body\":{\"a\":1}},"
              "{\"kind\":\"crm_update\",\"rule\":\"c\",\"module\":"
              "\"Contacts\",\"id\":\"123\",\"fields\":{\"Paid\":true}}],"
              "\"review\":\"big deal\"}",
              RF_REWARD_PAY);
    expect_error("true", RF_REWARD_PAY, "must return a table");
    expect_error("{\"action\":[]}", RF_REWARD_PAY, "unknown key 'action'");
    expect_error("{\"actions\":[" GIFT("a", "friend") "]}", RF_REWARD_PAY,
                 "actions[1].to");
    expect_error(
        "{\"actions\":[" GIFT("a", "referrer") "," GIFT("a", "referred") "]}",
        RF_REWARD_PAY, "actions[2].rule 'a' is used twice");
    expect_error("{\"actions\":[{\"kind\":\"reward\",\"rule\":\"r\",\"to\":"
                 "\"referrer\",\"plugin\":\"giftcard\",\"amount\":-1,"
                 "\"currency\":\"EUR\"}]}",
                 RF_REWARD_PAY, "actions[1].amount must be a number above 0");
    expect_error("{\"actions\":[{\"kind\":\"reward\",\"rule\":\"r\",\"to\":"
                 "\"referrer\",\"plugin\":\"giftcard\",\"amount\":1,"
                 "\"currency\":\"euro\"}]}",
                 RF_REWARD_PAY, "actions[1].currency");
    expect_error("{\"actions\":[{\"kind\":\"reward\",\"rule\":\"a b\"}]}",
                 RF_REWARD_PAY, "actions[1].rule must be");
    expect_error("{\"actions\":[{\"kind\":\"mail\",\"rule\":\"m\"}]}",
                 RF_REWARD_PAY, "kind must be");
    expect_error("{\"actions\":[{\"kind\":\"webhook\",\"rule\":\"w\","
                 "\"url\":\"ftp://x\"}]}",
                 RF_REWARD_PAY, "actions[1].url");
    expect_error("{\"actions\":[{\"kind\":\"crm_update\",\"rule\":\"c\","
                 "\"module\":\"Contacts\",\"id\":\"x1\",\"fields\":{}}]}",
                 RF_REWARD_PAY, "crm_update");
    expect_error("{\"hold_days\":400}", RF_REWARD_PAY, "hold_days");
    expect_error("{\"review\":\"\"}", RF_REWARD_PAY, "review must be");
    expect_error("{\"review\":\"no\"}", RF_REWARD_CLAWBACK,
                 "clawback cannot ask for review");
}

/* --- state changes ------------------------------------------------------ */

struct step {
    const struct rf_store *st;
    uint64_t id;
    enum rf_reward_phase phase;
    cJSON *answer;
    const char *error, *reason;
    int what; /* 0 put, 1 decide, 2 approve, 3 reject, 4 fail */
    const char *put;
    struct rf_reward_outcome out;
    int jobs;
};

static int run_step(MDB_txn *txn, void *ctx)
{
    struct step *s = ctx;
    cJSON *r;
    int rc;

    switch (s->what) {
    case 0:
        r = cJSON_Parse(s->put);
        rc = rf_referral_put(txn, s->st, T, r);
        cJSON_Delete(r);
        return rc;
    case 1:
        return rf_reward_decide(txn, s->st, T, s->id, s->phase, s->answer, "v1",
                                NOW, &s->out);
    case 2:
        return rf_reward_approve(txn, s->st, T, s->id, NOW + 1000, &s->jobs);
    case 3:
        return rf_reward_reject(txn, s->st, T, s->id, s->reason, NOW);
    default:
        return rf_reward_fail(txn, s->st, T, s->id, s->phase, s->error, "v1",
                              NOW);
    }
}

static int step(struct rf_store *st, struct step *s)
{
    s->st = st;
    return rf_store_write(st, run_step, s);
}

static cJSON *get(struct rf_store *st, uint64_t id)
{
    MDB_txn *txn;
    cJSON *r = NULL;

    assert_int_equal(rf_store_read_begin(st, &txn), 0);
    assert_int_equal(rf_referral_get(txn, st, T, id, &r), 0);
    rf_store_read_end(st, txn);
    return r;
}

static const char *status(cJSON *r)
{
    return cJSON_GetObjectItem(r, "status")->valuestring;
}

static int find_job(struct rf_store *st, const char *key, struct rf_job *j)
{
    MDB_txn *txn;
    int rc;

    assert_int_equal(rf_store_read_begin(st, &txn), 0);
    rc = rf_outbox_find(txn, st, T, key, j);
    rf_store_read_end(st, txn);
    return rc;
}

static void put_qualified(struct rf_store *st, uint64_t id)
{
    char text[200];
    struct step s = {.what = 0, .put = text};

    snprintf(text, sizeof(text),
             "{\"id\":%llu,\"status\":\"qualified\",\"person\":{\"email\":"
             "\"p@example.com\"}}",
             (unsigned long long)id);
    assert_int_equal(step(st, &s), 0);
}

static void test_decision_adds_jobs_once(void **state)
{
    struct fixture *f = *state;
    struct step s = {.what = 1, .id = 1, .phase = RF_REWARD_PAY};
    struct rf_job j;
    enum rf_reward_phase ph;
    cJSON *r;

    put_qualified(f->st, 1);
    s.answer = cJSON_Parse(
        "{\"actions\":[" GIFT("gift", "referrer") "],\"hold_days\":1}");
    assert_int_equal(step(f->st, &s), 0);
    assert_int_equal(s.out.changed, 1);
    assert_int_equal(s.out.jobs, 1);
    assert_int_equal(find_job(f->st, "reward:1:gift", &j), 0);
    assert_string_equal(j.kind, RF_REWARD_KIND_PAY);
    assert_int_equal(j.next_ms, NOW + 86400000LL);
    rf_job_cleanup(&j);
    r = get(f->st, 1);
    assert_string_equal(status(r), "rewarded");
    assert_int_equal(rf_reward_due(r, "v2", &ph), 0);
    cJSON_Delete(r);
    /* A repeat (recovery after a crash) changes nothing. */
    assert_int_equal(step(f->st, &s), 0);
    assert_int_equal(s.out.changed, 0);
    assert_int_equal(s.out.jobs, 0);
    cJSON_Delete(s.answer);
}

static void test_failure_waits_for_another_version(void **state)
{
    struct fixture *f = *state;
    struct step s = {.what = 4,
                     .id = 2,
                     .phase = RF_REWARD_PAY,
                     .error = "tenant.lua:9: boom"};
    enum rf_reward_phase ph;
    cJSON *r;

    put_qualified(f->st, 2);
    assert_int_equal(step(f->st, &s), 0);
    r = get(f->st, 2);
    assert_string_equal(status(r), "qualified");
    assert_string_equal(cJSON_GetObjectItem(r, "reward_error")->valuestring,
                        "tenant.lua:9: boom");
    assert_int_equal(rf_reward_due(r, "v1", &ph), 0);
    assert_int_equal(rf_reward_due(r, "v2", &ph), 1);
    assert_int_equal(ph, RF_REWARD_PAY);
    cJSON_Delete(r);
}

static void test_review_approve_and_reject(void **state)
{
    struct fixture *f = *state;
    struct step s = {.what = 1, .phase = RF_REWARD_PAY};
    struct rf_job j;
    cJSON *r;

    put_qualified(f->st, 3);
    put_qualified(f->st, 4);
    s.answer = cJSON_Parse("{\"actions\":[" GIFT("a", "referrer") "," GIFT(
        "b", "referred") "],\"review\":\"big\"}");
    s.id = 3;
    assert_int_equal(step(f->st, &s), 0);
    assert_int_equal(s.out.jobs, 0);
    s.id = 4;
    assert_int_equal(step(f->st, &s), 0);
    assert_int_equal(find_job(f->st, "reward:3:a", &j), RF_ENOTFOUND);
    r = get(f->st, 3);
    assert_string_equal(status(r), "review");
    cJSON_Delete(r);

    s.what = 2;
    s.id = 3;
    assert_int_equal(step(f->st, &s), 0);
    assert_int_equal(s.jobs, 2);
    assert_int_equal(find_job(f->st, "reward:3:b", &j), 0);
    assert_int_equal(j.next_ms, NOW + 1000);
    rf_job_cleanup(&j);
    r = get(f->st, 3);
    assert_string_equal(status(r), "rewarded");
    cJSON_Delete(r);
    assert_int_equal(step(f->st, &s), RF_EINVAL); /* approved already */

    s.what = 3;
    s.id = 4;
    s.reason = "same household";
    assert_int_equal(step(f->st, &s), 0);
    r = get(f->st, 4);
    assert_string_equal(status(r), "review_rejected");
    assert_string_equal(cJSON_GetObjectItem(r, "review_rejection")->valuestring,
                        "same household");
    cJSON_Delete(r);
    s.id = 99;
    assert_int_equal(step(f->st, &s), RF_ENOTFOUND);
    cJSON_Delete(s.answer);
}

struct settle {
    const struct rf_store *st;
    struct rf_job *job;
};

static int run_settle(MDB_txn *txn, void *ctx)
{
    struct settle *s = ctx;

    return rf_reward_settle(txn, s->st, s->job, NOW);
}

static void test_settled_jobs_recorded_once_and_clawback(void **state)
{
    struct fixture *f = *state;
    struct step s = {.what = 1, .id = 5, .phase = RF_REWARD_PAY};
    struct settle se;
    enum rf_reward_phase ph;
    struct rf_job j;
    cJSON *r, *reward;

    put_qualified(f->st, 5);
    s.answer = cJSON_Parse("{\"actions\":[" GIFT("a", "referrer") "]}");
    assert_int_equal(step(f->st, &s), 0);
    cJSON_Delete(s.answer);
    assert_int_equal(find_job(f->st, "reward:5:a", &j), 0);
    j.state = RF_JOB_DONE;
    j.result = strdup("{\"id\":\"card_9\",\"amount\":50}");
    se = (struct settle){f->st, &j};
    assert_int_equal(rf_store_write(f->st, run_settle, &se), 0);
    assert_int_equal(rf_store_write(f->st, run_settle, &se), 0);
    rf_job_cleanup(&j);
    r = get(f->st, 5);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "rewards")), 1);
    reward = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "rewards"), 0);
    assert_string_equal(cJSON_GetObjectItem(reward, "provider_id")->valuestring,
                        "card_9");
    assert_string_equal(cJSON_GetObjectItem(reward, "currency")->valuestring,
                        "EUR");

    /* The milestone reverses: the clawback step is due, once. */
    cJSON_AddTrueToObject(r, "reversed");
    s = (struct step){.what = 0, .put = cJSON_PrintUnformatted(r)};
    assert_int_equal(step(f->st, &s), 0);
    free((char *)s.put);
    cJSON_Delete(r);
    r = get(f->st, 5);
    assert_int_equal(rf_reward_due(r, "v1", &ph), 1);
    assert_int_equal(ph, RF_REWARD_CLAWBACK);
    cJSON_Delete(r);
    s = (struct step){.what = 1, .id = 5, .phase = RF_REWARD_CLAWBACK};
    s.answer = cJSON_Parse("{\"actions\":[{\"kind\":\"webhook\",\"rule\":"
                           "\"undo\",\"url\":\"https://x.example/h\"}]}");
    assert_int_equal(step(f->st, &s), 0);
    assert_int_equal(s.out.jobs, 1);
    cJSON_Delete(s.answer);
    assert_int_equal(find_job(f->st, "clawback:5:undo", &j), 0);
    rf_job_cleanup(&j);
    r = get(f->st, 5);
    assert_int_equal(rf_reward_due(r, "v2", &ph), 0);
    assert_string_equal(status(r), "rewarded");
    cJSON_Delete(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_are_checked),
        cmocka_unit_test_setup_teardown(test_decision_adds_jobs_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failure_waits_for_another_version,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_approve_and_reject, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_settled_jobs_recorded_once_and_clawback, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

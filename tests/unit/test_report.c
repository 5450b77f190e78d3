/* The report computed from a real LMDB store, filled through the real
 * functions: referrers enrolled, referrals captured by the capture rules,
 * the later state changes as the workflow records them (referral and
 * audit entry in one transaction), visit counters and a dead letter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "referee/audit.h"
#include "referee/counters.h"
#include "referee/error.h"
#include "referee/outbox.h"
#include "referee/referrals.h"
#include "referee/referrers.h"
#include "referee/report.h"
#include "referee/store.h"

#include "outbox/internal.h"
#include "testutil.h"

#define MAR1 1803859200LL /* 2027-03-01T00:00:00Z */
#define DAY 86400LL

struct fixture {
    char dir[64];
    struct rf_store *st;
    char code_a[RF_CODE_LEN + 1], code_b[RF_CODE_LEN + 1];
};

static struct fixture *F;

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];

    RF_TEST_MKDIR(f->dir, "report");
    assert_int_equal(rf_store_open(f->dir, 0, 0, &f->st, err, sizeof(err)), 0);
    F = f;
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

/* --- filling the store --------------------------------------------------- */

static void enrol(const char *tenant, const char *id, const char *email,
                  long long at_s, char code[RF_CODE_LEN + 1]);

struct enrol_ctx {
    struct rf_referrer_in in;
    char *code;
};

static int do_enrol(MDB_txn *txn, void *arg)
{
    struct enrol_ctx *c = arg;
    int created;

    return rf_referrer_enrol(txn, F->st, &c->in, c->code, &created);
}

static void enrol(const char *tenant, const char *id, const char *email,
                  long long at_s, char code[RF_CODE_LEN + 1])
{
    struct enrol_ctx c = {{.tenant = tenant,
                           .contact_id = id,
                           .email = email,
                           .source = "cohort",
                           .version = "v1",
                           .at_ms = at_s * 1000},
                          code};

    assert_int_equal(rf_store_write(F->st, do_enrol, &c), 0);
}

struct capture_ctx {
    struct rf_capture_in in;
    struct rf_capture_out out;
};

static int do_capture(MDB_txn *txn, void *arg)
{
    struct capture_ctx *c = arg;

    return rf_referral_capture(txn, F->st, &c->in, &c->out);
}

/* Captures a referral; returns its id and checks the decision. */
static uint64_t capture(const char *code, const char *email, long long at_s,
                        const char *want_reason)
{
    cJSON *person = cJSON_CreateObject();
    struct capture_ctx c = {{"acme", code, "json", person, at_s * 1000, NULL},
                            {0}};

    cJSON_AddStringToObject(person, "email", email);
    assert_int_equal(rf_store_write(F->st, do_capture, &c), 0);
    cJSON_Delete(person);
    if (want_reason) {
        assert_false(c.out.accepted);
        assert_string_equal(c.out.reason, want_reason);
    } else {
        assert_true(c.out.accepted);
    }
    return c.out.id;
}

/* A later state change: the referral gets `status` (and `extra` merged
 * in), with an audit entry of `kind` at `at_s`. */
struct change_ctx {
    uint64_t id;
    const char *status, *kind, *reason;
    long long at_s;
    const char *extra; /* JSON object text or NULL */
};

static int do_change(MDB_txn *txn, void *arg)
{
    struct change_ctx *c = arg;
    cJSON *r = NULL, *a = cJSON_CreateObject(), *x, *item;
    int rc = rf_referral_get(txn, F->st, "acme", c->id, &r);

    if (rc != 0) {
        cJSON_Delete(a);
        return rc;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(r, "status",
                                           cJSON_CreateString(c->status));
    x = c->extra ? cJSON_Parse(c->extra) : NULL;
    while (x && (item = x->child) != NULL) {
        cJSON_DetachItemViaPointer(x, item);
        cJSON_DeleteItemFromObjectCaseSensitive(r, item->string);
        cJSON_AddItemToObject(r, item->string, item);
    }
    cJSON_Delete(x);
    cJSON_AddNumberToObject(a, "referral", (double)c->id);
    if (c->reason) {
        cJSON_AddStringToObject(a, "reason", c->reason);
    }
    rc = rf_referral_put(txn, F->st, "acme", r);
    if (rc == 0 && c->kind) {
        rc = rf_audit_put(txn, F->st, "acme", c->kind, c->at_s * 1000, a);
    }
    cJSON_Delete(r);
    cJSON_Delete(a);
    return rc;
}

static void change(uint64_t id, const char *status, const char *kind,
                   long long at_s, const char *extra)
{
    struct change_ctx c = {id, status, kind, NULL, at_s, extra};

    if (kind && strcmp(kind, "refused") == 0) {
        c.reason = "existing_customer";
    }
    assert_int_equal(rf_store_write(F->st, do_change, &c), 0);
}

static int do_visits(MDB_txn *txn, void *arg)
{
    int rc = rf_counter_add(txn, F->st, "acme", "2027-03-01", "visits", 10);

    (void)arg;
    if (rc == 0) {
        rc = rf_counter_add(txn, F->st, "acme", "2027-03-02", "visits", 4);
    }
    if (rc == 0) {
        rc = rf_counter_add(txn, F->st, "globex", "2027-03-01", "visits", 100);
    }
    return rc;
}

/* Two jobs: one of acme made dead on day 3, one of globex dead too. */
static int do_dead(MDB_txn *txn, void *arg)
{
    const char *tenants[] = {"acme", "globex"};
    int rc = 0;

    (void)arg;
    for (int i = 0; i < 2 && rc == 0; i++) {
        struct rf_job j;
        uint64_t id;

        rc = rf_outbox_add(txn, F->st, tenants[i], "zoho.upsert", "k1", "{}", 0,
                           &id);
        if (rc == 0) {
            rc = rf_outbox_find(txn, F->st, tenants[i], "k1", &j);
        }
        if (rc == 0) {
            rc = rf__job_undue(txn, F->st, j.id, j.next_ms);
            j.state = RF_JOB_DEAD;
            j.finished_ms = (MAR1 + 2 * DAY + 5) * 1000;
            if (rc == 0) {
                rc = rf__job_put(txn, F->st, &j);
            }
            rf_job_cleanup(&j);
        }
    }
    return rc;
}

/* The scenario, over three days:
 * day 1: A and B enrolled; A refers p1 (accepted), refers themself
 *        (refused self_referral); 10 visits.
 * day 2: C enrolled; B refers p1 again (refused duplicate_person), an
 *        unknown code (refused unknown_referrer), p2, p3 and p4 (accepted);
 *        p1 and p2 reach the CRM; 4 visits.
 * day 3: p1 qualifies (two rewards, 25 EUR on day 3 and 10 EUR on its
 *        qualification day, plus 5 USD), p2 is rejected, p3 is refused by
 *        the capture hook, p4 reaches the CRM, qualifies and waits for
 *        review; a dead letter. */
static void fill(void)
{
    char code_c[RF_CODE_LEN + 1];
    uint64_t p1, p2, p3, p4;

    enrol("acme", "A", "a@example.com", MAR1 + 10, F->code_a);
    enrol("acme", "B", "b@example.com", MAR1 + 20, F->code_b);
    enrol("acme", "C", "c@example.com", MAR1 + DAY + 30, code_c);
    enrol("globex", "G", "g@example.com", MAR1 + 40, code_c);
    p1 = capture(F->code_a, "p1@example.com", MAR1 + 100, NULL);
    (void)capture(F->code_a, "A+me@Example.com", MAR1 + 200, RF_REFUSE_SELF);
    (void)capture(F->code_b, "p1@example.com", MAR1 + DAY + 1,
                  RF_REFUSE_DUPLICATE);
    (void)capture("ZZZZZZZZZZZZZ", "x@example.com", MAR1 + DAY + 2,
                  RF_REFUSE_UNKNOWN_CODE);
    (void)capture(code_c, "y@example.com", MAR1 + DAY + 3,
                  RF_REFUSE_UNKNOWN_CODE); /* globex's code */
    p2 = capture(F->code_b, "p2@example.com", MAR1 + DAY + 4, NULL);
    p3 = capture(F->code_b, "p3@example.com", MAR1 + DAY + 5, NULL);
    p4 = capture(F->code_a, "p4@example.com", MAR1 + DAY + 6, NULL);
    change(p1, "in_crm", "in_crm", MAR1 + DAY + 100, NULL);
    change(p2, "in_crm", "in_crm", MAR1 + DAY + 200, NULL);
    change(p1, "qualified", "qualified", MAR1 + 2 * DAY + 1,
           "{\"qualified_at\": 1804032001, \"rewards\": ["
           "{\"rule\": \"referrer\", \"amount\": 25, \"currency\": \"EUR\","
           " \"at\": 1804032100},"
           "{\"rule\": \"friend\", \"amount\": 10, \"currency\": \"EUR\"},"
           "{\"rule\": \"bonus\", \"amount\": 5.5, \"currency\": \"USD\"}]}");
    change(p2, "rejected", "rejected", MAR1 + 2 * DAY + 2, NULL);
    change(p3, "refused", "refused", MAR1 + 2 * DAY + 3, NULL);
    change(p4, "in_crm", "in_crm", MAR1 + 2 * DAY + 4, NULL);
    change(p4, "qualified", "qualified", MAR1 + 2 * DAY + 5, NULL);
    change(p4, "review", NULL, MAR1 + 2 * DAY + 6, NULL);
    assert_int_equal(rf_store_write(F->st, do_visits, NULL), 0);
    assert_int_equal(rf_store_write(F->st, do_dead, NULL), 0);
}

/* --- checking ------------------------------------------------------------ */

static double n(const cJSON *o, const char *path)
{
    char buf[128], *save = NULL;
    const cJSON *v = o;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = strtok_r(buf, ".", &save); p && v;
         p = strtok_r(NULL, ".", &save)) {
        v = cJSON_GetObjectItemCaseSensitive(v, p);
    }
    if (!cJSON_IsNumber(v)) {
        fail_msg("%s is not a number", path);
    }
    return v->valuedouble;
}

static const cJSON *day(const cJSON *report, int i, const char *want)
{
    const cJSON *d =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(report, "days"), i);

    assert_non_null(d);
    assert_string_equal(cJSON_GetObjectItem(d, "day")->valuestring, want);
    return d;
}

static void test_report_counts_each_figure_per_day_and_total(void **state)
{
    struct fixture *f = *state;
    cJSON *r = NULL;
    const cJSON *t, *d1, *d2, *d3;

    fill();
    assert_int_equal(rf_report_compute(f->st, "acme", MAR1 + 3 * DAY, &r), 0);
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "days")), 3);
    d1 = day(r, 0, "2027-03-01");
    d2 = day(r, 1, "2027-03-02");
    d3 = day(r, 2, "2027-03-03");
    t = cJSON_GetObjectItemCaseSensitive(r, "total");

    assert_int_equal(n(d1, "enrolled"), 2);
    assert_int_equal(n(d2, "enrolled"), 1);
    assert_int_equal(n(t, "enrolled"), 3); /* globex's G is not acme's */
    assert_int_equal(n(d1, "visits"), 10);
    assert_int_equal(n(d2, "visits"), 4);
    assert_int_equal(n(t, "visits"), 14);
    assert_int_equal(n(d1, "received"), 2);
    assert_int_equal(n(d2, "received"), 6);
    assert_int_equal(n(d3, "received"), 0);
    assert_int_equal(n(t, "received"), 8);
    assert_int_equal(n(d1, "refused"), 1);
    assert_int_equal(n(d1, "refused_by_reason.self_referral"), 1);
    assert_int_equal(n(d2, "refused"), 3);
    assert_int_equal(n(d2, "refused_by_reason.unknown_referrer"), 2);
    assert_int_equal(n(d3, "refused_by_reason.existing_customer"), 1);
    assert_int_equal(n(t, "refused"), 5);
    assert_int_equal(n(t, "refused_by_reason.duplicate_person"), 1);
    assert_int_equal(n(d2, "in_crm"), 2);
    assert_int_equal(n(d3, "in_crm"), 1);
    assert_int_equal(n(t, "in_crm"), 3);
    assert_int_equal(n(d3, "qualified"), 2);
    assert_int_equal(n(t, "qualified"), 2);
    assert_int_equal(n(t, "rejected"), 1);
    assert_int_equal(n(t, "reversed"), 0);
    assert_true(n(t, "qualification_rate") > 0.6666 &&
                n(t, "qualification_rate") < 0.6667);
    assert_int_equal(n(t, "review"), 1);
    assert_int_equal(n(d3, "rewards.count"), 3);
    assert_int_equal(n(t, "rewards.count"), 3);
    assert_int_equal(n(t, "rewards.value.EUR"), 35);
    assert_true(n(t, "rewards.value.USD") == 5.5);
    assert_int_equal(n(d3, "dead_letters"), 1);
    assert_int_equal(n(t, "dead_letters"), 1); /* not globex's */
    assert_null(cJSON_GetObjectItemCaseSensitive(d1, "qualification_rate"));
    cJSON_Delete(r);
}

static void test_report_of_an_empty_tenant_has_no_rate(void **state)
{
    struct fixture *f = *state;
    cJSON *r = NULL;
    const cJSON *t;

    assert_int_equal(rf_report_compute(f->st, "nobody", MAR1, &r), 0);
    t = cJSON_GetObjectItemCaseSensitive(r, "total");
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "days")), 0);
    assert_int_equal(n(t, "received"), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(t, "qualification_rate")));
    cJSON_Delete(r);
}

static void test_report_prints_a_table_and_csv(void **state)
{
    struct fixture *f = *state;
    cJSON *r = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    fill();
    assert_int_equal(rf_report_compute(f->st, "acme", MAR1 + 3 * DAY, &r), 0);
    out = open_memstream(&text, &len);
    assert_int_equal(rf_report_print_csv(out, r), 0);
    fclose(out);
    assert_non_null(strstr(text, "day,enrolled,visits,received,refused,"
                                 "in_crm,qualified,rejected,reversed,"
                                 "dead_letters,rewards,refused_by_reason,"
                                 "reward_value,qualification_rate,review\n"));
    assert_non_null(strstr(text, "\n2027-03-01,2,10,2,1,0,0,0,0,0,0,"
                                 "\"self_referral:1\",\"\",,\n"));
    assert_non_null(strstr(text, "\ntotal,3,14,8,5,3,2,1,0,1,3,"));
    assert_non_null(strstr(text, "\"EUR:35.00;USD:5.50\",0.6667,1\n"));
    free(text);
    text = NULL;
    out = open_memstream(&text, &len);
    assert_int_equal(rf_report_print_text(out, r), 0);
    fclose(out);
    assert_non_null(strstr(text, "qualification rate: 66.7% (2 qualified "
                                 "of 3 in CRM)"));
    assert_non_null(strstr(text, "waiting for review: 1"));
    free(text);
    cJSON_Delete(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_report_counts_each_figure_per_day_and_total, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_report_of_an_empty_tenant_has_no_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_prints_a_table_and_csv,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

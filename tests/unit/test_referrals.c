/* Referrers, codes and the capture rules, on a real LMDB store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "referee/audit.h"
#include "referee/error.h"
#include "referee/referrals.h"
#include "referee/referrers.h"
#include "referee/store.h"

#include "testutil.h"

struct fixture {
    char dir[64];
    struct rf_store *st;
};

/* The store the write callbacks below work on. */
static struct rf_store *current_store;

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];

    RF_TEST_MKDIR(f->dir, "referrals");
    assert_int_equal(rf_store_open(f->dir, 0, 0, &f->st, err, sizeof(err)),
                     0);
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

/* --- codes and emails --------------------------------------------------- */

static void test_codes_are_well_formed_and_spread(void **state)
{
    char code[RF_CODE_LEN + 1], norm[RF_CODE_LEN + 1];
    int seen[256] = {0};

    (void)state;
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(rf_code_new(code), 0);
        assert_int_equal(strlen(code), 13);
        for (int j = 0; j < RF_CODE_LEN; j++) {
            assert_non_null(strchr(RF_CODE_ALPHABET, code[j]));
            seen[(unsigned char)code[j]]++;
        }
        assert_true(rf_code_normalize(code, RF_CODE_LEN, norm));
        assert_string_equal(norm, code);
    }
    /* 39,000 characters over 30 symbols: each near 1,300. */
    for (const char *a = RF_CODE_ALPHABET; *a; a++) {
        assert_in_range(seen[(unsigned char)*a], 1100, 1500);
    }
    for (const char *bad = "01ILOU"; *bad; bad++) {
        assert_int_equal(seen[(unsigned char)*bad], 0);
    }
    assert_true(rf_code_normalize("abcdefghjkmnp", 13, norm));
    assert_string_equal(norm, "ABCDEFGHJKMNP");
    assert_false(rf_code_normalize("ABCDEFGHJKMN0", 13, norm)); /* 0 */
    assert_false(rf_code_normalize("ABCDEFGHJKMNPQ", 14, norm));
    assert_false(rf_code_normalize("ABCDEF", 6, norm));
}

static void test_emails_fold(void **state)
{
    char out[RF_EMAIL_MAX + 1];

    (void)state;
    assert_int_equal(rf_email_fold("Ana+Promo@Example.COM", out), 0);
    assert_string_equal(out, "ana@example.com");
    /* ASCII only: look-alikes and invisible characters are refused. */
    assert_int_equal(rf_email_fold("l\xc3\xa9" "a.m@example.fr", out),
                     RF_EINVAL);
    assert_int_equal(rf_email_fold("ana@example.com\xe2\x80\x8b", out),
                     RF_EINVAL); /* a zero-width space */
    assert_int_equal(rf_email_fold("x@b\xc3\xbc" "cher.example", out),
                     RF_EINVAL);
    assert_int_equal(rf_email_fold("x@xn--bcher-kva.example", out), 0);
    assert_int_equal(rf_email_fold("+x@example.com", out), 0);
    assert_string_equal(out, "+x@example.com");
    assert_int_equal(rf_email_fold("a@b", out), RF_EINVAL);
    assert_int_equal(rf_email_fold("not-an-email", out), RF_EINVAL);
    assert_int_equal(rf_email_fold("a@@example.com", out), RF_EINVAL);
    assert_int_equal(rf_email_fold("a b@example.com", out), RF_EINVAL);
    assert_int_equal(rf_email_fold("@example.com", out), RF_EINVAL);
    assert_int_equal(rf_email_fold("a@.example.com", out), RF_EINVAL);
    assert_int_equal(rf_email_fold("a@example..com", out), RF_EINVAL);
    assert_int_equal(rf_email_fold("", out), RF_EINVAL);
}

/* --- enrolment and capture ---------------------------------------------- */

struct enrol_ctx {
    const char *tenant, *contact, *email;
    char code[RF_CODE_LEN + 1];
    int created;
};

static int do_enrol(MDB_txn *txn, void *arg)
{
    struct enrol_ctx *c = arg;
    struct rf_referrer_in in = {.tenant = c->tenant, .contact_id = c->contact,
                                .email = c->email, .name = "Ana Silva",
                                .source = "cohort", .version = "v1",
                                .at_ms = 1767225600000};
    return rf_referrer_enrol(txn, current_store, &in, c->code, &c->created);
}

static void enrol(struct fixture *f, struct enrol_ctx *c)
{
    current_store = f->st;
    assert_int_equal(rf_store_write(f->st, do_enrol, c), 0);
}

struct capture_ctx {
    struct rf_capture_in in;
    struct rf_capture_out out;
};

/* The contact id the email index gives for `email` ("" when none). */
static const char *by_email(struct fixture *f, const char *tenant,
                            const char *email)
{
    static char contact[RF_CONTACT_ID_MAX + 1];
    char folded[RF_EMAIL_MAX + 1];
    MDB_txn *txn;
    int rc;

    assert_int_equal(rf_email_fold(email, folded), 0);
    assert_int_equal(rf_store_read_begin(f->st, &txn), 0);
    rc = rf_referrer_by_email(txn, f->st, tenant, folded, contact,
                              sizeof(contact));
    rf_store_read_end(f->st, txn);
    if (rc == RF_ENOTFOUND) {
        return "";
    }
    assert_int_equal(rc, 0);
    return contact;
}

/* Empties the index and its "built" mark, as in a store written before
 * the index existed. */
static int forget_index(MDB_txn *txn, void *arg)
{
    MDB_val done = {sizeof("referrer_emails_indexed") - 1,
                    "referrer_emails_indexed"};
    int rc;

    (void)arg;
    assert_int_equal(mdb_drop(txn, rf_store_dbi(current_store,
                                                RF_DB_REFERRER_EMAILS),
                              0),
                     0);
    rc = mdb_del(txn, rf_store_dbi(current_store, RF_DB_META), &done, NULL);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : RF_ESTORE;
}

static int drop_index_only(MDB_txn *txn, void *arg)
{
    (void)arg;
    return mdb_drop(txn, rf_store_dbi(current_store, RF_DB_REFERRER_EMAILS),
                    0) == 0
               ? 0
               : RF_ESTORE;
}

static int do_index(MDB_txn *txn, void *arg)
{
    (void)arg;
    return rf_referrers_index_emails(txn, current_store);
}

/* Sign-ups find an existing referrer by email through an index kept by
 * enrolment: folded, per tenant, the first referrer keeps an address, a
 * changed email moves, and a store without the index gets it built. */
static void test_email_index(void **state)
{
    struct fixture *f = *state;
    struct enrol_ctx ana = {"acme", "100", "Ana@Example.com", "", 0};
    struct enrol_ctx twin = {"acme", "101", "ana+x@example.com", "", 0};
    struct enrol_ctx bo = {"acme", "102", "bo@example.com", "", 0};
    struct enrol_ctx other = {"globex", "200", "ana@example.com", "", 0};
    struct enrol_ctx moved = {"acme", "102", "bo.new@example.com", "", 0};

    enrol(f, &ana);
    enrol(f, &twin);
    enrol(f, &bo);
    enrol(f, &other);
    assert_string_equal(by_email(f, "acme", "ANA@example.com"), "100");
    assert_string_equal(by_email(f, "globex", "ana@example.com"), "200");
    assert_string_equal(by_email(f, "acme", "bo@example.com"), "102");
    assert_string_equal(by_email(f, "acme", "kim@example.com"), "");
    enrol(f, &moved); /* Zoho changed Bo's email */
    assert_false(moved.created);
    assert_string_equal(by_email(f, "acme", "bo@example.com"), "");
    assert_string_equal(by_email(f, "acme", "bo.new@example.com"), "102");

    current_store = f->st;
    assert_int_equal(rf_store_write(f->st, forget_index, NULL), 0);
    assert_string_equal(by_email(f, "acme", "ana@example.com"), "");
    assert_int_equal(rf_store_write(f->st, do_index, NULL), 0);
    /* Rebuilt in contact-id order: 100 comes before its twin 101. */
    assert_string_equal(by_email(f, "acme", "ana@example.com"), "100");
    assert_string_equal(by_email(f, "acme", "bo.new@example.com"), "102");
    assert_string_equal(by_email(f, "globex", "ana@example.com"), "200");
    /* Built once per store: with the mark set, no second scan. */
    assert_int_equal(rf_store_write(f->st, drop_index_only, NULL), 0);
    assert_int_equal(rf_store_write(f->st, do_index, NULL), 0);
    assert_string_equal(by_email(f, "acme", "ana@example.com"), "");
}

static int do_capture(MDB_txn *txn, void *arg)
{
    struct capture_ctx *c = arg;

    return rf_referral_capture(txn, current_store, &c->in, &c->out);
}

static struct rf_capture_out capture_as(struct fixture *f, const char *tenant,
                                        const char *code, const char *person,
                                        const char *delivery_id)
{
    struct capture_ctx c = {{tenant, code, "json", NULL, 1767225700000,
                             delivery_id},
                            {0}};
    int rc;
    cJSON *p = cJSON_Parse(person);

    assert_non_null(p);
    c.in.person = p;
    current_store = f->st;
    rc = rf_store_write(f->st, do_capture, &c);
    if (rc != 0) {
        fail_msg("capture: %s", rf_strerror(rc));
    }
    cJSON_Delete(p);
    return c.out;
}

static struct rf_capture_out capture(struct fixture *f, const char *tenant,
                                     const char *code, const char *person)
{
    return capture_as(f, tenant, code, person, NULL);
}

/* The code a referral keeps, as stored. */
static char *stored_code(struct fixture *f, uint64_t id)
{
    static char code[64];
    MDB_txn *txn;
    cJSON *r;

    assert_int_equal(rf_store_read_begin(f->st, &txn), 0);
    assert_int_equal(rf_referral_get(txn, f->st, "acme", id, &r), 0);
    snprintf(code, sizeof(code), "%s",
             cJSON_GetObjectItem(r, "code")->valuestring);
    cJSON_Delete(r);
    rf_store_read_end(f->st, txn);
    return code;
}

static int count_kind(const cJSON *e, void *arg);

/* A signed post sent again is answered from the referral it made, stores
 * nothing, and counts nowhere; another delivery id is a new post. */
static void test_signed_posts_are_answered_once(void **state)
{
    struct fixture *f = *state;
    struct enrol_ctx ana = {"acme", "100", "ana@example.com", "", 0};
    struct rf_capture_out o;
    char spaced[RF_CODE_LEN + 8];
    int counts[2] = {0, 0};
    MDB_txn *txn;

    enrol(f, &ana);
    /* Spaces around a lower-case code: accepted, stored upper case. */
    snprintf(spaced, sizeof(spaced), "  %s ", ana.code);
    for (char *c = spaced; *c; c++) {
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    }
    o = capture_as(f, "acme", spaced, "{\"email\":\"kim@example.com\"}",
                   "msg_1");
    assert_true(o.accepted);
    assert_false(o.repeat);
    assert_int_equal(o.id, 1);
    assert_string_equal(stored_code(f, 1), ana.code);

    o = capture_as(f, "acme", spaced, "{\"email\":\"kim@example.com\"}",
                   "msg_1");
    assert_true(o.repeat);
    assert_true(o.accepted);
    assert_int_equal(o.id, 1);
    assert_string_equal(o.referrer, "100");

    /* A refused post repeats its refusal. */
    o = capture_as(f, "acme", ana.code, "{\"email\":\"ana@example.com\"}",
                   "msg_2");
    assert_string_equal(o.reason, RF_REFUSE_SELF);
    assert_int_equal(o.id, 2);
    o = capture_as(f, "acme", ana.code, "{\"email\":\"ana@example.com\"}",
                   "msg_2");
    assert_true(o.repeat);
    assert_false(o.accepted);
    assert_string_equal(o.reason, RF_REFUSE_SELF);
    assert_int_equal(o.id, 2);

    /* The same person under a new delivery id is a new post. */
    o = capture_as(f, "acme", ana.code, "{\"email\":\"kim@example.com\"}",
                   "msg_3");
    assert_false(o.repeat);
    assert_string_equal(o.reason, RF_REFUSE_DUPLICATE);
    assert_int_equal(o.id, 3);

    assert_int_equal(rf_store_read_begin(f->st, &txn), 0);
    assert_int_equal(rf_audit_each(txn, f->st, "acme", 0, count_kind, counts),
                     0);
    assert_int_equal(counts[0], 4); /* one enrolment, three posts */
    assert_int_equal(counts[1], 2);
    rf_store_read_end(f->st, txn);
}

static void test_enrol_keeps_the_code(void **state)
{
    struct fixture *f = *state;
    struct enrol_ctx a = {"acme", "100", "ana@example.com", "", 0};
    struct enrol_ctx again = {"acme", "100", "ana.new@example.com", "", 0};
    char tenant[65], contact[64];
    MDB_txn *txn;
    cJSON *r;

    enrol(f, &a);
    assert_true(a.created);
    enrol(f, &again);
    assert_false(again.created);
    assert_string_equal(again.code, a.code);
    assert_int_equal(rf_store_read_begin(f->st, &txn), 0);
    assert_int_equal(rf_referrer_get(txn, f->st, "acme", "100", &r), 0);
    assert_string_equal(cJSON_GetObjectItem(r, "email")->valuestring,
                        "ana.new@example.com");
    cJSON_Delete(r);
    assert_int_equal(rf_referrer_by_code(txn, f->st, a.code, tenant, contact,
                                         sizeof(contact)),
                     0);
    assert_string_equal(tenant, "acme");
    assert_string_equal(contact, "100");
    rf_store_read_end(f->st, txn);
}

static int count_kind(const cJSON *e, void *arg)
{
    int *n = arg;

    n[0]++;
    n[1] += strcmp(cJSON_GetObjectItem(e, "kind")->valuestring, "refused") ==
            0;
    return 0;
}

static void test_capture_rules(void **state)
{
    struct fixture *f = *state;
    struct enrol_ctx ana = {"acme", "100", "Ana@Example.com", "", 0};
    struct enrol_ctx other = {"globex", "200", "bo@example.com", "", 0};
    struct rf_capture_out o;
    int counts[2] = {0, 0};
    MDB_txn *txn;
    cJSON *r;

    enrol(f, &ana);
    enrol(f, &other);

    o = capture(f, "acme", ana.code, "{\"email\":\"Kim@example.com\"}");
    assert_true(o.accepted);
    assert_string_equal(o.referrer, "100");
    assert_int_equal(o.id, 1);

    /* The same person again, folded: the first referrer keeps them. */
    o = capture(f, "acme", ana.code, "{\"email\":\"kim+2@EXAMPLE.com\"}");
    assert_false(o.accepted);
    assert_string_equal(o.reason, RF_REFUSE_DUPLICATE);
    assert_int_equal(o.first, 1);

    /* The referrer's own address, upper-cased and tagged. */
    o = capture(f, "acme", ana.code, "{\"email\":\"ANA+me@example.com\"}");
    assert_string_equal(o.reason, RF_REFUSE_SELF);

    o = capture(f, "acme", ana.code, "{\"email\":\"not an email\"}");
    assert_string_equal(o.reason, RF_REFUSE_INVALID_EMAIL);
    o = capture(f, "acme", ana.code, "{\"name\":\"No Email\"}");
    assert_string_equal(o.reason, RF_REFUSE_MISSING_EMAIL);
    o = capture(f, "acme", "SHORT", "{\"email\":\"lee@example.com\"}");
    assert_string_equal(o.reason, RF_REFUSE_INVALID_CODE);
    o = capture(f, "acme", NULL, "{\"email\":\"lee@example.com\"}");
    assert_string_equal(o.reason, RF_REFUSE_INVALID_CODE);
    o = capture(f, "acme", "ABCDEFGHJKMNP", "{\"email\":\"lee@example.com\"}");
    assert_string_equal(o.reason, RF_REFUSE_UNKNOWN_CODE);
    /* Another tenant's code is unknown here. */
    o = capture(f, "acme", other.code, "{\"email\":\"lee@example.com\"}");
    assert_string_equal(o.reason, RF_REFUSE_UNKNOWN_CODE);
    /* Codes are typed by people: lower case works. */
    {
        char lower[RF_CODE_LEN + 1];

        for (int i = 0; i <= RF_CODE_LEN; i++) {
            lower[i] = (char)(ana.code[i] >= 'A' && ana.code[i] <= 'Z'
                                  ? ana.code[i] + 32
                                  : ana.code[i]);
        }
        o = capture(f, "acme", lower, "{\"email\":\"lee@example.com\"}");
        assert_true(o.accepted);
        assert_int_equal(o.id, 10);
    }

    assert_int_equal(rf_store_read_begin(f->st, &txn), 0);
    assert_int_equal(rf_referral_get(txn, f->st, "acme", 3, &r), 0);
    assert_string_equal(cJSON_GetObjectItem(r, "status")->valuestring,
                        "refused");
    assert_string_equal(cJSON_GetObjectItem(r, "reason")->valuestring,
                        RF_REFUSE_SELF);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(r, "person"), "email")
            ->valuestring,
        "ANA+me@example.com");
    cJSON_Delete(r);
    assert_int_equal(rf_referral_get(txn, f->st, "acme", 99, &r),
                     RF_ENOTFOUND);
    /* Two enrolments, ten captures of which eight refused. */
    assert_int_equal(rf_audit_each(txn, f->st, "acme", 0, count_kind, counts),
                     0);
    assert_int_equal(counts[0], 11);
    assert_int_equal(counts[1], 8);
    rf_store_read_end(f->st, txn);
}

struct link_ctx {
    const char *module, *id;
    uint64_t referral;
};

static int do_link(MDB_txn *txn, void *arg)
{
    struct link_ctx *l = arg;

    return rf_referral_link(txn, current_store, "acme", l->module, l->id,
                            l->referral);
}

static void test_links(void **state)
{
    struct fixture *f = *state;
    struct link_ctx lead = {"Leads", "4876000000000000001", 5};
    struct link_ctx deal = {"Deals", "4876000000000000001", 6};
    MDB_txn *txn;
    uint64_t id = 0;

    current_store = f->st;
    assert_int_equal(rf_store_write(f->st, do_link, &lead), 0);
    assert_int_equal(rf_store_write(f->st, do_link, &deal), 0);
    assert_int_equal(rf_store_read_begin(f->st, &txn), 0);
    assert_int_equal(rf_referral_by_link(txn, f->st, "acme", "Leads",
                                         "4876000000000000001", &id),
                     0);
    assert_int_equal(id, 5);
    assert_int_equal(rf_referral_by_link(txn, f->st, "acme", "Deals",
                                         "4876000000000000001", &id),
                     0);
    assert_int_equal(id, 6);
    assert_int_equal(rf_referral_by_link(txn, f->st, "globex", "Leads",
                                         "4876000000000000001", &id),
                     RF_ENOTFOUND);
    rf_store_read_end(f->st, txn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_are_well_formed_and_spread),
        cmocka_unit_test(test_emails_fold),
        cmocka_unit_test_setup_teardown(test_enrol_keeps_the_code, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_capture_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signed_posts_are_answered_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_email_index, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

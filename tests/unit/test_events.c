/* Event records: the de-duplicating insert, ordering, --since, and
 * rejection of damaged records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "referee/error.h"
#include "referee/events.h"
#include "referee/store.h"

#include "testutil.h"

static char dir[64];
static struct rf_store *st;

static int setup(void **state)
{
    char err[256];

    RF_TEST_MKDIR(dir, "events");
    assert_int_equal(rf_store_open(dir, 0, 0, &st, err, sizeof(err)), 0);
    return 0;
}

static int teardown(void **state)
{
    rf_store_close(st);
    RF_TEST_RMDIR(dir);
    return 0;
}

static int do_put(MDB_txn *txn, void *ctx)
{
    return rf_event_put(txn, st, ctx);
}

static struct rf_event_put make(const char *tenant, const char *source,
                                const char *id, const char *body)
{
    struct rf_event_put p = {
        .tenant = tenant,
        .tenant_len = strlen(tenant),
        .delivery_id = id,
        .delivery_id_len = id ? strlen(id) : 0,
        .ev = {.received_ms = 1700000000123,
               .source = source,
               .source_len = strlen(source),
               .headers = "{\"a\":\"b\"}",
               .headers_len = 9,
               .body = body,
               .body_len = strlen(body)},
    };
    return p;
}

struct seen {
    int n;
    uint64_t seq[16];
    char body[16][32];
};

static int collect(const struct rf_event *ev, void *arg)
{
    struct seen *s = arg;

    s->seq[s->n] = ev->seq;
    snprintf(s->body[s->n], sizeof(s->body[0]), "%.*s", (int)ev->body_len,
             ev->body);
    assert_int_equal(ev->received_ms, 1700000000123);
    assert_int_equal(ev->headers_len, 9);
    s->n++;
    return 0;
}

static void test_dedup_per_tenant_and_source(void **state)
{
    struct rf_event_put a = make("acme", "shop", "d1", "first");
    struct rf_event_put b = make("acme", "shop", "d1", "second");
    struct rf_event_put c = make("acme", "crm", "d1", "other source");
    struct rf_event_put d = make("zeta", "shop", "d1", "other tenant");
    struct seen s = {0};

    assert_int_equal(rf_store_write(st, do_put, &a), 0);
    assert_int_equal(a.duplicate, 0);
    assert_int_equal(rf_store_write(st, do_put, &b), 0);
    assert_int_equal(b.duplicate, 1);
    assert_int_equal(b.ev.seq, a.ev.seq);
    assert_int_equal(rf_store_write(st, do_put, &c), 0);
    assert_int_equal(c.duplicate, 0);
    assert_int_equal(rf_store_write(st, do_put, &d), 0);
    assert_int_equal(d.duplicate, 0);
    assert_true(c.ev.seq > a.ev.seq && d.ev.seq > c.ev.seq);

    assert_int_equal(rf_events_each(st, "acme", 0, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.body[0], "first");
    assert_string_equal(s.body[1], "other source");
}

static void test_since_and_prefix_isolation(void **state)
{
    struct rf_event_put p;
    struct seen s = {0};
    uint64_t first = 0;

    for (int i = 0; i < 5; i++) {
        char body[8];

        snprintf(body, sizeof(body), "n%d", i);
        p = make("ab", "src", NULL, body);
        assert_int_equal(rf_store_write(st, do_put, &p), 0);
        first = i == 0 ? p.ev.seq : first;
    }
    /* "a" is a prefix of "ab" but must not see its events. */
    assert_int_equal(rf_events_each(st, "a", 0, collect, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(rf_events_each(st, "ab", first + 1, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.body[0], "n2");
    assert_int_equal(s.seq[0], first + 2);
}

static void test_event_id_round_trip(void **state)
{
    char id[RF_EVENT_ID_LEN + 1];
    uint64_t seq = 0;

    rf_event_id(0x2a, id);
    assert_string_equal(id, "000000000000002a");
    assert_int_equal(rf_event_id_parse(id, &seq), 0);
    assert_int_equal(seq, 42);
    assert_int_equal(rf_event_id_parse("xyz", &seq), RF_EINVAL);
    assert_int_equal(rf_event_id_parse("", &seq), RF_EINVAL);
    assert_int_equal(rf_event_id_parse("00000000000000001", &seq), RF_EINVAL);
}

static void test_damaged_record_rejected(void **state)
{
    struct rf_event ev;
    unsigned char rec[30] = {0x45, 1};

    assert_int_equal(rf_event_decode(rec, 3, &ev), RF_EPARSE);
    rec[21] = 200; /* body length beyond the record */
    assert_int_equal(rf_event_decode(rec, sizeof(rec), &ev), RF_EPARSE);
    rec[0] = 0x46;
    assert_int_equal(rf_event_decode(rec, sizeof(rec), &ev), RF_EPARSE);
}

static void test_oversized_delivery_id(void **state)
{
    char big[RF_DELIVERY_ID_MAX + 2];
    struct rf_event_put p;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    p = make("acme", "shop", big, "x");
    assert_int_equal(rf_store_write(st, do_put, &p), RF_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_per_tenant_and_source),
        cmocka_unit_test(test_since_and_prefix_isolation),
        cmocka_unit_test(test_event_id_round_trip),
        cmocka_unit_test(test_damaged_record_rejected),
        cmocka_unit_test(test_oversized_delivery_id),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

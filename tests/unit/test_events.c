/* Event records: the de-duplicating insert, ordering, --since, and
 * rejection of damaged records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/wait.h>
#include <unistd.h>

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

static int collect(const struct rf_event *ev, MDB_txn *txn, void *arg)
{
    (void)txn;
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

static int count_one(const struct rf_event *ev, MDB_txn *txn, void *arg)
{
    (void)ev;
    (void)txn;
    ++*(int *)arg;
    return 0;
}

/* Writes n events of 4 KiB into the store in `where`, in a process of its
 * own (as the daemon beside a command); exits 0 when all went in. */
static void grow_in_child(const char *where, int n)
{
    pid_t pid = fork();
    int status = -1;

    assert_true(pid >= 0);
    if (pid == 0) {
        static char body[4096];
        struct rf_store *w = NULL;
        char err[256];
        int ok = 1;

        memset(body, 'b', sizeof(body) - 1);
        ok = rf_store_open(where, RF_STORE_EXISTING, (size_t)1 << 20, &w, err,
                           sizeof(err)) == 0;
        for (int i = 0; ok && i < n; i++) {
            struct rf_event_put p = make("grow", "src", NULL, body);
            struct rf_store *saved = st;

            st = w; /* do_put reads the store from here */
            ok = rf_store_write(w, do_put, &p) == 0;
            st = saved;
        }
        rf_store_close(w);
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A read-only opener (referee events list) maps the store as it was when
 * it opened; when another process has grown it since, its reads must map
 * the rest before using it. LMDB 0.9.24 does not check this for read-only
 * transactions: reading past the map crashed with SIGBUS or read other
 * pages (events list stopped early with exit 0). */
static void test_reader_beside_growing_store(void **state)
{
    char gdir[64], err[256];
    struct rf_store *rw = NULL, *ro = NULL;
    struct rf_event_put p;
    int n = 0;

    RF_TEST_MKDIR(gdir, "events-grow");
    assert_int_equal(rf_store_open(gdir, 0, (size_t)1 << 20, &rw, err,
                                   sizeof(err)),
                     0);
    {
        struct rf_store *saved = st;

        st = rw;
        p = make("grow", "src", NULL, "first");
        assert_int_equal(rf_store_write(rw, do_put, &p), 0);
        st = saved;
    }
    rf_store_close(rw);
    assert_int_equal(rf_store_open(gdir, RF_STORE_RDONLY, (size_t)1 << 20,
                                   &ro, err, sizeof(err)),
                     0);
    assert_true(rf_store_map_size(ro) < ((size_t)4 << 20));

    grow_in_child(gdir, 3000); /* about 12 MiB past the reader's map */

    assert_int_equal(rf_events_each(ro, "grow", 0, count_one, &n), 0);
    assert_int_equal(n, 3001);
    assert_true(rf_store_map_size(ro) >= ((size_t)12 << 20));
    rf_store_close(ro);
    RF_TEST_RMDIR(gdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_per_tenant_and_source),
        cmocka_unit_test(test_since_and_prefix_isolation),
        cmocka_unit_test(test_event_id_round_trip),
        cmocka_unit_test(test_damaged_record_rejected),
        cmocka_unit_test(test_oversized_delivery_id),
        cmocka_unit_test(test_reader_beside_growing_store),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

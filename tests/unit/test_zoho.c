/* The Zoho connector against the Zoho simulator (tests/zoho_sim) run as a
 * subprocess on 127.0.0.1: tokens, data centres, retries, limits, paging,
 * writes, polling and Watch channels, plus the pure text helpers. Each test
 * resets the simulator and uses a fresh loop, store, writer and client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <time.h>

#include "referee/error.h"
#include "referee/zoho.h"
#include "referee/zoho_poll.h"
#include "referee/zoho_records.h"
#include "referee/zoho_text.h"
#include "referee/zoho_watch.h"
#include "zoho/internal.h"

#include "zohosim.h"

/* --- the simulator process ----------------------------------------------- */

static char sim_data[64];

static double counter(const char *name)
{
    cJSON *c = sim("GET", "/_sim/counters", NULL);
    const char *keys[] = {name, NULL};
    double v = sim_num_at(c, keys);

    cJSON_Delete(c);
    return v;
}

static double status_count(const char *status)
{
    cJSON *c = sim("GET", "/_sim/counters", NULL);
    const char *keys[] = {"status", status, NULL};
    double v = sim_num_at(c, keys);

    cJSON_Delete(c);
    return v;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int group_setup(void **state)
{
    snprintf(sim_data, sizeof(sim_data), "/tmp/rf-zoho-sim-XXXXXX");
    assert_non_null(mkdtemp(sim_data));
    write_file(sim_data, "users.json",
               "[{\"id\":\"4876000000000000011\",\"name\":\"Ana Lima\","
               "\"email\":\"ana@org.example\"},"
               "{\"id\":\"4876000000000000012\",\"name\":\"Ben Ode\","
               "\"email\":\"ben@org.example\"}]");
    sim_start(sim_data);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];

    sim_stop();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", sim_data);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* --- the connector's surroundings ---------------------------------------- */

static uv_loop_t loop;
static struct rf_store *store;
static struct rf_writer *writer;
static struct rf_http_client *http;
static struct rf_zoho *zc;
static char dir[64];
static int64_t clock_off_ms;
static struct rf_http_allow local_allow[1];

static int64_t test_clock(void *arg)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_off_ms;
}

/* Moves the simulator's clock and, unless sim_only, the connector's. */
static void advance(double secs, int sim_only)
{
    char body[64];

    snprintf(body, sizeof(body), "{\"advance\": %.0f}", secs);
    sim_do("POST", "/_sim/clock", body);
    if (!sim_only) {
        clock_off_ms += (int64_t)(secs * 1000);
    }
}

static int timed_out;

static void on_guard(uv_timer_t *t)
{
    timed_out = 1;
}

/* Runs the loop until *flag turns non-zero or `ms` pass. */
static void run_until(const int *flag, unsigned ms)
{
    uv_timer_t guard;

    timed_out = 0;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, ms, 0);
    while (!*flag && !timed_out) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!*flag) {
        print_error("timed out after %u ms\n", ms);
        fail();
    }
}

static void infra_up(void)
{
    char err[256];

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(
        rf_store_open(dir, RF_STORE_NOSYNC, 0, &store, err, sizeof(err)), 0);
    writer = rf_writer_start(&loop, store, RF_WRITER_GROUP, 0);
    assert_non_null(writer);
    http = rf_http_client_new(&loop, NULL);
    assert_non_null(http);
}

static int closed;

static void on_closed(void *arg)
{
    closed = 1;
}

static void close_zoho(void)
{
    if (zc == NULL) {
        return;
    }
    closed = 0;
    rf_zoho_close(zc, on_closed, NULL);
    zc = NULL;
    run_until(&closed, 5000);
}

static void infra_down(void)
{
    close_zoho();
    rf_writer_stop(writer);
    rf_http_client_free(http);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    rf_store_close(store);
}

static int setup(void **state)
{
    sim_do("POST", "/_sim/reset", "{}");
    clock_off_ms = 0;
    snprintf(dir, sizeof(dir), "/tmp/rf-test-zoho-XXXXXX");
    assert_non_null(mkdtemp(dir));
    local_allow[0] = (struct rf_http_allow){"127.0.0.1", sim_port, 1, 1};
    infra_up();
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    infra_down();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static char accounts_buf[128], api_buf[128];
static struct sim_client cli_buf;

/* Settings for client `client_dc`, talking to data centre `dc`. */
static struct rf_zoho_settings settings_for(const char *client_dc,
                                            const char *dc)
{
    struct rf_zoho_settings s = {0};

    sim_client_of(client_dc, &cli_buf);
    snprintf(accounts_buf, sizeof(accounts_buf), "%s/%s/accounts", sim_base,
             dc);
    s.tenant = "t1";
    s.client_id = cli_buf.id;
    s.client_secret = cli_buf.secret;
    s.refresh_token = cli_buf.refresh;
    s.dc = dc;
    s.accounts_url = accounts_buf;
    s.allow = local_allow;
    s.n_allow = 1;
    s.users = 2;
    s.timeout_ms = 5000;
    s.retry_base_ms = 5;
    s.retry_cap_ms = 40;
    s.throttle_base_ms = 5;
    s.throttle_cap_ms = 40;
    s.housekeeping_ms = 20;
    s.clock = test_clock;
    return s;
}

static void open_with(const struct rf_zoho_settings *s)
{
    char err[256] = "";
    int rc = rf_zoho_open(&loop, http, store, writer, s, &zc, err, sizeof(err));

    if (rc != 0) {
        print_error("open: %s (%s)\n", rf_strerror(rc), err);
    }
    assert_int_equal(rc, 0);
}

static void open_dc(const char *dc)
{
    struct rf_zoho_settings s = settings_for(dc, dc);

    open_with(&s);
}

/* --- calls --------------------------------------------------------------- */

struct outcome {
    int done;
    int rc;
    long status;
    unsigned attempts;
    char code[64];
    char error[400];
    char *json; /* printed body or NULL */
};

static void outcome_clear(struct outcome *o)
{
    free(o->json);
    memset(o, 0, sizeof(*o));
}

static void on_result(const struct rf_zoho_result *res, void *arg)
{
    struct outcome *o = arg;

    o->done++;
    o->rc = res->rc;
    o->status = res->status;
    o->attempts = res->attempts;
    snprintf(o->code, sizeof(o->code), "%s", res->code ? res->code : "");
    snprintf(o->error, sizeof(o->error), "%s", res->error ? res->error : "");
    o->json = res->json ? cJSON_PrintUnformatted(res->json) : NULL;
}

static const char *const list_q[] = {"fields", "Last_Name", "per_page", "1",
                                     NULL};

static void start_list_call(struct outcome *o)
{
    struct rf_zoho_request rq = {"GET", "Contacts", list_q, NULL, 0, 0, 0, 0};

    memset(o, 0, sizeof(*o));
    assert_int_equal(rf_zoho_request(zc, &rq, on_result, o), 0);
}

/* One list call of Contacts, waited for. */
static void list_call(struct outcome *o)
{
    start_list_call(o);
    run_until(&o->done, 10000);
    assert_int_equal(o->done, 1);
}

static void expect_ok(const struct outcome *o)
{
    if (o->rc != 0) {
        print_error("rc %s status %ld code %s error %s\n", rf_err_name(o->rc),
                    o->status, o->code, o->error);
    }
    assert_int_equal(o->rc, 0);
}

static void wait_all(struct outcome *o, int n)
{
    int all = 0;
    uv_timer_t guard;

    timed_out = 0;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, 20000, 0);
    while (all < n && !timed_out) {
        uv_run(&loop, UV_RUN_ONCE);
        all = 0;
        for (int i = 0; i < n; i++) {
            all += o[i].done;
        }
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(all, n);
}

/* Creates Contacts through the control API; returns the answer. */
static cJSON *make_contacts(const char *body)
{
    return sim("POST", "/_sim/records/Contacts", body);
}

/* --- pure helpers -------------------------------------------------------- */

static void test_time_parse_and_format(void **state)
{
    int64_t t = 0;
    char out[RF_ZOHO_TIME_LEN];
    static const char *const bad[] = {
        "2020-02-30T00:00:00+00:00", "2020-10-14 10:31:43+05:30",
        "2020-10-14T10:31:43",       "2020-10-14T24:00:00+00:00",
        "2020-10-14T10:31:43+0530x", "2020-13-01T00:00:00Z",
        "2021-02-29T00:00:00Z",      "",
        "2020-10-14T10:31:43.+00:00"};

    assert_int_equal(rf_zoho_time_parse("2020-10-14T10:31:43+05:30", &t), 0);
    assert_int_equal(t, 1602651703);
    assert_int_equal(rf_zoho_time_parse("2020-10-14T05:01:43Z", &t), 0);
    assert_int_equal(t, 1602651703);
    assert_int_equal(rf_zoho_time_parse("2020-10-14T05:01:43.987+00:00", &t),
                     0);
    assert_int_equal(t, 1602651703);
    assert_int_equal(rf_zoho_time_parse("2020-10-13T21:01:43-0800", &t), 0);
    assert_int_equal(t, 1602651703);
    assert_int_equal(rf_zoho_time_parse("2024-02-29T23:59:59+00:00", &t), 0);
    assert_int_equal(t, 1709251199);
    assert_int_equal(rf_zoho_time_parse("2000-02-29T12:00:00-03:30", &t), 0);
    assert_int_equal(t, 951838200);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t = 42;
        assert_int_equal(rf_zoho_time_parse(bad[i], &t), RF_EPARSE);
        assert_int_equal(t, 42);
    }

    assert_int_equal(rf_zoho_time_format(1602651703, 330, out, sizeof(out)), 0);
    assert_string_equal(out, "2020-10-14T10:31:43+05:30");
    assert_int_equal(rf_zoho_time_format(1602651703, -480, out, sizeof(out)),
                     0);
    assert_string_equal(out, "2020-10-13T21:01:43-08:00");
    assert_int_equal(rf_zoho_time_format(-1, 0, out, sizeof(out)), 0);
    assert_string_equal(out, "1969-12-31T23:59:59+00:00");
    assert_int_equal(rf_zoho_time_format(951838200, -210, out, sizeof(out)), 0);
    assert_string_equal(out, "2000-02-29T12:00:00-03:30");
    assert_int_equal(rf_zoho_time_format(0, 0, out, 10), RF_EINVAL);
    /* Round trips across leap days, month ends and offsets. */
    for (int64_t x = 946684799 - 86400 * 3; x < 4102444800; x += 7777777) {
        for (int off = -720; off <= 840; off += 345) {
            int64_t back = 0;

            assert_int_equal(rf_zoho_time_format(x, off, out, sizeof(out)), 0);
            assert_int_equal(rf_zoho_time_parse(out, &back), 0);
            assert_int_equal(back, x);
        }
    }
}

static void test_criteria_escaping(void **state)
{
    const char *name[] = {"Burns, (B)\\x"};
    const char *first[] = {"M"};
    const char *tags[] = {"a,b", "c"};
    struct rf_zoho_cond c[2] = {{"Last_Name", "equals", name, 1},
                                {"First_Name", "starts_with", first, 1}};
    struct rf_zoho_cond in = {"Tag", "in", tags, 2};
    struct rf_zoho_cond bad = {"Last Name", "equals", name, 1};
    struct rf_zoho_cond many[11];
    char out[512], enc[512];

    assert_int_equal(rf_zoho_criteria(c, 2, 0, out, sizeof(out)), 0);
    assert_string_equal(out, "((Last_Name:equals:Burns\\, \\(B\\)\\\\x)and"
                             "(First_Name:starts_with:M))");
    assert_int_equal(rf_zoho_url_encode(out, enc, sizeof(enc)), 0);
    assert_string_equal(enc, "%28%28Last_Name%3Aequals%3ABurns%5C%2C%20%5C%28"
                             "B%5C%29%5C%5Cx%29and%28First_Name%3Astarts_with"
                             "%3AM%29%29");
    assert_int_equal(rf_zoho_criteria(&in, 1, 1, out, sizeof(out)), 0);
    assert_string_equal(out, "(Tag:in:a\\,b,c)");
    assert_int_equal(rf_zoho_criteria(&bad, 1, 0, out, sizeof(out)), RF_EINVAL);
    for (int i = 0; i < 11; i++) {
        many[i] = c[1];
    }
    assert_int_equal(rf_zoho_criteria(many, 11, 0, out, sizeof(out)),
                     RF_EINVAL);
    assert_int_equal(rf_zoho_criteria(many, 10, 1, out, sizeof(out)), 0);
    assert_int_equal(rf_zoho_criteria(c, 2, 0, out, 20), RF_ETOOBIG);
    assert_int_equal(rf_zoho_url_encode("2027-01-01T00:00:00+05:30", enc, 10),
                     RF_ETOOBIG);
    assert_int_equal(rf_zoho_url_encode("a+b c", enc, sizeof(enc)), 0);
    assert_string_equal(enc, "a%2Bb%20c");
}

static void test_ids_never_pass_through_doubles(void **state)
{
    cJSON *j = cJSON_Parse("{\"s\":\"4876000000945492576\",\"small\":12345,"
                           "\"big\":4876000000945492576,\"bad\":\"12a\","
                           "\"frac\":1.5}");
    char id[RF_ZOHO_ID_MAX];

    assert_int_equal(rf_zoho_json_id(cJSON_GetObjectItem(j, "s"), id), 0);
    assert_string_equal(id, "4876000000945492576");
    assert_int_equal(rf_zoho_json_id(cJSON_GetObjectItem(j, "small"), id), 0);
    assert_string_equal(id, "12345");
    assert_int_equal(rf_zoho_json_id(cJSON_GetObjectItem(j, "big"), id),
                     RF_EPARSE);
    assert_int_equal(rf_zoho_json_id(cJSON_GetObjectItem(j, "bad"), id),
                     RF_EPARSE);
    assert_int_equal(rf_zoho_json_id(cJSON_GetObjectItem(j, "frac"), id),
                     RF_EPARSE);
    cJSON_Delete(j);
}

static void test_token_answer_forms(void **state)
{
    struct rf__zoho_token_answer a;
    static const char now[] =
        "{\"access_token\":\"1000.aa.bb\",\"api_domain\":\"https://www."
        "zohoapis.eu\",\"token_type\":\"Bearer\",\"expires_in\":3600}";
    static const char legacy[] = "{\"access_token\":\"1000.aa.bb\","
                                 "\"expires_in_sec\":3600,"
                                 "\"expires_in\":3600000}";
    static const char ms_only[] = "{\"access_token\":\"x\","
                                  "\"expires_in\":3600000}";
    static const char none[] = "{\"access_token\":\"x\"}";
    static const char err[] = "{\"error\":\"invalid_code\"}";
    static const char denied[] = "{\"error\":\"Access Denied\",\"error_"
                                 "description\":\"too many\"}";

    assert_int_equal(rf__zoho_token_parse(now, strlen(now), &a), 0);
    assert_string_equal(a.access_token, "1000.aa.bb");
    assert_string_equal(a.api_domain, "https://www.zohoapis.eu");
    assert_int_equal(a.expires_in_ms, 3600000);
    rf__zoho_token_answer_free(&a);
    assert_int_equal(rf__zoho_token_parse(legacy, strlen(legacy), &a), 0);
    assert_int_equal(a.expires_in_ms, 3600000);
    assert_null(a.api_domain);
    rf__zoho_token_answer_free(&a);
    assert_int_equal(rf__zoho_token_parse(ms_only, strlen(ms_only), &a), 0);
    assert_int_equal(a.expires_in_ms, 3600000);
    rf__zoho_token_answer_free(&a);
    assert_int_equal(rf__zoho_token_parse(none, strlen(none), &a), 0);
    assert_int_equal(a.expires_in_ms, 0);
    rf__zoho_token_answer_free(&a);
    assert_int_equal(rf__zoho_token_parse(err, strlen(err), &a), RF_EDENIED);
    assert_string_equal(a.error, "invalid_code");
    assert_int_equal(rf__zoho_token_parse(denied, strlen(denied), &a),
                     RF_EDENIED);
    assert_string_equal(a.description, "too many");
    assert_int_equal(rf__zoho_token_parse("{}x", 3, &a), RF_EPARSE);
    assert_int_equal(rf__zoho_token_parse("{\"access_token\":\"\"}", 19, &a),
                     RF_EPARSE);
}

/* --- tokens and data centres --------------------------------------------- */

static void test_every_data_centre(void **state)
{
    static const char *const dcs[] = {"us", "eu", "in", "au",
                                      "jp", "ca", "cn", "sa"};
    static const char *const accounts[] = {
        "https://accounts.zoho.com",    "https://accounts.zoho.eu",
        "https://accounts.zoho.in",     "https://accounts.zoho.com.au",
        "https://accounts.zoho.jp",     "https://accounts.zohocloud.ca",
        "https://accounts.zoho.com.cn", "https://accounts.zoho.sa"};

    for (size_t i = 0; i < 8; i++) {
        struct outcome o;
        struct rf_zoho_stats st;
        cJSON *calls;
        const cJSON *last;
        char want[96];

        assert_string_equal(rf_zoho_dc_accounts(dcs[i]), accounts[i]);
        assert_non_null(strstr(rf_zoho_dc_api(dcs[i]), "www.zohoapis."));
        open_dc(dcs[i]);
        list_call(&o);
        expect_ok(&o);
        assert_int_equal(o.status, 204); /* no contacts yet */
        rf_zoho_stats(zc, &st);
        snprintf(want, sizeof(want), "%s/%s/api", sim_base, dcs[i]);
        assert_string_equal(st.api_domain, want);
        calls = sim("GET", "/_sim/calls?kind=api", NULL);
        last = cJSON_GetArrayItem(
            cJSON_GetObjectItem(calls, "calls"),
            cJSON_GetArraySize(cJSON_GetObjectItem(calls, "calls")) - 1);
        assert_string_equal(cJSON_GetObjectItem(last, "dc")->valuestring,
                            dcs[i]);
        cJSON_Delete(calls);
        outcome_clear(&o);
        close_zoho();
    }
    assert_null(rf_zoho_dc_accounts("xx"));
    assert_int_equal(counter("refreshes"), 8);
}

/* The connector's clock moves with the simulator's: it refreshes before
 * the token expires, so Zoho never sees the dead token. */
static void test_token_refreshed_before_expiry(void **state)
{
    struct outcome o;

    open_dc("eu");
    list_call(&o);
    expect_ok(&o);
    outcome_clear(&o);
    advance(3600 - 30, 0); /* inside the 60 s margin */
    list_call(&o);
    expect_ok(&o);
    assert_int_equal(o.attempts, 1);
    assert_int_equal(counter("refreshes"), 2);
    assert_int_equal(counter("invalid_token"), 0);
    outcome_clear(&o);
}

/* Only Zoho's clock moves (our clock is behind): the token dies mid-run,
 * the call gets 401, one refresh, one retry. */
static void test_token_expires_mid_run(void **state)
{
    struct outcome o;

    open_dc("eu");
    list_call(&o);
    expect_ok(&o);
    outcome_clear(&o);
    advance(3601, 1);
    list_call(&o);
    expect_ok(&o);
    assert_int_equal(o.attempts, 2);
    assert_int_equal(counter("invalid_token"), 1);
    assert_int_equal(counter("refreshes"), 2);
    outcome_clear(&o);
}

static void test_twenty_calls_one_refresh(void **state)
{
    struct outcome o[20];
    struct rf_zoho_stats st;

    open_dc("eu");
    list_call(&o[0]);
    expect_ok(&o[0]);
    outcome_clear(&o[0]);
    sim_do("POST", "/_sim/faults",
           "{\"invalidate_tokens\": true, \"slow_ms\": 150, \"count\": 1, "
           "\"target\": \"token\"}");
    for (int i = 0; i < 20; i++) {
        start_list_call(&o[i]);
    }
    wait_all(o, 20);
    for (int i = 0; i < 20; i++) {
        expect_ok(&o[i]);
        assert_int_equal(o[i].done, 1);
        outcome_clear(&o[i]);
    }
    assert_int_equal(counter("refreshes"), 2);
    assert_int_equal(counter("token_requests"), 2);
    assert_int_equal(counter("invalid_token"), 20);
    rf_zoho_stats(zc, &st);
    assert_int_equal(st.refreshes, 2);
}

static void invalidate(void)
{
    sim_do("POST", "/_sim/faults", "{\"invalidate_tokens\": true}");
}

static void test_eleventh_refresh_not_attempted(void **state)
{
    struct outcome o;
    struct rf_zoho_stats st;
    struct rf_zoho_settings s = settings_for("eu", "eu");

    open_with(&s);
    for (int i = 0; i < 10; i++) {
        if (i > 0) {
            invalidate();
        }
        list_call(&o);
        expect_ok(&o);
        outcome_clear(&o);
    }
    assert_int_equal(counter("refreshes"), 10);
    invalidate();
    list_call(&o);
    assert_int_equal(o.rc, RF_ELIMIT);
    assert_non_null(strstr(o.error, "refresh not attempted"));
    outcome_clear(&o);
    assert_int_equal(counter("token_requests"), 10);
    assert_int_equal(counter("access_denied"), 0);
    rf_zoho_stats(zc, &st);
    assert_int_equal(st.refreshes_in_window, 10);
    assert_non_null(strstr(st.last_error, "refresh not attempted"));

    /* The times were saved: a restarted connection is held back too. */
    close_zoho();
    open_with(&s);
    list_call(&o);
    assert_int_equal(o.rc, RF_ELIMIT);
    outcome_clear(&o);
    assert_int_equal(counter("token_requests"), 10);

    /* Once the window has passed, refreshing works again. */
    advance(601, 0);
    list_call(&o);
    expect_ok(&o);
    outcome_clear(&o);
    assert_int_equal(counter("token_requests"), 11);
}

static void test_wrong_data_centre_at_accounts(void **state)
{
    struct outcome o;
    struct rf_zoho_stats st;
    struct rf_zoho_settings s = settings_for("eu", "us");

    open_with(&s);
    list_call(&o);
    assert_int_equal(o.rc, RF_ECONFIG);
    assert_non_null(strstr(o.error, "the data centre 'us' is probably wrong"));
    rf_zoho_stats(zc, &st);
    assert_string_equal(st.last_error, o.error);
    assert_int_equal(counter("token_errors"), 1);
    assert_int_equal(counter("invalid_token"), 0);
    outcome_clear(&o);
}

static void test_wrong_data_centre_at_api(void **state)
{
    struct outcome o;
    struct rf_zoho_settings s = settings_for("eu", "eu");

    snprintf(api_buf, sizeof(api_buf), "%s/us/api", sim_base);
    s.api_domain = api_buf;
    open_with(&s);
    list_call(&o);
    assert_int_equal(o.rc, RF_ECONFIG);
    assert_string_equal(o.code, "INVALID_TOKEN");
    assert_non_null(strstr(o.error, "data centre 'eu' is probably wrong"));
    outcome_clear(&o);
    assert_int_equal(counter("refreshes"), 1); /* no refresh storm */
    assert_int_equal(counter("invalid_token"), 1);
}

static void test_token_cache_survives_restart(void **state)
{
    struct outcome o;
    struct rf_zoho_stats st;
    struct rf_zoho_settings s = settings_for("in", "in");

    open_with(&s);
    list_call(&o);
    expect_ok(&o);
    outcome_clear(&o);
    assert_int_equal(counter("refreshes"), 1);

    infra_down();
    infra_up();
    s = settings_for("in", "in");
    open_with(&s);
    rf_zoho_stats(zc, &st);
    assert_true(st.token_expires_ms > test_clock(NULL) + 3000 * 1000);
    list_call(&o);
    expect_ok(&o);
    assert_int_equal(o.attempts, 1);
    outcome_clear(&o);
    assert_int_equal(counter("refreshes"), 1);
    assert_int_equal(counter("invalid_token"), 0);
}

static void test_refresh_without_expires_in(void **state)
{
    struct outcome o;
    struct rf_zoho_stats st;
    int64_t now;

    sim_do("POST", "/_sim/faults", "{\"refresh_missing_expires_in\": 1}");
    open_dc("au");
    list_call(&o);
    expect_ok(&o);
    outcome_clear(&o);
    rf_zoho_stats(zc, &st);
    now = test_clock(NULL);
    assert_true(st.token_expires_ms > now + 3590 * 1000);
    assert_true(st.token_expires_ms <= now + 3600 * 1000);
}

static int poll_batches_seen;

static void on_batch_unexpected(struct rf_zoho_batch *b, void *arg)
{
    poll_batches_seen++;
    rf_zoho_batch_done(b, 0, 0);
}

static void on_poll_stopped(int rc, const char *error,
                            const struct rf_zoho_poll_stats *st, void *arg)
{
    int *got = arg;

    *got = rc;
}

/* Closing answers every caller with RF_ESTOPPING, also those whose calls
 * are on the wire, and only then reports the connection closed. */
static void test_close_with_calls_in_flight(void **state)
{
    struct outcome o[5];
    int poll_rc = 1;
    struct rf_zoho_poll_opts po = {"Contacts", "Last_Name", on_batch_unexpected,
                                   on_poll_stopped, &poll_rc, NULL};

    open_dc("eu");
    list_call(&o[0]);
    outcome_clear(&o[0]);
    sim_do("POST", "/_sim/faults", "{\"slow_ms\": 300, \"count\": 6}");
    for (int i = 0; i < 5; i++) {
        start_list_call(&o[i]);
    }
    assert_int_equal(rf_zoho_poll(zc, &po), 0);
    for (int i = 0; i < 5; i++) {
        uv_run(&loop, UV_RUN_NOWAIT); /* let the calls leave */
    }
    closed = 0;
    poll_batches_seen = 0;
    rf_zoho_close(zc, on_closed, NULL);
    zc = NULL;
    assert_int_equal(closed, 0); /* six calls are still out there */
    run_until(&closed, 5000);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(o[i].done, 1);
        assert_int_equal(o[i].rc, RF_ESTOPPING);
        outcome_clear(&o[i]);
    }
    assert_int_equal(poll_rc, RF_ESTOPPING);
    assert_int_equal(poll_batches_seen, 0);
}

/* --- retries and limits -------------------------------------------------- */

static void test_429_burst_backs_off(void **state)
{
    struct outcome o[20];
    struct rf_zoho_stats st;

    open_dc("eu");
    list_call(&o[0]);
    outcome_clear(&o[0]);
    sim_do("POST", "/_sim/faults", "{\"http_429\": {\"count\": 15}}");
    for (int i = 0; i < 20; i++) {
        start_list_call(&o[i]);
    }
    wait_all(o, 20);
    rf_zoho_stats(zc, &st);
    for (int i = 0; i < 20; i++) {
        expect_ok(&o[i]);
        outcome_clear(&o[i]);
    }
    assert_int_equal(st.throttled, 15);
    assert_int_equal(st.concurrency_max, 20);
    /* Halved at least once (20 -> 10 or lower). How far it grows back
     * afterwards depends on how the answers interleave: each success adds
     * 1/limit, so after one cut 21 successes end near 12, after two near
     * 7; only the cut itself is certain. */
    assert_true(st.cuts >= 1);
    assert_true(st.concurrency < st.concurrency_max);
    assert_true(st.concurrency >= 1);
    assert_int_equal(status_count("429"), 15);
    assert_int_equal(status_count("204"), 21);
    print_message("429 burst: concurrency ended at %u of %u\n", st.concurrency,
                  st.concurrency_max);
}

static void test_500s_recover(void **state)
{
    struct outcome o;
    struct rf_zoho_stats st;
    cJSON *rec = cJSON_Parse("[{\"Last_Name\":\"Once\"}]");
    struct rf_zoho_request ins = {
        "POST", "Contacts", NULL, "{\"data\":[{\"Last_Name\":\"Once\"}]}",
        0,      1,          0,    1};

    open_dc("eu");
    sim_do("POST", "/_sim/faults", "{\"http_500\": 2}");
    list_call(&o);
    expect_ok(&o);
    assert_int_equal(o.attempts, 3);
    outcome_clear(&o);
    rf_zoho_stats(zc, &st);
    assert_int_equal(st.retries, 2);

    /* More failures than tries: Zoho's error comes back. */
    sim_do("POST", "/_sim/faults", "{\"http_500\": 10}");
    list_call(&o);
    assert_int_equal(o.rc, RF_EHTTP);
    assert_int_equal(o.status, 500);
    assert_string_equal(o.code, "INTERNAL_ERROR");
    assert_int_equal(o.attempts, 4);
    outcome_clear(&o);

    /* An insert is not repeated after a 500: it may have been stored. */
    sim_do("DELETE", "/_sim/faults", NULL);
    sim_do("POST", "/_sim/faults", "{\"http_500\": 1}");
    memset(&o, 0, sizeof(o));
    assert_int_equal(rf_zoho_request(zc, &ins, on_result, &o), 0);
    run_until(&o.done, 5000);
    assert_int_equal(o.rc, RF_EHTTP);
    assert_int_equal(o.attempts, 1);
    outcome_clear(&o);
    cJSON_Delete(rec);
}

static void test_concurrency_limit_held(void **state)
{
    struct outcome o[12];
    struct rf_zoho_stats st;
    struct rf_zoho_settings s = settings_for("eu", "eu");
    cJSON *lim;
    const char *rej[] = {"default", "rejected", "concurrency", NULL};

    s.concurrency = 3;
    open_with(&s);
    list_call(&o[0]);
    outcome_clear(&o[0]);
    sim_do("POST", "/_sim/limits", "{\"concurrency\": 3}");
    sim_do("POST", "/_sim/faults", "{\"slow_ms\": 100, \"count\": 12}");
    for (int i = 0; i < 12; i++) {
        start_list_call(&o[i]);
    }
    wait_all(o, 12);
    for (int i = 0; i < 12; i++) {
        expect_ok(&o[i]);
        assert_int_equal(o[i].attempts, 1);
        outcome_clear(&o[i]);
    }
    rf_zoho_stats(zc, &st);
    assert_int_equal(st.max_in_flight, 3);
    lim = sim("GET", "/_sim/limits", NULL);
    assert_int_equal(sim_num_at(lim, rej), 0); /* Zoho never had to refuse */
    cJSON_Delete(lim);
    assert_int_equal(status_count("429"), 0);
}

static void test_credit_budget_refused_locally(void **state)
{
    struct outcome o;
    struct rf_zoho_stats st;
    struct rf_zoho_settings s = settings_for("eu", "eu");
    cJSON *lim;
    const char *used[] = {"default", "credits_used", NULL};

    s.credits_per_day = 5;
    open_with(&s);
    for (int i = 0; i < 5; i++) {
        list_call(&o);
        expect_ok(&o);
        outcome_clear(&o);
    }
    list_call(&o);
    assert_int_equal(o.rc, RF_ELIMIT);
    assert_non_null(strstr(o.error, "credit budget exhausted: 5 of 5"));
    outcome_clear(&o);
    rf_zoho_stats(zc, &st);
    assert_int_equal(st.credits_used, 5);
    assert_int_equal(st.credits_budget, 5);
    lim = sim("GET", "/_sim/limits", NULL);
    assert_int_equal(sim_num_at(lim, used), 5);
    cJSON_Delete(lim);

    /* Usage is saved: a restart still knows the day is spent. */
    close_zoho();
    open_with(&s);
    rf_zoho_stats(zc, &st);
    assert_int_equal(st.credits_used, 5);
    list_call(&o);
    assert_int_equal(o.rc, RF_ELIMIT);
    outcome_clear(&o);

    /* A day later the credits are back. */
    advance(86400 + 60, 0);
    list_call(&o);
    expect_ok(&o);
    outcome_clear(&o);
    rf_zoho_stats(zc, &st);
    assert_int_equal(st.credits_used, 1);
}

/* --- records ------------------------------------------------------------- */

struct listing {
    int done;
    int rc;
    long status;
    size_t total, pages, by_token;
    char (*ids)[RF_ZOHO_ID_MAX];
    size_t n;
};

static int on_listed_page(const struct rf_zoho_page *p, void *arg)
{
    struct listing *l = arg;
    const cJSON *rec;

    l->pages++;
    l->by_token += p->by_token;
    l->ids = realloc(l->ids, (l->n + p->count) * sizeof(*l->ids));
    assert_non_null(l->ids);
    cJSON_ArrayForEach(rec, p->data)
    {
        assert_int_equal(
            rf_zoho_json_id(cJSON_GetObjectItem(rec, "id"), l->ids[l->n]), 0);
        l->n++;
    }
    return 0;
}

static void on_listed(const struct rf_zoho_result *res, size_t total, void *arg)
{
    struct listing *l = arg;

    l->done = 1;
    l->rc = res->rc;
    l->status = res->status;
    l->total = total;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static size_t distinct(char (*ids)[RF_ZOHO_ID_MAX], size_t n)
{
    size_t d = 0;

    qsort(ids, n, RF_ZOHO_ID_MAX, cmp_ids);
    for (size_t i = 0; i < n; i++) {
        d += i == 0 || strcmp(ids[i], ids[i - 1]) != 0;
    }
    return d;
}

static void test_list_past_the_2000_wall(void **state)
{
    struct listing l = {0};
    struct rf_zoho_list_opts o = {"Contacts", "Last_Name,Email", "id", 0, 0, 0,
                                  0, NULL};
    cJSON *calls, *c;
    int tokens = 0, walls = 0;

    cJSON_Delete(make_contacts("{\"generate\": {\"count\": 2500, "
                               "\"template\": {\"Last_Name\": \"Bulk {n}\", "
                               "\"Email\": \"bulk{n}@x.example\"}}}"));
    open_dc("eu");
    assert_int_equal(rf_zoho_list(zc, &o, on_listed_page, on_listed, &l), 0);
    run_until(&l.done, 30000);
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.total, 2500);
    assert_int_equal(l.pages, 13);
    assert_int_equal(l.by_token, 3);
    assert_int_equal(distinct(l.ids, l.n), 2500);
    calls = sim("GET", "/_sim/calls?kind=api", NULL);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(calls, "calls"))
    {
        const char *q = cJSON_GetObjectItem(c, "query")->valuestring;
        const cJSON *code = cJSON_GetObjectItem(c, "code");

        tokens += strstr(q, "page_token=") != NULL;
        walls += cJSON_IsString(code) &&
                 strcmp(code->valuestring,
                        "DISCRETE_PAGINATION_LIMIT_EXCEEDED") == 0;
    }
    cJSON_Delete(calls);
    assert_int_equal(tokens, 3);
    assert_int_equal(walls, 0);
    free(l.ids);
}

static void test_empty_answers_204_and_304(void **state)
{
    struct listing l = {0};
    struct rf_zoho_list_opts deals = {"Deals", "Deal_Name", NULL, 0, 0, 0, 0,
                                      NULL};
    struct rf_zoho_list_opts later = {
        "Contacts", "Last_Name", "Modified_Time", 0, 0, 0, 0, NULL};
    struct outcome o;
    cJSON *made, *calls, *c;
    char id[RF_ZOHO_ID_MAX];
    int ims = 0;

    open_dc("eu");
    assert_int_equal(rf_zoho_list(zc, &deals, on_listed_page, on_listed, &l),
                     0);
    run_until(&l.done, 5000);
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.status, 204);
    assert_int_equal(l.total, 0);
    assert_int_equal(l.pages, 0);

    made = make_contacts("{\"data\": [{\"Last_Name\": \"Solo\"}]}");
    snprintf(
        id, sizeof(id), "%s",
        cJSON_GetArrayItem(cJSON_GetObjectItem(made, "ids"), 0)->valuestring);
    cJSON_Delete(made);
    memset(&l, 0, sizeof(l));
    later.modified_since = test_clock(NULL) / 1000 + 86400;
    assert_int_equal(rf_zoho_list(zc, &later, on_listed_page, on_listed, &l),
                     0);
    run_until(&l.done, 5000);
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.status, 304);
    assert_int_equal(l.total, 0);

    memset(&o, 0, sizeof(o));
    assert_int_equal(rf_zoho_get(zc, "Contacts", "4876000000000999999",
                                 "Last_Name", on_result, &o),
                     0);
    run_until(&o.done, 5000);
    expect_ok(&o);
    assert_int_equal(o.status, 204);
    assert_null(o.json);
    outcome_clear(&o);

    assert_int_equal(rf_zoho_get(zc, "Contacts", id, NULL, on_result, &o), 0);
    run_until(&o.done, 5000);
    expect_ok(&o);
    assert_int_equal(o.status, 200);
    assert_non_null(strstr(o.json, id));
    outcome_clear(&o);
    assert_int_equal(rf_zoho_get(zc, "Contacts", "12ab", NULL, on_result, &o),
                     RF_EINVAL);

    calls = sim("GET", "/_sim/calls?kind=api", NULL);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(calls, "calls"))
    {
        ims += cJSON_GetObjectItem(c, "headers") != NULL;
    }
    cJSON_Delete(calls);
    assert_int_equal(ims, 1);
}

struct written {
    int done;
    struct rf_zoho_write_result r;
    struct rf_zoho_record_result items[160];
    char ids[160][RF_ZOHO_ID_MAX];
    char codes[160][40];
    char apis[160][40];
    char actions[160][16];
};

static void on_written(const struct rf_zoho_write_result *res, void *arg)
{
    struct written *w = arg;

    w->done = 1;
    w->r = *res;
    w->r.error = NULL;
    for (size_t i = 0; i < res->n && i < 160; i++) {
        w->items[i] = res->items[i];
        snprintf(w->ids[i], sizeof(w->ids[i]), "%s", res->items[i].id);
        snprintf(w->codes[i], sizeof(w->codes[i]), "%s", res->items[i].code);
        snprintf(w->apis[i], sizeof(w->apis[i]), "%s", res->items[i].api_name);
        snprintf(w->actions[i], sizeof(w->actions[i]), "%s",
                 res->items[i].action);
    }
    w->r.items = NULL;
}

static cJSON *people(int n, int from)
{
    cJSON *arr = cJSON_CreateArray();

    for (int i = 0; i < n; i++) {
        cJSON *p = cJSON_CreateObject();
        char email[64], last[32];

        snprintf(email, sizeof(email), "p%d@x.example", from + i);
        snprintf(last, sizeof(last), "Person %d", from + i);
        cJSON_AddStringToObject(p, "Last_Name", last);
        cJSON_AddStringToObject(p, "Email", email);
        cJSON_AddItemToArray(arr, p);
    }
    return arr;
}

static void test_batch_207_per_record(void **state)
{
    static const char *const dup[] = {"Email"};
    struct rf_zoho_write_opts o = {"Contacts", RF_ZOHO_UPSERT, dup, 1, NULL, 0,
                                   1};
    struct written *w = calloc(1, sizeof(*w));
    cJSON *recs = people(150, 0), *calls, *c;
    int n207 = 0, with_keys = 0;

    assert_non_null(w);
    cJSON_DeleteItemFromObject(cJSON_GetArrayItem(recs, 10), "Last_Name");
    cJSON_DeleteItemFromObject(cJSON_GetArrayItem(recs, 120), "Last_Name");
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(recs, 20), "Email",
                              cJSON_CreateString("not-an-email"));
    open_dc("eu");
    assert_int_equal(rf_zoho_write(zc, &o, recs, on_written, w), 0);
    run_until(&w->done, 10000);
    assert_int_equal(w->r.rc, 0);
    assert_int_equal(w->r.n, 150);
    assert_int_equal(w->r.nfailed, 3);
    assert_int_equal(w->r.calls, 2);
    assert_true(w->items[0].ok);
    assert_int_equal(strlen(w->ids[0]), 19);
    assert_string_equal(w->actions[0], "insert");
    assert_int_equal(w->items[0].status, 207);
    assert_false(w->items[10].ok);
    assert_string_equal(w->codes[10], "MANDATORY_NOT_FOUND");
    assert_string_equal(w->apis[10], "Last_Name");
    assert_string_equal(w->codes[20], "INVALID_DATA");
    assert_string_equal(w->apis[20], "Email");
    assert_string_equal(w->codes[120], "MANDATORY_NOT_FOUND");
    assert_int_equal(w->items[120].status, 207);
    assert_true(w->items[149].ok);
    calls = sim("GET", "/_sim/calls?kind=api", NULL);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(calls, "calls"))
    {
        const cJSON *body = cJSON_GetObjectItem(c, "body");

        n207 += cJSON_GetObjectItem(c, "status")->valueint == 207;
        with_keys +=
            cJSON_IsString(body) &&
            strstr(body->valuestring, "\"trigger\":[]") &&
            strstr(body->valuestring, "\"duplicate_check_fields\":[\"Email\"]");
    }
    cJSON_Delete(calls);
    assert_int_equal(n207, 2);
    assert_int_equal(with_keys, 2);
    cJSON_Delete(recs);

    /* The same people again: matched by Email, updated. */
    memset(w, 0, sizeof(*w));
    recs = people(3, 0);
    assert_int_equal(rf_zoho_write(zc, &o, recs, on_written, w), 0);
    run_until(&w->done, 10000);
    assert_int_equal(w->r.nfailed, 0);
    assert_string_equal(w->actions[2], "update");
    assert_int_equal(w->items[2].status, 200);
    cJSON_Delete(recs);
    free(w);
}

static void test_datetime_written_as_zoho_accepts(void **state)
{
    struct rf_zoho_write_opts o = {"Contacts", RF_ZOHO_INSERT, NULL, 0, NULL, 0,
                                   0};
    struct written *w = calloc(1, sizeof(*w));
    struct outcome g = {0};
    char when[RF_ZOHO_TIME_LEN];
    cJSON *recs = cJSON_CreateArray(), *a = cJSON_CreateObject(),
          *b = cJSON_CreateObject(), *got;
    int64_t t = 1802651703, back = 0;

    sim_do("POST", "/_sim/fields/Contacts",
           "{\"fields\": [{\"api_name\": \"Reward_Due\", "
           "\"data_type\": \"datetime\"}]}");
    assert_int_equal(rf_zoho_time_format(t, 330, when, sizeof(when)), 0);
    cJSON_AddStringToObject(a, "Last_Name", "Dated");
    cJSON_AddStringToObject(a, "Reward_Due", when);
    cJSON_AddStringToObject(b, "Last_Name", "Fractions");
    cJSON_AddStringToObject(b, "Reward_Due", "2027-02-14T09:30:00.000Z");
    cJSON_AddItemToArray(recs, a);
    cJSON_AddItemToArray(recs, b);
    open_dc("eu");
    assert_int_equal(rf_zoho_write(zc, &o, recs, on_written, w), 0);
    run_until(&w->done, 5000);
    assert_true(w->items[0].ok);
    assert_false(w->items[1].ok);
    assert_string_equal(w->apis[1], "Reward_Due");
    assert_int_equal(
        rf_zoho_get(zc, "Contacts", w->ids[0], "Reward_Due", on_result, &g), 0);
    run_until(&g.done, 5000);
    expect_ok(&g);
    got = cJSON_Parse(g.json);
    assert_int_equal(
        rf_zoho_time_parse(
            cJSON_GetObjectItem(
                cJSON_GetArrayItem(cJSON_GetObjectItem(got, "data"), 0),
                "Reward_Due")
                ->valuestring,
            &back),
        0);
    assert_int_equal(back, t);
    cJSON_Delete(got);
    outcome_clear(&g);
    cJSON_Delete(recs);
    free(w);
}

static void test_search_with_escaped_criteria(void **state)
{
    const char *name[] = {"Burns, (B)\\x"};
    struct rf_zoho_cond c = {"Last_Name", "equals", name, 1};
    char crit[128], id[RF_ZOHO_ID_MAX];
    struct outcome o = {0};
    cJSON *made, *got;

    made = make_contacts("{\"data\": [{\"Last_Name\": \"Burns, (B)\\\\x\"}, "
                         "{\"Last_Name\": \"Burns\"}]}");
    snprintf(
        id, sizeof(id), "%s",
        cJSON_GetArrayItem(cJSON_GetObjectItem(made, "ids"), 0)->valuestring);
    cJSON_Delete(made);
    assert_int_equal(rf_zoho_criteria(&c, 1, 0, crit, sizeof(crit)), 0);
    open_dc("eu");
    assert_int_equal(
        rf_zoho_search(zc, "Contacts", crit, "Last_Name", 1, 0, on_result, &o),
        0);
    run_until(&o.done, 5000);
    expect_ok(&o);
    got = cJSON_Parse(o.json);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(got, "data")), 1);
    assert_string_equal(
        cJSON_GetObjectItem(
            cJSON_GetArrayItem(cJSON_GetObjectItem(got, "data"), 0), "id")
            ->valuestring,
        id);
    cJSON_Delete(got);
    outcome_clear(&o);
}

/* --- polling ------------------------------------------------------------- */

struct pair {
    char id[RF_ZOHO_ID_MAX];
    int64_t t;
};

struct pollrun {
    int done;
    int rc;
    char error[200];
    struct rf_zoho_poll_stats st;
    struct pair *got; /* every (id, Modified_Time) delivered, all polls */
    size_t ngot;
    size_t batches; /* over all polls */
    int fail_next;  /* answer the next batch with this rc */
    void (*hook)(struct pollrun *r, size_t batch);
    struct rf_zoho_batch *held;
    uv_timer_t later;
};

static void release_later(uv_timer_t *t)
{
    struct pollrun *r = t->data;
    struct rf_zoho_batch *b = r->held;

    r->held = NULL;
    rf_zoho_batch_done(b, 0, 0);
}

struct own_job {
    struct rf_write_job job;
    struct rf_zoho_batch *b;
};

static int run_own(MDB_txn *txn, struct rf_write_job *job)
{
    struct own_job *o = (struct own_job *)job;

    return rf_zoho_batch_put_cursor(o->b, txn, store);
}

static void own_done(struct rf_write_job *job)
{
    struct own_job *o = (struct own_job *)job;

    rf_zoho_batch_done(o->b, job->rc, job->rc ? 0 : RF_ZOHO_CURSOR_WRITTEN);
    free(o);
}

/* Records the batch, then commits it one of three ways in turn: at once,
 * from a timer, or through our own writer job that writes the cursor. */
static void on_batch(struct rf_zoho_batch *b, void *arg)
{
    struct pollrun *r = arg;
    const cJSON *rec;
    size_t k = r->batches++;

    cJSON_ArrayForEach(rec, rf_zoho_batch_records(b))
    {
        struct pair *p;

        r->got = realloc(r->got, (r->ngot + 1) * sizeof(*r->got));
        assert_non_null(r->got);
        p = &r->got[r->ngot++];
        assert_int_equal(rf_zoho_json_id(cJSON_GetObjectItem(rec, "id"), p->id),
                         0);
        assert_int_equal(
            rf_zoho_time_parse(
                cJSON_GetObjectItem(rec, "Modified_Time")->valuestring, &p->t),
            0);
    }
    if (getenv("ZOHO_TEST_TRACE")) {
        print_message("batch %zu: %zu records\n", k, rf_zoho_batch_count(b));
    }
    if (r->hook) {
        r->hook(r, k);
    }
    if (r->fail_next) {
        int rc = r->fail_next;

        r->fail_next = 0;
        rf_zoho_batch_done(b, rc, 0);
    } else if (k % 3 == 0) {
        rf_zoho_batch_done(b, 0, 0);
    } else if (k % 3 == 1) {
        r->held = b;
        r->later.data = r;
        uv_timer_start(&r->later, release_later, 1, 0);
    } else {
        struct own_job *o = calloc(1, sizeof(*o));

        assert_non_null(o);
        o->b = b;
        o->job.run = run_own;
        o->job.done = own_done;
        rf_writer_submit(writer, &o->job);
    }
}

static void on_polled(int rc, const char *error,
                      const struct rf_zoho_poll_stats *st, void *arg)
{
    struct pollrun *r = arg;

    r->done = 1;
    r->rc = rc;
    snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
    r->st = *st;
}

static void poll_once(struct pollrun *r)
{
    struct rf_zoho_poll_opts o = {"Contacts", "Last_Name,Phone", on_batch,
                                  on_polled, r, NULL};

    r->done = 0;
    assert_int_equal(rf_zoho_poll(zc, &o), 0);
    assert_int_equal(rf_zoho_poll(zc, &o), RF_EBUSY);
    run_until(&r->done, 30000);
}

static int delivered(const struct pollrun *r, const char *id, int64_t t)
{
    for (size_t i = 0; i < r->ngot; i++) {
        if (r->got[i].t == t && strcmp(r->got[i].id, id) == 0) {
            return 1;
        }
    }
    return 0;
}

static int delivered_id(const struct pollrun *r, const char *id)
{
    for (size_t i = 0; i < r->ngot; i++) {
        if (strcmp(r->got[i].id, id) == 0) {
            return 1;
        }
    }
    return 0;
}

static char pile[450][RF_ZOHO_ID_MAX];
static int edited[450];
static int edits_made;

/* Edits records through the control API, one second apart. */
static void edit(const char *const *ids, size_t n)
{
    char body[4096];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"data\": [");

    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "%s{\"id\": \"%s\", \"Phone\": \"555 01%02d\"}",
                                i ? ", " : "", ids[i], edits_made % 100);
    }
    snprintf(body + len, sizeof(body) - len, "]}");
    cJSON_Delete(make_contacts(body));
    edits_made++;
    advance(1, 1);
}

/* Edits `nd` records of the pile that were delivered, and `nt` that were
 * not yet, counting from `from` upwards. */
static void edit_some(struct pollrun *r, size_t nd, size_t nt, size_t from)
{
    const char *done[8], *todo[8];
    size_t d = 0, t = 0;

    for (size_t i = 0; i < 450 && d < nd; i++) {
        if (!edited[i] && delivered_id(r, pile[i])) {
            edited[i] = 1;
            done[d++] = pile[i];
        }
    }
    for (size_t i = from; i < 450 && t < nt; i++) {
        if (!edited[i] && !delivered_id(r, pile[i])) {
            edited[i] = 1;
            todo[t++] = pile[i];
        }
    }
    assert_int_equal(d, nd);
    assert_int_equal(t, nt);
    edit(done, d);
    if (t > 0) {
        edit(todo, t);
    }
}

/* Batch 0 is the first page (30 early records, 170 of the shared second);
 * batches 2 and 3 come from the id-ordered read of the shared second. */
static void edits_during_poll(struct pollrun *r, size_t batch)
{
    if (batch == 0) {
        edit_some(r, 3, 3, 170); /* just past the first page's end */
    } else if (batch == 2) {
        edit_some(r, 2, 2, 430); /* one page further on in id order */
    } else if (batch == 3) {
        edit_some(r, 2, 0, 0);
    }
}

static void test_poll_shared_second_with_edits(void **state)
{
    struct pollrun *r = calloc(1, sizeof(*r));
    char body[256], early[64], at[64];
    time_t base = time(NULL) - 3600;
    struct tm tm;
    cJSON *made, *all, *rec, *id;
    size_t i = 0, polls = 1, before, max_ids = 0;
    int64_t tmax = 0, cur_t = 0;
    size_t cur_n = 0;

    assert_non_null(r);
    uv_timer_init(&loop, &r->later);
    gmtime_r(&base, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    base -= 100;
    gmtime_r(&base, &tm);
    strftime(early, sizeof(early), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof(body),
             "{\"generate\": {\"count\": 30, \"template\":"
             " {\"Last_Name\": \"Early {n}\"}}, \"modified_time\": \"%s\"}",
             early);
    cJSON_Delete(make_contacts(body));
    snprintf(body, sizeof(body),
             "{\"generate\": {\"count\": 450, \"template\":"
             " {\"Last_Name\": \"Pile {n}\"}}, \"modified_time\": \"%s\"}",
             at);
    made = make_contacts(body);
    cJSON_ArrayForEach(id, cJSON_GetObjectItem(made, "ids"))
    {
        snprintf(pile[i++], RF_ZOHO_ID_MAX, "%s", id->valuestring);
    }
    cJSON_Delete(made);
    assert_int_equal(i, 450);
    qsort(pile, 450, RF_ZOHO_ID_MAX, cmp_ids);

    open_dc("eu");
    r->hook = edits_during_poll;
    edits_made = 0;
    memset(edited, 0, sizeof(edited));
    poll_once(r);
    if (r->rc != 0) {
        print_error("poll: %s %s\n", rf_err_name(r->rc), r->error);
    }
    assert_int_equal(r->rc, 0);
    assert_true(r->st.shared_scans >= 1);
    assert_int_equal(edits_made, 5);
    print_message("first poll: %zu records in %zu batches, %u calls, %u "
                  "shared-second scans\n",
                  r->st.records, r->st.batches, r->st.calls,
                  r->st.shared_scans);
    /* Later polls pick up edits that landed after the first one's end. */
    do {
        before = r->ngot;
        r->hook = NULL;
        poll_once(r);
        assert_int_equal(r->rc, 0);
        polls++;
    } while (r->ngot != before && polls < 6);
    assert_int_equal(r->ngot, before);

    /* No (id, Modified_Time) twice. */
    for (size_t a = 0; a < r->ngot; a++) {
        for (size_t b = a + 1; b < r->ngot; b++) {
            if (r->got[a].t == r->got[b].t &&
                strcmp(r->got[a].id, r->got[b].id) == 0) {
                print_error("delivered twice: %s at %lld\n", r->got[a].id,
                            (long long)r->got[a].t);
                fail();
            }
        }
    }
    /* None missed: each record's current version was delivered, and each
     * record was delivered at least once. */
    all = sim("GET", "/_sim/records/Contacts?limit=1000", NULL);
    assert_int_equal(cJSON_GetObjectItem(all, "count")->valueint, 480);
    cJSON_ArrayForEach(rec, cJSON_GetObjectItem(all, "data"))
    {
        const char *rid = cJSON_GetObjectItem(rec, "id")->valuestring;
        int64_t t;

        assert_int_equal(
            rf_zoho_time_parse(
                cJSON_GetObjectItem(rec, "Modified_Time")->valuestring, &t),
            0);
        if (!delivered(r, rid, t)) {
            print_error("missed: %s at %lld\n", rid, (long long)t);
            fail();
        }
        if (t > tmax) {
            tmax = t;
            max_ids = 0;
        }
        max_ids += t == tmax;
    }
    cJSON_Delete(all);
    assert_int_equal(r->ngot, 480 + 7); /* 7 delivered records were edited
                                           and came again */
    assert_int_equal(rf_zoho_cursor_get(zc, "Contacts", &cur_t, &cur_n), 0);
    assert_int_equal(cur_t, tmax);
    assert_int_equal(cur_n, max_ids);
    uv_close((uv_handle_t *)&r->later, NULL);
    free(r->got);
    free(r);
}

static void test_poll_cursor_waits_for_commit(void **state)
{
    struct pollrun *r = calloc(1, sizeof(*r));
    int64_t t = -1;
    size_t n = 9;

    assert_non_null(r);
    uv_timer_init(&loop, &r->later);
    cJSON_Delete(make_contacts("{\"generate\": {\"count\": 5}}"));
    open_dc("eu");
    r->fail_next = RF_EIO;
    poll_once(r);
    assert_int_equal(r->rc, RF_EIO);
    assert_int_equal(r->ngot, 5);
    assert_int_equal(rf_zoho_cursor_get(zc, "Contacts", &t, &n), 0);
    assert_int_equal(t, 0);
    assert_int_equal(n, 0);

    poll_once(r); /* the same five again, committed this time */
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->ngot, 10);
    assert_int_equal(r->st.records, 5);
    assert_true(r->st.caught_up);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(r->got[i].id, r->got[i + 5].id);
    }
    assert_int_equal(rf_zoho_cursor_get(zc, "Contacts", &t, &n), 0);
    assert_int_equal(t, r->got[9].t);
    assert_int_equal(n, 5);

    poll_once(r);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->st.records, 0);
    uv_close((uv_handle_t *)&r->later, NULL);
    free(r->got);
    free(r);
}

/* Zoho's clock stands in the shared second: the second must stay open,
 * because a record can still land in it; it closes once a later one
 * exists. */
static void test_poll_shared_second_still_open(void **state)
{
    struct pollrun *r = calloc(1, sizeof(*r));
    int64_t t0 = 0, t = 0;
    size_t n = 0;

    assert_non_null(r);
    uv_timer_init(&loop, &r->later);
    sim_do("POST", "/_sim/clock", "{\"freeze\": true}");
    cJSON_Delete(make_contacts("{\"generate\": {\"count\": 250}}"));
    open_dc("eu");
    poll_once(r);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->ngot, 250);
    assert_int_equal(rf_zoho_cursor_get(zc, "Contacts", &t0, &n), 0);
    assert_int_equal(n, 250); /* still second t0, not t0 + 1 */

    cJSON_Delete(make_contacts("{\"data\": [{\"Last_Name\": \"Same "
                               "second\"}]}"));
    poll_once(r);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->st.records, 1);
    assert_int_equal(r->got[250].t, t0);
    assert_int_equal(rf_zoho_cursor_get(zc, "Contacts", &t, &n), 0);
    assert_int_equal(t, t0);
    assert_int_equal(n, 251);

    advance(5, 1);
    cJSON_Delete(make_contacts("{\"data\": [{\"Last_Name\": \"Later\"}]}"));
    poll_once(r);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->st.records, 1);
    assert_int_equal(r->got[251].t, t0 + 5);
    assert_int_equal(rf_zoho_cursor_get(zc, "Contacts", &t, &n), 0);
    assert_int_equal(t, t0 + 5);
    assert_int_equal(n, 1);
    uv_close((uv_handle_t *)&r->later, NULL);
    free(r->got);
    free(r);
}

/* --- Watch channels ------------------------------------------------------ */

static int64_t sim_channel_expiry(const char *id)
{
    cJSON *w = sim("GET", "/_sim/watch", NULL), *c;
    int64_t t = 0;

    cJSON_ArrayForEach(c, cJSON_GetObjectItem(w, "channels"))
    {
        if (strcmp(cJSON_GetObjectItem(c, "channel_id")->valuestring, id) ==
            0) {
            assert_int_equal(
                rf_zoho_time_parse(
                    cJSON_GetObjectItem(c, "channel_expiry")->valuestring, &t),
                0);
        }
    }
    cJSON_Delete(w);
    return t;
}

static int64_t watch_expiry;

static void on_tick_check(uv_timer_t *t)
{
    int *renewed = t->data;
    int64_t e = 0;

    if (rf_zoho_watch_expiry(zc, "1000000068001", &e) == 0 &&
        e > watch_expiry) {
        *renewed = 1;
    }
}

static void test_channel_renewed_before_expiry(void **state)
{
    static const char *const events[] = {"Contacts.all", "Leads.edit"};
    struct rf_zoho_channel ch = {
        "1000000068001", events, 2, "http://127.0.0.1:9/hook",
        "verify-me",     3600,   1};
    struct outcome o = {0};
    int64_t first, now;
    int renewed = 0;
    uv_timer_t poller;
    cJSON *calls, *c;
    int patches = 0;

    open_dc("eu");
    assert_int_equal(rf_zoho_watch_start(zc, &ch, on_result, &o), 0);
    run_until(&o.done, 5000);
    expect_ok(&o);
    assert_int_equal(o.status, 201);
    outcome_clear(&o);
    assert_int_equal(rf_zoho_watch_expiry(zc, ch.channel_id, &first), 0);
    now = test_clock(NULL) / 1000;
    assert_true(first >= now + 3590 && first <= now + 3610);
    assert_int_equal(sim_channel_expiry(ch.channel_id), first);

    /* 3100 s later the channel is inside the 600 s margin. */
    watch_expiry = first;
    advance(3100, 0);
    uv_timer_init(&loop, &poller);
    poller.data = &renewed;
    uv_timer_start(&poller, on_tick_check, 10, 10);
    run_until(&renewed, 5000);
    uv_close((uv_handle_t *)&poller, NULL);
    assert_int_equal(rf_zoho_watch_expiry(zc, ch.channel_id, &watch_expiry), 0);
    assert_true(watch_expiry >= first + 3090);
    assert_int_equal(sim_channel_expiry(ch.channel_id), watch_expiry);
    calls = sim("GET", "/_sim/calls?kind=api", NULL);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(calls, "calls"))
    {
        patches +=
            strcmp(cJSON_GetObjectItem(c, "method")->valuestring, "PATCH") == 0;
    }
    cJSON_Delete(calls);
    assert_int_equal(patches, 1);

    /* Past the first expiry Zoho still has it. */
    advance(600, 0);
    assert_int_equal(sim_channel_expiry(ch.channel_id), watch_expiry);

    /* A restarted connection knows the channel and its expiry. */
    close_zoho();
    open_dc("eu");
    assert_int_equal(rf_zoho_watch_expiry(zc, ch.channel_id, &first), 0);
    assert_int_equal(first, watch_expiry);

    assert_int_equal(rf_zoho_watch_stop(zc, ch.channel_id, on_result, &o), 0);
    run_until(&o.done, 5000);
    expect_ok(&o);
    outcome_clear(&o);
    assert_int_equal(sim_channel_expiry(ch.channel_id), 0);
    assert_int_equal(rf_zoho_watch_expiry(zc, ch.channel_id, &first),
                     RF_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_parse_and_format),
        cmocka_unit_test(test_criteria_escaping),
        cmocka_unit_test(test_ids_never_pass_through_doubles),
        cmocka_unit_test(test_token_answer_forms),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_every_data_centre),
        T(test_token_refreshed_before_expiry),
        T(test_token_expires_mid_run),
        T(test_twenty_calls_one_refresh),
        T(test_eleventh_refresh_not_attempted),
        T(test_wrong_data_centre_at_accounts),
        T(test_wrong_data_centre_at_api),
        T(test_token_cache_survives_restart),
        T(test_refresh_without_expires_in),
        T(test_close_with_calls_in_flight),
        T(test_429_burst_backs_off),
        T(test_500s_recover),
        T(test_concurrency_limit_held),
        T(test_credit_budget_refused_locally),
        T(test_list_past_the_2000_wall),
        T(test_empty_answers_204_and_304),
        T(test_batch_207_per_record),
        T(test_datetime_written_as_zoho_accepts),
        T(test_search_with_escaped_criteria),
        T(test_poll_shared_second_with_edits),
        T(test_poll_shared_second_still_open),
        T(test_poll_cursor_waits_for_commit),
        T(test_channel_renewed_before_expiry),
#undef T
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

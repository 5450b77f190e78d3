/* The script engine on a real loop: hooks that wait on http and the store,
 * deadlines, reloads with calls in flight, rebuilds after limits. A local
 * HTTP server on the same loop plays the remote side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "referee/engine.h"
#include "referee/error.h"
#include "referee/http.h"

#include "testutil.h"

static uv_loop_t loop;
static struct rf_http_server *srv;
static struct rf_engine *eng;
static struct rf_store *store;
static char dir[64];
static unsigned port;
static struct rf_http_req *held[8];
static int nheld;

/* --- the remote side ---------------------------------------------------- */

static void on_headers(struct rf_http_req *req, void *arg)
{
}

static void on_request(struct rf_http_req *req, void *arg)
{
    size_t len;
    const char *body = rf_http_body(req, &len);

    if (strcmp(rf_http_path(req), "/hold") == 0 && nheld < 8) {
        held[nheld++] = req; /* answered by release_held() */
        return;
    }
    rf_http_respond(req, 201, "text/plain", body, len);
}

static void release_held(const char *text)
{
    for (int i = 0; i < nheld; i++) {
        rf_http_respond(held[i], 200, "text/plain", text, strlen(text));
    }
    nheld = 0;
}

/* --- helpers ------------------------------------------------------------ */

static void write_tenant(const char *id, const char *code)
{
    FILE *f;

    RF_TEST_TENANT_FILE(f, dir, id);
    fprintf(f,
            "local base = 'http://127.0.0.1:%u'\n"
            "return {\n"
            "  allowed_hosts = { { host = '127.0.0.1', http = true,\n"
            "                      private = true } },\n"
            "%s\n"
            "}\n",
            port, code);
    fclose(f);
}

static void load(const char *id)
{
    char path[256], err[2048];

    snprintf(path, sizeof(path), "%s/%s", dir, id);
    if (rf_engine_load(eng, path, id, err, sizeof(err)) != 0) {
        print_error("load %s: %s\n", id, err);
        fail();
    }
}

struct outcome {
    int done;
    int rc;
    char json[512];
    char error[1024];
    char version[17];
};

static void on_done(const struct rf_hook_result *res, void *arg)
{
    struct outcome *o = arg;

    o->done++;
    o->rc = res->rc;
    snprintf(o->json, sizeof(o->json), "%s", res->json);
    snprintf(o->error, sizeof(o->error), "%s", res->error ? res->error : "");
    snprintf(o->version, sizeof(o->version), "%s", res->version);
}

static void start(const char *tenant, const char *hook, const char *input,
                  struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    assert_int_equal(rf_engine_call(eng, tenant, hook, input,
                                    input ? strlen(input) : 0, "ev1",
                                    on_done, o),
                     0);
}

static void wait_done(struct outcome *o)
{
    while (!o->done) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(o->done, 1);
}

static void call(const char *tenant, const char *hook, const char *input,
                 struct outcome *o)
{
    start(tenant, hook, input, o);
    wait_done(o);
}

static void expect_json(const struct outcome *o, const char *want)
{
    if (o->rc != 0 || strcmp(o->json, want) != 0) {
        print_error("rc %d error %s\n  got:  %s\n  want: %s\n", o->rc,
                    o->error, o->json, want);
        fail();
    }
}

static int setup(void **state)
{
    struct rf_http_limits lim;
    struct rf_http_app app = {on_headers, on_request, NULL};
    struct rf_engine_opts o = {0};
    char err[256], data[96];

    curl_global_init(CURL_GLOBAL_DEFAULT);
    RF_TEST_MKDIR(dir, "engine");
    snprintf(data, sizeof(data), "%s/data", dir);
    assert_int_equal(rf_store_open(data, 0, 0, &store, err, sizeof(err)), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    rf_http_limits_default(&lim);
    srv = rf_http_server_start(&loop, "127.0.0.1", 0, &lim, &app);
    assert_non_null(srv);
    port = rf_http_server_port(srv);
    o.loop = &loop;
    o.store = store;
    o.wall_ms = 1500;
    eng = rf_engine_new(&o);
    assert_non_null(eng);
    return 0;
}

static int teardown(void **state)
{
    release_held("bye");
    rf_engine_free(eng);
    rf_http_server_stop(srv);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    rf_store_close(store);
    RF_TEST_RMDIR(dir);
    curl_global_cleanup();
    return 0;
}

/* --- tests -------------------------------------------------------------- */

static void test_http_inside_pcall(void **state)
{
    struct outcome o;

    write_tenant("web", "  milestone = function(rec)\n"
                        "    local ok, resp = pcall(http.request, {\n"
                        "      url = base .. '/echo', method = 'POST',\n"
                        "      body = rec.id })\n"
                        "    return { ok, resp.status, resp.body }\n"
                        "  end,");
    load("web");
    call("web", "milestone", "{\"id\":\"4876000000945492576\"}", &o);
    expect_json(&o, "[true,201,\"4876000000945492576\"]");
}

/* env() closes when tenant.lua has loaded: a hook cannot go looking for
 * secrets, not even its own; a value read at load stays usable. */
static void test_env_only_while_loading(void **state)
{
    struct outcome o;

    setenv("ENVY__TOKEN", "t0ken", 1);
    write_tenant("envy", "  milestone = (function()\n"
                         "    local tok, get = env('ENVY__TOKEN'), env\n"
                         "    return function(rec)\n"
                         "      local ok, err = pcall(get, 'ENVY__TOKEN')\n"
                         "      return { tok, ok, err }\n"
                         "    end\n"
                         "  end)(),");
    load("envy");
    call("envy", "milestone", "{}", &o);
    expect_json(&o, "[\"t0ken\",false,\"env() works only while "
                    "tenant.lua loads; read ENVY__TOKEN into a local "
                    "there\"]");
}

static void test_calls_interleave(void **state)
{
    struct outcome a, b;

    write_tenant("slow", "  reward = function(r)\n"
                         "    local resp = http.request{ url = base .. "
                         "'/hold' }\n"
                         "    return r.n .. ':' .. resp.body\n"
                         "  end,");
    load("slow");
    start("slow", "reward", "{\"n\":1}", &a);
    start("slow", "reward", "{\"n\":2}", &b);
    while (nheld < 2) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(a.done + b.done, 0);
    assert_int_equal(rf_engine_active(eng), 2);
    release_held("go");
    wait_done(&a);
    wait_done(&b);
    expect_json(&a, "\"1:go\"");
    expect_json(&b, "\"2:go\"");
}

static void test_wall_deadline(void **state)
{
    struct outcome o;

    load("slow");
    call("slow", "reward", "{\"n\":3}", &o);
    assert_int_equal(o.rc, RF_ETIMEOUT);
    assert_string_equal(o.error, "the hook waited longer than 1500 ms");
    release_held("late"); /* the answer arriving afterwards is dropped */
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void test_reload_keeps_calls_in_flight(void **state)
{
    struct outcome a, b;
    char old_version[17];

    write_tenant("rel", "  reward = function()\n"
                        "    http.request{ url = base .. '/hold' }\n"
                        "    return 'old'\n"
                        "  end,");
    load("rel");
    start("rel", "reward", NULL, &a);
    while (nheld < 1) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    write_tenant("rel", "  reward = function() return 'new' end,");
    load("rel");
    call("rel", "reward", NULL, &b);
    expect_json(&b, "\"new\"");
    release_held("x");
    wait_done(&a);
    expect_json(&a, "\"old\"");
    assert_string_not_equal(a.version, b.version);
    snprintf(old_version, sizeof(old_version), "%s", a.version);
    assert_string_equal(rf_engine_tenant(eng, "rel")->version, b.version);
}

static void test_broken_reload_keeps_old(void **state)
{
    struct outcome o;
    char path[256], err[2048];

    write_tenant("brk", "  reward = function() return 'good' end,");
    load("brk");
    write_tenant("brk", "  reward = function() return 'half' end\n"
                        "  milestone = 3,");
    snprintf(path, sizeof(path), "%s/brk", dir);
    assert_int_equal(rf_engine_load(eng, path, "brk", err, sizeof(err)),
                     RF_EPARSE);
    assert_non_null(strstr(err, "brk/tenant.lua:6: '}' expected (to close "
                                "'{' at line 2) near 'milestone'"));
    call("brk", "reward", NULL, &o);
    expect_json(&o, "\"good\"");
}

static void test_limit_rebuilds_state(void **state)
{
    struct outcome o;

    write_tenant("loop", "  cohort = function()\n"
                         "    counter = (counter or 0) + 1\n"
                         "    return counter\n"
                         "  end,\n"
                         "  capture = function()\n"
                         "    counter = 100\n"
                         "    while true do pcall(function() end) end\n"
                         "  end,");
    write_tenant("calm", "  cohort = function() return 'served' end,");
    load("loop");
    load("calm");
    call("loop", "cohort", NULL, &o);
    expect_json(&o, "1");
    call("loop", "capture", NULL, &o);
    assert_int_equal(o.rc, RF_ELIMIT);
    assert_non_null(strstr(o.error, "cpu budget of 50 ms exceeded"));
    call("calm", "cohort", NULL, &o);
    expect_json(&o, "\"served\"");
    /* The state was rebuilt: the global the runaway call set is gone. */
    call("loop", "cohort", NULL, &o);
    expect_json(&o, "1");
}

static void test_store_round_trip(void **state)
{
    struct outcome o;

    write_tenant("kv", "  milestone = function(v)\n"
                       "    assert(store.get('k') == nil)\n"
                       "    assert(store.put('k', v))\n"
                       "    local got = store.get('k')\n"
                       "    assert(store.delete('k'))\n"
                       "    return { got.id, store.get('k') == nil }\n"
                       "  end,");
    load("kv");
    call("kv", "milestone", "{\"id\":\"4876000000945492576\"}", &o);
    expect_json(&o, "[\"4876000000945492576\",true]");
}

/* limits.store_mb bounds what a tenant's values take on the disk every
 * tenant shares (a reviewer's tenant wrote 6.7 GB of 64 KiB values):
 * replacing a value counts only the difference, deleting gives room. */
static void test_store_quota(void **state)
{
    struct outcome o;

    write_tenant("quota",
                 "  limits = { store_mb = 1, cpu_ms = 1000 },\n"
                 "  milestone = function()\n"
                 "    local big, n, err = string.rep('x', 60000), 0\n"
                 "    for i = 1, 40 do\n"
                 "      local ok, e = store.put('k' .. i, big)\n"
                 "      if not ok then err = e break end\n"
                 "      n = n + 1\n"
                 "    end\n"
                 "    local again = store.put('k1', big)\n"
                 "    assert(store.delete('k2'))\n"
                 "    local after = store.put('k' .. (n + 1), big)\n"
                 "    local over = store.put('k' .. (n + 2), big)\n"
                 "    return { n, err, again, after, over or false }\n"
                 "  end,");
    load("quota");
    call("quota", "milestone", NULL, &o);
    /* 17 values of 60,002 bytes (with their keys and 16 bytes for LMDB's
     * own per record) fit in 1 MiB. */
    expect_json(&o, "[17,\"the tenant's stored values would take 1080477 "
                    "bytes with this one, over its limit of 1048576 bytes "
                    "(limits.store_mb): delete some first\",true,true,"
                    "false]");
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

/* A call writes at most 100 log lines, then one saying the rest are
 * dropped (a reviewer's hook wrote 13,500 in its 50 ms); a bad format
 * names the script line that called log.X. */
static void test_log_lines_per_call(void **state)
{
    struct outcome o;
    FILE *tf = tmpfile();
    int saved = dup(STDERR_FILENO);
    char text[65536], want[256];
    size_t len;

    assert_non_null(tf);
    write_tenant("chatty",
                 "  milestone = function()\n"
                 "    for i = 1, 150 do log.info('line %d of 150', i) end\n"
                 "    return 'done'\n"
                 "  end,\n"
                 "  cohort = function() log.warn('%s and %s', 1) end,\n"
                 "  reward = function()\n"
                 "    for k = 1, 3 do\n"
                 "      for i = 1, 60 do log.info('waits %d-%d', k, i) end\n"
                 "      assert(store.put('k', k))\n"
                 "    end\n"
                 "    return 'ok'\n"
                 "  end,");
    load("chatty");
    assert_int_equal(dup2(fileno(tf), STDERR_FILENO), STDERR_FILENO);
    call("chatty", "milestone", NULL, &o);
    expect_json(&o, "\"done\"");
    /* The count is per call, across its waits (a reviewer's hook wrote
     * 100 lines between each of its store.put calls). */
    call("chatty", "reward", NULL, &o);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    expect_json(&o, "\"ok\"");
    rewind(tf);
    len = fread(text, 1, sizeof(text) - 1, tf);
    text[len] = '\0';
    fclose(tf);
    assert_int_equal(count_of(text, " of 150\""), 100);
    assert_non_null(strstr(text, "line 100 of 150"));
    assert_null(strstr(text, "line 101 of 150"));
    assert_int_equal(count_of(text, "msg=\"waits "), 100);
    assert_non_null(strstr(text, "waits 2-40\""));
    assert_null(strstr(text, "waits 2-41\""));
    assert_int_equal(count_of(text, "this call wrote 100 log lines; the "
                                    "rest are dropped"),
                     2);

    call("chatty", "cohort", NULL, &o);
    assert_int_equal(o.rc, RF_ESCRIPT);
    snprintf(want, sizeof(want),
             "%s/chatty/tenant.lua:9: log.warn: bad argument #3 to "
             "'string.format' (no value)",
             dir);
    assert_non_null(strstr(o.error, want));
}

static void test_bad_script_behaviour(void **state)
{
    struct outcome o;
    char want[256];

    write_tenant("bad", "  cohort = function() coroutine.yield(1) end,\n"
                        "  capture = function() error({ code = 7 }) end,\n"
                        "  reward = function() return function() end end,");
    load("bad");
    call("bad", "cohort", NULL, &o);
    assert_int_equal(o.rc, RF_ESCRIPT);
    assert_non_null(strstr(o.error, "yielded on its own"));
    call("bad", "capture", NULL, &o);
    assert_int_equal(o.rc, RF_ESCRIPT);
    call("bad", "reward", NULL, &o);
    assert_int_equal(o.rc, RF_ESCRIPT);
    snprintf(want, sizeof(want),
             "%s/bad/tenant.lua:7: hook 'reward' returned a value that "
             "cannot be encoded as JSON: cannot encode a function",
             dir);
    assert_string_equal(o.error, want);
    call("bad", "milestone", NULL, &o);
    assert_int_equal(o.rc, RF_ENOTFOUND);
    call("nobody", "cohort", NULL, &o);
    assert_int_equal(o.rc, RF_ENOTFOUND);
}

/* A method or header that could carry raw request text is a Lua error
 * naming what is allowed; nothing is sent. */
static void test_http_request_method_injection_is_refused(void **state)
{
    struct outcome o;

    write_tenant("inj", "  reward = function(kind)\n"
                        "    local req = { url = base .. '/echo' }\n"
                        "    if kind == 1 then req.method = 'GET /admin "
                        "HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET'\n"
                        "    elseif kind == 2 then req.method = 'get'\n"
                        "    elseif kind == 3 then req.headers = { ['X: y'] = "
                        "'1' }\n"
                        "    elseif kind == 4 then req.headers = { X = "
                        "'1\\r\\nY: 2' }\n"
                        "    elseif kind == 5 then req.url = req.url .. "
                        "'\\r\\nX: 1'\n"
                        "    else req.method = 'DELETE' end\n"
                        "    local ok, resp = pcall(http.request, req)\n"
                        "    return ok and resp.status or resp\n"
                        "  end,");
    load("inj");
    call("inj", "reward", "1", &o);
    expect_json(&o, "\"http.request: method must be 1 to 16 upper-case "
                    "letters, such as GET, HEAD, POST, PUT, PATCH, DELETE or "
                    "OPTIONS\"");
    call("inj", "reward", "2", &o);
    expect_json(&o, "\"http.request: method must be 1 to 16 upper-case "
                    "letters, such as GET, HEAD, POST, PUT, PATCH, DELETE or "
                    "OPTIONS\"");
    call("inj", "reward", "3", &o);
    expect_json(&o, "\"http.request: headers must be at most 32 name = value "
                    "strings: names are tokens (letters, digits, "
                    "!#$%&'*+-.^_`|~), values have no line breaks\"");
    call("inj", "reward", "4", &o);
    expect_json(&o, "\"http.request: headers must be at most 32 name = value "
                    "strings: names are tokens (letters, digits, "
                    "!#$%&'*+-.^_`|~), values have no line breaks\"");
    call("inj", "reward", "5", &o);
    expect_json(&o, "\"http.request: url must not contain spaces, line "
                    "breaks or other control characters\"");
    call("inj", "reward", "6", &o);
    expect_json(&o, "201");
}

/* Argument errors of the waiting modules name the function, also when
 * Lua cannot tell the name from the call site (pcall, tail calls). */
static void test_waiting_api_argument_errors_name_the_function(void **state)
{
    struct outcome o;

    write_tenant("args", "  reward = function()\n"
                         "    local _, a = pcall(store.put, 1)\n"
                         "    local _, b = pcall(http.request, 1)\n"
                         "    return a .. '|' .. b\n"
                         "  end,");
    load("args");
    call("args", "reward", NULL, &o);
    expect_json(&o, "\"bad argument #2 to 'store.put' (value expected)|"
                    "bad argument #1 to 'http.request' (table expected, got "
                    "number)\"");
}

/* A budget found spent when the hook waits names the line it waits on. */
static void test_cpu_budget_hit_while_waiting_names_the_line(void **state)
{
    struct outcome o;
    char want[256];

    write_tenant("cpu", "  reward = function()\n"
                        "    for i = 1, 20 do\n"
                        "      local t = os.clock()\n"
                        "      while os.clock() - t < 0.02 do end\n"
                        "      http.request{ url = base .. '/echo' }\n"
                        "    end\n"
                        "  end,");
    load("cpu");
    call("cpu", "reward", NULL, &o);
    assert_int_equal(o.rc, RF_ELIMIT);
    snprintf(want, sizeof(want), "%s/cpu/tenant.lua:", dir);
    if (strncmp(o.error, want, strlen(want)) != 0 ||
        strstr(o.error, ": cpu budget of 50 ms exceeded") == NULL) {
        print_error("got: %s\nwant: %s<line>: cpu budget of 50 ms "
                    "exceeded...\n",
                    o.error, want);
        fail();
    }
}

/* A memory limit that no pcall in the script sees still names the line. */
static void test_memory_limit_outside_pcall_names_the_line(void **state)
{
    struct outcome o;
    char want[256];

    write_tenant("mem", "  limits = { memory_mb = 8, cpu_ms = 1000 },\n"
                        "  capture = function()\n"
                        "    local t = {}\n"
                        "    for i = 1, 64 do t[i] = string.rep('x', 1048576)"
                        " .. i end\n"
                        "  end,");
    load("mem");
    call("mem", "capture", NULL, &o);
    assert_int_equal(o.rc, RF_ELIMIT);
    snprintf(want, sizeof(want),
             "%s/mem/tenant.lua:8: memory limit of 8 MiB exceeded", dir);
    o.error[strcspn(o.error, "\n")] = '\0';
    assert_string_equal(o.error, want);
}

/* A tenant whose folder is gone is forgotten, and can come back. */
static void test_unload_and_load_dir_forget_removed_tenants(void **state)
{
    struct outcome o;
    char sub[128], cmd[256];

    snprintf(sub, sizeof(sub), "%s/sub", dir);
    mkdir(sub, 0700);
    write_tenant("sub/ua", "  cohort = function() return 'a' end,");
    write_tenant("sub/ub", "  cohort = function() return 'b' end,");
    assert_int_equal(rf_engine_load_dir(eng, sub), 2);
    call("ub", "cohort", NULL, &o);
    expect_json(&o, "\"b\"");

    snprintf(cmd, sizeof(cmd), "rm -rf %s/ub", sub);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rf_engine_load_dir(eng, sub), 1);
    assert_null(rf_engine_tenant(eng, "ub"));
    call("ub", "cohort", NULL, &o);
    assert_int_equal(o.rc, RF_ENOTFOUND);
    call("ua", "cohort", NULL, &o);
    expect_json(&o, "\"a\"");

    rf_engine_unload(eng, "ua");
    call("ua", "cohort", NULL, &o);
    assert_int_equal(o.rc, RF_ENOTFOUND);
    rf_engine_unload(eng, "ua"); /* twice, and unknown ids: no effect */
    rf_engine_unload(eng, "nobody");
    write_tenant("sub/ub", "  cohort = function() return 'back' end,");
    assert_int_equal(rf_engine_load_dir(eng, sub), 2);
    call("ub", "cohort", NULL, &o);
    expect_json(&o, "\"back\"");
}

static void test_http_outside_hook_refused(void **state)
{
    char path[256], err[2048];

    write_tenant("top", "  x = http.request{ url = base },");
    snprintf(path, sizeof(path), "%s/top", dir);
    assert_int_equal(rf_engine_load(eng, path, "top", err, sizeof(err)),
                     RF_ESCRIPT);
    assert_non_null(strstr(err, "http.request can only be called from a "
                                "hook"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_inside_pcall),
        cmocka_unit_test(test_env_only_while_loading),
        cmocka_unit_test(test_calls_interleave),
        cmocka_unit_test(test_wall_deadline),
        cmocka_unit_test(test_reload_keeps_calls_in_flight),
        cmocka_unit_test(test_broken_reload_keeps_old),
        cmocka_unit_test(test_limit_rebuilds_state),
        cmocka_unit_test(test_store_round_trip),
        cmocka_unit_test(test_store_quota),
        cmocka_unit_test(test_log_lines_per_call),
        cmocka_unit_test(test_bad_script_behaviour),
        cmocka_unit_test(test_http_outside_hook_refused),
        cmocka_unit_test(test_http_request_method_injection_is_refused),
        cmocka_unit_test(test_waiting_api_argument_errors_name_the_function),
        cmocka_unit_test(test_cpu_budget_hit_while_waiting_names_the_line),
        cmocka_unit_test(test_memory_limit_outside_pcall_names_the_line),
        cmocka_unit_test(test_unload_and_load_dir_forget_removed_tenants),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

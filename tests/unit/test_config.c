/* The daemon's config file: values read, and errors that name the file,
 * the line and the setting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "referee/config.h"
#include "referee/error.h"

#include "testutil.h"

static char dir[64];

static int make_dir(void **state)
{
    RF_TEST_MKDIR(dir, "config");
    return 0;
}

static int remove_dir(void **state)
{
    RF_TEST_RMDIR(dir);
    return 0;
}

/* Writes text to dir/name and returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text as a config; returns rc and leaves the error in err. */
static int load(const char *text, struct rf_config *cfg, char *err)
{
    const char *path = write_file("referee.lua", text);

    assert_int_equal(rf_config_defaults(cfg), 0);
    return rf_config_load(cfg, path, err, 512);
}

static void test_values_read(void **state)
{
    struct rf_config cfg;
    char err[512];

    assert_int_equal(load("return {\n"
                          "  listen = '127.0.0.1:9001',\n"
                          "  data = '/var/lib/referee',\n"
                          "  log = { level = 'debug', format = 'json' },\n"
                          "  limits = { body_max = 4096, drain_ms = 500 },\n"
                          "  store = { map_size_mb = 8, sync = false,\n"
                          "            commit = 'inline' },\n"
                          "}\n",
                          &cfg, err),
                     0);
    assert_string_equal(cfg.listen, "127.0.0.1:9001");
    assert_string_equal(cfg.data_dir, "/var/lib/referee");
    assert_string_equal(cfg.tenants_dir, "./tenants");
    assert_int_equal(cfg.log_level, RF_LOG_DEBUG);
    assert_int_equal(cfg.log_format, RF_LOG_JSON);
    assert_int_equal(cfg.http.body_max, 4096);
    assert_int_equal(cfg.http.header_max, 16 * 1024);
    assert_int_equal(cfg.drain_ms, 500);
    assert_int_equal(cfg.map_size, 8 << 20);
    assert_int_equal(cfg.sync, 0);
    assert_int_equal(cfg.commit, RF_WRITER_INLINE);
    rf_config_cleanup(&cfg);
}

static void expect_error(const char *text, int rc_want, const char *want)
{
    struct rf_config cfg;
    char err[512], full[600];

    assert_int_equal(load(text, &cfg, err), rc_want);
    snprintf(full, sizeof(full), "%s/%s", dir, want);
    if (strcmp(err, full) != 0) {
        print_error("got:  %s\nwant: %s\n", err, full);
        fail();
    }
    rf_config_cleanup(&cfg);
}

static void test_wrong_type_names_line(void **state)
{
    expect_error("return {\n"
                 "  listen = '127.0.0.1:9001',\n"
                 "  limits = {\n"
                 "    header_max = 8192,\n"
                 "    body_max = 'big',\n"
                 "  },\n"
                 "}\n",
                 RF_ECONFIG,
                 "referee.lua:5: setting 'limits.body_max': expected an "
                 "integer, got string");
}

static void test_line_skips_comments_and_strings(void **state)
{
    expect_error("return {\n"
                 "  limits = {\n"
                 "    -- header_timeout_ms = 5000,\n"
                 "    --[[ header_timeout_ms = 1 ]] body_max = 10,\n"
                 "    keepalive_idle_ms = 'header_timeout_ms = 2',\n"
                 "    header_timeout_ms = '5s',\n"
                 "  },\n"
                 "}\n",
                 RF_ECONFIG,
                 "referee.lua:6: setting 'limits.header_timeout_ms': "
                 "expected an integer, got string");
    expect_error("return {\n  store = {\n    [\"commit\"] = 'x',\n  },\n}\n",
                 RF_ECONFIG,
                 "referee.lua:3: setting 'store.commit': expected group or "
                 "inline");
}

static void test_unknown_setting(void **state)
{
    expect_error("return {\n"
                 "  listen = '127.0.0.1:9001',\n"
                 "  store = { sync = true },\n"
                 "  lisen = 'typo',\n"
                 "}\n",
                 RF_ECONFIG, "referee.lua:4: setting 'lisen': unknown setting");
}

static void test_out_of_range_and_enum(void **state)
{
    expect_error("return { store = {\n  commit = 'sometimes' } }\n",
                 RF_ECONFIG,
                 "referee.lua:2: setting 'store.commit': expected group or "
                 "inline");
    expect_error("return {\n\n  listen = 'localhost'\n}\n", RF_ECONFIG,
                 "referee.lua:3: setting 'listen': " RF_CONFIG_LISTEN_HELP
                 ", got \"localhost\"");
    expect_error("return { limits = { connections_max = 0 } }\n", RF_ECONFIG,
                 "referee.lua:1: setting 'limits.connections_max': must be "
                 "between 1 and 1000000");
    /* a whole number beyond an integer is out of range, not "a fraction" */
    expect_error("return { limits = { body_max = 1e20 } }\n", RF_ECONFIG,
                 "referee.lua:1: setting 'limits.body_max': must be "
                 "between 1 and 1073741824");
    expect_error("return { limits = { body_max = 1.5 } }\n", RF_ECONFIG,
                 "referee.lua:1: setting 'limits.body_max': expected an "
                 "integer, got a fraction");
    expect_error("return { limits = { body_max = 0/0 } }\n", RF_ECONFIG,
                 "referee.lua:1: setting 'limits.body_max': expected an "
                 "integer, got not a number (NaN)");
}

/* What the listener cannot bind fails the config check, naming the line. */
static void test_listen_the_listener_cannot_bind_is_refused(void **state)
{
    static const char *const bad[] = {
        "localhost:8080", "[::1]:8080",     "127.1:8080",  "::1:8080",
        "127.0.0.1",      "127.0.0.1:",     ":8080",       "127.0.0.1:65536",
        "127.0.0.1: 80",  "127.0.0.1:+80",  "127.0.0.01:80", "256.0.0.1:80",
        "127.0.0.1:80x",  "127.0.0.1:000080", NULL};
    char text[128], want[512];

    for (int i = 0; bad[i]; i++) {
        snprintf(text, sizeof(text), "return {\n  listen = '%s',\n}\n",
                 bad[i]);
        snprintf(want, sizeof(want),
                 "referee.lua:2: setting 'listen': " RF_CONFIG_LISTEN_HELP
                 ", got \"%s\"",
                 bad[i]);
        expect_error(text, RF_ECONFIG, want);
    }
}

static void test_listen_accepts_dotted_quad_and_port(void **state)
{
    char host[64];
    unsigned port = 1;

    assert_int_equal(rf_config_split_listen("0.0.0.0:0", host, sizeof(host),
                                            &port),
                     0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 0);
    assert_int_equal(rf_config_split_listen("10.1.2.3:65535", host,
                                            sizeof(host), &port),
                     0);
    assert_string_equal(host, "10.1.2.3");
    assert_int_equal(port, 65535);
    assert_int_equal(rf_config_split_listen("10.1.2.3:8080", host, 8, &port),
                     RF_EINVAL); /* host does not fit */
}

static void test_script_caps(void **state)
{
    struct rf_config cfg;
    char err[512];

    assert_int_equal(load("return {}\n", &cfg, err), 0);
    assert_int_equal(cfg.script_cpu_ms_max, 1000);
    assert_int_equal(cfg.script_mem_max, (size_t)256 << 20);
    assert_int_equal(cfg.script_store_max, (size_t)4096 << 20);
    rf_config_cleanup(&cfg);
    assert_int_equal(load("return { scripts = { store_mb_max = 100 } }\n",
                          &cfg, err),
                     0);
    assert_int_equal(cfg.script_store_max, (size_t)100 << 20);
    rf_config_cleanup(&cfg);
    assert_int_equal(load("return { scripts = { cpu_ms_max = 200,\n"
                          "  memory_mb_max = 64, cpu_ms = 100 } }\n",
                          &cfg, err),
                     0);
    assert_int_equal(cfg.script_cpu_ms_max, 200);
    assert_int_equal(cfg.script_mem_max, (size_t)64 << 20);
    assert_int_equal(cfg.script_cpu_ms, 100);
    rf_config_cleanup(&cfg);
    expect_error("return { scripts = {\n  cpu_ms = 300,\n"
                 "  cpu_ms_max = 200 } }\n",
                 RF_ECONFIG,
                 "referee.lua:2: setting 'scripts.cpu_ms': the default "
                 "budget scripts.cpu_ms (300) is over the cap "
                 "scripts.cpu_ms_max (200)");
    expect_error("return { scripts = {\n  cpu_ms_max = 20 } }\n",
                 RF_ECONFIG,
                 "referee.lua:2: setting 'scripts.cpu_ms_max': the default "
                 "budget scripts.cpu_ms (50) is over the cap "
                 "scripts.cpu_ms_max (20)");
    expect_error("return { scripts = {\n\n  memory_mb_max = 16 } }\n",
                 RF_ECONFIG,
                 "referee.lua:3: setting 'scripts.memory_mb_max': the "
                 "default scripts.memory_mb (32) is over the cap "
                 "scripts.memory_mb_max (16)");
    expect_error("return { scripts = { cpu_ms_max = 10001 } }\n",
                 RF_ECONFIG,
                 "referee.lua:1: setting 'scripts.cpu_ms_max': must be "
                 "between 1 and 10000");
}

static void test_syntax_and_runtime_errors(void **state)
{
    expect_error("return {\n  listen = '127.0.0.1:1'\n  data = 'x'\n}\n",
                 RF_EPARSE,
                 "referee.lua:3: '}' expected (to close '{' at line 1) near "
                 "'data'");
    expect_error("local t = {}\nreturn { data = t.x.y }\n", RF_ESCRIPT,
                 "referee.lua:2: attempt to index a nil value (field 'x')");
    expect_error("return 42\n", RF_ECONFIG,
                 "referee.lua:1: the file must return a table of settings, "
                 "not number");
}

static void test_sandbox_has_no_io_or_os(void **state)
{
    expect_error("return { data = io.open('/etc/passwd'):read('a') }\n",
                 RF_ESCRIPT,
                 "referee.lua:1: attempt to index a nil value (global 'io')");
    expect_error("return { data = os.getenv('HOME') }\n", RF_ESCRIPT,
                 "referee.lua:1: attempt to call a nil value (field "
                 "'getenv')");
    expect_error("return { data = require('x') }\n", RF_ESCRIPT,
                 "referee.lua:1: attempt to call a nil value (global "
                 "'require')");
}

static void test_env_function(void **state)
{
    struct rf_config cfg;
    char err[512];

    setenv("RF_TEST_DATA_DIR", "/srv/rf", 1);
    assert_int_equal(load("return { data = env('RF_TEST_DATA_DIR') }\n", &cfg,
                          err),
                     0);
    assert_string_equal(cfg.data_dir, "/srv/rf");
    rf_config_cleanup(&cfg);
    expect_error("return { data = env('RF_TEST_UNSET_VAR') }\n", RF_ESCRIPT,
                 "referee.lua:1: environment variable RF_TEST_UNSET_VAR is "
                 "not set");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_read),
        cmocka_unit_test(test_wrong_type_names_line),
        cmocka_unit_test(test_line_skips_comments_and_strings),
        cmocka_unit_test(test_unknown_setting),
        cmocka_unit_test(test_out_of_range_and_enum),
        cmocka_unit_test(test_listen_the_listener_cannot_bind_is_refused),
        cmocka_unit_test(test_listen_accepts_dotted_quad_and_port),
        cmocka_unit_test(test_script_caps),
        cmocka_unit_test(test_syntax_and_runtime_errors),
        cmocka_unit_test(test_sandbox_has_no_io_or_os),
        cmocka_unit_test(test_env_function),
    };

    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}

/* Tenant settings: hooks, allowed hosts, limits, file() secrets, versions,
 * and errors that name file, line and setting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "referee/error.h"
#include "referee/tenant.h"

#include "testutil.h"

static char dir[64];

/* Removes dir/sub and everything in it (sub may hold spaces). */
#define RF_TEST_RMDIR_SUB(dir, sub)                                            \
    do {                                                                       \
        char cmd_[256];                                                        \
        snprintf(cmd_, sizeof(cmd_), "rm -rf '%s/%s'", (dir), (sub));          \
        assert_int_equal(system(cmd_), 0);                                     \
    } while (0)

static int make_dir(void **state)
{
    RF_TEST_MKDIR(dir, "tenant");
    return 0;
}

static int remove_dir(void **state)
{
    RF_TEST_RMDIR(dir);
    return 0;
}

/* Makes dir/sub, a tenants folder of a test's own. */
static void make_sub(const char *sub)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    mkdir(path, 0700);
}

static void write_file(const char *id, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/tenants", dir);
    mkdir(path, 0700); /* for ids under tenants/ */
    snprintf(path, sizeof(path), "%s/%s", dir, id);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/%s/%s", dir, id, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads tenant `id`; returns rc, the tenant in *out on success. */
static int load(const char *id, struct rf_tenant **out, char *err)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", dir, id);
    *out = NULL;
    return rf_tenant_load(path, id, NULL, out, NULL, err, 2048);
}

static void expect_error(const char *id, const char *text, int want_rc,
                         const char *want)
{
    struct rf_tenant *t;
    char err[2048], full[2300];

    write_file(id, "tenant.lua", text);
    assert_int_equal(load(id, &t, err), want_rc);
    assert_null(t);
    if (want == NULL) {
        assert_non_null(strstr(err, "tenant.lua:")); /* some file:line */
        return;
    }
    snprintf(full, sizeof(full), "%s/%s/tenant.lua:%s", dir, id, want);
    err[strcspn(err, "\n")] = '\0';
    if (strcmp(err, full) != 0) {
        print_error("got:  %s\nwant: %s\n", err, full);
        fail();
    }
}

static void test_full_settings(void **state)
{
    struct rf_tenant *t;
    char err[2048];

    write_file("acme", "secrets_shop", "s3cret\n");
    write_file("acme", "tenant.lua",
               "return {\n"
               "  sources = {\n"
               "    shop = { secret = file('secrets_shop'),\n"
               "             hook = 'on_order' },\n"
               "  },\n"
               "  allowed_hosts = { 'api.giftly.example',\n"
               "    'http://127.0.0.1:9000',\n"
               "    { host = '10.0.0.5', port = 8443, private = true } },\n"
               "  limits = { memory_mb = 8, cpu_ms = 20 },\n"
               "  cohort = function() return true end,\n"
               "  reward = function() end,\n"
               "  on_order = function(ev) return ev.id end,\n"
               "}\n");
    assert_int_equal(load("acme", &t, err), 0);
    assert_int_equal(t->hooks, (1u << RF_HOOK_COHORT) | (1u << RF_HOOK_REWARD));
    assert_int_equal(t->sources[0].secret_len, 6);
    assert_memory_equal(t->sources[0].secret, "s3cret", 6);
    assert_string_equal(t->sources[0].hook, "on_order");
    assert_int_equal(t->nallow, 3);
    assert_string_equal(t->allow[0].host, "api.giftly.example");
    assert_int_equal(t->allow[0].port, 0);
    assert_int_equal(t->allow[0].http, 0);
    assert_string_equal(t->allow[1].host, "127.0.0.1");
    assert_int_equal(t->allow[1].port, 9000);
    assert_int_equal(t->allow[1].http, 1);
    assert_int_equal(t->allow[1].private_ok, 0);
    assert_int_equal(t->allow[2].port, 8443);
    assert_int_equal(t->allow[2].private_ok, 1);
    assert_int_equal(t->mem_max, 8 << 20);
    assert_int_equal(t->cpu_ms, 20);
    assert_int_equal(strlen(t->version), 16);
    rf_tenant_free(t);
}

static void test_version_follows_content(void **state)
{
    struct rf_tenant *a, *b, *c;
    char err[2048];

    write_file("v", "tenant.lua", "return {}\n");
    assert_int_equal(load("v", &a, err), 0);
    assert_int_equal(load("v", &b, err), 0);
    write_file("v", "tenant.lua", "return { }\n");
    assert_int_equal(load("v", &c, err), 0);
    assert_string_equal(a->version, b->version);
    assert_string_not_equal(a->version, c->version);
    /* sha256("return {}\n"), computed independently. */
    assert_string_equal(a->version, "1232d8379de77e15");
    rf_tenant_free(a);
    rf_tenant_free(b);
    rf_tenant_free(c);
}

static void test_errors_name_line(void **state)
{
    expect_error("e1", "return {\n  cohort = function() end,\n"
                       "  milestones = function() end,\n}\n",
                 RF_ECONFIG,
                 "3: setting 'milestones': unknown hook (hooks are cohort, "
                 "capture, milestone, reward and the sources' hooks)");
    expect_error("e2", "return {\n  reward = 'later',\n}\n", RF_ECONFIG,
                 "2: setting 'reward': a hook must be a function, got "
                 "string");
    expect_error("e3", "return {\n  sources = {\n"
                       "    shop = { hook = 'on_shop' },\n  },\n}\n",
                 RF_ECONFIG,
                 "3: setting 'sources.shop.hook': no function named "
                 "'on_shop' in the returned table");
    expect_error("e4", "return {\n  allowed_hosts = {\n"
                       "    'ftp://x' ,\n  },\n}\n",
                 RF_ECONFIG,
                 "2: setting 'allowed_hosts': item 1: expected \"host\", "
                 "\"host:port\" or \"http(s)://host\"");
    expect_error("e5", "return {\n  limits = { cpu_ms = 0 },\n}\n",
                 RF_ECONFIG,
                 "2: setting 'limits.cpu_ms': must be between 1 and 10000");
    expect_error("e6", "return { zoho_id = 5 }\n", RF_ECONFIG,
                 "1: setting 'zoho_id': unknown setting");
    /* ids that no request could ever carry: every delivery would get 400 */
    expect_error("e7", "return { sources = {\n"
                       "  s = { id = 'header:webhook id' } } }\n",
                 RF_ECONFIG,
                 "2: setting 'sources.s.id': \"header:NAME\" needs a header "
                 "name (letters, digits and !#$%&'*+-.^_`|~), got "
                 "\"header:webhook id\"");
    expect_error("e8", "return { sources = {\n"
                       "  s = { id = 'json:a..b' } } }\n",
                 RF_ECONFIG,
                 "2: setting 'sources.s.id': \"json:PATH\" needs member "
                 "names joined by dots, none empty or over 127 bytes, got "
                 "\"json:a..b\"");
    expect_error("e9", "return { sources = {\n  s = { id = 'json:' } } }\n",
                 RF_ECONFIG,
                 "2: setting 'sources.s.id': \"json:PATH\" needs member "
                 "names joined by dots, none empty or over 127 bytes, got "
                 "\"json:\"");
}

/* Regression: reading the settings once ran a script's __index outside any
 * budget (an endless one hung the loader; one that raised aborted). */
static void test_settings_read_without_metamethods(void **state)
{
    struct rf_tenant *t;
    char err[2048];

    write_file("m1", "tenant.lua",
               "return setmetatable({}, { __index = function()\n"
               "  while true do end end })\n");
    assert_int_equal(load("m1", &t, err), 0);
    assert_int_equal(t->nsources, 0);
    rf_tenant_free(t);
    write_file("m2", "tenant.lua",
               "return { sources = setmetatable({}, { __index = function()\n"
               "  error('boom') end }) }\n");
    assert_int_equal(load("m2", &t, err), 0);
    rf_tenant_free(t);
}

static void test_file_secret_stays_inside(void **state)
{
    expect_error("f1", "return { sources = { s = { secret = "
                       "file('../f1/tenant.lua') } } }\n",
                 RF_ESCRIPT,
                 "1: file(): '../f1/tenant.lua' must be a path inside the "
                 "tenant folder");
}

/* A tenant reads only its own variables (its id in upper case, '-' as
 * '_', then '_'): not another tenant's, not the operator's. */
static void test_env_reads_only_the_tenants_own(void **state)
{
    struct rf_tenant *t;
    char err[2048];

    setenv("E1__SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    setenv("E_3__SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    setenv("RF_TEST_ADMIN_TOKEN", "operator-only-0123456789", 1);
    write_file("e1", "tenant.lua",
               "return { sources = { s = { secret = env('E1__SECRET') } } }\n");
    assert_int_equal(load("e1", &t, err), 0);
    rf_tenant_free(t);
    write_file("e-3", "tenant.lua",
               "return { sources = { s = { secret = env('E_3__SECRET') } } "
               "}\n");
    assert_int_equal(load("e-3", &t, err), 0);
    rf_tenant_free(t);
    expect_error("e2", "local t = env('RF_TEST_ADMIN_TOKEN')\nreturn {}\n",
                 RF_ESCRIPT,
                 "1: env(): a tenant reads only variables whose name starts "
                 "with E2__, not RF_TEST_ADMIN_TOKEN");
    expect_error("e4", "return { x = env('E1__SECRET') }\n", RF_ESCRIPT,
                 "1: env(): a tenant reads only variables whose name starts "
                 "with E4__, not E1__SECRET");
    /* Tenant "e" must not read the variables of "e-3" (a reviewer's
     * "acme" read ACME_EU_SHOP_SECRET when the prefix ended in one '_'). */
    expect_error("e", "return { x = env('E_3__SECRET') }\n", RF_ESCRIPT,
                 "1: env(): a tenant reads only variables whose name starts "
                 "with E__, not E_3__SECRET");
}

static void test_registry_reload_one(void **state)
{
    struct rf_tenants *ts = NULL;
    char err[2048];

    write_file("r1", "tenant.lua", "return { sources = { a = {} } }\n");
    assert_int_equal(rf_tenants_load(dir, NULL, &ts), 0);
    assert_non_null(rf_tenant_find(ts, "r1", 2));
    /* A broken edit keeps the old entry. */
    write_file("r1", "tenant.lua", "return { sources = { a = 1 } }\n");
    assert_int_equal(rf_tenants_reload_one(ts, dir, "r1", NULL, err,
                                           sizeof(err)),
                     RF_ECONFIG);
    assert_non_null(rf_source_find(rf_tenant_find(ts, "r1", 2), "a", 1));
    /* A new folder is added. */
    write_file("r0", "tenant.lua", "return { sources = { b = {} } }\n");
    assert_int_equal(rf_tenants_reload_one(ts, dir, "r0", NULL, err,
                                           sizeof(err)),
                     0);
    assert_non_null(rf_source_find(rf_tenant_find(ts, "r0", 2), "b", 1));
    assert_non_null(rf_tenant_find(ts, "r1", 2));
    rf_tenants_free(ts);
}

/* SIGHUP: a tenant whose new files fail keeps its good version, as the
 * watcher keeps it; a removed folder is dropped. */
static void test_sighup_keeps_good_version_of_broken_tenant(void **state)
{
    struct rf_tenants *ts = NULL;
    const struct rf_tenant *t;
    char tdir[160];

    make_sub("hup");
    write_file("hup/h1", "tenant.lua", "return { sources = { a = {} } }\n");
    write_file("hup/h2", "tenant.lua", "return { sources = { b = {} } }\n");
    write_file("hup/h3", "tenant.lua", "return { sources = { c = 1 } }\n");
    snprintf(tdir, sizeof(tdir), "%s/hup", dir);
    assert_int_equal(rf_tenants_load(tdir, NULL, &ts), 0);
    assert_int_equal(ts->n, 3);

    write_file("hup/h2", "tenant.lua", "return { sources = { b = 1 } }\n");
    write_file("hup/h1", "tenant.lua",
               "return { sources = { a = {}, a2 = {} } }\n");
    assert_int_equal(rf_tenants_reload(&ts, tdir, NULL), 0);
    assert_int_equal(ts->n, 3);
    t = rf_tenant_find(ts, "h2", 2);
    assert_non_null(t);
    assert_null(t->error); /* the old, good version */
    assert_non_null(rf_source_find(t, "b", 1));
    t = rf_tenant_find(ts, "h1", 2);
    assert_null(t->error); /* a good edit switches */
    assert_non_null(rf_source_find(t, "a2", 2));
    t = rf_tenant_find(ts, "h3", 2);
    assert_non_null(t->error); /* never good: stays unavailable */

    RF_TEST_RMDIR_SUB(dir, "hup/h1");
    assert_int_equal(rf_tenants_reload(&ts, tdir, NULL), 0);
    assert_int_equal(ts->n, 2);
    assert_null(rf_tenant_find(ts, "h1", 2));
    t = rf_tenant_find(ts, "h2", 2);
    assert_null(t->error); /* still the good one after a second reload */
    rf_tenants_free(ts);
}

/* The watcher's path: a removed folder is forgotten, not "does not load". */
static void test_removed_folder_is_forgotten(void **state)
{
    struct rf_tenants *ts = NULL;
    char tdir[160], err[2048];

    make_sub("gone");
    write_file("gone/g1", "tenant.lua", "return {}\n");
    write_file("gone/g2", "tenant.lua", "return {}\n");
    snprintf(tdir, sizeof(tdir), "%s/gone", dir);
    assert_int_equal(rf_tenants_load(tdir, NULL, &ts), 0);
    assert_non_null(rf_tenant_find(ts, "g1", 2));
    RF_TEST_RMDIR_SUB(dir, "gone/g1");
    assert_int_equal(rf_tenants_reload_one(ts, tdir, "g1", NULL, err,
                                           sizeof(err)),
                     RF_ENOTFOUND);
    assert_null(rf_tenant_find(ts, "g1", 2));
    assert_non_null(rf_tenant_find(ts, "g2", 2));
    assert_int_equal(rf_tenants_reload_one(ts, tdir, "g1", NULL, err,
                                           sizeof(err)),
                     RF_ENOTFOUND); /* gone twice: nothing to remove */
    rf_tenants_free(ts);
}

/* Folders whose name is not a tenant id are never loaded. */
static void test_folder_with_invalid_name_is_skipped(void **state)
{
    struct rf_tenants *ts = NULL;
    char tdir[160];

    make_sub("names");
    write_file("names/bad name", "tenant.lua", "return {}\n");
    write_file("names/good", "tenant.lua", "return {}\n");
    snprintf(tdir, sizeof(tdir), "%s/names", dir);
    assert_int_equal(rf_tenants_load(tdir, NULL, &ts), 0);
    assert_non_null(rf_tenant_find(ts, "good", 4));
    assert_null(rf_tenant_find(ts, "bad name", 8));
    rf_tenants_free(ts);
    RF_TEST_RMDIR_SUB(dir, "names");
}

static void test_file_follows_no_symlink_out_of_the_folder(void **state)
{
    char target[160], link[160];

    write_file("outside", "secret", "host secret\n");
    write_file("s1", "placeholder", "");
    snprintf(target, sizeof(target), "%s/outside/secret", dir);
    snprintf(link, sizeof(link), "%s/s1/link", dir);
    assert_int_equal(symlink(target, link), 0);
    expect_error("s1", "return { sources = { s = { secret = "
                       "file('link') } } }\n",
                 RF_ESCRIPT,
                 "1: file(): 'link' resolves to a file outside the tenant "
                 "folder (through a symbolic link); refused");
    /* A link to a folder outside, then a file in it. */
    snprintf(target, sizeof(target), "%s/outside", dir);
    snprintf(link, sizeof(link), "%s/s1/dirlink", dir);
    assert_int_equal(symlink(target, link), 0);
    expect_error("s1", "return { sources = { s = { secret = "
                       "file('dirlink/secret') } } }\n",
                 RF_ESCRIPT,
                 "1: file(): 'dirlink/secret' resolves to a file outside the "
                 "tenant folder (through a symbolic link); refused");
}

static void test_file_symlink_inside_the_folder_is_read(void **state)
{
    struct rf_tenant *t;
    char err[2048], link[160];

    write_file("s2", "..data_v1", "inside\n");
    snprintf(link, sizeof(link), "%s/s2/current", dir);
    assert_int_equal(symlink("..data_v1", link), 0);
    write_file("s2", "tenant.lua", "return { sources = { s = { secret = "
                                   "file('current') } } }\n");
    assert_int_equal(load("s2", &t, err), 0);
    assert_int_equal(t->sources[0].secret_len, 6);
    assert_memory_equal(t->sources[0].secret, "inside", 6);
    rf_tenant_free(t);
    expect_error("s2", "return { sources = { s = { secret = "
                       "file('.') } } }\n",
                 RF_ESCRIPT,
                 "1: file(): '.' is the tenant folder, not a file");
}

static void test_limits_over_the_operator_cap_fail(void **state)
{
    struct rf_tenant_env env = {0};
    struct rf_tenant *t = NULL;
    char err[2048], path[256], want[512];

    /* The default caps: 1000 ms and 256 MiB. */
    expect_error("c1", "return {\n  limits = { cpu_ms = 1001 },\n}\n",
                 RF_ECONFIG,
                 "2: setting 'limits.cpu_ms': 1001 ms is over the operator's "
                 "cap of 1000 ms (scripts.cpu_ms_max in the daemon config)");
    expect_error("c2", "return {\n\n  limits = { memory_mb = 257 },\n}\n",
                 RF_ECONFIG,
                 "3: setting 'limits.memory_mb': 257 MiB is over the "
                 "operator's cap of 256 MiB (scripts.memory_mb_max in the "
                 "daemon config)");
    /* An operator's own cap. */
    env.cpu_ms_cap = 100;
    env.mem_cap = (size_t)8 << 20;
    write_file("c3", "tenant.lua", "return { limits = { cpu_ms = 100,\n"
                                   "  memory_mb = 9 } }\n");
    snprintf(path, sizeof(path), "%s/c3", dir);
    assert_int_equal(rf_tenant_load(path, "c3", &env, &t, NULL, err,
                                    sizeof(err)),
                     RF_ECONFIG);
    assert_null(t);
    snprintf(want, sizeof(want),
             "%s/c3/tenant.lua:2: setting 'limits.memory_mb': 9 MiB is over "
             "the operator's cap of 8 MiB (scripts.memory_mb_max in the "
             "daemon config)",
             dir);
    assert_string_equal(err, want);
    write_file("c3", "tenant.lua", "return { limits = { cpu_ms = 100,\n"
                                   "  memory_mb = 8 } }\n");
    assert_int_equal(rf_tenant_load(path, "c3", &env, &t, NULL, err,
                                    sizeof(err)),
                     0);
    assert_int_equal(t->cpu_ms, 100);
    assert_int_equal(t->mem_max, (size_t)8 << 20);
    assert_int_equal(t->store_max, (size_t)64 << 20); /* the default */
    rf_tenant_free(t);
    /* The store's cap: over it fails; without limits.store_mb the tenant
     * gets the default or the cap, whichever is lower. */
    env.store_cap = (size_t)16 << 20;
    write_file("c4", "tenant.lua",
               "return {\n limits = { store_mb = 17 } }\n");
    snprintf(path, sizeof(path), "%s/c4", dir);
    assert_int_equal(rf_tenant_load(path, "c4", &env, &t, NULL, err,
                                    sizeof(err)),
                     RF_ECONFIG);
    snprintf(want, sizeof(want),
             "%s/c4/tenant.lua:2: setting 'limits.store_mb': 17 MiB is over "
             "the operator's cap of 16 MiB (scripts.store_mb_max in the "
             "daemon config)",
             dir);
    assert_string_equal(err, want);
    write_file("c4", "tenant.lua", "return {}\n");
    assert_int_equal(rf_tenant_load(path, "c4", &env, &t, NULL, err,
                                    sizeof(err)),
                     0);
    assert_int_equal(t->store_max, (size_t)16 << 20);
    rf_tenant_free(t);
}

static void test_registry_loaded(void **state)
{
    struct rf_tenants *ts = NULL;
    const struct rf_tenant *t;
    const struct rf_source *s;
    char tdir[160];

    write_file("tenants/acme", "tenant.lua", "return {\n"
                         "  sources = {\n"
                         "    shop = { secret = 'whsec_aGVsbG8gd29ybGQ=',\n"
                         "             keep_headers = { 'X-Topic' } },\n"
                         "    crm = { id = 'json:data.id', format = 'raw' },\n"
                         "  },\n"
                         "}\n");
    write_file("tenants/broken", "tenant.lua", "return {\n  sources = {\n"
                           "    shop = { id = 'body:x' },\n  },\n}\n");
    snprintf(tdir, sizeof(tdir), "%s/tenants", dir);
    assert_int_equal(rf_tenants_load(tdir, NULL, &ts), 0);
    assert_int_equal(ts->n, 2);

    t = rf_tenant_find(ts, "acme", 4);
    assert_non_null(t);
    assert_null(t->error);
    s = rf_source_find(t, "shop", 4);
    assert_non_null(s);
    assert_int_equal(s->secret_len, 11);
    assert_memory_equal(s->secret, "hello world", 11);
    assert_int_equal(s->id_from, RF_ID_HEADER);
    assert_string_equal(s->id_key, "webhook-id");
    assert_int_equal(s->json, 1);
    assert_int_equal(s->nkeep, 1);
    s = rf_source_find(t, "crm", 3);
    assert_int_equal(s->id_from, RF_ID_JSON);
    assert_string_equal(s->id_key, "data.id");
    assert_int_equal(s->json, 0);
    assert_null(s->secret);
    assert_null(rf_source_find(t, "cr", 2));

    t = rf_tenant_find(ts, "broken", 6);
    assert_non_null(t);
    assert_non_null(t->error);
    assert_non_null(strstr(
        t->error, "tenant.lua:3: setting 'sources.shop.id': expected"));
    assert_null(rf_tenant_find(ts, "acm", 3));
    rf_tenants_free(ts);
}

static void test_tenant_id_rules(void **state)
{
    assert_true(rf_tenant_id_valid("acme-eu-2", 9));
    assert_true(rf_tenant_id_valid("a", 1));
    /* '_', "--" and a trailing '-' would let two ids share (or one id
     * start) the prefix of environment variables: see test_env_... */
    assert_false(rf_tenant_id_valid("acme_eu", 7));
    assert_false(rf_tenant_id_valid("acme--eu", 8));
    assert_false(rf_tenant_id_valid("acme-", 5));
    assert_false(rf_tenant_id_valid("Acme", 4));
    assert_false(rf_tenant_id_valid("-acme", 5));
    assert_false(rf_tenant_id_valid("a/b", 3));
    assert_false(rf_tenant_id_valid("", 0));
}


#define ZOHO_HEAD                                                              \
    "return {\n  zoho = {\n    client_id = '1000.X', client_secret = 's',\n" \
    "    refresh_token = 'r', dc = 'eu',\n"

static void test_zoho_settings(void **state)
{
    struct rf_tenant *t;
    char err[2048];

    (void)state;
    write_file("z0", "tenant.lua",
               ZOHO_HEAD
               "    modules = { Leads = { 'Email' },\n"
               "                Contacts = { 'Email', 'Modified_Time' } },\n"
               "    notify = { url = 'https://h.example/t/z0/zoho/notify',\n"
               "               token = 'sixteen-chars-ok' },\n"
               "  },\n}\n");
    assert_int_equal(load("z0", &t, err), 0);
    assert_non_null(t->zoho);
    assert_int_equal(t->zoho->nmodules, 2);
    assert_string_equal(t->zoho->dc, "eu");
    /* Polls are rarer with notifications; events default to each module. */
    assert_int_equal(t->zoho->poll_every_s, 1800);
    assert_int_equal(t->zoho->nevents, 2);
    assert_int_equal(strlen(t->zoho->channel_id), 12);
    assert_int_equal(strlen(t->zoho->connection), 16);
    rf_tenant_free(t);
}

static void test_zoho_settings_errors(void **state)
{
    char fields[1200] = "", text[2000];
    size_t n = 0;

    (void)state;
    expect_error("z1", ZOHO_HEAD "    dc2 = 1,\n  },\n}\n", RF_ECONFIG,
                 "5: setting 'zoho.dc2': unknown setting");
    expect_error("z2",
                 "return {\n  zoho = {\n    client_id = '1000.X', "
                 "client_secret = 's',\n    refresh_token = 'r', "
                 "dc = 'mars',\n  },\n}\n",
                 RF_ECONFIG,
                 "4: setting 'zoho.dc': unknown data centre 'mars' (us, eu, "
                 "in, au, jp, ca, cn, sa)");
    expect_error("z3", ZOHO_HEAD "    api_version = 'v99',\n  },\n}\n",
                 RF_ECONFIG,
                 "5: setting 'zoho.api_version': unknown API version 'v99' "
                 "(v2, v2.1, v3 ... v8)");
    expect_error("z4",
                 ZOHO_HEAD "    modules = { Contacts = { 'Email' },\n"
                           "                contacts = { 'Email' } },\n"
                           "  },\n}\n",
                 RF_ECONFIG, NULL);
    expect_error("z5",
                 ZOHO_HEAD "    modules = { Contacts = { 'Email' } },\n"
                           "    notify = { url = 'https://h.example/n',\n"
                           "               token = 'sixteen-chars-ok',\n"
                           "               events = { 'Contacts.explode' } },\n"
                           "  },\n}\n",
                 RF_ECONFIG,
                 "8: setting 'zoho.notify.events': item 1: expected "
                 "\"Module.create\", \".edit\", \".delete\" or \".all\"");
    expect_error("z6",
                 ZOHO_HEAD "    notify = { url = 'https://h.example/n',\n"
                           "               token = 'short' },\n  },\n}\n",
                 RF_ECONFIG, NULL);
    /* 50 fields are one too many: referee adds Modified_Time. */
    for (int i = 0; i < 50; i++) {
        n += (size_t)snprintf(fields + n, sizeof(fields) - n, "%s'F%d'",
                              i ? ", " : "", i);
    }
    snprintf(text, sizeof(text),
             ZOHO_HEAD "    modules = {\n      Contacts = { %s } },\n  },\n}\n",
             fields);
    expect_error("z7", text, RF_ECONFIG,
                 "6: setting 'zoho.modules.Contacts': Zoho reads at most 50 "
                 "fields per call; with those referee adds (Modified_Time) "
                 "this list makes 51");
}

static void test_program_settings(void **state)
{
    struct rf_tenant *t;
    char err[2048];

    (void)state;
    write_file("p0", "tenant.lua",
               "return {\n  program = {\n"
               "    landing = 'https://acme.example/refer?code={code}',\n"
               "    link = 'https://go.acme.example/r/{code}',\n"
               "    link_field = 'Referral_Link',\n"
               "    secret = 'whsec_c2VjcmV0',\n  },\n}\n");
    assert_int_equal(load("p0", &t, err), 0);
    assert_non_null(t->program);
    assert_int_equal(t->program->form_per_minute, 10);
    assert_int_equal(t->program->secret_len, 6);
    assert_memory_equal(t->program->secret, "secret", 6);
    rf_tenant_free(t);
    expect_error("p1",
                 "return {\n  program = {\n    link = 'https://x.example/r',"
                 "\n  },\n}\n",
                 RF_ECONFIG,
                 "3: setting 'program.link': expected an http(s) URL with "
                 "{code} once");
    expect_error("p2",
                 "return {\n  program = {\n    link_field = 'L',\n  },\n}\n",
                 RF_ECONFIG,
                 "3: setting 'program.link_field': needs program.link to "
                 "build the link from");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_settings),
        cmocka_unit_test(test_version_follows_content),
        cmocka_unit_test(test_errors_name_line),
        cmocka_unit_test(test_settings_read_without_metamethods),
        cmocka_unit_test(test_file_secret_stays_inside),
        cmocka_unit_test(test_env_reads_only_the_tenants_own),
        cmocka_unit_test(test_registry_reload_one),
        cmocka_unit_test(test_registry_loaded),
        cmocka_unit_test(test_sighup_keeps_good_version_of_broken_tenant),
        cmocka_unit_test(test_removed_folder_is_forgotten),
        cmocka_unit_test(test_folder_with_invalid_name_is_skipped),
        cmocka_unit_test(test_file_follows_no_symlink_out_of_the_folder),
        cmocka_unit_test(test_file_symlink_inside_the_folder_is_read),
        cmocka_unit_test(test_limits_over_the_operator_cap_fail),
        cmocka_unit_test(test_tenant_id_rules),
        cmocka_unit_test(test_zoho_settings),
        cmocka_unit_test(test_zoho_settings_errors),
        cmocka_unit_test(test_program_settings),
    };

    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}

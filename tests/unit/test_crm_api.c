/* crm.* for scripts, end to end: tenants whose tenant.lua has a zoho table
 * pointing at the Zoho simulator (tests/zoho_sim) serving the sample org of
 * data/zoho-sample, hooks run by the engine on a real loop, values checked
 * against the sample data and the simulator's own records and call log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "referee/engine.h"
#include "referee/error.h"
#include "referee/zoho.h"
#include "referee/zoho_text.h"

#include "testutil.h"
#include "zohosim.h"

#define FARAH "4876000000945492576" /* the first contact of the sample */
#define FARAH_EMAIL "farah.vanderberg0@quarrycoffee.example"
#define OUT_MAX 8192

static uv_loop_t loop;
static struct rf_engine *eng;
static struct rf_store *store;
static char dir[64];
static struct sim_client cli;
static cJSON *contacts; /* data/zoho-sample/contacts.json */

/* --- the sample org ---------------------------------------------------- */

static cJSON *read_json_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    char *text;
    cJSON *j;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    text = malloc((size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    text[n] = '\0';
    fclose(f);
    j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static const char *str_of(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The contacts' ids in ascending order (all have 19 digits); free. */
static const char **sorted_contact_ids(size_t *n)
{
    const cJSON *c;
    const char **ids;
    size_t i = 0;

    *n = (size_t)cJSON_GetArraySize(contacts);
    ids = calloc(*n, sizeof(*ids));
    assert_non_null(ids);
    cJSON_ArrayForEach(c, contacts)
    {
        ids[i++] = str_of(c, "id");
    }
    qsort(ids, *n, sizeof(*ids), cmp_ids);
    return ids;
}

static int64_t modified_of(const cJSON *c)
{
    int64_t t = 0;

    assert_int_equal(rf_zoho_time_parse(str_of(c, "Modified_Time"), &t), 0);
    return t;
}

/* --- the engine and its tenants ------------------------------------------ */

static int group_setup(void **state)
{
    const char *src = getenv("REFEREE_SOURCE_DIR");
    char path[512];

    snprintf(path, sizeof(path), "%s/data/zoho-sample",
             src ? src : REFEREE_SOURCE_DIR);
    sim_start(path);
    snprintf(path, sizeof(path), "%s/data/zoho-sample/contacts.json",
             src ? src : REFEREE_SOURCE_DIR);
    contacts = read_json_file(path);
    sim_client_of("eu", &cli);
    return 0;
}

static int group_teardown(void **state)
{
    cJSON_Delete(contacts);
    sim_stop();
    return 0;
}

static int setup(void **state)
{
    struct rf_engine_opts o = {0};
    char err[256], data[96];

    sim_do("POST", "/_sim/reset", "{}");
    RF_TEST_MKDIR(dir, "crm");
    snprintf(data, sizeof(data), "%s/data", dir);
    assert_int_equal(
        rf_store_open(data, RF_STORE_NOSYNC, 0, &store, err, sizeof(err)), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    o.loop = &loop;
    o.store = store;
    o.wall_ms = 20000;
    eng = rf_engine_new(&o);
    assert_non_null(eng);
    return 0;
}

static int teardown(void **state)
{
    rf_engine_free(eng); /* accepts NULL */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    rf_store_close(store);
    RF_TEST_RMDIR(dir);
    return 0;
}

/* Writes tenants/<id>/tenant.lua: a zoho table for the simulator's eu
 * client (plus `zoho_extra` settings) unless zoho_extra is NULL, then
 * `code` (hooks). */
static void write_tenant(const char *id, const char *zoho_extra,
                         const char *code)
{
    FILE *f;

    RF_TEST_TENANT_FILE(f, dir, id);
    fprintf(f, "return {\n");
    if (zoho_extra != NULL) {
        fprintf(f,
                "  zoho = {\n"
                "    client_id = '%s', client_secret = '%s',\n"
                "    refresh_token = '%s', dc = 'eu',\n"
                "    accounts_url = '%s/eu/accounts',\n"
                "    allowed_hosts = { { host = '127.0.0.1', port = %u,\n"
                "                        http = true, private = true } },\n"
                "    %s\n"
                "  },\n",
                cli.id, cli.secret, cli.refresh, sim_base, sim_port,
                zoho_extra);
    }
    fprintf(f, "%s\n}\n", code);
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
    char json[OUT_MAX];
    char error[1024];
};

static void on_done(const struct rf_hook_result *res, void *arg)
{
    struct outcome *o = arg;

    o->done++;
    o->rc = res->rc;
    snprintf(o->json, sizeof(o->json), "%s", res->json);
    snprintf(o->error, sizeof(o->error), "%s", res->error ? res->error : "");
}

static void start(const char *tenant, const char *input, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    assert_int_equal(rf_engine_call(eng, tenant, "reward", input,
                                    input ? strlen(input) : 0, "ev1", on_done,
                                    o),
                     0);
}

static void wait_done(struct outcome *o)
{
    while (!o->done) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(o->done, 1);
}

/* Runs the tenant's `reward` hook on `input` and waits for it. */
static void call(const char *tenant, const char *input, struct outcome *o)
{
    start(tenant, input, o);
    wait_done(o);
}

static void expect_json(const struct outcome *o, const char *want)
{
    if (o->rc != 0 || strcmp(o->json, want) != 0) {
        print_error("rc %d error %s\n  got:  %s\n  want: %s\n", o->rc, o->error,
                    o->json, want);
        fail();
    }
}

/* The API calls the simulator received, from number `since` on. */
static cJSON *api_calls(int since)
{
    char path[64];

    snprintf(path, sizeof(path), "/_sim/calls?kind=api&since=%d", since);
    return sim("GET", path, NULL);
}

/* --- reading ------------------------------------------------------------- */

static void test_get_known_contact_by_id(void **state)
{
    struct outcome o;

    write_tenant("acme", "",
                 "  reward = function(a)\n"
                 "    local r = crm.get('Contacts', a.id)\n"
                 "    local f = crm.get('Contacts', a.id, "
                 "{ fields = { 'Email' } })\n"
                 "    return { r.Email, r.id, math.type(r.NPS_Score),\n"
                 "             r.NPS_Score, r.Referral_Code == json.null,\n"
                 "             r.Account_Name.name, r.Email_Opt_Out,\n"
                 "             f.Email, f.Last_Name == nil }\n"
                 "  end,");
    load("acme");
    call("acme", "{\"id\":\"" FARAH "\"}", &o);
    expect_json(&o, "[\"" FARAH_EMAIL "\",\"" FARAH "\",\"integer\",4,true,"
                    "\"Quarry Coffee\",false,\"" FARAH_EMAIL "\",true]");
}

static void test_unknown_id_gives_nil(void **state)
{
    struct outcome o;

    write_tenant("acme", "",
                 "  reward = function()\n"
                 "    local n = select('#', crm.get('Contacts', "
                 "'4876000000000000001'))\n"
                 "    local r, msg = crm.get('Contacts', "
                 "'4876000000000000001')\n"
                 "    return { n, r == nil, msg == nil }\n"
                 "  end,");
    load("acme");
    call("acme", NULL, &o);
    expect_json(&o, "[1,true,true]");

    /* Zoho versions that answer 400 INVALID_DATA for an unknown id. */
    sim_do("POST", "/_sim/config", "{\"missing_id_status\": 400}");
    call("acme", NULL, &o);
    expect_json(&o, "[1,true,true]");
}

static void test_search_by_email_finds_the_contact(void **state)
{
    struct outcome o;
    char want[512];
    const char *second = str_of(cJSON_GetArrayItem(contacts, 1), "Email");
    const char *second_id = str_of(cJSON_GetArrayItem(contacts, 1), "id");
    char input[256];

    write_tenant(
        "acme", "",
        "  reward = function(a)\n"
        "    local t, more = crm.search('Contacts',\n"
        "      { { 'Email', 'equals', a.email } })\n"
        "    local s = crm.search('Contacts', '(Email:equals:' .. a.email "
        ".. ')', { fields = 'Email,Last_Name', per_page = 10 })\n"
        "    local both = crm.search('Contacts', { join = 'or',\n"
        "      { 'Email', 'equals', a.email },\n"
        "      { 'Email', 'equals', a.other } })\n"
        "    local none, nmore = crm.search('Contacts',\n"
        "      { { 'Email', 'equals', 'nobody@nowhere.example' } })\n"
        "    return { #t, t[1].id, t[1].Email, more, #s, s[1].Last_Name,\n"
        "             s[1].Phone == nil, #both, both[2].id, #none, nmore,\n"
        "             json.encode(none) }\n"
        "  end,");
    load("acme");
    snprintf(input, sizeof(input), "{\"email\":\"%s\",\"other\":\"%s\"}",
             FARAH_EMAIL, second);
    call("acme", input, &o);
    snprintf(want, sizeof(want),
             "[1,\"" FARAH "\",\"" FARAH_EMAIL "\",false,1,\"van der Berg\","
             "true,2,\"%s\",0,false,\"[]\"]",
             strcmp(second_id, FARAH) > 0 ? second_id : FARAH);
    expect_json(&o, want);
}

static void test_search_criteria_forms(void **state)
{
    struct outcome o;
    char want[128];
    const cJSON *c;
    int keen = 0;
    cJSON *made = sim("POST", "/_sim/records/Contacts",
                      "{\"data\": [{\"Last_Name\": \"Burns, (B)\\\\x\"}, "
                      "{\"Last_Name\": \"Burns\"}]}");

    cJSON_ArrayForEach(c, contacts)
    {
        const char *tier = str_of(c, "Customer_Tier");
        const cJSON *nps = cJSON_GetObjectItem(c, "NPS_Score");

        keen += cJSON_IsNumber(nps) && nps->valueint >= 9 &&
                (strcmp(tier, "Gold") == 0 || strcmp(tier, "Silver") == 0);
    }
    snprintf(
        want, sizeof(want), "[1,\"%s\",5,true,%d,true]",
        cJSON_GetArrayItem(cJSON_GetObjectItem(made, "ids"), 0)->valuestring,
        keen);
    cJSON_Delete(made);
    write_tenant(
        "acme", "",
        "  reward = function()\n"
        "    local r = crm.search('Contacts',\n"
        "      { { 'Last_Name', 'equals', 'Burns, (B)\\\\x' } })\n"
        "    local e, emore = crm.search('Contacts',\n"
        "      { { 'Referral_Code', 'equals', json.null } }, { per_page = 5 "
        "})\n"
        "    local k = crm.search('Contacts',\n"
        "      { { 'NPS_Score', 'greater_equal', 9 },\n"
        "        { 'Customer_Tier', 'in', { 'Gold', 'Silver' } } })\n"
        "    local all = true\n"
        "    for _, x in ipairs(k) do\n"
        "      all = all and x.NPS_Score >= 9 and (x.Customer_Tier == "
        "'Gold'\n"
        "        or x.Customer_Tier == 'Silver')\n"
        "    end\n"
        "    return { #r, r[1].id, #e, emore, #k, all }\n"
        "  end,");
    load("acme");
    call("acme", NULL, &o);
    expect_json(&o, want);
}

static void test_list_pages_and_caps(void **state)
{
    struct outcome o;
    size_t n, newer = 0;
    const char **ids = sorted_contact_ids(&n);
    const cJSON *c, *latest = NULL;
    int64_t mid = modified_of(cJSON_GetArrayItem(contacts, 700));
    char code[1024], want[1024];

    cJSON_ArrayForEach(c, contacts)
    {
        newer += modified_of(c) >= mid;
        if (latest == NULL || modified_of(c) > modified_of(latest)) {
            latest = c;
        }
    }
    snprintf(
        code, sizeof(code),
        "  reward = function()\n"
        "    local r, more = crm.list('Contacts',\n"
        "      { fields = { 'Email', 'Last_Name' }, max = 250 })\n"
        "    local l = crm.list('Contacts', { fields = 'Modified_Time',\n"
        "      sort_by = 'Modified_Time', sort_order = 'desc', max = 3 })\n"
        "    local s, smore = crm.list('Contacts', { fields = 'Email',\n"
        "      modified_since = %lld, max = 2000 })\n"
        "    local none, nmore = crm.list('Contacts', { fields = 'Email',"
        "\n      modified_since = '2099-01-01T00:00:00+05:30' })\n"
        "    local d = crm.list('Contacts', { fields = 'Email' })\n"
        "    return { #r, more, r[1].id, r[250].id, r[1].Email ~= nil,\n"
        "             #l, l[1].Modified_Time, #s, smore, #none, nmore,\n"
        "             json.encode(none), #d }\n"
        "  end,",
        (long long)mid);
    write_tenant("acme", "", code);
    load("acme");
    call("acme", NULL, &o);
    snprintf(want, sizeof(want),
             "[250,true,\"%s\",\"%s\",true,3,\"%s\",%zu,false,0,false,"
             "\"[]\",200]",
             ids[0], ids[249], str_of(latest, "Modified_Time"), newer);
    expect_json(&o, want);
    free(ids);
}

/* --- writing ------------------------------------------------------------- */

static void test_upsert_inserts_then_updates(void **state)
{
    struct outcome o;
    cJSON *log, *calls, *found, *call1, *call2;
    const char *body1, *body2;

    write_tenant("acme", "",
                 "  reward = function()\n"
                 "    local lead = { Last_Name = 'Okafor', First_Name = "
                 "'Ada',\n"
                 "      Email = 'ada.okafor@new.example', Company = 'New Co' "
                 "}\n"
                 "    local a = crm.upsert('Leads', lead, {\n"
                 "      duplicate_check_fields = { 'Email' }, trigger = {} })\n"
                 "    lead.Lead_Status = 'Contacted'\n"
                 "    local b = crm.upsert('Leads', lead)\n"
                 "    local got = crm.get('Leads', a.id)\n"
                 "    return { a.ok, a.action, a.code, #a.id, a.message,\n"
                 "             b.ok, b.action, b.id == a.id, b.message,\n"
                 "             b.duplicate_field, got.Lead_Status }\n"
                 "  end,");
    load("acme");
    call("acme", NULL, &o);
    expect_json(&o, "[true,\"insert\",\"SUCCESS\",19,\"record added\","
                    "true,\"update\",true,\"record updated\",\"Email\","
                    "\"Contacted\"]");

    /* One lead in Zoho; the options went only into the first call. */
    found =
        sim("GET", "/_sim/records/Leads?Email=ada.okafor@new.example", NULL);
    assert_int_equal(cJSON_GetObjectItem(found, "count")->valueint, 1);
    cJSON_Delete(found);
    log = api_calls(0);
    calls = cJSON_GetObjectItem(log, "calls");
    call1 = cJSON_GetArrayItem(calls, 0);
    call2 = cJSON_GetArrayItem(calls, 1);
    assert_string_equal(str_of(call1, "path"), "/eu/api/crm/v8/Leads/upsert");
    body1 = str_of(call1, "body");
    body2 = str_of(call2, "body");
    assert_non_null(strstr(body1, "\"trigger\":[]"));
    assert_non_null(strstr(body1, "\"duplicate_check_fields\":[\"Email\"]"));
    assert_null(strstr(body2, "trigger"));
    assert_null(strstr(body2, "duplicate_check_fields"));
    cJSON_Delete(log);
}

static void test_batch_207_gives_per_item_results(void **state)
{
    struct outcome o;
    cJSON *root, *c;
    int n207 = 0;

    write_tenant(
        "acme", "",
        "  reward = function()\n"
        "    local res = crm.upsert('Leads', {\n"
        "      { Last_Name = 'One', Email = 'one@batch.example' },\n"
        "      { First_Name = 'NoLast', Email = 'two@batch.example' },\n"
        "      { Last_Name = 'Three', Email = 'not-an-email' },\n"
        "      { Last_Name = 'Four', Email = 'four@batch.example' } })\n"
        "    local out = {}\n"
        "    for i, r in ipairs(res) do\n"
        "      out[i] = { r.ok, r.code, r.field or json.null,\n"
        "                 r.action or json.null, r.id and #r.id or 0 }\n"
        "    end\n"
        "    return out\n"
        "  end,");
    load("acme");
    call("acme", NULL, &o);
    expect_json(&o, "[[true,\"SUCCESS\",null,\"insert\",19],"
                    "[false,\"MANDATORY_NOT_FOUND\",\"Last_Name\",null,0],"
                    "[false,\"INVALID_DATA\",\"Email\",null,0],"
                    "[true,\"SUCCESS\",null,\"insert\",19]]");
    root = api_calls(0);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "calls"))
    {
        n207 += cJSON_GetObjectItem(c, "status")->valueint == 207;
    }
    cJSON_Delete(root);
    assert_int_equal(n207, 1);
}

static void test_update_and_refused_record(void **state)
{
    struct outcome o;
    cJSON *rec;

    write_tenant("acme", "",
                 "  reward = function(a)\n"
                 "    local r = crm.update('Contacts', a.id,\n"
                 "      { Customer_Tier = 'Gold', id = 'ignored' },\n"
                 "      { trigger = { 'workflow' } })\n"
                 "    local bad, msg, code, item = crm.update('Contacts', "
                 "a.id,\n"
                 "      { Email = 'not-an-email' })\n"
                 "    local got = crm.get('Contacts', a.id)\n"
                 "    return { r.ok, r.action, r.id, r.code, bad == nil, "
                 "msg,\n"
                 "             code, item.ok, item.field, got.Customer_Tier,\n"
                 "             got.Email }\n"
                 "  end,");
    load("acme");
    call("acme", "{\"id\":\"" FARAH "\"}", &o);
    expect_json(&o, "[true,\"update\",\"" FARAH "\",\"SUCCESS\",true,"
                    "\"invalid data (field Email)\",\"INVALID_DATA\",false,"
                    "\"Email\",\"Gold\",\"" FARAH_EMAIL "\"]");
    rec = sim("GET", "/_sim/records/Contacts/" FARAH, NULL);
    assert_string_equal(
        str_of(cJSON_GetObjectItem(rec, "data"), "Customer_Tier"), "Gold");
    assert_string_equal(str_of(cJSON_GetObjectItem(rec, "data"), "Email"),
                        FARAH_EMAIL);
    cJSON_Delete(rec);
}

/* --- errors -------------------------------------------------------------- */

static void test_tenant_without_zoho_gets_no_connection(void **state)
{
    struct outcome o;

    write_tenant("plain", NULL,
                 "  reward = function()\n"
                 "    local r, msg, code = crm.get('Contacts', '" FARAH "')\n"
                 "    local u, _, ucode = crm.upsert('Leads', { Last_Name = "
                 "'X' })\n"
                 "    return { r == nil, code, u == nil, ucode,\n"
                 "             msg:find('no Zoho connection', 1, true) ~= nil "
                 "}\n"
                 "  end,");
    load("plain");
    call("plain", NULL, &o);
    expect_json(&o, "[true,\"no_connection\",true,\"no_connection\",true]");
}

static void test_zoho_error_code_is_the_third_value(void **state)
{
    struct outcome o;

    write_tenant(
        "acme", "",
        "  reward = function()\n"
        "    local r, msg, code = crm.get('No_Such_Module', '" FARAH "')\n"
        "    local s, _, scode = crm.search('Contacts', "
        "'(Email:sounds_like:x)')\n"
        "    local p, _, pcode = crm.search('Contacts',\n"
        "      { { 'Email', 'equals', 'x@y.z' } }, { page = 11 })\n"
        "    local u, umsg, ucode = crm.upsert('No_Such_Module', "
        "{ Name = 'x' })\n"
        "    return { r == nil, code, msg, s == nil, scode, p == nil, pcode,\n"
        "             u == nil, ucode }\n"
        "  end,");
    load("acme");
    call("acme", NULL, &o);
    expect_json(&o, "[true,\"INVALID_MODULE\",\"Zoho answered HTTP 400 "
                    "INVALID_MODULE (The module name given seems to be "
                    "invalid)\",true,\"INVALID_QUERY\",true,\"LIMIT_REACHED\","
                    "true,\"INVALID_MODULE\"]");
}

static void test_credit_budget_gives_limit(void **state)
{
    struct outcome o;

    write_tenant("acme", "credits_per_day = 2,",
                 "  reward = function(a)\n"
                 "    local out = {}\n"
                 "    for i = 1, 3 do\n"
                 "      local r, msg, code = crm.get('Contacts', a.id)\n"
                 "      out[i] = r and r.id or code\n"
                 "    end\n"
                 "    return out\n"
                 "  end,");
    load("acme");
    call("acme", "{\"id\":\"" FARAH "\"}", &o);
    expect_json(&o, "[\"" FARAH "\",\"" FARAH "\",\"limit\"]");
}

static void test_reload_stops_calls_in_flight(void **state)
{
    struct outcome warm, o;
    struct rf_zoho_stats st = {0};

    write_tenant("acme", "",
                 "  reward = function(a)\n"
                 "    local r, msg, code = crm.get('Contacts', a.id)\n"
                 "    return { r ~= nil, code or json.null }\n"
                 "  end,");
    load("acme");
    call("acme", "{\"id\":\"" FARAH "\"}", &warm); /* token in hand */
    expect_json(&warm, "[true,null]");
    sim_do("POST", "/_sim/faults", "{\"slow_ms\": 400, \"count\": 1}");
    start("acme", "{\"id\":\"" FARAH "\"}", &o);
    while (st.in_flight == 0 && !o.done) {
        uv_run(&loop, UV_RUN_ONCE);
        rf_zoho_stats(rf_engine_zoho(eng, "acme"), &st);
    }
    write_tenant("acme", "credits_per_day = 99999,",
                 "  reward = function() return 'new' end,");
    load("acme"); /* other connection settings: the old one closes */
    wait_done(&o);
    expect_json(&o, "[false,\"stopping\"]");
}

static void test_engine_freed_with_call_in_flight(void **state)
{
    struct outcome o;
    struct rf_zoho_stats st = {0};

    write_tenant("acme", "",
                 "  reward = function(a)\n"
                 "    return crm.list('Contacts', { fields = 'Email' })\n"
                 "  end,");
    load("acme");
    sim_do("POST", "/_sim/faults", "{\"slow_ms\": 300, \"count\": 1}");
    start("acme", NULL, &o);
    while (st.in_flight == 0 && !o.done) {
        uv_run(&loop, UV_RUN_ONCE);
        rf_zoho_stats(rf_engine_zoho(eng, "acme"), &st);
    }
    assert_int_equal(o.done, 0);
    rf_engine_free(eng); /* the call ends; the answer finds nothing */
    eng = NULL;
    assert_int_equal(o.done, 1);
    assert_int_equal(o.rc, RF_ESTOPPING);
}

static void test_list_over_8_mib_is_refused(void **state)
{
    struct outcome o;
    size_t len = 30000;
    char *body = malloc(len + 200);

    assert_non_null(body);
    snprintf(body, len + 200,
             "{\"generate\": {\"count\": 300, \"template\": "
             "{\"Last_Name\": \"Wide {n}\", \"Notes_Text\": \"%0*d\"}}}",
             (int)len, 0);
    sim_do("POST", "/_sim/records/Contacts", body);
    free(body);
    write_tenant("acme", "",
                 "  reward = function()\n"
                 "    local r, msg, code = crm.list('Contacts',\n"
                 "      { fields = 'Notes_Text', max = 2000 })\n"
                 "    return { r == nil, code, msg }\n"
                 "  end,");
    load("acme");
    call("acme", NULL, &o);
    expect_json(&o, "[true,\"too_big\",\"the records are over 8 MiB: ask "
                    "for fewer fields or a lower max\"]");
}

static void test_big_integers_read_like_json_decode(void **state)
{
    struct outcome o;
    cJSON *made = sim("POST", "/_sim/records/Contacts",
                      "{\"data\": [{\"Last_Name\": \"Big\", "
                      "\"Big_Number\": 1234567890123456, "
                      "\"Small_Number\": 123456789012345}]}");
    char input[128];

    snprintf(
        input, sizeof(input), "{\"id\":\"%s\"}",
        cJSON_GetArrayItem(cJSON_GetObjectItem(made, "ids"), 0)->valuestring);
    cJSON_Delete(made);
    write_tenant("acme", "",
                 "  reward = function(a)\n"
                 "    local r = crm.get('Contacts', a.id)\n"
                 "    local d = json.decode('{\"b\":1234567890123456,'\n"
                 "      .. '\"s\":123456789012345}')\n"
                 "    return { r.Big_Number, type(r.Big_Number) == "
                 "type(d.b),\n"
                 "             math.type(r.Small_Number), "
                 "r.Small_Number == d.s }\n"
                 "  end,");
    load("acme");
    call("acme", input, &o);
    expect_json(&o, "[\"1234567890123456\",true,\"integer\",true]");
}

static void test_argument_mistakes_raise(void **state)
{
    struct outcome o;

    write_tenant(
        "acme", "",
        "  reward = function()\n"
        "    local function why(f, ...)\n"
        "      local ok, err = pcall(f, ...)\n"
        "      return ok and 'no error' or err\n"
        "    end\n"
        "    return {\n"
        "      why(crm.get, 'Bad Module', '1'),\n"
        "      why(crm.get, 'Contacts', '12ab'),\n"
        "      why(crm.get, 'Contacts', 1.5),\n"
        "      why(crm.search, 'Contacts', 42),\n"
        "      why(crm.search, 'Contacts', { { 'Email', 'equals' } }),\n"
        "      why(crm.search, 'Contacts', { { 'E-mail', 'equals', 'x' } }),\n"
        "      why(crm.upsert, 'Leads', 'x'),\n"
        "      why(crm.upsert, 'Leads', {}, { trigger = 'workflow' }),\n"
        "      why(crm.update, 'Leads', '1', { 1, 2 }),\n"
        "      why(crm.list, 'Contacts'),\n"
        "      why(crm.list, 'Contacts', { fields = 'Email', max = 5000 }),\n"
        "      why(crm.list, 'Contacts', { fields = 'Email',\n"
        "                                  modified_since = 'yesterday' }),\n"
        "      why(crm.list, 'Contacts', { fields = 'Email', sort_by = "
        "'Email' }),\n"
        "      (why(coroutine.wrap(function() return crm.get('Contacts', "
        "'1') end)):gsub('^[^:]*:%d+: ', '')),\n"
        "    }\n"
        "  end,");
    load("acme");
    call("acme", NULL, &o);
    expect_json(
        &o,
        "[\"crm.get: module must be a Zoho API name such as \\\"Contacts\\\" "
        "(letters, digits, _)\","
        "\"crm.get: id must be a record id, a string of digits\","
        "\"crm.get: id must be a record id, a string of digits\","
        "\"crm.search: criteria must be Zoho's text or a list of 1 to 10 "
        "{field, operator, value}\","
        "\"crm.search: condition 1: values must be strings, numbers, "
        "booleans or json.null\","
        "\"crm.search: condition 1: the field must be a name\","
        "\"crm.upsert: expected a table of field = value, or a list of "
        "them\","
        "\"crm.upsert: trigger must be a list of at most 10 names\","
        "\"crm.update: expected a table of field = value\","
        "\"crm.list: fields must name 1 to 50 fields (Zoho requires them "
        "here)\","
        "\"crm.list: max must be an integer from 1 to 2000\","
        "\"crm.list: modified_since must look like "
        "\\\"2026-03-04T10:21:09+05:30\\\"\","
        "\"crm.list: sort_by must be id, Created_Time or Modified_Time\","
        "\"crm.get can only be called from a hook, not from the script's top "
        "level or a coroutine it made\"]");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_get_known_contact_by_id),
        T(test_unknown_id_gives_nil),
        T(test_search_by_email_finds_the_contact),
        T(test_search_criteria_forms),
        T(test_list_pages_and_caps),
        T(test_upsert_inserts_then_updates),
        T(test_batch_207_gives_per_item_results),
        T(test_update_and_refused_record),
        T(test_tenant_without_zoho_gets_no_connection),
        T(test_zoho_error_code_is_the_third_value),
        T(test_credit_budget_gives_limit),
        T(test_reload_stops_calls_in_flight),
        T(test_engine_freed_with_call_in_flight),
        T(test_list_over_8_mib_is_refused),
        T(test_big_integers_read_like_json_decode),
        T(test_argument_mistakes_raise),
    };
#undef T

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

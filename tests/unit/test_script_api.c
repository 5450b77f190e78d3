/* The synchronous script API (json, crypto, time, log) inside a sandbox:
 * each case runs a Lua snippet that returns a string, compared exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "referee/sandbox.h"
#include "referee/script_api.h"

struct lua_case {
    const char *name;
    const char *code;
    const char *want;
};

static const struct lua_case cases[] = {
    {"decode object and array",
     "local v = json.decode('{\"a\":[1,2,{\"b\":null}],\"c\":true}')\n"
     "return tostring(#v.a) .. tostring(v.a[3].b == json.null) .. "
     "tostring(v.c)",
     "3truetrue"},
    {"empty array stays an array",
     "return json.encode(json.decode('{\"tags\":[]}'))", "{\"tags\":[]}"},
    {"empty object stays an object",
     "return json.encode(json.decode('[{}]'))", "[{}]"},
    {"big integer ids stay strings",
     "local v = json.decode('{\"id\":4876000000945492576,\"n\":12}')\n"
     "return math.type(v.n) .. ' ' .. type(v.id) .. ' ' .. v.id",
     "integer string 4876000000945492576"},
    {"numbers beyond a double's range decode as null, as in events",
     "local v = json.decode('[1e400,-1e400,1.5]')\n"
     "return tostring(v[1] == json.null) .. tostring(v[2] == json.null) .. "
     "json.encode(v)",
     "truetrue[null,null,1.5]"},
    {"string ids stay strings on encode",
     "return json.encode({id = '4876000000945492576'})",
     "{\"id\":\"4876000000945492576\"}"},
    {"sequence encodes as array", "return json.encode({1, 'two', false})",
     "[1,\"two\",false]"},
    {"null encodes", "return json.encode({json.null, 1})", "[null,1]"},
    {"fractions keep precision", "return json.encode({x = 0.1})",
     "{\"x\":0.1}"},
    {"bad json is an error value",
     "local v, err = json.decode('{\"a\":1} trailing')\n"
     "return tostring(v) .. ' ' .. err",
     "nil invalid JSON near byte 8 (more than one value, or bytes after "
     "the value)"},
    {"decode is strict and never cuts a string",
     "local a, ea = json.decode('[\"a\\\\u0000b\"]')\n"
     "local b, eb = json.decode('[01]')\n"
     "local c, ec = json.decode('[\"x\\255\"]')\n"
     "return table.concat({tostring(a), ea, tostring(b), eb, tostring(c),\n"
     "                     ec}, '|')",
     "nil|invalid JSON near byte 3 (a \\u0000 escape (text here cannot "
     "hold a zero character))|nil|invalid JSON near byte 2 (a number with "
     "a leading zero)|nil|invalid JSON near byte 3 (invalid UTF-8 in a "
     "string)"},
    {"strings with quotes survive",
     "return json.decode(json.encode({s = 'a\"b\\\\c\\n'})).s",
     "a\"b\\c\n"},
    {"cycle refused",
     "local t = {}; t.self = t\n"
     "local ok, err = pcall(json.encode, t)\n"
     "return tostring(ok) .. ' ' .. err:match('nested deeper.*')",
     "false nested deeper than 100 levels (a cycle?)"},
    {"a zero byte is refused, not cut",
     "local ok, err = pcall(json.encode, 'a\\0b')\n"
     "local ok2, err2 = pcall(json.encode, {['x\\0y'] = 1})\n"
     "return err:match('a string with a zero.*') .. '|' ..\n"
     "       err2:match('a string with a zero.*')",
     "a string with a zero byte cannot be encoded|"
     "a string with a zero byte cannot be encoded"},
    {"bytes that are not UTF-8 are refused",
     "local ok, err = pcall(json.encode, {s = 'x\\255y'})\n"
     "return err:match('a string that is not.*')",
     "a string that is not UTF-8 cannot be encoded"},
    {"integers past 2^53 keep every digit",
     "return json.encode({9007199254740993, math.maxinteger,\n"
     "                    -9007199254740993, 12345})",
     "[9007199254740993,9223372036854775807,-9007199254740993,12345]"},
    {"functions refused",
     "local ok, err = pcall(json.encode, {f = function() end})\n"
     "return err:match('cannot encode a function') or err",
     "cannot encode a function"},
    {"metatables hidden", "return getmetatable(json.array())",
     "json.array"},
    {"hmac sha256 hex",
     "return crypto.hmac_sha256('key', 'The quick brown fox jumps over the "
     "lazy dog')",
     "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"},
    {"sha256 base64", "return crypto.sha256('abc', 'base64')",
     "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="},
    {"random token length and alphabet",
     "local t = crypto.random_token(12)\n"
     "return #t .. tostring(t:match('^[A-Za-z0-9_-]+$') ~= nil) .. "
     "tostring(t ~= crypto.random_token(12))",
     "16truetrue"},
    {"parse zoho offset",
     "return tostring(time.parse('2026-03-04T10:21:09+05:30'))",
     "1772599869"},
    {"parse utc with fraction",
     "return tostring(time.parse('2026-03-04T04:51:09.250Z'))",
     "1772599869.25"},
    {"parse date only", "return tostring(time.parse('2026-03-04'))",
     "1772582400"},
    {"parse refuses missing zone",
     "local t, err = time.parse('2026-03-04T10:21:09')\n"
     "return tostring(t) .. ' ' .. err",
     "nil not an ISO 8601 date or date-time with a zone: "
     "'2026-03-04T10:21:09'"},
    {"parse refuses bad day", "return tostring(time.parse('2026-02-30'))",
     "nil"},
    {"format with offset",
     "return time.format(1772599869, '+05:30') .. ' ' .. "
     "time.format(1772599869) .. ' ' .. time.format(1772599869, -330)",
     "2026-03-04T10:21:09+05:30 2026-03-04T04:51:09+00:00 "
     "2026-03-03T23:21:09-05:30"},
    {"round trip", "local s = '2025-12-31T23:59:59-08:00'\n"
                   "return time.format(time.parse(s), '-08:00')",
     "2025-12-31T23:59:59-08:00"},
    {"log formats", "log.info('hello %s %d', 'world', 3) return 'ok'", "ok"},
    {"format Z writes Z",
     "return time.format(1772599869, 'Z') .. ' ' .. "
     "time.format(1772599869, '+00:00')",
     "2026-03-04T04:51:09Z 2026-03-04T04:51:09+00:00"},
    {"Z round trip", "return time.format(time.parse('2026-03-04T04:51:09Z'),"
                     " 'Z')",
     "2026-03-04T04:51:09Z"},
    {"argument errors name the function",
     "local _, a = pcall(crypto.random_token, 0)\n"
     "local _, b = pcall(time.format, 'x')\n"
     "local _, c = pcall(json.encode)\n"
     "local _, d = pcall(json.decode)\n"
     "return a .. '|' .. b .. '|' .. c .. '|' .. d",
     "bad argument #1 to 'crypto.random_token' (between 1 and 256 bytes)|"
     "bad argument #1 to 'time.format' (number expected, got string)|"
     "bad argument #1 to 'json.encode' (value expected)|"
     "bad argument #1 to 'json.decode' (string expected, got no value)"},
};

static void run_case(const struct lua_case *c)
{
    struct rf_sandbox *sb = rf_sandbox_new(NULL, RF_SANDBOX_CONFIG);
    lua_State *L;
    char err[512];
    const char *got;

    assert_non_null(sb);
    L = rf_sandbox_state(sb);
    rf_api_open_sync(L);
    rf_api_set_context(L, "acme", "test", NULL);
    if (luaL_loadbufferx(L, c->code, strlen(c->code), c->name, "t") != 0 ||
        rf_sandbox_pcall(sb, 0, 1, err, sizeof(err)) != 0) {
        print_error("%s: %s\n", c->name,
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : err);
        fail();
    }
    got = lua_tostring(L, -1);
    if (got == NULL || strcmp(got, c->want) != 0) {
        print_error("%s:\n  got:  %s\n  want: %s\n", c->name,
                    got ? got : "(not a string)", c->want);
        fail();
    }
    rf_sandbox_free(sb);
}

static void test_cases(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_case(&cases[i]);
    }
}

/* Encoding stops at its text limit before building the rest (8 MiB for
 * json.encode, less where a caller says so), here on a plain state, so
 * that no CPU budget ends it first on a slow (sanitized) build. */
static void test_encoding_stops_at_its_limit(void **state)
{
    lua_State *L = luaL_newstate();
    char err[160];

    assert_non_null(L);
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L,
                                   "local inner = {}\n"
                                   "for i = 1, 1000 do\n"
                                   "  inner[i] = string.rep('x', 1024)\n"
                                   "end\n"
                                   "local t = {}\n"
                                   "for i = 1, 600 do t[i] = inner end\n"
                                   "return t"),
                     LUA_OK);
    assert_null(rf_api_to_json(L, -1, err, sizeof(err)));
    assert_string_equal(err, "the text would be over 8192 KiB");
    assert_null(rf_api_to_json_max(L, -1, 64 << 10, err, sizeof(err)));
    assert_string_equal(err, "the text would be over 64 KiB");
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_encoding_stops_at_its_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

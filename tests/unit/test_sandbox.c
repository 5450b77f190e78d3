/* Unit tests of the Lua sandbox: hostile scripts against every limit, the
 * allow-list, error reports, require, coroutines and the pattern matcher
 * checked against stock Lua. */
#include "referee/error.h"
#include "referee/sandbox.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#define FIXTURES REFEREE_SOURCE_DIR "/tests/unit/fixtures/sandbox"
#define MIB ((size_t)1 << 20)

/* Wall time a limit case may take; the budget itself is 50 ms of CPU. */
#define LIMIT_WALL_MS 3000.0

static const char *const plugin_path[] = {FIXTURES "/plugins",
                                          FIXTURES "/plugins_extra", NULL};

/* One script and what the sandbox must make of it. */
struct sandbox_case {
    const char *name;
    const char *script;
    int want_rc;      /* 0 or RF_E* */
    const char *want; /* substring of the error, or the exact result */
    size_t mem_max;   /* 0 = default */
    unsigned cpu_ms;  /* 0 = default */
    int require;      /* RF_SANDBOX_REQUIRE with the fixture plugins */
};

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static struct rf_sandbox *make(size_t mem_max, unsigned cpu_ms, int require)
{
    struct rf_sandbox_limits lim = {mem_max, cpu_ms, plugin_path};
    struct rf_sandbox *sb =
        rf_sandbox_new(&lim, require ? RF_SANDBOX_REQUIRE : RF_SANDBOX_CONFIG);

    assert_non_null(sb);
    return sb;
}

/* Writes the value on top of L into buf as text and pops it. */
static void value_text(lua_State *L, char *buf, size_t len)
{
    switch (lua_type(L, -1)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        snprintf(buf, len, "%s", lua_tostring(L, -1));
        break;
    case LUA_TBOOLEAN:
        snprintf(buf, len, "%s", lua_toboolean(L, -1) ? "true" : "false");
        break;
    default:
        snprintf(buf, len, "%s", luaL_typename(L, -1));
        break;
    }
    lua_pop(L, 1);
}

/* Loads and runs src as chunk "case"; on success writes its first result
 * into out. Returns the sandbox's code. */
static int run(struct rf_sandbox *sb, const char *src, char *out, size_t outlen,
               char *err, size_t errlen)
{
    int rc = rf_sandbox_load(sb, src, strlen(src), "=case", err, errlen);

    out[0] = '\0';
    if (rc == 0) {
        rc = rf_sandbox_pcall(sb, 0, 1, err, errlen);
    }
    if (rc == 0) {
        value_text(rf_sandbox_state(sb), out, outlen);
    }
    return rc;
}

static void expect_contains(const char *what, const char *text,
                            const char *part)
{
    if (strstr(text, part) == NULL) {
        fail_msg("%s: expected \"%s\" in \"%s\"", what, part, text);
    }
}

/* The check that follows every hostile case: a fresh sandbox, as another
 * tenant, still runs an ordinary script correctly and sees no leftovers. */
static void another_tenant_works(void)
{
    static const char script[] =
        "local t = {}\n"
        "for i = 1, 100 do t[i] = i * i end\n"
        "table.sort(t, function(a, b) return a > b end)\n"
        "local sum = 0\n"
        "for _, v in ipairs(t) do sum = sum + v end\n"
        "local words = {}\n"
        "for w in ('alpha beta gamma'):gmatch('%a+') do\n"
        "    words[#words + 1] = w:upper()\n"
        "end\n"
        "return sum .. ' ' .. t[1] .. ' ' .. table.concat(words, ',') ..\n"
        "    (shared == nil and ' clean' or ' leaked')\n";
    struct rf_sandbox *sb = make(0, 0, 1);
    char out[256], err[1024];
    int rc = run(sb, script, out, sizeof(out), err, sizeof(err));

    if (rc != 0) {
        fail_msg("another tenant failed: %s: %s", rf_err_name(rc), err);
    }
    assert_string_equal(out, "338350 10000 ALPHA,BETA,GAMMA clean");
    assert_false(rf_sandbox_tainted(sb));
    rf_sandbox_free(sb);
}

static void run_case(const struct sandbox_case *c)
{
    struct rf_sandbox *sb = make(c->mem_max, c->cpu_ms, c->require);
    char out[512], err[4096];
    double t0 = now_ms(), took;
    int rc = run(sb, c->script, out, sizeof(out), err, sizeof(err));

    took = now_ms() - t0;
    if (rc != c->want_rc) {
        fail_msg("%s: want %s, got %s: %s%s", c->name, rf_err_name(c->want_rc),
                 rf_err_name(rc), err, out);
    }
    if (c->want_rc == 0) {
        if (strcmp(out, c->want) != 0) {
            fail_msg("%s: want result \"%s\", got \"%s\"", c->name, c->want,
                     out);
        }
    } else {
        expect_contains(c->name, err, c->want);
    }
    if ((c->want_rc == RF_ELIMIT) != rf_sandbox_tainted(sb)) {
        fail_msg("%s: tainted is %d", c->name, (int)rf_sandbox_tainted(sb));
    }
    if (c->want_rc == RF_ELIMIT && took > LIMIT_WALL_MS) {
        fail_msg("%s: the limit took %.0f ms to stop it", c->name, took);
    }

    /* The same state still serves calls after a limit stopped one. */
    rc = run(sb, "return 40 + 2", out, sizeof(out), err, sizeof(err));
    if (rc != 0 || strcmp(out, "42") != 0) {
        fail_msg("%s: the sandbox is unusable afterwards: %s %s", c->name,
                 rf_err_name(rc), err);
    }
    rf_sandbox_free(sb);
    another_tenant_works();
}

static void run_cases(const struct sandbox_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        run_case(&cases[i]);
    }
}

#define RUN_CASES(cases) run_cases(cases, sizeof(cases) / sizeof(cases[0]))

#define CPU_MSG "cpu budget of 50 ms exceeded"
#define MEM_MSG "memory limit of 32 MiB exceeded"
#define BIG_CPU 20000 /* for memory cases: the cap must hit first */

static void test_cpu_budget_cannot_be_escaped(void **state)
{
    static const struct sandbox_case cases[] = {
        {"endless loop", "while true do end", RF_ELIMIT, "case:1: " CPU_MSG, 0,
         0, 0},
        {"endless numeric for",
         "local x = 0 for i = 1, math.maxinteger do "
         "x = x + i end",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless loop inside pcall",
         "local ok = pcall(function() while true do end end)\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"pcall in a loop",
         "while true do pcall(function() while true do end end) end", RF_ELIMIT,
         CPU_MSG, 0, 0, 0},
        {"error-swallowing loop",
         "for i = 1, math.huge do pcall(error, 'x') end", RF_ELIMIT, CPU_MSG, 0,
         0, 0},
        {"endless loop in a coroutine",
         "local co = coroutine.create(function() while true do end end)\n"
         "local ok, e = coroutine.resume(co)\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless loop in coroutine.wrap under pcall",
         "local f = coroutine.wrap(function() while true do end end)\n"
         "pcall(f)\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"coroutine ping-pong",
         "local co = coroutine.wrap(function()\n"
         "    while true do coroutine.yield() end\n"
         "end)\n"
         "while true do co() end",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"coroutine made before the deadline",
         "local co = coroutine.create(function()\n"
         "    while true do\n"
         "        local x = 0\n"
         "        for i = 1, 1000 do x = x + i end\n"
         "        coroutine.yield()\n"
         "    end\n"
         "end)\n"
         "while true do pcall(coroutine.resume, co) end",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"nested coroutines",
         "local function deep(n)\n"
         "    if n == 0 then while true do end end\n"
         "    return coroutine.resume(coroutine.create(deep), n - 1)\n"
         "end\n"
         "deep(20)\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless xpcall handler",
         "xpcall(function() error('boom') end,\n"
         "       function(m) while true do end end)\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless xpcall handler after a budget error",
         "xpcall(function() while true do end end,\n"
         "       function(m) while true do end end)\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless __close",
         "do\n"
         "    local x <close> = setmetatable({}, {__close = function()\n"
         "        while true do end\n"
         "    end})\n"
         "end",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless __close run by coroutine.close",
         "local co = coroutine.create(function()\n"
         "    local x <close> = setmetatable({}, {__close = function()\n"
         "        while true do end\n"
         "    end})\n"
         "    coroutine.yield()\n"
         "end)\n"
         "coroutine.resume(co)\n"
         "pcall(coroutine.close, co)\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless __tostring of an error value",
         "error(setmetatable({}, {__tostring = function()\n"
         "    while true do end\n"
         "end}))",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless load reader",
         "local f, e = load(function() while true do end end)\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"endless require", "require('spin')", RF_ELIMIT, CPU_MSG, 0, 0, 1},
        {"budget of 20 ms", "while true do end", RF_ELIMIT,
         "cpu budget of 20 ms exceeded", 0, 20, 0},
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_cpu_budget_bounds_c_functions(void **state)
{
    static const struct sandbox_case cases[] = {
        {"pathological find",
         "return string.rep('a', 200000):find('.-.-.-.-b')", RF_ELIMIT, CPU_MSG,
         0, 0, 0},
        {"pathological match in pcall",
         "local s = string.rep('a', 200000)\n"
         "pcall(string.match, s, '(a*)*b')\n"
         "pcall(s.match, s, '.-.-.-.-b')\n"
         "return 'swallowed'",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"pathological gmatch",
         "for m in string.rep('a', 200000):gmatch('a*a*a*a*b') do end",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"pathological gsub",
         "return (string.rep(' ', 200000) .. 'x'):gsub('%s+$', '')", RF_ELIMIT,
         CPU_MSG, 0, 0, 0},
        {"pathological plain find",
         "local s = string.rep('a', 4000000)\n"
         "return s:find(string.rep('a', 2000000) .. 'b', 1, true)",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"table.insert over a huge __len",
         "local t = setmetatable({}, {__len = function()\n"
         "    return math.maxinteger - 1\n"
         "end})\n"
         "table.insert(t, 1, 'x')",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"table.remove over a huge __len",
         "local t = setmetatable({}, {__len = function()\n"
         "    return math.maxinteger - 1\n"
         "end})\n"
         "table.remove(t, 1)",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"table.move of 2^60 nils", "table.move({}, 1, 1 << 60, 2)", RF_ELIMIT,
         CPU_MSG, 0, 0, 0},
        {"table.concat of endless empty strings",
         "local t = setmetatable({}, {__index = function() return '' end})\n"
         "return table.concat(t, '', 1, math.maxinteger)",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
        {"table.sort of a huge fake array",
         "local t = setmetatable({}, {__len = function() return 1 << 30 end,\n"
         "    __index = rawlen, __newindex = rawequal})\n"
         "table.sort(t)",
         RF_ELIMIT, CPU_MSG, 0, 0, 0},
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_memory_cap(void **state)
{
    static const struct sandbox_case cases[] = {
        {"string.rep bomb", "local s = string.rep('x', 1 << 30)", RF_ELIMIT,
         MEM_MSG, 0, BIG_CPU, 0},
        {"string.rep bomb inside pcall",
         "local ok = pcall(string.rep, 'x', 1 << 30)\n"
         "return 'swallowed'",
         RF_ELIMIT, MEM_MSG, 0, BIG_CPU, 0},
        {"doubling string", "local s = 'x' while true do s = s .. s end",
         RF_ELIMIT, MEM_MSG, 0, BIG_CPU, 0},
        {"table growth bomb",
         "local t = {} for i = 1, math.huge do t[i] = i end", RF_ELIMIT,
         MEM_MSG, 0, BIG_CPU, 0},
        {"table of tables inside pcall",
         "local t = {}\n"
         "pcall(function() for i = 1, math.huge do t[i] = {} end end)\n"
         "t = nil\n"
         "return 'swallowed'",
         RF_ELIMIT, MEM_MSG, 0, BIG_CPU, 0},
        {"string keys",
         "local t, i = {}, 0\n"
         "while true do i = i + 1 t['k' .. i] = i end",
         RF_ELIMIT, "memory limit of 8 MiB exceeded", 8 * MIB, BIG_CPU, 0},
        {"many large strings",
         "local t = {} for i = 1, 64 do t[i] = string.rep('x', 1 << 20) end",
         RF_ELIMIT, MEM_MSG, 0, BIG_CPU, 0},
        {"cap of 4 MiB", "local t = {} for i = 1, math.huge do t[i] = i end",
         RF_ELIMIT, "memory limit of 4 MiB exceeded", 4 * MIB, BIG_CPU, 0},
        {"deep recursion",
         "local function f(n) return 1 + f(n + 1) end\n"
         "return f(1)",
         RF_ELIMIT, MEM_MSG, 0, BIG_CPU, 0},
        {"deep recursion under a bigger cap",
         "local function f(n) return 1 + f(n + 1) end\n"
         "return f(1)",
         RF_ESCRIPT, "stack overflow", 256 * MIB, BIG_CPU, 0},
        {"huge load",
         "local src = string.rep('local a = 1 ', 2500000)\n"
         "return load(src)",
         RF_ELIMIT, MEM_MSG, 0, BIG_CPU, 0},
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_allow_list(void **state)
{
    static const struct sandbox_case cases[] = {
        {"io", "return io.open('/etc/passwd')", RF_ESCRIPT,
         "attempt to index a nil value (global 'io')", 0, 0, 0},
        {"os.execute", "return os.execute('true')", RF_ESCRIPT,
         "attempt to call a nil value (field 'execute')", 0, 0, 0},
        {"debug", "return debug.getregistry()", RF_ESCRIPT,
         "attempt to index a nil value (global 'debug')", 0, 0, 0},
        {"package", "return package.loaded", RF_ESCRIPT,
         "attempt to index a nil value (global 'package')", 0, 0, 0},
        {"dofile", "dofile('/etc/passwd')", RF_ESCRIPT, "global 'dofile'", 0, 0,
         0},
        {"loadfile", "loadfile('/etc/passwd')", RF_ESCRIPT, "global 'loadfile'",
         0, 0, 0},
        {"print", "print('x')", RF_ESCRIPT, "global 'print'", 0, 0, 0},
        {"require in a config state", "require('greet')", RF_ESCRIPT,
         "global 'require'", 0, 0, 0},
        {"collectgarbage collect", "collectgarbage()", RF_ESCRIPT,
         "only 'count' is", 0, 0, 0},
        {"rest of os",
         "return tostring(os.getenv or os.exit or os.remove or os.rename or\n"
         "    os.tmpname or os.setlocale)",
         0, "nil", 0, 0, 0},
        {"os time functions",
         "return type(os.time()) .. type(os.clock()) .. type(os.date('%Y'))"
         " .. type(os.difftime(2, 1))",
         0, "numbernumberstringnumber", 0, 0, 0},
        {"other libraries",
         "return math.floor(utf8.len('h\\u{e9}') * math.pi) .. "
         "type(coroutine.running())",
         0, "6thread", 0, 0, 0},
        {"string.dump then load",
         "local f = function() return 1 end\n"
         "return load(string.dump(f))",
         RF_ESCRIPT, "attempt to call a nil value (field 'dump')", 0, 0, 0},
        {"binary chunk through load",
         "assert(load('\\27Lua\\84\\0\\25\\147\\r\\n\\26\\n'))", RF_ESCRIPT,
         "attempt to load a binary chunk", 0, 0, 0},
        {"binary chunk with mode b",
         "assert(load('\\27Lua\\84\\0\\25\\147\\r\\n\\26\\n', 'x', 'b'))",
         RF_ESCRIPT, "attempt to load a binary chunk", 0, 0, 0},
        {"string metatable", "getmetatable('').__index.upper = nil", RF_ESCRIPT,
         "attempt to index a boolean value", 0, 0, 0},
        {"setmetatable on a string", "setmetatable('', {})", RF_ESCRIPT,
         "table expected, got string", 0, 0, 0},
        {"string methods survive string.upper = nil",
         "string.upper = nil return ('abc'):upper()", 0, "ABC", 0, 0, 0},
        {"__gc refused",
         "setmetatable({}, {__gc = function() while true do end end})",
         RF_ESCRIPT, "__gc metamethods are not allowed", 0, 0, 0},
        {"__gc added later never runs",
         "local mt = {}\n"
         "local t = setmetatable({}, mt)\n"
         "mt.__gc = function() while true do end end\n"
         "t = nil\n"
         "return 'freed'",
         0, "freed", 0, 0, 0},
        {"protected metatable",
         "local t = setmetatable({}, {__metatable = 'locked'})\n"
         "setmetatable(t, {})",
         RF_ESCRIPT, "cannot change a protected metatable", 0, 0, 0},
        {"empty string.rep is instant",
         "return #string.rep('', 1e15) .. '|' .. string.rep('ab', 3, ',')", 0,
         "0|ab,ab,ab", 0, 0, 0},
        {"load sees the sandbox globals", "y = 3 return load('return y + 1')()",
         0, "4", 0, 0, 0},
        {"load with an env", "return load('return x', 'chunk', 't', {x = 5})()",
         0, "5", 0, 0, 0},
        {"load with a reader",
         "local parts = {'return ', '6 ', '* 7'}\n"
         "local i = 0\n"
         "return load(function() i = i + 1 return parts[i] end)()",
         0, "42", 0, 0, 0},
        {"sort with an inconsistent comparator",
         "local t = {} for i = 1, 100 do t[i] = i % 7 end\n"
         "return pcall(table.sort, t, function() return true end) and\n"
         "    'sorted' or 'refused'",
         0, "refused", 0, 0, 0},
        {"sort of mixed types", "table.sort({1, 'x', 2})", RF_ESCRIPT,
         "attempt to compare", 0, 0, 0},
        {"big %q refused",
         "return string.format('%q', string.rep('\\0', 300000))", RF_ESCRIPT,
         "%q of more than 256 KiB", 0, 0, 0},
        {"string.format",
         "return string.format('%q|%5.1f|%%|%s', 'a\\nb',"
         " 1.5, 'x')",
         0, "\"a\\\nb\"|  1.5|%|x", 0, 0, 0},
        {"collectgarbage count", "return collectgarbage('count') > 0", 0,
         "true", 0, 0, 0},
        {"xpcall handler result",
         "return select(2, xpcall(function() error({code = 7}) end,\n"
         "    function(e) return e.code * 6 end))",
         0, "42", 0, 0, 0},
        {"xpcall success",
         "return select('#', xpcall(function(a, b) return a, b end,\n"
         "    tostring, 1, 2))",
         0, "3", 0, 0, 0},
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_error_values(void **state)
{
    static const struct sandbox_case cases[] = {
        {"string error has file:line", "local x = nil\nreturn x.field",
         RF_ESCRIPT, "case:2: attempt to index a nil value (local 'x')", 0, 0,
         0},
        {"traceback", "local function f() error('deep') end\nf()", RF_ESCRIPT,
         "stack traceback:", 0, 0, 0},
        {"table error value", "error({code = 7})", RF_ESCRIPT,
         "case:1: error object is a table value", 0, 0, 0},
        {"table with __tostring",
         "error(setmetatable({}, {__tostring = function()\n"
         "    return 'custom failure'\n"
         "end}))",
         RF_ESCRIPT, "custom failure", 0, 0, 0},
        {"table with a message field", "error({message = 'from a table'})",
         RF_ESCRIPT, "from a table", 0, 0, 0},
        {"__tostring that fails",
         "error(setmetatable({}, {__tostring = function() error('x') end}))",
         RF_ESCRIPT, "error object is a table value", 0, 0, 0},
        {"__tostring that returns a table",
         "error(setmetatable({}, {__tostring = function() return {} end}))",
         RF_ESCRIPT, "error object is a table value", 0, 0, 0},
        {"nil error value", "error(nil)", RF_ESCRIPT,
         "error object is a nil value", 0, 0, 0},
        {"number error value", "error(42)", RF_ESCRIPT, "42", 0, 0, 0},
        {"syntax error", "x = = 1", RF_EPARSE, "unexpected symbol", 0, 0, 0},
        {"error in coroutine.wrap",
         "local f = coroutine.wrap(function() error('inner') end)\n"
         "f()",
         RF_ESCRIPT, "case:1: inner", 0, 0, 0},
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_coroutines(void **state)
{
    static const struct sandbox_case cases[] = {
        {"yield across pcall",
         "local co = coroutine.wrap(function(a)\n"
         "    local ok, v = pcall(function()\n"
         "        return coroutine.yield(a + 1) * 2\n"
         "    end)\n"
         "    return v\n"
         "end)\n"
         "local first = co(1)\n"
         "return first .. ',' .. co(21)",
         0, "2,42", 0, 0, 0},
        {"yield across xpcall",
         "local co = coroutine.wrap(function()\n"
         "    return select(2, xpcall(coroutine.yield, tostring, 'x'))\n"
         "end)\n"
         "co()\n"
         "return co('back')",
         0, "back", 0, 0, 0},
        {"yield across nested pcall and error after",
         "local co = coroutine.create(function()\n"
         "    return pcall(function()\n"
         "        pcall(coroutine.yield)\n"
         "        error('after', 0)\n"
         "    end)\n"
         "end)\n"
         "coroutine.resume(co)\n"
         "local ok, inner_ok, e = coroutine.resume(co)\n"
         "return tostring(ok) .. tostring(inner_ok) .. e",
         0, "truefalseafter", 0, 0, 0},
        {"resume a dead coroutine",
         "local co = coroutine.create(function() end)\n"
         "coroutine.resume(co)\n"
         "return select(2, coroutine.resume(co))",
         0, "cannot resume dead coroutine", 0, 0, 0},
        {"resume the running coroutine",
         "local co\n"
         "co = coroutine.create(function()\n"
         "    return select(2, coroutine.resume(co))\n"
         "end)\n"
         "return select(2, coroutine.resume(co))",
         0, "cannot resume non-suspended coroutine", 0, 0, 0},
        {"coroutine.close runs __close",
         "local log = ''\n"
         "local co = coroutine.create(function()\n"
         "    local x <close> = setmetatable({}, {__close = function()\n"
         "        log = log .. 'closed'\n"
         "    end})\n"
         "    coroutine.yield()\n"
         "end)\n"
         "coroutine.resume(co)\n"
         "return tostring(coroutine.close(co)) .. log .. "
         "coroutine.status(co)",
         0,
         "trueclosed"
         "dead",
         0, 0, 0},
        {"coroutine.wrap closes after an error",
         "local log = ''\n"
         "local f = coroutine.wrap(function()\n"
         "    local x <close> = setmetatable({}, {__close = function()\n"
         "        log = 'closed'\n"
         "    end})\n"
         "    error('x')\n"
         "end)\n"
         "pcall(f)\n"
         "return log",
         0, "closed", 0, 0, 0},
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_require(void **state)
{
    static const struct sandbox_case cases[] = {
        {"plugin", "return require('greet').hello('ann')", 0, "hello ann", 0, 0,
         1},
        {"dotted name", "return require('util.strings').shout('hi')", 0, "HI!",
         0, 0, 1},
        {"second folder", "return require('extra').name", 0, "extra", 0, 0, 1},
        {"cached per state",
         "local a, b = require('counter'), require('counter')\n"
         "return tostring(a == b) .. ' ' .. a.loads",
         0, "true 1", 0, 0, 1},
        {"parent folder refused", "require('../secret')", RF_ESCRIPT,
         "invalid module name '../secret'", 0, 0, 1},
        {"dot dot refused", "require('..secret')", RF_ESCRIPT,
         "invalid module name", 0, 0, 1},
        {"empty part refused", "require('util..strings')", RF_ESCRIPT,
         "invalid module name", 0, 0, 1},
        {"absolute path refused", "require('/etc/passwd')", RF_ESCRIPT,
         "invalid module name", 0, 0, 1},
        {"missing module", "require('nope')", RF_ESCRIPT,
         "case:1: module 'nope' not found in the plugin path", 0, 0, 1},
        {"module with a syntax error", "require('broken')", RF_ESCRIPT,
         "error loading module 'broken'", 0, 0, 1},
        {"module in bytecode", "require('bytecode')", RF_ESCRIPT,
         "attempt to load a binary chunk", 0, 0, 1},
        {"module requiring itself", "require('selfreq')", RF_ESCRIPT,
         "requires itself", 0, 0, 1},
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_globals_stay_per_tenant(void **state)
{
    struct rf_sandbox *a = make(0, 0, 1);
    struct rf_sandbox *b = make(0, 0, 1);
    char out[64], err[512];

    (void)state;
    assert_int_equal(run(a, "shared = 42 string.extra = 1 return shared", out,
                         sizeof(out), err, sizeof(err)),
                     0);
    assert_string_equal(out, "42");
    assert_int_equal(run(b, "return tostring(shared) .. tostring(string.extra)",
                         out, sizeof(out), err, sizeof(err)),
                     0);
    assert_string_equal(out, "nilnil");
    assert_int_equal(run(a, "return shared + string.extra", out, sizeof(out),
                         err, sizeof(err)),
                     0);
    assert_string_equal(out, "43");
    rf_sandbox_free(a);
    rf_sandbox_free(b);
}

static void test_run_file_reports(void **state)
{
    struct rf_sandbox *sb = make(0, 0, 0);
    lua_State *L = rf_sandbox_state(sb);
    char err[2048];
    int rc;

    (void)state;
    rc = rf_sandbox_run_file(sb, FIXTURES "/ok.lua", err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(lua_getfield(L, -1, "answer"), LUA_TNUMBER);
    assert_int_equal(lua_tointeger(L, -1), 42);
    lua_pop(L, 2);

    rc = rf_sandbox_run_file(sb, FIXTURES "/error.lua", err, sizeof(err));
    assert_int_equal(rc, RF_ESCRIPT);
    expect_contains("run_file error", err, "error.lua:3: boom");
    expect_contains("run_file traceback", err, "stack traceback:");
    expect_contains("run_file caller line", err, "error.lua:7:");

    rc = rf_sandbox_run_file(sb, FIXTURES "/binary.luac", err, sizeof(err));
    assert_int_equal(rc, RF_EPARSE);
    expect_contains("run_file binary", err, "attempt to load a binary chunk");

    rc = rf_sandbox_run_file(sb, FIXTURES "/missing.lua", err, sizeof(err));
    assert_int_equal(rc, -2); /* -ENOENT */
    expect_contains("run_file missing", err, "missing.lua");
    assert_int_equal(lua_gettop(L), 0);
    rf_sandbox_free(sb);
}

/* Loads src on the main thread and moves the function to a new thread,
 * which stays anchored on the main stack. */
static lua_State *new_coroutine(struct rf_sandbox *sb, const char *src)
{
    lua_State *L = rf_sandbox_state(sb);
    char err[512];
    lua_State *co;

    assert_int_equal(
        rf_sandbox_load(sb, src, strlen(src), "=co", err, sizeof(err)), 0);
    co = lua_newthread(L);
    lua_insert(L, -2);
    lua_xmove(L, co, 1);
    return co;
}

static void test_resume_api(void **state)
{
    static const char src[] = "local a = ...\n"
                              "local ok, b = pcall(coroutine.yield, a + 1)\n"
                              "local c = coroutine.yield(b * 2)\n"
                              "return a + b + c\n";
    struct rf_sandbox *sb = make(0, 0, 0);
    lua_State *co = new_coroutine(sb, src);
    char err[1024];
    int n = -1;

    (void)state;
    lua_pushinteger(co, 1);
    assert_int_equal(rf_sandbox_resume(sb, co, 1, &n, err, sizeof(err)),
                     RF_SANDBOX_YIELDED);
    assert_int_equal(n, 1);
    assert_int_equal(lua_tointeger(co, -1), 2);
    lua_pop(co, n);

    lua_pushinteger(co, 10);
    assert_int_equal(rf_sandbox_resume(sb, co, 1, &n, err, sizeof(err)),
                     RF_SANDBOX_YIELDED);
    assert_int_equal(lua_tointeger(co, -1), 20);
    lua_pop(co, n);

    lua_pushinteger(co, 100);
    assert_int_equal(rf_sandbox_resume(sb, co, 1, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(lua_tointeger(co, -1), 111);
    lua_pop(co, n);
    assert_int_equal(rf_sandbox_resume(sb, co, 0, &n, err, sizeof(err)),
                     RF_EINVAL);
    assert_false(rf_sandbox_tainted(sb));
    rf_sandbox_free(sb);
}

static void test_resume_budget(void **state)
{
    /* Each resume burns about 30 ms of CPU: more than the budget in total,
     * but within it per resume. */
    static const char steady[] = "for i = 1, 5 do\n"
                                 "    local t0 = os.clock()\n"
                                 "    while os.clock() - t0 < 0.03 do end\n"
                                 "    coroutine.yield(i)\n"
                                 "end\n"
                                 "return 'done'\n";
    static const char spin[] = "coroutine.yield()\nwhile true do end\n";
    static const char fails[] = "local x = ...\n"
                                "error('bad ' .. x)\n";
    struct rf_sandbox *sb = make(0, 0, 0);
    lua_State *co = new_coroutine(sb, steady);
    char err[2048];
    int n, rc;

    (void)state;
    for (int i = 1; i <= 5; i++) {
        rc = rf_sandbox_resume(sb, co, 0, &n, err, sizeof(err));
        if (rc != RF_SANDBOX_YIELDED) {
            fail_msg("resume %d: %s: %s", i, rf_err_name(rc), err);
        }
        assert_int_equal(lua_tointeger(co, -1), i);
        lua_pop(co, n);
    }
    assert_int_equal(rf_sandbox_resume(sb, co, 0, &n, err, sizeof(err)), 0);
    lua_pop(co, n);

    co = new_coroutine(sb, spin);
    assert_int_equal(rf_sandbox_resume(sb, co, 0, &n, err, sizeof(err)),
                     RF_SANDBOX_YIELDED);
    assert_int_equal(rf_sandbox_resume(sb, co, 0, &n, err, sizeof(err)),
                     RF_ELIMIT);
    expect_contains("resume spin", err, "co:2: " CPU_MSG);
    assert_true(rf_sandbox_tainted(sb));
    assert_int_equal(rf_sandbox_resume(sb, co, 0, &n, err, sizeof(err)),
                     RF_EINVAL);

    co = new_coroutine(sb, fails);
    lua_pushliteral(co, "input");
    assert_int_equal(rf_sandbox_resume(sb, co, 1, &n, err, sizeof(err)),
                     RF_ESCRIPT);
    expect_contains("resume error", err, "co:2: bad input");
    expect_contains("resume traceback", err, "stack traceback:");
    rf_sandbox_free(sb);
    another_tenant_works();
}

/* A script keeps references to the main thread and to a hook coroutine the
 * host has suspended, then tries to resume and close them. */
static void test_host_threads_are_off_limits(void **state)
{
    static const char keep_main[] = "main_thread = coroutine.running()";
    static const char hook[] = "waiting = coroutine.running()\n"
                               "local answer = coroutine.yield('io')\n"
                               "return 'got ' .. answer\n";
    static const char hijack[] =
        "local a = select(2, pcall(coroutine.resume, main_thread))\n"
        "local b = select(2, pcall(coroutine.resume, waiting, 'forged'))\n"
        "local c = select(2, pcall(coroutine.close, waiting))\n"
        "return a .. '|' .. b .. '|' .. c\n";
    struct rf_sandbox *sb = make(0, 0, 0);
    char out[1024], err[1024];
    lua_State *co, *thief;
    int n;

    (void)state;
    assert_int_equal(run(sb, keep_main, out, sizeof(out), err, sizeof(err)), 0);
    co = new_coroutine(sb, hook);
    assert_int_equal(rf_sandbox_resume(sb, co, 0, &n, err, sizeof(err)),
                     RF_SANDBOX_YIELDED);
    lua_pop(co, n);

    thief = new_coroutine(sb, hijack);
    assert_int_equal(rf_sandbox_resume(sb, thief, 0, &n, err, sizeof(err)), 0);
    value_text(thief, out, sizeof(out));
#define HOST_MSG                                                               \
    "a script cannot resume or close a coroutine that the host runs"
    assert_string_equal(out, HOST_MSG "|" HOST_MSG "|" HOST_MSG);
#undef HOST_MSG

    lua_pushliteral(co, "42");
    assert_int_equal(rf_sandbox_resume(sb, co, 1, &n, err, sizeof(err)), 0);
    value_text(co, out, sizeof(out));
    assert_string_equal(out, "got 42");
    rf_sandbox_free(sb);
}

static void test_pcall_on_a_thread(void **state)
{
    struct rf_sandbox *sb = make(0, 0, 0);
    lua_State *L = rf_sandbox_state(sb);
    lua_State *T = lua_newthread(L);
    char err[1024];
    static const char add[] = "local a, b = ... return a + b";
    static const char spin[] = "while true do end";

    (void)state;
    assert_int_equal(
        rf_sandbox_load(sb, add, strlen(add), "=add", err, sizeof(err)), 0);
    lua_xmove(L, T, 1);
    lua_pushinteger(T, 40);
    lua_pushinteger(T, 2);
    assert_int_equal(rf_sandbox_pcall_thread(sb, T, 2, 1, err, sizeof(err)), 0);
    assert_int_equal(lua_tointeger(T, -1), 42);
    lua_pop(T, 1);

    assert_int_equal(
        rf_sandbox_load(sb, spin, strlen(spin), "=spin", err, sizeof(err)), 0);
    lua_xmove(L, T, 1);
    assert_int_equal(rf_sandbox_pcall_thread(sb, T, 0, 0, err, sizeof(err)),
                     RF_ELIMIT);
    expect_contains("pcall on a thread", err, "spin:1: " CPU_MSG);
    assert_int_equal(lua_gettop(T), 0);
    rf_sandbox_free(sb);
}

static void test_memory_accounting(void **state)
{
    struct rf_sandbox *sb = make(8 * MIB, BIG_CPU, 0);
    size_t base = rf_sandbox_mem_used(sb);
    char out[64], err[512];

    (void)state;
    assert_true(base > 0 && base < 256 * 1024);
    /* string.rep builds in a buffer and then copies: 2 MiB needs 4 MiB. */
    assert_int_equal(run(sb, "big = string.rep('x', 2 << 20) return #big", out,
                         sizeof(out), err, sizeof(err)),
                     0);
    assert_string_equal(out, "2097152");
    assert_true(rf_sandbox_mem_used(sb) >= base + 2 * MIB);
    assert_int_equal(run(sb, "local t = {} for i = 1, 1e7 do t[i] = i end", out,
                         sizeof(out), err, sizeof(err)),
                     RF_ELIMIT);
    expect_contains("accounting", err, "memory limit of 8 MiB exceeded");
    assert_true(rf_sandbox_mem_used(sb) <= 8 * MIB);
    assert_int_equal(
        run(sb, "big = nil return 1", out, sizeof(out), err, sizeof(err)), 0);
    rf_sandbox_free(sb);
}

/* The stock library is the oracle for the pattern functions: the same
 * script runs in a bare state and in a sandbox, and must print the same. */
static const char pattern_oracle[] =
    "local function ser(...)\n"
    "    local t = table.pack(...)\n"
    "    for i = 1, t.n do t[i] = type(t[i]) .. ':' .. tostring(t[i]) end\n"
    "    return table.concat(t, ',')\n"
    "end\n"
    "local function try(f, ...)\n"
    "    local r = table.pack(pcall(f, ...))\n"
    "    if not r[1] then return 'ERR' end\n"
    "    return ser(table.unpack(r, 2, r.n))\n"
    "end\n"
    "local function all(s, p, init)\n"
    "    local out = {}\n"
    "    for a, b, c in s:gmatch(p, init) do\n"
    "        out[#out + 1] = ser(a, b, c)\n"
    "        if #out > 50 then break end\n"
    "    end\n"
    "    return table.concat(out, ';')\n"
    "end\n"
    "local subjects = {'hello world', '', 'aaa', '  trim me  ',\n"
    "    'key=value; k2=v2', '(a(b)c)', 'THE (quick) fox', 'a.b.c',\n"
    "    'x = 10, y = 20', '\\0a\\0b', 'caf\\195\\169', 'abc123def456',\n"
    "    '[[nested]]', '%d%%', 'the the cat', 'f(a,b)(c)', '\"q\" \"r\"'}\n"
    "local patterns = {'o', 'l+', 'l*', 'l-', 'l?', '^h', 'd$', '^$',\n"
    "    '%a+', '%A+', '%d+', '%s*(.-)%s*$', '(%w+)=(%w+)', '%b()',\n"
    "    '%f[%w]%w+', '()a()', '(a)(b)?', '[%a_][%w_]*', '[^%s]+',\n"
    "    '[a-c]+', '[]]', '[^]]+', '%.', '.-b', '(h)(e)(l)', '(%w+) %1',\n"
    "    '%%', 'x*', '', '[%d%%]+', '^(%s*)', '%z', '%x+', '%p', '%u%l',\n"
    "    '%g+', '%c', '[%]]', '[a-]', '[-a]', '%b\"\"', '%f[%z]', '.$',\n"
    "    '((a)b)', '(()', '%', '[a', '(', ')', '%b', '%f', '%1', '%0',\n"
    "    '[^%d%s]', 'a-$', '\\0', '%S+$', '(.)%1', '$a', 'a$b', '^^'}\n"
    "local out = {}\n"
    "local function add(x) out[#out + 1] = x end\n"
    "for _, s in ipairs(subjects) do\n"
    "    for _, p in ipairs(patterns) do\n"
    "        add(try(string.find, s, p))\n"
    "        add(try(string.find, s, p, 3))\n"
    "        add(try(string.find, s, p, -4))\n"
    "        add(try(string.find, s, p, 1, true))\n"
    "        add(try(string.match, s, p))\n"
    "        add(try(string.match, s, p, 2))\n"
    "        add(try(all, s, p))\n"
    "        add(try(all, s, p, 4))\n"
    "        add(try(string.gsub, s, p, '<%0>'))\n"
    "        add(try(string.gsub, s, p, '[%1]', 2))\n"
    "        add(try(string.gsub, s, p, function(a, b) return b or '#' end))\n"
    "        add(try(string.gsub, s, p, {a = 'A', l = false, h = 7}))\n"
    "    end\n"
    "end\n"
    "math.randomseed(7)\n"
    "local pieces = {'a', 'b', '%a', '%d', '.', '*', '+', '-', '?', '(',\n"
    "    ')', '[ab]', '[^a]', '^', '$', '%b()', '%f[%a]', '%1', '()', ' '}\n"
    "local letters = {'a', 'b', '1', ' ', '(', ')'}\n"
    "for i = 1, 4000 do\n"
    "    local p, s = {}, {}\n"
    "    for j = 1, math.random(1, 6) do\n"
    "        p[j] = pieces[math.random(#pieces)]\n"
    "    end\n"
    "    for j = 1, math.random(0, 12) do\n"
    "        s[j] = letters[math.random(#letters)]\n"
    "    end\n"
    "    p, s = table.concat(p), table.concat(s)\n"
    "    add(try(string.find, s, p))\n"
    "    add(try(all, s, p))\n"
    "    add(try(string.gsub, s, p, '%0%0'))\n"
    "end\n"
    "for i = 1, 300 do\n"
    "    local a, b = {}, {}\n"
    "    for j = 1, math.random(0, 200) do a[j] = math.random(1, 50) end\n"
    "    for j = 1, math.random(0, 200) do\n"
    "        b[j] = tostring(math.random(1, 1000))\n"
    "    end\n"
    "    table.sort(a)\n"
    "    table.sort(b, function(x, y) return x > y end)\n"
    "    add(table.concat(a, ' '))\n"
    "    add(table.concat(b, ' '))\n"
    "end\n"
    "return table.concat(out, '\\n')\n";

static void test_patterns_match_stock_lua(void **state)
{
    lua_State *stock = luaL_newstate();
    struct rf_sandbox *sb = make(0, 10000, 0);
    lua_State *L = rf_sandbox_state(sb);
    char err[2048];
    const char *want, *got;
    size_t wlen, glen, line = 1;
    int rc;

    (void)state;
    assert_non_null(stock);
    luaL_openlibs(stock);
    assert_int_equal(luaL_dostring(stock, pattern_oracle), LUA_OK);
    want = lua_tolstring(stock, -1, &wlen);

    rc = rf_sandbox_load(sb, pattern_oracle, strlen(pattern_oracle), "=oracle",
                         err, sizeof(err));
    assert_int_equal(rc, 0);
    rc = rf_sandbox_pcall(sb, 0, 1, err, sizeof(err));
    if (rc != 0) {
        fail_msg("oracle script failed in the sandbox: %s", err);
    }
    got = lua_tolstring(L, -1, &glen);
    for (size_t i = 0; i < wlen && i < glen; i++) {
        if (want[i] != got[i]) {
            const char *wl = want + i, *gl = got + i;

            while (wl > want && wl[-1] != '\n') {
                wl--;
                gl--;
            }
            fail_msg("pattern result %zu differs:\n stock:   %.200s\n "
                     "sandbox: %.200s",
                     line, wl, gl);
        }
        line += want[i] == '\n';
    }
    assert_int_equal(glen, wlen);
    assert_true(line > 20000);
    rf_sandbox_free(sb);
    lua_close(stock);
}

/* The budget timer is left running after a call. When it runs out between
 * calls (the thread does other work), the late signal must not stop the
 * next call, and the next call must still get its whole budget. */
static void test_budget_left_running_between_calls(void **state)
{
    struct rf_sandbox *sb = make(0, 20, 0);
    char out[256], err[2048];
    struct timespec t0, t;

    (void)state;
    assert_int_equal(run(sb, "return 1", out, sizeof(out), err, sizeof(err)),
                     0);
    assert_string_equal(out, "1");
    /* 60 ms of this thread's CPU outside any call: the 20 ms timer left
     * from the call above runs out meanwhile. */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    do {
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000000L + t.tv_nsec - t0.tv_nsec <
             60000000L);
    /* A call that needs about 10 ms of its 20 ms runs to the end. */
    if (run(sb,
            "local t0 = os.clock() while os.clock() - t0 < 0.010 do end "
            "return 2",
            out, sizeof(out), err, sizeof(err)) != 0) {
        fail_msg("stopped by a stale timer: %s", err);
    }
    assert_string_equal(out, "2");
    /* And the budget still stops a runaway one. */
    assert_int_equal(run(sb, "while true do end", out, sizeof(out), err,
                         sizeof(err)),
                     RF_ELIMIT);
    expect_contains("runaway", err, "cpu budget of 20 ms exceeded");
    rf_sandbox_free(sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_budget_cannot_be_escaped),
        cmocka_unit_test(test_cpu_budget_bounds_c_functions),
        cmocka_unit_test(test_memory_cap),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_error_values),
        cmocka_unit_test(test_coroutines),
        cmocka_unit_test(test_require),
        cmocka_unit_test(test_globals_stay_per_tenant),
        cmocka_unit_test(test_run_file_reports),
        cmocka_unit_test(test_resume_api),
        cmocka_unit_test(test_resume_budget),
        cmocka_unit_test(test_budget_left_running_between_calls),
        cmocka_unit_test(test_host_threads_are_off_limits),
        cmocka_unit_test(test_pcall_on_a_thread),
        cmocka_unit_test(test_memory_accounting),
        cmocka_unit_test(test_patterns_match_stock_lua),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* What the sandbox costs: CPU-heavy chunks timed in a bare lua_State, in a
 * sandbox whose budget is armed but never expires, and in a bare state with
 * a permanent count hook. Usage: sandbox_overhead [repetitions, default 7] */
#include "referee/error.h"
#include "referee/sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#define MAX_REPS 51

struct workload {
    const char *name;
    const char *src;
};

static const struct workload workloads[] = {
    {"arithmetic loop", "local s = 0\n"
                        "for i = 1, 30000000 do\n"
                        "    s = s + i % 7 * 3 // 2\n"
                        "    if s > 1e9 then s = 0 end\n"
                        "end\n"
                        "return s\n"},
    {"calls and tables", "local function f(a, b) return a * b + 1 end\n"
                         "local t = {}\n"
                         "for i = 1, 5000000 do\n"
                         "    t[i % 1000 + 1] = f(i, 3)\n"
                         "    local p = {i, i + 1}\n"
                         "end\n"
                         "return #t\n"},
    {"strings", "local n = 0\n"
                "for i = 1, 1000000 do\n"
                "    local s = 'item-' .. i\n"
                "    n = n + #s:upper() + #string.format('%d:%s', i, s)\n"
                "end\n"
                "return n\n"},
    {"patterns (own matcher)",
     "local line = 'alpha=1; beta=22; gamma=333; delta=4444'\n"
     "local n = 0\n"
     "for i = 1, 200000 do\n"
     "    for k, v in line:gmatch('(%a+)=(%d+)') do n = n + #k + #v end\n"
     "    n = n + #line:gsub('%s+', '') + (line:find('gamma', 1, true))\n"
     "end\n"
     "return n\n"},
};

static double thread_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)L;
    (void)ar;
}

/* Runs src once in a fresh bare state, with a count hook when asked. */
static double run_bare(const char *src, int hooked)
{
    lua_State *L = luaL_newstate();
    double t0, t;

    if (L == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    luaL_openlibs(L);
    if (hooked) {
        lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000);
    }
    t0 = thread_cpu_ms();
    if (luaL_loadbufferx(L, src, strlen(src), "=bench", "t") != LUA_OK ||
        lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "bare run failed: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    t = thread_cpu_ms() - t0;
    lua_close(L);
    return t;
}

/* Runs src once in a fresh sandbox with a budget that does not expire. */
static double run_sandbox(const char *src)
{
    struct rf_sandbox_limits lim = {0, 600000, NULL};
    struct rf_sandbox *sb = rf_sandbox_new(&lim, RF_SANDBOX_CONFIG);
    char err[1024];
    double t0, t;
    int rc;

    if (sb == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    t0 = thread_cpu_ms();
    rc = rf_sandbox_load(sb, src, strlen(src), "=bench", err, sizeof(err));
    if (rc == 0) {
        rc = rf_sandbox_pcall(sb, 0, 1, err, sizeof(err));
    }
    t = thread_cpu_ms() - t0;
    if (rc != 0) {
        fprintf(stderr, "sandbox run failed: %s: %s\n", rf_err_name(rc), err);
        exit(1);
    }
    rf_sandbox_free(sb);
    return t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Per-call cost of an empty function: lua_pcall against rf_sandbox_pcall,
 * which arms and disarms the CPU timer. */
static void empty_calls(int calls)
{
    struct rf_sandbox *sb = rf_sandbox_new(NULL, RF_SANDBOX_CONFIG);
    lua_State *S = rf_sandbox_state(sb);
    lua_State *L = luaL_newstate();
    char err[256];
    double t0, bare, sand;

    luaL_openlibs(L);
    t0 = thread_cpu_ms();
    for (int i = 0; i < calls; i++) {
        lua_getglobal(L, "type");
        lua_pushnil(L);
        (void)lua_pcall(L, 1, 0, 0);
    }
    bare = thread_cpu_ms() - t0;
    t0 = thread_cpu_ms();
    for (int i = 0; i < calls; i++) {
        lua_getglobal(S, "type");
        lua_pushnil(S);
        if (rf_sandbox_pcall(sb, 1, 0, err, sizeof(err)) != 0) {
            fprintf(stderr, "empty call failed: %s\n", err);
            exit(1);
        }
    }
    sand = thread_cpu_ms() - t0;
    printf("\nper call of type(nil), %d calls: lua_pcall %.2f us, "
           "rf_sandbox_pcall %.2f us (+%.2f us)\n",
           calls, bare * 1e3 / calls, sand * 1e3 / calls,
           (sand - bare) * 1e3 / calls);
    lua_close(L);
    rf_sandbox_free(sb);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    double bare[MAX_REPS], sand[MAX_REPS], hook[MAX_REPS];

    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: %s [repetitions 1..%d]\n", argv[0], MAX_REPS);
        return 2;
    }
    printf("thread CPU time of %d runs each, median (min), %s\n\n", reps,
           LUA_RELEASE);
    printf("%-24s %16s %16s %12s %16s %12s\n", "workload", "bare ms",
           "sandbox ms", "ratio", "count hook ms", "ratio");
    for (size_t w = 0; w < sizeof(workloads) / sizeof(workloads[0]); w++) {
        double b, s, h, bmin, smin, hmin;

        for (int r = 0; r < reps; r++) { /* interleaved against drift */
            bare[r] = run_bare(workloads[w].src, 0);
            sand[r] = run_sandbox(workloads[w].src);
            hook[r] = run_bare(workloads[w].src, 1);
        }
        b = median(bare, reps); /* sorts, so [0] is the minimum */
        s = median(sand, reps);
        h = median(hook, reps);
        bmin = bare[0];
        smin = sand[0];
        hmin = hook[0];
        printf("%-24s %7.1f (%6.1f) %7.1f (%6.1f) %5.3f (%5.3f) "
               "%7.1f (%6.1f) %5.3f (%5.3f)\n",
               workloads[w].name, b, bmin, s, smin, s / b, smin / bmin, h, hmin,
               h / b, hmin / bmin);
    }
    empty_calls(200000);
    return 0;
}

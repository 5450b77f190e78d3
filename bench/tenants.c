/* Benchmark of the script engine: start-up time and memory for many idle
 * tenants, and hook calls per second for a trivial milestone hook.
 *
 *     bench_tenants [N_TENANTS] [N_CALLS]
 *
 * Writes N tenant folders into a temporary directory, loads them all into
 * one engine, then calls one tenant's milestone hook N_CALLS times, one
 * after another, on the engine's loop. Prints one line of figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <curl/curl.h>

#include "referee/engine.h"

static const char tenant_lua[] =
    "return {\n"
    "  sources = { crm = { id = 'none' } },\n"
    "  cohort = function(c)\n"
    "    return c.Customer_Tier == 'Gold' and (c.NPS_Score or 0) >= 8\n"
    "  end,\n"
    "  milestone = function(record, referral)\n"
    "    if record.Stage == 'Closed Won' then\n"
    "      return { status = 'qualified', reason = 'deal won' }\n"
    "    end\n"
    "  end,\n"
    "}\n";

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Resident set size in KiB, from /proc/self/statm. */
static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return resident * 4;
}

static void write_tenants(const char *dir, int n)
{
    char path[512];

    for (int i = 0; i < n; i++) {
        FILE *f;

        snprintf(path, sizeof(path), "%s/t%04d", dir, i);
        mkdir(path, 0700);
        snprintf(path, sizeof(path), "%s/t%04d/tenant.lua", dir, i);
        f = fopen(path, "w");
        if (f == NULL) {
            exit(1);
        }
        fputs(tenant_lua, f);
        fclose(f);
    }
}

struct counter {
    long done, failed;
};

static void on_done(const struct rf_hook_result *res, void *arg)
{
    struct counter *c = arg;

    c->done++;
    c->failed += res->rc != 0 || strcmp(res->json, "null") == 0;
}

int main(int argc, char **argv)
{
    int ntenants = argc > 1 ? atoi(argv[1]) : 1000;
    long ncalls = argc > 2 ? atol(argv[2]) : 200000;
    static const char input[] =
        "[{\"id\":\"4876000000947556434\",\"Stage\":\"Closed Won\","
        "\"Amount\":23568.72},{\"code\":\"K7QM2XHT9PWA\"}]";
    struct rf_engine_opts o = {0};
    struct counter c = {0, 0};
    char dir[] = "/tmp/rf-bench-tenants-XXXXXX", cmd[128];
    struct rf_engine *e;
    double t0, t_load, t_calls;
    long rss0, rss1;
    size_t loaded;
    uv_loop_t loop;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (mkdtemp(dir) == NULL) {
        return 1;
    }
    write_tenants(dir, ntenants);
    uv_loop_init(&loop);
    o.loop = &loop;
    e = rf_engine_new(&o);
    rss0 = rss_kib();
    t0 = now_s();
    loaded = rf_engine_load_dir(e, dir);
    t_load = now_s() - t0;
    rss1 = rss_kib();

    t0 = now_s();
    for (long i = 0; i < ncalls; i++) {
        rf_engine_call(e, "t0000", "milestone", input, sizeof(input) - 1,
                       NULL, on_done, &c);
    }
    while (c.done < ncalls) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    t_calls = now_s() - t0;

    printf("tenants=%zu load_s=%.3f rss_per_tenant_kib=%.1f "
           "calls=%ld failed=%ld calls_per_s=%.0f us_per_call=%.2f\n",
           loaded, t_load, (double)(rss1 - rss0) / (double)loaded, c.done,
           c.failed, (double)ncalls / t_calls, t_calls * 1e6 / ncalls);
    rf_engine_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 && c.failed == 0 ? 0 : 1;
}

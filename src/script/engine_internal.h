/* Private to the engine's files: engine.c (tenants, their versions, the
 * engine's life) and engine_call.c (hook and plugin calls as coroutines,
 * their deadlines, results and rebuilds). */
#ifndef REFEREE_SCRIPT_ENGINE_INTERNAL_H
#define REFEREE_SCRIPT_ENGINE_INTERNAL_H

#include <stdint.h>

#include <uv.h>

#include "referee/engine.h"
#include "referee/sandbox.h"
#include "referee/tenant.h"
#include "referee/zoho.h"

#define BUCKETS 1024
#define SWEEP_MS 100
#define DEFAULT_WALL_MS 30000
#define DEFAULT_CPU_MS 50
#define IDLE_MAX 16 /* finished coroutines kept per version for reuse */
#define ERR_MAX 2048

/* One loaded version of a tenant's script. */
struct version {
    struct rf_sandbox *sb;
    struct rf_tenant *settings;
    int table_ref;      /* the returned settings table, in the registry */
    int calls;          /* calls running on this version */
    int retired;        /* replaced; freed when the last call ends */
    int idle[IDLE_MAX]; /* registry refs of finished coroutines to reuse */
    int nidle;
};

struct tenant_rt {
    struct tenant_rt *next; /* hash chain */
    char *id;
    char *dir;
    struct version *cur;
    struct rf_zoho *zoho; /* open while the settings have a zoho table */
    char zoho_conn[17];   /* the connection fingerprint it was opened with */
};

struct rf_call {
    struct rf_call *prev, *next;
    struct rf_engine *e;
    struct tenant_rt *t;
    struct version *v;
    lua_State *co;
    int co_ref;
    rf_engine_done_cb done;
    void *arg;
    int refs;
    int waiting;
    int finished;
    int want_text; /* the caller reads res->json (rf_engine_call) */
    unsigned log_lines; /* log.* lines written (api_log.c) */
    uint64_t deadline;
    uint64_t cpu_ns;
    char hook[64];
    char event[40];
    char module[136]; /* a plugin call's module; "" for a hook */
    char fn[32];      /* ... and its function */
};

#define NATIVES_MAX 8

/* A hook written in C ("@zoho.notify"), run instead of a script's. */
struct native {
    char name[32];
    rf_engine_native_fn fn;
    void *arg;
};

struct rf_engine {
    struct rf_engine_opts o;
    struct native natives[NATIVES_MAX];
    size_t nnatives;
    int freeing; /* rf_engine_free() runs: no new calls */
    uv_timer_t sweep;
    struct rf_http_client *http;
    struct rf_writer *writer;
    struct tenant_rt *buckets[BUCKETS];
    struct rf_call *calls;
    size_t active;
    struct rf_engine_stats stats;
};

/* The tenant with this id, or NULL. */
struct tenant_rt *rf__engine_find_tenant(const struct rf_engine *e,
                                         const char *id);

/* Frees a version that no call uses. Accepts NULL. */
void rf__engine_free_version(struct version *v);

/* Loads the tenant's files and puts the new version in place: for a
 * reload, or (`rebuild`) to replace a state a limit may have left
 * inconsistent. Returns 0 or an RF_E* code with a sentence in err. */
int rf__engine_install(struct rf_engine *e, const char *dir, const char *id,
                       int rebuild, char *err, size_t errlen);

/* Ends a call: reports its outcome, lets go of its coroutine and version. */
void rf__engine_finish(struct rf_call *c, int rc, const char *error,
                       const char *json, const cJSON *value);

#endif

/* A sandboxed Lua 5.4 state: safe libraries only, a memory cap, text-only
 * loading. Used for the daemon config, tenant scripts and plugins.
 *
 * Caveats: the state is not thread-safe; one thread at a time may use a
 * sandbox and its lua_State.
 */
#ifndef REFEREE_SANDBOX_H
#define REFEREE_SANDBOX_H

#include <stddef.h>

#include <lua.h>

/* Which optional facilities a sandbox gets. */
enum rf_sandbox_flags {
    RF_SANDBOX_CONFIG = 0,      /* config files: base, string, table, math */
    RF_SANDBOX_REQUIRE = 1 << 0 /* a `require` restricted to plugin_path */
};

struct rf_sandbox_limits {
    size_t mem_max;        /* bytes the state may hold; 0 means 32 MiB */
    unsigned cpu_ms;       /* budget for one rf_sandbox_pcall; 0 = 50 ms */
    const char *const *plugin_path; /* NULL-terminated folders; may be NULL */
};

struct rf_sandbox;

/* Makes a new sandbox. `limits` may be NULL for the defaults; its
 * plugin_path is borrowed and must outlive the sandbox. Returns NULL when
 * memory runs out. Caller owns the result; free with rf_sandbox_free(). */
struct rf_sandbox *rf_sandbox_new(const struct rf_sandbox_limits *limits,
                                  enum rf_sandbox_flags flags);

/* Frees the sandbox and its state. Accepts NULL. */
void rf_sandbox_free(struct rf_sandbox *sb);

/* Borrowed; valid until rf_sandbox_free(). */
lua_State *rf_sandbox_state(struct rf_sandbox *sb);

/* Bytes the state holds now. */
size_t rf_sandbox_mem_used(const struct rf_sandbox *sb);

/* Loads `path` as text (never bytecode) and runs it with the budget, leaving
 * its first result on the stack. On failure writes "file:line: cause" into
 * `err` (NUL-terminated, truncated to errlen) and returns RF_EPARSE (syntax),
 * RF_ESCRIPT (runtime error), RF_ELIMIT (memory or time) or -errno (file). */
int rf_sandbox_run_file(struct rf_sandbox *sb, const char *path, char *err,
                        size_t errlen);

/* Calls the function below `nargs` arguments on the stack like lua_pcall,
 * under the time budget and memory cap. On failure pops the error, writes
 * its text with a traceback into `err` and returns RF_ESCRIPT or RF_ELIMIT.
 */
int rf_sandbox_pcall(struct rf_sandbox *sb, int nargs, int nresults,
                     char *err, size_t errlen);

#endif

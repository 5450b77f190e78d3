/* A sandboxed Lua 5.4 state for one tenant, one plugin set or one config
 * file: an allow-list of libraries, a memory cap, a CPU budget per call that
 * scripts cannot catch, and text-only loading. docs/sandbox.md describes
 * what scripts see.
 *
 * Caveats:
 * - A sandbox and every thread of its lua_State belong to one OS thread at a
 *   time. Different sandboxes may run on different threads at once.
 * - The CPU budget is a per-thread CPU-time timer that delivers the real-time
 *   signal SIGRTMIN+4 to the calling thread. The first call installs a
 *   process-wide handler for it; nothing else may use that signal, and the
 *   calling thread must not block it.
 * - The memory cap and the budget hold only while a call of this module runs
 *   (load, run_file, pcall, resume). Values the host pushes between calls are
 *   never refused; run script functions only through this module.
 * - After RF_ELIMIT the state may be half-updated (rf_sandbox_tainted() says
 *   so); the owner should free it and build a new one.
 * - While a call runs, a call on a different sandbox from the same thread
 *   fails with RF_EBUSY; a nested call on the same sandbox shares the outer
 *   call's budget.
 */
#ifndef REFEREE_SANDBOX_H
#define REFEREE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* rf_sandbox_resume() returns this when the coroutine yielded. */
#define RF_SANDBOX_YIELDED 1

/* Which optional facilities a sandbox gets. Both kinds get the safe base
 * functions, string, table, math, utf8, coroutine and os.time/clock/date/
 * difftime. */
enum rf_sandbox_flags {
    RF_SANDBOX_CONFIG = 0,      /* config files: nothing beyond that set */
    RF_SANDBOX_REQUIRE = 1 << 0 /* plus a `require` limited to plugin_path */
};

struct rf_sandbox_limits {
    size_t mem_max;                 /* bytes the state may hold; 0 = 32 MiB */
    unsigned cpu_ms;                /* CPU budget of one call; 0 = 50 ms */
    const char *const *plugin_path; /* NULL-terminated folders; may be NULL */
};

struct rf_sandbox;

/* Makes a new sandbox. `limits` may be NULL for the defaults; its
 * plugin_path array and strings are borrowed and must outlive the sandbox.
 * Returns NULL when memory runs out. Caller owns the result; free with
 * rf_sandbox_free(). Any thread may call it. */
struct rf_sandbox *rf_sandbox_new(const struct rf_sandbox_limits *limits,
                                  enum rf_sandbox_flags flags);

/* Frees the sandbox and its state. Accepts NULL. Not during a call. */
void rf_sandbox_free(struct rf_sandbox *sb);

/* The main thread of the state. Borrowed; valid until rf_sandbox_free(). */
lua_State *rf_sandbox_state(struct rf_sandbox *sb);

/* Bytes the state holds now. */
size_t rf_sandbox_mem_used(const struct rf_sandbox *sb);

/* True once a call of this sandbox ran into its memory cap or CPU budget:
 * the script stopped at an arbitrary instruction, so its globals may be
 * inconsistent. Stays true until the sandbox is freed. */
bool rf_sandbox_tainted(const struct rf_sandbox *sb);

/* Writes "src:line:" of the innermost Lua function at or above stack level
 * `level` of `L` (a running or suspended thread) into buf, or an empty
 * string when there is none. For messages about where a script stopped. */
void rf_sandbox_where(lua_State *L, int level, char *buf, size_t len);

/* Raises the limit error in `L` (a thread of a sandbox) when the running
 * call has exceeded its CPU budget or memory cap; returns otherwise. Count
 * hooks never run inside C, so a C function exposed to scripts that loops
 * over a size the script controls calls this on every step. Call it only
 * from such a C function, on the thread running it. */
void rf_sandbox_check(lua_State *L);

/* Compiles `len` bytes of Lua source (never bytecode) under the cap and the
 * budget and pushes the resulting function on the main thread. `name` is the
 * chunk name as in lua_load ("@file.lua" or "=label"); borrowed. On failure
 * pushes nothing, writes the reason into `err` (NUL-terminated, truncated to
 * errlen; err may be NULL) and returns RF_EPARSE (syntax, binary chunk),
 * RF_ELIMIT (memory or time), RF_EBUSY or -errno (CPU timer). */
int rf_sandbox_load(struct rf_sandbox *sb, const char *chunk, size_t len,
                    const char *name, char *err, size_t errlen);

/* Loads `path` as text (never bytecode) and runs it with the budget, leaving
 * its first result on the stack. On failure writes "file:line: cause" into
 * `err` (NUL-terminated, truncated to errlen) and returns RF_EPARSE (syntax),
 * RF_ESCRIPT (runtime error), RF_ELIMIT (memory or time), RF_ETOOBIG (file
 * larger than the memory cap), RF_EBUSY or -errno (file, CPU timer). */
int rf_sandbox_run_file(struct rf_sandbox *sb, const char *path, char *err,
                        size_t errlen);

/* Calls the function below `nargs` arguments on the main thread's stack like
 * lua_pcall, under the time budget and memory cap. On failure pops the
 * function and arguments, writes the error text ("file:line: message" and a
 * stack traceback) into `err` and returns RF_ESCRIPT or RF_ELIMIT (also when
 * the script caught the limit error and returned normally), RF_EBUSY or
 * -errno (CPU timer). */
int rf_sandbox_pcall(struct rf_sandbox *sb, int nargs, int nresults, char *err,
                     size_t errlen);

/* Like rf_sandbox_pcall() on `L`, which is the main thread or a thread made
 * with lua_newthread() on it that is not suspended in a yield. `L` is
 * borrowed. Returns RF_EINVAL, leaving the stack alone, when `L` is not of
 * this sandbox, is suspended or holds fewer than nargs + 1 values. */
int rf_sandbox_pcall_thread(struct rf_sandbox *sb, lua_State *L, int nargs,
                            int nresults, char *err, size_t errlen);

/* Resumes coroutine `co` (a lua_newthread() thread of this sandbox, with its
 * function and `nargs` arguments pushed, or suspended in a yield with
 * `nargs` values pushed) like lua_resume, under a fresh time budget and the
 * memory cap. Returns 0 when the coroutine finished or RF_SANDBOX_YIELDED
 * when it yielded, with *nresults values on top of co's stack for the caller
 * to pop. On failure writes "file:line: message" and co's traceback into
 * `err`, closes co's pending to-be-closed variables, leaves co dead and
 * returns RF_ESCRIPT, RF_ELIMIT, RF_EINVAL (co cannot be resumed), RF_EBUSY
 * or -errno (CPU timer). `co` is borrowed; the caller keeps it anchored. */
int rf_sandbox_resume(struct rf_sandbox *sb, lua_State *co, int nargs,
                      int *nresults, char *err, size_t errlen);

/* CPU time the last call or resume used, in nanoseconds, as measured by
 * its budget timer (the whole budget when the budget ran out). Valid only
 * right after that call returned, on the same thread: the timer keeps
 * counting the thread's CPU time until the next call re-arms it. */
uint64_t rf_sandbox_last_cpu_ns(const struct rf_sandbox *sb);

#endif

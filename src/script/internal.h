/* Private to the sandbox files of src/script: the sandbox object, the CPU
 * budget and the safe library replacements. */
#ifndef REFEREE_SCRIPT_INTERNAL_H
#define REFEREE_SCRIPT_INTERNAL_H

#include "referee/sandbox.h"

#include <signal.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include <lua.h>

/* The limit that stopped the current call, if any. */
enum rf__sandbox_limit {
    RF__LIMIT_NONE = 0,
    RF__LIMIT_CPU = 1,
    RF__LIMIT_MEM = 2
};

/* Threads that may run script code during a call: the host's thread plus
 * every coroutine resumed inside it. Lua refuses more than 200 nested C
 * calls, so nesting never legitimately reaches this. */
#define RF__SANDBOX_CHAIN_MAX 256

/* Size of the pieces a chunk is fed to the parser in, between budget
 * checks. */
#define RF__SANDBOX_LOAD_PIECE 4096

struct rf_sandbox {
    lua_State *L;
    unsigned flags;
    unsigned cpu_ms;
    const char *const *plugin_path;
    size_t mem_max;
    size_t mem_used;
    size_t mem_reserve; /* extra room to report a memory error in */
    int enforce;        /* > 0: the memory cap applies */
    int ncalls;         /* nesting depth of calls of this module */

    /* The last refused growth, until we know whether Lua retries it after
     * an emergency collection. */
    struct {
        int set;
        const void *ptr;
        size_t osize;
        size_t nsize;
    } refused;

    /* Written by the CPU timer's signal handler. */
    volatile sig_atomic_t limit;   /* enum rf__sandbox_limit */
    volatile sig_atomic_t tainted; /* a limit stopped some call */
    volatile sig_atomic_t depth;   /* used entries of chain */
    lua_State *volatile chain[RF__SANDBOX_CHAIN_MAX];
};

/* The sandbox that owns `L` (any of its threads). */
struct rf_sandbox *rf__sandbox_of(lua_State *L);

/* Raises the current limit's error ("src:line: cpu budget of 50 ms
 * exceeded") in `L`. */
noreturn void rf__sandbox_raise_limit(lua_State *L, struct rf_sandbox *sb);

/* Raises the limit error when a limit stopped the current call. C functions
 * that loop call it on every step, since count hooks never run in C. */
static inline void rf__sandbox_check(lua_State *L, struct rf_sandbox *sb)
{
    if (sb->limit != RF__LIMIT_NONE) {
        rf__sandbox_raise_limit(L, sb);
    }
}

/* Writes "src:line:" of the innermost Lua function at or above stack level
 * `level` of `L` into buf, or an empty string when there is none. */
void rf__sandbox_where(lua_State *L, int level, char *buf, size_t len);

/* Writes the limit's message ("memory limit of 32 MiB exceeded") into buf. */
void rf__sandbox_limit_text(const struct rf_sandbox *sb, int limit, char *buf,
                            size_t len);

/* Records that `limit` stopped the current call and makes every thread in
 * the chain fail on its next instruction. Async-signal-safe. */
void rf__sandbox_expire(struct rf_sandbox *sb, int limit);

/* Arms the calling thread's CPU timer for one call of `sb`. Returns 0,
 * RF_EBUSY (another sandbox's call runs on this thread) or -errno. */
int rf__sandbox_budget_start(struct rf_sandbox *sb);

/* Ends the budget of the current call (the timer runs on until the next
 * start re-arms it; a late expiry finds no call and is ignored). */
void rf__sandbox_budget_stop(struct rf_sandbox *sb);

/* CPU time used since the budget was last armed (right after a call:
 * what that call used). */
uint64_t rf__sandbox_budget_used_ns(const struct rf_sandbox *sb);

/* Adds `T` to the chain of threads that get the limit hook. Returns 0 or
 * RF_ELIMIT when the chain is full. */
int rf__sandbox_push_thread(struct rf_sandbox *sb, lua_State *T);

/* Removes the newest chain entry and clears its hook when `clear`. */
void rf__sandbox_pop_thread(struct rf_sandbox *sb, int clear);

/* lua_load for text only, fed in pieces with a budget check between them.
 * Returns a lua_load status; on failure the message is on the stack. */
int rf__sandbox_load_text(lua_State *L, const char *chunk, size_t len,
                          const char *name);

/* Opens the allowed libraries into the globals of `L` according to the
 * RF_SANDBOX_* flags. Raises on failure; call it protected. */
void rf__sandbox_open_libs(lua_State *L, unsigned flags);

/* Library builders; each leaves one table on the stack. */
void rf__sandbox_open_string(lua_State *L);
void rf__sandbox_open_table(lua_State *L);
void rf__sandbox_open_coroutine(lua_State *L);

/* Marks the thread given as light userdata argument 1 as run by the host,
 * so scripts cannot resume or close it. A lua_CFunction; call it
 * protected. */
int rf__sandbox_mark_host(lua_State *L);

/* Pushes the restricted `require` function. */
void rf__sandbox_push_require(lua_State *L);

/* The pattern functions with budget checks: string.find, match, gmatch and
 * gsub. */
int rf__sandbox_str_find(lua_State *L);
int rf__sandbox_str_match(lua_State *L);
int rf__sandbox_str_gmatch(lua_State *L);
int rf__sandbox_str_gsub(lua_State *L);

#endif

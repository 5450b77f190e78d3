/* Sandboxed Lua states: the capped allocator, the bracket that arms the CPU
 * budget around every call, and error reports with file, line and
 * traceback. */
#include "referee/sandbox.h"
#include "internal.h"
#include "referee/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#define DEFAULT_MEM_MAX ((size_t)32 << 20)
#define DEFAULT_CPU_MS 50u
#define RESERVE_MIN ((size_t)64 << 10)
#define RESERVE_MAX ((size_t)1 << 20)

/* Registry slots the message handler fills for the report. */
static const char where_key = 'w';
static const char traceback_key = 't';

/* Error text written into the caller's buffer, never through Lua. */
struct out {
    char *buf;
    size_t len;
    size_t used;
};

struct rf_sandbox *rf__sandbox_of(lua_State *L)
{
    void *ud = NULL;

    (void)lua_getallocf(L, &ud);
    return ud;
}

/* Limitation: the cap holds only while a call runs (enforce > 0). Host
 * code that pushes values between calls is never refused, because a
 * refusal outside a protected call would be a panic; its memory still
 * counts towards mem_used. The fix, if hosts ever push tenant-sized data,
 * is to push it inside rf_sandbox_pcall. */
static int fits(const struct rf_sandbox *sb, size_t grow)
{
    size_t cap = sb->mem_max;

    if (sb->enforce == 0 ||
        (sb->mem_used <= cap && grow <= cap - sb->mem_used)) {
        return 1;
    }
    if (sb->limit == RF__LIMIT_MEM) {
        cap += sb->mem_reserve; /* room to raise and report the error */
    }
    return sb->mem_used <= cap && grow <= cap - sb->mem_used;
}

/* Decides a growth request. Lua retries a refused request once after an
 * emergency collection; a refusal that is not retried (lauxlib buffers) or
 * fails again is final and stops the call. */
static int grant(struct rf_sandbox *sb, const void *ptr, size_t osize,
                 size_t nsize, size_t grow)
{
    if (sb->refused.set) {
        int retry = sb->refused.ptr == ptr && sb->refused.osize == osize &&
                    sb->refused.nsize == nsize;

        sb->refused.set = 0;
        if (!retry) {
            rf__sandbox_expire(sb, RF__LIMIT_MEM);
        } else if (!fits(sb, grow)) {
            rf__sandbox_expire(sb, RF__LIMIT_MEM);
            return 0;
        }
    }
    if (fits(sb, grow)) {
        return 1;
    }
    sb->refused.set = 1;
    sb->refused.ptr = ptr;
    sb->refused.osize = osize;
    sb->refused.nsize = nsize;
    return 0;
}

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct rf_sandbox *sb = ud;
    size_t old = ptr != NULL ? osize : 0; /* else osize is a type tag */
    void *p;

    if (nsize == 0) {
        free(ptr);
        sb->mem_used -= old;
        return NULL;
    }
    if (nsize > old && (sb->refused.set || !fits(sb, nsize - old)) &&
        !grant(sb, ptr, osize, nsize, nsize - old)) {
        return NULL;
    }
    p = realloc(ptr, nsize);
    if (p == NULL) {
        return nsize <= old ? ptr : NULL; /* never fail a shrink */
    }
    sb->mem_used = sb->mem_used - old + nsize;
    return p;
}

/* A refusal nobody retried by the end of a step was final. */
static void settle_refusal(struct rf_sandbox *sb)
{
    if (sb->refused.set) {
        sb->refused.set = 0;
        rf__sandbox_expire(sb, RF__LIMIT_MEM);
    }
}

static int on_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);

    fprintf(stderr, "referee: lua panic: %s\n", msg ? msg : "?");
    abort();
}

static int open_protected(lua_State *L)
{
    rf__sandbox_open_libs(L, (unsigned)lua_tointeger(L, 1));
    return 0;
}

struct rf_sandbox *rf_sandbox_new(const struct rf_sandbox_limits *limits,
                                  enum rf_sandbox_flags flags)
{
    struct rf_sandbox *sb = calloc(1, sizeof(*sb));

    if (sb == NULL) {
        return NULL;
    }
    sb->mem_max = limits && limits->mem_max ? limits->mem_max : DEFAULT_MEM_MAX;
    sb->cpu_ms = limits && limits->cpu_ms ? limits->cpu_ms : DEFAULT_CPU_MS;
    sb->plugin_path = limits ? limits->plugin_path : NULL;
    sb->flags = (unsigned)flags;
    sb->mem_reserve = sb->mem_max / 8;
    if (sb->mem_reserve < RESERVE_MIN) {
        sb->mem_reserve = RESERVE_MIN;
    } else if (sb->mem_reserve > RESERVE_MAX) {
        sb->mem_reserve = RESERVE_MAX;
    }
    sb->L = lua_newstate(sb_alloc, sb);
    if (sb->L != NULL) {
        /* Threads copy the main thread's extra space, which the host uses
         * to find a thread's hook call: it starts empty. */
        memset(lua_getextraspace(sb->L), 0, LUA_EXTRASPACE);
    }
    if (sb->L == NULL) {
        goto fail;
    }
    lua_atpanic(sb->L, on_panic);
    lua_pushcfunction(sb->L, open_protected);
    lua_pushinteger(sb->L, (lua_Integer)flags);
    if (lua_pcall(sb->L, 1, 0, 0) != LUA_OK) {
        goto fail;
    }
    return sb;
fail:
    rf_sandbox_free(sb);
    return NULL;
}

void rf_sandbox_free(struct rf_sandbox *sb)
{
    if (sb == NULL) {
        return;
    }
    if (sb->L != NULL) {
        lua_close(sb->L);
    }
    free(sb);
}

lua_State *rf_sandbox_state(struct rf_sandbox *sb)
{
    return sb->L;
}

size_t rf_sandbox_mem_used(const struct rf_sandbox *sb)
{
    return sb->mem_used;
}

void rf_sandbox_where(lua_State *L, int level, char *buf, size_t len)
{
    rf__sandbox_where(L, level, buf, len);
}

void rf_sandbox_check(lua_State *L)
{
    rf__sandbox_check(L, rf__sandbox_of(L));
}

bool rf_sandbox_tainted(const struct rf_sandbox *sb)
{
    return sb->tainted != 0;
}

static void out_add(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out_add(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->buf == NULL || o->len == 0 || o->used + 1 >= o->len) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->used, o->len - o->used, fmt, ap);
    va_end(ap);
    if (n > 0) {
        o->used +=
            (size_t)n < o->len - o->used ? (size_t)n : o->len - o->used - 1;
    }
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    struct out o = {err, errlen, 0};

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    out_add(&o, "%s", msg);
}

static void clear_report_slots(lua_State *L)
{
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &where_key);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &traceback_key);
}

/* Starts a call that runs script code on thread `T`: arms the budget (for
 * the outermost call) and turns the memory cap on. */
static int call_enter(struct rf_sandbox *sb, lua_State *T)
{
    int rc;

    if (sb->ncalls == 0) {
        rc = rf__sandbox_budget_start(sb);
        if (rc != 0) {
            return rc;
        }
        sb->refused.set = 0;
    }
    rc = rf__sandbox_push_thread(sb, T);
    if (rc != 0) {
        if (sb->ncalls == 0) {
            rf__sandbox_budget_stop(sb);
        }
        return rc;
    }
    sb->ncalls++;
    sb->enforce++;
    return 0;
}

/* Ends a call. After a limit hit the garbage of the runaway script is
 * collected at once; no script finalizer can run, as __gc is refused. */
static void call_leave(struct rf_sandbox *sb)
{
    rf__sandbox_pop_thread(sb, sb->ncalls == 1);
    sb->enforce--;
    if (--sb->ncalls > 0) {
        return;
    }
    rf__sandbox_budget_stop(sb);
    if (sb->limit != RF__LIMIT_NONE) {
        sb->tainted = 1;
        sb->limit = RF__LIMIT_NONE;
        lua_gc(sb->L, LUA_GCCOLLECT);
    }
}

static int enter_failed(int rc, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "cannot start sandbox call: %s", rf_strerror(rc));
    }
    return rc;
}

/* Message handler of every call: records where the error happened and the
 * traceback while the stack is still there. Runs no script code. */
static int on_error(lua_State *L)
{
    char at[LUA_IDSIZE + 16];

    rf__sandbox_where(L, 1, at, sizeof(at));
    lua_pushstring(L, at);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &where_key);
    luaL_traceback(L, L, NULL, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &traceback_key);
    lua_settop(L, 1);
    return 1;
}

/* Turns any error value into a string; __tostring runs under the budget. */
static int describe(lua_State *L)
{
    int t = lua_type(L, 1);

    if (t == LUA_TNUMBER || luaL_getmetafield(L, 1, "__tostring")) {
        luaL_tolstring(L, 1, NULL);
        return 1;
    }
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "message");
        if (lua_rawget(L, 1) == LUA_TSTRING) {
            return 1;
        }
    }
    lua_pushfstring(L, "error object is a %s value", luaL_typename(L, 1));
    return 1;
}

/* Writes the message of the error value at `idx` into o. */
static void describe_error(lua_State *L, int idx, struct out *o)
{
    int t = lua_type(L, idx);

    if (t == LUA_TSTRING) {
        out_add(o, "%s", lua_tostring(L, idx));
        return;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &where_key);
    if (lua_type(L, -1) == LUA_TSTRING && *lua_tostring(L, -1) != '\0') {
        out_add(o, "%s ", lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, describe);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
        out_add(o, "%s", lua_tostring(L, -1));
    } else {
        out_add(o, "error object is a %s value", lua_typename(L, t));
    }
    lua_pop(L, 1);
}

/* Reports the error value on top of `L` (status from lua_pcall, lua_load
 * or lua_resume), pops it and returns the RF_E* code. A limit hit wins
 * over whatever error the script turned it into. */
static int report(struct rf_sandbox *sb, lua_State *L, int status, char *err,
                  size_t errlen)
{
    struct out o = {err, errlen, 0};
    int idx = lua_gettop(L);
    char text[64];
    int rc;

    set_err(err, errlen, "");
    settle_refusal(sb);
    if (sb->limit == RF__LIMIT_NONE && status == LUA_ERRMEM) {
        rf__sandbox_expire(sb, RF__LIMIT_MEM);
    }
    (void)lua_checkstack(L, 4);
    if (sb->limit == RF__LIMIT_NONE) {
        describe_error(L, idx, &o);
        settle_refusal(sb);
    }
    if (sb->limit != RF__LIMIT_NONE) { /* also when __tostring ran over */
        rf__sandbox_limit_text(sb, sb->limit, text, sizeof(text));
        o.used = 0;
        if (lua_type(L, idx) == LUA_TSTRING &&
            strstr(lua_tostring(L, idx), text) != NULL) {
            out_add(&o, "%s", lua_tostring(L, idx));
        } else {
            /* A memory error skips the message handler; the failed
             * coroutine's frame (recorded by trace_thread) says where. */
            lua_rawgetp(L, LUA_REGISTRYINDEX, &where_key);
            if (lua_type(L, -1) == LUA_TSTRING &&
                *lua_tostring(L, -1) != '\0') {
                out_add(&o, "%s ", lua_tostring(L, -1));
            }
            lua_pop(L, 1);
            out_add(&o, "%s", text);
        }
        rc = RF_ELIMIT;
    } else {
        rc = status == LUA_ERRSYNTAX ? RF_EPARSE : RF_ESCRIPT;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &traceback_key);
    if (lua_type(L, -1) == LUA_TSTRING) {
        out_add(&o, "\n%s", lua_tostring(L, -1));
    }
    lua_settop(L, idx - 1);
    clear_report_slots(L);
    return rc;
}

/* Reports a limit hit of a call that otherwise ended normally. */
static int report_limit(struct rf_sandbox *sb, lua_State *L, char *err,
                        size_t errlen)
{
    lua_pushnil(L);
    return report(sb, L, LUA_ERRRUN, err, errlen);
}

struct piece_reader {
    const char *p;
    size_t left;
    struct rf_sandbox *sb;
};

/* Feeds the parser in pieces; between pieces the budget is checked, as the
 * parser is C code that no hook interrupts. */
static const char *read_piece(lua_State *L, void *ud, size_t *size)
{
    struct piece_reader *r = ud;
    const char *p = r->p;

    rf__sandbox_check(L, r->sb);
    if (r->left == 0) {
        *size = 0;
        return NULL;
    }
    *size = r->left < RF__SANDBOX_LOAD_PIECE ? r->left : RF__SANDBOX_LOAD_PIECE;
    r->p += *size;
    r->left -= *size;
    return p;
}

int rf__sandbox_load_text(lua_State *L, const char *chunk, size_t len,
                          const char *name)
{
    struct piece_reader r = {chunk, len, rf__sandbox_of(L)};

    return lua_load(L, read_piece, &r, name, "t");
}

int rf_sandbox_load(struct rf_sandbox *sb, const char *chunk, size_t len,
                    const char *name, char *err, size_t errlen)
{
    lua_State *L = sb->L;
    int rc, status;

    set_err(err, errlen, "");
    rc = call_enter(sb, L);
    if (rc != 0) {
        return enter_failed(rc, err, errlen);
    }
    clear_report_slots(L);
    status = rf__sandbox_load_text(L, chunk, len, name);
    settle_refusal(sb);
    if (status == LUA_OK && sb->limit != RF__LIMIT_NONE) {
        lua_pop(L, 1);
        rc = report_limit(sb, L, err, errlen);
    } else if (status != LUA_OK) {
        rc = report(sb, L, status, err, errlen);
        rc = rc == RF_ELIMIT ? rc : RF_EPARSE;
    }
    call_leave(sb);
    return rc;
}

/* Reads a whole regular file of at most `max` bytes. Caller owns the
 * result. Opened without blocking: a FIFO in a tenant folder would
 * otherwise hold the loading thread until someone writes to it. */
static char *read_file(const char *path, size_t max, size_t *len, int *rc)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
    struct stat st;
    char *buf = NULL;

    if (f == NULL) {
        *rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0) {
        *rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        *rc = RF_ENOTFILE;
        goto out;
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > max) {
        *rc = RF_ETOOBIG;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        *rc = RF_ENOMEM;
        goto out;
    }
    *len = fread(buf, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        *rc = RF_EIO;
        free(buf);
        buf = NULL;
        goto out;
    }
    *rc = 0;
out:
    fclose(f);
    return buf;
}

/* Prefixes a limit message that carries no location with the file: a
 * memory error unwinds the stack before any handler can see the line. */
static void name_file(const char *path, char *err, size_t errlen)
{
    char *copy = strdup(err);

    if (copy != NULL) {
        snprintf(err, errlen, "%s: %s while running the file", path,
                 copy);
        free(copy);
    }
}

int rf_sandbox_run_file(struct rf_sandbox *sb, const char *path, char *err,
                        size_t errlen)
{
    char chunkname[512];
    size_t len = 0;
    int rc;
    char *src = read_file(path, sb->mem_max, &len, &rc);

    if (src == NULL) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "%s: %s", path, rf_strerror(rc));
        }
        return rc;
    }
    snprintf(chunkname, sizeof(chunkname), "@%s", path);
    rc = rf_sandbox_load(sb, src, len, chunkname, err, errlen);
    free(src);
    if (rc != 0) {
        return rc;
    }
    rc = rf_sandbox_pcall(sb, 0, 1, err, errlen);
    if (rc == RF_ELIMIT && err != NULL && errlen > 0 &&
        strcspn(err, ":\n") == strcspn(err, "\n")) {
        name_file(path, err, errlen);
    }
    return rc;
}

/* Records that the host runs thread T (see rf__sandbox_mark_host). Runs
 * before the call, outside the memory cap. */
static int mark_host(struct rf_sandbox *sb, lua_State *T)
{
    lua_State *L = sb->L;

    if (T == L) {
        return 0; /* marked when the state was made */
    }
    if (!lua_checkstack(L, 2)) {
        return RF_ENOMEM;
    }
    lua_pushcfunction(L, rf__sandbox_mark_host);
    lua_pushlightuserdata(L, T);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_pop(L, 1);
        return RF_ENOMEM;
    }
    return 0;
}

int rf_sandbox_pcall(struct rf_sandbox *sb, int nargs, int nresults, char *err,
                     size_t errlen)
{
    return rf_sandbox_pcall_thread(sb, sb->L, nargs, nresults, err, errlen);
}

int rf_sandbox_pcall_thread(struct rf_sandbox *sb, lua_State *L, int nargs,
                            int nresults, char *err, size_t errlen)
{
    int func = lua_gettop(L) - nargs;
    int rc, status;

    set_err(err, errlen, "");
    if (nargs < 0 || func < 1 || rf__sandbox_of(L) != sb ||
        lua_status(L) != LUA_OK || !lua_checkstack(L, 4)) {
        set_err(err, errlen, "thread cannot run a call now");
        return RF_EINVAL;
    }
    rc = mark_host(sb, L);
    if (rc == 0) {
        rc = call_enter(sb, L);
    }
    if (rc != 0) {
        lua_settop(L, func - 1);
        return enter_failed(rc, err, errlen);
    }
    clear_report_slots(L);
    lua_pushcfunction(L, on_error);
    lua_insert(L, func);
    status = lua_pcall(L, nargs, nresults, func);
    lua_remove(L, func);
    settle_refusal(sb);
    if (status != LUA_OK) {
        rc = report(sb, L, status, err, errlen);
    } else if (sb->limit != RF__LIMIT_NONE) {
        lua_settop(L, func - 1);
        rc = report_limit(sb, L, err, errlen);
    }
    call_leave(sb);
    return rc;
}

/* Protected helper for rf_sandbox_resume(): records where the dead
 * coroutine (argument 1, a light userdata) failed and its traceback. */
static int trace_thread(lua_State *L)
{
    lua_State *co = lua_touserdata(L, 1);
    char at[LUA_IDSIZE + 16];

    rf__sandbox_where(co, 0, at, sizeof(at));
    lua_pushstring(L, at);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &where_key);
    luaL_traceback(L, co, NULL, 0);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &traceback_key);
    return 0;
}

static int resumable(struct rf_sandbox *sb, lua_State *co, int nargs)
{
    lua_Debug ar;

    if (co == sb->L || rf__sandbox_of(co) != sb || nargs < 0 ||
        lua_gettop(co) < nargs) {
        return 0;
    }
    switch (lua_status(co)) {
    case LUA_YIELD:
        return 1;
    case LUA_OK: /* not started: the function sits below the arguments */
        return !lua_getstack(co, 0, &ar) && lua_gettop(co) > nargs;
    default:
        return 0;
    }
}

/* Reports a failed resume on the main thread, where helpers can run, then
 * closes the coroutine's pending to-be-closed variables. */
static int report_resume(struct rf_sandbox *sb, lua_State *co, int status,
                         char *err, size_t errlen)
{
    lua_State *L = sb->L;
    int rc;

    clear_report_slots(L);
    if (!lua_checkstack(L, 4)) {
        set_err(err, errlen, "stack overflow while reporting an error");
        rc = RF_ESCRIPT;
        goto close;
    }
    if (status == LUA_OK || status == LUA_YIELD) {
        rc = report_limit(sb, L, err, errlen);
        goto close;
    }
    lua_pushcfunction(L, trace_thread);
    lua_pushlightuserdata(L, co);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_pop(L, 1);
    }
    lua_xmove(co, L, 1);
    rc = report(sb, L, status, err, errlen);
close:
    (void)lua_resetthread(co);
    lua_settop(co, 0);
    return rc;
}

/* Limitation: every resume gets a fresh budget, so a hook that yields N
 * times may use N budgets in total; the runtime, which decides how often to
 * resume, must bound that per event. A per-event total would need the
 * runtime to pass its own deadline in. */
int rf_sandbox_resume(struct rf_sandbox *sb, lua_State *co, int nargs,
                      int *nresults, char *err, size_t errlen)
{
    int rc, status, nres = 0;

    *nresults = 0;
    set_err(err, errlen, "");
    if (!resumable(sb, co, nargs)) {
        set_err(err, errlen, "coroutine cannot be resumed");
        return RF_EINVAL;
    }
    rc = mark_host(sb, co);
    if (rc == 0) {
        rc = call_enter(sb, co);
    }
    if (rc != 0) {
        return enter_failed(rc, err, errlen);
    }
    rc = rf__sandbox_push_thread(sb, sb->L); /* runs the report helpers */
    if (rc != 0) {
        call_leave(sb);
        return enter_failed(rc, err, errlen);
    }
    status = lua_resume(co, NULL, nargs, &nres);
    settle_refusal(sb);
    if ((status == LUA_OK || status == LUA_YIELD) &&
        sb->limit == RF__LIMIT_NONE) {
        *nresults = nres;
        rc = status == LUA_YIELD ? RF_SANDBOX_YIELDED : 0;
    } else {
        if (status == LUA_OK || status == LUA_YIELD) {
            lua_pop(co, nres);
        }
        rc = report_resume(sb, co, status, err, errlen);
    }
    rf__sandbox_pop_thread(sb, sb->ncalls == 1);
    call_leave(sb);
    return rc;
}

uint64_t rf_sandbox_last_cpu_ns(const struct rf_sandbox *sb)
{
    return rf__sandbox_budget_used_ns(sb);
}

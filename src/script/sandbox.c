/* Sandboxed Lua states: an allocator with a cap, safe libraries only, and
 * text-only chunk loading. */
#include "referee/sandbox.h"
#include "referee/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#define DEFAULT_MEM_MAX (32u << 20)
#define DEFAULT_CPU_MS 50u

struct rf_sandbox {
    lua_State *L;
    size_t mem_used;
    size_t mem_max;
    unsigned cpu_ms;
    const char *const *plugin_path;
};

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct rf_sandbox *sb = ud;
    size_t old = ptr ? osize : 0; /* osize is a type tag when ptr is NULL */
    void *p;

    if (nsize == 0) {
        free(ptr);
        sb->mem_used -= old;
        return NULL;
    }
    if (nsize > old && sb->mem_used + (nsize - old) > sb->mem_max) {
        return NULL;
    }
    p = realloc(ptr, nsize);
    if (p == NULL && nsize <= old) {
        return ptr; /* never fail a shrink */
    }
    if (p != NULL) {
        sb->mem_used = sb->mem_used - old + nsize;
    }
    return p;
}

static int sb_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);

    fprintf(stderr, "referee: lua panic: %s\n", msg ? msg : "?");
    abort();
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 1);
    lua_pop(L, 1);
}

/* Removes globals that reach outside the sandbox. */
static void strip_base(lua_State *L)
{
    static const char *const unsafe[] = {"dofile", "loadfile", "load",
                                         "require", "collectgarbage", NULL};

    for (const char *const *n = unsafe; *n; n++) {
        lua_pushnil(L);
        lua_setglobal(L, *n);
    }
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
}

struct rf_sandbox *rf_sandbox_new(const struct rf_sandbox_limits *limits,
                                  enum rf_sandbox_flags flags)
{
    struct rf_sandbox *sb = calloc(1, sizeof(*sb));

    if (sb == NULL) {
        return NULL;
    }
    sb->mem_max = limits && limits->mem_max ? limits->mem_max
                                            : DEFAULT_MEM_MAX;
    sb->cpu_ms = limits && limits->cpu_ms ? limits->cpu_ms : DEFAULT_CPU_MS;
    sb->plugin_path = limits ? limits->plugin_path : NULL;
    sb->L = lua_newstate(sb_alloc, sb);
    if (sb->L == NULL) {
        free(sb);
        return NULL;
    }
    lua_atpanic(sb->L, sb_panic);
    open_lib(sb->L, LUA_GNAME, luaopen_base);
    open_lib(sb->L, LUA_STRLIBNAME, luaopen_string);
    open_lib(sb->L, LUA_TABLIBNAME, luaopen_table);
    open_lib(sb->L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(sb->L, LUA_UTF8LIBNAME, luaopen_utf8);
    strip_base(sb->L);
    (void)flags;
    return sb;
}

void rf_sandbox_free(struct rf_sandbox *sb)
{
    if (sb == NULL) {
        return;
    }
    lua_close(sb->L);
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

static int copy_error(lua_State *L, int status, char *err, size_t errlen)
{
    const char *msg = lua_tostring(L, -1);

    snprintf(err, errlen, "%s", msg ? msg : "error object is not a string");
    lua_pop(L, 1);
    if (status == LUA_ERRMEM) {
        return RF_ELIMIT;
    }
    return status == LUA_ERRSYNTAX ? RF_EPARSE : RF_ESCRIPT;
}

static char *read_file(const char *path, size_t *len, int *rc)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL) {
        *rc = -errno;
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        *rc = -errno;
        goto out;
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL) {
        *rc = RF_ENOMEM;
        goto out;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        *rc = RF_EIO;
        free(buf);
        buf = NULL;
        goto out;
    }
    *len = (size_t)n;
    *rc = 0;
out:
    fclose(f);
    return buf;
}

int rf_sandbox_run_file(struct rf_sandbox *sb, const char *path, char *err,
                        size_t errlen)
{
    lua_State *L = sb->L;
    char chunkname[512];
    size_t len = 0;
    int rc, status;
    char *src = read_file(path, &len, &rc);

    if (src == NULL) {
        snprintf(err, errlen, "%s: %s", path, rf_strerror(rc));
        return rc;
    }
    snprintf(chunkname, sizeof(chunkname), "@%s", path);
    status = luaL_loadbufferx(L, src, len, chunkname, "t");
    free(src);
    if (status != LUA_OK) {
        return copy_error(L, status, err, errlen);
    }
    return rf_sandbox_pcall(sb, 0, 1, err, errlen);
}

int rf_sandbox_pcall(struct rf_sandbox *sb, int nargs, int nresults,
                     char *err, size_t errlen)
{
    int status = lua_pcall(sb->L, nargs, nresults, 0);

    if (status != LUA_OK) {
        return copy_error(sb->L, status, err, errlen);
    }
    return 0;
}

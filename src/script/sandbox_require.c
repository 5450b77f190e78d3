/* The sandbox's require: module "a.b" is the text file a/b.lua inside one
 * of the plugin path folders, loaded once per state. Names are letters,
 * digits, '_' and '-' between dots, so no name can leave those folders. */
#include "internal.h"
#include "referee/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#define NAME_MAX_LEN 128

static const char cache_key = 'c';    /* registry: name -> module value */
static const char loading_mark = 'l'; /* cache value while a module runs */

static int valid_name(const char *name, size_t len)
{
    if (len == 0 || len > NAME_MAX_LEN || name[0] == '.' ||
        name[len - 1] == '.') {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)name[i];

        if (c == '.' && name[i + 1] == '.') {
            return 0; /* an empty part, or ".." */
        }
        if (!isalnum(c) && c != '_' && c != '-' && c != '.') {
            return 0;
        }
    }
    return 1;
}

/* Writes folder/a/b.lua for module a.b; returns 0 when it does not fit. */
static int module_path(const char *folder, const char *name, char *buf,
                       size_t len)
{
    int n = snprintf(buf, len, "%s/%s.lua", folder, name);
    char *p;

    if (n < 0 || (size_t)n >= len) {
        return 0;
    }
    for (p = buf + strlen(folder) + 1; *p != '\0'; p++) {
        if (*p == '.' && strcmp(p, ".lua") != 0) {
            *p = '/';
        }
    }
    return 1;
}

/* Stats the module file at path. Returns 0 when there is none; raises
 * when it is unusable or larger than max. */
static int module_size(lua_State *L, const char *path, size_t max, size_t *size)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            return 0;
        }
        return luaL_error(L, "cannot read module file '%s': %s", path,
                          rf_strerror(-errno));
    }
    if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size > max) {
        return luaL_error(L,
                          "module file '%s' is not a regular file of "
                          "at most %I bytes",
                          path, (LUAI_UACINT)max);
    }
    *size = (size_t)st.st_size;
    return 1;
}

/* Reads the file at path into a new userdata on the stack. Returns 0 (and
 * pushes nothing) when there is no such file; raises on other failures.
 * Holds no descriptor across a call that can raise. */
static int read_module(lua_State *L, const char *path, size_t max, size_t *len)
{
    size_t size = 0, got = 0;
    char *buf;
    int fd, err = 0;

    if (!module_size(L, path, max, &size)) {
        return 0;
    }
    buf = lua_newuserdatauv(L, size + 1, 0);
    /* Not blocking, and checked again once open: the file may have been
     * swapped for a FIFO since module_size() looked. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return luaL_error(L, "cannot open module file '%s': %s", path,
                          rf_strerror(-errno));
    }
    {
        struct stat st;

        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
            (size_t)st.st_size != size) {
            close(fd);
            return luaL_error(L, "module file '%s' changed while it was "
                                 "read; try again", path);
        }
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            err = n < 0 ? errno : 0;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (err != 0) {
        return luaL_error(L, "cannot read module file '%s': %s", path,
                          rf_strerror(-err));
    }
    *len = got;
    return 1;
}

static int not_found(lua_State *L, const char *name, const char *const *folders)
{
    char path[PATH_MAX];
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    lua_pushfstring(L, "module '%s' not found in the plugin path", name);
    luaL_addvalue(&b);
    if (folders == NULL || folders[0] == NULL) {
        luaL_addstring(&b, " (no plugin path is configured)");
    }
    for (; folders != NULL && *folders != NULL; folders++) {
        if (module_path(*folders, name, path, sizeof(path))) {
            lua_pushfstring(L, "\n\tno file '%s'", path);
            luaL_addvalue(&b);
        }
    }
    luaL_pushresult(&b);
    return luaL_error(L, "%s", lua_tostring(L, -1));
}

/* Runs the loaded chunk on top with (name, path); caches and returns its
 * value, or true when it returns nothing. Stack: name cache ... chunk. */
static int run_module(lua_State *L, const char *path)
{
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, (void *)&loading_mark);
    lua_rawset(L, 2);
    lua_pushvalue(L, 1);
    lua_pushstring(L, path);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        lua_rawset(L, 2); /* a failed module may be required again */
        return lua_error(L);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 2);
    return 1;
}

/* Pushes the cache (index 2) and returns 1 with the cached module on top,
 * or 0 with nothing more when the module has not been loaded. */
static int cached(lua_State *L, const char *name)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
    lua_pushvalue(L, 1);
    if (lua_rawget(L, 2) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_touserdata(L, -1) == (void *)&loading_mark) {
        return luaL_error(L, "module '%s' requires itself while loading", name);
    }
    return 1;
}

/* Finds the module's file in the plugin path, writes its path and pushes
 * its text; raises when there is none. */
static void find_module(lua_State *L, const char *name, char *path,
                        size_t *size)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);
    const char *const *folders = sb->plugin_path;

    for (; folders != NULL && *folders != NULL; folders++) {
        if (module_path(*folders, name, path, PATH_MAX) &&
            read_module(L, path, sb->mem_max, size)) {
            return;
        }
    }
    not_found(L, name, sb->plugin_path);
}

static int safe_require(lua_State *L)
{
    char path[PATH_MAX], chunkname[PATH_MAX + 1];
    size_t len, size = 0;
    const char *name = luaL_checklstring(L, 1, &len);

    lua_settop(L, 1);
    if (cached(L, name)) {
        return 1;
    }
    if (!valid_name(name, len)) {
        return luaL_error(L,
                          "invalid module name '%s': use letters, digits, "
                          "'_' and '-' in parts separated by single dots",
                          name);
    }
    find_module(L, name, path, &size);
    snprintf(chunkname, sizeof(chunkname), "@%s", path);
    if (rf__sandbox_load_text(L, lua_touserdata(L, -1), size, chunkname) !=
        LUA_OK) {
        return luaL_error(L, "error loading module '%s':\n\t%s", name,
                          lua_tostring(L, -1));
    }
    return run_module(L, path);
}

void rf__sandbox_push_require(lua_State *L)
{
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
    lua_pushcfunction(L, safe_require);
}

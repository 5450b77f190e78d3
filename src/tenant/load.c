/* Loading one tenant: the sandbox tenant scripts run in, the settings that
 * are not sources (hooks, allowed hosts, limits), and the version hash. */
#include "referee/error.h"
#include "referee/reader.h"
#include "referee/script_api.h"
#include "referee/tenant.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <openssl/evp.h>

#include "internal.h"

#define SECRET_FILE_MAX 4096
#define TENANT_DIR_KEY "rf.tenant.dir"
#define ENV_PREFIX_KEY "rf.tenant.env_prefix"
#define LOADING_KEY "rf.tenant.loading"

static const char *const known_keys[] = {"sources", "allowed_hosts",
                                         "limits", "zoho", "program", NULL};
static const char *const limit_keys[] = {"memory_mb", "cpu_ms", "store_mb",
                                         NULL};
static const char *const host_keys[] = {"host", "port", "http", "private",
                                        NULL};
static const char *const hook_names[RF_HOOK_COUNT] = {"cohort", "capture",
                                                      "milestone", "reward"};

const char *rf_hook_name(enum rf_hook h)
{
    return h < RF_HOOK_COUNT ? hook_names[h] : "?";
}

/* --- file(): secrets kept in files beside tenant.lua -------------------- */

/* Whether `rel` has a ".." component. */
static int climbs(const char *rel)
{
    for (const char *p = rel; *p; p += strcspn(p, "/"), p += *p == '/') {
        if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0')) {
            return 1;
        }
    }
    return 0;
}

/* Opens dir/rel for reading when the file it really is (after every
 * symbolic link) lies inside dir's real path. Returns the descriptor, or
 * -1 with the reason in why. Linux: the opened file's path is read back
 * from /proc, so a link swapped in after the check does not escape. */
static int open_inside(const char *dir, const char *rel, char *why,
                       size_t len)
{
    char base[PATH_MAX], path[PATH_MAX], real[PATH_MAX], proc[64];
    size_t n;
    ssize_t got;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    if (realpath(dir, base) == NULL || realpath(path, real) == NULL) {
        snprintf(why, len, "cannot read '%s': %s", rel, strerror(errno));
        return -1;
    }
    n = strlen(base);
    if (strcmp(real, base) == 0) {
        snprintf(why, len, "'%s' is the tenant folder, not a file", rel);
        return -1;
    }
    if (strncmp(real, base, n) != 0 || real[n] != '/') {
        snprintf(why, len, "'%s' resolves to a file outside the tenant "
                           "folder (through a symbolic link); refused",
                 rel);
        return -1;
    }
    fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, len, "cannot read '%s': %s", rel, strerror(errno));
        return -1;
    }
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    got = readlink(proc, path, sizeof(path) - 1);
    if (got >= 0) {
        path[got] = '\0';
        if (strncmp(path, base, n) != 0 || path[n] != '/') {
            close(fd);
            snprintf(why, len, "'%s' changed to a file outside the tenant "
                               "folder while it was opened; refused",
                     rel);
            return -1;
        }
    }
    return fd;
}

/* Reads up to SECRET_FILE_MAX + 1 bytes of a regular file into buf.
 * Returns the count, or -1 with the reason in why. Closes fd. */
static ssize_t read_secret(int fd, const char *rel, char *buf, char *why,
                           size_t len)
{
    struct stat st;
    ssize_t n = 0, got = 1;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(why, len, "'%s' is not a regular file", rel);
        return -1;
    }
    while (got > 0 && n <= SECRET_FILE_MAX) {
        got = read(fd, buf + n, (size_t)(SECRET_FILE_MAX + 1 - n));
        n += got > 0 ? got : 0;
    }
    close(fd);
    if (got < 0) {
        snprintf(why, len, "cannot read '%s': %s", rel, strerror(errno));
        return -1;
    }
    return n;
}

static int l_file(lua_State *L)
{
    const char *rel = luaL_checkstring(L, 1), *dir;
    char buf[SECRET_FILE_MAX + 1], why[PATH_MAX + 128];
    ssize_t n;
    int fd;

    if (rel[0] == '/' || rel[0] == '\0' || climbs(rel)) {
        return luaL_error(L, "file(): '%s' must be a path inside the tenant "
                             "folder",
                          rel);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, TENANT_DIR_KEY);
    dir = lua_tostring(L, -1);
    fd = open_inside(dir ? dir : ".", rel, why, sizeof(why));
    n = fd < 0 ? -1 : read_secret(fd, rel, buf, why, sizeof(why));
    if (n < 0) {
        return luaL_error(L, "file(): %s", why);
    }
    if (n > SECRET_FILE_MAX) {
        return luaL_error(L, "file(): '%s' is over %d bytes", rel,
                          SECRET_FILE_MAX);
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--; /* editors add a final newline; secrets never end in one */
    }
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* env(NAME) for tenant scripts: one tenant must not read another's
 * secrets, nor the operator's (an admin token), so only variables named
 * with the tenant's prefix (tenant "acme-eu": ACME_EU__...), and only
 * while tenant.lua loads: settings and plugins take their secrets then,
 * and a hook cannot go looking later. The "__" ends the prefix: ids hold
 * no '_' and no "--" (rf_tenant_id_valid()), so no tenant's prefix starts
 * another's ("ACME_" did start "ACME_EU_"). */
static int l_tenant_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1), *prefix, *v;

    lua_getfield(L, LUA_REGISTRYINDEX, LOADING_KEY);
    if (!lua_toboolean(L, -1)) {
        return luaL_error(L, "env() works only while tenant.lua loads; "
                             "read %s into a local there",
                          name);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, ENV_PREFIX_KEY);
    prefix = lua_tostring(L, -1);
    if (prefix == NULL || strncmp(name, prefix, strlen(prefix)) != 0) {
        return luaL_error(L, "env(): a tenant reads only variables whose "
                             "name starts with %s, not %s",
                          prefix ? prefix : "its id", name);
    }
    v = getenv(name);
    if (v == NULL) {
        return luaL_error(L, "environment variable %s is not set", name);
    }
    lua_pushstring(L, v);
    return 1;
}

/* The prefix of the variables tenant `id` may read: upper case, '-' as
 * '_', then "__". */
static void env_prefix(const char *id, char *out, size_t n)
{
    size_t i = 0;

    for (; id[i] && i + 3 < n; i++) {
        char c = id[i];

        out[i] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    out[i++] = '_';
    out[i++] = '_';
    out[i] = '\0';
}

static struct rf_sandbox *tenant_sandbox(const char *dir, const char *id,
                                         const struct rf_tenant_env *env,
                                         size_t mem_max, unsigned cpu_ms)
{
    char prefix[RF_TENANT_ID_MAX + 3];
    struct rf_sandbox_limits lim = {mem_max, cpu_ms,
                                    env ? env->plugin_path : NULL};
    struct rf_sandbox *sb = rf_sandbox_new(&lim, RF_SANDBOX_REQUIRE);
    lua_State *L;

    if (sb == NULL) {
        return NULL;
    }
    L = rf_sandbox_state(sb);
    env_prefix(id, prefix, sizeof(prefix));
    lua_pushstring(L, prefix);
    lua_setfield(L, LUA_REGISTRYINDEX, ENV_PREFIX_KEY);
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, LOADING_KEY);
    lua_register(L, "env", l_tenant_env);
    lua_pushstring(L, dir);
    lua_setfield(L, LUA_REGISTRYINDEX, TENANT_DIR_KEY);
    lua_register(L, "file", l_file);
    rf_api_open_sync(L);
    /* log.* while tenant.lua loads: tagged with the tenant, and counted
     * against the same 100 lines as a hook call. */
    rf_api_set_context(L, id, NULL, NULL);
    rf_api_open_async(L);
    return sb;
}

/* --- settings ----------------------------------------------------------- */

/* Whether `name` is the hook of one of the tenant's sources. */
static int source_hook(const struct rf_tenant *t, const char *name)
{
    for (size_t i = 0; i < t->nsources; i++) {
        if (t->sources[i].hook && strcmp(t->sources[i].hook, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int hook_index(const char *name)
{
    for (int h = 0; h < RF_HOOK_COUNT; h++) {
        if (strcmp(hook_names[h], name) == 0) {
            return h;
        }
    }
    return -1;
}

/* Checks every top-level key: a setting we know, or a function that is a
 * hook (or a source's hook). Records which hooks exist. */
static int read_keys(struct rf_reader *r, struct rf_tenant *t)
{
    lua_State *L = r->L;
    int rc = 0;

    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2) != 0) {
        const char *key = lua_type(L, -2) == LUA_TSTRING
                              ? lua_tostring(L, -2)
                              : NULL;
        const char *const *k = known_keys;
        int h, fn = lua_isfunction(L, -1);

        while (key && *k && strcmp(*k, key) != 0) {
            k++;
        }
        h = key ? hook_index(key) : -1;
        if (key == NULL) {
            rc = rf_reader_fail(r, "(top)", "keys must be names");
        } else if (h >= 0 || source_hook(t, key)) {
            if (!fn) {
                rc = rf_reader_fail(r, key, "a hook must be a function, "
                                            "got %s",
                                    luaL_typename(L, -1));
            }
            t->hooks |= h >= 0 ? 1u << h : 0;
        } else if (*k == NULL) {
            rc = rf_reader_fail(r, key, fn ? "unknown hook (hooks are "
                                             "cohort, capture, milestone, "
                                             "reward and the sources' hooks)"
                                           : "unknown setting");
        }
        lua_pop(L, 1);
    }
    if (rc != 0) {
        lua_pop(L, 1); /* the key lua_next left */
    }
    return rc;
}

static int check_source_hooks(struct rf_reader *r, const struct rf_tenant *t)
{
    char path[160];

    for (size_t i = 0; i < t->nsources; i++) {
        const char *hook = t->sources[i].hook;
        int type;

        if (hook == NULL) {
            continue;
        }
        type = rf_reader_get(r->L, -1, hook);
        lua_pop(r->L, 1);
        if (type != LUA_TFUNCTION) {
            snprintf(path, sizeof(path), "sources.%s.hook",
                     t->sources[i].name);
            return rf_reader_fail(r, path, "no function named '%s' in the "
                                           "returned table",
                                  hook);
        }
    }
    return 0;
}

static int read_limits(struct rf_reader *r, struct rf_tenant *t)
{
    unsigned long long mb = 0, cpu = 0, store_mb = 0;
    int rc, type = rf_reader_get(r->L, -1, "limits");

    if (type == LUA_TNIL) {
        lua_pop(r->L, 1);
        return 0;
    }
    if (type != LUA_TTABLE) {
        lua_pop(r->L, 1);
        return rf_reader_fail(r, "limits", "expected a table");
    }
    rc = rf_reader_known_keys(r, -1, "limits", limit_keys);
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "limits", "memory_mb", 1, 1024, &mb);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "limits", "cpu_ms", 1, 10000, &cpu);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "limits", "store_mb", 1,
                            RF_TENANT_STORE_MB_MAX, &store_mb);
    }
    t->mem_max = (size_t)mb << 20;
    t->cpu_ms = (unsigned)cpu;
    t->store_max = (size_t)store_mb << 20;
    lua_pop(r->L, 1);
    return rc;
}

/* Parses "host", "host:port", "https://host[:port]" or "http://...". */
static int parse_host(const char *s, struct rf_http_allow *a)
{
    const char *colon;
    char *host, *end;
    unsigned long port = 0;
    size_t n;

    if (strncmp(s, "https://", 8) == 0) {
        s += 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        s += 7;
        a->http = 1;
    }
    n = strcspn(s, ":/");
    colon = s[n] == ':' ? s + n : NULL;
    if (colon) {
        port = strtoul(colon + 1, &end, 10);
        if (end == colon + 1 || (*end != '\0' && *end != '/') ||
            port > 65535) {
            return -1;
        }
    } else if (s[n] != '\0' && strcmp(s + n, "/") != 0) {
        return -1;
    }
    if (n == 0 || (host = strndup(s, n)) == NULL) {
        return -1;
    }
    a->host = host;
    a->port = (unsigned)port;
    return 0;
}

static int read_host_table(struct rf_reader *r, const char *path,
                           struct rf_http_allow *a)
{
    unsigned long long port = 0;
    char *host = NULL;
    int rc = rf_reader_known_keys(r, -1, path, host_keys);

    if (rc == 0) {
        rc = rf_reader_string(r, -1, path, "host", &host, 1);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, path, "port", 1, 65535, &port);
    }
    if (rc == 0) {
        rc = rf_reader_bool(r, -1, path, "http", &a->http);
    }
    if (rc == 0) {
        rc = rf_reader_bool(r, -1, path, "private", &a->private_ok);
    }
    a->host = host;
    a->port = (unsigned)port;
    return rc;
}

int rf__tenant_read_hosts(struct rf_reader *r, const char *parent,
                          struct rf_http_allow *allow, size_t *nallow)
{
    lua_State *L = r->L;
    int rc = 0, type = rf_reader_get(L, -1, "allowed_hosts");
    char key[64];
    lua_Integer n;

    rf_reader_join(key, sizeof(key), parent, "allowed_hosts");
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    n = type == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : -1;
    if (n < 0 || n > RF_TENANT_HOSTS_MAX) {
        lua_pop(L, 1);
        return rf_reader_fail(r, key, "expected a list of at most %d hosts",
                              RF_TENANT_HOSTS_MAX);
    }
    for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
        struct rf_http_allow *a = &allow[*nallow];
        char path[96];

        snprintf(path, sizeof(path), "%s.%lld", key, (long long)i);
        memset(a, 0, sizeof(*a));
        type = lua_rawgeti(L, -1, i);
        if (type == LUA_TSTRING) {
            rc = parse_host(lua_tostring(L, -1), a) == 0
                     ? 0
                     : rf_reader_fail(r, key,
                                      "item %lld: expected \"host\", "
                                      "\"host:port\" or \"http(s)://host\"",
                                      (long long)i);
        } else if (type == LUA_TTABLE) {
            rc = read_host_table(r, path, a);
        } else {
            rc = rf_reader_fail(r, key,
                                "item %lld: expected a string or a table",
                                (long long)i);
        }
        *nallow += a->host != NULL;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

int rf_tenant_read(struct rf_reader *r, struct rf_tenant *t)
{
    int rc;

    if (!lua_istable(r->L, -1)) {
        snprintf(r->err, sizeof(r->err),
                 "%s:1: tenant.lua must return a table of settings, not %s",
                 r->file, luaL_typename(r->L, -1));
        return RF_ECONFIG;
    }
    rc = rf__tenant_read_sources(r, t);
    if (rc == 0) {
        rc = read_keys(r, t);
    }
    if (rc == 0) {
        rc = check_source_hooks(r, t);
    }
    if (rc == 0) {
        rc = rf__tenant_read_hosts(r, "", t->allow, &t->nallow);
    }
    if (rc == 0) {
        rc = rf__tenant_read_zoho(r, t);
    }
    if (rc == 0) {
        rc = rf__tenant_read_program(r, t);
    }
    if (rc == 0) {
        rc = read_limits(r, t);
    }
    return rc;
}

/* --- loading ------------------------------------------------------------ */

/* The first 16 hex digits of SHA-256 of the file's bytes. */
static void version_of(const char *src, size_t len, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    memset(md, 0, sizeof(md));
    (void)EVP_Digest(src, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[16] = '\0';
}

/* Refuses limits over the operator's caps (env may be NULL), and gives a
 * tenant that sets no limits.store_mb the default, or the cap if lower. */
static int check_caps(struct rf_reader *r, struct rf_tenant *t,
                      const struct rf_tenant_env *env)
{
    size_t store_cap = env && env->store_cap
                           ? env->store_cap
                           : (size_t)RF_TENANT_STORE_MB_MAX << 20;
    size_t mem_cap = env && env->mem_cap ? env->mem_cap
                                         : (size_t)RF_TENANT_MEM_MB_CAP << 20;
    unsigned cpu_cap = env && env->cpu_ms_cap ? env->cpu_ms_cap
                                              : RF_TENANT_CPU_MS_CAP;

    for (size_t i = 0; env && env->refuse_private && i < t->nallow; i++) {
        if (t->allow[i].private_ok) {
            return rf_reader_fail(r, "allowed_hosts",
                                  "%s: private addresses are refused on this "
                                  "host (the operator allows them with "
                                  "scripts.allow_private = true)",
                                  t->allow[i].host);
        }
    }
    for (size_t i = 0; env && env->refuse_private && t->zoho &&
                       i < t->zoho->nallow;
         i++) {
        if (t->zoho->allow[i].private_ok) {
            return rf_reader_fail(r, "zoho.allowed_hosts",
                                  "%s: private addresses are refused on this "
                                  "host (the operator allows them with "
                                  "scripts.allow_private = true)",
                                  t->zoho->allow[i].host);
        }
    }
    if (t->cpu_ms > cpu_cap) {
        return rf_reader_fail(r, "limits.cpu_ms",
                              "%u ms is over the operator's cap of %u ms "
                              "(scripts.cpu_ms_max in the daemon config)",
                              t->cpu_ms, cpu_cap);
    }
    if (t->store_max > store_cap) {
        return rf_reader_fail(r, "limits.store_mb",
                              "%zu MiB is over the operator's cap of %zu MiB "
                              "(scripts.store_mb_max in the daemon config)",
                              t->store_max >> 20, store_cap >> 20);
    }
    if (t->store_max == 0) {
        t->store_max = (size_t)RF_TENANT_STORE_MB_DEFAULT << 20;
        t->store_max = t->store_max < store_cap ? t->store_max : store_cap;
    }
    if (t->mem_max > mem_cap) {
        return rf_reader_fail(r, "limits.memory_mb",
                              "%zu MiB is over the operator's cap of %zu MiB "
                              "(scripts.memory_mb_max in the daemon config)",
                              t->mem_max >> 20, mem_cap >> 20);
    }
    return 0;
}

/* Runs tenant.lua in a new sandbox and reads its settings. */
static int load_once(struct rf_tenant *t, const char *path,
                     const struct rf_tenant_env *env, size_t mem,
                     unsigned cpu, struct rf_sandbox **out, char *err,
                     size_t errlen)
{
    struct rf_sandbox *sb = tenant_sandbox(t->dir, t->id, env, mem, cpu);
    struct rf_reader r;
    int rc;

    if (sb == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return RF_ENOMEM;
    }
    rc = rf_sandbox_run_file(sb, path, err, errlen);
    lua_pushboolean(rf_sandbox_state(sb), 0); /* env() closes */
    lua_setfield(rf_sandbox_state(sb), LUA_REGISTRYINDEX, LOADING_KEY);
    if (rc == 0) {
        rc = rf_reader_init(&r, rf_sandbox_state(sb), path);
        if (rc == 0) {
            rc = rf_tenant_read(&r, t);
            if (rc == 0) {
                rc = check_caps(&r, t, env);
            }
            snprintf(err, errlen, "%s", rc ? r.err : "");
            version_of(r.src, r.src_len, t->version);
        }
        rf_reader_cleanup(&r);
    }
    if (rc != 0) {
        rf_sandbox_free(sb);
        return rc;
    }
    *out = sb;
    return 0;
}

static struct rf_tenant *new_tenant(const char *dir, const char *id)
{
    struct rf_tenant *t = calloc(1, sizeof(*t));

    if (t == NULL || (t->id = strdup(id)) == NULL ||
        (t->dir = strdup(dir)) == NULL) {
        rf_tenant_free(t);
        return NULL;
    }
    return t;
}

int rf_tenant_load(const char *dir, const char *id,
                   const struct rf_tenant_env *env, struct rf_tenant **out,
                   struct rf_sandbox **sbout, char *err, size_t errlen)
{
    size_t mem = env ? env->mem_max : 0;
    unsigned cpu = env ? env->cpu_ms : 0;
    struct rf_tenant *t = new_tenant(dir, id);
    struct rf_sandbox *sb = NULL;
    char path[4096];
    int rc;

    snprintf(path, sizeof(path), "%s/tenant.lua", dir);
    rc = t ? load_once(t, path, env, mem, cpu, &sb, err, errlen) : RF_ENOMEM;
    if (rc == 0 && ((t->mem_max && t->mem_max != mem) ||
                    (t->cpu_ms && t->cpu_ms != cpu))) {
        /* The tenant sets its own limits: load again under them. */
        size_t m2 = t->mem_max ? t->mem_max : mem;
        unsigned c2 = t->cpu_ms ? t->cpu_ms : cpu;

        rf_sandbox_free(sb);
        sb = NULL;
        rf_tenant_free(t);
        t = new_tenant(dir, id);
        rc = t ? load_once(t, path, env, m2, c2, &sb, err, errlen)
               : RF_ENOMEM;
    }
    if (rc != 0) {
        if (rc == RF_ENOMEM) {
            snprintf(err, errlen, "%s: out of memory", path);
        }
        rf_tenant_free(t);
        return rc;
    }
    if (sbout) {
        *sbout = sb;
    } else {
        rf_sandbox_free(sb);
    }
    *out = t;
    return 0;
}

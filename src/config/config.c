/* Loads and checks the daemon's Lua configuration file. */
#include "referee/config.h"
#include "referee/error.h"
#include "referee/reader.h"
#include "referee/sandbox.h"
#include "referee/tenant.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/crypto.h>

static const char *const top_keys[] = {"listen", "data",   "tenants",
                                       "log",    "limits", "store",
                                       "intake", "plugins", "scripts",
                                       "admin",  NULL};
static const char *const admin_keys[] = {"listen", "token", "public", NULL};
static const char *const script_keys[] = {
    "memory_mb", "cpu_ms", "wall_ms", "ca_file", "memory_mb_max",
    "cpu_ms_max", "store_mb_max", "allow_private", NULL};
static const char *const log_keys[] = {"level", "format", NULL};
static const char *const limit_keys[] = {
    "header_max",      "body_max",          "header_timeout_ms",
    "body_timeout_ms", "keepalive_idle_ms", "connections_max",
    "connections_per_ip", "drain_ms",       NULL};
static const char *const store_keys[] = {"map_size_mb", "sync", "commit",
                                         NULL};
static const char *const intake_keys[] = {"signature_tolerance_s", NULL};

int rf_config_set_string(char **out, const char *val)
{
    char *copy = strdup(val);

    if (copy == NULL) {
        return RF_ENOMEM;
    }
    free(*out);
    *out = copy;
    return 0;
}

int rf_config_defaults(struct rf_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->log_level = RF_LOG_INFO;
    cfg->log_format = RF_LOG_LOGFMT;
    rf_http_limits_default(&cfg->http);
    cfg->map_size = (size_t)64 << 20;
    cfg->sync = 1;
    cfg->commit = RF_WRITER_GROUP;
    cfg->drain_ms = 10000;
    cfg->sig_tolerance_s = 300;
    cfg->script_mem = (size_t)32 << 20;
    cfg->script_cpu_ms = 50;
    cfg->script_mem_max = (size_t)RF_TENANT_MEM_MB_CAP << 20;
    cfg->script_cpu_ms_max = RF_TENANT_CPU_MS_CAP;
    cfg->script_store_max = (size_t)RF_TENANT_STORE_MB_MAX << 20;
    cfg->script_wall_ms = 30000;
    if (rf_config_set_string(&cfg->plugins[0], "scripts/plugins") ||
        rf_config_set_string(&cfg->listen, "127.0.0.1:8080") ||
        rf_config_set_string(&cfg->data_dir, "./data") ||
        rf_config_set_string(&cfg->tenants_dir, "./tenants")) {
        return RF_ENOMEM;
    }
    return 0;
}

void rf_config_cleanup(struct rf_config *cfg)
{
    for (int i = 0; cfg->plugins[i]; i++) {
        free(cfg->plugins[i]);
        cfg->plugins[i] = NULL;
    }
    free(cfg->ca_file);
    cfg->ca_file = NULL;
    free(cfg->admin_listen);
    cfg->admin_listen = NULL;
    if (cfg->admin_token) {
        OPENSSL_cleanse(cfg->admin_token, strlen(cfg->admin_token));
        free(cfg->admin_token);
        cfg->admin_token = NULL;
    }
    free(cfg->listen);
    free(cfg->data_dir);
    free(cfg->tenants_dir);
    cfg->listen = cfg->data_dir = cfg->tenants_dir = NULL;
}

int rf_config_split_listen(const char *listen, char *host, size_t hostlen,
                           unsigned *port)
{
    const char *colon = strrchr(listen, ':'), *p;
    struct in_addr addr;
    unsigned long v = 0;
    size_t hlen;

    if (colon == NULL) {
        return RF_EINVAL;
    }
    hlen = (size_t)(colon - listen);
    if (hlen == 0 || hlen >= hostlen) {
        return RF_EINVAL;
    }
    memcpy(host, listen, hlen);
    host[hlen] = '\0';
    /* Only what the listener binds: dotted-quad IPv4 (inet_pton refuses
     * names, IPv6, "127.1" and leading zeros alike). */
    if (inet_pton(AF_INET, host, &addr) != 1) {
        return RF_EINVAL;
    }
    for (p = colon + 1; *p >= '0' && *p <= '9' && p - colon <= 5; p++) {
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (p == colon + 1 || *p != '\0' || v > 65535) {
        return RF_EINVAL;
    }
    *port = (unsigned)v;
    return 0;
}

int rf_config_probe_listen(const char *listen, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    char host[64];
    unsigned port;
    int fd, one = 1, rc = 0;

    if (rf_config_split_listen(listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "%s, got \"%s\"", RF_CONFIG_LISTEN_HELP,
                 listen);
        return -EINVAL;
    }
    if (port == 0) {
        return 0;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    (void)inet_pton(AF_INET, host, &sa.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
    } else {
        /* As the listener does, so that only a live socket conflicts. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            rc = -errno;
        }
        close(fd);
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s%s", listen,
                 strerror(-rc),
                 rc == -EADDRINUSE ? " (another process listens there)"
                                   : "");
    }
    return rc;
}

/* Pushes field `key` of the table at -1 if it is a table; returns 1 then,
 * 0 if absent, or RF_ECONFIG. */
static int sub_table(struct rf_reader *r, const char *key)
{
    int t = rf_reader_get(r->L, -1, key);

    if (t == LUA_TTABLE) {
        return 1;
    }
    lua_pop(r->L, 1);
    if (t == LUA_TNIL) {
        return 0;
    }
    return rf_reader_fail(r, key, "expected a table, got %s",
                          lua_typename(r->L, t));
}

static int read_log(struct rf_reader *r, struct rf_config *cfg)
{
    char *level = NULL, *format = NULL;
    int rc = sub_table(r, "log");

    if (rc <= 0) {
        return rc;
    }
    rc = rf_reader_known_keys(r, -1, "log", log_keys);
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "log", "level", &level, 0);
    }
    if (rc == 0 && level && rf_log_level_parse(level, &cfg->log_level)) {
        rc = rf_reader_fail(r, "log.level",
                            "expected error, warn, info, debug or trace");
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "log", "format", &format, 0);
    }
    if (rc == 0 && format && rf_log_format_parse(format, &cfg->log_format)) {
        rc = rf_reader_fail(r, "log.format", "expected logfmt or json");
    }
    lua_pop(r->L, 1);
    free(level);
    free(format);
    return rc;
}

/* Reads an unsigned setting of `limits` into an unsigned or size_t field. */
#define LIMIT(key, min, max, field)                                            \
    do {                                                                       \
        unsigned long long v_ = (field);                                       \
        if (rc == 0) {                                                         \
            rc = rf_reader_uint(r, -1, "limits", key, min, max, &v_);          \
            (field) = v_;                                                      \
        }                                                                      \
    } while (0)

static int read_limits(struct rf_reader *r, struct rf_config *cfg)
{
    struct rf_http_limits *l = &cfg->http;
    int rc = sub_table(r, "limits");

    if (rc <= 0) {
        return rc;
    }
    rc = rf_reader_known_keys(r, -1, "limits", limit_keys);
    LIMIT("header_max", 1024, 1 << 20, l->header_max);
    LIMIT("body_max", 1, 1ull << 30, l->body_max);
    LIMIT("header_timeout_ms", 100, 3600000, l->header_timeout_ms);
    LIMIT("body_timeout_ms", 100, 3600000, l->body_timeout_ms);
    LIMIT("keepalive_idle_ms", 1000, 3600000, l->keepalive_idle_ms);
    LIMIT("connections_max", 1, 1000000, l->connections_max);
    LIMIT("connections_per_ip", 0, 1000000, l->connections_per_ip);
    LIMIT("drain_ms", 0, 3600000, cfg->drain_ms);
    lua_pop(r->L, 1);
    return rc;
}

static int read_store(struct rf_reader *r, struct rf_config *cfg)
{
    unsigned long long mb = cfg->map_size >> 20;
    char *commit = NULL;
    int rc = sub_table(r, "store");

    if (rc <= 0) {
        return rc;
    }
    rc = rf_reader_known_keys(r, -1, "store", store_keys);
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "store", "map_size_mb", 1, 1 << 20, &mb);
        cfg->map_size = (size_t)mb << 20;
    }
    if (rc == 0) {
        rc = rf_reader_bool(r, -1, "store", "sync", &cfg->sync);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "store", "commit", &commit, 0);
    }
    if (rc == 0 && commit) {
        if (strcmp(commit, "group") == 0) {
            cfg->commit = RF_WRITER_GROUP;
        } else if (strcmp(commit, "inline") == 0) {
            cfg->commit = RF_WRITER_INLINE;
        } else {
            rc = rf_reader_fail(r, "store.commit", "expected group or inline");
        }
    }
    free(commit);
    lua_pop(r->L, 1);
    return rc;
}

static int read_intake(struct rf_reader *r, struct rf_config *cfg)
{
    unsigned long long tol = cfg->sig_tolerance_s;
    int rc = sub_table(r, "intake");

    if (rc <= 0) {
        return rc;
    }
    rc = rf_reader_known_keys(r, -1, "intake", intake_keys);
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "intake", "signature_tolerance_s", 1,
                            86400, &tol);
        cfg->sig_tolerance_s = (unsigned)tol;
    }
    lua_pop(r->L, 1);
    return rc;
}

/* The defaults a tenant gets must be within what it may ask for; blames
 * the default when the file sets it, else the cap. */
static int check_caps(struct rf_reader *r, const struct rf_config *cfg)
{
    int own_cpu = rf_reader_get(r->L, -1, "cpu_ms") != LUA_TNIL;
    int own_mem;

    lua_pop(r->L, 1);
    own_mem = rf_reader_get(r->L, -1, "memory_mb") != LUA_TNIL;
    lua_pop(r->L, 1);
    if (cfg->script_cpu_ms > cfg->script_cpu_ms_max) {
        return rf_reader_fail(
            r, own_cpu ? "scripts.cpu_ms" : "scripts.cpu_ms_max",
            "the default budget scripts.cpu_ms (%u) is over the cap "
            "scripts.cpu_ms_max (%u)",
            cfg->script_cpu_ms, cfg->script_cpu_ms_max);
    }
    if (cfg->script_mem > cfg->script_mem_max) {
        return rf_reader_fail(
            r, own_mem ? "scripts.memory_mb" : "scripts.memory_mb_max",
            "the default scripts.memory_mb (%zu) is over the cap "
            "scripts.memory_mb_max (%zu)",
            cfg->script_mem >> 20, cfg->script_mem_max >> 20);
    }
    return 0;
}

static int read_scripts(struct rf_reader *r, struct rf_config *cfg)
{
    unsigned long long mb = cfg->script_mem >> 20, cpu = cfg->script_cpu_ms;
    unsigned long long wall = cfg->script_wall_ms;
    unsigned long long mb_max = cfg->script_mem_max >> 20;
    unsigned long long cpu_max = cfg->script_cpu_ms_max;
    unsigned long long store_max = cfg->script_store_max >> 20;
    int rc = sub_table(r, "scripts");

    if (rc <= 0) {
        return rc;
    }
    rc = rf_reader_known_keys(r, -1, "scripts", script_keys);
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "scripts", "memory_mb", 1, 1024, &mb);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "scripts", "cpu_ms", 1, 10000, &cpu);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "scripts", "memory_mb_max", 1, 1024,
                            &mb_max);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "scripts", "cpu_ms_max", 1, 10000,
                            &cpu_max);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "scripts", "store_mb_max", 1,
                            RF_TENANT_STORE_MB_MAX, &store_max);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "scripts", "wall_ms", 100, 600000, &wall);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "scripts", "ca_file", &cfg->ca_file, 0);
    }
    if (rc == 0) {
        rc = rf_reader_bool(r, -1, "scripts", "allow_private",
                            &cfg->script_allow_private);
    }
    cfg->script_mem = (size_t)mb << 20;
    cfg->script_cpu_ms = (unsigned)cpu;
    cfg->script_mem_max = (size_t)mb_max << 20;
    cfg->script_cpu_ms_max = (unsigned)cpu_max;
    cfg->script_store_max = (size_t)store_max << 20;
    cfg->script_wall_ms = (unsigned)wall;
    if (rc == 0) {
        rc = check_caps(r, cfg);
    }
    lua_pop(r->L, 1);
    return rc;
}

/* plugins = { "dir", ... }: replaces the default list. */
static int read_plugins(struct rf_reader *r, struct rf_config *cfg)
{
    lua_State *L = r->L;
    int type = rf_reader_get(L, -1, "plugins"), rc = 0;
    lua_Integer n = type == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : -1;

    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (n < 0 || n > 8) {
        lua_pop(L, 1);
        return rf_reader_fail(r, "plugins", "expected a list of at most 8 "
                                            "folders");
    }
    for (int i = 0; cfg->plugins[i]; i++) {
        free(cfg->plugins[i]);
        cfg->plugins[i] = NULL;
    }
    for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
            rc = rf_reader_fail(r, "plugins", "item %lld is not a string",
                                (long long)i);
        } else {
            rc = rf_config_set_string(&cfg->plugins[i - 1],
                                      lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* Checks the admin settings once read: a bindable address, loopback
 * unless admin.public, and a token. */
static int check_admin(struct rf_reader *r, struct rf_config *cfg)
{
    char host[64];
    unsigned port;
    struct in_addr addr;

    if (rf_config_split_listen(cfg->admin_listen, host, sizeof(host),
                               &port) != 0) {
        return rf_reader_fail(r, "admin.listen",
                              RF_CONFIG_LISTEN_HELP ", got \"%s\"",
                              cfg->admin_listen);
    }
    (void)inet_pton(AF_INET, host, &addr);
    if ((ntohl(addr.s_addr) >> 24) != 127 && !cfg->admin_public) {
        return rf_reader_fail(r, "admin.listen",
                              "%s is not a loopback address; the admin API "
                              "listens on 127.0.0.0/8 unless admin.public = "
                              "true",
                              host);
    }
    if (cfg->admin_token == NULL) {
        return rf_reader_fail(r, "admin.token",
                              "the admin API needs a token, e.g. token = "
                              "env(\"REFEREE_ADMIN_TOKEN\")");
    }
    if (strlen(cfg->admin_token) < RF_CONFIG_ADMIN_TOKEN_MIN) {
        return rf_reader_fail(r, "admin.token",
                              "the token must have at least %d characters",
                              RF_CONFIG_ADMIN_TOKEN_MIN);
    }
    return 0;
}

/* admin = { listen, token, public }: present means the admin API is on. */
static int read_admin(struct rf_reader *r, struct rf_config *cfg)
{
    int rc = sub_table(r, "admin");

    if (rc <= 0) {
        return rc;
    }
    rc = rf_reader_known_keys(r, -1, "admin", admin_keys);
    if (rc == 0) {
        rc = rf_config_set_string(&cfg->admin_listen, "127.0.0.1:8081");
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "admin", "listen", &cfg->admin_listen,
                              0);
    }
    if (rc == 0) {
        snprintf(cfg->admin_listen_where, sizeof(cfg->admin_listen_where),
                 "%s:%d: setting 'admin.listen'", r->file,
                 rf_reader_line(r, rf_reader_get(r->L, -1, "listen") !=
                                           LUA_TNIL
                                       ? "admin.listen"
                                       : "admin"));
        lua_pop(r->L, 1);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "admin", "token", &cfg->admin_token, 0);
    }
    if (rc == 0) {
        rc = rf_reader_bool(r, -1, "admin", "public", &cfg->admin_public);
    }
    if (rc == 0) {
        rc = check_admin(r, cfg);
    }
    lua_pop(r->L, 1);
    return rc;
}

static int read_top(struct rf_reader *r, struct rf_config *cfg)
{
    char host[64];
    unsigned port;
    int rc;

    if (!lua_istable(r->L, -1)) {
        snprintf(r->err, sizeof(r->err),
                 "%s:1: the file must return a table of settings, not %s",
                 r->file, luaL_typename(r->L, -1));
        return RF_ECONFIG;
    }
    rc = rf_reader_known_keys(r, -1, "", top_keys);
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "", "listen", &cfg->listen, 0);
    }
    if (rc == 0 && rf_reader_get(r->L, -1, "listen") != LUA_TNIL) {
        snprintf(cfg->listen_where, sizeof(cfg->listen_where),
                 "%s:%d: setting 'listen'", r->file,
                 rf_reader_line(r, "listen"));
    }
    if (rc == 0) {
        lua_pop(r->L, 1);
    }
    if (rc == 0 &&
        rf_config_split_listen(cfg->listen, host, sizeof(host), &port)) {
        rc = rf_reader_fail(r, "listen", RF_CONFIG_LISTEN_HELP ", got \"%s\"",
                            cfg->listen);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "", "data", &cfg->data_dir, 0);
    }
    if (rc == 0 && rf_reader_get(r->L, -1, "data") != LUA_TNIL) {
        snprintf(cfg->data_where, sizeof(cfg->data_where),
                 "%s:%d: setting 'data'", r->file, rf_reader_line(r, "data"));
    }
    if (rc == 0) {
        lua_pop(r->L, 1);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "", "tenants", &cfg->tenants_dir, 0);
    }
    if (rc == 0 && rf_reader_get(r->L, -1, "tenants") != LUA_TNIL) {
        snprintf(cfg->tenants_where, sizeof(cfg->tenants_where),
                 "%s:%d: setting 'tenants'", r->file,
                 rf_reader_line(r, "tenants"));
    }
    if (rc == 0) {
        lua_pop(r->L, 1);
    }
    if (rc == 0) {
        rc = read_log(r, cfg);
    }
    if (rc == 0) {
        rc = read_limits(r, cfg);
    }
    if (rc == 0) {
        rc = read_store(r, cfg);
    }
    if (rc == 0) {
        rc = read_intake(r, cfg);
    }
    if (rc == 0) {
        rc = read_scripts(r, cfg);
    }
    if (rc == 0) {
        rc = read_plugins(r, cfg);
    }
    if (rc == 0) {
        rc = read_admin(r, cfg);
    }
    return rc;
}

int rf_config_load(struct rf_config *cfg, const char *path, char *err,
                   size_t errlen)
{
    struct rf_sandbox *sb = rf_sandbox_new(NULL, RF_SANDBOX_CONFIG);
    struct rf_reader r;
    int rc;

    if (sb == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return RF_ENOMEM;
    }
    rf_reader_add_env(rf_sandbox_state(sb));
    rc = rf_sandbox_run_file(sb, path, err, errlen);
    if (rc != 0) {
        err[strcspn(err, "\n")] = '\0'; /* a config needs no traceback */
        goto out;
    }
    rc = rf_reader_init(&r, rf_sandbox_state(sb), path);
    if (rc == 0) {
        rc = read_top(&r, cfg);
        if (rc != 0) {
            snprintf(err, errlen, "%s", r.err);
        }
    } else {
        snprintf(err, errlen, "%s: %s", path, rf_strerror(rc));
    }
    rf_reader_cleanup(&r);
out:
    rf_sandbox_free(sb);
    return rc;
}

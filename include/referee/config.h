/* The daemon's configuration: a Lua file that returns a table, evaluated in
 * a sandbox with no io, os or require, then checked setting by setting.
 *
 *     return {
 *       listen = "127.0.0.1:8080",
 *       data = "./data", tenants = "./tenants",
 *       log = { level = "info", format = "logfmt" },
 *       limits = { body_max = 1048576, header_timeout_ms = 10000 },
 *       store = { map_size_mb = 64, sync = true, commit = "group" },
 *       admin = { listen = "127.0.0.1:8081",
 *                 token = env("REFEREE_ADMIN_TOKEN") },
 *     }
 */
#ifndef REFEREE_CONFIG_H
#define REFEREE_CONFIG_H

#include "referee/http.h"
#include "referee/log.h"
#include "referee/writer.h"

struct rf_config {
    char *listen;          /* "host:port" */
    char *data_dir;
    char *tenants_dir;
    enum rf_log_level log_level;
    enum rf_log_format log_format;
    struct rf_http_limits http;
    size_t map_size;       /* bytes */
    int sync;              /* fsync on commit */
    enum rf_writer_mode commit;
    unsigned drain_ms;     /* longest graceful stop wait */
    unsigned sig_tolerance_s; /* webhook timestamp tolerance */
    char *plugins[9];      /* plugin folders, NULL-terminated */
    size_t script_mem;     /* default memory cap per tenant, bytes */
    unsigned script_cpu_ms; /* default CPU budget per hook call */
    unsigned script_wall_ms; /* longest a hook call may wait */
    size_t script_mem_max;  /* most memory a tenant may ask for, bytes */
    unsigned script_cpu_ms_max; /* most CPU budget a tenant may ask for */
    size_t script_store_max;    /* most limits.store_mb may ask for, bytes */
    int script_allow_private; /* tenants may allow private addresses */
    char *ca_file;         /* extra CAs for scripts' http.request */
    char *admin_listen;    /* "host:port" of the admin API; NULL: off */
    char *admin_token;     /* its bearer token (a secret: never log) */
    int admin_public;      /* admin.public: a non-loopback address allowed */
    /* Where listen and admin.listen were set ("file:line: setting
     * 'listen'"), for errors found when binding; "" for a default. */
    char listen_where[320];
    char admin_listen_where[320];
    char tenants_where[320]; /* "file:line: setting 'tenants'", "--tenants" */
    char data_where[320];    /* "file:line: setting 'data'", "--data" */
};

/* The shortest admin token accepted. */
#define RF_CONFIG_ADMIN_TOKEN_MIN 16

/* Fills in the defaults. Strings are owned by cfg; free with
 * rf_config_cleanup(). Returns 0 or RF_ENOMEM. */
int rf_config_defaults(struct rf_config *cfg);

/* Evaluates `path` and overlays its settings on cfg (call
 * rf_config_defaults() first). On failure writes "file:line: ..." into
 * `err` and returns RF_ECONFIG, RF_EPARSE, RF_ESCRIPT or -errno. */
int rf_config_load(struct rf_config *cfg, const char *path, char *err,
                   size_t errlen);

/* Frees what cfg owns. */
void rf_config_cleanup(struct rf_config *cfg);

/* Binds and releases `listen` ("host:port"; port 0 is always free) to
 * find out, before anything starts, whether the listener will be able to:
 * another process on the port, an address not on this host, a privileged
 * port. Returns 0, or -errno with a sentence in err. */
int rf_config_probe_listen(const char *listen, char *err, size_t errlen);

/* What `listen` accepts, for error messages. */
#define RF_CONFIG_LISTEN_HELP                                                  \
    "expected \"A.B.C.D:PORT\": a dotted-quad IPv4 address and a port "       \
    "0-65535 (host names such as localhost, short forms such as 127.1 and "   \
    "IPv6 are not supported)"

/* Splits "A.B.C.D:PORT" into host (at most hostlen bytes) and port. Only
 * what the listener can bind is accepted: a dotted-quad IPv4 address and a
 * decimal port up to 65535. Returns 0 or RF_EINVAL. */
int rf_config_split_listen(const char *listen, char *host, size_t hostlen,
                           unsigned *port);

/* Sets *out to a strdup'd copy of val, freeing the old one. 0 or
 * RF_ENOMEM. */
int rf_config_set_string(char **out, const char *val);

#endif

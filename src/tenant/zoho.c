/* The `zoho` table of tenant.lua: the tenant's Zoho CRM connection, the
 * modules it polls and its notification channel.
 *
 *     zoho = {
 *       client_id = "1000.ABC", client_secret = env("ACME__ZOHO_SECRET"),
 *       refresh_token = file("zoho.refresh"), dc = "eu",
 *       modules = { Contacts = { "Email", "First_Name", "Customer_Tier" } },
 *       notify = { url = "https://hooks.example.com/t/acme/zoho/notify",
 *                  token = env("ACME__ZOHO_CHANNEL_TOKEN") },
 *     }
 */
#include "referee/error.h"
#include "referee/reader.h"
#include "referee/tenant.h"
#include "referee/zoho.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "internal.h"

#define FIELDS_MAX 4096
#define ZOHO_FIELDS_MAX 50 /* fields one list call may name */
#define POLL_DEFAULT_S 300
#define POLL_WITH_NOTIFY_S 1800

static const char *const zoho_keys[] = {
    "client_id", "client_secret", "refresh_token", "dc", "accounts_url",
    "api_domain", "allowed_hosts", "edition", "users", "credits_per_day",
    "concurrency", "api_version", "modules", "poll_every_s", "notify", NULL};
static const char *const notify_keys[] = {"url", "token", "channel_id",
                                          "events", NULL};
static const char *const api_versions[] = {"v2", "v2.1", "v3", "v4", "v5",
                                           "v6", "v7", "v8", NULL};
static const char *const editions[] = {
    "free", "standard", "professional", "enterprise", "ultimate", "starter",
    "zoho_one", "crm_plus", NULL};

static void free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void rf__tenant_zoho_free(struct rf_tenant_zoho *z)
{
    if (z == NULL) {
        return;
    }
    free(z->client_id);
    free_secret(z->client_secret);
    free_secret(z->refresh_token);
    free(z->dc);
    free(z->accounts_url);
    free(z->api_domain);
    free(z->edition);
    free(z->api_version);
    for (size_t i = 0; i < z->nallow; i++) {
        free((char *)z->allow[i].host);
    }
    for (size_t i = 0; i < z->nmodules; i++) {
        free(z->modules[i].name);
        free(z->modules[i].fields);
    }
    free(z->notify_url);
    free_secret(z->notify_token);
    free(z->channel_id);
    for (size_t i = 0; i < z->nevents; i++) {
        free(z->events[i]);
    }
    free(z);
}

/* Zoho's API names: letters, digits and underscores. */
static int api_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 100) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_')) {
            return 0;
        }
    }
    return 1;
}

static int digits_ok(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= 20 && strspn(s, "0123456789") == n;
}

/* modules = { Contacts = { "Email", ... }, ... } with the table on top. */
static int read_module(struct rf_reader *r, struct rf_tenant_zoho *z,
                       const char *name)
{
    lua_State *L = r->L;
    struct rf_tenant_zoho_module *m = &z->modules[z->nmodules];
    char path[160], buf[FIELDS_MAX];
    size_t len = 0;
    lua_Integer n;

    snprintf(path, sizeof(path), "zoho.modules.%s", name);
    if (!api_name_ok(name, strlen(name))) {
        return rf_reader_fail(r, path, "module names are Zoho API names "
                                       "(letters, digits, _)");
    }
    if (z->nmodules == RF_TENANT_ZOHO_MODULES_MAX) {
        return rf_reader_fail(r, path, "at most %d modules",
                              RF_TENANT_ZOHO_MODULES_MAX);
    }
    n = lua_type(L, -1) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : 0;
    if (n == 0) {
        return rf_reader_fail(r, path, "expected a list of field API names "
                                       "(Zoho requires fields)");
    }
    buf[0] = '\0';
    for (lua_Integer i = 1; i <= n; i++) {
        size_t flen = 0;
        const char *f = NULL;

        if (lua_rawgeti(L, -1, i) == LUA_TSTRING) {
            f = lua_tolstring(L, -1, &flen);
        }
        if (f == NULL || !api_name_ok(f, flen)) {
            lua_pop(L, 1);
            return rf_reader_fail(r, path, "item %lld: expected a field API "
                                           "name",
                                  (long long)i);
        }
        if (len + flen + 2 > sizeof(buf)) {
            lua_pop(L, 1);
            return rf_reader_fail(r, path, "the field list is over %d bytes",
                                  FIELDS_MAX);
        }
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
                                len ? "," : "", f);
        lua_pop(L, 1);
    }
    {
        /* referee adds Modified_Time (the poll sorts by it) and, for Leads,
         * what following a conversion needs. */
        static const char *const added[] = {
            "Modified_Time", "Converted__s", "Converted_Contact",
            "Converted_Deal", NULL};
        size_t total = (size_t)n;

        for (int a = 0; added[a]; a++) {
            int listed = 0;

            if (a > 0 && strcmp(name, "Leads") != 0) {
                break;
            }
            for (const char *p = buf; *p;) {
                size_t k = strcspn(p, ",");

                listed |= k == strlen(added[a]) && strncmp(p, added[a], k) == 0;
                p += k + (p[k] == ',');
            }
            total += !listed;
        }
        if (total > ZOHO_FIELDS_MAX) {
            return rf_reader_fail(r, path,
                                  "Zoho reads at most %d fields per call; "
                                  "with those referee adds (Modified_Time%s) "
                                  "this list makes %zu",
                                  ZOHO_FIELDS_MAX,
                                  strcmp(name, "Leads") == 0
                                      ? ", Converted__s, Converted_Contact, "
                                        "Converted_Deal"
                                      : "",
                                  total);
        }
    }
    for (size_t i = 0; i < z->nmodules; i++) {
        if (strcasecmp(z->modules[i].name, name) == 0) {
            return rf_reader_fail(r, path, "module '%s' is listed twice "
                                           "(module names ignore case)",
                                  name);
        }
    }
    m->name = strdup(name);
    m->fields = strdup(buf);
    z->nmodules++;
    return m->name && m->fields ? 0 : RF_ENOMEM;
}

static int read_modules(struct rf_reader *r, struct rf_tenant_zoho *z)
{
    lua_State *L = r->L;
    int rc = 0, type = rf_reader_get(L, -1, "modules");

    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (type != LUA_TTABLE) {
        lua_pop(L, 1);
        return rf_reader_fail(r, "zoho.modules", "expected a table of "
                                                 "module = { fields }");
    }
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            rc = rf_reader_fail(r, "zoho.modules", "keys must be module "
                                                   "names");
        } else {
            rc = read_module(r, z, lua_tostring(L, -2));
        }
        lua_pop(L, 1);
    }
    if (rc != 0) {
        lua_pop(L, 1); /* the key lua_next left */
    }
    lua_pop(L, 1);
    return rc;
}

static int read_events(struct rf_reader *r, struct rf_tenant_zoho *z)
{
    lua_State *L = r->L;
    int type = rf_reader_get(L, -1, "events");
    lua_Integer n;

    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    n = type == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : -1;
    if (n < 1 || n > RF_TENANT_ZOHO_EVENTS_MAX) {
        lua_pop(L, 1);
        return rf_reader_fail(r, "zoho.notify.events",
                              "expected a list of 1 to %d events such as "
                              "\"Contacts.all\"",
                              RF_TENANT_ZOHO_EVENTS_MAX);
    }
    for (lua_Integer i = 1; i <= n; i++) {
        const char *ev = NULL, *dot;

        if (lua_rawgeti(L, -1, i) == LUA_TSTRING) {
            ev = lua_tostring(L, -1);
        }
        dot = ev ? strchr(ev, '.') : NULL;
        if (dot == NULL || !api_name_ok(ev, (size_t)(dot - ev)) ||
            (strcmp(dot + 1, "create") != 0 && strcmp(dot + 1, "edit") != 0 &&
             strcmp(dot + 1, "delete") != 0 && strcmp(dot + 1, "all") != 0)) {
            lua_pop(L, 2);
            return rf_reader_fail(r, "zoho.notify.events",
                                  "item %lld: expected \"Module.create\", "
                                  "\".edit\", \".delete\" or \".all\"",
                                  (long long)i);
        }
        z->events[z->nevents] = strdup(ev);
        if (z->events[z->nevents++] == NULL) {
            lua_pop(L, 2);
            return RF_ENOMEM;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* A channel id of 12 digits derived from the tenant id, so that tenants
 * need not invent one and it stays the same across restarts. */
static char *default_channel_id(const char *tenant)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned long long v = 0;
    char buf[24];

    (void)EVP_Digest(tenant, strlen(tenant), md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++) {
        v = v << 8 | md[i];
    }
    snprintf(buf, sizeof(buf), "%llu", 100000000000ULL + v % 900000000000ULL);
    return strdup(buf);
}

static int read_notify(struct rf_reader *r, struct rf_tenant_zoho *z,
                       const char *tenant)
{
    lua_State *L = r->L;
    int rc, type = rf_reader_get(L, -1, "notify");

    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (type != LUA_TTABLE) {
        lua_pop(L, 1);
        return rf_reader_fail(r, "zoho.notify", "expected a table");
    }
    rc = rf_reader_known_keys(r, -1, "zoho.notify", notify_keys);
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho.notify", "url", &z->notify_url,
                              1);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho.notify", "token",
                              &z->notify_token, 1);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho.notify", "channel_id",
                              &z->channel_id, 0);
    }
    if (rc == 0) {
        rc = read_events(r, z);
    }
    lua_pop(L, 1);
    if (rc != 0) {
        return rc;
    }
    if (strncmp(z->notify_url, "https://", 8) != 0 &&
        strncmp(z->notify_url, "http://", 7) != 0) {
        return rf_reader_fail(r, "zoho.notify.url", "expected an http(s) "
                                                    "URL");
    }
    if (strlen(z->notify_token) < 16 || strlen(z->notify_token) > 50) {
        return rf_reader_fail(r, "zoho.notify.token",
                              "expected 16 to 50 characters (Zoho echoes "
                              "at most 50)");
    }
    if (z->channel_id != NULL && !digits_ok(z->channel_id)) {
        return rf_reader_fail(r, "zoho.notify.channel_id",
                              "expected 1 to 20 digits");
    }
    if (z->channel_id == NULL &&
        (z->channel_id = default_channel_id(tenant)) == NULL) {
        return RF_ENOMEM;
    }
    for (size_t i = 0; z->nevents == 0 && i < z->nmodules; i++) {
        char ev[128];

        snprintf(ev, sizeof(ev), "%s.all", z->modules[i].name);
        if ((z->events[i] = strdup(ev)) == NULL) {
            return RF_ENOMEM;
        }
        if (i + 1 == z->nmodules) {
            z->nevents = z->nmodules;
        }
    }
    if (z->nevents == 0) {
        return rf_reader_fail(r, "zoho.notify.events",
                              "name the events, or poll some modules");
    }
    return 0;
}

static int one_of(const char *s, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(s, *list) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The connection fingerprint: what rf_zoho_open() is given. */
static void fingerprint(struct rf_tenant_zoho *z)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const char *parts[] = {z->client_id,    z->client_secret,
                           z->refresh_token, z->dc,
                           z->accounts_url, z->api_domain,
                           z->edition,      z->api_version};
    char nums[96];

    memset(md, 0, sizeof(md));
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
            const char *p = parts[i] ? parts[i] : "";

            EVP_DigestUpdate(ctx, p, strlen(p) + 1);
        }
        for (size_t i = 0; i < z->nallow; i++) {
            snprintf(nums, sizeof(nums), "%u/%d/%d", z->allow[i].port,
                     z->allow[i].http, z->allow[i].private_ok);
            EVP_DigestUpdate(ctx, z->allow[i].host,
                             strlen(z->allow[i].host) + 1);
            EVP_DigestUpdate(ctx, nums, strlen(nums) + 1);
        }
        snprintf(nums, sizeof(nums), "%u/%u/%llu", z->users, z->concurrency,
                 z->credits_per_day);
        EVP_DigestUpdate(ctx, nums, strlen(nums) + 1);
        EVP_DigestFinal_ex(ctx, md, &mdlen);
    }
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 8; i++) {
        z->connection[2 * i] = hex[md[i] >> 4];
        z->connection[2 * i + 1] = hex[md[i] & 15];
    }
    z->connection[16] = '\0';
}

static int read_fields(struct rf_reader *r, struct rf_tenant_zoho *z,
                       const char *tenant)
{
    unsigned long long users = 0, conc = 0, every = 0;
    int rc = rf_reader_known_keys(r, -1, "zoho", zoho_keys);

    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho", "client_id", &z->client_id, 1);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho", "client_secret",
                              &z->client_secret, 1);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho", "refresh_token",
                              &z->refresh_token, 1);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho", "dc", &z->dc, 1);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho", "accounts_url",
                              &z->accounts_url, 0);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho", "api_domain", &z->api_domain,
                              0);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho", "edition", &z->edition, 0);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "zoho", "api_version", &z->api_version,
                              0);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "zoho", "users", 0, 100000, &users);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "zoho", "credits_per_day", 1,
                            100000000ULL, &z->credits_per_day);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "zoho", "concurrency", 1, 100, &conc);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "zoho", "poll_every_s", 5, 86400, &every);
    }
    if (rc == 0) {
        rc = rf__tenant_read_hosts(r, "zoho", z->allow, &z->nallow);
    }
    if (rc == 0) {
        rc = read_modules(r, z);
    }
    if (rc == 0) {
        rc = read_notify(r, z, tenant);
    }
    z->users = (unsigned)users;
    z->concurrency = (unsigned)conc;
    z->poll_every_s = (unsigned)every;
    return rc;
}

int rf__tenant_read_zoho(struct rf_reader *r, struct rf_tenant *t)
{
    struct rf_tenant_zoho *z;
    int rc, type = rf_reader_get(r->L, -1, "zoho");

    if (type == LUA_TNIL) {
        lua_pop(r->L, 1);
        return 0;
    }
    if (type != LUA_TTABLE) {
        lua_pop(r->L, 1);
        return rf_reader_fail(r, "zoho", "expected a table");
    }
    if ((z = calloc(1, sizeof(*z))) == NULL) {
        lua_pop(r->L, 1);
        return RF_ENOMEM;
    }
    t->zoho = z;
    rc = read_fields(r, z, t->id ? t->id : "");
    lua_pop(r->L, 1);
    if (rc != 0) {
        return rc;
    }
    if (rf_zoho_dc_accounts(z->dc) == NULL) {
        return rf_reader_fail(r, "zoho.dc", "unknown data centre '%s' "
                                            "(us, eu, in, au, jp, ca, cn, "
                                            "sa)",
                              z->dc);
    }
    if (z->api_version != NULL && !one_of(z->api_version, api_versions)) {
        return rf_reader_fail(r, "zoho.api_version",
                              "unknown API version '%s' (v2, v2.1, v3 ... "
                              "v8)",
                              z->api_version);
    }
    if (z->edition != NULL && !one_of(z->edition, editions)) {
        return rf_reader_fail(r, "zoho.edition",
                              "unknown edition '%s' (free, standard, "
                              "professional, enterprise, ultimate)",
                              z->edition);
    }
    if (z->accounts_url != NULL &&
        strncmp(z->accounts_url, "https://", 8) != 0 &&
        strncmp(z->accounts_url, "http://", 7) != 0) {
        return rf_reader_fail(r, "zoho.accounts_url", "expected an http(s) "
                                                      "URL");
    }
    if (z->poll_every_s == 0) {
        z->poll_every_s = z->notify_url ? POLL_WITH_NOTIFY_S : POLL_DEFAULT_S;
    }
    fingerprint(z);
    return 0;
}

/* A tenant's Zoho connection: settings, data centres and editions, the
 * clock, housekeeping, statistics, and closing once nothing refers to it. */
#include "referee/zoho.h"
#include "referee/error.h"
#include "referee/log.h"
#include "zoho/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

struct dc_info {
    const char *code;
    const char *accounts;
    const char *api;
    const char *tld;
};

/* From Zoho's SDK data-centre classes (see docs/zoho.md). */
static const struct dc_info dcs[] = {
    {"us", "https://accounts.zoho.com", "https://www.zohoapis.com", "com"},
    {"eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu", "eu"},
    {"in", "https://accounts.zoho.in", "https://www.zohoapis.in", "in"},
    {"au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au",
     "com.au"},
    {"jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp", "jp"},
    {"ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca", "ca"},
    {"cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn",
     "com.cn"},
    {"sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa", "sa"},
};

struct edition {
    const char *name;
    uint64_t base, per_user, cap; /* cap 0: none */
    unsigned concurrency;
};

static const struct edition editions[] = {
    {"free", 5000, 0, 5000, 5},
    {"standard", 50000, 250, 100000, 10},
    {"starter", 50000, 250, 100000, 10},
    {"professional", 50000, 500, 3000000, 15},
    {"enterprise", 50000, 1000, 5000000, 20},
    {"zoho_one", 50000, 1000, 5000000, 20},
    {"ultimate", 50000, 2000, 0, 25},
    {"crm_plus", 50000, 2000, 0, 25},
};

static const struct dc_info *find_dc(const char *dc)
{
    for (size_t i = 0; dc && i < sizeof(dcs) / sizeof(dcs[0]); i++) {
        if (strcasecmp(dcs[i].code, dc) == 0) {
            return &dcs[i];
        }
    }
    return NULL;
}

const char *rf_zoho_dc_accounts(const char *dc)
{
    const struct dc_info *d = find_dc(dc);

    return d ? d->accounts : NULL;
}

const char *rf_zoho_dc_api(const char *dc)
{
    const struct dc_info *d = find_dc(dc);

    return d ? d->api : NULL;
}

/* --- life cycle of the object -------------------------------------------- */

static void free_all(struct rf_zoho *z)
{
    rf__zoho_watch_free(z);
    if (z->own_allow) {
        free(z->allow_hosts[0]);
        free(z->allow_hosts[1]);
    } else if (z->allow) {
        for (size_t i = 0; i < z->n_allow; i++) {
            free((char *)z->allow[i].host);
        }
    }
    free(z->allow);
    free(z->tenant);
    free(z->client_id);
    free(z->client_secret);
    free(z->refresh_token);
    free(z->dc);
    free(z->accounts_url);
    free(z->api_override);
    free(z->version);
    free(z->tld);
    free(z->access_token);
    free(z->api_domain);
    free(z);
}

/* Frees the connection once it is closing and nothing refers to it. */
static void maybe_free(struct rf_zoho *z)
{
    rf_zoho_closed_cb cb;
    void *arg;

    if (!z->closing || z->pending > 0 || z->depth > 0) {
        return;
    }
    cb = z->closed_cb;
    arg = z->closed_arg;
    rf_log_debug("zoho", RF_F("tenant", z->tenant), "connection closed");
    free_all(z);
    if (cb) {
        cb(arg);
    }
}

void rf__zoho_hold(struct rf_zoho *z)
{
    z->pending++;
}

void rf__zoho_release(struct rf_zoho *z)
{
    z->pending--;
    maybe_free(z);
}

void rf__zoho_enter(struct rf_zoho *z)
{
    z->depth++;
}

void rf__zoho_leave(struct rf_zoho *z)
{
    z->depth--;
    maybe_free(z);
}

int64_t rf__zoho_now(const struct rf_zoho *z)
{
    struct timespec ts;

    if (z->clock) {
        return z->clock(z->clock_arg);
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rf_zoho_now_ms(const struct rf_zoho *z)
{
    return rf__zoho_now(z);
}

/* xorshift64*: jitter only, not for secrets. */
uint64_t rf__zoho_random(struct rf_zoho *z)
{
    z->rng ^= z->rng >> 12;
    z->rng ^= z->rng << 25;
    z->rng ^= z->rng >> 27;
    return z->rng * 2685821657736338717ULL;
}

void rf__zoho_set_error(struct rf_zoho *z, const char *msg)
{
    snprintf(z->last_error, sizeof(z->last_error), "%s", msg);
}

/* --- settings ------------------------------------------------------------ */

static char *dup_or_null(const char *s, int *fail)
{
    char *d;

    if (s == NULL) {
        return NULL;
    }
    d = strdup(s);
    if (d == NULL) {
        *fail = 1;
    }
    return d;
}

/* The host part of a URL, owned by the caller; NULL when not a URL. */
static char *url_host(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *copy = NULL;

    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        copy = strdup(host);
    }
    curl_free(host);
    curl_url_cleanup(u);
    return copy;
}

static int valid_version(const char *v)
{
    size_t n = strlen(v);

    return n >= 2 && n <= 6 && v[0] == 'v' &&
           strspn(v + 1, "0123456789.") == n - 1 && v[1] != '.';
}

static int set_limits(struct rf_zoho *z, const struct rf_zoho_settings *s,
                      char *err, size_t errlen)
{
    const char *name = s->edition ? s->edition : "enterprise";
    const struct edition *e = NULL;

    for (size_t i = 0; i < sizeof(editions) / sizeof(editions[0]); i++) {
        if (strcasecmp(editions[i].name, name) == 0) {
            e = &editions[i];
        }
    }
    if (e == NULL) {
        snprintf(err, errlen,
                 "unknown Zoho edition '%.40s' (free, standard, "
                 "professional, enterprise or ultimate)",
                 name);
        return RF_ECONFIG;
    }
    z->budget = e->base + e->per_user * s->users;
    if (e->cap && z->budget > e->cap) {
        z->budget = e->cap;
    }
    if (s->credits_per_day) {
        z->budget = s->credits_per_day;
    }
    z->conc_max = s->concurrency ? s->concurrency : e->concurrency;
    z->heavy_max = s->heavy_concurrency ? s->heavy_concurrency : 10;
    z->cwnd = z->conc_max;
    return 0;
}

#define OR(v, d) ((v) ? (v) : (d))

static void set_numbers(struct rf_zoho *z, const struct rf_zoho_settings *s)
{
    z->timeout_ms = OR(s->timeout_ms, 30000);
    z->refresh_margin_s = OR(s->refresh_margin_s, 60);
    z->refresh_max = OR(s->refresh_max, 10);
    if (z->refresh_max > RF__ZOHO_REFRESH_TIMES_MAX) {
        z->refresh_max = RF__ZOHO_REFRESH_TIMES_MAX;
    }
    z->refresh_window_s = OR(s->refresh_window_s, 600);
    z->retry_max = OR(s->retry_max, 4);
    z->retry_base_ms = OR(s->retry_base_ms, 500);
    z->retry_cap_ms = OR(s->retry_cap_ms, 30000);
    z->throttle_max = OR(s->throttle_max, 8);
    z->throttle_base_ms = OR(s->throttle_base_ms, 1000);
    z->throttle_cap_ms = OR(s->throttle_cap_ms, 60000);
    z->housekeeping_ms = OR(s->housekeeping_ms, 15000);
    z->watch_margin_s = OR(s->watch_margin_s, 600);
    z->ims_exclusive = s->ims_exclusive;
    z->clock = s->clock;
    z->clock_arg = s->clock_arg;
}

/* Copies the caller's allow-list, or builds the default one: https to the
 * accounts host and to the data centre's API host. */
static int set_allow(struct rf_zoho *z, const struct rf_zoho_settings *s,
                     const struct dc_info *d)
{
    size_t n = s->allow ? s->n_allow : 2;

    z->allow = calloc(n ? n : 1, sizeof(*z->allow));
    if (z->allow == NULL) {
        return RF_ENOMEM;
    }
    z->n_allow = n;
    if (s->allow) {
        for (size_t i = 0; i < n; i++) {
            z->allow[i] = s->allow[i];
            z->allow[i].host = strdup(s->allow[i].host);
            if (z->allow[i].host == NULL) {
                return RF_ENOMEM;
            }
        }
        return 0;
    }
    z->own_allow = 1;
    z->allow_hosts[0] = url_host(z->accounts_url);
    z->allow_hosts[1] = url_host(z->api_override ? z->api_override : d->api);
    if (z->allow_hosts[0] == NULL || z->allow_hosts[1] == NULL) {
        return RF_ENOMEM;
    }
    z->allow[0].host = z->allow_hosts[0];
    z->allow[1].host = z->allow_hosts[1];
    return 0;
}

static int check_settings(const struct rf_zoho_settings *s, char *err,
                          size_t errlen)
{
    if (s->tenant == NULL || *s->tenant == '\0' || s->client_id == NULL ||
        *s->client_id == '\0' || s->client_secret == NULL ||
        s->refresh_token == NULL || *s->refresh_token == '\0') {
        snprintf(err, errlen,
                 "Zoho settings need tenant, client_id, "
                 "client_secret and refresh_token");
        return RF_EINVAL;
    }
    if (find_dc(s->dc) == NULL) {
        snprintf(err, errlen,
                 "unknown Zoho data centre '%.20s' (us, eu, in, "
                 "au, jp, ca, cn or sa)",
                 s->dc ? s->dc : "");
        return RF_ECONFIG;
    }
    if (s->api_version && !valid_version(s->api_version)) {
        snprintf(err, errlen, "Zoho api_version '%.20s' is not like v8",
                 s->api_version);
        return RF_ECONFIG;
    }
    return 0;
}

static int copy_settings(struct rf_zoho *z, const struct rf_zoho_settings *s,
                         char *err, size_t errlen)
{
    const struct dc_info *d = find_dc(s->dc);
    int fail = 0, rc;

    z->tenant = dup_or_null(s->tenant, &fail);
    z->client_id = dup_or_null(s->client_id, &fail);
    z->client_secret = dup_or_null(s->client_secret, &fail);
    z->refresh_token = dup_or_null(s->refresh_token, &fail);
    z->dc = dup_or_null(d->code, &fail);
    z->tld = dup_or_null(d->tld, &fail);
    z->accounts_url =
        dup_or_null(s->accounts_url ? s->accounts_url : d->accounts, &fail);
    z->api_override = dup_or_null(s->api_domain, &fail);
    z->version = dup_or_null(s->api_version ? s->api_version : "v8", &fail);
    if (fail) {
        return RF_ENOMEM;
    }
    for (char *p = z->accounts_url + strlen(z->accounts_url);
         p > z->accounts_url && p[-1] == '/'; p--) {
        p[-1] = '\0';
    }
    if (z->api_override) {
        z->api_domain = strdup(z->api_override);
        if (z->api_domain == NULL) {
            return RF_ENOMEM;
        }
    }
    set_numbers(z, s);
    rc = set_limits(z, s, err, errlen);
    return rc != 0 ? rc : set_allow(z, s, d);
}

/* --- open and close ------------------------------------------------------ */

static void on_house(uv_timer_t *t)
{
    struct rf_zoho *z = t->data;

    rf__zoho_enter(z);
    rf__zoho_watch_tick(z);
    if (z->credits_dirty) {
        rf__zoho_credits_save(z);
    }
    rf__zoho_leave(z);
}

static void on_handle_closed(uv_handle_t *h)
{
    rf__zoho_release(h->data);
}

static void start_handles(struct rf_zoho *z)
{
    uv_timer_t *ts[3] = {&z->kick, &z->delay, &z->house};

    for (int i = 0; i < 3; i++) {
        uv_timer_init(z->loop, ts[i]);
        ts[i]->data = z;
        rf__zoho_hold(z);
    }
    uv_timer_start(&z->house, on_house, z->housekeeping_ms, z->housekeeping_ms);
    uv_unref((uv_handle_t *)&z->house); /* idle housekeeping keeps no loop
                                           alive */
}

int rf_zoho_open(uv_loop_t *loop, struct rf_http_client *http,
                 struct rf_store *store, struct rf_writer *writer,
                 const struct rf_zoho_settings *s, struct rf_zoho **out,
                 char *err, size_t errlen)
{
    struct rf_zoho *z;
    int rc;

    *out = NULL;
    rc = check_settings(s, err, errlen);
    if (rc != 0) {
        return rc;
    }
    z = calloc(1, sizeof(*z));
    if (z == NULL) {
        return RF_ENOMEM;
    }
    z->loop = loop;
    z->http = http;
    z->store = store;
    z->writer = writer;
    rc = copy_settings(z, s, err, errlen);
    if (rc != 0) {
        if (rc == RF_ENOMEM) {
            snprintf(err, errlen, "out of memory");
        }
        free_all(z);
        return rc;
    }
    z->rng = (uint64_t)rf__zoho_now(z) ^ (uint64_t)(uintptr_t)z;
    z->rng |= 1;
    rf__zoho_token_load(z);
    rf__zoho_credits_load(z);
    rf__zoho_watch_load(z);
    start_handles(z);
    *out = z;
    return 0;
}

void rf_zoho_close(struct rf_zoho *z, rf_zoho_closed_cb cb, void *arg)
{
    if (z == NULL || z->closing) {
        return;
    }
    rf__zoho_enter(z);
    z->closing = 1;
    z->closed_cb = cb;
    z->closed_arg = arg;
    uv_timer_stop(&z->kick);
    uv_timer_stop(&z->delay);
    uv_timer_stop(&z->house);
    uv_close((uv_handle_t *)&z->kick, on_handle_closed);
    uv_close((uv_handle_t *)&z->delay, on_handle_closed);
    uv_close((uv_handle_t *)&z->house, on_handle_closed);
    rf__zoho_fail_all(z);
    rf__zoho_polls_stop(z);
    if (z->credits_dirty) {
        rf__zoho_credits_save(z);
    }
    rf__zoho_leave(z);
}

void rf_zoho_stats(const struct rf_zoho *z, struct rf_zoho_stats *out)
{
    int64_t now = rf__zoho_now(z);
    int64_t since = now - (int64_t)z->refresh_window_s * 1000;

    memset(out, 0, sizeof(*out));
    out->credits_used = rf__zoho_credits_used(z);
    out->credits_budget = z->budget;
    out->concurrency = z->cwnd < 1 ? 1 : (unsigned)z->cwnd;
    out->concurrency_max = z->conc_max;
    out->in_flight = z->inflight.n;
    out->max_in_flight = z->max_in_flight;
    out->queued = z->ready.n + z->delayed.n;
    out->calls = z->calls;
    out->retries = z->retries;
    out->throttled = z->throttled;
    out->cuts = z->cuts;
    out->refreshes = z->refreshes;
    for (size_t i = 0; i < z->n_refresh_times; i++) {
        out->refreshes_in_window += z->refresh_times[i] > since;
    }
    out->token_expires_ms = z->token_valid ? z->expires_ms : 0;
    snprintf(out->api_domain, sizeof(out->api_domain), "%s",
             z->api_domain ? z->api_domain : "");
    snprintf(out->last_error, sizeof(out->last_error), "%s", z->last_error);
}

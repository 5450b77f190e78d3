/* OAuth for one tenant: the refresh-token grant, one refresh in flight at a
 * time, at most refresh_max per window (counted durably before each is
 * sent), and the access token cached in RF_DB_ZOHO (kind "token", name =
 * client id) with its expiry and api_domain. */
#include "referee/error.h"
#include "referee/log.h"
#include "referee/zoho_text.h"
#include "zoho/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#define DEFAULT_EXPIRES_MS 3600000 /* Zoho's tokens live one hour */
#define TOKEN_MAX 400 /* Zoho's are about 70 bytes; the header holds 512 */
#define FORM_MAX 2048

/* --- parsing the token endpoint's answer --------------------------------- */

void rf__zoho_token_answer_free(struct rf__zoho_token_answer *a)
{
    free(a->access_token);
    free(a->api_domain);
    a->access_token = a->api_domain = NULL;
}

/* `expires_in` is seconds; the legacy form also sent `expires_in_sec` and
 * then `expires_in` was milliseconds. */
/* The name the token record is kept under: the client id and a hash of
 * the refresh token, so that a new refresh token (a new grant) starts with
 * its own quota count and no cached access token. */
static const char *token_name(struct rf_zoho *z)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (z->token_name[0] == '\0') {
        (void)EVP_Digest(z->refresh_token, strlen(z->refresh_token), md,
                         &mdlen, EVP_sha256(), NULL);
        snprintf(z->token_name, sizeof(z->token_name),
                 "%.70s.%02x%02x%02x%02x%02x%02x", z->client_id, md[0], md[1],
                 md[2], md[3], md[4], md[5]);
    }
    return z->token_name;
}

static int64_t expiry_ms(const cJSON *j)
{
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(j, "expires_in_sec");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "expires_in");

    if (cJSON_IsNumber(sec) && sec->valuedouble > 0) {
        return (int64_t)(sec->valuedouble * 1000);
    }
    if (cJSON_IsNumber(in) && in->valuedouble > 0) {
        /* Over a day in seconds can only be the legacy milliseconds. */
        return in->valuedouble > 86400 ? (int64_t)in->valuedouble
                                       : (int64_t)(in->valuedouble * 1000);
    }
    return 0;
}

int rf__zoho_token_parse(const char *body, size_t len,
                         struct rf__zoho_token_answer *out)
{
    cJSON *j = NULL;
    const char *tok, *dom, *err, *desc;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = rf__zoho_json_parse(body, len, &j);
    if (rc != 0 || !cJSON_IsObject(j)) {
        rc = RF_EPARSE;
        goto out;
    }
    err = rf__zoho_json_str(j, "error");
    if (err != NULL) {
        desc = rf__zoho_json_str(j, "error_description");
        snprintf(out->error, sizeof(out->error), "%s", err);
        snprintf(out->description, sizeof(out->description), "%s",
                 desc ? desc : "");
        rc = RF_EDENIED;
        goto out;
    }
    tok = rf__zoho_json_str(j, "access_token");
    dom = rf__zoho_json_str(j, "api_domain");
    if (tok == NULL || *tok == '\0' || strlen(tok) > TOKEN_MAX ||
        strpbrk(tok, "\r\n") != NULL) {
        rc = RF_EPARSE;
        goto out;
    }
    out->access_token = strdup(tok);
    out->api_domain = dom && *dom ? strdup(dom) : NULL;
    out->expires_in_ms = expiry_ms(j);
    if (out->access_token == NULL || (dom && *dom && !out->api_domain)) {
        rf__zoho_token_answer_free(out);
        rc = RF_ENOMEM;
    }
out:
    cJSON_Delete(j);
    return rc;
}

/* --- the cache ----------------------------------------------------------- */

static void prune_times(struct rf_zoho *z, int64_t now)
{
    int64_t since = now - (int64_t)z->refresh_window_s * 1000;
    size_t keep = 0;

    for (size_t i = 0; i < z->n_refresh_times; i++) {
        if (z->refresh_times[i] > since) {
            z->refresh_times[keep++] = z->refresh_times[i];
        }
    }
    z->n_refresh_times = keep;
}

static cJSON *token_json(const struct rf_zoho *z)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *times = cJSON_AddArrayToObject(j, "refreshes");

    if (times == NULL) {
        cJSON_Delete(j);
        return NULL;
    }
    for (size_t i = 0; i < z->n_refresh_times; i++) {
        (void)cJSON_AddItemToArray(
            times, cJSON_CreateNumber((double)z->refresh_times[i]));
    }
    (void)cJSON_AddStringToObject(j, "dc", z->dc);
    (void)cJSON_AddStringToObject(j, "accounts", z->accounts_url);
    if (z->token_valid && z->access_token) {
        (void)cJSON_AddStringToObject(j, "access_token", z->access_token);
        (void)cJSON_AddNumberToObject(j, "expires_at", (double)z->expires_ms);
        (void)cJSON_AddNumberToObject(j, "obtained_at", (double)z->obtained_ms);
    }
    if (z->api_domain && !z->api_override) {
        (void)cJSON_AddStringToObject(j, "api_domain", z->api_domain);
    }
    return j;
}

static int save_token(struct rf_zoho *z, rf__zoho_saved_cb after)
{
    cJSON *j = token_json(z);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    int rc = RF_ENOMEM;

    if (text) {
        rc = rf__zoho_save(z, "token", token_name(z), text, strlen(text), after,
                           NULL);
    }
    free(text);
    cJSON_Delete(j);
    return rc;
}

static int same_str(const cJSON *j, const char *key, const char *want)
{
    const char *have = rf__zoho_json_str(j, key);

    return have && strcmp(have, want) == 0;
}

static void load_times(struct rf_zoho *z, const cJSON *j)
{
    const cJSON *t;

    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "refreshes"))
    {
        if (cJSON_IsNumber(t) &&
            z->n_refresh_times < RF__ZOHO_REFRESH_TIMES_MAX) {
            z->refresh_times[z->n_refresh_times++] = (int64_t)t->valuedouble;
        }
    }
    prune_times(z, rf__zoho_now(z));
}

void rf__zoho_token_load(struct rf_zoho *z)
{
    char *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    const char *tok, *dom;
    const cJSON *exp;

    if (rf__zoho_load(z, "token", token_name(z), &text, &len) != 0 ||
        rf__zoho_json_parse(text, len, &j) != 0) {
        goto out;
    }
    load_times(z, j);
    tok = rf__zoho_json_str(j, "access_token");
    dom = rf__zoho_json_str(j, "api_domain");
    exp = cJSON_GetObjectItemCaseSensitive(j, "expires_at");
    /* A token from another data centre or accounts server is no use. */
    if (tok == NULL || !cJSON_IsNumber(exp) || !same_str(j, "dc", z->dc) ||
        !same_str(j, "accounts", z->accounts_url) ||
        (dom == NULL && z->api_domain == NULL)) {
        goto out;
    }
    z->access_token = strdup(tok);
    if (z->api_domain == NULL) {
        z->api_domain = strdup(dom);
    }
    if (z->access_token == NULL || z->api_domain == NULL) {
        goto out;
    }
    z->expires_ms = (int64_t)exp->valuedouble;
    z->obtained_ms = (int64_t)cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(j, "obtained_at"));
    z->token_valid = 1;
    z->token_proven = 1; /* it worked before the restart */
    z->token_gen = 1;
out:
    cJSON_Delete(j);
    free(text);
}

int rf__zoho_token_usable(const struct rf_zoho *z)
{
    return z->token_valid && z->access_token && z->api_domain &&
           rf__zoho_now(z) <
               z->expires_ms - (int64_t)z->refresh_margin_s * 1000;
}

/* --- accepting a token --------------------------------------------------- */

/* With the default allow-list, api_domain must be https on zohoapis.<tld>
 * of the configured data centre. */
/* host is want, or a subdomain of it. */
static int host_under(const char *host, const char *want)
{
    size_t hl = strlen(host), wl = strlen(want);

    return strcasecmp(host, want) == 0 ||
           (hl > wl && host[hl - wl - 1] == '.' &&
            strcasecmp(host + hl - wl, want) == 0);
}

/* The host of an https URL, owned by the caller; NULL otherwise. */
static char *https_host(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *copy = NULL;

    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        strcmp(scheme, "https") == 0) {
        copy = strdup(host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return copy;
}

/* With the default allow-list, api_domain must be https on zohoapis.<tld>
 * of the configured data centre; it then becomes the allowed API host. */
static int check_api_domain(struct rf_zoho *z, const char *dom, char *msg,
                            size_t len)
{
    char want[64], *host;

    if (!z->own_allow) {
        return 0; /* the caller's allow-list decides */
    }
    snprintf(want, sizeof(want), "zohoapis.%s", z->tld);
    host = https_host(dom);
    if (host == NULL || !host_under(host, want)) {
        free(host);
        snprintf(msg, len,
                 "token answer names api_domain %.80s, which is not a Zoho "
                 "API host of data centre '%s'",
                 dom, z->dc);
        return RF_ECONFIG;
    }
    free(z->allow_hosts[1]);
    z->allow_hosts[1] = host;
    z->allow[1].host = host;
    return 0;
}

/* Takes api_domain from the answer (a refresh without it keeps ours),
 * or falls back to the data centre's production host. */
static int take_api_domain(struct rf_zoho *z, struct rf__zoho_token_answer *a,
                           char *msg, size_t len)
{
    int rc;

    if (a->api_domain && !z->api_override) {
        rc = check_api_domain(z, a->api_domain, msg, len);
        if (rc != 0) {
            return rc;
        }
        free(z->api_domain);
        z->api_domain = a->api_domain;
        a->api_domain = NULL;
        for (char *e = z->api_domain + strlen(z->api_domain);
             e > z->api_domain && e[-1] == '/'; e--) {
            e[-1] = '\0';
        }
    } else if (z->api_domain == NULL) {
        z->api_domain = strdup(rf_zoho_dc_api(z->dc));
        if (z->api_domain == NULL) {
            return RF_ENOMEM;
        }
    }
    return 0;
}

static int accept_token(struct rf_zoho *z, struct rf__zoho_token_answer *a,
                        char *msg, size_t len)
{
    int64_t now = rf__zoho_now(z);
    char secs[24];
    int rc = take_api_domain(z, a, msg, len);

    if (rc != 0) {
        return rc;
    }
    if (a->expires_in_ms <= 0) {
        rf_log_warn("zoho", RF_F("tenant", z->tenant, "event", "token"),
                    "token answer has no expires_in; assuming one hour");
        a->expires_in_ms = DEFAULT_EXPIRES_MS;
    }
    free(z->access_token);
    z->access_token = a->access_token;
    a->access_token = NULL;
    z->obtained_ms = now;
    z->expires_ms = now + a->expires_in_ms;
    z->token_valid = 1;
    z->token_proven = 0;
    z->token_fresh = 1;
    z->token_gen++;
    z->last_error[0] = '\0';
    snprintf(secs, sizeof(secs), "%lld", (long long)(a->expires_in_ms / 1000));
    rf_log_info("zoho",
                RF_F("tenant", z->tenant, "event", "token_refreshed",
                     "expires_in", secs),
                "access token refreshed");
    (void)save_token(z, NULL);
    return 0;
}

/* Turns the endpoint's "error" into our code and a sentence. */
static int token_error(struct rf_zoho *z, const struct rf__zoho_token_answer *a,
                       char *msg, size_t len)
{
    if (strcmp(a->error, "invalid_client") == 0) {
        snprintf(msg, len,
                 "accounts server %s does not know client id %s "
                 "(invalid_client): the data centre '%s' is probably wrong, "
                 "or the client was deleted",
                 z->accounts_url, z->client_id, z->dc);
        return RF_ECONFIG;
    }
    if (strcmp(a->error, "invalid_client_secret") == 0) {
        snprintf(msg, len,
                 "accounts server %s rejected the client secret "
                 "of %s",
                 z->accounts_url, z->client_id);
        return RF_ECONFIG;
    }
    if (strcmp(a->error, "invalid_code") == 0) {
        snprintf(msg, len,
                 "accounts server %s rejected the refresh token "
                 "(invalid_code): it was revoked or belongs to another "
                 "client; authorise again and put the new refresh token in "
                 "the tenant's settings",
                 z->accounts_url);
        /* Definitive: asking again only spends the refresh quota. The
         * connection is reopened when the settings change. */
        z->denied = 1;
        snprintf(z->denied_msg, sizeof(z->denied_msg), "%s", msg);
        return RF_EDENIED;
    }
    if (strcasestr(a->error, "access denied") != NULL) {
        snprintf(msg, len,
                 "accounts server %s refuses refreshes for now "
                 "(Access Denied: %.100s)",
                 z->accounts_url, a->description);
        return RF_ELIMIT;
    }
    snprintf(msg, len, "accounts server %s answered error '%.60s'",
             z->accounts_url, a->error);
    return RF_EDENIED;
}

/* Every request waiting for a token fails with the refresh's failure. */
static void refresh_failed(struct rf_zoho *z, int rc, const char *msg)
{
    rf__zoho_set_error(z, msg);
    rf_log_error("zoho", RF_F("tenant", z->tenant, "event", "token_failed"),
                 "%s", msg);
    rf__zoho_fail_ready(z, rc, msg);
}

/* What the token endpoint's answer means: 0 (token taken) or the code
 * and sentence of the failure. */
static int token_outcome(struct rf_zoho *z, const struct rf_http_result *res,
                         char *msg, size_t len)
{
    struct rf__zoho_token_answer a;
    int rc;

    if (res->rc != 0) {
        snprintf(msg, len, "token endpoint %s/oauth/v2/token: %s",
                 z->accounts_url, res->error);
        return res->rc;
    }
    if (res->status != 200) { /* Zoho's own failures are 200 too */
        snprintf(msg, len, "token endpoint %s/oauth/v2/token answered HTTP %ld",
                 z->accounts_url, res->status);
        return RF_EHTTP;
    }
    rc = rf__zoho_token_parse(res->body, res->body_len, &a);
    if (rc == RF_EDENIED) {
        rc = token_error(z, &a, msg, len);
    } else if (rc == 0) {
        rc = accept_token(z, &a, msg, len);
    } else {
        snprintf(msg, len, "token endpoint %s answered without an access_token",
                 z->accounts_url);
    }
    rf__zoho_token_answer_free(&a);
    return rc;
}

static void on_token_answer(const struct rf_http_result *res, void *arg)
{
    struct rf_zoho *z = arg;
    char msg[400];
    int rc;

    rf__zoho_enter(z);
    z->refreshing = 0;
    if (!z->closing) {
        rc = token_outcome(z, res, msg, sizeof(msg));
        if (rc != 0) {
            refresh_failed(z, rc, msg);
        }
        rf__zoho_kick(z);
    }
    rf__zoho_release(z);
    rf__zoho_leave(z);
}

/* Appends "&name=value" (value encoded) to the form. */
static int form_add(char *buf, size_t cap, const char *name, const char *value)
{
    size_t len = strlen(buf);

    if (len + strlen(name) + 3 >= cap) {
        return RF_ETOOBIG;
    }
    snprintf(buf + len, cap - len, "%s%s=", len ? "&" : "", name);
    len = strlen(buf);
    return rf_zoho_url_encode(value, buf + len, cap - len);
}

/* Runs once the refresh's time is on disk (or could not be queued). */
static void send_refresh(struct rf_zoho *z, int saved, void *ctx)
{
    char url[512], form[FORM_MAX] = "";
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded",
                             NULL};
    struct rf_http_call call = {0};
    int rc;

    if (z->closing) {
        z->refreshing = 0;
        return;
    }
    snprintf(url, sizeof(url), "%s/oauth/v2/token", z->accounts_url);
    rc = form_add(form, sizeof(form), "grant_type", "refresh_token");
    rc = rc ? rc : form_add(form, sizeof(form), "client_id", z->client_id);
    rc = rc ? rc
            : form_add(form, sizeof(form), "client_secret", z->client_secret);
    rc = rc ? rc
            : form_add(form, sizeof(form), "refresh_token", z->refresh_token);
    call.method = "POST";
    call.url = url;
    call.headers = headers;
    call.body = form;
    call.body_len = strlen(form);
    call.timeout_ms = z->timeout_ms;
    call.allow = z->allow;
    call.n_allow = z->n_allow;
    rf__zoho_hold(z);
    if (rc == 0) {
        rc = rf_http_client_request(z->http, &call, on_token_answer, z);
    }
    if (rc != 0) {
        struct rf_http_result fake = {.rc = rc,
                                      .error = "cannot build the request"};

        on_token_answer(&fake, z);
    }
}

void rf__zoho_token_refresh(struct rf_zoho *z)
{
    int64_t now = rf__zoho_now(z);
    char msg[300], when[RF_ZOHO_TIME_LEN];

    if (z->refreshing || z->closing) {
        return;
    }
    if (z->denied) {
        refresh_failed(z, RF_EDENIED, z->denied_msg);
        return;
    }
    prune_times(z, now);
    if (z->n_refresh_times >= z->refresh_max) {
        if (rf_zoho_time_format((z->refresh_times[0] / 1000) +
                                    z->refresh_window_s + 1,
                                0, when, sizeof(when)) != 0) {
            snprintf(when, sizeof(when), "?");
        }
        snprintf(msg, sizeof(msg),
                 "token refresh not attempted: %zu "
                 "refreshes in the last %us reached the limit of %u (Zoho "
                 "locks the refresh token beyond it); next allowed at %s",
                 z->n_refresh_times, z->refresh_window_s, z->refresh_max, when);
        refresh_failed(z, RF_ELIMIT, msg);
        return;
    }
    z->refreshing = 1;
    z->refreshes++;
    z->refresh_times[z->n_refresh_times++] = now;
    /* Count the attempt durably before making it, so that a crash right
     * after cannot hide it from the quota. */
    if (save_token(z, send_refresh) != 0) {
        send_refresh(z, RF_ENOMEM, NULL);
    }
}

/* Referral links: GET /r/{code} redirects to the owning tenant's landing
 * page and counts the visit. */
#include "referee/redirect.h"
#include "referee/error.h"
#include "referee/log.h"
#include "referee/referrers.h"
#include "referee/tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define URL_MAX 2048

/* Appends s percent-encoded (all but RFC 3986 unreserved characters). */
static size_t encode(char *out, size_t o, size_t cap, const char *s)
{
    static const char hexd[] = "0123456789ABCDEF";

    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
            c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hexd[c >> 4];
            out[o++] = hexd[c & 15];
        }
    }
    return o;
}

/* The landing template with {code} replaced; 0 or RF_ETOOBIG. */
static int landing_url(const char *tmpl, const char *code, char *out,
                       size_t cap)
{
    const char *at = strstr(tmpl, "{code}");
    size_t pre = at ? (size_t)(at - tmpl) : strlen(tmpl), o;

    if (pre + 3 * strlen(code) + 1 >= cap) {
        return RF_ETOOBIG;
    }
    memcpy(out, tmpl, pre);
    o = at ? encode(out, pre, cap, code) : pre;
    if (at && o + strlen(at + 6) + 1 > cap) {
        return RF_ETOOBIG;
    }
    snprintf(out + o, cap - o, "%s", at ? at + 6 : "");
    return 0;
}

/* The tenant owning `code`, or NULL (answered) when there is none. */
static const struct rf_tenant *owner(struct rf_intake *in,
                                     struct rf_http_req *req, const char *code)
{
    char tenant[RF_TENANT_ID_MAX + 1], contact[256];
    MDB_txn *txn = NULL;
    int rc = rf_store_read_begin(in->store, &txn);

    if (rc == 0) {
        rc = rf_referrer_by_code(txn, in->store, code, tenant, contact,
                                 sizeof(contact));
        rf_store_read_end(in->store, txn);
    }
    if (rc == RF_ENOTFOUND) {
        rf_http_respond_error(req, 404, "unknown_code",
                              "no referrer has this referral code");
        return NULL;
    }
    if (rc != 0) {
        rf_log_error("redirect", RF_NOF, "cannot look the code up: %s",
                     rf_strerror(rc));
        rf_http_respond_error(req, 503, "store_unavailable",
                              "the code could not be looked up; retry");
        return NULL;
    }
    return rf_tenant_find(*in->tenants, tenant, strlen(tenant));
}

void rf_redirect_handle(struct rf_intake *in, struct rf_counters *c,
                        struct rf_http_req *req, const char *code, size_t len)
{
    char norm[RF_CODE_LEN + 1], url[URL_MAX], *body;
    const struct rf_tenant *t;
    cJSON *o;

    if (!rf_code_normalize(code, len, norm)) {
        rf_http_respond_error(req, 404, "unknown_code",
                              "this is not a referral code");
        return;
    }
    t = owner(in, req, norm);
    if (rf_http_answered(req)) {
        return;
    }
    if (t == NULL || t->error != NULL || t->program == NULL ||
        t->program->landing == NULL ||
        landing_url(t->program->landing, norm, url, sizeof(url)) != 0) {
        rf_http_respond_error(req, 404, "no_landing_page",
                              "this referral program has no landing page");
        return;
    }
    rf_counters_bump(c, t->id, "visits", (int64_t)time(NULL));
    rf_http_add_header(req, "Location", url);
    rf_http_add_header(req, "Cache-Control", "no-store");
    o = cJSON_CreateObject();
    body = o && cJSON_AddStringToObject(o, "location", url)
               ? cJSON_PrintUnformatted(o)
               : NULL;
    rf_http_respond_json(req, 302, body ? body : "{}", body ? strlen(body) : 2);
    cJSON_free(body);
    cJSON_Delete(o);
}

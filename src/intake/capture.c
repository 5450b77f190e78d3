/* The public referral endpoint: parse, limit, check the signature, then
 * decide and store in one write transaction. */
#include "referee/capture.h"
#include "referee/error.h"
#include "referee/events.h"
#include "referee/json_check.h"
#include "referee/log.h"
#include "referee/referrals.h"
#include "referee/script_api.h"
#include "referee/signature.h"
#include "referee/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#define FIELDS_MAX 64
#define VALUE_MAX 1024

struct capture_job {
    struct rf_write_job job; /* first: the writer hands this back */
    struct rf_capture *c;
    struct rf_http_req *req;
    struct rf_store *store;
    char tenant[RF_TENANT_ID_MAX + 1];
    char code[64];
    int has_code;
    char delivery_id[RF_DELIVERY_ID_MAX + 1]; /* signed posts */
    cJSON *person;
    struct rf_capture_in in;
    struct rf_capture_out out;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- form bodies -------------------------------------------------------- */

static int hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Decodes [s, s+n) into out (n + 1 bytes). Returns the length or -1. */
static long unescape(const char *s, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] != '%') {
            out[o++] = s[i];
        } else if (i + 2 < n && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out[o++] = (char)(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        } else {
            return -1;
        }
    }
    out[o] = '\0';
    return (long)o;
}

cJSON *rf_form_decode(const char *body, size_t len)
{
    cJSON *o = cJSON_CreateObject();
    size_t i = 0, fields = 0;

    while (o != NULL && i < len) {
        size_t end = i, eq;
        char *name, *value;
        long nl, vl;

        while (end < len && body[end] != '&') {
            end++;
        }
        for (eq = i; eq < end && body[eq] != '='; eq++) {
        }
        if (end > i) {
            if (++fields > FIELDS_MAX || eq - i > 128 ||
                end - eq > VALUE_MAX * 3) {
                cJSON_Delete(o);
                return NULL;
            }
            name = malloc(eq - i + 1);
            value = malloc(end - eq + 1);
            nl = name ? unescape(body + i, eq - i, name) : -1;
            vl = value ? (eq < end ? unescape(body + eq + 1, end - eq - 1,
                                              value)
                                   : (value[0] = '\0', 0))
                       : -1;
            if (nl <= 0 || vl < 0 ||
                !rf_utf8_valid(name, (size_t)nl) ||
                !rf_utf8_valid(value, (size_t)vl) ||
                memchr(name, 0, (size_t)nl) || memchr(value, 0, (size_t)vl)) {
                free(name);
                free(value);
                cJSON_Delete(o);
                return NULL;
            }
            /* A name given twice would let the rules check one value
             * and the CRM receive the other, as in JSON. */
            if (cJSON_GetObjectItemCaseSensitive(o, name) != NULL) {
                free(name);
                free(value);
                cJSON_Delete(o);
                return NULL;
            }
            cJSON_AddStringToObject(o, name, value);
            free(name);
            free(value);
        }
        i = end + 1;
    }
    return o;
}

/* --- the request -------------------------------------------------------- */

/* The person and code of a JSON body: either {"code", "person": {...}} or
 * a flat object whose other fields describe the person. Returns NULL, or
 * what is wrong. */
static const char *from_json(const cJSON *body, struct capture_job *j)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(body, "code");
    const cJSON *person = cJSON_GetObjectItemCaseSensitive(body, "person");

    if (!cJSON_IsObject(body)) {
        return "the body is not a JSON object";
    }
    if (person != NULL && !cJSON_IsObject(person)) {
        return "\"person\" must be an object of the person's fields";
    }
    if (person != NULL) {
        for (const cJSON *f = body->child; f; f = f->next) {
            if (strcmp(f->string, "code") && strcmp(f->string, "person")) {
                return "with \"person\", the person's fields go inside it; "
                       "only \"code\" may stand beside it";
            }
        }
    }
    if (code != NULL && !cJSON_IsString(code)) {
        return "\"code\" must be a string";
    }
    j->person = cJSON_Duplicate(person ? person : body, 1);
    if (j->person == NULL) {
        return "out of memory";
    }
    cJSON_DeleteItemFromObjectCaseSensitive(j->person, "code");
    if (code != NULL) {
        snprintf(j->code, sizeof(j->code), "%s", code->valuestring);
        j->has_code = 1;
    }
    return NULL;
}

/* People's fields are strings, numbers or booleans, not too many, not too
 * long, each named once. Returns NULL, or what is wrong. */
static const char *person_problem(const cJSON *p, char *buf, size_t len)
{
    int n = 0;

    for (const cJSON *f = p->child; f; f = f->next) {
        if (++n > FIELDS_MAX) {
            return "the person has more than 64 fields";
        }
        if (!(cJSON_IsString(f) || cJSON_IsNumber(f) || cJSON_IsBool(f) ||
              cJSON_IsNull(f))) {
            snprintf(buf, len, "field \"%.64s\" is an object or "
                     "array; a person's fields are strings, numbers, "
                     "booleans or null", f->string);
            return buf;
        }
        if (cJSON_IsString(f) && strlen(f->valuestring) > VALUE_MAX) {
            snprintf(buf, len, "field \"%.64s\" is longer than "
                     "1024 bytes", f->string);
            return buf;
        }
        /* A name given twice would let the rules check one value and the
         * CRM receive the other. */
        for (const cJSON *g = p->child; g != f; g = g->next) {
            if (strcmp(g->string, f->string) == 0) {
                snprintf(buf, len, "field \"%.64s\" is given twice",
                         f->string);
                return buf;
            }
        }
    }
    return NULL;
}

/* People type spaces around addresses: the stored email is trimmed. */
static void trim_email(cJSON *person)
{
    cJSON *e = cJSON_GetObjectItemCaseSensitive(person, "email");
    const char *s, *end;
    char *t;

    if (!cJSON_IsString(e)) {
        return;
    }
    s = e->valuestring;
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    if (s == e->valuestring && *end == '\0') {
        return;
    }
    t = strndup(s, (size_t)(end - s));
    if (t != NULL) {
        cJSON_ReplaceItemInObjectCaseSensitive(person, "email",
                                               cJSON_CreateString(t));
        free(t);
    }
}

static int is_form(struct rf_http_req *req)
{
    const char *ct = rf_http_header(req, "content-type");

    return ct != NULL &&
           strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

static int run_job(MDB_txn *txn, struct rf_write_job *job)
{
    struct capture_job *j = (struct capture_job *)job;

    return rf_referral_capture(txn, j->store, &j->in, &j->out);
}

static void free_job(struct capture_job *j)
{
    cJSON_Delete(j->person);
    free(j);
}

static const char *reason_text(const char *reason)
{
    static const struct {
        const char *code, *text;
    } texts[] = {
        {RF_REFUSE_MISSING_EMAIL, "the referred person's email is missing"},
        {RF_REFUSE_INVALID_EMAIL, "the referred person's email is not an "
                                  "email address"},
        {RF_REFUSE_INVALID_CODE, "the referral code is missing or not a "
                                 "referral code"},
        {RF_REFUSE_UNKNOWN_CODE, "no referrer has this referral code"},
        {RF_REFUSE_SELF, "referrers cannot refer themselves"},
        {RF_REFUSE_DUPLICATE, "this person was referred before"},
    };

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (strcmp(texts[i].code, reason) == 0) {
            return texts[i].text;
        }
    }
    return "the referral was refused";
}

static void on_written(struct rf_write_job *job)
{
    struct capture_job *j = (struct capture_job *)job;
    struct rf_capture *c = j->c;
    char body[128], id[24];
    int n;

    if (job->rc != 0) {
        rf_log_error("capture", RF_F("tenant", j->tenant), "cannot store: %s",
                     rf_strerror(job->rc));
        rf_http_respond_error(j->req, 503, "store_unavailable",
                              "the referral could not be stored; retry later");
        free_job(j);
        return;
    }
    snprintf(id, sizeof(id), "%llu", (unsigned long long)j->out.id);
    rf_http_add_header(j->req, "Referral-Id", id);
    if (j->out.repeat) {
        /* The sender retried: the first answer again, marked, counted
         * nowhere. */
        if (j->out.accepted) {
            n = snprintf(body, sizeof(body),
                         "{\"referral_id\":%s,\"status\":\"accepted\","
                         "\"duplicate\":true}", id);
            rf_http_respond_json(j->req, 200, body, (size_t)n);
        } else {
            rf_http_respond_error(j->req, 422, j->out.reason,
                                  "%s (this delivery was received before)",
                                  reason_text(j->out.reason));
        }
        rf_log_info("capture", RF_F("tenant", j->tenant, "referral", id),
                    "repeated delivery");
        free_job(j);
        return;
    }
    if (j->out.accepted) {
        c->accepted++;
        n = snprintf(body, sizeof(body),
                     "{\"referral_id\":%s,\"status\":\"accepted\"}", id);
        rf_http_respond_json(j->req, 201, body, (size_t)n);
        if (c->captured) {
            c->captured(c->arg, j->tenant, j->out.id);
        }
    } else {
        c->refused++;
        rf_http_respond_error(j->req, 422, j->out.reason, "%s",
                              reason_text(j->out.reason));
    }
    rf_log_info("capture", RF_F("tenant", j->tenant, "referral", id),
                "%s%s%s", j->out.accepted ? "accepted" : "refused: ",
                j->out.accepted ? "" : j->out.reason, "");
    free_job(j);
}

/* Signed posts need the tenant's secret; unsigned ones are limited per
 * client address. Answers and returns -1 when the request may not go on. */
static int admit(struct rf_capture *c, struct rf_http_req *req,
                 const struct rf_tenant *t, const char *body, size_t len,
                 const char **channel)
{
    const struct rf_tenant_program *p = t->program;
    const char *sig = rf_http_header(req, "webhook-signature");
    char key[RF_TENANT_ID_MAX + 80], wait[24];
    uint64_t ms;
    int res;

    if (rf_intake_refuse_repeats(req, NULL) != 0) {
        return -1;
    }
    if (sig != NULL) {
        if (p->secret == NULL) {
            rf_http_respond_error(req, 401, "signature_not_configured",
                                  "the tenant accepts no signed referral "
                                  "posts (program.secret)");
            return -1;
        }
        res = rf_signature_verify(p->secret, p->secret_len,
                                  rf_http_header(req, "webhook-id"),
                                  rf_http_header(req, "webhook-timestamp"),
                                  sig, body, len, (int64_t)time(NULL),
                                  c->in->tolerance_s);
        if (res != RF_SIG_OK) {
            rf_http_respond_error(req, 401, rf_signature_code(res), "%s",
                                  rf_signature_message(res));
            return -1;
        }
        if (strlen(rf_http_header(req, "webhook-id")) > RF_DELIVERY_ID_MAX) {
            /* Repeats are told apart by the whole id: never a prefix. */
            rf_http_respond_error(req, 400, "delivery_id_too_long",
                                  "webhook-id is longer than %d bytes",
                                  RF_DELIVERY_ID_MAX);
            return -1;
        }
        *channel = "webhook";
        return 0;
    }
    snprintf(key, sizeof(key), "%s %s", t->id, rf_http_client(req));
    ms = rf_ratelimit_take(c->rl, key, p->form_per_minute, mono_ms());
    if (ms > 0) {
        c->limited++;
        snprintf(wait, sizeof(wait), "%llu",
                 (unsigned long long)(ms + 999) / 1000);
        rf_http_add_header(req, "Retry-After", wait);
        rf_http_respond_error(req, 429, "rate_limited",
                              "too many referrals from this address; retry "
                              "in %s s",
                              wait);
        return -1;
    }
    *channel = is_form(req) ? "form" : "json";
    return 0;
}

void rf_capture_handle(struct rf_capture *c, struct rf_http_req *req,
                       const char *tenant, size_t tlen)
{
    const struct rf_tenant *t = rf_tenant_find(*c->in->tenants, tenant, tlen);
    const char *channel = "json";
    struct capture_job *j;
    size_t len;
    const char *body = rf_http_body(req, &len);
    cJSON *parsed = NULL;
    const char *problem;
    char err[192];

    if (t == NULL) {
        rf_http_respond_error(req, 404, "tenant_not_found", "no such tenant");
        return;
    }
    if (t->error != NULL) {
        rf_http_respond_error(req, 503, "tenant_unavailable",
                              "the tenant's script failed to load");
        return;
    }
    if (t->program == NULL) {
        rf_http_respond_error(req, 404, "program_not_configured",
                              "the tenant runs no referral program");
        return;
    }
    if (admit(c, req, t, body, len, &channel) != 0) {
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        rf_http_respond_error(req, 503, "out_of_memory", "try again later");
        return;
    }
    if (is_form(req)) {
        parsed = rf_form_decode(body, len);
        problem = parsed ? NULL
                         : "the form is not URL-encoded UTF-8, or names a "
                           "field twice, or has more than 64 fields or a "
                           "value over 1024 bytes";
    } else {
        /* Strict JSON in strict UTF-8, each name once, no \u0000. */
        parsed = rf_api_parse_body(body, len, err, sizeof(err));
        problem = parsed ? NULL : err;
    }
    if (problem == NULL) {
        problem = from_json(parsed, j);
    }
    if (problem == NULL) {
        problem = person_problem(j->person, err, sizeof(err));
    }
    cJSON_Delete(parsed);
    if (problem != NULL) {
        free_job(j);
        rf_http_respond_error(req, 400, "invalid_body", "%s", problem);
        return;
    }
    trim_email(j->person);
    j->c = c;
    j->req = req;
    j->store = c->in->store;
    snprintf(j->tenant, sizeof(j->tenant), "%s", t->id);
    if (strcmp(channel, "webhook") == 0) {
        /* Verified: a repeat of this post is answered as the first was. */
        snprintf(j->delivery_id, sizeof(j->delivery_id), "%s",
                 rf_http_header(req, "webhook-id"));
    }
    j->in = (struct rf_capture_in){j->tenant, j->has_code ? j->code : NULL,
                                   channel, j->person, now_ms(),
                                   j->delivery_id[0] ? j->delivery_id
                                                     : NULL};
    j->job.run = run_job;
    j->job.done = on_written;
    rf_writer_submit(c->in->writer, &j->job);
}

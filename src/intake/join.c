/* The public sign-up endpoint: a person becomes a referrer of a tenant, or
 * learns the code they already have. */
#include "referee/join.h"
#include "referee/capture.h"
#include "referee/error.h"
#include "referee/log.h"
#include "referee/referrals.h"
#include "referee/referrers.h"
#include "referee/script_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#define NAME_MAX_BYTES 200
#define LINK_MAX 2048

struct join_job {
    struct rf_write_job job; /* first: the writer hands this back */
    struct rf_join *j;
    struct rf_http_req *req;
    char tenant[RF_TENANT_ID_MAX + 1];
    char email[RF_EMAIL_MAX + 1], folded[RF_EMAIL_MAX + 1];
    char name[NAME_MAX_BYTES + 1];
    int has_name;
    int64_t at_ms;
    char code[RF_CODE_LEN + 1]; /* out */
    int created;                /* out */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The code of the referrer who has the joining email, through the email
 * index. Returns 0 (found), RF_ENOTFOUND or an RF_E* code. */
static int existing_code(MDB_txn *txn, const struct rf_store *st,
                         struct join_job *jj)
{
    char contact[RF_CONTACT_ID_MAX + 1];
    const cJSON *c;
    cJSON *r = NULL;
    int rc = rf_referrer_by_email(txn, st, jj->tenant, jj->folded, contact,
                                  sizeof(contact));

    if (rc == 0) {
        rc = rf_referrer_get(txn, st, jj->tenant, contact, &r);
    }
    if (rc != 0) {
        return rc;
    }
    c = cJSON_GetObjectItemCaseSensitive(r, "code");
    if (cJSON_IsString(c) && strlen(c->valuestring) == RF_CODE_LEN) {
        memcpy(jj->code, c->valuestring, RF_CODE_LEN + 1);
    } else {
        rc = RF_ESTORE;
    }
    cJSON_Delete(r);
    return rc;
}

static int run_job(MDB_txn *txn, struct rf_write_job *job)
{
    struct join_job *jj = (struct join_job *)job;
    const struct rf_store *st = jj->j->in->store;
    char id[32];
    uint64_t n;
    int rc;

    jj->created = 0;
    jj->code[0] = '\0';
    rc = existing_code(txn, st, jj);
    if (rc != RF_ENOTFOUND) {
        return rc; /* 0: a referrer already, answered with its code */
    }
    rc = rf_store_next_seq(txn, st, "join_seq", &n);
    if (rc == 0) {
        struct rf_referrer_in in = {
            .tenant = jj->tenant, .contact_id = id, .email = jj->email,
            .name = jj->has_name ? jj->name : NULL, .source = "join",
            .at_ms = jj->at_ms};

        snprintf(id, sizeof(id), "join:%llu", (unsigned long long)n);
        rc = rf_referrer_enrol(txn, st, &in, jj->code, &jj->created);
    }
    return rc;
}

/* program.link with {code} replaced, as a JSON value (null when none). */
static cJSON *link_of(const struct rf_tenant *t, const char *code)
{
    const char *tmpl = t && t->program ? t->program->link : NULL;
    const char *at = tmpl ? strstr(tmpl, "{code}") : NULL;
    char buf[LINK_MAX];

    if (at == NULL) {
        return cJSON_CreateNull();
    }
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - tmpl), tmpl, code,
             at + 6);
    return cJSON_CreateString(buf);
}

static void on_written(struct rf_write_job *job)
{
    struct join_job *jj = (struct join_job *)job;
    const struct rf_tenant *t;
    cJSON *o;
    char *body;

    if (job->rc != 0) {
        rf_log_error("join", RF_F("tenant", jj->tenant), "cannot store: %s",
                     rf_strerror(job->rc));
        rf_http_respond_error(jj->req, 503, "store_unavailable",
                              "the sign-up could not be stored; retry later");
        free(jj);
        return;
    }
    t = rf_tenant_find(*jj->j->in->tenants, jj->tenant, strlen(jj->tenant));
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "code", jj->code);
    cJSON_AddItemToObject(o, "link", link_of(t, jj->code));
    if (!jj->created) {
        cJSON_AddTrueToObject(o, "existing");
    }
    body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (body == NULL) {
        rf_http_respond_error(jj->req, 503, "out_of_memory", "retry later");
    } else {
        rf_http_respond_json(jj->req, jj->created ? 201 : 200, body,
                             strlen(body));
    }
    cJSON_free(body);
    jj->created ? jj->j->joined++ : jj->j->existing++;
    rf_log_info("join", RF_F("tenant", jj->tenant), "%s",
                jj->created ? "joined" : "already a referrer");
    free(jj);
}

/* Limits unsigned sign-ups per client address. -1 when answered. */
static int admit(struct rf_join *j, struct rf_http_req *req,
                 const struct rf_tenant *t)
{
    char key[RF_TENANT_ID_MAX + 80], wait[24];
    uint64_t ms;

    snprintf(key, sizeof(key), "join %s %s", t->id, rf_http_client(req));
    ms = rf_ratelimit_take(j->rl, key, t->program->form_per_minute, mono_ms());
    if (ms == 0) {
        return 0;
    }
    j->limited++;
    snprintf(wait, sizeof(wait), "%llu", (unsigned long long)(ms + 999) / 1000);
    rf_http_add_header(req, "Retry-After", wait);
    rf_http_respond_error(req, 429, "rate_limited",
                          "too many sign-ups from this address; retry in "
                          "%s s",
                          wait);
    return -1;
}

/* Copies s without the spaces and tabs around it (people type them, as
 * at capture) into out. Returns -1 when it does not fit. */
static int trimmed(const char *s, char *out, size_t n)
{
    size_t len;

    s += strspn(s, " \t");
    len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
        len--;
    }
    if (len >= n) {
        return -1;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

/* Reads email and name from the body into jj. -1 when answered. */
static int read_body(struct rf_join *j, struct rf_http_req *req,
                     struct join_job *jj)
{
    const char *ct = rf_http_header(req, "content-type"), *body;
    const cJSON *email, *name;
    char err[96];
    size_t len;
    cJSON *o;

    body = rf_http_body(req, &len);
    o = ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0
            ? rf_form_decode(body, len)
            : rf_api_parse_body(body, len, err, sizeof(err));
    email = cJSON_GetObjectItemCaseSensitive(o, "email");
    name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsObject(o) || (name && !cJSON_IsString(name)) ||
        (name && strlen(name->valuestring) > NAME_MAX_BYTES) ||
        (email && !cJSON_IsString(email))) {
        cJSON_Delete(o);
        rf_http_respond_error(req, 400, "invalid_body",
                              "expected a JSON object or a form with "
                              "\"email\" and optionally \"name\" (at most "
                              "%d bytes)",
                              NAME_MAX_BYTES);
        return -1;
    }
    if (email == NULL || email->valuestring[0] == '\0') {
        rf_http_respond_error(req, 422, RF_REFUSE_MISSING_EMAIL,
                              "an email is needed to join");
    } else if (trimmed(email->valuestring, jj->email, sizeof(jj->email)) ||
               rf_email_fold(jj->email, jj->folded) != 0) {
        rf_http_respond_error(req, 422, RF_REFUSE_INVALID_EMAIL,
                              "the email is not an email address");
    } else {
        jj->has_name = name != NULL;
        snprintf(jj->name, sizeof(jj->name), "%s",
                 name ? name->valuestring : "");
    }
    cJSON_Delete(o);
    if (rf_http_answered(req)) {
        j->refused++;
        return -1;
    }
    return 0;
}

void rf_join_handle(struct rf_join *j, struct rf_http_req *req,
                    const char *tenant, size_t tlen)
{
    const struct rf_tenant *t = rf_tenant_find(*j->in->tenants, tenant, tlen);
    struct join_job *jj;
    struct timespec ts;

    if (t == NULL) {
        rf_http_respond_error(req, 404, "tenant_not_found", "no such tenant");
        return;
    }
    if (t->error != NULL || t->program == NULL) {
        rf_http_respond_error(req, t->error ? 503 : 404,
                              t->error ? "tenant_unavailable"
                                       : "program_not_configured",
                              "the tenant runs no referral program now");
        return;
    }
    if (admit(j, req, t) != 0) {
        return;
    }
    jj = calloc(1, sizeof(*jj));
    if (jj == NULL) {
        rf_http_respond_error(req, 503, "out_of_memory", "try again later");
        return;
    }
    if (read_body(j, req, jj) != 0) {
        free(jj);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    jj->at_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    jj->j = j;
    jj->req = req;
    snprintf(jj->tenant, sizeof(jj->tenant), "%s", t->id);
    jj->job.run = run_job;
    jj->job.done = on_written;
    rf_writer_submit(j->in->writer, &jj->job);
}

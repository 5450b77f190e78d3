/* The outbox's built-in executor for plain HTTP side effects (outgoing
 * webhooks, simple reward APIs), and how an HTTP answer is classified. */
#include "referee/error.h"
#include "referee/http_client.h"
#include "referee/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define HEADERS_MAX 16

enum rf_job_result rf_outbox_classify_http(int rc, long status, int body_ok)
{
    if (rc == RF_EDENIED) {
        return RF_JOB_PERMANENT;
    }
    if (rc != 0) {
        return RF_JOB_UNKNOWN; /* timeout, reset, oversized: maybe sent */
    }
    if (status >= 200 && status < 300) {
        return body_ok ? RF_JOB_OK : RF_JOB_UNKNOWN;
    }
    if (status == 408 || status == 425 || status == 429 || status >= 500) {
        return RF_JOB_TRANSIENT;
    }
    return RF_JOB_PERMANENT;
}

int64_t rf_outbox_retry_after(const char *value)
{
    struct tm tm = {0};
    char *end;
    long secs;

    if (value == NULL || *value == '\0') {
        return -1;
    }
    secs = strtol(value, &end, 10);
    if (*end == '\0' && secs >= 0) {
        return (int64_t)secs * 1000;
    }
    end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == NULL || *end != '\0') {
        return -1;
    }
    secs = (long)(timegm(&tm) - time(NULL));
    return secs > 0 ? (int64_t)secs * 1000 : 0;
}

struct attempt {
    struct rf_outbox_run *run;
    int expect_json;
};

static void on_answer(const struct rf_http_result *res, void *arg)
{
    struct attempt *a = arg;
    struct rf_job_outcome o = {RF_JOB_OK, -1, NULL, NULL};
    char error[300];
    int body_ok = 1;
    cJSON *json = NULL;

    if (res->rc == 0 && a->expect_json) {
        json = cJSON_ParseWithLength(res->body, res->body_len);
        body_ok = json != NULL;
    }
    o.result = rf_outbox_classify_http(res->rc, res->status, body_ok);
    for (size_t i = 0; i < res->nheaders; i++) {
        if (strcmp(res->headers[i][0], "retry-after") == 0) {
            o.retry_after_ms = rf_outbox_retry_after(res->headers[i][1]);
        }
    }
    if (res->rc != 0) {
        snprintf(error, sizeof(error), "%s", res->error);
    } else {
        snprintf(error, sizeof(error), "HTTP %ld: %.200s", res->status,
                 res->body);
    }
    o.error = o.result == RF_JOB_OK ? NULL : error;
    o.result_json = json && o.result == RF_JOB_OK ? res->body : NULL;
    rf_outbox_finish(a->run, &o);
    cJSON_Delete(json);
    free(a);
}

/* Refuses a job whose payload cannot be sent: nothing will change that. */
static void refuse(struct rf_outbox_run *run, const char *why)
{
    struct rf_job_outcome o = {RF_JOB_PERMANENT, -1, why, NULL};

    rf_outbox_finish(run, &o);
}

static void exec_http(const struct rf_job *job, struct rf_outbox_run *run,
                      void *arg)
{
    struct rf_outbox_http *x = arg;
    cJSON *p = cJSON_Parse(job->payload);
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(p, "url");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(p, "method");
    const cJSON *hdrs = cJSON_GetObjectItemCaseSensitive(p, "headers");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(p, "body");
    const cJSON *json = cJSON_GetObjectItemCaseSensitive(p, "json");
    char lines[HEADERS_MAX + 2][512], *text = NULL;
    const char *hp[HEADERS_MAX + 3];
    struct rf_http_call call = {0};
    struct attempt *a;
    size_t n = 0;

    if (!cJSON_IsString(url)) {
        refuse(run, "payload has no url");
        goto out;
    }
    snprintf(lines[n], sizeof(lines[n]), "Idempotency-Key: %s", job->key);
    hp[n] = lines[n];
    n++;
    for (const cJSON *h = hdrs ? hdrs->child : NULL; h && n < HEADERS_MAX;
         h = h->next) {
        if (cJSON_IsString(h) && !strpbrk(h->valuestring, "\r\n") &&
            !strpbrk(h->string, "\r\n:")) {
            snprintf(lines[n], sizeof(lines[n]), "%s: %s", h->string,
                     h->valuestring);
            hp[n] = lines[n];
            n++;
        }
    }
    hp[n] = NULL;
    if (json) {
        text = cJSON_PrintUnformatted(json);
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        struct rf_job_outcome o = {RF_JOB_TRANSIENT, -1, "out of memory",
                                   NULL};

        rf_outbox_finish(run, &o);
        goto out;
    }
    a->run = run;
    a->expect_json = cJSON_IsTrue(
        cJSON_GetObjectItemCaseSensitive(p, "expect_json"));
    call.method = cJSON_IsString(method) ? method->valuestring : "POST";
    call.url = url->valuestring;
    call.headers = hp;
    call.body = text ? text : cJSON_IsString(body) ? body->valuestring : NULL;
    call.body_len = call.body ? strlen(call.body) : 0;
    call.timeout_ms = 15000;
    if (x->allow && x->allow(job->tenant, &call.allow, &call.n_allow,
                             x->arg) != 0) {
        free(a);
        refuse(run, "the tenant no longer exists");
        goto out;
    }
    if (rf_http_client_request(x->client, &call, on_answer, a) != 0) {
        struct rf_job_outcome o = {RF_JOB_TRANSIENT, -1, "out of memory",
                                   NULL};

        free(a);
        rf_outbox_finish(run, &o);
    }
out:
    cJSON_free(text);
    cJSON_Delete(p);
}

int rf_outbox_http_executor(struct rf_outbox *ob, struct rf_outbox_http *x)
{
    return rf_outbox_executor(ob, "http", exec_http, x);
}

/* The admin HTTP API: bearer-token authentication, routing, and the store
 * work of each request on libuv's thread pool. */
#include "referee/admin.h"
#include "referee/error.h"
#include "referee/log.h"
#include "referee/outbox.h"
#include "referee/referrals.h"
#include "referee/referrers.h"
#include "referee/report.h"
#include "referee/reward.h"
#include "referee/script_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

enum what {
    REFERRERS = 0, REFERRALS, DEAD, REPLAY, REPORT, REVIEW, APPROVE, REJECT
};

static const struct {
    const char *rest, *method;
} routes[] = {
    [REFERRERS] = {"/referrers", "GET"}, [REFERRALS] = {"/referrals", "GET"},
    [DEAD] = {"/dead", "GET"},           [REPLAY] = {"/dead/replay", "POST"},
    [REPORT] = {"/report", "GET"},       [REVIEW] = {"/review", "GET"},
    /* "/review/{referral id}/approve" and ".../reject" */
    [APPROVE] = {"/approve", "POST"},     [REJECT] = {"/reject", "POST"},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

struct rf_admin {
    uv_loop_t *loop;
    struct rf_http_server *http;
    struct rf_store *st;
    const struct rf_tenants *const *tenants;
    unsigned char token[SHA256_DIGEST_LENGTH];
    unsigned works; /* on the thread pool */
    int stopped;
};

struct work {
    uv_work_t w;
    struct rf_admin *a;
    struct rf_http_req *req;
    enum what what;
    char tenant[RF_TENANT_ID_MAX + 1];
    uint64_t job;      /* dead letter (REPLAY), or referral (APPROVE...) */
    char reason[RF_REVIEW_REASON_BYTES]; /* REJECT */
    int jobs;          /* APPROVE: jobs added */
    unsigned status;
    const char *code; /* error code when status is not 200 */
    char *body;       /* JSON text, or the error message */
};

/* --- routing ------------------------------------------------------------- */

/* "/admin/t/{tenant}{rest}": the route, or -1. */
static int match(const char *path, const char **t, size_t *tlen)
{
    const char *p;

    if (strncmp(path, "/admin/t/", 9) != 0) {
        return -1;
    }
    *t = path + 9;
    p = strchr(*t, '/');
    if (p == NULL || p == *t) {
        return -1;
    }
    *tlen = (size_t)(p - *t);
    if (strncmp(p, "/review/", 8) == 0) {
        size_t digits = strspn(p + 8, "0123456789");

        if (digits == 0 || digits > 19) {
            return -1;
        }
        p += 8 + digits;
        return strcmp(p, "/approve") == 0  ? APPROVE
               : strcmp(p, "/reject") == 0 ? REJECT
                                           : -1;
    }
    for (size_t i = 0; i < NROUTES; i++) {
        if (i != APPROVE && i != REJECT && strcmp(p, routes[i].rest) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* The referral id of "/admin/t/{tenant}/review/{id}/...". */
static uint64_t review_id(const char *path)
{
    const char *p = strstr(path, "/review/");

    return p ? strtoull(p + 8, NULL, 10) : 0;
}

/* Whether the request carries the token: hashes of both compared in
 * constant time, so the length of a wrong guess tells nothing. */
static int authorized(const struct rf_admin *a, struct rf_http_req *req)
{
    const char *h = rf_http_header(req, "authorization");
    unsigned char got[SHA256_DIGEST_LENGTH];

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return 0;
    }
    h += 7;
    SHA256((const unsigned char *)h, strlen(h), got);
    return CRYPTO_memcmp(got, a->token, sizeof(got)) == 0;
}

static void on_headers(struct rf_http_req *req, void *arg)
{
    struct rf_admin *a = arg;
    const char *t;
    size_t tlen;
    int r;

    if (!authorized(a, req)) {
        rf_http_add_header(req, "WWW-Authenticate", "Bearer");
        rf_http_respond_error(req, 401, "unauthorized",
                              "send Authorization: Bearer <admin token>");
        return;
    }
    r = match(rf_http_path(req), &t, &tlen);
    if (r < 0) {
        rf_http_respond_error(req, 404, "not_found", "no such endpoint");
        return;
    }
    if (strcmp(rf_http_method(req), routes[r].method) != 0 &&
        !(strcmp(routes[r].method, "GET") == 0 &&
          strcmp(rf_http_method(req), "HEAD") == 0)) {
        rf_http_add_header(req, "Allow", routes[r].method);
        rf_http_respond_error(req, 405, "method_not_allowed", "use %s",
                              routes[r].method);
        return;
    }
    if (rf_tenant_find(*a->tenants, t, tlen) == NULL) {
        rf_http_respond_error(req, 404, "tenant_not_found", "no such tenant");
    }
}

/* --- the work, on the thread pool ----------------------------------------- */

static int add_copy(const cJSON *item, void *arg)
{
    cJSON *copy = cJSON_Duplicate(item, 1);

    if (copy == NULL) {
        return RF_ENOMEM;
    }
    cJSON_AddItemToArray(arg, copy);
    return 0;
}

static int add_job(const struct rf_job *j, void *arg)
{
    cJSON *o = cJSON_CreateObject();

    if (o == NULL) {
        return RF_ENOMEM;
    }
    cJSON_AddNumberToObject(o, "id", (double)j->id);
    cJSON_AddStringToObject(o, "kind", j->kind);
    cJSON_AddStringToObject(o, "key", j->key);
    cJSON_AddNumberToObject(o, "attempts", j->attempts);
    cJSON_AddNumberToObject(o, "created_ms", (double)j->created_ms);
    cJSON_AddNumberToObject(o, "failed_ms", (double)j->finished_ms);
    cJSON_AddStringToObject(o, "last_error",
                            j->last_error ? j->last_error : "");
    cJSON_AddRawToObject(o, "payload", j->payload ? j->payload : "null");
    cJSON_AddItemToArray(arg, o);
    return 0;
}

/* A list of what `each` yields, under `name`, in one read transaction. */
static int list(struct work *w, const char *name, cJSON *out,
                int (*each)(MDB_txn *, const struct rf_store *, const char *,
                            int (*)(const cJSON *, void *), void *))
{
    cJSON *arr = cJSON_AddArrayToObject(out, name);
    MDB_txn *txn = NULL;
    int rc = arr ? rf_store_read_begin(w->a->st, &txn) : RF_ENOMEM;

    if (rc == 0) {
        rc = each(txn, w->a->st, w->tenant, add_copy, arr);
        rf_store_read_end(w->a->st, txn);
    }
    return rc;
}

static int replay(struct work *w, cJSON **out)
{
    long n = rf_outbox_replay(w->a->st, w->tenant, w->job);

    if (n < 0) {
        return (int)n;
    }
    if (w->job != 0 && n == 0) {
        w->status = 404;
        w->code = "job_not_found";
        return 0;
    }
    *out = cJSON_CreateObject();
    return *out && cJSON_AddNumberToObject(*out, "replayed", (double)n)
               ? 0
               : RF_ENOMEM;
}

static int add_if_review(const cJSON *r, void *arg)
{
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(r, "status");

    if (cJSON_IsString(status) && strcmp(status->valuestring, "review") == 0) {
        return add_copy(r, arg);
    }
    return 0;
}

static int decide_txn(MDB_txn *txn, void *ctx)
{
    struct work *w = ctx;
    int64_t now = (int64_t)time(NULL) * 1000;

    return w->what == APPROVE
               ? rf_reward_approve(txn, w->a->st, w->tenant, w->job, now,
                                   &w->jobs)
               : rf_reward_reject(txn, w->a->st, w->tenant, w->job,
                                  w->reason, now);
}

/* Approves or rejects a held reward, as `referee review` does. */
static int decide(struct work *w, cJSON **out)
{
    int rc = rf_store_write(w->a->st, decide_txn, w);

    if (rc == RF_ENOTFOUND || rc == RF_EINVAL) {
        w->status = rc == RF_ENOTFOUND ? 404 : 409;
        w->code = rc == RF_ENOTFOUND ? "referral_not_found"
                                     : "not_waiting_for_review";
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    *out = cJSON_CreateObject();
    if (*out == NULL ||
        !cJSON_AddNumberToObject(*out, "referral", (double)w->job) ||
        !cJSON_AddStringToObject(*out, "status", w->what == APPROVE
                                                     ? "rewarded"
                                                     : "review_rejected") ||
        (w->what == APPROVE &&
         !cJSON_AddNumberToObject(*out, "jobs", (double)w->jobs))) {
        return RF_ENOMEM;
    }
    return 0;
}

static int run(struct work *w, cJSON **out)
{
    cJSON *arr;

    if (w->what == APPROVE || w->what == REJECT) {
        return decide(w, out);
    }
    if (w->what == REPORT) {
        return rf_report_compute(w->a->st, w->tenant, (int64_t)time(NULL), out);
    }
    if (w->what == REPLAY) {
        return replay(w, out);
    }
    *out = cJSON_CreateObject();
    if (*out == NULL) {
        return RF_ENOMEM;
    }
    cJSON_AddStringToObject(*out, "tenant", w->tenant);
    if (w->what == REFERRERS) {
        return list(w, "referrers", *out, rf_referrers_each);
    }
    if (w->what == REFERRALS) {
        return list(w, "referrals", *out, rf_referrals_each);
    }
    if (w->what == REVIEW) {
        MDB_txn *txn = NULL;
        int rc;

        arr = cJSON_AddArrayToObject(*out, "review");
        rc = arr ? rf_store_read_begin(w->a->st, &txn) : RF_ENOMEM;
        if (rc == 0) {
            rc = rf_referrals_each(txn, w->a->st, w->tenant, add_if_review,
                                   arr);
            rf_store_read_end(w->a->st, txn);
        }
        return rc;
    }
    arr = cJSON_AddArrayToObject(*out, "dead");
    return arr ? rf_outbox_each(w->a->st, w->tenant, RF_JOB_DEAD, add_job, arr)
               : RF_ENOMEM;
}

static void on_work(uv_work_t *uw)
{
    struct work *w = uw->data;
    cJSON *out = NULL;
    int rc;

    w->status = 200;
    rc = run(w, &out);
    if (rc != 0) {
        w->status = 503;
        w->code = "store_unavailable";
        w->body = strdup(rf_strerror(rc));
    } else if (w->status == 200) {
        w->body = cJSON_PrintUnformatted(out);
        if (w->body == NULL) {
            w->status = 503;
            w->code = "out_of_memory";
        }
    }
    cJSON_Delete(out);
}

static void admin_free(struct rf_admin *a)
{
    OPENSSL_cleanse(a->token, sizeof(a->token));
    free(a);
}

static void after_work(uv_work_t *uw, int status)
{
    struct work *w = uw->data;
    struct rf_admin *a = w->a;

    a->works--;
    if (a->stopped) {
        /* The listener is gone and answered the request 503 itself. */
    } else if (w->status == 200) {
        rf_http_respond_json(w->req, 200, w->body, strlen(w->body));
    } else if (w->status == 404) {
        rf_http_respond_error(w->req, 404, w->code, "%s",
                              w->what == REPLAY ? "no such dead letter"
                                                : "no such referral");
    } else if (w->status == 409) {
        rf_http_respond_error(w->req, 409, w->code,
                              "the referral is not waiting for review");
    } else {
        rf_log_error("admin", RF_F("tenant", w->tenant), "request failed: %s",
                     w->body ? w->body : w->code);
        rf_http_respond_error(w->req, 503, w->code,
                              "the store could not be read; retry");
    }
    free(w->body);
    free(w);
    if (a->stopped && a->works == 0) {
        admin_free(a);
    }
}

/* Reads {"reason": "..."} into out; answers 400 and returns -1 when the
 * body is not that, or the reason breaks the review rule. */
static int read_reason(struct rf_http_req *req, char *out, size_t n)
{
    size_t len;
    const char *body = rf_http_body(req, &len);
    char why[160];
    cJSON *j = body ? rf_api_parse_body(body, len, why, sizeof(why)) : NULL;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "reason");
    const char *problem = NULL;

    if (body != NULL && len > 0 && j == NULL) {
        rf_http_respond_error(req, 400, "invalid_body", "%s", why);
        return -1;
    }
    if (!cJSON_IsString(r)) {
        cJSON_Delete(j);
        rf_http_respond_error(req, 400, "reason_required",
                              "send {\"reason\": \"...\"}: a rejection "
                              "keeps its reason (1 to %d characters)",
                              RF_REVIEW_REASON_MAX);
        return -1;
    }
    problem = rf_review_reason_problem(r->valuestring);
    if (problem == NULL && strlen(r->valuestring) >= n) {
        problem = "the reason is too long";
    }
    if (problem == NULL) {
        snprintf(out, n, "%s", r->valuestring);
    } else {
        rf_http_respond_error(req, 400, "invalid_reason",
                              "%s (1 to %d characters, no line breaks)",
                              problem, RF_REVIEW_REASON_MAX);
    }
    cJSON_Delete(j);
    return problem == NULL ? 0 : -1;
}

static void on_request(struct rf_http_req *req, void *arg)
{
    struct rf_admin *a = arg;
    const char *t, *job = rf_http_query(req, "job");
    size_t tlen;
    int r = match(rf_http_path(req), &t, &tlen);
    struct work *w = r >= 0 ? calloc(1, sizeof(*w)) : NULL;
    char *end = NULL;

    if (w == NULL) {
        rf_http_respond_error(req, 503, "out_of_memory", "try again later");
        return;
    }
    w->a = a;
    w->req = req;
    w->what = (enum what)r;
    snprintf(w->tenant, sizeof(w->tenant), "%.*s", (int)tlen, t);
    if (r == REPLAY && job != NULL &&
        ((w->job = strtoull(job, &end, 10)) == 0 || *end != '\0')) {
        free(w);
        rf_http_respond_error(req, 400, "invalid_job",
                              "job is a dead letter's id (a number)");
        return;
    }
    if (r == APPROVE || r == REJECT) {
        w->job = review_id(rf_http_path(req));
    }
    if (r == REJECT && read_reason(req, w->reason, sizeof(w->reason)) != 0) {
        free(w);
        return; /* answered */
    }
    w->w.data = w;
    if (uv_queue_work(a->loop, &w->w, on_work, after_work) != 0) {
        free(w);
        rf_http_respond_error(req, 503, "busy", "try again later");
        return;
    }
    a->works++;
}

/* --- start and stop --------------------------------------------------------
 */

struct rf_admin *rf_admin_start(uv_loop_t *loop, struct rf_store *st,
                                const struct rf_tenants *const *tenants,
                                const char *host, unsigned port,
                                const struct rf_http_limits *limits,
                                const char *token)
{
    struct rf_admin *a = calloc(1, sizeof(*a));
    struct rf_http_app app = {on_headers, on_request, a};

    if (a == NULL) {
        return NULL;
    }
    a->loop = loop;
    a->st = st;
    a->tenants = tenants;
    SHA256((const unsigned char *)token, strlen(token), a->token);
    a->http = rf_http_server_start(loop, host, port, limits, &app);
    if (a->http == NULL) {
        admin_free(a);
        return NULL;
    }
    return a;
}

unsigned rf_admin_port(const struct rf_admin *a)
{
    return rf_http_server_port(a->http);
}

void rf_admin_quiesce(struct rf_admin *a)
{
    if (a != NULL) {
        rf_http_server_quiesce(a->http);
    }
}

size_t rf_admin_inflight(const struct rf_admin *a)
{
    return a ? rf_http_server_inflight(a->http) : 0;
}

void rf_admin_stop(struct rf_admin *a)
{
    if (a == NULL) {
        return;
    }
    a->stopped = 1;
    rf_http_server_stop(a->http);
    a->http = NULL;
    if (a->works == 0) {
        admin_free(a);
    }
}

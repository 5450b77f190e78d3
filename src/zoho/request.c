/* REST calls of one tenant: a ready queue run up to the concurrency limit
 * (AIMD: halved on 429, one more per window of successes), credits checked
 * before each send, and retries after 401, 429, 5xx and timeouts. */
#include "referee/error.h"
#include "referee/log.h"
#include "referee/zoho_text.h"
#include "zoho/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_BYTES 8192
#define HEADER_BYTES 512

enum { IN_NONE = 0, IN_READY, IN_DELAYED, IN_FLIGHT };

/* --- lists --------------------------------------------------------------- */

static struct rf__zoho_list_head *list_of(struct rf_zoho *z, int where)
{
    switch (where) {
    case IN_READY:
        return &z->ready;
    case IN_DELAYED:
        return &z->delayed;
    default:
        return &z->inflight;
    }
}

static void unlink_req(struct rf__zoho_req *r)
{
    struct rf__zoho_list_head *l;

    if (r->where == IN_NONE) {
        return;
    }
    l = list_of(r->z, r->where);
    if (r->prev) {
        r->prev->next = r->next;
    } else {
        l->head = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    } else {
        l->tail = r->prev;
    }
    r->prev = r->next = NULL;
    r->where = IN_NONE;
    l->n--;
}

/* Links r after `after` (NULL: at the head). */
static void link_after(struct rf__zoho_req *r, int where,
                       struct rf__zoho_req *after)
{
    struct rf__zoho_list_head *l = list_of(r->z, where);

    r->where = where;
    r->prev = after;
    r->next = after ? after->next : l->head;
    if (r->next) {
        r->next->prev = r;
    } else {
        l->tail = r;
    }
    if (after) {
        after->next = r;
    } else {
        l->head = r;
    }
    l->n++;
}

static void push_tail(struct rf__zoho_req *r, int where)
{
    link_after(r, where, list_of(r->z, where)->tail);
}

static void free_req(struct rf__zoho_req *r)
{
    free(r->path);
    free(r->body);
    free(r);
}

/* Hands the outcome to the caller and frees the request. */
static void finish(struct rf__zoho_req *r, int rc, long status,
                   const cJSON *json, const char *code, const char *message,
                   const char *error)
{
    struct rf_zoho_result res = {rc,      status, json,       code,
                                 message, error,  r->attempts};

    unlink_req(r);
    r->done(&res, r->arg);
    free_req(r);
}

/* --- limits -------------------------------------------------------------- */

static size_t limit(const struct rf_zoho *z)
{
    return z->cwnd < 1 ? 1 : (size_t)z->cwnd;
}

/* One 429 halves the limit once per window: calls sent before the last
 * cut do not cut again. */
static void cut(struct rf_zoho *z, const struct rf__zoho_req *r)
{
    char tenant_limit[16];

    if (r->sent_seq <= z->cut_seq) {
        return;
    }
    z->cwnd = z->cwnd / 2 < 1 ? 1 : z->cwnd / 2;
    z->cut_seq = z->send_seq;
    z->cuts++;
    snprintf(tenant_limit, sizeof(tenant_limit), "%zu", limit(z));
    rf_log_warn("zoho",
                RF_F("tenant", z->tenant, "event", "throttled", "concurrency",
                     tenant_limit),
                "Zoho answered 429; concurrency lowered");
}

static void grow(struct rf_zoho *z)
{
    z->cwnd += 1.0 / (z->cwnd < 1 ? 1 : z->cwnd);
    if (z->cwnd > z->conc_max) {
        z->cwnd = z->conc_max;
    }
}

/* Full jitter: uniform in [0, min(cap, base * 2^n)]. */
static uint64_t backoff(struct rf_zoho *z, unsigned base, unsigned cap,
                        unsigned n)
{
    uint64_t ceil = (uint64_t)base << (n > 20 ? 20 : n);

    if (ceil > cap) {
        ceil = cap;
    }
    return rf__zoho_random(z) % (ceil + 1);
}

/* --- the queue ----------------------------------------------------------- */

static void on_kick(uv_timer_t *t)
{
    rf__zoho_kick_run(t->data);
}

void rf__zoho_kick(struct rf_zoho *z)
{
    if (!z->closing) {
        uv_timer_start(&z->kick, on_kick, 0, 0);
    }
}

static void arm_delay(struct rf_zoho *z)
{
    uint64_t now = uv_now(z->loop);
    struct rf__zoho_req *first = z->delayed.head;

    if (z->closing || first == NULL) {
        return;
    }
    uv_timer_start(&z->delay, rf__zoho_on_delay,
                   first->due > now ? first->due - now : 0, 0);
}

/* Puts r aside for `ms`, keeping the delayed list sorted by due time. */
static void delay(struct rf__zoho_req *r, uint64_t ms)
{
    struct rf_zoho *z = r->z;
    struct rf__zoho_req *after = z->delayed.tail;

    r->due = uv_now(z->loop) + ms;
    while (after && after->due > r->due) {
        after = after->prev;
    }
    link_after(r, IN_DELAYED, after);
    z->retries++;
    arm_delay(z);
}

void rf__zoho_on_delay(uv_timer_t *t)
{
    struct rf_zoho *z = t->data;
    uint64_t now = uv_now(z->loop);

    while (z->delayed.head && z->delayed.head->due <= now) {
        struct rf__zoho_req *r = z->delayed.head;

        unlink_req(r);
        push_tail(r, IN_READY);
    }
    arm_delay(z);
    rf__zoho_kick(z);
}

void rf__zoho_fail_ready(struct rf_zoho *z, int rc, const char *error)
{
    rf__zoho_enter(z);
    while (z->ready.head) {
        finish(z->ready.head, rc, 0, NULL, NULL, NULL, error);
    }
    rf__zoho_leave(z);
}

void rf__zoho_fail_all(struct rf_zoho *z)
{
    rf__zoho_enter(z);
    rf__zoho_fail_ready(z, RF_ESTOPPING, "the Zoho connection is closing");
    while (z->delayed.head) {
        finish(z->delayed.head, RF_ESTOPPING, 0, NULL, NULL, NULL,
               "the Zoho connection is closing");
    }
    rf__zoho_leave(z);
}

/* --- sending ------------------------------------------------------------- */

static void on_answer(const struct rf_http_result *res, void *arg);

/* Refuses r when the day's credits would be overdrawn. */
static int over_budget(struct rf__zoho_req *r)
{
    struct rf_zoho *z = r->z;
    uint64_t used = rf__zoho_credits_used(z);
    char msg[200];

    if (used + r->cost <= z->budget) {
        return 0;
    }
    snprintf(msg, sizeof(msg),
             "daily Zoho API credit budget exhausted: %llu of %llu credits "
             "used in the last 24 h; this call needs %u",
             (unsigned long long)used, (unsigned long long)z->budget, r->cost);
    rf_log_warn("zoho", RF_F("tenant", z->tenant, "event", "credits"), "%s",
                msg);
    finish(r, RF_ELIMIT, 0, NULL, NULL, NULL, msg);
    return 1;
}

/* Counts r as sent: in flight, credits charged, holding the connection. */
static void mark_sent(struct rf__zoho_req *r)
{
    struct rf_zoho *z = r->z;

    r->token_gen = z->token_gen;
    r->sent_seq = ++z->send_seq;
    r->attempts++;
    r->charged_min = rf__zoho_credits_charge(z, r->cost);
    push_tail(r, IN_FLIGHT);
    if (r->heavy) {
        z->heavy_in_flight++;
    }
    if (z->inflight.n > z->max_in_flight) {
        z->max_in_flight = z->inflight.n;
    }
    z->calls++;
    rf__zoho_hold(z);
}

/* Header lines of r: the token, and Content-Type and If-Modified-Since
 * when they apply. `auth` and `ims` are the caller's buffers. */
static void make_headers(const struct rf__zoho_req *r, char *auth, char *ims,
                         const char *headers[4])
{
    char when[RF_ZOHO_TIME_LEN];
    size_t nh = 0;

    snprintf(auth, HEADER_BYTES, "Authorization: Zoho-oauthtoken %s",
             r->z->access_token);
    headers[nh++] = auth;
    if (r->body) {
        headers[nh++] = "Content-Type: application/json";
    }
    if (r->ims && rf_zoho_time_format(r->ims, 0, when, sizeof(when)) == 0) {
        snprintf(ims, HEADER_BYTES, "If-Modified-Since: %s", when);
        headers[nh++] = ims;
    }
    headers[nh] = NULL;
}

static void send_req(struct rf__zoho_req *r)
{
    struct rf_zoho *z = r->z;
    char auth[HEADER_BYTES], ims[HEADER_BYTES];
    const char *headers[4];
    size_t ulen =
        strlen(z->api_domain) + strlen(z->version) + strlen(r->path) + 8;
    char *url = malloc(ulen);
    struct rf_http_call call;
    int rc;

    if (url == NULL) {
        finish(r, RF_ENOMEM, 0, NULL, NULL, NULL, "out of memory");
        return;
    }
    snprintf(url, ulen, "%s/crm/%s/%s", z->api_domain, z->version, r->path);
    make_headers(r, auth, ims, headers);
    call = (struct rf_http_call){.method = r->method,
                                 .url = url,
                                 .headers = headers,
                                 .body = r->body,
                                 .body_len = r->body_len,
                                 .timeout_ms = z->timeout_ms,
                                 .allow = z->allow,
                                 .n_allow = z->n_allow};
    mark_sent(r);
    rc = rf_http_client_request(z->http, &call, on_answer, r);
    free(url);
    if (rc != 0) {
        struct rf_http_result fake = {.rc = rc, .error = "cannot start call"};

        on_answer(&fake, r);
    }
}

/* The first ready request that may go now, or NULL. */
static struct rf__zoho_req *next_ready(struct rf_zoho *z)
{
    for (struct rf__zoho_req *r = z->ready.head; r; r = r->next) {
        if (!r->heavy || z->heavy_in_flight < z->heavy_max) {
            return r;
        }
    }
    return NULL;
}

/* Sends what the limits allow. Restarts from the head after anything that
 * may have run a callback, which may have changed the lists. */
void rf__zoho_kick_run(struct rf_zoho *z)
{
    struct rf__zoho_req *r;

    rf__zoho_enter(z);
    while (!z->closing && z->inflight.n < limit(z) &&
           (r = next_ready(z)) != NULL) {
        if (over_budget(r)) {
            continue;
        }
        if (!rf__zoho_token_usable(z)) {
            rf__zoho_token_refresh(z); /* kicks again when done */
            break;
        }
        unlink_req(r);
        send_req(r);
    }
    rf__zoho_leave(z);
}

/* --- answers ------------------------------------------------------------- */

/* Ends r with Zoho's error body (or none). */
static void finish_http(struct rf__zoho_req *r, long status, const char *body,
                        size_t len, const char *what)
{
    cJSON *j = NULL;
    const char *code = NULL, *message = NULL;
    char msg[300];
    int n;

    if (rf__zoho_json_parse(body, len, &j) == 0) {
        code = rf__zoho_json_str(j, "code");
        message = rf__zoho_json_str(j, "message");
    }
    n = snprintf(msg, sizeof(msg), "Zoho answered HTTP %ld", status);
    if (code && n > 0 && (size_t)n < sizeof(msg)) {
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, " %.60s", code);
    }
    if (message && n > 0 && (size_t)n < sizeof(msg)) {
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, " (%.120s)", message);
    }
    if (what && n > 0 && (size_t)n < sizeof(msg)) {
        snprintf(msg + n, sizeof(msg) - (size_t)n, " %s", what);
    }
    finish(r, RF_EHTTP, status, j, code, message, msg);
    cJSON_Delete(j);
}

static void finish_ok(struct rf__zoho_req *r, long status, const char *body,
                      size_t len)
{
    cJSON *j = NULL;

    if (status == 204 || status == 304) {
        finish(r, 0, status, NULL, NULL, NULL, NULL);
        return;
    }
    if (rf__zoho_json_parse(body, len, &j) != 0) {
        finish(r, RF_EPARSE, status, NULL, NULL, NULL,
               "Zoho's answer is not JSON");
        return;
    }
    finish(r, 0, status, j, NULL, NULL, NULL);
    cJSON_Delete(j);
}

/* 401 INVALID_TOKEN: a token that never worked and is minutes old points
 * at the wrong data centre; otherwise refresh once and retry once. */
static void on_invalid_token(struct rf__zoho_req *r, long status,
                             const char *body, size_t len)
{
    struct rf_zoho *z = r->z;
    int64_t age = rf__zoho_now(z) - z->obtained_ms;
    char msg[300];

    rf__zoho_credits_refund(z, r->charged_min, r->cost);
    if (r->token_gen == z->token_gen && z->token_valid && z->token_fresh &&
        !z->token_proven && age < RF__ZOHO_FRESH_MS) {
        snprintf(msg, sizeof(msg),
                 "%s/crm answered INVALID_TOKEN for a token issued %llds "
                 "ago by %s: the data centre '%s' is probably wrong, or "
                 "api_domain belongs to another data centre",
                 z->api_domain, (long long)(age / 1000), z->accounts_url,
                 z->dc);
        rf__zoho_set_error(z, msg);
        rf_log_error("zoho", RF_F("tenant", z->tenant, "event", "wrong_dc"),
                     "%s", msg);
        finish(r, RF_ECONFIG, status, NULL, "INVALID_TOKEN", NULL, msg);
        return;
    }
    if (r->token_gen == z->token_gen) {
        z->token_valid = 0; /* the next kick refreshes, once */
    }
    if (r->auth_retried) {
        finish_http(r, status, body, len, "after a token refresh");
        return;
    }
    r->auth_retried = 1;
    z->retries++;
    link_after(r, IN_READY, NULL);
}

static int transient(const struct rf__zoho_req *r, int rc, long status)
{
    if (rc == RF_ETIMEOUT || rc == RF_EHTTP || (rc == 0 && status >= 500)) {
        return !r->no_retry && r->tries + 1 < r->z->retry_max;
    }
    return 0;
}

/* Retry-After in seconds (Zoho does not document one; honoured when
 * present, up to the cap). */
static uint64_t retry_after_ms(const struct rf_http_result *res, unsigned cap)
{
    for (size_t i = 0; i < res->nheaders; i++) {
        if (strcmp(res->headers[i][0], "retry-after") == 0) {
            long s = strtol(res->headers[i][1], NULL, 10);

            return s <= 0                     ? 0
                   : (uint64_t)s * 1000 > cap ? cap
                                              : (uint64_t)s * 1000;
        }
    }
    return 0;
}

static void on_throttled(struct rf__zoho_req *r,
                         const struct rf_http_result *res)
{
    struct rf_zoho *z = r->z;
    uint64_t wait;

    z->throttled++;
    rf__zoho_credits_refund(z, r->charged_min, r->cost);
    cut(z, r);
    if (r->throttled + 1 >= z->throttle_max) {
        finish_http(r, res->status, res->body, res->body_len,
                    "(gave up after repeated 429s)");
        return;
    }
    wait = backoff(z, z->throttle_base_ms, z->throttle_cap_ms, r->throttled);
    if (retry_after_ms(res, z->throttle_cap_ms) > wait) {
        wait = retry_after_ms(res, z->throttle_cap_ms);
    }
    r->throttled++;
    delay(r, wait);
}

static int is_invalid_token(const struct rf_http_result *res)
{
    cJSON *j = NULL;
    int yes = 0;

    if (rf__zoho_json_parse(res->body, res->body_len, &j) == 0) {
        const char *code = rf__zoho_json_str(j, "code");

        yes = code && (strcmp(code, "INVALID_TOKEN") == 0 ||
                       strcmp(code, "INVALID_OAUTHTOKEN") == 0);
    }
    cJSON_Delete(j);
    return yes;
}

/* Decides what an answer means for r. */
static void handle_answer(struct rf__zoho_req *r,
                          const struct rf_http_result *res)
{
    struct rf_zoho *z = r->z;

    if (z->closing) {
        finish(r, RF_ESTOPPING, 0, NULL, NULL, NULL,
               "the Zoho connection is closing");
    } else if (transient(r, res->rc, res->status)) {
        if (res->rc != 0) {
            rf__zoho_credits_refund(z, r->charged_min, r->cost);
        }
        delay(r, backoff(z, z->retry_base_ms, z->retry_cap_ms, r->tries));
        r->tries++;
    } else if (res->rc != 0) {
        rf__zoho_credits_refund(z, r->charged_min, r->cost);
        finish(r, res->rc, 0, NULL, NULL, NULL, res->error);
    } else if (res->status == 429) {
        on_throttled(r, res);
    } else if (res->status == 401 && is_invalid_token(res)) {
        on_invalid_token(r, res->status, res->body, res->body_len);
    } else if (res->status >= 200 && res->status < 300) {
        z->token_proven = z->token_proven || r->token_gen == z->token_gen;
        grow(z);
        finish_ok(r, res->status, res->body, res->body_len);
    } else if (res->status == 304) {
        finish_ok(r, res->status, res->body, res->body_len);
    } else {
        if (res->status != 401 && r->token_gen == z->token_gen) {
            z->token_proven = 1; /* authentication passed */
        }
        finish_http(r, res->status, res->body, res->body_len, NULL);
    }
}

static void on_answer(const struct rf_http_result *res, void *arg)
{
    struct rf__zoho_req *r = arg;
    struct rf_zoho *z = r->z;

    rf__zoho_enter(z);
    unlink_req(r);
    if (r->heavy) {
        z->heavy_in_flight--;
    }
    handle_answer(r, res);
    rf__zoho_kick(z);
    rf__zoho_release(z); /* the hold of send_req() */
    rf__zoho_leave(z);
}

/* --- submitting ---------------------------------------------------------- */

static int valid_method(const char *m)
{
    static const char *const ok[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

    for (size_t i = 0; m && i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(m, ok[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* path?name=value&... with values percent-encoded; NULL on failure. */
static int build_path(const struct rf_zoho_request *q, char **out)
{
    char *buf = malloc(PATH_MAX_BYTES);
    size_t len;
    int rc = 0;

    if (buf == NULL) {
        return RF_ENOMEM;
    }
    len = (size_t)snprintf(buf, PATH_MAX_BYTES, "%s", q->path);
    for (size_t i = 0; q->query && q->query[i] && rc == 0; i += 2) {
        const char *val = q->query[i + 1] ? q->query[i + 1] : "";

        if (len + strlen(q->query[i]) + 2 >= PATH_MAX_BYTES) {
            rc = RF_ETOOBIG;
            break;
        }
        len += (size_t)snprintf(buf + len, PATH_MAX_BYTES - len,
                                "%c%s=", i == 0 ? '?' : '&', q->query[i]);
        rc = rf_zoho_url_encode(val, buf + len, PATH_MAX_BYTES - len);
        len += strlen(buf + len);
    }
    if (rc != 0 || len >= PATH_MAX_BYTES) {
        free(buf);
        return rc ? rc : RF_ETOOBIG;
    }
    *out = buf;
    return 0;
}

int rf_zoho_request(struct rf_zoho *z, const struct rf_zoho_request *q,
                    rf_zoho_done_cb done, void *arg)
{
    struct rf__zoho_req *r;
    int rc;

    if (z->closing) {
        return RF_ESTOPPING;
    }
    if (!valid_method(q->method) || q->path == NULL || q->path[0] == '\0' ||
        q->path[0] == '/' || done == NULL) {
        return RF_EINVAL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return RF_ENOMEM;
    }
    rc = build_path(q, &r->path);
    if (rc == 0 && q->body) {
        r->body_len = strlen(q->body);
        r->body = strdup(q->body);
        rc = r->body ? 0 : RF_ENOMEM;
    }
    if (rc != 0) {
        free_req(r);
        return rc;
    }
    r->z = z;
    snprintf(r->method, sizeof(r->method), "%s", q->method);
    r->ims = q->if_modified_since;
    r->cost = q->cost ? q->cost : 1;
    r->heavy = q->heavy;
    r->no_retry = q->no_retry;
    r->done = done;
    r->arg = arg;
    r->charged_min = -1;
    push_tail(r, IN_READY);
    rf__zoho_kick(z);
    return 0;
}

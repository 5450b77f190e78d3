/* Webhook intake: validate, then hand the event to the writer and answer
 * once it is on disk. */
#include "referee/intake.h"
#include "referee/error.h"
#include "referee/events.h"
#include "referee/json_check.h"
#include "referee/log.h"
#include "referee/script_api.h"
#include "referee/signature.h"
#include "referee/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

/* Headers kept with every event, besides those a source names. */
static const char *const kept_always[] = {"content-type", "user-agent",
                                          "webhook-id", "webhook-timestamp",
                                          NULL};
/* Never stored, whatever a source asks for: they carry secrets. */
static const char *const never_kept[] = {"webhook-signature", "authorization",
                                         "cookie", "proxy-authorization",
                                         NULL};

struct intake_job {
    struct rf_write_job job; /* first: the writer hands this back */
    struct rf_intake *in;
    struct rf_http_req *req;
    struct rf_event_put put;
    char tenant[RF_TENANT_ID_MAX + 1];
    char source[RF_TENANT_ID_MAX + 1]; /* copied: a reload frees the old */
    char delivery_id[RF_DELIVERY_ID_MAX + 1];
    char *headers; /* JSON object text */
    char *body;    /* a rewritten body, when not the request's */
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int in_list(const char *const *list, const char *name)
{
    for (; *list; list++) {
        if (strcasecmp(*list, name) == 0) {
            return 1;
        }
    }
    return 0;
}

struct keep_ctx {
    const struct rf_source *src;
    cJSON *obj;
};

static void keep_header(const char *name, const char *value, void *arg)
{
    struct keep_ctx *k = arg;
    int keep = in_list(kept_always, name);
    char lower[128], clean[1024];
    cJSON *prev;
    size_t i;

    for (size_t j = 0; !keep && j < k->src->nkeep; j++) {
        keep = strcasecmp(k->src->keep[j], name) == 0;
    }
    if (!keep || in_list(never_kept, name) || strlen(name) >= sizeof(lower) ||
        !rf_utf8_valid(name, strlen(name))) {
        return;
    }
    for (i = 0; name[i]; i++) {
        lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32
                                                          : name[i]);
    }
    lower[i] = '\0';
    /* Without the spaces after the value, as rf_http_header gives it;
     * header bytes are not always UTF-8, and stored JSON must be. */
    rf_utf8_sanitize(value, rf_http_value_len(value), clean, sizeof(clean));
    prev = cJSON_GetObjectItemCaseSensitive(k->obj, lower);
    if (prev != NULL) {
        /* A repeated header is one list (RFC 9110, 5.3): one member with
         * the values joined, never a JSON object with the name twice. */
        size_t n = strlen(prev->valuestring) + 2 + strlen(clean) + 1;
        char *both = malloc(n);

        if (both != NULL) {
            snprintf(both, n, "%s, %s", prev->valuestring, clean);
            cJSON_ReplaceItemInObjectCaseSensitive(k->obj, lower,
                                                   cJSON_CreateString(both));
            free(both);
        }
        return;
    }
    cJSON_AddItemToObject(k->obj, lower, cJSON_CreateString(clean));
}

static char *kept_headers(struct rf_http_req *req, const struct rf_source *s)
{
    struct keep_ctx k = {s, cJSON_CreateObject()};
    char *out;

    if (k.obj == NULL) {
        return NULL;
    }
    rf_http_each_header(req, keep_header, &k);
    out = cJSON_PrintUnformatted(k.obj);
    cJSON_Delete(k.obj);
    return out;
}

/* Checks that body is one strict JSON value (RFC 8259 in strict UTF-8,
 * nested at most RF_API_JSON_DEPTH_MAX deep). Everything the check lets
 * through, the scripts' parser decodes (tests/unit/test_json_check.c holds
 * this), so every stored body can be given to a hook. A \u0000 escape is
 * refused too: hooks get strings through cJSON's C strings, which the zero
 * would cut short. On failure answers 400 (invalid_json or json_too_deep)
 * and returns -1. */
static int check_json(struct rf_http_req *req, const char *body, size_t len)
{
    struct rf_json_problem p;
    int rc = rf_json_check_text(body, len, RF_API_JSON_DEPTH_MAX, &p);

    if (rc == RF_ELIMIT) {
        rf_http_respond_error(req, 400, "json_too_deep",
                              "the body nests arrays and objects deeper "
                              "than %d levels, the most scripts can decode "
                              "and encode (byte %zu)",
                              RF_API_JSON_DEPTH_MAX, p.offset);
        return -1;
    }
    if (rc != 0) {
        rf_http_respond_error(req, 400, "invalid_json",
                              "the body is not one valid JSON value (byte "
                              "%zu: %s)",
                              p.offset, p.reason);
        return -1;
    }
    return 0;
}

/* check_json, then the tree, with the scripts' own parser: integers too
 * long for a double come back as strings, so ids taken from the body keep
 * every digit. On failure answers and returns NULL. */
static cJSON *parse_json(struct rf_http_req *req, const char *body,
                         size_t len)
{
    char err[96];
    cJSON *v;

    if (check_json(req, body, len) != 0) {
        return NULL;
    }
    v = rf_api_parse_json(body, len, err, sizeof(err));
    if (v == NULL) { /* out of memory: the check and the parser agree */
        rf_http_respond_error(req, 503, "out_of_memory", "try again later");
    }
    return v;
}

/* Why a delivery id cannot be used, for the 400 answer. */
#define ID_MISSING "missing"
#define ID_EMPTY "empty"
#define ID_KIND "not a string or an integer"
#define ID_STR_(x) #x
#define ID_STR(x) ID_STR_(x)
#define ID_LONG "longer than " ID_STR(RF_DELIVERY_ID_MAX) " bytes"

/* Follows a dotted path through objects; the leaf must be a non-empty
 * string or an integer. Writes it into out. Returns 0, or RF_ENOTFOUND with
 * *why set. */
static int json_id(const cJSON *v, const char *path, char *out, size_t n,
                   const char **why)
{
    char seg[RF_ID_SEGMENT_MAX];

    while (*path && v) {
        size_t len = strcspn(path, ".");

        if (len >= sizeof(seg)) {
            *why = ID_MISSING;
            return RF_ENOTFOUND;
        }
        memcpy(seg, path, len);
        seg[len] = '\0';
        v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, seg)
                              : NULL;
        path += len + (path[len] == '.');
    }
    if (cJSON_IsString(v)) {
        size_t len = strlen(v->valuestring);

        *why = len == 0 ? ID_EMPTY : len >= n ? ID_LONG : NULL;
        if (*why == NULL) {
            memcpy(out, v->valuestring, len + 1);
            return 0;
        }
        return RF_ENOTFOUND;
    }
    /* the range check first: casting a larger double is undefined */
    if (cJSON_IsNumber(v) && fabs(v->valuedouble) < 9.2e18 &&
        v->valuedouble == (double)(long long)v->valuedouble) {
        snprintf(out, n, "%lld", (long long)v->valuedouble);
        return 0;
    }
    *why = v == NULL || cJSON_IsNull(v) ? ID_MISSING : ID_KIND;
    return RF_ENOTFOUND;
}

/* Finds the delivery id where the source's settings say it is. Returns 0
 * (found, or none configured) or RF_ENOTFOUND with *why set. */
static int delivery_id(struct rf_http_req *req, const struct rf_source *s,
                       const cJSON *json, char *out, size_t n,
                       const char **why)
{
    const char *h;

    out[0] = '\0';
    *why = ID_MISSING;
    switch (s->id_from) {
    case RF_ID_HEADER:
        h = rf_http_header(req, s->id_key);
        if (h != NULL && strlen(h) >= n) {
            *why = ID_LONG; /* an id we cannot keep: never dedup-less */
            return RF_ENOTFOUND;
        }
        if (h == NULL || *h == '\0') {
            /* Only a source that names its id must send it. */
            *why = h == NULL ? ID_MISSING : ID_EMPTY;
            return s->id_required ? RF_ENOTFOUND : 0;
        }
        snprintf(out, n, "%s", h);
        return 0;
    case RF_ID_JSON:
        return json ? json_id(json, s->id_key, out, n, why) : RF_ENOTFOUND;
    default:
        return 0;
    }
}

static int run_job(MDB_txn *txn, struct rf_write_job *job)
{
    struct intake_job *j = (struct intake_job *)job;

    return rf_event_put(txn, j->in->store, &j->put);
}

static void free_job(struct intake_job *j)
{
    cJSON_free(j->headers);
    cJSON_free(j->body);
    free(j);
}

/* Loop thread, after the commit: answer. */
static void on_written(struct rf_write_job *job)
{
    struct intake_job *j = (struct intake_job *)job;
    char id[RF_EVENT_ID_LEN + 1], body[96];
    int n;

    if (job->rc != 0) {
        j->in->stats.failed++;
        rf_log_error("intake", RF_F("tenant", j->tenant), "cannot store: %s",
                     rf_strerror(job->rc));
        rf_http_respond_error(j->req, 503, "store_unavailable",
                              "the event could not be stored; retry later");
        free_job(j);
        return;
    }
    rf_event_id(j->put.ev.seq, id);
    if (j->put.duplicate) {
        j->in->stats.duplicates++;
        n = snprintf(body, sizeof(body),
                     "{\"event_id\":\"%s\",\"duplicate\":true}", id);
        rf_http_respond_json(j->req, 200, body, (size_t)n);
    } else {
        j->in->stats.accepted++;
        n = snprintf(body, sizeof(body), "{\"event_id\":\"%s\"}", id);
        rf_http_respond_json(j->req, 202, body, (size_t)n);
        if (j->in->stored) {
            j->in->stored(j->in->stored_arg, j->tenant, j->source,
                          j->put.ev.seq);
        }
    }
    rf_log_debug("intake", RF_F("tenant", j->tenant, "event", id), "%s",
                 j->put.duplicate ? "duplicate" : "stored");
    free_job(j);
}

int rf_intake_refuse_repeats(struct rf_http_req *req, const char *id_header)
{
    const char *names[] = {"webhook-id", "webhook-timestamp",
                           "webhook-signature", id_header, NULL};
    const char *twice = rf_http_header_repeated(req, names);

    if (twice == NULL) {
        return 0;
    }
    rf_http_respond_error(req, 400, "repeated_header",
                          "the %s header is sent more than once%s", twice,
                          strcmp(twice, "webhook-signature") == 0
                              ? " (several signatures go in one, separated "
                                "by spaces)"
                              : "");
    return -1;
}

static int check_signature(struct rf_intake *in, struct rf_http_req *req,
                           const struct rf_source *s, const char *body,
                           size_t len)
{
    int res;

    if (s->secret == NULL) {
        return 0;
    }
    res = rf_signature_verify(s->secret, s->secret_len,
                              rf_http_header(req, "webhook-id"),
                              rf_http_header(req, "webhook-timestamp"),
                              rf_http_header(req, "webhook-signature"), body,
                              len, (int64_t)time(NULL), in->tolerance_s);
    if (res != RF_SIG_OK) {
        rf_http_respond_error(req, 401, rf_signature_code(res), "%s",
                              rf_signature_message(res));
        return -1;
    }
    return 0;
}

/* Checks the body and finds the delivery id; answers 400 on failure. */
static int check_body(struct rf_http_req *req, const struct rf_source *s,
                      const char *body, size_t len, char *id, size_t idlen)
{
    cJSON *json = NULL;
    const char *why;
    int rc;

    /* The tree is built only when the id is in it: checking alone is a
     * quarter of the work (docs/benchmarks.md, section 1). */
    if (s->json && s->id_from == RF_ID_JSON) {
        json = parse_json(req, body, len);
        if (json == NULL) {
            return -1; /* answered */
        }
    } else if (s->json && check_json(req, body, len) != 0) {
        return -1;
    }
    rc = delivery_id(req, s, json, id, idlen, &why);
    cJSON_Delete(json);
    if (rc != 0) {
        rf_http_respond_error(req, 400, "delivery_id_missing",
                              "the delivery id (%s:%s) is %s",
                              s->id_from == RF_ID_JSON ? "json" : "header",
                              s->id_key, why);
        return -1;
    }
    return 0;
}

static struct intake_job *new_job(struct rf_intake *in,
                                  struct rf_http_req *req,
                                  const struct rf_tenant *t,
                                  const struct rf_source *s)
{
    struct intake_job *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        return NULL;
    }
    j->headers = kept_headers(req, s);
    if (j->headers == NULL) {
        free(j);
        return NULL;
    }
    j->job.run = run_job;
    j->job.done = on_written;
    j->in = in;
    j->req = req;
    snprintf(j->tenant, sizeof(j->tenant), "%s", t->id);
    j->put.tenant = j->tenant;
    j->put.tenant_len = strlen(j->tenant);
    j->put.ev.received_ms = now_ms();
    snprintf(j->source, sizeof(j->source), "%s", s->name);
    j->put.ev.source = j->source;
    j->put.ev.source_len = strlen(j->source);
    j->put.ev.headers = j->headers;
    j->put.ev.headers_len = strlen(j->headers);
    j->put.ev.body = rf_http_body(req, &j->put.ev.body_len);
    return j;
}

void rf_intake_handle(struct rf_intake *in, struct rf_http_req *req,
                      const char *tenant, size_t tlen, const char *source,
                      size_t slen)
{
    const struct rf_tenant *t = rf_tenant_find(*in->tenants, tenant, tlen);
    const struct rf_source *s = t ? rf_source_find(t, source, slen) : NULL;
    struct intake_job *j;
    size_t len;
    const char *body = rf_http_body(req, &len);

    if (t == NULL) {
        rf_http_respond_error(req, 404, "tenant_not_found", "no such tenant");
    } else if (t->error != NULL) {
        rf_http_respond_error(req, 503, "tenant_unavailable",
                              "the tenant's script failed to load");
    } else if (s == NULL) {
        rf_http_respond_error(req, 404, "source_not_found",
                              "the tenant has no such webhook source");
    }
    if (rf_http_answered(req)) {
        in->stats.rejected++;
        return;
    }
    j = new_job(in, req, t, s);
    if (j == NULL) {
        rf_http_respond_error(req, 503, "out_of_memory", "try again later");
        return;
    }
    if (rf_intake_refuse_repeats(req, s->id_from == RF_ID_HEADER ? s->id_key
                                                                 : NULL) != 0 ||
        check_signature(in, req, s, body, len) != 0 ||
        check_body(req, s, body, len, j->delivery_id,
                   sizeof(j->delivery_id)) != 0) {
        in->stats.rejected++;
        free_job(j);
        return;
    }
    if (j->delivery_id[0]) {
        j->put.delivery_id = j->delivery_id;
        j->put.delivery_id_len = strlen(j->delivery_id);
    }
    rf_writer_submit(in->writer, &j->job);
}

/* --- Zoho Watch callbacks ----------------------------------------------- */

/* Whether `v` (a string or a number, as Zoho sends channel ids) is `want`. */
static int same_channel(const cJSON *v, const char *want)
{
    char buf[32];

    if (cJSON_IsString(v)) {
        return strcmp(v->valuestring, want) == 0;
    }
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 &&
        v->valuedouble < 9007199254740992.0) {
        snprintf(buf, sizeof(buf), "%.0f", v->valuedouble);
        return strcmp(buf, want) == 0;
    }
    return 0;
}

/* Checks a callback's channel and token and its shape; answers on
 * failure. */
static int check_notification(struct rf_http_req *req, const char *tenant,
                              const struct rf_tenant_zoho *z,
                              const char *body, size_t len)
{
    cJSON *json = parse_json(req, body, len);
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(json, "token");
    const cJSON *channel = cJSON_GetObjectItemCaseSensitive(json,
                                                            "channel_id");
    const cJSON *module = cJSON_GetObjectItemCaseSensitive(json, "module");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(json, "ids");
    size_t want = strlen(z->notify_token);
    int ok;

    if (json == NULL) {
        return -1; /* answered */
    }
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        rf_http_respond_error(req, 400, "invalid_json",
                              "the body is not a JSON object");
        return -1;
    }
    ok = cJSON_IsString(token) && strlen(token->valuestring) == want &&
         CRYPTO_memcmp(token->valuestring, z->notify_token, want) == 0 &&
         same_channel(channel, z->channel_id);
    if (!ok) {
        cJSON_Delete(json);
        rf_log_warn("intake",
                    RF_F("tenant", tenant, "client", rf_http_client(req)),
                    "refused a Zoho notification: the channel id or token "
                    "does not match");
        rf_http_respond_error(req, 403, "invalid_channel_token",
                              "the channel id or token does not match the "
                              "tenant's Zoho notification channel");
        return -1;
    }
    ok = cJSON_IsString(module) && cJSON_IsArray(ids);
    cJSON_Delete(json);
    if (!ok) {
        rf_http_respond_error(req, 400, "invalid_notification",
                              "a notification carries a module and a list "
                              "of ids");
        return -1;
    }
    return 0;
}

/* The callback as stored: without its token, which is a secret. The body
 * passed check_notification(). */
static char *without_token(const char *body, size_t len)
{
    char err[96];
    cJSON *json = rf_api_parse_json(body, len, err, sizeof(err));
    char *out;

    /* Every copy: a body may repeat the key. */
    while (cJSON_GetObjectItemCaseSensitive(json, "token") != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(json, "token");
    }
    out = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    return out;
}

void rf_intake_handle_zoho(struct rf_intake *in, struct rf_http_req *req,
                           const char *tenant, size_t tlen)
{
    static const struct rf_source zoho_source = {.name = RF_INTAKE_ZOHO_SOURCE,
                                                 .json = 1};
    const struct rf_tenant *t = rf_tenant_find(*in->tenants, tenant, tlen);
    struct intake_job *j;
    size_t len;
    const char *body = rf_http_body(req, &len);

    if (t == NULL) {
        rf_http_respond_error(req, 404, "tenant_not_found", "no such tenant");
    } else if (t->error != NULL) {
        rf_http_respond_error(req, 503, "tenant_unavailable",
                              "the tenant's script failed to load");
    } else if (t->zoho == NULL || t->zoho->notify_token == NULL) {
        rf_http_respond_error(req, 404, "notify_not_configured",
                              "the tenant has no Zoho notification channel");
    } else {
        (void)check_notification(req, t->id, t->zoho, body, len);
    }
    if (rf_http_answered(req)) {
        in->stats.rejected++;
        return;
    }
    j = new_job(in, req, t, &zoho_source);
    if (j == NULL || (j->body = without_token(body, len)) == NULL) {
        if (j) {
            free_job(j);
        }
        rf_http_respond_error(req, 503, "out_of_memory", "try again later");
        return;
    }
    j->put.ev.body = j->body;
    j->put.ev.body_len = strlen(j->body);
    rf_writer_submit(in->writer, &j->job);
}

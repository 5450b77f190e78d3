/* What a handler reads of a request and how it answers: the accessors of
 * referee/http.h over libmicrohttpd's connection. Loop thread only. */
#include "referee/http.h"

#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

const char *rf_http_method(const struct rf_http_req *req)
{
    return req->method;
}

const char *rf_http_path(const struct rf_http_req *req)
{
    return req->path;
}

size_t rf_http_value_len(const char *v)
{
    size_t n = strlen(v);

    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
        n--;
    }
    return n;
}

const char *rf_http_header(const struct rf_http_req *req, const char *name)
{
    const char *v = MHD_lookup_connection_value(req->mc, MHD_HEADER_KIND, name);
    struct rf_http_req *r = (struct rf_http_req *)req; /* the cache only */
    size_t n;
    char *t;

    /* libmicrohttpd 0.9.75 strips the spaces before a value but keeps
     * those after it, which RFC 9110 section 5.5 says are not part of it:
     * "webhook-id: zz " would be another delivery than "zz". */
    if (v == NULL || (n = rf_http_value_len(v)) == strlen(v)) {
        return v;
    }
    if (r->trimmed_n == MAX_TRIMMED || (t = strndup(v, n)) == NULL) {
        return v; /* a request with this many padded headers is odd */
    }
    r->trimmed[r->trimmed_n++] = t;
    return t;
}

const char *rf_http_query(const struct rf_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->mc, MHD_GET_ARGUMENT_KIND, name);
}

const char *rf_http_body(const struct rf_http_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

const char *rf_http_client(const struct rf_http_req *req)
{
    return req->client;
}

struct each_ctx {
    void (*fn)(const char *, const char *, void *);
    void *arg;
};

static enum MHD_Result each_header(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value)
{
    struct each_ctx *e = cls;

    e->fn(key, value ? value : "", e->arg);
    return MHD_YES;
}

void rf_http_each_header(const struct rf_http_req *req,
                         void (*fn)(const char *name, const char *value,
                                    void *arg),
                         void *arg)
{
    struct each_ctx e = {fn, arg};

    (void)MHD_get_connection_values(req->mc, MHD_HEADER_KIND, each_header,
                                    &e);
}

struct repeat_ctx {
    const char *const *names;
    unsigned seen;     /* bit i: names[i] was seen */
    const char *twice; /* the first seen twice */
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value)
{
    struct repeat_ctx *r = cls;

    (void)kind;
    (void)value;
    for (unsigned i = 0; r->names[i] && i < 32; i++) {
        if (strcasecmp(key, r->names[i]) != 0) {
            continue;
        }
        if (r->seen & (1u << i)) {
            r->twice = r->names[i];
            return MHD_NO; /* stop at the first repeat */
        }
        r->seen |= 1u << i;
    }
    return MHD_YES;
}

const char *rf_http_header_repeated(const struct rf_http_req *req,
                                    const char *const *names)
{
    struct repeat_ctx r = {names, 0, NULL};

    (void)MHD_get_connection_values(req->mc, MHD_HEADER_KIND, count_header,
                                    &r);
    return r.twice;
}

void rf_http_set_data(struct rf_http_req *req, void *data)
{
    req->data = data;
}

void *rf_http_data(const struct rf_http_req *req)
{
    return req->data;
}

int rf_http_answered(const struct rf_http_req *req)
{
    return req->resp != NULL;
}

void rf_http_add_header(struct rf_http_req *req, const char *name,
                        const char *value)
{
    int i = req->extra_n;

    if (i >= MAX_EXTRA_HEADERS) {
        return;
    }
    req->extra_store[i][0] = strdup(name);
    req->extra_store[i][1] = strdup(value);
    if (!req->extra_store[i][0] || !req->extra_store[i][1]) {
        free(req->extra_store[i][0]);
        free(req->extra_store[i][1]);
        return;
    }
    req->extra_n++;
}

void rf_http_respond(struct rf_http_req *req, unsigned status,
                     const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *resp;

    if (req->resp != NULL) {
        return;
    }
    resp = MHD_create_response_from_buffer(len, (void *)body,
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return; /* the request stays unanswered; MHD times it out */
    }
    (void)MHD_add_response_header(resp, "Content-Type", content_type);
    for (int i = 0; i < req->extra_n; i++) {
        (void)MHD_add_response_header(resp, req->extra_store[i][0],
                                      req->extra_store[i][1]);
    }
    req->resp = resp;
    req->status = status;
    if (req->suspended) {
        req->suspended = 0;
        MHD_resume_connection(req->mc);
        rf__http_defer_run(req->srv);
    }
}

void rf_http_respond_json(struct rf_http_req *req, unsigned status,
                          const char *json, size_t len)
{
    rf_http_respond(req, status, "application/json", json, len);
}

/* Writes s into out as a JSON string body (without quotes), escaped. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;

    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

void rf_http_respond_error(struct rf_http_req *req, unsigned status,
                           const char *code, const char *fmt, ...)
{
    char msg[512], esc[1100], body[1300];
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_escape(esc, sizeof(esc), msg);
    n = snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, esc);
    rf_http_respond_json(req, status, body, (size_t)n);
}

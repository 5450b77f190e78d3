/* The HTTP listener: libmicrohttpd in external epoll mode on the libuv loop,
 * with limits, slow-client deadlines, JSON error answers, and requests that
 * can be answered later (after a disk commit) without blocking the loop.
 *
 * Flow: for each request the server calls the app's on_headers (it may
 * answer at once, e.g. 404 or 405), reads the body up to the limit, then
 * calls on_request. A handler that cannot answer yet returns without
 * answering; the request is suspended until rf_http_respond() is called.
 *
 * Caveats: everything here runs on the loop thread. Deadlines are checked
 * by a sweep every 250 ms, so a slow client is cut off up to that much
 * later than its deadline.
 */
#ifndef REFEREE_HTTP_H
#define REFEREE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct rf_http_limits {
    size_t header_max;           /* bytes of request line and headers */
    size_t body_max;             /* bytes of body */
    unsigned header_timeout_ms;  /* from connect until headers are in */
    unsigned body_timeout_ms;    /* from headers until the body is in */
    unsigned keepalive_idle_ms;  /* idle time between requests */
    unsigned connections_max;    /* open connections, all clients */
    unsigned connections_per_ip; /* open connections per address; 0: any */
};

/* Safe defaults: 16 KiB headers, 1 MiB body, 10 s, 30 s, 60 s, 1024, 0. */
void rf_http_limits_default(struct rf_http_limits *l);

struct rf_http_req;
struct rf_http_server;

struct rf_http_app {
    /* Called when the headers are in. May answer; then the body is not
     * read. Must not keep `req` beyond the call unless it answers later. */
    void (*on_headers)(struct rf_http_req *req, void *arg);
    /* Called with the whole body. Answers now or later. */
    void (*on_request)(struct rf_http_req *req, void *arg);
    void *arg;
};

/* Starts listening on `host`:`port` (port 0 picks a free one). `app` and
 * `limits` are copied. On failure returns NULL and logs why. Caller owns
 * the result; stop with rf_http_server_stop(). */
struct rf_http_server *rf_http_server_start(uv_loop_t *loop, const char *host,
                                            unsigned port,
                                            const struct rf_http_limits *limits,
                                            const struct rf_http_app *app);

/* The port actually bound. */
unsigned rf_http_server_port(const struct rf_http_server *srv);

/* Stops accepting new connections; requests in flight go on. */
void rf_http_server_quiesce(struct rf_http_server *srv);

/* Requests received and not yet completely answered. */
size_t rf_http_server_inflight(const struct rf_http_server *srv);

/* Answers every suspended request with 503, closes all connections and
 * frees the server once its handles closed (the loop must run once more).
 * Accepts NULL. */
void rf_http_server_stop(struct rf_http_server *srv);

/* Request accessors. Strings are borrowed until the request completes. */
const char *rf_http_method(const struct rf_http_req *req);
const char *rf_http_path(const struct rf_http_req *req);
const char *rf_http_header(const struct rf_http_req *req, const char *name);
const char *rf_http_query(const struct rf_http_req *req, const char *name);
const char *rf_http_body(const struct rf_http_req *req, size_t *len);
/* Client address as text, e.g. "127.0.0.1". */
const char *rf_http_client(const struct rf_http_req *req);

/* The first of names (a NULL-terminated list; NULL entries before the end
 * are not allowed) that the request carries more than once, compared
 * without case, or NULL. rf_http_header gives only the first of a repeated
 * header, so a check that reads it must first refuse a repeat. */
const char *rf_http_header_repeated(const struct rf_http_req *req,
                                    const char *const *names);

/* The length of a header value without the spaces and tabs after it,
 * which are not part of it (RFC 9110 section 5.5); libmicrohttpd 0.9.75
 * leaves them in. rf_http_header leaves them out already;
 * rf_http_each_header does not. */
size_t rf_http_value_len(const char *value);

/* Calls fn for every request header, in arrival order. */
void rf_http_each_header(const struct rf_http_req *req,
                         void (*fn)(const char *name, const char *value,
                                    void *arg),
                         void *arg);

/* A pointer the handler may attach; never touched by the server. */
void rf_http_set_data(struct rf_http_req *req, void *data);
void *rf_http_data(const struct rf_http_req *req);

/* Answers with `status` and a JSON body (copied). A second answer to the
 * same request is ignored. Resumes the request if it was suspended. */
void rf_http_respond_json(struct rf_http_req *req, unsigned status,
                          const char *json, size_t len);

/* Answers with a content type of the caller's choosing (body copied). */
void rf_http_respond(struct rf_http_req *req, unsigned status,
                     const char *content_type, const char *body, size_t len);

/* Answers {"error":{"code":code,"message":...}} with `status`. */
void rf_http_respond_error(struct rf_http_req *req, unsigned status,
                           const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Adds a header to the answer that follows (e.g. Allow, Location). Call
 * before answering; at most 4 per request. */
void rf_http_add_header(struct rf_http_req *req, const char *name,
                        const char *value);

/* Whether the request has been answered. */
int rf_http_answered(const struct rf_http_req *req);

#endif

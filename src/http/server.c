/* libmicrohttpd on the libuv loop: one uv_poll_t on MHD's epoll descriptor,
 * one timer for MHD's own timeouts, and a sweep that cuts slow clients. */
#include "referee/http.h"
#include "referee/error.h"
#include "referee/log.h"

#include "internal.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#define SWEEP_MS 250
#define DISCARD_MAX (4u << 20) /* plus 4 x body_max; then close */
struct rf_http_server {
    uv_poll_t poll;   /* MHD's epoll descriptor */
    uv_timer_t timer; /* MHD's own timeouts and deferred runs */
    uv_timer_t sweep; /* slow-client deadlines */
    int closing;      /* handles still to close before free */
    struct MHD_Daemon *d;
    struct rf_http_limits lim;
    struct rf_http_app app;
    struct conn *conns;
    unsigned long closed; /* connections closed so far */
    unsigned open;        /* connections open now */
    struct rf_http_req *reqs;
    size_t inflight;
    unsigned port;
    uv_loop_t *loop;
};

void rf_http_limits_default(struct rf_http_limits *l)
{
    l->header_max = 16 * 1024;
    l->body_max = 1024 * 1024;
    l->header_timeout_ms = 10000;
    l->body_timeout_ms = 30000;
    l->keepalive_idle_ms = 60000;
    l->connections_max = 1024;
    l->connections_per_ip = 0;
}

static void run_mhd(struct rf_http_server *srv);
static void on_timer(uv_timer_t *t);

void rf__http_defer_run(struct rf_http_server *srv)
{
    uv_timer_start(&srv->timer, on_timer, 0, 0);
}

/* --- requests ----------------------------------------------------------- */

static void link_req(struct rf_http_server *srv, struct rf_http_req *r)
{
    r->next = srv->reqs;
    if (srv->reqs) {
        srv->reqs->prev = r;
    }
    srv->reqs = r;
    srv->inflight++;
}

static void free_req(struct rf_http_req *r)
{
    struct rf_http_server *srv = r->srv;

    if (r->prev) {
        r->prev->next = r->next;
    } else {
        srv->reqs = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    }
    srv->inflight--;
    if (r->resp) {
        MHD_destroy_response(r->resp);
    }
    for (int i = 0; i < r->extra_n; i++) {
        free(r->extra_store[i][0]);
        free(r->extra_store[i][1]);
    }
    for (int i = 0; i < r->trimmed_n; i++) {
        free(r->trimmed[i]);
    }
    free(r->body);
    free(r);
}

static void client_text(struct MHD_Connection *mc, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(out, n, "?");
    if (sa && sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
                  (socklen_t)n);
    } else if (sa && sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                  out, (socklen_t)n);
    }
}

static struct rf_http_req *new_req(struct rf_http_server *srv,
                                   struct MHD_Connection *mc,
                                   const char *method, const char *url)
{
    struct rf_http_req *r = calloc(1, sizeof(*r));
    const union MHD_ConnectionInfo *ci;

    if (r == NULL) {
        return NULL;
    }
    r->srv = srv;
    r->mc = mc;
    r->method = method;
    r->path = url;
    client_text(mc, r->client, sizeof(r->client));
    ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->conn = ci ? ci->socket_context : NULL;
    if (r->conn) {
        r->conn->phase = PHASE_BODY;
        r->conn->since = uv_now(srv->loop);
    }
    link_req(srv, r);
    return r;
}

/* Appends body bytes; past the limit, marks the request too big. */
static void append_body(struct rf_http_req *r, const char *data, size_t n)
{
    size_t need = r->body_len + n;
    char *p;

    if (r->too_big || need > r->srv->lim.body_max) {
        r->too_big = 1;
        return;
    }
    if (need + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap * 2 : 4096;

        while (cap < need + 1) {
            cap *= 2;
        }
        p = realloc(r->body, cap);
        if (p == NULL) {
            r->too_big = 1;
            return;
        }
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len = need;
    r->body[need] = '\0';
}

/* Rejects at once a body announced larger than the limit. */
static int announced_too_big(struct rf_http_req *r)
{
    const char *cl = rf_http_header(r, "Content-Length");
    unsigned long long n;
    char *end;

    if (cl == NULL) {
        return 0;
    }
    n = strtoull(cl, &end, 10);
    return *end == '\0' && n > r->srv->lim.body_max;
}

static int has_body(const struct rf_http_req *r)
{
    const char *cl = rf_http_header(r, "Content-Length");

    return (cl != NULL && strcmp(cl, "0") != 0) ||
           rf_http_header(r, "Transfer-Encoding") != NULL;
}

static enum MHD_Result queue(struct rf_http_req *r)
{
    enum MHD_Result ret = MHD_queue_response(r->mc, r->status, r->resp);

    if (r->conn) {
        r->conn->phase = PHASE_HANDLING;
    }
    return ret;
}

static void respond_too_big(struct rf_http_req *r)
{
    rf_http_respond_error(r, 413, "body_too_large",
                          "request body exceeds %zu bytes",
                          r->srv->lim.body_max);
}

/* Whether the request line and headers are over limits.header_max. MHD
 * itself only refuses what overflows the connection's memory pool. */
static int headers_too_large(const struct rf_http_req *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
        r->mc, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);

    return ci != NULL && ci->header_size > r->srv->lim.header_max;
}

/* How a request says where its body ends. */
struct framing {
    int lengths, chunked;
    int other; /* a transfer coding other than exactly "chunked" */
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value)
{
    struct framing *f = cls;

    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->lengths++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        /* exactly as libmicrohttpd compares: "chunked " is not chunked
         * to it, and it would wait for the connection's end */
        f->other |= f->chunked || value == NULL ||
                    strcasecmp(value, "chunked") != 0;
        f->chunked = 1;
    }
    return MHD_YES;
}

/* Two refusals come from it. Two Content-Length headers, or one beside
 * Transfer-Encoding, leave the body's end to whoever reads the request
 * (RFC 9112 section 6.3): a proxy in front and referee could disagree,
 * and a second request be smuggled in; libmicrohttpd 0.9.75 takes the
 * first. A transfer coding other than chunked (gzip, "gzip, chunked"):
 * libmicrohttpd would take the connection's end for the body's, wait
 * until the body timeout and answer nothing; RFC 9112 section 6.1 says
 * 501. */
static struct framing framing_of(const struct rf_http_req *r)
{
    struct framing f = {0, 0, 0};

    (void)MHD_get_connection_values(r->mc, MHD_HEADER_KIND, count_framing,
                                    &f);
    return f;
}

/* First call for a request: headers are in. */
static enum MHD_Result on_first(struct rf_http_server *srv,
                                struct MHD_Connection *mc, const char *url,
                                const char *method, void **con_cls)
{
    struct rf_http_req *r = new_req(srv, mc, method, url);
    struct framing f;

    if (r == NULL) {
        return MHD_NO; /* out of memory: MHD closes the connection */
    }
    *con_cls = r;
    f = framing_of(r);
    if (headers_too_large(r)) {
        rf_http_add_header(r, "Connection", "close");
        rf_http_respond_error(r, 431, "header_too_large",
                              "the request line and headers exceed %zu "
                              "bytes",
                              srv->lim.header_max);
    } else if (f.lengths > 1 || (f.lengths > 0 && f.chunked)) {
        rf_http_add_header(r, "Connection", "close");
        rf_http_respond_error(r, 400, "ambiguous_length",
                              "the request has more than one Content-Length, "
                              "or one with Transfer-Encoding");
    } else if (f.other) {
        rf_http_add_header(r, "Connection", "close");
        rf_http_respond_error(r, 501, "unsupported_transfer_encoding",
                              "the only transfer coding taken is chunked");
    } else {
        srv->app.on_headers(r, srv->app.arg);
    }
    if (r->resp == NULL && announced_too_big(r)) {
        respond_too_big(r);
    }
    /* An answer queued before a body is read closes the connection; a
     * request without a body is answered on the next call and keeps it. */
    return r->resp && has_body(r) ? queue(r) : MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mc,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct rf_http_server *srv = cls;
    struct rf_http_req *r = *con_cls;

    if (r == NULL) {
        return on_first(srv, mc, url, method, con_cls);
    }
    if (*upload_size > 0) {
        append_body(r, upload, *upload_size);
        if (r->too_big) {
            /* MHD 0.9.75 cannot answer before the upload ends, so the rest
             * is read and dropped, and 413 goes out at the end. A body far
             * past the limit is not worth reading: close instead. */
            r->discarded += *upload_size;
            if (r->discarded > DISCARD_MAX + 4 * r->srv->lim.body_max) {
                *upload_size = 0;
                return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_big && r->resp == NULL) {
        respond_too_big(r);
    }
    if (r->resp == NULL && !r->dispatched) {
        r->dispatched = 1;
        if (r->conn) {
            r->conn->phase = PHASE_HANDLING;
        }
        srv->app.on_request(r, srv->app.arg);
    }
    if (r->resp == NULL) {
        /* Limitation: MHD 0.9 has no other way to answer later; the
         * suspension costs two epoll_ctl and an empty read per request,
         * part of why durable intake stays under half the ceiling
         * (docs/limitations.md). MHD 1.x answers without it. */
        r->suspended = 1;
        MHD_suspend_connection(mc);
        return MHD_YES;
    }
    return queue(r);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct rf_http_req *r = *con_cls;

    if (r == NULL) {
        return;
    }
    if (r->conn) {
        r->conn->phase = PHASE_IDLE;
        r->conn->since = uv_now(r->srv->loop);
    }
    *con_cls = NULL;
    free_req(r);
}

/* --- connections and deadlines ------------------------------------------ */

static void on_connection(void *cls, struct MHD_Connection *mc,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct rf_http_server *srv = cls;
    struct conn *c = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        srv->closed++; /* for run_mhd */
        srv->open--;
    } else {
        srv->open++;
    }
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            return; /* no deadline for this one; MHD's timeout still holds */
        }
        c->mc = mc;
        c->phase = PHASE_NEW;
        c->since = uv_now(srv->loop);
        c->next = srv->conns;
        if (srv->conns) {
            srv->conns->prev = c;
        }
        srv->conns = c;
        *socket_context = c;
        return;
    }
    if (c == NULL) {
        return;
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    free(c);
    *socket_context = NULL;
}

/* The deadline of a connection in its phase, in ms; 0 means none. */
static uint64_t deadline_of(const struct rf_http_server *srv,
                            const struct conn *c)
{
    switch (c->phase) {
    case PHASE_NEW:
        return srv->lim.header_timeout_ms;
    case PHASE_BODY:
        return srv->lim.body_timeout_ms;
    case PHASE_IDLE:
        /* Limitation: MHD does not tell us when the next request's first
         * byte arrives, so on a kept-alive connection the next headers get
         * keepalive_idle_ms + header_timeout_ms from the last answer
         * (docs/limitations.md). */
        return (uint64_t)srv->lim.keepalive_idle_ms +
               srv->lim.header_timeout_ms;
    default:
        return 0;
    }
}

/* What a cut-off client had not done in time, for the log. */
static const char *late_for(enum conn_phase phase)
{
    switch (phase) {
    case PHASE_NEW:
        return "headers not complete within limits.header_timeout_ms";
    case PHASE_BODY:
        return "body not complete within limits.body_timeout_ms";
    default:
        return "no new request within limits.keepalive_idle_ms";
    }
}

/* Shuts a connection down; MHD sees the end at its next run. Returns 1 if
 * it did. */
static int cut_off(struct conn *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);

    if (ci == NULL) {
        return 0;
    }
    (void)shutdown(ci->connect_fd, SHUT_RDWR);
    c->phase = PHASE_HANDLING; /* cut once */
    return 1;
}

/* Every SWEEP_MS: cuts off clients past their deadline and, while all of
 * limits.connections_max are open, the idle kept-alive ones, since clients
 * waiting in the backlog behind them (or /healthz) could otherwise wait
 * keepalive_idle_ms for a slot, and one client could hold every slot by
 * sending a request a minute on each. */
static void on_sweep(uv_timer_t *t)
{
    struct rf_http_server *srv = t->data;
    uint64_t now = uv_now(t->loop);
    int full = srv->open >= srv->lim.connections_max;
    unsigned cut = 0, idle = 0;

    for (struct conn *c = srv->conns; c; c = c->next) {
        uint64_t limit = deadline_of(srv, c);

        if (full && c->phase == PHASE_IDLE) {
            idle += cut_off(c);
        } else if (limit != 0 && now - c->since > limit) {
            enum conn_phase late = c->phase;

            if (cut_off(c)) {
                rf_log_info("http", RF_F("why", late_for(late)),
                            "cutting off a slow client");
                cut++;
            }
        }
    }
    if (idle > 0) {
        rf_log_warn("http", RF_NOF,
                    "all %u connections (limits.connections_max) are "
                    "open: closing %u idle kept-alive ones",
                    srv->lim.connections_max, idle);
    }
    if (cut + idle > 0) {
        run_mhd(srv);
    }
}

/* --- loop integration --------------------------------------------------- */

static void run_mhd(struct rf_http_server *srv)
{
    MHD_UNSIGNED_LONG_LONG ms;
    unsigned long closed = srv->closed;

    (void)MHD_run(srv->d);
    /* At limits.connections_max MHD takes its listening socket out of its
     * epoll set, and puts it back only at the start of a later run. When
     * the run that closed connections was the last one with anything to
     * do (the sweep cutting off every slow client at once), nothing would
     * wake the loop again and the clients waiting in the backlog, even
     * /healthz, would never be accepted. A second run puts the socket
     * back, and its epoll descriptor then wakes us for them. */
    if (srv->closed != closed) {
        (void)MHD_run(srv->d);
    }
    if (MHD_get_timeout(srv->d, &ms) == MHD_YES) {
        uv_timer_start(&srv->timer, on_timer, (uint64_t)ms, 0);
    } else {
        uv_timer_stop(&srv->timer);
    }
}

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    run_mhd(p->data);
}

/* Limitation: answers MHD produces itself (an unparseable request, headers
 * that overflow the connection's memory pool, broken chunking) carry its
 * HTML body, not our JSON error shape; 0.9.75 builds them internally and
 * has no hook to replace them. Headers over header_max that fit the pool
 * get our JSON 431 (docs/limitations.md). */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char msg[256];

    if (!RF_LOG_ENABLED(RF_LOG_DEBUG)) {
        return;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    rf_log_debug("http", RF_NOF, "microhttpd: %s", msg);
}

/* Decodes %XX in the path and query values as libmicrohttpd would, except
 * that text holding "%00" stays as it came: decoded, the NUL would end the
 * C string there, and "/t/acme/hooks/shop%00x" was routed to source
 * "shop" (a rule on exact paths in front of referee could be gone round).
 * Left encoded, it names no route: 404. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    for (const char *p = s; (p = strchr(p, '%')) != NULL; p++) {
        if (p[1] == '0' && p[2] == '0') {
            return strlen(s);
        }
    }
    return MHD_http_unescape(s);
}

static struct MHD_Daemon *start_daemon(struct rf_http_server *srv,
                                       const struct sockaddr_in *sa)
{
    size_t mem = srv->lim.header_max * 2;

    if (mem < 32 * 1024) {
        mem = 32 * 1024;
    }
    /* The logger goes first, so that MHD reports problems with the other
     * options through it. */
    return MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_access, srv, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_logger, srv, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem, MHD_OPTION_CONNECTION_LIMIT,
        srv->lim.connections_max, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        srv->lim.connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (srv->lim.keepalive_idle_ms + 999) / 1000,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_UNESCAPE_CALLBACK,
        unescape, NULL, MHD_OPTION_END);
}

struct rf_http_server *rf_http_server_start(uv_loop_t *loop, const char *host,
                                            unsigned port,
                                            const struct rf_http_limits *limits,
                                            const struct rf_http_app *app)
{
    struct rf_http_server *srv = calloc(1, sizeof(*srv));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    const union MHD_DaemonInfo *di;

    if (srv == NULL) {
        return NULL;
    }
    srv->lim = *limits;
    srv->app = *app;
    sa.sin_port = htons((uint16_t)port);
    /* Limitation: IPv4 only; IPv6 needs MHD_USE_IPv6 and "[::1]:port"
     * parsing, and edge hosts behind a balancer use IPv4 inside
     * (docs/limitations.md). */
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        rf_log_error("http", RF_F("addr", host), "not an IPv4 address");
        goto fail;
    }
    srv->loop = loop;
    srv->d = start_daemon(srv, &sa);
    if (srv->d == NULL) {
        rf_log_error("http", RF_F("addr", host), "cannot listen on port %u",
                     port);
        goto fail;
    }
    di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : port;
    di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_EPOLL_FD);
    uv_poll_init(loop, &srv->poll, di->epoll_fd);
    uv_timer_init(loop, &srv->timer);
    uv_timer_init(loop, &srv->sweep);
    srv->poll.data = srv;
    srv->timer.data = srv;
    srv->sweep.data = srv;
    uv_poll_start(&srv->poll, UV_READABLE, on_poll);
    uv_timer_start(&srv->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    run_mhd(srv);
    return srv;
fail:
    free(srv);
    return NULL;
}

unsigned rf_http_server_port(const struct rf_http_server *srv)
{
    return srv->port;
}

void rf_http_server_quiesce(struct rf_http_server *srv)
{
    MHD_socket fd = MHD_quiesce_daemon(srv->d);

    if (fd != MHD_INVALID_SOCKET) {
        close(fd);
    }
}

size_t rf_http_server_inflight(const struct rf_http_server *srv)
{
    return srv->inflight;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct rf_http_server *srv = h->data;

    if (--srv->closing == 0) {
        free(srv);
    }
}

void rf_http_server_stop(struct rf_http_server *srv)
{
    if (srv == NULL) {
        return;
    }
    for (struct rf_http_req *r = srv->reqs; r; r = r->next) {
        if (r->suspended && r->resp == NULL) {
            rf_http_respond_error(r, 503, "stopping", "server is stopping");
        }
    }
    (void)MHD_run(srv->d); /* let resumed requests answer */
    MHD_stop_daemon(srv->d);
    srv->closing = 3;
    uv_close((uv_handle_t *)&srv->poll, on_handle_closed);
    uv_close((uv_handle_t *)&srv->timer, on_handle_closed);
    uv_close((uv_handle_t *)&srv->sweep, on_handle_closed);
}

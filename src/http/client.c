/* libcurl multi on libuv: one uv_poll_t per socket curl announces, one
 * timer for curl's timeouts, and the checks of http_client.h. */
#include "referee/http_client.h"
#include "referee/error.h"
#include "referee/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_RESPONSE (8u << 20)
#define HEADER_BYTES_MAX (64 * 1024)

struct rf_http_client {
    uv_loop_t *loop;
    uv_timer_t timer;
    CURLM *multi;
    char *ca_file;
    struct request *reqs;
    size_t active;
};

/* The uv_poll_t for one socket; found through curl_multi_assign, never by
 * descriptor (curl may announce a reused descriptor before the old handle
 * finished closing). */
struct sock {
    uv_poll_t poll;
    struct rf_http_client *c;
    curl_socket_t fd;
};

struct request {
    struct request *prev, *next;
    struct rf_http_client *c;
    CURL *easy;
    struct curl_slist *hdrs;
    rf_http_done_cb done;
    void *arg;
    char *body;                 /* copy of the request body */
    char *resp;                 /* response body */
    size_t resp_len, resp_cap, max;
    char *head;                 /* response header lines */
    size_t head_len, head_cap;
    int private_ok;
    int too_big;
    char denied[160];
    char errbuf[CURL_ERROR_SIZE];
};

/* --- request text ------------------------------------------------------- */

int rf_http_method_valid(const char *m, size_t len)
{
    if (len == 0 || len > RF_HTTP_METHOD_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (m[i] < 'A' || m[i] > 'Z') {
            return 0;
        }
    }
    return 1;
}

int rf_http_token(const char *s, size_t len)
{
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '\0' ||
            (!isalnum(c) && strchr("!#$%&'*+-.^_`|~", c) == NULL)) {
            return 0;
        }
    }
    return 1;
}

int rf_http_url_text_valid(const char *u, size_t len)
{
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)u[i];

        if (c <= 0x20 || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* Whether a "Name: value" line is one header line and nothing more. */
static int header_line_valid(const char *h)
{
    const char *colon = strchr(h, ':');

    return colon != NULL && rf_http_token(h, (size_t)(colon - h)) &&
           strpbrk(colon, "\r\n") == NULL;
}

/* Checks what goes into the request's text. Writes a reason (never the
 * offending bytes) and returns -1 when something could inject. */
static int text_valid(const struct rf_http_call *call, char *why, size_t n)
{
    if (call->method == NULL ||
        !rf_http_method_valid(call->method, strlen(call->method))) {
        snprintf(why, n, "the method is not 1 to %d upper-case letters",
                 RF_HTTP_METHOD_MAX);
        return -1;
    }
    if (call->url == NULL ||
        !rf_http_url_text_valid(call->url, strlen(call->url))) {
        snprintf(why, n, "the URL is empty or has spaces or control "
                         "characters");
        return -1;
    }
    for (const char *const *h = call->headers; h && *h; h++) {
        if (!header_line_valid(*h)) {
            snprintf(why, n, "header line %d is not \"token: value\" "
                             "without line breaks",
                     (int)(h - call->headers) + 1);
            return -1;
        }
    }
    return 0;
}

/* --- addresses and the allow-list --------------------------------------- */

static int v4_private(uint32_t a)
{
    return (a >> 24) == 10 || (a >> 24) == 127 || (a >> 24) == 0 ||
           (a >> 20) == 0xAC1 ||         /* 172.16/12 */
           (a >> 16) == 0xC0A8 ||        /* 192.168/16 */
           (a >> 16) == 0xA9FE ||        /* 169.254/16 */
           (a >> 22) == (100 << 2 | 1) || /* 100.64/10 */
           (a >> 28) >= 0xE;             /* multicast and reserved */
}

int rf_http_addr_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        return v4_private(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *b =
            ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
                                                 0, 0, 0, 0, 0xff, 0xff};
        static const unsigned char zero[15] = {0};

        if (memcmp(b, mapped, 12) == 0) {
            return v4_private((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                              (uint32_t)b[14] << 8 | b[15]);
        }
        return memcmp(b, zero, 15) == 0 ||      /* :: and ::1 */
               (b[0] & 0xfe) == 0xfc ||         /* fc00::/7 */
               (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* fe80::/10 */
               b[0] == 0xff;                    /* multicast */
    }
    return 1;
}

/* Finds the allow entry for the URL, checking scheme and port. Writes a
 * reason and returns NULL when refused. */
static const struct rf_http_allow *allowed(const struct rf_http_call *call,
                                           char *why, size_t n)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    const struct rf_http_allow *hit = NULL;
    static const struct rf_http_allow any = {NULL, 0, 0, 0};
    unsigned p;

    if (u == NULL ||
        curl_url_set(u, CURLUPART_URL, call->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
            CURLUE_OK) {
        snprintf(why, n, "not a valid URL");
        goto out;
    }
    p = (unsigned)strtoul(port, NULL, 10);
    if (call->allow == NULL) {
        hit = &any;
    }
    for (size_t i = 0; hit == NULL && i < call->n_allow; i++) {
        const struct rf_http_allow *a = &call->allow[i];

        if (strcasecmp(a->host, host) == 0 && (a->port == 0 || a->port == p)) {
            hit = a;
        }
    }
    if (hit == NULL) {
        snprintf(why, n, "host %s:%u is not in the allowed hosts", host, p);
    } else if (strcmp(scheme, "https") != 0 &&
               !(strcmp(scheme, "http") == 0 && hit->http)) {
        snprintf(why, n, "%s is not allowed for %s (https only)", scheme,
                 host);
        hit = NULL;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return hit;
}

static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *addr)
{
    struct request *r = clientp;
    char text[INET6_ADDRSTRLEN] = "?";

    if (!r->private_ok && rf_http_addr_private(&addr->addr)) {
        const void *a = addr->family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)&addr->addr)
                                  ->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)&addr
                                                  ->addr)
                                  ->sin6_addr;

        inet_ntop(addr->family, a, text, sizeof(text));
        snprintf(r->denied, sizeof(r->denied),
                 "address %s is private or loopback and not allowed", text);
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

/* --- buffers ------------------------------------------------------------ */

/* Appends to a growable buffer up to max bytes; returns -1 past max. */
static int append(char **buf, size_t *len, size_t *cap, size_t max,
                  const char *data, size_t n)
{
    if (*len + n > max) {
        return -1;
    }
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 1024;
        char *p;

        while (want < *len + n + 1) {
            want *= 2;
        }
        p = realloc(*buf, want);
        if (p == NULL) {
            return -1;
        }
        *buf = p;
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct request *r = arg;
    size_t n = size * nmemb;

    if (append(&r->resp, &r->resp_len, &r->resp_cap, r->max, data, n) != 0) {
        r->too_big = 1;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct request *r = arg;
    size_t n = size * nmemb;

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        r->head_len = 0; /* a new response (after 100 or a proxy) */
    }
    if (append(&r->head, &r->head_len, &r->head_cap, HEADER_BYTES_MAX, data,
               n) != 0) {
        return 0;
    }
    return n;
}

/* Splits the header block in place into name/value pairs. */
static void parse_headers(struct request *r, struct rf_http_result *res)
{
    char *line = r->head, *next;

    for (; line && *line; line = next) {
        char *colon, *end = strchr(line, '\n');

        next = end ? end + 1 : NULL;
        if (end) {
            *end = '\0';
            if (end > line && end[-1] == '\r') {
                end[-1] = '\0';
            }
        }
        colon = strchr(line, ':');
        if (colon == NULL || res->nheaders == RF_HTTP_HEADERS_MAX) {
            continue;
        }
        *colon = '\0';
        for (char *p = line; *p; p++) {
            *p = (char)tolower((unsigned char)*p);
        }
        colon++;
        while (*colon == ' ' || *colon == '\t') {
            colon++;
        }
        res->headers[res->nheaders][0] = line;
        res->headers[res->nheaders][1] = colon;
        res->nheaders++;
    }
}

/* --- finishing ---------------------------------------------------------- */

static void unlink_req(struct request *r)
{
    struct rf_http_client *c = r->c;

    if (r->prev) {
        r->prev->next = r->next;
    } else {
        c->reqs = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    }
    c->active--;
}

static void free_req(struct request *r)
{
    if (r->easy) {
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->hdrs);
    free(r->body);
    free(r->resp);
    free(r->head);
    free(r);
}

/* Maps curl's outcome onto our result and calls back. */
static void finish(struct request *r, CURLcode cres)
{
    struct rf_http_result res = {0};

    if (cres == CURLE_OK) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
        parse_headers(r, &res);
    } else if (r->too_big) {
        res.rc = RF_ETOOBIG;
        res.error = "response body over the size limit";
    } else if (r->denied[0]) {
        res.rc = RF_EDENIED;
        res.error = r->denied;
    } else if (cres == CURLE_OPERATION_TIMEDOUT) {
        res.rc = RF_ETIMEOUT;
        res.error = "timed out";
    } else {
        res.rc = RF_EHTTP;
        res.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(cres);
    }
    res.body = r->resp ? r->resp : "";
    res.body_len = r->resp_len;
    r->done(&res, r->arg);
}

static void drain_done(struct rf_http_client *c)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        struct request *r = NULL;
        CURLcode cres;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        cres = msg->data.result; /* msg dies with remove_handle */
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(c->multi, msg->easy_handle);
        unlink_req(r);
        finish(r, cres);
        free_req(r);
    }
}

/* --- the loop side ------------------------------------------------------ */

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *s = (struct sock *)p;
    int flags = 0, running;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    }
    if (events & UV_READABLE) {
        flags |= CURL_CSELECT_IN;
    }
    if (events & UV_WRITABLE) {
        flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(s->c->multi, s->fd, flags, &running);
    drain_done(s->c);
}

static void on_timeout(uv_timer_t *t)
{
    struct rf_http_client *c = t->data;
    int running;

    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(c);
}

/* curl asks for a timer: -1 stops it; 0 must not call back into curl from
 * here, so it becomes a zero-delay uv timer. */
static int on_curl_timer(CURLM *multi, long ms, void *arg)
{
    struct rf_http_client *c = arg;

    if (ms < 0) {
        uv_timer_stop(&c->timer);
    } else {
        uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);
    }
    return 0;
}

static void on_sock_closed(uv_handle_t *h)
{
    free(h);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *arg,
                          void *sockp)
{
    struct rf_http_client *c = arg;
    struct sock *s = sockp;
    int events = 0;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll); /* curl closes fd right after */
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL || uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->c = c;
        s->fd = fd;
        curl_multi_assign(c->multi, fd, s);
    }
    if (what & CURL_POLL_IN) {
        events |= UV_READABLE;
    }
    if (what & CURL_POLL_OUT) {
        events |= UV_WRITABLE;
    }
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

struct rf_http_client *rf_http_client_new(uv_loop_t *loop,
                                          const char *ca_file)
{
    struct rf_http_client *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->loop = loop;
    c->multi = curl_multi_init();
    if (c->multi == NULL ||
        (ca_file && (c->ca_file = strdup(ca_file)) == NULL)) {
        curl_multi_cleanup(c->multi);
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

size_t rf_http_client_active(const struct rf_http_client *c)
{
    return c->active;
}

/* Refuses a call before any I/O. */
static void refuse(const struct rf_http_call *call, rf_http_done_cb done,
                   void *arg, const char *why)
{
    struct rf_http_result res = {.rc = RF_EDENIED, .error = why, .body = ""};

    rf_log_debug("http", RF_NOF, "refused a request: %s", why);
    done(&res, arg);
}

static int set_method(struct request *r, const struct rf_http_call *call)
{
    CURL *e = r->easy;

    if (call->body_len > 0) {
        r->body = malloc(call->body_len);
        if (r->body == NULL) {
            return RF_ENOMEM;
        }
        memcpy(r->body, call->body, call->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)call->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    }
    if (strcmp(call->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(call->method, "GET") != 0 &&
               strcmp(call->method, "POST") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method);
    } else if (strcmp(call->method, "POST") == 0 && call->body_len == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    return 0;
}

static int set_options(struct request *r, const struct rf_http_call *call,
                       const struct rf_http_allow *a)
{
    CURL *e = r->easy;
    unsigned t = call->timeout_ms ? call->timeout_ms : DEFAULT_TIMEOUT_MS;

    curl_easy_setopt(e, CURLOPT_URL, call->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, a->http ? "http,https"
                                                        : "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* env proxies would dodge the
                                               address check */
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (r->c->ca_file) {
        curl_easy_setopt(e, CURLOPT_CAINFO, r->c->ca_file);
    }
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    for (const char *const *h = call->headers; h && *h; h++) {
        struct curl_slist *l = curl_slist_append(r->hdrs, *h);

        if (l == NULL) {
            return RF_ENOMEM;
        }
        r->hdrs = l;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    return set_method(r, call);
}

int rf_http_client_request(struct rf_http_client *c,
                           const struct rf_http_call *call,
                           rf_http_done_cb done, void *arg)
{
    const struct rf_http_allow *a;
    struct request *r;
    char why[200];

    a = text_valid(call, why, sizeof(why)) == 0
            ? allowed(call, why, sizeof(why))
            : NULL;
    if (a == NULL) {
        refuse(call, done, arg, why);
        return 0;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->easy = curl_easy_init()) == NULL) {
        free(r);
        return RF_ENOMEM;
    }
    r->c = c;
    r->done = done;
    r->arg = arg;
    r->private_ok = a->private_ok;
    r->max = call->max_response ? call->max_response : DEFAULT_MAX_RESPONSE;
    if (set_options(r, call, a) != 0 ||
        curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
        free_req(r);
        return RF_ENOMEM;
    }
    r->next = c->reqs;
    if (c->reqs) {
        c->reqs->prev = r;
    }
    c->reqs = r;
    c->active++;
    return 0;
}

static void on_client_closed(uv_handle_t *h)
{
    struct rf_http_client *c = h->data;

    free(c->ca_file);
    free(c);
}

void rf_http_client_free(struct rf_http_client *c)
{
    if (c == NULL) {
        return;
    }
    uv_timer_stop(&c->timer);
    while (c->reqs) {
        struct request *r = c->reqs;
        struct rf_http_result res = {.rc = RF_ESTOPPING,
                                     .error = "client stopped", .body = ""};

        curl_multi_remove_handle(c->multi, r->easy);
        unlink_req(r);
        r->done(&res, r->arg);
        free_req(r);
    }
    curl_multi_cleanup(c->multi);
    uv_close((uv_handle_t *)&c->timer, on_client_closed);
}

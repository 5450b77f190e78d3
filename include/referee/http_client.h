/* Outbound HTTP through libcurl's multi interface on a libuv loop, with the
 * checks a multi-tenant host needs: a host allow-list, https unless a host
 * is allowed over http, TLS verification always on, the connected address
 * checked so that a name resolving to a private or loopback address is
 * refused unless allowed, a response size cap and a timeout.
 *
 * Caveats: one client per loop; every call is on that loop's thread.
 * Redirects are not followed (the 3xx answer is returned as is), so a
 * redirect cannot lead past the allow-list.
 */
#ifndef REFEREE_HTTP_CLIENT_H
#define REFEREE_HTTP_CLIENT_H

#include <stddef.h>

#include <uv.h>

#define RF_HTTP_HEADERS_MAX 32

/* A host a caller may reach. `host` is a name or address; `http` allows
 * plain http; `private` allows private, loopback and link-local
 * addresses; `port` 0 allows any port. */
struct rf_http_allow {
    const char *host;
    unsigned port;
    int http;
    int private_ok;
};

#define RF_HTTP_METHOD_MAX 16

/* Whether m (len bytes) is a method we send: 1 to RF_HTTP_METHOD_MAX
 * upper-case ASCII letters (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS,
 * ...). */
int rf_http_method_valid(const char *m, size_t len);

/* Whether s (len bytes) is an RFC 9110 token, as a header name must be. */
int rf_http_token(const char *s, size_t len);

/* Whether u (len bytes) may be a URL we send: not empty, no byte below
 * 0x21, no DEL and no NUL. */
int rf_http_url_text_valid(const char *u, size_t len);

struct rf_http_call {
    const char *method;  /* see rf_http_method_valid() */
    const char *url;
    const char *const *headers; /* "Name: value", NULL-terminated; or NULL */
    const char *body;
    size_t body_len;
    unsigned timeout_ms;  /* whole call; 0: 10 s */
    size_t max_response;  /* body bytes; 0: 8 MiB */
    const struct rf_http_allow *allow; /* n_allow entries; NULL: any host */
    size_t n_allow;
};

struct rf_http_result {
    int rc;              /* 0, or RF_EDENIED, RF_ETIMEOUT, RF_ETOOBIG,
                            RF_EHTTP (connection or TLS), RF_ESTOPPING */
    const char *error;   /* a sentence when rc != 0 */
    long status;         /* HTTP status when rc == 0 */
    const char *body;    /* NUL-terminated, body_len bytes */
    size_t body_len;
    const char *headers[RF_HTTP_HEADERS_MAX][2]; /* name (lower case), value */
    size_t nheaders;
};

/* Called once per request on the loop thread; the result and everything it
 * points to is borrowed for the call only. */
typedef void (*rf_http_done_cb)(const struct rf_http_result *res, void *arg);

struct rf_http_client;

/* Creates a client on `loop`. `ca_file` (may be NULL: the system's CAs)
 * names extra trusted certificates, for tests. Caller owns the result;
 * free with rf_http_client_free(). NULL on failure. */
struct rf_http_client *rf_http_client_new(uv_loop_t *loop,
                                          const char *ca_file);

/* Starts a request; `done` is called exactly once, possibly before this
 * returns when the call is refused before any I/O with RF_EDENIED (bad
 * URL, host not allowed, or a method, URL or header that could inject
 * request text: see the validators above; header lines must be
 * "token: value" without CR, LF or NUL). `call` is copied. Returns 0 or
 * RF_ENOMEM (then `done` is not called). */
int rf_http_client_request(struct rf_http_client *c,
                           const struct rf_http_call *call,
                           rf_http_done_cb done, void *arg);

/* Requests in flight. */
size_t rf_http_client_active(const struct rf_http_client *c);

/* Ends every request in flight (their callbacks get RF_ESTOPPING), closes
 * the client's handles and frees it once they closed; the loop must run
 * once more. Accepts NULL. */
void rf_http_client_free(struct rf_http_client *c);

/* Whether an address is private, loopback, link-local or otherwise not
 * public (RFC 1918, 127/8, 169.254/16, 100.64/10, 0/8, ::1, fc00::/7,
 * fe80::/10, IPv4-mapped forms of these). */
int rf_http_addr_private(const struct sockaddr *sa);

#endif

/* The outbound client against our own listener on 127.0.0.1: success,
 * timeout, refused host, refused private address, TLS failure, oversized
 * answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <curl/curl.h>

#include "referee/error.h"
#include "referee/http.h"
#include "referee/http_client.h"

static uv_loop_t loop;
static struct rf_http_server *srv;
static struct rf_http_client *cli;
static char base[64];
static struct rf_http_req *held; /* a request the server never answers */

static void on_headers(struct rf_http_req *req, void *arg)
{
}

static int requests; /* requests the server's handler saw */

static void on_request(struct rf_http_req *req, void *arg)
{
    const char *path = rf_http_path(req);
    size_t len;
    const char *body = rf_http_body(req, &len);

    requests++;

    if (strcmp(path, "/echo") == 0) {
        rf_http_add_header(req, "X-Method", rf_http_method(req));
        rf_http_respond(req, 201, "text/plain", body, len);
    } else if (strcmp(path, "/big") == 0) {
        char *big = malloc(300000);

        memset(big, 'b', 300000);
        rf_http_respond(req, 200, "text/plain", big, 300000);
        free(big);
    } else if (strcmp(path, "/hang") == 0) {
        held = req; /* answered at teardown */
    } else {
        rf_http_respond_error(req, 404, "not_found", "no");
    }
}

struct outcome {
    int called;
    int rc;
    long status;
    char body[64];
    size_t body_len;
    char error[200];
    char method_header[16];
};

static void on_done(const struct rf_http_result *res, void *arg)
{
    struct outcome *o = arg;

    o->called++;
    o->rc = res->rc;
    o->status = res->status;
    o->body_len = res->body_len;
    snprintf(o->body, sizeof(o->body), "%s", res->body);
    snprintf(o->error, sizeof(o->error), "%s", res->error ? res->error : "");
    for (size_t i = 0; i < res->nheaders; i++) {
        if (strcmp(res->headers[i][0], "x-method") == 0) {
            snprintf(o->method_header, sizeof(o->method_header), "%s",
                     res->headers[i][1]);
        }
    }
}

static void run_until(struct outcome *o)
{
    while (!o->called) {
        uv_run(&loop, UV_RUN_ONCE);
    }
}

static const struct rf_http_allow local_ok[] = {
    {"127.0.0.1", 0, 1, 1}};
static const struct rf_http_allow local_public_only[] = {
    {"127.0.0.1", 0, 1, 0}};

static struct outcome call(const char *method, const char *path,
                           const char *body,
                           const struct rf_http_allow *allow, size_t nallow,
                           unsigned timeout_ms, size_t max)
{
    struct outcome o = {0};
    char url[128];
    struct rf_http_call c = {method, url, NULL, body, body ? strlen(body) : 0,
                             timeout_ms, max, allow, nallow};

    snprintf(url, sizeof(url), "%s%s", base, path);
    assert_int_equal(rf_http_client_request(cli, &c, on_done, &o), 0);
    run_until(&o);
    assert_int_equal(o.called, 1);
    return o;
}

static int setup(void **state)
{
    struct rf_http_limits lim;
    struct rf_http_app app = {on_headers, on_request, NULL};

    curl_global_init(CURL_GLOBAL_DEFAULT);
    assert_int_equal(uv_loop_init(&loop), 0);
    rf_http_limits_default(&lim);
    srv = rf_http_server_start(&loop, "127.0.0.1", 0, &lim, &app);
    assert_non_null(srv);
    snprintf(base, sizeof(base), "http://127.0.0.1:%u",
             rf_http_server_port(srv));
    cli = rf_http_client_new(&loop, NULL);
    assert_non_null(cli);
    return 0;
}

static int teardown(void **state)
{
    rf_http_client_free(cli);
    rf_http_server_stop(srv);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    curl_global_cleanup();
    return 0;
}

static void test_success(void **state)
{
    struct outcome o = call("PUT", "/echo", "hello", local_ok, 1, 0, 0);

    assert_int_equal(o.rc, 0);
    assert_int_equal(o.status, 201);
    assert_string_equal(o.body, "hello");
    assert_string_equal(o.method_header, "PUT");
}

static void test_timeout(void **state)
{
    struct outcome o = call("GET", "/hang", NULL, local_ok, 1, 300, 0);

    assert_int_equal(o.rc, RF_ETIMEOUT);
}

static void test_host_not_allowed(void **state)
{
    static const struct rf_http_allow other[] = {{"api.example.com", 0, 0, 0}};
    struct outcome o = call("GET", "/echo", NULL, other, 1, 0, 0);

    assert_int_equal(o.rc, RF_EDENIED);
    assert_non_null(strstr(o.error, "not in the allowed hosts"));
}

static void test_private_address_refused(void **state)
{
    struct outcome o = call("GET", "/echo", NULL, local_public_only, 1, 0, 0);

    assert_int_equal(o.rc, RF_EDENIED);
    assert_string_equal(o.error, "address 127.0.0.1 is private or loopback "
                                 "and not allowed");
}

static void test_http_needs_permission(void **state)
{
    static const struct rf_http_allow https_only[] = {
        {"127.0.0.1", 0, 0, 1}};
    struct outcome o = call("GET", "/echo", NULL, https_only, 1, 0, 0);

    assert_int_equal(o.rc, RF_EDENIED);
    assert_non_null(strstr(o.error, "https only"));
}

static void test_tls_failure(void **state)
{
    struct outcome o = {0};
    char url[128];
    struct rf_http_call c = {"GET", url, NULL, NULL, 0, 2000, 0, local_ok, 1};

    /* Our listener speaks plain HTTP, so the TLS handshake must fail. */
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/echo",
             rf_http_server_port(srv));
    assert_int_equal(rf_http_client_request(cli, &c, on_done, &o), 0);
    run_until(&o);
    assert_int_equal(o.rc, RF_EHTTP);
    assert_true(strlen(o.error) > 0);
}

static void test_large_body_capped(void **state)
{
    struct outcome o = call("GET", "/big", NULL, local_ok, 1, 0, 100000);

    assert_int_equal(o.rc, RF_ETOOBIG);
    o = call("GET", "/big", NULL, local_ok, 1, 0, 0);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.body_len, 300000);
}

/* No caller can add request lines through the method, URL or headers:
 * such calls are refused before anything is sent. */
static void test_request_text_that_could_inject_is_refused(void **state)
{
    static const char *const bad_headers[] = {"X-A: 1\r\nX-B: 2", NULL};
    static const char *const bad_names[] = {"X A: 1", NULL};
    static const char *const no_colon[] = {"Host", NULL};
    struct rf_http_call c = {0};
    struct outcome o;
    char url[128];
    int before = requests;

    o = call("GET /admin HTTP/1.1\r\nHost: x\r\n\r\nGET", "/echo", NULL,
             local_ok, 1, 0, 0);
    assert_int_equal(o.rc, RF_EDENIED);
    assert_string_equal(o.error,
                        "the method is not 1 to 16 upper-case letters");
    o = call("get", "/echo", NULL, local_ok, 1, 0, 0);
    assert_int_equal(o.rc, RF_EDENIED);
    o = call("GET", "/echo\r\nX-Injected: 1", NULL, local_ok, 1, 0, 0);
    assert_int_equal(o.rc, RF_EDENIED);
    assert_string_equal(o.error, "the URL is empty or has spaces or control "
                                 "characters");
    o = call("GET", "/echo x", NULL, local_ok, 1, 0, 0);
    assert_int_equal(o.rc, RF_EDENIED);

    snprintf(url, sizeof(url), "%s/echo", base);
    c.method = "GET";
    c.url = url;
    c.allow = local_ok;
    c.n_allow = 1;
    for (int i = 0; i < 3; i++) {
        memset(&o, 0, sizeof(o));
        c.headers = i == 0 ? bad_headers : i == 1 ? bad_names : no_colon;
        assert_int_equal(rf_http_client_request(cli, &c, on_done, &o), 0);
        run_until(&o);
        assert_int_equal(o.rc, RF_EDENIED);
        assert_string_equal(o.error, "header line 1 is not \"token: value\" "
                                     "without line breaks");
    }
    assert_int_equal(requests, before); /* nothing reached the server */

    o = call("OPTIONS", "/echo", NULL, local_ok, 1, 0, 0);
    assert_int_equal(o.rc, 0);
    assert_string_equal(o.method_header, "OPTIONS");
}

static void test_method_and_token_rules(void **state)
{
    assert_true(rf_http_method_valid("PATCH", 5));
    assert_false(rf_http_method_valid("", 0));
    assert_false(rf_http_method_valid("PATCHPATCHPATCHPA", 17));
    assert_false(rf_http_method_valid("GE T", 4));
    assert_false(rf_http_method_valid("GET\0X", 5));
    assert_true(rf_http_token("X-Api_Key.1~", 12));
    assert_false(rf_http_token("X:A", 3));
    assert_false(rf_http_token("X\0A", 3));
    assert_false(rf_http_url_text_valid("https://a/b c", 13));
    assert_false(rf_http_url_text_valid("https://a/\x7f", 11));
    assert_true(rf_http_url_text_valid("https://a/b?c=d%20e", 19));
}

/* limits.header_max is enforced, with our JSON error body. */
static void test_headers_over_header_max_get_431_json(void **state)
{
    static char line[20000];
    const char *headers[] = {line, NULL};
    struct rf_http_call c = {0};
    struct outcome o = {0};
    char url[128];
    int before = requests;

    memcpy(line, "X-Big: ", 7);
    memset(line + 7, 'a', 17000); /* default header_max: 16 KiB */
    line[17007] = '\0';
    snprintf(url, sizeof(url), "%s/echo", base);
    c.method = "POST";
    c.url = url;
    c.headers = headers;
    c.body = "x";
    c.body_len = 1;
    c.allow = local_ok;
    c.n_allow = 1;
    assert_int_equal(rf_http_client_request(cli, &c, on_done, &o), 0);
    run_until(&o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.status, 431);
    /* o.body keeps the first 63 bytes. */
    assert_string_equal(o.body, "{\"error\":{\"code\":\"header_too_large\","
                                "\"message\":\"the request line");
    assert_int_equal(requests, before);
}

static void test_private_ranges(void **state)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    const char *priv[] = {"10.1.2.3", "172.16.0.1", "172.31.255.255",
                          "192.168.1.1", "127.0.0.1", "169.254.169.254",
                          "100.64.0.1", "0.0.0.0"};
    const char *pub[] = {"8.8.8.8", "172.32.0.1", "100.128.0.1",
                         "193.168.1.1"};

    for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++) {
        inet_pton(AF_INET, priv[i], &in.sin_addr);
        assert_true(rf_http_addr_private((struct sockaddr *)&in));
    }
    for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++) {
        inet_pton(AF_INET, pub[i], &in.sin_addr);
        assert_false(rf_http_addr_private((struct sockaddr *)&in));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_host_not_allowed),
        cmocka_unit_test(test_private_address_refused),
        cmocka_unit_test(test_http_needs_permission),
        cmocka_unit_test(test_tls_failure),
        cmocka_unit_test(test_large_body_capped),
        cmocka_unit_test(test_private_ranges),
        cmocka_unit_test(test_request_text_that_could_inject_is_refused),
        cmocka_unit_test(test_method_and_token_rules),
        cmocka_unit_test(test_headers_over_header_max_get_431_json),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

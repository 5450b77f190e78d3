/* The benchmark's ceiling: referee's own HTTP layer (src/http/server.c) on a
 * libuv loop, answering every POST with 202 at once, storing nothing and
 * checking no signature. Usage: bench_ceiling [PORT]; prints "port N". */
#include "referee/http.h"
#include "referee/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char accepted[] = "{\"event_id\":\"0\"}";

struct ceiling {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct rf_http_server *http;
};

static void on_headers(struct rf_http_req *req, void *arg)
{
    if (strcmp(rf_http_method(req), "POST") != 0) {
        rf_http_add_header(req, "Allow", "POST");
        rf_http_respond_error(req, 405, "method_not_allowed", "use POST");
    }
}

static void on_request(struct rf_http_req *req, void *arg)
{
    rf_http_respond_json(req, 202, accepted, sizeof(accepted) - 1);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct ceiling *c = h->data;

    rf_http_server_stop(c->http); /* frees itself on the next loop turn */
    c->http = NULL;
    uv_close((uv_handle_t *)&c->sigint, NULL);
    uv_close((uv_handle_t *)&c->sigterm, NULL);
}

/* Reads the optional port argument; returns 0 or -1 on a bad one. */
static int parse_port(int argc, char **argv, unsigned *port)
{
    char *end;
    unsigned long p;

    *port = 0;
    if (argc < 2) {
        return 0;
    }
    p = strtoul(argv[1], &end, 10);
    if (argc > 2 || *end != '\0' || end == argv[1] || p > 65535) {
        return -1;
    }
    *port = (unsigned)p;
    return 0;
}

int main(int argc, char **argv)
{
    struct rf_http_app app = {on_headers, on_request, NULL};
    struct rf_http_limits limits;
    struct ceiling c;
    unsigned port;

    if (parse_port(argc, argv, &port) != 0) {
        fprintf(stderr, "usage: bench_ceiling [PORT]\n");
        return 2;
    }
    memset(&c, 0, sizeof(c));
    rf_log_setup(RF_LOG_WARN, RF_LOG_LOGFMT);
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up is not fatal */
    if (uv_loop_init(&c.loop) != 0) {
        return 1;
    }
    rf_http_limits_default(&limits);
    c.http = rf_http_server_start(&c.loop, "127.0.0.1", port, &limits, &app);
    if (c.http == NULL) {
        (void)uv_loop_close(&c.loop);
        return 1;
    }
    uv_signal_init(&c.loop, &c.sigint);
    uv_signal_init(&c.loop, &c.sigterm);
    c.sigint.data = c.sigterm.data = &c;
    uv_signal_start(&c.sigint, on_signal, SIGINT);
    uv_signal_start(&c.sigterm, on_signal, SIGTERM);
    printf("port %u\n", rf_http_server_port(c.http));
    fflush(stdout);

    (void)uv_run(&c.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&c.loop) != 0) {
        fprintf(stderr, "bench_ceiling: loop closed with live handles\n");
        return 1;
    }
    return 0;
}

/* `referee events list`: prints a tenant's stored events as JSON lines,
 * reading the store read-only so it works beside a running daemon. */
#include "referee/cli.h"
#include "referee/error.h"
#include "referee/events.h"
#include "referee/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

/* Whether s[0..n) is well-formed UTF-8 without NUL bytes. */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                                 : (c >> 3) == 30 ? 4 : 0;

        if (len == 0 || c == 0 || i + len > n) {
            return 0;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return 0;
            }
        }
        i += len;
    }
    return 1;
}

static void add_body(cJSON *o, const struct rf_event *ev)
{
    char *b64, *text;

    if (valid_utf8((const unsigned char *)ev->body, ev->body_len)) {
        text = malloc(ev->body_len + 1);
        if (text) {
            memcpy(text, ev->body, ev->body_len);
            text[ev->body_len] = '\0';
            cJSON_AddStringToObject(o, "body", text);
            free(text);
        }
        return;
    }
    b64 = malloc(ev->body_len / 3 * 4 + 8);
    if (b64) {
        EVP_EncodeBlock((unsigned char *)b64,
                        (const unsigned char *)ev->body, (int)ev->body_len);
        cJSON_AddStringToObject(o, "body_base64", b64);
        free(b64);
    }
}

static void add_received(cJSON *o, int64_t ms)
{
    time_t secs = (time_t)(ms / 1000);
    char buf[64];
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    cJSON_AddStringToObject(o, "received", buf);
}

static int print_event(const struct rf_event *ev, void *arg)
{
    cJSON *o = cJSON_CreateObject();
    char id[RF_EVENT_ID_LEN + 1], src[80], *line;
    cJSON *headers;

    if (o == NULL) {
        return RF_ENOMEM;
    }
    rf_event_id(ev->seq, id);
    snprintf(src, sizeof(src), "%.*s", (int)ev->source_len, ev->source);
    cJSON_AddStringToObject(o, "id", id);
    add_received(o, ev->received_ms);
    cJSON_AddStringToObject(o, "source", src);
    headers = cJSON_ParseWithLength(ev->headers, ev->headers_len);
    cJSON_AddItemToObject(o, "headers",
                          headers ? headers : cJSON_CreateObject());
    add_body(o, ev);
    line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (line == NULL) {
        return RF_ENOMEM;
    }
    puts(line);
    cJSON_free(line);
    return 0;
}

static int list(const char *data, const char *tenant, uint64_t since)
{
    struct rf_store *st = NULL;
    char err[512];
    int rc = rf_store_open(data, RF_STORE_RDONLY, 0, &st, err, sizeof(err));

    if (rc != 0) {
        fprintf(stderr, "referee events: %s: %s\n", data, err);
        return 1;
    }
    rc = rf_events_each(st, tenant, since, print_event, NULL);
    rf_store_close(st);
    if (rc != 0) {
        fprintf(stderr, "referee events: %s\n", rf_strerror(rc));
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int rf_cli_events(int argc, char **argv)
{
    const char *data = NULL, *tenant = NULL, *since = NULL, *v;
    uint64_t since_seq = 0;
    int bad = 0;

    if (argc < 1 || strcmp(argv[0], "list") != 0) {
        return rf_cli_usage_error("events", "expected 'list'");
    }
    for (int i = 1; i < argc; i++) {
        if ((v = rf_cli_option(argc, argv, &i, "data", &bad))) {
            data = v;
        } else if ((v = rf_cli_option(argc, argv, &i, "tenant", &bad))) {
            tenant = v;
        } else if ((v = rf_cli_option(argc, argv, &i, "since", &bad))) {
            since = v;
        } else {
            return rf_cli_usage_error("events", "%s '%s'",
                                      bad ? "missing value for"
                                          : "unknown option",
                                      argv[i]);
        }
    }
    if (data == NULL || tenant == NULL) {
        return rf_cli_usage_error("events", "--data and --tenant are needed");
    }
    if (since && rf_event_id_parse(since, &since_seq) != 0) {
        return rf_cli_usage_error("events", "--since takes an event id");
    }
    return list(data, tenant, since_seq);
}

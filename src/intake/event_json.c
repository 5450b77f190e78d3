/* Events as JSON objects, for `events list` and for the hooks that receive
 * them. */
#include "referee/error.h"
#include "referee/events.h"
#include "referee/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

static int add_body(cJSON *o, const struct rf_event *ev)
{
    char *buf;
    int ok;

    if (rf_utf8_valid(ev->body, ev->body_len)) {
        buf = malloc(ev->body_len + 1);
        if (buf == NULL) {
            return -1;
        }
        memcpy(buf, ev->body, ev->body_len);
        buf[ev->body_len] = '\0';
        ok = cJSON_AddStringToObject(o, "body", buf) != NULL;
    } else {
        buf = malloc(ev->body_len / 3 * 4 + 8);
        if (buf == NULL) {
            return -1;
        }
        EVP_EncodeBlock((unsigned char *)buf,
                        (const unsigned char *)ev->body, (int)ev->body_len);
        ok = cJSON_AddStringToObject(o, "body_base64", buf) != NULL;
    }
    free(buf);
    return ok ? 0 : -1;
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

cJSON *rf_event_json(const struct rf_event *ev)
{
    cJSON *o = cJSON_CreateObject(), *headers;
    char id[RF_EVENT_ID_LEN + 1], src[80];

    if (o == NULL) {
        return NULL;
    }
    rf_event_id(ev->seq, id);
    snprintf(src, sizeof(src), "%.*s", (int)ev->source_len, ev->source);
    cJSON_AddStringToObject(o, "id", id);
    add_received(o, ev->received_ms);
    cJSON_AddStringToObject(o, "source", src);
    headers = cJSON_ParseWithLength(ev->headers, ev->headers_len);
    cJSON_AddItemToObject(o, "headers",
                          headers ? headers : cJSON_CreateObject());
    if (add_body(o, ev) != 0) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

struct one {
    uint64_t seq;
    cJSON *json;
};

static int take_one(const struct rf_event *ev, MDB_txn *txn, void *arg)
{
    (void)txn;
    struct one *o = arg;

    if (ev->seq == o->seq) {
        o->json = rf_event_json(ev);
    }
    return 1; /* the first event after seq-1 is the one, or it is missing */
}

cJSON *rf_event_load_json(struct rf_store *st, const char *tenant,
                          uint64_t seq)
{
    struct one o = {seq, NULL};

    if (seq == 0) {
        return NULL;
    }
    (void)rf_events_each(st, tenant, seq - 1, take_one, &o);
    return o.json;
}

/* `referee events list`: prints a tenant's stored events as JSON lines,
 * reading the store read-only so it works beside a running daemon. */
#include "referee/cli.h"
#include "referee/error.h"
#include "referee/events.h"
#include "referee/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

struct list_ctx {
    struct rf_store *st;
    const char *tenant;
};

/* Adds the outcome of the event's hook, when it ran, from the snapshot the
 * events come from. */
static int add_outcome(cJSON *o, const struct list_ctx *c, MDB_txn *txn,
                       uint64_t seq)
{
    unsigned char key[64 + 1 + 8];
    size_t tlen = strlen(c->tenant);
    MDB_val k = {tlen + 9, key}, v;
    int mrc;

    memcpy(key, c->tenant, tlen);
    key[tlen] = 0;
    rf_store_put_be64(key + tlen + 1, seq);
    mrc = mdb_get(txn, rf_store_dbi(c->st, RF_DB_OUTCOMES), &k, &v);
    if (mrc == 0) {
        cJSON *out = cJSON_ParseWithLength(v.mv_data, v.mv_size);

        if (out) {
            cJSON_AddItemToObject(o, "outcome", out);
        }
    }
    return rf_store_scan_rc(mrc);
}

static int print_event(const struct rf_event *ev, MDB_txn *txn, void *arg)
{
    cJSON *o = rf_event_json(ev);
    char *line;
    int rc;

    if (o == NULL) {
        return RF_ENOMEM;
    }
    rc = add_outcome(o, arg, txn, ev->seq);
    if (rc != 0) {
        cJSON_Delete(o);
        return rc;
    }
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
    struct list_ctx ctx = {NULL, tenant};
    int rc;

    if (rf_cli_open_store("events", data, tenant, 0, &st) != 0) {
        return 1;
    }
    ctx.st = st;
    rc = rf_events_each(st, tenant, since, print_event, &ctx);
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

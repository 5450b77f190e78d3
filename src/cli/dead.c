/* `referee dead list|replay`: dead letters of a tenant's outbox. */
#include "referee/cli.h"
#include "referee/error.h"
#include "referee/outbox.h"
#include "referee/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static int print_job(const struct rf_job *j, void *arg)
{
    cJSON *o = cJSON_CreateObject();
    char *line;

    if (o == NULL) {
        return RF_ENOMEM;
    }
    cJSON_AddNumberToObject(o, "id", (double)j->id);
    cJSON_AddStringToObject(o, "kind", j->kind);
    cJSON_AddStringToObject(o, "key", j->key);
    cJSON_AddNumberToObject(o, "attempts", j->attempts);
    cJSON_AddNumberToObject(o, "created_ms", (double)j->created_ms);
    cJSON_AddNumberToObject(o, "failed_ms", (double)j->finished_ms);
    cJSON_AddStringToObject(o, "last_error",
                            j->last_error ? j->last_error : "");
    cJSON_AddRawToObject(o, "payload", j->payload);
    line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (line == NULL) {
        return RF_ENOMEM;
    }
    puts(line);
    cJSON_free(line);
    return 0;
}

int rf_cli_dead(int argc, char **argv)
{
    const char *data = NULL, *tenant = NULL, *v, *job = NULL;
    struct rf_store *st = NULL;
    uint64_t id = 0;
    int bad = 0, replay, rc;
    long n;

    if (argc < 1 || (strcmp(argv[0], "list") && strcmp(argv[0], "replay"))) {
        return rf_cli_usage_error("dead", "expected 'list' or 'replay'");
    }
    replay = strcmp(argv[0], "replay") == 0;
    for (int i = 1; i < argc; i++) {
        if ((v = rf_cli_option(argc, argv, &i, "data", &bad))) {
            data = v;
        } else if ((v = rf_cli_option(argc, argv, &i, "tenant", &bad))) {
            tenant = v;
        } else if (replay && !bad && argv[i][0] != '-' && job == NULL) {
            job = argv[i];
        } else {
            return rf_cli_usage_error("dead", "%s '%s'",
                                      bad ? "missing value for"
                                          : "unexpected argument",
                                      argv[i]);
        }
    }
    if (data == NULL || tenant == NULL) {
        return rf_cli_usage_error("dead", "--data and --tenant are needed");
    }
    if (job && (id = strtoull(job, NULL, 10)) == 0) {
        return rf_cli_usage_error("dead", "JOB is a job id (a number)");
    }
    if (rf_cli_open_store("dead", data, tenant, replay, &st) != 0) {
        return 1;
    }
    if (replay) {
        n = rf_outbox_replay(st, tenant, id);
        rc = n < 0 ? (int)n : (id && n == 0 ? RF_ENOTFOUND : 0);
        if (rc == 0) {
            printf("replayed %ld dead letter%s%s\n", n, n == 1 ? "" : "s",
                   n ? "; a running daemon runs them within a second" : "");
        }
    } else {
        rc = rf_outbox_each(st, tenant, RF_JOB_DEAD, print_job, NULL);
    }
    rf_store_close(st);
    if (rc != 0) {
        fprintf(stderr, "referee dead: %s\n",
                rc == RF_ENOTFOUND ? "no such dead letter for this tenant"
                                   : rf_strerror(rc));
        return 1;
    }
    return 0;
}

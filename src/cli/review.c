/* `referee review list|approve|reject`: referrals held for review. approve
 * and reject write to the store in a transaction of their own, which LMDB
 * serialises with the daemon's writer (as `referee dead replay` does); a
 * running daemon's outbox notices the new jobs within a second. */
#include "referee/cli.h"
#include "referee/error.h"
#include "referee/referrals.h"
#include "referee/reward.h"
#include "referee/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>


struct args {
    const char *data, *tenant, *reason, *referral;
    int json;
};

/* What a write does: approve or reject one referral. */
struct decision {
    const char *tenant, *reason;
    uint64_t id;
    int approve;
    int jobs;
    struct rf_store *st;
};

static int parse(int argc, char **argv, int write, struct args *a)
{
    const char *v;
    int bad = 0;

    for (int i = 1; i < argc; i++) {
        if ((v = rf_cli_option(argc, argv, &i, "data", &bad))) {
            a->data = v;
        } else if ((v = rf_cli_option(argc, argv, &i, "tenant", &bad))) {
            a->tenant = v;
        } else if ((v = rf_cli_option(argc, argv, &i, "reason", &bad))) {
            a->reason = v;
        } else if (!bad && strcmp(argv[i], "--json") == 0) {
            a->json = 1;
        } else if (!bad && write && argv[i][0] != '-' && a->referral == NULL) {
            a->referral = argv[i];
        } else {
            return rf_cli_usage_error(
                "review", "%s '%s'",
                bad ? "missing value for" : "unexpected argument", argv[i]);
        }
    }
    if (a->data == NULL || a->tenant == NULL) {
        return rf_cli_usage_error("review", "--data and --tenant are needed");
    }
    return 0;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : "";
}

static int print_held(const cJSON *r, void *arg)
{
    const struct args *a = arg;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "reward");
    char *line;

    if (strcmp(str(r, "status"), "review") != 0) {
        return 0;
    }
    if (!a->json) {
        printf(
            "%-6.0f %-32s %-20s %-9d %s\n",
            cJSON_GetObjectItem(r, "id")->valuedouble,
            str(cJSON_GetObjectItemCaseSensitive(r, "person"), "email"),
            str(r, "referrer"),
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "actions")),
            str(r, "review_reason"));
        return 0;
    }
    line = cJSON_PrintUnformatted(r);
    if (line == NULL) {
        return RF_ENOMEM;
    }
    puts(line);
    cJSON_free(line);
    return 0;
}

static int list(const struct args *a)
{
    struct rf_store *st = NULL;
    MDB_txn *txn = NULL;
    int rc;

    if (rf_cli_open_store("review", a->data, a->tenant, 0, &st) != 0) {
        return 1;
    }
    rc = rf_store_read_begin(st, &txn);
    if (rc == 0) {
        if (!a->json) {
            printf("%-6s %-32s %-20s %-9s %s\n", "ID", "EMAIL", "REFERRER",
                   "ACTIONS", "REASON");
        }
        rc = rf_referrals_each(txn, st, a->tenant, print_held, (void *)a);
        rf_store_read_end(st, txn);
    }
    rf_store_close(st);
    if (rc != 0) {
        fprintf(stderr, "referee review: %s\n", rf_strerror(rc));
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_txn(MDB_txn *txn, void *ctx)
{
    struct decision *d = ctx;

    return d->approve ? rf_reward_approve(txn, d->st, d->tenant, d->id,
                                          now_ms(), &d->jobs)
                      : rf_reward_reject(txn, d->st, d->tenant, d->id,
                                         d->reason, now_ms());
}

static int decide(const struct args *a, int approve)
{
    struct decision d = {a->tenant, a->reason, 0, approve, 0, NULL};
    int rc;

    d.id = a->referral ? strtoull(a->referral, NULL, 10) : 0;
    if (d.id == 0) {
        return rf_cli_usage_error("review", "REFERRAL is a referral id (a "
                                            "number)");
    }
    if (!approve && a->reason == NULL) {
        return rf_cli_usage_error("review", "reject needs --reason TEXT");
    }
    if (!approve && rf_review_reason_problem(a->reason) != NULL) {
        return rf_cli_usage_error("review", "--reason: %s",
                                  rf_review_reason_problem(a->reason));
    }
    if (rf_cli_open_store("review", a->data, a->tenant, 1, &d.st) != 0) {
        return 1;
    }
    rc = rf_store_write(d.st, write_txn, &d);
    rf_store_close(d.st);
    if (rc != 0) {
        fprintf(stderr, "referee review: referral %s: %s\n", a->referral,
                rc == RF_ENOTFOUND ? "no such referral"
                : rc == RF_EINVAL  ? "not waiting for review"
                                   : rf_strerror(rc));
        return 1;
    }
    if (approve) {
        printf("approved referral %s: %d reward jobs queued; a running "
               "daemon runs them once due\n",
               a->referral, d.jobs);
    } else {
        printf("rejected referral %s\n", a->referral);
    }
    return 0;
}

int rf_cli_review(int argc, char **argv)
{
    struct args a = {0};
    int approve, rc;

    if (argc < 1 || (strcmp(argv[0], "list") && strcmp(argv[0], "approve") &&
                     strcmp(argv[0], "reject"))) {
        return rf_cli_usage_error("review",
                                  "expected 'list', 'approve' or 'reject'");
    }
    rc = parse(argc, argv, strcmp(argv[0], "list") != 0, &a);
    if (rc != 0) {
        return rc;
    }
    if (strcmp(argv[0], "list") == 0) {
        return list(&a);
    }
    approve = strcmp(argv[0], "approve") == 0;
    return decide(&a, approve);
}

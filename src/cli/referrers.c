/* `referee referrers list` and `referee zoho status`: what the Zoho sync
 * did, read from the store read-only (works while the daemon runs). */
#include "referee/audit.h"
#include "referee/cli.h"
#include "referee/error.h"
#include "referee/referrals.h"
#include "referee/referrers.h"
#include "referee/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define DAY_MINUTES (24 * 60)

struct args {
    const char *data, *tenant;
    int json;
};

static int parse(const char *cmd, const char *sub, int argc, char **argv,
                 struct args *a)
{
    const char *v;
    int bad = 0;

    if (argc < 1 || strcmp(argv[0], sub) != 0) {
        return rf_cli_usage_error(cmd, "expected '%s'", sub);
    }
    for (int i = 1; i < argc; i++) {
        if ((v = rf_cli_option(argc, argv, &i, "data", &bad))) {
            a->data = v;
        } else if ((v = rf_cli_option(argc, argv, &i, "tenant", &bad))) {
            a->tenant = v;
        } else if (!bad && strcmp(argv[i], "--json") == 0) {
            a->json = 1;
        } else {
            return rf_cli_usage_error(cmd, "%s '%s'",
                                      bad ? "missing value for"
                                          : "unknown option",
                                      argv[i]);
        }
    }
    if (a->data == NULL || a->tenant == NULL) {
        return rf_cli_usage_error(cmd, "--data and --tenant are needed");
    }
    return 0;
}

/* --- referrers list ----------------------------------------------------- */

/* A field for the text tables: control characters (a line break inside a
 * stored email, say) shown as '?', so that one row stays one line. Uses
 * one of four rotating buffers, enough for a row. */
static const char *cell(const char *s)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    size_t i = 0;

    for (; s && *s && i < sizeof(bufs[0]) - 1; s++) {
        b[i++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    }
    b[i] = '\0';
    return b;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Prints one JSON line. */
static int print_json(const cJSON *v)
{
    char *line = cJSON_PrintUnformatted(v);

    if (line == NULL) {
        return RF_ENOMEM;
    }
    puts(line);
    cJSON_free(line);
    return 0;
}

/* The stores' ways of walking a tenant's records, in one shape. */
typedef int (*each_fn)(MDB_txn *txn, const struct rf_store *st,
                       const char *tenant,
                       int (*fn)(const cJSON *v, void *arg), void *arg);

static int audit_each(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant, int (*fn)(const cJSON *, void *),
                      void *arg)
{
    return rf_audit_each(txn, st, tenant, 0, fn, arg);
}

/* `referee CMD list`: the tenant's records from `each`, printed by `row`
 * (as JSON lines with --json, or when there is no table form), under
 * `header` in the table form. */
static int run_list(const char *cmd, int argc, char **argv, each_fn each,
                    int (*row)(const cJSON *v, void *arg), const char *header)
{
    struct args a = {0};
    struct rf_store *st = NULL;
    MDB_txn *txn = NULL;
    int rc = parse(cmd, "list", argc, argv, &a);

    if (rc == 0) {
        rc = rf_cli_open_store(cmd, a.data, a.tenant, 0, &st);
    }
    if (rc != 0) {
        return rc;
    }
    rc = rf_store_read_begin(st, &txn);
    if (rc == 0) {
        if (!a.json && header != NULL) {
            puts(header);
        }
        rc = each(txn, st, a.tenant, row, &a);
        rf_store_read_end(st, txn);
    }
    rf_store_close(st);
    if (rc != 0) {
        fprintf(stderr, "referee %s: %s\n", cmd, rf_strerror(rc));
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int print_referrer(const cJSON *r, void *arg)
{
    const struct args *a = arg;

    if (a->json) {
        return print_json(r);
    }
    printf("%-20s %-14s %-32s %s\n", cell(str(r, "contact_id")),
           cell(str(r, "code")), cell(str(r, "email")), cell(str(r, "name")));
    return 0;
}

int rf_cli_referrers(int argc, char **argv)
{
    return run_list("referrers", argc, argv, rf_referrers_each,
                    print_referrer,
                    "CONTACT              CODE           EMAIL"
                    "                            NAME");
}

static int print_referral(const cJSON *r, void *arg)
{
    const struct args *a = arg;
    const cJSON *crm = cJSON_GetObjectItemCaseSensitive(r, "crm");
    const char *status = str(r, "status");

    if (a->json) {
        return print_json(r);
    }
    printf("%-6.0f %-10s %-18s %-32s %s\n",
           cJSON_GetObjectItem(r, "id")->valuedouble, cell(status),
           cell(strcmp(status, "refused") == 0 ? str(r, "reason")
                                               : str(crm, "id")),
           cell(str(cJSON_GetObjectItemCaseSensitive(r, "person"), "email")),
           cell(str(r, "referrer")));
    return 0;
}

int rf_cli_referrals(int argc, char **argv)
{
    return run_list("referrals", argc, argv, rf_referrals_each,
                    print_referral,
                    "ID     STATUS     REASON/CRM ID      EMAIL"
                    "                            REFERRER");
}

static int print_entry(const cJSON *e, void *arg)
{
    (void)arg;
    return print_json(e);
}

int rf_cli_audit(int argc, char **argv)
{
    return run_list("audit", argc, argv, audit_each, print_entry, NULL);
}

/* --- zoho status -------------------------------------------------------- */

/* Adds what a connector state entry says, without its secrets. */
static void add_state(cJSON *out, const char *kind, const char *name,
                      const cJSON *v, int64_t now_min)
{
    if (strcmp(kind, "token") == 0) {
        cJSON *t = cJSON_AddObjectToObject(out, "token");
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(v, "expires_at");
        const cJSON *refreshes = cJSON_GetObjectItemCaseSensitive(
            v, "refreshes");

        char client[256];
        size_t n = strlen(name);

        /* The record is named "<client id>.<12 hex digits of the refresh
         * token's hash>". */
        snprintf(client, sizeof(client), "%.*s",
                 (int)(n > 13 && name[n - 13] == '.' ? n - 13 : n), name);
        cJSON_AddStringToObject(t, "client_id", client);
        cJSON_AddStringToObject(t, "dc", str(v, "dc"));
        cJSON_AddStringToObject(t, "api_domain", str(v, "api_domain"));
        if (cJSON_IsNumber(exp)) {
            time_t secs = (time_t)(exp->valuedouble / 1000);
            struct tm tm;
            char when[32];

            gmtime_r(&secs, &tm);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            cJSON_AddStringToObject(t, "expires_at", when);
        }
        cJSON_AddNumberToObject(t, "refreshes_recorded",
                                cJSON_GetArraySize(refreshes));
    } else if (strcmp(kind, "credits") == 0) {
        const cJSON *mins = cJSON_GetObjectItemCaseSensitive(v, "minutes");
        double used = 0;

        for (const cJSON *p = mins ? mins->child : NULL; p; p = p->next) {
            const cJSON *m = cJSON_GetArrayItem(p, 0);
            const cJSON *c = cJSON_GetArrayItem(p, 1);

            if (cJSON_IsNumber(m) && cJSON_IsNumber(c) &&
                m->valuedouble > (double)(now_min - DAY_MINUTES)) {
                used += c->valuedouble;
            }
        }
        cJSON_AddNumberToObject(out, "credits_used_24h", used);
    } else if (strcmp(kind, "cursor") == 0) {
        cJSON *cs = cJSON_GetObjectItemCaseSensitive(out, "cursors");
        cJSON *c;

        if (cs == NULL) {
            cs = cJSON_AddObjectToObject(out, "cursors");
        }
        c = cJSON_AddObjectToObject(cs, name);
        cJSON_AddStringToObject(c, "modified_time", str(v, "time"));
        cJSON_AddNumberToObject(
            c, "ids_at_that_second",
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(v, "ids")));
    } else if (strcmp(kind, "channel") == 0) {
        cJSON *chs = cJSON_GetObjectItemCaseSensitive(out, "channels");
        cJSON *c;
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(v, "expiry");

        if (chs == NULL) {
            chs = cJSON_AddArrayToObject(out, "channels");
        }
        c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "channel_id", name);
        if (exp != NULL) {
            cJSON_AddItemToObject(c, "expiry", cJSON_Duplicate(exp, 0));
        }
        cJSON_AddItemToArray(chs, c);
    } else if (strcmp(kind, "retry") == 0) {
        cJSON *n = cJSON_GetObjectItemCaseSensitive(out, "records_to_retry");

        if (n == NULL) {
            cJSON_AddNumberToObject(out, "records_to_retry", 1);
        } else {
            cJSON_SetNumberValue(n, n->valuedouble + 1);
        }
    }
}

static int status(struct rf_store *st, const char *tenant, cJSON *out)
{
    size_t tlen = strlen(tenant);
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k = {tlen + 1, (void *)tenant}, v;
    int64_t now_min = (int64_t)time(NULL) / 60;
    int rc = rf_store_read_begin(st, &txn), mrc;

    if (rc != 0) {
        return rc;
    }
    mrc = mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_ZOHO), &cur);
    for (mrc = mrc ? mrc : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *key = k.mv_data, *kind, *nul;
        char name[256];
        size_t nlen;
        cJSON *val;

        if (k.mv_size <= tlen + 1 || memcmp(key, tenant, tlen) != 0 ||
            key[tlen] != 0) {
            break;
        }
        kind = key + tlen + 1;
        nul = memchr(kind, 0, k.mv_size - tlen - 1);
        if (nul == NULL) {
            continue;
        }
        nlen = k.mv_size - (size_t)(nul + 1 - key);
        snprintf(name, sizeof(name), "%.*s", (int)nlen, nul + 1);
        val = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        add_state(out, kind, name, val, now_min);
        cJSON_Delete(val);
    }
    if (cur) {
        mdb_cursor_close(cur);
    }
    rf_store_read_end(st, txn);
    return mrc == MDB_NOTFOUND || mrc == 0 ? 0 : rf_store_rc(mrc);
}

int rf_cli_zoho(int argc, char **argv)
{
    struct args a = {0};
    struct rf_store *st = NULL;
    cJSON *out;
    char *text;
    int rc = parse("zoho", "status", argc, argv, &a);

    if (rc == 0) {
        rc = rf_cli_open_store("zoho", a.data, a.tenant, 0, &st);
    }
    if (rc != 0) {
        return rc;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "tenant", a.tenant);
    rc = out ? status(st, a.tenant, out) : RF_ENOMEM;
    rf_store_close(st);
    if (rc == 0 && cJSON_GetArraySize(out) == 1) {
        fprintf(stderr,
                "referee zoho: no Zoho state for tenant '%s' in %s (no "
                "connection has run for it yet)\n",
                a.tenant, a.data);
        cJSON_Delete(out);
        return 1;
    }
    text = rc == 0 ? cJSON_Print(out) : NULL;
    cJSON_Delete(out);
    if (text == NULL) {
        fprintf(stderr, "referee zoho: %s\n", rf_strerror(rc ? rc : RF_ENOMEM));
        return 1;
    }
    puts(text);
    cJSON_free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}

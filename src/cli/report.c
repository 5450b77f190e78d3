/* `referee report`: a tenant's referral program in figures, per day and in
 * total, as a table, JSON or CSV; read-only, so it runs beside the
 * daemon. */
#include "referee/report.h"
#include "referee/cli.h"
#include "referee/error.h"
#include "referee/store.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

enum format { TEXT = 0, JSON, CSV };

static int parse(int argc, char **argv, const char **data, const char **tenant,
                 enum format *fmt)
{
    const char *v;
    int bad = 0;

    for (int i = 0; i < argc; i++) {
        if ((v = rf_cli_option(argc, argv, &i, "data", &bad))) {
            *data = v;
        } else if ((v = rf_cli_option(argc, argv, &i, "tenant", &bad))) {
            *tenant = v;
        } else if (!bad && strcmp(argv[i], "--json") == 0 && *fmt != CSV) {
            *fmt = JSON;
        } else if (!bad && strcmp(argv[i], "--csv") == 0 && *fmt != JSON) {
            *fmt = CSV;
        } else {
            return rf_cli_usage_error("report", "%s '%s'",
                                      bad ? "missing value for"
                                          : "unknown or conflicting option",
                                      argv[i]);
        }
    }
    if (*data == NULL || *tenant == NULL) {
        return rf_cli_usage_error("report", "--data and --tenant are needed");
    }
    return 0;
}

static int print(const cJSON *report, enum format fmt)
{
    char *text;

    if (fmt == TEXT) {
        return rf_report_print_text(stdout, report);
    }
    if (fmt == CSV) {
        return rf_report_print_csv(stdout, report);
    }
    text = cJSON_Print(report);
    if (text == NULL) {
        return RF_ENOMEM;
    }
    puts(text);
    cJSON_free(text);
    return 0;
}

int rf_cli_report(int argc, char **argv)
{
    const char *data = NULL, *tenant = NULL;
    enum format fmt = TEXT;
    struct rf_store *st = NULL;
    cJSON *report = NULL;
    int rc = parse(argc, argv, &data, &tenant, &fmt);

    if (rc != 0) {
        return rc;
    }
    if (rf_cli_open_store("report", data, tenant, 0, &st) != 0) {
        return 1;
    }
    rc = rf_report_compute(st, tenant, (int64_t)time(NULL), &report);
    rf_store_close(st);
    if (rc == 0) {
        rc = print(report, fmt);
    }
    cJSON_Delete(report);
    if (rc != 0) {
        fprintf(stderr, "referee report: %s\n", rf_strerror(rc));
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

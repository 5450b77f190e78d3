/* Small helpers shared by the command-line commands. */
#include "referee/cli.h"
#include "referee/error.h"
#include "referee/store.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int rf_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "referee %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'referee help %s')\n", cmd);
    return 2;
}

const char *rf_cli_option(int argc, char **argv, int *i, const char *name,
                          int *bad)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0) {
        return NULL;
    }
    if (a[2 + n] == '=') {
        return a + 3 + n;
    }
    if (a[2 + n] != '\0') {
        return NULL;
    }
    if (*i + 1 >= argc) {
        *bad = 1;
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

struct known {
    char list[512];
    size_t n;
};

static int add_known(const char *id, void *arg)
{
    struct known *k = arg;
    size_t used = strlen(k->list);

    if (used + strlen(id) + 8 < sizeof(k->list)) {
        snprintf(k->list + used, sizeof(k->list) - used, "%s%s",
                 k->n ? ", " : "", id);
    } else if (!strstr(k->list, "...")) {
        snprintf(k->list + used, sizeof(k->list) - used, ", ...");
    }
    k->n++;
    return 0;
}

int rf_cli_open_store(const char *cmd, const char *data, const char *tenant,
                      int writable, struct rf_store **st)
{
    struct known k = {"", 0};
    char err[512];
    int rc = rf_store_open(data, writable ? RF_STORE_EXISTING
                                          : RF_STORE_RDONLY,
                           0, st, err, sizeof(err));

    if (rc != 0) {
        fprintf(stderr, "referee %s: %s: %s\n", cmd, data, err);
        return 1;
    }
    if (tenant == NULL) {
        return 0;
    }
    rc = rf_store_tenant_known(*st, tenant);
    if (rc == 1) {
        return 0;
    }
    if (rc == 0) {
        (void)rf_store_each_tenant(*st, add_known, &k);
        if (k.n) {
            fprintf(stderr, "referee %s: no tenant '%s' in %s (tenants "
                            "there: %s)\n",
                    cmd, tenant, data, k.list);
        } else {
            fprintf(stderr, "referee %s: no tenant '%s' in %s (no daemon "
                            "has loaded a tenant with this data directory "
                            "yet)\n",
                    cmd, tenant, data);
        }
    } else {
        fprintf(stderr, "referee %s: %s: %s\n", cmd, data, rf_strerror(rc));
    }
    rf_store_close(*st);
    *st = NULL;
    return 1;
}

/* Small helpers shared by the command-line commands. */
#include "referee/cli.h"

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

/* `referee check` and `referee call`: load a tenant's script offline, and
 * run one of its hooks by hand. */
#include "referee/cli.h"
#include "referee/engine.h"
#include "referee/error.h"
#include "referee/json_check.h"
#include "referee/script_api.h"
#include "referee/store.h"
#include "referee/tenant.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PLUGIN_DIRS_MAX 8
#define INPUT_MAX (8u << 20)

struct script_args {
    const char *dir;
    const char *hook;
    const char *input;
    const char *data;
    const char *ca_file;
    const char *plugins[PLUGIN_DIRS_MAX + 1];
    int nplugins;
};

/* Parses [--plugins DIR]... [--data DIR] [--ca-file F] and `npos`
 * positional arguments. */
static int parse(const char *cmd, int argc, char **argv, int npos,
                 struct script_args *a)
{
    const char **pos[] = {&a->dir, &a->hook, &a->input};
    const char *v;
    int bad = 0, n = 0;

    for (int i = 0; i < argc; i++) {
        if ((v = rf_cli_option(argc, argv, &i, "plugins", &bad))) {
            if (a->nplugins == PLUGIN_DIRS_MAX) {
                return rf_cli_usage_error(cmd, "at most %d --plugins",
                                          PLUGIN_DIRS_MAX);
            }
            a->plugins[a->nplugins++] = v;
        } else if (npos == 3 &&
                   (v = rf_cli_option(argc, argv, &i, "data", &bad))) {
            a->data = v;
        } else if (npos == 3 &&
                   (v = rf_cli_option(argc, argv, &i, "ca-file", &bad))) {
            a->ca_file = v;
        } else if (bad || (argv[i][0] == '-' && argv[i][1] != '\0')) {
            /* A lone "-" is an argument: the input on stdin. */
            return rf_cli_usage_error(cmd, "%s '%s'",
                                      bad ? "missing value for"
                                          : "unknown option",
                                      argv[i]);
        } else if (n < npos) {
            *pos[n++] = argv[i];
        } else {
            return rf_cli_usage_error(cmd, "unexpected argument '%s'",
                                      argv[i]);
        }
    }
    if (n < npos) {
        return rf_cli_usage_error(cmd, "missing arguments");
    }
    if (a->nplugins == 0) {
        a->plugins[a->nplugins++] = "scripts/plugins";
    }
    a->plugins[a->nplugins] = NULL;
    return 0;
}

/* The tenant id is the folder's name. Returns 0, or -1 after printing to
 * `f` why the folder's name is not a tenant id the daemon would load. */
static int tenant_id(FILE *f, const char *dir, char *out, size_t n)
{
    char copy[PATH_MAX];
    struct stat st;

    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) {
        fprintf(f, "%s: give the tenant's folder, not a file in it\n", dir);
        return -1;
    }
    snprintf(copy, sizeof(copy), "%s", dir);
    while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/') {
        copy[strlen(copy) - 1] = '\0';
    }
    snprintf(out, n, "%s", basename(copy));
    /* "." and ".." name a folder too; a symbolic link's own name is the
     * id (as for the daemon), so only these are resolved. */
    if ((strcmp(out, ".") == 0 || strcmp(out, "..") == 0) &&
        realpath(dir, copy) != NULL) {
        snprintf(out, n, "%s", basename(copy));
    }
    if (!rf_tenant_id_valid(out, strlen(out))) {
        fprintf(f, "%s: the folder name '%s' is not a valid tenant id: "
                   "use words of a-z and 0-9 joined by single '-', at most "
                   "%d bytes; "
                   "the daemon ignores such a folder\n",
                dir, out, RF_TENANT_ID_MAX);
        return -1;
    }
    return 0;
}

/* Prints the hooks the tenant defines: the CRM hooks, then each source's
 * hook with its source. */
static void print_hooks(const struct rf_tenant *t)
{
    int any = 0;

    printf("hooks:");
    for (int h = 0; h < RF_HOOK_COUNT; h++) {
        if (t->hooks & (1u << h)) {
            printf("%s %s", any++ ? "," : "", rf_hook_name((enum rf_hook)h));
        }
    }
    for (size_t i = 0; i < t->nsources; i++) {
        if (t->sources[i].hook) {
            printf("%s %s (source %s)", any++ ? "," : "",
                   t->sources[i].hook, t->sources[i].name);
        }
    }
    printf("%s\n", any ? "" : " none");
}

int rf_cli_check(int argc, char **argv)
{
    struct script_args a = {0};
    struct rf_tenant *t = NULL;
    struct rf_tenant_env env = {0};
    char id[256], err[4096];
    int rc = parse("check", argc, argv, 1, &a);

    if (rc != 0) {
        return rc;
    }
    if (tenant_id(stdout, a.dir, id, sizeof(id)) != 0) {
        return 1;
    }
    env.plugin_path = a.plugins;
    rc = rf_tenant_load(a.dir, id, &env, &t, NULL, err, sizeof(err));
    if (rc != 0) {
        printf("%s\n", err);
        return 1;
    }
    printf("ok: tenant %s, version %s, %zu sources, ", t->id, t->version,
           t->nsources);
    print_hooks(t);
    rf_tenant_free(t);
    return 0;
}

static char *read_input(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf;

    if (f == NULL) {
        return NULL;
    }
    buf = malloc(INPUT_MAX + 1);
    *len = buf ? fread(buf, 1, INPUT_MAX + 1, f) : 0;
    if (f != stdin) {
        fclose(f);
    }
    if (buf == NULL || *len > INPUT_MAX) {
        free(buf);
        return NULL;
    }
    return buf;
}

struct outcome {
    int done;
    int rc;
};

static void on_done(const struct rf_hook_result *res, void *arg)
{
    struct outcome *o = arg;

    o->done = 1;
    o->rc = res->rc;
    if (res->rc == 0) {
        printf("%s\n", res->json);
    } else if (res->rc == RF_ENOTFOUND) {
        /* refused before running: no file:line to point at */
        fprintf(stderr, "referee call: %s\n", res->error);
    } else {
        fprintf(stderr, "%s\n", res->error);
    }
}

/* Runs the hook on a loop of our own until it answers. */
static int run_call(struct script_args *a, struct rf_store *st,
                    const char *input, size_t len)
{
    struct rf_engine_opts o = {0};
    struct outcome out = {0};
    struct rf_engine *e;
    char id[256], err[4096];
    uv_loop_t loop;

    if (tenant_id(stderr, a->dir, id, sizeof(id)) != 0) {
        return 1;
    }
    uv_loop_init(&loop);
    o.loop = &loop;
    o.store = st;
    o.env.plugin_path = a->plugins;
    o.ca_file = a->ca_file;
    o.quiet_failures = 1; /* on_done prints the error */
    e = rf_engine_new(&o);
    if (e == NULL) {
        out.rc = RF_ENOMEM;
    } else if (rf_engine_load(e, a->dir, id, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        out.rc = RF_ECONFIG;
    } else if (rf_engine_call(e, id, a->hook, input, len, NULL, on_done,
                              &out) != 0) {
        out.rc = RF_ENOMEM;
    }
    while (e && out.rc == 0 && !out.done) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    rf_engine_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return out.rc == 0 ? 0 : 1;
}

int rf_cli_call(int argc, char **argv)
{
    struct script_args a = {0};
    struct rf_store *st = NULL;
    struct rf_json_problem jp;
    char err[512];
    char *input;
    size_t len = 0;
    int rc = parse("call", argc, argv, 3, &a);

    if (rc != 0) {
        return rc;
    }
    input = read_input(a.input, &len);
    if (input == NULL) {
        fprintf(stderr, "referee call: cannot read %s (missing, or over "
                        "8 MiB)\n",
                a.input);
        return 1;
    }
    /* as intake checks a body: the hook gets it through cJSON */
    if (rf_json_check_text(input, len, RF_API_JSON_DEPTH_MAX, &jp) != 0) {
        fprintf(stderr, "referee call: %s: not strict JSON (byte %zu: %s)\n",
                a.input, jp.offset, jp.reason);
        free(input);
        return 1;
    }
    if (a.data && rf_store_open(a.data, 0, 0, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "referee call: %s: %s\n", a.data, err);
        free(input);
        return 1;
    }
    rc = run_call(&a, st, input, len);
    rf_store_close(st);
    free(input);
    return rc;
}

/* referee command line: parses arguments and wires the modules. */
#include "referee/cli.h"
#include "referee/config.h"
#include "referee/daemon.h"
#include "referee/error.h"
#include "referee/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

struct command {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(int argc, char **argv);
};

static int cmd_run(int argc, char **argv);
static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const struct command commands[] = {
    {"run", "start the daemon",
     "referee run [--config FILE] [--listen HOST:PORT] [--data DIR]\n"
     "            [--tenants DIR]\n\n"
     "Starts the daemon. The config file is Lua returning a table of\n"
     "settings (see docs/operations.md); the flags override it. HOST is a\n"
     "dotted-quad IPv4 address (127.0.0.1, 0.0.0.0); port 0 picks a free\n"
     "one. SIGINT or SIGTERM stop it gracefully; SIGHUP reloads the\n"
     "tenants (one whose new files fail keeps its previous version).\n",
     cmd_run},
    {"events", "list stored webhook events",
     "referee events list --data DIR --tenant ID [--since EVENT_ID]\n\n"
     "Prints the tenant's stored events as JSON lines, oldest first: id,\n"
     "received, source, headers, body (body_base64 when not UTF-8) and the\n"
     "hook's outcome. --since lists only events after EVENT_ID (not that\n"
     "one). A tenant without events prints nothing and exits 0. Opens\n"
     "the store read-only, so it works while the daemon runs.\n",
     rf_cli_events},
    {"check", "load a tenant's script and check its settings",
     "referee check TENANT_DIR [--plugins DIR]...\n\n"
     "Loads TENANT_DIR/tenant.lua in a fresh sandbox, checks its settings\n"
     "and hooks and resolves its plugins (default --plugins\n"
     "scripts/plugins). The folder's name is the tenant id and must be one\n"
     "(a-z, 0-9, - and _); limits are checked against the default caps\n"
     "(1000 ms, 256 MiB). Prints 'ok: ...' with the hooks (source hooks\n"
     "with their source) and exits 0, or prints the problem as\n"
     "file:line: cause and exits 1. Calls nothing external.\n",
     rf_cli_check},
    {"call", "run one hook of a tenant by hand",
     "referee call TENANT_DIR HOOK INPUT.json [--data DIR]\n"
     "             [--plugins DIR]... [--ca-file FILE]\n\n"
     "Runs HOOK with the tenant's limits on the JSON in INPUT.json ('-'\n"
     "reads stdin; a JSON array is spread into several arguments) and\n"
     "prints what it returned as JSON, or the error with file:line and a\n"
     "traceback on stderr. Exit 0 or 1. Its http.request calls are real;\n"
     "store calls need --data.\n",
     rf_cli_call},
    {"dead", "list or replay dead letters of the outbox",
     "referee dead list --data DIR --tenant ID\n"
     "referee dead replay --data DIR --tenant ID [JOB]\n\n"
     "list prints the tenant's dead letters as JSON lines (id, kind, key,\n"
     "attempts, last_error, payload). replay makes one dead letter (or\n"
     "all of the tenant's) pending again with the same idempotency key;\n"
     "a running daemon picks them up within a second.\n",
     rf_cli_dead},
    {"review", "list, approve or reject rewards held for review",
     "referee review list --data DIR --tenant ID [--json]\n"
     "referee review approve --data DIR --tenant ID REFERRAL\n"
     "referee review reject --data DIR --tenant ID REFERRAL --reason TEXT\n\n"
     "list prints the referrals whose reward hook asked for review (id,\n"
     "email, referrer, how many actions, the reason), or each as stored\n"
     "with --json. approve turns the held actions into outbox jobs (the\n"
     "same idempotency keys as without review) and marks the referral\n"
     "rewarded; reject marks it review_rejected and keeps the reason.\n"
     "Both write while the daemon runs; it picks the jobs up within a\n"
     "second.\n",
     rf_cli_review},
    {"referrers", "list a tenant's enrolled referrers and their codes",
     "referee referrers list --data DIR --tenant ID [--json]\n\n"
     "Prints the tenant's referrers, one per line (contact id, code,\n"
     "email, name), or as JSON lines with --json. Opens the store\n"
     "read-only, so it works while the daemon runs.\n",
     rf_cli_referrers},
    {"referrals", "list a tenant's referrals and what became of them",
     "referee referrals list --data DIR --tenant ID [--json]\n\n"
     "Prints the tenant's referrals, oldest first: id, status (accepted,\n"
     "refused, mapped, in_crm, ...), the refusal reason or the CRM id, the\n"
     "referred person's email and the referrer's contact id; --json prints\n"
     "each referral as stored. Read-only.\n",
     rf_cli_referrals},
    {"audit", "print a tenant's audit log",
     "referee audit list --data DIR --tenant ID\n\n"
     "Prints every state change of the tenant's referral program as JSON\n"
     "lines, oldest first: seq, at, kind (enrolled, captured, refused,\n"
     "mapped, in_crm, converted, qualified, rejected, reversed, ...), the\n"
     "referral, the script version that decided and the evidence.\n"
     "Read-only.\n",
     rf_cli_audit},
    {"report", "a tenant's referral program in figures, per day and in total",
     "referee report --data DIR --tenant ID [--json|--csv]\n\n"
     "Prints, per UTC day and in total: referrers enrolled, link visits,\n"
     "referrals received, refused (by reason), in CRM, qualified, rejected,\n"
     "reversed, rewards issued (count and value per currency), dead\n"
     "letters; in total also the qualification rate (qualified / in CRM)\n"
     "and the referrals waiting for review (docs/workflow.md, \"Reading the\n"
     "report\"). A table by default; --json prints the report as JSON,\n"
     "--csv one row per day and a row whose day is 'total'. Read-only.\n",
     rf_cli_report},
    {"zoho", "show a tenant's Zoho connection state",
     "referee zoho status --data DIR --tenant ID\n\n"
     "Prints, as JSON, what the store holds about the tenant's Zoho\n"
     "connection: token expiry and api_domain (never the token), API\n"
     "credits spent in the last 24 hours, each polled module's cursor,\n"
     "Watch channels and records waiting to be retried. Read-only.\n",
     rf_cli_zoho},
    {"help", "show help for a command",
     "referee help [COMMAND [SUBCOMMAND]]\n", cmd_help},
    {"version", "print the version", "referee version\n", cmd_version},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The command a word names; "events list" (one quoted word) names events
 * as "events" "list" does. */
static const struct command *find(const char *name)
{
    size_t len = strcspn(name, " ");

    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strlen(commands[i].name) == len &&
            strncmp(commands[i].name, name, len) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

/* Whether the usage shows "referee NAME sub ..." lines (events list, dead
 * replay) rather than options or placeholders after the name. */
static int has_subcommands(const struct command *c)
{
    const char *p = c->usage + strlen("referee ") + strlen(c->name) + 1;

    return *p >= 'a' && *p <= 'z';
}

/* Whether sub is one of the command's subcommands, as its usage shows. */
static int names_subcommand(const struct command *c, const char *sub)
{
    char line[80];

    snprintf(line, sizeof(line), "referee %s %s ", c->name, sub);
    return strstr(c->usage, line) != NULL;
}

static void overview(FILE *f)
{
    fprintf(f, "referee %s: runs customer-referral programs out of the CRM\n"
               "\nUsage: referee COMMAND [OPTIONS]\n\nCommands:\n",
            REFEREE_VERSION);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "\nRun 'referee help COMMAND' for a command's options.\n");
}

static int cmd_help(int argc, char **argv)
{
    const struct command *c;

    if (argc == 0) {
        overview(stdout);
        return 0;
    }
    if (argc > 2) {
        return rf_cli_usage_error("help", "takes a command and at most one "
                                          "subcommand, got '%s'",
                                  argv[2]);
    }
    c = find(argv[0]);
    if (c == NULL) {
        fprintf(stderr, "referee help: unknown command '%s'\n", argv[0]);
        return 2;
    }
    if (argc == 2 || argv[0][strlen(c->name)] == ' ') {
        /* the subcommand must be one the usage shows */
        const char *sub = argc == 2 ? argv[1] : argv[0] + strlen(c->name) + 1;

        if (!names_subcommand(c, sub)) {
            return rf_cli_usage_error("help", "'%s' has no subcommand '%s'",
                                      c->name, sub);
        }
    }
    printf("%s", c->usage);
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    if (argc > 0) {
        return rf_cli_usage_error("version", "takes no arguments");
    }
    printf("referee %s\n", REFEREE_VERSION);
    return 0;
}

/* A listener that cannot bind is a configuration error, found before
 * anything starts: exit 2 naming where the address was set. */
static int probe_listeners(const struct rf_config *cfg)
{
    const char *addr[2] = {cfg->listen, cfg->admin_listen};
    const char *where[2] = {cfg->listen_where, cfg->admin_listen_where};
    const char *name[2] = {"setting 'listen'", "setting 'admin.listen'"};
    char err[256];

    if (addr[1] != NULL && strcmp(addr[0], addr[1]) == 0 &&
        strcmp(strrchr(addr[0], ':'), ":0") != 0) {
        fprintf(stderr, "referee: %s: %s is also the address of %s\n",
                where[1][0] ? where[1] : name[1], addr[1],
                where[0][0] ? where[0] : name[0]);
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        if (addr[i] != NULL &&
            rf_config_probe_listen(addr[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "referee: %s: %s\n",
                    where[i][0] ? where[i] : name[i], err);
            return 2;
        }
    }
    return 0;
}

/* The tenants directory must be one before anything starts (the daemon
 * created the store and then stopped with exit 1 otherwise). */
static int probe_tenants(const struct rf_config *cfg)
{
    struct stat st;

    int rc = stat(cfg->tenants_dir, &st) != 0 ? -errno : 0;

    if (rc != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "referee: %s: %s: %s\n",
                cfg->tenants_where[0] ? cfg->tenants_where
                                      : "setting 'tenants'",
                cfg->tenants_dir,
                rc != 0 ? rf_strerror(rc) : "not a directory");
        return 2;
    }
    return 0;
}

/* Only one daemon may run on a data directory: two would both poll Zoho,
 * run the outbox and issue the same rewards. The lock is an flock on the
 * directory itself, which no one deletes by mistake as they might a lock
 * file, held until the process exits (the kernel drops it after a kill -9
 * too); DIR/daemon.pid holds the holder's pid for the message. Returns 0
 * with the lock held, or 2 after saying why. */
static int lock_data(const char *dir, const char *where)
{
    char path[4200], pid[32] = "";
    int dfd, fd, len;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/daemon.pid", dir);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0 && flock(dfd, LOCK_EX | LOCK_NB) == 0) {
        /* dfd stays open, and the lock held, until the process ends */
        len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0 && write(fd, pid, (size_t)len) == len && close(fd) == 0) {
            return 0;
        }
        fprintf(stderr, "referee: %s: cannot write %s: %s\n", where, path,
                strerror(errno));
        return 2;
    }
    if (dfd < 0 || errno != EWOULDBLOCK) {
        fprintf(stderr, "referee: %s: cannot lock %s: %s\n", where, dir,
                strerror(errno));
        return 2;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    n = fd >= 0 ? read(fd, pid, sizeof(pid) - 1) : 0;
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    if (fd >= 0) {
        close(fd);
    }
    fprintf(stderr, "referee: %s: %s is in use by another referee run%s%s%s\n",
            where, dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
    return 2;
}

/* The data directory must be one (it is created if only its last part is
 * missing), and it is locked for this daemon. Returns 0 or 2. */
static int probe_data(const struct rf_config *cfg)
{
    const char *where =
        cfg->data_where[0] ? cfg->data_where : "setting 'data'";
    const char *why = NULL;
    struct stat st;

    if (stat(cfg->data_dir, &st) != 0) {
        if (errno != ENOENT || mkdir(cfg->data_dir, 0700) != 0) {
            why = strerror(errno);
        }
    } else if (!S_ISDIR(st.st_mode)) {
        why = "not a directory";
    }
    if (why == NULL) {
        return lock_data(cfg->data_dir, where);
    }
    fprintf(stderr, "referee: %s: %s: %s\n", where, cfg->data_dir, why);
    return 2;
}

static int run_flags(int argc, char **argv, struct rf_config *cfg)
{
    char host[64], err[600];
    const char *v, *config = NULL;
    unsigned port;
    int bad = 0, rc = 0;

    for (int i = 0; i < argc; i++) {
        if ((v = rf_cli_option(argc, argv, &i, "config", &bad))) {
            config = v;
        }
    }
    if (config && (rc = rf_config_load(cfg, config, err, sizeof(err)))) {
        fprintf(stderr, "referee: %s\n", err);
        return 2;
    }
    for (int i = 0; rc == 0 && i < argc; i++) {
        if (rf_cli_option(argc, argv, &i, "config", &bad)) {
            continue;
        } else if ((v = rf_cli_option(argc, argv, &i, "listen", &bad))) {
            if (rf_config_split_listen(v, host, sizeof(host), &port) != 0) {
                return rf_cli_usage_error("run", "--listen: %s, got '%s'",
                                          RF_CONFIG_LISTEN_HELP, v);
            }
            rc = rf_config_set_string(&cfg->listen, v);
            snprintf(cfg->listen_where, sizeof(cfg->listen_where),
                     "--listen");
        } else if ((v = rf_cli_option(argc, argv, &i, "data", &bad))) {
            rc = rf_config_set_string(&cfg->data_dir, v);
            snprintf(cfg->data_where, sizeof(cfg->data_where), "--data");
        } else if ((v = rf_cli_option(argc, argv, &i, "tenants", &bad))) {
            rc = rf_config_set_string(&cfg->tenants_dir, v);
            snprintf(cfg->tenants_where, sizeof(cfg->tenants_where),
                     "--tenants");
        } else {
            return rf_cli_usage_error("run", "%s '%s'",
                                      bad ? "missing value for"
                                          : "unknown option",
                                      argv[i]);
        }
    }
    if (rc != 0) {
        return 1;
    }
    rc = probe_listeners(cfg);
    rc = rc != 0 ? rc : probe_tenants(cfg);
    return rc != 0 ? rc : probe_data(cfg);
}

static int cmd_run(int argc, char **argv)
{
    struct rf_config cfg;
    int code;

    if (rf_config_defaults(&cfg) != 0) {
        return 1;
    }
    code = run_flags(argc, argv, &cfg);
    if (code == 0) {
        rf_log_setup(cfg.log_level, cfg.log_format);
        code = rf_daemon_run(&cfg);
    }
    rf_config_cleanup(&cfg);
    return code;
}

int main(int argc, char **argv)
{
    const struct command *c;

    if (argc < 2) {
        overview(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        overview(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        return cmd_version(0, NULL);
    }
    c = find(argv[1]);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread starts */
    if (c == NULL) {
        fprintf(stderr, "referee: unknown command '%s' (see 'referee "
                        "--help')\n",
                argv[1]);
        return 2;
    }
    for (int i = 2; i < argc && c->run != cmd_help; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            if (has_subcommands(c) && !names_subcommand(c, argv[2])) {
                break; /* the command refuses the word: exit 2 */
            }
            printf("%s", c->usage); /* as 'referee help COMMAND' */
            return 0;
        }
    }
    return c->run(argc - 2, argv + 2);
}

/* Command-line commands other than `run`, one function each. Each takes the
 * arguments after its own name and returns the process exit code: 0 done,
 * 1 failed, 2 usage error (with a one-line message on stderr). */
#ifndef REFEREE_CLI_H
#define REFEREE_CLI_H

/* `referee events list --data DIR --tenant ID [--since ID]` */
int rf_cli_events(int argc, char **argv);

/* `referee check TENANT_DIR [--plugins DIR]...` */
int rf_cli_check(int argc, char **argv);

/* `referee call TENANT_DIR HOOK INPUT.json [--data DIR] [--plugins DIR]...
 * [--ca-file FILE]` */
int rf_cli_call(int argc, char **argv);

/* `referee dead list|replay --data DIR --tenant ID [JOB]` */
int rf_cli_dead(int argc, char **argv);

/* `referee review list --data DIR --tenant ID [--json]`,
 * `referee review approve --data DIR --tenant ID REFERRAL`,
 * `referee review reject --data DIR --tenant ID REFERRAL --reason TEXT` */
int rf_cli_review(int argc, char **argv);

/* `referee referrers list --data DIR --tenant ID [--json]` */
int rf_cli_referrers(int argc, char **argv);

/* `referee referrals list --data DIR --tenant ID [--json]` */
int rf_cli_referrals(int argc, char **argv);

/* `referee audit list --data DIR --tenant ID` */
int rf_cli_audit(int argc, char **argv);

/* `referee report --data DIR --tenant ID [--json|--csv]` */
int rf_cli_report(int argc, char **argv);

/* `referee zoho status --data DIR --tenant ID` */
int rf_cli_zoho(int argc, char **argv);

/* Opens the store in `data` for command `cmd`: read-only, or writable
 * without ever creating one. With `tenant`, the tenant must have been
 * loaded by a daemon using this store, so that a mistyped id is an error
 * rather than an empty answer. On failure prints one line naming the cause
 * (and the tenants there) and returns 1; else 0 and *st is the caller's. */
struct rf_store;
int rf_cli_open_store(const char *cmd, const char *data, const char *tenant,
                      int writable, struct rf_store **st);

/* Prints a one-line usage error for `cmd` and returns 2. */
int rf_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Finds "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past the
 * value and returns it, or NULL when argv[*i] is another option. Sets *bad
 * when the option is given without a value. */
const char *rf_cli_option(int argc, char **argv, int *i, const char *name,
                          int *bad);

#endif

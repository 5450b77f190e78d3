/* The durable outbox: every external side effect is a job, committed in the
 * same LMDB transaction as the state change that caused it, then run by a
 * worker on the loop with an idempotency key that never changes between
 * attempts. Failed attempts are retried with exponential backoff and full
 * jitter (honouring Retry-After); a job that fails permanently, runs out
 * of attempts or grows too old becomes a dead letter with its last error,
 * which an operator can replay.
 *
 *     outbox      be64(id) -> job record (JSON)
 *     outbox_due  be64(due ms) be64(id) -> ""   for pending jobs only
 *
 * A job whose outcome is unknown (a timeout after sending, a reset, a
 * garbled 2xx) is retried with the same key: receivers de-duplicate on it,
 * so a side effect happens once even when we cannot tell whether it did.
 */
#ifndef REFEREE_OUTBOX_H
#define REFEREE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "referee/store.h"
#include "referee/writer.h"

#define RF_JOB_KIND_MAX 32
#define RF_JOB_KEY_MAX 128

enum rf_job_state { RF_JOB_PENDING = 0, RF_JOB_DONE, RF_JOB_DEAD };

/* A job as stored. Strings are owned by the job; free with
 * rf_job_cleanup(). */
struct rf_job {
    uint64_t id;
    char tenant[65];
    char kind[RF_JOB_KIND_MAX];
    char key[RF_JOB_KEY_MAX]; /* idempotency key, the same on every try */
    char *payload;            /* JSON text */
    enum rf_job_state state;
    unsigned attempts;
    int64_t created_ms, next_ms, finished_ms;
    char *last_error; /* NULL until an attempt fails */
    char *result;     /* JSON text an executor returned on success, or NULL */
};

void rf_job_cleanup(struct rf_job *job);

/* Inside the caller's write transaction: adds a pending job due at `due_ms`
 * (0: now). `key` must be unique for the side effect (e.g. "reward:" +
 * referral + rule); adding a job whose key exists already adds nothing and
 * returns the existing id, so a state change replayed after a crash cannot
 * double a side effect. Returns 0, RF_EINVAL, RF_ETOOBIG, RF_EMAPFULL or
 * RF_ESTORE; *id (may be NULL) gets the job's id. Writer thread. */
int rf_outbox_add(MDB_txn *txn, const struct rf_store *st,
                  const char *tenant, const char *kind, const char *key,
                  const char *payload, int64_t due_ms, uint64_t *id);

/* Reads the job of `tenant` added with idempotency key `key` into *out
 * (free with rf_job_cleanup()). Returns 0, RF_ENOTFOUND, RF_EINVAL or
 * RF_ESTORE. Any thread with a transaction. */
int rf_outbox_find(MDB_txn *txn, const struct rf_store *st,
                   const char *tenant, const char *key, struct rf_job *out);

/* How attempts are spaced and when a job gives up. */
struct rf_outbox_policy {
    unsigned base_ms;      /* first retry within this (full jitter) */
    unsigned cap_ms;       /* longest wait between attempts */
    unsigned max_attempts; /* then dead */
    uint64_t max_age_ms;   /* then dead */
    unsigned concurrency;  /* jobs running at once */
};

/* Defaults: 1 s base, 10 min cap, 12 attempts, 3 days, 32 at once. */
void rf_outbox_policy_default(struct rf_outbox_policy *p);

/* The wait before attempt `attempt` (1-based count of failures so far):
 * uniform in [0, min(cap, base * 2^(attempt-1))], using `rnd`. */
uint64_t rf_outbox_backoff(const struct rf_outbox_policy *p,
                           unsigned attempt, uint32_t rnd);

enum rf_job_result {
    RF_JOB_OK = 0,
    RF_JOB_TRANSIENT,  /* try again later */
    RF_JOB_PERMANENT,  /* trying again cannot help: dead letter now */
    RF_JOB_UNKNOWN     /* may have happened: try again with the same key */
};

struct rf_job_outcome {
    enum rf_job_result result;
    int64_t retry_after_ms; /* from the receiver, or -1 */
    const char *error;      /* for the job's last_error; may be NULL */
    const char *result_json; /* kept with a done job; may be NULL */
};

struct rf_outbox_run;
struct rf_outbox;

/* Runs one attempt of `job` (borrowed until finished) and must call
 * rf_outbox_finish(run, ...) exactly once, now or later, on the loop. */
typedef void (*rf_outbox_exec_cb)(const struct rf_job *job,
                                  struct rf_outbox_run *run, void *arg);

/* Called on the loop after a job's new state committed (for counters and
 * follow-up state changes); may be NULL. */
typedef void (*rf_outbox_settled_cb)(const struct rf_job *job, void *arg);

/* Starts the worker. Borrowed arguments must outlive it. NULL when memory
 * runs out. Loop thread only. */
struct rf_outbox *rf_outbox_start(uv_loop_t *loop, struct rf_store *st,
                                  struct rf_writer *w,
                                  const struct rf_outbox_policy *p);

/* Registers the executor for jobs of `kind` (copied). Up to 8 kinds.
 * Returns 0 or RF_ELIMIT. A pending job of an unknown kind waits. */
int rf_outbox_executor(struct rf_outbox *ob, const char *kind,
                       rf_outbox_exec_cb cb, void *arg);

void rf_outbox_on_settled(struct rf_outbox *ob, rf_outbox_settled_cb cb,
                          void *arg);

/* Looks for due jobs now (call after committing rf_outbox_add()). */
void rf_outbox_kick(struct rf_outbox *ob);

/* Reports an attempt's outcome; `o` is borrowed for the call. */
void rf_outbox_finish(struct rf_outbox_run *run,
                      const struct rf_job_outcome *o);

/* Attempts running or being recorded. */
size_t rf_outbox_running(const struct rf_outbox *ob);

/* Stops the worker; attempts still running finish later and are recorded
 * only if the writer still runs (otherwise they run again at the next
 * start, with the same key). Frees after its timer closed. Accepts NULL. */
void rf_outbox_stop(struct rf_outbox *ob);

/* Classifies an HTTP attempt: 2xx is OK (UNKNOWN when the body had to be
 * JSON and is not: a garbled success may still have happened); 408, 425,
 * 429 and 5xx are TRANSIENT; other answers PERMANENT; a refusal by our own
 * allow-list PERMANENT; a timeout, a reset or an oversized answer UNKNOWN.
 * `rc` is the rf_http_result rc. */
enum rf_job_result rf_outbox_classify_http(int rc, long status,
                                           int body_ok);

/* Parses a Retry-After value (seconds, or an HTTP date) into ms from now;
 * -1 when absent or unreadable. */
int64_t rf_outbox_retry_after(const char *value);

struct rf_http_client;
struct rf_http_allow;

/* The allow-list of a tenant, for the http executor. */
typedef int (*rf_outbox_allow_cb)(const char *tenant,
                                  const struct rf_http_allow **allow,
                                  size_t *n, void *arg);

/* What the built-in "http" executor needs; owned by the caller, borrowed
 * until the outbox stops. */
struct rf_outbox_http {
    struct rf_http_client *client;
    rf_outbox_allow_cb allow; /* NULL: any public host over https */
    void *arg;
};

/* Registers the built-in executor for kind "http". Its payload:
 *     {"method":"POST","url":"https://...","headers":{"k":"v"},
 *      "body":"text" | "json":{...}, "expect_json":true}
 * Each attempt carries "Idempotency-Key: <job key>". */
int rf_outbox_http_executor(struct rf_outbox *ob, struct rf_outbox_http *x);

/* For operators, each in its own transaction: calls fn for each job of
 * `tenant` in `state`, oldest first (the job is borrowed for the call);
 * stops when fn returns non-zero. Returns 0, fn's value or RF_ESTORE. */
int rf_outbox_each(struct rf_store *st, const char *tenant,
                   enum rf_job_state state,
                   int (*fn)(const struct rf_job *job, void *arg), void *arg);

/* Makes dead job `id` of `tenant` (or all its dead jobs when id is 0)
 * pending again, due now, with its attempts reset and the same key.
 * Returns how many, or a negative code. Opens its own write transaction. */
long rf_outbox_replay(struct rf_store *st, const char *tenant, uint64_t id);

#endif

/* Durable writes off the loop thread: a writer thread takes queued jobs,
 * runs a batch of them in one LMDB transaction (group commit), and hands
 * each job back to the loop thread once its batch is on disk.
 *
 * Each job runs in its own nested transaction, so a job that fails is
 * rolled back alone and the rest of its batch still commits.
 *
 * With RF_WRITER_INLINE the job runs and commits on the calling thread
 * inside rf_writer_submit(); this mode exists to measure the two designs
 * against each other (docs/architecture.md).
 */
#ifndef REFEREE_WRITER_H
#define REFEREE_WRITER_H

#include <stddef.h>

#include <uv.h>

#include "referee/store.h"

struct rf_write_job;

/* Runs inside the batch's transaction on the writer thread. Returns 0 or a
 * negative code; RF_EMAPFULL must be passed through. May run more than once
 * (after the map grows), so it must reset whatever it writes to the job. */
typedef int (*rf_write_run_cb)(MDB_txn *txn, struct rf_write_job *job);

/* Runs on the loop thread after the batch committed (job->rc == 0) or
 * failed (job->rc < 0). The job is the caller's again from here. */
typedef void (*rf_write_done_cb)(struct rf_write_job *job);

/* Embed this in the caller's own request object. */
struct rf_write_job {
    rf_write_run_cb run;
    rf_write_done_cb done;
    int rc;
    struct rf_write_job *next; /* private to the writer */
};

enum rf_writer_mode { RF_WRITER_GROUP = 0, RF_WRITER_INLINE };

struct rf_writer;

/* Starts the writer thread on `store`, reporting completions on `loop`.
 * `batch_max` caps jobs per transaction (0: 512). Caller owns the result;
 * stop with rf_writer_stop(). Returns NULL on failure. Loop thread only. */
struct rf_writer *rf_writer_start(uv_loop_t *loop, struct rf_store *store,
                                  enum rf_writer_mode mode, size_t batch_max);

/* Queues a job. Borrowed until its done callback runs. In inline mode the
 * done callback runs before this returns. Loop thread only. */
void rf_writer_submit(struct rf_writer *w, struct rf_write_job *job);

/* Jobs queued or being written and not yet handed back. Loop thread. */
size_t rf_writer_pending(const struct rf_writer *w);

/* Commits that have completed, and the jobs in them (for metrics). */
void rf_writer_stats(const struct rf_writer *w, unsigned long *commits,
                     unsigned long *jobs);

/* Finishes every queued job (their done callbacks run), joins the thread and
 * frees the writer after its async handle closed; the loop must run once
 * more for that. Accepts NULL. Loop thread only. */
void rf_writer_stop(struct rf_writer *w);

#endif

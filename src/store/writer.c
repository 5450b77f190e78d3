/* Group commit: one writer thread, one transaction per batch of jobs, and a
 * uv_async_t to hand finished jobs back to the loop. */
#include "referee/writer.h"
#include "referee/error.h"
#include "referee/log.h"

#include <pthread.h>
#include <stdlib.h>

#define DEFAULT_BATCH 512

struct queue {
    struct rf_write_job *head, *tail;
};

struct rf_writer {
    uv_async_t async; /* first member: the close callback frees the writer */
    struct rf_store *store;
    enum rf_writer_mode mode;
    size_t batch_max;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct queue todo; /* guarded by mu */
    struct queue done; /* guarded by mu */
    int stopping;      /* guarded by mu */
    size_t pending;    /* loop thread only */
    unsigned long commits, jobs;
};

static void push(struct queue *q, struct rf_write_job *job)
{
    job->next = NULL;
    if (q->tail) {
        q->tail->next = job;
    } else {
        q->head = job;
    }
    q->tail = job;
}

/* Takes up to `max` jobs off the front of q. */
static struct rf_write_job *take(struct queue *q, size_t max)
{
    struct rf_write_job *first = q->head, *last = q->head;

    if (first == NULL) {
        return NULL;
    }
    for (size_t n = 1; n < max && last->next; n++) {
        last = last->next;
    }
    q->head = last->next;
    if (q->head == NULL) {
        q->tail = NULL;
    }
    last->next = NULL;
    return first;
}

/* The transaction body of one batch: each job in a nested transaction. */
static int run_batch(MDB_txn *txn, void *ctx)
{
    for (struct rf_write_job *j = ctx; j; j = j->next) {
        MDB_txn *child = NULL;
        int mrc = mdb_txn_begin(mdb_txn_env(txn), txn, 0, &child);

        if (mrc != 0) {
            return rf_store_rc(mrc);
        }
        j->rc = j->run(child, j);
        if (j->rc == RF_EMAPFULL) {
            mdb_txn_abort(child);
            return RF_EMAPFULL;
        }
        if (j->rc != 0) {
            mdb_txn_abort(child);
            continue;
        }
        mrc = mdb_txn_commit(child);
        if (mrc != 0) {
            return rf_store_rc(mrc);
        }
    }
    return 0;
}

/* Writes one batch; on a failed commit every job in it carries the error. */
static void write_batch(struct rf_writer *w, struct rf_write_job *batch)
{
    int rc = rf_store_write(w->store, run_batch, batch);

    if (rc != 0) {
        rf_log_error("store", RF_NOF, "batch commit failed: %s",
                     rf_strerror(rc));
        for (struct rf_write_job *j = batch; j; j = j->next) {
            j->rc = rc;
        }
    }
}

static void *writer_main(void *arg)
{
    struct rf_writer *w = arg;

    /* shown by top -H and in /proc/PID/task/TID/comm (at most 15 bytes) */
    (void)pthread_setname_np(pthread_self(), "referee-writer");
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct rf_write_job *batch, *j, *next;

        while (w->todo.head == NULL && !w->stopping) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        if (w->todo.head == NULL) {
            break; /* stopping and drained */
        }
        batch = take(&w->todo, w->batch_max);
        pthread_mutex_unlock(&w->mu);

        write_batch(w, batch);

        pthread_mutex_lock(&w->mu);
        w->commits++;
        for (j = batch; j; j = next) {
            next = j->next;
            w->jobs++;
            push(&w->done, j);
        }
        uv_async_send(&w->async);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Loop thread: hands finished jobs back to their owners. */
static void on_async(uv_async_t *handle)
{
    struct rf_writer *w = (struct rf_writer *)handle;
    struct rf_write_job *j, *next;

    pthread_mutex_lock(&w->mu);
    j = take(&w->done, (size_t)-1);
    pthread_mutex_unlock(&w->mu);
    for (; j; j = next) {
        next = j->next;
        w->pending--;
        j->done(j);
    }
}

static void on_close(uv_handle_t *handle)
{
    struct rf_writer *w = (struct rf_writer *)handle;

    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

struct rf_writer *rf_writer_start(uv_loop_t *loop, struct rf_store *store,
                                  enum rf_writer_mode mode, size_t batch_max)
{
    struct rf_writer *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        return NULL;
    }
    w->store = store;
    w->mode = mode;
    w->batch_max = batch_max ? batch_max : DEFAULT_BATCH;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (uv_async_init(loop, &w->async, on_async) != 0) {
        goto fail;
    }
    if (mode == RF_WRITER_GROUP &&
        pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        uv_close((uv_handle_t *)&w->async, on_close); /* frees w */
        rf_log_error("store", RF_NOF, "cannot start writer thread");
        return NULL;
    }
    return w;
fail:
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return NULL;
}

void rf_writer_submit(struct rf_writer *w, struct rf_write_job *job)
{
    w->pending++;
    if (w->mode == RF_WRITER_INLINE) {
        job->next = NULL;
        write_batch(w, job);
        w->commits++;
        w->jobs++;
        w->pending--;
        job->done(job);
        return;
    }
    pthread_mutex_lock(&w->mu);
    push(&w->todo, job);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

size_t rf_writer_pending(const struct rf_writer *w)
{
    return w->pending;
}

void rf_writer_stats(const struct rf_writer *w, unsigned long *commits,
                     unsigned long *jobs)
{
    *commits = w->commits;
    *jobs = w->jobs;
}

void rf_writer_stop(struct rf_writer *w)
{
    if (w == NULL) {
        return;
    }
    if (w->mode == RF_WRITER_GROUP) {
        pthread_mutex_lock(&w->mu);
        w->stopping = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    on_async(&w->async); /* hand back what the last batches finished */
    uv_close((uv_handle_t *)&w->async, on_close);
}

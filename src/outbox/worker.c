/* The outbox worker: finds due jobs, runs them through their kind's
 * executor, and records each attempt's outcome durably. */
#include "referee/error.h"
#include "referee/log.h"
#include "referee/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define EXECUTORS_MAX 8
#define IDLE_SCAN_MS 1000 /* notices jobs replayed by another process */
#define ERROR_MAX 1000

struct executor {
    char kind[RF_JOB_KIND_MAX];
    rf_outbox_exec_cb cb;
    void *arg;
};

struct rf_outbox_run {
    struct rf_write_job wj; /* first: the writer hands this back */
    struct rf_outbox_run *prev, *next;
    struct rf_outbox *ob;
    struct rf_job job;
    int64_t old_next; /* the due entry to remove */
    int finished;
};

struct rf_outbox {
    uv_timer_t timer;
    struct rf_store *st;
    struct rf_writer *w;
    struct rf_outbox_policy p;
    struct executor exec[EXECUTORS_MAX];
    size_t nexec;
    struct rf_outbox_run *runs;
    size_t running;
    rf_outbox_settled_cb settled;
    void *settled_arg;
    uint64_t rnd;
    int stopping;
    int closed;
};

void rf_outbox_policy_default(struct rf_outbox_policy *p)
{
    p->base_ms = 1000;
    p->cap_ms = 10 * 60 * 1000;
    p->max_attempts = 12;
    p->max_age_ms = 3ull * 24 * 3600 * 1000;
    p->concurrency = 32;
}

uint64_t rf_outbox_backoff(const struct rf_outbox_policy *p,
                           unsigned attempt, uint32_t rnd)
{
    uint64_t ceil = p->base_ms;

    for (unsigned i = 1; i < attempt && ceil < p->cap_ms; i++) {
        ceil *= 2;
    }
    if (ceil > p->cap_ms) {
        ceil = p->cap_ms;
    }
    return (uint64_t)rnd % (ceil + 1); /* full jitter */
}

static uint32_t next_rnd(struct rf_outbox *ob)
{
    ob->rnd ^= ob->rnd << 13;
    ob->rnd ^= ob->rnd >> 7;
    ob->rnd ^= ob->rnd << 17;
    return (uint32_t)(ob->rnd >> 16);
}

static const struct executor *executor_of(const struct rf_outbox *ob,
                                          const char *kind)
{
    for (size_t i = 0; i < ob->nexec; i++) {
        if (strcmp(ob->exec[i].kind, kind) == 0) {
            return &ob->exec[i];
        }
    }
    return NULL;
}

static int is_running(const struct rf_outbox *ob, uint64_t id)
{
    for (const struct rf_outbox_run *r = ob->runs; r; r = r->next) {
        if (r->job.id == id) {
            return 1;
        }
    }
    return 0;
}

static void maybe_free(struct rf_outbox *ob);

/* --- recording outcomes ------------------------------------------------- */

static int write_outcome(MDB_txn *txn, struct rf_write_job *wj)
{
    struct rf_outbox_run *r = (struct rf_outbox_run *)wj;
    int rc = rf__job_undue(txn, r->ob->st, r->job.id, r->old_next);

    return rc ? rc : rf__job_put(txn, r->ob->st, &r->job);
}

static void on_recorded(struct rf_write_job *wj)
{
    struct rf_outbox_run *r = (struct rf_outbox_run *)wj;
    struct rf_outbox *ob = r->ob;

    if (wj->rc != 0) {
        rf_log_error("outbox", RF_F("tenant", r->job.tenant),
                     "cannot record job %llu (%s); it runs again",
                     (unsigned long long)r->job.id, rf_strerror(wj->rc));
    } else if (ob->settled) {
        ob->settled(&r->job, ob->settled_arg);
    }
    if (r->prev) {
        r->prev->next = r->next;
    } else {
        ob->runs = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    }
    ob->running--;
    rf_job_cleanup(&r->job);
    free(r);
    if (ob->stopping) {
        maybe_free(ob);
    } else {
        rf_outbox_kick(ob);
    }
}

static void set_text(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strndup(src, ERROR_MAX) : NULL;
}

/* Works out the job's next state from an attempt's outcome. */
static void next_state(struct rf_outbox *ob, struct rf_job *j,
                       const struct rf_job_outcome *o)
{
    int64_t now = rf__outbox_now_ms();
    uint64_t wait;

    if (o->result == RF_JOB_OK) {
        j->state = RF_JOB_DONE;
        j->finished_ms = now;
        free(j->result);
        j->result = o->result_json ? strdup(o->result_json) : NULL;
        return;
    }
    j->attempts++;
    set_text(&j->last_error, o->error ? o->error : "failed");
    if (o->result == RF_JOB_PERMANENT || j->attempts >= ob->p.max_attempts ||
        (uint64_t)(now - j->created_ms) >= ob->p.max_age_ms) {
        j->state = RF_JOB_DEAD;
        j->finished_ms = now;
        rf_log_warn("outbox", RF_F("tenant", j->tenant, "kind", j->kind),
                    "job %llu is a dead letter after %u attempts: %s",
                    (unsigned long long)j->id, j->attempts, j->last_error);
        return;
    }
    wait = rf_outbox_backoff(&ob->p, j->attempts, next_rnd(ob));
    if (o->retry_after_ms >= 0 && (uint64_t)o->retry_after_ms > wait) {
        wait = (uint64_t)o->retry_after_ms; /* the receiver asked */
    }
    j->next_ms = now + (int64_t)wait;
}

void rf_outbox_finish(struct rf_outbox_run *r, const struct rf_job_outcome *o)
{
    if (r->finished) {
        return;
    }
    r->finished = 1;
    next_state(r->ob, &r->job, o);
    r->wj.run = write_outcome;
    r->wj.done = on_recorded;
    rf_writer_submit(r->ob->w, &r->wj);
}

/* --- finding due jobs --------------------------------------------------- */

/* Loads job `id` into a new run. */
static struct rf_outbox_run *load_run(struct rf_outbox *ob, MDB_txn *txn,
                                      uint64_t id, int64_t due)
{
    unsigned char idk[8];
    MDB_val k = {8, idk}, v;
    struct rf_outbox_run *r;

    rf_store_put_be64(idk, id);
    if (mdb_get(txn, rf_store_dbi(ob->st, RF_DB_OUTBOX), &k, &v) != 0) {
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    if (rf__job_decode(v.mv_data, v.mv_size, id, &r->job) != 0 ||
        r->job.state != RF_JOB_PENDING) {
        rf_job_cleanup(&r->job);
        free(r);
        return NULL;
    }
    r->ob = ob;
    r->old_next = due;
    return r;
}

/* Collects due jobs into a list; returns ms until the next one (or the
 * idle rescan). */
static uint64_t collect(struct rf_outbox *ob, struct rf_outbox_run **out)
{
    int64_t now = rf__outbox_now_ms();
    uint64_t wait = IDLE_SCAN_MS;
    size_t room = ob->p.concurrency > ob->running
                      ? ob->p.concurrency - ob->running
                      : 0;
    MDB_cursor *cur = NULL;
    MDB_txn *txn = NULL;
    MDB_val k, v;
    int mrc;

    if (room == 0 || rf_store_read_begin(ob->st, &txn) != 0) {
        return wait;
    }
    if (mdb_cursor_open(txn, rf_store_dbi(ob->st, RF_DB_OUTBOX_DUE), &cur)) {
        rf_store_read_end(ob->st, txn);
        return wait;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && room > 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        int64_t due = (int64_t)rf_store_get_be64(k.mv_data);
        uint64_t id = rf_store_get_be64((unsigned char *)k.mv_data + 8);
        struct rf_outbox_run *r;

        if (due > now) {
            wait = (uint64_t)(due - now) < wait ? (uint64_t)(due - now)
                                                : wait;
            break;
        }
        if (is_running(ob, id) || (r = load_run(ob, txn, id, due)) == NULL) {
            continue;
        }
        if (executor_of(ob, r->job.kind) == NULL) {
            rf_job_cleanup(&r->job); /* waits for its executor */
            free(r);
            continue;
        }
        r->next = *out;
        *out = r;
        room--;
    }
    if (rf_store_scan_rc(mrc) != 0) {
        rf_log_error("outbox", RF_NOF, "reading due jobs failed: %s",
                     mdb_strerror(mrc)); /* the next tick reads again */
    }
    mdb_cursor_close(cur);
    rf_store_read_end(ob->st, txn);
    return wait;
}

static void on_timer(uv_timer_t *t)
{
    struct rf_outbox *ob = t->data;
    struct rf_outbox_run *batch = NULL, *r, *next;
    uint64_t wait;

    if (ob->stopping) {
        return;
    }
    wait = collect(ob, &batch);
    for (r = batch; r; r = next) {
        const struct executor *ex = executor_of(ob, r->job.kind);

        next = r->next;
        r->prev = NULL;
        r->next = ob->runs;
        if (ob->runs) {
            ob->runs->prev = r;
        }
        ob->runs = r;
        ob->running++;
        ex->cb(&r->job, r, ex->arg);
    }
    if (!ob->stopping && !uv_is_active((uv_handle_t *)&ob->timer)) {
        uv_timer_start(&ob->timer, on_timer, wait, 0);
    }
}

void rf_outbox_kick(struct rf_outbox *ob)
{
    if (!ob->stopping) {
        uv_timer_start(&ob->timer, on_timer, 0, 0);
    }
}

/* --- life cycle --------------------------------------------------------- */

struct rf_outbox *rf_outbox_start(uv_loop_t *loop, struct rf_store *st,
                                  struct rf_writer *w,
                                  const struct rf_outbox_policy *p)
{
    struct rf_outbox *ob = calloc(1, sizeof(*ob));

    if (ob == NULL) {
        return NULL;
    }
    ob->st = st;
    ob->w = w;
    if (p) {
        ob->p = *p;
    } else {
        rf_outbox_policy_default(&ob->p);
    }
    ob->rnd = (uint64_t)rf__outbox_now_ms() * 2654435761u | 1;
    uv_timer_init(loop, &ob->timer);
    ob->timer.data = ob;
    rf_outbox_kick(ob);
    return ob;
}

int rf_outbox_executor(struct rf_outbox *ob, const char *kind,
                       rf_outbox_exec_cb cb, void *arg)
{
    struct executor *e;

    if (ob->nexec == EXECUTORS_MAX) {
        return RF_ELIMIT;
    }
    e = &ob->exec[ob->nexec++];
    snprintf(e->kind, sizeof(e->kind), "%s", kind);
    e->cb = cb;
    e->arg = arg;
    rf_outbox_kick(ob);
    return 0;
}

void rf_outbox_on_settled(struct rf_outbox *ob, rf_outbox_settled_cb cb,
                          void *arg)
{
    ob->settled = cb;
    ob->settled_arg = arg;
}

size_t rf_outbox_running(const struct rf_outbox *ob)
{
    return ob->running;
}

static void on_closed(uv_handle_t *h)
{
    struct rf_outbox *ob = h->data;

    ob->closed = 1;
    maybe_free(ob);
}

/* Frees once stopped, closed and with no attempt left to record. */
static void maybe_free(struct rf_outbox *ob)
{
    if (ob->stopping && ob->closed && ob->running == 0) {
        free(ob);
    }
}

void rf_outbox_stop(struct rf_outbox *ob)
{
    if (ob == NULL) {
        return;
    }
    ob->stopping = 1;
    uv_timer_stop(&ob->timer);
    uv_close((uv_handle_t *)&ob->timer, on_closed);
}

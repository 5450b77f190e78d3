/* Daily counters per tenant: the store side, and the batching of
 * increments on the loop that flushes them once a second. */
#include "referee/counters.h"
#include "referee/error.h"
#include "referee/log.h"
#include "referee/tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_MAX (RF_TENANT_ID_MAX + 1 + 10 + 1 + RF_COUNTER_NAME_MAX)

void rf_day(int64_t unix_s, char out[11])
{
    time_t t = (time_t)unix_s;
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, 11, "%Y-%m-%d", &tm) != 10) {
        memcpy(out, "0000-00-00", 11);
    }
}

/* tenant \0 day \0 name; 0 when a part is too long. */
static size_t counter_key(unsigned char *k, const char *tenant, const char *day,
                          const char *name)
{
    size_t tlen = strlen(tenant), dlen = strlen(day), nlen = strlen(name);

    if (tlen == 0 || tlen > RF_TENANT_ID_MAX || dlen != 10 || nlen == 0 ||
        nlen >= RF_COUNTER_NAME_MAX) {
        return 0;
    }
    memcpy(k, tenant, tlen);
    k[tlen] = 0;
    memcpy(k + tlen + 1, day, dlen);
    k[tlen + 1 + dlen] = 0;
    memcpy(k + tlen + 2 + dlen, name, nlen);
    return tlen + 2 + dlen + nlen;
}

int rf_counter_get(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                   const char *day, const char *name, uint64_t *out)
{
    unsigned char key[KEY_MAX];
    MDB_val k = {counter_key(key, tenant, day, name), key}, v;
    int mrc;

    *out = 0;
    if (k.mv_size == 0) {
        return RF_EINVAL;
    }
    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_COUNTERS), &k, &v);
    if (mrc == MDB_NOTFOUND) {
        return 0;
    }
    if (mrc != 0 || v.mv_size != 8) {
        return RF_ESTORE;
    }
    *out = rf_store_get_be64(v.mv_data);
    return 0;
}

int rf_counter_add(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                   const char *day, const char *name, uint64_t n)
{
    unsigned char key[KEY_MAX], buf[8];
    MDB_val k = {counter_key(key, tenant, day, name), key}, v = {8, buf};
    uint64_t old;
    int rc = rf_counter_get(txn, st, tenant, day, name, &old);

    if (rc != 0) {
        return rc;
    }
    rf_store_put_be64(buf, old + n);
    return rf_store_rc(
        mdb_put(txn, rf_store_dbi(st, RF_DB_COUNTERS), &k, &v, 0));
}

/* Splits a key of `tenant` (tlen bytes) into day and name. */
static int split_key(const MDB_val *k, size_t tlen, char day[11],
                     char name[RF_COUNTER_NAME_MAX])
{
    const unsigned char *p = k->mv_data;
    size_t rest = k->mv_size - tlen - 1;

    if (rest < 12 || rest - 11 >= RF_COUNTER_NAME_MAX || p[tlen + 11] != 0) {
        return -1;
    }
    memcpy(day, p + tlen + 1, 10);
    day[10] = '\0';
    memcpy(name, p + tlen + 12, rest - 11);
    name[rest - 11] = '\0';
    return 0;
}

int rf_counters_each(MDB_txn *txn, const struct rf_store *st,
                     const char *tenant,
                     int (*fn)(const char *day, const char *name,
                               uint64_t value, void *arg),
                     void *arg)
{
    size_t tlen = strlen(tenant);
    MDB_val k = {tlen + 1, (void *)tenant}, v;
    MDB_cursor *cur;
    int rc = 0, mrc;

    mrc = mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_COUNTERS), &cur);
    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char day[11], name[RF_COUNTER_NAME_MAX];

        if (k.mv_size <= tlen + 1 || memcmp(k.mv_data, tenant, tlen) != 0 ||
            ((unsigned char *)k.mv_data)[tlen] != 0) {
            break;
        }
        if (v.mv_size == 8 && split_key(&k, tlen, day, name) == 0) {
            rc = fn(day, name, rf_store_get_be64(v.mv_data), arg);
        }
    }
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = rf_store_rc(mrc);
    }
    return rc;
}

/* --- batching on the loop ------------------------------------------------ */

struct pending {
    char tenant[RF_TENANT_ID_MAX + 1];
    char day[11];
    char name[RF_COUNTER_NAME_MAX];
    uint64_t n;
};

struct flush_job {
    struct rf_write_job job; /* first: the writer hands this back */
    struct rf_counters *c;
    struct pending *v;
    size_t n;
};

struct rf_counters {
    uv_timer_t timer;
    struct rf_store *st;
    struct rf_writer *w;
    struct pending *v; /* RF_COUNTERS_PENDING_MAX slots */
    size_t n;
    unsigned long dropped;
    unsigned inflight; /* flushes handed to the writer */
    int stopped;       /* rf_counters_stop() was called */
    int closed;        /* the timer closed: free after the last flush */
};

static void maybe_free(struct rf_counters *c)
{
    if (c->closed && c->inflight == 0) {
        free(c->v);
        free(c);
    }
}

/* Adds n to the pending key; 0, or -1 when the table is full. */
static int add_pending(struct rf_counters *c, const char *tenant,
                       const char *day, const char *name, uint64_t n)
{
    struct pending *p;

    for (size_t i = 0; i < c->n; i++) {
        p = &c->v[i];
        if (strcmp(p->day, day) == 0 && strcmp(p->name, name) == 0 &&
            strcmp(p->tenant, tenant) == 0) {
            p->n += n;
            return 0;
        }
    }
    if (c->n == RF_COUNTERS_PENDING_MAX) {
        return -1;
    }
    p = &c->v[c->n++];
    snprintf(p->tenant, sizeof(p->tenant), "%s", tenant);
    memcpy(p->day, day, sizeof(p->day));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->n = n;
    return 0;
}

static int run_flush(MDB_txn *txn, struct rf_write_job *job)
{
    struct flush_job *f = (struct flush_job *)job;
    int rc = 0;

    for (size_t i = 0; i < f->n && rc == 0; i++) {
        rc = rf_counter_add(txn, f->c->st, f->v[i].tenant, f->v[i].day,
                            f->v[i].name, f->v[i].n);
    }
    return rc;
}

static void on_flushed(struct rf_write_job *job)
{
    struct flush_job *f = (struct flush_job *)job;
    struct rf_counters *c = f->c;

    c->inflight--;
    if (job->rc != 0 && c->stopped) {
        rf_log_error("counters", RF_NOF,
                     "cannot store %zu counters while stopping: %s", f->n,
                     rf_strerror(job->rc));
    } else if (job->rc != 0) {
        rf_log_warn("counters", RF_NOF,
                    "cannot store %zu counters, retrying in a second: %s", f->n,
                    rf_strerror(job->rc));
        for (size_t i = 0; i < f->n; i++) {
            if (add_pending(c, f->v[i].tenant, f->v[i].day, f->v[i].name,
                            f->v[i].n) != 0) {
                c->dropped += (unsigned long)f->v[i].n;
            }
        }
    }
    free(f->v);
    free(f);
    maybe_free(c);
}

/* Hands what is pending to the writer in one job. */
static void flush(struct rf_counters *c)
{
    struct flush_job *f;

    if (c->n == 0) {
        return;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return; /* kept pending; the next tick tries again */
    }
    f->v = c->v;
    f->n = c->n;
    c->v = calloc(RF_COUNTERS_PENDING_MAX, sizeof(*c->v));
    if (c->v == NULL) {
        c->v = f->v; /* keep the counts; try again next tick */
        free(f);
        return;
    }
    c->n = 0;
    f->c = c;
    f->job.run = run_flush;
    f->job.done = on_flushed;
    c->inflight++;
    rf_writer_submit(c->w, &f->job);
}

static void on_tick(uv_timer_t *t)
{
    flush(t->data);
}

struct rf_counters *rf_counters_start(uv_loop_t *loop, struct rf_store *st,
                                      struct rf_writer *w)
{
    struct rf_counters *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->v = calloc(RF_COUNTERS_PENDING_MAX, sizeof(*c->v));
    if (c->v == NULL) {
        free(c);
        return NULL;
    }
    c->st = st;
    c->w = w;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_tick, RF_COUNTERS_FLUSH_MS,
                   RF_COUNTERS_FLUSH_MS);
    return c;
}

void rf_counters_bump(struct rf_counters *c, const char *tenant,
                      const char *name, int64_t unix_s)
{
    char day[11];

    rf_day(unix_s, day);
    if (c->stopped || add_pending(c, tenant, day, name, 1) != 0) {
        c->dropped++;
    }
}

unsigned long rf_counters_dropped(const struct rf_counters *c)
{
    return c->dropped;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct rf_counters *c = h->data;

    c->closed = 1;
    maybe_free(c);
}

void rf_counters_stop(struct rf_counters *c)
{
    if (c == NULL) {
        return;
    }
    flush(c);
    c->stopped = 1;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

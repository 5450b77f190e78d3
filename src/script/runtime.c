/* The script engine on its own thread: a mailbox in (uv_async_t on the
 * script loop) and a mailbox out (uv_async_t on the caller's loop). */
#include "referee/runtime.h"
#include "referee/error.h"
#include "referee/log.h"
#include "referee/tenant.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum msg_kind { MSG_CALL, MSG_RELOAD };

struct msg {
    struct msg *next;
    struct rf_runtime *rt;
    enum msg_kind kind;
    char tenant[RF_TENANT_ID_MAX + 1]; /* empty: every tenant (reload) */
    char hook[64];
    char event[40];
    char *input;
    size_t len;
    rf_runtime_reply_cb reply;
    void *arg;
    int rc; /* the outcome, filled on the script thread */
    char *error;
    char *json;
    char version[17];
};

struct queue {
    struct msg *head, *tail;
};

struct rf_runtime {
    uv_async_t reply_async; /* first: on the caller's loop */
    uv_loop_t loop;         /* the script thread's */
    uv_async_t in_async;
    pthread_t thread;
    struct rf_engine *engine;
    struct rf_engine_opts opts;
    struct rf_runtime_part part;
    void *part_state;
    const char *tenants_dir;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct queue in, out; /* guarded by mu */
    int started, stopping; /* guarded by mu */
    size_t pending;        /* caller's thread */
    struct queue reloads;  /* script thread: waiting for the loader */
    struct reload *loading; /* script thread: the load under way */
};

/* One tenant of a reload, loaded on a worker thread. */
struct loaded_one {
    char id[RF_TENANT_ID_MAX + 1];
    char dir[4096];
    int gone; /* its folder is gone */
    int rc;
    struct rf_engine_loaded *v;
    char err[2048];
};

/* A reload under way: runtime messages wait for it one at a time. Its
 * tenants load one per worker round, each switched to before the next
 * loads, so a reload of all holds one spare version at a time. */
struct reload {
    uv_work_t work;
    struct rf_runtime *rt;
    struct msg *m;
    struct loaded_one *items;
    size_t n, next; /* items[next] is the one loading */
    int listed;     /* items holds the tenants to load */
    int rc;         /* a single tenant's outcome */
};

static void push(struct queue *q, struct msg *m)
{
    m->next = NULL;
    if (q->tail) {
        q->tail->next = m;
    } else {
        q->head = m;
    }
    q->tail = m;
}

static struct msg *take_all(struct queue *q)
{
    struct msg *m = q->head;

    q->head = q->tail = NULL;
    return m;
}

static void free_msg(struct msg *m)
{
    free(m->input);
    free(m->error);
    free(m->json);
    free(m);
}

/* --- the script thread -------------------------------------------------- */

/* Hands a finished message back to the caller's loop. */
static void send_back(struct msg *m)
{
    struct rf_runtime *rt = m->rt;

    pthread_mutex_lock(&rt->mu);
    push(&rt->out, m);
    pthread_mutex_unlock(&rt->mu);
    uv_async_send(&rt->reply_async);
}

static void on_engine_done(const struct rf_hook_result *res, void *arg)
{
    struct msg *m = arg;

    m->rc = res->rc;
    m->error = res->error ? strdup(res->error) : NULL;
    m->json = res->json ? strdup(res->json) : NULL;
    snprintf(m->version, sizeof(m->version), "%s", res->version);
    send_back(m);
}

/* --- reloads ------------------------------------------------------------
 *
 * Loading runs tenant.lua, for up to its CPU budget and twice (the limits
 * first), which on this thread would hold every other tenant's hooks. So
 * a reload is loaded on a libuv worker (rf_engine_prepare(), which touches
 * nothing the engine serves from) and switched to here
 * (rf_engine_take()); reloads wait for each other, so they end in the
 * order they were asked for. Calls meanwhile run on the old version. */

static void start_reload(struct rf_runtime *rt);

static int add_item(struct reload *r, const char *base, const char *id)
{
    struct loaded_one *it;

    if ((r->n & (r->n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
        void *p = realloc(r->items, (r->n ? r->n * 2 : 1) * sizeof(*it));

        if (p == NULL) {
            return RF_ENOMEM;
        }
        r->items = p;
    }
    it = &r->items[r->n++];
    memset(it, 0, sizeof(*it));
    snprintf(it->id, sizeof(it->id), "%s", id);
    snprintf(it->dir, sizeof(it->dir), "%s/%s", base, id);
    return 0;
}

/* Lists the tenants a reload covers: the one asked for, or every folder. */
static void list_items(struct reload *r)
{
    const char *base = r->rt->tenants_dir;

    r->listed = 1;
    if (r->m->tenant[0] != '\0') {
        (void)add_item(r, base, r->m->tenant);
    } else {
        DIR *d = opendir(base);
        struct dirent *ent;

        while (d && (ent = readdir(d)) != NULL) {
            if (rf_tenant_id_valid(ent->d_name, strlen(ent->d_name)) &&
                rf_tenant_folder_exists(base, ent->d_name) &&
                add_item(r, base, ent->d_name) != 0) {
                break;
            }
        }
        if (d) {
            closedir(d);
        }
    }
}

/* Worker thread: lists the tenants (first round), then loads one. */
static void load_work(uv_work_t *w)
{
    struct reload *r = w->data;
    struct loaded_one *it;

    if (!r->listed) {
        list_items(r);
    }
    if (r->next >= r->n) {
        return;
    }
    it = &r->items[r->next];
    it->gone = !rf_tenant_folder_exists(r->rt->tenants_dir, it->id);
    if (!it->gone) {
        /* The runtime's copy of the options: the engine may be freed by a
         * stop while this runs. */
        it->rc = rf_engine_prepare(&r->rt->opts.env, it->dir, it->id, &it->v,
                                   it->err, sizeof(it->err));
        if (it->rc != 0 && it->err[0] == '\0') {
            snprintf(it->err, sizeof(it->err), "%.1024s: %s", it->dir,
                     rf_strerror(it->rc));
        }
    }
}

/* Script thread: switches one tenant. A single tenant's failure is the
 * caller's to report (daemon.c warns that hooks and webhooks differ). */
static int take_one(struct rf_runtime *rt, struct loaded_one *it, int all)
{
    int rc;

    if (it->gone) {
        rf_engine_unload(rt->engine, it->id); /* the folder was removed */
        return 0;
    }
    if (it->rc != 0 && all) {
        rf_engine_note_failure(rt->engine, it->id, it->err);
    }
    rc = rf_engine_take(rt->engine, it->dir, it->id, it->rc ? NULL : it->v);
    it->v = NULL;
    return it->rc ? it->rc : rc;
}

static void load_done(uv_work_t *w, int status)
{
    struct reload *r = w->data;
    struct rf_runtime *rt = r->rt;
    struct msg *m = r->m;
    int all = m->tenant[0] == '\0';

    (void)status;
    if (rt->engine != NULL && r->next < r->n) {
        r->rc = take_one(rt, &r->items[r->next], all);
        if (++r->next < r->n) {
            (void)uv_queue_work(&rt->loop, &r->work, load_work, load_done);
            return; /* the next tenant */
        }
    }
    rt->loading = NULL;
    if (rt->engine == NULL) { /* stopped meanwhile */
        m->rc = RF_ESTOPPING;
    } else if (!all && r->n == 0) {
        m->rc = RF_ENOMEM;
    } else if (all) {
        m->rc = 0;
        rf_engine_forget_gone(rt->engine, rt->tenants_dir);
    } else {
        m->rc = r->rc;
        if (m->rc != 0) {
            m->error = strdup(r->items[0].err);
        } else if (!r->items[0].gone) {
            snprintf(m->version, sizeof(m->version), "%s",
                     rf_engine_tenant(rt->engine, m->tenant)->version);
        }
    }
    for (size_t i = 0; i < r->n; i++) {
        rf_engine_loaded_free(r->items[i].v);
    }
    free(r->items);
    free(r);
    if (rt->engine != NULL && rt->part.reloaded && m->rc == 0) {
        rt->part.reloaded(rt->part_state, all ? NULL : m->tenant);
    }
    send_back(m);
    start_reload(rt);
}

static void start_reload(struct rf_runtime *rt)
{
    struct reload *r;
    struct msg *m = rt->reloads.head;

    if (rt->loading != NULL || m == NULL) {
        return;
    }
    rt->reloads.head = m->next;
    if (rt->reloads.head == NULL) {
        rt->reloads.tail = NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL || rt->engine == NULL) {
        free(r);
        m->rc = rt->engine == NULL ? RF_ESTOPPING : RF_ENOMEM;
        send_back(m);
        start_reload(rt);
        return;
    }
    r->rt = rt;
    r->m = m;
    r->work.data = r;
    rt->loading = r;
    /* Fails only without a work callback. */
    (void)uv_queue_work(&rt->loop, &r->work, load_work, load_done);
}

static void do_reload(struct rf_runtime *rt, struct msg *m)
{
    push(&rt->reloads, m);
    start_reload(rt);
}

static void on_in(uv_async_t *h)
{
    struct rf_runtime *rt = h->data;
    struct msg *m, *next;
    int stopping;

    pthread_mutex_lock(&rt->mu);
    m = take_all(&rt->in);
    stopping = rt->stopping;
    pthread_mutex_unlock(&rt->mu);
    for (; m; m = next) {
        next = m->next;
        if (m->kind == MSG_RELOAD) {
            do_reload(rt, m);
        } else if (rf_engine_call(rt->engine, m->tenant, m->hook, m->input,
                                  m->len, m->event, on_engine_done,
                                  m) != 0) {
            m->rc = RF_ENOMEM;
            send_back(m);
        }
    }
    if (stopping) {
        if (rt->part.stop) {
            rt->part.stop(rt->part_state);
        }
        rf_engine_free(rt->engine); /* answers the calls in flight */
        rt->engine = NULL;
        uv_close((uv_handle_t *)&rt->in_async, NULL);
    }
}

static void *script_main(void *arg)
{
    struct rf_runtime *rt = arg;
    size_t n;

    (void)pthread_setname_np(pthread_self(), "referee-script");
    rt->opts.loop = &rt->loop;
    rt->engine = rf_engine_new(&rt->opts);
    n = rt->engine ? rf_engine_load_dir(rt->engine, rt->tenants_dir) : 0;
    rf_log_info("script", RF_F("dir", rt->tenants_dir),
                "script thread ready with %zu tenants", n);
    if (rt->engine && rt->part.start) {
        rt->part_state = rt->part.start(rt->engine, &rt->loop, rt->part.arg);
    }
    pthread_mutex_lock(&rt->mu);
    rt->started = rt->engine ? 1 : -1;
    pthread_cond_signal(&rt->cv);
    pthread_mutex_unlock(&rt->mu);
    if (rt->engine) {
        uv_run(&rt->loop, UV_RUN_DEFAULT);
    }
    return NULL;
}

/* --- the caller's side -------------------------------------------------- */

static void on_reply(uv_async_t *h)
{
    struct rf_runtime *rt = (struct rf_runtime *)h;
    struct msg *m, *next;

    pthread_mutex_lock(&rt->mu);
    m = take_all(&rt->out);
    pthread_mutex_unlock(&rt->mu);
    for (; m; m = next) {
        struct rf_hook_result res = {m->rc, m->error,
                                     m->json ? m->json : "null", m->version,
                                     NULL};

        next = m->next;
        rt->pending--;
        if (m->reply) {
            m->reply(&res, m->arg);
        }
        free_msg(m);
    }
}

static void free_runtime(struct rf_runtime *rt)
{
    uv_loop_close(&rt->loop);
    pthread_mutex_destroy(&rt->mu);
    pthread_cond_destroy(&rt->cv);
    free(rt);
}

static void on_reply_closed(uv_handle_t *h)
{
    free_runtime((struct rf_runtime *)h);
}

struct rf_runtime *rf_runtime_start(uv_loop_t *loop,
                                    const struct rf_engine_opts *opts,
                                    const char *tenants_dir,
                                    const struct rf_runtime_part *part)
{
    struct rf_runtime *rt = calloc(1, sizeof(*rt));

    if (rt == NULL) {
        return NULL;
    }
    rt->opts = *opts;
    if (part) {
        rt->part = *part;
    }
    rt->tenants_dir = tenants_dir;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->cv, NULL);
    uv_loop_init(&rt->loop);
    uv_async_init(&rt->loop, &rt->in_async, on_in);
    rt->in_async.data = rt;
    uv_async_init(loop, &rt->reply_async, on_reply);
    if (pthread_create(&rt->thread, NULL, script_main, rt) != 0) {
        uv_close((uv_handle_t *)&rt->in_async, NULL);
        uv_run(&rt->loop, UV_RUN_DEFAULT);
        uv_close((uv_handle_t *)&rt->reply_async, on_reply_closed);
        return NULL;
    }
    return rt;
}

int rf_runtime_ready(struct rf_runtime *rt)
{
    int started;

    pthread_mutex_lock(&rt->mu);
    while (rt->started == 0) {
        pthread_cond_wait(&rt->cv, &rt->mu);
    }
    started = rt->started;
    pthread_mutex_unlock(&rt->mu);
    return started > 0 ? 0 : RF_ENOMEM;
}

static int post(struct rf_runtime *rt, struct msg *m)
{
    pthread_mutex_lock(&rt->mu);
    push(&rt->in, m);
    pthread_mutex_unlock(&rt->mu);
    rt->pending++;
    uv_async_send(&rt->in_async);
    return 0;
}

int rf_runtime_call(struct rf_runtime *rt, const char *tenant,
                    const char *hook, const char *input, size_t len,
                    const char *event, rf_runtime_reply_cb reply, void *arg)
{
    struct msg *m = calloc(1, sizeof(*m));

    if (m == NULL || (len > 0 && (m->input = malloc(len)) == NULL)) {
        free(m);
        return RF_ENOMEM;
    }
    memcpy(m->input, input, len);
    m->len = len;
    m->rt = rt;
    m->kind = MSG_CALL;
    m->reply = reply;
    m->arg = arg;
    snprintf(m->tenant, sizeof(m->tenant), "%s", tenant);
    snprintf(m->hook, sizeof(m->hook), "%s", hook);
    snprintf(m->event, sizeof(m->event), "%s", event ? event : "");
    return post(rt, m);
}

int rf_runtime_reload(struct rf_runtime *rt, const char *tenant,
                      rf_runtime_reply_cb reply, void *arg)
{
    struct msg *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return RF_ENOMEM;
    }
    m->rt = rt;
    m->kind = MSG_RELOAD;
    m->reply = reply;
    m->arg = arg;
    snprintf(m->tenant, sizeof(m->tenant), "%s", tenant ? tenant : "");
    return post(rt, m);
}

void *rf_runtime_part_state(struct rf_runtime *rt)
{
    return rf_runtime_ready(rt) == 0 ? rt->part_state : NULL;
}

size_t rf_runtime_pending(const struct rf_runtime *rt)
{
    return rt->pending;
}

void rf_runtime_stop(struct rf_runtime *rt)
{
    if (rt == NULL) {
        return;
    }
    pthread_mutex_lock(&rt->mu);
    rt->stopping = 1;
    pthread_mutex_unlock(&rt->mu);
    if (rf_runtime_ready(rt) == 0) {
        uv_async_send(&rt->in_async);
        pthread_join(rt->thread, NULL);
    } else {
        pthread_join(rt->thread, NULL); /* it never ran its loop */
        uv_close((uv_handle_t *)&rt->in_async, NULL);
        uv_run(&rt->loop, UV_RUN_DEFAULT);
    }
    on_reply(&rt->reply_async); /* the replies of the last calls */
    uv_close((uv_handle_t *)&rt->reply_async, on_reply_closed);
}

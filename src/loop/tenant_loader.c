/* Tenant loads off the loop thread: a queue of loads and one uv_work_t. */
#include "referee/tenant_loader.h"
#include "referee/error.h"

#include <stdlib.h>
#include <string.h>

struct pending {
    struct pending *next;
    char *id; /* NULL: every tenant */
};

struct rf_tenant_loader {
    uv_loop_t *loop;
    const char *dir;
    const struct rf_tenant_env *env;
    struct rf_tenants **ts;
    rf_tenant_loaded_cb cb;
    void *arg;
    struct pending *head, *tail;
    int stopped;
    /* The load under way. */
    uv_work_t work;
    int busy;
    char *id;                      /* NULL: every tenant */
    struct rf_tenant_loaded one;   /* result of a single load */
    struct rf_tenants *all;        /* result of a full reload */
    const struct rf_tenants *prev; /* what a full reload reads for logs */
    int all_rc;
};

static void drop_pending(struct rf_tenant_loader *l)
{
    while (l->head) {
        struct pending *p = l->head;

        l->head = p->next;
        free(p->id);
        free(p);
    }
    l->tail = NULL;
}

/* Worker thread: loads; touches nothing the loop uses but `prev`, which
 * the loop leaves alone while a load is under way (only this loader
 * replaces the registry, and only in after_work). */
static void do_work(uv_work_t *w)
{
    struct rf_tenant_loader *l = w->data;

    if (l->id != NULL) {
        rf_tenant_reload_prepare(l->dir, l->id, l->env, &l->one);
    } else {
        l->all_rc = rf_tenants_reload_prepare(l->dir, l->env, l->prev, &l->all);
    }
}

static void start_next(struct rf_tenant_loader *l);

static void after_work(uv_work_t *w, int status)
{
    struct rf_tenant_loader *l = w->data;
    char *id = l->id;

    (void)status; /* never cancelled: a queued load runs to its end */
    l->busy = 0;
    l->id = NULL;
    if (l->stopped) {
        rf_tenant_free(l->one.t);
        rf_tenants_free(l->all);
        free(id);
        free(l);
        return;
    }
    if (id != NULL) {
        int rc = rf_tenants_reload_finish_one(*l->ts, l->dir, id, &l->one);

        l->cb(l->arg, id, rc, l->one.err);
    } else if (l->all_rc == 0) {
        rf_tenants_reload_finish(l->ts, l->all);
        l->cb(l->arg, NULL, 0, "");
    } else {
        l->cb(l->arg, NULL, l->all_rc, rf_strerror(l->all_rc));
    }
    l->all = NULL;
    l->one.t = NULL;
    free(id);
    start_next(l);
}

static void start_next(struct rf_tenant_loader *l)
{
    struct pending *p = l->head;

    if (l->busy || p == NULL) {
        return;
    }
    l->head = p->next;
    if (l->head == NULL) {
        l->tail = NULL;
    }
    l->id = p->id;
    free(p);
    l->prev = *l->ts;
    l->all = NULL;
    l->all_rc = 0;
    memset(&l->one, 0, sizeof(l->one));
    l->work.data = l;
    l->busy = 1;
    /* Fails only without a work callback. */
    (void)uv_queue_work(l->loop, &l->work, do_work, after_work);
}

static void enqueue(struct rf_tenant_loader *l, const char *id)
{
    struct pending *p;

    if (l == NULL || l->stopped) {
        return;
    }
    if (id == NULL) {
        drop_pending(l); /* a full reload covers every single one */
    }
    for (p = l->head; p; p = p->next) {
        if (p->id == NULL || (id != NULL && strcmp(p->id, id) == 0)) {
            start_next(l);
            return; /* already waiting, or covered by a full reload */
        }
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || (id != NULL && (p->id = strdup(id)) == NULL)) {
        free(p);
        return;
    }
    if (l->tail) {
        l->tail->next = p;
    } else {
        l->head = p;
    }
    l->tail = p;
    start_next(l);
}

struct rf_tenant_loader *rf_tenant_loader_new(uv_loop_t *loop, const char *dir,
                                              const struct rf_tenant_env *env,
                                              struct rf_tenants **ts,
                                              rf_tenant_loaded_cb cb, void *arg)
{
    struct rf_tenant_loader *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        return NULL;
    }
    l->loop = loop;
    l->dir = dir;
    l->env = env;
    l->ts = ts;
    l->cb = cb;
    l->arg = arg;
    return l;
}

void rf_tenant_loader_one(struct rf_tenant_loader *l, const char *id)
{
    enqueue(l, id);
}

void rf_tenant_loader_all(struct rf_tenant_loader *l)
{
    enqueue(l, NULL);
}

void rf_tenant_loader_stop(struct rf_tenant_loader *l)
{
    if (l == NULL) {
        return;
    }
    l->stopped = 1;
    drop_pending(l);
    if (!l->busy) {
        free(l);
    }
}

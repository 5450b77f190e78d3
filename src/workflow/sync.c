/* The Zoho sync on the script thread: a state per tenant, the polls and
 * their schedule, start and stop, the figures operators see. Hooks over
 * records are in sync_work.c, fetching by id and the Watch channel in
 * sync_notify.c. */
#include "sync_internal.h"

int64_t rf__sync_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct tsync *rf__sync_find(struct rf_sync *s, const char *tenant)
{
    struct tsync *t = s->tenants;

    while (t && strcmp(t->tenant, tenant) != 0) {
        t = t->next;
    }
    return t;
}

uint64_t rf__sync_fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    }
    return (h ^ 0xff) * 1099511628211u;
}

struct seen *rf__sync_seen_slot(struct tsync *ts, uint64_t rec)
{
    if (ts->seen == NULL) {
        ts->seen = calloc(SEEN_SLOTS, sizeof(*ts->seen));
    }
    return ts->seen ? &ts->seen[rec % SEEN_SLOTS] : NULL;
}

const struct rf_tenant_zoho *rf__sync_zoho_settings(struct rf_sync *s,
                                                  const char *tenant)
{
    const struct rf_tenant *t = rf_engine_tenant(s->e, tenant);

    return t ? t->zoho : NULL;
}

int rf__sync_has_hook(struct rf_sync *s, const char *tenant, enum rf_hook h)
{
    const struct rf_tenant *t = rf_engine_tenant(s->e, tenant);

    return t && (t->hooks & (1u << h)) != 0;
}


/* --- polling ------------------------------------------------------------ */

/* Whether the comma-separated list has `name`. */
static int has_field(const char *list, const char *name, size_t len)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");

        if (n == len && strncmp(p, name, len) == 0) {
            return 1;
        }
        p += n + (p[n] == ',');
    }
    return 0;
}

/* The fields read from a module: the tenant's, and for Leads what lead
 * conversion needs. Returns buf. */
const char *rf__sync_module_fields(const char *module, const char *fields,
                                 char *buf, size_t n)
{
    const char *extra = RF_MILESTONE_LEAD_FIELDS;
    size_t len = (size_t)snprintf(buf, n, "%s", fields);

    if (strcmp(module, "Leads") != 0) {
        return buf;
    }
    for (const char *p = extra; *p && len < n;) {
        size_t k = strcspn(p, ",");

        if (!has_field(fields, p, k)) {
            len += (size_t)snprintf(buf + len, n - len, ",%.*s", (int)k, p);
        }
        p += k + (p[k] == ',');
    }
    return buf;
}

const char *rf__sync_converted_of(const char *module)
{
    return strcmp(module, "Leads") == 0 ? "both" : NULL;
}

struct poll_ctx {
    struct tsync *ts;
    char module[64];
};

static void on_batch(struct rf_zoho_batch *b, void *arg)
{
    struct poll_ctx *pc = arg;
    struct work *w = rf__sync_work_new(pc->ts, pc->module);

    if (w == NULL) {
        rf_zoho_batch_done(b, RF_ENOMEM, 0);
        return;
    }
    w->batch = b;
    w->records = rf_zoho_batch_records(b);
    rf__sync_start_work(pc->ts, w);
}


static void on_poll_done(int rc, const char *error,
                         const struct rf_zoho_poll_stats *st, void *arg)
{
    struct poll_ctx *pc = arg;
    struct tsync *ts = pc->ts;

    ts->polling--;
    if (rc == 0) {
        ts->st.polls++;
        ts->st.last_poll_ms = rf__sync_now_ms();
        if (st->records > 0) {
            rf_log_info("sync",
                        RF_F("tenant", ts->tenant, "module", pc->module),
                        "caught up: %zu records in %zu batches, %u calls",
                        st->records, st->batches, st->calls);
        }
    } else if (rc != RF_ESTOPPING) {
        ts->st.poll_failures++;
        snprintf(ts->st.last_error, sizeof(ts->st.last_error), "%s: %s",
                 pc->module, error ? error : rf_strerror(rc));
        rf_log_warn("sync", RF_F("tenant", ts->tenant, "module", pc->module),
                    "poll failed: %s", error ? error : rf_strerror(rc));
    }
    free(pc);
    if (ts->polling == 0 && !ts->s->stopping && !ts->gone) {
        const struct rf_tenant_zoho *zs =
            rf__sync_zoho_settings(ts->s, ts->tenant);
        uint64_t next = zs ? (uint64_t)zs->poll_every_s * 1000 : 0;

        if (zs != NULL && zs->notify_url != NULL && ts->channel == 0) {
            rf__sync_follow_channel(ts, zs); /* a failed subscription, again */
            next = next < CHANNEL_RETRY_MS ? next : CHANNEL_RETRY_MS;
        }
        if (ts->may_retry) {
            rf__sync_rerun_failed(ts);
        }
        rf__sync_schedule(ts, next);
    }
}

static void poll_all(struct tsync *ts)
{
    struct rf_sync *s = ts->s;
    const struct rf_tenant_zoho *zs = rf__sync_zoho_settings(s, ts->tenant);
    struct rf_zoho *z = rf_engine_zoho(s->e, ts->tenant);

    if (zs == NULL || z == NULL || ts->polling > 0) {
        return;
    }
    for (size_t i = 0; i < zs->nmodules; i++) {
        struct poll_ctx *pc = calloc(1, sizeof(*pc));
        struct rf_zoho_poll_opts o = {0};
        char fields[4200];
        int rc;

        if (pc == NULL) {
            break;
        }
        pc->ts = ts;
        snprintf(pc->module, sizeof(pc->module), "%s", zs->modules[i].name);
        o.module = zs->modules[i].name;
        o.fields = rf__sync_module_fields(o.module, zs->modules[i].fields,
                                          fields, sizeof(fields));
        o.converted = rf__sync_converted_of(o.module);
        o.on_batch = on_batch;
        o.on_done = on_poll_done;
        o.arg = pc;
        ts->polling++;
        rc = rf_zoho_poll(z, &o);
        if (rc != 0) {
            ts->polling--;
            free(pc);
            if (rc != RF_EBUSY) {
                ts->st.poll_failures++;
                snprintf(ts->st.last_error, sizeof(ts->st.last_error),
                         "%s: cannot poll: %s", zs->modules[i].name,
                         rf_strerror(rc));
            }
        }
    }
    if (ts->polling == 0) {
        rf__sync_schedule(ts, (uint64_t)zs->poll_every_s * 1000);
    }
}

static void on_timer(uv_timer_t *t)
{
    poll_all(t->data);
}

void rf__sync_schedule(struct tsync *ts, uint64_t ms)
{
    if (!ts->closing && ms > 0) {
        uv_timer_start(&ts->timer, on_timer, ms, 0);
    }
}


/* --- tenants ------------------------------------------------------------ */

static void on_tsync_closed(uv_handle_t *h)
{
    struct tsync *ts = h->data;

    free(ts->seen);
    free(ts);
}

static void tsync_close(struct tsync *ts)
{
    ts->closing = 1;
    uv_timer_stop(&ts->timer);
    uv_close((uv_handle_t *)&ts->timer, on_tsync_closed);
}

static void follow(const char *tenant, void *arg)
{
    struct rf_sync *s = arg;
    const struct rf_tenant_zoho *zs = rf__sync_zoho_settings(s, tenant);
    struct tsync *ts = rf__sync_find(s, tenant);

    if (zs == NULL || zs->nmodules == 0) {
        if (ts) {
            ts->gone = 1;
            uv_timer_stop(&ts->timer);
        }
        return;
    }
    if (ts == NULL) {
        ts = calloc(1, sizeof(*ts));
        if (ts == NULL) {
            return;
        }
        ts->s = s;
        snprintf(ts->tenant, sizeof(ts->tenant), "%s", tenant);
        snprintf(ts->st.tenant, sizeof(ts->st.tenant), "%s", tenant);
        uv_timer_init(s->loop, &ts->timer);
        ts->timer.data = ts;
        ts->next = s->tenants;
        s->tenants = ts;
    }
    ts->gone = 0;
    if (ts->polling == 0) {
        rf__sync_schedule(ts, FIRST_POLL_MS);
    }
    rf__sync_follow_channel(ts, zs);
    rf__sync_rerun_failed(ts);
}

static void refresh_stats(uv_timer_t *timer)
{
    struct rf_sync *s = timer->data;
    size_t n = 0, i = 0;
    struct rf_sync_tenant_stats *snap;

    for (struct tsync *ts = s->tenants; ts; ts = ts->next) {
        n++;
    }
    snap = calloc(n ? n : 1, sizeof(*snap));
    if (snap == NULL) {
        return;
    }
    for (struct tsync *ts = s->tenants; ts; ts = ts->next, i++) {
        struct rf_zoho *z = rf_engine_zoho(s->e, ts->tenant);

        if (z != NULL) {
            struct rf_zoho_stats zs;

            rf_zoho_stats(z, &zs);
            ts->st.credits_used = zs.credits_used;
            ts->st.credits_budget = zs.credits_budget;
            ts->st.concurrency = zs.concurrency;
        }
        ts->st.busy = (uint64_t)ts->polling + (uint64_t)ts->inflight;
        snap[i] = ts->st;
    }
    pthread_mutex_lock(&s->mu);
    free(s->snap);
    s->snap = snap;
    s->nsnap = n;
    pthread_mutex_unlock(&s->mu);
}

void *rf_sync_start(struct rf_engine *e, uv_loop_t *loop, void *arg)
{
    struct rf_sync *s = calloc(1, sizeof(*s));

    (void)arg;
    if (s == NULL) {
        return NULL;
    }
    s->e = e;
    s->loop = loop;
    s->store = rf_engine_store(e);
    s->writer = rf_engine_writer(e);
    pthread_mutex_init(&s->mu, NULL);
    uv_timer_init(loop, &s->stats_timer);
    s->stats_timer.data = s;
    uv_timer_start(&s->stats_timer, refresh_stats, STATS_MS, STATS_MS);
    uv_unref((uv_handle_t *)&s->stats_timer);
    if (s->store == NULL || s->writer == NULL ||
        rf_engine_native(e, RF_SYNC_NOTIFY_HOOK, rf__sync_on_notify, s) != 0) {
        rf_log_error("sync", RF_NOF, "the Zoho sync cannot start");
        return s;
    }
    rf_engine_each(e, follow, s);
    return s;
}

void rf_sync_reloaded(void *sync, const char *tenant)
{
    struct rf_sync *s = sync;

    if (s == NULL || s->store == NULL || s->writer == NULL) {
        return;
    }
    if (tenant == NULL) {
        rf_engine_each(s->e, follow, s);
    } else {
        follow(tenant, s);
    }
}

void rf_sync_poll_now(struct rf_sync *s, const char *tenant)
{
    struct tsync *ts = rf__sync_find(s, tenant);

    if (ts != NULL && !ts->gone) {
        poll_all(ts);
    }
}

size_t rf_sync_stats(struct rf_sync *s, struct rf_sync_tenant_stats *out,
                     size_t max)
{
    size_t n;

    pthread_mutex_lock(&s->mu);
    n = s->nsnap;
    if (out != NULL) {
        memcpy(out, s->snap, (n < max ? n : max) * sizeof(*out));
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void on_stats_closed(uv_handle_t *h)
{
    struct rf_sync *s = h->data;

    pthread_mutex_destroy(&s->mu);
    free(s->snap);
    free(s);
}

void rf_sync_stop(void *sync)
{
    struct rf_sync *s = sync;
    struct tsync *ts, *next;

    if (s == NULL) {
        return;
    }
    s->stopping = 1;
    for (ts = s->tenants; ts; ts = next) {
        next = ts->next;
        tsync_close(ts);
    }
    s->tenants = NULL;
    uv_timer_stop(&s->stats_timer);
    uv_close((uv_handle_t *)&s->stats_timer, on_stats_closed);
}

/* The daemon's loop: start-up in order, routing, signals, and a graceful
 * stop that finishes in-flight requests and commits before closing. */
#include "referee/daemon.h"
#include "referee/admin.h"
#include "referee/capture.h"
#include "referee/counters.h"
#include "referee/dispatch.h"
#include "referee/error.h"
#include "referee/intake.h"
#include "referee/join.h"
#include "referee/log.h"
#include "referee/redirect.h"
#include "referee/referrers.h"
#include "referee/runtime.h"
#include "referee/store.h"
#include "referee/sync.h"
#include "referee/work.h"
#include "referee/tenant.h"
#include "referee/tenant_loader.h"
#include "referee/watch.h"
#include "referee/writer.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HEARTBEAT_MS 100
#define DRAIN_POLL_MS 20
#define READY_LAG_MS 1000
#define WATCH_QUIET_MS 250

struct daemon {
    uv_loop_t loop;
    const struct rf_config *cfg;
    struct rf_store *store;
    struct rf_writer *writer;
    struct rf_tenants *tenants;
    struct rf_tenant_env tenant_env;
    struct rf_intake intake;
    struct rf_capture capture;
    struct rf_http_server *http;
    struct rf_join join;
    struct rf_counters *counters; /* link visits */
    struct rf_admin *admin;       /* NULL: the admin API is off */
    struct rf_runtime *runtime;
    struct rf_sync *sync; /* on the script thread; stats only from here */
    struct rf_dispatch *dispatch;
    struct rf_watch *watch;
    struct rf_tenant_loader *loader; /* reloads, off the loop */
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t heartbeat, drain;
    uint64_t beat_due;  /* when the heartbeat should fire next */
    uint64_t lag_ms;    /* how late it fired last time */
    uint64_t stop_at;   /* when stopping began */
    int stopping;       /* no new requests; in-flight ones finish */
    int closed;         /* the writer is gone: nothing more is stored */
};

/* --- routing ------------------------------------------------------------ */

/* Splits "/t/{tenant}/hooks/{source}" into its two names. */
static int match_hook(const char *path, const char **t, size_t *tlen,
                      const char **s, size_t *slen)
{
    const char *p;

    if (strncmp(path, "/t/", 3) != 0) {
        return 0;
    }
    *t = path + 3;
    p = strchr(*t, '/');
    if (p == NULL || strncmp(p, "/hooks/", 7) != 0) {
        return 0;
    }
    *tlen = (size_t)(p - *t);
    *s = p + 7;
    *slen = strlen(*s);
    return *tlen > 0 && *slen > 0 && strchr(*s, '/') == NULL;
}

/* Matches "/t/{tenant}<rest>" for a fixed rest. */
static int match_tenant_path(const char *path, const char *rest,
                             const char **t, size_t *tlen)
{
    const char *p;

    if (strncmp(path, "/t/", 3) != 0) {
        return 0;
    }
    *t = path + 3;
    p = strchr(*t, '/');
    *tlen = p ? (size_t)(p - *t) : 0;
    return p != NULL && *tlen > 0 && strcmp(p, rest) == 0;
}

static int match_notify(const char *path, const char **t, size_t *tlen)
{
    return match_tenant_path(path, "/zoho/notify", t, tlen);
}

static int match_referrals(const char *path, const char **t, size_t *tlen)
{
    return match_tenant_path(path, "/referrals", t, tlen);
}

static int match_join(const char *path, const char **t, size_t *tlen)
{
    return match_tenant_path(path, "/join", t, tlen);
}

/* "/r/{code}": the code. */
static int match_link(const char *path, const char **code, size_t *len)
{
    if (strncmp(path, "/r/", 3) != 0) {
        return 0;
    }
    *code = path + 3;
    *len = strlen(*code);
    return 1;
}

static void answer_health(struct daemon *d, struct rf_http_req *req,
                          int ready)
{
    char body[160];
    int n, ok = !d->stopping && d->lag_ms < READY_LAG_MS;

    if (!ready) {
        rf_http_respond_json(req, 200, "{\"status\":\"ok\"}", 15);
        return;
    }
    n = snprintf(body, sizeof(body),
                 "{\"status\":\"%s\",\"store\":\"open\",\"stopping\":%s,"
                 "\"loop_lag_ms\":%llu,\"writes_pending\":%zu}",
                 ok ? "ready" : "not_ready", d->stopping ? "true" : "false",
                 (unsigned long long)d->lag_ms,
                 rf_writer_pending(d->writer));
    rf_http_respond_json(req, ok ? 200 : 503, body, (size_t)n);
}

/* Appends each tenant's Zoho sync figures to the metrics text and
 * answers. */
static void zoho_metrics(struct daemon *d, struct rf_http_req *req,
                         const char *head, size_t hlen)
{
    static const struct {
        const char *name, *type;
        size_t off;
    } series[] = {
#define S(name, type, field)                                                   \
    {name, type, offsetof(struct rf_sync_tenant_stats, field)}
        S("referee_zoho_polls_total", "counter", polls),
        S("referee_zoho_poll_failures_total", "counter", poll_failures),
        S("referee_zoho_records_total", "counter", records),
        S("referee_zoho_enrolled_total", "counter", enrolled),
        S("referee_zoho_hook_failures_total", "counter", hook_failures),
        S("referee_zoho_notifications_total", "counter", notifications),
        S("referee_zoho_credits_used", "gauge", credits_used),
        S("referee_zoho_credits_budget", "gauge", credits_budget),
        S("referee_zoho_busy", "gauge", busy),
#undef S
    };
    size_t n = d->sync ? rf_sync_stats(d->sync, NULL, 0) : 0, len = hlen;
    size_t cap = hlen + 64 + n * 1024 + sizeof(series) / sizeof(series[0]) * 96;
    struct rf_sync_tenant_stats *st = calloc(n ? n : 1, sizeof(*st));
    char *out = malloc(cap);

    if (st == NULL || out == NULL) {
        free(st);
        free(out);
        rf_http_respond(req, 200, "text/plain; version=0.0.4", head, hlen);
        return;
    }
    memcpy(out, head, hlen);
    n = n ? rf_sync_stats(d->sync, st, n) : 0;
    for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++) {
        len += (size_t)snprintf(out + len, cap - len, "# TYPE %s %s\n",
                                series[i].name, series[i].type);
        for (size_t t = 0; t < n && len < cap; t++) {
            uint64_t v;

            memcpy(&v, (const char *)&st[t] + series[i].off, sizeof(v));
            len += (size_t)snprintf(out + len, cap - len,
                                    "%s{tenant=\"%s\"} %llu\n",
                                    series[i].name, st[t].tenant,
                                    (unsigned long long)v);
        }
    }
    rf_http_respond(req, 200, "text/plain; version=0.0.4", out,
                    len < cap ? len : cap - 1);
    free(st);
    free(out);
}

/* Prometheus text exposition of the daemon's counters. */
static void answer_metrics(struct daemon *d, struct rf_http_req *req)
{
    struct rf_dispatch_stats ds = {0};
    unsigned long commits = 0, jobs = 0;
    const struct rf_intake_stats *is = &d->intake.stats;
    char body[2048];
    int n;

    if (d->dispatch) {
        rf_dispatch_stats(d->dispatch, &ds);
    }
    if (d->writer) {
        rf_writer_stats(d->writer, &commits, &jobs);
    }
    n = snprintf(
        body, sizeof(body),
        "# TYPE referee_webhooks_total counter\n"
        "referee_webhooks_total{result=\"accepted\"} %lu\n"
        "referee_webhooks_total{result=\"duplicate\"} %lu\n"
        "referee_webhooks_total{result=\"rejected\"} %lu\n"
        "referee_webhooks_total{result=\"failed\"} %lu\n"
        "# TYPE referee_store_commits_total counter\n"
        "referee_store_commits_total %lu\n"
        "# TYPE referee_store_writes_total counter\n"
        "referee_store_writes_total %lu\n"
        "# TYPE referee_hook_calls_total counter\n"
        "referee_hook_calls_total{result=\"done\"} %lu\n"
        "referee_hook_calls_total{result=\"failed\"} %lu\n"
        "# TYPE referee_hook_queue gauge\n"
        "referee_hook_queue %zu\n"
        "# TYPE referee_tenants gauge\n"
        "referee_tenants %zu\n"
        "# TYPE referee_loop_lag_ms gauge\n"
        "referee_loop_lag_ms %llu\n"
        "# TYPE referee_store_map_bytes gauge\n"
        "referee_store_map_bytes %zu\n",
        is->accepted, is->duplicates, is->rejected, is->failed, commits, jobs,
        ds.done, ds.failed, d->dispatch ? rf_dispatch_pending(d->dispatch) : 0,
        d->tenants ? d->tenants->n : 0, (unsigned long long)d->lag_ms,
        rf_store_map_size(d->store));
    zoho_metrics(d, req, body, (size_t)n);
}

static int is_get(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

static void on_headers(struct rf_http_req *req, void *arg)
{
    struct daemon *d = arg;
    const char *path = rf_http_path(req), *m = rf_http_method(req);
    const char *t, *s;
    size_t tlen, slen;

    if (d->stopping && strcmp(path, "/healthz") != 0) {
        /* A kept-alive client must not hold the stop up with new work. */
        rf_http_add_header(req, "Connection", "close");
        rf_http_respond_error(req, 503, "stopping",
                              "the server is stopping; retry elsewhere or "
                              "later");
        return;
    }
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
        if (!is_get(m)) {
            rf_http_add_header(req, "Allow", "GET, HEAD");
            rf_http_respond_error(req, 405, "method_not_allowed",
                                  "use GET");
            return;
        }
        answer_health(d, req, path[1] == 'r');
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        if (!is_get(m)) {
            rf_http_add_header(req, "Allow", "GET, HEAD");
            rf_http_respond_error(req, 405, "method_not_allowed", "use GET");
            return;
        }
        answer_metrics(d, req);
        return;
    }
    if (match_link(path, &s, &slen)) {
        if (!is_get(m)) {
            rf_http_add_header(req, "Allow", "GET, HEAD");
            rf_http_respond_error(req, 405, "method_not_allowed",
                                  "referral links are followed with GET");
            return;
        }
        rf_redirect_handle(&d->intake, d->counters, req, s, slen);
        return;
    }
    if (match_join(path, &t, &tlen)) {
        if (strcmp(m, "POST") != 0) {
            rf_http_add_header(req, "Allow", "POST");
            rf_http_respond_error(req, 405, "method_not_allowed",
                                  "sign-ups are posted");
        } else if (rf_tenant_find(d->tenants, t, tlen) == NULL) {
            rf_http_respond_error(req, 404, "tenant_not_found",
                                  "no such tenant");
        }
        return;
    }
    if (match_referrals(path, &t, &tlen)) {
        if (strcmp(m, "POST") != 0) {
            rf_http_add_header(req, "Allow", "POST");
            rf_http_respond_error(req, 405, "method_not_allowed",
                                  "referrals are posted");
        } else if (rf_tenant_find(d->tenants, t, tlen) == NULL) {
            rf_http_respond_error(req, 404, "tenant_not_found",
                                  "no such tenant");
        }
        return;
    }
    if (match_notify(path, &t, &tlen)) {
        if (strcmp(m, "POST") != 0) {
            rf_http_add_header(req, "Allow", "POST");
            rf_http_respond_error(req, 405, "method_not_allowed",
                                  "Zoho notifications are delivered with "
                                  "POST");
        } else if (rf_tenant_find(d->tenants, t, tlen) == NULL) {
            rf_http_respond_error(req, 404, "tenant_not_found",
                                  "no such tenant");
        }
        return;
    }
    if (match_hook(path, &t, &tlen, &s, &slen)) {
        if (strcmp(m, "POST") != 0) {
            rf_http_add_header(req, "Allow", "POST");
            rf_http_respond_error(req, 405, "method_not_allowed",
                                  "webhooks are delivered with POST");
        } else if (rf_tenant_find(d->tenants, t, tlen) == NULL) {
            rf_http_respond_error(req, 404, "tenant_not_found",
                                  "no such tenant");
        }
        if (rf_http_answered(req)) {
            d->intake.stats.rejected++; /* as intake counts its refusals */
        }
        return;
    }
    rf_http_respond_error(req, 404, "not_found", "no such endpoint");
}

static void on_request(struct rf_http_req *req, void *arg)
{
    struct daemon *d = arg;
    const char *t, *s;
    size_t tlen, slen;

    if (d->closed) {
        rf_http_add_header(req, "Connection", "close");
        rf_http_respond_error(req, 503, "stopping",
                              "the server stopped before storing this");
        return;
    }
    if (match_notify(rf_http_path(req), &t, &tlen)) {
        rf_intake_handle_zoho(&d->intake, req, t, tlen);
        return;
    }
    if (match_referrals(rf_http_path(req), &t, &tlen)) {
        rf_capture_handle(&d->capture, req, t, tlen);
        return;
    }
    if (match_join(rf_http_path(req), &t, &tlen)) {
        rf_join_handle(&d->join, req, t, tlen);
        return;
    }
    if (match_hook(rf_http_path(req), &t, &tlen, &s, &slen)) {
        rf_intake_handle(&d->intake, req, t, tlen, s, slen);
        return;
    }
    rf_http_respond_error(req, 404, "not_found", "no such endpoint");
}

/* --- tenants the store has seen --------------------------------------- */

static int note_tenants_txn(MDB_txn *txn, void *ctx)
{
    struct daemon *d = ctx;
    struct timespec ts;
    int64_t now;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    for (size_t i = 0; rc == 0 && i < d->tenants->n; i++) {
        rc = rf_store_note_tenant(txn, d->store, d->tenants->v[i].id, now);
    }
    return rc;
}

static int index_emails_txn(MDB_txn *txn, void *ctx)
{
    struct daemon *d = ctx;

    return rf_referrers_index_emails(txn, d->store);
}

/* Records the loaded tenants in the store, for the command line's
 * "unknown tenant" check. A short transaction on the loop thread; LMDB
 * queues it behind the writer thread's commit, if one is running. */
static void note_tenants(struct daemon *d)
{
    int rc = rf_store_write(d->store, note_tenants_txn, d);

    if (rc != 0) {
        rf_log_warn("store", RF_NOF, "cannot record the tenants: %s",
                    rf_strerror(rc));
    }
}

/* --- heartbeat, reload and stop ---------------------------------------- */

static void on_heartbeat(uv_timer_t *t)
{
    struct daemon *d = t->data;
    uint64_t now;

    uv_update_time(t->loop);
    now = uv_now(t->loop);
    d->lag_ms = now > d->beat_due ? now - d->beat_due : 0;
    d->beat_due = now + HEARTBEAT_MS;
}

/* What a reload of the script thread's copy answers to. */
struct reload_ctx {
    struct daemon *d;
    char tenant[RF_TENANT_ID_MAX + 1]; /* empty: every tenant */
};

/* The script thread switched versions (or failed to): run the events that
 * never ran or failed under an older version. */
static void on_runtime_reloaded(const struct rf_hook_result *res, void *arg)
{
    struct reload_ctx *c = arg;
    struct daemon *d = c->d;
    const char *tenant = c->tenant[0] ? c->tenant : NULL;

    if (res->rc != 0 && res->rc != RF_ESTOPPING && tenant != NULL) {
        /* Intake took the new files but the script thread, which loads
         * them on its own, did not (they changed in between, or the
         * script loads differently each time). */
        rf_log_warn("script", RF_F("tenant", tenant),
                    "hooks keep running the previous version while webhooks "
                    "use the new settings: %.*s",
                    (int)strcspn(res->error ? res->error : "", "\n"),
                    res->error ? res->error : "");
    }
    /* Events that never ran, or failed under an older version, of the
     * tenant reloaded (of all after a SIGHUP). */
    if (!d->stopping && d->dispatch && res->rc == 0) {
        (void)rf_dispatch_recover(d->dispatch, tenant);
    }
    free(c);
}

static void reload_runtime(struct daemon *d, const char *tenant)
{
    struct reload_ctx *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        rf_log_error("script", RF_F("tenant", tenant),
                     "out of memory: hooks keep the previous version");
        return;
    }
    c->d = d;
    snprintf(c->tenant, sizeof(c->tenant), "%s", tenant ? tenant : "");
    if (rf_runtime_reload(d->runtime, tenant, on_runtime_reloaded, c) != 0) {
        free(c);
    }
}

/* SIGHUP: every tenant folder again, as the watcher does for one; a
 * tenant whose new files fail keeps its previous version (both here and on
 * the script thread, which keeps its own). */
static void reloaded_all(struct daemon *d, int rc)
{
    if (rc != 0) {
        rf_log_error("tenant", RF_F("dir", d->cfg->tenants_dir),
                     "reload failed, keeping the old tenants: %s",
                     rf_strerror(rc));
        return;
    }
    if (d->tenants->failed == 0) {
        rf_log_info("tenant", RF_NOF, "reloaded %zu tenants", d->tenants->n);
    } else {
        /* each failure has its own line above, saying what it keeps */
        rf_log_warn("tenant", RF_NOF,
                    "reloaded %zu tenants; %zu of them did not load",
                    d->tenants->n, d->tenants->failed);
    }
    note_tenants(d);
    reload_runtime(d, NULL);
}

/* The loader put a tenant (or all of them, id NULL) in the intake's
 * registry: log it and load the script thread's copy too. */
static void on_tenant_loaded(void *arg, const char *id, int rc,
                             const char *err_in)
{
    struct daemon *d = arg;
    char err[2048];

    if (d->stopping) {
        return;
    }
    if (id == NULL) {
        reloaded_all(d, rc);
        return;
    }
    snprintf(err, sizeof(err), "%s", err_in);
    if (rc == RF_ENOTFOUND) {
        rf_log_info("tenant", RF_F("tenant", id),
                    "removed: its folder is gone; its webhooks now get 404 "
                    "tenant_not_found");
        (void)rf_runtime_reload(d->runtime, id, NULL, NULL);
        return;
    }
    if (rc != 0) {
        const struct rf_tenant *t = rf_tenant_find(d->tenants, id,
                                                   strlen(id));

        err[strcspn(err, "\n")] = '\0';
        rf_log_error("tenant", RF_F("tenant", id), "%s: %s",
                     t && !t->error ? "changed files do not load; the "
                                      "previous version keeps serving"
                                    : "changed files do not load; the "
                                      "tenant stays unavailable (503)",
                     err);
        return;
    }
    rf_log_info("tenant", RF_F("tenant", id), "files changed; reloading");
    note_tenants(d);
    reload_runtime(d, id);
}

/* A tenant's files changed: load it again, off the loop (its tenant.lua
 * may run for up to its CPU budget), then on the script thread. */
static void on_tenant_changed(const char *id, void *arg)
{
    struct daemon *d = arg;

    if (!d->stopping) {
        rf_tenant_loader_one(d->loader, id);
    }
}

static void reload_tenants(struct daemon *d)
{
    rf_tenant_loader_all(d->loader);
}

/* Intake committed a new event: run its source's hook, if any. */
static void on_stored(void *arg, const char *tenant, const char *source,
                      uint64_t seq)
{
    struct daemon *d = arg;

    rf_dispatch_event(d->dispatch, tenant, source, seq);
}

/* A referral was accepted: map it onto the CRM on the script thread. */
static void on_captured(void *arg, const char *tenant, uint64_t id)
{
    struct daemon *d = arg;

    rf_dispatch_referral(d->dispatch, tenant, id);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* Everything in flight is done (or the drain time ran out): close. */
static void finish_stop(struct daemon *d)
{
    d->closed = 1; /* from here on_request answers 503 itself */
    uv_timer_stop(&d->drain);
    rf_watch_stop(d->watch);
    d->watch = NULL;
    rf_tenant_loader_stop(d->loader); /* a load under way is thrown away */
    d->loader = NULL;
    d->sync = NULL; /* freed with the script thread */
    rf_runtime_stop(d->runtime); /* hooks in flight end; outcomes queue */
    d->runtime = NULL;
    rf_counters_stop(d->counters); /* its last flush goes to the writer */
    d->counters = NULL;
    rf_writer_stop(d->writer); /* commits what is queued, answers it */
    d->writer = NULL;
    rf_http_server_stop(d->http);
    d->http = NULL;
    rf_admin_stop(d->admin);
    d->admin = NULL;
    rf_dispatch_free(d->dispatch);
    rf_ratelimit_free(d->capture.rl);
    d->capture.rl = NULL;
    rf_ratelimit_free(d->join.rl);
    d->join.rl = NULL;
    d->dispatch = NULL;
    close_handle((uv_handle_t *)&d->sigint);
    close_handle((uv_handle_t *)&d->sigterm);
    close_handle((uv_handle_t *)&d->sighup);
    close_handle((uv_handle_t *)&d->heartbeat);
    close_handle((uv_handle_t *)&d->drain);
}

static void on_drain(uv_timer_t *t)
{
    struct daemon *d = t->data;
    size_t inflight = rf_http_server_inflight(d->http) +
                      rf_admin_inflight(d->admin);
    size_t writes = rf_writer_pending(d->writer);
    size_t hooks = rf_dispatch_pending(d->dispatch);
    size_t pending = writes + hooks;

    if (inflight == 0 && pending == 0) {
        finish_stop(d);
        return;
    }
    if (uv_now(t->loop) - d->stop_at >= d->cfg->drain_ms) {
        rf_log_warn("daemon", RF_NOF,
                    "drain time over with %zu requests, %zu writes and %zu "
                    "hook calls in flight; finishing the writes and "
                    "closing (the hooks' events run at the next start)",
                    inflight, writes, hooks);
        finish_stop(d);
    }
}

static void begin_stop(struct daemon *d, int signum)
{
    if (d->stopping) {
        return;
    }
    d->stopping = 1;
    d->stop_at = uv_now(&d->loop);
    rf_http_server_quiesce(d->http);
    rf_admin_quiesce(d->admin);
    rf_log_info("daemon", RF_F("signal", strsignal(signum)),
                "stopping: no new connections, finishing in-flight work");
    uv_timer_start(&d->drain, on_drain, 0, DRAIN_POLL_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;

    if (signum == SIGHUP) {
        rf_log_info("daemon", RF_NOF, "SIGHUP: reloading tenants");
        reload_tenants(d);
        return;
    }
    begin_stop(d, signum);
}

/* --- start-up ----------------------------------------------------------- */

/* The script thread; it loads its tenants while the main thread loads the
 * intake's registry. */
static int start_runtime(struct daemon *d)
{
    const struct rf_config *cfg = d->cfg;
    struct rf_engine_opts o = {0};
    struct rf_runtime_part part = {rf_work_start, rf_work_reloaded,
                                   rf_work_stop, NULL};

    o.store = d->store;
    o.env = d->tenant_env;
    o.ca_file = cfg->ca_file;
    o.wall_ms = cfg->script_wall_ms;
    d->runtime = rf_runtime_start(&d->loop, &o, cfg->tenants_dir, &part);
    if (d->runtime == NULL) {
        rf_log_error("script", RF_NOF, "cannot start the script thread");
        return RF_ENOMEM;
    }
    return 0;
}

/* The dispatcher and the folder watcher, once the script thread is ready. */
static int start_scripts(struct daemon *d)
{
    const struct rf_config *cfg = d->cfg;

    if (rf_runtime_ready(d->runtime) != 0) {
        rf_log_error("script", RF_NOF, "the script thread failed to start");
        return RF_ENOMEM;
    }
    d->sync = rf_work_sync(rf_runtime_part_state(d->runtime));
    d->dispatch = rf_dispatch_new(&d->loop, d->store, d->writer, d->runtime,
                                  (const struct rf_tenants *const *)&d
                                      ->tenants);
    if (d->dispatch == NULL) {
        return RF_ENOMEM;
    }
    d->loader = rf_tenant_loader_new(&d->loop, cfg->tenants_dir,
                                     &d->tenant_env, &d->tenants,
                                     on_tenant_loaded, d);
    if (d->loader == NULL) {
        return RF_ENOMEM;
    }
    d->watch = rf_watch_start(&d->loop, cfg->tenants_dir, WATCH_QUIET_MS,
                              on_tenant_changed, d);
    (void)rf_dispatch_recover(d->dispatch, NULL);
    return 0;
}

/* The admin API on its own listener, when configured (config.c checked
 * the address and the token). */
static int start_admin(struct daemon *d)
{
    const struct rf_config *cfg = d->cfg;
    char host[64], addr[80];
    unsigned port;

    if (cfg->admin_listen == NULL) {
        return 0;
    }
    (void)rf_config_split_listen(cfg->admin_listen, host, sizeof(host),
                                 &port);
    d->admin = rf_admin_start(&d->loop, d->store,
                              (const struct rf_tenants *const *)&d->tenants,
                              host, port, &cfg->http, cfg->admin_token);
    if (d->admin == NULL) {
        return RF_EIO;
    }
    snprintf(addr, sizeof(addr), "%s:%u", host, rf_admin_port(d->admin));
    rf_log_info("admin", RF_F("addr", addr), "admin API listening");
    return 0;
}

static int start_parts(struct daemon *d)
{
    const struct rf_config *cfg = d->cfg;
    struct rf_http_app app = {on_headers, on_request, d};
    char err[512], host[64];
    unsigned port;
    int rc;

    d->tenant_env.plugin_path = (const char *const *)cfg->plugins;
    d->tenant_env.mem_max = cfg->script_mem;
    d->tenant_env.cpu_ms = cfg->script_cpu_ms;
    d->tenant_env.mem_cap = cfg->script_mem_max;
    d->tenant_env.cpu_ms_cap = cfg->script_cpu_ms_max;
    d->tenant_env.store_cap = cfg->script_store_max;
    d->tenant_env.refuse_private = !cfg->script_allow_private;
    rc = rf_store_open(cfg->data_dir, cfg->sync ? 0 : RF_STORE_NOSYNC,
                       cfg->map_size, &d->store, err, sizeof(err));
    if (rc != 0) {
        rf_log_error("store", RF_F("dir", cfg->data_dir), "%s", err);
        return rc;
    }
    rc = start_runtime(d);
    if (rc != 0) {
        return rc;
    }
    rc = rf_tenants_load(cfg->tenants_dir, &d->tenant_env, &d->tenants);
    if (rc != 0) {
        rf_log_error("tenant", RF_F("dir", cfg->tenants_dir),
                     "cannot read tenants directory: %s", rf_strerror(rc));
        return rc;
    }
    note_tenants(d);
    rc = rf_store_write(d->store, index_emails_txn, d);
    if (rc != 0) {
        rf_log_error("store", RF_NOF, "cannot index referrers' emails: %s",
                     rf_strerror(rc));
        return rc;
    }
    d->writer = rf_writer_start(&d->loop, d->store, cfg->commit, 0);
    if (d->writer == NULL) {
        return RF_ENOMEM;
    }
    rc = start_scripts(d);
    if (rc != 0) {
        return rc;
    }
    d->intake.store = d->store;
    d->intake.writer = d->writer;
    d->intake.tenants = (const struct rf_tenants *const *)&d->tenants;
    d->intake.tolerance_s = cfg->sig_tolerance_s;
    d->intake.stored = on_stored;
    d->intake.stored_arg = d;
    d->capture.in = &d->intake;
    d->capture.rl = rf_ratelimit_new();
    d->capture.captured = on_captured;
    d->capture.arg = d;
    d->join.in = &d->intake;
    d->join.rl = rf_ratelimit_new();
    d->counters = rf_counters_start(&d->loop, d->store, d->writer);
    if (d->capture.rl == NULL || d->join.rl == NULL || d->counters == NULL) {
        return RF_ENOMEM;
    }
    (void)rf_config_split_listen(cfg->listen, host, sizeof(host), &port);
    d->http = rf_http_server_start(&d->loop, host, port, &cfg->http, &app);
    if (d->http == NULL) {
        return RF_EIO;
    }
    snprintf(err, sizeof(err), "%s:%u", host, rf_http_server_port(d->http));
    rf_log_info("daemon",
                RF_F("addr", err, "data", cfg->data_dir, "version",
                     REFEREE_VERSION),
                "listening with %zu tenants", d->tenants->n);
    return start_admin(d);
}

static void start_signals(struct daemon *d)
{
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sighup);
    d->sigint.data = d->sigterm.data = d->sighup.data = d;
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sighup, on_signal, SIGHUP);
    uv_timer_init(&d->loop, &d->heartbeat);
    uv_timer_init(&d->loop, &d->drain);
    d->heartbeat.data = d->drain.data = d;
    d->beat_due = uv_now(&d->loop) + HEARTBEAT_MS;
    uv_timer_start(&d->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
}

int rf_daemon_run(const struct rf_config *cfg)
{
    struct daemon d;
    int rc, code = 1;

    memset(&d, 0, sizeof(d));
    d.cfg = cfg;
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&d.loop) != 0) {
        return 1;
    }
    start_signals(&d);
    rc = start_parts(&d);
    if (rc == 0) {
        (void)uv_run(&d.loop, UV_RUN_DEFAULT);
        code = 0;
    } else {
        finish_stop(&d);
        (void)uv_run(&d.loop, UV_RUN_DEFAULT); /* let handles close */
    }
    if (uv_loop_close(&d.loop) != 0) {
        rf_log_warn("daemon", RF_NOF, "loop closed with live handles");
    }
    rf_tenants_free(d.tenants);
    rf_store_close(d.store);
    if (code == 0) {
        rf_log_info("daemon", RF_NOF, "stopped");
    }
    return code;
}

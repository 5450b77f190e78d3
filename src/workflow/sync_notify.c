/* The Zoho sync's fetching by id: Watch callbacks (the "@zoho.notify"
 * hook), records on the retry list, deals read again after a conversion;
 * and the tenant's Watch channel. */
#include "sync_internal.h"

/* --- notifications and retries: fetching records by id ------------------ */

struct fetch {
    struct tsync *ts;
    char module[64];
    int retry;
    int force; /* run the hooks even for a version handled lately */
    rf_engine_done_cb done;
    void *done_arg;
};

/* A fetch is counted as under way (ts->inflight) until freed. */
static void fetch_free(struct fetch *f)
{
    f->ts->inflight--;
    free(f);
}

static void finish_native(struct tsync *ts, rf_engine_done_cb done,
                          void *arg, int rc, const char *error)
{
    const struct rf_tenant *t =
        ts ? rf_engine_tenant(ts->s->e, ts->tenant) : NULL;
    struct rf_hook_result res = {rc, error, "null", t ? t->version : "",
                                 NULL};

    if (done != NULL) {
        done(&res, arg);
    }
}

static void on_fetched(const struct rf_zoho_result *res, void *arg)
{
    struct fetch *f = arg;
    struct work *w;
    cJSON *data;

    if (res->rc != 0) {
        rf_log_warn("sync", RF_F("tenant", f->ts->tenant, "module",
                                 f->module),
                    "cannot fetch records: %s", res->error);
        finish_native(f->ts, f->done, f->done_arg, res->rc, res->error);
        fetch_free(f);
        return;
    }
    w = rf__sync_work_new(f->ts, f->module);
    data = res->json ? cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(
                                           res->json, "data"),
                                       1)
                     : cJSON_CreateArray();
    if (w == NULL || data == NULL || !cJSON_IsArray(data)) {
        cJSON_Delete(data);
        rf__sync_work_discard(w);
        finish_native(f->ts, f->done, f->done_arg, RF_ENOMEM, "out of memory");
        fetch_free(f);
        return;
    }
    w->owned = data;
    w->records = data;
    w->retry = f->retry;
    w->force = f->force;
    w->done = f->done;
    w->done_arg = f->done_arg;
    fetch_free(f);
    rf__sync_start_work(w->ts, w);
}

/* Fetches up to 100 records by id (comma-separated) and runs them. */
int rf__sync_fetch(struct tsync *ts, const char *module, const char *ids,
                 int retry, int force, rf_engine_done_cb done,
                 void *done_arg)
{
    const struct rf_tenant_zoho *zs = rf__sync_zoho_settings(ts->s, ts->tenant);
    struct rf_zoho *z = rf_engine_zoho(ts->s->e, ts->tenant);
    const char *fields = NULL;
    char buf[4200];
    struct fetch *f;
    int rc;

    for (size_t i = 0; zs && i < zs->nmodules; i++) {
        if (strcmp(zs->modules[i].name, module) == 0) {
            fields = rf__sync_module_fields(module, zs->modules[i].fields, buf,
                                   sizeof(buf));
        }
    }
    if (z == NULL || fields == NULL) {
        return RF_ENOTFOUND;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return RF_ENOMEM;
    }
    f->ts = ts;
    ts->inflight++;
    snprintf(f->module, sizeof(f->module), "%s", module);
    f->retry = retry;
    f->force = force;
    f->done = done;
    f->done_arg = done_arg;
    {
        const char *q[] = {"ids", ids, "fields", fields,
                           rf__sync_converted_of(module) ? "converted" : NULL,
                           rf__sync_converted_of(module), NULL};
        struct rf_zoho_request rq = {.method = "GET", .path = module,
                                     .query = q};

        rc = rf_zoho_request(z, &rq, on_fetched, f);
    }
    if (rc != 0) {
        fetch_free(f);
    }
    return rc;
}

/* The native hook for a stored notification: {"json": {"module", "ids",
 * "operation", ...}, ...}. */
void rf__sync_on_notify(struct rf_engine *e, const char *tenant,
                      const cJSON *input, const char *event,
                      rf_engine_done_cb done, void *done_arg, void *arg)
{
    struct rf_sync *s = arg;
    struct tsync *ts = rf__sync_find(s, tenant);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(input, "json");
    const cJSON *module = cJSON_GetObjectItemCaseSensitive(body, "module");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(body, "ids");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(body, "operation");
    char list[FETCH_MAX * (RF_ZOHO_ID_MAX + 1)];
    size_t len = 0, n = 0;
    int rc;

    (void)e;
    (void)event;
    if (ts == NULL || ts->gone) {
        finish_native(ts, done, done_arg, RF_ENOTFOUND,
                      "the tenant has no Zoho sync");
        return;
    }
    ts->st.notifications++;
    if (!cJSON_IsString(module) || !cJSON_IsArray(ids)) {
        finish_native(ts, done, done_arg, RF_EINVAL,
                      "a notification names a module and ids");
        return;
    }
    if (cJSON_IsString(op) && strcmp(op->valuestring, "delete") == 0) {
        finish_native(ts, done, done_arg, 0, NULL); /* nothing to fetch */
        return;
    }
    list[0] = '\0';
    for (const cJSON *i = ids->child; i && n < FETCH_MAX; i = i->next) {
        char id[RF_ZOHO_ID_MAX];

        if (rf_zoho_json_id(i, id) == 0) {
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
                                    n ? "," : "", id);
            n++;
        }
    }
    if (n == 0) {
        finish_native(ts, done, done_arg, 0, NULL);
        return;
    }
    /* More than 100 ids in one callback: the rest are left to the poll,
     * which catches every change anyway. */
    rc = rf__sync_fetch(ts, module->valuestring, list, 0, 0, done, done_arg);
    if (rc == RF_ENOTFOUND) {
        finish_native(ts, done, done_arg, 0, NULL); /* a module not synced */
    } else if (rc != 0) {
        finish_native(ts, done, done_arg, rc, rf_strerror(rc));
    }
}

/* Reruns the records on the tenant's retry list that failed under another
 * script version than the current one. */
void rf__sync_rerun_failed(struct tsync *ts)
{
    struct rf_sync *s = ts->s;
    const struct rf_tenant *t = rf_engine_tenant(s->e, ts->tenant);
    unsigned char prefix[NAME_MAX_];
    size_t plen;
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    char module[64] = "", list[FETCH_MAX * (RF_ZOHO_ID_MAX + 1)];
    size_t len = 0, n = 0, scanned = 0;
    int mrc, found = 0;

    if (t == NULL || rf_store_read_begin(s->store, &txn) != 0) {
        return;
    }
    plen = (size_t)snprintf((char *)prefix, sizeof(prefix), "%s%cretry%c",
                            ts->tenant, 0, 0);
    if (mdb_cursor_open(txn, rf_store_dbi(s->store, RF_DB_ZOHO), &cur) != 0) {
        rf_store_read_end(s->store, txn);
        return;
    }
    k.mv_size = plen;
    k.mv_data = prefix;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         mrc == 0 && scanned < RETRY_SCAN_MAX;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), scanned++) {
        const char *mod, *id;
        cJSON *o;
        const cJSON *ver, *at;
        int same, recent;

        if (k.mv_size <= plen || memcmp(k.mv_data, prefix, plen) != 0) {
            break;
        }
        found = 1;
        mod = (const char *)k.mv_data + plen;
        id = memchr(mod, 0, k.mv_size - plen);
        if (id == NULL) {
            continue;
        }
        id++;
        o = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        ver = cJSON_GetObjectItemCaseSensitive(o, "version");
        at = cJSON_GetObjectItemCaseSensitive(o, "at");
        same = cJSON_IsString(ver) && strcmp(ver->valuestring, t->version) == 0;
        recent = cJSON_IsNumber(at) &&
                 at->valuedouble >
                     (double)(rf__sync_now_ms() / 1000 - RETRY_AGAIN_S);
        cJSON_Delete(o);
        if (same && recent) {
            continue; /* failed under this very version lately: the cause
                         may be a passing one, so it is tried again after
                         an hour, or at once after a script change */
        }
        if ((n == FETCH_MAX || strcmp(module, mod) != 0) && n > 0) {
            (void)rf__sync_fetch(ts, module, list, 1, 0, NULL, NULL);
            n = len = 0;
        }
        snprintf(module, sizeof(module), "%s", mod);
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%.*s",
                                n ? "," : "",
                                (int)((const char *)k.mv_data + k.mv_size -
                                      id),
                                id);
        n++;
    }
    if (n > 0) {
        (void)rf__sync_fetch(ts, module, list, 1, 0, NULL, NULL);
    }
    if (rf_store_scan_rc(mrc) != 0) {
        rf_log_error("sync", RF_F("tenant", ts->tenant),
                     "reading the retry list failed: %s", mdb_strerror(mrc));
    }
    mdb_cursor_close(cur);
    rf_store_read_end(s->store, txn);
    /* Batches delete retry entries of records that now went well only
     * while the list may hold some. A batch started before a failure of
     * an earlier one committed may leave an entry behind; it is fetched
     * and run once more at the next reload, which is harmless. */
    ts->may_retry = found;
}


/* --- the Watch channel -------------------------------------------------- */


static void on_subscribed(const struct rf_zoho_result *res, void *arg)
{
    struct tsync *ts = arg;

    if (res->rc != 0 && res->rc != RF_ESTOPPING) {
        /* Tried again after the next poll, which comes soon. */
        ts->channel = 0;
        if (ts->polling == 0 && !ts->closing) {
            rf__sync_schedule(ts, CHANNEL_RETRY_MS);
        }
        snprintf(ts->st.last_error, sizeof(ts->st.last_error),
                 "watch: %s", res->error ? res->error : rf_strerror(res->rc));
        rf_log_warn("sync", RF_F("tenant", ts->tenant),
                    "cannot subscribe the notification channel: %s; the "
                    "poll carries on alone",
                    res->error ? res->error : rf_strerror(res->rc));
    }
}

static uint64_t mix(uint64_t h, const char *s)
{
    for (; s && *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    }
    return (h ^ 0xff) * 1099511628211u;
}

/* What a subscription depends on: the connection and the channel's own
 * settings. */
static uint64_t channel_hash(const struct rf_tenant_zoho *zs)
{
    uint64_t h = mix(14695981039346656037u, zs->connection);

    h = mix(mix(mix(h, zs->channel_id), zs->notify_url), zs->notify_token);
    for (size_t i = 0; i < zs->nevents; i++) {
        h = mix(h, zs->events[i]);
    }
    return h;
}

/* Subscribes the tenant's channel unless it is subscribed already with
 * these settings (the connector renews it from then on). A channel whose
 * settings changed is subscribed again, which replaces it at Zoho. */
void rf__sync_follow_channel(struct tsync *ts, const struct rf_tenant_zoho *zs)
{
    struct rf_zoho *z = rf_engine_zoho(ts->s->e, ts->tenant);
    struct rf_zoho_channel ch = {0};
    uint64_t h;
    int64_t expiry;

    if (z == NULL || zs->notify_url == NULL) {
        return;
    }
    h = channel_hash(zs);
    if (rf_zoho_watch_expiry(z, zs->channel_id, &expiry) == 0 &&
        ts->channel == h) {
        return;
    }
    ch.channel_id = zs->channel_id;
    ch.events = (const char *const *)zs->events;
    ch.n_events = zs->nevents;
    ch.notify_url = zs->notify_url;
    ch.token = zs->notify_token;
    if (rf_zoho_watch_start(z, &ch, on_subscribed, ts) == 0) {
        ts->channel = h;
    }
}


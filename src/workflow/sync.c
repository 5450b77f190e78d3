/* The Zoho sync on the script thread: polls, notifications, the cohort
 * hook and enrolment, with a retry list for records whose hook failed. */
#include "referee/sync.h"
#include "referee/error.h"
#include "referee/crm_update.h"
#include "referee/log.h"
#include "referee/outbox.h"
#include "referee/milestone.h"
#include "referee/referrers.h"
#include "referee/reward.h"
#include "referee/writer.h"
#include "referee/zoho.h"
#include "referee/zoho_poll.h"
#include "referee/zoho_watch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIRST_POLL_MS 200
#define CHANNEL_RETRY_MS 60000 /* a failed subscription, tried again */
#define RETRY_AGAIN_S 3600     /* records failed under this very version */
#define SEEN_SLOTS 8192        /* record versions remembered per tenant */
#define STATS_MS 1000
#define FETCH_MAX 100   /* ids per GET (Zoho's limit) */
#define RETRY_SCAN_MAX 1000
#define NAME_MAX_ 256
#define ERROR_KEEP 1000

struct tsync {
    struct tsync *next;
    struct rf_sync *s;
    char tenant[RF_TENANT_ID_MAX + 1];
    uv_timer_t timer;
    int polling;   /* module polls running */
    int gone;      /* the tenant or its zoho settings went away */
    int closing;
    int may_retry; /* the retry list may hold records (else skip deletes) */
    uint64_t channel; /* what the channel was subscribed with (a hash) */
    struct seen *seen; /* record versions handled lately, SEEN_SLOTS */
    struct rf_sync_tenant_stats st; /* script thread's copy */
};

struct rf_sync {
    struct rf_engine *e;
    uv_loop_t *loop;
    struct rf_store *store;
    struct rf_writer *writer;
    struct tsync *tenants;
    uv_timer_t stats_timer;
    int stopping;

    pthread_mutex_t mu; /* guards the snapshot */
    struct rf_sync_tenant_stats *snap;
    size_t nsnap;
};

/* One record handed to a hook, and what came back. */
/* A record version handled lately: a hash of module and id, and one of
 * its Modified_Time. A Watch callback's fetch and the next poll both read
 * a changed record; this keeps the hooks from running twice for it while
 * the process lives (after a restart they may: hooks are idempotent). */
struct seen {
    uint64_t rec, ver;
};

struct decision;

/* Which hook an answer is for. */
struct hook_slot {
    struct decision *d;
    enum rf_hook hook;
};

struct decision {
    struct work *w;
    const cJSON *rec;
    char id[RF_ZOHO_ID_MAX];
    int rc;        /* 0: every hook answered */
    int enrol;     /* cohort accepted the contact */
    char *email, *name;
    char *error;
    struct rf_milestone ms; /* the referral the record is linked to */
    int skip;               /* this version was handled lately */
    uint64_t rec_hash, ver_hash;
    struct hook_slot cohort, milestone;
};

/* A set of records on their way through hooks and into the store: a poll
 * batch (cursor written with it), a notification's fetch, or a retry. */
struct work {
    struct rf_write_job wj; /* first: the writer hands this back */
    struct tsync *ts;
    char module[64];
    char version[17];
    struct rf_zoho_batch *batch; /* a poll's; NULL otherwise */
    cJSON *owned;                /* fetched records; NULL for a batch */
    const cJSON *records;
    struct decision *d;
    size_t n, pending;
    int64_t at_ms;
    int retry;                   /* records came off the retry list */
    char *link;       /* program.link, copied for the writer thread */
    char *code_field; /* program.code_field: write codes back to Zoho */
    char *link_field; /* program.link_field */
    int may_retry;               /* the tenant's retry list is not empty */
    int force;                   /* ignore the versions handled lately */
    rf_engine_done_cb done;      /* a notification's, when set */
    void *done_arg;
    size_t enrolled;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct tsync *find(struct rf_sync *s, const char *tenant)
{
    struct tsync *t = s->tenants;

    while (t && strcmp(t->tenant, tenant) != 0) {
        t = t->next;
    }
    return t;
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    }
    return (h ^ 0xff) * 1099511628211u;
}

static struct seen *seen_slot(struct tsync *ts, uint64_t rec)
{
    if (ts->seen == NULL) {
        ts->seen = calloc(SEEN_SLOTS, sizeof(*ts->seen));
    }
    return ts->seen ? &ts->seen[rec % SEEN_SLOTS] : NULL;
}

static const struct rf_tenant_zoho *zoho_settings(struct rf_sync *s,
                                                  const char *tenant)
{
    const struct rf_tenant *t = rf_engine_tenant(s->e, tenant);

    return t ? t->zoho : NULL;
}

static int has_hook(struct rf_sync *s, const char *tenant, enum rf_hook h)
{
    const struct rf_tenant *t = rf_engine_tenant(s->e, tenant);

    return t && (t->hooks & (1u << h)) != 0;
}

/* --- the retry list: RF_DB_ZOHO "tenant \0 retry \0 module \0 id" ------- */

static size_t retry_key(unsigned char *k, size_t cap, const char *tenant,
                        const char *module, const char *id)
{
    int n = snprintf((char *)k, cap, "%s%cretry%c%s%c%s", tenant, 0, 0,
                     module, 0, id);

    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int put_retry(MDB_txn *txn, const struct work *w,
                     const struct decision *d)
{
    unsigned char key[NAME_MAX_];
    char val[ERROR_KEEP + 128];
    cJSON *o = cJSON_CreateObject();
    char *text;
    MDB_val k = {retry_key(key, sizeof(key), w->ts->tenant, w->module,
                           d->id),
                 key},
            v;
    int rc;

    if (o == NULL || k.mv_size == 0) {
        cJSON_Delete(o);
        return o ? 0 : RF_ENOMEM;
    }
    snprintf(val, sizeof(val), "%s", d->error ? d->error : "");
    cJSON_AddStringToObject(o, "version", w->version);
    cJSON_AddStringToObject(o, "error", val);
    cJSON_AddNumberToObject(o, "at", (double)(w->at_ms / 1000));
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL) {
        return RF_ENOMEM;
    }
    v.mv_size = strlen(text);
    v.mv_data = text;
    rc = rf_store_rc(mdb_put(txn, rf_store_dbi(w->ts->s->store, RF_DB_ZOHO),
                             &k, &v, 0));
    cJSON_free(text);
    return rc;
}

static int del_retry(MDB_txn *txn, const struct work *w,
                     const struct decision *d)
{
    unsigned char key[NAME_MAX_];
    MDB_val k = {retry_key(key, sizeof(key), w->ts->tenant, w->module,
                           d->id),
                 key};
    int mrc;

    if (k.mv_size == 0) {
        return 0;
    }
    mrc = mdb_del(txn, rf_store_dbi(w->ts->s->store, RF_DB_ZOHO), &k, NULL);
    return mrc == MDB_NOTFOUND ? 0 : rf_store_rc(mrc);
}

/* --- committing a set of decisions -------------------------------------- */

static void work_free(struct work *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->d[i].email);
        free(w->d[i].name);
        free(w->d[i].error);
        rf_milestone_cleanup(&w->d[i].ms);
    }
    free(w->d);
    free(w->link);
    free(w->code_field);
    free(w->link_field);
    cJSON_Delete(w->owned);
    free(w);
}

/* A new referrer's code and link go back to the contact's fields the
 * tenant names, through the outbox. */
static int write_back(MDB_txn *txn, const struct work *w,
                      const struct decision *d, const char *code)
{
    cJSON *p, *f;
    char key[64], *text;
    int rc;

    if (w->code_field == NULL && w->link_field == NULL) {
        return 0;
    }
    p = cJSON_CreateObject();
    f = p ? cJSON_AddObjectToObject(p, "fields") : NULL;
    if (f == NULL || !cJSON_AddStringToObject(p, "module", "Contacts") ||
        !cJSON_AddStringToObject(p, "id", d->id) ||
        (w->code_field && !cJSON_AddStringToObject(f, w->code_field, code))) {
        cJSON_Delete(p);
        return RF_ENOMEM;
    }
    if (w->link_field && w->link) {
        const char *at = strstr(w->link, "{code}");
        char link[1024];

        snprintf(link, sizeof(link), "%.*s%s%s",
                 (int)(at ? at - w->link : (long)strlen(w->link)), w->link,
                 at ? code : "", at ? at + 6 : "");
        cJSON_AddStringToObject(f, w->link_field, link);
    }
    text = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    if (text == NULL) {
        return RF_ENOMEM;
    }
    snprintf(key, sizeof(key), "writeback:%s", d->id);
    rc = rf_outbox_add(txn, w->ts->s->store, w->ts->tenant,
                       RF_CRM_WRITEBACK_KIND, key, text, 0, NULL);
    cJSON_free(text);
    return rc;
}

/* Writer thread: everything the decisions cause, and the cursor. */
static int run_work(MDB_txn *txn, struct rf_write_job *wj)
{
    struct work *w = (struct work *)wj;
    const struct rf_store *st = w->ts->s->store;
    int rc = 0;

    w->enrolled = 0;
    for (size_t i = 0; rc == 0 && i < w->n; i++) {
        const struct decision *d = &w->d[i];

        if (d->skip) {
            rc = w->retry ? del_retry(txn, w, d) : 0;
            continue;
        }
        if (d->rc != 0) {
            rc = put_retry(txn, w, d);
            continue;
        }
        if (d->enrol) {
            struct rf_referrer_in in = {
                .tenant = w->ts->tenant, .contact_id = d->id,
                .email = d->email, .name = d->name, .source = "cohort",
                .version = w->version, .at_ms = w->at_ms,
                .evidence = d->rec};
            char code[RF_CODE_LEN + 1];
            int created = 0;

            in.link = w->link;
            rc = rf_referrer_enrol(txn, st, &in, code, &created);
            w->enrolled += (size_t)created;
            if (rc == 0 && created) {
                rc = write_back(txn, w, d, code);
            }
        }
        if (rc == 0 && d->ms.referral) {
            rc = rf_milestone_apply(txn, st, w->ts->tenant, w->module, d->rec,
                                    w->version, w->at_ms, &d->ms);
        }
        if (rc == 0 && (w->retry || w->may_retry)) {
            rc = del_retry(txn, w, d);
        }
    }
    if (rc == 0 && w->batch != NULL) {
        rc = rf_zoho_batch_put_cursor(w->batch, txn, st);
    }
    return rc;
}

static void on_reward_asked(const struct rf_hook_result *res, void *arg)
{
    (void)res; /* the reward step records its own outcome */
    (void)arg;
}

/* A committed batch qualified or reversed referrals: their reward step
 * (reward.h) runs now; it re-reads each and does nothing when not due. */
static void ask_rewards(struct work *w)
{
    cJSON *in = cJSON_CreateObject();
    cJSON *id = in ? cJSON_AddNumberToObject(in, "id", 0) : NULL;

    for (size_t i = 0; id != NULL && i < w->n; i++) {
        if (w->d[i].rc == 0 && w->d[i].ms.referral && w->d[i].ms.status[0]) {
            cJSON_SetNumberValue(id, (double)w->d[i].ms.referral);
            (void)rf_engine_call_value(w->ts->s->e, w->ts->tenant,
                                       RF_REWARD_HOOK, in, NULL,
                                       on_reward_asked, NULL);
        }
    }
    cJSON_Delete(in);
}

static int fetch(struct tsync *ts, const char *module, const char *ids,
                 int retry, int force, rf_engine_done_cb done,
                 void *done_arg);

/* A converted lead linked its deal to the referral. The deal may have been
 * read before (Leads and Deals are polled side by side), when it was not
 * linked yet and its changes went unnoticed: read it again now, whatever
 * was handled lately, so that its milestone is not missed. */
static void follow_conversions(struct work *w)
{
    if (strcmp(w->module, "Leads") != 0) {
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        const struct decision *d = &w->d[i];

        if (d->rc == 0 && d->ms.referral && d->ms.deal[0]) {
            (void)fetch(w->ts, "Deals", d->ms.deal, 0, 1, NULL, NULL);
        }
    }
}

static void on_work_written(struct rf_write_job *wj)
{
    struct work *w = (struct work *)wj;
    struct tsync *ts = w->ts;
    size_t failed = 0;

    for (size_t i = 0; i < w->n; i++) {
        failed += w->d[i].rc != 0;
    }
    if (wj->rc == 0) {
        for (size_t i = 0; i < w->n; i++) {
            struct seen *sl = w->d[i].rc == 0 && !w->d[i].skip
                                  ? seen_slot(ts, w->d[i].rec_hash)
                                  : NULL;

            if (sl != NULL) {
                sl->rec = w->d[i].rec_hash;
                sl->ver = w->d[i].ver_hash;
            }
        }
        ts->may_retry |= failed > 0;
        ts->st.records += w->n;
        ts->st.enrolled += w->enrolled;
        ts->st.hook_failures += failed;
        ask_rewards(w);
        if (!ts->s->stopping) {
            follow_conversions(w);
        }
    } else {
        rf_log_error("sync", RF_F("tenant", ts->tenant, "module", w->module),
                     "cannot store a batch (%s); it comes again",
                     rf_strerror(wj->rc));
    }
    if (w->batch != NULL) {
        rf_zoho_batch_done(w->batch, wj->rc,
                           wj->rc == 0 ? RF_ZOHO_CURSOR_WRITTEN : 0);
    }
    if (w->done != NULL) {
        struct rf_hook_result res = {wj->rc, wj->rc ? rf_strerror(wj->rc)
                                                    : NULL,
                                     "null", w->version, NULL};

        w->done(&res, w->done_arg);
    }
    work_free(w);
}

static void commit(struct work *w)
{
    w->wj.run = run_work;
    w->wj.done = on_work_written;
    rf_writer_submit(w->ts->s->writer, &w->wj);
}

/* --- hooks -------------------------------------------------------------- */

static char *string_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) && v->valuestring[0] ? strdup(v->valuestring)
                                                  : NULL;
}

/* What cohort answered: true, or a table { enrol = true, email = ...,
 * name = ... }; anything else declines. */
static void read_cohort(struct decision *d, const cJSON *v)
{
    const cJSON *en;

    if (cJSON_IsTrue(v)) {
        d->enrol = 1;
    } else if (cJSON_IsObject(v)) {
        en = cJSON_GetObjectItemCaseSensitive(v, "enrol");
        d->enrol = en == NULL || cJSON_IsTrue(en);
        d->email = string_field(v, "email");
        d->name = string_field(v, "name");
    }
    if (d->enrol && d->email == NULL) {
        d->email = string_field(d->rec, "Email");
    }
    if (d->enrol && d->name == NULL) {
        d->name = string_field(d->rec, "Full_Name");
    }
}

static void decided(struct work *w)
{
    if (--w->pending == 0) {
        commit(w);
    }
}

static void on_cohort(const struct rf_hook_result *res, struct decision *d)
{
    if (res->rc == 0) {
        read_cohort(d, res->value);
    }
}

static void on_milestone(const struct rf_hook_result *res, struct decision *d)
{
    if (res->rc == 0 && rf_milestone_answer(&d->ms, res->value) != 0) {
        d->rc = RF_ESCRIPT;
        free(d->error);
        d->error = strdup(d->ms.error);
    }
}

/* A hook call for one record ended. Hooks that wait (crm.*, http.request)
 * end later; the set commits after the last. */
static void on_hook_done(const struct rf_hook_result *res, void *arg)
{
    struct hook_slot *slot = arg;
    struct decision *d = slot->d;
    struct work *w = d->w;

    if (res->rc != 0) {
        d->rc = res->rc;
        free(d->error);
        d->error = strdup(res->error ? res->error : rf_strerror(res->rc));
    } else if (slot->hook == RF_HOOK_COHORT) {
        on_cohort(res, d);
    } else {
        on_milestone(res, d);
    }
    if (res->version != NULL && res->version[0]) {
        snprintf(w->version, sizeof(w->version), "%s", res->version);
    }
    decided(w);
}

static void call_hook(struct work *w, struct decision *d,
                      struct hook_slot *slot, enum rf_hook hook,
                      const cJSON *input)
{
    char tag[96];

    slot->d = d;
    slot->hook = hook;
    w->pending++;
    /* Log lines of the call name the record: "Contacts:4876...". */
    snprintf(tag, sizeof(tag), "%s:%s", w->module, d->id);
    if (rf_engine_call_value(w->ts->s->e, w->ts->tenant, rf_hook_name(hook),
                             input, tag, on_hook_done, slot) != 0) {
        d->rc = RF_ENOMEM;
        w->pending--;
    }
}

/* Finds the referrals the records are linked to (and what converted leads
 * became). */
static void find_links(struct work *w, int milestone)
{
    struct rf_store *st = w->ts->s->store;
    int leads = strcmp(w->module, "Leads") == 0;
    MDB_txn *txn;

    if ((!milestone && !leads) || rf_store_read_begin(st, &txn) != 0) {
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        struct decision *d = &w->d[i];

        if (d->id[0] &&
            rf_milestone_find(txn, st, w->ts->tenant, w->module, d->rec,
                              &d->ms) != 0) {
            d->ms.referral = 0;
        }
    }
    rf_store_read_end(st, txn);
}

static void start_work(struct tsync *ts, struct work *w)
{
    struct rf_sync *s = ts->s;
    const struct rf_tenant *t = rf_engine_tenant(s->e, ts->tenant);
    int cohort = strcmp(w->module, "Contacts") == 0 &&
                 has_hook(s, ts->tenant, RF_HOOK_COHORT);
    int milestone = has_hook(s, ts->tenant, RF_HOOK_MILESTONE);
    size_t i = 0;

    w->at_ms = now_ms();
    w->may_retry = ts->may_retry;
    if (t != NULL && t->program != NULL) {
        w->link = t->program->link ? strdup(t->program->link) : NULL;
        w->code_field = t->program->code_field
                            ? strdup(t->program->code_field)
                            : NULL;
        w->link_field = t->program->link_field
                            ? strdup(t->program->link_field)
                            : NULL;
    }
    snprintf(w->version, sizeof(w->version), "%s", t ? t->version : "");
    w->n = (size_t)cJSON_GetArraySize(w->records);
    w->d = calloc(w->n ? w->n : 1, sizeof(*w->d));
    if (w->d == NULL) {
        w->n = 0;
    }
    for (const cJSON *r = w->records ? w->records->child : NULL;
         r && i < w->n; r = r->next, i++) {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(r,
                                                           "Modified_Time");
        struct seen *sl;

        w->d[i].w = w;
        w->d[i].rec = r;
        (void)rf_zoho_json_id(cJSON_GetObjectItemCaseSensitive(r, "id"),
                              w->d[i].id);
        w->d[i].rec_hash = fnv(fnv(14695981039346656037u, w->module),
                               w->d[i].id);
        w->d[i].ver_hash = fnv(14695981039346656037u,
                               cJSON_IsString(mt) ? mt->valuestring : "");
        sl = cJSON_IsString(mt) ? seen_slot(ts, w->d[i].rec_hash) : NULL;
        w->d[i].skip = !w->force && sl != NULL &&
                       sl->rec == w->d[i].rec_hash &&
                       sl->ver == w->d[i].ver_hash;
    }
    find_links(w, milestone);
    w->pending = 1; /* held until every call started */
    for (i = 0; i < w->n; i++) {
        struct decision *d = &w->d[i];

        if (d->id[0] == '\0' || d->skip) {
            continue;
        }
        if (cohort) {
            call_hook(w, d, &d->cohort, RF_HOOK_COHORT, d->rec);
        }
        if (milestone && d->ms.referral) {
            cJSON *args = cJSON_CreateArray();

            if (args == NULL ||
                !cJSON_AddItemReferenceToArray(args, (cJSON *)d->rec) ||
                !cJSON_AddItemReferenceToArray(args, d->ms.referral_json)) {
                d->rc = RF_ENOMEM;
            } else {
                call_hook(w, d, &d->milestone, RF_HOOK_MILESTONE, args);
            }
            cJSON_Delete(args);
        }
    }
    decided(w);
}

static struct work *work_new(struct tsync *ts, const char *module)
{
    struct work *w = calloc(1, sizeof(*w));

    if (w != NULL) {
        w->ts = ts;
        snprintf(w->module, sizeof(w->module), "%s", module);
    }
    return w;
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
static const char *module_fields(const char *module, const char *fields,
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

static const char *converted_of(const char *module)
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
    struct work *w = work_new(pc->ts, pc->module);

    if (w == NULL) {
        rf_zoho_batch_done(b, RF_ENOMEM, 0);
        return;
    }
    w->batch = b;
    w->records = rf_zoho_batch_records(b);
    start_work(pc->ts, w);
}

static void schedule(struct tsync *ts, uint64_t ms);
static void follow_channel(struct tsync *ts, const struct rf_tenant_zoho *zs);
static void rerun_failed(struct tsync *ts);

static void on_poll_done(int rc, const char *error,
                         const struct rf_zoho_poll_stats *st, void *arg)
{
    struct poll_ctx *pc = arg;
    struct tsync *ts = pc->ts;

    ts->polling--;
    if (rc == 0) {
        ts->st.polls++;
        ts->st.last_poll_ms = now_ms();
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
        const struct rf_tenant_zoho *zs = zoho_settings(ts->s, ts->tenant);
        uint64_t next = zs ? (uint64_t)zs->poll_every_s * 1000 : 0;

        if (zs != NULL && zs->notify_url != NULL && ts->channel == 0) {
            follow_channel(ts, zs); /* a failed subscription, again */
            next = next < CHANNEL_RETRY_MS ? next : CHANNEL_RETRY_MS;
        }
        if (ts->may_retry) {
            rerun_failed(ts);
        }
        schedule(ts, next);
    }
}

static void poll_all(struct tsync *ts)
{
    struct rf_sync *s = ts->s;
    const struct rf_tenant_zoho *zs = zoho_settings(s, ts->tenant);
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
        o.fields = module_fields(o.module, zs->modules[i].fields, fields,
                                 sizeof(fields));
        o.converted = converted_of(o.module);
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
        schedule(ts, (uint64_t)zs->poll_every_s * 1000);
    }
}

static void on_timer(uv_timer_t *t)
{
    poll_all(t->data);
}

static void schedule(struct tsync *ts, uint64_t ms)
{
    if (!ts->closing && ms > 0) {
        uv_timer_start(&ts->timer, on_timer, ms, 0);
    }
}

/* --- notifications and retries: fetching records by id ------------------ */

struct fetch {
    struct tsync *ts;
    char module[64];
    int retry;
    int force; /* run the hooks even for a version handled lately */
    rf_engine_done_cb done;
    void *done_arg;
};

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
        free(f);
        return;
    }
    w = work_new(f->ts, f->module);
    data = res->json ? cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(
                                           res->json, "data"),
                                       1)
                     : cJSON_CreateArray();
    if (w == NULL || data == NULL || !cJSON_IsArray(data)) {
        cJSON_Delete(data);
        free(w);
        finish_native(f->ts, f->done, f->done_arg, RF_ENOMEM, "out of memory");
        free(f);
        return;
    }
    w->owned = data;
    w->records = data;
    w->retry = f->retry;
    w->force = f->force;
    w->done = f->done;
    w->done_arg = f->done_arg;
    free(f);
    start_work(w->ts, w);
}

/* Fetches up to 100 records by id (comma-separated) and runs them. */
static int fetch(struct tsync *ts, const char *module, const char *ids,
                 int retry, int force, rf_engine_done_cb done,
                 void *done_arg)
{
    const struct rf_tenant_zoho *zs = zoho_settings(ts->s, ts->tenant);
    struct rf_zoho *z = rf_engine_zoho(ts->s->e, ts->tenant);
    const char *fields = NULL;
    char buf[4200];
    struct fetch *f;
    int rc;

    for (size_t i = 0; zs && i < zs->nmodules; i++) {
        if (strcmp(zs->modules[i].name, module) == 0) {
            fields = module_fields(module, zs->modules[i].fields, buf,
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
    snprintf(f->module, sizeof(f->module), "%s", module);
    f->retry = retry;
    f->force = force;
    f->done = done;
    f->done_arg = done_arg;
    {
        const char *q[] = {"ids", ids, "fields", fields,
                           converted_of(module) ? "converted" : NULL,
                           converted_of(module), NULL};
        struct rf_zoho_request rq = {.method = "GET", .path = module,
                                     .query = q};

        rc = rf_zoho_request(z, &rq, on_fetched, f);
    }
    if (rc != 0) {
        free(f);
    }
    return rc;
}

/* The native hook for a stored notification: {"json": {"module", "ids",
 * "operation", ...}, ...}. */
static void on_notify(struct rf_engine *e, const char *tenant,
                      const cJSON *input, const char *event,
                      rf_engine_done_cb done, void *done_arg, void *arg)
{
    struct rf_sync *s = arg;
    struct tsync *ts = find(s, tenant);
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
    rc = fetch(ts, module->valuestring, list, 0, 0, done, done_arg);
    if (rc == RF_ENOTFOUND) {
        finish_native(ts, done, done_arg, 0, NULL); /* a module not synced */
    } else if (rc != 0) {
        finish_native(ts, done, done_arg, rc, rf_strerror(rc));
    }
}

/* Reruns the records on the tenant's retry list that failed under another
 * script version than the current one. */
static void rerun_failed(struct tsync *ts)
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
                 at->valuedouble > (double)(now_ms() / 1000 - RETRY_AGAIN_S);
        cJSON_Delete(o);
        if (same && recent) {
            continue; /* failed under this very version lately: the cause
                         may be a passing one, so it is tried again after
                         an hour, or at once after a script change */
        }
        if ((n == FETCH_MAX || strcmp(module, mod) != 0) && n > 0) {
            (void)fetch(ts, module, list, 1, 0, NULL, NULL);
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
        (void)fetch(ts, module, list, 1, 0, NULL, NULL);
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

static void schedule(struct tsync *ts, uint64_t ms);

static void on_subscribed(const struct rf_zoho_result *res, void *arg)
{
    struct tsync *ts = arg;

    if (res->rc != 0 && res->rc != RF_ESTOPPING) {
        /* Tried again after the next poll, which comes soon. */
        ts->channel = 0;
        if (ts->polling == 0 && !ts->closing) {
            schedule(ts, CHANNEL_RETRY_MS);
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
static void follow_channel(struct tsync *ts, const struct rf_tenant_zoho *zs)
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
    const struct rf_tenant_zoho *zs = zoho_settings(s, tenant);
    struct tsync *ts = find(s, tenant);

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
        schedule(ts, FIRST_POLL_MS);
    }
    follow_channel(ts, zs);
    rerun_failed(ts);
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
        rf_engine_native(e, RF_SYNC_NOTIFY_HOOK, on_notify, s) != 0) {
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
    struct tsync *ts = find(s, tenant);

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

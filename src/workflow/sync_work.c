/* The Zoho sync's records through hooks: cohort and milestone over a set
 * of records (a poll's batch, or records fetched by id), and what their
 * answers commit with the batch: enrolments, milestones, the retry list,
 * code write-back, the cursor. */
#include "sync_internal.h"

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
    w->ts->inflight--;
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
            (void)rf__sync_fetch(w->ts, "Deals", d->ms.deal, 0, 1, NULL, NULL);
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
                                  ? rf__sync_seen_slot(ts, w->d[i].rec_hash)
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

/* Whether a stop cut one of the set's hook calls short. */
static int interrupted(const struct work *w)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->d[i].rc == RF_ESTOPPING) {
            return 1;
        }
    }
    return 0;
}

/* A set a stop cut short is not committed, so that its records are read
 * again at the next start (a poll's cursor stays where it was) rather
 * than counted as failed and left for the retry list. */
static void abandon(struct work *w)
{
    rf_log_info("sync", RF_F("tenant", w->ts->tenant, "module", w->module),
                "stopped before its hooks ended; %zu records are read "
                "again at the next start",
                w->n);
    if (w->batch != NULL) {
        rf_zoho_batch_done(w->batch, RF_ESTOPPING, 0);
    }
    if (w->done != NULL) {
        struct rf_hook_result res = {RF_ESTOPPING, "the engine is stopping",
                                     "null", w->version, NULL};

        w->done(&res, w->done_arg);
    }
    work_free(w);
}

static void commit(struct work *w)
{
    if (interrupted(w)) {
        abandon(w);
        return;
    }
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

void rf__sync_start_work(struct tsync *ts, struct work *w)
{
    struct rf_sync *s = ts->s;
    const struct rf_tenant *t = rf_engine_tenant(s->e, ts->tenant);
    int cohort = strcmp(w->module, "Contacts") == 0 &&
                 rf__sync_has_hook(s, ts->tenant, RF_HOOK_COHORT);
    int milestone = rf__sync_has_hook(s, ts->tenant, RF_HOOK_MILESTONE);
    size_t i = 0;

    w->at_ms = rf__sync_now_ms();
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
        w->d[i].rec_hash = rf__sync_fnv(
            rf__sync_fnv(14695981039346656037u, w->module), w->d[i].id);
        w->d[i].ver_hash = rf__sync_fnv(
            14695981039346656037u, cJSON_IsString(mt) ? mt->valuestring : "");
        sl = cJSON_IsString(mt) ? rf__sync_seen_slot(ts, w->d[i].rec_hash)
                                : NULL;
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

struct work *rf__sync_work_new(struct tsync *ts, const char *module)
{
    struct work *w = calloc(1, sizeof(*w));

    if (w != NULL) {
        w->ts = ts;
        ts->inflight++;
        snprintf(w->module, sizeof(w->module), "%s", module);
    }
    return w;
}

void rf__sync_work_discard(struct work *w)
{
    if (w != NULL) {
        w->ts->inflight--;
        free(w);
    }
}


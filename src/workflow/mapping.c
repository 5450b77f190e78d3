/* Accepted referrals to CRM records: the capture hook, the upsert job and
 * the link. */
#include "referee/mapping.h"
#include "referee/audit.h"
#include "referee/error.h"
#include "referee/log.h"
#include "referee/referrals.h"
#include "referee/referrers.h"
#include "referee/zoho.h"
#include "referee/zoho_records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define UPSERT_KIND "zoho.upsert"
#define DCF_MAX 8
#define DCF "duplicate_check_fields"

struct rf_mapping {
    struct rf_engine *e;
    struct rf_outbox *ob;
    struct rf_store *st;
    struct rf_writer *w;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void job_key(char *out, size_t n, uint64_t id)
{
    snprintf(out, n, "crm:%llu", (unsigned long long)id);
}

static void answer(rf_engine_done_cb done, void *arg, int rc,
                   const char *error, const char *version)
{
    struct rf_hook_result res = {rc, error, "null", version ? version : "",
                                 NULL};

    if (done != NULL) {
        done(&res, arg);
    }
}

/* --- state changes, on the writer thread -------------------------------- */

enum change { CH_MAPPED, CH_REFUSED, CH_FAILED, CH_IN_CRM, CH_CRM_DEAD };

struct change_job {
    struct rf_write_job wj; /* first: the writer hands this back */
    struct rf_mapping *m;
    enum change what;
    char tenant[RF_TENANT_ID_MAX + 1];
    uint64_t id;
    char version[17];
    cJSON *answer;  /* the capture hook's answer (CH_MAPPED, CH_REFUSED) */
    char *text;     /* an error, or the job's result JSON (CH_IN_CRM) */
    int64_t at_ms;
    rf_engine_done_cb done;
    void *done_arg;
    int added;      /* an outbox job was added */
};

static void set_str(cJSON *o, const char *name, const char *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    if (value != NULL) {
        cJSON_AddStringToObject(o, name, value);
    }
}

/* The upsert job's payload from the hook's answer. */
static char *payload_of(const struct change_job *c)
{
    cJSON *p = cJSON_CreateObject();
    const cJSON *dcf = cJSON_GetObjectItemCaseSensitive(c->answer, DCF);
    char *text;

    if (p == NULL) {
        return NULL;
    }
    cJSON_AddNumberToObject(p, "referral", (double)c->id);
    cJSON_AddStringToObject(p, "module", str(c->answer, "module"));
    cJSON_AddItemToObject(p, "record",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(
                                              c->answer, "record"),
                                          1));
    if (cJSON_IsArray(dcf)) {
        cJSON_AddItemToObject(p, DCF,
                              cJSON_Duplicate(dcf, 1));
    }
    text = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    return text;
}

static int apply(MDB_txn *txn, struct change_job *c, cJSON *r)
{
    const struct rf_store *st = c->m->st;
    const char *status = str(r, "status");
    cJSON *audit = cJSON_CreateObject(), *res = NULL;
    const char *kind = NULL;
    char key[64];
    int rc = 0;

    if (audit == NULL) {
        return RF_ENOMEM;
    }
    cJSON_AddNumberToObject(audit, "referral", (double)c->id);
    if (c->version[0]) {
        cJSON_AddStringToObject(audit, "version", c->version);
    }
    switch (c->what) {
    case CH_MAPPED:
    case CH_REFUSED:
    case CH_FAILED:
        if (status == NULL || strcmp(status, "accepted") != 0) {
            break; /* mapped before: a repeat after a crash changes nothing */
        }
        if (c->what == CH_FAILED) {
            set_str(r, "capture_error", c->text);
            set_str(r, "capture_version", c->version);
            kind = "capture_failed";
            cJSON_AddStringToObject(audit, "error", c->text);
        } else if (c->what == CH_REFUSED) {
            set_str(r, "status", "refused");
            set_str(r, "reason", str(c->answer, "refuse"));
            cJSON_DeleteItemFromObjectCaseSensitive(r, "capture_error");
            kind = "refused";
            cJSON_AddStringToObject(audit, "reason", str(c->answer, "refuse"));
        } else {
            char *payload = payload_of(c);

            job_key(key, sizeof(key), c->id);
            rc = payload ? rf_outbox_add(txn, st, c->tenant, UPSERT_KIND, key,
                                         payload, 0, NULL)
                         : RF_ENOMEM;
            cJSON_free(payload);
            c->added = rc == 0;
            set_str(r, "status", "mapped");
            cJSON_DeleteItemFromObjectCaseSensitive(r, "capture_error");
            cJSON_DeleteItemFromObjectCaseSensitive(r, "crm");
            cJSON_AddItemToObject(r, "crm", cJSON_CreateObject());
            cJSON_AddStringToObject(cJSON_GetObjectItem(r, "crm"), "module",
                                    str(c->answer, "module"));
            kind = "mapped";
            cJSON_AddItemReferenceToObject(audit, "evidence", c->answer);
        }
        break;
    case CH_IN_CRM:
    case CH_CRM_DEAD:
        if (status == NULL || strcmp(status, "mapped") != 0) {
            break;
        }
        if (c->what == CH_CRM_DEAD) {
            set_str(r, "crm_error", c->text);
            kind = "crm_failed";
            cJSON_AddStringToObject(audit, "error", c->text);
            break;
        }
        res = cJSON_Parse(c->text ? c->text : "");
        if (str(res, "id") == NULL) {
            rc = RF_EPARSE;
            break;
        }
        set_str(r, "status", "in_crm");
        cJSON_AddStringToObject(cJSON_GetObjectItem(r, "crm"), "id",
                                str(res, "id"));
        rc = rf_referral_link(txn, st, c->tenant,
                              str(cJSON_GetObjectItem(r, "crm"), "module"),
                              str(res, "id"), c->id);
        kind = "in_crm";
        cJSON_AddItemReferenceToObject(audit, "evidence", res);
        break;
    }
    if (rc == 0 && kind != NULL) {
        rc = rf_referral_put(txn, st, c->tenant, r);
    }
    if (rc == 0 && kind != NULL) {
        rc = rf_audit_put(txn, st, c->tenant, kind, c->at_ms, audit);
    }
    cJSON_Delete(audit);
    cJSON_Delete(res);
    return rc;
}

static int run_change(MDB_txn *txn, struct rf_write_job *wj)
{
    struct change_job *c = (struct change_job *)wj;
    cJSON *r = NULL;
    int rc = rf_referral_get(txn, c->m->st, c->tenant, c->id, &r);

    c->added = 0;
    if (rc == 0) {
        rc = apply(txn, c, r);
    }
    cJSON_Delete(r);
    return rc;
}

static void on_changed(struct rf_write_job *wj)
{
    struct change_job *c = (struct change_job *)wj;

    if (wj->rc != 0) {
        rf_log_error("mapping", RF_F("tenant", c->tenant),
                     "cannot record a referral's change: %s",
                     rf_strerror(wj->rc));
    }
    if (c->added) {
        rf_outbox_kick(c->m->ob);
    }
    answer(c->done, c->done_arg, wj->rc,
           wj->rc ? rf_strerror(wj->rc) : NULL, c->version);
    cJSON_Delete(c->answer);
    free(c->text);
    free(c);
}

static struct change_job *change_new(struct rf_mapping *m, enum change what,
                                     const char *tenant, uint64_t id)
{
    struct change_job *c = calloc(1, sizeof(*c));

    if (c != NULL) {
        c->m = m;
        c->what = what;
        snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
        c->id = id;
        c->at_ms = now_ms();
        c->wj.run = run_change;
        c->wj.done = on_changed;
    }
    return c;
}

/* --- the capture hook --------------------------------------------------- */

struct capture_call {
    struct rf_mapping *m;
    char tenant[RF_TENANT_ID_MAX + 1];
    uint64_t id;
    rf_engine_done_cb done;
    void *done_arg;
};

/* What the hook answered is usable: a module and a record, or a refusal
 * reason. Writes what is wrong into err. */
static int answer_ok(const cJSON *v, char *err, size_t n)
{
    const cJSON *refuse = cJSON_GetObjectItemCaseSensitive(v, "refuse");
    const cJSON *module = cJSON_GetObjectItemCaseSensitive(v, "module");
    const cJSON *record = cJSON_GetObjectItemCaseSensitive(v, "record");
    const cJSON *dcf = cJSON_GetObjectItemCaseSensitive(v, DCF);

    if (cJSON_IsString(refuse) && refuse->valuestring[0] &&
        strlen(refuse->valuestring) < 48) {
        return 1;
    }
    if (!cJSON_IsString(module) || !cJSON_IsObject(record) ||
        (dcf != NULL && (!cJSON_IsArray(dcf) ||
                         cJSON_GetArraySize(dcf) > DCF_MAX))) {
        snprintf(err, n, "capture must return { module = \"Leads\", record = "
                         "{...}, duplicate_check_fields = {...} } or "
                         "{ refuse = \"reason\" }");
        return 0;
    }
    return 1;
}

static void on_capture(const struct rf_hook_result *res, void *arg)
{
    struct capture_call *cc = arg;
    char err[200];
    struct change_job *c;
    enum change what = CH_FAILED;

    if (res->rc == RF_ESTOPPING) {
        answer(cc->done, cc->done_arg, res->rc, res->error, res->version);
        free(cc);
        return; /* mapped at the next start */
    }
    if (res->rc == 0 && answer_ok(res->value, err, sizeof(err))) {
        what = cJSON_GetObjectItemCaseSensitive(res->value, "refuse")
                   ? CH_REFUSED
                   : CH_MAPPED;
    }
    c = change_new(cc->m, what, cc->tenant, cc->id);
    if (c == NULL) {
        answer(cc->done, cc->done_arg, RF_ENOMEM, "out of memory", NULL);
        free(cc);
        return;
    }
    snprintf(c->version, sizeof(c->version), "%s", res->version);
    c->done = cc->done;
    c->done_arg = cc->done_arg;
    if (what == CH_FAILED) {
        c->text = strdup(res->rc ? (res->error ? res->error
                                               : rf_strerror(res->rc))
                                 : err);
    } else {
        c->answer = cJSON_Duplicate(res->value, 1);
    }
    free(cc);
    rf_writer_submit(c->m->w, &c->wj);
}

/* Runs the capture hook for referral `id` unless it is past that step. */
static void map_one(struct rf_mapping *m, const char *tenant, uint64_t id,
                    rf_engine_done_cb done, void *done_arg)
{
    const struct rf_tenant *t = rf_engine_tenant(m->e, tenant);
    cJSON *r = NULL, *referrer = NULL, *args;
    struct capture_call *cc;
    const char *status;
    char event[32];
    int rc;

    if (t == NULL || !(t->hooks & (1u << RF_HOOK_CAPTURE))) {
        answer(done, done_arg, 0, NULL, t ? t->version : NULL);
        return; /* without a capture hook a referral stays accepted */
    }
    rc = rf_referral_with_referrer(m->st, tenant, id, &r, &referrer);
    status = str(r, "status");
    if (rc != 0 || status == NULL || strcmp(status, "accepted") != 0) {
        cJSON_Delete(r);
        cJSON_Delete(referrer);
        answer(done, done_arg, rc == RF_ENOTFOUND ? 0 : rc,
               rc ? rf_strerror(rc) : NULL, t->version);
        return;
    }
    args = rf_referral_hook_args(r, referrer);
    cc = calloc(1, sizeof(*cc));
    if (args == NULL || cc == NULL) {
        cJSON_Delete(args);
        free(cc);
        answer(done, done_arg, RF_ENOMEM, "out of memory", t->version);
        return;
    }
    cc->m = m;
    snprintf(cc->tenant, sizeof(cc->tenant), "%s", tenant);
    cc->id = id;
    cc->done = done;
    cc->done_arg = done_arg;
    snprintf(event, sizeof(event), "referral:%llu", (unsigned long long)id);
    if (rf_engine_call_value(m->e, tenant, "capture", args, event, on_capture,
                             cc) != 0) {
        free(cc);
        answer(done, done_arg, RF_ENOMEM, "out of memory", t->version);
    }
    cJSON_Delete(args);
}

static void on_native(struct rf_engine *e, const char *tenant,
                      const cJSON *input, const char *event,
                      rf_engine_done_cb done, void *done_arg, void *arg)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(input, "id");

    (void)e;
    (void)event;
    if (!cJSON_IsNumber(id) || id->valuedouble < 1) {
        answer(done, done_arg, RF_EINVAL, "expected {\"id\": N}", NULL);
        return;
    }
    map_one(arg, tenant, (uint64_t)id->valuedouble, done, done_arg);
}

/* --- the upsert job ------------------------------------------------------ */

struct upsert {
    struct rf_outbox_run *run;
};

static void on_upserted(const struct rf_zoho_write_result *res, void *arg)
{
    struct upsert *u = arg;
    struct rf_job_outcome o = {RF_JOB_OK, -1, NULL, NULL};
    char err[300], result[160];

    if (res->rc != 0) {
        o.result = res->rc == RF_ETIMEOUT ? RF_JOB_UNKNOWN : RF_JOB_TRANSIENT;
        if (res->n > 0 && res->items[0].status >= 400 &&
            res->items[0].status < 500 && res->items[0].status != 429 &&
            res->items[0].status != 401) {
            o.result = RF_JOB_PERMANENT;
        }
        snprintf(err, sizeof(err), "%s", res->error ? res->error
                                                    : rf_strerror(res->rc));
        o.error = err;
    } else if (res->n < 1 || !res->items[0].ok || !res->items[0].id[0]) {
        o.result = RF_JOB_PERMANENT;
        snprintf(err, sizeof(err), "Zoho refused the record: %s %s%s%s",
                 res->n ? res->items[0].code : "?",
                 res->n ? res->items[0].message : "",
                 res->n && res->items[0].api_name[0] ? " field " : "",
                 res->n ? res->items[0].api_name : "");
        o.error = err;
    } else {
        snprintf(result, sizeof(result), "{\"id\":\"%s\",\"action\":\"%s\"}",
                 res->items[0].id, res->items[0].action);
        o.result_json = result;
    }
    rf_outbox_finish(u->run, &o);
    free(u);
}

static void exec_upsert(const struct rf_job *job, struct rf_outbox_run *run,
                        void *arg)
{
    struct rf_mapping *m = arg;
    struct rf_zoho *z = rf_engine_zoho(m->e, job->tenant);
    cJSON *p = cJSON_Parse(job->payload), *records = NULL;
    const cJSON *dcf = cJSON_GetObjectItemCaseSensitive(p, DCF);
    const char *fields[DCF_MAX];
    struct rf_zoho_write_opts o = {0};
    struct rf_job_outcome out = {RF_JOB_PERMANENT, -1, NULL, NULL};
    struct upsert *u;
    size_t n = 0;
    int rc;

    if (z == NULL) {
        out.result = RF_JOB_TRANSIENT;
        out.error = "the tenant has no Zoho connection";
        cJSON_Delete(p);
        rf_outbox_finish(run, &out);
        return;
    }
    for (const cJSON *f = dcf ? dcf->child : NULL; f && n < DCF_MAX;
         f = f->next) {
        if (cJSON_IsString(f)) {
            fields[n++] = f->valuestring;
        }
    }
    o.module = str(p, "module");
    o.op = RF_ZOHO_UPSERT;
    o.duplicate_check_fields = n ? fields : NULL;
    o.n_duplicate_check_fields = n;
    records = cJSON_CreateArray();
    u = calloc(1, sizeof(*u));
    if (o.module == NULL || records == NULL || u == NULL ||
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(p, "record"))) {
        out.error = u ? "the job's payload is not an upsert" : "out of memory";
        out.result = u ? RF_JOB_PERMANENT : RF_JOB_TRANSIENT;
        cJSON_Delete(records);
        cJSON_Delete(p);
        free(u);
        rf_outbox_finish(run, &out);
        return;
    }
    cJSON_AddItemToArray(records, cJSON_Duplicate(
                                      cJSON_GetObjectItem(p, "record"), 1));
    u->run = run;
    rc = rf_zoho_write(z, &o, records, on_upserted, u);
    cJSON_Delete(records);
    cJSON_Delete(p);
    if (rc != 0) {
        free(u);
        out.result = RF_JOB_TRANSIENT;
        out.error = rf_strerror(rc);
        rf_outbox_finish(run, &out);
    }
}

void rf_mapping_settled(struct rf_mapping *m, const struct rf_job *job)
{
    cJSON *p;
    const cJSON *id;
    struct change_job *c;

    if (m == NULL || strcmp(job->kind, UPSERT_KIND) != 0 ||
        job->state == RF_JOB_PENDING) {
        return;
    }
    p = cJSON_Parse(job->payload);
    id = cJSON_GetObjectItemCaseSensitive(p, "referral");
    c = cJSON_IsNumber(id)
            ? change_new(m, job->state == RF_JOB_DONE ? CH_IN_CRM
                                                      : CH_CRM_DEAD,
                         job->tenant, (uint64_t)id->valuedouble)
            : NULL;
    cJSON_Delete(p);
    if (c == NULL) {
        return;
    }
    c->text = strdup(job->state == RF_JOB_DONE
                         ? (job->result ? job->result : "")
                         : (job->last_error ? job->last_error : "dead"));
    rf_writer_submit(m->w, &c->wj);
}

/* --- recovery ----------------------------------------------------------- */

struct recover_ctx {
    struct rf_mapping *m;
    const char *tenant;
    const char *version;
    uint64_t *accepted;
    size_t naccepted, cap;
    uint64_t *mapped;
    size_t nmapped, mcap;
};

static int push_id(uint64_t **v, size_t *n, size_t *cap, uint64_t id)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        uint64_t *nv = realloc(*v, nc * sizeof(**v));

        if (nv == NULL) {
            return RF_ENOMEM;
        }
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = id;
    return 0;
}

static int collect(const cJSON *r, void *arg)
{
    struct recover_ctx *x = arg;
    const char *status = str(r, "status");
    const char *failed = str(r, "capture_version");
    uint64_t id = (uint64_t)cJSON_GetObjectItem(r, "id")->valuedouble;

    if (status && strcmp(status, "accepted") == 0 &&
        (failed == NULL || strcmp(failed, x->version) != 0)) {
        return push_id(&x->accepted, &x->naccepted, &x->cap, id);
    }
    if (status && strcmp(status, "mapped") == 0 &&
        str(r, "crm_error") == NULL) {
        return push_id(&x->mapped, &x->nmapped, &x->mcap, id);
    }
    return 0;
}

static void recover_tenant(const char *tenant, void *arg)
{
    struct rf_mapping *m = arg;
    const struct rf_tenant *t = rf_engine_tenant(m->e, tenant);
    struct recover_ctx x = {m, tenant, t ? t->version : "", NULL, 0, 0,
                            NULL, 0, 0};
    MDB_txn *txn;

    if (t == NULL || rf_store_read_begin(m->st, &txn) != 0) {
        return;
    }
    (void)rf_referrals_each(txn, m->st, tenant, collect, &x);
    for (size_t i = 0; i < x.nmapped; i++) {
        struct rf_job job;
        char key[64];

        job_key(key, sizeof(key), x.mapped[i]);
        if (rf_outbox_find(txn, m->st, tenant, key, &job) == 0) {
            rf_mapping_settled(m, &job); /* done or dead: follow it up */
            rf_job_cleanup(&job);
        }
    }
    rf_store_read_end(m->st, txn);
    for (size_t i = 0; i < x.naccepted; i++) {
        map_one(m, tenant, x.accepted[i], NULL, NULL);
    }
    if (x.naccepted + x.nmapped > 0) {
        rf_log_info("mapping", RF_F("tenant", tenant),
                    "recovering %zu accepted and %zu mapped referrals",
                    x.naccepted, x.nmapped);
    }
    free(x.accepted);
    free(x.mapped);
}

void rf_mapping_recover(struct rf_mapping *m, const char *tenant)
{
    if (m == NULL) {
        return;
    }
    if (tenant != NULL) {
        recover_tenant(tenant, m);
    } else {
        rf_engine_each(m->e, recover_tenant, m);
    }
}

struct rf_mapping *rf_mapping_start(struct rf_engine *e, struct rf_outbox *ob)
{
    struct rf_mapping *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    m->e = e;
    m->ob = ob;
    m->st = rf_engine_store(e);
    m->w = rf_engine_writer(e);
    if (rf_engine_native(e, RF_MAPPING_HOOK, on_native, m) != 0 ||
        rf_outbox_executor(ob, UPSERT_KIND, exec_upsert, m) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void rf_mapping_free(struct rf_mapping *m)
{
    free(m);
}

/* Rewards on the script thread: the reward hook, the jobs that pay through
 * plugins or update the CRM, their follow-up, and recovery. */
#include "referee/reward.h"
#include "referee/crm_update.h"
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

#define ERR_KEEP 2048

struct rf_reward {
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

static void answer(rf_engine_done_cb done, void *arg, int rc, const char *error,
                   const char *version)
{
    struct rf_hook_result res = {rc, error, "null", version ? version : "",
                                 NULL};

    if (done != NULL) {
        done(&res, arg);
    }
}

/* --- recording, on the writer thread ------------------------------------ */

enum change { CH_DECIDE, CH_FAIL, CH_SETTLE };

struct change_job {
    struct rf_write_job wj; /* first: the writer hands this back */
    struct rf_reward *r;
    enum change what;
    enum rf_reward_phase phase;
    char tenant[RF_TENANT_ID_MAX + 1];
    uint64_t id;
    char version[17];
    cJSON *answer;     /* CH_DECIDE */
    char *error;       /* CH_FAIL */
    struct rf_job job; /* CH_SETTLE: a copy */
    int64_t at_ms;
    rf_engine_done_cb done;
    void *done_arg;
    struct rf_reward_outcome out;
};

static int run_change(MDB_txn *txn, struct rf_write_job *wj)
{
    struct change_job *c = (struct change_job *)wj;
    const struct rf_store *st = c->r->st;

    memset(&c->out, 0, sizeof(c->out));
    switch (c->what) {
    case CH_DECIDE:
        return rf_reward_decide(txn, st, c->tenant, c->id, c->phase, c->answer,
                                c->version, c->at_ms, &c->out);
    case CH_FAIL:
        return rf_reward_fail(txn, st, c->tenant, c->id, c->phase, c->error,
                              c->version, c->at_ms);
    case CH_SETTLE:
        return rf_reward_settle(txn, st, &c->job, c->at_ms);
    }
    return RF_EINVAL;
}

static void on_changed(struct rf_write_job *wj)
{
    struct change_job *c = (struct change_job *)wj;

    if (wj->rc != 0) {
        rf_log_error("reward", RF_F("tenant", c->tenant),
                     "cannot record a reward step of referral %llu: %s",
                     (unsigned long long)c->id, rf_strerror(wj->rc));
    } else if (c->what == CH_FAIL) {
        rf_log_warn("reward", RF_F("tenant", c->tenant, "version", c->version),
                    "the reward hook failed for referral %llu; it runs "
                    "again after a script change",
                    (unsigned long long)c->id);
    }
    if (c->out.jobs > 0) {
        rf_outbox_kick(c->r->ob);
    }
    answer(c->done, c->done_arg, wj->rc, wj->rc ? rf_strerror(wj->rc) : NULL,
           c->version);
    cJSON_Delete(c->answer);
    free(c->error);
    free(c->job.payload);
    free(c->job.last_error);
    free(c->job.result);
    free(c);
}

static struct change_job *change_new(struct rf_reward *r, enum change what,
                                     const char *tenant, uint64_t id)
{
    struct change_job *c = calloc(1, sizeof(*c));

    if (c != NULL) {
        c->r = r;
        c->what = what;
        snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
        c->id = id;
        c->at_ms = now_ms();
        c->wj.run = run_change;
        c->wj.done = on_changed;
    }
    return c;
}

/* --- the reward hook ---------------------------------------------------- */

struct hook_call {
    struct rf_reward *r;
    char tenant[RF_TENANT_ID_MAX + 1];
    uint64_t id;
    enum rf_reward_phase phase;
    rf_engine_done_cb done;
    void *done_arg;
};

static void on_hook(const struct rf_hook_result *res, void *arg)
{
    struct hook_call *hc = arg;
    struct change_job *c;
    char err[400];
    int ok;

    if (res->rc == RF_ESTOPPING) {
        answer(hc->done, hc->done_arg, res->rc, res->error, res->version);
        free(hc);
        return; /* decided at the next start */
    }
    ok = res->rc == 0 &&
         rf_reward_check(res->value, hc->phase, err, sizeof(err)) == 0;
    c = change_new(hc->r, ok ? CH_DECIDE : CH_FAIL, hc->tenant, hc->id);
    if (c == NULL) {
        answer(hc->done, hc->done_arg, RF_ENOMEM, "out of memory", NULL);
        free(hc);
        return;
    }
    c->phase = hc->phase;
    snprintf(c->version, sizeof(c->version), "%s", res->version);
    c->done = hc->done;
    c->done_arg = hc->done_arg;
    if (ok) {
        c->answer = res->value ? cJSON_Duplicate(res->value, 1) : NULL;
    } else {
        c->error = strndup(
            res->rc ? (res->error ? res->error : rf_strerror(res->rc)) : err,
            ERR_KEEP);
    }
    free(hc);
    rf_writer_submit(c->r->w, &c->wj);
}

/* Reads referral `id` and its referrer. Returns 0 or an RF_E* code. */
/* Runs the reward hook for referral `id` when a step is due. */
static void decide_one(struct rf_reward *r, const char *tenant, uint64_t id,
                       rf_engine_done_cb done, void *done_arg)
{
    const struct rf_tenant *t = rf_engine_tenant(r->e, tenant);
    cJSON *ref = NULL, *referrer = NULL, *args = NULL;
    struct hook_call *hc = NULL;
    enum rf_reward_phase phase;
    char event[32];
    int rc;

    if (t == NULL || !(t->hooks & (1u << RF_HOOK_REWARD))) {
        answer(done, done_arg, 0, NULL, t ? t->version : NULL);
        return; /* without a reward hook a referral stays qualified */
    }
    rc = rf_referral_with_referrer(r->st, tenant, id, &ref, &referrer);
    if (rc != 0 || !rf_reward_due(ref, t->version, &phase)) {
        cJSON_Delete(ref);
        cJSON_Delete(referrer);
        answer(done, done_arg, rc == RF_ENOTFOUND ? 0 : rc,
               rc && rc != RF_ENOTFOUND ? rf_strerror(rc) : NULL, t->version);
        return;
    }
    args = rf_referral_hook_args(ref, referrer);
    hc = calloc(1, sizeof(*hc));
    if (args == NULL || hc == NULL) {
        cJSON_Delete(args);
        free(hc);
        answer(done, done_arg, RF_ENOMEM, "out of memory", t->version);
        return;
    }
    *hc = (struct hook_call){
        .r = r, .id = id, .phase = phase, .done = done, .done_arg = done_arg};
    snprintf(hc->tenant, sizeof(hc->tenant), "%s", tenant);
    snprintf(event, sizeof(event), "referral:%llu", (unsigned long long)id);
    if (rf_engine_call_value(r->e, tenant, "reward", args, event, on_hook,
                             hc) != 0) {
        free(hc);
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
    decide_one(arg, tenant, (uint64_t)id->valuedouble, done, done_arg);
}

/* --- the jobs ----------------------------------------------------------- */

struct pay {
    struct rf_outbox_run *run;
};

/* The plugin's answer: { ok = true, id = ..., amount = ... }, or nil,
 * "message", "transient" | "permanent" | "unknown". */
static void on_paid(const struct rf_hook_result *res, void *arg)
{
    struct pay *p = arg;
    struct rf_job_outcome o = {RF_JOB_UNKNOWN, -1, NULL, NULL};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(res->value, "value");
    const char *code = str(res->value, "code");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
    const cJSON *amount = cJSON_GetObjectItemCaseSensitive(v, "amount");
    cJSON *keep = NULL;
    char *text = NULL, err[ERR_KEEP];

    if (res->rc != 0) {
        /* A plugin stopped midway may have paid: retry with the key. */
        o.result = res->rc == RF_ENOTFOUND ? RF_JOB_TRANSIENT : RF_JOB_UNKNOWN;
        snprintf(err, sizeof(err), "%s",
                 res->error ? res->error : rf_strerror(res->rc));
        o.error = err;
    } else if (cJSON_IsObject(v) &&
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "ok"))) {
        o.result = RF_JOB_OK;
        keep = cJSON_CreateObject();
        if (keep != NULL && cJSON_IsString(id)) {
            cJSON_AddStringToObject(keep, "id", id->valuestring);
        } else if (keep != NULL && cJSON_IsNumber(id)) {
            cJSON_AddNumberToObject(keep, "id", id->valuedouble);
        }
        if (keep != NULL && cJSON_IsNumber(amount)) {
            cJSON_AddNumberToObject(keep, "amount", amount->valuedouble);
        }
        text = keep ? cJSON_PrintUnformatted(keep) : NULL;
        o.result_json = text;
    } else {
        if (code != NULL && strcmp(code, "transient") == 0) {
            o.result = RF_JOB_TRANSIENT;
        } else if (code != NULL && strcmp(code, "permanent") == 0) {
            o.result = RF_JOB_PERMANENT;
        }
        snprintf(err, sizeof(err), "%s",
                 str(res->value, "message") ? str(res->value, "message")
                                            : "the plugin did not say ok");
        o.error = err;
    }
    rf_outbox_finish(p->run, &o);
    cJSON_free(text);
    cJSON_Delete(keep);
    free(p);
}

static void exec_pay(const struct rf_job *job, struct rf_outbox_run *run,
                     void *arg)
{
    struct rf_reward *r = arg;
    cJSON *payload = cJSON_Parse(job->payload), *input = cJSON_CreateArray();
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(payload, "action");
    const char *plugin = str(action, "plugin");
    struct rf_job_outcome out = {RF_JOB_PERMANENT, -1, NULL, NULL};
    struct pay *p = calloc(1, sizeof(*p));
    char event[48];

    if (plugin == NULL && strcmp(str(action, "kind") ? str(action, "kind") : "",
                                 "webhook") == 0) {
        plugin = "webhook";
    }
    if (p == NULL || input == NULL || plugin == NULL) {
        out.result = p && input ? RF_JOB_PERMANENT : RF_JOB_TRANSIENT;
        out.error = p && input ? "the job names no plugin" : "out of memory";
        free(p);
        cJSON_Delete(input);
        cJSON_Delete(payload);
        rf_outbox_finish(run, &out);
        return;
    }
    cJSON_AddItemToArray(input, cJSON_Duplicate(action, 1));
    cJSON_AddItemToArray(input, cJSON_CreateString(job->key));
    p->run = run;
    snprintf(event, sizeof(event), "job:%llu", (unsigned long long)job->id);
    if (rf_engine_call_plugin(r->e, job->tenant, plugin, "pay", input, event,
                              on_paid, p) != 0) {
        free(p);
        out.result = RF_JOB_TRANSIENT;
        out.error = "out of memory";
        rf_outbox_finish(run, &out);
    }
    cJSON_Delete(input);
    cJSON_Delete(payload);
}

static void exec_crm(const struct rf_job *job, struct rf_outbox_run *run,
                     void *arg)
{
    struct rf_reward *r = arg;
    cJSON *payload = cJSON_Parse(job->payload);
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(payload, "action");

    rf_crm_update_run(r->e, job->tenant, str(action, "module"),
                      str(action, "id"),
                      cJSON_GetObjectItemCaseSensitive(action, "fields"), run);
    cJSON_Delete(payload);
}

void rf_reward_settled(struct rf_reward *r, const struct rf_job *job)
{
    struct change_job *c;

    if (r == NULL || job->state == RF_JOB_PENDING ||
        (strcmp(job->kind, RF_REWARD_KIND_PAY) != 0 &&
         strcmp(job->kind, RF_REWARD_KIND_CRM) != 0)) {
        return;
    }
    c = change_new(r, CH_SETTLE, job->tenant, 0);
    if (c == NULL) {
        return; /* settled again at the next start */
    }
    c->job = *job;
    c->job.payload = strdup(job->payload ? job->payload : "{}");
    c->job.last_error = job->last_error ? strdup(job->last_error) : NULL;
    c->job.result = job->result ? strdup(job->result) : NULL;
    rf_writer_submit(r->w, &c->wj);
}

/* --- recovery ----------------------------------------------------------- */

struct recover_ctx {
    struct rf_reward *r;
    const char *tenant;
    const char *version;
    MDB_txn *txn;
    uint64_t *due;
    size_t ndue, cap;
};

/* Settles the finished jobs of a decision whose follow-up did not commit
 * before a crash. */
static void settle_decided(struct recover_ctx *x, const cJSON *ref,
                           const char *field, const char *prefix)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(ref, field);
    const cJSON *actions = cJSON_GetObjectItemCaseSensitive(d, "actions");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(ref, "id");
    char key[RF_JOB_KEY_MAX];
    struct rf_job job;

    for (const cJSON *a = cJSON_IsArray(actions) ? actions->child : NULL; a;
         a = a->next) {
        snprintf(key, sizeof(key), "%s:%llu:%s", prefix,
                 (unsigned long long)id->valuedouble,
                 str(a, "rule") ? str(a, "rule") : "");
        if (rf_outbox_find(x->txn, x->r->st, x->tenant, key, &job) == 0) {
            rf_reward_settled(x->r, &job); /* recorded once, in the txn */
            rf_job_cleanup(&job);
        }
    }
}

static int collect(const cJSON *ref, void *arg)
{
    struct recover_ctx *x = arg;
    enum rf_reward_phase phase;
    const char *status = str(ref, "status");

    if (rf_reward_due(ref, x->version, &phase)) {
        if (x->ndue == x->cap) {
            size_t nc = x->cap ? x->cap * 2 : 64;
            uint64_t *nv = realloc(x->due, nc * sizeof(*nv));

            if (nv == NULL) {
                return RF_ENOMEM;
            }
            x->due = nv;
            x->cap = nc;
        }
        x->due[x->ndue++] =
            (uint64_t)cJSON_GetObjectItem(ref, "id")->valuedouble;
    }
    if (status != NULL && strcmp(status, "rewarded") == 0) {
        settle_decided(x, ref, "reward", "reward");
    }
    if (cJSON_GetObjectItemCaseSensitive(ref, "clawback") != NULL) {
        settle_decided(x, ref, "clawback", "clawback");
    }
    return 0;
}

static void recover_tenant(const char *tenant, void *arg)
{
    struct rf_reward *r = arg;
    const struct rf_tenant *t = rf_engine_tenant(r->e, tenant);
    struct recover_ctx x = {r, tenant, t ? t->version : "", NULL, NULL, 0, 0};

    if (t == NULL || rf_store_read_begin(r->st, &x.txn) != 0) {
        return;
    }
    (void)rf_referrals_each(x.txn, r->st, tenant, collect, &x);
    rf_store_read_end(r->st, x.txn);
    if (x.ndue > 0 && (t->hooks & (1u << RF_HOOK_REWARD))) {
        rf_log_info("reward", RF_F("tenant", tenant),
                    "deciding the rewards of %zu referrals", x.ndue);
    }
    for (size_t i = 0; i < x.ndue; i++) {
        decide_one(r, tenant, x.due[i], NULL, NULL);
    }
    free(x.due);
}

void rf_reward_recover(struct rf_reward *r, const char *tenant)
{
    if (r == NULL) {
        return;
    }
    if (tenant != NULL) {
        recover_tenant(tenant, r);
    } else {
        rf_engine_each(r->e, recover_tenant, r);
    }
}

struct rf_reward *rf_reward_start(struct rf_engine *e, struct rf_outbox *ob)
{
    struct rf_reward *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->e = e;
    r->ob = ob;
    r->st = rf_engine_store(e);
    r->w = rf_engine_writer(e);
    if (rf_engine_native(e, RF_REWARD_HOOK, on_native, r) != 0 ||
        rf_outbox_executor(ob, RF_REWARD_KIND_PAY, exec_pay, r) != 0 ||
        rf_outbox_executor(ob, RF_REWARD_KIND_CRM, exec_crm, r) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void rf_reward_free(struct rf_reward *r)
{
    free(r);
}

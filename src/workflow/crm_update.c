/* One CRM record updated by an outbox job. */
#include "referee/crm_update.h"
#include "referee/error.h"
#include "referee/zoho.h"
#include "referee/zoho_records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct update {
    struct rf_outbox_run *run;
};

static void on_updated(const struct rf_zoho_write_result *res, void *arg)
{
    struct update *u = arg;
    struct rf_job_outcome o = {RF_JOB_OK, -1, NULL, NULL};
    char err[300], result[64];

    if (res->rc != 0) {
        o.result = res->rc == RF_ETIMEOUT ? RF_JOB_UNKNOWN : RF_JOB_TRANSIENT;
        snprintf(err, sizeof(err), "%s",
                 res->error ? res->error : rf_strerror(res->rc));
        o.error = err;
    } else if (res->n < 1 || !res->items[0].ok) {
        o.result = RF_JOB_PERMANENT;
        snprintf(err, sizeof(err), "Zoho refused the update: %s %s",
                 res->n ? res->items[0].code : "?",
                 res->n ? res->items[0].message : "");
        o.error = err;
    } else {
        snprintf(result, sizeof(result), "{\"id\":\"%s\"}", res->items[0].id);
        o.result_json = result;
    }
    rf_outbox_finish(u->run, &o);
    free(u);
}

void rf_crm_update_run(struct rf_engine *e, const char *tenant,
                       const char *module, const char *id,
                       const cJSON *fields, struct rf_outbox_run *run)
{
    struct rf_zoho *z = rf_engine_zoho(e, tenant);
    struct rf_zoho_write_opts o = {0};
    struct rf_job_outcome out = {RF_JOB_TRANSIENT, -1, NULL, NULL};
    cJSON *records = cJSON_CreateArray();
    cJSON *rec = cJSON_IsObject(fields) ? cJSON_Duplicate(fields, 1) : NULL;
    struct update *u = calloc(1, sizeof(*u));
    int rc = RF_ENOMEM;

    o.module = module;
    o.op = RF_ZOHO_UPDATE;
    if (z == NULL) {
        out.error = "the tenant has no Zoho connection";
    } else if (module == NULL || id == NULL || !cJSON_IsObject(fields)) {
        out.result = RF_JOB_PERMANENT;
        out.error = "the job is not an update of one record";
    } else if (records != NULL && rec != NULL && u != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "id");
        cJSON_AddStringToObject(rec, "id", id);
        cJSON_AddItemToArray(records, rec);
        rec = NULL;
        u->run = run;
        rc = rf_zoho_write(z, &o, records, on_updated, u);
        out.error = rc ? rf_strerror(rc) : NULL;
    }
    cJSON_Delete(rec);
    cJSON_Delete(records);
    if (rc != 0) {
        free(u);
        out.error = out.error ? out.error : "out of memory";
        rf_outbox_finish(run, &out);
    }
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void exec_writeback(const struct rf_job *job, struct rf_outbox_run *run,
                           void *arg)
{
    cJSON *p = cJSON_Parse(job->payload);

    rf_crm_update_run(arg, job->tenant, str(p, "module"), str(p, "id"),
                      cJSON_GetObjectItemCaseSensitive(p, "fields"), run);
    cJSON_Delete(p);
}

int rf_crm_writeback_executor(struct rf_outbox *ob, struct rf_engine *e)
{
    return rf_outbox_executor(ob, RF_CRM_WRITEBACK_KIND, exec_writeback, e);
}

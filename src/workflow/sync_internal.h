/* Private to the Zoho sync's files: its state per tenant, a set of records
 * on their way through hooks, and the functions the files share.
 *
 *   sync.c         tenants, polling, start and stop, figures
 *   sync_work.c    hooks over a set of records and what they commit
 *   sync_notify.c  Watch callbacks, the retry list, fetching by id, the
 *                  Watch channel
 */
#ifndef REFEREE_WORKFLOW_SYNC_INTERNAL_H
#define REFEREE_WORKFLOW_SYNC_INTERNAL_H

#include "referee/sync.h"
#include "referee/crm_update.h"
#include "referee/error.h"
#include "referee/log.h"
#include "referee/milestone.h"
#include "referee/outbox.h"
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
    int inflight;  /* fetches by id and record sets under way */
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

int64_t rf__sync_now_ms(void);

struct tsync *rf__sync_find(struct rf_sync *s, const char *tenant);

uint64_t rf__sync_fnv(uint64_t h, const char *s);

struct seen *rf__sync_seen_slot(struct tsync *ts, uint64_t rec);

const struct rf_tenant_zoho *rf__sync_zoho_settings(struct rf_sync *s,
                                                  const char *tenant);

int rf__sync_has_hook(struct rf_sync *s, const char *tenant, enum rf_hook h);

const char *rf__sync_module_fields(const char *module, const char *fields,
                                 char *buf, size_t n);

const char *rf__sync_converted_of(const char *module);

void rf__sync_schedule(struct tsync *ts, uint64_t ms);

/* A record set for ts (counted as under way until freed). */
struct work *rf__sync_work_new(struct tsync *ts, const char *module);

/* Frees a record set that never started. Accepts NULL. */
void rf__sync_work_discard(struct work *w);

void rf__sync_start_work(struct tsync *ts, struct work *w);

int rf__sync_fetch(struct tsync *ts, const char *module, const char *ids,
                 int retry, int force, rf_engine_done_cb done,
                 void *done_arg);

void rf__sync_follow_channel(struct tsync *ts, const struct rf_tenant_zoho *zs);

void rf__sync_rerun_failed(struct tsync *ts);

void rf__sync_on_notify(struct rf_engine *e, const char *tenant,
                      const cJSON *input, const char *event,
                      rf_engine_done_cb done, void *done_arg, void *arg);

#endif

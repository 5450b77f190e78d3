/* Stored events to their source's hook, with durable outcomes. */
#include "referee/dispatch.h"
#include "referee/error.h"
#include "referee/events.h"
#include "referee/intake.h"
#include "referee/mapping.h"
#include "referee/sync.h"
#include "referee/log.h"
#include "referee/script_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define INFLIGHT_MAX 64
#define ERROR_KEEP 1000
#define RESULT_KEEP 4096 /* bytes of a hook's returned value kept */

#define TENANT_INFLIGHT_MAX 2 /* events of one tenant at the script thread */

/* One tenant's events waiting for the script thread. Tenants take turns,
 * and each has at most TENANT_INFLIGHT_MAX events there at once, so a
 * tenant whose hook is slow (or runs away) delays its own events, and
 * others' by at most that many calls. */
struct tq {
    struct tq *next;
    char tenant[RF_TENANT_ID_MAX + 1];
    struct item *head, *tail;
    size_t queued, inflight;
    /* The seqs queued or at the script thread (open addressing, 0 free):
     * a recovery after a reload must not queue them a second time (a
     * reviewer's reload storm ran each waiting event up to 8 times). */
    uint64_t *seqs;
    size_t seqs_cap, seqs_n;
};

struct item {
    struct item *next;
    struct rf_dispatch *d;
    struct tq *q;
    char tenant[RF_TENANT_ID_MAX + 1];
    uint64_t seq;
};

struct outcome_job {
    struct rf_write_job wj; /* first: the writer hands this back */
    struct rf_dispatch *d;
    struct tq *q;
    uint64_t seq;
    struct rf_store *store;
    unsigned char key[RF_TENANT_ID_MAX + 1 + 8];
    size_t klen;
    char *value;
};

struct rf_dispatch {
    uv_loop_t *loop;
    struct rf_store *store;
    struct rf_writer *writer;
    struct rf_runtime *rt;
    const struct rf_tenants *const *tenants;
    struct tq *queues; /* one per tenant that had events, kept */
    struct tq *turn;   /* the queue served last; the next one goes next */
    size_t queued, inflight;
    struct rf_dispatch_stats stats;
};

/* --- the set of events under way, per tenant ----------------------------- */

static size_t slot_of(uint64_t seq, size_t cap)
{
    return (size_t)((seq * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static int seqs_has(const struct tq *q, uint64_t seq)
{
    if (q->seqs_n == 0) {
        return 0;
    }
    for (size_t i = slot_of(seq, q->seqs_cap);;
         i = (i + 1) & (q->seqs_cap - 1)) {
        if (q->seqs[i] == seq) {
            return 1;
        }
        if (q->seqs[i] == 0) {
            return 0;
        }
    }
}

static int seqs_grow(struct tq *q)
{
    size_t cap = q->seqs_cap ? q->seqs_cap * 2 : 64;
    uint64_t *old = q->seqs, *v = calloc(cap, sizeof(*v));

    if (v == NULL) {
        return RF_ENOMEM;
    }
    for (size_t i = 0; i < q->seqs_cap; i++) {
        if (old[i] != 0) {
            size_t j = slot_of(old[i], cap);

            while (v[j] != 0) {
                j = (j + 1) & (cap - 1);
            }
            v[j] = old[i];
        }
    }
    free(old);
    q->seqs = v;
    q->seqs_cap = cap;
    return 0;
}

static int seqs_add(struct tq *q, uint64_t seq)
{
    size_t i;

    if ((q->seqs_n + 1) * 2 > q->seqs_cap && seqs_grow(q) != 0) {
        return RF_ENOMEM;
    }
    for (i = slot_of(seq, q->seqs_cap); q->seqs[i] != 0;
         i = (i + 1) & (q->seqs_cap - 1)) {
    }
    q->seqs[i] = seq;
    q->seqs_n++;
    return 0;
}

/* Removes seq, moving back the entries after it that its slot kept
 * from their own (linear probing's deletion). */
static void seqs_del(struct tq *q, uint64_t seq)
{
    size_t i, j, mask = q->seqs_cap - 1;

    if (q->seqs_n == 0) {
        return;
    }
    for (i = slot_of(seq, q->seqs_cap); q->seqs[i] != seq;
         i = (i + 1) & mask) {
        if (q->seqs[i] == 0) {
            return;
        }
    }
    q->seqs[i] = 0;
    q->seqs_n--;
    for (j = (i + 1) & mask; q->seqs[j] != 0; j = (j + 1) & mask) {
        size_t home = slot_of(q->seqs[j], q->seqs_cap);

        /* Move it when its home is not in (i, j] (cyclically). */
        if ((j > i && (home <= i || home > j)) ||
            (j < i && (home <= i && home > j))) {
            q->seqs[i] = q->seqs[j];
            q->seqs[j] = 0;
            i = j;
        }
    }
}

/* An event left the script thread (its outcome is recorded, or could not
 * be): its tenant and the dispatcher have room for one more, and a later
 * recovery may queue it again. */
static void settled(struct rf_dispatch *d, struct tq *q, uint64_t seq)
{
    d->inflight--;
    q->inflight--;
    seqs_del(q, seq);
}

static size_t outcome_key(unsigned char *k, const char *tenant, uint64_t seq)
{
    size_t tlen = strlen(tenant);

    memcpy(k, tenant, tlen);
    k[tlen] = 0;
    rf_store_put_be64(k + tlen + 1, seq);
    return tlen + 9;
}

static void pump(struct rf_dispatch *d);

/* --- outcomes ----------------------------------------------------------- */

static int run_outcome(MDB_txn *txn, struct rf_write_job *wj)
{
    struct outcome_job *j = (struct outcome_job *)wj;
    MDB_val k = {j->klen, j->key}, v = {strlen(j->value), j->value};

    return rf_store_rc(
        mdb_put(txn, rf_store_dbi(j->store, RF_DB_OUTCOMES), &k, &v, 0));
}

static void on_outcome_written(struct rf_write_job *wj)
{
    struct outcome_job *j = (struct outcome_job *)wj;
    struct rf_dispatch *d = j->d;

    if (wj->rc != 0) {
        rf_log_error("dispatch", RF_NOF,
                     "cannot record an outcome (%s); the event runs again "
                     "at the next start",
                     rf_strerror(wj->rc));
    }
    settled(d, j->q, j->seq);
    cJSON_free(j->value);
    free(j);
    pump(d);
}

/* Adds what the hook returned (JSON text) as "result": the value itself
 * when its text is at most RESULT_KEEP bytes, else the start of the text,
 * cut at a character boundary, and "result_truncated": true. */
static void add_result(cJSON *o, const char *json)
{
    size_t len = json ? strlen(json) : 0, cut = RESULT_KEEP;
    char head[RESULT_KEEP + 1];
    cJSON *v;

    if (len == 0) {
        return;
    }
    if (len <= RESULT_KEEP) {
        v = cJSON_ParseWithLength(json, len);
        if (v != NULL) {
            cJSON_AddItemToObject(o, "result", v);
        }
        return;
    }
    while (cut > 0 && ((unsigned char)json[cut] & 0xC0) == 0x80) {
        cut--; /* not inside a UTF-8 sequence */
    }
    memcpy(head, json, cut);
    head[cut] = '\0';
    cJSON_AddStringToObject(o, "result", head);
    cJSON_AddTrueToObject(o, "result_truncated");
}

static void record(struct rf_dispatch *d, struct tq *q, const char *tenant,
                   uint64_t seq, const struct rf_hook_result *res)
{
    struct outcome_job *j = calloc(1, sizeof(*j));
    cJSON *o = cJSON_CreateObject();
    char err[ERROR_KEEP + 1];

    if (j == NULL || o == NULL) {
        cJSON_Delete(o);
        free(j);
        settled(d, q, seq); /* not recorded: runs again at the next start */
        return;
    }
    cJSON_AddStringToObject(o, "status", res->rc == 0 ? "done" : "failed");
    cJSON_AddStringToObject(o, "version", res->version);
    cJSON_AddNumberToObject(o, "at", (double)time(NULL));
    if (res->rc != 0) {
        snprintf(err, sizeof(err), "%s", res->error ? res->error : "");
        cJSON_AddStringToObject(o, "error", err);
    } else {
        add_result(o, res->json);
    }
    j->value = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    j->wj.run = run_outcome;
    j->wj.done = on_outcome_written;
    j->d = d;
    j->q = q;
    j->seq = seq;
    j->store = d->store;
    j->klen = outcome_key(j->key, tenant, seq);
    if (j->value == NULL) {
        free(j);
        settled(d, q, seq);
        return;
    }
    rf_writer_submit(d->writer, &j->wj);
}

/* --- running ------------------------------------------------------------ */

static void on_reply(const struct rf_hook_result *res, void *arg)
{
    struct item *it = arg;
    struct rf_dispatch *d = it->d;

    if (res->rc == RF_ESTOPPING) {
        /* Cut short by a stop, not failed: without an outcome the event
         * runs at the next start. */
        char id[RF_EVENT_ID_LEN + 1];

        rf_event_id(it->seq, id);
        rf_log_info("dispatch", RF_F("tenant", it->tenant, "event", id),
                    "stopped before its hook ended; it runs at the next "
                    "start");
        settled(d, it->q, it->seq);
        free(it);
        return;
    }
    if (res->rc == 0) {
        d->stats.done++;
    } else {
        d->stats.failed++;
    }
    record(d, it->q, it->tenant, it->seq, res);
    free(it);
}

/* The hook for an event: its source's, if the tenant and source still
 * exist and the source names one. */
static const char *hook_of(struct rf_dispatch *d, const char *tenant,
                           const char *source)
{
    const struct rf_tenant *t =
        rf_tenant_find(*d->tenants, tenant, strlen(tenant));
    const struct rf_source *s =
        t && !t->error ? rf_source_find(t, source, strlen(source)) : NULL;

    if (t && !t->error && strcmp(source, RF_INTAKE_ZOHO_SOURCE) == 0) {
        return t->zoho && t->zoho->notify_token ? RF_SYNC_NOTIFY_HOOK : NULL;
    }
    return s ? s->hook : NULL;
}

/* Builds the hook's input: the event, plus its body decoded when JSON. */
static char *input_of(struct rf_dispatch *d, struct item *it, char *source,
                      size_t srclen)
{
    cJSON *ev = rf_event_load_json(d->store, it->tenant, it->seq);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(ev, "body");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(ev, "source");
    char err[96], *text;

    if (ev == NULL) {
        return NULL;
    }
    snprintf(source, srclen, "%s", cJSON_IsString(src) ? src->valuestring
                                                       : "");
    if (cJSON_IsString(body)) {
        cJSON *json = rf_api_parse_json(body->valuestring,
                                        strlen(body->valuestring), err,
                                        sizeof(err));

        if (json) {
            cJSON_AddItemToObject(ev, "json", json);
        }
    }
    text = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    return text;
}

static void start(struct rf_dispatch *d, struct item *it)
{
    char source[RF_TENANT_ID_MAX + 1], id[RF_EVENT_ID_LEN + 1];
    char *input = input_of(d, it, source, sizeof(source));
    const char *hook = input ? hook_of(d, it->tenant, source) : NULL;

    if (hook == NULL) {
        cJSON_free(input);
        seqs_del(it->q, it->seq);
        free(it); /* deleted tenant or source, or no hook any more */
        return;
    }
    rf_event_id(it->seq, id);
    d->inflight++;
    it->q->inflight++;
    d->stats.dispatched++;
    if (rf_runtime_call(d->rt, it->tenant, hook, input, strlen(input), id,
                        on_reply, it) != 0) {
        settled(d, it->q, it->seq);
        free(it);
    }
    cJSON_free(input);
}

/* The next tenant in turn with an event waiting and room at the script
 * thread, or NULL. */
static struct tq *next_ready(struct rf_dispatch *d)
{
    struct tq *q = d->turn && d->turn->next ? d->turn->next : d->queues;

    for (struct tq *first = q; q != NULL;) {
        if (q->queued > 0 && q->inflight < TENANT_INFLIGHT_MAX) {
            return q;
        }
        q = q->next ? q->next : d->queues;
        if (q == first) {
            break;
        }
    }
    return NULL;
}

static void pump(struct rf_dispatch *d)
{
    struct tq *q;

    while (d->queued > 0 && d->inflight < INFLIGHT_MAX &&
           (q = next_ready(d)) != NULL) {
        struct item *it = q->head;

        q->head = it->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        q->queued--;
        d->queued--;
        d->turn = q;
        start(d, it);
    }
}

static struct tq *queue_of(struct rf_dispatch *d, const char *tenant)
{
    struct tq *q = d->queues;

    while (q != NULL && strcmp(q->tenant, tenant) != 0) {
        q = q->next;
    }
    if (q == NULL && (q = calloc(1, sizeof(*q))) != NULL) {
        snprintf(q->tenant, sizeof(q->tenant), "%s", tenant);
        q->next = d->queues;
        d->queues = q;
    }
    return q;
}

static void enqueue(struct rf_dispatch *d, const char *tenant, uint64_t seq)
{
    struct tq *q = queue_of(d, tenant);
    struct item *it;

    if (q != NULL && seqs_has(q, seq)) {
        return; /* queued or running already */
    }
    it = q ? calloc(1, sizeof(*it)) : NULL;
    if (it == NULL || seqs_add(q, seq) != 0) {
        free(it);
        return; /* not dispatched now: recovered at the next start */
    }
    it->d = d;
    it->q = q;
    snprintf(it->tenant, sizeof(it->tenant), "%s", tenant);
    it->seq = seq;
    if (q->tail) {
        q->tail->next = it;
    } else {
        q->head = it;
    }
    q->tail = it;
    q->queued++;
    d->queued++;
}

void rf_dispatch_event(struct rf_dispatch *d, const char *tenant,
                       const char *source, uint64_t seq)
{
    if (hook_of(d, tenant, source) == NULL) {
        return;
    }
    enqueue(d, tenant, seq);
    pump(d);
}

/* --- recovery ----------------------------------------------------------- */

/* Whether an event needs running: no outcome yet, or failed under another
 * version than the current one. */
static int needs_run(MDB_txn *txn, struct rf_dispatch *d,
                     const struct rf_tenant *t, uint64_t seq)
{
    unsigned char key[RF_TENANT_ID_MAX + 1 + 8];
    MDB_val k = {outcome_key(key, t->id, seq), key}, v;
    const cJSON *status, *version;
    cJSON *o;
    int run;

    if (mdb_get(txn, rf_store_dbi(d->store, RF_DB_OUTCOMES), &k, &v) != 0) {
        return 1;
    }
    o = cJSON_ParseWithLength(v.mv_data, v.mv_size);
    status = cJSON_GetObjectItemCaseSensitive(o, "status");
    version = cJSON_GetObjectItemCaseSensitive(o, "version");
    run = cJSON_IsString(status) &&
          strcmp(status->valuestring, "failed") == 0 &&
          cJSON_IsString(version) &&
          strcmp(version->valuestring, t->version) != 0;
    cJSON_Delete(o);
    return run;
}

static int has_hooked_source(const struct rf_tenant *t)
{
    for (size_t i = 0; i < t->nsources; i++) {
        if (t->sources[i].hook) {
            return 1;
        }
    }
    return 0;
}

/* Scans one tenant's events in one read transaction. */
static long recover_tenant(struct rf_dispatch *d, const struct rf_tenant *t)
{
    size_t tlen = strlen(t->id);
    unsigned char start[RF_TENANT_ID_MAX + 1 + 8];
    MDB_val k = {outcome_key(start, t->id, 1), start}, v;
    MDB_cursor *cur = NULL;
    MDB_txn *txn = NULL;
    long n = 0;
    int mrc;

    if (rf_store_read_begin(d->store, &txn) != 0 ||
        mdb_cursor_open(txn, rf_store_dbi(d->store, RF_DB_EVENTS), &cur)) {
        rf_store_read_end(d->store, txn);
        return RF_ESTORE;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct rf_event ev;
        const struct rf_source *s;
        uint64_t seq;

        if (k.mv_size != tlen + 9 || memcmp(k.mv_data, start, tlen + 1)) {
            break;
        }
        seq = rf_store_get_be64((unsigned char *)k.mv_data + tlen + 1);
        if (rf_event_decode(v.mv_data, v.mv_size, &ev) != 0) {
            continue;
        }
        s = rf_source_find(t, ev.source, ev.source_len);
        if (s && s->hook && needs_run(txn, d, t, seq)) {
            enqueue(d, t->id, seq);
            n++;
        }
    }
    mdb_cursor_close(cur);
    rf_store_read_end(d->store, txn);
    if (rf_store_scan_rc(mrc) != 0) {
        return RF_ESTORE; /* what it queued runs; the rest at next start */
    }
    return n;
}

long rf_dispatch_recover(struct rf_dispatch *d, const char *tenant)
{
    const struct rf_tenants *ts = *d->tenants;
    long total = 0;

    for (size_t i = 0; i < ts->n; i++) {
        const struct rf_tenant *t = &ts->v[i];
        long n;

        if (t->error || !has_hooked_source(t) ||
            (tenant && strcmp(tenant, t->id) != 0)) {
            continue;
        }
        n = recover_tenant(d, t);
        if (n < 0) {
            return n;
        }
        total += n;
    }
    if (total > 0) {
        rf_log_info("dispatch", RF_F("tenant", tenant),
                    "%ld events to run (never run, or failed under an "
                    "older script)",
                    total);
    }
    pump(d);
    return total;
}

size_t rf_dispatch_pending(const struct rf_dispatch *d)
{
    return d->queued + d->inflight;
}

void rf_dispatch_stats(const struct rf_dispatch *d,
                       struct rf_dispatch_stats *out)
{
    *out = d->stats;
}

struct rf_dispatch *rf_dispatch_new(uv_loop_t *loop, struct rf_store *store,
                                    struct rf_writer *writer,
                                    struct rf_runtime *rt,
                                    const struct rf_tenants *const *tenants)
{
    struct rf_dispatch *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        return NULL;
    }
    d->loop = loop;
    d->store = store;
    d->writer = writer;
    d->rt = rt;
    d->tenants = tenants;
    return d;
}

void rf_dispatch_free(struct rf_dispatch *d)
{
    struct tq *q, *qnext;
    struct item *it, *next;

    if (d == NULL) {
        return;
    }
    for (q = d->queues; q; q = qnext) {
        qnext = q->next;
        for (it = q->head; it; it = next) {
            next = it->next;
            free(it);
        }
        free(q->seqs);
        free(q);
    }
    free(d);
}

/* --- referrals ---------------------------------------------------------- */

static void on_referral_reply(const struct rf_hook_result *res, void *arg)
{
    (void)arg;
    if (res->rc != 0 && res->rc != RF_ESTOPPING) {
        rf_log_warn("dispatch", RF_NOF, "a referral's capture failed: %s",
                    res->error ? res->error : rf_strerror(res->rc));
    }
}

void rf_dispatch_referral(struct rf_dispatch *d, const char *tenant,
                          uint64_t id)
{
    char input[48];
    int n = snprintf(input, sizeof(input), "{\"id\":%llu}",
                     (unsigned long long)id);

    /* Not sent (out of memory): the script thread finds the referral
     * still accepted when it next starts and maps it then. */
    (void)rf_runtime_call(d->rt, tenant, RF_MAPPING_HOOK, input, (size_t)n,
                          NULL, on_referral_reply, NULL);
}

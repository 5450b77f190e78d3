/* Incremental polling with a cursor (time T, ids already delivered at T).
 *
 * Normal step: the first page of records modified at or after T, sorted by
 * Modified_Time. One page is one snapshot, so every record between T and
 * the page's last time is in it; records not yet delivered form the batch
 * and the cursor moves to the page's last time with the ids seen there.
 *
 * Shared second: when that first page holds only delivered records of
 * second T (more than a page share it), a probe asks whether any record is
 * later than T, then the records modified since T are read in id order
 * (edits move records in time, not in id order, so no page shifts) and the
 * undelivered ones of second T are delivered. If the probe saw a later
 * record, Zoho's clock had passed T before the scan began, so nothing can
 * still join second T: the cursor moves to (T + 1, no ids).
 */
#include "referee/error.h"
#include "referee/log.h"
#include "referee/zoho_poll.h"
#include "referee/zoho_text.h"
#include "zoho/internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef char id_t_[RF_ZOHO_ID_MAX];

struct cursor {
    int has;
    int64_t t;
    id_t_ *ids; /* sorted by strcmp */
    size_t n;
};

enum { NORMAL = 0, SCAN };

struct rf__zoho_poll {
    struct rf__zoho_poll *next;
    struct rf_zoho *z;
    char *module;
    char *fields;
    char *converted; /* NULL: not sent */
    rf_zoho_batch_cb on_batch;
    rf_zoho_poll_done_cb on_done;
    void *arg;
    struct cursor cur;
    int mode;
    int newer; /* the probe saw a record after second cur.t */
    struct rf__zoho_list *scan;
    int fail_rc;
    char fail[200];
    int stopping;
    struct rf_zoho_poll_stats st;
};

struct rf_zoho_batch {
    struct rf__zoho_poll *p;
    cJSON *records;
    size_t count;
    struct cursor next;
    char key[512];
    size_t klen;
    char *val;
    size_t vlen;
};

/* --- cursors ------------------------------------------------------------- */

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int has_id(const struct cursor *c, const char *id)
{
    return c->n > 0 && bsearch(id, c->ids, c->n, sizeof(id_t_), cmp_id) != NULL;
}

static void cursor_free(struct cursor *c)
{
    free(c->ids);
    memset(c, 0, sizeof(*c));
}

/* out = (t, base's ids if keep) plus `add`, sorted and without repeats. */
static int cursor_make(struct cursor *out, int64_t t, const struct cursor *base,
                       int keep, id_t_ *add, size_t nadd)
{
    size_t nb = keep ? base->n : 0, n = 0;

    memset(out, 0, sizeof(*out));
    if (nb + nadd > RF_ZOHO_CURSOR_IDS_MAX) {
        return RF_ETOOBIG;
    }
    out->ids = malloc((nb + nadd ? nb + nadd : 1) * sizeof(id_t_));
    if (out->ids == NULL) {
        return RF_ENOMEM;
    }
    if (nb) {
        memcpy(out->ids, base->ids, nb * sizeof(id_t_));
    }
    if (nadd) {
        memcpy(out->ids + nb, add, nadd * sizeof(id_t_));
    }
    qsort(out->ids, nb + nadd, sizeof(id_t_), cmp_id);
    for (size_t i = 0; i < nb + nadd; i++) {
        if (n == 0 || strcmp(out->ids[n - 1], out->ids[i]) != 0) {
            memmove(out->ids[n++], out->ids[i], sizeof(id_t_));
        }
    }
    out->n = n;
    out->t = t;
    out->has = 1;
    return 0;
}

/* {"time":"...+00:00","t":seconds,"ids":[...]} */
static char *cursor_text(const struct cursor *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(j, "ids");
    char when[RF_ZOHO_TIME_LEN] = "";
    char *text = NULL;

    if (ids == NULL) {
        goto out;
    }
    (void)rf_zoho_time_format(c->t, 0, when, sizeof(when));
    if (cJSON_AddStringToObject(j, "time", when) == NULL ||
        cJSON_AddNumberToObject(j, "t", (double)c->t) == NULL) {
        goto out;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (!cJSON_AddItemToArray(ids, cJSON_CreateString(c->ids[i]))) {
            goto out;
        }
    }
    text = cJSON_PrintUnformatted(j);
out:
    cJSON_Delete(j);
    return text;
}

static int cursor_parse(const char *text, size_t len, struct cursor *c)
{
    cJSON *j = NULL;
    const cJSON *t, *ids, *el;
    id_t_ *tmp = NULL;
    size_t n = 0;
    int rc = RF_EPARSE;

    if (rf__zoho_json_parse(text, len, &j) != 0) {
        goto out;
    }
    t = cJSON_GetObjectItemCaseSensitive(j, "t");
    ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
    if (!cJSON_IsNumber(t) || !cJSON_IsArray(ids) ||
        cJSON_GetArraySize(ids) > RF_ZOHO_CURSOR_IDS_MAX) {
        goto out;
    }
    tmp = malloc(((size_t)cJSON_GetArraySize(ids) + 1) * sizeof(id_t_));
    if (tmp == NULL) {
        rc = RF_ENOMEM;
        goto out;
    }
    cJSON_ArrayForEach(el, ids)
    {
        if (rf_zoho_json_id(el, tmp[n++]) != 0) {
            goto out;
        }
    }
    rc = cursor_make(c, (int64_t)t->valuedouble, c, 0, tmp, n);
out:
    free(tmp);
    cJSON_Delete(j);
    return rc;
}

static int cursor_load(struct rf_zoho *z, const char *module, struct cursor *c)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    memset(c, 0, sizeof(*c));
    rc = rf__zoho_load(z, "cursor", module, &text, &len);
    if (rc == RF_ENOTFOUND) {
        return 0; /* never polled */
    }
    if (rc == 0) {
        rc = cursor_parse(text, len, c);
    }
    free(text);
    return rc;
}

int rf_zoho_cursor_get(struct rf_zoho *z, const char *module, int64_t *time,
                       size_t *nids)
{
    struct cursor c;
    int rc = cursor_load(z, module, &c);

    *time = rc == 0 && c.has ? c.t : 0;
    *nids = rc == 0 ? c.n : 0;
    cursor_free(&c);
    return rc;
}

/* --- the poll's life ----------------------------------------------------- */

static void poll_free(struct rf__zoho_poll *p)
{
    cursor_free(&p->cur);
    free(p->module);
    free(p->fields);
    free(p->converted);
    free(p);
}

static void poll_end(struct rf__zoho_poll *p, int rc, const char *error)
{
    struct rf_zoho *z = p->z;
    struct rf__zoho_poll **pp;

    for (pp = &z->polls; *pp && *pp != p; pp = &(*pp)->next) {
    }
    if (*pp) {
        *pp = p->next;
    }
    p->st.caught_up = rc == 0;
    p->st.cursor_time = p->cur.has ? p->cur.t : 0;
    p->st.cursor_ids = p->cur.n;
    if (rc != 0) {
        rf_log_debug("zoho", RF_F("tenant", z->tenant, "module", p->module),
                     "poll ended: %s", error ? error : rf_strerror(rc));
    }
    p->on_done(rc, rc ? (error ? error : rf_strerror(rc)) : NULL, &p->st,
               p->arg);
    poll_free(p);
    rf__zoho_release(z);
}

/* Ends the poll; a paused scan is stopped first and ends it from its done
 * callback with p->fail_rc. */
static void poll_fail(struct rf__zoho_poll *p, int rc, const char *error)
{
    if (p->scan) {
        struct rf__zoho_list *l = p->scan;

        p->scan = NULL;
        p->fail_rc = rc;
        snprintf(p->fail, sizeof(p->fail), "%s", error ? error : "");
        rf__zoho_list_resume(l, 1);
        return;
    }
    poll_end(p, rc, error);
}

static int64_t since_incl(const struct rf__zoho_poll *p, int64_t t)
{
    return p->z->ims_exclusive ? t - 1 : t;
}

static void step_normal(struct rf__zoho_poll *p);
static void step_probe(struct rf__zoho_poll *p);

/* --- batches ------------------------------------------------------------- */

/* Reads id and Modified_Time of a record. */
static int record_key(const cJSON *rec, char id[RF_ZOHO_ID_MAX], int64_t *t)
{
    const char *mt = rf__zoho_json_str(rec, "Modified_Time");

    if (rf_zoho_json_id(cJSON_GetObjectItemCaseSensitive(rec, "id"), id) != 0 ||
        rf_zoho_time_parse(mt, t) != 0) {
        return RF_EPARSE;
    }
    return 0;
}

static void batch_free(struct rf_zoho_batch *b)
{
    cJSON_Delete(b->records);
    cursor_free(&b->next);
    free(b->val);
    free(b);
}

static struct rf_zoho_batch *batch_new(struct rf__zoho_poll *p)
{
    struct rf_zoho_batch *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        return NULL;
    }
    b->p = p;
    b->records = cJSON_CreateArray();
    if (b->records == NULL) {
        free(b);
        return NULL;
    }
    return b;
}

/* Moves `rec` out of the answer's `data` array into the batch. The answer
 * is borrowed, but its owner only frees it after the callback, so taking
 * records out of it saves copying each one. */
static int batch_add(struct rf_zoho_batch *b, const cJSON *data,
                     const cJSON *rec)
{
    cJSON *item = cJSON_DetachItemViaPointer((cJSON *)data, (cJSON *)rec);

    if (item == NULL || !cJSON_AddItemToArray(b->records, item)) {
        cJSON_Delete(item);
        return RF_ENOMEM;
    }
    b->count++;
    return 0;
}

/* Fixes the key and value rf_zoho_batch_put_cursor() writes. */
static int batch_seal(struct rf_zoho_batch *b)
{
    struct rf__zoho_poll *p = b->p;
    int rc = rf__zoho_key(p->z->tenant, "cursor", p->module, b->key,
                          sizeof(b->key), &b->klen);

    if (rc != 0) {
        return rc;
    }
    b->val = cursor_text(&b->next);
    if (b->val == NULL) {
        return RF_ENOMEM;
    }
    b->vlen = strlen(b->val);
    return 0;
}

static void deliver(struct rf__zoho_poll *p, struct rf_zoho_batch *b)
{
    int rc = batch_seal(b);

    if (rc != 0) {
        batch_free(b);
        poll_fail(p, rc, "cannot prepare the batch");
        return;
    }
    p->on_batch(b, p->arg);
}

const cJSON *rf_zoho_batch_records(const struct rf_zoho_batch *b)
{
    return b->records;
}

size_t rf_zoho_batch_count(const struct rf_zoho_batch *b)
{
    return b->count;
}

int rf_zoho_batch_put_cursor(const struct rf_zoho_batch *b, MDB_txn *txn,
                             const struct rf_store *st)
{
    MDB_val k = {b->klen, (void *)b->key}, v = {b->vlen, b->val};

    return rf_store_rc(mdb_put(txn, rf_store_dbi(st, RF_DB_ZOHO), &k, &v, 0));
}

/* The cursor is durable: take it and go on. */
static void advance(struct rf__zoho_poll *p, struct cursor *next)
{
    cursor_free(&p->cur);
    p->cur = *next;
    memset(next, 0, sizeof(*next));
    if (p->stopping) {
        poll_fail(p, RF_ESTOPPING, "the Zoho connection is closing");
    } else if (p->mode == SCAN && p->scan) {
        struct rf__zoho_list *l = p->scan;

        p->scan = NULL;
        rf__zoho_list_resume(l, 0);
    } else {
        p->mode = NORMAL;
        step_normal(p);
    }
}

static void on_cursor_saved(struct rf_zoho *z, int rc, void *ctx)
{
    struct rf_zoho_batch *b = ctx;
    struct rf__zoho_poll *p = b->p;

    if (rc != 0) {
        batch_free(b);
        poll_fail(p, rc, "cannot save the poll cursor");
        return;
    }
    advance(p, &b->next);
    batch_free(b);
}

void rf_zoho_batch_done(struct rf_zoho_batch *b, int rc, unsigned flags)
{
    struct rf__zoho_poll *p = b->p;
    struct rf_zoho *z = p->z;

    rf__zoho_enter(z);
    if (rc != 0) {
        batch_free(b);
        poll_fail(p, rc, "the batch was not committed");
        goto out;
    }
    p->st.records += b->count;
    p->st.batches++;
    if (flags & RF_ZOHO_CURSOR_WRITTEN) {
        advance(p, &b->next);
        batch_free(b);
        goto out;
    }
    rc = rf__zoho_save(z, "cursor", p->module, b->val, b->vlen, on_cursor_saved,
                       b);
    if (rc != 0) {
        batch_free(b);
        poll_fail(p, rc, "cannot save the poll cursor");
    }
out:
    rf__zoho_leave(z);
}

/* --- the normal step ----------------------------------------------------- */

static int fresh(const struct rf__zoho_poll *p, const char *id, int64_t t)
{
    return !p->cur.has || t > p->cur.t ||
           (t == p->cur.t && !has_id(&p->cur, id));
}

/* Collects the new versions of a first page into a batch; the cursor after
 * it is the page's last time with the ids seen at that time. */
static int normal_batch(struct rf__zoho_poll *p, const cJSON *data,
                        struct rf_zoho_batch *b)
{
    size_t n = (size_t)cJSON_GetArraySize(data), i = 0, nat = 0;
    id_t_ *ids = malloc((n ? n : 1) * sizeof(id_t_));
    int64_t *ts = malloc((n ? n : 1) * sizeof(int64_t));
    int64_t tmax = p->cur.has ? p->cur.t : INT64_MIN;
    const cJSON *rec;
    int rc = ids && ts ? 0 : RF_ENOMEM;

    cJSON_ArrayForEach(rec, data)
    {
        if (rc == 0 && (rc = record_key(rec, ids[i], &ts[i])) == 0 &&
            ts[i] > tmax) {
            tmax = ts[i];
        }
        i++;
    }
    i = 0;
    for (const cJSON *next = data ? data->child : NULL; (rec = next);) {
        next = rec->next; /* batch_add() takes rec out of the list */
        if (rc == 0 && fresh(p, ids[i], ts[i])) {
            rc = batch_add(b, data, rec);
        }
        if (rc == 0 && ts[i] == tmax) {
            memmove(ids[nat++], ids[i], sizeof(id_t_)); /* nat <= i */
        }
        i++;
    }
    if (rc == 0 && b->count > 0) {
        rc = cursor_make(&b->next, tmax, &p->cur,
                         p->cur.has && tmax == p->cur.t, ids, nat);
    }
    free(ids);
    free(ts);
    return rc;
}

static void on_normal(const struct rf_zoho_result *res, void *arg)
{
    struct rf__zoho_poll *p = arg;
    const cJSON *data;
    struct rf_zoho_batch *b;
    int rc, full;

    p->st.calls++;
    if (res->rc != 0 || res->json == NULL) {
        poll_end(p, res->rc, res->error); /* 204/304: caught up */
        return;
    }
    data = cJSON_GetObjectItemCaseSensitive(res->json, "data");
    b = batch_new(p);
    rc = !cJSON_IsArray(data) ? RF_EPARSE
                              : (b ? normal_batch(p, data, b) : RF_ENOMEM);
    if (rc != 0) {
        if (b) {
            batch_free(b);
        }
        poll_end(p, rc, "cannot read the page of records");
        return;
    }
    full = cJSON_GetArraySize(data) >= RF_ZOHO_PER_PAGE_MAX &&
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
               cJSON_GetObjectItemCaseSensitive(res->json, "info"),
               "more_records"));
    if (b->count > 0) {
        deliver(p, b);
    } else if (full) {
        batch_free(b);
        step_probe(p); /* a full page of delivered records: shared second */
    } else {
        batch_free(b);
        poll_end(p, 0, NULL);
    }
}

static void step_normal(struct rf__zoho_poll *p)
{
    char per[8];
    const char *q[] = {
        "fields",     p->fields, "per_page", per, "sort_by", "Modified_Time",
        "sort_order", "asc",     "page",     "1",
        p->converted ? "converted" : NULL, p->converted, NULL};
    struct rf_zoho_request rq = {
        "GET", p->module, q, NULL, p->cur.has ? since_incl(p, p->cur.t) : 0,
        1,     0,         0};
    int rc;

    snprintf(per, sizeof(per), "%d", RF_ZOHO_PER_PAGE_MAX);
    rc = rf_zoho_request(p->z, &rq, on_normal, p);
    if (rc != 0) {
        poll_end(p, rc, rf_strerror(rc));
    }
}

/* --- the shared second --------------------------------------------------- */

static int on_scan_page(struct rf__zoho_list *l, const struct rf_zoho_page *pg,
                        void *arg)
{
    struct rf__zoho_poll *p = arg;
    struct rf_zoho_batch *b = batch_new(p);
    id_t_ *add = malloc((pg->count ? pg->count : 1) * sizeof(id_t_));
    size_t nadd = 0;
    const cJSON *rec;
    int64_t t;
    int rc = b && add ? 0 : RF_ENOMEM;

    p->st.calls++;
    if (p->stopping) {
        rc = RF_ESTOPPING;
    }
    for (const cJSON *next = pg->data->child; (rec = next);) {
        next = rec->next; /* batch_add() takes rec out of the list */
        if (rc == 0 && (rc = record_key(rec, add[nadd], &t)) == 0 &&
            t == p->cur.t && !has_id(&p->cur, add[nadd])) {
            rc = batch_add(b, pg->data, rec);
            nadd++;
        }
    }
    if (rc == 0 && nadd > 0) {
        rc = cursor_make(&b->next, p->cur.t, &p->cur, 1, add, nadd);
    }
    free(add);
    if (rc != 0 || nadd == 0) {
        if (b) {
            batch_free(b);
        }
        p->fail_rc = rc;
        snprintf(p->fail, sizeof(p->fail), "%s",
                 rc == RF_ETOOBIG     ? "too many records share one second"
                 : rc == RF_ESTOPPING ? "the Zoho connection is closing"
                                      : "cannot read the page of records");
        return rc ? RF__ZOHO_STOP : RF__ZOHO_GO;
    }
    p->scan = l;
    deliver(p, b);
    return RF__ZOHO_PAUSE;
}

/* Closes second T once the probe proved Zoho's clock had passed it. */
static void close_second(struct rf__zoho_poll *p)
{
    struct rf_zoho_batch *b = batch_new(p);
    int rc = b ? cursor_make(&b->next, p->cur.t + 1, &p->cur, 0, NULL, 0)
               : RF_ENOMEM;

    if (rc == 0) {
        rc = batch_seal(b);
    }
    if (rc == 0) {
        p->mode = NORMAL;
        rc = rf__zoho_save(p->z, "cursor", p->module, b->val, b->vlen,
                           on_cursor_saved, b);
    }
    if (rc != 0) {
        if (b) {
            batch_free(b);
        }
        poll_end(p, rc, "cannot save the poll cursor");
    }
}

static void on_scan_done(const struct rf_zoho_result *res, size_t total,
                         void *arg)
{
    struct rf__zoho_poll *p = arg;

    p->scan = NULL;
    if (res->rc != 0 || res->json == NULL) {
        p->st.calls += res->status == 204 || res->status == 304 || res->rc != 0;
    }
    if (p->fail_rc != 0) {
        poll_end(p, p->fail_rc, p->fail);
    } else if (res->rc != 0) {
        poll_end(p, res->rc, res->error);
    } else if (p->stopping) {
        poll_end(p, RF_ESTOPPING, "the Zoho connection is closing");
    } else if (p->newer) {
        close_second(p);
    } else {
        poll_end(p, 0, NULL); /* second T may still grow: read it again
                                 next time */
    }
}

static void step_scan(struct rf__zoho_poll *p)
{
    struct rf_zoho_list_opts o = {p->module, p->fields, "id",
                                  0,         since_incl(p, p->cur.t),
                                  0,         0,        p->converted};
    int rc;

    p->mode = SCAN;
    p->st.shared_scans++;
    rc = rf__zoho_list_start(p->z, &o, on_scan_page, on_scan_done, p, NULL);
    if (rc != 0) {
        poll_end(p, rc, rf_strerror(rc));
    }
}

static void on_probe(const struct rf_zoho_result *res, void *arg)
{
    struct rf__zoho_poll *p = arg;
    const cJSON *data;
    char id[RF_ZOHO_ID_MAX];
    int64_t t = 0;

    p->st.calls++;
    if (res->rc != 0) {
        poll_end(p, res->rc, res->error);
        return;
    }
    data =
        res->json ? cJSON_GetObjectItemCaseSensitive(res->json, "data") : NULL;
    p->newer = cJSON_GetArraySize(data) > 0 &&
               record_key(cJSON_GetArrayItem(data, 0), id, &t) == 0 &&
               t > p->cur.t;
    if (p->stopping) {
        poll_end(p, RF_ESTOPPING, "the Zoho connection is closing");
        return;
    }
    step_scan(p);
}

static void step_probe(struct rf__zoho_poll *p)
{
    const char *q[] = {
        "fields",     p->fields, "per_page", "1", "sort_by", "Modified_Time",
        "sort_order", "asc",     "page",     "1",
        p->converted ? "converted" : NULL, p->converted, NULL};
    struct rf_zoho_request rq = {
        "GET", p->module, q, NULL, since_incl(p, p->cur.t + 1), 1, 0, 0};
    int rc;

    p->newer = 0;
    rc = rf_zoho_request(p->z, &rq, on_probe, p);
    if (rc != 0) {
        poll_end(p, rc, rf_strerror(rc));
    }
}

/* --- starting and stopping ----------------------------------------------- */

/* fields plus ",Modified_Time" unless it is already named. */
static char *poll_fields(const char *fields)
{
    size_t n = fields ? strlen(fields) : 0;
    char *out = malloc(n + sizeof(",Modified_Time"));
    const char *p = fields;

    if (out == NULL) {
        return NULL;
    }
    while (p && (p = strstr(p, "Modified_Time")) != NULL) {
        int starts = p == fields || p[-1] == ',' || p[-1] == ' ';
        int ends = p[13] == '\0' || p[13] == ',' || p[13] == ' ';

        if (starts && ends) {
            memcpy(out, fields, n + 1);
            return out;
        }
        p += 13;
    }
    snprintf(out, n + sizeof(",Modified_Time"), "%s%sModified_Time",
             n ? fields : "", n ? "," : "");
    return out;
}

/* A poll of o->module starting at its stored cursor. */
static int poll_new(struct rf_zoho *z, const struct rf_zoho_poll_opts *o,
                    struct rf__zoho_poll **out)
{
    struct rf__zoho_poll *p = calloc(1, sizeof(*p));
    int rc;

    if (p == NULL) {
        return RF_ENOMEM;
    }
    rc = cursor_load(z, o->module, &p->cur);
    p->module = strdup(o->module);
    p->fields = poll_fields(o->fields);
    p->converted = o->converted ? strdup(o->converted) : NULL;
    if (rc == 0 && (p->module == NULL || p->fields == NULL ||
                    (o->converted && p->converted == NULL))) {
        rc = RF_ENOMEM;
    }
    if (rc != 0) {
        poll_free(p);
        return rc;
    }
    p->z = z;
    p->on_batch = o->on_batch;
    p->on_done = o->on_done;
    p->arg = o->arg;
    *out = p;
    return 0;
}

int rf_zoho_poll(struct rf_zoho *z, const struct rf_zoho_poll_opts *o)
{
    struct rf__zoho_poll *p;
    int rc;

    if (z->closing) {
        return RF_ESTOPPING;
    }
    if (o->module == NULL || *o->module == '\0' || o->on_batch == NULL ||
        o->on_done == NULL) {
        return RF_EINVAL;
    }
    for (p = z->polls; p; p = p->next) {
        if (strcmp(p->module, o->module) == 0) {
            return RF_EBUSY;
        }
    }
    rc = poll_new(z, o, &p);
    if (rc != 0) {
        return rc;
    }
    p->next = z->polls;
    z->polls = p;
    rf__zoho_hold(z); /* released by poll_end() */
    step_normal(p);
    return 0;
}

void rf__zoho_polls_stop(struct rf_zoho *z)
{
    for (struct rf__zoho_poll *p = z->polls; p; p = p->next) {
        p->stopping = 1;
    }
}

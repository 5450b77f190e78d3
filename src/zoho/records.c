/* Record calls on top of rf_zoho_request(): lists that switch from page
 * numbers to page_token at Zoho's 2,000-record wall, get, search, and
 * writes split into batches of 100 with a result per input record. */
#include "referee/error.h"
#include "referee/log.h"
#include "referee/zoho_records.h"
#include "referee/zoho_text.h"
#include "zoho/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DISCRETE_LIMIT 2000 /* page * per_page beyond this needs a token */

struct rf__zoho_list {
    struct rf_zoho *z;
    char *module, *fields, *sort_by, *converted;
    int desc;
    int64_t ims;
    unsigned per_page;
    size_t max;
    unsigned page; /* the page being fetched, 1-based */
    char *token;   /* next_page_token once past the wall */
    int by_token;
    size_t total;
    int in_page; /* on_page is running: a resume now is deferred */
    int resumed; /* 1: resumed during on_page, 2: stopped then */
    int last;    /* the page handed out was the last one */
    int adv_rc;  /* why the next page cannot be fetched, or 0 */
    rf__zoho_page_cb on_page;
    rf_zoho_page_cb pub; /* the public callback, for rf_zoho_list() */
    rf_zoho_list_done_cb done;
    void *arg;
};

static void list_free(struct rf__zoho_list *l)
{
    free(l->module);
    free(l->fields);
    free(l->sort_by);
    free(l->converted);
    free(l->token);
    free(l);
}

static void list_end(struct rf__zoho_list *l, const struct rf_zoho_result *r)
{
    l->done(r, l->total, l->arg);
    list_free(l);
}

static void list_end_rc(struct rf__zoho_list *l, int rc, const char *error)
{
    struct rf_zoho_result r = {rc, 0, NULL, NULL, NULL, error, 0};

    list_end(l, &r);
}

static void on_list_page(const struct rf_zoho_result *res, void *arg);

static int list_fetch(struct rf__zoho_list *l)
{
    char per[16], page[16];
    const char *q[16];
    size_t n = 0;
    struct rf_zoho_request rq = {"GET", l->module, q, NULL, l->ims, 1, 0, 0};

    snprintf(per, sizeof(per), "%u", l->per_page);
    snprintf(page, sizeof(page), "%u", l->page);
    if (l->fields) {
        q[n++] = "fields";
        q[n++] = l->fields;
    }
    q[n++] = "per_page";
    q[n++] = per;
    if (l->sort_by) {
        q[n++] = "sort_by";
        q[n++] = l->sort_by;
        q[n++] = "sort_order";
        q[n++] = l->desc ? "desc" : "asc";
    }
    if (l->converted) {
        q[n++] = "converted";
        q[n++] = l->converted;
    }
    q[n++] = l->by_token ? "page_token" : "page";
    q[n++] = l->by_token ? l->token : page;
    q[n] = NULL;
    return rf_zoho_request(l->z, &rq, on_list_page, l);
}

/* Moves to the next page while `info` is alive: by number up to the
 * wall, then by the token Zoho gave with this page. */
static int list_advance(struct rf__zoho_list *l, const cJSON *info)
{
    const char *tok = rf__zoho_json_str(info, "next_page_token");

    l->page++;
    if (!l->by_token && (size_t)l->page * l->per_page <= DISCRETE_LIMIT) {
        return 0;
    }
    if (tok == NULL || *tok == '\0') {
        return RF_ELIMIT;
    }
    free(l->token);
    l->token = strdup(tok);
    l->by_token = 1;
    return l->token ? 0 : RF_ENOMEM;
}

static void list_go(struct rf__zoho_list *l)
{
    int rc = list_fetch(l);

    if (rc != 0) {
        list_end_rc(l, rc, rf_strerror(rc));
    }
}

/* Goes on after a page: fetches the next one, or ends the list. */
static void list_continue(struct rf__zoho_list *l, int stop)
{
    struct rf_zoho_result r = {0, 200, NULL, NULL, NULL, NULL, 0};

    if (stop || l->last) {
        list_end(l, &r);
    } else if (l->adv_rc != 0) {
        list_end_rc(l, l->adv_rc,
                    l->adv_rc == RF_ELIMIT ? "Zoho has more than 2000 records "
                                             "here but gave no next_page_token"
                                           : rf_strerror(l->adv_rc));
    } else {
        list_go(l);
    }
}

/* Describes the answer's page; RF_EPARSE when it has no data array. */
static int page_of(struct rf__zoho_list *l, const cJSON *json,
                   struct rf_zoho_page *p)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(json, "info");

    if (!cJSON_IsArray(data)) {
        return RF_EPARSE;
    }
    p->data = data;
    p->count = (size_t)cJSON_GetArraySize(data);
    p->page = l->page;
    p->more =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(info, "more_records"));
    p->by_token = l->by_token;
    return 0;
}

static void on_list_page(const struct rf_zoho_result *res, void *arg)
{
    struct rf__zoho_list *l = arg;
    struct rf_zoho_page p = {0};
    int what;

    if (res->rc != 0 || res->json == NULL) {
        list_end(l, res); /* failure, or 204/304: nothing (more) */
        return;
    }
    if (page_of(l, res->json, &p) != 0) {
        list_end_rc(l, RF_EPARSE, "Zoho's list answer has no data array");
        return;
    }
    l->total += p.count;
    l->last = !p.more || (l->max && l->total >= l->max);
    /* Step on while the answer (and its token) is alive; a resume from
     * inside on_page must find the list already past this page. */
    l->adv_rc = l->last ? 0
                        : list_advance(l, cJSON_GetObjectItemCaseSensitive(
                                              res->json, "info"));
    l->in_page = 1;
    what = l->on_page(l, &p, l->arg);
    l->in_page = 0;
    if (what == RF__ZOHO_PAUSE && l->resumed == 0) {
        return; /* rf__zoho_list_resume() goes on */
    }
    if (what == RF__ZOHO_PAUSE) {
        what = l->resumed == 2 ? RF__ZOHO_STOP : RF__ZOHO_GO;
        l->resumed = 0;
    }
    if (what == RF__ZOHO_STOP || l->last) {
        list_end(l, res);
        return;
    }
    list_continue(l, 0);
}

void rf__zoho_list_resume(struct rf__zoho_list *l, int stop)
{
    if (l->in_page) {
        l->resumed = stop ? 2 : 1;
        return;
    }
    list_continue(l, stop);
}

static int plain(const char *s)
{
    return s && *s && strcspn(s, "/?&#%") == strlen(s);
}

int rf__zoho_list_start(struct rf_zoho *z, const struct rf_zoho_list_opts *o,
                        rf__zoho_page_cb on_page, rf_zoho_list_done_cb done,
                        void *arg, struct rf__zoho_list **out)
{
    struct rf__zoho_list *l;
    int fields_optional = strncmp(z->version, "v2", 2) == 0;
    int rc;

    if (!plain(o->module) || o->per_page > RF_ZOHO_PER_PAGE_MAX ||
        (!fields_optional && (o->fields == NULL || *o->fields == '\0'))) {
        return RF_EINVAL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return RF_ENOMEM;
    }
    l->z = z;
    l->module = strdup(o->module);
    l->fields = o->fields ? strdup(o->fields) : NULL;
    l->sort_by = o->sort_by ? strdup(o->sort_by) : NULL;
    l->converted = o->converted ? strdup(o->converted) : NULL;
    if (l->module == NULL || (o->fields && l->fields == NULL) ||
        (o->sort_by && l->sort_by == NULL) ||
        (o->converted && l->converted == NULL)) {
        list_free(l);
        return RF_ENOMEM;
    }
    l->desc = o->desc;
    l->ims = o->modified_since;
    l->per_page = o->per_page ? o->per_page : RF_ZOHO_PER_PAGE_MAX;
    l->max = o->max_records;
    l->page = 1;
    l->on_page = on_page;
    l->done = done;
    l->arg = arg;
    rc = list_fetch(l);
    if (rc != 0) {
        list_free(l);
        return rc;
    }
    if (out) {
        *out = l;
    }
    return 0;
}

static int pub_page(struct rf__zoho_list *l, const struct rf_zoho_page *p,
                    void *arg)
{
    return l->pub(p, arg) ? RF__ZOHO_STOP : RF__ZOHO_GO;
}

int rf_zoho_list(struct rf_zoho *z, const struct rf_zoho_list_opts *o,
                 rf_zoho_page_cb on_page, rf_zoho_list_done_cb done, void *arg)
{
    struct rf__zoho_list *l = NULL;
    int rc;

    if (on_page == NULL || done == NULL) {
        return RF_EINVAL;
    }
    rc = rf__zoho_list_start(z, o, pub_page, done, arg, &l);
    if (rc == 0) {
        l->pub = on_page; /* read only when the first page arrives */
    }
    return rc;
}

/* --- get and search ------------------------------------------------------ */

int rf_zoho_get(struct rf_zoho *z, const char *module, const char *id,
                const char *fields, rf_zoho_done_cb done, void *arg)
{
    char path[256];
    const char *q[] = {"fields", fields, NULL};
    struct rf_zoho_request rq = {"GET", path, fields ? q : NULL, NULL, 0, 1,
                                 0,     0};
    size_t n = id ? strlen(id) : 0;

    if (!plain(module) || n == 0 || n > 20 || strspn(id, "0123456789") != n) {
        return RF_EINVAL;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", module, id) >=
        sizeof(path)) {
        return RF_ETOOBIG;
    }
    return rf_zoho_request(z, &rq, done, arg);
}

int rf_zoho_search(struct rf_zoho *z, const char *module, const char *criteria,
                   const char *fields, unsigned page, unsigned per_page,
                   rf_zoho_done_cb done, void *arg)
{
    char path[256], pg[16], per[16];
    const char *q[10];
    size_t n = 0;
    struct rf_zoho_request rq = {"GET", path, q, NULL, 0, 1, 0, 0};

    if (!plain(module) || criteria == NULL || *criteria == '\0' ||
        per_page > RF_ZOHO_PER_PAGE_MAX) {
        return RF_EINVAL;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/search", module) >=
        sizeof(path)) {
        return RF_ETOOBIG;
    }
    snprintf(pg, sizeof(pg), "%u", page ? page : 1);
    snprintf(per, sizeof(per), "%u",
             per_page ? per_page : RF_ZOHO_PER_PAGE_MAX);
    q[n++] = "criteria";
    q[n++] = criteria;
    if (fields) {
        q[n++] = "fields";
        q[n++] = fields;
    }
    q[n++] = "page";
    q[n++] = pg;
    q[n++] = "per_page";
    q[n++] = per;
    q[n] = NULL;
    return rf_zoho_request(z, &rq, done, arg);
}

/* --- writes -------------------------------------------------------------- */

struct write;

struct wbatch {
    struct write *w;
    size_t first, n;
    char *body;
};

struct write {
    rf_zoho_write_cb done;
    void *arg;
    size_t n, nbatches, outstanding;
    struct rf_zoho_record_result *items;
    struct wbatch *batches;
    char **strs; /* copies the items point into */
    size_t nstrs;
    int rc;
    char error[256];
    unsigned calls;
};

static void write_free(struct write *w)
{
    for (size_t i = 0; i < w->nstrs; i++) {
        free(w->strs[i]);
    }
    for (size_t i = 0; i < w->nbatches; i++) {
        free(w->batches[i].body);
    }
    free(w->strs);
    free(w->batches);
    free(w->items);
    free(w);
}

/* A copy that lives as long as the write; "" when NULL or out of memory. */
static const char *keep(struct write *w, const char *s)
{
    char *c;

    if (s == NULL || *s == '\0') {
        return "";
    }
    c = strdup(s);
    if (c == NULL) {
        return "";
    }
    w->strs[w->nstrs++] = c; /* room for 6 per record was reserved */
    return c;
}

/* Fills one record's result from its element of Zoho's data array. */
static void take_item(struct write *w, size_t i, long status, const cJSON *el)
{
    struct rf_zoho_record_result *it = &w->items[i];
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(el, "details");
    const char *st = rf__zoho_json_str(el, "status");
    char id[RF_ZOHO_ID_MAX] = "";

    it->ok = st && strcmp(st, "success") == 0;
    it->status = status;
    it->code = keep(w, rf__zoho_json_str(el, "code"));
    it->message = keep(w, rf__zoho_json_str(el, "message"));
    if (it->ok &&
        rf_zoho_json_id(cJSON_GetObjectItemCaseSensitive(details, "id"), id) !=
            0) {
        id[0] = '\0';
    }
    it->id = keep(w, id);
    it->action = keep(w, rf__zoho_json_str(el, "action"));
    it->api_name = keep(w, rf__zoho_json_str(details, "api_name"));
    it->duplicate_field = keep(w, rf__zoho_json_str(el, "duplicate_field"));
}

/* A batch without a result per record: every record carries the call's
 * failure. */
static void fail_batch(struct write *w, const struct wbatch *b,
                       const struct rf_zoho_result *res, int rc,
                       const char *error)
{
    const char *code = keep(w, res ? res->code : NULL);
    const char *msg = keep(w, res && res->message ? res->message : error);

    for (size_t i = b->first; i < b->first + b->n; i++) {
        struct rf_zoho_record_result *it = &w->items[i];

        it->ok = 0;
        it->status = res ? res->status : 0;
        it->code = code;
        it->message = msg;
        it->id = it->action = it->api_name = it->duplicate_field = "";
    }
    if (w->rc == 0) {
        w->rc = rc;
        snprintf(w->error, sizeof(w->error), "%s", error ? error : "");
    }
}

static void write_end(struct write *w)
{
    struct rf_zoho_write_result r = {
        w->rc, w->rc ? w->error : NULL, w->n, 0, w->items, w->calls};

    for (size_t i = 0; i < w->n; i++) {
        r.nfailed += !w->items[i].ok;
    }
    w->done(&r, w->arg);
    write_free(w);
}

static void on_written(const struct rf_zoho_result *res, void *arg)
{
    struct wbatch *b = arg;
    struct write *w = b->w;
    const cJSON *data =
        res->json ? cJSON_GetObjectItemCaseSensitive(res->json, "data") : NULL;

    w->calls += res->attempts;
    if ((res->rc == 0 || res->rc == RF_EHTTP) && cJSON_IsArray(data) &&
        (size_t)cJSON_GetArraySize(data) == b->n) {
        size_t i = b->first;
        const cJSON *el;

        cJSON_ArrayForEach(el, data)
        {
            take_item(w, i++, res->status, el);
        }
    } else if (res->rc == 0) {
        fail_batch(w, b, res, RF_EPARSE,
                   "Zoho's write answer has no result per record");
    } else {
        fail_batch(w, b, res, res->rc, res->error);
    }
    if (--w->outstanding == 0) {
        write_end(w);
    }
}

static cJSON *names_array(const char *const *names, size_t n)
{
    cJSON *a = cJSON_CreateArray();

    for (size_t i = 0; a && i < n; i++) {
        if (!cJSON_AddItemToArray(a, cJSON_CreateString(names[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* The JSON body of records [first, first+n); the options come first so
 * that logs which cut bodies short still show them. */
static char *batch_body(const struct rf_zoho_write_opts *o,
                        const cJSON *records, size_t first, size_t n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *data = NULL;
    char *text = NULL;
    int ok = root != NULL;

    if (ok && o->trigger_set) {
        cJSON *t = names_array(o->trigger, o->n_trigger);

        ok = t && cJSON_AddItemToObject(root, "trigger", t);
    }
    if (ok && o->n_duplicate_check_fields) {
        cJSON *d =
            names_array(o->duplicate_check_fields, o->n_duplicate_check_fields);

        ok = d && cJSON_AddItemToObject(root, "duplicate_check_fields", d);
    }
    data = ok ? cJSON_AddArrayToObject(root, "data") : NULL;
    ok = data != NULL;
    for (size_t i = first; ok && i < first + n; i++) {
        cJSON *copy = cJSON_Duplicate(cJSON_GetArrayItem(records, (int)i), 1);

        ok = copy && cJSON_AddItemToArray(data, copy);
        if (!ok) {
            cJSON_Delete(copy);
        }
    }
    if (ok) {
        text = cJSON_PrintUnformatted(root);
    }
    cJSON_Delete(root);
    return text;
}

static int write_prepare(struct write *w, const struct rf_zoho_write_opts *o,
                         const cJSON *records)
{
    w->nbatches = (w->n + RF_ZOHO_WRITE_BATCH - 1) / RF_ZOHO_WRITE_BATCH;
    w->items = calloc(w->n, sizeof(*w->items));
    w->batches = calloc(w->nbatches, sizeof(*w->batches));
    w->strs = calloc(w->n * 6 + w->nbatches * 2, sizeof(*w->strs));
    if (w->items == NULL || w->batches == NULL || w->strs == NULL) {
        return RF_ENOMEM;
    }
    for (size_t i = 0; i < w->nbatches; i++) {
        struct wbatch *b = &w->batches[i];

        b->w = w;
        b->first = i * RF_ZOHO_WRITE_BATCH;
        b->n = w->n - b->first < RF_ZOHO_WRITE_BATCH ? w->n - b->first
                                                     : RF_ZOHO_WRITE_BATCH;
        b->body = batch_body(o, records, b->first, b->n);
        if (b->body == NULL) {
            return RF_ENOMEM;
        }
    }
    return 0;
}

/* Queues every batch; a batch that cannot be queued fails its records. */
static void write_submit(struct rf_zoho *z, struct write *w,
                         const struct rf_zoho_write_opts *o, const char *path)
{
    for (size_t i = 0; i < w->nbatches; i++) {
        struct wbatch *b = &w->batches[i];
        struct rf_zoho_request rq = {
            o->op == RF_ZOHO_UPDATE ? "PUT" : "POST",
            path,
            NULL,
            b->body,
            0,
            (unsigned)((b->n + 9) / 10), /* a credit per 10 records */
            b->n > 10,
            o->op == RF_ZOHO_INSERT};
        int rc = rf_zoho_request(z, &rq, on_written, b);

        if (rc != 0) {
            fail_batch(w, b, NULL, rc, rf_strerror(rc));
            w->outstanding--;
        }
    }
}

int rf_zoho_write(struct rf_zoho *z, const struct rf_zoho_write_opts *o,
                  const cJSON *records, rf_zoho_write_cb done, void *arg)
{
    char path[256];
    struct write *w;
    int rc;

    if (!plain(o->module) || !cJSON_IsArray(records) ||
        cJSON_GetArraySize(records) == 0 || done == NULL ||
        (o->n_duplicate_check_fields && o->op != RF_ZOHO_UPSERT)) {
        return RF_EINVAL;
    }
    if (z->closing) {
        return RF_ESTOPPING;
    }
    snprintf(path, sizeof(path), "%s%s", o->module,
             o->op == RF_ZOHO_UPSERT ? "/upsert" : "");
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return RF_ENOMEM;
    }
    w->done = done;
    w->arg = arg;
    w->n = (size_t)cJSON_GetArraySize(records);
    rc = write_prepare(w, o, records);
    if (rc == 0) {
        w->outstanding = w->nbatches;
        write_submit(z, w, o, path);
        rc = w->outstanding == 0 ? w->rc : 0;
    }
    if (rc != 0 || w->outstanding == 0) { /* nothing queued: say it here */
        write_free(w);
    }
    return rc;
}

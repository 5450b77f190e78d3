/* Watch channels: subscribe (POST), renew before expiry (PATCH, or POST
 * again when Zoho forgot the channel), stop (DELETE), kept in RF_DB_ZOHO
 * (kind "channel") so a restart goes on renewing them. */
#include "referee/error.h"
#include "referee/log.h"
#include "referee/zoho_text.h"
#include "referee/zoho_watch.h"
#include "zoho/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIFETIME 86400
#define TOKEN_MAX 50

enum op { SUBSCRIBE = 0, RENEW, STOP };

/* One Watch call in flight. */
struct wcall {
    struct rf_zoho *z;
    struct rf__zoho_chan *ch;
    enum op op;
    int is_new; /* forget the channel if its first subscription fails */
    rf_zoho_done_cb done;
    void *arg;
    struct rf__zoho_chan *old; /* replaced once this subscription holds */
};

static void chan_free(struct rf__zoho_chan *c)
{
    for (size_t i = 0; i < c->n_events; i++) {
        free(c->events[i]);
    }
    free(c->events);
    free(c->notify_url);
    free(c->token);
    free(c);
}

void rf__zoho_watch_free(struct rf_zoho *z)
{
    while (z->chans) {
        struct rf__zoho_chan *c = z->chans;

        z->chans = c->next;
        chan_free(c);
    }
}

static struct rf__zoho_chan *find(const struct rf_zoho *z, const char *id)
{
    for (struct rf__zoho_chan *c = z->chans; c; c = c->next) {
        if (!c->gone && strcmp(c->id, id) == 0) {
            return c;
        }
    }
    return NULL;
}

static size_t count(const struct rf_zoho *z)
{
    size_t n = 0;

    for (struct rf__zoho_chan *c = z->chans; c; c = c->next) {
        n += !c->gone;
    }
    return n;
}

static void unlink_chan(struct rf_zoho *z, struct rf__zoho_chan *c)
{
    struct rf__zoho_chan **pp = &z->chans;

    while (*pp && *pp != c) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = c->next;
    }
    chan_free(c);
}

/* --- storing ------------------------------------------------------------- */

static cJSON *chan_json(const struct rf__zoho_chan *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *ev = cJSON_AddArrayToObject(j, "events");

    if (ev == NULL) {
        cJSON_Delete(j);
        return NULL;
    }
    for (size_t i = 0; i < c->n_events; i++) {
        (void)cJSON_AddItemToArray(ev, cJSON_CreateString(c->events[i]));
    }
    (void)cJSON_AddStringToObject(j, "id", c->id);
    (void)cJSON_AddStringToObject(j, "notify_url", c->notify_url);
    (void)cJSON_AddStringToObject(j, "token", c->token ? c->token : "");
    (void)cJSON_AddNumberToObject(j, "lifetime", c->lifetime_s);
    (void)cJSON_AddNumberToObject(j, "expiry", (double)c->expiry);
    (void)cJSON_AddBoolToObject(j, "rav", c->rav);
    return j;
}

static void chan_save(struct rf_zoho *z, const struct rf__zoho_chan *c)
{
    cJSON *j = chan_json(c);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;

    if (text == NULL || rf__zoho_save(z, "channel", c->id, text, strlen(text),
                                      NULL, NULL) != 0) {
        rf_log_error("zoho", RF_F("tenant", z->tenant, "channel", c->id),
                     "cannot save the Watch channel");
    }
    free(text);
    cJSON_Delete(j);
}

static int set_events(struct rf__zoho_chan *c, const char *const *ev, size_t n)
{
    c->events = calloc(n, sizeof(*c->events));
    if (c->events == NULL) {
        return RF_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        c->events[i] = strdup(ev[i]);
        if (c->events[i] == NULL) {
            return RF_ENOMEM;
        }
        c->n_events++;
    }
    return 0;
}

static struct rf__zoho_chan *chan_from(const struct rf_zoho_channel *ch)
{
    struct rf__zoho_chan *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    snprintf(c->id, sizeof(c->id), "%s", ch->channel_id);
    c->notify_url = strdup(ch->notify_url);
    c->token = ch->token ? strdup(ch->token) : NULL;
    c->lifetime_s = ch->lifetime_s ? ch->lifetime_s : DEFAULT_LIFETIME;
    c->rav = ch->return_affected_field_values;
    if (c->notify_url == NULL || (ch->token && c->token == NULL) ||
        set_events(c, ch->events, ch->n_events) != 0) {
        chan_free(c);
        return NULL;
    }
    return c;
}

/* One stored channel: {"id","events","notify_url","token","lifetime",
 * "expiry","rav"}. */
static struct rf__zoho_chan *chan_parse(const char *text, size_t len)
{
    cJSON *j = NULL, *ev;
    const char *evs[RF_ZOHO_EVENTS_MAX];
    struct rf_zoho_channel ch = {0};
    struct rf__zoho_chan *c = NULL;
    size_t n = 0;

    if (rf__zoho_json_parse(text, len, &j) != 0) {
        return NULL;
    }
    cJSON_ArrayForEach(ev, cJSON_GetObjectItem(j, "events"))
    {
        if (cJSON_IsString(ev) && n < RF_ZOHO_EVENTS_MAX) {
            evs[n++] = ev->valuestring;
        }
    }
    ch.channel_id = rf__zoho_json_str(j, "id");
    ch.notify_url = rf__zoho_json_str(j, "notify_url");
    ch.token = rf__zoho_json_str(j, "token");
    ch.events = evs;
    ch.n_events = n;
    ch.lifetime_s =
        (unsigned)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "lifetime"));
    ch.return_affected_field_values =
        cJSON_IsTrue(cJSON_GetObjectItem(j, "rav"));
    if (ch.channel_id && ch.notify_url && n > 0 &&
        strlen(ch.channel_id) < RF_ZOHO_ID_MAX &&
        (c = chan_from(&ch)) != NULL) {
        c->expiry =
            (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "expiry"));
    }
    cJSON_Delete(j);
    return c;
}

void rf__zoho_watch_load(struct rf_zoho *z)
{
    char prefix[512];
    size_t plen;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int mrc;

    if (rf__zoho_key(z->tenant, "channel", "", prefix, sizeof(prefix), &plen) !=
            0 ||
        rf_store_read_begin(z->store, &txn) != 0) {
        return;
    }
    if (mdb_cursor_open(txn, rf_store_dbi(z->store, RF_DB_ZOHO), &cur) != 0) {
        goto out;
    }
    k.mv_size = plen;
    k.mv_data = prefix;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         mrc == 0 && k.mv_size >= plen &&
         memcmp(k.mv_data, prefix, plen) == 0 &&
         count(z) < RF_ZOHO_CHANNELS_MAX;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct rf__zoho_chan *c = chan_parse(v.mv_data, v.mv_size);

        if (c) {
            c->next = z->chans;
            z->chans = c;
        }
    }
    if (rf_store_scan_rc(mrc) != 0) {
        rf_log_error("zoho", RF_F("tenant", z->tenant),
                     "reading notification channels failed: %s",
                     mdb_strerror(mrc));
    }
out:
    mdb_cursor_close(cur);
    rf_store_read_end(z->store, txn);
}

/* --- calls --------------------------------------------------------------- */

/* The "watch" element of an answer: 1 when it says success. */
static int entry_ok(const struct rf_zoho_result *res, const cJSON **entry)
{
    const cJSON *w =
        res->json ? cJSON_GetObjectItemCaseSensitive(res->json, "watch") : NULL;
    const char *st;

    *entry = cJSON_GetArrayItem(w, 0);
    st = rf__zoho_json_str(*entry, "status");
    return res->rc == 0 && st && strcmp(st, "success") == 0;
}

static int64_t entry_expiry(const cJSON *entry)
{
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(entry, "details");
    const cJSON *ev = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(details, "events"), 0);
    int64_t t = 0;

    if (rf_zoho_time_parse(rf__zoho_json_str(ev, "channel_expiry"), &t) != 0) {
        return 0;
    }
    return t;
}

static int send_call(struct rf_zoho *z, struct rf__zoho_chan *c, enum op op,
                     struct rf__zoho_chan *old, rf_zoho_done_cb done,
                     void *arg);

/* The caller's view: a failed entry inside a 2xx answer is a failure. */
static void report(struct wcall *w, const struct rf_zoho_result *res,
                   const cJSON *entry, int ok)
{
    struct rf_zoho_result r = *res;
    char msg[200];

    if (w->done == NULL) {
        return;
    }
    if (!ok && r.rc == 0) {
        r.rc = RF_EHTTP;
    }
    if (!ok && entry) {
        r.code = rf__zoho_json_str(entry, "code");
        r.message = rf__zoho_json_str(entry, "message");
        snprintf(msg, sizeof(msg), "Zoho refused the channel: %s",
                 r.code ? r.code : "?");
        r.error = res->error ? res->error : msg;
    }
    w->done(&r, w->arg);
}

static void renewed(struct wcall *w, const struct rf_zoho_result *res,
                    const cJSON *entry, int ok)
{
    struct rf_zoho *z = w->z;
    struct rf__zoho_chan *c = w->ch;
    const char *code = rf__zoho_json_str(entry, "code");

    if (!ok && code && strcmp(code, "NOT_SUBSCRIBED") == 0 && !z->closing) {
        /* Zoho forgot it (it expired): subscribe again. */
        if (send_call(z, c, SUBSCRIBE, NULL, w->done, w->arg) == 0) {
            w->done = NULL;
            return;
        }
    }
    if (!ok && res->rc != RF_ESTOPPING) {
        rf_log_warn("zoho", RF_F("tenant", z->tenant, "channel", c->id),
                    "Watch channel renewal failed: %s",
                    code ? code : (res->error ? res->error : "?"));
    }
    report(w, res, entry, ok);
}

static void on_watch(const struct rf_zoho_result *res, void *arg)
{
    struct wcall *w = arg;
    struct rf_zoho *z = w->z;
    struct rf__zoho_chan *c = w->ch;
    const cJSON *entry = NULL;
    int ok = entry_ok(res, &entry);
    const char *code = rf__zoho_json_str(entry, "code");

    rf__zoho_enter(z);
    c->busy = 0;
    if (ok && w->op != STOP) {
        c->expiry = entry_expiry(entry);
        if (c->expiry == 0) { /* no date given: Zoho's default is 1 h */
            c->expiry = rf__zoho_now(z) / 1000 +
                        (c->lifetime_s < 3600 ? c->lifetime_s : 3600);
        }
        chan_save(z, c);
        rf_log_info("zoho",
                    RF_F("tenant", z->tenant, "channel", c->id, "event",
                         w->op == RENEW ? "renewed" : "subscribed"),
                    "Watch channel active");
    }
    if (w->op == RENEW) {
        renewed(w, res, entry, ok);
    } else {
        report(w, res, entry, ok);
    }
    if (w->op == STOP && (ok || (code && !strcmp(code, "NOT_SUBSCRIBED")))) {
        (void)rf__zoho_save(z, "channel", c->id, NULL, 0, NULL, NULL);
        unlink_chan(z, c);
    } else if (w->op == SUBSCRIBE && w->is_new && !ok) {
        unlink_chan(z, c);
        if (w->old) {
            w->old->gone = 0; /* the old settings stay in force */
            w->old->busy = 0;
        }
    } else if (w->old) {
        unlink_chan(z, w->old);
    }
    free(w);
    rf__zoho_leave(z);
}

static char *watch_body(const struct rf__zoho_chan *c, int64_t expiry)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "watch");
    cJSON *e = cJSON_CreateObject(), *ev = cJSON_CreateArray();
    char when[RF_ZOHO_TIME_LEN];
    char *text = NULL;

    if (arr == NULL || e == NULL || ev == NULL ||
        !cJSON_AddItemToArray(arr, e)) {
        cJSON_Delete(e);
        cJSON_Delete(ev);
        goto out;
    }
    /* Zoho documents channel_id as a long: digits, sent as a number. */
    (void)cJSON_AddItemToObject(e, "channel_id", cJSON_CreateRaw(c->id));
    (void)cJSON_AddItemToObject(e, "events", ev);
    for (size_t i = 0; i < c->n_events; i++) {
        (void)cJSON_AddItemToArray(ev, cJSON_CreateString(c->events[i]));
    }
    (void)cJSON_AddStringToObject(e, "notify_url", c->notify_url);
    if (c->token) {
        (void)cJSON_AddStringToObject(e, "token", c->token);
    }
    if (rf_zoho_time_format(expiry, 0, when, sizeof(when)) == 0) {
        (void)cJSON_AddStringToObject(e, "channel_expiry", when);
    }
    (void)cJSON_AddBoolToObject(e, "return_affected_field_values", c->rav);
    text = cJSON_PrintUnformatted(root);
out:
    cJSON_Delete(root);
    return text;
}

/* Sends one Watch call for `c`. A first subscription (`old` is the
 * channel it replaces, or `c` itself when there is none) removes `c` again
 * if Zoho refuses it. */
static int send_call(struct rf_zoho *z, struct rf__zoho_chan *c, enum op op,
                     struct rf__zoho_chan *old, rf_zoho_done_cb done, void *arg)
{
    struct wcall *w = calloc(1, sizeof(*w));
    int64_t expiry = rf__zoho_now(z) / 1000 + c->lifetime_s;
    const char *q[] = {"channel_ids", c->id, NULL};
    struct rf_zoho_request rq = {"POST", "actions/watch", NULL, NULL, 0, 1, 0,
                                 0};
    char *body = NULL;
    int rc;

    if (w == NULL) {
        return RF_ENOMEM;
    }
    if (op == STOP) {
        rq.method = "DELETE";
        rq.query = q;
    } else {
        rq.method = op == RENEW ? "PATCH" : "POST";
        body = watch_body(c, expiry);
        rq.body = body;
    }
    *w =
        (struct wcall){z, c, op, old != NULL, done, arg, old != c ? old : NULL};
    rc = op != STOP && body == NULL ? RF_ENOMEM
                                    : rf_zoho_request(z, &rq, on_watch, w);
    free(body);
    if (rc != 0) {
        free(w);
        return rc;
    }
    c->busy = 1;
    return 0;
}

/* --- public calls -------------------------------------------------------- */

static int valid_channel(const struct rf_zoho_channel *ch)
{
    size_t n = ch->channel_id ? strlen(ch->channel_id) : 0;

    if (n == 0 || n > 18 || strspn(ch->channel_id, "0123456789") != n ||
        ch->events == NULL || ch->n_events == 0 ||
        ch->n_events > RF_ZOHO_EVENTS_MAX || ch->notify_url == NULL ||
        (ch->token && strlen(ch->token) > TOKEN_MAX)) {
        return 0;
    }
    for (size_t i = 0; i < ch->n_events; i++) {
        if (ch->events[i] == NULL || strchr(ch->events[i], '.') == NULL) {
            return 0;
        }
    }
    return 1;
}

int rf_zoho_watch_start(struct rf_zoho *z, const struct rf_zoho_channel *ch,
                        rf_zoho_done_cb done, void *arg)
{
    struct rf__zoho_chan *c, *old;
    int rc;

    if (z->closing) {
        return RF_ESTOPPING;
    }
    if (!valid_channel(ch)) {
        return RF_EINVAL;
    }
    old = find(z, ch->channel_id);
    if (old && old->busy) {
        return RF_EBUSY;
    }
    if (old == NULL && count(z) >= RF_ZOHO_CHANNELS_MAX) {
        return RF_ELIMIT;
    }
    c = chan_from(ch);
    if (c == NULL) {
        return RF_ENOMEM;
    }
    rc = send_call(z, c, SUBSCRIBE, old ? old : c, done, arg);
    if (rc != 0) {
        chan_free(c);
        return rc;
    }
    if (old) {
        old->gone = 1; /* hidden until the new settings hold */
        old->busy = 1;
    }
    c->next = z->chans;
    z->chans = c;
    return 0;
}

int rf_zoho_watch_renew(struct rf_zoho *z, const char *channel_id,
                        rf_zoho_done_cb done, void *arg)
{
    struct rf__zoho_chan *c = find(z, channel_id);

    if (z->closing) {
        return RF_ESTOPPING;
    }
    if (c == NULL) {
        return RF_ENOTFOUND;
    }
    if (c->busy) {
        return RF_EBUSY;
    }
    return send_call(z, c, RENEW, NULL, done, arg);
}

int rf_zoho_watch_stop(struct rf_zoho *z, const char *channel_id,
                       rf_zoho_done_cb done, void *arg)
{
    struct rf__zoho_chan *c = find(z, channel_id);

    if (z->closing) {
        return RF_ESTOPPING;
    }
    if (c == NULL) {
        return RF_ENOTFOUND;
    }
    if (c->busy) {
        return RF_EBUSY;
    }
    return send_call(z, c, STOP, NULL, done, arg);
}

int rf_zoho_watch_expiry(const struct rf_zoho *z, const char *channel_id,
                         int64_t *expiry)
{
    const struct rf__zoho_chan *c = find(z, channel_id);

    if (c == NULL) {
        return RF_ENOTFOUND;
    }
    *expiry = c->expiry;
    return 0;
}

/* Housekeeping: renew what expires within the margin (at most half a
 * lifetime), subscribe again what already expired. */
void rf__zoho_watch_tick(struct rf_zoho *z)
{
    int64_t now = rf__zoho_now(z) / 1000;

    for (struct rf__zoho_chan *c = z->chans; c && !z->closing; c = c->next) {
        unsigned margin = z->watch_margin_s < c->lifetime_s / 2
                              ? z->watch_margin_s
                              : c->lifetime_s / 2;
        int rc;

        if (c->busy || c->gone || now < c->expiry - (int64_t)margin) {
            continue;
        }
        rc = send_call(z, c, now >= c->expiry ? SUBSCRIBE : RENEW, NULL, NULL,
                       NULL);
        if (rc != 0) {
            rf_log_warn("zoho", RF_F("tenant", z->tenant, "channel", c->id),
                        "cannot renew the Watch channel: %s", rf_strerror(rc));
        }
    }
}

/* crm.get / search / list / upsert / update for scripts: records of the
 * tenant's Zoho CRM through its connection (src/zoho/), so that its
 * allow-list, token, retries and credits apply. Each call yields until Zoho
 * answered and resumes with records or results, or `nil, message, code`. */
#include "referee/error.h"
#include "referee/script_api.h"
#include "referee/zoho.h"
#include "referee/zoho_records.h"
#include "referee/zoho_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "api_crm.h"
#include "call.h"

#define NAMES_MAX 10              /* duplicate_check_fields, trigger */
#define LIST_DEFAULT 200          /* records crm.list returns unless told */
#define LIST_MAX 2000             /* and at most */
#define LIST_BYTES_MAX (8u << 20) /* record text crm.list keeps, roughly */
#define WRITE_MAX 1000            /* records per crm.upsert (10 calls) */
#define SAFE_DIGITS 1e15          /* integers from here on read as strings */
#define GUARD_MT "rf.crm.guard"

/* A call waiting for the connector. */
struct op {
    struct rf_call *call;
    int single;   /* write: one record in, one result out */
    int update;   /* write: crm.update (results say action "update") */
    cJSON *acc;   /* list: the records so far */
    size_t max;   /* list: records wanted */
    size_t kept;  /* list: records in acc */
    size_t bytes; /* list: their size, roughly */
    int more;     /* list: Zoho has records after those kept */
    int rc;       /* list: why it stopped early (memory, size) */
};

/* Holds a JSON tree while Lua calls that may raise run; __gc frees it. */
struct guard {
    cJSON *tree;
};

/* --- results ------------------------------------------------------------ */

/* Our code for a failure without one of Zoho's. */
static const char *our_code(int rc, long status)
{
    switch (rc) {
    case RF_ELIMIT:
        return "limit";
    case RF_ETIMEOUT:
        return "timeout";
    case RF_ESTOPPING:
        return "stopping";
    case RF_EDENIED:
        return "denied";
    case RF_ECONFIG:
        return "config";
    case RF_EPARSE:
        return "bad_answer";
    case RF_ETOOBIG:
        return "too_big";
    case RF_ENOMEM:
        return "no_memory";
    case RF_EHTTP:
        return status > 0 ? "http" : "connection";
    default:
        return "connection";
    }
}

/* Zoho's code when Zoho answered with one, else ours. */
static const char *code_of(int rc, const char *zcode, long status)
{
    if (zcode != NULL && *zcode != '\0' && (rc == 0 || rc == RF_EHTTP)) {
        return zcode;
    }
    return our_code(rc, status);
}

/* Pushes `nil, message, code`; returns 3. */
static int push_fail(lua_State *L, const char *msg, const char *code)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushstring(L, code);
    return 3;
}

static int push_result_fail(lua_State *L, const struct rf_zoho_result *res)
{
    return push_fail(L, res->error ? res->error : rf_strerror(res->rc),
                     code_of(res->rc, res->code, res->status));
}

/* The connector parses Zoho's answers with plain cJSON, so numbers arrive
 * as doubles. json.decode reads integers of more than 15 digits as
 * strings; so does this, so that a record reads alike both ways.
 *
 * Limitation: an integer beyond 2^53 has lost digits before it gets here,
 * so its string is the nearest double, not Zoho's text. Zoho sends ids and
 * Long Integer fields as strings, so only numbers some other integration
 * wrote as JSON numbers are hit, and only when a script reads them. The
 * fix is in the connector: parse answers as rf_api_parse_json() does. */
static int big_ints_to_text(cJSON *v)
{
    for (cJSON *c = v->child; c; c = c->next) {
        if (big_ints_to_text(c) != 0) {
            return -1;
        }
    }
    if (cJSON_IsNumber(v) && floor(v->valuedouble) == v->valuedouble &&
        fabs(v->valuedouble) >= SAFE_DIGITS && fabs(v->valuedouble) < 1e20) {
        char buf[32];
        size_t n = (size_t)snprintf(buf, sizeof(buf), "%.0f", v->valuedouble);
        char *s = cJSON_malloc(n + 1);

        if (s == NULL) {
            return -1;
        }
        memcpy(s, buf, n + 1);
        v->type = cJSON_String | (v->type & cJSON_StringIsConst);
        v->valuestring = s;
    }
    return 0;
}

/* Pushes a copy of `v` as json.decode would; `nil, message, code` when
 * memory runs out. Returns the number of values pushed. */
static int push_json(lua_State *L, const cJSON *v)
{
    cJSON *copy = cJSON_Duplicate(v, 1);
    int rc = copy ? big_ints_to_text(copy) : -1;

    if (rc == 0) {
        rc = rf_api_push_json(L, copy);
    }
    cJSON_Delete(copy);
    if (rc != 0) {
        return push_fail(L, "out of memory for Zoho's answer", "no_memory");
    }
    return 1;
}

/* An empty list that json.encode keeps a list. */
static int push_empty_list(lua_State *L)
{
    cJSON *empty = cJSON_CreateArray();
    int n = empty ? push_json(L, empty)
                  : push_fail(L, "out of memory", "no_memory");

    cJSON_Delete(empty);
    return n;
}

/* Resumes the call with what `push` leaves, if it still waits, and ends
 * the operation. */
static void op_end(struct op *op,
                   int (*push)(lua_State *, struct op *, const void *),
                   const void *res)
{
    struct rf_call *c = op->call;

    if (rf__call_waiting(c)) {
        rf__call_resume(c, push(rf__call_thread(c), op, res));
    }
    rf__call_release(c);
    cJSON_Delete(op->acc);
    free(op);
}

/* --- get ----------------------------------------------------------------- */

/* Zoho answers an unknown id with 204, or (some versions) with 400
 * INVALID_DATA pointing at the id's place in the path. */
static int not_found(const struct rf_zoho_result *res)
{
    const cJSON *details, *at;

    if (res->rc == 0 && res->json == NULL) {
        return 1;
    }
    if (res->rc != RF_EHTTP || res->status != 400 || res->code == NULL ||
        strcmp(res->code, "INVALID_DATA") != 0) {
        return 0;
    }
    details = cJSON_GetObjectItemCaseSensitive(res->json, "details");
    at = cJSON_GetObjectItemCaseSensitive(details, "resource_path_index");
    return cJSON_IsNumber(at) && at->valueint == 1;
}

static int push_got(lua_State *L, struct op *op, const void *arg)
{
    const struct rf_zoho_result *res = arg;
    const cJSON *rec;

    if (not_found(res)) {
        lua_pushnil(L);
        return 1;
    }
    if (res->rc != 0) {
        return push_result_fail(L, res);
    }
    rec = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(res->json, "data"), 0);
    if (!cJSON_IsObject(rec)) {
        return push_fail(L, "Zoho's answer holds no record", "bad_answer");
    }
    return push_json(L, rec);
}

static void on_got(const struct rf_zoho_result *res, void *arg)
{
    op_end(arg, push_got, res);
}

/* --- search -------------------------------------------------------------- */

/* Pushes `records, more`. */
static int push_found(lua_State *L, struct op *op, const void *arg)
{
    const struct rf_zoho_result *res = arg;
    const cJSON *data, *info;
    int n;

    if (res->rc != 0) {
        return push_result_fail(L, res);
    }
    if (res->json == NULL) { /* 204: no match */
        n = push_empty_list(L);
        if (n != 1) {
            return n;
        }
        lua_pushboolean(L, 0);
        return 2;
    }
    data = cJSON_GetObjectItemCaseSensitive(res->json, "data");
    info = cJSON_GetObjectItemCaseSensitive(res->json, "info");
    if (!cJSON_IsArray(data)) {
        return push_fail(L, "Zoho's answer has no data list", "bad_answer");
    }
    if (push_json(L, data) != 1) {
        return 3;
    }
    lua_pushboolean(L, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
                           info, "more_records")));
    return 2;
}

static void on_found(const struct rf_zoho_result *res, void *arg)
{
    op_end(arg, push_found, res);
}

/* --- list ---------------------------------------------------------------- */

/* Roughly the bytes a JSON value takes: its text plus node overhead. */
static size_t json_size(const cJSON *v)
{
    size_t n = sizeof(*v);

    n += v->string ? strlen(v->string) : 0;
    n += cJSON_IsString(v) && v->valuestring ? strlen(v->valuestring) : 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        n += json_size(c);
    }
    return n;
}

/* Keeps a copy of one record; 0 or why not. */
static int keep(struct op *op, const cJSON *rec)
{
    cJSON *copy;

    op->bytes += json_size(rec);
    if (op->bytes > LIST_BYTES_MAX) {
        return RF_ETOOBIG;
    }
    copy = cJSON_Duplicate(rec, 1);
    if (copy == NULL || !cJSON_AddItemToArray(op->acc, copy)) {
        cJSON_Delete(copy);
        return RF_ENOMEM;
    }
    op->kept++;
    return 0;
}

/* Keeps the page's records up to op->max; stops the list there. */
static int on_page(const struct rf_zoho_page *p, void *arg)
{
    struct op *op = arg;
    const cJSON *rec;
    size_t seen = 0;

    if (!rf__call_waiting(op->call)) {
        return 1; /* timed out or stopped: spend no more credits */
    }
    cJSON_ArrayForEach(rec, p->data)
    {
        if (op->kept == op->max) {
            break;
        }
        op->rc = keep(op, rec);
        if (op->rc != 0) {
            return 1;
        }
        seen++;
    }
    op->more = p->more || seen < p->count;
    return op->kept >= op->max;
}

/* Pushes `records, more`. */
static int push_listed(lua_State *L, struct op *op, const void *arg)
{
    const struct rf_zoho_result *res = arg;

    if (res->rc != 0) {
        return push_result_fail(L, res);
    }
    if (op->rc == RF_ETOOBIG) {
        return push_fail(L,
                         "the records are over 8 MiB: ask for fewer "
                         "fields or a lower max",
                         "too_big");
    }
    if (op->rc != 0) {
        return push_fail(L, "out of memory for Zoho's answer", "no_memory");
    }
    if (push_json(L, op->acc) != 1) {
        return 3;
    }
    lua_pushboolean(L, op->more);
    return 2;
}

static void on_listed(const struct rf_zoho_result *res, size_t total, void *arg)
{
    op_end(arg, push_listed, res);
}

/* --- write results ------------------------------------------------------- */

/* Sets t[key] = value at the top of the stack unless value is "". */
static void set_text(lua_State *L, const char *key, const char *value)
{
    if (*value != '\0') {
        lua_pushstring(L, value);
        lua_setfield(L, -2, key);
    }
}

/* Pushes one record's result: ok, code, message, and id, action, field,
 * duplicate_field when Zoho gave them. `fallback` is the code of a record
 * whose call failed without one of Zoho's. */
static void push_item(lua_State *L, const struct op *op,
                      const struct rf_zoho_record_result *it,
                      const char *fallback)
{
    const char *action = it->action;

    if (*action == '\0' && op->update && it->ok) {
        action = "update";
    }
    lua_createtable(L, 0, 7);
    lua_pushboolean(L, it->ok);
    lua_setfield(L, -2, "ok");
    set_text(L, "code", *it->code ? it->code : fallback);
    set_text(L, "message", it->message);
    set_text(L, "id", it->id);
    set_text(L, "action", action);
    set_text(L, "field", it->api_name);
    set_text(L, "duplicate_field", it->duplicate_field);
}

/* One record that Zoho refused: `nil, message, code, result`. */
static int push_refused(lua_State *L, const struct op *op,
                        const struct rf_zoho_record_result *it)
{
    const char *msg = *it->message ? it->message : it->code;

    lua_pushnil(L);
    if (*it->api_name) {
        lua_pushfstring(L, "%s (field %s)", msg, it->api_name);
    } else {
        lua_pushstring(L, msg);
    }
    lua_pushstring(L, it->code);
    push_item(L, op, it, it->code);
    return 4;
}

static int push_written(lua_State *L, struct op *op, const void *arg)
{
    const struct rf_zoho_write_result *res = arg;
    const struct rf_zoho_record_result *first = NULL;
    const char *fallback = our_code(res->rc, 0);

    for (size_t i = 0; i < res->n && first == NULL; i++) {
        first = res->items[i].ok ? NULL : &res->items[i];
    }
    if (res->rc != 0 && res->nfailed == res->n) { /* nothing written */
        return push_fail(L, res->error ? res->error : rf_strerror(res->rc),
                         code_of(res->rc, first ? first->code : NULL,
                                 first ? first->status : 0));
    }
    if (op->single) {
        if (!res->items[0].ok) {
            return push_refused(L, op, &res->items[0]);
        }
        push_item(L, op, &res->items[0], fallback);
        return 1;
    }
    lua_createtable(L, (int)res->n, 0);
    for (size_t i = 0; i < res->n; i++) {
        push_item(L, op, &res->items[i], fallback);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static void on_written(const struct rf_zoho_write_result *res, void *arg)
{
    op_end(arg, push_written, res);
}

/* --- starting calls ------------------------------------------------------ */

/* The tenant's connection, or NULL after pushing the failure. */
static struct rf_zoho *connection(lua_State *L, struct rf_call *c)
{
    struct rf_zoho *z = rf__call_zoho(c);

    if (z == NULL) {
        push_fail(L,
                  "the tenant has no Zoho connection (no zoho table in "
                  "tenant.lua, or it could not be opened: see the log)",
                  "no_connection");
    }
    return z;
}

/* A new operation holding the call, or NULL. */
static struct op *op_new(struct rf_call *c)
{
    struct op *op = calloc(1, sizeof(*op));

    if (op != NULL) {
        op->call = c;
        rf__call_hold(c);
    }
    return op;
}

/* Yields when the connector took the call (rc 0); otherwise drops the
 * operation and returns `nil, message, code`. */
static int op_wait(lua_State *L, struct op *op, int rc)
{
    struct rf_call *c = op ? op->call : NULL;

    if (op != NULL && rc == 0) {
        return rf__call_wait(L, c);
    }
    if (op != NULL) {
        rf__call_release(c);
        cJSON_Delete(op->acc);
        free(op);
    }
    rc = op ? rc : RF_ENOMEM;
    return push_fail(L,
                     rc == RF_ESTOPPING ? "the Zoho connection is closing"
                                        : rf_strerror(rc),
                     our_code(rc, 0));
}

static int l_get(lua_State *L)
{
    struct rf_call *c = rf__call_check(L, "crm.get");
    const char *module = rf__crm_check_module(L, 1, "crm.get");
    char id[RF_ZOHO_ID_MAX], fbuf[TEXT_MAX];
    int opts = rf__crm_check_opts(L, 3, "crm.get");
    const char *fields = rf__crm_read_fields(L, opts, "crm.get", 0, fbuf);
    struct rf_zoho *z;
    struct op *op;

    rf__crm_check_id(L, 2, "crm.get", id);
    if ((z = connection(L, c)) == NULL) {
        return 3;
    }
    op = op_new(c);
    return op_wait(L, op,
                   op ? rf_zoho_get(z, module, id, fields, on_got, op) : 0);
}

static int l_search(lua_State *L)
{
    struct rf_call *c = rf__call_check(L, "crm.search");
    const char *module = rf__crm_check_module(L, 1, "crm.search");
    int opts = rf__crm_check_opts(L, 3, "crm.search");
    char fbuf[TEXT_MAX], criteria[TEXT_MAX];
    const char *fields = rf__crm_read_fields(L, opts, "crm.search", 0, fbuf);
    lua_Integer page =
        rf__crm_read_int(L, opts, "crm.search", "page", 1, 1000000, 1);
    lua_Integer per =
        rf__crm_read_int(L, opts, "crm.search", "per_page", 1,
                         RF_ZOHO_PER_PAGE_MAX, RF_ZOHO_PER_PAGE_MAX);
    struct crit *crit = lua_newuserdatauv(L, sizeof(*crit), 0);
    struct rf_zoho *z;
    struct op *op;

    memset(crit, 0, sizeof(*crit));
    rf__crm_read_criteria(L, 2, crit, criteria);
    if ((z = connection(L, c)) == NULL) {
        return 3;
    }
    op = op_new(c);
    return op_wait(L, op,
                   op ? rf_zoho_search(z, module, criteria, fields,
                                       (unsigned)page, (unsigned)per, on_found,
                                       op)
                      : 0);
}

/* opts.modified_since: ISO 8601 text or seconds since 1970; 0 if absent. */
static int64_t read_since(lua_State *L, int opts)
{
    int64_t t = 0;
    int type = opts ? lua_getfield(L, opts, "modified_since") : LUA_TNIL;

    if (type == LUA_TSTRING) {
        if (rf_zoho_time_parse(lua_tostring(L, -1), &t) != 0 || t <= 0) {
            luaL_error(L, "crm.list: modified_since must look like "
                          "\"2026-03-04T10:21:09+05:30\"");
        }
    } else if (type == LUA_TNUMBER) {
        double d = lua_tonumber(L, -1);

        if (!(d >= 1 && d < 253402300800.0)) { /* before year 10000 */
            luaL_error(L, "crm.list: modified_since must be a time after "
                          "1970");
        }
        t = (int64_t)d;
    } else if (type != LUA_TNIL) {
        luaL_error(L, "crm.list: modified_since must be text or seconds");
    }
    if (opts) {
        lua_pop(L, 1);
    }
    return t;
}

static int l_list(lua_State *L)
{
    static const char *const sorts[] = {"id", "Created_Time", "Modified_Time",
                                        NULL};
    static const char *const orders[] = {"asc", "desc", NULL};
    struct rf_call *c = rf__call_check(L, "crm.list");
    struct rf_zoho_list_opts o = {.module =
                                      rf__crm_check_module(L, 1, "crm.list")};
    int opts = rf__crm_check_opts(L, 2, "crm.list");
    char fbuf[TEXT_MAX];
    const char *order;
    struct rf_zoho *z;
    struct op *op;

    o.fields = rf__crm_read_fields(L, opts, "crm.list", 1, fbuf);
    o.sort_by = rf__crm_read_choice(L, opts, "crm.list", "sort_by", sorts,
                                    "id, Created_Time or Modified_Time");
    order = rf__crm_read_choice(L, opts, "crm.list", "sort_order", orders,
                                "asc or desc");
    o.desc = order != NULL && strcmp(order, "desc") == 0;
    o.modified_since = read_since(L, opts);
    o.max_records = (size_t)rf__crm_read_int(L, opts, "crm.list", "max", 1,
                                             LIST_MAX, LIST_DEFAULT);
    o.per_page = o.max_records < RF_ZOHO_PER_PAGE_MAX ? (unsigned)o.max_records
                                                      : RF_ZOHO_PER_PAGE_MAX;
    if ((z = connection(L, c)) == NULL) {
        return 3;
    }
    op = op_new(c);
    if (op != NULL && (op->acc = cJSON_CreateArray()) != NULL) {
        op->max = o.max_records;
        return op_wait(L, op, rf_zoho_list(z, &o, on_page, on_listed, op));
    }
    return op_wait(L, op, RF_ENOMEM);
}

/* --- starting writes ----------------------------------------------------- */

static int guard_gc(lua_State *L)
{
    struct guard *g = luaL_checkudata(L, 1, GUARD_MT);

    cJSON_Delete(g->tree);
    g->tree = NULL;
    return 0;
}

/* The record (or, when `lists`, the list of records) at `idx` as JSON,
 * held by a guard left on the stack; raises on a mistake. */
static struct guard *read_records(lua_State *L, int idx, const char *fn,
                                  int lists)
{
    struct guard *g = lua_newuserdatauv(L, sizeof(*g), 0);
    char err[160];
    const cJSON *r, *list;
    int n;

    g->tree = NULL;
    luaL_setmetatable(L, GUARD_MT);
    if (lua_type(L, idx) == LUA_TTABLE) {
        g->tree = rf_api_to_json(L, idx, err, sizeof(err));
        if (g->tree == NULL) {
            luaL_error(L, "%s: %s", fn, err);
        }
    }
    if (g->tree == NULL || (!lists && !cJSON_IsObject(g->tree))) {
        luaL_error(L, "%s: expected a table of field = value%s", fn,
                   lists ? ", or a list of them" : "");
    }
    n = cJSON_IsArray(g->tree) ? cJSON_GetArraySize(g->tree) : 1;
    if (n == 0 || n > WRITE_MAX) {
        luaL_error(L, "%s: a list of 1 to %d records", fn, WRITE_MAX);
    }
    list = cJSON_IsArray(g->tree) ? g->tree : NULL;
    cJSON_ArrayForEach(r, list)
    {
        if (!cJSON_IsObject(r)) {
            luaL_error(L, "%s: every record must be a table of field = value",
                       fn);
        }
    }
    return g;
}

/* A list option of API names (opts.trigger, opts.duplicate_check_fields)
 * into names[], their text copied into text; -1 when absent. */
static int read_names(lua_State *L, int opts, const char *fn, const char *key,
                      const char *names[NAMES_MAX], char text[TEXT_MAX])
{
    int type = opts ? lua_getfield(L, opts, key) : LUA_TNIL;
    lua_Integer n = type == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : -1;
    size_t used = 0, len = 0;

    if (type != LUA_TNIL && (n < 0 || n > NAMES_MAX)) {
        luaL_error(L, "%s: %s must be a list of at most %d names", fn, key,
                   NAMES_MAX);
    }
    for (lua_Integer i = 1; i <= n; i++) {
        const char *s;

        lua_rawgeti(L, -1, i);
        if ((s = rf__crm_name_at(L, -1, &len)) == NULL) {
            luaL_error(L, "%s: %s must hold Zoho API names", fn, key);
        }
        memcpy(text + used, s, len + 1); /* NAMES_MAX x 101 < TEXT_MAX */
        names[i - 1] = text + used;
        used += len + 1;
        lua_pop(L, 1);
    }
    if (opts) {
        lua_pop(L, 1);
    }
    return type == LUA_TNIL ? -1 : (int)n;
}

/* Reads opts.trigger into o; the arrays live in the caller's frame. */
static void read_trigger(lua_State *L, int opts, const char *fn,
                         struct rf_zoho_write_opts *o,
                         const char *names[NAMES_MAX], char text[TEXT_MAX])
{
    int n = read_names(L, opts, fn, "trigger", names, text);

    o->trigger = names;
    o->n_trigger = n > 0 ? (size_t)n : 0;
    o->trigger_set = n >= 0;
}

/* Writes the guarded records (one record when `single`), frees them (the
 * connector keeps a copy) and yields. */
static int start_write(lua_State *L, struct rf_call *c,
                       const struct rf_zoho_write_opts *o, struct guard *g,
                       int single)
{
    struct rf_zoho *z = connection(L, c);
    struct op *op;
    cJSON *list;
    int rc = RF_ENOMEM;

    if (z == NULL) {
        return 3;
    }
    op = op_new(c);
    list = single ? cJSON_CreateArrayReference(g->tree) : g->tree;
    if (op != NULL && list != NULL) {
        op->single = single;
        op->update = o->op == RF_ZOHO_UPDATE;
        rc = rf_zoho_write(z, o, list, on_written, op);
    }
    if (single) {
        cJSON_Delete(list); /* a reference: leaves the record alone */
    }
    cJSON_Delete(g->tree);
    g->tree = NULL;
    return op_wait(L, op, rc);
}

static int l_upsert(lua_State *L)
{
    struct rf_call *c = rf__call_check(L, "crm.upsert");
    struct rf_zoho_write_opts o = {.module =
                                       rf__crm_check_module(L, 1, "crm.upsert"),
                                   .op = RF_ZOHO_UPSERT};
    int opts = rf__crm_check_opts(L, 3, "crm.upsert");
    const char *trig[NAMES_MAX], *dup[NAMES_MAX];
    char ttext[TEXT_MAX], dtext[TEXT_MAX];
    int ndup =
        read_names(L, opts, "crm.upsert", "duplicate_check_fields", dup, dtext);
    struct guard *g;

    read_trigger(L, opts, "crm.upsert", &o, trig, ttext);
    o.duplicate_check_fields = dup;
    o.n_duplicate_check_fields = ndup > 0 ? (size_t)ndup : 0;
    g = read_records(L, 2, "crm.upsert", 1);
    return start_write(L, c, &o, g, !cJSON_IsArray(g->tree));
}

static int l_update(lua_State *L)
{
    struct rf_call *c = rf__call_check(L, "crm.update");
    struct rf_zoho_write_opts o = {.module =
                                       rf__crm_check_module(L, 1, "crm.update"),
                                   .op = RF_ZOHO_UPDATE};
    int opts = rf__crm_check_opts(L, 4, "crm.update");
    const char *trig[NAMES_MAX];
    char id[RF_ZOHO_ID_MAX], ttext[TEXT_MAX];
    struct guard *g;

    rf__crm_check_id(L, 2, "crm.update", id);
    read_trigger(L, opts, "crm.update", &o, trig, ttext);
    g = read_records(L, 3, "crm.update", 0);
    cJSON_DeleteItemFromObjectCaseSensitive(g->tree, "id");
    if (cJSON_AddStringToObject(g->tree, "id", id) == NULL) {
        return push_fail(L, "out of memory", "no_memory");
    }
    return start_write(L, c, &o, g, 1);
}

void rf__api_open_crm(lua_State *L)
{
    static const luaL_Reg fns[] = {{"get", l_get},       {"search", l_search},
                                   {"list", l_list},     {"upsert", l_upsert},
                                   {"update", l_update}, {NULL, NULL}};

    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_setglobal(L, "crm");
}

/* The report of a tenant's referral program: figures per UTC day and in
 * total, from the audit log, the referrals, the daily counters and the
 * outbox, all read in one transaction. */
#include "referee/report.h"
#include "referee/audit.h"
#include "referee/counters.h"
#include "referee/error.h"
#include "referee/outbox.h"
#include "referee/referrals.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The outbox's own record decoder, so that the report reads jobs exactly
 * as the outbox wrote them. */
#include "outbox/internal.h"

struct fig {
    long enrolled, visits, received, refused, in_crm, qualified, rejected,
        reversed, rewards, dead;
    cJSON *reasons; /* reason -> count */
    cJSON *values;  /* currency -> amount */
};

struct day {
    char day[11];
    struct fig f;
};

struct acc {
    const char *tenant;
    struct day *v; /* sorted by day */
    size_t n, cap;
    struct fig total;
    long review;
    int oom;
};

/* The columns of the table and the CSV, in order. */
static const struct {
    const char *name, *head;
    size_t off;
} columns[] = {
#define C(name, head, field)                                                   \
    {                                                                          \
        name, head, offsetof(struct fig, field)                                \
    }
    C("enrolled", "enrolled", enrolled), C("visits", "visits", visits),
    C("received", "received", received), C("refused", "refused", refused),
    C("in_crm", "in CRM", in_crm),       C("qualified", "qualified", qualified),
    C("rejected", "rejected", rejected), C("reversed", "reversed", reversed),
    C("dead_letters", "dead", dead),
#undef C
};
#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

static long *field(struct fig *f, size_t off)
{
    return (long *)((char *)f + off);
}

static void fig_cleanup(struct fig *f)
{
    cJSON_Delete(f->reasons);
    cJSON_Delete(f->values);
}

/* The figures of `day`, inserted in order when new; NULL when memory runs
 * out. */
static struct fig *fig_of_day(struct acc *a, const char *day)
{
    size_t lo = 0, hi = a->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(a->v[mid].day, day);

        if (c == 0) {
            return &a->v[mid].f;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        struct day *v = realloc(a->v, cap * sizeof(*v));

        if (v == NULL) {
            a->oom = 1;
            return NULL;
        }
        a->v = v;
        a->cap = cap;
    }
    memmove(&a->v[lo + 1], &a->v[lo], (a->n - lo) * sizeof(*a->v));
    memset(&a->v[lo], 0, sizeof(*a->v));
    snprintf(a->v[lo].day, sizeof(a->v[lo].day), "%s", day);
    a->n++;
    return &a->v[lo].f;
}

/* Adds n to a figure on `day` and in the total. */
static void bump(struct acc *a, const char *day, size_t off, long n)
{
    struct fig *f = fig_of_day(a, day);

    if (f != NULL) {
        *field(f, off) += n;
    }
    *field(&a->total, off) += n;
}

static void bump_at(struct acc *a, double unix_s, size_t off)
{
    char day[11];

    rf_day((int64_t)unix_s, day);
    bump(a, day, off, 1);
}

/* Adds `amount` under `name` of an object, creating both as needed. */
static void add_to(struct acc *a, cJSON **obj, const char *name, double amount)
{
    cJSON *n;

    if (*obj == NULL && (*obj = cJSON_CreateObject()) == NULL) {
        a->oom = 1;
        return;
    }
    n = cJSON_GetObjectItemCaseSensitive(*obj, name);
    if (n != NULL) {
        cJSON_SetNumberValue(n, n->valuedouble + amount);
    } else if (cJSON_AddNumberToObject(*obj, name, amount) == NULL) {
        a->oom = 1;
    }
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *name, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* --- the sources --------------------------------------------------------- */

static void add_refusal(struct acc *a, const cJSON *e, double at)
{
    const char *reason = str(e, "reason");
    char day[11];
    struct fig *f;

    if (reason == NULL) {
        reason = str(cJSON_GetObjectItemCaseSensitive(e, "evidence"), "reason");
    }
    if (reason == NULL) {
        reason = "unknown";
    }
    rf_day((int64_t)at, day);
    bump(a, day, offsetof(struct fig, refused), 1);
    f = fig_of_day(a, day);
    if (f != NULL) {
        add_to(a, &f->reasons, reason, 1);
    }
    add_to(a, &a->total.reasons, reason, 1);
}

static int on_audit(const cJSON *e, void *arg)
{
    static const struct {
        const char *kind;
        size_t off;
    } kinds[] = {
        {"enrolled", offsetof(struct fig, enrolled)},
        {"in_crm", offsetof(struct fig, in_crm)},
        {"qualified", offsetof(struct fig, qualified)},
        {"rejected", offsetof(struct fig, rejected)},
        {"reversed", offsetof(struct fig, reversed)},
    };
    struct acc *a = arg;
    const char *kind = str(e, "kind");
    double at = num(e, "at", 0);

    if (kind == NULL) {
        return 0;
    }
    if (strcmp(kind, "refused") == 0) {
        add_refusal(a, e, at);
        return a->oom ? RF_ENOMEM : 0;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(kind, kinds[i].kind) == 0) {
            bump_at(a, at, kinds[i].off);
        }
    }
    return a->oom ? RF_ENOMEM : 0;
}

/* The rewards recorded on a referral: each {rule, amount, currency, ...}
 * counts once, on the day of its own "at" (or "issued_at"), else the day
 * the referral qualified, else the day it was received. */
static void add_rewards(struct acc *a, const cJSON *r)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r, "rewards");
    const cJSON *w, *items = cJSON_IsArray(list) ? list : NULL;
    double fallback = num(r, "qualified_at", num(r, "at", 0));

    cJSON_ArrayForEach(w, items)
    {
        const char *currency = str(w, "currency");
        const cJSON *amount = cJSON_GetObjectItemCaseSensitive(w, "amount");
        double at = num(w, "at", num(w, "issued_at", fallback));
        char day[11];
        struct fig *f;

        if (!cJSON_IsObject(w)) {
            continue;
        }
        rf_day((int64_t)at, day);
        bump(a, day, offsetof(struct fig, rewards), 1);
        if (currency == NULL || !cJSON_IsNumber(amount)) {
            continue; /* counted, but it has no value to add */
        }
        f = fig_of_day(a, day);
        if (f != NULL) {
            add_to(a, &f->values, currency, amount->valuedouble);
        }
        add_to(a, &a->total.values, currency, amount->valuedouble);
    }
}

static int on_referral(const cJSON *r, void *arg)
{
    struct acc *a = arg;
    const char *status = str(r, "status");

    bump_at(a, num(r, "at", 0), offsetof(struct fig, received));
    if (status != NULL && strcmp(status, "review") == 0) {
        a->review++;
    }
    add_rewards(a, r);
    return a->oom ? RF_ENOMEM : 0;
}

static int on_counter(const char *day, const char *name, uint64_t value,
                      void *arg)
{
    struct acc *a = arg;

    if (strcmp(name, "visits") == 0) {
        bump(a, day, offsetof(struct fig, visits), (long)value);
    }
    return a->oom ? RF_ENOMEM : 0;
}

/* Dead letters of the tenant, on the day each died. */
static int scan_outbox(MDB_txn *txn, const struct rf_store *st, struct acc *a)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc = mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_OUTBOX), &cur);

    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && !a->oom;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct rf_job j;

        if (k.mv_size != 8 ||
            rf__job_decode(v.mv_data, v.mv_size, rf_store_get_be64(k.mv_data),
                           &j) != 0) {
            continue;
        }
        if (j.state == RF_JOB_DEAD && strcmp(j.tenant, a->tenant) == 0) {
            bump_at(a, (double)(j.finished_ms / 1000),
                    offsetof(struct fig, dead));
        }
        rf_job_cleanup(&j);
    }
    mdb_cursor_close(cur);
    if (a->oom) {
        return RF_ENOMEM;
    }
    return mrc == MDB_NOTFOUND ? 0 : rf_store_rc(mrc);
}

/* --- the result ---------------------------------------------------------- */

static cJSON *fig_json(const struct fig *f)
{
    cJSON *o = cJSON_CreateObject(), *rw;

    for (size_t i = 0; o != NULL && i < NCOLUMNS; i++) {
        cJSON_AddNumberToObject(
            o, columns[i].name,
            (double)*field((struct fig *)f, columns[i].off));
    }
    cJSON_AddItemToObject(o, "refused_by_reason",
                          f->reasons ? cJSON_Duplicate(f->reasons, 1)
                                     : cJSON_CreateObject());
    rw = cJSON_AddObjectToObject(o, "rewards");
    cJSON_AddNumberToObject(rw, "count", (double)f->rewards);
    cJSON_AddItemToObject(rw, "value",
                          f->values ? cJSON_Duplicate(f->values, 1)
                                    : cJSON_CreateObject());
    return o;
}

static cJSON *to_json(const struct acc *a, int64_t now_s)
{
    cJSON *out = cJSON_CreateObject(), *days, *total;

    cJSON_AddStringToObject(out, "tenant", a->tenant);
    cJSON_AddNumberToObject(out, "generated_at", (double)now_s);
    days = cJSON_AddArrayToObject(out, "days");
    for (size_t i = 0; i < a->n; i++) {
        cJSON *d = fig_json(&a->v[i].f);

        if (d != NULL) {
            cJSON_AddItemToObject(d, "day", cJSON_CreateString(a->v[i].day));
        }
        cJSON_AddItemToArray(days, d);
    }
    total = fig_json(&a->total);
    if (a->total.in_crm > 0) {
        cJSON_AddNumberToObject(total, "qualification_rate",
                                (double)a->total.qualified /
                                    (double)a->total.in_crm);
    } else {
        cJSON_AddNullToObject(total, "qualification_rate");
    }
    cJSON_AddNumberToObject(total, "review", (double)a->review);
    cJSON_AddItemToObject(out, "total", total);
    return out;
}

int rf_report_build(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                    int64_t now_s, cJSON **out)
{
    struct acc a;
    int rc;

    memset(&a, 0, sizeof(a));
    a.tenant = tenant;
    *out = NULL;
    rc = rf_audit_each(txn, st, tenant, 0, on_audit, &a);
    if (rc == 0) {
        rc = rf_referrals_each(txn, st, tenant, on_referral, &a);
    }
    if (rc == 0) {
        rc = rf_counters_each(txn, st, tenant, on_counter, &a);
    }
    if (rc == 0) {
        rc = scan_outbox(txn, st, &a);
    }
    if (rc == 0 && !a.oom) {
        *out = to_json(&a, now_s);
        rc = *out ? 0 : RF_ENOMEM;
    }
    for (size_t i = 0; i < a.n; i++) {
        fig_cleanup(&a.v[i].f);
    }
    fig_cleanup(&a.total);
    free(a.v);
    return rc != 0 ? rc : (a.oom ? RF_ENOMEM : 0);
}

int rf_report_compute(struct rf_store *st, const char *tenant, int64_t now_s,
                      cJSON **out)
{
    MDB_txn *txn = NULL;
    int rc = rf_store_read_begin(st, &txn);

    *out = NULL;
    if (rc != 0) {
        return rc;
    }
    rc = rf_report_build(txn, st, tenant, now_s, out);
    rf_store_read_end(st, txn);
    return rc;
}

/* --- text and CSV -------------------------------------------------------- */

/* "a 1, b 2" (sep ", ", fmt "%s %g") or "a:1;b:2" from an object. */
static void print_pairs(FILE *f, const cJSON *o, const char *sep,
                        const char *fmt)
{
    const cJSON *p;
    int first = 1;

    cJSON_ArrayForEach(p, o)
    {
        fprintf(f, "%s", first ? "" : sep);
        fprintf(f, fmt, p->string, p->valuedouble);
        first = 0;
    }
}

static void text_row(FILE *f, const char *day, const cJSON *o)
{
    const cJSON *rw = cJSON_GetObjectItemCaseSensitive(o, "rewards");

    fprintf(f, "%-10s", day);
    for (size_t i = 0; i < NCOLUMNS; i++) {
        fprintf(f, " %*.0f",
                (int)strlen(columns[i].head) < 6 ? 6
                                                 : (int)strlen(columns[i].head),
                num(o, columns[i].name, 0));
    }
    fprintf(f, " %7.0f\n", num(rw, "count", 0));
}

int rf_report_print_text(FILE *f, const cJSON *report)
{
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(report, "days");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(report, "total");
    const cJSON *rate =
        cJSON_GetObjectItemCaseSensitive(total, "qualification_rate");
    const cJSON *rw = cJSON_GetObjectItemCaseSensitive(total, "rewards");
    const cJSON *d, *reasons, *value;

    fprintf(f, "Referral report for %s (days in UTC)\n\n%-10s",
            str(report, "tenant"), "day");
    for (size_t i = 0; i < NCOLUMNS; i++) {
        fprintf(f, " %6s", columns[i].head);
    }
    fprintf(f, " %7s\n", "rewards");
    cJSON_ArrayForEach(d, days)
    {
        text_row(f, str(d, "day"), d);
    }
    text_row(f, "total", total);
    if (cJSON_IsNumber(rate)) {
        fprintf(f,
                "\nqualification rate: %.1f%% (%.0f qualified of %.0f "
                "in CRM)\n",
                rate->valuedouble * 100, num(total, "qualified", 0),
                num(total, "in_crm", 0));
    } else {
        fprintf(f, "\nqualification rate: - (nothing in CRM yet)\n");
    }
    reasons = cJSON_GetObjectItemCaseSensitive(total, "refused_by_reason");
    value = cJSON_GetObjectItemCaseSensitive(rw, "value");
    fprintf(f, "refused by reason: ");
    if (reasons == NULL || reasons->child == NULL) {
        fprintf(f, "none");
    }
    print_pairs(f, reasons, ", ", "%s %g");
    fprintf(f, "\nrewards issued: %.0f", num(rw, "count", 0));
    if (value != NULL && value->child != NULL) {
        fprintf(f, ", value: ");
        print_pairs(f, value, ", ", "%s %.2f");
    }
    fprintf(f, "\nwaiting for review: %.0f\ndead letters: %.0f\n",
            num(total, "review", 0), num(total, "dead_letters", 0));
    return ferror(f) ? -EIO : 0;
}

static void csv_row(FILE *f, const char *day, const cJSON *o, int total)
{
    const cJSON *rw = cJSON_GetObjectItemCaseSensitive(o, "rewards");
    const cJSON *rate =
        cJSON_GetObjectItemCaseSensitive(o, "qualification_rate");

    fprintf(f, "%s", day);
    for (size_t i = 0; i < NCOLUMNS; i++) {
        fprintf(f, ",%.0f", num(o, columns[i].name, 0));
    }
    fprintf(f, ",%.0f,\"", num(rw, "count", 0));
    print_pairs(f, cJSON_GetObjectItemCaseSensitive(o, "refused_by_reason"),
                ";", "%s:%g");
    fprintf(f, "\",\"");
    print_pairs(f, cJSON_GetObjectItemCaseSensitive(rw, "value"), ";",
                "%s:%.2f");
    fprintf(f, "\",");
    if (total && cJSON_IsNumber(rate)) {
        fprintf(f, "%.4f", rate->valuedouble);
    }
    fprintf(f, ",");
    if (total) {
        fprintf(f, "%.0f", num(o, "review", 0));
    }
    fprintf(f, "\n");
}

int rf_report_print_csv(FILE *f, const cJSON *report)
{
    const cJSON *d;

    fprintf(f, "day");
    for (size_t i = 0; i < NCOLUMNS; i++) {
        fprintf(f, ",%s", columns[i].name);
    }
    fprintf(f, ",rewards,refused_by_reason,reward_value,"
               "qualification_rate,review\n");
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(report, "days"))
    {
        csv_row(f, str(d, "day"), d, 0);
    }
    csv_row(f, "total", cJSON_GetObjectItemCaseSensitive(report, "total"), 1);
    return ferror(f) ? -EIO : 0;
}

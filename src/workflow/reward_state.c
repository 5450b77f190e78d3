/* Rewards: checking the reward hook's answer and the state changes it
 * causes (decision, review, settled jobs), each inside the caller's write
 * transaction. The script-thread side is in reward.c. */
#include "referee/audit.h"
#include "referee/error.h"
#include "referee/referrals.h"
#include "referee/reward.h"
#include "referee/utf8.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000.0
#define REVIEW_MAX 200
#define TEXT_MAX 300

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int is(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

static void set(cJSON *o, const char *name, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    if (v != NULL) {
        cJSON_AddItemToObject(o, name, v);
    }
}

/* --- checking the answer ------------------------------------------------ */

static int rule_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > RF_REWARD_RULE_MAX) {
        return 0;
    }
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && !strchr("_-.", *s)) {
            return 0;
        }
    }
    return 1;
}

static int currency_ok(const char *s)
{
    return s != NULL && strlen(s) == 3 && isupper((unsigned char)s[0]) &&
           isupper((unsigned char)s[1]) && isupper((unsigned char)s[2]);
}

static int digits(const char *s)
{
    if (s == NULL || !*s || strlen(s) >= 24) {
        return 0;
    }
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) {
            return 0;
        }
    }
    return 1;
}

static int fail(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t n, const char *fmt, ...)
{
    char what[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(err, n, "reward: %s", what);
    return RF_EINVAL;
}

static int check_reward(const cJSON *a, int i, char *err, size_t n)
{
    const char *to = str(a, "to"), *plugin = str(a, "plugin");
    const cJSON *amount = cJSON_GetObjectItemCaseSensitive(a, "amount");

    if (!is(to, "referrer") && !is(to, "referred")) {
        return fail(err, n,
                    "actions[%d].to must be \"referrer\" or "
                    "\"referred\"",
                    i);
    }
    if (plugin == NULL || !*plugin || strlen(plugin) > 128) {
        return fail(err, n,
                    "actions[%d].plugin must name a reward-provider "
                    "plugin (\"giftcard\")",
                    i);
    }
    if (!cJSON_IsNumber(amount) || !(amount->valuedouble > 0) ||
        !isfinite(amount->valuedouble)) {
        return fail(err, n, "actions[%d].amount must be a number above 0", i);
    }
    if (!currency_ok(str(a, "currency"))) {
        return fail(err, n,
                    "actions[%d].currency must be a currency code "
                    "such as \"EUR\"",
                    i);
    }
    return 0;
}

static int check_action(const cJSON *a, int i, char *err, size_t n)
{
    const char *kind = str(a, "kind"), *url = str(a, "url");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(a, "fields");

    if (!cJSON_IsObject(a)) {
        return fail(err, n, "actions[%d] must be a table", i);
    }
    if (!rule_ok(str(a, "rule"))) {
        return fail(err, n,
                    "actions[%d].rule must be 1 to 64 letters, "
                    "digits, '_', '-' or '.'",
                    i);
    }
    if (is(kind, "reward")) {
        return check_reward(a, i, err, n);
    }
    if (is(kind, "webhook")) {
        if (url == NULL || (strncmp(url, "https://", 8) != 0 &&
                            strncmp(url, "http://", 7) != 0)) {
            return fail(err, n, "actions[%d].url must be an http(s) URL", i);
        }
        return 0;
    }
    if (is(kind, "crm_update")) {
        if (str(a, "module") == NULL || !digits(str(a, "id")) ||
            !cJSON_IsObject(fields) || fields->child == NULL) {
            return fail(err, n,
                        "actions[%d] (crm_update) needs module, id "
                        "(a record id, as text) and fields (a "
                        "table)",
                        i);
        }
        return 0;
    }
    return fail(err, n,
                "actions[%d].kind must be \"reward\", \"webhook\" "
                "or \"crm_update\", not '%.40s'",
                i, kind ? kind : "(none)");
}

static int check_actions(const cJSON *actions, char *err, size_t n)
{
    int i = 1, rc;

    if (actions == NULL || (cJSON_IsObject(actions) && !actions->child)) {
        return 0; /* an empty Lua table may encode as {} */
    }
    if (!cJSON_IsArray(actions) ||
        cJSON_GetArraySize(actions) > RF_REWARD_ACTIONS_MAX) {
        return fail(err, n, "actions must be a list of at most %d actions",
                    RF_REWARD_ACTIONS_MAX);
    }
    for (const cJSON *a = actions->child; a; a = a->next, i++) {
        if ((rc = check_action(a, i, err, n)) != 0) {
            return rc;
        }
        for (const cJSON *b = actions->child; b != a; b = b->next) {
            if (is(str(b, "rule"), str(a, "rule"))) {
                return fail(err, n, "actions[%d].rule '%s' is used twice", i,
                            str(a, "rule"));
            }
        }
    }
    return 0;
}

int rf_reward_check(const cJSON *answer, enum rf_reward_phase phase, char *err,
                    size_t errlen)
{
    const cJSON *review, *hold;

    if (answer == NULL || cJSON_IsNull(answer)) {
        return 0;
    }
    if (!cJSON_IsObject(answer) &&
        !(cJSON_IsArray(answer) && answer->child == NULL)) {
        return fail(err, errlen,
                    "the hook must return a table { actions = "
                    "{...}, review = ..., hold_days = ... } or "
                    "nil");
    }
    for (const cJSON *k = answer->child; k; k = k->next) {
        if (!is(k->string, "actions") && !is(k->string, "review") &&
            !is(k->string, "hold_days")) {
            return fail(err, errlen,
                        "unknown key '%.40s' (expected "
                        "actions, review, hold_days)",
                        k->string ? k->string : "?");
        }
    }
    review = cJSON_GetObjectItemCaseSensitive(answer, "review");
    hold = cJSON_GetObjectItemCaseSensitive(answer, "hold_days");
    if (review != NULL && phase == RF_REWARD_CLAWBACK) {
        return fail(err, errlen, "a clawback cannot ask for review");
    }
    if (review != NULL && (!cJSON_IsString(review) || !review->valuestring[0] ||
                           strlen(review->valuestring) > REVIEW_MAX)) {
        return fail(err, errlen, "review must be a reason, 1 to %d bytes",
                    REVIEW_MAX);
    }
    if (hold != NULL && (!cJSON_IsNumber(hold) || !(hold->valuedouble >= 0) ||
                         hold->valuedouble > RF_REWARD_HOLD_DAYS_MAX)) {
        return fail(err, errlen, "hold_days must be a number from 0 to %d",
                    RF_REWARD_HOLD_DAYS_MAX);
    }
    return check_actions(cJSON_GetObjectItemCaseSensitive(answer, "actions"),
                         err, errlen);
}

int rf_reward_due(const cJSON *r, const char *version,
                  enum rf_reward_phase *phase)
{
    int reversed =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "reversed"));

    if (reversed) {
        *phase = RF_REWARD_CLAWBACK;
        return cJSON_GetObjectItemCaseSensitive(r, "clawback") == NULL &&
               !is(str(r, "clawback_version"), version);
    }
    *phase = RF_REWARD_PAY;
    return is(str(r, "status"), "qualified") &&
           !is(str(r, "reward_version"), version);
}

/* --- jobs --------------------------------------------------------------- */

static void job_key(char *out, size_t n, enum rf_reward_phase phase,
                    uint64_t id, const char *rule)
{
    snprintf(out, n, "%s:%llu:%s",
             phase == RF_REWARD_CLAWBACK ? "clawback" : "reward",
             (unsigned long long)id, rule);
}

static const char *phase_name(enum rf_reward_phase phase)
{
    return phase == RF_REWARD_CLAWBACK ? "clawback" : "reward";
}

static int add_job(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                   uint64_t id, enum rf_reward_phase phase, const cJSON *action,
                   int64_t due_ms)
{
    const char *rule = str(action, "rule");
    const char *kind = is(str(action, "kind"), "crm_update")
                           ? RF_REWARD_KIND_CRM
                           : RF_REWARD_KIND_PAY;
    cJSON *p = cJSON_CreateObject();
    char key[RF_JOB_KEY_MAX], *text = NULL;
    int rc = RF_ENOMEM;

    job_key(key, sizeof(key), phase, id, rule);
    if (p != NULL && cJSON_AddNumberToObject(p, "referral", (double)id) &&
        cJSON_AddStringToObject(p, "rule", rule) &&
        cJSON_AddStringToObject(p, "phase", phase_name(phase)) &&
        cJSON_AddItemReferenceToObject(p, "action", (cJSON *)action)) {
        text = cJSON_PrintUnformatted(p);
    }
    if (text != NULL) {
        rc = rf_outbox_add(txn, st, tenant, kind, key, text, due_ms, NULL);
    }
    cJSON_free(text);
    cJSON_Delete(p);
    return rc;
}

static int add_jobs(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                    uint64_t id, enum rf_reward_phase phase,
                    const cJSON *actions, int64_t due_ms, int *jobs)
{
    int rc = 0;

    *jobs = 0;
    for (const cJSON *a = cJSON_IsArray(actions) ? actions->child : NULL;
         a && rc == 0; a = a->next) {
        rc = add_job(txn, st, tenant, id, phase, a, due_ms);
        *jobs += rc == 0;
    }
    return rc;
}

/* --- decisions ---------------------------------------------------------- */

static int audit(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                 const char *kind, uint64_t id, const char *version,
                 int64_t at_ms, cJSON *a)
{
    int rc = RF_ENOMEM;

    if (a != NULL && cJSON_AddNumberToObject(a, "referral", (double)id) &&
        (version == NULL || cJSON_AddStringToObject(a, "version", version))) {
        rc = rf_audit_put(txn, st, tenant, kind, at_ms, a);
    }
    cJSON_Delete(a);
    return rc;
}

/* The decision as kept on the referral and in the audit entry. */
static cJSON *decision(const cJSON *answer, const char *version, int64_t at_ms,
                       int64_t due_ms)
{
    const cJSON *actions = cJSON_GetObjectItemCaseSensitive(answer, "actions");
    const cJSON *hold = cJSON_GetObjectItemCaseSensitive(answer, "hold_days");
    cJSON *d = cJSON_CreateObject();

    if (d == NULL) {
        return NULL;
    }
    cJSON_AddStringToObject(d, "version", version);
    cJSON_AddNumberToObject(d, "at", (double)(at_ms / 1000));
    cJSON_AddItemToObject(d, "actions",
                          cJSON_IsArray(actions) ? cJSON_Duplicate(actions, 1)
                                                 : cJSON_CreateArray());
    if (cJSON_IsNumber(hold)) {
        cJSON_AddNumberToObject(d, "hold_days", hold->valuedouble);
    }
    cJSON_AddNumberToObject(d, "due_ms", (double)due_ms);
    return d;
}

static int decide_pay(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant, uint64_t id, cJSON *r,
                      const cJSON *answer, const char *version, int64_t at_ms,
                      struct rf_reward_outcome *out)
{
    const cJSON *hold = cJSON_GetObjectItemCaseSensitive(answer, "hold_days");
    const char *review = str(answer, "review");
    int64_t due = at_ms + (cJSON_IsNumber(hold)
                               ? (int64_t)llround(hold->valuedouble * DAY_MS)
                               : 0);
    cJSON *d = decision(answer, version, at_ms, due);
    const cJSON *actions = cJSON_GetObjectItemCaseSensitive(d, "actions");
    const char *kind = "rewarded";
    int rc = d ? 0 : RF_ENOMEM;

    if (rc == 0 && review != NULL) {
        kind = "review_requested";
        set(r, "status", cJSON_CreateString("review"));
        set(r, "review_reason", cJSON_CreateString(review));
    } else if (rc == 0 && cJSON_GetArraySize(actions) == 0) {
        kind = "no_reward";
        set(r, "status", cJSON_CreateString("no_reward"));
    } else if (rc == 0) {
        rc = add_jobs(txn, st, tenant, id, RF_REWARD_PAY, actions, due,
                      &out->jobs);
        set(r, "status", cJSON_CreateString("rewarded"));
    }
    set(r, "reward_error", NULL);
    set(r, "reward_version", NULL);
    if (rc == 0) {
        rc = audit(txn, st, tenant, kind, id, version, at_ms,
                   cJSON_Duplicate(d, 1));
    }
    set(r, "reward", d);
    return rc;
}

static int decide_clawback(MDB_txn *txn, const struct rf_store *st,
                           const char *tenant, uint64_t id, cJSON *r,
                           const cJSON *answer, const char *version,
                           int64_t at_ms, struct rf_reward_outcome *out)
{
    const cJSON *hold = cJSON_GetObjectItemCaseSensitive(answer, "hold_days");
    int64_t due = at_ms + (cJSON_IsNumber(hold)
                               ? (int64_t)llround(hold->valuedouble * DAY_MS)
                               : 0);
    cJSON *d = decision(answer, version, at_ms, due);
    int rc = d ? 0 : RF_ENOMEM;

    if (rc == 0) {
        rc = add_jobs(txn, st, tenant, id, RF_REWARD_CLAWBACK,
                      cJSON_GetObjectItemCaseSensitive(d, "actions"), due,
                      &out->jobs);
    }
    set(r, "clawback_error", NULL);
    set(r, "clawback_version", NULL);
    if (rc == 0) {
        rc = audit(txn, st, tenant, "clawback", id, version, at_ms,
                   cJSON_Duplicate(d, 1));
    }
    set(r, "clawback", d);
    return rc;
}

int rf_reward_decide(MDB_txn *txn, const struct rf_store *st,
                     const char *tenant, uint64_t id,
                     enum rf_reward_phase phase, const cJSON *answer,
                     const char *version, int64_t at_ms,
                     struct rf_reward_outcome *out)
{
    enum rf_reward_phase due_phase;
    cJSON *r = NULL;
    int rc = rf_referral_get(txn, st, tenant, id, &r);

    memset(out, 0, sizeof(*out));
    if (rc != 0) {
        return rc == RF_ENOTFOUND ? 0 : rc;
    }
    /* Decided meanwhile (a repeat after a crash, two triggers): nothing. */
    if (!rf_reward_due(r, "", &due_phase) || due_phase != phase) {
        cJSON_Delete(r);
        return 0;
    }
    rc = phase == RF_REWARD_PAY
             ? decide_pay(txn, st, tenant, id, r, answer, version, at_ms, out)
             : decide_clawback(txn, st, tenant, id, r, answer, version, at_ms,
                               out);
    if (rc == 0) {
        rc = rf_referral_put(txn, st, tenant, r);
    }
    out->changed = rc == 0;
    cJSON_Delete(r);
    return rc;
}

int rf_reward_fail(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                   uint64_t id, enum rf_reward_phase phase, const char *error,
                   const char *version, int64_t at_ms)
{
    enum rf_reward_phase due_phase;
    cJSON *r = NULL, *a;
    char text[2048];
    int claw = phase == RF_REWARD_CLAWBACK;
    int rc = rf_referral_get(txn, st, tenant, id, &r);

    if (rc != 0 || !rf_reward_due(r, "", &due_phase) || due_phase != phase) {
        cJSON_Delete(r);
        return rc == RF_ENOTFOUND ? 0 : rc;
    }
    snprintf(text, sizeof(text), "%s", error ? error : "failed");
    set(r, claw ? "clawback_error" : "reward_error", cJSON_CreateString(text));
    set(r, claw ? "clawback_version" : "reward_version",
        cJSON_CreateString(version));
    rc = rf_referral_put(txn, st, tenant, r);
    a = cJSON_CreateObject();
    if (a != NULL) {
        cJSON_AddStringToObject(a, "phase", phase_name(phase));
        cJSON_AddStringToObject(a, "error", text);
    }
    if (rc == 0) {
        rc =
            audit(txn, st, tenant, "reward_hook_failed", id, version, at_ms, a);
    } else {
        cJSON_Delete(a);
    }
    cJSON_Delete(r);
    return rc;
}

/* --- review ------------------------------------------------------------- */

static int held(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                uint64_t id, cJSON **r)
{
    int rc = rf_referral_get(txn, st, tenant, id, r);

    if (rc == 0 && !is(str(*r, "status"), "review")) {
        cJSON_Delete(*r);
        *r = NULL;
        rc = RF_EINVAL;
    }
    return rc;
}

int rf_reward_approve(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant, uint64_t id, int64_t at_ms, int *jobs)
{
    cJSON *r = NULL, *d;
    const cJSON *due;
    int64_t due_ms = at_ms;
    int n = 0, rc = held(txn, st, tenant, id, &r);

    if (rc == 0) {
        d = cJSON_GetObjectItemCaseSensitive(r, "reward");
        due = cJSON_GetObjectItemCaseSensitive(d, "due_ms");
        if (cJSON_IsNumber(due) && (int64_t)due->valuedouble > at_ms) {
            due_ms = (int64_t)due->valuedouble; /* the hold still runs */
        }
        rc = add_jobs(txn, st, tenant, id, RF_REWARD_PAY,
                      cJSON_GetObjectItemCaseSensitive(d, "actions"), due_ms,
                      &n);
    }
    if (rc == 0) {
        set(r, "status", cJSON_CreateString("rewarded"));
        set(r, "approved_at", cJSON_CreateNumber((double)(at_ms / 1000)));
        rc = rf_referral_put(txn, st, tenant, r);
    }
    if (rc == 0) {
        rc = audit(txn, st, tenant, "approved", id, NULL, at_ms,
                   cJSON_CreateObject());
    }
    if (rc == 0) {
        rc = audit(
            txn, st, tenant, "rewarded", id, NULL, at_ms,
            cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r, "reward"), 1));
    }
    if (jobs != NULL) {
        *jobs = rc == 0 ? n : 0;
    }
    cJSON_Delete(r);
    return rc;
}

const char *rf_review_reason_problem(const char *reason)
{
    size_t n = strlen(reason), chars = 0;
    int seen_text = 0;

    if (n == 0) {
        return "the reason is empty";
    }
    if (!rf_utf8_valid(reason, n)) {
        return "the reason is not UTF-8 text";
    }
    for (const unsigned char *p = (const unsigned char *)reason; *p; p++) {
        /* C0 and DEL, C1 (U+0080-U+009F, NEL among them), and the line
         * and paragraph separators U+2028/U+2029. */
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 &&
                                         p[1] <= 0x9f) ||
            (p[0] == 0xe2 && p[1] == 0x80 &&
             (p[2] == 0xa8 || p[2] == 0xa9))) {
            return "the reason has a control character (a line break?)";
        }
        chars += (*p & 0xc0) != 0x80;
        seen_text |= *p != ' ';
    }
    if (!seen_text) {
        return "the reason is only spaces";
    }
    if (chars > RF_REVIEW_REASON_MAX) {
        return "the reason is longer than 200 characters";
    }
    return NULL;
}

int rf_reward_reject(MDB_txn *txn, const struct rf_store *st,
                     const char *tenant, uint64_t id, const char *reason,
                     int64_t at_ms)
{
    cJSON *r = NULL, *a;
    char text[RF_REVIEW_REASON_BYTES];
    int rc;

    if (reason == NULL || rf_review_reason_problem(reason) != NULL) {
        return RF_ETOOBIG;
    }
    snprintf(text, sizeof(text), "%s", reason);
    rc = held(txn, st, tenant, id, &r);
    if (rc == 0) {
        set(r, "status", cJSON_CreateString("review_rejected"));
        set(r, "review_rejection", cJSON_CreateString(text));
        set(r, "rejected_at", cJSON_CreateNumber((double)(at_ms / 1000)));
        rc = rf_referral_put(txn, st, tenant, r);
    }
    if (rc == 0) {
        a = cJSON_CreateObject();
        if (a != NULL) {
            cJSON_AddStringToObject(a, "reason", text);
        }
        rc = audit(txn, st, tenant, "rejected_in_review", id, NULL, at_ms, a);
    }
    cJSON_Delete(r);
    return rc;
}

/* --- settled jobs ------------------------------------------------------- */

static int recorded(const cJSON *r, const char *key)
{
    static const char *const lists[] = {"rewards", "reward_failures"};

    for (size_t i = 0; i < 2; i++) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(r, lists[i]);

        for (const cJSON *e = cJSON_IsArray(l) ? l->child : NULL; e;
             e = e->next) {
            if (is(str(e, "key"), key)) {
                return 1;
            }
        }
    }
    return 0;
}

static cJSON *settled_entry(const struct rf_job *job, const cJSON *p,
                            int64_t at_ms)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(p, "action");
    cJSON *res = job->result ? cJSON_Parse(job->result) : NULL;
    cJSON *e = cJSON_CreateObject();
    const cJSON *v;

    if (e == NULL) {
        cJSON_Delete(res);
        return NULL;
    }
    cJSON_AddStringToObject(e, "rule", str(p, "rule") ? str(p, "rule") : "");
    cJSON_AddStringToObject(e, "key", job->key);
    cJSON_AddStringToObject(e, "phase",
                            str(p, "phase") ? str(p, "phase") : "reward");
    cJSON_AddStringToObject(e, "kind", str(a, "kind") ? str(a, "kind") : "");
    if (str(a, "to") != NULL) {
        cJSON_AddStringToObject(e, "to", str(a, "to"));
    }
    v = cJSON_GetObjectItemCaseSensitive(res, "amount");
    if (!cJSON_IsNumber(v)) {
        v = cJSON_GetObjectItemCaseSensitive(a, "amount");
    }
    if (cJSON_IsNumber(v)) {
        cJSON_AddNumberToObject(e, "amount", v->valuedouble);
    }
    if (str(a, "currency") != NULL) {
        cJSON_AddStringToObject(e, "currency", str(a, "currency"));
    }
    if (job->state == RF_JOB_DONE && str(res, "id") != NULL) {
        cJSON_AddStringToObject(e, "provider_id", str(res, "id"));
    }
    if (job->state != RF_JOB_DONE) {
        cJSON_AddStringToObject(e, "error",
                                job->last_error ? job->last_error : "dead");
    }
    cJSON_AddNumberToObject(e, "at", (double)(at_ms / 1000));
    cJSON_Delete(res);
    return e;
}

static int append(cJSON *r, const char *list, cJSON *e)
{
    cJSON *l = cJSON_GetObjectItemCaseSensitive(r, list);

    if (l == NULL) {
        l = cJSON_AddArrayToObject(r, list);
    }
    if (!cJSON_IsArray(l)) {
        cJSON_Delete(e);
        return RF_EINVAL;
    }
    cJSON_AddItemToArray(l, e);
    return 0;
}

int rf_reward_settle(MDB_txn *txn, const struct rf_store *st,
                     const struct rf_job *job, int64_t at_ms)
{
    cJSON *p = cJSON_Parse(job->payload), *r = NULL, *e;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(p, "referral");
    int done = job->state == RF_JOB_DONE;
    int rc = cJSON_IsNumber(id) ? 0 : RF_EPARSE;

    if (rc == 0) {
        rc = rf_referral_get(txn, st, job->tenant, (uint64_t)id->valuedouble,
                             &r);
    }
    if (rc == 0 && !recorded(r, job->key)) {
        e = settled_entry(job, p, at_ms);
        rc = e ? append(r, done ? "rewards" : "reward_failures", e) : RF_ENOMEM;
        if (rc == 0) {
            rc = rf_referral_put(txn, st, job->tenant, r);
        }
        if (rc == 0) {
            rc = audit(txn, st, job->tenant, done ? "paid" : "reward_failed",
                       (uint64_t)id->valuedouble, NULL, at_ms,
                       settled_entry(job, p, at_ms));
        }
    }
    cJSON_Delete(r);
    cJSON_Delete(p);
    return rc == RF_ENOTFOUND ? 0 : rc;
}

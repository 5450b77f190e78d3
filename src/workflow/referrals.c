/* Referrals: the capture rules, the record, the people it claims and the
 * CRM records linked to it. */
#include "referee/referrals.h"
#include "referee/audit.h"
#include "referee/error.h"
#include "referee/referrers.h"
#include "referee/tenant.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 511

int rf_email_fold(const char *email, char out[RF_EMAIL_MAX + 1])
{
    size_t len = email ? strlen(email) : 0, o = 0;
    const char *at = email ? strchr(email, '@') : NULL;
    const char *dot;
    int in_tag = 0;

    if (len == 0 || len > RF_EMAIL_MAX || at == NULL || at == email ||
        strchr(at + 1, '@') != NULL || at - email > 64) {
        return RF_EINVAL;
    }
    dot = strrchr(at + 1, '.');
    if (dot == NULL || dot == at + 1 || dot[1] == '\0' ||
        strstr(at + 1, "..") != NULL || at[1] == '.') {
        return RF_EINVAL;
    }
    for (const char *p = email; *p; p++) {
        unsigned char c = (unsigned char)*p;

        /* ASCII only: look-alike and invisible characters would let one
         * person pass for another (an international domain is written in
         * its xn-- form). */
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '(' || c == ')' ||
            c == ',' || c == ':' || c == ';' || c == '<' || c == '>' ||
            c == '[' || c == '\\' || c == ']') {
            return RF_EINVAL;
        }
        if (p == at) {
            in_tag = 0;
        } else if (p < at && c == '+' && p > email) {
            in_tag = 1;
        }
        if (!in_tag) {
            out[o++] = (char)tolower(c);
        }
    }
    out[o] = '\0';
    return out[0] == '@' ? RF_EINVAL : 0;
}

static size_t id_key(unsigned char *k, const char *tenant, uint64_t id)
{
    size_t tlen = strlen(tenant);

    memcpy(k, tenant, tlen);
    k[tlen] = 0;
    rf_store_put_be64(k + tlen + 1, id);
    return tlen + 9;
}

/* tenant \0 a [\0 b] */
static size_t name_key(unsigned char *k, const char *tenant, const char *a,
                       const char *b)
{
    int n = b ? snprintf((char *)k, KEY_MAX, "%s%c%s%c%s", tenant, 0, a, 0,
                         b)
              : snprintf((char *)k, KEY_MAX, "%s%c%s", tenant, 0, a);

    return n > 0 && n < KEY_MAX ? (size_t)n : 0;
}

int rf_referral_get(MDB_txn *txn, const struct rf_store *st,
                    const char *tenant, uint64_t id, cJSON **out)
{
    unsigned char key[RF_TENANT_ID_MAX + 9];
    MDB_val k = {id_key(key, tenant, id), key}, v;
    int mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_REFERRALS), &k, &v);

    if (mrc != 0) {
        return mrc == MDB_NOTFOUND ? RF_ENOTFOUND : rf_store_rc(mrc);
    }
    *out = cJSON_ParseWithLength(v.mv_data, v.mv_size);
    return *out ? 0 : RF_ESTORE;
}

int rf_referral_with_referrer(struct rf_store *st, const char *tenant,
                              uint64_t id, cJSON **referral, cJSON **referrer)
{
    MDB_txn *txn;
    const cJSON *who;
    int rc = rf_store_read_begin(st, &txn);

    *referral = *referrer = NULL;
    if (rc != 0) {
        return rc;
    }
    rc = rf_referral_get(txn, st, tenant, id, referral);
    who = cJSON_GetObjectItemCaseSensitive(*referral, "referrer");
    if (rc == 0 && cJSON_IsString(who) &&
        rf_referrer_get(txn, st, tenant, who->valuestring, referrer) != 0) {
        *referrer = NULL;
    }
    rf_store_read_end(st, txn);
    return rc;
}

cJSON *rf_referral_hook_args(cJSON *referral, cJSON *referrer)
{
    cJSON *args = cJSON_CreateArray();
    cJSON *second = referrer ? referrer : cJSON_CreateNull();

    if (args == NULL || referral == NULL || second == NULL ||
        !cJSON_AddItemToArray(args, referral)) {
        cJSON_Delete(args);
        cJSON_Delete(referral);
        cJSON_Delete(second);
        return NULL;
    }
    if (!cJSON_AddItemToArray(args, second)) {
        cJSON_Delete(args); /* frees the referral with it */
        cJSON_Delete(second);
        return NULL;
    }
    return args;
}

int rf_referral_put(MDB_txn *txn, const struct rf_store *st,
                    const char *tenant, const cJSON *referral)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(referral, "id");
    unsigned char key[RF_TENANT_ID_MAX + 9];

    if (!cJSON_IsNumber(id) || id->valuedouble < 1) {
        return RF_EINVAL;
    }
    return rf_store_put_json(txn, rf_store_dbi(st, RF_DB_REFERRALS), key,
                             id_key(key, tenant, (uint64_t)id->valuedouble),
                             referral, 0);
}

static int put_be64(MDB_txn *txn, MDB_dbi dbi, const unsigned char *key,
                    size_t klen, uint64_t id, unsigned flags)
{
    unsigned char buf[8];
    MDB_val k = {klen, (void *)key}, v = {8, buf};

    rf_store_put_be64(buf, id);
    return rf_store_rc(mdb_put(txn, dbi, &k, &v, flags));
}

static int get_be64(MDB_txn *txn, MDB_dbi dbi, const unsigned char *key,
                    size_t klen, uint64_t *id)
{
    MDB_val k = {klen, (void *)key}, v;
    int mrc = mdb_get(txn, dbi, &k, &v);

    if (mrc != 0) {
        return mrc == MDB_NOTFOUND ? RF_ENOTFOUND : rf_store_rc(mrc);
    }
    if (v.mv_size != 8) {
        return RF_ESTORE;
    }
    *id = rf_store_get_be64(v.mv_data);
    return 0;
}

int rf_referral_link(MDB_txn *txn, const struct rf_store *st,
                     const char *tenant, const char *module,
                     const char *crm_id, uint64_t id)
{
    unsigned char key[KEY_MAX];
    size_t klen = name_key(key, tenant, module, crm_id);

    return klen ? put_be64(txn, rf_store_dbi(st, RF_DB_LINKS), key, klen, id,
                           0)
                : RF_ETOOBIG;
}

int rf_referral_by_link(MDB_txn *txn, const struct rf_store *st,
                        const char *tenant, const char *module,
                        const char *crm_id, uint64_t *id)
{
    unsigned char key[KEY_MAX];
    size_t klen = name_key(key, tenant, module, crm_id);

    return klen ? get_be64(txn, rf_store_dbi(st, RF_DB_LINKS), key, klen, id)
                : RF_ENOTFOUND;
}

/* --- capture ------------------------------------------------------------ */

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Applies the rules; fills out->reason when refused. */
static int decide(MDB_txn *txn, const struct rf_store *st,
                  const struct rf_capture_in *in, const char *email_key,
                  int email_ok, struct rf_capture_out *out)
{
    char code[RF_CODE_LEN + 1], owner[RF_TENANT_ID_MAX + 1];
    unsigned char key[KEY_MAX];
    cJSON *referrer = NULL;
    int rc;

    if (cJSON_GetObjectItemCaseSensitive(in->person, "email") == NULL) {
        snprintf(out->reason, sizeof(out->reason), RF_REFUSE_MISSING_EMAIL);
        return 0;
    }
    if (!email_ok) {
        snprintf(out->reason, sizeof(out->reason), RF_REFUSE_INVALID_EMAIL);
        return 0;
    }
    if (in->code == NULL ||
        !rf_code_normalize(in->code, strlen(in->code), code)) {
        snprintf(out->reason, sizeof(out->reason), RF_REFUSE_INVALID_CODE);
        return 0;
    }
    memcpy(out->code, code, sizeof(out->code));
    rc = rf_referrer_by_code(txn, st, code, owner, out->referrer,
                             sizeof(out->referrer));
    if (rc == RF_ENOTFOUND || (rc == 0 && strcmp(owner, in->tenant) != 0)) {
        out->referrer[0] = '\0';
        snprintf(out->reason, sizeof(out->reason), RF_REFUSE_UNKNOWN_CODE);
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    rc = rf_referrer_get(txn, st, in->tenant, out->referrer, &referrer);
    if (rc == 0) {
        char mine[RF_EMAIL_MAX + 1];
        const char *email = str(referrer, "email");
        int self = email && rf_email_fold(email, mine) == 0 &&
                   strcmp(mine, email_key) == 0;

        cJSON_Delete(referrer);
        if (self) {
            snprintf(out->reason, sizeof(out->reason), RF_REFUSE_SELF);
            return 0;
        }
    } else if (rc != RF_ENOTFOUND) {
        return rc;
    }
    rc = get_be64(txn, rf_store_dbi(st, RF_DB_PEOPLE), key,
                  name_key(key, in->tenant, email_key, NULL), &out->first);
    if (rc == 0) {
        snprintf(out->reason, sizeof(out->reason), RF_REFUSE_DUPLICATE);
        return 0;
    }
    if (rc != RF_ENOTFOUND) {
        return rc;
    }
    out->first = 0;
    out->accepted = 1;
    return 0;
}

/* Where a signed post's delivery id is kept: beside the webhook sources'
 * ids, under a name no source can have (source names have no ':'). */
#define POSTS_SOURCE "capture:referrals"

/* A signed post seen before: fills out from the referral it made. Returns
 * 0 (out->repeat set), RF_ENOTFOUND or an RF_E* code. */
static int repeated(MDB_txn *txn, const struct rf_store *st,
                    const struct rf_capture_in *in, unsigned char *key,
                    size_t klen, struct rf_capture_out *out)
{
    cJSON *r = NULL;
    const char *s;
    int rc = get_be64(txn, rf_store_dbi(st, RF_DB_DEDUP), key, klen,
                      &out->id);

    if (rc == 0) {
        rc = rf_referral_get(txn, st, in->tenant, out->id, &r);
    }
    if (rc != 0) {
        return rc;
    }
    s = str(r, "status");
    out->accepted = s != NULL && strcmp(s, "refused") != 0;
    snprintf(out->reason, sizeof(out->reason), "%s",
             out->accepted ? "" : (str(r, "reason") ? str(r, "reason") : ""));
    snprintf(out->referrer, sizeof(out->referrer), "%s",
             str(r, "referrer") ? str(r, "referrer") : "");
    out->repeat = 1;
    cJSON_Delete(r);
    return 0;
}

int rf_referral_capture(MDB_txn *txn, const struct rf_store *st,
                        const struct rf_capture_in *in,
                        struct rf_capture_out *out)
{
    char email_key[RF_EMAIL_MAX + 1] = "";
    unsigned char key[KEY_MAX], dkey[KEY_MAX];
    size_t dklen = 0;
    const char *email = str(in->person, "email");
    int email_ok = email && rf_email_fold(email, email_key) == 0;
    cJSON *r = NULL, *audit;
    int rc;

    memset(out, 0, sizeof(*out));
    if (in->delivery_id != NULL) {
        dklen = name_key(dkey, in->tenant, POSTS_SOURCE, in->delivery_id);
        if (dklen == 0) {
            return RF_ETOOBIG;
        }
        rc = repeated(txn, st, in, dkey, dklen, out);
        if (rc != RF_ENOTFOUND) {
            return rc;
        }
    }
    rc = decide(txn, st, in, email_key, email_ok, out);
    if (rc == 0) {
        rc = rf_store_next_seq(txn, st, "referral_seq", &out->id);
    }
    if (rc != 0) {
        return rc;
    }
    r = cJSON_CreateObject();
    if (r == NULL || !cJSON_AddNumberToObject(r, "id", (double)out->id) ||
        !cJSON_AddNumberToObject(r, "at", (double)(in->at_ms / 1000)) ||
        !cJSON_AddStringToObject(r, "channel", in->channel) ||
        !(out->code[0] ? cJSON_AddStringToObject(r, "code", out->code)
          : in->code   ? cJSON_AddStringToObject(r, "code", in->code)
                       : cJSON_AddNullToObject(r, "code")) ||
        !(out->referrer[0]
              ? cJSON_AddStringToObject(r, "referrer", out->referrer)
              : cJSON_AddNullToObject(r, "referrer")) ||
        !cJSON_AddItemToObject(r, "person",
                               cJSON_Duplicate(in->person, 1)) ||
        !cJSON_AddStringToObject(r, "status",
                                 out->accepted ? "accepted" : "refused") ||
        (!out->accepted &&
         !cJSON_AddStringToObject(r, "reason", out->reason)) ||
        (out->first && !cJSON_AddNumberToObject(r, "first",
                                                (double)out->first))) {
        cJSON_Delete(r);
        return RF_ENOMEM;
    }
    rc = rf_referral_put(txn, st, in->tenant, r);
    if (rc == 0 && dklen > 0) {
        rc = put_be64(txn, rf_store_dbi(st, RF_DB_DEDUP), dkey, dklen,
                      out->id, MDB_NOOVERWRITE);
    }
    if (rc == 0 && out->accepted) {
        rc = put_be64(txn, rf_store_dbi(st, RF_DB_PEOPLE), key,
                      name_key(key, in->tenant, email_key, NULL), out->id,
                      MDB_NOOVERWRITE);
    }
    if (rc == 0) {
        audit = cJSON_CreateObject();
        if (audit == NULL ||
            !cJSON_AddNumberToObject(audit, "referral", (double)out->id) ||
            !cJSON_AddItemReferenceToObject(audit, "evidence", r)) {
            rc = RF_ENOMEM;
        } else {
            rc = rf_audit_put(txn, st, in->tenant,
                              out->accepted ? "captured" : "refused",
                              in->at_ms, audit);
        }
        cJSON_Delete(audit);
    }
    cJSON_Delete(r);
    return rc;
}

int rf_referrals_each(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant,
                      int (*fn)(const cJSON *referral, void *arg), void *arg)
{
    unsigned char key[RF_TENANT_ID_MAX + 9];
    size_t tlen = strlen(tenant);
    MDB_val k = {id_key(key, tenant, 0), key}, v;
    MDB_cursor *cur;
    int rc = 0, mrc;

    mrc = mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_REFERRALS), &cur);
    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         mrc == 0 && rc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cJSON *r;

        if (k.mv_size != tlen + 9 || memcmp(k.mv_data, tenant, tlen) != 0 ||
            ((unsigned char *)k.mv_data)[tlen] != 0) {
            break;
        }
        r = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (r != NULL) {
            rc = fn(r, arg);
            cJSON_Delete(r);
        }
    }
    if (rc == 0) {
        rc = rf_store_scan_rc(mrc);
    }
    mdb_cursor_close(cur);
    return rc;
}

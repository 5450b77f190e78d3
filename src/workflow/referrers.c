/* Referrers and their referral codes. */
#include "referee/referrers.h"
#include "referee/audit.h"
#include "referee/error.h"
#include "referee/referrals.h"
#include "referee/tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define ALPHABET_LEN (sizeof(RF_CODE_ALPHABET) - 1)
#define CODE_TRIES 8
#define KEY_MAX (RF_TENANT_ID_MAX + 1 + 64)

/* Random bytes are drawn from OpenSSL in blocks: one RAND_bytes call per
 * some twenty codes rather than one per code. */
static _Thread_local struct {
    unsigned char buf[256];
    size_t used;
} pool = {.used = sizeof(pool.buf)};

static int random_byte(unsigned char *out)
{
    if (pool.used == sizeof(pool.buf)) {
        if (RAND_bytes(pool.buf, sizeof(pool.buf)) != 1) {
            return RF_EIO;
        }
        pool.used = 0;
    }
    *out = pool.buf[pool.used];
    pool.buf[pool.used++] = 0; /* not left behind in memory */
    return 0;
}

int rf_code_new(char out[RF_CODE_LEN + 1])
{
    /* Bytes of 240 and above are dropped so that every character is
     * equally likely (240 = 8 x 30). */
    size_t n = 0;

    while (n < RF_CODE_LEN) {
        unsigned char b;

        if (random_byte(&b) != 0) {
            return RF_EIO;
        }
        if (b < 240) {
            out[n++] = RF_CODE_ALPHABET[b % ALPHABET_LEN];
        }
    }
    out[RF_CODE_LEN] = '\0';
    return 0;
}

int rf_code_normalize(const char *s, size_t len, char out[RF_CODE_LEN + 1])
{
    /* People copy codes with the spaces around them. */
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
        len--;
    }
    if (len != RF_CODE_LEN) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];

        if (c == '\0' || strchr(RF_CODE_ALPHABET, c) == NULL) {
            return 0;
        }
        out[i] = c;
    }
    out[len] = '\0';
    return 1;
}

static size_t referrer_key(unsigned char *k, const char *tenant,
                           const char *id)
{
    size_t tlen = strlen(tenant), ilen = strlen(id);

    if (ilen > KEY_MAX - tlen - 1) {
        ilen = KEY_MAX - tlen - 1;
    }
    memcpy(k, tenant, tlen);
    k[tlen] = 0;
    memcpy(k + tlen + 1, id, ilen);
    return tlen + 1 + ilen;
}

int rf_referrer_get(MDB_txn *txn, const struct rf_store *st,
                    const char *tenant, const char *contact_id, cJSON **out)
{
    unsigned char key[KEY_MAX];
    MDB_val k = {referrer_key(key, tenant, contact_id), key}, v;
    int mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_REFERRERS), &k, &v);

    if (mrc != 0) {
        return mrc == MDB_NOTFOUND ? RF_ENOTFOUND : rf_store_rc(mrc);
    }
    *out = cJSON_ParseWithLength(v.mv_data, v.mv_size);
    return *out ? 0 : RF_ESTORE;
}

int rf_referrer_by_code(MDB_txn *txn, const struct rf_store *st,
                        const char *code, char *tenant, char *contact_id,
                        size_t idlen)
{
    MDB_val k = {strlen(code), (void *)code}, v;
    int mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_CODES), &k, &v);
    const char *p, *nul;
    size_t tlen;

    if (mrc != 0) {
        return mrc == MDB_NOTFOUND ? RF_ENOTFOUND : rf_store_rc(mrc);
    }
    p = v.mv_data;
    nul = memchr(p, 0, v.mv_size);
    tlen = nul ? (size_t)(nul - p) : 0;
    if (nul == NULL || tlen > RF_TENANT_ID_MAX ||
        v.mv_size - tlen - 1 >= idlen) {
        return RF_ESTORE;
    }
    memcpy(tenant, p, tlen);
    tenant[tlen] = '\0';
    memcpy(contact_id, nul + 1, v.mv_size - tlen - 1);
    contact_id[v.mv_size - tlen - 1] = '\0';
    return 0;
}

/* Claims a new code for the referrer at `rkey` in the host-wide codes
 * database. */
static int claim_code(MDB_txn *txn, const struct rf_store *st,
                      const unsigned char *rkey, size_t rlen,
                      char code[RF_CODE_LEN + 1])
{
    for (int i = 0; i < CODE_TRIES; i++) {
        MDB_val k = {RF_CODE_LEN, code}, v = {rlen, (void *)rkey};
        int rc = rf_code_new(code), mrc;

        if (rc != 0) {
            return rc;
        }
        mrc = mdb_put(txn, rf_store_dbi(st, RF_DB_CODES), &k, &v,
                      MDB_NOOVERWRITE);
        if (mrc != MDB_KEYEXIST) {
            return rf_store_rc(mrc);
        }
    }
    return RF_EEXISTS; /* eight collisions in 2^63: the source is broken */
}

static int set_string(cJSON *o, const char *name, const char *value)
{
    cJSON *old = cJSON_GetObjectItemCaseSensitive(o, name);

    if (value == NULL) {
        return 0;
    }
    if (cJSON_IsString(old) && strcmp(old->valuestring, value) == 0) {
        return 0;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    return cJSON_AddStringToObject(o, name, value) ? 1 : -1;
}

#define EMAIL_KEY_MAX (RF_TENANT_ID_MAX + 1 + RF_EMAIL_MAX)

/* tenant \0 folded email, the email index's key; 0 when `email` is not
 * an address. */
static size_t email_key(unsigned char *k, const char *tenant,
                        const char *email)
{
    char folded[RF_EMAIL_MAX + 1];
    size_t tlen = strlen(tenant), flen;

    if (email == NULL || rf_email_fold(email, folded) != 0) {
        return 0;
    }
    flen = strlen(folded);
    if (tlen + 1 + flen > EMAIL_KEY_MAX) {
        return 0;
    }
    memcpy(k, tenant, tlen);
    k[tlen] = 0;
    memcpy(k + tlen + 1, folded, flen);
    return tlen + 1 + flen;
}

/* Indexes `email` to contact_id unless another referrer has it first. */
static int index_email(MDB_txn *txn, const struct rf_store *st,
                       const char *tenant, const char *email,
                       const char *contact_id)
{
    unsigned char k[EMAIL_KEY_MAX];
    MDB_val key = {email_key(k, tenant, email), k},
            val = {strlen(contact_id), (void *)contact_id};
    int mrc;

    if (key.mv_size == 0) {
        return 0;
    }
    mrc = mdb_put(txn, rf_store_dbi(st, RF_DB_REFERRER_EMAILS), &key, &val,
                  MDB_NOOVERWRITE);
    return mrc == MDB_KEYEXIST ? 0 : rf_store_rc(mrc);
}

/* Removes `email` from the index if it names contact_id. */
static int unindex_email(MDB_txn *txn, const struct rf_store *st,
                         const char *tenant, const char *email,
                         const char *contact_id)
{
    unsigned char k[EMAIL_KEY_MAX];
    MDB_val key = {email_key(k, tenant, email), k}, val;
    MDB_dbi dbi = rf_store_dbi(st, RF_DB_REFERRER_EMAILS);
    int mrc;

    if (key.mv_size == 0) {
        return 0;
    }
    mrc = mdb_get(txn, dbi, &key, &val);
    if (mrc == MDB_NOTFOUND || (mrc == 0 &&
                                (val.mv_size != strlen(contact_id) ||
                                 memcmp(val.mv_data, contact_id,
                                        val.mv_size) != 0))) {
        return 0;
    }
    if (mrc == 0) {
        mrc = mdb_del(txn, dbi, &key, NULL);
    }
    return rf_store_rc(mrc);
}

int rf_referrer_by_email(MDB_txn *txn, const struct rf_store *st,
                         const char *tenant, const char *folded,
                         char *contact_id, size_t idlen)
{
    unsigned char k[EMAIL_KEY_MAX];
    size_t tlen = strlen(tenant), flen = strlen(folded);
    MDB_val key = {tlen + 1 + flen, k}, val;
    int mrc;

    if (tlen + 1 + flen > EMAIL_KEY_MAX) {
        return RF_ENOTFOUND;
    }
    memcpy(k, tenant, tlen);
    k[tlen] = 0;
    memcpy(k + tlen + 1, folded, flen);
    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_REFERRER_EMAILS), &key, &val);
    if (mrc != 0) {
        return mrc == MDB_NOTFOUND ? RF_ENOTFOUND : rf_store_rc(mrc);
    }
    if (val.mv_size >= idlen) {
        return RF_ESTORE;
    }
    memcpy(contact_id, val.mv_data, val.mv_size);
    contact_id[val.mv_size] = '\0';
    return 0;
}

static int put_referrer(MDB_txn *txn, const struct rf_store *st,
                        const unsigned char *key, size_t klen, cJSON *r)
{
    return rf_store_put_json(txn, rf_store_dbi(st, RF_DB_REFERRERS), key,
                             klen, r, 0);
}

/* A known referrer: refresh email and name when they changed. */
static int refresh(MDB_txn *txn, const struct rf_store *st,
                   const struct rf_referrer_in *in, const unsigned char *key,
                   size_t klen, cJSON *r, char code[RF_CODE_LEN + 1])
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "code");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "email");
    char old[RF_EMAIL_MAX + 1] = "";
    int changed = 0, n, rc;

    if (!cJSON_IsString(c) || strlen(c->valuestring) != RF_CODE_LEN) {
        return RF_ESTORE;
    }
    memcpy(code, c->valuestring, RF_CODE_LEN + 1);
    if (cJSON_IsString(e)) {
        snprintf(old, sizeof(old), "%s", e->valuestring);
    }
    if (in->email != NULL && strcmp(old, in->email) != 0) {
        rc = unindex_email(txn, st, in->tenant, old, in->contact_id);
        if (rc == 0) {
            rc = index_email(txn, st, in->tenant, in->email,
                             in->contact_id);
        }
        if (rc != 0) {
            return rc;
        }
    }
    if ((n = set_string(r, "email", in->email)) < 0 ||
        (changed |= n, n = set_string(r, "name", in->name)) < 0) {
        return RF_ENOMEM;
    }
    changed |= n;
    if (!changed) {
        return 0;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(r, "updated_at");
    cJSON_AddNumberToObject(r, "updated_at", (double)(in->at_ms / 1000));
    return put_referrer(txn, st, key, klen, r);
}

/* Adds "link": the template with {code} replaced. */
static int add_link(cJSON *r, const char *tmpl, const char *code)
{
    const char *at = strstr(tmpl, "{code}");
    char buf[1024];

    if (at == NULL) {
        return 1;
    }
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - tmpl), tmpl, code,
             at + 6);
    return cJSON_AddStringToObject(r, "link", buf) != NULL;
}

int rf_referrer_enrol(MDB_txn *txn, const struct rf_store *st,
                      const struct rf_referrer_in *in,
                      char code[RF_CODE_LEN + 1], int *created)
{
    unsigned char key[KEY_MAX];
    size_t klen = referrer_key(key, in->tenant, in->contact_id);
    MDB_val k = {klen, key}, v;
    cJSON *r, *audit;
    int rc, mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_REFERRERS), &k, &v);

    *created = 0;
    if (mrc == 0) {
        r = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        rc = r ? refresh(txn, st, in, key, klen, r, code) : RF_ESTORE;
        cJSON_Delete(r);
        return rc;
    }
    if (mrc != MDB_NOTFOUND) {
        return rf_store_rc(mrc);
    }
    rc = claim_code(txn, st, key, klen, code);
    if (rc != 0) {
        return rc;
    }
    r = cJSON_CreateObject();
    if (r == NULL || !cJSON_AddStringToObject(r, "contact_id",
                                              in->contact_id) ||
        !cJSON_AddStringToObject(r, "code", code) ||
        (in->link && !add_link(r, in->link, code)) ||
        (in->email && !cJSON_AddStringToObject(r, "email", in->email)) ||
        (in->name && !cJSON_AddStringToObject(r, "name", in->name)) ||
        !cJSON_AddStringToObject(r, "source", in->source) ||
        !cJSON_AddNumberToObject(r, "enrolled_at",
                                 (double)(in->at_ms / 1000)) ||
        !cJSON_AddStringToObject(r, "version",
                                 in->version ? in->version : "")) {
        cJSON_Delete(r);
        return RF_ENOMEM;
    }
    rc = put_referrer(txn, st, key, klen, r);
    if (rc == 0) {
        rc = index_email(txn, st, in->tenant, in->email, in->contact_id);
    }
    if (rc != 0) {
        cJSON_Delete(r);
        return rc;
    }
    /* The audit entry is the referrer plus the evidence, referenced
     * rather than copied. */
    audit = r;
    if (in->evidence != NULL &&
        !cJSON_AddItemReferenceToObject(audit, "evidence",
                                        (cJSON *)in->evidence)) {
        cJSON_Delete(r);
        return RF_ENOMEM;
    }
    rc = rf_audit_put(txn, st, in->tenant, "enrolled", in->at_ms, audit);
    cJSON_Delete(audit);
    *created = rc == 0;
    return rc;
}

int rf_referrers_each(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant,
                      int (*fn)(const cJSON *referrer, void *arg), void *arg)
{
    size_t tlen = strlen(tenant);
    unsigned char key[KEY_MAX];
    MDB_val k = {referrer_key(key, tenant, ""), key}, v;
    MDB_cursor *cur;
    int rc = 0, mrc;

    mrc = mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_REFERRERS), &cur);
    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         mrc == 0 && rc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cJSON *r;

        if (k.mv_size <= tlen || memcmp(k.mv_data, tenant, tlen) != 0 ||
            ((unsigned char *)k.mv_data)[tlen] != 0) {
            break;
        }
        r = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (r != NULL) {
            rc = fn(r, arg);
            cJSON_Delete(r);
        }
    }
    mdb_cursor_close(cur);
    return rc;
}

#define EMAILS_INDEXED "referrer_emails_indexed"

int rf_referrers_index_emails(MDB_txn *txn, const struct rf_store *st)
{
    MDB_val done = {sizeof(EMAILS_INDEXED) - 1, (void *)EMAILS_INDEXED},
            one = {1, (void *)"1"}, k, v;
    MDB_cursor *cur = NULL;
    int rc = 0, mrc;

    mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_META), &done, &v);
    if (mrc != MDB_NOTFOUND) {
        return rf_store_rc(mrc); /* 0: built before */
    }
    mrc = mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_REFERRERS), &cur);
    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *key = k.mv_data, *nul = memchr(key, 0, k.mv_size);
        char tenant[RF_TENANT_ID_MAX + 1], contact[KEY_MAX + 1];
        cJSON *r;

        if (nul == NULL || (size_t)(nul - key) > RF_TENANT_ID_MAX) {
            continue;
        }
        snprintf(tenant, sizeof(tenant), "%.*s", (int)(nul - key), key);
        snprintf(contact, sizeof(contact), "%.*s",
                 (int)(k.mv_size - (size_t)(nul - key) - 1), nul + 1);
        r = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (r != NULL) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "email");

            if (cJSON_IsString(e)) {
                rc = index_email(txn, st, tenant, e->valuestring, contact);
            }
            cJSON_Delete(r);
        }
    }
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != MDB_NOTFOUND) {
        rc = rf_store_rc(mrc);
    }
    if (rc == 0) {
        rc = rf_store_rc(mdb_put(txn, rf_store_dbi(st, RF_DB_META), &done,
                                 &one, 0));
    }
    return rc;
}

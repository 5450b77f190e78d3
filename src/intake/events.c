/* Event records: encoding, the de-duplicating insert, and listing. */
#include "referee/events.h"
#include "referee/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_MAGIC 0x45 /* 'E' */
#define RECORD_VERSION 1
#define HEAD_LEN 22 /* magic, version, received_ms, 3 x u32 lengths */
#define KEY_MAX (64 + 1 + 8)

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

void rf_event_id(uint64_t seq, char *out)
{
    snprintf(out, RF_EVENT_ID_LEN + 1, "%016" PRIx64, seq);
}

int rf_event_id_parse(const char *s, uint64_t *seq)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; s[i]; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;

        if (d < 0 || i >= RF_EVENT_ID_LEN) {
            return RF_EINVAL;
        }
        v = v << 4 | (uint64_t)d;
    }
    if (i == 0) {
        return RF_EINVAL;
    }
    *seq = v;
    return 0;
}

static void encode(const struct rf_event *ev, unsigned char *p)
{
    p[0] = RECORD_MAGIC;
    p[1] = RECORD_VERSION;
    rf_store_put_be64(p + 2, (uint64_t)ev->received_ms);
    put_u32(p + 10, (uint32_t)ev->source_len);
    put_u32(p + 14, (uint32_t)ev->headers_len);
    put_u32(p + 18, (uint32_t)ev->body_len);
    p += HEAD_LEN;
    memcpy(p, ev->source, ev->source_len);
    p += ev->source_len;
    memcpy(p, ev->headers, ev->headers_len);
    p += ev->headers_len;
    memcpy(p, ev->body, ev->body_len);
}

int rf_event_decode(const void *data, size_t len, struct rf_event *ev)
{
    const unsigned char *p = data;
    size_t need;

    if (len < HEAD_LEN || p[0] != RECORD_MAGIC || p[1] != RECORD_VERSION) {
        return RF_EPARSE;
    }
    ev->received_ms = (int64_t)rf_store_get_be64(p + 2);
    ev->source_len = get_u32(p + 10);
    ev->headers_len = get_u32(p + 14);
    ev->body_len = get_u32(p + 18);
    need = HEAD_LEN + ev->source_len + ev->headers_len + ev->body_len;
    if (need != len) {
        return RF_EPARSE;
    }
    ev->source = (const char *)p + HEAD_LEN;
    ev->headers = ev->source + ev->source_len;
    ev->body = ev->headers + ev->headers_len;
    return 0;
}

/* tenant \0 be64(seq) */
static size_t event_key(unsigned char *k, const char *tenant, size_t tlen,
                        uint64_t seq)
{
    memcpy(k, tenant, tlen);
    k[tlen] = 0;
    rf_store_put_be64(k + tlen + 1, seq);
    return tlen + 9;
}

static int next_seq(MDB_txn *txn, const struct rf_store *st, uint64_t *seq)
{
    return rf_store_next_seq(txn, st, "event_seq", seq);
}

static int store_event(MDB_txn *txn, const struct rf_store *st,
                       const struct rf_event_put *p)
{
    unsigned char key[KEY_MAX];
    size_t len = HEAD_LEN + p->ev.source_len + p->ev.headers_len +
                 p->ev.body_len;
    MDB_val k = {event_key(key, p->tenant, p->tenant_len, p->ev.seq), key};
    MDB_val v = {len, NULL};
    int mrc;

    /* MDB_RESERVE lets us encode straight into the page. */
    mrc = mdb_put(txn, rf_store_dbi(st, RF_DB_EVENTS), &k, &v, MDB_RESERVE);
    if (mrc != 0) {
        return rf_store_rc(mrc);
    }
    encode(&p->ev, v.mv_data);
    return 0;
}

int rf_event_put(MDB_txn *txn, const struct rf_store *st,
                 struct rf_event_put *p)
{
    unsigned char dkey[64 + 1 + 64 + 1 + RF_DELIVERY_ID_MAX], seqbuf[8];
    MDB_val dk = {0, dkey}, dv;
    int mrc, rc;

    p->duplicate = 0;
    if (p->tenant_len > 64 || p->ev.source_len > 64 ||
        p->delivery_id_len > RF_DELIVERY_ID_MAX) {
        return RF_ETOOBIG;
    }
    if (p->delivery_id) {
        memcpy(dkey, p->tenant, p->tenant_len);
        dk.mv_size = p->tenant_len;
        dkey[dk.mv_size++] = 0;
        memcpy(dkey + dk.mv_size, p->ev.source, p->ev.source_len);
        dk.mv_size += p->ev.source_len;
        dkey[dk.mv_size++] = 0;
        memcpy(dkey + dk.mv_size, p->delivery_id, p->delivery_id_len);
        dk.mv_size += p->delivery_id_len;
        mrc = mdb_get(txn, rf_store_dbi(st, RF_DB_DEDUP), &dk, &dv);
        if (mrc == 0 && dv.mv_size == 8) {
            p->duplicate = 1;
            p->ev.seq = rf_store_get_be64(dv.mv_data);
            return 0;
        }
        if (mrc != 0 && mrc != MDB_NOTFOUND) {
            return rf_store_rc(mrc);
        }
    }
    rc = next_seq(txn, st, &p->ev.seq);
    if (rc == 0) {
        rc = store_event(txn, st, p);
    }
    /* Limitation: delivery ids are kept forever, so the dedup database
     * grows with traffic; operators see it only as disk use after many
     * millions of deliveries. Pruning needs the event retention policy the
     * workflow defines; the fix is a per-source retention window pruned by
     * a periodic job (docs/limitations.md). */
    if (rc == 0 && p->delivery_id) {
        rf_store_put_be64(seqbuf, p->ev.seq);
        dv.mv_size = 8;
        dv.mv_data = seqbuf;
        rc = rf_store_rc(
            mdb_put(txn, rf_store_dbi(st, RF_DB_DEDUP), &dk, &dv, 0));
    }
    return rc;
}

int rf_events_each(struct rf_store *st, const char *tenant, uint64_t since,
                   int (*fn)(const struct rf_event *ev, MDB_txn *txn,
                             void *arg),
                   void *arg)
{
    size_t tlen = strlen(tenant);
    unsigned char key[KEY_MAX];
    MDB_val k, v;
    MDB_cursor *cur = NULL;
    MDB_txn *txn = NULL;
    int rc, mrc;

    if (tlen > 64) {
        return RF_EINVAL;
    }
    if (since == UINT64_MAX) {
        return 0; /* nothing comes after the largest id */
    }
    rc = rf_store_read_begin(st, &txn);
    if (rc != 0) {
        return rc;
    }
    if (mdb_cursor_open(txn, rf_store_dbi(st, RF_DB_EVENTS), &cur) != 0) {
        rc = RF_ESTORE;
        goto out;
    }
    k.mv_size = event_key(key, tenant, tlen, since + 1);
    k.mv_data = key;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct rf_event ev;

        if (k.mv_size != tlen + 9 || memcmp(k.mv_data, key, tlen + 1)) {
            break; /* past this tenant's events */
        }
        if (rf_event_decode(v.mv_data, v.mv_size, &ev) != 0) {
            rc = RF_EPARSE;
            break;
        }
        ev.seq = rf_store_get_be64((unsigned char *)k.mv_data + tlen + 1);
        rc = fn(&ev, txn, arg);
        if (rc != 0) {
            break;
        }
    }
    if (rc == 0) {
        rc = rf_store_scan_rc(mrc);
    }
out:
    if (cur) {
        mdb_cursor_close(cur);
    }
    rf_store_read_end(st, txn);
    return rc;
}

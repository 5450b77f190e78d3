/* The LMDB environment in the data directory: named databases, a schema
 * version, map growth, and read and write transactions.
 *
 * All writes go through rf_store_write(), which retries the caller's
 * function after growing the map when LMDB reports MDB_MAP_FULL, so nothing
 * is acknowledged before the retry commits.
 *
 * Caveats: one process may open the store for writing at a time (the daemon);
 * any number may open it read-only, also while the daemon runs. The map
 * grows by doubling up to RF_STORE_MAP_MAX.
 */
#ifndef REFEREE_STORE_H
#define REFEREE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#define RF_STORE_SCHEMA_VERSION 1
#define RF_STORE_MAP_MAX ((size_t)1 << 40)

/* The named databases. Keys and values are described where each is used. */
enum rf_db {
    RF_DB_META = 0, /* "schema_version", and counters ("event_seq") */
    RF_DB_EVENTS,   /* tenant \0 be64(seq) -> event record */
    RF_DB_DEDUP,    /* tenant \0 source \0 delivery id -> be64(seq) */
    RF_DB_KV,       /* tenant \0 key -> JSON text (script store API) */
    RF_DB_OUTCOMES, /* tenant \0 be64(seq) -> JSON outcome of its hook */
    RF_DB_ZOHO,     /* tenant \0 kind \0 name -> connector state (tokens,
                       cursors, channels, credits); see src/zoho/ */
    RF_DB_OUTBOX,   /* be64(job id) -> job record; see outbox.h */
    RF_DB_OUTBOX_DUE, /* be64(due ms) be64(job id) -> "" (pending jobs) */
    RF_DB_OUTBOX_KEYS, /* tenant \0 idempotency key -> be64(job id) */
    RF_DB_REFERRERS,   /* tenant \0 contact id -> referrer (referrers.h) */
    RF_DB_CODES,       /* referral code -> tenant \0 contact id */
    RF_DB_AUDIT,       /* tenant \0 be64(seq) -> JSON audit entry */
    RF_DB_REFERRALS,   /* tenant \0 be64(id) -> referral (referrals.h) */
    RF_DB_PEOPLE,      /* tenant \0 folded email -> be64(first referral) */
    RF_DB_LINKS,       /* tenant \0 module \0 CRM id -> be64(referral) */
    RF_DB_COUNTERS,    /* tenant \0 YYYY-MM-DD \0 name -> be64 (counters.h) */
    RF_DB_REFERRER_EMAILS, /* tenant \0 folded email -> contact id of the
                              first referrer with it (referrers.h); added
                              after schema 1 was released, so a read-only
                              open of an older store finds none */
    RF_DB_COUNT
};

enum rf_store_flags {
    RF_STORE_RDONLY = 1 << 0, /* open read-only; no schema record written */
    RF_STORE_NOSYNC = 1 << 1, /* skip fsync on commit (MDB_NOSYNC) */
    RF_STORE_EXISTING = 1 << 2 /* writable, but never create a store: the
                                  command line must not make one in a
                                  mistyped --data directory */
};

struct rf_store;

/* Opens (and creates, unless read-only) the store in directory `dir`.
 * `map_size` is the initial map size in bytes (0: 64 MiB). Clears stale
 * reader slots. On failure writes a sentence into `err` and returns
 * RF_ESCHEMA (written by an incompatible version), RF_ENOTFOUND (read-only
 * or RF_STORE_EXISTING, and no store there), RF_ESTORE or -errno. On
 * success *out is the caller's; free with rf_store_close(). Call from one
 * thread. */
int rf_store_open(const char *dir, unsigned flags, size_t map_size,
                  struct rf_store **out, char *err, size_t errlen);

/* Closes the store. No transaction may be open. Accepts NULL. */
void rf_store_close(struct rf_store *st);

/* Increments the counter `name` in RF_DB_META inside `txn` and sets *seq
 * to its new value (the first is 1). Returns 0 or an RF_E* code. */
int rf_store_next_seq(MDB_txn *txn, const struct rf_store *st,
                      const char *name, uint64_t *seq);

/* Puts `v` printed as JSON text under `key` in `dbi` (mdb_put flags).
 * Returns 0 or an RF_E* code. Any thread; the text is built in a buffer
 * of the calling thread. */
int rf_store_put_json(MDB_txn *txn, MDB_dbi dbi, const void *key,
                      size_t klen, const cJSON *v, unsigned flags);

/* The handle of a named database. */
MDB_dbi rf_store_dbi(const struct rf_store *st, enum rf_db db);

/* The function run inside a write transaction. Returns 0 to commit, or a
 * negative code to abort. It may be run more than once (after the map
 * grows), so it must derive everything from `txn` and `ctx` and reset any
 * output it writes to `ctx`. MDB_MAP_FULL from an LMDB call must be returned
 * as RF_EMAPFULL. */
typedef int (*rf_store_write_cb)(MDB_txn *txn, void *ctx);

/* Runs `fn` in a write transaction and commits it, growing the map and
 * running `fn` again on RF_EMAPFULL. Returns 0, fn's own error, RF_ESTORE or
 * RF_EMAPFULL (the map cannot grow further). Any one thread at a time. */
int rf_store_write(struct rf_store *st, rf_store_write_cb fn, void *ctx);

/* Begins a read-only transaction. Returns 0 or RF_ESTORE. The transaction
 * must end with rf_store_read_end() on the same thread. */
int rf_store_read_begin(struct rf_store *st, MDB_txn **txn);

/* Ends a read-only transaction. Accepts NULL. */
void rf_store_read_end(struct rf_store *st, MDB_txn *txn);

/* Current map size in bytes (for metrics and tests). */
size_t rf_store_map_size(const struct rf_store *st);

/* Maps an LMDB return code to ours: MDB_NOTFOUND to RF_ENOTFOUND,
 * MDB_MAP_FULL to RF_EMAPFULL, anything else non-zero to RF_ESTORE. */
int rf_store_rc(int mrc);

/* What a cursor scan ended with: 0 when it ran out of records
 * (MDB_NOTFOUND) or stopped on purpose (0), the error otherwise. Every
 * scan checks it, so that a failed read is not taken for the end. */
int rf_store_scan_rc(int mrc);

/* Tenants the daemon has loaded, remembered so that the command line can
 * tell a mistyped --tenant from a tenant with no data yet. */

/* Records that tenant `id` was loaded (the first time is kept). */
int rf_store_note_tenant(MDB_txn *txn, const struct rf_store *st,
                         const char *id, int64_t now_ms);

/* Whether tenant `id` was ever loaded with this store: 1, 0, or an RF_E*
 * code. */
int rf_store_tenant_known(struct rf_store *st, const char *id);

/* Calls fn with each tenant id ever loaded, in order, until it returns
 * non-zero. Returns 0, fn's value or an RF_E* code. */
int rf_store_each_tenant(struct rf_store *st,
                         int (*fn)(const char *id, void *arg), void *arg);

/* Big-endian helpers for keys that sort numerically. */
void rf_store_put_be64(unsigned char *p, uint64_t v);
uint64_t rf_store_get_be64(const unsigned char *p);

#endif

/* LMDB environment: open with a schema check, grow on MDB_MAP_FULL, and keep
 * map growth from racing live transactions in this process. */
#include "referee/store.h"
#include "referee/error.h"
#include "referee/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_MAP_SIZE ((size_t)64 << 20)

static const char *const db_names[RF_DB_COUNT] = {
    "meta", "events", "dedup", "kv", "outcomes", "zoho", "outbox",
    "outbox_due", "outbox_keys", "referrers", "codes", "audit",
    "referrals", "people", "links", "counters", "referrer_emails"};

/* Databases added to schema 1 later: created by the daemon's next start; a
 * read-only open of a store it has not opened yet goes on without them. */
static int added_later(int db)
{
    return db == RF_DB_REFERRER_EMAILS;
}

struct rf_store {
    MDB_env *env;
    MDB_dbi dbi[RF_DB_COUNT];
    unsigned flags;
    size_t map_size;
    unsigned psize; /* LMDB's page size, for map_too_small() */
    /* Readers and the writer hold it shared; growing the map holds it
     * exclusively, because mdb_env_set_mapsize() needs no live txn. */
    pthread_rwlock_t grow_lock;
};

int rf_store_rc(int mrc)
{
    switch (mrc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return RF_ENOTFOUND;
    case MDB_MAP_FULL:
        return RF_EMAPFULL;
    default:
        return RF_ESTORE;
    }
}

int rf_store_scan_rc(int mrc)
{
    return mrc == MDB_NOTFOUND ? 0 : rf_store_rc(mrc);
}

void rf_store_put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

uint64_t rf_store_get_be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

MDB_dbi rf_store_dbi(const struct rf_store *st, enum rf_db db)
{
    return st->dbi[db];
}

size_t rf_store_map_size(const struct rf_store *st)
{
    return st->map_size;
}

/* Checks or writes the schema version record. */
static int check_schema(struct rf_store *st, MDB_txn *txn, int writable,
                        char *err, size_t errlen)
{
    MDB_val k = {sizeof("schema_version") - 1, "schema_version"}, v;
    char want[16];
    int mrc;

    snprintf(want, sizeof(want), "%d", RF_STORE_SCHEMA_VERSION);
    mrc = mdb_get(txn, st->dbi[RF_DB_META], &k, &v);
    if (mrc == MDB_NOTFOUND && writable) {
        v.mv_size = strlen(want);
        v.mv_data = want;
        mrc = mdb_put(txn, st->dbi[RF_DB_META], &k, &v, 0);
        if (mrc != 0) {
            snprintf(err, errlen, "cannot write schema record: %s",
                     mdb_strerror(mrc));
            return RF_ESTORE;
        }
        return 0;
    }
    if (mrc == MDB_NOTFOUND) {
        snprintf(err, errlen, "no referee store here (no schema record)");
        return RF_ENOTFOUND;
    }
    if (mrc != 0) {
        snprintf(err, errlen, "cannot read schema record: %s",
                 mdb_strerror(mrc));
        return RF_ESTORE;
    }
    if (v.mv_size != strlen(want) || memcmp(v.mv_data, want, v.mv_size)) {
        snprintf(err, errlen,
                 "data directory was written by schema version %.*s; this "
                 "referee reads version %s",
                 (int)(v.mv_size > 16 ? 16 : v.mv_size), (char *)v.mv_data,
                 want);
        return RF_ESCHEMA;
    }
    return 0;
}

/* The pages the newest snapshot uses end past this process's map: another
 * process (the daemon, beside a command) grew the store since it was
 * opened. LMDB 0.9.24 checks this when a write transaction begins
 * (MDB_MAP_RESIZED) but not for a read-only one, which then reads past
 * its mapping: SIGBUS, or pages of something else (a reviewer's
 * `events list` beside a growing store crashed or stopped early). */
static int map_too_small(const struct rf_store *st, size_t *need)
{
    MDB_envinfo info;

    if (mdb_env_info(st->env, &info) != 0) {
        return 0;
    }
    *need = ((size_t)info.me_last_pgno + 1) * st->psize;
    return *need > info.me_mapsize;
}

/* Transactions this thread holds (reads nest: a callback of a scan may
 * begin another). A thread holding one must not wait for the grow lock
 * exclusively: it would wait for itself. */
static _Thread_local int txns_held;

/* Maps at least `need` bytes (twice that, so that a store growing under a
 * long command is not remapped at every read). No transaction of this
 * process may be live: the grow lock is taken exclusively. */
static void map_at_least(struct rf_store *st, size_t need)
{
    size_t next = need * 2;

    pthread_rwlock_wrlock(&st->grow_lock);
    if (next > st->map_size && mdb_env_set_mapsize(st->env, next) == 0) {
        st->map_size = next;
    }
    pthread_rwlock_unlock(&st->grow_lock);
}

/* Another process grew the map past ours (MDB_MAP_RESIZED): adopt its
 * size, which remaps, so with no transaction of this process live. */
static void adopt_map_size(struct rf_store *st)
{
    MDB_envinfo info;

    pthread_rwlock_wrlock(&st->grow_lock);
    if (mdb_env_set_mapsize(st->env, 0) == 0 &&
        mdb_env_info(st->env, &info) == 0) {
        st->map_size = info.me_mapsize;
    }
    pthread_rwlock_unlock(&st->grow_lock);
}

/* Opens every named database in one transaction, then checks the schema. */
static int open_dbs(struct rf_store *st, char *err, size_t errlen)
{
    int writable = !(st->flags & RF_STORE_RDONLY);
    MDB_txn *txn = NULL;
    int mrc, rc;

    for (int attempt = 0;; attempt++) {
        size_t need;

        mrc = mdb_txn_begin(st->env, NULL, writable ? 0 : MDB_RDONLY, &txn);
        if (mrc == MDB_MAP_RESIZED) {
            (void)mdb_env_set_mapsize(st->env, 0);
            mrc = mdb_txn_begin(st->env, NULL, writable ? 0 : MDB_RDONLY,
                                &txn);
        }
        if (mrc != 0) {
            snprintf(err, errlen, "cannot begin transaction: %s",
                     mdb_strerror(mrc));
            return RF_ESTORE;
        }
        if (writable || !map_too_small(st, &need)) {
            break;
        }
        mdb_txn_abort(txn);
        if (attempt == 3) {
            snprintf(err, errlen, "cannot map the store as it grows "
                     "(%zu MiB)", need >> 20);
            return RF_ESTORE;
        }
        map_at_least(st, need);
    }
    for (int i = 0; i < RF_DB_COUNT; i++) {
        mrc = mdb_dbi_open(txn, db_names[i], writable ? MDB_CREATE : 0,
                           &st->dbi[i]);
        if (mrc == MDB_NOTFOUND && added_later(i)) {
            /* Aliased to meta, where no key of it (they hold a NUL)
             * exists: lookups find nothing. */
            st->dbi[i] = st->dbi[RF_DB_META];
            continue;
        }
        if (mrc == MDB_NOTFOUND) {
            snprintf(err, errlen, "no referee store here (no '%s' database)",
                     db_names[i]);
            rc = RF_ENOTFOUND;
            goto fail;
        }
        if (mrc != 0) {
            snprintf(err, errlen, "cannot open database '%s': %s",
                     db_names[i], mdb_strerror(mrc));
            rc = RF_ESTORE;
            goto fail;
        }
    }
    rc = check_schema(st, txn, writable, err, errlen);
    if (rc != 0) {
        goto fail;
    }
    mrc = mdb_txn_commit(txn);
    if (mrc != 0) {
        snprintf(err, errlen, "cannot commit: %s", mdb_strerror(mrc));
        return RF_ESTORE;
    }
    return 0;
fail:
    mdb_txn_abort(txn);
    return rc;
}

static int open_env(struct rf_store *st, const char *dir, char *err,
                    size_t errlen)
{
    unsigned eflags = MDB_NOTLS;
    int mrc, dead = 0;

    /* The messages leave out dir: every caller names it already. */
    if (st->flags & (RF_STORE_RDONLY | RF_STORE_EXISTING)) {
        char path[4096];
        struct stat sb;

        snprintf(path, sizeof(path), "%s/data.mdb", dir);
        if (stat(path, &sb) != 0) {
            snprintf(err, errlen, "%s", errno == ENOENT
                         ? "no store here (the daemon creates it at its "
                           "first start)"
                         : strerror(errno));
            return RF_ENOTFOUND;
        }
        if (st->flags & RF_STORE_RDONLY) {
            eflags |= MDB_RDONLY;
        }
    } else if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the directory: %s",
                 strerror(errno));
        return -errno;
    }
    if (st->flags & RF_STORE_NOSYNC) {
        eflags |= MDB_NOSYNC;
    }
    mrc = mdb_env_create(&st->env);
    if (mrc == 0) {
        mrc = mdb_env_set_maxdbs(st->env, 32);
    }
    if (mrc == 0) {
        mrc = mdb_env_set_mapsize(st->env, st->map_size);
    }
    if (mrc == 0) {
        mrc = mdb_env_open(st->env, dir, eflags, 0600);
    }
    if (mrc != 0) {
        snprintf(err, errlen, "cannot open the store: %s",
                 mdb_strerror(mrc));
        return mrc == ENOENT ? RF_ENOTFOUND : RF_ESTORE;
    }
    {
        MDB_stat stat;

        st->psize = mdb_env_stat(st->env, &stat) == 0 ? stat.ms_psize : 4096;
    }
    (void)mdb_reader_check(st->env, &dead);
    if (dead > 0 && !(st->flags & RF_STORE_RDONLY)) {
        /* not from read-only commands, whose stderr is for their errors */
        rf_log_info("store", RF_NOF, "cleared %d stale reader slots", dead);
    }
    return 0;
}

int rf_store_open(const char *dir, unsigned flags, size_t map_size,
                  struct rf_store **out, char *err, size_t errlen)
{
    struct rf_store *st = calloc(1, sizeof(*st));
    MDB_envinfo info;
    int rc;

    if (st == NULL) {
        snprintf(err, errlen, "out of memory");
        return RF_ENOMEM;
    }
    st->flags = flags;
    st->map_size = map_size ? map_size : DEFAULT_MAP_SIZE;
    pthread_rwlock_init(&st->grow_lock, NULL);
    rc = open_env(st, dir, err, errlen);
    if (rc != 0) {
        goto fail;
    }
    rc = open_dbs(st, err, errlen);
    if (rc != 0) {
        goto fail;
    }
    if (mdb_env_info(st->env, &info) == 0) {
        st->map_size = info.me_mapsize; /* an existing file may be larger */
    }
    *out = st;
    return 0;
fail:
    rf_store_close(st);
    return rc;
}

void rf_store_close(struct rf_store *st)
{
    if (st == NULL) {
        return;
    }
    if (st->env != NULL) {
        mdb_env_close(st->env);
    }
    pthread_rwlock_destroy(&st->grow_lock);
    free(st);
}

/* Doubles the map. Takes the grow lock exclusively. */
static int grow(struct rf_store *st)
{
    size_t next = st->map_size * 2;
    int mrc;

    if (next > RF_STORE_MAP_MAX) {
        return RF_EMAPFULL;
    }
    pthread_rwlock_wrlock(&st->grow_lock);
    mrc = mdb_env_set_mapsize(st->env, next);
    if (mrc == 0) {
        st->map_size = next;
    }
    pthread_rwlock_unlock(&st->grow_lock);
    if (mrc != 0) {
        rf_log_error("store", RF_NOF, "cannot grow map: %s",
                     mdb_strerror(mrc));
        return RF_ESTORE;
    }
    rf_log_info("store", RF_NOF, "map grown to %zu MiB", next >> 20);
    return 0;
}

#define MAP_RESIZED 1 /* write_once: adopt the map's new size and retry */

/* One attempt: begin, run fn, commit. */
static int write_once(struct rf_store *st, rf_store_write_cb fn, void *ctx)
{
    MDB_txn *txn = NULL;
    int mrc, rc;

    pthread_rwlock_rdlock(&st->grow_lock);
    txns_held++;
    mrc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (mrc != 0) {
        rc = mrc == MDB_MAP_RESIZED ? MAP_RESIZED : rf_store_rc(mrc);
        goto out;
    }
    rc = fn(txn, ctx);
    if (rc != 0) {
        mdb_txn_abort(txn);
        goto out;
    }
    mrc = mdb_txn_commit(txn);
    rc = rf_store_rc(mrc);
    if (mrc != 0 && mrc != MDB_MAP_FULL) {
        rf_log_error("store", RF_NOF, "commit failed: %s", mdb_strerror(mrc));
    }
out:
    txns_held--;
    pthread_rwlock_unlock(&st->grow_lock);
    return rc;
}

int rf_store_write(struct rf_store *st, rf_store_write_cb fn, void *ctx)
{
    int rc;

    if (st->flags & RF_STORE_RDONLY) {
        return RF_EINVAL;
    }
    for (int resized = 0;;) {
        rc = write_once(st, fn, ctx);
        if (rc == MAP_RESIZED && txns_held == 0 && resized++ < 3) {
            adopt_map_size(st);
            continue;
        }
        if (rc == MAP_RESIZED) {
            rf_log_error("store", RF_NOF, "cannot adopt the store's new size");
            return RF_ESTORE;
        }
        if (rc != RF_EMAPFULL || txns_held > 0) {
            return rc; /* growing would wait for this thread's own read */
        }
        rc = grow(st);
        if (rc != 0) {
            return rc;
        }
    }
}

int rf_store_read_begin(struct rf_store *st, MDB_txn **txn)
{
    size_t need;
    int mrc;

    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&st->grow_lock);
        mrc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn);
        if (mrc == MDB_MAP_RESIZED && txns_held == 0 && attempt < 3) {
            pthread_rwlock_unlock(&st->grow_lock);
            adopt_map_size(st);
            continue;
        }
        if (mrc != 0) {
            break;
        }
        /* The snapshot is no newer than the meta page read after it. */
        if (!map_too_small(st, &need)) {
            txns_held++;
            return 0;
        }
        mdb_txn_abort(*txn);
        pthread_rwlock_unlock(&st->grow_lock);
        if (attempt == 3 || txns_held > 0) {
            rf_log_error("store", RF_NOF,
                         "cannot map the store as it grows (%zu MiB)",
                         need >> 20);
            *txn = NULL;
            return RF_ESTORE;
        }
        map_at_least(st, need);
    }
    pthread_rwlock_unlock(&st->grow_lock);
    *txn = NULL;
    return RF_ESTORE;
}

void rf_store_read_end(struct rf_store *st, MDB_txn *txn)
{
    if (txn == NULL) {
        return;
    }
    mdb_txn_abort(txn);
    txns_held--;
    pthread_rwlock_unlock(&st->grow_lock);
}

int rf_store_next_seq(MDB_txn *txn, const struct rf_store *st,
                      const char *name, uint64_t *seq)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    unsigned char buf[8];
    int mrc = mdb_get(txn, st->dbi[RF_DB_META], &k, &v);

    *seq = 1;
    if (mrc == 0 && v.mv_size == 8) {
        *seq = rf_store_get_be64(v.mv_data) + 1;
    } else if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return rf_store_rc(mrc);
    }
    rf_store_put_be64(buf, *seq);
    v.mv_size = 8;
    v.mv_data = buf;
    return rf_store_rc(mdb_put(txn, st->dbi[RF_DB_META], &k, &v, 0));
}

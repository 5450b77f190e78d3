/* Incremental polling of one module by Modified_Time with a durable
 * cursor: the last Modified_Time handed out plus the ids already handed out
 * at that second (RF_DB_ZOHO, kind "cursor", name = module).
 *
 * A poll hands records to the caller in batches and advances the cursor
 * only after the caller says the batch's effects are committed, so no
 * (id, Modified_Time) pair is delivered twice and none is missed, also when
 * records are edited during the poll (an edit is a new Modified_Time and is
 * delivered again later as a new version). Each batch comes from a fresh
 * first page at the cursor, a snapshot that cannot skip a record; when more
 * than a page of records share the cursor's second, that second is read in
 * id order, which edits do not reorder, and is closed only after Zoho shows
 * a record from a later second.
 *
 * Caveats: a record deleted while a shared second is being read in id order
 * can make the next record of that second be skipped until its next edit.
 * Two edits of one record within the same second are one version (Zoho's
 * times have whole seconds). At most RF_ZOHO_CURSOR_IDS_MAX records may
 * share one second. One poll per module and connection at a time.
 */
#ifndef REFEREE_ZOHO_POLL_H
#define REFEREE_ZOHO_POLL_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "referee/store.h"
#include "referee/zoho.h"

/* Ids one cursor keeps for its second. */
#define RF_ZOHO_CURSOR_IDS_MAX 100000

/* A batch of new record versions, in Modified_Time order (id order inside
 * a shared second). Owned by the connector. */
struct rf_zoho_batch;

/* How a poll went. */
struct rf_zoho_poll_stats {
    size_t records; /* delivered */
    size_t batches;
    unsigned calls;        /* list calls made */
    unsigned shared_scans; /* seconds read in id order */
    int caught_up;         /* ended because nothing new was left */
    int64_t cursor_time;   /* UTC seconds after the poll; 0: none */
    size_t cursor_ids;
};

/* Called with each batch. The caller processes it and then calls
 * rf_zoho_batch_done() exactly once, now or later. */
typedef void (*rf_zoho_batch_cb)(struct rf_zoho_batch *b, void *arg);

/* Called once when the poll ends: rc 0 (caught up), the rc the caller gave
 * rf_zoho_batch_done(), or a call's failure (`error` says which). */
typedef void (*rf_zoho_poll_done_cb)(int rc, const char *error,
                                     const struct rf_zoho_poll_stats *st,
                                     void *arg);

struct rf_zoho_poll_opts {
    const char *module;
    const char *fields; /* API names; Modified_Time is added if missing */
    rf_zoho_batch_cb on_batch;
    rf_zoho_poll_done_cb on_done;
    void *arg;
    const char *converted; /* "both" for Leads, so that converted leads
                              are seen too; NULL: Zoho's default */
};

/* Starts a poll that runs until nothing new is left. Options are copied.
 * Returns 0, RF_EBUSY (this module is being polled), RF_EINVAL,
 * RF_EPARSE (the stored cursor is damaged), RF_ESTORE, RF_ESTOPPING or
 * RF_ENOMEM. Loop thread. */
int rf_zoho_poll(struct rf_zoho *z, const struct rf_zoho_poll_opts *o);

/* The batch's records: a JSON array, borrowed until rf_zoho_batch_done().
 * Loop thread. */
const cJSON *rf_zoho_batch_records(const struct rf_zoho_batch *b);

/* Number of records in the batch. Loop thread. */
size_t rf_zoho_batch_count(const struct rf_zoho_batch *b);

/* Writes the cursor this batch leads to inside the caller's own write
 * transaction, so that the batch's effects and the cursor commit together.
 * Reads only what the batch fixed when it was made, so the writer thread
 * may call it until rf_zoho_batch_done(). Returns 0, RF_EMAPFULL (pass it
 * through) or RF_ESTORE. */
int rf_zoho_batch_put_cursor(const struct rf_zoho_batch *b, MDB_txn *txn,
                             const struct rf_store *st);

/* Flags for rf_zoho_batch_done(). */
enum rf_zoho_batch_flags {
    RF_ZOHO_CURSOR_WRITTEN = 1 << 0 /* rf_zoho_batch_put_cursor() committed */
};

/* Ends the caller's part: rc 0 means the batch's effects are committed and
 * the cursor may advance (the connector writes it unless `flags` says the
 * caller did); a negative rc stops the poll with the cursor where it was,
 * so the batch comes again next time. Frees the batch. Loop thread. */
void rf_zoho_batch_done(struct rf_zoho_batch *b, int rc, unsigned flags);

/* Reads a module's stored cursor: UTC seconds (0: none) and how many ids
 * it keeps. Returns 0, RF_EPARSE or RF_ESTORE. Loop thread. */
int rf_zoho_cursor_get(struct rf_zoho *z, const char *module, int64_t *time,
                       size_t *nids);

#endif

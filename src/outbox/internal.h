/* Shared between the files of the outbox module. */
#ifndef REFEREE_OUTBOX_INTERNAL_H
#define REFEREE_OUTBOX_INTERNAL_H

#include "referee/outbox.h"

int64_t rf__outbox_now_ms(void);

/* The job as its stored JSON; caller frees with cJSON_free(). */
char *rf__job_encode(const struct rf_job *j);

/* Decodes a stored record into j (owning its strings). 0 or RF_EPARSE. */
int rf__job_decode(const void *data, size_t len, uint64_t id,
                   struct rf_job *j);

/* Writes j's record, and its due entry when pending. */
int rf__job_put(MDB_txn *txn, const struct rf_store *st,
                const struct rf_job *j);

/* Deletes the due entry (next_ms, id) if present. */
int rf__job_undue(MDB_txn *txn, const struct rf_store *st, uint64_t id,
                  int64_t next_ms);

#endif

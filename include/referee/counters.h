/* Per-tenant daily counters (link visits, for now), kept durably but
 * cheaply: increments collect in memory on the loop and go to the store
 * through the writer thread once a second, many in one transaction.
 *
 *     counters  tenant \0 YYYY-MM-DD \0 name -> be64(count)
 *
 * The day is the UTC date of the increment.
 *
 * Caveats: increments not yet flushed are lost when the process dies (at
 * most the last second's; docs/limitations.md). A flush that fails is
 * merged back and tried again a second later. At most
 * RF_COUNTERS_PENDING_MAX distinct (tenant, day, name) keys wait between
 * two flushes; increments of further keys in that second are dropped and
 * counted in rf_counters_dropped().
 */
#ifndef REFEREE_COUNTERS_H
#define REFEREE_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>
#include <uv.h>

#include "referee/store.h"
#include "referee/writer.h"

#define RF_COUNTER_NAME_MAX 32
#define RF_COUNTERS_PENDING_MAX 4096
#define RF_COUNTERS_FLUSH_MS 1000

/* Writes the UTC date of `unix_s` as "YYYY-MM-DD" into out. Any thread. */
void rf_day(int64_t unix_s, char out[11]);

/* Inside a write transaction: adds `n` to counter `name` of `tenant` on
 * `day` ("YYYY-MM-DD"). Returns 0, RF_EINVAL (a name or tenant too long),
 * RF_EMAPFULL or RF_ESTORE. */
int rf_counter_add(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                   const char *day, const char *name, uint64_t n);

/* Reads a counter into *out (0 when it was never incremented). Returns 0,
 * RF_EINVAL or RF_ESTORE. Any transaction. */
int rf_counter_get(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                   const char *day, const char *name, uint64_t *out);

/* Calls fn for each counter of `tenant`, in (day, name) order; the strings
 * are borrowed for the call. Stops when fn returns non-zero and returns
 * that; otherwise 0 or RF_ESTORE. */
int rf_counters_each(MDB_txn *txn, const struct rf_store *st,
                     const char *tenant,
                     int (*fn)(const char *day, const char *name,
                               uint64_t value, void *arg),
                     void *arg);

struct rf_counters;

/* Starts the batching side on `loop`, flushing through `w` (borrowed
 * until rf_counters_stop). NULL when memory runs out. Loop thread. */
struct rf_counters *rf_counters_start(uv_loop_t *loop, struct rf_store *st,
                                      struct rf_writer *w);

/* Adds one to counter `name` of `tenant` for the UTC day of `unix_s`; the
 * increment reaches the store within RF_COUNTERS_FLUSH_MS. Loop thread. */
void rf_counters_bump(struct rf_counters *c, const char *tenant,
                      const char *name, int64_t unix_s);

/* Increments dropped because the pending table was full. */
unsigned long rf_counters_dropped(const struct rf_counters *c);

/* Submits what is pending to the writer and stops the timer; call before
 * rf_writer_stop(), which then commits it. Frees once the timer closed and
 * the last flush came back. Accepts NULL. Loop thread. */
void rf_counters_stop(struct rf_counters *c);

#endif

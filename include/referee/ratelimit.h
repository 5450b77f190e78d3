/* Per-key token buckets (a client address per tenant) in a fixed-size
 * table: the public referral form is limited per client address.
 *
 * Caveats: the table holds RF_RATELIMIT_SLOTS keys; when it is full the
 * least recently used is forgotten, so a flood of distinct addresses can
 * reset one address's bucket. Counts live in memory: a restart forgets them.
 * One thread.
 */
#ifndef REFEREE_RATELIMIT_H
#define REFEREE_RATELIMIT_H

#include <stdint.h>

#define RF_RATELIMIT_SLOTS 4096

struct rf_ratelimit;

/* NULL when memory runs out. */
struct rf_ratelimit *rf_ratelimit_new(void);
void rf_ratelimit_free(struct rf_ratelimit *rl);

/* Takes one token from `key`'s bucket, which refills at `per_minute` a
 * minute up to `per_minute`. Returns 0 when there was one, or the
 * milliseconds until there will be. `now_ms` is a monotonic clock. */
uint64_t rf_ratelimit_take(struct rf_ratelimit *rl, const char *key,
                           unsigned per_minute, uint64_t now_ms);

#endif

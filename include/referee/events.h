/* Stored webhook events: the record format, the de-duplicating insert that
 * runs inside the writer's transaction, and listing for `events list`.
 *
 * Keys: events  tenant \0 be64(seq)            -> record
 *       dedup   tenant \0 source \0 delivery_id -> be64(seq)
 * Event ids are the sequence as 16 lowercase hex digits; they grow with
 * arrival across the whole store, so "since" is a plain comparison.
 *
 * Caveats: delivery ids are remembered for as long as the store lives;
 * docs/limitations.md says how that will be bounded.
 */
#ifndef REFEREE_EVENTS_H
#define REFEREE_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "referee/store.h"

#define RF_EVENT_ID_LEN 16
#define RF_DELIVERY_ID_MAX 256

struct rf_event {
    uint64_t seq;
    int64_t received_ms;
    const char *source;
    size_t source_len;
    const char *headers; /* a JSON object of the kept headers */
    size_t headers_len;
    const char *body;
    size_t body_len;
};

/* Formats seq as an event id into out (RF_EVENT_ID_LEN + 1 bytes). */
void rf_event_id(uint64_t seq, char *out);

/* Parses an event id. Returns 0 or RF_EINVAL. */
int rf_event_id_parse(const char *s, uint64_t *seq);

/* An insert: filled by the caller, except seq and duplicate, which the
 * insert sets. All pointers are borrowed for the call. */
struct rf_event_put {
    const char *tenant;
    size_t tenant_len;
    const char *delivery_id; /* NULL: no de-duplication */
    size_t delivery_id_len;
    struct rf_event ev;
    int duplicate; /* out: 1 when the delivery id was already stored */
};

/* Inside a write transaction: if the delivery id was seen for this tenant
 * and source, sets duplicate and ev.seq to the first event's; otherwise
 * takes the next sequence number and stores the event and its delivery id.
 * Returns 0, RF_EMAPFULL, RF_ETOOBIG or RF_ESTORE. Writer thread. */
int rf_event_put(MDB_txn *txn, const struct rf_store *st,
                 struct rf_event_put *p);

/* Calls fn for each event of `tenant` with seq > since, oldest first, in
 * one read transaction, which fn may read more from (a second transaction
 * would see a newer snapshot); stops early when fn returns non-zero and
 * returns that. Event fields are borrowed for the call. Returns 0, fn's
 * value or RF_ESTORE. */
int rf_events_each(struct rf_store *st, const char *tenant, uint64_t since,
                   int (*fn)(const struct rf_event *ev, MDB_txn *txn,
                             void *arg),
                   void *arg);

/* The event as a JSON object: id, received (ISO 8601 UTC with millis),
 * source, headers (object), and body (text), or body_base64 when the body
 * is not UTF-8. Caller owns the result; NULL when memory runs out. */
struct cJSON *rf_event_json(const struct rf_event *ev);

/* Reads one event of a tenant in its own read transaction and returns its
 * JSON as rf_event_json() does. NULL when missing. */
struct cJSON *rf_event_load_json(struct rf_store *st, const char *tenant,
                                 uint64_t seq);

/* Decodes a stored record (fields point into data). 0 or RF_EPARSE. */
int rf_event_decode(const void *data, size_t len, struct rf_event *ev);

#endif

/* Records through the Zoho connector: list a module page by page (page
 * numbers up to the 2,000-record wall, then page_token), get one record,
 * search with criteria, and insert, update or upsert in batches of 100 with
 * a result per record.
 *
 * Every function runs on the loop thread and queues calls through
 * rf_zoho_request(), so retries, limits and tokens apply.
 *
 * Caveats: Zoho lists at most 100,000 records through page_token and
 * searches at most 2,000; beyond that its error is handed back. Search may
 * lag behind writes (Zoho's index), so read-after-write uses get or list.
 */
#ifndef REFEREE_ZOHO_RECORDS_H
#define REFEREE_ZOHO_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "referee/zoho.h"

/* Records per write call (Zoho's limit). */
#define RF_ZOHO_WRITE_BATCH 100

/* Largest per_page of a list or search call. */
#define RF_ZOHO_PER_PAGE_MAX 200

struct rf_zoho_list_opts {
    const char *module;     /* API name: Contacts, Leads, ... */
    const char *fields;     /* comma-separated API names; required from v3 */
    const char *sort_by;    /* id, Created_Time, Modified_Time; NULL: id */
    int desc;               /* sort_order=desc */
    int64_t modified_since; /* If-Modified-Since, UTC seconds; 0: none */
    unsigned per_page;      /* 1..200; 0: 200 */
    size_t max_records;     /* stop after the page that reaches this
                               many; 0: all */
    const char *converted;  /* Leads: "true", "false" or "both" (Zoho
                               hides converted leads by default); NULL:
                               not sent */
};

/* One page of a list. `data` is the array of records (borrowed for the
 * callback), never NULL here: empty answers end the list instead. */
struct rf_zoho_page {
    const cJSON *data;
    size_t count;
    unsigned page; /* 1-based position, also past the page_token switch */
    int more;      /* Zoho says more records follow */
    int by_token;  /* this page was fetched with page_token */
};

/* Called per page; return 0 to go on, non-zero to stop (done then runs
 * with rc 0). */
typedef int (*rf_zoho_page_cb)(const struct rf_zoho_page *p, void *arg);

/* Called once at the end: res->rc 0 when the list ended normally (last
 * status 200, or 204/304 when there was nothing (more)), else the failed
 * call's result. `total` counts records handed to on_page. */
typedef void (*rf_zoho_list_done_cb)(const struct rf_zoho_result *res,
                                     size_t total, void *arg);

/* Lists a module. Options are copied. Returns 0 (then `done` runs exactly
 * once, later), RF_EINVAL (no module, no fields where required, per_page
 * above 200), RF_ESTOPPING or RF_ENOMEM. Loop thread. */
int rf_zoho_list(struct rf_zoho *z, const struct rf_zoho_list_opts *o,
                 rf_zoho_page_cb on_page, rf_zoho_list_done_cb done, void *arg);

/* Gets one record: on success res->json is {"data":[record]}, or NULL on
 * 204 (no such id). `fields` may be NULL (all fields). Returns as
 * rf_zoho_request(); RF_EINVAL when `id` is not digits. Loop thread. */
int rf_zoho_get(struct rf_zoho *z, const char *module, const char *id,
                const char *fields, rf_zoho_done_cb done, void *arg);

/* Searches one page (1-based; per_page 0: 200) with criteria text from
 * rf_zoho_criteria(); res->json is {"data":[...],"info":{...}} or NULL on
 * 204 (no match). Returns as rf_zoho_request(). Loop thread. */
int rf_zoho_search(struct rf_zoho *z, const char *module, const char *criteria,
                   const char *fields, unsigned page, unsigned per_page,
                   rf_zoho_done_cb done, void *arg);

enum rf_zoho_write_op { RF_ZOHO_INSERT = 0, RF_ZOHO_UPDATE, RF_ZOHO_UPSERT };

struct rf_zoho_write_opts {
    const char *module;
    enum rf_zoho_write_op op;
    const char *const *duplicate_check_fields; /* upsert; NULL: Zoho's */
    size_t n_duplicate_check_fields;
    const char *const *trigger; /* workflow, approval, blueprint */
    size_t n_trigger;
    int trigger_set; /* 0: no "trigger" key (Zoho runs all automations);
                        1: send `trigger` as given, [] when n_trigger 0 */
};

/* The outcome of one input record, in input order. Strings are borrowed
 * for the callback. */
struct rf_zoho_record_result {
    int ok;           /* Zoho reported "success" for this record */
    long status;      /* HTTP status of its batch */
    const char *code; /* SUCCESS, INVALID_DATA, DUPLICATE_DATA, ... */
    const char *message;
    const char *id;              /* details.id, or "" */
    const char *action;          /* upsert: insert or update; else "" */
    const char *api_name;        /* failing field (details.api_name), or "" */
    const char *duplicate_field; /* upsert match field, or "" */
};

/* rc is 0 when every batch got an answer with a result per record (some
 * records may still have failed: see nfailed); else the rc of the first
 * batch that did not, whose records carry that call's code. */
struct rf_zoho_write_result {
    int rc;
    const char *error;
    size_t n;
    size_t nfailed;
    const struct rf_zoho_record_result *items;
    unsigned calls;
};

typedef void (*rf_zoho_write_cb)(const struct rf_zoho_write_result *res,
                                 void *arg);

/* Inserts, updates (records carry "id") or upserts the records of the JSON
 * array `records` (copied) in calls of up to 100, each costing one credit
 * per 10 records; batches over 10 records count as heavy calls. Returns 0
 * (then `done` runs once, later), RF_EINVAL (not an array, empty, or
 * duplicate_check_fields without upsert), RF_ESTOPPING or RF_ENOMEM. Loop
 * thread. */
int rf_zoho_write(struct rf_zoho *z, const struct rf_zoho_write_opts *o,
                  const cJSON *records, rf_zoho_write_cb done, void *arg);

#endif

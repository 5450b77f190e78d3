/* The Zoho CRM connector: one connection per tenant on the loop thread.
 *
 * A connection holds the tenant's OAuth client, keeps one access token
 * (cached in LMDB, refreshed by exactly one request at a time and at most
 * `refresh_max` times per `refresh_window_s`), and sends REST calls under
 * /crm/vN with the tenant's concurrency limit and daily credit budget. It
 * retries what is safe to retry: once after a 401 INVALID_TOKEN (with a new
 * token), after a 429 with full-jitter backoff while halving the tenant's
 * concurrency (it creeps back up on success), and after 5xx answers and
 * timeouts with exponential backoff. Other answers go back to the caller
 * with Zoho's error code and message.
 *
 * Higher-level calls (records, search, writes, polling, Watch channels) are
 * in zoho_records.h, zoho_poll.h and zoho_watch.h; date-times and criteria
 * in zoho_text.h.
 *
 * Caveats: every function here runs on the loop thread only. Close each
 * connection (rf_zoho_close, then let the loop run until its callback) before
 * stopping the writer or freeing the HTTP client and store it borrows. A
 * plain insert (POST without upsert) is not retried after a 5xx or timeout,
 * because Zoho may have stored it; use upsert where a retry must be safe.
 */
#ifndef REFEREE_ZOHO_H
#define REFEREE_ZOHO_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "referee/http_client.h"
#include "referee/store.h"
#include "referee/writer.h"

/* Longest record id kept as text (Zoho's are 19 digits), with its NUL. */
#define RF_ZOHO_ID_MAX 24

/* Returns the current UTC time in milliseconds since the epoch. Tests use
 * it to move the connector's clock together with the simulator's. */
typedef int64_t (*rf_zoho_clock_cb)(void *arg);

/* Settings of one tenant's connection. Strings are copied by
 * rf_zoho_open(); 0 and NULL pick the default given for each field. */
struct rf_zoho_settings {
    const char *tenant;        /* tenant id: log field and key prefix */
    const char *client_id;     /* OAuth client from Zoho's API console */
    const char *client_secret; /* never logged */
    const char *refresh_token; /* never logged */
    const char *dc;            /* us, eu, in, au, jp, ca, cn or sa */
    const char *accounts_url;  /* NULL: https://accounts.zoho.<dc> etc. */
    const char *api_domain;    /* NULL: the token answer's api_domain */
    const struct rf_http_allow *allow; /* NULL: https to the accounts
                                          host and *.zohoapis.<tld> */
    size_t n_allow;
    const char *edition;        /* free, standard, professional, enterprise
                                   (NULL), ultimate; starter, zoho_one and
                                   crm_plus are accepted as aliases */
    unsigned users;             /* licensed users, for the credit budget */
    uint64_t credits_per_day;   /* 0: from edition and users */
    unsigned concurrency;       /* calls in flight; 0: from the edition */
    unsigned heavy_concurrency; /* writes of >10 records in flight; 0: 10 */
    const char *api_version;    /* "v8" (NULL), "v7", ... "v2.1" */
    unsigned timeout_ms;        /* per HTTP call; 0: 30000 */
    unsigned refresh_margin_s;  /* refresh this long before expiry; 0: 60 */
    unsigned refresh_max;       /* refreshes per window; 0: 10 */
    unsigned refresh_window_s;  /* 0: 600 */
    unsigned retry_max;         /* tries for 5xx and timeouts; 0: 4 */
    unsigned retry_base_ms;     /* 0: 500 */
    unsigned retry_cap_ms;      /* 0: 30000 */
    unsigned throttle_max;      /* tries for 429; 0: 8 */
    unsigned throttle_base_ms;  /* 0: 1000 */
    unsigned throttle_cap_ms;   /* 0: 60000 */
    unsigned housekeeping_ms;   /* channel renewal and credit flush; 0:
                                   15000 */
    unsigned watch_margin_s;    /* renew a channel this long before it
                                   expires; 0: 600 */
    int ims_exclusive;          /* If-Modified-Since means strictly after
                                   (Zoho's is inclusive: 0) */
    rf_zoho_clock_cb clock;     /* NULL: CLOCK_REALTIME */
    void *clock_arg;
};

/* One REST call. `path` is below /crm/vN/ ("Contacts", "Leads/upsert",
 * "actions/watch"); `query` is a NULL-terminated list of name, value pairs
 * (values are URL-encoded here) or NULL. */
struct rf_zoho_request {
    const char *method; /* GET, POST, PUT, PATCH or DELETE */
    const char *path;
    const char *const *query;
    const char *body;          /* JSON text or NULL */
    int64_t if_modified_since; /* UTC epoch seconds; 0: no header */
    unsigned cost;             /* credits this call spends; 0: 1 */
    int heavy;                 /* counts against the heavy sub-limit */
    int no_retry;              /* no retry after 5xx or timeout (inserts) */
};

/* What a call ended with. rc is 0 when Zoho answered 2xx or 304; then
 * `json` is the parsed body, or NULL for 204 and 304. Otherwise rc is:
 * RF_EHTTP (Zoho answered an error status: `status`, `code` and `message`
 * are Zoho's, `json` its body when it had one), RF_ETIMEOUT (no answer in
 * time, after retries), RF_EPARSE (a 2xx body that is not JSON), RF_ELIMIT
 * (refused locally: credit budget or refresh quota), RF_ECONFIG (the
 * tenant's settings are wrong, e.g. the data centre), RF_EDENIED (the
 * accounts server refused the refresh token, or the host is not allowed),
 * RF_ETOOBIG, RF_ENOMEM or RF_ESTOPPING (the connection is closing).
 * `error` is a sentence whenever rc != 0. Everything is borrowed for the
 * callback only. */
struct rf_zoho_result {
    int rc;
    long status;
    const cJSON *json;
    const char *code;
    const char *message;
    const char *error;
    unsigned attempts; /* HTTP calls made for this request */
};

/* Called once per request on the loop thread. */
typedef void (*rf_zoho_done_cb)(const struct rf_zoho_result *res, void *arg);

/* Called once when a closed connection has released everything. */
typedef void (*rf_zoho_closed_cb)(void *arg);

/* What an operator sees (rf_zoho_stats). */
struct rf_zoho_stats {
    uint64_t credits_used;   /* in the last 24 h, as counted here */
    uint64_t credits_budget; /* per 24 h */
    unsigned concurrency;    /* current limit (lowered after 429s) */
    unsigned concurrency_max;
    size_t in_flight;
    size_t max_in_flight; /* highest seen since open */
    size_t queued;        /* waiting for a slot, a token or a backoff */
    uint64_t calls;       /* HTTP calls to the API */
    uint64_t retries;     /* of which repeated after 5xx, timeout or 401 */
    uint64_t throttled;   /* 429 answers */
    uint64_t cuts;        /* times a 429 lowered the concurrency */
    uint64_t refreshes;   /* token refreshes sent by this process */
    unsigned refreshes_in_window; /* in the last refresh_window_s */
    int64_t token_expires_ms;     /* 0: no usable token */
    char api_domain[128];
    char last_error[256]; /* last token or configuration failure, or "" */
};

struct rf_zoho;

/* Opens a tenant's connection on `loop`, borrowing `http`, `store` and
 * `writer` until the close callback. Reads the cached token, refresh
 * times, credit usage and Watch channels of the tenant from the store.
 * Returns 0 and sets *out (close with rf_zoho_close()), or RF_ECONFIG /
 * RF_EINVAL (bad settings; a sentence is in `err`), RF_ESTORE or
 * RF_ENOMEM. Loop thread. */
int rf_zoho_open(uv_loop_t *loop, struct rf_http_client *http,
                 struct rf_store *store, struct rf_writer *writer,
                 const struct rf_zoho_settings *s, struct rf_zoho **out,
                 char *err, size_t errlen);

/* Starts closing: queued requests end with RF_ESTOPPING, calls in flight
 * end with RF_ESTOPPING when their answer arrives, credit usage is saved.
 * `cb` (may be NULL) runs once everything is released; `z` is freed then.
 * A poll whose batch is with the caller keeps the connection open until
 * rf_zoho_batch_done(). Accepts NULL. Loop thread. */
void rf_zoho_close(struct rf_zoho *z, rf_zoho_closed_cb cb, void *arg);

/* Queues a call. `req` is copied. Returns 0, after which `done` runs
 * exactly once and never before this returns; or RF_EINVAL (bad method or
 * path), RF_ETOOBIG (path and query over 8 KiB), RF_ESTOPPING or
 * RF_ENOMEM, and then `done` is not called. Loop thread. */
int rf_zoho_request(struct rf_zoho *z, const struct rf_zoho_request *req,
                    rf_zoho_done_cb done, void *arg);

/* Fills `out` with the connection's counters. Loop thread. */
void rf_zoho_stats(const struct rf_zoho *z, struct rf_zoho_stats *out);

/* The connector's clock (UTC milliseconds). Loop thread. */
int64_t rf_zoho_now_ms(const struct rf_zoho *z);

/* The accounts server of a data centre ("https://accounts.zoho.eu"), or
 * NULL for an unknown code. Static string; any thread. */
const char *rf_zoho_dc_accounts(const char *dc);

/* The production API domain of a data centre ("https://www.zohoapis.eu"),
 * or NULL. Static string; any thread. */
const char *rf_zoho_dc_api(const char *dc);

/* Copies a record id out of JSON into `out` (RF_ZOHO_ID_MAX bytes): a
 * string of 1 to 20 digits, or a JSON number only if it is an integer below
 * 2^53 (larger ones have lost digits in the double). Returns 0, RF_EPARSE
 * or RF_EINVAL (NULL item). Any thread. */
int rf_zoho_json_id(const cJSON *item, char out[RF_ZOHO_ID_MAX]);

#endif

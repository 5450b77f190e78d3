/* Private to src/zoho/: the connection object and the functions its files
 * share. Loop thread only, like the public API. */
#ifndef REFEREE_ZOHO_INTERNAL_H
#define REFEREE_ZOHO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "referee/zoho.h"
#include "referee/zoho_poll.h"
#include "referee/zoho_records.h"

#define RF__ZOHO_REFRESH_TIMES_MAX 64 /* refresh_max is capped to this */
#define RF__ZOHO_MINUTES 1440         /* credit buckets: one per minute */
#define RF__ZOHO_FRESH_MS                                                      \
    60000 /* a token younger than this that                                    \
             never worked is "fresh" */

/* A queued or running REST call. */
struct rf__zoho_req {
    struct rf__zoho_req *prev, *next; /* in exactly one list of the
                                         connection, or none while it is
                                         being finished */
    int where;                        /* which list (enum in request.c) */
    struct rf_zoho *z;
    char method[8];
    char *path; /* below /crm/vN/, with its query string */
    char *body;
    size_t body_len;
    int64_t ims;
    unsigned cost;
    int heavy;
    int no_retry;
    rf_zoho_done_cb done;
    void *arg;
    unsigned attempts;  /* HTTP calls made */
    unsigned tries;     /* 5xx and timeouts */
    unsigned throttled; /* 429s */
    int auth_retried;
    uint64_t token_gen;
    uint64_t sent_seq;
    uint64_t due;        /* uv_now() when a delayed request may go again */
    int64_t charged_min; /* credit bucket charged, -1: none */
};

struct rf__zoho_list_head {
    struct rf__zoho_req *head, *tail;
    size_t n;
};

/* A Watch channel the connection keeps alive. */
struct rf__zoho_chan {
    struct rf__zoho_chan *next;
    char id[RF_ZOHO_ID_MAX];
    char **events;
    size_t n_events;
    char *notify_url;
    char *token;
    unsigned lifetime_s;
    int rav;        /* return_affected_field_values */
    int64_t expiry; /* UTC seconds, as Zoho confirmed */
    int busy;       /* a subscribe, renewal or stop is under way */
    int gone;       /* stopped; freed when no call refers to it */
};

struct rf__zoho_poll; /* poll.c */

struct rf_zoho {
    uv_loop_t *loop;
    struct rf_http_client *http;
    struct rf_store *store;
    struct rf_writer *writer;

    /* Settings, copied. */
    char *tenant;
    char *client_id;
    char *client_secret;
    char *refresh_token;
    char token_name[96];   /* record name: client id "." refresh-token hash */
    int denied;            /* the refresh token was refused for good */
    char denied_msg[400];
    char *dc;
    char *accounts_url;
    char *api_override;
    char *version;
    struct rf_http_allow *allow; /* n_allow entries; hosts owned when
                                    own_allow */
    size_t n_allow;
    int own_allow;
    char *allow_hosts[2];
    char *tld; /* of the data centre's zohoapis host */
    uint64_t budget;
    unsigned conc_max;
    unsigned heavy_max;
    unsigned timeout_ms;
    unsigned refresh_margin_s;
    unsigned refresh_max;
    unsigned refresh_window_s;
    unsigned retry_max, retry_base_ms, retry_cap_ms;
    unsigned throttle_max, throttle_base_ms, throttle_cap_ms;
    unsigned housekeeping_ms;
    unsigned watch_margin_s;
    int ims_exclusive;
    rf_zoho_clock_cb clock;
    void *clock_arg;

    /* Handles, embedded; closed in rf_zoho_close(). */
    uv_timer_t kick;  /* runs the queue on the next loop turn */
    uv_timer_t delay; /* wakes delayed (backed-off) requests */
    uv_timer_t house; /* channel renewal, credit flush */

    /* Requests. */
    struct rf__zoho_list_head ready, delayed, inflight;
    size_t heavy_in_flight;
    size_t max_in_flight;
    double cwnd; /* current concurrency limit (AIMD) */
    uint64_t send_seq;
    uint64_t cut_seq; /* 429s of calls sent before this do not cut again */

    /* Token. */
    char *access_token;
    char *api_domain;
    int64_t expires_ms;
    int64_t obtained_ms;
    int token_valid;
    int token_proven; /* some call with it got past authentication */
    int token_fresh;  /* minted by this process */
    uint64_t token_gen;
    int refreshing;
    int64_t refresh_times[RF__ZOHO_REFRESH_TIMES_MAX];
    size_t n_refresh_times;

    /* Credits: per-minute buckets of the last 24 h. */
    int64_t credit_min[RF__ZOHO_MINUTES];
    uint32_t credit_used[RF__ZOHO_MINUTES];
    int credits_dirty;

    /* Watch channels and running polls. */
    struct rf__zoho_chan *chans;
    struct rf__zoho_poll *polls;

    /* Counters. */
    uint64_t calls, retries, throttled, refreshes;
    uint64_t cuts;
    char last_error[256];

    /* Closing: the connection is freed when nothing refers to it. */
    size_t pending; /* HTTP calls, writer jobs, polls, open handles */
    int depth;      /* > 0 while a function that calls back runs */
    int closing;
    rf_zoho_closed_cb closed_cb;
    void *closed_arg;
    uint64_t rng;
};

/* zoho.c */
void rf__zoho_hold(struct rf_zoho *z);
void rf__zoho_release(struct rf_zoho *z);
void rf__zoho_enter(struct rf_zoho *z);
void rf__zoho_leave(struct rf_zoho *z);
int64_t rf__zoho_now(const struct rf_zoho *z);
uint64_t rf__zoho_random(struct rf_zoho *z);
void rf__zoho_set_error(struct rf_zoho *z, const char *msg);

/* request.c */
void rf__zoho_kick(struct rf_zoho *z);
void rf__zoho_kick_run(struct rf_zoho *z);
void rf__zoho_fail_ready(struct rf_zoho *z, int rc, const char *error);
void rf__zoho_fail_all(struct rf_zoho *z);
void rf__zoho_on_delay(uv_timer_t *t);

/* token.c */
void rf__zoho_token_load(struct rf_zoho *z);
int rf__zoho_token_usable(const struct rf_zoho *z);
void rf__zoho_token_refresh(struct rf_zoho *z);

/* What a token endpoint answer says. Strings are owned (free with
 * rf__zoho_token_answer_free). */
struct rf__zoho_token_answer {
    char *access_token;
    char *api_domain;      /* NULL when the answer has none */
    int64_t expires_in_ms; /* 0 when the answer has none */
    char error[96];        /* the "error" value, or "" */
    char description[160];
};

/* Parses a token endpoint body (HTTP 200 either way). Returns 0 (token),
 * RF_EDENIED (an "error" key: see out->error), RF_EPARSE (not JSON, no
 * access_token) or RF_ENOMEM. */
int rf__zoho_token_parse(const char *body, size_t len,
                         struct rf__zoho_token_answer *out);
void rf__zoho_token_answer_free(struct rf__zoho_token_answer *a);

/* credits.c */
void rf__zoho_credits_load(struct rf_zoho *z);
void rf__zoho_credits_save(struct rf_zoho *z);
int64_t rf__zoho_credits_charge(struct rf_zoho *z, unsigned cost);
void rf__zoho_credits_refund(struct rf_zoho *z, int64_t minute, unsigned cost);
uint64_t rf__zoho_credits_used(const struct rf_zoho *z);

/* store.c: RF_DB_ZOHO keys are tenant \0 kind \0 name. */
typedef void (*rf__zoho_saved_cb)(struct rf_zoho *z, int rc, void *ctx);
int rf__zoho_key(const char *tenant, const char *kind, const char *name,
                 char *buf, size_t cap, size_t *len);
int rf__zoho_load(struct rf_zoho *z, const char *kind, const char *name,
                  char **out, size_t *len);
int rf__zoho_save(struct rf_zoho *z, const char *kind, const char *name,
                  const char *val, size_t len, rf__zoho_saved_cb after,
                  void *ctx);

/* json.c */
int rf__zoho_json_parse(const char *body, size_t len, cJSON **out);
const char *rf__zoho_json_str(const cJSON *obj, const char *key);

/* watch.c */
void rf__zoho_watch_load(struct rf_zoho *z);
void rf__zoho_watch_tick(struct rf_zoho *z);
void rf__zoho_watch_free(struct rf_zoho *z);

/* records.c: a list that the caller can pause between pages. */
struct rf__zoho_list;
enum { RF__ZOHO_GO = 0, RF__ZOHO_STOP = 1, RF__ZOHO_PAUSE = 2 };
typedef int (*rf__zoho_page_cb)(struct rf__zoho_list *l,
                                const struct rf_zoho_page *p, void *arg);
int rf__zoho_list_start(struct rf_zoho *z, const struct rf_zoho_list_opts *o,
                        rf__zoho_page_cb on_page, rf_zoho_list_done_cb done,
                        void *arg, struct rf__zoho_list **out);
void rf__zoho_list_resume(struct rf__zoho_list *l, int stop);

/* poll.c */
void rf__zoho_polls_stop(struct rf_zoho *z);

#endif

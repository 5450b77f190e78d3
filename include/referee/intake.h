/* Webhook intake: POST /t/{tenant}/hooks/{source}. Checks the source's
 * signature and body (for a JSON source: strict RFC 8259 JSON in strict
 * UTF-8, nested at most RF_API_JSON_DEPTH_MAX deep, so that every stored
 * body can be decoded for its hook), then commits the event (de-duplicated
 * by delivery id) before answering 202, or 200 with the first event's id
 * for a repeat.
 */
#ifndef REFEREE_INTAKE_H
#define REFEREE_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "referee/http.h"
#include "referee/store.h"
#include "referee/tenant.h"
#include "referee/writer.h"

struct rf_intake_stats {
    unsigned long accepted, duplicates, rejected, failed;
};

struct rf_intake {
    struct rf_store *store;              /* borrowed */
    struct rf_writer *writer;            /* borrowed */
    const struct rf_tenants *const *tenants; /* the current registry */
    unsigned tolerance_s;                /* signature timestamp window */
    struct rf_intake_stats stats;
    /* Called after a new event committed (not for repeats); may be NULL. */
    void (*stored)(void *arg, const char *tenant, const char *source,
                   uint64_t seq);
    void *stored_arg;
};

/* Handles one webhook delivery for the tenant and source named in the path
 * (not NUL-terminated). Answers now (4xx) or after the commit. Loop thread
 * only. */
void rf_intake_handle(struct rf_intake *in, struct rf_http_req *req,
                      const char *tenant, size_t tlen, const char *source,
                      size_t slen);

/* Answers 400 repeated_header and returns -1 when the request carries
 * webhook-id, webhook-timestamp, webhook-signature or id_header (may be
 * NULL) more than once: the signature check and the delivery id would read
 * only the first, and the event would keep both. Otherwise returns 0. */
int rf_intake_refuse_repeats(struct rf_http_req *req, const char *id_header);

/* The source name of stored Zoho notifications; no webhook source of a
 * tenant may have it. */
#define RF_INTAKE_ZOHO_SOURCE "zoho"

/* Handles POST /t/{tenant}/zoho/notify, a Zoho Watch callback: checks the
 * tenant's channel id and token (in constant time) and the body's shape,
 * then stores it as an event of source "zoho" and answers 202 after the
 * commit. Loop thread only. */
void rf_intake_handle_zoho(struct rf_intake *in, struct rf_http_req *req,
                           const char *tenant, size_t tlen);

#endif

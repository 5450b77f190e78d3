/* POST /t/{tenant}/referrals: a referred person arrives, from a landing
 * page's form (rate limited per client address), as JSON, or as a signed
 * server-to-server webhook (Standard Webhooks, the tenant's
 * program.secret). The capture rules run in the write transaction that
 * stores the referral (referrals.h); the answer says what they decided:
 *
 *     201 {"referral_id": 7, "status": "accepted"}
 *     422 {"error": {"code": "self_referral", "message": ...}}
 *
 * with a Referral-Id header either way (refused referrals are kept).
 */
#ifndef REFEREE_CAPTURE_H
#define REFEREE_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "referee/http.h"
#include "referee/intake.h"
#include "referee/ratelimit.h"

struct rf_capture {
    struct rf_intake *in;     /* store, writer, tenants, tolerance */
    struct rf_ratelimit *rl;  /* owned */
    unsigned long accepted, refused, limited;
    /* An accepted referral committed: run its capture hook. */
    void (*captured)(void *arg, const char *tenant, uint64_t id);
    void *arg;
};

/* Handles one request for the tenant named in the path (tlen bytes).
 * Loop thread. */
void rf_capture_handle(struct rf_capture *c, struct rf_http_req *req,
                       const char *tenant, size_t tlen);

/* Decodes an application/x-www-form-urlencoded body into an object of
 * strings (the last of repeated names wins). NULL when it is not valid
 * (bad escapes, invalid UTF-8, over 64 fields). */
cJSON *rf_form_decode(const char *body, size_t len);

#endif

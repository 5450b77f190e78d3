/* POST /t/{tenant}/join: a person joins the tenant's referral program as
 * a referrer through a form (JSON or form-urlencoded: "email" required,
 * "name" optional), limited per client address like the referral form
 * (program.form_per_minute). Answers
 *
 *     201 {"code": "...", "link": "..." | null}      a new referrer
 *     200 {"code": "...", "link": ..., "existing": true}
 *
 * the second when a referrer of the tenant (joined or enrolled from the
 * CRM) already has that email, compared folded (rf_email_fold). A new
 * referrer has source "join", contact id "join:<n>" and an audit entry
 * "enrolled". Errors: 400 invalid_body, 422 missing_email / invalid_email,
 * 429 rate_limited, 404 tenant_not_found / program_not_configured, 503.
 *
 * Caveats: finding an existing referrer by email reads the tenant's
 * referrers in the write transaction (docs/limitations.md).
 */
#ifndef REFEREE_JOIN_H
#define REFEREE_JOIN_H

#include <stddef.h>

#include "referee/http.h"
#include "referee/intake.h"
#include "referee/ratelimit.h"

struct rf_join {
    struct rf_intake *in;    /* store, writer, tenants */
    struct rf_ratelimit *rl; /* owned by the caller */
    unsigned long joined, existing, refused, limited;
};

/* Handles one request for the tenant named in the path (tlen bytes).
 * Loop thread. */
void rf_join_handle(struct rf_join *j, struct rf_http_req *req,
                    const char *tenant, size_t tlen);

#endif

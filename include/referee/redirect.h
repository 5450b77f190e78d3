/* GET /r/{code} (and HEAD): a referral link. The code is looked up
 * case-insensitively in a read transaction on the loop; a known code is
 * answered 302 to its tenant's program.landing with {code} replaced by the
 * code (URL-encoded), and the visit is counted ("visits", counters.h). An
 * unknown or malformed code, or a tenant without a landing page, is
 * answered 404 with a JSON error and counts nothing.
 */
#ifndef REFEREE_REDIRECT_H
#define REFEREE_REDIRECT_H

#include <stddef.h>

#include "referee/counters.h"
#include "referee/http.h"
#include "referee/intake.h"

/* Answers one request for `code` (len bytes, from the path). `in` gives the
 * store and the tenants; `c` counts the visit. Loop thread. */
void rf_redirect_handle(struct rf_intake *in, struct rf_counters *c,
                        struct rf_http_req *req, const char *code, size_t len);

#endif

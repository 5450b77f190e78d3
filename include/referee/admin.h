/* The admin HTTP API, on a listener of its own (loopback by default),
 * every request authenticated with `Authorization: Bearer <token>`:
 *
 *     GET  /admin/t/{tenant}/referrers       {"referrers": [...]}
 *     GET  /admin/t/{tenant}/referrals       {"referrals": [...]}
 *     GET  /admin/t/{tenant}/dead            {"dead": [...]}
 *     POST /admin/t/{tenant}/dead/replay[?job=ID]   {"replayed": n}
 *     GET  /admin/t/{tenant}/report          the report (report.h)
 *
 * Errors are {"error": {"code", "message"}}: 401 unauthorized, 404
 * not_found / tenant_not_found / job_not_found, 405 method_not_allowed,
 * 503 store_unavailable.
 *
 * The token is kept only as its SHA-256 and compared with the SHA-256 of
 * what a request presents, in constant time (CRYPTO_memcmp), so neither
 * its length nor its content leaks through timing. It is never logged.
 * The store work of a request runs on libuv's thread pool, off the loop.
 */
#ifndef REFEREE_ADMIN_H
#define REFEREE_ADMIN_H

#include <stddef.h>

#include <uv.h>

#include "referee/http.h"
#include "referee/store.h"
#include "referee/tenant.h"

struct rf_admin;

/* Starts listening on host:port. `tenants` points at the current
 * registry; `st` and it are borrowed until rf_admin_stop(). `token` is
 * copied as its hash. NULL when the listener cannot start (logged).
 * Loop thread. */
struct rf_admin *rf_admin_start(uv_loop_t *loop, struct rf_store *st,
                                const struct rf_tenants *const *tenants,
                                const char *host, unsigned port,
                                const struct rf_http_limits *limits,
                                const char *token);

/* The port actually bound. */
unsigned rf_admin_port(const struct rf_admin *a);

/* Stops accepting connections; requests in flight go on. */
void rf_admin_quiesce(struct rf_admin *a);

/* Requests received and not yet answered. */
size_t rf_admin_inflight(const struct rf_admin *a);

/* Stops the listener (requests still waiting get 503) and frees once the
 * thread-pool work in flight came back. Accepts NULL. Loop thread. */
void rf_admin_stop(struct rf_admin *a);

#endif

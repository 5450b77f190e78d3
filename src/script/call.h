/* A hook call in flight, shared by the engine and the waiting parts of the
 * script API (api_http.c, api_store.c). */
#ifndef REFEREE_SCRIPT_CALL_H
#define REFEREE_SCRIPT_CALL_H

#include <lua.h>

#include "referee/http_client.h"
#include "referee/store.h"
#include "referee/tenant.h"
#include "referee/writer.h"

struct rf_call;

/* The call whose coroutine is L, or NULL when L is not a hook's coroutine
 * (the main chunk, a coroutine the script made). */
struct rf_call *rf__call_of(lua_State *L);

/* Whether the call may wait here: L is the call's own coroutine and can
 * yield. Raises a Lua error naming `fn` otherwise. */
struct rf_call *rf__call_check(lua_State *L, const char *fn);

/* Takes a reference for an operation that will resume the call later. */
void rf__call_hold(struct rf_call *c);

/* Drops a reference; frees the call when it was the last. */
void rf__call_release(struct rf_call *c);

/* Whether the call still waits for the operation (not timed out or
 * stopped meanwhile). */
int rf__call_waiting(const struct rf_call *c);

/* Yields the call's coroutine until rf__call_resume(). Use as
 * `return rf__call_wait(L, c);` from a Lua C function. */
int rf__call_wait(lua_State *L, struct rf_call *c);

/* The coroutine to push the results onto before resuming. */
lua_State *rf__call_thread(struct rf_call *c);

/* Resumes a waiting call with `nres` values pushed on its coroutine. */
void rf__call_resume(struct rf_call *c, int nres);

/* What the waiting APIs need. */
struct rf_http_client *rf__call_http(struct rf_call *c);
struct rf_store *rf__call_store(struct rf_call *c);
struct rf_writer *rf__call_writer(struct rf_call *c);
const struct rf_tenant *rf__call_tenant(struct rf_call *c);
unsigned *rf__call_log_lines(struct rf_call *c); /* api_log.c's count */
struct rf_zoho *rf__call_zoho(struct rf_call *c); /* NULL: none */

/* Opens the waiting modules as globals (http, store, crm). */
void rf__api_open_http(lua_State *L);
void rf__api_open_store(lua_State *L);
void rf__api_open_crm(lua_State *L);

#endif

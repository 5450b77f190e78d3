/* The `referee` API that tenant scripts see, module by module. Each opener
 * pushes its module table; rf_api_open_sync() installs the modules that do
 * not wait (json, crypto, time, log) as globals of a sandboxed state.
 *
 * Lua-facing C functions never hold a heap resource across a call that can
 * raise a Lua error.
 */
#ifndef REFEREE_SCRIPT_API_H
#define REFEREE_SCRIPT_API_H

#include <stddef.h>

#include <lua.h>

#include <cjson/cJSON.h>

int rf_api_open_json(lua_State *L);
int rf_api_open_crypto(lua_State *L);
int rf_api_open_time(lua_State *L);
int rf_api_open_log(lua_State *L);

/* Sets the globals json, crypto, time and log. */
void rf_api_open_sync(lua_State *L);

/* Sets the globals whose functions wait (http, store, crm). They work
 * only inside a hook call run by the engine (engine.h). */
void rf_api_open_async(lua_State *L);

/* Records the module table in global `name` (if it is one) where Lua's
 * argument errors and tracebacks look up function names, so that they say
 * "bad argument #1 to 'crypto.random_token'" rather than "to '?'". The
 * openers above call it for every module they set. */
void rf_api_publish(lua_State *L, const char *name);

/* Sets the tenant, hook and event that log lines of this state carry.
 * Strings are copied into the state. Any may be NULL. */
void rf_api_set_context(lua_State *L, const char *tenant, const char *hook,
                        const char *event);

/* Parses a request body that is read field by field (referrals, sign-ups,
 * the admin API): strict JSON in strict UTF-8, no \u0000 (it would cut a
 * C string), nested at most RF_API_JSON_DEPTH_MAX, and every object naming
 * each member once. NULL with a sentence in err when it is not that (or
 * out of memory). Caller frees. */
cJSON *rf_api_parse_body(const char *text, size_t len, char *err,
                         size_t errlen);

/* The most text rf_api_to_json() builds a tree for. */
#define RF_API_JSON_TEXT_MAX ((size_t)8 << 20)

/* Converts the Lua value at `idx` to cJSON. Returns NULL and pushes nothing
 * on failure, writing the reason into err (a cycle, a function, NaN, depth
 * over 100, a string with a zero byte or not UTF-8, text over
 * RF_API_JSON_TEXT_MAX). Integers past 2^53 keep every digit (as raw
 * number items). Inside a
 * call, a CPU or memory limit hit meanwhile raises that limit's error.
 * Caller owns the result; free with cJSON_Delete(). */
cJSON *rf_api_to_json(lua_State *L, int idx, char *err, size_t errlen);

/* rf_api_to_json() with its own limit on the text, in bytes. */
cJSON *rf_api_to_json_max(lua_State *L, int idx, size_t max, char *err,
                          size_t errlen);

/* Pushes a cJSON value as Lua (objects and arrays keep their kind through a
 * metatable, null becomes json.null). Returns 0, or -1 when the stack or
 * memory runs out (then nothing is pushed). */
int rf_api_push_json(lua_State *L, const cJSON *v);

/* How deep arrays and objects may nest in JSON that scripts get: deeper
 * values cannot be encoded by json.encode (100 levels), so intake refuses
 * webhook bodies nested deeper than this, and a stored body wrapped in its
 * event stays within what the parser below accepts. */
#define RF_API_JSON_DEPTH_MAX 100

/* Parses JSON text strictly (one value, only whitespace after it), with
 * integers of more than 15 digits kept as strings so ids never lose
 * digits. Returns NULL on bad input, writing the reason into err. Caller
 * owns the result. */
cJSON *rf_api_parse_json(const char *text, size_t len, char *err,
                         size_t errlen);

#endif

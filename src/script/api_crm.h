/* crm.* for scripts, shared between its files: api_crm.c (the calls and
 * their results) and api_crm_args.c (reading a call's arguments and search
 * criteria out of Lua; each reader raises a Lua error naming the call). */
#ifndef REFEREE_SCRIPT_API_CRM_H
#define REFEREE_SCRIPT_API_CRM_H

#include <stddef.h>

#include <lua.h>

#include "referee/zoho.h"
#include "referee/zoho_records.h"

#define NAME_LEN_MAX 100 /* a Zoho API name */
#define FIELDS_MAX 50    /* names in `fields` (Zoho's limit) */
#define TEXT_MAX 4096    /* a fields list, criteria, a scratch buffer */
#define VALUES_MAX 100   /* operands over all search conditions */

/* Conditions, names and operands copied out of Lua. */
struct crit {
    struct rf_zoho_cond conds[RF_ZOHO_CRITERIA_MAX];
    const char *vals[VALUES_MAX];
    size_t nvals;
    char text[TEXT_MAX];
    size_t used;
};

/* The string at `idx` when it is an API name (its length in *len), else
 * NULL. */
const char *rf__crm_name_at(lua_State *L, int idx, size_t *len);

/* The module name at `idx`; raises unless it is an API name. */
const char *rf__crm_check_module(lua_State *L, int idx, const char *fn);

/* A record id at `idx` (digits, or an integer) into out; raises if not. */
void rf__crm_check_id(lua_State *L, int idx, const char *fn,
                      char out[RF_ZOHO_ID_MAX]);

/* The options table at `idx`: nil or a table (then its index). */
int rf__crm_check_opts(lua_State *L, int idx, const char *fn);

/* opts.fields, a list of names or "A,B,C", as "A,B,C" in out; NULL when
 * absent (raises when required). */
const char *rf__crm_read_fields(lua_State *L, int opts, const char *fn,
                                int required, char out[TEXT_MAX]);

/* An integer option in [lo, hi], or `dflt` when absent. */
lua_Integer rf__crm_read_int(lua_State *L, int opts, const char *fn,
                             const char *key, lua_Integer lo, lua_Integer hi,
                             lua_Integer dflt);

/* A string option that must be one of `allowed`, or NULL when absent. */
const char *rf__crm_read_choice(lua_State *L, int opts, const char *fn,
                                const char *key, const char *const *allowed,
                                const char *hint);

/* Criteria at `idx` into out: raw Zoho text, or a list of conditions
 * joined by `and` (`join = "or"` for or), escaped by rf_zoho_criteria. */
void rf__crm_read_criteria(lua_State *L, int idx, struct crit *c,
                           char out[TEXT_MAX]);

#endif

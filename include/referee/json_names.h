/* Whether every object in a parsed JSON tree names each member once.
 * RFC 8259 allows repeats, but a body whose rules check one value while
 * another reaches the CRM must not pass: referee refuses them wherever it
 * reads a body field by field (referrals, sign-ups, the admin API). */
#ifndef REFEREE_JSON_NAMES_H
#define REFEREE_JSON_NAMES_H

#include <cjson/cJSON.h>

/* NULL when every object in v names its members once, else the first name
 * given twice (inside v). */
const char *rf_json_repeated_name(const cJSON *v);

#endif

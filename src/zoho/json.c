/* JSON helpers of the connector: strict parsing (no trailing garbage) and
 * record ids that never pass through a double. */
#include "referee/error.h"
#include "referee/zoho.h"
#include "zoho/internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int rf__zoho_json_parse(const char *body, size_t len, cJSON **out)
{
    const char *end = NULL;
    cJSON *j;

    *out = NULL;
    if (len == 0) {
        return RF_EPARSE;
    }
    j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (j == NULL) {
        return RF_EPARSE;
    }
    while (end < body + len &&
           (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')) {
        end++;
    }
    if (end != body + len) { /* cJSON stops after the first value */
        cJSON_Delete(j);
        return RF_EPARSE;
    }
    *out = j;
    return 0;
}

const char *rf__zoho_json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int rf_zoho_json_id(const cJSON *item, char out[RF_ZOHO_ID_MAX])
{
    if (item == NULL) {
        return RF_EINVAL;
    }
    if (cJSON_IsString(item)) {
        const char *s = item->valuestring;
        size_t n = strlen(s);

        if (n == 0 || n > 20 || strspn(s, "0123456789") != n) {
            return RF_EPARSE;
        }
        memcpy(out, s, n + 1);
        return 0;
    }
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;

        /* Doubles hold every integer below 2^53; above, digits are lost. */
        if (d < 0 || d >= 9007199254740992.0 || floor(d) != d) {
            return RF_EPARSE;
        }
        snprintf(out, RF_ZOHO_ID_MAX, "%.0f", d);
        return 0;
    }
    return RF_EPARSE;
}

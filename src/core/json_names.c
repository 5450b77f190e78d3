/* Repeated member names in a parsed JSON tree (referee/json_names.h). */
#include "referee/json_names.h"

#include <string.h>

const char *rf_json_repeated_name(const cJSON *v)
{
    const char *name;

    if (v == NULL) {
        return NULL;
    }
    for (const cJSON *f = v->child; f; f = f->next) {
        if (cJSON_IsObject(v)) {
            for (const cJSON *g = v->child; g != f; g = g->next) {
                if (strcmp(g->string, f->string) == 0) {
                    return f->string;
                }
            }
        }
        name = rf_json_repeated_name(f);
        if (name != NULL) {
            return name;
        }
    }
    return NULL;
}

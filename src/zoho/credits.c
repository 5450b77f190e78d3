/* API credits spent in the last 24 hours, in one bucket per minute, saved
 * in RF_DB_ZOHO (kind "credits", name "window") so a restart remembers
 * them. */
#include "referee/error.h"
#include "referee/log.h"
#include "zoho/internal.h"

#include <stdlib.h>
#include <string.h>

static int64_t minute_of(int64_t ms)
{
    return ms / 60000;
}

/* The bucket of `minute`, emptied first if it held an older minute. */
static size_t bucket(struct rf_zoho *z, int64_t minute)
{
    size_t i = (size_t)(minute % RF__ZOHO_MINUTES);

    if (z->credit_min[i] != minute) {
        z->credit_min[i] = minute;
        z->credit_used[i] = 0;
    }
    return i;
}

int64_t rf__zoho_credits_charge(struct rf_zoho *z, unsigned cost)
{
    int64_t minute = minute_of(rf__zoho_now(z));

    z->credit_used[bucket(z, minute)] += cost;
    z->credits_dirty = 1;
    return minute;
}

void rf__zoho_credits_refund(struct rf_zoho *z, int64_t minute, unsigned cost)
{
    size_t i;

    if (minute < 0) {
        return;
    }
    i = (size_t)(minute % RF__ZOHO_MINUTES);
    if (z->credit_min[i] == minute) {
        z->credit_used[i] -=
            cost < z->credit_used[i] ? cost : z->credit_used[i];
        z->credits_dirty = 1;
    }
}

uint64_t rf__zoho_credits_used(const struct rf_zoho *z)
{
    int64_t now = minute_of(rf__zoho_now(z));
    uint64_t sum = 0;

    for (size_t i = 0; i < RF__ZOHO_MINUTES; i++) {
        if (z->credit_min[i] > now - RF__ZOHO_MINUTES &&
            z->credit_min[i] <= now) {
            sum += z->credit_used[i];
        }
    }
    return sum;
}

/* Saved as {"minutes":[[minute,credits],...]} with non-empty buckets. */
void rf__zoho_credits_save(struct rf_zoho *z)
{
    int64_t now = minute_of(rf__zoho_now(z));
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "minutes");
    char *text = NULL;
    int rc = RF_ENOMEM;

    if (arr == NULL) {
        goto out;
    }
    for (size_t i = 0; i < RF__ZOHO_MINUTES; i++) {
        cJSON *pair;

        if (z->credit_used[i] == 0 ||
            z->credit_min[i] <= now - RF__ZOHO_MINUTES) {
            continue;
        }
        pair = cJSON_CreateArray();
        if (pair == NULL || !cJSON_AddItemToArray(arr, pair)) {
            cJSON_Delete(pair);
            goto out;
        }
        (void)cJSON_AddItemToArray(
            pair, cJSON_CreateNumber((double)z->credit_min[i]));
        (void)cJSON_AddItemToArray(pair, cJSON_CreateNumber(z->credit_used[i]));
    }
    text = cJSON_PrintUnformatted(root);
    if (text != NULL) {
        rc = rf__zoho_save(z, "credits", "window", text, strlen(text), NULL,
                           NULL);
    }
out:
    if (rc == 0) {
        z->credits_dirty = 0;
    }
    free(text);
    cJSON_Delete(root);
}

void rf__zoho_credits_load(struct rf_zoho *z)
{
    int64_t now = minute_of(rf__zoho_now(z));
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL, *pair;

    for (size_t i = 0; i < RF__ZOHO_MINUTES; i++) {
        z->credit_min[i] = -1;
    }
    if (rf__zoho_load(z, "credits", "window", &text, &len) != 0 ||
        rf__zoho_json_parse(text, len, &root) != 0) {
        goto out;
    }
    cJSON_ArrayForEach(pair, cJSON_GetObjectItem(root, "minutes"))
    {
        cJSON *m = cJSON_GetArrayItem(pair, 0),
              *c = cJSON_GetArrayItem(pair, 1);
        int64_t minute;

        if (!cJSON_IsNumber(m) || !cJSON_IsNumber(c) || c->valuedouble < 0) {
            continue;
        }
        minute = (int64_t)m->valuedouble;
        if (minute <= now - RF__ZOHO_MINUTES || minute > now) {
            continue;
        }
        z->credit_used[bucket(z, minute)] += (uint32_t)c->valuedouble;
    }
out:
    cJSON_Delete(root);
    free(text);
}

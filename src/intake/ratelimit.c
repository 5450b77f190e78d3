/* Token buckets in an open-addressed table with least-recently-used
 * eviction. */
#include "referee/ratelimit.h"

#include <stdlib.h>
#include <string.h>

#define KEY_MAX 128
#define PROBE 8

struct slot {
    char key[KEY_MAX];
    double tokens;
    uint64_t at_ms; /* last refill; 0: free slot */
};

struct rf_ratelimit {
    struct slot slots[RF_RATELIMIT_SLOTS];
};

struct rf_ratelimit *rf_ratelimit_new(void)
{
    return calloc(1, sizeof(struct rf_ratelimit));
}

void rf_ratelimit_free(struct rf_ratelimit *rl)
{
    free(rl);
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

/* The key's slot, or the least recently used of its probe window. */
static struct slot *find(struct rf_ratelimit *rl, const char *key, int *hit)
{
    uint32_t h = hash(key);
    struct slot *oldest = NULL;

    for (int i = 0; i < PROBE; i++) {
        struct slot *s = &rl->slots[(h + (uint32_t)i) % RF_RATELIMIT_SLOTS];

        if (s->at_ms != 0 && strncmp(s->key, key, KEY_MAX) == 0) {
            *hit = 1;
            return s;
        }
        if (oldest == NULL || s->at_ms < oldest->at_ms) {
            oldest = s;
        }
    }
    *hit = 0;
    return oldest;
}

uint64_t rf_ratelimit_take(struct rf_ratelimit *rl, const char *key,
                           unsigned per_minute, uint64_t now_ms)
{
    double rate = (double)per_minute / 60000.0; /* tokens per ms */
    int hit;
    struct slot *s = find(rl, key, &hit);

    if (now_ms == 0) {
        now_ms = 1; /* 0 marks a free slot */
    }
    if (!hit) {
        strncpy(s->key, key, KEY_MAX - 1);
        s->key[KEY_MAX - 1] = '\0';
        s->tokens = per_minute;
    } else if (now_ms > s->at_ms) {
        s->tokens += (double)(now_ms - s->at_ms) * rate;
        if (s->tokens > per_minute) {
            s->tokens = per_minute;
        }
    }
    s->at_ms = now_ms;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
        return 0;
    }
    return (uint64_t)((1.0 - s->tokens) / rate) + 1;
}

/* The script thread's own work, started and stopped with the engine. */
#include "referee/work.h"
#include "referee/crm_update.h"
#include "referee/log.h"
#include "referee/mapping.h"
#include "referee/outbox.h"
#include "referee/reward.h"

#include <stdlib.h>

struct rf_work {
    uv_timer_t closer; /* its close callback frees the rest (rf_work_stop) */
    struct rf_engine *e;
    struct rf_sync *sync;
    struct rf_outbox *ob;
    struct rf_mapping *mapping;
    struct rf_reward *reward;
};

static void on_settled(const struct rf_job *job, void *arg)
{
    struct rf_work *w = arg;

    rf_mapping_settled(w->mapping, job);
    rf_reward_settled(w->reward, job);
}

void *rf_work_start(struct rf_engine *e, uv_loop_t *loop, void *arg)
{
    struct rf_work *w = calloc(1, sizeof(*w));

    (void)arg;
    if (w == NULL) {
        return NULL;
    }
    w->e = e;
    uv_timer_init(loop, &w->closer);
    w->closer.data = w;
    w->sync = rf_sync_start(e, loop, NULL);
    if (rf_engine_store(e) != NULL && rf_engine_writer(e) != NULL) {
        w->ob = rf_outbox_start(loop, rf_engine_store(e), rf_engine_writer(e),
                                NULL);
        w->mapping = w->ob ? rf_mapping_start(e, w->ob) : NULL;
        if (w->mapping == NULL) {
            rf_log_error("work", RF_NOF,
                         "referrals cannot reach the CRM: the outbox or its "
                         "executors did not start");
        } else {
            rf_outbox_on_settled(w->ob, on_settled, w);
            rf_mapping_recover(w->mapping, NULL);
        }
        w->reward = w->ob ? rf_reward_start(e, w->ob) : NULL;
        if (w->reward == NULL) {
            rf_log_error("work", RF_NOF,
                         "rewards cannot be decided or paid: the outbox or "
                         "its executors did not start");
        } else {
            rf_reward_recover(w->reward, NULL);
        }
        if (w->ob == NULL || rf_crm_writeback_executor(w->ob, e) != 0) {
            rf_log_error("work", RF_NOF,
                         "referral codes cannot be written back to the CRM");
        }
    }
    return w;
}

void rf_work_reloaded(void *work, const char *tenant)
{
    struct rf_work *w = work;

    if (w == NULL) {
        return;
    }
    rf_sync_reloaded(w->sync, tenant);
    rf_mapping_recover(w->mapping, tenant);
    rf_reward_recover(w->reward, tenant);
}

static void on_closed(uv_handle_t *h)
{
    struct rf_work *w = h->data;

    rf_mapping_free(w->mapping);
    rf_reward_free(w->reward);
    free(w);
}

/* Stops the timers and the outbox. The engine is freed right after this
 * returns, and freeing it finishes what is in flight: the writer's queued
 * state changes call back into mapping and reward, and attempts still out
 * end with RF_ESTOPPING. So those are freed only when the loop runs again,
 * and the outbox reports no more settled jobs (a job that settles now is
 * followed up at the next start, by recovery). */
void rf_work_stop(void *work)
{
    struct rf_work *w = work;

    if (w == NULL) {
        return;
    }
    if (w->ob != NULL) {
        rf_outbox_on_settled(w->ob, NULL, NULL);
    }
    rf_outbox_stop(w->ob);
    rf_sync_stop(w->sync);
    uv_close((uv_handle_t *)&w->closer, on_closed);
}

struct rf_sync *rf_work_sync(struct rf_work *w)
{
    return w ? w->sync : NULL;
}

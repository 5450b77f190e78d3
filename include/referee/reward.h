/* Rewards and their review, on the script thread:
 *
 *   1. a referral that qualified (milestone.h) goes to the tenant's
 *      `reward(referral, referrer)` hook, which answers
 *      { actions = {...}, review = "reason" | nil, hold_days = n | nil };
 *   2. in one write transaction: with `review` the referral becomes
 *      "review" holding the actions (audit "review_requested"); otherwise
 *      each action becomes an outbox job with idempotency key
 *      "reward:<referral id>:<rule>", due after the hold, and the referral
 *      becomes "rewarded" (audit "rewarded"); no actions and no review make
 *      it "no_reward" (audit "no_reward");
 *   3. a job of kind "reward.pay" calls the action's plugin, `pay(action,
 *      key)`; one of kind "reward.crm" updates a CRM record; when a job
 *      settles, the referral records it in "rewards" (audit "paid") or in
 *      "reward_failures" (audit "reward_failed");
 *   4. an operator approves a held referral (its actions become jobs with
 *      the same keys; audit "approved" and "rewarded") or rejects it
 *      (status "review_rejected" with the reason; audit
 *      "rejected_in_review");
 *   5. a milestone that reverses (referral "reversed": true) goes to the
 *      hook once more, with referral.reversed = true; its actions become
 *      jobs with keys "clawback:<referral id>:<rule>" (audit "clawback").
 *
 * A failing hook or an answer that is not one of the above is recorded on
 * the referral ("reward_error" and "reward_version", or "clawback_error"
 * and "clawback_version") and tried again once the tenant runs another
 * script version. Every step re-reads the referral inside its write
 * transaction, so a repeat (recovery after a crash, two triggers at once)
 * changes nothing, and the outbox keys make each action happen once.
 *
 * Caveats: a referral qualified while the tenant has no `reward` hook stays
 * "qualified" until a version with one loads. A clawback cannot ask for
 * review.
 */
#ifndef REFEREE_REWARD_H
#define REFEREE_REWARD_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "referee/engine.h"
#include "referee/outbox.h"
#include "referee/store.h"

/* The C hook (rf_engine_native) that decides a referral's reward or
 * clawback when it is due: input {"id": N}. */
#define RF_REWARD_HOOK "@referral.reward"

/* Outbox job kinds. */
#define RF_REWARD_KIND_PAY "reward.pay"
#define RF_REWARD_KIND_CRM "reward.crm"

#define RF_REWARD_ACTIONS_MAX 16
#define RF_REWARD_RULE_MAX 64
#define RF_REWARD_HOLD_DAYS_MAX 365

enum rf_reward_phase { RF_REWARD_PAY = 0, RF_REWARD_CLAWBACK };

/* Checks the hook's answer for `phase`: nil, or a table with `actions` (a
 * list of at most 16 actions with distinct rules), `review` (text up to
 * 200 bytes; not for a clawback) and `hold_days` (0 to 365, fractions
 * allowed). Returns 0, or RF_EINVAL with what is wrong, naming the place
 * ("reward: actions[2].amount must be a number above 0"), in err. */
int rf_reward_check(const cJSON *answer, enum rf_reward_phase phase, char *err,
                    size_t errlen);

/* Which step referral `r` waits for with script version `version`: 1 and
 * *phase set when the hook should run for it, 0 otherwise (not
 * qualified, decided, or failed on this very version). */
int rf_reward_due(const cJSON *r, const char *version,
                  enum rf_reward_phase *phase);

/* What rf_reward_decide() did. */
struct rf_reward_outcome {
    int changed; /* the referral changed (0: decided before) */
    int jobs;    /* outbox jobs added */
};

/* Inside a write transaction: records the checked `answer` (NULL or
 * JSON null: no actions) of the hook for referral `id`, decided by
 * `version` at `at_ms`. Returns 0 (see out) or an RF_E* code. */
int rf_reward_decide(MDB_txn *txn, const struct rf_store *st,
                     const char *tenant, uint64_t id,
                     enum rf_reward_phase phase, const cJSON *answer,
                     const char *version, int64_t at_ms,
                     struct rf_reward_outcome *out);

/* Inside a write transaction: records that the hook failed for referral
 * `id` with `error` under `version` (audit "reward_hook_failed"). Returns
 * 0 or an RF_E* code. */
int rf_reward_fail(MDB_txn *txn, const struct rf_store *st, const char *tenant,
                   uint64_t id, enum rf_reward_phase phase, const char *error,
                   const char *version, int64_t at_ms);

/* Inside a write transaction: approves held referral `id`: its actions
 * become jobs (the same keys as without review), due after the hold
 * counted from the decision. Returns 0, RF_ENOTFOUND (no such referral)
 * or RF_EINVAL (not waiting for review), or an RF_E* code; *jobs (may
 * be NULL) gets how many jobs were added. */
int rf_reward_approve(MDB_txn *txn, const struct rf_store *st,
                      const char *tenant, uint64_t id, int64_t at_ms,
                      int *jobs);

/* The most characters a review rejection's reason may have. */
#define RF_REVIEW_REASON_MAX 200
/* Bytes a reason may take: four per character, and the NUL. */
#define RF_REVIEW_REASON_BYTES (RF_REVIEW_REASON_MAX * 4 + 1)

/* Whether `reason` may be kept with a rejection, the one rule of the
 * command line and the admin API: 1 to RF_REVIEW_REASON_MAX characters of
 * UTF-8 with no control characters. Returns 0, or a sentence saying what
 * is wrong. */
const char *rf_review_reason_problem(const char *reason);

/* Inside a write transaction: rejects held referral `id` with `reason`
 * (kept). Returns as rf_reward_approve(), or RF_ETOOBIG when the reason
 * fails rf_review_reason_problem(). */
int rf_reward_reject(MDB_txn *txn, const struct rf_store *st,
                     const char *tenant, uint64_t id, const char *reason,
                     int64_t at_ms);

/* Inside a write transaction: records a settled reward job (done or
 * dead) on its referral, once. Returns 0 or an RF_E* code. */
int rf_reward_settle(MDB_txn *txn, const struct rf_store *st,
                     const struct rf_job *job, int64_t at_ms);

struct rf_reward;

/* Registers the hook and the executors on `ob`. Script thread. NULL when
 * memory runs out or the outbox has no room for the executors. */
struct rf_reward *rf_reward_start(struct rf_engine *e, struct rf_outbox *ob);

/* Decides due referrals and settles finished jobs of `tenant` (NULL:
 * every tenant). Script thread. */
void rf_reward_recover(struct rf_reward *r, const char *tenant);

/* A job settled (rf_outbox_on_settled): follows up reward jobs. */
void rf_reward_settled(struct rf_reward *r, const struct rf_job *job);

void rf_reward_free(struct rf_reward *r);

#endif

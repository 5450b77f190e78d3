/* Zoho's Watch (Notifications) API: subscribe a channel, keep it alive by
 * renewing it with PATCH before it expires, and stop it.
 *
 * Channels are kept in RF_DB_ZOHO (kind "channel", name = channel id) and
 * renewed by the connection's housekeeping timer `watch_margin_s` before
 * their expiry (at most half their lifetime before); a channel Zoho no
 * longer knows (NOT_SUBSCRIBED) or that expired while referee was down is
 * subscribed again. Receiving the callbacks is the webhook listener's job.
 *
 * Caveats: Zoho caps a channel's lifetime (one day in older docs, a week in
 * newer ones) and silently gives one hour for anything longer, so the
 * default lifetime is one day. At most RF_ZOHO_CHANNELS_MAX channels per
 * tenant.
 */
#ifndef REFEREE_ZOHO_WATCH_H
#define REFEREE_ZOHO_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "referee/zoho.h"

#define RF_ZOHO_CHANNELS_MAX 32
#define RF_ZOHO_EVENTS_MAX 16

struct rf_zoho_channel {
    const char *channel_id;    /* digits, chosen by the caller */
    const char *const *events; /* "Contacts.all", "Leads.edit", ... */
    size_t n_events;
    const char *notify_url; /* where Zoho POSTs the callbacks */
    const char *token;      /* echoed in callbacks; at most 50 bytes */
    unsigned lifetime_s;    /* expiry asked for at each renewal; 0: 86400 */
    int return_affected_field_values;
};

/* Subscribes a channel and keeps renewing it. The channel is copied.
 * `done` gets Zoho's answer; on success the channel is stored. Returns 0
 * (then `done` runs once, later), RF_EINVAL (bad id, no events, token over
 * 50 bytes), RF_ELIMIT (too many channels), RF_ESTOPPING or RF_ENOMEM.
 * Loop thread. */
int rf_zoho_watch_start(struct rf_zoho *z, const struct rf_zoho_channel *ch,
                        rf_zoho_done_cb done, void *arg);

/* Renews a known channel now (housekeeping does this by itself). `done`
 * may be NULL. Returns 0, RF_ENOTFOUND, RF_EBUSY (a renewal is under way),
 * RF_ESTOPPING or RF_ENOMEM. Loop thread. */
int rf_zoho_watch_renew(struct rf_zoho *z, const char *channel_id,
                        rf_zoho_done_cb done, void *arg);

/* Unsubscribes a channel and forgets it (also when Zoho no longer knew
 * it). Returns 0, RF_ENOTFOUND, RF_ESTOPPING or RF_ENOMEM. Loop thread. */
int rf_zoho_watch_stop(struct rf_zoho *z, const char *channel_id,
                       rf_zoho_done_cb done, void *arg);

/* The expiry Zoho last confirmed for a channel, UTC seconds. Returns 0 or
 * RF_ENOTFOUND. Loop thread. */
int rf_zoho_watch_expiry(const struct rf_zoho *z, const char *channel_id,
                         int64_t *expiry);

#endif

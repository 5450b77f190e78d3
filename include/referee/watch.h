/* Watches the tenants directory and each tenant's folder, and reports a
 * tenant as changed once its files have been quiet for a moment (editors
 * write in several steps).
 *
 * Caveats: inotify watches a tenant folder and its sub-folders one level
 * down (not those whose name starts with '.'); a file deeper than that is
 * not noticed until SIGHUP. Loop thread only.
 */
#ifndef REFEREE_WATCH_H
#define REFEREE_WATCH_H

#include <uv.h>

/* Called on the loop with the id of a tenant whose files changed (or whose
 * folder appeared). */
typedef void (*rf_watch_cb)(const char *tenant, void *arg);

struct rf_watch;

/* Starts watching. `dir` is copied. NULL when the directory cannot be
 * watched (logged). Caller owns the result; stop with rf_watch_stop(). */
struct rf_watch *rf_watch_start(uv_loop_t *loop, const char *dir,
                                unsigned quiet_ms, rf_watch_cb cb, void *arg);

/* Stops watching; frees once the handles closed (the loop runs once more).
 * Accepts NULL. */
void rf_watch_stop(struct rf_watch *w);

#endif

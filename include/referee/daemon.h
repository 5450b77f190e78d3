/* The daemon: wires config, store, writer, tenants and the HTTP listener
 * onto one libuv loop, handles signals and stops gracefully.
 */
#ifndef REFEREE_DAEMON_H
#define REFEREE_DAEMON_H

#include "referee/config.h"

/* Runs the daemon until SIGINT or SIGTERM. Returns the process exit code:
 * 0 after a graceful stop, 1 when start-up failed (the reason is logged).
 * Main thread only. */
int rf_daemon_run(const struct rf_config *cfg);

#endif

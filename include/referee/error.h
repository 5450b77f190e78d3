/* Error codes shared by every module of referee.
 *
 * A function that can fail returns 0 or a negative code. System errors pass
 * through as -errno; referee's own codes start at -1000 so the two spaces
 * never overlap. Names and messages live in one table behind rf_strerror().
 */
#ifndef REFEREE_ERROR_H
#define REFEREE_ERROR_H

#define RF_ERRNO_MAP(X)                                                        \
    X(INVAL, -1000, "invalid argument")                                        \
    X(NOMEM, -1001, "out of memory")                                           \
    X(NOTFOUND, -1002, "not found")                                            \
    X(EXISTS, -1003, "already exists")                                         \
    X(TOOBIG, -1004, "too large")                                              \
    X(PARSE, -1005, "parse error")                                             \
    X(STORE, -1006, "storage error")                                           \
    X(SCHEMA, -1007, "incompatible data directory schema")                     \
    X(MAPFULL, -1008, "storage map full")                                      \
    X(CONFIG, -1009, "invalid configuration")                                  \
    X(SCRIPT, -1010, "script error")                                           \
    X(LIMIT, -1011, "limit exceeded")                                          \
    X(TIMEOUT, -1012, "timed out")                                             \
    X(SIGNATURE, -1013, "signature check failed")                              \
    X(STOPPING, -1014, "shutting down")                                        \
    X(HTTP, -1015, "http error")                                               \
    X(DENIED, -1016, "not allowed")                                            \
    X(BUSY, -1017, "busy")                                                     \
    X(IO, -1018, "input/output error")                                         \
    X(NOTFILE, -1019, "not a regular file")

enum rf_errno {
#define RF_ERRNO_ENUM(name, code, msg) RF_E##name = (code),
    RF_ERRNO_MAP(RF_ERRNO_ENUM)
#undef RF_ERRNO_ENUM
};

/* Returns a static message for an error code: one of ours, or -errno.
 * Never returns NULL. Any thread may call it. */
const char *rf_strerror(int rc);

/* Returns the symbolic name of an error code ("RF_ENOTFOUND", "ENOENT", or
 * "unknown"). Never returns NULL. Any thread may call it. */
const char *rf_err_name(int rc);

#endif

/* The one table of referee's error codes, names and messages. */
#include "referee/error.h"

#include <string.h>

const char *rf_strerror(int rc)
{
    switch (rc) {
#define RF_ERRNO_MSG(name, code, msg)                                          \
    case code:                                                                 \
        return msg;
        RF_ERRNO_MAP(RF_ERRNO_MSG)
#undef RF_ERRNO_MSG
    default:
        break;
    }
    if (rc < 0 && rc > -1000) {
        return strerror(-rc);
    }
    return "unknown error";
}

const char *rf_err_name(int rc)
{
    switch (rc) {
#define RF_ERRNO_NAME(name, code, msg)                                         \
    case code:                                                                 \
        return "RF_E" #name;
        RF_ERRNO_MAP(RF_ERRNO_NAME)
#undef RF_ERRNO_NAME
    default:
        break;
    }
    if (rc < 0 && rc > -1000) {
        return strerrorname_np(-rc) ? strerrorname_np(-rc) : "unknown";
    }
    return "unknown";
}

/* Shared between the files of the HTTP server: the request as the server
 * builds it and the accessors read it. */
#ifndef REFEREE_HTTP_INTERNAL_H
#define REFEREE_HTTP_INTERNAL_H

#include "referee/http.h"

#include <arpa/inet.h>
#include <stdint.h>

#include <microhttpd.h>

#define MAX_EXTRA_HEADERS 4
#define MAX_TRIMMED 16

enum conn_phase { PHASE_NEW, PHASE_BODY, PHASE_HANDLING, PHASE_IDLE };

/* Per connection: the phase it is in and since when, for the deadlines. */
struct conn {
    struct conn *prev, *next;
    struct MHD_Connection *mc;
    enum conn_phase phase;
    uint64_t since;
};

struct rf_http_req {
    struct rf_http_req *prev, *next;
    struct rf_http_server *srv;
    struct MHD_Connection *mc;
    struct conn *conn;
    const char *method, *path;
    char client[INET6_ADDRSTRLEN];
    char *body;
    size_t body_len, body_cap;
    size_t discarded; /* bytes past the limit read and dropped */
    int too_big;
    int dispatched;
    int suspended;
    struct MHD_Response *resp;
    unsigned status;
    const char *extra[MAX_EXTRA_HEADERS][2];
    char *extra_store[MAX_EXTRA_HEADERS][2];
    int extra_n;
    /* Header values with trailing spaces or tabs, trimmed, for
     * rf_http_header (a cache, hence written through a const request). */
    char *trimmed[MAX_TRIMMED];
    int trimmed_n;
    void *data;
};

/* Runs MHD at the next loop iteration (coalesces many resumes). */
void rf__http_defer_run(struct rf_http_server *srv);

#endif

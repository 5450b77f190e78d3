/* The Zoho simulator (tests/zoho_sim/zoho_sim.py) as a subprocess of a unit
 * test: started on a free port of 127.0.0.1 with an organisation folder,
 * driven through its /_sim control API, asked for its OAuth clients.
 * Header-only, because each unit test is one program of one file; include
 * it after <cmocka.h>. One simulator per test program. */
#ifndef REFEREE_TEST_ZOHOSIM_H
#define REFEREE_TEST_ZOHOSIM_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

static pid_t sim_pid;
static unsigned sim_port; /* set by sim_start() */
static char sim_base[64]; /* "http://127.0.0.1:PORT" */

/* An OAuth client the simulator knows. */
struct sim_client {
    char id[32];
    char secret[64];
    char refresh[128];
};

struct sim_buf {
    char *p;
    size_t n;
};

static inline size_t sim_on_bytes(char *d, size_t size, size_t nmemb, void *arg)
{
    struct sim_buf *b = arg;
    size_t n = size * nmemb;
    char *p = realloc(b->p, b->n + n + 1);

    if (p == NULL) {
        return 0;
    }
    memcpy(p + b->n, d, n);
    b->p = p;
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* Starts the simulator serving the organisation in folder `data` and waits
 * until it listens; fails the test when it cannot. Also initialises
 * libcurl (sim_stop() cleans it up). */
static inline void sim_start(const char *data)
{
    const char *src = getenv("REFEREE_SOURCE_DIR");
    char script[512], line[256] = "";
    int fds[2];
    FILE *out;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(script, sizeof(script), "%s/tests/zoho_sim/zoho_sim.py",
             src ? src : REFEREE_SOURCE_DIR);
    assert_int_equal(pipe(fds), 0);
    sim_pid = fork();
    assert_true(sim_pid >= 0);
    if (sim_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", script, "--port", "0", "--data", data,
               (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    out = fdopen(fds[0], "r");
    assert_non_null(out);
    assert_non_null(fgets(line, sizeof(line), out));
    assert_int_equal(
        sscanf(line, "listening on http://127.0.0.1:%u", &sim_port), 1);
    fclose(out);
    snprintf(sim_base, sizeof(sim_base), "http://127.0.0.1:%u", sim_port);
}

/* Stops the simulator started by sim_start(). */
static inline void sim_stop(void)
{
    int status;

    kill(sim_pid, SIGTERM);
    waitpid(sim_pid, &status, 0);
    curl_global_cleanup();
}

/* A blocking call to the simulator's control API (`path` from "/_sim/");
 * `body` is JSON or NULL. Returns the parsed answer; the caller frees it.
 * Fails the test when there is no JSON answer. */
static inline cJSON *sim(const char *method, const char *path, const char *body)
{
    CURL *e = curl_easy_init();
    struct sim_buf b = {NULL, 0};
    struct curl_slist *h =
        curl_slist_append(NULL, "Content-Type: application/json");
    char url[512];
    cJSON *j;

    snprintf(url, sizeof(url), "%s%s", sim_base, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sim_on_bytes);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    }
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    j = cJSON_Parse(b.p ? b.p : "null");
    if (j == NULL) {
        print_error("control %s %s answered: %s\n", method, path,
                    b.p ? b.p : "");
    }
    free(b.p);
    assert_non_null(j);
    return j;
}

/* sim() when the answer does not matter. */
static inline void sim_do(const char *method, const char *path,
                          const char *body)
{
    cJSON_Delete(sim(method, path, body));
}

/* A number inside a control answer, by a NULL-terminated path of object
 * keys; 0 when it is missing. */
static inline double sim_num_at(const cJSON *j, const char *const *keys)
{
    for (; *keys; keys++) {
        j = cJSON_GetObjectItemCaseSensitive(j, *keys);
    }
    return cJSON_IsNumber(j) ? j->valuedouble : 0;
}

/* The default client of data centre `dc` ("eu": 1000.SIMEU, see
 * tests/zoho_sim/README.md), read from GET /_sim/clients. */
static inline void sim_client_of(const char *dc, struct sim_client *c)
{
    cJSON *all = sim("GET", "/_sim/clients", NULL), *cl;
    char want[32];
    int found = 0;

    snprintf(want, sizeof(want), "1000.SIM%c%c", dc[0] - 32, dc[1] - 32);
    cJSON_ArrayForEach(cl, cJSON_GetObjectItem(all, "clients"))
    {
        if (strcmp(cJSON_GetObjectItem(cl, "client_id")->valuestring, want) ==
            0) {
            snprintf(c->id, sizeof(c->id), "%s", want);
            snprintf(c->secret, sizeof(c->secret), "%s",
                     cJSON_GetObjectItem(cl, "client_secret")->valuestring);
            snprintf(
                c->refresh, sizeof(c->refresh), "%s",
                cJSON_GetArrayItem(cJSON_GetObjectItem(cl, "refresh_tokens"), 0)
                    ->valuestring);
            found = 1;
        }
    }
    cJSON_Delete(all);
    assert_true(found);
}

#endif

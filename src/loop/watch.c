/* Tenant folder watching on inotify (uv_fs_event_t), debounced. */
#include "referee/watch.h"
#include "referee/log.h"
#include "referee/tenant.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SUBS_MAX 16 /* subfolders watched per tenant */

/* A watched subfolder of a tenant (secrets/, say): inotify is not
 * recursive, and file() reads from subfolders. */
struct sub {
    uv_fs_event_t ev; /* first: the close callback frees it */
    struct entry *e;
    struct sub *next;
};

struct entry {
    uv_fs_event_t ev; /* first: the close callback frees the entry */
    struct rf_watch *w;
    struct entry *next;
    struct sub *subs;
    int pending;
    uint64_t changed_at; /* uv_now() of its last change */
    char id[RF_TENANT_ID_MAX + 1];
};

struct rf_watch {
    uv_fs_event_t root; /* first */
    uv_timer_t quiet;
    uv_loop_t *loop;
    struct entry *entries;
    unsigned quiet_ms;
    rf_watch_cb cb;
    void *arg;
    int open_handles;
    char dir[4096];
};

static void watch_subs(struct rf_watch *w, struct entry *e);

/* Each tenant is reported once its own files have been quiet for
 * quiet_ms: one tenant edited without pause must not hold back the others
 * (with one timer restarted by every change, a reviewer's tenant edited
 * every 150 ms kept another's edit from loading). The timer runs until
 * the earliest pending tenant is due. */
static void touched(struct entry *e)
{
    e->pending = 1;
    e->changed_at = uv_now(e->w->loop);
    if (!uv_is_active((uv_handle_t *)&e->w->quiet)) {
        uv_timer_start(&e->w->quiet, e->w->quiet.timer_cb, e->w->quiet_ms,
                       0);
    }
}

static void on_sub_change(uv_fs_event_t *h, const char *file, int events,
                          int status)
{
    touched(((struct sub *)h)->e);
}

static void on_change(uv_fs_event_t *h, const char *file, int events,
                      int status)
{
    struct entry *e = (struct entry *)h;

    if (file != NULL && (events & UV_RENAME)) {
        watch_subs(e->w, e); /* a subfolder may have come or gone */
    }
    touched(e);
}

static struct entry *find(struct rf_watch *w, const char *id)
{
    struct entry *e = w->entries;

    while (e && strcmp(e->id, id) != 0) {
        e = e->next;
    }
    return e;
}

static void free_entry(uv_handle_t *h)
{
    free(h); /* the handle is the entry's first member */
}

static void on_closed(uv_handle_t *h);

/* Watches the tenant folder's subfolders (not those starting with '.',
 * such as a mounted secret's ..data: a change there renames an entry in
 * the subfolder itself), after letting go of the old watches. */
static void watch_subs(struct rf_watch *w, struct entry *e)
{
    char path[8192];
    struct dirent *ent;
    struct stat st;
    int n = 0;
    DIR *d;

    while (e->subs != NULL) {
        struct sub *s = e->subs;

        e->subs = s->next;
        uv_close((uv_handle_t *)&s->ev, on_closed);
    }
    snprintf(path, sizeof(path), "%s/%s", w->dir, e->id);
    d = opendir(path);
    while (d && n < SUBS_MAX && (ent = readdir(d)) != NULL) {
        struct sub *s;

        snprintf(path, sizeof(path), "%s/%s/%s", w->dir, e->id, ent->d_name);
        if (ent->d_name[0] == '.' || stat(path, &st) != 0 ||
            !S_ISDIR(st.st_mode) || (s = calloc(1, sizeof(*s))) == NULL) {
            continue;
        }
        s->e = e;
        uv_fs_event_init(w->loop, &s->ev);
        s->ev.data = w;
        w->open_handles++;
        if (uv_fs_event_start(&s->ev, on_sub_change, path, 0) != 0) {
            uv_close((uv_handle_t *)&s->ev, on_closed);
            continue;
        }
        s->next = e->subs;
        e->subs = s;
        n++;
    }
    if (d) {
        closedir(d);
    }
}

/* Watches dir/id if it is a tenant folder not yet watched; with `warn`,
 * says so when it is a folder whose name is no tenant id. */
static struct entry *add(struct rf_watch *w, const char *id, int warn)
{
    char path[8192];
    struct entry *e;
    struct stat st;

    if (find(w, id)) {
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/%s", w->dir, id);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return NULL;
    }
    if (!rf_tenant_id_valid(id, strlen(id))) {
        /* As at start-up (tenant.c), so that a folder added while running
         * is not silently left out. */
        if (warn && id[0] != '.') {
            rf_log_warn("tenant", RF_F("dir", w->dir, "folder", id),
                        "ignored: a tenant folder's name is its id: words "
                        "of a-z and 0-9 joined by single '-', at most %d "
                        "bytes",
                        RF_TENANT_ID_MAX);
        }
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    e->w = w;
    snprintf(e->id, sizeof(e->id), "%s", id);
    uv_fs_event_init(w->loop, &e->ev);
    if (uv_fs_event_start(&e->ev, on_change, path, 0) != 0) {
        rf_log_warn("watch", RF_F("tenant", id),
                    "cannot watch the folder; reload it with SIGHUP");
        uv_close((uv_handle_t *)&e->ev, free_entry);
        return NULL;
    }
    w->open_handles++;
    e->next = w->entries;
    w->entries = e;
    watch_subs(w, e);
    return e;
}

/* Watches an entry's folder again: inotify drops the watch of a removed
 * folder, so one made again under the same name needs a new one. */
static void rewatch(struct rf_watch *w, struct entry *e)
{
    char path[8192];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", w->dir, e->id);
    (void)uv_fs_event_stop(&e->ev);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
        uv_fs_event_start(&e->ev, on_change, path, 0) != 0) {
        rf_log_warn("watch", RF_F("tenant", e->id),
                    "cannot watch the folder; reload it with SIGHUP");
    }
    watch_subs(w, e);
}

/* A change in the tenants directory itself: a folder came or went. */
static void on_root(uv_fs_event_t *h, const char *file, int events,
                    int status)
{
    struct rf_watch *w = (struct rf_watch *)h;
    struct entry *e;

    if (file == NULL) {
        return;
    }
    e = add(w, file, 1);
    if (e == NULL && (e = find(w, file)) != NULL) {
        rewatch(w, e); /* removed, or removed and made again */
    }
    if (e) {
        touched(e);
    }
}

static void on_quiet(uv_timer_t *t)
{
    struct rf_watch *w = t->data;
    uint64_t now = uv_now(w->loop), next = 0;

    for (struct entry *e = w->entries; e; e = e->next) {
        uint64_t due = e->changed_at + w->quiet_ms;

        if (!e->pending) {
            continue;
        }
        if (due <= now) {
            e->pending = 0;
            w->cb(e->id, w->arg);
        } else if (next == 0 || due - now < next) {
            next = due - now;
        }
    }
    if (next > 0) {
        uv_timer_start(&w->quiet, w->quiet.timer_cb, next, 0);
    }
}

struct rf_watch *rf_watch_start(uv_loop_t *loop, const char *dir,
                                unsigned quiet_ms, rf_watch_cb cb, void *arg)
{
    struct rf_watch *w = calloc(1, sizeof(*w));
    struct dirent *ent;
    DIR *d;

    if (w == NULL) {
        return NULL;
    }
    w->loop = loop;
    w->quiet_ms = quiet_ms;
    w->cb = cb;
    w->arg = arg;
    snprintf(w->dir, sizeof(w->dir), "%s", dir);
    uv_timer_init(loop, &w->quiet);
    w->quiet.data = w;
    w->quiet.timer_cb = on_quiet;
    uv_fs_event_init(loop, &w->root);
    w->open_handles = 2;
    if (uv_fs_event_start(&w->root, on_root, dir, 0) != 0) {
        rf_log_warn("watch", RF_F("dir", dir),
                    "cannot watch the tenants directory; use SIGHUP");
    }
    d = opendir(dir);
    while (d && (ent = readdir(d)) != NULL) {
        (void)add(w, ent->d_name, 0); /* the registry warns at start */
    }
    if (d) {
        closedir(d);
    }
    return w;
}

static void on_closed(uv_handle_t *h)
{
    struct rf_watch *w = h->data;

    if (h != (uv_handle_t *)&w->root && h != (uv_handle_t *)&w->quiet) {
        free(h); /* an entry */
    }
    if (--w->open_handles == 0) {
        free(w);
    }
}

void rf_watch_stop(struct rf_watch *w)
{
    struct entry *e, *next;

    if (w == NULL) {
        return;
    }
    w->root.data = w;
    uv_close((uv_handle_t *)&w->root, on_closed);
    uv_close((uv_handle_t *)&w->quiet, on_closed);
    for (e = w->entries; e; e = next) {
        next = e->next;
        while (e->subs != NULL) {
            struct sub *s = e->subs;

            e->subs = s->next;
            uv_close((uv_handle_t *)&s->ev, on_closed);
        }
        e->ev.data = w;
        uv_close((uv_handle_t *)&e->ev, on_closed);
    }
}

/* The CPU budget of a sandbox call: a per-thread CPU-time timer whose signal
 * sets a count hook on every thread that may be running script code, so a
 * call costs nothing extra until its deadline passes. */
#include "internal.h"
#include "referee/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define BUDGET_SIGNAL (SIGRTMIN + 4)

/* One timer per OS thread, made on the thread's first call. */
struct thread_timer {
    timer_t id;
    int ready;
    struct rf_sandbox *volatile active; /* whose call runs on this thread */
};

static _Thread_local struct thread_timer tl
    __attribute__((tls_model("initial-exec")));
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int install_rc;

static void fence(void)
{
    atomic_signal_fence(memory_order_seq_cst);
}

/* Runs on every instruction of a thread after a limit hit. A thread that
 * inherited the hook but runs in a later, healthy call drops it. */
static void limit_hook(lua_State *L, lua_Debug *ar)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);

    (void)ar;
    if (sb->limit == RF__LIMIT_NONE || sb->ncalls == 0) {
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    rf__sandbox_raise_limit(L, sb);
}

void rf__sandbox_expire(struct rf_sandbox *sb, int limit)
{
    int n;

    if (sb->limit == RF__LIMIT_NONE) {
        sb->limit = limit;
    }
    sb->tainted = 1;
    fence();
    n = sb->depth;
    for (int i = 0; i < n; i++) {
        lua_State *T = sb->chain[i];

        if (T != NULL) {
            lua_sethook(T, limit_hook, LUA_MASKCOUNT, 1);
        }
    }
}

/* The timer fired. Ignores a signal that is not ours or that arrives after
 * the call ended or the timer was re-armed for a newer call. */
static void on_budget_signal(int sig, siginfo_t *si, void *uctx)
{
    int saved = errno;
    struct rf_sandbox *sb = tl.active;
    struct itimerspec left;

    (void)sig;
    (void)uctx;
    if (sb != NULL && si->si_code == SI_TIMER &&
        si->si_value.sival_ptr == (void *)&tl &&
        timer_gettime(tl.id, &left) == 0 && left.it_value.tv_sec == 0 &&
        left.it_value.tv_nsec == 0) {
        rf__sandbox_expire(sb, RF__LIMIT_CPU);
    }
    errno = saved;
}

static void on_thread_exit(void *p)
{
    struct thread_timer *t = p;

    if (t->ready) {
        (void)timer_delete(t->id);
        t->ready = 0;
    }
}

static void install(void)
{
    struct sigaction sa;
    int prc;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_budget_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(BUDGET_SIGNAL, &sa, NULL) != 0) {
        install_rc = -errno;
        return;
    }
    prc = pthread_key_create(&exit_key, on_thread_exit);
    if (prc != 0) {
        install_rc = -prc;
    }
}

/* Makes the calling thread's timer on first use. */
static int thread_timer_ready(void)
{
    struct sigevent ev;
    int prc;

    if (tl.ready) {
        return 0;
    }
    prc = pthread_once(&install_once, install);
    if (prc != 0) {
        return -prc;
    }
    if (install_rc != 0) {
        return install_rc;
    }
    memset(&ev, 0, sizeof(ev));
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = BUDGET_SIGNAL;
    ev.sigev_notify_thread_id = gettid();
    ev.sigev_value.sival_ptr = &tl;
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &tl.id) != 0) {
        return -errno;
    }
    prc = pthread_setspecific(exit_key, &tl);
    if (prc != 0) {
        (void)timer_delete(tl.id);
        return -prc;
    }
    tl.ready = 1;
    return 0;
}

/* Limitation: stock library functions that work on a whole string
 * (utf8.len, string.upper, tonumber, ...) and Lua's emergency collections
 * run to their end after the deadline, so a call can overrun its budget by
 * about 30 ms at the default 32 MiB cap; the owner sees a late RF_ELIMIT.
 * Checking inside them would mean replacing each; if tenants need tighter
 * timing, the fix is a smaller mem_max or checked versions of the worst
 * ones (docs/sandbox.md lists the measurements). */
int rf__sandbox_budget_start(struct rf_sandbox *sb)
{
    struct itimerspec its;
    int rc = thread_timer_ready();

    if (rc != 0) {
        return rc;
    }
    if (tl.active != NULL) {
        return RF_EBUSY;
    }
    sb->limit = RF__LIMIT_NONE;
    sb->depth = 0;
    tl.active = sb;
    fence();
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = sb->cpu_ms / 1000;
    its.it_value.tv_nsec = (long)(sb->cpu_ms % 1000) * 1000000L;
    if (timer_settime(tl.id, 0, &its, NULL) != 0) {
        rc = -errno;
        tl.active = NULL;
    }
    return rc;
}

void rf__sandbox_budget_stop(struct rf_sandbox *sb)
{
    /* The timer is left running: disarming costs a system call per call,
     * and the next call re-arms it anyway. If it expires before then, the
     * signal finds no active call and is ignored (on_budget_signal). */
    (void)sb;
    tl.active = NULL;
    fence();
}

uint64_t rf__sandbox_budget_used_ns(const struct rf_sandbox *sb)
{
    struct itimerspec left;
    uint64_t budget = (uint64_t)sb->cpu_ms * 1000000u, rest;

    if (!tl.ready || timer_gettime(tl.id, &left) != 0) {
        return budget;
    }
    rest = (uint64_t)left.it_value.tv_sec * 1000000000u +
           (uint64_t)left.it_value.tv_nsec;
    return rest < budget ? budget - rest : 0;
}

int rf__sandbox_push_thread(struct rf_sandbox *sb, lua_State *T)
{
    int d = sb->depth;

    if (d >= RF__SANDBOX_CHAIN_MAX) {
        return RF_ELIMIT;
    }
    sb->chain[d] = T;
    fence();
    sb->depth = d + 1;
    fence();
    if (sb->limit != RF__LIMIT_NONE) { /* the deadline passed already */
        lua_sethook(T, limit_hook, LUA_MASKCOUNT, 1);
    }
    return 0;
}

void rf__sandbox_pop_thread(struct rf_sandbox *sb, int clear)
{
    int d = sb->depth - 1;
    lua_State *T = sb->chain[d];

    sb->depth = d;
    fence();
    sb->chain[d] = NULL;
    if (clear) {
        lua_sethook(T, NULL, 0, 0);
    }
}

static void size_text(size_t n, char *buf, size_t len)
{
    if (n >= (1u << 20) && n % (1u << 20) == 0) {
        snprintf(buf, len, "%zu MiB", n >> 20);
    } else if (n >= 1024 && n % 1024 == 0) {
        snprintf(buf, len, "%zu KiB", n >> 10);
    } else {
        snprintf(buf, len, "%zu bytes", n);
    }
}

void rf__sandbox_limit_text(const struct rf_sandbox *sb, int limit, char *buf,
                            size_t len)
{
    char size[32];

    if (limit == RF__LIMIT_MEM) {
        size_text(sb->mem_max, size, sizeof(size));
        snprintf(buf, len, "memory limit of %s exceeded", size);
    } else {
        snprintf(buf, len, "cpu budget of %u ms exceeded", sb->cpu_ms);
    }
}

void rf__sandbox_where(lua_State *L, int level, char *buf, size_t len)
{
    lua_Debug ar;

    buf[0] = '\0';
    for (; level < 64 && lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(buf, len, "%s:%d:", ar.short_src, ar.currentline);
            return;
        }
    }
}

noreturn void rf__sandbox_raise_limit(lua_State *L, struct rf_sandbox *sb)
{
    char at[LUA_IDSIZE + 16];
    char text[64];

    rf__sandbox_limit_text(sb, sb->limit, text, sizeof(text));
    rf__sandbox_where(L, 0, at, sizeof(at));
    if (at[0] != '\0') {
        lua_pushfstring(L, "%s %s", at, text);
    } else {
        lua_pushstring(L, text);
    }
    lua_error(L);
    abort(); /* lua_error does not return */
}

/*
 * guard.c - the signals a run answers: SIGINT and SIGTERM stop it between
 * I/Os (and chain to the handler that was there), SIGBUS in the data path
 * ends it with an error instead of ending the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "pt_guard.h"

volatile sig_atomic_t pt_stop;
static struct sigaction prev_int, prev_term;

/* Hand a signal to the handler that was there, in its own calling
 * convention; with none (SIG_DFL), do what the default would: reinstall it
 * and raise again, so the process ends as it would have. */
static void chain(const struct sigaction *prev, int sig, siginfo_t *si, void *ctx)
{
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction)
            prev->sa_sigaction(sig, si, ctx);
    } else if (prev->sa_handler == SIG_DFL || (prev->sa_handler == SIG_IGN && sig == SIGBUS)) {
        /* a fault cannot be ignored: returning would fault again, forever */
        signal(sig, SIG_DFL);
        raise(sig);
    } else if (prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
    }
}

/* Note the stop for the C loops, then let the handler that was there (the
 * Python interpreter's) do what it does, so Python raises as usual. */
static void on_stop(int sig, siginfo_t *si, void *ctx)
{
    pt_stop = 1;
    chain(sig == SIGINT ? &prev_int : &prev_term, sig, si, ctx);
}

/*
 * Signal handlers are process-wide, and Python threads may be in pt_run at
 * the same time (the GIL is released): the first run in installs them, the
 * last one out restores what was there.  Everything else a run writes is its
 * own: the attachment (one run at a time, see `busy`) and its clones, their
 * vectors, the caller's buffers and times.  The descriptor tables are shared
 * between threads only through atomic reference counts.
 */
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static int guard_users;
static struct sigaction prev_bus;
static void on_sigbus(int sig, siginfo_t *si, void *ctx);

int pt_guard_enter(void)
{
    int rc = 0;
    pthread_mutex_lock(&guard_lock);
    if (guard_users++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sigemptyset(&sa.sa_mask);
        sa.sa_sigaction = on_stop;
        sa.sa_flags = SA_SIGINFO;
        pt_stop = 0;
        if (sigaction(SIGINT, &sa, &prev_int) || sigaction(SIGTERM, &sa, &prev_term))
            rc = -1;
        if (prev_int.sa_handler == SIG_IGN)   /* an ignored signal stays ignored */
            sigaction(SIGINT, &prev_int, NULL);
        if (prev_term.sa_handler == SIG_IGN)
            sigaction(SIGTERM, &prev_term, NULL);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;  /* so the jump leaves SIGBUS unblocked */
        if (sigaction(SIGBUS, &sa, &prev_bus))
            rc = -1;
    }
    pthread_mutex_unlock(&guard_lock);
    return rc;
}

void pt_guard_leave(void)
{
    pthread_mutex_lock(&guard_lock);
    if (--guard_users == 0) {
        sigaction(SIGINT, &prev_int, NULL);
        sigaction(SIGTERM, &prev_term, NULL);
        sigaction(SIGBUS, &prev_bus, NULL);
    }
    pthread_mutex_unlock(&guard_lock);
}

/* A SIGBUS in the data path (a file truncated under the mapping, a media
 * error on pmem) ends the run with an error instead of the process. */
__thread sigjmp_buf *pt_fault_env;
__thread void *pt_fault_addr;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    if (pt_fault_env) {
        pt_fault_addr = si->si_addr;
        siglongjmp(*pt_fault_env, 1);
    }
    /* Not ours (no guarded region in this thread): whoever was there before
     * (Python's faulthandler, say) handles it, or it kills as it would. */
    chain(&prev_bus, sig, si, ctx);
}

int pt_guarded(const struct pt_backing *b, int (*fn)(void *arg, struct pt_error *err),
               void *arg, const char *what, struct pt_error *err)
{
    sigjmp_buf env, *outer = pt_fault_env;
    int rc;

    if (pt_guard_enter()) {
        pt_guard_leave();
        return pt_set_error(err, PT_ESYS, errno, 0, "cannot install the SIGBUS guard: %s",
                            strerror(errno));
    }
    if (sigsetjmp(env, 0)) {
        const uint8_t *p = pt_fault_addr;
        pt_fault_env = outer;
        pt_guard_leave();
        if (p >= b->base && p < b->base + b->size)
            return pt_set_error(err, PT_EFAULT, EFAULT, 0,
                                "SIGBUS at byte %llu of the backing while %s: the file was "
                                "truncated under the mapping, or the medium reported an error",
                                (unsigned long long)(p - b->base), what);
        return pt_set_error(err, PT_EFAULT, EFAULT, 0, "SIGBUS at %p while %s", (void *)p, what);
    }
    pt_fault_env = &env;
    rc = fn(arg, err);
    pt_fault_env = outer;
    pt_guard_leave();
    return rc;
}

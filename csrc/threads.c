/*
 * threads.c - the threads of one call of a plan: their attachments (one
 * descriptor table, a vector each), their start behind a gate, their
 * barriers, and what the call returns.  The passes they run are run.c's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "pt_guard.h"
#include "pt_run.h"

/* Clones share everything but the vector, the counters and the flags. */
static int ensure_clones(struct pt_attachment *a, uint32_t n, struct pt_error *err)
{
    if (n > a->nclones) {
        struct pt_attachment *c = realloc(a->clones, n * sizeof(*c));
        if (!c)
            return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
        memset(c + a->nclones, 0, (n - a->nclones) * sizeof(*c));
        a->clones = c;
        a->nclones = n;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct pt_attachment *c = &a->clones[i];
        void *vec = c->vec;
        uint64_t vec_bytes = c->vec_bytes;
        *c = *a;
        c->vec = vec;
        c->vec_bytes = vec_bytes;
        c->clones = NULL;
        c->nclones = 0;
        c->ref_errors = 0;
        c->pin_stat = 0;
        c->faulted = 0;
    }
    return PT_OK;
}

/* Start the threads (SIGINT and SIGTERM stay with the caller's thread, whose
 * handler sets pt_stop for all), then join them. */
static int spawn_and_join(struct pt_run_shared *sh, struct pt_error *err)
{
    sigset_t stop, old;
    uint32_t made = 0;
    int e = 0;

    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    for (; made < sh->n; made++)
        if ((e = pthread_create(&sh->w[made].tid, NULL, pt_worker_main, &sh->w[made])) != 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_lock(&sh->gate_lock);
    sh->gate = made == sh->n ? 1 : -1;
    pthread_cond_broadcast(&sh->gate_cv);
    pthread_mutex_unlock(&sh->gate_lock);
    for (uint32_t i = 0; i < made; i++)
        pthread_join(sh->w[i].tid, NULL);
    if (made < sh->n)
        return pt_set_error(err, PT_ESYS, e, 0, "cannot start thread %u of %u: %s", made,
                            sh->n, strerror(e));
    return PT_OK;
}

/* Execute: the threads under the signal guard, in the caller's thread when
 * it is one unpinned thread. */
static int execute(struct pt_run_shared *sh, int spawn, struct pt_error *err)
{
    int rc;

    pthread_barrier_init(&sh->barrier, NULL, sh->n);
    pthread_mutex_init(&sh->gate_lock, NULL);
    pthread_cond_init(&sh->gate_cv, NULL);
    if (pt_guard_enter()) {
        rc = pt_set_error(err, PT_ESYS, errno, 0, "sigaction failed: %s", strerror(errno));
    } else if (spawn) {
        rc = spawn_and_join(sh, err);
    } else {
        pt_worker_main(&sh->w[0]);
        rc = PT_OK;
    }
    pt_guard_leave();
    pthread_cond_destroy(&sh->gate_cv);
    pthread_mutex_destroy(&sh->gate_lock);
    pthread_barrier_destroy(&sh->barrier);
    return rc;
}

/* Collect: the clones' counters into the attachment, the first failure as
 * the caller's error, or every thread's figures. */
static int collect(const struct pt_plan *p, struct pt_run_shared *sh, struct pt_thread *threads,
                   int rc, struct pt_error *err)
{
    struct pt_attachment *a = p->a;

    for (uint32_t i = 1; i < sh->n; i++) {
        a->ref_errors += sh->w[i].a->ref_errors;
        a->pin_stat += sh->w[i].a->pin_stat;
        sh->w[i].a->pin_stat = 0;
        a->faulted |= sh->w[i].a->faulted;
    }
    if (rc != PT_OK)
        return rc;
    if (sh->first_failed >= 0)
        return pt_thread_error(err, sh->n, (uint32_t)sh->first_failed,
                               &threads[sh->first_failed].err);
    for (uint32_t i = 0; i < sh->n; i++) {
        struct pt_run_stats *s = &threads[i].stats;
        s->clock_ns = p->mark_ns;
        s->bytes = p->t[i].total;
        s->ios = p->t[i].ios;
        s->entries = p->t[i].total_entries;
        s->vector_bytes = p->t[i].total_entries * sh->ops->entry_bytes;
    }
    return PT_OK;
}

/* Everything about the call, before any thread starts. */
static int check_call(const struct pt_plan *p, const struct pt_call *call,
                      const struct pt_thread *threads, uint32_t n, struct pt_error *err)
{
    const struct pt_attachment *a = p->a;

    if (n != p->n)
        return pt_set_error(err, PT_EARG, 0, 0, "the plan has %u threads, not %u", p->n, n);
    if (a->faulted)
        return pt_set_error(err, PT_EFAULT, 0, 0,
                            "an earlier run on this attachment ended in SIGBUS; detach it");
    if (a->held)
        return pt_set_error(err, PT_EARG, 0, 0,
                            "this attachment holds references from pt_hold; unhold first");
    if (call->cold_only & ~(PT_COLD_ONLY_START | PT_COLD_ONLY_FINISH))
        return pt_set_error(err, PT_EARG, 0, 0, "unknown cold_only flags %#x",
                            (unsigned)call->cold_only);
    if (call->cold_only)
        return pt_cold_check(&p->cfg, err);
    if (call->reps == 0)
        return pt_set_error(err, PT_EARG, 0, 0, "reps must be at least 1");
    for (uint32_t i = 0; i < n; i++)
        if (!threads[i].total_ns || (call->phase_reps && !threads[i].phases))
            return pt_set_error(err, PT_EARG, 0, 0, "times pointer is NULL (thread %u)", i);
    return PT_OK;
}

static int run_checked(pt_plan *p, const struct pt_call *call, struct pt_thread *threads,
                       uint32_t n, uint64_t *wall_ns, struct pt_error *err)
{
    struct pt_attachment *a = p->a;
    struct pt_run_shared sh;
    int rc;

    if ((rc = check_call(p, call, threads, n, err)) != PT_OK)
        return rc;
    if (n > 1 && (rc = ensure_clones(a, n - 1, err)) != PT_OK)
        return rc;
    memset(&sh, 0, sizeof(sh));
    sh.w = calloc(n, sizeof(*sh.w));
    if (!sh.w)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
    sh.plan = p;
    sh.ops = a->ops;
    sh.cfg = &p->cfg;
    sh.call = *call;
    sh.n = n;
    sh.first_failed = -1;
    sh.wall_ns = wall_ns;
    sh.gate = n > 1 || p->t[0].cpu >= 0 ? 0 : 1;
    for (uint32_t i = 0; i < n; i++) {
        struct pt_worker *w = &sh.w[i];
        const struct pt_plan_thread *pt = &p->t[i];
        memset(&threads[i].stats, 0, sizeof(threads[i].stats));
        memset(&threads[i].err, 0, sizeof(threads[i].err));
        w->sh = &sh;
        w->pt = pt;
        w->out = &threads[i];
        w->a = i == 0 ? a : &a->clones[i - 1];
        w->index = i;
        w->ws = (struct pt_working_set){
            .a = w->a, .ext = pt->ext, .n = pt->n, .io_bytes = pt->io_bytes, .ios = pt->ios,
            .data_base = pt->data_base, .total = pt->total, .buf = pt->buf,
            .vec_bytes = pt->max_entries * sh.ops->entry_bytes,
            .latency = threads[i].latency, .op = p->cfg.op, .index = i, .nthreads = n};
    }
    rc = collect(p, &sh, threads, execute(&sh, !sh.gate, err), err);
    free(sh.w);
    return rc;
}

int pt_plan_run(pt_plan *p, const struct pt_call *call, struct pt_thread *threads,
                uint32_t n, uint64_t *wall_ns, struct pt_error *err)
{
    uint64_t call0 = pt_now_ns();
    int rc;

    if (!p || !call || !threads)
        return pt_set_error(err, PT_EARG, 0, 0, "NULL argument");
    if (__atomic_exchange_n(&p->a->busy, 1, __ATOMIC_ACQUIRE))
        return pt_set_error(err, PT_EARG, 0, 0,
                            "this attachment is running in another thread; attach one per thread");
    rc = run_checked(p, call, threads, n, wall_ns, err);
    __atomic_store_n(&p->a->busy, 0, __ATOMIC_RELEASE);
    for (uint32_t i = 0; i < n && i < p->n; i++)
        threads[i].stats.call_ns = pt_now_ns() - call0;
    return rc;
}

int pt_run_threads(pt_attachment *a, const struct pt_run_config *cfg, const struct pt_call *call,
                   struct pt_thread *threads, uint32_t n, uint64_t *wall_ns,
                   struct pt_error *err)
{
    pt_plan *p;
    int rc = pt_plan_create(a, cfg, threads, n, &p, err);
    if (rc != PT_OK)
        return rc;
    rc = pt_plan_run(p, call, threads, n, wall_ns, err);
    pt_plan_free(p);
    return rc;
}

/*
 * run.c - the one timing discipline every design runs under, as lmbench's
 * lib_timing.c: the clock and its cost, one I/O, one repetition, the pass
 * schedule (warmup, timed, instrumented) each thread follows.  Plans,
 * threads, backings, guards, cold starts and the registry live in files of
 * their own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "pt_guard.h"
#include "pt_latency.h"
#include "pt_run.h"

/*
 * Each pass: every thread makes its own working set cold (cold cache),
 * waits at a barrier, runs one repetition (build, copy, release per I/O),
 * waits again, and writes back what it wrote (cold cache).  Timed
 * repetitions read the clock twice, around the whole repetition;
 * instrumented ones (phase_reps, interleaved) mark each phase of each I/O
 * (pt_mark_ns), for the build/copy/release split and each I/O's latency,
 * which is recorded between one I/O's last mark and the next one's first,
 * outside every phase.  Repetition r's wall time runs from the first
 * thread's start to the last one's end.
 */

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

double pt_median_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median of 255 back-to-back reads of `read`: what one costs here. */
#define MEDIAN_COST(read)                                                               \
    do {                                                                                \
        uint64_t d_[255], prev_ = read();                                               \
        for (size_t i_ = 0; i_ < 255; i_++) {                                           \
            uint64_t cur_ = read();                                                     \
            d_[i_] = cur_ - prev_;                                                      \
            prev_ = cur_;                                                               \
        }                                                                               \
        return pt_median_u64(d_, 255);                                                  \
    } while (0)

double pt_clock_cost_ns(void)
{
    MEDIAN_COST(pt_now_ns);
}

double pt_mark_cost_ns(void)
{
    MEDIAN_COST(pt_mark_ns);
}

/* build, copy, release: each phase between two marks only when `phased`
 * (a constant in each of the two instantiations below), which adds each
 * phase to t[] and gives the I/O's whole time, t3 - t0, in *io_ns. */
static inline __attribute__((always_inline)) int
one_io(const struct pt_design_ops *ops, struct pt_attachment *a, int op, struct pt_io *io,
       uint64_t t[3], uint64_t *io_ns, const int phased, struct pt_error *err)
{
    uint64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    int rc;

    if (phased)
        t0 = pt_mark_ns();
    ops->build(a, io);
    if (phased)
        t1 = pt_mark_ns();
    rc = op == PT_READ ? ops->gather(a, io, err) : ops->scatter(a, io, err);
    if (phased)
        t2 = pt_mark_ns();
    ops->release(a, io);  /* even after a failed copy: references must drop */
    if (phased) {
        t3 = pt_mark_ns();
        t[0] += t1 - t0;
        t[1] += t2 - t1;
        t[2] += t3 - t2;
        *io_ns = t3 - t0;
    }
    return rc;
}

/* One repetition of one thread: build, copy, release per I/O. */
static inline __attribute__((always_inline)) int
rep_loop(struct pt_worker *w, uint64_t t[3], const int phased, struct pt_error *err)
{
    const struct pt_design_ops *ops = w->sh->ops;
    const int op = w->sh->cfg->op;
    struct pt_attachment *a = w->a;
    const struct pt_plan_thread *pt = w->pt;
    const struct pt_extent *ext = pt->ext;
    const uint64_t *io_bytes = pt->io_bytes;
    struct pt_latency *lat = w->out->latency;
    const uint64_t n = pt->n, per_io = pt->per_io;
    uint64_t boff = 0, lines = 0, fences = 0, io_ns = 0;
    struct pt_io io;
    int rc;

    io.data_base = pt->data_base;
    io.vec = a->vec;
    io.persist = op == PT_WRITE ? w->sh->cfg->persist : PT_PERSIST_NONE;
    for (uint64_t i = 0, k = 0; i < n; i += per_io, k++) {
        io.ext = ext + i;
        io.n = n - i < per_io ? n - i : per_io;
        io.bytes = io_bytes[k];
        io.buf = pt->buf + boff;
        io.buf_off = boff;
        io.nvec = 0;
        io.lines_flushed = io.fences = 0;
        if (pt_stop)
            return pt_set_error(err, PT_EINTR, EINTR, i, "interrupted");
        if (__atomic_load_n(&w->sh->failed, __ATOMIC_RELAXED))
            return pt_set_error(err, PT_EINTR, 0, i, "stopped: another thread failed");
        rc = one_io(ops, a, op, &io, t, &io_ns, phased, err);
        if (phased && lat)
            pt_lat_record(lat, io_ns);
        if (rc != PT_OK)
            return rc;
        if (io.nvec > pt->max_entries)  /* after the fact, but never silent */
            return pt_set_error(err, PT_EREF, 0, i,
                                "%s built %llu entries, more than the %llu it reserved",
                                ops->name, (unsigned long long)io.nvec,
                                (unsigned long long)pt->max_entries);
        boff += io.bytes;
        lines += io.lines_flushed;
        fences += io.fences;
    }
    w->out->stats.lines_flushed = lines;
    w->out->stats.fences = fences;
    return pt_check_refs(a, err);
}

static __attribute__((noinline)) int run_rep_timed(struct pt_worker *w, struct pt_error *err)
{
    uint64_t unused[3];
    return rep_loop(w, unused, 0, err);
}

static __attribute__((noinline)) int run_rep_phased(struct pt_worker *w, uint64_t t[3],
                                                    struct pt_error *err)
{
    return rep_loop(w, t, 1, err);
}

/* One pass under the SIGBUS guard.  The jump lands inside the pass, so a
 * faulting thread still meets the others at the barriers.  The clock is
 * read right around the repetition, after the guard is set up. */
static int guarded_pass(struct pt_worker *w, int phased, uint64_t t[3], struct pt_error *err)
{
    sigjmp_buf env;
    int rc;

    if (sigsetjmp(env, 0)) {
        uint8_t *p = pt_fault_addr;
        const struct pt_backing *b = w->a->backing;
        pt_fault_env = NULL;
        w->end_ns = pt_now_ns();
        w->a->faulted = 1;
        if (p >= b->base && p < b->base + b->size)
            return pt_set_error(err, PT_EFAULT, EFAULT, 0,
                                "SIGBUS at byte %llu of the backing: the file was truncated under "
                                "the mapping, or the medium reported an error",
                                (unsigned long long)(p - b->base));
        return pt_set_error(err, PT_EFAULT, EFAULT, 0, "SIGBUS at %p during the run", (void *)p);
    }
    pt_fault_env = &env;
    w->start_ns = pt_now_ns();
    rc = phased ? run_rep_phased(w, t, err) : run_rep_timed(w, err);
    w->end_ns = pt_now_ns();
    pt_fault_env = NULL;
    return rc;
}

void pt_worker_fail(struct pt_worker *w)
{
    int none = -1;
    __atomic_compare_exchange_n(&w->sh->first_failed, &none, (int)w->index, 0,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    __atomic_store_n(&w->sh->failed, 1, __ATOMIC_RELEASE);
}

/* Pin, then allocate and touch the vector in the thread that will use it
 * (first touch places it on that thread's NUMA node), before any timing. */
static int worker_setup(struct pt_worker *w, struct pt_error *err)
{
    if (w->pt->cpu >= 0) {
        cpu_set_t set;
        int e;
        CPU_ZERO(&set);
        CPU_SET(w->pt->cpu, &set);
        e = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (e)
            return pt_set_error(err, PT_ESYS, e, 0, "cannot pin to CPU %d: %s", w->pt->cpu,
                                strerror(e));
    }
    return pt_ensure_vec(w->a, w->pt->max_entries, err);
}

/* The pass schedule: warmups, then timed and instrumented repetitions
 * alternating, so that drift hits both kinds alike. */
enum pass_kind { PASS_WARMUP, PASS_TIMED, PASS_PHASED };

static enum pass_kind pass_at(const struct pt_call *call, uint64_t p, uint64_t *index)
{
    uint64_t both, r;
    if (p < call->warmup) {
        *index = p;
        return PASS_WARMUP;
    }
    p -= call->warmup;
    both = 2 * (uint64_t)(call->reps < call->phase_reps ? call->reps : call->phase_reps);
    if (p < both) {
        *index = p / 2;
        return p % 2 ? PASS_PHASED : PASS_TIMED;
    }
    r = both / 2 + (p - both);
    *index = r;
    return call->reps > call->phase_reps ? PASS_TIMED : PASS_PHASED;
}

/* After a pass every thread's times are visible (barrier): thread 0 keeps
 * the wall time of a timed repetition. */
static void record_wall(struct pt_worker *w, uint64_t r)
{
    struct pt_run_shared *sh = w->sh;
    uint64_t first = w->start_ns, last = w->end_ns;
    for (uint32_t i = 1; i < sh->n; i++) {
        first = sh->w[i].start_ns < first ? sh->w[i].start_ns : first;
        last = sh->w[i].end_ns > last ? sh->w[i].end_ns : last;
    }
    sh->wall_ns[r] = last - first;
}

/* A cold_only call: the flushes a cold repetition starts and ends with. */
static void cold_only(struct pt_worker *w)
{
    const struct pt_run_config *cfg = w->sh->cfg;
    if (w->sh->call.cold_only & PT_COLD_ONLY_FINISH)
        pt_cold_finish(cfg, &w->ws, 1);
    if (w->sh->call.cold_only & PT_COLD_ONLY_START)
        pt_cold_start(cfg, &w->ws, 0);
}

void *pt_worker_main(void *arg)
{
    struct pt_worker *w = arg;
    struct pt_run_shared *sh = w->sh;
    const struct pt_run_config *cfg = sh->cfg;
    const struct pt_call *call = &sh->call;
    struct pt_error *err = &w->out->err;
    uint64_t passes = (uint64_t)call->warmup + call->reps + call->phase_reps;
    int rc, gate;

    pthread_mutex_lock(&sh->gate_lock);
    while ((gate = sh->gate) == 0)
        pthread_cond_wait(&sh->gate_cv, &sh->gate_lock);
    pthread_mutex_unlock(&sh->gate_lock);
    if (gate < 0)
        return NULL;

    if ((rc = worker_setup(w, err)) != PT_OK)
        pt_worker_fail(w);
    pthread_barrier_wait(&sh->barrier);
    if (__atomic_load_n(&sh->failed, __ATOMIC_ACQUIRE))
        return NULL;
    if (call->cold_only) {
        cold_only(w);
        return NULL;
    }
    for (uint64_t p = 0; p < passes; p++) {
        uint64_t t[3] = {0, 0, 0}, r;
        enum pass_kind kind = pass_at(call, p, &r);

        if (cfg->cache == PT_CACHE_COLD)
            pt_cold_start(cfg, &w->ws, (unsigned)p);
        pthread_barrier_wait(&sh->barrier);
        rc = guarded_pass(w, kind == PASS_PHASED, t, err);
        if (rc != PT_OK)
            pt_worker_fail(w);
        pthread_barrier_wait(&sh->barrier);
        if (__atomic_load_n(&sh->failed, __ATOMIC_ACQUIRE))
            return NULL;
        /* after the barrier: no thread's flush lands in another's timing */
        if (cfg->cache == PT_CACHE_COLD)
            pt_cold_finish(cfg, &w->ws, kind == PASS_PHASED);
        if (kind == PASS_TIMED) {
            w->out->total_ns[r] = w->end_ns - w->start_ns;
            if (w->index == 0 && sh->wall_ns)
                record_wall(w, r);
        } else if (kind == PASS_PHASED) {
            w->out->phases[r].build_ns = t[0];
            w->out->phases[r].copy_ns = t[1];
            w->out->phases[r].release_ns = t[2];
        }
    }
    if (call->probe && w->index == 0)
        pt_cold_probe(cfg, &w->ws, (unsigned)passes, &w->out->stats.probe_start_ns,
                      &w->out->stats.probe_warm_ns);
    return NULL;
}

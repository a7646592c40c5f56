/*
 * run.c - the one timing discipline every design runs under, as lmbench's
 * lib_timing.c: the pass schedule (warmup, timed, instrumented), threads and
 * their barriers, and what a run returns.  Backings, guards, cold starts and
 * the registry live in files of their own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "pt_cold.h"
#include "pt_guard.h"
#include "pt_latency.h"

/*
 * Every run, single-threaded or not, goes through the same loop.  Each pass:
 * every thread makes its own working set cold (cold cache), waits at a
 * barrier, runs one repetition (build, copy, release per I/O), and waits
 * again.  Timed repetitions read the clock twice, around the whole
 * repetition; instrumented ones (phase_reps, interleaved) read it around
 * each phase of each I/O, for the build/copy/release split and each I/O's
 * latency, which is recorded between one I/O's last read and the next
 * one's first, outside every phase.  Repetition
 * r's wall time runs from the first thread's start to the last one's end.
 * A single unpinned thread runs in the caller, with a barrier of one.
 */
struct pt_worker;

struct pt_run_shared {
    const struct pt_design_ops *ops;
    const struct pt_run_config *cfg;
    uint32_t n;
    pthread_barrier_t barrier;
    pthread_mutex_t gate_lock;   /* threads start only once all exist */
    pthread_cond_t gate_cv;
    int gate;                    /* 0 wait, 1 go, -1 give up */
    int failed;                  /* set by a failing thread; the others stop at their next I/O */
    int first_failed;            /* whose error the caller sees; -1: none */
    uint64_t *wall_ns;           /* reps entries, or NULL */
    struct pt_worker *w;
};

/* One thread of a run.  Thread 0 runs through the caller's attachment, the
 * others through clones of it: the descriptor table is shared (so reference
 * counts contend as they would between CPUs in a kernel), the vector and
 * the error counters are the thread's own. */
struct pt_worker {
    struct pt_run_shared *sh;
    struct pt_thread *t;
    struct pt_attachment *a;
    uint32_t index;
    uint64_t per_io;             /* extents per I/O */
    uint64_t *io_bytes;          /* bytes of each I/O */
    uint64_t ios, max_entries, total_entries, total;
    struct pt_working_set ws;    /* what a cold start flushes; data_base: where contiguous
                                    designs read this thread's own share */
    uint64_t start_ns, end_ns;   /* of the current repetition */
    pthread_t tid;
};

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

double pt_clock_cost_ns(void)
{
    uint64_t d[255], prev = pt_now_ns();
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        uint64_t cur = pt_now_ns();
        d[i] = cur - prev;
        prev = cur;
    }
    return pt_median_u64(d, sizeof(d) / sizeof(d[0]));
}

/* build, copy, release: the clock is read around each phase only when
 * `phased` (a constant in each of the two instantiations below), which adds
 * each phase to t[] and gives the I/O's whole time, t3 - t0, in *io_ns. */
static inline __attribute__((always_inline)) int
one_io(const struct pt_design_ops *ops, struct pt_attachment *a, int op, struct pt_io *io,
       uint64_t t[3], uint64_t *io_ns, const int phased, struct pt_error *err)
{
    uint64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    int rc;

    if (phased)
        t0 = pt_now_ns();
    ops->build(a, io);
    if (phased)
        t1 = pt_now_ns();
    rc = op == PT_READ ? ops->gather(a, io, err) : ops->scatter(a, io, err);
    if (phased)
        t2 = pt_now_ns();
    ops->release(a, io);  /* even after a failed copy: references must drop */
    if (phased) {
        t3 = pt_now_ns();
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
    const struct pt_run_config *cfg = w->sh->cfg;
    struct pt_attachment *a = w->a;
    const struct pt_extent *ext = w->t->ext;
    struct pt_latency *lat = w->t->latency;
    const uint64_t n = w->t->n, per_io = w->per_io;
    uint64_t boff = 0, lines = 0, fences = 0, io_ns = 0;
    int rc;

    for (uint64_t i = 0, k = 0; i < n; i += per_io, k++) {
        struct pt_io io;
        io.ext = ext + i;
        io.n = n - i < per_io ? n - i : per_io;
        io.bytes = w->io_bytes[k];
        io.buf = w->t->buf + boff;
        io.buf_off = boff;
        io.data_base = w->ws.data_base;
        io.vec = a->vec;
        io.nvec = 0;
        io.persist = cfg->op == PT_WRITE ? cfg->persist : PT_PERSIST_NONE;
        io.lines_flushed = io.fences = 0;
        if (pt_stop)
            return pt_set_error(err, PT_EINTR, EINTR, i, "interrupted");
        if (__atomic_load_n(&w->sh->failed, __ATOMIC_RELAXED))
            return pt_set_error(err, PT_EINTR, 0, i, "stopped: another thread failed");
        rc = one_io(ops, a, cfg->op, &io, t, &io_ns, phased, err);
        if (phased && lat)
            pt_lat_record(lat, io_ns);
        if (rc != PT_OK)
            return rc;
        if (io.nvec > w->max_entries)  /* after the fact, but never silent */
            return pt_set_error(err, PT_EREF, 0, i,
                                "%s built %llu entries, more than the %llu it reserved",
                                ops->name, (unsigned long long)io.nvec,
                                (unsigned long long)w->max_entries);
        boff += io.bytes;
        lines += io.lines_flushed;
        fences += io.fences;
    }
    w->t->stats.lines_flushed = lines;
    w->t->stats.fences = fences;
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

static void worker_fail(struct pt_worker *w)
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
    if (w->t->cpu >= 0) {
        cpu_set_t set;
        int e;
        CPU_ZERO(&set);
        CPU_SET(w->t->cpu, &set);
        e = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (e)
            return pt_set_error(err, PT_ESYS, e, 0, "cannot pin to CPU %d: %s", w->t->cpu,
                                strerror(e));
    }
    return pt_ensure_vec(w->a, w->max_entries, err);
}

/* For tests only: plan this many entries fewer than a design asks for,
 * as a design whose entries() underestimated would.  Read at planning, not
 * in the hot loop; the vector keeps a cache line of slack, so an overrun
 * by one entry is caught without writing past the allocation. */
uint64_t pt_test_underestimate;

void pt_test_set_underestimate(uint64_t entries)
{
    pt_test_underestimate = entries;
}

/* The pass schedule: warmups, then timed and instrumented repetitions
 * alternating, so that drift hits both kinds alike. */
enum pass_kind { PASS_WARMUP, PASS_TIMED, PASS_PHASED };

static enum pass_kind pass_at(const struct pt_run_config *cfg, uint64_t p, uint64_t *index)
{
    uint64_t both, r;
    if (p < cfg->warmup) {
        *index = p;
        return PASS_WARMUP;
    }
    p -= cfg->warmup;
    both = 2 * (uint64_t)(cfg->reps < cfg->phase_reps ? cfg->reps : cfg->phase_reps);
    if (p < both) {
        *index = p / 2;
        return p % 2 ? PASS_PHASED : PASS_TIMED;
    }
    r = both / 2 + (p - both);
    *index = r;
    return cfg->reps > cfg->phase_reps ? PASS_TIMED : PASS_PHASED;
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

static void *worker_main(void *arg)
{
    struct pt_worker *w = arg;
    struct pt_run_shared *sh = w->sh;
    const struct pt_run_config *cfg = sh->cfg;
    struct pt_error *err = &w->t->err;
    uint64_t passes = (uint64_t)cfg->warmup + cfg->reps + cfg->phase_reps;
    int rc, gate;

    pthread_mutex_lock(&sh->gate_lock);
    while ((gate = sh->gate) == 0)
        pthread_cond_wait(&sh->gate_cv, &sh->gate_lock);
    pthread_mutex_unlock(&sh->gate_lock);
    if (gate < 0)
        return NULL;

    if ((rc = worker_setup(w, err)) != PT_OK)
        worker_fail(w);
    pthread_barrier_wait(&sh->barrier);
    if (__atomic_load_n(&sh->failed, __ATOMIC_ACQUIRE))
        return NULL;
    if (cfg->cold_only) {
        pt_cold_start(cfg, &w->ws, 0);
        return NULL;
    }
    for (uint64_t p = 0; p < passes; p++) {
        uint64_t t[3] = {0, 0, 0}, r;
        enum pass_kind kind = pass_at(cfg, p, &r);

        if (cfg->cache == PT_CACHE_COLD)
            pt_cold_start(cfg, &w->ws, (unsigned)p);
        pthread_barrier_wait(&sh->barrier);
        rc = guarded_pass(w, kind == PASS_PHASED, t, err);
        if (rc != PT_OK)
            worker_fail(w);
        pthread_barrier_wait(&sh->barrier);
        if (__atomic_load_n(&sh->failed, __ATOMIC_ACQUIRE))
            return NULL;
        if (kind == PASS_TIMED) {
            w->t->total_ns[r] = w->end_ns - w->start_ns;
            if (w->index == 0 && sh->wall_ns)
                record_wall(w, r);
        } else if (kind == PASS_PHASED) {
            w->t->phases[r].build_ns = t[0];
            w->t->phases[r].copy_ns = t[1];
            w->t->phases[r].release_ns = t[2];
        }
    }
    if (cfg->probe && w->index == 0)
        pt_cold_probe(cfg, &w->ws, (unsigned)passes, &w->t->stats.probe_start_ns,
                      &w->t->stats.probe_warm_ns);
    return NULL;
}

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
        c->faulted = 0;
    }
    return PT_OK;
}

/* A thread's error as the caller's, naming the thread when there are several. */
static int thread_error(struct pt_error *err, uint32_t n, uint32_t i, const struct pt_error *te)
{
    if (n == 1) {
        if (err)
            *err = *te;
        return te->code;
    }
    return pt_set_error(err, te->code, te->sys_errno, te->index, "thread %u: %.200s", i, te->msg);
}

/* Per-thread checks and bookkeeping: validation, I/O sizes, vector entries. */
static int plan_thread(struct pt_worker *w, const struct pt_attachment *a,
                       struct pt_error *te)
{
    const struct pt_design_ops *ops = w->sh->ops;
    struct pt_thread *t = w->t;
    uint64_t n = t->n;
    int rc;

    if (!t->buf)
        return pt_set_error(te, PT_EINVAL, 0, 0, "buffer pointer is NULL");
    if (!t->total_ns || (w->sh->cfg->phase_reps && !t->phases))
        return pt_set_error(te, PT_EARG, 0, 0, "times pointer is NULL");
    if (t->cpu < -1 || t->cpu >= CPU_SETSIZE)
        return pt_set_error(te, PT_EARG, 0, 0, "CPU %d is out of range (0 to %d, or -1)",
                            t->cpu, CPU_SETSIZE - 1);
    if ((rc = pt_validate(a, t->ext, n, t->buf_bytes, &w->total, te)) != PT_OK)
        return rc;
    w->per_io = w->sh->cfg->segs_per_io ? w->sh->cfg->segs_per_io : n;
    w->io_bytes = calloc(n / w->per_io + 1, sizeof(*w->io_bytes));
    if (!w->io_bytes)
        return pt_set_error(te, PT_ENOMEM, ENOMEM, 0, "out of memory");
    for (uint64_t i = 0; i < n; i += w->per_io) {
        uint64_t k = n - i < w->per_io ? n - i : w->per_io;
        uint64_t e = ops->entries(a, t->ext + i, k);
        e -= e > pt_test_underestimate ? pt_test_underestimate : 0;
        w->max_entries = e > w->max_entries ? e : w->max_entries;
        w->total_entries += e;
        if (k == n)
            w->io_bytes[w->ios] = w->total;
        else
            for (uint64_t j = i; j < i + k; j++)
                w->io_bytes[w->ios] += t->ext[j].len;
        w->ios++;
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
        if ((e = pthread_create(&sh->w[made].tid, NULL, worker_main, &sh->w[made])) != 0)
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

static int run_threads_checked(pt_attachment *a, const struct pt_run_config *cfg,
                               struct pt_thread *threads, uint32_t n, uint64_t *wall_ns,
                               struct pt_error *err);

int pt_run_threads(pt_attachment *a, const struct pt_run_config *cfg,
                   struct pt_thread *threads, uint32_t nthreads, uint64_t *wall_ns,
                   struct pt_error *err)
{
    uint64_t call0 = pt_now_ns();
    int rc;

    if (!a || !cfg || !threads)
        return pt_set_error(err, PT_EARG, 0, 0, "NULL argument");
    if (nthreads == 0 || nthreads > PT_MAX_THREADS)
        return pt_set_error(err, PT_EARG, 0, 0, "threads must be 1 to %d (got %u)",
                            PT_MAX_THREADS, nthreads);
    if (__atomic_exchange_n(&a->busy, 1, __ATOMIC_ACQUIRE))
        return pt_set_error(err, PT_EARG, 0, 0,
                            "this attachment is running in another thread; attach one per thread");
    rc = run_threads_checked(a, cfg, threads, nthreads, wall_ns, err);
    __atomic_store_n(&a->busy, 0, __ATOMIC_RELEASE);
    for (uint32_t i = 0; i < nthreads; i++)
        threads[i].stats.call_ns = pt_now_ns() - call0;
    return rc;
}

int pt_run(pt_attachment *a, const struct pt_run_config *cfg,
           const struct pt_extent *ext, uint64_t n,
           uint8_t *buf, uint64_t buf_bytes,
           uint64_t *total_ns, struct pt_rep_times *phases, struct pt_run_stats *stats,
           struct pt_error *err)
{
    struct pt_thread t;
    int rc;

    if (!stats)
        return pt_set_error(err, PT_EARG, 0, 0, "NULL argument");
    memset(&t, 0, sizeof(t));
    t.ext = ext;
    t.n = n;
    t.buf = buf;
    t.buf_bytes = buf_bytes;
    t.cpu = -1;
    t.total_ns = total_ns;
    t.phases = phases;
    rc = pt_run_threads(a, cfg, &t, 1, NULL, err);
    *stats = t.stats;
    return rc;
}

/* Check: everything about the call that does not depend on the extents. */
static int check_run(const pt_attachment *a, const struct pt_run_config *cfg,
                     struct pt_error *err)
{
    const char *missing;
    int rc;

    if (a->faulted)
        return pt_set_error(err, PT_EFAULT, 0, 0,
                            "an earlier run on this attachment ended in SIGBUS; detach it");
    if (cfg->op != PT_READ && cfg->op != PT_WRITE)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown op %d", cfg->op);
    if (cfg->cache != PT_CACHE_WARM && cfg->cache != PT_CACHE_COLD)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown cache mode %d", cfg->cache);
    if (cfg->reps == 0 && !cfg->cold_only)
        return pt_set_error(err, PT_EARG, 0, 0, "reps must be at least 1");
    if (cfg->cold_only && cfg->cache != PT_CACHE_COLD)
        return pt_set_error(err, PT_EARG, 0, 0, "cold_only needs a cold cache");
    if (cfg->cache == PT_CACHE_COLD && (rc = pt_cold_check(cfg, err)) != PT_OK)
        return rc;
    if (a->held)
        return pt_set_error(err, PT_EARG, 0, 0,
                            "this attachment holds references from pt_hold; unhold first");
    if (cfg->persist & ~(PT_PERSIST_EACH | 15) || (cfg->persist & 15) > PT_PERSIST_FENCE)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown persistence mode %d", cfg->persist);
    if (cfg->op == PT_WRITE && (missing = pt_persist_missing(cfg->persist)))
        return pt_set_error(err, PT_EARG, 0, 0,
                            "this CPU has no %s, which the persistence mode needs", missing);
    if (cfg->op == PT_WRITE && !a->backing->writable)
        return pt_set_error(err, PT_EPERM, 0, 0,
                            "the backing is mapped read-only; a scatter would write it");
    return PT_OK;
}

/* Plan: each thread's worker, its extents checked, its working set, and its
 * share of the data area for the contiguous designs. */
static int plan_workers(pt_attachment *a, struct pt_run_shared *sh, struct pt_thread *threads,
                        struct pt_error *err)
{
    struct pt_worker *w = sh->w;
    const uint32_t n = sh->n;
    uint64_t base = 0;
    int rc;

    for (uint32_t i = 0; i < n; i++) {
        struct pt_thread *t = &threads[i];
        memset(&t->stats, 0, sizeof(t->stats));
        memset(&t->err, 0, sizeof(t->err));
        w[i].sh = sh;
        w[i].t = t;
        w[i].a = i == 0 ? a : &a->clones[i - 1];
        w[i].index = i;
        if ((rc = plan_thread(&w[i], a, &t->err)) != PT_OK)
            return thread_error(err, n, i, &t->err);
        /* The memcpy roofline copies each thread's byte count from its own
         * part of the data area; the parts must fit, as one thread's must. */
        w[i].ws = (struct pt_working_set){
            .a = w[i].a, .ext = t->ext, .n = t->n, .data_base = base, .total = w[i].total,
            .buf = t->buf, .vec_bytes = w[i].max_entries * sh->ops->entry_bytes,
            .index = i, .nthreads = n};
        if (__builtin_add_overflow(base, w[i].total, &base) || base > a->data_bytes)
            return pt_set_error(err, PT_ERANGE, 0, 0,
                                "the threads' extents total more than the data area of %llu "
                                "bytes (at thread %u)", (unsigned long long)a->data_bytes, i);
    }
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
        worker_main(&sh->w[0]);
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
static int collect(pt_attachment *a, struct pt_run_shared *sh, struct pt_thread *threads,
                   double clock_ns, int rc, struct pt_error *err)
{
    const struct pt_worker *w = sh->w;

    for (uint32_t i = 1; i < sh->n; i++) {
        a->ref_errors += w[i].a->ref_errors;
        a->faulted |= w[i].a->faulted;
    }
    if (rc != PT_OK)
        return rc;
    if (sh->first_failed >= 0)
        return thread_error(err, sh->n, (uint32_t)sh->first_failed,
                            &threads[sh->first_failed].err);
    for (uint32_t i = 0; i < sh->n; i++) {
        struct pt_run_stats *s = &threads[i].stats;
        s->clock_ns = clock_ns;
        s->bytes = w[i].total;
        s->ios = w[i].ios;
        s->entries = w[i].total_entries;
        s->vector_bytes = w[i].total_entries * sh->ops->entry_bytes;
    }
    return PT_OK;
}

static int run_threads_checked(pt_attachment *a, const struct pt_run_config *cfg,
                               struct pt_thread *threads, uint32_t n, uint64_t *wall_ns,
                               struct pt_error *err)
{
    struct pt_run_shared sh;
    double clock_ns = pt_clock_cost_ns();
    int rc;

    if ((rc = check_run(a, cfg, err)) != PT_OK)
        return rc;
    if (n > 1 && (rc = ensure_clones(a, n - 1, err)) != PT_OK)
        return rc;
    memset(&sh, 0, sizeof(sh));
    sh.w = calloc(n, sizeof(*sh.w));
    if (!sh.w)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
    sh.ops = a->ops;
    sh.cfg = cfg;
    sh.n = n;
    sh.first_failed = -1;
    sh.wall_ns = wall_ns;
    sh.gate = n > 1 || threads[0].cpu >= 0 ? 0 : 1;
    rc = plan_workers(a, &sh, threads, err);
    if (rc == PT_OK)
        rc = collect(a, &sh, threads, clock_ns, execute(&sh, !sh.gate, err), err);
    for (uint32_t i = 0; i < n; i++)
        free(sh.w[i].io_bytes);
    free(sh.w);
    return rc;
}

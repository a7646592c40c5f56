/*
 * plan.c - a run checked once: the core's own copy of every thread's
 * extents, checked after it is made, each I/O's bytes and entries, and the
 * cost of a phase mark, all before any timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "pt_run.h"

/* For tests only: plan this many entries fewer than a design asks for,
 * as a design whose entries() underestimated would.  Read at planning, not
 * in the hot loop; the vector keeps a cache line of slack, so an overrun
 * by one entry is caught without writing past the allocation. */
uint64_t pt_test_underestimate;

void pt_test_set_underestimate(uint64_t entries)
{
    pt_test_underestimate = entries;
}

/* Everything about a plan that does not depend on the extents. */
static int check_config(const pt_attachment *a, const struct pt_run_config *cfg,
                        struct pt_error *err)
{
    const char *missing;
    int rc;

    if (cfg->op != PT_READ && cfg->op != PT_WRITE)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown op %d", cfg->op);
    if (cfg->cache != PT_CACHE_WARM && cfg->cache != PT_CACHE_COLD)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown cache mode %d", cfg->cache);
    if (cfg->cache == PT_CACHE_COLD && (rc = pt_cold_check(cfg, err)) != PT_OK)
        return rc;
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

/* A thread's error as the caller's, naming the thread when there are several. */
int pt_thread_error(struct pt_error *err, uint32_t n, uint32_t i, const struct pt_error *te)
{
    if (n == 1) {
        if (err)
            *err = *te;
        return te->code;
    }
    return pt_set_error(err, te->code, te->sys_errno, te->index, "thread %u: %.200s", i, te->msg);
}

/* One thread: its extents copied and checked, its buffer, and each I/O's
 * bytes and vector entries. */
static int plan_thread(struct pt_plan *p, struct pt_plan_thread *pt, const struct pt_thread *t,
                       struct pt_error *err)
{
    const struct pt_design_ops *ops = p->a->ops;
    uint64_t per_io, n;
    int rc;

    if (!t->buf)
        return pt_set_error(err, PT_EINVAL, 0, 0, "buffer pointer is NULL");
    if (t->cpu < -1 || t->cpu >= CPU_SETSIZE)
        return pt_set_error(err, PT_EARG, 0, 0, "CPU %d is out of range (0 to %d, or -1)",
                            t->cpu, CPU_SETSIZE - 1);
    if ((rc = pt_copy_extents(p->a, t->ext, t->n, t->buf_bytes, &pt->ext, err)) != PT_OK)
        return rc;
    n = pt->n = t->n;
    pt->buf = t->buf;
    pt->buf_bytes = t->buf_bytes;
    pt->cpu = t->cpu;
    if ((rc = pt_validate(p->a, pt->ext, n, t->buf_bytes, &pt->total, err)) != PT_OK)
        return rc;
    per_io = p->cfg.segs_per_io && p->cfg.segs_per_io < n ? p->cfg.segs_per_io : n;
    pt->per_io = per_io;
    pt->io_bytes = aligned_alloc(PT_CACHELINE, ((n / per_io + 1) * sizeof(*pt->io_bytes) +
                                                PT_CACHELINE - 1) & ~(uint64_t)(PT_CACHELINE - 1));
    if (!pt->io_bytes)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
    memset(pt->io_bytes, 0, (n / per_io + 1) * sizeof(*pt->io_bytes));
    for (uint64_t i = 0; i < n; i += per_io) {
        uint64_t k = n - i < per_io ? n - i : per_io;
        uint64_t e = ops->entries(p->a, pt->ext + i, k);
        e -= e > pt_test_underestimate ? pt_test_underestimate : 0;
        pt->max_entries = e > pt->max_entries ? e : pt->max_entries;
        pt->total_entries += e;
        if (k == n)
            pt->io_bytes[pt->ios] = pt->total;
        else
            for (uint64_t j = i; j < i + k; j++)
                pt->io_bytes[pt->ios] += pt->ext[j].len;
        pt->ios++;
    }
    return PT_OK;
}

int pt_plan_create(pt_attachment *a, const struct pt_run_config *cfg,
                   const struct pt_thread *threads, uint32_t n, pt_plan **out,
                   struct pt_error *err)
{
    struct pt_plan *p;
    uint64_t base = 0;
    int rc;

    if (out)
        *out = NULL;
    if (!a || !cfg || !threads || !out)
        return pt_set_error(err, PT_EARG, 0, 0, "NULL argument");
    if (n == 0 || n > PT_MAX_THREADS)
        return pt_set_error(err, PT_EARG, 0, 0, "threads must be 1 to %d (got %u)",
                            PT_MAX_THREADS, n);
    if ((rc = check_config(a, cfg, err)) != PT_OK)
        return rc;
    p = calloc(1, sizeof(*p) + n * sizeof(p->t[0]));
    if (!p)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
    p->a = a;
    p->cfg = *cfg;
    p->n = n;
    for (uint32_t i = 0; i < n; i++) {
        struct pt_error te;
        memset(&te, 0, sizeof(te));
        if ((rc = plan_thread(p, &p->t[i], &threads[i], &te)) != PT_OK) {
            pt_plan_free(p);
            return pt_thread_error(err, n, i, &te);
        }
        /* The memcpy roofline copies each thread's byte count from its own
         * part of the data area; the parts must fit, as one thread's must. */
        p->t[i].data_base = base;
        if (__builtin_add_overflow(base, p->t[i].total, &base) || base > a->data_bytes) {
            pt_plan_free(p);
            return pt_set_error(err, PT_ERANGE, 0, 0,
                                "the threads' extents total more than the data area of %llu "
                                "bytes (at thread %u)", (unsigned long long)a->data_bytes, i);
        }
    }
    p->mark_ns = pt_mark_cost_ns();
    *out = p;
    return PT_OK;
}

void pt_plan_free(pt_plan *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->n; i++) {
        free(p->t[i].ext);
        free(p->t[i].io_bytes);
    }
    free(p);
}

const struct pt_extent *pt_plan_extents(const pt_plan *p, uint32_t thread)
{
    return p && thread < p->n ? p->t[thread].ext : NULL;
}

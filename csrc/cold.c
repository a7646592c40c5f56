/*
 * cold.c - how a cold repetition starts cold, and the probe that shows it.
 *
 * Flush exactly the lines the repetition will touch (data, buffer, vector,
 * descriptors, its extents) and fence, then empty the TLB, which the
 * flushes' address translations warmed; after the repetition, write back
 * what it wrote, so the next one of any design inherits none of it.  The
 * cost follows the working set, not the LLC.  Without CLFLUSH, evict with
 * plain stores and loads over a buffer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>

#include "pt_cold.h"
#include "pt_persist.h"

/* PT_TLB_SCRUB_PAGES read-only pages of the zero page, on 4 KiB PTEs: a
 * load from each costs a TLB miss and no memory traffic (one physical page,
 * whose 64 lines stay cached). */
static uint8_t *tlb_scrub;
static pthread_once_t tlb_scrub_once = PTHREAD_ONCE_INIT;

static void tlb_scrub_init(void)
{
    uint64_t bytes = (uint64_t)PT_TLB_SCRUB_PAGES << PT_PAGE_SHIFT;
    uint8_t *p = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    madvise(p, bytes, MADV_NOHUGEPAGE);  /* a huge zero page would be one TLB entry */
    for (uint64_t off = 0; off < bytes; off += PT_PAGE_SIZE)
        (void)*(volatile uint8_t *)(p + off);
    tlb_scrub = p;
}

static void scrub_tlb(void)
{
    for (uint64_t i = 0; i < PT_TLB_SCRUB_PAGES; i++)
        (void)*(volatile uint8_t *)(tlb_scrub + (i << PT_PAGE_SHIFT) + ((i & 63) << 6));
}

static void full_fence(void)
{
#if PT_HAVE_PERSIST
    __asm__ __volatile__("mfence" ::: "memory");
#else
    __sync_synchronize();
#endif
}

uint64_t *pt_flush_log, pt_flush_log_cap, *pt_flush_log_count;

void pt_test_set_flush_log(uint64_t *log, uint64_t cap, uint64_t *count)
{
    pt_flush_log_cap = log ? cap : 0;
    pt_flush_log_count = count;
    pt_flush_log = log;
}

/* The descriptor lines a build and release of these extents touch. */
static void flush_meta(const struct pt_working_set *ws, const struct pt_flusher *f)
{
    const struct pt_design_ops *ops = ws->a->ops;
    if (ops->flush_meta) {
        ops->flush_meta(ws->a, ws->ext, ws->n, f);
    } else if (ops->flags & PT_DESIGN_REFCOUNTS) {
        const uint8_t *table = ws->a->meta;
        uintptr_t last = 0;
        for (uint64_t i = 0; i < ws->n; i++) {
            uint64_t p = ws->ext[i].off >> ops->page_shift;
            uint64_t end = (ws->ext[i].off + ws->ext[i].len - 1) >> ops->page_shift;
            for (; p <= end; p++) {
                uintptr_t line = (uintptr_t)(table + (p << ops->desc_shift) + ops->ref_off) &
                                 ~(uintptr_t)(PT_CACHELINE - 1);
                if (line != last)
                    pt_cold_flush_line(f, (const void *)line);
                last = line;
            }
        }
    }
}

/* The data lines the repetition copies from or to. */
static void flush_data(const struct pt_working_set *ws, const struct pt_flusher *f)
{
    uint8_t *const data = ws->a->data;
    if (ws->a->ops->flags & PT_DESIGN_CONTIGUOUS)
        pt_cold_flush_range(f, data + ws->data_base, ws->total);
    else
        for (uint64_t i = 0; i < ws->n; i++)
            pt_cold_flush_range(f, data + ws->ext[i].off, ws->ext[i].len);
}

static void flush_working_set(const struct pt_working_set *ws, int insn)
{
    const struct pt_flusher f = { insn };
    flush_data(ws, &f);
    pt_cold_flush_range(&f, ws->buf, ws->total);
    pt_cold_flush_range(&f, ws->a->vec, ws->vec_bytes);
    pt_cold_flush_range(&f, ws->ext, ws->n * sizeof(*ws->ext));
    pt_cold_flush_range(&f, ws->io_bytes, ws->ios * sizeof(*ws->io_bytes));
    flush_meta(ws, &f);
    full_fence();
}

/* Without CLFLUSH: write then read this thread's slice of the caller's
 * buffer line by line, with plain stores and loads; no libc, whose large
 * memset may use non-temporal stores that evict nothing. */
static void evict_slice(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                        unsigned pass)
{
    uint64_t lo = cfg->evict_bytes * ws->index / ws->nthreads & ~63ULL;
    uint64_t hi = cfg->evict_bytes * (ws->index + 1) / ws->nthreads;
    volatile uint64_t *p = (volatile uint64_t *)(cfg->evict_buf + lo);
    uint64_t lines = (hi - lo) / PT_CACHELINE, sum = 0;
    for (uint64_t i = 0; i < lines; i++)
        p[i * (PT_CACHELINE / 8)] = pass + i;
    for (uint64_t i = 0; i < lines; i++)
        sum += p[i * (PT_CACHELINE / 8)];
    __asm__ __volatile__("" : : "r"(sum) : "memory");
}

int pt_cold_check(const struct pt_run_config *cfg, struct pt_error *err)
{
    struct pt_cpu cpu;
    pt_cpu_features(&cpu);
    switch (cfg->cold_method) {
    case PT_COLD_CLFLUSHOPT:
        if (!cpu.clflushopt)
            return pt_set_error(err, PT_EARG, 0, 0, "this CPU has no CLFLUSHOPT for a cold cache");
        break;
    case PT_COLD_CLFLUSH:
        if (!cpu.clflush)
            return pt_set_error(err, PT_EARG, 0, 0, "this CPU has no CLFLUSH for a cold cache");
        break;
    case PT_COLD_EVICT:
        if (!cfg->evict_buf || cfg->evict_bytes < PT_CACHELINE)
            return pt_set_error(err, PT_EARG, 0, 0, "cold cache needs an eviction buffer");
        return PT_OK;
    default:
        return pt_set_error(err, PT_EARG, 0, 0, "unknown cold-cache method %d", cfg->cold_method);
    }
    pthread_once(&tlb_scrub_once, tlb_scrub_init);
    if (!tlb_scrub)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "cannot map the TLB scrub area");
    return PT_OK;
}

static int flush_insn(const struct pt_run_config *cfg)
{
    return cfg->cold_method == PT_COLD_CLFLUSHOPT ? PT_PERSIST_CLFLUSHOPT : PT_PERSIST_CLFLUSH;
}

void pt_cold_start(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                   unsigned pass)
{
    if (cfg->cold_method == PT_COLD_EVICT) {
        evict_slice(cfg, ws, pass);
        return;
    }
    flush_working_set(ws, flush_insn(cfg));
    scrub_tlb();
}

void pt_cold_finish(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                    int phased)
{
    struct pt_flusher f;
    if (cfg->cold_method == PT_COLD_EVICT)
        return;
    f.insn = flush_insn(cfg);
    if (ws->op == PT_WRITE)
        flush_data(ws, &f);
    else
        pt_cold_flush_range(&f, ws->buf, ws->total);
    pt_cold_flush_range(&f, ws->a->vec, ws->vec_bytes);
    flush_meta(ws, &f);
    if (phased && ws->latency)
        pt_cold_flush_range(&f, ws->latency, sizeof(*ws->latency));
    full_fence();
}

/* Zero, but the compiler cannot know it: adding (value & zero) to the next
 * address makes each probe load wait for the one before. */
static volatile uint64_t opaque_zero;

static uint64_t chase(const uint8_t *const *line, uint64_t zero)
{
    uint64_t dep = 0;
    for (unsigned k = 0; k < PT_PROBE_LINES; k++)
        dep = *(const volatile uint64_t *)(line[k] + (dep & zero));
    return dep;
}

/* The mean load of the chain: one pair of clock reads around all of it, as
 * lmbench's lat_mem_rd, so the clock's cost and jitter are spread over
 * PT_PROBE_LINES loads. */
static double chain_ns(const uint8_t *const *line, uint64_t zero, double clock_ns)
{
    uint64_t t0 = pt_now_ns(), sink = chase(line, zero), t1 = pt_now_ns();
    __asm__ __volatile__("" : : "r"(sink) : "memory");
    return ((double)(t1 - t0) - clock_ns) / PT_PROBE_LINES;
}

void pt_cold_probe(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                   unsigned pass, double *start_ns, double *warm_ns)
{
    const uint8_t *line[PT_PROBE_LINES];
    const uint64_t zero = opaque_zero;
    const double clock_ns = pt_clock_cost_ns();

    for (unsigned k = 0; k < PT_PROBE_LINES; k++) {
        const uint8_t *p;
        if (ws->a->ops->flags & PT_DESIGN_CONTIGUOUS)
            p = ws->a->data + ws->data_base + ws->total / PT_PROBE_LINES * k;
        else
            p = ws->a->data + ws->ext[k * ws->n / PT_PROBE_LINES].off;
        line[k] = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)(PT_CACHELINE - 1));
    }
    /* Visit them in a fixed shuffled order: at a constant stride the CPU's
     * stride prefetcher would fetch them ahead and hide the misses. */
    for (unsigned k = PT_PROBE_LINES - 1, x = 0x9e3779b9u; k > 0; k--) {
        const uint8_t *tmp;
        unsigned j;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        j = x % (k + 1);
        tmp = line[k];
        line[k] = line[j];
        line[j] = tmp;
    }
    if (cfg->cache == PT_CACHE_COLD)
        pt_cold_start(cfg, ws, pass);
    *start_ns = chain_ns(line, zero, clock_ns);
    *warm_ns = chain_ns(line, zero, clock_ns);
}

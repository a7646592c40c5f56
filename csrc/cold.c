/*
 * cold.c - how a cold repetition starts cold, and the probe that shows it.
 *
 * Flush exactly the lines the repetition will touch (data, buffer, vector,
 * descriptors) and fence, then empty the TLB, which the flushes' address
 * translations warmed.  The cost follows the working set, not the LLC.
 * Without CLFLUSH, evict with plain stores and loads over a buffer.
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

static void flush_working_set(const struct pt_working_set *ws, int insn)
{
    const struct pt_design_ops *ops = ws->a->ops;
    uint8_t *const data = ws->a->data;

    if (ops->flags & PT_DESIGN_CONTIGUOUS)
        pt_flush_range(data + ws->data_base, ws->total, insn);
    else
        for (uint64_t i = 0; i < ws->n; i++)
            pt_flush_range(data + ws->ext[i].off, ws->ext[i].len, insn);
    pt_flush_range(ws->buf, ws->total, insn);
    pt_flush_range(ws->a->vec, ws->vec_bytes, insn);
    if (ops->flush_meta) {
        ops->flush_meta(ws->a, ws->ext, ws->n, insn);
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
                    pt_flush_line((const void *)line, insn);
                last = line;
            }
        }
    }
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

void pt_cold_start(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                   unsigned pass)
{
    switch (cfg->cold_method) {
    case PT_COLD_CLFLUSHOPT:
        flush_working_set(ws, PT_PERSIST_CLFLUSHOPT);
        scrub_tlb();
        break;
    case PT_COLD_CLFLUSH:
        flush_working_set(ws, PT_PERSIST_CLFLUSH);
        scrub_tlb();
        break;
    default:
        evict_slice(cfg, ws, pass);
        break;
    }
}

void pt_cold_probe(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                   unsigned pass, double *start_ns, double *warm_ns)
{
    const uint8_t *line[PT_PROBE_LINES];
    uint64_t start[PT_PROBE_LINES], warm[PT_PROBE_LINES];

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
    for (int round = 0; round < 2; round++) {
        uint64_t *d = round ? warm : start;
        for (unsigned k = 0; k < PT_PROBE_LINES; k++) {
            uint64_t t0 = pt_now_ns();
            (void)*(const volatile uint64_t *)line[k];
#if defined(__x86_64__) || defined(__i386__)
            __asm__ __volatile__("lfence" ::: "memory");  /* the load completes first */
#endif
            d[k] = pt_now_ns() - t0;
        }
    }
    *start_ns = pt_median_u64(start, PT_PROBE_LINES);
    *warm_ns = pt_median_u64(warm, PT_PROBE_LINES);
}

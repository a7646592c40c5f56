/*
 * pt_cold.h - starting a repetition cold and leaving it clean (cold.c),
 * apart from the run loop.
 */
#ifndef PT_COLD_H
#define PT_COLD_H

#include "pt_persist.h"

/* What one thread's repetition touches, and its slice of an eviction buffer. */
struct pt_working_set {
    const struct pt_attachment *a;
    const struct pt_extent *ext;   /* the plan's own copy, read by every I/O */
    uint64_t n;
    const uint64_t *io_bytes;      /* the plan's, read by every I/O */
    uint64_t ios;
    uint64_t data_base;      /* PT_DESIGN_CONTIGUOUS: where this thread's bytes start */
    uint64_t total;          /* bytes the repetition copies */
    const uint8_t *buf;
    uint64_t vec_bytes;      /* of the vector it builds */
    const struct pt_latency *latency;  /* written by instrumented repetitions, or NULL */
    int op;
    uint32_t index, nthreads;
};

/* How a cold start flushes a line: the instruction, and the test log. */
struct pt_flusher {
    int insn;                /* PT_PERSIST_CLFLUSHOPT or PT_PERSIST_CLFLUSH */
};

extern uint64_t *pt_flush_log, pt_flush_log_cap, *pt_flush_log_count;

static inline void pt_cold_flush_line(const struct pt_flusher *f, const void *p)
{
    uint64_t *log = pt_flush_log;
    pt_flush_line(p, f->insn);
    if (__builtin_expect(log != NULL, 0)) {
        uint64_t i = __atomic_fetch_add(pt_flush_log_count, 1, __ATOMIC_RELAXED);
        if (i < pt_flush_log_cap)
            log[i] = (uintptr_t)p & ~(uintptr_t)(PT_CACHELINE - 1);
    }
}

static inline void pt_cold_flush_range(const struct pt_flusher *f, const void *p, uint64_t len)
{
    uintptr_t line = (uintptr_t)p & ~(uintptr_t)(PT_CACHELINE - 1);
    for (uintptr_t end = (uintptr_t)p + len; line < end; line += PT_CACHELINE)
        pt_cold_flush_line(f, (const void *)line);
}

/* The method must exist on this CPU, or have its buffer; maps the TLB scrub. */
int pt_cold_check(const struct pt_run_config *cfg, struct pt_error *err);
/* Make the working set cold, as cfg->cold_method says: everything the
 * repetition will read or write, the extents and I/O sizes it reads
 * included; pass varies the bytes an eviction writes. */
void pt_cold_start(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                   unsigned pass);
/* After a cold repetition: write back and invalidate what it wrote (its
 * vector, its counts, the buffer of a gather or the data of a scatter, an
 * instrumented repetition's histogram), so that the next repetition, of
 * whichever design, does not pay for this one's dirty lines.  Eviction
 * needs nothing: it writes everything back before each repetition. */
void pt_cold_finish(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                    int phased);
/* The mean load of a dependent chain through PT_PROBE_LINES data lines as
 * a repetition starts (after pt_cold_start when cold), then through the
 * same lines again at once; one clock read subtracted from each chain. */
void pt_cold_probe(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                   unsigned pass, double *start_ns, double *warm_ns);

#endif /* PT_COLD_H */

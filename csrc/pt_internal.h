/*
 * pt_internal.h - what the engine and the designs share.
 *
 * A design is one file that fills one struct pt_design_ops, in the spirit of
 * fio's struct ioengine_ops, and one line in designs.def.  The engine calls
 * each op once per I/O (a batch of segments), never once per segment, so
 * every hot loop below an op is the design's own.
 */
#ifndef PT_INTERNAL_H
#define PT_INTERNAL_H

#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include "pagetax.h"
#include "pt_clock.h"

#define PT_PAGE_SHIFT 12
#define PT_PAGE_SIZE (1ULL << PT_PAGE_SHIFT)
#define PT_CACHELINE 64
#define PT_MAX_FOLIO_SHIFT 21    /* a PMD: THP and PMD-mapped DAX */

/* bio_vec and friends keep lengths in 32 bits; so do all designs here. */
#define PT_MAX_SEG_LEN 0xffffffffULL

/*
 * The prefetch distances (PT_PREFETCH_AHEAD, PT_PREFETCH_DESC_AHEAD) are in
 * pagetax.h.  One discipline for all designs: a random gather of small
 * segments is bound by memory latency, and overlapping misses is the
 * optimisation every design gets alike.  A count reached through its
 * descriptor needs the descriptor first, hence the descriptor twice as far.
 */
_Static_assert(PT_PREFETCH_DESC_AHEAD == 2 * PT_PREFETCH_AHEAD,
               "descriptors are prefetched twice as far ahead as counts");

struct pt_backing {
    int fd;
    int writable;
    int map_sync;            /* MAP_SYNC held: CPU stores reach media once flushed */
    uint8_t *base;
    uint64_t size;
    /* The one attachment whose descriptors live on this backing: a second
     * would re-initialise the first's counts under it. */
    const struct pt_attachment *table_user;
};

struct pt_design_ops;
struct pt_flusher;  /* pt_cold.h */

struct pt_attachment {
    const struct pt_design_ops *ops;
    struct pt_backing *backing;
    uint8_t *data;           /* where extent offset 0 lives */
    uint64_t data_bytes;
    void *meta;              /* per-capacity descriptors, if any */
    uint64_t meta_bytes;     /* bytes allocated for them */
    uint64_t ndesc;          /* descriptors in use (PT_DESIGN_REFCOUNTS) */
    /* Where the reference counts are, for the read-back: nrefs int32s,
     * ref_stride bytes apart from ref_base (by default ndesc, one per
     * descriptor of meta; folio designs: one per folio). */
    const uint8_t *ref_base;
    uint64_t ref_stride, nrefs;
    unsigned folio_shift;    /* PT_DESIGN_FOLIOS: log2 of the folio size */
    void *folios;            /* their separately allocated folio descriptors, */
    uint64_t folios_bytes;   /* if any */
    int attach_flags;        /* enum pt_attach_flags */
    unsigned gup;            /* enum pt_gup_parts: what a grab does (pt_gup.h) */
    uint64_t pin_stat;       /* NR_FOLL_PIN_ACQUIRED + _RELEASED, this thread's */
    uint64_t pgmap_range[2]; /* PT_GUP_DEVMAP: the dev_pagemap's first and last page */
    int held;                /* pt_hold: references held by a built vector */
    uint64_t held_nvec;
    int64_t rss_delta;       /* resident memory growth across attach() */
    uint64_t ref_errors;     /* puts that found a count already at zero */
    int faulted;             /* a SIGBUS cut a run short; references may be held */
    int busy;                /* a run is under way (one thread at a time) */
    void *vec;               /* the vector, kept between runs: allocated */
    uint64_t vec_bytes;      /* and touched outside any timed phase */
    struct pt_attachment *clones;  /* threads 1.. of pt_run_threads: same table, */
    uint32_t nclones;              /* their own vectors, kept between runs */
};

/* One build -> copy -> release cycle: a request of n segments. */
struct pt_io {
    const struct pt_extent *ext;
    uint64_t n;
    uint8_t *buf;            /* this I/O's part of the packed buffer */
    uint64_t buf_off;        /* and its offset in the whole buffer */
    uint64_t data_base;      /* this thread's own part of the data area (memcpy) */
    uint64_t bytes;          /* sum of ext[].len */
    void *vec;               /* descriptor vector, built by build() */
    uint64_t nvec;
    int persist;             /* scatter: enum pt_persist | PT_PERSIST_EACH */
    uint64_t lines_flushed;  /* counted by scatter() */
    uint64_t fences;
};

struct pt_design_ops {
    const char *name;
    unsigned flags;          /* enum pt_design_flags */
    unsigned entry_bytes;
    /* PT_DESIGN_REFCOUNTS: descriptor i (2^desc_shift bytes) stands for the
     * 2^page_shift bytes of data at i << page_shift; its count is at ref_off. */
    unsigned desc_shift, page_shift, ref_off;
    /* Per-capacity state; NULL when a design keeps none. */
    int (*attach)(struct pt_attachment *a, struct pt_error *err);
    void (*detach)(struct pt_attachment *a);
    /* Static metadata for a capacity, the model that attach() must match;
     * PT_DESIGN_FOLIOS designs give metadata_folio instead. */
    void (*metadata)(uint64_t capacity, struct pt_metadata *out);
    void (*metadata_folio)(uint64_t capacity, unsigned folio_shift, struct pt_metadata *out);
    /* Cold start and finish: flush the metadata lines a build and release
     * of these extents touch; NULL: one descriptor per page_shift, at ref_off. */
    void (*flush_meta)(const struct pt_attachment *a, const struct pt_extent *ext, uint64_t n,
                       const struct pt_flusher *f);
    /* Where the data area of a backing of `size` bytes lies; NULL: all of
     * it.  Returns -1 when the backing is too small. */
    int (*layout)(uint64_t size, uint64_t *data_off, uint64_t *data_bytes);
    /* Upper bound of entries build() makes for these extents; `a` may be
     * NULL (pt_design_entries), so it must depend on the extents alone. */
    uint64_t (*entries)(const struct pt_attachment *a, const struct pt_extent *ext,
                        uint64_t n);
    void (*build)(struct pt_attachment *a, struct pt_io *io);
    /* backing -> buffer, and buffer -> backing. */
    int (*gather)(struct pt_attachment *a, struct pt_io *io, struct pt_error *err);
    int (*scatter)(struct pt_attachment *a, struct pt_io *io, struct pt_error *err);
    void (*release)(struct pt_attachment *a, struct pt_io *io);
};

/* Set by SIGINT/SIGTERM while a run is under way; polled between I/Os and
 * between syscalls, so that a long repetition stops within a second. */
extern volatile sig_atomic_t pt_stop;

int pt_set_error(struct pt_error *err, int code, int sys_errno, uint64_t index,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The registry's entry for a design number, or NULL (registry.c). */
const struct pt_design_ops *pt_design_ops_of(int design);
/* PT_EREF if a put ever found a count at zero or below (attach.c). */
int pt_check_refs(const struct pt_attachment *a, struct pt_error *err);
/* The caller's extents copied into memory the core owns, *out freed by the
 * caller; a count or pointer no run takes gets pt_validate's error (attach.c). */
int pt_copy_extents(const pt_attachment *a, const struct pt_extent *ext, uint64_t n,
                    uint64_t buf_bytes, struct pt_extent **out, struct pt_error *err);
/* Grow the attachment's vector to `entries` entries, touched (attach.c). */
int pt_ensure_vec(struct pt_attachment *a, uint64_t entries, struct pt_error *err);
/* run.c's planning subtracts this from every I/O's entries (tests only). */
extern uint64_t pt_test_underestimate;
/* backing.c's pt_test_set_map_hooks, read once per mapping (tests only). */
extern unsigned pt_test_map_hooks;
/* The median of n values; sorts them (run.c). */
double pt_median_u64(uint64_t *v, size_t n);

/*
 * The clock read at each phase boundary of an instrumented repetition,
 * after a full fence.  The clock read orders loads only (lfence; rdtsc), so
 * without the fence a store that misses (a gather's store into a cold
 * buffer line, a scatter's into a cold data line) waits in the store buffer
 * past the end of its phase, and the next locked instruction, a put in
 * release, waits for it: release was charged the copy's miss.  With it,
 * each phase pays for its own stores.  Its cost is part of the one
 * subtracted per phase (pt_mark_cost_ns).
 */
static inline uint64_t pt_mark_ns(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("mfence" ::: "memory");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
    return pt_now_ns();
}

/*
 * The one segment copy every design uses, so that all are on equal terms.
 * Segments of 16 to 64 bytes are two overlapping fixed-size moves, inlined:
 * a libc call per 64-byte segment costs as much as the copy itself.  Longer
 * ones go to glibc's memcpy, which picks its method by length.
 */
typedef long long pt_v16 __attribute__((vector_size(16)));

static inline void pt_copy_seg(void *dst, const void *src, uint64_t len)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (len - 16 <= 48) {  /* 16 <= len <= 64; loads first, then stores */
        pt_v16 a, b, c, e;
        uint64_t half = len <= 32 ? 16 : 32;
        memcpy(&a, s, 16);
        memcpy(&b, s + half - 16, 16);
        memcpy(&c, s + len - half, 16);
        memcpy(&e, s + len - 16, 16);
        memcpy(d, &a, 16);
        memcpy(d + half - 16, &b, 16);
        memcpy(d + len - half, &c, 16);
        memcpy(d + len - 16, &e, 16);
        return;
    }
    memcpy(d, s, len);
}

/* Prefetch the first line of a segment about to be read or written. */
static inline void pt_prefetch_read(const void *p)
{
    __builtin_prefetch(p, 0, 3);
}

/* PREFETCHW where cpuid offers it (cpu.c sets pt_cpu_prefetchw once):
 * __builtin_prefetch(p, 1, 3) is prefetcht0 unless the build targets a CPU
 * with it, and a line fetched shared must be fetched again to be written. */
extern int pt_cpu_prefetchw;

static inline void pt_prefetch_write(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    if (pt_cpu_prefetchw) {
        __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)p));
        return;
    }
#endif
    __builtin_prefetch(p, 1, 3);
}

/* An {address, length} entry: iovec-shaped, 16 bytes (vec, memcpy, libpmem). */
struct pt_span {
    uint8_t *addr;
    uint64_t len;
};

/* Build one span per extent: the `vec` builder, shared with the libpmem peers. */
void pt_build_spans(struct pt_attachment *a, struct pt_io *io);


/* Designs with no per-capacity state. */
void pt_metadata_none(uint64_t capacity, struct pt_metadata *out);
/* Designs with one vector entry per extent. */
uint64_t pt_entries_per_extent(const struct pt_attachment *a,
                               const struct pt_extent *ext, uint64_t n);
/* ops->entries, or PT_ENTRIES_INVALID for extents it cannot count
 * (pt_design_entries' checks), for callers whose extents are unvalidated. */
uint64_t pt_entries_checked(const struct pt_design_ops *ops, const struct pt_attachment *a,
                            const struct pt_extent *ext, uint64_t n);
/* Designs that hold nothing to drop at release. */
void pt_release_nothing(struct pt_attachment *a, struct pt_io *io);

#endif /* PT_INTERNAL_H */

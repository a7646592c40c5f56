/*
 * pt_loops.h - every design's copy and release loops, written once.
 *
 * As the kernel's bvec.h writes iteration once (for_each_bvec) and lets each
 * type supply its accessors, a design here names its entry type and two
 * accessors, and these macros expand the loops with them:
 *
 *   ADDR(data, table, e)  the data address entry e (a const entry_t *)
 *                         copies; data and table are the attachment's data
 *                         area and descriptor table, read once per loop
 *   LEN(e)                its length
 *   REF(e)                the first reference count entry e holds (int32_t *)
 *   NREFS(e)              how many counts it holds, STRIDE bytes apart
 *
 * Accessors are static inline functions or macros, so each expansion is a
 * loop of its own with no call or branch per segment that the design did
 * not write: prefetch the entry PT_PREFETCH_AHEAD ahead, copy, advance.
 */
#ifndef PT_LOOPS_H
#define PT_LOOPS_H

#include "pt_persist.h"

/*
 * Every reference count changes through pt_ref_add and pt_ref_sub.  A build
 * of the core with PT_COUNT_ATOMICS (the tests' counting core) counts each
 * call and its amount, so a test can tell one add of N from N adds of 1;
 * the core that measures has no counter.
 */
#ifdef PT_COUNT_ATOMICS
extern uint64_t pt_count_ops[PT_COUNT_KINDS], pt_count_amount[PT_COUNT_KINDS];
#define PT_COUNT(kind, n)                                                               \
    (__atomic_fetch_add(&pt_count_ops[kind], 1, __ATOMIC_RELAXED),                     \
     __atomic_fetch_add(&pt_count_amount[kind], (uint64_t)(n), __ATOMIC_RELAXED))
#else
#define PT_COUNT(kind, n) ((void)0)
#endif

static inline void pt_ref_add(int32_t *ref, int32_t n)
{
    PT_COUNT(PT_COUNT_REF_ADD, n);
    __atomic_fetch_add(ref, n, __ATOMIC_RELAXED);
}

/* Returns 1 when the count went to zero or below: the last put would free
 * the page; here it is a bug. */
static inline int pt_ref_sub(int32_t *ref, int32_t n)
{
    PT_COUNT(PT_COUNT_REF_SUB, n);
    return __atomic_sub_fetch(ref, n, __ATOMIC_ACQ_REL) <= 0;
}

/* get_page / put_page. */
static inline void pt_get(int32_t *ref)
{
    pt_ref_add(ref, 1);
}

static inline int pt_put(int32_t *ref)
{
    return pt_ref_sub(ref, 1);
}

/* backing -> buffer, packed. */
#define PT_GATHER_LOOP(fn, entry_t, ADDR, LEN)                                          \
    static int fn(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)      \
    {                                                                                   \
        const entry_t *v = io->vec;                                                     \
        const uint64_t nvec = io->nvec;                                                 \
        uint8_t *const data = a->data;                                                  \
        const uint8_t *const table = a->meta;                                           \
        uint8_t *dst = io->buf;                                                         \
        (void)data;                                                                     \
        (void)table;                                                                    \
        (void)err;                                                                      \
        for (uint64_t i = 0; i < nvec; i++) {                                           \
            if (i + PT_PREFETCH_AHEAD < nvec)                                           \
                pt_prefetch_read(ADDR(data, table, &v[i + PT_PREFETCH_AHEAD]));         \
            pt_copy_seg(dst, ADDR(data, table, &v[i]), LEN(&v[i]));                     \
            dst += LEN(&v[i]);                                                          \
        }                                                                               \
        return PT_OK;                                                                   \
    }

/*
 * buffer -> backing, under persistence mode `mode` and per-entry fencing
 * `each`, both constants in every caller.  STORE(dst, src, len, mode)
 * returns the lines it flushed; FENCE(mode) issues a fence and returns how
 * many it counts.
 */
#define PT_SCATTER_LOOP(fn, entry_t, ADDR, LEN, STORE, FENCE)                           \
    static inline __attribute__((always_inline)) int                                    \
    fn(struct pt_attachment *a, struct pt_io *io, const int mode, const int each)       \
    {                                                                                   \
        const entry_t *v = io->vec;                                                     \
        const uint64_t nvec = io->nvec;                                                 \
        uint8_t *const data = a->data;                                                  \
        const uint8_t *const table = a->meta;                                           \
        const uint8_t *src = io->buf;                                                   \
        uint64_t lines = 0, fences = 0;                                                 \
        (void)data;                                                                     \
        (void)table;                                                                    \
        (void)mode;                                                                     \
        for (uint64_t i = 0; i < nvec; i++) {                                           \
            if (i + PT_PREFETCH_AHEAD < nvec)                                           \
                pt_prefetch_write(ADDR(data, table, &v[i + PT_PREFETCH_AHEAD]));        \
            lines += STORE(ADDR(data, table, &v[i]), src, LEN(&v[i]), mode);            \
            if (each)                                                                   \
                fences += FENCE(mode);                                                  \
            src += LEN(&v[i]);                                                          \
        }                                                                               \
        if (!each)                                                                      \
            fences += FENCE(mode);                                                      \
        io->lines_flushed += lines;                                                     \
        io->fences += fences;                                                           \
        return PT_OK;                                                                   \
    }

/* A design's gather and scatter: pt_copy_seg, pt_store_seg and
 * pt_persist_fence, the mode made a constant per expansion. */
#define PT_COPY_OPS(name, entry_t, ADDR, LEN)                                           \
    PT_GATHER_LOOP(name##_gather, entry_t, ADDR, LEN)                                   \
    PT_SCATTER_LOOP(name##_scatter_as, entry_t, ADDR, LEN, pt_store_seg,                \
                    pt_persist_fence)                                                   \
    static int name##_scatter(struct pt_attachment *a, struct pt_io *io,                \
                              struct pt_error *err)                                     \
    {                                                                                   \
        PT_PERSIST_DISPATCH(io, err, name##_scatter_as, a, io)                          \
    }

/* Drop every pin the vector holds (pt_gup.h, defined after these loops'
 * users include it): unpin per count; PIN(e) is entry e's _pincount, or
 * NULL for small folios.  The entry's count line is prefetched as every
 * refcounting design prefetches: the descriptor twice as far ahead, the
 * count once. */
#define PT_RELEASE_OPS(name, entry_t, REF, PIN, NREFS, STRIDE)                          \
    static void name##_release(struct pt_attachment *a, struct pt_io *io)               \
    {                                                                                   \
        const entry_t *v = io->vec;                                                     \
        const uint64_t nvec = io->nvec;                                                 \
        const unsigned gup = a->gup;                                                    \
        uint64_t bad = 0, pins = 0;                                                     \
        for (uint64_t i = 0; i < nvec; i++) {                                           \
            uint8_t *ref = (uint8_t *)REF(&v[i]);                                       \
            if (i + PT_PREFETCH_DESC_AHEAD < nvec)                                      \
                pt_prefetch_read(REF(&v[i + PT_PREFETCH_DESC_AHEAD]));                  \
            if (i + PT_PREFETCH_AHEAD < nvec)                                           \
                pt_prefetch_write(REF(&v[i + PT_PREFETCH_AHEAD]));                      \
            int32_t *pin = PIN(&v[i]);                                                  \
            for (uint64_t k = 0, np = NREFS(&v[i]); k < np; k++)                        \
                bad += pt_gup_release(gup, (int32_t *)(ref + k * (STRIDE)), pin, 1, &pins); \
        }                                                                               \
        a->ref_errors += bad;                                                           \
        a->pin_stat += pins;                                                            \
    }

/* {addr, len} entries: vec, memcpy and the libpmem peers. */
static inline uint8_t *pt_span_addr(uint8_t *data, const uint8_t *table, const struct pt_span *e)
{
    (void)data;
    (void)table;
    return e->addr;
}

static inline uint64_t pt_span_len(const struct pt_span *e)
{
    return e->len;
}

/* One count per entry. */
static inline uint64_t pt_one_ref(const void *e)
{
    (void)e;
    return 1;
}

#endif /* PT_LOOPS_H */

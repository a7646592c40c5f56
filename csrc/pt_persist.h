/*
 * pt_persist.h - making scattered stores persistent, the same way for every
 * design.
 *
 * As libpmem does it: write, flush every written cache line (CLWB, else
 * CLFLUSHOPT, else CLFLUSH), then one SFENCE; or write with non-temporal
 * stores and SFENCE.  `auto` switches to non-temporal stores from 256 bytes
 * (libpmem's threshold).  The mode is a compile-time constant inside each
 * design's scatter loop (PT_PERSIST_DISPATCH): no per-segment dispatch.
 */
#ifndef PT_PERSIST_H
#define PT_PERSIST_H

#include "pt_internal.h"

#if defined(__x86_64__)
#include <emmintrin.h>
#define PT_HAVE_PERSIST 1
#else
#define PT_HAVE_PERSIST 0
#endif

#define PT_NT_THRESHOLD 256  /* libpmem: movnt from 256 bytes */

static inline void pt_flush_line(const void *p, int insn)
{
#if PT_HAVE_PERSIST
    switch (insn) {
    case PT_PERSIST_CLWB:
        __asm__ __volatile__("clwb %0" : "+m"(*(volatile char *)p));
        break;
    case PT_PERSIST_CLFLUSHOPT:
        __asm__ __volatile__("clflushopt %0" : "+m"(*(volatile char *)p));
        break;
    default:
        __asm__ __volatile__("clflush %0" : "+m"(*(volatile char *)p));
        break;
    }
#else
    (void)p;
    (void)insn;
#endif
}

static inline void pt_sfence(void)
{
#if PT_HAVE_PERSIST
    __asm__ __volatile__("sfence" ::: "memory");
#endif
}

/* Flush the lines [p, p + len) touches; returns how many. */
static inline uint64_t pt_flush_range(const void *p, uint64_t len, int insn)
{
    uintptr_t line = (uintptr_t)p & ~(uintptr_t)(PT_CACHELINE - 1);
    uintptr_t end = (uintptr_t)p + len;
    uint64_t n = 0;
    for (; line < end; line += PT_CACHELINE, n++)
        pt_flush_line((const void *)line, insn);
    return n;
}

/* Non-temporal copy: 16-byte streaming stores for the aligned body; an
 * unaligned head or tail is stored normally and flushed with `insn`.
 * Returns the lines flushed (0 when dst and len are 16-byte aligned). */
static inline uint64_t pt_copy_nt(uint8_t *d, const uint8_t *s, uint64_t len, int insn)
{
    uint64_t flushed = 0;
#if PT_HAVE_PERSIST
    uint64_t head = (16 - ((uintptr_t)d & 15)) & 15;
    if (head) {
        head = head < len ? head : len;
        memcpy(d, s, head);
        flushed += pt_flush_range(d, head, insn);
        d += head;
        s += head;
        len -= head;
    }
    for (; len >= 64; d += 64, s += 64, len -= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
        _mm_stream_si128((__m128i *)d, a);
        _mm_stream_si128((__m128i *)(d + 16), b);
        _mm_stream_si128((__m128i *)(d + 32), c);
        _mm_stream_si128((__m128i *)(d + 48), e);
    }
    for (; len >= 16; d += 16, s += 16, len -= 16)
        _mm_stream_si128((__m128i *)d, _mm_loadu_si128((const __m128i *)s));
#endif
    if (len) {
        memcpy(d, s, len);
        flushed += pt_flush_range(d, len, insn);
    }
    return flushed;
}

/*
 * Store one segment of a scatter under persistence mode `mode` (a constant
 * in every caller); returns the cache lines it flushed.
 */
static inline uint64_t pt_store_seg(uint8_t *dst, const uint8_t *src, uint64_t len, const int mode)
{
    switch (mode) {
    case PT_PERSIST_CLWB:
    case PT_PERSIST_CLFLUSHOPT:
    case PT_PERSIST_CLFLUSH:
        pt_copy_seg(dst, src, len);
        return pt_flush_range(dst, len, mode);
    case PT_PERSIST_NT:
        return pt_copy_nt(dst, src, len, PT_PERSIST_CLFLUSH);
    case PT_PERSIST_AUTO_CLWB:
    case PT_PERSIST_AUTO_CLFLUSHOPT:
    case PT_PERSIST_AUTO_CLFLUSH: {
        int insn = mode - PT_PERSIST_AUTO_CLWB + PT_PERSIST_CLWB;
        if (len >= PT_NT_THRESHOLD)
            return pt_copy_nt(dst, src, len, insn);
        pt_copy_seg(dst, src, len);
        return pt_flush_range(dst, len, insn);
    }
    default:  /* NONE, FENCE */
        pt_copy_seg(dst, src, len);
        return 0;
    }
}

/* The fence that ends an I/O (or, with PT_PERSIST_EACH, every entry). */
static inline uint64_t pt_persist_fence(const int mode)
{
    if (mode == PT_PERSIST_NONE)
        return 0;
    pt_sfence();
    return 1;
}

/*
 * Return fn(args..., mode, each) with mode and each as constants for the
 * I/O's persistence mode: each expansion is a scatter loop of its own.
 */
#define PT_PERSIST_CASE(m, fn, ...)                                                    \
    case (m):                                                                          \
        return fn(__VA_ARGS__, (m), 0);                                                \
    case (m) | PT_PERSIST_EACH:                                                        \
        return fn(__VA_ARGS__, (m), 1);
#define PT_PERSIST_DISPATCH(io, err, fn, ...)                                          \
    switch ((io)->persist) {                                                           \
    case PT_PERSIST_NONE:                                                              \
        return fn(__VA_ARGS__, PT_PERSIST_NONE, 0);                                    \
    PT_PERSIST_CASE(PT_PERSIST_CLWB, fn, __VA_ARGS__)                                  \
    PT_PERSIST_CASE(PT_PERSIST_CLFLUSHOPT, fn, __VA_ARGS__)                            \
    PT_PERSIST_CASE(PT_PERSIST_CLFLUSH, fn, __VA_ARGS__)                               \
    PT_PERSIST_CASE(PT_PERSIST_NT, fn, __VA_ARGS__)                                    \
    PT_PERSIST_CASE(PT_PERSIST_AUTO_CLWB, fn, __VA_ARGS__)                             \
    PT_PERSIST_CASE(PT_PERSIST_AUTO_CLFLUSHOPT, fn, __VA_ARGS__)                       \
    PT_PERSIST_CASE(PT_PERSIST_AUTO_CLFLUSH, fn, __VA_ARGS__)                          \
    PT_PERSIST_CASE(PT_PERSIST_FENCE, fn, __VA_ARGS__)                                 \
    default:                                                                           \
        return pt_set_error((err), PT_EARG, 0, 0, "unknown persistence mode %d",       \
                            (io)->persist);                                            \
    }

#endif /* PT_PERSIST_H */

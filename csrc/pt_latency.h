/*
 * pt_latency.h - recording one I/O's latency (struct pt_latency, pagetax.h):
 * inline, because run.c records once per I/O of an instrumented repetition,
 * after that I/O's last clock read and before the next one's first.
 */
#ifndef PT_LATENCY_H
#define PT_LATENCY_H

#include "pt_internal.h"

#define PT_LAT_HALF (1u << (PT_LAT_SUB_BITS - 1))  /* buckets per power of two */

_Static_assert((64 - PT_LAT_SUB_BITS) * PT_LAT_HALF + 2 * PT_LAT_HALF == PT_LAT_BUCKETS,
               "PT_LAT_BUCKETS must cover every uint64_t");

/* Below 2^SUB_BITS: the value itself.  Above: e = how far the value's top
 * bit lies past SUB_BITS - 1, and the value's top SUB_BITS bits, which run
 * from PT_LAT_HALF to 2 * PT_LAT_HALF - 1, pick the bucket within the
 * power of two. */
static inline uint32_t pt_lat_index(uint64_t ns)
{
    unsigned e;
    if (ns < 2 * PT_LAT_HALF)
        return (uint32_t)ns;
    e = (unsigned)(63 - __builtin_clzll(ns)) - (PT_LAT_SUB_BITS - 1);
    return e * PT_LAT_HALF + (uint32_t)(ns >> e);
}

static inline void pt_lat_record(struct pt_latency *h, uint64_t ns)
{
    h->count[pt_lat_index(ns)]++;
    if (!h->ios || ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
    h->sum_ns += ns;
    h->ios++;
}

#endif /* PT_LATENCY_H */

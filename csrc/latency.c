/*
 * latency.c - the per-I/O latency histogram's buckets, for Python, which
 * turns counts into percentiles, and for tests; recording is pt_latency.h.
 */
#include "pt_latency.h"

uint32_t pt_latency_bucket(uint64_t ns)
{
    return pt_lat_index(ns);
}

uint64_t pt_latency_bucket_low(uint32_t i)
{
    unsigned e;
    if (i < 2 * PT_LAT_HALF)
        return i;
    if (i >= PT_LAT_BUCKETS)
        return UINT64_MAX;
    e = i / PT_LAT_HALF - 1;
    return (uint64_t)(i - e * PT_LAT_HALF) << e;
}

uint64_t pt_latency_bucket_high(uint32_t i)
{
    unsigned e;
    if (i < 2 * PT_LAT_HALF)
        return i;
    if (i >= PT_LAT_BUCKETS)
        return UINT64_MAX;
    e = i / PT_LAT_HALF - 1;
    return pt_latency_bucket_low(i) + ((1ULL << e) - 1);  /* no shift past bit 63 */
}

void pt_latency_record(struct pt_latency *h, uint64_t ns)
{
    if (h)
        pt_lat_record(h, ns);
}

/*
 * latency.c - the per-I/O latency histogram's buckets, for Python, which
 * turns counts into percentiles, and for tests; recording is pt_latency.h.
 */
#include "pt_latency.h"

uint32_t pt_latency_bucket(uint64_t ns)
{
    return pt_lat_index(ns);
}

/* Bucket i spans 2^shift values: 0 for the exact ones (pt_lat_index). */
static unsigned bucket_shift(uint32_t i)
{
    return i < 2 * PT_LAT_HALF ? 0 : i / PT_LAT_HALF - 1;
}

uint64_t pt_latency_bucket_low(uint32_t i)
{
    unsigned e = bucket_shift(i);
    return i < PT_LAT_BUCKETS ? (uint64_t)(i - e * PT_LAT_HALF) << e : UINT64_MAX;
}

uint64_t pt_latency_bucket_high(uint32_t i)
{
    /* low plus the width, so that the last bucket's top needs no shift past bit 63 */
    return i < PT_LAT_BUCKETS ? pt_latency_bucket_low(i) + ((1ULL << bucket_shift(i)) - 1)
                              : UINT64_MAX;
}

void pt_latency_record(struct pt_latency *h, uint64_t ns)
{
    if (h)
        pt_lat_record(h, ns);
}

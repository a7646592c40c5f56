/*
 * pt_cold.h - starting a repetition cold (cold.c), apart from the run loop.
 */
#ifndef PT_COLD_H
#define PT_COLD_H

#include "pt_internal.h"

/* What one thread's repetition touches, and its slice of an eviction buffer. */
struct pt_working_set {
    const struct pt_attachment *a;
    const struct pt_extent *ext;
    uint64_t n;
    uint64_t data_base;      /* PT_DESIGN_CONTIGUOUS: where this thread's bytes start */
    uint64_t total;          /* bytes the repetition copies */
    const uint8_t *buf;
    uint64_t vec_bytes;      /* of the vector it builds */
    uint32_t index, nthreads;
};

/* The method must exist on this CPU, or have its buffer; maps the TLB scrub. */
int pt_cold_check(const struct pt_run_config *cfg, struct pt_error *err);
/* Make the working set cold, as cfg->cold_method says; pass varies the
 * bytes an eviction writes. */
void pt_cold_start(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                   unsigned pass);
/* Median load of PT_PROBE_LINES data lines as a repetition starts (after
 * pt_cold_start when cold), then the same again at once; clock read included. */
void pt_cold_probe(const struct pt_run_config *cfg, const struct pt_working_set *ws,
                   unsigned pass, double *start_ns, double *warm_ns);

#endif /* PT_COLD_H */

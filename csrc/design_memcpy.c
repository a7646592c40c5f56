/*
 * memcpy - the roofline: the same bytes in the same segment lengths as the
 * row, but contiguous, from (or to) the start of the data area (with
 * several threads, of each thread's own part of it), copied by vec's own
 * loops and pt_copy_seg.  Store strategy, prefetching and per-segment work
 * are vec's; only the addresses differ.  So "x memcpy" isolates what
 * scattered addresses and descriptors cost, on any machine.
 */
#include "pt_loops.h"

static void memcpy_build(struct pt_attachment *a, struct pt_io *io)
{
    struct pt_span *v = io->vec;
    const struct pt_extent *const ext = io->ext;  /* locals, as vec's build */
    const uint64_t n = io->n;
    /* Consecutive I/Os continue where the previous one stopped. */
    uint8_t *p = a->data + io->data_base + io->buf_off;
    for (uint64_t i = 0; i < n; i++) {
        v[i].addr = p;
        v[i].len = ext[i].len;
        p += ext[i].len;
    }
    io->nvec = n;
}

PT_COPY_OPS(memcpy, struct pt_span, pt_span_addr, pt_span_len)

const struct pt_design_ops pt_design_memcpy = {
    .name = "memcpy",
    .flags = PT_DESIGN_ROOFLINE | PT_DESIGN_CONTIGUOUS,
    .entry_bytes = sizeof(struct pt_span),
    .metadata = pt_metadata_none,
    .entries = pt_entries_per_extent,
    .build = memcpy_build,
    .gather = memcpy_gather,
    .scatter = memcpy_scatter,
    .release = pt_release_nothing,
};

/*
 * vec - raw (address, length) entries, the iovec / phys_vec shape.
 * No per-capacity state: the address is all the copy needs.
 */
#include "pt_loops.h"

_Static_assert(sizeof(struct pt_span) == 16, "iovec-sized entry");

void pt_build_spans(struct pt_attachment *a, struct pt_io *io)
{
    struct pt_span *v = io->vec;
    uint8_t *const data = a->data;          /* locals: the stores below may alias */
    const struct pt_extent *const ext = io->ext;
    const uint64_t n = io->n;
    for (uint64_t i = 0; i < n; i++) {
        v[i].addr = data + ext[i].off;
        v[i].len = ext[i].len;
    }
    io->nvec = n;
}

PT_COPY_OPS(vec, struct pt_span, pt_span_addr, pt_span_len)

const struct pt_design_ops pt_design_vec = {
    .name = "vec",
    .flags = PT_DESIGN_BASELINE,
    .entry_bytes = sizeof(struct pt_span),
    .metadata = pt_metadata_none,
    .entries = pt_entries_per_extent,
    .build = pt_build_spans,
    .gather = vec_gather,
    .scatter = vec_scatter,
    .release = pt_release_nothing,
};

/*
 * vec - raw (address, length) entries, the iovec / phys_vec shape.
 * No per-capacity state: the address is all the copy needs.
 */
#include "pt_persist.h"

_Static_assert(sizeof(struct pt_span) == 16, "iovec-sized entry");

void pt_build_spans(struct pt_attachment *a, struct pt_io *io)
{
    struct pt_span *v = io->vec;
    for (uint64_t i = 0; i < io->n; i++) {
        v[i].addr = a->data + io->ext[i].off;
        v[i].len = io->ext[i].len;
    }
    io->nvec = io->n;
}

int pt_span_gather(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    const struct pt_span *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint8_t *dst = io->buf;
    (void)a;
    (void)err;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_read(v[i + PT_PREFETCH_AHEAD].addr);
        pt_copy_seg(dst, v[i].addr, v[i].len);
        dst += v[i].len;
    }
    return PT_OK;
}

static inline __attribute__((always_inline)) int
vec_scatter_as(struct pt_io *io, const int mode, const int each)
{
    const struct pt_span *v = io->vec;
    const uint64_t nvec = io->nvec;
    const uint8_t *src = io->buf;
    uint64_t lines = 0, fences = 0;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_write(v[i + PT_PREFETCH_AHEAD].addr);
        lines += pt_store_seg(v[i].addr, src, v[i].len, mode);
        if (each)
            fences += pt_persist_fence(mode);
        src += v[i].len;
    }
    if (!each)
        fences += pt_persist_fence(mode);
    io->lines_flushed += lines;
    io->fences += fences;
    return PT_OK;
}

int pt_span_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    (void)a;
    PT_PERSIST_DISPATCH(io, err, vec_scatter_as, io)
}

const struct pt_design_ops pt_design_vec = {
    .name = "vec",
    .entry_bytes = sizeof(struct pt_span),
    .metadata = pt_metadata_none,
    .entries = pt_entries_per_extent,
    .build = pt_build_spans,
    .gather = pt_span_gather,
    .scatter = pt_span_scatter,
    .release = pt_release_nothing,
};

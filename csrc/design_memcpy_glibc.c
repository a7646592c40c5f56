/*
 * memcpy-glibc - a reference row, not the roofline: one glibc memcpy over
 * each whole I/O, contiguous from the start of the data area (or of each
 * thread's part of it).  glibc picks its store strategy by length: above
 * its non-temporal threshold (a few MiB on many machines, set from the
 * cache sizes) it streams with non-temporal stores, which no design does.
 * Its ratio to `memcpy` shows what that choice is worth on this machine.
 */
#include "pt_persist.h"

static uint64_t whole_entries(const struct pt_attachment *a, const struct pt_extent *ext,
                              uint64_t n)
{
    (void)a;
    (void)ext;
    return n ? 1 : 0;
}

static void whole_build(struct pt_attachment *a, struct pt_io *io)
{
    struct pt_span *s = io->vec;
    s->addr = a->data + io->data_base + io->buf_off;
    s->len = io->bytes;
    io->nvec = 1;
}

static int whole_gather(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    const struct pt_span *s = io->vec;
    (void)a;
    (void)err;
    memcpy(io->buf, s->addr, s->len);
    return PT_OK;
}

static inline __attribute__((always_inline)) int
whole_scatter_as(struct pt_io *io, const int mode, const int each)
{
    const struct pt_span *s = io->vec;
    (void)each;  /* one entry: a fence per entry is the fence per I/O */
    io->lines_flushed += pt_store_seg(s->addr, io->buf, s->len, mode);
    io->fences += pt_persist_fence(mode);
    return PT_OK;
}

static int whole_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    (void)a;
    PT_PERSIST_DISPATCH(io, err, whole_scatter_as, io)
}

const struct pt_design_ops pt_design_memcpy_glibc = {
    .name = "memcpy-glibc",
    .flags = PT_DESIGN_CONTIGUOUS,
    .entry_bytes = sizeof(struct pt_span),
    .metadata = pt_metadata_none,
    .entries = whole_entries,
    .build = whole_build,
    .gather = whole_gather,
    .scatter = whole_scatter,
    .release = pt_release_nothing,
};

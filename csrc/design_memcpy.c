/*
 * memcpy - the roofline: one contiguous copy of the same byte count, from
 * (or to) the start of the data area; with several threads, from the start
 * of each thread's own part of it.  Its single entry is built like any
 * other vector so that the phases line up with the other designs.
 */
#include "pt_persist.h"

static uint64_t memcpy_entries(const struct pt_attachment *a, const struct pt_extent *ext,
                               uint64_t n)
{
    (void)a;
    (void)ext;
    return n ? 1 : 0;
}

static void memcpy_build(struct pt_attachment *a, struct pt_io *io)
{
    struct pt_span *s = io->vec;
    /* Consecutive I/Os continue where the previous one stopped. */
    s->addr = a->data + io->data_base + io->buf_off;
    s->len = io->bytes;
    io->nvec = 1;
}

static int memcpy_gather(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    const struct pt_span *s = io->vec;
    (void)a;
    (void)err;
    pt_copy_seg(io->buf, s->addr, s->len);
    return PT_OK;
}

static inline __attribute__((always_inline)) int
memcpy_scatter_as(struct pt_io *io, const int mode, const int each)
{
    (void)each;
    const struct pt_span *s = io->vec;
    io->lines_flushed += pt_store_seg(s->addr, io->buf, s->len, mode);
    io->fences += pt_persist_fence(mode);
    return PT_OK;
}

static int memcpy_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    (void)a;
    /* One entry: a fence per entry is the fence per I/O. */
    PT_PERSIST_DISPATCH(io, err, memcpy_scatter_as, io)
}

const struct pt_design_ops pt_design_memcpy = {
    .name = "memcpy",
    .entry_bytes = sizeof(struct pt_span),
    .metadata = pt_metadata_none,
    .entries = memcpy_entries,
    .build = memcpy_build,
    .gather = memcpy_gather,
    .scatter = memcpy_scatter,
    .release = pt_release_nothing,
};

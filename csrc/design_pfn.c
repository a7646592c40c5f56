/*
 * pfn - pfn_t-style entries {pfn, len, offset}, the 2015 __pfn_t RFC.
 * The address is computed from the page frame number; no descriptor exists.
 * An entry may span pages, as a physically contiguous pfn range may.
 */
#include "pt_persist.h"

struct pfn_entry {
    uint64_t pfn;       /* pfn_t: a frame number relative to the data area */
    uint32_t len;
    uint32_t offset;    /* within the first page */
};
_Static_assert(sizeof(struct pfn_entry) == 16, "pfn_t + len + offset");

static inline uint8_t *pfn_addr(uint8_t *data, const struct pfn_entry *e)
{
    return data + (e->pfn << PT_PAGE_SHIFT) + e->offset;
}

static void pfn_build(struct pt_attachment *a, struct pt_io *io)
{
    struct pfn_entry *v = io->vec;
    (void)a;
    for (uint64_t i = 0; i < io->n; i++) {
        uint64_t off = io->ext[i].off;
        v[i].pfn = off >> PT_PAGE_SHIFT;
        v[i].len = (uint32_t)io->ext[i].len;
        v[i].offset = (uint32_t)(off & (PT_PAGE_SIZE - 1));
    }
    io->nvec = io->n;
}

static int pfn_gather(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    const struct pfn_entry *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint8_t *const data = a->data;
    uint8_t *dst = io->buf;
    (void)err;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_read(pfn_addr(data, &v[i + PT_PREFETCH_AHEAD]));
        pt_copy_seg(dst, pfn_addr(data, &v[i]), v[i].len);
        dst += v[i].len;
    }
    return PT_OK;
}

static inline __attribute__((always_inline)) int
pfn_scatter_as(struct pt_attachment *a, struct pt_io *io, const int mode, const int each)
{
    const struct pfn_entry *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint8_t *const data = a->data;
    const uint8_t *src = io->buf;
    uint64_t lines = 0, fences = 0;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_write(pfn_addr(data, &v[i + PT_PREFETCH_AHEAD]));
        lines += pt_store_seg(pfn_addr(data, &v[i]), src, v[i].len, mode);
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

static int pfn_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    PT_PERSIST_DISPATCH(io, err, pfn_scatter_as, a, io)
}

const struct pt_design_ops pt_design_pfn = {
    .name = "pfn",
    .entry_bytes = sizeof(struct pfn_entry),
    .metadata = pt_metadata_none,
    .entries = pt_entries_per_extent,
    .build = pfn_build,
    .gather = pfn_gather,
    .scatter = pfn_scatter,
    .release = pt_release_nothing,
};

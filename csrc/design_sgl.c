/*
 * sgl - the DMA layer's scatterlist: 32-byte entries {page_link, offset,
 * length, dma_address, dma_length}, one per page-contiguous run (here, one
 * per extent: no design coalesces adjacent extents), with a reference on
 * every page the run spans.  It needs the same struct page table as `page`.
 * dma_address is filled as a direct (identity) mapping would, with the
 * run's offset in the data area.
 */
#include "pt_bvec.h"
#include "pt_persist.h"

struct pt_sg {
    unsigned long page_link;   /* struct page *, low bits: chain / end marks */
    unsigned int offset;
    unsigned int length;
    uint64_t dma_address;
    unsigned int dma_length;
    unsigned int pad;
};
_Static_assert(sizeof(struct pt_sg) == 32, "scatterlist is 32 bytes on x86-64");

#define SG_END 0x2UL
#define SG_PAGE_MASK (~0x3UL)
#define SGL_REF offsetof(struct pt_page, refcount)

/* The same table as `page`: 64 B per 4 KiB in DRAM. */
PT_DRAM_TABLE_OPS(sgl, PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, SGL_REF)

static inline struct pt_page *sg_page(const struct pt_sg *sg)
{
    return (struct pt_page *)(sg->page_link & SG_PAGE_MASK);
}

static inline uint8_t *sg_virt(uint8_t *data, const struct pt_page *table, const struct pt_sg *sg)
{
    return data + ((uint64_t)(sg_page(sg) - table) << PT_PAGE_SHIFT) + sg->offset;
}

static inline uint64_t sg_npages(const struct pt_sg *sg)
{
    return (sg->offset + sg->length + PT_PAGE_SIZE - 1) >> PT_PAGE_SHIFT;
}

static void sgl_build(struct pt_attachment *a, struct pt_io *io)
{
    struct pt_page *const table = a->meta;
    const struct pt_extent *ext = io->ext;
    const uint64_t n = io->n;
    struct pt_sg *v = io->vec;

    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = ext[i].off, len = ext[i].len;
        struct pt_page *pg = &table[off >> PT_PAGE_SHIFT];
        if (i + PT_PREFETCH_AHEAD < n)
            pt_prefetch_write(&table[ext[i + PT_PREFETCH_AHEAD].off >> PT_PAGE_SHIFT].refcount);
        v[i].page_link = (unsigned long)pg;
        v[i].offset = (unsigned int)(off & (PT_PAGE_SIZE - 1));
        v[i].length = (unsigned int)len;
        v[i].dma_address = off;
        v[i].dma_length = (unsigned int)len;
        v[i].pad = 0;
        for (uint64_t k = 0, np = sg_npages(&v[i]); k < np; k++)
            __atomic_fetch_add(&pg[k].refcount, 1, __ATOMIC_RELAXED);  /* get_page */
    }
    if (n)
        v[n - 1].page_link |= SG_END;  /* sg_mark_end */
    io->nvec = n;
}

static int sgl_gather(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    const struct pt_sg *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint8_t *const data = a->data;
    const struct pt_page *const table = a->meta;
    uint8_t *dst = io->buf;
    (void)err;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_read(sg_virt(data, table, &v[i + PT_PREFETCH_AHEAD]));
        pt_copy_seg(dst, sg_virt(data, table, &v[i]), v[i].length);
        dst += v[i].length;
    }
    return PT_OK;
}

static inline __attribute__((always_inline)) int
sgl_scatter_as(struct pt_attachment *a, struct pt_io *io, const int mode, const int each)
{
    const struct pt_sg *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint8_t *const data = a->data;
    const struct pt_page *const table = a->meta;
    const uint8_t *src = io->buf;
    uint64_t lines = 0, fences = 0;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_write(sg_virt(data, table, &v[i + PT_PREFETCH_AHEAD]));
        lines += pt_store_seg(sg_virt(data, table, &v[i]), src, v[i].length, mode);
        if (each)
            fences += pt_persist_fence(mode);
        src += v[i].length;
    }
    if (!each)
        fences += pt_persist_fence(mode);
    io->lines_flushed += lines;
    io->fences += fences;
    return PT_OK;
}

static int sgl_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    PT_PERSIST_DISPATCH(io, err, sgl_scatter_as, a, io)
}

static void sgl_release(struct pt_attachment *a, struct pt_io *io)
{
    const struct pt_sg *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < nvec; i++) {
        struct pt_page *pg = sg_page(&v[i]);
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_write(&sg_page(&v[i + PT_PREFETCH_AHEAD])->refcount);
        for (uint64_t k = 0, np = sg_npages(&v[i]); k < np; k++)
            bad += __atomic_sub_fetch(&pg[k].refcount, 1, __ATOMIC_ACQ_REL) <= 0;  /* put_page */
    }
    a->ref_errors += bad;
}

const struct pt_design_ops pt_design_sgl = {
    .name = "sgl",
    .flags = PT_DESIGN_REFCOUNTS,
    PT_TABLE_FIELDS(PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, SGL_REF),
    .entry_bytes = sizeof(struct pt_sg),
    PT_DRAM_TABLE_FIELDS(sgl),
    .entries = pt_entries_per_extent,
    .build = sgl_build,
    .gather = sgl_gather,
    .scatter = sgl_scatter,
    .release = sgl_release,
};

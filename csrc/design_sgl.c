/*
 * sgl - the DMA layer's scatterlist: 32-byte entries {page_link, offset,
 * length, dma_address, dma_length}, one per page-contiguous run (here, one
 * per extent: no design coalesces adjacent extents), with a reference on
 * every page the run spans.  It needs the same struct page table as `page`.
 * dma_address is filled as a direct (identity) mapping would, with the
 * run's offset in the data area.
 */
#include "pt_bvec.h"

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

/* sg_virt(): the page's index in the table gives the data address. */
static inline uint8_t *sg_virt(uint8_t *data, const uint8_t *table, const struct pt_sg *sg)
{
    return data + ((uint64_t)(sg_page(sg) - (const struct pt_page *)table) << PT_PAGE_SHIFT) +
           sg->offset;
}

static inline uint64_t sg_len(const struct pt_sg *sg)
{
    return sg->length;
}

static inline int32_t *sg_ref(const struct pt_sg *sg)
{
    return &sg_page(sg)->refcount;
}

/* Pages the entry spans; 64-bit, so a length near 4 GiB cannot wrap. */
static inline uint64_t sg_npages(const struct pt_sg *sg)
{
    return ((uint64_t)sg->offset + sg->length + PT_PAGE_SIZE - 1) >> PT_PAGE_SHIFT;
}

static void sgl_build(struct pt_attachment *a, struct pt_io *io)
{
    struct pt_page *const table = a->meta;
    const struct pt_extent *ext = io->ext;
    const uint64_t n = io->n;
    const unsigned gup = a->gup;
    struct pt_sg *v = io->vec;
    uint64_t pins = 0, bad = 0;

    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = ext[i].off, len = ext[i].len;
        struct pt_page *pg = &table[off >> PT_PAGE_SHIFT];
        if (i + PT_PREFETCH_DESC_AHEAD < n)
            pt_prefetch_read(&table[ext[i + PT_PREFETCH_DESC_AHEAD].off >> PT_PAGE_SHIFT]);
        if (i + PT_PREFETCH_AHEAD < n)
            pt_prefetch_write(&table[ext[i + PT_PREFETCH_AHEAD].off >> PT_PAGE_SHIFT].refcount);
        v[i].page_link = (unsigned long)pg;
        v[i].offset = (unsigned int)(off & (PT_PAGE_SIZE - 1));
        v[i].length = (unsigned int)len;
        v[i].dma_address = off;
        v[i].dma_length = (unsigned int)len;
        v[i].pad = 0;
        /* a pin on every page the entry spans, each a small folio */
        for (uint64_t k = 0, np = sg_npages(&v[i]); k < np; k++)
            bad += pt_gup_grab_desc(gup, (uint8_t *)&pg[k], SGL_REF, PT_PAGE_FLAGS, PT_PAGE_HEAD,
                                    NULL, 1, &pins);
    }
    if (n)
        v[n - 1].page_link |= SG_END;  /* sg_mark_end */
    io->nvec = n;
    a->pin_stat += pins;
    a->ref_errors += bad;
}

static inline int32_t *sg_no_pin(const struct pt_sg *sg)
{
    (void)sg;
    return NULL;
}

PT_COPY_OPS(sgl, struct pt_sg, sg_virt, sg_len)
PT_RELEASE_OPS(sgl, struct pt_sg, sg_ref, sg_no_pin, sg_npages, sizeof(struct pt_page))

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

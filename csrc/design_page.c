/*
 * page - a 64-byte struct page per 4 KiB page, in DRAM (ZONE_DEVICE with
 * `ndctl --map=mem`), and bio_vec entries {page, len, offset}, one per page
 * an extent touches.  Build takes a reference per entry (get_page: an atomic
 * increment on the descriptor), release drops it (put_page).  The data
 * address comes from the descriptor's index, as page_to_virt() on vmemmap,
 * so the copy never reads the descriptor; build and release do.
 */
#include "pt_bvec.h"

#define PAGE_REF offsetof(struct pt_page, refcount)

static uint64_t pages(uint64_t capacity)
{
    return (capacity + PT_PAGE_SIZE - 1) >> PT_PAGE_SHIFT;
}

/* 64 B per 4 KiB page, in DRAM: 1.5625 % of capacity. */
static void page_metadata(uint64_t capacity, struct pt_metadata *out)
{
    out->dram_bytes = pages(capacity) * sizeof(struct pt_page);
    out->device_bytes = 0;
}

static int page_attach(struct pt_attachment *a, struct pt_error *err)
{
    return pt_table_alloc(a, pages(a->data_bytes), PT_PAGE_DESC_SHIFT, PAGE_REF, err);
}

PT_BVEC_OPS(page, PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, PAGE_REF)

const struct pt_design_ops pt_design_page = {
    .name = "page",
    .attach = page_attach,
    .detach = pt_table_free,
    .metadata = page_metadata,
    PT_BVEC_OPS_FIELDS(page),
};

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

/* 64 B per 4 KiB page, in DRAM: 1.5625 % of capacity. */
PT_DRAM_TABLE_OPS(page, PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, PAGE_REF)
PT_BVEC_OPS(page, PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, PAGE_REF, PT_PAGE_FLAGS, PT_PAGE_HEAD,
            PT_NO_PIN)

const struct pt_design_ops pt_design_page = {
    .name = "page",
    .flags = PT_DESIGN_REFCOUNTS | PT_DESIGN_PROPOSAL,
    PT_TABLE_FIELDS(PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, PAGE_REF),
    PT_DRAM_TABLE_FIELDS(page),
    PT_BVEC_OPS_FIELDS(page),
};

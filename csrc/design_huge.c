/*
 * huge - one 64-byte descriptor per 2 MiB compound page (Harrosh: "fix the
 * stacks to work nice with 2M pages").  A bio_vec may cover up to 2 MiB
 * within one compound page; an extent crossing a 2 MiB boundary splits.
 * One reference per entry, on the head descriptor.
 */
#include "pt_bvec.h"

#define HUGE_SHIFT 21
#define HUGE_REF offsetof(struct pt_page, refcount)

/* 64 B per 2 MiB: 0.0030518 % of capacity. */
PT_DRAM_TABLE_OPS(huge, PT_PAGE_DESC_SHIFT, HUGE_SHIFT, HUGE_REF)
/* a large folio with no tail struct page: _pincount in its one descriptor */
PT_BVEC_OPS(huge, PT_PAGE_DESC_SHIFT, HUGE_SHIFT, HUGE_REF, PT_PAGE_FLAGS, PT_PAGE_HEAD,
            offsetof(struct pt_page, mapcount))

const struct pt_design_ops pt_design_huge = {
    .name = "huge",
    .flags = PT_DESIGN_REFCOUNTS,
    PT_TABLE_FIELDS(PT_PAGE_DESC_SHIFT, HUGE_SHIFT, HUGE_REF),
    PT_DRAM_TABLE_FIELDS(huge),
    PT_BVEC_OPS_FIELDS(huge),
};

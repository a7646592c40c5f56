/*
 * memdesc-inline - the floor for any per-page state: an 8-byte descriptor
 * per 4 KiB page in DRAM holding the count itself, so a reference is one
 * load and one atomic, with no folio behind it.  Not a kernel plan (the
 * real memdesc points to a separate folio: design_memdesc.c); it bounds what
 * shrinking struct page alone could buy.  bio_vec entries as for `page`.
 */
#include "pt_bvec.h"

struct pt_memdesc {
    int32_t refcount;
    uint32_t flags;
};
_Static_assert(sizeof(struct pt_memdesc) == 8, "memdesc is 8 bytes");

#define MEMDESC_SHIFT 3
#define MEMDESC_REF offsetof(struct pt_memdesc, refcount)

/* 8 B per 4 KiB page, in DRAM: 0.1953125 % of capacity. */
PT_DRAM_TABLE_OPS(memdesc_inline, MEMDESC_SHIFT, PT_PAGE_SHIFT, MEMDESC_REF)
/* no folio behind it: nothing for page_folio() to re-read */
PT_BVEC_OPS(memdesc_inline, MEMDESC_SHIFT, PT_PAGE_SHIFT, MEMDESC_REF,
            offsetof(struct pt_memdesc, flags), PT_NO_HEAD, PT_NO_PIN)

const struct pt_design_ops pt_design_memdesc_inline = {
    .name = "memdesc-inline",
    .flags = PT_DESIGN_REFCOUNTS,
    PT_TABLE_FIELDS(MEMDESC_SHIFT, PT_PAGE_SHIFT, MEMDESC_REF),
    PT_DRAM_TABLE_FIELDS(memdesc_inline),
    PT_BVEC_OPS_FIELDS(memdesc_inline),
};

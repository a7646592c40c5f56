/*
 * huge - one 64-byte descriptor per 2 MiB compound page (Harrosh: "fix the
 * stacks to work nice with 2M pages").  A bio_vec may cover up to 2 MiB
 * within one compound page; an extent crossing a 2 MiB boundary splits.
 * One reference per entry, on the head descriptor.
 */
#include "pt_bvec.h"

#define HUGE_SHIFT 21
#define HUGE_REF offsetof(struct pt_page, refcount)

static uint64_t huge_pages(uint64_t capacity)
{
    return (capacity + (1ULL << HUGE_SHIFT) - 1) >> HUGE_SHIFT;
}

/* 64 B per 2 MiB: 0.0030518 % of capacity. */
static void huge_metadata(uint64_t capacity, struct pt_metadata *out)
{
    out->dram_bytes = huge_pages(capacity) * sizeof(struct pt_page);
    out->device_bytes = 0;
}

static int huge_attach(struct pt_attachment *a, struct pt_error *err)
{
    return pt_table_alloc(a, huge_pages(a->data_bytes), PT_PAGE_DESC_SHIFT, HUGE_REF, err);
}

PT_BVEC_OPS(huge, PT_PAGE_DESC_SHIFT, HUGE_SHIFT, HUGE_REF)

const struct pt_design_ops pt_design_huge = {
    .name = "huge",
    .attach = huge_attach,
    .detach = pt_table_free,
    .metadata = huge_metadata,
    PT_BVEC_OPS_FIELDS(huge),
};

/*
 * memdesc - Wilcox's plan: an 8-byte descriptor per 4 KiB page in DRAM,
 * holding only what the I/O path needs, a reference count and flags.
 * bio_vec entries as for `page`, one per page touched, a reference each.
 */
#include "pt_bvec.h"

struct pt_memdesc {
    int32_t refcount;
    uint32_t flags;
};
_Static_assert(sizeof(struct pt_memdesc) == 8, "memdesc is 8 bytes");

#define MEMDESC_SHIFT 3
#define MEMDESC_REF offsetof(struct pt_memdesc, refcount)

static uint64_t pages(uint64_t capacity)
{
    return (capacity + PT_PAGE_SIZE - 1) >> PT_PAGE_SHIFT;
}

/* 8 B per 4 KiB page, in DRAM: 0.1953125 % of capacity. */
static void memdesc_metadata(uint64_t capacity, struct pt_metadata *out)
{
    out->dram_bytes = pages(capacity) * sizeof(struct pt_memdesc);
    out->device_bytes = 0;
}

static int memdesc_attach(struct pt_attachment *a, struct pt_error *err)
{
    return pt_table_alloc(a, pages(a->data_bytes), MEMDESC_SHIFT, MEMDESC_REF, err);
}

PT_BVEC_OPS(memdesc, MEMDESC_SHIFT, PT_PAGE_SHIFT, MEMDESC_REF)

const struct pt_design_ops pt_design_memdesc = {
    .name = "memdesc",
    .attach = memdesc_attach,
    .detach = pt_table_free,
    .metadata = memdesc_metadata,
    PT_BVEC_OPS_FIELDS(memdesc),
};

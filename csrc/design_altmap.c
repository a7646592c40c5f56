/*
 * altmap - the `page` design with its descriptor table on the backing
 * itself, as `ndctl create-namespace --map=dev` (vmem_altmap) lays it out.
 *
 * drivers/nvdimm/pfn_devs.c, nd_pfn_init(), PFN_MODE_PMEM:
 *     npfns  = PHYS_PFN(size - SZ_8K);
 *     offset = ALIGN(start + SZ_8K + MAX_STRUCT_PAGE_SIZE * npfns, align) - start;
 *     end_trunc = start + size - ALIGN_DOWN(start + size, align);
 * with MAX_STRUCT_PAGE_SIZE = 64 and align = 2 MiB by default.  The first
 * `offset` bytes hold the info block (8 KiB) and the memmap; data follows.
 * Descriptor accesses therefore go to the mapped file, never to DRAM.
 */
#include "pt_bvec.h"

#define ALTMAP_INFO (8ULL << 10)
#define ALTMAP_ALIGN (2ULL << 20)
#define ALTMAP_REF offsetof(struct pt_page, refcount)

static uint64_t npfns(uint64_t size)
{
    return size > ALTMAP_INFO ? (size - ALTMAP_INFO) >> PT_PAGE_SHIFT : 0;
}

static uint64_t reserve(uint64_t size)
{
    uint64_t end = ALTMAP_INFO + npfns(size) * sizeof(struct pt_page);
    return (end + ALTMAP_ALIGN - 1) & ~(ALTMAP_ALIGN - 1);
}

static int altmap_layout(uint64_t size, uint64_t *data_off, uint64_t *data_bytes)
{
    uint64_t off = reserve(size), end = size & ~(ALTMAP_ALIGN - 1);
    if (off >= end)
        return -1;  /* pfn_devs.c: "unable to satisfy requested alignment" */
    *data_off = off;
    *data_bytes = end - off;
    return 0;
}

/* No DRAM; the namespace loses the reserve (ndctl: "64-bytes per 4K"). */
static void altmap_metadata(uint64_t capacity, struct pt_metadata *out)
{
    out->dram_bytes = 0;
    out->device_bytes = reserve(capacity);
}

static int altmap_attach(struct pt_attachment *a, struct pt_error *err)
{
    struct pt_backing *b = a->backing;
    uint64_t off, bytes, used;

    if (!b->writable)
        return pt_set_error(err, PT_EPERM, 0, 0,
                            "altmap keeps its descriptors on the backing, which is read-only");
    if (altmap_layout(b->size, &off, &bytes))
        return pt_set_error(err, PT_EINVAL, 0, 0,
                            "a %llu-byte backing is too small for altmap's 2 MiB-aligned reserve",
                            (unsigned long long)b->size);
    if ((uint64_t)(a->data - b->base) < off || a->data + a->data_bytes > b->base + off + bytes)
        return pt_set_error(err, PT_ERANGE, 0, 0,
                            "altmap's data area must lie within [%llu, %llu) of the backing",
                            (unsigned long long)off, (unsigned long long)(off + bytes));
    /* Descriptors for the data pages, indexed from the data area's start. */
    used = (a->data_bytes + PT_PAGE_SIZE - 1) >> PT_PAGE_SHIFT;
    a->meta = b->base + ALTMAP_INFO;
    a->meta_bytes = reserve(b->size);
    a->ndesc = used;
    return pt_table_init_on_backing(a, a->meta, used, PT_PAGE_DESC_SHIFT, ALTMAP_REF, err);
}

PT_BVEC_OPS(altmap, PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, ALTMAP_REF, PT_PAGE_FLAGS, PT_PAGE_HEAD,
            PT_NO_PIN)

const struct pt_design_ops pt_design_altmap = {
    .name = "altmap",
    .flags = PT_DESIGN_REFCOUNTS | PT_DESIGN_TABLE_ON_BACKING,
    PT_TABLE_FIELDS(PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, ALTMAP_REF),
    .attach = altmap_attach,
    .layout = altmap_layout,
    .metadata = altmap_metadata,
    PT_BVEC_OPS_FIELDS(altmap),
};

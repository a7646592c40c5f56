/*
 * folio_table.c - the memmap of the folio designs: page descriptors of
 * 2^ds bytes, one per 4 KiB page, and, where the design keeps them apart
 * (page32, memdesc), one folio descriptor per folio; each in DRAM,
 * 2 MiB-aligned and advised as vmemmap is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>

#include "pt_folio.h"

void pt_folio_metadata(uint64_t capacity, unsigned folio_shift, unsigned ds, int separate,
                       struct pt_metadata *out)
{
    out->dram_bytes = (pt_desc_count(capacity, PT_PAGE_SHIFT) << ds) +
                      (separate ? pt_folio_count(capacity, folio_shift) * PT_FOLIO_DESC_BYTES : 0);
    out->device_bytes = 0;
}

int pt_folio_tables(struct pt_attachment *a, unsigned ds, int separate,
                    void (*link)(struct pt_attachment *a, uint64_t page, uint64_t folio),
                    struct pt_error *err)
{
    const uint64_t pages = pt_desc_count(a->data_bytes, PT_PAGE_SHIFT);
    const uint64_t folios = pt_folio_count(a->data_bytes, a->folio_shift);
    const unsigned per_folio = a->folio_shift - PT_PAGE_SHIFT;

    if (!(a->meta = pt_dram_map(a, pages << ds, err)))
        return err ? err->code : PT_ENOMEM;
    a->meta_bytes = pages << ds;
    a->ndesc = pages;
    if (separate) {
        if (!(a->folios = pt_dram_map(a, folios * PT_FOLIO_DESC_BYTES, err))) {
            munmap(a->meta, a->meta_bytes);
            a->meta = NULL;
            return err ? err->code : PT_ENOMEM;
        }
        a->folios_bytes = folios * PT_FOLIO_DESC_BYTES;
        a->meta_bytes += a->folios_bytes;   /* all that is allocated for descriptors */
        for (uint64_t f = 0; f < folios; f++) {
            struct pt_folio_desc *d = (struct pt_folio_desc *)a->folios + f;
            d->refcount = 1;  /* ZONE_DEVICE folios sit at 1 while the device is live */
            d->order = per_folio;
            d->pfn = f << per_folio;
        }
        a->ref_base = (const uint8_t *)a->folios + offsetof(struct pt_folio_desc, refcount);
        a->ref_stride = PT_FOLIO_DESC_BYTES;
    } else {
        /* the count is in each folio's head struct page */
        a->ref_base = (const uint8_t *)a->meta + offsetof(struct pt_page, refcount);
        a->ref_stride = (uint64_t)1 << ds << per_folio;
    }
    a->nrefs = folios;
    for (uint64_t p = 0; p < pages; p++)
        link(a, p, p >> per_folio);
    return PT_OK;
}

void pt_folio_tables_free(struct pt_attachment *a)
{
    munmap(a->meta, a->ndesc << a->ops->desc_shift);
    if (a->folios)
        munmap(a->folios, a->folios_bytes);
}

/*
 * folio - today's I/O path over today's memmap (Linux 6.12): a 64-byte
 * struct page per 4 KiB page in a PMD-mapped table, grouped into folios of
 * the attachment's size.  A tail page's compound_head holds the head's
 * address | 1 (page_folio() reads it: a dependent load), and the folio's
 * count is the head struct page's _refcount; a large folio's _pincount and
 * order are in its first tail page.  Multi-page bio_vecs, one per part of
 * an extent within a folio; pins as pt_folio.h describes.
 */
#include "pt_folio.h"

/* page_folio(): a tail's compound_head is its head's address | 1. */
static inline struct pt_page *folio_of(uint8_t *desc)
{
    uint64_t head = ((const struct pt_page *)desc)->lru[0];   /* compound_head */
    return (head & 1) ? (struct pt_page *)(uintptr_t)(head - 1) : (struct pt_page *)desc;
}

#define FOLIO_HEAD(desc) (&((struct pt_page *)(desc))->lru[0])
#define FOLIO_COUNT(f) (&((struct pt_page *)(f))->refcount)
/* the first tail page: _pincount (here its mapcount word) and the order
 * (_flags_1's low byte), a second cache line */
#define FOLIO_PINCOUNT(f) (&((struct pt_page *)(f))[1].mapcount)
#define FOLIO_FLAGS(f) ((uint32_t *)&((struct pt_page *)(f))->flags)
#define FOLIO_ORDER(f) ((unsigned)(__atomic_load_n(&((struct pt_page *)(f))[1].flags, \
                                                  __ATOMIC_RELAXED) & 0xff))

/* Head pages at 1 (ZONE_DEVICE while the device is live); tails at 0, as
 * the kernel keeps them, pointing at their head. */
static void folio_link(struct pt_attachment *a, uint64_t page, uint64_t folio)
{
    struct pt_page *pages = a->meta;
    uint64_t head = folio << (a->folio_shift - PT_PAGE_SHIFT);
    if (page == head) {
        pages[page].refcount = 1;
    } else {
        pages[page].lru[0] = (uint64_t)(uintptr_t)&pages[head] | 1;
        if (page == head + 1)
            pages[page].flags = a->folio_shift - PT_PAGE_SHIFT;   /* the order */
    }
}

/* 64 B per 4 KiB page, the folio inside its head pages: 1.5625 %. */
PT_FOLIO_TABLE_OPS(folio, PT_PAGE_DESC_SHIFT, 0)
PT_FOLIO_OPS(folio, PT_PAGE_DESC_SHIFT, folio_of, FOLIO_HEAD, FOLIO_COUNT, FOLIO_PINCOUNT,
             FOLIO_FLAGS, FOLIO_ORDER)

const struct pt_design_ops pt_design_folio = {
    .name = "folio",
    .flags = PT_DESIGN_REFCOUNTS | PT_DESIGN_FOLIOS,
    PT_TABLE_FIELDS(PT_PAGE_DESC_SHIFT, PT_PAGE_SHIFT, offsetof(struct pt_page, refcount)),
    PT_FOLIO_TABLE_FIELDS(folio),
    PT_FOLIO_OPS_FIELDS(folio),
};

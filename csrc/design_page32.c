/*
 * page32 - the plan to halve the memmap (Wilcox, linux-mm, January 2025:
 * "struct page { flags; {memdesc, _refcount}; private }... just 32 bytes
 * which halves the size of memmap"): flags, a memdesc word and private;
 * for a folio's pages _refcount is 0 and the count lives in the separately
 * allocated folio descriptor the memdesc word points to (tagged).  Every
 * reference reads the page's word, then the folio: two dependent loads.
 * Bio_vecs and counting as for `folio`.
 */
#include "pt_folio.h"

struct pt_page32 {
    uint64_t flags;
    uint64_t memdesc;         /* memdesc_t: folio descriptor | type; was compound_head */
    uint64_t private_;
    uint64_t reserved;        /* the plan's fourth word (mapping/index for file pages) */
};
_Static_assert(sizeof(struct pt_page32) == 32, "the halved struct page is 32 bytes");

#define PAGE32_SHIFT 5

static inline struct pt_folio_desc *page32_folio(uint8_t *desc)
{
    return pt_memdesc_folio(((const struct pt_page32 *)desc)->memdesc);
}

#define PAGE32_HEAD(desc) (&((struct pt_page32 *)(desc))->memdesc)

static void page32_link(struct pt_attachment *a, uint64_t page, uint64_t folio)
{
    struct pt_page32 *pages = a->meta;
    pages[page].memdesc = (uint64_t)(uintptr_t)((struct pt_folio_desc *)a->folios + folio) |
                          PT_MEMDESC_FOLIO;
}

/* 32 B per 4 KiB page, plus an 80-byte folio descriptor per folio. */
PT_FOLIO_TABLE_OPS(page32, PAGE32_SHIFT, 1)
PT_FOLIO_OPS(page32, PAGE32_SHIFT, page32_folio, PAGE32_HEAD, PT_FDESC_COUNT, PT_FDESC_PINCOUNT,
             PT_FDESC_FLAGS, PT_FDESC_ORDER)

const struct pt_design_ops pt_design_page32 = {
    .name = "page32",
    .flags = PT_DESIGN_REFCOUNTS | PT_DESIGN_FOLIOS,
    PT_TABLE_FIELDS(PAGE32_SHIFT, PT_PAGE_SHIFT, 0),
    PT_FOLIO_TABLE_FIELDS(page32),
    PT_FOLIO_OPS_FIELDS(page32),
};

/*
 * memdesc - Wilcox's memdesc plan (kernelnewbies.org, Memdescs): struct
 * page becomes one 8-byte memdesc_t, a pointer to a separately allocated
 * descriptor with its type in the low 4 bits; for I/O memory that
 * descriptor is a folio (80 bytes) holding the count.  Every reference reads
 * the word, then the folio: two dependent loads.  Bio_vecs and counting as
 * for `folio`.
 */
#include "pt_folio.h"

#define MEMDESC_SHIFT 3

static inline struct pt_folio_desc *memdesc_folio(uint8_t *desc)
{
    return pt_memdesc_folio(*(const uint64_t *)desc);
}

#define MEMDESC_HEAD(desc) ((uint64_t *)(desc))

static void memdesc_link(struct pt_attachment *a, uint64_t page, uint64_t folio)
{
    uint64_t *words = a->meta;
    words[page] = (uint64_t)(uintptr_t)((struct pt_folio_desc *)a->folios + folio) |
                  PT_MEMDESC_FOLIO;
}

/* 8 B per 4 KiB page, plus an 80-byte folio descriptor per folio. */
PT_FOLIO_TABLE_OPS(memdesc, MEMDESC_SHIFT, 1)
PT_FOLIO_OPS(memdesc, MEMDESC_SHIFT, memdesc_folio, MEMDESC_HEAD, PT_FDESC_COUNT,
             PT_FDESC_PINCOUNT, PT_FDESC_FLAGS, PT_FDESC_ORDER)

const struct pt_design_ops pt_design_memdesc = {
    .name = "memdesc",
    .flags = PT_DESIGN_REFCOUNTS | PT_DESIGN_FOLIOS,
    PT_TABLE_FIELDS(MEMDESC_SHIFT, PT_PAGE_SHIFT, 0),
    PT_FOLIO_TABLE_FIELDS(memdesc),
    PT_FOLIO_OPS_FIELDS(memdesc),
};

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

static inline int32_t *memdesc_ref(uint8_t *desc)
{
    return &pt_memdesc_folio(*(const uint64_t *)desc)->refcount;
}

static void memdesc_link(struct pt_attachment *a, uint64_t page, uint64_t folio)
{
    uint64_t *words = a->meta;
    words[page] = (uint64_t)(uintptr_t)((struct pt_folio_desc *)a->folios + folio) |
                  PT_MEMDESC_FOLIO;
}

static int memdesc_attach(struct pt_attachment *a, struct pt_error *err)
{
    return pt_folio_tables(a, MEMDESC_SHIFT, 1, memdesc_link, err);
}

/* 8 B per 4 KiB page, plus an 80-byte folio descriptor per folio. */
static void memdesc_metadata(uint64_t capacity, unsigned folio_shift, struct pt_metadata *out)
{
    pt_folio_metadata(capacity, folio_shift, MEMDESC_SHIFT, 1, out);
}

PT_FOLIO_OPS(memdesc, MEMDESC_SHIFT, memdesc_ref)

const struct pt_design_ops pt_design_memdesc = {
    .name = "memdesc",
    .flags = PT_DESIGN_REFCOUNTS | PT_DESIGN_FOLIOS,
    PT_TABLE_FIELDS(MEMDESC_SHIFT, PT_PAGE_SHIFT, 0),
    .attach = memdesc_attach,
    .detach = pt_folio_tables_free,
    .metadata_folio = memdesc_metadata,
    PT_FOLIO_OPS_FIELDS(memdesc),
};

/*
 * pt_folio.h - today's I/O path and tomorrow's: folio, page32 and memdesc.
 *
 * All three build multi-page bio_vecs, one per part of an extent within one
 * folio, and count references on the folio, not on each page, as Linux
 * 6.12 does for a direct I/O:
 *
 *   build    mm/gup.c: GUP-fast on a PMD-mapped folio (gup_fast_pmd_leaf)
 *            grabs all the pages it covers at once,
 *            try_grab_folio_fast(page, refs): one atomic add of N; on
 *            PTE-mapped pages (gup_fast_pte_range) one grab of 1 per page,
 *            each finding its folio through its own page descriptor;
 *            block/bio.c (__bio_iov_iter_get_pages, bio_iov_add_folio):
 *            one bvec per folio part;
 *   release  block/bio.c __bio_release_pages: bio_for_each_folio_all, one
 *            unpin_user_folio(folio, nr_pages) per folio part of a bvec,
 *            nr_pages = pages from bv_offset to bv_offset + bv_len.
 *
 * Modelled as FOLL_GET counts: a FOLL_PIN of a large folio also adds to
 * _pincount in its first tail page (a second atomic, a second line), which
 * these loops leave out for all three alike.
 *
 * They differ in how a page descriptor leads to the folio's count:
 *
 *   folio    64-byte struct page; a tail's compound_head is the head's
 *            address | 1 (page_folio()), and the count is in the head page;
 *   page32   32-byte struct page whose memdesc word points (tagged) to a
 *            separately allocated folio descriptor holding the count;
 *   memdesc  the struct page is only that 8-byte tagged word.
 *
 * A design names its page descriptor size and one accessor, FREF(page
 * descriptor) -> int32_t *, the count to change; this header writes the
 * loops.  The folio size is the attachment's (--folio-size): 2 MiB folios are
 * PMD-mapped (THP, PMD-mapped DAX), smaller ones PTE-mapped.
 */
#ifndef PT_FOLIO_H
#define PT_FOLIO_H

#include "pt_bvec.h"
#include "pt_cold.h"

#define PT_PMD_SHIFT 21

/*
 * The separately allocated descriptor page32 and memdesc point to: struct
 * folio as kernelnewbies.org/MatthewWilcox/Memdescs/Path proposes it (flags,
 * lru, mapping, index, private, _refcount, _mapcount, pincount, pfn, memcg),
 * 80 bytes on x86-64, a multiple of the 16-byte slab alignment memdescs need.
 */
struct pt_folio_desc {
    int32_t refcount;         /* _refcount */
    int32_t mapcount;         /* _mapcount / _large_mapcount */
    int32_t pincount;         /* _pincount */
    uint32_t order;
    uint64_t flags;
    void *mapping;
    uint64_t index;
    void *private_;
    uint64_t lru[2];
    uint64_t memcg_data;
    uint64_t pfn;             /* where its pages are: the memdesc plan's pfn */
};
_Static_assert(sizeof(struct pt_folio_desc) == 80, "the memdesc plan's folio is 80 bytes");

#define PT_FOLIO_DESC_BYTES sizeof(struct pt_folio_desc)
#define PT_MEMDESC_TYPE_MASK 15ULL   /* a memdesc_t's low 4 bits name its type */
#define PT_MEMDESC_FOLIO 2ULL

static inline struct pt_folio_desc *pt_memdesc_folio(uint64_t word)
{
    return (struct pt_folio_desc *)(uintptr_t)(word & ~PT_MEMDESC_TYPE_MASK);
}

/* Folios of 2^fs bytes over `capacity`, rounded up; pages likewise. */
static inline uint64_t pt_folio_count(uint64_t capacity, unsigned fs)
{
    return pt_desc_count(capacity, fs);
}

/* Allocate and initialise, for an attachment, the page descriptors (2^DS
 * bytes each, in a->meta) and, for designs with separate folio
 * descriptors, those (a->folios); both 2 MiB-aligned in DRAM like vmemmap.
 * link(a, page i, folio j) points page i at folio j. (folio_table.c) */
int pt_folio_tables(struct pt_attachment *a, unsigned ds, int separate,
                    void (*link)(struct pt_attachment *a, uint64_t page, uint64_t folio),
                    struct pt_error *err);
void pt_folio_tables_free(struct pt_attachment *a);
/* Static bytes for a capacity: 2^DS per page, plus a folio descriptor per
 * folio where they are separate. */
void pt_folio_metadata(uint64_t capacity, unsigned folio_shift, unsigned ds, int separate,
                       struct pt_metadata *out);

/* Where page p's folio keeps its count, by arithmetic on the tables alone:
 * the head struct page's _refcount, or the separate folio descriptor's. */
static inline const void *pt_folio_count_at(const struct pt_attachment *a, uint64_t p,
                                            unsigned ds)
{
    const unsigned per_folio = a->folio_shift - PT_PAGE_SHIFT;
    if (a->folios)
        return (const struct pt_folio_desc *)a->folios + (p >> per_folio);
    return (const uint8_t *)a->meta + ((p >> per_folio << per_folio) << ds) +
           offsetof(struct pt_page, refcount);
}

/* A folio design's tables: page descriptors of 2^DS bytes, and folio
 * descriptors apart from them if SEPARATE; name##_link points a page at its
 * folio.  metadata_folio() is the model, attach() allocates exactly that. */
#define PT_FOLIO_TABLE_OPS(name, DS, SEPARATE)                                          \
    static int name##_attach(struct pt_attachment *a, struct pt_error *err)            \
    {                                                                                   \
        return pt_folio_tables(a, DS, SEPARATE, name##_link, err);                      \
    }                                                                                   \
    static void name##_metadata(uint64_t capacity, unsigned folio_shift,                \
                                struct pt_metadata *out)                                \
    {                                                                                   \
        pt_folio_metadata(capacity, folio_shift, DS, SEPARATE, out);                    \
    }

#define PT_FOLIO_TABLE_FIELDS(name)                                                     \
    .attach = name##_attach, .detach = pt_folio_tables_free,                            \
    .metadata_folio = name##_metadata

/* Entries: one per part of an extent within one folio (the smallest folio,
 * a page, when there is no attachment to say). */
static inline uint64_t pt_folio_entries(const struct pt_attachment *a,
                                        const struct pt_extent *ext, uint64_t n)
{
    return bvec_entries(ext, n, a ? a->folio_shift : PT_PAGE_SHIFT);
}

/* Pages a bio_vec covers: __bio_release_pages' nr_pages. */
static inline uint32_t pt_bvec_pages(const struct pt_bvec *bv)
{
    return (uint32_t)(((uint64_t)bv->offset + bv->len - 1) >> PT_PAGE_SHIFT) + 1;
}

/* The loops of one folio design: page descriptors of 2^DS bytes; FREF(desc)
 * is the count a reference on that page's folio changes. */
#define PT_FOLIO_OPS(name, DS, FREF)                                                    \
    static inline uint8_t *name##_addr(uint8_t *data, const uint8_t *table,             \
                                       const struct pt_bvec *bv)                        \
    {                                                                                   \
        return bvec_addr(data, table, bv, DS, PT_PAGE_SHIFT);                           \
    }                                                                                   \
    static void name##_build(struct pt_attachment *a, struct pt_io *io)                 \
    {                                                                                   \
        uint8_t *const table = a->meta;                                                 \
        const struct pt_extent *ext = io->ext;                                          \
        const uint64_t n = io->n, folio = 1ULL << a->folio_shift;                       \
        const int pmd_mapped = a->folio_shift >= PT_PMD_SHIFT;                          \
        struct pt_bvec *v = io->vec;                                                    \
        uint64_t nv = 0;                                                                \
        for (uint64_t i = 0; i < n; i++) {                                              \
            uint64_t off = ext[i].off, left = ext[i].len;                               \
            /* the page descriptor twice as far ahead as `page` prefetches  \
             * its count; at page's distance, the count it leads to, read     \
             * through that descriptor, by now in cache */                    \
            if (i + 2 * PT_PREFETCH_AHEAD < n)                                          \
                pt_prefetch_read(table + ((ext[i + 2 * PT_PREFETCH_AHEAD].off >>         \
                                           PT_PAGE_SHIFT) << (DS)));                    \
            if (i + PT_PREFETCH_AHEAD < n)                                              \
                pt_prefetch_write(FREF(table + ((ext[i + PT_PREFETCH_AHEAD].off >>       \
                                                 PT_PAGE_SHIFT) << (DS))));             \
            while (left) {                                                              \
                uint64_t in_folio = off & (folio - 1);                                  \
                uint64_t chunk = folio - in_folio < left ? folio - in_folio : left;     \
                uint8_t *desc = table + ((off >> PT_PAGE_SHIFT) << (DS));               \
                v[nv].desc = desc;                                                      \
                v[nv].len = (uint32_t)chunk;                                            \
                v[nv].offset = (uint32_t)(off & (PT_PAGE_SIZE - 1));                    \
                if (pmd_mapped) {                                                       \
                    pt_ref_add(FREF(desc), (int32_t)pt_bvec_pages(&v[nv]));             \
                } else {                                                                \
                    for (uint32_t k = 0, np = pt_bvec_pages(&v[nv]); k < np; k++)       \
                        pt_get(FREF(desc + ((uint64_t)k << (DS))));                     \
                }                                                                       \
                nv++;                                                                   \
                off += chunk;                                                           \
                left -= chunk;                                                          \
            }                                                                           \
        }                                                                               \
        io->nvec = nv;                                                                  \
    }                                                                                   \
    static void name##_release(struct pt_attachment *a, struct pt_io *io)               \
    {                                                                                   \
        const struct pt_bvec *v = io->vec;                                              \
        const uint64_t nvec = io->nvec;                                                 \
        uint64_t bad = 0;                                                               \
        for (uint64_t i = 0; i < nvec; i++) {                                           \
            if (i + 2 * PT_PREFETCH_AHEAD < nvec)                                       \
                pt_prefetch_read(v[i + 2 * PT_PREFETCH_AHEAD].desc);                    \
            if (i + PT_PREFETCH_AHEAD < nvec)                                           \
                pt_prefetch_write(FREF((uint8_t *)v[i + PT_PREFETCH_AHEAD].desc));       \
            int32_t np = (int32_t)pt_bvec_pages(&v[i]);                                 \
            bad += pt_ref_sub(FREF((uint8_t *)v[i].desc), np);                          \
        }                                                                               \
        a->ref_errors += bad;                                                           \
    }                                                                                   \
    /* Cold start: the page descriptors and the counts they lead to, found \
     * by arithmetic (pt_folio_count_at), not through the descriptors,    \
     * whose loads would miss: flushing costs no more than for `page`. */  \
    static void name##_flush_meta(const struct pt_attachment *a,                        \
                                  const struct pt_extent *ext, uint64_t n,              \
                                  const struct pt_flusher *f)                           \
    {                                                                                   \
        const uint8_t *const table = a->meta;                                           \
        uintptr_t last_desc = 0, last_count = 0;                                        \
        for (uint64_t i = 0; i < n; i++) {                                              \
            uint64_t p = ext[i].off >> PT_PAGE_SHIFT;                                   \
            uint64_t end = (ext[i].off + ext[i].len - 1) >> PT_PAGE_SHIFT;              \
            for (; p <= end; p++) {                                                     \
                uintptr_t d = (uintptr_t)(table + (p << (DS))) & ~(uintptr_t)63;        \
                uintptr_t c = (uintptr_t)pt_folio_count_at(a, p, DS) & ~(uintptr_t)63;  \
                if (d != last_desc)                                                     \
                    pt_cold_flush_line(f, (const void *)d);                             \
                if (c != last_count && c != d)                                          \
                    pt_cold_flush_line(f, (const void *)c);                             \
                last_desc = d;                                                          \
                last_count = c;                                                         \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    PT_COPY_OPS(name, struct pt_bvec, name##_addr, bvec_len)

#define PT_FOLIO_OPS_FIELDS(name)                                                       \
    .entry_bytes = sizeof(struct pt_bvec), .entries = pt_folio_entries,                 \
    .build = name##_build, .gather = name##_gather, .scatter = name##_scatter,          \
    .release = name##_release, .flush_meta = name##_flush_meta

#endif /* PT_FOLIO_H */

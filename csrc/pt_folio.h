/*
 * pt_folio.h - today's I/O path and tomorrow's: folio, page32 and memdesc.
 *
 * All three build multi-page bio_vecs, one per part of an extent within one
 * folio, and pin and unpin as the kernel's direct I/O does (pt_gup.h):
 *
 *   build    mm/gup.c: GUP-fast on a PMD-mapped folio (gup_fast_pmd_leaf)
 *            grabs all the pages it covers at once,
 *            try_grab_folio_fast(page, refs): one try-add of N and, for a
 *            large folio, N on _pincount; one folio_set_referenced; on
 *            PTE-mapped pages (gup_fast_pte_range) a grab of 1 per page,
 *            each finding its folio through its own page descriptor;
 *            block/bio.c (bio_iov_add_folio, folio_size()): one bvec per
 *            folio part, the folio's order read to bound it;
 *   release  block/bio.c __bio_release_pages: bio_for_each_folio_all, one
 *            unpin_user_folio(folio, nr_pages) per folio part of a bvec,
 *            nr_pages = pages from bv_offset to bv_offset + bv_len.
 *
 * With PT_GUP_DEVMAP a PMD-mapped folio is grabbed as gup_fast_devmap_leaf
 * did for device DAX (Linux 5.17 to 6.14): per 4 KiB page a pagemap lookup
 * (get_dev_pagemap's cached range check), a grab of 1 and the referenced
 * bit.
 *
 * They differ in how a page descriptor leads to the folio's count:
 *
 *   folio    64-byte struct page; a tail's compound_head is the head's
 *            address | 1 (page_folio()), and the count is in the head page;
 *   page32   32-byte struct page whose memdesc word points (tagged) to a
 *            separately allocated folio descriptor holding the count;
 *   memdesc  the struct page is only that 8-byte tagged word.
 *
 * A design names its page descriptor size and its accessors (PT_FOLIO_OPS);
 * this header writes the loops.  For `folio` a large folio's _pincount and
 * order are in its first tail page, a second line; for page32 and memdesc
 * they sit beside the count in the folio descriptor.  The folio size is the
 * attachment's (--folio-size): 2 MiB folios are PMD-mapped (THP,
 * PMD-mapped DAX), smaller ones PTE-mapped.
 */
#ifndef PT_FOLIO_H
#define PT_FOLIO_H

#include "pt_bvec.h"
#include "pt_cold.h"
#include "pt_gup.h"

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

/* A separate folio descriptor's fields, for PT_FOLIO_OPS: the count, the
 * pin count and the flags on one line, the order beside them. */
#define PT_FDESC_COUNT(f) (&((struct pt_folio_desc *)(f))->refcount)
#define PT_FDESC_PINCOUNT(f) (&((struct pt_folio_desc *)(f))->pincount)
#define PT_FDESC_FLAGS(f) ((uint32_t *)&((struct pt_folio_desc *)(f))->flags)
#define PT_FDESC_ORDER(f) (__atomic_load_n(&((struct pt_folio_desc *)(f))->order, \
                                           __ATOMIC_RELAXED))

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

/* Where a large folio keeps _pincount and its order: the first tail struct
 * page for `folio`, beside the count in a separate folio descriptor. */
static inline const void *pt_folio_pin_at(const struct pt_attachment *a, uint64_t p,
                                          unsigned ds)
{
    const unsigned per_folio = a->folio_shift - PT_PAGE_SHIFT;
    if (a->folios)
        return &((const struct pt_folio_desc *)a->folios + (p >> per_folio))->pincount;
    return (const uint8_t *)a->meta + (((p >> per_folio << per_folio) + 1) << ds) +
           offsetof(struct pt_page, mapcount);
}

/* get_dev_pagemap(pfn, pgmap) with the pgmap of the last page: the range
 * check that answers every page of a namespace but the first. */
static inline int pt_pgmap_hit(const struct pt_attachment *a, uint64_t page)
{
    const volatile uint64_t *range = a->pgmap_range;
    return page >= range[0] && page <= range[1];
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

/*
 * The loops of one folio design: page descriptors of 2^DS bytes, and its
 * accessors: FOLIO(desc) the folio a page descriptor leads to (page_folio),
 * HEAD(desc) the word page_folio() reads, COUNT(folio) its _refcount,
 * PINCOUNT(folio) its _pincount, FLAGS(folio) its flags, ORDER(folio) its
 * order (the last two only read for large folios).
 */
#define PT_FOLIO_OPS(name, DS, FOLIO, HEAD, COUNT, PINCOUNT, FLAGS, ORDER)               \
    static inline uint8_t *name##_addr(uint8_t *data, const uint8_t *table,             \
                                       const struct pt_bvec *bv)                        \
    {                                                                                   \
        return bvec_addr(data, table, bv, DS, PT_PAGE_SHIFT);                           \
    }                                                                                   \
    static inline int32_t *name##_count_of(uint8_t *desc)                               \
    {                                                                                   \
        return COUNT(FOLIO(desc));                                                      \
    }                                                                                   \
    /* one page's grab: gup_fast_pte_range, or the devmap leaf's per page */            \
    static inline int name##_grab_page(const struct pt_attachment *a, uint8_t *desc,    \
                                       int large, uint64_t *pins)                       \
    {                                                                                   \
        const uint64_t seen = __atomic_load_n(HEAD(desc), __ATOMIC_RELAXED);            \
        void *f = FOLIO(desc);                                                          \
        return pt_gup_grab(a->gup, COUNT(f), large ? PINCOUNT(f) : NULL, FLAGS(f),      \
                           HEAD(desc), seen, 1, pins);                                  \
    }                                                                                   \
    static void name##_build(struct pt_attachment *a, struct pt_io *io)                 \
    {                                                                                   \
        uint8_t *const table = a->meta;                                                 \
        const struct pt_extent *ext = io->ext;                                          \
        const uint64_t n = io->n;                                                       \
        const int large = a->folio_shift > PT_PAGE_SHIFT;                               \
        const int pmd_mapped = a->folio_shift >= PT_PMD_SHIFT;                          \
        const int devmap = pmd_mapped && (a->gup & PT_GUP_DEVMAP);                      \
        struct pt_bvec *v = io->vec;                                                    \
        uint64_t nv = 0, pins = 0, bad = 0;                                             \
        for (uint64_t i = 0; i < n; i++) {                                              \
            uint64_t off = ext[i].off, left = ext[i].len;                               \
            if (i + PT_PREFETCH_DESC_AHEAD < n)                                         \
                pt_prefetch_read(table + ((ext[i + PT_PREFETCH_DESC_AHEAD].off >>        \
                                           PT_PAGE_SHIFT) << (DS)));                    \
            if (i + PT_PREFETCH_AHEAD < n)                                              \
                pt_prefetch_write(name##_count_of(table + ((ext[i + PT_PREFETCH_AHEAD].off \
                                                            >> PT_PAGE_SHIFT) << (DS)))); \
            while (left) {                                                              \
                uint8_t *desc = table + ((off >> PT_PAGE_SHIFT) << (DS));               \
                void *f = FOLIO(desc);                                                  \
                /* folio_size(): the order bounds the bvec (a load for large ones) */   \
                const uint64_t fbytes = large ? PT_PAGE_SIZE << ORDER(f) : PT_PAGE_SIZE;\
                uint64_t in_folio = off & (fbytes - 1);                                 \
                uint64_t chunk = fbytes - in_folio < left ? fbytes - in_folio : left;   \
                v[nv].desc = desc;                                                      \
                v[nv].len = (uint32_t)chunk;                                            \
                v[nv].offset = (uint32_t)(off & (PT_PAGE_SIZE - 1));                    \
                const uint32_t np = pt_bvec_pages(&v[nv]);                              \
                if (pmd_mapped && !devmap) {                                            \
                    const uint64_t seen = __atomic_load_n(HEAD(desc), __ATOMIC_RELAXED); \
                    bad += pt_gup_grab(a->gup, COUNT(f), PINCOUNT(f), FLAGS(f), HEAD(desc), \
                                       seen, (int32_t)np, &pins);                       \
                } else {                                                                \
                    for (uint32_t k = 0; k < np; k++) {                                 \
                        if (devmap)                                                     \
                            bad += !pt_pgmap_hit(a, (off >> PT_PAGE_SHIFT) + k);        \
                        bad += name##_grab_page(a, desc + ((uint64_t)k << (DS)), large, \
                                                &pins);                                 \
                    }                                                                   \
                }                                                                       \
                nv++;                                                                   \
                off += chunk;                                                           \
                left -= chunk;                                                          \
            }                                                                           \
        }                                                                               \
        io->nvec = nv;                                                                  \
        a->pin_stat += pins;                                                            \
        a->ref_errors += bad;                                                           \
    }                                                                                   \
    static void name##_release(struct pt_attachment *a, struct pt_io *io)               \
    {                                                                                   \
        const struct pt_bvec *v = io->vec;                                              \
        const uint64_t nvec = io->nvec;                                                 \
        const int large = a->folio_shift > PT_PAGE_SHIFT;                               \
        uint64_t bad = 0, pins = 0;                                                     \
        for (uint64_t i = 0; i < nvec; i++) {                                           \
            if (i + PT_PREFETCH_DESC_AHEAD < nvec)                                      \
                pt_prefetch_read(v[i + PT_PREFETCH_DESC_AHEAD].desc);                   \
            if (i + PT_PREFETCH_AHEAD < nvec)                                           \
                pt_prefetch_write(name##_count_of((uint8_t *)v[i + PT_PREFETCH_AHEAD].desc)); \
            void *f = FOLIO((uint8_t *)v[i].desc);                                      \
            bad += pt_gup_release(a->gup, COUNT(f), large ? PINCOUNT(f) : NULL,         \
                                  (int32_t)pt_bvec_pages(&v[i]), &pins);                \
        }                                                                               \
        a->ref_errors += bad;                                                           \
        a->pin_stat += pins;                                                            \
    }                                                                                   \
    /* Cold start: the page descriptors, the counts they lead to and a large \
     * folio's _pincount line, found by arithmetic (pt_folio_count_at), not \
     * through the descriptors, whose loads would miss. */                  \
    static void name##_flush_meta(const struct pt_attachment *a,                        \
                                  const struct pt_extent *ext, uint64_t n,              \
                                  const struct pt_flusher *f)                           \
    {                                                                                   \
        const uint8_t *const table = a->meta;                                           \
        const int large = a->folio_shift > PT_PAGE_SHIFT;                               \
        uintptr_t last_desc = 0, last_count = 0, last_pin = 0;                          \
        for (uint64_t i = 0; i < n; i++) {                                              \
            uint64_t p = ext[i].off >> PT_PAGE_SHIFT;                                   \
            uint64_t end = (ext[i].off + ext[i].len - 1) >> PT_PAGE_SHIFT;              \
            for (; p <= end; p++) {                                                     \
                uintptr_t d = (uintptr_t)(table + (p << (DS))) & ~(uintptr_t)63;        \
                uintptr_t c = (uintptr_t)pt_folio_count_at(a, p, DS) & ~(uintptr_t)63;  \
                uintptr_t q = large ? (uintptr_t)pt_folio_pin_at(a, p, DS) & ~(uintptr_t)63 \
                                    : c;                                                \
                if (d != last_desc)                                                     \
                    pt_cold_flush_line(f, (const void *)d);                             \
                if (c != last_count && c != d)                                          \
                    pt_cold_flush_line(f, (const void *)c);                             \
                if (q != last_pin && q != c && q != d)                                  \
                    pt_cold_flush_line(f, (const void *)q);                             \
                last_desc = d;                                                          \
                last_count = c;                                                         \
                last_pin = q;                                                           \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    PT_COPY_OPS(name, struct pt_bvec, name##_addr, bvec_len)

#define PT_FOLIO_OPS_FIELDS(name)                                                       \
    .entry_bytes = sizeof(struct pt_bvec), .entries = pt_folio_entries,                 \
    .build = name##_build, .gather = name##_gather, .scatter = name##_scatter,          \
    .release = name##_release, .flush_meta = name##_flush_meta

#endif /* PT_FOLIO_H */

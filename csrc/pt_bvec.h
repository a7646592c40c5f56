/*
 * pt_bvec.h - the bio_vec family: page, altmap, memdesc and huge.
 *
 * Their entries are all {descriptor, len, offset}, one per (compound) page an
 * extent touches, with a pin taken on the descriptor at build and dropped
 * at release as the kernel's direct I/O does (pt_gup.h): each 4 KiB page is
 * a small folio, and `huge`'s 2 MiB page a large one.  They differ only in
 * the descriptor's size, the page size a descriptor stands for, and where
 * the table lives.  The loops below
 * take those as compile-time constants: each design instantiates them with
 * PT_BVEC_OPS, so every design still gets its own specialised hot loops.
 */
#ifndef PT_BVEC_H
#define PT_BVEC_H

#include <stddef.h>
#include "pt_gup.h"

/* The size of struct page on x86-64; the fields stand in for the real ones. */
struct pt_page {
    uint64_t flags;
    uint64_t lru[2];          /* or compound_head */
    void *mapping;
    uint64_t index;
    uint64_t private_;
    int32_t mapcount;
    int32_t refcount;         /* _refcount */
    uint64_t memcg_data;
};
_Static_assert(sizeof(struct pt_page) == 64, "struct page is 64 bytes");

#define PT_PAGE_DESC_SHIFT 6  /* log2(sizeof(struct pt_page)) */
#define PT_PAGE_FLAGS offsetof(struct pt_page, flags)
#define PT_PAGE_HEAD offsetof(struct pt_page, lru)   /* compound_head, page_folio() reads */

struct pt_bvec {
    void *desc;               /* struct page *, or another descriptor */
    uint32_t len;
    uint32_t offset;          /* within the (compound) page */
};
_Static_assert(sizeof(struct pt_bvec) == 16, "bio_vec is 16 bytes");

/* Anonymous DRAM table of n descriptors of 2^desc_shift bytes, each at
 * refcount 1 (ZONE_DEVICE pages sit there while the device is live).
 * Exactly n << desc_shift bytes, so RSS growth can be checked against it. */
int pt_table_alloc(struct pt_attachment *a, uint64_t n, unsigned desc_shift,
                   size_t ref_off, struct pt_error *err);
void pt_table_free(struct pt_attachment *a);
/* `bytes` of zeroed DRAM, 2 MiB-aligned and advised as vmemmap is (or 4 KiB
 * pages with PT_ATTACH_TABLE_4K); NULL with err set on failure. */
void *pt_dram_map(const struct pt_attachment *a, uint64_t bytes, struct pt_error *err);
/* Initialise n descriptors at `table` (which may be on the backing). */
void pt_table_init(void *table, uint64_t n, unsigned desc_shift, size_t ref_off);
/* The same for a table on the backing, where a truncated file or a media
 * error raises SIGBUS: under the guard, PT_EFAULT instead. */
int pt_table_init_on_backing(struct pt_attachment *a, void *table, uint64_t n,
                             unsigned desc_shift, size_t ref_off, struct pt_error *err);

/* Descriptors for `capacity` bytes, one per 2^page_shift bytes or part of them. */
static inline uint64_t pt_desc_count(uint64_t capacity, unsigned page_shift)
{
    return (capacity + (1ULL << page_shift) - 1) >> page_shift;
}

/* The per-capacity ops of a design whose table is in DRAM: one 2^DS-byte
 * descriptor per 2^PS bytes of data, reference count at byte RO of it.
 * metadata() is the model, attach() allocates exactly that. */
#define PT_DRAM_TABLE_OPS(name, DS, PS, RO)                                             \
    static void name##_metadata(uint64_t capacity, struct pt_metadata *out)            \
    {                                                                                   \
        out->dram_bytes = pt_desc_count(capacity, PS) << (DS);                          \
        out->device_bytes = 0;                                                          \
    }                                                                                   \
    static int name##_attach(struct pt_attachment *a, struct pt_error *err)            \
    {                                                                                   \
        return pt_table_alloc(a, pt_desc_count(a->data_bytes, PS), DS, RO, err);       \
    }

#define PT_DRAM_TABLE_FIELDS(name)                                                      \
    .attach = name##_attach, .detach = pt_table_free, .metadata = name##_metadata

/* A refcounting design's table geometry, for the engine (cold flush) and
 * the read-back of counts. */
#define PT_TABLE_FIELDS(DS, PS, RO)                                                     \
    .desc_shift = (DS), .page_shift = (PS), .ref_off = (RO)

static inline int32_t *bvec_ref(void *desc, size_t ref_off)
{
    return (int32_t *)((uint8_t *)desc + ref_off);
}

/* page_to_virt() on vmemmap: arithmetic on the descriptor's address only. */
static inline uint8_t *bvec_addr(uint8_t *data, const uint8_t *table, const struct pt_bvec *bv,
                                 unsigned ds, unsigned ps)
{
    return data + ((uint64_t)((const uint8_t *)bv->desc - table) >> ds << ps) + bv->offset;
}

static inline uint64_t bvec_len(const struct pt_bvec *bv)
{
    return bv->len;
}

static inline uint64_t bvec_entries(const struct pt_extent *ext, uint64_t n, unsigned ps)
{
    uint64_t e = 0;
    for (uint64_t i = 0; i < n; i++)
        e += ((ext[i].off + ext[i].len - 1) >> ps) - (ext[i].off >> ps) + 1;
    return e;
}

#define PT_NO_PIN ((size_t)-1)

/* One entry per (compound) page an extent touches, a pin on each: count at
 * byte ro of the descriptor, flags at fo, page_folio()'s word at ho
 * (PT_NO_HEAD: none), _pincount at po (PT_NO_PIN: a small folio). */
static inline void bvec_build(struct pt_attachment *a, struct pt_io *io, unsigned ds,
                              unsigned ps, size_t ro, size_t fo, size_t ho, size_t po)
{
    uint8_t *const table = a->meta;
    const struct pt_extent *ext = io->ext;
    const uint64_t n = io->n, page = 1ULL << ps;
    const unsigned gup = a->gup;
    struct pt_bvec *v = io->vec;
    uint64_t nv = 0, pins = 0, bad = 0;

    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = ext[i].off, left = ext[i].len;
        if (i + PT_PREFETCH_DESC_AHEAD < n)
            pt_prefetch_read(table + ((ext[i + PT_PREFETCH_DESC_AHEAD].off >> ps) << ds));
        if (i + PT_PREFETCH_AHEAD < n)
            pt_prefetch_write(table + ((ext[i + PT_PREFETCH_AHEAD].off >> ps) << ds) + ro);
        while (left) {
            uint64_t in_page = off & (page - 1);
            uint64_t chunk = page - in_page < left ? page - in_page : left;
            uint8_t *desc = table + ((off >> ps) << ds);
            bad += pt_gup_grab_desc(gup, desc, ro, fo, ho,
                                    po == PT_NO_PIN ? NULL : (int32_t *)(desc + po), 1, &pins);
            v[nv].desc = desc;
            v[nv].len = (uint32_t)chunk;
            v[nv].offset = (uint32_t)in_page;
            nv++;
            off += chunk;
            left -= chunk;
        }
    }
    io->nvec = nv;
    a->pin_stat += pins;
    a->ref_errors += bad;
}

/* The ops of one bio_vec design: descriptor size 2^DS bytes, one
 * descriptor per 2^PS bytes of data; in a descriptor the count at byte RO,
 * the flags at FO, page_folio()'s word at HO, _pincount at PO (PT_NO_PIN
 * for a small folio).  The accessors bind those constants; pt_loops.h
 * writes the loops. */
#define PT_BVEC_OPS(name, DS, PS, RO, FO, HO, PO)                                       \
    static inline uint8_t *name##_addr(uint8_t *data, const uint8_t *table,             \
                                       const struct pt_bvec *bv)                        \
    {                                                                                   \
        return bvec_addr(data, table, bv, DS, PS);                                      \
    }                                                                                   \
    static inline int32_t *name##_ref(const struct pt_bvec *bv)                         \
    {                                                                                   \
        return bvec_ref(bv->desc, RO);                                                  \
    }                                                                                   \
    static inline int32_t *name##_pin(const struct pt_bvec *bv)                         \
    {                                                                                   \
        return (PO) == PT_NO_PIN ? NULL : bvec_ref(bv->desc, PO);                       \
    }                                                                                   \
    static uint64_t name##_entries(const struct pt_attachment *a,                       \
                                   const struct pt_extent *ext, uint64_t n)             \
    {                                                                                   \
        (void)a;                                                                        \
        return bvec_entries(ext, n, PS);                                                \
    }                                                                                   \
    static void name##_build(struct pt_attachment *a, struct pt_io *io)                 \
    {                                                                                   \
        bvec_build(a, io, DS, PS, RO, FO, HO, PO);                                      \
    }                                                                                   \
    PT_COPY_OPS(name, struct pt_bvec, name##_addr, bvec_len)                            \
    PT_RELEASE_OPS(name, struct pt_bvec, name##_ref, name##_pin, pt_one_ref, 0)

#define PT_BVEC_OPS_FIELDS(name)                                                        \
    .entry_bytes = sizeof(struct pt_bvec), .entries = name##_entries,                   \
    .build = name##_build, .gather = name##_gather, .scatter = name##_scatter,          \
    .release = name##_release

#endif /* PT_BVEC_H */

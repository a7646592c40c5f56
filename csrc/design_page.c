/*
 * page - a 64-byte struct page per 4 KiB page, in DRAM, and bio_vec entries
 * {page, len, offset}, one per page an extent touches.
 *
 * Build takes a reference per entry (get_page: an atomic increment on the
 * descriptor), release drops it (put_page: atomic decrement and test).  The
 * data address is computed from the descriptor's index in the table, as
 * page_to_virt() does on a vmemmap kernel, so the copy never reads the
 * descriptor; build and release do, and that is where their misses are.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>

#include "pt_internal.h"

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

struct bio_vec {
    struct pt_page *page;
    uint32_t len;
    uint32_t offset;
};
_Static_assert(sizeof(struct bio_vec) == 16, "bio_vec is 16 bytes");

static uint64_t page_count(uint64_t capacity)
{
    return (capacity + PT_PAGE_SIZE - 1) >> PT_PAGE_SHIFT;
}

static void page_metadata(uint64_t capacity, struct pt_metadata *out)
{
    out->dram_bytes = page_count(capacity) * sizeof(struct pt_page);
    out->device_bytes = 0;
}

static int page_attach(struct pt_attachment *a, struct pt_error *err)
{
    uint64_t npages = page_count(a->data_bytes);
    uint64_t bytes = npages * sizeof(struct pt_page);
    struct pt_page *table;

    /* Anonymous memory: exactly the table, so RSS growth can be checked. */
    table = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (table == MAP_FAILED)
        return pt_set_error(err, PT_ENOMEM, errno, 0,
                            "cannot allocate a descriptor table of %llu bytes",
                            (unsigned long long)bytes);
    /* ZONE_DEVICE pages sit at refcount 1 while the device is live. */
    for (uint64_t i = 0; i < npages; i++) {
        memset(&table[i], 0, sizeof(table[i]));
        table[i].index = i;
        table[i].refcount = 1;
    }
    a->meta = table;
    a->meta_bytes = bytes;
    return PT_OK;
}

static void page_detach(struct pt_attachment *a)
{
    munmap(a->meta, a->meta_bytes);
}

static uint64_t page_entries(const struct pt_attachment *a, const struct pt_extent *ext,
                             uint64_t n)
{
    uint64_t e = 0;
    (void)a;
    for (uint64_t i = 0; i < n; i++)
        e += ((ext[i].off + ext[i].len - 1) >> PT_PAGE_SHIFT) - (ext[i].off >> PT_PAGE_SHIFT) + 1;
    return e;
}

/* page_to_virt() on vmemmap: arithmetic on the descriptor's address only. */
static inline uint8_t *bvec_addr(uint8_t *data, const struct pt_page *table,
                                 const struct bio_vec *bv)
{
    return data + ((uint64_t)(bv->page - table) << PT_PAGE_SHIFT) + bv->offset;
}

static void page_build(struct pt_attachment *a, struct pt_io *io)
{
    struct pt_page *const table = a->meta;
    const struct pt_extent *ext = io->ext;
    const uint64_t n = io->n;
    struct bio_vec *v = io->vec;
    uint64_t nv = 0;

    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = ext[i].off, left = ext[i].len;
        if (i + PT_PREFETCH_AHEAD < n)
            pt_prefetch_write(&table[ext[i + PT_PREFETCH_AHEAD].off >> PT_PAGE_SHIFT]);
        while (left) {
            uint64_t in_page = off & (PT_PAGE_SIZE - 1);
            uint64_t chunk = PT_PAGE_SIZE - in_page < left ? PT_PAGE_SIZE - in_page : left;
            struct pt_page *pg = &table[off >> PT_PAGE_SHIFT];
            __atomic_fetch_add(&pg->refcount, 1, __ATOMIC_RELAXED);  /* get_page */
            v[nv].page = pg;
            v[nv].len = (uint32_t)chunk;
            v[nv].offset = (uint32_t)in_page;
            nv++;
            off += chunk;
            left -= chunk;
        }
    }
    io->nvec = nv;
}

static int page_gather(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    const struct bio_vec *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint8_t *const data = a->data;
    const struct pt_page *const table = a->meta;
    uint8_t *dst = io->buf;
    (void)err;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_read(bvec_addr(data, table, &v[i + PT_PREFETCH_AHEAD]));
        pt_copy_seg(dst, bvec_addr(data, table, &v[i]), v[i].len);
        dst += v[i].len;
    }
    return PT_OK;
}

static int page_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    const struct bio_vec *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint8_t *const data = a->data;
    const struct pt_page *const table = a->meta;
    const uint8_t *src = io->buf;
    (void)err;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_write(bvec_addr(data, table, &v[i + PT_PREFETCH_AHEAD]));
        pt_copy_seg(bvec_addr(data, table, &v[i]), src, v[i].len);
        src += v[i].len;
    }
    return PT_OK;
}

static void page_release(struct pt_attachment *a, struct pt_io *io)
{
    const struct bio_vec *v = io->vec;
    const uint64_t nvec = io->nvec;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_write(v[i + PT_PREFETCH_AHEAD].page);
        /* put_page: the last put would free the page; here it is a bug. */
        bad += __atomic_sub_fetch(&v[i].page->refcount, 1, __ATOMIC_ACQ_REL) <= 0;
    }
    a->ref_errors += bad;
}

const struct pt_design_ops pt_design_page = {
    .name = "page",
    .entry_bytes = sizeof(struct bio_vec),
    .attach = page_attach,
    .detach = page_detach,
    .metadata = page_metadata,
    .entries = page_entries,
    .build = page_build,
    .gather = page_gather,
    .scatter = page_scatter,
    .release = page_release,
};

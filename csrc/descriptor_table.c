/*
 * descriptor_table.c - per-capacity descriptor tables for the bio_vec family
 * and sgl: allocation in DRAM, and initialisation wherever they live.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#include "pt_bvec.h"
#include "pt_guard.h"

void pt_table_init(void *table, uint64_t n, unsigned desc_shift, size_t ref_off)
{
    uint8_t *p = table;
    uint64_t size = 1ULL << desc_shift;
    for (uint64_t i = 0; i < n; i++, p += size) {
        memset(p, 0, size);
        *bvec_ref(p, ref_off) = 1;
    }
}

struct table_init_args {
    void *table;
    uint64_t n;
    unsigned desc_shift;
    size_t ref_off;
};

static int table_init_call(void *arg, struct pt_error *err)
{
    const struct table_init_args *t = arg;
    (void)err;
    pt_table_init(t->table, t->n, t->desc_shift, t->ref_off);
    return PT_OK;
}

int pt_table_init_on_backing(struct pt_attachment *a, void *table, uint64_t n,
                             unsigned desc_shift, size_t ref_off, struct pt_error *err)
{
    struct table_init_args t = { table, n, desc_shift, ref_off };
    return pt_guarded(a->backing, table_init_call, &t,
                      "initialising the descriptor table kept on the backing", err);
}

#define TABLE_ALIGN (2ULL << 20)

/*
 * The kernel maps vmemmap with 2 MiB pages, so a table starts 2 MiB-aligned
 * and is advised MADV_HUGEPAGE before it is touched: with THP allowed
 * (enabled = always or madvise), whole 2 MiB stretches fault in as huge
 * pages.  The mapping is exactly the model's bytes (RSS is checked against
 * it); a tail short of 2 MiB stays on 4 KiB pages.  pagetax reads the
 * page size back from smaps.  PT_ATTACH_TABLE_4K opts out, for comparison.
 */
void *pt_dram_map(const struct pt_attachment *a, uint64_t bytes, struct pt_error *err)
{
    uint64_t mapped, lead;
    uint8_t *area, *table;

    if (bytes > PT_MAX_CAPACITY)
        return pt_set_error(err, PT_EINVAL, 0, 0, "a table of %llu bytes is too large",
                            (unsigned long long)bytes), NULL;
    mapped = (bytes + PT_PAGE_SIZE - 1) & ~(PT_PAGE_SIZE - 1);
    area = mmap(NULL, mapped + TABLE_ALIGN, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return pt_set_error(err, PT_ENOMEM, errno, 0,
                            "cannot allocate a descriptor table of %llu bytes: %s",
                            (unsigned long long)bytes, strerror(errno)), NULL;
    lead = (TABLE_ALIGN - (uintptr_t)area % TABLE_ALIGN) % TABLE_ALIGN;
    table = area + lead;
    if (lead)
        munmap(area, lead);
    munmap(table + mapped, TABLE_ALIGN - lead);
    /* Advice, not a requirement: where THP is off the table stays on 4 KiB
     * pages, and the results say so. */
    madvise(table, bytes, (a->attach_flags & PT_ATTACH_TABLE_4K) ? MADV_NOHUGEPAGE
                                                                  : MADV_HUGEPAGE);
    return table;
}

int pt_table_alloc(struct pt_attachment *a, uint64_t n, unsigned desc_shift, size_t ref_off,
                   struct pt_error *err)
{
    uint8_t *table;

    if (n > (UINT64_MAX >> desc_shift) - TABLE_ALIGN)
        return pt_set_error(err, PT_EINVAL, 0, 0, "a table of %llu descriptors is too large",
                            (unsigned long long)n);
    if (!(table = pt_dram_map(a, n << desc_shift, err)))
        return err ? err->code : PT_ENOMEM;
    pt_table_init(table, n, desc_shift, ref_off);
    a->meta = table;
    a->meta_bytes = n << desc_shift;
    a->ndesc = n;
    return PT_OK;
}

void pt_table_free(struct pt_attachment *a)
{
    munmap(a->meta, a->meta_bytes);
}

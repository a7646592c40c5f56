/*
 * descriptor_table.c - per-capacity descriptor tables for the bio_vec family
 * and sgl: allocation in DRAM, and initialisation wherever they live.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>

#include "pt_bvec.h"

void pt_table_init(void *table, uint64_t n, unsigned desc_shift, size_t ref_off)
{
    uint8_t *p = table;
    uint64_t size = 1ULL << desc_shift;
    for (uint64_t i = 0; i < n; i++, p += size) {
        memset(p, 0, size);
        *bvec_ref(p, ref_off) = 1;
    }
}

int pt_table_alloc(struct pt_attachment *a, uint64_t n, unsigned desc_shift, size_t ref_off,
                   struct pt_error *err)
{
    uint64_t bytes = n << desc_shift;
    void *table = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (table == MAP_FAILED)
        return pt_set_error(err, PT_ENOMEM, errno, 0,
                            "cannot allocate a descriptor table of %llu bytes: %s",
                            (unsigned long long)bytes, strerror(errno));
    pt_table_init(table, n, desc_shift, ref_off);
    a->meta = table;
    a->meta_bytes = bytes;
    return PT_OK;
}

void pt_table_free(struct pt_attachment *a)
{
    munmap(a->meta, a->meta_bytes);
}

/*
 * pfn - pfn_t-style entries {pfn, len, offset}, the 2015 __pfn_t RFC.
 * The address is computed from the page frame number; no descriptor exists.
 * An entry may span pages, as a physically contiguous pfn range may.
 */
#include "pt_loops.h"

struct pfn_entry {
    uint64_t pfn;       /* pfn_t: a frame number relative to the data area */
    uint32_t len;
    uint32_t offset;    /* within the first page */
};
_Static_assert(sizeof(struct pfn_entry) == 16, "pfn_t + len + offset");

static inline uint8_t *pfn_addr(uint8_t *data, const uint8_t *table, const struct pfn_entry *e)
{
    (void)table;
    return data + (e->pfn << PT_PAGE_SHIFT) + e->offset;
}

static inline uint64_t pfn_len(const struct pfn_entry *e)
{
    return e->len;
}

static void pfn_build(struct pt_attachment *a, struct pt_io *io)
{
    struct pfn_entry *v = io->vec;
    (void)a;
    for (uint64_t i = 0; i < io->n; i++) {
        uint64_t off = io->ext[i].off;
        v[i].pfn = off >> PT_PAGE_SHIFT;
        v[i].len = (uint32_t)io->ext[i].len;
        v[i].offset = (uint32_t)(off & (PT_PAGE_SIZE - 1));
    }
    io->nvec = io->n;
}

PT_COPY_OPS(pfn, struct pfn_entry, pfn_addr, pfn_len)

const struct pt_design_ops pt_design_pfn = {
    .name = "pfn",
    .entry_bytes = sizeof(struct pfn_entry),
    .metadata = pt_metadata_none,
    .entries = pt_entries_per_extent,
    .build = pfn_build,
    .gather = pfn_gather,
    .scatter = pfn_scatter,
    .release = pt_release_nothing,
};

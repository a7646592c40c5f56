/*
 * libpmem, libpmem-nodrain - peers, not designs: `vec` entries written with
 * PMDK's libpmem, loaded at run time (pagetax/peers.py), so that pagetax
 * builds and runs without it.
 *   libpmem:          pmem_memcpy_persist per segment (copy, flush, drain);
 *   libpmem-nodrain:  pmem_memcpy_nodrain per segment, one pmem_drain per I/O.
 * Writes only: a gather through libpmem is a plain memcpy.
 */
#include "pt_internal.h"

typedef void *(*pmem_copy_fn)(void *dst, const void *src, size_t len);
typedef void (*pmem_drain_fn)(void);

static pmem_copy_fn copy_persist, copy_nodrain;
static pmem_drain_fn drain;

/* Set once, before any run, by the Python loader. */
void pt_set_libpmem(void *memcpy_persist, void *memcpy_nodrain, void *pmem_drain)
{
    copy_persist = (pmem_copy_fn)memcpy_persist;
    copy_nodrain = (pmem_copy_fn)memcpy_nodrain;
    drain = (pmem_drain_fn)pmem_drain;
}

static int libpmem_attach(struct pt_attachment *a, struct pt_error *err)
{
    (void)a;
    if (!copy_persist || !copy_nodrain || !drain)
        return pt_set_error(err, PT_EARG, 0, 0, "libpmem is not loaded");
    return PT_OK;
}

static int libpmem_gather(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    (void)a;
    (void)io;
    return pt_set_error(err, PT_EARG, 0, 0, "the libpmem peers write only");
}

/* Every segment through `copy`; pmem_drain once at the end, or (when `copy`
 * is pmem_memcpy_persist, which drains itself) once per segment. */
static int pmem_scatter(struct pt_io *io, pmem_copy_fn copy, int drain_once)
{
    const struct pt_span *v = io->vec;
    const uint64_t nvec = io->nvec;
    const uint8_t *src = io->buf;
    for (uint64_t i = 0; i < nvec; i++) {
        if (i + PT_PREFETCH_AHEAD < nvec)
            pt_prefetch_write(v[i + PT_PREFETCH_AHEAD].addr);
        copy(v[i].addr, src, v[i].len);
        src += v[i].len;
    }
    if (drain_once)
        drain();
    io->fences += drain_once ? 1 : nvec;
    return PT_OK;
}

static int libpmem_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    (void)a;
    (void)err;
    return pmem_scatter(io, copy_persist, 0);
}

static int nodrain_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    (void)a;
    (void)err;
    return pmem_scatter(io, copy_nodrain, 1);
}

const struct pt_design_ops pt_design_libpmem = {
    .name = "libpmem",
    .flags = PT_DESIGN_PEER | PT_DESIGN_OWN_PERSIST,
    .entry_bytes = sizeof(struct pt_span),
    .attach = libpmem_attach,
    .metadata = pt_metadata_none,
    .entries = pt_entries_per_extent,
    .build = pt_build_spans,
    .gather = libpmem_gather,
    .scatter = libpmem_scatter,
    .release = pt_release_nothing,
};

const struct pt_design_ops pt_design_libpmem_nodrain = {
    .name = "libpmem-nodrain",
    .flags = PT_DESIGN_PEER | PT_DESIGN_OWN_PERSIST,
    .entry_bytes = sizeof(struct pt_span),
    .attach = libpmem_attach,
    .metadata = pt_metadata_none,
    .entries = pt_entries_per_extent,
    .build = pt_build_spans,
    .gather = libpmem_gather,
    .scatter = nodrain_scatter,
    .release = pt_release_nothing,
};

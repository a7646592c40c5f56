/*
 * libpmem, libpmem-nodrain - peers, not designs: `vec` entries written with
 * PMDK's libpmem, loaded at run time (pagetax/peers.py), so that pagetax
 * builds and runs without it.
 *   libpmem:          pmem_memcpy_persist per segment (copy, flush, drain);
 *   libpmem-nodrain:  pmem_memcpy_nodrain per segment, one pmem_drain per I/O.
 * Writes only: a gather through libpmem is a plain memcpy.
 */
#include "pt_loops.h"

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

/* pmem_memcpy_persist drains itself: a fence per segment, counted here.
 * pmem_memcpy_nodrain leaves it to one pmem_drain per I/O. */
#define PERSIST_STORE(d, s, len, mode) (copy_persist((d), (s), (len)), 0)
#define NODRAIN_STORE(d, s, len, mode) (copy_nodrain((d), (s), (len)), 0)
#define COUNTED_FENCE(mode) 1
#define DRAIN(mode) (drain(), 1)

PT_SCATTER_LOOP(persist_loop, struct pt_span, pt_span_addr, pt_span_len, PERSIST_STORE,
                COUNTED_FENCE)
PT_SCATTER_LOOP(nodrain_loop, struct pt_span, pt_span_addr, pt_span_len, NODRAIN_STORE, DRAIN)

static int libpmem_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    (void)err;
    return persist_loop(a, io, PT_PERSIST_NONE, 1);
}

static int nodrain_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    (void)err;
    return nodrain_loop(a, io, PT_PERSIST_NONE, 0);
}

/* The two peers differ only in their scatter. */
#define LIBPMEM_OPS(pname, scatter_fn)                                                  \
    {                                                                                   \
        .name = pname, .flags = PT_DESIGN_PEER | PT_DESIGN_OWN_PERSIST,                 \
        .entry_bytes = sizeof(struct pt_span), .attach = libpmem_attach,                \
        .metadata = pt_metadata_none, .entries = pt_entries_per_extent,                 \
        .build = pt_build_spans, .gather = libpmem_gather, .scatter = scatter_fn,       \
        .release = pt_release_nothing,                                                  \
    }

const struct pt_design_ops pt_design_libpmem = LIBPMEM_OPS("libpmem", libpmem_scatter);
const struct pt_design_ops pt_design_libpmem_nodrain =
    LIBPMEM_OPS("libpmem-nodrain", nodrain_scatter);

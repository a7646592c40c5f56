/*
 * attach.c - a design attached to a backing: its per-capacity state, the
 * checks every extent passes before memory is touched, the vector, and the
 * read-back of reference counts (with pt_hold for a look mid-I/O).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pt_guard.h"
#include "pt_gup.h"

/* Resident bytes of this process, from /proc/self/statm.  open/read into a
 * stack buffer: stdio would allocate, and move the figure it reads. */
static int64_t resident_bytes(void)
{
    char text[128];
    long size = 0, resident = 0;
    ssize_t got;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    got = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (got <= 0)
        return 0;
    text[got] = 0;
    if (sscanf(text, "%ld %ld", &size, &resident) != 2)
        return 0;
    return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

int pt_attach(pt_backing *b, int design, uint64_t data_off, uint64_t data_bytes, int flags,
              pt_attachment **out, struct pt_error *err)
{
    const struct pt_design_ops *ops = pt_design_ops_of(design);
    struct pt_attachment *a;
    int64_t rss0;
    int rc;

    *out = NULL;
    if (!ops)
        return pt_set_error(err, PT_EINVAL, 0, 0, "no design number %d (there are %d)",
                            design, pt_design_count());
    unsigned folio_shift = (unsigned)flags / PT_ATTACH_FOLIO_SHIFT;
    const int known = PT_ATTACH_TABLE_4K | PT_ATTACH_GUP_GET | PT_ATTACH_GUP_PLAIN_ADD |
                      PT_ATTACH_GUP_NO_RECHECK | PT_ATTACH_GUP_NO_REFERENCED |
                      PT_ATTACH_GUP_DEVMAP;
    if (flags & ~known & (PT_ATTACH_FOLIO_SHIFT - 1))
        return pt_set_error(err, PT_EARG, 0, 0, "unknown attach flags %#x", (unsigned)flags);
    if (folio_shift == 0)
        folio_shift = PT_PAGE_SHIFT;
    if (folio_shift < PT_PAGE_SHIFT || folio_shift > PT_MAX_FOLIO_SHIFT)
        return pt_set_error(err, PT_EARG, 0, 0, "a folio of 2^%u bytes is not 4 KiB to 2 MiB",
                            folio_shift);
    if (folio_shift != PT_PAGE_SHIFT && !(ops->flags & PT_DESIGN_FOLIOS))
        return pt_set_error(err, PT_EARG, 0, 0, "%s has no folios to size", ops->name);
    if (data_off == 0 && data_bytes == 0 &&
        pt_design_layout(design, b->size, &data_off, &data_bytes))
        return pt_set_error(err, PT_EINVAL, 0, 0, "a %llu-byte backing is too small for %s",
                            (unsigned long long)b->size, ops->name);
    if (data_off % PT_PAGE_SIZE || data_bytes == 0 || data_off > b->size ||
        data_bytes > b->size - data_off)
        return pt_set_error(err, PT_ERANGE, 0, 0,
                            "data area [%llu, +%llu) is not a page-aligned part of the %llu-byte backing",
                            (unsigned long long)data_off, (unsigned long long)data_bytes,
                            (unsigned long long)b->size);
    if ((ops->flags & PT_DESIGN_TABLE_ON_BACKING) && b->table_user)
        return pt_set_error(err, PT_EARG, 0, 0,
                            "the backing already keeps the descriptors of an open %s "
                            "attachment; close it first (the two would share one table)",
                            b->table_user->ops->name);
    a = calloc(1, sizeof(*a));
    if (!a)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
    a->ops = ops;
    a->backing = b;
    a->data = b->base + data_off;
    a->data_bytes = data_bytes;
    a->attach_flags = flags;
    a->folio_shift = folio_shift;
    a->gup = pt_gup_parts(flags);
    a->pgmap_range[0] = 0;
    a->pgmap_range[1] = (data_bytes - 1) >> PT_PAGE_SHIFT;
    (void)resident_bytes();  /* the first call faults in its own code and stack */
    rss0 = resident_bytes();
    if (ops->attach && (rc = ops->attach(a, err)) != PT_OK) {
        free(a);
        return rc;
    }
    a->rss_delta = resident_bytes() - rss0;
    if ((ops->flags & PT_DESIGN_REFCOUNTS) && !a->ref_base) {
        a->ref_base = (const uint8_t *)a->meta + ops->ref_off;
        a->ref_stride = 1ULL << ops->desc_shift;
        a->nrefs = a->ndesc;
    }
    if (ops->flags & PT_DESIGN_TABLE_ON_BACKING)
        b->table_user = a;
    *out = a;
    return PT_OK;
}

int pt_attachment_pin_bias(const pt_attachment *a)
{
    const int large = a->folio_shift > PT_PAGE_SHIFT || a->ops->page_shift > PT_PAGE_SHIFT;
    return (a->gup & PT_GUP_PIN) && !large ? PT_GUP_PIN_BIAS : 1;
}

uint64_t pt_attachment_pin_stat(const pt_attachment *a)
{
    return a->pin_stat;   /* the threads' clones fold theirs in after each run */
}

void pt_detach(pt_attachment *a)
{
    if (!a)
        return;
    if (a->held)
        pt_unhold(a, NULL);
    if (a->ops->detach)
        a->ops->detach(a);
    if (a->backing->table_user == a)
        a->backing->table_user = NULL;
    for (uint32_t i = 0; i < a->nclones; i++)
        free(a->clones[i].vec);
    free(a->clones);
    free(a->vec);
    free(a);
}

uint64_t pt_attachment_meta_bytes(const pt_attachment *a) { return a->meta_bytes; }
int64_t pt_attachment_rss_delta(const pt_attachment *a) { return a->rss_delta; }
uint64_t pt_attachment_data_offset(const pt_attachment *a)
{
    return (uint64_t)(a->data - a->backing->base);
}
uint64_t pt_attachment_data_bytes(const pt_attachment *a) { return a->data_bytes; }
void *pt_attachment_table(const pt_attachment *a) { return a->meta; }
void *pt_attachment_vector(const pt_attachment *a) { return a->vec; }

uint64_t pt_attachment_descriptors(const pt_attachment *a)
{
    return (a->ops->flags & PT_DESIGN_REFCOUNTS) ? a->nrefs : 0;
}

struct refs_call {
    const struct pt_attachment *a;
    int32_t *out;
};

static int read_refs(void *arg, struct pt_error *err)
{
    const struct refs_call *c = arg;
    const struct pt_attachment *a = c->a;
    (void)err;
    for (uint64_t i = 0; i < a->nrefs; i++)
        c->out[i] = __atomic_load_n((const int32_t *)(a->ref_base + i * a->ref_stride),
                                    __ATOMIC_RELAXED);
    return PT_OK;
}

/* A table on the backing can fault when read back, as in a run. */
int pt_attachment_refcounts(const pt_attachment *a, int32_t *out, uint64_t n,
                            struct pt_error *err)
{
    const struct pt_design_ops *ops = a->ops;
    struct refs_call c = { a, out };

    if (!(ops->flags & PT_DESIGN_REFCOUNTS))
        return pt_set_error(err, PT_EARG, 0, 0, "%s keeps no reference counts", ops->name);
    if (n != a->nrefs)
        return pt_set_error(err, PT_EARG, 0, 0, "%s has %llu reference counts, not %llu",
                            ops->name, (unsigned long long)a->nrefs, (unsigned long long)n);
    return pt_guarded(a->backing, read_refs, &c, "reading reference counts", err);
}

/* ---- validation -------------------------------------------------------- */

int pt_validate(const pt_attachment *a, const struct pt_extent *ext, uint64_t n,
                uint64_t buf_bytes, uint64_t *total_out, struct pt_error *err)
{
    uint64_t total = 0;

    if (n == 0)
        return pt_set_error(err, PT_EINVAL, 0, 0, "no extents");
    if (n > PT_MAX_EXTENTS)
        return pt_set_error(err, PT_EINVAL, 0, 0, "%llu extents are over the limit of %llu (2^32)",
                            (unsigned long long)n, (unsigned long long)PT_MAX_EXTENTS);
    if (!ext)
        return pt_set_error(err, PT_EINVAL, 0, 0, "extents pointer is NULL");
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = ext[i].off, len = ext[i].len;
        if (len == 0)
            return pt_set_error(err, PT_EINVAL, 0, i, "extent %llu has length 0",
                                (unsigned long long)i);
        if (len > PT_MAX_SEG_LEN)
            return pt_set_error(err, PT_EINVAL, 0, i,
                                "extent %llu is %llu bytes, over the 32-bit segment limit",
                                (unsigned long long)i, (unsigned long long)len);
        if (off > a->data_bytes || len > a->data_bytes - off)
            return pt_set_error(err, PT_ERANGE, 0, i,
                                "extent %llu [%llu, +%llu) runs past the data area of %llu bytes",
                                (unsigned long long)i, (unsigned long long)off,
                                (unsigned long long)len,
                                (unsigned long long)a->data_bytes);
        if (__builtin_add_overflow(total, len, &total) || total > buf_bytes)
            return pt_set_error(err, PT_ERANGE, 0, i,
                                "extents need more than the buffer's %llu bytes (at extent %llu)",
                                (unsigned long long)buf_bytes, (unsigned long long)i);
    }
    /* The memcpy roofline copies the same byte count from offset 0. */
    if (total > a->data_bytes)
        return pt_set_error(err, PT_ERANGE, 0, 0,
                            "extents total %llu bytes, more than the data area of %llu",
                            (unsigned long long)total, (unsigned long long)a->data_bytes);
    if (total_out)
        *total_out = total;
    return PT_OK;
}

/* Copy the caller's extents into memory the core owns, to be checked (the
 * copy, not the caller's array, whatever happens to it meanwhile) and
 * read; a count or pointer no run takes is refused before any is read. */
int pt_copy_extents(const pt_attachment *a, const struct pt_extent *ext, uint64_t n,
                    uint64_t buf_bytes, struct pt_extent **out, struct pt_error *err)
{
    uint64_t bytes;

    *out = NULL;
    if (n == 0 || n > PT_MAX_EXTENTS || !ext)
        return pt_validate(a, ext, n, buf_bytes, NULL, err);
    bytes = (n * sizeof(*ext) + PT_CACHELINE - 1) & ~(uint64_t)(PT_CACHELINE - 1);
    *out = aligned_alloc(PT_CACHELINE, bytes);
    if (!*out)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "cannot copy %llu extents",
                            (unsigned long long)n);
    memcpy(*out, ext, n * sizeof(*ext));
    return PT_OK;
}

uint64_t pt_vector_entries(const pt_attachment *a, const struct pt_extent *ext,
                           uint64_t n)
{
    return pt_entries_checked(a->ops, a, ext, n);
}

struct io_call {
    struct pt_attachment *a;
    struct pt_io *io;
};

static int build_call(void *arg, struct pt_error *err)
{
    struct io_call *c = arg;
    (void)err;
    c->a->ops->build(c->a, c->io);
    return PT_OK;
}

static int release_call(void *arg, struct pt_error *err)
{
    struct io_call *c = arg;
    (void)err;
    c->a->ops->release(c->a, c->io);
    return PT_OK;
}

/* Build and release as a run would, under the same SIGBUS guard (altmap's
 * descriptors are on the backing); a fault leaves counts unknown, as in a
 * run, so the attachment is marked faulted.  Like a plan, it builds from
 * its own copy of the extents, checked after it is made. */
int pt_hold(pt_attachment *a, const struct pt_extent *ext, uint64_t n, struct pt_error *err)
{
    struct pt_io io;
    struct io_call c = { a, &io };
    struct pt_extent *own = NULL;
    uint64_t total, entries;
    int rc;

    if (!a)
        return pt_set_error(err, PT_EARG, 0, 0, "NULL argument");
    if (a->faulted)
        return pt_set_error(err, PT_EFAULT, 0, 0,
                            "an earlier run on this attachment ended in SIGBUS; detach it");
    if (a->held)
        return pt_set_error(err, PT_EARG, 0, 0, "this attachment already holds references");
    if (__atomic_exchange_n(&a->busy, 1, __ATOMIC_ACQUIRE))
        return pt_set_error(err, PT_EARG, 0, 0, "this attachment is running in another thread");
    rc = pt_copy_extents(a, ext, n, UINT64_MAX, &own, err);
    if (rc == PT_OK)
        rc = pt_validate(a, own, n, UINT64_MAX, &total, err);
    entries = rc == PT_OK ? pt_vector_entries(a, own, n) : 0;
    if (rc == PT_OK)
        rc = pt_ensure_vec(a, entries, err);
    if (rc == PT_OK) {
        memset(&io, 0, sizeof(io));
        io.ext = own;
        io.n = n;
        io.bytes = total;
        io.vec = a->vec;
        rc = pt_guarded(a->backing, build_call, &c, "building a held vector", err);
        a->faulted |= rc == PT_EFAULT;
    }
    free(own);
    if (rc == PT_OK) {
        a->held = 1;
        a->held_nvec = io.nvec;
        if (io.nvec > entries)
            rc = pt_set_error(err, PT_EREF, 0, 0, "%s built %llu entries, more than %llu",
                              a->ops->name, (unsigned long long)io.nvec,
                              (unsigned long long)entries);
    }
    __atomic_store_n(&a->busy, 0, __ATOMIC_RELEASE);
    return rc;
}

int pt_unhold(pt_attachment *a, struct pt_error *err)
{
    struct pt_io io;
    struct io_call c = { a, &io };
    int rc;

    if (!a || !a->held)
        return pt_set_error(err, PT_EARG, 0, 0, "this attachment holds no references");
    memset(&io, 0, sizeof(io));
    io.vec = a->vec;
    io.nvec = a->held_nvec;
    a->held = 0;
    rc = pt_guarded(a->backing, release_call, &c, "releasing held references", err);
    a->faulted |= rc == PT_EFAULT;
    return rc != PT_OK ? rc : pt_check_refs(a, err);
}

int pt_check_refs(const struct pt_attachment *a, struct pt_error *err)
{
    if (a->ref_errors)
        return pt_set_error(err, PT_EREF, 0, 0, "%llu descriptor references dropped below zero",
                            (unsigned long long)a->ref_errors);
    return PT_OK;
}

/* A vector of `entries` entries for this attachment, allocated and touched
 * outside any timed phase, kept for the next run. */
int pt_ensure_vec(struct pt_attachment *a, uint64_t entries, struct pt_error *err)
{
    uint64_t vec_bytes;
    void *vec;

    if (__builtin_mul_overflow(entries, (uint64_t)a->ops->entry_bytes, &vec_bytes) ||
        __builtin_add_overflow(vec_bytes, PT_CACHELINE, &vec_bytes))
        return pt_set_error(err, PT_ENOMEM, 0, 0, "a vector of %llu entries is too large",
                            (unsigned long long)entries);
    vec_bytes &= ~(uint64_t)(PT_CACHELINE - 1);
    if (vec_bytes <= a->vec_bytes)
        return PT_OK;
    vec = aligned_alloc(PT_CACHELINE, vec_bytes);
    if (!vec)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "cannot allocate a vector of %llu entries",
                            (unsigned long long)entries);
    memset(vec, 0, vec_bytes);
    free(a->vec);
    a->vec = vec;
    a->vec_bytes = vec_bytes;
    return PT_OK;
}

/*
 * registry.c - the design registry (designs.def), what each design declares
 * itself to be, and the small shared helpers designs plug into their ops.
 */
#include <stdarg.h>
#include <stdio.h>

#include "pt_internal.h"

#define PT_DESIGN(n) extern const struct pt_design_ops pt_design_##n;
#include "designs.def"
#undef PT_DESIGN

static const struct pt_design_ops *const registry[] = {
#define PT_DESIGN(n) &pt_design_##n,
#include "designs.def"
#undef PT_DESIGN
};

#define NDESIGNS ((int)(sizeof(registry) / sizeof(registry[0])))

int pt_set_error(struct pt_error *err, int code, int sys_errno, uint64_t index,
                 const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->sys_errno = sys_errno;
        err->index = index;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

int pt_design_count(void) { return NDESIGNS; }

const struct pt_design_ops *pt_design_ops_of(int design)
{
    return design >= 0 && design < NDESIGNS ? registry[design] : NULL;
}

const char *pt_design_name(int design)
{
    const struct pt_design_ops *ops = pt_design_ops_of(design);
    return ops ? ops->name : NULL;
}

unsigned pt_design_flags(int design)
{
    const struct pt_design_ops *ops = pt_design_ops_of(design);
    return ops ? ops->flags : 0;
}

void pt_design_table(int design, uint64_t *desc_bytes, uint64_t *granule_bytes)
{
    const struct pt_design_ops *ops = pt_design_ops_of(design);
    int table = ops && (ops->flags & PT_DESIGN_REFCOUNTS);
    *desc_bytes = table ? 1ULL << ops->desc_shift : 0;
    *granule_bytes = table ? 1ULL << ops->page_shift : 0;
}

/* No attachment, so no data area to check against: only what keeps the
 * designs' page arithmetic (off + len - 1) from wrapping. */
uint64_t pt_design_entries(int design, const struct pt_extent *ext, uint64_t n)
{
    const struct pt_design_ops *ops = pt_design_ops_of(design);
    return ops ? pt_entries_checked(ops, NULL, ext, n) : 0;
}

uint64_t pt_entries_checked(const struct pt_design_ops *ops, const struct pt_attachment *a,
                            const struct pt_extent *ext, uint64_t n)
{
    uint64_t end;

    if (!ext || n == 0 || n > PT_MAX_EXTENTS)
        return PT_ENTRIES_INVALID;
    for (uint64_t i = 0; i < n; i++)
        if (ext[i].len == 0 || ext[i].len > PT_MAX_SEG_LEN ||
            __builtin_add_overflow(ext[i].off, ext[i].len, &end))
            return PT_ENTRIES_INVALID;
    return ops->entries(a, ext, n);
}

unsigned pt_design_entry_bytes(int design)
{
    const struct pt_design_ops *ops = pt_design_ops_of(design);
    return ops ? ops->entry_bytes : 0;
}

int pt_design_metadata(int design, uint64_t capacity, struct pt_metadata *out,
                       struct pt_error *err)
{
    return pt_design_metadata_folio(design, capacity, PT_PAGE_SHIFT, out, err);
}

int pt_design_metadata_folio(int design, uint64_t capacity, unsigned folio_shift,
                             struct pt_metadata *out, struct pt_error *err)
{
    const struct pt_design_ops *ops = pt_design_ops_of(design);
    out->dram_bytes = out->device_bytes = 0;
    if (!ops)
        return pt_set_error(err, PT_EINVAL, 0, 0, "no design number %d", design);
    if (capacity > PT_MAX_CAPACITY)
        return pt_set_error(err, PT_EINVAL, 0, 0,
                            "capacity %llu is over the limit of %llu bytes (2^57)",
                            (unsigned long long)capacity, (unsigned long long)PT_MAX_CAPACITY);
    if (folio_shift < PT_PAGE_SHIFT || folio_shift > PT_MAX_FOLIO_SHIFT ||
        (!(ops->flags & PT_DESIGN_FOLIOS) && folio_shift != PT_PAGE_SHIFT))
        return pt_set_error(err, PT_EINVAL, 0, 0, "%s has no folios of 2^%u bytes", ops->name,
                            folio_shift);
    if (ops->flags & PT_DESIGN_FOLIOS)
        ops->metadata_folio(capacity, folio_shift, out);
    else
        ops->metadata(capacity, out);
    return PT_OK;
}

int pt_design_layout(int design, uint64_t size, uint64_t *data_off, uint64_t *data_bytes)
{
    const struct pt_design_ops *ops = pt_design_ops_of(design);
    if (!ops || size > PT_MAX_CAPACITY)
        return -1;
    if (ops->layout)
        return ops->layout(size, data_off, data_bytes);
    *data_off = 0;
    *data_bytes = size;
    return 0;
}

void pt_metadata_none(uint64_t capacity, struct pt_metadata *out)
{
    (void)capacity;
    out->dram_bytes = out->device_bytes = 0;
}

uint64_t pt_entries_per_extent(const struct pt_attachment *a,
                               const struct pt_extent *ext, uint64_t n)
{
    (void)a;
    (void)ext;
    return n;
}

void pt_release_nothing(struct pt_attachment *a, struct pt_io *io)
{
    (void)a;
    (void)io;
}

#ifdef PT_COUNT_ATOMICS
uint64_t pt_count_ops[PT_COUNT_KINDS], pt_count_amount[PT_COUNT_KINDS];

int pt_test_take_counts(uint64_t *ops, uint64_t *amount)
{
    for (int k = 0; k < PT_COUNT_KINDS; k++) {
        ops[k] = __atomic_exchange_n(&pt_count_ops[k], 0, __ATOMIC_RELAXED);
        amount[k] = __atomic_exchange_n(&pt_count_amount[k], 0, __ATOMIC_RELAXED);
    }
    return 0;
}
#else
int pt_test_take_counts(uint64_t *ops, uint64_t *amount)
{
    (void)ops;
    (void)amount;
    return -1;
}
#endif

/*
 * engine.c - backings, the design registry, extent validation and the one
 * timing discipline every design runs under.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pt_persist.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   /* linux/mman.h, since 5.14 */
#define MADV_POPULATE_WRITE 23
#endif

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

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- backings ---------------------------------------------------------- */

/* mmap at an address aligned to `align` (device DAX wants its alignment). */
static void *map_aligned(uint64_t size, uint64_t align, int prot, int flags, int fd)
{
    uint8_t *area, *p;
    uint64_t lead;

    if (align <= PT_PAGE_SIZE)
        return mmap(NULL, size, prot, flags, fd, 0);
    area = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED)
        return MAP_FAILED;
    lead = (align - (uintptr_t)area % align) % align;
    p = mmap(area + lead, size, prot, flags | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        int saved = errno;
        munmap(area, size + align);
        errno = saved;
        return MAP_FAILED;
    }
    if (lead)
        munmap(area, lead);
    if (align - lead)
        munmap(p + size, align - lead);
    return p;
}

int pt_backing_map(int fd, uint64_t size, int writable, int flags, uint64_t align,
                   pt_backing **out, struct pt_error *err)
{
    struct pt_backing *b;
    int mflags = MAP_SHARED, rc;
    void *p;

    *out = NULL;
    if (size == 0 || size % PT_PAGE_SIZE)
        return pt_set_error(err, PT_EINVAL, 0, 0,
                            "backing size %llu is not a positive multiple of 4096",
                            (unsigned long long)size);
    if (size > (uint64_t)INT64_MAX)
        return pt_set_error(err, PT_EINVAL, 0, 0, "backing size %llu is too large",
                            (unsigned long long)size);
    if (align & (align - 1) || (align && size % align))
        return pt_set_error(err, PT_EINVAL, 0, 0,
                            "backing size %llu is not a multiple of the alignment %llu",
                            (unsigned long long)size, (unsigned long long)align);
    if ((flags & PT_MAP_RESERVE) && !writable)
        return pt_set_error(err, PT_EINVAL, 0, 0, "cannot reserve a read-only backing");
    if (flags & PT_MAP_RESERVE) {
        /* posix_fallocate returns the error instead of setting errno. */
        rc = posix_fallocate(fd, 0, (off_t)size);
        if (rc)
            return pt_set_error(err, PT_ESYS, rc, 0,
                                "posix_fallocate of %llu bytes failed: %s",
                                (unsigned long long)size, strerror(rc));
    } else if (!(flags & PT_MAP_DEVICE)) {
        /* Mapping past EOF would turn the first access into SIGBUS. */
        off_t end = lseek(fd, 0, SEEK_END);
        if (end < 0)
            return pt_set_error(err, PT_ESYS, errno, 0, "lseek failed: %s",
                                strerror(errno));
        if ((uint64_t)end < size)
            return pt_set_error(err, PT_ERANGE, 0, 0,
                                "file holds %llu bytes, fewer than the %llu asked for",
                                (unsigned long long)end, (unsigned long long)size);
    }
    if (flags & PT_MAP_SYNC)
        mflags = MAP_SHARED_VALIDATE | MAP_SYNC;  /* only a DAX file system accepts it */
    p = map_aligned(size, align, PROT_READ | (writable ? PROT_WRITE : 0), mflags, fd);
    if (p == MAP_FAILED) {
        int e = errno;
        if (flags & PT_MAP_SYNC)
            return pt_set_error(err, PT_ESYS, e, 0,
                                "mmap with MAP_SHARED_VALIDATE | MAP_SYNC failed: %s (%s)",
                                strerror(e), e == EOPNOTSUPP ? "EOPNOTSUPP" : "errno");
        return pt_set_error(err, PT_ESYS, e, 0, "mmap of %llu bytes failed: %s",
                            (unsigned long long)size, strerror(e));
    }
    if ((flags & PT_MAP_HUGE_ADVISE) && madvise(p, size, MADV_HUGEPAGE)) {
        int e = errno;
        munmap(p, size);
        return pt_set_error(err, PT_ESYS, e, 0, "madvise(MADV_HUGEPAGE) failed: %s",
                            strerror(e));
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        munmap(p, size);
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
    }
    b->fd = fd;
    b->writable = writable;
    b->map_sync = !!(flags & PT_MAP_SYNC);
    b->base = p;
    b->size = size;

    /* Populate page tables now so no repetition pays first-touch faults.
     * A write fault also maps writable PTEs on file systems that track dirt.
     * MADV_POPULATE_* (Linux 5.14) faults in batches and returns an error
     * where a touch would raise SIGBUS; older kernels touch page by page. */
    if (madvise(p, size, writable ? MADV_POPULATE_WRITE : MADV_POPULATE_READ)) {
        int e = errno;
        if (e != EINVAL) {
            munmap(p, size);
            free(b);
            return pt_set_error(err, PT_ESYS, e, 0,
                                "populating the mapping failed: %s (a truncated file, a full "
                                "file system or a media error)", strerror(e));
        }
        for (uint64_t off = 0; off < size; off += PT_PAGE_SIZE) {
            volatile uint8_t *q = b->base + off;
            if (writable)
                *q = *q;
            else
                (void)*q;
        }
    }
    *out = b;
    return PT_OK;
}

int pt_backing_map_sync(const pt_backing *b) { return b->map_sync; }

#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000  /* linux/stat.h, since 5.8 */
#endif

int pt_statx_dax(const char *path)
{
    struct statx stx;
    if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx))
        return -errno;
    if (!(stx.stx_attributes_mask & STATX_ATTR_DAX))
        return -ENOTSUP;
    return !!(stx.stx_attributes & STATX_ATTR_DAX);
}

void pt_backing_unmap(pt_backing *b)
{
    if (!b)
        return;
    munmap(b->base, b->size);
    free(b);
}

void *pt_backing_base(const pt_backing *b) { return b->base; }

/* ---- the CPU ----------------------------------------------------------- */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

void pt_cpu_features(struct pt_cpu *out)
{
    memset(out, 0, sizeof(*out));
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        out->clflush = !!(d & (1u << 19));
        out->sse2 = !!(d & (1u << 26));
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        out->clflushopt = !!(b & (1u << 23));
        out->clwb = !!(b & (1u << 24));
    }
#endif
}

/* The instruction a persistence mode needs and the CPU lacks, or NULL. */
static const char *missing_insn(int persist)
{
    struct pt_cpu cpu;
    pt_cpu_features(&cpu);
    switch (persist & ~PT_PERSIST_EACH) {
    case PT_PERSIST_NONE:
        return NULL;
    case PT_PERSIST_CLWB:
        return cpu.clwb ? NULL : "CLWB";
    case PT_PERSIST_CLFLUSHOPT:
        return cpu.clflushopt ? NULL : "CLFLUSHOPT";
    case PT_PERSIST_AUTO_CLWB:
        return !cpu.sse2 ? "SSE2 (MOVNTDQ)" : cpu.clwb ? NULL : "CLWB";
    case PT_PERSIST_AUTO_CLFLUSHOPT:
        return !cpu.sse2 ? "SSE2 (MOVNTDQ)" : cpu.clflushopt ? NULL : "CLFLUSHOPT";
    case PT_PERSIST_NT:
    case PT_PERSIST_AUTO_CLFLUSH:
        return !cpu.sse2 ? "SSE2 (MOVNTDQ)" : cpu.clflush ? NULL : "CLFLUSH";
    case PT_PERSIST_CLFLUSH:
        return cpu.clflush ? NULL : "CLFLUSH";
    case PT_PERSIST_FENCE:
        return cpu.sse2 ? NULL : "SFENCE";
    default:
        return "a known persistence mode";
    }
}

/* ---- the registry ------------------------------------------------------ */

int pt_design_count(void) { return NDESIGNS; }

static const struct pt_design_ops *design_ops(int design)
{
    return design >= 0 && design < NDESIGNS ? registry[design] : NULL;
}

const char *pt_design_name(int design)
{
    const struct pt_design_ops *ops = design_ops(design);
    return ops ? ops->name : NULL;
}

unsigned pt_design_flags(int design)
{
    const struct pt_design_ops *ops = design_ops(design);
    return ops ? ops->flags : 0;
}

unsigned pt_design_entry_bytes(int design)
{
    const struct pt_design_ops *ops = design_ops(design);
    return ops ? ops->entry_bytes : 0;
}

void pt_design_metadata(int design, uint64_t capacity, struct pt_metadata *out)
{
    const struct pt_design_ops *ops = design_ops(design);
    out->dram_bytes = out->device_bytes = 0;
    if (ops)
        ops->metadata(capacity, out);
}

int pt_design_layout(int design, uint64_t size, uint64_t *data_off, uint64_t *data_bytes)
{
    const struct pt_design_ops *ops = design_ops(design);
    if (!ops)
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

/* ---- attachments ------------------------------------------------------- */

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
    const struct pt_design_ops *ops = design_ops(design);
    struct pt_attachment *a;
    int64_t rss0;
    int rc;

    *out = NULL;
    if (!ops)
        return pt_set_error(err, PT_EINVAL, 0, 0, "no design number %d (there are %d)",
                            design, NDESIGNS);
    if (flags & ~PT_ATTACH_TABLE_4K)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown attach flags %#x", (unsigned)flags);
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
    a = calloc(1, sizeof(*a));
    if (!a)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
    a->ops = ops;
    a->backing = b;
    a->data = b->base + data_off;
    a->data_bytes = data_bytes;
    a->attach_flags = flags;
    (void)resident_bytes();  /* the first call faults in its own code and stack */
    rss0 = resident_bytes();
    if (ops->attach && (rc = ops->attach(a, err)) != PT_OK) {
        free(a);
        return rc;
    }
    a->rss_delta = resident_bytes() - rss0;
    *out = a;
    return PT_OK;
}

void pt_detach(pt_attachment *a)
{
    if (!a)
        return;
    if (a->held)
        pt_unhold(a, NULL);
    if (a->ops->detach)
        a->ops->detach(a);
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

uint64_t pt_attachment_descriptors(const pt_attachment *a)
{
    return (a->ops->flags & PT_DESIGN_REFCOUNTS) ? a->ndesc : 0;
}

int pt_attachment_refcounts(const pt_attachment *a, int32_t *out, uint64_t n,
                            struct pt_error *err)
{
    const struct pt_design_ops *ops = a->ops;
    const uint8_t *p = a->meta;

    if (!(ops->flags & PT_DESIGN_REFCOUNTS))
        return pt_set_error(err, PT_EARG, 0, 0, "%s keeps no reference counts", ops->name);
    if (n != a->ndesc)
        return pt_set_error(err, PT_EARG, 0, 0, "%s has %llu descriptors, not %llu", ops->name,
                            (unsigned long long)a->ndesc, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        out[i] = __atomic_load_n((const int32_t *)(p + (i << ops->desc_shift) + ops->ref_off),
                                 __ATOMIC_RELAXED);
    return PT_OK;
}

/* ---- validation -------------------------------------------------------- */

int pt_validate(const pt_attachment *a, const struct pt_extent *ext, uint64_t n,
                uint64_t buf_bytes, uint64_t *total_out, struct pt_error *err)
{
    uint64_t total = 0;

    if (n == 0)
        return pt_set_error(err, PT_EINVAL, 0, 0, "no extents");
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

uint64_t pt_vector_entries(const pt_attachment *a, const struct pt_extent *ext,
                           uint64_t n)
{
    return a->ops->entries(a, ext, n);
}

/* ---- the timing discipline --------------------------------------------- */

/*
 * Every run, single-threaded or not, goes through the same loop.  Each pass:
 * every thread makes its own working set cold (cold cache), waits at a
 * barrier, runs one repetition (build, copy, release per I/O), and waits
 * again.  Timed repetitions read the clock twice, around the whole
 * repetition; instrumented ones (phase_reps, interleaved) read it around
 * each phase of each I/O, for the build/copy/release split only.  Repetition
 * r's wall time runs from the first thread's start to the last one's end.
 * A single unpinned thread runs in the caller, with a barrier of one.
 */
struct pt_worker;

struct pt_run_shared {
    const struct pt_design_ops *ops;
    const struct pt_run_config *cfg;
    uint32_t n;
    pthread_barrier_t barrier;
    pthread_mutex_t gate_lock;   /* threads start only once all exist */
    pthread_cond_t gate_cv;
    int gate;                    /* 0 wait, 1 go, -1 give up */
    int failed;                  /* set by a failing thread; the others stop at their next I/O */
    int first_failed;            /* whose error the caller sees; -1: none */
    uint64_t *wall_ns;           /* reps entries, or NULL */
    struct pt_worker *w;
};

/* One thread of a run.  Thread 0 runs through the caller's attachment, the
 * others through clones of it: the descriptor table is shared (so reference
 * counts contend as they would between CPUs in a kernel), the vector and
 * the error counters are the thread's own. */
struct pt_worker {
    struct pt_run_shared *sh;
    struct pt_thread *t;
    struct pt_attachment *a;
    uint32_t index;
    uint64_t per_io;             /* extents per I/O */
    uint64_t *io_bytes;          /* bytes of each I/O */
    uint64_t ios, max_entries, total_entries, total;
    uint64_t data_base;          /* contiguous designs read this thread's own share */
    uint64_t start_ns, end_ns;   /* of the current repetition */
    pthread_t tid;
};

static uint64_t now_ns(void);

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static double median_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + v[n / 2]) / 2;
}

double pt_clock_cost_ns(void)
{
    uint64_t d[255], prev = now_ns();
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        uint64_t cur = now_ns();
        d[i] = cur - prev;
        prev = cur;
    }
    return median_u64(d, sizeof(d) / sizeof(d[0]));
}

/* ---- cold caches ---- */

/* PT_TLB_SCRUB_PAGES read-only pages of the zero page, on 4 KiB PTEs: a
 * load from each costs a TLB miss and no memory traffic (one physical page,
 * whose 64 lines stay cached). */
static uint8_t *tlb_scrub;
static pthread_once_t tlb_scrub_once = PTHREAD_ONCE_INIT;

static void tlb_scrub_init(void)
{
    uint64_t bytes = (uint64_t)PT_TLB_SCRUB_PAGES << PT_PAGE_SHIFT;
    uint8_t *p = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    madvise(p, bytes, MADV_NOHUGEPAGE);  /* a huge zero page would be one TLB entry */
    for (uint64_t off = 0; off < bytes; off += PT_PAGE_SIZE)
        (void)*(volatile uint8_t *)(p + off);
    tlb_scrub = p;
}

static void scrub_tlb(void)
{
    if (!tlb_scrub)
        return;
    for (uint64_t i = 0; i < PT_TLB_SCRUB_PAGES; i++)
        (void)*(volatile uint8_t *)(tlb_scrub + (i << PT_PAGE_SHIFT) + ((i & 63) << 6));
}

static void full_fence(void)
{
#if PT_HAVE_PERSIST
    __asm__ __volatile__("mfence" ::: "memory");
#else
    __sync_synchronize();
#endif
}

/* Write back and invalidate every line this thread's repetition touches:
 * its data lines, its buffer, its vector and the descriptor lines its
 * design reads and writes.  The cost follows the working set, not the LLC. */
static void flush_working_set(const struct pt_worker *w, int insn)
{
    const struct pt_design_ops *ops = w->sh->ops;
    const struct pt_attachment *a = w->a;
    const struct pt_extent *ext = w->t->ext;
    const uint64_t n = w->t->n;

    if (ops->flags & PT_DESIGN_CONTIGUOUS)
        pt_flush_range(a->data + w->data_base, w->total, insn);
    else
        for (uint64_t i = 0; i < n; i++)
            pt_flush_range(a->data + ext[i].off, ext[i].len, insn);
    pt_flush_range(w->t->buf, w->total, insn);
    pt_flush_range(a->vec, w->max_entries * ops->entry_bytes, insn);
    if (ops->flags & PT_DESIGN_REFCOUNTS) {
        const uint8_t *table = a->meta;
        uintptr_t last = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t p = ext[i].off >> ops->page_shift;
            uint64_t end = (ext[i].off + ext[i].len - 1) >> ops->page_shift;
            for (; p <= end; p++) {
                uintptr_t line = (uintptr_t)(table + (p << ops->desc_shift) + ops->ref_off) &
                                 ~(uintptr_t)(PT_CACHELINE - 1);
                if (line != last)
                    pt_flush_line((const void *)line, insn);
                last = line;
            }
        }
    }
    full_fence();
}

/* Without CLFLUSH: write then read a slice of the caller's buffer (a few
 * times the LLC) with plain stores and loads, line by line; no libc, whose
 * large memset may use non-temporal stores that evict nothing. */
static void evict_slice(const struct pt_worker *w, unsigned pass)
{
    const struct pt_run_config *cfg = w->sh->cfg;
    uint64_t lo = cfg->evict_bytes * w->index / w->sh->n;
    uint64_t hi = cfg->evict_bytes * (w->index + 1) / w->sh->n;
    volatile uint64_t *p = (volatile uint64_t *)(cfg->evict_buf + (lo & ~63ULL));
    uint64_t lines = (hi - (lo & ~63ULL)) / PT_CACHELINE, sum = 0;
    for (uint64_t i = 0; i < lines; i++)
        p[i * (PT_CACHELINE / 8)] = pass + i;
    for (uint64_t i = 0; i < lines; i++)
        sum += p[i * (PT_CACHELINE / 8)];
    __asm__ __volatile__("" : : "r"(sum) : "memory");
}

static void cold_start(const struct pt_worker *w, unsigned pass)
{
    switch (w->sh->cfg->cold_method) {
    case PT_COLD_CLFLUSHOPT:
        flush_working_set(w, PT_PERSIST_CLFLUSHOPT);
        scrub_tlb();
        break;
    case PT_COLD_CLFLUSH:
        flush_working_set(w, PT_PERSIST_CLFLUSH);
        scrub_tlb();
        break;
    default:
        evict_slice(w, pass);
        break;
    }
}

/* How cold is cold: time loads of PT_PROBE_LINES data lines spread over
 * this thread's extents as a repetition would start (after cold_start, or
 * after the previous repetition when warm), then the same lines at once
 * again.  Each figure includes one clock read; the caller subtracts it. */
static void probe(struct pt_worker *w, unsigned pass)
{
    const struct pt_attachment *a = w->a;
    const struct pt_extent *ext = w->t->ext;
    const uint64_t n = w->t->n;
    const uint8_t *line[PT_PROBE_LINES];
    uint64_t start[PT_PROBE_LINES], warm[PT_PROBE_LINES];

    for (unsigned k = 0; k < PT_PROBE_LINES; k++) {
        const uint8_t *p;
        if (w->sh->ops->flags & PT_DESIGN_CONTIGUOUS)
            p = a->data + w->data_base + w->total / PT_PROBE_LINES * k;
        else
            p = a->data + ext[k * n / PT_PROBE_LINES].off;
        line[k] = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)(PT_CACHELINE - 1));
    }
    /* Visit them in a fixed shuffled order: at a constant stride the CPU's
     * stride prefetcher would fetch them ahead and hide the misses. */
    for (unsigned k = PT_PROBE_LINES - 1, x = 0x9e3779b9u; k > 0; k--) {
        const uint8_t *tmp;
        unsigned j;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        j = x % (k + 1);
        tmp = line[k];
        line[k] = line[j];
        line[j] = tmp;
    }
    if (w->sh->cfg->cache == PT_CACHE_COLD)
        cold_start(w, pass);
    for (int round = 0; round < 2; round++) {
        uint64_t *d = round ? warm : start;
        for (unsigned k = 0; k < PT_PROBE_LINES; k++) {
            uint64_t t0 = now_ns();
            (void)*(const volatile uint64_t *)line[k];
#if defined(__x86_64__) || defined(__i386__)
            __asm__ __volatile__("lfence" ::: "memory");  /* the load completes first */
#endif
            d[k] = now_ns() - t0;
        }
    }
    w->t->stats.probe_start_ns = median_u64(start, PT_PROBE_LINES);
    w->t->stats.probe_warm_ns = median_u64(warm, PT_PROBE_LINES);
}

/* ---- one repetition ---- */

/* build, copy, release: the clock is read around each phase only when
 * `phased` (a constant in each of the two instantiations below). */
static inline __attribute__((always_inline)) int
one_io(const struct pt_design_ops *ops, struct pt_attachment *a, int op, struct pt_io *io,
       uint64_t t[3], const int phased, struct pt_error *err)
{
    uint64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    int rc;

    if (phased)
        t0 = now_ns();
    ops->build(a, io);
    if (phased)
        t1 = now_ns();
    rc = op == PT_READ ? ops->gather(a, io, err) : ops->scatter(a, io, err);
    if (phased)
        t2 = now_ns();
    ops->release(a, io);  /* even after a failed copy: references must drop */
    if (phased) {
        t3 = now_ns();
        t[0] += t1 - t0;
        t[1] += t2 - t1;
        t[2] += t3 - t2;
    }
    return rc;
}

/* One repetition of one thread: build, copy, release per I/O. */
static inline __attribute__((always_inline)) int
rep_loop(struct pt_worker *w, uint64_t t[3], const int phased, struct pt_error *err)
{
    const struct pt_design_ops *ops = w->sh->ops;
    const struct pt_run_config *cfg = w->sh->cfg;
    struct pt_attachment *a = w->a;
    const struct pt_extent *ext = w->t->ext;
    const uint64_t n = w->t->n, per_io = w->per_io;
    uint64_t boff = 0, lines = 0, fences = 0;
    int rc;

    for (uint64_t i = 0, k = 0; i < n; i += per_io, k++) {
        struct pt_io io;
        io.ext = ext + i;
        io.n = n - i < per_io ? n - i : per_io;
        io.bytes = w->io_bytes[k];
        io.buf = w->t->buf + boff;
        io.buf_off = boff;
        io.data_base = w->data_base;
        io.vec = a->vec;
        io.nvec = 0;
        io.persist = cfg->op == PT_WRITE ? cfg->persist : PT_PERSIST_NONE;
        io.lines_flushed = io.fences = 0;
        if (pt_stop)
            return pt_set_error(err, PT_EINTR, EINTR, i, "interrupted");
        if (__atomic_load_n(&w->sh->failed, __ATOMIC_RELAXED))
            return pt_set_error(err, PT_EINTR, 0, i, "stopped: another thread failed");
        rc = one_io(ops, a, cfg->op, &io, t, phased, err);
        if (rc != PT_OK)
            return rc;
        if (io.nvec > w->max_entries)  /* after the fact, but never silent */
            return pt_set_error(err, PT_EREF, 0, i,
                                "%s built %llu entries, more than the %llu it reserved",
                                ops->name, (unsigned long long)io.nvec,
                                (unsigned long long)w->max_entries);
        boff += io.bytes;
        lines += io.lines_flushed;
        fences += io.fences;
    }
    w->t->stats.lines_flushed = lines;
    w->t->stats.fences = fences;
    if (a->ref_errors)
        return pt_set_error(err, PT_EREF, 0, 0, "%llu descriptor references dropped below zero",
                            (unsigned long long)a->ref_errors);
    return PT_OK;
}

static __attribute__((noinline)) int run_rep_timed(struct pt_worker *w, struct pt_error *err)
{
    uint64_t unused[3];
    return rep_loop(w, unused, 0, err);
}

static __attribute__((noinline)) int run_rep_phased(struct pt_worker *w, uint64_t t[3],
                                                    struct pt_error *err)
{
    return rep_loop(w, t, 1, err);
}

static int ensure_vec(struct pt_attachment *a, uint64_t entries, struct pt_error *err);

int pt_hold(pt_attachment *a, const struct pt_extent *ext, uint64_t n, struct pt_error *err)
{
    struct pt_io io;
    uint64_t total, entries;
    int rc;

    if (!a)
        return pt_set_error(err, PT_EARG, 0, 0, "NULL argument");
    if (a->held)
        return pt_set_error(err, PT_EARG, 0, 0, "this attachment already holds references");
    if (__atomic_exchange_n(&a->busy, 1, __ATOMIC_ACQUIRE))
        return pt_set_error(err, PT_EARG, 0, 0, "this attachment is running in another thread");
    rc = pt_validate(a, ext, n, UINT64_MAX, &total, err);
    entries = rc == PT_OK ? a->ops->entries(a, ext, n) : 0;
    if (rc == PT_OK)
        rc = ensure_vec(a, entries, err);
    if (rc == PT_OK) {
        memset(&io, 0, sizeof(io));
        io.ext = ext;
        io.n = n;
        io.bytes = total;
        io.vec = a->vec;
        a->ops->build(a, &io);
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

    if (!a || !a->held)
        return pt_set_error(err, PT_EARG, 0, 0, "this attachment holds no references");
    memset(&io, 0, sizeof(io));
    io.vec = a->vec;
    io.nvec = a->held_nvec;
    a->ops->release(a, &io);
    a->held = 0;
    if (a->ref_errors)
        return pt_set_error(err, PT_EREF, 0, 0, "%llu descriptor references dropped below zero",
                            (unsigned long long)a->ref_errors);
    return PT_OK;
}

volatile sig_atomic_t pt_stop;
static struct sigaction prev_int, prev_term;

/* Note the stop for the C loops, then let the handler that was there (the
 * Python interpreter's) do what it does, so Python raises as usual. */
static void on_stop(int sig)
{
    const struct sigaction *prev = sig == SIGINT ? &prev_int : &prev_term;
    pt_stop = 1;
    if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN)
        prev->sa_handler(sig);
    else if (prev->sa_handler == SIG_DFL) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

/*
 * Signal handlers are process-wide, and Python threads may be in pt_run at
 * the same time (the GIL is released): the first run in installs them, the
 * last one out restores what was there.  Everything else a run writes is its
 * own: the attachment (one run at a time, see `busy`) and its clones, their
 * vectors, the caller's buffers and times.  The descriptor tables are shared
 * between threads only through atomic reference counts.
 */
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static int guard_users;
static struct sigaction prev_bus;
static void on_sigbus(int sig, siginfo_t *si, void *ctx);

static int guard_enter(void)
{
    int rc = 0;
    pthread_mutex_lock(&guard_lock);
    if (guard_users++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sigemptyset(&sa.sa_mask);
        sa.sa_handler = on_stop;
        pt_stop = 0;
        if (sigaction(SIGINT, &sa, &prev_int) || sigaction(SIGTERM, &sa, &prev_term))
            rc = -1;
        if (prev_int.sa_handler == SIG_IGN)   /* an ignored signal stays ignored */
            sigaction(SIGINT, &prev_int, NULL);
        if (prev_term.sa_handler == SIG_IGN)
            sigaction(SIGTERM, &prev_term, NULL);
        sa.sa_handler = NULL;
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;  /* so the jump leaves SIGBUS unblocked */
        if (sigaction(SIGBUS, &sa, &prev_bus))
            rc = -1;
    }
    pthread_mutex_unlock(&guard_lock);
    return rc;
}

static void guard_leave(void)
{
    pthread_mutex_lock(&guard_lock);
    if (--guard_users == 0) {
        sigaction(SIGINT, &prev_int, NULL);
        sigaction(SIGTERM, &prev_term, NULL);
        sigaction(SIGBUS, &prev_bus, NULL);
    }
    pthread_mutex_unlock(&guard_lock);
}

/* A SIGBUS in the data path (a file truncated under the mapping, a media
 * error on pmem) ends the run with an error instead of the process. */
static __thread sigjmp_buf *fault_env;
static __thread void *fault_addr;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    if (fault_env) {
        fault_addr = si->si_addr;
        siglongjmp(*fault_env, 1);
    }
    signal(sig, SIG_DFL);  /* not ours: die as the signal would have it */
    raise(sig);
}

/* One pass under the SIGBUS guard.  The jump lands inside the pass, so a
 * faulting thread still meets the others at the barriers.  The clock is
 * read right around the repetition, after the guard is set up. */
static int guarded_pass(struct pt_worker *w, int phased, uint64_t t[3], struct pt_error *err)
{
    sigjmp_buf env;
    int rc;

    if (sigsetjmp(env, 0)) {
        uint8_t *p = fault_addr;
        const struct pt_backing *b = w->a->backing;
        fault_env = NULL;
        w->end_ns = now_ns();
        w->a->faulted = 1;
        if (p >= b->base && p < b->base + b->size)
            return pt_set_error(err, PT_EFAULT, EFAULT, 0,
                                "SIGBUS at byte %llu of the backing: the file was truncated under "
                                "the mapping, or the medium reported an error",
                                (unsigned long long)(p - b->base));
        return pt_set_error(err, PT_EFAULT, EFAULT, 0, "SIGBUS at %p during the run", (void *)p);
    }
    fault_env = &env;
    w->start_ns = now_ns();
    rc = phased ? run_rep_phased(w, t, err) : run_rep_timed(w, err);
    w->end_ns = now_ns();
    fault_env = NULL;
    return rc;
}

static void worker_fail(struct pt_worker *w)
{
    int none = -1;
    __atomic_compare_exchange_n(&w->sh->first_failed, &none, (int)w->index, 0,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    __atomic_store_n(&w->sh->failed, 1, __ATOMIC_RELEASE);
}

/* A vector of `entries` entries for this attachment, allocated and touched
 * outside any timed phase, kept for the next run. */
static int ensure_vec(struct pt_attachment *a, uint64_t entries, struct pt_error *err)
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

/* Pin, then allocate and touch the vector in the thread that will use it
 * (first touch places it on that thread's NUMA node), before any timing. */
static int worker_setup(struct pt_worker *w, struct pt_error *err)
{
    if (w->t->cpu >= 0) {
        cpu_set_t set;
        int e;
        CPU_ZERO(&set);
        CPU_SET(w->t->cpu, &set);
        e = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (e)
            return pt_set_error(err, PT_ESYS, e, 0, "cannot pin to CPU %d: %s", w->t->cpu,
                                strerror(e));
    }
    return ensure_vec(w->a, w->max_entries, err);
}

/* The pass schedule: warmups, then timed and instrumented repetitions
 * alternating, so that drift hits both kinds alike. */
enum pass_kind { PASS_WARMUP, PASS_TIMED, PASS_PHASED };

static enum pass_kind pass_at(const struct pt_run_config *cfg, uint64_t p, uint64_t *index)
{
    uint64_t both, r;
    if (p < cfg->warmup) {
        *index = p;
        return PASS_WARMUP;
    }
    p -= cfg->warmup;
    both = 2 * (uint64_t)(cfg->reps < cfg->phase_reps ? cfg->reps : cfg->phase_reps);
    if (p < both) {
        *index = p / 2;
        return p % 2 ? PASS_PHASED : PASS_TIMED;
    }
    r = both / 2 + (p - both);
    *index = r;
    return cfg->reps > cfg->phase_reps ? PASS_TIMED : PASS_PHASED;
}

/* After a pass every thread's times are visible (barrier): thread 0 keeps
 * the wall time of a timed repetition. */
static void record_wall(struct pt_worker *w, uint64_t r)
{
    struct pt_run_shared *sh = w->sh;
    uint64_t first = w->start_ns, last = w->end_ns;
    for (uint32_t i = 1; i < sh->n; i++) {
        first = sh->w[i].start_ns < first ? sh->w[i].start_ns : first;
        last = sh->w[i].end_ns > last ? sh->w[i].end_ns : last;
    }
    sh->wall_ns[r] = last - first;
}

static void *worker_main(void *arg)
{
    struct pt_worker *w = arg;
    struct pt_run_shared *sh = w->sh;
    const struct pt_run_config *cfg = sh->cfg;
    struct pt_error *err = &w->t->err;
    uint64_t passes = (uint64_t)cfg->warmup + cfg->reps + cfg->phase_reps;
    int rc, gate;

    pthread_mutex_lock(&sh->gate_lock);
    while ((gate = sh->gate) == 0)
        pthread_cond_wait(&sh->gate_cv, &sh->gate_lock);
    pthread_mutex_unlock(&sh->gate_lock);
    if (gate < 0)
        return NULL;

    if ((rc = worker_setup(w, err)) != PT_OK)
        worker_fail(w);
    pthread_barrier_wait(&sh->barrier);
    if (__atomic_load_n(&sh->failed, __ATOMIC_ACQUIRE))
        return NULL;
    if (cfg->cold_only) {
        cold_start(w, 0);
        return NULL;
    }
    for (uint64_t p = 0; p < passes; p++) {
        uint64_t t[3] = {0, 0, 0}, r;
        enum pass_kind kind = pass_at(cfg, p, &r);

        if (cfg->cache == PT_CACHE_COLD)
            cold_start(w, (unsigned)p);
        pthread_barrier_wait(&sh->barrier);
        rc = guarded_pass(w, kind == PASS_PHASED, t, err);
        if (rc != PT_OK)
            worker_fail(w);
        pthread_barrier_wait(&sh->barrier);
        if (__atomic_load_n(&sh->failed, __ATOMIC_ACQUIRE))
            return NULL;
        if (kind == PASS_TIMED) {
            w->t->total_ns[r] = w->end_ns - w->start_ns;
            if (w->index == 0 && sh->wall_ns)
                record_wall(w, r);
        } else if (kind == PASS_PHASED) {
            w->t->phases[r].build_ns = t[0];
            w->t->phases[r].copy_ns = t[1];
            w->t->phases[r].release_ns = t[2];
        }
    }
    if (cfg->probe && w->index == 0)
        probe(w, (unsigned)passes);
    return NULL;
}

/* Clones share everything but the vector, the counters and the flags. */
static int ensure_clones(struct pt_attachment *a, uint32_t n, struct pt_error *err)
{
    if (n > a->nclones) {
        struct pt_attachment *c = realloc(a->clones, n * sizeof(*c));
        if (!c)
            return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
        memset(c + a->nclones, 0, (n - a->nclones) * sizeof(*c));
        a->clones = c;
        a->nclones = n;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct pt_attachment *c = &a->clones[i];
        void *vec = c->vec;
        uint64_t vec_bytes = c->vec_bytes;
        *c = *a;
        c->vec = vec;
        c->vec_bytes = vec_bytes;
        c->clones = NULL;
        c->nclones = 0;
        c->ref_errors = 0;
        c->faulted = 0;
    }
    return PT_OK;
}

/* A thread's error as the caller's, naming the thread when there are several. */
static int thread_error(struct pt_error *err, uint32_t n, uint32_t i, const struct pt_error *te)
{
    if (n == 1) {
        if (err)
            *err = *te;
        return te->code;
    }
    return pt_set_error(err, te->code, te->sys_errno, te->index, "thread %u: %.200s", i, te->msg);
}

/* Per-thread checks and bookkeeping: validation, I/O sizes, vector entries. */
static int plan_thread(struct pt_worker *w, const struct pt_attachment *a,
                       struct pt_error *te)
{
    const struct pt_design_ops *ops = w->sh->ops;
    struct pt_thread *t = w->t;
    uint64_t n = t->n;
    int rc;

    if (!t->buf)
        return pt_set_error(te, PT_EINVAL, 0, 0, "buffer pointer is NULL");
    if (!t->total_ns || (w->sh->cfg->phase_reps && !t->phases))
        return pt_set_error(te, PT_EARG, 0, 0, "times pointer is NULL");
    if (t->cpu < -1 || t->cpu >= CPU_SETSIZE)
        return pt_set_error(te, PT_EARG, 0, 0, "CPU %d is out of range (0 to %d, or -1)",
                            t->cpu, CPU_SETSIZE - 1);
    if ((rc = pt_validate(a, t->ext, n, t->buf_bytes, &w->total, te)) != PT_OK)
        return rc;
    w->per_io = w->sh->cfg->segs_per_io ? w->sh->cfg->segs_per_io : n;
    w->io_bytes = calloc(n / w->per_io + 1, sizeof(*w->io_bytes));
    if (!w->io_bytes)
        return pt_set_error(te, PT_ENOMEM, ENOMEM, 0, "out of memory");
    for (uint64_t i = 0; i < n; i += w->per_io) {
        uint64_t k = n - i < w->per_io ? n - i : w->per_io;
        uint64_t e = ops->entries(a, t->ext + i, k);
        w->max_entries = e > w->max_entries ? e : w->max_entries;
        w->total_entries += e;
        if (k == n)
            w->io_bytes[w->ios] = w->total;
        else
            for (uint64_t j = i; j < i + k; j++)
                w->io_bytes[w->ios] += t->ext[j].len;
        w->ios++;
    }
    return PT_OK;
}

/* Start the threads (SIGINT and SIGTERM stay with the caller's thread, whose
 * handler sets pt_stop for all), then join them. */
static int spawn_and_join(struct pt_run_shared *sh, struct pt_error *err)
{
    sigset_t stop, old;
    uint32_t made = 0;
    int e = 0;

    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    for (; made < sh->n; made++)
        if ((e = pthread_create(&sh->w[made].tid, NULL, worker_main, &sh->w[made])) != 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_lock(&sh->gate_lock);
    sh->gate = made == sh->n ? 1 : -1;
    pthread_cond_broadcast(&sh->gate_cv);
    pthread_mutex_unlock(&sh->gate_lock);
    for (uint32_t i = 0; i < made; i++)
        pthread_join(sh->w[i].tid, NULL);
    if (made < sh->n)
        return pt_set_error(err, PT_ESYS, e, 0, "cannot start thread %u of %u: %s", made,
                            sh->n, strerror(e));
    return PT_OK;
}

static int run_threads_checked(pt_attachment *a, const struct pt_run_config *cfg,
                               struct pt_thread *threads, uint32_t n, uint64_t *wall_ns,
                               struct pt_error *err);

int pt_run_threads(pt_attachment *a, const struct pt_run_config *cfg,
                   struct pt_thread *threads, uint32_t nthreads, uint64_t *wall_ns,
                   struct pt_error *err)
{
    uint64_t call0 = now_ns();
    int rc;

    if (!a || !cfg || !threads)
        return pt_set_error(err, PT_EARG, 0, 0, "NULL argument");
    if (nthreads == 0 || nthreads > PT_MAX_THREADS)
        return pt_set_error(err, PT_EARG, 0, 0, "threads must be 1 to %d (got %u)",
                            PT_MAX_THREADS, nthreads);
    if (__atomic_exchange_n(&a->busy, 1, __ATOMIC_ACQUIRE))
        return pt_set_error(err, PT_EARG, 0, 0,
                            "this attachment is running in another thread; attach one per thread");
    rc = run_threads_checked(a, cfg, threads, nthreads, wall_ns, err);
    __atomic_store_n(&a->busy, 0, __ATOMIC_RELEASE);
    for (uint32_t i = 0; i < nthreads; i++)
        threads[i].stats.call_ns = now_ns() - call0;
    return rc;
}

int pt_run(pt_attachment *a, const struct pt_run_config *cfg,
           const struct pt_extent *ext, uint64_t n,
           uint8_t *buf, uint64_t buf_bytes,
           uint64_t *total_ns, struct pt_rep_times *phases, struct pt_run_stats *stats,
           struct pt_error *err)
{
    struct pt_thread t;
    int rc;

    if (!stats)
        return pt_set_error(err, PT_EARG, 0, 0, "NULL argument");
    memset(&t, 0, sizeof(t));
    t.ext = ext;
    t.n = n;
    t.buf = buf;
    t.buf_bytes = buf_bytes;
    t.cpu = -1;
    t.total_ns = total_ns;
    t.phases = phases;
    rc = pt_run_threads(a, cfg, &t, 1, NULL, err);
    *stats = t.stats;
    return rc;
}

/* The cold method must exist on this CPU, or have its buffer. */
static int check_cold(const struct pt_run_config *cfg, struct pt_error *err)
{
    struct pt_cpu cpu;
    pt_cpu_features(&cpu);
    switch (cfg->cold_method) {
    case PT_COLD_CLFLUSHOPT:
        if (!cpu.clflushopt)
            return pt_set_error(err, PT_EARG, 0, 0, "this CPU has no CLFLUSHOPT for a cold cache");
        break;
    case PT_COLD_CLFLUSH:
        if (!cpu.clflush)
            return pt_set_error(err, PT_EARG, 0, 0, "this CPU has no CLFLUSH for a cold cache");
        break;
    case PT_COLD_EVICT:
        if (!cfg->evict_buf || cfg->evict_bytes < PT_CACHELINE)
            return pt_set_error(err, PT_EARG, 0, 0, "cold cache needs an eviction buffer");
        return PT_OK;
    default:
        return pt_set_error(err, PT_EARG, 0, 0, "unknown cold-cache method %d", cfg->cold_method);
    }
    pthread_once(&tlb_scrub_once, tlb_scrub_init);
    if (!tlb_scrub)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "cannot map the TLB scrub area");
    return PT_OK;
}

static int run_threads_checked(pt_attachment *a, const struct pt_run_config *cfg,
                               struct pt_thread *threads, uint32_t n, uint64_t *wall_ns,
                               struct pt_error *err)
{
    const struct pt_design_ops *ops = a->ops;
    struct pt_run_shared sh;
    struct pt_worker *w;
    uint64_t base = 0;
    const char *missing;
    double clock_ns = pt_clock_cost_ns();
    int rc, spawn = n > 1 || threads[0].cpu >= 0;

    if (a->faulted)
        return pt_set_error(err, PT_EFAULT, 0, 0,
                            "an earlier run on this attachment ended in SIGBUS; detach it");
    if (cfg->op != PT_READ && cfg->op != PT_WRITE)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown op %d", cfg->op);
    if (cfg->cache != PT_CACHE_WARM && cfg->cache != PT_CACHE_COLD)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown cache mode %d", cfg->cache);
    if (cfg->reps == 0 && !cfg->cold_only)
        return pt_set_error(err, PT_EARG, 0, 0, "reps must be at least 1");
    if (cfg->cold_only && cfg->cache != PT_CACHE_COLD)
        return pt_set_error(err, PT_EARG, 0, 0, "cold_only needs a cold cache");
    if (cfg->cache == PT_CACHE_COLD && (rc = check_cold(cfg, err)) != PT_OK)
        return rc;
    if (a->held)
        return pt_set_error(err, PT_EARG, 0, 0,
                            "this attachment holds references from pt_hold; unhold first");
    if (cfg->persist & ~(PT_PERSIST_EACH | 15) || (cfg->persist & 15) > PT_PERSIST_FENCE)
        return pt_set_error(err, PT_EARG, 0, 0, "unknown persistence mode %d", cfg->persist);
    if (cfg->op == PT_WRITE && (missing = missing_insn(cfg->persist)))
        return pt_set_error(err, PT_EARG, 0, 0,
                            "this CPU has no %s, which the persistence mode needs", missing);
    if (cfg->op == PT_WRITE && !a->backing->writable)
        return pt_set_error(err, PT_EPERM, 0, 0,
                            "the backing is mapped read-only; a scatter would write it");
    if (n > 1 && (rc = ensure_clones(a, n - 1, err)) != PT_OK)
        return rc;
    w = calloc(n, sizeof(*w));
    if (!w)
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");

    memset(&sh, 0, sizeof(sh));
    sh.ops = ops;
    sh.cfg = cfg;
    sh.n = n;
    sh.first_failed = -1;
    sh.wall_ns = wall_ns;
    sh.w = w;
    sh.gate = spawn ? 0 : 1;
    for (uint32_t i = 0; i < n; i++) {
        struct pt_thread *t = &threads[i];
        memset(&t->stats, 0, sizeof(t->stats));
        memset(&t->err, 0, sizeof(t->err));
        w[i].sh = &sh;
        w[i].t = t;
        w[i].a = i == 0 ? a : &a->clones[i - 1];
        w[i].index = i;
        if ((rc = plan_thread(&w[i], a, &t->err)) != PT_OK) {
            thread_error(err, n, i, &t->err);
            goto out;
        }
        /* The memcpy roofline copies each thread's byte count from its own
         * part of the data area; the parts must fit, as one thread's must. */
        w[i].data_base = base;
        if (__builtin_add_overflow(base, w[i].total, &base) || base > a->data_bytes) {
            rc = pt_set_error(err, PT_ERANGE, 0, 0,
                              "the threads' extents total more than the data area of %llu bytes "
                              "(at thread %u)", (unsigned long long)a->data_bytes, i);
            goto out;
        }
    }

    pthread_barrier_init(&sh.barrier, NULL, n);
    pthread_mutex_init(&sh.gate_lock, NULL);
    pthread_cond_init(&sh.gate_cv, NULL);
    if (guard_enter()) {
        rc = pt_set_error(err, PT_ESYS, errno, 0, "sigaction failed: %s", strerror(errno));
    } else if (spawn) {
        rc = spawn_and_join(&sh, err);
    } else {
        worker_main(&w[0]);
        rc = PT_OK;
    }
    guard_leave();
    pthread_cond_destroy(&sh.gate_cv);
    pthread_mutex_destroy(&sh.gate_lock);
    pthread_barrier_destroy(&sh.barrier);

    for (uint32_t i = 1; i < n; i++) {
        a->ref_errors += w[i].a->ref_errors;
        a->faulted |= w[i].a->faulted;
    }
    if (rc != PT_OK)
        goto out;
    if (sh.first_failed >= 0) {
        rc = thread_error(err, n, (uint32_t)sh.first_failed, &threads[sh.first_failed].err);
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct pt_run_stats *s = &threads[i].stats;
        s->clock_ns = clock_ns;
        s->bytes = w[i].total;
        s->ios = w[i].ios;
        s->entries = w[i].total_entries;
        s->vector_bytes = w[i].total_entries * ops->entry_bytes;
    }
    rc = PT_OK;
out:
    for (uint32_t i = 0; i < n; i++)
        free(w[i].io_bytes);
    free(w);
    return rc;
}

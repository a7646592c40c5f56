/*
 * backing.c - mapping the file, device or memfd every design copies to and
 * from: sized, aligned, populated before any timing, statx's DAX bit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pt_guard.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   /* linux/mman.h, since 5.14 */
#define MADV_POPULATE_WRITE 23
#endif

unsigned pt_test_map_hooks;

void pt_test_set_map_hooks(unsigned hooks) { pt_test_map_hooks = hooks; }

/* Fault in every page, the way a kernel without MADV_POPULATE_* lets us. */
static int touch_pages(void *arg, struct pt_error *err)
{
    const struct pt_backing *b = arg;
    (void)err;
    for (uint64_t off = 0; off < b->size; off += PT_PAGE_SIZE) {
        volatile uint8_t *q = b->base + off;
        if (b->writable)
            *q = *q;
        else
            (void)*q;
    }
    return PT_OK;
}

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
    if (size > PT_MAX_CAPACITY)
        return pt_set_error(err, PT_EINVAL, 0, 0,
                            "backing size %llu is over the limit of %llu bytes (2^57)",
                            (unsigned long long)size, (unsigned long long)PT_MAX_CAPACITY);
    if (align & (align - 1) || (align && size % align))
        return pt_set_error(err, PT_EINVAL, 0, 0,
                            "backing size %llu is not a multiple of the alignment %llu",
                            (unsigned long long)size, (unsigned long long)align);
    if ((flags & PT_MAP_RESERVE) && !writable)
        return pt_set_error(err, PT_EINVAL, 0, 0, "cannot reserve a read-only backing");
    if (flags & PT_MAP_RESERVE) {
        /* posix_fallocate returns the error instead of setting errno; tmpfs
         * stops at a pending signal (EINTR, seen in a TCG guest), and a
         * retry only allocates what is still missing. */
        do
            rc = posix_fallocate(fd, 0, (off_t)size);
        while (rc == EINTR);
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
    if (flags & (PT_MAP_HUGE_ADVISE | PT_MAP_NO_HUGE)) {
        int huge = flags & PT_MAP_HUGE_ADVISE;
        if (madvise(p, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) {
            int e = errno;
            munmap(p, size);
            return pt_set_error(err, PT_ESYS, e, 0, "madvise(%s) failed: %s",
                                huge ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", strerror(e));
        }
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

    if (pt_test_map_hooks & PT_TEST_TRUNCATE_AFTER_MAP)
        (void)!ftruncate(fd, 0);
    /* Populate page tables now so no repetition pays first-touch faults.
     * A write fault also maps writable PTEs on file systems that track dirt.
     * MADV_POPULATE_* (Linux 5.14) faults in batches and returns EFAULT
     * where a touch would raise SIGBUS; older kernels touch page by page,
     * under the SIGBUS guard. */
    rc = (pt_test_map_hooks & PT_TEST_POPULATE_BY_TOUCH) ? -1 :
         madvise(p, size, writable ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
    if (rc && ((pt_test_map_hooks & PT_TEST_POPULATE_BY_TOUCH) || errno == EINVAL))
        rc = pt_guarded(b, touch_pages, b, "populating the mapping", err);
    else if (rc)
        rc = pt_set_error(err, PT_ESYS, errno, 0,
                          "populating the mapping failed: %s (%s)", strerror(errno),
                          errno == EFAULT ? "the file is shorter than the mapping, or the "
                          "medium reported an error" : "a full file system, or out of memory");
    if (rc) {
        munmap(p, size);
        free(b);
        return rc;
    }
    *out = b;
    return PT_OK;
}

int pt_backing_map_sync(const pt_backing *b) { return b->map_sync; }

#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000  /* linux/stat.h, since 5.8 */
#endif

static int statx_dax_at(int dirfd, const char *path, int flags)
{
    struct statx stx;
    if (statx(dirfd, path, flags, STATX_BASIC_STATS, &stx))
        return -errno;
    if (!(stx.stx_attributes_mask & STATX_ATTR_DAX))
        return -ENOTSUP;
    return !!(stx.stx_attributes & STATX_ATTR_DAX);
}

int pt_statx_dax(const char *path) { return statx_dax_at(AT_FDCWD, path, 0); }

/* The open file itself: a backing pagetax creates is unlinked at once, and
 * ext4 marks only regular files DAX, never their directory. */
int pt_statx_dax_fd(int fd) { return statx_dax_at(fd, "", AT_EMPTY_PATH); }

void pt_backing_unmap(pt_backing *b)
{
    if (!b)
        return;
    munmap(b->base, b->size);
    free(b);
}

void *pt_backing_base(const pt_backing *b) { return b->base; }

/*
 * kernel - the same extents through preadv/pwritev on the backing's file
 * descriptor: the kernel's own path (on tmpfs, shmem_file_read_iter and a
 * folio at a time), as a peer.
 *
 * The entries are struct iovec into the buffer.  The syscalls take one file
 * offset each, so one call covers a run of file-contiguous extents, at most
 * IOV_MAX of them; a random pattern costs one syscall per segment.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sys/uio.h>

#include "pt_internal.h"

_Static_assert(sizeof(struct iovec) == 16, "iovec is 16 bytes");

static void kernel_build(struct pt_attachment *a, struct pt_io *io)
{
    struct iovec *v = io->vec;
    uint8_t *p = io->buf;
    (void)a;
    for (uint64_t i = 0; i < io->n; i++) {
        v[i].iov_base = p;
        v[i].iov_len = io->ext[i].len;
        p += io->ext[i].len;
    }
    io->nvec = io->n;
}

/* One syscall run; retries short transfers by advancing the iovecs. */
static int rw_run(int fd, int write, struct iovec *iov, int cnt, off_t off,
                  uint64_t first, struct pt_error *err)
{
    while (cnt > 0) {
        ssize_t r = write ? pwritev(fd, iov, cnt, off) : preadv(fd, iov, cnt, off);
        if (pt_stop)
            return pt_set_error(err, PT_EINTR, EINTR, first, "interrupted");
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return pt_set_error(err, PT_ESYS, errno, first, "%s at file offset %lld failed: %s",
                                write ? "pwritev" : "preadv", (long long)off, strerror(errno));
        }
        if (r == 0)
            return pt_set_error(err, PT_ERANGE, 0, first,
                                "%s reached end of file at offset %lld",
                                write ? "pwritev" : "preadv", (long long)off);
        off += r;
        while (cnt > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return PT_OK;
}

static int kernel_copy(struct pt_attachment *a, struct pt_io *io, int write,
                       struct pt_error *err)
{
    struct iovec *v = io->vec;
    const struct pt_extent *ext = io->ext;
    off_t data_off = (off_t)(a->data - a->backing->base);
    uint64_t i = 0;

    while (i < io->nvec) {
        uint64_t j = i + 1;
        if (pt_stop)
            return pt_set_error(err, PT_EINTR, EINTR, i, "interrupted");
        while (j < io->nvec && j - i < IOV_MAX && ext[j].off == ext[j - 1].off + ext[j - 1].len)
            j++;
        int rc = rw_run(a->backing->fd, write, v + i, (int)(j - i),
                        data_off + (off_t)ext[i].off, i, err);
        if (rc != PT_OK)
            return rc;
        i = j;
    }
    return PT_OK;
}

static int kernel_gather(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    return kernel_copy(a, io, 0, err);
}

static int kernel_scatter(struct pt_attachment *a, struct pt_io *io, struct pt_error *err)
{
    return kernel_copy(a, io, 1, err);
}

const struct pt_design_ops pt_design_kernel = {
    .name = "kernel",
    .flags = PT_DESIGN_OWN_PERSIST,
    .entry_bytes = sizeof(struct iovec),
    .metadata = pt_metadata_none,
    .entries = pt_entries_per_extent,
    .build = kernel_build,
    .gather = kernel_gather,
    .scatter = kernel_scatter,
    .release = pt_release_nothing,
};

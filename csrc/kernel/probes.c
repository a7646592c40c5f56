/*
 * probes.c - the kernel's per-page paths that need no device: vmsplice and
 * splice (a reference taken, then dropped, per page), mincore and
 * MADV_POPULATE_READ (page-table walks).  Each system call is timed alone;
 * nothing else sits between the two clock reads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../pt_clock.h"
#include "probes.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   /* Linux 5.14 */
#endif

static int fail(const char **failed, const char *what, int err)
{
    *failed = what;
    return -err;
}

/* The checks every probe makes before its first system call. */
static int check_span(const uint8_t *buf, uint64_t buf_bytes, uint64_t page_bytes,
                      uint64_t pages, uint64_t calls, const void *out, const char **failed)
{
    if (!buf || !out)
        return fail(failed, "a NULL buffer", EINVAL);
    if (page_bytes == 0 || (page_bytes & (page_bytes - 1)) || ((uintptr_t)buf & (page_bytes - 1)))
        return fail(failed, "a buffer not aligned to its page size", EINVAL);
    if (pages == 0 || calls == 0)
        return fail(failed, "zero pages or calls", EINVAL);
    if (pages > buf_bytes / page_bytes)
        return fail(failed, "more pages than the buffer holds", EINVAL);
    return 0;
}

/* Move len bytes from the pipe to fd, however many calls splice needs. */
static int drain(int pipe_read, int fd, uint64_t len, const char **failed)
{
    while (len) {
        ssize_t n = splice(pipe_read, NULL, fd, NULL, len, 0);
        if (n < 0)
            return fail(failed, "splice", errno);
        if (n == 0)
            return fail(failed, "splice (the pipe was empty)", EIO);
        len -= (uint64_t)n;
    }
    return 0;
}

int pk_vmsplice_splice(uint8_t *buf, uint64_t buf_bytes, uint64_t page_bytes, uint64_t pages,
                       int pipe_write, int pipe_read, int null_fd, uint64_t calls,
                       uint64_t *vmsplice_ns, uint64_t *splice_ns, const char **failed)
{
    int rc = check_span(buf, buf_bytes, page_bytes, pages, calls, vmsplice_ns, failed);
    if (rc)
        return rc;
    if (!splice_ns)
        return fail(failed, "a NULL timing array", EINVAL);
    uint64_t len = pages * page_bytes;
    int room = fcntl(pipe_write, F_GETPIPE_SZ);
    if (room < 0)
        return fail(failed, "F_GETPIPE_SZ", errno);
    if ((uint64_t)room < len)
        return fail(failed, "a pipe smaller than the pages (F_SETPIPE_SZ)", ENOSPC);
    for (uint64_t c = 0; c < calls; c++) {
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        uint64_t t0 = pt_now_ns();
        ssize_t n = vmsplice(pipe_write, &iov, 1, 0);
        uint64_t t1 = pt_now_ns();
        if (n < 0)
            return fail(failed, "vmsplice", errno);
        if ((uint64_t)n != len) {
            (void)drain(pipe_read, null_fd, (uint64_t)n, failed);
            return fail(failed, "vmsplice (a short transfer)", EIO);
        }
        uint64_t t2 = pt_now_ns();
        ssize_t m = splice(pipe_read, NULL, null_fd, NULL, len, 0);
        uint64_t t3 = pt_now_ns();
        if (m < 0)
            return fail(failed, "splice", errno);
        if ((uint64_t)m != len) {  /* what is left is drained, and the call not counted */
            rc = drain(pipe_read, null_fd, len - (uint64_t)m, failed);
            return rc ? rc : fail(failed, "splice to /dev/null (a short transfer)", EIO);
        }
        vmsplice_ns[c] = t1 - t0;
        splice_ns[c] = t3 - t2;
    }
    return 0;
}

int pk_vmsplice_shares(uint8_t *buf, uint64_t page_bytes, int pipe_write, int pipe_read,
                       const char **failed)
{
    int rc = check_span(buf, page_bytes, page_bytes, 1, 1, buf, failed);
    if (rc)
        return rc;
    uint8_t before = buf[0], seen = 0;
    buf[0] = 0x5a;
    struct iovec iov = { .iov_base = buf, .iov_len = 1 };
    ssize_t n = vmsplice(pipe_write, &iov, 1, 0);
    if (n != 1) {
        buf[0] = before;
        return fail(failed, "vmsplice", n < 0 ? errno : EIO);
    }
    buf[0] = 0xa5;  /* after the call: only a referenced page shows it */
    n = read(pipe_read, &seen, 1);
    buf[0] = before;
    if (n != 1)
        return fail(failed, "read from the pipe", n < 0 ? errno : EIO);
    return seen == 0xa5;
}

int pk_mincore(uint8_t *buf, uint64_t buf_bytes, uint64_t page_bytes, uint64_t pages,
               uint8_t *vec, uint64_t calls, uint64_t *ns, const char **failed)
{
    int rc = check_span(buf, buf_bytes, page_bytes, pages, calls, ns, failed);
    if (rc)
        return rc;
    if (!vec)
        return fail(failed, "a NULL mincore vector", EINVAL);
    /* vec holds one byte per base page: the caller sizes it for pages * page_bytes */
    for (uint64_t c = 0; c < calls; c++) {
        uint64_t t0 = pt_now_ns();
        int r = mincore(buf, pages * page_bytes, vec);
        uint64_t t1 = pt_now_ns();
        if (r)
            return fail(failed, "mincore", errno);
        ns[c] = t1 - t0;
    }
    return 0;
}

int pk_populate_read(uint8_t *buf, uint64_t buf_bytes, uint64_t page_bytes, uint64_t pages,
                     uint64_t calls, uint64_t *ns, const char **failed)
{
    int rc = check_span(buf, buf_bytes, page_bytes, pages, calls, ns, failed);
    if (rc)
        return rc;
    for (uint64_t c = 0; c < calls; c++) {
        uint64_t t0 = pt_now_ns();
        int r = madvise(buf, pages * page_bytes, MADV_POPULATE_READ);
        uint64_t t1 = pt_now_ns();
        if (r)
            return fail(failed, "madvise(MADV_POPULATE_READ)", errno);
        ns[c] = t1 - t0;
    }
    return 0;
}

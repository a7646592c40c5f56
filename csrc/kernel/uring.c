/*
 * uring.c - O_DIRECT reads through io_uring, with and without a registered
 * buffer: READ makes the block layer pin the buffer's pages for every I/O
 * (bio_iov_iter_get_pages, FOLL_PIN) and unpin them at completion;
 * READ_FIXED hands it the pages pinned once at registration.  Raw system
 * calls (no liburing, which a fresh machine may lack); one I/O in flight.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../pt_clock.h"
#include "probes.h"

struct pk_ring {
    int fd;
    void *sq_map, *cq_map;
    size_t sq_map_bytes, cq_map_bytes;
    struct io_uring_sqe *sqes;
    size_t sqes_bytes;
    unsigned *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    uint8_t *registered;   /* the registered buffer, or NULL */
    uint64_t registered_bytes;
};

static int fail(const char **failed, const char *what, int err)
{
    *failed = what;
    return -err;
}

static int ring_enter(int fd, unsigned submit, unsigned complete)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, complete, IORING_ENTER_GETEVENTS,
                        NULL, 0);
}

void pk_ring_close(struct pk_ring *ring)
{
    if (!ring)
        return;
    if (ring->sqes && ring->sqes != MAP_FAILED)
        munmap(ring->sqes, ring->sqes_bytes);
    if (ring->cq_map && ring->cq_map != MAP_FAILED && ring->cq_map != ring->sq_map)
        munmap(ring->cq_map, ring->cq_map_bytes);
    if (ring->sq_map && ring->sq_map != MAP_FAILED)
        munmap(ring->sq_map, ring->sq_map_bytes);
    /* Unregister first: closing alone unpins the pages later, in the ring's
     * exit work, and a hugetlb page still pinned cannot be given back. */
    if (ring->fd >= 0 && ring->registered)
        (void)syscall(__NR_io_uring_register, ring->fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
    if (ring->fd >= 0)
        close(ring->fd);
    free(ring);
}

struct pk_ring *pk_ring_open(unsigned entries, int *err)
{
    struct io_uring_params p;
    struct pk_ring *ring = calloc(1, sizeof(*ring));
    if (!ring) {
        *err = ENOMEM;
        return NULL;
    }
    memset(&p, 0, sizeof(p));
    ring->fd = (int)syscall(__NR_io_uring_setup, entries ? entries : 4, &p);
    if (ring->fd < 0) {
        *err = errno;
        free(ring);
        return NULL;
    }
    ring->sq_map_bytes = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    ring->cq_map_bytes = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (ring->cq_map_bytes > ring->sq_map_bytes)
            ring->sq_map_bytes = ring->cq_map_bytes;
    }
    ring->sq_map = mmap(NULL, ring->sq_map_bytes, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_POPULATE, ring->fd, IORING_OFF_SQ_RING);
    if (ring->sq_map == MAP_FAILED)
        goto fail;
    ring->cq_map = (p.features & IORING_FEAT_SINGLE_MMAP) ? ring->sq_map :
        mmap(NULL, ring->cq_map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
             ring->fd, IORING_OFF_CQ_RING);
    if (ring->cq_map == MAP_FAILED)
        goto fail;
    ring->sqes_bytes = p.sq_entries * sizeof(struct io_uring_sqe);
    ring->sqes = mmap(NULL, ring->sqes_bytes, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_POPULATE, ring->fd, IORING_OFF_SQES);
    if (ring->sqes == MAP_FAILED)
        goto fail;
    uint8_t *sq = ring->sq_map, *cq = ring->cq_map;
    ring->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    ring->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    ring->sq_array = (unsigned *)(sq + p.sq_off.array);
    ring->cq_head = (unsigned *)(cq + p.cq_off.head);
    ring->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    ring->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    ring->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return ring;
fail:
    *err = errno;
    pk_ring_close(ring);
    return NULL;
}

int pk_ring_register(struct pk_ring *ring, uint8_t *buf, uint64_t buf_bytes,
                     const char **failed)
{
    if (!ring || !buf || !buf_bytes)
        return fail(failed, "no ring or buffer", EINVAL);
    if (ring->registered)
        return fail(failed, "a buffer is already registered", EBUSY);
    struct iovec iov = { .iov_base = buf, .iov_len = buf_bytes };
    if (syscall(__NR_io_uring_register, ring->fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
        return fail(failed, "io_uring_register(IORING_REGISTER_BUFFERS)", errno);
    ring->registered = buf;
    ring->registered_bytes = buf_bytes;
    return 0;
}

/* Submit one SQE and wait for its CQE; *res is the CQE's result. */
static int one_io(struct pk_ring *ring, const struct io_uring_sqe *sqe, int *res)
{
    unsigned tail = *ring->sq_tail, index = tail & *ring->sq_mask;
    ring->sqes[index] = *sqe;
    ring->sq_array[index] = index;
    __atomic_store_n(ring->sq_tail, tail + 1, __ATOMIC_RELEASE);
    int n;
    do
        n = ring_enter(ring->fd, 1, 1);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    unsigned head = *ring->cq_head;
    while (head == __atomic_load_n(ring->cq_tail, __ATOMIC_ACQUIRE)) {
        do
            n = ring_enter(ring->fd, 0, 1);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return -errno;
    }
    *res = ring->cqes[head & *ring->cq_mask].res;
    __atomic_store_n(ring->cq_head, head + 1, __ATOMIC_RELEASE);
    return 0;
}

int pk_ring_read(struct pk_ring *ring, int fd, uint8_t *buf, uint64_t buf_bytes,
                 uint64_t bytes, int fixed, uint64_t calls, uint64_t *ns,
                 const char **failed)
{
    if (!ring || !buf || !ns)
        return fail(failed, "no ring, buffer or timing array", EINVAL);
    if (bytes == 0 || bytes > buf_bytes || bytes > (1u << 30) || calls == 0)
        return fail(failed, "an I/O size beyond the buffer, or zero calls", EINVAL);
    if (fixed && (buf < ring->registered ||
                  buf + bytes > ring->registered + ring->registered_bytes))
        return fail(failed, "READ_FIXED outside the registered buffer", EINVAL);
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof(sqe));
    sqe.opcode = fixed ? IORING_OP_READ_FIXED : IORING_OP_READ;
    sqe.fd = fd;
    sqe.addr = (uint64_t)(uintptr_t)buf;
    sqe.len = (uint32_t)bytes;
    sqe.off = 0;
    sqe.buf_index = 0;
    for (uint64_t c = 0; c < calls; c++) {
        int res = 0;
        uint64_t t0 = pt_now_ns();
        int rc = one_io(ring, &sqe, &res);
        uint64_t t1 = pt_now_ns();
        if (rc)
            return fail(failed, "io_uring_enter", -rc);
        if (res < 0)
            return fail(failed, fixed ? "IORING_OP_READ_FIXED" : "IORING_OP_READ", -res);
        if ((uint64_t)res != bytes)
            return fail(failed, fixed ? "IORING_OP_READ_FIXED (a short read)" :
                        "IORING_OP_READ (a short read)", EIO);
        ns[c] = t1 - t0;
    }
    return 0;
}

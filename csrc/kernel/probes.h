/*
 * probes.h - the kernel probes' API (probes.c, uring.c): system calls that
 * make the running kernel pin, walk or release a caller's pages, each call
 * timed alone with the core's clock (pt_clock.h).  The cffi cdef of
 * pagetax._kernel is the text between the markers.
 *
 * Every function checks its arguments before any system call and returns
 * 0, or a negative errno with *failed naming what failed (a static string).
 * Timings go to ns[0..calls-1], one per call: the per-call part of a cost
 * and the clock read itself land in the intercept of a slope over pages
 * per call (pagetax/kernel/slope.py), never in the per-page part.
 */
#ifndef PAGETAX_PROBES_H
#define PAGETAX_PROBES_H

#include <stdint.h>

/* cdef-begin */
/*
 * vmsplice `pages` pages at buf into the pipe (the kernel takes a reference
 * on each, get_user_pages_fast), then splice them to /dev/null (it drops
 * each): `calls` times, each system call timed apart.  The pipe must hold
 * pages * page_bytes (F_SETPIPE_SZ).
 */
int pk_vmsplice_splice(uint8_t *buf, uint64_t buf_bytes, uint64_t page_bytes, uint64_t pages,
                       int pipe_write, int pipe_read, int null_fd, uint64_t calls,
                       uint64_t *vmsplice_ns, uint64_t *splice_ns, const char **failed);

/*
 * 1 when a store made after vmsplice shows in what the pipe gives back
 * (the pipe holds references to the caller's page), 0 when it does not (the
 * kernel copied).  The buffer's first byte is restored.
 */
int pk_vmsplice_shares(uint8_t *buf, uint64_t page_bytes, int pipe_write, int pipe_read,
                       const char **failed);

/* mincore over `pages` pages: a page-table walk that touches no struct page. */
int pk_mincore(uint8_t *buf, uint64_t buf_bytes, uint64_t page_bytes, uint64_t pages,
               uint8_t *vec, uint64_t calls, uint64_t *ns, const char **failed);

/* madvise(MADV_POPULATE_READ) over `pages` pages already present. */
int pk_populate_read(uint8_t *buf, uint64_t buf_bytes, uint64_t page_bytes, uint64_t pages,
                     uint64_t calls, uint64_t *ns, const char **failed);

/* An io_uring of a few entries, one I/O in flight at a time (uring.c). */
struct pk_ring;
struct pk_ring *pk_ring_open(unsigned entries, int *err);
/* Register one buffer (a long-term pin of its pages), index 0. */
int pk_ring_register(struct pk_ring *ring, uint8_t *buf, uint64_t buf_bytes,
                     const char **failed);
/*
 * `calls` reads of `bytes` at file offset 0 of fd into buf, each submitted
 * and reaped alone and timed from submission to completion: READ_FIXED
 * from the registered buffer when fixed, else READ.
 */
int pk_ring_read(struct pk_ring *ring, int fd, uint8_t *buf, uint64_t buf_bytes,
                 uint64_t bytes, int fixed, uint64_t calls, uint64_t *ns,
                 const char **failed);
void pk_ring_close(struct pk_ring *ring);
/* cdef-end */

#endif

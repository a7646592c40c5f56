/*
 * random_lines.c - an independent hand-written loop: the machine's limit for
 * independent random 64-byte line copies, to hold pagetax's `vec` row against.
 * It shares no code with pagetax: its own mapping, its own request (an
 * offset and a length per line, 16 bytes, as an extent or an iovec), a
 * constant-size copy the compiler inlines, a software prefetch, and its own
 * cold start made the same way as pagetax's (flush the lines it will touch,
 * its request included, then one load on each of 16384 unrelated pages to
 * empty the TLB).  rl_run_io cuts the lines into I/Os as pagetax's
 * --segs-per-io does: per I/O, an iovec array of its lines, then the copy,
 * prefetching only within the I/O.
 *
 * Built and loaded by check_goals.py (cc -O2 -shared -fPIC).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#define SCRUB_PAGES 16384

static uint8_t *base, *dst, *scrub;
static struct { uint64_t off, len; } *req;  /* the request: an offset and a length per line */
static struct { uint8_t *base; uint64_t len; } *iov;  /* one I/O's vector */
static uint64_t size, lines;
static int flush_insn;  /* 1 CLFLUSHOPT, 2 CLFLUSH */

static uint64_t now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* A tmpfs-backed shared mapping like pagetax's default, populated. */
int rl_setup(uint64_t backing_bytes, uint64_t nlines, int insn, uint64_t seed)
{
    int fd = memfd_create("random_lines", MFD_CLOEXEC);
    if (fd < 0 || posix_fallocate(fd, 0, (off_t)backing_bytes))
        return -1;
    base = mmap(NULL, backing_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
        return -1;
    for (uint64_t o = 0; o < backing_bytes; o += 4096)
        base[o] = 1;
    scrub = mmap(NULL, (uint64_t)SCRUB_PAGES << 12, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scrub == MAP_FAILED)
        return -1;
    madvise(scrub, (uint64_t)SCRUB_PAGES << 12, MADV_NOHUGEPAGE);
    size = backing_bytes;
    lines = nlines;
    flush_insn = insn;
    req = malloc(nlines * sizeof(*req));
    dst = aligned_alloc(4096, nlines * 64);
    iov = malloc(nlines * sizeof(*iov));
    if (!req || !dst || !iov)
        return -1;
    memset(iov, 0, nlines * sizeof(*iov));
    memset(dst, 1, nlines * 64);
    uint64_t x = seed | 1, slots = backing_bytes / 64;
    for (uint64_t i = 0; i < nlines; i++) {  /* xorshift64; repeats are rare and harmless */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        req[i].off = (x % slots) * 64;
        req[i].len = 64;
    }
    return 0;
}

static void flush(const void *p)
{
    if (flush_insn == 1)
        __asm__ __volatile__("clflushopt %0" : "+m"(*(volatile char *)p));
    else
        __asm__ __volatile__("clflush %0" : "+m"(*(volatile char *)p));
}

static void cold_start(void)
{
    for (uint64_t i = 0; i < lines; i++)
        flush(base + req[i].off);
    for (uint64_t i = 0; i < lines; i++)
        flush(dst + i * 64);
    for (uint64_t i = 0; i < lines * sizeof(*req); i += 64)
        flush((uint8_t *)req + i);
    for (uint64_t i = 0; i < lines * sizeof(*iov); i += 64)
        flush((uint8_t *)iov + i);
    __asm__ __volatile__("mfence" ::: "memory");
    for (uint64_t i = 0; i < SCRUB_PAGES; i++)
        (void)*(volatile uint8_t *)(scrub + (i << 12) + ((i & 63) << 6));
}

#define IO_LOOP(D)                                                                 \
    for (uint64_t first = 0; first < lines; first += per_io) {                     \
        uint64_t n = lines - first < per_io ? lines - first : per_io;              \
        for (uint64_t i = 0; i < n; i++) {                                         \
            iov[i].base = base + req[first + i].off;                               \
            iov[i].len = req[first + i].len;                                       \
        }                                                                          \
        for (uint64_t i = 0; i < n; i++) {                                         \
            if ((D) && i + (D) < n)                                                \
                __builtin_prefetch(iov[i + (D)].base, 0, 3);                       \
            memcpy(dst + (first + i) * 64, iov[i].base, 64); /* the len is 64 */   \
        }                                                                          \
    }

/* One cold repetition at prefetch distance d, cut into I/Os of per_io lines
 * (0: one I/O of all of them); returns ns per line. */
double rl_run_io(int d, uint64_t per_io)
{
    if (per_io == 0 || per_io > lines)
        per_io = lines;
    cold_start();
    uint64_t t0 = now();
    switch (d) {
    case 0: IO_LOOP(0) break;
    case 8: IO_LOOP(8) break;
    case 16: IO_LOOP(16) break;
    case 32: IO_LOOP(32) break;
    default: IO_LOOP(64) break;
    }
    return (double)(now() - t0) / (double)lines;
}

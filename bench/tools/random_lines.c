/*
 * random_lines.c - an independent hand-written loop: the machine's limit for
 * independent random 64-byte line copies, to hold pagetax's `vec` row against.
 * It shares no code with pagetax: its own mapping, its own offsets, a
 * constant-size copy the compiler inlines, and a software prefetch.
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

static uint8_t *base, *dst, *evict;
static uint64_t *offs;
static uint64_t size, lines, evict_bytes;

static uint64_t now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* A tmpfs-backed shared mapping like pagetax's default, populated. */
int rl_setup(uint64_t backing_bytes, uint64_t nlines, uint64_t llc_bytes, uint64_t seed)
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
    size = backing_bytes;
    lines = nlines;
    offs = malloc(nlines * sizeof(*offs));
    dst = aligned_alloc(4096, nlines * 64);
    evict_bytes = 4 * llc_bytes;
    evict = malloc(evict_bytes);
    if (!offs || !dst || !evict)
        return -1;
    memset(dst, 1, nlines * 64);
    memset(evict, 1, evict_bytes);
    uint64_t x = seed | 1, slots = backing_bytes / 64;
    for (uint64_t i = 0; i < nlines; i++) {  /* xorshift64; repeats are rare and harmless */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        offs[i] = (x % slots) * 64;
    }
    return 0;
}

#define LOOP(D)                                                        \
    for (uint64_t i = 0; i < lines; i++) {                             \
        if ((D) && i + (D) < lines)                                    \
            __builtin_prefetch(base + offs[i + (D)], 0, 3);            \
        memcpy(dst + i * 64, base + offs[i], 64);                      \
    }

/* One cold repetition at prefetch distance d; returns ns per line. */
double rl_run(int d)
{
    memset(evict, d, evict_bytes);
    uint64_t t0 = now();
    switch (d) {
    case 0: LOOP(0) break;
    case 8: LOOP(8) break;
    case 16: LOOP(16) break;
    case 32: LOOP(32) break;
    default: LOOP(64) break;
    }
    return (double)(now() - t0) / (double)lines;
}

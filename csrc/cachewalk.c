/*
 * cachewalk.c - what the machine really caches, as lmbench's lat_mem_rd
 * finds it: dependent loads chasing a random cycle through every line of a
 * region.  sysfs's cache size is what the CPU reports, not what a process
 * in a guest, or beside a neighbour, gets to use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "pt_internal.h"

#define PMD_BYTES (2ULL << 20)

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Bytes of [p, p + bytes) that /proc/self/smaps says are on 2 MiB pages. */
static uint64_t huge_bytes_of(const void *p)
{
    char line[256];
    uint64_t huge = 0;
    int inside = 0;
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi, kb;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        } else if (inside && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1) {
            huge = (uint64_t)kb << 10;
            break;
        }
    }
    fclose(f);
    return huge;
}

#define MAX_ROUNDS 15

int pt_cache_walk(uint64_t bytes, uint64_t loads, uint32_t rounds, uint64_t seed,
                  double *ns_per_load, uint64_t *huge_bytes, struct pt_error *err)
{
    uint64_t took[MAX_ROUNDS];
    double clock_ns;
    const uint64_t lines = bytes / PT_CACHELINE;
    uint8_t *map, *base;
    uint32_t *order;
    uint64_t x = seed | 1, map_bytes;
    const void *p;

    if (lines < 2 || lines > UINT32_MAX || bytes % PT_CACHELINE || loads == 0 || rounds == 0 ||
        rounds > MAX_ROUNDS)
        return pt_set_error(err, PT_EARG, 0, 0,
                            "a walk needs 2 to 2^32 whole cache lines, some loads and 1 to %d "
                            "rounds (got %llu bytes, %llu loads, %u rounds)", MAX_ROUNDS,
                            (unsigned long long)bytes, (unsigned long long)loads, rounds);
    map_bytes = bytes + PMD_BYTES;
    map = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return pt_set_error(err, PT_ENOMEM, errno, 0, "cannot map %llu bytes to walk: %s",
                            (unsigned long long)bytes, strerror(errno));
    base = (uint8_t *)(((uintptr_t)map + PMD_BYTES - 1) & ~(uintptr_t)(PMD_BYTES - 1));
    madvise(base, bytes, MADV_HUGEPAGE);  /* fewer TLB misses: the walk is about caches */
    order = malloc(lines * sizeof(*order));
    if (!order) {
        munmap(map, map_bytes);
        return pt_set_error(err, PT_ENOMEM, ENOMEM, 0, "out of memory");
    }
    /* Sattolo's shuffle: one cycle through every line, in random order. */
    for (uint64_t i = 0; i < lines; i++)
        order[i] = (uint32_t)i;
    for (uint64_t i = lines - 1; i > 0; i--) {
        uint64_t j = xorshift(&x) % i;
        uint32_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (uint64_t i = 0; i < lines; i++)
        *(void **)(base + (uint64_t)i * PT_CACHELINE) = base + (uint64_t)order[i] * PT_CACHELINE;
    free(order);
    *huge_bytes = huge_bytes_of(base);
    p = base;
    for (uint64_t i = 0; i < loads; i++)  /* warm what fits */
        p = *(const void *const volatile *)p;
    for (uint32_t r = 0; r < rounds; r++) {
        uint64_t t0 = pt_now_ns();
        for (uint64_t i = 0; i < loads; i++)
            p = *(const void *const volatile *)p;
        took[r] = pt_now_ns() - t0;
    }
    __asm__ __volatile__("" : : "r"(p) : "memory");
    munmap(map, map_bytes);
    clock_ns = pt_clock_cost_ns();
    *ns_per_load = (pt_median_u64(took, rounds) - clock_ns) / (double)loads;
    return PT_OK;
}

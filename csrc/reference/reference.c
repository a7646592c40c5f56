/*
 * reference.c - the drift reference: a gather or a scatter of the same
 * segments as a row, written apart from the core.  It shares no header, no
 * loop and no copy routine with csrc/, and no harness: one loop, one glibc
 * memcpy per segment, a prefetch 16 segments ahead, two clock reads around
 * it all.  A change to pagetax's engine cannot move it; the machine (a
 * neighbour, the clock frequency, the memory's state) moves it as it moves
 * the designs measured beside it.  `pagetax compare` divides by it.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "reference.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t ref_gather(const uint8_t *data, const struct ref_extent *ext, uint64_t n, uint8_t *buf)
{
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        if (i + 16 < n)
            __builtin_prefetch(data + ext[i + 16].off, 0, 3);
        memcpy(buf, data + ext[i].off, ext[i].len);
        buf += ext[i].len;
    }
    return now_ns() - t0;
}

uint64_t ref_scatter(uint8_t *data, const struct ref_extent *ext, uint64_t n, const uint8_t *buf)
{
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        if (i + 16 < n)
            __builtin_prefetch(data + ext[i + 16].off, 1, 3);
        memcpy(data + ext[i].off, buf, ext[i].len);
        buf += ext[i].len;
    }
    return now_ns() - t0;
}

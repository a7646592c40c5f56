/*
 * pt_clock.h - the one clock every timed region reads: the core's
 * repetitions and the kernel probes (csrc/kernel/) alike.
 */
#ifndef PAGETAX_CLOCK_H
#define PAGETAX_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t pt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif

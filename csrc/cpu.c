/*
 * cpu.c - what cpuid says this CPU can do, and which instruction a
 * persistence mode needs and lacks: asked here once, by C and Python alike.
 */
#include "pt_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* PRFCHW: cpuid 0x80000001 ECX bit 8 (AMD's 3DNowPrefetch, Intel's too). */
static int has_prefetchw(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(0x80000001, &a, &b, &c, &d))
        return !!(c & (1u << 8));
#endif
    return 0;
}

int pt_cpu_prefetchw;

__attribute__((constructor)) static void ask_prefetchw(void)
{
    pt_cpu_prefetchw = has_prefetchw();
}

void pt_cpu_features(struct pt_cpu *out)
{
    memset(out, 0, sizeof(*out));
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        out->clflush = !!(d & (1u << 19));
        out->sse2 = !!(d & (1u << 26));
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        out->clflushopt = !!(b & (1u << 23));
        out->clwb = !!(b & (1u << 24));
    }
#endif
    out->prefetchw = has_prefetchw();
}

const char *pt_persist_missing(int persist)
{
    struct pt_cpu cpu;
    pt_cpu_features(&cpu);
    switch (persist & ~PT_PERSIST_EACH) {
    case PT_PERSIST_NONE:
        return NULL;
    case PT_PERSIST_CLWB:
        return cpu.clwb ? NULL : "CLWB";
    case PT_PERSIST_CLFLUSHOPT:
        return cpu.clflushopt ? NULL : "CLFLUSHOPT";
    case PT_PERSIST_AUTO_CLWB:
        return !cpu.sse2 ? "SSE2 (MOVNTDQ)" : cpu.clwb ? NULL : "CLWB";
    case PT_PERSIST_AUTO_CLFLUSHOPT:
        return !cpu.sse2 ? "SSE2 (MOVNTDQ)" : cpu.clflushopt ? NULL : "CLFLUSHOPT";
    case PT_PERSIST_NT:
    case PT_PERSIST_AUTO_CLFLUSH:
        return !cpu.sse2 ? "SSE2 (MOVNTDQ)" : cpu.clflush ? NULL : "CLFLUSH";
    case PT_PERSIST_CLFLUSH:
        return cpu.clflush ? NULL : "CLFLUSH";
    case PT_PERSIST_FENCE:
        return cpu.sse2 ? NULL : "SFENCE";
    default:
        return "a known persistence mode";
    }
}

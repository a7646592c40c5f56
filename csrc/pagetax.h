/*
 * pagetax.h - the public C API of the pagetax engine.
 *
 * The Python binding's cdef is the text between the cdef markers below, read
 * verbatim by csrc/build_core.py, so the header and the binding cannot drift.
 * Keep that part free of preprocessor conditionals and C-only syntax.
 */
#ifndef PAGETAX_H
#define PAGETAX_H

#include <stdint.h>

/* cdef-begin */

/* Return codes: 0 or a negative pt_errcode. struct pt_error says more. */
enum pt_errcode {
    PT_OK = 0,
    PT_EINVAL = -1,   /* bad extents or buffer, or a bad size or design at map/attach */
    PT_ERANGE = -2,   /* extent or buffer out of bounds */
    PT_ENOMEM = -3,   /* allocation failed */
    PT_ESYS = -4,     /* a system call failed; sys_errno holds errno */
    PT_EPERM = -5,    /* write to a read-only backing */
    PT_EREF = -6,     /* a descriptor reference count went wrong */
    PT_EFAULT = -7,   /* SIGBUS in the data path: a truncated file or a media error */
    PT_EINTR = -8,    /* SIGINT or SIGTERM arrived: the run stopped early */
    PT_EARG = -9      /* a run's other arguments: op, cache, reps, persistence, threads,
                         CPUs, or an attachment busy in another thread */
};

enum pt_op { PT_READ = 0, PT_WRITE = 1 };        /* gather, scatter */

/* How a scatter makes its stores persistent (csrc/pt_persist.h).  `auto`
 * is resolved by the caller to one of the AUTO_ modes, or FENCE where the
 * platform's caches are persistent. */
enum pt_persist {
    PT_PERSIST_NONE = 0,
    PT_PERSIST_CLWB = 1,             /* store, CLWB each line, SFENCE */
    PT_PERSIST_CLFLUSHOPT = 2,
    PT_PERSIST_CLFLUSH = 3,
    PT_PERSIST_NT = 4,               /* non-temporal stores, SFENCE */
    PT_PERSIST_AUTO_CLWB = 5,        /* NT from 256 B, else store + CLWB */
    PT_PERSIST_AUTO_CLFLUSHOPT = 6,
    PT_PERSIST_AUTO_CLFLUSH = 7,
    PT_PERSIST_FENCE = 8             /* stores, SFENCE: caches are persistent */
};
#define PT_PERSIST_EACH 16           /* or-ed in: SFENCE after every entry */

/* What cpuid says this CPU can do. */
struct pt_cpu {
    int clflush;
    int clflushopt;
    int clwb;
    int sse2;
    int prefetchw;   /* PREFETCHW: the write prefetch every design's loops use */
};
void pt_cpu_features(struct pt_cpu *out);
/* The instruction a persistence mode (enum pt_persist, maybe | EACH) needs
 * and this CPU lacks, as its name, or NULL when it has them all. */
const char *pt_persist_missing(int persist);
enum pt_cache { PT_CACHE_WARM = 0, PT_CACHE_COLD = 1 };

/* How a cold repetition starts cold (csrc/engine.c, cold_start).  The flush
 * methods write back and invalidate exactly the lines the repetition will
 * touch (data, buffer, vector, descriptors), then touch one line on each of
 * PT_TLB_SCRUB_PAGES unrelated pages so the TLB is cold too.  EVICT writes
 * the caller's eviction buffer with plain stores, for CPUs with neither. */
enum pt_cold {
    PT_COLD_CLFLUSHOPT = 1,
    PT_COLD_CLFLUSH = 2,
    PT_COLD_EVICT = 3
};
#define PT_TLB_SCRUB_PAGES 16384     /* 4x the largest second-level TLB known (4096) */
#define PT_PROBE_LINES 64            /* lines the cold probe loads */

/* The one prefetch discipline every design gets (pt_loops.h): the copy
 * loops prefetch segments PT_PREFETCH_AHEAD entries ahead; refcounting
 * designs prefetch each entry's descriptor PT_PREFETCH_DESC_AHEAD ahead (a
 * read) and the count it leads to PT_PREFETCH_AHEAD ahead (a write).  Here
 * so that a result file records the distances the core was built with. */
#define PT_PREFETCH_AHEAD 16
#define PT_PREFETCH_DESC_AHEAD 32

/* One segment of a request: a byte range of the backing's data area.
 * The buffer side is packed: segment i lands right after segment i-1. */
struct pt_extent {
    uint64_t off;
    uint64_t len;
};

struct pt_error {
    int code;
    int sys_errno;
    uint64_t index;          /* offending extent, where one is to blame */
    char msg[256];
};

/* Static metadata a design keeps per byte of capacity. */
struct pt_metadata {
    uint64_t dram_bytes;
    uint64_t device_bytes;
};

struct pt_run_config {        /* what a plan runs: fixed when it is made */
    int op;                  /* enum pt_op */
    int cache;               /* enum pt_cache */
    uint64_t segs_per_io;    /* extents per build/copy/release cycle; 0 = all */
    int cold_method;         /* enum pt_cold, with cache == PT_CACHE_COLD */
    uint8_t *evict_buf;      /* PT_COLD_EVICT: written before each repetition; */
    uint64_t evict_bytes;    /* make it a few times the LLC */
    int persist;             /* enum pt_persist, maybe | PT_PERSIST_EACH; scatters only */
};

/* What one call of a plan does. */
enum pt_cold_only {
    PT_COLD_ONLY_START = 1,  /* flush as a cold repetition starts: its working set */
    PT_COLD_ONLY_FINISH = 2  /* flush as a cold repetition ends: what it wrote */
};
struct pt_call {
    uint32_t reps;           /* timed repetitions, >= 1 */
    uint32_t warmup;         /* untimed repetitions before them */
    uint32_t phase_reps;     /* instrumented repetitions, interleaved with the timed ones */
    int probe;               /* after the repetitions, time PT_PROBE_LINES data loads
                                as a repetition starts, then again warm */
    int cold_only;           /* no repetitions, only enum pt_cold_only's flushes (or-ed),
                                for harnesses that time the next call themselves (asv,
                                pytest-benchmark), and for the run before it */
};

/* Phase times of one instrumented repetition, CLOCK_MONOTONIC nanoseconds,
 * as read: each phase of each I/O includes one clock read (clock_ns). */
struct pt_rep_times {
    uint64_t build_ns;
    uint64_t copy_ns;
    uint64_t release_ns;
};

/* Each I/O's latency (build + copy + release, as read: its four clock reads
 * hold about three reads' cost) in the instrumented repetitions, in a
 * log-linear histogram in the style of HdrHistogram: fixed memory whatever
 * the number of I/Os.  Values below 2^PT_LAT_SUB_BITS ns have a bucket each;
 * above, each power of two is split into 2^(PT_LAT_SUB_BITS - 1) buckets,
 * so a bucket is never wider than 1/128 (0.78 %) of the values it holds.
 * A run adds to it: zero it before the first call. */
#define PT_LAT_SUB_BITS 8
#define PT_LAT_BUCKETS 7424          /* (64 - PT_LAT_SUB_BITS) * 128 + 256: all of uint64 */
struct pt_latency {
    uint64_t count[PT_LAT_BUCKETS];
    uint64_t ios;            /* I/Os recorded */
    uint64_t min_ns, max_ns; /* exact, as read */
    uint64_t sum_ns;         /* for the mean, as read */
};
/* The bucket ns falls in, and the smallest and largest value bucket i holds. */
uint32_t pt_latency_bucket(uint64_t ns);
uint64_t pt_latency_bucket_low(uint32_t i);
uint64_t pt_latency_bucket_high(uint32_t i);
/* Record one value, as a run does (for tests of the histogram). */
void pt_latency_record(struct pt_latency *h, uint64_t ns);

struct pt_run_stats {
    uint64_t bytes;          /* copied per repetition: the sum of lengths */
    uint64_t ios;            /* build/copy/release cycles per repetition */
    uint64_t entries;        /* vector entries built per repetition */
    uint64_t vector_bytes;   /* entries * entry size */
    uint64_t lines_flushed;  /* cache lines flushed per repetition */
    uint64_t fences;         /* SFENCEs per repetition */
    uint64_t call_ns;        /* the whole pt_plan_run call, as C saw it */
    double clock_ns;         /* cost of one phase mark (a fence and a clock read),
                                measured when the plan was made */
    double probe_start_ns;   /* call->probe: mean load of the probe's dependent chain as a
                                repetition starts, one clock read subtracted */
    double probe_warm_ns;    /* and the same chain again at once */
};

typedef struct pt_backing pt_backing;
typedef struct pt_attachment pt_attachment;
typedef struct pt_plan pt_plan;

enum pt_map_flags {
    PT_MAP_RESERVE = 1,      /* posix_fallocate the size first (the file grows;
                                never for a file pagetax may not write) */
    PT_MAP_SYNC = 2,         /* MAP_SHARED_VALIDATE | MAP_SYNC: fsdax only */
    PT_MAP_HUGE_ADVISE = 4,  /* madvise(MADV_HUGEPAGE) before populating */
    PT_MAP_DEVICE = 8,       /* a device node (device DAX): no file size */
    PT_MAP_NO_HUGE = 16      /* madvise(MADV_NOHUGEPAGE) before populating: 4 KiB
                                pages even where fsdax would fault in PMDs */
};

/* Map an open file descriptor of `size` bytes at an address aligned to
 * `align` (0: a page).  Every page is touched before this returns. */
int pt_backing_map(int fd, uint64_t size, int writable, int flags, uint64_t align,
                   pt_backing **out, struct pt_error *err);
int pt_backing_map_sync(const pt_backing *b);
void pt_backing_unmap(pt_backing *b);
/* statx(2)'s STATX_ATTR_DAX for a path, or for an open file: 1 DAX, 0 not,
 * -errno if statx failed, -ENOTSUP if the kernel does not report it. */
int pt_statx_dax(const char *path);
int pt_statx_dax_fd(int fd);
void *pt_backing_base(const pt_backing *b);

/* The design registry (csrc/designs.def). */
int pt_design_count(void);
const char *pt_design_name(int design);
unsigned pt_design_entry_bytes(int design);
/* What a design is, as fio's engines declare it: no caller tests a name. */
enum pt_design_flags {
    PT_DESIGN_PEER = 1,             /* a peer to compare with (libpmem), not a design */
    PT_DESIGN_ROOFLINE = 2,         /* the divisor of "x memcpy" */
    PT_DESIGN_CONTIGUOUS = 4,       /* copies contiguous bytes from its own part of the data area */
    PT_DESIGN_REFCOUNTS = 8,        /* a descriptor table with reference counts */
    PT_DESIGN_TABLE_ON_BACKING = 16,/* that table lives on the backing (altmap) */
    PT_DESIGN_FOLIOS = 64,          /* counts references per folio, of the attachment's
                                       folio size (PT_ATTACH_FOLIO_SHIFT) */
    PT_DESIGN_OWN_PERSIST = 32,     /* --persist does not apply: it persists its own way */
    PT_DESIGN_BASELINE = 128,       /* the divisor of "x vec": raw vectors, no per-page state */
    PT_DESIGN_PROPOSAL = 256        /* the 2015 proposal the summary answers first: a
                                       64-byte struct page per 4 KiB page */
};
unsigned pt_design_flags(int design);
/* PT_DESIGN_REFCOUNTS: bytes per descriptor and bytes of data per descriptor
 * (0 and 0 for a design without a table). */
void pt_design_table(int design, uint64_t *desc_bytes, uint64_t *granule_bytes);
/* The most extents one call takes: 2^32, a 64 GiB extent array.  With
 * segments of at most 2^32 bytes, a call's entry count (at most 2^32 x
 * (2^20 + 1) for 4 KiB pages) fits in 64 bits many times over; its byte
 * count is checked for overflow against the buffer. */
#define PT_MAX_EXTENTS 4294967296ULL
#define PT_ENTRIES_INVALID 0xffffffffffffffffULL
/* Vector entries one build of these extents makes, as the design counts
 * them; no attachment needed.  0 for an unknown design; PT_ENTRIES_INVALID
 * for extents no run accepts (none or more than PT_MAX_EXTENTS, a length of
 * 0 or over 2^32, an end past 2^64), whose count would be meaningless. */
uint64_t pt_design_entries(int design, const struct pt_extent *ext, uint64_t n);
/* The cost of one CLOCK_MONOTONIC read here: the median of back-to-back reads. */
double pt_clock_cost_ns(void);
/* The same for a phase mark: a full fence (mfence), then a clock read, as
 * instrumented repetitions take at every phase boundary. */
double pt_mark_cost_ns(void);
/* The libpmem peers call these, from a libpmem loaded at run time. */
void pt_set_libpmem(void *memcpy_persist, void *memcpy_nodrain, void *pmem_drain);
/* The largest capacity or backing any call takes: 2^57 bytes, the 57-bit
 * virtual address space of 5-level paging; nothing larger can be mapped,
 * and every size computed from one fits in 64 bits with room to spare. */
#define PT_MAX_CAPACITY 144115188075855872ULL
/* PT_EINVAL past PT_MAX_CAPACITY or for an unknown design. */
int pt_design_metadata(int design, uint64_t capacity, struct pt_metadata *out,
                       struct pt_error *err);
/* The same for folios of 2^folio_shift bytes (12 to 21); PT_EINVAL for a
 * design without PT_DESIGN_FOLIOS at any shift but 12. */
int pt_design_metadata_folio(int design, uint64_t capacity, unsigned folio_shift,
                             struct pt_metadata *out, struct pt_error *err);
/* Where a design would put the data area of a backing of `size` bytes
 * (altmap reserves the start for descriptors).  -1: too small. */
int pt_design_layout(int design, uint64_t size, uint64_t *data_off, uint64_t *data_bytes);

/* Allocate a design's per-capacity state (for `page`, the descriptor table)
 * for the data area [data_off, data_off + data_bytes) of a backing; both 0
 * means the design's own layout.  Every design in one run gets the same
 * area.  The backing must outlive the attachment. */
enum pt_attach_flags {
    PT_ATTACH_TABLE_4K = 1,  /* DRAM tables on 4 KiB pages; default: 2 MiB (THP) as vmemmap */
    /* The kernel's grab (pt_gup.h) less one part, to measure what it adds: */
    PT_ATTACH_GUP_GET = 2,           /* FOLL_GET references, not FOLL_PIN pins */
    PT_ATTACH_GUP_PLAIN_ADD = 4,     /* a locked add, not folio_ref_try_add's loop */
    PT_ATTACH_GUP_NO_RECHECK = 8,    /* no page_folio() re-read after the grab */
    PT_ATTACH_GUP_NO_REFERENCED = 16, /* no folio_set_referenced */
    /* ... or more: PMD-mapped folios grabbed page by page with a pagemap
     * lookup each, as Linux 5.17-6.14 grabbed device-DAX folios: */
    PT_ATTACH_GUP_DEVMAP = 32,
    PT_ATTACH_FOLIO_SHIFT = 256  /* times log2(folio size), 12 to 21: PT_DESIGN_FOLIOS
                                    designs' folio size (0: 4 KiB) */
};
int pt_attach(pt_backing *b, int design, uint64_t data_off, uint64_t data_bytes, int flags,
              pt_attachment **out, struct pt_error *err);
void pt_detach(pt_attachment *a);
/* Bytes allocated for descriptors (for altmap, taken from the backing). */
uint64_t pt_attachment_meta_bytes(const pt_attachment *a);
/* Growth of the process's resident memory across the design's attach. */
int64_t pt_attachment_rss_delta(const pt_attachment *a);
uint64_t pt_attachment_data_offset(const pt_attachment *a);
/* What one pin adds to a count: GUP_PIN_COUNTING_BIAS (1024) for a small
 * folio, 1 for a large one (its pins go to _pincount) or a FOLL_GET grab. */
int pt_attachment_pin_bias(const pt_attachment *a);
/* Pins taken plus pins dropped since attach, every thread's (the kernel's
 * NR_FOLL_PIN_ACQUIRED + NR_FOLL_PIN_RELEASED). */
uint64_t pt_attachment_pin_stat(const pt_attachment *a);
uint64_t pt_attachment_data_bytes(const pt_attachment *a);
/* The descriptor table: where it is and how many descriptors it holds. */
void *pt_attachment_table(const pt_attachment *a);
/* The vector runs on this attachment build (thread 0's), or NULL (for tests). */
void *pt_attachment_vector(const pt_attachment *a);
uint64_t pt_attachment_descriptors(const pt_attachment *a);
/* Read every descriptor's reference count into out[n] (n: the count above). */
int pt_attachment_refcounts(const pt_attachment *a, int32_t *out, uint64_t n,
                            struct pt_error *err);
/* For tests: build one I/O over these extents and hold its references, as
 * between build and copy; pt_unhold releases them.  A run, a second hold or
 * detach while holding: detach releases first, the others refuse. */
int pt_hold(pt_attachment *a, const struct pt_extent *ext, uint64_t n, struct pt_error *err);
int pt_unhold(pt_attachment *a, struct pt_error *err);

/* Check extents against the attachment's data area and a buffer of
 * buf_bytes; *total gets the sum of lengths (total may be NULL).
 * pt_plan_create does this itself; it is exported for tests. */
int pt_validate(const pt_attachment *a, const struct pt_extent *ext, uint64_t n,
                uint64_t buf_bytes, uint64_t *total, struct pt_error *err);

/* Vector entries one build of these extents produces (PT_ENTRIES_INVALID as
 * for pt_design_entries). */
uint64_t pt_vector_entries(const pt_attachment *a, const struct pt_extent *ext,
                           uint64_t n);

/* One thread of a run: its own extents, buffer and times. */
struct pt_thread {
    const struct pt_extent *ext; /* read once, when the plan is made */
    uint64_t n;
    uint8_t *buf;
    uint64_t buf_bytes;
    int cpu;                     /* pin the thread to this CPU; -1: leave it to the scheduler */
    uint64_t *total_ns;          /* reps entries: two clock reads around each timed repetition */
    struct pt_rep_times *phases; /* phase_reps entries: the instrumented repetitions */
    struct pt_latency *latency;  /* or NULL: each I/O of the instrumented repetitions */
    struct pt_run_stats stats;   /* filled by the call */
    struct pt_error err;         /* this thread's own error, if it failed */
};
#define PT_MAX_THREADS 1024

/* A plan: a run checked once and ready to call.  It copies each thread's
 * extents into memory the core owns and checks the copy (so a buffer that
 * overlaps the caller's extents, or a thread writing them, cannot change
 * what a run reads), and works out each I/O's bytes and vector entries and
 * the cost of a phase mark, all outside any call's timing.  The buffers
 * stay the caller's and must outlive the plan; so must the attachment,
 * whose descriptor table the threads share, so that reference counts
 * contend as they do between CPUs (each thread has its own vector).  The
 * memcpy roofline reads thread i's bytes after those of threads 0..i-1, so
 * all threads' extents together must fit in the data area. */
int pt_plan_create(pt_attachment *a, const struct pt_run_config *cfg,
                   const struct pt_thread *threads, uint32_t nthreads, pt_plan **out,
                   struct pt_error *err);
/* Run warmup + reps timed repetitions of build, copy, release over each
 * thread's extents, interleaved with phase_reps instrumented ones.  threads
 * (nthreads, as planned) receive the times, stats and errors; their ext,
 * buf and cpu are the plan's.  Every repetition starts at a barrier;
 * wall_ns (reps entries, or NULL) gets the time from the first thread's
 * start to the last thread's end of each timed repetition.  With a cold
 * cache each thread makes its own working set cold before each repetition
 * and writes back what it wrote after it, so that the next repetition, of
 * any design, inherits none of its dirty lines.  On failure, err names the
 * first thread that failed; the others stop at their next I/O.  A single
 * thread with cpu -1 runs in the calling thread. */
int pt_plan_run(pt_plan *p, const struct pt_call *call, struct pt_thread *threads,
                uint32_t nthreads, uint64_t *wall_ns, struct pt_error *err);
void pt_plan_free(pt_plan *p);
/* The plan's own copy of thread i's extents (for tests), or NULL. */
const struct pt_extent *pt_plan_extents(const pt_plan *p, uint32_t thread);

/* Plan, run once, free. */
int pt_run_threads(pt_attachment *a, const struct pt_run_config *cfg, const struct pt_call *call,
                   struct pt_thread *threads, uint32_t nthreads, uint64_t *wall_ns,
                   struct pt_error *err);

/* What the machine really caches: the mean latency of `loads` dependent
 * loads chasing a random cycle through every cache line of a fresh
 * `bytes`-byte mapping (2 MiB pages where THP allows; *huge_bytes says how
 * many were), after as many loads to warm it; the median of `rounds` (1 to
 * 15) such chases.  A size the caches hold reads near their latency, one
 * past them near DRAM's. */
int pt_cache_walk(uint64_t bytes, uint64_t loads, uint32_t rounds, uint64_t seed,
                  double *ns_per_load, uint64_t *huge_bytes, struct pt_error *err);

/* For tests only: plan `entries` fewer vector entries per I/O than each
 * design asks for, so a run must catch the overrun (0: off). */
void pt_test_set_underestimate(uint64_t entries);

/* For tests only: what pt_backing_map does between mmap and populating it,
 * to reach the faults a truncated file or a pre-5.14 kernel would give. */
enum pt_test_map_hooks {
    PT_TEST_TRUNCATE_AFTER_MAP = 1,  /* ftruncate the file to 0 after mmap */
    PT_TEST_POPULATE_BY_TOUCH = 2,   /* skip MADV_POPULATE_*, touch each page */
};
void pt_test_set_map_hooks(unsigned hooks);

/* For tests only: what a build of the core with PT_COUNT_ATOMICS counted
 * since the last call (which zeroes them): the calls that change a
 * reference count, of each kind, and the amounts they add or subtract.
 * -1 from a core that does not count (every measuring build). */
enum pt_count_kind {
    PT_COUNT_REF_ADD = 0,   /* a count's add (plain or try-add), per call and amount */
    PT_COUNT_REF_SUB = 1,
    PT_COUNT_PIN_ADD = 2,   /* a pin's second add: _pincount, or the bias on the count */
    PT_COUNT_PIN_SUB = 3,   /* _pincount's subtract (a small folio's bias is in REF_SUB) */
    PT_COUNT_FLAG = 4,      /* folio_set_referenced */
    PT_COUNT_KINDS = 5
};
int pt_test_take_counts(uint64_t *ops, uint64_t *amount);

/* For tests only: record the address of every line a cold start or finish
 * flushes into log[0..cap), counting all of them in *count (NULL: off). */
void pt_test_set_flush_log(uint64_t *log, uint64_t cap, uint64_t *count);

/* cdef-end */

#endif /* PAGETAX_H */

/*
 * pt_run.h - a plan (plan.c), the passes each thread runs (run.c) and the
 * threads that run them (threads.c).
 */
#ifndef PT_RUN_H
#define PT_RUN_H

#include <pthread.h>

#include "pt_cold.h"

/* One thread's part of a plan: the core's own copy of its extents, checked,
 * and what planning worked out from it. */
struct pt_plan_thread {
    struct pt_extent *ext;       /* owned: the copy every pass reads */
    uint64_t n;
    uint8_t *buf;                /* the caller's */
    uint64_t buf_bytes;
    int cpu;
    uint64_t per_io;             /* extents per I/O (the last may have fewer) */
    uint64_t *io_bytes;          /* owned: the bytes of each of the ios I/Os */
    uint64_t ios, max_entries, total_entries, total;
    uint64_t data_base;          /* contiguous designs: where this thread's bytes start */
};

struct pt_plan {
    struct pt_attachment *a;
    struct pt_run_config cfg;    /* a copy: nothing a run reads is the caller's to change */
    double mark_ns;              /* one phase mark, subtracted per phase (in Python) */
    uint32_t n;
    struct pt_plan_thread t[];
};

struct pt_worker;

/* What the threads of one call share. */
struct pt_run_shared {
    const struct pt_plan *plan;
    const struct pt_design_ops *ops;
    const struct pt_run_config *cfg;   /* the plan's */
    struct pt_call call;               /* a copy */
    uint32_t n;
    pthread_barrier_t barrier;
    pthread_mutex_t gate_lock;   /* threads start only once all exist */
    pthread_cond_t gate_cv;
    int gate;                    /* 0 wait, 1 go, -1 give up */
    int failed;                  /* set by a failing thread; the others stop at their next I/O */
    int first_failed;            /* whose error the caller sees; -1: none */
    uint64_t *wall_ns;           /* reps entries, or NULL */
    struct pt_worker *w;
};

/* One thread of a call.  Thread 0 runs through the plan's attachment, the
 * others through clones of it: the descriptor table is shared (so reference
 * counts contend as they would between CPUs in a kernel), the vector and
 * the error counters are the thread's own. */
struct pt_worker {
    struct pt_run_shared *sh;
    const struct pt_plan_thread *pt;
    struct pt_thread *out;       /* the caller's: where times, stats and errors go */
    struct pt_attachment *a;
    uint32_t index;
    struct pt_working_set ws;    /* what a cold start flushes */
    uint64_t start_ns, end_ns;   /* of the current repetition */
    pthread_t tid;
};

/* run.c: one thread's passes, as the call says; a thread's failure. */
void *pt_worker_main(void *arg);
void pt_worker_fail(struct pt_worker *w);
/* plan.c: a thread's error as the caller's, naming the thread when there
 * are several. */
int pt_thread_error(struct pt_error *err, uint32_t n, uint32_t i, const struct pt_error *te);

#endif /* PT_RUN_H */

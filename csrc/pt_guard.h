/*
 * pt_guard.h - the signal guard around runs (guard.c).
 */
#ifndef PT_GUARD_H
#define PT_GUARD_H

#include <setjmp.h>
#include <signal.h>

#include "pt_internal.h"

/* Install the handlers for the first run in, restore them after the last
 * one out (runs may overlap in Python threads).  -1 if sigaction failed. */
int pt_guard_enter(void);
void pt_guard_leave(void);

/* A thread inside a guarded region points pt_fault_env at its jump buffer;
 * a SIGBUS then jumps there with pt_fault_addr set.  NULL outside. */
extern __thread sigjmp_buf *pt_fault_env;
extern __thread void *pt_fault_addr;

/* Call fn(arg) with SIGBUS guarded, outside any run: for the work that
 * touches the backing before or between runs (populating a mapping on a
 * kernel without MADV_POPULATE_*, a table kept on the backing).  A SIGBUS in
 * the backing ends fn and returns PT_EFAULT, naming the byte and `what`.
 * fn must not allocate or take locks: the jump abandons it where it is. */
int pt_guarded(const struct pt_backing *b, int (*fn)(void *arg, struct pt_error *err),
               void *arg, const char *what, struct pt_error *err);

#endif /* PT_GUARD_H */

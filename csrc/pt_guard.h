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

#endif /* PT_GUARD_H */

"""The asv suite.  asv imports this package in every process it starts for
a benchmark or a setup_cache (pytest-benchmark imports common.py alone).

Time budget: `asv continuous` between two commits within 15 minutes on two
cores.  asv runs every parameter combination and round in a process of its
own; the forkserver (asv.conf.json) forks them from one that has imported
asv's runner, numpy and this suite.  Measured on a 2-core AMD EPYC KVM
guest (family 26): `asv continuous --interleave-rounds` between two commits,
every benchmark (222: 172 time_ of 2 rounds, the metadata tracks), took
310 s; four commits 672 s.  A new benchmark adds a process per combination
and round: keep a matrix measured at once in a setup_cache, and give a
time_ benchmark its schedule (common.CoreTimed).

asv starts each process in a process group of its own, so a signal that
kills asv itself (SIGTERM, SIGHUP, SIGKILL, a shell's job control) never
reaches it: a setup_cache went on running, orphaned, after its asv was
killed.  asv's own timeout and Ctrl-C do stop it (asv kills the group
then).  Linux's parent-death signal ends the process with asv, whatever
killed asv.  Only in asv's processes (asv_runner imported): a pytest that
imports this package must outlive its shell under nohup."""
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent():
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    args = [ctypes.c_ulong(a) for a in (signal.SIGKILL, 0, 0, 0)]  # prctl's are unsigned long
    if libc.prctl(PR_SET_PDEATHSIG, *args) != 0:
        return  # a kernel without it: as before, no worse
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


if "asv_runner" in sys.modules and sys.platform.startswith("linux"):
    _die_with_parent()
    # asv's forkserver (asv.conf.json) forks each benchmark from a process
    # that imported this; fork clears the signal, so each child arms its own
    # and dies with the server, which dies with asv.
    os.register_at_fork(after_in_child=_die_with_parent)

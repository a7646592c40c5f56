"""The asv suite's processes end with the asv that started them
(bench/__init__.py): asv puts each in a process group of its own, so a
SIGTERM or SIGKILL to asv alone used to leave a setup_cache running."""
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The parent ("asv") starts a child in a process group of its own, as asv
# does; the child imports the suite, forks a grandchild if asked (asv's
# forkserver does), prints the pid to watch and sleeps.
PARENT = r"""
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1]], preexec_fn=os.setpgrp)
time.sleep(120)
"""
CHILD = r"""
import os, sys, time, types
sys.path.insert(0, {root!r})
if {as_asv!r}:
    sys.modules["asv_runner"] = types.ModuleType("asv_runner")  # what asv's runner imports first
import bench
if {fork!r} and os.fork() != 0:
    time.sleep(120)  # the "forkserver"
else:
    print("watch", os.getpid(), flush=True)
    time.sleep(120)
"""


def _alive(pid):
    """Running (a zombie waiting for init to reap it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _after_parent_killed(as_asv, fork=False, wait=5):
    """The watched process's pid, `wait` seconds (at most) after its asv died."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT,
                               CHILD.format(root=ROOT, as_asv=as_asv, fork=fork)],
                              stdout=subprocess.PIPE, text=True)
    word, pid = parent.stdout.readline().split()
    watched = int(pid)
    assert word == "watch" and _alive(watched)
    parent.send_signal(signal.SIGKILL)  # what a killed asv cannot forward
    parent.wait()
    deadline = time.monotonic() + wait
    while _alive(watched) and time.monotonic() < deadline:
        time.sleep(0.05)
    return watched


def _kill_left(pids):
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


linux_only = pytest.mark.skipif(sys.platform != "linux",
                                reason="the parent-death signal is Linux's")


@linux_only
@pytest.mark.parametrize("fork", [False, True], ids=["spawned", "forked by a forkserver"])
def test_a_benchmark_process_ends_with_the_asv_that_started_it(fork):
    watched = _after_parent_killed(as_asv=True, fork=fork)
    try:
        assert not _alive(watched)
    finally:
        _kill_left([watched])


@linux_only
def test_outside_asv_importing_the_suite_does_not_tie_a_process_to_its_parent():
    watched = _after_parent_killed(as_asv=False, wait=1)  # the others end within ms
    try:
        assert _alive(watched)  # pytest bench/ under nohup must outlive its shell
    finally:
        _kill_left([watched])

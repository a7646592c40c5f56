"""Which kernel functions each path ran, counted by the function tracer: a
filter of the GUP, pin and release functions this kernel has, this process
only, one small call of the probe.  A tracefs instance of our own holds it
where the kernel allows, so the machine's own tracing is left alone; a
mount made here is unmounted on exit.  Where the filter is refused (some
hosts refuse set_ftrace_filter even to root), the refusal is the result."""
import fnmatch
import os
import re
import subprocess
import tempfile

from ..errors import PagetaxError

# Names across 6.1, 6.12 and later (README.md beside this file); those the
# running kernel lacks, or inlined, are left out of the filter.
FUNCTIONS = (
    "get_user_pages_fast", "pin_user_pages_fast", "internal_get_user_pages_fast",
    "lockless_pages_from_mm", "gup_pgd_range", "gup_pte_range", "gup_huge_pmd",
    "gup_fast", "gup_fast_fallback", "gup_fast_pgd_range", "gup_fast_pte_range",
    "gup_fast_pmd_leaf", "gup_fast_devmap_leaf", "gup_fast_devmap_pmd_leaf",
    "__gup_device_huge", "__gup_device_huge_pmd", "try_grab_folio", "try_grab_folio_fast",
    "try_grab_page", "get_dev_pagemap", "unpin_user_page", "unpin_user_pages",
    "unpin_user_folio", "unpin_user_pages_dirty_lock", "gup_put_folio",
    "iov_iter_get_pages2", "iov_iter_extract_pages", "bio_iov_iter_get_pages",
    "__bio_iov_iter_get_pages", "__bio_release_pages", "bio_set_pages_dirty",
    "bio_check_pages_dirty", "__get_user_pages", "follow_page_mask", "io_import_fixed",
    "add_to_pipe", "page_cache_pipe_buf_release", "mincore_pte_range",
)
_LINE = re.compile(r"-(\d+)\s+\[\d+\].*?:\s+(\S+)\s+<-")


def tracefs(state):
    """Where tracefs is: mounted already, or mounted here (and unmounted
    on exit through `state`)."""
    for base in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.exists(os.path.join(base, "trace")):
            return base
    base = tempfile.mkdtemp(prefix="pagetax-tracefs-")
    if subprocess.run(["mount", "-t", "tracefs", "nodev", base],
                      capture_output=True).returncode:
        os.rmdir(base)
        raise PagetaxError("tracefs cannot be mounted")
    state.on_exit(lambda: (subprocess.run(["umount", base]), os.rmdir(base)),
                  f"unmount {base}")
    return base


def own_instance(state, base):
    """A tracing instance of our own (removed on exit through `state`), so
    that the machine's own tracing is left alone; None where the kernel
    makes none."""
    path = os.path.join(base, "instances", f"pagetax-{os.getpid()}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    state.on_exit(lambda: os.rmdir(path), f"remove {path}")
    return path


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class FunctionTrace:
    """trace(call) -> {function: hits} for one call, in this process."""

    def __init__(self, state):
        self.state = state
        base = tracefs(state)
        try:
            with open(os.path.join(base, "available_filter_functions")) as f:
                available = {line.split()[0] for line in f if line.strip()}
        except OSError as e:
            raise PagetaxError(f"no function tracer: available_filter_functions: "
                               f"{e.strerror}") from None
        self.functions = sorted(n for n in available
                                if any(fnmatch.fnmatchcase(n, p) for p in FUNCTIONS))
        if not self.functions:
            raise PagetaxError("the function tracer knows none of the GUP functions")
        mine = own_instance(state, base)
        # the top level where an instance cannot trace functions
        self.dir = mine if mine and os.path.exists(os.path.join(mine, "set_ftrace_filter")) \
            else base
        try:
            state.write_undone_by(os.path.join(self.dir, "set_ftrace_filter"),
                                  " ".join(self.functions), "")
        except PagetaxError as e:
            raise PagetaxError(f"the function tracer is refused here: set_ftrace_filter: "
                               f"{os.strerror(e.sys_errno)}") from None
        state.write_undone_by(os.path.join(self.dir, "set_ftrace_pid"), os.getpid(), "")
        state.set(os.path.join(self.dir, "tracing_on"), "0")
        state.set(os.path.join(self.dir, "current_tracer"), "function")
        state.on_exit(lambda: _write(os.path.join(self.dir, "trace"), ""), "clear the trace")

    def trace(self, call):
        trace = os.path.join(self.dir, "trace")
        _write(trace, "")
        _write(os.path.join(self.dir, "tracing_on"), "1")
        try:
            call()
        finally:
            _write(os.path.join(self.dir, "tracing_on"), "0")
        hits = {}
        me = str(os.getpid())
        with open(trace) as f:
            for line in f:
                m = _LINE.search(line)
                if m and m.group(1) == me:
                    hits[m.group(2)] = hits.get(m.group(2), 0) + 1
        return hits

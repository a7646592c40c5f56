"""What every probe shares: the bound on pages per call, the C call's error
turned into an exception, the timing arrays the C fills, and the kernel's
FOLL_PIN counters that the checks read."""
import os

import numpy as np

from ..._kernel import ffi
from ...errors import PagetaxError

MAX_PAGES = 256     # a bio's BIO_MAX_VECS; also the default pipe-max-size (1 MiB)


def raise_for(rc, failed, where):
    """rc, or a PagetaxError naming the call that failed and its errno."""
    if rc < 0:
        raise PagetaxError(f"{where}: {ffi.string(failed[0]).decode()}: {os.strerror(-rc)}",
                           sys_errno=-rc)
    return rc


def timings(calls):
    """An array for `calls` timings, and the pointer the C writes them through."""
    arr = np.zeros(calls, np.uint64)
    return arr, ffi.from_buffer("uint64_t[]", arr)


def foll_pin_counts():
    """(acquired, released): /proc/vmstat's count of FOLL_PIN references,
    machine-wide (mm/gup.c), or None where the kernel lacks them."""
    counts = {}
    with open("/proc/vmstat") as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key in ("nr_foll_pin_acquired", "nr_foll_pin_released"):
                counts[key] = int(value)
    if len(counts) != 2:
        return None
    return counts["nr_foll_pin_acquired"], counts["nr_foll_pin_released"]


def pins_during(action):
    """Pages pinned (FOLL_PIN) machine-wide while action() ran, or None."""
    before = foll_pin_counts()
    action()
    after = foll_pin_counts()
    return None if before is None else after[0] - before[0]

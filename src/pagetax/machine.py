"""What the machine is: the context every number needs (mounts, caches, smaps)."""
import os
import platform

import numpy as np

_SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def mem_available(meminfo="/proc/meminfo"):
    """MemAvailable from /proc/meminfo (or a copy of its format), in bytes;
    None if unknown."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_flags():
    """The CPU's feature flags, as /proc/cpuinfo's first `flags` line lists
    them (an empty set where it has none)."""
    for line in (_read("/proc/cpuinfo", "") or "").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model():
    text = _read("/proc/cpuinfo", "")
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cache_bytes(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip()
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def caches():
    """{level: bytes} of the data/unified caches cpu0 sees, from sysfs."""
    out = {}
    try:
        entries = sorted(os.listdir(_SYSFS_CACHE))
    except OSError:
        return out
    for name in entries:
        if not name.startswith("index"):
            continue
        d = os.path.join(_SYSFS_CACHE, name)
        if _read(os.path.join(d, "type")) in ("Data", "Unified"):
            size = _read(os.path.join(d, "size"))
            level = _read(os.path.join(d, "level"))
            if size and level:
                out[int(level)] = _cache_bytes(size)
    return out


def llc_bytes():
    """The last-level cache sysfs reports: what the CPU says, not what this
    process can use (see cache_walk); 32 MiB when sysfs says nothing."""
    c = caches()
    return c[max(c)] if c else 32 << 20


WALK_FIRST = 256 << 10     # below any last-level cache
WALK_LAST = 128 << 20      # the largest region walked: about 0.1 s of it
WALK_LOADS = 1 << 16
WALK_ROUNDS = 3
MEMORY_SIZES = 3           # the largest sizes walked stand for memory
DRAM_FACTOR = 6            # memory is at least this far above the smallest size


def _walk_sizes():
    size = WALK_FIRST
    while size <= WALK_LAST:
        yield size
        if size * 3 // 2 <= WALK_LAST:
            yield size * 3 // 2
        size *= 2


def cache_walk(walk=None):
    """What this process can really cache, measured: dependent loads over a
    random cycle through every line of regions from 256 KiB to 128 MiB (the
    C core's pt_cache_walk, lmbench's lat_mem_rd), each the median of 3
    chases, in about 0.3 s.  Memory's latency is the median of the three
    largest regions'; the usable cache is the largest region below the first
    whose loads take more than halfway from the smallest latency to memory's.
    None when memory is not 6x the smallest latency (no cache found apart
    from it), and a usable cache past 64 MiB reads as memory.  Nothing here
    reads sysfs: a guest, or a partitioned or shared cache, gets less than
    the CPU reports, and the walk stops at no plateau, which neighbours can
    fake (one walk here read 54-56 ns at 16-32 MiB, where memory took 145).

    `walk(bytes) -> (ns per load, bytes on 2 MiB pages)` is the
    measurement (tests give their own)."""
    import time
    if walk is None:
        walk = _core_walk
    t0 = time.monotonic()
    points = [(size, *walk(size)) for size in _walk_sizes()]
    lat = [ns for _, ns, _ in points]
    low = min(lat)
    memory = float(sorted(lat[-MEMORY_SIZES:])[MEMORY_SIZES // 2])
    found = memory >= DRAM_FACTOR * low
    threshold = (low + memory) / 2
    effective = None
    for size, ns, _ in points:
        if ns > threshold:
            break
        effective = size
    return {"effective_bytes": effective if found else None,
            "threshold_ns": threshold, "memory_ns": memory if found else None,
            "walk": [{"bytes": size, "ns": ns, "huge_bytes": huge} for size, ns, huge in points],
            "plateau": found, "seconds": time.monotonic() - t0,
            "method": f"median of {WALK_ROUNDS} chases of {WALK_LOADS} dependent loads through a "
                      "random cycle over every line of each size, 2 MiB pages where THP allows"}


def _core_walk(size):
    from ._core import ffi, lib   # only `run` and its callers load the core
    from .errors import raise_for
    ns, huge, err = ffi.new("double *"), ffi.new("uint64_t *"), ffi.new("struct pt_error *")
    raise_for(lib.pt_cache_walk(size, WALK_LOADS, WALK_ROUNDS, 1, ns, huge, err), err)
    return float(ns[0]), int(huge[0])


def eviction_bytes(effective=None):
    """What an eviction must overwrite to empty the caches: 4x the larger of
    the cache sysfs reports and the one measured, so that neither has to be
    right (a sysfs figure too large costs time, never correctness)."""
    return 4 * max(llc_bytes(), effective or 0)


def _bracketed(path):
    """The selected value of a sysfs choice file: 'always [madvise] never' -> 'madvise'."""
    text = _read(path)
    if text is None:
        return None
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return text


def thp_settings():
    base = "/sys/kernel/mm/transparent_hugepage"
    return {"enabled": _bracketed(f"{base}/enabled"),
            "shmem_enabled": _bracketed(f"{base}/shmem_enabled")}


def mounts():
    """[(mount point, fs type, options)] from /proc/self/mountinfo, in its
    order; options are the mount's and then the super block's, comma-joined,
    each once (both sides say rw or ro)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return parse_mountinfo(f)
    except OSError:
        return []


def parse_mountinfo(lines):
    out = []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        options = fields[5].split(",") + (rfields[2].split(",") if len(rfields) > 2 else [])
        out.append((fields[4].replace("\\040", " "), rfields[0],
                    ",".join(dict.fromkeys(o for o in options if o))))
    return out


def mount_of(path):
    """(mount point, fs type, options) of the longest mount holding path."""
    real = os.path.realpath(path)
    best = ("", None, "")
    for mount in mounts():
        mnt = mount[0]
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[0]):
            best = mount
    return best


def smaps_of(address):
    """The /proc/self/smaps fields (in bytes) of the mapping at address."""
    fields = {}
    found = False
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):
                    if found:
                        break
                    lo, hi = (int(x, 16) for x in head.split("-"))
                    found = lo <= address < hi
                elif found:
                    key, _, rest = line.partition(":")
                    parts = rest.split()
                    if len(parts) == 2 and parts[1] == "kB":
                        fields[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return fields


def mapping_page_size(smaps):
    """What the kernel really mapped: '4K', '2M' or 'mixed', with the evidence."""
    kernel_page = smaps.get("KernelPageSize", 4096)
    pmd = smaps.get("ShmemPmdMapped", 0) + smaps.get("FilePmdMapped", 0) + smaps.get("AnonHugePages", 0)
    rss = smaps.get("Rss", 0)
    if kernel_page >= (2 << 20) or (rss and pmd >= rss):
        label = "2M" if kernel_page <= (2 << 20) else f"{kernel_page >> 20}M"
    elif pmd:
        label = "mixed"
    else:
        label = "4K" if kernel_page == 4096 else f"{kernel_page >> 10}K"
    return {"page_size": label, "kernel_page_size": kernel_page, "pmd_mapped_bytes": pmd,
            "rss_bytes": rss}


def timing_context():
    """What can bend timings on this machine: virtualisation, the clock
    source, and DAMON (which samples and clears page-table accessed bits)."""
    damon_dir = "/sys/kernel/mm/damon/admin/kdamonds"
    damon = []
    try:
        for k in sorted(os.listdir(damon_dir)):
            if k.isdigit():
                damon.append(_read(os.path.join(damon_dir, k, "state")))
    except OSError:
        pass
    return {
        "virtualized": "hypervisor" in cpu_flags(),
        "clocksource": _read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "damon_kdamonds_on": sum(1 for s in damon if s == "on"),
        "cpufreq_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
    }


def describe():
    """The `machine` object of a result file (runner adds the backing)."""
    uname = platform.uname()
    return {
        "hostname": uname.node,
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "caches_bytes": {f"L{k}": v for k, v in sorted(caches().items())},
        "llc_bytes": llc_bytes(),
        "kernel": f"{uname.system} {uname.release}",
        "arch": uname.machine,
        "thp": thp_settings(),
        "timing_context": timing_context(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }

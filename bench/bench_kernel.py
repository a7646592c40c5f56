"""What the running kernel pays per page (`pagetax kernel`, issue 23): one
figure per path and buffer, and the vmemmap pages HugeTLB vmemmap
optimization (HVO) frees per huge page, so that asv's history of a fleet
of machines shows how their kernels differ.

These figures describe the kernel and the machine, not pagetax's code: the
probes are system calls timed around the kernel's own paths, and the memmap
is the kernel's own counters.  Between two pagetax commits on one machine
they can only differ by noise, which `asv continuous` would report as
changes (and each costs a few seconds a commit), so leave them out there:
`asv continuous -b '^(?!bench_kernel)' A B`.  Run them with `asv run` on
each machine (asv keeps a history per machine), or after a kernel update.

A figure the kernel or this process cannot give is NaN, which asv shows as
missing: a path refused on a buffer (io_uring needs root, a hugetlb page
may not be allocatable) and, without root, the whole memmap."""
import math

from . import common

PATHS = ["vmsplice", "splice", "vmsplice+splice", "mincore", "read-read_fixed"]
BUFFERS = ["4K", "THP", "hugetlb"]
PROBES = ("mincore", "vmsplice", "io_uring")   # the probes behind PATHS (no populate)
ROUNDS, CALLS = 11, 15    # about 2 s on a 2-core KVM guest
HUGE_SIZES = ["2M", "1G"]


def _run(**kw):
    """pagetax.kernel.run's document, {"refused": why} when nothing could
    be measured (no root for the memmap), {"absent": why} in a commit from
    before pagetax kernel.  Never None: asv then calls setup and the
    benchmark without the cache argument."""
    try:
        from pagetax import kernel
    except ImportError:
        return {"absent": "this build has no pagetax kernel"}
    from pagetax.errors import PagetaxError
    try:
        return kernel.run(**kw)
    except PagetaxError as e:
        return {"refused": str(e)}


def _skip_if_absent(doc):
    if "absent" in doc:
        raise NotImplementedError(doc["absent"])   # asv: n/a, not a failure


class KernelPerPage(common.Benchmark):
    """ns per 4 KiB page the running kernel pays on each path (the slope of
    a call's time over pages per call, median of ROUNDS rounds), as
    `pagetax kernel` prints them; NaN where the path was refused."""
    params = [PATHS, BUFFERS]
    param_names = ["path", "buffer"]
    unit = "ns"

    def setup_cache(self):
        # one run for every combination, not a run per process
        return _run(paths=PROBES, buffers=tuple(BUFFERS), memmap=False, model=False,
                    rounds=ROUNDS, calls=CALLS)

    def setup(self, doc, path, buffer):
        _skip_if_absent(doc)

    def track_per_page_ns(self, doc, path, buffer):
        for entry in doc.get("kernel", []):
            if entry["buffer"] == buffer and path in entry["paths"]:
                return entry["paths"][path]["per_page_ns"]["median"]
        return math.nan

    track_per_page_ns.unit = "ns"


class KernelMemmap(common.Benchmark):
    """4 KiB vmemmap pages the kernel's memmap counters fall by per fresh
    hugetlb page, HVO off and on (hvo-2M's model: 7 of 8; hvo-1G's: 4095 of
    4096); NaN when refused (no root, no counters, not enough memory)."""
    params = [HUGE_SIZES, [False, True]]
    param_names = ["size", "hvo"]

    def setup_cache(self):
        return _run(paths=(), buffers=(), memmap=True, model=False)

    def setup(self, doc, size, hvo):
        _skip_if_absent(doc)

    def track_freed_vmemmap_pages_per_huge_page(self, doc, size, hvo):
        for row in doc.get("memmap") or []:
            if row["size"] == size and row["hvo"] == hvo and "refused" not in row:
                return row["freed_per_huge_page"]
        return math.nan

    track_freed_vmemmap_pages_per_huge_page.unit = "pages"

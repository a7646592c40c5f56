"""The kernel's own memmap, measured with HugeTLB vmemmap optimization (HVO)
off and on, beside pagetax's hvo-2M and hvo-1G models.

Linux 6.11 added two counters to /proc/vmstat: nr_memmap_pages and
nr_memmap_boot_pages, the pages the struct page arrays take (allocated at
runtime and at boot).  With vm.hugetlb_optimize_vmemmap=1 a freshly
allocated hugetlb page gives back the vmemmap pages behind its tail struct
pages (mm/hugetlb_vmemmap.c), and their sum falls by exactly that; with it
off it does not move.  Releasing the pages restores the vmemmap.

Everything changed (the sysctl, nr_hugepages) goes through a KernelState,
so it is put back on every exit path.
"""
import os

from .. import machine
from ..errors import PagetaxError
from ..metadata import GIB, MIB, MODELS, PAGE, STRUCT_PAGE

COUNTERS = ("nr_memmap_pages", "nr_memmap_boot_pages")
SIZES = {"2M": 2 * MIB, "1G": GIB}
DEFAULT_COUNTS = {"2M": 256, "1G": 1}     # 512 MiB and 1 GiB
HVO_MODELS = {"2M": "hvo-2M", "1G": "hvo-1G"}
NO_HVO_MODEL = "page"     # HVO off: every 4 KiB page keeps its 64-byte struct page
# MemAvailable left over once the pages are taken: the rest of the
# machine keeps running while they are held.
MARGIN_BYTES = 512 * MIB

VMSTAT = "proc/vmstat"
MEMINFO = "proc/meminfo"
SYSCTL = "proc/sys/vm/hugetlb_optimize_vmemmap"


def pool_dir(size, root="/"):
    """The hugetlb pool folder of a page size, e.g. .../hugepages-2048kB."""
    return os.path.join(root, f"sys/kernel/mm/hugepages/hugepages-{SIZES[size] // 1024}kB")


def counters(vmstat="/proc/vmstat"):
    """{'nr_memmap_pages': n, 'nr_memmap_boot_pages': m}, or None when this
    kernel's vmstat lacks either."""
    found = {}
    try:
        with open(vmstat) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name in COUNTERS:
                    found[name] = int(value)
    except OSError as e:
        raise PagetaxError(f"cannot read {vmstat}: {e.strerror}") from None
    return found if len(found) == len(COUNTERS) else None


def model_name(size, hvo):
    return HVO_MODELS[size] if hvo else NO_HVO_MODEL


def model_freed_per_huge_page(size, hvo=True):
    """Vmemmap pages the model frees per huge page of size: its struct
    pages less what the model keeps for it, in 4 KiB pages."""
    huge, name = SIZES[size], model_name(size, hvo)
    freed, rest = divmod(huge // PAGE * STRUCT_PAGE - MODELS[name].dram(huge), PAGE)
    assert rest == 0, f"{name} keeps a part of a page"
    return freed


def _memmap_pages(vmstat):
    """(sum of the counters, the counters), read twice: None for the sum
    when the two reads disagree."""
    first, second = counters(vmstat), counters(vmstat)
    if first is None or second is None:
        raise PagetaxError(f"{vmstat} lost its memmap counters while measuring")
    return (sum(first.values()) if first == second else None), second


def _check_kernel(root, euid):
    """Refuse, in one line, a machine where nothing can be measured."""
    vmstat = os.path.join(root, VMSTAT)
    if counters(vmstat) is None:
        raise PagetaxError(
            f"this kernel's {vmstat} has no nr_memmap_pages (the counters came in Linux "
            "6.11; the guest's 6.1 has none): use `pagetax vm memmap`, which measures "
            "free memory instead")
    sysctl = os.path.join(root, SYSCTL)
    if not os.path.exists(sysctl):
        raise PagetaxError(
            f"this kernel has no {sysctl} (built without CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP): "
            "HVO cannot be turned on and off to measure it")
    if euid != 0:
        raise PagetaxError("measuring the kernel's memmap needs root: it writes "
                           "vm.hugetlb_optimize_vmemmap and nr_hugepages")


def _size_refusal(size, count, root, margin):
    """Why a size cannot be measured at all on this machine, or None."""
    folder = pool_dir(size, root)
    if not os.path.isdir(folder):
        return (f"this kernel has no {size} hugetlb pages (no {folder}): "
                "the CPU or the kernel lacks that size")
    need = count * SIZES[size] + margin
    meminfo = os.path.join(root, MEMINFO)
    available = machine.mem_available(meminfo)
    if available is None:
        raise PagetaxError(f"cannot read MemAvailable from {meminfo}")
    if available < need:
        return (f"needs {need // MIB} MiB available ({count} x {size} plus a "
                f"{margin // MIB} MiB margin), MemAvailable is {available // MIB} MiB")
    return None


def _measure_one(state, size, hvo, count, root):
    """One row: count fresh pages of size allocated with HVO on or off,
    and the memmap counters around it; the pool is put back before return."""
    vmstat = os.path.join(root, VMSTAT)
    pool = os.path.join(pool_dir(size, root), "nr_hugepages")
    row = {"size": size, "huge_page_bytes": SIZES[size], "hvo": hvo, "requested": count,
           "model": model_name(size, hvo),
           "model_freed_per_huge_page": model_freed_per_huge_page(size, hvo)}
    state.set(os.path.join(root, SYSCTL), "1" if hvo else "0")
    start = int(state.read(pool))
    before, counters_before = _memmap_pages(vmstat)
    if before is None:
        return dict(row, refused="memmap counters moved while measuring")
    try:
        allocated = int(state.set_and_read_back(pool, start + count)) - start
        after, counters_after = _memmap_pages(vmstat)
    finally:
        back = state.set_and_read_back(pool, start)
    if int(back) != start:
        raise PagetaxError(f"{pool} did not go back to {start} (it reads {back}): "
                           "are some of the pages in use?")
    released, _ = _memmap_pages(vmstat)
    if allocated < count:
        why = (" (a gigantic page needs 1 GiB of contiguous free memory)" if size == "1G"
               else " (free memory too fragmented or short)")
        return dict(row, allocated=allocated,
                    refused=f"the kernel gave {allocated} of the {count} x {size} pages asked "
                            f"for{why}; "
                            "they were released and nothing is reported")
    if after is None or released != before:
        return dict(row, allocated=allocated, refused="memmap counters moved while measuring")
    freed = before - after
    expected = allocated * row["model_freed_per_huge_page"]
    return dict(row, allocated=allocated,
                memmap_pages_before=before, memmap_pages_after=after,
                counters_before=counters_before, counters_after=counters_after,
                freed_pages=freed, freed_per_huge_page=freed / allocated,
                matches=freed == expected)


def measure_hvo(state, sizes=("2M", "1G"), counts=None, root="/",
                margin=MARGIN_BYTES, euid=None):
    """Rows of the memmap change for fresh hugetlb pages, one per size and
    HVO off then on: {size, huge_page_bytes, hvo, requested, allocated,
    memmap_pages_before/after, freed_pages, freed_per_huge_page, model,
    model_freed_per_huge_page, matches}, or {..., refused: why} for a size
    this machine cannot measure.  The model is hvo-2M or hvo-1G with HVO on
    and page (nothing freed) with it off.  state (a KernelState) puts back
    the sysctl and nr_hugepages; euid defaults to this process's."""
    counts = dict(DEFAULT_COUNTS, **(counts or {}))
    for size in sizes:
        if size not in SIZES:
            raise PagetaxError(f"unknown huge page size {size!r} (use 2M or 1G)")
        if int(counts[size]) < 1:
            raise PagetaxError(f"the count of {size} pages must be at least 1, not {counts[size]}")
    _check_kernel(root, os.geteuid() if euid is None else euid)
    rows = []
    for size in sizes:
        count = int(counts[size])
        refusal = _size_refusal(size, count, root, margin)
        for hvo in (False, True):
            if refusal:
                rows.append({"size": size, "huge_page_bytes": SIZES[size], "hvo": hvo,
                             "requested": count, "model": model_name(size, hvo),
                             "refused": refusal})
            else:
                rows.append(_measure_one(state, size, hvo, count, root))
    return rows

"""The user buffers the kernel is made to pin: 4 KiB pages, a 2 MiB THP, a
2 MiB hugetlb page.  Each is checked in /proc/self/smaps after it is
touched, so a figure is never labelled with a page size the kernel did not
use (THP may be off, or fall back to 4 KiB pages)."""
import mmap

import numpy as np

from .. import backings, machine
from .._kernel import ffi
from ..errors import PagetaxError

BASE_PAGE = 4096
HUGE = 2 << 20
KINDS = ("4K", "THP", "hugetlb")
_MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)
_MADV_NOHUGEPAGE = getattr(mmap, "MADV_NOHUGEPAGE", 15)
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", 14)


class Buffer:
    """`nbytes` of private anonymous memory (a shared mapping would be shmem,
    with its own THP setting), touched, of one kind; `pointer`
    is its uint8_t * for pagetax._kernel, `array` a numpy view."""

    def __init__(self, kind, nbytes=HUGE):
        if kind not in KINDS:
            raise PagetaxError(f"unknown buffer kind {kind!r} (choose from {', '.join(KINDS)})")
        if nbytes <= 0 or nbytes % BASE_PAGE:
            raise PagetaxError(f"a buffer of {nbytes} bytes is not a whole number of pages")
        self.kind = kind
        self.nbytes = nbytes
        self._map = None
        self.pointer = None
        align = HUGE if kind != "4K" else BASE_PAGE
        try:
            if kind == "hugetlb":
                self._map = mmap.mmap(-1, -(-nbytes // HUGE) * HUGE,
                                      flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_HUGETLB)
            else:
                self._map = mmap.mmap(-1, nbytes + align - BASE_PAGE,
                                      flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except OSError as e:
            raise PagetaxError(f"cannot map a {kind} buffer of {nbytes} bytes: {e.strerror}"
                               + (" (no free 2 MiB hugetlb page)" if kind == "hugetlb" else ""))
        try:
            self._place(kind, nbytes, align)
        except BaseException:
            # Ctrl-C or a refusal half-way: unmapped now, not when the
            # traceback lets go of it, so that a hugetlb page is free before
            # KernelState puts nr_hugepages back (a mapped one stays counted).
            self.close()
            raise

    def _place(self, kind, nbytes, align):
        """The aligned view, touched, and the mapping checked in smaps."""
        with ffi.from_buffer("uint8_t[]", self._map) as whole:   # released on every way out
            base = int(ffi.cast("uintptr_t", whole))
        self.offset = (-base) % align
        if kind == "4K":
            self._map.madvise(_MADV_NOHUGEPAGE, 0, len(self._map))
        elif kind == "THP":
            self._map.madvise(_MADV_HUGEPAGE, self.offset, nbytes)
        self.array = np.frombuffer(self._map, np.uint8, nbytes, self.offset)
        self.array[:] = np.arange(nbytes, dtype=np.uint64).astype(np.uint8)  # every page touched
        self.pointer = ffi.from_buffer("uint8_t[]", self.array, require_writable=True)
        self.address = int(ffi.cast("uintptr_t", self.pointer))
        self.mapping = machine.mapping_page_size(machine.smaps_of(self.address))
        want = "4K" if kind == "4K" else "2M"
        if self.mapping["page_size"] != want:
            got = self.mapping["page_size"]
            why = {"THP": "transparent huge pages are off or fell back (see "
                   "/sys/kernel/mm/transparent_hugepage/enabled)"}.get(kind, "")
            raise PagetaxError(f"a {kind} buffer was mapped with {got} pages, not {want}"
                               + (f": {why}" if why else ""))

    @property
    def page_size(self):
        return self.mapping["page_size"]

    def close(self):
        if self.pointer is not None:
            ffi.release(self.pointer)
            self.pointer = None
        self.array = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view of it lives on; the mapping goes with it
                pass
            self._map = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DaxBuffer:
    """2 MiB of a DAX backing, as `pagetax run --backing` names one
    (dax:PATH, a new file on an fsdax mount, mapped MAP_SYNC; devdax:DEV,
    written only with overwrite): the ZONE_DEVICE pages the 2015 thread
    argued about, for the same probes."""
    kind = "dax"

    def __init__(self, spec, overwrite=False, nbytes=HUGE):
        if not spec.startswith(("dax:", "devdax:")):
            raise PagetaxError(f"--dax {spec}: give dax:PATH (a new file on an fsdax mount) or "
                               "devdax:DEVICE")
        # 2 MiB pages: PMD-mapped, where 6.1 and 6.12 took a pgmap lookup and a
        # reference per 4 KiB page (gup_fast_devmap_leaf), later kernels one per folio
        self._backing = backings.open_backing(spec, nbytes, overwrite=overwrite, page_size="2M")
        try:
            self._place(spec, nbytes)
        except BaseException:   # a refusal or Ctrl-C half-way: the backing goes now
            self.close()
            raise

    def _place(self, spec, nbytes):
        if not self._backing.writable:
            raise PagetaxError(f"--dax {spec} already holds data: pass --overwrite to let "
                               "pagetax kernel write it")
        self.nbytes = nbytes
        self.array = self._backing.view()[:nbytes]
        self.array[:] = np.arange(nbytes, dtype=np.uint64).astype(np.uint8)  # faulted in
        self.address = self._backing.base
        self.pointer = ffi.cast("uint8_t *", self.address)
        described = backings.describe(self._backing)
        self.mapping = dict(described["mapping"], backing=described["kind"],
                            path=described["path"], fs_type=described["fs_type"])

    @property
    def page_size(self):
        return self.mapping.get("page_size")

    def close(self):
        self.array = None
        self.pointer = None
        if self._backing is not None:
            self._backing.close()
            self._backing = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""Attachments of a design to a backing (backings.py): the descriptor table
the C core builds, holds and releases, the runs prepared on it, and one-shot
gathers and scatters.  The registry is designs.py; the timed loop's Python
side is timed_run.py.  C error codes become exceptions through
errors.raise_for.
"""
import mmap

import numpy as np

from . import extents as _ext
from . import machine
from ._core import ffi, lib
from .designs import (DESIGNS, TABLE_PAGES, design_flags, design_id, design_layout,
                      design_metadata, entries_or_raise, folio_shift, gup_flags)
from .errors import ExtentError, PagetaxError, raise_for
from .persist import persist_code, resolve_persist
from .timed_run import DEFAULT_SEGS_PER_IO, PreparedRun


def aligned_buffer(nbytes, fill=0):
    """A page-aligned, touched uint8 array.

    numpy's own large arrays start 16 bytes past a page boundary, and on some
    CPUs (AMD Zen 3 here) `rep movsb` into such a destination runs at a third
    of the speed; every buffer pagetax times is page-aligned instead."""
    if nbytes <= 0:
        raise ExtentError(f"buffer size {nbytes} must be positive")
    arr = np.frombuffer(mmap.mmap(-1, nbytes), np.uint8)
    arr[:] = fill
    return arr


class Closing:
    """The owner of a C object, freed by close(): at the end of a `with`
    block, or when the owner is collected."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def _check_table_fits(design, data_bytes, folio_size="4K"):
    """A DRAM table larger than the memory available would be allocated
    (overcommit) and then OOM-kill the run as it is touched: refuse it."""
    need = design_metadata(design, data_bytes, folio_size)[0]
    avail = machine.mem_available()
    if need and avail is not None and need > avail:
        raise PagetaxError(f"{design}: its descriptor table needs {need} bytes of DRAM for "
                           f"{data_bytes} bytes of backing, more than MemAvailable ({avail} bytes)")


class Attachment(Closing):
    """A design attached to a backing: its descriptor table, if it has one."""

    def __init__(self, backing, design, data_off=0, data_bytes=0, table_pages="2M",
                 folio_size="4K", gup_omit=(), devmap=False):
        self.backing = backing
        self.design = design
        self._ptr = ffi.NULL
        if backing._ptr == ffi.NULL:
            raise PagetaxError("the backing is closed")
        if table_pages not in TABLE_PAGES:
            raise PagetaxError(f"unknown table page size {table_pages!r} "
                               f"(choose from {', '.join(TABLE_PAGES)})")
        self.flags = design_flags(design)
        shift = folio_shift(folio_size)
        if shift != 12 and "folios" not in self.flags:
            raise PagetaxError(f"{design} has no folios: --folio-size is for "
                               f"{', '.join(d for d in DESIGNS if 'folios' in design_flags(d))}")
        _check_table_fits(design, data_bytes or design_layout(design, backing.size)[1],
                          folio_size)
        err = ffi.new("struct pt_error *")
        out = ffi.new("pt_attachment **")
        flags = (lib.PT_ATTACH_TABLE_4K if table_pages == "4K" else 0) | \
            (shift * lib.PT_ATTACH_FOLIO_SHIFT if shift != 12 else 0) | gup_flags(gup_omit, devmap)
        raise_for(lib.pt_attach(backing._ptr, design_id(design), data_off, data_bytes, flags,
                                out, err), err, prefix=f"{design}: ")
        self._ptr = out[0]
        self._mapping = backing._mapping  # unmapped only once this is detached
        self._mapping.attached()
        self.meta_bytes = int(lib.pt_attachment_meta_bytes(self._ptr))  # allocated for descriptors
        self.rss_delta = int(lib.pt_attachment_rss_delta(self._ptr))    # resident growth at attach
        self.data_offset = int(lib.pt_attachment_data_offset(self._ptr))
        self.data_bytes = int(lib.pt_attachment_data_bytes(self._ptr))
        self.table_pages_asked = table_pages
        self.folio_size = folio_size if "folios" in self.flags else None
        self.table_address = int(ffi.cast("uintptr_t", lib.pt_attachment_table(self._ptr)))
        self.gup_omit = tuple(gup_omit)
        self.devmap = devmap
        # what one pin adds to a count: 1024 for a small folio, 1 for a large one
        self.pin_bias = int(lib.pt_attachment_pin_bias(self._ptr))

    def table_mapping(self):
        """How the kernel really maps the descriptor table, from smaps: its
        page size ("2M", "4K", "mixed") and the bytes on 2 MiB pages; None
        for a design with no table in DRAM."""
        if not self.table_address or "table_on_backing" in self.flags:
            return None
        f = machine.smaps_of(self.table_address)
        huge = f.get("AnonHugePages", 0) + (f.get("Rss", 0) if f.get("KernelPageSize", 4096)
                                            >= 2 << 20 else 0)
        size = f.get("Size", 0)
        page = "2M" if huge and huge >= size - size % (2 << 20) else ("mixed" if huge else "4K")
        if size < 2 << 20:
            page = "4K"  # smaller than one 2 MiB page: nothing to map huge
        return {"page_size": page, "huge_bytes": huge, "mapped_bytes": size,
                "asked": self.table_pages_asked}

    def refcounts(self):
        """Every descriptor's reference count, read from the table (int32)."""
        self._check_open()
        n = int(lib.pt_attachment_descriptors(self._ptr))
        out = np.zeros(n, np.int32)
        err = ffi.new("struct pt_error *")
        raise_for(lib.pt_attachment_refcounts(self._ptr, ffi.from_buffer("int32_t[]", out,
                                                                         require_writable=True),
                                              n, err), err)
        return out

    def hold(self, ext):
        """Build one I/O over ext and hold its references until the returned
        context exits (or unhold()): what the table looks like mid-I/O."""
        self._check_open()
        _ext.check_array(ext)
        err = ffi.new("struct pt_error *")
        c_ext = ffi.from_buffer("struct pt_extent[]", ext) if len(ext) else ffi.NULL
        raise_for(lib.pt_hold(self._ptr, c_ext, len(ext), err), err)
        return _Held(self)

    def unhold(self):
        self._check_open()
        err = ffi.new("struct pt_error *")
        raise_for(lib.pt_unhold(self._ptr, err), err)

    def _check_open(self):
        if self._ptr == ffi.NULL:
            raise PagetaxError(f"{self.design}: the attachment is closed")

    def entries(self, ext):
        self._check_open()
        _ext.check_array(ext)
        return entries_or_raise(int(lib.pt_vector_entries(
            self._ptr, ffi.from_buffer("struct pt_extent[]", ext), ext.shape[0])), ext)

    def validate_in_c(self, ext, buf_bytes):
        """Only the C validator (for tests): raises what the core refuses."""
        self._check_open()
        err = ffi.new("struct pt_error *")
        c_ext = ffi.from_buffer("struct pt_extent[]", ext) if len(ext) else ffi.NULL
        total = ffi.new("uint64_t *")
        raise_for(lib.pt_validate(self._ptr, c_ext, len(ext), buf_bytes, total, err), err)
        return int(total[0])

    def prepare(self, op, ext, buf, *, reps=1, warmup=0, cache="warm", evict=None,
                segs_per_io=DEFAULT_SEGS_PER_IO, calls=1, persist=0, cpus=None, phase_reps=None,
                probe=False, cold=None, latency=None):
        """Check everything once and return a PreparedRun: `calls` C calls of
        `reps` repetitions each, with as little Python as possible between.

        `ext` and `buf` are one extent array and one buffer, or lists of them:
        one thread each, all through this attachment's descriptor table.
        `cpus` pins thread i to cpus[i] (-1: not pinned).

        The cheap checks run here; the bounds checks run in C on every call,
        before any copy (pagetax.extents.check gives friendlier messages).
        A cold cache flushes every line a repetition touches before it
        (`cold`: "clflushopt", "clflush", or "evict", which writes all of
        `evict`, a uint8 array a few times the LLC, see eviction_buffer).
        `phase_reps` instrumented repetitions (default: as many as timed)
        give the build/copy/release split and, with `latency` (default: when
        `segs_per_io` is set), each I/O's latency in a histogram
        (Measurement.latency)."""
        exts, bufs = (ext, buf) if isinstance(ext, (list, tuple)) else ([ext], [buf])
        if not isinstance(bufs, (list, tuple)):
            raise PagetaxError("with one extent array per thread, give one buffer per thread")
        return PreparedRun(self, op, list(exts), list(bufs), reps, warmup, cache, evict,
                           segs_per_io, calls, persist, cpus, phase_reps, probe, cold, latency)

    def run(self, op, ext, buf, **kw):
        """Time reps repetitions of build, copy, release in one C call
        (threads: ext and buf as lists, see prepare)."""
        prepared = self.prepare(op, ext, buf, **kw)
        prepared()
        return prepared.measurement()

    def close(self):
        if self._ptr != ffi.NULL:
            lib.pt_detach(self._ptr)
            self._ptr = ffi.NULL
            self._mapping.detached()


class _Held:
    def __init__(self, att):
        self._att = att

    def __enter__(self):
        return self._att

    def __exit__(self, *exc):
        self._att.unhold()


def eviction_buffer(effective_bytes=None):
    """What cold="evict" writes before each repetition (only on CPUs without
    CLFLUSH): 4x the larger of the LLC sysfs reports and the cache measured
    (machine.cache_walk), so that data, descriptors and vector all start out
    of every cache level whichever figure is wrong."""
    return aligned_buffer(machine.eviction_bytes(effective_bytes))


def _copy(op, backing, design, ext, buf, **kw):
    with backing.attach(design) as att:
        _ext.check_buffer(buf, writable=(op == "read"))
        _ext.check(ext, att.data_bytes, buf.nbytes, op)
        return att.run(op, ext, buf, **kw).bytes


def gather(backing, design, ext, buf):
    """Copy the extents of the backing into buf, packed; returns bytes moved."""
    return _copy("read", backing, design, ext, buf)


def scatter(backing, design, ext, buf, persist="none", each=False):
    """Copy buf, packed, out to the extents of the backing; returns bytes moved.
    `persist` flushes as --persist does (see resolve_persist)."""
    code = persist_code(resolve_persist(persist), each)
    return _copy("write", backing, design, ext, buf, persist=code)

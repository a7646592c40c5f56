"""The Python face of the C core: the design registry (names, flags,
layouts, metadata), attachments of a design to a backing (backings.py), and
runs.  C error codes become exceptions through errors.raise_for.
"""
import mmap
import time
import weakref

import numpy as np

from . import extents as _ext
from . import latency as _latency
from ._core import ffi, lib
from .errors import ExtentError, PagetaxError, raise_for
from . import machine
from .persist import cpu_features, persist_code, resolve_persist

OPS = ("read", "write")
CACHE_MODES = ("warm", "cold")
MAX_THREADS = lib.PT_MAX_THREADS
_OP_CODE = {"read": lib.PT_READ, "write": lib.PT_WRITE}
_CACHE_CODE = {"warm": lib.PT_CACHE_WARM, "cold": lib.PT_CACHE_COLD}


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


_ALL = tuple(ffi.string(lib.pt_design_name(i)).decode() for i in range(lib.pt_design_count()))
_DESIGN_ID = {name: i for i, name in enumerate(_ALL)}
DESIGNS = tuple(d for i, d in enumerate(_ALL) if not lib.pt_design_flags(i) & lib.PT_DESIGN_PEER)
PEERS = tuple(d for i, d in enumerate(_ALL) if lib.pt_design_flags(i) & lib.PT_DESIGN_PEER)
TABLE_PAGES = ("2M", "4K")   # how DRAM descriptor tables are mapped; 2M as the kernel's vmemmap
# folio sizes of the folio designs (--folio-size); 2M stands for THP and
# PMD-mapped DAX, PMD-mapped, the others PTE-mapped
FOLIO_SIZES = {"4K": 12, "16K": 14, "64K": 16, "2M": 21}


def design_id(name):
    try:
        return _DESIGN_ID[name]
    except KeyError:
        raise PagetaxError(f"unknown design {name!r} (choose from {', '.join(DESIGNS)})") from None


def design_entry_bytes(name):
    return int(lib.pt_design_entry_bytes(design_id(name)))


_FLAG_NAMES = {"peer": lib.PT_DESIGN_PEER, "roofline": lib.PT_DESIGN_ROOFLINE,
               "contiguous": lib.PT_DESIGN_CONTIGUOUS, "refcounts": lib.PT_DESIGN_REFCOUNTS,
               "table_on_backing": lib.PT_DESIGN_TABLE_ON_BACKING,
               "own_persist": lib.PT_DESIGN_OWN_PERSIST,
               "folios": lib.PT_DESIGN_FOLIOS}


def design_flags(name):
    """What a design declares itself to be, as a set of names (see pagetax.h)."""
    bits = lib.pt_design_flags(design_id(name))
    return frozenset(k for k, v in _FLAG_NAMES.items() if bits & v)


def clock_cost_ns():
    """One CLOCK_MONOTONIC read on this machine, as the core measures it."""
    return float(lib.pt_clock_cost_ns())


def mark_cost_ns():
    """One phase mark (a full fence, then a clock read), what an
    instrumented repetition subtracts per phase of each I/O."""
    return float(lib.pt_mark_cost_ns())


COLD_METHODS = ("clflushopt", "clflush", "evict")
_COLD_CODE = {"clflushopt": lib.PT_COLD_CLFLUSHOPT, "clflush": lib.PT_COLD_CLFLUSH,
              "evict": lib.PT_COLD_EVICT}


def cold_method(cpu=None):
    """How a cold repetition is made cold here: flush exactly its lines with
    CLFLUSHOPT, else CLFLUSH; only without either, evict by writing a buffer
    of 4x the LLC (which scales with the LLC)."""
    cpu = cpu or cpu_features()
    for m in ("clflushopt", "clflush"):
        if cpu[m]:
            return m
    return "evict"


def cold_description(method):
    if method == "evict":
        return "plain stores and loads over 4x the LLC before each repetition"
    return (f"{method.upper()} of every line the repetition touches (data, buffer, vector, "
            f"descriptors) and MFENCE, then one load on each of {lib.PT_TLB_SCRUB_PAGES} "
            "unrelated 4 KiB pages to empty the TLB")


def design_layout(name, size):
    """(data offset, data bytes) a design would use on a backing of `size`."""
    off = ffi.new("uint64_t *")
    nbytes = ffi.new("uint64_t *")
    if size > lib.PT_MAX_CAPACITY:
        raise PagetaxError(f"a {size}-byte backing is over the limit of "
                           f"{lib.PT_MAX_CAPACITY} bytes (2^57)")
    if lib.pt_design_layout(design_id(name), size, off, nbytes):
        raise PagetaxError(f"a {size}-byte backing is too small for {name}")
    return int(off[0]), int(nbytes[0])


def common_layout(designs, size):
    """The one data area every design in a run can share: it starts after
    the largest reserve (altmap's) and ends at the earliest end."""
    areas = [design_layout(d, size) for d in designs]
    start = max(off for off, _ in areas)
    end = min(off + n for off, n in areas)
    return start, end - start


def design_table(name):
    """(descriptor bytes, data bytes per descriptor) of a refcounting design's
    table, as C declares them; (0, 0) without a table."""
    desc, granule = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    lib.pt_design_table(design_id(name), desc, granule)
    return int(desc[0]), int(granule[0])


def design_entries(name, ext):
    """Vector entries one build of `ext` makes, as the design counts them."""
    _ext.check_array(ext)
    c_ext = ffi.from_buffer("struct pt_extent[]", ext) if len(ext) else ffi.NULL
    entries = int(lib.pt_design_entries(design_id(name), c_ext, len(ext)))
    return _entries_or_raise(entries, ext)


def _entries_or_raise(entries, ext):
    if entries == lib.PT_ENTRIES_INVALID:
        _ext.check_segments(ext)   # names the extent
        raise ExtentError("extents that no run accepts")
    return entries


# The parts of the kernel's grab a run may leave out, to measure each
# (csrc/pt_gup.h): FOLL_PIN (leaving FOLL_GET), folio_ref_try_add's loop,
# page_folio()'s re-read, folio_set_referenced.
GUP_PARTS = {"pin": "PT_ATTACH_GUP_GET", "try-add": "PT_ATTACH_GUP_PLAIN_ADD",
             "recheck": "PT_ATTACH_GUP_NO_RECHECK", "referenced": "PT_ATTACH_GUP_NO_REFERENCED"}


def gup_flags(omit=(), devmap=False):
    flags = 0
    for part in omit:
        if part not in GUP_PARTS:
            raise PagetaxError(f"unknown part of the grab {part!r} (choose from "
                               f"{', '.join(GUP_PARTS)})")
        flags |= getattr(lib, GUP_PARTS[part])
    return flags | (lib.PT_ATTACH_GUP_DEVMAP if devmap else 0)


def folio_shift(folio_size):
    if folio_size not in FOLIO_SIZES:
        raise PagetaxError(f"unknown folio size {folio_size!r} "
                           f"(choose from {', '.join(FOLIO_SIZES)})")
    return FOLIO_SIZES[folio_size]


def design_metadata(name, capacity, folio_size="4K"):
    """(DRAM bytes, device bytes) a design keeps for `capacity` bytes (the
    folio designs: with folios of `folio_size`)."""
    if not 0 <= capacity < 1 << 64:
        raise PagetaxError(f"capacity {capacity} is over the limit of "
                           f"{lib.PT_MAX_CAPACITY} bytes (2^57)")
    shift = folio_shift(folio_size) if "folios" in design_flags(name) else 12
    out = ffi.new("struct pt_metadata *")
    err = ffi.new("struct pt_error *")
    raise_for(lib.pt_design_metadata_folio(design_id(name), capacity, shift, out, err), err,
              cls=PagetaxError)
    return int(out.dram_bytes), int(out.device_bytes)


class Closing:
    """The owner of a C object, freed by close(): at the end of a `with`
    block, or when the owner is collected."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Measurement:
    """What one run saw, built whole from the C core's figures.

    ``total_ns`` is each timed repetition's wall time, two clock reads around
    it: from the first thread's start to the last thread's end, for one
    thread and for many alike (GB/s is aggregate).  ``phases`` is the
    build/copy/release split from the instrumented repetitions, with the
    clock reads they contain subtracted (``clock_ns`` each, one per phase of
    each I/O), averaged over threads."""

    def __init__(self, *, wall_ns, thread_total_ns, thread_phases_raw, clock_ns, thread_ios,
                 entries, vector_bytes, call_ns, wall_call_ns, thread_segments, thread_bytes,
                 lines_flushed=0, fences=0, cpus=None, cold=None, probe=None, latency=None):
        self.total_ns = wall_ns                        # (reps,) timed repetitions
        self.rep_wall_ns = wall_ns
        self.thread_total_ns = thread_total_ns         # (threads, reps)
        self.threads = thread_total_ns.shape[0]
        self.clock_ns = clock_ns
        self.thread_phases_raw = thread_phases_raw     # (threads, phase reps, 3) as read
        ios = np.asarray(thread_ios, np.float64)[:, None, None]
        self.thread_phases = thread_phases_raw.astype(np.float64) - ios * clock_ns
        self.phases = self.thread_phases.mean(axis=0)  # (phase reps, 3)
        self.ios = int(sum(thread_ios))                # per repetition, all threads
        self.entries = entries
        self.vector_bytes = vector_bytes
        self.call_ns = call_ns                         # the C calls, whole
        self.wall_ns = wall_call_ns                    # the same calls, seen from Python
        self.thread_segments = thread_segments
        self.thread_bytes = thread_bytes
        self.segments = sum(thread_segments)
        self.bytes = sum(thread_bytes)
        self.lines_flushed = lines_flushed             # per repetition
        self.fences = fences
        self.cpus = cpus
        self.cold = cold                               # how a cold repetition was made cold
        self.probe = probe                             # {"start_ns", "warm_ns"} or None
        self.latency = latency                         # latency.Histogram, or None

    def thread_gbps(self):
        """Each thread's own median throughput: its bytes / its repetition time."""
        return [b / float(np.median(t)) for b, t in zip(self.thread_bytes, self.thread_total_ns)]

    def ns_per_seg(self):
        """(median, best) wall time per segment of one thread: the repetition's
        wall time over the mean thread's segments."""
        per = self.total_ns.astype(np.float64) * self.threads / self.segments
        return float(np.median(per)), float(per.min())


def _need_evict_buffer(cold, evict):
    if cold == "evict" and evict is None:
        raise PagetaxError("a cold cache by eviction needs an eviction buffer "
                           "(pagetax.eviction_buffer())")


_STAT_FIELDS = ("bytes", "ios", "entries", "vector_bytes", "lines_flushed", "fences")

# The I/O shape a run takes unless told otherwise: a bio holds at most
# BIO_MAX_VECS (256) bio_vecs (include/linux/bio.h).  0 means one I/O for the
# whole repetition, a vector no kernel path builds.
DEFAULT_SEGS_PER_IO = 256

# The PreparedRun called last, whichever design: the next one's make_cold()
# writes back what its call wrote (pytest-benchmark runs designs one after
# another in one process, and times calls made warm).
_last_run = None


class PreparedRun:
    """One design, op and workload, checked once and ready to call.

    The C core makes a plan of it (pt_plan_create): its own copy of the
    extents, checked, each I/O's bytes and entries, the cost of a phase
    mark.  Each call is one pt_plan_run, one thread per extent array; the
    times land in preallocated arrays, so the Python between two timed
    repetitions is a few statements (after a 64 MiB copy every cache line
    Python touches is a miss).  ``phase_reps`` instrumented repetitions are
    spread evenly over the calls; ``probe`` times cold and warm loads once,
    after the first call."""

    def __init__(self, att, op, exts, bufs, reps, warmup, cache, evict, segs_per_io, calls,
                 persist=0, cpus=None, phase_reps=None, probe=False, cold=None, latency=None):
        if op not in _OP_CODE:
            raise PagetaxError(f"unknown op {op!r} (choose from {', '.join(OPS)})")
        if cache not in _CACHE_CODE:
            raise PagetaxError(f"unknown cache mode {cache!r} (choose from {', '.join(CACHE_MODES)})")
        if reps < 1:
            raise PagetaxError(f"repetitions must be at least 1 (got {reps})")
        if segs_per_io < 0:
            raise PagetaxError(f"segments per I/O must not be negative (got {segs_per_io})")
        phase_reps = reps * calls if phase_reps is None else phase_reps
        if phase_reps < 0:
            raise PagetaxError(f"phase repetitions must not be negative (got {phase_reps})")
        if att._ptr == ffi.NULL or att.backing._ptr == ffi.NULL:
            raise PagetaxError("the attachment or its backing is closed")
        n = len(exts)
        if n < 1 or n > MAX_THREADS or len(bufs) != n:
            raise PagetaxError(f"give one extent array and one buffer per thread, 1 to "
                               f"{MAX_THREADS} threads (got {n} and {len(bufs)})")
        cpus = list(cpus) if cpus is not None else [-1] * n
        if len(cpus) != n:
            raise PagetaxError(f"give one CPU per thread (got {len(cpus)} for {n} threads)")
        for ext, buf in zip(exts, bufs):
            _ext.check_array(ext)
            _ext.check_buffer(buf, writable=(op == "read"))
        if op == "write" and not att.backing.writable:
            raise PagetaxError(f"{att.backing.path} is mapped read-only (it already held data); "
                               "pass overwrite=True / --overwrite to let pagetax write it")
        cold = cold or cold_method()
        if cold not in _COLD_CODE:
            raise PagetaxError(f"unknown cold-cache method {cold!r} (choose from {', '.join(COLD_METHODS)})")
        if cache == "cold":
            _need_evict_buffer(cold, evict)
        if cold == "evict" and evict is not None:
            _ext.check_buffer(evict, writable=True)
        else:
            evict = None
        self.cold_asked = cold
        self._keep = (att, bufs, evict)  # the plan points into these; it copied the extents
        cfg = ffi.new("struct pt_run_config *", {
            "op": _OP_CODE[op], "cache": _CACHE_CODE[cache], "segs_per_io": segs_per_io,
            "cold_method": _COLD_CODE[cold],
            "evict_buf": ffi.from_buffer("uint8_t[]", evict, require_writable=True)
            if evict is not None else ffi.NULL,
            "evict_bytes": evict.nbytes if evict is not None else 0,
            "persist": persist})
        self._call = ffi.new("struct pt_call *", {"reps": reps, "warmup": warmup})
        self.cache = cache
        self.cold = cold if cache == "cold" else None
        self.reps = reps
        self.calls_planned = calls
        self.phase_reps = phase_reps
        self.probe = probe
        self.totals = np.zeros((n, reps * calls), np.uint64)
        self.phases = np.zeros((n, max(phase_reps, 1), 3), np.uint64)
        self.wall = np.zeros(reps * calls, np.uint64)
        self._c_wall = ffi.from_buffer("uint64_t[]", self.wall, require_writable=True)
        self._threads = ffi.new("struct pt_thread[]", n)
        self._c_totals, self._c_phases = [], []
        # per-I/O latency of the instrumented repetitions: by default when an
        # I/O is a part of a repetition (segs_per_io), not the whole of it
        latency = bool(segs_per_io) if latency is None else latency
        self._latency = _latency.allocate(n) if latency else None
        views = []  # a struct field does not keep its cdata alive; this list does
        for i, (ext, buf) in enumerate(zip(exts, bufs)):
            t = self._threads[i]
            view = (ffi.from_buffer("struct pt_extent[]", ext),
                    ffi.from_buffer("uint8_t[]", buf, require_writable=(op == "read")))
            views.append(view)
            t.ext, t.buf = view
            t.n = ext.shape[0]
            t.buf_bytes = buf.nbytes
            t.cpu = cpus[i]
            self._c_totals.append(ffi.from_buffer("uint64_t[]", self.totals[i],
                                                  require_writable=True))
            self._c_phases.append(ffi.from_buffer("struct pt_rep_times[]", self.phases[i],
                                                  require_writable=True))
            t.latency = self._latency + i if self._latency is not None else ffi.NULL
        self._err = ffi.new("struct pt_error *")
        out = ffi.new("pt_plan **")
        raise_for(lib.pt_plan_create(att._ptr, cfg, self._threads, n, out, self._err), self._err)
        self._plan = ffi.gc(out[0], lib.pt_plan_free)
        self._cfg = cfg  # the evict buffer's view lives as long as the plan
        self._buf_views = [v[1] for v in views]
        for i in range(n):  # read once, by the plan; the core reads its own copy
            self._threads[i].ext = ffi.NULL
        self._nthreads = n
        self.cpus = None if all(c < 0 for c in cpus) else cpus
        self.calls = 0
        self.phases_done = 0
        self.call_ns = 0
        self.wall_ns = 0
        self.clock_ns = []
        self.probed = None
        self._stats = None

    def _phase_reps_of(self, call):
        """Instrumented repetitions in call `call`: phase_reps spread evenly."""
        c = self.calls_planned
        return self.phase_reps * (call + 1) // c - self.phase_reps * call // c

    def _open(self):
        att = self._keep[0]
        return att._ptr != ffi.NULL and att.backing._ptr != ffi.NULL

    def _check_open(self):
        if not self._open():
            raise PagetaxError(f"{self._keep[0].design}: the attachment or its backing is closed")

    def __call__(self):
        global _last_run
        self._check_open()
        if self.calls >= self.calls_planned:
            raise PagetaxError("this PreparedRun has made all its calls")
        at = self.calls * self.reps
        call = self._call
        call.phase_reps = self._phase_reps_of(self.calls)
        call.probe = int(self.probe and self.calls == 0)
        call.cold_only = 0
        for i in range(self._nthreads):
            self._threads[i].total_ns = self._c_totals[i] + at
            self._threads[i].phases = self._c_phases[i] + self.phases_done
        t0 = time.perf_counter_ns()
        rc = lib.pt_plan_run(self._plan, call, self._threads, self._nthreads, self._c_wall + at,
                             self._err)
        self.wall_ns += time.perf_counter_ns() - t0
        _last_run = weakref.ref(self)
        raise_for(rc, self._err)
        self.calls += 1
        self.phases_done += call.phase_reps
        s = self._threads[0].stats
        self._stats = [{k: int(getattr(self._threads[i].stats, k)) for k in _STAT_FIELDS}
                       for i in range(self._nthreads)]
        self.call_ns += s.call_ns
        self.clock_ns.append(float(s.clock_ns))
        if call.probe:
            self.probed = {"start_ns": float(s.probe_start_ns), "warm_ns": float(s.probe_warm_ns),
                           "lines": int(lib.PT_PROBE_LINES), "chained": True}

    def _cold_only(self, flags):
        call = self._call
        saved = (call.phase_reps, call.probe)
        call.cold_only, call.phase_reps, call.probe = flags, 0, 0
        try:
            _need_evict_buffer(self.cold_asked, self._keep[2])
            raise_for(lib.pt_plan_run(self._plan, call, self._threads, self._nthreads, ffi.NULL,
                                      self._err), self._err)
        finally:
            call.cold_only = 0
            call.phase_reps, call.probe = saved

    def make_cold(self):
        """Start the next call cold, now: what a cold repetition does before
        it starts (flush its lines, scrub the TLB, on every thread's CPU),
        after writing back what the last PreparedRun's call wrote, whichever
        design it was, as a cold repetition does when it ends.  For a
        harness that times the call itself (asv, pytest-benchmark): prepare
        with cache="warm" so the call adds no cold start of its own."""
        self._check_open()
        last = _last_run() if _last_run is not None else None
        if last is not None and last._open():
            last.write_back()
        self.cold_start()

    def cold_start(self):
        """Flush, now, every line this run's next repetition will touch, and
        scrub the TLB: what a cold repetition starts with."""
        self._cold_only(lib.PT_COLD_ONLY_START)

    def write_back(self):
        """Flush, now, what this run's repetitions write: what a cold
        repetition ends with."""
        self._cold_only(lib.PT_COLD_ONLY_FINISH)

    def extents_copy(self, thread=0):
        """What the core reads as a thread's extents: a copy of the plan's
        own copy (for tests)."""
        if not 0 <= thread < self._nthreads:
            raise PagetaxError(f"no thread {thread} (the plan has {self._nthreads})")
        n = int(self._threads[thread].n)
        ptr = lib.pt_plan_extents(self._plan, thread)
        return np.frombuffer(ffi.buffer(ptr, n * _ext.EXTENT_DTYPE.itemsize),
                             _ext.EXTENT_DTYPE).copy()

    def measurement(self):
        done = self.calls * self.reps
        n = self._nthreads
        stats = self._stats or [{k: 0 for k in _STAT_FIELDS}] * n
        return Measurement(
            wall_ns=self.wall[:done], thread_total_ns=self.totals[:, :done],
            thread_phases_raw=self.phases[:, :self.phases_done],
            clock_ns=float(np.median(self.clock_ns)) if self.clock_ns else 0.0,
            thread_ios=[s["ios"] for s in stats],
            entries=sum(s["entries"] for s in stats),
            vector_bytes=sum(s["vector_bytes"] for s in stats),
            call_ns=self.call_ns, wall_call_ns=self.wall_ns,
            thread_segments=[int(self._threads[i].n) for i in range(n)],
            thread_bytes=[s["bytes"] for s in stats],
            lines_flushed=sum(s["lines_flushed"] for s in stats),
            fences=sum(s["fences"] for s in stats), cpus=self.cpus,
            cold=self.cold, probe=self.probed,
            latency=None if self._latency is None else
            _latency.Histogram.merged(self._latency, n))


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
        return _entries_or_raise(int(lib.pt_vector_entries(
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

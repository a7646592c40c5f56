"""A prepared run of the C core's one timed loop (csrc/run.c, pt_plan_run):
the ops and cache modes, how a cold repetition is made cold, what a clock
read and a phase mark cost, and PreparedRun, which checks a workload once
and calls the loop, and Measurement, what the calls saw."""
import time
import weakref

import numpy as np

from . import extents as _ext
from . import latency as _latency
from ._core import ffi, lib
from .errors import PagetaxError, raise_for
from .persist import cpu_features

OPS = ("read", "write")
CACHE_MODES = ("warm", "cold")
MAX_THREADS = lib.PT_MAX_THREADS
_OP_CODE = {"read": lib.PT_READ, "write": lib.PT_WRITE}
_CACHE_CODE = {"warm": lib.PT_CACHE_WARM, "cold": lib.PT_CACHE_COLD}


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


def prefetch_distances():
    """How far ahead the core prefetches, as it was built (pagetax.h)."""
    return {"segments_ahead": lib.PT_PREFETCH_AHEAD,
            "descriptors_ahead": lib.PT_PREFETCH_DESC_AHEAD,
            "counts_ahead": lib.PT_PREFETCH_AHEAD}


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

"""The Python face of the C core: backings, design attachments, runs.

C error codes become exceptions here, with the message the core wrote.
"""
import mmap
import os
import secrets
import stat
import time

import numpy as np

from . import extents as _ext
from ._core import ffi, lib
from .errors import BackingError, ExtentError, PagetaxError
from . import machine
from .machine import mount_of

OPS = ("read", "write")
PERSIST_MODES = ("none", "clwb", "clflushopt", "clflush", "nt", "auto")
CACHE_MODES = ("warm", "cold")
MAX_THREADS = lib.PT_MAX_THREADS
_OP_CODE = {"read": lib.PT_READ, "write": lib.PT_WRITE}
_CACHE_CODE = {"warm": lib.PT_CACHE_WARM, "cold": lib.PT_CACHE_COLD}
SCRATCH_PREFIX = "pagetax-"


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


def _raise(rc, err):
    if rc != lib.PT_OK:
        cls = ExtentError if rc in (lib.PT_EINVAL, lib.PT_ERANGE) else PagetaxError
        raise cls(ffi.string(err.msg).decode(errors="replace"), code=rc,
                  index=int(err.index), sys_errno=err.sys_errno)


_ALL = tuple(ffi.string(lib.pt_design_name(i)).decode() for i in range(lib.pt_design_count()))
_DESIGN_ID = {name: i for i, name in enumerate(_ALL)}
DESIGNS = tuple(d for i, d in enumerate(_ALL) if not lib.pt_design_is_peer(i))
PEERS = tuple(d for i, d in enumerate(_ALL) if lib.pt_design_is_peer(i))


def design_id(name):
    try:
        return _DESIGN_ID[name]
    except KeyError:
        raise PagetaxError(f"unknown design {name!r} (choose from {', '.join(DESIGNS)})") from None


def design_entry_bytes(name):
    return int(lib.pt_design_entry_bytes(design_id(name)))


def cpu_features():
    """What cpuid says about the persistence instructions."""
    out = ffi.new("struct pt_cpu *")
    lib.pt_cpu_features(out)
    return {"clflush": bool(out.clflush), "clflushopt": bool(out.clflushopt),
            "clwb": bool(out.clwb), "sse2": bool(out.sse2)}


_PERSIST_CODE = {"none": lib.PT_PERSIST_NONE, "clwb": lib.PT_PERSIST_CLWB,
                 "clflushopt": lib.PT_PERSIST_CLFLUSHOPT, "clflush": lib.PT_PERSIST_CLFLUSH,
                 "nt": lib.PT_PERSIST_NT, "auto-clwb": lib.PT_PERSIST_AUTO_CLWB,
                 "auto-clflushopt": lib.PT_PERSIST_AUTO_CLFLUSHOPT,
                 "auto-clflush": lib.PT_PERSIST_AUTO_CLFLUSH, "fence": lib.PT_PERSIST_FENCE}
_NEEDS = {"clwb": ("clwb", "CLWB"), "clflushopt": ("clflushopt", "CLFLUSHOPT"),
          "clflush": ("clflush", "CLFLUSH"), "nt": ("sse2", "MOVNTDQ (SSE2)")}


def resolve_persist(mode, caches_persistent=False, cpu=None):
    """The concrete mode for a --persist choice.  `auto` follows libpmem:
    CLWB, else CLFLUSHOPT, else CLFLUSH, non-temporal stores from 256 bytes,
    and nothing to flush (a fence only) where the caches are persistent."""
    cpu = cpu or cpu_features()
    if mode not in PERSIST_MODES:
        raise PagetaxError(f"unknown persistence mode {mode!r} (choose from {', '.join(PERSIST_MODES)})")
    if mode == "auto":
        if caches_persistent:
            return "fence"
        for insn in ("clwb", "clflushopt", "clflush"):
            if cpu[insn]:
                return f"auto-{insn}"
        raise PagetaxError("this CPU has none of CLWB, CLFLUSHOPT or CLFLUSH")
    if mode in _NEEDS and not cpu[_NEEDS[mode][0]]:
        raise PagetaxError(f"--persist {mode}: this CPU has no {_NEEDS[mode][1]} (cpuid); "
                           "try --persist auto")
    return mode


def persist_code(resolved, each=False):
    return _PERSIST_CODE[resolved] | (lib.PT_PERSIST_EACH if each and resolved != "none" else 0)


def design_layout(name, size):
    """(data offset, data bytes) a design would use on a backing of `size`."""
    off = ffi.new("uint64_t *")
    nbytes = ffi.new("uint64_t *")
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


def design_metadata(name, capacity):
    """(DRAM bytes, device bytes) a design keeps for `capacity` bytes."""
    out = ffi.new("struct pt_metadata *")
    lib.pt_design_metadata(design_id(name), capacity, out)
    return int(out.dram_bytes), int(out.device_bytes)


class Backing:
    """A memory-mapped file that the designs copy to and from.

    Files pagetax creates are unlinked as soon as they are open, so no exit
    path (Ctrl-C, SIGTERM, SIGKILL, a crash) can leave one behind; the memory
    returns when the mapping and descriptor go.  A user's file that already
    exists is mapped read-only unless ``overwrite`` is given.
    """

    def __init__(self, fd, size, *, writable, reserve, kind, path, created, map_flags=0,
                 align=0, notes=None):
        self._ptr = ffi.NULL
        self.fd = fd
        self.kind = kind
        self.path = path
        self.created = created
        self.writable = writable
        self.notes = dict(notes or {})   # how the backing was arranged, for the results
        err = ffi.new("struct pt_error *")
        out = ffi.new("pt_backing **")
        flags = map_flags | (lib.PT_MAP_RESERVE if reserve else 0)
        rc = lib.pt_backing_map(fd, size, int(writable), flags, align, out, err)
        if rc != lib.PT_OK:
            os.close(fd)
            self.fd = -1
            msg = ffi.string(err.msg).decode(errors="replace")
            raise BackingError(f"{path}: {msg}", code=rc, sys_errno=err.sys_errno)
        self._ptr = out[0]
        self.size = size
        self.map_sync = bool(lib.pt_backing_map_sync(self._ptr))
        self.base = int(ffi.cast("uintptr_t", lib.pt_backing_base(self._ptr)))

    # -- constructors ----------------------------------------------------
    @classmethod
    def scratch(cls, size, directory="/dev/shm", map_flags=0):
        """A new tmpfs file: on /dev/shm, or a memfd where that is missing."""
        if directory and os.path.isdir(directory) and os.access(directory, os.W_OK) \
                and mount_of(directory)[1] == "tmpfs":
            path = os.path.join(directory, f"{SCRATCH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.unlink(path)
            return cls(fd, size, writable=True, reserve=True, kind="tmpfs",
                       path=path, created=True, map_flags=map_flags)
        fd = os.memfd_create(f"{SCRATCH_PREFIX}{os.getpid()}", os.MFD_CLOEXEC)
        return cls(fd, size, writable=True, reserve=True, kind="memfd", path="memfd", created=True,
                   map_flags=map_flags)

    @classmethod
    def from_path(cls, path, size=None, *, overwrite=False, kind="file", map_flags=0, notes=None):
        """A user's path.  A new file is created (and unlinked); an existing
        one is only read, unless overwrite=True lets pagetax size and write it."""
        path = os.fspath(path)
        kw = dict(kind=kind, path=path, map_flags=map_flags, notes=notes)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise BackingError(f"{path}: parent directory {parent} does not exist") from None
            if size is None:
                raise BackingError(f"{path}: does not exist, and no size was given to create it")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise BackingError(f"{path}: cannot create: {e.strerror}") from None
            os.unlink(path)
            return cls(fd, size, writable=True, reserve=True, created=True, **kw)
        except OSError as e:
            raise BackingError(f"{path}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise BackingError(f"{path}: is a directory; give a file path (pagetax creates "
                               "and removes the file when it does not exist)")
        if not stat.S_ISREG(st.st_mode):
            raise BackingError(f"{path}: is not a regular file")
        if size is None:
            size = st.st_size - st.st_size % 4096
        if overwrite:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                raise BackingError(f"{path}: cannot open for writing: {e.strerror}") from None
            return cls(fd, size, writable=True, reserve=True, created=False, **kw)
        if st.st_size < size or size == 0:
            raise BackingError(f"{path}: holds {st.st_size} bytes, fewer than the {size} "
                               "needed; pagetax does not grow an existing file without --overwrite")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise BackingError(f"{path}: cannot open: {e.strerror}") from None
        return cls(fd, size, writable=False, reserve=False, created=False, **kw)

    # -- use ---------------------------------------------------------------
    def view(self):
        """The mapping as a numpy uint8 array (read-only unless writable)."""
        arr = np.frombuffer(ffi.buffer(ffi.cast("uint8_t *", self.base), self.size), np.uint8)
        if not self.writable:
            arr = arr.view()
            arr.flags.writeable = False
        return arr

    def attach(self, design, data_off=0, data_bytes=0):
        """A design's descriptors for this backing; the data area is
        [data_off, data_off + data_bytes), or the design's own by default."""
        return Attachment(self, design, data_off, data_bytes)

    def close(self):
        if self._ptr != ffi.NULL:
            lib.pt_backing_unmap(self._ptr)
            self._ptr = ffi.NULL
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Measurement:
    """What one run saw: per-repetition phase times and counts.

    With one thread, a repetition's time is the sum of its phases.  With
    several, ``total_ns`` is the wall time of each repetition (first start to
    last end, so GB/s is aggregate), and ``phases`` is the mean thread's."""

    def __init__(self, thread_phases, wall_ns, ios, entries, vector_bytes, call_ns, wall_call_ns,
                 thread_segments, thread_bytes, cpus=None):
        self.thread_phases = thread_phases       # (threads, reps, 3) ns: build, copy, release
        self.threads = thread_phases.shape[0]
        self.thread_total_ns = thread_phases.sum(axis=2)   # (threads, reps)
        if self.threads == 1:
            self.phases = thread_phases[0]
            self.total_ns = self.phases.sum(axis=1)
        else:
            self.phases = thread_phases.mean(axis=0)
            self.total_ns = wall_ns
        self.rep_wall_ns = wall_ns             # first start to last end, every repetition
        self.ios = ios                         # per repetition, all threads
        self.entries = entries
        self.vector_bytes = vector_bytes
        self.call_ns = call_ns                 # the C calls, whole
        self.wall_ns = wall_call_ns            # the same calls, seen from Python
        self.thread_segments = thread_segments
        self.thread_bytes = thread_bytes
        self.segments = sum(thread_segments)
        self.bytes = sum(thread_bytes)
        self.cpus = cpus

    def thread_gbps(self):
        """Each thread's own median throughput: its bytes / its phase time."""
        return [b / float(np.median(t)) for b, t in zip(self.thread_bytes, self.thread_total_ns)]

    def ns_per_seg(self):
        """(median, best) time one thread spends per segment: the mean
        thread's phase time over one thread's segments."""
        per = self.thread_total_ns.mean(axis=0) * self.threads / self.segments
        return float(np.median(per)), float(per.min())


class PreparedRun:
    """One design, op and workload, checked once and ready to call.

    Each call is one pt_run_threads call, one thread per extent array; the
    phase times land in preallocated arrays, so the Python between two timed
    repetitions is a few statements (after a 64 MiB copy every cache line
    Python touches is a miss)."""

    def __init__(self, att, op, exts, bufs, reps, warmup, cache, evict, segs_per_io, calls,
                 persist=0, cpus=None):
        if op not in _OP_CODE:
            raise PagetaxError(f"unknown op {op!r} (choose from {', '.join(OPS)})")
        if cache not in _CACHE_CODE:
            raise PagetaxError(f"unknown cache mode {cache!r} (choose from {', '.join(CACHE_MODES)})")
        if reps < 1:
            raise PagetaxError(f"repetitions must be at least 1 (got {reps})")
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
        if cache == "cold":
            if evict is None:
                raise PagetaxError("a cold cache needs an eviction buffer (pagetax.eviction_buffer())")
            _ext.check_buffer(evict, writable=True)
        self._keep = (att, exts, bufs, evict)  # the C side points into these
        self._cfg = ffi.new("struct pt_run_config *", {
            "op": _OP_CODE[op], "cache": _CACHE_CODE[cache], "reps": reps,
            "warmup": warmup, "segs_per_io": segs_per_io,
            "evict_buf": ffi.from_buffer("uint8_t[]", evict, require_writable=True)
            if evict is not None else ffi.NULL,
            "evict_bytes": evict.nbytes if evict is not None else 0,
            "persist": persist})
        self.reps = reps
        self.times = np.zeros((n, reps * calls, 3), np.uint64)
        self.wall = np.zeros(reps * calls, np.uint64)
        self._c_wall = ffi.from_buffer("uint64_t[]", self.wall, require_writable=True)
        self._threads = ffi.new("struct pt_thread[]", n)
        self._c_times = []
        self._c_views = []  # a struct field does not keep its cdata alive; this list does
        for i, (ext, buf) in enumerate(zip(exts, bufs)):
            t = self._threads[i]
            views = (ffi.from_buffer("struct pt_extent[]", ext),
                     ffi.from_buffer("uint8_t[]", buf, require_writable=(op == "read")))
            self._c_views.append(views)
            t.ext, t.buf = views
            t.n = ext.shape[0]
            t.buf_bytes = buf.nbytes
            t.cpu = cpus[i]
            self._c_times.append(ffi.from_buffer("struct pt_rep_times[]", self.times[i],
                                                 require_writable=True))
        self._args = (att._ptr, self._cfg, self._threads, n)
        self._err = ffi.new("struct pt_error *")
        self.cpus = None if all(c < 0 for c in cpus) else cpus
        self.calls = 0
        self.call_ns = 0
        self.wall_ns = 0

    def __call__(self):
        if self.calls * self.reps >= self.wall.shape[0]:
            raise PagetaxError("this PreparedRun has made all its calls")
        at = self.calls * self.reps
        for i, c_times in enumerate(self._c_times):
            self._threads[i].times = c_times + at
        t0 = time.perf_counter_ns()
        rc = lib.pt_run_threads(*self._args, self._c_wall + at, self._err)
        self.wall_ns += time.perf_counter_ns() - t0
        _raise(rc, self._err)
        self.calls += 1
        self.call_ns += self._threads[0].stats.call_ns

    def measurement(self):
        done = self.calls * self.reps
        stats = [self._threads[i].stats for i in range(self._args[3])]
        m = Measurement(self.times[:, :done], self.wall[:done],
                        sum(int(s.ios) for s in stats), sum(int(s.entries) for s in stats),
                        sum(int(s.vector_bytes) for s in stats), self.call_ns, self.wall_ns,
                        [int(self._threads[i].n) for i in range(len(stats))],
                        [int(s.bytes) for s in stats], self.cpus)
        m.lines_flushed = sum(int(s.lines_flushed) for s in stats)  # per repetition
        m.fences = sum(int(s.fences) for s in stats)
        return m


def _check_table_fits(design, data_bytes):
    """A DRAM table larger than the memory available would be allocated
    (overcommit) and then OOM-kill the run as it is touched: refuse it."""
    need = design_metadata(design, data_bytes)[0]
    avail = machine.mem_available()
    if need and avail is not None and need > avail:
        raise PagetaxError(f"{design}: its descriptor table needs {need} bytes of DRAM for "
                           f"{data_bytes} bytes of backing, more than MemAvailable ({avail} bytes)")


class Attachment:
    """A design attached to a backing: its descriptor table, if it has one."""

    def __init__(self, backing, design, data_off=0, data_bytes=0):
        self.backing = backing
        self.design = design
        self._ptr = ffi.NULL
        if backing._ptr == ffi.NULL:
            raise PagetaxError("the backing is closed")
        _check_table_fits(design, data_bytes or design_layout(design, backing.size)[1])
        err = ffi.new("struct pt_error *")
        out = ffi.new("pt_attachment **")
        rc = lib.pt_attach(backing._ptr, design_id(design), data_off, data_bytes, out, err)
        if rc != lib.PT_OK:
            raise PagetaxError(f"{design}: " + ffi.string(err.msg).decode(errors="replace"),
                               code=rc, sys_errno=err.sys_errno)
        self._ptr = out[0]
        self.meta_bytes = int(lib.pt_attachment_meta_bytes(self._ptr))  # allocated for descriptors
        self.rss_delta = int(lib.pt_attachment_rss_delta(self._ptr))    # resident growth at attach
        self.data_offset = int(lib.pt_attachment_data_offset(self._ptr))
        self.data_bytes = int(lib.pt_attachment_data_bytes(self._ptr))

    def entries(self, ext):
        _ext.check_array(ext)
        return int(lib.pt_vector_entries(self._ptr, ffi.from_buffer("struct pt_extent[]", ext),
                                         ext.shape[0]))

    def validate_in_c(self, ext, buf_bytes):
        """Only the C validator (for tests): raises what the core refuses."""
        err = ffi.new("struct pt_error *")
        c_ext = ffi.from_buffer("struct pt_extent[]", ext) if len(ext) else ffi.NULL
        total = ffi.new("uint64_t *")
        _raise(lib.pt_validate(self._ptr, c_ext, len(ext), buf_bytes, total, err), err)
        return int(total[0])

    def prepare(self, op, ext, buf, *, reps=1, warmup=0, cache="warm", evict=None,
                segs_per_io=0, calls=1, persist=0, cpus=None):
        """Check everything once and return a PreparedRun: `calls` C calls of
        `reps` repetitions each, with as little Python as possible between.

        `ext` and `buf` are one extent array and one buffer, or lists of them:
        one thread each, all through this attachment's descriptor table.
        `cpus` pins thread i to cpus[i] (-1: not pinned).

        The cheap checks run here; the bounds checks run in C on every call,
        before any copy (pagetax.extents.check gives friendlier messages).
        A cold cache writes all of `evict` (a uint8 array a few times the
        LLC, see eviction_buffer) before each repetition."""
        exts, bufs = (ext, buf) if isinstance(ext, (list, tuple)) else ([ext], [buf])
        if not isinstance(bufs, (list, tuple)):
            raise PagetaxError("with one extent array per thread, give one buffer per thread")
        return PreparedRun(self, op, list(exts), list(bufs), reps, warmup, cache, evict,
                           segs_per_io, calls, persist, cpus)

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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def eviction_buffer(llc_bytes=None):
    """What a cold cache writes before each repetition: 4x the LLC, so that
    data, descriptors and vector all start out of every cache level."""
    from .machine import llc_bytes as _llc
    return aligned_buffer(4 * (llc_bytes or _llc()))


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

"""Workloads shared by the asv suite (bench_*.py) and the pytest-benchmark
suite (local/): defined once, so both compare the same things.

APPEND ONLY.  asv compares each benchmark's history across commits; change
a size, a seed or a list below and that history compares different things.
Add new entries instead, and when a benchmark's meaning must change, bump
its `version` attribute so asv starts a new history.
"""
import functools

import numpy as np

import pagetax
from pagetax import machine

BACKING_BYTES = 256 << 20   # the mapped file, tmpfs
IO_BYTES = 16 << 20         # copied per repetition
SEED = 1
SEG_SIZES = [64, 4096, 65536]
PATTERNS = ["seq", "rand"]
OPS = ["read", "write"]
DESIGNS = ["vec", "pfn", "page", "folio", "huge", "altmap", "memdesc", "sgl", "memcpy", "kernel"]
SEGS_PER_IO = 256           # segments per I/O: a bio's BIO_MAX_VECS, as pagetax run's default
META_BACKING_BYTES = 1 << 30
META_SEG_SIZES = [4096, 64]
MIB, GIB = 1 << 20, 1 << 30


def skip_unless_available(design):
    """asv: NotImplementedError in setup marks a combination as n/a, which a
    commit from before a design existed needs (a failure would fail asv run)."""
    if design not in pagetax.DESIGNS:
        raise NotImplementedError(f"design {design!r} not in this build")


@functools.lru_cache(maxsize=None)
def backing():
    """One scratch backing per process, every design on one data area."""
    return pagetax.Backing.scratch(BACKING_BYTES)


@functools.lru_cache(maxsize=None)
def data_area():
    return pagetax.designs.common_layout([d for d in DESIGNS if d in pagetax.DESIGNS],
                                         BACKING_BYTES)


@functools.lru_cache(maxsize=None)
def attachment(design):
    return backing().attach(design, *data_area())


@functools.lru_cache(maxsize=None)
def extents(pattern, seg):
    return pagetax.extents.generate(pattern, seg, IO_BYTES, data_area()[1], SEED)


@functools.lru_cache(maxsize=None)
def buffer():
    return pagetax.aligned_buffer(IO_BYTES, fill=0xA5)


@functools.lru_cache(maxsize=None)
def eviction():
    """Only where the CPU has no CLFLUSH: what cold="evict" writes."""
    return pagetax.eviction_buffer(machine.llc_bytes())


def _cold_kw():
    return {"evict": eviction()} if pagetax.timed_run.cold_method() == "evict" else {}


def prepared(design, op, seg, pattern, calls=1, **kw):
    """A PreparedRun of a workload.  By default its calls add no cold start
    of their own: run its make_cold() untimed before each timed call
    (pytest-benchmark's setup), so the harness times the repetition alone;
    `kw` goes to Attachment.prepare (asv's samples: cache="cold")."""
    skip_unless_available(design)
    return attachment(design).prepare(op, extents(pattern, seg), buffer(), calls=calls,
                                      phase_reps=0, segs_per_io=SEGS_PER_IO,
                                      **dict(_cold_kw(), **kw))


# Threads (bench_threads.py): the contention a shared reference count causes.
THREADS = [1, 2]
THREAD_DESIGNS = ["vec", "pfn", "page", "huge", "memcpy"]
THREAD_PATTERNS = ["seq", "hot"]
THREAD_SEG_SIZES = [64, 4096]
HOT_PAGES = 64


@functools.lru_cache(maxsize=None)
def thread_extents(pattern, seg, threads):
    return pagetax.extents.per_thread(pattern, seg, IO_BYTES, data_area()[1], threads, SEED,
                                      hot_bytes=HOT_PAGES * 4096)


@functools.lru_cache(maxsize=None)
def thread_buffers(threads):
    return [pagetax.aligned_buffer(IO_BYTES, fill=0xA5) for _ in range(threads)]


def prepared_threads(design, seg, pattern, threads, calls=1, **kw):
    """Gathers by `threads` threads pinned to this process's CPUs, through
    one attachment (one descriptor table); `kw` as for prepared()."""
    skip_unless_available(design)
    config = run_config()
    cpus = config.thread_cpus(config.RunConfig(threads=threads, pin=[]))  # as --pin
    return attachment(design).prepare("read", thread_extents(pattern, seg, threads),
                                      thread_buffers(threads), calls=calls, cpus=cpus,
                                      phase_reps=0, segs_per_io=SEGS_PER_IO,
                                      **dict(_cold_kw(), **kw))


@functools.lru_cache(maxsize=None)
def reference(op, seg, pattern, reps=1):
    """The drift reference (pagetax/reference.py) over a workload, cold as
    the designs are: a callable whose `reps` repetitions' median advances
    core_seconds()."""
    try:
        from pagetax import reference as ref
    except ImportError:
        raise NotImplementedError("this build has no drift reference") from None
    cold = pagetax.timed_run.cold_method()
    r = ref.Reference(backing(), *data_area(), op, extents(pattern, seg), buffer(),
                      cache="cold", cold=cold, evict=eviction() if cold == "evict" else None)

    def call():
        global _core_seconds
        for _ in range(reps):
            r()
        _core_seconds += float(np.median(r.total_ns[-reps:])) / 1e9
    return call


def run_config():
    """The module holding RunConfig and thread_cpus: pagetax.config, or, in a
    commit from before it that asv may run this suite against, the runner."""
    try:
        from pagetax import config
    except ImportError:
        from pagetax import runner as config
    return config


# The clock asv's and pytest-benchmark's time_ samples read: the seconds the
# C core itself timed, as `pagetax run` times a repetition (two clock reads
# around it; with threads, first start to last end), advanced by each call
# made through timed().  What lies around that in the call (Python, cffi,
# the thread start-up and barriers, the guard) is not in a sample.
_core_seconds = 0.0


def core_seconds():
    """The timer for time_ benchmarks (asv's `timer`, pytest-benchmark's
    `timer`): only ever moves by what the core timed."""
    return _core_seconds


def timed(prepared):
    """A call of `prepared` whose repetitions' median time advances
    core_seconds(): the statement asv and pytest-benchmark time.  With one
    repetition per call, its time; with more (asv's samples), their median,
    as `pagetax run` reports a row."""
    def call():
        global _core_seconds
        done = prepared.calls * prepared.reps
        prepared()
        _core_seconds += float(np.median(prepared.wall[done:done + prepared.reps])) / 1e9
    return call


class Benchmark:
    """The base of every asv benchmark class: how many seconds asv gives one
    before it stops it, and the version of what it measures (a class whose
    meaning changed overrides it, so that asv starts a new history)."""
    timeout = 120
    version = 1


SAMPLE_REPS = 1   # cold repetitions behind one asv sample (their median): one, as asv reads it


@functools.lru_cache(maxsize=None)
def sampled(design, op, seg, pattern):
    """asv's samples of a workload: SAMPLE_REPS cold repetitions a call, each
    made cold by the core itself outside its timing, as `pagetax run`'s are;
    planned once per process (asv calls setup before each sample)."""
    return prepared(design, op, seg, pattern, calls=1 << 10, reps=SAMPLE_REPS, cache="cold")


@functools.lru_cache(maxsize=None)
def sampled_threads(design, seg, pattern, threads):
    return prepared_threads(design, seg, pattern, threads, calls=1 << 10, reps=SAMPLE_REPS,
                            cache="cold")


class CoreTimed(Benchmark):
    """The base of the time_ benchmarks: a sample is one cold repetition
    (SAMPLE_REPS), timed by the C core itself (core_seconds, through
    timed()) and made cold outside that timing, as `pagetax run` times one.
    (The median of 5 a sample made things worse: what differs between two
    commits' processes, where the backing and the tables land in physical
    memory, then stood out against samples with almost no spread, and
    asv's test flagged 28 of 222 benchmarks between identical commits
    instead of 17.)  asv compares
    two commits' samples with a Mann-Whitney test and a factor; each round
    is a process of its own (its own backing and tables in physical memory),
    which `asv continuous --interleave-rounds` alternates between commits.
    Per process: start and first setup (about half a second), warmup_time,
    then 10 samples, or as many as 20 s allow but at least 3.  number = 1,
    so that setup runs before every sample."""
    number = 1
    rounds = 2
    repeat = (3, 10, 20.0)
    warmup_time = 0.1
    timeout = 180
    timer = staticmethod(core_seconds)

"""pytest-benchmark: every design over the same workloads as the asv suite.

    pytest bench/ --benchmark-only                      # measure
    pytest bench/ --benchmark-only --benchmark-json=out.json
    pytest bench/ --benchmark-only --benchmark-autosave # then, later:
    pytest bench/ --benchmark-only --benchmark-compare --benchmark-compare-fail=median:T%
    # T: see README, or bench/tools/same_commit_spread.py on two runs of one commit

Groups are op, pattern and segment size, so each group compares the
designs and the drift reference (pagetax/reference.py), which no change to
pagetax's engine can move.  Each round is one repetition; it is made cold
before it, untimed (pedantic's setup), and its time is the one the C core
took (common.core_seconds), so Python, the call's set-up and the threads'
start-up are not in it.  extra_info carries the C core's own figures.
Under the plain test command (--benchmark-disable) each runs once and its
bytes are checked against numpy, so the suite cannot rot.
"""
import numpy as np
import pytest

import common  # bench/common.py: pyproject.toml puts bench/ on pytest's pythonpath
import pagetax
from pagetax import rows
from pagetax.sizes import format_size

ROUNDS = 31
CORE_TIMER = pytest.mark.benchmark(timer=common.core_seconds)


def _check_bytes(design, ext, buf):
    """A sample of the segments moved must be where numpy says: a contiguous
    design's are packed from the start of the data area."""
    view = common.backing().view()
    off0 = common.data_area()[0]
    contiguous = "contiguous" in pagetax.designs.design_flags(design)
    rng = np.random.default_rng(0)
    lens = ext["len"].astype(np.int64)
    pos = np.concatenate(([0], np.cumsum(lens)[:-1]))
    for i in rng.choice(len(ext), size=min(64, len(ext)), replace=False):
        o, n, p = int(ext["off"][i]), int(lens[i]), int(pos[i])
        src = view[off0 + p:off0 + p + n] if contiguous else view[off0 + o:off0 + o + n]
        np.testing.assert_array_equal(buf[p:p + n], src)


@pytest.mark.parametrize("seg", common.SEG_SIZES, ids=format_size)
@pytest.mark.parametrize("pattern", common.PATTERNS)
@pytest.mark.parametrize("op", common.OPS)
@pytest.mark.parametrize("design", [d for d in common.DESIGNS if d in pagetax.DESIGNS])
@CORE_TIMER
def test_copy(benchmark, design, op, pattern, seg):
    benchmark.group = f"{op} {pattern} {format_size(seg)}"
    run = common.prepared(design, op, seg, pattern, calls=ROUNDS + 2)
    benchmark.pedantic(common.timed(run), setup=run.make_cold, rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    m = run.measurement()
    assert m.bytes == common.IO_BYTES and m.segments == common.IO_BYTES // seg
    att = common.attachment(design)
    median = float(np.median(m.total_ns))
    benchmark.extra_info.update(
        gbps=m.bytes / median,             # bytes counted once, GB = 1e9, C-timed
        ns_per_seg=median / m.segments,
        # the split from instrumented repetitions of their own, after the timed rounds
        phase_ns=dict(zip(("build", "copy", "release"), np.median(
            att.run(op, common.extents(pattern, seg), common.buffer(), reps=1, phase_reps=3,
                    cache="cold", segs_per_io=common.SEGS_PER_IO,
                    **common._cold_kw()).phases, axis=0).tolist())),
        metadata_allocated_bytes=att.meta_bytes,
        metadata_percent=rows.metadata_record(att, common.backing())["percent"],
        per_io_bytes=m.vector_bytes // max(m.ios, 1),
    )
    if op == "read":
        _check_bytes(design, common.extents(pattern, seg), common.buffer())


@pytest.mark.parametrize("threads", common.THREADS)
@pytest.mark.parametrize("seg", common.THREAD_SEG_SIZES, ids=format_size)
@pytest.mark.parametrize("pattern", common.THREAD_PATTERNS)
@pytest.mark.parametrize("design", [d for d in common.THREAD_DESIGNS if d in pagetax.DESIGNS])
@CORE_TIMER
def test_threads(benchmark, design, pattern, seg, threads):
    """Gathers by 1 and 2 pinned threads through one descriptor table; the
    group compares designs and thread counts at one pattern and size.  A
    round is the core's wall time, first thread's start to last one's end."""
    benchmark.group = f"threads read {pattern} {format_size(seg)}"
    run = common.prepared_threads(design, seg, pattern, threads, calls=ROUNDS + 2)
    benchmark.pedantic(common.timed(run), setup=run.make_cold, rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    m = run.measurement()
    assert m.threads == threads and m.bytes == threads * common.IO_BYTES
    median = float(np.median(m.total_ns))
    benchmark.extra_info.update(
        threads=threads, cpus=m.cpus,
        gbps=m.bytes / median,             # all threads' bytes over the wall time
        thread_gbps=m.thread_gbps(),
        ns_per_seg=m.ns_per_seg()[0],      # one thread's time per segment
    )
    if "contiguous" not in pagetax.designs.design_flags(design):  # those copy their own parts
        view = common.backing().view()[common.data_area()[0]:]
        for ext, buf in zip(common.thread_extents(pattern, seg, threads),
                            common.thread_buffers(threads)):
            i = np.random.default_rng(0).choice(len(ext), size=64, replace=False)
            for o, p in zip(ext["off"][i].tolist(), (i * seg).tolist()):
                np.testing.assert_array_equal(buf[p:p + seg], view[o:o + seg])


@CORE_TIMER
@pytest.mark.parametrize("seg", common.SEG_SIZES, ids=format_size)
@pytest.mark.parametrize("pattern", common.PATTERNS)
@pytest.mark.parametrize("op", common.OPS)
def test_reference(benchmark, op, pattern, seg):
    """The drift reference in each group: when it moves with the designs
    between two runs, the machine moved."""
    benchmark.group = f"{op} {pattern} {format_size(seg)}"
    benchmark.pedantic(common.reference(op, seg, pattern), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    if op == "read":
        _check_bytes("vec", common.extents(pattern, seg), common.buffer())

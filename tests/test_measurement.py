"""What the numbers mean: totals from two clock reads around a repetition,
phases from instrumented repetitions less their marks, the cold start and
finish and the probe, the like-for-like roofline and the descriptor
table's page size."""
import numpy as np
import pytest

import pagetax
from pagetax import config, extents, machine, rows
from pagetax.timed_run import Measurement
from helpers import disassembly


def _measurement(raw, ios, clock, wall, threads=1):
    raw = np.asarray(raw, np.uint64).reshape(threads, -1, 3)
    wall = np.asarray(wall, np.uint64)
    return Measurement(wall_ns=wall, thread_total_ns=np.tile(wall, (threads, 1)),
                       thread_phases_raw=raw, clock_ns=clock, thread_ios=[ios] * threads,
                       entries=0, vector_bytes=0, call_ns=1, wall_call_ns=1,
                       thread_segments=[100] * threads, thread_bytes=[6400] * threads)


def test_phases_lose_one_clock_read_per_phase_per_io():
    m = _measurement([[1000, 5000, 400]], ios=10, clock=30.0, wall=[5400])
    np.testing.assert_allclose(m.phases, [[1000 - 300, 5000 - 300, 400 - 300]])
    assert list(m.total_ns) == [5400]  # the wall clock, untouched


def test_totals_and_ns_per_seg_come_from_the_wall_clock():
    m = _measurement([[1, 1, 1]] * 2, ios=1, clock=0.0, wall=[2000, 4000, 3000], threads=2)
    assert m.ns_per_seg() == (3000 * 2 / 200, 2000 * 2 / 200)  # wall over one thread's segments


def test_a_row_says_when_its_phases_do_not_add_up():
    cfg = config.RunConfig()
    ok = rows.summarize(_measurement([[100, 800, 100]], 1, 0.0, [1000, 990, 1010]),
                        "vec", "read", "seq", 64, cfg, {}, {})
    assert ok["phases_agree"] and ok["phases_note"] == ""
    off = rows.summarize(_measurement([[100, 1800, 100]], 1, 0.0, [1000, 990, 1010]),
                         "vec", "read", "seq", 64, cfg, {}, {})
    assert not off["phases_agree"]
    assert "differs from the timed median (1000 ns) by more than the spread (20 ns)" in \
        off["phases_note"]


def test_the_wall_time_spans_every_thread(backing):
    """A repetition's total runs from the first thread's start to the last
    one's end: with thread 1 given 64 times thread 0's segments, the total
    is thread 1's time, not thread 0's."""
    small = extents.generate("rand", 64, 16 << 10, 4 << 20, seed=2)
    large = extents.generate("rand", 64, 1 << 20, 4 << 20, seed=3)
    bufs = [pagetax.aligned_buffer(16 << 10), pagetax.aligned_buffer(1 << 20)]
    with backing.attach("page") as att:
        m = att.run("read", [small, large], bufs, reps=3, phase_reps=2, segs_per_io=16)
    assert m.total_ns.shape == (3,) and m.thread_phases_raw.shape == (2, 2, 3)
    assert (m.total_ns >= m.thread_total_ns.max(axis=0)).all()
    assert (m.thread_total_ns[1] > m.thread_total_ns[0]).all()
    assert (m.total_ns > m.thread_total_ns[0]).all()
    assert m.ios == len(small) // 16 + len(large) // 16 and m.clock_ns > 0


def test_a_probe_reports_a_chain_through_64_lines(backing):
    ext = extents.generate("rand", 64, 1 << 20, 4 << 20, seed=2)
    buf = pagetax.aligned_buffer(1 << 20)
    with backing.attach("vec") as att:
        p = att.prepare("read", ext, buf, cache="cold", calls=2, probe=True)
        p()
        p()
        m = p.measurement()
        assert m.probe["lines"] == 64 and m.probe["chained"]
        assert m.cold == pagetax.timed_run.cold_method()
        assert att.run("read", ext, buf).probe is None


def _lines(addr, nbytes):
    return set(range(addr & ~63, addr + nbytes, 64))


def _address(cdata):
    return int(pagetax.core.ffi.cast("uintptr_t", cdata))


class FlushLog:
    """Every line the core's cold starts and finishes flush."""

    def __init__(self, cap=1 << 22):
        ffi = pagetax.core.ffi
        self.log = np.zeros(cap, np.uint64)
        self.count = np.zeros(1, np.uint64)
        self._c = (ffi.from_buffer("uint64_t[]", self.log),
                   ffi.from_buffer("uint64_t[]", self.count))

    def __enter__(self):
        pagetax.core.lib.pt_test_set_flush_log(self._c[0], self.log.size, self._c[1])
        return self

    def __exit__(self, *exc):
        pagetax.core.lib.pt_test_set_flush_log(pagetax.core.ffi.NULL, 0, pagetax.core.ffi.NULL)

    def counts(self):
        """{line: times flushed}."""
        n = int(self.count[0])
        assert n <= self.log.size, "the log overflowed"
        lines, times = np.unique(self.log[:n], return_counts=True)
        return dict(zip(lines.tolist(), times.tolist()))


def _count_lines(att, ext):
    """The lines holding the reference counts a build of ext takes (struct
    page's _refcount, at byte 52 of each 64-byte descriptor)."""
    table = _address(pagetax.core.lib.pt_attachment_table(att._ptr))
    pages = {p for o, n in zip(ext["off"].tolist(), ext["len"].tolist())
             for p in range(o >> 12, ((o + n - 1) >> 12) + 1)}
    return {(table + p * 64 + 52) & ~63 for p in pages}


@pytest.mark.skipif(pagetax.timed_run.cold_method() == "evict", reason="needs CLFLUSH")
@pytest.mark.parametrize("op", ["read", "write"])
def test_a_cold_repetition_starts_from_nothing_and_leaves_nothing_dirty(backing, op):
    """Before it: every line it will read or write is flushed (data, buffer,
    vector, counts, and the core's own copy of the extents); after it:
    every line it wrote is flushed again (the buffer of a gather or the
    data of a scatter, the vector, the counts), so the next repetition, of
    whichever design, inherits none of its dirty lines."""
    ext = extents.generate("rand", 256, 256 << 10, backing.size, seed=4)
    buf = pagetax.aligned_buffer(256 << 10)
    data = _address(pagetax.core.ffi.from_buffer(backing.view()))
    with backing.attach("page") as att:
        p = att.prepare(op, ext, buf, cache="cold", reps=1, phase_reps=0, segs_per_io=64)
        with FlushLog() as log:
            p()
        flushed = log.counts()
        copy = _address(pagetax.core.lib.pt_plan_extents(p._plan, 0))
        vec = _address(pagetax.core.lib.pt_attachment_vector(att._ptr))
        data_lines = set().union(*(_lines(data + o, n) for o, n in
                                   zip(ext["off"].tolist(), ext["len"].tolist())))
        buf_lines = _lines(_address(pagetax.core.ffi.from_buffer(buf)), buf.nbytes)
        written = (buf_lines if op == "read" else data_lines) | _lines(vec, 64 * 16) | \
            _count_lines(att, ext)
        read_only = (data_lines if op == "read" else buf_lines) | _lines(copy, len(ext) * 16)
        assert all(flushed.get(line, 0) >= 2 for line in written), "a written line left dirty"
        assert all(flushed.get(line, 0) >= 1 for line in read_only), "a line left warm"
        assert (att.refcounts() == 1).all()


def test_a_harnesss_cold_start_writes_back_the_last_runs_lines(backing):
    """pytest-benchmark times one design after another in one process:
    make_cold() first writes back what the last PreparedRun's call wrote,
    whichever design it was."""
    ext = extents.generate("rand", 256, 256 << 10, backing.size, seed=4)
    buf = pagetax.aligned_buffer(256 << 10)
    with backing.attach("page") as page, backing.attach("vec") as vec:
        first = page.prepare("read", ext, buf, calls=2, phase_reps=0)
        second = vec.prepare("read", ext, buf, calls=2, phase_reps=0)
        first()
        with FlushLog() as log:
            second.make_cold()
        assert _count_lines(page, ext) <= set(log.counts()), "page's counts were left dirty"


def test_phase_marks_fence_and_timed_repetitions_read_no_clock_inside():
    """The instrumented loop marks each phase with a fence before its clock
    read (a store that misses is then charged to the phase that made it,
    not to the next locked instruction); the timed loop has neither."""
    body = disassembly()
    phased, timed = body["run_rep_phased"], body["run_rep_timed"]
    assert sum("mfence" in x for x in phased) >= 4
    assert sum("clock_gettime" in x for x in phased) >= 4
    assert not any("mfence" in x or "clock_gettime" in x for x in timed)


@pytest.mark.parametrize("method", ["clflushopt", "clflush", "evict"])
def test_every_cold_method_moves_the_right_bytes(backing, method):
    if method != "evict" and not pagetax.persist.cpu_features()[method]:
        pytest.skip(f"this CPU has no {method.upper()}")
    ext = extents.generate("rand", 256, 1 << 20, 4 << 20, seed=5)
    view = backing.view()
    buf = pagetax.aligned_buffer(1 << 20)
    with backing.attach("page") as att:
        att.run("read", ext, buf, reps=2, cache="cold", cold=method,
                evict=pagetax.aligned_buffer(1 << 20))
        assert (att.refcounts() == 1).all()
    want = np.concatenate([view[o:o + n] for o, n in zip(ext["off"].tolist(), ext["len"].tolist())])
    np.testing.assert_array_equal(buf, want)


def test_the_roofline_copies_segment_by_segment(backing):
    """memcpy: one entry per segment, like vec; memcpy-glibc: one per I/O."""
    ext = extents.generate("rand", 4096, 1 << 20, 4 << 20, seed=2)
    with backing.attach("memcpy") as a, backing.attach("memcpy-glibc") as g:
        assert a.entries(ext) == len(ext) and g.entries(ext) == 1
        assert "roofline" in a.flags and "roofline" not in g.flags


def test_ratios_divide_by_the_roofline_row_not_by_a_name():
    cell = [dict(op="read", pattern="seq", seg_bytes=64, design="vec", gbps=2.0),
            dict(op="read", pattern="seq", seg_bytes=64, design="memcpy", gbps=4.0, roofline=True),
            dict(op="read", pattern="seq", seg_bytes=64, design="memcpy-glibc", gbps=8.0)]
    rows.add_ratios(cell)
    assert [r["ratio_memcpy"] for r in cell] == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("pages", ["4K", "2M"])
def test_descriptor_tables_are_mapped_as_asked(pages):
    if pages == "2M" and machine.thp_settings()["enabled"] in (None, "never"):
        pytest.skip("transparent huge pages are off here")
    with pagetax.Backing.scratch(512 << 20) as b, b.attach("page", table_pages=pages) as att:
        t = att.table_mapping()
        assert t["asked"] == pages and t["mapped_bytes"] >= 8 << 20
        if pages == "4K":
            assert t["page_size"] == "4K" and t["huge_bytes"] == 0
        else:  # THP may fall short under memory pressure; most of the table must be huge
            assert t["huge_bytes"] >= 4 << 20, t
    with pagetax.Backing.scratch(8 << 20) as b, b.attach("altmap") as att:
        assert att.table_mapping() is None  # on the backing, not in DRAM

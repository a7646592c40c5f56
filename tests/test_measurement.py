"""What the numbers mean: totals from two clock reads around a repetition,
phases from instrumented repetitions less their clock reads, the cold
probe, the like-for-like roofline and the descriptor table's page size."""
import numpy as np
import pytest

import pagetax
from pagetax import config, extents, machine, rows
from pagetax.core import Measurement


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


def test_one_thread_total_is_its_own_wall_time(backing):
    ext = extents.generate("rand", 64, 1 << 20, 4 << 20, seed=2)
    buf = pagetax.aligned_buffer(1 << 20)
    with backing.attach("page") as att:
        m = att.run("read", ext, buf, reps=3, phase_reps=2, segs_per_io=16)
    assert m.total_ns.shape == (3,) and m.thread_phases_raw.shape == (1, 2, 3)
    np.testing.assert_array_equal(m.total_ns, m.thread_total_ns[0])
    assert m.ios == len(ext) // 16 and m.clock_ns > 0


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_the_probe_reports_cold_and_warm_loads(backing, cache):
    ext = extents.generate("rand", 64, 1 << 20, 4 << 20, seed=2)
    buf = pagetax.aligned_buffer(1 << 20)
    with backing.attach("vec") as att:
        p = att.prepare("read", ext, buf, cache=cache, calls=2, probe=True)
        p()
        p()
        m = p.measurement()
        assert set(m.probe) == {"start_ns", "warm_ns", "lines", "clock_ns"}
        assert m.probe["lines"] == 64
        assert m.cold == (pagetax.core.cold_method() if cache == "cold" else None)
        assert att.run("read", ext, buf).probe is None


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

"""Per-I/O latency: the C histogram's buckets, percentiles against numpy's,
and what a run records (every I/O of every instrumented repetition, and
nothing else)."""
import json

import numpy as np
import pytest

import pagetax
from pagetax import latency
from pagetax._core import lib
from helpers import SMALL, cli, design_rows

BUCKETS = lib.PT_LAT_BUCKETS
HALF = 1 << (lib.PT_LAT_SUB_BITS - 1)


def _bounds(i):
    return int(lib.pt_latency_bucket_low(i)), int(lib.pt_latency_bucket_high(i))


def test_buckets_tile_every_uint64_without_gaps_or_overlaps():
    low, high = _bounds(0)
    assert low == 0
    for i in range(1, BUCKETS):
        lo, hi = _bounds(i)
        assert lo == high + 1, f"bucket {i} starts at {lo}, bucket {i - 1} ends at {high}"
        assert lo <= hi
        high = hi
    assert high == 2**64 - 1


def test_a_bucket_is_never_wider_than_its_stated_resolution():
    for i in range(BUCKETS):
        lo, hi = _bounds(i)
        width = hi - lo + 1
        assert width == 1 or width <= lo / HALF, (i, lo, hi)
    assert latency.RESOLUTION_PCT == pytest.approx(100 / HALF)


@pytest.mark.parametrize("value", [0, 1, 2 * HALF - 1, 2 * HALF, 2 * HALF + 1, 1000, 4095, 4096,
                                   10**6, 10**9 + 7, 2**40 - 1, 2**63, 2**64 - 1])
def test_a_value_lands_in_the_bucket_that_holds_it(value):
    i = lib.pt_latency_bucket(value)
    lo, hi = _bounds(i)
    assert lo <= value <= hi


def test_random_values_land_in_the_bucket_that_holds_them():
    rng = np.random.default_rng(7)
    for v in rng.integers(0, 2**63, 2000, dtype=np.uint64).tolist() + \
            rng.integers(0, 10**6, 2000).tolist():
        lo, hi = _bounds(lib.pt_latency_bucket(v))
        assert lo <= v <= hi


def _recorded(values):
    h = latency.allocate(1)
    for v in values:
        lib.pt_latency_record(h, int(v))
    return latency.Histogram.merged(h, 1)


def test_percentiles_match_numpy_within_one_bucket():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(6, 1.2, 20000), [3e7]]).astype(np.int64)
    hist = _recorded(values)
    assert hist.ios == values.size
    assert (hist.min_ns, hist.max_ns, hist.sum_ns) == (values.min(), values.max(), values.sum())
    for p in (1, 50, 90, 99, 99.9, 100):
        exact = int(np.percentile(values, p, method="inverted_cdf"))
        got = hist.value_at(p)
        assert lib.pt_latency_bucket(got) == lib.pt_latency_bucket(exact), (p, exact, got)
        assert exact <= got <= exact * (1 + 1 / HALF), (p, exact, got)
    assert hist.value_at(100) == values.max()


def test_the_summary_subtracts_three_clock_reads_and_its_cdf_ends_at_one():
    values = [100, 100, 200, 300, 5000]
    s = _recorded(values).summary(clock_ns=20.0)
    assert s["clock_ns_subtracted"] == 60.0
    assert (s["min_ns"], s["max_ns"]) == (40.0, 4940.0)
    assert s["mean_ns"] == pytest.approx(np.mean(values) - 60)
    assert s["p50_ns"] == 140.0 and s["p90_ns"] == 4940.0 and s["p999_ns"] == 4940.0
    xs, fractions = zip(*s["cdf"])
    assert list(xs) == sorted(xs) and fractions[-1] == 1.0
    assert fractions[0] == pytest.approx(2 / 5)
    assert _recorded([]).summary(20.0) is None


@pytest.mark.parametrize("op", ["read", "write"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_run_records_every_io_of_its_instrumented_repetitions(backing, op, threads):
    """Each I/O's latency is its build + copy + release as read, so the
    latencies sum exactly to the instrumented repetitions' phase times."""
    att = backing.attach("page")
    seg, per_io, n = 64, 3, 1000
    exts = [pagetax.extents.generate("rand", seg, n * seg, att.data_bytes, 11 + i)
            for i in range(threads)]
    bufs = [pagetax.aligned_buffer(n * seg) for _ in range(threads)]
    p = att.prepare(op, exts, bufs, reps=2, calls=2, phase_reps=3, segs_per_io=per_io)
    p()
    p()
    m = p.measurement()
    ios_per_rep = -(-n // per_io)
    assert m.latency.ios == 3 * ios_per_rep * threads
    assert m.latency.counts.sum() == m.latency.ios
    assert m.latency.sum_ns == int(m.thread_phases_raw.astype(np.uint64).sum())
    s = m.latency.summary(m.clock_ns)
    assert s["p50_ns"] <= s["p90_ns"] <= s["p99_ns"] <= s["p999_ns"] <= s["max_ns"]
    assert s["clock_ns_subtracted"] == 3 * m.clock_ns


def test_timed_repetitions_and_whole_repetition_ios_record_no_latency(backing):
    att = backing.attach("vec")
    ext = pagetax.extents.generate("seq", 4096, 1 << 20, att.data_bytes, 1)
    buf = pagetax.aligned_buffer(1 << 20)
    untimed = att.prepare("read", ext, buf, reps=3, phase_reps=0, segs_per_io=4)
    untimed()
    assert untimed.measurement().latency.ios == 0
    assert untimed.measurement().latency.summary(30.0) is None
    whole = att.prepare("read", ext, buf, reps=3, segs_per_io=0)
    whole()
    assert whole.measurement().latency is None


def test_rows_table_and_json_carry_percentiles_only_with_segs_per_io(tmp_path):
    keys = {"p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"}
    for per_io, expect in ((0, False), (2, True)):
        path = tmp_path / f"run{per_io}.json"
        r = cli("run", *SMALL, "--designs", "vec,page", "--segs-per-io", str(per_io),
                "--json", str(path), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert ("p99/io" in r.stdout) == expect
        rows = design_rows(json.loads(path.read_text()))
        for row in rows:
            if expect:
                assert keys <= set(row["latency"]), row["latency"]
                assert row["latency"]["ios"] >= row["ios"]
            else:
                assert row["latency"] is None

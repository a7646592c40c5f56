"""`pagetax compare`: ratios, bootstrap intervals over the repetitions,
significance beyond a minimum change, the gate."""
import ast
import copy
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from pagetax import compare, stats
from helpers import cli

IO = 1 << 30


def _row(design, reps_gbps, seg=4096, old=False):
    """A result row from per-repetition GB/s: new rows carry rep_total_ns,
    old ones only reps_ns ([build, copy, release], summing to the total)."""
    ns = [IO / g for g in reps_gbps]
    row = {"design": design, "op": "read", "pattern": "rand", "seg_bytes": seg, "io_bytes": IO,
           "gbps": float(np.median(reps_gbps)), "gbps_best": max(reps_gbps),
           "gbps_worst": min(reps_gbps), "reps_ns": [[0.1 * t, 0.8 * t, 0.1 * t] for t in ns]}
    if not old:
        row["rep_total_ns"] = ns
    return row


def _doc(rows):
    return {"schema": "pagetax-run/1", "results": rows}


def _spread(median, pct):
    return [median * (1 + pct / 100 * k) for k in (-2, -1, 0, 1, 2)]


A = _doc([_row("vec", _spread(5.0, 2)), _row("page", _spread(4.0, 1)), _row("pfn", _spread(5.0, 1))])
B = _doc([_row("vec", _spread(5.1, 2)),      # +2 %: inside the 5 % band, not significant
          _row("page", _spread(3.0, 1)),     # -25 %, tight: significant
          _row("sgl", _spread(1.0, 1))])     # only in B


def test_ratios_significance_and_regressions():
    rows, regressions, unmatched = compare.compare(A, B, fail_above=10)
    by = {r["key"][0]: r for r in rows}
    assert set(by) == {"vec", "page"} and unmatched == 2  # sgl only in B, pfn only in A
    assert by["vec"]["ratio"] == pytest.approx(1.02) and not by["vec"]["significant"]
    assert by["page"]["ratio"] == pytest.approx(0.75) and by["page"]["significant"]
    assert by["page"]["ci_low"] <= 0.75 <= by["page"]["ci_high"] < 1 / 1.05
    assert [r["key"][0] for r in regressions] == ["page"]
    assert compare.compare(A, B, fail_above=30)[1] == []  # -25 % is within a 30 % gate


def test_old_rows_with_only_reps_ns_give_the_same_answer():
    old_a = _doc([_row(r["design"], _spread(r["gbps"], 1), old=True) for r in A["results"]])
    old_b = _doc([_row(r["design"], _spread(r["gbps"], 1), old=True) for r in B["results"]])
    new_a = _doc([_row(r["design"], _spread(r["gbps"], 1)) for r in A["results"]])
    assert "rep_total_ns" not in old_a["results"][0]
    got = compare.compare(old_a, old_b)[0]
    assert [r["significant"] for r in got] == [False, True]
    mixed = compare.compare(new_a, old_b)[0]  # old and new rows mix
    for g, m in zip(got, mixed):
        assert g["significant"] == m["significant"]
        assert (g["ci_low"], g["ci_high"]) == pytest.approx((m["ci_low"], m["ci_high"]))


def test_threaded_old_rows_use_the_wall_time():
    # old threaded rows: reps_ns are phases averaged over threads, rep_wall_ns the wall time
    row = _row("vec", [4.0] * 5, old=True)
    row["rep_wall_ns"] = [IO / 2.0] * 5
    assert compare.rep_gbps(row) == pytest.approx([2.0] * 5)


CELLS = [(op, pattern, seg) for op in ("read", "write") for pattern in ("seq", "rand")
         for seg in (64, 4096, 65536)]   # the default run's 12 cells


def _aa_run(rng, noise, drift, designs=10, reps=5):
    """A run's rows as the default run has them: 12 cells of 10 designs,
    each cell drifted as a whole by up to +-drift (a neighbour during it)."""
    rows = []
    for op, pattern, seg in CELLS:
        moved = 1 + rng.uniform(-drift, drift)
        for i in range(designs):
            r = _row(f"d{i}", list(moved * rng.lognormal(0.0, noise, reps)), seg=seg)
            r.update(op=op, pattern=pattern)
            rows.append(r)
    return _doc(rows)


@pytest.mark.parametrize("noise", [0.20, 0.02])
def test_aa_runs_flag_at_most_5_percent(noise):
    """Two runs of the same code: noise within each run, and each run
    drifted as a whole by up to +-3 % (the drift the repetitions cannot
    see).  At 2 % noise a test without the minimum change flags ~30 %."""
    flagged = matched = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        a = _aa_run(rng, noise, 0.03)
        b = _aa_run(rng, noise, 0.03)
        k, m = compare.aa_fraction(a, b)
        flagged, matched = flagged + k, matched + m
    assert matched == 5 * 120 and flagged / matched <= 0.05


def test_real_30_percent_change_is_significant():
    rng = np.random.default_rng(7)
    a = _doc([_row(f"d{i}", list(rng.lognormal(0.0, 0.05, 5))) for i in range(20)])
    b = _doc([_row(f"d{i}", list(1.3 * rng.lognormal(0.0, 0.05, 5))) for i in range(20)])
    rows = compare.compare(a, b, absolute=True)[0]
    assert all(r["significant"] and r["ci_low"] > 1.05 for r in rows)


def _cell(rng, factors, noise=0.02):
    return _doc([_row(f"d{i}", list(f * rng.lognormal(0.0, noise, 5)))
                 for i, f in enumerate(factors)])


def test_drift_of_a_whole_cell_is_reported_not_flagged():
    """Every design of a cell 25 % slower (a busy neighbour during that cell)
    but one design a further 30 % slower: only that one is significant."""
    rng = np.random.default_rng(3)
    a = _cell(rng, [1.0] * 9)
    b = _cell(rng, [0.75] * 8 + [0.75 * 0.7])
    rows = compare.compare(a, b, fail_above=10)[0]
    assert all(r["cell_drift"] == pytest.approx(0.75, rel=0.03) for r in rows)
    assert [r["key"][0] for r in rows if r["significant"]] == ["d8"]
    assert [r["key"][0] for r in rows if r["regression"]] == ["d8"]
    assert rows[8]["relative_change_pct"] == pytest.approx(-30, abs=3)
    assert list(compare.drifts(rows)) == [("read", "rand", 4096, 1)]
    # judged absolutely, every row moved beyond the band
    assert all(r["significant"] for r in compare.compare(a, b, absolute=True)[0])


def test_a_cell_of_fewer_than_three_rows_is_judged_absolutely():
    rng = np.random.default_rng(4)
    a, b = _cell(rng, [1.0, 1.0]), _cell(rng, [0.7, 0.7])
    rows = compare.compare(a, b)[0]
    assert all(r["cell_drift"] == 1.0 and r["significant"] for r in rows)


def test_small_clear_change_is_not_significant_noisy_large_one_neither():
    # +3 % with 0.1 % noise: statistically clear, but within the drift band
    sig, lo, hi = stats.significant_change(_spread(5.0, 0.1), _spread(5.15, 0.1))
    assert not sig and lo > 1.0
    # +10 % with +-30 % scatter: beyond the band, but the interval says nothing
    assert not stats.significant_change(_spread(5.0, 15), _spread(5.5, 15))[0]
    assert stats.significant_change(_spread(5.0, 0.1), _spread(5.15, 0.1), min_change=0.01)[0]


def test_ci_brackets_the_true_ratio_and_is_deterministic():
    rng = np.random.default_rng(3)
    x = rng.lognormal(0.0, 0.1, 9)
    lo, hi = stats.bootstrap_ratio_ci(x, 2 * x)
    assert lo < 2.0 < hi and hi / lo < 1.5
    assert stats.bootstrap_ratio_ci(x, 2 * x) == (lo, hi)
    assert stats.bootstrap_ratio_ci(x, 2 * x, seed=1) != (lo, hi)
    mlo, mhi = stats.median_ci(x)
    assert mlo <= np.median(x) <= mhi and mlo >= x.min() and mhi <= x.max()
    assert stats.median_ci([3.0]) == (3.0, 3.0)
    # wider with more confidence
    assert stats.bootstrap_ratio_ci(x, 2 * x, 0.99)[1] - stats.bootstrap_ratio_ci(x, 2 * x, 0.99)[0] \
        >= hi - lo
    with pytest.raises(ValueError):
        stats.median_ci([])
    with pytest.raises(ValueError):
        stats.bootstrap_ratio_ci([1.0, 0.0], [1.0])


def test_compare_and_stats_load_no_runner_or_core():
    # check_goals and readers of result files use them without the C extension
    here = pathlib.Path(compare.__file__).parent
    for name in ("compare.py", "stats.py", "schema.py"):
        tree = ast.parse((here / name).read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not mods & {"runner", "core", "_core", "cli", "pagetax"}, (name, mods)


def test_compare_never_loads_the_c_core(tmp_path):
    """Result files are read where the core may not even build: neither the
    module nor the command may load it (pagetax/__init__ imports lazily)."""
    (tmp_path / "a.json").write_text(json.dumps(A))
    code = ("import sys, pagetax.compare\n"
            "assert 'pagetax._core' not in sys.modules, 'import pagetax.compare loaded it'\n"
            "from pagetax import cli\n"
            "status = cli.main(['compare', 'a.json', 'a.json'])\n"
            "assert 'pagetax._core' not in sys.modules, 'pagetax compare loaded it'\n"
            "sys.exit(status)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_compare_command(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(A))
    (tmp_path / "b.json").write_text(json.dumps(B))
    p = cli("compare", "a.json", "b.json", cwd=tmp_path)
    assert p.returncode == 0 and "not significant" in p.stdout and "0.750" in p.stdout
    assert "95% CI" in p.stdout
    row = {r["key"][0]: r for r in compare.compare(A, B)[0]}["page"]
    assert f"{row['ci_low']:.2f}-{row['ci_high']:.2f}" in p.stdout
    assert "2 rows are in only one of the two files" in p.stderr
    p = cli("compare", "a.json", "b.json", "--fail-above", "10", cwd=tmp_path)
    assert p.returncode == 1 and "REGRESSION" in p.stdout
    assert "1 rows got slower by more than 10.0%" in p.stderr
    # a 30 % band swallows the -25 %: no longer significant, so no regression
    p = cli("compare", "a.json", "b.json", "--fail-above", "10", "--min-change", "40",
            cwd=tmp_path)
    assert p.returncode == 0 and "REGRESSION" not in p.stdout
    better = copy.deepcopy(A)
    (tmp_path / "same.json").write_text(json.dumps(better))
    assert cli("compare", "a.json", "same.json", "--fail-above", "1", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("files, message", [
    (["missing.json", "a.json"], "missing.json: No such file or directory"),
    (["bad.json", "a.json"], "bad.json: not JSON"),
    (["other.json", "a.json"], "other.json: not a pagetax run result"),
    (["a.json", "a.json", "--min-change", "-1"], "--min-change -1.0 must not be negative"),
    (["a.json", "norep.json"], "has no usable per-repetition times"),
    (["a.json", "norows.json"], "norows.json: has no list of results"),
    (["a.json", "cut.json"], "cut.json: result 0 lacks design, gbps; was the file edited"),
])
def test_compare_errors(tmp_path, files, message):
    (tmp_path / "a.json").write_text(json.dumps(A))
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "x"}))
    norep = copy.deepcopy(A)
    del norep["results"][0]["reps_ns"], norep["results"][0]["rep_total_ns"]
    (tmp_path / "norep.json").write_text(json.dumps(norep))
    (tmp_path / "norows.json").write_text(json.dumps(dict(A, results="x")))
    cut = copy.deepcopy(A)
    del cut["results"][0]["design"], cut["results"][0]["gbps"]
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    p = cli("compare", *files, cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and message in p.stderr


def test_compare_command_reports_drift_and_other_machines(tmp_path):
    rng = np.random.default_rng(5)
    a, b = _cell(rng, [1.0] * 5), _cell(rng, [0.8] * 5)
    a["machine"] = {"cpu_model": "AMD EPYC", "hostname": "one", "llc_bytes": 32 << 20}
    b["machine"] = {"cpu_model": "Intel Xeon", "hostname": "two", "llc_bytes": 480 << 20}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    p = cli("compare", "a.json", "b.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "every row of read rand 4K (1 thread) moved -20%" in p.stderr
    assert "different machines (AMD EPYC, one and Intel Xeon, two)" in p.stderr
    assert "REGRESSION" not in p.stdout and "vs cell" in p.stdout
    p = cli("compare", "a.json", "b.json", "--absolute", "--fail-above", "10", cwd=tmp_path)
    assert p.returncode == 1 and "5 rows got slower by more than 10.0%" in p.stderr

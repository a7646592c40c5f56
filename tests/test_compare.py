"""`pagetax compare`: did B get slower than A?  Rows divided by the drift
reference of their round, Hodges-Lehmann shifts with distribution-free
intervals, the gate, config mismatches, pooled runs.  The runs here are
shaped as the default run's: 12 cells of 10 designs and a reference, 5
repetitions, every row of a cell moved by the same drift in a round."""
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

IO = 64 << 20
DESIGNS = ["vec", "pfn", "page", "folio", "huge", "altmap", "memdesc", "sgl", "memcpy", "kernel"]
COUNTING = ["page", "folio", "huge", "altmap", "memdesc", "sgl"]   # the designs pt_get serves
CELLS = [(op, pattern, seg) for op in ("read", "write") for pattern in ("seq", "rand")
         for seg in (64, 4096, 65536)]   # the default run's 12 cells
CONFIG = {"cache": "cold", "cold_method_resolved": "clflushopt", "folio_size": "4K",
          "segs_per_io": 256, "io_size": IO, "size": 1 << 30, "seed": 1, "hot_pages": 64,
          "table_pages": "2M", "page_size": "4K", "persist": "none", "persist_each": False,
          "threads": 1}


def _row(design, op, pattern, seg, gbps, **more):
    ns = [IO / g for g in gbps]
    return {"design": design, "op": op, "pattern": pattern, "seg_bytes": seg, "io_bytes": IO,
            "threads": 1, "gbps": float(np.median(gbps)), "rep_total_ns": ns, **more}


def run(seed, slow=None, drift=0.03, noise=0.03, reps=5, reference=True, config=None):
    """A default run's rows: in each round every row of a cell, the
    reference's too, moves by one round drift (a neighbour of the moment);
    `slow(design, op, seg)` is the factor a planted change applies."""
    rng = np.random.default_rng(seed)
    rows = []
    for op, pattern, seg in CELLS:
        rounds = np.exp(rng.normal(0, drift, reps))   # shared by the cell in each round
        for d in DESIGNS + (["reference"] if reference else []):
            base = 5.0 * (1 + DESIGNS.index(d) / 10 if d in DESIGNS else 1.2)
            factor = slow(d, op, seg) if slow and d != "reference" else 1.0
            gbps = base * factor * rounds * np.exp(rng.normal(0, noise, reps))
            rows.append(_row(d, op, pattern, seg, list(gbps),
                             **({"reference": True} if d == "reference" else {})))
    return {"schema": "pagetax-run/1", "config": dict(CONFIG, **(config or {})),
            "machine": {"backing": {"kind": "tmpfs"}, "cpu_model": "AMD EPYC", "hostname": "h"},
            "results": rows}


def planted_copy(design, op, seg):
    """pt_copy_seg 25 % slower: every design but kernel (its own copy)."""
    return 0.8 if design != "kernel" else 1.0


def planted_get(design, op, seg):
    """pt_get 20 % slower: the counting designs, where references dominate (64 B)."""
    return 0.8 if design in COUNTING and seg == 64 else 1.0


def test_runs_of_the_same_code_flag_at_most_5_percent_and_pass_the_gate():
    flagged = matched = failed = 0
    for seed in range(10):
        result = compare.compare(run(2 * seed), run(2 * seed + 1))
        n = result.counts()
        flagged += n["slower"] + n["faster"]
        matched += n["rows"]
        failed += result.failed
    assert matched == 10 * 120 and flagged <= 0.05 * matched
    assert failed <= 1


def test_a_slower_copy_in_every_design_is_a_regression_of_each_row():
    """The old cell-relative compare called this `kernel` 33 % faster."""
    result = compare.compare(run(1), run(2, slow=planted_copy))
    slower = {r["key"] for r in result.rows if r["verdict"] == "slower"}
    assert slower == {(d, op, p, s, 1) for d in DESIGNS if d != "kernel" for op, p, s in CELLS}
    assert not [r for r in result.rows if r["verdict"] == "faster"]
    assert result.failed and len(result.regressions) == 9 * 12
    assert all(r["change"] == pytest.approx(0.8, rel=0.06) for r in result.regressions)
    assert all(info["reference"]["verdict"] == "" for info in result.cells.values())


def test_a_slower_get_is_named_in_the_counting_designs_only():
    result = compare.compare(run(3), run(4, slow=planted_get))
    slower = {r["key"] for r in result.rows if r["verdict"]}
    assert slower == {(d, op, p, 64, 1) for d in COUNTING for op, p, s in CELLS if s == 64}
    assert all(r["basis"] == "reference" for r in result.rows)


def test_machine_drift_moves_the_reference_and_flags_nothing():
    """A cell where everything, the reference included, ran 30 % slower."""
    a, b = run(5), run(6)
    for r in b["results"]:
        if (r["op"], r["pattern"], r["seg_bytes"]) == ("read", "rand", 64):
            r["rep_total_ns"] = [t / 0.7 for t in r["rep_total_ns"]]
            r["gbps"] *= 0.7
    result = compare.compare(a, b)
    assert not result.failed
    moved = result.cells[("read", "rand", 64, 1)]["reference"]
    assert moved["verdict"] == "slower" and moved["change"] == pytest.approx(0.7, rel=0.06)
    assert result.counts()["slower"] <= 6


def test_without_a_reference_a_uniform_move_fails_unless_drift_is_allowed():
    a, b = run(7, reference=False), run(8, reference=False, slow=planted_copy)
    result = compare.compare(a, b)
    assert result.failed and len(result.undecided) == 12
    assert all(r["basis"] == "raw" for r in result.rows)
    relative = compare.compare(a, b, allow_drift=True)
    assert not relative.undecided and not relative.regressions
    assert {r["basis"] for r in relative.rows} == {"cell"}


def test_rows_match_only_when_the_runs_measured_alike():
    with pytest.raises(compare.PagetaxError, match=r"A and B did not measure alike: "
                       r"--folio-size 4K in A, 2M in B; --segs-per-io 256 in A, 0 in B "
                       r"\(--ignore-config compares them anyway\)"):
        compare.compare(run(1), run(2, config={"segs_per_io": 0, "folio_size": "2M"}))
    result = compare.compare(run(1), run(2, config={"cache": "warm"}), ignore_config=True)
    assert result.mismatches == ["the cache mode cold in A, warm in B"] and result.rows
    older = run(2)
    del older["config"]["segs_per_io"]   # a file from before the key: whole repetitions
    with pytest.raises(compare.PagetaxError, match="--segs-per-io 256 in A, 0 in B"):
        compare.compare(run(1), older)


def test_pooled_runs_narrow_the_interval():
    one = compare.compare(run(1), run(2))
    pooled = compare.compare([run(1), run(3), run(5)], [run(2), run(4), run(6)])
    width = [np.log(r["ci_high"] / r["ci_low"]) for r in one.rows]
    pooled_width = [np.log(r["ci_high"] / r["ci_low"]) for r in pooled.rows]
    assert np.median(pooled_width) < 0.6 * np.median(width)
    assert {r["reps"] for r in pooled.rows} == {(15, 15)}


def test_the_shift_and_its_interval():
    a = [1.0, 1.02, 0.98, 1.01, 0.99]
    ratio, lo, hi = stats.shift(a, [0.8 * x for x in a])
    assert ratio == pytest.approx(0.8) and lo < 0.8 < hi < 1 / 1.05
    assert stats.judge(ratio, lo, hi, 0.05) == "slower"
    assert stats.judge(*stats.shift(a, a), 0.05) == ""
    # 5 a side: the 3rd smallest to the 3rd largest of 25 ratios, 96.8 %
    assert stats.interval_confidence(5, 5) == pytest.approx(1 - 8 / 252)
    # 3 a side cannot reach 95 %: no interval, nothing significant
    assert stats.shift([1, 2, 3], [4, 5, 6])[1:] == (0.0, float("inf"))
    assert stats.judge(*stats.shift([1, 2, 3], [40, 50, 60]), 0.05) == ""


def test_the_mann_whitney_counts_match_enumeration():
    import itertools
    from collections import Counter
    n, m = 4, 3
    seen = Counter()
    for first in itertools.combinations(range(n + m), n):
        seen[sum(1 for x in first for y in range(n + m) if y not in first and x > y)] += 1
    assert [seen[u] for u in range(n * m + 1)] == list(stats._u_counts(n, m))


def test_compare_and_stats_load_no_runner_or_core():
    # check_goals and readers of result files use them without the C extension
    here = pathlib.Path(compare.__file__).parent
    for name in ("compare.py", "stats.py", "schema.py"):
        tree = ast.parse((here / name).read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not mods & {"runner", "core", "_core", "cli", "pagetax"}, (name, mods)


def _write(tmp_path, **docs):
    for name, doc in docs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))


def test_compare_never_loads_the_c_core(tmp_path):
    """Result files are read where the core may not even build: neither the
    module nor the command may load it (pagetax/__init__ imports lazily)."""
    _write(tmp_path, a=run(1))
    code = ("import sys, pagetax.compare\n"
            "assert 'pagetax._core' not in sys.modules, 'import pagetax.compare loaded it'\n"
            "from pagetax import cli\n"
            "status = cli.main(['compare', 'a.json', 'a.json'])\n"
            "assert 'pagetax._core' not in sys.modules, 'pagetax compare loaded it'\n"
            "sys.exit(status)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_the_command_says_slower_and_faster_and_ends_with_counts(tmp_path):
    def faster_pfn(design, op, seg):
        return 1.3 if design == "pfn" and seg == 4096 else planted_get(design, op, seg)
    _write(tmp_path, a=run(3), b=run(4, slow=faster_pfn))
    p = cli("compare", "a.json", "b.json", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    lines = [" ".join(x.split()) for x in p.stdout.splitlines()]
    page = next(x for x in lines if x.startswith("page read rand 64 "))
    assert "REGRESSION:" in page and "% slower (" in page
    pfn = next(x for x in lines if x.startswith("pfn write seq 4K "))
    assert "% faster (" in pfn and "REGRESSION" not in pfn
    vec = next(x for x in lines if x.startswith("vec read seq 64 "))
    assert "not significant (" in vec
    err = " ".join(p.stderr.split())
    assert "120 rows: 24 slower, 4 faster, 92 unchanged beyond +-5 % (5x5 repetitions; " \
           "intervals at 96.8 % or more)" in err
    assert "24 rows got slower" in err
    p = cli("compare", "a.json", "b.json", "--fail-above", "30", cwd=tmp_path)
    assert p.returncode == 0 and "REGRESSION" not in p.stdout
    p = cli("compare", "-a", "a.json", "a.json", "-b", "b.json", "b.json", cwd=tmp_path)
    assert p.returncode == 1 and "(10x10 repetitions;" in " ".join(p.stderr.split())


def test_the_command_names_drift_it_cannot_tell_from_change(tmp_path):
    a, b = run(7, reference=False), run(8, reference=False, slow=planted_copy)
    a["machine"] = {"cpu_model": "AMD EPYC", "hostname": "one", "backing": {"kind": "tmpfs"}}
    b["machine"] = {"cpu_model": "Intel Xeon", "hostname": "two", "backing": {"kind": "tmpfs"}}
    _write(tmp_path, a=a, b=b)
    p = cli("compare", "a.json", "b.json", cwd=tmp_path)
    err = " ".join(p.stderr.split())
    assert p.returncode == 1
    assert "read rand 64 (1 thread): every row moved -" in err
    assert "neither file has a drift reference: machine drift and a change to pagetax look " \
           "alike here, so the gate fails" in err
    assert "different machines (AMD EPYC, one and Intel Xeon, two)" in err
    assert "no drift reference in these files" in err
    p = cli("compare", "a.json", "b.json", "--allow-drift", cwd=tmp_path)
    assert p.returncode == 0 and "REGRESSION" not in p.stdout


@pytest.mark.parametrize("files, message", [
    (["missing.json", "a.json"], "missing.json: No such file or directory"),
    (["bad.json", "a.json"], "bad.json: not JSON"),
    (["other.json", "a.json"], "other.json: not a pagetax run result"),
    (["a.json", "a.json", "--min-change", "-1"], "--min-change -1.0 must not be negative"),
    (["a.json", "norep.json"], "has no usable per-repetition times"),
    (["a.json", "norows.json"], "norows.json: has no list of results"),
    (["a.json", "cut.json"], "cut.json: result 0 lacks design, gbps; was the file edited"),
    (["a.json"], "give two files, A.json and B.json (got 1)"),
    (["a.json", "a.json", "-a", "a.json"], "give A.json B.json, or -a and -b, not both"),
    (["-a", "a.json"], "give A.json B.json, or runs of each with -a"),
    (["a.json", "warm.json"], "A and B did not measure alike: the cache mode cold in A, warm"),
])
def test_compare_errors(tmp_path, files, message):
    a = run(1)
    norep = copy.deepcopy(a)
    del norep["results"][0]["rep_total_ns"]
    cut = copy.deepcopy(a)
    del cut["results"][0]["design"], cut["results"][0]["gbps"]
    _write(tmp_path, a=a, other={"schema": "x"}, norep=norep, norows=dict(a, results="x"),
           cut=cut, warm=run(2, config={"cache": "warm"}))
    (tmp_path / "bad.json").write_text("{")
    p = cli("compare", *files, cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and message in p.stderr

"""`pagetax compare`: ratios, significance against the spread, the gate."""
import copy
import json
import subprocess
import sys

import pytest

from pagetax import compare


def _row(design, gbps, best, worst, seg=4096):
    return {"design": design, "op": "read", "pattern": "rand", "seg_bytes": seg,
            "gbps": gbps, "gbps_best": best, "gbps_worst": worst}


def _doc(rows):
    return {"schema": "pagetax-run/1", "results": rows}


A = _doc([_row("vec", 5.0, 5.2, 4.8), _row("page", 4.0, 4.1, 3.9), _row("pfn", 5.0, 5.1, 4.9)])
B = _doc([_row("vec", 5.1, 5.3, 4.9),        # +2 %, ranges overlap: not significant
          _row("page", 3.0, 3.1, 2.9),       # -25 %, significant
          _row("sgl", 1.0, 1.1, 0.9)])       # only in B


def test_ratios_significance_and_regressions():
    rows, regressions, unmatched = compare.compare(A, B, fail_above=10)
    by = {r["key"][0]: r for r in rows}
    assert set(by) == {"vec", "page"} and unmatched == 2  # sgl only in B, pfn only in A
    assert by["vec"]["ratio"] == pytest.approx(1.02) and not by["vec"]["significant"]
    assert by["page"]["ratio"] == pytest.approx(0.75) and by["page"]["significant"]
    assert [r["key"][0] for r in regressions] == ["page"]
    assert compare.compare(A, B, fail_above=30)[1] == []  # -25 % is within a 30 % gate


def _cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pagetax", "compare", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_compare_command(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(A))
    (tmp_path / "b.json").write_text(json.dumps(B))
    p = _cli(tmp_path, "a.json", "b.json")
    assert p.returncode == 0 and "not significant" in p.stdout and "0.750" in p.stdout
    assert "2 rows are in only one of the two files" in p.stderr
    p = _cli(tmp_path, "a.json", "b.json", "--fail-above", "10")
    assert p.returncode == 1 and "REGRESSION" in p.stdout
    assert "1 rows got slower by more than 10.0%" in p.stderr
    better = copy.deepcopy(A)
    (tmp_path / "same.json").write_text(json.dumps(better))
    assert _cli(tmp_path, "a.json", "same.json", "--fail-above", "1").returncode == 0


@pytest.mark.parametrize("files, message", [
    (["missing.json", "a.json"], "missing.json: No such file or directory"),
    (["bad.json", "a.json"], "bad.json: not JSON"),
    (["other.json", "a.json"], "other.json: not a pagetax run result"),
])
def test_compare_errors(tmp_path, files, message):
    (tmp_path / "a.json").write_text(json.dumps(A))
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "x"}))
    p = _cli(tmp_path, *files)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and message in p.stderr

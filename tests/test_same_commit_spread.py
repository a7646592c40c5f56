"""bench/tools/same_commit_spread.py: the threshold a same-commit pair of
pytest-benchmark runs supports."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "bench", "tools", "same_commit_spread.py")


def _run_file(path, medians):
    path.write_text(json.dumps({"benchmarks": [
        {"fullname": name, "stats": {"median": m}} for name, m in medians.items()]}))
    return str(path)


def test_threshold_is_k_times_the_largest_slowdown_rounded_up_to_5(tmp_path):
    first = _run_file(tmp_path / "a.json", {"t[vec]": 1.0, "t[page]": 2.0, "t[sgl]": 4.0,
                                            "only_in_first": 1.0})
    second = _run_file(tmp_path / "b.json", {"t[vec]": 1.12, "t[page]": 1.8, "t[sgl]": 4.0})
    p = subprocess.run([sys.executable, TOOL, first, second], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "3 benchmarks" in p.stdout
    assert "largest slowdown +12.0 % (t[vec])" in p.stdout
    assert "largest 12.0 %" in p.stdout  # |-10 %| of page is smaller
    assert "--benchmark-compare-fail=median:20%" in p.stdout  # 1.5 x 12 = 18 -> 20


def test_no_slowdown_still_gives_a_threshold(tmp_path):
    same = {"t[vec]": 1.0}
    p = subprocess.run([sys.executable, TOOL, _run_file(tmp_path / "a.json", same),
                        _run_file(tmp_path / "b.json", same)], capture_output=True, text=True)
    assert "--benchmark-compare-fail=median:5%" in p.stdout


def test_only_the_gated_tests_set_the_threshold(tmp_path):
    first = _run_file(tmp_path / "a.json", {"test_copy[vec]": 1.0, "test_threads[vec]": 1.0})
    second = _run_file(tmp_path / "b.json", {"test_copy[vec]": 1.2, "test_threads[vec]": 3.0})
    p = subprocess.run([sys.executable, TOOL, "--only", "test_copy", first, second],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "1 benchmarks" in p.stdout and "--benchmark-compare-fail=median:30%" in p.stdout

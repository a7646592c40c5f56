#!/usr/bin/env python3
"""How far pytest-benchmark medians move between two runs of one commit,
and the --benchmark-compare-fail threshold that spread supports.

    pytest bench/ --benchmark-only --benchmark-autosave     # twice, same commit
    python bench/tools/same_commit_spread.py .benchmarks/*/0001_*.json .benchmarks/*/0002_*.json
    python bench/tools/same_commit_spread.py --only test_copy A.json B.json   # the gated tests

Prints the change of each benchmark's median from the first run to the
second (a same-commit change is noise, all of it), its distribution, and
the threshold: K times the largest slowdown seen, rounded up to 5 %.  A
gate at that threshold fails a same-commit pair only on a slowdown K times
worse than any seen so far; measure more pairs (and take the largest) on a
machine whose neighbours come and go.
"""
import argparse
import json
import math

K = 1.5  # headroom over the largest same-commit slowdown measured


def medians(path, only=None):
    with open(path) as f:
        return {b["fullname"]: b["stats"]["median"] for b in json.load(f)["benchmarks"]
                if only is None or only in b["fullname"]}


def changes_pct(first, second, only=None):
    """{benchmark: % change of its median, second run against first}, of the
    benchmarks whose name holds `only` (all, without it)."""
    a, b = medians(first, only), medians(second, only)
    return {name: 100.0 * (b[name] / a[name] - 1.0) for name in sorted(set(a) & set(b))}


def percentile(values, q):
    """The q-th percentile, linear between closest ranks (numpy's default)."""
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def threshold_pct(changes, k=K):
    worst_slowdown = max(max(changes.values()), 0.0)
    return 5 * math.ceil(k * worst_slowdown / 5) or 5


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", help="pytest-benchmark JSON of the first run")
    ap.add_argument("second", help="... and of the second, same commit")
    ap.add_argument("--only", metavar="TEXT",
                    help="only the benchmarks whose name holds TEXT (the gated ones: test_copy)")
    args = ap.parse_args(argv)
    ch = changes_pct(args.first, args.second, args.only)
    if not ch:
        raise SystemExit("no benchmark is in both files")
    size = [abs(c) for c in ch.values()]
    worst = max(ch, key=ch.get)
    print(f"{len(ch)} benchmarks, median change second vs first run:")
    print(f"  |change|: median {percentile(size, 50):.1f} %, 95th percentile "
          f"{percentile(size, 95):.1f} %, largest {max(size):.1f} %")
    print(f"  largest slowdown {ch[worst]:+.1f} % ({worst}); "
          f"{sum(c > 10 for c in ch.values())} slower by more than 10 %")
    print(f"threshold ({K} x the largest slowdown, rounded up to 5 %): "
          f"--benchmark-compare-fail=median:{threshold_pct(ch)}%")


if __name__ == "__main__":
    main()

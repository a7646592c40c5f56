"""`pagetax compare A.json B.json`: B against A, row by row.

Imports no runner and no C core: it only reads result files."""
import json

import numpy as np

from .errors import PagetaxError
from .schema import SCHEMA
from .stats import significant_change


def read_json(path):
    """A JSON file, or a one-line PagetaxError saying why not."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise PagetaxError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise PagetaxError(f"{path}: not JSON ({e})") from None


def load(path):
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise PagetaxError(f"{path}: not a pagetax run result (schema {SCHEMA})")
    rows = doc.get("results")
    if not isinstance(rows, list):
        raise PagetaxError(f"{path}: has no list of results")
    for i, row in enumerate(rows):
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise PagetaxError(f"{path}: result {i} lacks {', '.join(missing)}; "
                               "was the file edited or cut short?")
    return doc


ROW_KEYS = ("design", "op", "pattern", "seg_bytes", "io_bytes", "gbps")  # what compare reads


def key(row):
    return (row["design"], row["op"], row["pattern"], row["seg_bytes"], row.get("threads", 1))


def rep_gbps(row):
    """GB/s of each repetition: io_bytes over its wall time in ns.  Newer
    rows carry rep_total_ns; older threaded rows rep_wall_ns (their reps_ns
    are phases averaged over threads, which do not add up to the wall
    time); older single-thread rows only reps_ns, [build, copy, release]."""
    if "rep_total_ns" in row:
        total = np.asarray(row["rep_total_ns"], dtype=np.float64)
    elif "rep_wall_ns" in row:
        total = np.asarray(row["rep_wall_ns"], dtype=np.float64)
    elif "reps_ns" in row:
        total = np.array([sum(phases) for phases in row["reps_ns"]], dtype=np.float64)
    else:
        total = np.empty(0)
    if total.size == 0 or not np.all(total > 0):
        raise PagetaxError(f"row {key(row)} has no usable per-repetition times")
    return row["io_bytes"] / total


def cell(k):
    """(op, pattern, seg, threads): rows whose repetitions ran interleaved."""
    return k[1:]


MIN_CELL_ROWS = 3  # a median of fewer rows is no estimate of the cell's drift


def compare(a, b, fail_above=None, *, min_change=0.05, absolute=False):
    """Rows of B matched to A: ratio of median GB/s, the 95 % bootstrap
    interval of that ratio over the repetitions (ci_low, ci_high), and
    whether the change is significant (the whole interval outside
    +-min_change, see stats.significant_change).

    A run interleaves the designs of one cell (op, pattern, segment size,
    threads) repetition by repetition, so a busy neighbour or a frequency
    change moves every row of a cell alike, and by 20-40 % between two runs
    on a shared VM.  Unless `absolute`, each row is therefore judged
    against its cell: the cell's drift is the median B/A of its rows (with
    at least MIN_CELL_ROWS of them), and the interval is divided by it.
    A change that moves every design of a cell alike shows as drift, which
    is reported, not as a significant row.  A regression is a significant
    slowdown beyond fail_above %."""
    rows_a = {key(r): r for r in a["results"]}
    matched = [(rows_a[key(rb)], rb) for rb in b["results"] if key(rb) in rows_a]
    by_cell = {}
    for ra, rb in matched:
        by_cell.setdefault(cell(key(rb)), []).append(rb["gbps"] / ra["gbps"])
    drift = {c: float(np.median(v)) if len(v) >= MIN_CELL_ROWS and not absolute else 1.0
             for c, v in by_cell.items()}
    out, regressions = [], []
    for ra, rb in matched:
        k = key(rb)
        ratio = rb["gbps"] / ra["gbps"]  # the medians the run tables show
        d = drift[cell(k)]
        _, lo, hi = significant_change(rep_gbps(ra), rep_gbps(rb), min_change)
        lo, hi, rel = lo / d, hi / d, ratio / d
        band = 1.0 + min_change
        row = {"key": k, "a_gbps": ra["gbps"], "b_gbps": rb["gbps"], "ratio": ratio,
               "change_pct": 100.0 * (ratio - 1.0), "cell_drift": d,
               "relative_ratio": rel, "relative_change_pct": 100.0 * (rel - 1.0),
               "ci_low": lo, "ci_high": hi, "significant": bool(lo > band or hi < 1.0 / band)}
        row["regression"] = bool(fail_above is not None and row["significant"]
                                 and -row["relative_change_pct"] > fail_above)
        if row["regression"]:
            regressions.append(row)
        out.append(row)
    unmatched = len(b["results"]) - len(out) + len(set(rows_a) - {r["key"] for r in out})
    return out, regressions, unmatched


def drifts(rows, min_change=0.05):
    """{cell: drift} for the cells whose rows all moved beyond min_change."""
    band = 1.0 + min_change
    seen = {}
    for r in rows:
        seen[cell(r["key"])] = r["cell_drift"]
    return {c: d for c, d in seen.items() if d > band or d < 1.0 / band}


def aa_fraction(doc_a, doc_b, min_change=0.05):
    """(significant, matched) rows between two runs of the same code: an
    A/A check of the test, where every significant row is a false alarm."""
    rows = compare(doc_a, doc_b, min_change=min_change)[0]
    return sum(r["significant"] for r in rows), len(rows)

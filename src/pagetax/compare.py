"""`pagetax compare A.json B.json`: did B get slower than A?

Rows match on design, op, pattern, segment size and threads, and only when
the two runs measured alike (SIGNATURE: cache mode, folio size, segments
per I/O, sizes, seed, page sizes, backing kind, persistence, cold method).

A run measures each cell's designs in rounds, one repetition each, beside
the drift reference (pagetax/reference.py), which no change to pagetax's
engine can move and the machine moves as it moves the designs.  Each
repetition of a row is divided by the reference's in the same round, and
the change is the Hodges-Lehmann shift of B's quotients over A's, with its
distribution-free interval (stats.shift).  A row is slower or faster when
its whole interval lies beyond +-min_change; a cell whose every design
moved and whose reference did not is a change to pagetax, reported row by
row, never divided away.

Without a reference in either file (files from before it, a backing it
cannot run on) rows are judged on raw GB/s, and a cell whose rows all moved
alike is machine drift or a change to pagetax, which two files cannot tell
apart: the gate fails, unless allow_drift judges each row against its
cell's median move instead.

Imports no runner and no C core: it only reads result files."""
import json

import numpy as np

from . import stats
from .errors import PagetaxError
from .schema import SCHEMA

ROW_KEYS = ("design", "op", "pattern", "seg_bytes", "io_bytes", "gbps")  # what compare reads
REFERENCE = "reference"
MIN_CELL_ROWS = 3   # fewer rows than this tell nothing about a cell as a whole

# (config key, how a user names it, its value in files from before the key)
SIGNATURE = (
    ("cache", "the cache mode", "cold"),
    ("cold_method_resolved", "the cold method", None),
    ("folio_size", "--folio-size", "4K"),
    ("gup_omit", "--gup-omit", []),
    ("gup_devmap", "--gup-devmap", False),
    ("segs_per_io", "--segs-per-io", 0),
    ("io_size", "--io-size", None),
    ("size", "--size", None),
    ("seed", "--seed", 1),
    ("hot_pages", "--hot-pages", 64),
    ("table_pages", "--table-pages", "2M"),
    ("page_size", "--page-size", "4K"),
    ("persist", "--persist", "none"),
    ("persist_each", "--persist-each", False),
)


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


def signature(doc):
    """{key: value} of what changes what a row measures."""
    cfg = doc.get("config") or {}
    sig = {k: cfg.get(k, old) for k, _, old in SIGNATURE}
    sig["backing"] = ((doc.get("machine") or {}).get("backing") or {}).get("kind")
    return sig


def mismatches(a, b):
    """What the two runs did not measure alike, one phrase each."""
    sa, sb = signature(a), signature(b)
    names = {k: name for k, name, _ in SIGNATURE}
    names["backing"] = "the backing"
    return [f"{names[k]} {sa[k]} in A, {sb[k]} in B" for k in sa if sa[k] != sb[k]]


def key(row):
    return (row["design"], row["op"], row["pattern"], row["seg_bytes"], row.get("threads", 1))


def cell(k):
    """(op, pattern, seg, threads): the rows that ran in the same rounds."""
    return k[1:]


def rep_gbps(row):
    """GB/s of each repetition, in round order: io_bytes over its wall time
    in ns.  Newer rows carry rep_total_ns; older threaded rows rep_wall_ns;
    older single-thread rows only reps_ns, [build, copy, release]."""
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


def _by_key(doc):
    rows = {key(r): r for r in doc["results"] if not r.get("reference")}
    refs = {cell(key(r)): r for r in doc["results"] if r.get("reference")}
    return rows, refs


def _quotients(row, ref):
    """Each repetition over the reference's of the same round, or None when
    the two did not run in the same rounds."""
    mine = rep_gbps(row)
    if ref is None:
        return None
    theirs = rep_gbps(ref)
    return mine / theirs if theirs.size == mine.size else None


class Side:
    """One side of a comparison: one run file, or several runs of the same
    code pooled, so that what differs between runs (where each design's
    table and the backing land in physical memory, the neighbours of the
    moment) is in the sample, not between the two sides."""

    def __init__(self, docs):
        self.docs = list(docs)
        self.tables = [_by_key(d) for d in self.docs]
        keys = [set(rows) for rows, _ in self.tables]
        self.keys = [k for k in self.tables[0][0] if all(k in ks for ks in keys)]
        self.partial = set().union(*keys) - set(self.keys)

    def row(self, k):
        """The first run's row (its medians head the table)."""
        return self.tables[0][0][k]

    def values(self, k, normalized):
        """Every run's repetitions of row k, pooled: over the reference's of
        the same round when `normalized`, else raw GB/s."""
        out = []
        for rows, refs in self.tables:
            q = _quotients(rows[k], refs.get(cell(k))) if normalized else rep_gbps(rows[k])
            if q is None:
                return None
            out.append(q)
        return np.concatenate(out)

    def reference(self, c):
        """Every run's reference repetitions in cell c, pooled, or None."""
        refs = [refs.get(c) for _, refs in self.tables]
        return None if any(r is None for r in refs) else np.concatenate([rep_gbps(r) for r in refs])

    def median_gbps(self, k):
        return float(np.median([rows[k]["gbps"] for rows, _ in self.tables]))


class Comparison:
    """What compare() found: rows (dicts, below), cells (the reference's and
    the rows' moves per cell), regressions, the cells it could not decide,
    and the rows in one file only."""

    def __init__(self):
        self.rows, self.cells, self.regressions, self.undecided = [], {}, [], []
        self.unmatched = 0
        self.mismatches = []

    def counts(self):
        verdicts = [r["verdict"] for r in self.rows]
        return {"rows": len(verdicts), "slower": verdicts.count("slower"),
                "faster": verdicts.count("faster"), "unchanged": verdicts.count("")}

    @property
    def failed(self):
        return bool(self.regressions or self.undecided)


def compare(a, b, *, min_change=0.05, fail_above=None, allow_drift=False, ignore_config=False,
            confidence=0.95):
    """B against A, row by row (see the module's docstring); a and b are run
    documents, or lists of runs of the same code, pooled.  Each row: key,
    a_gbps and b_gbps (the runs' median GB/s), ratio (their quotient),
    change (the shift it is judged by: over the reference where every run
    has one), ci_low and ci_high, basis ("reference", "raw" or "cell"),
    reps (values a side), confidence (the interval's real level), verdict
    ("slower", "faster" or ""), and regression (slower, by more than
    fail_above % when given)."""
    if min_change < 0:
        raise PagetaxError(f"the minimum change {min_change} must not be negative")
    side_a = Side(a if isinstance(a, (list, tuple)) else [a])
    side_b = Side(b if isinstance(b, (list, tuple)) else [b])
    docs = side_a.docs + side_b.docs
    differ = [f"{m} (file {i + 1})" if len(docs) > 2 else m
              for i, d in enumerate(docs[1:], 1) for m in mismatches(docs[0], d)]
    if differ and not ignore_config:
        raise PagetaxError("A and B did not measure alike: " + "; ".join(differ)
                           + " (--ignore-config compares them anyway)")
    out = Comparison()
    out.mismatches = differ
    common = [k for k in side_b.keys if k in side_a.keys]
    out.unmatched = len(side_a.keys) + len(side_b.keys) - 2 * len(common) + \
        len(side_a.partial) + len(side_b.partial)
    for c in dict.fromkeys(cell(k) for k in common):
        ra, rb = side_a.reference(c), side_b.reference(c)
        info = {"reference": None, "moved": None, "uniform": False}
        if ra is not None and rb is not None:
            ratio, lo, hi = stats.shift(ra, rb, confidence)
            info["reference"] = {"a_gbps": float(np.median(ra)), "b_gbps": float(np.median(rb)),
                                 "change": ratio, "ci_low": lo, "ci_high": hi,
                                 "verdict": stats.judge(ratio, lo, hi, min_change)}
        out.cells[c] = info
    for k in common:
        va, vb = side_a.values(k, True), side_b.values(k, True)
        basis = "reference" if va is not None and vb is not None else "raw"
        if basis == "raw":
            va, vb = side_a.values(k, False), side_b.values(k, False)
        change, lo, hi = stats.shift(va, vb, confidence)
        a_gbps, b_gbps = side_a.median_gbps(k), side_b.median_gbps(k)
        out.rows.append({"key": k, "a_gbps": a_gbps, "b_gbps": b_gbps, "ratio": b_gbps / a_gbps,
                         "change": change, "ci_low": lo, "ci_high": hi, "basis": basis,
                         "reps": (va.size, vb.size),
                         "confidence": stats.interval_confidence(va.size, vb.size, confidence),
                         "verdict": stats.judge(change, lo, hi, min_change)})
    _decide_raw_cells(out, min_change, allow_drift)
    for r in out.rows:
        r["change_pct"] = 100.0 * (r["change"] - 1.0)
        r["regression"] = r["verdict"] == "slower" and (
            fail_above is None or -r["change_pct"] > fail_above)
        if r["regression"]:
            out.regressions.append(r)
    return out


def _decide_raw_cells(out, min_change, allow_drift):
    """Cells judged on raw GB/s whose rows moved as a whole (the median row
    beyond the band, half the rows or more significantly so): drift or a
    change to pagetax, which the files cannot tell apart.  Undecided, or with
    allow_drift each row against the cell's median move."""
    by_cell = {}
    for r in out.rows:
        if r["basis"] == "raw":
            by_cell.setdefault(cell(r["key"]), []).append(r)
    for c, rows in by_cell.items():
        moved = float(np.median([r["change"] for r in rows]))
        out.cells[c]["moved"] = moved
        direction = stats.judge(moved, moved, moved, min_change)
        alike = sum(r["verdict"] == direction for r in rows)
        if len(rows) < MIN_CELL_ROWS or not direction or 2 * alike < len(rows):
            continue
        out.cells[c]["uniform"] = True
        if not allow_drift:
            out.undecided.append(c)
            continue
        for r in rows:
            r["change"] /= moved
            r["ci_low"] /= moved
            r["ci_high"] /= moved
            r["basis"] = "cell"
            r["verdict"] = stats.judge(r["change"], r["ci_low"], r["ci_high"], min_change)

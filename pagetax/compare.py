"""`pagetax compare A.json B.json`: B against A, row by row."""
import json

from .errors import PagetaxError
from .runner import SCHEMA


def load(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise PagetaxError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise PagetaxError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise PagetaxError(f"{path}: not a pagetax run result (schema {SCHEMA})")
    return doc


def key(row):
    return (row["design"], row["op"], row["pattern"], row["seg_bytes"], row.get("threads", 1))


def compare(a, b, fail_above=None):
    """Rows of B matched to A: ratio of GB/s, and whether the change is
    larger than the run-to-run spread (the two best..worst ranges do not
    overlap).  A regression is a significant slowdown beyond fail_above %."""
    rows_a = {key(r): r for r in a["results"]}
    out, regressions = [], []
    for rb in b["results"]:
        ra = rows_a.get(key(rb))
        if ra is None:
            continue
        ratio = rb["gbps"] / ra["gbps"]
        overlap = rb["gbps_worst"] <= ra["gbps_best"] and ra["gbps_worst"] <= rb["gbps_best"]
        change = 100.0 * (ratio - 1.0)
        row = {"key": key(rb), "a_gbps": ra["gbps"], "b_gbps": rb["gbps"], "ratio": ratio,
               "change_pct": change, "significant": not overlap}
        row["regression"] = bool(fail_above is not None and row["significant"]
                                 and -change > fail_above)
        if row["regression"]:
            regressions.append(row)
        out.append(row)
    unmatched = len(b["results"]) - len(out) + len(set(rows_a) - {r["key"] for r in out})
    return out, regressions, unmatched

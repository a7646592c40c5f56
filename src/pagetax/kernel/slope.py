"""A per-page cost as the slope of a call's time over its pages.

A round times every page count once (`calls` calls each, their median per
count) and fits a line: its slope is the round's per-page cost, its
intercept the per-call cost (the system call, the clock read).  Rounds
repeat the sweep with the counts in a new order each time, so that drift
spreads over all counts; the figure is the median of the rounds' slopes,
with a distribution-free interval (order statistics of the binomial), and
two paths measured in the same rounds compare round by round."""
import math

import numpy as np


def fit(pages, ns):
    """(slope, intercept) of the least-squares line through (pages, ns)."""
    x = np.asarray(pages, dtype=np.float64)
    y = np.asarray(ns, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pages and ns differ in shape: {x.shape} and {y.shape}")
    if np.unique(x).size < 2:
        raise ValueError("a slope needs two or more different page counts")
    if not np.all(np.isfinite(y)):
        raise ValueError("ns must be finite")
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    return slope, float(ym - slope * xm)


def _rank(n, confidence):
    """k, coverage: [x_(k), x_(n+1-k)] (1-based order statistics) covers the
    median with probability `coverage` >= confidence, k as large as allows;
    k = 1 (the range) when n is too small for the confidence asked."""
    tail = (1.0 - confidence) / 2
    k, below = 0, 0.0          # below: P(B <= k - 1), B ~ Binomial(n, 1/2)
    while k < n // 2:
        p = math.comb(n, k) / 2.0 ** n
        if below + p > tail:
            break
        below += p
        k += 1
    k = max(k, 1)
    below = sum(math.comb(n, j) for j in range(k)) / 2.0 ** n
    return k, 1.0 - 2.0 * below


def summarise(values, confidence=0.95):
    """The median of per-round values with its interval.  `spread_pct` is
    the interval's half-width over the median: what two runs of the same
    machine can be expected to differ by, roughly."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        raise ValueError("no rounds to summarise")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is not in (0, 1)")
    k, coverage = _rank(x.size, confidence)
    median = float(np.median(x))
    low, high = float(x[k - 1]), float(x[x.size - k])
    spread = 100.0 * (high - low) / 2 / abs(median) if median else math.inf
    return {"median": median, "low": low, "high": high, "coverage": round(coverage, 4),
            "rounds": int(x.size), "best": float(x.min()), "spread_pct": spread}


def round_fits(pages, medians):
    """Per round: slope and intercept.  `medians` is (rounds, len(pages))."""
    m = np.asarray(medians, dtype=np.float64)
    fits = [fit(pages, row) for row in m]
    return np.array([s for s, _ in fits]), np.array([i for _, i in fits])


def linearity(pages, medians):
    """How far the pooled points stray from the pooled line, in % of the
    time at the largest page count: a per-page cost that is not one (a
    cache that fills, a batch that changes size) shows here."""
    pooled = np.median(np.asarray(medians, dtype=np.float64), axis=0)
    slope, intercept = fit(pages, pooled)
    predicted = slope * np.asarray(pages, dtype=np.float64) + intercept
    return float(100.0 * np.abs(pooled - predicted).max() / pooled[-1])

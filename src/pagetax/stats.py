"""Intervals over a row's repetitions, and the shift test `pagetax compare`
uses.  numpy only: no C core, no scipy."""
import functools
import math

import numpy as np


def _sample(x, name):
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"{name} must be finite and positive")
    return x


def median_ci(x, confidence=0.95, resamples=2000, seed=0):
    """(low, high): percentile bootstrap interval of the median of x, one
    sample of per-repetition values (times or throughputs alike).  With one
    value, or all equal, the interval is that value.  With 5 values it is
    close to [min, max]: read it as the repetitions' range."""
    x = _sample(x, "x")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is not in (0, 1)")
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, x.size, size=(resamples, x.size))], axis=1)
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(medians, [tail, 1.0 - tail])
    return float(lo), float(hi)


@functools.lru_cache(maxsize=None)
def _u_counts(n, m):
    """How many of the C(n+m, n) orderings of two samples of n and m give
    each Mann-Whitney U, 0 to n*m (the Gaussian binomial's coefficients)."""
    if n == 0 or m == 0:
        return (1,)
    shifted = (0,) * m + _u_counts(n - 1, m)   # the largest value is from the first sample
    other = _u_counts(n, m - 1)
    size = n * m + 1
    return tuple((shifted[u] if u < len(shifted) else 0) + (other[u] if u < len(other) else 0)
                 for u in range(size))


def _cut(n, m, confidence):
    """How many pairwise differences to cut from each end, plus one, for a
    two-sided interval at `confidence` or more: the largest c with
    P(U <= c - 1) <= alpha/2 (the interval is the c-th smallest to the c-th
    largest),
    exact up to 40 values a side, the normal approximation beyond; 0 when
    the samples are too small for any interval at that confidence."""
    alpha = 1.0 - confidence
    if n <= 40 and m <= 40:
        counts = _u_counts(n, m)
        total = math.comb(n + m, n)
        below, c = 0, 0
        while c < len(counts) and 2 * (below + counts[c]) / total <= alpha:
            below += counts[c]
            c += 1
        return c
    z = {0.90: 1.6449, 0.95: 1.9600, 0.99: 2.5758}.get(round(confidence, 2), 1.9600)
    return max(0, int(math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))))


def shift(a, b, confidence=0.95):
    """(ratio, low, high): how much larger b's values are than a's, as the
    Hodges-Lehmann estimate of the shift between log(b) and log(a) (the
    median of every pairwise log ratio) with its distribution-free interval
    (Moses: cut the `_cut` smallest and largest pairwise ratios).  Given
    throughputs, a ratio above 1 means b is faster.  With too few values for
    an interval at `confidence` (3 a side at 95 %), low and high are 0 and
    inf: nothing is significant."""
    a, b = np.log(_sample(a, "a")), np.log(_sample(b, "b"))
    d = np.sort((b[:, None] - a[None, :]).ravel())
    estimate = float(np.exp(np.median(d)))
    c = _cut(a.size, b.size, confidence)
    if c == 0:
        return estimate, 0.0, math.inf
    return estimate, float(np.exp(d[c - 1])), float(np.exp(d[d.size - c]))


def interval_confidence(n, m, confidence=0.95):
    """The confidence the interval of shift() really has for n and m values
    (at least `confidence`; 0 when there is none)."""
    c = _cut(n, m, confidence)
    if c == 0:
        return 0.0
    counts = _u_counts(n, m) if n <= 40 and m <= 40 else None
    if counts is None:
        return confidence
    return 1.0 - 2 * sum(counts[:c]) / math.comb(n + m, n)


def judge(ratio, low, high, min_change):
    """'slower', 'faster' or '' for a shift of throughputs: the whole
    interval beyond the band of +-min_change (the drift between runs of the
    same code, which the repetitions within a run do not show)."""
    band = 1.0 + min_change
    if high < 1.0 / band:
        return "slower"
    if low > band:
        return "faster"
    return ""

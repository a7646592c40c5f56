"""Bootstrap intervals over a row's repetitions, and the significance test
`pagetax compare` uses.  numpy only: no C core, no scipy."""
import numpy as np


def _sample(x, name):
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"{name} must be finite and positive")
    return x


def _boot_medians(rng, x, resamples):
    # every resample at once: a (resamples, n) index array, one median per row
    return np.median(x[rng.integers(0, x.size, size=(resamples, x.size))], axis=1)


def _percentiles(values, confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is not in (0, 1)")
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return float(lo), float(hi)


def median_ci(x, confidence=0.95, resamples=2000, seed=0):
    """(low, high): percentile bootstrap interval of the median of x, one
    sample of per-repetition values (times or throughputs alike).  With one
    value, or all equal, the interval is that value."""
    x = _sample(x, "x")
    return _percentiles(_boot_medians(np.random.default_rng(seed), x, resamples), confidence)


def bootstrap_ratio_ci(a, b, confidence=0.95, resamples=2000, seed=0):
    """(low, high): percentile bootstrap interval of median(b) / median(a).

    a and b are the per-repetition values of one row in run A and run B,
    resampled independently.  The ratio is of whatever is passed: given
    throughputs (GB/s per repetition, as `pagetax compare` passes) it is B's
    speed over A's, > 1 meaning B is faster; given times it is B's time over
    A's, > 1 meaning B is slower.  Deterministic for a given seed.

    With 5 repetitions a percentile bootstrap is rough (it tends to be too
    narrow); significant_change() does not trust it alone."""
    a, b = _sample(a, "a"), _sample(b, "b")
    rng = np.random.default_rng(seed)
    ma = _boot_medians(rng, a, resamples)
    mb = _boot_medians(rng, b, resamples)
    return _percentiles(mb / ma, confidence)


def significant_change(a, b, min_change=0.05, confidence=0.95, resamples=2000, seed=0):
    """(significant, low, high): B differs from A only when the whole
    bootstrap interval (low, high) of median(b)/median(a) lies outside the
    band [1/(1+min_change), 1+min_change].

    Both conditions, because neither is enough alone on a shared VM.  The
    interval only knows the spread within each run; between two runs the
    machine drifts (neighbours, frequency, page placement), and that drift
    is not in the within-run spread, so a purely statistical test over 5
    repetitions flags noise.  A pure threshold, in turn, calls a 10 % change
    real when the repetitions scatter by 30 %.  asv decides the same way:
    a change must exceed its factor (`asv compare -f 1.05`) and pass its
    statistical test.  A single repetition gives a point interval, so then
    only the band decides."""
    if min_change < 0:
        raise ValueError(f"min_change {min_change} must not be negative")
    lo, hi = bootstrap_ratio_ci(a, b, confidence, resamples, seed)
    band = 1.0 + min_change
    return (lo > band or hi < 1.0 / band), lo, hi

"""Per-I/O latency: the C core's log-linear histogram (struct pt_latency in
csrc/pagetax.h) read back as percentiles and a CDF.  The run records one
value per I/O of its instrumented repetitions; this module is the only
reader, so threads are merged and the clock read subtracted here, once.

A value as read spans an I/O's four clock reads: the two inside it whole,
and about half of each at its ends, three reads' cost in all, the same three
the build, copy and release phases have subtracted one each.  Percentiles
follow HdrHistogram: the value at percentile p is the largest value of the
bucket holding the ceil(p/100 * ios)-th smallest I/O, capped by the exact
maximum, so a percentile overstates by at most one bucket's width
(RESOLUTION_PCT of the value).
"""
import functools
import math

import numpy as np

from ._core import ffi, lib

PERCENTILES = (("p50_ns", 50.0), ("p90_ns", 90.0), ("p99_ns", 99.0), ("p999_ns", 99.9))
CLOCK_READS_PER_IO = 3
RESOLUTION_PCT = 100.0 / (1 << (lib.PT_LAT_SUB_BITS - 1))


@functools.lru_cache(maxsize=None)
def bucket_high():
    """The largest value each bucket holds, from the C core's own arithmetic."""
    return np.array([lib.pt_latency_bucket_high(i) for i in range(lib.PT_LAT_BUCKETS)],
                    dtype=np.uint64)


def allocate(threads):
    """One zeroed histogram per thread, for PreparedRun's C threads to fill."""
    return ffi.new("struct pt_latency[]", threads)


class Histogram:
    """All threads' I/Os in one histogram, as read (clock reads included)."""

    def __init__(self, counts, ios, min_ns, max_ns, sum_ns):
        self.counts = counts
        self.ios = ios
        self.min_ns = min_ns
        self.max_ns = max_ns
        self.sum_ns = sum_ns

    @classmethod
    def merged(cls, hists, threads):
        counts = np.zeros(lib.PT_LAT_BUCKETS, dtype=np.uint64)
        ios, sum_ns, lows, highs = 0, 0, [], []
        for i in range(threads):
            h = hists[i]
            counts += np.frombuffer(ffi.buffer(h.count), dtype=np.uint64)
            if h.ios:
                ios += int(h.ios)
                sum_ns += int(h.sum_ns)
                lows.append(int(h.min_ns))
                highs.append(int(h.max_ns))
        return cls(counts, ios, min(lows, default=0), max(highs, default=0), sum_ns)

    def value_at(self, percentile):
        """The value as read at `percentile` (0 < p <= 100), HdrHistogram's way."""
        rank = min(max(math.ceil(percentile / 100.0 * self.ios), 1), self.ios)
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank))
        return min(int(bucket_high()[bucket]), self.max_ns)

    def summary(self, clock_ns):
        """The row's `latency` record, in ns with the clock reads subtracted;
        None when no I/O was recorded."""
        if not self.ios:
            return None
        sub = CLOCK_READS_PER_IO * clock_ns
        out = {name: self.value_at(p) - sub for name, p in PERCENTILES}
        filled = np.flatnonzero(self.counts)
        cum = np.cumsum(self.counts[filled]) / self.ios
        tops = np.minimum(bucket_high()[filled], self.max_ns).astype(np.float64) - sub
        out.update(max_ns=self.max_ns - sub, min_ns=self.min_ns - sub,
                   mean_ns=self.sum_ns / self.ios - sub, ios=self.ios,
                   clock_ns_subtracted=sub, resolution_pct=RESOLUTION_PCT,
                   cdf=[[float(t), float(c)] for t, c in zip(tops, cum)])
        return out

"""Scatter-gather throughput and cost per segment, per design."""
from . import common


class _Copy(common.Benchmark):
    """One repetition per sample, cold: setup makes it cold untimed (flush
    the lines it will touch, scrub the TLB), as pagetax run does.

    The schedule is asv's default for this `repeat`, written out so that it
    is chosen, not inherited (bench/__init__.py has the whole suite's time).
    asv times each of the 60 combinations in `rounds` fresh processes: two
    processes, two placements of the backing in physical memory, and the
    samples show what that changes.  Each process: start and first setup
    (about half a second), warmup_time, then 10 samples, or as many as 20 s
    allow but at least 3 (the slowest, kernel's random 64 B copy, takes a
    quarter second a sample: 3 s)."""
    params = [common.DESIGNS, common.SEG_SIZES, common.PATTERNS]
    param_names = ["design", "seg_bytes", "pattern"]
    number = 1           # so that setup (the cold start) runs before every timed call
    rounds = 2
    repeat = (3, 10, 20.0)
    warmup_time = 0.1
    timeout = 180
    # 2: cold by flush of the working set; memcpy copies segment-wise
    # 3: timed in processes forked by asv's forkserver (asv.conf.json), not
    #    spawned: two interleaved pairs of runs differed by +20 % and +4 %
    #    (medians over the 60 combinations), as much as two runs of one kind
    #    (-11 %, +2 %), so a shift cannot be ruled out
    # 4: I/Os of 256 segments (common.SEGS_PER_IO), not one per repetition;
    #    the extents are the core's own copy, made cold with the rest
    version = 4
    op = None

    def setup(self, design, seg, pattern):
        self.call = common.prepared(design, self.op, seg, pattern, calls=1 << 12)
        self.call.make_cold()


class Gather(_Copy):
    """Backing -> buffer."""
    op = "read"

    def time_gather(self, design, seg, pattern):
        self.call()


class Scatter(_Copy):
    """Buffer -> backing."""
    op = "write"

    def time_scatter(self, design, seg, pattern):
        self.call()


class Throughput(common.Benchmark):
    """GB/s and ns per segment as `pagetax run` measures them: every design
    over the same extents, repetitions round-robin, cold cache, timed in C,
    median of common.REPS.  Measured once per commit in setup_cache."""
    params = [common.DESIGNS, common.OPS, common.SEG_SIZES, common.PATTERNS]
    param_names = ["design", "op", "seg_bytes", "pattern"]
    timeout = 900
    # 2: clock-free totals, flush-based cold, segment-wise memcpy
    # 3: I/Os of 256 segments; every cold repetition writes back what it wrote
    version = 3

    def setup_cache(self):
        return common.run_matrix()

    def setup(self, rows, design, op, seg, pattern):
        common.skip_unless_available(design)

    def track_gbps(self, rows, design, op, seg, pattern):
        return rows[(design, op, seg, pattern)]["gbps"]

    track_gbps.unit = "GB/s"

    def track_ns_per_seg(self, rows, design, op, seg, pattern):
        return rows[(design, op, seg, pattern)]["ns_per_seg"]

    track_ns_per_seg.unit = "ns"

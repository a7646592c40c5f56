"""Scatter-gather: the time of one cold repetition per design, segment size
and pattern, one sample each, as `pagetax run` times it."""
from . import common


class _Copy(common.CoreTimed):
    """Gathers or scatters of common.IO_BYTES, cold (common.CoreTimed)."""
    params = [common.DESIGNS, common.SEG_SIZES, common.PATTERNS]
    param_names = ["design", "seg_bytes", "pattern"]
    # 2: cold by flush of the working set; memcpy copies segment-wise
    # 3: timed in processes forked by asv's forkserver (asv.conf.json), not
    #    spawned: two interleaved pairs of runs differed by +20 % and +4 %
    #    (medians over the 60 combinations), as much as two runs of one kind
    #    (-11 %, +2 %), so a shift cannot be ruled out
    # 4: I/Os of 256 segments (common.SEGS_PER_IO), not one per repetition;
    #    the extents are the core's own copy, made cold with the rest
    # 5: a sample is a cold repetition as the core timed it
    #    (common.CoreTimed), not asv's clock around the call
    version = 5
    op = None

    def setup(self, design, seg, pattern):
        self.call = common.timed(common.sampled(design, self.op, seg, pattern))


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

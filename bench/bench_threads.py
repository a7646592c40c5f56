"""Threads: gathers by 1 and 2 pinned threads through one descriptor table,
every thread on its own pages (seq) or all on the same 64 (hot), where
designs that count references bounce those counts between cores."""
from . import common


class Threads(common.CoreTimed):
    """One cold repetition per sample: the core's own wall time for it, from
    the first thread's start to the last one's end (thread start-up and
    barriers outside it), threads pinned to the CPUs this process may use."""
    params = [common.THREAD_DESIGNS, common.THREAD_SEG_SIZES, common.THREAD_PATTERNS,
              common.THREADS]
    param_names = ["design", "seg_bytes", "pattern", "threads"]
    # 2: clock-free totals, flush-based cold, segment-wise memcpy
    # 3: I/Os of 256 segments; every cold repetition writes back what it wrote
    # 4: time_ samples of the core's own wall time, not one track_ figure
    version = 4

    def setup(self, design, seg, pattern, threads):
        if "threads" not in common.run_config().RunConfig.__dataclass_fields__:
            raise NotImplementedError("this build has no threads")
        self.call = common.timed(common.sampled_threads(design, seg, pattern, threads))

    def time_threads(self, design, seg, pattern, threads):
        self.call()

"""Threads: aggregate throughput and one thread's cost per segment, with
every thread on its own pages (seq) or all on the same 64 (hot), where
designs that count references bounce those counts between cores."""
from . import common


class Threads(common.Benchmark):
    """`pagetax run --threads N --pin --ops read`, cold cache, median of
    common.REPS; measured once per commit in setup_cache."""
    params = [common.THREAD_DESIGNS, common.THREAD_SEG_SIZES, common.THREAD_PATTERNS,
              common.THREADS]
    param_names = ["design", "seg_bytes", "pattern", "threads"]
    timeout = 900
    # 2: clock-free totals, flush-based cold, segment-wise memcpy
    # 3: I/Os of 256 segments; every cold repetition writes back what it wrote
    version = 3

    def setup_cache(self):
        if "threads" not in common.run_config().RunConfig.__dataclass_fields__:
            return None  # a commit from before threads: every combination is n/a
        return {n: common.run_threads(n) for n in common.THREADS}

    def setup(self, rows, design, seg, pattern, threads):
        if rows is None:
            raise NotImplementedError("this build has no threads")
        common.skip_unless_available(design)

    def track_gbps(self, rows, design, seg, pattern, threads):
        return rows[threads][(design, seg, pattern)]["gbps"]

    track_gbps.unit = "GB/s"

    def track_ns_per_seg(self, rows, design, seg, pattern, threads):
        return rows[threads][(design, seg, pattern)]["ns_per_seg"]

    track_ns_per_seg.unit = "ns"

"""The drift reference: the same segments copied by a loop compiled apart
from the core (pagetax/reference.py), which no change to pagetax's engine
can move.  When it moves between two commits beside the designs, the
machine moved, not the code."""
from . import common


class Reference(common.CoreTimed):
    """One cold repetition per sample: the reference's own clock reads
    around its loop (it makes itself cold and writes back after); the
    median of SAMPLE_REPS of them, as the designs' samples."""
    params = [common.OPS, common.SEG_SIZES, common.PATTERNS]
    param_names = ["op", "seg_bytes", "pattern"]

    def setup(self, op, seg, pattern):
        self.call = common.reference(op, seg, pattern, common.SAMPLE_REPS)

    def time_reference(self, op, seg, pattern):
        self.call()

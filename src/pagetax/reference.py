"""The drift reference: a row's segments copied by a loop compiled apart
from the core (csrc/reference/, the pagetax._reference module), timed in the
same rounds as the designs of a cell.  No change to pagetax's engine can
move it; a neighbour, the clock frequency or the memory's state moves it as
it moves the designs beside it, so `pagetax compare` divides each design's
repetitions by the reference's of the same round.

It is made cold, and its dirty lines written back, by the core's own flush
of a `vec` plan over the same extents and buffer.  It runs outside the
core's SIGBUS guard, so only on a backing nothing else can truncate (a
scratch file or memfd pagetax made, not DAX)."""
import numpy as np

from . import extents as _ext
from ._reference import ffi, lib
from .schema import BASELINE

NAME = "reference"
WHY_NONE = ("no drift reference: the backing can fault (a file someone else can truncate, a "
            "DAX medium), and the reference runs outside the core's SIGBUS guard")


def available(backing):
    """Whether the reference may run on this backing."""
    return backing.created and backing.kind not in ("dax", "devdax")


class Reference:
    """One cell's reference: thread 0's extents and buffer of the cell, its
    own copy of the extents, checked against the data area."""

    def __init__(self, backing, data_off, data_bytes, op, ext, buf, *, cache, cold, evict):
        if not available(backing):
            raise ValueError(WHY_NONE)
        _ext.check(ext, data_bytes, buf.nbytes, op)
        self._ext = np.array(ext, copy=True)   # what the loop reads: ours, checked
        self._buf = buf
        self._cold = cache == "cold"
        self._att = backing.attach(BASELINE, data_off, data_bytes)
        self._flush = self._att.prepare(op, self._ext, buf, cache="warm", cold=cold, evict=evict,
                                        calls=1, phase_reps=0)
        data = backing.view()[data_off:data_off + data_bytes]
        self._keep = data
        self._data = ffi.from_buffer("uint8_t[]", data, require_writable=(op == "write"))
        self._c_ext = ffi.from_buffer("struct ref_extent[]", self._ext)
        self._c_buf = ffi.from_buffer("uint8_t[]", buf, require_writable=(op == "read"))
        self._fn = lib.ref_gather if op == "read" else lib.ref_scatter
        self.bytes = int(self._ext["len"].sum())
        self.total_ns = []

    def __call__(self):
        """One repetition, cold as the designs' are, and written back after."""
        if self._cold:
            self._flush.cold_start()
        self.total_ns.append(int(self._fn(self._data, self._c_ext, len(self._ext), self._c_buf)))
        if self._cold:
            self._flush.write_back()

    def close(self):
        self._att.close()

"""cffi build script for pagetax._kernel (API mode, out of line): the probes
`pagetax kernel` times the running kernel with (csrc/kernel/probes.c,
uring.c), compiled apart from the core with the flags every module shares
(csrc/cffi_build.py).  Linux only."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # cffi runs this file by path
import cffi_build  # noqa: E402

ffibuilder = cffi_build.builder(
    "pagetax._kernel", os.path.join(HERE, "probes.h"),
    [os.path.join(HERE, f) for f in ("probes.c", "uring.c")],
    depends=[os.path.join(os.path.dirname(HERE), "pt_clock.h")])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

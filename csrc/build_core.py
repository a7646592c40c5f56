"""cffi build script for pagetax._core (API mode, out of line).

The cdef is the marked part of csrc/pagetax.h, so the binding mirrors the
header exactly (cffi_build.py: the cdef and the flags every module shares).
"""
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)   # cffi runs this file by path: cffi_build is beside it
import cffi_build  # noqa: E402

ffibuilder = cffi_build.builder(
    "pagetax._core", os.path.join(HERE, "pagetax.h"), glob.glob(os.path.join(HERE, "*.c")),
    depends=glob.glob(os.path.join(HERE, "*.h")) + glob.glob(os.path.join(HERE, "*.def")))

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

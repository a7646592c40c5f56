"""cffi build script for pagetax._reference (API mode, out of line): the
drift reference, compiled apart from the core (csrc/reference/reference.c),
with the flags every module shares (csrc/cffi_build.py)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # cffi runs this file by path
import cffi_build  # noqa: E402

ffibuilder = cffi_build.builder("pagetax._reference", os.path.join(HERE, "reference.h"),
                                [os.path.join(HERE, "reference.c")])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

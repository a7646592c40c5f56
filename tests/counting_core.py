"""A build of the C core that counts its reference-count atomics.

The measuring core has no counter in its loops.  This one is compiled from
the same csrc/ with PT_COUNT_ATOMICS, into a shared library in a temporary
folder, and loaded with cffi's ABI mode from the same cdef as the real
binding (the marked part of csrc/pagetax.h).  Each operation on a count
(pt_ref_add, pt_ref_try_add, pt_ref_sub, a pin's second add or subtract,
folio_set_referenced) then counts one call and its amount, so a test tells
one add of N from N adds of 1 (pt_test_take_counts)."""
import glob
import os
import shutil
import subprocess

import numpy as np
import pytest
from cffi import FFI

import pagetax

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


def _cdef():
    with open(os.path.join(CSRC, "pagetax.h")) as f:
        return f.read().split("/* cdef-begin */")[1].split("/* cdef-end */")[0]


def build(folder):
    """(ffi, lib) of a counting core built in `folder`; skips without a C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if not cc or not os.path.isdir(CSRC):
        pytest.skip("needs a C compiler and the csrc/ of a checkout")
    out = os.path.join(folder, "libpagetax_counting.so")
    subprocess.run([cc, "-O2", "-std=gnu11", "-shared", "-fPIC", "-DPT_COUNT_ATOMICS",
                    "-I", CSRC, "-o", out, *sorted(glob.glob(os.path.join(CSRC, "*.c"))),
                    "-lpthread"], check=True, capture_output=True, text=True)
    ffi = FFI()
    ffi.cdef(_cdef())
    return ffi, ffi.dlopen(out)


class CountingCore:
    """One scratch backing in the counting core, and designs attached to it
    by name (the registry's order, read from the core itself)."""

    def __init__(self, ffi, lib, size):
        self.ffi, self.lib = ffi, lib
        self.names = [ffi.string(lib.pt_design_name(i)).decode()
                      for i in range(lib.pt_design_count())]
        self.fd = os.memfd_create("pagetax-counting")
        os.ftruncate(self.fd, size)
        out = ffi.new("pt_backing **")
        self.err = ffi.new("struct pt_error *")
        self.check(lib.pt_backing_map(self.fd, size, 1, 0, 0, out, self.err))
        self.backing = out[0]

    def check(self, rc):
        if rc:
            raise AssertionError(self.ffi.string(self.err.msg).decode())

    def attach(self, design, folio_size="4K"):
        shift = pagetax.designs.FOLIO_SIZES[folio_size]
        flags = shift * self.lib.PT_ATTACH_FOLIO_SHIFT if shift != 12 else 0
        out = self.ffi.new("pt_attachment **")
        self.check(self.lib.pt_attach(self.backing, self.names.index(design), 0, 0, flags, out,
                                      self.err))
        return out[0]

    KINDS = {"add": "PT_COUNT_REF_ADD", "sub": "PT_COUNT_REF_SUB", "pin_add": "PT_COUNT_PIN_ADD",
             "pin_sub": "PT_COUNT_PIN_SUB", "flag": "PT_COUNT_FLAG"}

    def take(self):
        """{kind: (calls, amount)} since the last take: "add" and "sub" on
        counts, "pin_add" and "pin_sub" (a pin's second operation),
        "flag" (folio_set_referenced)."""
        n = self.lib.PT_COUNT_KINDS
        ops = self.ffi.new(f"uint64_t[{n}]")
        amount = self.ffi.new(f"uint64_t[{n}]")
        assert self.lib.pt_test_take_counts(ops, amount) == 0, "this core does not count"
        return {k: (ops[getattr(self.lib, v)], amount[getattr(self.lib, v)])
                for k, v in self.KINDS.items()}

    def attach_flags(self, design, folio_size="4K", flags=0):
        shift = pagetax.designs.FOLIO_SIZES[folio_size]
        flags |= shift * self.lib.PT_ATTACH_FOLIO_SHIFT if shift != 12 else 0
        out = self.ffi.new("pt_attachment **")
        self.check(self.lib.pt_attach(self.backing, self.names.index(design), 0, 0, flags, out,
                                      self.err))
        return out[0]

    def hold(self, att, ext):
        """Build one I/O over ext and keep it: the counts its build made."""
        self.take()
        c_ext = self.ffi.from_buffer("struct pt_extent[]", np.ascontiguousarray(ext))
        self.check(self.lib.pt_hold(att, c_ext, len(ext), self.err))
        return self.take()

    def unhold(self, att):
        self.take()
        self.check(self.lib.pt_unhold(att, self.err))
        return self.take()

    def close(self):
        self.lib.pt_backing_unmap(self.backing)
        os.close(self.fd)

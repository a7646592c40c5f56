"""mincore: the page-table walk alone, no struct page touched."""
import numpy as np

from ..._kernel import ffi, lib
from ...errors import PagetaxError
from ..buffers import BASE_PAGE
from .common import MAX_PAGES, raise_for, timings


class Mincore:
    """mincore: the page-table walk alone, no struct page touched."""
    name = "mincore"
    series = ("mincore",)
    max_pages = MAX_PAGES   # pages per call the sweep may ask for
    needs_root = None
    calls_factor = 1

    def __init__(self, buf):
        self.buf = buf
        self.vec = np.zeros(MAX_PAGES, np.uint8)
        self._vec = ffi.from_buffer("uint8_t[]", self.vec)

    def __call__(self, pages, calls):
        ns, ns_c = timings(calls)
        failed = ffi.new("const char **")
        raise_for(lib.pk_mincore(self.buf.pointer, self.buf.nbytes, BASE_PAGE, pages, self._vec,
                                 calls, ns_c, failed), failed, "mincore")
        return {"mincore": ns}

    def check(self):
        self(MAX_PAGES, 1)
        present = int((self.vec & 1).sum())
        if present != MAX_PAGES:
            raise PagetaxError(f"mincore found {present} of {MAX_PAGES} pages present: the "
                               "walk would time faults")
        return {"pages_present": present, "what": "every page was present (mincore)"}

    def close(self):
        pass

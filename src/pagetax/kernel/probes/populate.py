"""MADV_POPULATE_READ: the slow GUP walk per present page, no reference kept."""
from ..._kernel import ffi, lib
from ..buffers import BASE_PAGE
from .common import MAX_PAGES, pins_during, raise_for, timings


class Populate:
    """MADV_POPULATE_READ over present pages: the slow GUP walk per page
    (follow_page_mask), with no reference kept."""
    name = "populate"
    series = ("populate",)
    max_pages = MAX_PAGES   # pages per call the sweep may ask for
    needs_root = None
    calls_factor = 1

    def __init__(self, buf):
        self.buf = buf

    def __call__(self, pages, calls):
        ns, ns_c = timings(calls)
        failed = ffi.new("const char **")
        raise_for(lib.pk_populate_read(self.buf.pointer, self.buf.nbytes, BASE_PAGE, pages, calls,
                                       ns_c, failed), failed, "MADV_POPULATE_READ")
        return {"populate": ns}

    def check(self):
        pins = pins_during(lambda: self(MAX_PAGES, 4))
        return {"foll_pins_for_4x256_pages": pins,
                "what": f"FOLL_PIN counter moved by {pins} over 4 calls of 256 pages"}

    def close(self):
        pass

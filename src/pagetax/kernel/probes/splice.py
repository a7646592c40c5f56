"""vmsplice + splice: a FOLL_GET reference per page taken by vmsplice into
a pipe, and dropped when splice empties the pipe to /dev/null."""
import fcntl
import os

from ..._kernel import ffi, lib
from ...errors import PagetaxError
from ..buffers import BASE_PAGE
from .common import MAX_PAGES, pins_during, raise_for, timings

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class Splice:
    """vmsplice into a pipe (get_user_pages_fast takes a reference per page),
    then splice to /dev/null (each buffer's release drops it)."""
    name = "vmsplice"
    series = ("vmsplice", "splice")
    max_pages = MAX_PAGES   # pages per call the sweep may ask for
    needs_root = None
    calls_factor = 1

    def __init__(self, buf):
        self.buf = buf
        self.fds = []
        r, w = os.pipe2(os.O_CLOEXEC)
        self.fds += [r, w]
        self.read_fd, self.write_fd = r, w
        want = MAX_PAGES * BASE_PAGE
        try:
            got = fcntl.fcntl(w, _F_SETPIPE_SZ, want)
        except OSError as e:
            self.close()
            raise PagetaxError(f"cannot size a pipe to {want} bytes (F_SETPIPE_SZ): {e.strerror}; "
                               "see /proc/sys/fs/pipe-max-size")
        if got < want:
            self.close()
            raise PagetaxError(f"a pipe holds {got} bytes, not {want}")
        self.null_fd = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        self.fds.append(self.null_fd)

    def __call__(self, pages, calls):
        vms, vms_c = timings(calls)
        spl, spl_c = timings(calls)
        failed = ffi.new("const char **")
        raise_for(lib.pk_vmsplice_splice(self.buf.pointer, self.buf.nbytes, BASE_PAGE, pages,
                                         self.write_fd, self.read_fd, self.null_fd, calls, vms_c,
                                         spl_c, failed), failed, "vmsplice and splice")
        return {"vmsplice": vms, "splice": spl}

    def check(self):
        """The pipe references the caller's pages, it holds no copy, and no
        FOLL_PIN was taken (vmsplice takes plain references)."""
        failed = ffi.new("const char **")
        shares = raise_for(lib.pk_vmsplice_shares(self.buf.pointer, BASE_PAGE, self.write_fd,
                                                  self.read_fd, failed), failed, "vmsplice check")
        if not shares:
            raise PagetaxError("vmsplice copied the buffer instead of referencing its pages: "
                               "this kernel's vmsplice is not the pinning path measured here")
        pins = pins_during(lambda: self(MAX_PAGES, 4))
        return {"pipe_references_pages": True, "foll_pins_for_4x256_pages": pins,
                "what": "a store after vmsplice showed in the pipe's bytes (a reference to "
                        "the page, not a copy); FOLL_PIN counter moved by "
                        f"{pins} over 4 calls of 256 pages (vmsplice takes FOLL_GET references)"}

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []

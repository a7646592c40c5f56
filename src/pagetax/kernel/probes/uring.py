"""io_uring O_DIRECT reads from a loop device: READ, which pins the buffer's
pages per I/O, against READ_FIXED, whose buffer was pinned once when it was
registered."""
import errno
import os

import numpy as np

from ..._kernel import ffi, lib
from ...errors import PagetaxError
from ..buffers import BASE_PAGE
from .common import MAX_PAGES, pins_during, raise_for, timings
from ..loopdev import LoopDevice


def _reference_kind(pinned, fixed_pins, want, ios, n):
    """What READ's per-page references were, from the FOLL_PIN counter:
    "FOLL_PIN" (kernels since the block layer moved to
    iov_iter_extract_pages, after 6.1), or "not FOLL_PIN" (6.1's
    bio_iov_iter_get_pages takes plain FOLL_GET references, which no counter
    shows).  Anything between, or a READ_FIXED
    that pins, is not the path this measures."""
    if pinned is None:
        return "unknown: no FOLL_PIN counters"
    if fixed_pins > 0.1 * want:
        raise PagetaxError(f"{ios} READ_FIXEDs of {n} pages pinned {fixed_pins} pages: a "
                           "registered buffer should need no pin per I/O (another process "
                           "pinning pages meanwhile can also cause this)")
    if pinned >= 0.9 * want:
        return "FOLL_PIN"
    if pinned <= 0.1 * want:
        return "not FOLL_PIN: the FOLL_PIN counter did not move (plain references)"
    raise PagetaxError(f"{ios} O_DIRECT READs of {n} pages pinned {pinned} pages, neither "
                       "one per page nor none: not the path measured here (another process "
                       "pinning pages meanwhile can also cause this)")


def max_unsplit_pages(device_name):
    """The most 4 KiB pages one unregistered O_DIRECT I/O carries without a
    split whatever their frames: beyond the device's max_segments (a page
    not physically contiguous with the last is a segment) the bio must
    split, io_uring's nowait attempt fails with -EAGAIN, and its worker
    retries the whole I/O, pinning every page a second time."""
    try:
        with open(f"/sys/block/{device_name}/queue/max_segments") as f:
            return min(MAX_PAGES, int(f.read()))
    except (OSError, ValueError):
        return MAX_PAGES


class Uring:
    """O_DIRECT reads from a loop device over a tmpfs file, through io_uring:
    READ (the block layer pins the buffer's pages per I/O) and READ_FIXED
    (pinned once, when the buffer was registered)."""
    name = "io_uring"
    series = ("read", "read_fixed")
    max_pages = MAX_PAGES   # until the device says: max_unsplit_pages
    needs_root = "a loop device"
    calls_factor = 8   # a loop device I/O varies by microseconds: more calls per median

    def __init__(self, buf):
        self.buf = buf
        self.ring = None
        self.data = np.random.default_rng(7).integers(0, 256, buf.nbytes, np.uint8)
        self.device = LoopDevice(self.data.tobytes())
        self.max_pages = max_unsplit_pages(self.device.name)
        err = ffi.new("int *")
        self.ring = lib.pk_ring_open(4, err)
        if self.ring == ffi.NULL:
            self.ring = None
            self.device.close()
            raise PagetaxError(f"io_uring_setup: {os.strerror(err[0])}"
                               + (" (io_uring is disabled: /proc/sys/kernel/io_uring_disabled)"
                                  if err[0] in (1, 38) else ""))
        failed = ffi.new("const char **")
        self.fixed_refused = None
        try:
            raise_for(lib.pk_ring_register(self.ring, buf.pointer, buf.nbytes, failed), failed,
                      "io_uring")
        except PagetaxError as e:
            if e.sys_errno != errno.EOPNOTSUPP:
                self.close()
                raise
            # fsdax pages cannot be pinned long-term (FOLL_LONGTERM), by design
            self.fixed_refused = f"{e} (a long-term pin of these pages, refused by design)"
            self.series = ("read",)

    def __call__(self, pages, calls):
        out = {}
        failed = ffi.new("const char **")
        for fixed, series in self._reads():
            ns, ns_c = timings(calls)
            raise_for(lib.pk_ring_read(self.ring, self.device.fd, self.buf.pointer, self.buf.nbytes,
                                       pages * BASE_PAGE, fixed, calls, ns_c, failed), failed,
                      f"io_uring on /dev/{self.device.name}")
            out[series] = ns
        return out

    def _read(self, fixed, pages, calls):
        self.buf.array[:pages * BASE_PAGE] = 0
        failed = ffi.new("const char **")
        ns, ns_c = timings(calls)
        raise_for(lib.pk_ring_read(self.ring, self.device.fd, self.buf.pointer, self.buf.nbytes,
                                   pages * BASE_PAGE, fixed, calls, ns_c, failed), failed, "io_uring")

    def check(self, ios=8):
        """Both reads bring the file's bytes; READ pins every page of every
        I/O (FOLL_PIN), READ_FIXED none.  /proc/vmstat's counters are summed
        from per-CPU deltas that fold in batches, so they are read over
        several I/Os and held to 90 % and 10 %."""
        n = self.max_pages
        want = ios * n
        checks = {"device": f"/dev/{self.device.name}", "pages_per_io": n, "ios": ios}
        for fixed, series in self._reads():
            pins = pins_during(lambda: self._read(fixed, n, ios))
            if not np.array_equal(self.buf.array[:n * BASE_PAGE], self.data[:n * BASE_PAGE]):
                raise PagetaxError(f"io_uring {series} from /dev/{self.device.name} did not "
                                   "bring the file's bytes")
            checks[f"{series}_foll_pins"] = pins
        if self.fixed_refused:
            checks["read_fixed_refused"] = self.fixed_refused
        pinned, fixed_pins = checks["read_foll_pins"], checks.get("read_fixed_foll_pins", 0)
        checks["read_reference"] = _reference_kind(pinned, fixed_pins, want, ios, n)
        checks["what"] = (f"{' and '.join(s for _, s in self._reads())} brought the file's "
                          f"bytes; FOLL_PIN counter over {ios} I/Os of {n} pages: READ {pinned}"
                          + ("" if self.fixed_refused else f", READ_FIXED {fixed_pins}"))
        return checks

    def _reads(self):
        return ((0, "read"),) + (() if self.fixed_refused else ((1, "read_fixed"),))

    def close(self):
        if self.ring is not None:
            lib.pk_ring_close(self.ring)
            self.ring = None
        self.device.close()

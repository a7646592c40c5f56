"""The kernel's paths, one probe each: a callable timing `calls` calls of a
path over the first `pages` pages of a buffer, and a check that the path
did what it is named for.  The C (csrc/kernel/) times each system call
alone; these wrappers own the file descriptors and the checks."""
import errno
import fcntl
import os

import numpy as np

from .._kernel import ffi, lib
from ..errors import PagetaxError
from .buffers import BASE_PAGE
from .loopdev import LoopDevice

MAX_PAGES = 256     # a bio's BIO_MAX_VECS; also the default pipe-max-size (1 MiB)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _raise(rc, failed, where):
    if rc < 0:
        raise PagetaxError(f"{where}: {ffi.string(failed[0]).decode()}: {os.strerror(-rc)}",
                           sys_errno=-rc)
    return rc


def _timings(calls):
    arr = np.zeros(calls, np.uint64)
    return arr, ffi.from_buffer("uint64_t[]", arr)


def foll_pin_counts():
    """(acquired, released): /proc/vmstat's count of FOLL_PIN references,
    machine-wide (mm/gup.c), or None where the kernel lacks them."""
    counts = {}
    with open("/proc/vmstat") as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key in ("nr_foll_pin_acquired", "nr_foll_pin_released"):
                counts[key] = int(value)
    if len(counts) != 2:
        return None
    return counts["nr_foll_pin_acquired"], counts["nr_foll_pin_released"]


def pins_during(action):
    """Pages pinned (FOLL_PIN) machine-wide while action() ran, or None."""
    before = foll_pin_counts()
    action()
    after = foll_pin_counts()
    return None if before is None else after[0] - before[0]


class Splice:
    """vmsplice into a pipe (get_user_pages_fast takes a reference per page),
    then splice to /dev/null (each buffer's release drops it)."""
    name = "vmsplice"
    series = ("vmsplice", "splice")

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
        vms, vms_c = _timings(calls)
        spl, spl_c = _timings(calls)
        failed = ffi.new("const char **")
        _raise(lib.pk_vmsplice_splice(self.buf.pointer, self.buf.nbytes, BASE_PAGE, pages,
                                      self.write_fd, self.read_fd, self.null_fd, calls, vms_c,
                                      spl_c, failed), failed, "vmsplice and splice")
        return {"vmsplice": vms, "splice": spl}

    def check(self):
        """The pipe references the caller's pages, it holds no copy, and no
        FOLL_PIN was taken (vmsplice takes plain references)."""
        failed = ffi.new("const char **")
        shares = _raise(lib.pk_vmsplice_shares(self.buf.pointer, BASE_PAGE, self.write_fd,
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


class Mincore:
    """mincore: the page-table walk alone, no struct page touched."""
    name = "mincore"
    series = ("mincore",)

    def __init__(self, buf):
        self.buf = buf
        self.vec = np.zeros(MAX_PAGES, np.uint8)
        self._vec = ffi.from_buffer("uint8_t[]", self.vec)

    def __call__(self, pages, calls):
        ns, ns_c = _timings(calls)
        failed = ffi.new("const char **")
        _raise(lib.pk_mincore(self.buf.pointer, self.buf.nbytes, BASE_PAGE, pages, self._vec,
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


class Populate:
    """MADV_POPULATE_READ over present pages: the slow GUP walk per page
    (follow_page_mask), with no reference kept."""
    name = "populate"
    series = ("populate",)

    def __init__(self, buf):
        self.buf = buf

    def __call__(self, pages, calls):
        ns, ns_c = _timings(calls)
        failed = ffi.new("const char **")
        _raise(lib.pk_populate_read(self.buf.pointer, self.buf.nbytes, BASE_PAGE, pages, calls,
                                    ns_c, failed), failed, "MADV_POPULATE_READ")
        return {"populate": ns}

    def check(self):
        pins = pins_during(lambda: self(MAX_PAGES, 4))
        return {"foll_pins_for_4x256_pages": pins,
                "what": f"FOLL_PIN counter moved by {pins} over 4 calls of 256 pages"}

    def close(self):
        pass


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
    not physically contiguous with the last is a segment) the bio must split, io_uring's nowait attempt fails with -EAGAIN, and
    its worker retries the whole I/O, pinning every page a second time."""
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
            _raise(lib.pk_ring_register(self.ring, buf.pointer, buf.nbytes, failed), failed,
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
            ns, ns_c = _timings(calls)
            _raise(lib.pk_ring_read(self.ring, self.device.fd, self.buf.pointer, self.buf.nbytes,
                                    pages * BASE_PAGE, fixed, calls, ns_c, failed), failed,
                   f"io_uring on /dev/{self.device.name}")
            out[series] = ns
        return out

    def _read(self, fixed, pages, calls):
        self.buf.array[:pages * BASE_PAGE] = 0
        failed = ffi.new("const char **")
        ns, ns_c = _timings(calls)
        _raise(lib.pk_ring_read(self.ring, self.device.fd, self.buf.pointer, self.buf.nbytes,
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


PROBES = {p.name: p for p in (Mincore, Populate, Splice, Uring)}

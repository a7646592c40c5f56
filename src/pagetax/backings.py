"""Backings: the mapped file every design copies to and from (Backing),
its kinds (tmpfs, a file, fsdax `dax:PATH`, device DAX `devdax:/dev/daxX.Y`
and `auto`), the page size they are mapped with, and how a result file
describes one.

The decisions that real DAX hardware exercises live in small functions
(dax.py: find_dax, devdax_geometry, caches_persistent), so that a machine
with pmem runs exactly this code under `--backing auto`.
"""
import ctypes
import ctypes.util
import errno
import os
import secrets
import stat
import tempfile
import weakref

import numpy as np

from ._core import ffi, lib
from .core import Attachment, Closing  # one way: core imports nothing from here
from .errors import BackingError, PagetaxError, raise_for
from . import daxfaults, machine
from .dax import devdax_geometry, find_dax, statx_dax
from .machine import mount_of, thp_settings

PAGE_SIZES = ("4K", "2M")
HUGE = 2 << 20
MNT_DETACH = 2
SCRATCH_PREFIX = "pagetax-"


class _Mapping:
    """The core's mapping of a backing.  Unmapped once its Backing is closed
    and no numpy view of it and no attachment to it is left, so that no
    order of close(), views and garbage collection can leave a view pointing
    at unmapped memory, or an attachment detaching from a freed backing.
    (Garbage collection clears the weak references to a cycle's objects
    before it finalizes them in any order, so a Backing closed by the
    collector may not see an attachment that is about to be closed too.)"""

    def __init__(self, ptr):
        self.ptr = ptr
        self.closed = False
        self.views = 0
        self.attachments = 0

    def track(self, arr):
        self.views += 1
        weakref.finalize(arr, self._view_gone)
        return arr

    def _view_gone(self):
        self.views -= 1
        self._unmap_if_unused()

    def attached(self):
        self.attachments += 1

    def detached(self):
        self.attachments -= 1
        self._unmap_if_unused()

    def close(self):
        self.closed = True
        self._unmap_if_unused()

    def _unmap_if_unused(self):
        if self.closed and not self.views and not self.attachments and self.ptr != ffi.NULL:
            lib.pt_backing_unmap(self.ptr)
            self.ptr = ffi.NULL


class Backing(Closing):
    """A memory-mapped file that the designs copy to and from.

    Files pagetax creates are unlinked as soon as they are open, so no exit
    path (Ctrl-C, SIGTERM, SIGKILL, a crash) can leave one behind; the memory
    returns when the mapping and descriptor go.  A user's file that already
    exists is mapped read-only unless ``overwrite`` is given.
    """

    def __init__(self, fd, size, *, writable, reserve, kind, path, created, map_flags=0,
                 align=0, notes=None):
        self._ptr = ffi.NULL
        self.fd = fd
        self.kind = kind
        self.path = path
        self.created = created
        self.writable = writable
        self.notes = dict(notes or {})   # how the backing was arranged, for the results
        err = ffi.new("struct pt_error *")
        out = ffi.new("pt_backing **")
        flags = map_flags | (lib.PT_MAP_RESERVE if reserve else 0)
        rc = lib.pt_backing_map(fd, size, int(writable), flags, align, out, err)
        if rc != lib.PT_OK:
            os.close(fd)
            self.fd = -1
            raise_for(rc, err, prefix=f"{path}: ", cls=BackingError)
        self._ptr = out[0]
        self._mapping = _Mapping(self._ptr)
        self._attachments = weakref.WeakSet()
        self.size = size
        self.map_sync = bool(lib.pt_backing_map_sync(self._ptr))
        self.dax_mapping = None   # fsdax: the mapping as its faults show it (daxfaults)
        self.base = int(ffi.cast("uintptr_t", lib.pt_backing_base(self._ptr)))

    # -- constructors ----------------------------------------------------
    @classmethod
    def scratch(cls, size, directory="/dev/shm", map_flags=0):
        """A new tmpfs file: on /dev/shm, or a memfd where that is missing."""
        if directory and os.path.isdir(directory) and os.access(directory, os.W_OK) \
                and mount_of(directory)[1] == "tmpfs":
            path = os.path.join(directory, f"{SCRATCH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.unlink(path)
            return cls(fd, size, writable=True, reserve=True, kind="tmpfs",
                       path=path, created=True, map_flags=map_flags)
        fd = os.memfd_create(f"{SCRATCH_PREFIX}{os.getpid()}", os.MFD_CLOEXEC)
        return cls(fd, size, writable=True, reserve=True, kind="memfd", path="memfd", created=True,
                   map_flags=map_flags)

    @classmethod
    def from_path(cls, path, size=None, *, overwrite=False, kind="file", map_flags=0, notes=None,
                  align=0):
        """A user's path.  A new file is created (and unlinked); an existing
        one is only read, unless overwrite=True lets pagetax size and write it."""
        path = os.fspath(path)
        kw = dict(kind=kind, path=path, map_flags=map_flags, notes=notes, align=align)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise BackingError(f"{path}: parent directory {parent} does not exist") from None
            if size is None:
                raise BackingError(f"{path}: does not exist, and no size was given to create it")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise BackingError(f"{path}: cannot create: {e.strerror}") from None
            os.unlink(path)
            return cls(fd, size, writable=True, reserve=True, created=True, **kw)
        except OSError as e:
            raise BackingError(f"{path}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise BackingError(f"{path}: is a directory; give a file path (pagetax creates "
                               "and removes the file when it does not exist)")
        if not stat.S_ISREG(st.st_mode):
            raise BackingError(f"{path}: is not a regular file")
        if size is None:
            size = st.st_size - st.st_size % 4096
        if overwrite:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                raise BackingError(f"{path}: cannot open for writing: {e.strerror}") from None
            return cls(fd, size, writable=True, reserve=True, created=False, **kw)
        if st.st_size < size or size == 0:
            if not _plainly_scratch(path, st):
                raise BackingError(f"{path}: holds {st.st_size} bytes, fewer than the {size} "
                                   "needed, and does not look like a benchmark file (it is "
                                   "small, another user's, or a system file); check the path: "
                                   "pagetax will not grow or write it")
            raise BackingError(f"{path}: holds {st.st_size} bytes, fewer than the {size} "
                               "needed; pagetax does not grow an existing file without --overwrite")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise BackingError(f"{path}: cannot open: {e.strerror}") from None
        return cls(fd, size, writable=False, reserve=False, created=False, **kw)

    # -- use ---------------------------------------------------------------
    @property
    def synchronous(self):
        """CPU stores reach the medium once flushed, with no fsync: MAP_SYNC
        on fsdax, or device DAX, which is synchronous by construction."""
        return self.map_sync or self.kind == "devdax"

    def view(self):
        """The mapping as a numpy uint8 array (read-only unless writable).
        It stays valid after close(): the memory goes with the last view."""
        if self._ptr == ffi.NULL:
            raise PagetaxError(f"{self.path}: the backing is closed")
        arr = np.frombuffer(ffi.buffer(ffi.cast("uint8_t *", self.base), self.size), np.uint8)
        if not self.writable:
            arr = arr.view()
            arr.flags.writeable = False
        return self._mapping.track(arr)

    def attach(self, design, data_off=0, data_bytes=0, table_pages="2M", folio_size="4K",
               gup_omit=(), devmap=False):
        """A design's descriptors for this backing; the data area is
        [data_off, data_off + data_bytes), or the design's own by default.
        DRAM tables are mapped with 2 MiB pages as vmemmap is, where THP
        allows; table_pages="4K" asks for 4 KiB pages.  folio_size sizes the
        folios of the folio designs (folio, page32, memdesc).  gup_omit leaves
        parts of the kernel's grab out (designs.GUP_PARTS); devmap grabs
        PMD-mapped folios page by page, as device DAX was until 6.14."""
        att = Attachment(self, design, data_off, data_bytes, table_pages, folio_size, gup_omit,
                         devmap)
        self._attachments.add(att)
        return att

    def close(self):
        """Detach every attachment still open, then unmap (once no view is
        left) and close the file."""
        for att in list(getattr(self, "_attachments", ())):
            att.close()
        if self._ptr != ffi.NULL:
            self._mapping.close()
            self._ptr = ffi.NULL
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


SYSTEM_DIRS = ("/etc", "/usr", "/boot", "/proc", "/sys", "/dev", "/bin", "/sbin", "/lib",
               "/lib64", "/var/lib")
SCRATCH_MIN_BYTES = 1 << 20  # a file smaller than this is a user's, not a backing


def _plainly_scratch(path, st):
    """Is an existing file plainly a scratch or benchmark file, so that a
    hint towards --overwrite cannot send a mistyped path to destruction?"""
    real = os.path.realpath(path)
    system = any(real == d or real.startswith(d + "/") for d in SYSTEM_DIRS)
    return not system and st.st_uid == os.geteuid() and st.st_size >= SCRATCH_MIN_BYTES


def parse_spec(spec):
    """--backing text -> (kind, path)."""
    if spec in ("tmpfs", "auto"):
        return spec, None
    for kind in ("dax", "devdax"):
        if spec.startswith(kind + ":"):
            path = spec[len(kind) + 1:]
            if not path:
                raise BackingError(f"--backing {spec}: give a path after '{kind}:'")
            return kind, path
    return "file", spec


def default_size(spec, default, overwrite=False):
    """The backing size when --size is not given: the default, capped by a
    device-DAX node's size (rounded down to its alignment), since a device
    cannot grow.  (size, note), the note saying what was capped, or None."""
    kind, path = parse_spec(spec)
    if kind == "auto":
        found = find_dax()
        if found and found[0] == "devdax" and overwrite:
            kind, path = found
    if kind != "devdax":
        return default, None
    dev_size, align = devdax_geometry(path)
    usable = dev_size // align * align
    if usable >= default:
        return default, None
    return usable, (f"--size defaulted to the device's {usable} bytes (the default "
                    f"{default} is larger than {path})")


def _devdax(dev, size, overwrite):
    dev_size, align = devdax_geometry(dev)
    if size is None:
        size = dev_size
    if size > dev_size:
        raise BackingError(f"devdax:{dev}: --size {size} is larger than the device ({dev_size} bytes)")
    if size % align:
        raise BackingError(f"devdax:{dev}: --size {size} is not a multiple of the device "
                           f"alignment {align}")
    try:
        fd = os.open(dev, (os.O_RDWR if overwrite else os.O_RDONLY) | os.O_CLOEXEC)
    except OSError as e:
        raise BackingError(f"devdax:{dev}: cannot open: {e.strerror}") from None
    return Backing(fd, size, writable=overwrite, reserve=False, kind="devdax", path=dev,
                   created=False, map_flags=lib.PT_MAP_DEVICE, align=align,
                   notes={"device_align": align, "device_size": dev_size})


def _dax_error(path, err):
    mnt, fstype, _ = mount_of(os.path.dirname(os.path.abspath(path)))
    return BackingError(f"dax:{path}: {mnt} is {fstype}, which refused MAP_SYNC "
                        f"({os.strerror(err.sys_errno)}, EOPNOTSUPP): it is not a DAX file "
                        "system; mount one with -o dax, or use --backing auto to fall back")


def open_dax(path, size, overwrite=False, page_size="4K"):
    """A file on an fsdax mount, mapped with MAP_SYNC, or an error that names
    the file system when it is not DAX.  `2M` maps it 2 MiB-aligned, so the
    kernel can fault it in with PMDs; `4K` advises MADV_NOHUGEPAGE, which
    the kernel's DAX fault path honours.  The faults it really took are
    counted (daxfaults), because smaps cannot show them."""
    huge = page_size == "2M"
    try:
        with daxfaults.DaxFaultTrace() as trace:
            b = Backing.from_path(path, size, overwrite=overwrite, kind="dax",
                                  map_flags=lib.PT_MAP_SYNC | (0 if huge else lib.PT_MAP_NO_HUGE),
                                  align=HUGE if huge else 0)
    except BackingError as e:
        if e.sys_errno == errno.EOPNOTSUPP:
            raise _dax_error(path, e) from None
        raise
    b.notes["statx_dax"] = statx_dax(b.fd)
    b.dax_mapping = daxfaults.mapping(trace.counts, trace.why, b.size)
    return b


def _hugetlb_free():
    try:
        with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
            return int(f.read()) * HUGE
    except (OSError, ValueError):
        return 0


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _private_huge_tmpfs(size):
    """A file on a huge=always tmpfs mounted just for this run.  The file is
    unlinked and the mount detached (MNT_DETACH) before this returns: the
    mapping keeps them alive, and no exit path can leave either behind."""
    libc = _libc()
    target = tempfile.mkdtemp(prefix=SCRATCH_PREFIX + "huge-")
    try:
        opts = f"size={size + HUGE},huge=always,mode=0700".encode()
        if libc.mount(b"pagetax", target.encode(), b"tmpfs", 0, opts) != 0:
            err = ctypes.get_errno()
            raise BackingError(f"--page-size 2M: mounting a huge=always tmpfs failed: "
                               f"{os.strerror(err)}")
        try:
            path = os.path.join(target, f"{SCRATCH_PREFIX}{secrets.token_hex(4)}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.unlink(path)
        finally:
            libc.umount2(target.encode(), MNT_DETACH)
    finally:
        os.rmdir(target)
    return Backing(fd, size, writable=True, reserve=True, kind="tmpfs", path=path, created=True,
                   notes={"huge_pages_by": "a private tmpfs mounted huge=always",
                          "fs_type": "tmpfs", "mount_options": opts.decode()})


def tmpfs_2m(size):
    """A tmpfs-like backing mapped with 2 MiB pages, by the first way the
    machine allows: reserved hugetlb pages, a private huge=always tmpfs (as
    root), or MADV_HUGEPAGE where shmem_enabled permits it."""
    if size % HUGE:
        raise BackingError(f"--page-size 2M: --size {size} is not a multiple of 2 MiB")
    if _hugetlb_free() >= size:
        fd = os.memfd_create(SCRATCH_PREFIX + "hugetlb",
                             os.MFD_CLOEXEC | os.MFD_HUGETLB | os.MFD_HUGE_2MB)
        return Backing(fd, size, writable=True, reserve=True, kind="memfd", path="memfd (hugetlb)",
                       created=True, notes={"huge_pages_by": "a hugetlbfs memfd (MFD_HUGETLB)",
                                            "memfd_fs": "hugetlbfs"})
    if os.geteuid() == 0:
        return _private_huge_tmpfs(size)
    if thp_settings().get("shmem_enabled") in ("always", "within_size", "advise", "force"):
        b = Backing.scratch(size, map_flags=lib.PT_MAP_HUGE_ADVISE)
        b.notes["huge_pages_by"] = "MADV_HUGEPAGE on /dev/shm"
        return b
    raise BackingError("--page-size 2M needs one of: reserved huge pages "
                       f"(echo {size // HUGE} > /proc/sys/vm/nr_hugepages), root (to mount a "
                       "huge=always tmpfs), or shmem_enabled=advise "
                       "(/sys/kernel/mm/transparent_hugepage/shmem_enabled)")


def check_fits_in_ram(size):
    """A tmpfs backing lives in RAM: refuse one the machine cannot hold,
    before posix_fallocate pushes it into reclaim or the OOM killer."""
    avail = machine.mem_available()
    if avail is not None and size > avail:
        raise BackingError(f"--size {size} is more than the memory available "
                           f"(MemAvailable {avail} bytes), and a tmpfs backing lives in RAM")


def _open(kind, path, size, overwrite, page_size):
    if kind == "tmpfs":
        check_fits_in_ram(size)
        return tmpfs_2m(size) if page_size == "2M" else Backing.scratch(size)
    if kind == "dax":
        return open_dax(path, size, overwrite, page_size)
    if kind == "devdax":
        return _devdax(path, size, overwrite)
    return Backing.from_path(path, size, overwrite=overwrite)


def open_backing(spec, size, *, overwrite=False, page_size="4K"):
    """The backing a --backing spec names, mapped as asked."""
    if page_size not in PAGE_SIZES:
        raise BackingError(f"unknown page size {page_size!r} (choose from {', '.join(PAGE_SIZES)})")
    kind, path = parse_spec(spec)
    notes = {}
    if kind == "auto":
        found = find_dax()
        if found and (found[0] == "dax" or overwrite):
            kind, path = found
            if kind == "dax":
                path = os.path.join(path, f"{SCRATCH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
            notes["auto"] = f"chose {kind}:{path}"
        else:
            kind = "tmpfs"
            notes["auto"] = ("fell back to tmpfs: a device-DAX node was found, but pagetax "
                             "writes it only with --overwrite") if found else \
                ("fell back to tmpfs: no DAX mount (-o dax) or device-DAX node found")
    try:
        b = _open(kind, path, size, overwrite, page_size)
    except BackingError as e:
        if kind != "dax" or "auto" not in notes:  # auto may fall back; dax: never does
            raise
        notes["auto"] = f"fell back to tmpfs: {e}"
        b = _open("tmpfs", None, size, overwrite, page_size)
    b.notes.update(notes, page_size_requested=page_size)
    return b


def describe(backing):
    """The `machine.backing` object of a result file."""
    if "fs_type" in backing.notes:  # a mount made (and detached) for this run
        mnt, fstype, opts = "(private)", backing.notes["fs_type"], backing.notes["mount_options"]
    elif backing.kind == "memfd":
        mnt, fstype, opts = "memfd", backing.notes.get("memfd_fs", "tmpfs"), ""
    else:
        mnt, fstype, opts = mount_of(os.path.dirname(os.path.abspath(backing.path)))
    return {
        "kind": backing.kind,
        "path": backing.path,
        "created_by_pagetax": backing.created,
        "writable": backing.writable,
        # device DAX needs no MAP_SYNC: its mappings are synchronous by construction
        "map_sync": "not needed" if backing.kind == "devdax" else backing.map_sync,
        "synchronous": backing.synchronous,
        "notes": backing.notes,
        # A file someone else can name can be truncated under the mapping
        # (SIGBUS); a device or DAX medium can report a media error.
        "data_path_could_fault": not backing.created or backing.kind in ("dax", "devdax"),
        "size_bytes": backing.size,
        "fs_type": fstype,
        "mount_point": mnt,
        "mount_options": opts,
        "mapping": backing.dax_mapping or machine.mapping_page_size(machine.smaps_of(backing.base)),
    }

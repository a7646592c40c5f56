"""Backing kinds: tmpfs, a file, fsdax (`dax:PATH`), device DAX
(`devdax:/dev/daxX.Y`) and `auto`; and the page size they are mapped with.

The decisions that real DAX hardware exercises live in small functions here
(find_dax, devdax_geometry, caches_persistent), so that a machine with pmem
runs exactly this code under `--backing auto`.
"""
import ctypes
import ctypes.util
import errno
import glob
import os
import secrets
import stat
import tempfile

from ._core import lib
from .core import SCRATCH_PREFIX, Backing
from .errors import BackingError
from . import machine
from .machine import mount_of, thp_settings

PAGE_SIZES = ("4K", "2M")
HUGE = 2 << 20
MNT_DETACH = 2


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


def statx_dax(path):
    """True/False from statx's STATX_ATTR_DAX, None where the kernel is silent."""
    rc = lib.pt_statx_dax(os.fsencode(path))
    return None if rc < 0 else bool(rc)


def caches_persistent():
    """True where every NVDIMM region says its persistence domain is the CPU
    cache (eADR), as libpmem reads it; False with no regions."""
    domains = []
    for f in glob.glob("/sys/bus/nd/devices/region*/persistence_domain"):
        try:
            with open(f) as fh:
                domains.append(fh.read().strip())
        except OSError:
            pass
    return bool(domains) and all(d == "cpu_cache" for d in domains)


def find_dax():
    """(kind, path) of the first DAX place this machine has, or None: an
    fsdax mount (-o dax, dax=always) first, then a device-DAX node."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                opts = set(fields[5].split(",")) | set((rfields[2] if len(rfields) > 2 else "").split(","))
                if opts & {"dax", "dax=always"} and os.access(fields[4], os.W_OK):
                    return "dax", fields[4].replace("\\040", " ")
    except OSError:
        pass
    devices = sorted(glob.glob("/dev/dax*"))
    return ("devdax", devices[0]) if devices else None


def devdax_geometry(dev):
    """(size, align) of a device-DAX node, from sysfs."""
    try:
        st = os.stat(dev)
    except FileNotFoundError:
        raise BackingError(f"devdax:{dev}: no such device") from None
    if not stat.S_ISCHR(st.st_mode):
        raise BackingError(f"devdax:{dev}: not a character device (device DAX is /dev/daxX.Y)")
    base = f"/sys/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    try:
        with open(f"{base}/size") as f:
            size = int(f.read())
    except (OSError, ValueError):
        raise BackingError(f"devdax:{dev}: {base}/size is missing; is this a device-DAX node?") from None
    try:
        with open(f"{base}/align") as f:
            align = int(f.read())
    except (OSError, ValueError):
        align = HUGE  # the device-dax default
    return size, align


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


def open_dax(path, size, overwrite=False):
    """A file on an fsdax mount, mapped with MAP_SYNC, or an error that names
    the file system when it is not DAX."""
    try:
        return Backing.from_path(path, size, overwrite=overwrite, kind="dax",
                                 map_flags=lib.PT_MAP_SYNC,
                                 notes={"statx_dax": statx_dax(os.path.dirname(os.path.abspath(path)))})
    except BackingError as e:
        if e.sys_errno == errno.EOPNOTSUPP:
            raise _dax_error(path, e) from None
        raise


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
        return open_dax(path, size, overwrite)
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

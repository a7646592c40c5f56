"""What this machine's DAX is, read where the kernel says it: statx's DAX
attribute, the NVDIMM regions' persistence domain, the first fsdax mount or
device-DAX node, and a device-DAX node's size and alignment.  How the kernel
mapped an fsdax file is daxfaults.py; opening DAX backings is backings.py."""
import glob
import os
import stat

from . import machine
from ._core import lib
from .errors import BackingError

HUGE = 2 << 20


def statx_dax(path_or_fd):
    """True/False from statx's STATX_ATTR_DAX for a path or an open file,
    None where the kernel is silent."""
    if isinstance(path_or_fd, int):
        rc = lib.pt_statx_dax_fd(path_or_fd)
    else:
        rc = lib.pt_statx_dax(os.fsencode(path_or_fd))
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
    for mnt, _, opts in machine.mounts():
        if set(opts.split(",")) & {"dax", "dax=always"} and os.access(mnt, os.W_OK):
            return "dax", mnt
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

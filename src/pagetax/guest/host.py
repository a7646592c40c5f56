"""The host's tools a guest is made of: QEMU, a kernel with its modules, a
static busybox, and the accelerator QEMU can use."""
import dataclasses
import functools
import glob
import os
import re
import shutil
import struct
import subprocess

from .. import machine
from .namespace import VmError

PT_INTERP = 3


@dataclasses.dataclass(frozen=True)
class Host:
    """What a guest is made of, found on this machine."""
    qemu: str
    modprobe: str
    kernel: str           # /boot/vmlinuz-VERSION
    kernel_version: str
    busybox: str


def _which(tool, package):
    # ndctl and mkfs run inside the guest from the host's root, so they must be here too.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(tool, path=path)
    if not found:
        raise VmError(f"{tool} is missing: apt-get install {package}")
    return found


def _version_key(version):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", version)]


def _installed_kernels():
    versions = [p[len("/boot/vmlinuz-"):] for p in glob.glob("/boot/vmlinuz-*")]
    return sorted((v for v in versions if os.path.exists(f"/lib/modules/{v}/modules.dep")),
                  key=_version_key)


def _guest_kernel(wanted=None):
    """The version of the kernel a guest boots: `wanted` (a version, or
    /boot/vmlinuz-VERSION), else the newest in /boot with its modules."""
    versions = _installed_kernels()
    if wanted:
        version = os.path.basename(wanted)
        version = version[len("vmlinuz-"):] if version.startswith("vmlinuz-") else version
        if version not in versions:
            raise VmError(f"--kernel {wanted}: no /boot/vmlinuz-{version} with its modules in "
                          f"/lib/modules (installed: {', '.join(versions) or 'none'}; Debian: "
                          f"apt-get install linux-image-{version})")
    elif not versions:
        raise VmError("no kernel in /boot with its modules in /lib/modules: "
                      "apt-get install linux-image-amd64")
    else:
        version = versions[-1]
    if not os.access(f"/boot/vmlinuz-{version}", os.R_OK):
        raise VmError(f"/boot/vmlinuz-{version} is not readable: run as root")
    return version


def _is_static(path):
    """A 64-bit ELF file without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != PT_INTERP for i in range(phnum))


def _static_busybox():
    # The initramfs has no C library for a dynamically linked one.
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(path) and _is_static(path):
            return path
    raise VmError("no statically linked busybox: apt-get install busybox-static")


def check_tools(kernel=None):
    """The host's QEMU, kernel (`kernel`, a version, or the newest) and
    busybox, or a VmError naming the Debian package to install."""
    qemu = _which("qemu-system-x86_64", "qemu-system-x86")
    modprobe = _which("modprobe", "kmod")
    for tool, package in (("ndctl", "ndctl"), ("mkfs.ext4", "e2fsprogs"), ("mkfs.xfs", "xfsprogs")):
        _which(tool, package)
    version = _guest_kernel(kernel)
    return Host(qemu, modprobe, f"/boot/vmlinuz-{version}", version, _static_busybox())


@functools.lru_cache(maxsize=None)
def qemu_version(qemu):
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else "unknown"


def choose_accelerator():
    """("kvm" or "tcg", why).  KVM only where the CPU offers hardware
    virtualisation (vmx or svm) and /dev/kvm opens: a paravirtual /dev/kvm
    without them (kvm_pvm) hangs a stock kernel without a word."""
    if not machine.cpu_flags() & {"vmx", "svm"}:
        return "tcg", ("no vmx or svm in /proc/cpuinfo, and a /dev/kvm without them hangs "
                       "a stock kernel")
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return "tcg", f"/dev/kvm: {e.strerror}"
    return "kvm", "vmx or svm in /proc/cpuinfo, and /dev/kvm opens"


GUEST_TESTS = os.path.join("tests", "test_dax_guest.py")


def dax_tests():
    """tests/test_dax_guest.py of the source tree this pagetax runs from (an
    editable install's), or of the checkout in the current folder (CI
    installs the package, then runs from its clone)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))  # src/..
    for root in (here, os.getcwd()):
        path = os.path.join(root, GUEST_TESTS)
        if os.path.isfile(path):
            return path
    raise VmError(f"{GUEST_TESTS} is missing: run `pagetax vm test` from a pagetax "
                  "source checkout")



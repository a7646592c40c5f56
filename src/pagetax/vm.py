"""`pagetax vm`, the host side: boot a throw-away QEMU guest with an emulated
NVDIMM, make it the namespace asked for (fsdax with ext4 or xfs, or devdax),
and run a command inside it, so that the DAX paths run for real on a machine
without pmem.

The guest needs no disk image.  Its initramfs, built here from what is
installed, holds a static busybox, the kernel's NVDIMM, DAX, file-system and
9p modules, and an init script that mounts the host's root read-only over 9p,
chroots into it and starts pagetax.vm_guest with the host's own Python.  A
second, writable 9p share (a temp folder here) carries the job in and the
guest's report, output and files out.

One boot makes one namespace, on a fresh region: that is what the memmap
figures measure (switching modes within a boot made them noisy), and it
keeps every run independent of the last.
"""
import contextlib
import ctypes
import dataclasses
import functools
import glob
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

from . import vm_guest
from .errors import PagetaxError
from .sizes import format_size

MODES = ("fsdax", "devdax")
MAPS = ("mem", "dev")
FILE_SYSTEMS = ("ext4", "xfs")
ALIGNS = ("4k", "2M")
MIB, GIB = 1 << 20, 1 << 30
NVDIMM_ALIGN = 2 * MIB            # the memory backend's alignment, and the region's
MIN_CAPACITY = 64 * MIB
MIN_MEMORY = 512 * MIB
MIN_XFS_CAPACITY = 320 * MIB      # xfsprogs makes no file system under 300 MB
# The guest's modules, each loaded after its dependencies (modprobe
# --show-depends); FS_DAX, FS_DAX_PMD and ZONE_DEVICE are built into Debian's
# kernel.  A file system's module is loaded only for its namespace: ext4's
# and xfs's cost a TCG boot two seconds.  kmem (system-ram mode) and nd_e820
# (memmap= pmem) serve no namespace here.
MODULES = ("libnvdimm", "nfit", "nd_pmem", "dax_pmem", "device_dax",
           "virtio_pci", "9pnet_virtio", "9p", "loop")   # loop: pagetax kernel's O_DIRECT
XZ_MAGIC = b"\xfd7zXZ\x00"
SHARE_TAG = "pagetax_share"
KERNEL_TROUBLE = re.compile(r"\bBUG:|\bOops:|Kernel panic")
KVM_BOOT_DEADLINE = 30            # seconds for a KVM guest to reach init before it counts as hung
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PT_INTERP = 3
PR_SET_PDEATHSIG = 1
SIGKILL = int(signal.SIGKILL)
TCG_NOTE = ("TCG emulates every guest instruction in software (a memcpy runs 10-18x slower "
            "than on the host, Python 20-45x), and the two vCPUs take turns on one host "
            "thread: GB/s and ns figures say nothing about real hardware; correctness and "
            "memory figures hold")
KVM_NOTE = ("the CPU runs natively under KVM, but the NVDIMM is a host file in DRAM, not pmem "
            "media: compare designs within this run, not with real pmem")


class VmError(PagetaxError):
    """A guest that cannot be built, booted or run; one line that says why."""


@dataclasses.dataclass(frozen=True)
class Namespace:
    """What a guest makes of its NVDIMM: fsdax with a file system, or devdax
    with a page alignment; its struct pages in DRAM (map=mem) or on the
    device itself (map=dev)."""
    mode: str = "fsdax"
    map: str = "mem"
    fs: Optional[str] = None      # fsdax only; ext4 when not given
    align: Optional[str] = None   # devdax only; 2M when not given

    def __post_init__(self):
        _choose("mode", self.mode, MODES)
        _choose("map", self.map, MAPS)
        if self.mode == "fsdax":
            if self.align is not None:
                raise VmError("--align is for devdax; an fsdax namespace takes ndctl's default")
            object.__setattr__(self, "fs", self.fs or "ext4")
            _choose("file system", self.fs, FILE_SYSTEMS)
        else:
            if self.fs is not None:
                raise VmError("--fs is for fsdax; a devdax namespace has no file system")
            object.__setattr__(self, "align", self.align or "2M")
            _choose("alignment", self.align, ALIGNS)

    @property
    def label(self):
        """fsdax-ext4-mem, devdax-2M-dev, ..."""
        return f"{self.mode}-{self.fs or self.align}-{self.map}"

    @property
    def ndctl_options(self):
        """The create-namespace options that make it."""
        align = f" --align={self.align}" if self.mode == "devdax" else ""
        return f"-m {self.mode} --map={self.map}{align}"

    @classmethod
    def from_label(cls, label):
        parts = label.split("-")
        if len(parts) != 3:
            raise VmError(f"namespace {label!r} is not like fsdax-ext4-mem or devdax-2M-dev")
        mode, kind, map_ = parts
        return cls(mode, map_, **({"fs": kind} if mode == "fsdax" else {"align": kind}))


def _choose(what, value, allowed):
    if value not in allowed:
        raise VmError(f"unknown {what} {value!r} (choose from {', '.join(allowed)})")


# The namespaces `pagetax vm memmap` boots, one each, and the pagetax model
# of what the kernel keeps for them.
MEMMAP_NAMESPACES = (Namespace("fsdax", "mem"), Namespace("fsdax", "dev"),
                     Namespace("devdax", "mem", align="4k"), Namespace("devdax", "mem", align="2M"),
                     Namespace("devdax", "dev", align="2M"))
# `pagetax vm kernel`: a DAX file's pages and a device's, PMD-mapped.
KERNEL_NAMESPACES = (Namespace("fsdax", "mem", fs="ext4"), Namespace("devdax", "mem", align="2M"))
# ext4 and xfs, struct pages in DRAM and on the device (altmap's real
# counterpart), and device DAX at its default alignment.
TEST_NAMESPACES = (Namespace("fsdax", "mem", fs="ext4"), Namespace("fsdax", "dev", fs="xfs"),
                   Namespace("devdax", "mem", align="2M"))


def memmap_design(ns):
    """The design whose metadata model stands for a namespace's struct pages:
    map=dev is altmap; devdax at 2M keeps 2 vmemmap pages per compound page;
    anything else is a struct page per 4 KiB page."""
    if ns.map == "dev":
        return "altmap"
    return "devdax-dedup-2M" if ns.mode == "devdax" and ns.align == "2M" else "page"


def memmap_figures(result):
    """A memmap guest's measurement beside pagetax's model of its design,
    taken at the region's capacity as `pagetax metadata --capacity` does,
    with the differences and why (memmap_explained)."""
    from . import metadata  # numpy: not for every vm command
    ns = result.namespace
    region, size = result.ndctl["region"]["size"], result.ndctl["namespace"]["size"]
    design = memmap_design(ns)
    model = metadata.model(design)
    return memmap_explained({
        "namespace": ns.label, "ndctl": ns.ndctl_options, "region_bytes": region,
        "namespace_bytes": size, "dram_bytes": result.memmap["drop_bytes"],
        "device_bytes": region - size, "model": design,
        "model_dram_bytes": model.dram(region), "model_device_bytes": model.device(region),
        "free_pages": result.memmap, "guest": result.labels()})


GUEST_TESTS = os.path.join("tests", "test_dax_guest.py")


def dax_tests():
    """tests/test_dax_guest.py of the source tree this pagetax runs from (an
    editable install's), or of the checkout in the current folder (CI
    installs the package, then runs from its clone)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # src/..
    for root in (here, os.getcwd()):
        path = os.path.join(root, GUEST_TESTS)
        if os.path.isfile(path):
            return path
    raise VmError(f"{GUEST_TESTS} is missing: run `pagetax vm test` from a pagetax "
                  "source checkout")


# -- the host's tools ---------------------------------------------------------

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
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if not flags & {"vmx", "svm"}:
        return "tcg", ("no vmx or svm in /proc/cpuinfo, and a /dev/kvm without them hangs "
                       "a stock kernel")
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return "tcg", f"/dev/kvm: {e.strerror}"
    return "kvm", "vmx or svm in /proc/cpuinfo, and /dev/kvm opens"


# -- the initramfs ------------------------------------------------------------

def module_files(host, namespace):
    """The .ko files a namespace's guest needs, dependencies first."""
    files = []
    for name in MODULES + ((namespace.fs,) if namespace.fs else ()):
        # No modprobe.d (-C /dev/null, --ignore-install): ndctl's hook there would
        # run `ndctl load-keys`, and hooks print install lines instead of insmod.
        p = subprocess.run([host.modprobe, "-C", "/dev/null", "--ignore-install", "-S",
                            host.kernel_version, "--show-depends", name],
                           capture_output=True, text=True)
        if p.returncode:
            why = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
            raise VmError(f"kernel {host.kernel_version} has no module {name}: {why}")
        for line in p.stdout.splitlines():
            words = line.split()
            if words[:1] == ["insmod"] and words[1] not in files:
                files.append(words[1])
    return files


def _module_bytes(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".ko.xz"):  # Debian 13 compresses its modules; insmod wants them plain
        return lzma.decompress(data)
    if not path.endswith(".ko"):
        raise VmError(f"{path}: compressed in a way pagetax cannot unpack")
    return data


class _Cpio:
    """A newc cpio archive, the format the kernel unpacks an initramfs from.
    Written here rather than by cpio(1) so that /dev/console can be a device
    node without root's mknod."""

    def __init__(self, f):
        self.f = f
        self.ino = 0

    def add(self, name, mode, data=b"", rdev=(0, 0)):
        self.ino += 1
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        self.f.write(b"070701" + "".join(f"{x:08X}" for x in fields).encode()
                     + name.encode() + b"\0")
        self._pad()
        self.f.write(data)
        self._pad()

    def _pad(self):
        self.f.write(b"\0" * (-self.f.tell() % 4))

    def close(self):
        self.add("TRAILER!!!", 0)


def init_script(python):
    """The guest's /init: busybox sh, as PID 1.  It marks each phase on the
    console for the host to time, and powers off whatever happens.  The agent
    needs nothing outside the standard library, so its Python skips site
    (-S), whose editable-install finder alone takes a TCG guest a second,
    and finds pagetax through PYTHONPATH instead."""
    root, share, scratch = "/host", vm_guest.SHARE, vm_guest.SCRATCH
    package_parent = shlex.quote(os.path.dirname(os.path.dirname(os.path.abspath(vm_guest.__file__))))
    python = shlex.quote(python)
    return f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark() {{ echo "{vm_guest.MARK} $1 $(cut -d' ' -f1 /proc/uptime)"; }}
fail() {{ echo "pagetax-vm: init: $1 failed"; poweroff -f; }}
mark boot
for m in /modules/*.ko; do insmod "$m" || fail "insmod $m"; done
mark modules
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot {root} \\
    || fail "mounting the host's root over 9p"
mount -t tmpfs -o mode=1777 tmpfs {root}/run && mkdir -p {root}{share} {root}{scratch}/tmp \\
    || fail "a tmpfs /run"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 {SHARE_TAG} {root}{share} \\
    || fail "mounting the results share"
for d in proc sys dev; do mount --bind /$d {root}/$d || fail "binding /$d"; done
mkdir -p {root}/dev/shm && mount -t tmpfs -o mode=1777 tmpfs {root}/dev/shm \\
    || fail "a tmpfs /dev/shm"
mount -t tracefs tracefs {root}/sys/kernel/tracing || echo "pagetax-vm: init: no tracefs"
mark mounts
chroot {root} /usr/bin/env -i PATH={GUEST_PATH} HOME={scratch} TMPDIR={scratch}/tmp LANG=C.UTF-8 \\
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={package_parent} \\
    {python} -S -m pagetax.vm_guest {vm_guest.JOB}
echo "pagetax-vm: agent exit $?"
umount {root}{share}
poweroff -f
"""


def build_initramfs(path, host, namespace, python):
    with open(path, "wb") as f:
        archive = _Cpio(f)
        for d in ("bin", "dev", "proc", "sys", "host", "modules"):
            archive.add(d, stat.S_IFDIR | 0o755)
        archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
        with open(host.busybox, "rb") as bb:
            archive.add("bin/busybox", stat.S_IFREG | 0o755, bb.read())
        for i, ko in enumerate(module_files(host, namespace)):
            name = os.path.basename(ko).split(".ko")[0]
            # the number keeps init's glob in load order
            archive.add(f"modules/{i:02d}-{name}.ko", stat.S_IFREG | 0o644, _module_bytes(ko))
        archive.add("init", stat.S_IFREG | 0o755, init_script(python).encode())
        archive.close()


def boot_kernel(host, work):
    """The kernel QEMU boots.  Where the kernel has PVH (CONFIG_PVH) and its
    bzImage holds an xz payload (Debian's), the payload unpacked: QEMU enters
    the ELF directly, skipping the BIOS's real-mode boot and the
    decompressor, four of a TCG boot's seconds.  Otherwise the bzImage."""
    try:
        with open(f"/boot/config-{host.kernel_version}") as f:
            pvh = "CONFIG_PVH=y\n" in f.read()
    except OSError:
        pvh = False
    with open(host.kernel, "rb") as f:
        image = f.read()
    start = image.find(XZ_MAGIC)
    if not pvh or start < 0:
        return host.kernel
    elf = lzma.LZMADecompressor().decompress(image[start:])
    if elf[:4] != b"\x7fELF":
        return host.kernel
    path = os.path.join(work, "vmlinux")
    with open(path, "wb") as f:
        f.write(elf)
    return path


# -- a guest --------------------------------------------------------------------

def check_sizes(capacity, memory, namespace=None):
    least = MIN_XFS_CAPACITY if namespace and namespace.fs == "xfs" else MIN_CAPACITY
    if capacity % NVDIMM_ALIGN or capacity < least:
        raise VmError(f"NVDIMM capacity {format_size(capacity)} must be a multiple of 2M, at "
                      f"least {format_size(least)}{' for xfs' if least != MIN_CAPACITY else ''}")
    if memory % MIB or memory < MIN_MEMORY:
        raise VmError(f"guest memory {format_size(memory)} must be whole MiB, "
                      f"at least {format_size(MIN_MEMORY)}")


def _qemu_opt(path):
    return path.replace(",", ",,")  # QEMU's escape for a comma in an option value


def qemu_argv(host, accel, kernel, initrd, image, share, capacity, memory):
    # TCG runs both vCPUs on one host thread (thread=single): under QEMU 7.2's
    # multi-threaded TCG, a vCPU went on trapping on an int3 that text_poke_bp
    # had already replaced (turning a trace event on or off patches the
    # kernel), with interrupts off, so the patching vCPU waited for it forever.
    # cpu max: numpy's CPU baseline.
    cpu = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else \
        ["-accel", "tcg,thread=single", "-cpu", "max"]
    ram, nv = memory // MIB, capacity // MIB
    return [host.qemu, "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-no-reboot", "-machine", "pc,nvdimm=on", *cpu, "-smp", "2",
            "-m", f"{ram}M,slots=2,maxmem={ram + nv}M",
            "-object", f"memory-backend-file,id=nvmem,share=on,mem-path={_qemu_opt(image)},"
                       f"size={nv}M,align=2M",
            # No label-size: a label area misaligns a 1 GiB region and create-namespace fails.
            "-device", "nvdimm,memdev=nvmem,id=nvdimm0",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                       "multidevs=remap",
            "-virtfs", f"local,path={_qemu_opt(share)},mount_tag={SHARE_TAG},security_model=none",
            "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 panic=-1 quiet"]


class _Guest:
    """One QEMU process.  A thread reads its console (the serial port and
    QEMU's own messages) and times the phase marks init and the agent print."""

    def __init__(self, argv, on_console):
        libc = ctypes.CDLL(None)
        self.lines = []
        self.marks = {}                       # phase -> (host seconds, guest uptime)
        self.booted_or_gone = threading.Event()
        self.started = time.monotonic()
        # Its own session: Ctrl-C reaches pagetax, which kills it; and it gets
        # SIGKILL should pagetax die, even by SIGKILL.
        # A sanitized pagetax preloads its runtime; QEMU is not built for it.
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                     preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, SIGKILL))
        self.reader = threading.Thread(target=self._read, args=(on_console,), daemon=True)
        self.reader.start()

    def _read(self, on_console):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.lines.append(line)
            if line.startswith(vm_guest.MARK + " "):
                self._mark(line[len(vm_guest.MARK) + 1:].split())
            if on_console:
                on_console(line)
        self.booted_or_gone.set()

    def _mark(self, words):
        try:
            self.marks[words[0]] = (time.monotonic() - self.started, float(words[1]))
        except (IndexError, ValueError):
            return  # a kernel message cut into the line
        if words[0] == "boot":
            self.booted_or_gone.set()

    def wait_for_boot(self, timeout):
        """Has init started, waiting up to `timeout` seconds (less if QEMU exits)?"""
        self.booted_or_gone.wait(timeout)
        return "boot" in self.marks

    def elapsed(self):
        return time.monotonic() - self.started

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()

    def last_words(self):
        """For an error: the kernel's first BUG, Oops or panic line if it said
        one (the stack dumps that follow it end the console), else the last
        console line that is not one of the marks; each with what it is."""
        said = [x.strip() for x in self.lines if x.strip() and not x.startswith(vm_guest.MARK)]
        trouble = [x for x in said if KERNEL_TROUBLE.search(x)]
        if trouble:
            return f"the kernel said: {trouble[0]}"
        return f"last console line: {said[-1] if said else '(nothing on the console)'}"


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM's default ends Python without running finally blocks; while a
    guest runs, it raises SystemExit(143) instead.  (pagetax's command line
    has its own handler, which stays.)"""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM wait while QEMU and the temp folder go, so that a
    second one cannot leave either behind; they arrive afterwards."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclasses.dataclass
class VmResult:
    """What one guest did, and what it ran on."""
    namespace: Namespace
    status: int                   # the command's exit status
    stdout: str                   # the command's output
    stderr: str
    console: str                  # the serial console, kernel and QEMU messages included
    files: List[str]              # what the command left in its folder, copied to output_dir
    accelerator: str              # kvm or tcg
    accelerator_reason: str
    qemu_version: str
    guest_kernel: str
    capacity: int                 # NVDIMM bytes
    ndctl: Dict                   # `ndctl list` of the namespace and of its region
    memmap: Optional[Dict]        # free pages around create-namespace, when asked
    phases: List[Tuple[str, float]]  # (phase, host seconds) in boot order

    def labels(self):
        """The `guest` object of a result file made inside the guest."""
        return guest_labels(self.namespace, self.accelerator, self.accelerator_reason,
                            self.qemu_version, self.guest_kernel, self.capacity, self.ndctl)


def guest_labels(ns, accel, accel_reason, qemu_version, guest_kernel, capacity, ndctl=None):
    """What a result made in a guest must say about it: emulator,
    accelerator, guest kernel, namespace, and whether timings mean anything."""
    kvm = accel == "kvm"
    return {"emulator": "qemu-system-x86_64", "emulator_version": qemu_version,
            "accelerator": accel, "accelerator_reason": accel_reason,
            "guest_kernel": guest_kernel, "nvdimm_bytes": capacity,
            "namespace": {"label": ns.label, "mode": ns.mode, "map": ns.map, "fs": ns.fs,
                          "align": ns.align, "ndctl": ndctl},
            "timings_comparable": kvm, "timings_note": KVM_NOTE if kvm else TCG_NOTE}


def _phases(marks, total):
    """(phase, seconds) from the host's clock at each mark; the time before
    init splits into firmware and kernel by the guest's own uptime."""
    if "boot" not in marks:
        return [("boot", total)]
    at, uptime = marks["boot"]
    phases = [("firmware", at - uptime), ("kernel", uptime)]
    for phase, (t, _) in marks.items():
        if phase != "boot":
            phases.append((phase, t - at))
            at = t
    return phases + [("power-off", total - at)]


def _host_path(share, guest_path):
    return os.path.join(share, os.path.relpath(guest_path, vm_guest.SHARE))


def _read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def run(namespace, argv, *, output_dir=None, capacity=GIB, memory=2 * GIB, timeout=600.0,
        memmap=False, env=None, accel=None, on_console=None, workdir=None, kernel=None):
    """Boot a guest, make `namespace` of its NVDIMM, run `argv` in it, power off.

    `argv` runs as root in a chroot of the host's root (so sys.executable and
    pagetax are the host's), in a writable folder whose files are copied to
    `output_dir`, with PAGETAX_VM_DAX_DIR (fsdax) or PAGETAX_VM_DEVDAX
    (devdax) and PAGETAX_VM_NAMESPACE (JSON) added to `env`.  An empty argv
    only makes the namespace; `memmap` also reads the free memory around its
    creation.  `accel` is ("kvm" or "tcg", why), as choose_accelerator()
    gives it (by default); a KVM guest that does not reach init within
    KVM_BOOT_DEADLINE seconds is retried under TCG.  `kernel` picks the
    guest's kernel by version (default: the newest).  `on_console` gets every
    console line as it comes.  The temp folder
    (NVDIMM image, initramfs, share) and QEMU go on every exit path,
    Ctrl-C and SIGTERM included.  Raises VmError when the guest cannot
    prepare the namespace or does not finish within `timeout` seconds."""
    host = check_tools(kernel)
    check_sizes(capacity, memory, namespace)
    accel, accel_reason = accel or choose_accelerator()
    run_argv = argv
    deadline = time.monotonic() + timeout
    with _sigterm_raises():
        work = tempfile.mkdtemp(prefix="pagetax-vm-", dir=workdir)
        guest = None
        try:
            share = os.path.join(work, "share")
            os.makedirs(_host_path(share, vm_guest.OUT_DIR))
            initrd = os.path.join(work, "initramfs.cpio")
            build_initramfs(initrd, host, namespace, sys.executable)
            kernel = boot_kernel(host, work)
            image = os.path.join(work, "nvdimm.img")
            with open(image, "wb") as f:
                f.truncate(capacity)  # sparse: only what the guest writes takes space
            version = qemu_version(host.qemu)

            def boot(accel):
                # the job names the accelerator, so a run's own table can say it
                labels = guest_labels(namespace, accel, accel_reason, version,
                                      host.kernel_version, capacity)
                job = {"namespace": dict(dataclasses.asdict(namespace), label=namespace.label),
                       "argv": list(run_argv), "memmap": memmap,
                       "env": dict(env or {}, PAGETAX_GUEST=json.dumps(labels))}
                with open(_host_path(share, vm_guest.JOB), "w") as f:
                    json.dump(job, f)
                argv = qemu_argv(host, accel, kernel, initrd, image, share, capacity, memory)
                return _Guest(argv, on_console)

            def remaining():
                return max(0.0, deadline - time.monotonic())

            guest = boot(accel)
            if accel == "kvm" and not guest.wait_for_boot(min(KVM_BOOT_DEADLINE, remaining())):
                guest.stop()
                accel, accel_reason = "tcg", (f"KVM ({accel_reason}) did not reach init "
                                              f"({guest.last_words()}), so TCG")
                guest = boot(accel)
            if guest.wait_for_boot(remaining()):
                # QEMU has mapped the image and loaded the kernel and initramfs:
                # from here even a SIGKILL of pagetax leaves only the share behind.
                for path in (image, kernel, initrd):
                    if os.path.dirname(path) == work:
                        os.unlink(path)
            try:
                guest.proc.wait(remaining())
            except subprocess.TimeoutExpired:
                where = list(guest.marks)[-1] if guest.marks else "before init"
                raise VmError(f"{namespace.label}: the guest did not power off within "
                              f"{timeout:g} s (last phase done: {where}; "
                              f"{guest.last_words()})") from None
            guest.stop()
            return _collect(namespace, guest, share, output_dir, host, accel, accel_reason,
                            capacity)
        finally:
            with _signals_held():
                if guest:
                    guest.stop()
                shutil.rmtree(work, ignore_errors=True)


def _collect(namespace, guest, share, output_dir, host, accel, accel_reason, capacity):
    try:
        with open(_host_path(share, vm_guest.REPORT)) as f:
            report = json.load(f)
    except (FileNotFoundError, ValueError):
        raise VmError(f"{namespace.label}: the guest agent reported nothing "
                      f"({guest.last_words()})") from None
    if "error" in report:
        raise VmError(f"{namespace.label}: {report['error']}")
    out = _host_path(share, vm_guest.OUT_DIR)
    files = sorted(os.path.relpath(os.path.join(d, n), out)
                   for d, _, names in os.walk(out) for n in names)
    if output_dir:
        shutil.copytree(out, output_dir, dirs_exist_ok=True)
    return VmResult(namespace=namespace, status=report.get("status", 0),
                    stdout=_read_text(_host_path(share, vm_guest.STDOUT)),
                    stderr=_read_text(_host_path(share, vm_guest.STDERR)),
                    console="\n".join(guest.lines), files=files, accelerator=accel,
                    accelerator_reason=accel_reason, qemu_version=qemu_version(host.qemu),
                    guest_kernel=report["kernel"], capacity=capacity, ndctl=report["ndctl"],
                    memmap=report.get("memmap"), phases=_phases(guest.marks, guest.elapsed()))


# -- what a memmap row's measurement says -----------------------------------------

def _mib(n):
    return f"{n / MIB:.2f} MiB"


def _kib(n, sign=False):
    return f"{n / 1024:{'+' if sign else ''},.0f} KiB"


def memmap_explained(row):
    """A memmap_figures() row with its differences from the model and an
    `explanation` of them; a row from an older file gets them too."""
    return dict(row, dram_minus_model_bytes=row["dram_bytes"] - row["model_dram_bytes"],
                device_minus_model_bytes=row["device_bytes"] - row["model_device_bytes"],
                explanation=memmap_explanation(row))


def memmap_explanation(row):
    """Why a namespace's measured struct-page bytes (memmap_figures) differ
    from pagetax's model, in sentences: what the kernel keeps for its mode,
    where the device's bytes went, and what the DRAM beyond the model is,
    by the guest's /proc/meminfo (Slab) when the row has it."""
    from . import metadata
    ns = Namespace.from_label(row["namespace"])
    region, pages = row["region_bytes"], row["region_bytes"] // metadata.PAGE
    dram, device = row["dram_bytes"], row["device_bytes"]
    model_dram, model_device = row["model_dram_bytes"], row["model_device_bytes"]
    full = pages * metadata.STRUCT_PAGE
    said = []
    if row["model"] == "altmap":
        npfns = max(region - metadata.ALTMAP_INFO, 0) // metadata.PAGE
        said.append(
            f"map=dev puts the memmap on the device, in the namespace's reserve (vmem_altmap): "
            f"ALIGN(8 KiB info block + 64 B x {npfns:,} pages, 2 MiB) = {_mib(model_device)}, so "
            "no DRAM for struct pages"
            + ("; at --align=2M too, since the kernel dedups no vmemmap kept on the device"
               if ns.mode == "devdax" and ns.align == "2M" else "")
            + f". The device gives up region - namespace = {_mib(device)}"
            + (", as the model says." if device == model_device else
               f", {_mib(device - model_device)} more than the model's reserve."))
    else:
        if row["model"] == "devdax-dedup-2M":
            compound = region // (2 * MIB)
            said.append(
                "devdax at 2M maps 2 MiB compound pages, and the kernel dedups their vmemmap "
                "(mm/sparse-vmemmap.c): of each one's 32 KiB of struct pages it keeps 2 pages, "
                f"the head's and the first tail's, and maps the other 6 to the second: "
                f"{compound:,} x 8 KiB = {_mib(model_dram)} in DRAM instead of {_mib(full)}.")
        else:
            said.append(
                ("devdax at 4k makes no compound pages, so no vmemmap dedup: " if ns.mode == "devdax"
                 else "map=mem: ")
                + f"a 64 B struct page per 4 KiB page in DRAM, {pages:,} x 64 B = {_mib(model_dram)}.")
        info = -(-metadata.ALTMAP_INFO // metadata.ALTMAP_ALIGN) * metadata.ALTMAP_ALIGN
        said.append(
            f"The device gives up {_mib(device)} where pagetax's {row['model']} model says "
            f"{_mib(model_device)}"
            + (": the 8 KiB info block, padded to the 2 MiB alignment; the model counts "
               "struct pages only." if device - model_device == info else "."))
    said.append(_dram_residual(row, ns, dram - model_dram))
    return " ".join(said)


RESIDUAL_COUNTERS = ("KernelStack", "VmallocUsed", "PageTables", "Percpu")


def _dram_residual(row, ns, residual):
    """What the DRAM beyond the model went to, by the guest's meminfo."""
    if residual < 0:
        return (f"DRAM came out {_kib(-residual)} below the model: free-page noise across "
                "create-namespace (reclaim, per-CPU lists), or a model that counts too much.")
    devices = "the namespace, its " + ("pfn device and pmem block device" if ns.mode == "fsdax"
                                       else "dax devices and /dev/dax0.0") + ", their sysfs nodes"
    text = (f"The {_kib(residual, sign=True)} of DRAM beyond the model are not struct pages: "
            f"they are the kernel's own objects for the devices create-namespace registers "
            f"({devices})")
    if row["model"] == "devdax-dedup-2M":
        vmemmap = row["region_bytes"] // 4096 * 64      # its virtual size
        ptes = -(-vmemmap // (2 * MIB))                  # a page-table page maps 2 MiB
        text += (f", and the vmemmap's own page tables, which the model leaves out (the dedup "
                 f"maps the vmemmap with 4 KiB pages: {ptes} page-table pages, "
                 f"{_kib(ptes * 4096)}, here)")
    changes = (row.get("free_pages") or {}).get("meminfo_change_kb")
    if changes is None:
        return text + ". This file has no meminfo from the guest to say how much is slab."
    slab = changes.get("Slab", 0) * 1024
    others = ", ".join(f"{k} {_kib(changes[k] * 1024, sign=True)}" for k in RESIDUAL_COUNTERS
                       if changes.get(k))
    return (text + f". The guest's /proc/meminfo shows Slab {_kib(slab, sign=True)} across "
            f"create-namespace; the other {_kib(residual - slab, sign=True)} is outside the slab"
            + (f" ({others})" if others else "") + ".")

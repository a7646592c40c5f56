"""The guest's boot image: the kernel QEMU enters, and an initramfs of a
static busybox, the namespace's kernel modules and the init script that
mounts the host's root and starts the agent."""
import lzma
import os
import shlex
import stat
import subprocess

from . import agent
from .namespace import VmError

# The guest's modules, each loaded after its dependencies (modprobe
# --show-depends); FS_DAX, FS_DAX_PMD and ZONE_DEVICE are built into Debian's
# kernel.  A file system's module is loaded only for its namespace: ext4's
# and xfs's cost a TCG boot two seconds.  kmem (system-ram mode) and nd_e820
# (memmap= pmem) serve no namespace here.
MODULES = ("libnvdimm", "nfit", "nd_pmem", "dax_pmem", "device_dax",
           "virtio_pci", "9pnet_virtio", "9p", "loop")   # loop: pagetax kernel's O_DIRECT
XZ_MAGIC = b"\xfd7zXZ\x00"
SHARE_TAG = "pagetax_share"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
    root, share, scratch = "/host", agent.SHARE, agent.SCRATCH
    # the folder holding pagetax/: agent.py is pagetax/guest/agent.py
    package_parent = shlex.quote(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(agent.__file__)))))
    python = shlex.quote(python)
    return f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark() {{ echo "{agent.MARK} $1 $(cut -d' ' -f1 /proc/uptime)"; }}
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
    {python} -S -m pagetax.guest.agent {agent.JOB}
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

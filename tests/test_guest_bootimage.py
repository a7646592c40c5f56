"""The guest's boot image and QEMU's command line: the initramfs's files,
modules and init script, and the options QEMU is given."""
import os
import shutil
import stat
import subprocess
import sys

import pytest

import pagetax

from pagetax.guest import agent
from pagetax.guest.bootimage import MODULES, SHARE_TAG, build_initramfs, init_script
from pagetax.guest.host import Host
from pagetax.guest.namespace import Namespace
from pagetax.guest.qemu import qemu_argv
from helpers import guest_host_or_skip

# -- the initramfs ------------------------------------------------------------------

def read_newc(data):
    """A newc cpio archive as {name: (mode, bytes, (rdev major, minor))}, in
    archive order; asserts its framing (magic, 4-byte padding, trailer)."""
    entries, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"no newc header at {pos}"
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name = data[pos + 110:pos + 110 + namesize]
        assert name.endswith(b"\0")
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        assert len(body) == size, "archive cut short"
        pos += size
        pos += -pos % 4
        name = name[:-1].decode()
        if name == "TRAILER!!!":
            assert not data[pos:].strip(b"\0")
            return entries
        assert name not in entries
        entries[name] = (mode, body, rdev)


def _show_depends(host, module):
    p = subprocess.run([host.modprobe, "-C", "/dev/null", "--ignore-install", "-S",
                        host.kernel_version, "--show-depends", module],
                       capture_output=True, text=True, check=True)
    return [line.split()[1] for line in p.stdout.splitlines() if line.startswith("insmod ")]


@pytest.mark.parametrize("ns", [Namespace("fsdax", "mem", fs="ext4"),
                                Namespace("devdax", "dev")], ids=lambda ns: ns.label)
def test_initramfs_holds_init_busybox_and_the_modules_in_load_order(tmp_path, ns):
    host = guest_host_or_skip()
    path = tmp_path / "initramfs.cpio"
    build_initramfs(str(path), host, ns, sys.executable)
    entries = read_newc(path.read_bytes())

    mode, init, _ = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 == 0o111
    init = init.decode()
    assert init.startswith("#!/bin/busybox sh\n")
    assert "mount -t 9p -o trans=virtio,version=9p2000.L,ro" in init and "hostroot /host" in init
    assert f"{SHARE_TAG} /host{agent.SHARE}" in init
    assert f"{sys.executable} -S -m pagetax.guest.agent {agent.JOB}" in init
    # -S skips site, so the agent's package is found through PYTHONPATH alone
    package_parent = os.path.dirname(os.path.dirname(pagetax.__file__))
    assert f"PYTHONPATH={package_parent} " in init
    assert os.path.isfile(os.path.join(package_parent, "pagetax", "guest", "agent.py"))
    assert init.rstrip().endswith("poweroff -f")

    mode, busybox, _ = entries["bin/busybox"]
    assert stat.S_ISREG(mode) and mode & 0o111
    with open(host.busybox, "rb") as f:
        assert busybox == f.read()
    mode, _, rdev = entries["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5, 1)
    for d in ("proc", "sys", "dev", "host", "modules", "bin"):
        assert stat.S_ISDIR(entries[d][0]), d

    # every module modprobe names for what this namespace needs, each after its
    # own dependencies, in the order init's glob loads them
    modules = sorted(n for n in entries if n.startswith("modules/"))
    assert [n for n in entries if n.startswith("modules/")] == modules
    loaded = [n.split("/", 1)[1].split("-", 1)[1][:-len(".ko")] for n in modules]

    def chain(module):
        return [os.path.basename(ko).split(".ko")[0] for ko in _show_depends(host, module)]
    needed = {m for module in list(MODULES) + ([ns.fs] if ns.fs else []) for m in chain(module)}
    assert sorted(loaded) == sorted(needed)
    for module in loaded:
        *deps, itself = chain(module)
        assert itself == module
        late = [d for d in deps if loaded.index(d) > loaded.index(module)]
        assert not late, f"{module} loads before its dependencies {late}"
    assert ("ext4" in loaded) == (ns.fs == "ext4") and "xfs" not in loaded
    for n in modules:
        assert entries[n][1][:4] == b"\x7fELF", f"{n} is not a plain ELF module"

    if shutil.which("cpio"):  # and a real cpio reads the same archive
        listed = subprocess.run(["cpio", "-it", "--quiet"], input=path.read_bytes(),
                                capture_output=True, check=True).stdout.decode().split()
        assert listed == list(entries)


# -- QEMU's command line ---------------------------------------------------------------

def _options(argv):
    """{option: [values]} of a QEMU command line (every option here takes one)."""
    out = {}
    flags = {"-nodefaults", "-no-user-config", "-no-reboot"}
    i = 1
    while i < len(argv):
        if argv[i] in flags:
            out.setdefault(argv[i], []).append(None)
            i += 1
        else:
            assert argv[i].startswith("-"), argv[i]
            out.setdefault(argv[i], []).append(argv[i + 1])
            i += 2
    return out


@pytest.mark.parametrize("accel", ["tcg", "kvm"])
def test_qemu_argv(accel):
    host = Host("/usr/bin/qemu-system-x86_64", "/sbin/modprobe", "/boot/vmlinuz-9", "9",
                "/bin/busybox")
    argv = qemu_argv(host, accel, "/w/vmlinux", "/w/initramfs.cpio", "/w,x/nvdimm.img",
                     "/w/share", 1 << 30, 2 << 30)
    assert argv[0] == host.qemu
    o = _options(argv)
    assert o["-machine"] == ["pc,nvdimm=on"]
    # One host thread for both vCPUs: multi-threaded TCG locked the guest up (qemu_argv)
    assert o["-accel"] == (["kvm"] if accel == "kvm" else ["tcg,thread=single"])
    assert o["-smp"] == ["2"]
    assert o["-cpu"] == (["host"] if accel == "kvm" else ["max"])
    assert o["-m"] == ["2048M,slots=2,maxmem=3072M"]
    (backend,) = o["-object"]
    assert backend.startswith("memory-backend-file,id=nvmem,")
    parts = backend.replace(",,", "\0").split(",")  # QEMU's escaped comma kept whole
    assert {"share=on", "align=2M", "size=1024M", "mem-path=/w\0x/nvdimm.img"} <= set(parts)
    (nvdimm,) = o["-device"]
    assert nvdimm.split(",")[:2] == ["nvdimm", "memdev=nvmem"] and "label-size" not in nvdimm
    root, share = o["-virtfs"]
    assert set(root.split(",")) == {"local", "path=/", "mount_tag=hostroot", "security_model=none",
                                    "readonly=on", "multidevs=remap"}
    assert f"mount_tag={SHARE_TAG}" in share and "path=/w/share" in share
    assert "readonly" not in share  # results come back through it
    assert o["-kernel"] == ["/w/vmlinux"] and o["-initrd"] == ["/w/initramfs.cpio"]
    assert "console=ttyS0" in o["-append"][0] and "panic=-1" in o["-append"][0]
    assert "-no-reboot" in o and "-nodefaults" in o


def test_the_guest_leaves_the_hosts_tmp_visible():
    """A pagetax installed under /tmp (a CI clone there) must run in the
    guest: its own tmpfs goes over /run, and TMPDIR points into it."""
    script = init_script("/tmp/clone/.venv/bin/python")
    assert "/host/tmp" not in script
    assert "mount -t tmpfs -o mode=1777 tmpfs /host/run" in script
    assert f"TMPDIR={agent.SCRATCH}/tmp" in script
    assert agent.SHARE.startswith("/run/") and agent.DAX_DIR.startswith("/run/")

"""`pagetax vm`'s host side: what it makes of a namespace, the tools and the
kernel it looks for, and the accelerator it picks."""
import builtins
import errno
import os
import shutil
import sys

import pytest

from pagetax.guest import host as guest_host
from pagetax.guest.host import _guest_kernel, _is_static, _static_busybox, check_tools, choose_accelerator
from pagetax.guest.namespace import Namespace, VmError

MIB = 1 << 20


# -- Namespace ------------------------------------------------------------------

@pytest.mark.parametrize("ns, label, options", [
    (Namespace(), "fsdax-ext4-mem", "-m fsdax --map=mem"),
    (Namespace("fsdax", "dev", fs="xfs"), "fsdax-xfs-dev", "-m fsdax --map=dev"),
    (Namespace("devdax", "mem"), "devdax-2M-mem", "-m devdax --map=mem --align=2M"),
    (Namespace("devdax", "dev", align="4k"), "devdax-4k-dev", "-m devdax --map=dev --align=4k"),
])
def test_namespace_labels_and_round_trip(ns, label, options):
    assert ns.label == label and ns.ndctl_options == options
    assert Namespace.from_label(label) == ns
    assert Namespace.from_label(ns.label).label == label
    # the defaults are filled in: an fsdax namespace has a file system, devdax an alignment
    assert (ns.fs is None) == (ns.mode == "devdax") and (ns.align is None) == (ns.mode == "fsdax")


@pytest.mark.parametrize("make, message", [
    (lambda: Namespace("blockdax"), "unknown mode 'blockdax' (choose from fsdax, devdax)"),
    (lambda: Namespace("fsdax", "disk"), "unknown map 'disk' (choose from mem, dev)"),
    (lambda: Namespace("fsdax", fs="btrfs"), "unknown file system 'btrfs' (choose from ext4, xfs)"),
    (lambda: Namespace("devdax", align="1G"), "unknown alignment '1G' (choose from 4k, 2M)"),
    (lambda: Namespace("fsdax", align="2M"),
     "--align is for devdax; an fsdax namespace takes ndctl's default"),
    (lambda: Namespace("devdax", fs="ext4"),
     "--fs is for fsdax; a devdax namespace has no file system"),
    (lambda: Namespace.from_label("fsdax-ext4"),
     "namespace 'fsdax-ext4' is not like fsdax-ext4-mem or devdax-2M-dev"),
    (lambda: Namespace.from_label("fsdax-ext4-mem-x"),
     "namespace 'fsdax-ext4-mem-x' is not like fsdax-ext4-mem or devdax-2M-dev"),
    (lambda: Namespace.from_label("devdax-ext4-mem"),
     "unknown alignment 'ext4' (choose from 4k, 2M)"),
    (lambda: Namespace.from_label("fsdax-2M-mem"),
     "unknown file system '2M' (choose from ext4, xfs)"),
])
def test_namespace_errors_are_one_line(make, message):
    with pytest.raises(VmError) as e:
        make()
    assert str(e.value) == message


# -- the host's tools -------------------------------------------------------------

TOOLS = [("qemu-system-x86_64", "qemu-system-x86"), ("modprobe", "kmod"), ("ndctl", "ndctl"),
         ("mkfs.ext4", "e2fsprogs"), ("mkfs.xfs", "xfsprogs")]


@pytest.fixture
def bare_host(tmp_path, monkeypatch):
    """PATH is one empty folder, and the folders _which adds to it (/usr/sbin,
    /sbin) are searched as if empty: only what a test puts in bin/ is found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    real_which = shutil.which
    searched = []

    def which(cmd, mode=os.F_OK | os.X_OK, path=None):
        searched.append(path)
        inside = [p for p in (path or "").split(os.pathsep) if p.startswith(str(tmp_path))]
        return real_which(cmd, mode, path=os.pathsep.join(inside) or os.devnull)
    monkeypatch.setattr(guest_host.shutil, "which", which)
    return bin_dir, searched


def _stub(bin_dir, name):
    path = bin_dir / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


@pytest.mark.parametrize("missing", range(len(TOOLS)))
def test_check_tools_names_the_package_of_the_first_missing_tool(bare_host, missing):
    bin_dir, searched = bare_host
    for tool, _ in TOOLS[:missing]:
        _stub(bin_dir, tool)
    with pytest.raises(VmError) as e:
        check_tools()
    tool, package = TOOLS[missing]
    assert str(e.value) == f"{tool} is missing: apt-get install {package}"
    assert str(bin_dir) in searched[0].split(os.pathsep)  # it looks in PATH first


def test_check_tools_names_the_kernel_package(bare_host, monkeypatch):
    bin_dir, _ = bare_host
    for tool, _ in TOOLS:
        _stub(bin_dir, tool)
    real_glob = guest_host.glob.glob
    monkeypatch.setattr(guest_host.glob, "glob",  # /boot has no vmlinuz-*
                        lambda pattern, **kw: [] if pattern.startswith("/boot/") else
                        real_glob(pattern, **kw))
    with pytest.raises(VmError) as e:
        check_tools()
    assert str(e.value) == ("no kernel in /boot with its modules in /lib/modules: "
                            "apt-get install linux-image-amd64")


def test_check_tools_names_the_busybox_package(bare_host, monkeypatch):
    bin_dir, _ = bare_host
    for tool, _ in TOOLS:
        _stub(bin_dir, tool)
    try:
        _guest_kernel()
    except VmError as e:
        pytest.skip(str(e))
    monkeypatch.setattr(guest_host, "_is_static", lambda path: False)  # a dynamic busybox only
    with pytest.raises(VmError) as e:
        check_tools()
    assert str(e.value) == "no statically linked busybox: apt-get install busybox-static"


def test_is_static_tells_a_static_busybox_from_a_dynamic_python(tmp_path):
    assert _is_static(os.path.realpath(sys.executable)) is False  # it has an interpreter
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert _is_static(str(tmp_path / "script")) is False         # not ELF at all
    try:
        busybox = _static_busybox()
    except VmError:
        pytest.skip("no busybox-static here")
    assert _is_static(busybox) is True


# -- the accelerator -----------------------------------------------------------------

@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """choose_accelerator() reads /proc/cpuinfo and opens /dev/kvm: both faked."""
    state = {"flags": "fpu sse2", "kvm": None}   # kvm: None missing, "eacces", or "ok"
    cpuinfo = tmp_path / "cpuinfo"
    kvm_file = tmp_path / "kvm"
    kvm_file.write_bytes(b"")
    real_open, real_os_open = builtins.open, os.open

    def fake_open(file, *a, **kw):
        if file == "/proc/cpuinfo":
            cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: Fake\nflags\t\t: {state['flags']}\n"
                               f"processor\t: 1\nflags\t\t: {state['flags']}\n")
            return real_open(cpuinfo, *a, **kw)
        return real_open(file, *a, **kw)

    def fake_os_open(path, flags, *a, **kw):
        if path == "/dev/kvm":
            if state["kvm"] is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            if state["kvm"] == "eacces":
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return real_os_open(kvm_file, flags, *a, **kw)
        return real_os_open(path, flags, *a, **kw)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(guest_host.os, "open", fake_os_open)
    return state


@pytest.mark.parametrize("flags, kvm, accel, reason", [
    ("fpu sse2 hypervisor", "ok", "tcg", "no vmx or svm in /proc/cpuinfo, and a /dev/kvm "
                                         "without them hangs a stock kernel"),
    ("fpu vmx sse2", None, "tcg", "/dev/kvm: No such file or directory"),
    ("fpu svm sse2", "eacces", "tcg", "/dev/kvm: Permission denied"),
    ("fpu vmx sse2", "ok", "kvm", "vmx or svm in /proc/cpuinfo, and /dev/kvm opens"),
    ("fpu sse2 svm", "ok", "kvm", "vmx or svm in /proc/cpuinfo, and /dev/kvm opens"),
    ("fpu vmxx svmm", "ok", "tcg", "no vmx or svm in /proc/cpuinfo, and a /dev/kvm "
                                   "without them hangs a stock kernel"),
])
def test_choose_accelerator(fake_cpu, flags, kvm, accel, reason):
    fake_cpu.update(flags=flags, kvm=kvm)
    assert choose_accelerator() == (accel, reason)


def _kernels(monkeypatch, versions):
    real_glob, real_exists = guest_host.glob.glob, guest_host.os.path.exists
    monkeypatch.setattr(guest_host.glob, "glob", lambda pattern, **kw: [f"/boot/vmlinuz-{v}" for v in
                        versions] if pattern == "/boot/vmlinuz-*" else real_glob(pattern, **kw))
    monkeypatch.setattr(guest_host.os.path, "exists", lambda p: any(
        p == f"/lib/modules/{v}/modules.dep" for v in versions) or real_exists(p))
    monkeypatch.setattr(guest_host.os, "access", lambda p, mode: True)


def test_guest_kernel_is_the_newest_or_the_one_asked(monkeypatch):
    _kernels(monkeypatch, ["6.1.0-57-amd64", "6.12.118+deb12-amd64", "6.1.0-9-amd64"])
    assert _guest_kernel() == "6.12.118+deb12-amd64"
    assert _guest_kernel("6.1.0-9-amd64") == "6.1.0-9-amd64"
    assert _guest_kernel("/boot/vmlinuz-6.1.0-57-amd64") == "6.1.0-57-amd64"
    with pytest.raises(VmError) as e:
        _guest_kernel("6.19.0-1-amd64")
    assert str(e.value) == ("--kernel 6.19.0-1-amd64: no /boot/vmlinuz-6.19.0-1-amd64 with its "
                            "modules in /lib/modules (installed: 6.1.0-9-amd64, 6.1.0-57-amd64, "
                            "6.12.118+deb12-amd64; Debian: apt-get install "
                            "linux-image-6.19.0-1-amd64)")

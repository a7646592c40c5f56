"""`pagetax vm` on the host side: what it makes of a namespace, the tools it
looks for, the initramfs it writes, the accelerator it picks and QEMU's
command line; the command line's refusals; and two real guests, one
interrupted with Ctrl-C while booting and one that runs a command.

The real guests need QEMU, a kernel and busybox-static (apt-get install
qemu-system-x86 linux-image-amd64 busybox-static ndctl e2fsprogs xfsprogs
kmod) and skip without them; under TCG each boot takes 10-20 s."""
import builtins
import errno
import html
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from pagetax import report_page, vm, vm_guest
from helpers import CLI, SMALL, cli

MIB = 1 << 20


def _host_or_skip():
    try:
        return vm.check_tools()
    except vm.VmError as e:
        pytest.skip(f"no guest on this machine: {e}")


# -- Namespace ------------------------------------------------------------------

@pytest.mark.parametrize("ns, label, options", [
    (vm.Namespace(), "fsdax-ext4-mem", "-m fsdax --map=mem"),
    (vm.Namespace("fsdax", "dev", fs="xfs"), "fsdax-xfs-dev", "-m fsdax --map=dev"),
    (vm.Namespace("devdax", "mem"), "devdax-2M-mem", "-m devdax --map=mem --align=2M"),
    (vm.Namespace("devdax", "dev", align="4k"), "devdax-4k-dev", "-m devdax --map=dev --align=4k"),
])
def test_namespace_labels_and_round_trip(ns, label, options):
    assert ns.label == label and ns.ndctl_options == options
    assert vm.Namespace.from_label(label) == ns
    assert vm.Namespace.from_label(ns.label).label == label
    # the defaults are filled in: an fsdax namespace has a file system, devdax an alignment
    assert (ns.fs is None) == (ns.mode == "devdax") and (ns.align is None) == (ns.mode == "fsdax")


@pytest.mark.parametrize("make, message", [
    (lambda: vm.Namespace("blockdax"), "unknown mode 'blockdax' (choose from fsdax, devdax)"),
    (lambda: vm.Namespace("fsdax", "disk"), "unknown map 'disk' (choose from mem, dev)"),
    (lambda: vm.Namespace("fsdax", fs="btrfs"), "unknown file system 'btrfs' (choose from ext4, xfs)"),
    (lambda: vm.Namespace("devdax", align="1G"), "unknown alignment '1G' (choose from 4k, 2M)"),
    (lambda: vm.Namespace("fsdax", align="2M"),
     "--align is for devdax; an fsdax namespace takes ndctl's default"),
    (lambda: vm.Namespace("devdax", fs="ext4"),
     "--fs is for fsdax; a devdax namespace has no file system"),
    (lambda: vm.Namespace.from_label("fsdax-ext4"),
     "namespace 'fsdax-ext4' is not like fsdax-ext4-mem or devdax-2M-dev"),
    (lambda: vm.Namespace.from_label("fsdax-ext4-mem-x"),
     "namespace 'fsdax-ext4-mem-x' is not like fsdax-ext4-mem or devdax-2M-dev"),
    (lambda: vm.Namespace.from_label("devdax-ext4-mem"),
     "unknown alignment 'ext4' (choose from 4k, 2M)"),
    (lambda: vm.Namespace.from_label("fsdax-2M-mem"),
     "unknown file system '2M' (choose from ext4, xfs)"),
])
def test_namespace_errors_are_one_line(make, message):
    with pytest.raises(vm.VmError) as e:
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
    monkeypatch.setattr(vm.shutil, "which", which)
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
    with pytest.raises(vm.VmError) as e:
        vm.check_tools()
    tool, package = TOOLS[missing]
    assert str(e.value) == f"{tool} is missing: apt-get install {package}"
    assert str(bin_dir) in searched[0].split(os.pathsep)  # it looks in PATH first


def test_check_tools_names_the_kernel_package(bare_host, monkeypatch):
    bin_dir, _ = bare_host
    for tool, _ in TOOLS:
        _stub(bin_dir, tool)
    real_glob = vm.glob.glob
    monkeypatch.setattr(vm.glob, "glob",  # /boot has no vmlinuz-*
                        lambda pattern, **kw: [] if pattern.startswith("/boot/") else
                        real_glob(pattern, **kw))
    with pytest.raises(vm.VmError) as e:
        vm.check_tools()
    assert str(e.value) == ("no kernel in /boot with its modules in /lib/modules: "
                            "apt-get install linux-image-amd64")


def test_check_tools_names_the_busybox_package(bare_host, monkeypatch):
    bin_dir, _ = bare_host
    for tool, _ in TOOLS:
        _stub(bin_dir, tool)
    try:
        vm._guest_kernel()
    except vm.VmError as e:
        pytest.skip(str(e))
    monkeypatch.setattr(vm, "_is_static", lambda path: False)  # a dynamic busybox only
    with pytest.raises(vm.VmError) as e:
        vm.check_tools()
    assert str(e.value) == "no statically linked busybox: apt-get install busybox-static"


def test_is_static_tells_a_static_busybox_from_a_dynamic_python(tmp_path):
    assert vm._is_static(os.path.realpath(sys.executable)) is False  # it has an interpreter
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert vm._is_static(str(tmp_path / "script")) is False         # not ELF at all
    try:
        busybox = vm._static_busybox()
    except vm.VmError:
        pytest.skip("no busybox-static here")
    assert vm._is_static(busybox) is True


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


@pytest.mark.parametrize("ns", [vm.Namespace("fsdax", "mem", fs="ext4"),
                                vm.Namespace("devdax", "dev")], ids=lambda ns: ns.label)
def test_initramfs_holds_init_busybox_and_the_modules_in_load_order(tmp_path, ns):
    host = _host_or_skip()
    path = tmp_path / "initramfs.cpio"
    vm.build_initramfs(str(path), host, ns, sys.executable)
    entries = read_newc(path.read_bytes())

    mode, init, _ = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 == 0o111
    init = init.decode()
    assert init.startswith("#!/bin/busybox sh\n")
    assert "mount -t 9p -o trans=virtio,version=9p2000.L,ro" in init and "hostroot /host" in init
    assert f"{vm.SHARE_TAG} /host{vm_guest.SHARE}" in init
    assert f"{sys.executable} -S -m pagetax.vm_guest {vm_guest.JOB}" in init
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
    needed = {m for module in list(vm.MODULES) + ([ns.fs] if ns.fs else []) for m in chain(module)}
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
    monkeypatch.setattr(vm.os, "open", fake_os_open)
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
    assert vm.choose_accelerator() == (accel, reason)


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
    host = vm.Host("/usr/bin/qemu-system-x86_64", "/sbin/modprobe", "/boot/vmlinuz-9", "9",
                   "/bin/busybox")
    argv = vm.qemu_argv(host, accel, "/w/vmlinux", "/w/initramfs.cpio", "/w,x/nvdimm.img",
                        "/w/share", 1 << 30, 2 << 30)
    assert argv[0] == host.qemu
    o = _options(argv)
    assert o["-machine"] == ["pc,nvdimm=on"]
    # One host thread for both vCPUs: multi-threaded TCG locked the guest up (vm.qemu_argv)
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
    assert f"mount_tag={vm.SHARE_TAG}" in share and "path=/w/share" in share
    assert "readonly" not in share  # results come back through it
    assert o["-kernel"] == ["/w/vmlinux"] and o["-initrd"] == ["/w/initramfs.cpio"]
    assert "console=ttyS0" in o["-append"][0] and "panic=-1" in o["-append"][0]
    assert "-no-reboot" in o and "-nodefaults" in o


# -- the command line ----------------------------------------------------------------

def _one_error_line(p):
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    assert "Traceback" not in p.stderr
    assert len(errors) == 1, p.stderr
    return errors[0]


@pytest.mark.parametrize("run_args, option", [
    (["--backing", "x"], "--backing"), (["--backing=x"], "--backing"),
    (["--size", "16M", "--json", "r.json"], "--json"),
])
def test_vm_run_refuses_backing_and_json(tmp_path, run_args, option):
    _host_or_skip()
    p = cli("vm", "run", "--", *run_args, cwd=tmp_path, timeout=60)
    assert p.returncode == 1
    assert _one_error_line(p) == f"pagetax: error: vm run sets {option} itself: leave it out"
    assert "booting a guest" not in p.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["--dax", "--json", "--overwrite"])
def test_vm_kernel_refuses_what_it_sets_itself(tmp_path, option):
    _host_or_skip()
    p = cli("vm", "kernel", "--", option, cwd=tmp_path, timeout=60)
    assert p.returncode == 1
    assert _one_error_line(p) == f"pagetax: error: vm kernel sets {option} itself: leave it out"
    assert "booting a guest" not in p.stderr


def _kernels(monkeypatch, versions):
    real_glob, real_exists = vm.glob.glob, vm.os.path.exists
    monkeypatch.setattr(vm.glob, "glob", lambda pattern, **kw: [f"/boot/vmlinuz-{v}" for v in
                        versions] if pattern == "/boot/vmlinuz-*" else real_glob(pattern, **kw))
    monkeypatch.setattr(vm.os.path, "exists", lambda p: any(
        p == f"/lib/modules/{v}/modules.dep" for v in versions) or real_exists(p))
    monkeypatch.setattr(vm.os, "access", lambda p, mode: True)


def test_guest_kernel_is_the_newest_or_the_one_asked(monkeypatch):
    _kernels(monkeypatch, ["6.1.0-57-amd64", "6.12.118+deb12-amd64", "6.1.0-9-amd64"])
    assert vm._guest_kernel() == "6.12.118+deb12-amd64"
    assert vm._guest_kernel("6.1.0-9-amd64") == "6.1.0-9-amd64"
    assert vm._guest_kernel("/boot/vmlinuz-6.1.0-57-amd64") == "6.1.0-57-amd64"
    with pytest.raises(vm.VmError) as e:
        vm._guest_kernel("6.19.0-1-amd64")
    assert str(e.value) == ("--kernel 6.19.0-1-amd64: no /boot/vmlinuz-6.19.0-1-amd64 with its "
                            "modules in /lib/modules (installed: 6.1.0-9-amd64, 6.1.0-57-amd64, "
                            "6.12.118+deb12-amd64; Debian: apt-get install "
                            "linux-image-6.19.0-1-amd64)")


@pytest.mark.parametrize("label, message", [
    ("fsdax-ext4", "namespace 'fsdax-ext4' is not like fsdax-ext4-mem or devdax-2M-dev"),
    ("fsdax-zfs-mem", "unknown file system 'zfs' (choose from ext4, xfs)"),
    ("devdax-1G-mem", "unknown alignment '1G' (choose from 4k, 2M)"),
    ("pmem-2M-mem", "unknown mode 'pmem' (choose from fsdax, devdax)"),
])
def test_vm_test_bad_namespace_is_a_usage_error(tmp_path, label, message):
    p = cli("vm", "test", "--namespace", label, cwd=tmp_path, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip() == f"pagetax vm test: error: argument --namespace: {message}"


@pytest.mark.parametrize("command", [["run"], ["memmap"], ["test"]])
def test_vm_without_qemu_says_what_to_install(tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))
    p = cli("vm", *command, cwd=tmp_path, env=env, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip() == ("pagetax: error: qemu-system-x86_64 is missing: "
                                "apt-get install qemu-system-x86")


# -- real guests -----------------------------------------------------------------------

def _children(pid):
    """The pids whose parent is `pid`, with their command names."""
    found = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
            except OSError:
                continue
            comm, rest = s[s.index("(") + 1:s.rindex(")")], s[s.rindex(")") + 2:].split()
            if int(rest[1]) == pid:
                found[int(d)] = comm
    return found


def _state(pid, marker):
    """"running", "zombie", or "gone" (no such process, or a pid since reused
    by a process whose command line does not name `marker`)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except OSError:
        return "gone"
    if s[s.rindex(")") + 2] in "ZX":
        return "zombie"
    return "running" if marker in cmdline else "gone"


def test_ctrl_c_while_a_guest_boots_leaves_no_qemu_and_no_temp_folder(tmp_path):
    _host_or_skip()
    tmp = tmp_path / "tmp"  # the guest's temp folders go here, and only its
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    stderr = tmp_path / "stderr"
    with open(stderr, "w") as err:  # -v: the console too, to see the guest's init start
        proc = subprocess.Popen([*CLI, "vm", "run", "-v", "--timeout", "120", "--json",
                                 str(tmp_path / "r.json"), "--", "--size", "16M"],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 90
        qemu = None
        while time.monotonic() < deadline and proc.poll() is None:
            said = stderr.read_text()
            if qemu is None and "booting a guest" in said:
                qemu = next((pid for pid, comm in _children(proc.pid).items()
                             if comm.startswith("qemu-system")), None)
            if qemu and f"console: {vm_guest.MARK} boot" in said:
                break
            time.sleep(0.1)
        assert qemu, f"no QEMU started: {stderr.read_text()}"
        assert _state(qemu, str(tmp)) == "running", "QEMU is not on the test's own temp folder"
        assert [n for n in os.listdir(tmp) if n.startswith("pagetax-vm-")]
        time.sleep(1)  # init is loading modules (under TCG: it takes 1-3 s)
        assert proc.poll() is None, stderr.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = stderr.read_text()
    assert said.rstrip().endswith("pagetax: interrupted") and "Traceback" not in said, said
    # pagetax killed and reaped QEMU itself: a zombie would be a QEMU that died only
    # with pagetax (its PR_SET_PDEATHSIG), left to a PID 1 that reaps nothing here
    assert _state(qemu, str(tmp)) == "gone", f"QEMU {qemu} outlived pagetax's cleanup"
    assert os.listdir(tmp) == [], "a temp folder was left behind"
    assert not (tmp_path / "r.json").exists()


GUEST_SCRIPT = r"""
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("PAGETAX")}
with open("/proc/mounts") as f:
    dax = [line.split() for line in f if line.split()[1] == env["PAGETAX_VM_DAX_DIR"]]
os.makedirs("sub")
with open("sub/env.json", "w") as f:
    json.dump({"env": env, "cwd": os.getcwd(), "mounts": dax, "uid": os.getuid()}, f)
print("to stdout")
print("to stderr", file=sys.stderr)
sys.exit(7)
"""


def test_a_guest_runs_a_command_with_its_environment_and_brings_back_files(tmp_path):
    _host_or_skip()
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    result = vm.run(vm.Namespace("fsdax", "mem"), [sys.executable, "-c", GUEST_SCRIPT],
                    output_dir=str(out), env={"PAGETAX_TEST_WORD": "a b,c"}, workdir=str(work),
                    timeout=180)
    assert result.status == 7, result.console[-3000:]
    assert result.stdout == "to stdout\n" and result.stderr == "to stderr\n"
    assert result.files == ["sub/env.json"]
    got = json.loads((out / "sub" / "env.json").read_text())
    env = got["env"]
    assert env["PAGETAX_TEST_WORD"] == "a b,c"
    assert env["PAGETAX_VM_DAX_DIR"] == vm_guest.DAX_DIR and "PAGETAX_VM_DEVDAX" not in env
    ns = json.loads(env["PAGETAX_VM_NAMESPACE"])
    assert (ns["mode"], ns["map"], ns["fs"], ns["label"]) == ("fsdax", "mem", "ext4", "fsdax-ext4-mem")
    assert ns["ndctl"]["namespace"]["mode"] == "fsdax"
    guest = json.loads(env["PAGETAX_GUEST"])
    assert guest["accelerator"] == result.accelerator and guest["namespace"]["label"] == "fsdax-ext4-mem"
    assert guest["timings_comparable"] == (result.accelerator == "kvm")
    (mount,) = got["mounts"]
    assert mount[2] == "ext4" and "dax=always" in mount[3].split(","), mount  # -o dax
    assert got["cwd"] == vm_guest.OUT_DIR and got["uid"] == 0
    assert result.ndctl["namespace"]["mode"] == "fsdax" and result.ndctl["namespace"]["map"] == "mem"
    assert result.ndctl["region"]["size"] == 1 << 30
    assert result.guest_kernel == _host_or_skip().kernel_version
    assert [p for p, _ in result.phases][:2] == ["firmware", "kernel"]
    assert "command" in dict(result.phases)
    assert result.labels()["namespace"]["label"] == "fsdax-ext4-mem"
    assert os.listdir(work) == []  # image, initramfs and share gone


# -- memmap: the explanations, the JSON and the report page ------------------------------

GIB = 1 << 30
# `pagetax vm memmap --json` rows as a TCG guest measured them (QEMU 7.2, Debian's 6.1
# kernel, a 1 GiB NVDIMM), cut to what the explanations and the page read.
MEMMAP_ROWS = [
    {"namespace": "fsdax-ext4-mem", "ndctl": "-m fsdax --map=mem", "region_bytes": GIB,
     "namespace_bytes": 1071644672, "dram_bytes": 16994304, "device_bytes": 2097152,
     "model": "page", "model_dram_bytes": 16777216, "model_device_bytes": 0,
     "free_pages": {"drop_bytes": 16994304, "meminfo_change_kb": {
         "MemFree": -19152, "Slab": 204, "SReclaimable": 116, "SUnreclaim": 88}}},
    {"namespace": "fsdax-ext4-dev", "ndctl": "-m fsdax --map=dev", "region_bytes": GIB,
     "namespace_bytes": 1054867456, "dram_bytes": 233472, "device_bytes": 18874368,
     "model": "altmap", "model_dram_bytes": 0, "model_device_bytes": 18874368,
     "free_pages": {"drop_bytes": 233472, "meminfo_change_kb": {
         "Slab": 196, "SReclaimable": 132, "SUnreclaim": 64, "KernelStack": 16,
         "VmallocUsed": 16}}},
    {"namespace": "devdax-4k-mem", "ndctl": "-m devdax --map=mem --align=4k", "region_bytes": GIB,
     "namespace_bytes": 1071644672, "dram_bytes": 17072128, "device_bytes": 2097152,
     "model": "page", "model_dram_bytes": 16777216, "model_device_bytes": 0,
     "free_pages": {"drop_bytes": 17072128, "meminfo_change_kb": {
         "MemFree": -21920, "Slab": 224, "SReclaimable": 164, "SUnreclaim": 60}}},
    {"namespace": "devdax-2M-mem", "ndctl": "-m devdax --map=mem --align=2M", "region_bytes": GIB,
     "namespace_bytes": 1071644672, "dram_bytes": 4530176, "device_bytes": 2097152,
     "model": "devdax-dedup-2M", "model_dram_bytes": 4194304, "model_device_bytes": 0,
     "free_pages": {"drop_bytes": 4530176, "meminfo_change_kb": {
         "MemFree": -4780, "Slab": 288, "SReclaimable": 188, "SUnreclaim": 100,
         "VmallocUsed": 16}}},
    {"namespace": "devdax-2M-dev", "ndctl": "-m devdax --map=dev --align=2M", "region_bytes": GIB,
     "namespace_bytes": 1054867456, "dram_bytes": 311296, "device_bytes": 18874368,
     "model": "altmap", "model_dram_bytes": 0, "model_device_bytes": 18874368,
     "free_pages": {"drop_bytes": 311296, "meminfo_change_kb": {
         "MemFree": -6020, "Slab": 296, "SReclaimable": 208, "SUnreclaim": 88}}},
]
TCG_REASON = "no vmx or svm in /proc/cpuinfo, and a /dev/kvm without them hangs a stock kernel"


def _labels(ns, accel="tcg"):
    return vm.guest_labels(ns, accel, TCG_REASON if accel == "tcg" else "vmx, and /dev/kvm opens",
                           "7.2.22", "6.1.0-56-amd64", GIB)


def _memmap_doc():
    rows = [dict(r, guest=_labels(vm.Namespace.from_label(r["namespace"])))
            for r in MEMMAP_ROWS]
    return {"schema": "pagetax-vm-memmap/1", "capacity_bytes": GIB, "rows": rows}


def _words(text):
    return " ".join(text.split())


# what each mode's explanation must say, beyond the figures every one gives
EXPLAINED = {
    "fsdax-ext4-mem": ["262,144 x 64 B = 16.00 MiB",
                       "The device gives up 2.00 MiB where pagetax's page model says 0.00 MiB: "
                       "the 8 KiB info block, padded to the 2 MiB alignment",
                       "The +212 KiB of DRAM beyond the model are not struct pages",
                       "pfn device and pmem block device",
                       "Slab +204 KiB across create-namespace; the other +8 KiB is outside the slab."],
    "fsdax-ext4-dev": ["no DRAM for struct pages",
                       "ALIGN(8 KiB info block + 64 B x 262,142 pages, 2 MiB) = 18.00 MiB",
                       "region - namespace = 18.00 MiB, as the model says",
                       "Slab +196 KiB", "the other +32 KiB is outside the slab "
                       "(KernelStack +16 KiB, VmallocUsed +16 KiB)"],
    "devdax-4k-mem": ["no compound pages, so no vmemmap dedup", "= 16.00 MiB",
                      "gives up 2.00 MiB", "+288 KiB", "dax devices", "Slab +224 KiB"],
    "devdax-2M-mem": ["keeps 2 pages", "512 x 8 KiB = 4.00 MiB in DRAM instead of 16.00 MiB",
                      "gives up 2.00 MiB where pagetax's devdax-dedup-2M model says 0.00 MiB",
                      "+328 KiB", "8 page-table pages, 32 KiB", "Slab +288 KiB",
                      "the other +40 KiB is outside the slab (VmallocUsed +16 KiB)"],
    "devdax-2M-dev": ["no DRAM for struct pages",
                      "at --align=2M too, since the kernel dedups no vmemmap kept on the device",
                      "as the model says", "+304 KiB", "Slab +296 KiB"],
}


@pytest.mark.parametrize("row", MEMMAP_ROWS, ids=lambda r: r["namespace"])
def test_memmap_rows_explain_their_difference_from_the_model(row):
    from pagetax import metadata
    got = vm.memmap_explained(row)
    assert got["dram_minus_model_bytes"] == row["dram_bytes"] - row["model_dram_bytes"]
    assert got["device_minus_model_bytes"] == row["device_bytes"] - row["model_device_bytes"]
    text = got["explanation"]
    assert "\n" not in text
    for phrase in EXPLAINED[row["namespace"]]:
        assert phrase in text, phrase
    # the model's figures it quotes are metadata.py's, for the design memmap_design picks
    ns = vm.Namespace.from_label(row["namespace"])
    model = metadata.model(vm.memmap_design(ns))
    assert model.name == row["model"]
    if model.name == "altmap":
        assert f"= {model.device(GIB) / MIB:.2f} MiB" in text
    else:
        assert f"= {model.dram(GIB) / MIB:.2f} MiB" in text


def test_memmap_explanation_without_meminfo_or_beyond_the_model():
    bare = {k: v for k, v in MEMMAP_ROWS[0].items() if k != "free_pages"}
    text = vm.memmap_explanation(bare)
    assert "This file has no meminfo from the guest to say how much is slab." in text
    assert "Slab" not in text
    below = dict(MEMMAP_ROWS[0], dram_bytes=16777216 - 12288)
    assert "DRAM came out 12 KiB below the model" in vm.memmap_explanation(below)
    bigger = dict(MEMMAP_ROWS[1], device_bytes=MEMMAP_ROWS[1]["device_bytes"] + 2 * MIB)
    assert "= 20.00 MiB, 2.00 MiB more than the model's reserve" in vm.memmap_explanation(bigger)
    odd = dict(MEMMAP_ROWS[0], device_bytes=4 * MIB)  # not the info block alone
    assert "info block" not in vm.memmap_explanation(odd)
    # the dedup's absence on the device is a 2M devdax matter only
    assert "--align=2M" not in vm.memmap_explanation(MEMMAP_ROWS[1])  # fsdax
    four_k = dict(MEMMAP_ROWS[4], namespace="devdax-4k-dev", ndctl="-m devdax --map=dev --align=4k")
    assert "--align=2M" not in vm.memmap_explanation(four_k)


def test_memmap_figures_carries_the_differences_and_explanation():
    row = MEMMAP_ROWS[3]
    ns = vm.Namespace.from_label(row["namespace"])
    result = vm.VmResult(
        namespace=ns, status=0, stdout="", stderr="", console="", files=[], accelerator="tcg",
        accelerator_reason=TCG_REASON, qemu_version="7.2.22", guest_kernel="6.1.0-56-amd64",
        capacity=GIB, ndctl={"namespace": {"size": row["namespace_bytes"]},
                             "region": {"size": row["region_bytes"]}},
        memmap=row["free_pages"], phases=[])
    got = vm.memmap_figures(result)
    for key in ("region_bytes", "namespace_bytes", "dram_bytes", "device_bytes", "model",
                "model_dram_bytes", "model_device_bytes"):
        assert got[key] == row[key], key
    assert got["dram_minus_model_bytes"] == 335872 and got["device_minus_model_bytes"] == 2 * MIB
    assert got["explanation"] == vm.memmap_explanation(row)
    assert got["guest"]["accelerator"] == "tcg"


FAKE_GUESTS = r"""
import json, sys
from pagetax import cli, vm
rows = {r["namespace"]: r for r in json.load(open(sys.argv[1]))}
vm.check_tools = lambda kernel=None: vm.Host("/bin/true", "/bin/true", "/boot/vmlinuz-6.1", "6.1", "/bin/true")
vm.qemu_version = lambda qemu: "7.2.22"
vm.choose_accelerator = lambda: ("tcg", "faked")

def run(ns, argv, memmap=False, capacity=None, **kw):
    assert memmap and argv == []
    r = rows[ns.label]
    return vm.VmResult(ns, 0, "", "", "", [], "tcg", "faked", "7.2.22", "6.1.0-56-amd64", capacity,
                       {"namespace": {"size": r["namespace_bytes"]},
                        "region": {"size": r["region_bytes"]}},
                       r["free_pages"], [("boot", 1.0)])
vm.run = run
sys.exit(cli.main(sys.argv[2:]))
"""


def test_vm_memmap_prints_and_writes_the_explanations(tmp_path):
    """`pagetax vm memmap` with its five guests faked: the table, each mode's
    explanation under it, and the JSON rows with differences and explanations."""
    (tmp_path / "rows.json").write_text(json.dumps(MEMMAP_ROWS))
    p = subprocess.run([sys.executable, "-c", FAKE_GUESTS, str(tmp_path / "rows.json"),
                        "vm", "memmap", "--json", str(tmp_path / "m.json")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = _words(p.stdout)
    table_end = out.index("at the region's capacity")  # the table's caption ends so
    last = table_end
    for row in MEMMAP_ROWS:
        note = _words(f"{row['namespace']} ({row['ndctl']}): {vm.memmap_explanation(row)}")
        assert out.find(note) > last, f"{row['namespace']}'s explanation is not under the table"
        last = out.find(note)
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["schema"] == report_page.MEMMAP_SCHEMA
    for got, row in zip(doc["rows"], MEMMAP_ROWS):
        assert got["namespace"] == row["namespace"]
        assert (got["dram_bytes"], got["model_dram_bytes"], got["device_bytes"],
                got["model_device_bytes"]) == (row["dram_bytes"], row["model_dram_bytes"],
                                               row["device_bytes"], row["model_device_bytes"])
        assert got["dram_minus_model_bytes"] == row["dram_bytes"] - row["model_dram_bytes"]
        assert got["device_minus_model_bytes"] == row["device_bytes"] - row["model_device_bytes"]
        assert got["explanation"] == vm.memmap_explanation(row)


@pytest.fixture(scope="module")
def run_doc(tmp_path_factory):
    """A small run's result file, made on the host."""
    pytest.importorskip("matplotlib")
    d = tmp_path_factory.mktemp("run")
    p = cli("run", *SMALL, "--repeat", "1", "--designs", "vec,page,memcpy", "--ops", "read",
            "--json", str(d / "r.json"), cwd=d)
    assert p.returncode == 0, p.stderr
    return json.loads((d / "r.json").read_text())


def _text(page):
    return _words(html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _section(page, start, end="<h2"):
    i = page.index(start)
    j = page.find(end, i + len(start))
    return page[i:j if j >= 0 else len(page)]


def test_report_page_with_a_guest_run_and_a_memmap_file(run_doc, tmp_path):
    doc = dict(run_doc, guest=_labels(vm.Namespace("fsdax", "mem")))
    (tmp_path / "run.json").write_text(json.dumps(doc))
    (tmp_path / "memmap.json").write_text(json.dumps(_memmap_doc()))
    # in either order
    p = cli("report", str(tmp_path / "memmap.json"), str(tmp_path / "run.json"),
            "-o", str(tmp_path / "rep"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<title>pagetax report (in a TCG guest)</title>" in page

    # the banner, before any section of the run
    assert '<div class="guest"' in page, "no guest banner"
    assert page.index('<div class="guest"') < page.index("<h2>")
    banner = _text(_section(page, '<div class="guest"', "</div>"))
    for said in ("This run ran inside a TCG guest", "emulator qemu-system-x86_64 7.2.22",
                 f"accelerator TCG: {TCG_REASON}", "guest kernel 6.1.0-56-amd64",
                 "namespace fsdax-ext4-mem (fsdax, map=mem, ext4) on a 1G emulated NVDIMM",
                 "The timings on this page are not comparable to a real machine.", vm.TCG_NOTE):
        assert said in banner, said
    assert "<h2>Throughput and cost per segment</h2>" in page  # the run is all there too

    # the memmap section: the table, a row per mode, and each mode's explanation
    memmap = _section(page, '<h2 id="memmap">')
    assert "The kernel's own struct pages, measured in a guest" in _text(memmap)
    assert "memmap.json: one fresh guest per namespace mode (qemu-system-x86_64 7.2.22 under " \
           "TCG, guest kernel 6.1.0-56-amd64), on a 1G NVDIMM region" in _text(memmap)
    table = _section(memmap, "<table>", "</table>")
    assert table.count("<tr>") == 1 + len(MEMMAP_ROWS)
    cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", table)]
    assert cells[:9] == ["-m fsdax --map=mem", "1,071,644,672", "16.21", "2.00", "page", "16.00",
                         "0.00", "+0.21", "+2.00"]
    assert cells[27:36] == ["-m devdax --map=mem --align=2M", "1,071,644,672", "4.32", "2.00",
                            "devdax-dedup-2M", "4.00", "0.00", "+0.32", "+2.00"]
    items = re.findall(r"<li>(.*?)</li>", memmap, re.S)
    assert len(items) == len(MEMMAP_ROWS)
    for item, row in zip(items, MEMMAP_ROWS):
        assert _text(item) == _words(f"{row['namespace']} ({row['ndctl']}): "
                                     f"{vm.memmap_explanation(row)}")


def test_report_page_banner_under_kvm_and_none_on_the_host(run_doc):
    kvm = report_page.render(dict(run_doc, guest=_labels(vm.Namespace("devdax", "dev"), "kvm")))
    assert '<div class="guest"' in kvm, "no guest banner"
    banner = _text(_section(kvm, '<div class="guest"', "</div>"))
    assert "This run ran inside a KVM guest" in banner and vm.KVM_NOTE in banner
    assert "namespace devdax-2M-dev (devdax, map=dev, align=2M)" in banner
    assert "not comparable" not in banner
    host = report_page.render(run_doc)
    assert 'class="guest"' not in host and "<title>pagetax report</title>" in host
    assert "ran inside" not in host and 'id="memmap"' not in host


def test_report_page_of_a_memmap_file_alone(tmp_path):
    doc = _memmap_doc()
    for r in doc["rows"]:
        assert "explanation" not in r  # a file from before explanations: the page makes them
    (tmp_path / "m.json").write_text(json.dumps(doc))
    p = cli("report", str(tmp_path / "m.json"), "-o", str(tmp_path / "rep"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert '<h2 id="memmap">' in page and "Throughput" not in page and 'class="guest"' not in page
    assert page.count("<li>") == len(MEMMAP_ROWS)
    assert html.escape(vm.memmap_explanation(MEMMAP_ROWS[3])) in page


def test_report_refuses_what_it_cannot_show(tmp_path, run_doc):
    (tmp_path / "r.json").write_text(json.dumps(run_doc))
    (tmp_path / "other.json").write_text(json.dumps({"schema": "pagetax-metadata/1"}))
    bad = _memmap_doc()
    del bad["rows"][2]["dram_bytes"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "empty.json").write_text(json.dumps({"schema": "pagetax-vm-memmap/1", "rows": []}))
    for args, message in [
        (["r.json", "r.json"], "r.json: a second run result (r.json is the first): a report "
                               "shows one run; compare two with pagetax compare"),
        (["other.json"], "other.json: neither a pagetax run result (schema pagetax-run/1), a "
                         "pagetax vm memmap file (schema pagetax-vm-memmap/1) nor a pagetax "
                         "kernel file (schema pagetax-kernel/1)"),
        (["bad.json"], "bad.json: memmap row 2 lacks dram_bytes; was the file edited or cut short?"),
        (["empty.json"], "empty.json: has no list of memmap rows"),
        (["none.json"], "none.json: No such file or directory"),
    ]:
        p = cli("report", *args, "-o", str(tmp_path / "rep"), cwd=tmp_path)
        assert p.returncode == 1
        assert p.stderr.strip() == f"pagetax: error: {message}"
    assert not (tmp_path / "rep").exists()


def test_the_guest_leaves_the_hosts_tmp_visible():
    """A pagetax installed under /tmp (a CI clone there) must run in the
    guest: its own tmpfs goes over /run, and TMPDIR points into it."""
    script = vm.init_script("/tmp/clone/.venv/bin/python")
    assert "/host/tmp" not in script
    assert "mount -t tmpfs -o mode=1777 tmpfs /host/run" in script
    assert f"TMPDIR={vm_guest.SCRATCH}/tmp" in script
    assert vm_guest.SHARE.startswith("/run/") and vm_guest.DAX_DIR.startswith("/run/")


def test_a_guest_error_names_the_kernel_bug_not_the_stack_dump_after_it():
    """A locked-up guest's console ends in stack dumps; the error quotes
    the kernel's own first BUG line, and otherwise the console's last line."""
    guest = vm._Guest.__new__(vm._Guest)
    guest.lines = ["[    2.9] Unstable clock detected", f"{vm_guest.MARK} mkfs 7.91",
                   "[   45.1] rcu: INFO: rcu_preempt self-detected stall on CPU",
                   "[   69.2] watchdog: BUG: soft lockup - CPU#0 stuck for 45s! [python:138]",
                   "[   69.2] RIP: 0010:smp_call_function_many_cond+0xf1/0x330",
                   "[   69.3] Kernel panic - not syncing: softlockup: hung tasks",
                   "[   69.3]  </TASK>", ""]
    assert guest.last_words() == "the kernel said: [   69.2] watchdog: BUG: soft lockup - " \
                                 "CPU#0 stuck for 45s! [python:138]"
    guest.lines = guest.lines[:3]
    assert guest.last_words() == "last console line: [   45.1] rcu: INFO: rcu_preempt " \
                                 "self-detected stall on CPU"
    guest.lines = [f"{vm_guest.MARK} boot 1.0"]
    assert guest.last_words() == "last console line: (nothing on the console)"


def test_vm_exec_runs_a_command_on_the_namespace_and_brings_its_files_back(tmp_path):
    _host_or_skip()
    out = tmp_path / "out"
    p = cli("vm", "exec", "--mode", "devdax", "-o", str(out), "--", "sh", "-c",
            'echo "$PAGETAX_VM_DEVDAX" > where; echo "$PAGETAX_VM_NAMESPACE" > ns.json; exit 3',
            cwd=tmp_path, timeout=300)
    assert p.returncode == 3, p.stderr   # the command's own status
    assert (out / "where").read_text().strip() == "/dev/dax0.0"
    assert json.loads((out / "ns.json").read_text())["mode"] == "devdax"
    assert f"pagetax: vm exec: devdax-2M-mem: exited 3; its files: {out} (2)" in p.stderr
    again = cli("vm", "exec", "-o", str(out), "--", "true", cwd=tmp_path, timeout=60)
    assert again.returncode == 1 and "booting" not in again.stderr
    assert _one_error_line(again) == f"pagetax: error: --output {out} exists and is not an " \
                                     "empty folder"

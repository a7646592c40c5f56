"""`pagetax vm` from the command line: its refusals, and real guests, one
interrupted with Ctrl-C while booting, one that runs a command and one
from `vm exec`.

The real guests need QEMU, a kernel and busybox-static (apt-get install
qemu-system-x86 linux-image-amd64 busybox-static ndctl e2fsprogs xfsprogs
kmod) and skip without them; under TCG each boot takes 10-20 s."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pagetax.guest import agent
from pagetax.guest.lifecycle import run as run_guest
from pagetax.guest.namespace import Namespace
from pagetax.guest.qemu import QemuGuest
from helpers import CLI, cli, guest_host_or_skip

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
    guest_host_or_skip()
    p = cli("vm", "run", "--", *run_args, cwd=tmp_path, timeout=60)
    assert p.returncode == 1
    assert _one_error_line(p) == f"pagetax: error: vm run sets {option} itself: leave it out"
    assert "booting a guest" not in p.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["--dax", "--json", "--overwrite"])
def test_vm_kernel_refuses_what_it_sets_itself(tmp_path, option):
    guest_host_or_skip()
    p = cli("vm", "kernel", "--", option, cwd=tmp_path, timeout=60)
    assert p.returncode == 1
    assert _one_error_line(p) == f"pagetax: error: vm kernel sets {option} itself: leave it out"
    assert "booting a guest" not in p.stderr


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
    guest_host_or_skip()
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
            if qemu and f"console: {agent.MARK} boot" in said:
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
    guest_host_or_skip()
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    result = run_guest(Namespace("fsdax", "mem"), [sys.executable, "-c", GUEST_SCRIPT],
                       output_dir=str(out), env={"PAGETAX_TEST_WORD": "a b,c"}, workdir=str(work),
                       timeout=180)
    assert result.status == 7, result.console[-3000:]
    assert result.stdout == "to stdout\n" and result.stderr == "to stderr\n"
    assert result.files == ["sub/env.json"]
    got = json.loads((out / "sub" / "env.json").read_text())
    env = got["env"]
    assert env["PAGETAX_TEST_WORD"] == "a b,c"
    assert env["PAGETAX_VM_DAX_DIR"] == agent.DAX_DIR and "PAGETAX_VM_DEVDAX" not in env
    ns = json.loads(env["PAGETAX_VM_NAMESPACE"])
    assert (ns["mode"], ns["map"], ns["fs"], ns["label"]) == ("fsdax", "mem", "ext4", "fsdax-ext4-mem")
    assert ns["ndctl"]["namespace"]["mode"] == "fsdax"
    guest = json.loads(env["PAGETAX_GUEST"])
    assert guest["accelerator"] == result.accelerator and guest["namespace"]["label"] == "fsdax-ext4-mem"
    assert guest["timings_comparable"] == (result.accelerator == "kvm")
    (mount,) = got["mounts"]
    assert mount[2] == "ext4" and "dax=always" in mount[3].split(","), mount  # -o dax
    assert got["cwd"] == agent.OUT_DIR and got["uid"] == 0
    assert result.ndctl["namespace"]["mode"] == "fsdax" and result.ndctl["namespace"]["map"] == "mem"
    assert result.ndctl["region"]["size"] == 1 << 30
    assert result.guest_kernel == guest_host_or_skip().kernel_version
    assert [p for p, _ in result.phases][:2] == ["firmware", "kernel"]
    assert "command" in dict(result.phases)
    assert result.labels()["namespace"]["label"] == "fsdax-ext4-mem"
    assert os.listdir(work) == []  # image, initramfs and share gone



def test_a_guest_error_names_the_kernel_bug_not_the_stack_dump_after_it():
    """A locked-up guest's console ends in stack dumps; the error quotes
    the kernel's own first BUG line, and otherwise the console's last line."""
    guest = QemuGuest.__new__(QemuGuest)
    guest.lines = ["[    2.9] Unstable clock detected", f"{agent.MARK} mkfs 7.91",
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
    guest.lines = [f"{agent.MARK} boot 1.0"]
    assert guest.last_words() == "last console line: (nothing on the console)"


def test_vm_exec_runs_a_command_on_the_namespace_and_brings_its_files_back(tmp_path):
    guest_host_or_skip()
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

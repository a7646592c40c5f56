"""A guest's life: build its boot image, boot it (KVM, or TCG when KVM does
not reach init), wait for it to power off, collect what it left, and remove
QEMU and the temp folder on every exit path, Ctrl-C and SIGTERM included."""
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

from . import agent
from .bootimage import boot_kernel, build_initramfs
from .host import check_tools, choose_accelerator, qemu_version
from .namespace import GIB, Namespace, VmError, check_sizes
from .qemu import QemuGuest, qemu_argv

KVM_BOOT_DEADLINE = 30            # seconds for a KVM guest to reach init before it counts as hung
TCG_NOTE = ("TCG emulates every guest instruction in software (a memcpy runs 10-18x slower "
            "than on the host, Python 20-45x), and the two vCPUs take turns on one host "
            "thread: GB/s and ns figures say nothing about real hardware; correctness and "
            "memory figures hold")
KVM_NOTE = ("the CPU runs natively under KVM, but the NVDIMM is a host file in DRAM, not pmem "
            "media: compare designs within this run, not with real pmem")


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
    return os.path.join(share, os.path.relpath(guest_path, agent.SHARE))


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
            os.makedirs(_host_path(share, agent.OUT_DIR))
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
                with open(_host_path(share, agent.JOB), "w") as f:
                    json.dump(job, f)
                argv = qemu_argv(host, accel, kernel, initrd, image, share, capacity, memory)
                return QemuGuest(argv, on_console)

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
        with open(_host_path(share, agent.REPORT)) as f:
            report = json.load(f)
    except (FileNotFoundError, ValueError):
        raise VmError(f"{namespace.label}: the guest agent reported nothing "
                      f"({guest.last_words()})") from None
    if "error" in report:
        raise VmError(f"{namespace.label}: {report['error']}")
    out = _host_path(share, agent.OUT_DIR)
    files = sorted(os.path.relpath(os.path.join(d, n), out)
                   for d, _, names in os.walk(out) for n in names)
    if output_dir:
        shutil.copytree(out, output_dir, dirs_exist_ok=True)
    return VmResult(namespace=namespace, status=report.get("status", 0),
                    stdout=_read_text(_host_path(share, agent.STDOUT)),
                    stderr=_read_text(_host_path(share, agent.STDERR)),
                    console="\n".join(guest.lines), files=files, accelerator=accel,
                    accelerator_reason=accel_reason, qemu_version=qemu_version(host.qemu),
                    guest_kernel=report["kernel"], capacity=capacity, ndctl=report["ndctl"],
                    memmap=report.get("memmap"), phases=_phases(guest.marks, guest.elapsed()))

"""QEMU: the argument list of a guest, and one QEMU process with a thread
that reads its console and times the agent's phase marks."""
import ctypes
import os
import re
import signal
import subprocess
import threading
import time

from . import agent
from .bootimage import SHARE_TAG
from .namespace import MIB

KERNEL_TROUBLE = re.compile(r"\bBUG:|\bOops:|Kernel panic")
PR_SET_PDEATHSIG = 1
SIGKILL = int(signal.SIGKILL)


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


class QemuGuest:
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
            if line.startswith(agent.MARK + " "):
                self._mark(line[len(agent.MARK) + 1:].split())
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
        said = [x.strip() for x in self.lines if x.strip() and not x.startswith(agent.MARK)]
        trouble = [x for x in said if KERNEL_TROUBLE.search(x)]
        if trouble:
            return f"the kernel said: {trouble[0]}"
        return f"last console line: {said[-1] if said else '(nothing on the console)'}"

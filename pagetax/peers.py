"""Peers loaded at run time: PMDK's libpmem (cffi ABI mode, so that pagetax
builds and runs without it)."""
import ctypes.util
import os

import cffi

from ._core import ffi as core_ffi
from ._core import lib as core_lib

_abi = cffi.FFI()
_abi.cdef("""
    void *pmem_memcpy_persist(void *pmemdest, const void *src, size_t len);
    void *pmem_memcpy_nodrain(void *pmemdest, const void *src, size_t len);
    void pmem_drain(void);
    const char *pmem_check_version(unsigned major_required, unsigned minor_required);
""")
_loaded = None
LIBPMEM_ROWS = ("libpmem", "libpmem-nodrain")


def load_libpmem():
    """Load libpmem and hand its copy functions to the core.  Returns a
    description of what was loaded, or raises OSError with why not."""
    global _loaded
    if _loaded is None:
        names = ["libpmem.so.1", ctypes.util.find_library("pmem")]
        errors = []
        for name in filter(None, names):
            try:
                lib = _abi.dlopen(name)
                break
            except OSError as e:
                errors.append(str(e))
        else:
            raise OSError("libpmem is not installed (Debian: apt-get install libpmem1): "
                          + "; ".join(errors))
        ptr = {f: core_ffi.cast("void *", int(_abi.cast("uintptr_t", getattr(lib, f))))
               for f in ("pmem_memcpy_persist", "pmem_memcpy_nodrain", "pmem_drain")}
        core_lib.pt_set_libpmem(ptr["pmem_memcpy_persist"], ptr["pmem_memcpy_nodrain"],
                                ptr["pmem_drain"])
        _loaded = (lib, name)  # keep the library loaded for the process's life
    return {"library": _loaded[1]}


FIO_ROWS = ("fio-mmap",)


def fio_available():
    import shutil
    return shutil.which("fio")


def run_fio(backing, data_off, data_bytes, op, pattern, seg, io_bytes, loops=3):
    """fio's mmap engine on the same backing (through /proc/self/fd, so an
    unlinked scratch file works too), same block size, pattern, direction
    and bytes.  Returns (bytes per second, I/Os per second).  fio maps the
    file itself, so its first loop pays first-touch faults; `loops` spreads
    them, as a longer fio job would."""
    import json
    import subprocess
    rw = {("read", "seq"): "read", ("read", "rand"): "randread",
          ("write", "seq"): "write", ("write", "rand"): "randwrite"}[(op, pattern)]
    cmd = ["fio", "--name=pagetax", "--ioengine=mmap", f"--filename=/proc/{os.getpid()}/fd/{backing.fd}",
           f"--offset={data_off}", f"--size={data_bytes}", f"--bs={seg}", f"--rw={rw}",
           f"--io_size={io_bytes}", f"--loops={loops}", "--invalidate=0", "--fadvise_hint=0",
           "--randrepeat=1", "--output-format=json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, pass_fds=(backing.fd,))
    if p.returncode != 0:
        raise OSError(f"fio failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    job = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]
    side = job["read" if op == "read" else "write"]
    return float(side["bw_bytes"]), float(side["iops"])

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


FIO_ROWS = {"mmap": "fio-mmap", "libpmem": "fio-libpmem", "dev-dax": "fio-dev-dax"}


def fio_available():
    import shutil
    return shutil.which("fio")


def fio_engines():
    """The I/O engines this fio was built with (fio --enghelp)."""
    import subprocess
    try:
        p = subprocess.run(["fio", "--enghelp"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.strip() for line in p.stdout.splitlines()[1:] if line.strip()}


def fio_plan(kind, map_sync, engines):
    """Which fio engines suit a backing, as [(engine, row design)], and a
    one-line note for each that does not run.  mmap runs on any file; fio's
    libpmem engine refuses a file that is not on DAX (it checks
    pmem_is_pmem), so it runs on dax: backings; dev-dax runs on device DAX,
    where the mmap engine cannot size the node."""
    want = ["dev-dax"] if kind == "devdax" else ["mmap"] + (["libpmem"] if map_sync else [])
    plan, notes = [], []
    for engine in want:
        if engine in engines:
            plan.append((engine, FIO_ROWS[engine]))
        else:
            notes.append(f"--peers fio: this fio has no {engine} engine (fio --enghelp); "
                         f"no {FIO_ROWS[engine]} rows")
    if kind == "devdax":
        notes.append("--peers fio: no fio-mmap rows on device DAX (fio's mmap engine sizes "
                     "a file; a device node has none)")
    elif not map_sync:
        notes.append("--peers fio: no fio-libpmem rows: fio's libpmem engine needs a file on "
                     "DAX (--backing dax:PATH)")
    return plan, notes


def fio_command(engine, filename, file_bytes, op, pattern, seg, io_bytes, loops=2, threads=1,
                cpus=None, hot_bytes=None):
    """fio's command line for one row: the same block size, pattern,
    direction, threads and bytes per thread as pagetax's.

    The region is the whole file from offset 0 (or, for hot, its first
    hot_bytes): fio 3.33's mmap engine maps [0, size) whatever --offset says,
    then remaps for every I/O outside that window, and reads or writes the
    bytes at (offset - --offset), so an --offset or offset_increment would
    make it slow and put its writes where they were not asked for.  Threads
    are fio jobs in one process, each over the whole region, as
    `fio --numjobs` does by default."""
    rw = {"seq": "read", "rand": "randread", "hot": "randread"}[pattern]
    if op == "write":
        rw = rw.replace("read", "write")
    size, extra = file_bytes, []
    if pattern == "hot":
        size, extra = hot_bytes, ["--norandommap"]
    cmd = ["fio", "--name=pagetax", f"--ioengine={engine}", f"--filename={filename}",
           "--offset=0", f"--size={size}", f"--bs={seg}", f"--rw={rw}",
           f"--io_size={io_bytes}", f"--loops={loops}", "--invalidate=0", "--fadvise_hint=0",
           "--randrepeat=1", "--output-format=json", *extra]
    if threads > 1:  # jobs as threads of one process, as pagetax's are
        cmd += [f"--numjobs={threads}", "--thread", "--group_reporting"]
    if cpus:
        cmd += [f"--cpus_allowed={','.join(map(str, sorted(set(cpus))))}",
                "--cpus_allowed_policy=split"]
    return cmd


def run_fio(backing, engine, op, pattern, seg, io_bytes, loops=2, threads=1, cpus=None,
            hot_bytes=None):
    """One fio run on the same backing (a scratch file through /proc/PID/fd,
    so an unlinked file works too; a device node by its path).  Returns
    (bytes per second, I/Os per second), all jobs together.  fio maps the
    file itself, so its first loop pays first-touch faults; `loops` spreads
    them, as a longer fio job would."""
    import json
    import subprocess
    filename = backing.path if backing.kind == "devdax" else f"/proc/{os.getpid()}/fd/{backing.fd}"
    cmd = fio_command(engine, filename, backing.size, op, pattern, seg, io_bytes, loops,
                      threads, cpus, hot_bytes)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, pass_fds=(backing.fd,))
    out = p.stdout
    try:
        job = json.loads(out[out.index("{"):])["jobs"][0]
    except (ValueError, KeyError, IndexError, TypeError):  # not fio's JSON
        job = None
    if p.returncode != 0 or job is None or job.get("error"):
        why = (p.stderr or out).strip().splitlines()
        raise OSError(f"fio --ioengine={engine} failed: {why[0] if why else 'no output'}")
    side = job["read" if op == "read" else "write"]
    return float(side["bw_bytes"]), float(side["iops"])

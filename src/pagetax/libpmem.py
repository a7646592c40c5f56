"""The libpmem peer: PMDK's libpmem, loaded at run time (cffi ABI mode, so
that pagetax builds and runs without it) and handed to the core, whose
libpmem designs (PT_DESIGN_PEER) call it beside pagetax's own in every
write cell.  The peers' registry is peers.py."""
import ctypes.util

import cffi

from ._core import ffi as core_ffi
from ._core import lib as core_lib
from .designs import PEERS as PEER_DESIGNS

_abi = cffi.FFI()
_abi.cdef("""
    void *pmem_memcpy_persist(void *pmemdest, const void *src, size_t len);
    void *pmem_memcpy_nodrain(void *pmemdest, const void *src, size_t len);
    void pmem_drain(void);
    const char *pmem_check_version(unsigned major_required, unsigned minor_required);
""")
NAME = "libpmem"
_loaded = None


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


def core_designs_per_write_cell(cfg):
    """The core designs this peer adds to each write cell (the progress bar's count)."""
    return len(PEER_DESIGNS)


def prepare(cfg, backing):
    """(core designs, runs of its own, warnings): the libpmem designs, in
    write cells, once the library loads; no runs of its own."""
    try:
        load_libpmem()
    except OSError as e:
        return [], [], [f"--peers {NAME}: {e}; no libpmem rows"]
    return (list(PEER_DESIGNS) if "write" in cfg.ops else []), [], []

"""Persistent scatters: the --persist modes, what `auto` becomes on this CPU,
and the codes the core runs them by.

Which instruction a mode needs is the core's answer (pt_persist_missing,
csrc/cpu.c), the same one it checks before a run, so the two cannot differ.
"""
from ._core import ffi, lib
from .errors import PagetaxError

PERSIST_MODES = ("none", "clwb", "clflushopt", "clflush", "nt", "auto")
AUTO_FLUSHES = ("clwb", "clflushopt", "clflush")  # libpmem's order of preference
PERSIST_CODE = {"none": lib.PT_PERSIST_NONE, "clwb": lib.PT_PERSIST_CLWB,
                "clflushopt": lib.PT_PERSIST_CLFLUSHOPT, "clflush": lib.PT_PERSIST_CLFLUSH,
                "nt": lib.PT_PERSIST_NT, "auto-clwb": lib.PT_PERSIST_AUTO_CLWB,
                "auto-clflushopt": lib.PT_PERSIST_AUTO_CLFLUSHOPT,
                "auto-clflush": lib.PT_PERSIST_AUTO_CLFLUSH, "fence": lib.PT_PERSIST_FENCE}


def cpu_features():
    """What cpuid says about the persistence instructions."""
    out = ffi.new("struct pt_cpu *")
    lib.pt_cpu_features(out)
    return {"clflush": bool(out.clflush), "clflushopt": bool(out.clflushopt),
            "clwb": bool(out.clwb), "sse2": bool(out.sse2), "prefetchw": bool(out.prefetchw)}


def missing_insn(resolved, cpu=None):
    """The instruction a concrete mode needs and this CPU lacks, or None.
    The core answers; a `cpu` dict given instead (a test's pretend CPU)
    answers by the instruction's own name."""
    if cpu is None:
        name = lib.pt_persist_missing(PERSIST_CODE[resolved])
        return None if name == ffi.NULL else ffi.string(name).decode()
    insn = {"nt": "sse2"}.get(resolved, resolved)
    return None if cpu.get(insn, True) else insn.upper()


def resolve_persist(mode, caches_persistent=False, cpu=None):
    """The concrete mode for a --persist choice.  `auto` follows libpmem:
    CLWB, else CLFLUSHOPT, else CLFLUSH, non-temporal stores from 256 bytes,
    and nothing to flush (a fence only) where the caches are persistent."""
    if mode not in PERSIST_MODES:
        raise PagetaxError(f"unknown persistence mode {mode!r} (choose from {', '.join(PERSIST_MODES)})")
    if mode == "auto":
        if caches_persistent:
            return "fence"
        cpu = cpu or cpu_features()
        for insn in AUTO_FLUSHES:
            if cpu[insn]:
                return f"auto-{insn}"
        raise PagetaxError("this CPU has none of CLWB, CLFLUSHOPT or CLFLUSH")
    missing = missing_insn(mode, cpu)
    if missing:
        raise PagetaxError(f"--persist {mode}: this CPU has no {missing} (cpuid); try --persist auto")
    return mode


def persist_code(resolved, each=False):
    """The core's code for a resolved mode, with a fence per entry if `each`."""
    return PERSIST_CODE[resolved] | (lib.PT_PERSIST_EACH if each and resolved != "none" else 0)

"""`pagetax kernel`: what the running kernel pays per page, beside the model.

  probes/     the kernel's paths, one module each (vmsplice/splice,
              mincore, populate, io_uring READ and READ_FIXED), and the
              check each makes; probes/__init__.py is their registry
  buffers.py  4 KiB, THP and hugetlb buffers, checked in smaps
  loopdev.py  a throw-away loop device for O_DIRECT
  measure.py  the sweeps over pages per call, and what each figure holds
  slope.py    per-page cost as a slope, with its interval
  model.py    pagetax's page and folio designs over the same pages
  memmap.py   the kernel's memmap counters with HVO off and on
  sysstate.py every setting changed, put back on every exit path
  table.py    the terminal tables and the one-sentence answer

README.md beside this file says, function by function, what each path
does per page in the kernel."""
import json
import os
import platform
import time

from .. import machine
from ..errors import PagetaxError
from .probes import REGISTRY, probe

SCHEMA = "pagetax-kernel/1"
PATHS = tuple(REGISTRY)
BUFFERS = ("4K", "THP", "hugetlb")
MEMMAP_NEEDS_ROOT = "the hugetlb pool and the sysctl"


def run(*, paths=PATHS, buffers=BUFFERS, memmap=True, rounds=31, calls=31, model=True,
        memmap_counts=None, on_step=None, dax=None, overwrite=False, trace=False):
    """Measure; return the result document (schema pagetax-kernel/1).
    `dax` (dax:PATH or devdax:DEV) adds a buffer of DAX pages; `trace`
    counts the kernel functions each path ran, where the function tracer
    is allowed."""
    from ..version import build_info
    from . import measure, memmap as _memmap, model as _model
    from .sysstate import KernelState
    t0 = time.monotonic()
    as_root = os.geteuid() == 0
    doc = {"schema": SCHEMA, "pagetax": build_info(), "machine": machine.describe(),
           "config": {"paths": list(paths), "buffers": list(buffers), "rounds": rounds,
                      "calls": calls, "pages": list(measure.PAGES), "memmap": memmap,
                      "dax": dax, "trace": trace,
                      "clock": "CLOCK_MONOTONIC around each system call",
                      "cache": "warm: the same pages every call"},
           "meaning": measure.MEANING, "refused": {}, "warnings": []}
    if not as_root:
        for path in paths:
            why = probe(path).needs_root
            if why:
                doc["refused"][path] = f"needs root ({why})"
        if memmap:
            doc["refused"]["memmap"] = f"needs root ({MEMMAP_NEEDS_ROOT})"
        paths = tuple(p for p in paths if not probe(p).needs_root)
        memmap = False
    if dax:
        buffers = tuple(buffers) + ("dax",)
    guest = os.environ.get("PAGETAX_GUEST")   # runner.GUEST_ENV: set by pagetax vm
    if guest:
        doc["guest"] = json.loads(guest)
    with KernelState() as state:
        tracer = None
        if trace:
            from .ftrace import FunctionTrace
            try:
                tracer = FunctionTrace(state)
            except PagetaxError as e:
                doc["refused"]["trace"] = str(e)
        doc["kernel"] = measure.measure_kernel(state, buffers, paths, rounds, calls, on_step,
                                               dax, overwrite, tracer)
        if model:
            try:
                doc["model"] = _model.measure_model(reps=rounds)
            except PagetaxError as e:
                doc["refused"]["model"] = str(e)
            if on_step:
                on_step("model")
        if memmap:
            try:
                doc["memmap"] = _memmap.measure_hvo(state, counts=memmap_counts)
            except PagetaxError as e:
                doc["refused"]["memmap"] = str(e)
            if on_step:
                on_step("memmap")
    measured = any(e["paths"] for e in doc["kernel"]) or doc.get("memmap")
    if not measured:
        reasons = [f"{k}: {v}" for k, v in doc["refused"].items()] + \
            [f"{e['buffer']} {k}: {v}" for e in doc["kernel"] for k, v in e["refused"].items()]
        raise PagetaxError("nothing could be measured: " + "; ".join(reasons))
    # an interval around zero says "no per-page cost to see", not noise
    noisy = [(e["buffer"], name, f["per_page_ns"]["spread_pct"]) for e in doc["kernel"]
             for name, f in e["paths"].items() if f["per_page_ns"]["spread_pct"] > 7.5
             and not f["per_page_ns"]["low"] <= 0 <= f["per_page_ns"]["high"]]
    for buf, name, pct in noisy:
        doc["warnings"].append(f"{name} on {buf} pages: the rounds' interval spans +-{pct:.0f} % "
                               "of the median, more than the +-7.5 % two runs should agree "
                               "within; the machine was noisy (or the path is)")
    doc["seconds"] = round(time.monotonic() - t0, 2)
    doc["kernel_release"] = platform.release()
    return doc

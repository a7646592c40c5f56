"""bench/bench_kernel.py through asv's own discovery and calls (asv_runner),
in a subprocess: importing asv_runner ties a process to its parent
(bench/__init__.py), which pytest must not be.  As root every figure is
the document's own and finite where the kernel measured it; without root
the benchmarks give NaN where refused, never fail."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_PAGE = "bench_kernel.KernelPerPage.track_per_page_ns"
MEMMAP = "bench_kernel.KernelMemmap.track_freed_vmemmap_pages_per_huge_page"

# Discover the suite as asv does, run each bench_kernel benchmark's
# setup_cache once and every parameter combination as asv's runner does
# (set_cache, do_setup, do_run); print the figures and the caches.  With
# "drop", everything is imported as root (the interpreter may live under
# /root) and then privileges go; with "absent", pagetax.kernel cannot be
# imported, as in a commit from before it.
SCRIPT = r"""
import itertools, json, os, sys
from asv_runner.discovery import disc_benchmarks
if {absent!r}:
    sys.modules["pagetax.kernel"] = None   # import raises ImportError
else:
    import pagetax.kernel
    from pagetax.kernel import buffers, loopdev, measure, memmap, model, probes, slope, sysstate
# the clone's root for bench/, only now: its pagetax/ has no compiled core
# in a fresh clone and must not shadow the installed package
sys.path.append({root!r})
found = [b for b in disc_benchmarks(os.path.join({root!r}, "bench"))
         if b.name.startswith("bench_kernel.")]
if {drop!r}:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {{}}
for b in found:
    cache = b.do_setup_cache()
    rows = []
    for i in range(len(list(itertools.product(*b.params)))):
        b.set_param_idx(i)
        b.set_cache(cache)
        skip = b.do_setup()
        rows.append([list(b._current_params), None if skip else b.do_run()])
    out[b.name] = {{"rows": rows, "cache": cache, "unit": b.unit}}
print(json.dumps(out))
"""


def _run(drop=False, absent=False):
    p = subprocess.run([sys.executable, "-c", SCRIPT.format(root=ROOT, drop=drop, absent=absent)],
                       capture_output=True, text=True, timeout=120, cwd="/tmp")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _median(doc, path, buffer):
    for e in doc["kernel"]:
        if e["buffer"] == buffer and path in e["paths"]:
            return e["paths"][path]["per_page_ns"]["median"]
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="io_uring, hugetlb and the memmap need root")
def test_kernel_benchmarks_are_discovered_and_give_the_documents_figures_as_root():
    got = _run()
    assert set(got) == {PER_PAGE, MEMMAP}
    per_page = got[PER_PAGE]
    assert per_page["unit"] == "ns"
    doc = per_page["cache"]
    assert doc["config"]["rounds"] == 11 and doc["config"]["calls"] == 15
    assert "model" not in doc and "memmap" not in doc   # not what this benchmark tracks
    combos = {(p, b) for p in ("vmsplice", "splice", "vmsplice+splice", "mincore",
                               "read-read_fixed") for b in ("4K", "THP", "hugetlb")}
    assert {tuple(params) for params, _ in per_page["rows"]} == combos
    refusals = {e["buffer"]: e["refused"] for e in doc["kernel"]}
    for (path, buffer), value in ((tuple(p), v) for p, v in per_page["rows"]):
        want = _median(doc, path, buffer)
        if want is None:   # NaN only for what the document says was refused
            assert math.isnan(value) and refusals[buffer], (path, buffer, refusals)
        else:
            assert value == want and math.isfinite(value), (path, buffer)
    for path in ("vmsplice", "splice", "vmsplice+splice", "mincore"):
        assert math.isfinite(dict(((p, b), v) for (p, b), v in per_page["rows"])[(path, "4K")])

    memmap = got[MEMMAP]
    assert memmap["unit"] == "pages"
    assert sorted(tuple(p) for p, _ in memmap["rows"]) == sorted(
        (s, h) for s in ("2M", "1G") for h in (False, True))
    rows = {(r["size"], r["hvo"]): r for r in memmap["cache"].get("memmap") or []}
    if not rows:
        pytest.skip(f"the memmap was refused here: {memmap['cache'].get('refused')}")
    for (size, hvo), value in ((tuple(p), v) for p, v in memmap["rows"]):
        r = rows[(size, hvo)]
        if "refused" in r:
            assert math.isnan(value), (size, hvo)
        else:
            assert value == r["freed_per_huge_page"] == r["model_freed_per_huge_page"]


def test_kernel_benchmarks_without_root_give_nan_where_refused_and_do_not_fail():
    got = _run(drop=os.geteuid() == 0)
    per_page = {tuple(p): v for p, v in got[PER_PAGE]["rows"]}
    assert got[PER_PAGE]["cache"]["refused"]["io_uring"].startswith("needs root")
    for buffer in ("4K", "THP", "hugetlb"):
        assert math.isnan(per_page[("read-read_fixed", buffer)])
    assert math.isfinite(per_page[("vmsplice+splice", "4K")])   # needs no root
    memmap = got[MEMMAP]
    assert memmap["cache"]["refused"].startswith("nothing could be measured: memmap: needs root")
    assert all(math.isnan(v) for _, v in memmap["rows"])


def test_in_a_commit_without_pagetax_kernel_the_benchmarks_are_skipped_not_failed():
    """asv's n/a: setup raises NotImplementedError (do_setup says skip); the
    cache is never None, which would make asv call them without it."""
    got = _run(absent=True)
    assert set(got) == {PER_PAGE, MEMMAP}
    for name in (PER_PAGE, MEMMAP):
        assert got[name]["cache"] == {"absent": "this build has no pagetax kernel"}
        assert got[name]["rows"] and all(v is None for _, v in got[name]["rows"])

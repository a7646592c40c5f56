"""`pagetax kernel`'s measurements: each probe swept over pages per call on
each kind of buffer, the model's designs over the same pages, and what the
figures include.  Everything the command changes in the kernel goes
through a KernelState, which puts it back."""
import time

import numpy as np

from ..errors import PagetaxError
from . import slope
from .buffers import BASE_PAGE, KINDS, Buffer, DaxBuffer
from .probes import REGISTRY, probe
from .probes.common import MAX_PAGES

PAGES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
HUGETLB_2M = "/sys/kernel/mm/hugepages/hugepages-2048kB"

# What each figure's per-page part holds (README.md beside this file has
# the functions behind each word, from the kernel's source).
MEANING = {
    "mincore": "page-table walk: a PTE read and a byte out per page (one memset per 2 MiB "
               "PMD), no struct page",
    "populate": "GUP's slow walk: PTE lock, struct page read, folio_mark_accessed per "
                "page (one walk per 2 MiB PMD), no reference",
    "vmsplice": "gup_fast (FOLL_GET, 16 pages per call): walk, folio_ref_try_add and "
                "folio_set_referenced per page (per folio on a PMD), pipe buffer filled",
    "splice": "one put_page per pipe buffer, so per 4 KiB page even on a 2 MiB folio",
    "vmsplice+splice": "a reference taken and dropped, with the walk and the pipe buffers",
    "vmsplice-mincore": "vmsplice less the walk: the reference, the referenced bit, the "
                        "pipe buffer",
    "read": "O_DIRECT read via a loop device: pin (FOLL_PIN), bio built, pages dirtied, "
            "loop's 4 KiB copy, unpin per folio",
    "read_fixed": "the same read from a registered buffer: bio and loop's copy, no pin, no "
                  "dirtying",
    "read-read_fixed": "READ less READ_FIXED: pin + dirty + unpin per page (per folio on "
                       "a PMD), and building the bio's vector",
}
DERIVED = {"vmsplice+splice": ("vmsplice", "splice", 1),
           "vmsplice-mincore": ("vmsplice", "mincore", -1),
           "read-read_fixed": ("read", "read_fixed", -1)}


def sweep(probes, rounds, calls, seed=1):
    """{series: (pages, (rounds, len(pages)) medians)} for probes on one
    buffer, every (probe, page count) once per round, in a new order each
    round; one untimed pass first."""
    rng = np.random.default_rng(seed)
    jobs = [(p, i, n) for p in probes for i, n in enumerate(p.pages)]
    per_job = {p: calls * p.calls_factor for p in probes}
    for p, _, n in jobs:
        p(n, per_job[p])
    data = {s: (p.pages, np.zeros((rounds, len(p.pages)))) for p in probes for s in p.series}
    for r in range(rounds):
        for j in rng.permutation(len(jobs)):
            p, i, n = jobs[j]
            for series, ns in p(n, per_job[p]).items():
                data[series][1][r, i] = np.median(ns)
    return data


def _fits(data):
    """Per series: the per-round slopes and the summary of them."""
    out = {}
    for series, (pages, medians) in data.items():
        slopes, intercepts = slope.round_fits(pages, medians)
        out[series] = {
            "per_page_ns": slope.summarise(slopes),
            "per_call_ns": float(np.median(intercepts)),
            "linearity_pct": slope.linearity(pages, medians),
            "pages": list(pages),
            "median_ns": [float(x) for x in np.median(medians, axis=0)],
            "_slopes": slopes,
        }
    for name, (a, b, sign) in DERIVED.items():
        if a in out and b in out and out[a]["pages"] == out[b]["pages"]:
            paired = out[a]["_slopes"] + sign * out[b]["_slopes"]  # same rounds: drift cancels
            out[name] = {"per_page_ns": slope.summarise(paired), "derived": f"{a} "
                         f"{'+' if sign > 0 else '-'} {b}, round by round"}
    for series in out.values():
        series.pop("_slopes", None)
    return out


def _buffer(kind, state, dax=None, overwrite=False):
    """A buffer of `kind`; for hugetlb, one 2 MiB page reserved through
    `state` when none is free (given back on exit); for dax, 2 MiB of the
    backing `dax` names."""
    if kind == "dax":
        return DaxBuffer(dax, overwrite)
    if kind == "hugetlb":
        with open(f"{HUGETLB_2M}/free_hugepages") as f:
            free = int(f.read())
        if free < 1:
            total = int(state.read(f"{HUGETLB_2M}/nr_hugepages"))
            got = int(state.set_and_read_back(f"{HUGETLB_2M}/nr_hugepages", str(total + 1)))
            if got < total + 1:
                raise PagetaxError("the kernel could not allocate a 2 MiB hugetlb page")
    return Buffer(kind, 2 << 20 if kind != "4K" else MAX_PAGES * BASE_PAGE)


def measure_kernel(state, kinds=KINDS, probes=tuple(REGISTRY), rounds=31, calls=31,
                   on_step=None, dax=None, overwrite=False, tracer=None):
    """Per buffer kind: each probe's fits and checks, or why it was refused;
    with a tracer (ftrace.FunctionTrace), the kernel functions one call of
    16 pages ran, per probe."""
    results = []
    for kind in kinds:
        t0 = time.monotonic()
        entry = {"buffer": kind, "paths": {}, "checks": {}, "refused": {}}
        if tracer:
            entry["functions"] = {}
        try:
            buf = _buffer(kind, state, dax, overwrite)
        except (PagetaxError, OSError) as e:
            entry["refused"]["buffer"] = str(e)
            results.append(entry)
            continue
        opened = []
        try:
            entry["mapping"] = buf.mapping
            for name in probes:
                try:
                    p = probe(name)(buf)
                except PagetaxError as e:
                    entry["refused"][name] = str(e)
                    continue
                opened.append(p)
                p.pages = tuple(n for n in PAGES if n <= p.max_pages)
                try:
                    entry["checks"][name] = p.check()
                except PagetaxError as e:  # not the path it names: no figure
                    opened.remove(p)
                    p.close()
                    entry["refused"][name] = f"its check failed: {e}"
                    continue
                if tracer:
                    entry["functions"][name] = tracer.trace(lambda: p(16, 2))
            entry["paths"] = _fits(sweep(opened, rounds, calls))
        finally:
            for p in opened:
                p.close()
            buf.close()
        entry["seconds"] = round(time.monotonic() - t0, 2)
        results.append(entry)
        if on_step:
            on_step(kind)
    return results

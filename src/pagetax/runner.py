"""The run loop: every design over the same extents and buffer, repetitions
interleaved, then the peers; rows (rows.py) appended as they finish."""
import dataclasses
import json
import os
import time

import numpy as np

from . import backings, dax, machine, peers
from . import reference as _reference
from . import extents as _ext
from . import metadata as _meta
from . import rows as _rows
from .config import thread_cpus
from .core import aligned_buffer, eviction_buffer
from .designs import common_layout, design_flags
from .timed_run import (clock_cost_ns, cold_description, cold_method, mark_cost_ns,
                        prefetch_distances)
from .errors import PagetaxError
from .persist import cpu_features, persist_code, resolve_persist
from .schema import SCHEMA
from .sizes import format_size
from .version import build_info


GUEST_ENV = "PAGETAX_GUEST"   # pagetax vm's labels of the guest a run is in (JSON)


def open_backing(cfg):
    b = backings.open_backing(cfg.backing, cfg.size, overwrite=cfg.overwrite,
                              page_size=cfg.page_size)
    if "write" in cfg.ops and not b.writable:
        b.close()
        raise PagetaxError(f"--backing {cfg.backing} already holds data, so pagetax only reads it; "
                           "drop 'write' from --ops or pass --overwrite to let scatters write it")
    on_backing = [d for d in cfg.designs if "table_on_backing" in design_flags(d)]
    if on_backing and not b.writable:
        b.close()
        raise PagetaxError(f"--backing {cfg.backing} is read-only to pagetax, and {on_backing[0]} "
                           f"keeps its descriptors on the backing; drop {on_backing[0]} from "
                           "--designs or pass --overwrite")
    return b


def _cache_walk():
    """machine.cache_walk(), but not in an emulated (TCG) `pagetax vm` guest,
    where every load is emulated and a walk would say nothing of a cache."""
    guest = json.loads(os.environ[GUEST_ENV]) if os.environ.get(GUEST_ENV) else None
    if guest and not guest.get("timings_comparable", True):
        return {"effective_bytes": None, "skipped": "an emulated guest: its loads say nothing "
                "of a cache"}
    return machine.cache_walk()


def _touched_cache():
    """model.descriptors_touched, computed once per workload and descriptor
    geometry (page, altmap and sgl share one)."""
    memo = {}

    def touched(model, every):
        key = (id(every), model.desc_bytes, model.desc_granule)
        if key not in memo:
            memo[key] = model.descriptors_touched(every)
        return memo[key]
    return touched


def page_size_warning(cfg, mapped, how):
    """The backing was mapped with other pages than cfg.page_size: "asked
    for" only when the user asked (--page-size), not for the default."""
    if cfg.page_size_asked:
        return (f"asked for {cfg.page_size} pages, but the kernel mapped the backing with "
                f"{mapped} pages ({how}); the results say {mapped}")
    return (f"the kernel mapped the backing with {mapped} pages ({how}); the results say "
            f"{mapped} (--page-size asks for 4K or 2M)")


def grab_description(cfg):
    """What every counting design's build and release do per reference
    (csrc/pt_gup.h), after --gup-omit and --gup-devmap."""
    left = [p for p in ("pin", "try-add", "recheck", "referenced") if p not in cfg.gup_omit]
    text = ("FOLL_PIN" if "pin" not in cfg.gup_omit else "FOLL_GET") + \
        (": try-add loop" if "try-add" in left else ": plain add") + \
        (", page_folio re-read" if "recheck" in left else "") + \
        (", folio_set_referenced" if "referenced" in left else "") + \
        ("; PMD folios grabbed per page with a pagemap lookup (devmap, Linux 5.17-6.14)"
         if cfg.gup_devmap else "; PMD folios grabbed once per folio")
    return {"omitted": list(cfg.gup_omit), "devmap": cfg.gup_devmap, "text": text}


def cells(cfg):
    return [(op, pattern, seg) for pattern in cfg.patterns for seg in cfg.seg_sizes
            for op in cfg.ops]


def steps(cfg):
    """pt_run calls a run makes, for progress bars (libpmem rows included;
    fio rows advance the bar by their row)."""
    per = cfg.repeat + (1 if cfg.warmup else 0)  # one step per C call
    writes = sum(1 for op, _, _ in cells(cfg) if op == "write")
    peer_designs = sum(peers.REGISTRY[p].core_designs_per_write_cell(cfg) for p in cfg.peers)
    return per * (len(cells(cfg)) * len(cfg.designs) + writes * peer_designs) + \
        cfg.repeat * len(cells(cfg))  # the reference's turns


def measure_cell(attachments, op, ext, buf, cfg, evict, on_step=None, persist=0, cpus=None,
                 cold=None, ref=None):
    """Every design over one workload, repetitions interleaved round-robin
    (with the starting design rotating) so that a noisy neighbour or a
    frequency change hits all designs alike instead of one design's batch;
    the drift reference `ref` (reference.Reference), if any, takes its turn
    in every round.  ext and buf are lists with one entry per thread."""
    designs = list(attachments)
    kw = dict(cache=cfg.cache, evict=evict, segs_per_io=cfg.segs_per_io, persist=persist,
              cpus=cpus, cold=cold)
    if cfg.warmup:
        for d in designs:
            attachments[d].run(op, ext, buf, reps=cfg.warmup, phase_reps=0, **kw)
            if on_step:
                on_step(d)
    turns = {d: attachments[d].prepare(op, ext, buf, calls=cfg.repeat,
                                       phase_reps=cfg.phase_reps, probe=True, **kw)
             for d in designs}
    if ref is not None:
        for _ in range(cfg.warmup):
            ref()
        ref.total_ns.clear()
        turns[_reference.NAME] = ref
    order = list(turns)
    for r in range(cfg.repeat):
        k = r % len(order)
        for d in order[k:] + order[:k]:
            turns[d]()
            if on_step:
                on_step(d)
    return {d: turns[d].measurement() for d in designs}


def run(cfg, rows, on_row=None, on_step=None, doc=None):
    """Run the matrix, appending result rows to `rows` as they finish, into
    the result document `doc` (filled as soon as the backing is up), so that
    an interrupted run keeps what it measured.  Returns the document."""
    doc = {} if doc is None else doc
    cfg.check()
    cpus = thread_cpus(cfg)
    llc = machine.llc_bytes()
    cache = _cache_walk()  # what this process can really cache, before any backing
    cold = cold_method() if cfg.cold_method == "auto" else cfg.cold_method
    evict = eviction_buffer(cache["effective_bytes"]) \
        if cfg.cache == "cold" and cold == "evict" else None
    started = time.time()
    with open_backing(cfg) as backing:
        data_off, space = common_layout(cfg.designs, backing.size)
        durable = backing.synchronous
        resolved = resolve_persist(cfg.persist, caches_persistent=durable and
                                   dax.caches_persistent())
        persist = persist_code(resolved, cfg.persist_each)
        if cfg.threads * cfg.io_size > space:
            raise PagetaxError(f"--io-size {cfg.io_size}"
                               + (f" x {cfg.threads} threads" if cfg.threads > 1 else "")
                               + f" is larger than the {space}-byte data area left after "
                               "altmap's reserve")
        attachments = {}
        warnings = []
        peer_rows, own_runs = [], []     # the peers' core designs; their runs of their own
        for name in cfg.peers:
            peer = peers.REGISTRY[name]
            designs, runs, notes = peer.prepare(cfg, backing)
            peer_rows += designs
            own_runs += [(peer, run) for run in runs]
            warnings.extend(notes)
        try:
            for d in list(cfg.designs) + peer_rows:
                folios = cfg.folio_size if "folios" in design_flags(d) else "4K"
                attachments[d] = backing.attach(d, data_off, space, table_pages=cfg.table_pages,
                                                folio_size=folios, gup_omit=cfg.gup_omit,
                                                devmap=cfg.gup_devmap)
            metas = {d: _rows.metadata_record(att, backing) for d, att in attachments.items()}
            doc.update({
                "schema": SCHEMA,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "pagetax": build_info(),
                "machine": dict(machine.describe(), backing=backings.describe(backing),
                                cpu_features=cpu_features(), cache=cache,
                                clock_ns=clock_cost_ns(), mark_ns=mark_cost_ns()),
                "config": dict(dataclasses.asdict(cfg),
                               cold_method_resolved=cold if cfg.cache == "cold" else None,
                               cold_description=cold_description(cold)
                               if cfg.cache == "cold" else "no eviction: each repetition starts "
                               "with what the previous one left in the caches",
                               evict_bytes=evict.nbytes if evict is not None else 0,
                               cpus=cpus,
                               data_offset=data_off, data_bytes=space,
                               persist_resolved=resolved,
                               byte_convention="bcopy: bytes moved counted once; GB = 1e9",
                               buffer="page-aligned, packed in extent order, one per thread",
                               threads_convention="GB/s: all threads' bytes / each "
                               "repetition's wall time (first start to last end); ns/seg: that "
                               "wall time over one thread's segments",
                               timing_convention="totals: two clock reads around each timed "
                               "repetition; phases: from phase_reps instrumented repetitions, "
                               "each phase between two marks (a full fence, then a clock read), "
                               "one mark (mark_ns) subtracted per phase per I/O",
                               repetition_order="round-robin across designs, rotating start",
                               grab=grab_description(cfg),
                               prefetch=dict(prefetch_distances(),
                                             write="prefetchw" if cpu_features()["prefetchw"]
                                             else "prefetcht0 (no PREFETCHW on this CPU)")),
                "metadata": metas,
                "results": rows,
            })
            page_size = doc["machine"]["backing"]["mapping"]["page_size"]
            doc["warnings"] = warnings
            ncpu = len(set(cpus)) if cpus else len(os.sched_getaffinity(0))
            if cfg.threads > ncpu:
                warnings.append(f"{cfg.threads} threads on {ncpu} CPUs: threads take turns on "
                                "a CPU, so GB/s is not what as many cores would give")
            mapping = doc["machine"]["backing"]["mapping"]
            if page_size == "unknown":
                warnings.append(f"the backing's page size is unknown: {mapping['why']}")
            elif backing.kind == "devdax" and page_size != cfg.page_size:
                warnings.append(f"device DAX maps with its alignment, {page_size} pages here; "
                                f"--page-size {cfg.page_size} does not apply")
            elif page_size != cfg.page_size:
                warnings.append(page_size_warning(cfg, page_size,
                                                  mapping.get("method", "/proc/self/smaps")))
            guest = os.environ.get(GUEST_ENV)
            if guest:  # set by pagetax vm inside its guest
                doc["guest"] = json.loads(guest)
                if not doc["guest"]["timings_comparable"]:
                    warnings.append(f"run in a {doc['guest']['accelerator'].upper()} guest: "
                                    f"{doc['guest']['timings_note']}")
            bufs = [aligned_buffer(cfg.io_size, fill=0xA5) for _ in range(cfg.threads)]
            with_reference = _reference.available(backing)
            if not with_reference:
                warnings.append(_reference.WHY_NONE)
            workloads = {}
            touched = _touched_cache()
            for op, pattern, seg in cells(cfg):
                key = (pattern, seg)
                if key not in workloads:
                    exts = _ext.per_thread(pattern, seg, cfg.io_size, space, cfg.threads,
                                           cfg.seed, hot_bytes=cfg.hot_pages * 4096)
                    every = np.concatenate(exts)
                    workloads[key] = (exts, _ext.union_bytes(every, 64), every)
                exts, lines, every = workloads[key]
                for ext, buf in zip(exts, bufs):
                    _ext.check(ext, space, buf.nbytes, op)
                cell = {d: a for d, a in attachments.items() if op == "write" or d not in peer_rows}
                ref = _reference.Reference(backing, data_off, space, op, exts[0], bufs[0],
                                           cache=cfg.cache, cold=cold, evict=evict) \
                    if with_reference else None
                try:
                    measured = measure_cell(cell, op, exts, bufs, cfg, evict, on_step, persist,
                                            cpus, cold, ref)
                finally:
                    if ref is not None:
                        ref.close()
                for design, m in measured.items():
                    model = _meta.model(design, cfg.folio_size)
                    ws = {"data_bytes": m.bytes, "data_lines_bytes": lines,
                          "descriptor_bytes": touched(model, every),
                          "llc_bytes": llc, "cache_effective_bytes": cache["effective_bytes"],
                          "page_size": page_size}
                    vector = [model.vector_bytes(e, cfg.segs_per_io) for e in exts]
                    model_per_io = sum(b for b, _ in vector) // sum(n for _, n in vector)
                    meta = dict(metas[design], per_io_bytes=m.vector_bytes // max(m.ios, 1),
                                model_per_io_bytes=model_per_io)
                    roofline = {"roofline": True} if "roofline" in design_flags(design) else {}
                    rows.append(_rows.summarize(
                        m, design, op, pattern, seg, cfg, ws, meta, **roofline,
                        persistence=_rows.persistence_record(design, op, cfg, resolved,
                                                             durable, m)))
                    if on_row:
                        on_row(rows[-1])
                if ref is not None:
                    rows.append(_rows.reference_row(ref, op, pattern, seg, cfg, dict(
                        ws, descriptor_bytes=0)))
                    if on_row:
                        on_row(rows[-1])
        finally:
            for att in attachments.values():
                att.close()
        # The peers' own runs last, once no design is attached: fio's writes
        # cover the whole file, altmap's on-backing descriptors included
        # (see fio.command).  A run's last item names its row.
        for op, pattern, seg in cells(cfg) if own_runs else []:
            for peer, run in own_runs:
                try:
                    rows.append(peer.row(backing, *run, op, pattern, seg, cfg, llc, page_size,
                                         cpus))
                except OSError as e:
                    warnings.append(f"--peers {peer.NAME}: {op} {pattern} {format_size(seg)}: "
                                    f"{e}; no {run[-1]} row")
                    continue
                if on_row:
                    on_row(rows[-1])
    _rows.add_ratios(rows)
    doc["elapsed_s"] = time.time() - started
    return doc

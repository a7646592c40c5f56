"""Result rows: one per design (or peer), op, pattern and segment size, all
built by row(); the ratios between rows of a cell; the metadata and
persistence records a row carries.

Byte counting follows the bcopy convention (lmbench bw_mem): a copy of N
bytes counts N, not 2N.  GB = 10^9, so GB/s is simply bytes per ns.
"""
import numpy as np

from . import metadata as _meta
from .designs import design_entry_bytes, design_flags
from .schema import BASELINE
from .sizes import format_size
from .stats import median_ci


def row(design, op, pattern, seg, *, cache, threads, cpus, io_bytes, segments, rep_total_ns,
        gbps, gbps_best, gbps_worst, spread_pct, ns_per_seg, ns_per_seg_best, phase_ns,
        reps_ns, ios, entries, entry_bytes, working_set, metadata, timing, phases=True, **more):
    """The one result row, for designs and peers alike: what every row has,
    then what only its source can say (`more`).  `phases` is False for a
    peer that times whole I/Os (fio): its phase_ns counts all as copy."""
    return {"design": design, "op": op, "pattern": pattern, "seg_bytes": seg, "cache": cache,
            "threads": threads, "cpus": cpus, "io_bytes": io_bytes, "segments": segments,
            "reps": len(rep_total_ns), "gbps": gbps, "gbps_best": gbps_best,
            "gbps_worst": gbps_worst, "spread_pct": spread_pct, "ns_per_seg": ns_per_seg,
            "ns_per_seg_best": ns_per_seg_best, "rep_total_ns": rep_total_ns,
            "phases": phases, "phase_ns": phase_ns, "reps_ns": reps_ns, "ios": ios,
            "entries": entries, "entry_bytes": entry_bytes, "working_set": working_set,
            "metadata": metadata, "timing": timing, **more}


def summarize(m, design, op, pattern, seg, cfg, working_set, meta, **more):
    """A design's row from a Measurement: median, best, worst, spread of the
    timed repetitions' wall times; the phase split from the instrumented
    ones, clock reads subtracted, and whether it adds up to the total.
    With threads, GB/s is aggregate (all threads' bytes over each
    repetition's wall time) and ns/seg is one thread's wall time per segment."""
    total = m.total_ns.astype(np.float64)
    med, best, worst = float(np.median(total)), float(total.min()), float(total.max())
    phases = np.median(m.phases, axis=0) if len(m.phases) else np.zeros(3)
    phase_sum = float(phases.sum())
    agree = bool(len(m.phases)) and abs(phase_sum - med) <= worst - best
    ns_med, ns_best = m.ns_per_seg()
    if cfg.cache == "cold" or m.probe:
        more["cold"] = dict({"method": m.cold} if m.cold else {},
                            **({"probe_start_ns": m.probe["start_ns"],
                                "probe_warm_ns": m.probe["warm_ns"],
                                "probe_lines": m.probe["lines"]} if m.probe else {}))
    if m.threads > 1:
        more.update(thread_gbps=m.thread_gbps(), rep_wall_ns=total.tolist(),
                    thread_rep_total_ns=m.thread_total_ns.tolist(),
                    thread_reps_ns=m.thread_phases.tolist())
    return row(
        design, op, pattern, seg, cache=cfg.cache, threads=m.threads, cpus=m.cpus,
        io_bytes=m.bytes, segments=m.segments, rep_total_ns=total.tolist(),
        # bcopy convention: bytes moved once; bytes/ns == GB/s with GB = 1e9
        gbps=m.bytes / med, gbps_best=m.bytes / best, gbps_worst=m.bytes / worst,
        spread_pct=100.0 * (worst - best) / med, ns_per_seg=ns_med, ns_per_seg_best=ns_best,
        phase_ns=dict(zip(("build", "copy", "release"), map(float, phases))),
        reps_ns=m.phases.tolist(), ios=m.ios, entries=m.entries,
        entry_bytes=design_entry_bytes(design),
        working_set=dict(working_set, vector_bytes=m.vector_bytes), metadata=meta,
        timing={"call_ns": m.call_ns, "wall_ns": m.wall_ns, "timed_ns": float(total.sum()),
                "python_overhead_pct": 100.0 * (m.wall_ns - m.call_ns) / m.call_ns},
        gbps_ci=list(median_ci(m.bytes / total)),  # 95 % bootstrap, of the median
        phase_reps=len(m.phases), phases_agree=agree,
        phases_note="" if agree else (
            "no instrumented repetitions" if not len(m.phases) else
            f"build+copy+release ({phase_sum:.0f} ns) differs from the timed median "
            f"({med:.0f} ns) by more than the spread ({worst - best:.0f} ns)"),
        clock_ns=m.clock_ns,
        latency=m.latency.summary(m.clock_ns) if m.latency is not None else None, **more)


def reference_row(ref, op, pattern, seg, cfg, working_set):
    """The drift reference's row (pagetax/reference.py): thread 0's segments,
    timed round by round beside the designs; `pagetax compare` divides by
    it.  One loop and one clock pair per repetition: no phases."""
    total = np.asarray(ref.total_ns, np.float64)
    med, best, worst = float(np.median(total)), float(total.min()), float(total.max())
    segments = ref.bytes // seg
    return row(
        "reference", op, pattern, seg, cache=cfg.cache, threads=cfg.threads, cpus=None,
        io_bytes=ref.bytes, segments=segments, rep_total_ns=total.tolist(),
        gbps=ref.bytes / med, gbps_best=ref.bytes / best, gbps_worst=ref.bytes / worst,
        spread_pct=100.0 * (worst - best) / med, ns_per_seg=med / segments,
        ns_per_seg_best=best / segments, phases=False,
        phase_ns={"build": 0.0, "copy": med, "release": 0.0}, reps_ns=[], ios=1,
        entries=segments, entry_bytes=16, working_set=dict(working_set, data_bytes=ref.bytes),
        metadata={"model_dram_bytes": 0, "model_device_bytes": 0, "allocated_bytes": 0,
                  "rss_delta_bytes": 0, "per_io_bytes": 0, "percent": 0.0,
                  "allocated_where": "none", "rss_agrees": True, "rss_note": "",
                  "source": "csrc/reference/reference.c: one memcpy per segment"},
        timing={}, gbps_ci=list(median_ci(ref.bytes / total)), reference=True, latency=None,
        note="the drift reference: a loop compiled apart from the core, on thread 0's "
             "segments, in the same rounds as the designs; compare divides by it")


ROOFLINE_KEY = object()


def add_ratios(rows):
    """gbps relative to vec and to the roofline (memcpy) in each (op, pattern,
    seg, threads) cell."""
    cells = {}
    for r in rows:
        cell = cells.setdefault((r["op"], r["pattern"], r["seg_bytes"], r.get("threads", 1)), {})
        cell[r["design"]] = r["gbps"]
        if r.get("roofline"):
            cell[ROOFLINE_KEY] = r["gbps"]
    for r in rows:
        cell = cells[(r["op"], r["pattern"], r["seg_bytes"], r.get("threads", 1))]
        r["ratio_vec"] = r["gbps"] / cell[BASELINE] if BASELINE in cell else None
        r["ratio_memcpy"] = r["gbps"] / cell[ROOFLINE_KEY] if ROOFLINE_KEY in cell else None


def metadata_record(att, backing):
    """The model beside the measurement for one attached design.  Each model
    is evaluated on the capacity the design manages: a table on the backing
    (altmap's) the whole backing, from which it reserves; the others their
    data area."""
    m = _meta.model(att.design, att.folio_size or "4K")
    capacity = backing.size if "table_on_backing" in att.flags else att.data_bytes
    fp = m.footprint(capacity)
    on_device = fp["device_bytes"] > 0
    ok, why = _meta.rss_verdict(att.meta_bytes, att.rss_delta, on_device)
    return {"capacity_bytes": capacity,
            "model_dram_bytes": fp["dram_bytes"], "model_device_bytes": fp["device_bytes"],
            "percent": fp["percent"],
            "allocated_bytes": att.meta_bytes,
            "allocated_where": "device" if on_device else ("dram" if att.meta_bytes else "none"),
            "rss_delta_bytes": att.rss_delta, "rss_agrees": ok, "rss_note": why,
            "table_mapping": att.table_mapping(),
            "folio_size": att.folio_size,
            "source": m.source}


def persistence_record(design, op, cfg, resolved, durable, m):
    """What a row's scatter did to make its stores persistent."""
    flags = design_flags(design)
    if "peer" in flags:  # a libpmem row
        return {"mode": design, "fences": m.fences, "persistent": durable,
                "note": "libpmem flushes as it chooses; --persist does not apply"}
    if op != "write" or cfg.persist == "none":
        return {"mode": "none"}
    if "own_persist" in flags:
        return {"mode": "its own path", "note": "--persist does not apply (pwritev)"}
    return {"mode": cfg.persist, "resolved": resolved, "fence_per": "entry" if cfg.persist_each else "io",
            "lines_flushed": m.lines_flushed, "fences": m.fences,
            "persistent": durable,
            "note": "" if durable else
            "not persistent: the backing is not DAX with MAP_SYNC; this is the flush cost on DRAM"}


def row_label(row):
    return f"{row['op']} {row['pattern']} {format_size(row['seg_bytes'])} {row['design']}"

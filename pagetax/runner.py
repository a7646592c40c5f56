"""The benchmark matrix: every design over the same extents and buffer.

Byte counting follows the bcopy convention (lmbench bw_mem): a copy of N
bytes counts N, not 2N.  GB = 10^9, so GB/s is simply bytes per ns.
"""
import dataclasses
import os
import time
from typing import List, Optional

import numpy as np

from . import extents as _ext
from . import machine
from . import metadata as _meta
from . import backings, peers
from .core import (CACHE_MODES, COLD_METHODS, DESIGNS, MAX_THREADS, OPS, TABLE_PAGES,
                   aligned_buffer, clock_cost_ns, cold_description, cold_method, common_layout,
                   design_entry_bytes, design_flags, eviction_buffer)
from .persist import PERSIST_MODES, cpu_features, persist_code, resolve_persist
from .errors import PagetaxError
from .sizes import format_size

from .schema import SCHEMA
from .stats import median_ci
DEFAULT_DESIGNS = ("vec", "pfn", "page", "huge", "altmap", "memdesc", "sgl", "memcpy", "kernel")
DEFAULT_SEG_SIZES = (64, 4096, 65536)
DEFAULT_PATTERNS = ("seq", "rand")  # `hot` is asked for: it is about threads sharing pages
PEER_NAMES = ("libpmem", "fio")


@dataclasses.dataclass
class RunConfig:
    designs: List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_DESIGNS))
    ops: List[str] = dataclasses.field(default_factory=lambda: list(OPS))
    patterns: List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_PATTERNS))
    seg_sizes: List[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_SEG_SIZES))
    size: int = 1 << 30            # backing bytes
    io_size: int = 64 << 20        # bytes per repetition, per thread
    repeat: int = 5                # timed repetitions per row
    phase_reps: int = 1            # instrumented repetitions per row, for the phase split
    warmup: Optional[int] = None   # untimed repetitions first; None: 1 warm, 0 cold (each
                                   # cold repetition starts from the same flushed state)
    cache: str = "cold"
    cold_method: str = "auto"      # clflushopt, clflush, evict, or auto (the first the CPU has)
    table_pages: str = "2M"        # DRAM descriptor tables: 2M (as vmemmap) or 4K
    backing: str = "tmpfs"         # tmpfs, PATH, dax:PATH, devdax:DEV or auto
    overwrite: bool = False        # may pagetax write an existing file or device?
    page_size: str = "4K"          # the backing's mapping page size: 4K or 2M
    persist: str = "none"          # how scatters make stores persistent
    persist_each: bool = False     # SFENCE per entry instead of per I/O
    peers: List[str] = dataclasses.field(default_factory=list)  # libpmem
    seed: int = 1
    segs_per_io: int = 0           # 0: one vector per repetition
    threads: int = 1               # POSIX threads in the core, each with its own extents
    pin: Optional[List[int]] = None  # None: no pinning; []: the allowed CPUs in order
    hot_pages: int = _ext.HOT_PAGES  # the hot pattern's shared set

    def check(self):
        """Refuse a bad matrix before any backing is made."""
        def known(kind, values, allowed):
            if not values:
                raise PagetaxError(f"no {kind} given")
            for v in values:
                if v not in allowed:
                    raise PagetaxError(f"unknown {kind[:-1]} {v!r} (choose from {', '.join(allowed)})")
        known("designs", self.designs, DESIGNS)
        known("ops", self.ops, OPS)
        known("patterns", self.patterns, _ext.PATTERNS)
        if self.persist not in PERSIST_MODES:
            raise PagetaxError(f"unknown persistence mode {self.persist!r} "
                               f"(choose from {', '.join(PERSIST_MODES)})")
        if self.page_size not in backings.PAGE_SIZES:
            raise PagetaxError(f"unknown page size {self.page_size!r} (choose from 4K, 2M)")
        if self.cold_method not in COLD_METHODS + ("auto",):
            raise PagetaxError(f"unknown cold-cache method {self.cold_method!r} "
                               f"(choose from auto, {', '.join(COLD_METHODS)})")
        if self.table_pages not in TABLE_PAGES:
            raise PagetaxError(f"unknown table page size {self.table_pages!r} "
                               f"(choose from {', '.join(TABLE_PAGES)})")
        if self.phase_reps < 0:
            raise PagetaxError(f"--phase-reps must not be negative (got {self.phase_reps})")
        if self.cache not in CACHE_MODES:
            raise PagetaxError(f"unknown cache mode {self.cache!r} (choose from {', '.join(CACHE_MODES)})")
        for p in self.peers:
            if p not in PEER_NAMES:
                raise PagetaxError(f"unknown peer {p!r} (choose from {', '.join(PEER_NAMES)})")
        if not self.seg_sizes:
            raise PagetaxError("no segment sizes given")
        if self.size % 4096:
            raise PagetaxError(f"--size {self.size} is not a multiple of 4096 (the backing is mapped in pages)")
        if self.io_size > self.size:
            raise PagetaxError(f"--io-size {self.io_size} is larger than --size {self.size}")
        for seg in self.seg_sizes:
            if seg > self.io_size:
                raise PagetaxError(f"segment size {seg} is larger than --io-size {self.io_size}")
            if self.io_size % seg:
                raise PagetaxError(f"--io-size {self.io_size} is not a multiple of segment size {seg}")
            if seg > _ext.MAX_SEG_LEN:
                raise PagetaxError(f"segment size {seg} is over the 32-bit segment limit")
        if self.repeat < 1:
            raise PagetaxError(f"--repeat must be at least 1 (got {self.repeat})")
        if self.warmup is None:
            self.warmup = 0 if self.cache == "cold" else 1
        if self.warmup < 0:
            raise PagetaxError(f"--warmup must not be negative (got {self.warmup})")
        if self.segs_per_io < 0:
            raise PagetaxError(f"--segs-per-io must not be negative (got {self.segs_per_io})")
        if not 1 <= self.threads <= MAX_THREADS:
            raise PagetaxError(f"--threads must be 1 to {MAX_THREADS} (got {self.threads})")
        if self.threads * self.io_size > self.size:
            raise PagetaxError(f"--threads {self.threads} x --io-size {self.io_size} is more than "
                               f"--size {self.size}: every thread reads its own extents "
                               "(and memcpy its own part of the backing)")
        if "hot" in self.patterns:
            if "write" in self.ops:
                raise PagetaxError("pattern hot gathers from pages every thread shares; scatters "
                                   "to the same bytes have no single result: use --ops read")
            if self.hot_pages < 1 or self.hot_pages * 4096 > self.size:
                raise PagetaxError(f"--hot-pages must be 1 to {self.size // 4096} "
                                   f"(got {self.hot_pages})")
            for seg in self.seg_sizes:
                if seg > self.hot_pages * 4096:
                    raise PagetaxError(f"segment size {seg} is larger than the hot set of "
                                       f"{self.hot_pages} pages")
        thread_cpus(self)


def thread_cpus(cfg):
    """The CPU each thread is pinned to, or None when not pinning: the CPUs
    given (or, for a bare --pin, those this process may run on), in order,
    round-robin when there are more threads than CPUs."""
    if cfg.pin is None:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpus = list(cfg.pin) or allowed
    for c in cpus:
        if c not in allowed:
            raise PagetaxError(f"--pin: CPU {c} is not one this process may run on "
                               f"({_cpu_list(allowed)})")
    return [cpus[i % len(cpus)] for i in range(cfg.threads)]


def _cpu_list(cpus):
    return ",".join(map(str, cpus))


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


def summarize(m, design, op, pattern, seg, cfg, working_set, meta):
    """One result row from a Measurement: median, best, worst, spread of the
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
    row = {
        "design": design, "op": op, "pattern": pattern, "seg_bytes": seg, "cache": cfg.cache,
        "threads": m.threads, "cpus": m.cpus,
        "io_bytes": m.bytes, "segments": m.segments, "reps": len(total),
        # bcopy convention: bytes moved once; bytes/ns == GB/s with GB = 1e9
        "gbps": m.bytes / med, "gbps_best": m.bytes / best, "gbps_worst": m.bytes / worst,
        "spread_pct": 100.0 * (worst - best) / med,
        "gbps_ci": list(median_ci(m.bytes / total)),  # 95 % bootstrap, of the median
        "ns_per_seg": ns_med, "ns_per_seg_best": ns_best,
        "rep_total_ns": total.tolist(),
        "phase_ns": dict(zip(("build", "copy", "release"), map(float, phases))),
        "phase_reps": len(m.phases),
        "phases_agree": agree,
        "phases_note": "" if agree else (
            "no instrumented repetitions" if not len(m.phases) else
            f"build+copy+release ({phase_sum:.0f} ns) differs from the timed median "
            f"({med:.0f} ns) by more than the spread ({worst - best:.0f} ns)"),
        "clock_ns": m.clock_ns,
        "ios": m.ios, "entries": m.entries, "entry_bytes": design_entry_bytes(design),
        "working_set": dict(working_set, vector_bytes=m.vector_bytes),
        "metadata": meta,
        "timing": {"call_ns": m.call_ns, "wall_ns": m.wall_ns, "timed_ns": float(total.sum()),
                   "python_overhead_pct": 100.0 * (m.wall_ns - m.call_ns) / m.call_ns},
        "reps_ns": m.phases.tolist(),
    }
    if cfg.cache == "cold" or m.probe:
        row["cold"] = dict({"method": m.cold} if m.cold else {},
                           **({"probe_start_ns": m.probe["start_ns"],
                               "probe_warm_ns": m.probe["warm_ns"],
                               "probe_lines": m.probe["lines"]} if m.probe else {}))
    if m.threads > 1:
        row["thread_gbps"] = m.thread_gbps()
        row["rep_wall_ns"] = total.tolist()
        row["thread_rep_total_ns"] = m.thread_total_ns.tolist()
        row["thread_reps_ns"] = m.thread_phases.tolist()
    return row


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
        r["ratio_vec"] = r["gbps"] / cell["vec"] if "vec" in cell else None
        r["ratio_memcpy"] = r["gbps"] / cell[ROOFLINE_KEY] if ROOFLINE_KEY in cell else None


ROOFLINE_KEY = object()


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


def cells(cfg):
    return [(op, pattern, seg) for pattern in cfg.patterns for seg in cfg.seg_sizes
            for op in cfg.ops]


def steps(cfg):
    """pt_run calls a run makes, for progress bars (libpmem rows included;
    fio rows advance the bar by their row)."""
    per = cfg.repeat + (1 if cfg.warmup else 0)  # one step per C call
    writes = sum(1 for op, _, _ in cells(cfg) if op == "write")
    return per * (len(cells(cfg)) * len(cfg.designs) + writes * 2 * ("libpmem" in cfg.peers))


def measure_cell(attachments, op, ext, buf, cfg, evict, on_step=None, persist=0, cpus=None,
                 cold=None):
    """Every design over one workload, repetitions interleaved round-robin
    (with the starting design rotating) so that a noisy neighbour or a
    frequency change hits all designs alike instead of one design's batch.
    ext and buf are lists with one entry per thread."""
    designs = list(attachments)
    kw = dict(cache=cfg.cache, evict=evict, segs_per_io=cfg.segs_per_io, persist=persist,
              cpus=cpus, cold=cold)
    if cfg.warmup:
        for d in designs:
            attachments[d].run(op, ext, buf, reps=cfg.warmup, phase_reps=0, **kw)
            if on_step:
                on_step(d)
    prepared = {d: attachments[d].prepare(op, ext, buf, calls=cfg.repeat,
                                          phase_reps=cfg.phase_reps, probe=True, **kw)
                for d in designs}
    for r in range(cfg.repeat):
        k = r % len(designs)
        for d in designs[k:] + designs[:k]:
            prepared[d]()
            if on_step:
                on_step(d)
    return {d: p.measurement() for d, p in prepared.items()}


def design_metadata(att, backing):
    """The model beside the measurement for one attached design.  Each model
    is evaluated on the capacity the design manages: altmap its namespace
    (the whole backing, from which it reserves), the others their data area."""
    m = _meta.model(att.design)
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
            "source": m.source}


def fio_row(backing, engine, design, op, pattern, seg, cfg, llc, page_size, cpus):
    """One of fio's engines as a row: same backing, block size, pattern,
    direction, threads (jobs) and bytes per thread (not the same offsets:
    fio draws its own, over the whole file).  fio reports bandwidth and
    IOPS, not phases: the whole time counts as copy, and ns/seg is per
    thread as for the designs."""
    runs = [peers.run_fio(backing, engine, op, pattern, seg, cfg.io_size, loops=2,
                          threads=cfg.threads, cpus=cpus, hot_bytes=cfg.hot_pages * 4096)
            for _ in range(cfg.repeat)]
    bw = np.array([r[0] for r in runs]) / 1e9
    iops = np.array([r[1] for r in runs]) / cfg.threads  # per thread
    med = float(np.median(bw))
    total = cfg.io_size * cfg.threads
    segs = total // seg
    rep_ns = [[0.0, total / g, 0.0] for g in bw]
    return {
        "design": design, "op": op, "pattern": pattern, "seg_bytes": seg, "cache": "fio's own",
        "threads": cfg.threads, "cpus": cpus,
        "io_bytes": total, "segments": segs, "reps": len(runs),
        "gbps": med, "gbps_best": float(bw.max()), "gbps_worst": float(bw.min()),
        "spread_pct": 100.0 * (1 / bw.min() - 1 / bw.max()) / (1 / med),
        "ns_per_seg": 1e9 / float(np.median(iops)), "ns_per_seg_best": 1e9 / float(iops.max()),
        "phase_ns": {"build": 0.0, "copy": total / med, "release": 0.0},
        "ios": segs, "entries": 0, "entry_bytes": 0,
        "working_set": {"data_bytes": total, "llc_bytes": llc, "page_size": page_size},
        "metadata": {"model_dram_bytes": 0, "model_device_bytes": 0, "allocated_bytes": 0,
                     "rss_delta_bytes": 0, "per_io_bytes": 0, "percent": 0.0,
                     "allocated_where": "none", "rss_agrees": True, "rss_note": "",
                     "source": f"fio --ioengine={engine}, one buffer per I/O"},
        "timing": {}, "reps_ns": rep_ns, "rep_total_ns": [total / g for g in bw],
        "persistence": {"mode": "fio's own"},
        "fio_command": peers.fio_command(engine, "FILE", backing.size, op, pattern, seg,
                                         cfg.io_size, 2, cfg.threads, cpus,
                                         cfg.hot_pages * 4096),
        "note": "fio draws its own offsets over the whole file (jobs share it), maps the "
                "file itself (its first loop pays first-touch faults; 2 loops per run), "
                "times in user space, and runs after every design has detached",
    }


def _persistence(design, op, cfg, resolved, durable, m):
    """What a row's scatter did to make its stores persistent."""
    if design in peers.LIBPMEM_ROWS:
        return {"mode": design, "fences": m.fences, "persistent": durable,
                "note": "libpmem flushes as it chooses; --persist does not apply"}
    if op != "write" or cfg.persist == "none":
        return {"mode": "none"}
    if "own_persist" in design_flags(design):
        return {"mode": "its own path", "note": "--persist does not apply (pwritev)"}
    return {"mode": cfg.persist, "resolved": resolved, "fence_per": "entry" if cfg.persist_each else "io",
            "lines_flushed": m.lines_flushed, "fences": m.fences,
            "persistent": durable,
            "note": "" if durable else
            "not persistent: the backing is not DAX with MAP_SYNC; this is the flush cost on DRAM"}


def run(cfg, rows, on_row=None, on_step=None, doc=None):
    """Run the matrix, appending result rows to `rows` as they finish, into
    the result document `doc` (filled as soon as the backing is up), so that
    an interrupted run keeps what it measured.  Returns the document."""
    doc = {} if doc is None else doc
    cfg.check()
    cpus = thread_cpus(cfg)
    llc = machine.llc_bytes()
    cold = cold_method() if cfg.cold_method == "auto" else cfg.cold_method
    evict = eviction_buffer(llc) if cfg.cache == "cold" and cold == "evict" else None
    started = time.time()
    with open_backing(cfg) as backing:
        data_off, space = common_layout(cfg.designs, backing.size)
        durable = backing.map_sync or backing.kind == "devdax"
        resolved = resolve_persist(cfg.persist, caches_persistent=durable and
                                   backings.caches_persistent())
        persist = persist_code(resolved, cfg.persist_each)
        if cfg.threads * cfg.io_size > space:
            raise PagetaxError(f"--io-size {cfg.io_size}"
                               + (f" x {cfg.threads} threads" if cfg.threads > 1 else "")
                               + f" is larger than the {space}-byte data area left after "
                               "altmap's reserve")
        attachments = {}
        warnings = []
        peer_rows = []
        if "libpmem" in cfg.peers:
            try:
                peers.load_libpmem()
                peer_rows = list(peers.LIBPMEM_ROWS) if "write" in cfg.ops else []
            except OSError as e:
                warnings.append(f"--peers libpmem: {e}; no libpmem rows")
        fio_plan = []
        if "fio" in cfg.peers and not peers.fio_available():
            warnings.append("--peers fio: fio is not installed (Debian: apt-get install fio); "
                            "no fio rows")
        elif "fio" in cfg.peers:
            fio_plan, notes = peers.fio_plan(backing.kind, backing.map_sync, peers.fio_engines())
            warnings.extend(notes)
        try:
            for d in list(cfg.designs) + peer_rows:
                attachments[d] = backing.attach(d, data_off, space, table_pages=cfg.table_pages)
            metas = {d: design_metadata(att, backing) for d, att in attachments.items()}
            doc.update({
                "schema": SCHEMA,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "machine": dict(machine.describe(), backing=backings.describe(backing),
                                cpu_features=cpu_features(),
                                clock_ns=clock_cost_ns()),
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
                               "one clock read (clock_ns) subtracted per phase per I/O",
                               repetition_order="round-robin across designs, rotating start"),
                "metadata": metas,
                "results": rows,
            })
            page_size = doc["machine"]["backing"]["mapping"]["page_size"]
            doc["warnings"] = warnings
            ncpu = len(set(cpus)) if cpus else len(os.sched_getaffinity(0))
            if cfg.threads > ncpu:
                warnings.append(f"{cfg.threads} threads on {ncpu} CPUs: threads take turns on "
                                "a CPU, so GB/s is not what as many cores would give")
            if page_size != cfg.page_size:
                doc["warnings"].append(
                    f"asked for {cfg.page_size} pages, but the kernel mapped the backing with "
                    f"{page_size} pages (/proc/self/smaps); the results say {page_size}")
            bufs = [aligned_buffer(cfg.io_size, fill=0xA5) for _ in range(cfg.threads)]
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
                measured = measure_cell(cell, op, exts, bufs, cfg, evict, on_step, persist, cpus,
                                        cold)
                for design, m in measured.items():
                    model = _meta.model(design)
                    ws = {"data_bytes": m.bytes, "data_lines_bytes": lines,
                          "descriptor_bytes": touched(model, every),
                          "llc_bytes": llc, "page_size": page_size}
                    model_per_io = sum(model.per_io_bytes(e) for e in exts) // len(exts)
                    meta = dict(metas[design], per_io_bytes=m.vector_bytes // max(m.ios, 1),
                                model_per_io_bytes=model_per_io if not cfg.segs_per_io else None)
                    row = summarize(m, design, op, pattern, seg, cfg, ws, meta)
                    if "roofline" in design_flags(design):
                        row["roofline"] = True
                    row["persistence"] = _persistence(design, op, cfg, resolved, durable, m)
                    rows.append(row)
                    if on_row:
                        on_row(rows[-1])
        finally:
            for att in attachments.values():
                att.close()
        # fio last, once no design is attached: its writes cover the whole
        # file, altmap's on-backing descriptors included (see fio_command).
        for op, pattern, seg in cells(cfg) if fio_plan else []:
            for engine, design in fio_plan:
                try:
                    rows.append(fio_row(backing, engine, design, op, pattern, seg, cfg, llc,
                                        page_size, cpus))
                except OSError as e:
                    warnings.append(f"--peers fio: {op} {pattern} {format_size(seg)}: {e}; "
                                    f"no {design} row")
                    continue
                if on_row:
                    on_row(rows[-1])
    add_ratios(rows)
    doc["elapsed_s"] = time.time() - started
    return doc


def row_label(row):
    return f"{row['op']} {row['pattern']} {format_size(row['seg_bytes'])} {row['design']}"

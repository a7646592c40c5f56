"""The benchmark matrix: every design over the same extents and buffer.

Byte counting follows the bcopy convention (lmbench bw_mem): a copy of N
bytes counts N, not 2N.  GB = 10^9, so GB/s is simply bytes per ns.
"""
import dataclasses
import time
from typing import List

import numpy as np

from . import extents as _ext
from . import machine
from . import metadata as _meta
from . import backings, peers
from .core import (CACHE_MODES, DESIGNS, OPS, PERSIST_MODES, aligned_buffer, common_layout,
                   cpu_features, design_entry_bytes, eviction_buffer, persist_code,
                   resolve_persist)
from .errors import PagetaxError
from .sizes import format_size

SCHEMA = "pagetax-run/1"
DEFAULT_DESIGNS = ("vec", "pfn", "page", "huge", "altmap", "memdesc", "sgl", "memcpy", "kernel")
DEFAULT_SEG_SIZES = (64, 4096, 65536)
PEER_NAMES = ("libpmem", "fio")


@dataclasses.dataclass
class RunConfig:
    designs: List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_DESIGNS))
    ops: List[str] = dataclasses.field(default_factory=lambda: list(OPS))
    patterns: List[str] = dataclasses.field(default_factory=lambda: list(_ext.PATTERNS))
    seg_sizes: List[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_SEG_SIZES))
    size: int = 1 << 30            # backing bytes
    io_size: int = 64 << 20        # bytes per repetition
    repeat: int = 5                # timed repetitions per row
    warmup: int = 1
    cache: str = "cold"
    backing: str = "tmpfs"         # tmpfs, PATH, dax:PATH, devdax:DEV or auto
    overwrite: bool = False        # may pagetax write an existing file or device?
    page_size: str = "4K"          # the backing's mapping page size: 4K or 2M
    persist: str = "none"          # how scatters make stores persistent
    persist_each: bool = False     # SFENCE per entry instead of per I/O
    peers: List[str] = dataclasses.field(default_factory=list)  # libpmem
    seed: int = 1
    segs_per_io: int = 0           # 0: one vector per repetition

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
        if self.warmup < 0:
            raise PagetaxError(f"--warmup must not be negative (got {self.warmup})")
        if self.segs_per_io < 0:
            raise PagetaxError(f"--segs-per-io must not be negative (got {self.segs_per_io})")


def open_backing(cfg):
    b = backings.open_backing(cfg.backing, cfg.size, overwrite=cfg.overwrite,
                              page_size=cfg.page_size)
    if "write" in cfg.ops and not b.writable:
        b.close()
        raise PagetaxError(f"--backing {cfg.backing} already holds data, so pagetax only reads it; "
                           "drop 'write' from --ops or pass --overwrite to let scatters write it")
    if "altmap" in cfg.designs and not b.writable:
        b.close()
        raise PagetaxError(f"--backing {cfg.backing} is read-only to pagetax, and altmap keeps its "
                           "descriptors on the backing; drop altmap from --designs or pass --overwrite")
    return b


def summarize(m, design, op, pattern, seg, cfg, working_set, meta):
    """One result row from a Measurement: median, best, worst, spread."""
    total = m.total_ns.astype(np.float64)
    med, best, worst = float(np.median(total)), float(total.min()), float(total.max())
    phases = np.median(m.phases.astype(np.float64), axis=0)
    timed = float(total.sum())
    return {
        "design": design, "op": op, "pattern": pattern, "seg_bytes": seg, "cache": cfg.cache,
        "io_bytes": m.bytes, "segments": m.segments, "reps": len(total),
        # bcopy convention: bytes moved once; bytes/ns == GB/s with GB = 1e9
        "gbps": m.bytes / med, "gbps_best": m.bytes / best, "gbps_worst": m.bytes / worst,
        "spread_pct": 100.0 * (worst - best) / med,
        "ns_per_seg": med / m.segments, "ns_per_seg_best": best / m.segments,
        "phase_ns": dict(zip(("build", "copy", "release"), map(float, phases))),
        "ios": m.ios, "entries": m.entries, "entry_bytes": design_entry_bytes(design),
        "working_set": dict(working_set, vector_bytes=m.vector_bytes),
        "metadata": meta,
        "timing": {"call_ns": m.call_ns, "wall_ns": m.wall_ns, "timed_ns": timed,
                   "python_overhead_pct": 100.0 * (m.wall_ns - m.call_ns) / m.call_ns},
        "reps_ns": m.phases.tolist(),
    }


def add_ratios(rows):
    """gbps relative to vec and to memcpy within each (op, pattern, seg) cell."""
    cells = {}
    for r in rows:
        cells.setdefault((r["op"], r["pattern"], r["seg_bytes"]), {})[r["design"]] = r["gbps"]
    for r in rows:
        cell = cells[(r["op"], r["pattern"], r["seg_bytes"])]
        r["ratio_vec"] = r["gbps"] / cell["vec"] if "vec" in cell else None
        r["ratio_memcpy"] = r["gbps"] / cell["memcpy"] if "memcpy" in cell else None


def cells(cfg):
    return [(op, pattern, seg) for pattern in cfg.patterns for seg in cfg.seg_sizes
            for op in cfg.ops]


def steps(cfg):
    """pt_run calls a run makes, for progress bars (libpmem rows included;
    fio rows advance the bar by their row)."""
    per = cfg.repeat + (1 if cfg.warmup else 0)
    writes = sum(1 for op, _, _ in cells(cfg) if op == "write")
    return per * (len(cells(cfg)) * len(cfg.designs) + writes * 2 * ("libpmem" in cfg.peers))


def measure_cell(attachments, op, ext, buf, cfg, evict, on_step=None, persist=0):
    """Every design over one workload, repetitions interleaved round-robin
    (with the starting design rotating) so that a noisy neighbour or a
    frequency change hits all designs alike instead of one design's batch."""
    designs = list(attachments)
    kw = dict(cache=cfg.cache, evict=evict, segs_per_io=cfg.segs_per_io, persist=persist)
    if cfg.warmup:
        for d in designs:
            attachments[d].run(op, ext, buf, reps=cfg.warmup, **kw)
            if on_step:
                on_step(d)
    prepared = {d: attachments[d].prepare(op, ext, buf, calls=cfg.repeat, **kw) for d in designs}
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
    capacity = backing.size if att.design == "altmap" else att.data_bytes
    fp = m.footprint(capacity)
    on_device = fp["device_bytes"] > 0
    ok, why = _meta.rss_verdict(att.meta_bytes, att.rss_delta, on_device)
    return {"capacity_bytes": capacity,
            "model_dram_bytes": fp["dram_bytes"], "model_device_bytes": fp["device_bytes"],
            "percent": fp["percent"],
            "allocated_bytes": att.meta_bytes,
            "allocated_where": "device" if on_device else ("dram" if att.meta_bytes else "none"),
            "rss_delta_bytes": att.rss_delta, "rss_agrees": ok, "rss_note": why,
            "source": m.source}


def fio_row(backing, data_off, space, op, pattern, seg, cfg, llc, page_size):
    """fio's mmap engine as a row: same backing, block size, pattern, direction
    and bytes (not the same offsets: fio draws its own).  fio reports
    bandwidth and IOPS, not phases: the whole time counts as copy."""
    runs = [peers.run_fio(backing, data_off, space, op, pattern, seg, cfg.io_size, loops=2)
            for _ in range(cfg.repeat)]
    bw = np.array([r[0] for r in runs]) / 1e9
    iops = np.array([r[1] for r in runs])
    med = float(np.median(bw))
    segs = cfg.io_size // seg
    rep_ns = [[0.0, cfg.io_size / g, 0.0] for g in bw]
    return {
        "design": "fio-mmap", "op": op, "pattern": pattern, "seg_bytes": seg, "cache": "fio's own",
        "io_bytes": cfg.io_size, "segments": segs, "reps": len(runs),
        "gbps": med, "gbps_best": float(bw.max()), "gbps_worst": float(bw.min()),
        "spread_pct": 100.0 * (1 / bw.min() - 1 / bw.max()) / (1 / med),
        "ns_per_seg": 1e9 / float(np.median(iops)), "ns_per_seg_best": 1e9 / float(iops.max()),
        "phase_ns": {"build": 0.0, "copy": cfg.io_size / med, "release": 0.0},
        "ios": segs, "entries": 0, "entry_bytes": 0,
        "working_set": {"data_bytes": cfg.io_size, "llc_bytes": llc, "page_size": page_size},
        "metadata": {"model_dram_bytes": 0, "model_device_bytes": 0, "allocated_bytes": 0,
                     "rss_delta_bytes": 0, "per_io_bytes": 0, "percent": 0.0,
                     "allocated_where": "none", "rss_agrees": True, "rss_note": "",
                     "source": "fio --ioengine=mmap, one buffer per I/O"},
        "timing": {}, "reps_ns": rep_ns,
        "persistence": {"mode": "fio's own"},
        "note": "fio draws its own offsets, maps the file itself (its first loop pays "
                "first-touch faults; 2 loops per run), and times in user space",
    }


def _persistence(design, op, cfg, resolved, durable, m):
    """What a row's scatter did to make its stores persistent."""
    if design in peers.LIBPMEM_ROWS:
        return {"mode": design, "fences": m.fences, "persistent": durable,
                "note": "libpmem flushes as it chooses; --persist does not apply"}
    if op != "write" or cfg.persist == "none":
        return {"mode": "none"}
    if design == "kernel":
        return {"mode": "kernel's own path", "note": "--persist does not apply to pwritev"}
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
    llc = machine.llc_bytes()
    evict = eviction_buffer(llc) if cfg.cache == "cold" else None
    started = time.time()
    with open_backing(cfg) as backing:
        data_off, space = common_layout(cfg.designs, backing.size)
        durable = backing.map_sync or backing.kind == "devdax"
        resolved = resolve_persist(cfg.persist, caches_persistent=durable and
                                   backings.caches_persistent())
        persist = persist_code(resolved, cfg.persist_each)
        if cfg.io_size > space:
            raise PagetaxError(f"--io-size {cfg.io_size} is larger than the {space}-byte data "
                               f"area left after altmap's reserve")
        attachments = {}
        warnings = []
        peer_rows = []
        if "libpmem" in cfg.peers:
            try:
                peers.load_libpmem()
                peer_rows = list(peers.LIBPMEM_ROWS) if "write" in cfg.ops else []
            except OSError as e:
                warnings.append(f"--peers libpmem: {e}; no libpmem rows")
        use_fio = "fio" in cfg.peers and peers.fio_available()
        if "fio" in cfg.peers and not use_fio:
            warnings.append("--peers fio: fio is not installed (Debian: apt-get install fio); "
                            "no fio rows")
        try:
            for d in list(cfg.designs) + peer_rows:
                attachments[d] = backing.attach(d, data_off, space)
            metas = {d: design_metadata(att, backing) for d, att in attachments.items()}
            doc.update({
                "schema": SCHEMA,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "machine": dict(machine.describe(backing), cpu_features=cpu_features()),
                "config": dict(dataclasses.asdict(cfg),
                               evict_bytes=evict.nbytes if evict is not None else 0,
                               data_offset=data_off, data_bytes=space,
                               persist_resolved=resolved,
                               byte_convention="bcopy: bytes moved counted once; GB = 1e9",
                               buffer="page-aligned, packed in extent order",
                               repetition_order="round-robin across designs, rotating start"),
                "metadata": metas,
                "results": rows,
            })
            page_size = doc["machine"]["backing"]["mapping"]["page_size"]
            doc["warnings"] = warnings
            if page_size != cfg.page_size:
                doc["warnings"].append(
                    f"asked for {cfg.page_size} pages, but the kernel mapped the backing with "
                    f"{page_size} pages (/proc/self/smaps); the results say {page_size}")
            buf = aligned_buffer(cfg.io_size, fill=0xA5)
            workloads = {}
            for op, pattern, seg in cells(cfg):
                key = (pattern, seg)
                if key not in workloads:
                    ext = _ext.generate(pattern, seg, cfg.io_size, space, cfg.seed)
                    workloads[key] = (ext, _ext.union_bytes(ext, 64))
                ext, lines = workloads[key]
                _ext.check(ext, space, buf.nbytes, op)
                cell = {d: a for d, a in attachments.items() if op == "write" or d not in peer_rows}
                measured = measure_cell(cell, op, ext, buf, cfg, evict, on_step, persist)
                for design, m in measured.items():
                    model = _meta.model(design)
                    ws = {"data_bytes": m.bytes, "data_lines_bytes": lines,
                          "descriptor_bytes": model.descriptors_touched(ext),
                          "llc_bytes": llc, "page_size": page_size}
                    meta = dict(metas[design], per_io_bytes=m.vector_bytes // max(m.ios, 1),
                                model_per_io_bytes=model.per_io_bytes(ext)
                                if not cfg.segs_per_io else None)
                    row = summarize(m, design, op, pattern, seg, cfg, ws, meta)
                    row["persistence"] = _persistence(design, op, cfg, resolved, durable, m)
                    rows.append(row)
                    if on_row:
                        on_row(rows[-1])
                if use_fio:
                    rows.append(fio_row(backing, data_off, space, op, pattern, seg, cfg, llc,
                                        page_size))
                    if on_row:
                        on_row(rows[-1])
        finally:
            for att in attachments.values():
                att.close()
    add_ratios(rows)
    doc["elapsed_s"] = time.time() - started
    return doc


def row_label(row):
    return f"{row['op']} {row['pattern']} {format_size(row['seg_bytes'])} {row['design']}"

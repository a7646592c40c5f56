"""The run configuration: what `pagetax run` measures (RunConfig, checked
before any backing is made), its defaults, and the CPU each thread runs on."""
import dataclasses
import os
from typing import List, Optional

from . import extents as _ext
from . import peers
from .backings import PAGE_SIZES
from .designs import DESIGNS, FOLIO_SIZES, GUP_PARTS, TABLE_PAGES
from .timed_run import CACHE_MODES, COLD_METHODS, DEFAULT_SEGS_PER_IO, MAX_THREADS, OPS
from .errors import PagetaxError
from .persist import PERSIST_MODES

DEFAULT_DESIGNS = ("vec", "pfn", "page", "folio", "huge", "altmap", "memdesc", "sgl", "memcpy",
                   "kernel")
DEFAULT_SEG_SIZES = (64, 4096, 65536)
DEFAULT_PATTERNS = ("seq", "rand")  # `hot` is asked for: it is about threads sharing pages


@dataclasses.dataclass
class RunConfig:
    designs: List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_DESIGNS))
    ops: List[str] = dataclasses.field(default_factory=lambda: list(OPS))
    patterns: List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_PATTERNS))
    seg_sizes: List[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_SEG_SIZES))
    size: int = 1 << 30            # backing bytes
    io_size: int = 64 << 20        # bytes per repetition, per thread
    repeat: int = 5                # timed repetitions per row
    phase_reps: int = 3            # instrumented repetitions per row: the split is a median
    warmup: Optional[int] = None   # untimed repetitions first; None: 1 warm, 0 cold (each
                                   # cold repetition starts from the same flushed state)
    cache: str = "cold"
    cold_method: str = "auto"      # clflushopt, clflush, evict, or auto (the first the CPU has)
    table_pages: str = "2M"        # DRAM descriptor tables: 2M (as vmemmap) or 4K
    folio_size: str = "4K"         # the folio designs' folio size
    gup_omit: List[str] = dataclasses.field(default_factory=list)  # grab parts left out
    gup_devmap: bool = False       # PMD folios grabbed page by page, as devdax until 6.14
    backing: str = "tmpfs"         # tmpfs, PATH, dax:PATH, devdax:DEV or auto
    overwrite: bool = False        # may pagetax write an existing file or device?
    page_size: str = "4K"          # the backing's mapping page size: 4K or 2M
    page_size_asked: bool = True   # False: the default, not the user's choice
    persist: str = "none"          # how scatters make stores persistent
    persist_each: bool = False     # SFENCE per entry instead of per I/O
    peers: List[str] = dataclasses.field(default_factory=list)  # libpmem
    seed: int = 1
    segs_per_io: int = DEFAULT_SEGS_PER_IO  # a bio's 256 bio_vecs; 0: one I/O per repetition
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
        if self.page_size not in PAGE_SIZES:
            raise PagetaxError(f"unknown page size {self.page_size!r} (choose from 4K, 2M)")
        if self.cold_method not in COLD_METHODS + ("auto",):
            raise PagetaxError(f"unknown cold-cache method {self.cold_method!r} "
                               f"(choose from auto, {', '.join(COLD_METHODS)})")
        if self.table_pages not in TABLE_PAGES:
            raise PagetaxError(f"unknown table page size {self.table_pages!r} "
                               f"(choose from {', '.join(TABLE_PAGES)})")
        if self.folio_size not in FOLIO_SIZES:
            raise PagetaxError(f"unknown folio size {self.folio_size!r} "
                               f"(choose from {', '.join(FOLIO_SIZES)})")
        for part in self.gup_omit:
            if part not in GUP_PARTS:
                raise PagetaxError(f"unknown part of the grab {part!r} (choose from "
                                   f"{', '.join(GUP_PARTS)})")
        if self.phase_reps < 0:
            raise PagetaxError(f"--phase-reps must not be negative (got {self.phase_reps})")
        if self.cache not in CACHE_MODES:
            raise PagetaxError(f"unknown cache mode {self.cache!r} (choose from {', '.join(CACHE_MODES)})")
        for p in self.peers:
            if p not in peers.NAMES:
                raise PagetaxError(f"unknown peer {p!r} (choose from {', '.join(peers.NAMES)})")
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

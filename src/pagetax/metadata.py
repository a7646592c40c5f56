"""The metadata model: what each design keeps per byte of capacity, and per I/O.

Every figure cites its source.  The designs with a data path are checked
against the C core (tests/test_metadata.py): what the core allocates must
equal this model, byte for byte.

Sources
  [page]    struct page is 64 bytes on x86-64: MAX_STRUCT_PAGE_SIZE = 64,
            drivers/nvdimm/pfn_devs.c; 64/4096 = 1.5625 % of capacity.
  [altmap]  drivers/nvdimm/pfn_devs.c, nd_pfn_init(), PFN_MODE_PMEM:
            npfns = PHYS_PFN(size - SZ_8K);
            offset = ALIGN(SZ_8K + 64 * npfns, align), align = 2 MiB;
            ndctl create-namespace --map=dev: "64-bytes per 4K (16GB per 1TB)".
  [bvec]    struct bio_vec {page *bv_page; unsigned bv_len, bv_offset} = 16 B,
            include/linux/bvec.h; multi-page bvecs (5.1) may span a compound page.
  [sgl]     struct scatterlist {page_link, offset, length, dma_address,
            dma_length} = 32 B on x86-64, include/linux/scatterlist.h.
  [iovec]   struct iovec {iov_base, iov_len} = 16 B; struct phys_vec {paddr,
            len} (block/blk-mq-dma.c) likewise 16 B with padding.
  [pfn_t]   pfn_t is 8 B (include/linux/pfn_t.h, removed in 6.17); with
            len and offset, 16 B: the 2015 RFC's __pfn_t bio_vec.
  [huge]    one struct page per 2 MiB compound page (Harrosh, 2015 thread).
  [memdesc-inline] an 8-byte descriptor per 4 KiB page with the count in
            it: no kernel plan, the floor for any per-page state.
  [folio]   struct folio overlays the head struct page and its first tails
            (include/linux/mm_types.h): 64 B per 4 KiB page, nothing more,
            whatever the folio size; multi-page bvecs split at folios.
  [page32]  the plan to halve the memmap (linux-mm, 2025): a 32-byte struct
            page, the count moving to a separately allocated folio.
  [memdesc] Wilcox's memdesc plan (kernelnewbies.org/MatthewWilcox/Memdescs):
            struct page is an 8-byte memdesc_t pointing to a separately
            allocated descriptor; a folio's is 80 bytes.
  [dedup]   device-dax compound-page vmemmap dedup (Joao Martins, 2022,
            mm/sparse-vmemmap.c): of a compound page's vmemmap, 2 pages
            (8 KiB) are kept; 2 MiB: 8 KiB of 32 KiB; 1 GiB: 8 KiB of 16 MiB.
  [hvo]     HugeTLB Vmemmap Optimization (2021; Documentation/mm/
            vmemmap_dedup.rst): 1 vmemmap page (4 KiB) kept per huge page.
The vmemmap's own page-table pages are not counted for any design.
"""
import dataclasses
import functools
from typing import Callable, Optional

import numpy as np

from .extents import union_bytes

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
PAGE = 4096
STRUCT_PAGE = 64
FOLIO_DESC = 80   # the memdesc plan's separately allocated struct folio
FOLIO_SIZES = {"4K": 4 * KIB, "16K": 16 * KIB, "64K": 64 * KIB, "2M": 2 * MIB}
ALTMAP_INFO = 8 * KIB
ALTMAP_ALIGN = 2 * MIB
SEED_CAPACITY = 400 * 10**9  # "a 400GB DIMM", the 2015 thread


def _per(granule, nbytes):
    """nbytes for every granule of capacity, rounded up to whole granules."""
    return lambda cap: -(-cap // granule) * nbytes


def _none(cap):
    return 0


def altmap_reserve(capacity):
    """Bytes an fsdax/devdax namespace of `capacity` loses to --map=dev [altmap]."""
    npfns = max(capacity - ALTMAP_INFO, 0) // PAGE
    return -(-(ALTMAP_INFO + STRUCT_PAGE * npfns) // ALTMAP_ALIGN) * ALTMAP_ALIGN


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    dram: Callable[[int], int]      # static bytes in DRAM for a capacity
    device: Callable[[int], int]    # static bytes taken from the device
    entry_bytes: int                # one vector entry
    split: Optional[int]            # entries split at this granule; None: one per extent
    data_path: bool                 # has a gather/scatter path in the core
    source: str
    desc_bytes: int = 0             # one descriptor the data path touches
    desc_granule: int = PAGE        # ... per this many bytes of data
    peer: bool = False              # a library to compare with, not a design
    one_entry: bool = False         # one entry per I/O, whatever its extents
    count: Optional[Callable] = None  # entries(ext), where C counts them

    def footprint(self, capacity):
        dram, device = self.dram(capacity), self.device(capacity)
        return {"dram_bytes": dram, "device_bytes": device,
                "percent": 100.0 * (dram + device) / capacity}

    def entries(self, ext):
        """Vector entries for a request's extents (with page splitting)."""
        if self.count:
            return self.count(ext)
        if self.one_entry:
            return 1
        if self.split is None:
            return len(ext)
        g = np.uint64(self.split)
        first = ext["off"] // g
        last = (ext["off"] + ext["len"] - np.uint64(1)) // g
        return int((last - first + np.uint64(1)).sum())

    def per_io_bytes(self, ext):
        return self.entries(ext) * self.entry_bytes

    def vector_bytes(self, ext, segs_per_io=0):
        """(vector bytes, I/Os) of a request cut into I/Os of segs_per_io
        extents (0: one I/O).  An entry never spans two extents, so the
        entries of the I/Os add up to the request's."""
        ios = -(-len(ext) // segs_per_io) if segs_per_io else 1
        if self.one_entry:
            return ios * self.entry_bytes, ios
        return self.per_io_bytes(ext), ios

    def descriptors_touched(self, ext):
        """Distinct descriptor bytes a request's build and release touch."""
        if not self.desc_bytes:
            return 0
        return union_bytes(ext, self.desc_granule) // self.desc_granule * self.desc_bytes


MODELS = {m.name: m for m in (
    Model("vec", _none, _none, 16, None, True, "[iovec] no per-page state"),
    Model("pfn", _none, _none, 16, None, True, "[pfn_t] address from the pfn"),
    Model("page", _per(PAGE, STRUCT_PAGE), _none, 16, PAGE, True,
          "[page][bvec] ndctl --map=mem", STRUCT_PAGE),
    Model("memcpy", _none, _none, 16, None, True,
          "roofline: the same segments, contiguous, through vec's loops"),
    Model("memcpy-glibc", _none, _none, 16, None, True,
          "reference: one glibc memcpy per I/O (its own store strategy)", one_entry=True),
    Model("kernel", _none, _none, 16, None, True,
          "[iovec] preadv/pwritev; the kernel's own folios are not counted"),
    Model("huge", _per(2 * MIB, STRUCT_PAGE), _none, 16, 2 * MIB, True, "[huge][bvec]",
          STRUCT_PAGE, 2 * MIB),
    Model("altmap", _none, altmap_reserve, 16, PAGE, True, "[altmap][bvec] ndctl --map=dev",
          STRUCT_PAGE),
    Model("memdesc-inline", _per(PAGE, 8), _none, 16, PAGE, True, "[memdesc-inline][bvec]", 8),
    Model("sgl", _per(PAGE, STRUCT_PAGE), _none, 32, None, True,
          "[sgl] with the [page] table for its references", STRUCT_PAGE),
    Model("libpmem", _none, _none, 16, None, True, "[iovec] PMDK libpmem, a peer", peer=True),
    Model("libpmem-nodrain", _none, _none, 16, None, True, "[iovec] PMDK libpmem, a peer",
          peer=True),
    Model("devdax-dedup-2M", _per(2 * MIB, 8 * KIB), _none, 16, 2 * MIB, False, "[dedup][bvec]"),
    Model("devdax-dedup-1G", _per(GIB, 8 * KIB), _none, 16, GIB, False, "[dedup][bvec]"),
    Model("hvo-2M", _per(2 * MIB, 4 * KIB), _none, 16, 2 * MIB, False, "[hvo][bvec]"),
    Model("hvo-1G", _per(GIB, 4 * KIB), _none, 16, GIB, False, "[hvo][bvec]"),
)}


# per-page descriptor bytes, and whether folios are allocated apart from them
FOLIO_DESIGNS = {"folio": (STRUCT_PAGE, False, "[folio][bvec]"),
                 "page32": (32, True, "[page32][bvec]"),
                 "memdesc": (8, True, "[memdesc][bvec]")}


def folio_model(name, folio_size="4K"):
    """A folio design's model at one folio size: per-page descriptors, plus
    a folio descriptor per folio where they are separate; bvecs split at
    folio boundaries."""
    per_page, separate, source = FOLIO_DESIGNS[name]
    folio = FOLIO_SIZES[folio_size]

    def dram(cap):
        return _per(PAGE, per_page)(cap) + (_per(folio, FOLIO_DESC)(cap) if separate else 0)
    return Model(name, dram, _none, 16, folio, True, f"{source} folios of {folio_size}",
                 per_page, PAGE)


def model(name, folio_size="4K"):
    """The model with sources above, or else what the core declares."""
    if name in FOLIO_DESIGNS:
        return folio_model(name, folio_size)
    found = MODELS.get(name) or _declared(name)
    if found is None:
        raise ValueError(f"no metadata model for {name!r}")
    return found


@functools.lru_cache(maxsize=None)
def _declared(name):
    """A design the core has and this file does not yet: its static bytes
    (the C metadata op), entry size, entry count and table geometry, as C
    declares them, so a new design needs no Python to be measured.  Its
    source says it is uncited until it gets an entry in MODELS."""
    from . import designs  # only here: the models above need no C
    if name not in designs.DESIGNS + designs.PEERS:
        return None
    desc, granule = designs.design_table(name)
    return Model(name, lambda cap: designs.design_metadata(name, cap)[0],
                 lambda cap: designs.design_metadata(name, cap)[1],
                 designs.design_entry_bytes(name), None, True,
                 "declared by the core (csrc/design_*.c); no cited model yet",
                 desc, granule or PAGE, peer="peer" in designs.design_flags(name),
                 count=lambda ext: designs.design_entries(name, ext))


def models(with_core=False, folio_sizes=("4K",)):
    """Every model, the folio designs once per folio size; with_core adds
    the core's designs that have none above."""
    found = list(MODELS.values())
    found += [folio_model(d, fs) for d in FOLIO_DESIGNS for fs in folio_sizes]
    if with_core:
        from . import designs
        found += [_declared(d) for d in designs.DESIGNS + designs.PEERS
                  if d not in MODELS and d not in FOLIO_DESIGNS]
    return found


def aligned_request(io_bytes, seg_bytes):
    """A request of io_bytes in aligned segments of seg_bytes."""
    n = io_bytes // seg_bytes
    ext = np.empty(n, [("off", "<u8"), ("len", "<u8")])
    ext["off"] = np.arange(n, dtype=np.uint64) * np.uint64(seg_bytes)
    ext["len"] = seg_bytes
    return ext


def table(capacity, io_bytes=MIB, seg_sizes=(4096, 64), folio_sizes=("4K", "2M")):
    """Every model's footprint for one capacity, and its bytes per I/O; the
    folio designs at each folio size."""
    requests = {seg: aligned_request(io_bytes, seg) for seg in seg_sizes}
    rows = []
    for m in models(with_core=True, folio_sizes=folio_sizes):
        if m.peer:
            continue
        folio = next((fs for fs, b in FOLIO_SIZES.items() if m.name in FOLIO_DESIGNS
                      and b == m.split), None)
        row = {"design": m.name, "folio_size": folio, "data_path": m.data_path,
               **m.footprint(capacity),
               "per_io_bytes": {str(seg): m.per_io_bytes(ext) for seg, ext in requests.items()},
               "source": m.source}
        rows.append(row)
    return rows


def seed_note(capacity):
    """How `page` at this capacity relates to the thread's "6.4 GB"."""
    exact = MODELS["page"].dram(capacity)
    thread = capacity // 4000 * STRUCT_PAGE
    return (f"page: {capacity:,} B x 64/4096 = {exact:,} B, {100 * exact / capacity:.4f} % of "
            f"capacity. Counting 4 KiB as 4000 bytes, as the 2015 thread did (its \"6.4 GB\" "
            f"for 400 GB), gives {thread:,} B.")


def rss_verdict(allocated, rss_delta, on_device, page_bytes=4096):
    """Does the measured RSS growth agree with the allocation (within 5 %)?
    Returns (ok, reason); the reason says why when it does not."""
    expected = 0 if on_device else allocated
    if allocated == 0:
        return True, "no descriptor table"
    if on_device:
        ok = abs(rss_delta) <= 0.05 * allocated
        why = ("the table lives on the backing, whose pages were already resident: "
               "no DRAM was allocated for it") if ok else \
              (f"RSS grew by {rss_delta} B although the table is on the backing")
        return ok, why
    ok = abs(rss_delta - expected) <= 0.05 * expected
    if ok:
        return True, ""
    rounded = -(-allocated // page_bytes) * page_bytes
    if rss_delta == rounded or (allocated < 20 * page_bytes and 0 <= rss_delta - allocated < page_bytes):
        return False, (f"the table is {allocated} B; RSS grows in whole {page_bytes} B pages, "
                       f"so it shows {rss_delta} B")
    if rss_delta > expected and rss_delta % (2 * MIB) == 0:
        return False, "RSS grew in 2 MiB steps: transparent huge pages backed the table"
    return False, (f"RSS grew by {rss_delta} B for a {allocated} B table: other memory of the "
                   "process changed meanwhile (allocator, page cache, reclaim)")

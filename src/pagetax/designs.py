"""The design registry as the C core declares it (csrc/designs.def): names,
capability flags, data layouts, descriptor tables, entries per extent array,
metadata bytes, and the folio sizes and grab parts an attachment may take.
Nothing here tests a design's name: what a design is comes from its flags."""
from . import extents as _ext
from ._core import ffi, lib
from .errors import ExtentError, PagetaxError, raise_for

_ALL = tuple(ffi.string(lib.pt_design_name(i)).decode() for i in range(lib.pt_design_count()))
_DESIGN_ID = {name: i for i, name in enumerate(_ALL)}
DESIGNS = tuple(d for i, d in enumerate(_ALL) if not lib.pt_design_flags(i) & lib.PT_DESIGN_PEER)
PEERS = tuple(d for i, d in enumerate(_ALL) if lib.pt_design_flags(i) & lib.PT_DESIGN_PEER)
TABLE_PAGES = ("2M", "4K")   # how DRAM descriptor tables are mapped; 2M as the kernel's vmemmap
# folio sizes of the folio designs (--folio-size); 2M stands for THP and
# PMD-mapped DAX, PMD-mapped, the others PTE-mapped
FOLIO_SIZES = {"4K": 12, "16K": 14, "64K": 16, "2M": 21}


def design_id(name):
    try:
        return _DESIGN_ID[name]
    except KeyError:
        raise PagetaxError(f"unknown design {name!r} (choose from {', '.join(DESIGNS)})") from None


def design_entry_bytes(name):
    return int(lib.pt_design_entry_bytes(design_id(name)))


_FLAG_NAMES = {"peer": lib.PT_DESIGN_PEER, "roofline": lib.PT_DESIGN_ROOFLINE,
               "contiguous": lib.PT_DESIGN_CONTIGUOUS, "refcounts": lib.PT_DESIGN_REFCOUNTS,
               "table_on_backing": lib.PT_DESIGN_TABLE_ON_BACKING,
               "own_persist": lib.PT_DESIGN_OWN_PERSIST,
               "folios": lib.PT_DESIGN_FOLIOS, "baseline": lib.PT_DESIGN_BASELINE,
               "proposal": lib.PT_DESIGN_PROPOSAL}


def design_flags(name):
    """What a design declares itself to be, as a set of names (see pagetax.h)."""
    bits = lib.pt_design_flags(design_id(name))
    return frozenset(k for k, v in _FLAG_NAMES.items() if bits & v)


def design_layout(name, size):
    """(data offset, data bytes) a design would use on a backing of `size`."""
    off = ffi.new("uint64_t *")
    nbytes = ffi.new("uint64_t *")
    if size > lib.PT_MAX_CAPACITY:
        raise PagetaxError(f"a {size}-byte backing is over the limit of "
                           f"{lib.PT_MAX_CAPACITY} bytes (2^57)")
    if lib.pt_design_layout(design_id(name), size, off, nbytes):
        raise PagetaxError(f"a {size}-byte backing is too small for {name}")
    return int(off[0]), int(nbytes[0])


def common_layout(designs, size):
    """The one data area every design in a run can share: it starts after
    the largest reserve (altmap's) and ends at the earliest end."""
    areas = [design_layout(d, size) for d in designs]
    start = max(off for off, _ in areas)
    end = min(off + n for off, n in areas)
    return start, end - start


def design_table(name):
    """(descriptor bytes, data bytes per descriptor) of a refcounting design's
    table, as C declares them; (0, 0) without a table."""
    desc, granule = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    lib.pt_design_table(design_id(name), desc, granule)
    return int(desc[0]), int(granule[0])


def design_entries(name, ext):
    """Vector entries one build of `ext` makes, as the design counts them."""
    _ext.check_array(ext)
    c_ext = ffi.from_buffer("struct pt_extent[]", ext) if len(ext) else ffi.NULL
    entries = int(lib.pt_design_entries(design_id(name), c_ext, len(ext)))
    return entries_or_raise(entries, ext)


def entries_or_raise(entries, ext):
    if entries == lib.PT_ENTRIES_INVALID:
        _ext.check_segments(ext)   # names the extent
        raise ExtentError("extents that no run accepts")
    return entries


# The parts of the kernel's grab a run may leave out, to measure each
# (csrc/pt_gup.h): FOLL_PIN (leaving FOLL_GET), folio_ref_try_add's loop,
# page_folio()'s re-read, folio_set_referenced.
GUP_PARTS = {"pin": "PT_ATTACH_GUP_GET", "try-add": "PT_ATTACH_GUP_PLAIN_ADD",
             "recheck": "PT_ATTACH_GUP_NO_RECHECK", "referenced": "PT_ATTACH_GUP_NO_REFERENCED"}


def gup_flags(omit=(), devmap=False):
    flags = 0
    for part in omit:
        if part not in GUP_PARTS:
            raise PagetaxError(f"unknown part of the grab {part!r} (choose from "
                               f"{', '.join(GUP_PARTS)})")
        flags |= getattr(lib, GUP_PARTS[part])
    return flags | (lib.PT_ATTACH_GUP_DEVMAP if devmap else 0)


def folio_shift(folio_size):
    if folio_size not in FOLIO_SIZES:
        raise PagetaxError(f"unknown folio size {folio_size!r} "
                           f"(choose from {', '.join(FOLIO_SIZES)})")
    return FOLIO_SIZES[folio_size]


def design_metadata(name, capacity, folio_size="4K"):
    """(DRAM bytes, device bytes) a design keeps for `capacity` bytes (the
    folio designs: with folios of `folio_size`)."""
    if not 0 <= capacity < 1 << 64:
        raise PagetaxError(f"capacity {capacity} is over the limit of "
                           f"{lib.PT_MAX_CAPACITY} bytes (2^57)")
    shift = folio_shift(folio_size) if "folios" in design_flags(name) else 12
    out = ffi.new("struct pt_metadata *")
    err = ffi.new("struct pt_error *")
    raise_for(lib.pt_design_metadata_folio(design_id(name), capacity, shift, out, err), err,
              cls=PagetaxError)
    return int(out.dram_bytes), int(out.device_bytes)

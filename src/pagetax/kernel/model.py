"""The model beside the kernel: pagetax's `page` and `folio` designs over the
same pages as the probes, one I/O of one 1 MiB extent (256 pages, as the
probes' one iovec), warm as the probes' buffers are (the same pages every
call).  Build and release per page come from the core's instrumented
repetitions (one mark per phase subtracted), as in `pagetax run`."""
from .. import backings, extents
from ..core import aligned_buffer
from . import slope
from .buffers import BASE_PAGE
from .probes.common import MAX_PAGES

# (design, folio size, the grab): FOLL_PIN as the block layer's O_DIRECT
# takes it, FOLL_GET as vmsplice does (csrc/pt_gup.h)
DESIGNS = (("page", "4K", "pin"), ("page", "4K", "get"), ("folio", "4K", "pin"),
           ("folio", "2M", "pin"), ("folio", "2M", "get"))
BACKING_BYTES = 4 << 20   # room for a 2 MiB folio's whole descriptor span


def measure_model(designs=DESIGNS, reps=31):
    """One row per (design, folio size): build, release and build +
    release per page, each the median of `reps` instrumented repetitions
    with its interval."""
    rows = []
    buf = aligned_buffer(MAX_PAGES * BASE_PAGE)
    with backings.open_backing("tmpfs", BACKING_BYTES) as b:
        for design, folio_size, grab in designs:
            omit = ("pin",) if grab == "get" else ()
            with b.attach(design, folio_size=folio_size, gup_omit=omit) as att:
                # one contiguous 1 MiB extent, as the probes' one iovec
                ext = extents.make([0], [MAX_PAGES * BASE_PAGE])
                m = att.run("read", ext, buf, reps=reps, warmup=1, cache="warm",
                            segs_per_io=1, phase_reps=reps)
                per_page = m.phases / MAX_PAGES   # (reps, 3): build, copy, release
                rows.append({
                    "design": design, "folio_size": folio_size, "grab": grab,
                    "pages_per_io": MAX_PAGES,
                    "cache": "warm", "backing": "tmpfs",
                    "build_ns": slope.summarise(per_page[:, 0]),
                    "release_ns": slope.summarise(per_page[:, 2]),
                    "build_release_ns": slope.summarise(per_page[:, 0] + per_page[:, 2]),
                    "mark_ns": float(m.clock_ns),
                })
    return rows

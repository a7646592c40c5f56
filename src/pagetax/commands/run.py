"""`pagetax run`: the benchmark matrix, its table and its result file.  Its
options name what the C core offers, so they are added (and the core
loaded) only when run is the command."""
import os

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import report
from ..errors import Interrupted
from .options import Terminated, count, cpus, json_output, names, say, segs_per_io, size, sizes

NAME = "run"


def add_parser(sub, detailed):
    r = sub.add_parser("run", help="run the benchmark matrix and print the table",
                       description="Run every design over the same extents and buffer; print "
                       "a table and write a JSON result file.", add_help=detailed)
    if detailed:
        add_options(r)

    return r


def add_options(r):
    from .. import config, peers
    from ..backings import PAGE_SIZES
    from ..designs import DESIGNS, FOLIO_SIZES, GUP_PARTS, TABLE_PAGES
    from ..timed_run import CACHE_MODES, COLD_METHODS, OPS
    from ..extents import PATTERNS
    from ..persist import PERSIST_MODES
    d = config.RunConfig()
    r.add_argument("--designs", type=names("design", DESIGNS), default=d.designs,
                   help=f"comma list (default: {','.join(d.designs)})")
    r.add_argument("--ops", type=names("op", OPS), default=d.ops,
                   help="read (gather) and/or write (scatter) (default: read,write)")
    r.add_argument("--patterns", type=names("pattern", PATTERNS), default=d.patterns,
                   help="seq, rand and/or hot: every thread reads the same --hot-pages "
                   "pages (default: seq,rand)")
    r.add_argument("--seg-sizes", type=sizes, default=d.seg_sizes,
                   help="comma list of segment sizes (default: 64,4K,64K)")
    r.add_argument("--size", type=size("--size"), default=None,
                   help="backing size (default: 1G, capped by a device-DAX node's size); "
                   "K/M/G/T and KiB.. are powers of 2; KB.. (powers of 10) are refused, as "
                   "for every size that lives on page boundaries")
    r.add_argument("--io-size", type=size("--io-size"), default=d.io_size,
                   help="bytes copied per repetition, per thread (default: 64M)")
    r.add_argument("--repeat", type=count("--repeat", 1), default=d.repeat,
                   help="timed repetitions per row (default: 5)")
    r.add_argument("--phase-reps", type=count("--phase-reps", 0), default=d.phase_reps,
                   help="instrumented repetitions per row, interleaved with the timed ones, "
                   "for the build/copy/release split, a median per phase (default: 3)")
    r.add_argument("--warmup", type=count("--warmup", 0), default=d.warmup,
                   help="untimed repetitions first (default: 1 with --cache warm, to warm the "
                   "caches; 0 with cold, where every repetition starts from the same flushed "
                   "state and everything is touched before the first)")
    r.add_argument("--cache", choices=CACHE_MODES, default=d.cache,
                   help="cold: before each repetition, flush every cache line it touches and "
                   "empty the TLB (default: cold)")
    r.add_argument("--cold-method", choices=("auto",) + COLD_METHODS, default=d.cold_method,
                   help="how --cache cold flushes: clflushopt, clflush, or evict (plain stores "
                   "over 4x the LLC, for CPUs with neither); auto picks the first the CPU has")
    r.add_argument("--folio-size", choices=list(FOLIO_SIZES), default=d.folio_size,
                   help="folio, page32 and memdesc: the folio size (default: 4K); 2M folios "
                   "are PMD-mapped (THP, PMD-mapped DAX), smaller ones PTE-mapped")
    r.add_argument("--gup-omit", type=names("part of the grab", list(GUP_PARTS)), default=[],
                   metavar="PARTS",
                   help="leave parts of the kernel's grab out of every counting design, to "
                   "measure what each adds: pin (FOLL_GET instead), try-add (a plain add), "
                   "recheck (page_folio again), referenced (folio_set_referenced); comma list "
                   "(default: none)")
    r.add_argument("--gup-devmap", action="store_true",
                   help="grab PMD-mapped folios (--folio-size 2M) page by page with a pagemap "
                   "lookup each, as Linux 5.17-6.14 grabbed device-DAX pages")
    r.add_argument("--table-pages", choices=TABLE_PAGES, default=d.table_pages,
                   help="page size of DRAM descriptor tables: 2M as the kernel maps vmemmap "
                   "(THP, where allowed), or 4K (default: 2M)")
    r.add_argument("--backing", default=d.backing, metavar="KIND",
                   help="tmpfs (default: a scratch file on /dev/shm, or a memfd); PATH (a file "
                   "on any file system); dax:PATH (a file on an fsdax mount, MAP_SYNC); "
                   "devdax:/dev/daxX.Y; auto (DAX where the machine has it, else tmpfs). "
                   "A new file is removed at once; an existing one is only read without --overwrite")
    r.add_argument("--overwrite", action="store_true",
                   help="allow writes to an existing --backing file or device (destroys its contents)")
    r.add_argument("--segs-per-io", type=segs_per_io, default=d.segs_per_io,
                   metavar="K", help="cut each repetition into I/Os of K segments, each its own "
                   f"build -> copy -> release cycle (default: {d.segs_per_io}, a bio's "
                   "BIO_MAX_VECS); 'all' (or 0): one I/O of every segment of a repetition, "
                   "a vector no kernel path builds")
    r.add_argument("--threads", type=count("--threads", 1), default=d.threads, metavar="N",
                   help="POSIX threads in the core, each on its own extents and buffer, all "
                   "through one descriptor table; GB/s is then aggregate (default: 1)")
    r.add_argument("--pin", type=cpus, nargs="?", const=[], default=None, metavar="CPUS",
                   help="pin thread i to the i-th CPU of CPUS (a list like 0,2 or 0-3), or of "
                   "the CPUs this process may use when CPUS is left out")
    r.add_argument("--hot-pages", type=count("--hot-pages", 1), default=d.hot_pages,
                   metavar="N", help="pages the hot pattern shares among threads (default: 64)")
    r.add_argument("--page-size", choices=PAGE_SIZES, default=None,
                   help="the backing's mapping page size (default: 4K); 2M on tmpfs uses hugetlb "
                   "pages, a private huge=always tmpfs (root) or MADV_HUGEPAGE")
    r.add_argument("--persist", choices=PERSIST_MODES, default=d.persist,
                   help="make scatters persistent: flush each written line (clwb, clflushopt, "
                   "clflush) or use non-temporal stores (nt), then SFENCE; auto follows libpmem "
                   "(default: none)")
    r.add_argument("--persist-each", action="store_true",
                   help="SFENCE after every entry instead of once per I/O")
    r.add_argument("--peers", type=names("peer", peers.NAMES), default=[],
                   help="libpmem: write rows through PMDK's pmem_memcpy_persist and "
                   "pmem_memcpy_nodrain + pmem_drain (loaded at run time); fio: rows from "
                   "fio's mmap engine on the same backing (if fio is installed)")
    json_output(r, "result file (default: runs/pagetax-run-TIME.json)")
    r.add_argument("--seed", type=count("--seed", 0), default=d.seed, help="extent seed (default: 1)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--plot", action="store_true",
                   help="also draw the plots, next to the result file (needs matplotlib)")


def config(args):
    from .. import config
    size = args.size
    if size is None:  # a device cannot grow: the default is capped by it
        from ..backings import default_size
        size, note = default_size(args.backing, config.RunConfig.size, args.overwrite)
        if note:
            say(f"pagetax: {note}")
    return config.RunConfig(designs=args.designs, ops=args.ops, patterns=args.patterns,
                            seg_sizes=args.seg_sizes, size=size, io_size=args.io_size,
                            repeat=args.repeat, warmup=args.warmup, cache=args.cache,
                            backing=args.backing, overwrite=args.overwrite, seed=args.seed,
                            page_size=args.page_size or default_page_size(),
                            page_size_asked=args.page_size is not None, persist=args.persist,
                            persist_each=args.persist_each, peers=args.peers,
                            segs_per_io=args.segs_per_io, threads=args.threads, pin=args.pin,
                            hot_pages=args.hot_pages, phase_reps=args.phase_reps,
                            cold_method=args.cold_method, table_pages=args.table_pages,
                            folio_size=args.folio_size, gup_omit=args.gup_omit,
                            gup_devmap=args.gup_devmap)


def default_page_size():
    from .. import config
    return config.RunConfig().page_size


def run(args, out, err):
    from .. import concurrency
    from .. import rows as _rows
    from .. import runner
    cfg = config(args)
    cfg.check()
    if args.json:
        report.check_json_path(args.json, args.force)  # fail before a long run, not after
    results = []
    doc = {}
    total = runner.steps(cfg)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True,
                        disable=args.no_progress or not err.is_terminal)
    status = 0
    with progress:
        task = progress.add_task("attaching backing", total=total)

        def on_step(design):
            progress.update(task, advance=1, description=design)

        def on_row(row):
            progress.update(task, description=_rows.row_label(row))
        with concurrency.Measuring() as measuring:
            at_start = measuring.others()
            try:
                runner.run(cfg, results, on_row, on_step, doc)
            except (KeyboardInterrupt, Terminated) as e:
                status = 130 if isinstance(e, KeyboardInterrupt) else 143
            except Interrupted:
                status = 130
            concurrency.record(doc, at_start, measuring.others())
    if status:
        if "schema" not in doc or not results:
            # a file with no rows is one plot, report and compare can only refuse
            say("pagetax: interrupted before any row finished; no result file written")
            return status
        doc["partial"] = True
        doc["interrupted_by"] = "SIGINT" if status == 130 else "SIGTERM"
        _rows.add_ratios(results)
        report.print_table(doc, out)
        path = report.write_json(doc, args.json or report.default_path(), force=args.force)
        say(f"pagetax: interrupted after {len(results)} rows; partial results: {path}")
        return status
    report.print_table(doc, out)
    for warning in doc.get("warnings", []):
        say(f"pagetax: warning: {warning}")
    path = report.write_json(doc, args.json or report.default_path(), force=args.force)
    say(f"results: {path}")
    say(f"next: pagetax report {path}   (one page: the table, the pictures, the metadata); "
        f"pagetax compare A.json {path}   (did it get slower?)")
    if args.plot:
        from .. import plot
        for name, p in plot.plot(doc, os.path.splitext(path)[0] + "-plots").items():
            say(f"{name}: {p}")
    return status

"""The pagetax command line: `pagetax run` (also `python -m pagetax run`).

Only `run` loads the C core: the other commands read result files or the
metadata model, so the modules that load it are imported where run needs
them, never at the top.  (`vm run` loads it inside its guest.)"""
import argparse
import json
import os
import signal
import sys
import tempfile
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import metadata as _metadata_model  # the model alone: no C core
from . import report
from .errors import Interrupted, PagetaxError
from .sizes import format_size, parse_size


def _say(line):
    """One unwrapped line on stderr, for messages scripts and tests read."""
    print(line, file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line, not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so cleanup runs as for Ctrl-C."""


def _size(what, decimal=False):
    """A size option; KB..TB only where decimal sizes make sense (a DIMM's
    capacity), else refused with a hint (sizes.parse_size)."""
    def parse(text):
        try:
            return parse_size(text, what, decimal)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def _names(kind, allowed):
    def parse(text):
        items = [x.strip() for x in text.split(",") if x.strip()]
        for x in items:
            if x not in allowed:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {x!r} (choose from {', '.join(allowed)})")
        if not items:
            raise argparse.ArgumentTypeError(f"no {kind} given")
        return items
    return parse


def _sizes(text):
    try:
        items = [parse_size(x, "segment size", decimal=False) for x in text.split(",")
                 if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not items:
        raise argparse.ArgumentTypeError("no segment sizes given")
    return items


def _count(what, minimum):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a whole number") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum} (got {v})")
        return v
    return parse


def _segs_per_io(text):
    """A count of segments per I/O, or 'all' (0): the whole repetition."""
    return 0 if text.strip().lower() == "all" else _count("--segs-per-io", 0)(text)


def _cpus(text):
    """A CPU list as taskset and /sys write them: 0,2,4-7."""
    cpus = []
    try:
        for part in filter(None, (x.strip() for x in text.split(","))):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if first < 0 or last < first:
                raise ValueError
            cpus.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"CPU list {text!r} is not like 0,2 or 0-3") from None
    if not cpus:
        raise argparse.ArgumentTypeError("no CPUs given")
    return cpus


def _seconds(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return v


def _vm_namespace(text):
    from .vm import Namespace, VmError
    try:
        return Namespace.from_label(text)
    except VmError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _version_text():
    from . import version
    return version.text()


def build_parser(command="run"):
    """The command line.  `run`'s options name what the C core offers, so
    they are added only when `command` is "run"; main learns the command
    first, from a parser without them.  `vm`'s commands are added only for
    "vm" alike."""
    p = _Parser(prog="pagetax", description="What struct page costs scatter-gather I/O, "
                "against raw (address, length) vectors.")
    p.add_argument("--version", action="version", version=_version_text())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    r = sub.add_parser("run", help="run the benchmark matrix and print the table",
                       description="Run every design over the same extents and buffer; print "
                       "a table and write a JSON result file.", add_help=command == "run")
    if command == "run":
        _run_options(r)

    pl = sub.add_parser("plot", help="draw a run's pictures: x vec, phases, metadata, latency",
                        description="Each design's GB/s over vec's against segment size; "
                        "build/copy/release per design; metadata per capacity (log scale, "
                        "with the kernel's measured struct pages from `pagetax vm memmap "
                        "--json` files); raw GB/s and ns per segment; with --segs-per-io, "
                        "the per-I/O latency CDF.")
    _run_and_memmap_files(pl)
    pl.add_argument("--format", choices=("png", "svg"), default="png")

    rp = sub.add_parser("report", help="write one static HTML page for a run",
                        description="Table, plots, metadata and machine on one page that works "
                        "opened from disk.  A run made in a `pagetax vm` guest is marked as "
                        "such; `pagetax vm memmap --json` files add the kernel's own struct "
                        "pages, measured in a guest.")
    _run_and_memmap_files(rp)

    c = sub.add_parser("compare", help="did B get slower than A? row by row, exit 1 if so",
                       description="B against A per matching row: B's GB/s over A's, each "
                       "repetition divided by the drift reference's in its round, with a "
                       "distribution-free 95% interval; slower or faster only when the whole "
                       "interval lies beyond --min-change.  Exit 1 when a row got slower, or "
                       "when a whole cell moved and no reference tells drift from change.")
    c.add_argument("files", nargs="*", metavar="FILE",
                   help="A.json B.json: one run of each; or use -a and -b")
    c.add_argument("-a", nargs="+", metavar="A.json", dest="a_files",
                   help="runs of the old code, pooled (run A and B alternately, 3 each)")
    c.add_argument("-b", nargs="+", metavar="B.json", dest="b_files",
                   help="runs of the new code, pooled")
    c.add_argument("--min-change", type=float, default=5.0, metavar="PCT",
                   help="smallest change called slower or faster, in percent: what runs of "
                   "the same code move by beyond the repetitions' own spread (default: 5)")
    c.add_argument("--fail-above", type=float, metavar="PERCENT",
                   help="exit 1 only for rows slower by more than PERCENT (default: any "
                   "slower row fails)")
    c.add_argument("--allow-drift", action="store_true",
                   help="without a drift reference, judge each row against its cell's median "
                   "move instead of failing when a whole cell moved")
    c.add_argument("--ignore-config", action="store_true",
                   help="compare runs that did not measure alike (a warning names what differs)")

    pub = sub.add_parser("publish", help="asv's web pages of all machines' results, no CDN",
                         description="Run `asv publish` over the asv results (every machine "
                         "under results/), then point the pages at copies of jQuery, flot and "
                         "bootstrap written into the site, so that it works with no network "
                         "from any static web server.  Needs asv: pip install asv.")
    pub.add_argument("--config", default="asv.conf.json", metavar="PATH",
                     help="asv's config (default: asv.conf.json here); its results_dir is "
                     "published")
    pub.add_argument("--html-dir", "-o", metavar="DIR",
                     help="where the site goes (default: the config's html_dir); replaced "
                     "whole, so it must be new, empty or an earlier published site")

    m = sub.add_parser("metadata", help="what each design keeps per capacity and per I/O",
                       description="The metadata model of every design, and of the vmemmap "
                       "reduction schemes, at the capacities given.")
    m.add_argument("--capacity", type=_size("--capacity", decimal=True), action="append",
                   metavar="SIZE",
                   help="capacity, repeatable (default: 400GB, the 2015 thread's DIMM); "
                   "G/GiB are powers of 2, GB of 10")
    folio_sizes = list(_metadata_model.FOLIO_SIZES)
    m.add_argument("--folio-sizes", type=_names("folio size", folio_sizes), default=["4K", "2M"],
                   help="the folio designs' folio sizes to show, comma-separated, of "
                   f"{', '.join(folio_sizes)} (default: 4K,2M)")
    m.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    m.add_argument("--force", action="store_true", help="replace an existing --json file")

    k = sub.add_parser("kernel", help="what the running kernel pays per page, beside the model",
                       description="Time the running kernel's own per-page paths (a reference "
                       "taken and dropped through vmsplice + splice, the page-table walk, "
                       "O_DIRECT with and without a registered buffer), on 4 KiB pages, a 2 MiB "
                       "THP and a 2 MiB hugetlb page; the model's page and folio designs over "
                       "the same pages; and the memmap with HugeTLB vmemmap optimization off "
                       "and on.  io_uring and the memmap need root; every setting changed goes "
                       "back on exit.")
    _kernel_options(k)

    v = sub.add_parser("vm", help="run pagetax in a QEMU guest on an emulated NVDIMM (DAX)",
                       description="Boot a throw-away QEMU guest whose emulated NVDIMM becomes "
                       "an fsdax or devdax namespace, and run in it the host's own Python and "
                       "pagetax (the host's root is shared read-only over 9p).  One guest per "
                       "namespace.  Needs: apt-get install qemu-system-x86 linux-image-amd64 "
                       "busybox-static ndctl xfsprogs e2fsprogs kmod.", add_help=command == "vm")
    if command == "vm":
        _vm_commands(v)
    return p


def _run_and_memmap_files(p):
    """plot's and report's inputs (report_page.load reads them) and output."""
    p.add_argument("results", nargs="+", metavar="RESULTS.json",
                   help="a run's result file, any `pagetax vm memmap --json` files and at most "
                   "one `pagetax kernel --json` file, in any order (one run)")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="where the files go (default: beside the first file, named after it: "
                   "RESULTS-report/ or RESULTS-plots/)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an existing, non-empty output folder")


def _kernel_options(k):
    from . import kernel
    k.add_argument("--paths", type=_names("path", kernel.PATHS), default=list(kernel.PATHS),
                   help=f"comma list (default: {','.join(kernel.PATHS)})")
    k.add_argument("--buffers", type=_names("buffer", kernel.BUFFERS),
                   default=list(kernel.BUFFERS),
                   help=f"comma list (default: {','.join(kernel.BUFFERS)})")
    k.add_argument("--rounds", type=_count("--rounds", 3), default=31,
                   help="sweeps over pages per call; the figure is the median round's slope "
                   "(default: 31)")
    k.add_argument("--calls", type=_count("--calls", 1), default=31,
                   help="calls per page count per round, their median taken (default: 31)")
    k.add_argument("--dax", metavar="SPEC",
                   help="also measure 2 MiB of DAX pages: dax:PATH (a new file on an fsdax "
                   "mount) or devdax:DEVICE (written: needs --overwrite)")
    k.add_argument("--overwrite", action="store_true",
                   help="let --dax write an existing file or a device-DAX node")
    k.add_argument("--trace", action="store_true",
                   help="count the kernel functions each path runs (the function tracer; some "
                   "hosts refuse it, and the output says so)")
    k.add_argument("--no-model", dest="model", action="store_false",
                   help="skip the model's page and folio designs over the same pages")
    k.add_argument("--no-memmap", dest="memmap", action="store_false",
                   help="skip the memmap measurement (it allocates 512 MiB of 2 MiB and one "
                   "1 GiB hugetlb page, with HVO off and on, and gives them back)")
    k.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    k.add_argument("--force", action="store_true", help="replace an existing --json file")


def _vm_commands(v):
    from . import vm
    vsub = v.add_subparsers(dest="vm_command", metavar="VM_COMMAND", parser_class=_Parser)
    vsub.required = True
    r = vsub.add_parser("run", help="pagetax run inside a guest, on a DAX namespace",
                        description="Run `pagetax run` inside a guest with its backing on the "
                        "namespace: a new file on the DAX mount (fsdax) or /dev/dax0.0, "
                        "written (devdax).  The result file comes back with a `guest` object. "
                        "pagetax run's own options go after --; its --size must fit the "
                        "namespace: a 1G NVDIMM gives 1022 MiB with --map=mem and 1006 MiB "
                        "with --map=dev, less what a file system keeps.")
    _vm_namespace_options(r)
    _vm_guest_options(r, timeout=600)
    r.add_argument("--json", metavar="PATH",
                   help="result file (default: runs/pagetax-run-TIME.json)")
    r.add_argument("--force", action="store_true", help="replace an existing --json file")
    r.add_argument("run_args", nargs="*", metavar="-- RUN_ARGS", help="pagetax run's options")

    x = vsub.add_parser("exec", help="your own command inside a guest, on a DAX namespace",
                        description="Run CMD (after --) as root inside a guest on the namespace, "
                        "with the host's root shared read-only: its programs, its Python.  The "
                        "command finds the namespace in PAGETAX_VM_DAX_DIR (an fsdax mount) or "
                        "PAGETAX_VM_DEVDAX (a device), described in PAGETAX_VM_NAMESPACE (JSON); "
                        "it starts in a writable folder whose files come back to --output.  The "
                        "exit status is the command's.")
    _vm_namespace_options(x)
    _vm_guest_options(x, timeout=600)
    x.add_argument("--output", "-o", metavar="DIR",
                   help="where the command's files come back (default: a new "
                   "pagetax-vm-exec-TIME folder here); must be new or empty")
    x.add_argument("command_argv", nargs="+", metavar="-- CMD", help="the command and its "
                   "arguments")

    t = vsub.add_parser("test", help="pytest's tests/test_dax_guest.py inside guests",
                        description="Run tests/test_dax_guest.py of this source tree with pytest, "
                        "in one guest per namespace.  The tests find the DAX paths in "
                        "PAGETAX_VM_DAX_DIR (fsdax) or PAGETAX_VM_DEVDAX (devdax), and the "
                        "namespace in PAGETAX_VM_NAMESPACE (JSON).  The exit status is the "
                        "first failing guest's pytest status, else 0.")
    t.add_argument("--namespace", type=_vm_namespace, action="append", metavar="LABEL",
                   help="a namespace to test in, repeatable (default: "
                   f"{', '.join(ns.label for ns in vm.TEST_NAMESPACES)})")
    _vm_guest_options(t, timeout=900)
    t.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS", help="pytest's options")

    k = vsub.add_parser("kernel", help="pagetax kernel inside guests, on fsdax and devdax pages",
                        description="Run `pagetax kernel` in one guest per namespace (fsdax "
                        "on ext4, devdax at 2M), with 2 MiB of the namespace's pages as a "
                        "buffer beside 4 KiB and THP ones and the function tracer on: "
                        "whether the kernel can pin ZONE_DEVICE pages for I/O, through which "
                        "functions, with the bytes checked.  Under TCG the timings mean "
                        "nothing.  --kernel sets guest kernels side by side.")
    _vm_guest_options(k, timeout=600)
    k.add_argument("--json", metavar="PATH", help="also write every guest's figures as JSON")
    k.add_argument("--force", action="store_true", help="replace an existing --json file")
    k.add_argument("kernel_args", nargs="*", metavar="-- KERNEL_ARGS",
                   help="pagetax kernel's options (default in a TCG guest: --rounds 5 "
                   "--calls 5)")

    m = vsub.add_parser("memmap", help="the kernel's struct pages per namespace mode, measured",
                        description="One fresh guest per mode (fsdax --map=mem and dev, devdax "
                        "--map=mem at 4k and 2M, devdax --map=dev): the drop in free memory "
                        "across create-namespace, beside pagetax's model of the matching "
                        "design.")
    _vm_guest_options(m, timeout=300)
    m.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    m.add_argument("--force", action="store_true", help="replace an existing --json file")


def _vm_namespace_options(p):
    from . import vm
    p.add_argument("--mode", choices=vm.MODES, default="fsdax",
                   help="fsdax (a file on a DAX file system) or devdax (default: fsdax)")
    p.add_argument("--map", choices=vm.MAPS, default="mem",
                   help="the namespace's struct pages in DRAM (mem) or on itself (dev) "
                   "(default: mem)")
    p.add_argument("--fs", choices=vm.FILE_SYSTEMS, help="fsdax's file system (default: ext4)")
    p.add_argument("--align", choices=vm.ALIGNS, help="devdax's page alignment (default: 2M)")


def _vm_guest_options(p, timeout):
    p.add_argument("--capacity", type=_size("--capacity"), default=1 << 30,
                   help="the NVDIMM's size, a multiple of 2M (default: 1G)")
    p.add_argument("--memory", type=_size("--memory"), default=2 << 30,
                   help="the guest's RAM (default: 2G)")
    p.add_argument("--timeout", type=_seconds, default=timeout, metavar="S",
                   help=f"seconds each guest may take, boot to power-off (default: {timeout})")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show each guest's console as it comes")
    p.add_argument("--kernel", metavar="VERSION",
                   help="the guest's kernel, as /boot/vmlinuz-VERSION names it, with its "
                   "modules in /lib/modules (default: the newest there)")


def _run_options(r):
    from . import config
    from .backings import PAGE_SIZES
    from .core import CACHE_MODES, COLD_METHODS, DESIGNS, FOLIO_SIZES, GUP_PARTS, OPS, TABLE_PAGES
    from .extents import PATTERNS
    from .persist import PERSIST_MODES
    d = config.RunConfig()
    r.add_argument("--designs", type=_names("design", DESIGNS), default=d.designs,
                   help=f"comma list (default: {','.join(d.designs)})")
    r.add_argument("--ops", type=_names("op", OPS), default=d.ops,
                   help="read (gather) and/or write (scatter) (default: read,write)")
    r.add_argument("--patterns", type=_names("pattern", PATTERNS), default=d.patterns,
                   help="seq, rand and/or hot: every thread reads the same --hot-pages "
                   "pages (default: seq,rand)")
    r.add_argument("--seg-sizes", type=_sizes, default=d.seg_sizes,
                   help="comma list of segment sizes (default: 64,4K,64K)")
    r.add_argument("--size", type=_size("--size"), default=None,
                   help="backing size (default: 1G, capped by a device-DAX node's size); "
                   "K/M/G/T and KiB.. are powers of 2; KB.. (powers of 10) are refused, as "
                   "for every size that lives on page boundaries")
    r.add_argument("--io-size", type=_size("--io-size"), default=d.io_size,
                   help="bytes copied per repetition, per thread (default: 64M)")
    r.add_argument("--repeat", type=_count("--repeat", 1), default=d.repeat,
                   help="timed repetitions per row (default: 5)")
    r.add_argument("--phase-reps", type=_count("--phase-reps", 0), default=d.phase_reps,
                   help="instrumented repetitions per row, interleaved with the timed ones, "
                   "for the build/copy/release split, a median per phase (default: 3)")
    r.add_argument("--warmup", type=_count("--warmup", 0), default=d.warmup,
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
    r.add_argument("--gup-omit", type=_names("part of the grab", list(GUP_PARTS)), default=[],
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
    r.add_argument("--segs-per-io", type=_segs_per_io, default=d.segs_per_io,
                   metavar="K", help="cut each repetition into I/Os of K segments, each its own "
                   f"build -> copy -> release cycle (default: {d.segs_per_io}, a bio's "
                   "BIO_MAX_VECS); 'all' (or 0): one I/O of every segment of a repetition, "
                   "a vector no kernel path builds")
    r.add_argument("--threads", type=_count("--threads", 1), default=d.threads, metavar="N",
                   help="POSIX threads in the core, each on its own extents and buffer, all "
                   "through one descriptor table; GB/s is then aggregate (default: 1)")
    r.add_argument("--pin", type=_cpus, nargs="?", const=[], default=None, metavar="CPUS",
                   help="pin thread i to the i-th CPU of CPUS (a list like 0,2 or 0-3), or of "
                   "the CPUs this process may use when CPUS is left out")
    r.add_argument("--hot-pages", type=_count("--hot-pages", 1), default=d.hot_pages,
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
    r.add_argument("--peers", type=_names("peer", config.PEER_NAMES), default=[],
                   help="libpmem: write rows through PMDK's pmem_memcpy_persist and "
                   "pmem_memcpy_nodrain + pmem_drain (loaded at run time); fio: rows from "
                   "fio's mmap engine on the same backing (if fio is installed)")
    r.add_argument("--json", metavar="PATH", help="result file (default: runs/pagetax-run-TIME.json)")
    r.add_argument("--force", action="store_true", help="replace an existing --json file")
    r.add_argument("--seed", type=_count("--seed", 0), default=d.seed, help="extent seed (default: 1)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--plot", action="store_true",
                   help="also draw the plots, next to the result file (needs matplotlib)")


def _config(args):
    from . import config
    size = args.size
    if size is None:  # a device cannot grow: the default is capped by it
        from .backings import default_size
        size, note = default_size(args.backing, config.RunConfig.size, args.overwrite)
        if note:
            _say(f"pagetax: {note}")
    return config.RunConfig(designs=args.designs, ops=args.ops, patterns=args.patterns,
                            seg_sizes=args.seg_sizes, size=size, io_size=args.io_size,
                            repeat=args.repeat, warmup=args.warmup, cache=args.cache,
                            backing=args.backing, overwrite=args.overwrite, seed=args.seed,
                            page_size=args.page_size or _default_page_size(),
                            page_size_asked=args.page_size is not None, persist=args.persist,
                            persist_each=args.persist_each, peers=args.peers,
                            segs_per_io=args.segs_per_io, threads=args.threads, pin=args.pin,
                            hot_pages=args.hot_pages, phase_reps=args.phase_reps,
                            cold_method=args.cold_method, table_pages=args.table_pages,
                            folio_size=args.folio_size, gup_omit=args.gup_omit,
                            gup_devmap=args.gup_devmap)


def _default_page_size():
    from . import config
    return config.RunConfig().page_size


def cmd_run(args, out, err):
    from . import concurrency
    from . import rows as _rows
    from . import runner
    cfg = _config(args)
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
            except (KeyboardInterrupt, _Terminated) as e:
                status = 130 if isinstance(e, KeyboardInterrupt) else 143
            except Interrupted:
                status = 130
            concurrency.record(doc, at_start, measuring.others())
    if status:
        if "schema" not in doc or not results:
            # a file with no rows is one plot, report and compare can only refuse
            _say("pagetax: interrupted before any row finished; no result file written")
            return status
        doc["partial"] = True
        doc["interrupted_by"] = "SIGINT" if status == 130 else "SIGTERM"
        _rows.add_ratios(results)
        if results:
            report.print_table(doc, out)
        path = report.write_json(doc, args.json or report.default_path(), force=args.force)
        _say(f"pagetax: interrupted after {len(results)} rows; partial results: {path}")
        return status
    report.print_table(doc, out)
    for warning in doc.get("warnings", []):
        _say(f"pagetax: warning: {warning}")
    path = report.write_json(doc, args.json or report.default_path(), force=args.force)
    _say(f"results: {path}")
    _say(f"next: pagetax report {path}   (one page: the table, the pictures, the metadata); "
         f"pagetax compare A.json {path}   (did it get slower?)")
    if args.plot:
        from . import plot
        for name, p in plot.plot(doc, os.path.splitext(path)[0] + "-plots").items():
            _say(f"{name}: {p}")
    return status


def cmd_metadata(args, out, err):
    from . import metadata as _metadata
    capacities = args.capacity or [_metadata.SEED_CAPACITY]
    if args.json:
        report.check_json_path(args.json, args.force)
    doc = {"schema": "pagetax-metadata/1", "io_bytes": 1 << 20,
           "byte_convention": "GB = 1e9; G and GiB = 2^30", "capacities": []}
    for cap in capacities:
        rows = _metadata.table(cap, folio_sizes=args.folio_sizes)
        report.print_fitted(out, lambda leave_out: report.metadata_table(cap, rows, leave_out),
                            report.METADATA_TABLE_DROP)
        note = _metadata.seed_note(cap)
        out.print(note, markup=False, highlight=False)
        out.print()
        doc["capacities"].append({"capacity_bytes": cap, "designs": rows, "note": note})
    if args.json:
        _say(f"metadata: {report.write_json(doc, args.json, force=args.force)}")
    return 0


def cmd_kernel(args, out, err):
    from . import kernel
    from .kernel import table
    if args.json:
        report.check_json_path(args.json, args.force)
    from . import concurrency
    with concurrency.Measuring() as measuring:
        at_start = measuring.others()
        doc = kernel.run(paths=args.paths, buffers=args.buffers, memmap=args.memmap,
                         rounds=args.rounds, calls=args.calls, dax=args.dax,
                         overwrite=args.overwrite, trace=args.trace, model=args.model,
                         on_step=lambda what: _say(f"pagetax: kernel: {what} done"))
        concurrency.record(doc, at_start, measuring.others())
    table.print_all(doc, out, report.print_wide)
    for what, why in doc["refused"].items():
        _say(f"pagetax: kernel: {what} refused: {why}")
    for e in doc["kernel"]:
        for what, why in e["refused"].items():
            _say(f"pagetax: kernel: {what} on {e['buffer']} refused: {why}")
    for warning in doc["warnings"]:
        _say(f"pagetax: warning: {warning}")
    if args.json:
        _say(f"kernel: {report.write_json(doc, args.json, force=args.force)}")
    return 0


def _vm_guest(args, accel, ns, argv, **kw):
    """One guest, and one line of how long each of its phases took."""
    from . import vm
    _say(f"pagetax: vm: booting a guest for {ns.label} ({format_size(args.capacity)} NVDIMM)")
    result = vm.run(ns, argv, capacity=args.capacity, memory=args.memory, timeout=args.timeout,
                    accel=accel, kernel=args.kernel, **kw,
                    on_console=(lambda line: _say(f"console: {line}")) if args.verbose else None)
    if result.accelerator != accel[0]:
        _say(f"pagetax: vm: {result.accelerator_reason}")
    phases = ", ".join(f"{phase} {s:.1f}" for phase, s in result.phases)
    _say(f"pagetax: vm: {ns.label} under {result.accelerator}, seconds: {phases}; "
         f"{sum(s for _, s in result.phases):.1f} in all")
    return result


def _echo_guest(result, host_paths=False):
    """The guest command's output: stdout as it is, stderr line by line,
    marked.  With host_paths, the lines naming a guest-side result file are
    left out: the file comes back, and the host's line names it."""
    from . import vm_guest
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    for line in result.stderr.splitlines():
        if host_paths and vm_guest.SHARE in line and line.startswith(("results: ", "next: ")):
            continue
        _say(f"guest: {line}")


def cmd_vm(args, out, err):
    from . import vm
    host = vm.check_tools(args.kernel)  # before any guest boots: a missing tool is one line
    vm.check_sizes(args.capacity, args.memory)
    accel = vm.choose_accelerator()
    _say(f"pagetax: vm: QEMU {vm.qemu_version(host.qemu)}, kernel {host.kernel_version}, "
         f"{accel[0]}: {accel[1]}")
    return {"run": _vm_run, "test": _vm_test, "kernel": _vm_kernel, "exec": _vm_exec,
            "memmap": _vm_memmap}[args.vm_command](args, out, accel)


def _vm_exec(args, out, accel):
    from . import vm
    ns = vm.Namespace(args.mode, args.map, fs=args.fs, align=args.align)
    outdir = args.output or f"pagetax-vm-exec-{time.strftime('%Y%m%d-%H%M%S')}"
    if os.path.exists(outdir) and (not os.path.isdir(outdir) or os.listdir(outdir)):
        raise PagetaxError(f"--output {outdir} exists and is not an empty folder")
    os.makedirs(outdir, exist_ok=True)
    result = _vm_guest(args, accel, ns, list(args.command_argv), output_dir=outdir)
    _echo_guest(result)
    _say(f"pagetax: vm exec: {ns.label}: exited {result.status}; its files: "
         f"{os.path.abspath(outdir)} ({len(result.files)})")
    return result.status


def _vm_kernel(args, out, accel):
    from . import vm, vm_guest
    from .kernel import table
    if args.json:
        report.check_json_path(args.json, args.force)
    for arg in args.kernel_args:
        if arg.split("=", 1)[0] in ("--dax", "--json", "--overwrite"):
            raise PagetaxError(f"vm kernel sets {arg.split('=', 1)[0]} itself: leave it out")
    extra = args.kernel_args or (["--rounds", "5", "--calls", "5"] if accel[0] == "tcg" else [])
    docs, status = [], 0
    for ns in vm.KERNEL_NAMESPACES:
        dax = [f"dax:{vm_guest.DAX_DIR}/pagetax-kernel.dat"] if ns.mode == "fsdax" else \
            [f"devdax:{vm_guest.DEVDAX}", "--overwrite"]
        argv = [sys.executable, "-m", "pagetax", "kernel", "--buffers", "4K,THP", "--dax", *dax,
                "--trace", "--json", f"{vm_guest.OUT_DIR}/kernel.json", *extra]
        with tempfile.TemporaryDirectory(prefix="pagetax-vm-files-") as files:
            result = _vm_guest(args, accel, ns, argv, output_dir=files)
            for line in result.stderr.splitlines():
                _say(f"guest: {line}")
            made = os.path.join(files, "kernel.json")
            if os.path.exists(made):
                with open(made) as f:
                    doc = json.load(f)
                doc["guest"] = result.labels()
                table.print_all(doc, out, report.print_wide)
                docs.append(doc)
        _say(f"pagetax: vm kernel: {ns.label}: pagetax kernel exited {result.status}")
        status = status or result.status
    if args.json and docs:
        path = report.write_json({"schema": "pagetax-vm-kernel/1", "runs": docs}, args.json,
                                 force=args.force)
        _say(f"kernel: {path}")
    return status


def _vm_run(args, out, accel):
    from . import vm, vm_guest
    ns = vm.Namespace(args.mode, args.map, fs=args.fs, align=args.align)
    for arg in args.run_args:
        if arg.split("=", 1)[0] in ("--backing", "--json"):
            raise PagetaxError(f"vm run sets {arg.split('=', 1)[0]} itself: leave it out")
    path = report.check_json_path(args.json or report.default_path(), args.force)
    backing = [f"dax:{vm_guest.DAX_DIR}/pagetax.dat"] if ns.mode == "fsdax" else \
        [f"devdax:{vm_guest.DEVDAX}", "--overwrite"]
    argv = [sys.executable, "-m", "pagetax", "run", "--backing", *backing,
            "--json", f"{vm_guest.OUT_DIR}/run.json", "--no-progress", *args.run_args]
    with tempfile.TemporaryDirectory(prefix="pagetax-vm-files-") as files:
        result = _vm_guest(args, accel, ns, argv, output_dir=files)
        _echo_guest(result, host_paths=True)
        made = os.path.join(files, "run.json")
        if os.path.exists(made):  # also after a failure, when the run wrote partial results
            with open(made) as f:
                doc = json.load(f)
            doc["guest"] = result.labels()
            _say(f"results: {report.write_json(doc, path, force=args.force)}")
    return result.status


def _vm_test(args, out, accel):
    from . import vm
    # -rs: why each test skipped (a devdax guest skips the fsdax tests by design)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", vm.dax_tests(),
            *args.pytest_args]
    status = 0
    for ns in args.namespace or vm.TEST_NAMESPACES:
        result = _vm_guest(args, accel, ns, argv)
        _echo_guest(result)
        _say(f"pagetax: vm test: {ns.label}: pytest exited {result.status}")
        status = status or result.status
    return status


def _vm_memmap(args, out, accel):
    from rich import box
    from rich.table import Table

    from . import vm
    if args.json:
        report.check_json_path(args.json, args.force)
    rows = [vm.memmap_figures(_vm_guest(args, accel, ns, [], memmap=True))
            for ns in vm.MEMMAP_NAMESPACES]
    mib = 1 << 20
    t = Table(title=f"struct pages for a {format_size(args.capacity)} NVDIMM region, MiB: "
              "measured in a fresh guest per mode, and pagetax's model",
              caption="DRAM: the drop in free pages (buddy and per-CPU lists, caches dropped) "
              "across ndctl create-namespace; device: region size - namespace size (map=mem "
              "too gives up 2 MiB: the 8 KiB info block, padded to the 2 MiB alignment); "
              "model: pagetax/metadata.py at the region's capacity",
              header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("create-namespace", "namespace bytes", "DRAM", "device", "model",
                 "model DRAM", "model dev", "DRAM - model"):
        t.add_column(name, justify="left" if name in ("create-namespace", "model")
                     else "right", no_wrap=True)
    for r in rows:
        t.add_row(r["ndctl"], f"{r['namespace_bytes']:,}", f"{r['dram_bytes'] / mib:.2f}",
                  f"{r['device_bytes'] / mib:.2f}", r["model"],
                  f"{r['model_dram_bytes'] / mib:.2f}", f"{r['model_device_bytes'] / mib:.2f}",
                  f"{(r['dram_bytes'] - r['model_dram_bytes']) / mib:+.2f}")
    report.print_wide(out, t, 125)
    report.print_memmap_notes(out, rows)
    if args.json:
        doc = {"schema": "pagetax-vm-memmap/1", "capacity_bytes": args.capacity, "rows": rows}
        _say(f"memmap: {report.write_json(doc, args.json, force=args.force)}")
    return 0


def _glue_negative_values(argv):
    """`--size -5G` would read -5G as an option; glue it to its option so
    that the size parser can say what is wrong with it."""
    out = []
    for tok in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and \
                len(tok) > 1 and tok[0] == "-" and (tok[1].isdigit() or tok[1] == "."):
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def _output_dir(args, suffix):
    """-o, or beside the first results file (RESULTS-report/, RESULTS-plots/);
    an existing folder with files in it only with --overwrite."""
    path = args.output or os.path.splitext(args.results[0])[0] + suffix
    if os.path.isdir(path) and os.listdir(path) and not args.overwrite:
        raise PagetaxError(f"{path} exists and holds files; pass --overwrite to replace them "
                           "(or -o to write elsewhere)")
    if os.path.exists(path) and not os.path.isdir(path):
        raise PagetaxError(f"{path} exists and is not a folder")
    return path


def cmd_plot(args, out, err):
    from . import plot, report_page
    run, memmaps, kernel = report_page.load_files(args.results)
    if run is None:
        raise PagetaxError("plot needs a run's result file; memmap and kernel files only add "
                           "to it")
    outdir = _output_dir(args, "-plots")
    for name, path in plot.plot(run, outdir, args.format, memmaps, kernel=kernel).items():
        _say(f"{name}: {path}")
    return 0


def cmd_report(args, out, err):
    from . import report_page
    run, memmaps, kernel = report_page.load_files(args.results)
    outdir = _output_dir(args, "-report")
    _say(f"report: {report_page.write(run, outdir, memmaps, kernel=kernel)}")
    return 0


def cmd_publish(args, out, err):
    from . import publish
    _say(f"published: {publish.publish(args.config, args.html_dir, say=_say)}")
    return 0


def _change_text(r):
    """'12.3 % slower (-14.1 to -9.8 %)': a row's change in words, with its
    interval; 'not significant' when the interval reaches into the band."""
    word = r["verdict"] or ("slower" if r["change"] < 1 else "faster")
    text = f"{abs(r['change_pct']):.1f} % {word}"
    if r["ci_high"] == float("inf"):
        return f"{text}, too few repetitions for an interval"
    ci = f"{100 * (r['ci_low'] - 1):+.1f} to {100 * (r['ci_high'] - 1):+.1f} %"
    return f"{text} ({ci})" if r["verdict"] else f"{text}, not significant ({ci})"


def cmd_compare(args, out, err):
    from rich import box
    from rich.table import Table

    from . import compare
    if args.fail_above is not None and args.fail_above < 0:
        raise PagetaxError(f"--fail-above {args.fail_above} must not be negative")
    if args.min_change < 0:
        raise PagetaxError(f"--min-change {args.min_change} must not be negative")
    if args.files and (args.a_files or args.b_files):
        raise PagetaxError("give A.json B.json, or -a and -b, not both")
    if args.files:
        if len(args.files) != 2:
            raise PagetaxError(f"give two files, A.json and B.json (got {len(args.files)}), "
                               "or several runs of each with -a and -b")
        a_files, b_files = [args.files[0]], [args.files[1]]
    elif args.a_files and args.b_files:
        a_files, b_files = args.a_files, args.b_files
    else:
        raise PagetaxError("give A.json B.json, or runs of each with -a A1.json ... -b B1.json ...")
    a, b = [compare.load(f) for f in a_files], [compare.load(f) for f in b_files]
    result = compare.compare(a, b, min_change=args.min_change / 100, fail_above=args.fail_above,
                             allow_drift=args.allow_drift, ignore_config=args.ignore_config)
    for m in result.mismatches:
        _say(f"pagetax: warning: A and B did not measure alike: {m}")
    name_a, name_b = " ".join(a_files), " ".join(b_files)
    if not result.rows:
        ta, tb = (d[0]["config"].get("threads", 1) for d in (a, b))
        raise PagetaxError(f"{name_a} and {name_b} have no rows in common"
                           + (f" ({ta} against {tb} threads: rows match only at the same "
                              "thread count)" if ta != tb else ""))
    bases = {r["basis"] for r in result.rows}
    def compare_table(leave_out):
        t = Table(title=f"B = {name_b}\nagainst A = {name_a}", box=box.SIMPLE_HEAD,
                  pad_edge=False,
                  caption="change: B's GB/s over A's, each repetition divided by the drift "
                  "reference's in its round where both files have one (else raw), as the median "
                  "of every pairwise ratio (Hodges-Lehmann) with its distribution-free interval; "
                  "slower or faster only when the whole interval lies beyond "
                  f"+-{args.min_change:g} %")
        names = ("design", "op", "pattern", "seg", "threads", "A GB/s", "B GB/s", "change",
                 "verdict")
        keep = [i for i, name in enumerate(names) if name not in leave_out]
        for i in keep:
            t.add_column(names[i], justify="left" if names[i] in ("design", "op", "pattern",
                                                                  "verdict") else "right",
                         no_wrap=True)
        for r in result.rows:
            design, op, pattern, seg, threads = r["key"]
            verdict = ("REGRESSION: " if r["regression"] else "") + _change_text(r)
            cells = (design, op, pattern, format_size(seg), str(threads), f"{r['a_gbps']:.2f}",
                     f"{r['b_gbps']:.2f}", f"{r['change']:.3f}", verdict)
            t.add_row(*(cells[i] for i in keep))
        return t
    report.print_fitted(out, compare_table, ("threads", "A GB/s", "B GB/s", "change"))
    for c, info in result.cells.items():
        op, pattern, seg, threads = c
        where = f"{op} {pattern} {format_size(seg)} ({threads} thread{'s' if threads > 1 else ''})"
        ref = info["reference"]
        if ref and ref["verdict"]:
            _say(f"pagetax: {where}: the machine moved: the drift reference ran "
                 f"{100 * abs(ref['change'] - 1):.0f} % {ref['verdict']} in B; the rows are "
                 "judged against it")
        if c in result.undecided:
            _say(f"pagetax: {where}: every row moved {100 * (info['moved'] - 1):+.0f} % and "
                 "neither file has a drift reference: machine drift and a change to pagetax "
                 "look alike here, so the gate fails (--allow-drift judges each row against "
                 "its cell's move instead)")
    if _machines_differ(a[0], b[0]):
        _say(f"pagetax: the two files come from different machines ({_machine_name(a[0])} and "
             f"{_machine_name(b[0])}): ratios compare the machines as much as the code")
    if "raw" in bases and "reference" not in bases:
        _say("pagetax: no drift reference in these files (older files, or a backing that can "
             "fault): rows are judged on raw GB/s")
    if result.unmatched:
        _say(f"pagetax: {result.unmatched} rows are in only one of the two files")
    if len(a_files) == 1 and len(b_files) == 1:
        _say("pagetax: one run a side: what differs between runs of the same code (where "
             "each run's tables and backing land in memory) is in no interval here; for a "
             "gate, pool three runs a side (-a, -b), or raise --fail-above (README)")
    n = result.counts()
    reps = sorted({r["reps"] for r in result.rows})
    conf = min(r["confidence"] for r in result.rows)
    _say(f"pagetax: {n['rows']} rows: {n['slower']} slower, {n['faster']} faster, "
         f"{n['unchanged']} unchanged beyond +-{args.min_change:g} % "
         f"({'/'.join(f'{x}x{y}' for x, y in reps)} repetitions; "
         + (f"intervals at {100 * conf:.1f} % or more)" if conf else
            "too few repetitions for any interval: nothing can be significant)"))
    if result.regressions:
        _say(f"pagetax: {len(result.regressions)} rows got slower"
             + (f" by more than {args.fail_above:g} %" if args.fail_above is not None else ""))
    return 1 if result.failed else 0


def _machine_name(doc):
    m = doc.get("machine", {})
    return f"{m.get('cpu_model', '?')}, {m.get('hostname', '?')}"


def _machines_differ(a, b):
    ma, mb = a.get("machine", {}), b.get("machine", {})
    return any(ma.get(k) != mb.get(k) for k in ("cpu_model", "hostname", "llc_bytes", "cores"))


def main(argv=None):
    argv = _glue_negative_values(sys.argv[1:] if argv is None else argv)
    if not argv:  # a newcomer's first try: the commands, not an error
        build_parser(command=None).print_help()
        return 0
    command = build_parser(command=None).parse_known_args(argv)[0].command
    args = build_parser(command).parse_args(argv)

    def on_term(signum, frame):
        raise _Terminated()
    signal.signal(signal.SIGTERM, on_term)
    out = Console()
    err = Console(stderr=True)
    try:
        return {"run": cmd_run, "metadata": cmd_metadata, "compare": cmd_compare,
                "plot": cmd_plot, "report": cmd_report, "publish": cmd_publish, "kernel": cmd_kernel,
                "vm": cmd_vm}[args.command](args, out, err)
    except PagetaxError as e:
        _say(f"pagetax: error: {e}")
        return 1
    except KeyboardInterrupt:
        _say("pagetax: interrupted")
        return 130
    except _Terminated:
        _say("pagetax: terminated")
        return 143


if __name__ == "__main__":
    sys.exit(main())

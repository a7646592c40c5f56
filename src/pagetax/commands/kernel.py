"""`pagetax kernel`: what the running kernel pays per page, beside the model
(the measurements are the pagetax.kernel package)."""
from .. import report
from .options import count, json_output, names, say

NAME = "kernel"


def add_parser(sub, detailed):
    k = sub.add_parser("kernel", help="what the running kernel pays per page, beside the model",
                       description="Time the running kernel's own per-page paths (a reference "
                       "taken and dropped through vmsplice + splice, the page-table walk, "
                       "O_DIRECT with and without a registered buffer), on 4 KiB pages, a 2 MiB "
                       "THP and a 2 MiB hugetlb page; the model's page and folio designs over "
                       "the same pages; and the memmap with HugeTLB vmemmap optimization off "
                       "and on.  io_uring and the memmap need root; every setting changed goes "
                       "back on exit.")
    add_options(k)

    return k


def add_options(k):
    from .. import kernel
    k.add_argument("--paths", type=names("path", kernel.PATHS), default=list(kernel.PATHS),
                   help=f"comma list (default: {','.join(kernel.PATHS)})")
    k.add_argument("--buffers", type=names("buffer", kernel.BUFFERS),
                   default=list(kernel.BUFFERS),
                   help=f"comma list (default: {','.join(kernel.BUFFERS)})")
    k.add_argument("--rounds", type=count("--rounds", 3), default=31,
                   help="sweeps over pages per call; the figure is the median round's slope "
                   "(default: 31)")
    k.add_argument("--calls", type=count("--calls", 1), default=31,
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
    json_output(k)


def run(args, out, err):
    from .. import kernel
    from ..kernel import table
    if args.json:
        report.check_json_path(args.json, args.force)
    from .. import concurrency
    with concurrency.Measuring() as measuring:
        at_start = measuring.others()
        doc = kernel.run(paths=args.paths, buffers=args.buffers, memmap=args.memmap,
                         rounds=args.rounds, calls=args.calls, dax=args.dax,
                         overwrite=args.overwrite, trace=args.trace, model=args.model,
                         on_step=lambda what: say(f"pagetax: kernel: {what} done"))
        concurrency.record(doc, at_start, measuring.others())
    table.print_all(doc, out, report.print_wide)
    for what, why in doc["refused"].items():
        say(f"pagetax: kernel: {what} refused: {why}")
    for e in doc["kernel"]:
        for what, why in e["refused"].items():
            say(f"pagetax: kernel: {what} on {e['buffer']} refused: {why}")
    for warning in doc["warnings"]:
        say(f"pagetax: warning: {warning}")
    if args.json:
        say(f"kernel: {report.write_json(doc, args.json, force=args.force)}")
    return 0

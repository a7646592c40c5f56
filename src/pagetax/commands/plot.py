"""`pagetax plot`: a run's pictures."""
from ..errors import PagetaxError
from .options import output_dir, results_and_output, say

NAME = "plot"


def add_parser(sub, detailed):
    pl = sub.add_parser("plot", help="draw a run's pictures: x vec, phases, metadata, latency",
                        description="Each design's GB/s over vec's against segment size; "
                        "build/copy/release per design; metadata per capacity (log scale, "
                        "with the kernel's measured struct pages from `pagetax vm memmap "
                        "--json` files); raw GB/s and ns per segment; with --segs-per-io, "
                        "the per-I/O latency CDF.")
    results_and_output(pl)
    pl.add_argument("--format", choices=("png", "svg"), default="png")

    return pl


def run(args, out, err):
    from .. import plot, report_page
    run, memmaps, kernel = report_page.load(args.results)
    if run is None:
        raise PagetaxError("plot needs a run's result file; memmap and kernel files only add "
                           "to it")
    outdir = output_dir(args, "-plots")
    for name, path in plot.plot(run, outdir, args.format, memmaps, kernel=kernel).items():
        say(f"{name}: {path}")
    return 0

"""`pagetax report`: one static HTML page for a run, a kernel file, memmap files."""
from .options import output_dir, results_and_output, say

NAME = "report"


def add_parser(sub, detailed):
    rp = sub.add_parser("report", help="write one static HTML page for a run",
                        description="Table, plots, metadata and machine on one page that works "
                        "opened from disk.  A run made in a `pagetax vm` guest is marked as "
                        "such; `pagetax vm memmap --json` files add the kernel's own struct "
                        "pages, measured in a guest.")
    results_and_output(rp)

    return rp


def run(args, out, err):
    from .. import report_page
    run, memmaps, kernel = report_page.load(args.results)
    outdir = output_dir(args, "-report")
    say(f"report: {report_page.write(run, outdir, memmaps, kernel=kernel)}")
    return 0

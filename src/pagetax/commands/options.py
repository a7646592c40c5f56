"""What several commands share: the parser class, the option types that
turn a mistake into one line, one-line messages, SIGTERM as an exception,
and the files-in, folder-out options of plot and report."""
import argparse
import os
import sys

from ..errors import PagetaxError
from ..sizes import parse_size


def say(line):
    """One unwrapped line on stderr, for messages scripts and tests read."""
    print(line, file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line, not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so cleanup runs as for Ctrl-C."""


def size(what, decimal=False):
    """A size option; KB..TB only where decimal sizes make sense (a DIMM's
    capacity), else refused with a hint (sizes.parse_size)."""
    def parse(text):
        try:
            return parse_size(text, what, decimal)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def names(kind, allowed):
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


def sizes(text):
    try:
        items = [parse_size(x, "segment size", decimal=False) for x in text.split(",")
                 if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not items:
        raise argparse.ArgumentTypeError("no segment sizes given")
    return items


def count(what, minimum):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a whole number") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum} (got {v})")
        return v
    return parse


def segs_per_io(text):
    """A count of segments per I/O, or 'all' (0): the whole repetition."""
    return 0 if text.strip().lower() == "all" else count("--segs-per-io", 0)(text)


def cpus(text):
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


def seconds(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return v


def glue_negative_values(argv):
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


def json_output(p, what="also write the figures as JSON"):
    """--json PATH and --force, as every command that writes a result file takes them."""
    p.add_argument("--json", metavar="PATH", help=what)
    p.add_argument("--force", action="store_true", help="replace an existing --json file")


def results_and_output(p):
    """plot's and report's inputs (report_page.load reads them) and output."""
    p.add_argument("results", nargs="+", metavar="RESULTS.json",
                   help="a run's result file, any `pagetax vm memmap --json` files and at most "
                   "one `pagetax kernel --json` file, in any order (one run)")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="where the files go (default: beside the first file, named after it: "
                   "RESULTS-report/ or RESULTS-plots/)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an existing, non-empty output folder")


def output_dir(args, suffix):
    """-o, or beside the first results file (RESULTS-report/, RESULTS-plots/);
    an existing folder with files in it only with --overwrite."""
    path = args.output or os.path.splitext(args.results[0])[0] + suffix
    if os.path.isdir(path) and os.listdir(path) and not args.overwrite:
        raise PagetaxError(f"{path} exists and holds files; pass --overwrite to replace them "
                           "(or -o to write elsewhere)")
    if os.path.exists(path) and not os.path.isdir(path):
        raise PagetaxError(f"{path} exists and is not a folder")
    return path


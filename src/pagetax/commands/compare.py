"""`pagetax compare`: did B get slower than A, row by row."""
from .. import report
from ..errors import PagetaxError
from ..sizes import format_size
from .options import say

NAME = "compare"


def add_parser(sub, detailed):
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

    return c


def change_text(r):
    """'12.3 % slower (-14.1 to -9.8 %)': a row's change in words, with its
    interval; 'not significant' when the interval reaches into the band."""
    word = r["verdict"] or ("slower" if r["change"] < 1 else "faster")
    text = f"{abs(r['change_pct']):.1f} % {word}"
    if r["ci_high"] == float("inf"):
        return f"{text}, too few repetitions for an interval"
    ci = f"{100 * (r['ci_low'] - 1):+.1f} to {100 * (r['ci_high'] - 1):+.1f} %"
    return f"{text} ({ci})" if r["verdict"] else f"{text}, not significant ({ci})"


def machine_name(doc):
    m = doc.get("machine", {})
    return f"{m.get('cpu_model', '?')}, {m.get('hostname', '?')}"


def machines_differ(a, b):
    ma, mb = a.get("machine", {}), b.get("machine", {})
    return any(ma.get(k) != mb.get(k) for k in ("cpu_model", "hostname", "llc_bytes", "cores"))


def run(args, out, err):
    from rich import box
    from rich.table import Table

    from .. import compare
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
        say(f"pagetax: warning: A and B did not measure alike: {m}")
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
            verdict = ("REGRESSION: " if r["regression"] else "") + change_text(r)
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
            say(f"pagetax: {where}: the machine moved: the drift reference ran "
                 f"{100 * abs(ref['change'] - 1):.0f} % {ref['verdict']} in B; the rows are "
                 "judged against it")
        if c in result.undecided:
            say(f"pagetax: {where}: every row moved {100 * (info['moved'] - 1):+.0f} % and "
                 "neither file has a drift reference: machine drift and a change to pagetax "
                 "look alike here, so the gate fails (--allow-drift judges each row against "
                 "its cell's move instead)")
    if machines_differ(a[0], b[0]):
        say(f"pagetax: the two files come from different machines ({machine_name(a[0])} and "
             f"{machine_name(b[0])}): ratios compare the machines as much as the code")
    if "raw" in bases and "reference" not in bases:
        say("pagetax: no drift reference in these files (older files, or a backing that can "
             "fault): rows are judged on raw GB/s")
    if result.unmatched:
        say(f"pagetax: {result.unmatched} rows are in only one of the two files")
    if len(a_files) == 1 and len(b_files) == 1:
        say("pagetax: one run a side: what differs between runs of the same code (where "
             "each run's tables and backing land in memory) is in no interval here; for a "
             "gate, pool three runs a side (-a, -b), or raise --fail-above (README)")
    n = result.counts()
    reps = sorted({r["reps"] for r in result.rows})
    conf = min(r["confidence"] for r in result.rows)
    say(f"pagetax: {n['rows']} rows: {n['slower']} slower, {n['faster']} faster, "
         f"{n['unchanged']} unchanged beyond +-{args.min_change:g} % "
         f"({'/'.join(f'{x}x{y}' for x, y in reps)} repetitions; "
         + (f"intervals at {100 * conf:.1f} % or more)" if conf else
            "too few repetitions for any interval: nothing can be significant)"))
    if result.regressions:
        say(f"pagetax: {len(result.regressions)} rows got slower"
             + (f" by more than {args.fail_above:g} %" if args.fail_above is not None else ""))
    return 1 if result.failed else 0

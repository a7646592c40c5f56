"""`pagetax metadata`: every design's static bytes per capacity and per I/O."""
from .. import metadata as _metadata_model  # the model alone: no C core
from .. import report
from .options import json_output, names, say, size

NAME = "metadata"


def add_parser(sub, detailed):
    m = sub.add_parser("metadata", help="what each design keeps per capacity and per I/O",
                       description="The metadata model of every design, and of the vmemmap "
                       "reduction schemes, at the capacities given.")
    m.add_argument("--capacity", type=size("--capacity", decimal=True), action="append",
                   metavar="SIZE",
                   help="capacity, repeatable (default: 400GB, the 2015 thread's DIMM); "
                   "G/GiB are powers of 2, GB of 10")
    folio_sizes = list(_metadata_model.FOLIO_SIZES)
    m.add_argument("--folio-sizes", type=names("folio size", folio_sizes), default=["4K", "2M"],
                   help="the folio designs' folio sizes to show, comma-separated, of "
                   f"{', '.join(folio_sizes)} (default: 4K,2M)")
    json_output(m)

    return m


def run(args, out, err):
    from .. import metadata as _metadata
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
        say(f"metadata: {report.write_json(doc, args.json, force=args.force)}")
    return 0

#!/usr/bin/env python3
"""What each part of the kernel's grab adds to a counting design, per page.

    python bench/tools/grab_costs.py [--repeat 7] [--designs page,folio]

Runs `pagetax run` (random reads, 64 B and 4 KiB segments, cold, the
default I/O shape) once with the whole grab (csrc/pt_gup.h) and once with
each part left out (--gup-omit), at 4 KiB and at 2 MiB folios, and prints
build + release per segment (the phase split's medians) and what leaving
the part out saved.  The variants alternate, so drift spreads over all of
them; run it on a quiet machine and read the spread column.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

PARTS = ("pin", "try-add", "recheck", "referenced")
VARIANTS = [("kernel", [])] + [(f"-{p}", [p]) for p in PARTS] + [("-all", list(PARTS))]


def run(args, omit, folio, out):
    argv = [sys.executable, "-m", "pagetax", "run", "--designs", args.designs, "--ops", "read",
            "--patterns", "rand", "--seg-sizes", "64,4K", "--repeat", str(args.repeat),
            "--phase-reps", str(args.repeat), "--folio-size", folio, "--no-progress",
            "--json", out, "--force"]
    if omit:
        argv += ["--gup-omit", ",".join(omit)]
    subprocess.run(argv, check=True, capture_output=True, text=True, cwd=args.cwd)
    with open(out) as f:
        doc = json.load(f)
    return {(r["design"], r["seg_bytes"]): r for r in doc["results"]
            if r["design"] in args.designs.split(",")}


def build_release(row):
    """ns per segment of build + release, from the instrumented repetitions."""
    ph = row["phase_ns"]
    return (ph["build"] + ph["release"]) / (row["io_bytes"] / row["seg_bytes"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--designs", default="page,folio")
    p.add_argument("--rounds", type=int, default=2, help="passes over all variants")
    args = p.parse_args()
    args.cwd = tempfile.mkdtemp(prefix="pagetax-grab-")   # away from a clone's pagetax/
    samples = {}
    for _ in range(args.rounds):
        for folio in ("4K", "2M"):
            for name, omit in VARIANTS:
                rows = run(args, omit, folio, os.path.join(args.cwd, "r.json"))
                for (design, seg), row in rows.items():
                    if design != "folio" and folio == "2M":
                        continue
                    key = (design, folio, seg, name)
                    samples.setdefault(key, []).append(build_release(row))
    print(f"{'design':8} {'folio':5} {'seg':>5} {'variant':12} {'build+release ns/seg':>21} "
          f"{'saved':>7}")
    for (design, folio, seg, name), vals in sorted(samples.items()):
        whole = min(samples[(design, folio, seg, "kernel")])
        mine = min(vals)
        spread = max(vals) - min(vals)
        print(f"{design:8} {folio:5} {seg:5d} {name:12} {mine:14.1f} +- {spread:4.1f} "
              f"{whole - mine:7.1f}")


if __name__ == "__main__":
    main()

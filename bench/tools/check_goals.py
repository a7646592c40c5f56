#!/usr/bin/env python3
"""Check the core's performance goals on this machine and print the figures.

    python bench/tools/check_goals.py [--reps 11] [--strict] [--only 1,2]

Each goal prints the criterion it applies, then its figures, then one of
met, MISSED, SKIPPED (with the reason) or context (figures with no goal).
Exit status 1 if a goal is MISSED; with --strict, also if one is SKIPPED.

 1. Sequential 64 KiB read: `vec` >= 0.95x the `memcpy` roofline (the same
    bytes in the same segments, contiguous, through the same loops).
 2. Random 64 B read, 2 GiB tmpfs backing, cold, I/Os of 256 segments:
    `vec` ns/segment within 1.15x of an independent hand-written loop
    (random_lines.c) cut into the same I/Os, at its best prefetch distance,
    both made cold the same way (flush, then TLB scrub).
 3. A 64 MiB repetition: the Python call adds at most 2 % over the C call.
 4. Random 256 B and 4 KiB writes: `vec --persist auto` >= 0.9x libpmem.
 5. Context: `vec` against fio's mmap engine, random reads (fio pays
    per-I/O engine costs that pagetax does not; no goal).
 6. Two threads pinned to two cores, sequential 64 KiB and 4 KiB reads:
    `vec` >= 1.6x one thread, or >= 0.95x the 2-thread memcpy roofline.
 7. Cold is cold: the mean load of a dependent chain through 64 data
    lines as a cold repetition starts is >= 5x the same chain warm.
 8. Clock-free totals: at --segs-per-io 1 (random 64 B, warm) `vec`'s
    release phase reads about 0 (within a tenth of one phase mark); whether
    the phases add up to the total is printed (the marks of an instrumented
    repetition also stop the CPU overlapping one I/O with the next).
 9. The default `pagetax run` takes <= 60 s, and an A/A comparison of two
    such runs calls <= 5 % of rows slower or faster, and the README's gate
    for one run a side (--fail-above 20) passes.
10. Context: `page` / `vec` at random 64 B and 4 KiB with descriptor tables
    on 2 MiB and on 4 KiB pages.
11. Context: what an I/O costs the harness (rep_loop's bookkeeping and each
    op's call and loop set-up): `vec`, random 64 B, warm, cache-resident, at
    1, 16 and 256 segments per I/O against one I/O per repetition.
12. Context: the I/O shape, cold: `page` / `vec` and `folio` / `vec` at
    random 64 B and 4 KiB, I/Os of 256 segments against one I/O per
    repetition.

Figures are medians over --reps rounds, interleaved; the spread is printed.
"""
import argparse
import contextlib
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import pagetax
from pagetax import compare, config, fio, libpmem, machine, persist, report, runner, timed_run
from pagetax.rows import summarize
from pagetax.sizes import format_size

HERE = os.path.dirname(os.path.abspath(__file__))


class Result:
    def __init__(self, status, reason=""):
        self.status, self.reason = status, reason


def met(ok):
    return Result("met" if ok else "MISSED")


def skipped(reason):
    print(f"  SKIPPED: {reason}")
    return Result("SKIPPED", reason)


def criterion(text):
    print(f"  criterion: {text}")


def stats(xs):
    xs = np.asarray(xs, float)
    return float(np.median(xs)), float(xs.min()), float(xs.max())


def load_hand_loop():
    with tempfile.TemporaryDirectory(prefix="pagetax-goals-") as tmp:
        out = os.path.join(tmp, "random_lines.so")
        subprocess.run(["cc", "-O2", "-Wall", "-shared", "-fPIC", "-o", out,
                        os.path.join(HERE, "random_lines.c")], check=True)
        lib = ctypes.CDLL(out)  # stays loaded once the file is gone
    lib.rl_setup.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int, ctypes.c_uint64]
    lib.rl_run_io.restype = ctypes.c_double
    lib.rl_run_io.argtypes = [ctypes.c_int, ctypes.c_uint64]
    return lib


def goal_seq64k(reps):
    criterion("vec GB/s / memcpy GB/s >= 0.95 (medians, interleaved)")
    with pagetax.Backing.scratch(1 << 30) as b:
        ext = pagetax.extents.generate("seq", 65536, 64 << 20, b.size)
        buf = pagetax.aligned_buffer(64 << 20)
        atts = {d: b.attach(d) for d in ("vec", "memcpy")}
        g = {d: [] for d in atts}
        for r in range(reps):
            for d in (("vec", "memcpy") if r % 2 else ("memcpy", "vec")):
                m = atts[d].run("read", ext, buf, cache="cold", phase_reps=0)
                g[d].append(m.bytes / m.total_ns[0])
        for d in atts:
            med, lo, hi = stats(g[d])
            print(f"  {d:6} read seq 64K: {med:.2f} GB/s (best {hi:.2f}, worst {lo:.2f})")
        ratio = np.median(g["vec"]) / np.median(g["memcpy"])
        print(f"  vec / memcpy = {ratio:.3f}")
        return met(ratio >= 0.95)


def goal_random64(reps):
    method = timed_run.cold_method()
    if method == "evict":
        return skipped("this CPU has neither CLFLUSHOPT nor CLFLUSH, so the hand loop "
                       "cannot be made cold the same way")
    per_io = timed_run.DEFAULT_SEGS_PER_IO
    criterion(f"vec ns/seg / best hand-loop ns/line <= 1.15, I/Os of {per_io} segments, both "
              f"cold by {method} + TLB scrub")
    lines = (64 << 20) // 64
    hand = load_hand_loop()
    if hand.rl_setup(2 << 30, lines, 1 if method == "clflushopt" else 2, 0x9E3779B97F4A7C15):
        return skipped("cannot set up the hand-written loop's 2 GiB mapping")
    dists = (0, 8, 16, 32, 64)
    with pagetax.Backing.scratch(2 << 30) as b:
        ext = pagetax.extents.generate("rand", 64, 64 << 20, b.size)
        buf = pagetax.aligned_buffer(64 << 20)
        atts = {d: b.attach(d) for d in ("vec", "pfn", "page")}
        ns = {d: [] for d in atts}
        hand_ns = {d: [] for d in dists}
        for _ in range(reps):
            for d, att in atts.items():
                m = att.run("read", ext, buf, cache="cold", phase_reps=0, segs_per_io=per_io)
                ns[d].append(m.total_ns[0] / m.segments)
            for d in dists:
                hand_ns[d].append(hand.rl_run_io(d, per_io))
    for d in dists:
        med, lo, hi = stats(hand_ns[d])
        print(f"  hand loop, prefetch {d:2}: {med:6.1f} ns/line (best {lo:.1f}, worst {hi:.1f})")
    limit = min(np.median(v) for v in hand_ns.values())
    for d in atts:
        med, lo, hi = stats(ns[d])
        print(f"  {d:4} read rand 64 B: {med:6.1f} ns/seg (best {lo:.1f}, worst {hi:.1f}), "
              f"{med / limit:.2f}x the hand loop's best median {limit:.1f}")
    ratio = np.median(ns["vec"]) / limit
    print(f"  vec / hand loop = {ratio:.2f}")
    return met(ratio <= 1.15)


def goal_python_overhead(reps):
    """Python's share: a PreparedRun call (one repetition, as `pagetax run`
    makes them) against the pt_run call as C timed it (call_ns)."""
    criterion("(Python call time - C call time) / C call time <= 2 %, median, warm, 64 MiB")
    ok = True
    with pagetax.Backing.scratch(1 << 30) as b, b.attach("vec") as att:
        buf = pagetax.aligned_buffer(64 << 20)
        for pattern, seg in (("seq", 4096), ("rand", 4096), ("rand", 64)):
            ext = pagetax.extents.generate(pattern, seg, 64 << 20, b.size)
            att.run("read", ext, buf)  # vector allocated once, as in a run
            prepared = att.prepare("read", ext, buf, calls=reps, phase_reps=0)
            py, harness = [], []
            for i in range(reps):
                call_ns = prepared.call_ns
                t0 = time.perf_counter_ns()
                prepared()
                whole = time.perf_counter_ns() - t0
                call = prepared.call_ns - call_ns
                timed = int(prepared.wall[i])
                py.append(100.0 * (whole - call) / call)
                harness.append(100.0 * (whole - timed) / timed)
            med, lo, hi = stats(py)
            print(f"  {pattern:4} {format_size(seg):>3} x {len(ext):7} segments: Python adds "
                  f"{med:.2f} % to the C call (min {lo:.2f}, max {hi:.2f}); all untimed work "
                  f"{float(np.median(harness)):.2f} % of the timed repetition")
            ok &= med <= 2.0
    return met(ok)


def goal_persist_vs_libpmem(reps):
    try:
        libpmem.load_libpmem()
    except OSError as e:
        return skipped(str(e))
    criterion("vec --persist auto GB/s / libpmem pmem_memcpy_persist GB/s >= 0.9")
    code = persist.persist_code(persist.resolve_persist("auto"))
    ok = True
    with pagetax.Backing.scratch(1 << 30) as b:
        buf = pagetax.aligned_buffer(64 << 20)
        for seg in (256, 4096):
            ext = pagetax.extents.generate("rand", seg, 64 << 20, b.size)
            runs = {"vec auto": b.attach("vec").prepare("write", ext, buf, cache="cold",
                                                        persist=code, calls=reps, phase_reps=0),
                    "libpmem": b.attach("libpmem").prepare("write", ext, buf, cache="cold",
                                                           calls=reps, phase_reps=0)}
            for _ in range(reps):
                for r in runs.values():
                    r()
            g = {k: stats((64 << 20) / r.measurement().total_ns.astype(float))
                 for k, r in runs.items()}
            ratio = g["vec auto"][0] / g["libpmem"][0]
            print(f"  rand {format_size(seg):>3} writes: vec auto {g['vec auto'][0]:.2f} GB/s, "
                  f"libpmem {g['libpmem'][0]:.2f} GB/s, ratio {ratio:.2f}")
            ok &= ratio >= 0.9
    return met(ok)


def goal_fio(reps):
    if not fio.available():
        return skipped("fio is not installed")
    criterion("none: context.  fio pays per-I/O engine costs (io_u setup, its own timing, "
              "one buffer per I/O) that pagetax does not")
    cfg = config.RunConfig(designs=["vec"], ops=["read"], patterns=["rand"],
                           seg_sizes=[64, 4096], repeat=max(3, reps // 2), peers=["fio"])
    rows = []
    runner.run(cfg, rows)
    by = {(r["design"], r["seg_bytes"]): r for r in rows}
    for seg in (4096, 64):
        v, f = by.get(("vec", seg)), by.get(("fio-mmap", seg))
        if not f:
            return skipped(f"fio gave no mmap row at {format_size(seg)}")
        print(f"  rand {format_size(seg):>3} read: vec {v['gbps']:.2f} GB/s "
              f"({v['ns_per_seg']:.0f} ns/seg), fio-mmap {f['gbps']:.3f} GB/s "
              f"({f['ns_per_seg']:.0f} ns/I/O), vec / fio {v['gbps'] / f['gbps']:.1f}x")
    return Result("context")


def goal_threads(reps):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return skipped("this process may use only one CPU")
    criterion("vec 2 threads / vec 1 thread >= 1.6, or vec / memcpy with 2 threads >= 0.95")
    ok = True
    with pagetax.Backing.scratch(1 << 30) as b:
        atts = {d: b.attach(d) for d in ("vec", "memcpy")}
        for seg in (65536, 4096):
            exts = pagetax.extents.per_thread("seq", seg, 64 << 20, b.size, 2)
            bufs = [pagetax.aligned_buffer(64 << 20) for _ in exts]
            kw = dict(cache="cold", calls=reps, phase_reps=0)
            runs = {"vec 1T": atts["vec"].prepare("read", exts[0], bufs[0], cpus=cpus[:1], **kw),
                    "vec 2T": atts["vec"].prepare("read", exts, bufs, cpus=cpus[:2], **kw),
                    "memcpy 2T": atts["memcpy"].prepare("read", exts, bufs, cpus=cpus[:2], **kw)}
            for r in range(reps):
                order = list(runs)
                for k in order[r % 3:] + order[:r % 3]:
                    runs[k]()
            g = {}
            for k, run in runs.items():
                m = run.measurement()
                g[k] = stats(m.bytes / m.total_ns.astype(float))
                print(f"  {k:9} seq {format_size(seg):>3}: {g[k][0]:.2f} GB/s "
                      f"(best {g[k][2]:.2f}, worst {g[k][1]:.2f})")
            scale = g["vec 2T"][0] / g["vec 1T"][0]
            roof = g["vec 2T"][0] / g["memcpy 2T"][0]
            print(f"  seq {format_size(seg)}: 2 threads / 1 thread = {scale:.2f}, "
                  f"vec / memcpy with 2 threads = {roof:.2f}")
            ok &= scale >= 1.6 or roof >= 0.95
    return met(ok)


def goal_cold_is_cold(reps):
    criterion("mean load of a dependent chain through 64 data lines as a cold repetition "
              "starts >= 5x the same chain warm (one clock read subtracted from each chain)")
    ok = True
    with pagetax.Backing.scratch(1 << 30) as b, b.attach("vec") as att:
        buf = pagetax.aligned_buffer(64 << 20)
        for pattern, seg in (("rand", 64), ("seq", 65536)):
            ext = pagetax.extents.generate(pattern, seg, 64 << 20, b.size)
            for cache in ("cold", "warm"):
                start, warm = [], []
                for _ in range(reps):
                    p = att.prepare("read", ext, buf, cache=cache, probe=True, phase_reps=0)
                    p()
                    start.append(p.probed["start_ns"])
                    warm.append(p.probed["warm_ns"])
                s, w = float(np.median(start)), float(np.median(warm))
                print(f"  {pattern:4} {format_size(seg):>3} --cache {cache}: a repetition starts "
                      f"with loads of {s:6.1f} ns, warm {w:5.1f} ns"
                      + (f" ({timed_run.cold_method()})" if cache == "cold" else ""))
                if cache == "cold":
                    ok &= s >= 5 * max(w, 1.0)
    return met(ok)


@contextlib.contextmanager
def cache_resident_vec():
    """vec on an 8 MiB backing, 1 MiB of random 64 B segments: a working
    set the caches hold, so what is left is the harness and the loops."""
    with pagetax.Backing.scratch(8 << 20) as b, b.attach("vec") as att:
        yield att, pagetax.extents.generate("rand", 64, 1 << 20, b.size), \
            pagetax.aligned_buffer(1 << 20)


def goal_clock_free(reps):
    criterion("vec, random 64 B over a cache-sized 8 MiB backing, warm, --segs-per-io 1: "
              "release about 0: within a tenth of one phase mark (or 1 ns) of 0 per segment; "
              "its work is nothing, and the marks are subtracted")
    with cache_resident_vec() as (att, ext, buf):
        rows = {}
        for per_io in (0, 16, 1):
            m = att.run("read", ext, buf, reps=reps, phase_reps=reps, warmup=1,
                        segs_per_io=per_io)
            rows[per_io] = summarize(m, "vec", "read", "rand", 64,
                                     config.RunConfig(cache="warm"), {}, {})
            per = {k: v / m.segments for k, v in rows[per_io]["phase_ns"].items()}
            print(f"  --segs-per-io {per_io:2}: total {rows[per_io]['ns_per_seg']:5.1f} ns/seg; "
                  f"build {per['build']:5.1f}, copy {per['copy']:5.1f}, release "
                  f"{per['release']:5.1f} (a mark, {m.clock_ns:.1f} ns, subtracted per phase "
                  f"per I/O); phases agree with the total: {rows[per_io]['phases_agree']}")
    release = rows[1]["phase_ns"]["release"] / rows[1]["segments"]
    return met(abs(release) <= max(1.0, 0.1 * timed_run.mark_cost_ns()))


def _default_run(path):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pagetax", "run", "--no-progress", "--json", path],
                       capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"pagetax run failed: {p.stderr.strip()}")
    return time.monotonic() - t0


ONE_RUN_GATE_PCT = 20  # README: one run a side moved 1 row in 120 by 11-17 % here


def goal_default_run_and_aa(reps):
    criterion("each default `pagetax run` <= 60 s; A/A: rows called slower or faster <= 5 % "
              "(pagetax compare, default 5 % band), and the one-run-a-side gate "
              f"(--fail-above {ONE_RUN_GATE_PCT}, README) passes")
    with tempfile.TemporaryDirectory(prefix="pagetax-goals-") as tmp:
        a, b = os.path.join(tmp, "a.json"), os.path.join(tmp, "b.json")
        ta, tb = _default_run(a), _default_run(b)
        docs = [json.load(open(p)) for p in (a, b)]
    result = compare.compare(*docs, fail_above=ONE_RUN_GATE_PCT)
    n = result.counts()
    flagged = n["slower"] + n["faster"]
    moved = sum(1 for c in result.cells.values() if c["reference"] and c["reference"]["verdict"])
    print(f"  default runs: {ta:.1f} s and {tb:.1f} s ({report.cache_text(docs[0]['machine'])}, "
          f"cold by {docs[0]['config']['cold_method_resolved']})")
    print(f"  A/A: {flagged} of {n['rows']} rows slower or faster ({100 * flagged / n['rows']:.1f} "
          f"%); the gate {'FAILS' if result.failed else 'passes'}; the drift reference moved in "
          f"{moved} of {len(result.cells)} cells")
    for r in result.regressions:   # what failed the gate, to be read, not guessed
        print(f"  gate: {' '.join(str(x) for x in r['key'])}: {r['change_pct']:+.1f} % "
              f"({r['a_gbps']:.2f} -> {r['b_gbps']:.2f} GB/s, {r['basis']}, interval "
              f"{100 * (r['ci_low'] - 1):+.1f} to {100 * (r['ci_high'] - 1):+.1f} %)")
    for c in result.undecided:
        print(f"  gate: cell {' '.join(str(x) for x in c)}: every row moved with the "
              "reference: undecided")
    return met(max(ta, tb) <= 60 and flagged <= 0.05 * n["rows"] and not result.failed)


def goal_table_pages(reps):
    criterion("none: context")
    out = {}
    with pagetax.Backing.scratch(1 << 30) as b:
        buf = pagetax.aligned_buffer(64 << 20)
        for pages in ("2M", "4K"):
            atts = {d: b.attach(d, table_pages=pages) for d in ("vec", "page")}
            mapping = atts["page"].table_mapping()
            for seg in (64, 4096):
                ext = pagetax.extents.generate("rand", seg, 64 << 20, b.size)
                ns = {d: [] for d in atts}
                for _ in range(reps):
                    for d, att in atts.items():
                        m = att.run("read", ext, buf, cache="cold", phase_reps=0)
                        ns[d].append(m.total_ns[0] / m.segments)
                page, vec = (float(np.median(ns[d])) for d in ("page", "vec"))
                out[(pages, seg)] = page / vec
                print(f"  table on {pages} pages (smaps: {mapping['page_size']}, "
                      f"{mapping['huge_bytes'] >> 20} MiB huge): rand {format_size(seg):>3}: "
                      f"page {page:.1f} ns/seg, vec {vec:.1f}, page / vec {page / vec:.2f}")
            for att in atts.values():
                att.close()
    return Result("context")


def goal_io_bookkeeping(reps):
    criterion("none: context.  ns per I/O beyond one I/O per repetition, vec, random 64 B "
              "over a cache-sized 8 MiB backing, warm: the loop's bookkeeping (pt_io's fields, "
              "the stop and failure flags, the entry-count check) and each op's call")
    with cache_resident_vec() as (att, ext, buf):
        shapes = (0, 256, 16, 1)
        runs = {k: att.prepare("read", ext, buf, calls=reps, phase_reps=0, warmup=1,
                               segs_per_io=k) for k in shapes}
        for _ in range(reps):
            for r in runs.values():
                r()
        ns = {k: float(np.median(r.measurement().total_ns)) for k, r in runs.items()}
    whole = ns[0] / len(ext)
    print(f"  one I/O per repetition: {whole:.2f} ns/seg")
    for k in shapes[1:]:
        ios = -(-len(ext) // k)
        extra = (ns[k] - ns[0]) / ios
        print(f"  {k:3} segments per I/O: {ns[k] / len(ext):.2f} ns/seg, {extra:6.1f} ns per I/O "
              f"more ({extra / k:.2f} ns per segment)")
    return Result("context")


def goal_io_shape(reps):
    criterion("none: context.  cold, 1 GiB tmpfs, 64 MiB per repetition, designs interleaved")
    with pagetax.Backing.scratch(1 << 30) as b:
        buf = pagetax.aligned_buffer(64 << 20)
        atts = {d: b.attach(d) for d in ("vec", "page", "folio")}
        for seg in (64, 4096):
            ext = pagetax.extents.generate("rand", seg, 64 << 20, b.size)
            for per_io in (timed_run.DEFAULT_SEGS_PER_IO, 0):
                runs = {d: att.prepare("read", ext, buf, cache="cold", calls=reps, phase_reps=0,
                                       segs_per_io=per_io) for d, att in atts.items()}
                for r in range(reps):
                    order = list(runs)
                    for d in order[r % 3:] + order[:r % 3]:
                        runs[d]()
                ns = {d: np.asarray(r.measurement().total_ns, float) / len(ext)
                      for d, r in runs.items()}
                vec = float(np.median(ns["vec"]))
                shape = f"I/Os of {per_io}" if per_io else "one I/O per rep"
                print(f"  rand {format_size(seg):>3}, {shape:15}: vec {vec:6.1f} ns/seg; "
                      + "; ".join(f"{d} {float(np.median(ns[d])):6.1f} ({float(np.median(ns[d])) / vec:.2f}x "
                                  f"vec, {ns[d].min() / ns['vec'].max():.2f}-"
                                  f"{ns[d].max() / ns['vec'].min():.2f})" for d in ("page", "folio")))
        for att in atts.values():
            att.close()
    return Result("context")


GOALS = [
    ("sequential 64 KiB read against the like-for-like roofline", goal_seq64k),
    ("random 64 B read against a hand-written loop, 2 GiB backing, cold", goal_random64),
    ("Python overhead, 64 MiB repetition, warm cache", goal_python_overhead),
    ("--persist auto against libpmem, random writes, cold", goal_persist_vs_libpmem),
    ("vec against fio's mmap engine, random reads (context)", goal_fio),
    ("2 threads on 2 cores, sequential reads, cold", goal_threads),
    ("cold is cold: loads as a repetition starts", goal_cold_is_cold),
    ("totals with no clock reads inside", goal_clock_free),
    ("the default pagetax run, twice: time and A/A", goal_default_run_and_aa),
    ("descriptor tables on 2 MiB and 4 KiB pages (context)", goal_table_pages),
    ("what an I/O costs the harness (context)", goal_io_bookkeeping),
    ("the I/O shape: 256 segments against one I/O per repetition (context)", goal_io_shape),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--strict", action="store_true",
                    help="exit non-zero on a SKIPPED goal too, not only on a MISSED one")
    ap.add_argument("--only", help="comma list of goal numbers to run")
    args = ap.parse_args()
    only = {int(x) for x in args.only.split(",")} if args.only else None
    walk = machine.cache_walk()
    print(f"{machine.cpu_model()}, {report.cache_text(dict(llc_bytes=machine.llc_bytes(), cache=walk))}, "
          f"{os.cpu_count()} cores, clock read {timed_run.clock_cost_ns():.1f} ns, phase mark "
          f"{timed_run.mark_cost_ns():.1f} ns, median of {args.reps} rounds")
    results = []
    for i, (title, goal) in enumerate(GOALS, 1):
        if only and i not in only:
            continue
        print(f"{i}. {title}")
        r = goal(args.reps)
        print(f"  -> {r.status}" + (f" ({r.reason})" if r.reason else ""))
        results.append((i, r))
    print("goals: " + ", ".join(f"{i} {r.status}" for i, r in results))
    bad = {"MISSED"} | ({"SKIPPED"} if args.strict else set())
    return 1 if any(r.status in bad for _, r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

"""What a run says, computed from its rows, for the report page and its
pictures: each design's throughput against vec's with an honest
best-to-worst range, the phase split per segment, the largest gaps in a
few sentences, and the metadata figures on one capacity basis.

No matplotlib and no C core here: a result file is enough."""
from . import metadata as _meta
from .schema import BASELINE, PROPOSAL
from .sizes import format_size

PHASES = ("build", "copy", "release")
PATTERN_WORDS = {"seq": "sequential", "rand": "random", "hot": "hot-page"}
OP_WORDS = {"read": "reads", "write": "writes"}
# The phase split and the timed medians come from different repetitions;
# within this fraction of each other they count as telling the same story.
SPLIT_AGREES = 0.2


def seg_label(n):
    """'64 B', '4 KiB', '64 KiB': format_size's exact spelling, with units."""
    text = format_size(n)
    return f"{text[:-1]} {text[-1]}iB" if text[-1].isalpha() else f"{text} B"


def per_io_text(cfg):
    """'1 segment', '4 segments': what one I/O of a --segs-per-io run is."""
    k = cfg["segs_per_io"]
    return f"{k} segment{'s' if k > 1 else ''}"


def cache_text(machine):
    """'LLC 32 MiB per sysfs, 16 MiB usable (measured)': what the CPU reports
    beside what a dependent-load walk found this process can use."""
    text = f"LLC {seg_label(machine.get('llc_bytes', 0))} per sysfs"
    walk = machine.get("cache") or {}
    if walk.get("skipped"):
        text += f", usable size not measured ({walk['skipped']})"
    elif walk.get("effective_bytes"):
        text += f", {seg_label(walk['effective_bytes'])} usable (measured)"
    elif walk:
        text += ", usable size not found (no memory plateau in the walk)"
    return text


def io_shape_text(cfg):
    """'I/Os of 256 segments' or 'one I/O per repetition'."""
    k = cfg.get("segs_per_io") or 0
    return f"I/Os of {per_io_text(cfg)}" if k else "one I/O per repetition (a whole-repetition vector)"


def duration_label(ns):
    """'850 ns', '12.3 µs', '1.2 ms': a latency as people read it."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def cell_key(row):
    """The cell rows are compared in (rows.add_ratios's)."""
    return (row["op"], row["pattern"], row["seg_bytes"], row.get("threads", 1))


def cells(rows):
    """{cell: {design: row}}."""
    out = {}
    for r in rows:
        out.setdefault(cell_key(r), {})[r["design"]] = r
    return out


def cell_words(op, pattern, seg):
    """'random 64 B reads'."""
    return f"{PATTERN_WORDS.get(pattern, pattern)} {seg_label(seg)} {OP_WORDS.get(op, op)}"


def ratio_range(row, vec):
    """The range ratio_vec honestly spans: repetitions of two designs are not
    paired, so from the design's slowest over vec's fastest to the design's
    fastest over vec's slowest."""
    return row["gbps_worst"] / vec["gbps_best"], row["gbps_best"] / vec["gbps_worst"]


def phase_per_segment(row):
    """Median build, copy and release ns per segment (one thread's), or None
    for a row whose source times whole I/Os (fio)."""
    if not row.get("phases", True) or not row.get("phase_ns"):
        return None
    n = row["segments"] / row.get("threads", 1)  # phases are one (the mean) thread's
    return {k: row["phase_ns"][k] / n for k in PHASES}


def per_page_design(row):
    """A design that keeps state per page (struct page and its kin): the
    ones the tax is about.  Read from the row, so no model is needed."""
    ws = row.get("working_set") or {}
    meta = row.get("metadata") or {}
    return bool(ws.get("descriptor_bytes") or meta.get("allocated_bytes"))


def gaps(doc):
    """Every per-page design's row beside vec's in the same cell, slowest
    (relative to vec) first: cost = vec GB/s / design GB/s, the time the
    design takes per byte in units of vec's."""
    found = []
    for cell, by_design in cells(doc["results"]).items():
        vec = by_design.get(BASELINE)
        if vec is None:
            continue
        for design, r in by_design.items():
            if design == BASELINE or r.get("roofline") or not per_page_design(r):
                continue
            lo, hi = ratio_range(r, vec)
            found.append({"design": design, "cell": cell, "row": r, "vec": vec,
                          "cost": vec["gbps"] / r["gbps"], "cost_range": (1 / hi, 1 / lo),
                          "ratio": r["gbps"] / vec["gbps"]})
    return sorted(found, key=lambda g: -g["cost"])


def _ns(x, sign=False):
    return f"{x:{'+' if sign else ''}.3g} ns" if abs(x) < 1000 else f"{x:{'+' if sign else ''},.0f} ns"


def split_sentence(gap):
    """Where a gap's time goes, phase by phase, against vec's phases; says
    so when the split (instrumented repetitions, medians per phase) does not
    add up to the timed difference."""
    r, vec = gap["row"], gap["vec"]
    mine, base = phase_per_segment(r), phase_per_segment(vec)
    if mine is None or base is None:
        return "No phase split: one of the two rows times whole I/Os."
    timed = r["ns_per_seg"] - vec["ns_per_seg"]
    delta = {k: mine[k] - base[k] for k in PHASES}
    split = sum(delta.values())
    extra = delta["build"] + delta["release"]
    if split > 0 and all(d >= 0 for d in delta.values()):
        text = (f"Of the {_ns(split)} per segment its phases add over `vec`'s, "
                f"{100 * extra / split:.0f} % is build and release "
                f"({_ns(extra)}), {100 * delta['copy'] / split:.0f} % copy.")
    elif extra > 0:
        text = f"Build and release add {_ns(extra)} per segment over `vec`'s."
    else:
        text = "Its build and release add nothing measurable over `vec`'s."
    if timed > 0 and abs(split - timed) > SPLIT_AGREES * timed or \
            any(d < 0 for d in delta.values()):
        text += (" (Measurement note: the phases, medians of "
                 f"{r.get('phase_reps', '?')} instrumented repetitions each, come to "
                 f"{_ns(split)} over `vec`'s where the timed medians differ by {_ns(timed)}"
                 + (f", and the copy phase by {_ns(delta['copy'], sign=True)}"
                    if delta["copy"] < 0 else "")
                 + ": read the split as shares, not as a sum.)")
    return text


def gap_sentence(gap):
    op, pattern, seg, _ = gap["cell"]
    lo, hi = gap["cost_range"]
    text = (f"At {cell_words(op, pattern, seg)}, `{gap['design']}` takes {gap['cost']:.2f}× "
            f"`vec`'s time ({gap['ratio']:.2f}× its GB/s; {lo:.2f}–{hi:.2f}× from the fastest "
            f"and slowest repetitions")
    text += ")." if lo > 1 else (", so its fastest repetition beat `vec`'s slowest).")
    return f"{text} {split_sentence(gap)}"


def capacity_basis(doc):
    """(bytes, label): the capacity every metadata figure on the page is a
    share of.  The run measured each design's table on the data area its
    extents lie in (config data_bytes; the backing less altmap's reserve);
    altmap's own reserve is sized, as the kernel's is, by the whole backing."""
    cfg = doc["config"]
    data = cfg.get("data_bytes")
    if not data:
        caps = [m["capacity_bytes"] for m in (doc.get("metadata") or {}).values()]
        data = min(caps) if caps else cfg["size"]
    if data == cfg["size"]:
        return data, f"the {data:,} B backing"
    return data, (f"the {data:,} B data area every design copies from (the {cfg['size']:,} B "
                  f"backing less the {cfg['size'] - data:,} B altmap reserves from it)")


def metadata_rows(doc):
    """Every model's metadata on the page's capacity basis (capacity_basis):
    the run's own figures for each design it measured, the model at the
    data area for the rest; folio designs once per folio size."""
    cap, _ = capacity_basis(doc)
    measured = doc.get("metadata") or {}
    run_folio = doc["config"].get("folio_size", "4K")
    out = []
    for m in _meta.table(cap):
        name = m["design"] + (f" @{m['folio_size']}" if m["folio_size"] else "")
        got = measured.get(m["design"]) if m["folio_size"] in (None, run_folio) else None
        if got:
            out.append(dict(m, name=name, capacity_bytes=got["capacity_bytes"],
                            dram_bytes=got["model_dram_bytes"],
                            device_bytes=got["model_device_bytes"], percent=got["percent"],
                            measured=got))
        else:
            out.append(dict(m, name=name, capacity_bytes=cap, measured=None))
    return out


def metadata_sentence(doc):
    """The tables the run allocated, designs of equal share together,
    largest first, each as a share of the capacity it covers."""
    meta = {d: m for d, m in (doc.get("metadata") or {}).items() if m.get("allocated_bytes")}
    if not meta:
        return None
    groups = {}
    for d, m in meta.items():
        groups.setdefault((m["percent"], m["allocated_where"] == "device"), []).append(d)
    parts = [f"{', '.join(f'`{d}`' for d in names)} {pct:.3g} %{' on the device' if dev else ''}"
             for (pct, dev), names in sorted(groups.items(), key=lambda kv: -kv[0][0])]
    return f"Descriptor tables, as a share of the capacity each covers: {'; '.join(parts)}."


def latency_sentence(doc):
    """The largest p99 per I/O above vec's, when the run recorded latencies:
    ranked by the difference, which a clock read's noise cannot inflate as it
    does a ratio to a p99 of a few ns; the ratio only where vec's p99 is
    above one clock read."""
    best = None
    for by_design in cells(doc["results"]).values():
        vec_p99 = ((by_design.get(BASELINE) or {}).get("latency") or {}).get("p99_ns")
        if vec_p99 is None:
            continue
        for design, r in by_design.items():
            p99 = (r.get("latency") or {}).get("p99_ns")
            if design != BASELINE and p99 is not None and not r.get("roofline") \
                    and per_page_design(r):
                if best is None or p99 - vec_p99 > best[0]:
                    best = (p99 - vec_p99, r, p99, vec_p99)
    if best is None or best[0] <= 0:
        return None
    gap, r, p99, vec_p99 = best
    k = doc["config"].get("segs_per_io")
    clock = r.get("clock_ns") or 0
    ratio = (f", {p99 / vec_p99:.2f}×" if vec_p99 > clock else
             f"; `vec`'s is within one clock read ({clock:.0f} ns) of zero, so no ratio")
    per_io = f" of {per_io_text(doc['config'])}" if k else ""
    return (f"Per I/O{per_io}, the 99th "
            f"percentile furthest above `vec`'s is `{r['design']}`'s at "
            f"{cell_words(r['op'], r['pattern'], r['seg_bytes'])}: {duration_label(p99)} against "
            f"{duration_label(vec_p99)} (+{duration_label(gap)}{ratio}).")


def _cost_words(g):
    lo, hi = g["cost_range"]
    return f"{g['cost']:.2f}× ({lo:.2f}–{hi:.2f}×)"


def answer_lines(doc):
    """The 2015 question, answered from the run first: what a 64-byte
    struct page (`page`) costs against raw vectors (`vec`) at the smallest
    random segments and at the larger ones, where the time goes, and the
    memory it keeps.  [] when the run has no `page` beside `vec`."""
    found = [g for g in gaps(doc) if g["design"] == PROPOSAL]
    if not found:
        return []
    by_seg = {}
    for g in found:   # per segment size: random reads first, then anything
        op, pattern, seg, _ = g["cell"]
        rank = (pattern != "rand", op != "read")
        if seg not in by_seg or rank < by_seg[seg][0]:
            by_seg[seg] = (rank, g)
    segs = sorted(by_seg)
    first = by_seg[segs[0]][1]
    text = (f"What a per-page descriptor costs (`page`: a 64-byte struct page per 4 KiB, "
            f"against raw (address, length) vectors, `vec`): at "
            f"{cell_words(*first['cell'][:3])} it takes {_cost_words(first)} `vec`'s time")
    rest = [by_seg[seg][1] for seg in segs[1:]]
    if rest:
        text += "; " + ", ".join(f"at {seg_label(g['cell'][2])} {_cost_words(g)}"
                                 for g in rest)
    out = [text + " (median, and the range from the fastest and slowest repetitions)."]
    mine, base = phase_per_segment(first["row"]), phase_per_segment(first["vec"])
    if mine and base:
        extra = (mine["build"] - base["build"]) + (mine["release"] - base["release"])
        out.append(f"The time goes to taking and dropping a reference on every page an I/O "
                   f"touches (build and release, as the kernel's direct I/O pins): "
                   f"{_ns(max(extra, 0.0))} per segment at {seg_label(first['cell'][2])}.")
    cap = _meta.SEED_CAPACITY
    table = _meta.MODELS[PROPOSAL].dram(cap)
    out.append(f"Its memory: 64 B per 4 KiB page, {100 * table / cap:.4f} % of capacity, "
               f"{table / 1e9:.2f} GB for the 2015 thread's 400 GB DIMM.")
    return out


def lines(doc):
    """The answer to the 2015 question first (answer_lines), then 3 to 5
    sentences on the other designs, names in backquotes: the two largest
    gaps to vec (different designs), how far they close at the largest
    segment, the metadata it costs, and the latency tail when there is one."""
    return answer_lines(doc) + other_lines(doc)


def other_lines(doc):
    rows = doc["results"]
    designs = list(dict.fromkeys(r["design"] for r in rows))
    out = []
    if not rows:
        return ["This run has no result rows."]
    if BASELINE not in designs:
        out.append("This run has no `vec` rows, the baseline every gap is measured against: "
                   f"it ran {', '.join(f'`{d}`' for d in designs)}.")
    elif len(designs) == 1:
        out.append("Only `vec` ran: there is nothing to compare it with.")
    else:
        found = gaps(doc)
        if not found:
            out.append("No design with per-page descriptors ran beside `vec`.")
        named = []
        for g in found:
            if g["design"] not in [n["design"] for n in named]:
                named.append(g)
            if len(named) == 2:
                break
        out += [gap_sentence(g) for g in named]
        largest = max(r["seg_bytes"] for r in rows)
        at_largest = [g for g in found if g["cell"][2] == largest]
        if at_largest and named and named[0]["cell"][2] != largest:
            ratios = [g["ratio"] for g in at_largest]
            out.append(f"At {seg_label(largest)} segments the per-page designs run at "
                       f"{min(ratios):.2f}–{max(ratios):.2f}× `vec`'s GB/s (medians).")
    for extra in (metadata_sentence(doc), latency_sentence(doc)):
        if extra and len(out) < 5:
            out.append(extra)
    return out

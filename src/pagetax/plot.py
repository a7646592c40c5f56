"""Pictures of a run, in the order a kernel developer asks the questions:
how much slower than vec is each design (x vec against segment size),
where the time goes (build, copy, release per segment), what it costs in
memory (metadata per capacity, beside the kernel's own when a `pagetax vm
memmap` or a `pagetax kernel` file is given), then raw GB/s, ns per
segment and, when the run recorded them, per-I/O latency CDFs.
matplotlib is imported only here (a dependency: pip install . brings it)."""
import math
import os
import textwrap

from . import summary
from .errors import PagetaxError
from .schema import BASELINE
from .sizes import format_size

FORMATS = ("png", "svg")
PHASE_COLORS = {"build": "#d62728", "copy": "#9e9e9e", "release": "#1f77b4"}
MARKERS = "osD^v<>phX*"
# A bar this many times the median bar of its panel is cut at the panel's
# edge, its value written, so one slow design (a system call per segment)
# does not flatten the others.
CLIP_FACTOR = 4.0


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise PagetaxError("plots need matplotlib, which pip install . brings: pip install "
                           "matplotlib") from None
    return plt


def caption(doc):
    m = doc["machine"]
    b = m.get("backing", {})
    cfg = doc["config"]
    return (f"{m['cpu_model']}, {m['cores']} cores, {m['kernel']}; "
            f"{summary.cache_text(m)}; backing {b.get('kind')} "
            f"({b.get('fs_type')}, {b.get('mapping', {}).get('page_size')} pages); "
            f"cache {cfg['cache']}; {summary.io_shape_text(cfg)}; "
            f"median of {cfg['repeat']} x {format_size(cfg['io_size'])}"
            + (f" per thread, {cfg['threads']} threads (GB/s aggregate)"
               if cfg.get("threads", 1) > 1 else "")
            + ("; PARTIAL" if doc.get("partial") else ""))


# -- axes that read as numbers ---------------------------------------------------

def _plain(x):
    """A tick as a plain decimal: 0.05, 2, 1500; never 10^x or 5e-2."""
    text = f"{x:.6g}"
    if "e" in text:
        text = f"{x:.10f}".rstrip("0").rstrip(".")
    return text


def _nice_ticks(lo, hi, log):
    """Ticks inside [lo, hi]: on a log axis 1-2-5 steps, decades alone when
    that makes too many, 1..9 when the range is narrow; else, or when that
    still gives fewer than three, even steps."""
    from matplotlib.ticker import MaxNLocator
    if log and lo > 0:
        for subs in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
            ticks = [s * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1,
                                                  math.ceil(math.log10(hi)) + 1)
                     for s in subs]
            ticks = [t for t in ticks if lo <= t * (1 + 1e-9) and t <= hi * (1 + 1e-9)]
            if len(ticks) > 9:  # many decades: one tick each
                return [t for t in ticks if f"{t:.1e}".startswith("1.0")]
            if len(ticks) >= 3:
                return ticks
    return [t for t in MaxNLocator(5).tick_values(lo, hi) if lo <= t <= hi]


def _plain_axis(ax, which="y"):
    """Plain-number ticks on an axis whose limits are final."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    log = (ax.get_yscale() if which == "y" else ax.get_xscale()) == "log"
    axis.set_major_locator(FixedLocator(_nice_ticks(min(lo, hi), max(lo, hi), log)))
    axis.set_major_formatter(FuncFormatter(lambda x, _: _plain(x)))
    if log:
        axis.set_minor_locator(NullLocator())


def _seg_axis(ax, segs):
    """Segment sizes on a log-2 axis, labelled 64 B, 4 KiB, 64 KiB."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(segs)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: summary.seg_label(int(round(x)))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("segment size")


def _time_axis(ax):
    """A log axis of ns labelled 100 ns, 1 µs, 10 µs."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    lo, hi = ax.get_xlim()
    ax.xaxis.set_major_locator(FixedLocator(_nice_ticks(lo, hi, True)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: summary.duration_label(x)))
    ax.xaxis.set_minor_locator(NullLocator())


# -- layout ----------------------------------------------------------------------

def designs(doc):
    """Designs in the order the run lists them (its --designs order)."""
    return list(dict.fromkeys(r["design"] for r in doc["results"]))


def styles(doc):
    """One colour and marker per design, the same in every picture."""
    import matplotlib
    names = designs(doc)
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {d: {"color": palette(i % palette.N), "marker": MARKERS[i % len(MARKERS)]}
            for i, d in enumerate(names)}


def _panels(plt, n, cols, width, height):
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _finish(fig, title, notes, handles):
    """Title and legend above the panels, notes below: outside every panel,
    so no legend covers a line.  The title heads the legend, as constrained
    layout would otherwise set a suptitle over it."""
    fig.legend(handles=list(handles), loc="outside upper center", ncol=min(len(handles), 6),
               fontsize="small", frameon=False, title=title,
               title_fontproperties={"size": "large"})
    width_chars = int(fig.get_figwidth() * 15)
    fig.supxlabel("\n".join(textwrap.fill(n, width_chars) for n in notes), fontsize="small",
                  color="#444")
    return fig


def _op_title(op, pattern):
    return f"{op} ({'gather' if op == 'read' else 'scatter'}), {pattern}"


def _op_panels(doc):
    panels = sorted({(r["op"], r["pattern"]) for r in doc["results"]})
    if not panels:
        raise PagetaxError("the result file has no rows to plot")
    return panels


def _line_handles(doc, names):
    from matplotlib.lines import Line2D
    st = styles(doc)
    return [Line2D([], [], color=st[d]["color"], marker=st[d]["marker"], label=d) for d in names]


# -- the pictures ----------------------------------------------------------------

def ratio_figure(plt, doc):
    """x vec against segment size, per op and pattern: one line per design,
    error bars from its slowest/vec's fastest to its fastest/vec's slowest;
    vec's own such range around 1 as a grey band.  None without vec rows."""
    rows = doc["results"]
    if not any(r["design"] == BASELINE for r in rows):
        return None
    panels = _op_panels(doc)
    st = styles(doc)
    names = [d for d in designs(doc) if d != BASELINE]
    segs = sorted({r["seg_bytes"] for r in rows})
    fig, axes = _panels(plt, len(panels), min(2, len(panels)), 6.4, 4.4)
    # {(op, pattern, seg): {design: row}}: a run has one thread count
    by_cell = {k[:3]: c for k, c in summary.cells(rows).items()}
    for ax, (op, pattern) in zip(axes, panels):
        band = []
        for seg in segs:
            vec = by_cell.get((op, pattern, seg), {}).get(BASELINE)
            if vec:
                band.append((seg, *summary.ratio_range(vec, vec)))
        if band:
            bx, blo, bhi = zip(*band)
            ax.fill_between(bx, blo, bhi, color="#bbbbbb", alpha=0.5, linewidth=0)
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        for i, d in enumerate(names):
            pts = []
            for seg in segs:
                cell = by_cell.get((op, pattern, seg), {})
                if d in cell and BASELINE in cell:
                    lo, hi = summary.ratio_range(cell[d], cell[BASELINE])
                    pts.append((seg, cell[d]["gbps"] / cell[BASELINE]["gbps"], lo, hi))
            if not pts:
                continue
            # designs side by side at each size, so their bars do not overlap
            dodge = 2 ** (0.07 * (i - (len(names) - 1) / 2))
            xs = [p[0] * dodge for p in pts]
            ys = [p[1] for p in pts]
            ax.errorbar(xs, ys, yerr=[[y - p[2] for y, p in zip(ys, pts)],
                                      [p[3] - y for y, p in zip(ys, pts)]],
                        color=st[d]["color"], marker=st[d]["marker"], markersize=4,
                        linewidth=1.2, elinewidth=0.8, capsize=2)
        _seg_axis(ax, segs)
        ax.set_xlim(min(segs) / 1.5, max(segs) * 1.5)
        ax.set_yscale("log")
        _plain_axis(ax)
        ax.set_ylabel("x vec (design GB/s / vec GB/s)")
        ax.set_title(_op_title(op, pattern))
        ax.grid(True, alpha=0.3)
    from matplotlib.patches import Patch
    handles = _line_handles(doc, names) + [Patch(color="#bbbbbb", label="vec's own range")]
    return _finish(fig, "each design's throughput as a multiple of vec's (below 1: slower)", [
        "Points: median GB/s over vec's median GB/s in the same op, pattern and size. Bars: "
        "the design's slowest repetition over vec's fastest, to its fastest over vec's slowest "
        "(repetitions are not paired, so this is the widest the ratio can be). Grey band: the "
        "same for vec against itself. Log scale: 0.5 and 2 are as far from 1.",
        caption(doc)], handles)


def phase_figure(plt, doc):
    """Build, copy and release per segment, stacked, one bar per design, a
    panel per op, pattern and size; a tick marks the timed median, which the
    phases (other repetitions, medians per phase) need not add up to."""
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D
    rows = [r for r in doc["results"] if summary.phase_per_segment(r)]
    if not rows:
        return None
    panels = sorted({(r["op"], r["pattern"], r["seg_bytes"]) for r in rows})
    segs = sorted({p[2] for p in panels})
    names = [d for d in designs(doc) if any(r["design"] == d for r in rows)]
    fig, axes = _panels(plt, len(panels), len(segs), 4.4, 0.26 * len(names) + 1.3)
    by_cell = {(r["op"], r["pattern"], r["seg_bytes"], r["design"]): r for r in rows}
    for ax, (op, pattern, seg) in zip(axes, panels):
        present = [d for d in names if (op, pattern, seg, d) in by_cell]
        split = {d: summary.phase_per_segment(by_cell[(op, pattern, seg, d)]) for d in present}
        timed = {d: by_cell[(op, pattern, seg, d)]["ns_per_seg"] for d in present}
        tops = sorted(max(sum(split[d].values()), timed[d]) for d in present)
        limit = min(tops[-1], CLIP_FACTOR * tops[len(tops) // 2]) * 1.08
        ys = range(len(present))
        left = [0.0] * len(present)
        for phase in summary.PHASES:
            widths = [max(split[d][phase], 0.0) for d in present]
            ax.barh(ys, widths, left=left, color=PHASE_COLORS[phase], height=0.7)
            left = [a + b for a, b in zip(left, widths)]
        ax.plot([timed[d] for d in present], ys, linestyle="none", marker="|", color="black",
                markersize=11, markeredgewidth=1.6)
        for y, d in zip(ys, present):
            if max(left[y], timed[d]) > limit:
                ax.text(limit, y, f"{max(left[y], timed[d]):,.0f} →", ha="right", va="center",
                        fontsize="x-small", color="white", fontweight="bold")
        ax.set_xlim(0, limit)
        ax.set_yticks(list(ys), present, fontsize="small")
        ax.invert_yaxis()
        _plain_axis(ax, "x")
        ax.set_xlabel("ns per segment")
        ax.set_title(f"{op} {pattern} {summary.seg_label(seg)}", fontsize="medium")
        ax.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=PHASE_COLORS[p], label=p) for p in summary.PHASES]
    handles.append(Line2D([], [], linestyle="none", marker="|", color="black", markersize=11,
                          markeredgewidth=1.6, label="timed median"))
    skipped = sorted({r["design"] for r in doc["results"] if not summary.phase_per_segment(r)})
    return _finish(fig, "where the time per segment goes: build, copy, release", [
        "Bars: median ns per segment of each phase over the instrumented repetitions "
        f"({doc['config'].get('phase_reps', 1)} per row), one clock read subtracted per phase per "
        "I/O; medians are taken per phase, so the bar need not reach the tick, the timed "
        "repetitions' median. A bar cut at the panel's edge shows its total."
        + (f" Not drawn (no split: they time whole I/Os): {', '.join(skipped)}." if skipped else ""),
        caption(doc)], handles)


def _hvo_label(r):
    return f"kernel: {r['size']} hugetlb, HVO {'on' if r['hvo'] else 'off'}"


def metadata_figure(plt, doc, memmaps=(), kernel=None):
    """Metadata as % of capacity, log scale (huge's 0.003 % is a bar, not
    nothing), DRAM and device side by side; the kernel's struct pages as
    measured in guests below, when memmap files are given; a kernel file's
    HVO rows (report_kernel) under the model row each is held against."""
    from . import report_kernel
    rows = summary.metadata_rows(doc)
    guest = [r for m in memmaps for r in m["rows"]]
    hvo = report_kernel.measured_memmap(kernel)
    labels, dram, device, hatch = [], [], [], []

    def add_hvo(rows_here):
        for h in rows_here:
            labels.append(_hvo_label(h))
            dram.append(report_kernel.memmap_left_percent(h))
            device.append(0.0)   # the vmemmap is in DRAM
            hatch.append("xx")
    for r in rows:
        labels.append(r["name"] + ("" if r["data_path"] else " *"))
        dram.append(100 * r["dram_bytes"] / r["capacity_bytes"])
        device.append(100 * r["device_bytes"] / r["capacity_bytes"])
        hatch.append(None)
        if not r["folio_size"]:
            add_hvo([h for h in hvo if h["model"] == r["design"]])
    add_hvo([h for h in hvo if not any(h["model"] == r["design"] and not r["folio_size"]
                                       for r in rows)])   # a model this pagetax lacks: last
    model_rows = len(labels)
    for k in guest:
        labels.append(f"guest: {k['ndctl']}")
        dram.append(100 * k["dram_bytes"] / k["region_bytes"])
        device.append(100 * k["device_bytes"] / k["region_bytes"])
        hatch.append("//")
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(labels) + 2.4), layout="constrained")
    ys = list(range(len(labels)))
    positive = [v for v in dram + device if v > 0]
    floor = min(positive) / 3 if positive else 1e-4
    both = [d > 0 and e > 0 for d, e in zip(dram, device)]
    for values, side, color in ((dram, -0.2, "#1f77b4"), (device, 0.2, "#ff7f0e")):
        for y, v, kern, pair in zip(ys, values, hatch, both):
            if v > 0:
                offset = side if pair else 0.0  # a lone bar sits on its label
                ax.barh(y + offset, v, height=0.38, color=color, hatch=kern,
                        edgecolor="white" if kern else None)
                ax.text(v * 1.08, y + offset, f"{v:.3g} %", va="center", fontsize="x-small")
    for y, d, v in zip(ys, dram, device):
        if d <= 0 and v <= 0:
            ax.text(floor * 1.1, y, "none", va="center", fontsize="x-small", color="#666")
    ax.set_xscale("log")
    ax.set_xlim(floor, max(positive, default=1) * 4)
    _plain_axis(ax, "x")
    ax.set_yticks(ys, labels, fontsize="small")
    ax.invert_yaxis()
    if guest:
        ax.axhline(model_rows - 0.5, color="#444", linewidth=0.8)
    ax.set_xlabel("% of capacity (log scale)")
    ax.grid(True, axis="x", alpha=0.3)
    from matplotlib.patches import Patch
    handles = [Patch(color="#1f77b4", label="DRAM"), Patch(color="#ff7f0e", label="device")]
    if guest:
        handles.append(Patch(facecolor="#999", hatch="//", edgecolor="white",
                             label="the kernel's, measured in a guest"))
    if hvo:
        handles.append(Patch(facecolor="#999", hatch="xx", edgecolor="white",
                             label="this kernel's, HVO off and on"))
    _, basis = summary.capacity_basis(doc)
    notes = [f"Capacity: {basis}; altmap's reserve as a share of the whole backing it is "
             "sized by. Designs the run measured show its figures (equal to the model); "
             "* = modelled only."]
    if guest:
        region = guest[0]["region_bytes"]
        notes.append(f"guest rows: struct pages the kernel kept for each ndctl namespace mode "
                     f"on a {format_size(region)} NVDIMM region in a pagetax vm guest, as a share "
                     "of the region (DRAM: drop in free pages; device: region - namespace).")
    refused = [f"{_hvo_label(r)} refused: {r['refused']}"
               for r in (kernel or {}).get("memmap") or [] if "refused" in r]
    if (kernel or {}).get("refused", {}).get("memmap"):
        refused.append(f"kernel memmap refused: {kernel['refused']['memmap']}")
    if hvo:
        cap, _ = summary.capacity_basis(doc)
        # the model keeps a vmemmap page per huge page begun, so below or
        # between whole huge pages its share is larger than per huge page
        rounded = sorted({h["size"] for h in hvo if h["hvo"] and cap % h["huge_page_bytes"]})
        notes.append(f"kernel rows: struct page bytes {kernel['machine'].get('kernel', '?')} "
                     "keeps for hugetlb pages, 64 B per 4 KiB page less the vmemmap pages "
                     "its memmap counters (nr_memmap_pages + nr_memmap_boot_pages) gave back, "
                     "as a share of the huge pages; each under the model row it is held against."
                     + (f" The capacity is not a whole number of {' or '.join(rounded)} pages: "
                        "the model rows round it up to whole huge pages, the kernel rows do "
                        "not, so they differ by that." if rounded else ""))
    if refused:
        notes.append(("Not drawn: " if hvo else "No kernel rows: ") + "; ".join(refused) + ".")
    return _finish(fig, "metadata bytes per capacity", notes + [caption(doc)], handles)


def curves(plt, doc, field, ylabel, title, note, interval=None):
    """One line per design against segment size, a panel per op and pattern."""
    rows = doc["results"]
    panels = _op_panels(doc)
    st = styles(doc)
    segs = sorted({r["seg_bytes"] for r in rows})
    fig, axes = _panels(plt, len(panels), min(2, len(panels)), 6.4, 4.4)
    for ax, (op, pattern) in zip(axes, panels):
        for d in designs(doc):
            pts = sorted((r["seg_bytes"], r) for r in rows
                         if r["design"] == d and r["op"] == op and r["pattern"] == pattern)
            if not pts:
                continue
            ax.plot([s for s, _ in pts], [field(r) for _, r in pts], color=st[d]["color"],
                    marker=st[d]["marker"], markersize=4)
            ci = [(s, interval(r)) for s, r in pts if interval and interval(r)]
            if ci:
                ax.fill_between([s for s, _ in ci], [c[0] for _, c in ci],
                                [c[1] for _, c in ci], color=st[d]["color"], alpha=0.15,
                                linewidth=0)
        _seg_axis(ax, segs)
        ax.set_yscale("log")
        _plain_axis(ax)
        ax.set_ylabel(ylabel)
        ax.set_title(_op_title(op, pattern))
        ax.grid(True, alpha=0.3)
    return _finish(fig, title, [note, caption(doc)], _line_handles(doc, designs(doc)))


def latency_figure(plt, doc):
    """Per-I/O latency CDF per design, a panel per op, pattern and size; None
    when no row carries latencies (a run without --segs-per-io)."""
    rows = [r for r in doc["results"] if (r.get("latency") or {}).get("cdf")]
    if not rows:
        return None
    st = styles(doc)
    panels = sorted({(r["op"], r["pattern"], r["seg_bytes"]) for r in rows})
    segs = sorted({p[2] for p in panels})
    names = [d for d in designs(doc) if any(r["design"] == d for r in rows)]
    clock = max((r.get("clock_ns") or 0) for r in rows)
    fig, axes = _panels(plt, len(panels), min(len(segs), 3), 4.4, 3.3)
    for ax, (op, pattern, seg) in zip(axes, panels):
        for r in rows:
            if (r["op"], r["pattern"], r["seg_bytes"]) != (op, pattern, seg):
                continue
            pts = [(ns, f) for ns, f in r["latency"]["cdf"] if ns > 0]
            if pts:
                ax.step([p[0] for p in pts], [p[1] for p in pts], where="post",
                        color=st[r["design"]]["color"], linewidth=1.3)
        ax.axhline(0.99, color="#888", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        left, right = ax.get_xlim()
        if 0 < left < clock:  # below one clock read the subtraction, not the I/O, sets the value
            ax.axvspan(left, clock, color="#000", alpha=0.06, linewidth=0)
            ax.set_xlim(left, right)
        ax.set_ylim(0, 1.02)
        _time_axis(ax)
        ax.set_xlabel("latency of one I/O")
        ax.set_ylabel("fraction of I/Os ≤ x")
        ax.set_title(f"{op} {pattern} {summary.seg_label(seg)}", fontsize="medium")
        ax.grid(True, alpha=0.3)
    k = doc["config"].get("segs_per_io")
    lat = rows[0]["latency"]
    per_io = f" of {summary.per_io_text(doc['config'])}" if k else ""
    return _finish(fig, f"latency per I/O{per_io}, as a CDF", [
        "Each step: the share of the instrumented repetitions' I/Os (build + copy + release) "
        f"that took at most x, clock reads subtracted; buckets are at most "
        f"{lat.get('resolution_pct', 0):.2g} % wide. Dotted: the 99th percentile. Shaded: "
        "within one clock read of zero, where the clock's resolution, not the I/O, sets the "
        "value (I/Os at or below 0 ns after the subtraction start the step there).", caption(doc)],
        _line_handles(doc, names))


def figures(plt, doc, memmaps=(), kernel=None):
    """{name: figure} in the order the page shows them; a picture the run
    has no data for is left out."""
    out = {
        "ratio_vec": ratio_figure(plt, doc),
        "phases": phase_figure(plt, doc),
        "metadata": metadata_figure(plt, doc, memmaps, kernel),
        "throughput": curves(plt, doc, lambda r: r["gbps"], "GB/s (bytes once, GB = 10⁹)",
                             "throughput against segment size",
                             "Band: the 95 % bootstrap interval of the median.",
                             interval=lambda r: r.get("gbps_ci")),
        "ns_per_seg": curves(plt, doc, lambda r: r["ns_per_seg"], "ns per segment",
                             "cost per segment (build + copy + release)",
                             "Median repetition time over its segments."),
        "latency": latency_figure(plt, doc),
    }
    return {name: fig for name, fig in out.items() if fig is not None}


def plot(doc, outdir, fmt="png", memmaps=(), kernel=None):
    """Write every figure the run has data for; returns {name: path}: the
    run, any memmap files, a kernel file (report_page.load's three)."""
    if fmt not in FORMATS:
        raise PagetaxError(f"unknown plot format {fmt!r} (choose from png, svg)")
    plt = _pyplot()
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise PagetaxError(f"-o {outdir}: {e.strerror}") from None
    paths = {}
    for name, fig in figures(plt, doc, memmaps, kernel).items():
        path = os.path.join(outdir, f"{name}.{fmt}")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[name] = path
    return paths

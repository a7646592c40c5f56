"""Pictures of a run: throughput and ns per segment against segment size,
and metadata bytes per capacity.  matplotlib is needed only here:
pip install 'pagetax[plot]'."""
import os

from . import metadata as _meta
from .errors import PagetaxError
from .sizes import format_size

FORMATS = ("png", "svg")


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise PagetaxError("plots need matplotlib: pip install 'pagetax[plot]'") from None
    return plt


def caption(doc):
    m = doc["machine"]
    b = m.get("backing", {})
    cfg = doc["config"]
    return (f"{m['cpu_model']}, {m['cores']} cores, {m['kernel']}; backing {b.get('kind')} "
            f"({b.get('fs_type')}, {b.get('mapping', {}).get('page_size')} pages); "
            f"cache {cfg['cache']}; median of {cfg['repeat']} x {format_size(cfg['io_size'])}"
            + (f" per thread, {cfg['threads']} threads (GB/s aggregate)"
               if cfg.get("threads", 1) > 1 else "")
            + ("; PARTIAL" if doc.get("partial") else ""))


def _by_design(rows, op, pattern, field):
    lines = {}
    for r in rows:
        if r["op"] == op and r["pattern"] == pattern:
            lines.setdefault(r["design"], []).append((r["seg_bytes"], field(r)))
    return {d: sorted(v) for d, v in lines.items()}


def _curves(plt, doc, field, ylabel, title, interval=None):
    rows = doc["results"]
    panels = sorted({(r["op"], r["pattern"]) for r in rows})
    if not panels:
        raise PagetaxError("the result file has no rows to plot")
    cols = min(2, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.2 * cols, 4.2 * nrows + 0.6), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    for ax, (op, pattern) in zip(flat, panels):
        for design, pts in _by_design(rows, op, pattern, field).items():
            xs, ys = zip(*pts)
            line, = ax.plot(xs, ys, marker="o", label=design)
            if interval:  # the 95 % bootstrap interval of the median, as a band
                band = _by_design([r for r in rows if r["design"] == design and interval(r)],
                                  op, pattern, interval)
                if band.get(design):
                    bx, ci = zip(*band[design])
                    ax.fill_between(bx, [c[0] for c in ci], [c[1] for c in ci],
                                    color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("segment size (bytes)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{op} ({'gather' if op == 'read' else 'scatter'}), {pattern}")
        ax.grid(True, which="both", alpha=0.3)
    flat[len(panels) - 1].legend(fontsize="small", loc="best")
    fig.suptitle(title)
    fig.text(0.5, 0.01, caption(doc), ha="center", fontsize="small")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    return fig


def _metadata_bars(plt, doc):
    cap = doc["config"]["size"]
    rows = _meta.table(cap)
    fig, ax = plt.subplots(figsize=(9, 4.4))
    names = [r["design"] + ("" if r["data_path"] else "*") for r in rows]
    dram = [100 * r["dram_bytes"] / cap for r in rows]
    dev = [100 * r["device_bytes"] / cap for r in rows]
    ax.bar(names, dram, label="DRAM")
    ax.bar(names, dev, bottom=dram, label="device")
    ax.set_ylabel("% of capacity")
    ax.set_title(f"metadata bytes per capacity ({format_size(cap)}; * = modelled only)")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    fig.text(0.5, 0.01, caption(doc), ha="center", fontsize="small")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot(doc, outdir, fmt="png"):
    """Write throughput, ns_per_seg and metadata figures; returns their paths."""
    if fmt not in FORMATS:
        raise PagetaxError(f"unknown plot format {fmt!r} (choose from png, svg)")
    plt = _pyplot()
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise PagetaxError(f"-o {outdir}: {e.strerror}") from None
    figures = {
        "throughput": _curves(plt, doc, lambda r: r["gbps"], "GB/s (bytes once, GB = 1e9)",
                              "throughput against segment size (band: 95% interval of the median)",
                              interval=lambda r: r.get("gbps_ci")),
        "ns_per_seg": _curves(plt, doc, lambda r: r["ns_per_seg"], "ns per segment",
                              "cost per segment (build + copy + release)"),
        "metadata": _metadata_bars(plt, doc),
    }
    paths = {}
    for name, fig in figures.items():
        path = os.path.join(outdir, f"{name}.{fmt}")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[name] = path
    return paths

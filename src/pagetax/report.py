"""The run table and the result file."""
import json
import io
import os
import tempfile
import time

from rich import box
from rich.console import Console
from rich.table import Table

from .errors import PagetaxError
from .sizes import format_size
from .summary import PHASES, cache_text, io_shape_text, per_io_text, phase_per_segment


def human_bytes(n):
    """Decimal units, as every figure here (GB = 10^9)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def capacity_text(n):
    """'400 GB' for decimal capacities, '1 TiB' for binary ones."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n % scale == 0:
            return f"{n // scale} {unit}"
    return human_bytes(n)


METADATA_TABLE_DROP = ("64B segs", "4K segs", "B / 4K page", "device")


def metadata_table(capacity, rows, leave_out=()):
    """`pagetax metadata`: every design's footprint at one capacity; the
    columns named in leave_out left out (fit)."""
    t = Table(title=f"metadata for {capacity_text(capacity)} = {capacity:,} bytes",
              caption=("static bytes; the last two columns are vector bytes per 1 MiB I/O of "
                       "aligned 4 KiB or 64 B segments; * = modelled, no data path; "
                       "sources: pagetax/metadata.py"),
              header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    names = ("design", "DRAM", "device", "% capacity", "B / 4K page", "4K segs", "64B segs")
    keep = [i for i, name in enumerate(names) if name not in leave_out]
    for i in keep:
        t.add_column(names[i], justify="left" if names[i] == "design" else "right", no_wrap=True)
    for r in rows:
        folio = f" @{r['folio_size']} folios" if r.get("folio_size") else ""
        per_page = (r["dram_bytes"] + r["device_bytes"]) * 4096 / capacity
        cells = (r["design"] + folio + ("" if r["data_path"] else " *"), f"{r['dram_bytes']:,}",
                 f"{r['device_bytes']:,}", f"{r['percent']:.6g} %", f"{per_page:.4g}",
                 f"{r['per_io_bytes']['4096']:,}", f"{r['per_io_bytes']['64']:,}")
        t.add_row(*(cells[i] for i in keep))
    return t


def _ratio(x):
    return "-" if x is None else f"{x:.2f}"


def meta_cell(meta):
    """Static metadata as a share of capacity, and where it lives."""
    if not meta or not meta.get("allocated_bytes"):
        return "-"
    return f"{meta['percent']:.3g}% {'dev' if meta['allocated_where'] == 'device' else 'dram'}"


def threads_pinned(cfg):
    cpus = cfg.get("cpus")
    return f" pinned to CPUs {','.join(map(str, cpus))}" if cpus else " unpinned"


def table(doc, leave_out=()):
    """Per op, pattern and segment size: each design's throughput and cost;
    the columns named in leave_out left out (fit)."""
    cfg = doc["config"]
    backing = doc["machine"].get("backing", {})
    mapping = backing.get("mapping", {})
    persist = ""
    if cfg.get("persist", "none") != "none":
        persist = (f"\npersist {cfg['persist']} ({cfg.get('persist_resolved')}"
                   f"{', fence per entry' if cfg.get('persist_each') else ''}"
                   f"{'' if backing.get('map_sync') or backing.get('kind') == 'devdax' else ', not persistent: flush cost on DRAM'})")
    threads = cfg.get("threads", 1)
    per_io = cfg.get("segs_per_io") or 0
    per_thread = (f", median of {cfg['repeat']} reps of {format_size(cfg['io_size'])}"
                  if threads == 1 else
                  f", {threads} threads{threads_pinned(cfg)}: median of {cfg['repeat']} reps "
                  f"of {format_size(cfg['io_size'])} per thread")
    t = Table(title=(f"pagetax run: {doc['machine']['cpu_model']}, backing {backing.get('kind')} "
                     f"({backing.get('fs_type')}, {mapping.get('page_size')} pages), "
                     f"{format_size(cfg['size'])}, cache {cfg['cache']}"
                     f"{', ' + str(threads) + ' threads' if threads > 1 else ''}\n"
                     f"{io_shape_text(cfg)}; {cache_text(doc['machine'])}{persist}"),
              caption=("GB/s = bytes copied once / median time per repetition, GB = 1e9"
                       + ("" if threads == 1 else " (all threads' bytes / wall time; per thread: "
                          "each thread's own)")
                       + f"{per_thread}, spread = (worst - best) / median; ns/seg"
                       + ("" if threads == 1 else " (one thread's time per segment)")
                       + " split into build + copy + release (* = the three, medians of the "
                       "instrumented repetitions, do not add up to ns/seg within the spread: "
                       "phases_note in the JSON says by how much); "
                       + (f"p99/io = 99th percentile ns of one I/O of {per_io_text(cfg)} "
                          "(build + copy + release, clock reads subtracted; all "
                          "percentiles in the JSON); " if per_io else "")
                       + "metadata = static descriptor bytes / capacity, and where they live"),
              header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = [("op", "left"), ("pattern", "left"), ("seg", "right"), ("design", "left"),
               ("GB/s", "right"), ("best", "right"), ("spread", "right")]
    if threads > 1:
        columns.append(("per thread", "right"))
    columns += [("ns/seg", "right"), ("build", "right"), ("copy", "right"), ("release", "right")]
    if per_io:
        columns.append(("p99/io", "right"))
    columns += [("x vec", "right"), ("x memcpy", "right"), ("metadata", "right")]
    keep = [i for i, (name, _) in enumerate(columns) if name not in leave_out]
    for i in keep:
        t.add_column(columns[i][0], justify=columns[i][1], no_wrap=True)
    last = None
    for r in sorted(doc["results"], key=lambda r: (r["op"], r["pattern"], r["seg_bytes"])):
        cell = (r["op"], r["pattern"], r["seg_bytes"])
        if last is not None and cell != last:
            t.add_section()
        first = cell != last
        last = cell
        per_seg = phase_per_segment(r)  # None for a peer that times whole I/Os (fio)
        phases = [f"{per_seg[k]:.1f}" for k in PHASES] if per_seg else ["-"] * len(PHASES)
        extra = []
        if threads > 1:
            g = r.get("thread_gbps") or []
            extra = [f"{min(g):.2f}-{max(g):.2f}" if g else "-"]
        lat = r.get("latency")
        p99 = [f"{lat['p99_ns']:.0f}" if lat else "-"] if per_io else []
        cells = [r["op"] if first else "", r["pattern"] if first else "",
                 format_size(r["seg_bytes"]) if first else "", r["design"],
                 f"{r['gbps']:.2f}", f"{r['gbps_best']:.2f}", f"{r['spread_pct']:.1f}%",
                 *extra, f"{r['ns_per_seg']:.1f}" + ("*" if r.get("phases_agree") is False
                                                     else ""),
                 *phases, *p99, _ratio(r.get("ratio_vec")),
                 _ratio(r.get("ratio_memcpy")), meta_cell(r.get("metadata"))]
        t.add_row(*(cells[i] for i in keep))
    return t


def print_wide(console, renderable, width):
    """Print at least `width` columns wide: a narrow terminal wraps lines,
    which is better than rich cutting a figure short with an ellipsis (the
    run table is fitted to the terminal first: fit)."""
    saved = console.width
    console.width = max(saved, width)
    try:
        console.print(renderable)
    finally:
        console.width = saved


def _natural_width(table):
    """The widest line of the table's body as rich draws it with room to
    spare (title and caption wrap; cells do not)."""
    title, caption = table.title, table.caption
    table.title = table.caption = None
    try:
        wide = Console(width=10 ** 4, record=True, file=io.StringIO())
        wide.print(table)
        return max((len(line.rstrip()) for line in wide.export_text().splitlines()), default=0)
    finally:
        table.title, table.caption = title, caption


def fit(console, build, drop):
    """build(leave_out) narrowed to the terminal: the columns named in
    `drop` left out, in that order, until the table fits, and the caption
    says which (the JSON keeps every figure).  Off a terminal (a pipe, a
    file) nothing is left out."""
    table = build(())
    if not console.is_terminal:
        return table
    left_out = []
    for name in drop:
        if _natural_width(table) <= console.width:
            break
        left_out.append(name)
        table = build(tuple(left_out))
    if left_out:
        note = (f"left out to fit {console.width} columns: {', '.join(left_out)} "
                "(a wider terminal, or --json, has them)")
        table.caption = f"{table.caption}; {note}" if table.caption else note
    return table


RUN_TABLE_DROP = ("best", "spread", "per thread", "x memcpy", "p99/io", "metadata", "copy")


def print_fitted(console, build, drop):
    """A table fitted to the terminal (fit), printed so that no cell is cut
    short: as wide as it is, wrapping in a narrower terminal if it must."""
    fitted = fit(console, build, drop)
    print_wide(console, fitted, _natural_width(fitted) + 2)


def print_table(doc, console=None):
    print_fitted(console or Console(), lambda leave_out: table(doc, leave_out), RUN_TABLE_DROP)


# Not results/: asv reads every .json below its results_dir as a machine's
# results and warns about any folder there without a machine.json.
DEFAULT_DIR = "runs"


def default_path(directory=DEFAULT_DIR):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(directory, f"pagetax-run-{stamp}-{os.getpid()}.json")


def check_json_path(path, force=False):
    """Refuse a result path that cannot or must not be written.  Only the
    default folder (runs/, beside where pagetax runs) is created; a
    folder in a path the user gave must exist, as --backing's must."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise PagetaxError(f"--json {path}: is a directory")
    if os.path.exists(path) and not force:
        raise PagetaxError(f"--json {path}: exists; pass --force to replace it")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory) and directory != os.path.abspath(DEFAULT_DIR):
        raise PagetaxError(f"--json {path}: folder {directory} does not exist; create it first")
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass  # the only sure test: root passes access() on /proc and read-only mounts
    except OSError as e:
        raise PagetaxError(f"--json {path}: cannot write there: {e.strerror}") from None
    return path


def write_json(doc, path, force=False):
    """Write atomically (temp file, fsync, then link or rename into place).
    An existing file is replaced only with force."""
    path = check_json_path(path, force)
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pagetax-", suffix=".json.tmp", dir=directory)
    except OSError as e:
        raise PagetaxError(f"--json {path}: cannot write there: {e.strerror}") from None
    try:
        # mkstemp makes 0600; a result is for colleagues and web servers too,
        # so it gets what the umask allows, as any other file would
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails rather than clobber a file made meanwhile
            os.unlink(tmp)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise PagetaxError(f"--json {path}: cannot write: {e.strerror}") from None
    return path


def print_memmap_notes(console, rows):
    """Under `pagetax vm memmap`'s table: each mode's differences from the
    model, and why (vm.memmap_explanation)."""
    for r in rows:
        console.print()
        console.print(f"{r['namespace']} ({r['ndctl']}): {r['explanation']}", markup=False,
                      highlight=False)

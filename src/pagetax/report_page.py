"""`pagetax report RESULTS.json [MEMMAP.json ...] [KERNEL.json] -o DIR`: one
static HTML page that works when opened from disk (plots embedded as data
URIs, no scripts, no network).  A run made inside a `pagetax vm` guest
carries a banner that says so; `pagetax vm memmap --json` files add the
kernel's own struct pages, measured in a guest, beside pagetax's model; a
`pagetax kernel --json` file what the running kernel pays per page
(report_kernel.py)."""
import base64
import html
import json
import os
import re
import tempfile

from .html_tables import grouped_table as _grouped_table, table as _table
from . import plot as _plot
from . import report_kernel as _kernel
from .kernel import SCHEMA as KERNEL_SCHEMA
from . import summary as _summary
from .report import meta_cell
from .errors import PagetaxError
from .schema import BASELINE
from .sizes import format_size

CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 90em; }
table { border-collapse: collapse; margin: 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; } td.l, th.l { text-align: left; }
tbody.cell { border-top: 2px solid #999; } td[rowspan] { vertical-align: top; }
.scroll { overflow-x: auto; max-width: 100%; margin: 1em 0; }
pre { overflow-x: auto; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; box-sizing: border-box; }
figcaption, .note { color: #666; font-size: 0.9em; max-width: 60em; }
ul.summary { font-size: 1.05em; max-width: 60em; padding-left: 1.2em; }
ul.summary li { margin: 0.4em 0; }
.guest { border: 3px solid #c25400; background: #fff3e0; padding: 0.6em 1.2em; margin: 1em 0;
         font-size: 1.05em; }
.guest .warn { color: #a00; font-weight: bold; }
.guest dt { font-weight: bold; float: left; clear: left; width: 9em; }
.guest dd { margin-left: 9em; }
ul.explain li { margin: 0.5em 0; max-width: 60em; }
p.answer { font-size: 1.05em; max-width: 60em; }
@media (max-width: 40em) {
  body { margin: 0.6em; }
  .guest dt { float: none; width: auto; } .guest dd { margin-left: 1em; }
}
"""
MEMMAP_SCHEMA = "pagetax-vm-memmap/1"      # `pagetax vm memmap --json`
MEMMAP_ROW_KEYS = ("namespace", "ndctl", "region_bytes", "namespace_bytes", "dram_bytes",
                   "device_bytes", "model", "model_dram_bytes", "model_device_bytes")
MIB = 1 << 20


def _fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def load(paths):
    """(the run's result file or None, [memmap files], the kernel file or
    None) from paths in any order; a one-line PagetaxError for anything
    else."""
    from . import compare
    from .schema import SCHEMA
    run, memmaps, kernel = None, [], None
    for path in paths:
        doc = compare.read_json(path)
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if schema == MEMMAP_SCHEMA:
            memmaps.append(_memmap_doc(path, doc))
        elif schema == KERNEL_SCHEMA:
            if kernel is not None:
                raise PagetaxError(f"{path}: a second kernel file ({kernel['path']} is the "
                                   "first): a report shows one kernel's figures")
            kernel = _kernel.check(path, doc)
        elif schema == SCHEMA:
            if run is not None:
                raise PagetaxError(f"{path}: a second run result ({run[0]} is the first): a "
                                   "report shows one run; compare two with pagetax compare")
            run = (path, compare.load(path))
        else:
            raise PagetaxError(f"{path}: neither a pagetax run result (schema {SCHEMA}), a "
                               f"pagetax vm memmap file (schema {MEMMAP_SCHEMA}) nor a pagetax "
                               f"kernel file (schema {KERNEL_SCHEMA})")
    return (run[1] if run else None), memmaps, kernel


def _memmap_doc(path, doc):
    """A memmap file's rows checked, each with its differences from the model
    and their explanation (computed for a file written before it had them)."""
    from .guest.memmap import memmap_explained
    rows = doc.get("rows")
    if not isinstance(rows, list) or not rows:
        raise PagetaxError(f"{path}: has no list of memmap rows")
    explained = []
    for i, row in enumerate(rows):
        missing = [k for k in MEMMAP_ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise PagetaxError(f"{path}: memmap row {i} lacks {', '.join(missing)}; "
                               "was the file edited or cut short?")
        if "explanation" not in row:
            try:
                row = memmap_explained(row)
            except PagetaxError as e:
                raise PagetaxError(f"{path}: memmap row {i}: {e}") from None
        explained.append(row)
    return dict(doc, rows=explained, path=path)


def _guest_banner(guest):
    """A run made in a `pagetax vm` guest says so before anything else, and
    whether its timings mean anything."""
    if not guest:
        return ""
    ns = guest.get("namespace") or {}
    kind = ", ".join(x for x in (ns.get("mode"), ns.get("map") and f"map={ns['map']}",
                                 ns.get("fs"), ns.get("align") and f"align={ns['align']}") if x)
    accel = str(guest.get("accelerator", "?"))
    nvdimm = guest.get("nvdimm_bytes")
    labels = [("emulator", f"{guest.get('emulator', '?')} {guest.get('emulator_version', '')}"),
              ("accelerator", f"{accel.upper()}: {guest.get('accelerator_reason', '?')}"),
              ("guest kernel", guest.get("guest_kernel", "?")),
              ("namespace", f"{ns.get('label', '?')} ({kind})"
               + (f" on a {format_size(nvdimm)} emulated NVDIMM" if nvdimm else ""))]
    if guest.get("timings_comparable"):
        verdict = f'<p>{html.escape(guest.get("timings_note", ""))}</p>'
    else:
        verdict = ('<p class="warn">The timings on this page are not comparable to a real '
                   f'machine.</p><p>{html.escape(guest.get("timings_note", ""))}</p>')
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in labels)
    return (f'<div class="guest" id="guest" role="note"><p><b>This run ran inside a '
            f'{html.escape(accel.upper())} guest</b> (pagetax vm), not on the host\'s own '
            f'hardware.</p><dl>{items}</dl>{verdict}</div>')


def _mib(n, sign=False):
    return f"{n / MIB:{'+' if sign else ''}.2f}"


def _memmap_section(m):
    """The kernel's struct pages per namespace mode, measured in fresh
    guests, beside pagetax's model, with why they differ."""
    rows = m["rows"]
    guest = rows[0].get("guest") or {}
    region = rows[0]["region_bytes"]
    table = _table(["create-namespace", "namespace bytes", "DRAM MiB", "device MiB", "model",
                    "model DRAM MiB", "model device MiB", "DRAM - model", "device - model"],
                   [[r["ndctl"], f"{r['namespace_bytes']:,}", _mib(r["dram_bytes"]),
                     _mib(r["device_bytes"]), r["model"], _mib(r["model_dram_bytes"]),
                     _mib(r["model_device_bytes"]),
                     _mib(r["dram_bytes"] - r["model_dram_bytes"], sign=True),
                     _mib(r["device_bytes"] - r["model_device_bytes"], sign=True)]
                    for r in rows])
    explain = "".join(f"<li><b>{html.escape(r['namespace'])}</b> ({html.escape(r['ndctl'])}): "
                      f"{html.escape(r['explanation'])}</li>" for r in rows)
    where = (f"{guest.get('emulator', 'QEMU')} {guest.get('emulator_version', '')} under "
             f"{str(guest.get('accelerator', '?')).upper()}, guest kernel "
             f"{guest.get('guest_kernel', '?')}") if guest else "a pagetax vm guest"
    return f"""<h2 id="memmap">The kernel's own struct pages, measured in a guest</h2>
<p class="note">{html.escape(os.path.basename(m["path"]))}: one fresh guest per namespace mode
({html.escape(where)}), on a {html.escape(format_size(region))} NVDIMM region.
DRAM: the drop in free pages (buddy and per-CPU lists, caches dropped) across
<code>ndctl create-namespace</code>; device: region size &minus; namespace size; model:
pagetax/metadata.py at the region's capacity. MiB = 2<sup>20</sup> bytes. Memory figures
hold under an emulator; no timings are involved.</p>
{table}
<ul class="explain">{explain}</ul>
"""


def render(doc=None, memmaps=(), kernel=None):
    """The page: a run (doc, a result file's contents), any memmap files
    and a kernel file (load()'s); any may be missing, not all."""
    if doc is None and not memmaps and kernel is None:
        raise PagetaxError("nothing to report: give a run result, a vm memmap file or a "
                           "kernel file")
    guest = (doc or {}).get("guest")
    body = (_guest_banner(guest) + _run_body(doc, memmaps, kernel)) if doc else ""
    body += _kernel.section(kernel, doc) if kernel else ""
    body += "".join(_memmap_section(m) for m in memmaps)
    title = "pagetax report" + (f" (in a {str(guest.get('accelerator', '?')).upper()} guest)"
                                if guest else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>pagetax report</h1>
{body}</body></html>
"""


def _summary_html(doc):
    """The summary's sentences, design names (in backquotes) as code."""
    items = "".join("<li>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line))
                    + "</li>" for line in _summary.lines(doc))
    return f'<ul class="summary" id="summary">{items}</ul>'


def _figure(images, name, alt, text):
    if name not in images:
        return ""
    return (f'<figure id="fig-{name}"><img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{images[name]}">'
            f"<figcaption>{text}</figcaption></figure>")


def _per_segment(x):
    return "-" if x is None else f"{x:.1f}"


def _run_table(doc):
    """The rows grouped by op, pattern and segment size, as the terminal
    table (report.table) groups them, with the phases, the metadata and,
    when the run recorded latencies, the 99th percentile per I/O."""
    threads = doc["config"].get("threads", 1)
    latency = any(r.get("latency") for r in doc["results"])
    cells = _summary.cells(doc["results"])
    headers = (["op", "pattern", "seg", "design", "GB/s", "best", "worst", "spread"]
               + (["GB/s per thread"] if threads > 1 else [])
               + ["ns/seg", "build", "copy", "release"] + (["p99/io"] if latency else [])
               + ["x vec", "x vec range", "x memcpy", "metadata"])
    groups = []
    for key in sorted(cells, key=lambda k: k[:3]):
        rows = []
        vec = cells[key].get(BASELINE)
        for r in cells[key].values():
            split = _summary.phase_per_segment(r) or {}
            p99 = (r.get("latency") or {}).get("p99_ns")
            lo_hi = _summary.ratio_range(r, vec) if vec else None
            rows.append([r["design"], _fmt(r["gbps"]), _fmt(r["gbps_best"]), _fmt(r["gbps_worst"]),
                         f"{r['spread_pct']:.1f}%"]
                        + ([" / ".join(_fmt(g) for g in r.get("thread_gbps", []))]
                           if threads > 1 else [])
                        + [_fmt(r["ns_per_seg"], 1)]
                        + [_per_segment(split.get(k)) for k in _summary.PHASES]
                        + ([_summary.duration_label(p99) if p99 is not None else "-"]
                           if latency else [])
                        + [_fmt(r.get("ratio_vec")),
                           f"{lo_hi[0]:.2f}–{lo_hi[1]:.2f}" if lo_hi else "-",
                           _fmt(r.get("ratio_memcpy")), meta_cell(r.get("metadata"))])
        groups.append(((key[0], key[1], _summary.seg_label(key[2])), rows))
    return _grouped_table(headers, groups, 3)


def _metadata_table(doc):
    """One row per design, one figure each: the run's where it measured
    the design, the model on the same basis where it did not."""
    rows = []
    for m in _summary.metadata_rows(doc):
        got = m["measured"]
        rows.append([m["name"] + ("" if m["data_path"] else " *"), f"{m['capacity_bytes']:,}",
                     f"{m['dram_bytes']:,}", f"{m['device_bytes']:,}", f"{m['percent']:.4g} %",
                     f"{got['allocated_bytes']:,}" if got else "-",
                     f"{got['rss_delta_bytes']:,}" if got else "-",
                     ("yes" if got["rss_agrees"] else f"no: {got['rss_note']}") if got else "-",
                     f"{m['per_io_bytes']['4096']:,}", f"{m['per_io_bytes']['64']:,}"])
    return _table(["design", "capacity", "DRAM", "device", "% capacity", "allocated",
                   "RSS growth", "RSS agrees", "per 1 MiB I/O, 4 KiB segs",
                   "per 1 MiB I/O, 64 B segs"], rows)


def _run_body(doc, memmaps=(), kernel=None):
    threads = doc["config"].get("threads", 1)
    threads_note = ("" if threads == 1 else
                    f" With {threads} threads GB/s is aggregate (all threads' bytes over each "
                    "repetition's wall time) and ns/seg is one thread's time per segment.")
    with tempfile.TemporaryDirectory(prefix="pagetax-report-") as tmp:
        images = {}
        for name, path in _plot.plot(doc, tmp, memmaps=memmaps, kernel=kernel).items():
            with open(path, "rb") as f:
                images[name] = base64.b64encode(f.read()).decode()
    _, basis = _summary.capacity_basis(doc)
    per_io = _summary.per_io_text(doc["config"]) if doc["config"].get("segs_per_io") else ""
    latency = ""
    if "latency" in images:
        latency = f"""<h2 id="latency">Latency per I/O</h2>
{_figure(images, "latency", "latency CDF per design",
         f"One I/O = the build, copy and release of {per_io or 'the whole repetition'}. "
         "The table's p99/io is the 99th "
         "percentile of the same I/Os.")}"""
    p99_note = f"; p99/io = 99th percentile of one I/O of {per_io}" if latency and per_io else ""
    machine = json.dumps(doc["machine"], indent=1)
    made = doc.get("pagetax") or {}
    made_by = (f"pagetax {made.get('version', '?')}, commit {made.get('commit') or 'unknown'}"
               if made else "a pagetax from before result files named their version")
    config = json.dumps(doc["config"], indent=1)
    partial = "<p><b>PARTIAL: this run was interrupted.</b></p>" if doc.get("partial") else ""
    no_vec = ("" if "ratio_vec" in images else
              '<p class="note">No picture against <code>vec</code>: the run has no vec rows.</p>')
    return f"""<p class="note">{html.escape(_plot.caption(doc))}. Started {html.escape(doc.get("started", "?"))}.
GB/s counts bytes copied once (bcopy convention), GB = 10<sup>9</sup>.{html.escape(threads_note)}</p>
{partial}
<h2 id="summary-head">Summary</h2>
{_summary_html(doc)}
<h2 id="vs-vec">Each design against <code>vec</code></h2>
{no_vec}{_figure(images, "ratio_vec", "x vec against segment size",
                 "Median GB/s over vec's in the same op, pattern and size; bars from the "
                 "design's slowest repetition over vec's fastest to its fastest over vec's "
                 "slowest, the widest the ratio can be, as repetitions are not paired; the grey "
                 "band is vec against itself.")}
<h2 id="phases">Where the time goes</h2>
{_figure(images, "phases", "build, copy and release per segment",
         "Median ns per segment of each phase (instrumented repetitions, each phase between "
         "two marks, a fence and a clock read, one mark subtracted per phase per I/O); the "
         "tick is the timed median, which the phases need not add up to.")}
<h2>Throughput and cost per segment</h2>
<p class="note">Per op, pattern and segment size: GB/s median, best and worst repetition;
spread = (worst &minus; best) / median; ns/seg and its build, copy and release (ns per
segment; &ldquo;-&rdquo; for rows that time whole I/Os); x vec range as in the picture above;
metadata = static descriptor bytes / capacity, and where they live{p99_note}.</p>
{_run_table(doc)}
{latency}
<h2 id="metadata">Metadata</h2>
<p class="note">This run's metadata figures are all shares of one capacity: {html.escape(basis)}.
altmap's reserve is sized, as ndctl's is, by the whole backing, so its row says so.
Designs this run measured show its figures: the model, the engine's allocation and the growth
of resident memory at attach; * = modelled only. The last two columns are the vector bytes a
1 MiB I/O needs.</p>
{_metadata_table(doc)}
{_figure(images, "metadata", "metadata bytes per capacity",
         "Log scale, so the smallest tables show." + (
             " Hatched: the kernel's own struct pages, measured in a guest (below)."
             if memmaps else "") + (
             " Cross-hatched, under the model row each is held against: the struct pages "
             "this kernel keeps for hugetlb pages with HVO off and on, from its memmap "
             "counters (below)." if _kernel.measured_memmap(kernel) else ""))}
<h2 id="raw">Raw throughput</h2>
{_figure(images, "throughput", "throughput against segment size",
         "Median GB/s; band: the 95 % bootstrap interval of the median.")}
{_figure(images, "ns_per_seg", "ns per segment against segment size",
         "Median repetition time over its segments.")}
<h2>Machine</h2>
<p>Measured by {html.escape(made_by)}.</p>
<pre>{html.escape(machine)}</pre>
<h2>Configuration</h2>
<pre>{html.escape(config)}</pre>
"""


def write(doc, outdir, memmaps=(), kernel=None):
    page = render(doc, memmaps, kernel)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise PagetaxError(f"-o {outdir}: {e.strerror}") from None
    path = os.path.join(outdir, "index.html")
    with open(path, "w") as f:
        f.write(page)
    return path

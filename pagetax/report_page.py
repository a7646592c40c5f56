"""`pagetax report RESULTS.json [MEMMAP.json ...] -o DIR`: one static HTML
page that works when opened from disk (plots embedded as data URIs, no
scripts, no network).  A run made inside a `pagetax vm` guest carries a
banner that says so; `pagetax vm memmap --json` files add the kernel's own
struct pages, measured in a guest, beside pagetax's model."""
import base64
import html
import json
import os
import tempfile

from . import metadata as _meta
from . import plot as _plot
from .errors import PagetaxError
from .sizes import format_size

CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #666; font-size: 0.9em; }
.guest { border: 3px solid #c25400; background: #fff3e0; padding: 0.6em 1.2em; margin: 1em 0;
         font-size: 1.05em; }
.guest .warn { color: #a00; font-weight: bold; }
.guest dt { font-weight: bold; float: left; clear: left; width: 9em; }
.guest dd { margin-left: 9em; }
ul.explain li { margin: 0.5em 0; max-width: 60em; }
"""
MEMMAP_SCHEMA = "pagetax-vm-memmap/1"      # `pagetax vm memmap --json`
MEMMAP_ROW_KEYS = ("namespace", "ndctl", "region_bytes", "namespace_bytes", "dram_bytes",
                   "device_bytes", "model", "model_dram_bytes", "model_device_bytes")
MIB = 1 << 20


def _table(headers, rows, left=1):
    out = ["<table><tr>"]
    out += [f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers)]
    out.append("</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{html.escape(str(c))}</td>'
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def load(paths):
    """(the run's result file or None, [memmap files]) from paths in any
    order; a one-line PagetaxError for anything else."""
    from . import compare
    from .schema import SCHEMA
    run, memmaps = None, []
    for path in paths:
        doc = compare.read_json(path)
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if schema == MEMMAP_SCHEMA:
            memmaps.append(_memmap_doc(path, doc))
        elif schema == SCHEMA:
            if run is not None:
                raise PagetaxError(f"{path}: a second run result ({run[0]} is the first): a "
                                   "report shows one run; compare two with pagetax compare")
            run = (path, compare.load(path))
        else:
            raise PagetaxError(f"{path}: neither a pagetax run result (schema {SCHEMA}) nor "
                               f"a pagetax vm memmap file (schema {MEMMAP_SCHEMA})")
    return (run[1] if run else None), memmaps


def _memmap_doc(path, doc):
    """A memmap file's rows checked, each with its differences from the model
    and their explanation (computed for a file written before it had them)."""
    from . import vm
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
                row = vm.memmap_explained(row)
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


def render(doc=None, memmaps=()):
    """The page: a run (doc, a result file's contents) and any memmap
    files (load()'s), either may be missing, not both."""
    if doc is None and not memmaps:
        raise PagetaxError("nothing to report: give a run result or a vm memmap file")
    guest = (doc or {}).get("guest")
    body = (_guest_banner(guest) + _run_body(doc)) if doc else ""
    body += "".join(_memmap_section(m) for m in memmaps)
    title = "pagetax report" + (f" (in a {str(guest.get('accelerator', '?')).upper()} guest)"
                                if guest else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>pagetax report</h1>
{body}</body></html>
"""


def _run_body(doc):
    rows = sorted(doc["results"], key=lambda r: (r["op"], r["pattern"], r["seg_bytes"]))
    threads = doc["config"].get("threads", 1)
    run_rows = [[r["op"], r["pattern"], format_size(r["seg_bytes"]), r["design"], _fmt(r["gbps"]),
                 _fmt(r["gbps_best"]), f"{r['spread_pct']:.1f}%"]
                + ([" / ".join(_fmt(g) for g in r.get("thread_gbps", []))] if threads > 1 else [])
                + [_fmt(r["ns_per_seg"], 1), _fmt(r.get("ratio_vec")), _fmt(r.get("ratio_memcpy"))]
                for r in rows]
    run_headers = (["op", "pattern", "seg", "design", "GB/s", "best", "spread"]
                   + (["GB/s per thread"] if threads > 1 else [])
                   + ["ns/seg", "x vec", "x memcpy"])
    threads_note = ("" if threads == 1 else
                    f" With {threads} threads GB/s is aggregate (all threads' bytes over each "
                    "repetition's wall time) and ns/seg is one thread's time per segment.")
    with tempfile.TemporaryDirectory(prefix="pagetax-report-") as tmp:
        images = {}
        for name, path in _plot.plot(doc, tmp).items():
            with open(path, "rb") as f:
                images[name] = base64.b64encode(f.read()).decode()
    meta = doc.get("metadata", {})
    meta_rows = [[d, f"{m['model_dram_bytes']:,}", f"{m['model_device_bytes']:,}",
                  f"{m['percent']:.4g} %", f"{m['allocated_bytes']:,}", f"{m['rss_delta_bytes']:,}",
                  "yes" if m["rss_agrees"] else f"no: {m['rss_note']}"] for d, m in meta.items()]
    cap = doc["config"]["size"]
    model_rows = [[r["design"] + ("" if r["data_path"] else " *"), f"{r['dram_bytes']:,}",
                   f"{r['device_bytes']:,}", f"{r['percent']:.6g} %",
                   f"{r['per_io_bytes']['4096']:,}", f"{r['per_io_bytes']['64']:,}"]
                  for r in _meta.table(cap)]
    machine = json.dumps(doc["machine"], indent=1)
    config = json.dumps(doc["config"], indent=1)
    partial = "<p><b>PARTIAL: this run was interrupted.</b></p>" if doc.get("partial") else ""
    return f"""<p class="note">{html.escape(_plot.caption(doc))}. Started {html.escape(doc.get("started", "?"))}.
GB/s counts bytes copied once (bcopy convention), GB = 10<sup>9</sup>; median, best and
spread = (worst &minus; best) / median over the repetitions.{html.escape(threads_note)}</p>
{partial}
<h2>Throughput and cost per segment</h2>
{_table(run_headers, run_rows, left=4)}
<h2>Plots</h2>
<img alt="throughput against segment size" src="data:image/png;base64,{images['throughput']}">
<img alt="ns per segment against segment size" src="data:image/png;base64,{images['ns_per_seg']}">
<h2>Metadata</h2>
<p class="note">Measured in this run: the model beside the engine's allocation and the
growth of resident memory at attach.</p>
{_table(["design", "model DRAM", "model device", "% capacity", "allocated", "RSS delta", "RSS agrees"],
        meta_rows)}
<p class="note">The model for the backing's capacity ({cap:,} bytes), with the bytes of
vector a 1 MiB I/O needs in 4 KiB and 64 B segments; * = modelled only.</p>
{_table(["design", "DRAM", "device", "% capacity", "per MiB, 4K segs", "per MiB, 64 B segs"], model_rows)}
<img alt="metadata bytes per capacity" src="data:image/png;base64,{images['metadata']}">
<h2>Machine</h2>
<pre>{html.escape(machine)}</pre>
<h2>Configuration</h2>
<pre>{html.escape(config)}</pre>
"""


def write(doc, outdir, memmaps=()):
    page = render(doc, memmaps)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise PagetaxError(f"-o {outdir}: {e.strerror}") from None
    path = os.path.join(outdir, "index.html")
    with open(path, "w") as f:
        f.write(page)
    return path

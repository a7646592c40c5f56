"""`pagetax report RESULTS.json -o DIR`: one static HTML page that works when
opened from disk (plots embedded as data URIs, no scripts, no network)."""
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
"""


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


def render(doc):
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
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pagetax report</title>
<style>{CSS}</style></head><body>
<h1>pagetax report</h1>
<p class="note">{html.escape(_plot.caption(doc))}. Started {html.escape(doc.get("started", "?"))}.
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
</body></html>
"""


def write(doc, outdir):
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise PagetaxError(f"-o {outdir}: {e.strerror}") from None
    path = os.path.join(outdir, "index.html")
    with open(path, "w") as f:
        f.write(render(doc))
    return path

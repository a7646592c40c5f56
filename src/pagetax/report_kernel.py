"""A `pagetax kernel --json` file (schema pagetax-kernel/1) in `pagetax
report` and its metadata picture: what the running kernel pays per page
beside the model, and the struct page bytes HugeTLB vmemmap optimization
(HVO) leaves, measured by the kernel's own memmap counters."""
import html
import os

from .html_tables import table as _table
from .errors import PagetaxError
from .metadata import PAGE, STRUCT_PAGE

KERNEL_KEYS = ("machine", "config", "meaning", "kernel")


def check(path, doc):
    """A kernel file's document with its path, or a one-line PagetaxError
    when it lacks what the page reads."""
    missing = [k for k in KERNEL_KEYS if k not in doc]
    if not missing and not isinstance(doc["kernel"], list):
        missing = ["a list of kernel entries"]
    if missing:
        raise PagetaxError(f"{path}: a kernel file without {', '.join(missing)}; was the file "
                           "edited or cut short?")
    return dict(doc, path=path)


def measured_memmap(k):
    """The kernel file's memmap rows that were measured (not refused)."""
    return [r for r in (k or {}).get("memmap") or [] if "refused" not in r]


def memmap_left_percent(row):
    """Struct page bytes the kernel keeps per huge page, as % of the huge
    page: 64 B per 4 KiB page less the vmemmap pages HVO freed."""
    size = row["huge_page_bytes"]
    left = STRUCT_PAGE * size // PAGE - row["freed_per_huge_page"] * PAGE
    return 100 * left / size


def _per_page_table(k, table):
    entries = [e for e in k["kernel"] if e["paths"]]
    first = entries[0]["paths"] if entries else {}
    measured = {name for e in entries for name in e["paths"]}
    rows = []
    for name in list(table.ORDER) + sorted(measured - set(table.ORDER)):   # none left out
        if name not in measured:
            continue
        per_call = first.get(name, {}).get("per_call_ns")
        rows.append([name] + [table.figure(e["paths"][name]["per_page_ns"]) if name in e["paths"]
                              else "-" for e in entries]
                    + ["-" if per_call is None else f"{per_call:,.0f}",
                       k["meaning"].get(name, "")])
    headers = (["path"] + [table.BUFFER_LABEL.get(e["buffer"], e["buffer"]) for e in entries]
               + [f"ns per call, {entries[0]['buffer'] if entries else ''}", "per page holds"])
    return headers, rows


def _model_rows(k, table):
    return [[r["design"], r["folio_size"], table.figure(r["build_ns"]),
             table.figure(r["release_ns"]), table.figure(r["build_release_ns"])]
            for r in k.get("model") or []]


def _memmap_rows(k):
    out = []
    for r in k.get("memmap") or []:
        hvo = "on" if r["hvo"] else "off"
        if "refused" in r:
            out.append([r["size"], hvo, str(r["requested"]), "-", "-", r["model"], "-", "-",
                        f"refused: {r['refused']}"])
            continue
        out.append([r["size"], hvo, str(r["allocated"]), f"{r['freed_pages']:,}",
                    f"{r['freed_per_huge_page']:g}", r["model"],
                    f"{r['model_freed_per_huge_page']:g}", f"{memmap_left_percent(r):.4g} %",
                    "yes" if r["matches"] else "NO"])
    return out


def _refusals(k):
    whys = [f"refused: {what}: {why}" for what, why in (k.get("refused") or {}).items()]
    whys += [f"refused: {what} on {e['buffer']}: {why}" for e in k["kernel"]
             for what, why in (e.get("refused") or {}).items()]
    return whys


def _where(m):
    virt = (m.get("timing_context") or {}).get("virtualized")
    return (f"{m.get('kernel', '?')} on {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores"
            + (", virtualized" if virt else ""))


def _guest_note(k):
    """A file made in a `pagetax vm` guest says so, and whether its
    timings mean anything (TCG: only that each path ran)."""
    guest = k.get("guest")
    if not guest:
        return ""
    where = (f"Measured in a {str(guest.get('accelerator', '?')).upper()} guest on "
             f"{(guest.get('namespace') or {}).get('label', '?')}.")
    if not guest.get("timings_comparable", True):
        where += (" These timings say nothing of a real machine; what counts is that each "
                  "path ran and passed its check.")
    return f'<p class="note"><b>{html.escape(where)}</b></p>'


def _functions(k):
    """The function tracer's hits per buffer and path, where it ran."""
    return [f"{e['buffer']} {path}: "
            + (", ".join(f"{f} {n}" for f, n in sorted(hits.items(), key=lambda x: -x[1]))
               or "none of the traced functions")
            for e in k["kernel"] for path, hits in (e.get("functions") or {}).items()]


def section(k, run=None):
    """The page's section for kernel file `k` (check()'s); `run`, the run on
    the same page, only to say when the two came from different machines."""
    from .kernel import table   # the file's table layout and its sentence
    cfg = k["config"]
    esc = html.escape
    out = [f"""<h2 id="kernel">What this kernel pays per page</h2>
<p class="note">{esc(os.path.basename(k["path"]))}: {esc(_where(k["machine"]))}. ns per 4 KiB
page: the slope of a call's time over {cfg["pages"][0]}&ndash;{cfg["pages"][-1]} pages per call,
median of {cfg["rounds"]} rounds (95 % interval); {esc(cfg.get("cache", ""))};
{esc(cfg.get("clock", ""))}. Per call: the median intercept. &ldquo;-&rdquo;: not measured
(refusals below).</p>""", _guest_note(k)]
    if run is not None:
        ours, theirs = k["machine"], run["machine"]
        if (ours.get("hostname"), ours.get("kernel")) != (theirs.get("hostname"),
                                                          theirs.get("kernel")):
            out.append(f'<p class="note"><b>Another machine:</b> the run above is from '
                       f"{esc(str(theirs.get('hostname')))} ({esc(_where(theirs))}), this file "
                       f"from {esc(str(ours.get('hostname')))}.</p>")
    text = table.answer(k)
    if text:
        out.append(f'<p class="answer">{esc(text)}</p>')
    headers, rows = _per_page_table(k, table)
    if rows:
        out.append(_table(headers, rows))
    functions = _functions(k)
    if functions:
        out.append("<h3>Kernel functions each path ran</h3>\n<p class=\"note\">Hits of the "
                   "function tracer, this process only.</p>\n<ul class=\"explain\">"
                   + "".join(f"<li>{esc(f)}</li>" for f in functions) + "</ul>")
    model = _model_rows(k, table)
    if model:
        out.append("<h3>The model over the same pages</h3>\n<p class=\"note\">pagetax's designs "
                   f"over one I/O of {k['model'][0].get('pages_per_io', '?')} 4 KiB segments, "
                   "warm, ns per page: median of the core's instrumented repetitions (95 % "
                   "interval), one mark per phase subtracted, as <code>pagetax run</code> splits "
                   "build, copy and release.</p>")
        out.append(_table(["design", "folio", "build", "release", "build + release"], model,
                          left=2))
    memmap = _memmap_rows(k)
    if memmap:
        out.append("<h3>The kernel's memmap with HVO off and on</h3>\n<p class=\"note\">The "
                   "change in <code>/proc/vmstat</code>'s nr_memmap_pages + "
                   "nr_memmap_boot_pages across allocating fresh hugetlb pages with "
                   "<code>vm.hugetlb_optimize_vmemmap</code> off and on. Freed: 4 KiB vmemmap "
                   "pages given back; model: pagetax/metadata.py's pages freed per huge page; "
                   "left: struct page bytes kept per huge page (64 B per 4 KiB page less the "
                   "freed pages) as % of it, drawn in the metadata picture when a run is "
                   "given.</p>")
        out.append(_table(["size", "HVO", "huge pages", "freed", "per huge page", "model",
                           "model per huge page", "left, % of the huge pages", "matches"], memmap,
                          left=2))
    whys = _refusals(k) + [f"warning: {w}" for w in k.get("warnings") or []]
    if whys:
        out.append('<ul class="explain">' + "".join(f"<li>{esc(w)}</li>" for w in whys)
                   + "</ul>")
    return "\n".join(out) + "\n"

"""`pagetax kernel`'s terminal output: the kernel's per-page figures, the
model's beside them, the memmap with HVO, and the answer in one sentence."""
from rich import box
from rich.table import Table


ORDER = ("mincore", "populate", "vmsplice", "splice", "vmsplice+splice", "vmsplice-mincore",
         "read", "read_fixed", "read-read_fixed")
BUFFER_LABEL = {"4K": "4 KiB pages", "THP": "2 MiB THP", "hugetlb": "2 MiB hugetlb",
                "dax": "DAX pages"}


def figure(f):
    """'43.6 (43.3-43.8)': a median with its interval, ns."""
    return f"{f['median']:.1f} ({f['low']:.1f} to {f['high']:.1f})"


def kernel_table(doc):
    entries = [e for e in doc["kernel"] if e["paths"]]
    cfg = doc["config"]
    guest = doc.get("guest")
    where = ""
    if guest:
        where = (f" in a {guest['accelerator'].upper()} guest on "
                 f"{guest['namespace']['label']}")
        if not guest.get("timings_comparable", True):
            where += " (TCG: these timings say nothing of a real machine; what counts is "\
                     "that each path ran and passed its check)"
    t = Table(title=f"What {doc['machine']['kernel']} pays per 4 KiB page{where}, ns: the slope "
              f"of a call's time over {cfg['pages'][0]}-{cfg['pages'][-1]} pages per call, "
              f"median of {cfg['rounds']} rounds (95 % interval)",
              caption="warm: the same pages every call; per call: the median intercept (the "
              "system call and one clock read); io_uring sweeps only up to the loop device's "
              "max_segments (a split I/O is retried and pinned twice)",
              header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("path", no_wrap=True)
    for e in entries:
        t.add_column(BUFFER_LABEL[e["buffer"]], justify="right", no_wrap=True)
    t.add_column("per call, 4K", justify="right", no_wrap=True)
    t.add_column("per page holds")
    for name in ORDER:
        cells = [figure(e["paths"][name]["per_page_ns"]) if name in e["paths"] else "-"
                 for e in entries]
        if all(c == "-" for c in cells):
            continue
        first = entries[0]["paths"].get(name, {})
        call = f"{first['per_call_ns']:.0f}" if "per_call_ns" in first else ""
        t.add_row(name, *cells, call, doc["meaning"].get(name, ""))
    return t


def model_table(doc):
    t = Table(title="The model over the same 256 pages (one I/O of one 1 MiB extent, as the "
              "probes' one iovec; warm), ns per page", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
              caption="median of the core's instrumented repetitions (95 % interval), one mark "
              "per phase subtracted, as `pagetax run` splits build/copy/release")
    for i, name in enumerate(("design", "folio", "grab", "build", "release", "build + release")):
        t.add_column(name, justify="left" if i < 3 else "right", no_wrap=True)   # 3 labels
    for r in doc["model"]:
        t.add_row(r["design"], r["folio_size"], GRAB[r.get("grab", "pin")],
                  figure(r["build_ns"]), figure(r["release_ns"]),
                  figure(r["build_release_ns"]))
    return t


def memmap_table(doc):
    t = Table(title="The kernel's memmap (/proc/vmstat nr_memmap_pages + nr_memmap_boot_pages) "
              "across allocating fresh hugetlb pages", header_style="bold", box=box.SIMPLE_HEAD,
              pad_edge=False, caption="freed: 4 KiB vmemmap pages given back; model: "
              "pagetax/metadata.py's pages freed per huge page")
    for name in ("size", "HVO", "huge pages", "freed", "per huge page", "model", "model per page",
                 "matches"):
        t.add_column(name, justify="left" if name in ("size", "HVO", "model", "matches")
                     else "right", no_wrap=True)
    for r in doc["memmap"]:
        hvo = "on" if r["hvo"] else "off"
        if "refused" in r:
            t.add_row(r["size"], hvo, str(r["requested"]), "-", "-", r["model"], "-",
                      f"refused: {r['refused']}")
            continue
        t.add_row(r["size"], hvo, str(r["allocated"]), f"{r['freed_pages']:,}",
                  f"{r['freed_per_huge_page']:g}", r["model"],
                  f"{r['model_freed_per_huge_page']:g}", "yes" if r["matches"] else "NO")
    return t


def functions_table(doc):
    """The function tracer's hits for one call of 16 pages, per path."""
    entries = [e for e in doc["kernel"] if e.get("functions")]
    t = Table(title="Kernel functions each path ran: hits for 2 calls of 16 pages, this "
              "process only (the function tracer)", header_style="bold",
              box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("buffer", no_wrap=True)
    t.add_column("path", no_wrap=True)
    t.add_column("functions (hits)")
    for e in entries:
        for path, hits in e["functions"].items():
            text = ", ".join(f"{f} {n}" for f, n in sorted(hits.items(), key=lambda x: -x[1]))
            t.add_row(BUFFER_LABEL[e["buffer"]], path, text or "none of the traced functions")
    return t


GRAB = {"pin": "FOLL_PIN", "get": "FOLL_GET"}
# The model beside the kernel path that takes the same references:
# (label, model design, folio size, grab, kernel buffer, kernel figure)
PAIRS = (
    ("a reference, 4 KiB pages (vmsplice + splice)", "page", "4K", "get", "4K",
     "vmsplice+splice"),
    ("a reference, 2 MiB THP (vmsplice + splice)", "folio", "2M", "get", "THP",
     "vmsplice+splice"),
    ("a pin, 4 KiB pages (O_DIRECT READ less READ_FIXED)", "page", "4K", "pin", "4K",
     "read-read_fixed"),
    ("a pin, 2 MiB THP (O_DIRECT READ less READ_FIXED)", "folio", "2M", "pin", "THP",
     "read-read_fixed"),
)


def model_of(rows, design, folio_size, grab="pin"):
    for r in rows:
        if r["design"] == design and r["folio_size"] == folio_size and \
                r.get("grab", "pin") == grab:
            return r
    return None


def gaps(doc):
    """Each model row beside the kernel figure that takes the same
    references: (label, model ns, kernel figure, kernel / model)."""
    out = []
    for label, design, folio, grab, buffer, path in PAIRS:
        m = model_of(doc.get("model", []), design, folio, grab)
        k = _figure(doc, buffer, path)
        if m is None or k is None:
            continue
        mine = m["build_release_ns"]["median"]
        out.append((label, f"{design} @{folio}", mine, k, k["median"] / mine if mine else None))
    return out


def gap_table(doc):
    t = Table(title="The model beside the kernel, ns per 4 KiB page: build + release against "
              "the kernel path that takes the same references", header_style="bold",
              box=box.SIMPLE_HEAD, pad_edge=False,
              caption="kernel / model over 1.25: README.md, \"Every gap to the kernel\", says "
              "what the kernel does there that the model does not")
    for name in ("what", "model", "model ns", "kernel ns", "kernel / model"):
        t.add_column(name, justify="left" if name in ("what", "model") else "right",
                     no_wrap=True)
    for label, design, mine, k, ratio in gaps(doc):
        spans = k["low"] <= 0 <= k["high"]
        t.add_row(label, design, f"{mine:.1f}", figure(k),
                  "none to see" if spans else f"{ratio:.2f}")
    return t


def _figure(doc, buffer, name):
    for e in doc["kernel"]:
        if e["buffer"] == buffer and name in e["paths"]:
            return e["paths"][name]["per_page_ns"]
    return None


def _path(doc, buffer, name):
    f = _figure(doc, buffer, name)
    return None if f is None else f["median"]


def answer(doc):
    """The comparison in words: what the model charges, what the kernel does."""
    lines = []
    rows = doc.get("model", [])
    page = model_of(rows, "page", "4K", "get") or model_of(rows, "page", "4K", "pin")
    kernel_4k = _path(doc, "4K", "vmsplice+splice")
    if page and kernel_4k is not None:
        grab = GRAB[page.get("grab", "pin")] if "grab" in page else "warm"
        line = (f"The model charges {page['build_release_ns']['median']:.1f} ns per page to "
                f"take and drop a reference on a 64-byte struct page (page"
                + (f", {grab}, warm); " if "grab" in page else ", warm); ") + "this kernel "
                f"charges {kernel_4k:.1f} ns per 4 KiB page to take and drop a reference "
                "through vmsplice + splice")
        thp = _path(doc, "THP", "vmsplice+splice")
        if thp is not None:
            line += f", {thp:.1f} on a 2 MiB THP"
        lines.append(line + ".")
    pin = _path(doc, "4K", "read-read_fixed")
    if pin is not None:
        thp = _figure(doc, "THP", "read-read_fixed")
        if thp is None:
            on_thp = ""
        elif thp["low"] <= 0 <= thp["high"]:
            on_thp = (f" (on a 2 MiB THP, pinned a folio at a time, no difference to see: "
                      f"{thp['low']:.1f} to {thp['high']:.1f})")
        else:
            on_thp = f" ({thp['median']:.1f} on a 2 MiB THP, pinned a folio at a time)"
        lines.append(f"An O_DIRECT read pins and unpins each 4 KiB page for {pin:.1f} ns more "
                     f"than the same read from a registered buffer{on_thp}.")
    walk = _path(doc, "4K", "mincore")
    if walk is not None and kernel_4k:
        lines.append(f"The page-table walk alone (mincore) is {walk:.1f} ns per page.")
    return " ".join(lines)


def print_all(doc, console, print_wide):
    if any(e["paths"] for e in doc["kernel"]):
        print_wide(console, kernel_table(doc), 150)
    if any(e.get("functions") for e in doc["kernel"]):
        print_wide(console, functions_table(doc), 120)
    if doc.get("model"):
        print_wide(console, model_table(doc), 110)
        if gaps(doc):
            print_wide(console, gap_table(doc), 120)
    if doc.get("memmap"):
        print_wide(console, memmap_table(doc), 110)
    text = answer(doc)
    if text:
        console.print(text, markup=False, highlight=False)

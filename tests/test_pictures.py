"""Plots, the summary and the report page, the page checked in a real
headless browser at a laptop's and a phone's width."""
import copy
import html
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile

import pytest

from helpers import SMALL, cli

pytest.importorskip("matplotlib")

from pagetax import metadata, plot, report_page, summary  # noqa: E402

AWAY = tempfile.gettempdir()  # from the source tree, whose pagetax/ may have no compiled core
ALWAYS = ("ratio_vec", "phases", "metadata", "throughput", "ns_per_seg")
SEGS_PER_IO = 16


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    p = cli("run", *SMALL, "--repeat", "2", "--designs", "vec,page,huge,altmap,memcpy", "--plot",
            "--json", str(d / "r.json"), cwd=d)
    assert p.returncode == 0, p.stderr
    for name in ALWAYS:  # run --plot drew them
        assert (d / "r-plots" / f"{name}.png").stat().st_size > 10_000
    return d / "r.json"


@pytest.fixture(scope="module")
def run_doc(run_file):
    return json.loads(run_file.read_text())


def with_latency(doc):
    """The run as --segs-per-io would make it: each row a `latency` record in
    the schema pagetax/latency.py writes, its CDF rising from one I/O's
    median cost, slower designs further right."""
    doc = copy.deepcopy(doc)
    doc["config"]["segs_per_io"] = SEGS_PER_IO
    for r in doc["results"]:
        base = r["ns_per_seg"] * SEGS_PER_IO
        cdf = [[base * (1 + 0.1 * i), min(1.0, 0.2 * (i + 1))] for i in range(5)]
        cdf.append([base * 8, 1.0])
        r["latency"] = {"p50_ns": base * 1.2, "p90_ns": base * 1.4, "p99_ns": base * 8,
                        "p999_ns": base * 8, "max_ns": base * 8, "min_ns": base,
                        "mean_ns": base * 1.3, "ios": 100, "clock_ns_subtracted": 60,
                        "resolution_pct": 3.125, "cdf": cdf}
    return doc


@pytest.fixture(scope="module")
def figures(run_doc):
    """Every picture of the run, latencies added, drawn once for the tests
    that read their axes."""
    plt = plot._pyplot()
    figs = plot.figures(plt, with_latency(run_doc))
    for fig in figs.values():
        fig.canvas.draw()  # tick labels exist only once drawn
    yield figs
    for fig in figs.values():
        plt.close(fig)


@pytest.fixture(scope="module")
def pages(run_doc):
    """The report page of the run, without and with latencies."""
    return {"plain": report_page.render(run_doc),
            "latency": report_page.render(with_latency(run_doc))}


def _drawn(figure_fn, *args):
    plt = plot._pyplot()
    fig = figure_fn(plt, *args)
    fig.canvas.draw()
    return plt, fig


# -- the pictures ----------------------------------------------------------------

@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_plot_command(run_file, tmp_path, fmt, magic):
    p = cli("plot", str(run_file), "-o", str(tmp_path / "p"), "--format", fmt, cwd=AWAY)
    assert p.returncode == 0, p.stderr
    for name in ALWAYS:
        data = (tmp_path / "p" / f"{name}.{fmt}").read_bytes()
        assert data.startswith(magic)
    assert not (tmp_path / "p" / f"latency.{fmt}").exists()  # the run has no latencies
    if fmt == "svg":
        assert "<svg" in (tmp_path / "p" / "ratio_vec.svg").read_text()


def test_plot_errors(tmp_path):
    p = cli("plot", str(tmp_path / "none.json"), "-o", str(tmp_path), cwd=AWAY)
    assert p.returncode == 1 and "none.json: No such file or directory" in p.stderr
    assert "Traceback" not in p.stderr


def test_axes_read_as_sizes_and_plain_numbers(figures):
    """Segment sizes as 64 B and 4 KiB, numbers as plain decimals: no 2^6,
    no 10^x, no 1e-2, no offset above the axis."""
    assert list(figures) == [*ALWAYS, "latency"]  # vec first, raw GB/s after
    sizes_seen = set()
    for name, fig in figures.items():
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
                assert axis.get_offset_text().get_text() == "", name
                for text in labels:
                    assert not re.search(r"\$|\^|\d[eE][+-]?\d|×10", text), (name, text)
                if axis is ax.xaxis and ax.get_xlabel() == "segment size":
                    assert labels == ["64 B", "4 KiB"], name
                    sizes_seen.add(name)
                elif axis is ax.xaxis and name == "latency":
                    assert all(re.fullmatch(r"[\d.]+ (ns|µs|ms|s)", t) for t in labels), labels
                elif axis is ax.yaxis and name in ("ratio_vec", "throughput", "ns_per_seg"):
                    assert len(labels) >= 2, (name, labels)
                    [float(t) for t in labels]  # plain numbers
    assert sizes_seen == {"ratio_vec", "throughput", "ns_per_seg"}


def test_legends_lie_outside_every_panel(figures):
    for name, fig in figures.items():
        assert all(ax.get_legend() is None for ax in fig.axes), f"{name}: a legend in a panel"
        assert len(fig.legends) == 1, name
        box = fig.legends[0].get_window_extent()
        for ax in fig.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.get_window_extent()), f"{name}: legend over a panel"


def _errorbars(ax, color):
    """(x, y, low, high) of the error bars drawn in `color`."""
    from matplotlib.colors import same_color
    for c in ax.containers:
        line, _, (bars,) = c.lines[0], c.lines[1], c.lines[2]
        if same_color(line.get_color(), color):
            xs, ys = line.get_data()
            return [(x, y, seg[0][1], seg[1][1]) for x, y, seg in zip(xs, ys, bars.get_segments())]
    return []


def test_ratio_bars_span_design_slowest_over_vec_fastest_to_the_reverse(run_doc):
    plt, fig = _drawn(plot.ratio_figure, run_doc)
    try:
        ax = next(a for a in fig.axes if a.get_title() == "read (gather), rand")
        color = plot.styles(run_doc)["page"]["color"]
        cells = summary.cells(run_doc["results"])
        drawn = _errorbars(ax, color)
        assert len(drawn) == 2  # 64 B and 4 KiB
        for (x, y, low, high), seg in zip(drawn, (64, 4096)):
            cell = cells[("read", "rand", seg, 1)]
            page, vec = cell["page"], cell["vec"]
            assert y == pytest.approx(page["gbps"] / vec["gbps"])
            assert low == pytest.approx(page["gbps_worst"] / vec["gbps_best"])
            assert high == pytest.approx(page["gbps_best"] / vec["gbps_worst"])
            assert x == pytest.approx(seg, rel=0.2)  # dodged a little, not moved
    finally:
        plt.close(fig)


def test_metadata_bars_on_a_log_scale_show_the_smallest_and_the_kernels(run_doc):
    from test_vm import MEMMAP_ROWS, _memmap_doc
    memmap = report_page._memmap_doc("m.json", _memmap_doc())
    plt, fig = _drawn(plot.metadata_figure, run_doc, [memmap])
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        lo, hi = ax.get_xlim()
        labels = [t.get_text() for t in ax.get_yticklabels()]
        widths = {}
        for bar in ax.patches:
            label = labels[int(round(bar.get_y() + bar.get_height() / 2))]
            widths.setdefault(label, []).append(bar.get_width())
        tiny = min(w for ws in widths.values() for w in ws)
        assert lo < tiny < hi  # the smallest bar starts left of its end: it is drawn
        data = run_doc["config"]["data_bytes"]
        assert widths["hvo-1G *"] == [pytest.approx(metadata.model("hvo-1G").footprint(data)["percent"])]
        assert widths["huge"] == [pytest.approx(run_doc["metadata"]["huge"]["percent"])]
        for row in MEMMAP_ROWS:
            got = sorted(widths[f"guest: {row['ndctl']}"])
            want = sorted(100 * row[k] / row["region_bytes"] for k in ("dram_bytes", "device_bytes"))
            assert got == pytest.approx(want)
    finally:
        plt.close(fig)


def test_latency_picture_draws_each_designs_cdf(run_doc):
    doc = with_latency(run_doc)
    del doc["results"][0]["latency"]  # a row without: left out, not an error
    plt, fig = _drawn(plot.latency_figure, doc)
    try:
        axes = [a for a in fig.axes if a.get_visible()]
        panels = {(r["op"], r["pattern"], r["seg_bytes"]) for r in doc["results"]}
        assert len(axes) == len(panels)
        assert sum(len(a.get_lines()) - 1 for a in axes) == len(doc["results"]) - 1  # less p99 lines
        assert all(a.get_xscale() == "log" for a in axes)
    finally:
        plt.close(fig)


# -- the summary -----------------------------------------------------------------

def _row(design, build, copy_, release, *, gbps=1.0, worst=None, best=None, seg=64, phases=True):
    """A row with its phases given in ns per segment (1000 segments)."""
    return {"design": design, "op": "read", "pattern": "rand", "seg_bytes": seg, "threads": 1,
            "gbps": gbps, "gbps_best": best or gbps, "gbps_worst": worst or gbps,
            "segments": 1000, "ns_per_seg": build + copy_ + release, "phases": phases,
            "phase_reps": 1, "phase_ns": {"build": build * 1000, "copy": copy_ * 1000,
                                          "release": release * 1000},
            "working_set": {"descriptor_bytes": 0 if design in ("vec", "memcpy") else 64},
            "metadata": None}


def _doc(*rows):
    return {"results": list(rows), "config": {"size": 1 << 30}, "metadata": {}}


def test_summary_shares_the_gap_between_phases():
    vec = _row("vec", 2, 10, 0, gbps=4.0, best=5.0, worst=2.0)
    page = _row("page", 6, 12, 4, gbps=2.0, best=3.0, worst=1.0)  # +4, +2, +4 ns
    gap = summary.gaps(_doc(vec, page))[0]
    assert gap["cost"] == pytest.approx(2.0)
    assert gap["cost_range"] == pytest.approx((2.0 / 3.0, 5.0))  # vec worst/page best, best/worst
    text = summary.gap_sentence(gap)
    assert text.startswith("At random 64 B reads, `page` takes 2.00× `vec`'s time (0.50× its "
                           "GB/s; 0.67–5.00× from the fastest and slowest repetitions, so its "
                           "fastest repetition beat `vec`'s slowest).")
    assert "Of the 10 ns per segment its phases add over `vec`'s, 80 % is build and release " \
           "(8 ns), 20 % copy." in text
    assert "timed medians" not in text  # the split adds up to the timed difference


def test_summary_lists_phases_when_a_share_would_mislead():
    vec = _row("vec", 2, 10, 0, gbps=4.0)
    page = _row("page", 6, 8, 4, gbps=3.0)  # copy 2 ns faster: a share would be 133 %
    text = summary.split_sentence(summary.gaps(_doc(vec, page))[0])
    assert "%" not in text
    assert "build +4 ns, copy -2 ns, release +4 ns; build and release alone add 8 ns." in text


def test_summary_says_when_the_phases_do_not_add_up():
    vec = _row("vec", 2, 10, 0, gbps=4.0)
    page = _row("page", 6, 12, 4, gbps=2.0)
    page["ns_per_seg"] = 42.0  # timed: +30 ns, the phases +10
    text = summary.split_sentence(summary.gaps(_doc(vec, page))[0])
    assert "(The timed medians differ by 30 ns, the phases by 10 ns" in text
    # the shares stay shares of the split, not of the timed difference
    assert "Of the 10 ns per segment its phases add over `vec`'s, 80 % is build and release" in text


def test_summary_without_vec_with_one_design_and_with_fio_rows():
    page = _row("page", 6, 12, 4)
    assert summary.lines(_doc(page))[0].startswith("This run has no `vec` rows")
    assert summary.lines(_doc(_row("vec", 1, 2, 0))) == [
        "Only `vec` ran: there is nothing to compare it with."]
    fio = dict(_row("fio-mmap", 0, 50, 0, gbps=0.5), phases=False)
    fio["working_set"] = {"descriptor_bytes": 0}
    lines = summary.lines(_doc(_row("vec", 2, 10, 0, gbps=4.0), fio))
    assert lines == ["No design with per-page descriptors ran beside `vec`."]
    assert summary.phase_per_segment(fio) is None


def test_summary_of_a_real_run(run_doc):
    lines = summary.lines(run_doc)
    assert 3 <= len(lines) <= 5
    biggest = summary.gaps(run_doc)[0]
    assert lines[0].startswith(f"At {summary.cell_words(*biggest['cell'][:3])}, "
                               f"`{biggest['design']}` takes {biggest['cost']:.2f}×")
    assert "Descriptor tables" in lines[-1]


# -- the page --------------------------------------------------------------------

def _text(page):
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_page_table_grouped_with_phases_and_p99(run_doc, pages):
    page = pages["latency"]
    cells = {(r["op"], r["pattern"], r["seg_bytes"]) for r in run_doc["results"]}
    assert page.count('<tbody class="cell">') == len(cells)
    first = re.search(r'<tbody class="cell">(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", first, re.S)
    n = len(rows)
    assert f'rowspan="{n}">read</td>' in rows[0] and f'rowspan="{n}">64 B</td>' in rows[0]
    assert "rowspan" not in "".join(rows[1:])
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", page, re.S).group(1)
    for col in ("build", "copy", "release", "p99/io", "x vec range", "metadata"):
        assert f">{col}</th>" in header, col
    vec_row = next(r for r in rows if '<td class="l">vec</td>' in r)
    vec = summary.cells(run_doc["results"])[("read", "rand", 64, 1)]["vec"]
    p99 = summary.duration_label(vec["ns_per_seg"] * SEGS_PER_IO * 8)
    assert f'<td class="">{html.escape(p99)}</td>' in vec_row
    assert 'id="fig-latency"' in page
    plain = pages["plain"]
    assert ">p99/io</th>" not in plain and "99th percentile" not in plain
    assert 'id="fig-latency"' not in plain


def _table_rows(section):
    table = re.search(r"<table>.*?</table>", section, re.S).group(0)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def test_page_shows_one_capacity_basis(run_doc, pages):
    """Each design's metadata once, on the capacity the run measured it on:
    the data area (altmap: the whole backing it reserves from), never the
    model at the whole backing beside the measurement at the data area."""
    cfg = run_doc["config"]
    data, backing = cfg["data_bytes"], cfg["size"]
    assert data < backing  # altmap's reserve: the two bases differ
    page = pages["plain"]
    section = page[page.index('<h2 id="metadata">'):page.index('<h2 id="raw">')]
    assert f"shares of one capacity: the {data:,} B data area" in _text(section)
    header, *rows = _table_rows(section)
    assert header[:6] == ["design", "capacity", "DRAM", "device", "% capacity", "allocated"]
    by_name = {r[0]: r for r in rows}
    assert len(by_name) == len(rows)  # one row, one figure, per design
    for name, r in by_name.items():
        assert r[1] == f"{(backing if name == 'altmap' else data):,}", name
    for name in ("page", "folio @4K", "sgl"):
        if name.split()[0] in run_doc["metadata"] or name == "folio @4K":
            assert by_name[name][2] == f"{data * 64 // 4096:,}", name
    assert by_name["page"][5] == f"{run_doc['metadata']['page']['allocated_bytes']:,}"
    assert by_name["page"][5] == by_name["page"][2]  # the measurement is the figure shown
    figures = {c for r in rows for c in r[2:6]}
    assert f"{backing * 64 // 4096:,}" not in figures  # the model at the whole backing


def test_page_leads_with_the_summary(run_doc, pages):
    page = pages["plain"]
    items = re.findall(r"<li>(.*?)</li>", re.search(r'<ul class="summary".*?</ul>', page, re.S)[0])
    assert [html.unescape(re.sub(r"<[^>]+>", "", i)) for i in items] == [
        line.replace("`", "") for line in summary.lines(run_doc)]
    assert page.index('id="summary"') < page.index('id="fig-ratio_vec"') < page.index(
        'id="fig-phases"') < page.index('id="fig-throughput"')


# The page's layout, checked inside the browser.  The page goes in an
# iframe of the width to check (a headless window is at least 500 px wide);
# the probe reports what sticks out past that width outside a horizontal
# scroll box, and whether every figure decoded.
LAYOUT_PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" style="width:{width}px;height:900px;border:0" srcdoc="{page}"></iframe>
<script>
document.getElementById("page").addEventListener("load", e => {{
  const doc = e.target.contentDocument, win = e.target.contentWindow;
  const width = doc.documentElement.clientWidth;
  const scrolls = el => {{ for (let p = el.parentElement; p; p = p.parentElement) {{
      const o = win.getComputedStyle(p).overflowX; if (o === "auto" || o === "scroll") return true; }}
    return false; }};
  const out = {{width, page_width: doc.documentElement.scrollWidth, overflow: [], figures: []}};
  for (const el of doc.body.querySelectorAll("*")) {{
    const r = el.getBoundingClientRect();
    if (r.width && r.right > width + 1 && !scrolls(el))
      out.overflow.push(el.tagName + (el.id ? "#" + el.id : "") + " " + Math.round(r.right));
  }}
  for (const img of doc.images)
    out.figures.push({{alt: img.alt, loaded: img.complete && img.naturalWidth > 0,
                      right: img.getBoundingClientRect().right}});
  const pre = document.createElement("pre"); pre.id = "layout-probe";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
}});
</script></body></html>"""


@pytest.mark.skipif(not shutil.which("chromium"), reason="no chromium (Debian: apt-get install chromium)")
def test_report_page_in_chromium_at_laptop_and_phone_width(pages, tmp_path):
    page = tmp_path / "index.html"
    text = pages["plain"]
    page.write_text(text)
    assert "<script" not in text and "http" not in text.split("<pre>")[0]  # offline, no code
    # what lays the page out at a phone's own width (headless Chrome does not emulate one)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    expected = text.count('src="data:image/png;base64,')
    assert expected == len(ALWAYS)
    # The browser must not inherit the sanitizer runtime the CI pass preloads.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    for width in (1366, 390):
        probe = tmp_path / f"probe-{width}.html"
        probe.write_text(LAYOUT_PROBE.format(width=width, page=html.escape(text)))
        dom = subprocess.run([*browser, "--window-size=1400,1000", "--virtual-time-budget=5000",
                              "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                             timeout=120, env=env)
        assert dom.returncode == 0, dom.stderr[-2000:]
        found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom.stdout, re.S)
        assert found, "the probe did not run"
        layout = json.loads(html.unescape(found.group(1)))
        assert width - 20 <= layout["width"] <= width  # less a scroll bar, if any
        assert layout["page_width"] <= layout["width"], f"the page scrolls sideways at {width} px"
        assert layout["overflow"] == [], f"at {width} px"
        assert len(layout["figures"]) == expected
        for fig in layout["figures"]:
            assert fig["loaded"] and fig["right"] <= layout["width"], (width, fig)
    # and as a window shows it, from disk
    shot = tmp_path / "shot.png"
    subprocess.run([*browser, "--window-size=1366,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, env=env)
    data = shot.read_bytes()
    assert struct.unpack(">II", data[16:24]) == (1366, 2400)  # PNG IHDR
    assert len(data) > 50_000  # rendered, not a blank page

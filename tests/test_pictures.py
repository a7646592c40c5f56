"""Plots, the summary and the report page, the page checked in a real
headless browser emulating a laptop and a phone."""
import copy
import html
import json
import re
import shutil
import struct
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
            "--segs-per-io", "all", "--json", str(d / "r.json"), cwd=d)  # no latencies: see below
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


def test_plot_command_takes_memmap_files_beside_the_run(run_file, tmp_path):
    from test_guest_memmap import _memmap_doc
    memmap = tmp_path / "memmap.json"
    memmap.write_text(json.dumps(_memmap_doc()))
    p = cli("plot", str(memmap), str(run_file), "-o", str(tmp_path / "p"), cwd=AWAY)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "p" / "metadata.png").read_bytes().startswith(b"\x89PNG")
    alone = cli("plot", str(memmap), "-o", str(tmp_path / "q"), cwd=AWAY)
    assert alone.returncode == 1 and "plot needs a run's result file" in alone.stderr


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
    from test_guest_memmap import MEMMAP_ROWS, _memmap_doc
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


def test_summary_keeps_a_negative_phase_to_a_measurement_note():
    vec = _row("vec", 2, 10, 0, gbps=4.0)
    page = _row("page", 6, 8, 4, gbps=3.0)  # copy 2 ns faster: a share would be 133 %
    text = summary.split_sentence(summary.gaps(_doc(vec, page))[0])
    assert "%" not in text
    assert text.startswith("Build and release add 8 ns per segment over `vec`'s. (Measurement "
                           "note: the phases, medians of 1 instrumented repetitions each, come "
                           "to 6 ns over `vec`'s where the timed medians differ by 6 ns, and the "
                           "copy phase by -2 ns: read the split as shares, not as a sum.)")


def test_summary_says_when_the_phases_do_not_add_up():
    vec = _row("vec", 2, 10, 0, gbps=4.0)
    page = _row("page", 6, 12, 4, gbps=2.0)
    page["ns_per_seg"] = 42.0  # timed: +30 ns, the phases +10
    text = summary.split_sentence(summary.gaps(_doc(vec, page))[0])
    assert "come to 10 ns over `vec`'s where the timed medians differ by 30 ns" in text
    assert "trust" not in text
    # the shares stay shares of the split, not of the timed difference
    assert "Of the 10 ns per segment its phases add over `vec`'s, 80 % is build and release" in text


def test_summary_answers_the_2015_question_first():
    vec64 = _row("vec", 2, 10, 0, gbps=4.0, best=4.4, worst=3.6)
    page64 = _row("page", 6, 12, 4, gbps=2.0, best=2.2, worst=1.8)   # +4 build, +4 release
    vec4k = _row("vec", 2, 100, 0, gbps=10.0, seg=4096)
    page4k = _row("page", 4, 100, 3, gbps=9.5, seg=4096)
    lines = summary.lines(_doc(vec64, page64, vec4k, page4k))
    assert lines[0] == ("What a per-page descriptor costs (`page`: a 64-byte struct page per "
                        "4 KiB, against raw (address, length) vectors, `vec`): at random 64 B "
                        "reads it takes 2.00× (1.64–2.44×) `vec`'s time; at 4 KiB 1.05× "
                        "(1.05–1.05×) (median, and the range from the fastest and slowest "
                        "repetitions).")
    assert lines[1] == ("The time goes to taking and dropping a reference on every page an I/O "
                        "touches (build and release, as the kernel's direct I/O pins): 8 ns per "
                        "segment at 64 B.")
    assert lines[2] == ("Its memory: 64 B per 4 KiB page, 1.5625 % of capacity, 6.25 GB for the "
                        "2015 thread's 400 GB DIMM.")
    assert lines[3].startswith("At random 64 B reads, `page` takes 2.00×")   # then the rest
    assert summary.answer_lines(_doc(vec64, _row("folio", 6, 12, 4, gbps=2.0))) == []


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
    lines = summary.other_lines(run_doc)
    assert 3 <= len(lines) <= 5
    biggest = summary.gaps(run_doc)[0]
    assert lines[0].startswith(f"At {summary.cell_words(*biggest['cell'][:3])}, "
                               f"`{biggest['design']}` takes {biggest['cost']:.2f}×")
    if any(r["design"] == "page" for r in run_doc["results"]):
        assert summary.lines(run_doc)[0].startswith("What a per-page descriptor costs")
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


# The page's layout, checked in headless chromium (tests/cdp.py) emulating
# each device: a laptop's window, and a phone, whose mobile emulation lays
# the page out at 980 px unless its viewport meta tag asks for the device's
# width.  The page loads from disk, as a reader opens it.
DEVICES = {"laptop": dict(width=1366, height=768, deviceScaleFactor=1, mobile=False),
           "phone": dict(width=390, height=844, deviceScaleFactor=3, mobile=True)}
FIGURES = {"ratio_vec": "x vec against segment size",  # figure id fig-NAME: its image's alt,
           "phases": "build, copy and release per segment",  # in the page's order
           "latency": "latency CDF per design",
           "metadata": "metadata bytes per capacity",
           "throughput": "throughput against segment size",
           "ns_per_seg": "ns per segment against segment size"}
# What the laid out page looks like: anything past the viewport outside a
# horizontal scroll box (html and body do not count as one), each figure's
# image, and where the summary lies.
LAYOUT_PROBE = """(async () => {
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  const root = document.documentElement, width = root.clientWidth;  // less a scroll bar
  const scrolls = el => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === "auto" || o === "scroll") return true; }
    return false; };
  const name = el => el.tagName + (el.id ? "#" + el.id : "") + (el.className ? "." + el.className : "");
  const overflow = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width && (r.width > width || r.right > width + 0.5 || r.left < -0.5) && !scrolls(el))
      overflow.push(`${name(el)} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  const top = el => el ? el.getBoundingClientRect().top + scrollY : null;
  const px = (el, what) => parseFloat(getComputedStyle(el)[what]);
  return {inner_width: innerWidth, height: innerHeight, width,
          page_width: root.scrollWidth, scale: visualViewport.scale, overflow,
          images: [...document.images].map(i => ({
              figure: i.closest("figure") ? i.closest("figure").id : null, alt: i.alt,
              natural_width: i.naturalWidth, width: i.getBoundingClientRect().width,  // with its border
              right: i.getBoundingClientRect().right, container: px(i.parentElement, "width")})),
          headings: [...document.querySelectorAll("h2")].map(h => h.id || h.textContent),
          summary_items: document.querySelectorAll("#summary li").length,
          scrolling: [...document.body.querySelectorAll("*")].filter(el => el.scrollWidth > el.clientWidth
              && ["auto", "scroll"].includes(getComputedStyle(el).overflowX)).map(name),
          summary_top: top(document.getElementById("summary")),
          first_figure_top: Math.min(...[...document.querySelectorAll("figure, table")].map(top))};
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not shutil.which("chromium"):
        pytest.skip("no chromium (Debian: apt-get install chromium)")
    from cdp import Chromium
    b = Chromium(shutil.which("chromium"), tmp_path_factory.mktemp("profile"))
    yield b
    b.close()


@pytest.mark.parametrize("device", DEVICES)
def test_report_page_in_chromium_at_laptop_and_phone_width(browser, pages, tmp_path, device):
    """The page as `pagetax report` writes it (report_page.render, which
    write() puts in DIR/index.html), with and without latencies."""
    metrics = DEVICES[device]
    width = metrics["width"]
    browser.call("Emulation.setDeviceMetricsOverride", session=True, **metrics)
    for variant, text in pages.items():
        # offline, no code; base64 image data may spell anything, "http" included
        prose = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
        assert "<script" not in prose and "http" not in prose.split("<pre>")[0]
        names = [n for n in FIGURES if n in ALWAYS or variant == n]
        assert text.count('src="data:image/png;base64,') == len(names)
        page = tmp_path / variant / "index.html"
        page.parent.mkdir()
        page.write_text(text)
        browser.requests.clear()
        browser.goto(page.as_uri())
        browser.wait_for(f"location.href === {json.dumps(page.as_uri())} && "
                         "document.readyState === 'complete'", f"{page} to load")
        layout = browser.evaluate(LAYOUT_PROBE)
        where = f"{variant} page, {device} ({width} px)"
        assert layout["page_width"] <= layout["width"], \
            (f"{where}: the page scrolls sideways", layout["page_width"], layout["overflow"])
        assert layout["overflow"] == [], f"{where}: past the viewport, outside a scroll box"
        # the phone lays the page out at its own width, unzoomed (no 980 px desktop layout)
        assert layout["inner_width"] == width and layout["scale"] == 1, (where, layout)
        assert layout["height"] == metrics["height"], (where, layout)
        assert width - 20 <= layout["width"] <= width, (where, layout)  # less a scroll bar, if any
        assert [(i["figure"], i["alt"]) for i in layout["images"]] == [
            (f"fig-{n}", FIGURES[n]) for n in names], where
        for img in layout["images"]:
            assert img["natural_width"] > 0, (where, img)  # decoded
            assert 0 < img["width"] <= img["container"] + 0.5, (where, img)  # layout rounding
            assert img["right"] <= layout["width"], (where, img)
        assert layout["headings"][0] == "summary-head", (where, layout["headings"])
        assert layout["summary_items"] >= 3, where
        assert layout["summary_top"] < min(layout["first_figure_top"], layout["height"]), where
        if device == "phone":  # the wide tables scroll in their boxes
            assert sum(b.startswith("DIV.scroll") for b in layout["scrolling"]) >= 2, (where, layout)
        assert all(u.startswith(("file://", "data:")) for u in browser.requests), \
            (where, browser.requests)
        shot = tmp_path / f"{variant}-{device}.png"
        browser.screenshot(shot)
        data = shot.read_bytes()
        scale = metrics["deviceScaleFactor"]
        assert struct.unpack(">II", data[16:24]) == (width * scale, metrics["height"] * scale)
        assert len(data) > 20_000 * scale, f"{where}: a blank screenshot?"

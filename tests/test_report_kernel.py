"""A `pagetax kernel --json` file in `pagetax report` and in the metadata
picture (report_kernel.py): loaded beside a run and memmap files, its
per-page table, the model's rows, the one-sentence answer and the HVO
rows on the page, and the kernel-measured HVO bars in the picture."""
import copy
import html
import json
import os
import re

import pytest

from helpers import SMALL, cli

pytest.importorskip("matplotlib")

from pagetax import plot, report_page  # noqa: E402
from pagetax.errors import PagetaxError  # noqa: E402
from pagetax.kernel import SCHEMA, table  # noqa: E402

AWAY = "/tmp"   # from the source tree, whose pagetax/ may have no compiled core


def _fig(median, low, high):
    return {"median": median, "low": low, "high": high, "coverage": 0.97, "rounds": 11,
            "best": low, "spread_pct": 100 * (high - low) / 2 / median}


def _path(median, low, high, per_call=300.0):
    return {"per_page_ns": _fig(median, low, high), "per_call_ns": per_call,
            "linearity_pct": 0.5, "pages": [1, 256], "median_ns": [per_call, per_call]}


def _model(design, folio, build, release):
    return {"design": design, "folio_size": folio, "pages_per_io": 256, "cache": "warm",
            "build_ns": _fig(build, build - 0.1, build + 0.1),
            "release_ns": _fig(release, release - 0.1, release + 0.1),
            "build_release_ns": _fig(build + release, build + release - 0.2,
                                     build + release + 0.2)}


def kernel_doc():
    """A kernel file as pagetax kernel writes one, figures chosen: hugetlb
    refused, io_uring refused, 1 GiB memmap rows refused."""
    return {
        "schema": SCHEMA,
        "machine": {"hostname": "kbox", "kernel": "Linux 6.18.0-test", "cpu_model": "Test CPU <&>",
                    "cores": 4, "timing_context": {"virtualized": False}},
        "config": {"paths": ["mincore", "vmsplice", "io_uring"],
                   "buffers": ["4K", "THP", "hugetlb"], "rounds": 11, "calls": 15, "pages": [1, 2, 4, 256], "memmap": True,
                   "clock": "CLOCK_MONOTONIC around each system call",
                   "cache": "warm: the same pages every call"},
        "meaning": {"mincore": "the walk <no struct page>", "vmsplice": "gup_fast & a reference",
                    "splice": "put_page", "vmsplice+splice": "taken and dropped"},
        "refused": {"io_uring": "needs root (a loop device)"},
        "warnings": ["vmsplice on THP pages: the rounds' interval spans +-9 %"],
        "kernel": [
            {"buffer": "4K", "checks": {}, "refused": {},
             "paths": {"mincore": _path(0.61, 0.55, 0.66, 720.0),
                       "vmsplice": _path(44.9, 44.1, 45.5, 282.0),
                       "splice": _path(35.7, 35.5, 35.8, 339.0),
                       "vmsplice+splice": {"per_page_ns": _fig(80.6, 80.3, 81.2),
                                           "derived": "vmsplice + splice, round by round"}}},
            {"buffer": "THP", "checks": {}, "refused": {},
             "paths": {"mincore": _path(0.12, 0.11, 0.13),
                       "vmsplice": _path(8.6, 8.5, 8.7),
                       "splice": _path(36.6, 36.5, 36.7),
                       "vmsplice+splice": {"per_page_ns": _fig(45.2, 45.1, 45.3),
                                           "derived": "vmsplice + splice, round by round"}}},
            {"buffer": "hugetlb", "checks": {}, "paths": {},
             "refused": {"buffer": "the kernel could not allocate a 2 MiB hugetlb page"}},
        ],
        "model": [_model("page", "4K", 5.0, 4.8), _model("folio", "4K", 6.4, 5.0),
                  _model("folio", "2M", 6.2, 5.0)],
        "memmap": [
            {"size": "2M", "huge_page_bytes": 2 << 20, "hvo": False, "requested": 256,
             "allocated": 256, "model": "page", "model_freed_per_huge_page": 0,
             "freed_pages": 0, "freed_per_huge_page": 0.0, "matches": True},
            {"size": "2M", "huge_page_bytes": 2 << 20, "hvo": True, "requested": 256,
             "allocated": 256, "model": "hvo-2M", "model_freed_per_huge_page": 7,
             "freed_pages": 1792, "freed_per_huge_page": 7.0, "matches": True},
            {"size": "1G", "huge_page_bytes": 1 << 30, "hvo": False, "requested": 1,
             "model": "page", "refused": "not enough free memory for 1 x 1G"},
            {"size": "1G", "huge_page_bytes": 1 << 30, "hvo": True, "requested": 1,
             "model": "hvo-1G", "refused": "not enough free memory for 1 x 1G"},
        ],
    }


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    p = cli("run", *SMALL, "--repeat", "1", "--designs", "vec,page,memcpy", "--ops", "read",
            "--json", str(d / "r.json"), cwd=d)
    assert p.returncode == 0, p.stderr
    return d / "r.json"


@pytest.fixture
def files(tmp_path, run_file):
    from test_guest_memmap import _memmap_doc
    (tmp_path / "k.json").write_text(json.dumps(kernel_doc()))
    (tmp_path / "m.json").write_text(json.dumps(_memmap_doc()))
    return {"run": str(run_file), "kernel": str(tmp_path / "k.json"),
            "memmap": str(tmp_path / "m.json")}


def _text(page):
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _section(page, start, end="<h2"):
    i = page.index(start)
    j = page.find(end, i + len(start))
    return page[i:j if j >= 0 else len(page)]


def _tables(section):
    """Every table in section: a list of rows of cell texts, header first."""
    return [[[html.unescape(re.sub(r"<[^>]+>", "", c))
              for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, re.S)]
             for tr in re.findall(r"<tr>(.*?)</tr>", t, re.S)]
            for t in re.findall(r"<table>.*?</table>", section, re.S)]


def test_load_takes_a_kernel_file_in_any_order_beside_a_run_and_memmaps(files):
    run, memmaps, kernel = report_page.load(
        [files["kernel"], files["memmap"], files["run"]])
    assert run["schema"] != SCHEMA and kernel["schema"] == SCHEMA
    assert kernel["path"] == files["kernel"] and kernel["memmap"] == kernel_doc()["memmap"]
    assert [m["path"] for m in memmaps] == [files["memmap"]]
    run2, memmaps2, kernel2 = report_page.load([files["memmap"], files["kernel"]])
    assert run2 is None and [f["path"] for f in memmaps2] == [files["memmap"]]
    assert kernel2["path"] == files["kernel"]


def test_load_refuses_two_kernel_files_and_unknown_or_cut_files(files, tmp_path):
    with pytest.raises(PagetaxError) as e:
        report_page.load([files["kernel"], files["run"], files["kernel"]])
    assert str(e.value) == (f"{files['kernel']}: a second kernel file ({files['kernel']} is the "
                            "first): a report shows one kernel's figures")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "pagetax-kernel/2"}))
    with pytest.raises(PagetaxError, match="neither a pagetax run result .* nor a pagetax "
                                           "kernel file \\(schema pagetax-kernel/1\\)$"):
        report_page.load([str(other)])
    cut = kernel_doc()
    del cut["meaning"]
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    with pytest.raises(PagetaxError) as e:
        report_page.load([str(tmp_path / "cut.json")])
    assert str(e.value) == (f"{tmp_path / 'cut.json'}: a kernel file without meaning; was the "
                            "file edited or cut short?")


def test_page_of_a_kernel_file_alone(tmp_path):
    doc = dict(kernel_doc(), path=str(tmp_path / "k.json"))
    page = report_page.render(kernel=doc)
    assert "Throughput" not in page and 'id="memmap"' not in page
    section = _section(page, '<h2 id="kernel">')
    assert "What this kernel pays per page" in section
    text = _text(section)
    assert "k.json: Linux 6.18.0-test on Test CPU <&>, 4 cores." in text
    assert "Test CPU &lt;&amp;&gt;" in section and "<&>" not in section
    assert "median of 11 rounds (95 % interval)" in text
    # the answer, the sentence pagetax kernel prints, escaped
    answer = table.answer(kernel_doc())
    assert answer.startswith("The model charges 9.8 ns per page") and "80.6" in answer
    assert f'<p class="answer">{html.escape(answer)}</p>' in section
    per_page, model, memmap = _tables(section)
    # per page: a row per path measured on some buffer, a column per buffer measured
    assert per_page[0] == ["path", "4 KiB pages", "2 MiB THP", "ns per call, 4K", "per page holds"]
    rows = {r[0]: r[1:] for r in per_page[1:]}
    assert list(rows) == ["mincore", "vmsplice", "splice", "vmsplice+splice"]
    assert rows["vmsplice"] == ["44.9 (44.1 to 45.5)", "8.6 (8.5 to 8.7)", "282",
                                "gup_fast & a reference"]
    assert rows["mincore"][-1] == "the walk <no struct page>"   # escaped, shown as written
    assert rows["vmsplice+splice"] == ["80.6 (80.3 to 81.2)", "45.2 (45.1 to 45.3)", "-",
                                       "taken and dropped"]
    assert "<no struct page>" not in section and "&amp;" in section
    assert model[0] == ["design", "folio", "build", "release", "build + release"]
    assert model[1] == ["page", "4K", "5.0 (4.9 to 5.1)", "4.8 (4.7 to 4.9)", "9.8 (9.6 to 10.0)"]
    assert [r[:2] for r in model[1:]] == [["page", "4K"], ["folio", "4K"], ["folio", "2M"]]
    # memmap: measured rows with what HVO leaves, refused rows with why
    assert memmap[1] == ["2M", "off", "256", "0", "0", "page", "0", "1.562 %", "yes"]
    assert memmap[2] == ["2M", "on", "256", "1,792", "7", "hvo-2M", "7", "0.1953 %", "yes"]
    assert memmap[4] == ["1G", "on", "1", "-", "-", "hvo-1G", "-", "-",
                         "refused: not enough free memory for 1 x 1G"]
    # what was not measured says why; the warnings are there too
    for said in ("refused: io_uring: needs root (a loop device)",
                 "refused: buffer on hugetlb: the kernel could not allocate a 2 MiB hugetlb page",
                 "warning: vmsplice on THP pages: the rounds' interval spans +-9 %"):
        assert said in text, said


def test_a_kernel_file_without_model_or_memmap_rows_leaves_no_empty_tables():
    doc = kernel_doc()
    del doc["model"], doc["memmap"]
    doc["refused"]["memmap"] = "needs root (the hugetlb pool and the sysctl)"
    section = _section(report_page.render(kernel=dict(doc, path="k.json")), '<h2 id="kernel">')
    assert len(_tables(section)) == 1 and "The model over" not in section
    assert "refused: memmap: needs root (the hugetlb pool and the sysctl)" in _text(section)


def _hvo_bars(fig):
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = {}
    for bar in ax.patches:
        label = labels[int(round(bar.get_y() + bar.get_height() / 2))]
        widths.setdefault(label, []).append((bar.get_width(), bar.get_hatch()))
    return labels, widths


def test_metadata_picture_draws_the_kernels_hvo_rows_under_their_models(run_file):
    run = json.loads(run_file.read_text())
    doc = kernel_doc()
    doc["memmap"][3] = {"size": "1G", "huge_page_bytes": 1 << 30, "hvo": True, "requested": 1,
                        "allocated": 1, "model": "hvo-1G", "model_freed_per_huge_page": 4095,
                        "freed_pages": 4095, "freed_per_huge_page": 4095.0, "matches": True}
    plt = plot._pyplot()
    fig = plot.metadata_figure(plt, run, (), doc)
    fig.canvas.draw()
    try:
        labels, widths = _hvo_bars(fig)
        # 64 B per 4 KiB page less the vmemmap pages freed, over the huge page
        assert widths["kernel: 2M hugetlb, HVO on"] == [(pytest.approx(100 * 4096 / (2 << 20)),
                                                         "xx")]
        assert widths["kernel: 1G hugetlb, HVO on"] == [(pytest.approx(100 * 4096 / (1 << 30)),
                                                         "xx")]
        assert widths["kernel: 2M hugetlb, HVO off"] == [(pytest.approx(100 * 64 / 4096), "xx")]
        assert "kernel: 1G hugetlb, HVO off" not in labels   # refused: not drawn, said why
        assert labels.index("kernel: 2M hugetlb, HVO on") == labels.index("hvo-2M *") + 1
        assert labels.index("kernel: 1G hugetlb, HVO on") == labels.index("hvo-1G *") + 1
        assert labels.index("kernel: 2M hugetlb, HVO off") == labels.index("page") + 1
        words = " ".join(" ".join(t.get_text().split()) for t in fig.texts)
        assert "kernel rows: struct page bytes Linux 6.18.0-test keeps" in words
        assert ("Not drawn: kernel: 1G hugetlb, HVO off refused: not enough free memory for "
                "1 x 1G.") in words
        # the run's capacity is 16 MiB: the model's hvo-1G rounds it up to a 1 GiB page
        assert "not a whole number of 1G pages" in words
        assert "this kernel's, HVO off and on" in [t.get_text() for t in fig.legends[0].texts]
    finally:
        plt.close(fig)
    fig = plot.metadata_figure(plt, run)   # as before: no kernel rows
    try:
        labels, _ = _hvo_bars(fig)
        assert not [x for x in labels if x.startswith("kernel:")]
    finally:
        plt.close(fig)


def test_plot_and_the_page_pass_the_kernel_file_to_the_picture(run_file, tmp_path, monkeypatch):
    run = json.loads(run_file.read_text())
    doc = dict(kernel_doc(), path="k.json")
    seen = []
    real = plot.metadata_figure

    def spy(plt, d, memmaps=(), kernel=None):
        seen.append(kernel)
        return real(plt, d, memmaps, kernel)
    monkeypatch.setattr(plot, "metadata_figure", spy)
    plot.plot(run, str(tmp_path / "b"), kernel=doc)
    page = report_page.render(run, kernel=doc)
    assert seen == [doc, doc]
    # the picture's caption on the page says what the cross-hatched bars are, and the
    # section follows the run
    assert "Cross-hatched, under the model row" in page
    assert page.index('<h2 id="metadata">') < page.index('<h2 id="kernel">')
    assert "Another machine" in _text(_section(page, '<h2 id="kernel">'))   # kbox is not here
    monkeypatch.setattr(plot, "metadata_figure", real)
    same = dict(doc, machine=dict(doc["machine"], **{k: run["machine"][k]
                                                     for k in ("hostname", "kernel")}))
    assert "Another machine" not in report_page.render(run, kernel=same)
    refused = copy.deepcopy(doc)
    for r in refused["memmap"]:
        r["refused"] = "no counters"
    assert "Cross-hatched" not in report_page.render(run, kernel=refused)


def test_report_command_with_a_run_a_memmap_and_a_kernel_file(files, tmp_path):
    p = cli("report", files["kernel"], files["run"], files["memmap"], "-o",
            str(tmp_path / "rep"), cwd=AWAY)
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    for heading in ('<h2 id="summary-head">', '<h2 id="metadata">', '<h2 id="kernel">',
                    '<h2 id="memmap">'):
        assert heading in page, heading
    assert html.escape(table.answer(kernel_doc())) in page
    two = cli("report", files["kernel"], files["kernel"], "-o", str(tmp_path / "x"), cwd=AWAY)
    assert two.returncode == 1 and "a second kernel file" in two.stderr
    assert "Traceback" not in two.stderr and len(two.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="pagetax kernel's refusals differ without root")
def test_report_of_a_file_pagetax_kernel_wrote(tmp_path):
    """The page reads what the command writes, not only this file's
    hand-made document."""
    p = cli("kernel", "--paths", "mincore,vmsplice", "--buffers", "4K,THP", "--no-memmap",
            "--rounds", "3", "--calls", "3", "--json", str(tmp_path / "k.json"), cwd=AWAY)
    assert p.returncode == 0, p.stderr
    q = cli("report", str(tmp_path / "k.json"), "-o", str(tmp_path / "rep"), cwd=AWAY)
    assert q.returncode == 0, q.stderr
    doc = json.loads((tmp_path / "k.json").read_text())
    section = _section((tmp_path / "rep" / "index.html").read_text(), '<h2 id="kernel">')
    per_page = _tables(section)[0]
    rows = {r[0]: r for r in per_page[1:]}
    for e, column in zip(doc["kernel"], range(1, 3)):
        if e["paths"]:
            assert rows["vmsplice"][column] == table.figure(e["paths"]["vmsplice"]["per_page_ns"])
    assert html.escape(table.answer(doc)) in section


def test_a_kernel_file_from_a_tcg_guest_says_so_and_lists_the_functions_each_path_ran():
    doc = kernel_doc()
    doc["guest"] = {"accelerator": "tcg", "namespace": {"label": "fsdax-ext4-mem"},
                    "timings_comparable": False}
    doc["kernel"][0]["functions"] = {"vmsplice": {"try_grab_folio_fast": 32, "gup_fast": 2},
                                     "splice": {}}
    doc["kernel"][0]["paths"]["process_vm_readv"] = _path(12.5, 12.0, 13.0)   # not in ORDER
    text = _text(_section(report_page.render(kernel=dict(doc, path="k.json")),
                          '<h2 id="kernel">'))
    assert ("Measured in a TCG guest on fsdax-ext4-mem. These timings say nothing of a real "
            "machine") in text
    assert "4K vmsplice: try_grab_folio_fast 32, gup_fast 2" in text
    assert "4K splice: none of the traced functions" in text
    assert "process_vm_readv 12.5 (12.0 to 13.0) -" in text   # a path the table did not know
    host = _text(_section(report_page.render(kernel=dict(kernel_doc(), path="k.json")),
                          '<h2 id="kernel">'))
    assert "guest" not in host and "Kernel functions" not in host

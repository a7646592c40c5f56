"""A memmap guest's figures beside the model: the explanations, `pagetax vm
memmap`'s table and JSON (with its guests faked), and the report page of a
guest run and a memmap file."""
import html
import json
import re
import subprocess
import sys

import pytest

from pagetax import report_page
from pagetax.guest.lifecycle import KVM_NOTE, TCG_NOTE, VmResult, guest_labels
from pagetax.guest.memmap import memmap_design, memmap_explained, memmap_explanation, memmap_figures
from pagetax.guest.namespace import Namespace
from helpers import SMALL, cli

MIB, GIB = 1 << 20, 1 << 30
# `pagetax vm memmap --json` rows as a TCG guest measured them (QEMU 7.2, Debian's 6.1
# kernel, a 1 GiB NVDIMM), cut to what the explanations and the page read.
MEMMAP_ROWS = [
    {"namespace": "fsdax-ext4-mem", "ndctl": "-m fsdax --map=mem", "region_bytes": GIB,
     "namespace_bytes": 1071644672, "dram_bytes": 16994304, "device_bytes": 2097152,
     "model": "page", "model_dram_bytes": 16777216, "model_device_bytes": 0,
     "free_pages": {"drop_bytes": 16994304, "meminfo_change_kb": {
         "MemFree": -19152, "Slab": 204, "SReclaimable": 116, "SUnreclaim": 88}}},
    {"namespace": "fsdax-ext4-dev", "ndctl": "-m fsdax --map=dev", "region_bytes": GIB,
     "namespace_bytes": 1054867456, "dram_bytes": 233472, "device_bytes": 18874368,
     "model": "altmap", "model_dram_bytes": 0, "model_device_bytes": 18874368,
     "free_pages": {"drop_bytes": 233472, "meminfo_change_kb": {
         "Slab": 196, "SReclaimable": 132, "SUnreclaim": 64, "KernelStack": 16,
         "VmallocUsed": 16}}},
    {"namespace": "devdax-4k-mem", "ndctl": "-m devdax --map=mem --align=4k", "region_bytes": GIB,
     "namespace_bytes": 1071644672, "dram_bytes": 17072128, "device_bytes": 2097152,
     "model": "page", "model_dram_bytes": 16777216, "model_device_bytes": 0,
     "free_pages": {"drop_bytes": 17072128, "meminfo_change_kb": {
         "MemFree": -21920, "Slab": 224, "SReclaimable": 164, "SUnreclaim": 60}}},
    {"namespace": "devdax-2M-mem", "ndctl": "-m devdax --map=mem --align=2M", "region_bytes": GIB,
     "namespace_bytes": 1071644672, "dram_bytes": 4530176, "device_bytes": 2097152,
     "model": "devdax-dedup-2M", "model_dram_bytes": 4194304, "model_device_bytes": 0,
     "free_pages": {"drop_bytes": 4530176, "meminfo_change_kb": {
         "MemFree": -4780, "Slab": 288, "SReclaimable": 188, "SUnreclaim": 100,
         "VmallocUsed": 16}}},
    {"namespace": "devdax-2M-dev", "ndctl": "-m devdax --map=dev --align=2M", "region_bytes": GIB,
     "namespace_bytes": 1054867456, "dram_bytes": 311296, "device_bytes": 18874368,
     "model": "altmap", "model_dram_bytes": 0, "model_device_bytes": 18874368,
     "free_pages": {"drop_bytes": 311296, "meminfo_change_kb": {
         "MemFree": -6020, "Slab": 296, "SReclaimable": 208, "SUnreclaim": 88}}},
]
TCG_REASON = "no vmx or svm in /proc/cpuinfo, and a /dev/kvm without them hangs a stock kernel"


def _labels(ns, accel="tcg"):
    return guest_labels(ns, accel, TCG_REASON if accel == "tcg" else "vmx, and /dev/kvm opens",
                        "7.2.22", "6.1.0-56-amd64", GIB)


def _memmap_doc():
    rows = [dict(r, guest=_labels(Namespace.from_label(r["namespace"])))
            for r in MEMMAP_ROWS]
    return {"schema": "pagetax-vm-memmap/1", "capacity_bytes": GIB, "rows": rows}


def _words(text):
    return " ".join(text.split())


# what each mode's explanation must say, beyond the figures every one gives
EXPLAINED = {
    "fsdax-ext4-mem": ["262,144 x 64 B = 16.00 MiB",
                       "The device gives up 2.00 MiB where pagetax's page model says 0.00 MiB: "
                       "the 8 KiB info block, padded to the 2 MiB alignment",
                       "The +212 KiB of DRAM beyond the model are not struct pages",
                       "pfn device and pmem block device",
                       "Slab +204 KiB across create-namespace; the other +8 KiB is outside the slab."],
    "fsdax-ext4-dev": ["no DRAM for struct pages",
                       "ALIGN(8 KiB info block + 64 B x 262,142 pages, 2 MiB) = 18.00 MiB",
                       "region - namespace = 18.00 MiB, as the model says",
                       "Slab +196 KiB", "the other +32 KiB is outside the slab "
                       "(KernelStack +16 KiB, VmallocUsed +16 KiB)"],
    "devdax-4k-mem": ["no compound pages, so no vmemmap dedup", "= 16.00 MiB",
                      "gives up 2.00 MiB", "+288 KiB", "dax devices", "Slab +224 KiB"],
    "devdax-2M-mem": ["keeps 2 pages", "512 x 8 KiB = 4.00 MiB in DRAM instead of 16.00 MiB",
                      "gives up 2.00 MiB where pagetax's devdax-dedup-2M model says 0.00 MiB",
                      "+328 KiB", "8 page-table pages, 32 KiB", "Slab +288 KiB",
                      "the other +40 KiB is outside the slab (VmallocUsed +16 KiB)"],
    "devdax-2M-dev": ["no DRAM for struct pages",
                      "at --align=2M too, since the kernel dedups no vmemmap kept on the device",
                      "as the model says", "+304 KiB", "Slab +296 KiB"],
}


@pytest.mark.parametrize("row", MEMMAP_ROWS, ids=lambda r: r["namespace"])
def test_memmap_rows_explain_their_difference_from_the_model(row):
    from pagetax import metadata
    got = memmap_explained(row)
    assert got["dram_minus_model_bytes"] == row["dram_bytes"] - row["model_dram_bytes"]
    assert got["device_minus_model_bytes"] == row["device_bytes"] - row["model_device_bytes"]
    text = got["explanation"]
    assert "\n" not in text
    for phrase in EXPLAINED[row["namespace"]]:
        assert phrase in text, phrase
    # the model's figures it quotes are metadata.py's, for the design memmap_design picks
    ns = Namespace.from_label(row["namespace"])
    model = metadata.model(memmap_design(ns))
    assert model.name == row["model"]
    if model.name == "altmap":
        assert f"= {model.device(GIB) / MIB:.2f} MiB" in text
    else:
        assert f"= {model.dram(GIB) / MIB:.2f} MiB" in text


def test_memmap_explanation_without_meminfo_or_beyond_the_model():
    bare = {k: v for k, v in MEMMAP_ROWS[0].items() if k != "free_pages"}
    text = memmap_explanation(bare)
    assert "This file has no meminfo from the guest to say how much is slab." in text
    assert "Slab" not in text
    below = dict(MEMMAP_ROWS[0], dram_bytes=16777216 - 12288)
    assert "DRAM came out 12 KiB below the model" in memmap_explanation(below)
    bigger = dict(MEMMAP_ROWS[1], device_bytes=MEMMAP_ROWS[1]["device_bytes"] + 2 * MIB)
    assert "= 20.00 MiB, 2.00 MiB more than the model's reserve" in memmap_explanation(bigger)
    odd = dict(MEMMAP_ROWS[0], device_bytes=4 * MIB)  # not the info block alone
    assert "info block" not in memmap_explanation(odd)
    # the dedup's absence on the device is a 2M devdax matter only
    assert "--align=2M" not in memmap_explanation(MEMMAP_ROWS[1])  # fsdax
    four_k = dict(MEMMAP_ROWS[4], namespace="devdax-4k-dev", ndctl="-m devdax --map=dev --align=4k")
    assert "--align=2M" not in memmap_explanation(four_k)


def test_memmap_figures_carries_the_differences_and_explanation():
    row = MEMMAP_ROWS[3]
    ns = Namespace.from_label(row["namespace"])
    result = VmResult(
        namespace=ns, status=0, stdout="", stderr="", console="", files=[], accelerator="tcg",
        accelerator_reason=TCG_REASON, qemu_version="7.2.22", guest_kernel="6.1.0-56-amd64",
        capacity=GIB, ndctl={"namespace": {"size": row["namespace_bytes"]},
                             "region": {"size": row["region_bytes"]}},
        memmap=row["free_pages"], phases=[])
    got = memmap_figures(result)
    for key in ("region_bytes", "namespace_bytes", "dram_bytes", "device_bytes", "model",
                "model_dram_bytes", "model_device_bytes"):
        assert got[key] == row[key], key
    assert got["dram_minus_model_bytes"] == 335872 and got["device_minus_model_bytes"] == 2 * MIB
    assert got["explanation"] == memmap_explanation(row)
    assert got["guest"]["accelerator"] == "tcg"


FAKE_GUESTS = r"""
import json, sys
from pagetax import cli
from pagetax.commands import vm
from pagetax.guest.host import Host
from pagetax.guest.lifecycle import VmResult
rows = {r["namespace"]: r for r in json.load(open(sys.argv[1]))}
vm.check_tools = lambda kernel=None: Host("/bin/true", "/bin/true", "/boot/vmlinuz-6.1", "6.1", "/bin/true")
vm.qemu_version = lambda qemu: "7.2.22"
vm.choose_accelerator = lambda: ("tcg", "faked")

def run(ns, argv, memmap=False, capacity=None, **kw):
    assert memmap and argv == []
    r = rows[ns.label]
    return VmResult(ns, 0, "", "", "", [], "tcg", "faked", "7.2.22", "6.1.0-56-amd64", capacity,
                    {"namespace": {"size": r["namespace_bytes"]},
                     "region": {"size": r["region_bytes"]}},
                    r["free_pages"], [("boot", 1.0)])
vm.run_guest = run
sys.exit(cli.main(sys.argv[2:]))
"""


def test_vm_memmap_prints_and_writes_the_explanations(tmp_path):
    """`pagetax vm memmap` with its five guests faked: the table, each mode's
    explanation under it, and the JSON rows with differences and explanations."""
    (tmp_path / "rows.json").write_text(json.dumps(MEMMAP_ROWS))
    p = subprocess.run([sys.executable, "-c", FAKE_GUESTS, str(tmp_path / "rows.json"),
                        "vm", "memmap", "--json", str(tmp_path / "m.json")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = _words(p.stdout)
    table_end = out.index("at the region's capacity")  # the table's caption ends so
    last = table_end
    for row in MEMMAP_ROWS:
        note = _words(f"{row['namespace']} ({row['ndctl']}): {memmap_explanation(row)}")
        assert out.find(note) > last, f"{row['namespace']}'s explanation is not under the table"
        last = out.find(note)
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["schema"] == report_page.MEMMAP_SCHEMA
    for got, row in zip(doc["rows"], MEMMAP_ROWS):
        assert got["namespace"] == row["namespace"]
        assert (got["dram_bytes"], got["model_dram_bytes"], got["device_bytes"],
                got["model_device_bytes"]) == (row["dram_bytes"], row["model_dram_bytes"],
                                               row["device_bytes"], row["model_device_bytes"])
        assert got["dram_minus_model_bytes"] == row["dram_bytes"] - row["model_dram_bytes"]
        assert got["device_minus_model_bytes"] == row["device_bytes"] - row["model_device_bytes"]
        assert got["explanation"] == memmap_explanation(row)


@pytest.fixture(scope="module")
def run_doc(tmp_path_factory):
    """A small run's result file, made on the host."""
    pytest.importorskip("matplotlib")
    d = tmp_path_factory.mktemp("run")
    p = cli("run", *SMALL, "--repeat", "1", "--designs", "vec,page,memcpy", "--ops", "read",
            "--json", str(d / "r.json"), cwd=d)
    assert p.returncode == 0, p.stderr
    return json.loads((d / "r.json").read_text())


def _text(page):
    return _words(html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _section(page, start, end="<h2"):
    i = page.index(start)
    j = page.find(end, i + len(start))
    return page[i:j if j >= 0 else len(page)]


def test_report_page_with_a_guest_run_and_a_memmap_file(run_doc, tmp_path):
    doc = dict(run_doc, guest=_labels(Namespace("fsdax", "mem")))
    (tmp_path / "run.json").write_text(json.dumps(doc))
    (tmp_path / "memmap.json").write_text(json.dumps(_memmap_doc()))
    # in either order
    p = cli("report", str(tmp_path / "memmap.json"), str(tmp_path / "run.json"),
            "-o", str(tmp_path / "rep"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<title>pagetax report (in a TCG guest)</title>" in page

    # the banner, before any section of the run
    assert '<div class="guest"' in page, "no guest banner"
    assert page.index('<div class="guest"') < page.index("<h2>")
    banner = _text(_section(page, '<div class="guest"', "</div>"))
    for said in ("This run ran inside a TCG guest", "emulator qemu-system-x86_64 7.2.22",
                 f"accelerator TCG: {TCG_REASON}", "guest kernel 6.1.0-56-amd64",
                 "namespace fsdax-ext4-mem (fsdax, map=mem, ext4) on a 1G emulated NVDIMM",
                 "The timings on this page are not comparable to a real machine.", TCG_NOTE):
        assert said in banner, said
    assert "<h2>Throughput and cost per segment</h2>" in page  # the run is all there too

    # the memmap section: the table, a row per mode, and each mode's explanation
    memmap = _section(page, '<h2 id="memmap">')
    assert "The kernel's own struct pages, measured in a guest" in _text(memmap)
    assert "memmap.json: one fresh guest per namespace mode (qemu-system-x86_64 7.2.22 under " \
           "TCG, guest kernel 6.1.0-56-amd64), on a 1G NVDIMM region" in _text(memmap)
    table = _section(memmap, "<table>", "</table>")
    assert table.count("<tr>") == 1 + len(MEMMAP_ROWS)
    cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", table)]
    assert cells[:9] == ["-m fsdax --map=mem", "1,071,644,672", "16.21", "2.00", "page", "16.00",
                         "0.00", "+0.21", "+2.00"]
    assert cells[27:36] == ["-m devdax --map=mem --align=2M", "1,071,644,672", "4.32", "2.00",
                            "devdax-dedup-2M", "4.00", "0.00", "+0.32", "+2.00"]
    items = re.findall(r"<li>(.*?)</li>", memmap, re.S)
    assert len(items) == len(MEMMAP_ROWS)
    for item, row in zip(items, MEMMAP_ROWS):
        assert _text(item) == _words(f"{row['namespace']} ({row['ndctl']}): "
                                     f"{memmap_explanation(row)}")


def test_report_page_banner_under_kvm_and_none_on_the_host(run_doc):
    kvm = report_page.render(dict(run_doc, guest=_labels(Namespace("devdax", "dev"), "kvm")))
    assert '<div class="guest"' in kvm, "no guest banner"
    banner = _text(_section(kvm, '<div class="guest"', "</div>"))
    assert "This run ran inside a KVM guest" in banner and KVM_NOTE in banner
    assert "namespace devdax-2M-dev (devdax, map=dev, align=2M)" in banner
    assert "not comparable" not in banner
    host = report_page.render(run_doc)
    assert 'class="guest"' not in host and "<title>pagetax report</title>" in host
    assert "ran inside" not in host and 'id="memmap"' not in host


def test_report_page_of_a_memmap_file_alone(tmp_path):
    doc = _memmap_doc()
    for r in doc["rows"]:
        assert "explanation" not in r  # a file from before explanations: the page makes them
    (tmp_path / "m.json").write_text(json.dumps(doc))
    p = cli("report", str(tmp_path / "m.json"), "-o", str(tmp_path / "rep"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert '<h2 id="memmap">' in page and "Throughput" not in page and 'class="guest"' not in page
    assert page.count("<li>") == len(MEMMAP_ROWS)
    assert html.escape(memmap_explanation(MEMMAP_ROWS[3])) in page


def test_report_refuses_what_it_cannot_show(tmp_path, run_doc):
    (tmp_path / "r.json").write_text(json.dumps(run_doc))
    (tmp_path / "other.json").write_text(json.dumps({"schema": "pagetax-metadata/1"}))
    bad = _memmap_doc()
    del bad["rows"][2]["dram_bytes"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "empty.json").write_text(json.dumps({"schema": "pagetax-vm-memmap/1", "rows": []}))
    for args, message in [
        (["r.json", "r.json"], "r.json: a second run result (r.json is the first): a report "
                               "shows one run; compare two with pagetax compare"),
        (["other.json"], "other.json: neither a pagetax run result (schema pagetax-run/1), a "
                         "pagetax vm memmap file (schema pagetax-vm-memmap/1) nor a pagetax "
                         "kernel file (schema pagetax-kernel/1)"),
        (["bad.json"], "bad.json: memmap row 2 lacks dram_bytes; was the file edited or cut short?"),
        (["empty.json"], "empty.json: has no list of memmap rows"),
        (["none.json"], "none.json: No such file or directory"),
    ]:
        p = cli("report", *args, "-o", str(tmp_path / "rep"), cwd=tmp_path)
        assert p.returncode == 1
        assert p.stderr.strip() == f"pagetax: error: {message}"
    assert not (tmp_path / "rep").exists()

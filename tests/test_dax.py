"""DAX backings, mapping page sizes and persistent writes, on tmpfs and plain
files (this machine class has no pmem): the decisions and the errors."""
import json
import os

import numpy as np
import pytest

import pagetax
from pagetax import backings, dax, fio, libpmem, machine, persist
from helpers import cli, data_view, design_rows, expected_gather, expected_scatter, random_extents

MIB = 1 << 20
FLUSHING = ["clwb", "clflushopt", "clflush", "nt", "auto"]


def test_map_sync_refused_on_tmpfs_names_the_file_system():
    with pytest.raises(pagetax.BackingError) as info:
        backings.open_backing("dax:/dev/shm/pagetax-test-dax", 4 * MIB)
    msg = str(info.value)
    assert msg.startswith("dax:/dev/shm/pagetax-test-dax: /dev/shm is tmpfs, which refused MAP_SYNC")
    assert "EOPNOTSUPP" in msg and "mount one with -o dax" in msg
    assert not os.path.exists("/dev/shm/pagetax-test-dax")


def test_auto_falls_back_to_tmpfs_and_says_so(monkeypatch):
    monkeypatch.setattr(backings, "find_dax", lambda: None)
    with backings.open_backing("auto", 4 * MIB) as b:
        assert b.kind == "tmpfs" and not b.map_sync
        assert b.notes["auto"] == "fell back to tmpfs: no DAX mount (-o dax) or device-DAX node found"
    monkeypatch.setattr(backings, "find_dax", lambda: ("dax", "/dev/shm"))  # says dax, is not
    with backings.open_backing("auto", 4 * MIB) as b:
        assert b.kind == "tmpfs"
        assert b.notes["auto"].startswith("fell back to tmpfs: dax:/dev/shm/pagetax-")
        assert "refused MAP_SYNC" in b.notes["auto"]
    monkeypatch.setattr(backings, "find_dax", lambda: ("devdax", "/dev/dax0.0"))
    with backings.open_backing("auto", 4 * MIB) as b:  # a device holds data: not without --overwrite
        assert b.kind == "tmpfs" and "only with --overwrite" in b.notes["auto"]


def test_auto_on_this_machine_is_recorded_in_results(tmp_path):
    p = cli("run", "--backing", "auto", "--size", "8M", "--io-size", "1M", "--seg-sizes", "4K",
            "--designs", "vec", "--repeat", "1", "--no-progress", "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    b = json.loads((tmp_path / "r.json").read_text())["machine"]["backing"]
    assert "auto" in b["notes"] and b["kind"] in ("tmpfs", "dax", "devdax")
    assert b["map_sync"] is (b["kind"] == "dax")


@pytest.mark.parametrize("spec, message", [
    ("devdax:/dev/dax9.9", "devdax:/dev/dax9.9: no such device"),
    ("devdax:/dev/null", "devdax:/dev/null: /sys/dev/char/1:3/size is missing; is this a device-DAX node?"),
    ("devdax:/etc/hostname", "not a character device"),
    ("dax:", "give a path after 'dax:'"),
])
def test_devdax_errors(spec, message):
    with pytest.raises(pagetax.BackingError, match=message.replace("?", r"\?")):
        backings.open_backing(spec, 4 * MIB)


def test_devdax_size_must_fit_and_align(monkeypatch):
    monkeypatch.setattr(backings, "devdax_geometry", lambda dev: (64 * MIB, 2 * MIB))
    with pytest.raises(pagetax.BackingError, match="--size 134217728 is larger than the device"):
        backings.open_backing("devdax:/dev/zero", 128 * MIB)
    with pytest.raises(pagetax.BackingError, match="is not a multiple of the device alignment 2097152"):
        backings.open_backing("devdax:/dev/zero", 3 * MIB)


def test_statx_dax_attribute():
    assert dax.statx_dax("/dev/shm") in (False, None)  # tmpfs is never DAX
    assert dax.statx_dax("/no/such/path") is None


def test_page_size_2m_maps_2m_pages():
    try:
        b = backings.open_backing("tmpfs", 8 * MIB, page_size="2M")
    except pagetax.BackingError as e:
        pytest.skip(f"this machine cannot arrange 2 MiB pages: {e}")
    with b:
        m = machine.mapping_page_size(machine.smaps_of(b.base))
        assert m["page_size"] == "2M" and m["pmd_mapped_bytes"] == 8 * MIB
        assert b.notes["page_size_requested"] == "2M" and b.notes["huge_pages_by"]
    assert not [n for n in os.listdir("/tmp") if n.startswith("pagetax-huge-")]


def test_page_size_2m_needs_whole_huge_pages():
    with pytest.raises(pagetax.BackingError, match="--size 5242880 is not a multiple of 2 MiB"):
        backings.open_backing("tmpfs", 5 * MIB, page_size="2M")


def test_cpuid_agrees_with_proc_cpuinfo():
    flags = machine.cpu_flags()
    cpu = persist.cpu_features()
    for name in ("clwb", "clflushopt", "clflush", "sse2"):
        assert cpu[name] == (name in flags), name


def test_persist_modes_resolve_like_libpmem():
    every = {"clwb": True, "clflushopt": True, "clflush": True, "sse2": True}
    assert persist.resolve_persist("auto", cpu=every) == "auto-clwb"
    assert persist.resolve_persist("auto", cpu=dict(every, clwb=False)) == "auto-clflushopt"
    assert persist.resolve_persist("auto", cpu=dict(every, clwb=False, clflushopt=False)) == "auto-clflush"
    assert persist.resolve_persist("auto", caches_persistent=True, cpu=every) == "fence"
    with pytest.raises(pagetax.PagetaxError, match="--persist clwb: this CPU has no CLWB"):
        persist.resolve_persist("clwb", cpu=dict(every, clwb=False))
    with pytest.raises(pagetax.PagetaxError, match="unknown persistence mode 'wbinvd'"):
        persist.resolve_persist("wbinvd")


def test_the_core_says_which_instruction_a_mode_lacks():
    cpu = persist.cpu_features()
    assert persist.missing_insn("none") is None
    for insn in ("clwb", "clflushopt", "clflush"):
        assert (persist.missing_insn(insn) is None) == cpu[insn], insn
        assert persist.missing_insn(insn, cpu=dict(cpu, **{insn: False})) == insn.upper()


@pytest.mark.parametrize("mode", FLUSHING)
@pytest.mark.parametrize("each", [False, True])
@pytest.mark.parametrize("design", ["vec", "pfn", "page", "huge", "altmap", "memdesc", "sgl"])
def test_scatter_bytes_under_every_persist_mode(backing, rng, design, mode, each):
    if mode != "auto" and persist.missing_insn(mode):
        pytest.skip(f"this CPU has no {persist.missing_insn(mode)}")
    ext = random_extents(rng, 6 * MIB, 120)
    src = rng.integers(0, 256, int(ext["len"].sum()), dtype=np.uint8)
    view = data_view(backing, design)
    want = expected_scatter(view, ext, src)
    pagetax.scatter(backing, design, ext, src, persist=mode, each=each)
    np.testing.assert_array_equal(view, want)


def _flushed(backing, ext, mode, each=False, design="vec"):
    src = np.arange(int(ext["len"].sum()), dtype=np.uint64).astype(np.uint8)
    with backing.attach(design) as att:
        m = att.run("write", ext, src, persist=persist.persist_code(persist.resolve_persist(mode), each))
    assert (expected_gather(data_view(backing, design), ext) == src).all()
    return m.lines_flushed, m.fences


def test_lines_flushed_and_fences_are_counted(backing):
    aligned = pagetax.extents.make([0, 8192 + 64], [4096, 256])  # 64 + 4 lines
    odd = pagetax.extents.make([100], [200])                      # bytes 100..299: lines 1..4
    for insn in ("clwb", "clflushopt", "clflush"):
        if persist.cpu_features()[insn]:
            assert _flushed(backing, aligned, insn) == (68, 1)
            assert _flushed(backing, aligned, insn, each=True) == (68, 2)
            assert _flushed(backing, odd, insn) == (4, 1)
    assert _flushed(backing, aligned, "nt") == (0, 1)         # all streamed
    assert _flushed(backing, odd, "nt") == (2, 1)             # 12-byte head, 12-byte tail
    assert _flushed(backing, aligned, "auto") == (0, 1)       # both >= 256 B: streamed
    assert _flushed(backing, pagetax.extents.make([0], [128]), "auto") == (2, 1)  # < 256: flush
    assert _flushed(backing, aligned, "none") == (0, 0)
    assert _flushed(backing, aligned, "clflush", design="memcpy") == (68, 1)


def test_libpmem_peer_rows_or_one_line_why(tmp_path):
    p = cli("run", "--peers", "libpmem", "--size", "8M", "--io-size", "1M", "--seg-sizes", "4K",
            "--designs", "vec", "--patterns", "rand", "--repeat", "1", "--no-progress",
            "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    designs = {(r["design"], r["op"]) for r in design_rows(doc)}
    try:
        libpmem.load_libpmem()
    except OSError:
        assert "pagetax: warning: --peers libpmem: libpmem is not installed" in p.stderr
        assert designs == {("vec", "read"), ("vec", "write")}
        return
    assert designs == {("vec", "read"), ("vec", "write"), ("libpmem", "write"),
                       ("libpmem-nodrain", "write")}
    rows = {r["design"]: r for r in doc["results"] if r["op"] == "write"}
    assert rows["libpmem"]["persistence"]["fences"] == 256       # one drain per segment
    assert rows["libpmem-nodrain"]["persistence"]["fences"] == 1  # one per I/O


def test_run_marks_flushes_on_tmpfs_not_persistent(tmp_path):
    p = cli("run", "--persist", "auto", "--size", "8M", "--io-size", "1M", "--seg-sizes", "4K",
            "--designs", "vec,kernel", "--ops", "write", "--patterns", "seq", "--repeat", "1",
            "--no-progress", "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "not persistent: flush cost on DRAM" in p.stdout.replace("\n", " ")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["config"]["persist_resolved"] == persist.resolve_persist("auto")
    rows = {r["design"]: r["persistence"] for r in design_rows(doc)}
    assert rows["vec"]["persistent"] is False and "not persistent" in rows["vec"]["note"]
    assert rows["vec"]["fences"] == 1 and rows["vec"]["lines_flushed"] == 0  # 4 KiB: streamed
    assert rows["kernel"]["mode"] == "its own path"


@pytest.mark.parametrize("args, message", [
    (["--persist", "wbinvd"], "argument --persist: invalid choice: 'wbinvd'"),
    (["--page-size", "1G"], "argument --page-size: invalid choice: '1G'"),
    (["--peers", "fiio"], "argument --peers: unknown peer 'fiio' (choose from libpmem, fio)"),
    (["--backing", "dax:/dev/shm/x", "--size", "4M", "--io-size", "64K"],
     "pagetax: error: dax:/dev/shm/x: /dev/shm is tmpfs, which refused MAP_SYNC"),
    (["--backing", "devdax:/dev/dax7.7", "--size", "4M", "--io-size", "64K"],
     "pagetax: error: devdax:/dev/dax7.7: no such device"),
])
def test_bad_dax_options(tmp_path, args, message):
    p = cli("run", *args, cwd=tmp_path)
    assert p.returncode in (1, 2) and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and message in p.stderr


def test_fio_rows_or_one_line_why(tmp_path):
    p = cli("run", "--peers", "fio", "--size", "16M", "--io-size", "1M", "--seg-sizes", "4K",
            "--designs", "vec", "--patterns", "rand", "--repeat", "2", "--no-progress",
            "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = design_rows(json.loads((tmp_path / "r.json").read_text()))
    if not fio.available():
        assert "pagetax: warning: --peers fio: fio is not installed" in p.stderr
        assert {r["design"] for r in rows} == {"vec"}
        return
    mmap = [r for r in rows if r["design"] == "fio-mmap"]
    assert {(r["op"], r["pattern"], r["seg_bytes"]) for r in mmap} == {("read", "rand", 4096),
                                                                       ("write", "rand", 4096)}
    for r in mmap:
        assert r["gbps"] > 0 and r["reps"] == 2 and r["ratio_vec"] is not None
        assert r["ns_per_seg"] == pytest.approx(r["io_bytes"] / r["gbps"] / r["segments"], rel=0.2)

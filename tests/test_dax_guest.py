"""The DAX paths for real, inside an emulated-NVDIMM guest (`pagetax vm test`).

The guest agent (pagetax/guest/agent.py) prepares one namespace and says where
it is: PAGETAX_VM_DAX_DIR (an fsdax mount) or PAGETAX_VM_DEVDAX (a device-DAX
node), with PAGETAX_VM_NAMESPACE describing it.  Anywhere else these tests
skip, and tests/test_dax.py checks the same code's decisions on tmpfs.
"""
import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pagetax
from pagetax import backings, dax, daxfaults, fio, libpmem, persist
from helpers import cli, expected_gather, expected_scatter, random_extents

MIB = 1 << 20
TRACE_TOGGLES = 40    # the lockup came within the first few under multi-threaded TCG
DAX_DIR = os.environ.get("PAGETAX_VM_DAX_DIR")
DEVDAX = os.environ.get("PAGETAX_VM_DEVDAX")
NAMESPACE = json.loads(os.environ.get("PAGETAX_VM_NAMESPACE", "{}"))

fsdax = pytest.mark.skipif(not DAX_DIR, reason="no fsdax mount: runs in `pagetax vm test`")
devdax = pytest.mark.skipif(not DEVDAX, reason="no device DAX: runs in `pagetax vm test`")


def _moves_bytes(b, design, rng):
    """A scatter then a gather through `design`, checked against numpy."""
    off, nbytes = pagetax.designs.design_layout(design, b.size)
    view = b.view()[off:off + min(nbytes, 8 * MIB)]   # a guest has no RAM to copy a device
    ext = random_extents(rng, min(nbytes, 6 * MIB), 60)
    src = rng.integers(0, 256, int(ext["len"].sum()), dtype=np.uint8)
    want = expected_scatter(view, ext, src)
    pagetax.scatter(b, design, ext, src)
    np.testing.assert_array_equal(view, want)
    out = pagetax.aligned_buffer(src.size)
    pagetax.gather(b, design, ext, out)
    np.testing.assert_array_equal(out, expected_gather(view, ext))


@fsdax
@pytest.mark.parametrize("page_size", ["4K", "2M"])
def test_fsdax_file_maps_with_map_sync_statx_and_pmds(rng, page_size):
    with backings.open_backing(f"dax:{DAX_DIR}/t", 8 * MIB, page_size=page_size) as b:
        assert b.kind == "dax" and b.map_sync and b.synchronous
        assert dax.statx_dax(b.fd) is True           # the file, not its directory
        d = backings.describe(b)
        assert d["notes"]["statx_dax"] is True and d["map_sync"] is True
        assert d["fs_type"] == NAMESPACE["fs"]
        m = d["mapping"]
        assert m["method"] == "fs_dax trace events while populating", m
        if page_size == "2M":                             # 2 MiB-aligned: all PMDs
            assert m["page_size"] == "2M" and m["pmd_mapped_bytes"] == 8 * MIB, m
            assert m["faults"]["pmd_fallback"] == 0, m
        else:                                             # MADV_NOHUGEPAGE: all PTEs
            assert m["page_size"] == "4K" and m["pte_mapped_bytes"] == 8 * MIB, m
        _moves_bytes(b, "page", rng)
    assert set(os.listdir(DAX_DIR)) <= {"lost+found"}     # created, unlinked, gone


@fsdax
def test_fault_tracing_on_and_off_while_the_other_cpu_schedules():
    """Each DAX mapping turns fs_dax trace events on and off, and the kernel
    patches its text to do it.  Under multi-threaded TCG the guest locked up
    within seconds of this (a vCPU trapping forever on a replaced int3, see
    vm.qemu_argv); the guest's one TCG thread must get through."""
    assert os.cpu_count() == 2, "vm.qemu_argv gives the guest two vCPUs"
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    waker = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.0005)"],
                             preexec_fn=lambda: os.sched_setaffinity(0, {1}))
    try:
        for _ in range(TRACE_TOGGLES):
            with daxfaults.DaxFaultTrace() as trace:
                pass
            assert trace.counts == {"pmd": 0, "pmd_fallback": 0, "pte": 0}, trace.why
    finally:
        waker.kill()
        waker.wait()
        os.sched_setaffinity(0, cpus)


@fsdax
def test_auto_picks_the_dax_mount():
    with backings.open_backing("auto", 4 * MIB) as b:
        assert b.kind == "dax" and b.map_sync
        assert b.notes["auto"].startswith(f"chose dax:{DAX_DIR}/pagetax-")


@fsdax
@pytest.mark.parametrize("design", ["vec", "page", "altmap", "sgl", "kernel"])
def test_designs_move_bytes_on_fsdax(rng, design):
    """altmap keeps its descriptors on the medium itself, as --map=dev does."""
    with backings.open_backing(f"dax:{DAX_DIR}/t", 8 * MIB) as b:
        _moves_bytes(b, design, rng)


@fsdax
def test_flush_counts_on_a_real_dax_mapping():
    aligned = pagetax.extents.make([0, 8192 + 64], [4096, 256])  # 64 + 4 lines
    with backings.open_backing(f"dax:{DAX_DIR}/t", 4 * MIB) as b, b.attach("vec") as att:
        for mode in ("clwb", "clflushopt", "clflush", "nt"):
            if persist.missing_insn(mode):
                continue
            src = np.arange(4352, dtype=np.uint64).astype(np.uint8)
            m = att.run("write", aligned, src,
                        persist=persist.persist_code(persist.resolve_persist(mode), False))
            assert (m.lines_flushed, m.fences) == ((0, 1) if mode == "nt" else (68, 1)), mode
            assert (expected_gather(b.view(), aligned) == src).all()


@fsdax
def test_a_dax_file_truncated_under_the_mapping_is_survived():
    with backings.open_backing(f"dax:{DAX_DIR}/t", 8 * MIB) as b, b.attach("page") as att:
        ext = pagetax.extents.make([0, 6 * MIB], [4096, 4096])
        buf = pagetax.aligned_buffer(8192)
        att.run("read", ext, buf)
        os.ftruncate(b.fd, MIB)
        with pytest.raises(pagetax.PagetaxError, match="SIGBUS at byte 6291456 of the backing"):
            att.run("read", ext, buf)
    with backings.open_backing(f"dax:{DAX_DIR}/u", 4 * MIB) as b2:   # and the process goes on
        assert pagetax.gather(b2, "vec", pagetax.extents.make([0], [64]),
                              pagetax.aligned_buffer(64)) == 64


@fsdax
def test_libpmem_calls_a_file_on_the_mount_pmem():
    """libpmem answers pmem_is_pmem for mappings it made itself (it keeps a
    list of them): pmem_map_file of a file on the DAX mount must say pmem,
    as it says not-pmem on tmpfs."""
    try:
        name = libpmem.load_libpmem()["library"]
    except OSError:
        pytest.skip("libpmem is not installed")
    pmem = ctypes.CDLL(name)
    pmem.pmem_map_file.restype = ctypes.c_void_p
    pmem.pmem_map_file.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
                                   ctypes.c_uint, ctypes.POINTER(ctypes.c_size_t),
                                   ctypes.POINTER(ctypes.c_int)]
    pmem.pmem_is_pmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    pmem.pmem_unmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    answers = {}
    for where in (DAX_DIR, "/dev/shm"):
        path = os.path.join(where, f"pagetax-libpmem-{os.getpid()}")
        mapped, is_pmem = ctypes.c_size_t(), ctypes.c_int()
        addr = pmem.pmem_map_file(path.encode(), 4 * MIB, 1, 0o600,  # PMEM_FILE_CREATE
                                  ctypes.byref(mapped), ctypes.byref(is_pmem))
        try:
            assert addr, f"pmem_map_file({path}) failed"
            answers[where] = (is_pmem.value, pmem.pmem_is_pmem(addr, mapped.value))
        finally:
            if addr:
                pmem.pmem_unmap(addr, mapped.value)
            os.unlink(path)
    assert answers == {DAX_DIR: (1, 1), "/dev/shm": (0, 0)}


@fsdax
def test_a_run_on_fsdax_records_it_and_its_peers(tmp_path):
    """One run, as a user would make it: persistent writes, libpmem and
    fio rows, and the backing described as it really is."""
    p = cli("run", "--backing", f"dax:{DAX_DIR}/run", "--size", "16M", "--io-size", "1M",
            "--seg-sizes", "4K", "--designs", "vec,page", "--patterns", "rand", "--repeat", "1",
            "--persist", "auto", "--peers", "libpmem,fio", "--no-progress", "--json", "r.json",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    b = doc["machine"]["backing"]
    assert b["kind"] == "dax" and b["map_sync"] is True and b["notes"]["statx_dax"] is True
    assert b["mapping"]["page_size"] != "unknown"
    rows = {(r["design"], r["op"]): r for r in doc["results"]}
    assert rows[("vec", "write")]["persistence"]["persistent"] is True
    try:
        libpmem.load_libpmem()
        assert ("libpmem", "write") in rows
    except OSError:
        assert "libpmem is not installed" in p.stderr
    if fio.available():
        assert any(d.startswith("fio-") for d, _ in rows), sorted(rows)
    else:
        assert "fio is not installed" in p.stderr


@devdax
def test_devdax_maps_with_its_alignment_and_needs_no_map_sync(rng):
    size, note = backings.default_size(f"devdax:{DEVDAX}", 1 << 30, overwrite=True)
    geometry = dax.devdax_geometry(DEVDAX)
    assert size <= geometry[0] and size % geometry[1] == 0
    with backings.open_backing(f"devdax:{DEVDAX}", size, overwrite=True) as b:
        d = backings.describe(b)
        assert d["map_sync"] == "not needed" and d["synchronous"] is True
        align = {"4k": 4096, "2M": 2 * MIB}[NAMESPACE["align"]]
        assert d["notes"]["device_align"] == align
        if align == 2 * MIB:
            assert d["mapping"]["page_size"] == "2M", d["mapping"]
        _moves_bytes(b, "page", rng)


@devdax
def test_devdax_run_as_the_readme_gives_it(tmp_path):
    """`--backing devdax:/dev/dax0.0 --overwrite` with no --size: the default
    is capped by the device (a 1 GiB NVDIMM gives a smaller namespace)."""
    p = cli("run", "--backing", f"devdax:{DEVDAX}", "--overwrite", "--io-size", "1M",
            "--seg-sizes", "64K", "--designs", "vec", "--patterns", "seq", "--repeat", "1",
            "--peers", "fio", "--no-progress", "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    b = doc["machine"]["backing"]
    assert b["kind"] == "devdax" and b["size_bytes"] <= dax.devdax_geometry(DEVDAX)[0]
    assert b["map_sync"] == "not needed"
    if fio.available():
        assert any(r["design"] == "fio-dev-dax" for r in doc["results"]), \
            sorted({r["design"] for r in doc["results"]})


@devdax
def test_auto_picks_the_device_only_with_overwrite():
    with backings.open_backing("auto", 4 * MIB) as b:
        assert b.kind == "tmpfs" and "only with --overwrite" in b.notes["auto"]
    with backings.open_backing("auto", 4 * MIB, overwrite=True) as b:
        assert b.kind == "devdax" and b.notes["auto"] == f"chose devdax:{DEVDAX}"


GUP_FUNCTIONS = ("gup", "get_user_pages", "try_grab")


def _kernel_on_dax(tmp_path, spec):
    """`pagetax kernel` on the namespace's pages, briefly, tracer on."""
    p = cli("kernel", "--buffers", "4K", "--dax", *spec, "--paths", "vmsplice,io_uring",
            "--trace", "--rounds", "3", "--calls", "3", "--no-memmap", "--json", "k.json",
            cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "k.json").read_text())
    dax = next(e for e in doc["kernel"] if e["buffer"] == "dax")
    assert not dax["refused"].get("buffer"), dax["refused"]
    # the pipe holds references to pmem pages, and O_DIRECT reads into them
    # bring the loop device's bytes (the checks raise otherwise)
    assert dax["checks"]["vmsplice"]["pipe_references_pages"] is True
    assert dax["checks"]["io_uring"]["read_foll_pins"] is not None
    assert "vmsplice" in dax["paths"] and "read" in dax["paths"]
    if "trace" not in doc["refused"]:   # the guest's tracer: which functions pinned
        hits = dax["functions"]["vmsplice"]
        assert any(k in f for f in hits for k in GUP_FUNCTIONS), hits
    return doc, dax


@fsdax
def test_kernel_pins_fsdax_pages_and_refuses_their_registration(tmp_path):
    doc, dax = _kernel_on_dax(tmp_path, [f"dax:{DAX_DIR}/kernel.dat"])
    assert dax["mapping"]["backing"] == "dax"
    # a long-term pin (io_uring's buffer registration) of fsdax pages is refused by design
    refused = dax["checks"]["io_uring"]["read_fixed_refused"]
    assert "Operation not supported" in refused and "long-term pin" in refused
    assert "read_fixed" not in dax["paths"]


@devdax
def test_kernel_pins_devdax_pages(tmp_path):
    doc, dax = _kernel_on_dax(tmp_path, [f"devdax:{DEVDAX}", "--overwrite"])
    assert dax["mapping"]["backing"] == "devdax"

"""Faults, interruptions and concurrency: nothing crashes, nothing leaks."""
import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pagetax
from pagetax import metadata
from helpers import CLI

MIB = 1 << 20


def _shm():
    return {n for n in os.listdir("/dev/shm") if n.startswith("pagetax")}


def test_truncated_file_is_an_error_not_a_sigbus(tmp_path):
    b = pagetax.Backing.from_path(tmp_path / "t.dat", 8 * MIB)
    with b, b.attach("page") as att:
        ext = pagetax.extents.make([0, 6 * MIB], [4096, 4096])
        buf = pagetax.aligned_buffer(8192)
        assert att.run("read", ext, buf).bytes == 8192
        os.ftruncate(b.fd, MIB)  # as another process could, under the mapping
        with pytest.raises(pagetax.PagetaxError,
                           match="SIGBUS at byte 6291456 of the backing: the file was truncated"):
            att.run("read", ext, buf)
        with pytest.raises(pagetax.PagetaxError, match="ended in SIGBUS; detach it"):
            att.run("read", ext, buf)
    with pagetax.Backing.scratch(MIB) as b2:  # the process carries on
        assert pagetax.gather(b2, "vec", pagetax.extents.make([0], [64]),
                              pagetax.aligned_buffer(64)) == 64


@pytest.fixture
def map_hooks():
    """Set pt_backing_map's test hooks for one test, and clear them after."""
    lib = pagetax.core.lib
    yield lib
    lib.pt_test_set_map_hooks(0)


@pytest.mark.parametrize("by_touch", [False, True], ids=["madvise-populate", "touch-fallback"])
def test_a_file_truncated_before_it_is_populated_is_an_error(tmp_path, map_hooks, by_touch):
    """Issue 13, item 2: populating a new mapping of a file that another
    process has just truncated ends in an error, whether the kernel has
    MADV_POPULATE_* (EFAULT) or pagetax touches each page (under the guard)."""
    hooks = map_hooks.PT_TEST_TRUNCATE_AFTER_MAP
    if by_touch:
        hooks |= map_hooks.PT_TEST_POPULATE_BY_TOUCH
        match = ("SIGBUS at byte 0 of the backing while populating the mapping: "
                 "the file was truncated under the mapping")
    else:
        match = ("populating the mapping failed: Bad address "
                 r"\(the file is shorter than the mapping, or the medium reported an error\)")
    map_hooks.pt_test_set_map_hooks(hooks)
    with pytest.raises(pagetax.BackingError, match=match):
        pagetax.Backing.from_path(tmp_path / "t.dat", 4 * MIB)
    map_hooks.pt_test_set_map_hooks(0)
    assert os.listdir(tmp_path) == []
    with pagetax.Backing.from_path(tmp_path / "u.dat", 4 * MIB) as b:  # and the process goes on
        assert pagetax.gather(b, "vec", pagetax.extents.make([0], [64]),
                              pagetax.aligned_buffer(64)) == 64


def test_the_touch_fallback_populates_an_intact_file(tmp_path, map_hooks):
    """The fallback for kernels before 5.14 maps and moves bytes as madvise does."""
    map_hooks.pt_test_set_map_hooks(map_hooks.PT_TEST_POPULATE_BY_TOUCH)
    with pagetax.Backing.from_path(tmp_path / "t.dat", 4 * MIB) as b:
        map_hooks.pt_test_set_map_hooks(0)
        data = np.frombuffer(os.urandom(8192), np.uint8)
        ext = pagetax.extents.make([4096, 2 * MIB], [4096, 4096])
        buf = pagetax.aligned_buffer(8192)
        buf[:] = data
        pagetax.scatter(b, "vec", ext, buf)
        out = pagetax.aligned_buffer(8192)
        pagetax.gather(b, "page", ext, out)
        assert np.array_equal(out, data)


def test_altmap_on_a_truncated_backing_fails_to_attach_not_with_sigbus(tmp_path):
    """Issue 13, item 2: altmap initialises its descriptors on the backing
    itself; a file truncated under the mapping makes that an error."""
    with pagetax.Backing.from_path(tmp_path / "t.dat", 8 * MIB) as b:
        os.ftruncate(b.fd, 0)
        with pytest.raises(pagetax.PagetaxError,
                           match=r"SIGBUS at byte \d+ of the backing while initialising the "
                                 "descriptor table kept on the backing"):
            b.attach("altmap")


def test_altmap_refcounts_and_holds_on_a_truncated_backing_are_errors(tmp_path):
    """Reading altmap's counts back, and holding or releasing a vector, touch
    the backing outside a run; each is guarded as a run is."""
    ext = pagetax.extents.make([0, 4096], [4096, 4096])
    with pagetax.Backing.from_path(tmp_path / "t.dat", 8 * MIB) as b:
        with b.attach("altmap") as att:
            att.hold(ext)
            os.ftruncate(b.fd, 0)
            with pytest.raises(pagetax.PagetaxError, match="while reading reference counts"):
                att.refcounts()
            with pytest.raises(pagetax.PagetaxError, match="while releasing held references"):
                att.unhold()
            with pytest.raises(pagetax.PagetaxError, match="ended in SIGBUS; detach it"):
                att.hold(ext)
        os.ftruncate(b.fd, 8 * MIB)
        with b.attach("altmap") as att:  # detach after a fault releases nothing twice
            with pytest.raises(pagetax.PagetaxError, match="while releasing held references"):
                with att.hold(ext):
                    os.ftruncate(b.fd, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_tmpfs_is_reported_not_a_sigbus_later():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    d = tempfile.mkdtemp(prefix="pagetax-small-")
    assert libc.mount(b"pagetax", d.encode(), b"tmpfs", 0, b"size=4m") == 0
    try:
        with pytest.raises(pagetax.BackingError,
                           match=r"posix_fallocate of 8388608 bytes failed: No space left on device"):
            pagetax.Backing.from_path(os.path.join(d, "x"), 8 * MIB)
        assert os.listdir(d) == []
    finally:
        libc.umount2(d.encode(), 2)
        os.rmdir(d)


@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "SIGINT"),
                                             (signal.SIGTERM, 143, "SIGTERM")])
def test_interrupt_stops_fast_keeps_results_and_cleans_up(tmp_path, sig, code, name):
    before = _shm()
    # vec first: its rows finish early; kernel's random 64 B repetitions are
    # over a second each, so the signal lands in the middle of a C call.
    p = subprocess.Popen([*CLI, "run", "--no-progress",
                          "--designs", "vec,kernel", "--ops", "read,write", "--patterns", "rand",
                          "--seg-sizes", "4K,64", "--size", "256M", "--repeat", "5",
                          "--json", "r.json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    assert p.poll() is None, p.communicate()
    t0 = time.monotonic()
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 1.0
    assert p.returncode == code and "Traceback" not in err
    assert "pagetax: interrupted after" in err and "partial results" in err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["partial"] is True and doc["interrupted_by"] == name
    assert len(doc["results"]) >= 1  # the 4 KiB rows finished before
    assert _shm() == before
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".pagetax-")]  # no temp JSON


def test_an_interrupt_before_any_row_writes_no_file(tmp_path):
    """A file with no rows is one that plot, report and compare can only
    refuse: none is written, and the line says why."""
    p = subprocess.Popen([*CLI, "run", "--no-progress", "--designs", "kernel", "--ops", "read",
                          "--patterns", "rand", "--seg-sizes", "64", "--size", "256M",
                          "--repeat", "5", "--json", "r.json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)   # past start-up, inside the first row (seconds per repetition)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("pagetax: interrupted before any row finished; no "
                                            "result file written")
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "runs").exists()


def test_concurrent_runs_do_not_collide(tmp_path):
    before = _shm()
    env = dict(os.environ, PAGETAX_MEASURING_DIR=str(tmp_path / "locks"))  # this test's own
    procs = [subprocess.Popen([*CLI, "run", "--no-progress",
                               "--designs", "vec,page", "--size", "16M", "--io-size", "1M",
                               "--seg-sizes", "4K", "--repeat", "2", "--json", f"r{i}.json"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env)
             for i in range(3)]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    docs = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(3)]
    paths = {d["machine"]["backing"]["path"] for d in docs}
    assert len(paths) == 3 and _shm() == before
    pids = {p.pid for p in procs}   # whatever overlapped, nothing else was seen
    for d in docs:
        seen = set(d["concurrent_measurements"]["at_start"] + d["concurrent_measurements"]["at_end"])
        assert seen <= pids


def test_a_run_beside_another_measurement_says_so(tmp_path):
    # a lock folder of this test's own: other measurements on the machine stay out
    env = dict(os.environ, PAGETAX_MEASURING_DIR=str(tmp_path / "locks"))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from pagetax import concurrency\n"
        "with concurrency.Measuring():\n"
        "    print('held', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert holder.stdout.readline() == "held\n"
        p = subprocess.run([*CLI, "run", "--no-progress", "--designs", "vec", "--size", "16M",
                            "--io-size", "1M", "--seg-sizes", "4K", "--repeat", "2", "--json",
                            "r.json"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env=env)
    finally:
        holder.kill()
        holder.wait()
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["concurrent_measurements"] == {"at_start": [holder.pid], "at_end": [holder.pid]}
    warning = (f"another pagetax was measuring on this machine (pid {holder.pid}): each run's "
               "timings skew the other's; run them one after the other")
    assert warning in doc["warnings"] and f"pagetax: warning: {warning}" in \
        p.stderr.replace("\n", " ")


def test_a_lone_measurement_sees_no_other_and_a_dead_ones_file_is_cleared(tmp_path):
    from pagetax import concurrency
    stale = tmp_path / "999999"
    stale.write_text("")
    with concurrency.Measuring(str(tmp_path)) as m:
        assert m.others() == [] and not stale.exists()
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, time; from pagetax import concurrency\n"
            f"with concurrency.Measuring({str(tmp_path)!r}):\n"
            "    print('held', flush=True); time.sleep(60)")],
            stdout=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            assert holder.stdout.readline() == "held\n"
            assert m.others() == [holder.pid]
        finally:
            holder.kill()
            holder.wait()
        assert m.others() == []   # killed: its lock went with it
    assert os.listdir(tmp_path) == []


SPACE = 1 << 20


@st.composite
def extent_lists(draw):
    n = draw(st.integers(1, 12))
    offs = draw(st.lists(st.integers(0, SPACE + 8192), min_size=n, max_size=n))
    big = draw(st.booleans())  # sometimes enough to overrun the data area in total
    lens = draw(st.lists(st.integers(0, SPACE // 4 if big else 3 * 4096), min_size=n, max_size=n))
    return pagetax.extents.make(offs, lens)


@pytest.fixture(scope="module")
def hyp_backing():
    with pagetax.Backing.scratch(SPACE) as b:
        b.view()[:] = np.random.default_rng(7).integers(0, 256, SPACE, dtype=np.uint8)
        atts = {d: b.attach(d) for d in ("vec", "pfn", "page", "huge", "memdesc", "sgl", "kernel")}
        yield b, atts
        for a in atts.values():
            a.close()


@settings(max_examples=150, deadline=None)
@given(ext=extent_lists(), buf_extra=st.integers(-64, 64))
def test_validator_and_builders_agree_with_the_model(hyp_backing, ext, buf_extra):
    b, atts = hyp_backing
    total = int(ext["len"].sum())
    buf_bytes = max(total + buf_extra, 1)
    try:
        pagetax.extents.check(ext, SPACE, buf_bytes)
        python_ok = True
    except pagetax.ExtentError:
        python_ok = False
    for design, att in atts.items():
        try:
            att.validate_in_c(ext, buf_bytes)
            c_ok = True
        except pagetax.ExtentError:
            c_ok = False
        assert c_ok == python_ok, (design, ext, buf_bytes)
        if not c_ok:
            continue
        model = metadata.model(design)
        assert att.entries(ext) * pagetax.design_entry_bytes(design) == model.per_io_bytes(ext)
        buf = pagetax.aligned_buffer(buf_bytes, fill=0xEE)
        att.run("read", ext, buf)
        view = b.view()
        want = np.concatenate([view[o:o + n] for o, n in
                               zip(ext["off"].tolist(), ext["len"].tolist())])
        np.testing.assert_array_equal(buf[:total], want)


def test_threads_share_a_backing_safely():
    """Python threads run the core at once (the GIL is released): each with
    its own attachment, every gather is right, the signal handlers the core
    installs for a run are restored, and one attachment refuses a second
    thread instead of sharing its vector."""
    import threading
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with pagetax.Backing.scratch(16 * MIB) as b:
        b.view()[:] = np.random.default_rng(3).integers(0, 256, 16 * MIB, dtype=np.uint8)
        ext = pagetax.extents.generate("rand", 64, 1 * MIB, 16 * MIB, seed=5)
        view = b.view()
        idx = (ext["off"][:, None] + np.arange(64, dtype=np.uint64)).ravel()
        want = view[idx]
        errors, shared_refusals = [], []
        shared = b.attach("page")

        def work(design):
            try:
                with b.attach(design) as att:
                    for _ in range(5):
                        buf = pagetax.aligned_buffer(1 * MIB)
                        att.run("read", ext, buf, reps=2)
                        np.testing.assert_array_equal(buf, want)
                for _ in range(5):
                    try:
                        shared.run("read", ext, pagetax.aligned_buffer(1 * MIB))
                    except pagetax.PagetaxError as e:
                        assert "running in another thread" in str(e)
                        shared_refusals.append(1)
            except Exception as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(d,)) for d in
                   ("vec", "page", "sgl", "memdesc", "huge", "page")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        shared.close()
    assert not errors, errors
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_table_larger_than_memory_is_refused(monkeypatch):
    from pagetax import machine
    monkeypatch.setattr(machine, "mem_available", lambda: 1 << 20)
    with pagetax.Backing.scratch(256 * MIB) as b:
        with pytest.raises(pagetax.PagetaxError, match=r"page: its descriptor table needs 4194304 "
                           r"bytes of DRAM for 268435456 bytes of backing, more than MemAvailable"):
            b.attach("page")
        b.attach("vec").close()  # no table, no limit


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="an address-space limit and ASan's shadow memory do not mix")
def test_out_of_memory_for_the_table_is_a_clear_error(tmp_path):
    """The C core's own check: mmap of the table fails under an address-space
    limit, and the error says so (in a child, to keep the limit there)."""
    code = r'''
import resource, pagetax
b = pagetax.Backing.scratch(64 << 20)
with open("/proc/self/status") as f:
    vm = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize")][0]
resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 10), vm + (256 << 10)))
try:
    b.attach("page")
except pagetax.PagetaxError as e:
    print("ERROR", e)
'''
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert "ERROR page: cannot allocate a descriptor table of 1048576 bytes: " \
           "Cannot allocate memory" in p.stdout, p.stderr

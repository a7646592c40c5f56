"""Threads in the core: every thread's bytes against numpy, shared
descriptor tables, pinning, errors that name the thread, and the hot pattern."""
import json
import os
import subprocess

import numpy as np
import pytest

import pagetax
from pagetax import extents, fio
from helpers import (CLI, SIZE, SMALL, cli, data_view, design_rows, expected_gather,
                     expected_scatter)

COPY_DESIGNS = [d for d in pagetax.DESIGNS if "contiguous" not in pagetax.designs.design_flags(d)]


def _workload(pattern, seg, threads, space, io=256 << 10):
    exts = extents.per_thread(pattern, seg, io, space, threads, seed=7)
    bufs = [pagetax.aligned_buffer(io) for _ in exts]
    return exts, bufs


@pytest.mark.parametrize("design", COPY_DESIGNS)
@pytest.mark.parametrize("pattern, seg", [("rand", 64), ("seq", 4096), ("hot", 100)])
def test_each_thread_gathers_its_own_extents(backing, design, pattern, seg):
    view = data_view(backing, design)
    exts, bufs = _workload(pattern, seg if pattern != "hot" else 64, 3, view.nbytes)
    with backing.attach(design) as att:
        m = att.run("read", exts, bufs, reps=2, warmup=1, cache="cold",
                    evict=pagetax.aligned_buffer(1 << 20))
    for ext, buf in zip(exts, bufs):
        np.testing.assert_array_equal(buf, expected_gather(view, ext))
    assert m.threads == 3 and m.bytes == 3 * (256 << 10)
    assert m.thread_bytes == [256 << 10] * 3
    assert m.segments == sum(len(e) for e in exts)
    # a repetition's wall time spans every thread's own time in it
    assert (m.rep_wall_ns[None, :] >= m.thread_total_ns).all()


@pytest.mark.parametrize("design", COPY_DESIGNS)
def test_each_thread_scatters_its_own_extents(backing, design, rng):
    view = data_view(backing, design)
    exts, bufs = _workload("rand", 4096 + 64, 2, view.nbytes, io=(4096 + 64) * 40)
    for buf in bufs:
        buf[:] = rng.integers(0, 256, buf.nbytes, dtype=np.uint8)
    want = view.copy()
    for ext, buf in zip(exts, bufs):
        want = expected_scatter(want, ext, buf)
    with backing.attach(design) as att:
        att.run("write", exts, bufs)
    np.testing.assert_array_equal(view, want)


def test_memcpy_threads_copy_their_own_parts_of_the_data_area(backing):
    view = backing.view()
    exts, bufs = _workload("seq", 4096, 3, backing.size)
    with backing.attach("memcpy") as att:
        att.run("read", exts, bufs)
    for i, buf in enumerate(bufs):
        np.testing.assert_array_equal(buf, view[i * buf.nbytes:(i + 1) * buf.nbytes])


def test_threads_extents_must_fit_together():
    with pagetax.Backing.scratch(1 << 20) as b, b.attach("memcpy") as att:
        ext = extents.make([0], [600 << 10])
        bufs = [pagetax.aligned_buffer(600 << 10) for _ in range(2)]
        with pytest.raises(pagetax.ExtentError,
                           match=r"^the threads' extents total more than the data area of "
                                 r"1048576 bytes \(at thread 1\)$"):
            att.run("read", [ext, ext], bufs)


def test_a_thread_error_names_the_thread(backing):
    exts, bufs = _workload("rand", 64, 2, SIZE)
    bad = extents.make([SIZE - 10], [64])
    with backing.attach("page") as att:
        with pytest.raises(pagetax.ExtentError,
                           match=r"^thread 1: extent 0 \[8388598, \+64\) runs past the data area "
                                 r"of 8388608 bytes$"):
            att.run("read", [exts[0], bad], [bufs[0], bufs[1]])
        with pytest.raises(pagetax.PagetaxError,
                           match=r"^thread 1: cannot pin to CPU 1023: Invalid argument$"):
            att.run("read", exts, bufs, cpus=[0, 1023])
        with pytest.raises(pagetax.PagetaxError,
                           match=r"^thread 0: CPU -2 is out of range") as refused:
            att.run("read", exts, bufs, cpus=[-2, 0])
        assert not isinstance(refused.value, pagetax.ExtentError)  # the extents were fine
        with pytest.raises(pagetax.PagetaxError, match="give one CPU per thread"):
            att.run("read", exts, bufs, cpus=[0])
        m = att.run("read", exts, bufs, cpus=[0, 0])  # still usable, and pinned
        assert m.cpus == [0, 0]


def test_hot_refcounts_balance_under_contention():
    """altmap keeps its struct pages on the backing, so the test can read
    every reference count after two threads hammered the same 64 pages."""
    with pagetax.Backing.scratch(16 << 20) as b:
        off, space = pagetax.designs.design_layout("altmap", b.size)
        exts, bufs = _workload("hot", 64, 2, space, io=1 << 20)
        with b.attach("altmap") as att:
            att.run("read", exts, bufs, reps=5)
            npages = space // 4096
            table = b.view()[8192:8192 + 64 * npages].view(np.int32).reshape(npages, 16)
            assert (table[:, 13] == 1).all()  # _refcount: 52 bytes into struct page
            touched = np.unique(np.concatenate(exts)["off"] // 4096)
            assert touched.max() < 64 and len(touched) == 64


def test_per_thread_extents():
    one = extents.generate("rand", 64, 1 << 20, 64 << 20, seed=3)
    [same] = extents.per_thread("rand", 64, 1 << 20, 64 << 20, 1, seed=3)
    np.testing.assert_array_equal(one, same)
    parts = extents.per_thread("rand", 64, 1 << 20, 64 << 20, 4, seed=3)
    every = np.concatenate(parts)["off"]
    assert len(np.unique(every)) == len(every)  # no two threads share a slot
    seq = extents.per_thread("seq", 4096, 1 << 20, 64 << 20, 2)
    assert seq[1]["off"][0] == 1 << 20 and (np.diff(seq[1]["off"]) == 4096).all()
    hot = extents.per_thread("hot", 64, 1 << 20, 64 << 20, 2, hot_bytes=64 * 4096)
    assert all((h["off"] < 64 * 4096).all() for h in hot)
    assert not np.array_equal(hot[0], hot[1])
    with pytest.raises(pagetax.ExtentError, match="4 threads x 1048576 bytes is more than"):
        extents.per_thread("seq", 64, 1 << 20, 3 << 20, 4)
    with pytest.raises(pagetax.ExtentError, match="larger than the hot set of 4096 bytes"):
        extents.generate("hot", 8192, 1 << 20, 3 << 20, hot_bytes=4096)


def test_cli_threads_pin_and_hot(tmp_path):
    p = cli("run", *SMALL, "--designs", "vec,page,memcpy", "--ops", "read", "--patterns",
            "seq,hot", "--seg-sizes", "64", "--threads", "2", "--pin", "--json", "r.json",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "2 threads" in p.stdout and "per thread" in p.stdout
    doc = json.loads((tmp_path / "r.json").read_text())
    cpus = sorted(os.sched_getaffinity(0))
    assert doc["config"]["threads"] == 2 and doc["config"]["cpus"] == [cpus[0], cpus[1 % len(cpus)]]
    assert {r["pattern"] for r in doc["results"]} == {"seq", "hot"}
    for r in design_rows(doc):
        assert r["threads"] == 2 and len(r["thread_gbps"]) == 2
        assert r["io_bytes"] == 2 << 20 and r["segments"] == 2 * (1 << 20) // 64
        assert r["gbps"] == pytest.approx(r["io_bytes"] / np.median(r["rep_wall_ns"]))
        assert len(r["thread_reps_ns"]) == 2
    c = cli("compare", "r.json", "r.json", cwd=tmp_path)
    assert c.returncode == 0 and "threads" in c.stdout and "1.000" in c.stdout
    one = cli("run", *SMALL, "--designs", "vec", "--ops", "read", "--patterns", "seq",
              "--seg-sizes", "64", "--json", "one.json", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    c = cli("compare", "one.json", "r.json", cwd=tmp_path)
    assert c.returncode == 1 and ("have no rows in common (1 against 2 threads: rows match only "
                                  "at the same thread count)") in c.stderr.replace("\n", "")


@pytest.mark.parametrize("args, code, message", [
    (["--threads", "0"], 2, "argument --threads: --threads must be at least 1 (got 0)"),
    (["--threads", "17"], 1, "--threads 17 x --io-size 1048576 is more than --size 16777216"),
    (["--pin", "1x"], 2, "argument --pin: CPU list '1x' is not like 0,2 or 0-3"),
    (["--pin", "4095"], 1, "--pin: CPU 4095 is not one this process may run on"),
    (["--patterns", "hot"], 1, "pattern hot gathers from pages every thread shares; scatters "
                               "to the same bytes have no single result: use --ops read"),
    (["--patterns", "hot", "--ops", "read", "--seg-sizes", "1M"], 1,
     "segment size 1048576 is larger than the hot set of 64 pages"),
])
def test_cli_thread_errors_are_one_line(tmp_path, args, code, message):
    p = cli("run", *SMALL, *args, cwd=tmp_path)
    assert p.returncode == code and "Traceback" not in p.stderr
    assert message in p.stderr and len(p.stderr.strip().splitlines()) <= 2


def test_fio_plan_follows_the_backing():
    engines = {"mmap", "libpmem", "dev-dax", "sync"}
    plan, notes = fio.plan("tmpfs", False, engines)
    assert plan == [("mmap", "fio-mmap")] and "needs a file on DAX" in notes[0]
    plan, notes = fio.plan("dax", True, engines)
    assert plan == [("mmap", "fio-mmap"), ("libpmem", "fio-libpmem")] and notes == []
    plan, notes = fio.plan("devdax", False, engines)
    assert plan == [("dev-dax", "fio-dev-dax")] and "no fio-mmap rows on device DAX" in notes[0]
    plan, notes = fio.plan("dax", True, {"mmap"})
    assert plan == [("mmap", "fio-mmap")]
    assert notes == ["--peers fio: this fio has no libpmem engine (fio --enghelp); "
                     "no fio-libpmem rows"]


def test_fio_command_matches_the_workload():
    cmd = fio.command("libpmem", "F", 1 << 30, "write", "rand", 64, 1 << 20,
                      threads=2, cpus=[1, 0])
    assert {"--ioengine=libpmem", "--rw=randwrite", "--offset=0", "--size=1073741824",
            "--bs=64", "--numjobs=2", "--thread", "--io_size=1048576", "--cpus_allowed=0,1",
            "--cpus_allowed_policy=split"} <= set(cmd)
    hot = fio.command("mmap", "F", 1 << 30, "read", "hot", 64, 1 << 20,
                      hot_bytes=64 * 4096)
    assert {"--rw=randread", "--offset=0", "--size=262144", "--norandommap"} <= set(hot)
    assert not any(a.startswith("--numjobs") for a in hot)
    assert not any(a.startswith("--offset_increment") for a in hot + cmd)


@pytest.mark.skipif(not fio.available(), reason="fio is not installed")
def test_fio_mmap_writes_where_pagetax_expects(tmp_path):
    """The reason fio runs from offset 0 over the whole file: its mmap engine
    puts an --offset run's bytes at the start of the file.  If a fio release
    fixes that, this test says so and fio.command can use offsets again."""
    f = tmp_path / "f"
    f.write_bytes(bytes(4 << 20))
    cmd = fio.command("mmap", str(f), 2 << 20, "write", "seq", 4096, 1 << 20, loops=1)
    cmd[cmd.index("--offset=0")] = "--offset=2097152"
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    data = np.fromfile(f, np.uint8)
    assert data[:1 << 20].any() and not data[2 << 20:].any()


def _fake_fio(tmp_path, body):
    """An environment whose PATH finds a stand-in fio: it lists only the mmap
    engine for --enghelp, and otherwise runs the shell text `body`."""
    fake = tmp_path / "bin" / "fio"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n"
                    "if [ \"$1\" = --enghelp ]; then printf 'Available IO engines:\\n\\tmmap\\n'; exit 0; fi\n"
                    + body)
    fake.chmod(0o755)
    return dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}")


def test_fio_rows_from_a_fake_fio(tmp_path):
    """A stand-in fio on PATH: the rows carry its figures, per thread."""
    env = _fake_fio(tmp_path, f"echo \"$@\" >> {tmp_path}/args\n"
                              "echo '{\"jobs\": [{\"error\": 0, \"read\": {\"bw_bytes\": "
                              "2000000000, \"iops\": 500000}}]}'\n")
    p = cli("run", *SMALL, "--designs", "vec", "--ops", "read", "--patterns", "rand",
            "--seg-sizes", "4K", "--threads", "2", "--peers", "fio", "--json", "r.json",
            cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    [row] = [r for r in json.loads((tmp_path / "r.json").read_text())["results"]
             if r["design"] == "fio-mmap"]
    assert row["gbps"] == 2.0 and row["threads"] == 2
    assert row["phases"] is False  # fio times whole I/Os: the table shows no split
    [line] = [ln.split() for ln in p.stdout.splitlines() if "fio-mmap" in ln]
    assert line[line.index("fio-mmap") + 6:][:3] == ["-", "-", "-"]  # build, copy, release
    assert row["ns_per_seg"] == pytest.approx(1e9 / 250000)  # per thread: 2 jobs at 500k IOPS
    args = (tmp_path / "args").read_text().split()
    assert "--numjobs=2" in args and "--ioengine=mmap" in args and "--rw=randread" in args
    assert "no fio-libpmem rows" in p.stderr


FIO_CLAT = {"min": 180, "max": 90000, "mean": 410.5, "N": 32768,
            "percentile": {"50.000000": 382, "90.000000": 700, "99.000000": 1208,
                           "99.900000": 5100}}


@pytest.mark.parametrize("segs_per_io", [1, 0, 4])
def test_fio_rows_carry_fios_latency_when_an_io_is_one_segment(tmp_path, segs_per_io):
    """fio's I/O is one block: its clat percentiles join the row (and the
    table's p99/io) only when pagetax's I/O is one segment too."""
    job = {"jobs": [{"error": 0, "read": {"bw_bytes": 2000000000, "iops": 500000,
                                          "clat_ns": FIO_CLAT}}]}
    env = _fake_fio(tmp_path, f"echo '{json.dumps(job)}'\n")
    p = cli("run", *SMALL, "--designs", "vec", "--ops", "read", "--patterns", "rand",
            "--seg-sizes", "4K", "--peers", "fio", "--segs-per-io", str(segs_per_io),
            "--json", "r.json", cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    [row] = [r for r in json.loads((tmp_path / "r.json").read_text())["results"]
             if r["design"] == "fio-mmap"]
    if segs_per_io != 1:
        assert row["latency"] is None
        return
    lat = row["latency"]
    assert (lat["p50_ns"], lat["p90_ns"], lat["p99_ns"], lat["p999_ns"]) == (382, 700, 1208, 5100)
    assert (lat["min_ns"], lat["max_ns"], lat["ios"]) == (180, 90000, 32768)
    assert lat["clock_ns_subtracted"] == 0 and "cdf" not in lat
    [line] = [ln.split() for ln in p.stdout.splitlines() if "fio-mmap" in ln]
    assert "1208" in line  # the table's p99/io


def test_sigbus_in_one_thread_ends_the_run_not_the_process(tmp_path):
    mib = 1 << 20
    b = pagetax.Backing.from_path(tmp_path / "t.dat", 8 * mib)
    with b, b.attach("page") as att:
        exts = [extents.make([0], [4096]), extents.make([6 * mib], [4096])]
        bufs = [pagetax.aligned_buffer(4096) for _ in exts]
        att.run("read", exts, bufs)
        os.ftruncate(b.fd, mib)
        with pytest.raises(pagetax.PagetaxError,
                           match=r"^thread 1: SIGBUS at byte 6291456 of the backing"):
            att.run("read", exts, bufs, reps=3)
        with pytest.raises(pagetax.PagetaxError, match="ended in SIGBUS; detach it"):
            att.run("read", exts[:1], bufs[:1])


def test_interrupt_stops_every_thread(tmp_path):
    import signal
    import time
    p = subprocess.Popen([*CLI, "run", "--no-progress",
                          "--designs", "vec,kernel", "--ops", "read", "--patterns", "rand",
                          "--seg-sizes", "4K,64", "--size", "256M", "--repeat", "200",
                          "--threads", "2", "--json", "r.json"],  # minutes: it is stopped
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    assert p.poll() is None, p.communicate()
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 1.0
    assert p.returncode == 130 and "Traceback" not in err
    if "interrupted before any row finished" in err:   # 200 repetitions: maybe no row yet
        assert not (tmp_path / "r.json").exists()
        return
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["partial"] is True and doc["config"]["threads"] == 2 and doc["results"]


def test_a_failing_fio_is_a_warning_not_an_error(tmp_path):
    env = _fake_fio(tmp_path, "echo 'fio: engine mmap not loadable' >&2; exit 1\n")
    p = cli("run", *SMALL, "--designs", "vec", "--ops", "read", "--patterns", "rand",
            "--seg-sizes", "4K", "--peers", "fio", "--json", "r.json", cwd=tmp_path, env=env)
    assert p.returncode == 0 and "Traceback" not in p.stderr
    assert ("pagetax: warning: --peers fio: read rand 4K: fio --ioengine=mmap failed: "
            "fio: engine mmap not loadable; no fio-mmap row") in p.stderr.replace("\n", " ")
    rows = design_rows(json.loads((tmp_path / "r.json").read_text()))
    assert [r["design"] for r in rows] == ["vec"]

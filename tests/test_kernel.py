"""`pagetax kernel`: the slope arithmetic on synthetic data, each probe's
path on the running kernel (its check, its trace events, its refusals),
the command's output, and everything put back after an interrupt."""
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from helpers import CLI, cli
from pagetax import kernel
from pagetax.errors import PagetaxError
from pagetax.kernel import ftrace, measure, slope
from pagetax.kernel.probes import common, mincore, splice, uring
from pagetax.kernel.buffers import Buffer
from pagetax.kernel.loopdev import backing_file
from pagetax.kernel.sysstate import KernelState

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (loop devices, hugetlb, sysctls)")
HUGETLB = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode():
    with open(THP) as f:
        return f.read().split("[")[1].split("]")[0]


# -- the arithmetic ----------------------------------------------------------

def test_fit_recovers_a_line_exactly():
    pages = np.array(measure.PAGES)
    s, i = slope.fit(pages, 43.5 * pages + 280.0)
    assert s == pytest.approx(43.5) and i == pytest.approx(280.0)


def test_fit_needs_two_page_counts():
    with pytest.raises(ValueError, match="two or more different page counts"):
        slope.fit([4, 4, 4], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("n, k, coverage", [(31, 10, 0.9706), (21, 6, 0.9734), (5, 1, 0.9375)])
def test_interval_ranks_are_the_binomials(n, k, coverage):
    # the order statistics of the median's interval (tables: n=31 -> 10th
    # and 22nd); with 5 rounds no 95 % interval exists: the range, said so
    s = slope.summarise(np.arange(1, n + 1, dtype=float))
    assert s["low"] == k and s["high"] == n + 1 - k
    assert s["coverage"] == pytest.approx(coverage, abs=1e-4)


def test_round_slopes_cover_the_true_slope_through_noise():
    rng = np.random.default_rng(3)
    pages = np.array(measure.PAGES, dtype=float)
    rounds = 31
    medians = 40.0 * pages + 300.0 + rng.normal(0, 60.0, (rounds, pages.size))
    slopes, intercepts = slope.round_fits(pages, medians)
    s = slope.summarise(slopes)
    assert s["low"] < 40.0 < s["high"]
    assert s["high"] - s["low"] < 2.0
    assert np.median(intercepts) == pytest.approx(300.0, abs=20)


def test_paired_rounds_cancel_drift_the_two_paths_share():
    # a path pair measured in the same rounds, a drift of up to 50 % per
    # round on both: their difference stays exact, each alone does not
    pages = measure.PAGES
    drift = np.linspace(1.0, 1.5, 21)[:, None]
    p = np.array(pages, dtype=float)
    data = {"read": (pages, drift * (300.0 * p + 40_000.0)),
            "read_fixed": (pages, drift * (200.0 * p + 40_000.0))}
    fits = measure._fits(data)
    assert fits["read"]["per_page_ns"]["spread_pct"] > 10
    diff = fits["read-read_fixed"]["per_page_ns"]
    assert diff["median"] == pytest.approx(100.0 * 1.25, rel=0.01)
    assert "read - read_fixed" in fits["read-read_fixed"]["derived"]


def test_linearity_shows_a_kink():
    p = np.array(measure.PAGES, dtype=float)
    straight = np.tile(10 * p + 100, (3, 1))
    kinked = np.tile(np.where(p > 32, 30 * p - 540, 10 * p + 100), (3, 1))
    assert slope.linearity(measure.PAGES, straight) < 1e-9
    assert slope.linearity(measure.PAGES, kinked) > 3


# -- the C probes check their arguments first ---------------------------------

def test_c_refuses_more_pages_than_the_buffer_holds():
    with Buffer("4K", 8 * 4096) as buf:
        p = mincore.Mincore(buf)
        with pytest.raises(PagetaxError, match="mincore: more pages than the buffer holds"):
            p(9, 1)
        with pytest.raises(PagetaxError, match="zero pages or calls"):
            p(0, 1)


def test_vmsplice_refuses_a_pipe_smaller_than_the_pages():
    with Buffer("4K") as buf:
        p = splice.Splice(buf)
        try:
            import fcntl
            fcntl.fcntl(p.write_fd, 1031, 16 * 4096)   # F_SETPIPE_SZ: 16 pages
            with pytest.raises(PagetaxError, match="a pipe smaller than the pages"):
                p(17, 1)
            assert set(p(16, 3)) == {"vmsplice", "splice"}
        finally:
            p.close()


def test_buffers_are_mapped_as_named():
    with Buffer("4K") as buf:
        assert buf.page_size == "4K" and buf.mapping["pmd_mapped_bytes"] == 0
    if thp_mode() != "never":
        with Buffer("THP") as buf:
            assert buf.page_size == "2M" and buf.mapping["pmd_mapped_bytes"] == 2 << 20


# -- each path is the path it names -------------------------------------------

def test_vmsplice_references_the_callers_pages_and_pins_none():
    with Buffer("4K") as buf:
        p = splice.Splice(buf)
        try:
            check = p.check()
            assert check["pipe_references_pages"] is True
            if check["foll_pins_for_4x256_pages"] is not None:
                assert check["foll_pins_for_4x256_pages"] < 64   # FOLL_GET, not FOLL_PIN
            assert buf.array[0] == 0   # the check's stores were undone
        finally:
            p.close()


class _Copying:
    """The C library, but vmsplice's check sees a copy."""

    def __init__(self, real):
        self._real = real

    def pk_vmsplice_shares(self, *args):
        return 0

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_a_vmsplice_that_copies_is_refused(monkeypatch):
    monkeypatch.setattr(splice, "lib", _Copying(splice.lib))
    with Buffer("4K") as buf:
        p = splice.Splice(buf)
        try:
            with pytest.raises(PagetaxError, match="vmsplice copied the buffer instead of "
                               "referencing its pages"):
                p.check()
        finally:
            p.close()


def test_mincore_sees_every_page_present():
    with Buffer("4K") as buf:
        assert mincore.Mincore(buf).check()["pages_present"] == common.MAX_PAGES


@needs_root
def test_io_uring_reads_bring_the_bytes_and_only_read_pins():
    with Buffer("4K") as buf:
        p = uring.Uring(buf)
        try:
            check = p.check()
            name = p.device.name
            assert backing_file(name) and "pagetax-loop" in backing_file(name)
            n = check["pages_per_io"] * check["ios"]
            assert check["read_foll_pins"] >= 0.9 * n
            assert check["read_fixed_foll_pins"] <= 0.1 * n
        finally:
            p.close()
        assert backing_file(name) is None   # autoclear: detached with the last descriptor


def physical_segments(buf, pages, device):
    """The segments the block layer makes of the buffer's first pages:
    physically contiguous runs (from /proc/self/pagemap, root only), each
    cut at the device's max_segment_size."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(buf.address // 4096 * 8)
        pfn = np.frombuffer(f.read(8 * pages), np.uint64) & np.uint64((1 << 55) - 1)
    if not pfn.all():
        pytest.skip("pagemap shows no frame numbers")
    with open(f"/sys/block/{device}/queue/max_segment_size") as f:
        per_segment = int(f.read()) // 4096
    starts = np.flatnonzero(np.diff(pfn.astype(np.int64)) != 1) + 1
    runs = np.diff(np.concatenate(([0], starts, [pages])))
    return int((-(-runs // per_segment)).sum())


@needs_root
def test_io_uring_pins_twice_beyond_max_segments():
    # why the sweep stops at max_segments: an I/O of more segments is split,
    # and io_uring retries it whole, pinning every page again; how many
    # segments 256 pages make depends on where the kernel put them
    with Buffer("4K") as buf:
        p = uring.Uring(buf)
        try:
            with open(f"/sys/block/{p.device.name}/queue/max_segments") as f:
                limit = int(f.read())
            segments = physical_segments(buf, common.MAX_PAGES, p.device.name)
            pins = common.pins_during(lambda: p._read(0, common.MAX_PAGES, 8))
            if pins is None:
                pytest.skip("no FOLL_PIN counters")
        finally:
            p.close()
    once = 8 * common.MAX_PAGES
    if segments > limit:
        assert pins >= 1.8 * once, (segments, limit, pins)
    else:
        assert 0.9 * once <= pins <= 1.2 * once, (segments, limit, pins)


class Tracing:
    """A tracefs instance of our own: the global trace settings stay untouched."""

    def __init__(self, state, events):
        try:
            base = ftrace.tracefs(state)
        except PagetaxError as e:
            pytest.skip(str(e))
        self.dir = ftrace.own_instance(state, base)
        if self.dir is None:
            pytest.skip("this kernel makes no tracing instance")
        for event in events:
            path = os.path.join(self.dir, "events", *event.split(":"), "enable")
            if not os.path.exists(path):
                pytest.skip(f"no trace event {event}")
            state.set(path, "1")

    def lines(self):
        with open(os.path.join(self.dir, "trace")) as f:
            return [x for x in f.read().splitlines() if not x.startswith("#")]


@needs_root
def test_trace_events_show_the_opcode_and_one_request_per_io():
    with KernelState() as state, Buffer("4K") as buf:
        p = uring.Uring(buf)
        try:
            tracing = Tracing(state, ["io_uring:io_uring_submit_req", "block:block_rq_issue"])
            p(16, 3)
            lines = tracing.lines()
            name = p.device.name
        finally:
            p.close()
    # events are machine-wide: this process's submissions only
    mine = [x for x in lines if re.search(rf"-{os.getpid()}\s+\[", x)]
    ops = [x.split("opcode ")[1].split(",")[0] for x in mine if "io_uring_submit_req" in x]
    assert ops == ["READ"] * 3 + ["READ_FIXED"] * 3
    major_minor = os.stat(f"/dev/{name}").st_rdev
    dev = f"{os.major(major_minor)},{os.minor(major_minor)}"
    issued = [x for x in lines if "block_rq_issue" in x and f" {dev} " in x]
    assert len(issued) == 6 and all(" 65536 " in x for x in issued), issued


@needs_root
def test_io_uring_refused_when_the_kernel_disables_it():
    if not os.path.exists("/proc/sys/kernel/io_uring_disabled"):
        pytest.skip("no kernel.io_uring_disabled")
    with KernelState() as state, Buffer("4K") as buf:
        state.set("/proc/sys/kernel/io_uring_disabled", "2")
        with pytest.raises(PagetaxError, match=r"^io_uring_setup: Operation not permitted "
                           r"\(io_uring is disabled"):
            uring.Uring(buf)


@needs_root
def test_thp_off_is_refused_not_mislabelled():
    before = thp_mode()
    with KernelState() as state:
        state.set(THP, "never")
        with pytest.raises(PagetaxError, match="a THP buffer was mapped with 4K pages, not 2M: "
                           "transparent huge pages are off"):
            Buffer("THP")
    assert thp_mode() == before   # "always [madvise] never" goes back as its choice


@needs_root
def test_ctrl_c_inside_a_hugetlb_buffer_frees_its_page_before_the_pool_goes_back(monkeypatch):
    """A Ctrl-C while the buffer is being touched: the buffer unmaps at
    once, so the pool shrinks back when KernelState restores it (a page
    still mapped would keep nr_hugepages up, and the restore would fail its
    read-back)."""
    from pagetax.kernel import buffers
    before = _read(HUGETLB)

    def interrupted(address):
        raise KeyboardInterrupt
    monkeypatch.setattr(buffers.machine, "smaps_of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with KernelState() as state:
            total = int(state.read(HUGETLB))
            if int(state.set_and_read_back(HUGETLB, total + 1)) < total + 1:
                pytest.skip("the kernel could not allocate a 2 MiB hugetlb page")
            Buffer("hugetlb")
    assert _read(HUGETLB) == before


# -- the command ---------------------------------------------------------------

def test_without_root_what_needs_root_is_refused(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PagetaxError, match=r"^nothing could be measured: io_uring: needs root "
                       r"\(a loop device\)"):
        kernel.run(paths=("io_uring",), buffers=("4K",), memmap=False, model=False)
    doc = kernel.run(paths=("mincore",), buffers=("4K",), memmap=True, model=False, rounds=3,
                     calls=3)
    assert doc["refused"] == {"memmap": "needs root (the hugetlb pool and the sysctl)"}
    assert "mincore" in doc["kernel"][0]["paths"]


@needs_root
def test_command_prints_the_comparison_and_writes_json(tmp_path):
    path = tmp_path / "k.json"
    p = cli("kernel", "--rounds", "5", "--calls", "5", "--no-memmap", "--json", str(path),
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads(path.read_text())
    assert doc["schema"] == "pagetax-kernel/1"
    four_k = next(e for e in doc["kernel"] if e["buffer"] == "4K")
    for name in ("mincore", "vmsplice", "splice", "vmsplice+splice", "read-read_fixed"):
        f = four_k["paths"][name]["per_page_ns"]
        assert f["low"] <= f["median"] <= f["high"] and f["rounds"] == 5
    assert {(r["design"], r["folio_size"]) for r in doc["model"]} == \
        {("page", "4K"), ("folio", "4K"), ("folio", "2M")}
    assert all(r["build_release_ns"]["median"] > 0 for r in doc["model"])
    assert "The model charges" in p.stdout and "this kernel charges" in p.stdout
    again = cli("kernel", "--rounds", "3", "--no-memmap", "--json", str(path), cwd=tmp_path)
    assert again.returncode == 1 and again.stderr.strip().endswith("exists; pass --force to "
                                                                   "replace it")


def test_bad_options_are_one_line(tmp_path):
    p = cli("kernel", "--paths", "vmsplice,ioring", cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "unknown path 'ioring'" in p.stderr


def _read(path):
    with open(path) as f:
        return f.read().strip()


def _our_loops():
    return [d for d in os.listdir("/sys/block") if d.startswith("loop")
            and "pagetax-loop" in (backing_file(d) or "")]


@needs_root
@pytest.mark.parametrize("sig, status, said", [(signal.SIGTERM, 143, "pagetax: terminated"),
                                               (signal.SIGINT, 130, "pagetax: interrupted")])
def test_interrupted_mid_measurement_everything_goes_back(sig, status, said, tmp_path):
    before = _read(HUGETLB)
    assert not _our_loops()
    proc = subprocess.Popen([*CLI, "kernel", "--paths", "io_uring", "--buffers", "hugetlb",
                             "--rounds", "100000", "--no-memmap"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)   # not the clone's root: its pagetax/ may shadow
    try:
        deadline = time.monotonic() + 30
        while not _our_loops() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _our_loops(), "the measurement never attached its loop device"
        time.sleep(0.3)   # inside the sweep
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    assert err.strip().splitlines()[-1] == said
    assert _read(HUGETLB) == before
    deadline = time.monotonic() + 2
    while _our_loops() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _our_loops()


@needs_root
def test_trace_counts_functions_or_says_why_not_and_leaves_no_mount():
    with open("/proc/mounts") as f:
        before = f.read()
    doc = kernel.run(paths=("mincore", "vmsplice"), buffers=("4K",), memmap=False,
                     model=False, rounds=3, calls=3, trace=True)
    with open("/proc/mounts") as f:
        assert f.read() == before
    if "trace" in doc["refused"]:   # hosts that refuse set_ftrace_filter even to root
        assert doc["refused"]["trace"].startswith(("the function tracer is refused here",
                                                   "no function tracer", "tracefs cannot"))
        assert "functions" not in doc["kernel"][0]
    else:
        hits = doc["kernel"][0]["functions"]["vmsplice"]
        assert any("gup" in f or "get_user_pages" in f for f in hits), hits

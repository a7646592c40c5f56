"""pagetax kernel's memmap measurement (issue 23) and the KernelState that
puts every setting back.  Most tests run on a fake /proc and /sys under
tmp_path, where a tiny fake kernel answers nr_hugepages writes; the last
ones measure the running kernel when it allows (root, counters, sysctl)."""
import dataclasses
import errno
import os
import signal
import subprocess
import sys

import pytest

from pagetax import machine
from pagetax.errors import PagetaxError
from pagetax.kernel import memmap
from pagetax.kernel.sysstate import KernelState
from pagetax.metadata import MODELS

MIB = 1 << 20
BOOT_PAGES = 98304


def make_root(tmp, sizes=("2M", "1G"), hvo="0", pools=None, available_mib=8192,
              counters=True, sysctl=True):
    """A fake root: /proc/vmstat, /proc/meminfo, the HVO sysctl and a pool
    folder per size, with nr_hugepages from pools (default 0)."""
    (tmp / "proc/sys/vm").mkdir(parents=True)
    (tmp / memmap.MEMINFO).write_text(f"MemTotal: 25165824 kB\nMemAvailable: {available_mib * 1024} kB\n")
    write_vmstat(tmp, 0, BOOT_PAGES if counters else None)
    if sysctl:
        (tmp / memmap.SYSCTL).write_text(hvo + "\n")
    for size in sizes:
        pool_file(tmp, size).parent.mkdir(parents=True)
        pool_file(tmp, size).write_text(f"{(pools or {}).get(size, 0)}\n")
    return tmp


def write_vmstat(root, runtime, boot):
    lines = ["nr_free_pages 5000000", "nr_dirty_threshold 142858"]
    if boot is not None:
        lines += [f"nr_memmap_pages {runtime}", f"nr_memmap_boot_pages {boot}"]
    (root / memmap.VMSTAT).write_text("\n".join(lines + ["pgpgin 1741205"]) + "\n")


def pool_file(root, size):
    return root / os.path.relpath(memmap.pool_dir(size, "/"), "/") / "nr_hugepages"


def texts(root):
    """Every fake file's text, stripped as a kernel file reads, but vmstat's."""
    return {p: p.read_text().strip() for p in sorted(root.rglob("*"))
            if p.is_file() and p != root / memmap.VMSTAT}


class FakeKernel(KernelState):
    """A KernelState on a fake root whose nr_hugepages writes a tiny kernel
    answers: it allocates up to `limit` pages of a size, each freeing
    `freed` vmemmap pages from the boot counter if the sysctl was 1 when it
    was allocated, and gives them back (on the runtime counter, `leak` fewer
    each) on release."""

    def __init__(self, root, freed=None, limit=None, on_write=None, leak=0):
        super().__init__()
        self.root, self.on_write, self.leak = root, on_write, leak
        self.freed = dict({"2M": 7, "1G": 4095}, **(freed or {}))
        self.limit = limit or {}
        self.optimized = {size: [False] * int(pool_file(root, size).read_text())
                          for size in memmap.SIZES if pool_file(root, size).exists()}
        self.runtime, self.boot = 0, BOOT_PAGES
        self.writes = []

    def write(self, path, value):
        self.writes.append((str(path), str(value)))
        if self.on_write:
            self.on_write(str(path), str(value))
        super().write(path, value)
        for size in memmap.SIZES:
            if str(path) == str(pool_file(self.root, size)):
                self._resize(size, int(value))

    def _resize(self, size, wanted):
        pages = self.optimized[size]   # per page held: allocated with HVO on?
        hvo = (self.root / memmap.SYSCTL).read_text().strip() == "1"
        while len(pages) < min(wanted, self.limit.get(size, wanted)):
            pages.append(hvo)
            self.boot -= self.freed[size] if hvo else 0
        while len(pages) > wanted:
            self.runtime += self.freed[size] - self.leak if pages.pop() else 0
        pool_file(self.root, size).write_text(f"{len(pages)}\n")
        write_vmstat(self.root, self.runtime, self.boot)


def measure(root, state=None, **kw):
    with (state or FakeKernel(root)) as s:
        return memmap.measure_hvo(s, root=str(root), **dict({"euid": 0}, **kw))


def one_line(e):
    text = str(e.value)
    assert "\n" not in text and text
    return text


# -- the model's figures -----------------------------------------------------

def test_the_model_frees_7_of_8_and_4095_of_4096_vmemmap_pages_with_hvo_none_without(monkeypatch):
    assert [memmap.model_freed_per_huge_page(size, hvo) for size in ("2M", "1G")
            for hvo in (True, False)] == [7, 0, 4095, 0]
    # from the model, not a constant:
    kept_two = dataclasses.replace(MODELS["hvo-2M"], dram=lambda cap: -(-cap // (2 * MIB)) * 8192)
    monkeypatch.setitem(MODELS, "hvo-2M", kept_two)
    assert memmap.model_freed_per_huge_page("2M") == 6


# -- counters ---------------------------------------------------------------

def test_counters_reads_both_and_none_when_the_kernel_lacks_them(tmp_path):
    root = make_root(tmp_path)
    write_vmstat(root, 12, 345)
    vmstat = root / memmap.VMSTAT
    assert memmap.counters(vmstat) == {"nr_memmap_pages": 12, "nr_memmap_boot_pages": 345}
    write_vmstat(root, 0, None)
    assert memmap.counters(vmstat) is None
    vmstat.write_text("nr_memmap_pages 3\n")  # one is not enough
    assert memmap.counters(vmstat) is None


# -- measuring on the fake kernel ----------------------------------------------

def test_hvo_rows_on_the_fake_kernel_match_the_model_and_put_everything_back(tmp_path):
    root = make_root(tmp_path, pools={"2M": 3}, hvo="1")  # pages already held stay held
    before, state = texts(root), FakeKernel(root)
    rows = measure(root, state)
    assert [(r["size"], r["hvo"]) for r in rows] == \
        [("2M", False), ("2M", True), ("1G", False), ("1G", True)]
    by = {(r["size"], r["hvo"]): r for r in rows}
    assert by["2M", False]["freed_pages"] == 0 and by["2M", False]["model"] == "page"
    assert by["2M", True]["freed_pages"] == 256 * 7 and by["2M", True]["model"] == "hvo-2M"
    assert by["1G", True]["freed_pages"] == 4095 and by["1G", True]["model"] == "hvo-1G"
    assert by["2M", True]["freed_per_huge_page"] == 7
    assert by["2M", True]["memmap_pages_before"] - by["2M", True]["memmap_pages_after"] == 1792
    for r in rows:
        assert r["matches"] is True and r["allocated"] == r["requested"] and "refused" not in r
    assert [v for p, v in state.writes if p == str(root / memmap.SYSCTL)] == \
        ["0", "1", "0", "1", "1"]   # off then on for each size, then put back
    # the sysctl and both pools read as before (vmstat moved: boot pages
    # freed by HVO come back as runtime pages, as on a real kernel)
    assert texts(root) == before


def test_a_kernel_that_frees_other_than_the_model_says_so(tmp_path):
    root = make_root(tmp_path, sizes=("2M",))
    rows = measure(root, FakeKernel(root, freed={"2M": 6}), sizes=("2M",), counts={"2M": 16})
    on = rows[1]
    assert on["hvo"] and on["freed_pages"] == 96 and on["model_freed_per_huge_page"] == 7
    assert on["matches"] is False


# -- refusals ---------------------------------------------------------------

@pytest.mark.parametrize("fake, asked, said", [
    ({"counters": False}, {}, "this kernel's {root}/proc/vmstat has no nr_memmap_pages (the "
     "counters came in Linux 6.11; the guest's 6.1 has none): use `pagetax vm memmap`, which "
     "measures free memory instead"),
    ({"sysctl": False}, {}, "this kernel has no {root}/proc/sys/vm/hugetlb_optimize_vmemmap "
     "(built without CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP): HVO cannot be turned on and off "
     "to measure it"),
    ({}, {"sizes": ("4M",)}, "unknown huge page size '4M' (use 2M or 1G)"),
    ({}, {"counts": {"2M": 0}}, "the count of 2M pages must be at least 1, not 0"),
])
def test_refuses_a_kernel_it_cannot_measure_in_one_line(tmp_path, fake, asked, said):
    with pytest.raises(PagetaxError) as e:
        measure(make_root(tmp_path, **fake), **asked)
    assert one_line(e) == said.format(root=tmp_path)


def test_refuses_without_root_and_changes_nothing(tmp_path):
    root = make_root(tmp_path)
    before = texts(root)
    with pytest.raises(PagetaxError) as e:
        measure(root, euid=1000)
    assert one_line(e) == ("measuring the kernel's memmap needs root: it writes "
                           "vm.hugetlb_optimize_vmemmap and nr_hugepages")
    assert texts(root) == before


def test_a_size_the_kernel_lacks_is_a_refused_row_not_an_error(tmp_path):
    root = make_root(tmp_path, sizes=("2M",))
    rows = measure(root)
    assert [r.get("refused") for r in rows[:2]] == [None, None]
    for r in rows[2:]:
        assert r["refused"] == (f"this kernel has no 1G hugetlb pages (no "
                                f"{root}/sys/kernel/mm/hugepages/hugepages-1048576kB): "
                                "the CPU or the kernel lacks that size")
        assert "freed_pages" not in r


def test_not_enough_memory_is_a_refused_row_that_says_how_much(tmp_path):
    root = make_root(tmp_path, available_mib=1400)
    before = texts(root)
    rows = measure(root)
    assert "refused" not in rows[0]                      # 512 MiB + 512 MiB margin fits
    assert rows[2]["refused"] == rows[3]["refused"] == (
        "needs 1536 MiB available (1 x 1G plus a 512 MiB margin), MemAvailable is 1400 MiB")
    assert "freed_pages" not in rows[3]
    assert texts(root) == before


def test_a_partial_allocation_is_released_and_refused(tmp_path):
    root = make_root(tmp_path, pools={"1G": 2})
    state = FakeKernel(root, limit={"1G": 2})  # no room for a third gigantic page
    rows = measure(root, state)
    for r in rows[2:]:
        assert r["allocated"] == 0 and "freed_pages" not in r and "matches" not in r
        assert r["refused"] == ("the kernel gave 0 of the 1 x 1G pages asked for (a gigantic "
                                "page needs 1 GiB of contiguous free memory); they were "
                                "released and nothing is reported")
    assert pool_file(root, "1G").read_text() == "2\n"
    partial = measure(make_root(tmp_path / "b"), FakeKernel(tmp_path / "b", limit={"2M": 100}),
                      sizes=("2M",))
    assert partial[1]["refused"].startswith("the kernel gave 100 of the 256 x 2M pages asked "
                                            "for (free memory too fragmented or short)")


def test_counters_that_move_between_the_first_reads_refuse_the_row(tmp_path, monkeypatch):
    root = make_root(tmp_path, sizes=("2M",))
    real, reads = memmap.counters, []

    def stepping(path):  # one step up between the row's two first reads (the check
        reads.append(path)  # of the kernel reads once before), as memory hotplug would
        return dict(real(path), nr_memmap_pages=real(path)["nr_memmap_pages"] + 8 * (len(reads) > 2))
    monkeypatch.setattr(memmap, "counters", stepping)
    off, on = measure(root, sizes=("2M",))
    assert off["refused"] == "memmap counters moved while measuring" and "freed_pages" not in off
    assert on["matches"] is True     # steady again: measured


def test_measure_hvo_releases_its_pages_on_an_error_before_the_state_restores(tmp_path, monkeypatch):
    root = make_root(tmp_path, sizes=("2M",))
    state, real = FakeKernel(root), memmap.counters

    def unreadable_while_held(path):
        if state.optimized["2M"]:
            raise PagetaxError("vmstat went away")
        return real(path)
    monkeypatch.setattr(memmap, "counters", unreadable_while_held)
    with pytest.raises(PagetaxError, match="vmstat went away"):
        memmap.measure_hvo(state, sizes=("2M",), root=str(root), euid=0)
    assert pool_file(root, "2M").read_text() == "0\n"   # not held until the restore
    state.restore()


def test_counters_that_do_not_come_back_after_release_refuse_the_row(tmp_path):
    root = make_root(tmp_path, sizes=("2M",))
    rows = measure(root, FakeKernel(root, leak=1), sizes=("2M",), counts={"2M": 4})
    assert rows[0]["matches"] is True
    assert rows[1]["refused"] == "memmap counters moved while measuring"


def test_a_pool_that_does_not_go_back_is_an_error(tmp_path):
    root = make_root(tmp_path, sizes=("2M",))

    class Stuck(FakeKernel):  # keeps the pages, as if someone mapped them
        def _resize(self, size, wanted):
            super()._resize(size, max(wanted, len(self.optimized[size])))
    state = Stuck(root)
    with pytest.raises(PagetaxError) as e:
        memmap.measure_hvo(state, sizes=("2M",), counts={"2M": 4}, root=str(root), euid=0)
    assert one_line(e).startswith(f"{pool_file(root, '2M')} did not go back to 0 (it reads 4)")
    with pytest.raises(PagetaxError) as e:
        state.restore()          # and the restore says so too
    assert one_line(e) == (f"could not put back 1 setting(s), set them by hand: "
                           f"{pool_file(root, '2M')} to 0 (it reads 4 after writing 0)")


# -- putting things back ------------------------------------------------------

@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("at_write", range(1, 13))  # 3 writes a row, 4 rows
def test_an_exception_midway_puts_every_file_back(tmp_path, exc, at_write):
    root = make_root(tmp_path, pools={"2M": 1, "1G": 1}, hvo="0")
    before, seen = texts(root), []

    def interrupt(path, value):
        seen.append(path)
        if len(seen) == at_write:
            raise exc("stop")
    with pytest.raises(exc):
        measure(root, FakeKernel(root, on_write=interrupt))
    assert texts(root) == before


def test_restore_runs_undos_last_first_once_and_past_a_failure(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    for p, t in ((a, "1\n"), (b, "2"), (c, "3")):
        p.write_text(t)
    order = []  # what restore ran, in order

    class Watched(KernelState):
        def write(self, path, value):
            order.append(f"write {os.path.basename(path)}={value}")
            super().write(path, value)
    state = Watched()
    state.set(a, "10")
    state.on_exit(lambda: order.append("first"), "first cleanup")
    state.set(b, "20")
    state.set(a, "11")           # a's original stays 1
    state.on_exit(lambda: 1 / 0, "detach /dev/loop3")
    state.set(c, "30")
    c.unlink()                   # c cannot be put back
    order.clear()
    with pytest.raises(PagetaxError) as e:
        state.restore()
    assert one_line(e) == (f"could not put back 2 setting(s), set them by hand: {c} to 3 "
                           "(No such file or directory); detach /dev/loop3 (division by zero)")
    assert order == ["write c=3", "write b=2", "first", "write a=1"]
    assert (a.read_text(), b.read_text()) == ("1", "2")
    order.clear()
    state.restore()              # nothing left to run
    assert order == []


def test_set_errors_are_one_line_and_a_failed_write_leaves_nothing_to_undo(tmp_path, monkeypatch):
    missing = tmp_path / "hugetlb_optimize_vmemmap"
    state = KernelState()
    with pytest.raises(PagetaxError) as e:
        state.set(missing, "1")
    assert one_line(e) == (f"cannot read {missing}: No such file or directory "
                           "(this kernel has no hugetlb_optimize_vmemmap)")

    class Refusing(KernelState):
        def write(self, path, value):
            raise PermissionError(errno.EACCES, "Permission denied")
    knob = tmp_path / "knob"
    knob.write_text("0\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    refusing = Refusing()
    with pytest.raises(PagetaxError) as e:
        refusing.set(knob, "1")
    assert one_line(e) == f"cannot write 1 to {knob}: Permission denied (pagetax kernel needs root)"
    refusing.restore()           # would fail if the refused write had left an undo


def test_write_undone_by_puts_back_its_own_value_and_a_refused_write_leaves_no_undo(tmp_path):
    """A trace filter reads back as something else than was written: its
    undo writes the value given, and a refused write leaves nothing to undo."""
    filt = tmp_path / "set_ftrace_filter"
    filt.write_text("#### all functions enabled ####\n")
    with KernelState() as state:
        state.write_undone_by(filt, "gup_fast unpin_user_pages", "")
        assert filt.read_text() == "gup_fast unpin_user_pages"
    assert filt.read_text() == ""

    class Refusing(KernelState):
        def write(self, path, value):
            raise PermissionError(errno.EPERM, "Operation not permitted")
    refusing = Refusing()
    with pytest.raises(PagetaxError) as e:
        refusing.write_undone_by(filt, "gup_fast", "")
    assert e.value.sys_errno == errno.EPERM
    assert one_line(e).startswith(f"cannot write gup_fast to {filt}: Operation not permitted")
    refusing.restore()           # would fail if the refused write had left an undo


def test_set_and_read_back_returns_what_the_kernel_kept_and_checks_its_restore(tmp_path):
    pool = tmp_path / "nr_hugepages"
    pool.write_text("5\n")

    class HalfKernel(KernelState):  # keeps at most 8, as a short kernel would
        def write(self, path, value):
            super().write(path, str(min(int(value), 8)))
    state = HalfKernel()
    assert state.set_and_read_back(pool, 20) == "8"
    assert state.original(pool) == "5"
    state.restore()
    assert pool.read_text() == "5"
    pool.write_text("12\n")      # now the original is above what it keeps
    state.set_and_read_back(pool, 3)
    with pytest.raises(PagetaxError) as e:
        state.restore()
    assert one_line(e) == (f"could not put back 1 setting(s), set them by hand: {pool} to 12 "
                           "(it reads 8 after writing 12)")


def test_signal_handlers_are_raised_inside_and_put_back_after(tmp_path):
    mine = lambda signo, frame: None  # noqa: E731
    old_term, old_hup = signal.getsignal(signal.SIGTERM), signal.signal(signal.SIGHUP, mine)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with KernelState():
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            assert signal.getsignal(signal.SIGHUP) is mine   # someone else's stays
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is mine
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)


HOLDER = """
import sys, time
from pagetax.kernel.sysstate import KernelState
if sys.argv[2] == "exit":  # no with block: only the atexit fallback restores
    KernelState().set(sys.argv[1], "changed")
    sys.exit(3)
with KernelState() as state:
    state.set(sys.argv[1], "changed")
    print("ready", flush=True)
    time.sleep(60)
"""


def _holder(tmp_path, how):
    knob = tmp_path / "knob"
    knob.write_text("original\n")
    return knob, subprocess.Popen([sys.executable, "-c", HOLDER, str(knob), how], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_puts_the_file_back_and_the_process_fails(tmp_path, signo):
    knob, p = _holder(tmp_path, "sleep")
    try:
        ready = p.stdout.readline()
        assert ready == "ready\n" and knob.read_text() == "changed"
        p.send_signal(signo)
        _, err = p.communicate(timeout=60)   # drains the pipes while it unwinds
    finally:
        if p.poll() is None:
            p.kill()
    # SystemExit(128 + signo); Python ends an uncaught KeyboardInterrupt by SIGINT
    assert p.returncode == {signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGINT: -2}[signo], \
        err
    assert knob.read_text() == "original"


def test_an_exit_that_skips_the_with_block_still_restores(tmp_path):
    knob, p = _holder(tmp_path, "exit")
    assert p.wait(timeout=60) == 3, p.stderr.read()
    assert knob.read_text() == "original"


# -- the running kernel -------------------------------------------------------

_WHY_NOT_REAL = next((why for lacking, why in (
    (os.geteuid() != 0, "needs root"),
    (memmap.counters() is None, "this kernel's /proc/vmstat has no nr_memmap_pages"),
    (not os.path.exists("/" + memmap.SYSCTL), "this kernel has no hugetlb_optimize_vmemmap"),
    (not os.path.isdir(memmap.pool_dir("2M")), "this kernel has no 2M hugetlb pages"),
) if lacking), None)
real_kernel = pytest.mark.skipif(_WHY_NOT_REAL is not None, reason=str(_WHY_NOT_REAL))


def _kernel_settings():
    paths = ["/" + memmap.SYSCTL] + [os.path.join(memmap.pool_dir(s), "nr_hugepages")
                                      for s in memmap.SIZES if os.path.isdir(memmap.pool_dir(s))]
    return {p: open(p).read() for p in paths}


@real_kernel
def test_the_running_kernel_frees_what_the_model_says_for_2m_pages():
    before = _kernel_settings()
    with KernelState() as state:
        off, on = memmap.measure_hvo(state, sizes=("2M",), counts={"2M": 16})
    assert _kernel_settings() == before
    assert "refused" not in off and "refused" not in on, (off, on)
    assert off["allocated"] == on["allocated"] == 16
    assert off["freed_pages"] == 0 and off["matches"]
    assert on["freed_pages"] == 16 * memmap.model_freed_per_huge_page("2M") and on["matches"]


@real_kernel
@pytest.mark.skipif(machine.mem_available() < 2 << 30 or not os.path.isdir(memmap.pool_dir("1G")),
                    reason="needs 2 GiB MemAvailable and 1G hugetlb pages")
def test_the_running_kernel_frees_what_the_model_says_for_a_1g_page_or_refuses():
    before = _kernel_settings()
    with KernelState() as state:
        rows = memmap.measure_hvo(state, sizes=("1G",), counts={"1G": 1})
    assert _kernel_settings() == before
    for row in rows:
        assert row.get("refused") or row["matches"], row
        if not row.get("refused"):
            assert row["freed_pages"] == row["allocated"] * row["model_freed_per_huge_page"]


@real_kernel
def test_an_interrupt_mid_measurement_puts_the_running_kernel_back():
    before = _kernel_settings()

    class Interrupting(KernelState):  # Ctrl-C just after HVO pages are allocated
        def write(self, path, value):
            super().write(path, value)
            if path.endswith("nr_hugepages") and int(value) and self.read("/" + memmap.SYSCTL) == "1":
                raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt), Interrupting() as state:
        memmap.measure_hvo(state, sizes=("2M",), counts={"2M": 4})
    assert _kernel_settings() == before

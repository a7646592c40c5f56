"""The machine description: smaps readings, page-size decisions, the cache walk."""
import pytest

import pagetax
from pagetax import backings, machine


def test_smaps_of_a_populated_backing():
    with pagetax.Backing.scratch(4 << 20) as b:
        fields = machine.smaps_of(b.base)
        assert fields["Rss"] == 4 << 20  # every page populated before timing
        assert fields["KernelPageSize"] >= 4096
        desc = backings.describe(b)
        assert desc["fs_type"] == "tmpfs" and desc["size_bytes"] == 4 << 20
        assert desc["mapping"]["rss_bytes"] == 4 << 20


def test_smaps_of_an_unmapped_address_is_empty():
    assert machine.smaps_of(0x10) == {}


def test_page_size_from_smaps_fields():
    four_k = {"KernelPageSize": 4096, "Rss": 8 << 20, "ShmemPmdMapped": 0}
    assert machine.mapping_page_size(four_k)["page_size"] == "4K"
    pmd = {"KernelPageSize": 4096, "Rss": 8 << 20, "ShmemPmdMapped": 8 << 20}
    assert machine.mapping_page_size(pmd)["page_size"] == "2M"
    part = {"KernelPageSize": 4096, "Rss": 8 << 20, "FilePmdMapped": 2 << 20}
    assert machine.mapping_page_size(part) == {"page_size": "mixed", "kernel_page_size": 4096,
                                               "pmd_mapped_bytes": 2 << 20, "rss_bytes": 8 << 20}
    hugetlb = {"KernelPageSize": 2 << 20, "Rss": 0}
    assert machine.mapping_page_size(hugetlb)["page_size"] == "2M"


def test_cache_sizes_parse():
    assert machine._cache_bytes("32768K") == 32 << 20
    assert machine._cache_bytes("1M") == 1 << 20
    assert machine._cache_bytes("512") == 512
    assert machine.llc_bytes() >= 1 << 20


def test_bracketed_choice(tmp_path):
    f = tmp_path / "enabled"
    f.write_text("always [madvise] never\n")
    assert machine._bracketed(str(f)) == "madvise"
    assert machine._bracketed(str(tmp_path / "missing")) is None


def test_mountinfo_options_are_the_mounts_then_the_super_blocks_each_once():
    lines = ["36 25 259:2 / /mnt/pmem\\040dax rw,relatime shared:1 - ext4 /dev/pmem0 rw,dax=always\n",
             "37 25 0:5 / /proc ro,nosuid - proc proc rw\n",
             "38 25 0:6 / /x rw - tmpfs tmpfs\n"]
    assert machine.parse_mountinfo(lines) == [("/mnt/pmem dax", "ext4", "rw,relatime,dax=always"),
                                              ("/proc", "proc", "ro,nosuid,rw"),
                                              ("/x", "tmpfs", "rw")]


def test_mount_of_is_one_of_the_mounts():
    mounts = machine.mounts()
    assert any(m[0] == "/" for m in mounts)
    assert machine.mount_of("/dev/shm") in mounts and machine.mount_of("/dev/shm")[1] == "tmpfs"


def _synthetic(latency):
    """A walk that reads `latency(bytes)` ns and no huge pages."""
    return lambda size: (latency(size), 0)


def test_the_usable_cache_is_where_loads_leave_the_cache_not_what_sysfs_says(monkeypatch):
    """A host whose sysfs says 300 MiB but whose loads go to memory from 8
    MiB on (the Intel host of issue 21), after a plateau of its own at 46 ns:
    the walk finds 4 MiB, walks past that plateau to 128 MiB, and no figure
    comes from sysfs."""
    monkeypatch.setattr(machine, "caches", lambda: {1: 48 << 10, 2: 2 << 20, 3: 300 << 20})
    walk = machine.cache_walk(_synthetic(lambda s: 2.0 if s <= 1 << 20 else
                                         46.0 if s <= 4 << 20 else 150.0))
    assert walk["effective_bytes"] == 4 << 20 and walk["plateau"]
    assert walk["memory_ns"] == 150.0 and walk["threshold_ns"] == (2.0 + 150.0) / 2
    sizes = [p["bytes"] for p in walk["walk"]]
    assert sizes[0] == 256 << 10 and sizes[-1] == 128 << 20
    assert machine.llc_bytes() == 300 << 20                  # sysfs, reported beside it
    assert machine.eviction_bytes(walk["effective_bytes"]) == 4 * (300 << 20)


def test_a_cache_larger_than_sysfs_says_still_sizes_the_eviction(monkeypatch):
    monkeypatch.setattr(machine, "caches", lambda: {})       # sysfs says nothing: 32 MiB
    walk = machine.cache_walk(_synthetic(lambda s: 10.0 if s <= 48 << 20 else 120.0))
    assert walk["effective_bytes"] == 48 << 20
    assert machine.eviction_bytes(walk["effective_bytes"]) == 4 * (48 << 20)


def test_a_walk_that_never_reaches_memory_says_so():
    walk = machine.cache_walk(_synthetic(lambda s: 5.0 + s / (1 << 24)))
    assert walk["effective_bytes"] is None and not walk["plateau"]
    assert walk["walk"][-1]["bytes"] == machine.WALK_LAST


def test_a_neighbours_plateau_does_not_end_the_walk():
    """54-56 ns at 16-32 MiB, as one walk here read, is not memory (145)."""
    walk = machine.cache_walk(_synthetic(lambda s: 3.0 if s <= 8 << 20 else
                                         55.0 if s <= 32 << 20 else 145.0))
    assert walk["memory_ns"] == 145.0 and walk["effective_bytes"] == 32 << 20


def test_the_real_walk_finds_a_cache_below_memory():
    """On this machine: the smallest region is cached, the walk reaches a
    plateau (memory), and the usable cache lies between them."""
    walk = machine.cache_walk()
    assert walk["plateau"], walk
    first = walk["walk"][0]["ns"]
    assert walk["memory_ns"] >= machine.DRAM_FACTOR * first
    assert machine.WALK_FIRST <= walk["effective_bytes"] < walk["walk"][-1]["bytes"]


def test_an_emulated_guest_skips_the_walk(monkeypatch):
    import json
    from pagetax import runner, summary
    monkeypatch.setenv(runner.GUEST_ENV, json.dumps({"timings_comparable": False}))
    monkeypatch.setattr(machine, "cache_walk", lambda: pytest.fail("walked in a TCG guest"))
    walk = runner._cache_walk()
    assert walk["effective_bytes"] is None and "emulated guest" in walk["skipped"]
    text = summary.cache_text({"llc_bytes": 32 << 20, "cache": walk})
    assert text == "LLC 32 MiB per sysfs, usable size not measured (an emulated guest: its " \
                   "loads say nothing of a cache)"

"""The machine description: smaps readings and page-size decisions."""
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

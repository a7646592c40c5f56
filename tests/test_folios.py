"""folio, page32 and memdesc: multi-page bio_vecs split at folios, counts
per folio (batched for PMD-mapped folios), and the memmap each allocates."""
import numpy as np
import pytest

import counting_core
import pagetax
from pagetax import extents
from pagetax import metadata as md
from helpers import cli, expected_gather, expected_scatter, random_extents

MIB, GIB = 1 << 20, 1 << 30
FOLIO_DESIGNS = ["folio", "page32", "memdesc"]
SIZES = {"4K": 4096, "16K": 16384, "64K": 65536, "2M": 2 * MIB}


def test_the_folio_designs_declare_themselves():
    assert [d for d in pagetax.DESIGNS if "folios" in pagetax.designs.design_flags(d)] == \
        ["folio", "page32", "memdesc"]


def parts(ext, folio):
    """numpy's count of entries: one per part of an extent within a folio."""
    first = ext["off"] // np.uint64(folio)
    last = (ext["off"] + ext["len"] - np.uint64(1)) // np.uint64(folio)
    return int((last - first + np.uint64(1)).sum())


def held_counts(ext, folio, nfolios):
    """numpy's count of references a build holds on each folio: the pages
    each entry covers (__bio_release_pages' nr_pages), summed per folio."""
    held = np.zeros(nfolios, np.int64)
    for off, length in zip(ext["off"].tolist(), ext["len"].tolist()):
        end = off + length
        while off < end:
            chunk = min(end, (off // folio + 1) * folio) - off
            held[off // folio] += (off % 4096 + chunk - 1) // 4096 + 1
            off += chunk
    return held


@pytest.mark.parametrize("folio_size", list(SIZES))
@pytest.mark.parametrize("design", FOLIO_DESIGNS)
@pytest.mark.parametrize("op", ["read", "write"])
def test_bytes_move_as_numpy_says(design, folio_size, op, rng):
    with pagetax.Backing.scratch(32 * MIB) as b, b.attach(design, folio_size=folio_size) as att:
        view = b.view()
        view[:] = rng.integers(0, 256, view.size, dtype=np.uint8)
        ext = random_extents(rng, 24 * MIB, 120, max_len=3 * 65536)
        total = int(ext["len"].sum())
        if op == "read":
            buf = pagetax.aligned_buffer(total)
            att.run("read", ext, buf, reps=2, segs_per_io=7)
            np.testing.assert_array_equal(buf, expected_gather(view, ext))
        else:
            src = rng.integers(0, 256, total, dtype=np.uint8)
            want = expected_scatter(view, ext, src)
            att.run("write", ext, src, segs_per_io=7)
            np.testing.assert_array_equal(view, want)
        assert att.entries(ext) == parts(ext, SIZES[folio_size])
        assert (att.refcounts() == 1).all()


@pytest.mark.parametrize("folio_size", list(SIZES))
@pytest.mark.parametrize("design", FOLIO_DESIGNS)
def test_a_hold_counts_pages_per_folio(design, folio_size, rng):
    """While an I/O is built, each folio holds one reference per page its
    entries cover; release drops them all (one subtract per entry)."""
    folio = SIZES[folio_size]
    with pagetax.Backing.scratch(32 * MIB) as b, b.attach(design, folio_size=folio_size) as att:
        base = att.refcounts()
        assert base.size == 32 * MIB // folio and (base == 1).all()
        ext = random_extents(rng, 24 * MIB, 120, max_len=3 * 65536)
        with att.hold(ext):
            np.testing.assert_array_equal((att.refcounts() - base) // att.pin_bias,
                                          held_counts(ext, folio, base.size))
            assert att.pin_bias == (1024 if folio_size == "4K" else 1)
        np.testing.assert_array_equal(att.refcounts(), base)


@pytest.mark.parametrize("design", FOLIO_DESIGNS)
def test_a_2m_extent_in_a_pmd_mapped_folio_is_one_entry_and_one_add_of_512(design):
    with pagetax.Backing.scratch(8 * MIB) as b, b.attach(design, folio_size="2M") as att:
        ext = extents.make([2 * MIB], [2 * MIB])
        assert att.entries(ext) == 1
        with att.hold(ext):   # a large folio: 512 on the count, 512 on _pincount
            np.testing.assert_array_equal(att.refcounts(), [1, 513, 1, 1])
        across = extents.make([3 * MIB], [2 * MIB])       # two folios: two entries
        assert att.entries(across) == 2
        with att.hold(across):
            np.testing.assert_array_equal(att.refcounts(), [1, 257, 257, 1])


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    """The core built to count its reference-count atomics (counting_core)."""
    ffi, lib = counting_core.build(str(tmp_path_factory.mktemp("counting")))
    core = counting_core.CountingCore(ffi, lib, 32 * MIB)
    yield core
    core.close()


@pytest.mark.parametrize("folio_size", list(SIZES))
@pytest.mark.parametrize("design", FOLIO_DESIGNS)
def test_a_build_pins_n_at_once_in_a_pmd_folio_and_1_per_page_otherwise(counting, design,
                                                                        folio_size, rng):
    """gup_fast_pmd_leaf pins a PMD-mapped folio's pages with one try-add of
    N, N on _pincount and one referenced bit; gup_fast_pte_range pins page
    by page (a small folio's second add is the bias, 1023 per pin);
    __bio_release_pages unpins each entry's pages at once.  The counting
    core counts every operation."""
    folio = SIZES[folio_size]
    att = counting.attach(design, folio_size)
    try:
        ext = random_extents(rng, 24 * MIB, 120, max_len=3 * 65536)
        pages = int(held_counts(ext, folio, 32 * MIB // folio).sum())
        entries = parts(ext, folio)
        assert pages > entries or folio == 4096  # else the two ways could not be told apart
        built = counting.hold(att, ext)
        grabs = entries if folio_size == "2M" else pages   # one per PMD entry, or per page
        assert built["add"] == (grabs, pages), "not one try-add per PMD entry or per page"
        assert built["flag"] == (grabs, grabs), "not one referenced bit per grab"
        if folio_size == "4K":
            assert built["pin_add"] == (pages, 1023 * pages), "not the bias per small pin"
        else:
            assert built["pin_add"] == (grabs, pages), "not _pincount once per grab"
        assert built["sub"] == built["pin_sub"] == (0, 0)
        dropped = counting.unhold(att)
        if folio_size == "4K":
            assert dropped["sub"] == (entries, 1024 * pages) and dropped["pin_sub"] == (0, 0)
        else:
            assert dropped["sub"] == dropped["pin_sub"] == (entries, pages)
        assert dropped["add"] == dropped["pin_add"] == dropped["flag"] == (0, 0)
    finally:
        counting.lib.pt_detach(att)


@pytest.mark.parametrize("design", FOLIO_DESIGNS)
def test_devmap_grabs_a_pmd_folio_page_by_page_and_a_get_adds_no_pin(counting, design, rng):
    """PT_ATTACH_GUP_DEVMAP: device DAX until 6.14, a grab of 1 and a
    referenced bit per 4 KiB page of a PMD-mapped folio; PT_ATTACH_GUP_GET:
    FOLL_GET, one add and no pin."""
    ext = random_extents(rng, 24 * MIB, 120, max_len=3 * 65536)
    pages = int(held_counts(ext, 2 * MIB, 16).sum())
    entries = parts(ext, 2 * MIB)
    att = counting.attach_flags(design, "2M", counting.lib.PT_ATTACH_GUP_DEVMAP)
    try:
        built = counting.hold(att, ext)
        assert built["add"] == (pages, pages) and built["flag"] == (pages, pages)
        assert built["pin_add"] == (pages, pages)
        assert counting.unhold(att)["sub"] == (entries, pages)   # unpinned per folio
    finally:
        counting.lib.pt_detach(att)
    att = counting.attach_flags(design, "2M", counting.lib.PT_ATTACH_GUP_GET)
    try:
        built = counting.hold(att, ext)
        assert built["add"] == (entries, pages) and built["pin_add"] == (0, 0)
        assert counting.unhold(att)["pin_sub"] == (0, 0)
    finally:
        counting.lib.pt_detach(att)


def test_pte_mapped_folios_count_every_page_the_same_way():
    """At 64K (PTE-mapped), a 64 KiB extent on its folio is one entry and 16
    references on one folio, taken page by page."""
    with pagetax.Backing.scratch(4 * MIB) as b, b.attach("folio", folio_size="64K") as att:
        with att.hold(extents.make([65536 + 100], [65536 - 100])):
            counts = att.refcounts()
            assert counts[1] == 1 + 16 and (np.delete(counts, 1) == 1).all()


@pytest.mark.parametrize("design", FOLIO_DESIGNS)
@pytest.mark.parametrize("folio_size", list(SIZES))
@pytest.mark.parametrize("capacity", [4096, 6 * MIB + 4096, GIB, 400 * 10**9])
def test_c_metadata_equals_the_model(design, folio_size, capacity):
    fp = md.model(design, folio_size).footprint(capacity)
    assert pagetax.design_metadata(design, capacity, folio_size) == (fp["dram_bytes"], 0)


def test_at_the_seeds_400_gb():
    """Exact bytes: pages = 400e9 / 4096 = 97,656,250; 2 MiB folios =
    190,735 (rounded up); an 80-byte folio descriptor each, where separate."""
    cap, pages = 400 * 10**9, 97_656_250
    assert md.model("folio", "2M").dram(cap) == pages * 64 == 6_250_000_000
    assert md.model("page32", "4K").dram(cap) == pages * (32 + 80) == 10_937_500_000
    assert md.model("memdesc", "4K").dram(cap) == pages * (8 + 80) == 8_593_750_000
    assert md.model("memdesc", "2M").dram(cap) == pages * 8 + 190_735 * 80 == 796_508_800
    per_page = {fs: md.model("memdesc", fs).dram(cap) * 4096 / cap for fs in SIZES}
    assert per_page["4K"] > 64 and 8 < per_page["2M"] < 8.2


@pytest.mark.parametrize("design", FOLIO_DESIGNS)
@pytest.mark.parametrize("folio_size", ["4K", "2M"])
def test_allocated_tables_equal_the_model_and_rss(design, folio_size):
    size = 64 * MIB
    with pagetax.Backing.scratch(size) as b, b.attach(design, folio_size=folio_size) as att:
        want = md.model(design, folio_size).footprint(size)["dram_bytes"]
        assert att.meta_bytes == want
        ok, why = md.rss_verdict(att.meta_bytes, att.rss_delta, False)
        assert ok, why


def test_folio_size_errors():
    with pagetax.Backing.scratch(4 * MIB) as b:
        with pytest.raises(pagetax.PagetaxError, match="page has no folios: --folio-size is for "
                                                       "folio, page32, memdesc"):
            b.attach("page", folio_size="2M")
        with pytest.raises(pagetax.PagetaxError, match=r"unknown folio size '8K' \(choose from "
                                                       r"4K, 16K, 64K, 2M\)"):
            b.attach("folio", folio_size="8K")
    lib, ffi = pagetax.core.lib, pagetax.core.ffi
    err = ffi.new("struct pt_error *")
    out = ffi.new("struct pt_metadata *")
    assert lib.pt_design_metadata_folio(pagetax.designs.design_id("page"), GIB, 21, out, err) == \
        lib.PT_EINVAL
    assert ffi.string(err.msg) == b"page has no folios of 2^21 bytes"


def test_run_and_metadata_commands_take_folio_sizes(tmp_path):
    p = cli("run", "--designs", "vec,folio,memdesc", "--folio-size", "2M", "--size", "16M",
            "--io-size", "2M", "--seg-sizes", "64K", "--patterns", "seq", "--repeat", "1",
            "--no-progress", "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    import json
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["config"]["folio_size"] == "2M"
    rows = {r["design"]: r for r in doc["results"] if r["op"] == "read"}
    assert rows["folio"]["entries"] == 32 and rows["memdesc"]["metadata"]["folio_size"] == "2M"
    assert rows["memdesc"]["metadata"]["allocated_bytes"] == 16 * MIB // 4096 * 8 + 8 * 80
    p = cli("metadata", "--folio-sizes", "4K,64K", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "memdesc @64K folios" in p.stdout and "memdesc @2M" not in p.stdout

"""The metadata model against hand-computed figures, the C core, and RSS."""
import json

import numpy as np
import pytest

import pagetax
from pagetax import metadata as md
from helpers import assert_moves_right_bytes, cli

MIB, GIB, TIB = 1 << 20, 1 << 30, 1 << 40
DATA_PATH = [m for m in md.MODELS.values() if m.data_path and not m.peer]


def test_the_seed_case_exactly():
    page = md.model("page").footprint(400 * 10**9)
    assert page == {"dram_bytes": 6_250_000_000, "device_bytes": 0, "percent": 1.5625}
    assert "6,250,000,000 B, 1.5625 %" in md.seed_note(400 * 10**9)
    assert "gives 6,400,000,000 B" in md.seed_note(400 * 10**9)  # the thread's 4000-byte KiB


@pytest.mark.parametrize("design, capacity, dram, device", [
    # 1 TiB: ndctl's "64-bytes per 4K (16GB per 1TB)"
    ("page", TIB, 16 * GIB, 0),
    ("sgl", TIB, 16 * GIB, 0),
    ("memdesc-inline", TIB, 2 * GIB, 0),                    # 8 B per 4 KiB
    ("huge", TIB, 32 * MIB, 0),                      # 64 B per 2 MiB
    # npfns = (2^40 - 8K)/4K = 268435454; 8K + 64 * npfns = 17179877248 -> 8193 x 2 MiB
    ("altmap", TIB, 0, 8193 * 2 * MIB),
    # 400 GB: npfns = 97656248; 8K + 64 * npfns = 6250008064 -> 2981 x 2 MiB
    ("altmap", 400 * 10**9, 0, 2981 * 2 * MIB),
    # 1 GiB + 4 KiB, not a multiple of 2 MiB: partial pages count whole
    ("page", GIB + 4096, 262145 * 64, 0),
    ("huge", GIB + 4096, 513 * 64, 0),
    ("memdesc-inline", GIB + 4096, 262145 * 8, 0),
    # npfns = 262143; 8K + 64 * 262143 = 16785344 -> 9 x 2 MiB
    ("altmap", GIB + 4096, 0, 9 * 2 * MIB),
    ("devdax-dedup-2M", TIB, 0 + TIB // (2 * MIB) * 8192, 0),
    ("devdax-dedup-1G", TIB, 1024 * 8192, 0),
    ("hvo-2M", TIB, TIB // (2 * MIB) * 4096, 0),
    ("hvo-1G", TIB, 1024 * 4096, 0),
    ("hvo-2M", GIB + 4096, 513 * 4096, 0),
    ("vec", TIB, 0, 0), ("pfn", TIB, 0, 0), ("kernel", TIB, 0, 0),
])
def test_model_arithmetic(design, capacity, dram, device):
    fp = md.model(design).footprint(capacity)
    assert (fp["dram_bytes"], fp["device_bytes"]) == (dram, device)
    assert fp["percent"] == pytest.approx(100 * (dram + device) / capacity)


def test_altmap_alignment_edges():
    # 8K + 64 * npfns lands exactly on 2 MiB: no rounding up...
    exact = 8192 + 32640 * 4096
    assert 8192 + 64 * 32640 == 2 * MIB
    assert md.altmap_reserve(exact) == 2 * MIB
    # ...one page more and the reserve doubles.
    assert md.altmap_reserve(exact + 4096) == 4 * MIB
    # 127.5 MiB: data runs from 2 MiB to the last 2 MiB boundary, 126 MiB
    assert pagetax.designs.design_layout("altmap", exact) == (2 * MIB, 124 * MIB)
    # the data area ends at the last 2 MiB boundary (end_trunc)
    assert pagetax.designs.design_layout("altmap", 64 * MIB + 4096) == (2 * MIB, 62 * MIB)
    with pytest.raises(pagetax.PagetaxError, match="too small for altmap"):
        pagetax.designs.design_layout("altmap", 2 * MIB)


@pytest.mark.parametrize("model", DATA_PATH, ids=lambda m: m.name)
@pytest.mark.parametrize("capacity", [4096, 6 * MIB + 4096, GIB, 400 * 10**9, TIB])
def test_c_core_metadata_equals_the_model(model, capacity):
    fp = model.footprint(capacity)
    assert pagetax.design_metadata(model.name, capacity) == (fp["dram_bytes"], fp["device_bytes"])


@pytest.mark.parametrize("design", ["page", "huge", "memdesc-inline", "sgl", "altmap"])
def test_allocated_table_equals_the_model_and_rss(design):
    size = 64 * MIB
    with pagetax.Backing.scratch(size) as b, b.attach(design) as att:
        m = md.model(design)
        if "table_on_backing" in att.flags:  # altmap
            assert att.meta_bytes == m.footprint(size)["device_bytes"] == 2 * MIB
            assert att.data_offset == 2 * MIB and att.data_bytes == 62 * MIB
            ok, why = md.rss_verdict(att.meta_bytes, att.rss_delta, on_device=True)
        else:
            assert att.meta_bytes == m.footprint(att.data_bytes)["dram_bytes"] > 0
            ok, why = md.rss_verdict(att.meta_bytes, att.rss_delta, on_device=False)
        if design == "huge":  # 32 descriptors: 2 KiB, and RSS counts whole pages
            assert att.meta_bytes == 2048 and att.rss_delta == 4096
            assert not ok and "RSS grows in whole 4096 B pages" in why
        else:
            assert ok, why
        if design == "page":
            assert att.rss_delta == pytest.approx(1 * MIB, rel=0.05)


def test_rss_verdicts_say_why():
    assert md.rss_verdict(1 << 20, 1 << 20, False) == (True, "")
    assert md.rss_verdict(0, 4096, False) == (True, "no descriptor table")
    ok, why = md.rss_verdict(512, 4096, False)
    assert not ok and "RSS grows in whole 4096 B pages" in why
    ok, why = md.rss_verdict(3 << 20, 4 << 20, False)
    assert not ok and "transparent huge pages" in why
    ok, why = md.rss_verdict(2 << 20, 0, True)
    assert ok and "already resident" in why


@pytest.mark.parametrize("design", [m.name for m in DATA_PATH])
def test_per_io_model_matches_the_vector_the_core_builds(backing, rng, design):
    ext = pagetax.extents.make(rng.integers(0, 5 * MIB, 200), rng.integers(1, 300_000, 200))
    with backing.attach(design) as att:
        entries = att.entries(ext)
        assert md.model(design).per_io_bytes(ext) == entries * pagetax.design_entry_bytes(design)


def test_per_io_for_one_mib():
    four_k, sixty_four = md.aligned_request(MIB, 4096), md.aligned_request(MIB, 64)
    assert md.model("page").per_io_bytes(four_k) == 256 * 16
    assert md.model("page").per_io_bytes(sixty_four) == 16384 * 16
    assert md.model("sgl").per_io_bytes(four_k) == 256 * 32
    assert md.model("huge").per_io_bytes(md.aligned_request(4 * MIB, 2 * MIB)) == 2 * 16
    crossing = pagetax.extents.make([4000], [200])
    assert md.model("page").entries(crossing) == 2 and md.model("vec").entries(crossing) == 1


@pytest.mark.parametrize("op", ["read", "write"])
def test_huge_splits_at_2mib_and_moves_the_right_bytes(rng, op):
    with pagetax.Backing.scratch(8 * MIB) as b:
        b.view()[:] = rng.integers(0, 256, 8 * MIB, dtype=np.uint8)
        # across one boundary, across two (a 3 MiB extent), inside one page
        ext = pagetax.extents.make([2 * MIB - 100, 2 * MIB + 4096 * 3, 7 * MIB],
                                   [300, 3 * MIB, 4096])
        with b.attach("huge") as att:
            assert att.entries(ext) == 2 + 2 + 1
        assert_moves_right_bytes(b, "huge", ext, op, rng)


def test_altmap_data_starts_after_its_reserve(rng):
    with pagetax.Backing.scratch(8 * MIB) as b:
        view = b.view()
        view[:] = rng.integers(0, 256, 8 * MIB, dtype=np.uint8)
        ext = pagetax.extents.make([0, 4096 * 5 + 7], [64, 5000])
        buf = pagetax.aligned_buffer(5064)
        pagetax.gather(b, "altmap", ext, buf)
        np.testing.assert_array_equal(buf[:64], view[2 * MIB:2 * MIB + 64])
        np.testing.assert_array_equal(buf[64:], view[2 * MIB + 20487:2 * MIB + 20487 + 5000])
        # the descriptors live on the backing: refcount 1 at offset 8 KiB + 52
        with b.attach("altmap") as att:
            table = view[8192:8192 + 64 * 3].view(np.int32).reshape(3, 16)
            assert (table[:, 13] == 1).all()  # refcount at byte 52 of each 64-byte struct page
            att.run("read", ext, buf)
            assert (table[:, 13] == 1).all()  # balanced after release


def test_altmap_refuses_a_read_only_backing(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"\1" * (8 * MIB))
    with pagetax.Backing.from_path(f, 8 * MIB) as b:
        with pytest.raises(pagetax.PagetaxError,
                           match="altmap: altmap keeps its descriptors on the backing, which is read-only"):
            b.attach("altmap")
    assert f.read_bytes() == b"\1" * (8 * MIB)


def test_metadata_command(tmp_path):
    p = cli("metadata", "--capacity", "400GB", "--capacity", "1TiB", "--json", "m.json",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "6,250,000,000" in p.stdout and "1.5625 %" in p.stdout
    assert 'its "6.4 GB"' in p.stdout and "6,400,000,000" in p.stdout
    assert "17,179,869,184" in p.stdout  # 1 TiB with page: 16 GiB
    doc = json.loads((tmp_path / "m.json").read_text())
    assert [c["capacity_bytes"] for c in doc["capacities"]] == [400 * 10**9, TIB]
    rows = {r["design"]: r for r in doc["capacities"][0]["designs"]}
    assert set(rows) == {m.name for m in md.MODELS.values() if not m.peer} | set(md.FOLIO_DESIGNS)
    assert rows["page"]["dram_bytes"] == 6_250_000_000 and rows["page"]["percent"] == 1.5625
    assert rows["page"]["per_io_bytes"] == {"4096": 4096, "64": 262144}
    for r in rows.values():
        assert {"dram_bytes", "device_bytes", "percent", "per_io_bytes"} <= set(r)


def test_metadata_default_capacity_is_the_seed(tmp_path):
    p = cli("metadata", cwd=tmp_path)
    assert p.returncode == 0 and "400,000,000,000 bytes" in p.stdout


@pytest.mark.parametrize("capacity, message", [
    ("0", "--capacity '0' must be positive"),
    ("-5G", "--capacity '-5G' must be positive"),
    ("12XB", "--capacity '12XB' has an unknown unit 'XB'"),
    ("18446744073709551616", "does not fit in 64 bits"),
    ("99999999999T", "does not fit in 64 bits"),
])
def test_bad_capacities(tmp_path, capacity, message):
    p = cli("metadata", "--capacity", capacity, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and message in p.stderr


def test_every_core_design_has_a_cited_model():
    """The fallback (a model from what C declares) is for a design being
    added; every design that has landed has a cited model."""
    assert {m.name for m in md.models(with_core=True)} == set(md.MODELS) | set(md.FOLIO_DESIGNS)


@pytest.mark.parametrize("design", ["vec", "page", "huge", "sgl", "memcpy-glibc"])
def test_what_the_core_declares_matches_the_cited_model(design, rng):
    cited, declared = md.MODELS[design], md._declared(design)
    assert declared.source.startswith("declared by the core")
    ext = pagetax.extents.make(rng.integers(0, 5 * MIB, 200), rng.integers(1, 300_000, 200))
    assert declared.entries(ext) == cited.entries(ext)
    assert declared.per_io_bytes(ext) == cited.per_io_bytes(ext)
    assert declared.footprint(GIB + 12345 * 4096) == cited.footprint(GIB + 12345 * 4096)
    assert (declared.desc_bytes, declared.desc_granule) == (cited.desc_bytes, cited.desc_granule)


@pytest.mark.parametrize("design", [m.name for m in DATA_PATH])
def test_capacity_past_the_limit_is_refused_not_wrapped(design):
    """pt_desc_count once wrapped: page at 2^64 - 1 bytes gave (0, 0)."""
    limit = pagetax.core.lib.PT_MAX_CAPACITY
    fp = md.model(design).footprint(limit)
    assert pagetax.design_metadata(design, limit) == (fp["dram_bytes"], fp["device_bytes"])
    for capacity in (limit + 1, 2**64 - 1):
        with pytest.raises(pagetax.PagetaxError, match=r"over the limit of 144115188075855872 bytes \(2\^57\)"):
            pagetax.design_metadata(design, capacity)
    with pytest.raises(pagetax.PagetaxError, match="over the limit"):
        pagetax.design_metadata(design, 2**64)

"""Bytes moved by every design and op, compared against numpy."""
import numpy as np
import pytest

import pagetax
from helpers import (SIZE, assert_moves_right_bytes, data_view, expected_gather,
                     expected_scatter, random_extents)

SG_DESIGNS = [d for d in pagetax.DESIGNS if "contiguous" not in pagetax.designs.design_flags(d)]
CONTIGUOUS = [d for d in pagetax.DESIGNS if "contiguous" in pagetax.designs.design_flags(d)]
SPACE = 6 << 20  # fits every design's data area of an 8 MiB backing (altmap keeps 2 MiB)


def test_registry_lists_the_designs():
    assert pagetax.DESIGNS == ("vec", "pfn", "page", "memcpy", "memcpy-glibc", "kernel",
                               "huge", "altmap", "memdesc-inline", "folio", "page32", "memdesc",
                               "sgl")
    assert CONTIGUOUS == ["memcpy", "memcpy-glibc"]
    for d in pagetax.DESIGNS:
        assert pagetax.design_entry_bytes(d) == (32 if d == "sgl" else 16)


@pytest.mark.parametrize("design", SG_DESIGNS)
def test_gather_matches_numpy(backing, rng, design):
    ext = random_extents(rng, SPACE, 300)
    assert ((ext["off"] % 4096) + ext["len"] > 4096).sum() > 100  # many cross a page
    want = expected_gather(data_view(backing, design), ext)
    buf = pagetax.aligned_buffer(want.size + 7, fill=0xEE)
    moved = pagetax.gather(backing, design, ext, buf)
    assert moved == want.size
    np.testing.assert_array_equal(buf[:want.size], want)
    assert (buf[want.size:] == 0xEE).all()  # nothing past the packed bytes


@pytest.mark.parametrize("design", SG_DESIGNS)
def test_scatter_matches_numpy(backing, rng, design):
    ext = random_extents(rng, SPACE, 300)
    total = int(ext["len"].sum())
    src = rng.integers(0, 256, total, dtype=np.uint8)
    view = data_view(backing, design)
    want = expected_scatter(view, ext, src)
    moved = pagetax.scatter(backing, design, ext, src)
    assert moved == total
    np.testing.assert_array_equal(view, want)


@pytest.mark.parametrize("design", CONTIGUOUS)
@pytest.mark.parametrize("op", ["read", "write"])
def test_memcpy_roofline_copies_same_bytes_contiguously(backing, rng, op, design):
    ext = random_extents(rng, SPACE, 50)
    total = int(ext["len"].sum())
    view = backing.view()
    if op == "read":
        buf = pagetax.aligned_buffer(total)
        assert pagetax.gather(backing, design, ext, buf) == total
        np.testing.assert_array_equal(buf, view[:total])
    else:
        src = rng.integers(0, 256, total, dtype=np.uint8)
        after = view[total:total + 4096].copy()
        assert pagetax.scatter(backing, design, ext, src) == total
        np.testing.assert_array_equal(view[:total], src)
        np.testing.assert_array_equal(view[total:total + 4096], after)


@pytest.mark.parametrize("design", pagetax.DESIGNS)
@pytest.mark.parametrize("segs_per_io", [0, 1, 7])
def test_split_into_ios_moves_the_same_bytes(backing, rng, design, segs_per_io):
    ext = random_extents(rng, SPACE, 40)
    view = data_view(backing, design)
    want = expected_gather(view, ext) if design in SG_DESIGNS else view[:int(ext["len"].sum())]
    buf = pagetax.aligned_buffer(want.size)
    with backing.attach(design) as att:
        m = att.run("read", ext, buf, reps=2, warmup=1, segs_per_io=segs_per_io, phase_reps=3)
    np.testing.assert_array_equal(buf, want)
    assert m.bytes == want.size and m.segments == 40
    assert m.phases.shape == (3, 3) and m.total_ns.shape == (2,) and (m.total_ns > 0).all()
    assert m.ios == (1 if segs_per_io == 0 else -(-40 // segs_per_io))


def test_page_design_splits_at_page_boundaries(backing):
    # 3 pages touched, 1 page, 2 pages: 6 bio_vecs; vec and pfn keep 3 entries.
    ext = pagetax.extents.make([4000, 8192, 12288 + 4095], [4096 + 200, 4096, 2])
    with backing.attach("page") as att:
        assert att.entries(ext) == 6
    with backing.attach("vec") as att:
        assert att.entries(ext) == 3
    with backing.attach("pfn") as att:
        assert att.entries(ext) == 3


def test_page_table_is_one_64_byte_descriptor_per_page(backing):
    with backing.attach("page") as att:
        assert att.meta_bytes == (SIZE // 4096) * 64
    assert pagetax.design_metadata("page", 400 * 10**9) == (6_250_000_000, 0)
    for d in ("vec", "pfn", "memcpy", "kernel"):
        with backing.attach(d) as att:
            assert att.meta_bytes == 0
        assert pagetax.design_metadata(d, 1 << 40) == (0, 0)


def test_references_are_balanced_after_runs(backing, rng):
    """Every get_page has its put_page: a second run would otherwise fail
    the engine's below-zero check or leave counts high."""
    ext = random_extents(rng, SPACE, 100)
    buf = pagetax.aligned_buffer(int(ext["len"].sum()))
    for design in ("page", "huge", "altmap", "memdesc-inline", "folio", "page32", "memdesc",
                   "sgl"):
        with backing.attach(design) as att:
            for _ in range(3):
                att.run("read", ext, buf, reps=3, warmup=1)
                att.run("write", ext, buf, reps=2, segs_per_io=7)


def test_cold_cache_run_moves_the_same_bytes(backing, rng):
    ext = random_extents(rng, SPACE, 64)
    want = expected_gather(backing.view(), ext)
    buf = pagetax.aligned_buffer(want.size)
    with backing.attach("page") as att:
        att.run("read", ext, buf, reps=2, cache="cold", evict=pagetax.aligned_buffer(1 << 20))
    np.testing.assert_array_equal(buf, want)


@pytest.mark.parametrize("pattern", ["seq", "rand"])
def test_generated_workload(pattern):
    ext = pagetax.extents.generate(pattern, 4096, 1 << 20, 64 << 20, seed=3)
    assert ext.dtype == pagetax.EXTENT_DTYPE and len(ext) == 256
    assert (ext["len"] == 4096).all() and (ext["off"] % 4096 == 0).all()
    assert len(np.unique(ext["off"])) == 256  # no slot twice
    if pattern == "seq":
        np.testing.assert_array_equal(ext["off"], np.arange(256) * 4096)
    else:
        again = pagetax.extents.generate(pattern, 4096, 1 << 20, 64 << 20, seed=3)
        np.testing.assert_array_equal(ext, again)
        other = pagetax.extents.generate(pattern, 4096, 1 << 20, 64 << 20, seed=4)
        assert (ext["off"] != other["off"]).any()
        assert ext["off"].max() >= 32 << 20  # spread over the backing


def test_union_bytes_counts_shared_blocks_once():
    ext = pagetax.extents.make([0, 100, 4096 * 3, 4096 * 3 + 10], [64, 4096, 1, 1])
    # pages: 0, 0-1, 3, 3 -> {0, 1, 3}; lines: 0, 1..65, 192, 192 -> 66
    assert pagetax.extents.union_bytes(ext, 4096) == 3 * 4096
    assert pagetax.extents.union_bytes(ext, 64) == (1 + 65 + 1) * 64


@pytest.mark.parametrize("design", SG_DESIGNS)
@pytest.mark.parametrize("op", ["read", "write"])
def test_every_small_length(backing, rng, design, op):
    """Lengths 1..130 at odd offsets: the inlined 16..64-byte copy and its
    edges (15, 16, 32, 33, 64, 65) must move exactly the bytes asked."""
    lengths = np.arange(1, 131)
    starts = np.cumsum(np.concatenate(([4093], lengths[:-1] + 7)))
    ext = pagetax.extents.make(starts, lengths)
    view = data_view(backing, design)
    if op == "read":
        want = expected_gather(view, ext)
        buf = pagetax.aligned_buffer(want.size + 64, fill=0xEE)
        pagetax.gather(backing, design, ext, buf)
        np.testing.assert_array_equal(buf[:want.size], want)
        assert (buf[want.size:] == 0xEE).all()
    else:
        src = rng.integers(0, 256, int(lengths.sum()), dtype=np.uint8)
        want = expected_scatter(view, ext, src)
        pagetax.scatter(backing, design, ext, src)
        np.testing.assert_array_equal(view, want)


@pytest.mark.parametrize("op", ["read", "write"])
def test_kernel_batches_contiguous_runs_by_iov_max(backing, rng, op):
    """3000 file-contiguous 64 B extents, then a jump: preadv/pwritev calls of
    at most IOV_MAX iovecs each, and every byte where numpy says."""
    starts = np.concatenate((np.arange(3000) * 64 + 4096, [SIZE - 4096]))
    ext = pagetax.extents.make(starts, np.full(3001, 64))
    assert_moves_right_bytes(backing, "kernel", ext, op, rng)

"""Reference counts read back from the tables: every design that counts
must take exactly one reference per page an entry covers, and drop them all,
under one thread and under contention.  And the compiled loops must still
use locked instructions for them."""
import os

import numpy as np
import pytest

import pagetax
from pagetax import extents, metadata
from helpers import SIZE, disassembly, random_extents

COUNTING = [d for d in pagetax.DESIGNS if "refcounts" in pagetax.designs.design_flags(d)]


def test_the_counting_designs_are_the_ones_with_tables():
    assert set(COUNTING) == {"page", "huge", "altmap", "memdesc-inline", "folio", "page32",
                             "memdesc", "sgl"}


def expected_counts(ext, granule, ndesc):
    """numpy's count of references a build takes: one per descriptor
    granule that each extent touches (bio_vec: an entry per page; sgl: a
    reference on every page its entry spans)."""
    first = (ext["off"] // np.uint64(granule)).astype(np.int64)
    last = ((ext["off"] + ext["len"] - np.uint64(1)) // np.uint64(granule)).astype(np.int64)
    pages = np.concatenate([np.arange(f, l + 1) for f, l in zip(first, last)])
    return np.bincount(pages, minlength=ndesc)


def _extents(rng, space):
    ext = random_extents(rng, space, 300)
    # the same pages again, so that counts rise above 2
    again = extents.make(np.minimum(ext["off"][:50], space - 4096) + np.uint64(7),
                         np.full(50, 100, np.uint64))
    return np.concatenate([ext, again])


@pytest.mark.parametrize("design", COUNTING)
def test_build_takes_one_reference_per_page_touched(backing, design, rng):
    granule = metadata.model(design).desc_granule
    with backing.attach(design) as att:
        ext = _extents(rng, att.data_bytes)
        base = att.refcounts()
        assert (base == 1).all()  # ZONE_DEVICE pages sit at 1 while the device is live
        with att.hold(ext):
            raised = att.refcounts() - base
            # a pin raises a small folio's count by GUP_PIN_COUNTING_BIAS
            assert att.pin_bias == (1 if design == "huge" else 1024)
            assert (raised % att.pin_bias == 0).all()
            held = raised // att.pin_bias
            np.testing.assert_array_equal(held, expected_counts(ext, granule, len(base)))
            assert held.max() >= 2
        np.testing.assert_array_equal(att.refcounts(), base)


@pytest.mark.parametrize("design", COUNTING)
def test_a_two_megabyte_extent_in_one_huge_page(design):
    """A 2 MiB extent on a 2 MiB boundary: 512 references for 4 KiB
    descriptors, one for `huge`."""
    with pagetax.Backing.scratch(16 << 20) as b, b.attach(design) as att:
        ext = extents.make([2 << 20], [2 << 20])  # data-area offsets, as descriptors index
        with att.hold(ext):
            held = (att.refcounts() - 1) // att.pin_bias
        granule = metadata.model(design).desc_granule
        assert held.sum() == (2 << 20) // granule
        assert set(np.unique(held)) <= {0, 1}


@pytest.mark.parametrize("design", COUNTING)
@pytest.mark.parametrize("op", ["read", "write"])
def test_every_count_returns_to_its_base_after_runs(backing, design, op, rng):
    with backing.attach(design) as att:
        ext = _extents(rng, att.data_bytes)[:300]
        buf = pagetax.aligned_buffer(int(ext["len"].sum()))
        att.run(op, ext, buf, reps=2, segs_per_io=7)
        assert (att.refcounts() == 1).all()


@pytest.mark.parametrize("design", COUNTING)
def test_counts_return_to_base_under_contention(design):
    """Two threads pinned to two CPUs hammer the count of one page, in
    one-segment I/Os and in whole-repetition builds; a lost update (a get
    or put that is not atomic) leaves the count off 1 or drives a put
    below zero."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    with pagetax.Backing.scratch(SIZE) as b, b.attach(design) as att:
        exts = extents.per_thread("hot", 64, 1 << 20, att.data_bytes, 2, seed=3,
                                  hot_bytes=4096)
        bufs = [pagetax.aligned_buffer(1 << 20) for _ in exts]
        for per_io in (1, 0):
            att.run("read", exts, bufs, reps=32, segs_per_io=per_io, cpus=cpus[:2],
                    phase_reps=0)
            counts = att.refcounts()
            assert (counts == 1).all(), f"counts off their base: {np.unique(counts)}"


def test_hold_refuses_misuse(backing):
    with backing.attach("page") as att:
        ext = extents.make([0], [4096])
        buf = pagetax.aligned_buffer(4096)
        with pytest.raises(pagetax.PagetaxError, match="holds no references"):
            att.unhold()
        att.hold(ext)
        with pytest.raises(pagetax.PagetaxError, match="already holds references"):
            att.hold(ext)
        with pytest.raises(pagetax.PagetaxError, match="holds references from pt_hold"):
            att.run("read", ext, buf)
        att.unhold()
        att.run("read", ext, buf)
        att.hold(ext)  # detach while holding releases first
    with backing.attach("vec") as att, pytest.raises(pagetax.PagetaxError,
                                                     match="vec keeps no reference counts"):
        att.refcounts()


def test_hold_validates_extents(backing):
    with backing.attach("page") as att:
        with pytest.raises(pagetax.ExtentError, match="runs past the data area"):
            att.hold(extents.make([att.data_bytes - 10], [20]))
        assert (att.refcounts() == 1).all()


def _lock_kind(line):
    """What a locked instruction does to a count: add 1 (a get), add a
    register (one add of N pages), or subtract (a put, sub_fetch's xadd)."""
    insn = line.split("lock", 1)[1].split()
    op, src = insn[0], insn[1] if len(insn) > 1 else ""
    if op.startswith("inc") or (op.startswith("add") and src.startswith("$0x1,")):
        return "add 1"
    if op.startswith("add"):
        return "add n"
    if op.startswith(("xadd", "sub", "dec")):
        return "sub"
    return op


FOLIO_DESIGNS = {d for d in COUNTING if "folios" in pagetax.designs.design_flags(d)}


@pytest.mark.parametrize("design", COUNTING)
def test_compiled_build_and_release_keep_every_locked_instruction(design):
    """Each atomic path the counts rely on is a locked instruction in the
    built extension (csrc/pt_gup.h): folio_ref_try_add's cmpxchg, the
    pin's second add (the bias, an add of N; _pincount's add of 1 for
    `huge`, whose one page is a large folio), folio_set_referenced's or,
    the plain add of 1 a run may ask for instead of the try-add, and the
    subtract that undoes a grab whose page_folio() changed (memdesc-inline
    has no folio to re-read); a subtract in every release.  One path that
    loses its `lock` takes references no other CPU sees."""
    funcs = disassembly()
    build = {"cmpxchg", "orl", "add 1", "add n", "sub"}
    if design == "huge":
        build.discard("add n")
    if design == "memdesc-inline":
        build.discard("sub")
    want = {"build": build, "release": {"sub"}}
    for op, kinds in want.items():
        name = f"{design.replace('-', '_')}_{op}"
        assert name in funcs, f"{name} not found in the extension's symbols"
        found = {_lock_kind(line) for line in funcs[name] if "lock " in line}
        assert found == kinds, f"{name}: locked {sorted(found)}, not {sorted(kinds)}"


def test_an_sgl_entry_near_4_gib_takes_a_reference_on_every_page():
    """sg_npages once added offset and length in 32 bits: an entry of
    2^32 - 1 bytes at offset 4095 in its page counted 1 page, not 1,048,577."""
    with pagetax.Backing.scratch((4 << 30) + (8 << 10)) as b, b.attach("sgl") as att:
        ext = extents.make([4095], [(1 << 32) - 1])
        with att.hold(ext):
            held = (att.refcounts() - 1) // att.pin_bias
        assert int(held.sum()) == ((4095 + (1 << 32) - 1 + 4095) >> 12) == 1048577
        assert (att.refcounts() == 1).all()


def test_a_second_table_on_the_backing_is_refused_while_the_first_is_open(backing):
    """Two altmap attachments on one backing would share one reserve: the
    second's initialisation reset the first's held counts, and its release
    then dropped them to zero (found by tests/test_api_fuzz.py)."""
    ext = extents.make([0, 8192], [100, 100])
    first = backing.attach("altmap")
    first.hold(ext)
    with pytest.raises(pagetax.PagetaxError,
                       match="already keeps the descriptors of an open altmap attachment"):
        backing.attach("altmap")
    first.unhold()
    assert (first.refcounts() == 1).all()
    first.close()
    with backing.attach("altmap") as second:   # closed, the reserve is free again
        assert (second.refcounts() == 1).all()

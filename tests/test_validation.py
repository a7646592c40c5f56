"""Bad extents and buffers are refused, in Python and again in C, before any copy."""
import re
import subprocess
import sys

import numpy as np
import pytest

import pagetax
from helpers import SIZE

E = pagetax.extents.make


def _gather(backing, ext, buf, design="vec"):
    return pagetax.gather(backing, design, ext, buf)


@pytest.mark.parametrize("ext, message", [
    (E([SIZE - 10], [11]), r"extent 0 \[off=8388598, len=11\] ends at 8388609, beyond the backing's data area of 8388608 bytes"),
    (E([0, SIZE], [1, 1]), r"extent 1 \[off=8388608, len=1\] ends at 8388609"),
    (E([0, 2**64 - 1], [1, 2]), r"extent 1 \[off=18446744073709551615, len=2\]"),
    (E([0, 10], [5, 0]), r"extent 1: length must be positive \(got 0\)"),
    (E([0], [2**32]), r"extent 0: length 4294967296 is over the 32-bit segment limit"),
])
def test_python_refuses_bad_extents(backing, ext, message):
    before = backing.view().copy()
    buf = pagetax.aligned_buffer(1 << 20, fill=7)
    with pytest.raises(pagetax.ExtentError, match=message):
        _gather(backing, ext, buf)
    assert (buf == 7).all()
    with pytest.raises(pagetax.ExtentError, match=message):
        pagetax.scatter(backing, "page", ext, buf)
    np.testing.assert_array_equal(backing.view(), before)


@pytest.mark.parametrize("ext, message", [
    (E([6 << 20], [1]), r"extent 0 \[6291456, \+1\) runs past the data area of 6291456 bytes"),
    (E([0, 2**64 - 1], [1, 2]), r"extent 1 \[18446744073709551615, \+2\) runs past"),
    (E([0, 10], [5, 0]), r"extent 1 has length 0"),
    (E([0], [2**32]), r"extent 0 is 4294967296 bytes, over the 32-bit segment limit"),
])
@pytest.mark.parametrize("design", pagetax.DESIGNS)
def test_c_refuses_bad_extents_without_python(backing, ext, message, design):
    """The C validator alone (Python's checks bypassed) refuses the same input,
    with every design on the run's common data area (after altmap's reserve)."""
    with backing.attach(design, *pagetax.designs.common_layout(pagetax.DESIGNS, SIZE)) as att:
        with pytest.raises(pagetax.ExtentError, match=message) as info:
            att.validate_in_c(ext, 1 << 40)
        assert info.value.index == len(ext) - 1


def test_c_refuses_extents_beyond_the_buffer(backing):
    with backing.attach("vec") as att:
        with pytest.raises(pagetax.ExtentError, match=r"extents need more than the buffer's 100 bytes \(at extent 1\)"):
            att.validate_in_c(E([0, 4096], [64, 64]), 100)
        with pytest.raises(pagetax.ExtentError, match=r"^no extents$"):
            att.validate_in_c(np.empty(0, pagetax.EXTENT_DTYPE), 100)


def test_run_checks_in_c_when_python_checks_are_skipped(backing):
    """Attachment.run leaves bounds to C; a bad extent still never reaches a copy."""
    buf = pagetax.aligned_buffer(4096, fill=3)
    with backing.attach("vec") as att:
        with pytest.raises(pagetax.ExtentError, match="runs past the data area"):
            att.run("read", E([SIZE - 1], [2]), buf)
        with pytest.raises(pagetax.ExtentError, match="extents need more than the buffer's 4096 bytes"):
            att.run("read", E([0, 8192], [4096, 1]), buf)
    assert (buf == 3).all()


def test_buffer_too_small(backing):
    with pytest.raises(pagetax.ExtentError, match="buffer holds 100 bytes but the extents need 128"):
        _gather(backing, E([0, 4096], [64, 64]), pagetax.aligned_buffer(100))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 2), np.uint64), r"extents must have dtype .* got uint64"),
    (np.zeros(3, np.dtype([("off", "<i8"), ("len", "<i8")])), r"extents must have dtype"),
    (np.zeros((2, 2), pagetax.EXTENT_DTYPE), r"extents must be 1-D; got shape \(2, 2\)"),
    (np.zeros(6, pagetax.EXTENT_DTYPE)[::2], r"extents must be C-contiguous"),
    (np.zeros(0, pagetax.EXTENT_DTYPE), r"^no extents$"),
    ([(0, 64)], r"extents must be a numpy array .* not list"),
])
def test_wrong_extent_arrays(backing, bad, message):
    with pytest.raises(pagetax.ExtentError, match=message):
        _gather(backing, bad, pagetax.aligned_buffer(4096))


@pytest.mark.parametrize("buf, message", [
    (np.zeros(4096, np.int32), r"buffer must have dtype uint8; got int32"),
    (np.zeros(8192, np.uint8)[::2], r"buffer must be C-contiguous"),
    (np.zeros((64, 64), np.uint8), r"buffer must be 1-D"),
    (bytearray(4096), r"buffer must be a numpy uint8 array, not bytearray"),
])
def test_wrong_buffers(backing, buf, message):
    with pytest.raises(pagetax.ExtentError, match=message):
        _gather(backing, E([0], [64]), buf)


def test_read_only_buffer_refused_for_gather_but_fine_for_scatter(backing):
    buf = np.zeros(64, np.uint8)
    buf.flags.writeable = False
    with pytest.raises(pagetax.ExtentError, match="buffer is read-only, but a gather writes into it"):
        _gather(backing, E([0], [64]), buf)
    assert pagetax.scatter(backing, "vec", E([0], [64]), buf) == 64
    assert (backing.view()[:64] == 0).all()


def test_overlapping_extents_refused_for_scatter(backing):
    with pytest.raises(pagetax.ExtentError, match="extents 1 and 0 overlap"):
        pagetax.scatter(backing, "vec", E([100, 50], [10, 60]), np.zeros(70, np.uint8))


@pytest.mark.parametrize("offsets, lengths, message", [
    ([0, 5], [10, -1], r"extent 1: length -1 is negative"),
    ([-4096], [10], r"extent 0: offset -4096 is negative"),
    ([0.5], [10], r"offsets must be integers \(got float64\)"),
    ([0, 1], [10], r"offsets and lengths must be 1-D and of one length"),
])
def test_make_refuses_bad_numbers(offsets, lengths, message):
    with pytest.raises(pagetax.ExtentError, match=message):
        E(offsets, lengths)


def test_unknown_design_op_cache(backing):
    with pytest.raises(pagetax.PagetaxError, match=r"unknown design 'folios' \(choose from vec, pfn, page, memcpy, memcpy-glibc, kernel, huge, altmap, memdesc-inline, folio, page32, memdesc, sgl\)"):
        backing.attach("folios")
    buf = pagetax.aligned_buffer(64)
    with backing.attach("vec") as att:
        with pytest.raises(pagetax.PagetaxError, match="unknown op 'copy'"):
            att.run("copy", E([0], [64]), buf)
        with pytest.raises(pagetax.PagetaxError, match="unknown cache mode 'lukewarm'"):
            att.run("read", E([0], [64]), buf, cache="lukewarm")
        with pytest.raises(pagetax.PagetaxError, match="a cold cache by eviction needs an eviction buffer"):
            att.run("read", E([0], [64]), buf, cache="cold", cold="evict")
        with pytest.raises(pagetax.PagetaxError, match="unknown cold-cache method 'wbinvd'"):
            att.run("read", E([0], [64]), buf, cache="cold", cold="wbinvd")
        with pytest.raises(pagetax.PagetaxError, match="repetitions must be at least 1"):
            att.run("read", E([0], [64]), buf, reps=0)


@pytest.mark.parametrize("args, message", [
    (("rand", 0, 4096, 1 << 20), "segment size 0 must be positive"),
    (("rand", 8192, 4096, 1 << 20), "segment size 8192 is larger than the I/O size 4096"),
    (("rand", 4096, 6000, 1 << 20), "I/O size 6000 is not a multiple of the segment size 4096"),
    (("rand", 4096, 2 << 20, 1 << 20), r"I/O size 2097152 is larger than the backing \(1048576 bytes\)"),
    (("zigzag", 4096, 4096, 1 << 20), r"unknown pattern 'zigzag' \(choose from seq, rand, hot\)"),
])
def test_generate_refuses(args, message):
    with pytest.raises(pagetax.ExtentError, match=message):
        pagetax.extents.generate(*args)


@pytest.mark.parametrize("code, cls", [("PT_EINVAL", pagetax.ExtentError),
                                       ("PT_ERANGE", pagetax.ExtentError),
                                       ("PT_EINTR", pagetax.Interrupted),
                                       ("PT_ENOMEM", pagetax.PagetaxError)])
def test_one_path_from_c_errors_to_exceptions(code, cls):
    from pagetax._core import ffi, lib
    from pagetax.errors import raise_for
    err = ffi.new("struct pt_error *", {"index": 3})
    err.msg[0:4] = b"why\0"
    rc = getattr(lib, code)
    with pytest.raises(cls) as info:
        raise_for(rc, err, prefix="x: ")
    assert type(info.value) is cls and str(info.value) == "x: why"
    assert info.value.code == rc and info.value.index == 3
    with pytest.raises(pagetax.Interrupted if code == "PT_EINTR" else pagetax.BackingError):
        raise_for(rc, err, cls=pagetax.BackingError)
    raise_for(lib.PT_OK, err)  # no error, no exception


@pytest.mark.parametrize("design", ["vec", "page", "sgl"])
def test_a_build_past_its_reserved_vector_fails_the_run(backing, design):
    """Had a design's entries() underestimated, build would write past the
    vector; the run checks every build's count and fails with a clear error
    (issue 13, item 4).  The test-only hook plans one entry fewer."""
    lib = pagetax.core.lib
    ext = pagetax.extents.generate("rand", 4096, 1 << 20, 4 << 20, seed=2)
    buf = pagetax.aligned_buffer(1 << 20)
    with backing.attach(design) as att:
        lib.pt_test_set_underestimate(1)
        try:
            with pytest.raises(pagetax.PagetaxError,
                               match=rf"{design} built 16 entries, more than the 15 it reserved"):
                att.run("read", ext, buf, segs_per_io=16)
        finally:
            lib.pt_test_set_underestimate(0)
        att.run("read", ext, buf, segs_per_io=16)


def test_entry_counts_of_extents_no_run_accepts_are_refused_not_wrapped():
    """Issue 13, item 3: the page arithmetic off + len - 1 wrapped for an
    extent ending past 2^64 (page counted 2 entries, or 2^52), and a length
    of 0 counted as a whole page table.  C answers PT_ENTRIES_INVALID, and
    Python names the extent."""
    lib, ffi = pagetax.core.lib, pagetax.core.ffi
    cases = {"ends past 2^64": ([2**64 - 1], [2]), "length must be positive": ([4096], [0]),
             "32-bit segment limit": ([0], [2**32])}
    for design in pagetax.DESIGNS:
        for what, (off, length) in cases.items():
            ext = np.zeros(1, pagetax.EXTENT_DTYPE)
            ext["off"], ext["len"] = off, length
            c_ext = ffi.from_buffer("struct pt_extent[]", ext)
            assert lib.pt_design_entries(pagetax.designs.design_id(design), c_ext, 1) == \
                lib.PT_ENTRIES_INVALID, (design, what)
            with pytest.raises(pagetax.ExtentError, match=re.escape(what)):
                pagetax.designs.design_entries(design, ext)
    assert pagetax.designs.design_entries("page", pagetax.extents.make([4095], [2])) == 2


def test_more_extents_than_the_limit_are_refused_before_any_is_read(backing):
    """PT_MAX_EXTENTS (2^32) bounds every count a call makes; past it the C
    validator refuses on the count alone, reading no extent."""
    lib, ffi = pagetax.core.lib, pagetax.core.ffi
    assert lib.PT_MAX_EXTENTS == pagetax.extents.MAX_EXTENTS == 2**32
    ext = pagetax.extents.make([0], [64])
    err = ffi.new("struct pt_error *")
    with backing.attach("vec") as att:
        rc = lib.pt_validate(att._ptr, ffi.from_buffer("struct pt_extent[]", ext),
                             lib.PT_MAX_EXTENTS + 1, 2**63, ffi.NULL, err)
    assert rc == lib.PT_EINVAL
    assert ffi.string(err.msg).decode() == "4294967297 extents are over the limit of 4294967296 (2^32)"


OWN_EXTENTS = """
import numpy as np, pagetax
from pagetax import extents
b = pagetax.Backing.scratch(8 << 20)
view = b.view()
view[:] = np.random.default_rng(1).integers(0, 256, view.size, dtype=np.uint8)
ext0 = extents.generate("rand", 256, 256 << 10, 8 << 20, seed=1)
covering = -(-ext0.size * 16 // 256)             # the segments that land on the extents
for o in ext0["off"][:covering].tolist():
    view[o:o + 256] = 0xFF                        # ... and overwrite them with 0xFF
want = np.concatenate([view[o:o + n] for o, n in zip(ext0["off"].tolist(), ext0["len"].tolist())])
buf = pagetax.aligned_buffer(256 << 10)
ext = np.frombuffer(buf.data, extents.EXTENT_DTYPE, count=ext0.size)  # the buffer's first bytes
ext[:] = ext0
with b.attach("{design}") as att:
    p = att.prepare("read", ext, buf, reps=2, calls=2, phase_reps=1, segs_per_io=16,
                    cache="{cache}")
    p()
    assert (ext["off"] == np.uint64(2**64 - 1)).all()  # the gather overwrote them ...
    p()                                                # ... and the plan still reads its own
    np.testing.assert_array_equal(buf, want)
    assert (p.extents_copy() == ext0).all()
    try:
        att.prepare("read", ext, buf)                  # what the buffer holds now is refused
    except pagetax.ExtentError as e:
        print("refused:", e)
    try:
        att.validate_in_c(ext, buf.nbytes)
    except pagetax.PagetaxError as e:
        print("refused in C:", e)
    assert (att.refcounts() == 1).all() if "refcounts" in att.flags else True
print("ok")
"""


@pytest.mark.parametrize("design,cache", [("vec", "warm"), ("page", "cold"), ("folio", "warm"),
                                          ("sgl", "cold")])
def test_a_gather_into_a_buffer_that_holds_its_own_extents(design, cache, tmp_path):
    """The core reads its own copy of the extents, checked when the run was
    prepared: a gather that overwrites the caller's extents (the buffer is
    the same memory) moves the right bytes and touches nothing else; the
    overwritten extents are then refused, in Python and in C."""
    # away from the source tree, whose pagetax/ may have no compiled core
    p = subprocess.run([sys.executable, "-c", OWN_EXTENTS.format(design=design, cache=cache)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "ok" in p.stdout
    for who in ("refused", "refused in C"):  # prepare's plan and the validator alike
        assert f"{who}: extent 0 is 18446744073709551615 bytes, over the 32-bit segment " \
               "limit" in p.stdout

"""The drift reference: the same segments as a row, through a loop built
apart from the core, measured in every round of a cell."""
import json
import os
import subprocess

import numpy as np
import pytest

import pagetax
from pagetax import extents, reference
from helpers import SMALL, cli, expected_gather, expected_scatter


@pytest.mark.parametrize("op", ["read", "write"])
@pytest.mark.parametrize("seg", [64, 4096])
def test_it_moves_the_rows_bytes(op, seg, rng):
    with pagetax.Backing.scratch(8 << 20) as b:
        view = b.view()
        view[:] = rng.integers(0, 256, view.size, dtype=np.uint8)
        ext = extents.generate("rand", seg, 1 << 20, b.size, seed=3)
        buf = pagetax.aligned_buffer(1 << 20)
        if op == "write":
            buf[:] = rng.integers(0, 256, buf.size, dtype=np.uint8)
            want = expected_scatter(view, ext, buf)
        else:
            want = expected_gather(view, ext)
        ref = reference.Reference(b, 0, b.size, op, ext, buf, cache="cold",
                                  cold=pagetax.timed_run.cold_method(), evict=None)
        ref()
        ref.close()
        np.testing.assert_array_equal(view if op == "write" else buf, want)
        assert len(ref.total_ns) == 1 and ref.total_ns[0] > 0


def test_it_reads_its_own_copy_of_the_extents():
    with pagetax.Backing.scratch(8 << 20) as b:
        ext = extents.generate("rand", 256, 64 << 10, b.size, seed=1)
        buf = pagetax.aligned_buffer(64 << 10)
        ref = reference.Reference(b, 0, b.size, "read", ext, buf, cache="warm",
                                  cold="clflush", evict=None)
        ext["off"] = np.uint64(2**64 - 256)   # the caller's array, no longer its extents
        ref()
        ref.close()


def test_it_is_refused_where_the_backing_can_fault(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"\0" * (4 << 20))
    with pagetax.Backing.from_path(str(path)) as b:   # a user's file: someone may truncate it
        assert not reference.available(b)
        with pytest.raises(ValueError, match="no drift reference: the backing can fault"):
            reference.Reference(b, 0, b.size, "read", extents.make([0], [64]),
                                pagetax.aligned_buffer(64), cache="cold", cold="clflush",
                                evict=None)


def test_it_is_built_apart_from_the_core():
    """Nothing of the core is linked into it: a change to csrc/ cannot move it."""
    import pagetax._reference
    so = pagetax._reference.__file__
    if not os.path.exists("/usr/bin/nm"):
        pytest.skip("needs nm (binutils)")
    symbols = subprocess.run(["nm", "--defined-only", so], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "ref_gather" in symbols and "ref_scatter" in symbols
    assert not [s for s in symbols if s.startswith("pt_")], "core symbols inside"


def test_a_run_measures_it_in_every_cell(tmp_path):
    p = cli("run", *SMALL, "--designs", "vec,page", "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    refs = {(r["op"], r["pattern"], r["seg_bytes"]): r for r in doc["results"]
            if r.get("reference")}
    assert len(refs) == 2 * 2 * 2
    for r in refs.values():
        assert r["design"] == "reference" and not r["phases"] and r["reps"] == 2
        assert len(r["rep_total_ns"]) == 2 and all(t > 0 for t in r["rep_total_ns"])
        assert r["io_bytes"] == 1 << 20
    assert "reference" in p.stdout

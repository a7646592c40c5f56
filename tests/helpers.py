"""Shared test helpers (imported as `helpers`: pyproject.toml puts tests/ on
pytest's pythonpath)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pagetax

SIZE = 8 << 20  # 2048 pages: small enough for many tests, big enough to cross pages
CLI = [sys.executable, "-m", "pagetax"]
# A run of a few seconds: a small backing, 1 MiB repetitions, two sizes, two of each.
SMALL = ["--size", "16M", "--io-size", "1M", "--seg-sizes", "64,4K", "--repeat", "2",
         "--no-progress"]


def cli(*args, cwd=None, env=None, timeout=300):
    """`pagetax ARGS` in a subprocess, as a user runs it."""
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def random_extents(rng, space, n, max_len=3 * 4096 + 100):
    """Non-overlapping extents at unaligned offsets, many crossing page
    boundaries, in random order."""
    lengths = rng.integers(1, max_len, n)
    gaps = rng.integers(0, 5000, n)
    starts = np.cumsum(gaps + np.concatenate(([0], lengths[:-1])))
    assert starts[-1] + lengths[-1] <= space, "test extents do not fit"
    order = rng.permutation(n)
    return pagetax.extents.make(starts[order], lengths[order])


def data_view(backing, design):
    """The design's data area of the backing (altmap's starts after its
    descriptor reserve), as a numpy view: extents are offsets into it."""
    off, nbytes = pagetax.designs.design_layout(design, backing.size)
    return backing.view()[off:off + nbytes]


def expected_gather(view, ext):
    """What numpy says a gather must produce: the extents' bytes, packed."""
    return np.concatenate([view[o:o + n] for o, n in zip(ext["off"].tolist(), ext["len"].tolist())])


def expected_scatter(view, ext, src):
    """What numpy says a view must hold after scattering src through ext."""
    want = view.copy()
    pos = 0
    for o, n in zip(ext["off"].tolist(), ext["len"].tolist()):
        want[o:o + n] = src[pos:pos + n]
        pos += n
    return want


def assert_moves_right_bytes(backing, design, ext, op, rng):
    """Gather `ext` (op "read") or scatter random bytes through it (op
    "write") with `design`, and check the result byte for byte against
    numpy: the packed buffer, or the whole data area after the scatter."""
    view = data_view(backing, design)
    if op == "read":
        want = expected_gather(view, ext)
        buf = pagetax.aligned_buffer(want.size)
        assert pagetax.gather(backing, design, ext, buf) == want.size
        np.testing.assert_array_equal(buf, want)
    else:
        src = rng.integers(0, 256, int(ext["len"].sum()), dtype=np.uint8)
        want = expected_scatter(view, ext, src)
        assert pagetax.scatter(backing, design, ext, src) == src.size
        np.testing.assert_array_equal(view, want)


def disassembly():
    """{function: [lines]} of the built extension's x86-64 disassembly
    (objdump); skips elsewhere or without binutils."""
    import pytest
    import pagetax._core
    if os.uname().machine not in ("x86_64", "i686"):
        pytest.skip("the check reads x86 disassembly")
    objdump = shutil.which("objdump")
    if not objdump:
        pytest.skip("objdump (binutils) is not installed")
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", pagetax._core.__file__],
                         capture_output=True, text=True, check=True).stdout
    funcs, name = {}, None
    for line in out.splitlines():
        if line.endswith(">:"):
            name = line.split("<", 1)[1][:-2]
            funcs[name] = []
        elif name:
            funcs[name].append(line)
    return funcs


def design_rows(doc):
    """A run's rows of designs and peers: every row but the drift reference
    (pagetax/reference.py), which has no phases, metadata or persistence."""
    return [r for r in doc["results"] if not r.get("reference")]


def guest_host_or_skip():
    """The host's tools for a `pagetax vm` guest, or a skip that says what is missing."""
    from pagetax.guest.host import check_tools
    from pagetax.guest.namespace import VmError
    try:
        return check_tools()
    except VmError as e:
        pytest.skip(f"no guest on this machine: {e}")

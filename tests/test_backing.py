"""Backings: what pagetax creates it removes; what a user owns it does not write."""
import hashlib
import os

import numpy as np
import pytest

import pagetax

E = pagetax.extents.make


def _shm_leftovers():
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("pagetax")}
    except OSError:
        return set()


def test_scratch_backing_leaves_no_file():
    before = _shm_leftovers()
    with pagetax.Backing.scratch(1 << 20) as b:
        assert b.created and b.writable and b.kind in ("tmpfs", "memfd")
        assert _shm_leftovers() == before  # unlinked as soon as it was open
        b.view()[:] = 1
    assert _shm_leftovers() == before


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "precious.dat"
    data = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8)
    path.write_bytes(data.tobytes())
    return path, data


def test_existing_file_is_only_read(user_file):
    path, data = user_file
    st = os.stat(path)
    digest = _digest(path)
    with pagetax.Backing.from_path(path, 1 << 20) as b:
        assert not b.writable and not b.created
        buf = pagetax.aligned_buffer(8192)
        ext = E([4000, 100000], [4096, 4096])
        assert pagetax.gather(b, "page", ext, buf) == 8192
        np.testing.assert_array_equal(buf, np.concatenate([data[4000:8096], data[100000:104096]]))
        with pytest.raises(pagetax.PagetaxError, match="is mapped read-only .* pass overwrite=True"):
            pagetax.scatter(b, "vec", ext, buf)
    assert _digest(path) == digest
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_size == st.st_size


def test_existing_file_written_only_with_overwrite(user_file):
    path, data = user_file
    with pagetax.Backing.from_path(path, 1 << 20, overwrite=True) as b:
        assert b.writable
        pagetax.scatter(b, "vec", E([0], [16]), np.full(16, 9, np.uint8))
    assert path.read_bytes()[:16] == bytes([9] * 16)
    assert path.read_bytes()[16:] == data[16:].tobytes()


def test_existing_file_too_small_is_not_grown(user_file):
    path, _ = user_file
    with pytest.raises(pagetax.BackingError, match=r"holds 1048576 bytes, fewer than the 2097152 needed; "
                       "pagetax does not grow an existing file without --overwrite"):
        pagetax.Backing.from_path(path, 2 << 20)
    assert os.path.getsize(path) == 1 << 20


def test_new_path_is_created_and_removed(tmp_path):
    path = tmp_path / "scratch.dat"
    with pagetax.Backing.from_path(path, 1 << 20) as b:
        assert b.created and b.writable
        assert not path.exists()  # unlinked at once: no exit path can leave it
        pagetax.scatter(b, "page", E([4090], [12]), np.arange(12, dtype=np.uint8))
    assert not path.exists()


def test_bad_paths(tmp_path):
    with pytest.raises(pagetax.BackingError, match="is a directory; give a file path"):
        pagetax.Backing.from_path(tmp_path, 1 << 20)
    with pytest.raises(pagetax.BackingError, match="parent directory .*/missing does not exist"):
        pagetax.Backing.from_path(tmp_path / "missing" / "x", 1 << 20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(pagetax.BackingError, match="is not a regular file"):
        pagetax.Backing.from_path(fifo, 1 << 20)
    with pytest.raises(pagetax.BackingError, match="is not a regular file"):
        pagetax.Backing.from_path("/dev/null", 1 << 20)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_directory(tmp_path):
    d = tmp_path / "ro"
    d.mkdir(mode=0o500)
    with pytest.raises(pagetax.BackingError, match="cannot create: Permission denied"):
        pagetax.Backing.from_path(d / "x", 1 << 20)


def test_size_must_be_whole_pages():
    with pytest.raises(pagetax.BackingError, match="backing size 5000 is not a positive multiple of 4096"):
        pagetax.Backing.scratch(5000)


def test_too_large_for_tmpfs_fails_cleanly():
    """posix_fallocate refuses: an error now, not a SIGBUS at the first copy."""
    before = _shm_leftovers()
    with pytest.raises(pagetax.BackingError, match="posix_fallocate of .* bytes failed: No space left on device"):
        pagetax.Backing.scratch(1 << 50)
    assert _shm_leftovers() == before

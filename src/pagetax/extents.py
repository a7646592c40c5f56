"""Extents: the segments of a request, as a numpy structured array.

Each extent is a byte range (``off``, ``len``) of the backing's data area.
The buffer side is packed: segment i lands right after segment i-1, as an
iov_iter walks a user buffer.  The layout matches ``struct pt_extent``.
"""
import numpy as np

from .errors import ExtentError

EXTENT_DTYPE = np.dtype([("off", "<u8"), ("len", "<u8")])
MAX_SEG_LEN = 0xFFFFFFFF  # bio_vec keeps lengths in 32 bits
MAX_EXTENTS = 1 << 32     # csrc/pagetax.h PT_MAX_EXTENTS: every count fits in 64 bits
PATTERNS = ("seq", "rand", "hot")
_PATTERN_ID = {p: i for i, p in enumerate(PATTERNS)}
HOT_PAGES = 64  # the hot pattern's default set: small enough for every thread to share


def _as_u64(values, name):
    a = np.asarray(values)
    if a.dtype.kind not in "iu" and a.size:
        # Python ints past int64 arrive as float64 or object; keep them exact.
        items = np.asarray(values, dtype=object).ravel().tolist()
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
            raise ExtentError(f"{name}s must be integers (got {a.dtype})")
        for i, v in enumerate(items):
            if v < 0 or v >= 1 << 64:
                raise ExtentError(f"extent {i}: {name} {v} is "
                                  f"{'negative' if v < 0 else 'beyond 64 bits'}")
        return np.array(items, dtype=np.uint64).reshape(a.shape)
    if a.size and a.dtype.kind == "i" and a.min() < 0:
        i = int(np.argmax(a.ravel() < 0))
        raise ExtentError(f"extent {i}: {name} {int(a.ravel()[i])} is negative")
    return a


def make(offsets, lengths):
    """Build an extent array from offsets and lengths (any integer sequences)."""
    off = _as_u64(offsets, "offset")
    length = _as_u64(lengths, "length")
    if off.shape != length.shape or off.ndim != 1:
        raise ExtentError(f"offsets and lengths must be 1-D and of one length "
                          f"(got shapes {off.shape} and {length.shape})")
    ext = np.empty(off.shape[0], EXTENT_DTYPE)
    ext["off"] = off
    ext["len"] = length
    return ext


def generate(pattern, seg_bytes, total_bytes, space_bytes, seed=1, *, hot_bytes=None,
             thread=0):
    """The workload: total_bytes in segments of seg_bytes over space_bytes.

    ``seq`` walks from offset 0; ``rand`` picks distinct seg-aligned slots
    in random order (no slot twice, as fio's random map).  ``hot`` draws
    seg-aligned slots, with repeats, from the first hot_bytes of the data
    area (HOT_PAGES pages by default): every thread reads the same few pages,
    so designs that count references on them contend.  The stream depends
    only on (seed, pattern, seg_bytes, thread), so adding a segment size to
    a run does not change the others' extents.
    """
    if pattern not in _PATTERN_ID:
        raise ExtentError(f"unknown pattern {pattern!r} (choose from {', '.join(PATTERNS)})")
    if seg_bytes <= 0:
        raise ExtentError(f"segment size {seg_bytes} must be positive")
    if seg_bytes > MAX_SEG_LEN:
        raise ExtentError(f"segment size {seg_bytes} is over the 32-bit segment limit")
    if total_bytes < seg_bytes:
        raise ExtentError(f"segment size {seg_bytes} is larger than the I/O size {total_bytes}")
    if total_bytes % seg_bytes:
        raise ExtentError(f"I/O size {total_bytes} is not a multiple of the segment size {seg_bytes}")
    if total_bytes > space_bytes:
        raise ExtentError(f"I/O size {total_bytes} is larger than the backing ({space_bytes} bytes)")
    n = total_bytes // seg_bytes
    if pattern == "seq":
        slots = np.arange(n, dtype=np.uint64)
    elif pattern == "rand":
        rng = np.random.default_rng([seed, _PATTERN_ID[pattern], seg_bytes])
        slots = rng.choice(space_bytes // seg_bytes, size=n, replace=False).astype(np.uint64)
    else:
        hot_bytes = HOT_PAGES * 4096 if hot_bytes is None else hot_bytes
        if hot_bytes > space_bytes:
            raise ExtentError(f"the hot set of {hot_bytes} bytes is larger than the backing "
                              f"({space_bytes} bytes)")
        if seg_bytes > hot_bytes:
            raise ExtentError(f"segment size {seg_bytes} is larger than the hot set of "
                              f"{hot_bytes} bytes")
        rng = np.random.default_rng([seed, _PATTERN_ID[pattern], seg_bytes, thread])
        slots = rng.integers(0, hot_bytes // seg_bytes, size=n, dtype=np.uint64)
    ext = np.empty(n, EXTENT_DTYPE)
    ext["off"] = slots * np.uint64(seg_bytes)
    ext["len"] = seg_bytes
    return ext


def per_thread(pattern, seg_bytes, io_bytes, space_bytes, threads=1, seed=1, *, hot_bytes=None):
    """One extent array of io_bytes per thread.  ``seq`` and ``rand`` are the
    single-thread stream of threads * io_bytes dealt out in order, so each
    thread has its own slots (seq: its own contiguous part of the backing)
    and one thread's workload is exactly generate()'s.  ``hot`` gives every
    thread its own stream over the same hot set."""
    if threads < 1:
        raise ExtentError(f"threads must be at least 1 (got {threads})")
    if pattern == "hot":
        return [generate(pattern, seg_bytes, io_bytes, space_bytes, seed, hot_bytes=hot_bytes,
                         thread=t) for t in range(threads)]
    if threads * io_bytes > space_bytes:
        raise ExtentError(f"{threads} threads x {io_bytes} bytes is more than the backing's "
                          f"{space_bytes} bytes; each thread needs its own extents")
    whole = generate(pattern, seg_bytes, threads * io_bytes, space_bytes, seed)
    return [np.ascontiguousarray(part) for part in np.split(whole, threads)]


def check_array(ext):
    """The shape checks that need no pass over the data."""
    if not isinstance(ext, np.ndarray):
        raise ExtentError(f"extents must be a numpy array of pagetax.EXTENT_DTYPE, "
                          f"not {type(ext).__name__}")
    if ext.dtype != EXTENT_DTYPE:
        raise ExtentError(f"extents must have dtype {EXTENT_DTYPE} "
                          f"(use pagetax.extents.make); got {ext.dtype}")
    if ext.ndim != 1:
        raise ExtentError(f"extents must be 1-D; got shape {ext.shape}")
    if not ext.flags.c_contiguous:
        raise ExtentError("extents must be C-contiguous (use np.ascontiguousarray)")
    if ext.shape[0] == 0:
        raise ExtentError("no extents")
    if ext.shape[0] > MAX_EXTENTS:
        raise ExtentError(f"{ext.shape[0]} extents are over the limit of {MAX_EXTENTS} (2^32)")


def check_segments(ext):
    """What every extent must be wherever it points: a length from 1 to
    2^32 - 1, and an end that fits in 64 bits."""
    off, length = ext["off"], ext["len"]
    zero = length == 0
    if zero.any():
        i = int(np.argmax(zero))
        raise ExtentError(f"extent {i}: length must be positive (got 0)")
    big = length > MAX_SEG_LEN
    if big.any():
        i = int(np.argmax(big))
        raise ExtentError(f"extent {i}: length {int(length[i])} is over the "
                          f"32-bit segment limit of {MAX_SEG_LEN}")
    wraps = off > np.uint64(2**64 - 1) - length
    if wraps.any():
        i = int(np.argmax(wraps))
        raise ExtentError(f"extent {i} [off={int(off[i])}, len={int(length[i])}] ends past 2^64")


def check_buffer(buf, writable):
    if not isinstance(buf, np.ndarray):
        raise ExtentError(f"buffer must be a numpy uint8 array, not {type(buf).__name__}")
    if buf.dtype != np.uint8:
        raise ExtentError(f"buffer must have dtype uint8; got {buf.dtype}")
    if buf.ndim != 1:
        raise ExtentError(f"buffer must be 1-D; got shape {buf.shape}")
    if not buf.flags.c_contiguous:
        raise ExtentError("buffer must be C-contiguous (use np.ascontiguousarray)")
    if writable and not buf.flags.writeable:
        raise ExtentError("buffer is read-only, but a gather writes into it")


def check(ext, data_bytes, buf_bytes, op="read"):
    """Every check the C core makes, with messages that name the extent."""
    check_array(ext)
    check_segments(ext)
    off, length = ext["off"], ext["len"]
    data = np.uint64(data_bytes)
    out = (off > data) | (length > data - np.minimum(off, data))
    if out.any():
        i = int(np.argmax(out))
        raise ExtentError(f"extent {i} [off={int(off[i])}, len={int(length[i])}] ends at "
                          f"{int(off[i]) + int(length[i])}, beyond the backing's data area "
                          f"of {data_bytes} bytes")
    total = int(length.sum(dtype=np.uint64))
    if total > buf_bytes:
        raise ExtentError(f"buffer holds {buf_bytes} bytes but the extents need {total}")
    if total > data_bytes:  # the memcpy roofline copies as many bytes from offset 0
        raise ExtentError(f"extents total {total} bytes, more than the data area of {data_bytes}")
    if op == "write":
        order = np.argsort(off, kind="stable")
        s_off, s_end = off[order], off[order] + length[order]
        clash = s_end[:-1] > s_off[1:]
        if clash.any():
            k = int(np.argmax(clash))
            raise ExtentError(f"extents {int(order[k])} and {int(order[k + 1])} overlap; "
                              "a scatter through overlapping extents has no single result")
    return total


def union_bytes(ext, granule):
    """Bytes of distinct granule-sized blocks (cache lines, pages) the extents touch."""
    g = np.uint64(granule)
    start = ext["off"] // g
    end = (ext["off"] + ext["len"] + g - np.uint64(1)) // g
    order = np.argsort(start, kind="stable")
    start, end = start[order].astype(np.int64), end[order].astype(np.int64)
    reach = np.maximum.accumulate(end)
    prev = np.concatenate(([np.int64(0)], reach[:-1]))
    blocks = np.maximum(end - np.maximum(start, prev), 0).sum()
    return int(blocks) * granule

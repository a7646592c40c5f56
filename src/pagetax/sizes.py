"""Byte sizes as people write them.

``K``/``M``/``G``/``T`` and ``KiB``/``MiB``/``GiB``/``TiB`` are powers of 2;
``KB``/``MB``/``GB``/``TB`` are powers of 10 (so GB = 10^9, as in every
throughput figure pagetax prints).
"""
import re

_UNITS = {
    "": 1, "B": 1,
    "K": 1 << 10, "KIB": 1 << 10, "KB": 10 ** 3,
    "M": 1 << 20, "MIB": 1 << 20, "MB": 10 ** 6,
    "G": 1 << 30, "GIB": 1 << 30, "GB": 10 ** 9,
    "T": 1 << 40, "TIB": 1 << 40, "TB": 10 ** 12,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
MAX_BYTES = (1 << 64) - 1


_BINARY = {"KB": "K", "MB": "M", "GB": "G", "TB": "T"}


def parse_size(text, what="size", decimal=True):
    """Parse '4K', '2MiB', '400GB' or '4096' into bytes; raise ValueError.
    With decimal=False, KB..TB (powers of 10) are refused with a hint: a
    size that lives on page boundaries is a trap in them (4KB is 4000)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        if str(text).strip().startswith("-"):
            raise ValueError(f"{what} {text!r} must be positive")
        m = _SIZE.match(str(text))
        if not m:
            raise ValueError(f"{what} {text!r} is not a size (examples: 4096, 4K, 2MiB, 400GB)")
        unit = m.group(2).upper()
        if unit not in _UNITS:
            raise ValueError(f"{what} {text!r} has an unknown unit {m.group(2)!r} "
                             "(use K, M, G, T, KiB..TiB or KB..TB)")
        number = m.group(1)
        if not decimal and unit in _BINARY:
            raise ValueError(
                f"{what} {text!r}: {m.group(2)} is a power of 10 ({number}{m.group(2)} = "
                f"{int(float(number) * _UNITS[unit]):,} bytes), and these sizes live on page "
                f"boundaries: write {number}{_BINARY[unit]} or {number}{_BINARY[unit]}iB for "
                f"powers of 2, or the bytes if you mean them")
        if "." in number:
            whole, frac = number.split(".")
            scaled = int(whole + frac) * _UNITS[unit]
            den = 10 ** len(frac)
            if scaled % den:
                raise ValueError(f"{what} {text!r} is not a whole number of bytes")
            value = scaled // den
        else:
            value = int(number) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"{what} {text!r} must be positive")
    if value > MAX_BYTES:
        raise ValueError(f"{what} {text!r} does not fit in 64 bits")
    return value


def format_size(n):
    """Shortest exact binary spelling: 4096 -> '4K', 65536 -> '64K', 100 -> '100'."""
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)

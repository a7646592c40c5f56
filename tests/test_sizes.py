import pytest

from pagetax.sizes import format_size, parse_size


@pytest.mark.parametrize("text, value", [
    ("4096", 4096), ("64", 64), ("4K", 4096), ("4k", 4096), ("4KiB", 4096), ("4KB", 4000),
    ("2M", 2 << 20), ("2MiB", 2 << 20), ("2MB", 2_000_000), ("1G", 1 << 30),
    ("400GB", 400 * 10**9), ("1T", 1 << 40), ("1TiB", 1 << 40), ("1TB", 10**12),
    ("1.5GB", 1_500_000_000), ("0.5K", 512), (" 64 K ", 65536), ("16TiB", 16 << 40),
])
def test_parse(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text, message", [
    ("0", "must be positive"), ("-5G", "must be positive"), ("-1", "must be positive"), ("12XB", "unknown unit 'XB'"),
    ("", "is not a size"), ("abc", "is not a size"), ("1.3", "not a whole number of bytes"),
    ("18446744073709551616", "does not fit in 64 bits"), ("16777216T", "does not fit in 64 bits"),
])
def test_refuse(text, message):
    with pytest.raises(ValueError, match=message):
        parse_size(text)


def test_format():
    assert [format_size(n) for n in (64, 4096, 65536, 2 << 20, 1 << 30, 100)] == \
        ["64", "4K", "64K", "2M", "1G", "100"]

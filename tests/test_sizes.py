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


@pytest.mark.parametrize("text, bytes_, binary", [("4KB", "4,000", "4K"), ("1gb", "1,000,000,000", "1G"),
                                                   ("64MB", "64,000,000", "64M")])
def test_decimal_units_refused_where_sizes_live_on_pages(text, bytes_, binary):
    with pytest.raises(ValueError) as e:
        parse_size(text, "--size", decimal=False)
    assert str(e.value) == (f"--size {text!r}: {text.lstrip('0123456789')} is a power of 10 "
                            f"({text} = {bytes_} bytes), and these sizes live on page "
                            f"boundaries: write {binary} or {binary}iB for powers of 2, or the "
                            "bytes if you mean them")
    assert parse_size(text.upper().replace("B", "IB"), "--size", decimal=False) > 0


@pytest.mark.parametrize("argv", [
    ["run", "--size", "1GB"], ["run", "--io-size", "4MB"], ["run", "--seg-sizes", "64,4KB"],
    ["vm", "run", "--capacity", "1GB"], ["vm", "test", "--memory", "2GB"],
])
def test_every_page_bound_size_option_refuses_decimal_units(argv, tmp_path):
    from helpers import cli
    p = cli(*argv, cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "is a power of 10" in p.stderr and "live on page boundaries" in p.stderr


def test_a_capacity_may_be_decimal(tmp_path):
    from helpers import cli
    p = cli("metadata", "--capacity", "400GB", cwd=tmp_path)
    assert p.returncode == 0 and "6,250,000,000" in p.stdout

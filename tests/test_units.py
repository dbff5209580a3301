import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migtune.errors import InputError
from migtune.units import (
    GiB,
    MiB,
    bytes_per_s_to_mbps,
    format_bytes,
    format_duration,
    format_rate,
    mbps_to_bytes_per_s,
    parse_duration,
    parse_pve_bytes,
    parse_rate,
    parse_size,
    pve_rounding,
)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("4GiB", 4 * GiB),
        ("512M", 512 * MiB),
        ("64 MiB", 64 * MiB),
        ("1073741824", 1073741824),
        ("1.5GiB", int(1.5 * GiB)),
        ("2GB", 2_000_000_000),
        ("4k", 4096),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("32MiB/s", 32 * MiB),
        ("32MiB", 32 * MiB),
        ("125MB/s", 125e6),
        ("1Gbit/s", 125e6),
        ("10Gbps", 1.25e9),
        ("800mbps", 1e8),
        ("0", 0.0),
    ],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text,expected", [("300ms", 0.3), ("2s", 2.0), ("1.5", 1.5), ("5min", 300.0), ("1h", 3600.0)]
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "fast", "12 parsecs", "MiB", "1..2GiB"])
def test_bad_units_raise_input_error(bad):
    for parser in (parse_size, parse_rate, parse_duration):
        with pytest.raises(InputError):
            parser(bad)


def test_qemu_mbps_is_decimal_megabits():
    # QEMU's mbps: 10**6 bits per second. 32 MiB/s is about 268 mbps.
    assert mbps_to_bytes_per_s(1) == 125_000
    assert bytes_per_s_to_mbps(32 * MiB) == pytest.approx(268.435456)


def test_proxmox_render_bytes():
    assert parse_pve_bytes("34.5 MiB") == round(34.5 * MiB)
    assert parse_pve_bytes("40.6 GiB") == round(40.6 * GiB)
    assert parse_pve_bytes("0.0 B") == 0
    assert pve_rounding("1.1 GiB") == int(0.05 * GiB)
    assert format_bytes(4 * GiB) == "4.0 GiB"
    assert format_bytes(1023) == "1023.0 B"
    assert format_rate(457 * MiB) == "457.0 MiB/s"


def test_format_duration():
    assert format_duration(0.073) == "73 ms"
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(245) == "4 min 05 s"
    assert format_duration(7380) == "2 h 03 min"


@given(st.integers(min_value=0, max_value=2**60))
def test_format_then_parse_bytes_within_rounding(n):
    text = format_bytes(n)
    back = parse_pve_bytes(text)
    assert math.isclose(back, n, rel_tol=0.05, abs_tol=0.06 * 1024)

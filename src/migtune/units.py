"""Units: parse what operators type and what logs print; format for humans.

Internally migtune stores bytes, seconds and bytes per second.  These helpers
are the only place where other units appear.

Conventions (they differ between tools, which is why they live here):

* Proxmox ``render_bytes`` prints binary units (KiB, MiB, GiB) with one decimal.
* QEMU's ``mbps`` is **decimal megabits per second** (10**6 bit/s), so
  ``1 mbps = 125_000 B/s``.
* QEMU HMP prints "kbytes", which are KiB (``value >> 10``).
* virsh ``domjobinfo`` prints binary units with three decimals.
* Operators type ``300ms``, ``2s``, ``32MiB/s``, ``1Gbit/s``, ``4GiB``.  A bare
  ``MB``/``GB`` is taken as decimal (SI); ``M``/``G`` alone as binary, as QEMU's
  own size parser does.
"""

from __future__ import annotations

import math
import re

from migtune.errors import InputError

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

_BYTE_UNITS: dict[str, float] = {
    "": 1,
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "k": KiB,
    "kib": KiB,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": TiB,
    "tib": TiB,
    "tb": 1000**4,
    "p": 1024**5,
    "pib": 1024**5,
    "pb": 1000**5,
    "e": 1024**6,
    "eib": 1024**6,
}

# Bit-based rates: value in bits per second.
_BIT_UNITS: dict[str, float] = {
    "bit": 1,
    "bps": 1,
    "kbit": 1e3,
    "kbps": 1e3,
    "mbit": 1e6,
    "mbps": 1e6,
    "gbit": 1e9,
    "gbps": 1e9,
    "tbit": 1e12,
    "tbps": 1e12,
}

# Each character can be matched one way only (no "[0-9]*\.?[0-9]+"), so a hostile
# string such as "1" * 20000 + "!" fails in linear time instead of backtracking.
_VALUE_UNIT_RE = re.compile(
    r"\s*((?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?:\s*([A-Za-z/]+))?\s*"
)
# Longer than any real size, rate or duration: refused before float() sees it.
_MAX_NUMBER_CHARS = 40


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def _split(text: str, what: str) -> tuple[float, str]:
    m = _VALUE_UNIT_RE.fullmatch(text)
    if not m:
        raise InputError(f"cannot read {what} {_shown(text)}")
    if len(m.group(1)) > _MAX_NUMBER_CHARS:
        raise InputError(f"{what} {_shown(text)} is out of range")
    return float(m.group(1)), m.group(2) or ""


def _finite(value: float, what: str, text: object) -> float:
    """``value`` if it is a finite number, else InputError (NaN, inf, 1e400, ...)."""
    if isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"{what} {_shown(str(text))} is out of range")
    return value


def parse_size(text: str | int | float) -> int:
    """Parse a size such as ``4GiB``, ``512M``, ``64 MiB`` or ``1073741824`` into bytes."""
    if isinstance(text, (int, float)):
        return int(_finite(text, "size", text))
    value, unit = _split(text, "size")
    factor = _BYTE_UNITS.get(unit.lower())
    if factor is None:
        raise InputError(
            f"unknown size unit {unit!r} in {_shown(text)} (use B, KiB, MiB, GiB, TiB)"
        )
    return int(round(_finite(value * factor, "size", text)))


def parse_rate(text: str | int | float) -> float:
    """Parse a rate into bytes/second.

    Accepts ``32MiB/s``, ``125MB/s``, ``1Gbit/s``, ``10Gbps``, ``800mbps`` (bits) and
    bare numbers (bytes/s).  ``/s`` is optional for byte units.
    """
    if isinstance(text, (int, float)):
        return _finite(float(text), "rate", text)
    value, unit = _split(text, "rate")
    u = unit.lower().removesuffix("/s")
    if u in _BIT_UNITS:
        return _finite(value * _BIT_UNITS[u] / 8, "rate", text)
    factor = _BYTE_UNITS.get(u)
    if factor is None:
        raise InputError(
            f"unknown rate unit {unit!r} in {_shown(text)} (use e.g. 32MiB/s, 125MB/s, 1Gbit/s)"
        )
    return _finite(value * factor, "rate", text)


_DURATION_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
}


def parse_duration(text: str | int | float) -> float:
    """Parse ``300ms``, ``2s``, ``1.5``, ``5min``, ``1h`` into seconds (bare numbers are seconds)."""
    if isinstance(text, (int, float)):
        return _finite(float(text), "duration", text)
    value, unit = _split(text, "duration")
    factor = _DURATION_UNITS.get(unit.lower())
    if factor is None:
        raise InputError(f"unknown duration unit {unit!r} in {_shown(text)} (use ms, s, min, h)")
    return _finite(value * factor, "duration", text)


def mbps_to_bytes_per_s(mbps: float) -> float:
    """QEMU ``mbps`` (decimal megabits per second) to bytes per second."""
    return mbps * 1e6 / 8


def bytes_per_s_to_mbps(rate: float) -> float:
    return rate * 8 / 1e6


def _printable(value: float | None) -> bool:
    """A number the formatters can print: not None, NaN, infinite or beyond a float."""
    try:
        return value is not None and math.isfinite(value)
    except OverflowError:
        return False


_BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]


def format_bytes(value: float | None, decimals: int = 1) -> str:
    """Binary units with one decimal, as Proxmox prints them (``1.1 GiB``, ``0.0 B``)."""
    if not _printable(value):  # None, or an estimate divided by ~0
        return "?"
    v = float(value)
    sign = "-" if v < 0 else ""
    v = abs(v)
    unit = 0
    if v > 1023:
        unit = min(int(math.log(v, 1024)), len(_BINARY_UNITS) - 1)
        v = v / 1024**unit
        if round(v, decimals) >= 1024 and unit < len(_BINARY_UNITS) - 1:
            v /= 1024
            unit += 1
    return f"{sign}{v:.{decimals}f} {_BINARY_UNITS[unit]}"


def format_rate(value: float | None, decimals: int = 1) -> str:
    if value is None:
        return "?"
    return format_bytes(value, decimals) + "/s"


def format_bits(value: float | None) -> str:
    """A byte rate as network bits per second (``1.07 Gbit/s``)."""
    if not _printable(value):
        return "?"
    bits = value * 8
    for unit, factor in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= factor:
            return f"{bits / factor:.2f} {unit}"
    return f"{bits:.0f} bit/s"


def format_duration(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if not _printable(seconds):
        return "?"
    s = float(seconds)
    if s < 0:
        return "-" + format_duration(-s)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, sec = divmod(int(round(s)), 60)
        return f"{m} min {sec:02d} s"
    h, rest = divmod(int(round(s)), 3600)
    return f"{h} h {rest // 60:02d} min"


# Proxmox ``render_bytes`` output, e.g. "40.6 GiB" or "0.0 B".
_PVE_BYTES_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB|TiB|PiB|EiB)\s*$")
_PVE_FACTORS = {
    "B": 1,
    "KiB": KiB,
    "MiB": MiB,
    "GiB": GiB,
    "TiB": TiB,
    "PiB": 1024**5,
    "EiB": 1024**6,
}


def parse_pve_bytes(text: str) -> int:
    """Parse a Proxmox ``render_bytes`` value such as ``40.6 GiB`` (±0.05 unit of rounding)."""
    m = _PVE_BYTES_RE.match(text)
    if not m:
        raise InputError(f"cannot read size {text!r}")
    return int(round(float(m.group(1)) * _PVE_FACTORS[m.group(2)]))


def pve_rounding(text: str) -> int:
    """The rounding uncertainty of a Proxmox size string: half of its last printed digit."""
    m = _PVE_BYTES_RE.match(text)
    if not m:
        return 0
    return int(0.05 * _PVE_FACTORS[m.group(2)])

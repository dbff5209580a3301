"""Migration settings as operators give them: flags, ``--set name=value`` and their checks.

One :class:`~migtune.model.Settings` type serves everywhere: what a log says was in
force, what ``migrate`` and ``lab run`` ask QEMU for, and what ``simulate`` models.
Names follow QEMU's ``migrate-set-parameters`` / ``migrate-set-capabilities``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from migtune.errors import InputError
from migtune.model import Settings
from migtune.units import parse_duration, parse_rate, parse_size

# QEMU defaults (docs/qemu-migration.md §11) - what is in force when nobody sets anything.
QEMU_DEFAULT_DOWNTIME_LIMIT = 0.300  # s
QEMU_DEFAULT_MAX_BANDWIDTH = 134217728.0  # B/s (128 MiB/s since QEMU 5.2)
QEMU_OLD_DEFAULT_MAX_BANDWIDTH = 33554432.0  # B/s (32 MiB/s before 5.2)
QEMU_DEFAULT_XBZRLE_CACHE = 64 * 1024**2
QEMU_DEFAULT_MULTIFD_CHANNELS = 2
QEMU_MAX_DOWNTIME_LIMIT = 2000.0  # s
QEMU_MAX_MULTIFD_CHANNELS = 255
INT64_MAX = 2**63 - 1  # QEMU holds sizes and rates in 64-bit integers
PAGE_SIZE = 4096

# The QEMU releases whose migration behaviour migtune models: the one place that says so
# (``simulate --qemu-version`` checks against it and its help prints it).
OLDEST_QEMU = (7, 2)
NEWEST_QEMU = (10, 2)
SUPPORTED_QEMU = f"{OLDEST_QEMU[0]}.{OLDEST_QEMU[1]} … {NEWEST_QEMU[0]}.{NEWEST_QEMU[1]}"

# An XBZRLE cache above this share of the guest's RAM buys little (it only has to hold
# the re-dirtied working set) and costs the source host that much memory again.
XBZRLE_CACHE_WARN_SHARE = 0.5
# A cap so low that one pass over the guest's RAM takes longer than this is a typo
# (MiB/s meant, bytes/s typed) more often than a plan.
SLOW_FIRST_PASS_S = 3600.0


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("1", "on", "yes", "true", "enable", "enabled"):
        return True
    if low in ("0", "off", "no", "false", "disable", "disabled"):
        return False
    raise InputError(f"expected on/off, got {v!r}")


def _pct(v: str) -> int:
    try:
        n = int(v.rstrip("%"))
    except ValueError:
        raise InputError(f"expected a percentage, got {v!r}") from None
    if not 1 <= n <= 100:
        raise InputError(f"percentage {n} out of range 1..100")
    return n


# name -> (Settings field or capability, parser)
_PARAMETERS: dict[str, tuple[str, Any]] = {
    "downtime-limit": ("downtime_limit", parse_duration),
    "max-bandwidth": ("max_bandwidth", parse_rate),
    "avail-switchover-bandwidth": ("avail_switchover_bandwidth", parse_rate),
    "xbzrle-cache-size": ("xbzrle_cache_size", parse_size),
    "multifd-channels": ("multifd_channels", int),
    "cpu-throttle-initial": ("cpu_throttle_initial", _pct),
    "cpu-throttle-increment": ("cpu_throttle_increment", _pct),
    "max-cpu-throttle": ("max_cpu_throttle", _pct),
    "throttle-trigger-threshold": ("throttle_trigger_threshold", _pct),
    "max-postcopy-bandwidth": ("max_postcopy_bandwidth", parse_rate),
}
CAPABILITIES = ("xbzrle", "auto-converge", "postcopy-ram", "multifd", "dirty-limit", "events")
_ALIASES = {
    "downtime": "downtime-limit",
    "bandwidth": "max-bandwidth",
    "speed": "max-bandwidth",
    "cache-size": "xbzrle-cache-size",
    "xbzrle-cache": "xbzrle-cache-size",
    "postcopy": "postcopy-ram",
    "channels": "multifd-channels",
}


# QMP ``migrate-set-parameters`` name -> (Settings field, unit on the wire): "ms" is
# milliseconds (seconds in Settings), "bytes" bytes or bytes/s, "int" a plain count or percent.
QMP_PARAMETERS: dict[str, tuple[str, str]] = {
    "downtime-limit": ("downtime_limit", "ms"),
    "max-bandwidth": ("max_bandwidth", "bytes"),
    "avail-switchover-bandwidth": ("avail_switchover_bandwidth", "bytes"),
    "max-postcopy-bandwidth": ("max_postcopy_bandwidth", "bytes"),
    "xbzrle-cache-size": ("xbzrle_cache_size", "int"),
    "multifd-channels": ("multifd_channels", "int"),
    "cpu-throttle-initial": ("cpu_throttle_initial", "int"),
    "cpu-throttle-increment": ("cpu_throttle_increment", "int"),
    "max-cpu-throttle": ("max_cpu_throttle", "int"),
    "throttle-trigger-threshold": ("throttle_trigger_threshold", "int"),
}


def from_qmp_value(name: str, value: float) -> float | int:
    """A QMP parameter value in migtune's base units (``downtime-limit`` ms -> s)."""
    unit = QMP_PARAMETERS[name][1]
    if unit == "ms":
        return value / 1000.0
    return float(value) if unit == "bytes" else int(value)


def to_qmp_value(name: str, value: float) -> int:
    """A Settings value as QMP wants it (``downtime_limit`` s -> ms)."""
    if QMP_PARAMETERS[name][1] == "ms":
        return int(round(value * 1000))
    return int(value)


def setting_names() -> list[str]:
    return sorted([*_PARAMETERS, *CAPABILITIES])


def apply_assignment(settings: Settings, assignment: str) -> Settings:
    """Apply ``name=value`` (e.g. ``downtime-limit=2s``, ``xbzrle=on``) to a copy of settings."""
    if "=" not in assignment:
        raise InputError(f"--set expects name=value, got {assignment!r}")
    name, value = (part.strip() for part in assignment.split("=", 1))
    name = _ALIASES.get(name.replace("_", "-"), name.replace("_", "-"))
    new = dataclasses.replace(settings, capabilities=dict(settings.capabilities))
    if name in _PARAMETERS:
        field, parser = _PARAMETERS[name]
        try:
            setattr(new, field, parser(value))
        except (ValueError, OverflowError):
            raise InputError(f"{name}: bad value {value!r}") from None
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
    elif name in CAPABILITIES:
        try:
            new.capabilities[name] = _bool(value)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
    else:
        raise InputError(f"unknown setting {name!r} (known: {', '.join(setting_names())})")
    validate(new)
    return new


def validate(s: Settings) -> None:
    """Reject values QEMU itself would reject (QEMU's parameter ranges: downtime-limit
    0..2000 s, multifd-channels 1..255, XBZRLE cache a power of two of at least a page,
    throttle percentages 1..99 with max-cpu-throttle at least cpu-throttle-initial,
    throttle-trigger-threshold 1..100; docs/qemu-migration.md §4.7, §7, §11).  Messages
    start with the setting's QEMU name."""
    for name, value in (
        ("downtime-limit", s.downtime_limit),
        ("max-bandwidth", s.max_bandwidth),
        ("avail-switchover-bandwidth", s.avail_switchover_bandwidth),
        ("max-postcopy-bandwidth", s.max_postcopy_bandwidth),
    ):
        if value is not None and not math.isfinite(value):
            raise InputError(f"{name}: {value} is not a finite number")
        if value is not None and value * (1000 if name == "downtime-limit" else 1) > INT64_MAX:
            raise InputError(f"{name}: {value:g} is beyond what QEMU can hold")
    if s.downtime_limit is not None and not 0 <= s.downtime_limit <= QEMU_MAX_DOWNTIME_LIMIT:
        raise InputError("downtime-limit: must be between 0 and 2000 s (QEMU's maximum)")
    for name, value in (
        ("max-bandwidth", s.max_bandwidth),
        ("avail-switchover-bandwidth", s.avail_switchover_bandwidth),
        ("max-postcopy-bandwidth", s.max_postcopy_bandwidth),
    ):
        if value is not None and value < 0:
            raise InputError(f"{name}: cannot be negative")
        if value is not None and 0 < value < 1:
            # QEMU takes whole bytes per second: this would be 0, i.e. unlimited.
            raise InputError(f"{name}: {value:g} B/s is less than 1 byte/s (0 means unlimited)")
    if s.xbzrle_cache_size is not None:
        n = s.xbzrle_cache_size
        if n > INT64_MAX:
            raise InputError(f"xbzrle-cache-size: {n} bytes is beyond what QEMU can hold")
        if n < PAGE_SIZE or n & (n - 1):
            raise InputError(
                f"xbzrle-cache-size: must be a power of two of at least 4 KiB (got {n} bytes)"
            )
    if s.multifd_channels is not None and not 1 <= s.multifd_channels <= QEMU_MAX_MULTIFD_CHANNELS:
        raise InputError(f"multifd-channels: {s.multifd_channels} is outside QEMU's range 1..255")
    for name, pct in (
        ("cpu-throttle-initial", s.cpu_throttle_initial),
        ("cpu-throttle-increment", s.cpu_throttle_increment),
        ("max-cpu-throttle", s.max_cpu_throttle),
    ):
        if pct is not None and not 1 <= pct <= 99:
            raise InputError(f"{name}: {pct}% is outside QEMU's range 1..99")
    if s.throttle_trigger_threshold is not None and not 1 <= s.throttle_trigger_threshold <= 100:
        raise InputError(
            f"throttle-trigger-threshold: {s.throttle_trigger_threshold}% is outside "
            "QEMU's range 1..100"
        )
    if (
        s.cpu_throttle_initial is not None
        and s.max_cpu_throttle is not None
        and s.max_cpu_throttle < s.cpu_throttle_initial
    ):
        raise InputError(
            f"max-cpu-throttle: {s.max_cpu_throttle}% is below cpu-throttle-initial "
            f"{s.cpu_throttle_initial}% (QEMU refuses that)"
        )


def check_qemu_version(text: str) -> str:
    """``text`` if it names a QEMU release migtune models (``7.2``, ``10.0.2``), else InputError."""
    import re

    m = re.fullmatch(r"\s*(\d{1,3})\.(\d{1,3})(?:\.\d{1,3})?\s*", str(text))
    if not m:
        raise InputError(f"cannot read QEMU version {text!r} (expected e.g. 7.2 or 10.0)")
    version = (int(m.group(1)), int(m.group(2)))
    if not OLDEST_QEMU <= version <= NEWEST_QEMU:
        raise InputError(f"QEMU {text.strip()} is outside the supported range {SUPPORTED_QEMU}")
    return text.strip()


def check_for_guest(
    s: Settings, ram_bytes: int | None, *, time_limit: float | None = None
) -> list[str]:
    """Refuse settings that make no sense for this guest; return warnings, one line each.

    ``migrate``, ``lab run`` and ``simulate`` call this before starting anything.  It
    goes beyond :func:`validate` (what QEMU itself refuses): QEMU accepts an XBZRLE
    cache as large as the guest, or a downtime limit of 0, and the migration then
    crawls or never ends.  ``ram_bytes`` is the guest's RAM (``None``: not known, the
    RAM checks are skipped); ``time_limit`` the seconds the caller allows.
    """
    validate(s)
    warnings: list[str] = []
    if time_limit is not None and not time_limit > 0:
        raise InputError(
            "time limit: must be more than 0 s (the migration would be cancelled at once)"
        )
    if s.downtime_limit is not None and round(s.downtime_limit * 1000) == 0:
        rounded = "" if s.downtime_limit == 0 else " (QEMU counts whole milliseconds)"
        raise InputError(
            f"downtime-limit: 0 lets QEMU switch over only with nothing left to send{rounded}, "
            "which a running guest never reaches: give the pause you can accept (QEMU's "
            "default 300ms)"
        )
    cache, whose = s.xbzrle_cache_size, "a"
    xbzrle_on = s.capabilities.get("xbzrle") is not False
    if cache is None and s.capabilities.get("xbzrle"):
        # XBZRLE on without a size: QEMU's default cache, which a tiny guest may not exceed.
        cache, whose = QEMU_DEFAULT_XBZRLE_CACHE, "QEMU's default"
    if cache is not None and ram_bytes and xbzrle_on:
        from migtune.units import format_bytes

        suggest = 1 << max(12, (max(ram_bytes // 4, PAGE_SIZE)).bit_length() - 1)
        if cache >= ram_bytes:
            raise InputError(
                f"xbzrle-cache-size: {whose} {format_bytes(cache)} cache is not smaller than the "
                f"guest's {format_bytes(ram_bytes)} of RAM: the source would hold a second copy "
                f"of the guest and the migration crawls; use at most {format_bytes(suggest)}"
            )
        if cache > ram_bytes * XBZRLE_CACHE_WARN_SHARE:
            warnings.append(
                f"xbzrle-cache-size {format_bytes(cache)} is more than half the guest's "
                f"{format_bytes(ram_bytes)}: the source host needs that much memory again; "
                f"{format_bytes(suggest)} holds any working set that can still converge"
            )
    bw = s.max_bandwidth
    if bw and ram_bytes and ram_bytes / bw > SLOW_FIRST_PASS_S:
        from migtune.units import format_duration, format_rate

        first = ram_bytes / bw
        warnings.append(
            f"max-bandwidth {format_rate(bw)} needs {format_duration(first)} for one pass "
            "over the guest's RAM"
            + (" (longer than the time limit)" if time_limit and first > time_limit else "")
        )
    elif bw and ram_bytes and time_limit and ram_bytes / bw > time_limit:
        from migtune.units import format_duration, format_rate

        warnings.append(
            f"max-bandwidth {format_rate(bw)} cannot send the guest's RAM once within the "
            f"{format_duration(time_limit)} time limit"
        )
    if (
        s.cpu_throttle_initial is None
        and s.max_cpu_throttle is not None
        and s.max_cpu_throttle < 20
    ):
        raise InputError(
            f"max-cpu-throttle: {s.max_cpu_throttle}% is below QEMU's default "
            "cpu-throttle-initial of 20% (QEMU refuses that); set --cpu-throttle-initial too"
        )
    return warnings


def effective(s: Settings) -> Settings:
    """Settings with QEMU's defaults filled in where nothing was set."""
    new = dataclasses.replace(s, capabilities=dict(s.capabilities))
    if new.downtime_limit is None:
        new.downtime_limit = QEMU_DEFAULT_DOWNTIME_LIMIT
    if new.max_bandwidth is None:
        new.max_bandwidth = QEMU_DEFAULT_MAX_BANDWIDTH
    if new.xbzrle_cache_size is None:
        new.xbzrle_cache_size = QEMU_DEFAULT_XBZRLE_CACHE
    if new.multifd_channels is None:
        new.multifd_channels = QEMU_DEFAULT_MULTIFD_CHANNELS
    new.cpu_throttle_initial = new.cpu_throttle_initial or 20
    new.cpu_throttle_increment = new.cpu_throttle_increment or 10
    new.max_cpu_throttle = new.max_cpu_throttle or 99
    new.throttle_trigger_threshold = new.throttle_trigger_threshold or 50
    if new.avail_switchover_bandwidth is None:
        new.avail_switchover_bandwidth = 0.0
    if new.max_postcopy_bandwidth is None:
        new.max_postcopy_bandwidth = 0.0
    return new


def describe(s: Settings) -> str:
    """A short label such as ``downtime 300 ms, 32.0 MiB/s, xbzrle 64.0 MiB, auto-converge``."""
    from migtune.units import format_bytes, format_duration, format_rate

    parts = []
    if s.downtime_limit is not None:
        parts.append(f"downtime {format_duration(s.downtime_limit)}")
    if s.max_bandwidth is not None:
        # 0 and INT64_MAX-like values (libvirt's "unlimited") both mean no cap.
        unlimited = s.max_bandwidth == 0 or s.max_bandwidth >= 2**60
        parts.append("unlimited" if unlimited else format_rate(s.max_bandwidth))
    caps = s.capabilities
    if caps.get("xbzrle"):
        size = s.xbzrle_cache_size
        parts.append("xbzrle" + (f" {format_bytes(size)}" if size else ""))
    if caps.get("auto-converge"):
        parts.append("auto-converge")
    if caps.get("postcopy-ram"):
        parts.append("post-copy")
    if caps.get("multifd"):
        parts.append(f"multifd x{s.multifd_channels or QEMU_DEFAULT_MULTIFD_CHANNELS}")
    return ", ".join(parts) or "QEMU defaults"

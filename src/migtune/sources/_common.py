"""Helpers shared by the QMP, HMP, libvirt and nova parsers (private to ``sources``)."""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from typing import Any

from migtune.model import Event, Run, Sample

# More warnings than this only repeat themselves; keep the report readable.
MAX_WARNINGS = 50

# QEMU MigrationStatus values that mean "still migrating" for run.status.
_ACTIVE = {
    "setup",
    "active",
    "device",
    "pre-switchover",
    "wait-unplug",
    "colo",
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover",
    "postcopy-recover-setup",
    "postcopy-device",
}

_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")

# ISO-like wall-clock stamps: 2026-01-05 10:00:00.123, 2026-01-05T10:00:00Z, ...
ISO_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)(Z|[+-]\d{2}:?\d{2})?(?=\b|\s|$)"
)


def run_status(qemu_status: str | None) -> str:
    """Map a QEMU (or libvirt/nova) status word to one of model.STATUSES."""
    if not qemu_status:
        return "unknown"
    s = qemu_status.strip().lower()
    if s == "completed":
        return "completed"
    if s == "failed":
        return "failed"
    if s in ("cancelled", "cancelling"):
        return "cancelled"
    if s in _ACTIVE:
        return "active"
    return "unknown"


# QEMU's counters are uint64 (20 digits).  Longer digit strings are garbage, and
# converting them is slow (quadratic in CPython) or refused (> 4300 digits).
MAX_INT_DIGITS = 24


def bounded_int(token: str) -> int | None:
    """``int(token)`` for a string of digits (optional sign), None if absurdly long."""
    digits = token[1:] if token[:1] in ("+", "-") else token
    # ASCII only: str.isdigit() is also true for "²", which int() refuses.
    if not digits or len(digits) > MAX_INT_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return int(token)


def bounded_float(token: str) -> float | None:
    """``float(token)``, None for junk, NaN or infinity (``1e999`` is not a measurement)."""
    if len(token) > 64:
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def first_number(text: str) -> float | int | None:
    """The first number in ``text``; integers stay exact ints (QEMU prints 2**63-ish values).

    Bounded: a digit string too long for any counter, or a float that overflows, gives None.
    """
    m = _NUMBER_RE.search(text)
    if not m:
        return None
    token = m.group(0)
    if token.lstrip("+-").isdigit():
        return bounded_int(token)
    return bounded_float(token)


def to_int(text: str) -> int | None:
    v = first_number(text)
    return None if v is None else int(v)


def _json_constant(token: str) -> None:
    return None  # NaN, Infinity, -Infinity: not a value any QEMU counter can have


# Decodes JSON with numbers bounded as above: huge or non-finite numbers become null,
# so no later int()/float() on a decoded value can overflow or hit the digit limit.
JSON_DECODER = json.JSONDecoder(
    parse_int=bounded_int, parse_float=bounded_float, parse_constant=_json_constant
)


def json_loads(text: str) -> Any:
    """``json.loads`` with bounded numbers; raises ValueError (incl. RecursionError as such)."""
    try:
        obj, end = JSON_DECODER.raw_decode(text, len(text) - len(text.lstrip()))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return obj


def warn(run: Run, message: str) -> None:
    """Record a parse problem; the run becomes partial.  Capped so garbage stays readable."""
    run.partial = True
    if len(run.warnings) < MAX_WARNINGS:
        run.warnings.append(message)
    elif len(run.warnings) == MAX_WARNINGS:
        run.warnings.append("further warnings suppressed")


def iso_epoch(text: str) -> float | None:
    """Epoch seconds of the first ISO-like date-time in ``text`` (naive = UTC), or None."""
    m = ISO_RE.search(text)
    if not m:
        return None
    stamp = f"{m.group(1)}T{m.group(2).replace(',', '.')}"
    tz = m.group(3)
    if tz:
        stamp += "+00:00" if tz == "Z" else tz
    try:
        value = _dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.timestamp()


def add_sample_events(run: Run, statuses: bool = True) -> None:
    """Events implied by successive samples: status changes, throttle changes, errors.

    ``statuses=False`` when the source has its own status events (QMP ``MIGRATION``).
    """
    prev_status: str | None = None
    prev_throttle: float | None = None
    prev_error: str | None = None
    for s in run.samples:
        if statuses and s.status and s.status != prev_status:
            run.events.append(
                Event(s.t, "status", f"migration status {s.status}", {"status": s.status}, s.source)
            )
            prev_status = s.status
        if s.throttle_pct is not None and s.throttle_pct != prev_throttle:
            run.events.append(
                Event(
                    s.t,
                    "throttle-change",
                    f"CPU throttle {s.throttle_pct:g}%",
                    {"throttle_pct": s.throttle_pct},
                    s.source,
                )
            )
            prev_throttle = s.throttle_pct
        if s.error and s.error != prev_error:  # polled again after failing: one event
            run.events.append(Event(s.t, "error", s.error, {}, s.source))
            prev_error = s.error
    run.events.sort(key=lambda e: e.source.line if e.source else 0)


def finish_from_samples(run: Run) -> None:
    """Fill run-level facts from the samples (last known value wins)."""
    if run.status == "unknown":
        last_status = next((s.status for s in reversed(run.samples) if s.status), None)
        run.status = run_status(last_status)
    if run.ram_bytes is None:
        run.ram_bytes = next((s.total for s in reversed(run.samples) if s.total), None)
    if run.downtime is None:
        run.downtime = next(
            (s.downtime for s in reversed(run.samples) if s.downtime is not None), None
        )
    if run.ram_duration is None:
        run.ram_duration = next(
            (s.total_time for s in reversed(run.samples) if s.total_time is not None), None
        )
    if run.settings.xbzrle_cache_size is None:
        size = next(
            (s.xbzrle.cache_size for s in run.samples if s.xbzrle and s.xbzrle.cache_size), None
        )
        if size:
            run.settings.xbzrle_cache_size = size
    # QEMU only reports these blocks when the capability is on.
    caps = run.settings.capabilities
    if "xbzrle" not in caps and any(s.xbzrle is not None for s in run.samples):
        caps["xbzrle"] = True
    if "auto-converge" not in caps and any(s.throttle_pct for s in run.samples):
        caps["auto-converge"] = True


def has_data(sample: Sample) -> bool:
    """True if any counter of the sample was filled (not just its t/source)."""
    return any(
        getattr(sample, name) is not None
        for name in sample.__slots__
        if name not in ("t", "source")
    )

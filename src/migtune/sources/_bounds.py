"""Bounds on every number a parser puts into the run model (private to ``sources``).

Logs get cut, hand-edited and mangled: a counter can come out negative, NaN, infinite
or 10**5000.  Rather than teach every analysis to distrust its inputs, :func:`check_run`
runs once after parsing and replaces each value that no real migration can have with
``None`` ("not known"), adding one ``run.warnings`` line per problem.  Analyses and
outputs can then assume: byte counters are ints in ``0 .. 2**64``, rates and durations
finite and not negative, percentages within ``0 .. 100``, times finite.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Any

from migtune.model import Event, Run, Sample, Settings
from migtune.sources._common import warn

# QEMU's counters are uint64; nothing migtune reads can be larger.
MAX_COUNT = 2**64
MAX_RATE = 2.0**64  # bytes/s
MAX_SECONDS = 10 * 365 * 86400.0  # ten years: a migration (or a log) cannot be longer
MAX_EPOCH = 1e11  # year 5138: larger "epoch seconds" are garbage

_SAMPLE_COUNTS = (
    "transferred",
    "remaining",
    "total",
    "passes",
    "duplicate",
    "normal",
    "normal_bytes",
    "page_size",
    "multifd_bytes",
    "postcopy_requests",
    "precopy_bytes",
    "downtime_bytes",
    "postcopy_bytes",
    "vfio_bytes",
    "disk_transferred",
    "disk_remaining",
    "disk_total",
)
_SAMPLE_RATES = ("throughput", "page_rate", "dirty_rate")
_SAMPLE_SECONDS = ("expected_downtime", "downtime", "setup_time", "total_time")
_XBZRLE_COUNTS = ("cache_size", "bytes", "pages", "cache_miss", "overflow")
_SETTINGS_RATES = ("max_bandwidth", "avail_switchover_bandwidth", "max_postcopy_bandwidth")
_SETTINGS_PERCENT = (
    "cpu_throttle_initial",
    "cpu_throttle_increment",
    "max_cpu_throttle",
    "throttle_trigger_threshold",
)
_SETTINGS_TEXT = ("migration_type", "migration_uri", "migration_network", "qemu_version")


def _real(value: Any) -> float | None:
    """A finite number (bools and strings are not), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def count(value: Any) -> int | None:
    """A counter: an int in ``0 .. 2**64`` (a whole float is accepted), else None."""
    f = _real(value)
    if f is None or f < 0 or f > MAX_COUNT:
        return None
    return value if isinstance(value, int) else int(f)


def amount(value: Any, upper: float) -> float | None:
    """A rate or duration: a finite float in ``0 .. upper``, else None."""
    f = _real(value)
    return f if f is not None and 0 <= f <= upper else None


def moment(value: Any) -> float | None:
    """A time stamp relative to ``run.t0``: finite and not absurd, may be negative."""
    f = _real(value)
    return f if f is not None and abs(f) <= MAX_EPOCH else None


def _rate(value: Any) -> float | None:
    return amount(value, MAX_RATE)


def _seconds(value: Any) -> float | None:
    return amount(value, MAX_SECONDS)


def _percent(value: Any) -> float | None:
    return amount(value, 100.0)


def _fraction(value: Any) -> float | None:
    return amount(value, 1.0)


_INT = {int}
_NUMBER = {int, float}

# (field, check, lowest, highest, allowed types) for each numeric field of a Sample
# and of its Xbzrle block.
_SAMPLE_FIELDS = (
    ("t", moment, -MAX_EPOCH, MAX_EPOCH, _NUMBER),
    *((name, count, 0, MAX_COUNT, _INT) for name in _SAMPLE_COUNTS),
    *((name, _rate, 0, MAX_RATE, _NUMBER) for name in _SAMPLE_RATES),
    *((name, _seconds, 0, MAX_SECONDS, _NUMBER) for name in _SAMPLE_SECONDS),
    ("throttle_pct", _percent, 0, 100.0, _NUMBER),
)
_XBZRLE_FIELDS = (
    *((name, count, 0, MAX_COUNT, _INT) for name in _XBZRLE_COUNTS),
    ("cache_miss_rate", _fraction, 0, 1.0, _NUMBER),
    ("encoding_rate", _rate, 0, MAX_RATE, _NUMBER),
)


def _column_fine(values: list[Any], low: float, high: float, types: set[type]) -> bool:
    """True if every value of one field over all samples is None or in range.

    A whole column at a time, in C-level passes (a long log has millions of samples,
    nearly always all fine); only a column that fails is checked value by value.
    """
    present = list(filter(None, values))  # None and 0 are always fine
    if not present:
        return True
    try:
        return (
            types.issuperset(map(type, present))
            and min(present) >= low
            and max(present) <= high
            and math.isfinite(sum(present))  # NaN compares False with everything: the sum tells
        )
    except OverflowError:  # an int beyond any float
        return False


# Numbers that parsers put into event data and analyses read back (setting changes).
_EVENT_VALUES = {
    "downtime_limit": _seconds,
    "max_bandwidth": _rate,
    "throttle_pct": _percent,
    "xbzrle_cache_size": count,
}


class _Checker:
    def __init__(self, run: Run) -> None:
        self.run = run

    def bad(self, where: str, name: str, value: Any) -> None:
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        warn(self.run, f"{where}{name} = {shown} is out of range; ignored")

    def fix(self, obj: Any, name: str, check, where: str) -> None:
        value = getattr(obj, name)
        if value is None:
            return
        good = check(value)
        if good is None:
            self.bad(where, name.replace("_", "-"), value)
        setattr(obj, name, good)

    def columns(self, objs: list[Any], owners: list[Sample], fields, prefix: str = "") -> None:
        """Check ``fields`` of ``objs`` (samples or their xbzrle blocks, from ``owners``)."""
        for name, check, low, high, types in fields:
            if not _column_fine(list(map(attrgetter(name), objs)), low, high, types):
                for obj, owner in zip(objs, owners, strict=True):
                    where = f"line {owner.source.line}: " if owner.source else ""
                    self.fix(obj, name, check, where + prefix)

    def samples(self, samples: list[Sample]) -> None:
        self.columns(samples, samples, _SAMPLE_FIELDS)
        owners = [s for s in samples if s.xbzrle is not None]
        if owners:
            self.columns([s.xbzrle for s in owners], owners, _XBZRLE_FIELDS, "xbzrle ")
        if 0 in map(attrgetter("page_size"), samples):
            for s in samples:
                if s.page_size == 0:
                    s.page_size = None
        if not {str, type(None)}.issuperset(map(type, map(attrgetter("status"), samples))):
            for s in samples:
                if s.status is not None and type(s.status) is not str:
                    s.status = None
        if not {str, type(None)}.issuperset(map(type, map(attrgetter("error"), samples))):
            for s in samples:
                if s.error is not None and type(s.error) is not str:
                    s.error = str(s.error)

    def event(self, e: Event) -> None:
        where = f"line {e.source.line}: " if e.source else ""
        self.fix(e, "t", moment, where + "event ")
        if not isinstance(e.data, dict):
            e.data = {}
        for key in _EVENT_VALUES.keys() & e.data.keys():
            value = e.data[key]
            if value is not None and _EVENT_VALUES[key](value) is None:
                self.bad(where + "event ", key.replace("_", "-"), value)
                del e.data[key]  # analyses read a missing key as "not known"
        if not isinstance(e.message, str):
            e.message = str(e.message)
        if not isinstance(e.kind, str):
            e.kind = "info"

    def settings(self, st: Settings) -> None:
        where = "settings: "
        self.fix(st, "downtime_limit", _seconds, where)
        for name in _SETTINGS_RATES:
            self.fix(st, name, _rate, where)
        self.fix(st, "xbzrle_cache_size", count, where)
        self.fix(st, "multifd_channels", lambda v: _int_in(v, 0, 255), where)
        for name in _SETTINGS_PERCENT:
            self.fix(st, name, lambda v: _int_in(v, 0, 100), where)
        for name in _SETTINGS_TEXT:
            value = getattr(st, name)
            if value is not None and not isinstance(value, str):
                setattr(st, name, str(value))
        if not isinstance(st.capabilities, dict):
            self.bad(where, "capabilities", st.capabilities)
            st.capabilities = {}
        st.capabilities = {
            str(k): bool(v) for k, v in st.capabilities.items() if isinstance(v, (bool, int))
        }
        if not isinstance(st.extra, dict):
            st.extra = {}

    def check(self) -> Run:
        run = self.run
        if not isinstance(run.meta, dict):
            run.meta = {}
        self.samples(run.samples)
        for e in run.events:
            self.event(e)
        self.settings(run.settings)
        self.fix(run, "ram_bytes", count, "")
        for name in ("downtime", "duration", "ram_duration"):
            self.fix(run, name, _seconds, "")
        self.fix(run, "t0", lambda v: amount(v, MAX_EPOCH), "")
        for name in ("vm", "target"):
            value = getattr(run, name)
            if value is not None and not isinstance(value, str):
                setattr(run, name, str(value))
        return run


def _int_in(value: Any, low: int, high: int) -> int | None:
    f = _real(value)
    return int(f) if f is not None and low <= f <= high else None


def check_run(run: Run) -> Run:
    """Replace out-of-range values of ``run`` by None, with a warning each; returns ``run``."""
    return _Checker(run).check()

"""Workload specs: how a guest dirties memory, in one string shared by the lab and the simulator.

``migtune lab run --workload SPEC`` runs it in a real guest; ``migtune simulate
--workload SPEC`` models it page by page, so a lab scenario replays word for word.

Grammar: comma-separated ``key=value`` items, or the single word ``idle``.

=========== ==================================================================
``ws``      working-set size (``256MiB``); default 0 (idle)
``rate``    write rate: ``64MiB/s``, ``16000pages/s`` or ``unlimited`` (CPU-bound)
``pattern`` ``seq`` (sweep), ``random`` (uniform over the working set) or ``hotcold``
``hot``     hotcold only: fraction of the working set that is hot (default 0.1)
``hotw``    hotcold only: fraction of writes that go to the hot part (default 0.9)
``bytes``   bytes changed in a page per write, 1..4096 (default 8): what XBZRLE can do
``catchup`` rate-limited writer that fell behind (e.g. throttled): ``yes`` catches up
            by writing faster afterwards, ``no`` (default) just loses the time
``zero``    fraction of guest RAM outside the working set that is zero pages
            (simulator only; the lab guest's free memory is zero; default 0.9)
``cpu``     how the writing responds to auto-converge's vCPU throttle (simulator
            only): the share of its vCPU the guest needs to write at ``rate``, 0..1.
            Throttled to p %, it keeps ``min(1, (1 - p/100) / cpu)`` of its rate:
            ``cpu=1`` is a CPU-bound writer, ``cpu=0`` writes the throttle cannot slow
            (device DMA, another host's writes).  Unset: the lab writer's own
            response (``catchup``, a 10 ms burst)
=========== ==================================================================

Examples: ``idle``; ``ws=256MiB,rate=64MiB/s,pattern=random,bytes=8``;
``ws=512MiB,rate=unlimited,pattern=seq,bytes=4096``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from migtune.errors import InputError
from migtune.units import parse_rate, parse_size

PAGE_SIZE = 4096
PATTERNS = ("seq", "random", "hotcold")


@dataclass(frozen=True, slots=True)
class Workload:
    ws: int = 0  # bytes
    rate: float | None = 0.0  # bytes/s; None = unlimited (CPU-bound)
    pattern: str = "random"
    hot: float = 0.1
    hotw: float = 0.9
    bytes_per_write: int = 8
    catchup: bool = False
    zero: float = 0.9
    cpu: float | None = None  # vCPU share the writes need (throttle response); None = lab

    @property
    def idle(self) -> bool:
        return self.ws == 0 or self.rate == 0

    @property
    def cpu_bound(self) -> bool:
        return self.rate is None and self.ws > 0

    def spec(self) -> str:
        """The canonical spec string (parse(spec()) == self)."""
        if self.idle:
            return "idle" if self.zero == 0.9 else f"idle,zero={self.zero:g}"
        rate = "unlimited" if self.rate is None else f"{self.rate / PAGE_SIZE:.0f}pages/s"
        parts = [f"ws={self.ws // 1024**2}MiB" if self.ws % 1024**2 == 0 else f"ws={self.ws}"]
        parts += [f"rate={rate}", f"pattern={self.pattern}"]
        if self.pattern == "hotcold":
            parts += [f"hot={self.hot:g}", f"hotw={self.hotw:g}"]
        parts.append(f"bytes={self.bytes_per_write}")
        if self.catchup:
            parts.append("catchup=yes")
        if self.zero != 0.9:
            parts.append(f"zero={self.zero:g}")
        if self.cpu is not None:
            parts.append(f"cpu={self.cpu:g}")
        return ",".join(parts)


def describe(w: Workload) -> str:
    """The workload for people, with units: ``ws=57.5 MiB, writes 148.0 MiB/s, random``."""
    from migtune.units import format_bytes, format_rate

    if w.idle:
        return "idle (no working set)"
    rate = "as fast as the vCPU can" if w.rate is None else format_rate(w.rate)
    parts = [f"ws={format_bytes(w.ws)}", f"writes {rate}", w.pattern]
    if w.pattern == "hotcold":
        parts[-1] = f"hotcold ({w.hotw:.0%} of writes to {w.hot:.0%} of it)"
    parts.append(f"{w.bytes_per_write} bytes per write")
    if w.cpu is not None:
        parts.append(f"writes need {w.cpu:.0%} of a vCPU")
    elif w.catchup:
        parts.append("catches up after throttling")
    return ", ".join(parts)


def _fraction(key: str, v: str) -> float:
    try:
        f = float(v)
    except ValueError:
        raise InputError(f"workload: {key} must be a number between 0 and 1, got {v!r}") from None
    if not 0 <= f <= 1:
        raise InputError(f"workload: {key} must be between 0 and 1, got {v}")
    return f


def parse_rate_spec(v: str) -> float | None:
    low = v.strip().lower()
    if low in ("unlimited", "max", "cpu"):
        return None
    for suffix in ("pages/s", "pps", "pages"):
        if low.endswith(suffix):
            try:
                return float(low[: -len(suffix)]) * PAGE_SIZE
            except ValueError:
                break
    return parse_rate(v)


def parse_workload(spec: str) -> Workload:
    text = spec.strip()
    if not text:
        raise InputError("empty workload spec (try 'idle' or 'ws=256MiB,rate=64MiB/s')")
    w = Workload()
    items = [i.strip() for i in text.split(",") if i.strip()]
    if items and items[0].lower() == "idle":
        items = items[1:]
        w = dataclasses.replace(w, ws=0, rate=0.0)
    for item in items:
        if "=" not in item:
            raise InputError(f"workload: expected key=value, got {item!r}")
        key, value = (p.strip() for p in item.split("=", 1))
        key = key.lower()
        if key == "ws":
            w = dataclasses.replace(w, ws=parse_size(value))
        elif key == "rate":
            w = dataclasses.replace(w, rate=parse_rate_spec(value))
        elif key == "pattern":
            pat = {"sequential": "seq", "uniform": "random", "hot": "hotcold"}.get(value, value)
            if pat not in PATTERNS:
                raise InputError(f"workload: pattern must be one of {', '.join(PATTERNS)}")
            w = dataclasses.replace(w, pattern=pat)
        elif key == "hot":
            w = dataclasses.replace(w, hot=_fraction(key, value))
        elif key == "hotw":
            w = dataclasses.replace(w, hotw=_fraction(key, value))
        elif key == "bytes":
            try:
                n = int(value)
            except ValueError:
                raise InputError(f"workload: bytes must be an integer, got {value!r}") from None
            if not 1 <= n <= PAGE_SIZE:
                raise InputError("workload: bytes must be between 1 and 4096")
            w = dataclasses.replace(w, bytes_per_write=n)
        elif key == "catchup":
            w = dataclasses.replace(w, catchup=value.lower() in ("yes", "on", "1", "true"))
        elif key == "zero":
            w = dataclasses.replace(w, zero=_fraction(key, value))
        elif key == "cpu":
            w = dataclasses.replace(w, cpu=_fraction(key, value))
        else:
            raise InputError(f"workload: unknown key {key!r}")
    if w.ws and w.ws < PAGE_SIZE:
        raise InputError("workload: working set must be at least one page (4 KiB)")
    if w.rate is not None and w.rate < 0:
        raise InputError("workload: rate cannot be negative")
    return w

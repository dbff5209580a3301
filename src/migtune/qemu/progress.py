"""Live progress of a migration: a rich bar on a terminal, plain lines otherwise.

The ETA is honest: remaining bytes over the *net* drain rate (real throughput
minus dirty rate).  When the guest dirties as fast as the link sends, the
remaining data does not shrink and there is no ETA: "not converging".
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from migtune.model import Sample
from migtune.units import format_bytes, format_duration, format_rate

# QEMU's mbps covers one 100 ms window and its dirty rate a >= 1 s sync period, so two
# values within a few percent are indistinguishable: the guest keeps up with the link.
KEEPS_UP_RATIO = 0.95


def eta(sample: Sample) -> float | None:
    """Seconds until ``remaining`` is drained at the current net rate; None when the
    dirty rate keeps up with the link (within measurement noise), or nothing is known."""
    if sample.remaining is None or sample.throughput is None:
        return None
    dirty = sample.dirty_rate or 0.0
    if dirty >= KEEPS_UP_RATIO * sample.throughput:
        return None
    return sample.remaining / (sample.throughput - dirty)


def describe(sample: Sample, extra: dict[str, Any] | None = None) -> str:
    """One line: status, transferred, remaining, throughput, dirty rate, pass, throttle, ETA."""
    parts = [
        sample.status or "?",
        f"sent {format_bytes(sample.transferred)}",
        f"left {format_bytes(sample.remaining)}",
        f"{format_rate(sample.throughput)}",
        f"dirty {format_rate(sample.dirty_rate)}",
        f"pass {sample.passes if sample.passes is not None else '?'}",
    ]
    if sample.throttle_pct:
        parts.append(f"throttle {sample.throttle_pct:.0f}%")
    if sample.status in ("active", "setup"):
        e = eta(sample)
        parts.append("ETA " + (format_duration(e) if e is not None else "not converging"))
    if extra and extra.get("prediction") and sample.status in ("active", "setup"):
        parts.append(f"model: {extra['prediction']}")
    if extra and extra.get("postcopy"):
        parts.append("post-copy")
    return ", ".join(parts)


class ProgressDisplay:
    """Callable progress sink: ``display(sample, extra)``; ``close()`` at the end.

    On a terminal a transient rich display (a bar of RAM sent in the first pass /
    drained since, and one wrapped line of figures); on anything else a plain
    line every ``every`` seconds on ``stream`` (stderr).
    """

    def __init__(self, stream: IO[str] | None = None, every: float = 5.0):
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0
        self._live: Any = None
        self._good: Sample | None = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._live = Live(console=console, transient=True, auto_refresh=False)
            self._live.start()

    def __call__(self, sample: Sample, extra: dict[str, Any] | None = None) -> None:
        if sample.transferred is not None:
            self._good = sample
        elif self._good is not None:  # cancelled/failed replies carry no RAM figures
            self._good.status = sample.status
            sample = self._good
        line = describe(sample, extra)
        if self._live is not None:
            from rich.console import Group
            from rich.progress_bar import ProgressBar
            from rich.text import Text

            total = sample.total or 0
            done = max(0, total - (sample.remaining or 0)) if total else 0
            bar = ProgressBar(total=total or None, completed=done, width=40)
            pct = f" {100 * done / total:5.1f}% of RAM clean" if total else ""
            header = Text.assemble(("migrating", "bold"), pct)
            self._live.update(Group(header, bar, Text(line)), refresh=True)
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            print(f"migtune: {line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

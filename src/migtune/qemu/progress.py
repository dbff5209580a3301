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


def eta(sample: Sample) -> float | None:
    """Seconds until ``remaining`` is drained at the current net rate, None if it is not."""
    if sample.remaining is None or sample.throughput is None:
        return None
    net = sample.throughput - (sample.dirty_rate or 0.0)
    if net <= 0:
        return None
    return sample.remaining / net


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
    if extra and extra.get("postcopy"):
        parts.append("post-copy")
    return ", ".join(parts)


class ProgressDisplay:
    """Callable progress sink: ``display(sample, extra)``; ``close()`` at the end.

    On a terminal a transient rich progress bar (transferred of RAM total); on
    anything else a plain line every ``every`` seconds on ``stream`` (stderr).
    """

    def __init__(self, stream: IO[str] | None = None, every: float = 5.0):
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0
        self._bar: Any = None
        self._task: Any = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("[bold]migrating"),
                BarColumn(),
                TextColumn("{task.description}"),
                console=Console(file=self.stream),
                transient=True,
            )
            self._task = self._bar.add_task("starting", total=None)
            self._bar.start()

    def __call__(self, sample: Sample, extra: dict[str, Any] | None = None) -> None:
        line = describe(sample, extra)
        if self._bar is not None:
            total = sample.total
            done = None
            if total and sample.remaining is not None:
                done = max(0, total - sample.remaining)
            self._bar.update(self._task, description=line, total=total, completed=done)
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            print(f"migtune: {line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

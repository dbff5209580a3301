"""The outcome of one migration, real (lab, migrate) or simulated, in one shape.

``migtune lab run --json`` and ``migtune simulate --json`` print exactly these keys
(a contract: extend, never rename), so real and simulated runs compare field by field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from migtune.model import Run


@dataclass(slots=True)
class XbzrleOutcome:
    cache_miss_rate: float | None  # 0..1, QEMU's rate over its last period
    overflow: int | None
    pages: int | None
    bytes: int | None


@dataclass(slots=True)
class Outcome:
    converged: bool  # completed (pre-copy or post-copy)
    status: str  # completed | cancelled | failed | active
    total_time_s: float | None
    downtime_ms: float | None
    transferred_bytes: int | None
    passes: int | None  # QEMU dirty-sync-count
    max_throttle_pct: float | None
    xbzrle: XbzrleOutcome | None
    recording: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def outcome_from_run(run: Run, recording: str | None = None) -> Outcome:
    """Summarise a run (from a recording or a simulation) as an Outcome."""
    last = run.last
    status = run.status if run.status != "unknown" else "active"
    xb = None
    throttle = max((s.throttle_pct or 0.0 for s in run.samples), default=0.0)
    if last is not None:
        last_xb = next((s.xbzrle for s in reversed(run.samples) if s.xbzrle), None)
        if last_xb is not None:
            xb = XbzrleOutcome(
                cache_miss_rate=last_xb.cache_miss_rate,
                overflow=last_xb.overflow,
                pages=last_xb.pages,
                bytes=last_xb.bytes,
            )
    total_time = None
    if last is not None and last.total_time is not None:
        total_time = last.total_time
    elif run.ram_duration is not None:
        total_time = run.ram_duration
    downtime = run.downtime if run.downtime is not None else (last.downtime if last else None)
    return Outcome(
        converged=status == "completed",
        status=status,
        total_time_s=total_time,
        downtime_ms=None if downtime is None else round(downtime * 1000, 3),
        transferred_bytes=next(
            (s.transferred for s in reversed(run.samples) if s.transferred is not None), None
        ),
        passes=next((s.passes for s in reversed(run.samples) if s.passes is not None), None),
        max_throttle_pct=throttle,
        xbzrle=xb,
        recording=recording,
    )

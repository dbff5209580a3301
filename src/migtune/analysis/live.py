"""Predict a migration that is still running, from what it has shown so far.

From the end of the first pass on, a prefix of a migration's recording holds enough to
calibrate the simulator (:func:`migtune.sim.calibrate.calibrate`): the first pass gives
the link and the guest's non-zero memory, every later sync a (pass time, dirty set)
pair.  :func:`predict` calibrates from the prefix - a run that is *still active* at its
last sample, which the fit reads as "not finished by then" (a lower bound on the
total time, never a cancelled run) - and simulates the rest with the settings in force,
over every plausible workload: converges or not (within the time limit when there is
one), the time left with a range, the expected downtime.

The same calibration answers what-ifs for other settings (:func:`alternatives`), which
is what ``--policy migtune`` steers by.  Nothing here talks to QEMU: the driver runs
this off its polling loop (:mod:`migtune.qemu.livewatch`), and the benchmark
(``benchmarks/bench_live.py``) replays recorded prefixes through the same functions.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from migtune.errors import MigtuneError
from migtune.model import Run
from migtune.sources.recording import parse_recording
from migtune.units import format_duration

# The recording event that holds one prediction (``data`` is LivePrediction.to_dict()).
EVENT_KIND = "prediction"
# A prediction is "converges" when at least this share of the plausible set converges.
MAJORITY = 0.5


@dataclass
class LivePrediction:
    """What the model expects of a running migration, made ``t`` s into it."""

    t: float  # seconds into the migration (the last sample the prediction saw)
    passes: int | None  # QEMU's dirty-sync-count at that sample
    members: int  # plausible workloads simulated
    converged_members: int  # of which converge (within the time limit, if any)
    time_limit: float | None
    horizon_s: float
    total_time_s: dict[str, float | None]  # min / median / max over converging members
    downtime_ms: dict[str, float | None]  # min / median / max over converging members
    max_throttle_pct: dict[str, float | None] = field(default_factory=dict)
    low_confidence: bool = False
    change: dict[str, Any] = field(default_factory=dict)  # Change.to_dict(): made at ``t``
    compute_s: float = 0.0  # how long calibration and simulation took
    notes: list[str] = field(default_factory=list)

    @property
    def converges(self) -> bool:
        """Most plausible workloads converge (within the time limit)."""
        return self.members > 0 and self.converged_members > MAJORITY * self.members

    @property
    def verdict(self) -> str:
        """``converges`` (every plausible workload does), ``will-not-converge`` (none
        does) or ``uncertain`` (the run so far cannot tell them apart)."""
        if self.members and self.converged_members == self.members:
            return "converges"
        if self.converged_members == 0:
            return "will-not-converge"
        return "uncertain"

    @property
    def eta_s(self) -> dict[str, float | None]:
        """Seconds left (min / median / max) from ``t``, over converging members."""
        return {
            k: None if v is None else max(0.0, v - self.t) for k, v in self.total_time_s.items()
        }

    def short(self) -> str:
        """The progress-line words: ``converges in ~4 min (3-6)``, ``will not converge ...``."""
        within = (
            f" within {format_duration(self.time_limit)}" if self.time_limit is not None else ""
        )
        if self.members == 0:
            return "no prediction"
        if self.converged_members == 0:
            return f"will not converge{within} with these settings"
        eta = self.eta_s
        text = f"converges in ~{_eta_range(eta['median'], eta['min'], eta['max'])}"
        if self.verdict == "uncertain":
            text = (
                f"may not converge{within}: {self.converged_members} of {self.members} "
                f"plausible workloads do, in ~{_eta_range(eta['median'], eta['min'], eta['max'])}"
            )
        if self.low_confidence:
            text += " [low confidence]"
        return text

    def message(self) -> str:
        """The recording event's message: when, then the verdict."""
        down = self.downtime_ms["median"]
        extra = f", downtime ~{down:.0f} ms" if self.converges and down is not None else ""
        return (
            f"prediction at {format_duration(self.t)} (pass {self.passes}): {self.short()}{extra}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "passes": self.passes,
            "converges": self.converges,
            "verdict": self.verdict,
            "members": self.members,
            "converged_members": self.converged_members,
            "time_limit_s": self.time_limit,
            "horizon_s": self.horizon_s,
            "total_time_s": self.total_time_s,
            "eta_s": self.eta_s,
            "downtime_ms": self.downtime_ms,
            "max_throttle_pct": self.max_throttle_pct,
            "low_confidence": self.low_confidence,
            "change": self.change,
            "compute_s": self.compute_s,
            "text": self.short(),
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LivePrediction:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["time_limit"] = d.get("time_limit_s")
        return cls(**kw)


def _eta_range(mid: float | None, lo: float | None, hi: float | None) -> str:
    """``4 min (3-6)`` or ``40 s (35-52)``: the unit once, on the median."""
    if mid is None:
        return "?"
    if lo is None or hi is None or hi - lo < max(1.0, 0.1 * mid):
        return _coarse(mid)
    if mid >= 120:
        return f"{mid / 60:.0f} min ({lo / 60:.0f}-{hi / 60:.0f})"
    return f"{mid:.0f} s ({lo:.0f}-{hi:.0f})"


def _coarse(s: float) -> str:
    return f"{s / 60:.0f} min" if s >= 120 else f"{s:.0f} s"


# -- prefixes of a recording -------------------------------------------------------------


def recording_prefix(lines: Iterable[str], until: float | None = None) -> Run:
    """The run as it stood at ``until`` s (every record so far when None): the header,
    samples, events and QMP events up to then, no result line.  What the live driver
    holds in memory at that moment, so the benchmark and the driver predict alike."""
    kept = []
    for line in lines:
        text = line.strip()
        if not text:
            continue
        try:
            rec = json.loads(text)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("kind") == "result":
            continue
        t = rec.get("t")
        if until is not None and isinstance(t, int | float) and t > until + 1e-9:
            continue
        kept.append(text)
    run = parse_recording(kept)
    if run.status in ("unknown", None):
        run.status = "active"
    return run


def first_pass_end(run: Run) -> float | None:
    """Time of the first sample after QEMU's first sync (dirty-sync-count 2): the
    first pass over RAM is done and the first dirty set is visible."""
    for s in run.samples:
        if s.passes is not None and s.passes >= 2 and s.t is not None:
            return s.t
    return None


# -- predictions ---------------------------------------------------------------------------


def _spread(vals: list[float]) -> dict[str, float | None]:
    if not vals:
        return {"min": None, "median": None, "max": None}
    return {"min": min(vals), "median": float(statistics.median(vals)), "max": max(vals)}


@dataclass(frozen=True)
class Change:
    """Setting changes made at the moment of a prediction (what ``--policy migtune``
    may do): ``set`` holds ``name=value`` assignments (``migrate-set-parameters``),
    ``postcopy`` switches to post-copy."""

    set: tuple[str, ...] = ()
    postcopy: bool = False

    def describe(self) -> str:
        parts = list(self.set) + (["switch to post-copy"] if self.postcopy else [])
        return ", ".join(parts) or "no change"

    def to_dict(self) -> dict[str, Any]:
        return {"set": list(self.set), "postcopy": self.postcopy}


def calibrate_prefix(run: Run, machine: Any = None):
    """Calibrate from a still-running migration (a lower bound on its total time)."""
    from migtune.sim.calibrate import calibrate

    return calibrate(run, machine=machine)


def evaluate(
    cal: Any,
    change: Change,
    now: float,
    passes: int | None,
    *,
    time_limit: float | None = None,
    postcopy_after_passes: int | None = None,
    postcopy_after: float | None = None,
) -> LivePrediction:
    """Simulate the run so far (its recorded setting changes replayed) and ``change``
    applied at ``now``, over the plausible set of ``cal`` (a prefix's calibration)."""
    from migtune.sim.calibrate import what_if

    started = time.monotonic()
    horizon = time_limit if time_limit is not None and time_limit > now else None
    # in the order given (a raised maximum before the initial throttle it allows)
    later = [(now + 1e-3 * (i + 1), a) for i, a in enumerate(change.set)]
    c2 = dataclasses.replace(cal, schedule=sorted([*cal.schedule, *later]))
    kw: dict[str, Any] = {}
    if change.postcopy:
        kw["postcopy_after"] = now + 1e-3
    elif postcopy_after_passes is not None:
        kw["postcopy_after_passes"] = postcopy_after_passes
    elif postcopy_after is not None:
        kw["postcopy_after"] = postcopy_after
    pred = what_if(c2, cal.settings, horizon=horizon, **kw)
    done = [r for r in pred.members if r.outcome.converged]
    if time_limit is not None:
        done = [r for r in done if (r.outcome.total_time_s or 0.0) <= time_limit]
    # a member the calibration says is still running at ``now`` cannot finish before it
    totals = [max(now, r.outcome.total_time_s or 0.0) for r in done]
    downs = [r.outcome.downtime_ms for r in done if r.outcome.downtime_ms is not None]
    throttle = [r.outcome.max_throttle_pct or 0.0 for r in done]
    return LivePrediction(
        t=now,
        passes=passes,
        members=len(pred.members),
        converged_members=len(done),
        time_limit=time_limit,
        horizon_s=pred.horizon,
        total_time_s=_spread(totals),
        downtime_ms=_spread([float(d) for d in downs]),
        max_throttle_pct=_spread(throttle),
        low_confidence=pred.low_confidence,
        change=change.to_dict(),
        compute_s=round(time.monotonic() - started, 3),
        notes=list(pred.notes),
    )


def predict(
    run: Run,
    *,
    time_limit: float | None = None,
    changes: list[Change] | None = None,
    postcopy_after_passes: int | None = None,
    postcopy_after: float | None = None,
    machine: Any = None,
) -> tuple[LivePrediction, list[LivePrediction]]:
    """Calibrate from ``run`` (a prefix, still active), predict it as it goes (the
    settings in force, every change so far replayed), then with each of ``changes``
    made now: (as it goes, [with each change ...])."""
    started = time.monotonic()
    last = next((s for s in reversed(run.samples) if s.t is not None), None)
    now = 0.0 if last is None or last.t is None else float(last.t)
    passes = last.passes if last is not None else None
    cal = calibrate_prefix(run, machine)
    kw = {
        "time_limit": time_limit,
        "postcopy_after_passes": postcopy_after_passes,
        "postcopy_after": postcopy_after,
    }
    current = evaluate(cal, Change(), now, passes, **kw)
    current.notes = [*cal.notes, *current.notes]
    others = []
    for c in changes or []:
        try:
            others.append(evaluate(cal, c, now, passes, **kw))
        except MigtuneError as exc:  # a change the simulator refuses is not a candidate
            current.notes.append(f"{c.describe()}: not simulated ({exc})")
            others.append(_unknown(now, passes, c, time_limit))
    current.compute_s = round(time.monotonic() - started, 3)
    return current, others


def _unknown(now: float, passes: int | None, c: Change, limit: float | None) -> LivePrediction:
    """A change that could not be simulated: no plausible workload counts as converging."""
    empty: dict[str, float | None] = {"min": None, "median": None, "max": None}
    return LivePrediction(
        t=now,
        passes=passes,
        members=0,
        converged_members=0,
        time_limit=limit,
        horizon_s=0.0,
        total_time_s=empty,
        downtime_ms=dict(empty),
        change=c.to_dict(),
    )


def predictions_of(run: Run) -> list[LivePrediction]:
    """Every prediction recorded in a run, in order."""
    out = []
    for e in run.events:
        if e.kind == EVENT_KIND and isinstance(e.data, dict) and "members" in e.data:
            try:
                out.append(LivePrediction.from_dict(e.data))
            except TypeError:
                continue
    return out


def timeline_rows(run: Run) -> list[dict[str, Any]]:
    """What was predicted when, and what a policy did on the strength of it: one row per
    prediction event and per action that carries a prediction (``explain``, ``report``)."""
    rows: list[dict[str, Any]] = []
    for e in run.events:
        d = e.data if isinstance(e.data, dict) else {}
        if e.kind == EVENT_KIND and "verdict" in d:
            eta = d.get("eta_s") if isinstance(d.get("eta_s"), dict) else {}
            rows.append(
                {
                    "t": e.t,
                    "from_samples_to_s": d.get("t"),
                    "kind": "prediction",
                    "verdict": d.get("verdict"),
                    "eta_s": eta.get("median"),
                    "text": str(d.get("text") or e.message),
                }
            )
        elif isinstance(d.get("prediction"), dict):
            p = d["prediction"]
            rows.append(
                {
                    "t": e.t,
                    "from_samples_to_s": p.get("t"),
                    "kind": "decision",
                    "verdict": p.get("verdict"),
                    "eta_s": (p.get("eta_s") or {}).get("median"),
                    "text": e.message,
                }
            )
    return rows

"""How well calibration works on real runs: the lab's ``calib-*`` recordings.

Two sets, fixed here and in ``tests/fixtures/lab/README.md``:

* :data:`FIT` - the recordings used while choosing the calibration's constants (score
  weights, plausible margin, the throttle-response and bytes-per-write ranges);
* :data:`HELD_OUT` - recordings never looked at while doing so; the figures reported
  (``benchmarks/bench_fidelity.py``) are computed on them.

Each is measured three ways: from the recording itself (every ``query-migrate``
reply), from the Proxmox task log the run would have produced, and from HMP
``info migrate`` snapshots every 5 s (:mod:`migtune.outputs.platform_logs`).

A replay is right when its class matches (converged, or not converged by the
observed time); its time error counts only for converged runs (an unfinished run is
replayed for exactly its observed time), its bytes error always.  A what-if pair
calibrates on one recording and predicts another run of the same guest with other
settings; the prediction of a run that did not converge runs until that run's
observed time (so its bytes compare), otherwise to the default horizon.

A what-if's class is that of its median member (the one shown in detail).  A class
miss has no time or bytes error: a prediction that did not finish within its horizon
against a run that converged is a wrong answer, not a time of "the horizon" (and a
converged prediction against a run still going at its observed time has no like
figure either).  Whether the set's members include the real class is counted apart
(``spans``): a log that cannot tell gives a set on both sides of the line, which is
the honest answer but still a miss for the median.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migtune.model import Run
from migtune.outcome import Outcome
from migtune.outputs.platform_logs import hmp_snapshots, proxmox_task_log
from migtune.sim.calibrate import Prediction, calibrate, what_if
from migtune.sim.calibrate.evidence import extract, observed_outcome
from migtune.sources import load_run
from migtune.sources.hmp import parse as parse_hmp
from migtune.sources.proxmox import parse as parse_proxmox

LAB = Path(__file__).resolve().parents[4] / "tests" / "fixtures" / "lab"

FIT = (
    "calib-seq-256-dt300",
    "calib-seq-256-dt3s",
    "calib-hotcold-768",
    "calib-hotcold-768-ac",
    "calib-random-1024-b64",
    "calib-random-1024-b64-xbzrle",
    "calib-random-640-cap64-multifd4",  # fitted Machine.multifd_backlog
)
HELD_OUT = (
    "calib-random-512-b4096-xbzrle",
    "calib-random-512-b512",
    "calib-random-512-b512-xbzrle",
    "calib-random-512-b512-xbzrle-small",
    "calib-random-640-cap64",
    "calib-random-640-cap64-ac",
    "calib-seq-384-slow",
    "calib-hotcold-768-proxmox",
    "calib-hotcold-1024-b128",
    "calib-hotcold-1024-b128-xbzrle",
    "calib-seq-512-cap24",
    "calib-seq-512-cap24-dt5s",
    "calib-seq-512-cap24-ac",
    "calib-random-256-b1024",
    "calib-random-256-b1024-xbzrle",
    "calib-hotcold-512",
    "calib-hotcold-512-multifd3",
    "calib-random-384",
    "calib-random-384-ac",
    "calib-random-768-xbzrle64",
    "calib-random-768-xbzrle512",
)
# (calibrate on, predict): the same guest under other settings
PAIRS_FIT = (
    ("calib-seq-256-dt300", "calib-seq-256-dt3s"),
    ("calib-hotcold-768", "calib-hotcold-768-ac"),
    ("calib-random-1024-b64-xbzrle", "calib-random-1024-b64"),
    ("calib-random-640-cap64", "calib-random-640-cap64-multifd4"),
)
PAIRS_HELD_OUT = (
    ("calib-random-512-b512-xbzrle", "calib-random-512-b512"),
    ("calib-random-512-b512-xbzrle", "calib-random-512-b512-xbzrle-small"),
    ("calib-random-512-b512-xbzrle-small", "calib-random-512-b512-xbzrle"),
    ("calib-random-640-cap64", "calib-random-640-cap64-ac"),
    ("calib-hotcold-1024-b128-xbzrle", "calib-hotcold-1024-b128"),
    ("calib-seq-512-cap24", "calib-seq-512-cap24-dt5s"),
    ("calib-seq-512-cap24", "calib-seq-512-cap24-ac"),
    ("calib-random-256-b1024-xbzrle", "calib-random-256-b1024"),
    ("calib-hotcold-512", "calib-hotcold-512-multifd3"),
    ("calib-random-384", "calib-random-384-ac"),
    ("calib-random-768-xbzrle64", "calib-random-768-xbzrle512"),
    ("calib-random-768-xbzrle512", "calib-random-768-xbzrle64"),
)
SOURCES = ("recording", "proxmox", "hmp")


def load(name: str, source: str = "recording") -> Run:
    """A lab recording as one of :data:`SOURCES` would show it."""
    rec = load_run(LAB / f"{name}.jsonl")
    if source == "recording":
        return rec
    if source == "proxmox":
        return parse_proxmox(proxmox_task_log(rec).splitlines())
    if source == "hmp":
        return parse_hmp(hmp_snapshots(rec).splitlines())
    raise ValueError(f"unknown source {source!r}")


def _rel(sim: float | None, real: float | None) -> float | None:
    if sim is None or real is None or not real:
        return None
    return (sim - real) / real


@dataclass
class Case:
    name: str
    source: str
    class_ok: bool
    time_err: float | None
    bytes_err: float | None
    in_range: bool | None = None  # what-ifs: the real time (or bytes) within the set's range
    note: str = ""
    # what-ifs: some member of the plausible set has the real class (converged or not)
    spans: bool | None = None


def replay_case(name: str, source: str = "recording") -> Case:
    real = observed_outcome(load_run(LAB / f"{name}.jsonl"))
    cal = calibrate(load(name, source))
    sim = cal.replay.outcome
    t = _rel(sim.total_time_s, real.total_time_s) if real.converged else None
    return Case(
        name,
        source,
        cal.replay_class_ok,
        t,
        _rel(sim.transferred_bytes, real.transferred_bytes),
        note=cal.describe_inferred(),
    )


def pair_case(a: str, b: str, source: str = "recording") -> Case:
    target = load_run(LAB / f"{b}.jsonl")
    real = observed_outcome(target)
    ev = extract(target)
    cal = calibrate(load(a, source))
    horizon = None if real.converged else ev.duration
    pred = what_if(cal, target.settings, horizon=horizon)
    return judge(f"{a} -> {b}", source, pred, real)


def judge(name: str, source: str, pred: Prediction, real: Outcome) -> Case:
    """A what-if against what really happened (the accounting above)."""
    o = pred.result.outcome
    members = [m.outcome for m in pred.members]
    if real.converged:
        ok = o.converged
        spans = any(m.converged for m in members)
        # the range of the members that finished: an unfinished one has no time
        done = [m.total_time_s for m in members if m.converged and m.total_time_s is not None]
        rng = {"min": min(done), "max": max(done)} if done else {"min": None, "max": None}
        value = real.total_time_s
    else:
        ok = not o.converged
        spans = any(not m.converged for m in members)
        rng = pred.spread("transferred_bytes")
        value = real.transferred_bytes
    inside = None
    if rng["min"] is not None and value is not None:
        inside = rng["min"] * 0.95 <= value <= rng["max"] * 1.05
    elif value is not None:
        inside = False  # no member with a comparable figure
    t_err = _rel(o.total_time_s, real.total_time_s) if ok and real.converged else None
    b_err = _rel(o.transferred_bytes, real.transferred_bytes) if ok else None
    return Case(
        name,
        source,
        ok,
        t_err,
        b_err,
        inside,
        note=pred.verdict(),
        spans=spans,
    )


def summary(cases: list[Case]) -> dict[str, Any]:
    def stats(vals):
        vals = [abs(v) for v in vals if v is not None]
        if not vals:
            return None, None
        return statistics.median(vals), max(vals)

    tm, tx = stats([c.time_err for c in cases])
    bm, bx = stats([c.bytes_err for c in cases])
    ranged = [c.in_range for c in cases if c.in_range is not None]
    spanned = [c.spans for c in cases if c.spans is not None]
    return {
        "cases": len(cases),
        "class_right": sum(c.class_ok for c in cases),
        "time_median": tm,
        "time_max": tx,
        "bytes_median": bm,
        "bytes_max": bx,
        "in_range": (sum(ranged), len(ranged)) if ranged else None,
        # of the class misses, those whose set holds the real class (low-confidence ranges)
        "misses_spanning": (
            sum(1 for c in cases if not c.class_ok and c.spans),
            sum(1 for c in cases if not c.class_ok),
        )
        if spanned
        else None,
        "spans": (sum(spanned), len(spanned)) if spanned else None,
    }

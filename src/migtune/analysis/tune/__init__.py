"""``tune``: the settings that converge, ranked by their simulated effect.

``tune(run)`` calibrates the workload from a log (a plausible *set* of workloads, see
:mod:`migtune.sim.calibrate`), builds the grid of what the chosen platform can set
(:mod:`.grid`) with faster transports when the log shows the transport is the limit,
simulates every candidate with the platform's own policy in the loop (:mod:`.evaluate`),
and recommends the fastest candidate that meets the limits for *every* plausible
workload.  When none does, it names the closest and the limit that would have to give.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migtune.analysis import recommend as rc
from migtune.analysis.tune import evaluate as ev
from migtune.analysis.tune.commands import commands as platform_commands
from migtune.analysis.tune.grid import (
    DEFAULT_ALLOW,
    FEATURES,
    LINK_EFFICIENCY,
    PLATFORMS,
    Knobs,
    Transport,
    describe,
    grid,
    is_default,
    policy_for,
    settings_for,
    transports,
)
from migtune.errors import InputError
from migtune.model import Run, Settings, to_dict
from migtune.sim.calibrate import Calibration, calibrate
from migtune.sim.calibrate.predict import Prediction, default_horizon
from migtune.units import format_bytes, format_duration
from migtune.workload import PAGE_SIZE, Workload, parse_workload

__all__ = ["Candidate", "TuneResult", "tune", "PLATFORMS", "FEATURES", "DEFAULT_ALLOW"]

DEFAULT_MAX_DOWNTIME = 2.0  # s: what most operators accept for a live migration
ASSUMED_LINK_BITS = 10e9  # --ram/--workload without --link
# candidates confirmed on the whole plausible set (the rest keep their screening figures)
CONFIRM_FIRST = 6
CONFIRM_MAX = 12
CONFIRM_ENOUGH = 3  # stop confirming once this many meet the limits


@dataclass
class Candidate:
    label: str
    knobs: Knobs
    settings: Settings
    transport: Transport
    policy: str
    prediction: Prediction | None = None
    meets_limits: bool = False
    confirmed: bool = False  # simulated on every plausible workload (else screened only)
    # not simulated: the same settings with a higher downtime limit did not converge
    inferred: bool = False
    commands: dict[str, list[str]] = field(default_factory=dict)

    @property
    def link_rate(self) -> float:
        return self.transport.link_rate

    def predicted(self) -> dict[str, Any]:
        p = self.prediction
        if p is None:
            return {}
        n = len(p.members)
        return {
            "converged_share": p.converged_count / n if n else 0.0,
            "total_time_s": p.spread("total_time_s"),
            "downtime_ms": p.spread("downtime_ms"),
            "transferred_bytes": p.spread("transferred_bytes"),
            "max_throttle_pct": p.spread("max_throttle_pct"),
            "workloads": n,
            "horizon_s": p.horizon,
            "confirmed": self.confirmed,
            "inferred": self.inferred,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "settings": to_dict(self.settings),
            "transport": self.transport.to_dict(),
            "policy": self.policy,
            "predicted": self.predicted(),
            "meets_limits": self.meets_limits,
            "commands": self.commands,
        }


@dataclass
class TuneResult:
    platform: str
    candidates: list[Candidate]
    recommendation: Candidate | None
    closest: Candidate | None
    limit_to_give: dict[str, Any] | None
    limits: dict[str, Any]
    calibration: dict[str, Any]
    observed: dict[str, Any] | None
    why: str
    notes: list[str]
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "recommendation": None
            if self.recommendation is None
            else self.recommendation.to_dict(),
            "closest": None if self.closest is None else self.closest.to_dict(),
            "limit_to_give": self.limit_to_give,
            "why": self.why,
            "candidates": [c.to_dict() for c in self.candidates],
            "calibration": self.calibration,
            "observed": self.observed,
            "limits": self.limits,
            "notes": self.notes,
            "stats": self.stats,
        }


def _allow(allow) -> set[str]:
    items = set(allow)
    unknown = items - set(FEATURES)
    if unknown:
        raise InputError(
            f"--allow: unknown feature {sorted(unknown)[0]!r} (choose from {', '.join(FEATURES)})"
        )
    return items


def _findings(run: Run) -> set[str]:
    from migtune.analysis.diagnose import diagnose

    return {f.id for f in diagnose(run).findings}


def tune(
    run_or_calibration: Run | Calibration | None = None,
    *,
    ram_bytes: int | None = None,
    workload: Workload | str | None = None,
    platform: str = "qemu",
    max_downtime: float | None = DEFAULT_MAX_DOWNTIME,
    max_time: float | None = None,
    link_rate: float | None = None,
    allow=DEFAULT_ALLOW,
    qemu_version: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    only: Callable[[Knobs], bool] | None = None,
) -> TuneResult:
    """Rank what ``platform`` can set by its simulated effect; see the module docstring.

    ``link_rate`` (bytes/s, a link's raw rate) is the dedicated network to consider, or
    with ``ram_bytes``/``workload`` the link the migration runs on.  ``max_downtime`` and
    ``max_time`` are seconds (``None``: no limit).  ``progress(done, total)`` is called as
    simulations finish.  ``only(knobs)`` narrows the grid (a lab sweep of its own size).
    """
    if platform not in PLATFORMS:
        raise InputError(
            f"--platform: unknown platform {platform!r} (choose from {', '.join(PLATFORMS)})"
        )
    allowed = _allow(allow)
    for name, v in (
        ("--max-downtime", max_downtime),
        ("--max-time", max_time),
        ("--link", link_rate),
    ):
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise InputError(f"{name}: must be positive")
    notes: list[str] = []
    findings: set[str] = set()
    tgt = rc.Target()
    observed = None
    if isinstance(run_or_calibration, Run):
        tgt = rc.target_of(run_or_calibration)
        findings = _findings(run_or_calibration)
        run_or_calibration = calibrate(run_or_calibration)
    if isinstance(run_or_calibration, Calibration):
        cal = run_or_calibration
        ram, workloads = cal.ram_bytes, list(cal.plausible)
        version = qemu_version or cal.qemu_version
        base = dataclasses.replace(cal.settings, capabilities=dict(cal.settings.capabilities))
        observed_link = cal.link_rate
        horizon = default_horizon(cal)
        calib = cal.to_dict()
        observed = cal.observed.to_dict()
        low = cal.low_confidence
        if low:
            notes.append("LOW CONFIDENCE: the calibration did not reproduce the observed run")
    elif run_or_calibration is not None:
        raise InputError("tune: expected a Run or a Calibration")
    else:
        if ram_bytes is None or workload is None:
            raise InputError("tune: give a log (--from) or both --ram and --workload")
        w = parse_workload(workload) if isinstance(workload, str) else workload
        if ram_bytes < PAGE_SIZE or w.ws > ram_bytes:
            raise InputError("--ram: must hold the workload's working set (and one page)")
        ram, workloads, version, base = int(ram_bytes), [w], qemu_version or "10.0", Settings()
        if link_rate is None:
            link_rate = ASSUMED_LINK_BITS / 8
            notes.append("link: assumed 10 Gbit/s (give --link)")
        observed_link = link_rate * LINK_EFFICIENCY
        link_rate = None  # the link itself, not a dedicated network to consider
        # ten full passes: a run still going by then has nothing to converge on
        horizon = max(600.0, 10 * ram / observed_link)
        calib = {"ram_bytes": ram, "workload": w.spec(), "plausible": [w.spec()],
                 "link_rate": observed_link, "source": "given"}  # fmt: skip
        low = False
    # a cap that bound the observed run stays: behind it, the link's speed is unknown
    cap = None
    capped = base.max_bandwidth and base.max_bandwidth < 2**60
    if capped and base.max_bandwidth <= observed_link * 1.05 and link_rate is None:
        cap = base.max_bandwidth
        notes.append(
            "the observed bandwidth cap is kept (the link behind it is unknown; give --link)"
        )
    if max_time is not None:
        horizon = max(2 * max_time, 60.0)
    ctx = ev.Context(ram, workloads, version, horizon, None, low)
    cands = []
    for tr in transports(observed_link, findings, link_rate, platform):
        for k in grid(platform, allowed, ram, base, max_downtime, cap):
            if only is not None and not only(k):
                continue
            s = settings_for(k, base, platform)
            s.qemu_version = version
            if tr.name != "observed":
                s.migration_type = "tls" if tr.name == "tls" else "tcp"
            label = describe(k, platform) + ("" if tr.name == "observed" else f"; {tr.label()}")
            cands.append(Candidate(label, k, s, tr, policy_for(k, platform),
                                   commands=platform_commands(k, tr, platform, tgt)))  # fmt: skip
    _search(ctx, cands, max_downtime, max_time, progress)
    ranked = sorted(cands, key=lambda c: (not c.confirmed, _rank(c, max_downtime, max_time)))
    rec = next((c for c in ranked if c.confirmed and c.meets_limits), None)
    closest = None if rec is not None else next((c for c in ranked if c.confirmed), None)
    give = None if closest is None else limit_to_give(closest, max_downtime, max_time)
    limits = {"max_downtime_s": max_downtime, "max_time_s": max_time, "allow": sorted(allowed),
              "link_rate": link_rate, "horizon_s": horizon}  # fmt: skip
    stats = {"candidates": len(cands), "confirmed": sum(c.confirmed for c in cands),
             "simulations": ctx.sims, "simulation_s": round(ctx.sim_seconds, 3)}  # fmt: skip
    return TuneResult(platform, ranked, rec, closest, give, limits, calib, observed,
                      why_line(rec or closest, observed, rec is not None,
                               _defaults(ranked, platform)), notes, stats)  # fmt: skip


def _search(ctx, cands: list[Candidate], max_downtime, max_time, progress) -> None:
    """Screen every candidate, then confirm the most promising on every workload."""
    total = len(cands) + CONFIRM_FIRST * len(ctx.workloads)
    done = 0
    # Without a policy, a lower downtime limit only makes converging harder: candidates
    # that differ only in it are screened from the highest limit down, and once one does
    # not converge, the lower ones are known not to either (their figures are its own).
    failed: dict[tuple, Prediction] = {}
    for c in sorted(cands, key=lambda c: -(c.settings.downtime_limit or 0)):
        family = (c.policy, c.transport, repr(dataclasses.replace(c.knobs, downtime=None)))
        if c.policy == "fixed" and family in failed:
            c.prediction, c.inferred = failed[family], True
        else:
            c.prediction = ev.predict(ctx, c.settings, c.link_rate, c.policy, screen=True)
            if c.prediction.converged_count == 0:
                failed[family] = c.prediction
        done += 1
        if progress:
            progress(done, total)
    order = sorted(cands, key=lambda c: _rank(c, max_downtime, max_time))
    meeting = 0
    best = math.inf  # worst-case time of the best confirmed candidate that meets the limits
    for i, c in enumerate(order[:CONFIRM_MAX]):
        screened = c.prediction.spread("total_time_s")["max"] or math.inf
        screened_ok = ev.meets(c.prediction, max_downtime, max_time)
        # past the first few, confirm only what could still beat the best so far: the
        # best fit's time is about what the worst plausible case can reach at best
        beats = screened_ok and screened * ev.TIME_BUCKET < best
        if i >= CONFIRM_FIRST and (not screened_ok or (meeting >= CONFIRM_ENOUGH and not beats)):
            break
        c.prediction = ev.predict(ctx, c.settings, c.link_rate, c.policy, screen=False)
        c.confirmed, c.inferred = True, False
        within = max_downtime is None or (c.settings.downtime_limit or 0) <= max_downtime + 1e-9
        c.meets_limits = within and ev.meets(c.prediction, max_downtime, max_time)
        if c.meets_limits:
            meeting += 1
            best = min(best, c.prediction.spread("total_time_s")["max"])
        done += len(ctx.workloads)
        if progress:
            progress(min(done, total), total)
    if progress:
        progress(total, total)


def _rank(c: Candidate, max_downtime, max_time):
    k = c.knobs
    complexity = sum((bool(k.xbzrle_cache), k.auto_converge, k.aggressive_throttle,
                      bool(k.multifd), k.postcopy, bool(k.max_bandwidth)))  # fmt: skip
    assumed = c.link_rate if c.transport.assumption else 0.0
    within = max_downtime is None or (c.settings.downtime_limit or 0) <= max_downtime + 1e-9
    return ev.rank_key(c.prediction, max_downtime, max_time, assumed, complexity, within)


def limit_to_give(c: Candidate, max_downtime, max_time) -> dict[str, Any]:
    """For the closest candidate: which limit it breaks in the worst case, and the value
    that would let it through."""
    p = c.prediction
    out: dict[str, Any] = {}
    if p is None:
        return out
    if p.converged_count < len(p.members):
        out["converges"] = f"{p.converged_count} of {len(p.members)} plausible workloads"
        out["horizon_s"] = p.horizon
    dt = p.spread("downtime_ms")["max"]
    if max_downtime is not None and dt is not None and dt > max_downtime * 1000:
        out["max_downtime_s"] = round(dt / 1000, 3)
    t = p.spread("total_time_s")["max"]
    if max_time is not None and t is not None and p.converged_count and t > max_time:
        out["max_time_s"] = round(t, 1)
    return out


def _defaults(cands: list[Candidate], platform: str) -> Candidate | None:
    """The candidate that is the platform's own default, if the grid has it."""
    return next(
        (c for c in cands if c.transport.name == "observed" and is_default(c.knobs, platform)), None
    )


def why_line(
    c: Candidate | None, observed: dict | None, meets: bool, default: Candidate | None = None
) -> str:
    """One line: what the candidate would do against what was observed (or, without a
    log, against the platform's defaults)."""
    if c is None or c.prediction is None:
        return "no candidate"
    p = c.prediction
    t, dt = p.spread("total_time_s"), p.spread("downtime_ms")
    n = len(p.members)
    if p.converged_count == n:
        who = f"for all {n} plausible workloads" if n > 1 else "for the workload"
        mine = (f"converges {who} in at most {format_duration(t['max'])}"
                f" with a downtime of at most {format_duration((dt['max'] or 0) / 1000)}")  # fmt: skip
    else:
        mine = f"converges for {p.converged_count} of {n} plausible workloads"
    if observed is None and default is not None and default is not c:
        dp = default.prediction
        if dp is not None and dp.converged_count == 0:
            theirs = f"does not converge within {format_duration(dp.horizon)}"
        elif dp is not None:
            theirs = f"takes up to {format_duration(dp.spread('total_time_s')['max'])}"
        else:
            theirs = "was not simulated"
        return f"it {mine}; with the platform's defaults ({default.label}) it {theirs}"
    if observed is None:
        return ("recommended: " if meets else "closest: ") + mine
    if observed.get("converged"):
        seen = (f"the observed run completed in {format_duration(observed.get('total_time_s'))}"
                f" with {format_duration((observed.get('downtime_ms') or 0) / 1000)} downtime")  # fmt: skip
    else:
        seen = (f"the observed run did not complete ({observed.get('status')} after "
                f"{format_duration(observed.get('total_time_s'))}, "
                f"{format_bytes(observed.get('transferred_bytes'))} sent)")  # fmt: skip
    return f"{'it' if meets else 'the closest'} {mine}; {seen}"

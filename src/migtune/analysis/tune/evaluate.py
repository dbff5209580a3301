"""Simulating candidates over a calibration's plausible workloads, fast enough for hundreds.

Two stages.  *Screening*: every candidate is simulated once, on the best-fitting
workload, on a guest shrunk to at most :data:`SCREEN_RAM` (RAM, working set, write
rate, link, cap and XBZRLE cache divided alike, so passes take as long as at full size:
pre-copy depends on their ratios), and ends early once its rounds repeat
(``stop_when_settled``).  *Confirming*: the most promising candidates are simulated on
every plausible workload at the calibration's own scale, and only their figures are
reported as predictions.  Workloads that cannot differ under a candidate's settings (the
throttle response without auto-converge, bytes per write without XBZRLE) are simulated
once.  The platform's policy runs in the loop of every simulation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from migtune.model import Settings
from migtune.sim.api import SimResult, simulate
from migtune.sim.calibrate.fit import Setup, search_scale, shrunk
from migtune.sim.calibrate.predict import Prediction, _key, _scaled_outcome
from migtune.sim.machine import Machine
from migtune.workload import Workload

SCREEN_RAM = 256 * 1024**2


@dataclass
class Context:
    """What every simulation of one tuning run shares."""

    ram: int
    workloads: list[Workload]
    qemu_version: str
    horizon: float
    machine: Machine | None
    low_confidence: bool = False
    sims: int = 0  # simulations run so far
    sim_seconds: float = 0.0  # their CPU time
    # predictions already made: candidates that differ only in what the simulation does
    # not see (the commands of a transport with the same rate) share them
    seen: dict = dataclasses.field(default_factory=dict)


def screen_scale(ram: int) -> int:
    return max(search_scale(ram), math.ceil(ram / SCREEN_RAM))


def simulate_one(
    ctx: Context, w: Workload, settings: Settings, link: float, policy: str, scale: int
) -> SimResult:
    setup = Setup(ctx.ram, settings, ctx.qemu_version, link, [], None, ctx.horizon,
                  ctx.machine, scale)  # fmt: skip
    ram, w2, s2, link2, _ = shrunk(setup, w)
    res = simulate(
        ram,
        w2,
        s2,
        qemu_version=ctx.qemu_version,
        link_rate=link2,
        time_limit=ctx.horizon,
        machine=ctx.machine,
        stop_when_settled=True,
        # ``fixed`` never acts: no need to poll it
        policy=None if _fixed(policy) else policy,
        policy_ram_bytes=ctx.ram,
        # a post-copy candidate switches once the first pass is done, at sync 2 (virsh
        # --postcopy-after-precopy) unless its platform's policy decides when
        postcopy_after_passes=2 if _fixed(policy) and s2.capabilities.get("postcopy-ram") else None,
    )
    ctx.sims += 1
    ctx.sim_seconds += res.wall_time
    if scale > 1:
        res.outcome = _scaled_outcome(res.outcome, scale)
    paused = res.stats.get("guest_paused_at_s")
    if paused is not None and res.outcome.total_time_s is not None and res.outcome.converged:
        # the guest stood still from the policy's pause to the switch-over: that is the
        # downtime its users see, whatever QEMU's own counter says
        seen = (res.outcome.total_time_s - paused) * 1000 + (res.outcome.downtime_ms or 0)
        res.outcome = dataclasses.replace(res.outcome, downtime_ms=round(seen, 3))
    return res


def _fixed(policy: str) -> bool:
    return policy.split(":", 1)[0] == "fixed"


def predict(
    ctx: Context,
    settings: Settings,
    link: float,
    policy: str,
    *,
    screen: bool,
) -> Prediction:
    """Simulate ``settings`` on the best fit at screening scale, or on every plausible
    workload at the calibration's scale."""
    key = (repr(dataclasses.replace(settings, migration_type=None, migration_uri=None)), link,
           policy, screen)  # fmt: skip
    if key not in ctx.seen:
        ctx.seen[key] = _predict(ctx, settings, link, policy, screen)
    return ctx.seen[key]


def _predict(
    ctx: Context, settings: Settings, link: float, policy: str, screen: bool
) -> Prediction:
    if screen:
        ws = ctx.workloads[:1]
        scale = screen_scale(ctx.ram)
    else:
        ws = ctx.workloads
        scale = search_scale(ctx.ram)
    done: dict[str, SimResult] = {}
    members = []
    for w in ws:
        key = _key(w, settings)
        if key not in done:
            done[key] = simulate_one(ctx, w, settings, link, policy, scale)
        members.append(done[key])
    return Prediction(settings, ctx.horizon, list(ws), members, ctx.low_confidence)


def meets(p: Prediction, max_downtime: float | None, max_time: float | None) -> bool:
    """Every plausible workload converges within the limits (the worst case counts)."""
    if not p.members or p.converged_count < len(p.members):
        return False
    worst_dt = p.spread("downtime_ms")["max"]
    worst_t = p.spread("total_time_s")["max"]
    if max_downtime is not None and (worst_dt is None or worst_dt > max_downtime * 1000 + 1e-6):
        return False
    return not (max_time is not None and (worst_t is None or worst_t > max_time + 1e-6))


# worst-case times within this ratio count as equally fast: the simpler candidate wins
TIME_BUCKET = 1.03


def rank_key(
    p: Prediction,
    max_downtime: float | None,
    max_time: float | None,
    assumed_rate: float = 0.0,
    complexity: int = 0,
    eligible: bool = True,
):
    """Candidates that meet the limits first: those on the observed transport, then those
    on the slowest assumed link (the least demanding assumption); among them the fastest
    worst case (3 % apart counts as a tie), the fewest features, the lowest downtime.
    Then the rest, by how many workloads converge and how far they are off the limits."""
    n = max(1, len(p.members))
    t = p.spread("total_time_s")
    dt = p.spread("downtime_ms")
    if eligible and meets(p, max_downtime, max_time):
        bucket = math.floor(math.log(max(t["max"], 1e-3)) / math.log(TIME_BUCKET))
        return (0, assumed_rate, bucket, complexity, dt["max"] or 0.0, t["median"])
    return (1, -p.converged_count / n, excess(p, max_downtime, max_time), t["median"] or math.inf)


def excess(p: Prediction, max_downtime: float | None, max_time: float | None) -> float:
    """How far the worst case is above the limits, as a ratio (1 = on the limit)."""
    if p.converged_count < len(p.members):
        return math.inf
    worst = 1.0
    dt = p.spread("downtime_ms")["max"]
    if max_downtime and dt is not None:
        worst = max(worst, dt / 1000 / max_downtime)
    t = p.spread("total_time_s")["max"]
    if max_time and t is not None:
        worst = max(worst, t / max_time)
    return worst


Progress = Callable[[int, int], None]

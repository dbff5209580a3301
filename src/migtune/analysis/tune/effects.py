"""The predicted effect of each ``diagnose`` recommendation, and remedies ranked by it.

Each recommendation's QMP commands say what it changes (capabilities, parameters); the
change is applied to the settings of the observed run and simulated over the run's
plausible workloads (:mod:`migtune.sim.calibrate`), with Proxmox's downtime doubling in
the loop for Proxmox logs.  A faster transport is simulated at the slowest common link
rate that would lift the ceiling, and says so.  Remedies the simulator cannot model
(inside the guest, another QEMU version) keep no prediction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from migtune.analysis import recommend as rc
from migtune.analysis.findings import Recommendation
from migtune.analysis.tune import evaluate as ev
from migtune.analysis.tune.grid import transports
from migtune.errors import MigtuneError
from migtune.model import Run, Settings
from migtune.settings import QMP_PARAMETERS, from_qmp_value
from migtune.sim.calibrate import Calibration, calibrate
from migtune.sim.calibrate.predict import default_horizon
from migtune.units import format_duration

SIMULATED = {
    "downtime-limit", "max-bandwidth", "auto-converge", "xbzrle", "xbzrle-cache-size",
    "multifd", "postcopy-ram", "postcopy-start", "max-cpu-throttle", "cpu-throttle-increment",
    "migration-type", "migration-network",
}  # fmt: skip


# what qemu-server lets an operator change: only then does its downtime doubling apply
PROXMOX_SETS = {"downtime-limit", "max-bandwidth", "migration-type", "migration-network"}


def _changed(r: Recommendation, s: Settings) -> Settings | None:
    caps, params = rc._qmp_requests(r)
    if r.setting == "postcopy-start":
        caps = {"postcopy-ram": True}
    new = dataclasses.replace(s, capabilities={**s.capabilities, **caps})
    for name, value in params.items():
        if name in QMP_PARAMETERS:
            setattr(new, QMP_PARAMETERS[name][0], from_qmp_value(name, value))
    if r.setting == "max-bandwidth" and params.get("max-bandwidth") == 0:
        new.max_bandwidth = 0.0
    if caps.get("multifd") and not caps.get("xbzrle"):
        new.capabilities["xbzrle"] = False  # QEMU 8.1+ refuses the two together
    return new


def _describe(p) -> str:
    n, c = len(p.members), p.converged_count
    t, dt = p.spread("total_time_s"), p.spread("downtime_ms")
    if c == 0:
        return f"does not converge within {format_duration(p.horizon)}"
    if c < n:  # the times of those that converge; the others ran to the horizon
        done = [r.outcome.total_time_s for r in p.members if r.outcome.converged]
        return (f"converges for {c} of {n} plausible workloads (in {format_duration(min(done))}"
                f"-{format_duration(max(done))}); the others do not within "
                f"{format_duration(p.horizon)}")  # fmt: skip
    span = format_duration(t["median"])
    if t["max"] > t["min"] * 1.05:
        span += f" ({format_duration(t['min'])}-{format_duration(t['max'])})"
    return f"converges in ~{span}, downtime ~{format_duration((dt['median'] or 0) / 1000)}"


def predict_effects(
    run: Run,
    diagnosis,
    *,
    calibration: Calibration | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Add ``predicted`` to each recommendation of ``diagnosis`` the simulator can model,
    and order each finding's recommendations by it (converging fastest first, then the
    ones it cannot tell, then those predicted not to converge)."""
    cal = calibration or calibrate(run)
    platform = "proxmox" if run.format == "proxmox" else "qemu"
    ctx = ev.Context(cal.ram_bytes, list(cal.plausible), cal.qemu_version,
                     default_horizon(cal), cal.machine, cal.low_confidence)  # fmt: skip
    ids = {f.id for f in diagnosis.findings}
    fast = [t for t in transports(cal.link_rate, ids | {"link-bound"}, None, platform)
            if t.name != "observed"]  # fmt: skip
    recs = [r for f in diagnosis.findings for r in f.recommendations if r.setting in SIMULATED]
    cache: dict[tuple, Any] = {}
    for i, r in enumerate(recs):
        s = _changed(r, cal.settings)
        link, assumption = cal.link_rate, None
        if r.setting in ("migration-type", "migration-network"):
            if not fast:
                continue
            link, assumption = fast[0].link_rate, fast[0].assumption
        policy = "fixed"
        if platform == "proxmox" and r.setting in PROXMOX_SETS:
            policy = f"proxmox:downtime={int(round((s.downtime_limit or 0.1) * 1000))}ms"
        elif platform == "proxmox":
            assumption = "with plain QEMU or libvirt: Proxmox cannot set this"
        key = (repr(s), link, policy)
        if key not in cache:
            try:
                cache[key] = ev.predict(ctx, s, link, policy, screen=False)
            except MigtuneError:  # a combination QEMU refuses: nothing to predict
                cache[key] = None
        p = cache[key]
        if p is None:
            continue
        n = len(p.members)
        r.predicted = {
            "effect": _describe(p) + (f" ({assumption})" if assumption else ""),
            "converged_share": p.converged_count / n if n else 0.0,
            "total_time_s": p.spread("total_time_s"),
            "downtime_ms": p.spread("downtime_ms"),
            "transferred_bytes": p.spread("transferred_bytes"),
            "max_throttle_pct": p.spread("max_throttle_pct"),
            "horizon_s": p.horizon,
            "assumption": assumption,
        }
        if progress:
            progress(i + 1, len(recs))
    for f in diagnosis.findings:
        f.recommendations.sort(key=_order)
    return cal


def _order(r: Recommendation):
    p = r.predicted
    if p is None:
        return (2, 0.0)
    if p["converged_share"] == 0:
        return (3, 0.0)
    worst = p["total_time_s"]["max"] or math.inf
    return (0 if p["converged_share"] == 1 else 1, worst)

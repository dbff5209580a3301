"""What-ifs over a calibration's plausible set: every member simulated, min / median / max.

The horizon: a what-if never stops before the observed run's duration, and by default
runs long enough to finish - the largest of 3 x the observed duration, 3 full passes
over the RAM at the link rate, and 1 h.  A member still running then "did not finish
within H" (``finished: false`` in JSON), which is a result, not a time.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migtune.model import Settings
from migtune.sim.api import SimResult, simulate
from migtune.sim.calibrate.fit import Setup, search_scale, shrunk
from migtune.units import format_bytes, format_duration, parse_duration
from migtune.workload import Workload

if TYPE_CHECKING:
    from migtune.sim.calibrate import Calibration

MIN_HORIZON = 3600.0


def default_horizon(cal: Calibration) -> float:
    observed = cal.observed_duration or 0.0
    full_passes = 3.0 * cal.ram_bytes / cal.link_rate if cal.link_rate else 0.0
    return max(3.0 * observed, full_passes, MIN_HORIZON)


@dataclass
class Prediction:
    """One set of settings evaluated over every plausible workload."""

    settings: Settings
    horizon: float
    workloads: list[Workload]
    members: list[SimResult]
    low_confidence: bool = False
    notes: list[str] = field(default_factory=list)

    def finished(self, r: SimResult) -> bool:
        return r.outcome.status in ("completed", "failed")

    @property
    def converged_count(self) -> int:
        return sum(1 for r in self.members if r.outcome.converged)

    @property
    def result(self) -> SimResult:
        """The median member (by total time, then bytes sent): the one shown in detail."""
        order = sorted(
            range(len(self.members)),
            key=lambda i: (
                self.members[i].outcome.total_time_s or float("inf"),
                self.members[i].outcome.transferred_bytes or 0,
            ),
        )
        return self.members[order[(len(order) - 1) // 2]]

    def spread(self, key: str) -> dict[str, float | None]:
        vals = []
        for r in self.members:
            v = getattr(r.outcome, key)
            if v is not None:
                vals.append(float(v))
        if not vals:
            return {"min": None, "median": None, "max": None}
        return {"min": min(vals), "median": float(statistics.median(vals)), "max": max(vals)}

    def summary(self) -> dict[str, Any]:
        n = len(self.members)
        unfinished = sum(1 for r in self.members if not self.finished(r))
        return {
            "members": n,
            "converged": self.converged_count,
            "did_not_finish": unfinished,
            "horizon_s": self.horizon,
            "total_time_s": self.spread("total_time_s"),
            "transferred_bytes": self.spread("transferred_bytes"),
            "downtime_ms": self.spread("downtime_ms"),
            "passes": self.spread("passes"),
            "max_throttle_pct": self.spread("max_throttle_pct"),
        }

    def verdict(self) -> str:
        """One plain sentence: converges (in min-max) or did not finish within H."""
        n, c = len(self.members), self.converged_count
        h = format_duration(self.horizon)
        t = self.spread("total_time_s")
        if c == n:
            span = _span_text(t["min"], t["max"], format_duration)
            out = f"converges in {span}" + (f" (all {n} plausible workloads)" if n > 1 else "")
        elif c == 0:
            out = f"did not finish within {h}" + (
                f" (none of {n} plausible workloads)" if n > 1 else ""
            )
        else:
            done = [r.outcome.total_time_s for r in self.members if r.outcome.converged]
            out = (
                f"converges for {c} of {n} plausible workloads (in "
                f"{_span_text(min(done), max(done), format_duration)}); the others did not "
                f"finish within {h}: the log cannot tell which, low confidence"
            )
        if self.low_confidence:
            out += " [low confidence: the replay did not reproduce the observed outcome]"
        return out

    def to_dict(self) -> dict[str, Any]:
        """The median member's result (``SimResult.to_dict()`` keys) plus the set's range."""
        d = self.result.to_dict()
        d["finished"] = self.finished(self.result)
        d["horizon_s"] = self.horizon
        d["range"] = self.summary()
        d["verdict"] = self.verdict()
        d["low_confidence"] = self.low_confidence
        # the plausible workloads disagree on whether it converges: the log cannot tell
        d["outcome_uncertain"] = 0 < self.converged_count < len(self.members)
        d["notes"] = self.notes
        d["members"] = [
            {
                "workload": w.spec(),
                "finished": self.finished(r),
                "settled_from_s": r.stats.get("settled_from_s"),
                **r.outcome.to_dict(),
            }
            for w, r in zip(self.workloads, self.members, strict=True)
        ]
        return d


def _span_text(lo, hi, fmt) -> str:
    if lo is None:
        return "?"
    return fmt(lo) if hi is None or hi <= lo * 1.02 else f"{fmt(lo)}-{fmt(hi)}"


def _scaled_schedule(cal: Calibration, settings: Settings) -> tuple[list, list[str]]:
    """The observed setting changes, adapted to the what-if: when the what-if sets its
    own downtime limit, a platform's later steps keep their ratio to the first limit
    (Proxmox doubles whatever it started from); a bandwidth set by the what-if wins."""
    notes: list[str] = []
    out = []
    base = cal.settings.downtime_limit
    new = settings.downtime_limit
    for t, a in cal.schedule:
        name, _, value = a.partition("=")
        if name == "downtime-limit" and new is not None and base and new != base:
            v = parse_duration(value) * new / base
            out.append((t, f"downtime-limit={v * 1000:.0f}ms"))
        elif name == "max-bandwidth" and settings.max_bandwidth != cal.settings.max_bandwidth:
            continue
        else:
            out.append((t, a))
    if cal.schedule and new is not None and base and new != base:
        notes.append("the platform's downtime steps keep their ratio to the new limit")
    return out, notes


def _key(w: Workload, settings: Settings) -> str:
    """Members that cannot differ under these settings are simulated once."""
    caps = settings.capabilities
    if not caps.get("auto-converge"):
        w = dataclasses.replace(w, cpu=None)
    if not caps.get("xbzrle"):
        w = dataclasses.replace(w, bytes_per_write=8)
    return w.spec()


def what_if(
    cal: Calibration,
    settings: Settings,
    *,
    horizon: float | None = None,
    record: str | Path | None = None,
    **kw: Any,
) -> Prediction:
    """Simulate every plausible workload under ``settings`` (``time_limit`` is accepted
    as the horizon; neither goes below the observed duration)."""
    limit = kw.pop("time_limit", None)
    h = horizon or limit or default_horizon(cal)
    h = max(h, cal.observed_duration or 0.0)
    schedule, notes = _scaled_schedule(cal, settings)
    version = kw.pop("qemu_version", None) or cal.qemu_version
    link = kw.pop("link_rate", None) or cal.link_rate
    pc = kw.pop("postcopy_after", None)
    if pc is None and cal.postcopy_after is not None and "postcopy_after_passes" not in kw:
        pc = cal.postcopy_after
    if kw.get("postcopy_after_passes") is not None:
        pc = None
    if not settings.capabilities.get("postcopy-ram"):
        pc, kw["postcopy_after_passes"] = None, None
    k = search_scale(cal.ram_bytes)
    setup = Setup(cal.ram_bytes, settings, version, link, schedule, pc, h, cal.machine, k)
    # members are sampled as the log was; the recorded member at the machine's rate
    asked_interval = kw.pop("sample_interval", None)
    interval = asked_interval or cal.sample_interval

    def run(w: Workload, scale: int, rec=None) -> SimResult:
        ram, w2, s2, link2, sched = shrunk(dataclasses.replace(setup, scale=scale), w)
        res = simulate(
            ram,
            w2,
            s2,
            qemu_version=version,
            link_rate=link2,
            time_limit=h,
            schedule=sched or None,
            postcopy_after=pc,
            machine=cal.machine,
            record=rec,
            stop_when_settled=rec is None,
            sample_interval=interval if rec is None else asked_interval,
            **kw,
        )
        if scale > 1:  # bytes and page counts back to the full-size guest
            res.outcome = _scaled_outcome(res.outcome, scale)
            res.passes = [_scaled_pass(p, scale) for p in res.passes]
            res.stats["ram_bytes"] = cal.ram_bytes
            res.stats["link_rate"] = link
            res.stats["workload"] = w.spec()
        return res

    done: dict[str, SimResult] = {}
    members = []
    for w in cal.plausible:
        key = _key(w, settings)
        if key not in done:
            done[key] = run(w, k)
        members.append(done[key])
    pred = Prediction(settings, h, list(cal.plausible), members, cal.low_confidence, notes)
    settled = [r.stats["settled_from_s"] for r in done.values() if r.stats.get("settled_from_s")]
    if settled:
        notes.append(
            f"{len(settled)} of {len(done)} simulations repeated the same pass with nothing "
            f"pending (from {format_duration(min(settled))}): extrapolated to the horizon"
        )
    i = pred.members.index(pred.result)
    if record:
        # the member shown in detail is recorded at full size
        full = run(cal.plausible[i], 1, record)
        pred.members = [full if r is pred.members[i] else r for r in pred.members]
    if k > 1:
        notes.append(
            f"simulated on a guest {k} times smaller with the same pass times "
            "(bytes scaled back)" + ("; the recorded member at full size" if record else "")
        )
    return pred


_PAGE_FIELDS = ("dirty_pages", "new_dirty_pages", "transferred", "threshold")


def _scaled_pass(p: dict[str, Any], k: int) -> dict[str, Any]:
    return {
        key: (v * k if key in _PAGE_FIELDS and isinstance(v, int | float) else v)
        for key, v in p.items()
    }


def _scaled_outcome(o, k: int):
    xb = o.xbzrle
    if xb is not None:
        xb = dataclasses.replace(
            xb,
            pages=None if xb.pages is None else xb.pages * k,
            bytes=None if xb.bytes is None else xb.bytes * k,
            overflow=None if xb.overflow is None else xb.overflow * k,
        )
    sent = None if o.transferred_bytes is None else o.transferred_bytes * k
    return dataclasses.replace(o, transferred_bytes=sent, xbzrle=xb)


def describe_range(pred: Prediction) -> dict[str, str]:
    """Text cells for the what-if column: median with the set's min-max."""
    out = {}
    for key, fmt in (
        ("total_time_s", format_duration),
        ("transferred_bytes", format_bytes),
    ):
        s = pred.spread(key)
        if s["median"] is None:
            out[key] = "-"
        elif s["max"] <= s["min"] * 1.02:
            out[key] = fmt(s["median"])
        else:
            out[key] = f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"
    # an unfinished member's time is the horizon, not a time: the finished members'
    # range, and how many did not finish
    done = [r.outcome.total_time_s for r in pred.members if pred.finished(r)]
    done = [t for t in done if t is not None]
    late = len(pred.members) - len(done)
    if late and done:
        lo, hi = min(done), max(done)
        span = fmt_t = format_duration(lo)
        if hi > lo * 1.02:
            span = f"{fmt_t}-{format_duration(hi)}"
        out["total_time_s"] = (
            f"{span}, {late}/{len(pred.members)} > {format_duration(pred.horizon)}"
        )
    elif late:
        out["total_time_s"] = f"> {format_duration(pred.horizon)}"
    return out

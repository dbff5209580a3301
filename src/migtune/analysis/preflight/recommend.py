"""Do the settings meet the limits, and which settings would?

:func:`assess` reads a prediction over the plausible set against the limits.
:func:`recommend` is the one place that asks for better settings: it hands the
measurement's calibration to :func:`migtune.analysis.tune.tune`, which simulates what
the platform can set (downtime limit, bandwidth, XBZRLE, auto-converge, multifd,
post-copy when allowed) over the whole plausible set with the platform's policy in the
loop, and keeps the fastest candidate that meets the limits for every member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migtune.analysis.tune import tune
from migtune.model import Settings, to_dict
from migtune.sim.calibrate import Calibration
from migtune.sim.calibrate.predict import Prediction
from migtune.units import format_duration


@dataclass(frozen=True)
class Limits:
    max_downtime: float | None = 2.0  # s (tune's default: what most operators accept)
    max_time: float = 1800.0  # s

    def to_dict(self) -> dict[str, Any]:
        return {"max_downtime_s": self.max_downtime, "max_time_s": self.max_time}


def assess(pred: Prediction, limits: Limits) -> dict[str, Any]:
    """Converges within the time limit (a majority of the plausible workloads), the
    ranges over those that converge, and whether the limits are met."""
    done = [r.outcome for r in pred.members if r.outcome.converged]
    n, k = len(pred.members), len(done)
    times = sorted(o.total_time_s for o in done if o.total_time_s is not None)
    downs = sorted(o.downtime_ms / 1000 for o in done if o.downtime_ms is not None)
    converges = 2 * k > n
    first = pred.members[0].outcome  # the best fit (its middle variant)
    best = first.total_time_s if first.converged else None
    why = None
    if not converges:
        why = (
            f"does not converge within {format_duration(limits.max_time)} for "
            f"{n - k} of {n} plausible workloads"
        )
    elif limits.max_downtime is not None and downs and _median(downs) > limits.max_downtime:
        why = (
            f"the predicted downtime {_median(downs) * 1000:.0f} ms exceeds "
            f"{limits.max_downtime * 1000:.0f} ms"
        )
    return {
        "converges": converges,
        "certain": k in (0, n),
        "converged_members": k,
        "members": n,
        "horizon_s": pred.horizon,
        "total_time_s": {**_range(times), "best_fit": best},
        "downtime_s": _range(downs),
        "meets_limits": why is None,
        "why_not": why,
    }


def _median(v: list[float]) -> float:
    return v[(len(v) - 1) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def _range(v: list[float]) -> dict[str, float | None]:
    if not v:
        return {"min": None, "median": None, "max": None}
    return {"min": v[0], "median": _median(v), "max": v[-1]}


@dataclass
class Recommended:
    settings: Settings
    prediction: Prediction
    check: dict[str, Any]
    changes: list[str]  # "downtime-limit=2s", "auto-converge=on"
    flags: list[str]  # the same as migtune migrate flags
    commands: dict[str, list[str]]  # platform -> commands
    platform: str = "qemu"
    source: str = "tune"
    notes: list[str] = field(default_factory=list)

    def platform_commands(self) -> list[str]:
        """The platform's own commands (QMP for plain QEMU)."""
        return self.commands.get(self.platform) or self.commands.get("qmp", [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "migtune_flags": self.flags,
            "commands": self.commands,
            "platform": self.platform,
            "settings": to_dict(self.settings),
            "prediction": self.check,
            "source": self.source,
            "notes": self.notes,
        }


def recommend(
    cal: Calibration,
    settings: Settings,
    limits: Limits,
    link_rate: float | None,
    allow: tuple[str, ...],
    platform: str,
) -> tuple[Recommended | None, dict[str, Any] | None]:
    """The fastest settings ``tune`` finds that meet the limits for every plausible
    workload (None when none does), and, then, the closest candidate and the limit it
    would need (tune's ``limit_to_give``)."""
    res = tune(
        cal,
        platform=platform,
        max_downtime=limits.max_downtime,
        max_time=limits.max_time,
        link_rate=link_rate,
        allow=allow,
        qemu_version=cal.qemu_version,
    )
    c = res.recommendation
    if c is None or c.prediction is None:
        closest = None
        if res.closest is not None:
            closest = {"label": res.closest.label, "limit_to_give": res.limit_to_give}
        return None, closest
    rec = Recommended(
        settings=c.settings,
        prediction=c.prediction,
        check=assess(c.prediction, limits),
        changes=_changes(settings, c.settings) or ["none"],
        flags=_flags(settings, c.settings),
        commands=c.commands,
        platform=platform,
        source="tune",
        notes=[f"tune: {c.label}; policy {c.policy}", *res.notes],
    )
    return rec, None


def _changes(old: Settings, new: Settings) -> list[str]:
    """What differs, in QEMU's names: ``downtime-limit=2 s``, ``multifd=on (4)``."""
    out = []
    if new.downtime_limit is not None and new.downtime_limit != old.downtime_limit:
        out.append(f"downtime-limit={format_duration(new.downtime_limit)}")
    if new.max_bandwidth is not None and new.max_bandwidth != old.max_bandwidth:
        unlimited = new.max_bandwidth == 0 or new.max_bandwidth >= 2**60
        out.append(
            "max-bandwidth=unlimited" if unlimited else f"max-bandwidth={_mib(new.max_bandwidth)}"
        )
    for cap in ("xbzrle", "auto-converge", "multifd", "postcopy-ram"):
        was, now = bool(old.capabilities.get(cap)), bool(new.capabilities.get(cap))
        if was != now:
            detail = ""
            if cap == "multifd" and now and new.multifd_channels:
                detail = f" ({new.multifd_channels} channels)"
            if cap == "xbzrle" and now and new.xbzrle_cache_size:
                detail = f" (cache {new.xbzrle_cache_size // 2**20} MiB)"
            out.append(f"{cap}={'on' if now else 'off'}{detail}")
    if new.cpu_throttle_initial and new.cpu_throttle_initial != old.cpu_throttle_initial:
        out.append(f"cpu-throttle-initial={new.cpu_throttle_initial}")
    if new.cpu_throttle_increment and new.cpu_throttle_increment != old.cpu_throttle_increment:
        out.append(f"cpu-throttle-increment={new.cpu_throttle_increment}")
    return out


def _mib(rate: float) -> str:
    return f"{rate / 2**20:g}MiB/s"


def _flags(old: Settings, new: Settings) -> list[str]:
    """The ``migtune migrate`` flags that put ``new`` in force over ``old``."""
    out = []
    if new.downtime_limit is not None and new.downtime_limit != old.downtime_limit:
        out.append(f"--downtime-limit {new.downtime_limit:g}s")
    if new.max_bandwidth is not None and new.max_bandwidth != old.max_bandwidth:
        unlimited = new.max_bandwidth == 0 or new.max_bandwidth >= 2**60
        out.append(f"--max-bandwidth {0 if unlimited else _mib(new.max_bandwidth)}")
    flag = {"xbzrle": "xbzrle", "auto-converge": "auto-converge", "multifd": "multifd"}
    for cap, name in flag.items():
        was, now = bool(old.capabilities.get(cap)), bool(new.capabilities.get(cap))
        if was != now:
            out.append(f"--{name}" if now else f"--no-{name}")
    if new.capabilities.get("xbzrle") and new.xbzrle_cache_size:
        out.append(f"--xbzrle-cache-size {new.xbzrle_cache_size // 2**20}MiB")
    if new.capabilities.get("multifd") and new.multifd_channels:
        out.append(f"--multifd-channels {new.multifd_channels} --dest-qmp DEST_SOCKET")
    if new.capabilities.get("postcopy-ram") and not old.capabilities.get("postcopy-ram"):
        out.append("--postcopy --dest-qmp DEST_SOCKET")
    if new.cpu_throttle_initial and new.cpu_throttle_initial != old.cpu_throttle_initial:
        out.append(f"--cpu-throttle-initial {new.cpu_throttle_initial}")
    if new.cpu_throttle_increment and new.cpu_throttle_increment != old.cpu_throttle_increment:
        out.append(f"--cpu-throttle-increment {new.cpu_throttle_increment}")
    return out

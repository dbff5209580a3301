"""Do the settings meet the limits, and which settings would?

:func:`assess` reads a prediction over the plausible set against the limits.
:func:`recommend` is the one place that asks for better settings: it uses
``migtune.analysis.tune.tune`` when that module exists, else a small search of its
own over the changes an operator makes first (a higher downtime limit within the
allowance, the bandwidth cap up to the link, auto-converge, post-copy when allowed),
each simulated over the whole plausible set; the smallest change that meets the
limits wins.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

from migtune.analysis import recommend as commands
from migtune.model import Settings, to_dict
from migtune.sim.calibrate import Calibration
from migtune.sim.calibrate.predict import Prediction, what_if
from migtune.units import format_duration, format_rate

PLATFORM_KEYS = {"qemu": "qmp", "qmp": "qmp", "proxmox": "proxmox", "libvirt": "libvirt"}


@dataclass(frozen=True)
class Limits:
    max_downtime: float | None = None  # s; None: whatever the downtime limit allows
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
    source: str = "preflight-search"  # or "tune"
    notes: list[str] = field(default_factory=list)

    def platform_commands(self) -> list[str]:
        return self.commands.get(PLATFORM_KEYS.get(self.platform, "qmp"), [])

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
    pred: Prediction,
    check: dict[str, Any],
    limits: Limits,
    link_rate: float | None,
    allow: tuple[str, ...],
    platform: str,
) -> Recommended | None:
    """Settings that meet the limits, or None when nothing allowed does.  The settings
    in force come back unchanged (no changes) when they meet the limits already."""
    if check["meets_limits"]:
        return _recommended(cal, settings, [], check, platform, pred)
    return _search(cal, settings, limits, link_rate, allow, platform)


def _options(
    s: Settings, limits: Limits, link_rate: float | None, allow: tuple[str, ...]
) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if limits.max_downtime is not None and limits.max_downtime > (s.downtime_limit or 0.3):
        out.append(("downtime-limit", limits.max_downtime))
    cap = s.max_bandwidth or 0
    if link_rate and 0 < cap < link_rate:
        out.append(("max-bandwidth", link_rate))
    if "auto-converge" in allow and not s.capabilities.get("auto-converge"):
        out.append(("auto-converge", True))
    if "postcopy" in allow and not s.capabilities.get("postcopy-ram"):
        out.append(("postcopy-ram", True))
    return out


def _apply(s: Settings, changes: tuple[tuple[str, Any], ...]) -> Settings:
    new = dataclasses.replace(s, capabilities=dict(s.capabilities))
    for name, value in changes:
        if name == "downtime-limit":
            new.downtime_limit = value
        elif name == "max-bandwidth":
            new.max_bandwidth = value
        else:
            new.capabilities[name] = True
    return new


def _search(cal, s, limits, link_rate, allow, platform) -> Recommended | None:
    """Every combination of the allowed changes, fewest first (post-copy last: it is the
    one that puts the VM at risk of a network failure); the first that meets the limits."""
    opts = _options(s, limits, link_rate, allow)
    combos = [c for r in range(1, len(opts) + 1) for c in itertools.combinations(opts, r)]
    combos.sort(key=lambda c: (any(n == "postcopy-ram" for n, _ in c), len(c)))
    for combo in combos:
        new = _apply(s, combo)
        kw = {"postcopy_after_passes": 2} if new.capabilities.get("postcopy-ram") else {}
        pred = what_if(cal, new, horizon=limits.max_time, **kw)
        check = assess(pred, limits)
        if check["meets_limits"]:
            rec = _recommended(cal, new, list(combo), check, platform, pred)
            rec.notes.append(
                f"{len(combos)} combinations of {', '.join(n for n, _ in opts)} tried, "
                "fewest changes first"
            )
            return rec
    return None


def _recommended(cal, s, combo, check, platform, pred=None) -> Recommended:
    changes, flags = [], []
    cmds: dict[str, list[str]] = {"qmp": [], "proxmox": [], "libvirt": []}
    tgt = commands.Target()
    for name, value in combo:
        if name == "downtime-limit":
            changes.append(f"downtime-limit={format_duration(value)}")
            flags.append(f"--downtime-limit {value:g}s")
            r = commands.downtime_limit(value, tgt)
        elif name == "max-bandwidth":
            changes.append(f"max-bandwidth={format_rate(value)}")
            flags.append(f"--max-bandwidth {int(value)}B/s")
            r = commands.bandwidth(value, tgt, "up to the link")
        elif name == "auto-converge":
            changes.append("auto-converge=on")
            flags.append("--auto-converge")
            r = commands.auto_converge(tgt)
        else:
            changes.append("post-copy after the first pass")
            flags.append("--postcopy")
            r = commands.postcopy(tgt)
        for key in cmds:
            cmds[key] += r.commands.get(key, [])
    if pred is None:
        pred = what_if(cal, s, horizon=check["horizon_s"])
    return Recommended(s, pred, check, changes, flags, cmds, platform)

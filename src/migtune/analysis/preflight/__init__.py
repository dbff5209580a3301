"""``preflight``: will this VM migrate, before starting?

:func:`preflight` measures the running guest through QMP without migrating it
(:mod:`migtune.qemu.dirtyrate`: ``calc-dirty-rate`` over periods of several lengths,
the RAM size, a sample of its pages for the zero-page share), infers the plausible
workloads behind the measurement (:mod:`.infer`), simulates the migration under the
settings in force (``query-migrate-parameters`` / ``-capabilities``, with any
overrides the caller gives) for every one of them, and asks the tuner for settings
that meet the limits when those do not (:mod:`.recommend`).

It reads and never writes migration parameters or capabilities: the settings QEMU
reports before and after are compared, and a difference (someone else's change) is
a warning.  A migration in progress, a VM that is not running, or a QMP socket that
is gone are refused before anything is measured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from migtune import __version__
from migtune.analysis.preflight.infer import Inference, infer
from migtune.analysis.preflight.recommend import Limits, Recommended, assess, recommend
from migtune.analysis.tune import DEFAULT_ALLOW
from migtune.errors import EXIT_NOT_CONVERGED, EXIT_OK, InputError
from migtune.model import Settings, to_dict
from migtune.outcome import Outcome
from migtune.qemu.dirtyrate import ZERO_SAMPLES, DirtyMeasurement, measure
from migtune.qemu.params import settings_from_qemu
from migtune.qemu.qmp import QMP
from migtune.settings import describe as describe_settings
from migtune.settings import effective
from migtune.sim.calibrate import Calibration
from migtune.sim.calibrate.predict import Prediction, what_if
from migtune.sim.machine import Machine
from migtune.units import format_bits, format_bytes, format_duration, format_rate

__all__ = ["PreflightResult", "preflight", "predict_from_measurement"]

# QEMU's migration states in which a migration is under way (supervisor.RUNNING).
MIGRATING = (
    "setup", "active", "device", "pre-switchover", "wait-unplug", "postcopy-active",
    "postcopy-paused", "postcopy-recover-setup", "postcopy-recover", "cancelling", "colo",
)  # fmt: skip
DEFAULT_MAX_TIME = 1800.0
DEFAULT_MAX_DOWNTIME = 2.0  # s, as tune: what most operators accept


@dataclass
class PreflightResult:
    verdict: str  # go | no-go
    reason: str
    measurement: DirtyMeasurement
    inference: Inference
    settings: Settings  # what the prediction assumed: in force plus overrides
    in_force: Settings  # as QEMU reported it
    current: Prediction
    current_check: dict[str, Any]
    recommended: Recommended | None
    limits: Limits
    link_rate: float
    link_how: str
    qemu_version: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.verdict == "go" else EXIT_NOT_CONVERGED

    def to_dict(self) -> dict[str, Any]:
        rec = self.recommended
        return {
            "migtune_version": __version__,
            "verdict": self.verdict,
            "reason": self.reason,
            "qemu_version": self.qemu_version,
            "ram_bytes": self.measurement.ram_bytes,
            "measurement": self.measurement.to_dict(),
            "workload": {
                "plausible": [w.spec() for w in self.inference.workloads],
                "inferred": self.inference.ranges(),
                "description": self.inference.describe(),
                "points": [dataclasses.asdict(p) for p in self.inference.points],
            },
            "limits": self.limits.to_dict(),
            "link_rate_bytes_per_s": self.link_rate,
            "link_how": self.link_how,
            "settings_in_force": to_dict(self.in_force),
            "settings": to_dict(self.settings),
            "current": {**self.current_check, "verdict_text": self.current.verdict()},
            "recommended": rec.to_dict() if rec is not None else None,
            "notes": self.notes,
            "warnings": self.warnings,
        }

    def text(self) -> str:
        c = self.current_check
        m = self.measurement
        lines = [f"preflight: {self.verdict.upper()} - {self.reason}"]
        rates = sorted({p.rate for p in m.periods})
        lines.append(
            f"  measured {format_duration(m.duration)} with calc-dirty-rate ({m.mode}): "
            f"{format_rate(rates[0])}-{format_rate(rates[-1])} over periods of "
            f"{', '.join(f'{p.length:g}' for p in self.inference.points)} s"
        )
        steady = m.steadiness()
        if steady is not None:
            lines.append(
                "  the guest is steady"
                if steady < 0.15
                else f"  the guest is not steady: repeats differ by {steady:.0%}"
            )
        zero = "unknown" if m.zero_share is None else f"{m.zero_share:.0%}"
        lines.append(f"  RAM {m.ram_bytes // 2**20} MiB, zero pages {zero} ({m.zero_how})")
        bpw = m.bytes_per_write()
        if bpw is not None:
            lines.append(
                f"  a rewrite changes {bpw[1]} bytes of a page (quartiles {bpw[0]}-{bpw[2]}, "
                f"{len(m.bytes_changed)} pages seen changing)"
            )
        lines.append(f"  guest: {self.inference.describe()}")
        lines.append(f"  settings: {describe_settings(self.settings)}; link {self.link_how}")
        lines.append(f"  with these settings: {_check_text(c)}")
        rec = self.recommended
        if rec is not None:
            how = "fastest found" if c["meets_limits"] else "recommended"
            lines.append(f"  {how}: {', '.join(rec.changes)}: {_check_text(rec.check)}")
            for cmd in rec.platform_commands():
                lines.append(f"      {cmd}")
            if rec.flags:
                lines.append(f"      migtune migrate ... {' '.join(rec.flags)}")
        elif not c["meets_limits"]:
            closest = c.get("closest") or {}
            give = closest.get("limit_to_give")
            lines.append(
                "  nothing allowed meets the limits"
                + (f"; closest: {closest.get('label')} (needs {give})" if give else "")
            )
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return "\n".join(lines)


def _check_text(c: dict[str, Any]) -> str:
    n, k = c["members"], c["converged_members"]
    t, d = c["total_time_s"], c["downtime_s"]
    if k == 0:
        return f"does not converge within {format_duration(c['horizon_s'])} (none of {n} plausible workloads)"
    span = _span(t["min"], t["max"], format_duration)
    out = f"converges in {span} (median {format_duration(t['median'])})"
    if d["max"] is not None:
        out += f", downtime {_span(d['min'], d['max'], lambda s: f'{s * 1000:.0f} ms')}"
    if k < n:
        out += f"; {k} of {n} plausible workloads converge"
    if not c["meets_limits"] and c["why_not"]:
        out += f" - {c['why_not']}"
    return out


def _span(lo: float | None, hi: float | None, fmt) -> str:
    if lo is None:
        return "?"
    return fmt(lo) if hi is None or hi <= lo * 1.03 else f"{fmt(lo)}-{fmt(hi)}"


def _merge(in_force: Settings, overrides: Settings | None) -> Settings:
    """The settings QEMU has, with what the caller will set on top (``None`` fields keep
    what QEMU has)."""
    out = dataclasses.replace(in_force, capabilities=dict(in_force.capabilities))
    if overrides is None:
        return out
    for f in dataclasses.fields(Settings):
        if f.name in ("capabilities", "extra"):
            continue
        value = getattr(overrides, f.name)
        if value is not None:
            setattr(out, f.name, value)
    out.capabilities.update(overrides.capabilities)
    return out


def _link(link_rate: float | None, s: Settings, machine: Machine) -> tuple[float, str]:
    if link_rate is not None:
        return link_rate, f"{format_bits(link_rate)} (--link)"
    cap = s.max_bandwidth or 0
    lab = f"the lab's loopback ({format_bits(machine.link_rate)}) assumed"
    if cap and cap < 2**60:
        return (
            machine.link_rate,
            f"not given (--link): the {format_rate(cap)} cap binds; {lab} behind it",
        )
    return machine.link_rate, f"not given (--link): {lab}"


def predict_from_measurement(
    m: DirtyMeasurement,
    settings: Settings,
    *,
    qemu_version: str = "10.0",
    link_rate: float | None = None,
    limits: Limits | None = None,
    machine: Machine | None = None,
    allow: tuple[str, ...] = DEFAULT_ALLOW,
    platform: str = "qemu",
    recommend_settings: bool = True,
    history: Calibration | None = None,
) -> tuple[Inference, Calibration, Prediction, dict[str, Any], Recommended | None, str]:
    """The analysis half of :func:`preflight`, without QMP: measurement -> plausible
    workloads -> prediction under ``settings`` -> recommendation (tests and replays;
    ``recommend_settings=False`` skips the tuner).  ``history``: the VM's calibration
    from its past runs (``migtune.history.calibration_for_vm``), whose plausible
    workloads join the measured ones (:func:`with_history`)."""
    limits = limits or Limits()
    machine = machine or Machine()
    s = effective(settings)
    s.qemu_version = qemu_version
    link, link_how = _link(link_rate, s, machine)
    inf = infer(m, machine)
    if history is not None:
        inf = with_history(inf, history, m.ram_bytes)
    cal = Calibration(
        ram_bytes=m.ram_bytes,
        settings=s,
        workload=inf.workloads[0],
        link_rate=link,
        qemu_version=qemu_version,
        time_limit=limits.max_time,
        observed=Outcome(False, "active", None, None, None, None, None, None),
        notes=list(inf.notes),
        plausible=list(inf.workloads),
        machine=machine,
    )
    pred = what_if(cal, s, horizon=limits.max_time)
    check = assess(pred, limits)
    rec, closest = None, None
    if recommend_settings:
        rec, closest = recommend(cal, s, limits, link_rate, allow, platform)
    if closest is not None:
        check["closest"] = closest  # what tune came nearest with, and the limit it needs
    return inf, cal, pred, check, rec, link_how


def with_history(inf: Inference, history: Calibration, ram_bytes: int) -> Inference:
    """The measured plausible set widened by the workloads the VM's past migrations showed.

    A 10 s measurement sees what the guest does now; yesterday's migration saw what it
    did for the whole of a migration (bursts, nightly jobs).  Predicting over both makes
    the ranges cover either, and the verdict is only "go" when that wider set allows it.
    The past runs must be of a guest of the same size (within 1 %): workloads of another
    RAM size do not carry over.
    """
    if abs(history.ram_bytes - ram_bytes) > 0.01 * ram_bytes:
        note = (
            f"history: the VM's past runs had {format_bytes(history.ram_bytes)} of RAM, "
            f"not {format_bytes(ram_bytes)}: not used"
        )
        return dataclasses.replace(inf, notes=[*inf.notes, note])
    seen = {w.spec() for w in inf.workloads}
    extra = [w for w in history.plausible if w.spec() not in seen]
    note = (
        f"history: {len(extra)} plausible workload(s) from the VM's past migrations added "
        f"to the {len(inf.workloads)} measured"
    )
    return dataclasses.replace(inf, workloads=[*inf.workloads, *extra], notes=[*inf.notes, note])


def preflight(
    qmp_path: str,
    *,
    settings: Settings | None = None,
    link_rate: float | None = None,
    platform: str = "qemu",
    max_downtime: float | None = DEFAULT_MAX_DOWNTIME,
    max_time: float = DEFAULT_MAX_TIME,
    measure_s: float = 10.0,
    allow: tuple[str, ...] = DEFAULT_ALLOW,
    zero_samples: int = ZERO_SAMPLES,
    machine: Machine | None = None,
    say: Any = None,
    history: Calibration | None = None,
) -> PreflightResult:
    """Measure the guest behind ``qmp_path`` and say whether it will migrate.

    ``settings`` are what will be set for the migration on top of what QEMU has
    (``None`` fields: as in force).  ``link_rate`` is the network's rate in bytes/s
    (unknown: the lab's loopback is assumed and said).  ``max_downtime`` and
    ``max_time`` are the limits a migration must meet (``max_downtime=None``: no
    downtime limit); ``allow`` the features the tuner may switch on (tune's
    ``FEATURES``: xbzrle, auto-converge, multifd, postcopy); ``platform`` whose settings
    and commands it recommends (tune's ``PLATFORMS``).  Raises ``UnavailableError`` when the
    socket is gone, ``InputError`` when a migration is in progress or the VM is not
    running.  ``history`` (``--vm NAME``): the VM's calibration from its past runs, whose
    workloads join the measured ones (:func:`with_history`)."""
    if max_time <= 0:
        raise InputError("--max-time must be positive")
    if max_downtime is not None and max_downtime <= 0:
        raise InputError("--max-downtime must be positive")
    limits = Limits(max_downtime, max_time)
    warnings: list[str] = []
    with QMP(qmp_path, name="source").connect() as q:
        state = q.migration_status()
        if state in MIGRATING:
            raise InputError(
                f"a migration is already in progress on this QEMU (status {state}): "
                "preflight measures a guest before it migrates"
            )
        run_state = q.status()
        if run_state != "running":
            raise InputError(
                f"the VM is not running (run state {run_state}): there is no guest "
                "activity to measure"
            )
        version = q.version()
        before = (q.cmd("query-migrate-parameters"), q.cmd("query-migrate-capabilities"))
        in_force = settings_from_qemu(*before, "")
        m = measure(q, measure_s, zero_samples=zero_samples, say=say)
        after = (q.cmd("query-migrate-parameters"), q.cmd("query-migrate-capabilities"))
        if after != before:
            warnings.append(
                "the migration settings changed during the measurement (not by migtune): "
                "the prediction uses those read before"
            )
        if q.migration_status() in MIGRATING:
            warnings.append("a migration started during the measurement: it disturbed it")
    if say:
        say("simulating the migration for every plausible workload")
    s = _merge(in_force, settings)
    short = ".".join(version.split(".")[:2])
    inf, _cal, pred, check, rec, link_how = predict_from_measurement(
        m, s, qemu_version=short, link_rate=link_rate, limits=limits, machine=machine,
        allow=allow, platform=platform, history=history,
    )  # fmt: skip
    link = link_rate if link_rate is not None else (machine or Machine()).link_rate
    verdict, reason = _verdict(check, rec)
    notes = [*inf.notes, *pred.notes]
    if m.vcpu_rates() is None:
        notes.append(f"per-vCPU rates: not available in {m.mode} mode (dirty-ring only)")
    if rec is not None:
        notes += [f"recommendation: {n}" for n in rec.notes]
    return PreflightResult(
        verdict, reason, m, inf, s, in_force, pred, check, rec, limits, link, link_how,
        version, notes, warnings,
    )  # fmt: skip


def _verdict(check: dict[str, Any], rec: Recommended | None) -> tuple[str, str]:
    if check["meets_limits"]:
        return "go", "the settings in force meet the limits"
    why = check["why_not"] or "the limits are not met"
    if rec is not None:
        return "go", f"with {', '.join(rec.changes)} ({why} with the settings in force)"
    return "no-go", f"{why}, and no setting allowed meets the limits"
